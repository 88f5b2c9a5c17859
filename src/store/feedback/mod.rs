//! Moderator feedback: durable records of corrected (or confirmed) predictions.
//!
//! Each record keeps the account's full 51-value feature vector, the true label, what the
//! model said (probability, verdict, version), when, and notes. Records live in SQLite
//! (`feedback.sqlite` in the registry) in WAL mode with `synchronous=FULL`; every
//! submission is one transaction, so a record is either fully stored or absent even if
//! the process is killed mid-write.
//!
//! User ids are text (column `user_id TEXT`). Stores made before ids were text have
//! `user_id INTEGER`, whose affinity would turn a text id such as "00123" into 123; they
//! are rebuilt with a TEXT column when first opened (one transaction; integer values
//! become their decimal text). Reading accepts integer values too.

mod dump;
pub use dump::{Tables, Value};
pub mod review;
mod shared;

use crate::data::UserId;
use crate::data::catalog::{N_FEATURES, catalog};
use crate::store::{ErrorKind, int, label, opt_int, opt_label};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FeedbackError {
    pub path: String,
    pub message: String,
    /// Busy, corrupt, invalid...: what a front-end answers depends on it.
    pub kind: ErrorKind,
}

/// A failure the feedback and review stores report, with its kind: SQLite's errors
/// keep theirs ([`crate::store::sqlite_kind`]); a message of ours is about the
/// request (a label that is not 0 or 1, a bad user id).
pub trait Failure: std::fmt::Display {
    fn kind(&self) -> ErrorKind;
}

impl Failure for rusqlite::Error {
    fn kind(&self) -> ErrorKind {
        crate::store::sqlite_kind(self)
    }
}

impl Failure for String {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }
}

impl Failure for &str {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }
}

impl FeedbackError {
    /// `e` at the store in `path`.
    pub fn of(path: &str, e: impl Failure) -> FeedbackError {
        FeedbackError {
            path: path.to_string(),
            message: e.to_string(),
            kind: e.kind(),
        }
    }

    /// A failure of the store's machinery (not of SQLite nor of the request).
    pub fn other(path: &str, message: impl Into<String>) -> FeedbackError {
        FeedbackError {
            path: path.to_string(),
            message: message.into(),
            kind: ErrorKind::Other,
        }
    }
}

/// How many times each store file was opened (creating tables and migrating), by path:
/// a long-running process (the service) opens each store once, which a test checks
/// with [`times_opened`].
static OPENS: std::sync::Mutex<Vec<(PathBuf, u64)>> = std::sync::Mutex::new(Vec::new());

fn count_open(path: &Path) {
    let mut opens = OPENS.lock().unwrap_or_else(|p| p.into_inner());
    match opens.iter_mut().find(|(p, _)| p == path) {
        Some((_, n)) => *n += 1,
        None => opens.push((path.to_path_buf(), 1)),
    }
}

/// How many times this process opened the feedback store of the registry at
/// `registry_root` (each open runs table creation and migrations).
pub fn times_opened(registry_root: &Path) -> u64 {
    let path = crate::store::layout::Layout::new(registry_root).feedback_db();
    let opens = OPENS.lock().unwrap_or_else(|p| p.into_inner());
    opens
        .iter()
        .find(|(p, _)| *p == path)
        .map_or(0, |(_, n)| *n)
}

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The feedback form of the app.
    App,
    /// `spamscope feedback import`.
    Import,
    /// Bulk feedback from the review queue.
    Queue,
    /// `POST /feedback` of the scoring service.
    Service,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::App => "app",
            Origin::Import => "import",
            Origin::Queue => "queue",
            Origin::Service => "service",
        }
    }
    fn parse(s: &str) -> Origin {
        match s {
            "import" => Origin::Import,
            "queue" => Origin::Queue,
            "service" => Origin::Service,
            _ => Origin::App,
        }
    }
}

/// A record to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFeedback {
    pub user_id: Option<UserId>,
    /// The 51 raw values as the moderator saw them (NaN = missing).
    pub features: Vec<f64>,
    pub true_label: u8,
    /// The model's raw score (its verdict is `score > threshold`; the field keeps its
    /// first name), version and verdict when the feedback was given.
    pub probability: Option<f64>,
    pub model_version: Option<u32>,
    pub predicted: Option<u8>,
    pub notes: String,
    pub origin: Origin,
}

/// A stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub id: i64,
    pub created_at: String,
    pub record: NewFeedback,
    /// The version whose training used this record, if any.
    pub used_in_version: Option<u32>,
    /// The retrain that has taken this record and not finished yet, if any.
    pub claimed_by: Option<String>,
    /// Who gave it through the service (the token's name), if known.
    pub moderator: Option<String>,
}

/// Who claims feedback for a retrain: this process on this host
/// (`pid:PID:NANOS:HOST`). A claim whose process no longer runs is stale and released by
/// the next claim. In a folder, that is judged by the process id; in a shared store,
/// by an advisory lock the claiming retrain holds on a connection of its own (exact on
/// any host: the server drops it with the connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant(String);

/// A claim older than this is stale wherever its process ran.
const CLAIM_MAX_AGE_NANOS: u128 = 24 * 3600 * 1_000_000_000;

/// This host's name (no `:`), as claims name it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().replace(':', "_"))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Claimant {
    pub fn this_process() -> Claimant {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Claimant(format!(
            "pid:{}:{nanos}:{}",
            std::process::id(),
            host_name()
        ))
    }

    /// Whether the process behind claim `text` is gone: on this host, when no process
    /// has its pid (on systems without /proc, and for a claim made on another host
    /// sharing the store, whose processes cannot be seen from here, when the claim is
    /// older than a day). Claims written before they named a host are this host's.
    fn is_stale(text: &str) -> bool {
        let mut parts = text.split(':');
        let (Some("pid"), Some(pid), Some(nanos)) = (parts.next(), parts.next(), parts.next())
        else {
            return true;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            return true;
        };
        let here = parts.next().is_none_or(|h| h == host_name());
        if here && pid == std::process::id() {
            return false;
        }
        if here && Path::new("/proc/self").exists() {
            return !Path::new(&format!("/proc/{pid}")).exists();
        }
        let age = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .saturating_sub(nanos.parse().unwrap_or(0));
        age > CLAIM_MAX_AGE_NANOS
    }
}

/// A moderator's label and what it is about ([`FeedbackStore::labels`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackLabel {
    pub prediction_id: Option<String>,
    pub user_id: Option<String>,
    pub label: u8,
}

/// Agreement between the model's verdict and the moderators' labels.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VersionStats {
    pub version: Option<u32>,
    pub total: u64,
    pub agreed: u64,
    /// Records that carry the model's verdict.
    pub judged: u64,
}

impl VersionStats {
    /// [`crate::eval::verdict::agreement`] of this version's records.
    pub fn agreement(&self) -> Option<f64> {
        crate::eval::verdict::agreement(self.agreed, self.judged)
    }
}

/// One moderator's feedback ([`FeedbackStore::moderator_stats`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeratorStats {
    /// None: records given without a moderator (the app, imports).
    pub moderator: Option<String>,
    pub records: u64,
    /// Records that carry the model's verdict, and those where it matched the label.
    pub judged: u64,
    pub agreed_with_model: u64,
    /// Pairs of this moderator's records with another moderator's on the same account,
    /// and those with the same label.
    pub pairs_with_others: u64,
    pub agreed_with_others: u64,
    /// Records on accounts with a confirmed label (confirmed by someone else), and
    /// those with the confirmed label.
    pub confirmed: u64,
    pub agreed_with_confirmed: u64,
}

/// Agreement of one version's verdicts with moderators within one hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgreementPoint {
    pub version: u32,
    /// `YYYY-MM-DDTHH` (UTC).
    pub hour: String,
    pub total: u64,
    pub agreed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FeedbackStats {
    pub total: u64,
    /// Records that carry the model's verdict.
    pub judged: u64,
    /// Of those, records where the verdict matched the true label.
    pub agreed: u64,
    /// [`crate::eval::verdict::agreement`]: `agreed / judged` (None when nothing is
    /// judged).
    pub agreement: Option<f64>,
    pub by_version: Vec<VersionStats>,
}

