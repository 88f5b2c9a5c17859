//! A moderation team on one service: the workbench (the app's state, without a window)
//! against a real `spamscope serve` on a loopback socket. It copies the served version
//! and scores locally, keeps feedback offline and sends it once the service is back,
//! sees the other moderators' feedback, and follows a promotion within seconds.
#![cfg(feature = "gui")]

use serde_json::{Value, json};
use spamscope::data::synth::{SynthParams, default_dataset};
use spamscope::ops::train::TrainConfig;
use spamscope::remote::Client;
use spamscope::store::Registry;
use spamscope::store::feedback::{FeedbackStore, NewFeedback, Origin};
use spamscope::store::tokens::{Role, TokenStore};
use spamscope::workbench::{Notice, RemoteConfig, Workbench, WorkbenchConfig};
use std::path::Path;
use std::sync::Arc;

const DATA: SynthParams = SynthParams {
    rows: 3000,
    seed: 5,
};

mod common;
use common::{serve, wait_for};

fn train_version(reg: &Registry, trees: usize) {
    common::train_version(reg, DATA, trees)
}

fn workbench(cache: &Path, url: &str, token: &str) -> Workbench {
    let mut w = Workbench::new(
        WorkbenchConfig {
            registry_root: cache.to_path_buf(),
            dataset: None,
            synth: DATA,
            train: TrainConfig::default(),
            remote: Some(RemoteConfig {
                url: url.to_string(),
                token: Some(token.to_string()),
            }),
            mlflow: None,
        },
        Arc::new(|| {}),
    );
    w.start();
    w
}

fn features_json(x: &[f64]) -> Value {
    let cat = spamscope::data::catalog::catalog();
    let m: serde_json::Map<String, Value> = cat
        .ids()
        .zip(x)
        .filter(|(_, v)| !v.is_nan())
        .map(|(id, v)| (id.to_string(), json!(v)))
        .collect();
    Value::Object(m)
}

