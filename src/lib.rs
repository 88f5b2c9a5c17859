//! spamscope: score marketplace accounts for spam risk, explain the score, learn from
//! moderators' corrections.
//!
//! The library holds all domain logic (data, model, metrics, registry); the binary adds
//! the command line and the desktop app on top of it.

pub mod bench;
pub mod catalog;
pub mod cli;
pub mod data;
pub mod error;
pub mod feedback;
pub mod forest;
pub mod hash;
pub mod metrics;
pub mod model;
pub mod preprocess;
pub mod progress;
pub mod rng;
pub mod score;
pub mod stats;
pub mod store;
pub mod synth;
pub mod train;

pub use error::{Error, Result};
