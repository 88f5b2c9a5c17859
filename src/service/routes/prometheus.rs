//! `/metrics`: Prometheus' text format.

use super::extract::*;
use super::versions::*;
use crate::data::catalog::catalog;
use crate::service::ApiError;
use axum::http::header;
use axum::response::{IntoResponse, Response};

/// How many of the newest logged predictions the drift gauges are computed on.
pub(super) const DRIFT_WINDOW: usize = 5_000;

/// Prometheus text format (role scorer): requests by route and status, latency
/// histograms, verdicts, active version, feedback counts, last retrain, and the
/// population stability index of recent requests per feature.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses(
        (status = 200, description = "Prometheus exposition format 0.0.4", body = String, content_type = "text/plain"),
        AuthErrors,
    ))]
pub(super) async fn prometheus(call: Call<Scorer>) -> Result<Response, ApiError> {
    let s = call.s.clone();
    let s2 = s.clone();
    let text = call.read(move || -> Result<String, crate::Error> {
        let mut out = String::new();
        s2.metrics.render(&mut out);
        let a = s2.active();
        out.push_str("# HELP spamscope_active_version The model version answering requests.\n# TYPE spamscope_active_version gauge\n");
        out.push_str(&format!("spamscope_active_version {}\n", a.manifest.version));
        let (unlinked, unused, stats) = s2.with_store(|store| {
            Ok((
                store.unlinked_counts()?.0,
                store.count_unused()?,
                store.stats()?,
            ))
        })?;
        // The statistics count every linked record (by version, with or without one).
        let linked = stats.total;
        out.push_str("# HELP spamscope_feedback_total Feedback records stored.\n# TYPE spamscope_feedback_total gauge\n");
        out.push_str(&format!("spamscope_feedback_total{{linked=\"true\"}} {linked}\n"));
        out.push_str(&format!("spamscope_feedback_total{{linked=\"false\"}} {unlinked}\n"));
        out.push_str(&format!("spamscope_feedback_unused {unused}\n"));
        // The model's agreement with moderators per version: agreed / judged (the
        // active version marked, for alert rules).
        type Count = fn(&crate::store::feedback::VersionStats) -> u64;
        let families: [(&str, &str, Count); 2] = [
            ("judged", "Feedback records on a version's verdicts.", |v| v.judged),
            ("agreed", "Of those, records whose label matched the verdict.", |v| v.agreed),
        ];
        for (name, help, count) in families {
            out.push_str(&format!(
                "# HELP spamscope_feedback_{name} {help}\n# TYPE spamscope_feedback_{name} gauge\n"
            ));
            for v in &stats.by_version {
                let Some(version) = v.version else { continue };
                out.push_str(&format!(
                    "spamscope_feedback_{name}{{version=\"{version}\",active=\"{}\"}} {}\n",
                    version == a.manifest.version,
                    count(v)
                ));
            }
        }
        if let Some(t) = last_retrain(&s2.registry)?
            .and_then(|t| humantime::parse_rfc3339_weak(&t).ok())
        {
            let secs = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            out.push_str("# HELP spamscope_last_retrain_timestamp_seconds When the newest version made from feedback was trained.\n# TYPE spamscope_last_retrain_timestamp_seconds gauge\n");
            out.push_str(&format!("spamscope_last_retrain_timestamp_seconds {secs}\n"));
        }
        out.push_str("# HELP spamscope_predictions_dropped_total Predictions the log did not store (queue full, database away beyond its bound).\n# TYPE spamscope_predictions_dropped_total counter\n");
        out.push_str(&format!("spamscope_predictions_dropped_total {}\n", s2.log.dropped()));
        if let Some(t) = crate::service::telemetry::counts() {
            use std::sync::atomic::Ordering::Relaxed;
            out.push_str("# HELP spamscope_traces_spans_total Trace spans by what became of them (exported, dropped: queue full, failed: the collector refused).\n# TYPE spamscope_traces_spans_total counter\n");
            for (outcome, n) in [
                ("exported", t.exported.load(Relaxed)),
                ("dropped", t.dropped.load(Relaxed)),
                ("failed", t.failed.load(Relaxed)),
            ] {
                out.push_str(&format!(
                    "spamscope_traces_spans_total{{outcome=\"{outcome}\"}} {n}\n"
                ));
            }
        }
        out.push_str("# HELP spamscope_requests_in_flight Requests being handled, with their blocking work.\n# TYPE spamscope_requests_in_flight gauge\n");
        out.push_str(&format!("spamscope_requests_in_flight {}\n", s2.in_flight()));
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
