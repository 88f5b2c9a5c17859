//! One histogram-based CART classification tree (two classes, Gini impurity).

use super::ForestError;
use super::binning::BinnedData;
use crate::util::rng::SplitMix64;

/// Marks a leaf in [`Node::feature`].
pub const LEAF: u16 = u16::MAX;

/// One node, 16 bytes, so that prediction touches one cache line per level.
///
/// Its fields are private to this module: outside it a node can only be read (the
/// walks below index the nodes unchecked, trusting the child indices, so no code
/// outside this file may write one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Node {
    /// Internal node: split threshold (`x <= value` goes left). Leaf: the probability of
    /// the positive class.
    value: f64,
    /// Right child of an internal node (the left child is the next node).
    right: u32,
    /// Split feature, or [`LEAF`].
    feature: u16,
}

impl Node {
    /// Internal node: the split threshold (`x <= value` goes left). Leaf: the
    /// probability of the positive class.
    #[inline]
    pub fn value(self) -> f64 {
        self.value
    }

    /// Split feature, or [`LEAF`].
    #[inline]
    pub fn feature(self) -> u16 {
        self.feature
    }

    /// Right child of an internal node (the left child is the next node).
    #[inline]
    pub fn right(self) -> usize {
        self.right as usize
    }

    #[inline]
    pub fn is_leaf(self) -> bool {
        self.feature == LEAF
    }
}

/// A trained tree stored in preorder: the left child of internal node `i` is `i + 1`.
///
/// **Invariant** (the unchecked walks below rely on it): every internal node's children
/// are inside `nodes`, after it, and the nodes form one tree in preorder; `values` and
/// `class_weight` have one entry per node; `depth` is the depth of the deepest leaf.
/// The fields are private, so a `Tree` exists only through [`Tree::from_parts`] (training
/// builds one with it too), which checks the structure and ends in `finish`, which
/// derives `values` and `depth`. Nothing mutates a tree afterwards.
///
/// Code outside this module can neither build a node nor change a tree:
///
/// ```compile_fail
/// fn corrupt(n: &mut spamscope::model::forest::tree::Node) {
///     n.right = u32::MAX;
/// }
/// ```
///
/// ```compile_fail
/// fn corrupt(t: &mut spamscope::model::forest::Tree) {
///     t.nodes.clear();
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    nodes: Vec<Node>,
    /// Weighted training mass of each class in each node (class weights and bootstrap
    /// counts included): the basis of leaf probabilities and of TreeSHAP covers.
    /// Internal nodes hold the sums of their children.
    class_weight: Vec<[f64; 2]>,
    /// Probability of the positive class in each node (from `class_weight`).
    values: Vec<f64>,
    /// Depth of the deepest leaf (root = 0).
    depth: usize,
    /// The most distinct features split on along one path from the root to a leaf.
    path_features: usize,
}

fn probability(w: [f64; 2]) -> f64 {
    let total = w[0] + w[1];
    if total > 0.0 { w[1] / total } else { 0.0 }
}

/// Checks that the nodes form one binary tree in preorder (every node visited once:
/// a left child right after its parent, a right child right after its left subtree)
/// and returns its depth, which may not exceed [`super::MAX_DEPTH`]. Child indices are
/// known to point forward and inside the arrays.
fn preorder_depth(feature: &[u16], right: &[u32]) -> Result<usize, ForestError> {
    let bad = |m: String| Err(ForestError::Malformed(m));
    // Right children still to visit, with their depth.
    let mut pending: Vec<(usize, usize)> = Vec::new();
    let (mut node, mut depth, mut deepest) = (0usize, 0usize, 0usize);
    loop {
        deepest = deepest.max(depth);
        if deepest > super::MAX_DEPTH {
            return bad(format!("tree is deeper than {} levels", super::MAX_DEPTH));
        }
        if feature[node] != LEAF {
            pending.push((right[node] as usize, depth + 1));
            node += 1;
            depth += 1;
            continue;
        }
        match pending.pop() {
            Some((r, d)) if r == node + 1 => (node, depth) = (r, d),
            Some((r, _)) => {
                return bad(format!("node {r} is reached twice or out of preorder"));
            }
            None if node + 1 == feature.len() => return Ok(deepest),
            None => return bad(format!("nodes after {node} belong to no tree")),
        }
    }
}

