//! A fast, histogram-based random forest for binary classification.
//!
//! Parameters (validated) -> [`ForestParams::fit`] -> [`Forest`] with `predict_proba`,
//! in the style of linfa. The semantics follow scikit-learn's `RandomForestClassifier`
//! (bootstrap, `max_features` candidates per split drawn until enough non-constant ones
//! were seen, Gini, `class_weight="balanced"`, `predict_proba` = mean of leaf class
//! probabilities, impurity-based importance); the speed comes from binning every feature
//! once into at most 256 bins and growing trees on histograms, in parallel.

pub mod binning;
pub mod explain;
pub mod shap;
pub mod tree;

use crate::util::progress::{Cancelled, Reporter};
use crate::util::rng::SplitMix64;
use binning::BinnedData;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
pub use tree::Tree;
use tree::{GrowParams, Sample};

/// Deepest tree the trainer grows ("unlimited" depth stops here) and a loaded model may
/// have: TreeSHAP's working memory grows with depth squared, so it stays a few kB.
pub const MAX_DEPTH: usize = 64;
/// Most trees a forest may have (trained or loaded).
pub const MAX_TREES: usize = 100_000;
/// Most training rows; a tree on them has fewer than [`MAX_NODES`] nodes.
pub const MAX_ROWS: usize = 1 << 25;
/// Most nodes one loaded tree may have.
pub const MAX_NODES: usize = 1 << 26;
/// Largest row weight the trainer accepts (weights multiply class weights and are
/// summed over all rows, which must stay far from overflow).
pub const MAX_WEIGHT: f64 = 1e6;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ForestError {
    #[error("invalid forest parameter: {0}")]
    InvalidParam(String),
    #[error("no training rows")]
    Empty,
    #[error(
        "the training data has only one class ({0}); both spammers and legitimate accounts are needed"
    )]
    OneClass(u8),
    #[error("training data is malformed: {0}")]
    Shape(String),
    #[error("training was cancelled")]
    Cancelled(#[from] Cancelled),
    /// A loaded forest whose structure is inconsistent.
    #[error("{0}")]
    Malformed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ClassWeight {
    /// `n_samples / (2 * count(class))` per class, as scikit-learn's "balanced".
    #[default]
    Balanced,
    /// Every class weighs 1.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub enum MaxFeatures {
    /// floor(sqrt(n_features)), at least 1.
    #[default]
    Sqrt,
    /// Every feature at every split.
    All,
    /// A fixed number of features.
    Count(usize),
}

/// Forest hyper-parameters. Defaults are the reference model's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForestParams {
    pub n_trees: usize,
    /// `None` grows until the other stopping rules apply, at most [`MAX_DEPTH`] levels.
    pub max_depth: Option<usize>,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    pub max_features: MaxFeatures,
    pub class_weight: ClassWeight,
    pub bootstrap: bool,
    /// Bins per feature (2..=256).
    pub max_bins: usize,
    pub seed: u64,
    /// Extremely randomised trees (extra-trees): a random threshold per candidate
    /// feature instead of the best one.
    #[serde(default)]
    pub random_splits: bool,
}

impl Default for ForestParams {
    fn default() -> Self {
        ForestParams {
            n_trees: 300,
            max_depth: Some(20),
            min_samples_split: 5,
            min_samples_leaf: 1,
            max_features: MaxFeatures::Sqrt,
            class_weight: ClassWeight::Balanced,
            bootstrap: true,
            max_bins: 256,
            seed: 42,
            random_splits: false,
        }
    }
}

impl ForestParams {
    pub fn validate(&self) -> Result<(), ForestError> {
        let bad = |m: &str| Err(ForestError::InvalidParam(m.to_string()));
        if self.n_trees == 0 {
            return bad("trees must be at least 1");
        }
        if self.n_trees > MAX_TREES {
            return bad("trees must be at most 100000");
        }
        if self.max_depth == Some(0) {
            return bad("max depth must be at least 1");
        }
        if self.max_depth.is_some_and(|d| d > MAX_DEPTH) {
            return bad("max depth must be at most 64 (or unlimited, which stops at 64)");
        }
        if self.min_samples_split < 2 {
            return bad("min samples split must be at least 2");
        }
        if self.min_samples_leaf < 1 {
            return bad("min samples leaf must be at least 1");
        }
        if self.min_samples_split > MAX_ROWS || self.min_samples_leaf > MAX_ROWS {
            return bad("min samples split and leaf must be at most 33554432 (the most rows)");
        }
        if !(2..=256).contains(&self.max_bins) {
            return bad("max bins must be between 2 and 256");
        }
        if self.max_features == MaxFeatures::Count(0) {
            return bad("max features must be at least 1");
        }
        Ok(())
    }

