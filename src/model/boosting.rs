//! Histogram gradient boosting (log-loss) for the model comparison, by forust-ml.
//!
//! Chosen after trying the candidates named in the issue: perpetual (every release up
//! to 3.0.0-rc.2) uses `#![feature(array_ptr_get)]` and so does not build on stable
//! Rust, the only toolchain here; forust-ml 0.8 builds on stable, is pure Rust (rayon,
//! serde) and has exact Shapley contributions and a JSON model dump. Its fit time and
//! quality beside our forest are in the comparison table (`spamscope compare`).

use crate::model::baselines::{secant, sigmoid};
use crate::model::explain::{Explanation, Method};
use crate::util::progress::Reporter;
use forust_ml::gradientbooster::{ContributionsMethod, ImportanceMethod};
use forust_ml::{GradientBooster, Matrix};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoostParams {
    pub iterations: usize,
    pub learning_rate: f32,
    pub max_depth: usize,
    /// Class-balanced sample weights (as the forest's "balanced").
    pub balanced: bool,
    pub seed: u64,
}

impl Default for BoostParams {
    fn default() -> Self {
        // scikit-learn's HistGradientBoostingClassifier-like defaults (100 iterations,
        // learning rate 0.1), with depth-limited trees.
        BoostParams {
            iterations: 200,
            learning_rate: 0.1,
            max_depth: 6,
            balanced: false,
            seed: 42,
        }
    }
}

/// Why boosting could not be set up, fitted or loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BoostError {
    #[error("{0}")]
    Param(String),
    #[error("gradient boosting could not be fitted: {0}")]
    Fit(String),
    /// A loaded boosted model that does not match its metadata.
    #[error("{0}")]
    Malformed(String),
}

impl BoostParams {
    pub fn validate(&self) -> Result<(), BoostError> {
        if self.iterations == 0 || self.iterations > 100_000 {
            return Err(BoostError::Param(
                "boosting iterations must be between 1 and 100000".into(),
            ));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return Err(BoostError::Param(
                "boosting learning rate must be in (0, 1]".into(),
            ));
        }
        if self.max_depth == 0 || self.max_depth > 64 {
            return Err(BoostError::Param(
                "boosting max depth must be between 1 and 64".into(),
            ));
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        format!(
            "{} rounds, learning rate {}, depth {}",
            self.iterations, self.learning_rate, self.max_depth
        )
    }
}

/// A fitted booster with our importance (normalised total gain).
pub struct Boosted {
    pub booster: GradientBooster,
    pub importance: Vec<f64>,
    pub n_features: usize,
}

impl std::fmt::Debug for Boosted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Boosted")
            .field("trees", &self.booster.trees.len())
            .finish()
    }
}

impl Clone for Boosted {
    fn clone(&self) -> Self {
        // The dump round-trips exactly (serde_json, all fields).
        Boosted::from_json(&self.to_json(), self.importance.clone())
            .expect("a booster's own dump loads")
    }
}

impl PartialEq for Boosted {
    fn eq(&self, o: &Self) -> bool {
        self.importance == o.importance && self.to_json() == o.to_json()
    }
}

/// Row-major rows to the column-major layout forust reads; returns the row count.
fn column_major(rows: &[f64], nf: usize) -> (Vec<f64>, usize) {
    let n = rows.len() / nf;
    let mut col = vec![0.0; rows.len()];
    for (i, r) in rows.chunks_exact(nf).enumerate() {
        for (f, v) in r.iter().enumerate() {
            col[f * n + i] = *v;
        }
    }
    (col, n)
}

/// forust's contributions of one row (`nf` features, then the bias; they sum to the
/// log-odds) mapped to probability: (base, probability, contributions).
fn to_probability(c: &[f64], nf: usize) -> (f64, f64, Vec<f64>) {
    let (bias, logit) = (c[nf], c.iter().sum::<f64>());
    let (p0, p, slope) = secant(bias, logit);
    (p0, p, c[..nf].iter().map(|v| v * slope).collect())
}

impl Boosted {
    pub fn fit(
        p: &BoostParams,
        columns: &[&[f64]],
        labels: &[u8],
        weights: Option<&[f64]>,
        reporter: &dyn Reporter,
    ) -> Result<Boosted, BoostError> {
        p.validate()?;
        let n = labels.len();
        let nf = columns.len();
        let data: Vec<f64> = columns.iter().flat_map(|c| c.iter().copied()).collect();
        let m = Matrix::new(&data, n, nf);
        let y: Vec<f64> = labels.iter().map(|&l| f64::from(l)).collect();
        let w = crate::data::preprocess::row_weights(labels, weights, p.balanced);
        reporter.stage("boosting", 0, 1);
        let mut booster = GradientBooster::default()
            .set_iterations(p.iterations)
            .set_learning_rate(p.learning_rate)
            .set_max_depth(p.max_depth)
            .set_seed(p.seed);
        booster
            .fit(&m, &y, &w, None)
            .map_err(|e| BoostError::Fit(e.to_string()))?;
        reporter.stage("boosting", 1, 1);
        Ok(Boosted {
            importance: gain_importance(&booster, nf),
            booster,
            n_features: nf,
        })
    }

    /// A booster built elsewhere (LightGBM's trees read into forust's), checked as a
    /// loaded file is, with its importance.
    pub fn from_booster(booster: GradientBooster, nf: usize) -> Result<Boosted, BoostError> {
        if booster.trees.is_empty() {
            return Err(BoostError::Malformed("a booster without trees".into()));
        }
        check_trees(&booster, nf)?;
        Ok(Boosted {
            importance: gain_importance(&booster, nf),
            booster,
            n_features: nf,
        })
    }

