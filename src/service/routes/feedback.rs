//! Moderators' feedback: `/feedback` (with idempotency keys) and `/model/feedback/stats`.

use super::extract::*;
use super::scoring::*;
use super::versions::*;
use crate::ops::predict::Explain;
use crate::service::api::{self, ErrorBody};
use crate::service::{ApiError, Caller};
use axum::Json;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// Feedback counts and the model's agreement with moderators (role scorer).
#[utoipa::path(get, path = "/model/feedback/stats", tag = "feedback",
    responses((status = 200, body = api::FeedbackStats), AuthErrors))]
pub(super) async fn feedback_stats(
    call: Call<Scorer>,
) -> Result<Json<api::FeedbackStats>, ApiError> {
    let s = call.s.clone();
    let s2 = s.clone();
    let out = call
        .read(move || -> Result<api::FeedbackStats, crate::Error> {
            s2.with_store(|store| {
                let stats = store.stats()?;
                // Feedback on predictions this service never logged has no features nor a
                // verdict of ours: reported beside the statistics, not mixed into them.
                let (unlinked, unlinked_correct) = store.unlinked_counts()?;
                // Without a retrain, the active version's training (always a time, as the
                // reference's client expects).
                let last = last_retrain(&s2.registry)?
                    .unwrap_or_else(|| s2.active().manifest.created_at.clone());
                Ok(api::FeedbackStats {
                    total_feedback: stats.total,
                    judged: stats.judged,
                    correct_predictions: stats.agreed,
                    accuracy: stats.agreement.unwrap_or(0.0),
                    agreement: stats.agreement,
                    unlinked_feedback: unlinked,
                    unlinked_correct,
                    last_retrain: iso(&last),
                    by_version: stats
                        .by_version
                        .iter()
                        .map(|v| api::VersionFeedback {
                            model_version: v.version,
                            total: v.total,
                            judged: v.judged,
                            correct: v.agreed,
                            agreement: v.agreement(),
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
                                    agreement_with_others: share(
                                        m.agreed_with_others,
                                        m.pairs_with_others,
                                    ),
                                    moderator: m.moderator,
                                    total: m.records,
                                    pairs_with_others: m.pairs_with_others,
                                    agreement_with_confirmed: share(
                                        m.agreed_with_confirmed,
                                        m.confirmed,
                                    ),
                                    confirmed: m.confirmed,
                                    trust,
                                }
                            })
                            .collect()
                    },
                })
            })
        })
        .await?;
    Ok(Json(out))
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
pub(super) async fn feedback(
    call: Call<Moderator>,
    h: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let s = call.s.clone();
    let caller = call.caller.clone();
    let v = call.json(body).await?;
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
        let out = call
            .write(move || -> Result<Delivered, ApiError> {
                let logged = s2
                    .log
                    .get(&pid)
                    .map_err(|e| ApiError::from(crate::Error::from(e)))?;
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
                // The version that answered decides what it predicted; a manifest that
                // cannot be read is an error, never a made-up threshold.
                let threshold = s2
                    .registry
                    .manifest(rec.version)
                    .map_err(crate::Error::from)?
                    .threshold;
                let predicted = crate::eval::verdict::label(rec.score, threshold);
                let label = actual.unwrap_or(if is_correct { predicted } else { 1 - predicted });
                let record = crate::store::feedback::NewFeedback {
                    user_id: rec.user_id.as_deref().map(crate::data::UserId::from),
                    features: rec.features,
                    true_label: label,
                    probability: Some(rec.score),
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
    let out = call
        .write(move || -> Result<Delivered, ApiError> {
            let active = s2.active();
            let p = crate::ops::predict::predict(
                &active.model,
                &active.manifest,
                &account,
                Explain::None,
            );
            let record = crate::store::feedback::NewFeedback {
                user_id: user_id.as_deref().map(crate::data::UserId::from),
                features: account.values.clone(),
                true_label: label,
                probability: Some(p.score),
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
pub(super) fn idempotency_key(
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
pub(super) fn canonical_json(v: &Value) -> String {
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
pub(super) struct Delivered(StatusCode, api::FeedbackResponse, bool);

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
pub(super) fn delivered(
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
