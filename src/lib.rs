//! spamscope: score marketplace accounts for spam risk, explain the score, learn from
//! moderators' corrections.
//!
//! The library holds all domain logic (data, model, metrics, registry); the binary adds
//! the command line and the desktop app on top of it.
//!
//! ```
//! use spamscope::forest::ForestParams;
//! use spamscope::metrics::Metrics;
//! use spamscope::progress::NoProgress;
//! use spamscope::synth::{SynthParams, default_dataset};
//!
//! // A small synthetic dataset (no missing values below row 4321), a small forest.
//! let data = default_dataset(SynthParams { rows: 2000, seed: 1 });
//! let labels = data.labels.as_ref().unwrap();
//! let forest = ForestParams { n_trees: 10, ..Default::default() }
//!     .fit(&data.column_refs(), labels, None, &NoProgress)
//!     .unwrap();
//! let scores: Vec<f64> = (0..data.n_rows()).map(|i| forest.predict_proba(&data.row(i))).collect();
//! let m = Metrics::from_scores(labels, &scores, 0.5).unwrap();
//! assert!(m.roc_auc > 0.9, "training-set AUC {}", m.roc_auc);
//! ```

pub mod app;
pub mod baselines;
pub mod bench;
pub mod boosting;
pub mod catalog;
pub mod cli;
pub mod compare;
pub mod data;
pub mod eda;
pub mod error;
pub mod feedback;
pub mod forest;
pub mod hash;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod online;
pub mod preprocess;
pub mod progress;
pub mod recipe;
pub mod report;
pub mod resample;
pub mod rng;
pub mod score;
pub mod stats;
pub mod store;
pub mod synth;
pub mod train;
pub mod workbench;

pub use error::{Error, Result};
