//! Exact path-dependent TreeSHAP in O(nodes x depth) per tree and account.
//!
//! The values are those of Lundberg et al.'s Algorithm 2 (the classic recursion this
//! replaces, kept in the tests as the reference), computed the way Linear TreeSHAP
//! (Yu et al., NeurIPS 2022) does, by polynomials along the paths, evaluated here at
//! Gauss-Legendre nodes instead of being stored by coefficients.
//!
//! For a leaf `l` with value `v` whose path splits on the features `P` (a feature split
//! on several times counts once: its cover fractions `z` multiply, its "x goes this
//! way" indicators `o` are and-ed), the Shapley weights of the path's coalition game
//! are Beta integrals, `|S|! (d-|S|-1)! / d! = ∫₀¹ t^|S| (1-t)^(d-|S|-1) dt`, so
//!
//! ```text
//! phi_i += v (o_i - z_i) ∫₀¹ Π_{j ∈ P, j ≠ i} (t o_j + (1 - t) z_j) dt
//!        = v (o_i - z_i) ∫₀¹ P_l(t) / f_i(t) dt,   f_j(t) = t o_j + (1 - t) z_j,
//! ```
//!
//! with `P_l` the product of every factor on the path: a polynomial of degree at most
//! the tree's depth, so Gauss-Legendre quadrature with `ceil(depth / 2)` nodes is exact.
//! Summing over leaves, the edge that splits on `i` needs only
//! `S_c(t) = Σ_{leaves l below} v_l P_l(t)`, which one depth-first walk returns bottom
//! up: O(quadrature points) work per edge, no per-leaf unwinding. When a feature
//! recurs below an edge, the deeper edge's factor replaces the upper one for the leaves
//! below it; the deeper edge takes their share back from the upper edge's sum (the
//! same quadrature of the same numbers, so it cancels to rounding).

// The loops over quadrature nodes index several arrays in step (they vectorise).
#![allow(clippy::needless_range_loop)]

use super::{Forest, Tree};
use rayon::prelude::*;

/// Trees per unit of work: one account's trees are summed chunk by chunk, in the same
/// order whether the chunks run in parallel (one account) or not (many accounts), so
/// both give the same bits.
const TREES_PER_CHUNK: usize = 16;

/// Accounts walking a tree together in bulk: the walk's control flow (which nodes, in
/// which order) is the tree's, the same for every account, so its cost (mostly
/// mispredicted branches) is paid once for the group; each account's arithmetic is the
/// same, operation for operation, as when it walks alone, so the values are the same
/// bits. (Eight at a time was slower: 42-46 accounts/s against 51 on the reference
/// forest.)
const BATCH: usize = 4;

impl Forest {
    /// One row's (no NaN) exact TreeSHAP: `(base value, contributions)`, the trees
    /// shared among the threads (the live explanation of one account).
    pub fn tree_shap_one(&self, x: &[f64]) -> (f64, Vec<f64>) {
        let nf = self.n_features;
        let parts: Vec<Vec<f64>> = self
            .trees
            .par_chunks(TREES_PER_CHUNK)
            .map(|chunk| {
                let mut phi = vec![0.0; nf];
                Sums::<1>::new(nf).add_chunk(chunk, [x], &mut phi);
                phi
            })
            .collect();
        let mut phi = vec![0.0; nf];
        for p in parts {
            for (a, v) in phi.iter_mut().zip(p) {
                *a += v;
            }
        }
        self.average(&mut phi);
        (self.expected_value(), phi)
    }

    /// Exact TreeSHAP of many rows (row-major, no NaN; `n_features` contributions per
    /// row out), the rows shared among the threads, [`BATCH`] at a time through each
    /// tree: the same values, bit for bit, as [`Forest::tree_shap_one`] row by row.
    pub fn tree_shap_rows(&self, rows: &[f64]) -> Vec<f64> {
        let nf = self.n_features;
        let mut out = vec![0.0; rows.len()];
        out.par_chunks_mut(BATCH * nf)
            .zip(rows.par_chunks(BATCH * nf))
            .for_each_init(
                || (Sums::<BATCH>::new(nf), Sums::<1>::new(nf)),
                |(many, one), (phi, xs)| {
                    if xs.len() == BATCH * nf {
                        let xs = std::array::from_fn(|b| &xs[b * nf..(b + 1) * nf]);
                        many.add_trees(&self.trees, xs, phi);
                    } else {
                        for (phi, x) in phi.chunks_mut(nf).zip(xs.chunks(nf)) {
                            one.add_trees(&self.trees, [x], phi);
                        }
                    }
                    self.average(phi);
                },
            );
        out
    }