#[test]
fn the_app_works_on_a_team_service_offline_and_online() {
    let server_dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let reg = Registry::open(server_dir.path()).unwrap();
    train_version(&reg, 8);
    let tokens = TokenStore::open_in(server_dir.path());
    let mia = tokens.add("mia", Role::Moderator).unwrap();
    let ned = tokens.add("ned", Role::Moderator).unwrap();
    let (rt, addr) = serve(&reg, 0);
    let url = format!("http://{addr}");

    // Connect: the served version is copied (checked) and scores here, locally, exactly
    // as the service scores.
    let mut w = workbench(cache.path(), &url, &mia);
    wait_for(&mut w, "version 1 copied", |w| {
        w.active.as_ref().map(|a| a.manifest.version) == Some(1)
            && w.remote.as_ref().is_some_and(|r| r.connected)
    });
    assert!(w.is_remote());
    let data = default_dataset(DATA);
    let x = data.row(11);
    let local = w.score_one(&x).unwrap();
    let answer: Value = ureq::post(format!("{url}/predict"))
        .header("Authorization", format!("Bearer {mia}"))
        .send_json(json!({ "features": features_json(&x) }))
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(answer["score"].as_f64().unwrap(), local);
    // Steps the service owns are refused here with a reason, not done locally.
    w.train_now();
    assert!(
        matches!(w.notices.last(), Some(Notice::Error(e)) if e.contains("team's service")),
        "{:?}",
        w.notices
    );

    // Offline: feedback waits in the outbox; the status says so.
    let port = addr.port();
    rt.shutdown_background();
    wait_for(&mut w, "the link to notice", |w| {
        w.remote.as_ref().is_some_and(|r| !r.connected)
    });
    let record = NewFeedback {
        user_id: Some("acct-77".into()),
        features: x.clone(),
        true_label: 1,
        probability: Some(local),
        model_version: Some(1),
        predicted: Some(u8::from(local > 0.5)),
        notes: "sent a malware brief".into(),
        origin: Origin::App,
    };
    w.submit_feedback(record);
    wait_for(&mut w, "the record in the outbox", |w| {
        w.is_idle() && w.remote.as_ref().is_some_and(|r| r.pending == 1)
    });
    let stored = || {
        FeedbackStore::open_in(server_dir.path())
            .unwrap()
            .count()
            .unwrap()
    };
    assert_eq!(stored(), 0);

    // Back online: sent once, attributed to the token's moderator.
    let (rt, _) = serve(&reg, port);
    wait_for(&mut w, "the outbox to empty", |w| {
        w.remote
            .as_ref()
            .is_some_and(|r| r.connected && r.pending == 0)
    });
    assert_eq!(stored(), 1);
    let records = FeedbackStore::open_in(server_dir.path())
        .unwrap()
        .records(false)
        .unwrap();
    assert_eq!(records[0].moderator.as_deref(), Some("mia"));
    assert_eq!(records[0].record.user_id.as_deref(), Some("acct-77"));
    assert_eq!(records[0].record.features, x);
    // A few more rounds send nothing again: two more exchanges of the link (each one
    // that succeeds renews the last contact, after its sending), still one record.
    for round in 1..=2 {
        let seen = w.remote.as_ref().and_then(|r| r.last_contact);
        wait_for(
            &mut w,
            &format!("round {round} after the outbox emptied"),
            |w| w.remote.as_ref().and_then(|r| r.last_contact) > seen,
        );
    }
    assert_eq!(stored(), 1);
    assert_eq!(w.remote.as_ref().unwrap().pending, 0);
    // A record whose answer was lost (stored by the service, still in the outbox) is
    // sent again by the link with its key, and the service keeps it once.
    let mia_client = Client::new(&url, Some(mia.clone())).unwrap();
    let mut outbox =
        spamscope::remote::outbox::Outbox::open(&spamscope::workbench::outbox_path(cache.path()))
            .unwrap();
    let lost = json!({"features": features_json(&data.row(13)), "label": 1, "user_id": "acct-78"});
    let key = spamscope::remote::outbox::new_key();
    mia_client.feedback(&lost, &key).unwrap();
    assert_eq!(stored(), 2);
    outbox.enqueue_keyed(&[(key, lost)]).unwrap();
    wait_for(&mut w, "the resent record to leave the outbox", |_| {
        outbox.pending().unwrap() == 0
    });
    assert_eq!(stored(), 2, "sent twice, stored once");

    // Another moderator's feedback shows in the team's statistics.
    let ned_client = Client::new(&url, Some(ned.clone())).unwrap();
    let body = json!({"features": features_json(&data.row(12)), "label": 0, "user_id": "acct-77"});
    ned_client.feedback(&body, "ned-1").unwrap();
    wait_for(&mut w, "ned in the team's statistics", |w| {
        w.team.as_ref().is_some_and(|t| {
            t.by_moderator
                .iter()
                .any(|m| m.moderator.as_deref() == Some("ned"))
        })
    });
    let team = w.team.clone().unwrap();
    let mia_row = team
        .by_moderator
        .iter()
        .find(|m| m.moderator.as_deref() == Some("mia"))
        .unwrap();
    // Both labelled acct-77, differently.
    assert_eq!(
        (mia_row.pairs_with_others, mia_row.agreement_with_others),
        (1, Some(0.0))
    );
    assert_eq!(w.feedback.as_ref().unwrap().total, 3);

    // A promotion on the service arrives within seconds, with a notice.
    w.notices.clear();
    train_version(&reg, 12);
    wait_for(&mut w, "version 2", |w| {
        w.active.as_ref().map(|a| a.manifest.version) == Some(2)
    });
    assert!(
        w.notices.iter().any(
            |n| matches!(n, Notice::Info(t) if t.contains("switched from version 1 to version 2"))
        ),
        "{:?}",
        w.notices
    );
    let (_, model) = reg.load(2).unwrap();
    assert_eq!(w.score_one(&x).unwrap(), model.predict_one(&x));
    // The version list holds both, copied with their manifests.
    wait_for(&mut w, "both versions listed", |w| w.versions.len() == 2);
    drop(w);
    drop(rt);
}

