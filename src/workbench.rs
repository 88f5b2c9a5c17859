//! The app's state and background work, independent of any GUI toolkit.
//!
//! The [`Workbench`] owns the loaded dataset, the active model version, feedback
//! statistics and the running jobs. Commands (`open_dataset`, `train_now`, ...) start jobs
//! on worker threads; jobs report progress and results over a channel and call the
//! `notify` callback (the app passes `Context::request_repaint`). The GUI calls
//! [`Workbench::poll`] once per frame to apply what arrived: nothing ever blocks the UI
//! thread on I/O, statistics or training.

use crate::compare::{Comparison, Saved};
use crate::data::Dataset;
use crate::eda::{self, Eda};
use crate::feedback::{FeedbackStats, FeedbackStore, NewFeedback};
use crate::forest::explain::{Explanation, Method};
use crate::model::Model;
use crate::online::{OnlineLearningConfig, auto_retrain_due};
use crate::progress::Reporter;
use crate::store::{Holdout, Manifest, Registry};
use crate::synth::{SynthParams, default_dataset};
use crate::train::{TrainConfig, train};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// Called by workers when something arrived (the app requests a repaint).
pub type Notify = Arc<dyn Fn() + Send + Sync>;

#[derive(Debug, Clone)]
pub struct WorkbenchConfig {
    pub registry_root: PathBuf,
    /// A CSV to load at start (the last one the user opened); the synthetic default
    /// dataset otherwise.
    pub dataset: Option<PathBuf>,
    /// Size and seed of the synthetic default dataset.
    pub synth: SynthParams,
    /// How first-start training and "Train now" train.
    pub train: TrainConfig,
}

/// The active model version with what the screens need of it.
#[derive(Clone)]
pub struct ActiveModel {
    pub manifest: Manifest,
    pub model: Arc<Model>,
    pub holdout: Option<Arc<Holdout>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Generate or load the start-up data, load or train the model.
    Setup,
    OpenDataset,
    Train,
    Statistics,
    Feedback,
    SaveThreshold,
    /// Retrain from feedback and gate the candidate.
    Retrain,
    /// Activate an earlier version.
    Rollback,
    /// Read or save the version list, settings or a holdout.
    Registry,
    /// Score a file of accounts for the review queue.
    Queue,
    /// Write the scored queue to CSV.
    Export,
    /// Train and evaluate the comparison's models.
    Compare,
    /// Register a compared model as a new version.
    Promote,
    /// Write a report folder.
    Report,
}

impl JobKind {
    pub fn label(self) -> &'static str {
        match self {
            JobKind::Retrain => "Retraining from feedback",
            JobKind::Rollback => "Rolling back",
            JobKind::Registry => "Reading the registry",
            JobKind::Queue => "Scoring accounts",
            JobKind::Export => "Exporting",
            JobKind::Compare => "Comparing models",
            JobKind::Promote => "Promoting a compared model",
            JobKind::Report => "Writing the report",
            JobKind::Setup => "Starting up",
            JobKind::OpenDataset => "Opening dataset",
            JobKind::Train => "Training",
            JobKind::Statistics => "Computing statistics",
            JobKind::Feedback => "Saving feedback",
            JobKind::SaveThreshold => "Saving threshold",
        }
    }
}

/// A running job as the status bar shows it.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: u64,
    pub kind: JobKind,
    pub stage: String,
    pub done: usize,
    pub total: usize,
    pub started: Instant,
    cancel: Arc<AtomicBool>,
}

impl Job {
    /// Progress in 0..=1 when known.
    pub fn fraction(&self) -> Option<f32> {
        (self.total > 1).then(|| self.done as f32 / self.total as f32)
    }
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// Something the user should read: an error, or the result of an action.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Info(String),
    Error(String),
}

enum Msg {
    Progress {
        id: u64,
        stage: String,
        done: usize,
        total: usize,
    },
    Finished(u64),
    Dataset(Arc<Dataset>),
    Model(ActiveModel),
    Statistics(Arc<Dataset>, Arc<Eda>),
    Explained(u64, Explanation),
    FeedbackStats(FeedbackStats),
    Manifest(Manifest),
    Notice(Notice),
    Versions(Vec<VersionRow>, Option<u32>),
    Online(OnlineLearningConfig),
    Holdout(u32, Arc<Holdout>),
    /// The store found an automatic retrain due.
    AutoRetrain(String),
    Queue(Arc<Queue>),
    /// A job failed: counted by kind and shown.
    Failed(JobKind, String),
    Drift(u64, Arc<Drift>),
    Agreement(Vec<crate::feedback::AgreementPoint>),
    /// A finished comparison (with its models) and the data it ran on.
    Compared(Arc<Comparison>, Arc<Dataset>, Arc<Saved>),
    /// The registry's latest saved comparison (table and curves, no models).
    SavedComparison(Arc<Saved>),
    /// A report folder was written.
    Report(PathBuf),
}

/// PSI of every feature between the active version's training data and the accounts
/// scored recently.
#[derive(Debug, Clone)]
pub struct Drift {
    pub version: u32,
    /// Accounts compared.
    pub rows: usize,
    pub psi: Vec<f64>,
}

/// A scored file of accounts, ranked for review.
#[derive(Debug, Clone)]
pub struct Queue {
    pub data: Arc<Dataset>,
    pub batch: crate::score::ScoredBatch,
    /// Row indices by decreasing probability.
    pub ranked: Vec<u32>,
}

impl Queue {
    pub fn new(data: Arc<Dataset>, batch: crate::score::ScoredBatch) -> Queue {
        let mut ranked: Vec<u32> = (0..batch.len() as u32).collect();
        ranked.sort_by(|&a, &b| {
            batch.probability[b as usize]
                .total_cmp(&batch.probability[a as usize])
                .then(a.cmp(&b))
        });
        Queue {
            data,
            batch,
            ranked,
        }
    }

