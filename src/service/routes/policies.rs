//! Decision policies: `/policies` (kept drafts, the live one, publishing) and
//! `/policies/shadow` (a draft run beside the live policy, and how it does).

use super::extract::*;
use crate::eval::policy::{CompiledPolicy, Policy, PolicyError};
use crate::ops::policy as ops;
use crate::service::api::{self, ErrorBody};
use crate::service::{ApiError, State};
use axum::Json;
use axum::body::Body;
use axum::extract::Path;

/// The kept policies, newest first, with the live one and the shadow (role moderator).
#[utoipa::path(get, path = "/policies", tag = "policies",
    responses((status = 200, body = api::PolicyList), AuthErrors))]
pub(super) async fn policies_list(
    call: Call<Moderator>,
) -> Result<Json<api::PolicyList>, ApiError> {
    let s = call.s.clone();
    let out = call
        .read(move || -> Result<api::PolicyList, crate::Error> {
            let p = s.registry.policy_pointers()?;
            Ok(api::PolicyList {
                live: p.live,
                shadow: p.shadow,
                policies: ops::list(&s.registry)?,
            })
        })
        .await?;
    Ok(Json(out))
}

/// A policy's CEL error as a request error naming the rule's condition
/// (`rules[2].when`), its line and column in the message.
fn policy_error(e: PolicyError) -> ApiError {
    let field = match &e {
        PolicyError::Condition { number, .. } => Some(format!("rules[{}].when", number - 1)),
        PolicyError::Invalid(_) => Some("rules".into()),
    };
    ApiError::bad_request("invalid_policy", e.to_string()).with_field(field)
}

/// Keeps a draft policy by the caller (role moderator): it must compile (a condition
/// that does not parse or names an unknown feature is refused with its rule, line and
/// column). Answers with the draft and its diff against the live policy.
#[utoipa::path(post, path = "/policies", tag = "policies",
    request_body = api::PolicyDraft,
    responses(
        (status = 200, body = api::PolicyDetail),
        (status = 400, description = "Not a policy, or a rule that does not compile", body = ErrorBody),
        AuthErrors,
    ))]
pub(super) async fn policies_draft(
    call: Call<Moderator>,
    body: Body,
) -> Result<Json<api::PolicyDetail>, ApiError> {
    let s = call.s.clone();
    let caller = call.caller.clone();
    let v = call.json(body).await?;
    let draft: api::PolicyDraft = serde_json::from_value(v).map_err(|e| {
        ApiError::bad_request(
            "invalid_policy",
            format!(
                "not a policy ({}): expected {{\"rules\": [{{\"name\", \"when\", \"outcome\"}}], \"outcomes\"?, \"note\"?}}",
                crate::util::text::clip(&e.to_string())
            ),
        )
    })?;
    let policy = Policy {
        outcomes: draft.outcomes.unwrap_or_else(|| {
            crate::eval::policy::DEFAULT_OUTCOMES
                .iter()
                .map(|s| s.to_string())
                .collect()
        }),
        rules: draft.rules,
    };
    let note = draft.note.unwrap_or_default();
    // Compiling is CPU work (seconds for the largest policies): off the async workers.
    let out = call
        .write(move || -> Result<api::PolicyDetail, ApiError> {
            let compiled = CompiledPolicy::compile(&policy).map_err(policy_error)?;
            let r = ops::save_compiled(&s.registry, &compiled, &caller.name, &note)?;
            Ok(detail(&s, r.version)?)
        })
        .await?;
    Ok(Json(out))
}

/// Policy `n` with its status and diff against the live policy.
fn detail(s: &State, n: u32) -> Result<api::PolicyDetail, crate::Error> {
    let entry = ops::get(&s.registry, n)?;
    let live = s.registry.policy_pointers()?.live.filter(|&l| l != n);
    let against = live.map(|l| ops::get(&s.registry, l)).transpose()?;
    Ok(api::PolicyDetail {
        diff: ops::diff(
            against.as_ref().map(|a| &a.record.policy),
            &entry.record.policy,
        ),
        against: against.map(|a| a.record.version),
        policy: entry,
    })
}

fn policy_number(n: &str) -> Result<u32, ApiError> {
    n.trim()
        .parse::<u32>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_value",
                format!(
                    "a policy version is a number from 1 (got {})",
                    crate::util::text::quote(n)
                ),
            )
            .with_field(Some("version".into()))
        })
}

/// One kept policy and its diff against the live one (role moderator).
#[utoipa::path(get, path = "/policies/{version}", tag = "policies",
    params(("version" = u32, Path, description = "A policy version of `GET /policies`")),
    responses(
        (status = 200, body = api::PolicyDetail),
        AuthErrors,
        (status = 404, description = "No such policy", body = ErrorBody),
    ))]
pub(super) async fn policy_get(
    call: Call<Moderator>,
    Path(version): Path<String>,
) -> Result<Json<api::PolicyDetail>, ApiError> {
    let n = policy_number(&version)?;
    let s = call.s.clone();
    Ok(Json(call.read(move || detail(&s, n)).await?))
}