impl Tree {
    /// Builds a tree from its nodes' split features, thresholds, right children and
    /// leaf masses (internal masses are derived). Checks the structure first.
    pub fn from_parts(
        feature: Vec<u16>,
        threshold: Vec<f64>,
        right: Vec<u32>,
        class_weight: Vec<[f64; 2]>,
        n_features: usize,
    ) -> Result<Tree, ForestError> {
        let n = feature.len();
        if n == 0 {
            return Err(ForestError::Malformed("tree has no nodes".into()));
        }
        if n > super::MAX_NODES {
            return Err(ForestError::Malformed(format!(
                "tree has {n} nodes; at most {} are allowed",
                super::MAX_NODES
            )));
        }
        if threshold.len() != n || right.len() != n || class_weight.len() != n {
            return Err(ForestError::Malformed(
                "tree arrays have different lengths".into(),
            ));
        }
        for i in 0..n {
            let w = class_weight[i];
            if feature[i] == LEAF {
                if !(w[0] >= 0.0 && w[1] >= 0.0 && w[0].is_finite() && w[1].is_finite()) {
                    return Err(ForestError::Malformed(format!(
                        "leaf {i} has an invalid class mass"
                    )));
                }
                continue;
            }
            if feature[i] as usize >= n_features {
                return Err(ForestError::Malformed(format!(
                    "node {i} splits on an unknown feature"
                )));
            }
            if !threshold[i].is_finite() {
                return Err(ForestError::Malformed(format!(
                    "node {i} has a non-finite threshold"
                )));
            }
            let r = right[i] as usize;
            if i + 1 >= n || r <= i + 1 || r >= n {
                return Err(ForestError::Malformed(format!(
                    "node {i} has children out of range"
                )));
            }
        }
        preorder_depth(&feature, &right)?;
        let mut t = Tree {
            nodes: (0..n)
                .map(|i| Node {
                    value: threshold[i],
                    right: right[i],
                    feature: feature[i],
                })
                .collect(),
            class_weight,
            values: Vec::new(),
            depth: 0,
            path_features: 0,
        };
        t.finish();
        Ok(t)
    }

    /// Derives internal masses (sums of the children, so covers are exactly additive)
    /// and leaf probabilities. Children come after their parent.
    fn finish(&mut self) {
        for i in (0..self.nodes.len()).rev() {
            if self.is_leaf(i) {
                self.nodes[i].value = probability(self.class_weight[i]);
                self.nodes[i].right = 0;
            } else {
                let (l, r) = self.children(i);
                let (a, b) = (self.class_weight[l], self.class_weight[r]);
                self.class_weight[i] = [a[0] + b[0], a[1] + b[1]];
            }
        }
        self.values = self.class_weight.iter().map(|&w| probability(w)).collect();
        let mut depth = vec![0usize; self.nodes.len()];
        for i in 0..self.nodes.len() {
            if !self.is_leaf(i) {
                let (l, r) = self.children(i);
                depth[l] = depth[i] + 1;
                depth[r] = depth[i] + 1;
            }
        }
        self.depth = depth.iter().copied().max().unwrap_or(0);
        // In preorder a node's ancestors are the nodes of the current path above its
        // depth: walk the nodes in order, keeping the path's features counted.
        let n_feat = self
            .nodes
            .iter()
            .filter(|n| n.feature != LEAF)
            .map(|n| n.feature as usize + 1)
            .max()
            .unwrap_or(0);
        let mut count = vec![0u32; n_feat];
        let mut path: Vec<usize> = Vec::with_capacity(self.depth + 1);
        let (mut distinct, mut most) = (0usize, 0usize);
        for (i, &d) in depth.iter().enumerate() {
            while path.len() > d {
                let f = path.pop().unwrap_or(0);
                count[f] -= 1;
                if count[f] == 0 {
                    distinct -= 1;
                }
            }
            if self.is_leaf(i) {
                most = most.max(distinct);
            } else {
                let f = self.feature(i);
                count[f] += 1;
                if count[f] == 1 {
                    distinct += 1;
                }
                path.push(f);
            }
        }
        self.path_features = most;
    }

    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Node `i` (read only).
    #[inline]
    pub fn node(&self, i: usize) -> Node {
        self.nodes[i]
    }