    /// Sums over trees to the forest's mean.
    fn average(&self, phi: &mut [f64]) {
        let m = self.trees.len() as f64;
        for v in phi.iter_mut() {
            *v /= m;
        }
    }

    /// The nodes one account's exact TreeSHAP visits (every node with positive mass),
    /// walked in the same order without any arithmetic: the floor under any exact
    /// algorithm that visits them per account, which `spamscope bench` times beside
    /// the real walk. Returns how many nodes were visited.
    pub fn shap_traversal(&self, x: &[f64]) -> usize {
        fn visit(t: &Tree, x: &[f64], node: usize) -> usize {
            if t.is_leaf(node) {
                return 1;
            }
            let (l, r) = t.children(node);
            // The side x takes, read as the walk reads it.
            std::hint::black_box(x[t.feature(node)] <= t.threshold(node));
            let mut n = 1;
            for c in [l, r] {
                if t.class_weight(c)[1] != 0.0 {
                    n += visit(t, x, c);
                }
            }
            n
        }
        self.trees
            .iter()
            .filter(|t| t.class_weight(0)[1] != 0.0)
            .map(|t| visit(t, x, 0))
            .sum()
    }
}

/// One thread's scratch space for `B` accounts' sums over trees, added as
/// [`Forest::tree_shap_one`] adds them: tree by tree into a chunk's sums, chunk by
/// chunk into the accounts'.
struct Sums<const B: usize> {
    state: WalkState<B>,
    /// One tree's values for each account.
    tree: Vec<f64>,
    /// One chunk's values for each account.
    chunk: Vec<f64>,
}

impl<const B: usize> Sums<B> {
    fn new(nf: usize) -> Self {
        Sums {
            state: WalkState::new(nf),
            tree: vec![0.0; B * nf],
            chunk: vec![0.0; B * nf],
        }
    }

    /// Adds the trees' values for the accounts to `phi` (`n_features` per account),
    /// chunk by chunk.
    fn add_trees(&mut self, trees: &[Tree], xs: [&[f64]; B], phi: &mut [f64]) {
        for chunk in trees.chunks(TREES_PER_CHUNK) {
            let mut sums = std::mem::take(&mut self.chunk);
            sums.fill(0.0);
            self.add_chunk(chunk, xs, &mut sums);
            for (a, v) in phi.iter_mut().zip(&sums) {
                *a += v;
            }
            self.chunk = sums;
        }
    }

    /// Adds the trees' values for the accounts to `phi`, tree by tree.
    fn add_chunk(&mut self, trees: &[Tree], xs: [&[f64]; B], phi: &mut [f64]) {
        for t in trees {
            self.tree.fill(0.0);
            tree_shap(t, xs, &mut self.tree, &mut self.state);
            for (a, v) in phi.iter_mut().zip(&self.tree) {
                *a += v;
            }
        }
    }
}

/// Gauss-Legendre quadrature on [0, 1] with `M` nodes: exact for polynomials of
/// degree up to `2M - 1`.
#[derive(Debug, Clone)]
struct Quadrature<const M: usize> {
    /// Nodes `t`, strictly inside (0, 1).
    t: [f64; M],
    /// `1 - t`, computed without cancellation.
    omt: [f64; M],
    /// Weights (sum 1).
    w: [f64; M],
}

