//! The service's error responses: `{"error": {"code", "message", "field"?}, "detail"}`
//! (`detail` repeats the message, where FastAPI clients look for it).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: one_line(&message.into()),
            field: None,
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn with_field(mut self, field: Option<String>) -> ApiError {
        self.field = field;
        self
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

/// One line, and at most a few hundred characters of it.
fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 400 {
        let cut: String = s.chars().take(400).collect();
        format!("{cut}…")
    } else {
        s
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = super::api::ErrorBody {
            error: super::api::ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
                field: self.field.as_deref().map(crate::util::text::clip),
            },
            detail: self.message,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> ApiError {
        match e {
            crate::Error::Invalid(m) => ApiError::bad_request("invalid", m),
            crate::Error::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            crate::Error::Experiment(e) => ApiError::from(e),
            e => ApiError::internal(e.to_string()),
        }
    }
}

impl From<crate::ops::predict::FeatureError> for ApiError {
    fn from(e: crate::ops::predict::FeatureError) -> ApiError {
        let code = match &e {
            crate::ops::predict::FeatureError::Unknown { .. } => "unknown_feature",
            crate::ops::predict::FeatureError::Duplicate { .. } => "duplicate_feature",
            crate::ops::predict::FeatureError::Invalid { .. } => "invalid_value",
            crate::ops::predict::FeatureError::Missing { .. } => "missing_features",
        };
        let field = e.field();
        ApiError::bad_request(code, e.to_string()).with_field(field)
    }
}

impl From<crate::ops::experiment::ExperimentError> for ApiError {
    fn from(e: crate::ops::experiment::ExperimentError) -> ApiError {
        use crate::ops::experiment::ExperimentError as E;
        let (status, code) = match &e {
            E::UnknownMode(_) | E::BadShare(_) | E::MissingShare => {
                (StatusCode::BAD_REQUEST, "invalid_value")
            }
            E::IsActive(_) => (StatusCode::BAD_REQUEST, "is_active"),
            E::NoSuchVersion(_) => (StatusCode::NOT_FOUND, "no_such_version"),
            E::AlreadyRunning { .. } => (StatusCode::CONFLICT, "busy"),
            E::NotRunning => (StatusCode::NOT_FOUND, "no_experiment"),
            E::File { .. } | E::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let field = e.field().map(str::to_string);
        ApiError::new(status, code, e.to_string()).with_field(field)
    }
}
