//! The training pipeline: split (or a separate test file), median imputation fitted on
//! the training rows, forest, holdout evaluation. Used by the CLI and the app alike.

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::forest::ForestParams;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::preprocess::{Imputer, stratified_split};
use crate::progress::Reporter;
use crate::store::{Evaluation, Holdout, NewVersion, Registry, Status};
use std::time::Instant;

#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub params: ForestParams,
    /// Share of rows held out when no test file is given.
    pub test_fraction: f64,
    /// Decision threshold stored with the version.
    pub threshold: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            params: ForestParams::default(),
            test_fraction: 0.2,
            threshold: 0.5,
        }
    }
}

/// A trained model with its holdout evaluation, ready to register.
pub struct Trained {
    pub model: Model,
    /// Feature distributions of the training rows (drift reference).
    pub profiles: Vec<crate::monitor::FeatureProfile>,
    pub holdout: Holdout,
    pub metrics: Metrics,
    pub evaluation: Evaluation,
    pub train_rows: usize,
    pub train_positives: usize,
    pub train_seconds: f64,
}

/// Trains on `data` (minus a stratified holdout), or on all of `data` when `test` is
/// given, and evaluates on the holdout / test data.
pub fn train(
    data: &Dataset,
    test: Option<&Dataset>,
    cfg: &TrainConfig,
    reporter: &dyn Reporter,
) -> Result<Trained> {
    cfg.params.validate()?;
    if !(0.0..=1.0).contains(&cfg.threshold) {
        return Err(Error::Invalid(format!(
            "threshold must be between 0 and 1, got {}",
            cfg.threshold
        )));
    }
    let labels = data.require_both_classes()?;
    let (train_idx, test_set, test_idx, evaluation) = match test {
        Some(t) => {
            t.require_both_classes()?;
            (
                (0..data.n_rows()).collect::<Vec<_>>(),
                t,
                (0..t.n_rows()).collect::<Vec<_>>(),
                Evaluation::TestFile {
                    source: t.source.clone(),
                },
            )
        }
        None => {
            let s = stratified_split(labels, cfg.test_fraction, cfg.params.seed)
                .map_err(Error::Invalid)?;
            (
                s.train,
                data,
                s.test,
                Evaluation::Split {
                    test_fraction: cfg.test_fraction,
                    seed: cfg.params.seed,
                },
            )
        }
    };
    let start = Instant::now();
    reporter.stage("imputing", 0, 1);
    let imputer = Imputer::fit(&data.columns, &train_idx);
    let profiles = crate::monitor::profile(&data.columns, &train_idx);
    let cols = imputer.transform_columns(&data.columns, &train_idx);
    let y: Vec<u8> = train_idx.iter().map(|&i| labels[i]).collect();
    let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
    let forest = cfg.params.fit(&refs, &y, None, reporter)?;
    drop(cols);
    let train_seconds = start.elapsed().as_secs_f64();
    let model = Model { imputer, forest };

    reporter.stage("evaluating", 0, 1);
    let test_labels = test_set.require_labels()?;
    let scores = model.predict_dataset(test_set, Some(&test_idx));
    let holdout = Holdout {
        user_ids: test_idx.iter().map(|&i| test_set.user_ids[i]).collect(),
        labels: test_idx.iter().map(|&i| test_labels[i]).collect(),
        scores,
    };
    let metrics = Metrics::from_scores(&holdout.labels, &holdout.scores, cfg.threshold)?;
    reporter.stage("evaluating", 1, 1);
    Ok(Trained {
        model,
        profiles,
        holdout,
        metrics,
        evaluation,
        train_rows: train_idx.len(),
        train_positives: y.iter().filter(|&&l| l == 1).count(),
        train_seconds,
    })
}

impl Trained {
    /// Registers this model as a new version (and activates it if asked).
    pub fn register(
        &self,
        registry: &Registry,
        data: &Dataset,
        cfg: &TrainConfig,
        activate: bool,
    ) -> Result<crate::store::Manifest> {
        Ok(registry.register(
            NewVersion {
                model: &self.model,
                holdout: &self.holdout,
                data: data.source.clone(),
                train_rows: self.train_rows,
                train_positives: self.train_positives,
                evaluation: self.evaluation.clone(),
                params: cfg.params.clone(),
                train_seconds: self.train_seconds,
                threshold: cfg.threshold,
                metrics: self.metrics,
                status: Status::Registered,
                status_reason: None,
                feedback_used: 0,
                gate: None,
                profiles: Some(self.profiles.clone()),
            },
            activate,
        )?)
    }
}

/// Scores a labelled dataset with a model; metrics at `threshold`.
pub fn evaluate(model: &Model, data: &Dataset, threshold: f64) -> Result<(Metrics, Vec<f64>)> {
    let labels = data.require_both_classes()?;
    let scores = model.predict_dataset(data, None);
    let m = Metrics::from_scores(labels, &scores, threshold)?;
    Ok((m, scores))
}
