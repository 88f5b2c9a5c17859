//! MLflow tracking. Every version of the registry (trained, retrained — promoted or
//! rejected by the gate, with its reason —, promoted from a comparison) becomes an MLflow
//! run in one experiment, with its parameters, holdout and feedback metrics, model card,
//! charts and model file, and a version of the registered model of the same name; every
//! comparison becomes a run with a child run per model; the registered model's alias
//! `production` names the active version.
//!
//! The registry is the queue: a sync logs whatever MLflow lacks, so what was made while
//! MLflow was down is sent by the next sync, and a sync cut short (a run left unfinished)
//! is redone. One process sharing the store syncs at a time ([`Registry::exclusive`]).
//! Nothing here blocks or fails training: front-ends sync after the fact and report.
//!
//! Only MLflow's REST API is used (a tracking server over http(s), artifacts proxied by
//! it: `mlflow server`'s default).

use crate::ops::compare::Saved;
use crate::store::feedback::{FeedbackStats, FeedbackStore};
use crate::store::layout::{MANIFEST_FILE, MODEL_FILE};
use crate::store::{Manifest, Registry, StoreError};
use crate::util::progress::Reporter;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The tracking server's URL, as MLflow's own clients read it.
pub const TRACKING_ENV: &str = "MLFLOW_TRACKING_URI";
/// The experiment (and registered model) name, as MLflow's own clients read it.
pub const EXPERIMENT_ENV: &str = "MLFLOW_EXPERIMENT_NAME";
/// The experiment and registered model when `MLFLOW_EXPERIMENT_NAME` is not set.
pub const DEFAULT_EXPERIMENT: &str = "spamscope";
/// The alias naming the active version.
pub const ALIAS: &str = "production";
/// The lock a sync holds ([`Registry::exclusive`]).
const TASK: &str = "mlflow-sync";
/// MLflow's limits: a parameter's value, a key, items per `log-batch`.
const MAX_PARAM_VALUE: usize = 6000;
const MAX_KEY: usize = 250;
const BATCH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// The server did not answer (down, refused, timed out, a proxy's 502/503/504):
    /// nothing is lost, the next sync sends it.
    #[error("MLflow at {url} did not answer ({why})")]
    Unreachable { url: String, why: String },
    /// MLflow answered with an error.
    #[error("MLflow at {url} refused {what}: {message}")]
    Refused {
        url: String,
        what: String,
        message: String,
    },
    /// `--mlflow`, `MLFLOW_TRACKING_URI` or `MLFLOW_EXPERIMENT_NAME` is unusable.
    #[error("{0}")]
    Setting(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// What a run carries could not be read or drawn (feedback, charts).
    #[error("{0}")]
    Content(String),
}

impl MlflowError {
    /// Whether the server was away (the next sync may succeed unchanged).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, MlflowError::Unreachable { .. })
    }
}

/// Where runs go: the server and the experiment (also the registered model's name).
#[derive(Debug, Clone, PartialEq)]
pub struct Tracking {
    url: String,
    pub experiment: String,
    /// `Authorization` header: MLFLOW_TRACKING_TOKEN (bearer), or
    /// MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (basic).
    auth: Option<String>,
}

