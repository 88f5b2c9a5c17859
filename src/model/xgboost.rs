//! XGBoost, fitted by the real library and kept as spamscope's own boosted trees.
//!
//! With the cargo feature `xgboost`, the reference's `XGBClassifier(scale_pos_weight=36)`
//! with XGBoost's defaults (100 rounds, learning rate 0.3, depth 6, hist trees of 256
//! bins, lambda 1, its fitted starting score) is fitted by XGBoost itself through the
//! `xgb` binding, round by round (progress and cancel). Its JSON model is then read here,
//! in safe Rust, into forust's trees as LightGBM's are (see [`crate::model::foreign`]):
//! a saved XGBoost version scores, explains (exact TreeSHAP on the log-odds, with
//! XGBoost's hessian covers) and loads in any build, without the library.
//!
//! XGBoost compares in single precision: `f32(x) < split` goes left. In double precision
//! that is `x < m`, where `m` is the midpoint between the split and the float below it
//! (a value exactly on `m` rounds to the one of the two with an even mantissa), so each
//! split becomes that boundary and scores agree with XGBoost's for every input.

use crate::model::boosting::BoostError;
use crate::model::foreign::{self, Part};
use forust_ml::GradientBooster;
use serde::{Deserialize, Serialize};

/// What to fit (XGBoost's scikit-learn defaults, the reference's class weight).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XgbParams {
    pub iterations: usize,
    pub learning_rate: f64,
    pub max_depth: usize,
    /// Weight of each spammer row (the reference's 36: about the class ratio).
    pub scale_pos_weight: f64,
    pub seed: u64,
}

impl Default for XgbParams {
    fn default() -> Self {
        XgbParams {
            iterations: 100,
            learning_rate: 0.3,
            max_depth: 6,
            scale_pos_weight: 36.0,
            seed: 42,
        }
    }
}

impl XgbParams {
    pub fn validate(&self) -> Result<(), String> {
        let ok = (1..=10_000).contains(&self.iterations)
            && self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && (1..=32).contains(&self.max_depth)
            && self.scale_pos_weight.is_finite()
            && self.scale_pos_weight > 0.0;
        if !ok {
            return Err(format!(
                "XGBoost needs 1 to 10000 rounds, a learning rate > 0, depth 1 to 32 and a spammer weight > 0 (got {} rounds, rate {}, depth {}, weight {})",
                self.iterations, self.learning_rate, self.max_depth, self.scale_pos_weight
            ));
        }
        Ok(())
    }
}

/// Why this build cannot fit XGBoost.
pub const NOT_BUILT: &str = "this build of spamscope has no XGBoost: build it with `--features xgboost` (see scripts/xgboost-lib)";

/// The parts of XGBoost's JSON model that decide its scores.
#[derive(Deserialize)]
struct ModelFile {
    learner: Learner,
}

#[derive(Deserialize)]
struct Learner {
    gradient_booster: Gbm,
    learner_model_param: LearnerParam,
    objective: Objective,
}

#[derive(Deserialize)]
struct Gbm {
    name: String,
    model: GbModel,
}

#[derive(Deserialize)]
struct GbModel {
    gbtree_model_param: GbParam,
    trees: Vec<XTree>,
}

#[derive(Deserialize)]
struct GbParam {
    num_parallel_tree: String,
}

#[derive(Deserialize)]
struct LearnerParam {
    base_score: String,
    num_class: String,
    num_feature: String,
    #[serde(default)]
    num_target: Option<String>,
}

#[derive(Deserialize)]
struct Objective {
    name: String,
}

#[derive(Deserialize)]
struct XTree {
    base_weights: Vec<f64>,
    /// 0/1 (XGBoost 2 and later) or booleans (older files).
    default_left: Vec<serde_json::Value>,
    left_children: Vec<i64>,
    right_children: Vec<i64>,
    loss_changes: Vec<f64>,
    split_conditions: Vec<f64>,
    split_indices: Vec<i64>,
    #[serde(default)]
    split_type: Vec<i64>,
    sum_hessian: Vec<f64>,
}

