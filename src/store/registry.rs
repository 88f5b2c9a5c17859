//! The model registry: one folder per version, an active-version pointer, atomic writes.
//!
//! ```text
//! REGISTRY/
//!   ACTIVE                 active version number (replaced atomically)
//!   versions/v0001/        manifest.ron, model.bin, holdout.bin
//!   versions/v0002/ ...
//!   staging/               versions being written (cleared of leftovers on open)
//!   registry.lock          held while writing
//! ```
//! A version folder is written completely in `staging/`, fsynced, then renamed into
//! `versions/` in one step, so a crash never leaves a half-written version behind a
//! name. Model and holdout files are checked against the SHA-256 in the manifest on
//! every load: a truncated or corrupted file is reported, never loaded. See
//! `models/README.md` for the format.
//!
//! The same registry can live in a shared PostgreSQL store ([`Registry::open_at`] with
//! a `postgres://` location, tables in [`crate::store::pg::registry`]): every writer then
//! works in one transaction that first locks the active pointer's row, and the folder
//! is only the local cache of model files (by checksum), logs and reports.

use crate::data::DataSource;
use crate::eval::metrics::Metrics;
use crate::model::forest::ForestParams;
use crate::model::{Model, ModelError};
use crate::util::hash::sha256_hex;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::store::layout::{HOLDOUT_FILE, Layout, MANIFEST_FILE, MODEL_FILE};
use crate::store::location::Location;
use crate::store::pg;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{path}: manifest is unreadable: {message}")]
    Manifest { path: String, message: String },
    #[error(
        "{path}: checksum mismatch (expected {expected}, found {actual}); the file is truncated or corrupted"
    )]
    Checksum {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("{path}: {source}")]
    Model { path: String, source: ModelError },
    #[error("registry {0} has no model version yet; run `spamscope train` first")]
    NoVersions(String),
    #[error("version {0} does not exist in the registry")]
    NoSuchVersion(u32),
    #[error("policy {0} does not exist in the registry")]
    NoSuchPolicy(u32),
    /// The active version cannot be loaded; `fallback` is the newest earlier version
    /// that loads, if any.
    #[error("the active version v{version} is damaged ({source}); {}", recovery_hint(*.fallback))]
    DamagedActive {
        version: u32,
        source: Box<StoreError>,
        fallback: Option<u32>,
    },
    /// Another process held the registry's write lock for longer than the limit.
    #[error(
        "{path}: another spamscope process has held the registry's lock for {waited_secs} s; gave up (the limit is {limit_secs} s, set by SPAMSCOPE_LOCK_TIMEOUT)"
    )]
    LockTimeout {
        path: String,
        waited_secs: u64,
        limit_secs: u64,
    },
    /// The shared database failed (unreachable, busy, a refused write...).
    #[error("{message}")]
    Database {
        message: String,
        kind: super::ErrorKind,
    },
    /// A manifest names a file outside its version folder (or a link out of it).
    #[error("{manifest}: the file {name} {why}; refusing to read it")]
    Confinement {
        manifest: String,
        name: String,
        why: &'static str,
    },
}

impl StoreError {
    /// What kind of failure this is (busy, not found, corrupt...).
    pub fn kind(&self) -> super::ErrorKind {
        use super::ErrorKind as K;
        match self {
            StoreError::Io { .. } => K::Other,
            StoreError::LockTimeout { .. } => K::Busy,
            StoreError::Database { kind, .. } => *kind,
            StoreError::NoVersions(_)
            | StoreError::NoSuchVersion(_)
            | StoreError::NoSuchPolicy(_) => K::NotFound,
            StoreError::Manifest { .. }
            | StoreError::Checksum { .. }
            | StoreError::Model { .. }
            | StoreError::DamagedActive { .. }
            | StoreError::Confinement { .. } => K::Corrupt,
        }
    }
}

fn recovery_hint(fallback: Option<u32>) -> String {
    match fallback {
        Some(v) => format!(
            "the newest earlier version that loads is v{v}: roll back to it with `spamscope rollback --to {v}`"
        ),
        None => "no earlier version loads; train a new one with `spamscope train`".into(),
    }
}

/// How long a writer waits for another process's registry lock before giving up, unless
/// `SPAMSCOPE_LOCK_TIMEOUT` (seconds, 1–86400) says otherwise. Writers hold the lock only
/// while they write a version's files or a pointer (never while training), so a wait
/// this long means the other process is stuck.
pub const LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// After this long waiting for the lock, the wait is announced.
pub const LOCK_NOTICE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

fn lock_timeout() -> std::time::Duration {
    std::env::var("SPAMSCOPE_LOCK_TIMEOUT")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && (0.05..=86_400.0).contains(s))
        .map_or(LOCK_TIMEOUT, std::time::Duration::from_secs_f64)
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// A file of a version, with its checksum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRef {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

/// How the holdout metrics were measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Evaluation {
    /// A stratified split of the training data.
    Split { test_fraction: f64, seed: u64 },
    /// A separate test file.
    TestFile { source: DataSource },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Status {
    /// Trained and registered (active or not is the ACTIVE pointer's business).
    #[default]
    Registered,
    /// Failed a promotion gate; kept for the record.
    Rejected,
    /// Was active until a moderator rolled back to an earlier version.
    RolledBack,
}

/// How a version did on the held-out slice of moderators' feedback.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeedbackEval {
    pub records: usize,
    /// Mean squared error of the probability against the moderators' labels.
    pub brier: f64,
    /// Share of records where the verdict matches the moderators' label.
    pub accuracy: f64,
    /// ROC-AUC, when the slice holds both classes.
    pub roc_auc: Option<f64>,
}

/// The promotion gate's inputs and decision for a retrained candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// The version the candidate was compared with (the active one).
    pub against: u32,
    pub base_auc_active: f64,
    pub base_auc_candidate: f64,
    pub max_auc_drop: f64,
    pub feedback_active: Option<FeedbackEval>,
    pub feedback_candidate: Option<FeedbackEval>,
    pub promoted: bool,
    pub reason: String,
}

/// Everything known about one model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub parent: Option<u32>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub data: DataSource,
    pub train_rows: usize,
    pub train_positives: usize,
    pub test_rows: usize,
    pub evaluation: Evaluation,
    pub params: ForestParams,
    pub train_seconds: f64,
    pub imputation_medians: Vec<f64>,
    /// Decision threshold: spam when probability > threshold.
    pub threshold: f64,
    /// Holdout metrics at `threshold`.
    pub metrics: Metrics,
    /// (feature id, importance), in column order.
    pub importance: Vec<(String, f64)>,
    pub model_file: FileRef,
    pub holdout_file: FileRef,
    /// How `holdout_file` stores user ids: [`HOLDOUT_TEXT_IDS`] (text) in versions made
    /// since user ids are text; absent (read as [`HOLDOUT_INTEGER_IDS`]) in older
    /// manifests, whose holdouts hold integer ids (loaded as their decimal text).
    #[serde(default = "integer_ids")]
    pub holdout_format: u32,
    #[serde(default)]
    pub status: Status,
    #[serde(default)]
    pub status_reason: Option<String>,
    /// Feedback records used to train this version.
    #[serde(default)]
    pub feedback_used: usize,
    /// The promotion gate, for versions made by retraining on feedback.
    #[serde(default)]
    pub gate: Option<Gate>,
    /// Distribution of each feature in the training rows (reference for drift).
    #[serde(default)]
    pub profiles: Option<Vec<crate::eval::monitor::FeatureProfile>>,
    /// What was fitted. Absent in versions made before the model comparison existed:
    /// those are forests with `params`.
    #[serde(default)]
    pub recipe: Option<crate::model::recipe::Recipe>,
    /// How its scores are calibrated (method, holdout, the average account's
    /// probability), as its model file holds it; None for versions saved before
    /// calibration existed.
    #[serde(default)]
    pub calibration: Option<String>,
}

impl Manifest {
    /// active / previous / rejected / rolled back, as the version lists show it.
    pub fn status_name(&self, active: Option<u32>) -> &'static str {
        if Some(self.version) == active {
            return "active";
        }
        match self.status {
            Status::Registered => "previous",
            Status::Rejected => "rejected",
            Status::RolledBack => "rolled back",
        }
    }

    /// The recipe to retrain this version with.
    pub fn recipe(&self) -> crate::model::recipe::Recipe {
        self.recipe
            .clone()
            .unwrap_or_else(|| crate::model::recipe::Recipe::forest(self.params.clone()))
    }

    /// "random forest, 300 trees, balanced weights" etc.
    pub fn model_kind(&self) -> String {
        self.recipe().describe()
    }
}

/// `holdout_format` of versions made before user ids were text: integer ids.
pub const HOLDOUT_INTEGER_IDS: u32 = 1;
/// `holdout_format` of versions that store user ids as text.
pub const HOLDOUT_TEXT_IDS: u32 = 2;

fn integer_ids() -> u32 {
    HOLDOUT_INTEGER_IDS
}

/// Holdout predictions of a version (for curves and threshold tuning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holdout {
    #[serde(with = "text_ids")]
    pub user_ids: Vec<crate::data::UserId>,
    pub labels: Vec<u8>,
    pub scores: Vec<f64>,
}

