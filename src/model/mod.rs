//! A deployable model: median imputer + estimator (our forest, a baseline from the
//! model comparison, or gradient boosting), and its compact binary file format.
//!
//! Forest file layout: the 8-byte magic `SPSCRF01`, then a postcard-encoded [`ModelFile`]. Trees
//! are stored in preorder without redundancy: a split feature per node (255 = leaf), a
//! threshold and right-child index per internal node, and the two weighted class masses
//! per leaf. Internal masses are sums of their children and are rebuilt on load. Every
//! loaded model is validated structurally (and by checksum in the registry), so a
//! damaged file is an error, never a crash. Baselines (`SPSCBL01`) store their fitted
//! parameters, boosting (`SPSCGB01`) the boosting crate's own dump.

pub mod adaboost;
pub mod baselines;
pub mod boosting;
pub mod calibrate;
pub mod ensemble;
pub mod explain;
pub mod foreign;
pub mod forest;
pub mod lgbm;
pub mod mlp;
pub mod recipe;
pub mod xgboost;

use crate::data::Dataset;
use crate::data::catalog::{N_FEATURES, catalog};
use crate::data::preprocess::Imputer;
use crate::model::baselines::{Baseline, BaselineError, BaselineSpec};
use crate::model::boosting::{BoostError, BoostParams, Boosted};
use crate::model::calibrate::Calibration;
use crate::model::ensemble::Combine;
pub use crate::model::ensemble::MAX_MEMBERS;
use crate::model::explain::{Explanation, Method};
use crate::model::forest::{Forest, ForestError, ForestParams, Tree, tree::LEAF};
use crate::util::progress::{Cancelled, Reporter};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8; 8] = b"SPSCRF01";
/// Baseline models (logistic regression, naive Bayes, KNN): postcard of their parameters.
pub const MAGIC_BASELINE: &[u8; 8] = b"SPSCBL01";
/// Gradient boosting: postcard of the boosting crate's JSON dump and our importance.
pub const MAGIC_BOOSTED: &[u8; 8] = b"SPSCGB01";
/// A calibrated model: this magic, the calibration's length (u32, little-endian), the
/// postcard-encoded [`Calibration`], then the model's own file. Files without it are
/// uncalibrated models (every version saved before calibration existed).
pub const MAGIC_CALIBRATED: &[u8; 8] = b"SPSCCA01";
/// A soft vote: postcard of the members' own files (see [`Ensemble`]).
pub const MAGIC_VOTING: &[u8; 8] = b"SPSCVO01";
/// A hard vote or stacking: postcard of the rule and the members' own files.
pub const MAGIC_ENSEMBLE: &[u8; 8] = b"SPSCEN01";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error("not a spamscope model file (bad header)")]
    BadMagic,
    #[error("model file is truncated or corrupted: {0}")]
    Corrupt(String),
    #[error("model expects columns {0}, but the catalog has X1..X51")]
    Schema(String),
}

/// Why a model could not be fitted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FitError {
    #[error(transparent)]
    Forest(ForestError),
    #[error(transparent)]
    Baseline(BaselineError),
    #[error(transparent)]
    Boost(#[from] BoostError),
    #[error(transparent)]
    Smote(#[from] crate::data::resample::SmoteError),
    /// Parameters out of range, or a fitting library's own failure.
    #[error("{0}")]
    Invalid(String),
    #[error("training was cancelled")]
    Cancelled(#[from] Cancelled),
}

impl From<BaselineError> for FitError {
    fn from(e: BaselineError) -> FitError {
        match e {
            BaselineError::Cancelled => FitError::Cancelled(Cancelled),
            e => FitError::Baseline(e),
        }
    }
}

impl From<ForestError> for FitError {
    fn from(e: ForestError) -> FitError {
        match e {
            ForestError::Cancelled(c) => FitError::Cancelled(c),
            e => FitError::Forest(e),
        }
    }
}

/// The one shape every model kind is fitted through (as linfa does it): parameters are
/// validated, then `fit` takes imputed column-major features, 0/1 labels, optional row
/// weights and a progress reporter, and returns the fitted model.
pub trait Estimate {
    type Fitted;
    fn validate(&self) -> Result<(), FitError>;
    fn fit(
        &self,
        columns: &[&[f64]],
        labels: &[u8],
        weights: Option<&[f64]>,
        reporter: &dyn Reporter,
    ) -> Result<Self::Fitted, FitError>;
}

impl Estimate for ForestParams {
    type Fitted = Forest;
    fn validate(&self) -> Result<(), FitError> {
        Ok(ForestParams::validate(self)?)
    }
    fn fit(
        &self,
        columns: &[&[f64]],
        labels: &[u8],
        weights: Option<&[f64]>,
        reporter: &dyn Reporter,
    ) -> Result<Forest, FitError> {
        Ok(ForestParams::fit(self, columns, labels, weights, reporter)?)
    }
}

impl Estimate for BoostParams {
    type Fitted = Boosted;
    fn validate(&self) -> Result<(), FitError> {
        Ok(BoostParams::validate(self)?)
    }
    fn fit(
        &self,
        columns: &[&[f64]],
        labels: &[u8],
        weights: Option<&[f64]>,
        reporter: &dyn Reporter,
    ) -> Result<Boosted, FitError> {
        Ok(Boosted::fit(self, columns, labels, weights, reporter)?)
    }
}

/// A comparison baseline with the seed of its sampling. The smartcore baselines take
/// no weights: each row is repeated round(weight) times instead.
pub struct BaselineFit<'a> {
    pub spec: &'a BaselineSpec,
    pub seed: u64,
}

impl Estimate for BaselineFit<'_> {
    type Fitted = Baseline;
    fn validate(&self) -> Result<(), FitError> {
        Ok(self.spec.validate()?)
    }
    fn fit(
        &self,
        columns: &[&[f64]],
        labels: &[u8],
        weights: Option<&[f64]>,
        reporter: &dyn Reporter,
    ) -> Result<Baseline, FitError> {
        reporter.stage("fitting", 0, 1);
        let fitted = match weights.filter(|w| w.iter().any(|&x| x != 1.0)) {
            None => self.spec.fit(columns, labels, self.seed, reporter),
            Some(w) => {
                let reps: Vec<usize> = w.iter().map(|x| x.round().max(0.0) as usize).collect();
                let repeat = |c: &[f64]| -> Vec<f64> {
                    c.iter()
                        .zip(&reps)
                        .flat_map(|(v, &r)| std::iter::repeat_n(*v, r))
                        .collect()
                };
                let cols: Vec<Vec<f64>> = columns.iter().map(|c| repeat(c)).collect();
                let y: Vec<u8> = labels
                    .iter()
                    .zip(&reps)
                    .flat_map(|(l, &r)| std::iter::repeat_n(*l, r))
                    .collect();
                let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
                self.spec.fit(&refs, &y, self.seed, reporter)
            }
        }?;
        reporter.stage("fitting", 1, 1);
        Ok(fitted)
    }
}

