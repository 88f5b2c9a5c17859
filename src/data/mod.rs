//! Accounts as columns: the feature catalog, the dataset and its CSV loader, the
//! synthetic default generator, preprocessing (imputation, splits, standardisation),
//! resampling (SMOTE) and descriptive statistics.

pub mod catalog;
mod dataset;
pub mod eda;
pub mod preprocess;
pub mod resample;
pub mod stats;
pub mod synth;

pub use dataset::*;
