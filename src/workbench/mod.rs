//! The app's state and background work, independent of any GUI toolkit.
//!
//! The [`Workbench`] owns the loaded dataset, the active model version, feedback
//! statistics and the running jobs. Commands (`open_dataset`, `train_now`, ...) start jobs
//! on worker threads (`jobs`); every step they take is an `ops` function, the same one the
//! command line calls. Jobs report progress and results over a channel and call the
//! `notify` callback (the app passes `Context::request_repaint`). The GUI calls
//! [`Workbench::poll`] (`poll`) once per frame to apply what arrived: nothing ever blocks
//! the UI thread on I/O, statistics or training. Two long-lived threads, the TreeSHAP
//! `explainer` and the retrain `watcher`, end when the workbench is dropped.

mod explainer;
mod jobs;
mod link;
mod poll;
mod watcher;

pub use jobs::{Job, JobKind};
pub use link::{POLL, RemoteStatus, outbox_path};

use crate::data::Dataset;
use crate::data::eda::{self, Eda};
use crate::data::synth::{SynthParams, default_dataset};
use crate::eval::monitor::Drift;
use crate::model::Model;
use crate::model::explain::{Explanation, Method};
use crate::ops::compare::{Comparison, Saved};
use crate::ops::score::Queue;
use crate::ops::settings::OnlineLearningConfig;
use crate::ops::train::{TrainConfig, train_and_register};
use crate::store::feedback::{FeedbackStats, FeedbackStore, NewFeedback, Origin};
use crate::store::{Holdout, Manifest, Registry};
use crate::util::progress::Reporter;
use explainer::Explainer;
use jobs::JobCtx;
use poll::Msg;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;
use watcher::Watcher;

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
    /// Work on a team's service instead of the registry alone: `registry_root` then
    /// holds the local copy of the service's versions and the feedback outbox.
    pub remote: Option<RemoteConfig>,
}

/// A team's service and the token to call it with.
#[derive(Clone, PartialEq)]
pub struct RemoteConfig {
    pub url: String,
    pub token: Option<String>,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// The active model version with what the screens need of it.
#[derive(Clone)]
pub struct ActiveModel {
    pub manifest: Manifest,
    pub model: Arc<Model>,
    pub holdout: Option<Arc<Holdout>>,
}

/// Something the user should read: an error, or the result of an action.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Info(String),
    Error(String),
}

/// The active version could not be loaded: which one, and the newest earlier version
/// that loads (the app offers to roll back to it).
#[derive(Debug, Clone, PartialEq)]
pub struct Damaged {
    pub version: u32,
    pub fallback: Option<u32>,
    pub message: String,
}

