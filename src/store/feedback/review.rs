//! A moderation team on one store: accounts' confirmed final labels, who reviewed an
//! account, and review claims (who is looking at an account now, until when). The
//! tables live in the feedback store (`feedback.sqlite`, created by
//! [`super::FeedbackStore::open`], or a shared store's tables: `shared.rs` beside this
//! file); every change is one transaction.
//!
//! Times are passed in (`now`), so expiry is decided by the caller's clock and tests
//! need not sleep.

use super::{FeedbackError, Local};
use crate::data::UserId;
use rusqlite::OptionalExtension;
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An account's confirmed final label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfirmedLabel {
    pub user_id: UserId,
    /// 1: spammer, 0: legitimate.
    pub label: u8,
    pub confirmed_by: String,
    /// RFC 3339 (UTC).
    pub confirmed_at: String,
    pub notes: String,
}

/// Who holds a review claim, since and until when (RFC 3339, UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimHolder {
    pub moderator: String,
    pub claimed_at: String,
    pub expires_at: String,
}

/// What a claim did: the ids now claimed by the caller (new or renewed), and those held
/// by someone else (with who and until when).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClaimOutcome {
    pub granted: Vec<UserId>,
    pub held: Vec<(UserId, ClaimHolder)>,
}

/// A feedback record on an account, as the team sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountRecord {
    pub id: i64,
    /// None: given without a moderator (the app, imports).
    pub moderator: Option<String>,
    pub label: u8,
    pub created_at: String,
    /// The model's verdict, probability and version when the feedback was given.
    pub predicted: Option<u8>,
    pub probability: Option<f64>,
    pub model_version: Option<u32>,
}

/// One account's state for the team: its current (unexpired) claim, the feedback
/// records on it (oldest first) and its confirmed label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountStatus {
    pub user_id: UserId,
    pub claim: Option<ClaimHolder>,
    pub reviews: Vec<AccountRecord>,
    pub confirmed: Option<ConfirmedLabel>,
}

/// The review claims open at a moment: unexpired, so neither released, nor given up by
/// their holder's feedback on the account (which deletes the claim), nor past their
/// time. How many, and when the oldest of them was taken (or last renewed: a renewal
/// takes the claim anew).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OpenClaims {
    pub open: u64,
    /// None when no claim is open.
    pub oldest_claimed_at: Option<SystemTime>,
}

impl OpenClaims {
    /// The age of the oldest open claim at `now` (zero for a claim stamped after
    /// `now`, as another host's clock may), None when no claim is open.
    pub fn oldest_age(&self, now: SystemTime) -> Option<Duration> {
        self.oldest_claimed_at
            .map(|t| now.duration_since(t).unwrap_or(Duration::ZERO))
    }
}

/// How long reviews took ([`super::FeedbackStore::review_times`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReviewTimes {
    /// (bound in seconds, reviews that took at most that long).
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

/// The SQL that counts reviews at or under each bound (milliseconds) — one expression
/// per bound — and all of them with their sum, in one pass; the same text on SQLite
/// and PostgreSQL.
pub(super) fn review_times_sql(bounds: &[f64]) -> String {
    let mut cols: Vec<String> = bounds
        .iter()
        .map(|b| {
            let ms = (b * 1000.0).round().clamp(0.0, 9.0e15) as i64;
            format!(
                "CAST(coalesce(sum(CASE WHEN decided_at - claimed_at <= {ms} THEN 1 ELSE 0 END), 0) AS BIGINT)"
            )
        })
        .collect();
    cols.push("count(*)".into());
    cols.push("CAST(coalesce(sum(decided_at - claimed_at), 0) AS BIGINT)".into());
    format!("SELECT {} FROM review_times", cols.join(", "))
}

/// The time `ms` milliseconds after the epoch (the claims' stamps; none is before it).
pub(super) fn at_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(super) use crate::util::unix_millis as millis;

pub(super) fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(at_millis(ms)).to_string()
}