/// User ids in a holdout file: a sequence of strings.
mod text_ids {
    use crate::data::UserId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ids: &[UserId], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ids.iter().map(|u| &**u))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<UserId>, D::Error> {
        let ids: Vec<String> = Vec::deserialize(d)?;
        Ok(ids.into_iter().map(UserId::from).collect())
    }
}

/// The holdout of versions made before user ids were text ([`HOLDOUT_INTEGER_IDS`]).
#[derive(Deserialize)]
struct IntegerIdHoldout {
    user_ids: Vec<i64>,
    labels: Vec<u8>,
    scores: Vec<f64>,
}

/// A version folder as listed: its manifest, or why it cannot be read.
#[derive(Debug)]
pub struct Entry {
    pub version: u32,
    pub manifest: Result<Manifest, StoreError>,
}

/// What a caller provides to register a version; the registry fills in the number,
/// parent, time and file references.
pub struct NewVersion<'a> {
    pub model: &'a Model,
    pub holdout: &'a Holdout,
    pub data: DataSource,
    pub train_rows: usize,
    pub train_positives: usize,
    pub evaluation: Evaluation,
    pub params: ForestParams,
    pub train_seconds: f64,
    pub threshold: f64,
    pub metrics: Metrics,
    pub status: Status,
    pub status_reason: Option<String>,
    pub feedback_used: usize,
    pub gate: Option<Gate>,
    pub profiles: Option<Vec<crate::eval::monitor::FeatureProfile>>,
    pub recipe: Option<crate::model::recipe::Recipe>,
}

#[derive(Debug, Clone)]
pub struct Registry {
    /// The folder: the registry itself, or for a shared store the local cache (model
    /// files, logs, reports).
    layout: Layout,
    lock_timeout: std::time::Duration,
    /// The PostgreSQL database that holds everything shared, if any.
    shared: Option<pg::Db>,
}

/// What a registry writer holds while it writes: the folder's lock file, or a
/// transaction on the shared store with the active pointer's row locked. Reads made
/// through it see what the writer will build on.
enum Held<'a, 't> {
    Folder(#[allow(dead_code)] File),
    Shared(&'a mut pg::Transaction<'t>),
}

/// Changes committed to a shared registry by any process ([`Registry::changes`]).
pub struct Changes(pg::Listener);

impl Changes {
    /// What changed next (`active`, `versions`, `tokens`, a document's name), waiting
    /// at most `wait` (None: nothing came); an error when the feed is lost.
    pub fn next(&mut self, wait: std::time::Duration) -> Result<Option<String>, StoreError> {
        Ok(self.0.next(wait)?)
    }
}

/// The registry's documents: small texts beside the versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// The service's running shadow or canary experiment (JSON).
    Experiment,
    /// The online-learning settings (RON).
    OnlineSettings,
    /// The latest model comparison (JSON).
    LatestComparison,
}

impl Document {
    /// Every document a registry may hold.
    pub const ALL: [Document; 3] = [
        Document::Experiment,
        Document::OnlineSettings,
        Document::LatestComparison,
    ];

    fn key(self) -> &'static str {
        match self {
            Document::Experiment => "experiment",
            Document::OnlineSettings => "online_settings",
            Document::LatestComparison => "latest_comparison",
        }
    }
}

impl From<pg::DbError> for StoreError {
    fn from(e: pg::DbError) -> StoreError {
        StoreError::Database {
            message: e.message,
            kind: e.kind,
        }
    }
}

impl Registry {
    /// The default location: `$SPAMSCOPE_HOME`, else the platform data directory.
    pub fn default_root() -> PathBuf {
        if let Some(h) = std::env::var_os("SPAMSCOPE_HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(h);
        }
        dirs::data_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("spamscope")
    }

    /// Opens (creating if needed) a registry and clears leftovers of interrupted writes.
    pub fn open(root: impl Into<PathBuf>) -> Result<Registry, StoreError> {
        let reg = Registry {
            layout: Layout::new(root),
            lock_timeout: lock_timeout(),
            shared: None,
        };
        for d in [reg.versions_dir(), reg.staging_dir()] {
            fs::create_dir_all(&d).map_err(|e| io_err(&d, e))?;
        }
        let _lock = reg.lock()?;
        if let Ok(rd) = fs::read_dir(reg.staging_dir()) {
            for e in rd.flatten() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        Ok(reg)
    }

    /// Opens the registry at `location`: a folder ([`Registry::open`]) or a PostgreSQL
    /// database (connecting, creating or migrating its schema) with its local cache.
    pub fn open_at(location: &Location) -> Result<Registry, StoreError> {
        match location {
            Location::Folder(root) => Registry::open(root),
            Location::Postgres { url, cache } => {
                let db = pg::Db::open(url)?;
                let files = Layout::new(cache).cached_files_dir();
                fs::create_dir_all(&files).map_err(|e| io_err(&files, e))?;
                Ok(Registry {
                    layout: Layout::new(cache),
                    lock_timeout: lock_timeout(),
                    shared: Some(db),
                })
            }
        }
    }

    /// [`Registry::open_at`], trying again every second for up to `wait` while the
    /// store does not answer (a database starting, restarting or out of connections);
    /// `on_wait` hears the first such failure. Any other failure, or the last one, is
    /// returned.
    pub fn open_waiting(
        location: &Location,
        wait: std::time::Duration,
        on_wait: impl FnOnce(&StoreError),
    ) -> Result<Registry, StoreError> {
        let until = std::time::Instant::now() + wait;
        let mut on_wait = Some(on_wait);
        loop {
            match Registry::open_at(location) {
                Err(e)
                    if e.kind() == super::ErrorKind::Busy
                        && std::time::Instant::now() + std::time::Duration::from_secs(1)
                            <= until =>
                {
                    if let Some(f) = on_wait.take() {
                        f(&e);
                    }
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    /// The same registry with another limit on waiting for the write lock.
    pub fn with_lock_timeout(mut self, limit: std::time::Duration) -> Registry {
        self.lock_timeout = limit;
        self
    }

    /// The local folder: the registry itself, or a shared store's cache. What only this
    /// machine keeps (the operations log, reports, the app's outbox) goes here.
    pub fn root(&self) -> &Path {
        self.layout.root()
    }
    /// Where everything in the local folder lives.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    /// The shared database, when the registry is kept in one.
    pub fn shared(&self) -> Option<&pg::Db> {
        self.shared.as_ref()
    }
    /// `folder` or `postgres`: where this registry is kept (for a readiness answer).
    pub fn backend_name(&self) -> &'static str {
        match self.shared {
            Some(_) => "postgres",
            None => "folder",
        }
    }

    /// Whether the store answers now: the shared database a query, the folder a read
    /// of its active pointer.
    pub fn check_ready(&self) -> Result<(), StoreError> {
        match &self.shared {
            Some(db) => Ok(db.ping()?),
            None => self.active().map(|_| ()),
        }
    }

    /// Whether [`Registry::changes`] has a feed to open (no I/O).
    pub fn has_changes(&self) -> bool {
        self.shared.is_some()
    }

    /// The feed of changes other processes commit (a promotion, an experiment, a
    /// token...), when the store has one: a shared store's notifications. None for a
    /// folder (its readers poll).
    pub fn changes(&self) -> Option<Result<Changes, StoreError>> {
        let db = self.shared.as_ref()?;
        Some(
            db.listen(pg::registry::CHANNEL)
                .map(Changes)
                .map_err(StoreError::from),
        )
    }

    /// Takes the right to send an alert of `kind` now, for every process sharing this
    /// store: false when one was sent less than `window` ago. A folder is one machine's:
    /// each process's own sender keeps its window, so this always answers true.
    pub fn claim_alert(&self, kind: &str, window: std::time::Duration) -> Result<bool, StoreError> {
        let Some(db) = &self.shared else {
            return Ok(true);
        };
        let ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        Ok(pg::registry::claim_alert(&mut *db.conn()?, kind, ms)
            .map_err(db.err("recording an alert"))?)
    }

    /// Gives back [`Registry::claim_alert`]'s right (the alert was not delivered).
    pub fn release_alert(&self, kind: &str) -> Result<(), StoreError> {
        let Some(db) = &self.shared else {
            return Ok(());
        };
        Ok(pg::registry::release_alert(&mut *db.conn()?, kind)
            .map_err(db.err("releasing an alert"))?)
    }

    /// What to call this registry in messages: its folder, or the database's URL
    /// without the password.
    pub fn shown(&self) -> String {
        match &self.shared {
            Some(db) => db.shown().to_string(),
            None => self.root().display().to_string(),
        }
    }
    fn versions_dir(&self) -> PathBuf {
        self.layout.versions_dir()
    }
    fn staging_dir(&self) -> PathBuf {
        self.layout.staging_dir()
    }
    pub fn version_dir(&self, v: u32) -> PathBuf {
        self.layout.version_dir(v)
    }
    /// Where a file of version `v` is, for messages.
    fn place(&self, v: u32, name: &str) -> String {
        match &self.shared {
            Some(db) => format!("{}: version {v}: {name}", db.shown()),
            None => self.layout.version_dir(v).join(name).display().to_string(),
        }
    }

    /// Exclusive lock for writers (released on drop). Waiting for another process's
    /// lock is announced (stderr and the log) after [`LOCK_NOTICE_AFTER`] and gives up
    /// with [`StoreError::LockTimeout`] after [`LOCK_TIMEOUT`].
    fn lock(&self) -> Result<File, StoreError> {
        use crate::store::lockfile::{LockFailure, lock_with_timeout};
        let p = self.layout.lock();
        let limit = self.lock_timeout;
        lock_with_timeout(&p, limit, LOCK_NOTICE_AFTER, || {
            let msg = format!(
                "waiting for another spamscope process to release {} (giving up after {} s)",
                p.display(),
                limit.as_secs_f64().round()
            );
            eprintln!("{msg}");
            tracing::warn!("{msg}");
        })
        .map_err(|e| match e {
            LockFailure::Io(e) => io_err(&p, e),
            LockFailure::Timeout(waited) => StoreError::LockTimeout {
                path: p.display().to_string(),
                waited_secs: waited.as_secs_f64().round() as u64,
                limit_secs: limit.as_secs_f64().round() as u64,
            },
        })
    }

    /// Runs `f` as the registry's one writer: under the folder's lock, or in one
    /// transaction of the shared store that first locks the active pointer (committed
    /// when `f` succeeds, so a promotion and its version are written together or not
    /// at all).
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Held<'_, '_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.shared {
            None => f(&mut Held::Folder(self.lock()?)),
            Some(db) => {
                let mut c = db.conn()?;
                let what = "writing the registry";
                let mut tx = c.transaction().map_err(db.err(what))?;
                pg::registry::lock_active(&mut tx, self.lock_timeout).map_err(|e| {
                    if e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
                        StoreError::LockTimeout {
                            path: db.shown().to_string(),
                            waited_secs: self.lock_timeout.as_secs_f64().round() as u64,
                            limit_secs: self.lock_timeout.as_secs_f64().round() as u64,
                        }
                    } else {
                        db.err(what)(e).into()
                    }
                })?;
                let out = f(&mut Held::Shared(&mut tx))?;
                tx.commit().map_err(db.err(what))?;
                Ok(out)
            }
        }
    }

    /// Version numbers present, ascending.
    pub fn version_numbers(&self) -> Result<Vec<u32>, StoreError> {
        match &self.shared {
            Some(db) => {
                let mut c = db.conn()?;
                self.shared_versions(db, &mut *c)
            }
            None => {
                let dir = self.versions_dir();
                let mut v: Vec<u32> = fs::read_dir(&dir)
                    .map_err(|e| io_err(&dir, e))?
                    .flatten()
                    .filter_map(|e| Layout::parse_version_dir(e.file_name().to_str()?))
                    .collect();
                v.sort_unstable();
                Ok(v)
            }
        }
    }

    fn shared_versions(
        &self,
        db: &pg::Db,
        c: &mut impl pg::GenericClient,
    ) -> Result<Vec<u32>, StoreError> {
        pg::registry::version_numbers(c)
            .map_err(db.err("listing versions"))?
            .into_iter()
            .map(|v| self.stored_version(db, v))
            .collect()
    }

    fn stored_version(&self, db: &pg::Db, v: i32) -> Result<u32, StoreError> {
        pg::registry::checked_version(v).map_err(|message| StoreError::Manifest {
            path: db.shown().to_string(),
            message,
        })
    }

    /// Every version with its manifest (or the reason it cannot be read).
    pub fn list(&self) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .version_numbers()?
            .into_iter()
            .map(|v| Entry {
                version: v,
                manifest: self.manifest(v),
            })
            .collect())
    }

