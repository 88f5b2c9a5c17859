//! The crate-level error: every failure a command, the app or the service can report in
//! one line. Each lower layer has its own error; this one wraps them all, and turns every
//! layer's cancellation into the one [`Error::Cancelled`].

use crate::data::DataError;
use crate::data::eda::EdaError;
use crate::data::preprocess::SplitError;
use crate::eval::metrics::MetricsError;
use crate::model::forest::ForestError;
use crate::model::{FitError, ModelError};
use crate::store::StoreError;
use crate::store::feedback::FeedbackError;
use crate::store::predictions::PredictionLogError;
use crate::store::tokens::TokenError;
use crate::util::progress::Cancelled;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error(transparent)]
    Statistics(EdaError),
    #[error(transparent)]
    Fit(FitError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Feedback(#[from] FeedbackError),
    #[error(transparent)]
    Predictions(#[from] PredictionLogError),
    #[error(transparent)]
    Tokens(#[from] TokenError),
    #[error(transparent)]
    Experiment(#[from] crate::ops::experiment::ExperimentError),
    /// The job was cancelled by its reporter (the user pressed Cancel).
    #[error("cancelled")]
    Cancelled,
    /// A bad argument or an impossible request.
    #[error("{0}")]
    Invalid(String),
    /// The request contradicts what is stored (an idempotency key used before with
    /// another body).
    #[error("{0}")]
    Conflict(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

impl Error {
    pub fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Error {
        Error::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

impl From<Cancelled> for Error {
    fn from(_: Cancelled) -> Error {
        Error::Cancelled
    }
}

impl From<FitError> for Error {
    fn from(e: FitError) -> Error {
        match e {
            FitError::Cancelled(_) => Error::Cancelled,
            e => Error::Fit(e),
        }
    }
}

impl From<EdaError> for Error {
    fn from(e: EdaError) -> Error {
        match e {
            EdaError::Cancelled(_) => Error::Cancelled,
            e => Error::Statistics(e),
        }
    }
}

impl From<ForestError> for Error {
    fn from(e: ForestError) -> Error {
        FitError::from(e).into()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