/// The fitted estimator behind a model.
#[derive(Debug, Clone, PartialEq)]
pub enum Estimator {
    /// Our random forest (also extra-trees and single trees).
    Forest(Forest),
    /// A comparison baseline (logistic regression, naive Bayes, KNN).
    Baseline(Baseline),
    /// Histogram gradient boosting.
    Boosted(Boosted),
    /// A vote or stack of other estimators (none of them an ensemble).
    Ensemble(Ensemble),
}

/// An ensemble of other estimators (none of them an ensemble), combined by its rule
/// (see [`ensemble::Combine`]): a soft or hard vote, or stacking.
#[derive(Debug, Clone, PartialEq)]
pub struct Ensemble {
    pub members: Vec<Estimator>,
    pub combine: Combine,
    /// The members' importance, combined (see [`Combine::importance`]).
    pub importance: Vec<f64>,
}

impl Ensemble {
    pub fn new(members: Vec<Estimator>, combine: Combine) -> Ensemble {
        let importance = combine.importance(members.iter().map(Estimator::importance), N_FEATURES);
        Ensemble {
            members,
            combine,
            importance,
        }
    }

    /// Scores of row-major rows from each member's scores.
    fn combine_rows(&self, per_member: Vec<Vec<f64>>) -> Vec<f64> {
        let n = per_member.first().map_or(0, Vec::len);
        let mut p = vec![0.0; per_member.len()];
        (0..n)
            .map(|i| {
                p.iter_mut().zip(&per_member).for_each(|(a, m)| *a = m[i]);
                self.combine.score(&p)
            })
            .collect()
    }
}