    pub fn manifest(&self, v: u32) -> Result<Manifest, StoreError> {
        match &self.shared {
            Some(db) => {
                let mut c = db.conn()?;
                self.shared_manifest(db, &mut *c, v)
            }
            None => self.folder_manifest(v),
        }
    }

    fn folder_manifest(&self, v: u32) -> Result<Manifest, StoreError> {
        let dir = self.version_dir(v);
        if !dir.is_dir() {
            return Err(StoreError::NoSuchVersion(v));
        }
        let p = self.layout.manifest(v);
        let text = fs::read_to_string(&p).map_err(|e| io_err(&p, e))?;
        parse_manifest(&text, v, &p.display().to_string())
    }

    fn shared_manifest(
        &self,
        db: &pg::Db,
        c: &mut impl pg::GenericClient,
        v: u32,
    ) -> Result<Manifest, StoreError> {
        let text = pg::registry::manifest_text(c, v)
            .map_err(db.err("reading a manifest"))?
            .ok_or(StoreError::NoSuchVersion(v))?;
        parse_manifest(&text, v, &self.place(v, MANIFEST_FILE))
    }

    /// The manifest of version `v` as the writer holding `held` sees it.
    fn held_manifest(&self, held: &mut Held<'_, '_>, v: u32) -> Result<Manifest, StoreError> {
        match (held, &self.shared) {
            (Held::Shared(tx), Some(db)) => self.shared_manifest(db, &mut **tx, v),
            _ => self.folder_manifest(v),
        }
    }

    /// The active version as the writer holding `held` sees it.
    fn held_active(&self, held: &mut Held<'_, '_>) -> Result<Option<u32>, StoreError> {
        match (held, &self.shared) {
            (Held::Shared(tx), Some(db)) => pg::registry::active(&mut **tx)
                .map_err(db.err("reading the active version"))?
                .map(|v| self.stored_version(db, v))
                .transpose(),
            _ => self.active(),
        }
    }

    /// The highest version number (0: none) as the writer holding `held` sees it.
    fn held_highest(&self, held: &mut Held<'_, '_>) -> Result<u32, StoreError> {
        match (held, &self.shared) {
            (Held::Shared(tx), Some(db)) => {
                let v = pg::registry::highest(&mut **tx).map_err(db.err("listing versions"))?;
                self.stored_version(db, v)
            }
            _ => Ok(self.version_numbers()?.last().copied().unwrap_or(0)),
        }
    }

    /// Points the active pointer at `v`.
    fn held_set_active(&self, held: &mut Held<'_, '_>, v: u32) -> Result<(), StoreError> {
        match (held, &self.shared) {
            (Held::Shared(tx), Some(db)) => {
                pg::registry::set_active(tx, v).map_err(db.err("setting the active version"))?;
                Ok(())
            }
            _ => write_atomic(&self.layout.active(), format!("{v}\n").as_bytes()),
        }
    }

    /// Replaces the manifest of version `v` with `text`.
    fn held_put_manifest(
        &self,
        held: &mut Held<'_, '_>,
        v: u32,
        text: &str,
    ) -> Result<(), StoreError> {
        match (held, &self.shared) {
            (Held::Shared(tx), Some(db)) => {
                pg::registry::put_manifest(tx, v, text).map_err(db.err("writing a manifest"))?;
                Ok(())
            }
            _ => write_atomic(&self.layout.manifest(v), text.as_bytes()),
        }
    }

    /// Writes a whole new version `v`: staged and renamed into place in a folder, in
    /// the writer's transaction in a shared store.
    fn held_put_version(
        &self,
        held: &mut Held<'_, '_>,
        v: u32,
        text: &str,
        model: &[u8],
        holdout: &[u8],
    ) -> Result<(), StoreError> {
        match (held, &self.shared) {
            (Held::Shared(tx), Some(db)) => {
                let (m, h) = (sha256_hex(model), sha256_hex(holdout));
                pg::registry::insert_version(
                    tx,
                    v,
                    text,
                    &[(MODEL_FILE, &m, model), (HOLDOUT_FILE, &h, holdout)],
                )
                .map_err(db.err("writing a version"))?;
                Ok(())
            }
            _ => {
                let stage = self.layout.staging_version(v, std::process::id());
                fs::create_dir_all(&stage).map_err(|e| io_err(&stage, e))?;
                write_synced(&stage.join(MODEL_FILE), model)?;
                write_synced(&stage.join(HOLDOUT_FILE), holdout)?;
                write_synced(&stage.join(MANIFEST_FILE), text.as_bytes())?;
                sync_dir(&stage)?;
                let dest = self.version_dir(v);
                fs::rename(&stage, &dest).map_err(|e| io_err(&dest, e))?;
                sync_dir(&self.versions_dir())
            }
        }
    }

    /// The active version number, if any.
    pub fn active(&self) -> Result<Option<u32>, StoreError> {
        if let Some(db) = &self.shared {
            let mut c = db.conn()?;
            return pg::registry::active(&mut *c)
                .map_err(db.err("reading the active version"))?
                .map(|v| self.stored_version(db, v))
                .transpose();
        }
        let p = self.layout.active();
        match fs::read_to_string(&p) {
            Ok(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| StoreError::Manifest {
                    path: p.display().to_string(),
                    message: format!("active pointer {:?} is not a version number", s.trim()),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p, e)),
        }
    }

    /// Makes `v` the active version (atomically).
    pub fn set_active(&self, v: u32) -> Result<(), StoreError> {
        self.write(|held| {
            self.held_manifest(held, v)?;
            self.held_set_active(held, v)
        })
    }

    /// The bytes of a file of version `v`, checked against the manifest's checksum.
    fn read_checked(&self, v: u32, file: &FileRef) -> Result<Vec<u8>, StoreError> {
        match &self.shared {
            Some(db) => self.read_shared(db, v, file),
            None => check_sum(
                self.read_confined(v, file)?,
                file,
                self.place(v, &file.name),
            ),
        }
    }

