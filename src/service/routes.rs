//! The routes: the reference API's (`/predict`, `/predict/batch`, `/feedback`,
//! `/model/version`, `/model/info`, `/model/feedback/stats`, `/health`) and ours
//! (`/model/versions`, `/model/versions/{version}/files/{name}`, `/model/rollback`,
//! `/model/experiment`, `/model/retrain`, `/jobs/{id}`, `/metrics`, `/openapi.json`, and
//! for a team `/accounts/{user_id}`, `/accounts/{user_id}/label`, `/review/claims`,
//! `/review/status`). Each handler is registered together with its OpenAPI operation
//! (`utoipa_axum::routes!`), so the document lists exactly the routes served.

use super::api::{self, ErrorBody, PredictRequest, PredictResponse};
use super::{Active, ApiError, Caller, Running, State};
use crate::data::catalog::{Kind, catalog};
use crate::ops::experiment::Arm;
use crate::ops::predict::{Account, Explain, Prediction};
use crate::store::predictions::{ExperimentTag, PredictionRecord, new_prediction_id};
use crate::store::tokens::Role;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State as Ax};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
        (name = "service", description = "Health, metrics and this document"),
    )
)]
struct ApiDoc;

/// Tokens: `Authorization: Bearer TOKEN` or `X-API-Key: TOKEN`, on every route but
/// `/`, `/health` and `/openapi.json`.
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

/// What every route that needs a token may answer besides its own responses.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: the handlers answer these through ApiError
enum AuthErrors {
    /// No token, or one that is not known
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The token's role may not do this
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// Every documented route, each handler with its operation.
fn api() -> OpenApiRouter<Arc<State>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(root))
        .routes(routes!(health))
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
    let limit = s.limits.timeout;
    let res = tokio::time::timeout(limit, async {
        let _slot = s.slots.acquire().await;
        next.run(req).await
    })
    .await;
    let res = match res {
        Ok(r) => r,
        Err(_) => ApiError::new(
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

/// The token of a request: `Authorization: Bearer TOKEN` or `X-API-Key: TOKEN`.
fn secret(h: &HeaderMap) -> Option<&str> {
    if let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        return Some(v.strip_prefix("Bearer ").unwrap_or(v).trim());
    }
    h.get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    })
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "not_json",
            "the request body is empty; send JSON",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("not_json", format!("the body is not valid JSON: {e}")))
}

fn wrong_type(field: String, expected: &str) -> ApiError {
    ApiError::bad_request("wrong_type", format!("{field} must be {expected}"))
        .with_field(Some(field))
}

/// `?explain=K|exact|exact:K|none` and `?strict=true|false`.
#[derive(Debug, Clone, Copy)]
struct Options {
    explain: Explain,
    strict: bool,
}

const DEFAULT_EXPLAIN: usize = 3;

/// The scoring routes' query.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScoreQuery {
    /// Contributions per account: a count 0..51 (path attribution), `exact` or
    /// `exact:K` (TreeSHAP), or `none`. Default 3.
    explain: Option<String>,
    /// `true`: refuse an account with missing features (400), as the reference did.
    /// Default `false`: impute and list them in `imputed`.
    #[param(value_type = Option<bool>)]
    strict: Option<String>,
}

fn options(q: Q, max_explain: usize) -> Result<Options, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let bad = |field: &str, m: String| {
        ApiError::bad_request("bad_query", m).with_field(Some(field.into()))
    };
    let explain = match q.explain.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
        None => Explain::Top(DEFAULT_EXPLAIN),
        Some(s) if s == "none" || s == "false" => Explain::None,
        Some(s) if s == "exact" => Explain::Exact(DEFAULT_EXPLAIN),
        Some(s) => {
            let (exact, k) = match s.strip_prefix("exact:") {
                Some(k) => (true, k.to_string()),
                None => (false, s.clone()),
            };
            let k: usize = k.parse().map_err(|_| {
                bad(
                    "explain",
                    format!(
                        "explain must be a count 0..{max_explain}, exact or exact:K (got {})",
                        crate::util::text::quote(&s)
                    ),
                )
            })?;
            if k > max_explain {
                return Err(bad(
                    "explain",
                    format!("explain must be at most {max_explain}"),
                ));
            }
            if exact {
                Explain::Exact(k)
            } else {
                Explain::Top(k)
            }
        }
    };
    let strict = match q.strict.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
        None => false,
        Some(s) if s == "true" || s == "1" => true,
        Some(s) if s == "false" || s == "0" => false,
        Some(s) => {
            return Err(bad(
                "strict",
                format!(
                    "strict must be true or false (got {})",
                    crate::util::text::quote(&s)
                ),
            ));
        }
    };
    Ok(Options { explain, strict })
}

/// A `{"features": {...}, "user_id"?}` object; `at` prefixes field names in errors.
fn parse_request(v: &Value, at: &str, strict: bool) -> Result<(Account, Option<String>), ApiError> {
    let Some(obj) = v.as_object() else {
        return Err(wrong_type(
            format!("{at}body"),
            "an object with \"features\"",
        ));
    };
    let Some(features) = obj.get("features") else {
        return Err(ApiError::bad_request(
            "missing_field",
            "the request has no \"features\" object",
        )
        .with_field(Some(format!("{at}features"))));
    };
    let Some(features) = features.as_object() else {
        return Err(wrong_type(
            format!("{at}features"),
            "an object of feature: number",
        ));
    };
    let mut pairs: Vec<(&str, f64)> = Vec::with_capacity(features.len());
    for (k, v) in features {
        match v {
            Value::Number(n) => match n.as_f64() {
                Some(x) => pairs.push((k.as_str(), x)),
                None => return Err(wrong_type(format!("{at}features.{k}"), "a finite number")),
            },
            // Explicitly missing: imputed like an absent key.
            Value::Null => {
                if crate::ops::predict::resolve(k).is_none() {
                    return Err(ApiError::from(crate::ops::predict::FeatureError::Unknown {
                        name: crate::util::text::clip(k),
                    }));
                }
            }
            _ => return Err(wrong_type(format!("{at}features.{k}"), "a number")),
        }
    }
    let account = crate::ops::predict::account(pairs, strict).map_err(|e| {
        let mut err = ApiError::from(e);
        err.field = err.field.map(|f| format!("{at}{f}"));
        err
    })?;
    let user_id = match obj.get("user_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 256 => {
            Some(s.trim().to_string())
        }
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            return Err(wrong_type(
                format!("{at}user_id"),
                "a non-empty string of at most 256 bytes or a number",
            ));
        }
    };
    Ok((account, user_id))
}

/// Scores, logs the prediction, and builds the response object. During an experiment
/// both versions score the account: the arm ([`crate::ops::experiment::assign`])
/// answers, and the other version's probability is logged beside the answer.
fn score(
    s: &State,
    active: &Active,
    running: Option<&Running>,
    account: &Account,
    user_id: Option<String>,
    caller: &Caller,
    explain: Explain,
) -> PredictResponse {
    let running = running.filter(|r| r.candidate.manifest.version != active.manifest.version);
    let (answer, other) = match running {
        None => (active, None),
        Some(r) => {
            let arm = crate::ops::experiment::assign(
                &r.experiment,
                user_id.as_deref(),
                crate::ops::experiment::random_unit,
            );
            match arm {
                Arm::Active => (active, Some((r, &r.candidate))),
                Arm::Candidate => (&r.candidate, Some((r, active))),
            }
        }
    };
    let p = crate::ops::predict::predict(&answer.model, &answer.manifest, account, explain);
    s.metrics.record_verdict(p.is_spammer);
    let experiment = other.map(|(r, o)| ExperimentTag {
        experiment: r.experiment.id.clone(),
        other_version: o.manifest.version,
        other_probability: o.model.predict_one(&account.values),
    });
    let id = new_prediction_id();
    s.log.append(PredictionRecord {
        id: id.clone(),
        created_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        version: p.version,
        features: account.values.clone(),
        probability: p.probability,
        caller: caller.name.clone(),
        user_id,
        experiment,
    });
    response(p, account, &answer.model.imputer.medians, id)
}

