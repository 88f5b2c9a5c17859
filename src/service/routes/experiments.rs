//! Shadow and canary experiments: `/model/experiment` and its promotion.

use super::extract::*;
use crate::service::api::{self, ErrorBody};
use crate::service::{ApiError, State};
use axum::Json;
use axum::body::Body;
use serde_json::Value;

/// The running experiment's status (and numbers) for a response.
pub(super) fn experiment_status(
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
pub(super) async fn experiment_start(
    call: Call<Admin>,
    body: Body,
) -> Result<Json<api::ExperimentStatus>, ApiError> {
    let s = call.s.clone();
    let caller = call.caller.clone();
    let v = call.json(body).await?;
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
    let out = call
        .write(move || -> Result<api::ExperimentStatus, ApiError> {
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
pub(super) async fn experiment_get(
    call: Call<Moderator>,
) -> Result<Json<api::ExperimentStatus>, ApiError> {
    let s = call.s.clone();
    let s2 = s.clone();
    let out = call
        .read(move || -> Result<api::ExperimentStatus, ApiError> {
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
pub(super) async fn experiment_stop(
    call: Call<Admin>,
) -> Result<Json<api::ExperimentStatus>, ApiError> {
    let s = call.s.clone();
    let s2 = s.clone();
    let out = call
        .write(move || -> Result<api::ExperimentStatus, ApiError> {
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
pub(super) async fn experiment_promote(
    call: Call<Admin>,
) -> Result<Json<api::ExperimentPromoted>, ApiError> {
    let s = call.s.clone();
    let s2 = s.clone();
    let out = call
        .write(move || -> Result<api::ExperimentPromoted, ApiError> {
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