impl Tracking {
    /// `url` (http or https), the experiment from `MLFLOW_EXPERIMENT_NAME` or
    /// [`DEFAULT_EXPERIMENT`], credentials from MLflow's variables.
    pub fn new(url: &str) -> Result<Tracking, MlflowError> {
        let url = url.trim().trim_end_matches('/');
        let quoted = crate::util::text::quote(url);
        crate::util::url::check_http_url(url).map_err(|e| {
            MlflowError::Setting(match e {
                crate::util::url::UrlError::Scheme(_) => format!(
                    "MLflow tracking URI {quoted}: give a tracking server's http:// or https:// URL (spamscope logs through MLflow's REST API only)"
                ),
                crate::util::url::UrlError::Invalid(_) => {
                    format!("MLflow tracking URI {quoted}: not a URL with a host")
                }
            })
        })?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let experiment = env(EXPERIMENT_ENV).unwrap_or_else(|| DEFAULT_EXPERIMENT.to_string());
        if experiment.chars().count() > MAX_KEY {
            return Err(MlflowError::Setting(format!(
                "{EXPERIMENT_ENV}: longer than {MAX_KEY} characters"
            )));
        }
        let auth = match (
            env("MLFLOW_TRACKING_TOKEN"),
            env("MLFLOW_TRACKING_USERNAME"),
        ) {
            (Some(t), _) => Some(format!("Bearer {}", t.trim())),
            (None, Some(user)) => {
                use base64::Engine;
                let pass = env("MLFLOW_TRACKING_PASSWORD").unwrap_or_default();
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
                ))
            }
            (None, None) => None,
        };
        Ok(Tracking {
            url: url.to_string(),
            experiment,
            auth,
        })
    }

    /// `explicit` (`--mlflow`), else `MLFLOW_TRACKING_URI`; `None` when neither is set.
    pub fn from_setting(explicit: Option<&str>) -> Result<Option<Tracking>, MlflowError> {
        let url = explicit
            .map(str::to_string)
            .or_else(|| std::env::var(TRACKING_ENV).ok())
            .filter(|u| !u.trim().is_empty());
        url.map(|u| Tracking::new(&u)).transpose()
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// What one sync did (`spamscope mlflow sync --json` prints it).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Synced {
    pub experiment_id: String,
    /// Runs logged now, oldest first.
    pub logged: Vec<Logged>,
    /// Runs already logged whose feedback metrics or status were brought up to date.
    pub refreshed: usize,
    /// The alias moved (or set for the first time).
    pub alias: Option<AliasMove>,
    /// Versions or comparisons that could not be read from the registry, and why.
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Logged {
    Version {
        version: u32,
        kind: &'static str,
        status: &'static str,
        run_id: String,
        model_version: String,
    },
    Comparison {
        #[serde(rename = "comparison")]
        id: String,
        run_id: String,
        models: usize,
    },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AliasMove {
    pub version: u32,
    pub model_version: String,
    pub previous: Option<String>,
}

impl Synced {
    /// One line per thing done (nothing: "up to date").
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .logged
            .iter()
            .map(|l| match l {
                Logged::Version {
                    version,
                    kind,
                    status,
                    run_id,
                    model_version,
                } => format!(
                    "logged version {version} ({kind}, {status}) as run {run_id}, model version {model_version}"
                ),
                Logged::Comparison { id, run_id, models } => {
                    format!("logged comparison {id} ({models} models) as run {run_id}")
                }
            })
            .collect();
        if let Some(a) = &self.alias {
            out.push(format!(
                "alias {ALIAS} -> model version {} (spamscope version {}){}",
                a.model_version,
                a.version,
                a.previous
                    .as_ref()
                    .map(|p| format!(", was {p}"))
                    .unwrap_or_default()
            ));
        }
        if self.refreshed > 0 {
            out.push(format!(
                "brought {} logged runs up to date (feedback, status)",
                self.refreshed
            ));
        }
        for s in &self.skipped {
            out.push(format!("skipped {s}"));
        }
        if out.is_empty() {
            out.push("up to date".into());
        }
        out
    }
}

/// Logs to MLflow whatever of `registry` it lacks, moves the alias to the active
/// version and brings logged runs' feedback metrics and status up to date. `None` when
/// another process was syncing this store for all of `wait`.
pub fn sync(
    registry: &Registry,
    tracking: &Tracking,
    wait: Duration,
    reporter: &dyn Reporter,
) -> Result<Option<Synced>, MlflowError> {
    let Some(_task) = registry.exclusive(TASK, wait)? else {
        return Ok(None);
    };
    // Leftovers of a sync that died (only the lock's holder writes here).
    let _ = std::fs::remove_dir_all(scratch(registry));
    let api = Api::new(tracking);
    let exp = api.experiment(&tracking.experiment)?;
    let runs = api.runs(&exp)?;
    api.registered_model(&tracking.experiment)?;
    let mut model_versions = api.model_versions(&tracking.experiment)?;
    let feedback = FeedbackStore::of(registry)
        .and_then(|s| s.stats())
        .map_err(|e| MlflowError::Content(e.to_string()))?;
    let active = registry.active()?;
    let mut out = Synced {
        experiment_id: exp.clone(),
        ..Synced::default()
    };
    let numbers = registry.version_numbers()?;
    let mut manifests = Vec::new();
    for &v in &numbers {
        match registry.manifest(v) {
            Ok(m) => manifests.push(m),
            Err(e) => out.skipped.push(format!("version {v}: {e}")),
        }
    }
    let mut run_of_version: HashMap<u32, String> = HashMap::new();
    let total = manifests.len();
    for (i, m) in manifests.iter().enumerate() {
        reporter.stage("mlflow", i, total);
        let v = m.version;
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|r| r.tag("spamscope.version") == Some(&v.to_string()))
            .collect();
        if mine.iter().any(|r| r.deleted && r.finished)
            && !mine.iter().any(|r| r.finished && !r.deleted)
        {
            // A complete run deleted in MLflow by someone: not logged again (the runs
            // a sync deletes are unfinished ones).
            continue;
        }
        let status = m.status_name(active);
        let fb = judged_of(&feedback, v);
        let run_id = match mine.iter().find(|r| r.finished && !r.deleted) {
            Some(r) => {
                if api.refresh_version(r, status, fb)? {
                    out.refreshed += 1;
                }
                r.id.clone()
            }
            None => {
                for r in mine.iter().filter(|r| !r.deleted) {
                    api.delete_run(&r.id)?;
                }
                api.log_version(registry, &exp, m, status, &feedback, &manifests)?
            }
        };
        let model_version = match model_versions.iter().find(|mv| mv.run_id == run_id) {
            Some(mv) => {
                if mv.tags.get("spamscope.status").map(String::as_str) != Some(status) {
                    api.set_model_version_tag(
                        &tracking.experiment,
                        &mv.version,
                        "spamscope.status",
                        status,
                    )?;
                }
                None
            }
            None => {
                let mv = api.create_model_version(&tracking.experiment, &run_id, m, status)?;
                model_versions.push(mv.clone());
                Some(mv.version)
            }
        };
        if let Some(model_version) = model_version {
            out.logged.push(Logged::Version {
                version: v,
                kind: kind_of(m),
                status,
                run_id: run_id.clone(),
                model_version,
            });
        }
        run_of_version.insert(v, run_id);
    }
    reporter.stage("mlflow", total, total);
    for id in registry.comparison_ids()? {
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|r| r.tag("spamscope.comparison") == Some(&id))
            .collect();
        let parent_done = mine
            .iter()
            .any(|r| r.tag("spamscope.model").is_none() && r.finished);
        if parent_done {
            continue;
        }
        let saved = match crate::ops::compare::load_kept(registry, &id) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                out.skipped.push(format!("comparison {id}: {e}"));
                continue;
            }
        };
        for r in mine.iter().filter(|r| !r.deleted) {
            api.delete_run(&r.id)?;
        }
        let run_id = api.log_comparison(registry, &exp, &id, &saved)?;
        out.logged.push(Logged::Comparison {
            id,
            run_id,
            models: saved.rows.len(),
        });
    }
    if let Some(a) = active
        && let Some(run_id) = run_of_version.get(&a)
        && let Some(mv) = model_versions.iter().find(|mv| &mv.run_id == run_id)
    {
        let now = api.alias(&tracking.experiment)?;
        if now.as_deref() != Some(mv.version.as_str()) {
            api.set_alias(&tracking.experiment, &mv.version)?;
            out.alias = Some(AliasMove {
                version: a,
                model_version: mv.version.clone(),
                previous: now,
            });
        }
    }
    Ok(Some(out))
}

