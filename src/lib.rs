//! spamscope: score marketplace accounts for spam risk, explain the score, learn from
//! moderators' corrections.
//!
//! The library holds all domain logic (data, model, metrics, registry); the binary adds
//! the command line and the desktop app on top of it.

pub mod catalog;
pub mod data;
pub mod forest;
pub mod hash;
pub mod metrics;
pub mod preprocess;
pub mod progress;
pub mod rng;
pub mod synth;
