//! LightGBM, fitted by the real library and kept as spamscope's own boosted trees.
//!
//! With the cargo feature `lightgbm`, `LGBMClassifier(class_weight="balanced")` with its
//! defaults (100 rounds, learning rate 0.1, 31 leaves, 20 rows per leaf) is fitted by
//! LightGBM itself through the `lightgbm3` binding. Its model text is then read here, in
//! safe Rust, into forust's tree structure that gradient boosting already uses: scoring,
//! exact TreeSHAP on the log-odds, bulk attribution and the validated model file are the
//! boosting kind's, and a saved LightGBM version loads, scores and explains in any build,
//! without the library and without handing a file spamscope reads to LightGBM's C++
//! parser. (LightGBM's `Booster` is neither `Send` nor `Sync` either, so it could not be
//! shared between the service's workers as it is.)
//!
//! LightGBM sends `x <= threshold` left and forust `x < split`, so each threshold
//! becomes the next float above it. Node covers are LightGBM's row counts, which its
//! own TreeSHAP (`pred_contrib`) uses. Leaf and node values are stored as f32 (forust's
//! type), so scores agree with LightGBM's to about 1e-7.

use crate::model::boosting::BoostError;
use crate::model::foreign::{self, Part};
use forust_ml::GradientBooster;
use forust_ml::tree::Tree;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What to fit (scikit-learn API defaults of LightGBM's classifier).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LgbmParams {
    pub iterations: usize,
    pub learning_rate: f64,
    pub num_leaves: usize,
    pub min_child_samples: usize,
    /// scikit-learn's balanced class weights.
    pub balanced: bool,
    pub seed: u64,
}

impl Default for LgbmParams {
    fn default() -> Self {
        LgbmParams {
            iterations: 100,
            learning_rate: 0.1,
            num_leaves: 31,
            min_child_samples: 20,
            balanced: true,
            seed: 42,
        }
    }
}

impl LgbmParams {
    pub fn validate(&self) -> Result<(), String> {
        let ok = (1..=10_000).contains(&self.iterations)
            && self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && (2..=131_072).contains(&self.num_leaves)
            && self.min_child_samples > 0;
        if !ok {
            return Err(format!(
                "LightGBM needs 1 to 10000 rounds, a learning rate > 0, 2 to 131072 leaves and at least 1 row per leaf (got {} rounds, rate {}, {} leaves, {} rows)",
                self.iterations, self.learning_rate, self.num_leaves, self.min_child_samples
            ));
        }
        Ok(())
    }
}

/// Why this build cannot fit LightGBM.
pub const NOT_BUILT: &str = "this build of spamscope has no LightGBM: build it with `--features lightgbm` (it needs CMake 3.28 or newer and libclang)";

/// One tree of a LightGBM model text: its `key=value` lines.
type Fields<'a> = HashMap<&'a str, &'a str>;

