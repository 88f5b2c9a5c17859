//! The crate-level error: every failure a command, the app or the service can report in
//! one line. Each lower layer has its own error; this one wraps them all, and turns every
//! layer's cancellation into the one [`Error::Cancelled`].

use crate::data::DataError;
use crate::data::eda::EdaError;
use crate::data::preprocess::SplitError;
use crate::eval::metrics::MetricsError;
use crate::eval::threshold::ThresholdError;
use crate::model::calibrate::CalibrationError;
use crate::model::forest::ForestError;
use crate::model::{FitError, ModelError};
use crate::store::feedback::FeedbackError;
use crate::store::predictions::PredictionLogError;
use crate::store::tokens::TokenError;
use crate::store::{ErrorKind, StoreError};
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
    Calibration(#[from] CalibrationError),
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
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
    Experiment(#[from] ExperimentError),

    /// The job was cancelled by its reporter (the user pressed Cancel).
    #[error("cancelled")]
    Cancelled,
    /// A peer row of the comparison (a library run in Python) that could not be run.
    #[error("not run in Python: {0}")]
    Peer(String),
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
    /// What kind of failure this is, kept from the layer that failed: a front-end
    /// answers by kind (the service: busy → 503 with `Retry-After`, not found → 404,
    /// invalid → 400), never by reading the message.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Feedback(e) => e.kind,
            Error::Predictions(PredictionLogError::Db { kind, .. }) => *kind,
            Error::Store(e) => e.kind(),
            Error::Tokens(TokenError::LockTimeout { .. }) => ErrorKind::Busy,
            Error::Tokens(TokenError::Database(e)) => e.kind,
            Error::Tokens(TokenError::Damaged { .. }) => ErrorKind::Corrupt,
            Error::Tokens(TokenError::Unknown { .. }) => ErrorKind::NotFound,
            Error::Tokens(TokenError::Duplicate { .. }) => ErrorKind::Conflict,
            Error::Tokens(TokenError::BadRole(_) | TokenError::BadName(_)) => ErrorKind::Invalid,
            Error::Data(_)
            | Error::Split(_)
            | Error::Invalid(_)
            | Error::Calibration(_)
            | Error::Threshold(_) => ErrorKind::Invalid,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Model(_) => ErrorKind::Corrupt,
            _ => ErrorKind::Other,
        }
    }

    pub fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Error {
        Error::at(path.display().to_string(), e)
    }

    /// An error at `place` (a file, or a document of a shared store).
    pub fn at(place: String, e: impl std::fmt::Display) -> Error {
        Error::Io {
            path: place,
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

impl From<crate::store::copy::CopyError> for Error {
    fn from(e: crate::store::copy::CopyError) -> Error {
        use crate::store::copy::CopyError as C;
        match e {
            C::Store(e) => Error::Store(e),
            C::Feedback(e) => Error::Feedback(e),
            C::Predictions(e) => Error::Predictions(e),
            C::Tokens(e) => Error::Tokens(e),
            C::Conflict(m) => Error::Conflict(m),
        }
    }
}

impl From<ForestError> for Error {
    fn from(e: ForestError) -> Error {
        FitError::from(e).into()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a shadow or canary experiment refuses (`ops::experiment`).
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("mode must be \"shadow\" or \"canary\" (got {0})")]
    UnknownMode(String),
    #[error("share must be a number above 0 and at most 1 (got {0})")]
    BadShare(String),
    #[error("share is required for a canary: a number above 0 and at most 1")]
    MissingShare,
    #[error("version {0} does not exist")]
    NoSuchVersion(u32),
    #[error("version {0} is the active version; an experiment runs another version beside it")]
    IsActive(u32),
    #[error("experiment {id} (version {candidate}) is already running; stop it first")]
    AlreadyRunning { id: String, candidate: u32 },
    #[error("no experiment is running")]
    NotRunning,
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ExperimentError {
    /// The request field at fault, if one is.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ExperimentError::UnknownMode(_) => Some("mode"),
            ExperimentError::BadShare(_) | ExperimentError::MissingShare => Some("share"),
            ExperimentError::NoSuchVersion(_) | ExperimentError::IsActive(_) => Some("version"),
            _ => None,
        }
    }

    pub(crate) fn file(place: String, e: impl std::fmt::Display) -> ExperimentError {
        ExperimentError::File {
            path: place,
            message: e.to_string(),
        }
    }
}