/// `ids` trimmed, each once, in their first order.
pub(super) fn distinct(ids: &[UserId]) -> Vec<UserId> {
    let mut seen = std::collections::HashSet::new();
    ids.iter()
        .map(|u| UserId::from(u.trim()))
        .filter(|u| seen.insert(u.clone()))
        .collect()
}

impl Local {
    fn tx_err(&self) -> impl Fn(rusqlite::Error) -> FeedbackError + use<> {
        let path = self.path.display().to_string();
        move |e| FeedbackError::of(&path, e)
    }

    /// Confirms the final label of each account in `labels`, by `by` at `now`, in one
    /// transaction; a confirmation replaces the one before (the new confirmer and time
    /// are kept). Returns the confirmations replaced, in order.
    pub fn confirm_labels(
        &mut self,
        labels: &[(UserId, u8)],
        by: &str,
        notes: &str,
        now: SystemTime,
    ) -> Result<Vec<Option<ConfirmedLabel>>, FeedbackError> {
        let at = humantime::format_rfc3339_millis(now).to_string();
        let err = self.tx_err();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        let mut before = Vec::with_capacity(labels.len());
        for (u, label) in labels {
            let u = u.trim();
            before.push(confirmed_in(&tx, u).map_err(&err)?);
            tx.execute(
                "INSERT OR REPLACE INTO confirmed_labels (user_id, label, confirmed_by, confirmed_at, notes)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                (u, label, by, &at, notes),
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        Ok(before)
    }

    /// The confirmed label of `user_id` (trimmed by [`super::FeedbackStore`]), if any.
    pub fn confirmed_label(&self, user_id: &str) -> Result<Option<ConfirmedLabel>, FeedbackError> {
        confirmed_in(&self.conn, user_id).map_err(|e| self.err(e))
    }

    /// Every confirmed label: (user id, label).
    pub fn confirmed_labels(&self) -> Result<Vec<(UserId, u8)>, FeedbackError> {
        let mut stmt = self
            .conn
            .prepare("SELECT user_id, label FROM confirmed_labels")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    UserId::from(r.get::<_, String>(0)?.as_str()),
                    crate::store::label(r, 1, "label")?,
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The feedback records on `user_id` (trimmed by [`super::FeedbackStore`]), oldest first.
    pub fn account_records(&self, user_id: &str) -> Result<Vec<AccountRecord>, FeedbackError> {
        records_in(&self.conn, user_id).map_err(|e| self.err(e))
    }

    /// Claims `ids` for review by `moderator` until `now + ttl`, in one transaction: an
    /// id nobody holds, whose claim expired, or that `moderator` holds already (renewed)
    /// is granted; the others are reported with their holder. Two moderators claiming
    /// at once: each id goes to exactly one (the transaction takes the write lock first).
    pub fn claim_for_review(
        &mut self,
        ids: &[UserId],
        moderator: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<ClaimOutcome, FeedbackError> {
        let now_ms = millis(now);
        let until = millis(now + ttl);
        let err = self.tx_err();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        let mut out = ClaimOutcome::default();
        for u in ids.iter().cloned() {
            match claim_in(&tx, &u, now_ms).map_err(&err)? {
                Some(holder) if holder.moderator != moderator => out.held.push((u, holder)),
                _ => {
                    tx.execute(
                        "INSERT OR REPLACE INTO review_claims (user_id, moderator, claimed_at, expires_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        (&*u, moderator, now_ms, until),
                    )
                    .map_err(&err)?;
                    out.granted.push(u);
                }
            }
        }
        tx.commit().map_err(&err)?;
        Ok(out)
    }

    /// Gives back `moderator`'s claims on `ids` (others' claims stay); returns how many
    /// were released.
    pub fn release_review_claims(
        &mut self,
        ids: &[UserId],
        moderator: &str,
    ) -> Result<usize, FeedbackError> {
        let err = self.tx_err();
        let tx = self.conn.transaction().map_err(&err)?;
        let mut n = 0;
        for u in ids {
            n += tx
                .execute(
                    "DELETE FROM review_claims WHERE user_id = ?1 AND moderator = ?2",
                    (u, moderator),
                )
                .map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        Ok(n)
    }

    pub fn review_times(&self, bounds: &[f64]) -> Result<ReviewTimes, FeedbackError> {
        self.conn
            .query_row(&review_times_sql(bounds), [], |r| {
                let mut out = ReviewTimes::default();
                for (i, &b) in bounds.iter().enumerate() {
                    out.buckets.push((b, crate::store::int(r, i, "reviews")?));
                }
                out.count = crate::store::int(r, bounds.len(), "reviews")?;
                out.sum_seconds = r.get::<_, i64>(bounds.len() + 1)? as f64 / 1000.0;
                Ok(out)
            })
            .map_err(|e| self.err(e))
    }

    /// The claims open at `now` ([`OpenClaims`]), in one query.
    pub fn open_review_claims(&self, now: SystemTime) -> Result<OpenClaims, FeedbackError> {
        self.conn
            .query_row(
                "SELECT COUNT(*), MIN(claimed_at) FROM review_claims WHERE expires_at > ?1",
                [millis(now)],
                |r| {
                    Ok(OpenClaims {
                        open: crate::store::int(r, 0, "COUNT(*)")?,
                        oldest_claimed_at: r.get::<_, Option<i64>>(1)?.map(at_millis),
                    })
                },
            )
            .map_err(|e| self.err(e))
    }

    /// For each of `ids` (each once, in order): its unexpired claim at `now`, the
    /// feedback records on it and its confirmed label. One read transaction, so the
    /// answer is consistent.
    pub fn claims_and_reviews(
        &mut self,
        ids: &[UserId],
        now: SystemTime,
    ) -> Result<Vec<AccountStatus>, FeedbackError> {
        let now_ms = millis(now);
        let err = self.tx_err();
        let tx = self.conn.transaction().map_err(&err)?;
        let mut out = Vec::new();
        for u in ids.iter().cloned() {
            out.push(AccountStatus {
                claim: claim_in(&tx, &u, now_ms).map_err(&err)?,
                confirmed: confirmed_in(&tx, &u).map_err(&err)?,
                reviews: records_in(&tx, &u).map_err(&err)?,
                user_id: u,
            });
        }
        tx.commit().map_err(&err)?;
        Ok(out)
    }
}

fn records_in(conn: &rusqlite::Connection, u: &str) -> rusqlite::Result<Vec<AccountRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, moderator, true_label, created_at, predicted, probability, model_version
         FROM feedback WHERE user_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([u], |r| {
        Ok(AccountRecord {
            id: r.get(0)?,
            moderator: r.get(1)?,
            label: crate::store::label(r, 2, "true_label")?,
            created_at: r.get(3)?,
            predicted: crate::store::opt_label(r, 4, "predicted")?,
            probability: r.get(5)?,
            model_version: crate::store::opt_int(r, 6, "model_version")?,
        })
    })?;
    rows.collect()
}

fn confirmed_in(conn: &rusqlite::Connection, u: &str) -> rusqlite::Result<Option<ConfirmedLabel>> {
    conn.query_row(
        "SELECT label, confirmed_by, confirmed_at, notes FROM confirmed_labels WHERE user_id = ?1",
        [u],
        |r| {
            Ok(ConfirmedLabel {
                user_id: UserId::from(u),
                label: crate::store::label(r, 0, "label")?,
                confirmed_by: r.get(1)?,
                confirmed_at: r.get(2)?,
                notes: r.get(3)?,
            })
        },
    )
    .optional()
}

/// The claim on `u` unexpired at `now_ms`.
fn claim_in(
    conn: &rusqlite::Connection,
    u: &str,
    now_ms: i64,
) -> rusqlite::Result<Option<ClaimHolder>> {
    conn.query_row(
        "SELECT moderator, claimed_at, expires_at FROM review_claims
         WHERE user_id = ?1 AND expires_at > ?2",
        (u, now_ms),
        |r| {
            Ok(ClaimHolder {
                moderator: r.get(0)?,
                claimed_at: rfc3339(r.get(1)?),
                expires_at: rfc3339(r.get(2)?),
            })
        },
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::catalog::N_FEATURES;
    use crate::store::feedback::{FeedbackStore, NewFeedback, Origin, Submission};

    fn ids(range: std::ops::Range<usize>) -> Vec<UserId> {
        range
            .map(|i| UserId::from(format!("u{i}").as_str()))
            .collect()
    }

    fn on(user: &str, who: &str, label: u8) -> Submission {
        Submission::Linked {
            record: NewFeedback {
                user_id: Some(UserId::from(user)),
                features: vec![0.0; N_FEATURES],
                true_label: label,
                probability: Some(0.8),
                model_version: Some(1),
                predicted: Some(1),
                notes: String::new(),
                origin: Origin::Service,
            },
            moderator: Some(who.into()),
            prediction_id: None,
            key: None,
        }
    }

    /// Two moderators claim the same 300 accounts at once, each on its own connection
    /// (as two requests or two processes would): every account goes to exactly one, and
    /// each is told who holds the rest.
    #[test]
    fn concurrent_claims_give_each_account_to_exactly_one_moderator() {
        let dir = tempfile::tempdir().unwrap();
        FeedbackStore::open_in(dir.path()).unwrap();
        let all = ids(0..300);
        let outs: Vec<(String, ClaimOutcome)> = std::thread::scope(|scope| {
            let hs: Vec<_> = ["ann", "ben"]
                .map(|who| {
                    let all = &all;
                    let root = dir.path();
                    scope.spawn(move || {
                        let mut s = FeedbackStore::open_in(root).unwrap();
                        // Reversed for one of them, so they collide in the middle.
                        let mut mine = all.clone();
                        if who == "ben" {
                            mine.reverse();
                        }
                        let out = s
                            .claim_for_review(
                                &mine,
                                who,
                                Duration::from_secs(900),
                                SystemTime::now(),
                            )
                            .unwrap();
                        (who.to_string(), out)
                    })
                })
                .into_iter()
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let granted: Vec<&UserId> = outs.iter().flat_map(|(_, o)| &o.granted).collect();
        let unique: std::collections::HashSet<&UserId> = granted.iter().copied().collect();
        assert_eq!((granted.len(), unique.len()), (300, 300));
        for (who, o) in &outs {
            assert_eq!(o.granted.len() + o.held.len(), 300);
            assert!(o.held.iter().all(|(_, h)| &h.moderator != who));
        }
        // The store agrees with what each was told.
        let mut s = FeedbackStore::open_in(dir.path()).unwrap();
        let status = s.claims_and_reviews(&all, SystemTime::now()).unwrap();
        for (who, o) in &outs {
            for u in &o.granted {
                let st = status.iter().find(|a| &a.user_id == u).unwrap();
                assert_eq!(st.claim.as_ref().unwrap().moderator, *who);
            }
        }
    }

    /// A claim lasts its ttl (the clock is passed in): held before, free after; one's
    /// own claim is renewed; release and feedback give claims back.
    #[test]
    fn claims_expire_renew_and_are_released() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FeedbackStore::open_in(dir.path()).unwrap();
        let t0 = SystemTime::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let a = ids(0..3);
        let ttl = Duration::from_secs(1);
        let out = s.claim_for_review(&a, "ann", ttl, t0).unwrap();
        assert_eq!(out.granted, a);
        // Half a second later: ben is told ann holds them, until t0 + 1 s.
        let out = s.claim_for_review(&a[..1], "ben", ttl, ms(500)).unwrap();
        assert!(out.granted.is_empty());
        let (u, h) = &out.held[0];
        assert_eq!((u.as_ref(), h.moderator.as_str()), ("u0", "ann"));
        assert_eq!(
            h.expires_at,
            humantime::format_rfc3339_millis(ms(1000)).to_string()
        );
        // Ann renews two of hers (duplicates count once).
        let out = s
            .claim_for_review(
                &[a[1].clone(), a[1].clone(), a[2].clone()],
                "ann",
                ttl,
                ms(900),
            )
            .unwrap();
        assert_eq!(out.granted, a[1..].to_vec());
        // At t0 + 1 s the first claim has expired: free for ben; the renewed ones are not.
        let out = s.claim_for_review(&a[..2], "ben", ttl, ms(1000)).unwrap();
        assert_eq!(out.granted, vec![a[0].clone()]);
        assert_eq!(out.held[0].1.moderator, "ann");
        let st = s.claims_and_reviews(&a, ms(1000)).unwrap();
        let holders: Vec<Option<&str>> = st
            .iter()
            .map(|x| x.claim.as_ref().map(|c| c.moderator.as_str()))
            .collect();
        assert_eq!(holders, [Some("ben"), Some("ann"), Some("ann")]);
        // Releasing someone else's claim does nothing; one's own frees it.
        assert_eq!(s.release_review_claims(&a, "ben").unwrap(), 1);
        assert_eq!(s.release_review_claims(&a[..1], "ann").unwrap(), 0);
        // Feedback by ann on u1 releases her claim on it, not on u2.
        assert!(s.add_submissions(&[on("u1", "ann", 1)]).unwrap()[0].is_ok());
        let st = s.claims_and_reviews(&a, ms(1000)).unwrap();
        let holders: Vec<Option<&str>> = st
            .iter()
            .map(|x| x.claim.as_ref().map(|c| c.moderator.as_str()))
            .collect();
        assert_eq!(holders, [None, None, Some("ann")]);
        assert_eq!(st[1].reviews.len(), 1);
        assert_eq!(
            (
                st[1].reviews[0].moderator.as_deref(),
                st[1].reviews[0].label
            ),
            (Some("ann"), 1)
        );
        // Bad ids are refused, naming the problem.
        let err = s
            .claim_for_review(&[UserId::from(" ")], "ann", ttl, t0)
            .unwrap_err();
        assert!(err.message.contains("empty"), "{err}");
    }

    /// The open claims: unexpired ones, counted and the oldest dated, as claims are
    /// taken, renewed, given up by feedback or release, and expire.
    #[test]
    fn open_claims_count_unexpired_ones_and_date_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FeedbackStore::open_in(dir.path()).unwrap();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let none = OpenClaims::default();
        assert_eq!(s.open_review_claims(t0).unwrap(), none);
        assert_eq!(none.oldest_age(t0), None);
        let ttl = Duration::from_secs(600);
        let a = ids(0..5);
        s.claim_for_review(&a[..3], "ann", ttl, t0).unwrap();
        s.claim_for_review(&a[3..], "ben", ttl, at(60)).unwrap();
        let open = s.open_review_claims(at(120)).unwrap();
        assert_eq!(
            open,
            OpenClaims {
                open: 5,
                oldest_claimed_at: Some(t0)
            }
        );
        assert_eq!(open.oldest_age(at(120)), Some(Duration::from_secs(120)));
        // A claim stamped after `now` (another host's clock) is zero seconds old.
        assert_eq!(
            open.oldest_age(t0 - Duration::from_secs(1)),
            Some(Duration::ZERO)
        );
        // Ann renews u0 (taken anew), gives feedback on u1 and releases u2: ben's two
        // claims at t0 + 60 s are the oldest open ones.
        s.claim_for_review(&a[..1], "ann", ttl, at(200)).unwrap();
        assert!(s.add_submissions(&[on("u1", "ann", 1)]).unwrap()[0].is_ok());
        assert_eq!(s.release_review_claims(&a[2..3], "ann").unwrap(), 1);
        assert_eq!(
            s.open_review_claims(at(300)).unwrap(),
            OpenClaims {
                open: 3,
                oldest_claimed_at: Some(at(60))
            }
        );
        // Feedback by someone else does not end ben's claim on u3; expiry does (a claim
        // expiring at `now` is no longer open).
        assert!(s.add_submissions(&[on("u3", "ann", 0)]).unwrap()[0].is_ok());
        assert_eq!(s.open_review_claims(at(659)).unwrap().open, 3);
        assert_eq!(
            s.open_review_claims(at(660)).unwrap(),
            OpenClaims {
                open: 1,
                oldest_claimed_at: Some(at(200))
            }
        );
        assert_eq!(s.open_review_claims(at(800)).unwrap(), none);
    }

    /// Confirmed labels: one per account, re-confirming replaces it (new confirmer and
    /// time) and returns the one replaced; moderators' records on confirmed accounts
    /// count toward `confirmed` and `agreed_with_confirmed`, except on accounts they
    /// confirmed themselves.
    #[test]
    fn confirmed_labels_replace_and_feed_moderator_stats() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FeedbackStore::open_in(dir.path()).unwrap();
        let subs = vec![
            on("u1", "ann", 1),
            on("u2", "ann", 0),
            on("u3", "ann", 1),
            on("u1", "ben", 0),
            on("u2", "ben", 0),
            on("u3", "boss", 1),
        ];
        assert!(s.add_submissions(&subs).unwrap().iter().all(Result::is_ok));
        let t0 = SystemTime::now();
        let before = s
            .confirm_labels(
                &[(UserId::from("u1"), 1), (UserId::from("u2"), 1)],
                "boss",
                "checked",
                t0,
            )
            .unwrap();
        assert_eq!(before, vec![None, None]);
        // Re-confirm u2 as legitimate, and u3 (boss confirms an account they reviewed).
        let later = t0 + Duration::from_secs(60);
        let before = s
            .confirm_labels(
                &[(UserId::from(" u2 "), 0), (UserId::from("u3"), 1)],
                "cat",
                "second look",
                later,
            )
            .unwrap();
        assert_eq!(before[0].as_ref().unwrap().label, 1);
        assert_eq!(before[0].as_ref().unwrap().confirmed_by, "boss");
        let u2 = s.confirmed_label("u2").unwrap().unwrap();
        assert_eq!((u2.label, u2.confirmed_by.as_str()), (0, "cat"));
        assert_eq!(
            u2.confirmed_at,
            humantime::format_rfc3339_millis(later).to_string()
        );
        assert_eq!(s.confirmed_label("u9").unwrap(), None);
        let stats = s.moderator_stats().unwrap();
        let of = |m: &str| {
            stats
                .iter()
                .find(|x| x.moderator.as_deref() == Some(m))
                .unwrap()
                .clone()
        };
        // ann: u1 (1 = 1), u2 (0 = 0), u3 (1 = 1, confirmed by cat): 3 of 3.
        assert_eq!(
            (of("ann").confirmed, of("ann").agreed_with_confirmed),
            (3, 3)
        );
        // ben: u1 (0 ≠ 1), u2 (0 = 0).
        assert_eq!(
            (of("ben").confirmed, of("ben").agreed_with_confirmed),
            (2, 1)
        );
        // boss's record on u3 is compared with cat's confirmation; boss confirmed u1
        // and u2 but has no records there.
        assert_eq!(
            (of("boss").confirmed, of("boss").agreed_with_confirmed),
            (1, 1)
        );
        // Self-confirmation does not count: cat confirms u3 again, now boss does too.
        s.confirm_labels(&[(UserId::from("u3"), 1)], "boss", "", later)
            .unwrap();
        let stats = s.moderator_stats().unwrap();
        let boss = stats
            .iter()
            .find(|x| x.moderator.as_deref() == Some("boss"))
            .unwrap();
        assert_eq!((boss.confirmed, boss.agreed_with_confirmed), (0, 0));
        // A bad label or id is refused whole.
        let e = s
            .confirm_labels(
                &[(UserId::from("u5"), 1), (UserId::from("u6"), 2)],
                "x",
                "",
                t0,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("labels must be 0 or 1"), "{e}");
        assert_eq!(s.confirmed_label("u5").unwrap(), None);
    }
}
