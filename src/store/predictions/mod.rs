//! The scoring service's durable prediction log (`predictions.sqlite` in the registry).
//!
//! Every prediction the service makes is appended; feedback later names a prediction by
//! its id and takes its features from here, and drift is measured on the newest rows.
//! Appending never touches the disk on the caller's thread: records go over a bounded
//! channel to one writer thread, which inserts them in batches ([`BATCH_ROWS`] rows or
//! [`BATCH_WAIT`], whichever comes first), one transaction per batch, SQLite in WAL mode
//! with `synchronous=FULL`. The same thread applies the [`Retention`] limits at open and
//! every [`PRUNE_EVERY`] appends. Readers use their own connection (WAL lets them read
//! while the writer writes).

mod shared;

use crate::data::catalog::N_FEATURES;
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{
    Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError, sync_channel,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Rows the writer inserts in one transaction at most.
pub const BATCH_ROWS: usize = 2_000;
/// How long the writer lets a partial batch wait before committing it.
pub const BATCH_WAIT: Duration = Duration::from_millis(50);
/// How long the writer naps between looks at the queue while filling a batch (the most a
/// flush waits for it).
const NAP: Duration = Duration::from_millis(5);
/// Records waiting for the writer at most; beyond it [`PredictionLog::append`] drops the
/// record (counted by [`PredictionLog::dropped`]) instead of growing memory.
pub const MAX_PENDING: usize = 100_000;
/// The writer applies the retention limits after this many appends (and at open).
pub const PRUNE_EVERY: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum PredictionLogError {
    #[error("{path}: {message}")]
    Db {
        path: String,
        message: String,
        /// Busy, corrupt...: how a front-end answers it.
        kind: crate::store::ErrorKind,
    },
    /// The writer thread is gone (it panicked); nothing more can be written.
    #[error("{path}: the prediction log's writer has stopped; appended predictions are not stored")]
    WriterStopped { path: String },
}

/// One prediction as the service made it.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRecord {
    /// Unique id ([`new_prediction_id`]).
    pub id: String,
    /// When (RFC 3339, UTC, as `humantime` writes it: `2025-01-31T12:00:00.123Z`).
    pub created_at: String,
    /// The model version that scored it.
    pub version: u32,
    /// The 51 raw feature values (NaN = missing).
    pub features: Vec<f64>,
    /// The model's raw score (the verdict is `score > threshold`; the column keeps its
    /// first name, `probability`).
    pub score: f64,
    /// The token name of whoever asked.
    pub caller: String,
    pub user_id: Option<String>,
    /// Set while a shadow or canary experiment runs: the other version's score of the
    /// same request.
    pub experiment: Option<ExperimentTag>,
    /// The live decision policy's decision, when one was published.
    pub decision: Option<DecisionTag>,
    /// What a policy running in shadow would have decided.
    pub shadow: Option<DecisionTag>,
}

/// A policy's decision on a logged prediction: which policy, its outcome, the rules
/// that matched (by name, in the policy's order).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DecisionTag {
    pub policy_version: u32,
    pub decision: String,
    pub matched_rules: Vec<String>,
}

impl DecisionTag {
    /// From stored columns: none when the policy version or the decision is missing;
    /// rules that do not read as a JSON list of names are kept as one name.
    fn from_columns(
        version: Option<i64>,
        decision: Option<String>,
        rules: Option<String>,
    ) -> Option<DecisionTag> {
        let (v, decision) = (u32::try_from(version?).ok()?, decision?);
        let matched_rules = match rules {
            None => Vec::new(),
            Some(t) => serde_json::from_str(&t).unwrap_or_else(|_| vec![t]),
        };
        Some(DecisionTag {
            policy_version: v,
            decision,
            matched_rules,
        })
    }

    fn rules_text(&self) -> String {
        serde_json::to_string(&self.matched_rules).unwrap_or_else(|_| "[]".into())
    }
}

/// One logged prediction decided by a shadow policy, without its features
/// ([`PredictionLog::shadow_rows`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowRow {
    pub user_id: Option<String>,
    /// The live policy's decision (None: no live policy then).
    pub live: Option<String>,
    pub shadow: String,
}

/// A prediction made during an experiment: which experiment, and what the version that
/// did not answer said (both versions score every request of an experiment).
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentTag {
    pub experiment: String,
    pub other_version: u32,
    /// Its raw score.
    pub other_probability: f64,
}

/// One logged prediction of an experiment, without its features
/// ([`PredictionLog::experiment_rows`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentRow {
    pub id: String,
    pub user_id: Option<String>,
    /// The version that answered, and its raw score.
    pub version: u32,
    pub probability: f64,
    /// The version that scored the request beside it.
    pub other_version: u32,
    /// Its raw score.
    pub other_probability: f64,
}

/// How much of the log is kept. Rows older than `max_days` days are removed, then the
/// oldest rows beyond `max_rows`. Default: 1,000,000 rows and 30 days (at the design load
/// of 10,000 predictions a second the row limit keeps under two minutes; at a typical
/// few predictions a second, about a month). A limit of 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_rows: u64,
    pub max_days: u32,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            max_rows: 1_000_000,
            max_days: 30,
        }
    }
}

/// A new prediction id: `p-`, the time in milliseconds (12 hex digits) and 80 random
/// bits from the operating system (20 hex digits). Unique across processes and
/// restarts; rising with time, so the log's index grows at its end (random ids made
/// every insert touch a random page of a large index).
pub fn new_prediction_id() -> String {
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        & 0xffff_ffff_ffff;
    let mut bytes = [0u8; 10];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness (never seen on supported systems): time, process, a counter
        // and the thread, hashed; still unique across processes and restarts.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = format!(
            "{nanos}:{}:{}:{:?}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::thread::current().id()
        );
        return format!(
            "p-{millis:012x}{}",
            &crate::util::hash::sha256_hex(seed.as_bytes())[..20]
        );
    }
    let mut s = String::with_capacity(34);
    s.push_str(&format!("p-{millis:012x}"));
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

