//! Alerts to a webhook: drift, an experiment's agreement dropping, the service's error
//! rate. Any front-end raises them through one [`WebhookSender`]: `send` never blocks
//! (it queues, or drops and counts when the queue is full), one background thread POSTs
//! each alert as JSON with a short timeout, retrying connection errors and 5xx answers
//! with exponential backoff, and an alert kind sent recently is not sent again within
//! the de-duplication window. Plain threads, no async runtime: callable from the
//! service's watcher, the app's UI thread or a worker alike.
//!
//! The body: `{"kind": "error_rate", "message": "...", "version": 3, "at": RFC 3339,
//! "details": {...}}`.

use crate::util::url::UrlError;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Recent requests' features moved away from the training data.
    Drift,
    /// A running experiment's versions disagree on too many requests.
    AgreementDrop,
    /// Too many requests failed with a server error.
    ErrorRate,
}

impl AlertKind {
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::Drift => "drift",
            AlertKind::AgreementDrop => "agreement_drop",
            AlertKind::ErrorRate => "error_rate",
        }
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    /// One line for a human.
    pub message: String,
    /// The model version concerned, if one is.
    pub version: Option<u32>,
    /// Numbers behind it (a JSON object).
    pub details: serde_json::Value,
}

/// The JSON posted: the alert and when it was raised.
#[derive(Debug, Clone, Serialize)]
struct Payload {
    #[serde(flatten)]
    alert: Alert,
    at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("webhook URL must start with http:// or https:// (got {0})")]
    Scheme(String),
    #[error("webhook URL is not a valid URL with a host (got {0})")]
    Invalid(String),
    #[error("cannot start the webhook sender: {0}")]
    Thread(String),
}

/// Checks a webhook URL: http or https, with a host (see
/// [`crate::util::url::check_webhook_url`]).
pub fn check_url(url: &str) -> Result<(), AlertError> {
    crate::util::url::check_webhook_url(url).map_err(|e| match e {
        UrlError::Scheme(u) => AlertError::Scheme(u),
        UrlError::Invalid(u) => AlertError::Invalid(u),
    })
}

/// How the sender works; [`WebhookConfig::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    pub url: String,
    /// Alerts waiting for the thread at most; more are dropped (and counted).
    pub queue: usize,
    /// An alert kind is sent at most once per this long.
    pub dedup: Duration,
    /// Longest time one POST may take.
    pub timeout: Duration,
    /// Waits before the 2nd, 3rd, ... try: one try more than waits.
    pub backoff: Vec<Duration>,
}

impl WebhookConfig {
    /// Defaults: a queue of 64, one alert per kind per 10 minutes, 5 s per try, 5
    /// tries after 0.5, 1, 2 and 4 s.
    pub fn new(url: impl Into<String>) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            queue: 64,
            dedup: Duration::from_secs(600),
            timeout: Duration::from_secs(5),
            backoff: [500, 1000, 2000, 4000].map(Duration::from_millis).to_vec(),
        }
    }
}

/// What [`WebhookSender::send`] did with an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Queued for the thread.
    Queued,
    /// The same kind was queued within the de-duplication window: not sent.
    Duplicate,
    /// The queue was full (or the thread is gone): dropped.
    Dropped,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    duplicates: AtomicU64,
}

/// Posts alerts to a webhook from a background thread. Dropping it lets the thread
/// finish the alerts queued, then end.
pub struct WebhookSender {
    url: String,
    dedup: Duration,
    tx: SyncSender<Payload>,
    last: Mutex<HashMap<AlertKind, Instant>>,
    counters: Arc<Counters>,
}

impl WebhookSender {
    /// Checks the URL and starts the thread.
    pub fn start(cfg: WebhookConfig) -> Result<WebhookSender, AlertError> {
        WebhookSender::start_shared(cfg, None)
    }

