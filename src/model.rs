//! A deployable model: median imputer + forest, and its compact binary file format.
//!
//! File layout: the 8-byte magic `SPSCRF01`, then a postcard-encoded [`ModelFile`]. Trees
//! are stored in preorder without redundancy: a split feature per node (255 = leaf), a
//! threshold and right-child index per internal node, and the two weighted class masses
//! per leaf. Internal masses are sums of their children and are rebuilt on load. Every
//! loaded model is validated structurally (and by checksum in the registry), so a
//! damaged file is an error, never a crash.

use crate::catalog::{N_FEATURES, catalog};
use crate::data::Dataset;
use crate::forest::explain::{Explanation, Method};
use crate::forest::{Forest, Tree, tree::LEAF};
use crate::preprocess::Imputer;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8; 8] = b"SPSCRF01";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error("not a spamscope model file (bad header)")]
    BadMagic,
    #[error("model file is truncated or corrupted: {0}")]
    Corrupt(String),
    #[error("model expects columns {0}, but the catalog has X1..X51")]
    Schema(String),
}

/// Imputation + forest: what scoring needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub imputer: Imputer,
    pub forest: Forest,
}

impl Model {
    /// Probability that the account is a spammer; `raw` may contain NaN (missing).
    pub fn predict_one(&self, raw: &[f64]) -> f64 {
        let mut x = raw.to_vec();
        self.imputer.apply_row(&mut x);
        self.forest.predict_proba(&x)
    }

    /// Probabilities for the given rows of a dataset (all rows when `idx` is None).
    pub fn predict_dataset(&self, d: &Dataset, idx: Option<&[usize]>) -> Vec<f64> {
        let all: Vec<usize>;
        let idx = match idx {
            Some(i) => i,
            None => {
                all = (0..d.n_rows()).collect();
                &all
            }
        };
        // Bounded blocks keep the row-major copy small for big files.
        const BLOCK: usize = 65_536;
        let mut out = Vec::with_capacity(idx.len());
        for chunk in idx.chunks(BLOCK) {
            let rows = self.imputer.transform_rows(&d.columns, chunk);
            out.extend(self.forest.predict_proba_rows(&rows));
        }
        out
    }

    pub fn explain_one(&self, raw: &[f64], method: Method) -> Explanation {
        let mut x = raw.to_vec();
        self.imputer.apply_row(&mut x);
        self.forest.explain(&x, method)
    }

