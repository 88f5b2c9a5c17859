//! The model and its versions: `/model/version`, `/model/info`, `/model/versions`,
//! a version's files, rollback and the shared model comparison.

use super::extract::*;
use crate::data::catalog::{Kind, catalog};
use crate::service::ApiError;
use crate::service::api::{self, ErrorBody};
use axum::Json;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::BTreeMap;

/// The active version: its number, training time and holdout metrics (role scorer).
#[utoipa::path(get, path = "/model/version", tag = "model",
    responses((status = 200, body = api::ModelVersion), AuthErrors))]
pub(super) async fn model_version(call: Call<Scorer>) -> Result<Json<api::ModelVersion>, ApiError> {
    let s = call.s.clone();
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
pub(super) async fn model_info(call: Call<Scorer>) -> Result<Json<api::ModelInfo>, ApiError> {
    let s = call.s.clone();
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
pub(super) async fn versions(call: Call<Moderator>) -> Result<Json<api::Versions>, ApiError> {
    let s = call.s.clone();
    let s2 = s.clone();
    let rows = call
        .read(move || -> Result<Vec<api::VersionRow>, crate::Error> {
            let (_, listed) = crate::ops::versions::list(&s2.registry)?;
            Ok(listed
                .iter()
                .map(|l| {
                    let mut row = api::VersionRow::from(l);
                    // Over HTTP, why a version is unreadable names no absolute path.
                    row.error = row.error.map(|e| crate::service::error::without_paths(&e));
                    row
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
pub(super) async fn version_file(
    call: Call<Moderator>,
    axum::extract::Path((version, name)): axum::extract::Path<(String, String)>,
) -> Result<Response, ApiError> {
    use crate::store::layout::{HOLDOUT_FILE, MANIFEST_FILE, MODEL_FILE};
    let s = call.s.clone();
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
    // Reading and hashing a model file (tens of MB): off the async workers.
    let (bytes, sum) = call
        .read(move || match s2.registry.version_file(v, &name) {
            Err(crate::store::StoreError::NoSuchVersion(_)) => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_version",
                format!("version {v} does not exist"),
            )),
            Ok(bytes) => {
                let sum = crate::util::hash::sha256_hex(&bytes);
                Ok((bytes, sum))
            }
            Err(e) => Err(ApiError::from(crate::Error::from(e))),
        })
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::HeaderName::from_static("x-checksum-sha256"), sum),
        ],
        bytes,
    )
        .into_response())
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
pub(super) async fn comparison_get(call: Call<Moderator>) -> Result<Response, ApiError> {
    let s = call.s.clone();
    let s2 = s.clone();
    let saved = call
        .read(move || crate::ops::compare::load_latest(&s2.registry))
        .await?;
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
pub(super) async fn comparison_put(
    call: Call<Admin>,
    body: Body,
) -> Result<Json<api::Message>, ApiError> {
    let s = call.s.clone();
    let caller = call.caller.clone();
    let bytes = call.body(body).await?;
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
    call.write(move || crate::ops::compare::save(&s2.registry, &saved))
        .await?;
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
pub(super) async fn rollback(
    call: Call<Admin>,
    body: Body,
) -> Result<Json<api::RollbackResponse>, ApiError> {
    let s = call.s.clone();
    let v = call.json(body).await?;
    let to = match v.get("to") {
        Some(Value::Number(n)) => n.as_u64().filter(|&n| n >= 1 && n <= u64::from(u32::MAX)),
        _ => None,
    }
    .ok_or_else(|| wrong_type("to".into(), "a version number (1 or more)"))? as u32;
    let s2 = s.clone();
    call.write(move || -> Result<(), ApiError> {
        match crate::ops::versions::rollback(&s2.registry, to) {
            Ok(_) => {}
            Err(crate::Error::Store(crate::store::StoreError::NoSuchVersion(v))) => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_such_version",
                    format!("version {v} does not exist"),
                )
                .with_field(Some("to".into())));
            }
            Err(e) => return Err(ApiError::from(e)),
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

/// RFC 3339 with an explicit offset (`+00:00`), which every Python `fromisoformat`
/// reads (the reference's client parses `last_retrain` with it).
pub(super) fn iso(t: &str) -> String {
    match t.strip_suffix('Z') {
        Some(head) => format!("{head}+00:00"),
        None => t.to_string(),
    }
}

/// When the newest version made from feedback (a retrain, with a gate) was trained.
pub(super) fn last_retrain(
    registry: &crate::store::Registry,
) -> Result<Option<String>, crate::Error> {
    Ok(registry
        .list()?
        .into_iter()
        .rev()
        .filter_map(|e| e.manifest.ok())
        .find(|m| m.gate.is_some())
        .map(|m| m.created_at))
}