    /// Ranked rows whose verdict and probability pass the filter.
    pub fn filtered(&self, verdict: Option<bool>, lo: f64, hi: f64) -> Vec<u32> {
        self.ranked
            .iter()
            .copied()
            .filter(|&i| {
                let p = self.batch.probability[i as usize];
                p >= lo && p <= hi && verdict.is_none_or(|v| self.batch.is_spammer(i as usize) == v)
            })
            .collect()
    }
}

/// One row of the version history.
#[derive(Debug, Clone)]
pub struct VersionRow {
    pub version: u32,
    pub manifest: Result<Manifest, String>,
}

/// Reports a job's progress over the channel.
struct ChannelReporter {
    id: u64,
    tx: Mutex<Sender<Msg>>,
    notify: Notify,
    cancel: Arc<AtomicBool>,
    last: Mutex<Option<Instant>>,
}

impl Reporter for ChannelReporter {
    fn stage(&self, stage: &str, done: usize, total: usize) {
        // Throttle to ~30 updates a second, but always pass stage changes and the end.
        if let Ok(mut last) = self.last.lock() {
            let now = Instant::now();
            let recent = last.is_some_and(|t| now.duration_since(t).as_millis() < 33);
            if recent && done != 0 && done != total {
                return;
            }
            *last = Some(now);
        }
        if let Ok(tx) = self.tx.lock() {
            let _ = tx.send(Msg::Progress {
                id: self.id,
                stage: stage.to_string(),
                done,
                total,
            });
        }
        (self.notify)();
    }
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Context handed to a job's closure.
struct JobCtx {
    kind: JobKind,
    reporter: ChannelReporter,
    tx: Sender<Msg>,
    notify: Notify,
}

impl JobCtx {
    fn send(&self, m: Msg) {
        let _ = self.tx.send(m);
        (self.notify)();
    }
    fn error(&self, text: String) {
        tracing::warn!(job = self.kind.label(), "{text}");
        self.send(Msg::Failed(self.kind, text));
    }
    fn info(&self, text: String) {
        tracing::info!(job = self.kind.label(), "{text}");
        self.send(Msg::Notice(Notice::Info(text)));
    }
}

/// A pending explanation request: key, model, raw inputs.
type ExplainRequest = (u64, Arc<Model>, Vec<f64>);

/// Latest-wins TreeSHAP worker: only the newest request is computed.
struct Explainer {
    slot: Arc<(Mutex<Option<ExplainRequest>>, Condvar)>,
}

impl Explainer {
    fn new(tx: Sender<Msg>, notify: Notify) -> Explainer {
        let slot: Arc<(Mutex<Option<ExplainRequest>>, Condvar)> =
            Arc::new((Mutex::new(None), Condvar::new()));
        let worker = slot.clone();
        std::thread::Builder::new()
            .name("explainer".into())
            .spawn(move || {
                loop {
                    let (key, model, x) = {
                        let (lock, cv) = &*worker;
                        let Ok(mut guard) = lock.lock() else { return };
                        loop {
                            if let Some(req) = guard.take() {
                                break req;
                            }
                            match cv.wait(guard) {
                                Ok(g) => guard = g,
                                Err(_) => return,
                            }
                        }
                    };
                    let e = model.explain_one(&x, Method::TreeShap);
                    if tx.send(Msg::Explained(key, e)).is_err() {
                        return;
                    }
                    notify();
                }
            })
            .expect("spawning the explainer thread");
        Explainer { slot }
    }

    fn request(&self, key: u64, model: Arc<Model>, x: Vec<f64>) {
        let (lock, cv) = &*self.slot;
        if let Ok(mut g) = lock.lock() {
            *g = Some((key, model, x));
            cv.notify_one();
        }
    }
}

pub struct Workbench {
    pub config: WorkbenchConfig,
    pub registry: Option<Registry>,
    pub data: Option<Arc<Dataset>>,
    pub eda: Option<Arc<Eda>>,
    pub active: Option<ActiveModel>,
    pub feedback: Option<FeedbackStats>,
    pub jobs: Vec<Job>,
    /// Notices not yet shown; the GUI takes them.
    pub notices: Vec<Notice>,
    /// The newest explanation and the key (inputs + version) it belongs to.
    pub explanation: Option<(u64, Explanation)>,
    explain_requested: Option<u64>,
    explainer: Explainer,
    /// Every version in the registry and the active one (refreshed after changes).
    pub versions: Vec<VersionRow>,
    pub active_version: Option<u32>,
    /// Online-learning settings of the registry.
    pub online: Option<OnlineLearningConfig>,
    /// Holdout predictions of versions asked for by the comparison view.
    pub holdouts: std::collections::HashMap<u32, Arc<Holdout>>,
    holdouts_requested: std::collections::HashSet<u32>,
    /// The review queue: the last scored file.
    pub queue: Option<Arc<Queue>>,
    /// Latency, errors, recently scored accounts.
    pub monitor: crate::monitor::Monitor,
    pub drift: Option<Arc<Drift>>,
    drift_requested: Option<u64>,
    pub agreement: Vec<crate::feedback::AgreementPoint>,
    /// The last comparison run in this session, with its trained models (promotable),
    /// and the data it ran on.
    pub comparison: Option<(Arc<Comparison>, Arc<Dataset>)>,
    /// The latest comparison's table and curves (this session's, or the registry's
    /// saved one after a restart).
    pub saved_comparison: Option<Arc<Saved>>,
    /// The last report folder written.
    pub last_report: Option<PathBuf>,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    notify: Notify,
    next_id: u64,
}

/// A key identifying an explanation request: the inputs and the model version.
pub fn explain_key(x: &[f64], version: u32) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    version.hash(&mut h);
    for v in x {
        v.to_bits().hash(&mut h);
    }
    h.finish()
}