    /// Log-odds for row-major rows.
    fn logits(&self, rows: &[f64]) -> Vec<f64> {
        let nf = self.n_features;
        let (col, n) = column_major(rows, nf);
        self.booster.predict(&Matrix::new(&col, n, nf), n > 1024)
    }

    /// Probabilities for row-major imputed rows.
    pub fn predict_rows(&self, rows: &[f64], nf: usize) -> Vec<f64> {
        debug_assert_eq!(nf, self.n_features);
        self.logits(rows).into_iter().map(sigmoid).collect()
    }

    /// Exact Shapley values of the log-odds (forust's TreeSHAP), centred on the
    /// training mean and mapped to probability like the other log-odds models.
    pub fn explain(&self, x: &[f64]) -> Explanation {
        let nf = self.n_features;
        let c = self.booster.predict_contributions(
            &Matrix::new(x, 1, nf),
            ContributionsMethod::Shapley,
            false,
        );
        // nf feature values, then the bias (the expected log-odds under the trees'
        // covers); together they sum to the account's log-odds.
        let (p0, p, phi) = to_probability(&c, nf);
        Explanation {
            method: Method::LogOdds,
            base: p0,
            contributions: phi,
            prediction: p,
        }
    }

    /// Contributions for many row-major rows at once (bulk scoring): forust's path
    /// attribution (Saabas, `ContributionsMethod::Weight`: O(depth) per tree, where
    /// exact Shapley values cost ~1 ms per account) for the whole block in parallel,
    /// mapped to probability as in [`Boosted::explain`]. `n_features` values per row.
    pub fn contributions_rows(&self, rows: &[f64]) -> Vec<f64> {
        let nf = self.n_features;
        let (col, n) = column_major(rows, nf);
        let c = self.booster.predict_contributions(
            &Matrix::new(&col, n, nf),
            ContributionsMethod::Weight,
            true,
        );
        c.chunks_exact(nf + 1)
            .flat_map(|row| to_probability(row, nf).2)
            .collect()
    }

    pub fn describe(&self) -> String {
        format!("gradient boosting, {} trees", self.booster.trees.len())
    }

    pub fn to_json(&self) -> String {
        let dump = self
            .booster
            .json_dump()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        serde_json::json!({
            "n_features": self.n_features,
            "booster": dump,
        })
        .to_string()
    }

    pub fn from_json(json: &str, importance: Vec<f64>) -> Result<Boosted, BoostError> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| BoostError::Malformed(e.to_string()))?;
        let nf = v["n_features"]
            .as_u64()
            .ok_or_else(|| BoostError::Malformed("missing feature count".into()))?
            as usize;
        let dump = v["booster"]
            .as_str()
            .ok_or_else(|| BoostError::Malformed("missing booster".into()))?;
        let booster =
            GradientBooster::from_json(dump).map_err(|e| BoostError::Malformed(e.to_string()))?;
        if importance.len() != nf
            || importance.iter().any(|v| !v.is_finite())
            || booster.trees.is_empty()
        {
            return Err(BoostError::Malformed(
                "boosted model does not match its metadata".into(),
            ));
        }
        check_trees(&booster, nf)?;
        Ok(Boosted {
            booster,
            importance,
            n_features: nf,
        })
    }
}

/// Total split gain per feature, normalised to sum to 1.
fn gain_importance(booster: &GradientBooster, nf: usize) -> Vec<f64> {
    let gain = booster.calculate_feature_importance(ImportanceMethod::TotalGain, false);
    let mut importance = vec![0.0; nf];
    for (f, g) in gain {
        if f < nf {
            importance[f] = f64::from(g).max(0.0);
        }
    }
    let total: f64 = importance.iter().sum();
    if total > 0.0 {
        importance.iter_mut().for_each(|v| *v /= total);
    }
    importance
}

/// Deepest boosted tree a loaded model may have (the parameters allow 64).
const MAX_LOADED_DEPTH: usize = 64;

/// Checks what the boosting crate does not check when it loads a dump and would
/// otherwise index out of bounds or recurse without end on: every node numbered by its
/// position, finite values, split features that exist, and children that come after
/// their parent, have one parent each and stay within [`MAX_LOADED_DEPTH`] levels.
fn check_trees(booster: &GradientBooster, nf: usize) -> Result<(), BoostError> {
    for (k, tree) in booster.trees.iter().enumerate() {
        let bad = |m: String| Err(BoostError::Malformed(format!("boosted tree {k}: {m}")));
        let n = tree.nodes.len();
        if n == 0 {
            return bad("no nodes".into());
        }
        let mut parents = vec![false; n];
        let mut depth = vec![0usize; n];
        for (i, node) in tree.nodes.iter().enumerate() {
            if node.num != i {
                return bad(format!("node {i} is numbered {}", node.num));
            }
            if !(node.weight_value.is_finite() && node.hessian_sum.is_finite()) {
                return bad(format!("node {i} has a non-finite value"));
            }
            if node.is_leaf {
                continue;
            }
            if node.split_feature >= nf || node.split_value.is_nan() {
                return bad(format!("node {i} has an invalid split"));
            }
            let mut children = vec![node.left_child, node.right_child];
            if node.has_missing_branch() {
                children.push(node.missing_node);
            }
            for c in children {
                if c <= i || c >= n || parents[c] {
                    return bad(format!("node {i} has a child out of place ({c})"));
                }
                parents[c] = true;
                depth[c] = depth[i] + 1;
                if depth[c] > MAX_LOADED_DEPTH {
                    return bad(format!("deeper than {MAX_LOADED_DEPTH} levels"));
                }
            }
        }
    }
    Ok(())
}
