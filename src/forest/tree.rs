//! One histogram-based CART classification tree (two classes, Gini impurity).

use super::binning::BinnedData;
use crate::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// Marks a leaf in [`Tree::feature`].
pub const LEAF: u16 = u16::MAX;

/// A trained tree stored in preorder: the left child of internal node `i` is `i + 1`,
/// its right child is `right[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Split feature of each node, [`LEAF`] for leaves.
    pub feature: Vec<u16>,
    /// Split threshold of each internal node: `x <= threshold` goes left.
    pub threshold: Vec<f64>,
    /// Right child of each internal node (0 for leaves).
    pub right: Vec<u32>,
    /// Weighted training mass of each class in each node (class weights and bootstrap
    /// counts included), the basis of leaf probabilities and of TreeSHAP covers.
    pub class_weight: Vec<[f64; 2]>,
}

impl Tree {
    pub fn n_nodes(&self) -> usize {
        self.feature.len()
    }

    pub fn n_leaves(&self) -> usize {
        self.feature.iter().filter(|&&f| f == LEAF).count()
    }

    #[inline]
    pub fn is_leaf(&self, i: usize) -> bool {
        self.feature[i] == LEAF
    }

    /// Weighted training mass in node `i` (its "cover").
    #[inline]
    pub fn cover(&self, i: usize) -> f64 {
        let w = self.class_weight[i];
        w[0] + w[1]
    }

    /// Probability of the positive class in node `i`.
    #[inline]
    pub fn value(&self, i: usize) -> f64 {
        let w = self.class_weight[i];
        let total = w[0] + w[1];
        if total > 0.0 { w[1] / total } else { 0.0 }
    }

    /// Children of internal node `i`: (left, right).
    #[inline]
    pub fn children(&self, i: usize) -> (usize, usize) {
        (i + 1, self.right[i] as usize)
    }

    /// Index of the leaf reached by `x`.
    #[inline]
    pub fn leaf_of(&self, x: &[f64]) -> usize {
        let mut i = 0;
        while !self.is_leaf(i) {
            i = if x[self.feature[i] as usize] <= self.threshold[i] {
                i + 1
            } else {
                self.right[i] as usize
            };
        }
        i
    }

    /// Sets each internal node's class masses to the sum of its children's, so covers
    /// are exactly additive (TreeSHAP relies on it) and a saved tree, which stores leaf
    /// masses only, loads back identical. Children come after their parent.
    pub fn sum_internal_masses(&mut self) {
        for i in (0..self.n_nodes()).rev() {
            if !self.is_leaf(i) {
                let (l, r) = self.children(i);
                let (a, b) = (self.class_weight[l], self.class_weight[r]);
                self.class_weight[i] = [a[0] + b[0], a[1] + b[1]];
            }
        }
    }

    /// Depth of the deepest leaf (root = 0).
    pub fn depth(&self) -> usize {
        let mut max = 0;
        let mut stack = vec![(0usize, 0usize)];
        while let Some((i, d)) = stack.pop() {
            max = max.max(d);
            if !self.is_leaf(i) {
                let (l, r) = self.children(i);
                stack.push((l, d + 1));
                stack.push((r, d + 1));
            }
        }
        max
    }

    /// Checks the structure (used after loading a model file): children in range and
    /// after their parent (so traversal always terminates), features in range, finite
    /// thresholds and non-negative masses.
    pub fn validate(&self, n_features: usize) -> Result<(), String> {
        let n = self.feature.len();
        if n == 0 {
            return Err("tree has no nodes".into());
        }
        if self.threshold.len() != n || self.right.len() != n || self.class_weight.len() != n {
            return Err("tree arrays have different lengths".into());
        }
        for i in 0..n {
            let w = self.class_weight[i];
            if !(w[0] >= 0.0 && w[1] >= 0.0 && w[0].is_finite() && w[1].is_finite()) {
                return Err(format!("node {i} has invalid class mass"));
            }
            if self.is_leaf(i) {
                continue;
            }
            if self.feature[i] as usize >= n_features {
                return Err(format!("node {i} splits on unknown feature"));
            }
            if !self.threshold[i].is_finite() {
                return Err(format!("node {i} has a non-finite threshold"));
            }
            let r = self.right[i] as usize;
            if i + 1 >= n || r <= i + 1 || r >= n {
                return Err(format!("node {i} has children out of range"));
            }
        }
        Ok(())
    }
}

/// Parameters a single tree is grown with.
#[derive(Debug, Clone)]
pub(crate) struct GrowParams {
    pub max_depth: usize,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    pub max_features: usize,
}

/// A training row with its class and weight (bootstrap count x class weight x sample
/// weight). Rows with zero weight are never included.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub row: u32,
    pub class: u32,
    pub w: f64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bin {
    w: [f64; 2],
    n: u32,
}

#[derive(Debug, Clone, Copy)]
struct Split {
    feature: usize,
    /// Samples with bin <= `left_bin` go left.
    left_bin: usize,
    threshold: f64,
    proxy: f64,
}

struct Pending {
    start: usize,
    end: usize,
    depth: usize,
    /// Features known to be constant in this node (inherited by its children).
    constant: u64,
    /// For a right child: its parent, whose `right` pointer is set when it is created.
    parent: Option<usize>,
}