    /// Weighted training mass of each class in node `i` (internal nodes: the sums of
    /// their children).
    #[inline]
    pub fn class_weight(&self, i: usize) -> [f64; 2] {
        self.class_weight[i]
    }

    pub fn n_leaves(&self) -> usize {
        self.nodes.iter().filter(|n| n.feature == LEAF).count()
    }

    #[inline]
    pub fn is_leaf(&self, i: usize) -> bool {
        self.nodes[i].feature == LEAF
    }

    /// Split feature of internal node `i`.
    #[inline]
    pub fn feature(&self, i: usize) -> usize {
        self.nodes[i].feature as usize
    }

    /// Split threshold of internal node `i`.
    #[inline]
    pub fn threshold(&self, i: usize) -> f64 {
        self.nodes[i].value
    }

    /// Weighted training mass in node `i` (its "cover").
    #[inline]
    pub fn cover(&self, i: usize) -> f64 {
        let w = self.class_weight[i];
        w[0] + w[1]
    }

    /// Probability of the positive class in node `i` (any node).
    #[inline]
    pub fn value(&self, i: usize) -> f64 {
        self.values[i]
    }

    /// Children of internal node `i`: (left, right).
    #[inline]
    pub fn children(&self, i: usize) -> (usize, usize) {
        (i + 1, self.nodes[i].right as usize)
    }

    /// The child of internal node `i` that `x` goes to.
    #[inline]
    pub fn next(&self, i: usize, x: &[f64]) -> usize {
        let n = self.nodes[i];
        if x[n.feature as usize] <= n.value {
            i + 1
        } else {
            n.right as usize
        }
    }

    /// Index of the leaf reached by `x`.
    #[inline]
    pub fn leaf_of(&self, x: &[f64]) -> usize {
        let mut i = 0;
        loop {
            let n = self.nodes[i];
            if n.feature == LEAF {
                return i;
            }
            i = if x[n.feature as usize] <= n.value {
                i + 1
            } else {
                n.right as usize
            };
        }
    }