/// One row of the version history.
#[derive(Debug, Clone)]
pub struct VersionRow {
    pub version: u32,
    /// The manifest, or why it cannot be read.
    pub manifest: Result<Manifest, Arc<crate::store::StoreError>>,
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
    watcher: Option<Watcher>,
    /// Held by the explainer and watcher threads while they run.
    threads_alive: Arc<()>,
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
    pub monitor: crate::eval::monitor::Monitor,
    pub drift: Option<Arc<Drift>>,
    drift_requested: Option<u64>,
    pub agreement: Vec<crate::store::feedback::AgreementPoint>,
    /// The last comparison run in this session, with its trained models (promotable),
    /// and the data it ran on.
    pub comparison: Option<(Arc<Comparison>, Arc<Dataset>)>,
    /// The latest comparison's table and curves (this session's, or the registry's
    /// saved one after a restart).
    pub saved_comparison: Option<Arc<Saved>>,
    /// The last report folder written.
    pub last_report: Option<PathBuf>,
    /// The active version is damaged (until a version loads again).
    pub damaged: Option<Damaged>,
    /// Who gives feedback on this computer (the name in Settings; on a team's service
    /// the token's name is used instead).
    pub moderator: Option<String>,
    /// On a team's service: the connection, and the team's feedback statistics.
    pub remote: Option<RemoteStatus>,
    pub team: Option<Arc<crate::service::api::FeedbackStats>>,
    /// Where alerts go besides the screen (the webhook of the settings).
    webhook: Option<crate::ops::alert::WebhookSender>,
    /// The team service's shadow or canary experiment (read every round).
    pub experiment: Option<Arc<crate::service::api::ExperimentStatus>>,
    /// Review claims and reviews of queue accounts, by user id (refreshed for the rows
    /// on screen).
    pub reviews: std::collections::HashMap<String, Arc<crate::service::api::AccountStatus>>,
    reviews_asked: Option<(Vec<String>, Instant)>,
    client: Option<crate::remote::Client>,
    link: Option<link::Link>,
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
        let threads_alive = Arc::new(());
        let explainer = Explainer::new(tx.clone(), notify.clone(), threads_alive.clone());
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
            watcher: None,
            threads_alive,
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
            damaged: None,
            moderator: None,
            remote: None,
            team: None,
            experiment: None,
            webhook: None,
            reviews: Default::default(),
            reviews_asked: None,
            client: None,
            link: None,
            tx,
            rx,
            notify,
            next_id: 1,
        }
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
        if let Some(r) = self.config.remote.clone() {
            match crate::remote::Client::new(&r.url, r.token.clone()) {
                Ok(client) => {
                    self.remote = Some(RemoteStatus::new(client.url()));
                    self.link = Some(link::Link::start(
                        client.clone(),
                        registry.clone(),
                        self.tx.clone(),
                        self.notify.clone(),
                        self.threads_alive.clone(),
                    ));
                    self.client = Some(client);
                }
                Err(e) => {
                    self.notices.push(Notice::Error(e.to_string()));
                    return;
                }
            }
        } else {
            self.watcher = Some(Watcher::start(
                registry.clone(),
                self.tx.clone(),
                self.notify.clone(),
                self.threads_alive.clone(),
            ));
        }
        let remote = self.client.is_some();
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
                        Err(e) => {
                            if let crate::Error::Store(crate::store::StoreError::DamagedActive {
                                version,
                                fallback,
                                ..
                            }) = &e
                            {
                                ctx.send(Msg::Damaged(Damaged {
                                    version: *version,
                                    fallback: *fallback,
                                    message: e.to_string(),
                                }));
                            }
                            ctx.error(format!("the active model cannot be used: {e}"))
                        }
                    }
                }
                // On a team's service the link copies its versions in.
                Ok(None) if remote => {}
                Ok(None) => train_new_version(ctx, &registry, &data, &config.train),
                Err(e) => ctx.error(e.to_string()),
            }
            if remote {
                send_versions(ctx, &registry);
                return;
            }
            send_feedback_stats(ctx, &registry);
            send_versions(ctx, &registry);
            match crate::ops::compare::load_latest(registry.root()) {
                Ok(Some(s)) => ctx.send(Msg::SavedComparison(Arc::new(s))),
                Ok(None) => {}
                Err(e) => ctx.error(format!("the saved model comparison cannot be read: {e}")),
            }
            match OnlineLearningConfig::load(&registry) {
                Ok(c) => ctx.send(Msg::Online(c)),
                Err(e) => ctx.error(format!("{e}; using the default online-learning settings")),
            }
        });
    }

    /// Retrains from feedback now (one retrain at a time); the candidate becomes
    /// active only if it passes the gate.
    pub fn retrain_now(&mut self) {
        if let Some(client) = self.client.clone() {
            return self.remote_retrain(client);
        }
        let Some(registry) = self.registry.clone() else {
            return;
        };
        if !self.may_train() {
            return;
        }
        let cfg = self.online.clone().unwrap_or_default();
        self.spawn(JobKind::Retrain, move |ctx| {
            match crate::ops::online::retrain(&registry, &cfg, &ctx.reporter) {
                Ok(o) => {
                    if o.promoted {
                        match load_active(&registry) {
                            Ok(a) => ctx.send(Msg::Model(a)),
                            Err(e) => ctx.error(format!("the new version cannot be loaded: {e}")),
                        }
                        ctx.info(format!(
                            "v{} {}{}",
                            o.candidate.version,
                            o.reason,
                            local_gate(&o.by_moderator)
                        ));
                    } else {
                        ctx.error(format!(
                            "v{} was not activated: {}{}",
                            o.candidate.version,
                            o.reason,
                            local_gate(&o.by_moderator)
                        ));
                    }
                }
                Err(e) => ctx.failed(
                    e,
                    "retraining cancelled; the active version is unchanged",
                    "retraining failed",
                ),
            }
            send_versions(ctx, &registry);
            send_feedback_stats(ctx, &registry);
        });
    }

    /// Makes version `v` active.
    pub fn rollback(&mut self, v: u32) {
        if let Some(client) = self.client.clone() {
            let wake = self.link.as_ref().map(|l| l.waker());
            self.spawn(JobKind::Rollback, move |ctx| {
                match client.rollback(v) {
                    Ok(r) => ctx.info(format!(
                        "the team's service now answers with version {}",
                        r.model_version
                    )),
                    Err(e) => ctx.error(format!("could not activate version {v}: {e}")),
                }
                if let Some(w) = wake {
                    let _ = w.send(());
                }
            });
            return;
        }
        let Some(registry) = self.registry.clone() else {
            return;
        };
        self.spawn(JobKind::Rollback, move |ctx| {
            match registry
                .rollback(v)
                .map_err(crate::Error::from)
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
        if self.refused_on_team("online-learning settings are the team service's") {
            return;
        }
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
        self.score_queue_from(path.map(QueueSource::File));
    }

    /// Scores the team service's recent traffic (the newest `limit` accounts it
    /// scored) for the review queue, here with the local copy of its model.
    pub fn score_team_traffic(&mut self, limit: usize) {
        let Some(client) = self.client.clone() else {
            self.notices.push(Notice::Error(
                "the team's traffic is on a team's service: connect to one first".into(),
            ));
            return;
        };
        self.score_queue_from(Some(QueueSource::Team(client, limit)));
    }

    fn score_queue_from(&mut self, source: Option<QueueSource>) {
        let Some(active) = self.active.clone() else {
            self.notices
                .push(Notice::Error("no active model to score with".into()));
            return;
        };
        let loaded = self.data.clone();
        self.spawn(JobKind::Queue, move |ctx| {
            let data = match source {
                Some(QueueSource::Team(client, limit)) => {
                    ctx.reporter.stage("reading the team's traffic", 0, 1);
                    match client.review_queue(limit) {
                        Ok(t) if t.accounts.is_empty() => {
                            return ctx
                                .info("the team's service has scored no accounts yet".into());
                        }
                        Ok(t) => Arc::new(traffic_dataset(client.url(), t)),
                        Err(e) => return ctx.error(format!("the team's traffic: {e}")),
                    }
                }
                Some(QueueSource::File(p)) => {
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
            match crate::ops::score::score_batch(
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
                Err(e) => ctx.failed(e, "scoring cancelled", "scoring failed"),
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
        let wake = self.link.as_ref().map(|l| l.waker());
        let moderator = self.moderator.clone();
        self.spawn(JobKind::Feedback, move |ctx| {
            let records = crate::ops::feedback::records(
                &q.data,
                &rows,
                |_| true_label,
                Some(&q.batch),
                "bulk review from the queue",
                Origin::Queue,
            );
            if let Some(w) = wake {
                return to_outbox(ctx, &registry, &records, &w);
            }
            store_feedback(ctx, &registry, &records, moderator.as_deref(), |ids| {
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
            move |ctx| match crate::ops::score::write_batch_csv(
                &q.data,
                &q.batch,
                Some(&rows),
                &path,
            ) {
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
            let also = queue.as_ref().map(|q| q.data.columns.as_slice());
            let d = Drift::measure(version, &profiles, recent, also);
            ctx.send(Msg::Drift(key, Arc::new(d)));
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
        if self.refused_on_team(
            "new versions are trained on the team's service (Model > Retrain from feedback)",
        ) {
            return;
        }
        let (Some(registry), Some(data)) = (self.registry.clone(), self.data.clone()) else {
            self.notices
                .push(Notice::Error("no data loaded to train on".into()));
            return;
        };
        if !self.may_train() {
            return;
        }
        let cfg = self.config.train.clone();
        self.spawn(JobKind::Train, move |ctx| {
            train_new_version(ctx, &registry, &data, &cfg);
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
        if !self.may_train() {
            return;
        }
        let seed = self.config.train.params.seed;
        let test_fraction = self.config.train.test_fraction;
        let client = self.client.clone();
        self.spawn(JobKind::Compare, move |ctx| {
            let run = crate::ops::compare::select_candidates(seed, &names).and_then(|c| {
                crate::ops::compare::run(
                    &registry,
                    &data,
                    &c,
                    test_fraction,
                    seed,
                    true,
                    &ctx.reporter,
                )
            });
            match run {
                Ok(c) => {
                    if let Some(e) = &c.not_saved {
                        ctx.error(format!("the comparison was not saved: {e}"));
                    }
                    // On a team's service the table goes there too (an admin's token).
                    if let Some(client) = &client {
                        match client.put_comparison(&c.saved) {
                            Ok(m) => ctx.info(format!("the team's service: {m}")),
                            Err(e) => ctx.error(format!(
                                "the comparison is kept here but not on the team's service: {e}"
                            )),
                        }
                    }
                    let best = c.saved.best_auc.clone().unwrap_or_default();
                    let failed = c.saved.failed.len();
                    let trained = c.comparison.outcomes.len() - failed;
                    ctx.send(Msg::Compared(
                        Arc::new(c.comparison),
                        data,
                        Arc::new(c.saved),
                    ));
                    ctx.info(format!(
                        "comparison finished: {trained} models, best ROC-AUC {best}{}",
                        if failed > 0 {
                            format!(", {failed} failed")
                        } else {
                            String::new()
                        }
                    ));
                }
                Err(e) => ctx.failed(e, "comparison cancelled", "comparison failed"),
            }
        });
    }

    /// Registers the compared model `name` as a new version and activates it.
    pub fn promote(&mut self, name: &str) {
        if self.refused_on_team("versions are promoted on the team's service") {
            return;
        }
        let (Some(registry), Some((cmp, data))) = (self.registry.clone(), self.comparison.clone())
        else {
            self.notices.push(Notice::Error(
                "run the comparison in this session first: its models are kept in memory for promotion".into(),
            ));
            return;
        };
        if self.is_running(JobKind::Promote) || !self.may_train() {
            return;
        }
        let name = name.to_string();
        let test_fraction = self.config.train.test_fraction;
        self.spawn(JobKind::Promote, move |ctx| {
            ctx.reporter.stage("saving", 0, 1);
            match crate::ops::compare::promote(&registry, &cmp, &data, &name, test_fraction) {
                Ok((manifest, t)) => {
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

    /// Writes a report folder for the active version (to `dir`, or to the registry's
    /// report folder when None): model card, charts, scored queue.
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
            let known = crate::ops::report::Known {
                holdout: active.holdout.as_deref(),
                eda: eda.as_deref(),
                comparison: saved.as_deref(),
                feedback,
            };
            match crate::ops::report::export(
                &registry,
                &active.manifest,
                &active.model,
                &data,
                known,
                dir,
                &ctx.reporter,
            ) {
                Ok(w) => {
                    ctx.info(format!("report written to {}", w.dir.display()));
                    ctx.send(Msg::Report(w.dir));
                }
                Err(e) => ctx.error(format!("report not written: {e}")),
            }
        });
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
        if let Some(w) = self.link.as_ref().map(|l| l.waker()) {
            self.spawn(JobKind::Feedback, move |ctx| {
                to_outbox(ctx, &registry, &[record], &w)
            });
            return;
        }
        let moderator = self.moderator.clone();
        self.spawn(JobKind::Feedback, move |ctx| {
            store_feedback(ctx, &registry, &[record], moderator.as_deref(), |ids| {
                format!("feedback saved (record #{})", ids[0])
            });
        });
    }

    /// Saves `threshold` as the active version's decision threshold.
    pub fn save_threshold(&mut self, threshold: f64) {
        if self.refused_on_team("a version's threshold is set on the team's service") {
            return;
        }
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
}

impl Workbench {
    /// On a team's service, refuses a step the service owns (with a notice).
    fn refused_on_team(&mut self, why: &str) -> bool {
        if self.client.is_none() {
            return false;
        }
        self.notices.push(Notice::Error(format!("not here: {why}")));
        true
    }

    /// Whether this workbench works on a team's service.
    pub fn is_remote(&self) -> bool {
        self.client.is_some()
    }

    /// Starts a retrain on the team's service and follows its job until it ends.
    fn remote_retrain(&mut self, client: crate::remote::Client) {
        if !self.may_train() {
            return;
        }
        let wake = self.link.as_ref().map(|l| l.waker());
        self.spawn(JobKind::Retrain, move |ctx| {
            let job = match client.retrain() {
                Ok(j) => j,
                Err(e) => return ctx.error(format!("retraining on the team's service: {e}")),
            };
            loop {
                if ctx.reporter.cancelled() {
                    return ctx.info(format!(
                        "stopped following the service's retrain (job {}); it goes on there",
                        job.job_id
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(300));
                match client.job(job.job_id) {
                    Ok(j) if j.state == "running" => {
                        ctx.reporter.stage(&j.stage, j.done, j.total.max(1));
                    }
                    Ok(j) => {
                        let per = |r: &crate::service::api::RetrainResult| {
                            gate_by_moderator(r.by_moderator.iter().map(|g| {
                                (
                                    &g.moderator,
                                    g.records,
                                    g.accuracy_active,
                                    g.accuracy_candidate,
                                )
                            }))
                        };
                        match (j.result, j.error) {
                            (Some(r), _) if r.promoted => ctx.info(format!(
                                "the team's service retrained: v{} {}{}",
                                r.candidate_version,
                                r.reason,
                                per(&r)
                            )),
                            (Some(r), _) => ctx.error(format!(
                                "v{} was not activated: {}{}",
                                r.candidate_version,
                                r.reason,
                                per(&r)
                            )),
                            (None, e) => ctx.error(format!(
                                "retraining on the team's service failed: {}",
                                e.unwrap_or_else(|| j.state.clone())
                            )),
                        }
                        break;
                    }
                    Err(e) if e.is_transient() => continue,
                    Err(e) => return ctx.error(format!("following the service's retrain: {e}")),
                }
            }
            if let Some(w) = wake {
                let _ = w.send(());
            }
        });
    }
}

impl Workbench {
    /// Sends alerts shown on screen to the webhook of the settings, if one is set:
    /// never waits (a background thread posts, retries, and drops what it cannot
    /// deliver); each kind at most once per de-duplication window.
    pub fn raise_alerts(&mut self, alerts: &[(crate::ops::alert::AlertKind, String)]) {
        let Some(w) = &self.webhook else { return };
        let version = self.active.as_ref().map(|a| a.manifest.version);
        for (kind, message) in alerts {
            w.send(crate::ops::alert::Alert {
                kind: *kind,
                message: message.clone(),
                version,
                details: serde_json::json!({ "source": "app" }),
            });
        }
    }

    /// Follows the settings' webhook URL: a new sender when it changes.
    pub(super) fn set_webhook(&mut self, url: Option<&str>) {
        if self.webhook.as_ref().map(|w| w.url()) == url {
            return;
        }
        self.webhook = match url {
            None => None,
            Some(u) => match crate::ops::alert::WebhookSender::start(
                crate::ops::alert::WebhookConfig::new(u.to_string()),
            ) {
                Ok(w) => Some(w),
                Err(e) => {
                    self.notices
                        .push(Notice::Error(format!("alerts webhook not used: {e}")));
                    None
                }
            },
        };
    }
}

/// What to do with the team service's experiment.
#[derive(Debug, Clone, PartialEq)]
pub enum ExperimentCommand {
    Start {
        version: u32,
        canary: bool,
        share: f64,
    },
    Stop,
    Promote,
}

impl Workbench {
    /// Starts, stops or promotes the team service's experiment; the link shows the
    /// result within a round.
    pub fn experiment_command(&mut self, cmd: ExperimentCommand) {
        let Some(client) = self.client.clone() else {
            self.notices.push(Notice::Error(
                "experiments run on a team's service: connect to one (File > Connect to server…)"
                    .into(),
            ));
            return;
        };
        let wake = self.link.as_ref().map(|l| l.waker());
        self.spawn(JobKind::Experiment, move |ctx| {
            let done = match &cmd {
                ExperimentCommand::Start {
                    version,
                    canary,
                    share,
                } => client
                    .start_experiment(
                        *version,
                        if *canary { "canary" } else { "shadow" },
                        canary.then_some(*share),
                    )
                    .map(|s| s.message),
                ExperimentCommand::Stop => client.stop_experiment().map(|s| s.message),
                ExperimentCommand::Promote => client.promote_experiment().map(|p| p.message),
            };
            match done {
                Ok(m) => ctx.info(m),
                Err(e) => ctx.error(format!("experiment: {e}")),
            }
            if let Some(w) = wake {
                let _ = w.send(());
            }
        });
    }
}

/// [`gate_by_moderator`] of a retrain on this computer.
fn local_gate(g: &[crate::ops::online::ModeratorGate]) -> String {
    gate_by_moderator(g.iter().map(|g| {
        (
            &g.moderator,
            g.active.records,
            g.active.accuracy,
            g.candidate.accuracy,
        )
    }))
}

/// The gate's held-out feedback per moderator, for a notice: "; held-out feedback by
/// moderator: mia 12 records, accuracy active 0.83, candidate 0.92; …".
fn gate_by_moderator<'a>(
    rows: impl Iterator<Item = (&'a Option<String>, usize, f64, f64)>,
) -> String {
    let parts: Vec<String> = rows
        .map(|(m, n, a, c)| {
            format!(
                "{} {n} records, accuracy active {a:.2}, candidate {c:.2}",
                m.as_deref().unwrap_or("unnamed")
            )
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("; held-out feedback by moderator: {}", parts.join("; "))
    }
}

/// Where the review queue's accounts come from.
enum QueueSource {
    File(PathBuf),
    /// The team service's recent traffic, at most this many accounts.
    Team(crate::remote::Client, usize),
}

/// The team's recent traffic as a dataset (no labels) to score locally.
fn traffic_dataset(url: &str, t: crate::service::api::TrafficQueue) -> Dataset {
    use crate::data::catalog::N_FEATURES;
    let mut columns: Vec<Vec<f64>> = (0..N_FEATURES)
        .map(|_| Vec::with_capacity(t.accounts.len()))
        .collect();
    let mut user_ids = Vec::with_capacity(t.accounts.len());
    let mut hash_input = String::new();
    for a in &t.accounts {
        for (f, col) in columns.iter_mut().enumerate() {
            col.push(a.features.get(f).copied().flatten().unwrap_or(f64::NAN));
        }
        hash_input.push_str(&a.prediction_id);
        user_ids.push(crate::data::UserId::from(a.user_id.as_str()));
    }
    Dataset {
        source: crate::data::DataSource {
            kind: crate::data::SourceKind::Csv {
                path: format!("{url}/review/queue (the team's recent traffic)"),
            },
            sha256: crate::util::hash::sha256_hex(hash_input.as_bytes()),
        },
        user_ids,
        labels: None,
        columns,
        warnings: Vec::new(),
    }
}

/// How long a review claim lasts.
pub const CLAIM_SECONDS: u64 = 15 * 60;
/// How often the review status of the rows on screen is read again.
const REVIEWS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Workbench {
    /// Who claims on this computer: the moderator name, else "this computer".
    fn local_name(&self) -> String {
        self.moderator
            .clone()
            .unwrap_or_else(|| "this computer".into())
    }

    /// The review status of `ids` (the queue rows on screen) is wanted: read again when
    /// the rows or the feedback change (and every few seconds on a team's service), from
    /// the service or the store.
    pub fn want_reviews(&mut self, ids: Vec<String>) {
        if ids.is_empty() || self.is_running(JobKind::Review) {
            return;
        }
        // On this computer reviews change only by its own steps (which ask again); on a
        // team's service other moderators act, so the rows are read again every few
        // seconds.
        let remote = self.is_remote();
        let fresh = self
            .reviews_asked
            .as_ref()
            .is_some_and(|(asked, at)| *asked == ids && (!remote || at.elapsed() < REVIEWS_EVERY));
        if fresh {
            return;
        }
        self.reviews_asked = Some((ids.clone(), Instant::now()));
        self.read_reviews(ids);
    }

    fn read_reviews(&mut self, ids: Vec<String>) {
        let (client, registry) = (self.client.clone(), self.registry.clone());
        self.spawn(JobKind::Review, move |ctx| {
            match review_status(client.as_ref(), registry.as_ref(), &ids) {
                Ok(a) => ctx.send(Msg::Reviews(a)),
                Err(e) => ctx.error(format!("review status: {e}")),
            }
        });
    }

    /// Claims accounts for review ([`CLAIM_SECONDS`]) so that nobody else on the team
    /// reviews them meanwhile; says which someone else holds.
    pub fn claim_reviews(&mut self, ids: Vec<String>) {
        self.change_claims(ids, true);
    }

    /// Gives back this moderator's claims on accounts.
    pub fn release_reviews(&mut self, ids: Vec<String>) {
        self.change_claims(ids, false);
    }

    fn change_claims(&mut self, ids: Vec<String>, take: bool) {
        if ids.is_empty() {
            return;
        }
        let (client, registry, me) = (
            self.client.clone(),
            self.registry.clone(),
            self.local_name(),
        );
        self.spawn(JobKind::Review, move |ctx| {
            for chunk in ids.chunks(crate::ops::review::MAX_IDS) {
                let done: Result<String, String> = match (&client, &registry, take) {
                    (Some(c), _, true) => c
                        .claim(chunk, CLAIM_SECONDS)
                        .map(|r| claimed_text(r.granted.len(), &r.held))
                        .map_err(|e| e.to_string()),
                    (None, Some(reg), true) => {
                        crate::ops::review::claim(reg, chunk, &me, CLAIM_SECONDS)
                            .map(|r| {
                                let held: Vec<crate::service::api::HeldClaim> = r
                                    .held
                                    .into_iter()
                                    .map(|(u, h)| crate::service::api::HeldClaim {
                                        user_id: u.to_string(),
                                        moderator: h.moderator,
                                        expires_at: h.expires_at,
                                    })
                                    .collect();
                                claimed_text(r.granted.len(), &held)
                            })
                            .map_err(|e| e.to_string())
                    }
                    (Some(c), _, false) => c
                        .release(chunk)
                        .map(|r| format!("{} claim(s) given back", r.released))
                        .map_err(|e| e.to_string()),
                    (None, Some(reg), false) => crate::ops::review::release(reg, chunk, &me)
                        .map(|n| format!("{n} claim(s) given back"))
                        .map_err(|e| e.to_string()),
                    (None, None, _) => return,
                };
                match done {
                    Ok(t) => ctx.info(t),
                    Err(e) => return ctx.error(format!("review claims: {e}")),
                }
            }
            // What the rows show now.
            let first = &ids[..ids.len().min(crate::ops::review::MAX_IDS)];
            let read = review_status(client.as_ref(), registry.as_ref(), first).ok();
            if let Some(a) = read {
                ctx.send(Msg::Reviews(a));
            }
        });
    }
}

/// Who claimed and reviewed `ids`, from the team's service when there is one, else
/// from the local store (in requests of at most [`crate::ops::review::MAX_IDS`]).
fn review_status(
    client: Option<&crate::remote::Client>,
    registry: Option<&Registry>,
    ids: &[String],
) -> Result<Vec<crate::service::api::AccountStatus>, String> {
    let mut out = Vec::new();
    for chunk in ids.chunks(crate::ops::review::MAX_IDS) {
        let read: Vec<crate::service::api::AccountStatus> = match (client, registry) {
            (Some(c), _) => c.review_status(chunk).map_err(|e| e.to_string())?.accounts,
            (None, Some(r)) => crate::ops::review::status(r, chunk)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(Into::into)
                .collect(),
            (None, None) => return Ok(out),
        };
        out.extend(read);
    }
    Ok(out)
}

fn claimed_text(granted: usize, held: &[crate::service::api::HeldClaim]) -> String {
    let mut t = format!(
        "{granted} account(s) claimed for {} minutes",
        CLAIM_SECONDS / 60
    );
    if let Some(h) = held.first() {
        t.push_str(&format!(
            "; {} held by others (e.g. {} by {} until {})",
            held.len(),
            crate::util::text::clip(&h.user_id),
            h.moderator,
            h.expires_at
        ));
    }
    t
}

/// Keeps feedback in the outbox of a team's service (one transaction) and wakes the
/// link to send it.
fn to_outbox(
    ctx: &JobCtx,
    registry: &Registry,
    records: &[NewFeedback],
    wake: &std::sync::mpsc::Sender<()>,
) {
    let bodies: Vec<_> = records.iter().map(crate::remote::feedback_body).collect();
    let kept = crate::remote::outbox::Outbox::open(&outbox_path(registry.root()))
        .and_then(|mut o| o.enqueue(&bodies));
    match kept {
        Ok(keys) => {
            ctx.info(format!(
                "feedback kept for the team's service ({} record{})",
                keys.len(),
                if keys.len() == 1 { "" } else { "s" }
            ));
            let _ = wake.send(());
        }
        Err(e) => ctx.error(format!("feedback was not saved: {e}")),
    }
}

impl Drop for Workbench {
    /// Asks running jobs to stop; the explainer and the watcher (fields) end their
    /// threads as they are dropped.
    fn drop(&mut self) {
        for j in &self.jobs {
            j.cancel();
        }
    }
}

fn load_active(registry: &Registry) -> crate::Result<ActiveModel> {
    let (manifest, model) = registry.load_active()?;
    let holdout = registry.load_holdout(manifest.version).ok().map(Arc::new);
    Ok(ActiveModel {
        manifest,
        model: Arc::new(model),
        holdout,
    })
}

fn train_new_version(ctx: &JobCtx, registry: &Registry, data: &Dataset, cfg: &TrainConfig) {
    match train_and_register(registry, data, None, cfg, &ctx.reporter) {
        Ok((t, manifest)) => {
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
        Err(e) => ctx.failed(
            e,
            "training cancelled; the active version is unchanged",
            "training failed",
        ),
    }
}

/// Stores feedback records in one transaction, refreshes the statistics and lets the
/// store say whether an automatic retrain is now due.
fn store_feedback(
    ctx: &JobCtx,
    registry: &Registry,
    records: &[NewFeedback],
    moderator: Option<&str>,
    saved: impl FnOnce(&[i64]) -> String,
) {
    match crate::ops::feedback::record_by(registry, records, moderator) {
        Ok(r) => {
            ctx.info(saved(&r.ids));
            send_feedback_stats(ctx, registry);
            if let Some(reason) = r.retrain_due {
                ctx.send(Msg::AutoRetrain(reason));
            }
        }
        Err(e) => {
            ctx.error(format!("feedback was not saved: {e}"));
            send_feedback_stats(ctx, registry);
        }
    }
}

fn send_versions(ctx: &JobCtx, registry: &Registry) {
    if let Err(e) = versions_msg(registry).map(|m| ctx.send(m)) {
        ctx.error(format!("cannot list versions: {e}"));
    }
}

/// Sends the registry's version list on `tx` (the team link, outside jobs).
fn send_versions_to(tx: &Sender<Msg>, registry: &Registry) {
    if let Ok(m) = versions_msg(registry) {
        let _ = tx.send(m);
    }
}

fn versions_msg(registry: &Registry) -> Result<Msg, crate::store::StoreError> {
    Ok(Msg::Versions(
        registry
            .list()?
            .into_iter()
            .map(|e| VersionRow {
                version: e.version,
                manifest: e.manifest.map_err(Arc::new),
            })
            .collect(),
        registry.active()?,
    ))
}

fn send_feedback_stats(ctx: &JobCtx, registry: &Registry) {
    let read = FeedbackStore::open_in(registry.root())
        .and_then(|s| Ok((s.stats()?, s.agreement_over_time()?)));
    match read {
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
    use crate::model::forest::ForestParams;
    use crate::ops::schedule::auto_retrain_due;
    use crate::store::feedback::NewFeedback;
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
            remote: None,
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
                user_id: Some(d.user_ids[i].clone()),
                features: d.row(i),
                true_label: d.labels.as_ref().unwrap()[i],
                probability: None,
                model_version: None,
                predicted: None,
                notes: String::new(),
                origin: crate::store::feedback::Origin::Import,
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

    #[test]
    fn dropping_the_workbench_ends_its_threads() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Workbench::new(config(dir.path()), Arc::new(|| {}));
        w.start();
        settle(&mut w);
        assert!(w.watcher.is_some(), "the retrain watcher runs after start");
        let x = w.data.as_ref().unwrap().row(0);
        w.request_explanation(&x);
        let alive = Arc::downgrade(&w.threads_alive);
        // The workbench's own handle, the explainer's and the watcher's.
        assert_eq!(alive.strong_count(), 3);
        drop(w);
        assert_eq!(
            alive.strong_count(),
            0,
            "the explainer and watcher threads still run after the workbench was dropped"
        );
    }
}
