//! The routes: the reference API's (`/predict`, `/predict/batch`, `/feedback`,
//! `/model/version`, `/model/info`, `/model/feedback/stats`, `/health`) and ours
//! (`/model/versions`, `/model/rollback`).

use super::{Active, ApiError, Caller, State};
use crate::data::catalog::{Kind, catalog};
use crate::ops::predict::{Account, Explain, Prediction};
use crate::store::predictions::{PredictionRecord, new_prediction_id};
use crate::store::tokens::Role;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State as Ax};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

type S = Ax<Arc<State>>;
type Q = Query<HashMap<String, String>>;

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/predict", post(predict))
        .route("/predict/batch", post(predict_batch))
        .route("/model/version", get(model_version))
        .route("/model/info", get(model_info))
        .route("/feedback", post(feedback))
        .route("/model/feedback/stats", get(feedback_stats))
        .route("/model/versions", get(versions))
        .route("/model/retrain", post(retrain))
        .route("/jobs/{id}", get(job))
        .route("/metrics", get(prometheus))
        .route("/model/rollback", post(rollback))
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

fn options(q: &HashMap<String, String>, max_explain: usize) -> Result<Options, ApiError> {
    let bad = |field: &str, m: String| {
        ApiError::bad_request("bad_query", m).with_field(Some(field.into()))
    };
    let explain = match q.get("explain").map(|s| s.trim().to_ascii_lowercase()) {
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
    let strict = match q.get("strict").map(|s| s.trim().to_ascii_lowercase()) {
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

/// Scores, logs the prediction, and builds the response object.
fn score(
    s: &State,
    active: &Active,
    account: &Account,
    user_id: Option<String>,
    caller: &Caller,
    explain: Explain,
) -> Value {
    let p = crate::ops::predict::predict(&active.model, &active.manifest, account, explain);
    s.metrics.record_verdict(p.is_spammer);
    let id = new_prediction_id();
    s.log.append(PredictionRecord {
        id: id.clone(),
        created_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        version: p.version,
        features: account.values.clone(),
        probability: p.probability,
        caller: caller.name.clone(),
        user_id,
    });
    response(&p, account, id)
}

fn response(p: &Prediction, account: &Account, id: String) -> Value {
    let cat = catalog();
    let contributions: Vec<Value> = p
        .contributions
        .iter()
        .map(|&(f, c)| {
            json!({
                "feature": cat.features[f].id,
                "name": cat.features[f].name,
                "value": account.values[f],
                "contribution": c,
            })
        })
        .collect();
    json!({
        "prediction": u8::from(p.is_spammer),
        "probability": p.probability,
        "is_spammer": p.is_spammer,
        "risk_factors": p.risk_factors,
        "prediction_id": id,
        "model_version": p.version,
        "threshold": p.threshold,
        "contributions": contributions,
        "explanation_method": p.method.map(|m| m.name()),
        "imputed": account.missing.iter().map(|&i| cat.features[i].id.as_str()).collect::<Vec<_>>(),
    })
}

async fn root() -> Json<Value> {
    Json(json!({"message": "Spammer Detection API (spamscope)"}))
}

async fn health(Ax(s): S) -> Json<Value> {
    let a = s.active();
    let uptime = s.started.elapsed().map_or(0.0, |d| d.as_secs_f64());
    Json(json!({
        "status": "healthy",
        "version": env!("CARGO_PKG_VERSION"),
        "model_version": a.manifest.version,
        "uptime_seconds": uptime,
    }))
}

async fn predict(Ax(s): S, h: HeaderMap, Query(q): Q, body: Body) -> Result<Json<Value>, ApiError> {
    let caller = s.authorize(secret(&h), Role::Scorer)?;
    let o = options(&q, s.limits.max_explain)?;
    let bytes = read_body(body, s.limits.max_body).await?;
    let v = parse_json(&bytes)?;
    let (account, user_id) = parse_request(&v, "", o.strict)?;
    let active = s.active();
    if matches!(o.explain, Explain::Exact(_)) {
        // Exact explanations take milliseconds: off the async workers.
        let s2 = s.clone();
        let out = blocking(move || {
            Ok::<_, ApiError>(score(&s2, &active, &account, user_id, &caller, o.explain))
        })
        .await?;
        return Ok(Json(out));
    }
    Ok(Json(score(
        &s, &active, &account, user_id, &caller, o.explain,
    )))
}

async fn predict_batch(
    Ax(s): S,
    h: HeaderMap,
    Query(q): Q,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = s.authorize(secret(&h), Role::Scorer)?;
    let o = options(&q, s.limits.max_explain)?;
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
    // One version for the whole batch.
    let active = s.active();
    let s2 = s.clone();
    let out = blocking(move || {
        Ok::<_, ApiError>(
            accounts
                .into_iter()
                .map(|(a, user)| score(&s2, &active, &a, user, &caller, o.explain))
                .collect::<Vec<Value>>(),
        )
    })
    .await?;
    Ok(Json(Value::Array(out)).into_response())
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
        let (k, method) = match o.explain {
            Explain::None => (0, crate::model::explain::Method::PathAttribution),
            Explain::Top(k) => (k, crate::model::explain::Method::PathAttribution),
            Explain::Exact(k) => (k, a.model.detail_method()),
        };
        let b = crate::ops::score::score_batch(
            &d,
            &a.model,
            a.manifest.version,
            a.manifest.threshold,
            k,
            method,
            &crate::util::progress::NoProgress,
        )?;
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        for i in 0..d.n_rows() {
            s2.metrics.record_verdict(b.is_spammer(i));
            s2.log.append(PredictionRecord {
                id: new_prediction_id(),
                created_at: now.clone(),
                version: b.version,
                features: d.row(i),
                probability: b.probability[i],
                caller: caller.name.clone(),
                user_id: Some(d.user_ids[i].to_string()),
            });
        }
        Ok(crate::ops::score::batch_csv(&d, &b, None))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response())
}

fn metrics_json(m: &crate::eval::metrics::Metrics) -> Value {
    json!({
        "accuracy": m.accuracy,
        "precision": m.precision,
        "recall": m.recall,
        "f1": m.f1,
        "f1_score": m.f1,
        "roc_auc": m.roc_auc,
        "average_precision": m.average_precision,
    })
}

async fn model_version(Ax(s): S, h: HeaderMap) -> Result<Json<Value>, ApiError> {
    s.authorize(secret(&h), Role::Scorer)?;
    let a = s.active();
    Ok(Json(json!({
        "version": a.manifest.version,
        "last_updated": a.manifest.created_at,
        "metrics": metrics_json(&a.manifest.metrics),
        "threshold": a.manifest.threshold,
        "model_kind": a.manifest.model_kind(),
    })))
}

/// The reference's `type` of a feature: flags are `boolean`, ordinal codes with a few
/// named levels `categorical`, counts, amounts and longer scores `numeric`.
pub fn reference_type(f: &crate::data::catalog::Feature) -> &'static str {
    match f.kind {
        Kind::Flag => "boolean",
        Kind::Ordinal if f.levels.len() <= 5 => "categorical",
        _ => "numeric",
    }
}

async fn model_info(Ax(s): S, h: HeaderMap) -> Result<Json<Value>, ApiError> {
    s.authorize(secret(&h), Role::Scorer)?;
    let a = s.active();
    let cat = catalog();
    let importance = a.model.importance();
    let mut mapping = Map::new();
    for (i, f) in cat.features.iter().enumerate() {
        mapping.insert(
            f.id.clone(),
            json!({
                "name": f.name,
                "label": f.label,
                "description": f.description,
                "category": f.category,
                "type": reference_type(f),
                "importance": importance.get(i).copied().unwrap_or(0.0),
                "min": f.min,
                "max": f.max,
                "levels": f.levels,
                "median": a.model.imputer.medians.get(i).copied(),
            }),
        );
    }
    let mut categories = cat.categories.clone();
    categories.sort();
    Ok(Json(json!({
        "metrics": metrics_json(&a.manifest.metrics),
        "feature_mapping": mapping,
        "categories": categories,
        "model_version": a.manifest.version,
    })))
}

async fn versions(Ax(s): S, h: HeaderMap) -> Result<Json<Value>, ApiError> {
    s.authorize(secret(&h), Role::Admin)?;
    let s2 = s.clone();
    let rows = blocking(move || -> Result<Vec<Value>, crate::Error> {
        let active = s2.registry.active()?;
        Ok(s2
            .registry
            .list()?
            .into_iter()
            .map(|e| match e.manifest {
                Ok(m) => json!({
                    "version": m.version,
                    "parent": m.parent,
                    "created_at": m.created_at,
                    "status": m.status_name(active),
                    "active": Some(m.version) == active,
                    "model_kind": m.model_kind(),
                    "metrics": metrics_json(&m.metrics),
                    "feedback_used": m.feedback_used,
                    "reason": m.gate.as_ref().map(|g| g.reason.clone()).or(m.status_reason.clone()),
                }),
                Err(err) => {
                    json!({"version": e.version, "status": "unreadable", "error": err.to_string()})
                }
            })
            .collect())
    })
    .await?;
    Ok(Json(
        json!({"versions": rows, "serving": s.active().manifest.version}),
    ))
}

async fn rollback(Ax(s): S, h: HeaderMap, body: Body) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({
        "model_version": a.manifest.version,
        "message": format!("version {to} is active"),
    })))
}

