//! The training pipeline: split (or a separate test file), median imputation fitted on
//! the training rows, forest, holdout evaluation. Used by the CLI and the app alike.

use crate::data::Dataset;
use crate::data::preprocess::{Imputer, stratified_split};
use crate::eval::metrics::Metrics;
use crate::model::Model;
use crate::model::forest::ForestParams;
use crate::model::recipe::{ModelSpec, Recipe};
use crate::ops::error::{Error, Result};
use crate::store::{Evaluation, Holdout, NewVersion, Registry, Status};
use crate::util::progress::Reporter;
use std::time::Instant;

#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub params: ForestParams,
    /// Another kind of model (from the comparison); `None` trains the forest `params`.
    pub recipe: Option<Recipe>,
    /// Share of rows held out when no test file is given.
    pub test_fraction: f64,
    /// Decision threshold stored with the version.
    pub threshold: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            params: ForestParams::default(),
            recipe: None,
            test_fraction: 0.2,
            threshold: 0.5,
        }
    }
}

/// A trained model with its holdout evaluation, ready to register.
pub struct Trained {
    pub model: Model,
    /// Feature distributions of the training rows (drift reference).
    pub profiles: Vec<crate::eval::monitor::FeatureProfile>,
    pub holdout: Holdout,
    pub metrics: Metrics,
    pub evaluation: Evaluation,
    pub train_rows: usize,
    pub train_positives: usize,
    pub train_seconds: f64,
    /// What was fitted (kind, parameters, resampling).
    pub recipe: Recipe,
}

/// The split and the imputed training columns, shared by every model trained on them
/// (the model comparison fits many models on one split).
pub struct Prepared<'a> {
    /// The rows scored for evaluation: the holdout of `data`, or the test file.
    pub test_set: &'a Dataset,
    pub test_idx: Vec<usize>,
    pub evaluation: Evaluation,
    pub imputer: Imputer,
    pub profiles: Vec<crate::eval::monitor::FeatureProfile>,
    /// Imputed training columns and their labels.
    pub columns: Vec<Vec<f64>>,
    pub labels: Vec<u8>,
}

/// Splits (or takes the separate test file), fits the imputer on the training rows and
/// imputes them.
pub fn prepare<'a>(
    data: &'a Dataset,
    test: Option<&'a Dataset>,
    test_fraction: f64,
    seed: u64,
    reporter: &dyn Reporter,
) -> Result<Prepared<'a>> {
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
            let s = stratified_split(labels, test_fraction, seed)?;
            (
                s.train,
                data,
                s.test,
                Evaluation::Split {
                    test_fraction,
                    seed,
                },
            )
        }
    };
    prepare_rows(data, &train_idx, test_set, test_idx, evaluation, reporter)
}

/// Fits the imputer on rows `train_idx` of `data` and imputes them; the model is to be
/// evaluated on rows `test_idx` of `test_set` (a fold of cross-validation, a split).
pub fn prepare_rows<'a>(
    data: &'a Dataset,
    train_idx: &[usize],
    test_set: &'a Dataset,
    test_idx: Vec<usize>,
    evaluation: Evaluation,
    reporter: &dyn Reporter,
) -> Result<Prepared<'a>> {
    let labels = data.require_both_classes()?;
    reporter.stage("imputing", 0, 1);
    let imputer = Imputer::fit(&data.columns, train_idx);
    let profiles = crate::eval::monitor::profile(&data.columns, train_idx);
    let columns = imputer.transform_columns(&data.columns, train_idx);
    Ok(Prepared {
        test_set,
        test_idx,
        evaluation,
        imputer,
        profiles,
        columns,
        labels: train_idx.iter().map(|&i| labels[i]).collect(),
    })
}

impl Prepared<'_> {
    /// Fits `recipe` on the prepared training rows and evaluates it on the test rows.
    pub fn fit(&self, recipe: &Recipe, threshold: f64, reporter: &dyn Reporter) -> Result<Trained> {
        let start = Instant::now();
        let refs: Vec<&[f64]> = self.columns.iter().map(Vec::as_slice).collect();
        let estimator = recipe.fit(&refs, &self.labels, None, reporter)?;
        let train_seconds = start.elapsed().as_secs_f64();
        let mut model = Model {
            imputer: self.imputer.clone(),
            estimator,
            calibration: None,
        };
        // Scored in blocks with progress (KNN takes minutes on a big holdout).
        let test_labels = self.test_set.require_labels()?;
        let n_test = self.test_idx.len();
        let mut scores = Vec::with_capacity(n_test);
        reporter.stage("evaluating", 0, n_test);
        for block in self.test_idx.chunks(8192) {
            if reporter.cancelled() {
                return Err(crate::Error::Cancelled);
            }
            scores.extend(model.predict_dataset(self.test_set, Some(block)));
            reporter.stage("evaluating", scores.len(), n_test);
        }
        let holdout = Holdout {
            user_ids: self
                .test_idx
                .iter()
                .map(|&i| self.test_set.user_ids[i].clone())
                .collect(),
            labels: self.test_idx.iter().map(|&i| test_labels[i]).collect(),
            scores,
        };
        if let Some(i) = holdout.scores.iter().position(|p| !p.is_finite()) {
            return Err(Error::Invalid(format!(
                "{} produced an invalid probability for test row {} (user {})",
                recipe.describe(),
                self.test_idx[i],
                crate::util::text::quote(&holdout.user_ids[i])
            )));
        }
        let metrics = Metrics::from_scores(&holdout.labels, &holdout.scores, threshold)?;
        // Calibrated on the holdout: accounts the model never saw while fitting.
        model.calibrate(&holdout.scores, &holdout.labels)?;
        Ok(Trained {
            model,
            profiles: self.profiles.clone(),
            holdout,
            metrics,
            evaluation: self.evaluation.clone(),
            train_rows: self.labels.len(),
            train_positives: self.labels.iter().filter(|&&l| l == 1).count(),
            train_seconds,
            recipe: recipe.clone(),
        })
    }
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
    crate::ops::versions::check_threshold(cfg.threshold)?;
    let prep = prepare(data, test, cfg.test_fraction, cfg.params.seed, reporter)?;
    let recipe = cfg
        .recipe
        .clone()
        .unwrap_or_else(|| Recipe::forest(cfg.params.clone()));
    prep.fit(&recipe, cfg.threshold, reporter)
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
                params: match &self.recipe.spec {
                    ModelSpec::Forest(p) => p.clone(),
                    _ => cfg.params.clone(),
                },
                recipe: Some(self.recipe.clone()),
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

/// Trains on `data` (evaluated on `test`, or on a holdout of `data`) and registers the
/// model as the new active version.
pub fn train_and_register(
    registry: &Registry,
    data: &Dataset,
    test: Option<&Dataset>,
    cfg: &TrainConfig,
    reporter: &dyn Reporter,
) -> Result<(Trained, crate::store::Manifest)> {
    let trained = train(data, test, cfg, reporter)?;
    reporter.stage("saving", 0, 1);
    let manifest = trained.register(registry, data, cfg, true)?;
    Ok((trained, manifest))
}