    /// Explanations for many rows in parallel.
    pub fn explain_rows(&self, d: &Dataset, idx: &[usize], method: Method) -> Vec<Explanation> {
        idx.par_iter()
            .map(|&i| self.explain_one(&d.row(i), method))
            .collect()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let file = ModelFile {
            feature_ids: catalog().ids().map(str::to_string).collect(),
            medians: self.imputer.medians.clone(),
            importance: self.forest.importance.clone(),
            trees: self
                .forest
                .trees
                .iter()
                .map(CompactTree::from_tree)
                .collect(),
        };
        let mut out = MAGIC.to_vec();
        out.extend(postcard::to_allocvec(&file).expect("serialising to memory cannot fail"));
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let body = bytes.strip_prefix(MAGIC).ok_or(ModelError::BadMagic)?;
        let file: ModelFile =
            postcard::from_bytes(body).map_err(|e| ModelError::Corrupt(e.to_string()))?;
        let ids: Vec<&str> = catalog().ids().collect();
        if file.feature_ids != ids {
            return Err(ModelError::Schema(file.feature_ids.join(",")));
        }
        if file.medians.len() != N_FEATURES || file.medians.iter().any(|m| !m.is_finite()) {
            return Err(ModelError::Corrupt("invalid imputation medians".into()));
        }
        let trees = file
            .trees
            .into_iter()
            .enumerate()
            .map(|(k, t)| t.into_tree().map_err(|e| format!("tree {k}: {e}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ModelError::Corrupt)?;
        let forest = Forest {
            n_features: N_FEATURES,
            trees,
            importance: file.importance,
        };
        forest.validate().map_err(ModelError::Corrupt)?;
        Ok(Model {
            imputer: Imputer {
                medians: file.medians,
            },
            forest,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct ModelFile {
    feature_ids: Vec<String>,
    medians: Vec<f64>,
    importance: Vec<f64>,
    trees: Vec<CompactTree>,
}

#[derive(Serialize, Deserialize)]
struct CompactTree {
    /// Split feature per node, 255 for a leaf.
    feature: Vec<u8>,
    /// Per internal node, in order.
    threshold: Vec<f64>,
    right: Vec<u32>,
    /// Per leaf, in order: weighted mass of class 0 and class 1.
    leaf_mass: Vec<[f64; 2]>,
}

const LEAF_BYTE: u8 = 255;

impl CompactTree {
    fn from_tree(t: &Tree) -> CompactTree {
        let mut c = CompactTree {
            feature: Vec::with_capacity(t.n_nodes()),
            threshold: Vec::new(),
            right: Vec::new(),
            leaf_mass: Vec::new(),
        };
        for i in 0..t.n_nodes() {
            if t.is_leaf(i) {
                c.feature.push(LEAF_BYTE);
                c.leaf_mass.push(t.class_weight[i]);
            } else {
                c.feature.push(t.feature(i) as u8);
                c.threshold.push(t.threshold(i));
                c.right.push(t.nodes[i].right);
            }
        }
        c
    }

    fn into_tree(self) -> Result<Tree, String> {
        let n = self.feature.len();
        let internal = self.feature.iter().filter(|&&f| f != LEAF_BYTE).count();
        if self.threshold.len() != internal
            || self.right.len() != internal
            || self.leaf_mass.len() != n - internal
        {
            return Err("node arrays do not match".into());
        }
        let mut feature = Vec::with_capacity(n);
        let mut threshold = Vec::with_capacity(n);
        let mut right = Vec::with_capacity(n);
        let mut class_weight = Vec::with_capacity(n);
        let (mut k, mut l) = (0, 0);
        for &f in &self.feature {
            if f == LEAF_BYTE {
                feature.push(LEAF);
                threshold.push(0.0);
                right.push(0);
                class_weight.push(self.leaf_mass[l]);
                l += 1;
            } else {
                feature.push(f as u16);
                threshold.push(self.threshold[k]);
                right.push(self.right[k]);
                class_weight.push([0.0; 2]);
                k += 1;
            }
        }
        Tree::from_parts(feature, threshold, right, class_weight, N_FEATURES)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::forest::ForestParams;
    use crate::progress::NoProgress;
    use crate::synth::{SynthParams, default_dataset};

    pub(crate) fn small_model() -> (Model, Dataset) {
        let d = default_dataset(SynthParams {
            rows: 3000,
            seed: 9,
        });
        let idx: Vec<usize> = (0..d.n_rows()).collect();
        let imputer = Imputer::fit(&d.columns, &idx);
        let cols = imputer.transform_columns(&d.columns, &idx);
        let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        let forest = ForestParams {
            n_trees: 8,
            max_depth: Some(8),
            ..Default::default()
        }
        .fit(&refs, d.labels.as_ref().unwrap(), None, &NoProgress)
        .unwrap();
        (Model { imputer, forest }, d)
    }

    #[test]
    fn round_trip_is_exact() {
        let (m, d) = small_model();
        let bytes = m.to_bytes();
        let back = Model::from_bytes(&bytes).unwrap();
        assert_eq!(back, m);
        let p1 = m.predict_dataset(&d, None);
        let p2 = back.predict_dataset(&d, None);
        assert_eq!(p1, p2);
        // Missing values are imputed: the row with blank X13 scores like its imputed copy.
        let mut raw = d.row(0);
        raw[12] = f64::NAN;
        let mut imputed = raw.clone();
        imputed[12] = m.imputer.medians[12];
        assert_eq!(m.predict_one(&raw), m.predict_one(&imputed));
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        let (m, _) = small_model();
        let bytes = m.to_bytes();
        assert_eq!(Model::from_bytes(b"hello"), Err(ModelError::BadMagic));
        for cut in [8, 9, 100, bytes.len() / 2, bytes.len() - 1] {
            assert!(Model::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // Flip bytes all over the body: every result is an error or a valid model.
        for pos in (8..bytes.len()).step_by(bytes.len() / 97 + 1) {
            let mut b = bytes.clone();
            b[pos] ^= 0x5A;
            if let Ok(model) = Model::from_bytes(&b) {
                model.forest.validate().unwrap();
                let _ = model.predict_one(&[0.0; N_FEATURES]);
            }
        }
    }
}
