//! The comparison's baseline models, fitted with smartcore: logistic regression,
//! Bernoulli naive Bayes and k-nearest neighbours; Gaussian naive Bayes, the ridge
//! classifier and the SGD classifier are fitted here (see [`GaussianNb`] for why;
//! smartcore has no classifier for the other two, see [`fit_ridge`] and [`fit_sgd`]).
//!
//! smartcore does the fitting (and the neighbour search); what a fitted model needs for
//! scoring is kept here as plain parameters, so that the model file format is ours and
//! the explanations are exact where the model allows it. Logistic regression and both
//! naive Bayes models are additive in log-odds: `logit(x) = b + sum_j t_j(x_j)`, so each
//! feature's term, centred on its training mean, is its exact log-odds contribution.
//! KNN has no such structure; its explanation is by occlusion.

use crate::data::preprocess::Standardizer;
use crate::model::adaboost::AdaBoost;
use crate::model::explain::{Explanation, Method};
use crate::model::mlp::Mlp;
use crate::util::progress::Reporter;
use crate::util::rng::SplitMix64;
use serde::{Deserialize, Serialize};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::metrics::distance::euclidian::Euclidian;
use smartcore::neighbors::knn_classifier::{KNNClassifier, KNNClassifierParameters};
use std::sync::OnceLock;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BaselineError {
    #[error("{model} could not be fitted: {reason}")]
    Fit { model: &'static str, reason: String },
    #[error("invalid parameter: {0}")]
    Param(String),
    /// A loaded baseline whose parameters are inconsistent.
    #[error("{0}")]
    Malformed(String),
    #[error("training was cancelled")]
    Cancelled,
}

/// Largest standardised value a loaded KNN sample may hold.
const MAX_Z: f64 = 1e6;

/// Rows used to centre log-odds terms and to estimate importance.
const REFERENCE_ROWS: usize = 20_000;

/// Logistic regression on standardised features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    pub standardizer: Standardizer,
    pub coef: Vec<f64>,
    pub intercept: f64,
}

/// Gaussian naive Bayes (per-class mean and variance per feature).
///
/// Fitted here rather than by smartcore's `GaussianNB`: that one gathers each class's
/// rows through a chain of boxed iterators one level deeper per row, which is
/// quadratic in the number of rows (130 s for 32,000 rows; the full training set would
/// take hours). The estimates are the same (a test checks them against smartcore's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaussianNb {
    pub log_prior: [f64; 2],
    pub mean: [Vec<f64>; 2],
    pub var: [Vec<f64>; 2],
}

impl GaussianNb {
    /// Class priors from the label counts, per-class mean and (population) variance,
    /// plus scikit-learn's `var_smoothing`: 1e-9 of the largest feature variance.
    pub fn fit(columns: &[&[f64]], labels: &[u8]) -> GaussianNb {
        let n = labels.len();
        let count = [
            labels.iter().filter(|&&l| l == 0).count(),
            labels.iter().filter(|&&l| l == 1).count(),
        ];
        let mut mean = [Vec::new(), Vec::new()];
        let mut var = [Vec::new(), Vec::new()];
        let mut max_var = 0.0f64;
        for col in columns {
            let (mut s, mut m) = ([0.0f64; 2], [0.0f64; 2]);
            for (v, &l) in col.iter().zip(labels) {
                s[l as usize] += v;
            }
            for c in 0..2 {
                m[c] = s[c] / count[c].max(1) as f64;
            }
            let mut q = [0.0f64; 2];
            for (v, &l) in col.iter().zip(labels) {
                let d = v - m[l as usize];
                q[l as usize] += d * d;
            }
            let all_mean = (s[0] + s[1]) / n.max(1) as f64;
            let all_var = col
                .iter()
                .map(|v| (v - all_mean) * (v - all_mean))
                .sum::<f64>()
                / n.max(1) as f64;
            max_var = max_var.max(all_var);
            for c in 0..2 {
                mean[c].push(m[c]);
                var[c].push(q[c] / count[c].max(1) as f64);
            }
        }
        let eps = (1e-9 * max_var).max(1e-300);
        for v in var.iter_mut() {
            v.iter_mut().for_each(|x| *x += eps);
        }
        GaussianNb {
            log_prior: [
                (count[0] as f64 / n as f64).ln(),
                (count[1] as f64 / n as f64).ln(),
            ],
            mean,
            var,
        }
    }
}

/// Bernoulli naive Bayes on `x > binarize` indicators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BernoulliNb {
    pub binarize: f64,
    pub log_prior: [f64; 2],
    /// log P(x_j > binarize | class).
    pub log_p: [Vec<f64>; 2],
    /// log P(x_j <= binarize | class).
    pub log_q: [Vec<f64>; 2],
}

/// k nearest neighbours (Euclidean, standardised features) over a stored sample of the
/// training rows; the probability is the share of spammers among the k neighbours.
#[derive(Serialize, Deserialize)]
pub struct Knn {
    pub k: usize,
    pub standardizer: Standardizer,
    /// Standardised sample rows, row-major.
    pub rows: Vec<f64>,
    pub labels: Vec<u32>,
    /// The training mean of each feature (occlusion reference), in raw units.
    pub reference: Vec<f64>,
    #[serde(skip)]
    index: OnceLock<Result<KnnIndex, String>>,
}

type KnnIndex = KNNClassifier<f64, u32, DenseMatrix<f64>, Vec<u32>, Euclidian<f64>>;

impl std::fmt::Debug for Knn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Knn")
            .field("k", &self.k)
            .field("rows", &self.labels.len())
            .finish()
    }
}

impl Clone for Knn {
    fn clone(&self) -> Self {
        Knn {
            k: self.k,
            standardizer: self.standardizer.clone(),
            rows: self.rows.clone(),
            labels: self.labels.clone(),
            reference: self.reference.clone(),
            index: OnceLock::new(),
        }
    }
}

