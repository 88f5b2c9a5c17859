//! A team's review: the recent traffic queue, confirmed labels, accounts and claims.

use super::extract::*;
use crate::service::ApiError;
use crate::service::api::{self, ErrorBody};
use axum::Json;
use axum::body::Body;
use axum::extract::Query;
use axum::http::StatusCode;
use serde_json::Value;

/// `GET /review/queue`'s query.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrafficQuery {
    /// Accounts to return, 1 to 10,000 (default 2,000).
    limit: Option<usize>,
    /// `traffic` (default): the newest scored accounts. `decisions`: the accounts the
    /// live policy sent to review (or decided more severely) that nobody reviewed since,
    /// most severe first, then highest score.
    source: Option<String>,
}

/// The team's review queue (role moderator), one row per account with its values, so a
/// moderator's app can rank and explain them locally: the accounts this service scored
/// most recently, newest first, or (`?source=decisions`) those the decision policy sent
/// to review and nobody reviewed since, with the rules that sent them.
#[utoipa::path(get, path = "/review/queue", tag = "review", params(TrafficQuery),
    responses(
        (status = 200, body = api::TrafficQueue),
        (status = 400, body = ErrorBody),
        AuthErrors,
    ))]
pub(super) async fn review_queue(
    call: Call<Moderator>,
    q: Result<Query<TrafficQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<api::TrafficQueue>, ApiError> {
    let s = call.s.clone();
    let (limit, decisions) = match q {
        Ok(Query(q)) => {
            let decisions = match q.source.as_deref().map(str::trim) {
                None | Some("traffic") => false,
                Some("decisions") => true,
                Some(other) => {
                    return Err(ApiError::bad_request(
                        "bad_query",
                        format!(
                            "source must be traffic or decisions (got {})",
                            crate::util::text::quote(other)
                        ),
                    )
                    .with_field(Some("source".into())));
                }
            };
            (q.limit.unwrap_or(2_000), decisions)
        }
        Err(e) => {
            return Err(
                ApiError::bad_request("bad_query", e.body_text()).with_field(Some("limit".into()))
            );
        }
    };
    let s2 = s.clone();
    let (active, running) = (s.active(), s.experiment());
    // A logged score in probability: through the calibration of its version when that
    // version is being served.
    let served = |version: u32| {
        std::iter::once(active.as_ref())
            .chain(running.as_deref().map(|r| &r.candidate))
            .find(|a| a.manifest.version == version)
            .filter(|a| a.model.calibration.is_some())
            .map(|a| &a.model)
    };
    let queue = call
        .read(move || {
            let _ = s2.log.flush();
            if !decisions {
                let rows = crate::ops::review::recent_traffic(&s2.log, limit)?;
                return Ok::<_, crate::Error>(crate::ops::review::DecisionQueue {
                    accounts: rows
                        .into_iter()
                        .map(|record| crate::ops::review::QueuedAccount {
                            record,
                            severity: 0,
                            claim: None,
                        })
                        .collect(),
                    waiting: 0,
                    oldest_decided_at: None,
                })
                .map(|q| (q, false));
            }
            decision_queue(&s2, limit).map(|q| (q, true))
        })
        .await?;
    let (queue, decided) = queue;
    let now = std::time::SystemTime::now();
    Ok(Json(api::TrafficQueue {
        waiting: decided.then_some(queue.waiting as u64),
        oldest_waiting_seconds: queue.oldest_decided_at.as_deref().map(|t| age(t, now)),
        accounts: queue
            .accounts
            .into_iter()
            .map(|q| {
                let r = q.record;
                let (decision, matched_rules, policy_version) = api::decision_fields(r.decision);
                api::TrafficAccount {
                    user_id: r.user_id.clone().unwrap_or_else(|| r.id.clone()),
                    probability: served(r.version).map_or(r.score, |m| m.probability(r.score)),
                    calibrated: served(r.version).is_some(),
                    score: r.score,
                    prediction_id: r.id,
                    created_at: r.created_at,
                    model_version: r.version,
                    features: r
                        .features
                        .iter()
                        .map(|v| v.is_finite().then_some(*v))
                        .collect(),
                    decision,
                    matched_rules,
                    policy_version,
                    claimed_by: q.claim.map(|c| c.moderator),
                }
            })
            .collect(),
    }))
}

/// The review queue filled by the live policy's decisions (empty while no policy is
/// live).
pub(super) fn decision_queue(
    s: &crate::service::State,
    limit: usize,
) -> Result<crate::ops::review::DecisionQueue, crate::Error> {
    let policies = s.policies();
    let Some(live) = &policies.live else {
        return Ok(Default::default());
    };
    let outcomes = live.compiled.policy.outcomes.clone();
    s.with_store(|st| {
        crate::ops::review::decision_queue(
            &s.log,
            st,
            &outcomes,
            limit,
            std::time::SystemTime::now(),
        )
    })
}

/// Seconds from RFC 3339 time `t` to `now` (0 for a time not read or in the future).
pub(super) fn age(t: &str, now: std::time::SystemTime) -> f64 {
    humantime::parse_rfc3339_weak(t)
        .ok()
        .and_then(|at| now.duration_since(at).ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The `user_ids` array of a review request: strings (or numbers, as text). How many
/// and whether each is a valid id is checked by `ops::review`.
pub(super) fn user_ids_of(v: &Value) -> Result<Vec<String>, ApiError> {
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
pub(super) fn path_user_id(id: &str) -> Result<String, ApiError> {
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
pub(super) async fn confirm_label(
    call: Call<Admin>,
    axum::extract::Path(user_id): axum::extract::Path<String>,
    body: Body,
) -> Result<Json<api::ConfirmLabelResponse>, ApiError> {
    let s = call.s.clone();
    let caller = call.caller.clone();
    let user_id = path_user_id(&user_id)?;
    let v = call.json(body).await?;
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
    let c = call
        .write(move || {
            s2.with_store(|st| {
                crate::ops::review::confirm_label_in(st, &user_id, label, &caller.name, &notes)
            })
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
pub(super) async fn account(
    call: Call<Moderator>,
    axum::extract::Path(user_id): axum::extract::Path<String>,
) -> Result<Json<api::AccountStatus>, ApiError> {
    let s = call.s.clone();
    let user_id = path_user_id(&user_id)?;
    let s2 = s.clone();
    let (a, logged) = call
        .read(move || {
            let a = s2.with_store(|st| crate::ops::review::account_in(st, &user_id))?;
            s2.log.flush()?;
            let logged = s2.log.of_user(&user_id, ACCOUNT_DECISIONS)?;
            Ok::<_, crate::Error>((a, logged))
        })
        .await?;
    let mut out: api::AccountStatus = a.into();
    out.decisions = logged.into_iter().map(Into::into).collect();
    Ok(Json(out))
}

/// Most logged predictions `GET /accounts/{user_id}` lists.
const ACCOUNT_DECISIONS: usize = 100;

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
pub(super) async fn claim(
    call: Call<Moderator>,
    body: Body,
) -> Result<Json<api::ClaimResponse>, ApiError> {
    let s = call.s.clone();
    let caller = call.caller.clone();
    let v = call.json(body).await?;
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
    let out = call
        .write(move || {
            s2.with_store(|st| {
                let now = std::time::SystemTime::now();
                crate::ops::review::claim_in(st, &ids, &caller.name, ttl, now)
            })
        })
        .await?;
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
pub(super) async fn release(
    call: Call<Moderator>,
    body: Body,
) -> Result<Json<api::ReleaseResponse>, ApiError> {
    let s = call.s.clone();
    let caller = call.caller.clone();
    let v = call.json(body).await?;
    let ids = user_ids_of(&v)?;
    let s2 = s.clone();
    let released = call
        .write(move || s2.with_store(|st| crate::ops::review::release_in(st, &ids, &caller.name)))
        .await?;
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
pub(super) async fn review_status(
    call: Call<Moderator>,
    body: Body,
) -> Result<Json<api::ReviewStatus>, ApiError> {
    let s = call.s.clone();
    let v = call.json(body).await?;
    let ids = user_ids_of(&v)?;
    let s2 = s.clone();
    let accounts = call
        .read(move || {
            s2.with_store(|st| {
                crate::ops::review::status_in(st, &ids, std::time::SystemTime::now())
            })
        })
        .await?;
    Ok(Json(api::ReviewStatus {
        accounts: accounts.into_iter().map(Into::into).collect(),
    }))
}