/// What a command prints after it changed the registry (trained, retrained, compared,
/// rolled back) with MLflow configured: what the sync did, or why nothing is lost.
pub fn sync_after_change(registry: &Registry, tracking: &Tracking) -> String {
    match sync(
        registry,
        tracking,
        Duration::from_secs(30),
        &crate::util::progress::NoProgress,
    ) {
        Ok(Some(s)) => format!("MLflow ({}): {}", tracking.url, s.lines().join("; ")),
        Ok(None) => format!(
            "MLflow ({}): another process is sending this registry to MLflow now; it sends this too",
            tracking.url
        ),
        Err(e) if e.is_unreachable() => format!(
            "{e}: nothing is lost, the registry keeps what MLflow lacks and the next sync sends it (`spamscope mlflow sync`, or a service started with --mlflow)"
        ),
        Err(e) => format!(
            "MLflow: {e}; the registry is unchanged by this, and `spamscope mlflow sync` sends what MLflow lacks once it is fixed"
        ),
    }
}

/// Syncs a registry in the background for as long as it lives (the service): at once
/// when the registry's versions, active version or comparisons change (looked at every
/// second), else every minute (feedback metrics); after a failure, again after 5 s,
/// doubling to a minute. Failures are logged once per streak, not per try.
pub struct Tracker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    counts: std::sync::Arc<TrackerCounts>,
}

/// What a tracker's syncs came to (for `/metrics`).
#[derive(Debug, Default)]
pub struct TrackerCounts {
    /// Syncs that finished (MLflow holds everything the registry had).
    pub ok: std::sync::atomic::AtomicU64,
    /// Syncs that failed (MLflow away or refusing): the registry keeps what waits.
    pub failed: std::sync::atomic::AtomicU64,
    /// Syncs left to another process sharing the store (it held the lock).
    pub elsewhere: std::sync::atomic::AtomicU64,
    /// Runs logged (versions and comparisons).
    pub logged: std::sync::atomic::AtomicU64,
}

/// What a tracker compares to notice a change worth a sync.
type Seen = (Vec<u32>, Option<u32>, Vec<String>);

fn seen(registry: &Registry) -> Result<Seen, StoreError> {
    Ok((
        registry.version_numbers()?,
        registry.active()?,
        registry.comparison_ids()?,
    ))
}

impl Tracker {
    pub fn start(registry: Registry, tracking: Tracking) -> Tracker {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let counts = std::sync::Arc::new(TrackerCounts::default());
        let (flag, count) = (stop.clone(), counts.clone());
        let thread = std::thread::Builder::new()
            .name("mlflow".into())
            .spawn(move || track(&registry, &tracking, &flag, &count))
            .ok();
        Tracker {
            stop,
            thread,
            counts,
        }
    }

    /// What its syncs came to so far.
    pub fn counts(&self) -> std::sync::Arc<TrackerCounts> {
        self.counts.clone()
    }
}

/// A tracker's loop, until `stop` is set.
fn track(
    registry: &Registry,
    tracking: &Tracking,
    stop: &std::sync::atomic::AtomicBool,
    count: &TrackerCounts,
) {
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Instant;
    const PERIOD: Duration = Duration::from_secs(60);
    const FIRST_RETRY: Duration = Duration::from_secs(5);
    let mut last: Option<Seen> = None;
    let mut due = Instant::now();
    let mut backoff = FIRST_RETRY;
    let mut failing: Option<String> = None;
    while !stop.load(Relaxed) {
        let now_seen = seen(registry).ok();
        let changed = now_seen.is_some() && now_seen != last;
        if changed || Instant::now() >= due {
            last = now_seen;
            match sync(
                registry,
                tracking,
                Duration::ZERO,
                &crate::util::progress::NoProgress,
            ) {
                Ok(Some(s)) => {
                    count.ok.fetch_add(1, Relaxed);
                    count.logged.fetch_add(s.logged.len() as u64, Relaxed);
                    if failing.take().is_some() {
                        tracing::info!("MLflow at {} answers again", tracking.url);
                    }
                    if s.logged.is_empty() && s.alias.is_none() {
                        tracing::debug!("MLflow: {}", s.lines().join("; "));
                    } else {
                        tracing::info!("MLflow: {}", s.lines().join("; "));
                    }
                    due = Instant::now() + PERIOD;
                    backoff = FIRST_RETRY;
                }
                // Another process is syncing: look again soon.
                Ok(None) => {
                    count.elsewhere.fetch_add(1, Relaxed);
                    due = Instant::now() + FIRST_RETRY;
                }
                Err(e) => {
                    count.failed.fetch_add(1, Relaxed);
                    let text = e.to_string();
                    if failing.as_deref() != Some(text.as_str()) {
                        tracing::warn!(
                            "{text}; nothing is lost: trying again (every {} s at most)",
                            PERIOD.as_secs()
                        );
                        failing = Some(text);
                    }
                    due = Instant::now() + backoff;
                    backoff = (backoff * 2).min(PERIOD);
                }
            }
        }
        // A second between looks, stopping within a tenth of one.
        for _ in 0..10 {
            if stop.load(Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where a sync draws a run's charts before uploading them (this machine's folder of
/// the registry, or its cache).
fn scratch(registry: &Registry) -> std::path::PathBuf {
    registry.layout().root().join("mlflow-upload")
}

/// Version `v`'s feedback records that carry its verdict, and those that agreed.
fn judged_of(stats: &FeedbackStats, v: u32) -> Option<(u64, u64)> {
    stats
        .by_version
        .iter()
        .find(|s| s.version == Some(v))
        .map(|s| (s.judged, s.agreed))
}

/// What a version's run is: `retrain` (made from feedback, through the gate) or `train`.
fn kind_of(m: &Manifest) -> &'static str {
    if m.gate.is_some() { "retrain" } else { "train" }
}

/// Milliseconds since the epoch of an RFC 3339 time (now when it does not parse).
fn millis_of(rfc3339: &str) -> i64 {
    crate::util::unix_millis(
        humantime::parse_rfc3339_weak(rfc3339).unwrap_or_else(|_| SystemTime::now()),
    )
}

/// A key MLflow accepts: letters, digits, `_ - . / space`, at most [`MAX_KEY`].
fn key(k: &str) -> String {
    k.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-./ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_KEY)
        .collect()
}

fn param_value(v: &str) -> String {
    v.chars().take(MAX_PARAM_VALUE).collect()
}

/// `value`'s leaves under `prefix` (`a.b.c`): numbers, text and booleans as text.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&join(k), v, out);
            }
        }
        Value::Null => {}
        Value::String(s) => out.push((key(prefix), param_value(s))),
        other => out.push((key(prefix), param_value(&other.to_string()))),
    }
}

