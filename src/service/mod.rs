//! `spamscope serve`: the scoring and feedback service over HTTP, a drop-in for the
//! reference system's FastAPI API (same paths and field names, more fields). A
//! front-end like the app and the CLI: every step it takes is an `ops` call on the same
//! registry and stores.
//!
//! - The active version is held behind a lock as an `Arc`: a request takes the current
//!   one and finishes on it, while a watcher swaps in whatever the registry's `ACTIVE`
//!   pointer names (a retrain or rollback from any process) within a second.
//! - Tokens with roles (`scorer` < `moderator` < `admin`) from the registry's token
//!   file, re-read when it changes; without any token the service answers only on
//!   loopback.
//! - A shadow or canary experiment (`experiment.json`, followed like `ACTIVE`) runs a
//!   candidate beside the active version: both score each request, the arm answers.
//! - With a webhook, the watcher raises `error_rate` and `agreement_drop` alerts.
//! - Every failure is a JSON error naming what was wrong ([`error::ApiError`]); a
//!   handler panic is a logged 500, the server goes on.

pub mod api;
mod error;
mod metrics;
mod routes;
pub mod telemetry;

pub use error::ApiError;

use crate::model::Model;
use crate::store::Manifest;
use crate::store::Registry;
use crate::store::predictions::{PredictionLog, Retention};
use crate::store::tokens::{Role, TokenInfo, TokenStore, Tokens};
use crate::util::progress::Reporter;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Limits that protect the service; documented in docs/service.md.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request body (bytes).
    pub max_body: usize,
    /// Most accounts in one `/predict/batch` request.
    pub max_batch: usize,
    /// Requests being handled at once; more wait up to `timeout` for a slot, then 503.
    pub max_in_flight: usize,
    /// Longest time a request may take (queueing included) before 503.
    pub timeout: Duration,
    /// Most contributions one account's response may carry.
    pub max_explain: usize,
    /// How long the service's feedback store waits for another process's write lock
    /// before the request is answered 503 (busy, with `Retry-After`).
    pub store_busy_wait: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body: 16 * 1024 * 1024,
            max_batch: 10_000,
            max_in_flight: 256,
            timeout: Duration::from_secs(30),
            max_explain: crate::data::catalog::N_FEATURES,
            store_busy_wait: crate::store::BUSY_WAIT,
        }
    }
}

/// How to run the service.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The registry: a folder, or a PostgreSQL database shared with other replicas.
    pub store: crate::store::location::Location,
    pub addr: SocketAddr,
    /// Threads of the async runtime (scoring runs on them; exact explanations on the
    /// blocking pool).
    pub workers: usize,
    pub limits: Limits,
    pub retention: Retention,
    /// Where to POST alerts (error rate, an experiment's agreement); None: the
    /// registry's `webhook_url` setting, if any.
    pub webhook: Option<String>,
    /// How long to keep trying a store that does not answer at start (None: not at all).
    pub wait_for_store: Option<Duration>,
    /// Where to log versions, comparisons and the production alias (None: nowhere).
    pub mlflow: Option<crate::ops::mlflow::Tracking>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {addr} without API tokens: anyone could score and send feedback; add one with `spamscope token add --name NAME --role admin`, or listen on 127.0.0.1"
    )]
    OpenOnNetwork { addr: SocketAddr },
    #[error("cannot listen on {addr}: {message}")]
    Bind { addr: SocketAddr, message: String },
    #[error(transparent)]
    Ops(#[from] crate::Error),
}

/// The version that answers requests.
pub struct Active {
    pub manifest: Manifest,
    pub model: Model,
}

/// A running shadow or canary experiment with its candidate version loaded.
pub struct Running {
    pub experiment: crate::ops::experiment::Experiment,
    pub candidate: Active,
}