impl Workbench {
    pub fn new(config: WorkbenchConfig, notify: Notify) -> Workbench {
        let (tx, rx) = channel();
        let explainer = Explainer::new(tx.clone(), notify.clone());
        Workbench {
            config,
            registry: None,
            data: None,
            eda: None,
            active: None,
            feedback: None,
            jobs: Vec::new(),
            notices: Vec::new(),
            explanation: None,
            explain_requested: None,
            explainer,
            versions: Vec::new(),
            active_version: None,
            online: None,
            holdouts: Default::default(),
            holdouts_requested: Default::default(),
            queue: None,
            monitor: Default::default(),
            drift: None,
            drift_requested: None,
            agreement: Vec::new(),
            comparison: None,
            saved_comparison: None,
            last_report: None,
            tx,
            rx,
            notify,
            next_id: 1,
        }
    }

    fn spawn(&mut self, kind: JobKind, work: impl FnOnce(&JobCtx) + Send + 'static) {
        let id = self.next_id;
        self.next_id += 1;
        let cancel = Arc::new(AtomicBool::new(false));
        self.jobs.push(Job {
            id,
            kind,
            stage: "starting".into(),
            done: 0,
            total: 0,
            started: Instant::now(),
            cancel: cancel.clone(),
        });
        tracing::info!(job = kind.label(), id, "job started");
        let ctx = JobCtx {
            kind,
            reporter: ChannelReporter {
                id,
                tx: Mutex::new(self.tx.clone()),
                notify: self.notify.clone(),
                cancel,
                last: Mutex::new(None),
            },
            tx: self.tx.clone(),
            notify: self.notify.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("job-{id}"))
            .spawn(move || {
                // A bug in a job must not take the app down: report it instead.
                let started = Instant::now();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&ctx)));
                tracing::info!(
                    job = kind.label(),
                    id,
                    seconds = started.elapsed().as_secs_f64(),
                    "job finished"
                );
                if result.is_err() {
                    ctx.error(format!(
                        "{} failed unexpectedly (internal error)",
                        kind.label()
                    ));
                }
                ctx.send(Msg::Finished(id));
            });
        if let Err(e) = spawned {
            self.jobs.retain(|j| j.id != id);
            self.notices
                .push(Notice::Error(format!("cannot start a worker thread: {e}")));
        }
    }

    pub fn is_running(&self, kind: JobKind) -> bool {
        self.jobs.iter().any(|j| j.kind == kind)
    }

    /// A training of any kind (start-up, Train now, retrain) is running; only one may
    /// run at a time.
    pub fn is_training(&self) -> bool {
        [
            JobKind::Setup,
            JobKind::Train,
            JobKind::Retrain,
            JobKind::Compare,
        ]
        .iter()
        .any(|&k| self.is_running(k))
    }

    /// No job is running.
    pub fn is_idle(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Opens the registry, loads the start-up data and the active model (training the
    /// reference forest first when the registry is empty).
    pub fn start(&mut self) {
        let registry = match Registry::open(&self.config.registry_root) {
            Ok(r) => r,
            Err(e) => {
                self.notices.push(Notice::Error(format!(
                    "cannot open the model registry: {e}"
                )));
                return;
            }
        };
        self.registry = Some(registry.clone());
        let config = self.config.clone();
        self.spawn(JobKind::Setup, move |ctx| {
            let data = match &config.dataset {
                Some(p) if p.exists() => {
                    ctx.reporter.stage("loading dataset", 0, 1);
                    match Dataset::load_csv(p) {
                        Ok(d) => Some(d),
                        Err(e) => {
                            ctx.error(format!(
                                "could not reopen {}: {e}; using the synthetic default data",
                                p.display()
                            ));
                            None
                        }
                    }
                }
                _ => None,
            };
            let data = Arc::new(data.unwrap_or_else(|| {
                ctx.reporter.stage("generating", 0, 1);
                default_dataset(config.synth)
            }));
            ctx.send(Msg::Dataset(data.clone()));
            match registry.active() {
                Ok(Some(_)) => {
                    ctx.reporter.stage("loading model", 0, 1);
                    match load_active(&registry) {
                        Ok(a) => ctx.send(Msg::Model(a)),
                        Err(e) => ctx.error(format!("the active model cannot be used: {e}")),
                    }
                }
                Ok(None) => train_and_register(ctx, &registry, &data, &config.train),
                Err(e) => ctx.error(e.to_string()),
            }
            send_feedback_stats(ctx, &registry);
            send_versions(ctx, &registry);
            match crate::compare::load_latest(registry.root()) {
                Ok(Some(s)) => ctx.send(Msg::SavedComparison(Arc::new(s))),
                Ok(None) => {}
                Err(e) => ctx.error(format!("the saved model comparison cannot be read: {e}")),
            }
            match OnlineLearningConfig::load(&registry) {
                Ok(c) => ctx.send(Msg::Online(c)),
                Err(e) => ctx.error(format!("{e}; using the default online-learning settings")),
            }
        });
        self.start_watcher();
    }

    /// The store's own check for automatic retraining: a thread that looks every
    /// `WATCH_SECONDS` whether enough new feedback arrived and enough time passed.
    fn start_watcher(&self) {
        const WATCH_SECONDS: u64 = 30;
        let Some(registry) = self.registry.clone() else {
            return;
        };
        let tx = self.tx.clone();
        let notify = self.notify.clone();
        let _ = std::thread::Builder::new()
            .name("retrain-watcher".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(WATCH_SECONDS));
                    if let Some(reason) = due_reason(&registry) {
                        if tx.send(Msg::AutoRetrain(reason)).is_err() {
                            return;
                        }
                        notify();
                    }
                }
            });
    }

    /// Retrains from feedback now (one retrain at a time); the candidate becomes
    /// active only if it passes the gate.
    pub fn retrain_now(&mut self) {
        let Some(registry) = self.registry.clone() else {
            return;
        };
        if self.is_training() {
            self.notices.push(Notice::Error(
                "a training run is already in progress".into(),
            ));
            return;
        }
        let cfg = self.online.clone().unwrap_or_default();
        self.spawn(JobKind::Retrain, move |ctx| {
            match crate::online::retrain(&registry, &cfg, &ctx.reporter) {
                Ok(o) => {
                    if o.promoted {
                        match load_active(&registry) {
                            Ok(a) => ctx.send(Msg::Model(a)),
                            Err(e) => ctx.error(format!("the new version cannot be loaded: {e}")),
                        }
                        ctx.info(format!("v{} {}", o.candidate.version, o.reason));
                    } else {
                        ctx.error(format!(
                            "v{} was not activated: {}",
                            o.candidate.version, o.reason
                        ));
                    }
                }
                Err(crate::Error::Forest(crate::forest::ForestError::Cancelled)) => {
                    ctx.info("retraining cancelled; the active version is unchanged".into())
                }
                Err(e) => ctx.error(format!("retraining failed: {e}")),
            }
            send_versions(ctx, &registry);
            send_feedback_stats(ctx, &registry);
        });
    }

    /// Makes version `v` active.
    pub fn rollback(&mut self, v: u32) {
        let Some(registry) = self.registry.clone() else {
            return;
        };
        self.spawn(JobKind::Rollback, move |ctx| {
            match registry
                .rollback(v)
                .map_err(|e| e.to_string())
                .and_then(|_| load_active(&registry))
            {
                Ok(a) => {
                    ctx.send(Msg::Model(a));
                    ctx.info(format!("version {v} is active"));
                }
                Err(e) => ctx.error(format!("could not activate version {v}: {e}")),
            }
            send_versions(ctx, &registry);
        });
    }

    /// Validates and saves online-learning settings.
    pub fn save_online(&mut self, cfg: OnlineLearningConfig) {
        let Some(registry) = self.registry.clone() else {
            return;
        };
        self.spawn(JobKind::Registry, move |ctx| match cfg.save(&registry) {
            Ok(()) => {
                ctx.send(Msg::Online(cfg));
                ctx.info("online-learning settings saved".into());
            }
            Err(e) => ctx.error(format!("settings not saved: {e}")),
        });
    }

    /// Scores a file of accounts (or the loaded data when `path` is None) with the active
    /// version for the review queue: probabilities and the top three contributions
    /// (path attribution) of every account.
    pub fn score_queue(&mut self, path: Option<PathBuf>) {
        let Some(active) = self.active.clone() else {
            self.notices
                .push(Notice::Error("no active model to score with".into()));
            return;
        };
        let loaded = self.data.clone();
        self.spawn(JobKind::Queue, move |ctx| {
            let data = match path {
                Some(p) => {
                    ctx.reporter.stage("reading", 0, 1);
                    match Dataset::load_csv(&p) {
                        Ok(d) => Arc::new(d),
                        Err(e) => {
                            return ctx.error(format!("could not open the accounts file: {e}"));
                        }
                    }
                }
                None => match loaded {
                    Some(d) => d,
                    None => return ctx.error("no data loaded".into()),
                },
            };
            match crate::score::score_batch(
                &data,
                &active.model,
                active.manifest.version,
                active.manifest.threshold,
                3,
                Method::PathAttribution,
                &ctx.reporter,
            ) {
                Ok(b) => {
                    ctx.info(format!(
                        "scored {} accounts in {:.1} s ({:.0} accounts/s) with v{}",
                        b.len(),
                        b.seconds,
                        b.rows_per_second(),
                        b.version
                    ));
                    ctx.send(Msg::Queue(Arc::new(Queue::new(data, b))));
                }
                Err(crate::Error::Forest(crate::forest::ForestError::Cancelled)) => {
                    ctx.info("scoring cancelled".into())
                }
                Err(e) => ctx.error(format!("scoring failed: {e}")),
            }
        });
    }

    /// Stores moderators' verdict on queue rows as feedback, in one transaction.
    pub fn queue_feedback(&mut self, rows: Vec<usize>, true_label: u8) {
        let (Some(registry), Some(q)) = (self.registry.clone(), self.queue.clone()) else {
            return;
        };
        if rows.is_empty() {
            return;
        }
        self.spawn(JobKind::Feedback, move |ctx| {
            let records: Vec<NewFeedback> = rows
                .iter()
                .map(|&i| NewFeedback {
                    user_id: Some(q.data.user_ids[i]),
                    features: q.data.row(i),
                    true_label,
                    probability: Some(q.batch.probability[i]),
                    model_version: Some(q.batch.version),
                    predicted: Some(u8::from(q.batch.is_spammer(i))),
                    notes: "bulk review from the queue".into(),
                    origin: crate::feedback::Origin::Queue,
                })
                .collect();
            store_feedback(ctx, &registry, &records, |ids| {
                format!(
                    "{} account(s) recorded as {}",
                    ids.len(),
                    if true_label == 1 {
                        "spammers"
                    } else {
                        "legitimate"
                    }
                )
            });
        });
    }

    /// Writes the queue rows `rows` (in that order) to a CSV.
    pub fn export_queue(&mut self, path: PathBuf, rows: Vec<usize>) {
        let Some(q) = self.queue.clone() else { return };
        self.spawn(
            JobKind::Export,
            move |ctx| match crate::score::write_batch_csv(&q.data, &q.batch, Some(&rows), &path) {
                Ok(()) => ctx.info(format!(
                    "wrote {} ({} accounts)",
                    path.display(),
                    rows.len()
                )),
                Err(e) => ctx.error(format!("export failed: {e}")),
            },
        );
    }

    /// Scores one account for the gauge and records the latency and inputs.
    pub fn score_one(&mut self, x: &[f64]) -> Option<f64> {
        let model = self.active.as_ref()?.model.clone();
        let start = Instant::now();
        let p = model.predict_one(x);
        self.monitor
            .record_scoring(start.elapsed().as_secs_f64() * 1e6, x);
        Some(p)
    }

    /// Computes drift (PSI per feature) of the accounts scored recently (the review
    /// queue's file and the accounts scored one by one) against the active version's
    /// training data, in the background; cheap to call every frame.
    pub fn request_drift(&mut self) {
        let Some(active) = &self.active else { return };
        let Some(profiles) = active.manifest.profiles.clone() else {
            return;
        };
        let queue = self.queue.clone();
        let singles = self.monitor.recent_len();
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            active.manifest.version.hash(&mut h);
            queue.as_ref().map(|q| Arc::as_ptr(q) as usize).hash(&mut h);
            singles.hash(&mut h);
            h.finish()
        };
        if self.drift_requested == Some(key) || (queue.is_none() && singles == 0) {
            return;
        }
        self.drift_requested = Some(key);
        let recent = self.monitor.recent_columns();
        let version = active.manifest.version;
        self.spawn(JobKind::Statistics, move |ctx| {
            ctx.reporter.stage("drift", 0, 1);
            let mut cols = recent;
            if let Some(q) = &queue {
                for (c, src) in cols.iter_mut().zip(&q.data.columns) {
                    c.extend_from_slice(src);
                }
            }
            let rows = cols.first().map_or(0, Vec::len);
            let psi = crate::monitor::drift(&profiles, &cols);
            ctx.send(Msg::Drift(key, Arc::new(Drift { version, rows, psi })));
        });
    }

    /// Loads the holdout predictions of version `v` (for the comparison view).
    pub fn request_holdout(&mut self, v: u32) {
        if self.holdouts.contains_key(&v) || !self.holdouts_requested.insert(v) {
            return;
        }
        if let Some(a) = self.active.as_ref().filter(|a| a.manifest.version == v)
            && let Some(h) = &a.holdout
        {
            self.holdouts.insert(v, h.clone());
            return;
        }
        let Some(registry) = self.registry.clone() else {
            return;
        };
        self.spawn(JobKind::Registry, move |ctx| {
            match registry.load_holdout(v) {
                Ok(h) => ctx.send(Msg::Holdout(v, Arc::new(h))),
                Err(e) => ctx.error(format!("holdout of version {v}: {e}")),
            }
        });
    }

    /// Loads a CSV in the background; on failure the current data stays.
    pub fn open_dataset(&mut self, path: PathBuf) {
        self.spawn(JobKind::OpenDataset, move |ctx| {
            ctx.reporter.stage("reading", 0, 1);
            match Dataset::load_csv(&path) {
                Ok(d) => {
                    let warnings = d.warnings.len();
                    ctx.send(Msg::Dataset(Arc::new(d)));
                    ctx.info(format!(
                        "opened {}{}",
                        path.display(),
                        if warnings > 0 {
                            format!(" ({warnings} warning(s), see the data banner)")
                        } else {
                            String::new()
                        }
                    ));
                }
                Err(e) => ctx.error(format!(
                    "could not open the dataset, keeping the current data: {e}"
                )),
            }
        });
    }

    /// Switches to the synthetic default dataset (generated in the background).
    pub fn use_synthetic(&mut self) {
        let params = self.config.synth;
        self.spawn(JobKind::OpenDataset, move |ctx| {
            ctx.reporter.stage("generating", 0, 1);
            ctx.send(Msg::Dataset(Arc::new(default_dataset(params))));
        });
    }

    /// Trains a new version on the loaded data and makes it active.
    pub fn train_now(&mut self) {
        let (Some(registry), Some(data)) = (self.registry.clone(), self.data.clone()) else {
            self.notices
                .push(Notice::Error("no data loaded to train on".into()));
            return;
        };
        if self.is_training() {
            self.notices.push(Notice::Error(
                "a training run is already in progress".into(),
            ));
            return;
        }
        let cfg = self.config.train.clone();
        self.spawn(JobKind::Train, move |ctx| {
            train_and_register(ctx, &registry, &data, &cfg);
            send_versions(ctx, &registry);
        });
    }

    /// Trains and evaluates the named comparison candidates (all when `names` is empty)
    /// on one stratified split of the loaded data; the models are kept for promotion.
    pub fn run_comparison(&mut self, names: Vec<String>) {
        let (Some(registry), Some(data)) = (self.registry.clone(), self.data.clone()) else {
            self.notices
                .push(Notice::Error("no data loaded to compare models on".into()));
            return;
        };
        if self.is_training() {
            self.notices.push(Notice::Error(
                "a training run is already in progress".into(),
            ));
            return;
        }
        let seed = self.config.train.params.seed;
        let test_fraction = self.config.train.test_fraction;
        self.spawn(JobKind::Compare, move |ctx| {
            let mut candidates = crate::recipe::default_candidates(seed);
            if !names.is_empty() {
                candidates.retain(|c| names.contains(&c.name));
            }
            match crate::compare::compare(
                &data,
                &candidates,
                test_fraction,
                seed,
                true,
                &ctx.reporter,
            ) {
                Ok(c) => {
                    let saved = c.to_saved();
                    if let Err(e) = crate::compare::save(registry.root(), &saved) {
                        ctx.error(format!("the comparison was not saved: {e}"));
                    }
                    let best = saved.best_auc.clone().unwrap_or_default();
                    let failed = saved.failed.len();
                    ctx.send(Msg::Compared(Arc::new(c), data, Arc::new(saved)));
                    ctx.info(format!(
                        "comparison finished: {} models, best ROC-AUC {best}{}",
                        candidates.len() - failed,
                        if failed > 0 {
                            format!(", {failed} failed")
                        } else {
                            String::new()
                        }
                    ));
                }
                Err(crate::Error::Forest(crate::forest::ForestError::Cancelled)) => {
                    ctx.info("comparison cancelled".into())
                }
                Err(e) => ctx.error(format!("comparison failed: {e}")),
            }
        });
    }

    /// Registers the compared model `name` as a new version and activates it.
    pub fn promote(&mut self, name: &str) {
        let (Some(registry), Some((cmp, data))) = (self.registry.clone(), self.comparison.clone())
        else {
            self.notices.push(Notice::Error(
                "run the comparison in this session first: its models are kept in memory for promotion".into(),
            ));
            return;
        };
        if self.is_training() || self.is_running(JobKind::Promote) {
            self.notices.push(Notice::Error(
                "a training run is already in progress".into(),
            ));
            return;
        }
        let name = name.to_string();
        let test_fraction = self.config.train.test_fraction;
        self.spawn(JobKind::Promote, move |ctx| {
            let Some(o) = cmp.outcomes.iter().find(|o| o.name == name) else {
                return ctx.error(format!("no compared model named {name}"));
            };
            let Some(t) = o.result.as_ref().ok().and_then(|s| s.trained.as_ref()) else {
                return ctx.error(format!("{name} did not train, so it cannot be promoted"));
            };
            let cfg = TrainConfig {
                recipe: Some(t.recipe.clone()),
                test_fraction,
                ..TrainConfig::default()
            };
            ctx.reporter.stage("saving", 0, 1);
            match t.register(&registry, &data, &cfg, true) {
                Ok(manifest) => {
                    let v = manifest.version;
                    ctx.send(Msg::Model(ActiveModel {
                        manifest,
                        model: Arc::new(t.model.clone()),
                        holdout: Some(Arc::new(t.holdout.clone())),
                    }));
                    ctx.info(format!("{name} registered as version {v} and activated"));
                }
                Err(e) => ctx.error(format!("{name} was not registered: {e}")),
            }
            send_versions(ctx, &registry);
        });
    }

    /// Writes a report folder for the active version (to `dir`, or to
    /// `<registry>/reports/v<N>-<time>` when None): model card, charts, scored queue.
    pub fn export_report(&mut self, dir: Option<PathBuf>) {
        let (Some(registry), Some(active), Some(data)) = (
            self.registry.clone(),
            self.active.clone(),
            self.data.clone(),
        ) else {
            self.notices.push(Notice::Error(
                "a report needs an active model and loaded data".into(),
            ));
            return;
        };
        let eda = self.eda.clone();
        let saved = self.saved_comparison.clone();
        let feedback = self.feedback.clone();
        self.spawn(JobKind::Report, move |ctx| {
            let m = &active.manifest;
            let dir = dir.unwrap_or_else(|| {
                let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                    .to_string()
                    .replace(':', "-");
                registry
                    .root()
                    .join("reports")
                    .join(format!("v{}-{stamp}", m.version))
            });
            let holdout = match &active.holdout {
                Some(h) => h.clone(),
                None => match registry.load_holdout(m.version) {
                    Ok(h) => Arc::new(h),
                    Err(e) => return ctx.error(format!("report not written: {e}")),
                },
            };
            let eda = match eda {
                Some(e) => e,
                None => match crate::eda::compute(&data, &ctx.reporter) {
                    Ok(e) => Arc::new(e),
                    Err(e) => return ctx.error(format!("report not written: {e}")),
                },
            };
            let versions = registry
                .list()
                .map(|l| l.into_iter().filter_map(|e| e.manifest.ok()).collect())
                .unwrap_or_default();
            let input = crate::report::ReportInput {
                manifest: m,
                model: &active.model,
                holdout: &holdout,
                data: &data,
                eda: &eda,
                comparison: saved.as_deref(),
                feedback,
                versions,
            };
            match crate::report::write_report(&dir, &input, &ctx.reporter) {
                Ok(w) => {
                    ctx.info(format!("report written to {}", w.dir.display()));
                    ctx.send(Msg::Report(w.dir));
                }
                Err(e) => ctx.error(format!("report not written: {e}")),
            }
        });
    }

    /// Stops running jobs that can stop (training, statistics).
    pub fn cancel(&self, kind: JobKind) {
        for j in self.jobs.iter().filter(|j| j.kind == kind) {
            j.cancel();
        }
    }

    fn compute_statistics(&mut self, data: Arc<Dataset>) {
        self.spawn(JobKind::Statistics, move |ctx| {
            match eda::compute(&data, &ctx.reporter) {
                Ok(e) => ctx.send(Msg::Statistics(data, Arc::new(e))),
                Err(e) => ctx.error(format!("statistics failed: {e}")),
            }
        });
    }

    /// Asks for the TreeSHAP explanation of `x` (raw inputs) under the active model;
    /// the newest request wins. Cheap to call every frame.
    pub fn request_explanation(&mut self, x: &[f64]) {
        let Some(active) = &self.active else { return };
        let key = explain_key(x, active.manifest.version);
        if self.explain_requested == Some(key) {
            return;
        }
        self.explain_requested = Some(key);
        self.explainer
            .request(key, active.model.clone(), x.to_vec());
    }

    /// The explanation of `x` if it has arrived.
    pub fn explanation_for(&self, x: &[f64]) -> Option<&Explanation> {
        let active = self.active.as_ref()?;
        let key = explain_key(x, active.manifest.version);
        self.explanation
            .as_ref()
            .filter(|(k, _)| *k == key)
            .map(|(_, e)| e)
    }

    /// Stores one feedback record (one transaction) in the background.
    pub fn submit_feedback(&mut self, record: NewFeedback) {
        let Some(registry) = self.registry.clone() else {
            return;
        };
        self.spawn(JobKind::Feedback, move |ctx| {
            store_feedback(ctx, &registry, &[record], |ids| {
                format!("feedback saved (record #{})", ids[0])
            });
        });
    }

    /// Saves `threshold` as the active version's decision threshold.
    pub fn save_threshold(&mut self, threshold: f64) {
        let (Some(registry), Some(active)) = (self.registry.clone(), self.active.as_ref()) else {
            return;
        };
        let mut m = active.manifest.clone();
        m.threshold = threshold;
        self.spawn(JobKind::SaveThreshold, move |ctx| {
            let result = registry.update_manifest(&m);
            send_versions(ctx, &registry);
            match result {
                Ok(()) => {
                    ctx.info(format!(
                        "threshold {threshold:.2} saved for version {}",
                        m.version
                    ));
                    ctx.send(Msg::Manifest(m));
                }
                Err(e) => ctx.error(format!("the threshold was not saved: {e}")),
            }
        });
    }

    /// Applies everything the workers sent; returns whether anything changed.
    pub fn poll(&mut self) -> bool {
        let mut changed = false;
        while let Ok(msg) = self.rx.try_recv() {
            changed = true;
            match msg {
                Msg::Progress {
                    id,
                    stage,
                    done,
                    total,
                } => {
                    if let Some(j) = self.jobs.iter_mut().find(|j| j.id == id) {
                        j.stage = stage;
                        j.done = done;
                        j.total = total;
                    }
                }
                Msg::Finished(id) => self.jobs.retain(|j| j.id != id),
                Msg::Dataset(d) => {
                    self.eda = None;
                    self.data = Some(d.clone());
                    self.compute_statistics(d);
                }
                Msg::Model(a) => {
                    self.explanation = None;
                    self.explain_requested = None;
                    self.active = Some(a);
                }
                Msg::Statistics(d, e) => {
                    // Only if it belongs to the current data.
                    if self.data.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, &d)) {
                        self.eda = Some(e);
                    }
                }
                Msg::Explained(key, e) => self.explanation = Some((key, e)),
                Msg::FeedbackStats(s) => self.feedback = Some(s),
                Msg::Manifest(m) => {
                    if let Some(a) = self
                        .active
                        .as_mut()
                        .filter(|a| a.manifest.version == m.version)
                    {
                        a.manifest = m;
                    }
                }
                Msg::Notice(n) => self.notices.push(n),
                Msg::Versions(v, active) => {
                    self.versions = v;
                    self.active_version = active;
                }
                Msg::Online(c) => self.online = Some(c),
                Msg::Holdout(v, h) => {
                    self.holdouts.insert(v, h);
                }
                Msg::Queue(q) => self.queue = Some(q),
                Msg::Failed(kind, text) => {
                    self.monitor.record_error(kind.label());
                    self.notices.push(Notice::Error(text));
                }
                Msg::Drift(key, d) => {
                    if self.drift_requested == Some(key) {
                        self.drift = Some(d);
                    }
                }
                Msg::Agreement(a) => self.agreement = a,
                Msg::Compared(c, d, saved) => {
                    self.comparison = Some((c, d));
                    self.saved_comparison = Some(saved);
                }
                Msg::SavedComparison(s) => {
                    if self.saved_comparison.is_none() {
                        self.saved_comparison = Some(s);
                    }
                }
                Msg::Report(p) => self.last_report = Some(p),
                Msg::AutoRetrain(reason) => {
                    if !self.is_training() {
                        self.notices
                            .push(Notice::Info(format!("automatic retrain started: {reason}")));
                        self.retrain_now();
                    }
                }
            }
        }
        changed
    }
}

