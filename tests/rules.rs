//! Rules the front-ends share, defined once (issue 21): the command line and the service
//! give the same feedback statistics and the same version list on one registry, and a
//! threshold change never undoes a rollback another process wrote meanwhile.

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use spamscope::data::synth::SynthParams;
use spamscope::service::{Limits, State, router};
use spamscope::store::Registry;
use spamscope::store::feedback::{FeedbackStore, NewFeedback, Origin};
use spamscope::store::predictions::Retention;
use std::process::Command;
use tower::ServiceExt;

mod common;

const DATA: SynthParams = SynthParams {
    rows: 2000,
    seed: 17,
};

fn spamscope(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_spamscope"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "spamscope {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "spamscope {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

async fn get(s: &std::sync::Arc<State>, uri: &str) -> Value {
    send(s, "GET", uri, None).await
}

async fn send(s: &std::sync::Arc<State>, method: &str, uri: &str, body: Option<Value>) -> Value {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let res = router(s.clone()).oneshot(req).await.unwrap();
    assert!(
        res.status().is_success(),
        "{method} {uri}: {}",
        res.status()
    );
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn record(i: usize, label: u8, verdict: Option<(u32, u8)>) -> NewFeedback {
    NewFeedback {
        user_id: Some(format!("acct-{i}").as_str().into()),
        features: spamscope::data::synth::default_dataset(DATA).row(i),
        true_label: label,
        probability: verdict.map(|(_, p)| f64::from(p)),
        model_version: verdict.map(|(v, _)| v),
        predicted: verdict.map(|(_, p)| p),
        notes: String::new(),
        origin: Origin::App,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_and_service_give_the_same_feedback_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    common::train_version(&reg, DATA, 5);
    common::train_version(&reg, DATA, 5);
    // Version 1: 3 of 4 judged records agree; version 2: 1 of 2; and 3 records
    // without a verdict (an import without scores), which count in the totals only.
    let mut records = Vec::new();
    for (i, (label, predicted)) in [(1, 1), (0, 0), (1, 1), (1, 0)].into_iter().enumerate() {
        records.push(record(i, label, Some((1, predicted))));
    }
    for (i, (label, predicted)) in [(1, 1), (0, 1)].into_iter().enumerate() {
        records.push(record(10 + i, label, Some((2, predicted))));
    }
    for i in 0..3 {
        records.push(record(20 + i, 1, None));
    }
    FeedbackStore::open_in(reg.root())
        .unwrap()
        .add_batch(&records)
        .unwrap();
    let s = State::new(reg.clone(), Limits::default(), Retention::default(), true).unwrap();
    // Feedback on a prediction the service never logged: beside the statistics.
    send(
        &s,
        "POST",
        "/feedback",
        Some(json!({ "prediction_id": "never-logged", "is_correct": true })),
    )
    .await;

    let root = reg.root().to_str().unwrap();
    let cli = spamscope(&["feedback", "stats", "--registry", root, "--json"]);
    let svc = get(&s, "/model/feedback/stats").await;
    assert_eq!(cli["total"], json!(9), "{cli}");
    assert_eq!(svc["total_feedback"], cli["total"], "{svc}");
    assert_eq!(cli["judged"], json!(6), "{cli}");
    assert_eq!(svc["judged"], cli["judged"], "{svc}");
    assert_eq!(svc["correct_predictions"], cli["agreed"], "{svc} {cli}");
    assert_eq!(cli["agreement"], json!(4.0 / 6.0), "{cli}");
    assert_eq!(svc["agreement"], cli["agreement"], "{svc}");
    assert_eq!(svc["accuracy"], cli["agreement"], "{svc}");
    assert_eq!(svc["unlinked_feedback"], json!(1), "{svc}");
    for (version, agreement) in [("1", 0.75), ("2", 0.5)] {
        let c = &cli["by_version"][version];
        let v = svc["by_version"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["model_version"] == json!(version.parse::<u32>().unwrap()))
            .unwrap_or_else(|| panic!("no version {version} in {svc}"));
        assert_eq!(c["agreement"], json!(agreement), "{cli}");
        assert_eq!(v["agreement"], c["agreement"], "{svc}");
        assert_eq!((&v["total"], &v["judged"]), (&c["total"], &c["judged"]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_and_service_list_versions_in_one_shape() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    common::train_version(&reg, DATA, 5);
    common::train_version(&reg, DATA, 5);
    spamscope::ops::versions::rollback(&reg, 1).unwrap();
    let s = State::new(reg.clone(), Limits::default(), Retention::default(), true).unwrap();
    let cli = spamscope(&[
        "versions",
        "--registry",
        reg.root().to_str().unwrap(),
        "--json",
    ]);
    let svc = get(&s, "/model/versions").await;
    let cli_rows = cli["versions"].as_array().unwrap();
    let svc_rows = svc["versions"].as_array().unwrap();
    assert_eq!(cli_rows.len(), 2);
    assert_eq!(
        cli_rows, svc_rows,
        "the CLI and the service list versions differently"
    );
    assert_eq!(cli_rows[1]["status"], json!("rolled back"), "{cli}");
    assert!(
        cli_rows[1]["reason"]
            .as_str()
            .unwrap()
            .contains("rolled back to v1"),
        "{cli}"
    );
}

/// The app keeps a copy of the active manifest; a rollback by another process marks
/// that version rolled back; saving a threshold afterwards must keep the mark (it once
/// wrote the stale copy back, undoing the rollback's status).
#[test]
fn a_threshold_saved_after_another_process_rolled_back_keeps_the_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    common::train_version(&reg, DATA, 5);
    common::train_version(&reg, DATA, 5);
    let root = reg.root().to_str().unwrap().to_string();
    let held = reg.manifest(2).unwrap();
    assert_eq!(held.status_name(Some(2)), "active");
    // Another process rolls back to version 1.
    let out = spamscope(&["rollback", "--to", "1", "--registry", &root, "--json"]);
    assert_eq!(out["active"], json!(1), "{out}");
    let saved = spamscope::ops::versions::set_threshold(&reg, held.version, 0.8).unwrap();
    assert_eq!(saved.threshold, 0.8);
    let m = reg.manifest(2).unwrap();
    assert_eq!(m.threshold, 0.8);
    assert_eq!(m.status_name(reg.active().unwrap()), "rolled back");
    assert_eq!(reg.active().unwrap(), Some(1));

    // Both at once: rollbacks back and forth in another process while this one sets
    // thresholds. Every step lands; none undoes another.
    let rollback = |to: &str| {
        Command::new(env!("CARGO_BIN_EXE_spamscope"))
            .args(["rollback", "--to", to, "--registry", &root])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = Some(rollback("2"));
    let (mut rounds, mut last) = (0, 0.0);
    let start = std::time::Instant::now();
    for i in 0.. {
        if let Some(c) = child.as_mut()
            && let Some(status) = c.try_wait().unwrap()
        {
            assert!(status.success());
            rounds += 1;
            child = (rounds < 4).then(|| rollback(if rounds % 2 == 1 { "1" } else { "2" }));
        }
        if child.is_none() {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "rollbacks hang"
        );
        last = f64::from(i % 100) / 100.0;
        spamscope::ops::versions::set_threshold(&reg, 2, last).unwrap();
        spamscope::ops::versions::set_threshold(&reg, 1, 1.0 - last).unwrap();
        // Pacing, so the other process gets the registry lock between our writes.
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(rounds, 4);
    let active = reg.active().unwrap().unwrap();
    let (m1, m2) = (reg.manifest(1).unwrap(), reg.manifest(2).unwrap());
    assert_eq!((m2.threshold, m1.threshold), (last, 1.0 - last));
    // Exactly the active version is active; the other is marked rolled back.
    let other = if active == 1 { &m2 } else { &m1 };
    assert_eq!(other.status_name(Some(active)), "rolled back");
}