/// RFC 3339 with an explicit offset (`+00:00`), which every Python `fromisoformat`
/// reads (the reference's client parses `last_retrain` with it).
fn iso(t: &str) -> String {
    match t.strip_suffix('Z') {
        Some(head) => format!("{head}+00:00"),
        None => t.to_string(),
    }
}

async fn feedback_stats(Ax(s): S, h: HeaderMap) -> Result<Json<Value>, ApiError> {
    s.authorize(secret(&h), Role::Scorer)?;
    let s2 = s.clone();
    let out = blocking(move || -> Result<Value, crate::Error> {
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
        let by_version: Vec<Value> = stats
            .by_version
            .iter()
            .map(|v| json!({"model_version": v.version, "total": v.total, "correct": v.agreed}))
            .collect();
        Ok(json!({
            "total_feedback": stats.total + unlinked,
            "correct_predictions": correct,
            "accuracy": if judged > 0 { correct as f64 / judged as f64 } else { 0.0 },
            "unlinked_feedback": unlinked,
            "last_retrain": iso(&last),
            "by_version": by_version,
        }))
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

/// `POST /feedback`: the reference's `{"prediction_id", "is_correct", "actual_label"?,
/// "feedback_notes"?}` (features from the prediction log), or `{"features", "label",
/// "notes"?}` for an account scored elsewhere.
async fn feedback(Ax(s): S, h: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let caller = s.authorize(secret(&h), Role::Moderator)?;
    let bytes = read_body(body, s.limits.max_body).await?;
    let v = parse_json(&bytes)?;
    if !v.is_object() {
        return Err(wrong_type("body".into(), "an object"));
    }
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
        let out = blocking(move || -> Result<(StatusCode, Value), ApiError> {
            let logged = s2.log.get(&pid).map_err(|e| ApiError::internal(e.to_string()))?;
            let Some(rec) = logged else {
                let id = crate::ops::feedback::record_unlinked(
                    &s2.registry, &pid, is_correct, actual, &notes, &caller.name,
                )?;
                return Ok((StatusCode::ACCEPTED, json!({
                    "status": "accepted",
                    "message": "no prediction with this id was logged here, so the feedback has no features: it counts in the statistics but cannot teach the model",
                    "feedback_id": id,
                    "linked": false,
                })));
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
            let r = crate::ops::feedback::record_attributed(&s2.registry, &record, &caller.name, Some(&pid))?;
            Ok((StatusCode::OK, json!({
                "status": "success",
                "message": "Feedback received",
                "feedback_id": r.ids[0],
                "linked": true,
                "label": label,
                "retrain_due": r.retrain_due,
            })))
        })
        .await?;
        return Ok((out.0, Json(out.1)).into_response());
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
    let out = blocking(move || -> Result<Value, ApiError> {
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
        let r = crate::ops::feedback::record_attributed(&s2.registry, &record, &caller.name, None)?;
        Ok(json!({
            "status": "success",
            "message": "Feedback received",
            "feedback_id": r.ids[0],
            "linked": true,
            "retrain_due": r.retrain_due,
        }))
    })
    .await?;
    Ok(Json(out).into_response())
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

fn s_jobs(s: &State) -> std::sync::MutexGuard<'_, Vec<super::Job>> {
    s.jobs.lock().unwrap_or_else(|p| p.into_inner())
}

/// Most finished jobs kept for `GET /jobs/{id}`.
const KEEP_JOBS: usize = 100;

/// `POST /model/retrain`: the online-learning retrain (gate and all) on a worker
/// thread; answers at once with a job id. One retrain at a time per service.
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
        jobs.push(super::Job {
            id,
            kind: "retrain",
            state: "running",
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
                    j.state = "succeeded";
                    j.result = Some(json!({
                        "candidate_version": o.candidate.version,
                        "promoted": o.promoted,
                        "reason": o.reason,
                        "feedback_train": o.feedback_train,
                        "feedback_holdout": o.feedback_holdout,
                        "metrics": metrics_json(&o.candidate.metrics),
                    }));
                }
                Err(e) => {
                    j.state = "failed";
                    j.error = Some(e.to_string());
                }
            }
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"job_id": id, "status": "running", "poll": format!("/jobs/{id}")})),
    )
        .into_response())
}

async fn job(
    Ax(s): S,
    h: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(
        serde_json::to_value(j).map_err(|e| ApiError::internal(e.to_string()))?,
    ))
}

/// How many of the newest logged predictions the drift gauges are computed on.
const DRIFT_WINDOW: usize = 5_000;

/// `GET /metrics`: Prometheus text format (scorer role, like the other read routes).
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
