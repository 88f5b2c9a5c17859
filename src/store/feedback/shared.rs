//! The feedback store's tables in a shared PostgreSQL store: the same operations as the
//! SQLite file, with guarantees that hold across processes on many hosts.
//!
//! - A submission group is one transaction; a record is acknowledged only once it is
//!   committed (`synchronous_commit` as the server has it, on by default).
//! - An idempotency key is reserved first (`INSERT … ON CONFLICT DO NOTHING`): a
//!   second delivery of the same key, from any replica and at the same moment, waits
//!   for the first transaction and then finds its record (a replay), never stores twice.
//! - A review claim is taken with one `INSERT … ON CONFLICT DO UPDATE … WHERE` per
//!   account: the row lock gives each account to exactly one moderator.

use super::review::{
    AccountRecord, AccountStatus, ClaimHolder, ClaimOutcome, ConfirmedLabel, OpenClaims, at_millis,
    millis, rfc3339,
};
use super::{
    AgreementPoint, Claimant, Feedback, FeedbackError, FeedbackLabel, FeedbackStats,
    IDEMPOTENCY_RETENTION, ModeratorStats, NewFeedback, Origin, Outcome, Submission, VersionStats,
    check_submission,
};
use crate::data::UserId;
use crate::data::catalog::N_FEATURES;
use crate::store::ErrorKind;
use crate::store::pg::{self, Db, DbError, GenericClient};
use std::time::{Duration, SystemTime};

pub(crate) struct Shared {
    db: Db,
    /// How long a write waits for another's row lock before a busy error.
    wait: Duration,
    /// While this store's retrain holds claims: a connection of its own holding the
    /// claimant's advisory lock. The server releases it when the connection ends (the
    /// process exits or is killed, its host disappears), which is how any replica knows
    /// a claim is stale, exactly and on any host.
    presence: Option<Box<postgres::Client>>,
}

/// The first key of the claimants' advisory locks (the second is the claimant's).
const CLAIMANT_LOCKS: i32 = 0x5353_4643; // "SSFC"

/// The second key of `claimant`'s advisory lock.
fn claimant_key(claimant: &str) -> i32 {
    let h = crate::util::hash::sha256_hex(claimant.as_bytes());
    u32::from_str_radix(&h[..8], 16).map_or(0, |v| v as i32)
}

/// Whether the process that made claim `holder` is gone: nobody holds its lock. (Held
/// by this transaction until it ends, which changes nothing: claims are only released
/// inside it.)
fn claim_is_stale(tx: &mut impl GenericClient, holder: &str) -> Result<bool, postgres::Error> {
    Ok(tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock($1, $2)",
            &[&CLAIMANT_LOCKS, &claimant_key(holder)],
        )?
        .get(0))
}

impl Shared {
    pub fn new(db: Db) -> Shared {
        Shared {
            db,
            wait: crate::store::BUSY_WAIT,
            presence: None,
        }
    }

    pub fn shown(&self) -> String {
        format!("{}: feedback", self.db.shown())
    }

    pub fn set_busy_wait(&mut self, wait: Duration) -> Result<(), FeedbackError> {
        self.wait = wait;
        Ok(())
    }

