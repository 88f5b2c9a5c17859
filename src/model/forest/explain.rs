//! Per-prediction explanations: which features pushed this account's probability up or
//! down. Two methods, both additive: `base + sum(contributions) == probability`.
//!
//! - [`Method::TreeShap`]: exact path-dependent TreeSHAP (Lundberg et al. 2018), with
//!   node covers = weighted training mass: Shapley values of the forest's probability,
//!   computed in O(nodes x depth) per tree (see [`super::shap`]).
//! - [`Method::PathAttribution`]: Saabas' path attribution: along the path the account
//!   takes, each split's change in node probability is credited to its feature.
//!   O(depth) per tree; used for bulk scoring.

use super::{Forest, Tree};
use crate::model::explain::{Explanation, Method};
use rayon::prelude::*;

impl Forest {
    /// Explains one row (no NaN) with the chosen method.
    pub fn explain(&self, x: &[f64], method: Method) -> Explanation {
        let (method, base, contributions) = match method {
            Method::TreeShap => {
                let (base, phi) = self.tree_shap_one(x);
                (Method::TreeShap, base, phi)
            }
            Method::PathAttribution
            | Method::LogOdds
            | Method::Occlusion
            | Method::Members
            | Method::HardVote
            | Method::Stacked => {
                let mut phi = vec![0.0; self.n_features];
                let mut base = 0.0;
                for t in &self.trees {
                    base += saabas(t, x, &mut phi);
                }
                let m = self.trees.len() as f64;
                for c in phi.iter_mut() {
                    *c /= m;
                }
                (Method::PathAttribution, base / m, phi)
            }
        };
        Explanation {
            method,
            base,
            contributions,
            prediction: self.predict_proba(x),
        }
    }

    /// Path attribution for many rows at once (row-major, no NaN): per row the
    /// `n_features` contributions. Equal to `explain(x, PathAttribution).contributions`
    /// row by row.
    pub fn path_attribution_rows(&self, rows: &[f64]) -> Vec<f64> {
        if rows.len() == self.n_features {
            return self.path_attribution_one(rows);
        }
        self.predict_attributed_rows(rows).1
    }

    /// Probabilities and path attributions of many rows (row-major, no NaN) from one
    /// walk of the trees, in parallel: blocks of rows go through the trees one tree at
    /// a time (each tree stays in cache), 32 rows walking each tree together. The
    /// probabilities equal [`Forest::predict_proba_rows`]' bit for bit (leaf values
    /// summed in tree order), the attributions [`Forest::path_attribution_one`]'s.
    pub fn predict_attributed_rows(&self, rows: &[f64]) -> (Vec<f64>, Vec<f64>) {
        const GROUP: usize = 32;
        const BLOCK: usize = 256;
        let nf = self.n_features;
        let n = rows.len() / nf;
        let m = self.trees.len() as f64;
        let mut prob = vec![0.0; n];
        let mut out = vec![0.0; n * nf];
        prob.par_chunks_mut(BLOCK)
            .zip(out.par_chunks_mut(BLOCK * nf))
            .enumerate()
            .for_each(|(b, (acc, phi))| {
                let base = b * BLOCK;
                let n = acc.len();
                let row = |k: usize| &rows[(base + k) * nf..(base + k + 1) * nf];
                let full = n / GROUP * GROUP;
                for t in &self.trees {
                    for g in (0..full).step_by(GROUP) {
                        let leaves = t.attribute_group(
                            std::array::from_fn::<_, GROUP, _>(|k| row(g + k)),
                            &mut phi[g * nf..(g + GROUP) * nf],
                            nf,
                        );
                        for (a, v) in acc[g..g + GROUP].iter_mut().zip(leaves) {
                            *a += v;
                        }
                    }
                    for k in full..n {
                        saabas(t, row(k), &mut phi[k * nf..(k + 1) * nf]);
                        acc[k] += t.predict(row(k));
                    }
                }
                for a in acc.iter_mut() {
                    *a /= m;
                }
                for v in phi.iter_mut() {
                    *v /= m;
                }
            });
        (prob, out)
    }

    /// One row's path attribution on the calling thread, sixteen trees walked together
    /// (the service's and the score screen's single account): the same values, summed
    /// in the same order, as one row of [`Forest::path_attribution_rows`].
    pub fn path_attribution_one(&self, x: &[f64]) -> Vec<f64> {
        self.predict_attributed_one(x).1
    }