impl<const M: usize> Quadrature<M> {
    fn new() -> Self {
        let mut t = [0.0; M];
        let mut omt = [0.0; M];
        let mut w = [0.0; M];
        let n = M;
        for i in 0..n.div_ceil(2) {
            // Newton's method on the Legendre polynomial P_n from Tricomi's estimate of
            // the i-th largest root.
            let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
            let mut dp = 1.0;
            for _ in 0..100 {
                let (mut p1, mut p2) = (1.0, 0.0);
                for j in 1..=n {
                    let p3 = p2;
                    p2 = p1;
                    p1 = ((2 * j - 1) as f64 * z * p2 - (j - 1) as f64 * p3) / j as f64;
                }
                dp = n as f64 * (z * p1 - p2) / (z * z - 1.0);
                let step = p1 / dp;
                z -= step;
                if step.abs() <= 1e-16 {
                    break;
                }
            }
            let weight = 1.0 / ((1.0 - z * z) * dp * dp);
            // Roots ±z of P_n on [-1, 1] map to (1 ± z) / 2 on [0, 1].
            t[i] = (1.0 - z) / 2.0;
            omt[i] = (1.0 + z) / 2.0;
            t[n - 1 - i] = omt[i];
            omt[n - 1 - i] = t[i];
            w[i] = weight;
            w[n - 1 - i] = weight;
        }
        Quadrature { t, omt, w }
    }
}

/// Runs `$body` with `$q` bound to the quadrature a tree needs: `P_l / f_i` has degree
/// below the number of distinct features on the path, so half of that many points
/// (rounded up to a size that is compiled in) integrate it exactly.
macro_rules! with_quadrature {
    ($t:expr, $q:ident => $body:expr) => {{
        let qs = quadratures();
        match $t.path_features().div_ceil(2) {
            0..=2 => {
                let $q = &qs.q2;
                $body
            }
            3..=4 => {
                let $q = &qs.q4;
                $body
            }
            5..=6 => {
                let $q = &qs.q6;
                $body
            }
            7 => {
                let $q = &qs.q7;
                $body
            }
            8 => {
                let $q = &qs.q8;
                $body
            }
            9 => {
                let $q = &qs.q9;
                $body
            }
            10 => {
                let $q = &qs.q10;
                $body
            }
            11..=12 => {
                let $q = &qs.q12;
                $body
            }
            13..=16 => {
                let $q = &qs.q16;
                $body
            }
            17..=24 => {
                let $q = &qs.q24;
                $body
            }
            _ => {
                let $q = &qs.q32;
                $body
            }
        }
    }};
}

/// Adds one tree's exact TreeSHAP values for `B` accounts (no NaN) to their `phi`s
/// (`n_features` each, one after the other). `state` is scratch space (see
/// [`WalkState`]).
fn tree_shap<const B: usize>(t: &Tree, xs: [&[f64]; B], phi: &mut [f64], state: &mut WalkState<B>) {
    with_quadrature!(t, q => walk(q, t, xs, phi, state))
}

/// Scratch space of the walks of `B` accounts, left as found by every walk. Per
/// feature, the merged `(o, z)` of its splits on the current path (`z` is the tree's,
/// shared; `o` each account's) and the reciprocals of its factor at the quadrature
/// nodes; `(1, 1)` (the factor 1) when the feature is not on the path.
struct WalkState<const B: usize> {
    z: Vec<f64>,
    o: Vec<[f64; B]>,
    /// Per feature, `B` x `MAX_POINTS`.
    inv: Vec<f64>,
    /// Per account and feature, `MAX_POINTS` sums before weighting (zeros between
    /// walks).
    acc: Vec<f64>,
    nf: usize,
}

const MAX_POINTS: usize = 32;

impl<const B: usize> WalkState<B> {
    fn new(nf: usize) -> Self {
        WalkState {
            z: vec![1.0; nf],
            o: vec![[1.0; B]; nf],
            inv: vec![1.0; nf * B * MAX_POINTS],
            acc: vec![0.0; B * nf * MAX_POINTS],
            nf,
        }
    }
}

fn walk<const M: usize, const B: usize>(
    q: &Quadrature<M>,
    t: &Tree,
    xs: [&[f64]; B],
    phi: &mut [f64],
    state: &mut WalkState<B>,
) {
    debug_assert!(t.path_features() <= 2 * M);
    if t.class_weight(0)[1] == 0.0 {
        return;
    }
    let nf = state.nf;
    let mut walker = Walker { t, xs, state, q };
    walker.run();
    for b in 0..B {
        let acc = &mut state.acc[b * nf * MAX_POINTS..(b + 1) * nf * MAX_POINTS];
        for (p, acc) in phi[b * nf..(b + 1) * nf]
            .iter_mut()
            .zip(acc.chunks_exact_mut(MAX_POINTS))
        {
            let mut v = 0.0;
            for k in 0..M {
                v += q.w[k] * acc[k];
                acc[k] = 0.0;
            }
            *p += v;
        }
    }
}

