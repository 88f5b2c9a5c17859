//! Running jobs: each command's work runs on its own thread, reports progress over the
//! workbench's channel (throttled) and can be cancelled; a panic in a job becomes an
//! error notice, never a dead app.

use super::poll::Msg;
use super::{Notice, Notify, Workbench};
use crate::util::progress::Reporter;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    /// Read, take or give back review claims.
    Review,
    /// Start, stop or promote the team service's experiment.
    Experiment,
    /// Read, test, save, publish or shadow decision policies.
    Policies,
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
            JobKind::Review => "Review claims",
            JobKind::Experiment => "Experiment",
            JobKind::Policies => "Decision policies",
        }
    }

    /// Kinds that train a model: only one of them may run at a time.
    pub fn trains(self) -> bool {
        matches!(
            self,
            JobKind::Setup | JobKind::Train | JobKind::Retrain | JobKind::Compare
        )
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

/// Reports a job's progress over the channel.
pub(super) struct ChannelReporter {
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
pub(super) struct JobCtx {
    kind: JobKind,
    pub(super) reporter: ChannelReporter,
    tx: Sender<Msg>,
    notify: Notify,
    /// Where a job that changes the registry logs it ([`JobCtx::log_to_mlflow`]).
    mlflow: Option<crate::ops::mlflow::Tracking>,
}

impl JobCtx {
    pub(super) fn send(&self, m: Msg) {
        let _ = self.tx.send(m);
        (self.notify)();
    }
    pub(super) fn error(&self, text: String) {
        tracing::warn!(job = self.kind.label(), "{text}");
        self.send(Msg::Failed(self.kind, text));
    }
    pub(super) fn info(&self, text: String) {
        tracing::info!(job = self.kind.label(), "{text}");
        self.send(Msg::Notice(Notice::Info(text)));
    }
    /// With MLflow configured ([`super::WorkbenchConfig::mlflow`]), sends what this job
    /// changed in `registry` and says what was sent, or that nothing is lost.
    pub(super) fn log_to_mlflow(&self, registry: &crate::store::Registry) {
        if let Some(t) = &self.mlflow {
            self.info(crate::ops::mlflow::sync_after_change(registry, t));
        }
    }
    /// Reports a failed step: a cancellation as the notice `cancelled`, anything else
    /// as the error "`failed`: reason".
    pub(super) fn failed(&self, e: crate::Error, cancelled: &str, failed: &str) {
        match e {
            crate::Error::Cancelled => self.info(cancelled.to_string()),
            e => self.error(format!("{failed}: {e}")),
        }
    }
}

impl Workbench {
    pub(super) fn spawn(&mut self, kind: JobKind, work: impl FnOnce(&JobCtx) + Send + 'static) {
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
            mlflow: self.config.mlflow.clone(),
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

    /// A training of any kind (start-up, Train now, retrain, comparison) is running;
    /// only one may run at a time.
    pub fn is_training(&self) -> bool {
        self.jobs.iter().any(|j| j.kind.trains())
    }

    /// Whether a training may start now; when not, says so in a notice.
    pub(super) fn may_train(&mut self) -> bool {
        if self.is_training() {
            self.notices.push(Notice::Error(
                "a training run is already in progress".into(),
            ));
            return false;
        }
        true
    }

    /// No job is running.
    pub fn is_idle(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Stops running jobs that can stop (training, statistics).
    pub fn cancel(&self, kind: JobKind) {
        for j in self.jobs.iter().filter(|j| j.kind == kind) {
            j.cancel();
        }
    }
}