enum Msg {
    /// Boxed: the bounded channel allocates its slots up front, so a slot stays small.
    Record(Box<PredictionRecord>),
    /// Commit what is pending, then answer (the error of any failed commit since the
    /// last flush, if there was one).
    Flush(SyncSender<Result<(), String>>),
    /// Apply the retention limits now; answers the number of rows removed.
    Prune(SyncSender<Result<u64, String>>),
    Shutdown,
}

/// Counters shared by the handles and the writer.
#[derive(Default)]
struct Counters {
    /// Records handed to the channel (counted before sending, uncounted on failure).
    enqueued: AtomicU64,
    /// Records the writer has finished with (committed or failed).
    processed: AtomicU64,
    dropped: AtomicU64,
}

struct Inner {
    path: PathBuf,
    /// What to call the log in messages: its file, or the shared database.
    shown: String,
    tx: SyncSender<Msg>,
    counters: Arc<Counters>,
    reader: Reader,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// A shared log's pruner thread ends when this is dropped.
    _pruner: Option<std::sync::mpsc::Sender<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer commits what is pending, then ends.
        let _ = self.tx.send(Msg::Shutdown);
        let handle = self
            .writer
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// Where reads go: the file's reader connection, or the shared database's pool.
enum Reader {
    Local(Mutex<Connection>),
    Shared(crate::store::pg::Db),
}

/// Where the writer commits.
enum Sink {
    Local(Connection),
    Shared {
        db: crate::store::pg::Db,
        /// Day partitions (days since 1970-01-01) this writer has made sure exist.
        known: Vec<i32>,
        /// While the database does not answer: when to try the held rows again.
        retry_at: Option<Instant>,
    },
}

/// While the shared database does not answer, the writer holds at most this many rows
/// (beyond them, records are dropped and counted) and tries again this often.
const HOLD_WHILE_DOWN: usize = MAX_PENDING;
const RETRY_EVERY: Duration = Duration::from_millis(500);
/// How often the writer applies the retention limits to a shared log (dropping whole
/// day partitions; counting the newest ones costs a read).
const SHARED_PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The prediction log of one registry. Cheap to clone (all clones share one writer);
/// when the last clone is dropped, the writer commits what is pending and its thread
/// is joined.
#[derive(Clone)]
pub struct PredictionLog {
    inner: Arc<Inner>,
}

fn feature_columns() -> Vec<String> {
    (1..=N_FEATURES).map(|i| format!("x{i}")).collect()
}

const COLUMNS: &str = "id, created_at, version, probability, caller, user_id";
/// Columns added later (after the features): an experiment's (NULL outside
/// experiments), then the policies' decisions (NULL without a policy).
const EXPERIMENT_COLUMNS: [(&str, &str); 9] = [
    ("experiment", "TEXT"),
    ("other_version", "INTEGER"),
    ("other_probability", "REAL"),
    ("policy_version", "INTEGER"),
    ("decision", "TEXT"),
    ("matched_rules", "TEXT"),
    ("shadow_policy_version", "INTEGER"),
    ("shadow_decision", "TEXT"),
    ("shadow_matched_rules", "TEXT"),
];

fn experiment_columns() -> String {
    EXPERIMENT_COLUMNS.map(|(c, _)| c).join(", ")
}

fn connect(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = crate::store::open_durable(path)?;
    // 32 MiB of page cache (negative: KiB): the index pages being appended to stay in
    // memory at full load.
    conn.pragma_update(None, "cache_size", -32_768)?;
    Ok(conn)
}

fn create_table(conn: &Connection) -> Result<(), rusqlite::Error> {
    let cols: Vec<String> = feature_columns()
        .iter()
        .map(|c| format!("{c} REAL"))
        .collect();
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS predictions (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            version INTEGER NOT NULL,
            probability REAL NOT NULL,
            caller TEXT NOT NULL,
            user_id TEXT,
            {}
        );
        CREATE INDEX IF NOT EXISTS predictions_created ON predictions(created_at);",
        cols.join(",\n")
    ))?;
    add_experiment_columns(conn)
}

