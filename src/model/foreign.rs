//! Trees fitted by another library (LightGBM, XGBoost), rebuilt as forust's trees so that
//! spamscope scores, explains and stores them as its own gradient boosting.
//!
//! Each library's reader says what one node is ([`Part`]); [`tree`] walks the nodes from
//! the root, renumbers them in preorder (children after their parent, as spamscope's
//! loader requires), refuses a node reached twice or never, and builds the tree through
//! forust's serde form (forust does not export its node type).

use forust_ml::tree::Tree;
use serde::Serialize;

/// Deepest tree accepted (a model file is input like any other).
const MAX_DEPTH: usize = 64;

/// One node of a foreign tree, in forust's terms: `x < split` goes left.
pub(crate) enum Part {
    Leaf {
        value: f64,
        /// Rows (or hessian) reaching the leaf: TreeSHAP's cover.
        cover: f64,
    },
    Split {
        feature: usize,
        split: f64,
        gain: f64,
        value: f64,
        cover: f64,
        /// Where a missing value goes.
        default_left: bool,
        /// The children's codes in the library's numbering.
        left: i64,
        right: i64,
    },
}

/// A forust tree node as its serde form has it.
#[derive(Serialize)]
struct Node {
    num: usize,
    weight_value: f32,
    hessian_sum: f32,
    depth: usize,
    split_value: f64,
    split_feature: usize,
    split_gain: f32,
    missing_node: usize,
    left_child: usize,
    right_child: usize,
    is_leaf: bool,
}

/// A node still to place: its code, depth, and its parent's slot with whether it is the
/// left child.
type Pending = (i64, usize, Option<(usize, bool)>);

/// The tree of `nodes` nodes whose root has the code `root`; `part` reads one node by
/// its code and `index` maps a code to 0..nodes (for the reached-once check).
pub(crate) fn tree(
    root: i64,
    nodes: usize,
    index: impl Fn(i64) -> Option<usize>,
    part: impl Fn(i64) -> Result<Part, String>,
) -> Result<Tree, String> {
    let mut out: Vec<Node> = Vec::with_capacity(nodes);
    let mut default_left: Vec<bool> = Vec::with_capacity(nodes);
    let mut seen = vec![false; nodes];
    let mut stack: Vec<Pending> = vec![(root, 0, None)];
    while let Some((code, depth, parent)) = stack.pop() {
        let num = out.len();
        match index(code) {
            Some(i) if i < nodes && !std::mem::replace(&mut seen[i], true) => {}
            _ => return Err(format!("node {code} is out of place")),
        }
        if depth > MAX_DEPTH {
            return Err(format!("deeper than {MAX_DEPTH} levels"));
        }
        match parent {
            Some((p, true)) => out[p].left_child = num,
            Some((p, false)) => out[p].right_child = num,
            None => {}
        }
        let node = |value: f64, cover: f64| Node {
            num,
            weight_value: value as f32,
            hessian_sum: cover as f32,
            depth,
            split_value: 0.0,
            split_feature: 0,
            split_gain: 0.0,
            missing_node: 0,
            left_child: 0,
            right_child: 0,
            is_leaf: true,
        };
        match part(code)? {
            Part::Leaf { value, cover } => {
                if !(value.is_finite() && cover.is_finite()) {
                    return Err(format!("leaf {code} has an invalid value"));
                }
                out.push(node(value, cover));
                default_left.push(true);
            }
            Part::Split {
                feature,
                split,
                gain,
                value,
                cover,
                default_left: dl,
                left,
                right,
            } => {
                if !(split.is_finite() && value.is_finite() && cover.is_finite()) {
                    return Err(format!("node {code} has an invalid split"));
                }
                out.push(Node {
                    split_value: split,
                    split_feature: feature,
                    split_gain: gain as f32,
                    is_leaf: false,
                    ..node(value, cover)
                });
                default_left.push(dl);
                // Preorder: the left subtree first (pushed last).
                stack.push((right, depth + 1, Some((num, false))));
                stack.push((left, depth + 1, Some((num, true))));
            }
        }
    }
    if seen.iter().any(|s| !s) {
        return Err("some nodes are not reachable from the root".into());
    }
    for (n, left) in out.iter_mut().zip(default_left) {
        if !n.is_leaf {
            n.missing_node = if left { n.left_child } else { n.right_child };
        }
    }
    serde_json::from_value(serde_json::json!({ "nodes": out })).map_err(|e| e.to_string())
}

/// What the library-equivalence tests of LightGBM and XGBoost share: the rows they fit,
/// and the check that spamscope's trees are the library's model.
#[cfg(all(test, any(feature = "lightgbm", feature = "xgboost")))]
pub(crate) mod testing {
    use crate::model::boosting::Boosted;

    /// 3,000 imputed default accounts, column-major, and their labels.
    pub fn sample() -> (Vec<Vec<f64>>, Vec<u8>) {
        use crate::data::preprocess::Imputer;
        use crate::data::synth::{SynthParams, default_dataset};
        let d = default_dataset(SynthParams {
            rows: 3000,
            seed: 4,
        });
        let idx: Vec<usize> = (0..d.n_rows()).collect();
        let cols = Imputer::fit(&d.columns, &idx).transform_columns(&d.columns, &idx);
        (cols, d.labels.unwrap())
    }

    /// The first `n` rows of `cols`, row-major.
    pub fn rows(cols: &[Vec<f64>], n: usize) -> Vec<f64> {
        (0..n)
            .flat_map(|i| cols.iter().map(move |c| c[i]))
            .collect()
    }

    /// `ours` scores `rows` as the library did (`theirs`, probabilities) and explains the
    /// first row as the library's contributions (log-odds, bias last) do.
    pub fn assert_same_model(ours: &Boosted, rows: &[f64], theirs: &[f64], contrib: &[f64]) {
        let nf = ours.n_features;
        for (a, b) in ours.predict_rows(rows, nf).iter().zip(theirs) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let e = ours.explain(&rows[..nf]);
        let logit = |p: f64| (p / (1.0 - p)).ln();
        let sum: f64 = contrib.iter().sum();
        assert!(
            (logit(e.prediction) - sum).abs() < 1e-4,
            "{} vs {sum}",
            logit(e.prediction)
        );
        let raw = ours.booster.predict_contributions(
            &forust_ml::Matrix::new(&rows[..nf], 1, nf),
            forust_ml::gradientbooster::ContributionsMethod::Shapley,
            false,
        );
        let (mut num, mut den) = (0.0, 0.0);
        for f in 0..=nf {
            num += (raw[f] - contrib[f]).abs();
            den += contrib[f].abs();
        }
        assert!(
            num <= 1e-4 * den.max(1.0),
            "TreeSHAP differs by {num} (of {den})"
        );
    }
}
