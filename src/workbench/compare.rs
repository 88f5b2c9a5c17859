//! The model comparison: training the candidates on one split, promoting one of them.

use super::poll::Msg;
use super::versions::send_versions;
use super::{ActiveModel, JobKind, Notice, Workbench};
use crate::util::progress::Reporter;
use std::sync::Arc;

impl Workbench {
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
                    // On a team's service, the service sends its comparisons.
                    if client.is_none() {
                        ctx.log_to_mlflow(&registry);
                    }
                }
                Err(e) => ctx.failed(e, "comparison cancelled", "comparison failed"),
            }
        });
    }

    /// Cross-validates the named comparison candidates (all when `names` is empty) over
    /// `folds` stratified folds of the loaded data (a job of the Compare kind: one at a
    /// time, cancellable); nothing is registered.
    pub fn run_cross_validation(&mut self, names: Vec<String>, folds: usize) {
        let Some(data) = self.data.clone() else {
            self.notices
                .push(Notice::Error("no data loaded to cross-validate on".into()));
            return;
        };
        if !self.may_train() {
            return;
        }
        let seed = self.config.train.params.seed;
        self.spawn(JobKind::Compare, move |ctx| {
            let run = crate::ops::compare::select_candidates(seed, &names).and_then(|c| {
                crate::ops::compare::cross_validate(&data, &c, folds, seed, &ctx.reporter)
            });
            match run {
                Ok(cv) => {
                    let best = cv
                        .rows
                        .iter()
                        .max_by(|a, b| a.roc_auc.mean.total_cmp(&b.roc_auc.mean))
                        .map(|r| format!(", best mean ROC-AUC {} ({:.4})", r.name, r.roc_auc.mean))
                        .unwrap_or_default();
                    ctx.info(format!(
                        "cross-validation finished: {} models over {folds} folds{best}",
                        cv.rows.len()
                    ));
                    ctx.send(Msg::CrossValidated(Arc::new(cv)));
                }
                Err(e) => ctx.failed(e, "cross-validation cancelled", "cross-validation failed"),
            }
        });
    }

    /// Searches `space`'s parameters over at most `trials` trials, each cross-validated
    /// over `folds` stratified folds of the loaded data (a job of the Compare kind:
    /// cancellable); nothing is registered until the best trial is promoted.
    pub fn run_tuning(&mut self, space: crate::ops::tune::Space, trials: usize, folds: usize) {
        let Some(data) = self.data.clone() else {
            self.notices
                .push(Notice::Error("no data loaded to tune on".into()));
            return;
        };
        if !self.may_train() {
            return;
        }
        let cfg = crate::ops::tune::TuneConfig {
            space,
            trials,
            budget: None,
            folds,
            seed: self.config.train.params.seed,
        };
        self.spawn(JobKind::Compare, move |ctx| {
            match crate::ops::tune::tune(&data, &cfg, &ctx.reporter) {
                Ok(t) => {
                    let best = t
                        .best_trial()
                        .and_then(|b| Some((b.number, b.cv.as_ref()?.average_precision.mean)))
                        .map(|(n, ap)| format!(", best trial {n} (average precision {ap:.4})"))
                        .unwrap_or_default();
                    ctx.info(format!(
                        "tuning finished: {} trials over {} folds{best}",
                        t.trials.len(),
                        t.folds
                    ));
                    ctx.send(Msg::Tuned(Arc::new(t)));
                }
                Err(e) => ctx.failed(e, "tuning cancelled", "tuning failed"),
            }
        });
    }

    /// Trains the last search's best trial on the loaded data and registers it as the
    /// active version.
    pub fn promote_tuned(&mut self) {
        if self.refused_on_team("versions are promoted on the team's service") {
            return;
        }
        let (Some(registry), Some(tuning), Some(data)) = (
            self.registry.clone(),
            self.tuning.clone(),
            self.data.clone(),
        ) else {
            self.notices
                .push(Notice::Error("tune on the loaded data first".into()));
            return;
        };
        if self.is_running(JobKind::Promote) || !self.may_train() {
            return;
        }
        let test_fraction = self.config.train.test_fraction;
        self.spawn(JobKind::Promote, move |ctx| {
            match crate::ops::tune::promote_best(
                &registry,
                &data,
                &tuning,
                test_fraction,
                &ctx.reporter,
            ) {
                Ok((t, manifest)) => {
                    let v = manifest.version;
                    ctx.send(Msg::Model(ActiveModel::trained(manifest, t)));
                    ctx.info(format!(
                        "the best trial was registered as version {v} and activated"
                    ));
                    ctx.log_to_mlflow(&registry);
                }
                Err(e) => ctx.failed(
                    e,
                    "promotion cancelled",
                    "the best trial was not registered",
                ),
            }
            send_versions(ctx, &registry);
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
                    ctx.log_to_mlflow(&registry);
                }
                Err(e) => ctx.error(format!("{name} was not registered: {e}")),
            }
            send_versions(ctx, &registry);
        });
    }
}
