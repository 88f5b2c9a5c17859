//! What workers send, and how the workbench applies it: [`Workbench::poll`], called
//! once per frame, is the only place the state changes from background work.

use super::{ActiveModel, JobKind, Notice, VersionRow, Workbench};
use crate::data::Dataset;
use crate::data::eda::Eda;
use crate::eval::monitor::Drift;
use crate::model::explain::Explanation;
use crate::ops::compare::{Comparison, Saved};
use crate::ops::score::Queue;
use crate::ops::settings::OnlineLearningConfig;
use crate::store::Holdout;
use crate::store::Manifest;
use crate::store::feedback::{AgreementPoint, FeedbackStats};
use std::path::PathBuf;
use std::sync::Arc;

pub(super) enum Msg {
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
    Agreement(Vec<AgreementPoint>),
    /// A finished cross-validation of the comparison's models.
    CrossValidated(Arc<crate::ops::compare::CrossValidation>),
    Tuned(Arc<crate::ops::tune::Tuning>),
    /// A finished comparison (with its models) and the data it ran on.
    Compared(Arc<Comparison>, Arc<Dataset>, Arc<Saved>),
    /// The registry's latest saved comparison (table and curves, no models).
    SavedComparison(Arc<Saved>),
    /// A report folder was written.
    Report(PathBuf),
    /// The active version cannot be loaded.
    Damaged(super::Damaged),
    /// The connection to a team's service.
    Remote(super::RemoteStatus),
    /// The team service's latest comparison.
    TeamComparison(Arc<Saved>),
    /// The team service's experiment.
    Experiment(Arc<crate::service::api::ExperimentStatus>),
    /// The kept decision policies.
    Policies(Arc<crate::ops::policy::PolicyBook>),
    /// A draft's backtest.
    PolicyTested(Arc<super::PolicyTested>),
    /// Who claimed and reviewed accounts of the queue.
    Reviews(Vec<crate::service::api::AccountStatus>),
    /// The team's feedback statistics from its service.
    TeamStats(Arc<crate::service::api::FeedbackStats>),
}

impl Workbench {
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
                    self.damaged = None;
                    self.active = Some(a);
                }
                Msg::Statistics(d, e) => {
                    // Only if it belongs to the current data.
                    if self.data.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, &d)) {
                        self.eda = Some(e);
                    }
                }
                Msg::Explained(key, e) => self.explanation = Some((key, e)),
                Msg::FeedbackStats(s) => {
                    self.feedback = Some(s);
                    // New feedback: the queue's review column is read again.
                    self.reviews_asked = None;
                }
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
                Msg::Online(c) => {
                    self.set_webhook(c.webhook_url.as_deref());
                    self.online = Some(c);
                }
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
                Msg::CrossValidated(cv) => self.cross_validation = Some(cv),
                Msg::Tuned(t) => self.tuning = Some(t),
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
                Msg::Damaged(d) => self.damaged = Some(d),
                Msg::Remote(r) => self.remote = Some(r),
                Msg::Experiment(e) => self.experiment = Some(e),
                Msg::Policies(b) => self.policies = Some(b),
                Msg::PolicyTested(t) => self.policy_test = Some(t),
                Msg::TeamComparison(c) => {
                    // This session's own comparison (with its models) stays on screen.
                    if self.comparison.is_none() {
                        self.saved_comparison = Some(c);
                    }
                }
                Msg::Reviews(list) => {
                    for a in list {
                        self.reviews.insert(a.user_id.clone(), Arc::new(a));
                    }
                }
                Msg::TeamStats(t) => {
                    self.feedback = Some(team_feedback(&t));
                    self.team = Some(t);
                }
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

/// The service's feedback statistics as the app's own (totals and agreement by version).
fn team_feedback(t: &crate::service::api::FeedbackStats) -> FeedbackStats {
    use crate::store::feedback::VersionStats;
    FeedbackStats {
        total: t.total_feedback,
        judged: t.judged,
        agreed: t.correct_predictions,
        agreement: crate::eval::verdict::agreement(t.correct_predictions, t.judged),
        by_version: t
            .by_version
            .iter()
            .map(|v| VersionStats {
                version: v.model_version,
                total: v.total,
                agreed: v.correct,
                judged: v.judged,
            })
            .collect(),
    }
}