struct Walker<'a, const M: usize, const B: usize> {
    t: &'a Tree,
    xs: [&'a [f64]; B],
    state: &'a mut WalkState<B>,
    q: &'a Quadrature<M>,
}

/// The walk, compiled twice: for the baseline x86-64 the crate targets and, chosen at
/// run time where the processor has them, for AVX2 (four f64 lanes instead of two):
/// the quadrature nodes are the lanes.
macro_rules! visit_fn {
    ($(#[$attr:meta])* $name:ident) => {
        /// Returns each account's `S(t) = Σ v_l P_l(t)` over the leaves below `node`,
        /// `p` being the product of the factors on its path to `node`. Children are
        /// visited in storage order (left, then right), so the walk reads the tree
        /// front to back.
        $(#[$attr])*
        fn $name(&mut self, node: usize, p: &[[f64; M]; B]) -> [[f64; M]; B] {
            let t = self.t;
            let n = t.node(node);
            let mut s = [[0.0; M]; B];
            if n.is_leaf() {
                for b in 0..B {
                    for k in 0..M {
                        s[b][k] = p[b][k] * n.value();
                    }
                }
                return s;
            }
            let i = n.feature() as usize;
            let nf = self.state.nf;
            let (left, right) = (node + 1, n.right());
            // Which way x goes, as a number: the edges below are computed the same way
            // for both children, without branches on the data (mispredicted branches
            // cost more than the arithmetic here).
            let goes_left: [f64; B] =
                std::array::from_fn(|b| (self.xs[b][i] <= n.value()) as u8 as f64);
            let inv_cover = 1.0 / t.cover(node);
            // A feature not yet on the path has (o0, z0) = (1, 1), 1 / f0 = 1, and its
            // upper split takes nothing back (o0 - z0 = 0).
            let z0 = self.state.z[i];
            let o0 = self.state.o[i];
            let d0: [f64; B] = std::array::from_fn(|b| o0[b] - z0);
            let slot = |b: usize| (i * B + b) * MAX_POINTS..(i * B + b) * MAX_POINTS + M;
            let mut inv0 = [[0.0; M]; B];
            for b in 0..B {
                inv0[b].copy_from_slice(&self.state.inv[slot(b)]);
            }
            let q = self.q;
            for (c, is_left) in [(left, 1.0), (right, 0.0)] {
                // A subtree without positive mass has only zero-valued leaves: S = 0.
                if t.class_weight(c)[1] == 0.0 {
                    continue;
                }
                let z = z0 * t.cover(c) * inv_cover;
                // phi_i += (o - z) ∫ S_c / f, minus the upper split's (o0 - z0) ∫ S_c / f0,
                // kept per quadrature node (the weights are applied once per tree):
                // `coef * S_c`.
                let mut o = [0.0; B];
                let mut inv = [[0.0; M]; B];
                let mut pc = [[0.0; M]; B];
                let mut coef = [[0.0; M]; B];
                for b in 0..B {
                    // Which side x takes, as a number (1 - goes_left for the right).
                    let hot = is_left * goes_left[b] + (1.0 - is_left) * (1.0 - goes_left[b]);
                    o[b] = o0[b] * hot;
                    let d = o[b] - z;
                    for k in 0..M {
                        let f = o[b] * q.t[k] + z * q.omt[k];
                        // f = 0 only where x leaves a split for a side no training row
                        // took (o = z = 0): that subtree adds 0 for this account.
                        inv[b][k] = if f == 0.0 { 0.0 } else { 1.0 / f };
                        pc[b][k] = p[b][k] * f * inv0[b][k];
                        coef[b][k] = d * inv[b][k] - d0[b] * inv0[b][k];
                    }
                }
                let sc = if t.node(c).is_leaf() {
                    let v = t.node(c).value();
                    let mut sc = [[0.0; M]; B];
                    for b in 0..B {
                        for k in 0..M {
                            sc[b][k] = pc[b][k] * v;
                        }
                    }
                    sc
                } else {
                    // Only a walk below reads the path's state.
                    self.state.z[i] = z;
                    self.state.o[i] = o;
                    for b in 0..B {
                        self.state.inv[slot(b)].copy_from_slice(&inv[b]);
                    }
                    self.$name(c, &pc)
                };
                for b in 0..B {
                    let base = (b * nf + i) * MAX_POINTS;
                    let acc = &mut self.state.acc[base..base + M];
                    for k in 0..M {
                        acc[k] += coef[b][k] * sc[b][k];
                        s[b][k] += sc[b][k];
                    }
                }
            }
            self.state.z[i] = z0;
            self.state.o[i] = o0;
            for b in 0..B {
                self.state.inv[slot(b)].copy_from_slice(&inv0[b]);
            }
            s
        }
    };
}

impl<const M: usize, const B: usize> Walker<'_, M, B> {
    visit_fn!(visit);
    visit_fn!(
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        visit_avx2
    );

    fn run(&mut self) {
        let root = [[1.0; M]; B];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2 (checked just above).
            unsafe { self.visit_avx2(0, &root) };
            return;
        }
        self.visit(0, &root);
    }
}