    /// A failure of `what`, in the store's words.
    pub(super) fn fail(
        &self,
        what: &'static str,
    ) -> impl Fn(postgres::Error) -> FeedbackError + '_ {
        move |e| FeedbackError {
            path: self.shown(),
            message: format!("{what}: {}", pg::message(&e)),
            kind: pg::kind(&e),
        }
    }

    fn db_fail(&self, e: DbError) -> FeedbackError {
        let prefix = format!("{}: ", self.db.shown());
        FeedbackError {
            path: self.shown(),
            message: e
                .message
                .strip_prefix(&prefix)
                .unwrap_or(&e.message)
                .to_string(),
            kind: e.kind,
        }
    }

    fn corrupt(&self, message: String) -> FeedbackError {
        FeedbackError {
            path: self.shown(),
            message,
            kind: ErrorKind::Corrupt,
        }
    }

    pub(super) fn conn(&self) -> Result<pg::Conn, FeedbackError> {
        self.db.conn().map_err(|e| self.db_fail(e))
    }

    /// Runs `f` in one write transaction whose lock waits end after the busy wait.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut pg::Transaction<'_>) -> Result<T, FeedbackError>,
    ) -> Result<T, FeedbackError> {
        let mut c = self.conn()?;
        let mut tx = c
            .transaction()
            .map_err(self.fail("beginning a transaction"))?;
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = {}",
            self.wait.as_millis().clamp(1, i32::MAX as u128)
        ))
        .map_err(self.fail("setting the lock wait"))?;
        let out = f(&mut tx)?;
        tx.commit().map_err(self.fail("committing"))?;
        Ok(out)
    }

    fn version(&self, v: Option<i32>, column: &str) -> Result<Option<u32>, FeedbackError> {
        v.map(|v| {
            u32::try_from(v).map_err(|_| {
                self.corrupt(format!("column {column} holds {v}, which is not a version"))
            })
        })
        .transpose()
    }

    fn label(&self, v: i16, column: &str) -> Result<u8, FeedbackError> {
        match v {
            0 | 1 => Ok(v as u8),
            _ => Err(self.corrupt(format!(
                "column {column} holds {v}, which is not a label (0 or 1)"
            ))),
        }
    }

    fn count_of(&self, v: i64, column: &str) -> Result<u64, FeedbackError> {
        u64::try_from(v).map_err(|_| self.corrupt(format!("{column} is {v}, which is not a count")))
    }

    pub fn claim_unused(&mut self, claimant: &Claimant) -> Result<(), FeedbackError> {
        // Hold the claimant's lock first (before any record bears its name), on a
        // connection kept until the claims are given back or this store is dropped.
        if self.presence.is_none() {
            let mut c = self.db.dedicated().map_err(|e| self.db_fail(e))?;
            c.execute(
                "SELECT pg_advisory_lock($1, $2)",
                &[&CLAIMANT_LOCKS, &claimant_key(&claimant.0)],
            )
            .map_err(self.fail("announcing the retrain"))?;
            self.presence = Some(Box::new(c));
        }
        self.write(|tx| {
            let holders: Vec<String> = tx
                .query(
                    "SELECT DISTINCT claimed_by FROM feedback
                     WHERE claimed_by IS NOT NULL AND used_in_version IS NULL",
                    &[],
                )
                .map_err(self.fail("reading claims"))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for h in &holders {
                if h == &claimant.0
                    || !claim_is_stale(&mut *tx, h).map_err(self.fail("checking claims"))?
                {
                    continue;
                }
                tx.execute(
                    "UPDATE feedback SET claimed_by = NULL WHERE claimed_by = $1",
                    &[h],
                )
                .map_err(self.fail("releasing stale claims"))?;
            }
            tx.execute(
                "UPDATE feedback SET claimed_by = $1
                 WHERE used_in_version IS NULL AND claimed_by IS NULL",
                &[&claimant.0],
            )
            .map_err(self.fail("claiming feedback"))?;
            Ok(())
        })
    }

    pub fn add_submissions_at(
        &mut self,
        subs: &[Submission],
        now: SystemTime,
    ) -> Result<Vec<Result<Outcome, FeedbackError>>, FeedbackError> {
        let stamp = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
        let now_text = stamp(now);
        let refused = |m: String| FeedbackError {
            path: self.shown(),
            message: m,
            kind: ErrorKind::Invalid,
        };
        let checked: Vec<Result<(), String>> = subs.iter().map(check_submission).collect();
        if subs.iter().any(|s| s.key().is_some()) {
            // Its own statement, before the group: replicas pruning at once wait for
            // one another here, never inside a group.
            let cutoff = stamp(now.checked_sub(IDEMPOTENCY_RETENTION).unwrap_or(now));
            self.conn()?
                .execute(
                    "DELETE FROM feedback_keys WHERE created_at < $1",
                    &[&cutoff],
                )
                .map_err(self.fail("forgetting old idempotency keys"))?;
        }
        // The submission that owns each key: its first valid one in this group.
        let mut owners: Vec<(&str, &str, usize)> = Vec::new();
        for (i, sub) in subs.iter().enumerate() {
            if let (Some(k), Ok(())) = (sub.key(), &checked[i])
                && !owners.iter().any(|o| (o.0, o.1) == (&k.caller, &k.key))
            {
                owners.push((&k.caller, &k.key, i));
            }
        }
        // Keys are reserved in one order (sorted) by every replica, so two groups with
        // the same keys wait for one another instead of deadlocking.
        owners.sort();
        self.write(|tx| {
            // Each statement is prepared once per group (a round trip), then only run.
            let mut prepared = Prepared::default();
            let mut reserved = std::collections::HashSet::new();
            for &(caller, key, i) in &owners {
                let k = subs[i].key().expect("an owner has a key");
                let linked = matches!(subs[i], Submission::Linked { .. });
                let stmt = prepared
                    .get(tx, 0, RESERVE_KEY)
                    .map_err(self.fail("reserving an idempotency key"))?;
                let n = tx
                    .execute(&stmt, &[&caller, &key, &k.body_hash, &linked, &now_text])
                    .map_err(self.fail("reserving an idempotency key"))?;
                if n == 1 {
                    reserved.insert(i);
                }
            }
            let mut out = Vec::with_capacity(subs.len());
            for (i, (sub, ok)) in subs.iter().zip(&checked).enumerate() {
                if let Err(m) = ok {
                    out.push(Err(refused(m.clone())));
                    continue;
                }
                if let Some(k) = sub.key()
                    && !reserved.contains(&i)
                {
                    // Known before, or owned by an earlier submission of this group
                    // (whose record is stored by now).
                    out.push(Ok(self.replay(tx, &k.caller, &k.key, &k.body_hash)?));
                    continue;
                }
                let id: i64 = match sub {
                    Submission::Linked {
                        record,
                        moderator,
                        prediction_id,
                        ..
                    } => {
                        let stmt = prepared
                            .get(tx, 1, INSERT_RECORD)
                            .map_err(self.fail("storing feedback"))?;
                        let id = insert_record(tx, &stmt, &now_text, record, moderator, prediction_id)
                            .map_err(self.fail("storing feedback"))?;
                        if let (Some(m), Some(u)) = (moderator, &record.user_id) {
                            let stmt = prepared
                                .get(tx, 2, RELEASE_CLAIM)
                                .map_err(self.fail("releasing a review claim"))?;
                            tx.execute(&stmt, &[&u.trim(), m, &millis(now)])
                                .map_err(self.fail("releasing a review claim"))?;
                        }
                        id
                    }
                    Submission::Unlinked {
                        prediction_id,
                        is_correct,
                        actual_label,
                        notes,
                        moderator,
                        ..
                    } => tx
                        .query_one(
                            "INSERT INTO unlinked_feedback
                                (created_at, prediction_id, is_correct, actual_label, notes, moderator)
                             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                            &[
                                &now_text,
                                prediction_id,
                                is_correct,
                                &actual_label.map(i16::from),
                                notes,
                                moderator,
                            ],
                        )
                        .map_err(self.fail("storing feedback"))?
                        .get(0),
                };
                if let Some(k) = sub.key() {
                    let stmt = prepared
                        .get(tx, 3, RECORD_KEY)
                        .map_err(self.fail("recording an idempotency key"))?;
                    tx.execute(&stmt, &[&k.caller, &k.key, &id])
                        .map_err(self.fail("recording an idempotency key"))?;
                }
                out.push(Ok(Outcome::Stored(id)));
            }
            Ok(out)
        })
    }

    /// What a known key answers: the first delivery's record (same body) or a refusal.
    fn replay(
        &self,
        tx: &mut pg::Transaction<'_>,
        caller: &str,
        key: &str,
        body_hash: &str,
    ) -> Result<Outcome, FeedbackError> {
        let row = tx
            .query_one(
                "SELECT body_hash, feedback_id, linked FROM feedback_keys
                 WHERE caller = $1 AND key = $2",
                &[&caller, &key],
            )
            .map_err(self.fail("reading an idempotency key"))?;
        let (hash, id, linked): (String, i64, bool) = (row.get(0), row.get(1), row.get(2));
        if hash != body_hash {
            return Ok(Outcome::KeyReused);
        }
        let label = if linked {
            tx.query_opt("SELECT true_label FROM feedback WHERE id = $1", &[&id])
                .map_err(self.fail("reading feedback"))?
                .map(|r| self.label(r.get(0), "true_label"))
                .transpose()?
        } else {
            tx.query_opt(
                "SELECT actual_label FROM unlinked_feedback WHERE id = $1",
                &[&id],
            )
            .map_err(self.fail("reading feedback"))?
            .and_then(|r| r.get::<_, Option<i16>>(0))
            .map(|l| self.label(l, "actual_label"))
            .transpose()?
        };
        Ok(Outcome::Replayed { id, linked, label })
    }

    pub fn unlinked_counts(&self) -> Result<(u64, u64), FeedbackError> {
        let r = self
            .conn()?
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE is_correct) FROM unlinked_feedback",
                &[],
            )
            .map_err(self.fail("counting feedback"))?;
        Ok((
            self.count_of(r.get(0), "count")?,
            self.count_of(r.get(1), "count")?,
        ))
    }

    pub fn release(&mut self, claimant: &Claimant) -> Result<(), FeedbackError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE feedback SET claimed_by = NULL
                 WHERE claimed_by = $1 AND used_in_version IS NULL",
                &[&claimant.0],
            )
            .map(|_| ())
            .map_err(self.fail("releasing claims"))
        })?;
        // Its lock goes with its connection.
        self.presence = None;
        Ok(())
    }

    pub fn count(&self) -> Result<u64, FeedbackError> {
        let n: i64 = self
            .conn()?
            .query_one("SELECT count(*) FROM feedback", &[])
            .map_err(self.fail("counting feedback"))?
            .get(0);
        self.count_of(n, "count")
    }

    pub fn count_unused(&self) -> Result<u64, FeedbackError> {
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(self.fail("counting feedback"))?;
        let rows = tx
            .query(
                "SELECT claimed_by, count(*) FROM feedback WHERE used_in_version IS NULL
                 GROUP BY claimed_by",
                &[],
            )
            .map_err(self.fail("counting feedback"))?;
        let mut n = 0;
        for r in rows {
            let holder: Option<String> = r.get(0);
            let stale = match holder.as_deref() {
                None => true,
                Some(h) => claim_is_stale(&mut tx, h).map_err(self.fail("checking claims"))?,
            };
            if stale {
                n += self.count_of(r.get(1), "count")?;
            }
        }
        Ok(n)
    }

    pub fn stats(&self) -> Result<FeedbackStats, FeedbackError> {
        let rows = self
            .conn()?
            .query(
                "SELECT model_version, count(*),
                        count(*) FILTER (WHERE predicted = true_label),
                        count(*) FILTER (WHERE predicted IS NOT NULL)
                 FROM feedback GROUP BY model_version ORDER BY model_version NULLS FIRST",
                &[],
            )
            .map_err(self.fail("reading statistics"))?;
        let mut stats = FeedbackStats::default();
        for r in rows {
            let v = VersionStats {
                version: self.version(r.get(0), "model_version")?,
                total: self.count_of(r.get(1), "count")?,
                agreed: self.count_of(r.get(2), "agreed")?,
                judged: self.count_of(r.get(3), "judged")?,
            };
            stats.total += v.total;
            stats.agreed += v.agreed;
            stats.judged += v.judged;
            stats.by_version.push(v);
        }
        stats.agreement = crate::eval::verdict::agreement(stats.agreed, stats.judged);
        Ok(stats)
    }

    pub fn moderator_stats(&self) -> Result<Vec<ModeratorStats>, FeedbackError> {
        let rows = self
            .conn()?
            .query(
                "WITH pairs AS MATERIALIZED (
                    SELECT a.moderator AS moderator, count(*) AS n,
                           count(*) FILTER (WHERE b.true_label = a.true_label) AS same
                    FROM feedback a JOIN feedback b
                      ON b.user_id = a.user_id AND b.moderator IS DISTINCT FROM a.moderator
                    WHERE a.user_id IS NOT NULL GROUP BY a.moderator)
                 SELECT f.moderator, count(*),
                        count(*) FILTER (WHERE f.predicted IS NOT NULL),
                        count(*) FILTER (WHERE f.predicted = f.true_label),
                        coalesce(max(p.n), 0), coalesce(max(p.same), 0),
                        count(*) FILTER (WHERE c.label IS NOT NULL),
                        count(*) FILTER (WHERE c.label = f.true_label)
                 FROM feedback f LEFT JOIN pairs p ON p.moderator IS NOT DISTINCT FROM f.moderator
                      LEFT JOIN confirmed_labels c
                        ON c.user_id = f.user_id AND c.confirmed_by IS DISTINCT FROM f.moderator
                 GROUP BY f.moderator ORDER BY f.moderator NULLS FIRST",
                &[],
            )
            .map_err(self.fail("reading moderator statistics"))?;
        rows.iter()
            .map(|r| {
                Ok(ModeratorStats {
                    moderator: r.get(0),
                    records: self.count_of(r.get(1), "records")?,
                    judged: self.count_of(r.get(2), "judged")?,
                    agreed_with_model: self.count_of(r.get(3), "agreed_with_model")?,
                    pairs_with_others: self.count_of(r.get(4), "pairs_with_others")?,
                    agreed_with_others: self.count_of(r.get(5), "agreed_with_others")?,
                    confirmed: self.count_of(r.get(6), "confirmed")?,
                    agreed_with_confirmed: self.count_of(r.get(7), "agreed_with_confirmed")?,
                })
            })
            .collect()
    }

    pub fn agreement_over_time(&self) -> Result<Vec<AgreementPoint>, FeedbackError> {
        let rows = self
            .conn()?
            .query(
                "SELECT model_version, substr(created_at, 1, 13), count(*),
                        count(*) FILTER (WHERE predicted = true_label)
                 FROM feedback
                 WHERE predicted IS NOT NULL AND model_version IS NOT NULL
                 GROUP BY model_version, substr(created_at, 1, 13)
                 ORDER BY substr(created_at, 1, 13), model_version",
                &[],
            )
            .map_err(self.fail("reading agreement"))?;
        rows.iter()
            .map(|r| {
                Ok(AgreementPoint {
                    version: self.version(Some(r.get(0)), "model_version")?.unwrap_or(0),
                    hour: r.get(1),
                    total: self.count_of(r.get(2), "count")?,
                    agreed: self.count_of(r.get(3), "agreed")?,
                })
            })
            .collect()
    }

    pub fn labels(&self) -> Result<Vec<FeedbackLabel>, FeedbackError> {
        let rows = self
            .conn()?
            .query(
                "SELECT prediction_id, user_id, true_label FROM feedback
                 WHERE prediction_id IS NOT NULL OR user_id IS NOT NULL ORDER BY id",
                &[],
            )
            .map_err(self.fail("reading labels"))?;
        rows.iter()
            .map(|r| {
                Ok(FeedbackLabel {
                    prediction_id: r.get(0),
                    user_id: r.get(1),
                    label: self.label(r.get(2), "true_label")?,
                })
            })
            .collect()
    }

    pub fn records(&self, unused_only: bool) -> Result<Vec<Feedback>, FeedbackError> {
        let sql = format!(
            "SELECT id, created_at, user_id, model_version, probability, predicted, true_label,
                    notes, origin, used_in_version, claimed_by, moderator, features
             FROM feedback {} ORDER BY id",
            if unused_only {
                "WHERE used_in_version IS NULL"
            } else {
                ""
            }
        );
        let rows = self
            .conn()?
            .query(&sql, &[])
            .map_err(self.fail("reading feedback"))?;
        rows.iter()
            .map(|r| {
                let features: Vec<f64> = r.get(12);
                if features.len() != N_FEATURES {
                    return Err(self.corrupt(format!(
                        "record {} holds {} feature values, not {N_FEATURES}",
                        r.get::<_, i64>(0),
                        features.len()
                    )));
                }
                Ok(Feedback {
                    id: r.get(0),
                    created_at: r.get(1),
                    used_in_version: self.version(r.get(9), "used_in_version")?,
                    claimed_by: r.get(10),
                    moderator: r.get(11),
                    record: NewFeedback {
                        user_id: r.get::<_, Option<String>>(2).map(UserId::from),
                        model_version: self.version(r.get(3), "model_version")?,
                        probability: r.get(4),
                        predicted: r
                            .get::<_, Option<i16>>(5)
                            .map(|p| self.label(p, "predicted"))
                            .transpose()?,
                        true_label: self.label(r.get(6), "true_label")?,
                        notes: r.get(7),
                        origin: Origin::parse(r.get(8)),
                        features,
                    },
                })
            })
            .collect()
    }

    pub fn mark_used(&mut self, ids: &[i64], version: u32) -> Result<(), FeedbackError> {
        let v = i32::try_from(version)
            .map_err(|_| self.corrupt(format!("version {version} is out of range")))?;
        self.write(|tx| {
            tx.execute(
                "UPDATE feedback SET used_in_version = $1, claimed_by = NULL WHERE id = ANY($2)",
                &[&v, &ids],
            )
            .map(|_| ())
            .map_err(self.fail("marking feedback used"))
        })
    }

    pub fn confirm_labels(
        &mut self,
        labels: &[(UserId, u8)],
        by: &str,
        notes: &str,
        now: SystemTime,
    ) -> Result<Vec<Option<ConfirmedLabel>>, FeedbackError> {
        let at = humantime::format_rfc3339_millis(now).to_string();
        self.write(|tx| {
            let mut before = Vec::with_capacity(labels.len());
            for (u, label) in labels {
                let u = u.trim();
                // The row is locked until commit: two confirmations of one account
                // follow one another, each seeing the one before.
                let old = tx
                    .query_opt(
                        "SELECT label, confirmed_by, confirmed_at, notes FROM confirmed_labels
                         WHERE user_id = $1 FOR UPDATE",
                        &[&u],
                    )
                    .map_err(self.fail("reading a confirmed label"))?;
                before.push(old.map(|r| self.confirmed(u, &r)).transpose()?);
                tx.execute(
                    "INSERT INTO confirmed_labels (user_id, label, confirmed_by, confirmed_at, notes)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (user_id) DO UPDATE SET label = excluded.label,
                        confirmed_by = excluded.confirmed_by,
                        confirmed_at = excluded.confirmed_at, notes = excluded.notes",
                    &[&u, &i16::from(*label), &by, &at, &notes],
                )
                .map_err(self.fail("confirming a label"))?;
            }
            Ok(before)
        })
    }

    fn confirmed(&self, u: &str, r: &postgres::Row) -> Result<ConfirmedLabel, FeedbackError> {
        Ok(ConfirmedLabel {
            user_id: UserId::from(u),
            label: self.label(r.get(0), "label")?,
            confirmed_by: r.get(1),
            confirmed_at: r.get(2),
            notes: r.get(3),
        })
    }

    fn confirmed_in(
        &self,
        c: &mut impl GenericClient,
        u: &str,
    ) -> Result<Option<ConfirmedLabel>, FeedbackError> {
        c.query_opt(
            "SELECT label, confirmed_by, confirmed_at, notes FROM confirmed_labels
             WHERE user_id = $1",
            &[&u],
        )
        .map_err(self.fail("reading a confirmed label"))?
        .map(|r| self.confirmed(u, &r))
        .transpose()
    }

    fn records_in(
        &self,
        c: &mut impl GenericClient,
        u: &str,
    ) -> Result<Vec<AccountRecord>, FeedbackError> {
        c.query(
            "SELECT id, moderator, true_label, created_at, predicted, probability, model_version
             FROM feedback WHERE user_id = $1 ORDER BY id",
            &[&u],
        )
        .map_err(self.fail("reading an account's feedback"))?
        .iter()
        .map(|r| {
            Ok(AccountRecord {
                id: r.get(0),
                moderator: r.get(1),
                label: self.label(r.get(2), "true_label")?,
                created_at: r.get(3),
                predicted: r
                    .get::<_, Option<i16>>(4)
                    .map(|p| self.label(p, "predicted"))
                    .transpose()?,
                probability: r.get(5),
                model_version: self.version(r.get(6), "model_version")?,
            })
        })
        .collect()
    }

    fn claim_in(
        &self,
        c: &mut impl GenericClient,
        u: &str,
        now_ms: i64,
    ) -> Result<Option<ClaimHolder>, FeedbackError> {
        Ok(c.query_opt(
            "SELECT moderator, claimed_at, expires_at FROM review_claims
                 WHERE user_id = $1 AND expires_at > $2",
            &[&u, &now_ms],
        )
        .map_err(self.fail("reading a review claim"))?
        .map(|r| ClaimHolder {
            moderator: r.get(0),
            claimed_at: rfc3339(r.get(1)),
            expires_at: rfc3339(r.get(2)),
        }))
    }

    pub fn confirmed_label(&self, u: &str) -> Result<Option<ConfirmedLabel>, FeedbackError> {
        self.confirmed_in(&mut *self.conn()?, u)
    }

    pub fn confirmed_labels(&self) -> Result<Vec<(UserId, u8)>, FeedbackError> {
        self.conn()?
            .query("SELECT user_id, label FROM confirmed_labels", &[])
            .map_err(self.fail("reading confirmed labels"))?
            .iter()
            .map(|r| {
                let label: i16 = r.get(1);
                let u: String = r.get(0);
                u8::try_from(label)
                    .ok()
                    .filter(|&l| l <= 1)
                    .map(|l| (UserId::from(u.as_str()), l))
                    .ok_or_else(|| {
                        self.corrupt(format!(
                            "confirmed label {label} of an account is not 0 or 1"
                        ))
                    })
            })
            .collect()
    }

    pub fn account_records(&self, u: &str) -> Result<Vec<AccountRecord>, FeedbackError> {
        self.records_in(&mut *self.conn()?, u)
    }

    pub fn claim_for_review(
        &mut self,
        ids: &[UserId],
        moderator: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<ClaimOutcome, FeedbackError> {
        let now_ms = millis(now);
        let until = millis(now + ttl);
        // Rows are locked in one order (sorted ids) by every claimer, so two claims
        // of overlapping accounts wait for one another instead of deadlocking; the
        // answer keeps the order asked.
        let mut order: Vec<&UserId> = ids.iter().collect();
        order.sort();
        self.write(|tx| {
            let mut granted = std::collections::HashSet::new();
            for u in order {
                // Granted when nobody holds it, the claim expired, or it is ours: the
                // upsert's row lock decides between two moderators at once.
                let n = tx
                    .execute(
                        "INSERT INTO review_claims (user_id, moderator, claimed_at, expires_at)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (user_id) DO UPDATE SET moderator = excluded.moderator,
                            claimed_at = excluded.claimed_at, expires_at = excluded.expires_at
                         WHERE review_claims.expires_at <= $3
                            OR review_claims.moderator = excluded.moderator",
                        &[&&**u, &moderator, &now_ms, &until],
                    )
                    .map_err(self.fail("claiming an account"))?;
                if n == 1 {
                    granted.insert(u.clone());
                }
            }
            let mut out = ClaimOutcome::default();
            for u in ids {
                if granted.contains(u) {
                    out.granted.push(u.clone());
                } else if let Some(holder) = self.claim_in(tx, u, now_ms)? {
                    out.held.push((u.clone(), holder));
                }
            }
            Ok(out)
        })
    }

    pub fn release_review_claims(
        &mut self,
        ids: &[UserId],
        moderator: &str,
    ) -> Result<usize, FeedbackError> {
        let ids: Vec<&str> = ids.iter().map(|u| &**u).collect();
        self.write(|tx| {
            tx.execute(
                "DELETE FROM review_claims WHERE user_id = ANY($1) AND moderator = $2",
                &[&ids, &moderator],
            )
            .map(|n| n as usize)
            .map_err(self.fail("releasing review claims"))
        })
    }

    pub fn open_review_claims(&self, now: SystemTime) -> Result<OpenClaims, FeedbackError> {
        let r = self
            .conn()?
            .query_one(
                "SELECT count(*), min(claimed_at) FROM review_claims WHERE expires_at > $1",
                &[&millis(now)],
            )
            .map_err(self.fail("counting open review claims"))?;
        Ok(OpenClaims {
            open: self.count_of(r.get(0), "count")?,
            oldest_claimed_at: r.get::<_, Option<i64>>(1).map(at_millis),
        })
    }

    pub fn review_times(
        &self,
        bounds: &[f64],
    ) -> Result<super::review::ReviewTimes, FeedbackError> {
        let r = self
            .conn()?
            .query_one(&super::review::review_times_sql(bounds), &[])
            .map_err(self.fail("reading review times"))?;
        let mut out = super::review::ReviewTimes::default();
        for (i, &b) in bounds.iter().enumerate() {
            out.buckets.push((b, self.count_of(r.get(i), "reviews")?));
        }
        out.count = self.count_of(r.get(bounds.len()), "reviews")?;
        out.sum_seconds = r.get::<_, i64>(bounds.len() + 1) as f64 / 1000.0;
        Ok(out)
    }

    pub fn claims_and_reviews(
        &mut self,
        ids: &[UserId],
        now: SystemTime,
    ) -> Result<Vec<AccountStatus>, FeedbackError> {
        let now_ms = millis(now);
        let mut c = self.conn()?;
        // One snapshot for the whole answer.
        let mut tx = c
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(self.fail("beginning a transaction"))?;
        let mut out = Vec::with_capacity(ids.len());
        for u in ids {
            out.push(AccountStatus {
                claim: self.claim_in(&mut tx, u, now_ms)?,
                confirmed: self.confirmed_in(&mut tx, u)?,
                reviews: self.records_in(&mut tx, u)?,
                user_id: u.clone(),
            });
        }
        tx.commit().map_err(self.fail("reading claims"))?;
        Ok(out)
    }
}