/// A version's parameters: its recipe (kind, hyperparameters, resampling), threshold,
/// data and evaluation, and the gate's settings.
fn version_params(m: &Manifest) -> Vec<(String, String)> {
    let mut p = Vec::new();
    flatten(
        "recipe",
        &serde_json::to_value(m.recipe()).unwrap_or(Value::Null),
        &mut p,
    );
    p.push(("model_kind".into(), param_value(&m.model_kind())));
    p.push(("threshold".into(), m.threshold.to_string()));
    if let Some(c) = &m.calibration {
        p.push(("calibration".into(), param_value(c)));
    }
    p.push(("data".into(), param_value(&m.data.describe())));
    p.push(("data_sha256".into(), m.data.sha256.clone()));
    p.push(("train_rows".into(), m.train_rows.to_string()));
    p.push(("train_positives".into(), m.train_positives.to_string()));
    p.push(("test_rows".into(), m.test_rows.to_string()));
    p.push(("feedback_used".into(), m.feedback_used.to_string()));
    flatten(
        "evaluation",
        &serde_json::to_value(&m.evaluation).unwrap_or(Value::Null),
        &mut p,
    );
    if let Some(parent) = m.parent {
        p.push(("parent_version".into(), parent.to_string()));
    }
    if let Some(g) = &m.gate {
        p.push(("gate.against_version".into(), g.against.to_string()));
        p.push(("gate.max_auc_drop".into(), g.max_auc_drop.to_string()));
    }
    p
}

/// A version's metrics: holdout (at its threshold), training time, the gate's numbers.
fn version_metrics(m: &Manifest) -> Vec<(String, f64)> {
    let x = &m.metrics;
    let mut out = vec![
        ("holdout.accuracy".to_string(), x.accuracy),
        ("holdout.precision".into(), x.precision),
        ("holdout.recall".into(), x.recall),
        ("holdout.f1".into(), x.f1),
        ("holdout.roc_auc".into(), x.roc_auc),
        ("holdout.average_precision".into(), x.average_precision),
        ("holdout.tn".into(), x.tn as f64),
        ("holdout.fp".into(), x.fp as f64),
        ("holdout.fn".into(), x.fn_ as f64),
        ("holdout.tp".into(), x.tp as f64),
        ("train_seconds".into(), m.train_seconds),
    ];
    if let Some(g) = &m.gate {
        out.push(("gate.base_auc_active".into(), g.base_auc_active));
        out.push(("gate.base_auc_candidate".into(), g.base_auc_candidate));
        out.push(("gate.promoted".into(), f64::from(u8::from(g.promoted))));
        for (side, fb) in [
            ("candidate", &g.feedback_candidate),
            ("active", &g.feedback_active),
        ] {
            if let Some(f) = fb {
                out.push((format!("gate.feedback_{side}.records"), f.records as f64));
                out.push((format!("gate.feedback_{side}.brier"), f.brier));
                out.push((format!("gate.feedback_{side}.accuracy"), f.accuracy));
                if let Some(a) = f.roc_auc {
                    out.push((format!("gate.feedback_{side}.roc_auc"), a));
                }
            }
        }
    }
    out
}

/// The moderators' feedback on a version's verdicts (judged, agreed), as metrics.
fn feedback_metrics((judged, agreed): (u64, u64)) -> Vec<(String, f64)> {
    let mut out = vec![
        ("feedback.judged".to_string(), judged as f64),
        ("feedback.agreed".into(), agreed as f64),
    ];
    if let Some(a) = crate::eval::verdict::agreement(agreed, judged) {
        out.push(("feedback.agreement".into(), a));
    }
    out
}

/// The text a version's run shows as its description.
fn version_note(m: &Manifest, status: &str) -> String {
    let mut s = format!(
        "spamscope version {} ({}, {}): {}",
        m.version,
        kind_of(m),
        status,
        m.model_kind()
    );
    if let Some(g) = &m.gate {
        s += &format!("\n\nGate against version {}: {}", g.against, g.reason);
    } else if let Some(r) = &m.status_reason {
        s += &format!("\n\n{r}");
    }
    s
}

/// The `{"key", "value"}` items of an MLflow list (a run's tags, metrics, a model
/// version's tags).
fn key_values(list: Option<&Value>) -> impl Iterator<Item = (String, &Value)> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv.get("key")?.as_str()?.to_string(), kv.get("value")?)))
}

/// A run as a search returns it.
#[derive(Debug, Clone)]
struct Run {
    id: String,
    finished: bool,
    deleted: bool,
    artifact_uri: String,
    tags: HashMap<String, String>,
    metrics: HashMap<String, f64>,
}