fn load_active(registry: &Registry) -> Result<ActiveModel, String> {
    let (manifest, model) = registry.load_active().map_err(|e| e.to_string())?;
    let holdout = registry.load_holdout(manifest.version).ok().map(Arc::new);
    Ok(ActiveModel {
        manifest,
        model: Arc::new(model),
        holdout,
    })
}

fn train_and_register(ctx: &JobCtx, registry: &Registry, data: &Dataset, cfg: &TrainConfig) {
    match train(data, None, cfg, &ctx.reporter) {
        Ok(t) => {
            ctx.reporter.stage("saving", 0, 1);
            match t.register(registry, data, cfg, true) {
                Ok(manifest) => {
                    let v = manifest.version;
                    ctx.send(Msg::Model(ActiveModel {
                        manifest,
                        model: Arc::new(t.model),
                        holdout: Some(Arc::new(t.holdout)),
                    }));
                    ctx.info(format!(
                        "version {v} trained in {:.1} s and activated",
                        t.train_seconds
                    ));
                }
                Err(e) => ctx.error(format!("the trained model was not saved: {e}")),
            }
        }
        Err(crate::Error::Forest(crate::forest::ForestError::Cancelled)) => {
            ctx.info("training cancelled; the active version is unchanged".into())
        }
        Err(e) => ctx.error(format!("training failed: {e}")),
    }
}