const RESERVE_KEY: &str = "INSERT INTO feedback_keys
    (caller, key, body_hash, linked, feedback_id, created_at)
    VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT DO NOTHING";
const INSERT_RECORD: &str = "INSERT INTO feedback (created_at, user_id, model_version,
    probability, predicted, true_label, notes, origin, moderator, prediction_id, features)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id";
/// Ends the holder's claim; an unexpired one's time is kept as a review's.
const RELEASE_CLAIM: &str = "WITH ended AS (
    DELETE FROM review_claims WHERE user_id = $1 AND moderator = $2
    RETURNING user_id, moderator, claimed_at, expires_at)
    INSERT INTO review_times (user_id, moderator, claimed_at, decided_at)
    SELECT user_id, moderator, claimed_at, $3 FROM ended WHERE expires_at > $3";
const RECORD_KEY: &str = "UPDATE feedback_keys SET feedback_id = $3 WHERE caller = $1 AND key = $2";

/// Statements of one submission group, each prepared when first needed.
#[derive(Default)]
struct Prepared([Option<postgres::Statement>; 4]);

impl Prepared {
    fn get(
        &mut self,
        tx: &mut pg::Transaction<'_>,
        slot: usize,
        sql: &str,
    ) -> Result<postgres::Statement, postgres::Error> {
        if let Some(s) = &self.0[slot] {
            return Ok(s.clone());
        }
        let s = tx.prepare(sql)?;
        self.0[slot] = Some(s.clone());
        Ok(s)
    }
}

/// Inserts one record with the prepared [`INSERT_RECORD`]; its id.
fn insert_record(
    tx: &mut pg::Transaction<'_>,
    stmt: &postgres::Statement,
    now: &str,
    r: &NewFeedback,
    moderator: &Option<String>,
    prediction_id: &Option<String>,
) -> Result<i64, postgres::Error> {
    let version = r
        .model_version
        .map(|v| i32::try_from(v).unwrap_or(i32::MAX));
    Ok(tx
        .query_one(
            stmt,
            &[
                &now,
                &r.user_id.as_deref(),
                &version,
                &r.probability,
                &r.predicted.map(i16::from),
                &i16::from(r.true_label),
                &r.notes,
                &r.origin.as_str(),
                moderator,
                prediction_id,
                &r.features,
            ],
        )?
        .get(0))
}
