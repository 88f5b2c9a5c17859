//! Per-prediction explanations: which features pushed this account's probability up or
//! down. Two methods, both additive: `base + sum(contributions) == probability`.
//!
//! - [`Method::TreeShap`]: exact path-dependent TreeSHAP (Lundberg et al. 2018,
//!   Algorithm 2), with node covers = weighted training mass. Shapley values of the
//!   forest's probability; O(leaves x depth^2) per tree, so it runs off the UI thread.
//! - [`Method::PathAttribution`]: Saabas' path attribution: along the path the account
//!   takes, each split's change in node probability is credited to its feature.
//!   O(depth) per tree; used for bulk scoring.

use super::{Forest, Tree};
use crate::model::explain::{Explanation, Method};
use rayon::prelude::*;

impl Forest {
    /// Explains one row (no NaN) with the chosen method.
    pub fn explain(&self, x: &[f64], method: Method) -> Explanation {
        let m = self.trees.len() as f64;
        let (base, mut contributions) = match method {
            Method::PathAttribution | Method::LogOdds | Method::Occlusion => {
                let mut phi = vec![0.0; self.n_features];
                let mut base = 0.0;
                for t in &self.trees {
                    base += saabas(t, x, &mut phi);
                }
                (base, phi)
            }
            Method::TreeShap => {
                let parts: Vec<(f64, Vec<f64>)> = self
                    .trees
                    .par_iter()
                    .map(|t| {
                        let mut phi = vec![0.0; self.n_features];
                        tree_shap(t, x, &mut phi);
                        (expected_value(t), phi)
                    })
                    .collect();
                let mut phi = vec![0.0; self.n_features];
                let mut base = 0.0;
                for (b, p) in parts {
                    base += b;
                    for (a, v) in phi.iter_mut().zip(&p) {
                        *a += v;
                    }
                }
                (base, phi)
            }
        };
        for c in contributions.iter_mut() {
            *c /= m;
        }
        Explanation {
            method: if method == Method::TreeShap {
                Method::TreeShap
            } else {
                Method::PathAttribution
            },
            base: base / m,
            contributions,
            prediction: self.predict_proba(x),
        }
    }