impl PartialEq for Knn {
    fn eq(&self, o: &Self) -> bool {
        self.k == o.k
            && self.standardizer == o.standardizer
            && self.rows == o.rows
            && self.labels == o.labels
            && self.reference == o.reference
    }
}

/// A fitted baseline with the centring of its log-odds terms and its importance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub kind: BaselineKind,
    /// Training mean of each log-odds term (zeros for KNN).
    pub term_mean: Vec<f64>,
    /// Mean absolute contribution per feature on training rows, summing to 1.
    pub importance: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BaselineKind {
    Logistic(Logistic),
    GaussianNb(GaussianNb),
    BernoulliNb(BernoulliNb),
    Knn(Knn),
    /// scikit-learn's `RidgeClassifier(class_weight="balanced")`: least squares on ±1
    /// targets; the score is the logistic function of its decision value.
    Ridge(Logistic),
    /// scikit-learn's `SGDClassifier(class_weight="balanced")`: a linear SVM (hinge
    /// loss, L2) by stochastic gradient descent; the score is the logistic function of
    /// its decision value.
    Sgd(Logistic),
    /// scikit-learn's `AdaBoostClassifier` (SAMME, decision stumps); additive in
    /// log-odds, one term per feature (see [`crate::model::adaboost`]).
    AdaBoost(AdaBoost),
    /// scikit-learn's `MLPClassifier` (see [`crate::model::mlp`]); explained by
    /// occlusion.
    Mlp(Mlp),
}

/// What to fit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum BaselineSpec {
    /// L2 penalty `alpha` (1.0 is close to scikit-learn's C = 1).
    Logistic {
        alpha: f64,
    },
    GaussianNb,
    /// Features are 1 when greater than `binarize`.
    BernoulliNb {
        binarize: f64,
    },
    /// `sample` training rows (stratified, seeded) are kept as neighbours.
    Knn {
        k: usize,
        sample: usize,
    },
    /// L2 penalty `alpha` (scikit-learn's default 1.0), balanced class weights.
    Ridge {
        alpha: f64,
    },
    /// L2 penalty `alpha` (scikit-learn's default 1e-4), balanced class weights, at
    /// most `epochs` passes.
    Sgd {
        alpha: f64,
        epochs: usize,
    },
    /// SAMME over `estimators` decision stumps (scikit-learn's defaults: 50, learning
    /// rate 1), no class weights.
    AdaBoost {
        estimators: usize,
        learning_rate: f64,
    },
    /// Two ReLU hidden layers of these widths, L2 `alpha`, at most `max_epochs` passes
    /// (scikit-learn's defaults otherwise; see [`crate::model::mlp`]).
    Mlp {
        hidden: [usize; 2],
        alpha: f64,
        max_epochs: usize,
    },
}

pub(crate) fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Maps log-odds contributions that take the score from `l0` to `l` onto probability:
/// returns (sigmoid(l0), sigmoid(l), slope), where multiplying each contribution by the
/// slope (the secant of the logistic function between the two, its derivative when they
/// meet) makes them add up exactly to the change in probability, keeping their signs,
/// ranking and proportions.
pub(crate) fn secant(l0: f64, l: f64) -> (f64, f64, f64) {
    let (p0, p) = (sigmoid(l0), sigmoid(l));
    let slope = if (l - l0).abs() > 1e-9 {
        (p - p0) / (l - l0)
    } else {
        p0 * (1.0 - p0)
    };
    (p0, p, slope)
}

fn fit_err(model: &'static str) -> impl Fn(smartcore::error::Failed) -> BaselineError {
    move |e| BaselineError::Fit {
        model,
        reason: e.to_string(),
    }
}

/// Column-major f64 matrix for smartcore.
fn matrix(columns: &[Vec<f64>], n: usize) -> Result<DenseMatrix<f64>, BaselineError> {
    let values: Vec<f64> = columns.iter().flatten().copied().collect();
    DenseMatrix::new(n, columns.len(), values, true).map_err(fit_err("matrix"))
}