/// The answer; a contribution's value is the one scored (the median when imputed).
fn response(p: Prediction, account: &Account, medians: &[f64], id: String) -> PredictResponse {
    let cat = catalog();
    PredictResponse {
        prediction: u8::from(p.is_spammer),
        probability: p.probability,
        is_spammer: p.is_spammer,
        risk_factors: p.risk_factors,
        prediction_id: id,
        model_version: p.version,
        threshold: p.threshold,
        contributions: p
            .contributions
            .iter()
            .map(|&(f, c)| api::Contribution {
                feature: cat.features[f].id.clone(),
                name: cat.features[f].name.clone(),
                value: match account.values[f] {
                    v if v.is_nan() => medians.get(f).copied().unwrap_or(v),
                    v => v,
                },
                contribution: c,
            })
            .collect(),
        explanation_method: p.method.map(|m| m.name().to_string()),
        imputed: account
            .missing
            .iter()
            .map(|&i| cat.features[i].id.clone())
            .collect(),
    }
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

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "service", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi_doc() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

/// Scores one account (role scorer). Missing features are imputed with the version's
/// medians and listed in `imputed` (`?strict=true` refuses them); every prediction is
/// logged under its `prediction_id`.
#[utoipa::path(post, path = "/predict", tag = "scoring", params(ScoreQuery),
    request_body = PredictRequest,
    responses(
        (status = 200, body = PredictResponse),
        (status = 400, description = "Not JSON, wrong type, unknown feature, value out of the catalog's bounds, missing features with strict", body = ErrorBody),
        AuthErrors,
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "Timed out waiting for the scoring pool", body = ErrorBody),
    ))]
async fn predict(
    Ax(s): S,
    h: HeaderMap,
    q: Q,
    body: Body,
) -> Result<Json<PredictResponse>, ApiError> {
    let caller = s.authorize(secret(&h), Role::Scorer)?;
    let o = options(q, s.limits.max_explain)?;
    let bytes = read_body(body, s.limits.max_body).await?;
    let v = parse_json(&bytes)?;
    let (account, user_id) = parse_request(&v, "", o.strict)?;
    let active = s.active();
    let running = s.experiment();
    if matches!(o.explain, Explain::Exact(_)) {
        // Exact explanations take milliseconds: off the async workers.
        let s2 = s.clone();
        let out = blocking(move || {
            Ok::<_, ApiError>(score(
                &s2,
                &active,
                running.as_deref(),
                &account,
                user_id,
                &caller,
                o.explain,
            ))
        })
        .await?;
        return Ok(Json(out));
    }
    Ok(Json(score(
        &s,
        &active,
        running.as_deref(),
        &account,
        user_id,
        &caller,
        o.explain,
    )))
}

/// Scores many accounts on one version (role scorer): a JSON array of `/predict`
/// bodies answered by an array of `/predict` answers, or a `text/csv` body with the data
/// schema (`label` optional) answered with the `score` command's CSV. At most 10,000
/// accounts and 16 MiB.
#[utoipa::path(post, path = "/predict/batch", tag = "scoring", params(ScoreQuery),
    request_body(content(
        (Vec<PredictRequest> = "application/json"),
        (String = "text/csv", example = "label,user_id,X1,...,X51"),
    )),
    responses(
        (status = 200, content(
            (Vec<PredictResponse> = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "As /predict, with the item's index in `field` (`[3].features.X7`), or a bad CSV", body = ErrorBody),
        AuthErrors,
        (status = 413, description = "Body or batch too large", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn predict_batch(Ax(s): S, h: HeaderMap, q: Q, body: Body) -> Result<Response, ApiError> {
    let caller = s.authorize(secret(&h), Role::Scorer)?;
    let o = options(q, s.limits.max_explain)?;
    let bytes = read_body(body, s.limits.max_body).await?;
    let csv = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/csv"));
    if csv {
        return csv_batch(s, caller, o, bytes).await;
    }
    let v = parse_json(&bytes)?;
    let Some(items) = v.as_array() else {
        return Err(wrong_type(
            "body".into(),
            "a JSON array of {\"features\": {...}} objects",
        ));
    };
    check_batch_size(items.len(), s.limits.max_batch)?;
    let accounts = items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_request(item, &format!("[{i}]."), o.strict))
        .collect::<Result<Vec<_>, _>>()?;
    // One active version (and experiment) for the whole batch.
    let active = s.active();
    let running = s.experiment();
    let s2 = s.clone();
    let out = blocking(move || {
        Ok::<_, ApiError>(
            accounts
                .into_iter()
                .map(|(a, user)| {
                    score(
                        &s2,
                        &active,
                        running.as_deref(),
                        &a,
                        user,
                        &caller,
                        o.explain,
                    )
                })
                .collect::<Vec<PredictResponse>>(),
        )
    })
    .await?;
    Ok(Json(out).into_response())
}

/// A `text/csv` batch with the data schema (`label` optional): answered with the
/// `score` command's CSV columns; every row is logged like a JSON prediction.
async fn csv_batch(
    s: Arc<State>,
    caller: Caller,
    o: Options,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let s2 = s.clone();
    let text = blocking(move || -> Result<String, ApiError> {
        let d = crate::data::Dataset::parse_csv(bytes.to_vec(), "request body")
            .map_err(|e| ApiError::bad_request("bad_csv", e.to_string()))?;
        check_batch_size(d.n_rows(), s2.limits.max_batch)?;
        let a = s2.active();
        let running = s2
            .experiment()
            .filter(|r| r.candidate.manifest.version != a.manifest.version);
        let score_with = |v: &Active| {
            let (k, method) = match o.explain {
                Explain::None => (0, crate::model::explain::Method::PathAttribution),
                Explain::Top(k) => (k, crate::model::explain::Method::PathAttribution),
                Explain::Exact(k) => (k, v.model.detail_method()),
            };
            crate::ops::score::score_batch(
                &d,
                &v.model,
                v.manifest.version,
                v.manifest.threshold,
                k,
                method,
                &crate::util::progress::NoProgress,
            )
        };
        let base = score_with(&a)?;
        // During an experiment both versions score every row; each row's arm answers.
        let (b, beside) = match &running {
            None => (base, None),
            Some(r) => {
                let cand = score_with(&r.candidate)?;
                let take: Vec<bool> = (0..d.n_rows())
                    .map(|i| {
                        let user = d.user_ids[i].to_string();
                        crate::ops::experiment::assign(
                            &r.experiment,
                            Some(user.as_str()),
                            crate::ops::experiment::random_unit,
                        ) == Arm::Candidate
                    })
                    .collect();
                let mixed = base.mix(&cand, &take)?;
                let other: Vec<(u32, f64)> = take
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| {
                        let o = if c { &base } else { &cand };
                        (o.version, o.probability[i])
                    })
                    .collect();
                (mixed, Some((r.experiment.id.clone(), other)))
            }
        };
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        for i in 0..d.n_rows() {
            s2.metrics.record_verdict(b.is_spammer(i));
            s2.log.append(PredictionRecord {
                id: new_prediction_id(),
                created_at: now.clone(),
                version: b.version_of(i),
                features: d.row(i),
                probability: b.probability[i],
                caller: caller.name.clone(),
                user_id: Some(d.user_ids[i].to_string()),
                experiment: beside.as_ref().map(|(id, other)| ExperimentTag {
                    experiment: id.clone(),
                    other_version: other[i].0,
                    other_probability: other[i].1,
                }),
            });
        }
        Ok(crate::ops::score::batch_csv(&d, &b, None))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response())
}

/// The active version: its number, training time and holdout metrics (role scorer).
#[utoipa::path(get, path = "/model/version", tag = "model",
    responses((status = 200, body = api::ModelVersion), AuthErrors))]
async fn model_version(Ax(s): S, h: HeaderMap) -> Result<Json<api::ModelVersion>, ApiError> {
    s.authorize(secret(&h), Role::Scorer)?;
    let a = s.active();
    Ok(Json(api::ModelVersion {
        version: a.manifest.version,
        last_updated: a.manifest.created_at.clone(),
        metrics: (&a.manifest.metrics).into(),
        threshold: a.manifest.threshold,
        model_kind: a.manifest.model_kind(),
    }))
}

/// The reference's `type` of a feature: flags are `boolean`, ordinal codes with a few
/// named levels `categorical`, counts, amounts and longer scores `numeric`.
pub fn reference_type(f: &crate::data::catalog::Feature) -> api::FeatureType {
    match f.kind {
        Kind::Flag => api::FeatureType::Boolean,
        Kind::Ordinal if f.levels.len() <= 5 => api::FeatureType::Categorical,
        _ => api::FeatureType::Numeric,
    }
}

/// The feature catalog with the active version's importances and medians, and its
/// metrics (role scorer): what the reference's client builds its form from.
#[utoipa::path(get, path = "/model/info", tag = "model",
    responses((status = 200, body = api::ModelInfo), AuthErrors))]
