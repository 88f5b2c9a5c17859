//! The routes: the reference API's (`/predict`, `/predict/batch`, `/feedback`,
//! `/model/version`, `/model/info`, `/model/feedback/stats`, `/health`) and ours
//! (`/model/versions`, `/model/versions/{version}/files/{name}`, `/model/rollback`,
//! `/model/experiment`, `/model/retrain`, `/jobs/{id}`, `/metrics`, `/openapi.json`, and
//! for a team `/accounts/{user_id}`, `/accounts/{user_id}/label`, `/review/claims`,
//! `/review/status`, and the decision policies `/policies`, `/policies/{version}`,
//! `/policies/{version}/publish`, `/policies/{version}/shadow`, `/policies/shadow`). Each handler is registered together with its OpenAPI operation
//! (`utoipa_axum::routes!`), so the document lists exactly the routes served.

mod experiments;
mod extract;
mod feedback;
mod jobs;
mod policies;
mod prometheus;
mod review;
mod scoring;
mod versions;

use crate::service::api::{self};
use crate::service::{ApiError, State};
use axum::extract::{Query, Request, State as Ax};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use experiments::*;
use extract::*;
use feedback::*;
use jobs::*;
use policies::*;
use prometheus::*;
use review::*;
use scoring::*;
use std::sync::{Arc, OnceLock};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use versions::*;

type S = Ax<Arc<State>>;

type Q = Result<Query<ScoreQuery>, axum::extract::rejection::QueryRejection>;

/// The document's frame; the operations and schemas come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "spamscope",
        description = "Scores marketplace accounts for spam and scams, explains the scores and takes moderators' feedback. A drop-in for the reference FastAPI service: same paths and field names, more fields."
    ),
    modifiers(&Security),
    tags(
        (name = "scoring", description = "Score accounts (role scorer)"),
        (name = "feedback", description = "Moderators' corrections (role moderator)"),
        (name = "review", description = "A moderation team: confirmed labels, who reviewed what, review claims"),
        (name = "model", description = "The model and its versions"),
        (name = "policies", description = "Decision policies: drafts, the live policy, a shadow"),
        (name = "service", description = "Health, metrics and this document"),
    )
)]
struct ApiDoc;

/// Tokens: `Authorization: Bearer TOKEN` or `X-API-Key: TOKEN`, on every route but
/// `/`, `/health`, `/health/live`, `/health/ready` and `/openapi.json`.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        doc.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("api_key", Vec::<String>::new()),
        ]);
    }
}

/// Every documented route, each handler with its operation.
fn api() -> OpenApiRouter<Arc<State>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(root))
        .routes(routes!(health))
        .routes(routes!(health_live))
        .routes(routes!(health_ready))
        .routes(routes!(predict))
        .routes(routes!(predict_batch))
        .routes(routes!(model_version))
        .routes(routes!(model_info))
        .routes(routes!(feedback))
        .routes(routes!(feedback_stats))
        .routes(routes!(versions))
        .routes(routes!(version_file))
        .routes(routes!(comparison_get, comparison_put))
        .routes(routes!(review_queue))
        .routes(routes!(retrain))
        .routes(routes!(job))
        .routes(routes!(prometheus))
        .routes(routes!(rollback))
        .routes(routes!(experiment_start, experiment_get, experiment_stop))
        .routes(routes!(experiment_promote))
        .routes(routes!(openapi_doc))
        .routes(routes!(confirm_label))
        .routes(routes!(account))
        .routes(routes!(claim, release))
        .routes(routes!(review_status))
        .routes(routes!(policies_list, policies_draft))
        .routes(routes!(shadow_get, shadow_stop))
        .routes(routes!(policy_get))
        .routes(routes!(policy_publish))
        .routes(routes!(shadow_start))
}

/// The OpenAPI 3.1 document of the service (JSON), derived once.
pub fn openapi_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        api()
            .into_openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    })
}