    /// Probability of the positive class for `x`.
    #[inline]
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.nodes[self.leaf_of(x)].value
    }

    /// The leaf values of `G` trees for one row, walked together so that their memory
    /// loads overlap (one row's walk down a single tree waits on each node in turn):
    /// the single-account path. Same leaves as [`Tree::predict`].
    #[inline]
    pub fn predict_trees<const G: usize>(trees: [&Tree; G], x: &[f64]) -> [f64; G] {
        let mut at = [0usize; G];
        let depth = trees.iter().map(|t| t.depth).max().unwrap_or(0);
        for _ in 0..depth {
            for k in 0..G {
                let nodes = trees[k].nodes.as_slice();
                let i = at[k];
                // SAFETY: as in `accumulate_group`: `i` starts at the root (a tree has
                // at least one node) and only moves to children, in range by the
                // `Tree` invariant; a leaf keeps its own index.
                let n = unsafe { *nodes.get_unchecked(i) };
                let leaf = n.feature == LEAF;
                let f = if leaf { 0 } else { n.feature as usize };
                let next = if x[f] <= n.value {
                    i + 1
                } else {
                    n.right as usize
                };
                at[k] = if leaf { i } else { next };
            }
        }
        std::array::from_fn(|k| trees[k].nodes[at[k]].value)
    }

    /// One row's path attribution over `G` trees walked together (as
    /// [`Tree::predict_trees`]), added to `phi` tree by tree and root to leaf: the same
    /// sums in the same order as attributing the trees one at a time. Returns the
    /// leaves' values, as [`Tree::predict_trees`]. `steps` is scratch space of at least
    /// `G` × [`super::MAX_DEPTH`] entries.
    #[inline]
    pub fn attribute_trees<const G: usize>(
        trees: [&Tree; G],
        x: &[f64],
        phi: &mut [f64],
        steps: &mut [(u16, f64)],
    ) -> [f64; G] {
        let depth = trees.iter().map(|t| t.depth).max().unwrap_or(0);
        let mut at = [0usize; G];
        // Each tree's steps (feature, change in node probability), applied in order
        // below: tree k's from `k * MAX_DEPTH`.
        let steps = &mut steps[..G * super::MAX_DEPTH];
        let mut len = [0usize; G];
        for _ in 0..depth {
            for k in 0..G {
                let t = trees[k];
                let i = at[k];
                let n = t.nodes[i];
                if n.feature == LEAF {
                    continue;
                }
                let next = if x[n.feature as usize] <= n.value {
                    i + 1
                } else {
                    n.right as usize
                };
                steps[k * super::MAX_DEPTH + len[k]] = (n.feature, t.values[next] - t.values[i]);
                len[k] += 1;
                at[k] = next;
            }
        }
        for k in 0..G {
            let from = k * super::MAX_DEPTH;
            for &(f, d) in &steps[from..from + len[k]] {
                phi[f as usize] += d;
            }
        }
        std::array::from_fn(|k| trees[k].nodes[at[k]].value)
    }

    /// Depth of the deepest leaf (root = 0).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The most distinct features split on along one path from the root to a leaf (at
    /// most the depth).
    pub fn path_features(&self) -> usize {
        self.path_features
    }

    /// Adds this tree's path attribution for a group of rows to `phi` (row-major,
    /// `n_features` per row), walking the rows together like
    /// [`Tree::accumulate_group`]: each split on the way credits its feature with the
    /// change in node probability. Returns the rows' leaf values (what
    /// [`Tree::accumulate_group`] adds), so scoring and attribution take one walk.
    #[inline]
    pub fn attribute_group<const G: usize>(
        &self,
        rows: [&[f64]; G],
        phi: &mut [f64],
        nf: usize,
    ) -> [f64; G] {
        let mut at = [0usize; G];
        let mut here = [self.values[0]; G];
        let nodes = self.nodes.as_slice();
        let values = self.values.as_slice();
        let phi = &mut phi[..G * nf];
        for _ in 0..self.depth {
            for k in 0..G {
                let i = at[k];
                // SAFETY: `i` starts at the root (a tree has at least one node) and
                // only moves to children, which are in range by the `Tree` invariant
                // (private fields; established by `from_parts`); a leaf keeps its own
                // index.
                let n = unsafe { *nodes.get_unchecked(i) };
                // Without branching on the data, as `accumulate_group`: a row at its
                // leaf adds `values[i] - values[i]`, exactly +0.0, to its first
                // feature, which leaves every value's bits as they are (a sum of these
                // differences starting at +0.0 is never -0.0).
                let leaf = n.feature == LEAF;
                let f = if leaf { 0 } else { n.feature as usize };
                let next = if rows[k][f] <= n.value {
                    i + 1
                } else {
                    n.right as usize
                };
                let next = if leaf { i } else { next };
                // SAFETY: `next` is `i` or a child of `i`, in range as above; `values`
                // has one entry per node (`finish`).
                let v = unsafe { *values.get_unchecked(next) };
                phi[k * nf + f] += v - here[k];
                here[k] = v;
                at[k] = next;
            }
        }
        std::array::from_fn(|k| nodes[at[k]].value)
    }

    /// Adds this tree's probabilities for a group of rows to `acc`. The rows walk the
    /// tree together, one level at a time, without branching on the data: a row that
    /// reached its leaf stays there. Independent rows hide each other's memory latency
    /// and there are no mispredicted branches (several times faster than one row after
    /// another for large batches).
    #[inline]
    pub fn accumulate_group<const G: usize>(&self, rows: [&[f64]; G], acc: &mut [f64; G]) {
        let mut at = [0usize; G];
        let nodes = self.nodes.as_slice();
        for _ in 0..self.depth {
            for k in 0..G {
                let i = at[k];
                // SAFETY: `i` starts at the root (a tree has at least one node) and
                // only moves to children, which are in range by the `Tree` invariant
                // (private fields; established by `from_parts`); a leaf keeps its own
                // index.
                let n = unsafe { *nodes.get_unchecked(i) };
                let leaf = n.feature == LEAF;
                let f = if leaf { 0 } else { n.feature as usize };
                let next = if rows[k][f] <= n.value {
                    i + 1
                } else {
                    n.right as usize
                };
                at[k] = if leaf { i } else { next };
            }
        }
        for k in 0..G {
            acc[k] += self.nodes[at[k]].value;
        }
    }
}