    /// One row's probability and path attribution from one walk of the trees: the
    /// probability equals [`Forest::predict_proba`]'s (leaves summed in tree order),
    /// the attribution [`Forest::path_attribution_one`]'s.
    pub fn predict_attributed_one(&self, x: &[f64]) -> (f64, Vec<f64>) {
        const G: usize = 16;
        let mut phi = vec![0.0; self.n_features];
        let mut sum = 0.0;
        let mut steps = vec![(0u16, 0.0); G * super::MAX_DEPTH];
        let groups = self.trees.chunks_exact(G);
        let rest = groups.remainder();
        for g in groups {
            let trees = std::array::from_fn(|k| &g[k]);
            for v in Tree::attribute_trees::<G>(trees, x, &mut phi, &mut steps) {
                sum += v;
            }
        }
        for t in rest {
            saabas(t, x, &mut phi);
            sum += t.predict(x);
        }
        let m = self.trees.len() as f64;
        for v in phi.iter_mut() {
            *v /= m;
        }
        (sum / m, phi)
    }

    /// The model's expected output over the training data (TreeSHAP's base value).
    pub fn expected_value(&self) -> f64 {
        self.trees.iter().map(expected_value).sum::<f64>() / self.trees.len() as f64
    }
}

/// Cover-weighted mean of the leaf values of a tree.
pub fn expected_value(t: &Tree) -> f64 {
    // The value of a node is the cover-weighted mean of its leaves' values, so the
    // root's value is the expected value.
    t.value(0)
}

/// Adds one tree's path attribution to `phi`; returns the tree's base value.
fn saabas(t: &Tree, x: &[f64], phi: &mut [f64]) -> f64 {
    let mut i = 0;
    while !t.is_leaf(i) {
        let f = t.feature(i);
        let next = t.next(i, x);
        phi[f] += t.value(next) - t.value(i);
        i = next;
    }
    t.value(0)
}

#[cfg(test)]
mod tests {
    use super::super::{ForestParams, tests::toy};
    use super::*;
    use crate::util::progress::NoProgress;

    /// Path-dependent value function: features in `set` follow x, the others average
    /// the children by cover.
    fn cond_value(t: &Tree, x: &[f64], set: u32, node: usize) -> f64 {
        if t.is_leaf(node) {
            return t.value(node);
        }
        let f = t.feature(node);
        let (l, r) = t.children(node);
        if set & (1 << f) != 0 {
            let next = if x[f] <= t.threshold(node) { l } else { r };
            cond_value(t, x, set, next)
        } else {
            (t.cover(l) * cond_value(t, x, set, l) + t.cover(r) * cond_value(t, x, set, r))
                / t.cover(node)
        }
    }

    fn brute_force_shap(f: &Forest, x: &[f64]) -> Vec<f64> {
        let m = f.n_features;
        let fact = |k: usize| (1..=k).map(|v| v as f64).product::<f64>();
        let mut phi = vec![0.0; m];
        for t in &f.trees {
            for (i, p) in phi.iter_mut().enumerate() {
                for set in 0u32..(1 << m) {
                    if set & (1 << i) != 0 {
                        continue;
                    }
                    let s = set.count_ones() as usize;
                    let w = fact(s) * fact(m - s - 1) / fact(m);
                    *p += w * (cond_value(t, x, set | (1 << i), 0) - cond_value(t, x, set, 0));
                }
            }
        }
        phi.iter().map(|p| p / f.trees.len() as f64).collect()
    }

    fn small_forest() -> (Forest, Vec<Vec<f64>>) {
        let (mut cols, y) = toy(600, 11);
        // Two extra weakly informative features so paths repeat features.
        let mut rng = crate::util::rng::SplitMix64::new(5);
        cols.push(cols[0].iter().map(|a| a * 0.5 + rng.next_f64()).collect());
        cols.push(y.iter().map(|&l| l as f64 + rng.next_f64() * 2.0).collect());
        let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        let f = ForestParams {
            n_trees: 4,
            max_depth: Some(6),
            ..Default::default()
        }
        .fit(&refs, &y, None, &NoProgress)
        .unwrap();
        (f, cols)
    }