    /// Path attribution for many rows at once (row-major, no NaN): per row the
    /// `n_features` contributions, in parallel, sixteen rows walking each tree together.
    /// Equal to `explain(x, PathAttribution).contributions` row by row.
    pub fn path_attribution_rows(&self, rows: &[f64]) -> Vec<f64> {
        if rows.len() == self.n_features {
            return self.path_attribution_one(rows);
        }
        const GROUP: usize = 16;
        const BLOCK: usize = 256;
        let nf = self.n_features;
        let m = self.trees.len() as f64;
        let mut out = vec![0.0; rows.len()];
        out.par_chunks_mut(BLOCK * nf)
            .enumerate()
            .for_each(|(b, phi)| {
                let base = b * BLOCK;
                let n = phi.len() / nf;
                let row = |k: usize| &rows[(base + k) * nf..(base + k + 1) * nf];
                let full = n / GROUP * GROUP;
                for t in &self.trees {
                    for g in (0..full).step_by(GROUP) {
                        t.attribute_group(
                            std::array::from_fn::<_, GROUP, _>(|k| row(g + k)),
                            &mut phi[g * nf..(g + GROUP) * nf],
                            nf,
                        );
                    }
                    for k in full..n {
                        saabas(t, row(k), &mut phi[k * nf..(k + 1) * nf]);
                    }
                }
                for v in phi.iter_mut() {
                    *v /= m;
                }
            });
        out
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

#[derive(Debug, Clone, Copy, Default)]
struct PathElement {
    feature: i32,
    zero_fraction: f64,
    one_fraction: f64,
    pweight: f64,
}

// The path-weight updates below divide by small integers and by the fractions of one
// path element; `inv[k] = 1 / k` turns those divisions into multiplications. A path
// element's `one_fraction` is always exactly 0 or 1 (a product of 0/1 indicators), so
// dividing by it when non-zero is the identity.

fn extend_path(
    path: &mut [PathElement],
    depth: usize,
    zero: f64,
    one: f64,
    feature: i32,
    inv: &[f64],
) {
    path[depth] = PathElement {
        feature,
        zero_fraction: zero,
        one_fraction: one,
        pweight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let inv_d1 = inv[depth + 1];
    for i in (0..depth).rev() {
        path[i + 1].pweight += one * path[i].pweight * (i + 1) as f64 * inv_d1;
        path[i].pweight = zero * path[i].pweight * (depth - i) as f64 * inv_d1;
    }
}

fn unwind_path(path: &mut [PathElement], depth: usize, index: usize, inv: &[f64]) {
    let one = path[index].one_fraction;
    let zero = path[index].zero_fraction;
    let mut next_one = path[depth].pweight;
    let d1 = (depth + 1) as f64;
    let inv_d1 = inv[depth + 1];
    if one != 0.0 {
        for i in (0..depth).rev() {
            let tmp = path[i].pweight;
            path[i].pweight = next_one * d1 * inv[i + 1];
            next_one = tmp - path[i].pweight * zero * (depth - i) as f64 * inv_d1;
        }
    } else {
        let inv_zero = 1.0 / zero;
        for i in (0..depth).rev() {
            path[i].pweight = path[i].pweight * d1 * inv_zero * inv[depth - i];
        }
    }
    for i in index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero_fraction = path[i + 1].zero_fraction;
        path[i].one_fraction = path[i + 1].one_fraction;
    }
}

fn unwound_path_sum(path: &[PathElement], depth: usize, index: usize, inv: &[f64]) -> f64 {
    let one = path[index].one_fraction;
    let zero = path[index].zero_fraction;
    let mut total = 0.0;
    if one != 0.0 {
        let mut next_one = path[depth].pweight;
        for i in (0..depth).rev() {
            let tmp = next_one * inv[i + 1];
            total += tmp;
            next_one = path[i].pweight - tmp * zero * (depth - i) as f64;
        }
    } else if zero != 0.0 {
        for i in (0..depth).rev() {
            total += path[i].pweight * inv[depth - i];
        }
        total /= zero;
    }
    total * (depth + 1) as f64
}

/// Adds one tree's exact TreeSHAP values for `x` to `phi`.
pub fn tree_shap(t: &Tree, x: &[f64], phi: &mut [f64]) {
    let max_depth = t.depth() + 2;
    let inv: Vec<f64> = (0..=max_depth + 1)
        .map(|k| if k == 0 { 0.0 } else { 1.0 / k as f64 })
        .collect();
    let mut space = vec![PathElement::default(); (max_depth * (max_depth + 1)) / 2 + max_depth];
    let mut ctx = Shap {
        t,
        x,
        phi,
        inv: &inv,
    };
    ctx.recurse(0, &mut space, 0, 0, 1.0, 1.0, -1);
}

struct Shap<'a> {
    t: &'a Tree,
    x: &'a [f64],
    phi: &'a mut [f64],
    inv: &'a [f64],
}

impl Shap<'_> {
    /// `space[parent_offset..]` holds the parent's path; this node's path is written
    /// right after it (`depth` elements copied, then extended).
    #[allow(clippy::too_many_arguments)]
    fn recurse(
        &mut self,
        node: usize,
        space: &mut [PathElement],
        parent_offset: usize,
        depth: usize,
        zero: f64,
        one: f64,
        feature: i32,
    ) {
        let t = self.t;
        // A subtree with no positive mass has only zero-valued leaves: it adds nothing
        // to any contribution (each leaf's share is proportional to its value).
        if t.class_weight[node][1] == 0.0 {
            return;
        }
        let inv = self.inv;
        let offset = parent_offset + depth;
        let (head, path) = space.split_at_mut(offset);
        if depth > 0 {
            path[..depth].copy_from_slice(&head[parent_offset..parent_offset + depth]);
        }
        let mut depth = depth;
        extend_path(path, depth, zero, one, feature, inv);

        if t.is_leaf(node) {
            let v = t.value(node);
            for i in 1..=depth {
                let w = unwound_path_sum(path, depth, i, inv);
                let el = path[i];
                self.phi[el.feature as usize] += w * (el.one_fraction - el.zero_fraction) * v;
            }
            return;
        }

        let split = t.feature(node);
        let (left, right) = t.children(node);
        let (hot, cold) = if self.x[split] <= t.threshold(node) {
            (left, right)
        } else {
            (right, left)
        };
        let inv_cover = 1.0 / t.cover(node);
        let hot_zero = t.cover(hot) * inv_cover;
        let cold_zero = t.cover(cold) * inv_cover;
        let mut incoming_zero = 1.0;
        let mut incoming_one = 1.0;
        // If this feature was already split on along the path, undo that split so it is
        // counted once, with the combined fractions.
        if let Some(k) = (1..=depth).find(|&k| path[k].feature == split as i32) {
            incoming_zero = path[k].zero_fraction;
            incoming_one = path[k].one_fraction;
            unwind_path(path, depth, k, inv);
            depth -= 1;
        }
        self.recurse(
            hot,
            space,
            offset,
            depth + 1,
            hot_zero * incoming_zero,
            incoming_one,
            split as i32,
        );
        self.recurse(
            cold,
            space,
            offset,
            depth + 1,
            cold_zero * incoming_zero,
            0.0,
            split as i32,
        );
    }
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
        let n = 40;
        let rows: Vec<f64> = (0..n)
            .flat_map(|r| cols.iter().map(move |c| c[r]))
            .collect();
        let batch_phi = f.path_attribution_rows(&rows);
        let batch_p = f.predict_proba_rows(&rows);
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
