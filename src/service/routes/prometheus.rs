//! `/metrics`: Prometheus' text format.

use super::extract::*;
use super::versions::*;
use crate::data::catalog::catalog;
use crate::service::ApiError;
use axum::http::header;
use axum::response::{IntoResponse, Response};

/// How many of the newest logged predictions the drift gauges are computed on.
pub(super) const DRIFT_WINDOW: usize = 5_000;

/// How old a running experiment's numbers may be when scraped: computing them reads
/// every logged row of the experiment and every label (as `GET /model/experiment`
/// does), so a replica does it at most once a minute for `/metrics`.
pub(super) const EXPERIMENT_NUMBERS_MAX_AGE: std::time::Duration =
    std::time::Duration::from_secs(60);

/// Upper bounds of the review-time buckets, in seconds (a minute to a day).
const REVIEW_BUCKETS: [f64; 9] = [
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
];

/// How long the numbers that read the prediction log (the shadow's, the queue's) are
/// reused between scrapes.
const STORE_NUMBERS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10);

/// Prometheus text format (role scorer): requests by route and status, latency
/// histograms, verdicts, active version, feedback counts, a running experiment's
/// agreement and accuracy, open review claims, last retrain, and the population
/// stability index of recent requests per feature.
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
        family(&mut out, "spamscope_active_version", "gauge", "The model version answering requests.");
        out.push_str(&format!("spamscope_active_version {}\n", a.manifest.version));
        let now = std::time::SystemTime::now();
        let (unlinked, unused, stats, claims) = s2.with_store(|store| {
            Ok((
                store.unlinked_counts()?.0,
                store.count_unused()?,
                store.stats()?,
                store.open_review_claims(now)?,
            ))
        })?;
        // The statistics count every linked record (by version, with or without one).
        let linked = stats.total;
        family(&mut out, "spamscope_feedback_total", "gauge", "Feedback records stored.");
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
            family(&mut out, &format!("spamscope_feedback_{name}"), "gauge", help);
            for v in &stats.by_version {
                let Some(version) = v.version else { continue };
                out.push_str(&format!(
                    "spamscope_feedback_{name}{{version=\"{version}\",active=\"{}\"}} {}\n",
                    version == a.manifest.version,
                    count(v)
                ));
            }
        }
        // The running experiment's numbers, those of `GET /model/experiment`.
        if let Some(r) = s2.experiment() {
            let x = s2.experiment_stats_within(&r.experiment, EXPERIMENT_NUMBERS_MAX_AGE)?;
            family(&mut out, "spamscope_experiment_scored", "gauge", "Requests of the running experiment scored by both versions.");
            out.push_str(&format!("spamscope_experiment_scored {}\n", x.both_scored));
            family(&mut out, "spamscope_experiment_agreed", "gauge", "Of those, requests on which both versions' verdicts (each by its own threshold) agreed.");
            out.push_str(&format!("spamscope_experiment_agreed {}\n", x.agreed));
            type Count = fn(&crate::ops::experiment::VersionStats) -> u64;
            let families: [(&str, &str, Count); 2] = [
                ("labelled", "Requests of the running experiment a version scored whose account a moderator labelled (by prediction id, else user id).", |v| v.labelled),
                ("correct", "Of those, requests the version's verdict got right.", |v| v.correct),
            ];
            for (name, help, count) in families {
                family(&mut out, &format!("spamscope_experiment_{name}"), "gauge", help);
                for v in &x.versions {
                    out.push_str(&format!(
                        "spamscope_experiment_{name}{{version=\"{}\",arm=\"{}\"}} {}\n",
                        v.version,
                        if v.candidate { "candidate" } else { "active" },
                        count(v)
                    ));
                }
            }
        }
        // The review claims open now (unexpired, not released, not ended by the
        // holder's feedback) and the oldest one's age.
        family(&mut out, "spamscope_review_claims_open", "gauge", "Review claims open: taken by a moderator and not yet expired, released, or ended by the holder's feedback on the account.");
        out.push_str(&format!("spamscope_review_claims_open {}\n", claims.open));
        let oldest = claims.oldest_age(now).unwrap_or_default().as_secs_f64();
        family(&mut out, "spamscope_review_oldest_claim_seconds", "gauge", "Age of the oldest open review claim, since it was taken or last renewed (0 when none is open).");
        out.push_str(&format!("spamscope_review_oldest_claim_seconds {oldest}\n"));
        // Review time, claim to the holder's feedback, over every review kept.
        let times = s2.with_store(|store| Ok(store.review_times(&REVIEW_BUCKETS)?))?;
        family(&mut out, "spamscope_review_seconds", "histogram", "Review time: from a moderator's claim on an account to their feedback on it.");
        for (b, n) in &times.buckets {
            out.push_str(&format!("spamscope_review_seconds_bucket{{le=\"{b}\"}} {n}\n"));
        }
        out.push_str(&format!("spamscope_review_seconds_bucket{{le=\"+Inf\"}} {}\n", times.count));
        out.push_str(&format!("spamscope_review_seconds_sum {}\n", times.sum_seconds));
        out.push_str(&format!("spamscope_review_seconds_count {}\n", times.count));
        // The queue the live policy's decisions fill: accounts waiting, the oldest's age.
        let queue = s2.cached.queue.get_or(STORE_NUMBERS_MAX_AGE, || {
            let q = super::review::decision_queue(&s2, crate::ops::review::MAX_TRAFFIC)?;
            Ok::<_, crate::Error>((s2.policies().live.is_some()).then(|| {
                let oldest = q
                    .oldest_decided_at
                    .as_deref()
                    .map_or(0.0, |t| super::review::age(t, now));
                (q.waiting, oldest)
            }))
        })?;
        if let Some((waiting, oldest)) = queue {
            family(&mut out, "spamscope_review_queue_waiting", "gauge", "Accounts the live policy sent to review that nobody reviewed since (of the newest decisions read).");
            out.push_str(&format!("spamscope_review_queue_waiting {waiting}\n"));
            family(&mut out, "spamscope_review_queue_oldest_seconds", "gauge", "Age of the oldest of them, since the decision (0 when none waits).");
            out.push_str(&format!("spamscope_review_queue_oldest_seconds {oldest}\n"));
        }
        let p = s2.policies();
        if let Some(live) = &p.live {
            family(&mut out, "spamscope_policy_version", "gauge", "The decision policy deciding requests.");
            out.push_str(&format!("spamscope_policy_version {}\n", live.version));
        }
        // The shadow policy's agreement with the live one, and its decisions.
        let shadow = s2.cached.shadow.get_or(STORE_NUMBERS_MAX_AGE, || {
            let labels = s2.with_store(|st| Ok(st.labels()?))?;
            crate::ops::policy::running_shadow_stats(&s2.registry, &s2.log, &labels)
        })?;
        if let Some(x) = shadow {
            family(&mut out, "spamscope_shadow_policy_decided", "gauge", "Predictions the shadow policy decided.");
            out.push_str(&format!("spamscope_shadow_policy_decided{{policy_version=\"{}\"}} {}\n", x.policy_version, x.decided));
            family(&mut out, "spamscope_shadow_policy_agreed", "gauge", "Of those, predictions the live policy decided alike.");
            out.push_str(&format!("spamscope_shadow_policy_agreed{{policy_version=\"{}\"}} {}\n", x.policy_version, x.agreed));
        }
        if let Some(t) = last_retrain(&s2.registry)?
            .and_then(|t| humantime::parse_rfc3339_weak(&t).ok())
        {
            let secs = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            family(&mut out, "spamscope_last_retrain_timestamp_seconds", "gauge", "When the newest version made from feedback was trained.");
            out.push_str(&format!("spamscope_last_retrain_timestamp_seconds {secs}\n"));
        }
        family(&mut out, "spamscope_predictions_dropped_total", "counter", "Predictions the log did not store (queue full, database away beyond its bound).");
        out.push_str(&format!("spamscope_predictions_dropped_total {}\n", s2.log.dropped()));
        if let Some(t) = crate::service::telemetry::counts() {
            use std::sync::atomic::Ordering::Relaxed;
            family(&mut out, "spamscope_traces_spans_total", "counter", "Trace spans by what became of them (exported, dropped: queue full, failed: the collector refused).");
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
        if let Some(m) = s2.mlflow() {
            use std::sync::atomic::Ordering::Relaxed;
            family(&mut out, "spamscope_mlflow_syncs_total", "counter", "Syncs of the registry to MLflow by outcome (ok; failed: MLflow away or refusing, nothing lost; elsewhere: another replica was syncing).");
            for (outcome, n) in [
                ("ok", m.ok.load(Relaxed)),
                ("failed", m.failed.load(Relaxed)),
                ("elsewhere", m.elsewhere.load(Relaxed)),
            ] {
                out.push_str(&format!(
                    "spamscope_mlflow_syncs_total{{outcome=\"{outcome}\"}} {n}\n"
                ));
            }
            family(&mut out, "spamscope_mlflow_runs_logged_total", "counter", "Runs this replica logged to MLflow (versions and comparisons).");
            out.push_str(&format!(
                "spamscope_mlflow_runs_logged_total {}\n",
                m.logged.load(Relaxed)
            ));
        }
        family(&mut out, "spamscope_requests_in_flight", "gauge", "Requests being handled, with their blocking work.");
        out.push_str(&format!("spamscope_requests_in_flight {}\n", s2.in_flight()));
        // Drift of recent requests against the active version's training data.
        let recent = s2.log.recent(DRIFT_WINDOW)?;
        if let (Some(profiles), false) = (&a.manifest.profiles, recent.is_empty()) {
            let cat = catalog();
            let columns: Vec<Vec<f64>> = (0..crate::data::catalog::N_FEATURES)
                .map(|f| recent.iter().map(|r| r.features[f]).collect())
                .collect();
            let psi = crate::eval::monitor::drift(profiles, &columns);
            family(&mut out, "spamscope_feature_psi", "gauge", "Population stability index of the recent requests per feature.");
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

/// A metric family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
}