/// The decision policies this replica applies: the live one and a shadow, as the
/// registry's pointers named them when last read.
#[derive(Default)]
pub struct Policies {
    pub pointers: crate::store::PolicyPointers,
    pub live: Option<crate::ops::policy::KeptPolicy>,
    pub shadow: Option<crate::ops::policy::KeptPolicy>,
}

impl Policies {
    /// Whether deciding one account is cheap enough for an async worker: at most
    /// [`INLINE_POLICY_OPERATIONS`] operations between the live and the shadow policy
    /// (a policy beyond it, up to 6 ms an account, is decided on the blocking pool).
    pub fn inline(&self) -> bool {
        let ops = |k: &Option<crate::ops::policy::KeptPolicy>| {
            k.as_ref().map_or(0, |k| k.compiled.operations())
        };
        ops(&self.live) + ops(&self.shadow) <= INLINE_POLICY_OPERATIONS
    }
}

/// Most operations of the policies decided on an async worker: about 20 us at the
/// measured 10.6 ns an operation (the largest policy allowed: 600,000 operations, 6.4 ms).
pub const INLINE_POLICY_OPERATIONS: usize = 2_000;

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// Everything the handlers share.
pub struct State {
    pub registry: Registry,
    active: RwLock<Arc<Active>>,
    /// The running experiment, if any (`experiment.json` in the registry).
    experiment: RwLock<Option<Arc<Running>>>,
    /// The live and shadow decision policies (followed like the active version).
    policies: RwLock<Arc<Policies>>,
    /// Numbers computed on a schedule for `/metrics` (the shadow's, the review queue's).
    pub(crate) cached: metrics::Cached,
    /// The experiment whose candidate would not load, and why (not retried every
    /// second: versions do not change).
    experiment_failed: std::sync::Mutex<Option<(crate::ops::experiment::Experiment, String)>>,
    tokens: RwLock<Tokens>,
    /// Without tokens, requests are anonymous admins (loopback only).
    open_without_tokens: bool,
    pub log: PredictionLog,
    /// Feedback through the service: group commits, one writer.
    pub feedback: crate::ops::feedback::FeedbackQueue,
    /// The feedback store for everything else (statistics, review claims, confirmed
    /// labels): opened once, with its tables and migrations, when the service starts.
    store: std::sync::Mutex<crate::store::feedback::FeedbackStore>,
    pub limits: Limits,
    slots: Arc<tokio::sync::Semaphore>,
    started: std::time::SystemTime,
    /// Retrains started through the API, by job id.
    pub(crate) jobs: crate::store::jobs::Jobs,
    pub(crate) metrics: metrics::Metrics,
    /// Where the watcher sends alerts, once set ([`State::set_alerts`]).
    alerts: std::sync::OnceLock<crate::ops::alert::WebhookSender>,
    /// The MLflow tracker's counts, when the service sends its registry to MLflow.
    mlflow: std::sync::OnceLock<Arc<crate::ops::mlflow::TrackerCounts>>,
    /// The newest experiment numbers computed here: when, and of which experiment
    /// ([`State::experiment_stats_within`]).
    experiment_numbers: std::sync::Mutex<Option<ExperimentNumbers>>,
}

/// Experiment numbers as computed at a moment.
struct ExperimentNumbers {
    at: std::time::Instant,
    experiment: String,
    stats: crate::ops::experiment::Stats,
}