/// Adds the experiment columns to a log made before them (NULL for its rows). Under
/// IMMEDIATE, so two processes opening the same old log do not both add them.
fn add_experiment_columns(conn: &Connection) -> Result<(), rusqlite::Error> {
    let missing = |conn: &Connection| -> Result<Vec<(&str, &str)>, rusqlite::Error> {
        let mut out = Vec::new();
        for (col, ty) in EXPERIMENT_COLUMNS {
            let has = conn
                .prepare(&format!(
                    "SELECT 1 FROM pragma_table_info('predictions') WHERE name = '{col}'"
                ))?
                .exists([])?;
            if !has {
                out.push((col, ty));
            }
        }
        Ok(out)
    };
    if !missing(conn)?.is_empty() {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let added = (|| {
            for (col, ty) in missing(conn)? {
                conn.execute_batch(&format!("ALTER TABLE predictions ADD COLUMN {col} {ty}"))?;
            }
            Ok(())
        })();
        match added {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS predictions_experiment ON predictions(experiment)
         WHERE experiment IS NOT NULL;
         CREATE INDEX IF NOT EXISTS predictions_user ON predictions(user_id)
         WHERE user_id IS NOT NULL;
         CREATE INDEX IF NOT EXISTS predictions_decision ON predictions(decision)
         WHERE decision IS NOT NULL;
         CREATE INDEX IF NOT EXISTS predictions_shadow ON predictions(shadow_policy_version)
         WHERE shadow_policy_version IS NOT NULL;",
    )
}

fn insert_sql() -> String {
    let cols = feature_columns();
    format!(
        "INSERT OR IGNORE INTO predictions ({COLUMNS}, {}, {}) VALUES ({})",
        cols.join(", "),
        experiment_columns(),
        (1..=6 + N_FEATURES + EXPERIMENT_COLUMNS.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn select_sql(tail: &str) -> String {
    format!(
        "SELECT {COLUMNS}, {}, {} FROM predictions {tail}",
        feature_columns().join(", "),
        experiment_columns()
    )
}

fn from_row(r: &rusqlite::Row<'_>) -> Result<PredictionRecord, rusqlite::Error> {
    let mut features = Vec::with_capacity(N_FEATURES);
    for i in 0..N_FEATURES {
        features.push(r.get::<_, Option<f64>>(6 + i)?.unwrap_or(f64::NAN));
    }
    let e = 6 + N_FEATURES;
    let experiment = match (
        r.get::<_, Option<String>>(e)?,
        r.get::<_, Option<u32>>(e + 1)?,
        r.get::<_, Option<f64>>(e + 2)?,
    ) {
        (Some(experiment), Some(other_version), Some(other_probability)) => Some(ExperimentTag {
            experiment,
            other_version,
            other_probability,
        }),
        _ => None,
    };
    let decision = DecisionTag::from_columns(r.get(e + 3)?, r.get(e + 4)?, r.get(e + 5)?);
    let shadow = DecisionTag::from_columns(r.get(e + 6)?, r.get(e + 7)?, r.get(e + 8)?);
    Ok(PredictionRecord {
        experiment,
        decision,
        shadow,
        id: r.get(0)?,
        created_at: r.get(1)?,
        version: r.get(2)?,
        score: r.get(3)?,
        caller: r.get(4)?,
        user_id: r.get(5)?,
        features,
    })
}

/// Removes rows beyond the retention limits (by age, then the oldest beyond the row
/// limit); returns how many.
fn prune(conn: &Connection, retention: Retention) -> Result<u64, rusqlite::Error> {
    let mut removed = 0;
    if retention.max_days > 0 {
        let cutoff = SystemTime::now()
            .checked_sub(Duration::from_secs(u64::from(retention.max_days) * 86_400))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let cutoff = humantime::format_rfc3339_millis(cutoff).to_string();
        removed += conn.execute("DELETE FROM predictions WHERE created_at < ?1", [cutoff])?;
    }
    if retention.max_rows > 0 {
        // Rows are appended with rising rowids, so the newest `max_rows` are those
        // above max(rowid) - max_rows (a lookup, where an OFFSET would read them all).
        removed += conn.execute(
            "DELETE FROM predictions WHERE rowid <= (SELECT max(rowid) FROM predictions) - ?1",
            [i64::try_from(retention.max_rows).unwrap_or(i64::MAX)],
        )?;
    }
    Ok(removed as u64)
}

impl PredictionLog {
    /// Opens (creating if needed) the log of the registry at `registry_root`, applies
    /// the retention limits and starts the writer thread.
    pub fn open(
        registry_root: &Path,
        retention: Retention,
    ) -> Result<PredictionLog, PredictionLogError> {
        let path = crate::store::layout::Layout::new(registry_root).predictions_db();
        let err = |e: &dyn std::fmt::Display| PredictionLogError::Db {
            path: path.display().to_string(),
            message: e.to_string(),
            kind: crate::store::ErrorKind::Other,
        };
        std::fs::create_dir_all(registry_root).map_err(|e| err(&e))?;
        let conn = connect(&path).map_err(|e| err(&e))?;
        create_table(&conn).map_err(|e| err(&e))?;
        prune(&conn, retention).map_err(|e| err(&e))?;
        let reader = connect(&path).map_err(|e| err(&e))?;
        let shown = path.display().to_string();
        PredictionLog::start(
            path.clone(),
            shown,
            Sink::Local(conn),
            Reader::Local(Mutex::new(reader)),
            retention,
        )
        .map_err(|e| err(&e))
    }

    /// The log of `registry`, wherever it keeps it: its folder's SQLite file, or the
    /// partitioned table of its shared database (the local cache holds no log then).
    pub fn open_for(
        registry: &crate::store::Registry,
        retention: Retention,
    ) -> Result<PredictionLog, PredictionLogError> {
        let Some(db) = registry.shared() else {
            return PredictionLog::open(registry.root(), retention);
        };
        let shown = format!("{}: predictions", db.shown());
        if let Err(e) = shared::prune(db, retention) {
            // A log that cannot be pruned now still logs; the pruner tries again.
            tracing::warn!("{shown}: {e}");
        }
        let mut log = PredictionLog::start(
            PathBuf::from(&shown),
            shown.clone(),
            Sink::Shared {
                db: db.clone(),
                known: Vec::new(),
                retry_at: None,
            },
            Reader::Shared(db.clone()),
            retention,
        )
        .map_err(|e| PredictionLogError::Db {
            path: format!("{}: predictions", db.shown()),
            message: e.to_string(),
            kind: crate::store::ErrorKind::Other,
        })?;
        // Retention on a thread of its own: dropping a partition waits for the
        // partition lock and reads statistics, which must not hold up the writer
        // (whose queue would fill at full load).
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (db, place) = (db.clone(), shown.clone());
        std::thread::Builder::new()
            .name("prediction-log-prune".into())
            .spawn(move || {
                lower_priority();
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(SHARED_PRUNE_EVERY)
                {
                    if let Err(e) = shared::prune(&db, retention) {
                        tracing::error!("{place}: pruning failed: {e}");
                    }
                }
            })
            .map_err(|e| PredictionLogError::Db {
                path: shown,
                message: e.to_string(),
                kind: crate::store::ErrorKind::Other,
            })?;
        if let Some(inner) = Arc::get_mut(&mut log.inner) {
            inner._pruner = Some(stop);
        }
        Ok(log)
    }

    fn start(
        path: PathBuf,
        shown: String,
        sink: Sink,
        reader: Reader,
        retention: Retention,
    ) -> std::io::Result<PredictionLog> {
        let counters = Arc::new(Counters::default());
        let (tx, rx) = sync_channel(MAX_PENDING);
        let writer = Writer {
            sink,
            retention,
            counters: counters.clone(),
            shown: shown.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("prediction-log".into())
            .spawn(move || writer.run(rx))?;
        Ok(PredictionLog {
            inner: Arc::new(Inner {
                path,
                shown,
                tx,
                counters,
                reader,
                writer: Mutex::new(Some(handle)),
                _pruner: None,
            }),
        })
    }

    /// The log's file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Queues `r` for the writer; never waits for the disk. When the writer is gone, the
    /// queue already holds [`MAX_PENDING`] records, or `r` does not have 51 features,
    /// the record is dropped and counted ([`PredictionLog::dropped`]).
    pub fn append(&self, r: PredictionRecord) {
        let c = &self.inner.counters;
        if r.features.len() != N_FEATURES {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Counted before sending, so `enqueued >= processed` always holds (see `get`).
        c.enqueued.fetch_add(1, Ordering::SeqCst);
        match self.inner.tx.try_send(Msg::Record(Box::new(r))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                c.enqueued.fetch_sub(1, Ordering::SeqCst);
                c.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Returns once every record appended before the call is committed (or reports the
    /// failure of a commit since the last flush).
    pub fn flush(&self) -> Result<(), PredictionLogError> {
        let (tx, rx) = sync_channel(1);
        self.ask(Msg::Flush(tx), rx)
    }

    /// Applies the retention limits now (on the writer thread, after what is pending);
    /// returns the number of rows removed. The writer also does this by itself.
    pub fn prune(&self) -> Result<u64, PredictionLogError> {
        let (tx, rx) = sync_channel(1);
        self.ask(Msg::Prune(tx), rx)
    }

    fn ask<T>(&self, msg: Msg, rx: Receiver<Result<T, String>>) -> Result<T, PredictionLogError> {
        let stopped = || PredictionLogError::WriterStopped {
            path: self.inner.shown.clone(),
        };
        self.inner.tx.send(msg).map_err(|_| stopped())?;
        rx.recv()
            .map_err(|_| stopped())?
            .map_err(|message| PredictionLogError::Db {
                path: self.inner.shown.clone(),
                message,
                kind: crate::store::ErrorKind::Other,
            })
    }

    fn db_err(&self, e: rusqlite::Error) -> PredictionLogError {
        PredictionLogError::Db {
            path: self.inner.shown.clone(),
            message: e.to_string(),
            kind: crate::store::sqlite_kind(&e),
        }
    }

    /// The file's reader connection, or the shared store (`Err`).
    fn reader(&self) -> Result<std::sync::MutexGuard<'_, Connection>, &crate::store::pg::Db> {
        match &self.inner.reader {
            Reader::Local(c) => Ok(c.lock().unwrap_or_else(|e| e.into_inner())),
            Reader::Shared(db) => Err(db),
        }
    }

    /// Runs a read on the shared store.
    fn shared_read<T>(
        &self,
        db: &crate::store::pg::Db,
        f: impl FnOnce(&mut crate::store::pg::Conn) -> Result<T, shared::ReadError>,
    ) -> Result<T, PredictionLogError> {
        let mut c = db.conn().map_err(|e| PredictionLogError::Db {
            path: self.inner.shown.clone(),
            message: e.message,
            kind: e.kind,
        })?;
        f(&mut c).map_err(|e| match e {
            shared::ReadError::Db(e) => PredictionLogError::Db {
                path: self.inner.shown.clone(),
                message: crate::store::pg::message(&e),
                kind: crate::store::pg::kind(&e),
            },
            shared::ReadError::Corrupt(message) => PredictionLogError::Db {
                path: self.inner.shown.clone(),
                message,
                kind: crate::store::ErrorKind::Corrupt,
            },
        })
    }

    /// The record with id `id`, including records appended before the call and not yet
    /// committed (then this waits for their commit).
    pub fn get(&self, id: &str) -> Result<Option<PredictionRecord>, PredictionLogError> {
        let c = &self.inner.counters;
        // Read before the query: if nothing was pending then, every record appended
        // before this call was committed before the query ran.
        let processed = c.processed.load(Ordering::SeqCst);
        let pending = c.enqueued.load(Ordering::SeqCst) > processed;
        let found = self.lookup(id)?;
        if found.is_some() || !pending {
            return Ok(found);
        }
        self.flush()?;
        self.lookup(id)
    }

    fn lookup(&self, id: &str) -> Result<Option<PredictionRecord>, PredictionLogError> {
        let conn = match self.reader() {
            Ok(c) => c,
            Err(db) => return self.shared_read(db, |c| shared::get(&mut **c, id)),
        };
        let mut stmt = conn
            .prepare_cached(&select_sql("WHERE id = ?1"))
            .map_err(|e| self.db_err(e))?;
        stmt.query_row([id], from_row)
            .optional()
            .map_err(|e| self.db_err(e))
    }

    /// The newest `n` committed records, newest first (records appended in the last
    /// [`BATCH_WAIT`] may not be there yet; [`PredictionLog::flush`] first to include them).
    pub fn recent(&self, n: usize) -> Result<Vec<PredictionRecord>, PredictionLogError> {
        let conn = match self.reader() {
            Ok(c) => c,
            Err(db) => return self.shared_read(db, |c| shared::recent(&mut **c, n)),
        };
        let mut stmt = conn
            .prepare_cached(&select_sql("ORDER BY rowid DESC LIMIT ?1"))
            .map_err(|e| self.db_err(e))?;
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        stmt.query_map([n], from_row)
            .map_err(|e| self.db_err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db_err(e))
    }

    /// Up to `n` committed records after position `after` (0: from the start), in
    /// order of arrival, each with its position: the whole log, read page by page
    /// (what a copy of the store reads).
    pub fn page(
        &self,
        after: i64,
        n: usize,
    ) -> Result<Vec<(i64, PredictionRecord)>, PredictionLogError> {
        let conn = match self.reader() {
            Ok(c) => c,
            Err(db) => return self.shared_read(db, |c| shared::page(&mut **c, after, n)),
        };
        let sql = format!(
            "SELECT {COLUMNS}, {}, {}, rowid FROM predictions WHERE rowid > ?1
             ORDER BY rowid LIMIT ?2",
            feature_columns().join(", "),
            experiment_columns()
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| self.db_err(e))?;
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let last = 6 + N_FEATURES + EXPERIMENT_COLUMNS.len();
        stmt.query_map([after, n], |r| Ok((r.get(last)?, from_row(r)?)))
            .map_err(|e| self.db_err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db_err(e))
    }

    /// The committed predictions of experiment `experiment`, oldest first, without
    /// their features (flush first to include the newest).
    pub fn experiment_rows(
        &self,
        experiment: &str,
    ) -> Result<Vec<ExperimentRow>, PredictionLogError> {
        let conn = match self.reader() {
            Ok(c) => c,
            Err(db) => {
                return self.shared_read(db, |c| shared::experiment_rows(&mut **c, experiment));
            }
        };
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, user_id, version, probability, other_version, other_probability
                 FROM predictions WHERE experiment = ?1 ORDER BY rowid",
            )
            .map_err(|e| self.db_err(e))?;
        stmt.query_map([experiment], |r| {
            Ok(ExperimentRow {
                id: r.get(0)?,
                user_id: r.get(1)?,
                version: r.get(2)?,
                probability: r.get(3)?,
                other_version: r.get(4)?,
                other_probability: r.get(5)?,
            })
        })
        .map_err(|e| self.db_err(e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| self.db_err(e))
    }

    /// The committed predictions that shadow policy `policy` decided, oldest first
    /// (flush first to include the newest).
    pub fn shadow_rows(&self, policy: u32) -> Result<Vec<ShadowRow>, PredictionLogError> {
        let conn = match self.reader() {
            Ok(c) => c,
            Err(db) => {
                return self.shared_read(db, |c| shared::shadow_rows(&mut **c, policy));
            }
        };
        let mut stmt = conn
            .prepare_cached(
                "SELECT user_id, decision, shadow_decision FROM predictions
                 WHERE shadow_policy_version = ?1 AND shadow_decision IS NOT NULL
                 ORDER BY rowid",
            )
            .map_err(|e| self.db_err(e))?;
        stmt.query_map([i64::from(policy)], |r| {
            Ok(ShadowRow {
                user_id: r.get(0)?,
                live: r.get(1)?,
                shadow: r.get(2)?,
            })
        })
        .map_err(|e| self.db_err(e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| self.db_err(e))
    }

    /// The newest `n` committed records the live policy decided `decision`, newest
    /// first (flush first to include the newest): a review queue's candidates.
    pub fn decided(
        &self,
        decision: &str,
        n: usize,
    ) -> Result<Vec<PredictionRecord>, PredictionLogError> {
        self.newest_where(shared::Column::Decision, decision, n)
    }

    /// The newest `n` committed records of account `user_id`, newest first (flush
    /// first to include the newest).
    pub fn of_user(
        &self,
        user_id: &str,
        n: usize,
    ) -> Result<Vec<PredictionRecord>, PredictionLogError> {
        self.newest_where(shared::Column::UserId, user_id, n)
    }

    /// The newest `n` committed records whose `column` is `value`, newest first.
    fn newest_where(
        &self,
        column: shared::Column,
        value: &str,
        n: usize,
    ) -> Result<Vec<PredictionRecord>, PredictionLogError> {
        let conn = match self.reader() {
            Ok(c) => c,
            Err(db) => {
                return self.shared_read(db, |c| shared::newest_where(&mut **c, column, value, n));
            }
        };
        let mut stmt = conn
            .prepare_cached(&select_sql(&format!(
                "WHERE {} = ?1 ORDER BY rowid DESC LIMIT ?2",
                column.name()
            )))
            .map_err(|e| self.db_err(e))?;
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        stmt.query_map((value, n), from_row)
            .map_err(|e| self.db_err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db_err(e))
    }

    /// Committed records (see [`PredictionLog::recent`] about the newest ones).
    pub fn count(&self) -> Result<u64, PredictionLogError> {
        let conn = match self.reader() {
            Ok(c) => c,
            Err(db) => {
                return self.shared_read(db, |c| Ok(shared::count(&mut **c)?));
            }
        };
        conn.query_row("SELECT COUNT(*) FROM predictions", [], |r| {
            crate::store::int(r, 0, "COUNT(*)")
        })
        .map_err(|e| self.db_err(e))
    }

    /// Records queued for the writer since the log was opened (stored or about to be).
    pub fn appended(&self) -> u64 {
        self.inner.counters.enqueued.load(Ordering::Relaxed)
    }

    /// Records not stored: dropped by `append` (queue full, writer gone, wrong number
    /// of features), in a failed commit, or ignored because their id was already stored.
    pub fn dropped(&self) -> u64 {
        self.inner.counters.dropped.load(Ordering::Relaxed)
    }
}

/// The writer yields to the threads answering requests: it works in batches off the
/// request path, and its queue absorbs a few seconds of falling behind. Without it, at
/// full load it takes turns with the request threads on the cores and lengthens the
/// slowest requests.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; a failure only leaves
    // the priority as it was.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

struct Writer {
    sink: Sink,
    retention: Retention,
    counters: Arc<Counters>,
    shown: String,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        lower_priority();
        let sql = insert_sql();
        let mut batch: Vec<PredictionRecord> = Vec::with_capacity(BATCH_ROWS);
        let mut deadline = Instant::now();
        let mut since_prune = 0u64;
        let mut failure: Option<String> = None;
        loop {
            // Idle: wait for the first record. Filling a batch: take what is queued and
            // nap between looks, so that appends at full load do not wake this thread
            // (and cost the request threads a wake-up call) one record at a time.
            let msg = if batch.is_empty() {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                match rx.try_recv() {
                    Ok(m) => Ok(m),
                    Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                    Err(TryRecvError::Empty) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            Err(RecvTimeoutError::Timeout)
                        } else {
                            std::thread::sleep(left.min(NAP));
                            continue;
                        }
                    }
                }
            };
            let mut commit = |batch: &mut Vec<PredictionRecord>, since_prune: &mut u64| {
                if batch.is_empty() {
                    return;
                }
                *since_prune += batch.len() as u64;
                if let Err(e) = self.commit(&sql, batch) {
                    failure = Some(e);
                }
                if self.prune_due(since_prune)
                    && let Err(e) = self.prune()
                {
                    tracing::error!("{}: pruning failed: {e}", self.shown);
                }
            };
            match msg {
                Ok(Msg::Record(_)) if batch.len() >= HOLD_WHILE_DOWN => {
                    // The shared database has not answered for a while: hold no more.
                    let c = &self.counters;
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    c.processed.fetch_add(1, Ordering::SeqCst);
                }
                Ok(Msg::Record(r)) => {
                    if batch.is_empty() {
                        deadline = Instant::now() + BATCH_WAIT;
                    }
                    batch.push(*r);
                    if batch.len() >= BATCH_ROWS {
                        commit(&mut batch, &mut since_prune);
                    }
                }
                Ok(Msg::Flush(reply)) => {
                    commit(&mut batch, &mut since_prune);
                    let _ = reply.send(failure.take().map_or(Ok(()), Err));
                }
                Ok(Msg::Prune(reply)) => {
                    commit(&mut batch, &mut since_prune);
                    let _ = reply.send(self.prune());
                }
                Err(RecvTimeoutError::Timeout) => commit(&mut batch, &mut since_prune),
                Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    commit(&mut batch, &mut since_prune);
                    return;
                }
            }
        }
    }

    /// Whether the retention limits are due: every [`PRUNE_EVERY`] appends for a file
    /// (a shared log's own thread prunes it every [`SHARED_PRUNE_EVERY`]).
    fn prune_due(&mut self, since_prune: &mut u64) -> bool {
        match &self.sink {
            Sink::Local(_) if *since_prune >= PRUNE_EVERY => {
                *since_prune = 0;
                true
            }
            // A shared log is pruned by its own thread (see `open_for`).
            _ => false,
        }
    }

    fn prune(&mut self) -> Result<u64, String> {
        match &self.sink {
            Sink::Local(conn) => prune(conn, self.retention).map_err(|e| e.to_string()),
            Sink::Shared { db, .. } => shared::prune(db, self.retention).map_err(|e| e.message),
        }
    }

    /// Commits `batch`. A file takes it in one transaction and empties it (a failure is
    /// logged, its rows counted as dropped, and returned). A shared store takes it in
    /// transactions of [`BATCH_ROWS`]; while the database does not answer, the rows
    /// are held (and tried again every [`RETRY_EVERY`]), never dropped.
    fn commit(&mut self, sql: &str, batch: &mut Vec<PredictionRecord>) -> Result<(), String> {
        let Sink::Shared {
            db,
            known,
            retry_at,
        } = &mut self.sink
        else {
            return self.commit_local(sql, batch);
        };
        if retry_at.is_some_and(|t| Instant::now() < t) {
            return Err(format!(
                "the database does not answer; {} predictions are held",
                batch.len()
            ));
        }
        let c = &self.counters;
        while !batch.is_empty() {
            let n = batch.len().min(BATCH_ROWS);
            let result = db
                .conn()
                .map_err(|e| (e.kind, e.message))
                .and_then(|mut conn| {
                    shared::insert(&mut *conn, &batch[..n], known)
                        .map_err(|e| (crate::store::pg::kind(&e), crate::store::pg::message(&e)))
                });
            match result {
                Ok(stored) => {
                    batch.drain(..n);
                    c.dropped
                        .fetch_add(n as u64 - stored.min(n as u64), Ordering::Relaxed);
                    c.processed.fetch_add(n as u64, Ordering::SeqCst);
                    *retry_at = None;
                }
                Err((crate::store::ErrorKind::Busy, message)) => {
                    if retry_at.is_none() {
                        tracing::warn!(
                            "{}: holding {} predictions until the database answers: {message}",
                            self.shown,
                            batch.len()
                        );
                    }
                    *retry_at = Some(Instant::now() + RETRY_EVERY);
                    return Err(format!(
                        "the database does not answer ({message}); {} predictions are held",
                        batch.len()
                    ));
                }
                Err((_, message)) => {
                    batch.drain(..n);
                    let msg = format!("{n} predictions were not stored: {message}");
                    tracing::error!("{}: {msg}", self.shown);
                    c.dropped.fetch_add(n as u64, Ordering::Relaxed);
                    c.processed.fetch_add(n as u64, Ordering::SeqCst);
                    return Err(msg);
                }
            }
        }
        Ok(())
    }

    fn commit_local(&mut self, sql: &str, batch: &mut Vec<PredictionRecord>) -> Result<(), String> {
        let Sink::Local(conn) = &mut self.sink else {
            unreachable!("commit_local is called for a file's log")
        };
        let n = batch.len() as u64;
        let result = (|| -> Result<u64, rusqlite::Error> {
            let tx = conn.transaction()?;
            let mut stored = 0;
            {
                let mut stmt = tx.prepare_cached(sql)?;
                let mut values: Vec<rusqlite::types::Value> =
                    Vec::with_capacity(6 + N_FEATURES + EXPERIMENT_COLUMNS.len());
                for r in batch.iter() {
                    values.clear();
                    values.push(r.id.clone().into());
                    values.push(r.created_at.clone().into());
                    values.push(i64::from(r.version).into());
                    values.push(r.score.into());
                    values.push(r.caller.clone().into());
                    values.push(r.user_id.clone().into());
                    values.extend(
                        r.features
                            .iter()
                            .map(|&v| if v.is_nan() { None } else { Some(v) }.into()),
                    );
                    let tag = r.experiment.as_ref();
                    values.push(tag.map(|t| t.experiment.clone()).into());
                    values.push(tag.map(|t| i64::from(t.other_version)).into());
                    values.push(tag.map(|t| t.other_probability).into());
                    for d in [&r.decision, &r.shadow] {
                        values.push(d.as_ref().map(|d| i64::from(d.policy_version)).into());
                        values.push(d.as_ref().map(|d| d.decision.clone()).into());
                        values.push(d.as_ref().map(DecisionTag::rules_text).into());
                    }
                    stored += stmt.execute(params_from_iter(values.drain(..)))? as u64;
                }
            }
            tx.commit()?;
            Ok(stored)
        })();
        batch.clear();
        let c = &self.counters;
        let outcome = match result {
            Ok(stored) => {
                if stored < n {
                    tracing::warn!(
                        "{}: {} predictions had an id already stored; kept the first",
                        self.shown,
                        n - stored
                    );
                    c.dropped.fetch_add(n - stored, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(e) => {
                let msg = format!("{n} predictions were not stored: {e}");
                tracing::error!("{}: {msg}", self.shown);
                c.dropped.fetch_add(n, Ordering::Relaxed);
                Err(msg)
            }
        };
        c.processed.fetch_add(n, Ordering::SeqCst);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> String {
        humantime::format_rfc3339_millis(SystemTime::now()).to_string()
    }

    fn record(i: usize) -> PredictionRecord {
        PredictionRecord {
            id: new_prediction_id(),
            created_at: now(),
            version: 3,
            features: (0..N_FEATURES)
                .map(|j| {
                    if (i + j).is_multiple_of(7) {
                        f64::NAN
                    } else {
                        (i * 100 + j) as f64 / 3.0
                    }
                })
                .collect(),
            score: (i % 100) as f64 / 100.0,
            caller: "svc".into(),
            user_id: i.is_multiple_of(2).then(|| format!("u{i}")),
            experiment: i.is_multiple_of(3).then(|| ExperimentTag {
                experiment: format!("e{}", i % 2),
                other_version: 4,
                other_probability: (i % 10) as f64 / 10.0,
            }),
            decision: i.is_multiple_of(4).then(|| DecisionTag {
                policy_version: 2,
                decision: "review".into(),
                matched_rules: vec![format!("rule \"{i}\""), "likely".into()],
            }),
            shadow: i.is_multiple_of(5).then(|| DecisionTag {
                policy_version: 3,
                decision: if i.is_multiple_of(10) {
                    "block"
                } else {
                    "allow"
                }
                .into(),
                matched_rules: Vec::new(),
            }),
        }
    }

    fn same(a: &PredictionRecord, b: &PredictionRecord) {
        assert_eq!(a.id, b.id);
        assert_eq!(a.created_at, b.created_at);
        assert_eq!(a.version, b.version);
        assert_eq!(a.score.to_bits(), b.score.to_bits());
        assert_eq!(a.caller, b.caller);
        assert_eq!(a.user_id, b.user_id);
        assert_eq!(a.experiment, b.experiment);
        assert_eq!(a.features.len(), b.features.len());
        for (x, y) in a.features.iter().zip(&b.features) {
            assert!(
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                "{x} {y}"
            );
        }
    }

    #[test]
    fn ids_are_unique_and_well_formed() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| new_prediction_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(10) {
            assert_eq!(id.len(), 34);
            assert!(id.starts_with("p-"));
            assert!(id[2..].chars().all(|c| c.is_ascii_hexdigit()));
        }
        // Ids made later sort later (by their millisecond prefix).
        let a = new_prediction_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_prediction_id();
        assert!(a[..14] < b[..14], "{a} {b}");
    }

    #[test]
    fn appended_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let log = PredictionLog::open(dir.path(), Retention::default()).unwrap();
        assert!(log.path().ends_with("predictions.sqlite"));
        let records: Vec<PredictionRecord> = (0..10_000).map(record).collect();
        for r in &records {
            log.append(r.clone());
        }
        log.flush().unwrap();
        assert_eq!(log.count().unwrap(), 10_000);
        assert_eq!(log.dropped(), 0);
        for r in records.iter().step_by(97) {
            same(&log.get(&r.id).unwrap().unwrap(), r);
        }
        assert!(log.get("p-unknown").unwrap().is_none());
        let recent = log.recent(3).unwrap();
        assert_eq!(recent.len(), 3);
        same(&recent[0], &records[9_999]);
        same(&recent[2], &records[9_997]);
    }

    #[test]
    fn experiment_rows_are_those_of_one_experiment_and_an_old_log_gains_the_columns() {
        let dir = tempfile::tempdir().unwrap();
        // A log made before experiments: the table without their columns, one row.
        {
            let conn = connect(&dir.path().join("predictions.sqlite")).unwrap();
            let cols: Vec<String> = feature_columns()
                .iter()
                .map(|c| format!("{c} REAL"))
                .collect();
            conn.execute_batch(&format!(
                "CREATE TABLE predictions (id TEXT PRIMARY KEY, created_at TEXT NOT NULL,
                 version INTEGER NOT NULL, probability REAL NOT NULL, caller TEXT NOT NULL,
                 user_id TEXT, {});
                 INSERT INTO predictions (id, created_at, version, probability, caller)
                 VALUES ('p-old', '{}', 1, 0.5, 'svc');",
                cols.join(", "),
                now()
            ))
            .unwrap();
        }
        let log = PredictionLog::open(dir.path(), Retention::default()).unwrap();
        let old = log.get("p-old").unwrap().unwrap();
        assert_eq!((old.version, old.experiment), (1, None));
        let records: Vec<PredictionRecord> = (0..30).map(record).collect();
        for r in &records {
            log.append(r.clone());
        }
        log.flush().unwrap();
        let rows = log.experiment_rows("e0").unwrap();
        let expected: Vec<&PredictionRecord> = records
            .iter()
            .filter(|r| r.experiment.as_ref().is_some_and(|t| t.experiment == "e0"))
            .collect();
        assert_eq!(rows.len(), expected.len());
        assert_eq!(rows.len(), 5);
        for (row, r) in rows.iter().zip(expected) {
            let t = r.experiment.as_ref().unwrap();
            assert_eq!(row.id, r.id);
            assert_eq!(row.user_id, r.user_id);
            assert_eq!((row.version, row.probability), (r.version, r.score));
            assert_eq!(
                (row.other_version, row.other_probability),
                (t.other_version, t.other_probability)
            );
        }
        assert!(log.experiment_rows("nope").unwrap().is_empty());
    }

    #[test]
    fn get_right_after_append_finds_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = PredictionLog::open(dir.path(), Retention::default()).unwrap();
        for i in 0..50 {
            let r = record(i);
            log.append(r.clone());
            same(&log.get(&r.id).unwrap().unwrap(), &r);
        }
    }

    #[test]
    fn a_record_without_51_features_is_dropped_and_a_repeated_id_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = PredictionLog::open(dir.path(), Retention::default()).unwrap();
        let mut short = record(1);
        short.features.pop();
        log.append(short);
        let r = record(2);
        log.append(r.clone());
        let mut again = r.clone();
        again.score = 0.99;
        log.append(again);
        log.flush().unwrap();
        assert_eq!(log.count().unwrap(), 1);
        assert_eq!(log.dropped(), 2);
        same(&log.get(&r.id).unwrap().unwrap(), &r);
    }

    #[test]
    fn retention_by_rows_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            max_rows: 100,
            max_days: 30,
        };
        let log = PredictionLog::open(dir.path(), retention).unwrap();
        let records: Vec<PredictionRecord> = (0..250).map(record).collect();
        for r in &records {
            log.append(r.clone());
        }
        assert_eq!(log.prune().unwrap(), 150);
        assert_eq!(log.count().unwrap(), 100);
        assert!(log.get(&records[149].id).unwrap().is_none());
        assert!(log.get(&records[150].id).unwrap().is_some());
        drop(log);
        // At open too.
        let log = PredictionLog::open(dir.path(), Retention::default()).unwrap();
        for r in (0..50).map(record) {
            log.append(r);
        }
        drop(log);
        let log = PredictionLog::open(dir.path(), retention).unwrap();
        assert_eq!(log.count().unwrap(), 100);
    }

    #[test]
    fn the_writer_prunes_by_itself_every_so_many_appends() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            max_rows: 10,
            max_days: 0,
        };
        let log = PredictionLog::open(dir.path(), retention).unwrap();
        for r in (0..PRUNE_EVERY as usize + 5).map(record) {
            log.append(r);
        }
        log.flush().unwrap();
        assert!(log.count().unwrap() <= 10 + 5, "{}", log.count().unwrap());
    }

    #[test]
    fn retention_by_days_removes_old_rows() {
        let dir = tempfile::tempdir().unwrap();
        let log = PredictionLog::open(dir.path(), Retention::default()).unwrap();
        let old = |days: u64, i: usize| {
            let mut r = record(i);
            r.created_at = humantime::format_rfc3339_millis(
                SystemTime::now() - Duration::from_secs(days * 86_400),
            )
            .to_string();
            r
        };
        let keep = old(29, 1);
        log.append(old(31, 0));
        log.append(old(400, 2));
        log.append(keep.clone());
        log.append(record(3));
        log.flush().unwrap();
        assert_eq!(log.count().unwrap(), 4);
        drop(log);
        let log = PredictionLog::open(dir.path(), Retention::default()).unwrap();
        assert_eq!(log.count().unwrap(), 2);
        assert!(log.get(&keep.id).unwrap().is_some());
        log.append(old(45, 4));
        assert_eq!(log.prune().unwrap(), 1);
        assert_eq!(log.count().unwrap(), 2);
    }

    #[test]
    fn dropping_the_last_handle_commits_what_is_pending() {
        let dir = tempfile::tempdir().unwrap();
        let log = PredictionLog::open(dir.path(), Retention::default()).unwrap();
        let other = log.clone();
        for r in (0..3_001).map(record) {
            log.append(r);
        }
        drop(log);
        other.append(record(9));
        drop(other);
        let log = PredictionLog::open(dir.path(), Retention::default()).unwrap();
        assert_eq!(log.count().unwrap(), 3_002);
    }

    #[test]
    fn concurrent_appends_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = PredictionLog::open(dir.path(), Retention::default()).unwrap();
        let ids: Vec<Vec<String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let log = log.clone();
                    s.spawn(move || {
                        (0..2_500)
                            .map(|i| {
                                let r = record(t * 10_000 + i);
                                let id = r.id.clone();
                                log.append(r);
                                id
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        log.flush().unwrap();
        assert_eq!(log.count().unwrap(), 10_000);
        assert_eq!(log.dropped(), 0);
        for per_thread in &ids {
            assert!(log.get(&per_thread[2_499]).unwrap().is_some());
        }
    }

    #[test]
    fn two_handles_on_one_file_both_write_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let a = PredictionLog::open(dir.path(), Retention::default()).unwrap();
        let b = PredictionLog::open(dir.path(), Retention::default()).unwrap();
        let ra = record(1);
        let rb = record(2);
        for i in 0..500 {
            a.append(record(100 + i));
            b.append(record(1_000 + i));
        }
        a.append(ra.clone());
        b.append(rb.clone());
        a.flush().unwrap();
        b.flush().unwrap();
        assert_eq!(a.count().unwrap(), 1_002);
        assert_eq!(b.count().unwrap(), 1_002);
        same(&a.get(&rb.id).unwrap().unwrap(), &rb);
        same(&b.get(&ra.id).unwrap().unwrap(), &ra);
    }

    #[test]
    fn an_unwritable_registry_is_a_one_line_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-folder");
        std::fs::write(&file, "x").unwrap();
        let err = PredictionLog::open(&file, Retention::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("predictions.sqlite"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
