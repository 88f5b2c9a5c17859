//! Scoring: `/predict` and `/predict/batch` (JSON and CSV), their query and answers.

use super::Q;
use super::extract::*;
use crate::data::catalog::catalog;
use crate::ops::predict::{Account, Explain, Prediction};
use crate::service::api::{self, ErrorBody, PredictRequest, PredictResponse};
use crate::service::{Active, ApiError, Caller, Policies, Running, State};
use crate::store::predictions::{DecisionTag, PredictionRecord};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// `?explain=K|exact|exact:K|none` and `?strict=true|false`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Options {
    explain: Explain,
    strict: bool,
}

pub(super) const DEFAULT_EXPLAIN: usize = 3;

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

pub(super) fn options(q: Q, max_explain: usize) -> Result<Options, ApiError> {
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
pub(super) fn parse_request(
    v: &Value,
    at: &str,
    strict: bool,
) -> Result<(Account, Option<String>), ApiError> {
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
        Some(Value::String(s)) => match crate::data::user_id_problem(s.trim()) {
            None => Some(s.trim().to_string()),
            Some(problem) => {
                return Err(ApiError::bad_request("invalid_value", problem)
                    .with_field(Some(format!("{at}user_id"))));
            }
        },
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

/// Scores (the experiment's arm answers: [`crate::ops::experiment::serve_one`]) and
/// builds the response object, with the record to log (both versions during an
/// experiment): the caller appends it when the answer is given.
fn score(
    active: &Active,
    running: Option<&Running>,
    policies: &Policies,
    account: &Account,
    user_id: Option<String>,
    caller: &Caller,
    explain: Explain,
) -> (PredictResponse, PredictionRecord) {
    let arms = arms(active, running);
    let (p, mut record) =
        crate::ops::experiment::serve_one(arms, account, user_id, &caller.name, explain);
    // The policies read the values as given (missing ones stay missing).
    (record.decision, record.shadow) = crate::ops::policy::decide(
        policies.live.as_ref(),
        policies.shadow.as_ref(),
        &account.values,
        p.probability,
        p.score,
    );
    // The medians of the version that answered.
    let medians = if p.version == active.manifest.version {
        &active.model.imputer.medians
    } else {
        running.map_or(&active.model.imputer.medians, |r| {
            &r.candidate.model.imputer.medians
        })
    };
    let id = record.id.clone();
    let mut out = response(p, account, medians, id);
    (out.decision, out.matched_rules, out.policy_version) =
        api::decision_fields(record.decision.clone());
    (out, record)
}

/// The versions that answer: the active one and a running experiment's candidate.
pub(super) fn arms<'a>(
    active: &'a Active,
    running: Option<&'a Running>,
) -> crate::ops::experiment::Arms<'a> {
    let served = |a: &'a Active| crate::ops::experiment::Served {
        manifest: &a.manifest,
        model: &a.model,
    };
    crate::ops::experiment::Arms {
        active: served(active),
        experiment: running.map(|r| (&r.experiment, served(&r.candidate))),
    }
}

