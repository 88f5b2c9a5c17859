//! Every step a user can take, once, for every front-end (the app, the command line,
//! the service): train, score, retrain from feedback, compare and promote, report,
//! benchmark, tune hyperparameters, run a candidate beside the active version
//! (experiment), send alerts.

pub mod alert;
pub mod bench;
pub mod compare;
pub mod error;
pub mod experiment;
pub mod feedback;
pub mod migrate;
pub mod mlflow;
pub mod online;
pub mod policy;
pub mod predict;
pub mod python;
pub mod report;
pub mod review;
pub mod schedule;
pub mod score;
pub mod settings;
pub mod table;
pub mod train;
pub mod trust;
pub mod tune;
pub mod versions;

pub use error::{Error, Result};
