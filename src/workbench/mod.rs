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

mod compare;
mod data;
mod experiment;
mod explainer;
mod feedback;
mod jobs;
mod link;
pub mod policies;
mod poll;
mod queue;
mod report;
mod reviews;
mod score;
mod settings;
mod training;
mod versions;
mod watcher;

pub use experiment::ExperimentCommand;
pub use jobs::{Job, JobKind};
pub use link::{POLL, RemoteStatus, outbox_path};
pub use reviews::CLAIM_SECONDS;
pub use score::explain_key;

use crate::data::Dataset;
use crate::data::eda::Eda;
use crate::data::synth::{SynthParams, default_dataset};
use crate::eval::monitor::Drift;
use crate::model::Model;
use crate::model::explain::Explanation;
use crate::ops::compare::{Comparison, Saved};
use crate::ops::score::Queue;
use crate::ops::settings::OnlineLearningConfig;
use crate::ops::train::TrainConfig;
use crate::store::feedback::FeedbackStats;
use crate::store::{Holdout, Manifest, Registry};
use crate::util::progress::Reporter;
use explainer::Explainer;
use feedback::send_feedback_stats;
use jobs::JobCtx;
use poll::Msg;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;
use training::train_new_version;
use versions::{load_active, send_versions};
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
    /// An MLflow tracking server to log training, retraining, comparisons and
    /// rollbacks made here to (the app: MLFLOW_TRACKING_URI, as for the commands).
    pub mlflow: Option<crate::ops::mlflow::Tracking>,
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

impl ActiveModel {
    /// A version just trained and registered as `manifest`.
    pub(crate) fn trained(manifest: Manifest, t: crate::ops::train::Trained) -> ActiveModel {
        ActiveModel {
            manifest,
            model: Arc::new(t.model),
            holdout: Some(Arc::new(t.holdout)),
        }
    }
}

/// A draft policy tested on the loaded data, and that data (its rows are opened on the
/// score screen).
pub struct PolicyTested {
    pub test: crate::ops::policy::PolicyTest,
    pub data: Arc<Dataset>,
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
    /// This session's last cross-validation of the comparison's models.
    pub cross_validation: Option<Arc<crate::ops::compare::CrossValidation>>,
    /// The last hyperparameter search of this session.
    pub tuning: Option<Arc<crate::ops::tune::Tuning>>,
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
    /// The kept decision policies, as last read (the Policies tab reads them).
    pub policies: Option<Arc<crate::ops::policy::PolicyBook>>,
    /// The last backtest of a draft policy.
    pub policy_test: Option<Arc<PolicyTested>>,
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
            cross_validation: None,
            tuning: None,
            last_report: None,
            damaged: None,
            moderator: None,
            remote: None,
            team: None,
            experiment: None,
            policies: None,
            policy_test: None,
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
            load_at_start(ctx, registry, config, remote)
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

/// The start-up job: the last dataset (or the synthetic one), the active version (the
/// reference forest trained first when the registry is empty), and what the screens
/// show of the registry.
fn load_at_start(ctx: &JobCtx, registry: Registry, config: WorkbenchConfig, remote: bool) {
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
    match crate::ops::compare::load_latest(&registry) {
        Ok(Some(s)) => ctx.send(Msg::SavedComparison(Arc::new(s))),
        Ok(None) => {}
        Err(e) => ctx.error(format!("the saved model comparison cannot be read: {e}")),
    }
    match OnlineLearningConfig::load(&registry) {
        Ok(c) => ctx.send(Msg::Online(c)),
        Err(e) => ctx.error(format!("{e}; using the default online-learning settings")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::forest::ForestParams;
    use crate::ops::schedule::auto_retrain_due;
    use crate::store::feedback::{FeedbackStore, NewFeedback};
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
            mlflow: None,
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
