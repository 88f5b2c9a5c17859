//! What the handlers share: who is calling ([`Call`]: the token checked for the role a
//! route needs), the request's budget (its slot among `max_in_flight` and its
//! deadline), the body read and parsed, and work on the blocking pool.
//!
//! The deadline: a request is answered 503 when it cannot get a slot in time, when its
//! body does not arrive in time, or when read-only work does not finish in time. Work
//! that changes something ([`Call::write`]) starts only before the deadline, and once
//! started the answer waits for it and says what it did: a request answered with an
//! error never takes effect afterwards. Blocking work holds the request's slot until it
//! ends, even when its answer has gone, so `max_in_flight` bounds the work too.

use crate::service::api::ErrorBody;
use crate::service::{ApiError, Caller, State};
use crate::store::tokens::Role;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::Value;
use std::sync::Arc;

/// The token of a request: `Authorization: Bearer TOKEN` or `X-API-Key: TOKEN`.
pub(super) fn secret(h: &HeaderMap) -> Option<&str> {
    if let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        return Some(v.strip_prefix("Bearer ").unwrap_or(v).trim());
    }
    h.get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// What every route that needs a token may answer besides its own responses.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: the handlers answer these through ApiError
pub(super) enum AuthErrors {
    /// No token, or one that is not known
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The token's role may not do this
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// A request's slot among `max_in_flight` and its deadline: put into the request by the
/// guard, read by [`Call`].
#[derive(Clone)]
pub(super) struct Budget {
    pub(super) deadline: tokio::time::Instant,
    pub(super) timeout: std::time::Duration,
    /// Held by the request and by any blocking work it started.
    pub(super) slot: Arc<tokio::sync::OwnedSemaphorePermit>,
}

impl Budget {
    /// The answer when the deadline passed.
    pub(super) fn timed_out(&self) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {} s (the service is busy)",
                self.timeout.as_secs_f64()
            ),
        )
    }
}

/// The role a route needs, as a type: `Call<Moderator>`.
pub(super) trait Needs {
    const ROLE: Role;
}
pub(super) struct Scorer;
pub(super) struct Moderator;
pub(super) struct Admin;
impl Needs for Scorer {
    const ROLE: Role = Role::Scorer;
}
impl Needs for Moderator {
    const ROLE: Role = Role::Moderator;
}
impl Needs for Admin {
    const ROLE: Role = Role::Admin;
}

/// A request by a caller whose token allows role `R` (checked before anything else is
/// read), with the state and the request's budget.
pub(super) struct Call<R> {
    pub(super) s: Arc<State>,
    pub(super) caller: Caller,
    budget: Budget,
    _role: std::marker::PhantomData<R>,
}

impl<R: Needs> axum::extract::FromRequestParts<Arc<State>> for Call<R> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &Arc<State>,
    ) -> Result<Self, ApiError> {
        let caller = s.authorize(secret(&parts.headers), R::ROLE)?;
        let budget = parts.extensions.get::<Budget>().cloned().ok_or_else(|| {
            ApiError::internal("the request has no budget (a route outside the guard)")
        })?;
        Ok(Call {
            s: s.clone(),
            caller,
            budget,
            _role: std::marker::PhantomData,
        })
    }
}

/// Bodies up to this size are parsed on the async worker (microseconds); larger ones
/// on the blocking pool (a 16 MiB body takes tens of milliseconds).
const PARSE_INLINE_BYTES: usize = 64 * 1024;

impl<R> Call<R> {
    /// The body, at most `max_body` bytes, by the deadline.
    pub(super) async fn body(&self, body: Body) -> Result<Bytes, ApiError> {
        let read = read_body(body, self.s.limits.max_body);
        match tokio::time::timeout_at(self.budget.deadline, read).await {
            Ok(r) => r,
            Err(_) => Err(self.budget.timed_out()),
        }
    }

    /// The body parsed as JSON (off the async workers when it is large).
    pub(super) async fn json(&self, body: Body) -> Result<Value, ApiError> {
        let bytes = self.body(body).await?;
        if bytes.len() <= PARSE_INLINE_BYTES {
            return parse_json(&bytes);
        }
        self.read(move || parse_json(&bytes)).await
    }

