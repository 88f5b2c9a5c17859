//! The service's error responses: `{"error": {"code", "message", "field"?}, "detail"}`
//! (`detail` repeats the message, where FastAPI clients look for it).
//!
//! A store error keeps its kind up to here ([`crate::Error::kind`]): busy answers 503
//! with `Retry-After`, not found 404, invalid 400. No answer carries an absolute file
//! path (each is cut to its file name) nor a panic's text.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Seconds a client should wait before trying again (`Retry-After`), for a busy
    /// store.
    pub retry_after: Option<u64>,
}

/// Seconds a client is asked to wait when a store is busy.
pub const RETRY_AFTER_BUSY: u64 = 1;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: without_paths(&one_line(&message.into())),
            field: None,
            retry_after: None,
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
    /// A store that stays locked by another writer: try again shortly.
    pub fn busy(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message);
        e.retry_after = Some(RETRY_AFTER_BUSY);
        e
    }
}

/// `s` with every absolute file path cut to its file name (`/srv/reg/feedback.sqlite:
/// database is locked` → `feedback.sqlite: database is locked`): a path says where the
/// service keeps its files, which is nobody's business over HTTP. A path starts a word
/// (at the start, or after a space or an opening parenthesis) and has two slashes or
/// more; URLs (`http://host/x`) and quoted values are left as they are.
pub fn without_paths(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut at_word_start = true;
    while let Some(c) = rest.chars().next() {
        if at_word_start && c == '/' {
            let end = rest
                .find(|c: char| c.is_whitespace() || matches!(c, ')' | ',' | ';' | '"' | '\''))
                .unwrap_or(rest.len());
            let mut word = &rest[..end];
            // `path: message`: the colon is not part of the path.
            let colon = word.ends_with(':');
            if colon {
                word = &word[..word.len() - 1];
            }
            if word.matches('/').count() >= 2 {
                let name = word.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                out.push_str(if name.is_empty() { "…" } else { name });
                if colon {
                    out.push(':');
                }
                rest = &rest[end..];
                at_word_start = false;
                continue;
            }
        }
        out.push(c);
        at_word_start = c.is_whitespace() || c == '(';
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// One line, and at most a few hundred characters of it.
fn one_line(s: &str) -> String {
    let s = crate::util::text::one_line(s);
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
        let mut res = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        res
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> ApiError {
        use crate::store::ErrorKind as K;
        if let crate::Error::Experiment(e) = e {
            return ApiError::from(e);
        }
        let kind = e.kind();
        let message = e.to_string();
        match kind {
            K::Invalid => ApiError::bad_request("invalid", message),
            K::Conflict => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            K::NotFound => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            K::Busy => {
                tracing::warn!("busy: {message}");
                ApiError::busy(format!(
                    "the service's store is busy with another writer; try again in {RETRY_AFTER_BUSY} s ({message})"
                ))
            }
            K::Corrupt => {
                tracing::error!("damaged store: {message}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt", message)
            }
            K::Other => {
                tracing::error!("{message}");
                ApiError::internal(message)
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cut_to_their_file_names() {
        let cases = [
            (
                "/srv/reg/feedback.sqlite: database is locked",
                "feedback.sqlite: database is locked",
            ),
            (
                "cannot read /tmp/x/y/manifest.ron (no such file)",
                "cannot read manifest.ron (no such file)",
            ),
            ("(/a/b/c) and /d/e/", "(c) and e"),
            // URLs, single-segment slashes and quoted values stay.
            (
                "POST http://127.0.0.1:1/x/y failed",
                "POST http://127.0.0.1:1/x/y failed",
            ),
            ("no route \"/predict/x\"", "no route \"/predict/x\""),
            ("a / b and /health", "a / b and /health"),
        ];
        for (input, want) in cases {
            assert_eq!(without_paths(input), want, "{input}");
        }
    }

    #[test]
    fn a_busy_store_answers_503_with_retry_after() {
        let e: ApiError = crate::Error::Feedback(crate::store::feedback::FeedbackError {
            path: "/srv/reg/feedback.sqlite".into(),
            message: "database is locked".into(),
            kind: crate::store::ErrorKind::Busy,
        })
        .into();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "busy")
        );
        assert!(!e.message.contains("/srv"), "{}", e.message);
        let res = e.into_response();
        assert_eq!(res.headers()[axum::http::header::RETRY_AFTER], "1");
    }
}