fn totals(samples: &[Sample]) -> [f64; 2] {
    let mut w = [0.0; 2];
    for s in samples {
        w[s.class as usize] += s.w;
    }
    w
}

#[inline]
fn gini(w: [f64; 2]) -> f64 {
    let t = w[0] + w[1];
    if t <= 0.0 {
        return 0.0;
    }
    1.0 - (w[0] * w[0] + w[1] * w[1]) / (t * t)
}

/// Grows one tree on `samples`; adds each split's weighted impurity decrease to
/// `importance`.
pub(crate) fn grow(
    data: &BinnedData,
    samples: &mut [Sample],
    params: &GrowParams,
    rng: &mut SplitMix64,
    importance: &mut [f64],
) -> Tree {
    let n_features = data.features.len();
    debug_assert!(n_features <= 64);
    let mut tree = Tree {
        feature: Vec::new(),
        threshold: Vec::new(),
        right: Vec::new(),
        class_weight: Vec::new(),
    };
    let mut hist = vec![Bin::default(); 256];
    let mut candidates: Vec<usize> = Vec::with_capacity(n_features);
    let mut stack = vec![Pending {
        start: 0,
        end: samples.len(),
        depth: 0,
        constant: 0,
        parent: None,
    }];

    while let Some(node) = stack.pop() {
        let id = tree.feature.len();
        if let Some(p) = node.parent {
            tree.right[p] = id as u32;
        }
        let part = &mut samples[node.start..node.end];
        let w = totals(part);
        let n = part.len();
        tree.class_weight.push(w);
        tree.feature.push(LEAF);
        tree.threshold.push(0.0);
        tree.right.push(0);

        let impurity = gini(w);
        if node.depth >= params.max_depth
            || n < params.min_samples_split
            || n < 2 * params.min_samples_leaf
            || impurity <= f64::EPSILON
        {
            continue;
        }

        // Draw candidate features without replacement until `max_features`
        // non-constant ones have been evaluated (scikit-learn's rule).
        let mut constant = node.constant;
        candidates.clear();
        candidates.extend((0..n_features).filter(|&f| constant & (1 << f) == 0));
        let mut visited = 0;
        let mut best: Option<Split> = None;
        while visited < params.max_features && !candidates.is_empty() {
            let f = candidates.swap_remove(rng.below(candidates.len()));
            let fb = &data.features[f];
            let nb = fb.n_bins();
            let h = &mut hist[..nb];
            h.fill(Bin::default());
            let col = &data.bins[f];
            for s in part.iter() {
                let b = &mut h[col[s.row as usize] as usize];
                b.w[s.class as usize] += s.w;
                b.n += 1;
            }
            // Scan boundaries between consecutive non-empty bins.
            let mut left = Bin::default();
            let mut prev: Option<usize> = None;
            let mut found_boundary = false;
            for (b, bin) in h.iter().enumerate() {
                if bin.n == 0 {
                    continue;
                }
                if let Some(p) = prev {
                    found_boundary = true;
                    let nl = left.n as usize;
                    if nl >= params.min_samples_leaf && n - nl >= params.min_samples_leaf {
                        let wl = left.w;
                        let wr = [w[0] - wl[0], w[1] - wl[1]];
                        let tl = wl[0] + wl[1];
                        let tr = wr[0] + wr[1];
                        if tl > 0.0 && tr > 0.0 {
                            let proxy = (wl[0] * wl[0] + wl[1] * wl[1]) / tl
                                + (wr[0] * wr[0] + wr[1] * wr[1]) / tr;
                            if best.is_none_or(|s| proxy > s.proxy) {
                                best = Some(Split {
                                    feature: f,
                                    left_bin: p,
                                    threshold: fb.threshold(p, b),
                                    proxy,
                                });
                            }
                        }
                    }
                }
                left.w[0] += bin.w[0];
                left.w[1] += bin.w[1];
                left.n += bin.n;
                prev = Some(b);
            }
            if found_boundary {
                visited += 1;
            } else {
                constant |= 1 << f;
            }
        }

        let Some(split) = best else { continue };

        // Partition: bins <= left_bin first.
        let col = &data.bins[split.feature];
        let mut i = 0;
        let mut j = part.len();
        while i < j {
            if col[part[i].row as usize] as usize <= split.left_bin {
                i += 1;
            } else {
                j -= 1;
                part.swap(i, j);
            }
        }
        let mid = node.start + i;
        let wl = totals(&samples[node.start..mid]);
        let wr = totals(&samples[mid..node.end]);
        importance[split.feature] +=
            (w[0] + w[1]) * impurity - (wl[0] + wl[1]) * gini(wl) - (wr[0] + wr[1]) * gini(wr);

        tree.feature[id] = split.feature as u16;
        tree.threshold[id] = split.threshold;
        // Right child is pushed first so the left child is built next (preorder).
        stack.push(Pending {
            start: mid,
            end: node.end,
            depth: node.depth + 1,
            constant,
            parent: Some(id),
        });
        stack.push(Pending {
            start: node.start,
            end: mid,
            depth: node.depth + 1,
            constant,
            parent: None,
        });
    }
    tree.sum_internal_masses();
    tree
}