    /// [`WebhookSender::start`], with the window kept in `ledger` as well when it is a
    /// shared store: then each kind is sent once per window by all the replicas
    /// together (the first to take it sends; the others count a duplicate). A store
    /// that does not answer does not hold an alert back.
    pub fn start_shared(
        cfg: WebhookConfig,
        ledger: Option<crate::store::Registry>,
    ) -> Result<WebhookSender, AlertError> {
        check_url(&cfg.url)?;
        let (tx, rx) = sync_channel(cfg.queue.max(1));
        let counters = Arc::new(Counters::default());
        let poster = Poster {
            url: cfg.url.trim().to_string(),
            timeout: cfg.timeout,
            backoff: cfg.backoff.clone(),
            counters: counters.clone(),
            dedup: cfg.dedup,
            ledger: ledger.filter(|r| r.shared().is_some()),
        };
        std::thread::Builder::new()
            .name("alert-webhook".into())
            .spawn(move || poster.run(rx))
            .map_err(|e| AlertError::Thread(e.to_string()))?;
        Ok(WebhookSender {
            url: cfg.url.trim().to_string(),
            dedup: cfg.dedup,
            tx,
            last: Mutex::new(HashMap::new()),
            counters,
        })
    }

    /// A sender to `url` with the default behaviour (what the app and the service use;
    /// [`WebhookSender::start`] takes other settings).
    pub fn to(url: &str) -> Result<WebhookSender, AlertError> {
        WebhookSender::start(WebhookConfig::new(url.to_string()))
    }

    /// The sender a process uses: to `explicit` (the service's `--webhook`) when given,
    /// else to the registry's setting (`webhook_url` in `online.ron`, see
    /// [`crate::ops::settings`]); None when neither names one. A bad URL is an error
    /// naming where it came from.
    pub fn from_registry(
        registry: &crate::store::Registry,
        explicit: Option<&str>,
    ) -> Result<Option<WebhookSender>, crate::Error> {
        let (url, from) = match explicit {
            Some(url) => (url.to_string(), "--webhook"),
            None => match crate::ops::settings::OnlineLearningConfig::load(registry)?.webhook_url {
                Some(url) => (url, "webhook_url in online.ron"),
                None => return Ok(None),
            },
        };
        WebhookSender::start_shared(WebhookConfig::new(url), Some(registry.clone()))
            .map(Some)
            .map_err(|e| crate::Error::Invalid(format!("{from}: {e}")))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Queues `alert` without waiting: unless its kind was queued within the
    /// de-duplication window, or the queue is full (then it is dropped and counted).
    pub fn send(&self, alert: Alert) -> Sent {
        let now = Instant::now();
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = last.get(&alert.kind)
                && now.duration_since(*t) < self.dedup
            {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                return Sent::Duplicate;
            }
            last.insert(alert.kind, now);
        }
        let payload = Payload {
            at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            alert,
        };
        match self.tx.try_send(payload) {
            Ok(()) => Sent::Queued,
            Err(TrySendError::Full(p) | TrySendError::Disconnected(p)) => {
                // Not sent: the kind may be tried again at once.
                let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                if last.get(&p.alert.kind) == Some(&now) {
                    last.remove(&p.alert.kind);
                }
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                Sent::Dropped
            }
        }
    }

    /// Alerts the receiver answered with 2xx.
    pub fn delivered(&self) -> u64 {
        self.counters.delivered.load(Ordering::Relaxed)
    }
    /// Alerts given up on (every try failed, or a 4xx answer).
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }
    /// Alerts dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
    /// Alerts not sent because their kind was sent within the window (by this sender,
    /// or by another replica sharing the store).
    pub fn duplicates(&self) -> u64 {
        self.counters.duplicates.load(Ordering::Relaxed)
    }
}

struct Poster {
    url: String,
    timeout: Duration,
    backoff: Vec<Duration>,
    counters: Arc<Counters>,
    dedup: Duration,
    /// A shared store keeping the window for every replica.
    ledger: Option<crate::store::Registry>,
}

/// What one try came to.
enum Try {
    Done,
    Retry(String),
    GiveUp(String),
}