impl State {
    /// Opens the stores of `registry` and loads its active version (which must exist).
    pub fn new(
        registry: Registry,
        limits: Limits,
        retention: Retention,
        loopback: bool,
    ) -> Result<Arc<State>, crate::Error> {
        let (manifest, model) = registry.load_active()?;
        let tokens = TokenStore::of(&registry).load()?;
        let log = PredictionLog::open_for(&registry, retention)?;
        let feedback =
            crate::ops::feedback::FeedbackQueue::open(&registry, limits.store_busy_wait)?;
        let mut store = crate::store::feedback::FeedbackStore::of(&registry)?;
        store.set_busy_wait(limits.store_busy_wait)?;
        let jobs = crate::store::jobs::Jobs::of(&registry);
        let state = Arc::new(State {
            feedback,
            store: std::sync::Mutex::new(store),
            registry,
            active: RwLock::new(Arc::new(Active { manifest, model })),
            experiment: RwLock::new(None),
            policies: RwLock::new(Arc::new(Policies::default())),
            cached: Default::default(),
            experiment_failed: std::sync::Mutex::new(None),
            tokens: RwLock::new(tokens),
            open_without_tokens: loopback,
            log,
            slots: Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight)),
            limits,
            started: std::time::SystemTime::now(),
            jobs,
            metrics: Default::default(),
            alerts: std::sync::OnceLock::new(),
            mlflow: std::sync::OnceLock::new(),
            experiment_numbers: std::sync::Mutex::new(None),
        });
        if let Err(e) = state.refresh_experiment() {
            tracing::warn!("no experiment running: {e}");
        }
        if let Err(e) = state.refresh_policies() {
            tracing::warn!("no decision policy: {e}");
        }
        Ok(state)
    }

    /// The decision policies applied now.
    pub fn policies(&self) -> Arc<Policies> {
        self.policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Follows the registry's policy pointers: loads a newly published or shadowed
    /// policy. One that cannot be read or compiled is not applied; the policies loaded
    /// before stay (the error says why).
    pub fn refresh_policies(&self) -> Result<(), crate::Error> {
        let pointers = self.registry.policy_pointers()?;
        if pointers == self.policies().pointers {
            return Ok(());
        }
        let (live, shadow) = crate::ops::policy::kept(&self.registry)?;
        tracing::info!(
            "decision policy: {}; shadow: {}",
            pointers
                .live
                .map_or("none".into(), |n| format!("policy {n}")),
            pointers
                .shadow
                .map_or("none".into(), |n| format!("policy {n}"))
        );
        *self.policies.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Policies {
            pointers,
            live,
            shadow,
        });
        Ok(())
    }

    /// Sends the watcher's alerts through `sender` (once; a second sender is refused
    /// and handed back).
    pub fn set_alerts(
        &self,
        sender: crate::ops::alert::WebhookSender,
    ) -> Result<(), crate::ops::alert::WebhookSender> {
        self.alerts.set(sender)
    }

    /// Exports an MLflow tracker's counts on `/metrics` (once).
    pub fn set_mlflow(&self, counts: Arc<crate::ops::mlflow::TrackerCounts>) {
        let _ = self.mlflow.set(counts);
    }

    /// The MLflow tracker's counts, if the service runs one.
    pub fn mlflow(&self) -> Option<&crate::ops::mlflow::TrackerCounts> {
        self.mlflow.get().map(|c| &**c)
    }

    /// The alert sender, if one is set.
    pub fn alerts(&self) -> Option<&crate::ops::alert::WebhookSender> {
        self.alerts.get()
    }

    /// Runs `f` on the service's feedback store (one connection, opened at start; callers
    /// are on the blocking pool).
    pub fn with_store<T>(
        &self,
        f: impl FnOnce(&mut crate::store::feedback::FeedbackStore) -> Result<T, crate::Error>,
    ) -> Result<T, crate::Error> {
        let _span = tracing::info_span!(target: telemetry::TARGET, "store").entered();
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut store)
    }

    /// Requests being handled now, with their blocking work (at most
    /// `limits.max_in_flight`).
    pub fn in_flight(&self) -> usize {
        self.limits
            .max_in_flight
            .saturating_sub(self.slots.available_permits())
    }

    /// The running experiment, if any.
    pub fn experiment(&self) -> Option<Arc<Running>> {
        self.experiment
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The numbers of experiment `e` from the prediction log (committing what is
    /// pending first) and the moderators' labels; kept for
    /// [`State::experiment_stats_within`].
    pub fn experiment_stats(
        &self,
        e: &crate::ops::experiment::Experiment,
    ) -> Result<crate::ops::experiment::Stats, crate::Error> {
        self.log.flush()?;
        let rows = self.log.experiment_rows(&e.id)?;
        let labels = self.with_store(|s| Ok(s.labels()?))?;
        let active = self.active();
        let running = self.experiment();
        let threshold = |v: u32| -> Result<f64, crate::Error> {
            if v == active.manifest.version {
                return Ok(active.manifest.threshold);
            }
            if let Some(r) = running
                .as_ref()
                .filter(|r| r.candidate.manifest.version == v)
            {
                return Ok(r.candidate.manifest.threshold);
            }
            Ok(self.registry.manifest(v)?.threshold)
        };
        let stats = crate::ops::experiment::stats(e, &rows, &labels, threshold)?;
        *self
            .experiment_numbers
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(ExperimentNumbers {
            at: std::time::Instant::now(),
            experiment: e.id.clone(),
            stats: stats.clone(),
        });
        Ok(stats)
    }

    /// [`State::experiment_stats`], or the numbers of the same experiment computed here
    /// less than `max_age` ago: they read every logged row of the experiment and every
    /// label, too much to do on each scrape of `/metrics`.
    pub fn experiment_stats_within(
        &self,
        e: &crate::ops::experiment::Experiment,
        max_age: Duration,
    ) -> Result<crate::ops::experiment::Stats, crate::Error> {
        if let Some(n) = &*self
            .experiment_numbers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            && n.experiment == e.id
            && n.at.elapsed() < max_age
        {
            return Ok(n.stats.clone());
        }
        self.experiment_stats(e)
    }

    /// Follows the registry's `experiment.json`: loads the candidate of a new
    /// experiment, drops a stopped one. A candidate that cannot be loaded stops nothing
    /// on disk but runs no experiment here (the error says why).
    pub fn refresh_experiment(&self) -> Result<(), crate::Error> {
        let def = crate::ops::experiment::load(&self.registry);
        let current = self.experiment();
        let def = match def {
            Ok(d) => d,
            Err(e) => {
                *self.experiment.write().unwrap_or_else(|p| p.into_inner()) = None;
                return Err(e.into());
            }
        };
        match (def, current) {
            (None, None) => {}
            (None, Some(old)) => {
                tracing::info!("experiment {} stopped", old.experiment.id);
                *self.experiment.write().unwrap_or_else(|p| p.into_inner()) = None;
            }
            (Some(d), Some(old)) if old.experiment == d => {}
            (Some(d), _) => {
                let mut failed = self
                    .experiment_failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if let Some((f, why)) = failed.as_ref()
                    && f == &d
                {
                    return Err(crate::Error::Invalid(why.clone()));
                }
                let loaded = self.registry.load(d.candidate);
                let mut slot = self.experiment.write().unwrap_or_else(|p| p.into_inner());
                let (manifest, model) = match loaded {
                    Ok(m) => m,
                    Err(e) => {
                        *slot = None;
                        let why = format!("experiment {}: version {}: {e}", d.id, d.candidate);
                        *failed = Some((d, why.clone()));
                        return Err(crate::Error::Invalid(why));
                    }
                };
                tracing::info!(
                    "experiment {}: {} of version {} beside the active version",
                    d.id,
                    d.mode.name(),
                    d.candidate
                );
                *slot = Some(Arc::new(Running {
                    experiment: d,
                    candidate: Active { manifest, model },
                }));
            }
        }
        Ok(())
    }

    /// The version answering new requests.
    pub fn active(&self) -> Arc<Active> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_active(&self, a: Active) {
        tracing::info!("now serving version {}", a.manifest.version);
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(a);
    }

    /// Loads the registry's active version if it is not the one being served.
    pub fn refresh_active(&self) -> Result<(), crate::Error> {
        let Some(v) = self.registry.active()? else {
            return Ok(());
        };
        if v != self.active().manifest.version {
            let (manifest, model) = self.registry.load_active()?;
            self.set_active(Active { manifest, model });
        }
        Ok(())
    }

    /// Re-reads the token file.
    pub fn refresh_tokens(&self) {
        match TokenStore::of(&self.registry).load() {
            Ok(t) => *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = t,
            Err(e) => tracing::warn!("keeping the tokens loaded before: {e}"),
        }
    }

    /// The caller of a request with `secret` (from `Authorization: Bearer` or
    /// `X-API-Key`), if it may act as `needed`.
    pub fn authorize(&self, secret: Option<&str>, needed: Role) -> Result<Caller, ApiError> {
        use axum::http::StatusCode;
        let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        if tokens.is_empty() && self.open_without_tokens {
            return Ok(Caller {
                name: "anonymous".into(),
                role: Role::Admin,
            });
        }
        let Some(secret) = secret else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this service needs an API token: send `Authorization: Bearer TOKEN`",
            ));
        };
        let Some(TokenInfo { name, role, .. }) = tokens.verify(secret) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the API token is not valid (unknown or revoked)",
            ));
        };
        if !role.allows(needed) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "token {name} has the role {}; this needs {}",
                    role.name(),
                    needed.name()
                ),
            ));
        }
        Ok(Caller { name, role })
    }
}