    fn features_per_split(&self, n_features: usize) -> usize {
        match self.max_features {
            MaxFeatures::Sqrt => ((n_features as f64).sqrt().floor() as usize).max(1),
            MaxFeatures::All => n_features,
            MaxFeatures::Count(k) => k.min(n_features),
        }
    }

    /// Trains a forest on column-major features (`columns[f][row]`, no NaN: impute first),
    /// labels 0/1 and optional per-row weights. Trees are grown in parallel on the
    /// current rayon pool; the result depends only on the data and the seed.
    pub fn fit(
        &self,
        columns: &[&[f64]],
        labels: &[u8],
        sample_weight: Option<&[f64]>,
        reporter: &dyn Reporter,
    ) -> Result<Forest, ForestError> {
        self.validate()?;
        let n = labels.len();
        let n_features = columns.len();
        if n == 0 {
            return Err(ForestError::Empty);
        }
        if n_features == 0 || n_features > 64 {
            return Err(ForestError::Shape(format!(
                "{n_features} features (1..=64 supported)"
            )));
        }
        if n > MAX_ROWS {
            return Err(ForestError::Shape(format!(
                "{n} training rows; at most {MAX_ROWS} are supported"
            )));
        }
        if let Some(c) = columns.iter().position(|c| c.len() != n) {
            return Err(ForestError::Shape(format!(
                "feature {} has {} values for {n} labels",
                c + 1,
                columns[c].len()
            )));
        }
        if let Some(i) = labels.iter().position(|&l| l > 1) {
            return Err(ForestError::Shape(format!("label of row {i} is not 0/1")));
        }
        for (f, col) in columns.iter().enumerate() {
            if let Some(i) = col.iter().position(|v| !v.is_finite()) {
                return Err(ForestError::Shape(format!(
                    "feature {} of row {i} is {} (impute missing values first)",
                    f + 1,
                    col[i]
                )));
            }
        }
        if let Some(sw) = sample_weight {
            if sw.len() != n {
                return Err(ForestError::Shape(
                    "sample weights do not match rows".into(),
                ));
            }
            if sw
                .iter()
                .any(|w| !(w.is_finite() && (0.0..=MAX_WEIGHT).contains(w)))
            {
                return Err(ForestError::Shape(
                    "sample weights must be between 0 and 1e6".into(),
                ));
            }
        }
        let counts = [
            labels.iter().filter(|&&l| l == 0).count(),
            labels.iter().filter(|&&l| l == 1).count(),
        ];
        if counts[0] == 0 || counts[1] == 0 {
            return Err(ForestError::OneClass(if counts[0] == 0 { 1 } else { 0 }));
        }
        let class_w = match self.class_weight {
            ClassWeight::Balanced => {
                crate::data::preprocess::balanced_weights(counts[0], counts[1])
            }
            ClassWeight::None => [1.0, 1.0],
        };

        reporter.stage("binning", 0, 1);
        let data = BinnedData::build(columns, self.max_bins);
        if reporter.cancelled() {
            return Err(Cancelled.into());
        }
        let grow = GrowParams {
            max_depth: self.max_depth.unwrap_or(MAX_DEPTH).min(MAX_DEPTH),
            min_samples_split: self.min_samples_split,
            min_samples_leaf: self.min_samples_leaf,
            max_features: self.features_per_split(n_features),
            random_splits: self.random_splits,
        };
        let done = AtomicUsize::new(0);
        reporter.stage("trees", 0, self.n_trees);
        let results: Vec<Option<(Tree, Vec<f64>)>> = (0..self.n_trees)
            .into_par_iter()
            .map(|t| {
                if reporter.cancelled() {
                    return None;
                }
                let mut rng = SplitMix64::for_task(self.seed, t as u64);
                let mut samples = self.draw_samples(&mut rng, labels, sample_weight, class_w);
                let mut imp = vec![0.0; n_features];
                let tree = tree::grow(&data, &mut samples, &grow, &mut rng, &mut imp);
                let k = done.fetch_add(1, Ordering::Relaxed) + 1;
                reporter.stage("trees", k, self.n_trees);
                Some((tree, imp))
            })
            .collect();
        if reporter.cancelled() || results.iter().any(Option::is_none) {
            return Err(Cancelled.into());
        }
        let mut trees = Vec::with_capacity(self.n_trees);
        let mut importance = vec![0.0; n_features];
        let mut splitting_trees = 0usize;
        for (tree, imp) in results.into_iter().flatten() {
            let total: f64 = imp.iter().sum();
            if tree.n_nodes() > 1 && total > 0.0 {
                splitting_trees += 1;
                for (a, b) in importance.iter_mut().zip(&imp) {
                    *a += b / total;
                }
            }
            trees.push(tree);
        }
        let total: f64 = importance.iter().sum();
        if splitting_trees > 0 && total > 0.0 {
            for a in importance.iter_mut() {
                *a /= total;
            }
        }
        Ok(Forest {
            n_features,
            trees,
            importance,
        })
    }