/// Stores feedback records in one transaction, refreshes the statistics and lets the
/// store check whether an automatic retrain is now due.
fn store_feedback(
    ctx: &JobCtx,
    registry: &Registry,
    records: &[NewFeedback],
    saved: impl FnOnce(&[i64]) -> String,
) {
    match FeedbackStore::open_in(registry.root()).and_then(|mut s| s.add_batch(records)) {
        Ok(ids) => ctx.info(saved(&ids)),
        Err(e) => ctx.error(format!("feedback was not saved: {e}")),
    }
    send_feedback_stats(ctx, registry);
    if let Some(reason) = due_reason(registry) {
        ctx.send(Msg::AutoRetrain(reason));
    }
}

fn send_versions(ctx: &JobCtx, registry: &Registry) {
    match (registry.list(), registry.active()) {
        (Ok(list), Ok(active)) => ctx.send(Msg::Versions(
            list.into_iter()
                .map(|e| VersionRow {
                    version: e.version,
                    manifest: e.manifest.map_err(|e| e.to_string()),
                })
                .collect(),
            active,
        )),
        (Err(e), _) | (_, Err(e)) => ctx.error(format!("cannot list versions: {e}")),
    }
}

/// Why an automatic retrain is due now, if it is.
fn due_reason(registry: &Registry) -> Option<String> {
    let cfg = OnlineLearningConfig::load(registry).ok()?;
    match auto_retrain_due(registry, &cfg) {
        Ok(true) => Some(format!(
            "at least {} new feedback records and {} s since the last version",
            cfg.min_samples, cfg.retrain_interval
        )),
        _ => None,
    }
}