impl BaselineSpec {
    pub fn validate(&self) -> Result<(), BaselineError> {
        match *self {
            BaselineSpec::Logistic { alpha } if !(alpha.is_finite() && alpha >= 0.0) => Err(
                BaselineError::Param(format!("alpha must be >= 0, got {alpha}")),
            ),
            BaselineSpec::BernoulliNb { binarize } if !binarize.is_finite() => Err(
                BaselineError::Param("binarize threshold must be finite".into()),
            ),
            BaselineSpec::Knn { k, sample } if k == 0 || sample < k => Err(BaselineError::Param(
                format!("KNN needs k >= 1 and at least k sample rows (k {k}, sample {sample})"),
            )),
            BaselineSpec::Ridge { alpha } if !(alpha.is_finite() && alpha >= 0.0) => Err(
                BaselineError::Param(format!("alpha must be >= 0, got {alpha}")),
            ),
            BaselineSpec::Sgd { alpha, epochs }
                if !(alpha.is_finite() && alpha > 0.0 && (1..=1000).contains(&epochs)) =>
            {
                Err(BaselineError::Param(format!(
                    "SGD needs alpha > 0 and 1 to 1000 epochs (alpha {alpha}, epochs {epochs})"
                )))
            }
            BaselineSpec::AdaBoost {
                estimators,
                learning_rate,
            } if !((1..=1000).contains(&estimators)
                && learning_rate.is_finite()
                && learning_rate > 0.0) =>
            {
                Err(BaselineError::Param(format!(
                    "AdaBoost needs 1 to 1000 estimators and a learning rate > 0 (estimators {estimators}, learning rate {learning_rate})"
                )))
            }
            BaselineSpec::Mlp {
                hidden,
                alpha,
                max_epochs,
            } if !(hidden.iter().all(|h| (1..=1024).contains(h))
                && alpha.is_finite()
                && alpha >= 0.0
                && (1..=10_000).contains(&max_epochs)) =>
            {
                Err(BaselineError::Param(format!(
                    "the neural network needs 1 to 1024 units per layer, alpha >= 0 and 1 to 10000 epochs (layers {hidden:?}, alpha {alpha}, epochs {max_epochs})"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Fits on imputed, column-major features and 0/1 labels (both classes present);
    /// the neural network reports its epochs to `reporter` and stops when cancelled.
    pub fn fit(
        &self,
        columns: &[&[f64]],
        labels: &[u8],
        seed: u64,
        reporter: &dyn Reporter,
    ) -> Result<Baseline, BaselineError> {
        self.validate()?;
        let n = labels.len();
        let y: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
        let kind = match *self {
            BaselineSpec::Logistic { alpha } => {
                let st = Standardizer::fit(columns);
                let z = standardised(columns, &st);
                let x = matrix(&z, n)?;
                drop(z);
                let params =
                    smartcore::linear::logistic_regression::LogisticRegressionParameters::default()
                        .with_alpha(alpha);
                let lr = smartcore::linear::logistic_regression::LogisticRegression::<
                    f64,
                    u32,
                    DenseMatrix<f64>,
                    Vec<u32>,
                >::fit(&x, &y, params)
                .map_err(fit_err("logistic regression"))?;
                use smartcore::linalg::basic::arrays::Array;
                let coef: Vec<f64> = (0..columns.len())
                    .map(|f| *lr.coefficients().get((0, f)))
                    .collect();
                let intercept = *lr.intercept().get((0, 0));
                // smartcore orders classes ascending, so the model's positive class is 1.
                BaselineKind::Logistic(Logistic {
                    standardizer: st,
                    coef,
                    intercept,
                })
            }
            BaselineSpec::GaussianNb => BaselineKind::GaussianNb(GaussianNb::fit(columns, labels)),
            BaselineSpec::BernoulliNb { binarize } => {
                let owned: Vec<Vec<f64>> = columns.iter().map(|c| c.to_vec()).collect();
                let x = matrix(&owned, n)?;
                drop(owned);
                let params = smartcore::naive_bayes::bernoulli::BernoulliNBParameters::default()
                    .with_binarize(binarize);
                let nb = smartcore::naive_bayes::bernoulli::BernoulliNB::<
                    f64,
                    u32,
                    DenseMatrix<f64>,
                    Vec<u32>,
                >::fit(&x, &y, params)
                .map_err(fit_err("Bernoulli naive Bayes"))?;
                let counts = nb.class_count();
                let total = (counts[0] + counts[1]) as f64;
                let lp = nb.feature_log_prob();
                let q = |c: usize| {
                    lp[c]
                        .iter()
                        .map(|&l| (-l.exp()).ln_1p())
                        .collect::<Vec<_>>()
                };
                BaselineKind::BernoulliNb(BernoulliNb {
                    binarize,
                    log_prior: [
                        (counts[0] as f64 / total).ln(),
                        (counts[1] as f64 / total).ln(),
                    ],
                    log_p: [lp[0].clone(), lp[1].clone()],
                    log_q: [q(0), q(1)],
                })
            }
            BaselineSpec::Knn { k, sample } => {
                let st = Standardizer::fit(columns);
                let picked = stratified_sample(labels, sample, seed);
                let mut rows = Vec::with_capacity(picked.len() * columns.len());
                for &i in &picked {
                    rows.extend(columns.iter().enumerate().map(|(f, c)| st.z(f, c[i])));
                }
                let knn = Knn {
                    k,
                    reference: st.mean.clone(),
                    standardizer: st,
                    labels: picked.iter().map(|&i| y[i]).collect(),
                    rows,
                    index: OnceLock::new(),
                };
                knn.index().map_err(|reason| BaselineError::Fit {
                    model: "KNN",
                    reason,
                })?;
                BaselineKind::Knn(knn)
            }
            BaselineSpec::Ridge { alpha } => {
                BaselineKind::Ridge(fit_ridge(columns, labels, alpha)?)
            }
            BaselineSpec::Sgd { alpha, epochs } => {
                BaselineKind::Sgd(fit_sgd(columns, labels, alpha, epochs, seed))
            }
            BaselineSpec::Mlp {
                hidden,
                alpha,
                max_epochs,
            } => {
                let check = |epoch: usize, loss: f64| {
                    reporter.stage(&format!("epoch (loss {loss:.4})"), epoch, max_epochs);
                    !reporter.cancelled()
                };
                match Mlp::fit(columns, labels, hidden, alpha, max_epochs, seed, &check) {
                    Some(m) => BaselineKind::Mlp(m),
                    None if reporter.cancelled() => return Err(BaselineError::Cancelled),
                    None => {
                        return Err(BaselineError::Fit {
                            model: "neural network",
                            reason: "its training loss became infinite".into(),
                        });
                    }
                }
            }
            BaselineSpec::AdaBoost {
                estimators,
                learning_rate,
            } => BaselineKind::AdaBoost(
                AdaBoost::fit(columns, labels, None, estimators, learning_rate).map_err(|e| {
                    BaselineError::Fit {
                        model: "AdaBoost",
                        reason: e.to_string(),
                    }
                })?,
            ),
        };
        let mut model = Baseline {
            term_mean: vec![0.0; columns.len()],
            importance: vec![0.0; columns.len()],
            kind,
        };
        model.calibrate_terms(columns, seed);
        Ok(model)
    }
}

/// Occlusion: each feature's contribution is the probability of the account minus that
/// of the account with the feature set to the reference's value; the base is the
/// reference account's probability. `predict` scores `n` rows (row-major, in the space
/// `x` and `reference` are in) at once: the account, the account with feature f
/// occluded for every f, then the reference.
fn occlusion(
    x: &[f64],
    reference: &[f64],
    predict: impl FnOnce(Vec<f64>, usize) -> Vec<f64>,
) -> Explanation {
    let nf = x.len();
    let mut batch = x.to_vec();
    let mut row = x.to_vec();
    for f in 0..nf {
        row[f] = reference[f];
        batch.extend_from_slice(&row);
        row[f] = x[f];
    }
    batch.extend_from_slice(reference);
    let p = predict(batch, nf + 2);
    Explanation {
        method: Method::Occlusion,
        base: p[nf + 1],
        contributions: (0..nf).map(|f| p[0] - p[f + 1]).collect(),
        prediction: p[0],
    }
}

/// scikit-learn's "balanced" class weights of `labels`.
fn balanced_weights(labels: &[u8]) -> [f64; 2] {
    let pos = labels.iter().filter(|&&l| l == 1).count();
    crate::data::preprocess::balanced_weights(labels.len() - pos, pos)
}

/// The standardised columns (row `i` of feature `f` at `z[f][i]`).
fn standardised(columns: &[&[f64]], st: &Standardizer) -> Vec<Vec<f64>> {
    columns
        .iter()
        .enumerate()
        .map(|(f, c)| c.iter().map(|&v| st.z(f, v)).collect())
        .collect()
}

/// The ridge classifier: weighted least squares of ±1 targets on the standardised
/// features with an unpenalised intercept, `(ZᵀWZ + αI) β = ZᵀW y` on weighted-centred
/// data, solved by Gaussian elimination with partial pivoting (51 unknowns: no
/// linear-algebra crate needed; smartcore's ridge is a regressor without weights).
pub fn fit_ridge(columns: &[&[f64]], labels: &[u8], alpha: f64) -> Result<Logistic, BaselineError> {
    let st = Standardizer::fit(columns);
    let z = standardised(columns, &st);
    let cw = balanced_weights(labels);
    let w: Vec<f64> = labels.iter().map(|&l| cw[usize::from(l)]).collect();
    let y: Vec<f64> = labels
        .iter()
        .map(|&l| if l == 1 { 1.0 } else { -1.0 })
        .collect();
    let sw: f64 = w.iter().sum();
    let nf = z.len();
    let zbar: Vec<f64> = z
        .iter()
        .map(|c| c.iter().zip(&w).map(|(v, w)| v * w).sum::<f64>() / sw)
        .collect();
    let ybar = y.iter().zip(&w).map(|(v, w)| v * w).sum::<f64>() / sw;
    // The normal equations, upper triangle then mirrored.
    let mut a = vec![vec![0.0; nf + 1]; nf];
    for f in 0..nf {
        for g in f..nf {
            let s: f64 = (0..labels.len())
                .map(|i| w[i] * (z[f][i] - zbar[f]) * (z[g][i] - zbar[g]))
                .sum();
            a[f][g] = s;
            a[g][f] = s;
        }
        a[f][f] += alpha;
        a[f][nf] = (0..labels.len())
            .map(|i| w[i] * (z[f][i] - zbar[f]) * (y[i] - ybar))
            .sum();
    }
    let beta = solve(a).ok_or_else(|| BaselineError::Fit {
        model: "Ridge classifier",
        reason: "the normal equations are singular (constant features with alpha 0?)".into(),
    })?;
    let intercept = ybar - beta.iter().zip(&zbar).map(|(b, m)| b * m).sum::<f64>();
    Ok(Logistic {
        standardizer: st,
        coef: beta,
        intercept,
    })
}

/// Solves the augmented system `a` (n rows of n + 1) by Gaussian elimination with
/// partial pivoting; None when singular.
pub(crate) fn solve(mut a: Vec<Vec<f64>>) -> Option<Vec<f64>> {
    let n = a.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        let (top, rest) = a.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for row in rest.iter_mut() {
            let factor = row[col] / pivot_row[col];
            if factor != 0.0 {
                for (v, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                    *v -= factor * p;
                }
            }
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (a[row][n] - s) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// The SGD classifier as scikit-learn runs it by default: hinge loss, L2 penalty
/// `alpha`, the "optimal" learning rate `1 / (alpha (t0 + t))` with Bottou's `t0`,
/// rows shuffled each epoch (seeded), class weights balanced, the intercept updated
/// without penalty; it stops after `epochs` passes or when the epoch's mean loss has
/// not improved by 1e-3 for 5 passes (scikit-learn's `tol` and `n_iter_no_change`).
pub fn fit_sgd(
    columns: &[&[f64]],
    labels: &[u8],
    alpha: f64,
    epochs: usize,
    seed: u64,
) -> Logistic {
    let st = Standardizer::fit(columns);
    let z = standardised(columns, &st);
    let nf = z.len();
    let n = labels.len();
    let cw = balanced_weights(labels);
    // Row-major copy: each step reads one row.
    let mut rows = vec![0.0; n * nf];
    for (f, c) in z.iter().enumerate() {
        for (i, v) in c.iter().enumerate() {
            rows[i * nf + f] = *v;
        }
    }
    drop(z);
    let typw = (1.0 / alpha.sqrt()).sqrt();
    let t0 = 1.0 / (typw * alpha);
    let (mut w, mut b) = (vec![0.0; nf], 0.0);
    // `w` is kept as `scale * w` so the penalty's shrinking costs one multiply.
    let mut scale = 1.0;
    let mut t = 0.0;
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed ^ 0x7367_645f_6869_6e67);
    let (mut best, mut stale) = (f64::INFINITY, 0);
    for _ in 0..epochs {
        rng.shuffle(&mut order);
        let mut loss = 0.0;
        for &i in &order {
            let eta = 1.0 / (alpha * (t0 + t));
            let x = &rows[i * nf..(i + 1) * nf];
            let y = if labels[i] == 1 { 1.0 } else { -1.0 };
            let d = scale * x.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + b;
            let margin = y * d;
            scale *= 1.0 - eta * alpha;
            if margin < 1.0 {
                let step = eta * cw[usize::from(labels[i])] * y;
                for (wf, xf) in w.iter_mut().zip(x) {
                    *wf += step * xf / scale;
                }
                b += step;
                loss += cw[usize::from(labels[i])] * (1.0 - margin);
            }
            if scale < 1e-9 {
                w.iter_mut().for_each(|v| *v *= scale);
                scale = 1.0;
            }
            t += 1.0;
        }
        let loss = loss / n as f64;
        if loss > best - 1e-3 {
            stale += 1;
            if stale >= 5 {
                break;
            }
        } else {
            stale = 0;
        }
        best = best.min(loss);
    }
    Logistic {
        standardizer: st,
        coef: w.iter().map(|v| v * scale).collect(),
        intercept: b,
    }
}

/// Up to `k` row indices, each class represented in proportion, seeded.
fn stratified_sample(labels: &[u8], k: usize, seed: u64) -> Vec<usize> {
    let n = labels.len();
    if k >= n {
        return (0..n).collect();
    }
    let mut rng = SplitMix64::new(seed ^ 0x6b6e_6e5f_7361_6d70);
    let mut out = Vec::with_capacity(k);
    for class in [0u8, 1] {
        let mut idx: Vec<usize> = (0..n).filter(|&i| labels[i] == class).collect();
        let take = ((idx.len() as f64 * k as f64 / n as f64).round() as usize).clamp(1, idx.len());
        rng.shuffle(&mut idx);
        out.extend_from_slice(&idx[..take]);
    }
    out.sort_unstable();
    out
}

impl Knn {
    fn index(&self) -> Result<&KnnIndex, String> {
        self.index
            .get_or_init(|| {
                let nf = self.standardizer.mean.len();
                let n = self.labels.len();
                let x =
                    DenseMatrix::new(n, nf, self.rows.clone(), false).map_err(|e| e.to_string())?;
                let params = KNNClassifierParameters::default().with_k(self.k.min(n));
                KNNClassifier::fit(&x, &self.labels, params).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Probabilities for row-major standardised rows.
    fn proba_z(&self, z: Vec<f64>, n: usize) -> Vec<f64> {
        let nf = self.standardizer.mean.len();
        let Ok(index) = self.index() else {
            return vec![f64::NAN; n];
        };
        let Ok(x) = DenseMatrix::new(n, nf, z, false) else {
            return vec![f64::NAN; n];
        };
        match index.predict_proba(&x) {
            // Classes are sorted; with both present, column 1 is the spammer class.
            Ok(p) => p
                .into_iter()
                .map(|r| r.get(1).copied().unwrap_or(0.0))
                .collect(),
            Err(_) => vec![f64::NAN; n],
        }
    }
}

impl Baseline {
    pub fn name(&self) -> &'static str {
        match self.kind {
            BaselineKind::Logistic(_) => "logistic regression",
            BaselineKind::GaussianNb(_) => "Gaussian naive Bayes",
            BaselineKind::BernoulliNb(_) => "Bernoulli naive Bayes",
            BaselineKind::Knn(_) => "k nearest neighbours",
            BaselineKind::Ridge(_) => "Ridge classifier",
            BaselineKind::Sgd(_) => "SGD classifier",
            BaselineKind::AdaBoost(_) => "AdaBoost",
            BaselineKind::Mlp(_) => "neural network (MLP)",
        }
    }

    /// Log-odds intercept and per-feature terms for additive models; `None` for KNN.
    fn terms(&self, x: &[f64], t: &mut [f64]) -> Option<f64> {
        match &self.kind {
            BaselineKind::Logistic(m) | BaselineKind::Ridge(m) | BaselineKind::Sgd(m) => {
                for (f, v) in x.iter().enumerate() {
                    t[f] = m.coef[f] * m.standardizer.z(f, *v);
                }
                Some(m.intercept)
            }
            BaselineKind::GaussianNb(m) => {
                let ll = |c: usize, f: usize, v: f64| {
                    let var = m.var[c][f];
                    let d = v - m.mean[c][f];
                    -0.5 * (2.0 * std::f64::consts::PI * var).ln() - d * d / (2.0 * var)
                };
                for (f, v) in x.iter().enumerate() {
                    t[f] = ll(1, f, *v) - ll(0, f, *v);
                }
                Some(m.log_prior[1] - m.log_prior[0])
            }
            BaselineKind::BernoulliNb(m) => {
                for (f, v) in x.iter().enumerate() {
                    t[f] = if *v > m.binarize {
                        m.log_p[1][f] - m.log_p[0][f]
                    } else {
                        m.log_q[1][f] - m.log_q[0][f]
                    };
                }
                Some(m.log_prior[1] - m.log_prior[0])
            }
            BaselineKind::AdaBoost(m) => Some(m.terms(x, t)),
            BaselineKind::Knn(_) | BaselineKind::Mlp(_) => None,
        }
    }

    /// Probability of the spammer class for one imputed row.
    pub fn predict(&self, x: &[f64]) -> f64 {
        match &self.kind {
            BaselineKind::Knn(m) => m.proba_z(m.standardizer.row(x), 1)[0],
            BaselineKind::Mlp(m) => m.predict_rows(x)[0],
            _ => {
                let mut t = vec![0.0; x.len()];
                let b = self.terms(x, &mut t).unwrap_or(0.0);
                sigmoid(b + t.iter().sum::<f64>())
            }
        }
    }

    /// Probabilities for row-major imputed rows (`nf` values per row).
    pub fn predict_rows(&self, rows: &[f64], nf: usize) -> Vec<f64> {
        use rayon::prelude::*;
        match &self.kind {
            BaselineKind::Knn(m) => rows
                .par_chunks(nf * 256)
                .flat_map_iter(|chunk| {
                    let z: Vec<f64> = chunk
                        .chunks_exact(nf)
                        .flat_map(|r| m.standardizer.row(r))
                        .collect();
                    m.proba_z(z, chunk.len() / nf)
                })
                .collect(),
            BaselineKind::Mlp(m) => rows
                .par_chunks(nf * 4096)
                .flat_map_iter(|chunk| m.predict_rows(chunk))
                .collect(),
            _ => rows.par_chunks_exact(nf).map(|r| self.predict(r)).collect(),
        }
    }

    /// Centres the log-odds terms and measures importance on (up to) 20,000 rows.
    fn calibrate_terms(&mut self, columns: &[&[f64]], seed: u64) {
        let n = columns.first().map_or(0, |c| c.len());
        let nf = columns.len();
        let mut rng = SplitMix64::new(seed ^ 0x7465_726d);
        let rows: Vec<usize> = if n <= REFERENCE_ROWS {
            (0..n).collect()
        } else {
            (0..REFERENCE_ROWS).map(|_| rng.below(n)).collect()
        };
        let mut sum = vec![0.0; nf];
        let mut abs = vec![0.0; nf];
        let mut t = vec![0.0; nf];
        let row = |i: usize| columns.iter().map(|c| c[i]).collect::<Vec<f64>>();
        if matches!(self.kind, BaselineKind::Knn(_) | BaselineKind::Mlp(_)) {
            // Occlusion on 100 rows: KNN queries are expensive.
            for &i in rows.iter().take(100) {
                let e = self.explain(&row(i));
                for (a, c) in abs.iter_mut().zip(&e.contributions) {
                    *a += c.abs();
                }
            }
        } else {
            for &i in &rows {
                self.terms(&row(i), &mut t);
                for f in 0..nf {
                    sum[f] += t[f];
                    abs[f] += t[f].abs();
                }
            }
            let m = rows.len().max(1) as f64;
            self.term_mean = sum.iter().map(|s| s / m).collect();
            // Importance of a centred term: mean |t - mean|, estimated in a second pass.
            abs.fill(0.0);
            for &i in &rows {
                self.terms(&row(i), &mut t);
                for f in 0..nf {
                    abs[f] += (t[f] - self.term_mean[f]).abs();
                }
            }
        }
        let total: f64 = abs.iter().sum();
        self.importance = if total > 0.0 {
            abs.iter().map(|a| a / total).collect()
        } else {
            vec![1.0 / nf as f64; nf]
        };
    }

    /// How [`Baseline::explain`] explains: occlusion for KNN, log-odds terms otherwise.
    pub fn method(&self) -> Method {
        match self.kind {
            BaselineKind::Knn(_) | BaselineKind::Mlp(_) => Method::Occlusion,
            _ => Method::LogOdds,
        }
    }

    /// Explanation of one imputed row. Additive models: each feature's centred log-odds
    /// term, mapped to probability by the secant slope of the logistic function between
    /// the reference and the row (so the contributions add up exactly to the prediction
    /// minus the base, keep their signs and ranking, and stay bounded). KNN: occlusion,
    /// the change in probability when the feature is set to its training mean.
    pub fn explain(&self, x: &[f64]) -> Explanation {
        let nf = x.len();
        match &self.kind {
            BaselineKind::Knn(m) => {
                let base_z: Vec<f64> = m
                    .reference
                    .iter()
                    .enumerate()
                    .map(|(f, &v)| m.standardizer.z(f, v))
                    .collect();
                return occlusion(&m.standardizer.row(x), &base_z, |batch, n| {
                    m.proba_z(batch, n)
                });
            }
            BaselineKind::Mlp(m) => {
                return occlusion(x, &m.standardizer.mean, |batch, _| m.predict_rows(&batch));
            }
            _ => {}
        }
        let mut t = vec![0.0; nf];
        let b = self.terms(x, &mut t).unwrap_or(0.0);
        let c: Vec<f64> = t.iter().zip(&self.term_mean).map(|(a, m)| a - m).collect();
        let l0 = b + self.term_mean.iter().sum::<f64>();
        let l = l0 + c.iter().sum::<f64>();
        let (p0, p, slope) = secant(l0, l);
        Explanation {
            method: self.method(),
            base: p0,
            contributions: c.iter().map(|v| v * slope).collect(),
            prediction: p,
        }
    }

    /// Structural check of a loaded model.
    pub fn validate(&self, nf: usize) -> Result<(), BaselineError> {
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        let ok_len = |v: &[f64]| v.len() == nf;
        if !(ok_len(&self.term_mean) && ok_len(&self.importance) && finite(&self.term_mean)) {
            return Err(BaselineError::Malformed(
                "baseline arrays have the wrong length".into(),
            ));
        }
        let ok = match &self.kind {
            BaselineKind::Logistic(m) | BaselineKind::Ridge(m) | BaselineKind::Sgd(m) => {
                ok_len(&m.coef)
                    && finite(&m.coef)
                    && m.intercept.is_finite()
                    && ok_len(&m.standardizer.mean)
                    && ok_len(&m.standardizer.scale)
                    // A NaN or infinite mean or scale answers NaN for every account
                    // (found by the model fuzz test).
                    && finite(&m.standardizer.mean)
                    && m.standardizer.scale.iter().all(|s| s.is_finite() && *s > 0.0)
            }
            BaselineKind::GaussianNb(m) => {
                (0..2).all(|c| {
                    ok_len(&m.mean[c])
                        && ok_len(&m.var[c])
                        && finite(&m.mean[c])
                        && m.var[c].iter().all(|v| v.is_finite() && *v > 0.0)
                }) && finite(&m.log_prior)
            }
            BaselineKind::BernoulliNb(m) => {
                (0..2).all(|c| {
                    ok_len(&m.log_p[c])
                        && ok_len(&m.log_q[c])
                        && finite(&m.log_p[c])
                        && finite(&m.log_q[c])
                }) && finite(&m.log_prior)
            }
            BaselineKind::Knn(m) => {
                m.k >= 1
                    && !m.labels.is_empty()
                    && m.rows.len() == m.labels.len() * nf
                    && m.labels.iter().all(|&l| l <= 1)
                    && m.labels.contains(&1)
                    && m.labels.contains(&0)
                    && ok_len(&m.reference)
                    && ok_len(&m.standardizer.mean)
                    && ok_len(&m.standardizer.scale)
                    && finite(&m.reference)
                    && finite(&m.standardizer.mean)
                    && m.standardizer.scale.iter().all(|s| s.is_finite() && *s > 0.0)
                    // Standardised rows: z-scores, finite and of sane size (the
                    // neighbour index recurses without end on NaN or overflowing
                    // distances).
                    && m.rows.iter().all(|z| z.abs() <= MAX_Z)
            }
            BaselineKind::AdaBoost(m) => m.valid(nf),
            BaselineKind::Mlp(m) => m.valid(nf),
        };
        if ok {
            Ok(())
        } else {
            Err(BaselineError::Malformed(format!(
                "{} parameters are invalid",
                self.name()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::preprocess::Imputer;
    use crate::data::synth::{SynthParams, default_dataset};
    use crate::util::progress::NoProgress;

    fn data(rows: usize) -> (Vec<Vec<f64>>, Vec<u8>) {
        let d = default_dataset(SynthParams { rows, seed: 5 });
        let idx: Vec<usize> = (0..d.n_rows()).collect();
        let cols = Imputer::fit(&d.columns, &idx).transform_columns(&d.columns, &idx);
        (cols, d.labels.unwrap())
    }

    fn refs(c: &[Vec<f64>]) -> Vec<&[f64]> {
        c.iter().map(Vec::as_slice).collect()
    }

    fn row(c: &[Vec<f64>], i: usize) -> Vec<f64> {
        c.iter().map(|col| col[i]).collect()
    }

    #[test]
    fn ridge_solves_its_normal_equations() {
        let (cols, y) = data(3000);
        let alpha = 1.0;
        let m = fit_ridge(&refs(&cols), &y, alpha).unwrap();
        // Stationarity of the weighted, penalised least squares: for each feature,
        // sum_i w_i (y_i - d_i) z_if = alpha beta_f, and sum_i w_i (y_i - d_i) = 0.
        let cw = balanced_weights(&y);
        let nf = cols.len();
        let mut grad = vec![0.0; nf + 1];
        for i in 0..y.len() {
            let z: Vec<f64> = (0..nf).map(|f| m.standardizer.z(f, cols[f][i])).collect();
            let d = m.intercept + z.iter().zip(&m.coef).map(|(a, b)| a * b).sum::<f64>();
            let r = cw[usize::from(y[i])] * (if y[i] == 1 { 1.0 } else { -1.0 } - d);
            for (g, zf) in grad.iter_mut().zip(&z) {
                *g += r * zf;
            }
            grad[nf] += r;
        }
        for (f, (g, c)) in grad.iter().zip(&m.coef).enumerate() {
            assert!(
                (g - alpha * c).abs() < 1e-6,
                "feature {f}: {g} vs {}",
                alpha * c
            );
        }
        assert!(grad[nf].abs() < 1e-6, "{}", grad[nf]);
        // A singular system is an error, not NaN: one constant feature, no penalty.
        let constant = vec![vec![1.0; y.len()]];
        assert!(fit_ridge(&refs(&constant), &y, 0.0).is_err());
    }

    #[test]
    fn sgd_learns_a_separating_direction_reproducibly() {
        let (cols, y) = data(3000);
        let a = fit_sgd(&refs(&cols), &y, 1e-4, 50, 3);
        assert_eq!(a, fit_sgd(&refs(&cols), &y, 1e-4, 50, 3), "seeded");
        assert_ne!(a, fit_sgd(&refs(&cols), &y, 1e-4, 50, 4));
        let ridge = fit_ridge(&refs(&cols), &y, 1.0).unwrap();
        let score = |m: &Logistic| -> Vec<f64> {
            (0..y.len())
                .map(|i| {
                    m.intercept
                        + (0..cols.len())
                            .map(|f| m.coef[f] * m.standardizer.z(f, cols[f][i]))
                            .sum::<f64>()
                })
                .collect()
        };
        let auc = |s: &[f64]| crate::eval::metrics::Ranked::new(&y, s).roc_auc();
        let (sgd_auc, ridge_auc) = (auc(&score(&a)), auc(&score(&ridge)));
        // A linear SVM and least squares find much the same direction here.
        assert!(
            sgd_auc > 0.85 && (sgd_auc - ridge_auc).abs() < 0.05,
            "{sgd_auc} {ridge_auc}"
        );
        // Balanced weights: the decision flags a real share of the spammers.
        let d = score(&a);
        let caught = (0..y.len()).filter(|&i| y[i] == 1 && d[i] > 0.0).count();
        let spam = y.iter().filter(|&&l| l == 1).count();
        assert!(caught * 2 > spam, "{caught} of {spam}");
    }

    #[test]
    fn gaussian_nb_estimates_match_smartcore() {
        let (cols, y) = data(600);
        let ours = GaussianNb::fit(&refs(&cols), &y);
        let n = y.len();
        let x = matrix(&cols, n).unwrap();
        let y32: Vec<u32> = y.iter().map(|&l| u32::from(l)).collect();
        let theirs = smartcore::naive_bayes::gaussian::GaussianNB::<
            f64,
            u32,
            DenseMatrix<f64>,
            Vec<u32>,
        >::fit(&x, &y32, Default::default())
        .unwrap();
        // Ours adds scikit-learn's var_smoothing: 1e-9 of the largest feature variance
        // (large here: some columns are in the billions).
        let st = Standardizer::fit(&refs(&cols));
        let eps = 1e-9 * st.scale.iter().map(|s| s * s).fold(0.0, f64::max);
        for c in 0..2 {
            assert!((ours.log_prior[c].exp() - theirs.class_priors()[c]).abs() < 1e-12);
            for f in 0..cols.len() {
                let (m, v) = (theirs.theta()[c][f], theirs.var()[c][f]);
                assert!(
                    (ours.mean[c][f] - m).abs() <= 1e-9 * (1.0 + m.abs()),
                    "mean {c} {f}"
                );
                let d = (ours.var[c][f] - eps - v).abs();
                assert!(
                    d <= 1e-6 * (1.0 + v + eps),
                    "var {c} {f}: {} - {eps} vs {v}",
                    ours.var[c][f]
                );
            }
        }
    }

    #[test]
    fn additive_models_agree_with_smartcore_and_explain_exactly() {
        let (cols, y) = data(1500);
        let r = refs(&cols);
        let n = y.len();
        let x = matrix(&cols, n).unwrap();
        let y32: Vec<u32> = y.iter().map(|&l| u32::from(l)).collect();
        let bnb = BaselineSpec::BernoulliNb { binarize: 0.0 }
            .fit(&r, &y, 1, &NoProgress)
            .unwrap();
        let theirs = smartcore::naive_bayes::bernoulli::BernoulliNB::<
            f64,
            u32,
            DenseMatrix<f64>,
            Vec<u32>,
        >::fit(
            &x,
            &y32,
            smartcore::naive_bayes::bernoulli::BernoulliNBParameters::default().with_binarize(0.0),
        )
        .unwrap();
        let their_labels = theirs.predict(&x).unwrap();
        let lr = BaselineSpec::Logistic { alpha: 1.0 }
            .fit(&r, &y, 1, &NoProgress)
            .unwrap();
        let gnb = BaselineSpec::GaussianNb
            .fit(&r, &y, 1, &NoProgress)
            .unwrap();
        let mut agree = 0;
        for (i, their) in their_labels.iter().enumerate() {
            let xi = row(&cols, i);
            let p = bnb.predict(&xi);
            agree += usize::from((p > 0.5) == (*their == 1));
            for m in [&bnb, &lr, &gnb] {
                let e = m.explain(&xi);
                assert_eq!(e.method, Method::LogOdds);
                let sum: f64 = e.base + e.contributions.iter().sum::<f64>();
                assert!(
                    (sum - e.prediction).abs() < 1e-9,
                    "{}: {sum} vs {}",
                    m.name(),
                    e.prediction
                );
                assert!((e.prediction - m.predict(&xi)).abs() < 1e-12);
            }
        }
        // Same model, same decisions (ties at exactly 0.5 aside).
        assert!(
            agree >= n - 2,
            "BernoulliNB decisions agree on {agree} of {n}"
        );
        // The fitted models rank spammers well above chance on their training data.
        for m in [&bnb, &lr, &gnb] {
            let scores = m.predict_rows(
                &(0..n).flat_map(|i| row(&cols, i)).collect::<Vec<_>>(),
                cols.len(),
            );
            let auc = crate::eval::metrics::Ranked::new(&y, &scores).roc_auc();
            assert!(auc > 0.75, "{} AUC {auc}", m.name());
        }
        // Importance sums to 1 and ranks a real signal first for the linear model.
        assert!((lr.importance.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn knn_probability_is_the_share_of_spammers_among_the_nearest() {
        let (cols, y) = data(800);
        let r = refs(&cols);
        let m = BaselineSpec::Knn { k: 7, sample: 400 }
            .fit(&r, &y, 3, &NoProgress)
            .unwrap();
        let BaselineKind::Knn(k) = &m.kind else {
            panic!()
        };
        assert_eq!(k.labels.len(), 400);
        let nf = cols.len();
        for i in [0usize, 17, 123, 555] {
            let xi = row(&cols, i);
            let z = k.standardizer.row(&xi);
            let mut d: Vec<(f64, u32)> = k
                .rows
                .chunks_exact(nf)
                .zip(&k.labels)
                .map(|(r, &l)| {
                    (
                        r.iter()
                            .zip(&z)
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum::<f64>(),
                        l,
                    )
                })
                .collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0));
            // Skip accounts whose 7th and 8th neighbours tie (either could count).
            if (d[6].0 - d[7].0).abs() < 1e-9 {
                continue;
            }
            let share = d[..7].iter().filter(|x| x.1 == 1).count() as f64 / 7.0;
            assert!((m.predict(&xi) - share).abs() < 1e-12, "row {i}");
        }
        let e = m.explain(&row(&cols, 0));
        assert_eq!(e.method, Method::Occlusion);
        assert_eq!(e.contributions.len(), nf);
    }

    #[test]
    fn bad_parameters_are_refused() {
        let (cols, y) = data(300);
        let e = BaselineSpec::Knn { k: 0, sample: 10 }
            .fit(&refs(&cols), &y, 1, &NoProgress)
            .unwrap_err();
        assert!(
            matches!(&e, BaselineError::Param(m) if m.contains("k >= 1")),
            "{e:?}"
        );
        let e = BaselineSpec::Logistic { alpha: -1.0 }
            .validate()
            .unwrap_err();
        assert!(
            matches!(&e, BaselineError::Param(m) if m.contains("alpha must be >= 0")),
            "{e:?}"
        );
    }
}