/// Parameters a single tree is grown with.
#[derive(Debug, Clone)]
pub(crate) struct GrowParams {
    pub max_depth: usize,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    pub max_features: usize,
    /// Extremely randomised trees: one random threshold per candidate feature instead
    /// of the best one.
    pub random_splits: bool,
}

/// A training row with its class and weight (bootstrap count x class weight x sample
/// weight). Rows with zero weight are never included.
///
/// Eight bytes: histogram passes stream these arrays, so their size is the memory
/// traffic of training. The class is the sign of the stored weight (weights are > 0).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub row: u32,
    signed_w: f32,
}

impl Sample {
    pub fn new(row: u32, class: u32, w: f64) -> Sample {
        let w = w as f32;
        Sample {
            row,
            signed_w: if class == 1 { w } else { -w },
        }
    }

    /// 0 or 1.
    #[inline]
    pub fn class(self) -> usize {
        ((self.signed_w.to_bits() >> 31) ^ 1) as usize
    }

    #[inline]
    pub fn weight(self) -> f64 {
        f64::from(self.signed_w.abs())
    }
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
    /// Weighted class masses of the node's samples.
    w: [f64; 2],
    depth: usize,
    /// Features known to be constant in this node (inherited by its children).
    constant: u64,
    /// For a right child: its parent, whose `right` pointer is set when it is created.
    parent: Option<usize>,
    /// Which bins the node's sample rows index: 0 = the global columns, k = the local
    /// copy of level k - 1.
    level: usize,
}

/// Subtree-local bin copies. Deep nodes hold few rows spread over the whole data set;
/// gathering their bins from the full columns misses the cache on nearly every sample.
/// So when a node has at most `LOCAL_LEVELS[k]` samples, its subtree gets a compact
/// copy of the bins (one column per feature, rows in sample order) made from the
/// enclosing copy, which keeps each feature's bins for the subtree within a few
/// kilobytes of cache. Depth-first growth works on one subtree per level at a time, so
/// one buffer per level serves all of them.
const LOCAL_LEVELS: [usize; 2] = [32_768, 2_048];

#[derive(Default)]
struct LocalBins {
    bins: Vec<u8>,
    n: usize,
}

fn totals(samples: &[Sample]) -> [f64; 2] {
    let mut w = [0.0; 2];
    for s in samples {
        w[s.class()] += s.weight();
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

/// Scratch space for histograms: four interleaved copies break the store-to-load
/// dependency between consecutive samples that fall in the same bin (the common case
/// for 0/1 flags), then are summed.
struct Histogram {
    w: Vec<[f64; 2]>,
    n: Vec<u32>,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            w: vec![[0.0; 2]; 4 * 256],
            n: vec![0; 256],
        }
    }

    /// Fills `w[..nb]` (and `n[..nb]` if `counts`) for the samples of one node.
    fn build(&mut self, col: &[u8], samples: &[Sample], nb: usize, counts: bool) {
        if nb == 2 {
            self.build_two(col, samples);
        } else if samples.len() >= 16 * nb {
            let h = &mut self.w[..4 * nb];
            h.fill([0.0; 2]);
            let mut chunks = samples.chunks_exact(4);
            for c in &mut chunks {
                for (k, s) in c.iter().enumerate() {
                    h[k * nb + col[s.row as usize] as usize][s.class()] += s.weight();
                }
            }
            for s in chunks.remainder() {
                h[col[s.row as usize] as usize][s.class()] += s.weight();
            }
            for b in 0..nb {
                let (x, y, z) = (h[nb + b], h[2 * nb + b], h[3 * nb + b]);
                h[b][0] += x[0] + y[0] + z[0];
                h[b][1] += x[1] + y[1] + z[1];
            }
        } else {
            let h = &mut self.w[..nb];
            h.fill([0.0; 2]);
            for s in samples {
                h[col[s.row as usize] as usize][s.class()] += s.weight();
            }
        }
        if counts {
            let n = &mut self.n[..nb];
            n.fill(0);
            for s in samples {
                n[col[s.row as usize] as usize] += 1;
            }
        }
    }
}