/// The feedback store of a registry: its SQLite file, or the tables of a shared
/// PostgreSQL store. Both keep the same guarantees (one transaction per submission
/// group, idempotency keys, disjoint claims); callers never see which one it is.
pub struct FeedbackStore {
    backend: Backend,
}

enum Backend {
    Local(Local),
    Shared(shared::Shared),
}

/// The SQLite store of a registry folder.
pub(crate) struct Local {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
}

fn feature_columns() -> Vec<String> {
    catalog().ids().map(|id| id.to_lowercase()).collect()
}

/// `CREATE TABLE {name} (...)`: the feedback table's definition.
fn create_table(name: &str) -> String {
    let cols: Vec<String> = feature_columns()
        .iter()
        .map(|c| format!("{c} REAL"))
        .collect();
    format!(
        "CREATE TABLE {name} (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            user_id TEXT,
            model_version INTEGER,
            probability REAL,
            predicted INTEGER CHECK (predicted IN (0, 1)),
            true_label INTEGER NOT NULL CHECK (true_label IN (0, 1)),
            notes TEXT NOT NULL DEFAULT '',
            origin TEXT NOT NULL,
            used_in_version INTEGER,
            {}
        )",
        cols.join(",\n")
    )
}

/// The declared type of the `user_id` column.
fn user_id_type(conn: &Connection) -> rusqlite::Result<String> {
    conn.query_row(
        "SELECT type FROM pragma_table_info('feedback') WHERE name = 'user_id'",
        [],
        |r| r.get(0),
    )
}

/// Rebuilds a store made before user ids were text (`user_id INTEGER`) with a TEXT
/// column, in one transaction: same rows, ids and indexes; integer ids become their
/// decimal text. Nothing happens for a store that already has the TEXT column.
fn migrate_integer_user_ids(conn: &Connection) -> rusqlite::Result<()> {
    if !user_id_type(conn)?.eq_ignore_ascii_case("INTEGER") {
        return Ok(());
    }
    // IMMEDIATE takes the write lock first, so two processes opening the same old store
    // do not both rebuild it: the second sees the TEXT column below.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let rebuilt = (|| {
        if !user_id_type(conn)?.eq_ignore_ascii_case("INTEGER") {
            return Ok(());
        }
        let cols = format!(
            "id, created_at, user_id, model_version, probability, predicted, true_label, notes, origin, used_in_version, {}",
            feature_columns().join(", ")
        );
        conn.execute_batch(&format!(
            "{};
            INSERT INTO feedback_text_ids ({cols}) SELECT {cols} FROM feedback;
            DROP TABLE feedback;
            ALTER TABLE feedback_text_ids RENAME TO feedback;
            CREATE INDEX feedback_version ON feedback(model_version);
            CREATE INDEX feedback_used ON feedback(used_in_version);",
            create_table("feedback_text_ids")
        ))
    })();
    match rebuilt {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// A stored user id: text, or an integer in stores written before ids were text.
fn read_user_id(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Option<UserId>> {
    match row.get_ref(idx)? {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(i) => Ok(Some(crate::data::user_id_from_int(i))),
        ValueRef::Real(x) => Ok(Some(UserId::from(x.to_string()))),
        ValueRef::Text(t) | ValueRef::Blob(t) => std::str::from_utf8(t)
            .map(|s| Some(UserId::from(s)))
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    idx,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            }),
    }
}

/// Inserts one record (in the caller's transaction).
fn insert_record(
    tx: &rusqlite::Transaction<'_>,
    now: &str,
    r: &NewFeedback,
    moderator: Option<&str>,
    prediction_id: Option<&str>,
) -> rusqlite::Result<()> {
    let sql = format!(
        "INSERT INTO feedback (created_at, user_id, model_version, probability, predicted,
            true_label, notes, origin, moderator, prediction_id, {}) VALUES ({})",
        feature_columns().join(", "),
        (1..11 + N_FEATURES)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let mut values: Vec<rusqlite::types::Value> = vec![
        now.to_string().into(),
        r.user_id.as_deref().map(str::to_string).into(),
        r.model_version.map(i64::from).into(),
        r.probability.into(),
        r.predicted.map(i64::from).into(),
        i64::from(r.true_label).into(),
        r.notes.clone().into(),
        r.origin.as_str().to_string().into(),
        moderator.map(str::to_string).into(),
        prediction_id.map(str::to_string).into(),
    ];
    values.extend(
        r.features
            .iter()
            .map(|&v| if v.is_nan() { None } else { Some(v) }.into()),
    );
    stmt.execute(params_from_iter(values))?;
    Ok(())
}

/// Why record `r` cannot be stored, if it cannot: 51 values, none infinite (NaN is
/// missing), labels 0 or 1, a valid user id. Both stores check it before a write.
fn check_record(r: &NewFeedback) -> Result<(), String> {
    if r.features.len() != N_FEATURES {
        return Err(format!(
            "a record needs {N_FEATURES} feature values, got {}",
            r.features.len()
        ));
    }
    if let Some(i) = r.features.iter().position(|v| v.is_infinite()) {
        return Err(format!("feature X{} is not finite", i + 1));
    }
    if r.true_label > 1 || r.predicted.is_some_and(|p| p > 1) {
        return Err("labels must be 0 or 1".into());
    }
    if let Some(u) = &r.user_id
        && let Some(problem) = crate::data::user_id_problem(u.trim())
    {
        return Err(problem);
    }
    Ok(())
}

/// Why submission `s` cannot be stored, if it cannot ([`check_record`], or an unlinked
/// label that is not 0 or 1).
fn check_submission(s: &Submission) -> Result<(), String> {
    match s {
        Submission::Linked { record, .. } => check_record(record),
        Submission::Unlinked { actual_label, .. } if actual_label.is_some_and(|l| l > 1) => {
            Err("labels must be 0 or 1".into())
        }
        Submission::Unlinked { .. } => Ok(()),
    }
}

/// Feedback given through the service.
#[derive(Debug, Clone, PartialEq)]
pub enum Submission {
    /// On an account with its features (from the prediction log or the request), by
    /// `moderator` (if known), about the logged prediction `prediction_id` if any.
    Linked {
        record: NewFeedback,
        moderator: Option<String>,
        prediction_id: Option<String>,
        key: Option<IdempotencyKey>,
    },
    /// On a prediction never logged here: no features, so it counts in the statistics
    /// and never in a retrain.
    Unlinked {
        prediction_id: String,
        is_correct: bool,
        actual_label: Option<u8>,
        notes: String,
        moderator: String,
        key: Option<IdempotencyKey>,
    },
}

impl Submission {
    fn key(&self) -> Option<&IdempotencyKey> {
        match self {
            Submission::Linked { key, .. } | Submission::Unlinked { key, .. } => key.as_ref(),
        }
    }
}

/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// How long an idempotency key is remembered (30 days); older keys are pruned and may
/// be used again.
pub const IDEMPOTENCY_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(30 * 24 * 3600);

/// A client's key for one delivery of feedback (the `Idempotency-Key` header): the
/// first submission with it is stored, a replay by the same caller with the same body
/// gets the first one's answer and stores nothing, and the same key with another body
/// is refused. Keys are per caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    key: String,
    caller: String,
    body_hash: String,
}

impl IdempotencyKey {
    /// `key` must be 1 to [`MAX_IDEMPOTENCY_KEY`] printable ASCII characters (space to
    /// `~`); `body_hash` identifies what was sent with it.
    pub fn new(key: &str, caller: &str, body_hash: &str) -> Result<IdempotencyKey, String> {
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(format!(
                "must be 1 to {MAX_IDEMPOTENCY_KEY} characters (got {})",
                key.len()
            ));
        }
        if let Some(c) = key.chars().find(|c| !(' '..='~').contains(c)) {
            return Err(format!(
                "must be printable ASCII; it holds {:?}",
                c.escape_default().to_string()
            ));
        }
        Ok(IdempotencyKey {
            key: key.to_string(),
            caller: caller.to_string(),
            body_hash: body_hash.to_string(),
        })
    }
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// What storing one submission did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored under this id (in `feedback`, or `unlinked_feedback` for an unlinked one).
    Stored(i64),
    /// Its idempotency key was used before with the same body: nothing was stored; the
    /// first submission's id, whether it was linked, and its stored label.
    Replayed {
        id: i64,
        linked: bool,
        label: Option<u8>,
    },
    /// Its idempotency key was used before with another body: nothing was stored.
    KeyReused,
}