/// The quadratures the walks use, computed once.
struct Quadratures {
    q2: Quadrature<2>,
    q4: Quadrature<4>,
    q6: Quadrature<6>,
    q7: Quadrature<7>,
    q8: Quadrature<8>,
    q9: Quadrature<9>,
    q10: Quadrature<10>,
    q12: Quadrature<12>,
    q16: Quadrature<16>,
    q24: Quadrature<24>,
    q32: Quadrature<32>,
}

fn quadratures() -> &'static Quadratures {
    static Q: std::sync::OnceLock<Quadratures> = std::sync::OnceLock::new();
    Q.get_or_init(|| Quadratures {
        q2: Quadrature::new(),
        q4: Quadrature::new(),
        q6: Quadrature::new(),
        q7: Quadrature::new(),
        q8: Quadrature::new(),
        q9: Quadrature::new(),
        q10: Quadrature::new(),
        q12: Quadrature::new(),
        q16: Quadrature::new(),
        q24: Quadrature::new(),
        q32: Quadrature::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{ForestParams, tests::toy};
    use super::classic::classic_tree_shap;
    use super::*;
    use crate::util::progress::NoProgress;
    use crate::util::rng::SplitMix64;

    #[test]
    fn quadrature_integrates_the_shapley_weights_exactly() {
        fn check<const M: usize>() {
            let q = Quadrature::<M>::new();
            assert!((q.w.iter().sum::<f64>() - 1.0).abs() < 1e-14);
            let fact = |k: usize| (1..=k).map(|v| v as f64).product::<f64>();
            for d in 1..=2 * M {
                for s in 0..d {
                    let exact = fact(s) * fact(d - s - 1) / fact(d);
                    let got: f64 = (0..M)
                        .map(|k| q.w[k] * q.t[k].powi(s as i32) * q.omt[k].powi((d - s - 1) as i32))
                        .sum();
                    assert!(
                        ((got - exact) / exact).abs() < 1e-12,
                        "M={M} d={d} s={s}: {got} vs {exact}"
                    );
                }
            }
            for k in 0..M {
                assert!(q.t[k] > 0.0 && q.omt[k] > 0.0);
                assert!((q.t[k] + q.omt[k] - 1.0).abs() < 1e-15);
            }
        }
        check::<2>();
        check::<4>();
        check::<6>();
        check::<8>();
        check::<10>();
        check::<12>();
        check::<16>();
        check::<24>();
        check::<32>();
    }

    fn forest(n_features: usize, depth: usize, trees: usize, seed: u64) -> (Forest, Vec<Vec<f64>>) {
        let (mut cols, y) = toy(800, seed);
        // Extra features, some informative, so paths repeat features and mix them.
        let mut rng = SplitMix64::new(seed ^ 77);
        while cols.len() < n_features {
            let k = cols.len();
            let col: Vec<f64> = (0..y.len())
                .map(|r| match k % 3 {
                    0 => cols[0][r] * 0.5 + rng.next_f64(),
                    1 => y[r] as f64 + rng.next_f64() * 2.0,
                    _ => rng.next_f64(),
                })
                .collect();
            cols.push(col);
        }
        cols.truncate(n_features);
        let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        let f = ForestParams {
            n_trees: trees,
            max_depth: Some(depth),
            min_samples_split: 2,
            ..Default::default()
        }
        .fit(&refs, &y, None, &NoProgress)
        .unwrap();
        (f, cols)
    }

    /// The new walk gives the classic recursion's values, up to rounding, on forests of
    /// several depths and feature counts (paths with repeated features included); the
    /// quadrature test above covers every size the walk may pick.
    #[test]
    fn equals_the_classic_recursion() {
        for (nf, depth, seed) in [
            (3, 2, 1),
            (5, 4, 2),
            (6, 7, 3),
            (8, 12, 4),
            (12, 20, 5),
            (8, 30, 6),
            (20, 48, 7),
        ] {
            let (f, cols) = forest(nf, depth, 6, seed);
            for r in (0..800).step_by(97) {
                let x: Vec<f64> = cols.iter().map(|c| c[r]).collect();
                for t in &f.trees {
                    let mut want = vec![0.0; nf];
                    classic_tree_shap(t, &x, &mut want);
                    let mut got = vec![0.0; nf];
                    let mut state = WalkState::<1>::new(nf);
                    tree_shap(t, [&x], &mut got, &mut state);
                    assert!(state.z.iter().all(|&m| m == 1.0));
                    assert!(state.o.iter().all(|&m| m == [1.0]));
                    assert!(state.inv.iter().all(|&m| m == 1.0));
                    assert!(state.acc.iter().all(|&m| m == 0.0));
                    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (a - b).abs() < 1e-12,
                            "depth {depth} (tree {}), row {r}, feature {i}: {a} vs {b}",
                            t.depth()
                        );
                    }
                }
            }
        }
    }

    /// The bench's floor walks exactly the nodes the walk can reach: those with
    /// positive mass (their ancestors have it too).
    #[test]
    fn the_traversal_floor_visits_the_nodes_with_positive_mass() {
        let (f, cols) = forest(7, 12, 9, 13);
        let x: Vec<f64> = cols.iter().map(|c| c[5]).collect();
        let positive: usize = f
            .trees
            .iter()
            .map(|t| {
                (0..t.n_nodes())
                    .filter(|&i| t.class_weight(i)[1] != 0.0)
                    .count()
            })
            .sum();
        assert!(positive < f.n_nodes());
        assert_eq!(f.shap_traversal(&x), positive);
    }

    /// One account and many accounts give the same bits; the values add up to the
    /// prediction.
    #[test]
    fn bulk_equals_one_by_one_and_adds_up() {
        let (f, cols) = forest(9, 14, 37, 11);
        let nf = 9;
        let n = 50; // batches of BATCH accounts and a remainder walked one by one
        let rows: Vec<f64> = (0..n)
            .flat_map(|r| cols.iter().map(move |c| c[r]))
            .collect();
        let bulk = f.tree_shap_rows(&rows);
        for r in 0..n {
            let x = &rows[r * nf..(r + 1) * nf];
            let (base, phi) = f.tree_shap_one(x);
            assert_eq!(phi.as_slice(), &bulk[r * nf..(r + 1) * nf], "row {r}");
            let total = base + phi.iter().sum::<f64>();
            assert!((total - f.predict_proba(x)).abs() < 1e-12, "row {r}");
        }
    }
}

/// Lundberg et al.'s Algorithm 2, O(leaves x depth^2) per tree: the reference the
/// walk above is tested against (it was the implementation until the walk replaced it).
#[cfg(test)]
mod classic {
    use super::Tree;

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

    /// Adds one tree's exact TreeSHAP values for `x` to `phi` (the classic recursion).
    pub fn classic_tree_shap(t: &Tree, x: &[f64], phi: &mut [f64]) {
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
            if t.class_weight(node)[1] == 0.0 {
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
}