impl Poster {
    fn run(self, rx: Receiver<Payload>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        while let Ok(p) = rx.recv() {
            let kind = p.alert.kind.name();
            let claimed = match &self.ledger {
                None => true,
                Some(r) => r.claim_alert(kind, self.dedup).unwrap_or_else(|e| {
                    tracing::warn!("alert {kind}: sent without the replicas' window: {e}");
                    true
                }),
            };
            if !claimed {
                // Another replica sent this kind within the window.
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if !self.deliver(&agent, &p)
                && let Some(r) = &self.ledger
                && let Err(e) = r.release_alert(kind)
            {
                tracing::warn!("alert {kind}: {e}");
            }
        }
    }

    /// Posts `p` (trying again as configured); whether it was delivered.
    fn deliver(&self, agent: &ureq::Agent, p: &Payload) -> bool {
        let mut waits = self.backoff.iter();
        let mut tries = 0;
        loop {
            tries += 1;
            let outcome = match agent.post(&self.url).send_json(p) {
                Ok(res) if res.status().is_success() => Try::Done,
                Ok(res) if res.status().is_server_error() => {
                    Try::Retry(format!("answered {}", res.status()))
                }
                Ok(res) => Try::GiveUp(format!("answered {}", res.status())),
                Err(
                    e @ (ureq::Error::Io(_)
                    | ureq::Error::Timeout(_)
                    | ureq::Error::HostNotFound
                    | ureq::Error::ConnectionFailed),
                ) => Try::Retry(e.to_string()),
                Err(e) => Try::GiveUp(e.to_string()),
            };
            let why = match outcome {
                Try::Done => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Try::Retry(why) => match waits.next() {
                    Some(wait) => {
                        tracing::debug!(
                            "alert webhook {}: try {tries} failed ({why}); again in {} ms",
                            self.url,
                            wait.as_millis()
                        );
                        std::thread::sleep(*wait);
                        continue;
                    }
                    None => why,
                },
                Try::GiveUp(why) => why,
            };
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "alert webhook {}: gave up on a {} alert after {tries} tries: {why}",
                self.url,
                p.alert.kind.name()
            );
            return false;
        }
    }
}

/// An `error_rate` alert when more than `max_share` of at least `min_requests`
/// requests over the window failed with a server error.
pub fn error_rate_alert(
    requests: u64,
    server_errors: u64,
    window: Duration,
    min_requests: u64,
    max_share: f64,
    version: u32,
) -> Option<Alert> {
    if requests < min_requests || requests == 0 {
        return None;
    }
    let share = server_errors as f64 / requests as f64;
    (share > max_share).then(|| Alert {
        kind: AlertKind::ErrorRate,
        message: format!(
            "{server_errors} of {requests} requests ({:.1} %) failed with a server error in the last {} s",
            share * 100.0,
            window.as_secs()
        ),
        version: Some(version),
        details: serde_json::json!({
            "requests": requests,
            "server_errors": server_errors,
            "share": share,
            "window_seconds": window.as_secs(),
        }),
    })
}

/// An `agreement_drop` alert when the versions of a running experiment agreed on less
/// than `floor` of at least `min_requests` requests both scored.
pub fn agreement_alert(
    e: &crate::ops::experiment::Experiment,
    s: &crate::ops::experiment::Stats,
    min_requests: u64,
    floor: f64,
) -> Option<Alert> {
    let agreement = s.agreement?;
    (s.both_scored >= min_requests && agreement < floor).then(|| Alert {
        kind: AlertKind::AgreementDrop,
        message: format!(
            "experiment {}: version {} agrees with the active version on {:.1} % of {} requests (below {:.0} %)",
            e.id,
            e.candidate,
            agreement * 100.0,
            s.both_scored,
            floor * 100.0
        ),
        version: Some(e.candidate),
        details: serde_json::json!({
            "experiment": e.id,
            "mode": e.mode.name(),
            "candidate": e.candidate,
            "both_scored": s.both_scored,
            "agreed": s.agreed,
            "agreement": agreement,
        }),
    })
}

/// Population stability index above which a feature counts as drifted (the usual mark
/// of a significant shift).
pub const DRIFT_PSI: f64 = 0.25;

