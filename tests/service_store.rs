//! The service and its stores (issue 21): each store opened once per process, a store's
//! failure answered by its kind (busy → 503 with `Retry-After`, corrupt → a 500 that
//! names no file), no absolute path in any error body, and a request's deadline that
//! never leaves an effect behind an error.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use spamscope::data::synth::SynthParams;
use spamscope::service::{Limits, State, router};
use spamscope::store::Registry;
use spamscope::store::feedback::times_opened;
use spamscope::store::layout::Layout;
use spamscope::store::predictions::Retention;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

mod common;

const DATA: SynthParams = SynthParams {
    rows: 2000,
    seed: 11,
};

fn registry(dir: &std::path::Path, versions: usize) -> Registry {
    let reg = Registry::open(dir).unwrap();
    for _ in 0..versions {
        common::train_version(&reg, DATA, 5);
    }
    reg
}

fn state(reg: &Registry, limits: Limits) -> Arc<State> {
    State::new(reg.clone(), limits, Retention::default(), true).unwrap()
}

struct Reply {
    status: StatusCode,
    retry_after: Option<String>,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

async fn send(s: &Arc<State>, method: &str, uri: &str, body: Option<&Value>) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let res = router(s.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        retry_after,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Waits for `done` (polled every 10 ms) at most `limit`, failing with `what`.
async fn until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Row `i` of the synthetic data as a request's `features` object.
fn features(i: usize) -> Value {
    let row = spamscope::data::synth::default_dataset(DATA).row(i);
    let cat = spamscope::data::catalog::catalog();
    let m: serde_json::Map<String, Value> = cat
        .features
        .iter()
        .zip(&row)
        .filter(|(_, v)| !v.is_nan())
        .map(|(f, v)| (f.id.clone(), json!(v)))
        .collect();
    Value::Object(m)
}

/// A connection to the registry's feedback store holding its write lock until dropped
/// or committed.
fn lock_feedback_store(reg: &Registry) -> rusqlite::Connection {
    let path = Layout::new(reg.root()).feedback_db();
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_opens_its_feedback_store_once() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), 1);
    let s = state(&reg, Limits::default());
    let opened = times_opened(reg.root());
    assert!(opened >= 1, "State::new opens the store");
    let features = features(0);
    let ids = json!({ "user_ids": ["u1", "u2"] });
    for round in 0..3 {
        for (method, uri, body) in [
            ("GET", "/model/feedback/stats", None),
            ("GET", "/metrics", None),
            ("POST", "/review/claims", Some(ids.clone())),
            ("POST", "/review/status", Some(ids.clone())),
            ("DELETE", "/review/claims", Some(ids.clone())),
            ("GET", "/accounts/u1", None),
            ("POST", "/accounts/u1/label", Some(json!({ "label": 1 }))),
            (
                "POST",
                "/feedback",
                Some(json!({ "features": features, "label": 1, "user_id": "u1" })),
            ),
            ("GET", "/model/experiment", None),
        ] {
            let r = send(&s, method, uri, body.as_ref()).await;
            assert!(
                r.status.is_success(),
                "round {round}: {method} {uri}: {}",
                r.text
            );
        }
    }
    assert_eq!(
        times_opened(reg.root()),
        opened,
        "a request opened the feedback store again (tables and migrations re-run)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_feedback_store_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), 1);
    let s = state(
        &reg,
        Limits {
            store_busy_wait: Duration::from_millis(200),
            ..Default::default()
        },
    );
    let ids = json!({ "user_ids": ["u1"] });
    let lock = lock_feedback_store(&reg);
    let r = send(&s, "POST", "/review/claims", Some(&ids)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.code(), "busy", "{}", r.text);
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    let root = reg.root().display().to_string();
    assert!(
        !r.text.contains(&root),
        "the answer names the registry: {}",
        r.text
    );
    // Feedback goes through the writer thread's own connection: the same wait applies
    // (the default is 10 s).
    let started = Instant::now();
    let body = json!({ "features": features(1), "label": 1 });
    let r = send(&s, "POST", "/feedback", Some(&body)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(
        (r.code(), r.retry_after.as_deref()),
        ("busy".to_string(), Some("1"))
    );
    assert!(
        started.elapsed() < spamscope::store::BUSY_WAIT,
        "the feedback writer waited the default, not the service's store_busy_wait"
    );
    // Nothing was claimed; once the other writer is done the same request succeeds.
    lock.execute_batch("COMMIT").unwrap();
    let r = send(&s, "POST", "/review/claims", Some(&ids)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["granted"], json!(["u1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_value_is_a_500_naming_the_column_not_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), 1);
    let s = state(&reg, Limits::default());
    {
        let conn = rusqlite::Connection::open(Layout::new(reg.root()).feedback_db()).unwrap();
        conn.execute_batch("PRAGMA ignore_check_constraints = ON")
            .unwrap();
        let cols: Vec<String> = (1..=51).map(|i| format!("x{i}")).collect();
        conn.execute(
            &format!(
                "INSERT INTO feedback (created_at, model_version, predicted, true_label, notes, origin, {})
                 VALUES ('2026-01-01T00:00:00Z', -1, 1, 1, '', 'app', {})",
                cols.join(", "),
                vec!["0.0"; 51].join(", ")
            ),
            [],
        )
        .unwrap();
    }
    let r = send(&s, "GET", "/model/feedback/stats", None).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    assert_eq!(r.code(), "corrupt", "{}", r.text);
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("model_version") && message.contains("-1"),
        "{message}"
    );
    assert!(
        !message.contains(&reg.root().display().to_string()) && !message.contains("/tmp"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_error_answer_carries_an_absolute_path() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), 1);
    let s = state(&reg, Limits::default());
    let root = reg.root().display().to_string();
    // Every documented operation, sent a body that is not what it wants (and the
    // paths' parameters wrong), plus what fails deeper: a version file that is gone.
    let doc = send(&s, "GET", "/openapi.json", None).await.json();
    let mut errors = 0;
    let mut answered = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let uri = path
                .replace("{version}", "999")
                .replace("{name}", "model.bin")
                .replace("{id}", "999")
                .replace("{user_id}", "%00");
            for body in [
                None,
                Some(json!("not an object")),
                Some(json!({ "x": [1] })),
            ] {
                let r = send(&s, &method.to_uppercase(), &uri, body.as_ref()).await;
                answered.push(format!("{method} {uri}"));
                if r.status.is_client_error() || r.status.is_server_error() {
                    errors += 1;
                }
                assert!(
                    !r.text.contains(&root) && !r.text.contains("/tmp/"),
                    "{method} {uri} answered a path: {}",
                    r.text
                );
            }
        }
    }
    assert!(errors > 40, "only {errors} error answers in {answered:?}");
    // A model file removed behind the registry's back.
    std::fs::remove_file(reg.version_dir(1).join("model.bin")).unwrap();
    let r = send(&s, "GET", "/model/versions/1/files/model.bin", None).await;
    assert!(r.status.is_server_error(), "{}", r.text);
    assert!(r.text.contains("model.bin"), "{}", r.text);
    assert!(!r.text.contains(&root), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_leaves_no_effect_and_a_started_write_says_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), 2);
    assert_eq!(reg.active().unwrap(), Some(2));
    let s = state(
        &reg,
        Limits {
            timeout: Duration::from_millis(800),
            max_in_flight: 1,
            store_busy_wait: Duration::from_secs(20),
            ..Default::default()
        },
    );
    // The slow store: another process holds the feedback store's write lock.
    let lock = lock_feedback_store(&reg);
    let s1 = s.clone();
    let claim = tokio::spawn(async move {
        send(
            &s1,
            "POST",
            "/review/claims",
            Some(&json!({ "user_ids": ["u9"] })),
        )
        .await
    });
    // The claim holds the only slot, waiting on the lock.
    until(
        "the claim to take the slot",
        Duration::from_secs(10),
        || s.in_flight() == 1,
    )
    .await;
    // A rollback behind it cannot get a slot before its deadline: 503, and it never
    // happens.
    let started = Instant::now();
    let r = send(&s, "POST", "/model/rollback", Some(&json!({ "to": 1 }))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.code(), "timeout");
    assert!(started.elapsed() >= Duration::from_millis(700));
    // The claim's deadline has passed too, but it had started writing: it is answered
    // with what it did once the lock goes.
    assert!(
        !claim.is_finished(),
        "the claim answered before the lock was released"
    );
    lock.execute_batch("COMMIT").unwrap();
    let r = claim.await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["granted"], json!(["u9"]));
    until("the slot to be free", Duration::from_secs(10), || {
        s.in_flight() == 0
    })
    .await;
    assert_eq!(
        reg.active().unwrap(),
        Some(2),
        "the refused rollback took effect"
    );
    let status = send(
        &s,
        "POST",
        "/review/status",
        Some(&json!({ "user_ids": ["u9"] })),
    )
    .await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text);
    assert_eq!(
        status.json()["accounts"][0]["claim"]["moderator"],
        json!("anonymous"),
        "{}",
        status.text
    );
}