async fn model_info(Ax(s): S, h: HeaderMap) -> Result<Json<api::ModelInfo>, ApiError> {
    s.authorize(secret(&h), Role::Scorer)?;
    let a = s.active();
    let cat = catalog();
    let importance = a.model.importance();
    let feature_mapping: BTreeMap<String, api::FeatureInfo> = cat
        .features
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let info = api::FeatureInfo {
                name: f.name.clone(),
                label: f.label.clone(),
                description: f.description.clone(),
                category: f.category.clone(),
                kind: reference_type(f),
                importance: importance.get(i).copied().unwrap_or(0.0),
                min: f.min,
                max: f.max,
                levels: f.levels.clone(),
                median: a.model.imputer.medians.get(i).copied(),
            };
            (f.id.clone(), info)
        })
        .collect();
    let mut categories = cat.categories.clone();
    categories.sort();
    Ok(Json(api::ModelInfo {
        metrics: (&a.manifest.metrics).into(),
        feature_mapping,
        categories,
        model_version: a.manifest.version,
    }))
}

/// Every version in the registry, newest last (role moderator: the app's version list).
#[utoipa::path(get, path = "/model/versions", tag = "model",
    responses((status = 200, body = api::Versions), AuthErrors))]
async fn versions(Ax(s): S, h: HeaderMap) -> Result<Json<api::Versions>, ApiError> {
    s.authorize(secret(&h), Role::Moderator)?;
    let s2 = s.clone();
    let rows = blocking(move || -> Result<Vec<api::VersionRow>, crate::Error> {
        let active = s2.registry.active()?;
        Ok(s2
            .registry
            .list()?
            .into_iter()
            .map(|e| match e.manifest {
                Ok(m) => api::VersionRow {
                    version: m.version,
                    status: m.status_name(active).to_string(),
                    parent: m.parent,
                    created_at: Some(m.created_at.clone()),
                    active: Some(Some(m.version) == active),
                    model_kind: Some(m.model_kind()),
                    metrics: Some((&m.metrics).into()),
                    feedback_used: Some(m.feedback_used),
                    reason: m
                        .gate
                        .as_ref()
                        .map(|g| g.reason.clone())
                        .or(m.status_reason.clone()),
                    error: None,
                },
                Err(err) => api::VersionRow {
                    version: e.version,
                    status: "unreadable".into(),
                    error: Some(err.to_string()),
                    ..Default::default()
                },
            })
            .collect())
    })
    .await?;
    Ok(Json(api::Versions {
        versions: rows,
        serving: s.active().manifest.version,
    }))
}

/// One file of a version (role moderator), for the app's local copy of the team's
/// model: `manifest.ron` (which holds the other two files' SHA-256), `model.bin` or
/// `holdout.bin`, checked against the manifest before it is sent. The
/// `X-Checksum-Sha256` header carries the checksum of the bytes sent.
#[utoipa::path(get, path = "/model/versions/{version}/files/{name}", tag = "model",
    params(
        ("version" = u32, Path, description = "A version number of `GET /model/versions`"),
        ("name" = String, Path, description = "`manifest.ron`, `model.bin` or `holdout.bin`"),
    ),
    responses(
        (status = 200, content_type = "application/octet-stream", body = Vec<u8>,
            headers(("x-checksum-sha256" = String, description = "SHA-256 of the body, hex"))),
        (status = 400, body = ErrorBody),
        AuthErrors,
        (status = 404, description = "No such version or file", body = ErrorBody),
    ))]