impl Outcome {
    /// The record's id (stored now or before); None when the key was reused.
    pub fn id(&self) -> Option<i64> {
        match self {
            Outcome::Stored(id) | Outcome::Replayed { id, .. } => Some(*id),
            Outcome::KeyReused => None,
        }
    }
}

type Reply = std::sync::mpsc::SyncSender<Result<Outcome, FeedbackError>>;

/// Most submissions committed in one transaction.
const MAX_GROUP: usize = 512;

/// Many writers, one commit: a thread owns the store and commits whatever submissions
/// are waiting in one transaction (one sync to disk for all of them); each submitter
/// waits until its record is durable. Dropping it finishes what was sent.
pub struct FeedbackWriter {
    tx: Option<std::sync::mpsc::Sender<(Submission, Reply)>>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: String,
}

impl FeedbackWriter {
    pub fn open_in(registry_root: &Path) -> Result<FeedbackWriter, FeedbackError> {
        FeedbackWriter::start(FeedbackStore::open_in(registry_root)?)
    }

    /// The writer thread on an open store (its busy wait as set).
    pub fn start(mut store: FeedbackStore) -> Result<FeedbackWriter, FeedbackError> {
        let path = store.shown();
        let (tx, rx) = std::sync::mpsc::channel::<(Submission, Reply)>();
        let thread = std::thread::Builder::new()
            .name("feedback-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(x) => group.push(x),
                            Err(_) => break,
                        }
                    }
                    let (subs, replies): (Vec<Submission>, Vec<Reply>) = group.into_iter().unzip();
                    match store.add_submissions(&subs) {
                        Ok(results) => {
                            for (reply, r) in replies.into_iter().zip(results) {
                                let _ = reply.send(r);
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                }
            })
            .map_err(|e| {
                FeedbackError::other(&path, format!("cannot start the feedback writer: {e}"))
            })?;
        Ok(FeedbackWriter {
            tx: Some(tx),
            thread: Some(thread),
            path,
        })
    }

    /// Stores `s` and answers once it is committed (or found to be a replay).
    pub fn submit(&self, s: Submission) -> Result<Outcome, FeedbackError> {
        let stopped = || FeedbackError::other(&self.path, "the feedback writer has stopped");
        let (reply, wait) = std::sync::mpsc::sync_channel(1);
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send((s, reply))
            .map_err(|_| stopped())?;
        wait.recv().map_err(|_| stopped())?
    }
}