    /// A file of a folder registry's version `v`, refused when it lies outside its
    /// version folder.
    fn read_confined(&self, v: u32, file: &FileRef) -> Result<Vec<u8>, StoreError> {
        let refuse = |why: &'static str| StoreError::Confinement {
            manifest: self.layout.manifest(v).display().to_string(),
            name: crate::util::text::quote(&file.name),
            why,
        };
        let p = self.layout.named_file(v, &file.name).map_err(refuse)?;
        // Follow links: what is read must lie inside the version folder, and inside
        // the registry.
        let real = fs::canonicalize(&p).map_err(|e| io_err(&p, e))?;
        let dir = self.layout.version_dir(v);
        let real_dir = fs::canonicalize(&dir).map_err(|e| io_err(&dir, e))?;
        let real_root = fs::canonicalize(self.root()).map_err(|e| io_err(self.root(), e))?;
        if !real.starts_with(&real_dir) || !real.starts_with(&real_root) {
            return Err(refuse("leads outside its version folder (a link)"));
        }
        fs::read(&p).map_err(|e| io_err(&p, e))
    }

    /// A file of a shared store's version: from the local cache when a copy with the
    /// right checksum is there, else downloaded, checked and kept in the cache.
    fn read_shared(&self, db: &pg::Db, v: u32, file: &FileRef) -> Result<Vec<u8>, StoreError> {
        let cached = self.layout.cached_file(&file.sha256);
        if let Some(p) = &cached
            && let Ok(bytes) = fs::read(p)
            && sha256_hex(&bytes) == file.sha256
        {
            return Ok(bytes);
        }
        let mut c = db.conn()?;
        let place = self.place(v, &file.name);
        let (_, bytes) = pg::registry::file(&mut *c, v, &file.name)
            .map_err(db.err("reading a version's file"))?
            .ok_or_else(|| StoreError::Io {
                path: place.clone(),
                message: "the file is missing from the store".into(),
            })?;
        let bytes = check_sum(bytes, file, place)?;
        if let Some(p) = cached {
            // The cache is a convenience: a full disk only costs a download next time.
            if let Err(e) = write_atomic(&p, &bytes) {
                tracing::warn!("cannot keep a model file in the cache: {e}");
            }
        }
        Ok(bytes)
    }

    /// Loads and verifies version `v`.
    pub fn load(&self, v: u32) -> Result<(Manifest, Model), StoreError> {
        let m = self.manifest(v)?;
        let bytes = self.read_checked(v, &m.model_file)?;
        let model = Model::from_bytes(&bytes).map_err(|source| StoreError::Model {
            path: self.place(v, MODEL_FILE),
            source,
        })?;
        Ok((m, model))
    }

    /// Loads the active version (error if there is none). A damaged active version is
    /// a [`StoreError::DamagedActive`] naming the newest earlier version that loads.
    pub fn load_active(&self) -> Result<(Manifest, Model), StoreError> {
        let v = self
            .active()?
            .ok_or_else(|| StoreError::NoVersions(self.shown()))?;
        self.load(v).map_err(|e| match e {
            StoreError::Io { .. }
            | StoreError::Manifest { .. }
            | StoreError::Checksum { .. }
            | StoreError::Model { .. }
            | StoreError::NoSuchVersion(_)
            | StoreError::Confinement { .. } => StoreError::DamagedActive {
                version: v,
                source: Box::new(e),
                fallback: self.newest_loadable_before(v),
            },
            e => e,
        })
    }

    /// The newest version below `v` whose files are intact and load.
    pub fn newest_loadable_before(&self, v: u32) -> Option<u32> {
        let versions = self.version_numbers().ok()?;
        versions
            .into_iter()
            .rev()
            .filter(|&n| n < v)
            .find(|&n| self.load(n).is_ok())
    }

    /// Loads version `v`, or the active one.
    pub fn load_version(&self, v: Option<u32>) -> Result<(Manifest, Model), StoreError> {
        match v {
            Some(v) => self.load(v),
            None => self.load_active(),
        }
    }

    pub fn load_holdout(&self, v: u32) -> Result<Holdout, StoreError> {
        let m = self.manifest(v)?;
        let bytes = self.read_checked(v, &m.holdout_file)?;
        let place = self.place(v, HOLDOUT_FILE);
        let corrupted = |e: postcard::Error| StoreError::Io {
            path: place.clone(),
            message: format!("corrupted: {e}"),
        };
        match m.holdout_format {
            HOLDOUT_TEXT_IDS => postcard::from_bytes(&bytes).map_err(corrupted),
            HOLDOUT_INTEGER_IDS => {
                let old: IntegerIdHoldout = postcard::from_bytes(&bytes).map_err(corrupted)?;
                Ok(Holdout {
                    user_ids: old
                        .user_ids
                        .into_iter()
                        .map(crate::data::user_id_from_int)
                        .collect(),
                    labels: old.labels,
                    scores: old.scores,
                })
            }
            other => Err(StoreError::Io {
                path: place.clone(),
                message: format!(
                    "holdout format {other} is not known to this program (it reads {HOLDOUT_INTEGER_IDS} and {HOLDOUT_TEXT_IDS}); a newer spamscope wrote it"
                ),
            }),
        }
    }

    /// Writes a new version (number = highest + 1, parent = the active version) and, if
    /// `activate`, makes it active. Returns its manifest.
    pub fn register(&self, new: NewVersion<'_>, activate: bool) -> Result<Manifest, StoreError> {
        let model_bytes = new.model.to_bytes();
        let holdout_bytes =
            postcard::to_allocvec(new.holdout).expect("serialising to memory cannot fail");
        self.write(|held| {
            let version = self.held_highest(held)? + 1;
            let parent = self.held_active(held)?;
            let (manifest, activate) =
                new_manifest(new, version, parent, activate, &model_bytes, &holdout_bytes);
            self.held_put_version(
                held,
                version,
                &manifest_text(&manifest),
                &model_bytes,
                &holdout_bytes,
            )?;
            if activate {
                self.held_set_active(held, version)?;
            }
            Ok(manifest)
        })
    }

    /// Makes an earlier (or any other) version active again. The version that was
    /// active is marked as rolled back; the target's own rolled-back mark is cleared.
    pub fn rollback(&self, to: u32) -> Result<Manifest, StoreError> {
        self.rollback_from(to).map(|(m, _)| m)
    }

    /// [`Registry::rollback`], also returning the version that was active, as read
    /// under the lock.
    pub fn rollback_from(&self, to: u32) -> Result<(Manifest, Option<u32>), StoreError> {
        // Check the target loads (checksums, structure) before touching anything.
        self.load(to)?;
        self.write(|held| {
            let previous = self.held_active(held)?;
            if previous == Some(to) {
                return Ok((self.held_manifest(held, to)?, previous));
            }
            self.held_set_active(held, to)?;
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            if let Some(p) = previous
                && let Ok(mut m) = self.held_manifest(held, p)
                && m.status == Status::Registered
            {
                m.status = Status::RolledBack;
                m.status_reason = Some(format!("rolled back to v{to} at {now}"));
                self.held_put_manifest(held, p, &manifest_text(&m))?;
            }
            let mut target = self.held_manifest(held, to)?;
            if target.status == Status::RolledBack {
                target.status = Status::Registered;
                target.status_reason = None;
                self.held_put_manifest(held, to, &manifest_text(&target))?;
            }
            Ok((target, previous))
        })
    }

    /// The bytes of one file of version `v` as another registry would install them
    /// ([`Registry::install_version`]): the manifest's text (after checking it parses and
    /// describes `v`), or the model or holdout file checked against the manifest's
    /// checksum. `name` is [`MANIFEST_FILE`], [`MODEL_FILE`] or [`HOLDOUT_FILE`].
    pub fn version_file(&self, v: u32, name: &str) -> Result<Vec<u8>, StoreError> {
        let m = self.manifest(v)?;
        match name {
            MANIFEST_FILE => match &self.shared {
                // What was parsed above is what is stored: the same text.
                Some(_) => Ok(manifest_text(&m).into_bytes()),
                None => {
                    let p = self.layout.manifest(v);
                    fs::read(&p).map_err(|e| io_err(&p, e))
                }
            },
            MODEL_FILE => self.read_checked(v, &m.model_file),
            HOLDOUT_FILE => self.read_checked(v, &m.holdout_file),
            other => Err(StoreError::Confinement {
                manifest: self.place(v, MANIFEST_FILE),
                name: crate::util::text::quote(other),
                why: "is not a file a version shares",
            }),
        }
    }

    /// Installs a version made by another registry (the app mirroring a team's
    /// service, or a store being copied) under its own number: the manifest's text and
    /// its two files, each checked against the manifest's checksums and the model
    /// parsed before anything is written; then written like a new version. Installing
    /// a version already present with the same files only refreshes its manifest (a
    /// new status or threshold); different files are refused. Does not touch the
    /// active pointer.
    pub fn install_version(
        &self,
        v: u32,
        manifest_text: &[u8],
        model: &[u8],
        holdout: &[u8],
    ) -> Result<Manifest, StoreError> {
        let origin = format!("version {v} received");
        let bad = |message: String| StoreError::Manifest {
            path: origin.clone(),
            message,
        };
        let text = std::str::from_utf8(manifest_text)
            .map_err(|_| bad("the manifest is not UTF-8 text".into()))?;
        let m: Manifest = ron::from_str(text).map_err(|e| bad(e.to_string()))?;
        if m.version != v {
            return Err(bad(format!("it describes version {}, not {v}", m.version)));
        }
        if m.model_file.name != MODEL_FILE || m.holdout_file.name != HOLDOUT_FILE {
            return Err(bad(format!(
                "its files are named {} and {}, not {MODEL_FILE} and {HOLDOUT_FILE}",
                crate::util::text::quote(&m.model_file.name),
                crate::util::text::quote(&m.holdout_file.name)
            )));
        }
        for (file, bytes) in [(&m.model_file, model), (&m.holdout_file, holdout)] {
            check_sum(bytes.to_vec(), file, format!("{origin}: {}", file.name))?;
        }
        Model::from_bytes(model).map_err(|source| StoreError::Model {
            path: format!("{origin}: {MODEL_FILE}"),
            source,
        })?;
        self.write(|held| {
            match self.held_manifest(held, v) {
                Ok(have) => {
                    if have.model_file != m.model_file || have.holdout_file != m.holdout_file {
                        return Err(bad(format!(
                            "this registry already holds a different version {v} (other files); refusing to replace it"
                        )));
                    }
                    if have != m {
                        self.held_put_manifest(held, v, text)?;
                    }
                    return Ok(m);
                }
                Err(StoreError::NoSuchVersion(_)) => {}
                Err(e) => return Err(e),
            }
            self.held_put_version(held, v, text, model, holdout)?;
            Ok(m)
        })
    }

    /// Replaces the manifest of an installed version with `manifest_text` when only
    /// its description changed (status, threshold, reason); its files must be the
    /// same.
    pub fn refresh_manifest(&self, v: u32, manifest_text: &[u8]) -> Result<bool, StoreError> {
        let bad = |message: String| StoreError::Manifest {
            path: format!("version {v} received"),
            message,
        };
        let text = std::str::from_utf8(manifest_text)
            .map_err(|_| bad("the manifest is not UTF-8 text".into()))?;
        let m: Manifest = ron::from_str(text).map_err(|e| bad(e.to_string()))?;
        self.write(|held| {
            let have = self.held_manifest(held, v)?;
            if m.version != v
                || have.model_file != m.model_file
                || have.holdout_file != m.holdout_file
            {
                return Err(bad(format!(
                    "it does not describe the installed version {v} (other files)"
                )));
            }
            if have == m {
                return Ok(false);
            }
            self.held_put_manifest(held, v, text)?;
            Ok(true)
        })
    }

    /// Sets version `v`'s decision threshold and nothing else: the manifest is read
    /// and rewritten under the registry's lock, so a status another process wrote
    /// meanwhile (a rollback) is kept. Returns the manifest as written.
    pub fn set_threshold(&self, v: u32, threshold: f64) -> Result<Manifest, StoreError> {
        self.write(|held| {
            let mut m = self.held_manifest(held, v)?;
            m.threshold = threshold;
            self.held_put_manifest(held, v, &manifest_text(&m))?;
            Ok(m)
        })
    }

    /// The text of document `d`, if there is one.
    pub fn read_document(&self, d: Document) -> Result<Option<String>, StoreError> {
        if let Some(db) = &self.shared {
            let mut c = db.conn()?;
            return Ok(
                pg::registry::document(&mut *c, d.key()).map_err(db.err("reading a document"))?
            );
        }
        let p = self.document_path(d);
        match fs::read_to_string(&p) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p, e)),
        }
    }

    /// Writes document `d` (atomically; replaces what was there).
    pub fn write_document(&self, d: Document, text: &str) -> Result<(), StoreError> {
        if let Some(db) = &self.shared {
            let mut c = db.conn()?;
            return Ok(pg::registry::put_document(&mut *c, d.key(), text)
                .map_err(db.err("writing a document"))?);
        }
        let p = self.document_path(d);
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        }
        write_atomic(&p, text.as_bytes())
    }

    /// Writes document `d` only if there is none; false when there was one (two
    /// processes starting an experiment at once: one wins).
    pub fn create_document(&self, d: Document, text: &str) -> Result<bool, StoreError> {
        if let Some(db) = &self.shared {
            let mut c = db.conn()?;
            return Ok(pg::registry::create_document(&mut *c, d.key(), text)
                .map_err(db.err("writing a document"))?);
        }
        let _lock = self.lock()?;
        if self.document_path(d).exists() {
            return Ok(false);
        }
        self.write_document(d, text)?;
        Ok(true)
    }

    /// Removes document `d`; false when there was none.
    pub fn remove_document(&self, d: Document) -> Result<bool, StoreError> {
        if let Some(db) = &self.shared {
            let mut c = db.conn()?;
            return Ok(pg::registry::remove_document(&mut *c, d.key())
                .map_err(db.err("removing a document"))?);
        }
        let p = self.document_path(d);
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&p, e)),
        }
    }

    /// Keeps comparison `id` (its JSON) in the registry's history of comparisons, once:
    /// false when one with that id is kept already. Ids are letters, digits and `-`.
    pub fn keep_comparison(&self, id: &str, text: &str) -> Result<bool, StoreError> {
        check_comparison_id(id)?;
        if let Some(db) = &self.shared {
            let mut c = db.conn()?;
            return Ok(pg::registry::create_document(
                &mut *c,
                &format!("{COMPARISON_PREFIX}{id}"),
                text,
            )
            .map_err(db.err("keeping a comparison"))?);
        }
        let dir = self.layout.comparison_history();
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let p = dir.join(format!("{id}.json"));
        let _lock = self.lock()?;
        if p.exists() {
            return Ok(false);
        }
        write_atomic(&p, text.as_bytes())?;
        Ok(true)
    }

    /// The ids of the kept comparisons, oldest first (ids begin with their time).
    pub fn comparison_ids(&self) -> Result<Vec<String>, StoreError> {
        if let Some(db) = &self.shared {
            let mut c = db.conn()?;
            let names = pg::registry::document_names(&mut *c, COMPARISON_PREFIX)
                .map_err(db.err("listing comparisons"))?;
            return Ok(names
                .into_iter()
                .filter_map(|n| n.strip_prefix(COMPARISON_PREFIX).map(str::to_string))
                .collect());
        }
        let dir = self.layout.comparison_history();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir, e)),
        };
        let mut ids = Vec::new();
        for e in entries {
            let e = e.map_err(|e| io_err(&dir, e))?;
            let name = e.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json"))
                && check_comparison_id(id).is_ok()
            {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The JSON of kept comparison `id`, if there is one.
    pub fn read_comparison(&self, id: &str) -> Result<Option<String>, StoreError> {
        check_comparison_id(id)?;
        if let Some(db) = &self.shared {
            let mut c = db.conn()?;
            return Ok(
                pg::registry::document(&mut *c, &format!("{COMPARISON_PREFIX}{id}"))
                    .map_err(db.err("reading a comparison"))?,
            );
        }
        let p = self.layout.comparison_history().join(format!("{id}.json"));
        match fs::read_to_string(&p) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p, e)),
        }
    }

    /// Runs a task named `name` that only one process sharing this store may run at a
    /// time (sending the registry to MLflow): `None` when another process still held it
    /// after `wait`. The task is exclusive while the returned guard lives (a process that
    /// dies gives it up: its lock file is unlocked, its database session ends).
    pub fn exclusive(
        &self,
        name: &str,
        wait: std::time::Duration,
    ) -> Result<Option<Exclusive>, StoreError> {
        let start = std::time::Instant::now();
        if let Some(db) = &self.shared {
            let mut c = db.dedicated()?;
            loop {
                if pg::registry::try_named_lock(&mut c, name)
                    .map_err(db.err("taking a task's lock"))?
                {
                    return Ok(Some(Exclusive {
                        _file: None,
                        _session: Some((Box::new(c), name.to_string())),
                    }));
                }
                if start.elapsed() >= wait {
                    return Ok(None);
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        use crate::store::lockfile::{LockFailure, lock_with_timeout};
        let p = self.layout.task_lock(name);
        match lock_with_timeout(&p, wait, wait, || {}) {
            Ok(f) => Ok(Some(Exclusive {
                _file: Some(f),
                _session: None,
            })),
            Err(LockFailure::Timeout(_)) => Ok(None),
            Err(LockFailure::Io(e)) => Err(io_err(&p, e)),
        }
    }

    /// Where a folder registry keeps document `d` (for messages: the place of a
    /// document that does not parse).
    pub fn document_place(&self, d: Document) -> String {
        match &self.shared {
            Some(db) => format!("{}: {}", db.shown(), d.key()),
            None => self.document_path(d).display().to_string(),
        }
    }

    fn document_path(&self, d: Document) -> PathBuf {
        match d {
            Document::Experiment => self.layout.experiment(),
            Document::OnlineSettings => self.layout.online_config(),
            Document::LatestComparison => self.layout.latest_comparison(),
        }
    }
}

/// Which policy version decides, and which runs beside it in shadow (numbers of kept
/// policy records).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyPointers {
    pub live: Option<u32>,
    pub shadow: Option<u32>,
}

/// What the registry's one writer may do with the policies
/// ([`Registry::edit_policies`]): read and write records and the pointers, all seen
/// and committed together.
pub struct PolicyEdit<'r, 'a, 'b, 't> {
    reg: &'r Registry,
    held: &'a mut Held<'b, 't>,
}

impl PolicyEdit<'_, '_, '_, '_> {
    /// The record of policy `n`, if kept.
    pub fn read(&mut self, n: u32) -> Result<Option<String>, StoreError> {
        match (&mut *self.held, &self.reg.shared) {
            (Held::Shared(tx), Some(db)) => Ok(pg::registry::document(&mut **tx, &policy_key(n))
                .map_err(db.err("reading a policy"))?),
            _ => self.reg.folder_policy(n),
        }
    }

    /// Replaces the record of policy `n` (which must be kept).
    pub fn write(&mut self, n: u32, text: &str) -> Result<(), StoreError> {
        if self.read(n)?.is_none() {
            return Err(StoreError::NoSuchPolicy(n));
        }
        self.put(n, text)
    }

    fn put(&mut self, n: u32, text: &str) -> Result<(), StoreError> {
        match (&mut *self.held, &self.reg.shared) {
            (Held::Shared(tx), Some(db)) => {
                Ok(pg::registry::put_document(&mut **tx, &policy_key(n), text)
                    .map_err(db.err("writing a policy"))?)
            }
            _ => {
                let dir = self.reg.layout.policies_dir();
                fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
                write_atomic(&self.reg.layout.policy(n), text.as_bytes())
            }
        }
    }

    /// Keeps `text` as policy `n` whether or not one is kept under it (a copy of
    /// another registry's policies).
    pub fn install(&mut self, n: u32, text: &str) -> Result<(), StoreError> {
        self.put(n, text)
    }

    /// The highest policy number kept (0: none).
    pub fn highest(&mut self) -> Result<u32, StoreError> {
        Ok(match (&mut *self.held, &self.reg.shared) {
            (Held::Shared(tx), Some(db)) => shared_policy_numbers(
                pg::registry::document_names(&mut **tx, POLICY_PREFIX)
                    .map_err(db.err("listing policies"))?,
            ),
            _ => self.reg.folder_policy_numbers()?,
        }
        .last()
        .copied()
        .unwrap_or(0))
    }

    /// Keeps a new policy record numbered one above the highest; returns its number.
    pub fn add(&mut self, make: impl FnOnce(u32) -> String) -> Result<u32, StoreError> {
        let n = self.highest()? + 1;
        self.put(n, &make(n))?;
        Ok(n)
    }

    pub fn pointers(&mut self) -> Result<PolicyPointers, StoreError> {
        let text = match (&mut *self.held, &self.reg.shared) {
            (Held::Shared(tx), Some(db)) => pg::registry::document(&mut **tx, POLICY_POINTERS)
                .map_err(db.err("reading the policy pointers"))?,
            _ => self.reg.folder_policy_pointers_text()?,
        };
        self.reg.parse_policy_pointers(text)
    }

    /// Points live and shadow at kept policies (or at none).
    pub fn set_pointers(&mut self, p: PolicyPointers) -> Result<(), StoreError> {
        for n in [p.live, p.shadow].into_iter().flatten() {
            if self.read(n)?.is_none() {
                return Err(StoreError::NoSuchPolicy(n));
            }
        }
        let text = serde_json::to_string(&p).unwrap_or_default();
        match (&mut *self.held, &self.reg.shared) {
            (Held::Shared(tx), Some(db)) => {
                Ok(
                    pg::registry::put_document(&mut **tx, POLICY_POINTERS, &text)
                        .map_err(db.err("writing the policy pointers"))?,
                )
            }
            _ => {
                let dir = self.reg.layout.policies_dir();
                fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
                write_atomic(&self.reg.layout.policy_pointers(), text.as_bytes())
            }
        }
    }
}

/// Where a database keeps policy `n`: the document `policy/NNNNNNNNNN` (sorted by name
/// is sorted by number), and the pointers: the document `policy_pointers`.
const POLICY_PREFIX: &str = "policy/";
const POLICY_POINTERS: &str = "policy_pointers";

fn policy_key(n: u32) -> String {
    format!("{POLICY_PREFIX}{n:010}")
}

fn shared_policy_numbers(names: Vec<String>) -> Vec<u32> {
    let mut out: Vec<u32> = names
        .iter()
        .filter_map(|n| n.strip_prefix(POLICY_PREFIX)?.parse().ok())
        .filter(|&n| n > 0)
        .collect();
    out.sort_unstable();
    out
}

impl Registry {
    /// The numbers of the kept policy records, ascending.
    pub fn policy_numbers(&self) -> Result<Vec<u32>, StoreError> {
        if let Some(db) = &self.shared {
            let mut c = db.conn()?;
            return Ok(shared_policy_numbers(
                pg::registry::document_names(&mut *c, POLICY_PREFIX)
                    .map_err(db.err("listing policies"))?,
            ));
        }
        self.folder_policy_numbers()
    }

    /// The record of policy `n`, if kept.
    pub fn read_policy(&self, n: u32) -> Result<Option<String>, StoreError> {
        if let Some(db) = &self.shared {
            let mut c = db.conn()?;
            return Ok(pg::registry::document(&mut *c, &policy_key(n))
                .map_err(db.err("reading a policy"))?);
        }
        self.folder_policy(n)
    }

    /// Which policy is live and which in shadow.
    pub fn policy_pointers(&self) -> Result<PolicyPointers, StoreError> {
        let text = if let Some(db) = &self.shared {
            let mut c = db.conn()?;
            pg::registry::document(&mut *c, POLICY_POINTERS)
                .map_err(db.err("reading the policy pointers"))?
        } else {
            self.folder_policy_pointers_text()?
        };
        self.parse_policy_pointers(text)
    }

    /// Runs `f` as the registry's one writer on its policies: two processes publishing
    /// at once follow one another, and a record and the pointers `f` writes are
    /// committed together (a shared store's transaction) or each atomically in turn
    /// under the folder's lock (pointers last: they only name records already kept).
    /// An error of `f` (any error type a store error converts to) leaves everything
    /// as it was.
    pub fn edit_policies<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut PolicyEdit) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut failed = None;
        let out = self.write(|held| match f(&mut PolicyEdit { reg: self, held }) {
            Ok(t) => Ok(t),
            Err(e) => {
                failed = Some(e);
                // Rolls the transaction back; replaced by `f`'s error below.
                Err(StoreError::Io {
                    path: String::new(),
                    message: String::new(),
                })
            }
        });
        match (out, failed) {
            (_, Some(e)) => Err(e),
            (Ok(t), None) => Ok(t),
            (Err(e), None) => Err(e.into()),
        }
    }

    /// Where the policies are kept (for messages).
    pub fn policies_place(&self) -> String {
        match &self.shared {
            Some(db) => format!("{}: policies", db.shown()),
            None => self.layout.policies_dir().display().to_string(),
        }
    }

    fn folder_policy(&self, n: u32) -> Result<Option<String>, StoreError> {
        let p = self.layout.policy(n);
        match fs::read_to_string(&p) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p, e)),
        }
    }

    fn folder_policy_numbers(&self) -> Result<Vec<u32>, StoreError> {
        let dir = self.layout.policies_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir, e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(|e| io_err(&dir, e))?;
            if let Some(n) = e.file_name().to_str().and_then(Layout::parse_policy_file) {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn folder_policy_pointers_text(&self) -> Result<Option<String>, StoreError> {
        let p = self.layout.policy_pointers();
        match fs::read_to_string(&p) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p, e)),
        }
    }

    fn parse_policy_pointers(&self, text: Option<String>) -> Result<PolicyPointers, StoreError> {
        let Some(text) = text else {
            return Ok(PolicyPointers::default());
        };
        serde_json::from_str(&text).map_err(|e| StoreError::Manifest {
            path: match &self.shared {
                Some(db) => format!("{}: {POLICY_POINTERS}", db.shown()),
                None => self.layout.policy_pointers().display().to_string(),
            },
            message: format!("not the policy pointers: {e}"),
        })
    }
}

