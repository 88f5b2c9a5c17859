//! `spamscope serve` as replicas on one PostgreSQL (issue 22), over loopback HTTP: what
//! one replica logs another reads, idempotency keys hold across them, a promotion made
//! anywhere reaches every replica within a second through LISTEN/NOTIFY (their polling
//! is set to 30 s here, so only the notification can do it), and a database that stops
//! and comes back: scoring goes on, writes answer 503 with Retry-After, readiness fails,
//! then everything resumes without a restart. Revocations, review claims, canary
//! stickiness and alert de-duplication hold across replicas too.

mod common;

use common::pg::TempPg;
use serde_json::{Value, json};
use spamscope::data::synth::SynthParams;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const DATA: SynthParams = SynthParams {
    rows: 2000,
    seed: 11,
};

/// A `spamscope serve` child process, killed when dropped (also when a test fails).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// (status, Retry-After, JSON body).
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> (u16, Option<String>, Value) {
    let url = format!("http://{addr}{path}");
    let a = agent();
    let res = match (method, body) {
        ("GET", _) => a.get(&url).call(),
        (_, Some(b)) => {
            let mut r = a.post(&url);
            if let Some(k) = key {
                r = r.header("Idempotency-Key", k);
            }
            r.send_json(b)
        }
        _ => a.post(&url).send_empty(),
    };
    let mut res = res.unwrap();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let status = res.status().as_u16();
    let body: Value = res.body_mut().read_json().unwrap_or(Value::Null);
    (status, retry, body)
}

fn account(i: usize) -> Value {
    static DATA_ROWS: std::sync::OnceLock<spamscope::data::Dataset> = std::sync::OnceLock::new();
    let data = DATA_ROWS.get_or_init(|| spamscope::data::synth::default_dataset(DATA));
    let cat = spamscope::data::catalog::catalog();
    let mut m = serde_json::Map::new();
    for (f, v) in cat.features.iter().zip(data.row(i)) {
        if !v.is_nan() {
            m.insert(f.id.clone(), json!(v));
        }
    }
    json!({"features": m, "user_id": format!("acct{i}")})
}

fn until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