/// Publishes kept policy `version` by the caller (role admin): it decides every request
/// from now on, on every replica (this one at once, the others within a second); the
/// policy live before is retired. Answers with its diff against that policy.
#[utoipa::path(post, path = "/policies/{version}/publish", tag = "policies",
    params(("version" = u32, Path, description = "A kept policy")),
    responses(
        (status = 200, body = api::PolicyDetail),
        AuthErrors,
        (status = 404, description = "No such policy", body = ErrorBody),
    ))]
pub(super) async fn policy_publish(
    call: Call<Admin>,
    Path(version): Path<String>,
) -> Result<Json<api::PolicyDetail>, ApiError> {
    let n = policy_number(&version)?;
    let s = call.s.clone();
    let caller = call.caller.clone();
    let out = call
        .write(move || -> Result<api::PolicyDetail, crate::Error> {
            let before = s.registry.policy_pointers()?.live;
            ops::publish(&s.registry, n, &caller.name)?;
            s.refresh_policies()?;
            let entry = ops::get(&s.registry, n)?;
            let before = before
                .filter(|&b| b != n)
                .map(|b| ops::get(&s.registry, b))
                .transpose()?;
            Ok(api::PolicyDetail {
                diff: ops::diff(
                    before.as_ref().map(|b| &b.record.policy),
                    &entry.record.policy,
                ),
                against: before.map(|b| b.record.version),
                policy: entry,
            })
        })
        .await?;
    Ok(Json(out))
}

/// The shadow policy's status and numbers.
fn shadow_status(s: &State, message: String) -> Result<api::ShadowStatus, crate::Error> {
    let p = s.registry.policy_pointers()?;
    let labels = s.with_store(|st| Ok(st.labels()?))?;
    let stats = ops::running_shadow_stats(&s.registry, &s.log, &labels)?;
    Ok(api::ShadowStatus {
        running: p.shadow.is_some(),
        live: p.live,
        shadow: p.shadow,
        stats,
        message,
    })
}

/// Runs kept policy `version` in shadow beside the live one (role moderator): every
/// request is decided by both, the live one answers, the shadow's decision is logged.
#[utoipa::path(post, path = "/policies/{version}/shadow", tag = "policies",
    params(("version" = u32, Path, description = "A kept policy, not the live one")),
    responses(
        (status = 200, body = api::ShadowStatus),
        (status = 400, description = "The policy is the live one", body = ErrorBody),
        AuthErrors,
        (status = 404, description = "No such policy", body = ErrorBody),
    ))]
pub(super) async fn shadow_start(
    call: Call<Moderator>,
    Path(version): Path<String>,
) -> Result<Json<api::ShadowStatus>, ApiError> {
    let n = policy_number(&version)?;
    let s = call.s.clone();
    let caller = call.caller.clone();
    let out = call
        .write(move || -> Result<api::ShadowStatus, crate::Error> {
            ops::set_shadow(&s.registry, Some(n), &caller.name)?;
            s.refresh_policies()?;
            shadow_status(&s, format!("policy {n} runs in shadow"))
        })
        .await?;
    Ok(Json(out))
}

/// The shadow policy and how it does (role moderator): predictions it decided, its
/// agreement with the live policy, the decisions it changes, and per outcome its
/// precision on labelled predictions beside the live policy's.
#[utoipa::path(get, path = "/policies/shadow", tag = "policies",
    responses((status = 200, body = api::ShadowStatus), AuthErrors))]
pub(super) async fn shadow_get(call: Call<Moderator>) -> Result<Json<api::ShadowStatus>, ApiError> {
    let s = call.s.clone();
    let out = call
        .read(move || {
            let msg = match s.registry.policy_pointers()?.shadow {
                Some(n) => format!("policy {n} runs in shadow"),
                None => "no policy runs in shadow".into(),
            };
            shadow_status(&s, msg)
        })
        .await?;
    Ok(Json(out))
}

/// Stops the shadow (role moderator), answering with its final numbers.
#[utoipa::path(delete, path = "/policies/shadow", tag = "policies",
    responses(
        (status = 200, body = api::ShadowStatus),
        AuthErrors,
        (status = 404, description = "No policy runs in shadow", body = ErrorBody),
    ))]
pub(super) async fn shadow_stop(
    call: Call<Moderator>,
) -> Result<Json<api::ShadowStatus>, ApiError> {
    let s = call.s.clone();
    let caller = call.caller.clone();
    let out = call
        .write(move || -> Result<api::ShadowStatus, ApiError> {
            let Some(n) = s
                .registry
                .policy_pointers()
                .map_err(crate::Error::from)?
                .shadow
            else {
                return Err(ApiError::new(
                    axum::http::StatusCode::NOT_FOUND,
                    "no_shadow",
                    "no policy runs in shadow",
                ));
            };
            let mut st = shadow_status(&s, String::new())?;
            ops::set_shadow(&s.registry, None, &caller.name)?;
            s.refresh_policies()?;
            st.running = false;
            st.shadow = None;
            st.message = format!("policy {n} no longer runs in shadow");
            Ok(st)
        })
        .await?;
    Ok(Json(out))
}