/// The service's routes on `state`.
pub fn router(state: Arc<State>) -> axum::Router {
    routes::router(state)
}

/// Checks the registry's active version, experiment and tokens every `every` until the
/// state is dropped by everyone else; with an alert sender, raises `error_rate` (over
/// the last minute) and `agreement_drop` (a running experiment's, checked every minute)
/// alerts.
pub fn spawn_watcher(state: &Arc<State>, every: Duration) {
    spawn_watcher_with(state, every, AlertRules::default())
}

/// When the watcher raises alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRules {
    /// The error-rate window, and how often a running experiment's agreement is checked.
    pub window: Duration,
    /// `error_rate`: more than this share of server errors over the window...
    pub error_rate_max_share: f64,
    /// ... among at least this many requests.
    pub error_rate_min_requests: u64,
    /// `agreement_drop`: the versions agree on less than this share...
    pub agreement_floor: f64,
    /// ... of at least this many requests.
    pub agreement_min_requests: u64,
}

impl Default for AlertRules {
    /// A minute; more than 5% of at least 20 requests; below 90% of at least 100.
    fn default() -> AlertRules {
        AlertRules {
            window: Duration::from_secs(60),
            error_rate_max_share: 0.05,
            error_rate_min_requests: 20,
            agreement_floor: 0.9,
            agreement_min_requests: 100,
        }
    }
}