fn send_feedback_stats(ctx: &JobCtx, registry: &Registry) {
    let store = FeedbackStore::open_in(registry.root());
    match store.as_ref().map_err(|e| e.to_string()).and_then(|s| {
        Ok((
            s.stats().map_err(|e| e.to_string())?,
            s.agreement_over_time().map_err(|e| e.to_string())?,
        ))
    }) {
        Ok((stats, over_time)) => {
            ctx.send(Msg::FeedbackStats(stats));
            ctx.send(Msg::Agreement(over_time));
        }
        Err(e) => ctx.error(format!("feedback statistics unavailable: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::NewFeedback;
    use crate::forest::ForestParams;
    use std::time::Duration;

    pub(crate) fn config(dir: &std::path::Path) -> WorkbenchConfig {
        WorkbenchConfig {
            registry_root: dir.to_path_buf(),
            dataset: None,
            synth: SynthParams {
                rows: 3000,
                seed: 5,
            },
            train: TrainConfig {
                params: ForestParams {
                    n_trees: 10,
                    max_depth: Some(8),
                    ..Default::default()
                },
                ..Default::default()
            },
        }
    }

    fn settle(w: &mut Workbench) {
        let start = Instant::now();
        loop {
            w.poll();
            if w.is_idle() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "jobs did not finish"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn first_start_trains_then_restart_loads() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Workbench::new(config(dir.path()), Arc::new(|| {}));
        w.start();
        assert!(w.is_running(JobKind::Setup));
        settle(&mut w);
        let a = w.active.as_ref().expect("a model after first start");
        assert_eq!(a.manifest.version, 1);
        assert!(a.holdout.is_some());
        assert!(w.data.as_ref().unwrap().source.is_synthetic());
        assert!(w.eda.is_some(), "statistics computed for the loaded data");
        assert_eq!(w.feedback.as_ref().unwrap().total, 0);

        let mut w2 = Workbench::new(config(dir.path()), Arc::new(|| {}));
        w2.start();
        settle(&mut w2);
        assert_eq!(
            w2.active.as_ref().unwrap().manifest.version,
            1,
            "loaded, not retrained"
        );
    }

    fn feedback_for(w: &Workbench, n: usize) -> Vec<NewFeedback> {
        let d = w.data.clone().unwrap();
        (0..n)
            .map(|i| NewFeedback {
                user_id: Some(d.user_ids[i]),
                features: d.row(i),
                true_label: d.labels.as_ref().unwrap()[i],
                probability: None,
                model_version: None,
                predicted: None,
                notes: String::new(),
                origin: crate::feedback::Origin::Import,
            })
            .collect()
    }

    #[test]
    fn the_store_starts_an_automatic_retrain_when_due() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Workbench::new(config(dir.path()), Arc::new(|| {}));
        w.start();
        settle(&mut w);
        let reg = w.registry.clone().unwrap();
        let cfg = OnlineLearningConfig {
            min_samples: 20,
            retrain_interval: 0,
            max_auc_drop: 0.2,
            forest: ForestParams {
                n_trees: 10,
                max_depth: Some(8),
                ..Default::default()
            },
            ..Default::default()
        };
        w.save_online(cfg.clone());
        settle(&mut w);
        // 19 new records: not due yet; one more submitted through the app: due.
        FeedbackStore::open_in(dir.path())
            .unwrap()
            .add_batch(&feedback_for(&w, 19))
            .unwrap();
        assert!(!auto_retrain_due(&reg, &cfg).unwrap());
        let one = feedback_for(&w, 20).pop().unwrap();
        w.submit_feedback(one);
        settle(&mut w);
        assert_eq!(w.versions.len(), 2, "an automatic retrain ran");
        assert!(
            w.notices.iter().any(
                |n| matches!(n, Notice::Info(m) if m.starts_with("automatic retrain started"))
            )
        );
        // Everything is consumed: nothing is due any more.
        assert!(!auto_retrain_due(&reg, &cfg).unwrap());
        // With a long interval, new records alone do not trigger.
        let slow = OnlineLearningConfig {
            retrain_interval: 3600,
            ..cfg.clone()
        };
        FeedbackStore::open_in(dir.path())
            .unwrap()
            .add_batch(&feedback_for(&w, 30))
            .unwrap();
        assert!(auto_retrain_due(&reg, &cfg).unwrap());
        assert!(!auto_retrain_due(&reg, &slow).unwrap());
        let off = OnlineLearningConfig {
            auto_retrain: false,
            ..cfg
        };
        assert!(!auto_retrain_due(&reg, &off).unwrap());
    }

    #[test]
    fn broken_csv_keeps_the_current_data_and_explanations_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Workbench::new(config(dir.path()), Arc::new(|| {}));
        w.start();
        settle(&mut w);
        let before = w.data.clone().unwrap();
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "label,user_id\n1,2\n").unwrap();
        w.open_dataset(bad);
        settle(&mut w);
        assert!(Arc::ptr_eq(w.data.as_ref().unwrap(), &before));
        assert!(
            w.notices
                .iter()
                .any(|n| matches!(n, Notice::Error(e) if e.contains("bad.csv") && e.contains("missing column")))
        );
        let x = before.row(0);
        w.request_explanation(&x);
        let start = Instant::now();
        while w.explanation_for(&x).is_none() {
            w.poll();
            assert!(start.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(5));
        }
        let e = w.explanation_for(&x).unwrap();
        let p = w.active.as_ref().unwrap().model.predict_one(&x);
        assert!((e.base + e.contributions.iter().sum::<f64>() - p).abs() < 1e-9);
    }
}