async fn version_file(
    Ax(s): S,
    h: HeaderMap,
    axum::extract::Path((version, name)): axum::extract::Path<(String, String)>,
) -> Result<Response, ApiError> {
    use crate::store::layout::{HOLDOUT_FILE, MANIFEST_FILE, MODEL_FILE};
    s.authorize(secret(&h), Role::Moderator)?;
    let v: u32 = version.parse().map_err(|_| {
        ApiError::bad_request("bad_path", "the version must be a number")
            .with_field(Some("version".into()))
    })?;
    if ![MANIFEST_FILE, MODEL_FILE, HOLDOUT_FILE].contains(&name.as_str()) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_file",
            format!(
                "a version has the files {MANIFEST_FILE}, {MODEL_FILE} and {HOLDOUT_FILE}, not {}",
                crate::util::text::quote(&name)
            ),
        )
        .with_field(Some("name".into())));
    }
    let s2 = s.clone();
    let bytes = blocking(move || match s2.registry.version_file(v, &name) {
        Err(crate::store::StoreError::NoSuchVersion(_)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_version",
            format!("version {v} does not exist"),
        )),
        other => other.map_err(|e| ApiError::internal(e.to_string())),
    })
    .await?;
    let sum = crate::util::hash::sha256_hex(&bytes);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::HeaderName::from_static("x-checksum-sha256"), sum),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /review/queue`'s query.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrafficQuery {
    /// Accounts to return, 1 to 10,000 (default 2,000).
    limit: Option<usize>,
}

/// The team's review queue (role moderator): the accounts this service scored most
/// recently, newest first, one per user id, with their values, so a moderator's app
/// can rank and explain them locally.
#[utoipa::path(get, path = "/review/queue", tag = "review", params(TrafficQuery),
    responses(
        (status = 200, body = api::TrafficQueue),
        (status = 400, body = ErrorBody),
        AuthErrors,
    ))]
async fn review_queue(
    Ax(s): S,
    h: HeaderMap,
    q: Result<Query<TrafficQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<api::TrafficQueue>, ApiError> {
    s.authorize(secret(&h), Role::Moderator)?;
    let limit = match q {
        Ok(Query(q)) => q.limit.unwrap_or(2_000),
        Err(e) => {
            return Err(
                ApiError::bad_request("bad_query", e.body_text()).with_field(Some("limit".into()))
            );
        }
    };
    let s2 = s.clone();
    let rows = blocking(move || {
        let _ = s2.log.flush();
        crate::ops::review::recent_traffic(&s2.log, limit)
    })
    .await?;
    Ok(Json(api::TrafficQueue {
        accounts: rows
            .into_iter()
            .map(|r| api::TrafficAccount {
                user_id: r.user_id.clone().unwrap_or_else(|| r.id.clone()),
                prediction_id: r.id,
                created_at: r.created_at,
                model_version: r.version,
                probability: r.probability,
                features: r
                    .features
                    .iter()
                    .map(|v| v.is_finite().then_some(*v))
                    .collect(),
            })
            .collect(),
    }))
}

/// The registry's latest model comparison (role moderator): the table, the best
/// models and the ROC curves the app's Compare tab shows (the JSON of
/// `comparisons/latest.json`).
#[utoipa::path(get, path = "/model/comparison", tag = "model",
    responses(
        (status = 200, description = "The latest comparison", content_type = "application/json", body = Object),
        AuthErrors,
        (status = 404, description = "No comparison was run here", body = ErrorBody),
    ))]
async fn comparison_get(Ax(s): S, h: HeaderMap) -> Result<Response, ApiError> {
    s.authorize(secret(&h), Role::Moderator)?;
    let s2 = s.clone();
    let saved = blocking(move || crate::ops::compare::load_latest(s2.registry.root())).await?;
    match saved {
        Some(c) => Ok(Json(c).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_comparison",
            "no model comparison has been run on this registry (`spamscope compare`, or the app's Compare tab)",
        )),
    }
}

/// Keeps a comparison run elsewhere (an app on this service) as the registry's latest
/// (role admin): the same JSON `GET /model/comparison` answers.
#[utoipa::path(put, path = "/model/comparison", tag = "model",
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, body = api::Message),
        (status = 400, body = ErrorBody),
        AuthErrors,
        (status = 413, body = ErrorBody),
    ))]
async fn comparison_put(
    Ax(s): S,
    h: HeaderMap,
    body: Body,
) -> Result<Json<api::Message>, ApiError> {
    let caller = s.authorize(secret(&h), Role::Admin)?;
    let bytes = read_body(body, s.limits.max_body).await?;
    let saved: crate::ops::compare::Saved = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "not_a_comparison",
            format!(
                "the body is not a saved comparison: {}",
                crate::util::text::clip(&e.to_string())
            ),
        )
    })?;
    let s2 = s.clone();
    let rows = saved.rows.len();
    blocking(move || crate::ops::compare::save(s2.registry.root(), &saved)).await?;
    tracing::info!("{} stored a comparison of {rows} models", caller.name);
    Ok(Json(api::Message {
        message: format!("comparison of {rows} models kept as this registry's latest"),
    }))
}

/// Makes an earlier version active (role admin); new requests use it within a second.
#[utoipa::path(post, path = "/model/rollback", tag = "model",
    request_body = api::RollbackRequest,
    responses(
        (status = 200, body = api::RollbackResponse),
        (status = 400, body = ErrorBody),
        AuthErrors,
        (status = 404, description = "No such version", body = ErrorBody),
    ))]
async fn rollback(
    Ax(s): S,
    h: HeaderMap,
    body: Body,
) -> Result<Json<api::RollbackResponse>, ApiError> {
    s.authorize(secret(&h), Role::Admin)?;
    let bytes = read_body(body, s.limits.max_body).await?;
    let v = parse_json(&bytes)?;
    let to = match v.get("to") {
        Some(Value::Number(n)) => n.as_u64().filter(|&n| n >= 1 && n <= u64::from(u32::MAX)),
        _ => None,
    }
    .ok_or_else(|| wrong_type("to".into(), "a version number (1 or more)"))? as u32;
    let s2 = s.clone();
    blocking(move || -> Result<(), ApiError> {
        match s2.registry.rollback(to) {
            Ok(_) => {}
            Err(crate::store::StoreError::NoSuchVersion(v)) => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_such_version",
                    format!("version {v} does not exist"),
                )
                .with_field(Some("to".into())));
            }
            Err(e) => return Err(ApiError::from(crate::Error::from(e))),
        }
        s2.refresh_active().map_err(ApiError::from)
    })
    .await?;
    let a = s.active();
    Ok(Json(api::RollbackResponse {
        model_version: a.manifest.version,
        message: format!("version {to} is active"),
    }))
}

/// The running experiment's status (and numbers) for a response.
fn experiment_status(
    s: &State,
    e: Option<&crate::ops::experiment::Experiment>,
    running: bool,
    message: String,
) -> Result<api::ExperimentStatus, ApiError> {
    let active = s.active().manifest.version;
    Ok(api::ExperimentStatus {
        running,
        experiment: e.map(|e| api::ExperimentInfo::new(e, active)),
        stats: match e {
            Some(e) => Some(s.experiment_stats(e)?.into()),
            None => None,
        },
        message,
    })
}

/// Starts a shadow or canary experiment (role admin): `version` runs beside the active
/// version. Shadow: both score every request, the active one answers. Canary: the
/// candidate answers `share` of the users (sticky by `user_id`; requests without one
/// at random). Every answer names the version that gave it; both scores are logged.
#[utoipa::path(post, path = "/model/experiment", tag = "model",
    request_body = api::ExperimentRequest,
    responses(
        (status = 200, description = "Started", body = api::ExperimentStatus),
        (status = 400, description = "Bad mode or share, or the version is the active one", body = ErrorBody),
        AuthErrors,
        (status = 404, description = "No such version", body = ErrorBody),
        (status = 409, description = "An experiment is already running", body = ErrorBody),
    ))]
async fn experiment_start(
    Ax(s): S,
    h: HeaderMap,
    body: Body,
) -> Result<Json<api::ExperimentStatus>, ApiError> {
    let caller = s.authorize(secret(&h), Role::Admin)?;
    let bytes = read_body(body, s.limits.max_body).await?;
    let v = parse_json(&bytes)?;
    if !v.is_object() {
        return Err(wrong_type("body".into(), "an object"));
    }
    let version = match v.get("version") {
        Some(Value::Number(n)) => n.as_u64().filter(|&n| n >= 1 && n <= u64::from(u32::MAX)),
        _ => None,
    }
    .ok_or_else(|| wrong_type("version".into(), "a version number (1 or more)"))?
        as u32;
    let mode = match v.get("mode") {
        Some(Value::String(m)) => crate::ops::experiment::Mode::parse(m)?,
        _ => return Err(wrong_type("mode".into(), "\"shadow\" or \"canary\"")),
    };
    let share = match v.get("share") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(_) if mode == crate::ops::experiment::Mode::Shadow => None,
        Some(_) => {
            return Err(wrong_type("share".into(), "a number above 0 and at most 1"));
        }
    };
    let req = crate::ops::experiment::StartRequest {
        version,
        mode,
        share,
    };
    let s2 = s.clone();
    let out = blocking(move || -> Result<api::ExperimentStatus, ApiError> {
        let e = crate::ops::experiment::start(&s2.registry, &req, &caller.name)?;
        if let Err(err) = s2.refresh_experiment() {
            // The candidate does not load: no experiment, on disk either.
            let _ = crate::ops::experiment::stop(&s2.registry);
            return Err(err.into());
        }
        let msg = format!(
            "{} of version {} beside version {}",
            e.mode.name(),
            e.candidate,
            e.baseline
        );
        experiment_status(&s2, Some(&e), true, msg)
    })
    .await?;
    Ok(Json(out))
}

/// The running experiment with its numbers (role moderator): requests per arm, the
/// versions' agreement, score histograms and means, and each version's accuracy on
/// accounts moderators labelled. `running: false` when none runs.
#[utoipa::path(get, path = "/model/experiment", tag = "model",
    responses((status = 200, body = api::ExperimentStatus), AuthErrors))]
async fn experiment_get(Ax(s): S, h: HeaderMap) -> Result<Json<api::ExperimentStatus>, ApiError> {
    s.authorize(secret(&h), Role::Moderator)?;
    let s2 = s.clone();
    let out = blocking(move || -> Result<api::ExperimentStatus, ApiError> {
        let e = crate::ops::experiment::load(&s2.registry)?;
        let msg = match &e {
            Some(e) => format!("{} of version {}", e.mode.name(), e.candidate),
            None => "no experiment is running".into(),
        };
        experiment_status(&s2, e.as_ref(), e.is_some(), msg)
    })
    .await?;
    Ok(Json(out))
}

/// Stops the running experiment (role admin): the active version answers every request
/// again. Answers with the experiment's final numbers.
#[utoipa::path(delete, path = "/model/experiment", tag = "model",
    responses(
        (status = 200, body = api::ExperimentStatus),
        AuthErrors,
        (status = 404, description = "No experiment is running", body = ErrorBody),
    ))]
async fn experiment_stop(Ax(s): S, h: HeaderMap) -> Result<Json<api::ExperimentStatus>, ApiError> {
    s.authorize(secret(&h), Role::Admin)?;
    let s2 = s.clone();
    let out = blocking(move || -> Result<api::ExperimentStatus, ApiError> {
        let e = crate::ops::experiment::stop(&s2.registry)?;
        s2.refresh_experiment()?;
        let msg = format!("experiment {} stopped", e.id);
        experiment_status(&s2, Some(&e), false, msg)
    })
    .await?;
    Ok(Json(out))
}

/// Makes the experiment's candidate the active version (role admin; the rollback step
/// of `/model/rollback`) and stops the experiment.
#[utoipa::path(post, path = "/model/experiment/promote", tag = "model",
    responses(
        (status = 200, body = api::ExperimentPromoted),
        AuthErrors,
        (status = 404, description = "No experiment is running", body = ErrorBody),
    ))]
async fn experiment_promote(
    Ax(s): S,
    h: HeaderMap,
) -> Result<Json<api::ExperimentPromoted>, ApiError> {
    s.authorize(secret(&h), Role::Admin)?;
    let s2 = s.clone();
    let out = blocking(move || -> Result<api::ExperimentPromoted, ApiError> {
        let (e, m) = crate::ops::experiment::promote(&s2.registry)?;
        s2.refresh_active()?;
        s2.refresh_experiment()?;
        Ok(api::ExperimentPromoted {
            model_version: m.version,
            message: format!(
                "version {} is active; experiment {} stopped",
                m.version, e.id
            ),
            experiment: api::ExperimentInfo::new(&e, m.version),
        })
    })
    .await?;
    Ok(Json(out))
}

/// RFC 3339 with an explicit offset (`+00:00`), which every Python `fromisoformat`
/// reads (the reference's client parses `last_retrain` with it).
fn iso(t: &str) -> String {
    match t.strip_suffix('Z') {
        Some(head) => format!("{head}+00:00"),
        None => t.to_string(),
    }
}

/// Feedback counts and the model's agreement with moderators (role scorer).
#[utoipa::path(get, path = "/model/feedback/stats", tag = "feedback",
    responses((status = 200, body = api::FeedbackStats), AuthErrors))]
async fn feedback_stats(Ax(s): S, h: HeaderMap) -> Result<Json<api::FeedbackStats>, ApiError> {
    s.authorize(secret(&h), Role::Scorer)?;
    let s2 = s.clone();
    let out = blocking(move || -> Result<api::FeedbackStats, crate::Error> {
        let store = crate::store::feedback::FeedbackStore::open_in(s2.registry.root())?;
        let stats = store.stats()?;
        let (unlinked, unlinked_correct) = store.unlinked_counts()?;
        let judged: u64 = stats.by_version.iter().map(|v| v.judged).sum::<u64>() + unlinked;
        let correct: u64 =
            stats.by_version.iter().map(|v| v.agreed).sum::<u64>() + unlinked_correct;
        // Without a retrain, the active version's training (always a time, as the
        // reference's client expects).
        let last =
            last_retrain(&s2.registry)?.unwrap_or_else(|| s2.active().manifest.created_at.clone());
        Ok(api::FeedbackStats {
            total_feedback: stats.total + unlinked,
            correct_predictions: correct,
            accuracy: if judged > 0 {
                correct as f64 / judged as f64
            } else {
                0.0
            },
            unlinked_feedback: unlinked,
            last_retrain: iso(&last),
            by_version: stats
                .by_version
                .iter()
                .map(|v| api::VersionFeedback {
                    model_version: v.version,
                    total: v.total,
                    correct: v.agreed,
                })
                .collect(),
            by_moderator: {
                let stats = store.moderator_stats()?;
                let trust = crate::ops::feedback::trust(&stats);
                stats
                    .into_iter()
                    .zip(trust)
                    .map(|(m, trust)| {
                        let share = |k: u64, n: u64| (n > 0).then(|| k as f64 / n as f64);
                        api::ModeratorFeedback {
                            agreement_with_model: share(m.agreed_with_model, m.judged),
                            agreement_with_others: share(m.agreed_with_others, m.pairs_with_others),
                            moderator: m.moderator,
                            total: m.records,
                            pairs_with_others: m.pairs_with_others,
                            agreement_with_confirmed: share(m.agreed_with_confirmed, m.confirmed),
                            confirmed: m.confirmed,
                            trust,
                        }
                    })
                    .collect()
            },
        })
    })
    .await?;
    Ok(Json(out))
}

/// Most characters of a feedback note.
const MAX_NOTES: usize = 10_000;

fn label_of(v: Option<&Value>, field: &str) -> Result<Option<u8>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(u8::from(*b))),
        Some(Value::Number(n)) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
            Ok(n.as_u64().map(|x| x as u8))
        }
        Some(_) => Err(wrong_type(field.into(), "true/false or 0/1")),
    }
}

fn notes_of(v: Option<&Value>, field: &str) -> Result<String, ApiError> {
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

/// A moderator's correction (role moderator): the reference's `{"prediction_id",
/// "is_correct", "actual_label"?, "feedback_notes"?}` (the features come from the
/// prediction log), or `{"features", "label", "notes"?}` for an account scored
/// elsewhere. An unknown prediction id is accepted (202, `linked: false`): it counts in
/// the statistics but cannot teach the model.
#[utoipa::path(post, path = "/feedback", tag = "feedback",
    request_body = api::FeedbackRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 128 printable ASCII characters: a replay with the same key and body by the same caller stores nothing and gets the first answer (header `Idempotent-Replayed: true`); the same key with another body is refused (409). Kept 30 days.")),
    responses(
        (status = 200, description = "Stored with its features (or a replay of it)", body = api::FeedbackResponse),
        (status = 202, description = "Unknown prediction id: stored without features (or a replay of it)", body = api::FeedbackResponse),
        (status = 400, body = ErrorBody),
        AuthErrors,
        (status = 409, description = "The Idempotency-Key was used before with another body", body = ErrorBody),
        (status = 413, body = ErrorBody),
    ))]
