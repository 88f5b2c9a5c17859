//! The prediction log in a shared PostgreSQL store: one table partitioned by day
//! (`predictions_YYYYMMDD`), so retention drops whole partitions instead of deleting
//! rows one by one at thousands of inserts a second. Every replica's writer inserts its
//! batches (one statement of many rows each) and creates the day's partition when it
//! first needs it; any replica reads what any other logged.

use super::{DecisionTag, ExperimentRow, ExperimentTag, PredictionRecord, Retention, ShadowRow};
use crate::data::catalog::N_FEATURES;
use crate::store::pg::{self, Db};
use postgres::GenericClient;
use std::time::{Duration, SystemTime};

/// Serialises partition creation and removal between replicas (any number).
const PARTITION_LOCK: i64 = 0x5350_5052_4544_4c47; // "SPPREDLG"

/// The columns every read selects (`from_row` reads them in this order).
const COLUMNS: &str = "id, created_at, version, probability, caller, user_id, features, \
                       experiment, other_version, other_probability, \
                       policy_version, decision, matched_rules, \
                       shadow_policy_version, shadow_decision, shadow_matched_rules";
const COLUMN_COUNT: usize = 16;

/// The day (UTC) of an RFC 3339 time, in days since 1970-01-01.
fn day_of(created_at: &str) -> i32 {
    humantime::parse_rfc3339_weak(created_at)
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| (d.as_secs() / 86_400) as i32)
}

/// `YYYY-MM-DD` of day number `day`.
fn date_of(day: i32) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(day).unwrap_or(0) * 86_400);
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_string()
}

fn partition_name(day: i32) -> String {
    format!("predictions_{}", date_of(day).replace('-', ""))
}

/// Creates the partitions of `days` that do not exist yet.
pub fn ensure_partitions(c: &mut impl GenericClient, days: &[i32]) -> Result<(), postgres::Error> {
    let mut tx = c.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])?;
    for &day in days {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF predictions
             FOR VALUES FROM ({day}) TO ({})",
            partition_name(day),
            day + 1
        ))?;
    }
    tx.commit()
}

/// Writes `batch`; returns how many rows were new (an id already stored is kept
/// once). Creates missing day partitions first (`known` remembers those made already by
/// this writer). Binary COPY, the server's cheapest way in; a batch whose COPY meets an
/// id already stored (ids are random: practically never) is inserted row by row,
/// skipping it.
pub fn insert(
    c: &mut impl GenericClient,
    batch: &[PredictionRecord],
    known: &mut Vec<i32>,
) -> Result<u64, postgres::Error> {
    use postgres::types::Type;
    let days: Vec<i32> = batch.iter().map(|r| day_of(&r.created_at)).collect();
    let mut missing: Vec<i32> = days
        .iter()
        .copied()
        .filter(|d| !known.contains(d))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        ensure_partitions(c, &missing)?;
        known.extend(missing);
    }
    let versions: Vec<i32> = batch
        .iter()
        .map(|r| i32::try_from(r.version).unwrap_or(i32::MAX))
        .collect();
    let other: Vec<Option<i32>> = batch
        .iter()
        .map(|r| {
            r.experiment
                .as_ref()
                .map(|t| i32::try_from(t.other_version).unwrap_or(i32::MAX))
        })
        .collect();
    let experiments: Vec<Option<&str>> = batch
        .iter()
        .map(|r| r.experiment.as_ref().map(|t| t.experiment.as_str()))
        .collect();
    let other_probabilities: Vec<Option<f64>> = batch
        .iter()
        .map(|r| r.experiment.as_ref().map(|t| t.other_probability))
        .collect();
    // The live and shadow policies' decisions: version, outcome, rules (JSON).
    let decided = |d: &Option<DecisionTag>| {
        d.as_ref().map_or((None, None, None), |d| {
            (
                Some(i32::try_from(d.policy_version).unwrap_or(i32::MAX)),
                Some(d.decision.clone()),
                Some(d.rules_text()),
            )
        })
    };
    type Decided = (Option<i32>, Option<String>, Option<String>);
    let decisions: Vec<(Decided, Decided)> = batch
        .iter()
        .map(|r| (decided(&r.decision), decided(&r.shadow)))
        .collect();
    let row = |i: usize| -> [&(dyn postgres::types::ToSql + Sync); 17] {
        let r = &batch[i];
        let (live, shadow) = &decisions[i];
        [
            &r.id,
            &r.created_at,
            &versions[i],
            &r.score,
            &r.caller,
            &r.user_id,
            &r.features,
            &experiments[i],
            &other[i],
            &other_probabilities[i],
            &live.0,
            &live.1,
            &live.2,
            &shadow.0,
            &shadow.1,
            &shadow.2,
            &days[i],
        ]
    };
    let mut tx = c.transaction()?;
    let copied = (|| {
        let sink = tx.copy_in(&format!(
            "COPY predictions ({COLUMNS}, logged_day) FROM STDIN (FORMAT binary)"
        ))?;
        let types = [
            Type::TEXT,
            Type::TEXT,
            Type::INT4,
            Type::FLOAT8,
            Type::TEXT,
            Type::TEXT,
            Type::FLOAT8_ARRAY,
            Type::TEXT,
            Type::INT4,
            Type::FLOAT8,
            Type::INT4,
            Type::TEXT,
            Type::TEXT,
            Type::INT4,
            Type::TEXT,
            Type::TEXT,
            Type::INT4,
        ];
        let mut w = postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
        for i in 0..batch.len() {
            w.write(&row(i))?;
        }
        w.finish()
    })();
    match copied {
        Ok(n) => {
            tx.commit()?;
            Ok(n)
        }
        Err(e) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
            drop(tx);
            let mut tx = c.transaction()?;
            let stmt = tx.prepare(&format!(
                "INSERT INTO predictions ({COLUMNS}, logged_day)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                         $17) ON CONFLICT DO NOTHING"
            ))?;
            let mut stored = 0;
            for i in 0..batch.len() {
                stored += tx.execute(&stmt, &row(i))?;
            }
            tx.commit()?;
            Ok(stored)
        }
        Err(e) => Err(e),
    }
}