    /// Bootstrap draw (with replacement, n draws) or all rows; rows drawn k times weigh k.
    fn draw_samples(
        &self,
        rng: &mut SplitMix64,
        labels: &[u8],
        sample_weight: Option<&[f64]>,
        class_w: [f64; 2],
    ) -> Vec<Sample> {
        let n = labels.len();
        let mut counts = vec![0u32; n];
        if self.bootstrap {
            for _ in 0..n {
                counts[rng.below(n)] += 1;
            }
        } else {
            counts.fill(1);
        }
        let mut samples = Vec::with_capacity(n);
        for (i, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let class = labels[i] as u32;
            let w = c as f64 * class_w[class as usize] * sample_weight.map_or(1.0, |s| s[i]);
            if w > 0.0 {
                samples.push(Sample::new(i as u32, class, w));
            }
        }
        samples
    }
}

/// A trained forest.
#[derive(Debug, Clone, PartialEq)]
pub struct Forest {
    pub n_features: usize,
    pub trees: Vec<Tree>,
    /// Impurity-based importance per feature, summing to 1.
    pub importance: Vec<f64>,
}

impl Forest {
    /// Probability of the positive class for one row (no NaN).
    pub fn predict_proba(&self, x: &[f64]) -> f64 {
        const G: usize = 16;
        let groups = self.trees.chunks_exact(G);
        let rest = groups.remainder();
        // Summed in tree order, as `predict_proba_rows` does: the same probability.
        let mut sum = 0.0;
        for g in groups {
            for v in Tree::predict_trees::<G>(std::array::from_fn(|k| &g[k]), x) {
                sum += v;
            }
        }
        for t in rest {
            sum += t.predict(x);
        }
        sum / self.trees.len() as f64
    }

    /// Probabilities for many rows, row-major (`rows.len() == n * n_features`), in
    /// parallel. Rows are processed in blocks, tree by tree (each tree stays in cache),
    /// eight rows walking each tree together.
    pub fn predict_proba_rows(&self, rows: &[f64]) -> Vec<f64> {
        const GROUP: usize = 16;
        const BLOCK: usize = 256;
        let nf = self.n_features;
        let n = rows.len() / nf;
        let mut out = vec![0.0; n];
        out.par_chunks_mut(BLOCK).enumerate().for_each(|(b, acc)| {
            let base = b * BLOCK;
            let row = |k: usize| &rows[(base + k) * nf..(base + k + 1) * nf];
            let full = acc.len() / GROUP * GROUP;
            for t in &self.trees {
                for g in (0..full).step_by(GROUP) {
                    let mut sums = [0.0; GROUP];
                    t.accumulate_group(std::array::from_fn(|k| row(g + k)), &mut sums);
                    for (a, s) in acc[g..g + GROUP].iter_mut().zip(sums) {
                        *a += s;
                    }
                }
                for (k, a) in acc.iter_mut().enumerate().skip(full) {
                    *a += t.predict(row(k));
                }
            }
            let m = self.trees.len() as f64;
            for a in acc.iter_mut() {
                *a /= m;
            }
        });
        out
    }

    pub fn n_nodes(&self) -> usize {
        self.trees.iter().map(Tree::n_nodes).sum()
    }