async fn feedback(Ax(s): S, h: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let caller = s.authorize(secret(&h), Role::Moderator)?;
    let bytes = read_body(body, s.limits.max_body).await?;
    let v = parse_json(&bytes)?;
    if !v.is_object() {
        return Err(wrong_type("body".into(), "an object"));
    }
    let key = idempotency_key(&h, &caller, &v)?;
    let s2 = s.clone();
    if let Some(pid) = v.get("prediction_id") {
        let Some(pid) = pid.as_str().filter(|p| !p.is_empty() && p.len() <= 256) else {
            return Err(wrong_type(
                "prediction_id".into(),
                "a non-empty string of at most 256 bytes",
            ));
        };
        let pid = pid.to_string();
        let Some(is_correct) = v.get("is_correct").and_then(Value::as_bool) else {
            return Err(wrong_type("is_correct".into(), "true or false"));
        };
        let actual = label_of(v.get("actual_label"), "actual_label")?;
        let notes = notes_of(v.get("feedback_notes"), "feedback_notes")?;
        let out = blocking(move || -> Result<Delivered, ApiError> {
            let logged = s2
                .log
                .get(&pid)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let Some(rec) = logged else {
                let d = s2.feedback.record_unlinked(
                    &pid,
                    is_correct,
                    actual,
                    &notes,
                    &caller.name,
                    key,
                )?;
                return Ok(delivered(d, false, None, true));
            };
            let threshold = s2
                .registry
                .manifest(rec.version)
                .map(|m| m.threshold)
                .unwrap_or(0.5);
            let predicted = u8::from(rec.probability > threshold);
            let label = actual.unwrap_or(if is_correct { predicted } else { 1 - predicted });
            let record = crate::store::feedback::NewFeedback {
                user_id: rec.user_id.as_deref().map(crate::data::UserId::from),
                features: rec.features,
                true_label: label,
                probability: Some(rec.probability),
                model_version: Some(rec.version),
                predicted: Some(predicted),
                notes,
                origin: crate::store::feedback::Origin::Service,
            };
            let d = s2
                .feedback
                .record_attributed(record, &caller.name, Some(&pid), key)?;
            Ok(delivered(d, true, Some(label), true))
        })
        .await?;
        return Ok(out.into_response());
    }
    if v.get("features").is_none() {
        return Err(ApiError::bad_request(
            "missing_field",
            "send {\"prediction_id\", \"is_correct\"} or {\"features\", \"label\"}",
        )
        .with_field(Some("prediction_id".into())));
    }
    let (account, user_id) = parse_request(&v, "", false)?;
    let Some(label) = label_of(v.get("label"), "label")? else {
        return Err(ApiError::bad_request(
            "missing_field",
            "label (0 or 1) is required with features",
        )
        .with_field(Some("label".into())));
    };
    let notes = notes_of(v.get("notes"), "notes")?;
    let out = blocking(move || -> Result<Delivered, ApiError> {
        let active = s2.active();
        let p =
            crate::ops::predict::predict(&active.model, &active.manifest, &account, Explain::None);
        let record = crate::store::feedback::NewFeedback {
            user_id: user_id.as_deref().map(crate::data::UserId::from),
            features: account.values.clone(),
            true_label: label,
            probability: Some(p.probability),
            model_version: Some(p.version),
            predicted: Some(u8::from(p.is_spammer)),
            notes,
            origin: crate::store::feedback::Origin::Service,
        };
        let d = s2
            .feedback
            .record_attributed(record, &caller.name, None, key)?;
        Ok(delivered(d, true, None, false))
    })
    .await?;
    Ok(out.into_response())
}