    #[test]
    fn tree_shap_equals_brute_force_shapley_values() {
        let (f, cols) = small_forest();
        for r in [0usize, 7, 99, 250, 599] {
            let x: Vec<f64> = cols.iter().map(|c| c[r]).collect();
            let e = f.explain(&x, Method::TreeShap);
            let bf = brute_force_shap(&f, &x);
            for (a, b) in e.contributions.iter().zip(&bf) {
                assert!((a - b).abs() < 1e-10, "row {r}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn both_methods_are_additive() {
        let (f, cols) = small_forest();
        for r in 0..100 {
            let x: Vec<f64> = cols.iter().map(|c| c[r]).collect();
            for method in [Method::TreeShap, Method::PathAttribution] {
                let e = f.explain(&x, method);
                assert_eq!(e.method, method);
                let sum = e.base + e.contributions.iter().sum::<f64>();
                assert!((sum - e.prediction).abs() < 1e-12, "{method:?} row {r}");
                assert!((e.prediction - f.predict_proba(&x)).abs() < 1e-15);
            }
        }
        assert!((f.expected_value() - f.explain(&[0.0; 5], Method::TreeShap).base).abs() < 1e-15);
    }

    #[test]
    fn batched_path_attribution_equals_row_by_row() {
        let (f, cols) = small_forest();
        let n = 300; // several blocks and a partial group
        let rows: Vec<f64> = (0..n)
            .flat_map(|r| cols.iter().map(move |c| c[r]))
            .collect();
        let batch = f.path_attribution_rows(&rows);
        for r in 0..n {
            let e = f.explain(&rows[r * 5..r * 5 + 5], Method::PathAttribution);
            for (a, b) in batch[r * 5..r * 5 + 5].iter().zip(&e.contributions) {
                assert!((a - b).abs() < 1e-12, "row {r}: {a} vs {b}");
            }
        }
    }

    /// The single-account paths (sixteen trees walked together) give bit for bit what
    /// walking the trees one by one gives, and what the batch paths give.
    #[test]
    fn one_account_walks_equal_tree_by_tree_walks() {
        let (mut cols, y) = toy(600, 11);
        let mut rng = crate::util::rng::SplitMix64::new(9);
        cols.push(cols[0].iter().map(|a| a * 0.5 + rng.next_f64()).collect());
        let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        // 37 trees: two groups of sixteen and a remainder; uneven depths.
        let f = ForestParams {
            n_trees: 37,
            max_depth: Some(9),
            ..Default::default()
        }
        .fit(&refs, &y, None, &NoProgress)
        .unwrap();
        let nf = cols.len();
        let n = 300; // more than a block of 256, and a partial group
        let rows: Vec<f64> = (0..n)
            .flat_map(|r| cols.iter().map(move |c| c[r]))
            .collect();
        let batch_phi = f.path_attribution_rows(&rows);
        let batch_p = f.predict_proba_rows(&rows);
        let (both_p, both_phi) = f.predict_attributed_rows(&rows);
        assert_eq!(both_p, batch_p);
        assert_eq!(both_phi, batch_phi);
        for r in 0..n {
            let x = &rows[r * nf..(r + 1) * nf];
            let mut phi = vec![0.0; nf];
            let mut p = 0.0;
            for t in &f.trees {
                saabas(t, x, &mut phi);
                p += t.predict(x);
            }
            let m = f.trees.len() as f64;
            phi.iter_mut().for_each(|v| *v /= m);
            assert_eq!(f.path_attribution_one(x), phi, "row {r}");
            assert_eq!(f.predict_attributed_one(x), (p / m, phi.clone()), "row {r}");
            assert_eq!(&batch_phi[r * nf..(r + 1) * nf], phi.as_slice(), "row {r}");
            assert_eq!(f.predict_proba(x), p / m, "row {r}");
            assert_eq!(f.predict_proba(x), batch_p[r], "row {r}");
        }
    }

    #[test]
    fn explanations_point_at_the_informative_feature() {
        let (f, _) = small_forest();
        let e = f.explain(&[9.5, 0.0, 2.0, 4.5, 1.5], Method::TreeShap);
        // x0 = 9.5 is far into the positive region of the toy rule.
        assert!(e.contributions[0] > 0.0);
        assert!(e.top(2).iter().any(|&(i, _)| i == 0));
        assert_eq!(e.ranked().len(), 5);
    }
}