impl Estimator {
    /// What kind of model this is, for people ("random forest, 300 trees").
    pub fn describe(&self) -> String {
        match self {
            Estimator::Forest(f) if f.trees.len() == 1 => "decision tree".into(),
            Estimator::Forest(f) => format!("random forest, {} trees", f.trees.len()),
            Estimator::Baseline(b) => b.name().into(),
            Estimator::Boosted(b) => b.describe(),
            Estimator::Ensemble(v) => format!(
                "{} of {}",
                v.combine.name(),
                v.members
                    .iter()
                    .map(Estimator::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    pub fn importance(&self) -> &[f64] {
        match self {
            Estimator::Forest(f) => &f.importance,
            Estimator::Baseline(b) => &b.importance,
            Estimator::Boosted(b) => &b.importance,
            Estimator::Ensemble(v) => &v.importance,
        }
    }

    pub fn detail_method(&self) -> Method {
        match self {
            Estimator::Forest(_) => Method::TreeShap,
            Estimator::Baseline(b) => b.method(),
            Estimator::Boosted(_) => Method::LogOdds,
            Estimator::Ensemble(v) => match v.combine {
                Combine::Soft => Method::Members,
                Combine::Hard => Method::HardVote,
                Combine::Stacked { .. } => Method::Stacked,
            },
        }
    }

    pub fn bulk_reasons(&self) -> bool {
        match self {
            Estimator::Baseline(b) => {
                !matches!(b.kind, crate::model::baselines::BaselineKind::Knn(_))
            }
            Estimator::Ensemble(v) => v.members.iter().all(Estimator::bulk_reasons),
            _ => true,
        }
    }

    /// Probability of one imputed row.
    pub fn predict(&self, x: &[f64]) -> f64 {
        match self {
            Estimator::Forest(f) => f.predict_proba(x),
            Estimator::Baseline(b) => b.predict(x),
            Estimator::Boosted(b) => b.predict_rows(x, x.len())[0],
            Estimator::Ensemble(v) => v
                .combine
                .score(&v.members.iter().map(|m| m.predict(x)).collect::<Vec<_>>()),
        }
    }

    /// Probabilities of imputed row-major rows.
    pub fn predict_rows(&self, rows: &[f64]) -> Vec<f64> {
        match self {
            Estimator::Forest(f) => f.predict_proba_rows(rows),
            Estimator::Baseline(b) => b.predict_rows(rows, N_FEATURES),
            Estimator::Boosted(b) => b.predict_rows(rows, N_FEATURES),
            Estimator::Ensemble(v) => {
                v.combine_rows(v.members.iter().map(|m| m.predict_rows(rows)).collect())
            }
        }
    }

    /// Explains one imputed row (forests by `method`, the others by their own).
    pub fn explain(&self, x: &[f64], method: Method) -> Explanation {
        match self {
            Estimator::Forest(f) => f.explain(x, method),
            Estimator::Baseline(b) => b.explain(x),
            Estimator::Boosted(b) => b.explain(x),
            Estimator::Ensemble(v) => {
                let parts: Vec<Explanation> =
                    v.members.iter().map(|m| m.explain(x, method)).collect();
                v.combine.explain(&parts)
            }
        }
    }

    /// Fast contributions of imputed row-major rows (`N_FEATURES` per row).
    pub fn attribution_rows(&self, rows: &[f64]) -> Vec<f64> {
        match self {
            Estimator::Forest(f) => f.path_attribution_rows(rows),
            Estimator::Baseline(b) => rows
                .par_chunks_exact(N_FEATURES)
                .flat_map_iter(|r| b.explain(r).contributions)
                .collect(),
            Estimator::Boosted(b) => b.contributions_rows(rows),
            // Soft and hard votes: the members' mean; stacking: its explanation's rule over
            // its members' fast explanations (path attribution for a forest, as the
            // votes' bulk reasons; exact TreeSHAP per account is the detail view's).
            Estimator::Ensemble(v) if !matches!(v.combine, Combine::Stacked { .. }) => {
                ensemble::mean_of(v.members.iter().map(|m| m.attribution_rows(rows)))
            }
            Estimator::Ensemble(_) => self
                .explain_rows(rows, Method::PathAttribution)
                .into_iter()
                .flat_map(|e| e.contributions)
                .collect(),
        }
    }

    /// Explanations of imputed row-major rows, in parallel (as [`Estimator::explain`]
    /// row by row).
    pub fn explain_rows(&self, rows: &[f64], method: Method) -> Vec<Explanation> {
        match self {
            // Exact TreeSHAP in bulk: the rows shared among the threads, each row's trees
            // walked on one (the same values as `explain`, bit for bit).
            Estimator::Forest(f) if method == Method::TreeShap => {
                let phi = f.tree_shap_rows(rows);
                let prediction = f.predict_proba_rows(rows);
                let base = f.expected_value();
                phi.chunks_exact(N_FEATURES)
                    .zip(prediction)
                    .map(|(c, prediction)| Explanation {
                        method: Method::TreeShap,
                        base,
                        contributions: c.to_vec(),
                        prediction,
                    })
                    .collect()
            }
            Estimator::Ensemble(v) => {
                let per: Vec<Vec<Explanation>> = v
                    .members
                    .iter()
                    .map(|m| m.explain_rows(rows, method))
                    .collect();
                (0..per.first().map_or(0, Vec::len))
                    .map(|i| {
                        let parts: Vec<Explanation> = per.iter().map(|p| p[i].clone()).collect();
                        v.combine.explain(&parts)
                    })
                    .collect()
            }
            _ => rows
                .par_chunks_exact(N_FEATURES)
                .map(|r| self.explain(r, method))
                .collect(),
        }
    }
}

/// Imputation + estimator: what scoring needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub imputer: Imputer,
    pub estimator: Estimator,
    /// Raw score → probability, fitted on held-out accounts; None for versions saved
    /// before calibration existed (their score is shown as it is).
    pub calibration: Option<Calibration>,
}

impl Model {
    pub fn forest(imputer: Imputer, forest: Forest) -> Model {
        Model {
            imputer,
            estimator: Estimator::Forest(forest),
            calibration: None,
        }
    }

    /// The calibrated probability of a raw score (the score itself when the version
    /// has no calibration).
    pub fn probability(&self, score: f64) -> f64 {
        self.calibration.as_ref().map_or(score, |c| c.apply(score))
    }

    /// Calibrated probabilities of raw scores.
    pub fn probabilities(&self, scores: &[f64]) -> Vec<f64> {
        scores.iter().map(|&s| self.probability(s)).collect()
    }

    /// Fits the calibration on held-out raw scores and labels.
    pub fn calibrate(
        &mut self,
        scores: &[f64],
        labels: &[u8],
    ) -> Result<(), calibrate::CalibrationError> {
        self.calibration = Some(Calibration::fit(scores, labels)?);
        Ok(())
    }

    /// The forest, for forest models.
    pub fn as_forest(&self) -> Option<&Forest> {
        match &self.estimator {
            Estimator::Forest(f) => Some(f),
            _ => None,
        }
    }

    /// What kind of model this is, for people ("random forest, 300 trees").
    pub fn describe(&self) -> String {
        self.estimator.describe()
    }

    /// Importance per feature, summing to 1 (impurity decrease for forests, mean
    /// absolute contribution for the others, the members' mean for a vote).
    pub fn importance(&self) -> &[f64] {
        self.estimator.importance()
    }

    /// The explanation method used for single accounts (the most exact one available).
    pub fn detail_method(&self) -> Method {
        self.estimator.detail_method()
    }

    /// The method bulk scoring's contributions actually use when `requested` is asked
    /// for: forests honour it, other models have one method of their own.
    pub fn bulk_method(&self, requested: Method) -> Method {
        match &self.estimator {
            Estimator::Forest(_) => requested,
            Estimator::Boosted(_) if requested == Method::PathAttribution => {
                Method::PathAttribution
            }
            _ => self.detail_method(),
        }
    }

    /// Whether bulk scoring can afford per-account reasons: KNN's occlusion needs 53
    /// neighbour searches per account, far too slow for whole files.
    pub fn bulk_reasons(&self) -> bool {
        self.estimator.bulk_reasons()
    }

    /// Probability that the account is a spammer; `raw` may contain NaN (missing).
    pub fn predict_one(&self, raw: &[f64]) -> f64 {
        let mut x = raw.to_vec();
        self.imputer.apply_row(&mut x);
        self.estimator.predict(&x)
    }

    /// One account's probability (as [`Model::predict_one`]) and its fast per-feature
    /// contributions (as [`Model::attribution_rows`]); a forest gets both from one
    /// walk of its trees.
    pub fn predict_attributed(&self, raw: &[f64]) -> (f64, Vec<f64>) {
        let mut x = raw.to_vec();
        self.imputer.apply_row(&mut x);
        match &self.estimator {
            Estimator::Forest(f) => f.predict_attributed_one(&x),
            e => (e.predict(&x), e.attribution_rows(&x)),
        }
    }

    /// Probabilities for imputed row-major rows.
    pub fn predict_rows(&self, rows: &[f64]) -> Vec<f64> {
        self.estimator.predict_rows(rows)
    }

    /// Probabilities for the given rows of a dataset (all rows when `idx` is None).
    pub fn predict_dataset(&self, d: &Dataset, idx: Option<&[usize]>) -> Vec<f64> {
        let all: Vec<usize>;
        let idx = match idx {
            Some(i) => i,
            None => {
                all = (0..d.n_rows()).collect();
                &all
            }
        };
        // Bounded blocks keep the row-major copy small for big files.
        const BLOCK: usize = 65_536;
        let mut out = Vec::with_capacity(idx.len());
        for chunk in idx.chunks(BLOCK) {
            let rows = self.imputer.transform_rows(&d.columns, chunk);
            out.extend(self.predict_rows(&rows));
        }
        out
    }

    /// Explains one account. Forests use `method`; other models their own method
    /// (the explanation says which).
    pub fn explain_one(&self, raw: &[f64], method: Method) -> Explanation {
        let mut x = raw.to_vec();
        self.imputer.apply_row(&mut x);
        self.estimator.explain(&x, method)
    }

    /// Fast per-row contributions for bulk scoring (row-major imputed rows in,
    /// `N_FEATURES` contributions per row out): path attribution for forests, the
    /// model's own explanation otherwise.
    pub fn attribution_rows(&self, rows: &[f64]) -> Vec<f64> {
        self.estimator.attribution_rows(rows)
    }

    /// Probabilities and [`Model::attribution_rows`]' contributions of imputed
    /// row-major rows; a forest gets both from one walk of its trees (the same
    /// probabilities as [`Model::predict_rows`], bit for bit).
    pub fn predict_attributed_rows(&self, rows: &[f64]) -> (Vec<f64>, Vec<f64>) {
        match &self.estimator {
            Estimator::Forest(f) => f.predict_attributed_rows(rows),
            _ => (self.predict_rows(rows), self.attribution_rows(rows)),
        }
    }

    /// Explanations of many rows (row-major imputed rows, as [`Model::attribution_rows`]
    /// takes them), in parallel; the same as [`Model::explain_one`] row by row.
    pub fn explain_rows(&self, rows: &[f64], method: Method) -> Vec<Explanation> {
        self.estimator.explain_rows(rows, method)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(c) = &self.calibration {
            let cal = postcard::to_allocvec(c).expect("serialising to memory cannot fail");
            out.extend_from_slice(MAGIC_CALIBRATED);
            out.extend_from_slice(&(cal.len() as u32).to_le_bytes());
            out.extend(cal);
        }
        out.extend(encode(&self.estimator, &self.imputer.medians));
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let Some(rest) = bytes.strip_prefix(MAGIC_CALIBRATED) else {
            return Model::from_bytes_uncalibrated(bytes);
        };
        let short = || ModelError::Corrupt("truncated calibration".into());
        let len = rest.get(..4).ok_or_else(short)?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let cal = rest.get(4..4 + len).ok_or_else(short)?;
        let calibration: Calibration = postcard::from_bytes(cal)
            .map_err(|e| ModelError::Corrupt(format!("calibration: {e}")))?;
        calibration
            .validate()
            .map_err(|e| ModelError::Corrupt(e.to_string()))?;
        let mut model = Model::from_bytes_uncalibrated(&rest[4 + len..])?;
        model.calibration = Some(calibration);
        Ok(model)
    }

    fn from_bytes_uncalibrated(bytes: &[u8]) -> Result<Model, ModelError> {
        let corrupt = |e: postcard::Error| ModelError::Corrupt(e.to_string());
        let ids: Vec<&str> = catalog().ids().collect();
        let check = |feature_ids: &[String], medians: &[f64]| -> Result<Imputer, ModelError> {
            if feature_ids != ids {
                // Quoted and cut: the ids come from the file (a newline or a megabyte).
                return Err(ModelError::Schema(crate::util::text::quote(
                    &feature_ids.join(","),
                )));
            }
            if medians.len() != N_FEATURES || medians.iter().any(|m| !m.is_finite()) {
                return Err(ModelError::Corrupt("invalid imputation medians".into()));
            }
            Ok(Imputer {
                medians: medians.to_vec(),
            })
        };
        if let Some(body) = bytes.strip_prefix(MAGIC_BASELINE) {
            let file: BaselineFile = postcard::from_bytes(body).map_err(corrupt)?;
            let imputer = check(&file.feature_ids, &file.medians)?;
            file.baseline
                .validate(N_FEATURES)
                .map_err(|e| ModelError::Corrupt(e.to_string()))?;
            return Ok(Model {
                imputer,
                estimator: Estimator::Baseline(file.baseline),
                calibration: None,
            });
        }
        let ensemble = if let Some(body) = bytes.strip_prefix(MAGIC_VOTING) {
            let file: VotingFile = postcard::from_bytes(body).map_err(corrupt)?;
            Some(EnsembleFile {
                feature_ids: file.feature_ids,
                medians: file.medians,
                combine: Combine::Soft,
                members: file.members,
            })
        } else if let Some(body) = bytes.strip_prefix(MAGIC_ENSEMBLE) {
            Some(postcard::from_bytes::<EnsembleFile>(body).map_err(corrupt)?)
        } else {
            None
        };
        if let Some(file) = ensemble {
            let imputer = check(&file.feature_ids, &file.medians)?;
            if !(2..=MAX_MEMBERS).contains(&file.members.len()) {
                return Err(ModelError::Corrupt(format!(
                    "an ensemble needs 2 to {MAX_MEMBERS} members, not {}",
                    file.members.len()
                )));
            }
            file.combine
                .validate(file.members.len())
                .map_err(ModelError::Corrupt)?;
            let mut members = Vec::with_capacity(file.members.len());
            for (k, m) in file.members.iter().enumerate() {
                // Members are plain models: a nested ensemble or calibration is refused
                // before it is read, so a hostile file cannot recurse.
                if [MAGIC_VOTING, MAGIC_ENSEMBLE, MAGIC_CALIBRATED]
                    .iter()
                    .any(|magic| m.starts_with(*magic))
                {
                    return Err(ModelError::Corrupt(format!(
                        "member {k} is itself an ensemble or calibrated"
                    )));
                }
                let member = Model::from_bytes_uncalibrated(m)
                    .map_err(|e| ModelError::Corrupt(format!("member {k}: {e}")))?;
                if member.imputer != imputer {
                    return Err(ModelError::Corrupt(format!(
                        "member {k} imputes differently from the ensemble"
                    )));
                }
                members.push(member.estimator);
            }
            return Ok(Model {
                imputer,
                estimator: Estimator::Ensemble(Ensemble::new(members, file.combine)),
                calibration: None,
            });
        }
        if let Some(body) = bytes.strip_prefix(MAGIC_BOOSTED) {
            let file: BoostedFile = postcard::from_bytes(body).map_err(corrupt)?;
            let imputer = check(&file.feature_ids, &file.medians)?;
            let b = Boosted::from_json(&file.json, file.importance)
                .map_err(|e| ModelError::Corrupt(e.to_string()))?;
            if b.n_features != N_FEATURES {
                return Err(ModelError::Corrupt(format!(
                    "the boosted trees are for {} features, not {N_FEATURES}",
                    b.n_features
                )));
            }
            return Ok(Model {
                imputer,
                estimator: Estimator::Boosted(b),
                calibration: None,
            });
        }
        let body = bytes.strip_prefix(MAGIC).ok_or(ModelError::BadMagic)?;
        let file: ModelFile = postcard::from_bytes(body).map_err(corrupt)?;
        let imputer = check(&file.feature_ids, &file.medians)?;
        let trees = file
            .trees
            .into_iter()
            .enumerate()
            .map(|(k, t)| t.into_tree().map_err(|e| format!("tree {k}: {e}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ModelError::Corrupt)?;
        let forest = Forest {
            n_features: N_FEATURES,
            trees,
            importance: file.importance,
        };
        forest
            .validate()
            .map_err(|e| ModelError::Corrupt(e.to_string()))?;
        Ok(Model::forest(imputer, forest))
    }
}

/// An uncalibrated model file: the estimator's magic and its postcard body.
fn encode(estimator: &Estimator, medians: &[f64]) -> Vec<u8> {
    let feature_ids: Vec<String> = catalog().ids().map(str::to_string).collect();
    let medians = medians.to_vec();
    let (magic, body) = match estimator {
        Estimator::Forest(forest) => (
            MAGIC,
            postcard::to_allocvec(&ModelFile {
                feature_ids,
                medians,
                importance: forest.importance.clone(),
                trees: forest.trees.iter().map(CompactTree::from_tree).collect(),
            }),
        ),
        Estimator::Baseline(b) => (
            MAGIC_BASELINE,
            postcard::to_allocvec(&BaselineFile {
                feature_ids,
                medians,
                baseline: b.clone(),
            }),
        ),
        Estimator::Boosted(b) => (
            MAGIC_BOOSTED,
            postcard::to_allocvec(&BoostedFile {
                feature_ids,
                medians,
                importance: b.importance.clone(),
                json: b.to_json(),
            }),
        ),
        // Soft votes keep the file they had before the other ensembles existed.
        Estimator::Ensemble(v) if v.combine == Combine::Soft => (
            MAGIC_VOTING,
            postcard::to_allocvec(&VotingFile {
                members: v.members.iter().map(|m| encode(m, &medians)).collect(),
                feature_ids,
                medians,
            }),
        ),
        Estimator::Ensemble(v) => (
            MAGIC_ENSEMBLE,
            postcard::to_allocvec(&EnsembleFile {
                members: v.members.iter().map(|m| encode(m, &medians)).collect(),
                combine: v.combine.clone(),
                feature_ids,
                medians,
            }),
        ),
    };
    let mut out = magic.to_vec();
    out.extend(body.expect("serialising to memory cannot fail"));
    out
}

/// A soft vote: each member's own uncalibrated file (with the vote's imputation).
#[derive(Serialize, Deserialize)]
struct VotingFile {
    feature_ids: Vec<String>,
    medians: Vec<f64>,
    members: Vec<Vec<u8>>,
}

/// A hard vote or stacking: its rule and each member's own uncalibrated file.
#[derive(Serialize, Deserialize)]
struct EnsembleFile {
    feature_ids: Vec<String>,
    medians: Vec<f64>,
    combine: Combine,
    members: Vec<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct BaselineFile {
    feature_ids: Vec<String>,
    medians: Vec<f64>,
    baseline: Baseline,
}

#[derive(Serialize, Deserialize)]
struct BoostedFile {
    feature_ids: Vec<String>,
    medians: Vec<f64>,
    importance: Vec<f64>,
    /// The boosting crate's own model dump.
    json: String,
}

#[derive(Serialize, Deserialize)]
struct ModelFile {
    feature_ids: Vec<String>,
    medians: Vec<f64>,
    importance: Vec<f64>,
    trees: Vec<CompactTree>,
}

#[derive(Serialize, Deserialize)]
struct CompactTree {
    /// Split feature per node, 255 for a leaf.
    feature: Vec<u8>,
    /// Per internal node, in order.
    threshold: Vec<f64>,
    right: Vec<u32>,
    /// Per leaf, in order: weighted mass of class 0 and class 1.
    leaf_mass: Vec<[f64; 2]>,
}

const LEAF_BYTE: u8 = 255;

impl CompactTree {
    fn from_tree(t: &Tree) -> CompactTree {
        let mut c = CompactTree {
            feature: Vec::with_capacity(t.n_nodes()),
            threshold: Vec::new(),
            right: Vec::new(),
            leaf_mass: Vec::new(),
        };
        for i in 0..t.n_nodes() {
            if t.is_leaf(i) {
                c.feature.push(LEAF_BYTE);
                c.leaf_mass.push(t.class_weight(i));
            } else {
                c.feature.push(t.feature(i) as u8);
                c.threshold.push(t.threshold(i));
                c.right.push(t.children(i).1 as u32);
            }
        }
        c
    }

    fn into_tree(self) -> Result<Tree, ForestError> {
        let n = self.feature.len();
        let internal = self.feature.iter().filter(|&&f| f != LEAF_BYTE).count();
        if self.threshold.len() != internal
            || self.right.len() != internal
            || self.leaf_mass.len() != n - internal
        {
            return Err(ForestError::Malformed("node arrays do not match".into()));
        }
        let mut feature = Vec::with_capacity(n);
        let mut threshold = Vec::with_capacity(n);
        let mut right = Vec::with_capacity(n);
        let mut class_weight = Vec::with_capacity(n);
        let (mut k, mut l) = (0, 0);
        for &f in &self.feature {
            if f == LEAF_BYTE {
                feature.push(LEAF);
                threshold.push(0.0);
                right.push(0);
                class_weight.push(self.leaf_mass[l]);
                l += 1;
            } else {
                feature.push(f as u16);
                threshold.push(self.threshold[k]);
                right.push(self.right[k]);
                class_weight.push([0.0; 2]);
                k += 1;
            }
        }
        Tree::from_parts(feature, threshold, right, class_weight, N_FEATURES)
    }
}

/// A small trained model for the tests of this and other modules.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::data::synth::{SynthParams, default_dataset};
    use crate::model::forest::ForestParams;
    use crate::util::progress::NoProgress;

    pub(crate) fn small_model() -> (Model, Dataset) {
        small_model_seeded(9)
    }

    /// Like [`small_model`], on synthetic data drawn with `seed`.
    pub(crate) fn small_model_seeded(seed: u64) -> (Model, Dataset) {
        let d = default_dataset(SynthParams { rows: 3000, seed });
        let idx: Vec<usize> = (0..d.n_rows()).collect();
        let imputer = Imputer::fit(&d.columns, &idx);
        let cols = imputer.transform_columns(&d.columns, &idx);
        let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        let forest = ForestParams {
            n_trees: 8,
            max_depth: Some(8),
            ..Default::default()
        }
        .fit(&refs, d.labels.as_ref().unwrap(), None, &NoProgress)
        .unwrap();
        (Model::forest(imputer, forest), d)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::small_model;
    use super::*;
    use crate::util::progress::NoProgress;

    /// A forest file holding one right-leaning chain of `depth` splits, structurally
    /// valid in every other respect.
    fn chain_model_bytes(depth: usize) -> Vec<u8> {
        let mut c = CompactTree {
            feature: Vec::new(),
            threshold: Vec::new(),
            right: Vec::new(),
            leaf_mass: Vec::new(),
        };
        for k in 0..depth {
            // Node 2k splits; its left child 2k+1 is a leaf, its right child 2k+2.
            c.feature.push((k % N_FEATURES) as u8);
            c.threshold.push(k as f64);
            c.right.push((2 * k + 2) as u32);
            c.feature.push(LEAF_BYTE);
            c.leaf_mass.push([1.0, (k % 3) as f64]);
        }
        c.feature.push(LEAF_BYTE);
        c.leaf_mass.push([1.0, 1.0]);
        let file = ModelFile {
            feature_ids: catalog().ids().map(str::to_string).collect(),
            medians: vec![0.0; N_FEATURES],
            importance: vec![1.0 / N_FEATURES as f64; N_FEATURES],
            trees: vec![c],
        };
        let mut bytes = MAGIC.to_vec();
        bytes.extend(postcard::to_allocvec(&file).unwrap());
        bytes
    }

    /// A 20,000-deep tree loaded and made exact TreeSHAP allocate gigabytes; loaded
    /// trees may be as deep as the trainer grows them (64), no deeper.
    #[test]
    fn trees_deeper_than_the_trainer_grows_are_refused_on_load() {
        let e = Model::from_bytes(&chain_model_bytes(20_000)).unwrap_err();
        assert!(e.to_string().contains("deeper than 64"), "{e}");
        let e = Model::from_bytes(&chain_model_bytes(65)).unwrap_err();
        assert!(e.to_string().contains("deeper than 64"), "{e}");
        let m = Model::from_bytes(&chain_model_bytes(64)).expect("64 levels load");
        let x = vec![0.5; N_FEATURES];
        let e = m.explain_one(&x, Method::TreeShap);
        assert!((e.base + e.contributions.iter().sum::<f64>() - m.predict_one(&x)).abs() < 1e-9);
    }

    /// Nodes that do not form one tree in preorder (a shared subtree would make
    /// TreeSHAP walk exponentially many paths) are refused.
    #[test]
    fn nodes_that_are_not_one_tree_in_preorder_are_refused() {
        // 0 splits into 1 and 2; 1 splits into 2 and 3: node 2 has two parents.
        let c = CompactTree {
            feature: vec![0, 1, LEAF_BYTE, LEAF_BYTE],
            threshold: vec![0.0, 0.0],
            right: vec![2, 3],
            leaf_mass: vec![[1.0, 0.0], [0.0, 1.0]],
        };
        let e = c.into_tree().unwrap_err();
        assert!(e.to_string().contains("preorder"), "{e}");
    }

    #[test]
    fn round_trip_is_exact() {
        let (m, d) = small_model();
        let bytes = m.to_bytes();
        let back = Model::from_bytes(&bytes).unwrap();
        assert_eq!(back, m);
        let p1 = m.predict_dataset(&d, None);
        let p2 = back.predict_dataset(&d, None);
        assert_eq!(p1, p2);
        // Missing values are imputed: the row with blank X13 scores like its imputed copy.
        let mut raw = d.row(0);
        raw[12] = f64::NAN;
        let mut imputed = raw.clone();
        imputed[12] = m.imputer.medians[12];
        assert_eq!(m.predict_one(&raw), m.predict_one(&imputed));
    }

    /// A small forest, boosting and logistic regression: members of the ensembles tested.
    fn small_members() -> Vec<crate::model::recipe::ModelSpec> {
        vec![
            crate::model::recipe::ModelSpec::Forest(ForestParams {
                n_trees: 5,
                ..ForestParams::default()
            }),
            crate::model::recipe::ModelSpec::Boosted(BoostParams {
                iterations: 20,
                ..BoostParams::default()
            }),
            crate::model::recipe::ModelSpec::Baseline(
                crate::model::baselines::BaselineSpec::Logistic { alpha: 1.0 },
            ),
        ]
    }

    #[test]
    fn every_model_kind_round_trips_through_its_file() {
        use crate::model::baselines::BaselineSpec;
        use crate::model::boosting::BoostParams;
        use crate::model::recipe::{ModelSpec, Recipe};
        let (forest_model, d) = small_model();
        let idx: Vec<usize> = (0..d.n_rows()).collect();
        let cols = forest_model.imputer.transform_columns(&d.columns, &idx);
        let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        let y = d.labels.as_ref().unwrap();
        let specs = [
            ModelSpec::Baseline(BaselineSpec::Logistic { alpha: 1.0 }),
            ModelSpec::Baseline(BaselineSpec::GaussianNb),
            ModelSpec::Baseline(BaselineSpec::BernoulliNb { binarize: 0.0 }),
            ModelSpec::Baseline(BaselineSpec::Knn { k: 5, sample: 500 }),
            ModelSpec::Baseline(BaselineSpec::Ridge { alpha: 1.0 }),
            ModelSpec::Bagged {
                forest: ForestParams {
                    n_trees: 5,
                    ..ForestParams::default()
                },
                estimators: 3,
            },
            ModelSpec::Baseline(BaselineSpec::Sgd {
                alpha: 1e-4,
                epochs: 50,
            }),
            ModelSpec::Boosted(BoostParams {
                iterations: 20,
                ..BoostParams::default()
            }),
            ModelSpec::Baseline(BaselineSpec::AdaBoost {
                estimators: 50,
                learning_rate: 1.0,
            }),
            ModelSpec::Baseline(BaselineSpec::Mlp {
                hidden: [20, 10],
                alpha: 1e-4,
                max_epochs: 30,
            }),
            ModelSpec::Voting {
                members: vec![
                    ModelSpec::Forest(ForestParams {
                        n_trees: 5,
                        ..ForestParams::default()
                    }),
                    ModelSpec::Boosted(BoostParams {
                        iterations: 20,
                        ..BoostParams::default()
                    }),
                    ModelSpec::Baseline(BaselineSpec::Logistic { alpha: 1.0 }),
                ],
                hard: false,
            },
            ModelSpec::Voting {
                members: small_members(),
                hard: true,
            },
            ModelSpec::Stacking {
                members: small_members(),
                folds: 3,
            },
        ];
        // A file of `magic` and `body` is refused as corrupt, saying `what`.
        let refused = |magic: &[u8; 8], body: Vec<u8>, what: &str| {
            let mut bad = magic.to_vec();
            bad.extend(body);
            let r = Model::from_bytes(&bad);
            assert!(
                matches!(&r, Err(ModelError::Corrupt(w)) if w.contains(what)),
                "{r:?}"
            );
        };
        for spec in specs {
            let recipe = Recipe {
                spec,
                smote_k: None,
                seed: 1,
            };
            let mut m = Model {
                imputer: forest_model.imputer.clone(),
                estimator: recipe.fit(&refs, y, None, &NoProgress).unwrap(),
                calibration: None,
            };
            // Calibrated and not: both round-trip.
            let scores = m.predict_dataset(&d, None);
            let uncalibrated = Model::from_bytes(&m.to_bytes()).unwrap();
            assert_eq!(uncalibrated, m);
            m.calibrate(&scores, y).unwrap();
            let bytes = m.to_bytes();
            let back = Model::from_bytes(&bytes).unwrap();
            assert_eq!(back, m, "{}", recipe.describe());
            let rows: Vec<usize> = (0..200).collect();
            let p = m.predict_dataset(&d, Some(&rows));
            assert_eq!(p, back.predict_dataset(&d, Some(&rows)));
            assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
            let auc = crate::eval::metrics::Ranked::new(y, &m.predict_dataset(&d, None)).roc_auc();
            // Gaussian naive Bayes is weak on these heavy-tailed counts (scikit-learn's
            // GaussianNB gives the same 0.674 on this data).
            let floor = if matches!(recipe.spec, ModelSpec::Baseline(BaselineSpec::GaussianNb)) {
                0.6
            } else {
                0.7
            };
            assert!(auc > floor, "{} AUC {auc}", recipe.describe());
            // Missing values are imputed before scoring, for every kind.
            let mut raw = d.row(0);
            raw[12] = f64::NAN;
            let mut imputed = raw.clone();
            imputed[12] = m.imputer.medians[12];
            assert_eq!(m.predict_one(&raw), m.predict_one(&imputed));
            // Explanations: additive kinds add up to the prediction.
            let e = m.explain_one(&d.row(3), Method::TreeShap);
            // Bulk contributions: the same as the single-account ones for the additive
            // baselines; path attribution for boosting, which adds up to the same total.
            let rows = m.imputer.transform_rows(&d.columns, &[2, 3]);
            let bulk = m.attribution_rows(&rows);
            if let Estimator::Boosted(b) = &m.estimator {
                // Additive from path attribution's own base (the trees' root weights).
                let x = &rows[N_FEATURES..];
                let c = b.booster.predict_contributions(
                    &forust_ml::Matrix::new(x, 1, N_FEATURES),
                    forust_ml::gradientbooster::ContributionsMethod::Weight,
                    false,
                );
                let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
                let p = sig(c.iter().sum::<f64>());
                assert!((p - m.predict_one(&d.row(3))).abs() < 1e-9);
                let total: f64 = bulk[N_FEATURES..].iter().sum();
                assert!(
                    (total - (p - sig(c[N_FEATURES]))).abs() < 1e-9,
                    "boosted bulk total {total}"
                );
                assert_eq!(
                    m.bulk_method(Method::PathAttribution),
                    Method::PathAttribution
                );
            } else if e.method == Method::LogOdds {
                for (a, b) in bulk[N_FEATURES..].iter().zip(&e.contributions) {
                    assert!((a - b).abs() < 1e-9, "{}", recipe.describe());
                }
            }
            if matches!(
                e.method,
                Method::LogOdds | Method::Members | Method::Stacked
            ) {
                let sum = e.base + e.contributions.iter().sum::<f64>();
                assert!((sum - e.prediction).abs() < 1e-9, "{}", recipe.describe());
            }
            if let Estimator::Ensemble(v) = &m.estimator
                && v.combine == Combine::Soft
            {
                // The vote and its explanation are its members' means.
                let x = &rows[N_FEATURES..];
                let parts: Vec<Explanation> = v
                    .members
                    .iter()
                    .map(|m| m.explain(x, Method::TreeShap))
                    .collect();
                assert_eq!(parts[0].method, Method::TreeShap);
                assert_eq!(parts[2].method, Method::LogOdds);
                let mean = |f: &dyn Fn(&Explanation) -> f64| parts.iter().map(f).sum::<f64>() / 3.0;
                assert!((e.prediction - mean(&|p| p.prediction)).abs() < 1e-12);
                assert!((e.base - mean(&|p| p.base)).abs() < 1e-12);
                for j in 0..N_FEATURES {
                    assert!((e.contributions[j] - mean(&|p| p.contributions[j])).abs() < 1e-12);
                }
                assert_eq!(m.detail_method(), Method::Members);
                // A vote inside a vote, or a member that imputes otherwise, is refused.
                let member = encode(&v.members[0], &m.imputer.medians);
                let nested = encode(&m.estimator, &m.imputer.medians);
                let mut other = m.imputer.medians.clone();
                other[0] += 1.0;
                for (members, what) in [
                    (vec![member.clone(), nested], "itself an ensemble"),
                    (
                        vec![member.clone(), encode(&v.members[2], &other)],
                        "imputes differently",
                    ),
                    (vec![member], "2 to 16 members"),
                ] {
                    let body = postcard::to_allocvec(&VotingFile {
                        feature_ids: catalog().ids().map(str::to_string).collect(),
                        medians: m.imputer.medians.clone(),
                        members,
                    });
                    refused(MAGIC_VOTING, body.unwrap(), what);
                }
            }
            if let Estimator::Ensemble(v) = &m.estimator
                && let Combine::Stacked { weights, .. } = &v.combine
            {
                assert_eq!(m.detail_method(), Method::Stacked);
                assert_eq!(weights.len(), 3);
                // A stack whose weights do not match its members, or holding an
                // ensemble, is refused.
                let member = encode(&v.members[0], &m.imputer.medians);
                let nested = encode(&m.estimator, &m.imputer.medians);
                for (combine, members, what) in [
                    (
                        Combine::Stacked {
                            weights: vec![1.0],
                            intercept: 0.0,
                        },
                        vec![member.clone(), member.clone()],
                        "one finite weight per member",
                    ),
                    (
                        Combine::Stacked {
                            weights: vec![1.0, f64::NAN],
                            intercept: 0.0,
                        },
                        vec![member.clone(), member.clone()],
                        "one finite weight per member",
                    ),
                    (Combine::Hard, vec![member, nested], "itself an ensemble"),
                ] {
                    let body = postcard::to_allocvec(&EnsembleFile {
                        feature_ids: catalog().ids().map(str::to_string).collect(),
                        medians: m.imputer.medians.clone(),
                        combine,
                        members,
                    });
                    refused(MAGIC_ENSEMBLE, body.unwrap(), what);
                }
            }
            assert!((e.prediction - m.predict_one(&d.row(3))).abs() < 1e-9);
            // Explanations in bulk are the single-account ones.
            let idx = [2, 3, 17];
            let rows = m.imputer.transform_rows(&d.columns, &idx);
            for (&r, many) in idx.iter().zip(m.explain_rows(&rows, Method::TreeShap)) {
                assert_eq!(
                    many,
                    m.explain_one(&d.row(r), Method::TreeShap),
                    "{}",
                    recipe.describe()
                );
            }
            // Truncated files are errors, never panics.
            for cut in [8, bytes.len() / 2, bytes.len() - 1] {
                let r = Model::from_bytes(&bytes[..cut]);
                assert!(
                    matches!(r, Err(ModelError::Corrupt(_))),
                    "cut at {cut}: {r:?}"
                );
            }
        }
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        let (m, _) = small_model();
        let bytes = m.to_bytes();
        assert_eq!(Model::from_bytes(b"hello"), Err(ModelError::BadMagic));
        for cut in [8, 9, 100, bytes.len() / 2, bytes.len() - 1] {
            let r = Model::from_bytes(&bytes[..cut]);
            assert!(
                matches!(r, Err(ModelError::Corrupt(_))),
                "cut at {cut}: {r:?}"
            );
        }
        // Flip bytes all over the body: every result is an error or a valid model.
        for pos in (8..bytes.len()).step_by(bytes.len() / 97 + 1) {
            let mut b = bytes.clone();
            b[pos] ^= 0x5A;
            if let Ok(model) = Model::from_bytes(&b) {
                model.as_forest().unwrap().validate().unwrap();
                let _ = model.predict_one(&[0.0; N_FEATURES]);
            }
        }
        // Columns the file names otherwise (a newline, a megabyte) are quoted and cut:
        // the error stays one short line.
        let body: ModelFile = postcard::from_bytes(&bytes[MAGIC.len()..]).unwrap();
        for bad in ["X\n1".to_string(), "X".repeat(1 << 20)] {
            let mut file = ModelFile {
                feature_ids: body.feature_ids.clone(),
                medians: body.medians.clone(),
                importance: body.importance.clone(),
                trees: Vec::new(),
            };
            file.feature_ids[0] = bad;
            let mut b = MAGIC.to_vec();
            b.extend(postcard::to_allocvec(&file).unwrap());
            let e = Model::from_bytes(&b).unwrap_err().to_string();
            assert!(matches!(Model::from_bytes(&b), Err(ModelError::Schema(_))));
            assert!(!e.contains('\n') && e.len() < 200, "{e}");
        }
    }
}
