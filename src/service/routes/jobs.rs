//! Background jobs: `/model/retrain` and `/jobs/{id}`.

use super::extract::*;
use crate::service::api::{self, ErrorBody};
use crate::service::{ApiError, State};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Reports a job's progress into the state's job table.
pub(super) struct JobProgress {
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

pub(super) fn s_jobs(s: &State) -> std::sync::MutexGuard<'_, Vec<api::Job>> {
    s.jobs.lock().unwrap_or_else(|p| p.into_inner())
}

/// Most finished jobs kept for `GET /jobs/{id}`.
pub(super) const KEEP_JOBS: usize = 100;

/// Retrains from the stored feedback (role admin): the online-learning path with its
/// promotion gate, on a worker thread. Answers at once with a job id; follow it at
/// `/jobs/{id}`. One retrain at a time per service (409).
#[utoipa::path(post, path = "/model/retrain", tag = "model",
    responses(
        (status = 202, body = api::JobAccepted),
        AuthErrors,
        (status = 409, description = "A retrain is already running", body = ErrorBody),
    ))]
pub(super) async fn retrain(call: Call<Admin>) -> Result<Response, ApiError> {
    let s = call.s.clone();
    let caller = call.caller.clone();
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
pub(super) async fn job(
    call: Call<Admin>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<api::Job>, ApiError> {
    let s = call.s.clone();
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