/// The `Idempotency-Key` header of a feedback request, if any, with a hash of its body
/// (its JSON with object keys sorted, so spacing and key order do not matter).
fn idempotency_key(
    h: &HeaderMap,
    caller: &Caller,
    body: &Value,
) -> Result<Option<crate::store::feedback::IdempotencyKey>, ApiError> {
    let Some(raw) = h.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = |m: String| {
        ApiError::bad_request("bad_header", format!("Idempotency-Key {m}"))
            .with_field(Some("Idempotency-Key".into()))
    };
    let text = raw
        .to_str()
        .map_err(|_| bad("must be printable ASCII".into()))?;
    let hash = crate::util::hash::sha256_hex(canonical_json(body).as_bytes());
    crate::store::feedback::IdempotencyKey::new(text, &caller.name, &hash)
        .map(Some)
        .map_err(bad)
}

/// `v` as JSON text with every object's keys sorted.
fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut items: Vec<(&String, &Value)> = m.iter().collect();
            items.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = items
                .into_iter()
                .map(|(k, x)| format!("{}:{}", Value::String(k.clone()), canonical_json(x)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical_json).collect::<Vec<_>>().join(",")
        ),
        x => x.to_string(),
    }
}

/// A feedback answer: its status, body, and whether it replays an earlier delivery
/// (then the header `Idempotent-Replayed: true` is sent).
struct Delivered(StatusCode, api::FeedbackResponse, bool);

impl IntoResponse for Delivered {
    fn into_response(self) -> Response {
        let mut res = (self.0, Json(self.1)).into_response();
        if self.2 {
            res.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
        }
        res
    }
}

/// The answer to stored feedback (`linked`, with the `label` stored on the
/// reference's feedback on a prediction), or to a replay of it: the first delivery's
/// answer, without `retrain_due`. `on_prediction`: the reference's form, whose linked
/// answer names the label stored.
fn delivered(
    d: crate::ops::feedback::Delivery,
    linked: bool,
    label: Option<u8>,
    on_prediction: bool,
) -> Delivered {
    use crate::ops::feedback::Delivery;
    let (id, linked, label, retrain_due, replay) = match d {
        Delivery::Stored(r) => (
            r.ids.first().copied().unwrap_or_default(),
            linked,
            label,
            r.retrain_due,
            false,
        ),
        Delivery::Replayed {
            id,
            linked,
            label: stored,
        } => (
            id,
            linked,
            stored.filter(|_| linked && on_prediction),
            None,
            true,
        ),
    };
    if !linked {
        return Delivered(StatusCode::ACCEPTED, api::FeedbackResponse {
            status: "accepted".into(),
            message: "no prediction with this id was logged here, so the feedback has no features: it counts in the statistics but cannot teach the model".into(),
            feedback_id: id,
            linked: false,
            label: None,
            retrain_due: None,
        }, replay);
    }
    Delivered(
        StatusCode::OK,
        api::FeedbackResponse {
            status: "success".into(),
            message: "Feedback received".into(),
            feedback_id: id,
            linked: true,
            label,
            retrain_due,
        },
        replay,
    )
}

/// The `user_ids` array of a review request: strings (or numbers, as text). How many
/// and whether each is a valid id is checked by `ops::review`.
fn user_ids_of(v: &Value) -> Result<Vec<String>, ApiError> {
    let Some(items) = v.get("user_ids").and_then(Value::as_array) else {
        return Err(wrong_type("user_ids".into(), "an array of user ids"));
    };
    if items.len() > crate::ops::review::MAX_IDS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_ids",
            format!(
                "user_ids holds {} ids; at most {} are accepted per request",
                items.len(),
                crate::ops::review::MAX_IDS
            ),
        )
        .with_field(Some("user_ids".into())));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, x)| match x {
            Value::String(t) => Ok(t.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(wrong_type(format!("user_ids[{i}]"), "a string")),
        })
        .collect()
}