    /// Work on the blocking pool within the request's deadline. What it does before
    /// [`Gate::enter`] changes nothing: at the deadline it is let go and the answer is
    /// 503 (it keeps the request's slot until it ends). Once it entered the gate (before
    /// it writes anything), the answer waits for it and says what it did.
    pub(super) async fn work<T, E>(
        &self,
        f: impl FnOnce(&Gate) -> Result<T, E> + Send + 'static,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        if tokio::time::Instant::now() >= self.budget.deadline {
            return Err(self.budget.timed_out());
        }
        let gate = Gate::default();
        let inner = gate.clone();
        let slot = self.budget.slot.clone();
        // The request's span goes with its work (child spans nest under it).
        let span = tracing::Span::current();
        let mut task = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let _in = span.enter();
            f(&inner)
        });
        let joined = tokio::select! {
            r = &mut task => r,
            _ = tokio::time::sleep_until(self.budget.deadline) => {
                if gate.close() {
                    return Err(self.budget.timed_out());
                }
                // It has started writing: its answer is the truth, however late.
                task.await
            }
        };
        joined.map_err(panicked_work)?.map_err(Into::into)
    }

    /// [`Call::work`] that changes nothing.
    pub(super) async fn read<T, E>(
        &self,
        f: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        self.work(move |_| f()).await
    }

    /// [`Call::work`] that changes something from its start: it starts only if the
    /// deadline has not passed, and is then answered with what it did.
    pub(super) async fn write<T, E>(
        &self,
        f: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        self.work(move |gate| {
            gate.enter()?;
            f().map_err(Into::into)
        })
        .await
    }
}

/// Between a request's blocking work and its deadline: the work enters before it
/// changes anything, the deadline closes it; whichever comes first wins.
#[derive(Clone, Default)]
pub(super) struct Gate(Arc<std::sync::atomic::AtomicU8>);

const OPEN: u8 = 0;
const ENTERED: u8 = 1;
const CLOSED: u8 = 2;

impl Gate {
    /// Ok when the work may go on to change things (the deadline has not closed the
    /// gate; from now on it cannot). The error is never seen by a client: the deadline
    /// that closed the gate has answered already.
    pub(super) fn enter(&self) -> Result<(), ApiError> {
        if self.take(ENTERED) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request's deadline passed before its work changed anything",
            ))
        }
    }

    /// True when the work had not entered: it will change nothing.
    fn close(&self) -> bool {
        self.take(CLOSED)
    }

    /// Moves an open gate to `to`; true if it is (now or already) there.
    fn take(&self, to: u8) -> bool {
        use std::sync::atomic::Ordering::{AcqRel, Acquire};
        match self.0.compare_exchange(OPEN, to, AcqRel, Acquire) {
            Ok(_) => true,
            Err(state) => state == to,
        }
    }
}

/// The answer when blocking work panicked: its text goes to the log only.
fn panicked_work(e: tokio::task::JoinError) -> ApiError {
    tracing::error!("a request's work failed: {e}");
    ApiError::internal("internal error while handling the request (logged)")
}

pub(super) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    })
}

pub(super) fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "not_json",
            "the request body is empty; send JSON",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("not_json", format!("the body is not valid JSON: {e}")))
}

pub(super) fn wrong_type(field: String, expected: &str) -> ApiError {
    ApiError::bad_request("wrong_type", format!("{field} must be {expected}"))
        .with_field(Some(field))
}

/// Most characters of a feedback note.
pub(super) const MAX_NOTES: usize = 10_000;

pub(super) fn label_of(v: Option<&Value>, field: &str) -> Result<Option<u8>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(u8::from(*b))),
        Some(Value::Number(n)) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
            Ok(n.as_u64().map(|x| x as u8))
        }
        Some(_) => Err(wrong_type(field.into(), "true/false or 0/1")),
    }
}

pub(super) fn notes_of(v: Option<&Value>, field: &str) -> Result<String, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(t)) if t.chars().count() <= MAX_NOTES => Ok(t.clone()),
        Some(Value::String(_)) => Err(ApiError::bad_request(
            "too_long",
            format!("{field} is longer than {MAX_NOTES} characters"),
        )
        .with_field(Some(field.into()))),
        Some(_) => Err(wrong_type(field.into(), "a string")),
    }
}

/// A batch of `n` accounts is refused above `max`.
pub(super) fn check_batch_size(n: usize, max: usize) -> Result<(), ApiError> {
    if n > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("the batch has {n} accounts; at most {max} are accepted per request"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Gate;

    #[test]
    fn the_first_of_enter_and_close_wins_for_good() {
        let g = Gate::default();
        assert!(g.enter().is_ok(), "an open gate lets the work in");
        assert!(!g.close(), "work that entered is waited for");
        assert!(g.enter().is_ok(), "entering twice is still in");
        let g = Gate::default();
        assert!(g.close(), "the deadline closes a gate nobody entered");
        let late = g.enter().unwrap_err();
        assert_eq!(
            late.code, "timeout",
            "work after the deadline changes nothing"
        );
        assert!(g.close());
    }
}