fn from_row(r: &postgres::Row) -> Result<PredictionRecord, String> {
    let features: Vec<f64> = r.get(6);
    if features.len() != N_FEATURES {
        return Err(format!(
            "prediction {} holds {} feature values, not {N_FEATURES}",
            r.get::<_, String>(0),
            features.len()
        ));
    }
    let version = crate::store::pg::registry::checked_version;
    let experiment = match (
        r.get::<_, Option<String>>(7),
        r.get::<_, Option<i32>>(8),
        r.get::<_, Option<f64>>(9),
    ) {
        (Some(experiment), Some(v), Some(other_probability)) => Some(ExperimentTag {
            experiment,
            other_version: version(v)?,
            other_probability,
        }),
        _ => None,
    };
    let decided = |k: usize| {
        DecisionTag::from_columns(
            r.get::<_, Option<i32>>(k).map(i64::from),
            r.get(k + 1),
            r.get(k + 2),
        )
    };
    Ok(PredictionRecord {
        decision: decided(10),
        shadow: decided(13),
        id: r.get(0),
        created_at: r.get(1),
        version: version(r.get(2))?,
        score: r.get(3),
        caller: r.get(4),
        user_id: r.get(5),
        features,
        experiment,
    })
}

/// What a read found: rows, or a database failure, or a stored row that is damaged.
pub enum ReadError {
    Db(postgres::Error),
    Corrupt(String),
}

impl From<postgres::Error> for ReadError {
    fn from(e: postgres::Error) -> ReadError {
        ReadError::Db(e)
    }
}

pub fn get(c: &mut impl GenericClient, id: &str) -> Result<Option<PredictionRecord>, ReadError> {
    c.query_opt(
        &format!("SELECT {COLUMNS} FROM predictions WHERE id = $1"),
        &[&id],
    )?
    .map(|r| from_row(&r).map_err(ReadError::Corrupt))
    .transpose()
}

pub fn recent(c: &mut impl GenericClient, n: usize) -> Result<Vec<PredictionRecord>, ReadError> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    c.query(
        &format!("SELECT {COLUMNS} FROM predictions ORDER BY seq DESC LIMIT $1"),
        &[&n],
    )?
    .iter()
    .map(|r| from_row(r).map_err(ReadError::Corrupt))
    .collect()
}

/// Up to `n` records after position `after` in order of arrival, each with its
/// position (`seq`): a whole log read page by page.
pub fn page(
    c: &mut impl GenericClient,
    after: i64,
    n: usize,
) -> Result<Vec<(i64, PredictionRecord)>, ReadError> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    c.query(
        &format!("SELECT {COLUMNS}, seq FROM predictions WHERE seq > $1 ORDER BY seq LIMIT $2"),
        &[&after, &n],
    )?
    .iter()
    .map(|r| {
        let seq: i64 = r.get(COLUMN_COUNT);
        from_row(r).map(|p| (seq, p)).map_err(ReadError::Corrupt)
    })
    .collect()
}

pub fn experiment_rows(
    c: &mut impl GenericClient,
    experiment: &str,
) -> Result<Vec<ExperimentRow>, ReadError> {
    c.query(
        "SELECT id, user_id, version, probability, other_version, other_probability
         FROM predictions WHERE experiment = $1 ORDER BY seq",
        &[&experiment],
    )?
    .iter()
    .map(|r| {
        let version = crate::store::pg::registry::checked_version;
        Ok(ExperimentRow {
            id: r.get(0),
            user_id: r.get(1),
            version: version(r.get(2)).map_err(ReadError::Corrupt)?,
            probability: r.get(3),
            other_version: version(r.get(4)).map_err(ReadError::Corrupt)?,
            other_probability: r.get(5),
        })
    })
    .collect()
}

pub fn shadow_rows(c: &mut impl GenericClient, policy: u32) -> Result<Vec<ShadowRow>, ReadError> {
    let policy = i32::try_from(policy).unwrap_or(i32::MAX);
    Ok(c.query(
        "SELECT user_id, decision, shadow_decision FROM predictions
             WHERE shadow_policy_version = $1 AND shadow_decision IS NOT NULL ORDER BY seq",
        &[&policy],
    )?
    .iter()
    .map(|r| ShadowRow {
        user_id: r.get(0),
        live: r.get(1),
        shadow: r.get(2),
    })
    .collect())
}

