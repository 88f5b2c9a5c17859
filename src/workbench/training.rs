//! New versions: training on the loaded data, retraining from feedback (here, or on
//! the team's service, following its job), and what the gate said per moderator.

use super::feedback::send_feedback_stats;
use super::jobs::JobCtx;
use super::poll::Msg;
use super::versions::{load_active, send_versions};
use super::{ActiveModel, JobKind, Notice, Workbench};
use crate::data::Dataset;
use crate::ops::train::{TrainConfig, train_and_register};
use crate::store::Registry;
use crate::util::progress::Reporter;

impl Workbench {
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
            ctx.log_to_mlflow(&registry);
            send_versions(ctx, &registry);
            send_feedback_stats(ctx, &registry);
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

pub(super) fn train_new_version(
    ctx: &JobCtx,
    registry: &Registry,
    data: &Dataset,
    cfg: &TrainConfig,
) {
    match train_and_register(registry, data, None, cfg, &ctx.reporter) {
        Ok((t, manifest)) => {
            let v = manifest.version;
            let seconds = t.train_seconds;
            ctx.send(Msg::Model(ActiveModel::trained(manifest, t)));
            ctx.info(format!(
                "version {v} trained in {seconds:.1} s and activated"
            ));
            ctx.log_to_mlflow(registry);
        }
        Err(e) => ctx.failed(
            e,
            "training cancelled; the active version is unchanged",
            "training failed",
        ),
    }
}