impl Histogram {
    /// Two bins (0/1 flags, most features here): register accumulators instead of
    /// memory, four lanes wide. Per bin it sums the signed weight (class 1 positive)
    /// and the absolute weight; the class masses are their half-sum and half-difference,
    /// which is exactly 0 for a class absent from the bin. Multiplying by the 0/1 bin is
    /// exact, so the sums are deterministic.
    fn build_two(&mut self, col: &[u8], samples: &[Sample]) {
        // acc[q][lane]: q = signed bin 1, absolute bin 1, signed bin 0, absolute bin 0.
        let mut acc = [[0.0f64; 4]; 4];
        let mut chunks = samples.chunks_exact(4);
        for c in &mut chunks {
            for (k, s) in c.iter().enumerate() {
                let one = f64::from(col[s.row as usize]);
                let zero = 1.0 - one;
                let sw = f64::from(s.signed_w);
                let aw = sw.abs();
                acc[0][k] += sw * one;
                acc[1][k] += aw * one;
                acc[2][k] += sw * zero;
                acc[3][k] += aw * zero;
            }
        }
        for s in chunks.remainder() {
            let one = f64::from(col[s.row as usize]);
            let zero = 1.0 - one;
            let sw = f64::from(s.signed_w);
            let aw = sw.abs();
            acc[0][0] += sw * one;
            acc[1][0] += aw * one;
            acc[2][0] += sw * zero;
            acc[3][0] += aw * zero;
        }
        let total = |q: usize| (acc[q][0] + acc[q][1]) + (acc[q][2] + acc[q][3]);
        let (s1, a1, s0, a0) = (total(0), total(1), total(2), total(3));
        self.w[0] = [0.5 * (a0 - s0), 0.5 * (a0 + s0)];
        self.w[1] = [0.5 * (a1 - s1), 0.5 * (a1 + s1)];
    }
}