/// A user id from the path, checked like everywhere else.
fn path_user_id(id: &str) -> Result<String, ApiError> {
    crate::ops::review::user_id(id, "user_id")
        .map(|u| u.to_string())
        .map_err(|e| ApiError::from(e).with_field(Some("user_id".into())))
}

/// Confirms an account's final label (role admin): `{"label": 0|1, "notes"?}`, by the
/// caller. It replaces an earlier confirmation (the answer shows it). Moderators'
/// trust prefers agreement with confirmed labels.
#[utoipa::path(post, path = "/accounts/{user_id}/label", tag = "review",
    params(("user_id" = String, Path, description = "The account's user id (1 to 256 bytes)")),
    request_body = api::ConfirmLabelRequest,
    responses(
        (status = 200, body = api::ConfirmLabelResponse),
        (status = 400, body = ErrorBody),
        AuthErrors,
    ))]
async fn confirm_label(
    Ax(s): S,
    h: HeaderMap,
    axum::extract::Path(user_id): axum::extract::Path<String>,
    body: Body,
) -> Result<Json<api::ConfirmLabelResponse>, ApiError> {
    let caller = s.authorize(secret(&h), Role::Admin)?;
    let user_id = path_user_id(&user_id)?;
    let bytes = read_body(body, s.limits.max_body).await?;
    let v = parse_json(&bytes)?;
    if !v.is_object() {
        return Err(wrong_type("body".into(), "an object"));
    }
    let Some(label) = label_of(v.get("label"), "label")? else {
        return Err(
            ApiError::bad_request("missing_field", "label (0 or 1) is required")
                .with_field(Some("label".into())),
        );
    };
    let notes = notes_of(v.get("notes"), "notes")?;
    let s2 = s.clone();
    let c = blocking(move || {
        crate::ops::review::confirm_label(&s2.registry, &user_id, label, &caller.name, &notes)
    })
    .await?;
    Ok(Json(api::ConfirmLabelResponse {
        confirmed: c.confirmed.into(),
        replaced: c.replaced.map(Into::into),
    }))
}

/// One account for the team (role moderator): its confirmed label, who is reviewing it
/// now and the feedback records on it (who said what, when, and what the model said).
#[utoipa::path(get, path = "/accounts/{user_id}", tag = "review",
    params(("user_id" = String, Path, description = "The account's user id (1 to 256 bytes)")),
    responses(
        (status = 200, body = api::AccountStatus),
        (status = 400, body = ErrorBody),
        AuthErrors,
    ))]
async fn account(
    Ax(s): S,
    h: HeaderMap,
    axum::extract::Path(user_id): axum::extract::Path<String>,
) -> Result<Json<api::AccountStatus>, ApiError> {
    s.authorize(secret(&h), Role::Moderator)?;
    let user_id = path_user_id(&user_id)?;
    let s2 = s.clone();
    let a = blocking(move || crate::ops::review::account(&s2.registry, &user_id)).await?;
    Ok(Json(a.into()))
}

/// Claims accounts for review by the caller (role moderator), for `ttl_seconds`
/// (1 to 86,400, default 900): each id is granted (free, expired, or the caller's own,
/// renewed) or reported as held by someone else. Two moderators claiming at once: each
/// account goes to exactly one. Feedback by the caller on an account releases its claim.
#[utoipa::path(post, path = "/review/claims", tag = "review",
    request_body = api::ClaimRequest,
    responses(
        (status = 200, body = api::ClaimResponse),
        (status = 400, body = ErrorBody),
        AuthErrors,
        (status = 413, description = "More than 1,000 ids", body = ErrorBody),
    ))]
async fn claim(Ax(s): S, h: HeaderMap, body: Body) -> Result<Json<api::ClaimResponse>, ApiError> {
    let caller = s.authorize(secret(&h), Role::Moderator)?;
    let bytes = read_body(body, s.limits.max_body).await?;
    let v = parse_json(&bytes)?;
    let ids = user_ids_of(&v)?;
    let ttl = match v.get("ttl_seconds") {
        None | Some(Value::Null) => 900,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or_default(),
        Some(_) => {
            return Err(wrong_type(
                "ttl_seconds".into(),
                "a whole number of seconds, 1 to 86400",
            ));
        }
    };
    let s2 = s.clone();
    let out =
        blocking(move || crate::ops::review::claim(&s2.registry, &ids, &caller.name, ttl)).await?;
    Ok(Json(api::ClaimResponse {
        granted: out.granted.iter().map(|u| u.to_string()).collect(),
        held: out
            .held
            .into_iter()
            .map(|(u, h)| api::HeldClaim {
                user_id: u.to_string(),
                moderator: h.moderator,
                expires_at: h.expires_at,
            })
            .collect(),
    }))
}

/// Releases the caller's claims on accounts (role moderator); others' claims stay.
#[utoipa::path(delete, path = "/review/claims", tag = "review",
    request_body = api::UserIdsRequest,
    responses(
        (status = 200, body = api::ReleaseResponse),
        (status = 400, body = ErrorBody),
        AuthErrors,
        (status = 413, description = "More than 1,000 ids", body = ErrorBody),
    ))]
async fn release(
    Ax(s): S,
    h: HeaderMap,
    body: Body,
) -> Result<Json<api::ReleaseResponse>, ApiError> {
    let caller = s.authorize(secret(&h), Role::Moderator)?;
    let bytes = read_body(body, s.limits.max_body).await?;
    let v = parse_json(&bytes)?;
    let ids = user_ids_of(&v)?;
    let s2 = s.clone();
    let released =
        blocking(move || crate::ops::review::release(&s2.registry, &ids, &caller.name)).await?;
    Ok(Json(api::ReleaseResponse { released }))
}

/// Accounts' review state (role moderator): for each id, its unexpired claim, who
/// reviewed it (the feedback records) and its confirmed label.
#[utoipa::path(post, path = "/review/status", tag = "review",
    request_body = api::UserIdsRequest,
    responses(
        (status = 200, body = api::ReviewStatus),
        (status = 400, body = ErrorBody),
        AuthErrors,
        (status = 413, description = "More than 1,000 ids", body = ErrorBody),
    ))]
async fn review_status(
    Ax(s): S,
    h: HeaderMap,
    body: Body,
) -> Result<Json<api::ReviewStatus>, ApiError> {
    s.authorize(secret(&h), Role::Moderator)?;
    let bytes = read_body(body, s.limits.max_body).await?;
    let v = parse_json(&bytes)?;
    let ids = user_ids_of(&v)?;
    let s2 = s.clone();
    let accounts = blocking(move || crate::ops::review::status(&s2.registry, &ids)).await?;
    Ok(Json(api::ReviewStatus {
        accounts: accounts.into_iter().map(Into::into).collect(),
    }))
}

/// Reports a job's progress into the state's job table.
struct JobProgress {
    state: Arc<State>,
    id: u64,
}

impl crate::util::progress::Reporter for JobProgress {
    fn stage(&self, stage: &str, done: usize, total: usize) {
        let mut jobs = s_jobs(&self.state);
        if let Some(j) = jobs.iter_mut().find(|j| j.id == self.id) {
            j.stage = stage.to_string();
            j.done = done;
            j.total = total;
        }
    }
}

fn s_jobs(s: &State) -> std::sync::MutexGuard<'_, Vec<api::Job>> {
    s.jobs.lock().unwrap_or_else(|p| p.into_inner())
}

/// Most finished jobs kept for `GET /jobs/{id}`.
const KEEP_JOBS: usize = 100;

