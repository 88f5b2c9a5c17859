//! Alerts to a webhook: a local receiver gets the JSON, retries after 5xx answers,
//! de-duplication, and `send` never waiting on a receiver that is down.

use serde_json::{Value, json};
use spamscope::ops::alert::{Alert, AlertKind, Sent, WebhookConfig, WebhookSender};
use std::net::TcpListener;
use std::time::{Duration, Instant};

mod common;
use common::receiver;

fn quick(url: &str) -> WebhookConfig {
    WebhookConfig {
        backoff: [10, 20, 40, 80].map(Duration::from_millis).to_vec(),
        ..WebhookConfig::new(url)
    }
}

fn alert(kind: AlertKind) -> Alert {
    Alert {
        kind,
        message: "5 of 40 requests failed".into(),
        version: Some(3),
        details: json!({"requests": 40, "server_errors": 5}),
    }
}

/// Waits (at most a minute, so a broken sender fails the test instead of hanging it)
/// until `done` holds.
fn wait_until(done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(60), "gave up waiting");
        std::thread::sleep(Duration::from_millis(5));
    }
}

const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn the_receiver_gets_the_alert_as_json() {
    let (url, rx) = receiver(vec![]);
    let sender = WebhookSender::start(quick(&url)).unwrap();
    assert_eq!(sender.send(alert(AlertKind::ErrorRate)), Sent::Queued);
    let body = rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!(body["kind"], "error_rate");
    assert_eq!(body["message"], "5 of 40 requests failed");
    assert_eq!(body["version"], 3);
    assert_eq!(body["details"]["server_errors"], 5);
    humantime::parse_rfc3339(body["at"].as_str().unwrap()).unwrap();
    wait_until(|| sender.delivered() == 1);
    assert_eq!(sender.failed(), 0);
}

#[test]
fn server_errors_are_retried_and_a_client_error_is_not() {
    let (url, rx) = receiver(vec![500, 503, 200, 400]);
    let sender = WebhookSender::start(quick(&url)).unwrap();
    sender.send(alert(AlertKind::Drift));
    let tries: Vec<Value> = (0..3).map(|_| rx.recv_timeout(PATIENCE).unwrap()).collect();
    assert!(tries.iter().all(|t| t == &tries[0] && t["kind"] == "drift"));
    wait_until(|| sender.delivered() == 1);
    // A 400 is the receiver refusing the alert: given up at once.
    sender.send(alert(AlertKind::ErrorRate));
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap()["kind"], "error_rate");
    wait_until(|| sender.failed() == 1);
    assert_eq!(sender.delivered(), 1);
    // Nothing more arrives: the 400 was not retried. (The next alert is the next
    // request the receiver sees.)
    sender.send(alert(AlertKind::AgreementDrop));
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap()["kind"], "agreement_drop");
}

#[test]
fn a_kind_is_sent_once_per_window() {
    let (url, rx) = receiver(vec![]);
    let sender = WebhookSender::start(quick(&url)).unwrap();
    assert_eq!(sender.send(alert(AlertKind::ErrorRate)), Sent::Queued);
    assert_eq!(sender.send(alert(AlertKind::ErrorRate)), Sent::Duplicate);
    assert_eq!(sender.send(alert(AlertKind::AgreementDrop)), Sent::Queued);
    assert_eq!(
        sender.send(alert(AlertKind::AgreementDrop)),
        Sent::Duplicate
    );
    wait_until(|| sender.delivered() == 2);
    let kinds: Vec<Value> = rx.try_iter().map(|b| b["kind"].clone()).collect();
    assert_eq!(kinds, vec![json!("error_rate"), json!("agreement_drop")]);
    assert_eq!(sender.duplicates(), 2);
    // Without a window, every alert goes.
    let (url, rx) = receiver(vec![]);
    let every = WebhookSender::start(WebhookConfig {
        dedup: Duration::ZERO,
        ..quick(&url)
    })
    .unwrap();
    for _ in 0..3 {
        assert_eq!(every.send(alert(AlertKind::Drift)), Sent::Queued);
    }
    wait_until(|| every.delivered() == 3);
    assert_eq!(rx.try_iter().count(), 3);
}

#[test]
fn send_never_waits_for_a_receiver_that_is_down() {
    // A port nobody listens on: every try is refused, and the thread backs off for
    // seconds between tries while the caller goes on sending.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sender = WebhookSender::start(WebhookConfig {
        queue: 4,
        dedup: Duration::ZERO,
        ..WebhookConfig::new(format!("http://127.0.0.1:{port}/hook"))
    })
    .unwrap();
    let outcomes: Vec<Sent> = (0..200)
        .map(|_| sender.send(alert(AlertKind::Drift)))
        .collect();
    let queued = outcomes.iter().filter(|&&o| o == Sent::Queued).count();
    let dropped = outcomes.iter().filter(|&&o| o == Sent::Dropped).count();
    // The queue holds 4, the thread has taken at most one: the rest were dropped, not
    // waited for.
    assert!((4..=5).contains(&queued), "{queued}");
    assert_eq!(queued + dropped, 200);
    assert_eq!(sender.dropped(), dropped as u64);
    assert_eq!(sender.delivered(), 0);
}

#[test]
fn bad_urls_are_refused_in_one_line() {
    for bad in ["ftp://example.com/x", "example.com/hook", "http://"] {
        let e = WebhookSender::start(WebhookConfig::new(bad))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("webhook URL") && !e.contains('\n'), "{e}");
    }
}

#[test]
fn the_registry_settings_name_the_webhook() {
    use spamscope::ops::online::OnlineLearningConfig;
    let dir = tempfile::tempdir().unwrap();
    let reg = spamscope::store::Registry::open(dir.path()).unwrap();
    assert!(WebhookSender::from_registry(&reg, None).unwrap().is_none());
    // A settings file written before the field loads, without a webhook.
    std::fs::write(
        reg.layout().online_config(),
        "(batch_size: 50, min_samples: 500)",
    )
    .unwrap();
    let cfg = OnlineLearningConfig::load(&reg).unwrap();
    assert_eq!((cfg.batch_size, cfg.webhook_url.as_deref()), (50, None));
    let bad = OnlineLearningConfig {
        webhook_url: Some("ftp://example.com".into()),
        ..cfg.clone()
    };
    let e = bad.save(&reg).unwrap_err().to_string();
    assert!(e.contains("webhook_url") && !e.contains('\n'), "{e}");
    let (url, rx) = receiver(vec![]);
    OnlineLearningConfig {
        webhook_url: Some(url.clone()),
        ..cfg
    }
    .save(&reg)
    .unwrap();
    let sender = WebhookSender::from_registry(&reg, None).unwrap().unwrap();
    assert_eq!(sender.url(), url);
    // An explicit URL (the service's --webhook) wins; a bad one names its source.
    let other = WebhookSender::from_registry(&reg, Some("http://127.0.0.1:9/x")).unwrap();
    assert_eq!(other.unwrap().url(), "http://127.0.0.1:9/x");
    let e = WebhookSender::from_registry(&reg, Some("ftp://x"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("--webhook: "), "{e}");
    sender.send(alert(AlertKind::Drift));
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap()["kind"], "drift");
}