    /// Checks forest-level consistency (trees are checked as they are built or loaded).
    pub fn validate(&self) -> Result<(), ForestError> {
        if self.trees.is_empty() {
            return Err(ForestError::Malformed("model has no trees".into()));
        }
        if self.trees.len() > MAX_TREES {
            return Err(ForestError::Malformed(format!(
                "{} trees; at most {MAX_TREES} are allowed",
                self.trees.len()
            )));
        }
        if self.importance.len() != self.n_features {
            return Err(ForestError::Malformed(
                "importance does not match the feature count".into(),
            ));
        }
        if self.importance.iter().any(|v| !v.is_finite()) {
            return Err(ForestError::Malformed("importance is not finite".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::progress::NoProgress;

    /// Two informative features (x0 noisy threshold, x1 flag) and one noise feature.
    pub(crate) fn toy(n: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<u8>) {
        let mut rng = SplitMix64::new(seed);
        let mut cols = vec![Vec::new(), Vec::new(), Vec::new()];
        let mut y = Vec::new();
        for _ in 0..n {
            let a = rng.next_f64() * 10.0;
            let b = (rng.next_f64() < 0.3) as u8 as f64;
            let c = (rng.next_f64() * 5.0).floor();
            let p = if a > 7.0 || b == 1.0 && a > 4.0 {
                0.9
            } else {
                0.05
            };
            y.push((rng.next_f64() < p) as u8);
            cols[0].push(a);
            cols[1].push(b);
            cols[2].push(c);
        }
        (cols, y)
    }

    fn refs(cols: &[Vec<f64>]) -> Vec<&[f64]> {
        cols.iter().map(Vec::as_slice).collect()
    }

    #[test]
    fn learns_a_simple_rule_and_ranks_importance() {
        let (cols, y) = toy(4000, 1);
        let params = ForestParams {
            n_trees: 30,
            max_depth: Some(6),
            ..Default::default()
        };
        let f = params.fit(&refs(&cols), &y, None, &NoProgress).unwrap();
        assert_eq!(f.trees.len(), 30);
        assert!(f.predict_proba(&[9.0, 0.0, 1.0]) > 0.7);
        assert!(f.predict_proba(&[1.0, 0.0, 1.0]) < 0.3);
        assert!(f.predict_proba(&[5.0, 1.0, 1.0]) > 0.7);
        assert!((f.importance.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(f.importance[0] > f.importance[1] && f.importance[1] > f.importance[2]);
        for t in &f.trees {
            assert!(t.depth() <= 6);
        }
    }

    #[test]
    fn extra_trees_draw_random_thresholds_and_still_learn() {
        let (cols, y) = toy(4000, 3);
        let params = ForestParams {
            n_trees: 40,
            max_depth: Some(8),
            bootstrap: false,
            max_features: MaxFeatures::All,
            ..Default::default()
        };
        let best = params.fit(&refs(&cols), &y, None, &NoProgress).unwrap();
        let et_params = ForestParams {
            random_splits: true,
            ..params.clone()
        };
        let et = et_params.fit(&refs(&cols), &y, None, &NoProgress).unwrap();
        let roots = |f: &Forest| {
            let mut v: Vec<(usize, u64)> = f
                .trees
                .iter()
                .map(|t| (t.feature(0), t.threshold(0).to_bits()))
                .collect();
            v.sort_unstable();
            v.dedup();
            v.len()
        };
        // Without bootstrap and with every feature, best splits make identical trees;
        // random thresholds make (almost) every root different.
        assert_eq!(roots(&best), 1);
        assert!(roots(&et) > 30, "{} distinct roots", roots(&et));
        assert!(et.predict_proba(&[9.0, 0.0, 1.0]) > 0.6);
        assert!(et.predict_proba(&[1.0, 0.0, 1.0]) < 0.3);
        assert!((et.importance.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(et.importance[0] > et.importance[2]);
        // Deterministic for a seed.
        assert_eq!(
            et,
            et_params.fit(&refs(&cols), &y, None, &NoProgress).unwrap()
        );
    }

    #[test]
    fn deterministic_for_a_seed_whatever_the_thread_count() {
        let (cols, y) = toy(1500, 2);
        let params = ForestParams {
            n_trees: 12,
            ..Default::default()
        };
        let fit_with = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| params.fit(&refs(&cols), &y, None, &NoProgress).unwrap())
        };
        let a = fit_with(1);
        let b = fit_with(2);
        assert_eq!(a, b);
        let c = ForestParams {
            seed: 7,
            ..params.clone()
        }
        .fit(&refs(&cols), &y, None, &NoProgress)
        .unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn stopping_rules_hold() {
        let (cols, y) = toy(2000, 3);
        let params = ForestParams {
            n_trees: 5,
            max_depth: None,
            min_samples_split: 20,
            min_samples_leaf: 7,
            bootstrap: false,
            ..Default::default()
        };
        let f = params.fit(&refs(&cols), &y, None, &NoProgress).unwrap();
        let binned = BinnedData::build(&refs(&cols), 256);
        for t in &f.trees {
            // Count training rows per node by routing every row.
            let mut n = vec![0usize; t.n_nodes()];
            for ((&a, &b), &c) in cols[0].iter().zip(&cols[1]).zip(&cols[2]) {
                let x = [a, b, c];
                let mut i = 0;
                loop {
                    n[i] += 1;
                    if t.is_leaf(i) {
                        break;
                    }
                    i = t.next(i, &x);
                }
            }
            for (i, &count) in n.iter().enumerate() {
                assert!(count >= 7, "leaf rule broken at node {i}: {count}");
                if !t.is_leaf(i) {
                    assert!(count >= 20, "split rule broken at node {i}");
                }
            }
        }
        assert_eq!(binned.n_rows(), 2000);
    }

    #[test]
    fn class_weights_shift_probabilities() {
        let (cols, y) = toy(3000, 4);
        let base = ForestParams {
            n_trees: 20,
            max_depth: Some(3),
            ..Default::default()
        };
        let bal = base.fit(&refs(&cols), &y, None, &NoProgress).unwrap();
        let none = ForestParams {
            class_weight: ClassWeight::None,
            ..base.clone()
        }
        .fit(&refs(&cols), &y, None, &NoProgress)
        .unwrap();
        // Positives are the minority: balancing raises their predicted probability.
        let x = [5.0, 0.0, 2.0];
        assert!(bal.predict_proba(&x) > none.predict_proba(&x));
        // Sample weights matter too: weighting positives up has the same direction.
        let w: Vec<f64> = y.iter().map(|&l| if l == 1 { 5.0 } else { 1.0 }).collect();
        let weighted = ForestParams {
            class_weight: ClassWeight::None,
            ..base.clone()
        }
        .fit(&refs(&cols), &y, Some(&w), &NoProgress)
        .unwrap();
        assert!(weighted.predict_proba(&x) > none.predict_proba(&x));
    }

    #[test]
    fn batch_prediction_equals_single_rows() {
        let (cols, y) = toy(1000, 5);
        let f = ForestParams {
            n_trees: 10,
            ..Default::default()
        }
        .fit(&refs(&cols), &y, None, &NoProgress)
        .unwrap();
        let rows: Vec<f64> = (0..1000)
            .flat_map(|r| [cols[0][r], cols[1][r], cols[2][r]])
            .collect();
        let batch = f.predict_proba_rows(&rows);
        for r in (0..1000).step_by(37) {
            assert_eq!(batch[r], f.predict_proba(&rows[r * 3..r * 3 + 3]));
        }
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let (cols, y) = toy(100, 6);
        let p = ForestParams::default();
        let bad = ForestParams {
            n_trees: 0,
            ..p.clone()
        };
        assert!(matches!(
            bad.fit(&refs(&cols), &y, None, &NoProgress),
            Err(ForestError::InvalidParam(_))
        ));
        let ones = vec![1u8; 100];
        assert_eq!(
            p.fit(&refs(&cols), &ones, None, &NoProgress).unwrap_err(),
            ForestError::OneClass(1)
        );
        assert_eq!(
            p.fit(&refs(&cols), &[], None, &NoProgress).unwrap_err(),
            ForestError::Empty
        );
        let mut nan = cols.clone();
        nan[1][5] = f64::NAN;
        assert!(matches!(
            p.fit(&refs(&nan), &y, None, &NoProgress),
            Err(ForestError::Shape(m)) if m.contains("row 5")
        ));
        let short = vec![cols[0].clone(), cols[1][..50].to_vec(), cols[2].clone()];
        assert!(matches!(
            p.fit(&refs(&short), &y, None, &NoProgress),
            Err(ForestError::Shape(_))
        ));
    }

    #[test]
    fn cancellation_stops_training() {
        struct Cancel;
        impl Reporter for Cancel {
            fn stage(&self, _: &str, _: usize, _: usize) {}
            fn cancelled(&self) -> bool {
                true
            }
        }
        let (cols, y) = toy(200, 7);
        assert_eq!(
            ForestParams::default()
                .fit(&refs(&cols), &y, None, &Cancel)
                .unwrap_err(),
            ForestError::Cancelled(Cancelled)
        );
    }
}