/// A column the log is read by (indexed on both backends).
#[derive(Debug, Clone, Copy)]
pub enum Column {
    UserId,
    Decision,
}

impl Column {
    pub fn name(self) -> &'static str {
        match self {
            Column::UserId => "user_id",
            Column::Decision => "decision",
        }
    }
}

/// The newest `n` records whose `column` is `value`, newest first.
pub fn newest_where(
    c: &mut impl GenericClient,
    column: Column,
    value: &str,
    n: usize,
) -> Result<Vec<PredictionRecord>, ReadError> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    c.query(
        &format!(
            "SELECT {COLUMNS} FROM predictions WHERE {} = $1 ORDER BY seq DESC LIMIT $2",
            column.name()
        ),
        &[&value, &n],
    )?
    .iter()
    .map(|r| from_row(r).map_err(ReadError::Corrupt))
    .collect()
}

pub fn count(c: &mut impl GenericClient) -> Result<u64, postgres::Error> {
    let n: i64 = c.query_one("SELECT count(*) FROM predictions", &[])?.get(0);
    Ok(n.max(0) as u64)
}

/// The day partitions, oldest first: (table name, day).
fn partitions(c: &mut impl GenericClient) -> Result<Vec<(String, String)>, postgres::Error> {
    let mut out: Vec<(String, String)> = c
        .query(
            "SELECT c.relname FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = 'predictions'",
            &[],
        )?
        .iter()
        .filter_map(|r| {
            let name: String = r.get(0);
            let d = name.strip_prefix("predictions_")?;
            (d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit())).then(|| {
                (
                    name.clone(),
                    format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]),
                )
            })
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Applies `retention` by dropping whole day partitions: those older than `max_days`,
/// and those older than the newest days that together hold `max_rows` rows (today's
/// partition always stays). Returns the rows the dropped partitions held (estimated for
/// analysed partitions, see [`rows_in`]).
pub fn prune(db: &Db, retention: Retention) -> Result<u64, pg::DbError> {
    let mut c = db.conn()?;
    let fail = db.err("pruning the prediction log");
    let parts = partitions(&mut *c).map_err(&fail)?;
    let mut drop_before: Option<String> = None;
    if retention.max_days > 0 {
        let cutoff = SystemTime::now()
            .checked_sub(Duration::from_secs(u64::from(retention.max_days) * 86_400))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let cutoff = humantime::format_rfc3339_seconds(cutoff).to_string();
        drop_before = Some(cutoff[..10].to_string());
    }
    if retention.max_rows > 0 {
        // Count from the newest day back until the limit is reached: older days go.
        let mut kept = 0u64;
        for (name, day) in parts.iter().rev() {
            if kept >= retention.max_rows {
                let keep_from = parts.iter().find(|(_, d)| d > day).map(|(_, d)| d.clone());
                if let Some(k) = keep_from
                    && drop_before.as_ref().is_none_or(|b| &k > b)
                {
                    drop_before = Some(k);
                }
                break;
            }
            let need = retention.max_rows - kept;
            kept += rows_in(&mut *c, name, Some(need)).map_err(&fail)?;
        }
    }
    let Some(before) = drop_before else {
        return Ok(0);
    };
    let today = humantime::format_rfc3339_seconds(SystemTime::now()).to_string()[..10].to_string();
    let mut removed = 0u64;
    for (name, day) in parts.iter().filter(|(_, d)| *d < before && *d < today) {
        let mut tx = c.transaction().map_err(&fail)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
            .map_err(&fail)?;
        let n = rows_in(&mut tx, name, None).map_err(&fail)?;
        tx.batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
            .map_err(&fail)?;
        tx.commit().map_err(&fail)?;
        tracing::info!("prediction log: dropped the partition of {day} ({n} rows)");
        removed += n;
    }
    Ok(removed)
}

/// The rows of partition `name` (at most `limit`): the planner's estimate when the
/// partition has been analysed (a day of traffic is, by autovacuum: counting hundreds
/// of millions of rows every minute would cost more than the inserts), else counted.
fn rows_in(
    c: &mut impl GenericClient,
    name: &str,
    limit: Option<u64>,
) -> Result<u64, postgres::Error> {
    let estimate: f32 = c
        .query_opt(
            "SELECT reltuples FROM pg_class WHERE relname = $1",
            &[&name],
        )?
        .map_or(-1.0, |r| r.get(0));
    let cap = limit.unwrap_or(u64::MAX);
    if estimate > 0.0 {
        return Ok((estimate as u64).min(cap));
    }
    // Never analysed (or analysed while empty): count, stopping at the limit.
    let cap = i64::try_from(cap).unwrap_or(i64::MAX);
    let n: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM (SELECT 1 FROM {name} LIMIT $1) s"),
            &[&cap],
        )?
        .get(0);
    Ok(n.max(0) as u64)
}