impl Run {
    fn tag(&self, k: &str) -> Option<&String> {
        self.tags.get(k)
    }

    fn parse(v: &Value) -> Option<Run> {
        let info = v.get("info")?;
        let pairs = |field: &str| key_values(v.get("data").and_then(|d| d.get(field)));
        Some(Run {
            id: info.get("run_id")?.as_str()?.to_string(),
            finished: info.get("status").and_then(Value::as_str) == Some("FINISHED"),
            deleted: info.get("lifecycle_stage").and_then(Value::as_str) == Some("deleted"),
            artifact_uri: info
                .get("artifact_uri")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            tags: pairs("tags")
                .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
                .collect(),
            metrics: pairs("metrics")
                .filter_map(|(k, v)| Some((k, v.as_f64()?)))
                .collect(),
        })
    }
}

#[derive(Debug, Clone)]
struct ModelVersion {
    version: String,
    run_id: String,
    tags: HashMap<String, String>,
}

/// How a call failed: no answer, or MLflow's error (its HTTP status and message).
enum Failure {
    Unreachable(String),
    Answer {
        status: u16,
        code: String,
        message: String,
    },
}

/// The REST client of one sync.
struct Api<'t> {
    t: &'t Tracking,
    agent: ureq::Agent,
}

impl<'t> Api<'t> {
    fn new(t: &'t Tracking) -> Api<'t> {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(300)))
            .http_status_as_error(false)
            .build()
            .into();
        Api { t, agent }
    }

    fn error(&self, what: &str, f: Failure) -> MlflowError {
        match f {
            Failure::Unreachable(why) => MlflowError::Unreachable {
                url: self.t.url.clone(),
                why,
            },
            Failure::Answer {
                status,
                code,
                message,
            } => MlflowError::Refused {
                url: self.t.url.clone(),
                what: what.to_string(),
                message: format!(
                    "{status}{}{}",
                    if code.is_empty() {
                        String::new()
                    } else {
                        format!(" {code}")
                    },
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ": {}",
                            crate::util::text::clip(&crate::util::text::one_line(&message))
                        )
                    }
                ),
            },
        }
    }

    fn answer(
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, Failure> {
        let mut res = match res {
            Ok(r) => r,
            Err(e) => return Err(Failure::Unreachable(e.to_string())),
        };
        let status = res.status().as_u16();
        let text = res
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        if (200..300).contains(&status) {
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        if matches!(status, 502..=504) {
            return Err(Failure::Unreachable(format!("answered {status}")));
        }
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let field = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Err(Failure::Answer {
            status,
            code: field("error_code"),
            message: if body.is_null() {
                text
            } else {
                field("message")
            },
        })
    }

    /// `req` with the credentials, if any.
    fn authorized<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.t.auth {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, Failure> {
        let mut req = self
            .agent
            .get(format!("{}/api/2.0/mlflow/{path}", self.t.url));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        Self::answer(self.authorized(req).call())
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        let req = self
            .agent
            .post(format!("{}/api/2.0/mlflow/{path}", self.t.url));
        Self::answer(self.authorized(req).send_json(body))
    }

    /// Every page of a search: `fetch(token)` for each (no token first) until MLflow
    /// gives no next page.
    fn pages(
        mut fetch: impl FnMut(Option<&str>) -> Result<Value, MlflowError>,
    ) -> Result<Vec<Value>, MlflowError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let v = fetch(token.as_deref())?;
            token = v
                .get("next_page_token")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            out.push(v);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// The experiment's id, created when missing. Its artifacts must be proxied by the
    /// server (`mlflow-artifacts:`): spamscope uploads through the tracking server only.
    fn experiment(&self, name: &str) -> Result<String, MlflowError> {
        let what = format!("experiment {}", crate::util::text::quote(name));
        let found = match self.get("experiments/get-by-name", &[("experiment_name", name)]) {
            Ok(v) => Some(v),
            Err(Failure::Answer { code, .. }) if code == "RESOURCE_DOES_NOT_EXIST" => None,
            Err(f) => return Err(self.error(&format!("reading {what}"), f)),
        };
        let exp = match found {
            Some(v) => v.get("experiment").cloned().unwrap_or(Value::Null),
            None => {
                match self.post("experiments/create", &json!({ "name": name })) {
                    Ok(_) => {}
                    // Another client created it meanwhile.
                    Err(Failure::Answer { code, .. }) if code == "RESOURCE_ALREADY_EXISTS" => {}
                    Err(f) => return Err(self.error(&format!("creating {what}"), f)),
                }
                self.get("experiments/get-by-name", &[("experiment_name", name)])
                    .map_err(|f| self.error(&format!("reading {what}"), f))?
                    .get("experiment")
                    .cloned()
                    .unwrap_or(Value::Null)
            }
        };
        let field = |k: &str| exp.get(k).and_then(Value::as_str).unwrap_or_default();
        let id = field("experiment_id").to_string();
        if id.is_empty() {
            return Err(MlflowError::Refused {
                url: self.t.url.clone(),
                what,
                message: "no experiment id in its answer".into(),
            });
        }
        if field("lifecycle_stage") == "deleted" {
            return Err(MlflowError::Setting(format!(
                "{what} is deleted in MLflow: restore it, or set {EXPERIMENT_ENV} to another name"
            )));
        }
        let location = field("artifact_location");
        if !location.starts_with("mlflow-artifacts:") {
            return Err(MlflowError::Setting(format!(
                "{what} keeps its artifacts at {}, which spamscope cannot upload to: it sends them through the tracking server, which needs `mlflow server` with artifacts served (the default; not --no-serve-artifacts)",
                crate::util::text::quote(location)
            )));
        }
        Ok(id)
    }

    /// Every run of the experiment, deleted ones too (a run deleted in MLflow is not
    /// logged again).
    fn runs(&self, exp: &str) -> Result<Vec<Run>, MlflowError> {
        let pages = Self::pages(|token| {
            let mut body = json!({
                "experiment_ids": [exp],
                "max_results": 500,
                "run_view_type": "ALL",
            });
            if let Some(t) = token {
                body["page_token"] = json!(t);
            }
            self.post("runs/search", &body)
                .map_err(|f| self.error("a search of runs", f))
        })?;
        Ok(pages
            .iter()
            .flat_map(|v| {
                v.get("runs")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .filter_map(Run::parse)
            .collect())
    }

    fn registered_model(&self, name: &str) -> Result<(), MlflowError> {
        match self.get("registered-models/get", &[("name", name)]) {
            Ok(_) => return Ok(()),
            Err(Failure::Answer { code, .. }) if code == "RESOURCE_DOES_NOT_EXIST" => {}
            Err(f) => return Err(self.error("reading the registered model", f)),
        }
        match self.post(
            "registered-models/create",
            &json!({
                "name": name,
                "description": "spamscope's model versions; the alias production names the active one",
            }),
        ) {
            Ok(_) => Ok(()),
            Err(Failure::Answer { code, .. }) if code == "RESOURCE_ALREADY_EXISTS" => Ok(()),
            Err(f) => Err(self.error("creating the registered model", f)),
        }
    }

    fn model_versions(&self, name: &str) -> Result<Vec<ModelVersion>, MlflowError> {
        let filter = format!("name='{}'", name.replace('\'', "\\'"));
        let pages = Self::pages(|token| {
            let mut q = vec![("filter", filter.as_str()), ("max_results", "200")];
            if let Some(t) = token {
                q.push(("page_token", t));
            }
            self.get("model-versions/search", &q)
                .map_err(|f| self.error("a search of model versions", f))
        })?;
        Ok(pages
            .iter()
            .flat_map(|v| {
                v.get("model_versions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .filter_map(|mv| {
                let s = |k: &str| mv.get(k).and_then(Value::as_str).map(str::to_string);
                Some(ModelVersion {
                    version: s("version")?,
                    run_id: s("run_id")?,
                    tags: key_values(mv.get("tags"))
                        .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
                        .collect(),
                })
            })
            .collect())
    }

    fn create_run(
        &self,
        exp: &str,
        name: &str,
        start: i64,
        tags: &[(String, String)],
    ) -> Result<Run, MlflowError> {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": param_value(v) }))
            .collect();
        let v = self
            .post(
                "runs/create",
                &json!({ "experiment_id": exp, "run_name": name, "start_time": start, "tags": tags }),
            )
            .map_err(|f| self.error(&format!("creating run {name:?}"), f))?;
        v.get("run")
            .and_then(Run::parse)
            .ok_or_else(|| MlflowError::Refused {
                url: self.t.url.clone(),
                what: format!("creating run {name:?}"),
                message: "no run in its answer".into(),
            })
    }

    fn log(
        &self,
        run: &str,
        params: &[(String, String)],
        metrics: &[(String, f64)],
        step: i64,
    ) -> Result<(), MlflowError> {
        let now = crate::util::unix_millis(SystemTime::now());
        let metrics: Vec<Value> = metrics
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| json!({ "key": k, "value": v, "timestamp": now, "step": step }))
            .collect();
        let params: Vec<Value> = params
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v }))
            .collect();
        for chunk in params.chunks(BATCH) {
            self.post("runs/log-batch", &json!({ "run_id": run, "params": chunk }))
                .map_err(|f| self.error("parameters", f))?;
        }
        for chunk in metrics.chunks(BATCH) {
            self.post(
                "runs/log-batch",
                &json!({ "run_id": run, "metrics": chunk }),
            )
            .map_err(|f| self.error("metrics", f))?;
        }
        Ok(())
    }

    fn set_tag(&self, run: &str, k: &str, v: &str) -> Result<(), MlflowError> {
        self.post(
            "runs/set-tag",
            &json!({ "run_id": run, "key": k, "value": param_value(v) }),
        )
        .map(|_| ())
        .map_err(|f| self.error("a run's tag", f))
    }

    fn finish(&self, run: &str, end: i64) -> Result<(), MlflowError> {
        self.post(
            "runs/update",
            &json!({ "run_id": run, "status": "FINISHED", "end_time": end }),
        )
        .map(|_| ())
        .map_err(|f| self.error("finishing a run", f))
    }

    fn delete_run(&self, run: &str) -> Result<(), MlflowError> {
        self.post("runs/delete", &json!({ "run_id": run }))
            .map(|_| ())
            .map_err(|f| self.error("deleting an unfinished run", f))
    }

    /// Uploads `bytes` as artifact `name` of `run` (through the server's proxy).
    fn upload(&self, run: &Run, name: &str, bytes: &[u8]) -> Result<(), MlflowError> {
        let Some(path) = run.artifact_uri.strip_prefix("mlflow-artifacts:") else {
            return Err(MlflowError::Setting(format!(
                "run {} keeps its artifacts at {}, which spamscope cannot upload to",
                run.id,
                crate::util::text::quote(&run.artifact_uri)
            )));
        };
        let path = path.trim_start_matches('/');
        let req = self.agent.put(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{path}/{name}",
            self.t.url
        ));
        Self::answer(self.authorized(req).send(bytes))
            .map(|_| ())
            .map_err(|f| self.error(&format!("artifact {name}"), f))
    }

    /// Draws files into the scratch folder `dir` with `draw` and uploads them all as
    /// artifacts of `run`; the folder is removed afterwards, uploaded or not. A drawing
    /// that fails is a `what` error.
    fn upload_drawn(
        &self,
        run: &Run,
        dir: &Path,
        what: &str,
        draw: impl FnOnce(&Path) -> Result<(), String>,
    ) -> Result<(), MlflowError> {
        let _ = std::fs::remove_dir_all(dir);
        let uploaded = draw(dir)
            .map_err(|e| MlflowError::Content(format!("{what}: {e}")))
            .and_then(|()| self.upload_dir(run, dir));
        let _ = std::fs::remove_dir_all(dir);
        uploaded
    }

    /// Uploads every file under `dir` as artifacts named by their relative path.
    fn upload_dir(&self, run: &Run, dir: &Path) -> Result<(), MlflowError> {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let entries = std::fs::read_dir(&d)
                .map_err(|e| MlflowError::Content(format!("{}: {e}", d.display())))?;
            for e in entries {
                let p = e
                    .map_err(|e| MlflowError::Content(format!("{}: {e}", d.display())))?
                    .path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let rel = p.strip_prefix(dir).unwrap_or(&p);
                let name: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let bytes = std::fs::read(&p)
                    .map_err(|e| MlflowError::Content(format!("{}: {e}", p.display())))?;
                self.upload(run, &name.join("/"), &bytes)?;
            }
        }
        Ok(())
    }

    /// Logs version `m` as a finished run: tags, parameters, metrics (feedback too), the
    /// model card and charts, the model file and manifest. Returns the run's id.
    fn log_version(
        &self,
        registry: &Registry,
        exp: &str,
        m: &Manifest,
        status: &str,
        stats: &FeedbackStats,
        all: &[Manifest],
    ) -> Result<String, MlflowError> {
        let feedback = judged_of(stats, m.version);
        let v = m.version;
        let mut tags = vec![
            ("spamscope.version".to_string(), v.to_string()),
            ("spamscope.kind".into(), kind_of(m).into()),
            ("spamscope.status".into(), status.into()),
            ("spamscope.model_kind".into(), m.model_kind()),
            ("spamscope.created_at".into(), m.created_at.clone()),
            ("mlflow.source.name".into(), "spamscope".into()),
            ("mlflow.note.content".into(), version_note(m, status)),
        ];
        if let Some(g) = &m.gate {
            tags.push(("spamscope.gate_reason".into(), g.reason.clone()));
            tags.push((
                "spamscope.gate".into(),
                if g.promoted { "promoted" } else { "rejected" }.into(),
            ));
        }
        let start = millis_of(&m.created_at);
        let name = format!(
            "v{v} {}{}",
            kind_of(m),
            if m.gate.as_ref().is_some_and(|g| !g.promoted) {
                " (rejected)"
            } else {
                ""
            }
        );
        let run = self.create_run(exp, &name, start, &tags)?;
        let mut metrics = version_metrics(m);
        if let Some(fb) = feedback {
            metrics.extend(feedback_metrics(fb));
        }
        self.log(
            &run.id,
            &version_params(m),
            &metrics,
            feedback.map_or(0, |(j, _)| j as i64),
        )?;
        // The card and charts, drawn into a scratch folder of this process.
        self.upload_drawn(
            &run,
            &scratch(registry).join(format!("v{v}")),
            &format!("version {v}'s model card"),
            |dir| {
                let holdout = registry.load_holdout(v).map_err(|e| e.to_string())?;
                crate::ops::report::write_version_card(dir, m, &holdout, Some(stats), all)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        )?;
        for file in [MODEL_FILE, MANIFEST_FILE] {
            let bytes = registry.version_file(v, file)?;
            self.upload(&run, &format!("model/{file}"), &bytes)?;
        }
        self.finish(&run.id, start + (m.train_seconds * 1000.0) as i64)?;
        Ok(run.id)
    }

    /// Brings a logged version's run up to date: its status tag, and its feedback
    /// metrics (a new point, stepped by the number judged, when more were judged).
    /// Whether anything changed.
    fn refresh_version(
        &self,
        run: &Run,
        status: &str,
        feedback: Option<(u64, u64)>,
    ) -> Result<bool, MlflowError> {
        let mut changed = false;
        if run.tag("spamscope.status").map(String::as_str) != Some(status) {
            self.set_tag(&run.id, "spamscope.status", status)?;
            changed = true;
        }
        if let Some((judged, agreed)) = feedback
            && run.metrics.get("feedback.judged") != Some(&(judged as f64))
        {
            self.log(
                &run.id,
                &[],
                &feedback_metrics((judged, agreed)),
                judged as i64,
            )?;
            changed = true;
        }
        Ok(changed)
    }

    fn create_model_version(
        &self,
        name: &str,
        run_id: &str,
        m: &Manifest,
        status: &str,
    ) -> Result<ModelVersion, MlflowError> {
        let runs = self
            .get("runs/get", &[("run_id", run_id)])
            .map_err(|f| self.error("reading a run", f))?;
        let run = runs
            .get("run")
            .and_then(Run::parse)
            .ok_or_else(|| MlflowError::Refused {
                url: self.t.url.clone(),
                what: "reading a run".into(),
                message: "no run in its answer".into(),
            })?;
        let tags = [
            ("spamscope.version", m.version.to_string()),
            ("spamscope.status", status.to_string()),
            ("spamscope.kind", kind_of(m).to_string()),
        ];
        let v = self
            .post(
                "model-versions/create",
                &json!({
                    "name": name,
                    "source": format!("{}/model", run.artifact_uri),
                    "run_id": run_id,
                    "description": version_note(m, status),
                    "tags": tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
                }),
            )
            .map_err(|f| self.error(&format!("registering version {}", m.version), f))?;
        let version = v
            .get("model_version")
            .and_then(|mv| mv.get("version"))
            .and_then(Value::as_str)
            .ok_or_else(|| MlflowError::Refused {
                url: self.t.url.clone(),
                what: format!("registering version {}", m.version),
                message: "no model version in its answer".into(),
            })?;
        Ok(ModelVersion {
            version: version.to_string(),
            run_id: run_id.to_string(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        })
    }

    fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        k: &str,
        v: &str,
    ) -> Result<(), MlflowError> {
        self.post(
            "model-versions/set-tag",
            &json!({ "name": name, "version": version, "key": k, "value": v }),
        )
        .map(|_| ())
        .map_err(|f| self.error("a model version's tag", f))
    }

    /// The model version the alias names now, if it is set (from the registered
    /// model's aliases: asking for a missing alias is an error in MLflow).
    fn alias(&self, name: &str) -> Result<Option<String>, MlflowError> {
        let v = self
            .get("registered-models/get", &[("name", name)])
            .map_err(|f| self.error("reading the registered model", f))?;
        Ok(v.get("registered_model")
            .and_then(|m| m.get("aliases"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|a| a.get("alias").and_then(Value::as_str) == Some(ALIAS))
            .and_then(|a| a.get("version"))
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    fn set_alias(&self, name: &str, version: &str) -> Result<(), MlflowError> {
        self.post(
            "registered-models/alias",
            &json!({ "name": name, "alias": ALIAS, "version": version }),
        )
        .map(|_| ())
        .map_err(|f| self.error("moving the alias", f))
    }

    /// Logs a comparison: a parent run (the table as its description and artifact, the
    /// ROC chart) and a finished child run per model with its metrics; the parent is
    /// finished last, so an unfinished parent marks a comparison to log again.
    fn log_comparison(
        &self,
        registry: &Registry,
        exp: &str,
        id: &str,
        saved: &Saved,
    ) -> Result<String, MlflowError> {
        let start = millis_of(&saved.created_at);
        let mut tags = vec![
            ("spamscope.kind".to_string(), "comparison".to_string()),
            ("spamscope.comparison".into(), id.to_string()),
            ("mlflow.source.name".into(), "spamscope".into()),
            ("mlflow.note.content".into(), saved.markdown.clone()),
        ];
        if let Some(b) = &saved.best_f1 {
            tags.push(("spamscope.best_f1".into(), b.clone()));
        }
        if let Some(b) = &saved.best_auc {
            tags.push(("spamscope.best_auc".into(), b.clone()));
        }
        let parent = self.create_run(
            exp,
            &format!("comparison {}", saved.created_at),
            start,
            &tags,
        )?;
        let params = vec![
            ("data".to_string(), param_value(&saved.data_label)),
            ("train_rows".into(), saved.train_rows.to_string()),
            ("test_rows".into(), saved.test_rows.to_string()),
            ("test_positives".into(), saved.test_positives.to_string()),
            ("models".into(), saved.rows.len().to_string()),
            (
                "failed".into(),
                param_value(
                    &saved
                        .failed
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            ),
        ];
        self.log(&parent.id, &params, &[], 0)?;
        self.upload_drawn(
            &parent,
            &scratch(registry).join(id),
            &format!("comparison {id}'s charts"),
            |dir| {
                std::fs::create_dir_all(dir.join("charts")).map_err(|e| e.to_string())?;
                crate::ops::report::comparison_roc_chart(
                    &dir.join("charts/comparison_roc.png"),
                    saved,
                )
                .map_err(|e| e.to_string())?;
                std::fs::write(dir.join("comparison.md"), &saved.markdown)
                    .map_err(|e| e.to_string())?;
                std::fs::write(
                    dir.join("comparison.json"),
                    serde_json::to_string_pretty(saved).unwrap_or_default(),
                )
                .map_err(|e| e.to_string())
            },
        )?;
        for row in &saved.rows {
            let child = self.create_run(
                exp,
                &row.name,
                start,
                &[
                    ("mlflow.parentRunId".to_string(), parent.id.clone()),
                    ("spamscope.kind".into(), "comparison".into()),
                    ("spamscope.comparison".into(), id.to_string()),
                    ("spamscope.model".into(), row.name.clone()),
                    ("mlflow.source.name".into(), "spamscope".into()),
                ],
            )?;
            self.log(
                &child.id,
                &[("model".to_string(), param_value(&row.name))],
                &[
                    ("accuracy".to_string(), row.accuracy),
                    ("precision".into(), row.precision),
                    ("recall".into(), row.recall),
                    ("f1".into(), row.f1),
                    ("roc_auc".into(), row.roc_auc),
                    ("average_precision".into(), row.average_precision),
                    ("fit_seconds".into(), row.fit_seconds),
                ],
                0,
            )?;
            self.finish(&child.id, start + (row.fit_seconds * 1000.0) as i64)?;
        }
        self.finish(&parent.id, crate::util::unix_millis(SystemTime::now()))?;
        Ok(parent.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_in_one_line() {
        assert!(Tracking::new("http://127.0.0.1:5000/").is_ok());
        assert_eq!(
            Tracking::new("http://127.0.0.1:5000/").unwrap().url(),
            "http://127.0.0.1:5000"
        );
        for bad in [
            "file:///tmp/mlruns",
            "databricks",
            "http://",
            "127.0.0.1:5000",
        ] {
            let e = Tracking::new(bad).unwrap_err().to_string();
            assert!(e.starts_with("MLflow tracking URI"), "{e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn keys_and_params_fit_mlflow_limits() {
        assert_eq!(key("Random forest (ours)"), "Random forest _ours_");
        assert_eq!(key(&"x".repeat(400)).len(), MAX_KEY);
        let mut out = Vec::new();
        flatten(
            "recipe",
            &json!({"Forest": {"n_trees": 300, "max_depth": null, "class_weight": "Balanced"}}),
            &mut out,
        );
        out.sort();
        assert_eq!(
            out,
            vec![
                (
                    "recipe.Forest.class_weight".to_string(),
                    "Balanced".to_string()
                ),
                ("recipe.Forest.n_trees".into(), "300".into()),
            ]
        );
    }
}
