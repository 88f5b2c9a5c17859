//! Background jobs: `/model/retrain` and `/jobs/{id}`.

use super::extract::*;
use crate::service::api::{self, ErrorBody};
use crate::service::{ApiError, State};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Reports a job's progress into the service's jobs (the store's, on a shared one:
/// other replicas follow it there).
pub(super) struct JobProgress {
    state: Arc<State>,
    id: u64,
    /// When progress was last written (a shared store is written at most every
    /// [`PROGRESS_EVERY`], besides stage changes).
    last: std::sync::Mutex<(std::time::Instant, String)>,
}

/// How often a job's progress is written at most, within one stage.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl crate::util::progress::Reporter for JobProgress {
    fn stage(&self, stage: &str, done: usize, total: usize) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.1 == stage && last.0.elapsed() < PROGRESS_EVERY && done < total {
            return;
        }
        *last = (std::time::Instant::now(), stage.to_string());
        self.state.jobs.progress(self.id, stage, done, total);
    }
}

/// Retrains from the stored feedback (role admin): the online-learning path with its
/// promotion gate, on a worker thread. Answers at once with a job id; follow it at
/// `/jobs/{id}` (on any replica). One retrain at a time per service, across all its
/// replicas (409).
#[utoipa::path(post, path = "/model/retrain", tag = "model",
    responses(
        (status = 202, body = api::JobAccepted),
        AuthErrors,
        (status = 409, description = "A retrain is already running", body = ErrorBody),
    ))]
pub(super) async fn retrain(call: Call<Admin>) -> Result<Response, ApiError> {
    let s = call.s.clone();
    let by = call.caller.name.clone();
    let started = call
        .write(move || s.jobs.start("retrain", &by).map_err(crate::Error::from))
        .await?;
    let id = match started {
        crate::store::jobs::Started::New(id) => id,
        crate::store::jobs::Started::Running(id) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "busy",
                format!("retrain job {id} is still running"),
            ));
        }
    };
    let s2 = call.s.clone();
    std::thread::spawn(move || {
        let progress = JobProgress {
            state: s2.clone(),
            id,
            last: std::sync::Mutex::new((std::time::Instant::now(), String::new())),
        };
        let outcome = s2.jobs.while_running(id, || {
            crate::ops::online::OnlineLearningConfig::load(&s2.registry)
                .and_then(|cfg| crate::ops::online::retrain(&s2.registry, &cfg, &progress))
        });
        if let Err(e) = s2.refresh_active() {
            tracing::warn!("after the retrain: {e}");
        }
        let outcome = outcome
            .map(|o| {
                serde_json::to_string(&api::RetrainResult::from(&o))
                    .expect("a retrain result always serialises")
            })
            .map_err(|e| e.to_string());
        if let Err(e) = s2.jobs.finish(id, outcome) {
            tracing::error!("retrain job {id}: its end was not recorded: {e}");
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
pub(super) async fn job(
    call: Call<Admin>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<api::Job>, ApiError> {
    let s = call.s.clone();
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request("bad_path", "the job id must be a number")
            .with_field(Some("id".into()))
    })?;
    let found = call
        .read(move || s.jobs.get(id).map_err(crate::Error::from))
        .await?;
    let Some(j) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_job",
            format!("no job {id}"),
        ));
    };
    let result = match j
        .result
        .as_deref()
        .map(serde_json::from_str::<api::RetrainResult>)
    {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            return Err(crate::Error::Invalid(format!(
                "job {id}: its stored result is unreadable: {e}"
            ))
            .into());
        }
    };
    Ok(Json(api::Job {
        id: j.id,
        kind: j.kind,
        state: j.state,
        stage: j.stage,
        done: j.done,
        total: j.total,
        started_by: j.started_by,
        result,
        error: j.error,
    }))
}