impl Drop for FeedbackWriter {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Local {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Local, FeedbackError> {
        count_open(path);
        let shown = path.display().to_string();
        let err = |e: rusqlite::Error| FeedbackError::of(&shown, e);
        let conn = crate::store::open_durable(path).map_err(err)?;
        conn.execute_batch(&format!(
            "{};
            CREATE INDEX IF NOT EXISTS feedback_version ON feedback(model_version);
            CREATE INDEX IF NOT EXISTS feedback_used ON feedback(used_in_version);
            CREATE INDEX IF NOT EXISTS feedback_user ON feedback(user_id);",
            create_table("IF NOT EXISTS feedback")
        ))
        .map_err(err)?;
        migrate_integer_user_ids(&conn).map_err(err)?;
        // Columns that came later, added to older stores (NULL for their records):
        // `claimed_by`, the retrain that has taken a record; `moderator` and
        // `prediction_id`, who gave it through the service and on which logged prediction.
        for col in ["claimed_by", "moderator", "prediction_id"] {
            let has = conn
                .prepare(&format!(
                    "SELECT 1 FROM pragma_table_info('feedback') WHERE name = '{col}'"
                ))
                .and_then(|mut s| s.exists([]))
                .map_err(err)?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE feedback ADD COLUMN {col} TEXT"))
                    .map_err(err)?;
            }
        }
        // Feedback on predictions this registry never logged (the reference's client
        // invents its ids): no features, so it counts in statistics, never in a retrain.
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS unlinked_feedback (
                id INTEGER PRIMARY KEY,
                created_at TEXT NOT NULL,
                prediction_id TEXT NOT NULL,
                is_correct INTEGER NOT NULL CHECK (is_correct IN (0, 1)),
                actual_label INTEGER CHECK (actual_label IN (0, 1)),
                notes TEXT NOT NULL DEFAULT '',
                moderator TEXT NOT NULL
            );
            -- Idempotency keys of feedback deliveries, per caller: the first delivery's
            -- record (in feedback when linked, else in unlinked_feedback) and a hash of
            -- its body. Kept IDEMPOTENCY_RETENTION.
            CREATE TABLE IF NOT EXISTS feedback_keys (
                caller TEXT NOT NULL,
                key TEXT NOT NULL,
                body_hash TEXT NOT NULL,
                linked INTEGER NOT NULL CHECK (linked IN (0, 1)),
                feedback_id INTEGER NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (caller, key)
            );
            CREATE INDEX IF NOT EXISTS feedback_keys_created ON feedback_keys(created_at);
            -- An account's confirmed final label (one per account; re-confirming
            -- replaces it with the new confirmer and time).
            CREATE TABLE IF NOT EXISTS confirmed_labels (
                user_id TEXT PRIMARY KEY,
                label INTEGER NOT NULL CHECK (label IN (0, 1)),
                confirmed_by TEXT NOT NULL,
                confirmed_at TEXT NOT NULL,
                notes TEXT NOT NULL DEFAULT ''
            );
            -- Who is reviewing an account, until when (milliseconds since the epoch);
            -- an expired claim counts as none.
            CREATE TABLE IF NOT EXISTS review_claims (
                user_id TEXT PRIMARY KEY,
                moderator TEXT NOT NULL,
                claimed_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL
            );
            -- Reviews that ended a claim: its holder's feedback on the account, and
            -- when (milliseconds since the epoch): the team's review time.
            CREATE TABLE IF NOT EXISTS review_times (
                id INTEGER PRIMARY KEY,
                user_id TEXT NOT NULL,
                moderator TEXT NOT NULL,
                claimed_at INTEGER NOT NULL,
                decided_at INTEGER NOT NULL
            );",
        )
        .map_err(err)?;
        Ok(Local {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Claims, in one transaction, every record that no training used and no other
    /// live retrain claimed, after releasing the claims of processes that are gone.
    pub fn claim_unused(&mut self, claimant: &Claimant) -> Result<(), FeedbackError> {
        let path = self.path.display().to_string();
        let e = |e: rusqlite::Error| FeedbackError::of(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        let holders: Vec<String> = {
            let mut stmt = tx
                .prepare("SELECT DISTINCT claimed_by FROM feedback WHERE claimed_by IS NOT NULL")
                .map_err(e)?;
            stmt.query_map([], |r| r.get(0))
                .map_err(e)?
                .collect::<Result<_, _>>()
                .map_err(e)?
        };
        for h in holders.iter().filter(|h| Claimant::is_stale(h)) {
            tx.execute(
                "UPDATE feedback SET claimed_by = NULL WHERE claimed_by = ?1",
                [h],
            )
            .map_err(e)?;
        }
        tx.execute(
            "UPDATE feedback SET claimed_by = ?1 WHERE used_in_version IS NULL AND claimed_by IS NULL",
            [&claimant.0],
        )
        .map_err(e)?;
        tx.commit().map_err(e)
    }

    /// Stores feedback given through the service in one transaction: records with
    /// features (with who gave them and on which logged prediction) and records on
    /// predictions never logged here. Each submission gets its outcome or why it was
    /// refused; the error is the transaction's if it could not be committed.
    ///
    /// A submission with an idempotency key is stored together with its key (the
    /// key's UNIQUE constraint holds in the same transaction), unless the key is known:
    /// then it is a replay (same body) or refused (another body). A moderator's record
    /// on an account releases their review claim on it.
    pub fn add_submissions_at(
        &mut self,
        subs: &[Submission],
        now: std::time::SystemTime,
    ) -> Result<Vec<Result<Outcome, FeedbackError>>, FeedbackError> {
        let checked: Vec<Result<(), FeedbackError>> = subs
            .iter()
            .map(|s| check_submission(s).map_err(|e| self.err(e)))
            .collect();
        let stamp = |t: std::time::SystemTime| humantime::format_rfc3339_millis(t).to_string();
        let now_text = stamp(now);
        let path = self.path.display().to_string();
        let err = |e: rusqlite::Error| FeedbackError::of(&path, e);
        // IMMEDIATE: the write lock is taken before the keys are looked up, so no other
        // connection can store the same key in between.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        if subs.iter().any(|s| s.key().is_some()) {
            let cutoff = stamp(now.checked_sub(IDEMPOTENCY_RETENTION).unwrap_or(now));
            tx.execute("DELETE FROM feedback_keys WHERE created_at < ?1", [&cutoff])
                .map_err(err)?;
        }
        let mut out = Vec::with_capacity(subs.len());
        for (sub, ok) in subs.iter().zip(checked) {
            if let Err(e) = ok {
                out.push(Err(e));
                continue;
            }
            if let Some(k) = sub.key() {
                let known: Option<(String, i64, bool)> = tx
                    .query_row(
                        "SELECT body_hash, feedback_id, linked FROM feedback_keys
                         WHERE caller = ?1 AND key = ?2",
                        (&k.caller, &k.key),
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()
                    .map_err(err)?;
                if let Some((hash, id, linked)) = known {
                    if hash != k.body_hash {
                        out.push(Ok(Outcome::KeyReused));
                        continue;
                    }
                    let label: Option<u8> = if linked {
                        tx.query_row("SELECT true_label FROM feedback WHERE id = ?1", [id], |r| {
                            label(r, 0, "true_label")
                        })
                        .optional()
                        .map_err(err)?
                    } else {
                        tx.query_row(
                            "SELECT actual_label FROM unlinked_feedback WHERE id = ?1",
                            [id],
                            |r| crate::store::opt_label(r, 0, "actual_label"),
                        )
                        .optional()
                        .map_err(err)?
                        .flatten()
                    };
                    out.push(Ok(Outcome::Replayed { id, linked, label }));
                    continue;
                }
            }
            let linked = match sub {
                Submission::Linked {
                    record,
                    moderator,
                    prediction_id,
                    ..
                } => {
                    insert_record(
                        &tx,
                        &now_text,
                        record,
                        moderator.as_deref(),
                        prediction_id.as_deref(),
                    )
                    .map_err(err)?;
                    true
                }
                Submission::Unlinked {
                    prediction_id,
                    is_correct,
                    actual_label,
                    notes,
                    moderator,
                    ..
                } => {
                    tx.execute(
                        "INSERT INTO unlinked_feedback (created_at, prediction_id, is_correct, actual_label, notes, moderator)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        (&now_text, prediction_id, is_correct, actual_label, notes, moderator),
                    )
                    .map_err(err)?;
                    false
                }
            };
            let id = tx.last_insert_rowid();
            if let Submission::Linked {
                record,
                moderator: Some(m),
                ..
            } = sub
                && let Some(u) = &record.user_id
            {
                // An unexpired claim ended by its holder's review: its time is kept.
                tx.execute(
                    "INSERT INTO review_times (user_id, moderator, claimed_at, decided_at)
                     SELECT user_id, moderator, claimed_at, ?3 FROM review_claims
                     WHERE user_id = ?1 AND moderator = ?2 AND expires_at > ?3",
                    (u.trim(), m, review::millis(now)),
                )
                .map_err(err)?;
                tx.execute(
                    "DELETE FROM review_claims WHERE user_id = ?1 AND moderator = ?2",
                    (u.trim(), m),
                )
                .map_err(err)?;
            }
            if let Some(k) = sub.key() {
                // The key's PRIMARY KEY makes a second store of it fail the transaction
                // rather than store the feedback twice.
                tx.execute(
                    "INSERT INTO feedback_keys (caller, key, body_hash, linked, feedback_id, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    (&k.caller, &k.key, &k.body_hash, linked, id, &now_text),
                )
                .map_err(err)?;
            }
            out.push(Ok(Outcome::Stored(id)));
        }
        tx.commit().map_err(err)?;
        Ok(out)
    }

    /// Unlinked feedback: (records, records saying the model was right).
    pub fn unlinked_counts(&self) -> Result<(u64, u64), FeedbackError> {
        self.conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(is_correct), 0) FROM unlinked_feedback",
                [],
                |r| Ok((int(r, 0, "COUNT(*)")?, int(r, 1, "SUM(is_correct)")?)),
            )
            .map_err(|e| self.err(e))
    }

    /// Gives back what `claimant` claimed and did not use.
    pub fn release(&mut self, claimant: &Claimant) -> Result<(), FeedbackError> {
        self.conn
            .execute(
                "UPDATE feedback SET claimed_by = NULL WHERE claimed_by = ?1 AND used_in_version IS NULL",
                [&claimant.0],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// How long this connection waits for another writer's lock before a busy error
    /// (default [`crate::store::BUSY_WAIT`]).
    pub fn set_busy_wait(&self, wait: std::time::Duration) -> Result<(), FeedbackError> {
        self.conn.busy_timeout(wait).map_err(|e| self.err(e))
    }

    pub(super) fn err(&self, e: impl Failure) -> FeedbackError {
        FeedbackError::of(&self.path.display().to_string(), e)
    }

    pub fn count(&self) -> Result<u64, FeedbackError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM feedback", [], |r| {
                int(r, 0, "COUNT(*)")
            })
            .map_err(|e| self.err(e))
    }

    /// Records not yet used by any training run nor claimed by a running one (a claim
    /// of a process that is gone counts as no claim: the next retrain takes them).
    pub fn count_unused(&self) -> Result<u64, FeedbackError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT claimed_by, COUNT(*) FROM feedback WHERE used_in_version IS NULL
                 GROUP BY claimed_by",
            )
            .map_err(|e| self.err(e))?;
        let groups = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    int::<u64>(r, 1, "COUNT(*)")?,
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(groups
            .into_iter()
            .filter(|(holder, _)| holder.as_deref().is_none_or(Claimant::is_stale))
            .map(|(_, n)| n)
            .sum())
    }

    /// Totals and agreement, overall and per model version.
    pub fn stats(&self) -> Result<FeedbackStats, FeedbackError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT model_version, COUNT(*),
                        SUM(CASE WHEN predicted = true_label THEN 1 ELSE 0 END),
                        SUM(CASE WHEN predicted IS NOT NULL THEN 1 ELSE 0 END)
                 FROM feedback GROUP BY model_version ORDER BY model_version",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    opt_int::<u32>(r, 0, "model_version")?,
                    int::<u64>(r, 1, "COUNT(*)")?,
                    int::<u64>(r, 2, "agreed")?,
                    int::<u64>(r, 3, "judged")?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut stats = FeedbackStats::default();
        let (mut agreed, mut judged) = (0u64, 0u64);
        for row in rows {
            let (v, total, ok, with_verdict) = row.map_err(|e| self.err(e))?;
            stats.total += total;
            agreed += ok;
            judged += with_verdict;
            stats.by_version.push(VersionStats {
                version: v,
                total,
                agreed: ok,
                judged: with_verdict,
            });
        }
        stats.agreed = agreed;
        stats.judged = judged;
        stats.agreement = crate::eval::verdict::agreement(agreed, judged);
        Ok(stats)
    }

    /// Who said what: per moderator (None: records without one, from the app or an
    /// import), their records, how often the model's verdict agreed with them, and how
    /// often they agreed with the other moderators' labels on the same accounts (every
    /// pair of records on one user id by two different moderators counts once for each),
    /// and with the confirmed labels of the accounts that have one (a moderator's
    /// records on accounts they confirmed themselves are not counted).
    pub fn moderator_stats(&self) -> Result<Vec<ModeratorStats>, FeedbackError> {
        let mut stmt = self
            .conn
            .prepare(
                "WITH pairs AS MATERIALIZED (
                    SELECT a.moderator AS moderator, COUNT(*) AS n,
                           SUM(CASE WHEN b.true_label = a.true_label THEN 1 ELSE 0 END) AS same
                    FROM feedback a JOIN feedback b
                      ON b.user_id = a.user_id AND b.moderator IS NOT a.moderator
                    WHERE a.user_id IS NOT NULL GROUP BY a.moderator)
                 SELECT f.moderator, COUNT(*),
                        SUM(CASE WHEN f.predicted IS NOT NULL THEN 1 ELSE 0 END),
                        SUM(CASE WHEN f.predicted = f.true_label THEN 1 ELSE 0 END),
                        COALESCE(MAX(p.n), 0), COALESCE(MAX(p.same), 0),
                        SUM(CASE WHEN c.label IS NOT NULL THEN 1 ELSE 0 END),
                        SUM(CASE WHEN c.label = f.true_label THEN 1 ELSE 0 END)
                 FROM feedback f LEFT JOIN pairs p ON p.moderator IS f.moderator
                      LEFT JOIN confirmed_labels c
                        ON c.user_id = f.user_id AND c.confirmed_by IS NOT f.moderator
                 GROUP BY f.moderator ORDER BY f.moderator",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ModeratorStats {
                    moderator: r.get(0)?,
                    records: int(r, 1, "records")?,
                    judged: int(r, 2, "judged")?,
                    agreed_with_model: int(r, 3, "agreed_with_model")?,
                    pairs_with_others: int(r, 4, "pairs_with_others")?,
                    agreed_with_others: int(r, 5, "agreed_with_others")?,
                    confirmed: int(r, 6, "confirmed")?,
                    agreed_with_confirmed: int(r, 7, "agreed_with_confirmed")?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Agreement between the model's verdict and the moderators per version and hour
    /// (records that carry a verdict), oldest first.
    pub fn agreement_over_time(&self) -> Result<Vec<AgreementPoint>, FeedbackError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT model_version, substr(created_at, 1, 13), COUNT(*),
                        SUM(CASE WHEN predicted = true_label THEN 1 ELSE 0 END)
                 FROM feedback
                 WHERE predicted IS NOT NULL AND model_version IS NOT NULL
                 GROUP BY model_version, substr(created_at, 1, 13)
                 ORDER BY substr(created_at, 1, 13), model_version",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(AgreementPoint {
                    version: int(r, 0, "model_version")?,
                    hour: r.get(1)?,
                    total: int(r, 2, "COUNT(*)")?,
                    agreed: int(r, 3, "agreed")?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Every record's label with what it is about (the logged prediction it quotes,
    /// the account's user id), oldest first; records with neither are left out.
    pub fn labels(&self) -> Result<Vec<FeedbackLabel>, FeedbackError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT prediction_id, user_id, true_label FROM feedback
                 WHERE prediction_id IS NOT NULL OR user_id IS NOT NULL ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(FeedbackLabel {
                    prediction_id: r.get(0)?,
                    user_id: read_user_id(r, 1)?.map(|u| u.to_string()),
                    label: label(r, 2, "true_label")?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Records, oldest first; only those not yet used for training when `unused_only`.
    pub fn records(&self, unused_only: bool) -> Result<Vec<Feedback>, FeedbackError> {
        let cols = feature_columns();
        let sql = format!(
            "SELECT id, created_at, user_id, model_version, probability, predicted, true_label,
                    notes, origin, used_in_version, claimed_by, moderator, {} FROM feedback {}
             ORDER BY id",
            cols.join(", "),
            if unused_only {
                "WHERE used_in_version IS NULL"
            } else {
                ""
            }
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let mut features = Vec::with_capacity(N_FEATURES);
                for i in 0..N_FEATURES {
                    features.push(r.get::<_, Option<f64>>(12 + i)?.unwrap_or(f64::NAN));
                }
                Ok(Feedback {
                    id: r.get(0)?,
                    created_at: r.get(1)?,
                    used_in_version: opt_int(r, 9, "used_in_version")?,
                    claimed_by: r.get(10)?,
                    moderator: r.get(11)?,
                    record: NewFeedback {
                        user_id: read_user_id(r, 2)?,
                        model_version: opt_int(r, 3, "model_version")?,
                        probability: r.get(4)?,
                        predicted: opt_label(r, 5, "predicted")?,
                        true_label: label(r, 6, "true_label")?,
                        notes: r.get(7)?,
                        origin: Origin::parse(&r.get::<_, String>(8)?),
                        features,
                    },
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Marks records as used by the training of `version` (one transaction).
    pub fn mark_used(&mut self, ids: &[i64], version: u32) -> Result<(), FeedbackError> {
        let path = self.path.display().to_string();
        let e = |e: rusqlite::Error| FeedbackError::of(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        {
            let mut stmt = tx
                .prepare(
                    "UPDATE feedback SET used_in_version = ?1, claimed_by = NULL WHERE id = ?2",
                )
                .map_err(e)?;
            for id in ids {
                stmt.execute((i64::from(version), id)).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }
}

/// Runs `$call` on whichever store `$self` is.
macro_rules! on_either {
    ($self:ident, $s:ident => $call:expr) => {
        match &$self.backend {
            Backend::Local($s) => $call,
            Backend::Shared($s) => $call,
        }
    };
    (mut $self:ident, $s:ident => $call:expr) => {
        match &mut $self.backend {
            Backend::Local($s) => $call,
            Backend::Shared($s) => $call,
        }
    };
}

impl FeedbackStore {
    /// Opens (creating if needed) the SQLite store at `path`.
    pub fn open(path: &Path) -> Result<FeedbackStore, FeedbackError> {
        Ok(FeedbackStore {
            backend: Backend::Local(Local::open(path)?),
        })
    }

    /// The SQLite store of a registry folder.
    pub fn open_in(registry_root: &Path) -> Result<FeedbackStore, FeedbackError> {
        FeedbackStore::open(&crate::store::layout::Layout::new(registry_root).feedback_db())
    }

    /// The store of `registry`, wherever it keeps it: its folder's SQLite file, or the
    /// tables of its shared database.
    pub fn of(registry: &crate::store::Registry) -> Result<FeedbackStore, FeedbackError> {
        match registry.shared() {
            Some(db) => Ok(FeedbackStore {
                backend: Backend::Shared(shared::Shared::new(db.clone())),
            }),
            None => FeedbackStore::open_in(registry.root()),
        }
    }

    /// The SQLite store (tests of the file's own format).
    #[cfg(test)]
    fn local(&self) -> &Local {
        match &self.backend {
            Backend::Local(l) => l,
            Backend::Shared(_) => panic!("not a SQLite store"),
        }
    }

    /// What to call the store in messages: its file, or the database (no password).
    pub fn shown(&self) -> String {
        match &self.backend {
            Backend::Local(l) => l.path.display().to_string(),
            Backend::Shared(s) => s.shown(),
        }
    }

    fn err(&self, e: impl Failure) -> FeedbackError {
        FeedbackError::of(&self.shown(), e)
    }

    /// How long a write waits for another writer's lock before a busy error (default
    /// [`crate::store::BUSY_WAIT`]).
    pub fn set_busy_wait(&mut self, wait: std::time::Duration) -> Result<(), FeedbackError> {
        on_either!(mut self, s => s.set_busy_wait(wait))
    }

    /// Claims every record that no training used and no other live retrain claimed, in
    /// one transaction, and returns them (oldest first): each record is taken by
    /// exactly one retrain. Claims of processes that are gone are released first.
    pub fn claim_unused(&mut self, claimant: &Claimant) -> Result<Vec<Feedback>, FeedbackError> {
        on_either!(mut self, s => s.claim_unused(claimant))?;
        Ok(self
            .records(true)?
            .into_iter()
            .filter(|r| r.claimed_by.as_deref() == Some(claimant.0.as_str()))
            .collect())
    }

    /// Stores feedback given through the service in one transaction: records with
    /// features (with who gave them and on which logged prediction) and records on
    /// predictions never logged here. Each submission gets its outcome or why it was
    /// refused; the error is the transaction's if it could not be committed.
    ///
    /// A submission with an idempotency key is stored together with its key, unless
    /// the key is known: then it is a replay (same body) or refused (another body),
    /// also when two processes deliver the same key at once. A moderator's record on
    /// an account releases their review claim on it.
    pub fn add_submissions(
        &mut self,
        subs: &[Submission],
    ) -> Result<Vec<Result<Outcome, FeedbackError>>, FeedbackError> {
        self.add_submissions_at(subs, std::time::SystemTime::now())
    }

    /// [`FeedbackStore::add_submissions`] at time `now` (keys older than
    /// [`IDEMPOTENCY_RETENTION`] before it are forgotten first).
    pub fn add_submissions_at(
        &mut self,
        subs: &[Submission],
        now: std::time::SystemTime,
    ) -> Result<Vec<Result<Outcome, FeedbackError>>, FeedbackError> {
        on_either!(mut self, s => s.add_submissions_at(subs, now))
    }

    /// Stores one record in its own transaction; returns its id.
    pub fn add(&mut self, r: &NewFeedback) -> Result<i64, FeedbackError> {
        Ok(self.add_batch(std::slice::from_ref(r))?[0])
    }

    /// Stores records in one transaction (all or none); returns their ids.
    pub fn add_batch(&mut self, records: &[NewFeedback]) -> Result<Vec<i64>, FeedbackError> {
        self.add_batch_by(records, None)
    }

    /// [`FeedbackStore::add_batch`], each record given by `moderator` (the name set in
    /// the app's settings; None: nobody named).
    pub fn add_batch_by(
        &mut self,
        records: &[NewFeedback],
        moderator: Option<&str>,
    ) -> Result<Vec<i64>, FeedbackError> {
        for r in records {
            check_record(r).map_err(|e| self.err(e))?;
        }
        let subs: Vec<Submission> = records
            .iter()
            .map(|r| Submission::Linked {
                record: r.clone(),
                moderator: moderator.map(str::to_string),
                prediction_id: None,
                key: None,
            })
            .collect();
        self.add_submissions(&subs)?
            .into_iter()
            .map(|r| match r? {
                Outcome::Stored(id) | Outcome::Replayed { id, .. } => Ok(id),
                Outcome::KeyReused => Err(self.err("an idempotency key was reused")),
            })
            .collect()
    }

    /// Unlinked feedback: (records, records saying the model was right).
    pub fn unlinked_counts(&self) -> Result<(u64, u64), FeedbackError> {
        on_either!(self, s => s.unlinked_counts())
    }

    /// Gives back what `claimant` claimed and did not use.
    pub fn release(&mut self, claimant: &Claimant) -> Result<(), FeedbackError> {
        on_either!(mut self, s => s.release(claimant))
    }

    pub fn count(&self) -> Result<u64, FeedbackError> {
        on_either!(self, s => s.count())
    }

    /// Records not yet used by any training run nor claimed by a running one (a claim
    /// of a process that is gone counts as no claim: the next retrain takes them).
    pub fn count_unused(&self) -> Result<u64, FeedbackError> {
        on_either!(self, s => s.count_unused())
    }

    /// Totals and agreement, overall and per model version.
    pub fn stats(&self) -> Result<FeedbackStats, FeedbackError> {
        on_either!(self, s => s.stats())
    }

    /// Who said what: per moderator (None: records without one, from the app or an
    /// import), their records, how often the model's verdict agreed with them, and how
    /// often they agreed with the other moderators' labels on the same accounts (every
    /// pair of records on one user id by two different moderators counts once for each),
    /// and with the confirmed labels of the accounts that have one (a moderator's
    /// records on accounts they confirmed themselves are not counted).
    pub fn moderator_stats(&self) -> Result<Vec<ModeratorStats>, FeedbackError> {
        on_either!(self, s => s.moderator_stats())
    }

    /// Agreement between the model's verdict and the moderators per version and hour
    /// (records that carry a verdict), oldest first.
    pub fn agreement_over_time(&self) -> Result<Vec<AgreementPoint>, FeedbackError> {
        on_either!(self, s => s.agreement_over_time())
    }

    /// Every record's label with what it is about (the logged prediction it quotes,
    /// the account's user id), oldest first; records with neither are left out.
    pub fn labels(&self) -> Result<Vec<FeedbackLabel>, FeedbackError> {
        on_either!(self, s => s.labels())
    }

    /// Records, oldest first; only those not yet used for training when `unused_only`.
    pub fn records(&self, unused_only: bool) -> Result<Vec<Feedback>, FeedbackError> {
        on_either!(self, s => s.records(unused_only))
    }

    /// Marks records as used by the training of `version` (one transaction).
    pub fn mark_used(&mut self, ids: &[i64], version: u32) -> Result<(), FeedbackError> {
        on_either!(mut self, s => s.mark_used(ids, version))
    }

    /// Confirms the final label of each account in `labels`, by `by` at `now`, in one
    /// transaction; a confirmation replaces the one before (the new confirmer and time
    /// are kept). Returns the confirmations replaced, in order.
    pub fn confirm_labels(
        &mut self,
        labels: &[(UserId, u8)],
        by: &str,
        notes: &str,
        now: std::time::SystemTime,
    ) -> Result<Vec<Option<review::ConfirmedLabel>>, FeedbackError> {
        check_ids(labels.iter().map(|(u, _)| u)).map_err(|e| self.err(e))?;
        if labels.iter().any(|(_, l)| *l > 1) {
            return Err(self.err("labels must be 0 or 1"));
        }
        on_either!(mut self, s => s.confirm_labels(labels, by, notes, now))
    }

    /// The confirmed label of `user_id`, if any.
    pub fn confirmed_label(
        &self,
        user_id: &str,
    ) -> Result<Option<review::ConfirmedLabel>, FeedbackError> {
        on_either!(self, s => s.confirmed_label(user_id.trim()))
    }

    /// The feedback records on `user_id`, oldest first.
    pub fn account_records(
        &self,
        user_id: &str,
    ) -> Result<Vec<review::AccountRecord>, FeedbackError> {
        on_either!(self, s => s.account_records(user_id.trim()))
    }

    /// Claims `ids` for review by `moderator` until `now + ttl`, in one transaction: an
    /// id nobody holds, whose claim expired, or that `moderator` holds already (renewed)
    /// is granted; the others are reported with their holder. Two moderators claiming
    /// at once (on one machine or two): each id goes to exactly one.
    pub fn claim_for_review(
        &mut self,
        ids: &[UserId],
        moderator: &str,
        ttl: std::time::Duration,
        now: std::time::SystemTime,
    ) -> Result<review::ClaimOutcome, FeedbackError> {
        check_ids(ids).map_err(|e| self.err(e))?;
        let ids = review::distinct(ids);
        on_either!(mut self, s => s.claim_for_review(&ids, moderator, ttl, now))
    }

    /// Gives back `moderator`'s claims on `ids` (others' claims stay); returns how many
    /// were released.
    pub fn release_review_claims(
        &mut self,
        ids: &[UserId],
        moderator: &str,
    ) -> Result<usize, FeedbackError> {
        check_ids(ids).map_err(|e| self.err(e))?;
        let ids = review::distinct(ids);
        on_either!(mut self, s => s.release_review_claims(&ids, moderator))
    }

    /// The review claims open at `now`: unexpired ones (a claim is deleted when released
    /// or when its holder gives feedback on the account), how many and the oldest's
    /// time. One query, whatever the number of claims.
    pub fn open_review_claims(
        &self,
        now: std::time::SystemTime,
    ) -> Result<review::OpenClaims, FeedbackError> {
        on_either!(self, s => s.open_review_claims(now))
    }

    /// Every account's confirmed final label.
    pub fn confirmed_labels(&self) -> Result<Vec<(UserId, u8)>, FeedbackError> {
        on_either!(self, s => s.confirmed_labels())
    }

    /// How long reviews took, claim to the holder's feedback, over every review kept:
    /// how many took at most each of `bounds` seconds (cumulative, as a Prometheus
    /// histogram counts), how many in all, and their sum in seconds.
    pub fn review_times(&self, bounds: &[f64]) -> Result<review::ReviewTimes, FeedbackError> {
        on_either!(self, s => s.review_times(bounds))
    }

    /// For each of `ids` (each once, in order): its unexpired claim at `now`, the
    /// feedback records on it and its confirmed label, read consistently.
    pub fn claims_and_reviews(
        &mut self,
        ids: &[UserId],
        now: std::time::SystemTime,
    ) -> Result<Vec<review::AccountStatus>, FeedbackError> {
        check_ids(ids).map_err(|e| self.err(e))?;
        let ids = review::distinct(ids);
        on_either!(mut self, s => s.claims_and_reviews(&ids, now))
    }
}

/// The first user id of `ids` that is not a valid one, and why.
fn check_ids<'a>(ids: impl IntoIterator<Item = &'a UserId>) -> Result<(), String> {
    for u in ids {
        if let Some(problem) = crate::data::user_id_problem(u.trim()) {
            return Err(problem);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A claim made on another host sharing the store cannot be checked from here: it
    /// stays live for a day (never taken from a retrain running there), then is stale.
    /// Here, a claim is stale when its process is gone.
    #[test]
    fn claims_of_other_hosts_are_live_for_a_day() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let me = Claimant::this_process();
        assert!(!Claimant::is_stale(&me.0));
        assert!(me.0.ends_with(&format!(":{}", host_name())));
        assert!(!Claimant::is_stale(&format!(
            "pid:999999999:{now}:another-host"
        )));
        let old = now - CLAIM_MAX_AGE_NANOS - 1;
        assert!(Claimant::is_stale(&format!(
            "pid:999999999:{old}:another-host"
        )));
        // This host's, of a process that is gone (pids stay below 2^22 on Linux).
        assert!(Claimant::is_stale(&format!(
            "pid:999999999:{now}:{}",
            host_name()
        )));
        assert!(Claimant::is_stale(&format!("pid:999999999:{now}")));
    }

    fn rec(label: u8, predicted: Option<u8>, version: Option<u32>) -> NewFeedback {
        let mut features: Vec<f64> = (0..N_FEATURES).map(|i| i as f64).collect();
        features[12] = f64::NAN;
        NewFeedback {
            user_id: Some(UserId::from("00042")),
            features,
            true_label: label,
            probability: predicted.map(|p| if p == 1 { 0.9 } else { 0.1 }),
            model_version: version,
            predicted,
            notes: "checked the messages".into(),
            origin: Origin::App,
        }
    }

    /// One group: a record with its moderator and prediction, a refused one, and one
    /// on an unknown prediction; each answered on its own, all committed together.
    #[test]
    fn submissions_are_stored_together_and_refused_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FeedbackStore::open_in(dir.path()).unwrap();
        let out = s
            .add_submissions(&[
                Submission::Linked {
                    record: rec(1, Some(0), Some(2)),
                    moderator: Some("alice".into()),
                    prediction_id: Some("p-1".into()),
                    key: None,
                },
                Submission::Linked {
                    record: rec(2, None, None),
                    moderator: Some("bob".into()),
                    prediction_id: None,
                    key: None,
                },
                Submission::Unlinked {
                    prediction_id: "uuid-7".into(),
                    is_correct: false,
                    actual_label: Some(1),
                    notes: String::new(),
                    moderator: "carol".into(),
                    key: None,
                },
            ])
            .unwrap();
        assert!(out[0].is_ok() && out[2].is_ok(), "{out:?}");
        assert!(out[1].as_ref().unwrap_err().message.contains("0 or 1"));
        assert_eq!(s.count().unwrap(), 1);
        assert_eq!(s.unlinked_counts().unwrap(), (1, 0));
        let (who, pid): (Option<String>, Option<String>) = s
            .local()
            .conn
            .query_row("SELECT moderator, prediction_id FROM feedback", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(
            (who.as_deref(), pid.as_deref()),
            (Some("alice"), Some("p-1"))
        );
    }

    /// A constructed team: alice and bob label the same ten accounts alike, carol labels
    /// them the other way; the model agrees with alice and bob.
    #[test]
    fn moderator_stats_tell_who_agrees_with_whom() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FeedbackStore::open_in(dir.path()).unwrap();
        let mut subs = Vec::new();
        for u in 0..10u8 {
            let truth = u % 2;
            for (who, label) in [("alice", truth), ("bob", truth), ("carol", 1 - truth)] {
                let mut r = rec(label, Some(truth), Some(1));
                r.user_id = Some(UserId::from(format!("u{u}").as_str()));
                subs.push(Submission::Linked {
                    record: r,
                    moderator: Some(who.into()),
                    prediction_id: None,
                    key: None,
                });
            }
        }
        // One record without a moderator, on an account nobody else labelled.
        subs.push(Submission::Linked {
            record: rec(1, None, None),
            moderator: None,
            prediction_id: None,
            key: None,
        });
        assert!(s.add_submissions(&subs).unwrap().iter().all(Result::is_ok));
        let stats = s.moderator_stats().unwrap();
        let of = |m: Option<&str>| {
            stats
                .iter()
                .find(|x| x.moderator.as_deref() == m)
                .unwrap()
                .clone()
        };
        let alice = of(Some("alice"));
        assert_eq!(
            (alice.records, alice.judged, alice.agreed_with_model),
            (10, 10, 10)
        );
        // Each of alice's records pairs with bob's and carol's: 20 pairs, 10 agree.
        assert_eq!(
            (alice.pairs_with_others, alice.agreed_with_others),
            (20, 10)
        );
        let carol = of(Some("carol"));
        assert_eq!((carol.agreed_with_model, carol.agreed_with_others), (0, 0));
        assert_eq!(carol.pairs_with_others, 20);
        let nobody = of(None);
        assert_eq!(
            (nobody.records, nobody.judged, nobody.pairs_with_others),
            (1, 0, 0)
        );
    }

    /// Many threads submit at once through one writer: every record is stored once,
    /// each caller gets its own id, and all is on disk when the writer is dropped.
    #[test]
    fn the_writer_commits_concurrent_submissions() {
        let dir = tempfile::tempdir().unwrap();
        let w = std::sync::Arc::new(FeedbackWriter::open_in(dir.path()).unwrap());
        let ids: Vec<i64> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let w = w.clone();
                    scope.spawn(move || {
                        (0..50)
                            .map(|i| {
                                w.submit(Submission::Linked {
                                    record: rec((i % 2) as u8, Some(1), Some(1)),
                                    moderator: Some(format!("m{t}")),
                                    prediction_id: None,
                                    key: None,
                                })
                                .unwrap()
                                .id()
                                .unwrap()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let unique: std::collections::HashSet<i64> = ids.iter().copied().collect();
        assert_eq!((ids.len(), unique.len()), (400, 400));
        // An invalid record is refused with its reason; the writer goes on.
        let bad = w.submit(Submission::Linked {
            record: rec(5, None, None),
            moderator: None,
            prediction_id: None,
            key: None,
        });
        assert!(bad.unwrap_err().message.contains("0 or 1"));
        drop(w);
        assert_eq!(
            FeedbackStore::open_in(dir.path()).unwrap().count().unwrap(),
            400
        );
    }

    #[test]
    fn records_round_trip_with_all_features() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FeedbackStore::open_in(dir.path()).unwrap();
        let id = s.add(&rec(1, Some(0), Some(3))).unwrap();
        let all = s.records(false).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].id, id);
        let r = &all[0].record;
        assert_eq!(r.features.len(), 51);
        assert!(r.features[12].is_nan());
        assert_eq!(r.features[50], 50.0);
        assert_eq!(
            (r.true_label, r.predicted, r.model_version),
            (1, Some(0), Some(3))
        );
        assert_eq!(r.notes, "checked the messages");
        assert!(all[0].created_at.starts_with("20"));
        // Reopening sees the same data (it is on disk).
        drop(s);
        let s = FeedbackStore::open_in(dir.path()).unwrap();
        assert_eq!(s.count().unwrap(), 1);
    }

    #[test]
    fn stats_and_used_marks() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FeedbackStore::open_in(dir.path()).unwrap();
        s.add_batch(&[
            rec(1, Some(1), Some(1)),
            rec(0, Some(1), Some(1)),
            rec(0, Some(0), Some(2)),
            rec(1, None, None),
        ])
        .unwrap();
        let st = s.stats().unwrap();
        assert_eq!(st.total, 4);
        assert_eq!(st.agreement, Some(2.0 / 3.0));
        let v1 = st.by_version.iter().find(|v| v.version == Some(1)).unwrap();
        assert_eq!((v1.total, v1.agreed), (2, 1));
        let ids: Vec<i64> = s
            .records(true)
            .unwrap()
            .iter()
            .map(|f| f.id)
            .take(2)
            .collect();
        s.mark_used(&ids, 5).unwrap();
        assert_eq!(s.records(true).unwrap().len(), 2);
        assert_eq!(s.records(false).unwrap()[0].used_in_version, Some(5));
    }

    /// Text ids are stored as text: "00042", a UUID and a formula-like id come back
    /// exactly as given.
    #[test]
    fn string_user_ids_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FeedbackStore::open_in(dir.path()).unwrap();
        let ids = [
            "00042",
            "550e8400-e29b-41d4-a716-446655440000",
            "=HYPERLINK(\"http://x\")",
            "1e5",
        ];
        let batch: Vec<NewFeedback> = ids
            .iter()
            .map(|u| NewFeedback {
                user_id: Some(UserId::from(*u)),
                ..rec(1, None, None)
            })
            .collect();
        s.add_batch(&batch).unwrap();
        drop(s);
        let s = FeedbackStore::open_in(dir.path()).unwrap();
        let back: Vec<String> = s
            .records(false)
            .unwrap()
            .iter()
            .map(|f| f.record.user_id.as_deref().unwrap().to_string())
            .collect();
        assert_eq!(back, ids);
        // An empty or over-long id is refused.
        let mut s = s;
        let mut bad = rec(1, None, None);
        bad.user_id = Some(UserId::from("  "));
        assert!(s.add(&bad).unwrap_err().message.contains("empty"));
        bad.user_id = Some(UserId::from("u".repeat(crate::data::MAX_USER_ID_BYTES + 1)));
        assert!(s.add(&bad).unwrap_err().message.contains("at most"));
    }

    /// A store made before ids were text (`user_id INTEGER`, integer values) still
    /// reads, its ids as decimal text, and is rebuilt with a TEXT column so that new
    /// text ids are kept exactly (INTEGER affinity would turn "00123" into 123).
    #[test]
    fn old_stores_with_integer_user_ids_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            let old = create_table("feedback").replace("user_id TEXT", "user_id INTEGER");
            conn.execute_batch(&format!(
                "{old};
                CREATE INDEX feedback_version ON feedback(model_version);
                CREATE INDEX feedback_used ON feedback(used_in_version);"
            ))
            .unwrap();
            conn.execute(
                "INSERT INTO feedback (created_at, user_id, true_label, notes, origin, used_in_version, x1)
                 VALUES ('2024-01-01T00:00:00Z', 10000007, 1, 'old', 'import', 3, 2.5),
                        ('2024-01-01T00:00:01Z', NULL, 0, '', 'app', NULL, NULL)",
                [],
            )
            .unwrap();
            assert_eq!(user_id_type(&conn).unwrap(), "INTEGER");
        }
        let mut s = FeedbackStore::open(&path).unwrap();
        assert_eq!(user_id_type(&s.local().conn).unwrap(), "TEXT");
        let all = s.records(false).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].record.user_id.as_deref(), Some("10000007"));
        assert_eq!(all[0].used_in_version, Some(3));
        assert_eq!(all[0].record.features[0], 2.5);
        assert_eq!(all[1].record.user_id, None);
        s.add(&rec(0, None, None)).unwrap();
        let all = s.records(false).unwrap();
        assert_eq!(all[2].record.user_id.as_deref(), Some("00042"));
        assert_eq!(s.count_unused().unwrap(), 2);
        // The team's tables came with the opening: confirmations join the old records.
        s.confirm_labels(
            &[(UserId::from("10000007"), 1)],
            "lead",
            "",
            std::time::SystemTime::now(),
        )
        .unwrap();
        let nobody = s.moderator_stats().unwrap().remove(0);
        assert_eq!((nobody.confirmed, nobody.agreed_with_confirmed), (1, 1));
        // Opening again leaves the rebuilt store as it is.
        drop(s);
        let s = FeedbackStore::open(&path).unwrap();
        assert_eq!(s.count().unwrap(), 3);
    }

    fn keyed(key: &str, caller: &str, hash: &str, label: u8) -> Submission {
        let mut r = rec(label, Some(0), Some(1));
        r.user_id = Some(UserId::from("acct-7"));
        Submission::Linked {
            record: r,
            moderator: Some(caller.into()),
            prediction_id: None,
            key: Some(IdempotencyKey::new(key, caller, hash).unwrap()),
        }
    }

    /// A keyed submission is stored once: a replay (in the same group or later) gets
    /// the first id and stores nothing, another body is refused, another caller's key
    /// is its own, and a key older than the retention is forgotten.
    #[test]
    fn idempotency_keys_store_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FeedbackStore::open_in(dir.path()).unwrap();
        let out = s
            .add_submissions(&[keyed("k-1", "ann", "h1", 1), keyed("k-1", "ann", "h1", 1)])
            .unwrap();
        let Ok(Outcome::Stored(id)) = out[0] else {
            panic!("{out:?}")
        };
        let replay = Outcome::Replayed {
            id,
            linked: true,
            label: Some(1),
        };
        assert_eq!(out[1].as_ref().unwrap(), &replay);
        let again = s.add_submissions(&[keyed("k-1", "ann", "h1", 1)]).unwrap();
        assert_eq!(again[0].as_ref().unwrap(), &replay);
        let other = s.add_submissions(&[keyed("k-1", "ann", "h2", 0)]).unwrap();
        assert_eq!(other[0].as_ref().unwrap(), &Outcome::KeyReused);
        assert_eq!(s.count().unwrap(), 1);
        // Ben's k-1 is not ann's.
        let ben = s.add_submissions(&[keyed("k-1", "ben", "h2", 0)]).unwrap();
        assert!(matches!(ben[0], Ok(Outcome::Stored(b)) if b != id));
        // Unlinked feedback replays as unlinked.
        let unlinked = Submission::Unlinked {
            prediction_id: "uuid-1".into(),
            is_correct: true,
            actual_label: None,
            notes: String::new(),
            moderator: "ann".into(),
            key: Some(IdempotencyKey::new("k-2", "ann", "h3").unwrap()),
        };
        let first = s.add_submissions(std::slice::from_ref(&unlinked)).unwrap();
        let Ok(Outcome::Stored(u)) = first[0] else {
            panic!("{first:?}")
        };
        let second = s.add_submissions(&[unlinked]).unwrap();
        assert_eq!(
            second[0].as_ref().unwrap(),
            &Outcome::Replayed {
                id: u,
                linked: false,
                label: None
            }
        );
        assert_eq!(s.unlinked_counts().unwrap().0, 1);
        // 31 days on, ann's k-1 is forgotten: a new record.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(31 * 24 * 3600);
        let late = s
            .add_submissions_at(&[keyed("k-1", "ann", "h2", 0)], later)
            .unwrap();
        assert!(
            matches!(late[0], Ok(Outcome::Stored(n)) if n != id),
            "{late:?}"
        );
        assert_eq!(s.count().unwrap(), 3);
        // Keys: 1 to 128 printable ASCII characters.
        for bad in ["", "tab\there", "é", &"k".repeat(129)] {
            let e = IdempotencyKey::new(bad, "ann", "h").unwrap_err();
            let why = if bad.is_empty() || bad.len() > 128 {
                "must be 1 to 128 characters"
            } else {
                "must be printable ASCII"
            };
            assert!(e.starts_with(why), "{bad:?}: {e}");
        }
        assert!(IdempotencyKey::new(&"k".repeat(128), "ann", "h").is_ok());
    }

    /// Two connections (two processes) storing the same key at once: one record.
    #[test]
    fn the_same_key_from_two_connections_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        FeedbackStore::open_in(dir.path()).unwrap();
        let outs: Vec<Outcome> = std::thread::scope(|scope| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let root = dir.path();
                    scope.spawn(move || {
                        let mut s = FeedbackStore::open_in(root).unwrap();
                        s.add_submissions(&[keyed("same", "ann", "h", 1)]).unwrap()[0]
                            .clone()
                            .unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let stored = outs
            .iter()
            .filter(|o| matches!(o, Outcome::Stored(_)))
            .count();
        assert_eq!(stored, 1, "{outs:?}");
        let ids: std::collections::HashSet<i64> = outs.iter().filter_map(Outcome::id).collect();
        assert_eq!(ids.len(), 1);
        assert_eq!(
            FeedbackStore::open_in(dir.path()).unwrap().count().unwrap(),
            1
        );
    }

    #[test]
    fn invalid_records_are_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FeedbackStore::open_in(dir.path()).unwrap();
        let mut bad = rec(1, None, None);
        bad.features.pop();
        let e = s
            .add_batch(&[rec(0, None, None), bad])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a record needs 51 feature values, got 50"),
            "{e}"
        );
        assert_eq!(s.count().unwrap(), 0, "nothing of a failed batch is stored");
        let mut bad = rec(3, None, None);
        bad.true_label = 3;
        let e = s.add(&bad).unwrap_err().to_string();
        assert!(e.contains("labels must be 0 or 1"), "{e}");
        assert_eq!(s.count().unwrap(), 0);
    }
}