/// [`spawn_watcher`] with its alert rules.
pub fn spawn_watcher_with(state: &Arc<State>, every: Duration, rules: AlertRules) {
    let weak = Arc::downgrade(state);
    // On a shared store, a change any replica or command commits (a promotion, an
    // experiment, a token) wakes the watcher at once; polling stays as the fallback.
    let wake = Arc::new(tokio::sync::Notify::new());
    if state.registry.has_changes() {
        listen_for_changes(weak.clone(), state.registry.clone(), wake.clone());
    }
    tokio::spawn(async move {
        let mut last_summary = (std::time::Instant::now(), (0, 0, 0));
        // Readings of the counters over the last minute, oldest first.
        let mut window: std::collections::VecDeque<(std::time::Instant, (u64, u64, u64))> =
            Default::default();
        let mut last_agreement_check = std::time::Instant::now();
        let mut last_experiment_error = None;
        let mut last_policy_error = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = wake.notified() => {}
            }
            let Some(state) = weak.upgrade() else { break };
            let s = state.clone();
            let res = tokio::task::spawn_blocking(move || {
                s.refresh_tokens();
                (
                    s.refresh_experiment(),
                    s.refresh_active(),
                    s.refresh_policies(),
                )
            })
            .await;
            if let Ok((exp, active, policies)) = res {
                let policies = policies.err().map(|e| e.to_string());
                if let Some(e) = &policies
                    && last_policy_error.as_ref() != Some(e)
                {
                    tracing::warn!("keeping the decision policies loaded before: {e}");
                }
                last_policy_error = policies;
                if let Err(e) = active {
                    tracing::warn!("keeping version {}: {e}", state.active().manifest.version);
                }
                // Said once per distinct failure, not every second.
                let exp = exp.err().map(|e| e.to_string());
                if let Some(e) = &exp
                    && last_experiment_error.as_ref() != Some(e)
                {
                    tracing::warn!("experiment: {e}");
                }
                last_experiment_error = exp;
            }
            let now = state.metrics.totals();
            if state.alerts().is_some() {
                let t = std::time::Instant::now();
                window.push_back((t, now));
                while window
                    .front()
                    .is_some_and(|(at, _)| t.duration_since(*at) > rules.window)
                {
                    window.pop_front();
                }
                if let Some(alert) = window.front().and_then(|(_, first)| {
                    crate::ops::alert::error_rate_alert(
                        now.0 - first.0,
                        now.2 - first.2,
                        rules.window,
                        rules.error_rate_min_requests,
                        rules.error_rate_max_share,
                        state.active().manifest.version,
                    )
                }) {
                    raise(&state, alert);
                }
                if last_agreement_check.elapsed() >= rules.window {
                    last_agreement_check = std::time::Instant::now();
                    let s = state.clone();
                    let alert = tokio::task::spawn_blocking(move || {
                        let r = s.experiment()?;
                        let stats = s.experiment_stats(&r.experiment).ok()?;
                        crate::ops::alert::agreement_alert(
                            &r.experiment,
                            &stats,
                            rules.agreement_min_requests,
                            rules.agreement_floor,
                        )
                    })
                    .await;
                    if let Ok(Some(alert)) = alert {
                        raise(&state, alert);
                    }
                }
            }
            if last_summary.0.elapsed() >= SUMMARY_EVERY {
                if now.0 > last_summary.1.0 {
                    tracing::info!(
                        "{}",
                        summary(&state, last_summary.1, now, last_summary.0.elapsed())
                    );
                }
                last_summary = (std::time::Instant::now(), now);
            }
        }
    });
}