#[test]
fn replicas_on_one_database_act_as_one_service() {
    let pg = TempPg::start();
    let caches: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let cli = pg.registry(caches[2].path());
    common::train_version(&cli, DATA, 5);
    let (rt_a, a) = common::replica(&pg.registry(caches[0].path()));
    let (rt_b, b) = common::replica(&pg.registry(caches[1].path()));

    // A prediction made on A is found by B (the log is shared): linked feedback.
    let (st, _, p) = call(a, "POST", "/predict", Some(&account(1)), None);
    assert_eq!(st, 200, "{p}");
    let id = p["prediction_id"].as_str().unwrap().to_string();
    until(
        "A's log reaching the database",
        Duration::from_secs(5),
        || {
            pg.psql(&format!(
                "SELECT count(*) FROM predictions WHERE id = '{id}'"
            )) == "1"
        },
    );
    let fb = json!({"prediction_id": id, "is_correct": false, "feedback_notes": "malware brief"});
    let (st, _, first) = call(b, "POST", "/feedback", Some(&fb), Some("delivery-1"));
    assert_eq!(st, 200, "{first}");
    assert_eq!(first["linked"], true, "{first}");
    // The same delivery again, through the other replica: the first answer, nothing new.
    let (st, _, again) = call(a, "POST", "/feedback", Some(&fb), Some("delivery-1"));
    assert_eq!(st, 200, "{again}");
    assert_eq!(
        again["feedback_id"], first["feedback_id"],
        "{again} vs {first}"
    );
    assert_eq!(pg.psql("SELECT count(*) FROM feedback"), "1");

    // A promotion from anywhere (here a command's registry) reaches both within 1 s.
    common::train_version(&cli, DATA, 6);
    for r in [a, b] {
        let took = until("the promotion", Duration::from_secs(1), || {
            call(r, "GET", "/health", None, None).2["model_version"] == 2
        });
        eprintln!("{r}: version 2 after {took:?}");
    }
    let (_, _, p) = call(b, "POST", "/predict", Some(&account(2)), None);
    assert_eq!(p["model_version"], 2);

    // An experiment started on A runs on B at once; stopped on B, it stops on A; a
    // rollback through B is what A serves; both list the same versions.
    let (st, _, e) = call(
        a,
        "POST",
        "/model/experiment",
        Some(&json!({"version": 1, "mode": "shadow"})),
        None,
    );
    assert_eq!(st, 200, "{e}");
    until("the experiment on B", Duration::from_secs(1), || {
        call(b, "GET", "/model/experiment", None, None).2["running"] == true
    });
    let (_, _, p) = call(b, "POST", "/predict", Some(&account(5)), None);
    assert_eq!(p["model_version"], 2, "{p}");
    let res = agent()
        .delete(&format!("http://{b}/model/experiment"))
        .call()
        .unwrap();
    assert_eq!(res.status(), 200);
    until("the experiment's end on A", Duration::from_secs(1), || {
        call(a, "GET", "/model/experiment", None, None).2["running"] == false
    });
    let (st, _, r) = call(b, "POST", "/model/rollback", Some(&json!({"to": 1})), None);
    assert_eq!(st, 200, "{r}");
    until("the rollback on A", Duration::from_secs(1), || {
        call(a, "GET", "/health", None, None).2["model_version"] == 1
    });
    assert_eq!(
        call(a, "GET", "/model/versions", None, None).2,
        call(b, "GET", "/model/versions", None, None).2
    );

    // A retrain started on A is followed from B; B cannot start another meanwhile.
    let (st, _, job) = call(a, "POST", "/model/retrain", Some(&json!({})), None);
    assert_eq!(st, 202, "{job}");
    let job_id = job["job_id"].as_u64().unwrap();
    let (st, _, other) = call(b, "POST", "/model/retrain", Some(&json!({})), None);
    let (_, _, seen) = call(b, "GET", &format!("/jobs/{job_id}"), None, None);
    assert_eq!(seen["id"], job_id, "{seen}");
    if seen["state"] == "running" {
        assert_eq!(st, 409, "{other}");
    }
    until(
        "the retrain's end, seen from B",
        Duration::from_secs(120),
        || call(b, "GET", &format!("/jobs/{job_id}"), None, None).2["state"] != "running",
    );
    // It may have promoted a version 3: both replicas serve the same one.
    let va = call(a, "GET", "/health", None, None).2["model_version"].clone();
    until("the same version on both", Duration::from_secs(1), || {
        call(b, "GET", "/health", None, None).2["model_version"] == va
    });

    // The database stops: scoring goes on; writes say 503 and when to retry; not ready.
    assert_eq!(call(a, "GET", "/health/ready", None, None).0, 200);
    pg.stop();
    let (st, _, ready) = call(a, "GET", "/health/ready", None, None);
    assert_eq!(st, 503, "{ready}");
    assert_eq!(ready["status"], "not ready");
    assert_eq!(call(a, "GET", "/health/live", None, None).0, 200);
    let (st, _, p) = call(a, "POST", "/predict", Some(&account(3)), None);
    assert_eq!(st, 200, "{p}");
    let held = p["prediction_id"].as_str().unwrap().to_string();
    let fb2 = json!({"features": account(4)["features"], "label": 1, "user_id": "acct4"});
    let (st, retry, body) = call(b, "POST", "/feedback", Some(&fb2), Some("delivery-2"));
    assert_eq!(st, 503, "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    // It comes back: everything resumes, the held prediction is written, the refused
    // feedback goes through when sent again.
    pg.start_again();
    until("readiness", Duration::from_secs(10), || {
        call(a, "GET", "/health/ready", None, None).0 == 200
    });
    until("the held prediction", Duration::from_secs(10), || {
        pg.psql(&format!(
            "SELECT count(*) FROM predictions WHERE id = '{held}'"
        )) == "1"
    });
    let (st, _, body) = call(b, "POST", "/feedback", Some(&fb2), Some("delivery-2"));
    assert_eq!(st, 200, "{body}");
    assert_eq!(pg.psql("SELECT count(*) FROM feedback"), "2");
    drop((rt_a, rt_b));
}

/// A replica killed with SIGKILL under feedback load loses no acknowledged record: every
/// key answered 200 is in the database with its record.
#[test]
fn a_replica_killed_under_feedback_load_loses_no_acknowledged_record() {
    let pg = TempPg::start();
    let cache = tempfile::tempdir().unwrap();
    common::train_version(&pg.registry(cache.path()), DATA, 5);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Killed(
        std::process::Command::new(env!("CARGO_BIN_EXE_spamscope"))
            .args(["serve", "--store", &pg.url(), "--cache"])
            .arg(cache.path())
            .args(["--addr", &format!("127.0.0.1:{port}"), "--log", "warn"])
            .stderr(std::fs::File::create(cache.path().join("serve.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let start = Instant::now();
    while !agent()
        .get(&format!("http://{addr}/health"))
        .call()
        .is_ok_and(|r| r.status() == 200)
    {
        let said = std::fs::read_to_string(cache.path().join("serve.err")).unwrap_or_default();
        assert!(
            start.elapsed() < Duration::from_secs(60) && child.0.try_wait().unwrap().is_none(),
            "the replica did not start: {said}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let acknowledged: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let stop = &stop;
                scope.spawn(move || {
                    let mut acked = Vec::new();
                    let a = agent();
                    for i in 0.. {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let key = format!("t{t}-{i}");
                        let body = json!({"features": account(i % 50)["features"], "label": 1});
                        let res = a
                            .post(&format!("http://{addr}/feedback"))
                            .header("Idempotency-Key", &key)
                            .send_json(&body);
                        match res {
                            Ok(r) if r.status() == 200 => acked.push(key),
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(
        acknowledged.len() > 20,
        "only {} acknowledged",
        acknowledged.len()
    );
    let stored = pg.psql(
        "SELECT string_agg(k.key, ',') FROM feedback_keys k JOIN feedback f ON f.id = k.feedback_id",
    );
    let stored: std::collections::HashSet<&str> = stored.split(',').collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|k| !stored.contains(k.as_str()))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    eprintln!(
        "{} acknowledged before SIGKILL, all stored ({} records in all)",
        acknowledged.len(),
        pg.psql("SELECT count(*) FROM feedback")
    );
}

/// A replica started against a database that is down: at once, one line and exit 1;
/// with `--wait-for-store`, it waits (saying so once) and serves when the database
/// comes up.
#[test]
fn a_replica_waits_for_its_database_only_when_asked() {
    let pg = TempPg::start();
    let cache = tempfile::tempdir().unwrap();
    common::train_version(&pg.registry(cache.path()), DATA, 5);
    pg.stop();
    let bin = env!("CARGO_BIN_EXE_spamscope");
    let out = std::process::Command::new(bin)
        .args([
            "serve",
            "--store",
            &pg.url(),
            "--addr",
            "127.0.0.1:0",
            "--cache",
        ])
        .arg(cache.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect") && err.lines().count() == 1,
        "{err}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = cache.path().join("serve.err");
    let mut child = Killed(
        std::process::Command::new(bin)
            .args([
                "serve",
                "--store",
                &pg.url(),
                "--wait-for-store",
                "60",
                "--cache",
            ])
            .arg(cache.path())
            .args(["--addr", &format!("127.0.0.1:{port}"), "--log", "warn"])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    until(
        "the replica saying it waits",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("waiting for the store")
        },
    );
    assert!(child.0.try_wait().unwrap().is_none(), "it gave up");
    pg.start_again();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    until("the replica serving", Duration::from_secs(30), || {
        agent()
            .get(&format!("http://{addr}/health/ready"))
            .call()
            .is_ok_and(|r| r.status() == 200)
    });
    drop(child);
}

/// (status, JSON body) of a call with a token.
fn call_as(addr: SocketAddr, token: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let url = format!("http://{addr}{path}");
    let a = agent();
    let auth = format!("Bearer {token}");
    let res = match method {
        "GET" => a.get(&url).header("Authorization", &auth).call(),
        _ => a.post(&url).header("Authorization", &auth).send_json(body),
    };
    let mut res = res.unwrap();
    let status = res.status().as_u16();
    (status, res.body_mut().read_json().unwrap_or(Value::Null))
}

/// What holds per request or per account holds across replicas: a token revoked
/// through the CLI stops working on every replica within a second (the replicas poll
/// every 30 s: only the notification can do it); two moderators claiming the same
/// accounts on two replicas at once get disjoint sets; a canary answers each user with
/// the same version on every replica; an alert kind is sent once per window by all the
/// replicas together.
#[test]
fn tokens_claims_canary_and_alerts_hold_across_replicas() {
    use spamscope::store::tokens::{Role, TokenStore};
    let pg = TempPg::start();
    let caches: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let cli = pg.registry(caches[2].path());
    common::train_version(&cli, DATA, 4);
    common::train_version(&cli, DATA, 5);
    let tokens = TokenStore::of(&cli);
    let admin = tokens.add("ops", Role::Admin).unwrap();
    let mod_a = tokens.add("mod-a", Role::Moderator).unwrap();
    let mod_b = tokens.add("mod-b", Role::Moderator).unwrap();
    let (ra, rb) = (pg.registry(caches[0].path()), pg.registry(caches[1].path()));
    let (rt_a, a) = common::replica(&ra);
    let (rt_b, b) = common::replica(&rb);

    // Claims: the same 200 accounts, claimed at once through A and through B.
    let ids: Vec<String> = (0..200).map(|i| format!("{}", 40_000_000 + i)).collect();
    let body = json!({"user_ids": ids});
    let (ga, gb) = std::thread::scope(|s| {
        let ta = s.spawn(|| call_as(a, &mod_a, "POST", "/review/claims", &body));
        let tb = s.spawn(|| call_as(b, &mod_b, "POST", "/review/claims", &body));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert_eq!((ga.0, gb.0), (200, 200), "{ga:?} {gb:?}");
    let granted = |v: &Value| -> std::collections::BTreeSet<String> {
        v["granted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    let (sa, sb) = (granted(&ga.1), granted(&gb.1));
    assert!(sa.is_disjoint(&sb), "an account went to both");
    assert_eq!(sa.len() + sb.len(), 200, "every account went to one");

    // Canary: half the users on version 1; each user gets one version on both.
    let (st, e) = call_as(
        a,
        &admin,
        "POST",
        "/model/experiment",
        &json!({"version": 1, "mode": "canary", "share": 0.5}),
    );
    assert_eq!(st, 200, "{e}");
    until("the canary on B", Duration::from_secs(1), || {
        call_as(b, &admin, "GET", "/model/experiment", &Value::Null).1["running"] == true
    });
    let mut versions = std::collections::BTreeSet::new();
    for i in 0..40 {
        let acct = account(i);
        let va = call_as(a, &admin, "POST", "/predict", &acct).1["model_version"].clone();
        let vb = call_as(b, &admin, "POST", "/predict", &acct).1["model_version"].clone();
        assert_eq!(va, vb, "user acct{i}: {va} on A, {vb} on B");
        versions.insert(va.to_string());
    }
    assert_eq!(
        versions.len(),
        2,
        "both arms answer some users: {versions:?}"
    );

    // Revocation through the CLI: refused on both replicas within a second.
    assert_eq!(
        call_as(b, &mod_b, "GET", "/review/queue", &Value::Null).0,
        200
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spamscope"))
        .args(["token", "revoke", "mod-b", "--store", &pg.url(), "--cache"])
        .arg(caches[2].path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for r in [a, b] {
        let took = until("the revocation", Duration::from_secs(1), || {
            call_as(r, &mod_b, "GET", "/review/queue", &Value::Null).0 == 401
        });
        eprintln!("{r}: mod-b refused after {took:?}");
        assert_eq!(
            call_as(r, &mod_a, "GET", "/review/queue", &Value::Null).0,
            200
        );
    }
    drop((rt_a, rt_b));

    // Alerts: the same kind raised on two replicas is delivered once per window.
    use spamscope::ops::alert::{Alert, AlertKind, WebhookSender};
    let (url, bodies) = common::receiver(Vec::new());
    let senders: Vec<WebhookSender> = [&ra, &rb]
        .iter()
        .map(|r| {
            WebhookSender::from_registry(r, Some(&url))
                .unwrap()
                .unwrap()
        })
        .collect();
    let alert = Alert {
        kind: AlertKind::Drift,
        message: "features moved".into(),
        version: Some(2),
        details: json!({}),
    };
    for s in &senders {
        s.send(alert.clone());
    }
    let settled = |s: &WebhookSender| s.delivered() + s.duplicates() + s.failed();
    until("both senders done", Duration::from_secs(10), || {
        senders.iter().map(settled).sum::<u64>() == 2
    });
    let delivered: u64 = senders.iter().map(|s| s.delivered()).sum();
    assert_eq!(delivered, 1, "one delivery between the replicas");
    assert_eq!(senders.iter().map(|s| s.duplicates()).sum::<u64>(), 1);
    assert_eq!(bodies.try_iter().count(), 1);
    // Another kind is not held back by it.
    senders[1].send(Alert {
        kind: AlertKind::ErrorRate,
        ..alert
    });
    until("the other kind", Duration::from_secs(10), || {
        senders[1].delivered() == 1 + u64::from(senders[0].delivered() == 0)
    });
}

/// Decision policies across replicas (issue 25): a policy published through replica A
/// decides on replica B within a second (B polls every 30 s: only the notification can
/// do it); what A decided is read by account on B with the review B took; the review
/// queue that decisions fill and the review time are the team's on either replica.
#[test]
fn a_policy_published_on_one_replica_decides_on_all_and_is_audited_on_any() {
    use spamscope::store::tokens::{Role, TokenStore};
    let pg = TempPg::start();
    let caches: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let cli = pg.registry(caches[2].path());
    common::train_version(&cli, DATA, 5);
    let tokens = TokenStore::of(&cli);
    let admin = tokens.add("lead", Role::Admin).unwrap();
    let ann = tokens.add("ann", Role::Moderator).unwrap();
    let (rt_a, a) = common::replica(&pg.registry(caches[0].path()));
    let (rt_b, b) = common::replica(&pg.registry(caches[1].path()));
    let draft = json!({"rules": [
        {"name": "likely", "when": "probability >= 0.5", "outcome": "review"},
        {"name": "very likely", "when": "probability >= 0.9", "outcome": "block"},
    ]});
    let (st, d) = call_as(a, &ann, "POST", "/policies", &draft);
    assert_eq!(st, 200, "{d}");
    let (st, p) = call_as(a, &admin, "POST", "/policies/1/publish", &json!({}));
    assert_eq!(st, 200, "{p}");
    let took = until("B deciding with policy 1", Duration::from_secs(5), || {
        call_as(b, &admin, "POST", "/predict", &account(0)).1["policy_version"] == 1
    });
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Accounts scored on A; the review queue read on B holds those A sent to review.
    let data = spamscope::data::synth::default_dataset(DATA);
    let labels = data.labels.as_ref().unwrap();
    let spammers = (0..labels.len()).filter(|&i| labels[i] == 1).take(30);
    let rows: Vec<usize> = spammers.chain(0..30).collect();
    let mut queued = Vec::new();
    for i in rows {
        let (_, r) = call_as(a, &admin, "POST", "/predict", &account(i));
        if r["decision"] != "allow" && !queued.contains(&format!("acct{i}")) {
            queued.push(format!("acct{i}"));
        }
    }
    assert!(!queued.is_empty());
    let first = queued[0].clone();
    until(
        "A's decisions in B's queue",
        Duration::from_secs(10),
        || {
            let (_, q) = call_as(b, &ann, "GET", "/review/queue?source=decisions", &json!({}));
            q["waiting"].as_u64() == Some(queued.len() as u64)
        },
    );
    // Ann claims on B and reviews on A: the account leaves the queue everywhere, its
    // history (A's decision, her review) reads the same on B, and its review time counts.
    let (st, _) = call_as(
        b,
        &ann,
        "POST",
        "/review/claims",
        &json!({"user_ids": [first]}),
    );
    assert_eq!(st, 200);
    let i: usize = first[4..].parse().unwrap();
    let mut fb = account(i);
    fb["label"] = json!(1);
    let (st, r) = call_as(a, &ann, "POST", "/feedback", &fb);
    assert_eq!(st, 200, "{r}");
    let (_, h) = call_as(b, &ann, "GET", &format!("/accounts/{first}"), &json!({}));
    assert_eq!(h["reviews"][0]["moderator"], "ann", "{h}");
    assert!(
        h["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["policy_version"] == 1 && d["decision"] != "allow"),
        "{h}"
    );
    let (_, q) = call_as(b, &ann, "GET", "/review/queue?source=decisions", &json!({}));
    assert_eq!(q["waiting"].as_u64(), Some(queued.len() as u64 - 1), "{q}");
    let metrics = agent()
        .get(format!("http://{b}/metrics"))
        .header("Authorization", &format!("Bearer {admin}"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("spamscope_review_seconds_count 1"),
        "{metrics}"
    );
    drop((rt_a, rt_b));
}