fn list<T: std::str::FromStr>(tree: &Fields, key: &str, n: usize) -> Result<Vec<T>, String> {
    let text = tree.get(key).ok_or_else(|| format!("no {key}"))?;
    let v: Vec<T> = text
        .split_whitespace()
        .map(|s| s.parse::<T>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{key} is not a list of numbers"))?;
    if v.len() != n {
        return Err(format!("{key} has {} values, not {n}", v.len()));
    }
    Ok(v)
}

/// Reads a binary LightGBM model (its text format) over `nf` numeric features into a
/// forust booster (base score 0: LightGBM's first tree carries the starting log-odds).
pub fn booster_from_text(text: &str, nf: usize) -> Result<GradientBooster, BoostError> {
    let bad = |m: String| BoostError::Malformed(format!("LightGBM model: {m}"));
    let mut header: Fields = HashMap::new();
    let mut trees: Vec<Fields> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line == "end of trees" {
            break;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k == "Tree" {
            trees.push(HashMap::new());
        } else if let Some(t) = trees.last_mut() {
            t.insert(k, v);
        } else {
            header.insert(k, v);
        }
    }
    if header.get("num_class") != Some(&"1")
        || header.get("num_tree_per_iteration") != Some(&"1")
        || header
            .get("objective")
            .map(|o| o.split_whitespace().collect::<Vec<_>>())
            != Some(vec!["binary", "sigmoid:1"])
    {
        return Err(bad("not a binary log-loss model with sigmoid 1".into()));
    }
    if header
        .get("max_feature_idx")
        .and_then(|v| v.parse::<usize>().ok())
        != Some(nf - 1)
    {
        return Err(bad(format!("not a model of {nf} features")));
    }
    if trees.is_empty() {
        return Err(bad("no trees".into()));
    }
    let mut out = Vec::with_capacity(trees.len());
    for (k, t) in trees.iter().enumerate() {
        out.push(tree(t, nf).map_err(|m| bad(format!("tree {k}: {m}")))?);
    }
    let mut booster = GradientBooster::default();
    booster.base_score = 0.0;
    booster.trees = out;
    Ok(booster)
}

/// One LightGBM tree as a forust tree. LightGBM's child codes: `>= 0` an internal
/// node, `< 0` the leaf `!code`.
fn tree(t: &Fields, nf: usize) -> Result<Tree, String> {
    let leaves: usize = t
        .get("num_leaves")
        .and_then(|v| v.parse().ok())
        .filter(|&n| (1..=1 << 20).contains(&n))
        .ok_or("no valid num_leaves")?;
    if t.get("num_cat").is_some_and(|v| *v != "0") {
        return Err("categorical splits are not supported".into());
    }
    let leaf_value: Vec<f64> = list(t, "leaf_value", leaves)?;
    let internal = leaves - 1;
    let leaf_count: Vec<f64> = if internal == 0 {
        vec![1.0]
    } else {
        list(t, "leaf_count", leaves)?
    };
    let get = |key: &str| -> Result<Vec<f64>, String> {
        if internal == 0 {
            Ok(Vec::new())
        } else {
            list(t, key, internal)
        }
    };
    let codes = |key: &str| -> Result<Vec<i64>, String> {
        if internal == 0 {
            Ok(Vec::new())
        } else {
            list(t, key, internal)
        }
    };
    let (feature, threshold, gain) = (get("split_feature")?, get("threshold")?, get("split_gain")?);
    let (value, count) = (get("internal_value")?, get("internal_count")?);
    let (left, right, decision) = (
        codes("left_child")?,
        codes("right_child")?,
        codes("decision_type")?,
    );
    let index = |code: i64| {
        if code < 0 {
            Some(internal + (!code) as usize).filter(|&i| i < internal + leaves)
        } else {
            Some(code as usize).filter(|&i| i < internal)
        }
    };
    let part = |code: i64| -> Result<Part, String> {
        if code < 0 {
            let l = (!code) as usize;
            return Ok(Part::Leaf {
                value: leaf_value[l],
                cover: leaf_count[l],
            });
        }
        let i = code as usize;
        let d = decision[i];
        // Bit 0: categorical; bits 2-3: missing type (0 none, 1 zero, 2 NaN). Zero as
        // missing would send real zeros the default way, which forust does not do;
        // spamscope never passes NaN (it imputes first).
        if d & 1 == 1 || (d >> 2) & 3 == 1 {
            return Err(format!("node {i} has an unsupported decision type {d}"));
        }
        let f = feature[i];
        if !(f >= 0.0 && f < nf as f64 && f.fract() == 0.0 && threshold[i].is_finite()) {
            return Err(format!("node {i} has an invalid split"));
        }
        Ok(Part::Split {
            feature: f as usize,
            // LightGBM sends `x <= threshold` left, forust `x < split`.
            split: threshold[i].next_up(),
            gain: gain[i],
            value: value[i],
            cover: count[i],
            default_left: d & 2 == 2,
            left: left[i],
            right: right[i],
        })
    };
    let root = if internal == 0 { -1 } else { 0 };
    foreign::tree(root, internal + leaves, index, part)
}

/// Fits LightGBM (the feature `lightgbm`) on imputed column-major features, 0/1 labels
/// and optional row weights, and reads the result into spamscope's boosted trees.
#[cfg(feature = "lightgbm")]
pub fn fit(
    p: &LgbmParams,
    columns: &[&[f64]],
    labels: &[u8],
    weights: Option<&[f64]>,
    reporter: &dyn crate::util::progress::Reporter,
) -> Result<crate::model::boosting::Boosted, BoostError> {
    let fail = |e: lightgbm3::Error| BoostError::Fit(format!("LightGBM: {e}"));
    reporter.stage("fitting (LightGBM)", 0, 1);
    let booster = train(p, columns, labels, weights).map_err(fail)?;
    let text = booster.save_string().map_err(fail)?;
    reporter.stage("fitting (LightGBM)", 1, 1);
    crate::model::boosting::Boosted::from_booster(
        booster_from_text(&text, columns.len())?,
        columns.len(),
    )
}

/// LightGBM's own booster for the parameters and rows (what [`fit`] reads).
#[cfg(feature = "lightgbm")]
fn train(
    p: &LgbmParams,
    columns: &[&[f64]],
    labels: &[u8],
    weights: Option<&[f64]>,
) -> Result<lightgbm3::Booster, lightgbm3::Error> {
    let nf = columns.len();
    let mut rows = Vec::with_capacity(labels.len() * nf);
    for i in 0..labels.len() {
        rows.extend(columns.iter().map(|c| c[i]));
    }
    let y: Vec<f32> = labels.iter().map(|&l| f32::from(l)).collect();
    let w: Vec<f32> = crate::data::preprocess::row_weights(labels, weights, p.balanced)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let mut data = lightgbm3::Dataset::from_slice(&rows, &y, nf as i32, true)?;
    data.set_weights(&w)?;
    drop(rows);
    let params = serde_json::json!({
        "objective": "binary",
        "num_iterations": p.iterations,
        "learning_rate": p.learning_rate,
        "num_leaves": p.num_leaves,
        "min_data_in_leaf": p.min_child_samples,
        "seed": p.seed,
        "deterministic": true,
        "num_threads": rayon::current_num_threads(),
        "verbosity": -1,
    });
    lightgbm3::Booster::train(data, &params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::boosting::Boosted;

    /// Two trees over 2 features, in LightGBM's text format: a stump (x0 <= 1.5, NaN
    /// to the left) and a three-leaf tree whose root's right child is internal.
    const MODEL: &str = "tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=1
objective=binary sigmoid:1

Tree=0
num_leaves=2
num_cat=0
split_feature=0
split_gain=5
threshold=1.5
decision_type=10
left_child=-1
right_child=-2
leaf_value=-0.5 0.25
leaf_weight=1 1
leaf_count=30 10
internal_value=-0.3
internal_weight=1
internal_count=40
is_linear=0
shrinkage=1


Tree=1
num_leaves=3
num_cat=0
split_feature=1 0
split_gain=2 1
threshold=0 2.5
decision_type=8 8
left_child=-1 -2
right_child=1 -3
leaf_value=0.1 -0.2 0.4
leaf_weight=1 1 1
leaf_count=20 12 8
internal_value=0 0.04
internal_weight=1 1
internal_count=40 20
is_linear=0
shrinkage=0.1


end of trees
";

    fn score(b: &GradientBooster, x: &[f64]) -> f64 {
        b.trees
            .iter()
            .map(|t| t.predict_row_from_row_slice(x, &f64::NAN))
            .sum()
    }

    #[test]
    fn reads_lightgbm_trees_with_its_split_rule() {
        let b = booster_from_text(MODEL, 2).unwrap();
        assert_eq!(b.trees.len(), 2);
        // Tree 0: x0 <= 1.5 (on the threshold itself: left) -> -0.5, else 0.25.
        // Tree 1: x1 <= 0 -> 0.1; else x0 <= 2.5 -> -0.2, else 0.4.
        for (x, expect) in [
            ([1.5, 0.0], -0.5 + 0.1),
            ([1.5000001, 0.0], 0.25 + 0.1),
            ([2.5, 3.0], 0.25 - 0.2),
            ([9.0, 3.0], 0.25 + 0.4),
            ([0.0, 0.0], -0.5 + 0.1),
        ] {
            assert!((score(&b, &x) - expect).abs() < 1e-7, "{x:?}");
        }
        // Preorder: children come after their parent; covers are the row counts.
        let t1 = &b.trees[1].nodes;
        assert_eq!(t1.len(), 5);
        assert_eq!((t1[0].left_child, t1[0].right_child), (1, 2));
        assert_eq!((t1[2].left_child, t1[2].right_child), (3, 4));
        assert_eq!(t1[2].hessian_sum, 20.0);
        // Decision type 10 = default left with NaN missing: NaN follows the default.
        assert_eq!(
            b.trees[0].nodes[0].missing_node,
            b.trees[0].nodes[0].left_child
        );
        assert_eq!(t1[0].missing_node, t1[0].right_child);
        // It loads through the boosting kind's validation.
        let boosted = Boosted::from_booster(b, 2).unwrap();
        assert!((boosted.importance.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn refuses_what_it_cannot_score_exactly() {
        let cases = [
            (
                MODEL.replace("decision_type=8 8", "decision_type=9 8"),
                "decision type",
            ),
            (
                MODEL.replace("decision_type=8 8", "decision_type=4 8"),
                "decision type",
            ),
            (
                MODEL.replace("left_child=-1 -2", "left_child=-1 -1"),
                "out of place",
            ),
            (
                MODEL.replace("right_child=1 -3", "right_child=0 -3"),
                "out of place",
            ),
            (
                MODEL.replace("threshold=0 2.5", "threshold=nan 2.5"),
                "invalid split",
            ),
            (
                MODEL.replace("split_feature=1 0", "split_feature=2 0"),
                "invalid split",
            ),
            (
                MODEL.replace("leaf_value=0.1 -0.2 0.4", "leaf_value=0.1 -0.2"),
                "leaf_value",
            ),
            (MODEL.replace("sigmoid:1", "sigmoid:2"), "sigmoid 1"),
            (
                MODEL.replace("max_feature_idx=1", "max_feature_idx=7"),
                "2 features",
            ),
        ];
        for (text, what) in cases {
            let e = booster_from_text(&text, 2)
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(e.contains(what), "{what}: {e}");
        }
    }

    /// LightGBM's own scores and TreeSHAP contributions are what spamscope computes
    /// from the trees it read: the same model.
    #[cfg(feature = "lightgbm")]
    #[test]
    fn a_fitted_lightgbm_scores_and_explains_as_the_library_does() {
        use crate::model::foreign::testing::{assert_same_model, rows, sample};
        use crate::util::progress::NoProgress;
        let (cols, y) = sample();
        let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        let p = LgbmParams {
            iterations: 30,
            ..LgbmParams::default()
        };
        let ours = fit(&p, &refs, &y, None, &NoProgress).unwrap();
        assert_eq!(ours.booster.trees.len(), 30);
        // The library's own booster from the same rows and parameters (deterministic):
        // its predictions and pred_contrib.
        let nf = refs.len();
        let rows = rows(&cols, 200);
        let lib = train(&p, &refs, &y, None).unwrap();
        let theirs = lib.predict(&rows, nf as i32, true).unwrap();
        let contrib = lib.predict_contrib(&rows[..nf], nf as i32, true).unwrap();
        assert_same_model(&ours, &rows, &theirs, &contrib);
    }
}