/// Retrains from the stored feedback (role admin): the online-learning path with its
/// promotion gate, on a worker thread. Answers at once with a job id; follow it at
/// `/jobs/{id}`. One retrain at a time per service (409).
#[utoipa::path(post, path = "/model/retrain", tag = "model",
    responses(
        (status = 202, body = api::JobAccepted),
        AuthErrors,
        (status = 409, description = "A retrain is already running", body = ErrorBody),
    ))]
async fn retrain(Ax(s): S, h: HeaderMap) -> Result<Response, ApiError> {
    let caller = s.authorize(secret(&h), Role::Admin)?;
    let id = {
        let mut jobs = s_jobs(&s);
        if let Some(j) = jobs.iter().find(|j| j.state == "running") {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "busy",
                format!("retrain job {} is still running", j.id),
            ));
        }
        let id = jobs.last().map_or(1, |j| j.id + 1);
        jobs.push(api::Job {
            id,
            kind: "retrain".into(),
            state: "running".into(),
            stage: "starting".into(),
            done: 0,
            total: 1,
            started_by: caller.name.clone(),
            result: None,
            error: None,
        });
        let finished = jobs.len().saturating_sub(KEEP_JOBS);
        jobs.drain(..finished);
        id
    };
    let s2 = s.clone();
    std::thread::spawn(move || {
        let progress = JobProgress {
            state: s2.clone(),
            id,
        };
        let outcome = crate::ops::online::OnlineLearningConfig::load(&s2.registry)
            .and_then(|cfg| crate::ops::online::retrain(&s2.registry, &cfg, &progress));
        if let Err(e) = s2.refresh_active() {
            tracing::warn!("after the retrain: {e}");
        }
        let mut jobs = s_jobs(&s2);
        if let Some(j) = jobs.iter_mut().find(|j| j.id == id) {
            match outcome {
                Ok(o) => {
                    j.state = "succeeded".into();
                    j.result = Some(api::RetrainResult {
                        candidate_version: o.candidate.version,
                        promoted: o.promoted,
                        reason: o.reason,
                        feedback_train: o.feedback_train,
                        feedback_holdout: o.feedback_holdout,
                        metrics: (&o.candidate.metrics).into(),
                        by_moderator: o
                            .by_moderator
                            .iter()
                            .map(|m| api::ModeratorGate {
                                moderator: m.moderator.clone(),
                                records: m.candidate.records,
                                accuracy_active: m.active.accuracy,
                                accuracy_candidate: m.candidate.accuracy,
                                brier_active: m.active.brier,
                                brier_candidate: m.candidate.brier,
                            })
                            .collect(),
                    });
                }
                Err(e) => {
                    j.state = "failed".into();
                    j.error = Some(e.to_string());
                }
            }
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(api::JobAccepted {
            job_id: id,
            status: "running".into(),
            poll: format!("/jobs/{id}"),
        }),
    )
        .into_response())
}

/// A retrain job's progress and result (role admin).
#[utoipa::path(get, path = "/jobs/{id}", tag = "model",
    params(("id" = u64, Path, description = "The `job_id` of `POST /model/retrain`")),
    responses(
        (status = 200, body = api::Job),
        (status = 400, body = ErrorBody),
        AuthErrors,
        (status = 404, description = "No such job", body = ErrorBody),
    ))]
async fn job(
    Ax(s): S,
    h: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<api::Job>, ApiError> {
    s.authorize(secret(&h), Role::Admin)?;
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request("bad_path", "the job id must be a number")
            .with_field(Some("id".into()))
    })?;
    let jobs = s_jobs(&s);
    let Some(j) = jobs.iter().find(|j| j.id == id) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_job",
            format!("no job {id}"),
        ));
    };
    Ok(Json(j.clone()))
}

/// How many of the newest logged predictions the drift gauges are computed on.
const DRIFT_WINDOW: usize = 5_000;

/// Prometheus text format (role scorer): requests by route and status, latency
/// histograms, verdicts, active version, feedback counts, last retrain, and the
/// population stability index of recent requests per feature.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses(
        (status = 200, description = "Prometheus exposition format 0.0.4", body = String, content_type = "text/plain"),
        AuthErrors,
    ))]
async fn prometheus(Ax(s): S, h: HeaderMap) -> Result<Response, ApiError> {
    s.authorize(secret(&h), Role::Scorer)?;
    let s2 = s.clone();
    let text = blocking(move || -> Result<String, crate::Error> {
        let mut out = String::new();
        s2.metrics.render(&mut out);
        let a = s2.active();
        out.push_str("# HELP spamscope_active_version The model version answering requests.\n# TYPE spamscope_active_version gauge\n");
        out.push_str(&format!("spamscope_active_version {}\n", a.manifest.version));
        let store = crate::store::feedback::FeedbackStore::open_in(s2.registry.root())?;
        let (unlinked, _) = store.unlinked_counts()?;
        out.push_str("# HELP spamscope_feedback_total Feedback records stored.\n# TYPE spamscope_feedback_total gauge\n");
        out.push_str(&format!("spamscope_feedback_total{{linked=\"true\"}} {}\n", store.count()?));
        out.push_str(&format!("spamscope_feedback_total{{linked=\"false\"}} {unlinked}\n"));
        out.push_str(&format!("spamscope_feedback_unused {}\n", store.count_unused()?));
        if let Some(t) = last_retrain(&s2.registry)?
            .and_then(|t| humantime::parse_rfc3339_weak(&t).ok())
        {
            let secs = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            out.push_str("# HELP spamscope_last_retrain_timestamp_seconds When the newest version made from feedback was trained.\n# TYPE spamscope_last_retrain_timestamp_seconds gauge\n");
            out.push_str(&format!("spamscope_last_retrain_timestamp_seconds {secs}\n"));
        }
        out.push_str(&format!("spamscope_predictions_dropped_total {}\n", s2.log.dropped()));
        // Drift of recent requests against the active version's training data.
        let recent = s2.log.recent(DRIFT_WINDOW)?;
        if let (Some(profiles), false) = (&a.manifest.profiles, recent.is_empty()) {
            let cat = catalog();
            let columns: Vec<Vec<f64>> = (0..crate::data::catalog::N_FEATURES)
                .map(|f| recent.iter().map(|r| r.features[f]).collect())
                .collect();
            let psi = crate::eval::monitor::drift(profiles, &columns);
            out.push_str("# HELP spamscope_feature_psi Population stability index of the recent requests per feature.\n# TYPE spamscope_feature_psi gauge\n");
            for (f, v) in cat.features.iter().zip(&psi) {
                if v.is_finite() {
                    out.push_str(&format!("spamscope_feature_psi{{feature=\"{}\"}} {v}\n", f.id));
                }
            }
        }
        Ok(out)
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Runs `f` on the blocking pool: scoring batches, exact explanations, SQLite and
/// registry reads stay off the async workers.
async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("the request's work failed: {e}")))?
        .map_err(Into::into)
}

/// A batch of `n` accounts is refused above `max`.
fn check_batch_size(n: usize, max: usize) -> Result<(), ApiError> {
    if n > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("the batch has {n} accounts; at most {max} are accepted per request"),
        ));
    }
    Ok(())
}

/// When the newest version made from feedback (a retrain, with a gate) was trained.
fn last_retrain(registry: &crate::store::Registry) -> Result<Option<String>, crate::Error> {
    Ok(registry
        .list()?
        .into_iter()
        .rev()
        .filter_map(|e| e.manifest.ok())
        .find(|m| m.gate.is_some())
        .map(|m| m.created_at))
}