/// The largest double that XGBoost's `f32(x) < split` sends left, plus one: `x < m`
/// goes left in double precision exactly when XGBoost sends it left.
fn boundary(split: f32) -> f64 {
    let s = f64::from(split);
    let below = split.next_down();
    let m = (f64::from(below) + s) / 2.0;
    // A double exactly on the midpoint rounds to the neighbour with an even mantissa:
    // when that is the one below, the midpoint itself goes left too.
    if below.to_bits() & 1 == 0 {
        m.next_up()
    } else {
        m
    }
}

/// Reads a binary-logistic XGBoost JSON model over `nf` numeric features into a forust
/// booster (its base score: XGBoost's starting log-odds).
pub fn booster_from_json(json: &[u8], nf: usize) -> Result<GradientBooster, BoostError> {
    let bad = |m: String| BoostError::Malformed(format!("XGBoost model: {m}"));
    let file: ModelFile =
        serde_json::from_slice(json).map_err(|e| bad(format!("not XGBoost's JSON model ({e})")))?;
    let l = file.learner;
    if l.objective.name != "binary:logistic" || l.gradient_booster.name != "gbtree" {
        return Err(bad(format!(
            "not a binary:logistic gbtree model ({} {})",
            crate::util::text::clip(&l.objective.name),
            crate::util::text::clip(&l.gradient_booster.name)
        )));
    }
    let p = &l.learner_model_param;
    if p.num_class != "0"
        || p.num_target.as_deref().is_some_and(|t| t != "1")
        || l.gradient_booster
            .model
            .gbtree_model_param
            .num_parallel_tree
            != "1"
    {
        return Err(bad("not one tree per round for one target".into()));
    }
    if p.num_feature.parse::<usize>().ok() != Some(nf) {
        return Err(bad(format!("not a model of {nf} features")));
    }
    // "[2.7E-2]" (XGBoost 2 and later) or "2.7E-2": a probability.
    let base: f64 = p
        .base_score
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .ok()
        .filter(|b: &f64| *b > 0.0 && *b < 1.0)
        .ok_or_else(|| bad("no valid base_score".into()))?;
    let trees = &l.gradient_booster.model.trees;
    if trees.is_empty() {
        return Err(bad("no trees".into()));
    }
    let mut out = Vec::with_capacity(trees.len());
    for (k, t) in trees.iter().enumerate() {
        out.push(tree(t, nf).map_err(|m| bad(format!("tree {k}: {m}")))?);
    }
    let mut booster = GradientBooster::default();
    booster.base_score = (base / (1.0 - base)).ln();
    booster.trees = out;
    Ok(booster)
}

/// One XGBoost tree (nodes by index, root 0, a leaf's children -1, its value in
/// `split_conditions`) as a forust tree.
fn tree(t: &XTree, nf: usize) -> Result<forust_ml::tree::Tree, String> {
    let n = t.left_children.len();
    let sizes = [
        t.right_children.len(),
        t.split_conditions.len(),
        t.split_indices.len(),
        t.sum_hessian.len(),
        t.base_weights.len(),
        t.default_left.len(),
        t.loss_changes.len(),
    ];
    if n == 0
        || sizes.iter().any(|&s| s != n)
        || !(t.split_type.is_empty() || t.split_type.len() == n)
    {
        return Err("its node arrays differ in length".into());
    }
    if t.split_type.iter().any(|&s| s != 0) {
        return Err("categorical splits are not supported".into());
    }
    let index = |code: i64| usize::try_from(code).ok().filter(|&i| i < n);
    let part = |code: i64| -> Result<Part, String> {
        let i = code as usize;
        let (left, right) = (t.left_children[i], t.right_children[i]);
        if left == -1 {
            return Ok(Part::Leaf {
                value: t.split_conditions[i],
                cover: t.sum_hessian[i],
            });
        }
        let f = t.split_indices[i];
        let split = t.split_conditions[i];
        if !(0..nf as i64).contains(&f) || !split.is_finite() || split.abs() > f64::from(f32::MAX) {
            return Err(format!("node {i} has an invalid split"));
        }
        let default_left = match &t.default_left[i] {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::Number(v) => v.as_f64() != Some(0.0),
            _ => return Err(format!("node {i} has an invalid default_left")),
        };
        Ok(Part::Split {
            feature: f as usize,
            split: boundary(split as f32),
            gain: t.loss_changes[i],
            value: t.base_weights[i],
            cover: t.sum_hessian[i],
            default_left,
            left,
            right,
        })
    };
    foreign::tree(0, n, index, part)
}