/// Extra-trees split of one feature: a threshold drawn uniformly between the node's
/// smallest and largest value (as far as the bins tell), moved to the bin boundary
/// below it. Returns `None` when the feature is constant in the node; a split that
/// would leave a side with fewer than `min_samples_leaf` samples gets a proxy of
/// -inf (it counts as evaluated but never wins over a valid one).
#[allow(clippy::too_many_arguments)]
fn random_split(
    hist: &Histogram,
    fb: &super::binning::FeatureBins,
    nb: usize,
    w: [f64; 2],
    n: usize,
    params: &GrowParams,
    need_counts: bool,
    rng: &mut SplitMix64,
    f: usize,
) -> Option<Split> {
    let nonempty = |b: &usize| hist.w[*b][0] + hist.w[*b][1] > 0.0;
    let first = (0..nb).find(nonempty)?;
    let last = (0..nb).rev().find(nonempty)?;
    if first == last {
        return None;
    }
    let (lo, hi) = (fb.lo[first], fb.hi[last]);
    let t = lo + rng.next_f64() * (hi - lo);
    // The last non-empty bin below `last` whose smallest value is <= t goes left.
    let left_bin = (first..last)
        .rev()
        .find(|b| nonempty(b) && fb.lo[*b] <= t)
        .unwrap_or(first);
    let right_bin = (left_bin + 1..=last).find(nonempty)?;
    let (mut lw, mut ln) = ([0.0f64; 2], 0usize);
    for b in 0..=left_bin {
        lw[0] += hist.w[b][0];
        lw[1] += hist.w[b][1];
        if need_counts {
            ln += hist.n[b] as usize;
        }
    }
    let wr = [w[0] - lw[0], w[1] - lw[1]];
    let (tl, tr) = (lw[0] + lw[1], wr[0] + wr[1]);
    let leaf_ok =
        !need_counts || (ln >= params.min_samples_leaf && n - ln >= params.min_samples_leaf);
    let proxy = if leaf_ok && tl > 0.0 && tr > 0.0 {
        (lw[0] * lw[0] + lw[1] * lw[1]) / tl + (wr[0] * wr[0] + wr[1] * wr[1]) / tr
    } else {
        f64::NEG_INFINITY
    };
    Some(Split {
        feature: f,
        left_bin,
        threshold: fb.threshold(left_bin, right_bin),
        proxy,
    })
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
    let mut feature: Vec<u16> = Vec::new();
    let mut threshold: Vec<f64> = Vec::new();
    let mut right: Vec<u32> = Vec::new();
    let mut class_weight: Vec<[f64; 2]> = Vec::new();
    let mut hist = Histogram::new();
    let mut best_hist: Vec<[f64; 2]> = vec![[0.0; 2]; 256];
    // Per-bin sample counts are only needed to enforce a minimum leaf size above 1
    // (every sample has a positive weight, so a bin is non-empty iff its mass is > 0).
    let need_counts = params.min_samples_leaf > 1;
    let mut candidates: Vec<usize> = Vec::with_capacity(n_features);
    let mut scratch: Vec<Sample> = Vec::with_capacity(samples.len());
    let mut locals: Vec<LocalBins> = (0..LOCAL_LEVELS.len())
        .map(|_| LocalBins::default())
        .collect();
    let mut origin: Vec<u32> = Vec::new();
    let mut stack = vec![Pending {
        start: 0,
        end: samples.len(),
        w: totals(samples),
        depth: 0,
        constant: 0,
        parent: None,
        level: 0,
    }];

    while let Some(node) = stack.pop() {
        let id = feature.len();
        if let Some(p) = node.parent {
            right[p] = id as u32;
        }
        let part = &mut samples[node.start..node.end];
        let w = node.w;
        let n = part.len();
        class_weight.push(w);
        feature.push(LEAF);
        threshold.push(0.0);
        right.push(0);

        let impurity = gini(w);
        if node.depth >= params.max_depth
            || n < params.min_samples_split
            || n < params.min_samples_leaf.saturating_mul(2)
            || impurity <= f64::EPSILON
        {
            continue;
        }

        // Move to the deepest local copy this node is small enough for.
        let mut level = node.level;
        if let Some(k) = (level..LOCAL_LEVELS.len())
            .rev()
            .find(|&k| n <= LOCAL_LEVELS[k])
        {
            origin.clear();
            origin.extend(part.iter().map(|s| s.row));
            for (i, s) in part.iter_mut().enumerate() {
                s.row = i as u32;
            }
            let (outer, inner) = locals.split_at_mut(k);
            let dst = &mut inner[0];
            dst.n = n;
            dst.bins.clear();
            dst.bins.resize(n_features * n, 0);
            for (f, out) in dst.bins.chunks_exact_mut(n).enumerate() {
                let src: &[u8] = match level {
                    0 => &data.bins[f],
                    l => {
                        let o = &outer[l - 1];
                        &o.bins[f * o.n..(f + 1) * o.n]
                    }
                };
                for (d, &r) in out.iter_mut().zip(&origin) {
                    *d = src[r as usize];
                }
            }
            level = k + 1;
        }
        let column = |f: usize| -> &[u8] {
            match level {
                0 => &data.bins[f],
                l => {
                    let b = &locals[l - 1];
                    &b.bins[f * b.n..(f + 1) * b.n]
                }
            }
        };

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
            hist.build(column(f), part, nb, need_counts);
            if params.random_splits {
                match random_split(&hist, fb, nb, w, n, params, need_counts, rng, f) {
                    None => constant |= 1 << f,
                    Some(s) => {
                        visited += 1;
                        if best.is_none_or(|b| s.proxy > b.proxy) {
                            best = Some(s);
                            best_hist[..nb].copy_from_slice(&hist.w[..nb]);
                        }
                    }
                }
                continue;
            }
            // Scan boundaries between consecutive non-empty bins.
            let (mut lw, mut ln) = ([0.0f64; 2], 0usize);
            let mut prev: Option<usize> = None;
            let mut found_boundary = false;
            let mut improved = false;
            for b in 0..nb {
                let bw = hist.w[b];
                if bw[0] + bw[1] <= 0.0 {
                    continue;
                }
                if let Some(p) = prev {
                    found_boundary = true;
                    if !need_counts
                        || (ln >= params.min_samples_leaf && n - ln >= params.min_samples_leaf)
                    {
                        let wr = [w[0] - lw[0], w[1] - lw[1]];
                        let tl = lw[0] + lw[1];
                        let tr = wr[0] + wr[1];
                        if tl > 0.0 && tr > 0.0 {
                            let proxy = (lw[0] * lw[0] + lw[1] * lw[1]) / tl
                                + (wr[0] * wr[0] + wr[1] * wr[1]) / tr;
                            if best.is_none_or(|s| proxy > s.proxy) {
                                best = Some(Split {
                                    feature: f,
                                    left_bin: p,
                                    threshold: fb.threshold(p, b),
                                    proxy,
                                });
                                improved = true;
                            }
                        }
                    }
                }
                lw[0] += bw[0];
                lw[1] += bw[1];
                if need_counts {
                    ln += hist.n[b] as usize;
                }
                prev = Some(b);
            }
            if improved {
                best_hist[..nb].copy_from_slice(&hist.w[..nb]);
            }
            if found_boundary {
                visited += 1;
            } else {
                constant |= 1 << f;
            }
        }

        let Some(split) = best.filter(|s| s.proxy.is_finite()) else {
            continue;
        };

        // The children's class masses, summed from the split feature's histogram
        // (a side without spammers gets exactly 0).
        let nb = data.features[split.feature].n_bins();
        let sum = |bins: &[[f64; 2]]| {
            bins.iter()
                .fold([0.0f64; 2], |a, b| [a[0] + b[0], a[1] + b[1]])
        };
        let wl = sum(&best_hist[..=split.left_bin]);
        let wr = sum(&best_hist[split.left_bin + 1..nb]);
        importance[split.feature] +=
            (w[0] + w[1]) * impurity - (wl[0] + wl[1]) * gini(wl) - (wr[0] + wr[1]) * gini(wr);

        // Stable, branchless partition (bins <= left_bin first): samples keep their row
        // order within every node, so histogram passes read the bins in increasing
        // address order.
        let col = column(split.feature);
        scratch.clear();
        scratch.resize(part.len(), Sample::new(0, 0, 0.0));
        let (mut l, mut r) = (0usize, 0usize);
        for i in 0..part.len() {
            let s = part[i];
            let left = (col[s.row as usize] as usize <= split.left_bin) as usize;
            part[l] = s;
            scratch[r] = s;
            l += left;
            r += 1 - left;
        }
        part[l..].copy_from_slice(&scratch[..r]);
        let mid = node.start + l;

        feature[id] = split.feature as u16;
        threshold[id] = split.threshold;
        // Right child is pushed first so the left child is built next (preorder).
        stack.push(Pending {
            start: mid,
            end: node.end,
            w: wr,
            depth: node.depth + 1,
            constant,
            parent: Some(id),
            level,
        });
        stack.push(Pending {
            start: node.start,
            end: mid,
            w: wl,
            depth: node.depth + 1,
            constant,
            parent: None,
            level,
        });
    }
    Tree::from_parts(feature, threshold, right, class_weight, n_features)
        .expect("a grown tree is well formed")
}