/// A `drift` alert when any feature's population stability index (`(feature id,
/// PSI)`, e.g. from [`crate::eval::monitor::drift`]) is above `max_psi`; the details
/// list those features, largest first.
pub fn drift_alert(version: u32, psi: &[(String, f64)], max_psi: f64) -> Option<Alert> {
    let mut over: Vec<&(String, f64)> = psi
        .iter()
        .filter(|(_, v)| v.is_finite() && *v > max_psi)
        .collect();
    if over.is_empty() {
        return None;
    }
    over.sort_by(|a, b| b.1.total_cmp(&a.1));
    let names: Vec<&str> = over.iter().take(5).map(|(f, _)| f.as_str()).collect();
    Some(Alert {
        kind: AlertKind::Drift,
        message: format!(
            "{} feature(s) drifted from version {version}'s training data (PSI above {max_psi}): {}{}",
            over.len(),
            names.join(", "),
            if over.len() > names.len() {
                ", …"
            } else {
                ""
            }
        ),
        version: Some(version),
        details: serde_json::json!({
            "max_psi": max_psi,
            "features": over
                .iter()
                .map(|(f, v)| serde_json::json!({"feature": f, "psi": v}))
                .collect::<Vec<_>>(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_names_the_features_above_the_mark_largest_first() {
        let psi: Vec<(String, f64)> = [("X1", 0.1), ("X2", 0.4), ("X3", f64::NAN), ("X4", 0.3)]
            .map(|(f, v)| (f.to_string(), v))
            .to_vec();
        assert!(drift_alert(2, &psi[..1], DRIFT_PSI).is_none());
        let a = drift_alert(2, &psi, DRIFT_PSI).unwrap();
        assert_eq!((a.kind, a.version), (AlertKind::Drift, Some(2)));
        assert!(
            a.message.contains("2 feature(s)") && a.message.contains("X2, X4"),
            "{}",
            a.message
        );
        assert_eq!(a.details["features"][0]["feature"], "X2");
        assert_eq!(a.details["features"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_sender_refuses_what_the_url_check_refuses() {
        // The rule itself is tested in util::url.
        check_url("http://127.0.0.1:9000/hook").unwrap();
        assert!(
            WebhookSender::to("ftp://x/")
                .err()
                .unwrap()
                .to_string()
                .contains("webhook URL")
        );
    }

    #[test]
    fn error_rate_needs_enough_requests_and_a_high_share() {
        let w = Duration::from_secs(60);
        assert!(error_rate_alert(19, 19, w, 20, 0.05, 1).is_none());
        assert!(error_rate_alert(100, 5, w, 20, 0.05, 1).is_none());
        let a = error_rate_alert(100, 6, w, 20, 0.05, 3).unwrap();
        assert_eq!((a.kind, a.version), (AlertKind::ErrorRate, Some(3)));
        assert_eq!(a.details["server_errors"], 6);
    }

    #[test]
    fn agreement_drop_needs_enough_requests_and_low_agreement() {
        use crate::ops::experiment::{Experiment, Mode, Stats};
        let e = Experiment {
            id: "x1-v2".into(),
            mode: Mode::Shadow,
            candidate: 2,
            baseline: 1,
            share: None,
            started_at: "2026-01-01T00:00:00Z".into(),
            started_by: "t".into(),
        };
        let stats = |both: u64, agreed: u64| Stats {
            requests: both,
            answered_by_active: both,
            answered_by_candidate: 0,
            both_scored: both,
            agreed,
            agreement: (both > 0).then(|| agreed as f64 / both as f64),
            versions: Vec::new(),
        };
        assert!(agreement_alert(&e, &stats(0, 0), 100, 0.9).is_none());
        assert!(agreement_alert(&e, &stats(99, 0), 100, 0.9).is_none());
        assert!(agreement_alert(&e, &stats(100, 90), 100, 0.9).is_none());
        let a = agreement_alert(&e, &stats(100, 89), 100, 0.9).unwrap();
        assert_eq!((a.kind, a.version), (AlertKind::AgreementDrop, Some(2)));
        assert_eq!(a.details["agreed"], 89);
        assert!(a.message.contains("x1-v2") && !a.message.contains('\n'));
        let body = serde_json::to_value(&a).unwrap();
        assert_eq!(body["kind"], "agreement_drop");
    }
}