/// Fits XGBoost (the feature `xgboost`) on imputed column-major features, 0/1 labels
/// and optional row weights, and reads the result into spamscope's boosted trees.
#[cfg(feature = "xgboost")]
pub fn fit(
    p: &XgbParams,
    columns: &[&[f64]],
    labels: &[u8],
    weights: Option<&[f64]>,
    reporter: &dyn crate::util::progress::Reporter,
) -> Result<crate::model::boosting::Boosted, crate::model::FitError> {
    let booster = train(p, columns, labels, weights, reporter)?;
    let fail = |e: xgb::XGBError| BoostError::Fit(format!("XGBoost: {e}"));
    let json = booster.save_buffer(false).map_err(fail)?;
    Ok(crate::model::boosting::Boosted::from_booster(
        booster_from_json(&json, columns.len())?,
        columns.len(),
    )?)
}

/// XGBoost's own booster for the parameters and rows (what [`fit`] reads), round by
/// round; a cancel between rounds stops it.
#[cfg(feature = "xgboost")]
fn train(
    p: &XgbParams,
    columns: &[&[f64]],
    labels: &[u8],
    weights: Option<&[f64]>,
    reporter: &dyn crate::util::progress::Reporter,
) -> Result<xgb::Booster, crate::model::FitError> {
    p.validate().map_err(BoostError::Param)?;
    let fail = |e: xgb::XGBError| BoostError::Fit(format!("XGBoost: {e}"));
    let nf = columns.len();
    let mut rows: Vec<f32> = Vec::with_capacity(labels.len() * nf);
    for i in 0..labels.len() {
        rows.extend(columns.iter().map(|c| c[i] as f32));
    }
    let mut data = xgb::DMatrix::from_dense(&rows, labels.len()).map_err(fail)?;
    drop(rows);
    let y: Vec<f32> = labels.iter().map(|&l| f32::from(l)).collect();
    data.set_labels(&y).map_err(fail)?;
    if let Some(w) = weights {
        let w: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        data.set_weights(&w).map_err(fail)?;
    }
    let mut booster = xgb::Booster::new_with_cached_dmats(
        &xgb::parameters::BoosterParameters::default(),
        &[&data],
    )
    .map_err(fail)?;
    let threads = rayon::current_num_threads().to_string();
    let (eta, depth, spw, seed) = (
        p.learning_rate.to_string(),
        p.max_depth.to_string(),
        p.scale_pos_weight.to_string(),
        (p.seed % (1 << 31)).to_string(),
    );
    for (k, v) in [
        ("booster", "gbtree"),
        ("objective", "binary:logistic"),
        ("tree_method", "hist"),
        ("max_bin", "256"),
        ("eta", &eta),
        ("max_depth", &depth),
        ("min_child_weight", "1"),
        ("lambda", "1"),
        ("alpha", "0"),
        ("gamma", "0"),
        ("subsample", "1"),
        ("colsample_bytree", "1"),
        ("scale_pos_weight", &spw),
        ("seed", &seed),
        ("nthread", &threads),
        ("verbosity", "0"),
        // The binding's default parameters include a base score of 0.5, which turns
        // XGBoost's estimate of it from the rows off; this turns it back on, as
        // XGBClassifier fits it (measured: with 0.5 its probabilities differ by up to
        // 0.48 on a 3,000-row sample; with this, not at all).
        ("boost_from_average", "1"),
    ] {
        booster.set_param(k, v).map_err(fail)?;
    }
    for round in 0..p.iterations {
        reporter.stage("fitting (XGBoost)", round, p.iterations);
        reporter.check()?;
        booster.update(&data, round as i32).map_err(fail)?;
    }
    reporter.stage("fitting (XGBoost)", p.iterations, p.iterations);
    Ok(booster)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::boosting::Boosted;

    /// Two trees over 2 features in XGBoost's JSON format: a stump (x0 < 1.5, missing to
    /// the right) and a three-leaf tree whose root's right child splits again.
    fn model() -> serde_json::Value {
        serde_json::json!({
          "learner": {
            "attributes": {},
            "feature_names": [], "feature_types": [],
            "gradient_booster": {
              "model": {
                "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": "2"},
                "iteration_indptr": [0, 1, 2],
                "tree_info": [0, 0],
                "trees": [
                  {"base_weights": [-0.3, -0.5, 0.25], "categories": [], "categories_nodes": [],
                   "categories_segments": [], "categories_sizes": [],
                   "default_left": [0, 0, 0], "id": 0,
                   "left_children": [1, -1, -1], "right_children": [2, -1, -1],
                   "loss_changes": [5.0, 0.0, 0.0], "parents": [2147483647, 0, 0],
                   "split_conditions": [1.5, -0.5, 0.25], "split_indices": [0, 0, 0],
                   "split_type": [0, 0, 0], "sum_hessian": [40.0, 30.0, 10.0],
                   "tree_param": {"num_deleted": "0", "num_feature": "2", "num_nodes": "3", "size_leaf_vector": "1"}},
                  {"base_weights": [0.0, 0.1, 0.04, -0.2, 0.4], "categories": [], "categories_nodes": [],
                   "categories_segments": [], "categories_sizes": [],
                   "default_left": [1, 0, 1, 0, 0], "id": 1,
                   "left_children": [1, -1, 3, -1, -1], "right_children": [2, -1, 4, -1, -1],
                   "loss_changes": [2.0, 0.0, 1.0, 0.0, 0.0], "parents": [2147483647, 0, 0, 2, 2],
                   "split_conditions": [0.0, 0.1, 2.5, -0.2, 0.4], "split_indices": [1, 0, 0, 0, 0],
                   "split_type": [0, 0, 0, 0, 0], "sum_hessian": [40.0, 20.0, 20.0, 12.0, 8.0],
                   "tree_param": {"num_deleted": "0", "num_feature": "2", "num_nodes": "5", "size_leaf_vector": "1"}}
                ]
              },
              "name": "gbtree"
            },
            "learner_model_param": {"base_score": "[2.5E-1]", "boost_from_average": "1",
                                    "num_class": "0", "num_feature": "2", "num_target": "1"},
            "objective": {"name": "binary:logistic", "reg_loss_param": {"scale_pos_weight": "36"}}
          },
          "version": [3, 2, 0]
        })
    }

    fn read(v: &serde_json::Value) -> Result<GradientBooster, BoostError> {
        booster_from_json(&serde_json::to_vec(v).unwrap(), 2)
    }

    #[test]
    fn reads_xgboost_trees_with_its_split_rule_and_base_score() {
        let b = read(&model()).unwrap();
        assert_eq!(b.trees.len(), 2);
        assert!((b.base_score - (0.25f64 / 0.75).ln()).abs() < 1e-12);
        let score = |x: &[f64]| -> f64 {
            b.trees
                .iter()
                .map(|t| t.predict_row_from_row_slice(x, &f64::NAN))
                .sum()
        };
        // Tree 0: x0 < 1.5 -> -0.5, else 0.25 (1.5 itself goes right).
        // Tree 1: x1 < 0 -> 0.1; else x0 < 2.5 -> -0.2, else 0.4.
        for (x, expect) in [
            ([1.4999, -1.0], -0.5 + 0.1),
            ([1.5, -1.0], 0.25 + 0.1),
            ([2.4, 0.0], 0.25 - 0.2),
            ([2.5, 3.0], 0.25 + 0.4),
        ] {
            assert!((score(&x) - expect).abs() < 1e-7, "{x:?}");
        }
        // Covers are the hessian sums; preorder; missing follows default_left.
        let t1 = &b.trees[1].nodes;
        assert_eq!((t1[0].left_child, t1[0].right_child), (1, 2));
        assert_eq!(t1[2].hessian_sum, 20.0);
        assert_eq!(t1[0].missing_node, t1[0].left_child);
        assert_eq!(
            b.trees[0].nodes[0].missing_node,
            b.trees[0].nodes[0].right_child
        );
        let boosted = Boosted::from_booster(b, 2).unwrap();
        assert!((boosted.importance.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_double_goes_where_xgboost_sends_its_single_precision_value() {
        let mut rng = crate::util::rng::SplitMix64::new(9);
        for _ in 0..20_000 {
            let split = ((rng.next_f64() - 0.5) * 1e3) as f32;
            let b = boundary(split);
            // Doubles around the split, the boundary and its neighbours included.
            let around = [
                b,
                b.next_down(),
                b.next_up(),
                f64::from(split),
                f64::from(split.next_down()),
                f64::from(split) + (rng.next_f64() - 0.5) * 1e-4,
            ];
            for x in around {
                assert_eq!(x < b, (x as f32) < split, "x {x:e}, split {split:e}");
            }
        }
    }

    #[test]
    fn refuses_what_it_cannot_score_exactly() {
        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = model();
            f(&mut v);
            v
        };
        let tree1 = "/learner/gradient_booster/model/trees/1";
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (
                edit(&|v| v["learner"]["objective"]["name"] = "reg:squarederror".into()),
                "binary:logistic",
            ),
            (
                edit(&|v| v["learner"]["learner_model_param"]["num_feature"] = "7".into()),
                "2 features",
            ),
            (
                edit(&|v| v["learner"]["learner_model_param"]["base_score"] = "[1.5E0]".into()),
                "base_score",
            ),
            (
                edit(&|v| v.pointer_mut(tree1).unwrap()["split_type"][2] = 1.into()),
                "categorical",
            ),
            (
                edit(&|v| v.pointer_mut(tree1).unwrap()["split_indices"][2] = 2.into()),
                "invalid split",
            ),
            (
                edit(&|v| v.pointer_mut(tree1).unwrap()["left_children"][2] = 1.into()),
                "out of place",
            ),
            (
                edit(&|v| v.pointer_mut(tree1).unwrap()["right_children"][2] = 0.into()),
                "out of place",
            ),
            (
                edit(&|v| {
                    v.pointer_mut(tree1).unwrap()["sum_hessian"]
                        .as_array_mut()
                        .unwrap()
                        .pop();
                }),
                "differ in length",
            ),
            (serde_json::json!({"learner": 1}), "not XGBoost's JSON"),
        ];
        for (v, what) in cases {
            let e = read(&v).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains(what), "{what}: {e}");
        }
    }

    /// XGBoost's own scores and TreeSHAP contributions are what spamscope computes from
    /// the trees it read: the same model.
    #[cfg(feature = "xgboost")]
    #[test]
    fn a_fitted_xgboost_scores_and_explains_as_the_library_does() {
        use crate::model::foreign::testing::{assert_same_model, rows, sample};
        use crate::util::progress::NoProgress;
        let (cols, y) = sample();
        let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        let y = &y;
        let p = XgbParams {
            iterations: 30,
            ..XgbParams::default()
        };
        let ours = fit(&p, &refs, y, None, &NoProgress).unwrap();
        assert_eq!(ours.booster.trees.len(), 30);
        // XGBClassifier's starting score, estimated from the rows (one Newton step of the
        // weighted log loss from 0), not the binding's default of one half.
        let (mut wy, mut w) = (0.0, 0.0);
        for &l in y {
            let wi = if l == 1 { p.scale_pos_weight } else { 1.0 };
            wy += wi * f64::from(l);
            w += wi;
        }
        let expected = 4.0 * (wy / w - 0.5);
        assert!(
            (ours.booster.base_score - expected).abs() < 1e-5,
            "base log-odds {} vs {expected}",
            ours.booster.base_score
        );
        // The library's own booster for the same rows and parameters (deterministic):
        // its predictions and pred_contribs.
        let nf = refs.len();
        let rows = rows(&cols, 200);
        let lib = train(&p, &refs, y, None, &NoProgress).unwrap();
        let rows32: Vec<f32> = rows.iter().map(|&v| v as f32).collect();
        let m = xgb::DMatrix::from_dense(&rows32, 200).unwrap();
        let theirs: Vec<f64> = lib
            .predict(&m)
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        let (contrib, _) = lib.predict_contributions(&m).unwrap();
        let contrib: Vec<f64> = contrib[..=nf].iter().map(|&v| f64::from(v)).collect();
        assert_same_model(&ours, &rows, &theirs, &contrib);
        // A cancel between rounds stops it.
        struct Cancel;
        impl crate::util::progress::Reporter for Cancel {
            fn stage(&self, _: &str, _: usize, _: usize) {}
            fn cancelled(&self) -> bool {
                true
            }
        }
        assert!(matches!(
            fit(&p, &refs, y, None, &Cancel),
            Err(crate::model::FitError::Cancelled(_))
        ));
    }
}