/// The answer; a contribution's value is the one scored (the median when imputed).
pub(super) fn response(
    p: Prediction,
    account: &Account,
    medians: &[f64],
    id: String,
) -> PredictResponse {
    let cat = catalog();
    PredictResponse {
        prediction: u8::from(p.is_spammer),
        probability: p.probability,
        score: p.score,
        calibrated: p.calibrated,
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
        decision: None,
        matched_rules: Vec::new(),
        policy_version: None,
    }
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
pub(super) async fn predict(
    call: Call<Scorer>,
    q: Q,
    body: Body,
) -> Result<Json<PredictResponse>, ApiError> {
    let s = call.s.clone();
    let caller = call.caller.clone();
    let o = options(q, s.limits.max_explain)?;
    let v = call.json(body).await?;
    let (account, user_id) = parse_request(&v, "", o.strict)?;
    let active = s.active();
    let running = s.experiment();
    let policies = s.policies();
    let inline = policies.inline();
    let scored = move || {
        score(
            &active,
            running.as_deref(),
            &policies,
            &account,
            user_id,
            &caller,
            o.explain,
        )
    };
    // Exact explanations take milliseconds, and so does a very large policy: off the
    // async workers.
    if !matches!(o.explain, Explain::Exact(_)) && inline {
        let (out, record) = scored();
        answered(&s, &out, record);
        return Ok(Json(out));
    }
    let out = call
        .work(move |gate| {
            let (out, record) = scored();
            gate.enter()?;
            answered(&s, &out, record);
            Ok::<_, ApiError>(out)
        })
        .await?;
    Ok(Json(out))
}

/// An answer is being given: its prediction goes to the log and its verdict to the
/// metrics (work past its deadline does neither: see [`Gate::enter`]).
fn answered(s: &State, out: &PredictResponse, record: PredictionRecord) {
    // On the request's trace span: which version answered, and how it explained.
    let span = tracing::Span::current();
    span.record("spamscope.model_version", out.model_version);
    if let Some(m) = &out.explanation_method {
        span.record("spamscope.explanation", m.as_str());
    }
    s.metrics
        .record_decisions(record.decision.as_ref(), record.shadow.as_ref());
    s.log.append(record);
    s.metrics.record_prediction(out.score, out.is_spammer);
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
pub(super) async fn predict_batch(
    call: Call<Scorer>,
    h: HeaderMap,
    q: Q,
    body: Body,
) -> Result<Response, ApiError> {
    let s = call.s.clone();
    let caller = call.caller.clone();
    let o = options(q, s.limits.max_explain)?;
    let bytes = call.body(body).await?;
    let csv = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/csv"));
    if csv {
        return csv_batch(&call, o, bytes).await;
    }
    // One active version (and experiment) for the whole batch.
    let active = s.active();
    let running = s.experiment();
    let policies = s.policies();
    let s2 = s.clone();
    let max_batch = s.limits.max_batch;
    // Parsing up to 16 MiB and 10,000 accounts, and scoring them: off the async workers.
    let out = call
        .work(move |gate| {
            let v = parse_json(&bytes)?;
            let Some(items) = v.as_array() else {
                return Err(wrong_type(
                    "body".into(),
                    "a JSON array of {\"features\": {...}} objects",
                ));
            };
            check_batch_size(items.len(), max_batch)?;
            let accounts = items
                .iter()
                .enumerate()
                .map(|(i, item)| parse_request(item, &format!("[{i}]."), o.strict))
                .collect::<Result<Vec<_>, _>>()?;
            let (out, records): (Vec<PredictResponse>, Vec<PredictionRecord>) = accounts
                .into_iter()
                .map(|(a, user)| {
                    score(
                        &active,
                        running.as_deref(),
                        &policies,
                        &a,
                        user,
                        &caller,
                        o.explain,
                    )
                })
                .unzip();
            gate.enter()?;
            for (o, r) in out.iter().zip(records) {
                answered(&s2, o, r);
            }
            Ok(out)
        })
        .await?;
    Ok(Json(out).into_response())
}

/// A `text/csv` batch with the data schema (`label` optional): answered with the
/// `score` command's CSV columns; every row is logged like a JSON prediction.
async fn csv_batch(call: &Call<Scorer>, o: Options, bytes: Bytes) -> Result<Response, ApiError> {
    let s2 = call.s.clone();
    let caller = call.caller.clone();
    let text = call
        .work(move |gate| -> Result<String, ApiError> {
            let d = crate::data::Dataset::parse_csv(bytes.to_vec(), "request body")
                .map_err(|e| ApiError::bad_request("bad_csv", e.to_string()))?;
            check_batch_size(d.n_rows(), s2.limits.max_batch)?;
            let active = s2.active();
            let running = s2.experiment();
            let (k, exact) = match o.explain {
                Explain::None => (0, false),
                Explain::Top(k) => (k, false),
                Explain::Exact(k) => (k, true),
            };
            let policies = s2.policies();
            let arms = arms(&active, running.as_deref());
            let (b, mut records) =
                crate::ops::experiment::serve_batch(arms, &d, &caller.name, k, exact)?;
            for (i, r) in records.iter_mut().enumerate() {
                (r.decision, r.shadow) = crate::ops::policy::decide(
                    policies.live.as_ref(),
                    policies.shadow.as_ref(),
                    &r.features,
                    b.probability[i],
                    b.score[i],
                );
            }
            // The decision columns, when a policy is live.
            let extra: Vec<(&str, Vec<String>)> = if policies.live.is_some() {
                let tag = |f: &dyn Fn(&DecisionTag) -> String| -> Vec<String> {
                    records
                        .iter()
                        .map(|r| r.decision.as_ref().map(f).unwrap_or_default())
                        .collect()
                };
                vec![
                    ("decision", tag(&|d| d.decision.clone())),
                    (
                        "matched_rules",
                        tag(&|d| serde_json::to_string(&d.matched_rules).unwrap_or_default()),
                    ),
                    ("policy_version", tag(&|d| d.policy_version.to_string())),
                ]
            } else {
                Vec::new()
            };
            let text = crate::ops::score::batch_csv_with(&d, &b, None, &extra);
            // Logged only when the answer is given.
            gate.enter()?;
            for (i, r) in records.into_iter().enumerate() {
                s2.metrics
                    .record_decisions(r.decision.as_ref(), r.shadow.as_ref());
                s2.log.append(r);
                s2.metrics.record_prediction(b.score[i], b.is_spammer(i));
            }
            Ok(text)
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response())
}