#[test]
fn comparisons_come_from_and_go_to_the_team_service() {
    let server_dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(server_dir.path()).unwrap();
    train_version(&reg, 6);
    let tokens = TokenStore::open_in(server_dir.path());
    let lead = tokens.add("lead", Role::Admin).unwrap();
    let mia = tokens.add("mia", Role::Moderator).unwrap();
    // A comparison run on the server's registry.
    let data = default_dataset(DATA);
    let pick =
        |name: &str| spamscope::ops::compare::select_candidates(1, &[name.to_string()]).unwrap();
    spamscope::ops::compare::run(
        &reg,
        &data,
        &pick("Gaussian naive Bayes"),
        0.2,
        1,
        false,
        &spamscope::util::progress::NoProgress,
    )
    .unwrap();
    let (_rt, addr) = serve(&reg, 0);
    let url = format!("http://{addr}");
    // The app shows the team's comparison.
    let cache = tempfile::tempdir().unwrap();
    let mut w = workbench(cache.path(), &url, &mia);
    wait_for(&mut w, "the team's comparison", |w| {
        w.saved_comparison
            .as_ref()
            .is_some_and(|c| c.rows.iter().any(|r| r.name == "Gaussian naive Bayes"))
    });
    // A moderator's own comparison stays local, with a reason.
    w.run_comparison(vec!["logistic regression".into()]);
    wait_for(&mut w, "the comparison", |w| {
        w.is_idle() && w.comparison.is_some()
    });
    assert!(
        w.notices
            .iter()
            .any(|n| matches!(n, Notice::Error(t) if t.contains("not on the team's service") && t.contains("admin"))),
        "{:?}",
        w.notices
    );
    // An admin's goes to the service: the registry's latest is now it.
    let cache2 = tempfile::tempdir().unwrap();
    let mut w = workbench(cache2.path(), &url, &lead);
    // Connected, and the data to compare on loaded (it loads in the background).
    wait_for(&mut w, "connected", |w| {
        w.active.is_some() && w.data.is_some()
    });
    w.run_comparison(vec!["logistic regression".into()]);
    wait_for(&mut w, "the comparison", |w| {
        w.is_idle() && w.comparison.is_some()
    });
    let latest = spamscope::ops::compare::load_latest(&Registry::open(server_dir.path()).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(latest.rows.len(), 1);
    assert_eq!(latest.rows[0].name, "logistic regression");
}

#[test]
fn the_review_queue_can_be_the_teams_recent_traffic() {
    let server_dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(server_dir.path()).unwrap();
    train_version(&reg, 6);
    let mia = TokenStore::open_in(server_dir.path())
        .add("mia", Role::Moderator)
        .unwrap();
    let (_rt, addr) = serve(&reg, 0);
    let url = format!("http://{addr}");
    let data = default_dataset(DATA);
    // 30 requests on 20 accounts (u0 to u9 twice), and 5 without a user id.
    let mut answers = std::collections::HashMap::new();
    for i in 0..35usize {
        let mut body = json!({ "features": features_json(&data.row(i)) });
        if i < 30 {
            body["user_id"] = json!(format!("u{}", i % 20));
        }
        let a: Value = ureq::post(format!("{url}/predict"))
            .header("Authorization", format!("Bearer {mia}"))
            .send_json(body)
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        let key = if i < 30 {
            format!("u{}", i % 20)
        } else {
            a["prediction_id"].as_str().unwrap().to_string()
        };
        answers.insert(key, a["probability"].as_f64().unwrap());
    }
    let cache = tempfile::tempdir().unwrap();
    let mut w = workbench(cache.path(), &url, &mia);
    wait_for(&mut w, "connected", |w| w.active.is_some());
    w.score_team_traffic(100);
    wait_for(&mut w, "the queue", |w| w.queue.is_some());
    let q = w.queue.clone().unwrap();
    assert_eq!(q.batch.len(), 25, "one row per account");
    for (i, u) in q.data.user_ids.iter().enumerate() {
        // Scored here with the same version: the service's answer for the account's
        // newest request.
        assert_eq!(q.batch.probability[i], answers[&u.to_string()], "{u}");
    }
    // Bad limits are one line naming the field.
    let e = Client::new(&url, Some(mia))
        .unwrap()
        .review_queue(0)
        .unwrap_err();
    assert!(e.to_string().contains("limit"), "{e}");
}

#[test]
fn a_wrong_token_or_address_is_one_clear_line() {
    let server_dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(server_dir.path()).unwrap();
    train_version(&reg, 4);
    TokenStore::open_in(server_dir.path())
        .add("mia", Role::Moderator)
        .unwrap();
    let (_rt, addr) = serve(&reg, 0);
    let cache = tempfile::tempdir().unwrap();
    let mut w = workbench(cache.path(), &format!("http://{addr}"), "not-a-token");
    wait_for(&mut w, "the refusal", |w| {
        w.remote.as_ref().is_some_and(|r| r.error.is_some())
    });
    let e = w.remote.as_ref().unwrap().error.clone().unwrap();
    assert!(e.contains("401") && e.contains("token"), "{e}");
    assert!(!e.contains('\n'));
    assert!(w.active.is_none());
    let mut w = workbench(cache.path(), "ftp://nowhere", "t");
    w.poll();
    assert!(
        matches!(w.notices.first(), Some(Notice::Error(e)) if e.starts_with("server address")),
        "{:?}",
        w.notices
    );
}