/// Listens on the shared store's channel on a thread of its own (a blocking client)
/// and wakes the watcher on every notification, until the state is dropped. A lost
/// connection is opened again every second; meanwhile the watcher polls.
fn listen_for_changes(
    state: std::sync::Weak<State>,
    registry: Registry,
    wake: Arc<tokio::sync::Notify>,
) {
    let spawned = std::thread::Builder::new()
        .name("store-listener".into())
        .spawn(move || {
            let mut said = false;
            while state.strong_count() > 0 {
                let Some(feed) = registry.changes() else {
                    return;
                };
                let mut client = match feed {
                    Ok(c) => {
                        said = false;
                        c
                    }
                    Err(e) => {
                        if !said {
                            tracing::warn!("not listening for changes (polling): {e}");
                            said = true;
                        }
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                };
                loop {
                    if state.strong_count() == 0 {
                        return;
                    }
                    match client.next(Duration::from_secs(1)) {
                        Ok(Some(what)) => {
                            tracing::debug!("store changed: {what}");
                            wake.notify_one();
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!("lost the store's notifications (polling): {e}");
                            break;
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("not listening for changes (polling): {e}");
    }
}

/// Sends `alert` through the state's sender (never waits) and logs it.
fn raise(state: &State, alert: crate::ops::alert::Alert) {
    if let Some(sender) = state.alerts() {
        let message = alert.message.clone();
        if sender.send(alert) == crate::ops::alert::Sent::Queued {
            tracing::warn!("alert: {message}");
        }
    }
}

/// How often the service logs a summary at info level (when it answered anything).
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// One line on the requests between two readings of the counters.
fn summary(state: &State, from: (u64, u64, u64), to: (u64, u64, u64), over: Duration) -> String {
    let n = to.0 - from.0;
    format!(
        "{n} requests in {:.0} s ({:.1}/s), {} client errors, {} server errors; version {}; {} predictions logged, {} dropped",
        over.as_secs_f64(),
        n as f64 / over.as_secs_f64().max(1e-9),
        to.1 - from.1,
        to.2 - from.2,
        state.active().manifest.version,
        state.log.appended(),
        state.log.dropped()
    )
}

/// Runs the service until SIGTERM or Ctrl-C: trains the default version first if the
/// registry has none, listens on `cfg.addr`, and on the signal stops accepting,
/// finishes the requests in flight and commits the prediction log.
pub fn run(cfg: ServeConfig, reporter: &dyn Reporter) -> Result<(), ServeError> {
    let registry =
        Registry::open_waiting(&cfg.store, cfg.wait_for_store.unwrap_or_default(), |e| {
            eprintln!("spamscope serve: waiting for the store: {e}");
        })
        .map_err(crate::Error::from)?;
    let loopback = cfg.addr.ip().is_loopback();
    if !loopback && !TokenStore::of(&registry).exists() {
        return Err(ServeError::OpenOnNetwork { addr: cfg.addr });
    }
    // A bad webhook URL is refused before anything else happens.
    let sender =
        crate::ops::alert::WebhookSender::from_registry(&registry, cfg.webhook.as_deref())?;
    if registry.active().map_err(crate::Error::from)?.is_none() {
        let data = crate::data::synth::default_dataset(Default::default());
        crate::ops::train::train_and_register(
            &registry,
            &data,
            None,
            &crate::ops::train::TrainConfig::default(),
            reporter,
        )?;
    }
    let state = State::new(registry, cfg.limits.clone(), cfg.retention, loopback)?;
    if let Some(sender) = sender {
        eprintln!("spamscope serve: alerts to {}", sender.url());
        let _ = state.set_alerts(sender);
    }
    // Sends the registry to MLflow beside the service (stopped when it returns).
    let _tracker = cfg.mlflow.clone().map(|t| {
        eprintln!(
            "spamscope serve: versions, comparisons and the production alias to MLflow at {} (experiment {})",
            t.url(),
            t.experiment
        );
        let tracker = crate::ops::mlflow::Tracker::start(state.registry.clone(), t);
        state.set_mlflow(tracker.counts());
        tracker
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.workers.max(1))
        .enable_all()
        .build()
        .map_err(|e| ServeError::Bind {
            addr: cfg.addr,
            message: e.to_string(),
        })?;
    // Asked before the runtime starts: a shared store is read with blocking calls,
    // which must not run on the runtime's threads.
    let protected = TokenStore::of(&state.registry).exists();
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(cfg.addr)
                .await
                .map_err(|e| ServeError::Bind {
                    addr: cfg.addr,
                    message: e.to_string(),
                })?;
        let addr = listener.local_addr().unwrap_or(cfg.addr);
        eprintln!(
            "spamscope serve: version {} on http://{addr} ({})",
            state.active().manifest.version,
            if protected {
                "API tokens required"
            } else {
                "no API tokens: loopback only"
            }
        );
        tracing::info!("listening on {addr}");
        spawn_watcher(&state, Duration::from_secs(1));
        axum::serve(listener, router(state.clone()))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| ServeError::Bind {
                addr,
                message: e.to_string(),
            })
    })?;
    // Everything answered: commit the prediction log before leaving.
    if let Err(e) = state.log.flush() {
        tracing::warn!("prediction log: {e}");
    }
    let elapsed = state.started.elapsed().unwrap_or_default();
    tracing::info!(
        "{}",
        summary(&state, (0, 0, 0), state.metrics.totals(), elapsed)
    );
    eprintln!("spamscope serve: stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
