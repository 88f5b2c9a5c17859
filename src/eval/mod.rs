//! How good a model is: scikit-learn-exact metrics and curves, and monitoring of what
//! it scores (latency, errors, drift of the inputs against the training data).

pub mod calibration;
pub mod metrics;
pub mod monitor;
pub mod policy;
pub mod threshold;
pub mod verdict;