pub fn router(state: Arc<State>) -> Router {
    let (routes, _) = api().split_for_parts();
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// Every request: waits for a slot (at most `max_in_flight` at once), answers within
/// `timeout`, and is logged (one line at debug; errors at info).
async fn guard(Ax(s): S, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // The route's pattern (`/jobs/{id}`), not the raw path: bounded label values.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let start = std::time::Instant::now();
    // The request's trace span (recorded only when tracing is on; see `telemetry`).
    let span = tracing::info_span!(
        target: crate::service::telemetry::TARGET,
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        spamscope.model_version = tracing::field::Empty,
        spamscope.explanation = tracing::field::Empty,
    );
    let limit = s.limits.timeout;
    let deadline = tokio::time::Instant::now() + limit;
    // The slot is waited for until the deadline; the handler then keeps to the deadline
    // itself ([`extract::Call`]), so work that changes something is never cut off after
    // it started (its answer says what it did).
    let res = match tokio::time::timeout_at(deadline, s.slots.clone().acquire_owned()).await {
        Ok(Ok(slot)) => {
            let mut req = req;
            req.extensions_mut().insert(Budget {
                deadline,
                timeout: limit,
                slot: Arc::new(slot),
            });
            tracing::Instrument::instrument(next.run(req), span.clone()).await
        }
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {} s (the service is busy)",
                limit.as_secs_f64()
            ),
        )
        .into_response(),
    };
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let status = res.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    s.metrics.record_request(&route, status, ms / 1e3);
    if status >= 400 {
        tracing::info!("{method} {path} {status} {ms:.2} ms");
    } else {
        tracing::debug!("{method} {path} {status} {ms:.2} ms");
    }
    res
}

fn panicked(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let msg = err
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    tracing::error!("handler panicked: {msg}");
    ApiError::internal("internal error while handling the request (logged)").into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {}", crate::util::text::quote(req.uri().path())),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}",
            req.method(),
            crate::util::text::quote(req.uri().path())
        ),
    )
}

/// The reference's greeting.
#[utoipa::path(get, path = "/", tag = "service", security(()),
    responses((status = 200, body = api::Message)))]
async fn root() -> Json<api::Message> {
    Json(api::Message {
        message: "Spammer Detection API (spamscope)".into(),
    })
}

/// Liveness and the version answering requests (no token needed).
#[utoipa::path(get, path = "/health", tag = "service", security(()),
    responses((status = 200, body = api::Health)))]
async fn health(Ax(s): S) -> Json<api::Health> {
    let a = s.active();
    Json(api::Health {
        status: "healthy".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        model_version: a.manifest.version,
        uptime_seconds: s.started.elapsed().map_or(0.0, |d| d.as_secs_f64()),
    })
}

/// The process runs and answers (for a load balancer's or Kubernetes' liveness probe;
/// no token needed).
#[utoipa::path(get, path = "/health/live", tag = "service", security(()),
    responses((status = 200, body = api::Message)))]
async fn health_live() -> Json<api::Message> {
    Json(api::Message {
        message: "live".into(),
    })
}

/// Whether this replica should get traffic: a model is loaded and the store answers
/// (the shared database within 2 s). 503 otherwise, with the reason (no token needed).
#[utoipa::path(get, path = "/health/ready", tag = "service", security(()),
    responses((status = 200, body = api::Ready), (status = 503, body = api::Ready)))]
async fn health_ready(Ax(s): S) -> Response {
    let model_version = s.active().manifest.version;
    let store = s.registry.backend_name();
    let s2 = s.clone();
    let check =
        tokio::task::spawn_blocking(move || s2.registry.check_ready().map_err(|e| e.to_string()));
    let reason = match tokio::time::timeout(std::time::Duration::from_secs(2), check).await {
        Ok(Ok(Ok(()))) => None,
        Ok(Ok(Err(e))) => Some(crate::service::error::without_paths(&e)),
        Ok(Err(_)) => Some("the check failed".to_string()),
        Err(_) => Some("the store did not answer within 2 s".to_string()),
    };
    let code = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let status = if reason.is_none() {
        "ready"
    } else {
        "not ready"
    };
    (
        code,
        Json(api::Ready {
            status: status.into(),
            model_version,
            store: store.into(),
            reason,
        }),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "service", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi_doc() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}