/// Where a database keeps comparison `ID`: the document `comparison/ID`.
const COMPARISON_PREFIX: &str = "comparison/";

fn check_comparison_id(id: &str) -> Result<(), StoreError> {
    if !id.is_empty()
        && id.len() <= 100
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Ok(())
    } else {
        Err(StoreError::Io {
            path: "comparison".into(),
            message: format!(
                "{} is not a comparison id (letters, digits and -)",
                crate::util::text::quote(id)
            ),
        })
    }
}

/// A task only one process runs at a time ([`Registry::exclusive`]), while this lives.
pub struct Exclusive {
    /// The locked file (a folder registry), or the session holding the advisory lock
    /// and the lock's name.
    _file: Option<File>,
    _session: Option<(Box<postgres::Client>, String)>,
}

impl Drop for Exclusive {
    /// The advisory lock is given up before its session closes: a closed connection
    /// frees it too, but only once the server has noticed, so another process asking
    /// at once could still find it held. (A killed process's lock goes with its
    /// session.)
    fn drop(&mut self) {
        if let Some((c, name)) = self._session.as_mut()
            && let Err(e) = pg::registry::named_unlock(c.as_mut(), name)
        {
            tracing::debug!("giving up the task lock {name}: {e}");
        }
    }
}

/// `bytes` when their SHA-256 is the one `file` names; else a checksum error at `place`.
fn check_sum(bytes: Vec<u8>, file: &FileRef, place: String) -> Result<Vec<u8>, StoreError> {
    let actual = sha256_hex(&bytes);
    if actual != file.sha256 {
        return Err(StoreError::Checksum {
            path: place,
            expected: file.sha256.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// Parses manifest `text`, which should describe version `v` (`place` names it in
/// errors).
fn parse_manifest(text: &str, v: u32, place: &str) -> Result<Manifest, StoreError> {
    let m: Manifest = ron::from_str(text).map_err(|e| StoreError::Manifest {
        path: place.to_string(),
        message: e.to_string(),
    })?;
    if m.version != v {
        return Err(StoreError::Manifest {
            path: place.to_string(),
            message: format!("it describes version {}, not {v}", m.version),
        });
    }
    Ok(m)
}

/// The manifest of a new version `version` on `parent`, and whether it is activated.
/// Compare-and-swap: a candidate gated against one active version is promoted only if
/// that version is still the active one now (the caller holds the registry's lock);
/// otherwise it is kept as rejected, with that reason.
fn new_manifest(
    new: NewVersion<'_>,
    version: u32,
    parent: Option<u32>,
    activate: bool,
    model_bytes: &[u8],
    holdout_bytes: &[u8],
) -> (Manifest, bool) {
    let mut new = new;
    let mut activate = activate;
    if let Some(g) = new.gate.as_mut()
        && activate
        && parent != Some(g.against)
    {
        let why = format!(
            "rejected: the active version changed from v{} to {} while this candidate was trained; retrain to gate against it",
            g.against,
            parent.map_or("none".to_string(), |p| format!("v{p}"))
        );
        g.promoted = false;
        g.reason = why.clone();
        new.status = Status::Rejected;
        new.status_reason = Some(why);
        activate = false;
    }
    let manifest = Manifest {
        version,
        parent,
        created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        data: new.data,
        train_rows: new.train_rows,
        train_positives: new.train_positives,
        test_rows: new.holdout.labels.len(),
        evaluation: new.evaluation,
        params: new.params,
        train_seconds: new.train_seconds,
        imputation_medians: new.model.imputer.medians.clone(),
        threshold: new.threshold,
        metrics: new.metrics,
        importance: crate::data::catalog::catalog()
            .ids()
            .map(str::to_string)
            .zip(new.model.importance().iter().copied())
            .collect(),
        model_file: FileRef {
            name: MODEL_FILE.into(),
            sha256: sha256_hex(model_bytes),
            bytes: model_bytes.len() as u64,
        },
        holdout_file: FileRef {
            name: HOLDOUT_FILE.into(),
            sha256: sha256_hex(holdout_bytes),
            bytes: holdout_bytes.len() as u64,
        },
        holdout_format: HOLDOUT_TEXT_IDS,
        status: new.status,
        status_reason: new.status_reason,
        feedback_used: new.feedback_used,
        gate: new.gate,
        profiles: new.profiles,
        recipe: new.recipe,
        calibration: new.model.calibration.as_ref().map(|c| c.describe()),
    };
    (manifest, activate)
}

fn manifest_text(m: &Manifest) -> String {
    let pretty = ron::ser::PrettyConfig::new().depth_limit(3);
    ron::ser::to_string_pretty(m, pretty).expect("a manifest always serialises")
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut f = File::create(path).map_err(|e| io_err(path, e))?;
    f.write_all(bytes).map_err(|e| io_err(path, e))?;
    f.sync_all().map_err(|e| io_err(path, e))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    // Directory fsync makes renames durable (best effort where unsupported).
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically: temp file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    write_synced(&tmp, bytes)?;
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a manifest as it is (a test's hand-made or hostile one).
    fn overwrite_manifest(reg: &Registry, m: &Manifest) {
        write_atomic(&reg.layout.manifest(m.version), manifest_text(m).as_bytes()).unwrap();
    }
    use crate::eval::metrics::Metrics;
    use crate::model::test_support::small_model;

    fn register(reg: &Registry, model: &Model, activate: bool) -> Manifest {
        let holdout = Holdout {
            user_ids: ["1", "u-2", "00003", "550e8400-e29b-41d4-a716-446655440000"]
                .map(crate::data::UserId::from)
                .to_vec(),
            labels: vec![0, 1, 0, 1],
            scores: vec![0.1, 0.9, 0.2, 0.4],
        };
        let metrics = Metrics::from_scores(&holdout.labels, &holdout.scores, 0.5).unwrap();
        reg.register(
            NewVersion {
                model,
                holdout: &holdout,
                data: DataSource {
                    kind: crate::data::SourceKind::Csv {
                        path: "x.csv".into(),
                    },
                    sha256: "00".into(),
                },
                train_rows: 10,
                train_positives: 2,
                evaluation: Evaluation::Split {
                    test_fraction: 0.2,
                    seed: 1,
                },
                params: ForestParams::default(),
                train_seconds: 0.5,
                threshold: 0.5,
                metrics,
                status: Status::Registered,
                status_reason: None,
                feedback_used: 0,
                gate: None,
                profiles: None,
                recipe: None,
            },
            activate,
        )
        .unwrap()
    }

    #[test]
    fn a_version_installed_from_another_registry_loads_and_bad_copies_are_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (server, mirror) = (
            Registry::open(a.path()).unwrap(),
            Registry::open(b.path()).unwrap(),
        );
        let (model, _) = small_model();
        register(&server, &model, true);
        let m2 = register(&server, &model, true);
        let file = |name| server.version_file(2, name).unwrap();
        let (text, bin, hold) = (file(MANIFEST_FILE), file(MODEL_FILE), file(HOLDOUT_FILE));
        let e = server.version_file(2, "../ACTIVE");
        assert!(
            matches!(&e, Err(StoreError::Confinement { why, .. }) if why.contains("not a file a version shares")),
            "{e:?}"
        );
        // A flipped byte, a truncated model, the wrong number, text that is not a
        // manifest: refused before anything is written.
        let mut flipped = bin.clone();
        flipped[bin.len() / 2] ^= 1;
        let refused = [
            mirror.install_version(2, &text, &flipped, &hold),
            mirror.install_version(2, &text, &bin[..bin.len() - 1], &hold),
            mirror.install_version(3, &text, &bin, &hold),
            mirror.install_version(2, b"(version: 2", &bin, &hold),
        ];
        for r in &refused[..2] {
            assert!(
                matches!(r, Err(StoreError::Checksum { path, .. }) if path.ends_with(MODEL_FILE)),
                "{r:?}"
            );
        }
        assert!(
            matches!(&refused[2], Err(StoreError::Manifest { message, .. }) if message.contains("it describes version 2, not 3")),
            "{:?}",
            refused[2]
        );
        assert!(
            matches!(&refused[3], Err(StoreError::Manifest { path, .. }) if path == "version 2 received"),
            "{:?}",
            refused[3]
        );
        assert!(mirror.version_numbers().unwrap().is_empty());
        let m = mirror.install_version(2, &text, &bin, &hold).unwrap();
        assert_eq!(m, m2);
        mirror.set_active(2).unwrap();
        let (lm, loaded) = mirror.load_active().unwrap();
        assert_eq!((lm, loaded), (m2.clone(), model.clone()));
        assert_eq!(
            mirror.load_holdout(2).unwrap(),
            server.load_holdout(2).unwrap()
        );
        // Again: nothing changes; a new threshold on the server refreshes the manifest.
        mirror.install_version(2, &text, &bin, &hold).unwrap();
        server.set_threshold(2, 0.3).unwrap();
        assert!(mirror.refresh_manifest(2, &file(MANIFEST_FILE)).unwrap());
        assert_eq!(mirror.manifest(2).unwrap().threshold, 0.3);
        assert!(!mirror.refresh_manifest(2, &file(MANIFEST_FILE)).unwrap());
        // Another registry's version 2 with other files is not mixed in.
        let (other, _) = crate::model::test_support::small_model_seeded(10);
        let c = tempfile::tempdir().unwrap();
        let third = Registry::open(c.path()).unwrap();
        register(&third, &other, true);
        register(&third, &other, true);
        let f3 = |name| third.version_file(2, name).unwrap();
        let r = mirror.install_version(2, &f3(MANIFEST_FILE), &f3(MODEL_FILE), &f3(HOLDOUT_FILE));
        assert!(
            matches!(&r, Err(StoreError::Manifest { message, .. }) if message.contains("already holds a different version 2")),
            "{r:?}"
        );
        assert_eq!(mirror.load(2).unwrap().1, model);
    }

    #[test]
    fn register_load_activate_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        assert!(matches!(reg.load_active(), Err(StoreError::NoVersions(_))));
        let (model, _) = small_model();
        let m1 = register(&reg, &model, true);
        assert_eq!((m1.version, m1.parent), (1, None));
        let m2 = register(&reg, &model, false);
        assert_eq!((m2.version, m2.parent), (2, Some(1)));
        assert_eq!(reg.active().unwrap(), Some(1));
        reg.set_active(2).unwrap();
        let (m, loaded) = reg.load_active().unwrap();
        assert_eq!(m, m2);
        assert_eq!(loaded, model);
        assert_eq!(reg.load_holdout(2).unwrap().labels, vec![0, 1, 0, 1]);
        assert_eq!(reg.list().unwrap().len(), 2);
        assert!(matches!(
            reg.set_active(9),
            Err(StoreError::NoSuchVersion(9))
        ));
        // Threshold updates persist.
        let changed = reg.set_threshold(2, 0.3).unwrap();
        assert_eq!(
            changed,
            Manifest {
                threshold: 0.3,
                ..m2.clone()
            }
        );
        assert_eq!(reg.manifest(2).unwrap().threshold, 0.3);
        // Nothing is left in staging, and reopening keeps everything.
        assert_eq!(fs::read_dir(dir.path().join("staging")).unwrap().count(), 0);
        let again = Registry::open(dir.path()).unwrap();
        assert_eq!(again.active().unwrap(), Some(2));
    }

    #[test]
    fn corrupted_or_truncated_files_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let (model, _) = small_model();
        register(&reg, &model, true);
        let path = reg.version_dir(1).join(MODEL_FILE);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = reg.load(1).unwrap_err();
        assert!(matches!(err, StoreError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains("model.bin"), "{err}");
        // A damaged manifest names the file.
        fs::write(&path, &bytes).unwrap();
        reg.load(1).unwrap();
        let mpath = reg.version_dir(1).join(MANIFEST_FILE);
        let text = fs::read_to_string(&mpath).unwrap();
        fs::write(&mpath, &text[..text.len() / 3]).unwrap();
        let err = reg.load(1).unwrap_err();
        assert!(err.to_string().contains("manifest.ron"), "{err}");
        let listed = reg.list().unwrap();
        let e = listed[0].manifest.as_ref().unwrap_err().to_string();
        assert!(e.contains("manifest.ron"), "{e}");
        // A bad active pointer is an error, not a panic.
        fs::write(dir.path().join(crate::store::layout::ACTIVE_FILE), "banana").unwrap();
        let e = reg.active();
        assert!(
            matches!(&e, Err(StoreError::Manifest { message, .. }) if message.contains("\"banana\" is not a version number")),
            "{e:?}"
        );
    }

    #[test]
    fn interrupted_writes_leave_no_version() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        // Simulate a crash mid-write: a half-written staging folder.
        let stale = dir.path().join("staging").join("v0001-999");
        fs::create_dir_all(&stale).unwrap();
        fs::write(stale.join(MODEL_FILE), b"partial").unwrap();
        let reg2 = Registry::open(dir.path()).unwrap();
        assert!(reg2.version_numbers().unwrap().is_empty());
        assert!(!stale.exists());
        let (model, _) = small_model();
        assert_eq!(register(&reg, &model, true).version, 1);
    }

    /// Holdouts keep text user ids; a version made before ids were text (integer ids,
    /// no `holdout_format` in its manifest) still loads, its ids as decimal text; an
    /// unknown format is a clear error.
    #[test]
    fn holdouts_keep_text_ids_and_old_integer_holdouts_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let (model, _) = small_model();
        let m = register(&reg, &model, true);
        assert_eq!(m.holdout_format, HOLDOUT_TEXT_IDS);
        let h = reg.load_holdout(1).unwrap();
        assert_eq!(&*h.user_ids[2], "00003");
        assert_eq!(&*h.user_ids[3], "550e8400-e29b-41d4-a716-446655440000");

        // Rewrite version 1 as an older spamscope wrote it.
        #[derive(Serialize)]
        struct Old {
            user_ids: Vec<i64>,
            labels: Vec<u8>,
            scores: Vec<f64>,
        }
        let old = postcard::to_allocvec(&Old {
            user_ids: vec![10_000_000, 10_000_001, 7, 123],
            labels: vec![0, 1, 0, 1],
            scores: vec![0.1, 0.9, 0.2, 0.4],
        })
        .unwrap();
        fs::write(reg.layout().version_file(1, HOLDOUT_FILE), &old).unwrap();
        let mut m1 = m.clone();
        m1.holdout_file.sha256 = sha256_hex(&old);
        m1.holdout_file.bytes = old.len() as u64;
        overwrite_manifest(&reg, &m1);
        let path = reg.layout().manifest(1);
        let text = fs::read_to_string(&path).unwrap();
        let without: String = text
            .lines()
            .filter(|l| !l.contains("holdout_format"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(text, without);
        fs::write(&path, without).unwrap();
        assert_eq!(reg.manifest(1).unwrap().holdout_format, HOLDOUT_INTEGER_IDS);
        let h = reg.load_holdout(1).unwrap();
        let ids: Vec<&str> = h.user_ids.iter().map(|u| &**u).collect();
        assert_eq!(ids, ["10000000", "10000001", "7", "123"]);
        assert_eq!(h.labels, vec![0, 1, 0, 1]);

        m1.holdout_format = 9;
        overwrite_manifest(&reg, &m1);
        let e = reg.load_holdout(1).unwrap_err().to_string();
        assert!(e.contains("holdout format 9 is not known"), "{e}");
    }

    /// A manifest naming a file outside its version folder, with a checksum that
    /// matches that file, is refused (and so is a model file that is a link out).
    #[test]
    fn files_named_by_a_manifest_stay_in_their_version_folder() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path().join("reg")).unwrap();
        let (model, _) = small_model();
        let m = register(&reg, &model, true);
        let model_path = reg.layout().version_file(1, MODEL_FILE);
        let outside = dir.path().join("outside.bin");
        fs::copy(&model_path, &outside).unwrap();
        let abs = outside.display().to_string();
        for name in ["../../../outside.bin", abs.as_str(), "../v0001/model.bin"] {
            let mut bad = m.clone();
            bad.model_file.name = name.to_string();
            overwrite_manifest(&reg, &bad);
            let err = reg.load(1).unwrap_err();
            assert!(
                matches!(err, StoreError::Confinement { .. }),
                "{name}: {err}"
            );
            // Through the active pointer it is a damaged active version, same reason.
            match reg.load_active().unwrap_err() {
                StoreError::DamagedActive { source, .. } => {
                    assert!(matches!(*source, StoreError::Confinement { .. }))
                }
                e => panic!("{name}: {e}"),
            }
            let text = err.to_string();
            assert!(text.contains("manifest.ron"), "{text}");
            assert!(text.contains("refusing"), "{text}");
        }
        // A hostile, very long name is quoted, not pasted whole.
        let mut bad = m.clone();
        bad.model_file.name = format!("{}/x", "a".repeat(5000));
        overwrite_manifest(&reg, &bad);
        let text = reg.load_active().unwrap_err().to_string();
        assert!(text.len() < 400, "{} characters", text.len());
        // A plain name that is a symlink out of the registry.
        overwrite_manifest(&reg, &m);
        fs::remove_file(&model_path).unwrap();
        std::os::unix::fs::symlink(&outside, &model_path).unwrap();
        let err = reg.load(1).unwrap_err();
        assert!(matches!(err, StoreError::Confinement { .. }), "{err}");
        assert!(reg.load_holdout(1).is_ok(), "the other files still load");
        // Back to a real file: loads again.
        fs::remove_file(&model_path).unwrap();
        fs::copy(&outside, &model_path).unwrap();
        assert_eq!(reg.load_active().unwrap().1, model);
    }

    /// A damaged active version is named as such, with the newest earlier version that
    /// loads and the command that rolls back to it; after the rollback it loads.
    #[test]
    fn a_damaged_active_version_names_the_version_to_roll_back_to() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let (model, _) = small_model();
        for _ in 0..3 {
            register(&reg, &model, true);
        }
        // v2 is damaged too, so the newest earlier version that loads is v1.
        for v in [2, 3] {
            let path = reg.version_dir(v).join(MODEL_FILE);
            let bytes = fs::read(&path).unwrap();
            fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
        }
        let err = reg.load_active().unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::DamagedActive {
                    version: 3,
                    fallback: Some(1),
                    ..
                }
            ),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("active version v3 is damaged"), "{msg}");
        assert!(msg.contains("`spamscope rollback --to 1`"), "{msg}");
        assert!(msg.contains("model.bin"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        reg.rollback(1).unwrap();
        assert_eq!(reg.load_active().unwrap().0.version, 1);
        // With no earlier version that loads, the message says to train.
        let path = reg.version_dir(1).join(MODEL_FILE);
        fs::write(&path, b"junk").unwrap();
        let err = reg.load_active().unwrap_err();
        assert!(
            matches!(err, StoreError::DamagedActive { fallback: None, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("spamscope train"), "{err}");
        // An ACTIVE pointer to a version folder that is gone is damage too.
        fs::write(dir.path().join(crate::store::layout::ACTIVE_FILE), "7\n").unwrap();
        assert!(matches!(
            reg.load_active().unwrap_err(),
            StoreError::DamagedActive { version: 7, .. }
        ));
    }

    /// A writer waits for another holder of the lock, and gives up with a clear error
    /// after its limit; once the lock is free, writing works.
    #[test]
    fn waiting_for_the_lock_gives_up_after_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path())
            .unwrap()
            .with_lock_timeout(std::time::Duration::from_millis(300));
        let (model, _) = small_model();
        register(&reg, &model, true);
        // Another "process": a separate open file description of the lock file.
        let other = File::options()
            .write(true)
            .open(dir.path().join(crate::store::layout::LOCK_FILE))
            .unwrap();
        other.lock().unwrap();
        let t = std::time::Instant::now();
        let err = reg.set_active(1).unwrap_err();
        assert!(t.elapsed() >= std::time::Duration::from_millis(300));
        assert!(matches!(err, StoreError::LockTimeout { .. }), "{err}");
        assert!(err.to_string().contains("registry.lock"), "{err}");
        drop(other);
        reg.set_active(1).unwrap();
    }
}
