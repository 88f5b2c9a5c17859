//! spamscope: score marketplace accounts for spam risk, explain the score, learn from
//! moderators' corrections.
//!
//! The library holds all domain logic; the binary (`src/main.rs`, `src/cli/`) adds the
//! command line and opens the desktop app. The modules are layers, and each one uses only
//! the layers before it (no two modules import each other; `../shared/tools/layers.py`
//! checks it):
//!
//! ```text
//! util      seeded rng, hashing, progress + cancellation
//!  └ data     feature catalog, dataset + CSV loader, synthetic generator, preprocessing,
//!    │        resampling (SMOTE), descriptive statistics
//!    └ model    the model file, explanation types, recipes; forest/, baselines, boosting
//!      └ eval     metrics and curves (scikit-learn's definitions), monitoring and drift
//!        └ store    registry (versions, manifests, ACTIVE), its layout, feedback store
//!          └ ops      every step a user takes, once: train, score, retrain, compare and
//!            │        promote, report, feedback records, bench; the crate error
//!            └ front-ends: service (`spamscope serve`, HTTP); remote (the service's
//!              client: a local copy of a team's versions, the feedback outbox);
//!              workbench + app (feature `gui`), the CLI in the binary
//! ```
//!
//! A change belongs in the lowest layer that can hold it; a front-end only turns input
//! into an `ops` call and its result into output.
//!
//! ```
//! use spamscope::model::forest::ForestParams;
//! use spamscope::eval::metrics::Metrics;
//! use spamscope::util::progress::NoProgress;
//! use spamscope::data::synth::{SynthParams, default_dataset};
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

#[cfg(feature = "gui")]
pub mod app;
pub mod data;
pub mod eval;
pub mod model;
pub mod ops;
pub mod remote;
pub mod service;
pub mod store;
pub mod util;
#[cfg(feature = "gui")]
pub mod workbench;

pub use ops::{Error, Result};
