//! `spamscope serve`: routes in-process (tower's `oneshot`) and over a real loopback
//! socket; bad input, tokens and roles, hot swap under load, graceful shutdown.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use spamscope::data::synth::{SynthParams, default_dataset};
use spamscope::model::forest::ForestParams;
use spamscope::ops::train::{TrainConfig, train};
use spamscope::service::{Limits, State, router};
use spamscope::store::Registry;
use spamscope::store::feedback::{FeedbackStore, NewFeedback, Origin};
use spamscope::store::predictions::Retention;
use spamscope::store::tokens::{Role, TokenStore};
use spamscope::util::progress::NoProgress;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

mod common;

const DATA: SynthParams = SynthParams {
    rows: 3000,
    seed: 5,
};

fn train_version(reg: &Registry, trees: usize, activate: bool) {
    let data = default_dataset(DATA);
    let cfg = TrainConfig {
        params: ForestParams {
            n_trees: trees,
            max_depth: Some(10),
            ..Default::default()
        },
        ..Default::default()
    };
    train(&data, None, &cfg, &NoProgress)
        .unwrap()
        .register(reg, &data, &cfg, activate)
        .unwrap();
}

fn registry(dir: &Path) -> Registry {
    let reg = Registry::open(dir).unwrap();
    train_version(&reg, 10, true);
    reg
}

fn state(reg: &Registry, limits: Limits) -> Arc<State> {
    State::new(reg.clone(), limits, Retention::default(), true).unwrap()
}

/// The features of row `i` of the synthetic data, as a request object.
fn features(i: usize) -> (Value, Vec<f64>) {
    let data = default_dataset(DATA);
    let row = data.row(i);
    let cat = spamscope::data::catalog::catalog();
    let mut m = serde_json::Map::new();
    for (f, v) in cat.features.iter().zip(&row) {
        if !v.is_nan() {
            m.insert(f.id.clone(), json!(v));
        }
    }
    (json!({ "features": m }), row)
}

struct Reply {
    status: StatusCode,
    body: Value,
}

async fn call(
    s: &Arc<State>,
    method: &str,
    uri: &str,
    body: Option<Vec<u8>>,
    token: Option<&str>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, Body::from))
        .unwrap();
    let res = router(s.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    Reply { status, body }
}

async fn post(s: &Arc<State>, uri: &str, body: &Value) -> Reply {
    call(
        s,
        "POST",
        uri,
        Some(serde_json::to_vec(body).unwrap()),
        None,
    )
    .await
}

async fn get(s: &Arc<State>, uri: &str) -> Reply {
    call(s, "GET", uri, None, None).await
}

#[tokio::test]
async fn reference_routes_answer_like_the_reference_and_more() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let s = state(&reg, Limits::default());
    let (_, model) = reg.load_active().unwrap();

    let r = get(&s, "/health").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "healthy");
    assert_eq!(r.body["model_version"], 1);

    // One account: the model's probability, the verdict, reasons, an id.
    let (req, row) = features(17);
    let r = post(&s, "/predict", &req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The raw score decides; the probability is its calibration (fitted on the
    // version's holdout), which the balanced forest needs: its score over-states spam.
    let score = r.body["score"].as_f64().unwrap();
    assert_eq!(score, model.predict_one(&row));
    let p = r.body["probability"].as_f64().unwrap();
    assert_eq!(p, model.probability(score));
    assert_eq!(r.body["calibrated"], json!(true));
    assert!(model.calibration.is_some());
    assert_eq!(r.body["is_spammer"], json!(score > 0.5));
    assert_eq!(r.body["prediction"], json!(u8::from(score > 0.5)));
    assert_eq!(r.body["model_version"], 1);
    assert!(r.body["prediction_id"].as_str().unwrap().len() > 8);
    assert_eq!(r.body["contributions"].as_array().unwrap().len(), 3);
    for f in r.body["risk_factors"].as_array().unwrap() {
        for k in ["feature", "description", "category", "value", "reason"] {
            assert!(f[k].is_string(), "{f}");
        }
    }
    // Logged, with its features.
    let id = r.body["prediction_id"].as_str().unwrap();
    let logged = s
        .log
        .get(id)
        .unwrap()
        .expect("the prediction is in the log");
    assert_eq!(logged.version, 1);
    assert_eq!(logged.score, score);

    // Exact explanations: the model's own TreeSHAP values.
    let r = post(&s, "/predict?explain=exact:5", &req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let exact = model.explain_one(&row, spamscope::model::explain::Method::TreeShap);
    let top = exact.top(5);
    let got: Vec<f64> = r.body["contributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["contribution"].as_f64().unwrap())
        .collect();
    assert_eq!(got, top.iter().map(|t| t.1).collect::<Vec<_>>());
    let r = post(&s, "/predict?explain=0", &req).await;
    assert!(r.body["contributions"].as_array().unwrap().is_empty());

    // Catalog names and missing values: imputed and listed; strict refuses them.
    let some = json!({"features": {"AccountAge_Seconds": 86400.0, "x6": 4, "X19": null}});
    let r = post(&s, "/predict", &some).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let imputed = r.body["imputed"].as_array().unwrap();
    assert_eq!(imputed.len(), 49);
    assert!(imputed.contains(&json!("X19")) && !imputed.contains(&json!("X6")));
    let r = post(&s, "/predict?strict=true", &some).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"]["code"], "missing_features");

    // Batch: one response per account, in order.
    let batch = json!([features(1).0, features(2).0, features(3).0]);
    let r = post(&s, "/predict/batch", &batch).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body.as_array().unwrap();
    assert_eq!(items.len(), 3);
    for (k, item) in items.iter().enumerate() {
        let score = model.predict_one(&features(k + 1).1);
        assert_eq!(item["score"].as_f64().unwrap(), score);
        assert_eq!(
            item["probability"].as_f64().unwrap(),
            model.probability(score)
        );
    }

    // Model information as the reference's client reads it.
    let r = get(&s, "/model/info").await;
    assert_eq!(r.status, StatusCode::OK);
    let mapping = r.body["feature_mapping"].as_object().unwrap();
    assert_eq!(mapping.len(), 51);
    for (_, f) in mapping {
        assert!(["numeric", "categorical", "boolean"].contains(&f["type"].as_str().unwrap()));
        assert!(f["importance"].is_number() && f["description"].is_string());
    }
    assert!(r.body["metrics"]["roc_auc"].is_number());
    assert_eq!(r.body["categories"].as_array().unwrap().len(), 8);
    let r = get(&s, "/model/version").await;
    assert_eq!(r.body["version"], 1);
    assert!(r.body["last_updated"].is_string());

    // Feedback statistics as the reference's client reads them: three records, two
    // where the model's verdict was right.
    let r = get(&s, "/model/feedback/stats").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["total_feedback"], 0);
    assert_eq!(r.body["accuracy"], 0.0);
    let records: Vec<NewFeedback> = [(1, 1), (0, 0), (1, 0)]
        .into_iter()
        .map(|(predicted, label)| NewFeedback {
            user_id: None,
            features: row.clone(),
            true_label: label,
            probability: Some(0.5),
            model_version: Some(1),
            predicted: Some(predicted),
            notes: String::new(),
            origin: Origin::App,
        })
        .collect();
    FeedbackStore::open_in(dir.path())
        .unwrap()
        .add_batch(&records)
        .unwrap();
    let r = get(&s, "/model/feedback/stats").await;
    assert_eq!(r.body["total_feedback"], 3);
    assert_eq!(r.body["correct_predictions"], 2);
    assert_eq!(r.body["accuracy"].as_f64().unwrap(), 2.0 / 3.0);
    let last = r.body["last_retrain"].as_str().unwrap();
    assert!(last.ends_with("+00:00") && last.contains('T'), "{last}");
    assert_eq!(r.body["by_version"][0]["correct"], 2);
}

#[tokio::test]
async fn bad_input_is_a_json_error_naming_what_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let s = state(
        &reg,
        Limits {
            max_body: 64 * 1024,
            max_batch: 5,
            ..Default::default()
        },
    );
    let raw = |b: &str| Some(b.as_bytes().to_vec());
    // (method, uri, body, status, error code, field)
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<Vec<u8>>,
        u16,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        ("POST", "/predict", raw("{not json"), 400, "not_json", None),
        ("POST", "/predict", raw(""), 400, "not_json", None),
        (
            "POST",
            "/predict",
            raw("[1,2]"),
            400,
            "wrong_type",
            Some("body"),
        ),
        (
            "POST",
            "/predict",
            raw("{}"),
            400,
            "missing_field",
            Some("features"),
        ),
        (
            "POST",
            "/predict",
            raw(r#"{"features": [1]}"#),
            400,
            "wrong_type",
            Some("features"),
        ),
        (
            "POST",
            "/predict",
            raw(r#"{"features": {"X1": "5"}}"#),
            400,
            "wrong_type",
            Some("features.X1"),
        ),
        (
            "POST",
            "/predict",
            raw(r#"{"features": {"X99": 5}}"#),
            400,
            "unknown_feature",
            Some("features.X99"),
        ),
        (
            "POST",
            "/predict",
            raw(r#"{"features": {"X6": 9}}"#),
            400,
            "invalid_value",
            Some("features.X6"),
        ),
        (
            "POST",
            "/predict",
            raw(r#"{"features": {"X6": 2.5}}"#),
            400,
            "invalid_value",
            Some("features.X6"),
        ),
        (
            "POST",
            "/predict",
            raw(r#"{"features": {"X1": 1e999}}"#),
            400,
            "not_json",
            None,
        ),
        (
            "POST",
            "/predict",
            raw(r#"{"features": {"X1": -1}}"#),
            400,
            "invalid_value",
            Some("features.X1"),
        ),
        (
            "POST",
            "/predict",
            raw(r#"{"features": {"X6": 3, "CountryTier": 3}}"#),
            400,
            "duplicate_feature",
            Some("features.X6"),
        ),
        (
            "POST",
            "/predict",
            raw(r#"{"features": {}, "user_id": [1]}"#),
            400,
            "wrong_type",
            Some("user_id"),
        ),
        (
            "POST",
            "/predict?explain=lots",
            raw(r#"{"features": {}}"#),
            400,
            "bad_query",
            Some("explain"),
        ),
        (
            "POST",
            "/predict?explain=99",
            raw(r#"{"features": {}}"#),
            400,
            "bad_query",
            Some("explain"),
        ),
        (
            "POST",
            "/predict?strict=maybe",
            raw(r#"{"features": {}}"#),
            400,
            "bad_query",
            Some("strict"),
        ),
        (
            "POST",
            "/predict",
            Some(vec![b' '; 70 * 1024]),
            413,
            "body_too_large",
            None,
        ),
        (
            "POST",
            "/predict/batch",
            raw(r#"{"features": {}}"#),
            400,
            "wrong_type",
            Some("body"),
        ),
        (
            "POST",
            "/predict/batch",
            raw(&format!("[{}]", [r#"{"features": {}}"#; 6].join(","))),
            413,
            "batch_too_large",
            None,
        ),
        (
            "POST",
            "/predict/batch",
            raw(r#"[{"features": {}}, {"features": {"X6": 0}}]"#),
            400,
            "invalid_value",
            Some("[1].features.X6"),
        ),
        ("GET", "/nowhere", None, 404, "not_found", None),
        ("GET", "/predict", None, 405, "method_not_allowed", None),
        (
            "POST",
            "/model/rollback",
            raw(r#"{"to": "two"}"#),
            400,
            "wrong_type",
            Some("to"),
        ),
        (
            "POST",
            "/model/rollback",
            raw(r#"{"to": 9}"#),
            404,
            "no_such_version",
            Some("to"),
        ),
    ];
    for (method, uri, body, status, code, field) in cases {
        let shown = body
            .as_ref()
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(60)]).to_string());
        let r = call(&s, method, uri, body, None).await;
        assert_eq!(
            r.status.as_u16(),
            status,
            "{method} {uri} {shown:?}: {}",
            r.body
        );
        assert_eq!(r.body["error"]["code"], code, "{uri} {shown:?}: {}", r.body);
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(
            !msg.is_empty() && !msg.contains('\n') && msg.len() < 500,
            "{msg}"
        );
        assert_eq!(
            r.body["error"]["field"].as_str(),
            field,
            "{uri} {shown:?}: {}",
            r.body
        );
    }
    // A hostile key is quoted, not echoed whole.
    let long = format!(r#"{{"features": {{"{}": 1}}}}"#, "k".repeat(20_000));
    let r = call(&s, "POST", "/predict", raw(&long), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.to_string().len() < 1500);
    // The service still answers.
    assert_eq!(get(&s, "/health").await.status, StatusCode::OK);
}

#[tokio::test]
async fn tokens_and_roles_decide_who_may_do_what() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    train_version(&reg, 5, false);
    let store = TokenStore::open_in(dir.path());
    let scorer = store.add("checkout", Role::Scorer).unwrap();
    let moderator = store.add("mia", Role::Moderator).unwrap();
    let admin = store.add("ops", Role::Admin).unwrap();
    let s = state(&reg, Limits::default());
    let body = || Some(serde_json::to_vec(&features(3).0).unwrap());
    let rb = || Some(br#"{"to": 2}"#.to_vec());

    let r = call(&s, "POST", "/predict", body(), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"]["code"], "unauthorized");
    let r = call(&s, "POST", "/predict", body(), Some("ssk_wrong")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    for t in [&scorer, &moderator, &admin] {
        let r = call(&s, "POST", "/predict", body(), Some(t)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    // The log names the caller.
    let id = r_id(&call(&s, "POST", "/predict", body(), Some(&moderator)).await);
    assert_eq!(s.log.get(&id).unwrap().unwrap().caller, "mia");
    // Feedback needs a moderator.
    let fb = || Some(br#"{"prediction_id": "x", "is_correct": true}"#.to_vec());
    let r = call(&s, "POST", "/feedback", fb(), Some(&scorer)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = call(&s, "POST", "/feedback", fb(), Some(&moderator)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    // Feedback on the logged prediction is stored under the token's name.
    let linked = format!(r#"{{"prediction_id": "{id}", "is_correct": false}}"#);
    let r = call(
        &s,
        "POST",
        "/feedback",
        Some(linked.into_bytes()),
        Some(&moderator),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = call(&s, "GET", "/model/feedback/stats", None, Some(&scorer)).await;
    assert_eq!(r.body["by_moderator"][0]["moderator"], "mia", "{}", r.body);
    assert_eq!(r.body["by_moderator"][0]["total"], 1, "{}", r.body);
    for t in [&scorer, &moderator] {
        let r = call(&s, "POST", "/model/rollback", rb(), Some(t)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("admin")
        );
    }
    let r = call(&s, "GET", "/model/versions", None, Some(&scorer)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(&s, "GET", "/model/versions", None, Some(&moderator)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Experiments: moderators read them, admins start, stop and promote them.
    let ex = || Some(br#"{"version": 2, "mode": "shadow"}"#.to_vec());
    let r = call(&s, "GET", "/model/experiment", None, Some(&scorer)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(&s, "GET", "/model/experiment", None, Some(&moderator)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for t in [&scorer, &moderator] {
        for (method, path, body) in [
            ("POST", "/model/experiment", ex()),
            ("DELETE", "/model/experiment", None),
            ("POST", "/model/experiment/promote", None),
        ] {
            let r = call(&s, method, path, body, Some(t)).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}");
        }
    }
    let r = call(&s, "POST", "/model/experiment", ex(), Some(&admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["experiment"]["started_by"], "ops");
    let r = call(&s, "DELETE", "/model/experiment", None, Some(&admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = call(&s, "POST", "/model/rollback", rb(), Some(&admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["model_version"], 2);
    let r = call(&s, "GET", "/model/versions", None, Some(&admin)).await;
    assert_eq!(r.body["versions"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["serving"], 2);
    // Health needs no token; a revoked token stops working once the file is re-read.
    assert_eq!(
        call(&s, "GET", "/health", None, None).await.status,
        StatusCode::OK
    );
    store.revoke("checkout").unwrap();
    s.refresh_tokens();
    let r = call(&s, "POST", "/predict", body(), Some(&scorer)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

fn r_id(r: &Reply) -> String {
    r.body["prediction_id"].as_str().unwrap().to_string()
}

/// Without tokens the service refuses to listen beyond loopback.
#[test]
fn no_tokens_no_network() {
    let dir = tempfile::tempdir().unwrap();
    registry(dir.path());
    let err = spamscope::service::run(
        spamscope::service::ServeConfig {
            store: spamscope::store::location::Location::Folder(dir.path().to_path_buf()),
            wait_for_store: None,
            addr: "0.0.0.0:0".parse().unwrap(),
            workers: 1,
            limits: Limits::default(),
            retention: Retention::default(),
            webhook: None,
            mlflow: None,
        },
        &NoProgress,
    )
    .unwrap_err();
    assert!(err.to_string().contains("without API tokens"), "{err}");
}

/// A minimal HTTP/1.1 client over a real socket (one request per connection).
fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status: u16 = text[9..12].parse().unwrap();
    let (_, rest) = text.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(rest).unwrap_or(Value::Null))
}

/// Under continuous load over a real socket, a new version is promoted by another
/// "process" (the registry): no request fails, every response names its version, and
/// its probability is that version's, never a mix.
#[test]
fn a_promotion_under_load_swaps_versions_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let s = state(&reg, Limits::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    {
        let s = s.clone();
        rt.spawn(async move {
            spamscope::service::spawn_watcher(&s, Duration::from_millis(50));
            axum::serve(listener, router(s)).await.unwrap();
        });
    }
    // A spammer: both versions give it a probability of their own.
    let data = default_dataset(DATA);
    let spammer = (0..data.n_rows())
        .find(|&i| data.labels.as_ref().unwrap()[i] == 1)
        .unwrap();
    let (req, row) = features(spammer);
    let body = req.to_string();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Answers so far by version (index 1 and 2).
    let answered: Arc<[std::sync::atomic::AtomicUsize; 3]> = Arc::default();
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let body = body.clone();
            let stop = stop.clone();
            let answered = answered.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let start = Instant::now();
                while !stop.load(std::sync::atomic::Ordering::SeqCst)
                    && start.elapsed() < Duration::from_secs(60)
                {
                    let (status, v) = http(addr, "POST", "/predict", &body);
                    assert_eq!(status, 200, "{v}");
                    let version = v["model_version"].as_u64().unwrap() as u32;
                    seen.push((version, v["score"].as_f64().unwrap()));
                    answered[version.min(2) as usize]
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                seen
            })
        })
        .collect();
    // Waits until the clients have had `n` answers from version `v`.
    let answers_from = |v: usize, n: usize| {
        let start = Instant::now();
        while answered[v].load(std::sync::atomic::Ordering::SeqCst) < n {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "waited 30 s for {n} answers from v{v}; answers by version {answered:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // Under load with v1 before the promotion, and with v2 after it.
    answers_from(1, 20);
    train_version(&reg, 25, true);
    answers_from(2, 20);
    assert_eq!(s.active().manifest.version, 2);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen: Vec<(u32, f64)> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let p1 = reg.load(1).unwrap().1.predict_one(&row);
    let p2 = reg.load(2).unwrap().1.predict_one(&row);
    assert_ne!(p1, p2);
    assert!(seen.iter().any(|s| s.0 == 1) && seen.iter().any(|s| s.0 == 2));
    for (v, p) in &seen {
        assert_eq!(
            *p,
            if *v == 1 { p1 } else { p2 },
            "version {v} answered {p}"
        );
    }
    // Once v2 answered, v1 never answers again on a client's stream... per client order
    // is not tracked across threads; the total is what matters here.
    assert!(seen.len() > 20, "{} requests", seen.len());
}

/// `spamscope serve` as a process: answers over loopback, stops on SIGTERM after the
/// requests in flight, and every prediction it made is in the log.
#[test]
fn serve_process_answers_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    registry(dir.path());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_spamscope"))
        .args([
            "serve",
            "--registry",
            dir.path().to_str().unwrap(),
            "--addr",
            &addr.to_string(),
            "--workers",
            "2",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the service did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = features(4).0.to_string();
    let mut ids = Vec::new();
    for _ in 0..200 {
        let (status, v) = http(addr, "POST", "/predict", &body);
        assert_eq!(status, 200, "{v}");
        ids.push(v["prediction_id"].as_str().unwrap().to_string());
    }
    let (status, v) = http(addr, "GET", "/health", "");
    assert_eq!((status, v["status"].as_str()), (200, Some("healthy")));
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("stopped"), "{err}");
    // The closing summary at info level counts what was answered.
    assert!(
        err.lines()
            .any(|l| l.contains("INFO") && l.contains("predictions logged, 0 dropped")),
        "{err}"
    );
    let log = spamscope::store::predictions::PredictionLog::open(dir.path(), Retention::default())
        .unwrap();
    assert_eq!(log.count().unwrap(), 200);
    for id in &ids {
        assert!(log.get(id).unwrap().is_some(), "{id} lost");
    }
}

/// `POST /feedback`: on a logged prediction the record gets the prediction's features;
/// on an id never logged it is accepted unlinked (statistics only, never a retrain);
/// an account scored elsewhere comes with its features and label.
#[tokio::test]
async fn feedback_links_to_the_prediction_log() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let s = state(&reg, Limits::default());
    let (req, row) = features(8);
    let r = post(&s, "/predict", &req).await;
    let id = r_id(&r);
    let predicted = r.body["prediction"].as_u64().unwrap() as u8;

    let fb = json!({"prediction_id": id, "is_correct": false, "actual_label": null, "feedback_notes": "sent a malware brief"});
    let r = post(&s, "/feedback", &fb).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["linked"], true);
    assert_eq!(r.body["status"], "success");
    assert_eq!(r.body["label"], 1 - predicted);
    let records = FeedbackStore::open_in(dir.path())
        .unwrap()
        .records(false)
        .unwrap();
    assert_eq!(records.len(), 1);
    let rec = &records[0].record;
    assert_eq!(rec.true_label, 1 - predicted);
    assert_eq!(rec.predicted, Some(predicted));
    assert_eq!(rec.origin, Origin::Service);
    assert_eq!(rec.notes, "sent a malware brief");
    for (a, b) in rec.features.iter().zip(&row) {
        assert!(a == b || (a.is_nan() && b.is_nan()));
    }

    // The reference's own client invents ids: accepted, unlinked.
    let unknown = json!({"prediction_id": "0b7c-invented", "is_correct": true});
    let r = post(&s, "/feedback", &unknown).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["linked"], false);
    assert!(r.body["message"].as_str().unwrap().contains("cannot teach"));

    // An account scored elsewhere.
    let direct = json!({"features": req["features"], "label": 1, "notes": "confirmed"});
    let r = post(&s, "/feedback", &direct).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Statistics count the two records with features (what a retrain can use, and
    // what `spamscope feedback stats` counts); the unlinked one is counted beside.
    let r = get(&s, "/model/feedback/stats").await;
    assert_eq!(r.body["total_feedback"], 2);
    assert_eq!(r.body["unlinked_feedback"], 1);
    let store = FeedbackStore::open_in(dir.path()).unwrap();
    assert_eq!(store.count_unused().unwrap(), 2);

    // Bad feedback is a JSON error naming the field.
    for (body, code, field) in [
        (json!({"prediction_id": id}), "wrong_type", "is_correct"),
        (
            json!({"prediction_id": 5, "is_correct": true}),
            "wrong_type",
            "prediction_id",
        ),
        (
            json!({"prediction_id": id, "is_correct": true, "actual_label": 2}),
            "wrong_type",
            "actual_label",
        ),
        (
            json!({"features": req["features"]}),
            "missing_field",
            "label",
        ),
        (json!({"label": 1}), "missing_field", "prediction_id"),
        (
            json!({"features": req["features"], "label": 1, "notes": "n".repeat(10_001)}),
            "too_long",
            "notes",
        ),
    ] {
        let r = post(&s, "/feedback", &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.body["error"]["code"], code, "{}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{}", r.body);
    }
}

/// Retrains of small forests whose gate lets every candidate through (weighting the
/// records by their moderator's trust, so that path runs too).
fn quick_lenient_retrains(reg: &Registry) {
    spamscope::ops::online::OnlineLearningConfig {
        max_auc_drop: 1.0,
        feedback_tolerance: 1.0,
        trust_weighting: true,
        forest: ForestParams {
            n_trees: 8,
            max_depth: Some(8),
            ..Default::default()
        },
        ..Default::default()
    }
    .save(reg)
    .unwrap();
}

/// `POST /model/retrain` answers at once with a job; `GET /jobs/{id}` follows it to the
/// gate's decision, and a promoted version then answers the requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrain_runs_as_a_job_and_its_promotion_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    quick_lenient_retrains(&reg);
    let s = state(&reg, Limits::default());
    // Too little feedback: the job fails and says why.
    let r = post(&s, "/model/retrain", &json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let first = r.body["job_id"].as_u64().unwrap();
    let done = wait_job(&s, first).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["error"].as_str().unwrap().contains("feedback records"),
        "{done}"
    );
    // Moderators label 30 accounts through the service; ten of them get a confirmed
    // label, so the trust weighting runs on agreement with confirmed labels.
    for i in 0..30 {
        let (req, _) = features(100 + i);
        let user = format!("r-{i}");
        let r = post(
            &s,
            "/feedback",
            &json!({"features": req["features"], "label": 1, "user_id": user}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        if i < 10 {
            // By someone else than the caller (anonymous here), or it would not count.
            spamscope::ops::review::confirm_label(&reg, &user, u8::from(i < 8), "lead", "")
                .unwrap();
        }
    }
    let r = get(&s, "/model/feedback/stats").await;
    let me = &r.body["by_moderator"][0];
    assert_eq!(
        (
            me["confirmed"].as_u64(),
            me["agreement_with_confirmed"].as_f64()
        ),
        (Some(10), Some(0.8)),
        "{}",
        r.body
    );
    // Nobody else to compare with: trust is the confirmed agreement shrunk toward the
    // team's (which is this moderator's): 0.8.
    assert!((me["trust"].as_f64().unwrap() - 0.8).abs() < 1e-9, "{me}");
    let r = post(&s, "/model/retrain", &json!({})).await;
    let id = r.body["job_id"].as_u64().unwrap();
    assert_ne!(id, first);
    let done = wait_job(&s, id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["result"]["promoted"], true, "{done}");
    assert_eq!(done["result"]["candidate_version"], 2);
    // The gate's held-out feedback, by moderator (anonymous without tokens).
    let by = done["result"]["by_moderator"].as_array().unwrap();
    assert_eq!(by.len(), 1, "{done}");
    assert_eq!(by[0]["moderator"], "anonymous");
    assert_eq!(by[0]["records"], done["result"]["feedback_holdout"]);
    assert!(by[0]["accuracy_candidate"].as_f64().unwrap() >= 0.0);
    let r = post(&s, "/predict", &features(3).0).await;
    assert_eq!(r.body["model_version"], 2);
    let r = get(&s, "/jobs/999").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = get(&s, "/jobs/abc").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

async fn wait_job(s: &Arc<State>, id: u64) -> Value {
    let start = Instant::now();
    loop {
        let r = get(s, &format!("/jobs/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        if r.body["state"] != "running" {
            return r.body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "job {id} never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /metrics`: Prometheus text with requests by route and status, latency
/// histograms, verdicts, the active version, feedback counts and drift of the requests.
#[tokio::test]
async fn metrics_in_prometheus_text_format() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let s = state(&reg, Limits::default());
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = post(&s, "/predict", &features(i).0).await;
        assert_eq!(r.status, StatusCode::OK);
        ids.push(r.body["prediction_id"].as_str().unwrap().to_string());
    }
    post(&s, "/predict", &json!({"features": {"X6": 9}})).await;
    get(&s, "/nowhere").await;
    s.log.flush().unwrap();
    // Moderators: two of the model's verdicts confirmed, one contradicted.
    for (id, right) in ids.iter().zip([true, true, false]) {
        let fb = json!({"prediction_id": id, "is_correct": right});
        assert_eq!(post(&s, "/feedback", &fb).await.status, StatusCode::OK);
    }
    let text = metrics_text(&s).await;
    for line in [
        "spamscope_requests_total{route=\"/predict\",status=\"200\"} 20",
        "spamscope_requests_total{route=\"/predict\",status=\"400\"} 1",
        "spamscope_requests_total{route=\"unmatched\",status=\"404\"} 1",
        "spamscope_request_seconds_count{route=\"/predict\"} 21",
        "spamscope_active_version 1",
        "spamscope_feedback_total{linked=\"false\"} 0",
        "spamscope_feedback_total{linked=\"true\"} 3",
        "spamscope_feedback_judged{version=\"1\",active=\"true\"} 3",
        "spamscope_feedback_agreed{version=\"1\",active=\"true\"} 2",
        "spamscope_score_count 20",
        "spamscope_score_bucket{le=\"+Inf\"} 20",
        "# TYPE spamscope_score histogram",
        "# TYPE spamscope_predictions_dropped_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    let verdicts: u64 = text
        .lines()
        .filter(|l| l.starts_with("spamscope_predictions_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(verdicts, 20);
    // The score buckets are cumulative and hold every answered prediction.
    let buckets: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("spamscope_score_bucket{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), 11);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(
        buckets[9], 20,
        "every probability is at most 1: {buckets:?}"
    );
    let psi = text
        .lines()
        .filter(|l| l.starts_with("spamscope_feature_psi{"))
        .count();
    assert!(psi > 40, "{psi} PSI lines");
    // Every sample line is `name{labels} number` or `name number`.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let v = l.rsplit(' ').next().unwrap();
        assert!(v.parse::<f64>().is_ok(), "{l}");
    }
}

/// A `text/csv` batch with the data schema is answered with the `score` command's
/// columns; a malformed file is a 400 naming the line.
#[tokio::test]
async fn csv_batches_answer_in_csv() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let s = state(&reg, Limits::default());
    let (_, model) = reg.load_active().unwrap();
    let data = default_dataset(DATA);
    let mut csv = String::from("user_id");
    for f in &spamscope::data::catalog::catalog().features {
        csv.push(',');
        csv.push_str(&f.id);
    }
    csv.push('\n');
    let ids = ["a-1", "=HYPERLINK(1)", "00123"];
    for (k, id) in ids.iter().enumerate() {
        csv.push_str(id);
        for v in data.row(k) {
            csv.push(',');
            if !v.is_nan() {
                csv.push_str(&v.to_string());
            }
        }
        csv.push('\n');
    }
    let send = |body: String| {
        Request::builder()
            .method("POST")
            .uri("/predict/batch?explain=2")
            .header("content-type", "text/csv")
            .body(Body::from(body))
            .unwrap()
    };
    let text = text_reply(&s, send(csv.clone()), "text/csv").await;
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(
            "user_id,probability,is_spammer,model_version,score,explanation_method,reason1_feature"
        ),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 4);
    assert!(lines[1].starts_with("a-1,"));
    assert!(lines[2].starts_with("'=HYPERLINK(1),"), "{}", lines[2]);
    assert!(lines[3].starts_with("00123,"));
    for (k, l) in lines[1..].iter().enumerate() {
        let cells: Vec<&str> = l.split(',').collect();
        let score = model.predict_one(&data.row(k));
        assert_eq!(cells[4].parse::<f64>().unwrap(), score);
        assert_eq!(cells[1].parse::<f64>().unwrap(), model.probability(score));
    }
    s.log.flush().unwrap();
    assert_eq!(s.log.count().unwrap(), 3);
    // A ragged file: a 400 naming the line.
    let res = router(s.clone())
        .oneshot(send(format!("{csv}x,1,2\n")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(
        &axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(body["error"]["code"], "bad_csv");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 5"),
        "{body}"
    );
}

/// Sends `req`, expects 200 with a body of `content_type`, returns the body.
/// `GET /metrics` as text.
async fn metrics_text(s: &Arc<State>) -> String {
    let req = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    text_reply(s, req, "text/plain").await
}

async fn text_reply(s: &Arc<State>, req: Request<Body>, content_type: &str) -> String {
    let res = router(s.clone()).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with(content_type), "{ct}");
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Checks `v` against an OpenAPI 3.1 schema of `doc` (`$ref`, `type` lists, objects
/// with `properties`/`required`, arrays, maps, `oneOf`, `enum`); `at` names the place.
fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            return Err(format!("{at}: dangling {r}"));
        }
        return conforms(doc, target, v, at);
    }
    if let Some(options) = schema["oneOf"].as_array() {
        return if options.iter().any(|o| conforms(doc, o, v, at).is_ok()) {
            Ok(())
        } else {
            Err(format!("{at}: matches none of oneOf: {v}"))
        };
    }
    if let Some(values) = schema["enum"].as_array()
        && !values.contains(v)
    {
        return Err(format!("{at}: {v} is not one of {values:?}"));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let fits = types.is_empty()
        || types.contains(&kind)
        || (kind == "integer" && types.contains(&"number"));
    if !fits {
        return Err(format!("{at}: {kind} where the schema says {types:?}"));
    }
    match v {
        Value::Object(o) => {
            let props = schema["properties"].as_object();
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap();
                if !o.contains_key(r) {
                    return Err(format!("{at}: required {r} is missing"));
                }
            }
            for (k, x) in o {
                match (
                    props.and_then(|p| p.get(k)),
                    schema.get("additionalProperties"),
                ) {
                    (Some(p), _) => conforms(doc, p, x, &format!("{at}.{k}"))?,
                    (None, Some(extra)) if extra.is_object() => {
                        conforms(doc, extra, x, &format!("{at}.{k}"))?
                    }
                    (None, _) if props.is_some() => {
                        return Err(format!("{at}: {k} is not documented"));
                    }
                    _ => {}
                }
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                conforms(doc, &schema["items"], x, &format!("{at}[{i}]"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The schema a route documents for `status` as JSON.
fn documented<'a>(doc: &'a Value, method: &str, path: &str, status: u16) -> &'a Value {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not documented");
    let s = &op["responses"][status.to_string()]["content"]["application/json"]["schema"];
    assert!(
        s.is_object(),
        "{method} {path} documents no JSON for {status}"
    );
    s
}

/// `GET /openapi.json` is derived from the handlers: it lists exactly the routes the
/// router serves, every answer of every route conforms to the schema documented for
/// its status, and each documented request example is accepted by its route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_routes_and_their_answers() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    quick_lenient_retrains(&reg);
    train_version(&reg, 6, false);
    let s = state(&reg, Limits::default());
    let doc = get(&s, "/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let mut ops: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| format!("{} {p}", m.to_uppercase()))
        })
        .collect();
    ops.sort();
    let mut expected = vec![
        "GET /",
        "GET /health",
        "GET /health/live",
        "GET /health/ready",
        "GET /openapi.json",
        "POST /predict",
        "POST /predict/batch",
        "POST /feedback",
        "GET /model/version",
        "GET /model/info",
        "GET /model/feedback/stats",
        "GET /model/versions",
        "GET /model/versions/{version}/files/{name}",
        "GET /model/comparison",
        "GET /review/queue",
        "PUT /model/comparison",
        "POST /model/retrain",
        "GET /jobs/{id}",
        "POST /model/rollback",
        "POST /model/experiment",
        "GET /model/experiment",
        "DELETE /model/experiment",
        "POST /model/experiment/promote",
        "GET /metrics",
        "POST /accounts/{user_id}/label",
        "GET /accounts/{user_id}",
        "POST /review/claims",
        "DELETE /review/claims",
        "POST /review/status",
        "GET /policies",
        "POST /policies",
        "GET /policies/{version}",
        "POST /policies/{version}/publish",
        "POST /policies/{version}/shadow",
        "GET /policies/shadow",
        "DELETE /policies/shadow",
    ];
    expected.sort();
    assert_eq!(ops, expected);
    // The security schemes the tokens use; every route but the public five documents
    // its 401 and 403 answers.
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for op in &ops {
        let (method, path) = op.split_once(' ').unwrap();
        let o = &doc["paths"][path][method.to_lowercase()];
        if [
            "/",
            "/health",
            "/health/live",
            "/health/ready",
            "/openapi.json",
        ]
        .contains(&path)
        {
            assert_eq!(o["security"], json!([{}]), "{op}");
            continue;
        }
        for status in ["401", "403"] {
            let schema = &o["responses"][status]["content"]["application/json"]["schema"];
            assert_eq!(
                schema["$ref"], "#/components/schemas/ErrorBody",
                "{op} {status}: {o}"
            );
        }
    }
    // Every documented operation is served (no fallback 404 or 405).
    for op in &ops {
        let (method, path) = op.split_once(' ').unwrap();
        let uri = path.replace("{id}", "1").replace("{user_id}", "u-1");
        let res = router(s.clone())
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(&uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert!(
            !["not_found", "method_not_allowed"]
                .contains(&body["error"]["code"].as_str().unwrap_or("")),
            "{op} is documented but not served: {status} {body}"
        );
    }
    // Each answer conforms to its documented schema.
    let check = |method: &str, path: &str, r: &Reply| {
        let schema = documented(&doc, method, path, r.status.as_u16());
        conforms(&doc, schema, &r.body, path).unwrap_or_else(|e| panic!("{e}\n{}", r.body));
    };
    let example = |name: &str| doc["components"]["schemas"][name]["example"].clone();
    // The decision policies' answers: a draft (the documented example), the list, a
    // shadow and its numbers, the draft published.
    let r = post(&s, "/policies", &example("PolicyDraft")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    check("post", "/policies", &r);
    let r = post(&s, "/policies/1/shadow", &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    check("post", "/policies/{version}/shadow", &r);
    check("get", "/policies", &get(&s, "/policies").await);
    check(
        "get",
        "/policies/shadow",
        &get(&s, "/policies/shadow").await,
    );
    let r = post(&s, "/policies/1/publish", &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    check("post", "/policies/{version}/publish", &r);
    let r = post(&s, "/predict", &example("PredictRequest")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    check("post", "/predict", &r);
    assert_eq!(r.body["policy_version"], 1, "{}", r.body);
    let pid = r.body["prediction_id"].as_str().unwrap().to_string();
    // An imputed feature's contribution shows the value scored: the version's median.
    let info = get(&s, "/model/info").await.body;
    let r = post(
        &s,
        "/predict?explain=51",
        &json!({"features": {"X1": 86400.0}}),
    )
    .await;
    for c in r.body["contributions"].as_array().unwrap() {
        let f = c["feature"].as_str().unwrap();
        if f != "X1" {
            assert_eq!(c["value"], info["feature_mapping"][f]["median"], "{c}");
        }
    }
    let r = post(&s, "/predict?explain=exact:5", &features(1).0).await;
    check("post", "/predict", &r);
    let r = post(&s, "/predict?explain=none", &features(2).0).await;
    assert_eq!(r.body["explanation_method"], Value::Null);
    // The probability does not depend on how it is explained.
    for i in 5..25 {
        let p: Vec<Value> = {
            let mut p = Vec::new();
            for q in ["none", "3", "51", "exact:2"] {
                p.push(
                    post(&s, &format!("/predict?explain={q}"), &features(i).0)
                        .await
                        .body["probability"]
                        .clone(),
                );
            }
            p
        };
        assert!(p.iter().all(|x| x == &p[0] && x.is_f64()), "{p:?}");
    }
    check("post", "/predict", &r);
    let r = post(&s, "/predict/batch", &json!([features(3).0, features(4).0])).await;
    check("post", "/predict/batch", &r);
    for bad in [
        json!({"features": {"X1": "a"}}),
        json!({"features": {"nope": 1}}),
        json!([]),
    ] {
        let r = post(&s, "/predict", &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        check("post", "/predict", &r);
    }
    for path in [
        "/",
        "/health",
        "/model/version",
        "/model/info",
        "/model/feedback/stats",
        "/model/versions",
    ] {
        let r = get(&s, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        check("get", path, &r);
    }
    // The reference's feedback on a prediction, on an unknown id, and on an account.
    let r = post(
        &s,
        "/feedback",
        &json!({"prediction_id": pid, "is_correct": false, "feedback_notes": "x"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    check("post", "/feedback", &r);
    let r = post(&s, "/feedback", &example("PredictionFeedback")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    check("post", "/feedback", &r);
    let r = post(&s, "/feedback", &example("AccountFeedback")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    check("post", "/feedback", &r);
    let r = get(&s, "/model/feedback/stats").await;
    assert_eq!(r.body["total_feedback"], 2);
    assert_eq!(r.body["unlinked_feedback"], 1);
    check("get", "/model/feedback/stats", &r);
    // Who said what: the two records with features, by the caller (anonymous without
    // tokens); the unknown prediction's record is not among them.
    let by = r.body["by_moderator"].as_array().unwrap();
    assert_eq!(by.len(), 1, "{by:?}");
    assert_eq!(
        (by[0]["moderator"].as_str(), by[0]["total"].as_u64()),
        (Some("anonymous"), Some(2))
    );
    // A retrain job (too little feedback: it fails, and says so).
    let r = post(&s, "/model/retrain", &json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    check("post", "/model/retrain", &r);
    let id = r.body["job_id"].as_u64().unwrap();
    let done = wait_job(&s, id).await;
    let r = get(&s, &format!("/jobs/{id}")).await;
    check("get", "/jobs/{id}", &r);
    assert_eq!(done["state"], "failed");
    // The rollback example (to version 1) and a missing version.
    let r = post(&s, "/model/rollback", &json!({"to": 2})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    check("post", "/model/rollback", &r);
    let r = post(&s, "/model/rollback", &example("RollbackRequest")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["model_version"], 1);
    let r = post(&s, "/model/rollback", &json!({"to": 99})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    check("post", "/model/rollback", &r);
    // The team's routes: each documented example is accepted, and the answers (and a
    // refused key, a bad request) conform.
    let r = post(&s, "/review/claims", &example("ClaimRequest")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    check("post", "/review/claims", &r);
    let r = post(
        &s,
        "/accounts/u-1001/label",
        &example("ConfirmLabelRequest"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    check("post", "/accounts/{user_id}/label", &r);
    let r = post(&s, "/review/status", &example("UserIdsRequest")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["accounts"][0]["confirmed"]["label"], 1);
    check("post", "/review/status", &r);
    let r = get(&s, "/accounts/u-1001").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    check("get", "/accounts/{user_id}", &r);
    let r = call(
        &s,
        "DELETE",
        "/review/claims",
        Some(serde_json::to_vec(&example("UserIdsRequest")).unwrap()),
        None,
    )
    .await;
    assert_eq!(r.body["released"], 2, "{}", r.body);
    check("delete", "/review/claims", &r);
    let r = post(&s, "/review/claims", &json!({"user_ids": 7})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    check("post", "/review/claims", &r);
    let fb = example("AccountFeedback");
    let key = [("idempotency-key", &b"doc-1"[..])];
    let (r, _) = call_with(&s, "POST", "/feedback", &fb, None, &key).await;
    check("post", "/feedback", &r);
    let (r, _) = call_with(
        &s,
        "POST",
        "/feedback",
        &json!({"features": fb["features"], "label": 0}),
        None,
        &key,
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    check("post", "/feedback", &r);
    // Experiments: none, the example (a canary of version 2), its numbers, stop, promote.
    let r = get(&s, "/model/experiment").await;
    check("get", "/model/experiment", &r);
    let r = post(&s, "/model/experiment", &example("ExperimentRequest")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    check("post", "/model/experiment", &r);
    post(&s, "/predict", &features(1).0).await;
    let r = get(&s, "/model/experiment").await;
    assert_eq!(r.body["stats"]["requests"], 1);
    check("get", "/model/experiment", &r);
    let r = post(
        &s,
        "/model/experiment",
        &json!({"version": 2, "mode": "shadow"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    check("post", "/model/experiment", &r);
    let r = call(&s, "DELETE", "/model/experiment", None, None).await;
    check("delete", "/model/experiment", &r);
    let r = call(&s, "DELETE", "/model/experiment", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    check("delete", "/model/experiment", &r);
    let r = post(
        &s,
        "/model/experiment",
        &json!({"version": 9, "mode": "shadow"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    check("post", "/model/experiment", &r);
    post(&s, "/model/experiment", &example("ExperimentRequest")).await;
    let r = post(&s, "/model/experiment/promote", &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    check("post", "/model/experiment/promote", &r);
}

/// A request with extra headers; the reply with its headers.
async fn call_with(
    s: &Arc<State>,
    method: &str,
    uri: &str,
    body: &Value,
    token: Option<&str>,
    headers: &[(&str, &[u8])],
) -> (Reply, axum::http::HeaderMap) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, axum::http::HeaderValue::from_bytes(v).unwrap());
    }
    let req = req
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    let res = router(s.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let h = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap();
    (Reply { status, body }, h)
}

/// `POST /feedback` with an `Idempotency-Key`: the first delivery is stored, a replay
/// (also eight at once) gets the same answer and stores nothing, the key with another
/// body is refused (409), and a bad key is a 400 naming the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_with_an_idempotency_key_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let s = state(&reg, Limits::default());
    let count = || FeedbackStore::open_in(dir.path()).unwrap().count().unwrap();
    let (req, _) = features(40);
    let body = json!({"features": req["features"], "label": 1, "user_id": "u-40"});
    let key = |k: &'static str| [("idempotency-key", k.as_bytes())];
    let (first, h) = call_with(&s, "POST", "/feedback", &body, None, &key("outbox-1")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert!(h.get("idempotent-replayed").is_none());
    let id = first.body["feedback_id"].as_i64().unwrap();
    // The same body with other spacing and key order is the same delivery.
    let reordered = json!({"user_id": "u-40", "label": 1, "features": req["features"]});
    let (again, h) = call_with(&s, "POST", "/feedback", &reordered, None, &key("outbox-1")).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["feedback_id"], id);
    assert_eq!(again.body["linked"], true);
    assert_eq!(h["idempotent-replayed"], "true");
    assert_eq!(count(), 1);
    // Eight identical deliveries racing: one record, one id for all.
    let body2 = json!({"features": req["features"], "label": 0, "user_id": "u-41"});
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            let body2 = body2.clone();
            tokio::spawn(async move {
                let (r, _) =
                    call_with(&s, "POST", "/feedback", &body2, None, &key("outbox-2")).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.body);
                r.body["feedback_id"].as_i64().unwrap()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    assert!(ids.iter().all(|&i| i == ids[0] && i != id), "{ids:?}");
    assert_eq!(count(), 2);
    // The key with another body: 409, nothing stored.
    let other = json!({"features": req["features"], "label": 0, "user_id": "u-40"});
    let (r, _) = call_with(&s, "POST", "/feedback", &other, None, &key("outbox-1")).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "conflict");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    assert_eq!(count(), 2);
    // An unknown prediction (202, unlinked) replays as such.
    let unknown = json!({"prediction_id": "uuid-77", "is_correct": true});
    let (a, _) = call_with(&s, "POST", "/feedback", &unknown, None, &key("outbox-3")).await;
    let (b, h) = call_with(&s, "POST", "/feedback", &unknown, None, &key("outbox-3")).await;
    assert_eq!(
        (a.status, b.status),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED)
    );
    assert_eq!(a.body, b.body);
    assert_eq!(h["idempotent-replayed"], "true");
    // Bad keys: empty, too long, not printable ASCII.
    let long = "k".repeat(129);
    for bad in [&b""[..], long.as_bytes(), &b"caf\xc3\xa9"[..], &b"a\tb"[..]] {
        let (r, _) = call_with(
            &s,
            "POST",
            "/feedback",
            &body,
            None,
            &[("idempotency-key", bad)],
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.body["error"]["field"], "Idempotency-Key", "{}", r.body);
    }
    assert_eq!(count(), 2);
}

/// A team on one model: two moderators claim the same accounts at once (each goes to
/// one), feedback releases the claim, an admin confirms a final label (a moderator may
/// not), and everyone sees who reviewed what and who trusts whom.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_claims_reviews_and_confirms_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let store = TokenStore::open_in(dir.path());
    let ann = store.add("ann", Role::Moderator).unwrap();
    let ben = store.add("ben", Role::Moderator).unwrap();
    let lead = store.add("lead", Role::Admin).unwrap();
    let scorer = store.add("checkout", Role::Scorer).unwrap();
    let s = state(&reg, Limits::default());
    let ids: Vec<String> = (0..60).map(|i| format!("u-{i}")).collect();
    let claim = |who: String, ids: Vec<String>| {
        let s = s.clone();
        tokio::spawn(async move {
            let body = json!({"user_ids": ids, "ttl_seconds": 600});
            call_with(&s, "POST", "/review/claims", &body, Some(&who), &[])
                .await
                .0
        })
    };
    let mut rev = ids.clone();
    rev.reverse();
    let (a, b) = (claim(ann.clone(), ids.clone()), claim(ben.clone(), rev));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(
        (a.status, b.status),
        (StatusCode::OK, StatusCode::OK),
        "{} {}",
        a.body,
        b.body
    );
    let granted = |r: &Reply| -> Vec<String> {
        r.body["granted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    let (ga, gb) = (granted(&a), granted(&b));
    let all: std::collections::BTreeSet<&String> = ga.iter().chain(&gb).collect();
    assert_eq!((ga.len() + gb.len(), all.len()), (60, 60));
    for (r, other) in [(&a, "ben"), (&b, "ann")] {
        for h in r.body["held"].as_array().unwrap() {
            assert_eq!(h["moderator"], other, "{h}");
            assert!(h["expires_at"].as_str().unwrap().ends_with('Z'));
        }
    }
    // Ann claims two fresh accounts and reviews one through /feedback: her claim on it
    // is released, the other stays hers.
    let r = call_with(
        &s,
        "POST",
        "/review/claims",
        &json!({"user_ids": ["u-mine", "u-other"]}),
        Some(&ann),
        &[],
    )
    .await
    .0;
    assert_eq!(granted(&r), ["u-mine", "u-other"]);
    let mine = "u-mine".to_string();
    let (req, _) = features(7);
    let fb = json!({"features": req["features"], "label": 1, "user_id": mine});
    let r = call(
        &s,
        "POST",
        "/feedback",
        Some(serde_json::to_vec(&fb).unwrap()),
        Some(&ann),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let fid = r.body["feedback_id"].clone();
    let st = call_with(
        &s,
        "POST",
        "/review/status",
        &json!({"user_ids": [mine, "u-other"]}),
        Some(&ben),
        &[],
    )
    .await
    .0;
    assert_eq!(st.status, StatusCode::OK, "{}", st.body);
    let acc = &st.body["accounts"];
    assert_eq!(acc[0]["claim"], Value::Null, "{}", st.body);
    assert_eq!(acc[1]["claim"]["moderator"], "ann");
    assert_eq!(acc[1]["reviews"], json!([]));
    assert_eq!(acc[0]["reviews"][0]["moderator"], "ann");
    assert_eq!(acc[0]["reviews"][0]["feedback_id"], fid);
    assert_eq!(acc[0]["reviews"][0]["label"], 1);
    assert!(acc[0]["reviews"][0]["model_verdict"].is_u64());
    // Ben releases his claims (those he won and one more); only his go, and the
    // account is free for ann.
    let r = call_with(
        &s,
        "POST",
        "/review/claims",
        &json!({"user_ids": ["u-ben"]}),
        Some(&ben),
        &[],
    )
    .await
    .0;
    assert_eq!(granted(&r), ["u-ben"]);
    let mut his = ids.clone();
    his.extend(["u-ben".to_string(), "u-other".to_string()]);
    let r = call_with(
        &s,
        "DELETE",
        "/review/claims",
        &json!({"user_ids": his}),
        Some(&ben),
        &[],
    )
    .await
    .0;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["released"], gb.len() + 1);
    let r = call_with(
        &s,
        "POST",
        "/review/claims",
        &json!({"user_ids": ["u-ben", "u-other"]}),
        Some(&ann),
        &[],
    )
    .await
    .0;
    assert_eq!(granted(&r), ["u-ben", "u-other"]);
    // Confirming a final label takes an admin; re-confirming shows what it replaced.
    let uri = format!("/accounts/{mine}/label");
    let lab = |l: u8| json!({"label": l, "notes": "checked"});
    let r = call_with(&s, "POST", &uri, &lab(0), Some(&ann), &[])
        .await
        .0;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call_with(&s, "POST", &uri, &lab(0), Some(&lead), &[])
        .await
        .0;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["replaced"], Value::Null);
    let r = call_with(&s, "POST", &uri, &lab(1), Some(&lead), &[])
        .await
        .0;
    assert_eq!(r.body["replaced"]["label"], 0);
    assert_eq!(r.body["confirmed"]["confirmed_by"], "lead");
    let r = call(&s, "GET", &format!("/accounts/{mine}"), None, Some(&ann)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["confirmed"]["label"], 1);
    assert_eq!(r.body["reviews"].as_array().unwrap().len(), 1);
    let r = call(&s, "GET", &format!("/accounts/{mine}"), None, Some(&scorer)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The statistics count ann's record on a confirmed account, and her trust.
    let r = call(&s, "GET", "/model/feedback/stats", None, Some(&scorer)).await;
    let by = r.body["by_moderator"].as_array().unwrap();
    let ann_row = by.iter().find(|m| m["moderator"] == "ann").unwrap();
    assert_eq!(
        (
            ann_row["confirmed"].as_u64(),
            ann_row["agreement_with_confirmed"].as_f64()
        ),
        (Some(1), Some(1.0))
    );
    assert!(ann_row["trust"].as_f64().unwrap() > 0.0, "{ann_row}");
    // Bad requests name the field.
    let long = "x".repeat(257);
    for (method, uri, body, field, status) in [
        (
            "POST",
            "/review/claims",
            json!({"user_ids": ["a"], "ttl_seconds": 0}),
            None,
            400,
        ),
        (
            "POST",
            "/review/claims",
            json!({"user_ids": ["a"], "ttl_seconds": -5}),
            Some("ttl_seconds"),
            400,
        ),
        (
            "POST",
            "/review/claims",
            json!({"user_ids": "a"}),
            Some("user_ids"),
            400,
        ),
        (
            "POST",
            "/review/claims",
            json!({"user_ids": [1, {}]}),
            Some("user_ids[1]"),
            400,
        ),
        (
            "POST",
            "/review/claims",
            json!({"user_ids": vec!["a"; 1001]}),
            Some("user_ids"),
            413,
        ),
        (
            "POST",
            "/review/status",
            json!({"user_ids": ["ok", " "]}),
            None,
            400,
        ),
        ("POST", "/review/status", json!({"user_ids": []}), None, 400),
        (
            "POST",
            &format!("/accounts/{long}/label"),
            json!({"label": 1}),
            Some("user_id"),
            400,
        ),
        ("POST", &uri, json!({"label": 2}), Some("label"), 400),
        ("POST", &uri, json!({}), Some("label"), 400),
    ] {
        let r = call_with(&s, method, uri, &body, Some(&lead), &[]).await.0;
        assert_eq!(r.status.as_u16(), status, "{uri} {body}: {}", r.body);
        if let Some(f) = field {
            assert_eq!(r.body["error"]["field"], f, "{}", r.body);
        }
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(!msg.contains('\n') && msg.len() < 400, "{msg}");
    }
    let r = call_with(
        &s,
        "POST",
        "/review/claims",
        &json!({"user_ids": ["a"], "ttl_seconds": 0}),
        Some(&lead),
        &[],
    )
    .await
    .0;
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ttl_seconds")
    );
}

/// A registry with version 1 (active) and version 2 (fewer trees, not active).
fn two_versions(dir: &Path) -> Registry {
    let reg = registry(dir);
    train_version(&reg, 6, false);
    reg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_experiment_logs_both_versions_and_answers_with_the_active() {
    let dir = tempfile::tempdir().unwrap();
    let reg = two_versions(dir.path());
    let s = state(&reg, Limits::default());
    let (m1, model1) = reg.load(1).unwrap();
    let (m2, model2) = reg.load(2).unwrap();
    let data = default_dataset(DATA);

    let r = post(
        &s,
        "/model/experiment",
        &json!({"version": 2, "mode": "shadow", "share": 0.5}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["running"], true);
    let e = &r.body["experiment"];
    assert_eq!(
        (
            &e["mode"],
            &e["candidate_version"],
            &e["active_version"],
            &e["share"]
        ),
        (&json!("shadow"), &json!(2), &json!(1), &Value::Null)
    );
    let exp_id = e["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["stats"]["requests"], 0);
    assert!(reg.layout().experiment().exists());

    // Single requests, a JSON batch and a CSV batch: the active version answers.
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = post(
            &s,
            "/predict",
            &common::request_of(&data, i, Some(&format!("u{i}"))),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["model_version"], 1);
        assert_eq!(
            r.body["score"].as_f64().unwrap(),
            model1.predict_one(&data.row(i))
        );
        ids.push((r.body["prediction_id"].as_str().unwrap().to_string(), i));
    }
    let batch: Vec<Value> = (20..40)
        .map(|i| common::request_of(&data, i, Some(&format!("u{i}"))))
        .collect();
    let r = post(&s, "/predict/batch", &json!(batch)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for (k, item) in r.body.as_array().unwrap().iter().enumerate() {
        assert_eq!(item["model_version"], 1);
        ids.push((item["prediction_id"].as_str().unwrap().to_string(), 20 + k));
    }
    let mut csv = String::from("user_id");
    for f in &spamscope::data::catalog::catalog().features {
        csv.push(',');
        csv.push_str(&f.id);
    }
    csv.push('\n');
    for i in 40..50 {
        csv.push_str(&format!("c{i}"));
        for v in data.row(i) {
            csv.push(',');
            if !v.is_nan() {
                csv.push_str(&v.to_string());
            }
        }
        csv.push('\n');
    }
    let req = Request::builder()
        .method("POST")
        .uri("/predict/batch")
        .header("content-type", "text/csv")
        .body(Body::from(csv))
        .unwrap();
    let text = text_reply(&s, req, "text/csv").await;
    for (k, line) in text.lines().skip(1).enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[3], "1", "{line}");
        let p: f64 = cells[4].parse().unwrap();
        assert_eq!(p, model1.predict_one(&data.row(40 + k)));
    }

    // Both versions are logged for every request.
    s.log.flush().unwrap();
    for (pid, i) in &ids {
        let rec = s.log.get(pid).unwrap().unwrap();
        assert_eq!(rec.version, 1);
        let tag = rec
            .experiment
            .expect("an experiment's prediction carries its tag");
        assert_eq!(tag.experiment, exp_id);
        assert_eq!(tag.other_version, 2);
        assert_eq!(tag.other_probability, model2.predict_one(&data.row(*i)));
    }
    let rows = s.log.experiment_rows(&exp_id).unwrap();
    assert_eq!(rows.len(), 50);
    assert!(rows.iter().all(|r| r.version == 1 && r.other_version == 2));

    // Moderators label ten accounts: each version's accuracy on them.
    let mut correct = (0, 0);
    for (k, (pid, i)) in ids.iter().take(10).enumerate() {
        let label = (k % 2) as u8;
        let r = post(
            &s,
            "/feedback",
            &json!({"prediction_id": pid, "is_correct": false, "actual_label": label}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let row = data.row(*i);
        correct.0 += usize::from(u8::from(model1.predict_one(&row) > m1.threshold) == label);
        correct.1 += usize::from(u8::from(model2.predict_one(&row) > m2.threshold) == label);
    }

    let agreed = (0..50)
        .filter(|&i| {
            let row = data.row(i);
            (model1.predict_one(&row) > m1.threshold) == (model2.predict_one(&row) > m2.threshold)
        })
        .count();
    let r = get(&s, "/model/experiment").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let st = &r.body["stats"];
    assert_eq!(st["requests"], 50);
    assert_eq!(
        (&st["answered_by_active"], &st["answered_by_candidate"]),
        (&json!(50), &json!(0))
    );
    assert_eq!(
        (&st["both_scored"], &st["agreed"]),
        (&json!(50), &json!(agreed))
    );
    let v = st["versions"].as_array().unwrap();
    assert_eq!(v.len(), 2);
    for (k, (model, ok)) in [(&model1, correct.0), (&model2, correct.1)]
        .iter()
        .enumerate()
    {
        assert_eq!(v[k]["version"], k + 1);
        assert_eq!(v[k]["candidate"], k == 1);
        assert_eq!(v[k]["answered"], if k == 0 { 50 } else { 0 });
        assert_eq!(v[k]["scored"], 50);
        let hist: Vec<u64> = v[k]["histogram"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(hist.len(), 10);
        let mut expected = vec![0u64; 10];
        let mut sum = 0.0;
        for i in 0..50 {
            let p = model.predict_one(&data.row(i));
            sum += p;
            expected[((p * 10.0) as usize).min(9)] += 1;
        }
        assert_eq!(hist, expected);
        assert!((v[k]["mean_probability"].as_f64().unwrap() - sum / 50.0).abs() < 1e-9);
        assert_eq!(
            (&v[k]["labelled"], &v[k]["correct"]),
            (&json!(10), &json!(ok))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_sends_a_sticky_share_of_users_to_the_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let reg = two_versions(dir.path());
    let s = state(&reg, Limits::default());
    let (m1, model1) = reg.load(1).unwrap();
    let (m2, model2) = reg.load(2).unwrap();
    let data = default_dataset(DATA);
    let r = post(
        &s,
        "/model/experiment",
        &json!({"version": 2, "mode": "canary", "share": 0.3}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["experiment"]["share"], 0.3);

    // Every answer: the version named answered, and the other one scored beside it.
    let mut arms = std::collections::HashMap::new();
    let mut counted = (0u64, 0u64, 0u64); // (by active, by candidate, agreed)
    let mut check = |item: &Value, row: &[f64]| -> u32 {
        let v = item["model_version"].as_u64().unwrap() as u32;
        let p = item["score"].as_f64().unwrap();
        let (mine, other, mt, ot) = match v {
            1 => (&model1, &model2, m1.threshold, m2.threshold),
            2 => (&model2, &model1, m2.threshold, m1.threshold),
            _ => panic!("version {v}"),
        };
        assert_eq!(p, mine.predict_one(row));
        if v == 1 {
            counted.0 += 1;
        } else {
            counted.1 += 1;
        }
        counted.2 += u64::from((p > mt) == (other.predict_one(row) > ot));
        v
    };
    // 2,000 users, in batches of 500.
    for chunk in 0..4 {
        let users: Vec<usize> = (chunk * 500..(chunk + 1) * 500).collect();
        let batch: Vec<Value> = users
            .iter()
            .map(|&u| common::request_of(&data, u % 3000, Some(&format!("user-{u}"))))
            .collect();
        let r = post(&s, "/predict/batch", &json!(batch)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        for (&u, item) in users.iter().zip(r.body.as_array().unwrap()) {
            arms.insert(u, check(item, &data.row(u % 3000)));
        }
    }
    let share = arms.values().filter(|&&v| v == 2).count() as f64 / 2000.0;
    assert!((share - 0.3).abs() <= 0.05, "{share}");
    // The same users keep their arm, whatever they send and however.
    for u in 0..60 {
        let row = (u * 7 + 1) % 3000;
        let r = post(
            &s,
            "/predict",
            &common::request_of(&data, row, Some(&format!("user-{u}"))),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(check(&r.body, &data.row(row)), arms[&u], "user-{u}");
    }
    // Without a user id the split is per request: identical bodies land in both arms.
    let same: Vec<Value> = (0..1000)
        .map(|_| common::request_of(&data, 11, None))
        .collect();
    let r = post(&s, "/predict/batch", &json!(same)).await;
    let answers: Vec<u32> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|item| check(item, &data.row(11)))
        .collect();
    let share = answers.iter().filter(|&&v| v == 2).count() as f64 / 1000.0;
    assert!((share - 0.3).abs() <= 0.06, "{share}");

    // The statistics match the counts taken from the answers.
    let r = get(&s, "/model/experiment").await;
    let st = &r.body["stats"];
    assert_eq!(st["requests"], 3060);
    assert_eq!(st["answered_by_active"], counted.0);
    assert_eq!(st["answered_by_candidate"], counted.1);
    assert_eq!(st["both_scored"], 3060);
    assert_eq!(st["agreed"], counted.2);
    let agreement = st["agreement"].as_f64().unwrap();
    assert!((agreement - counted.2 as f64 / 3060.0).abs() < 1e-12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_bad_bodies_restart_stop_and_promote() {
    let dir = tempfile::tempdir().unwrap();
    let reg = two_versions(dir.path());
    let s = state(&reg, Limits::default());
    let data = default_dataset(DATA);

    let r = get(&s, "/model/experiment").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        (&r.body["running"], &r.body["experiment"], &r.body["stats"]),
        (&json!(false), &Value::Null, &Value::Null)
    );
    let r = call(&s, "DELETE", "/model/experiment", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["error"]["code"], "no_experiment");
    let r = post(&s, "/model/experiment/promote", &json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    for (body, status, field) in [
        (json!({"version": 2, "mode": "blue"}), 400, "mode"),
        (json!({"version": 2}), 400, "mode"),
        (
            json!({"version": 2, "mode": "canary", "share": 0}),
            400,
            "share",
        ),
        (
            json!({"version": 2, "mode": "canary", "share": 1.5}),
            400,
            "share",
        ),
        (
            json!({"version": 2, "mode": "canary", "share": "NaN"}),
            400,
            "share",
        ),
        (
            json!({"version": 2, "mode": "canary", "share": -0.2}),
            400,
            "share",
        ),
        (json!({"version": 2, "mode": "canary"}), 400, "share"),
        (json!({"version": 99, "mode": "shadow"}), 404, "version"),
        (json!({"version": 1, "mode": "shadow"}), 400, "version"),
        (json!({"version": "2", "mode": "shadow"}), 400, "version"),
        (json!({"mode": "shadow"}), 400, "version"),
        (json!([2, "shadow"]), 400, "body"),
    ] {
        let r = post(&s, "/model/experiment", &body).await;
        assert_eq!(r.status.as_u16(), status, "{body}: {}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.body);
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(!msg.contains('\n') && msg.len() < 200, "{msg}");
    }
    assert!(!reg.layout().experiment().exists());
    // A candidate that does not load (damaged model file): refused, nothing on disk.
    train_version(&reg, 3, false);
    std::fs::write(reg.layout().version_file(3, "model.bin"), b"garbage").unwrap();
    let r = post(
        &s,
        "/model/experiment",
        &json!({"version": 3, "mode": "shadow"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("version 3"),
        "{}",
        r.body
    );
    assert!(!reg.layout().experiment().exists());
    assert!(s.experiment().is_none());

    // Started, it survives a restart of the service's state.
    let r = post(
        &s,
        "/model/experiment",
        &json!({"version": 2, "mode": "shadow"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let id = r.body["experiment"]["id"].clone();
    let r = post(
        &s,
        "/model/experiment",
        &json!({"version": 2, "mode": "shadow"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    drop(s);
    let s = state(&reg, Limits::default());
    let r = get(&s, "/model/experiment").await;
    assert_eq!(
        (&r.body["running"], &r.body["experiment"]["id"]),
        (&json!(true), &id)
    );
    let r = post(&s, "/predict", &common::request_of(&data, 3, Some("u3"))).await;
    let rec = s
        .log
        .get(r.body["prediction_id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(rec.experiment.unwrap().other_version, 2);

    // Stopped: only the active version scores.
    let r = call(&s, "DELETE", "/model/experiment", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["running"], false);
    assert_eq!(r.body["stats"]["requests"], 1);
    assert!(!reg.layout().experiment().exists());
    let r = post(&s, "/predict", &common::request_of(&data, 3, Some("u3"))).await;
    assert_eq!(r.body["model_version"], 1);
    let rec = s
        .log
        .get(r.body["prediction_id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(rec.experiment, None);

    // A canary of share 1: the candidate answers everyone; promoted, it is the version.
    let r = post(
        &s,
        "/model/experiment",
        &json!({"version": 2, "mode": "canary", "share": 1}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for i in 0..5 {
        let r = post(&s, "/predict", &common::request_of(&data, i, None)).await;
        assert_eq!(r.body["model_version"], 2);
    }
    let r = post(&s, "/model/experiment/promote", &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["model_version"], 2);
    assert_eq!(reg.active().unwrap(), Some(2));
    assert_eq!(get(&s, "/model/version").await.body["version"], 2);
    assert_eq!(get(&s, "/model/experiment").await.body["running"], false);
    let r = post(&s, "/predict", &common::request_of(&data, 4, Some("u4"))).await;
    assert_eq!(r.body["model_version"], 2);
    let rec = s
        .log
        .get(r.body["prediction_id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(rec.experiment, None);
}

/// A webhook receiver on 127.0.0.1 answering 200; each JSON body goes to the channel.
fn webhook_receiver() -> (String, std::sync::mpsc::Receiver<Value>) {
    common::receiver(Vec::new())
}

/// Waits (at most a minute) until `done` holds.
async fn until(done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(60), "gave up waiting");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_raises_an_error_rate_alert_to_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let reg = two_versions(dir.path());
    // No slot for any request: each waits out its 1 ms and is answered 503.
    let s = state(
        &reg,
        Limits {
            max_in_flight: 0,
            timeout: Duration::from_millis(1),
            ..Limits::default()
        },
    );
    let (url, rx) = webhook_receiver();
    let sender =
        spamscope::ops::alert::WebhookSender::start(spamscope::ops::alert::WebhookConfig::new(url))
            .unwrap();
    assert!(s.set_alerts(sender).is_ok());
    spamscope::service::spawn_watcher(&s, Duration::from_millis(10));
    // Two turns of the watcher before any request (it picks up an experiment started
    // and stopped on disk): its first reading of the counters has no request in it.
    let started = spamscope::ops::experiment::StartRequest {
        version: 2,
        mode: spamscope::ops::experiment::Mode::Shadow,
        share: None,
    };
    spamscope::ops::experiment::start(&reg, &started, "test").unwrap();
    until(|| s.experiment().is_some()).await;
    spamscope::ops::experiment::stop(&reg).unwrap();
    until(|| s.experiment().is_none()).await;
    for _ in 0..25 {
        let r = get(&s, "/model/version").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let alert = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("an error_rate alert");
    assert_eq!(alert["kind"], "error_rate", "{alert}");
    assert_eq!(alert["version"], 1);
    assert!(
        alert["details"]["server_errors"].as_u64().unwrap() >= 20,
        "{alert}"
    );
    assert!(s.alerts().unwrap().duplicates() + s.alerts().unwrap().delivered() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_raises_an_agreement_drop_alert_for_a_running_experiment() {
    let dir = tempfile::tempdir().unwrap();
    let reg = two_versions(dir.path());
    let s = state(&reg, Limits::default());
    let data = default_dataset(DATA);
    let (url, rx) = webhook_receiver();
    let sender =
        spamscope::ops::alert::WebhookSender::start(spamscope::ops::alert::WebhookConfig::new(url))
            .unwrap();
    assert!(s.set_alerts(sender).is_ok());
    let r = post(
        &s,
        "/model/experiment",
        &json!({"version": 2, "mode": "shadow"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let id = r.body["experiment"]["id"].clone();
    let batch: Vec<Value> = (0..120)
        .map(|i| common::request_of(&data, i, None))
        .collect();
    assert_eq!(
        post(&s, "/predict/batch", &json!(batch)).await.status,
        StatusCode::OK
    );
    // Watched once every request is logged. A floor above 1: any agreement is too low
    // once 100 requests were scored by both.
    spamscope::service::spawn_watcher_with(
        &s,
        Duration::from_millis(10),
        spamscope::service::AlertRules {
            window: Duration::from_millis(20),
            error_rate_min_requests: u64::MAX,
            agreement_floor: 1.01,
            agreement_min_requests: 100,
            ..Default::default()
        },
    );
    let alert = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("an agreement_drop alert");
    assert_eq!(alert["kind"], "agreement_drop", "{alert}");
    assert_eq!(alert["version"], 2);
    assert_eq!(alert["details"]["experiment"], id);
    assert_eq!(alert["details"]["both_scored"], 120);
    let stats = get(&s, "/model/experiment").await.body["stats"].clone();
    assert_eq!(alert["details"]["agreed"], stats["agreed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_answers_csv_rows_by_their_users_arm() {
    let dir = tempfile::tempdir().unwrap();
    let reg = two_versions(dir.path());
    let s = state(&reg, Limits::default());
    let (m1, model1) = reg.load(1).unwrap();
    let (m2, model2) = reg.load(2).unwrap();
    let data = default_dataset(DATA);
    let r = post(
        &s,
        "/model/experiment",
        &json!({"version": 2, "mode": "canary", "share": 0.5}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut csv = String::from("user_id");
    for f in &spamscope::data::catalog::catalog().features {
        csv.push(',');
        csv.push_str(&f.id);
    }
    csv.push('\n');
    for i in 0..200 {
        csv.push_str(&format!("acct-{i}"));
        for v in data.row(i) {
            csv.push(',');
            if !v.is_nan() {
                csv.push_str(&v.to_string());
            }
        }
        csv.push('\n');
    }
    let req = Request::builder()
        .method("POST")
        .uri("/predict/batch?explain=2")
        .header("content-type", "text/csv")
        .body(Body::from(csv))
        .unwrap();
    let text = text_reply(&s, req, "text/csv").await;
    let mut versions = Vec::new();
    for (i, line) in text.lines().skip(1).enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[0], format!("acct-{i}"));
        let p: f64 = cells[4].parse().unwrap();
        let v: u32 = cells[3].parse().unwrap();
        let (model, threshold) = if v == 2 {
            (&model2, m2.threshold)
        } else {
            (&model1, m1.threshold)
        };
        assert_eq!(p, model.predict_one(&data.row(i)), "{line}");
        // Its calibration, by the answering version's own.
        assert_eq!(
            cells[1].parse::<f64>().unwrap(),
            model.probability(p),
            "{line}"
        );
        // The verdict by the answering version's own threshold.
        assert_eq!(cells[2], if p > threshold { "1" } else { "0" }, "{line}");
        // Two reasons each, whichever version answered.
        assert_eq!(cells.len(), 6 + 2 * 3, "{line}");
        versions.push(v);
    }
    assert_eq!(versions.len(), 200);
    let by_candidate = versions.iter().filter(|&&v| v == 2).count();
    assert!((60..=140).contains(&by_candidate), "{by_candidate}");
    // The same users through JSON: the same arms.
    let batch: Vec<Value> = (0..200)
        .map(|i| common::request_of(&data, i, Some(&format!("acct-{i}"))))
        .collect();
    let r = post(&s, "/predict/batch", &json!(batch)).await;
    let json_versions: Vec<u32> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["model_version"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(json_versions, versions);
    let st = get(&s, "/model/experiment").await.body["stats"].clone();
    assert_eq!(st["requests"], 400);
    assert_eq!(st["answered_by_candidate"], 2 * by_candidate);
}

/// The value of `series` (its name and labels as `/metrics` prints them) in a
/// `/metrics` text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `/metrics` during a canary: the numbers `GET /model/experiment` gives (requests
/// scored by both versions, their agreement, per version the labelled requests and
/// correct verdicts), computed at most once a minute for scrapes (the newest numbers
/// computed, by a scrape or by the experiment routes, are reused within the minute);
/// nothing without an experiment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_the_running_experiments_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let reg = two_versions(dir.path());
    let s = state(&reg, Limits::default());
    let data = default_dataset(DATA);
    assert!(!metrics_text(&s).await.contains("spamscope_experiment_"));
    let r = post(
        &s,
        "/model/experiment",
        &json!({"version": 2, "mode": "canary", "share": 0.5}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut ids = Vec::new();
    for i in 0..60 {
        let r = post(
            &s,
            "/predict",
            &common::request_of(&data, i, Some(&format!("m{i}"))),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        ids.push(r.body["prediction_id"].as_str().unwrap().to_string());
    }
    s.log.flush().unwrap();
    // Moderators label 16 of the accounts, half of them spammers.
    for (k, id) in ids.iter().take(16).enumerate() {
        let fb = json!({"prediction_id": id, "is_correct": false, "actual_label": k % 2});
        assert_eq!(post(&s, "/feedback", &fb).await.status, StatusCode::OK);
    }
    // (Starting the experiment computed its numbers: a scrape within the minute would
    // reuse them; `GET /model/experiment` computes them afresh, and scrapes follow.)
    let st = get(&s, "/model/experiment").await.body["stats"].clone();
    let text = metrics_text(&s).await;
    let n = |v: &Value| v.as_u64().unwrap() as f64;
    assert_eq!(n(&st["both_scored"]), 60.0);
    assert_eq!(
        sample(&text, "spamscope_experiment_scored"),
        Some(n(&st["both_scored"])),
        "{text}"
    );
    assert_eq!(
        sample(&text, "spamscope_experiment_agreed"),
        Some(n(&st["agreed"]))
    );
    let versions = st["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    let mut correct = 0.0;
    for v in versions {
        let arm = if v["candidate"] == true {
            "candidate"
        } else {
            "active"
        };
        let labels = format!("{{version=\"{}\",arm=\"{arm}\"}}", v["version"]);
        assert_eq!(n(&v["labelled"]), 16.0, "{v}");
        for family in ["labelled", "correct"] {
            assert_eq!(
                sample(&text, &format!("spamscope_experiment_{family}{labels}")),
                Some(n(&v[family])),
                "{family}{labels}:\n{text}"
            );
        }
        correct += n(&v["correct"]);
    }
    assert!(correct > 0.0, "{st}");
    for family in ["scored", "agreed", "labelled", "correct"] {
        let line = format!("# TYPE spamscope_experiment_{family} gauge");
        assert!(text.lines().any(|l| l == line), "{line}");
    }
    // A scrape within the minute reuses the numbers; `GET /model/experiment` computes
    // them afresh, and the scrapes follow.
    for i in 60..70 {
        post(&s, "/predict", &common::request_of(&data, i, None)).await;
    }
    s.log.flush().unwrap();
    let text = metrics_text(&s).await;
    assert_eq!(sample(&text, "spamscope_experiment_scored"), Some(60.0));
    let st = get(&s, "/model/experiment").await.body["stats"].clone();
    assert_eq!(st["both_scored"], 70);
    let text = metrics_text(&s).await;
    assert_eq!(sample(&text, "spamscope_experiment_scored"), Some(70.0));
    // Numbers older than the bound are computed again.
    for i in 70..75 {
        post(&s, "/predict", &common::request_of(&data, i, None)).await;
    }
    let e = s.experiment().unwrap().experiment.clone();
    let minute = Duration::from_secs(60);
    assert_eq!(
        s.experiment_stats_within(&e, minute).unwrap().both_scored,
        70
    );
    assert_eq!(
        s.experiment_stats_within(&e, Duration::ZERO)
            .unwrap()
            .both_scored,
        75
    );
    let text = metrics_text(&s).await;
    assert_eq!(sample(&text, "spamscope_experiment_scored"), Some(75.0));
    // Stopped: no experiment numbers.
    let r = call(&s, "DELETE", "/model/experiment", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!metrics_text(&s).await.contains("spamscope_experiment_"));
}

/// `/metrics` counts the open review claims and dates the oldest: claims taken through
/// the service and by a moderator ten minutes ago, then given up by feedback and by a
/// release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_open_review_claims_and_date_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let s = state(&reg, Limits::default());
    let open = "spamscope_review_claims_open";
    let oldest = "spamscope_review_oldest_claim_seconds";
    let text = metrics_text(&s).await;
    assert_eq!(
        (sample(&text, open), sample(&text, oldest)),
        (Some(0.0), Some(0.0))
    );
    for line in [
        "# TYPE spamscope_review_claims_open gauge",
        "# TYPE spamscope_review_oldest_claim_seconds gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}");
    }
    // Three accounts claimed through the service now (the anonymous caller)...
    let r = post(
        &s,
        "/review/claims",
        &json!({"user_ids": ["q1", "q2", "q3"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["granted"].as_array().unwrap().len(), 3);
    let text = metrics_text(&s).await;
    assert_eq!(sample(&text, open), Some(3.0));
    let age = sample(&text, oldest).unwrap();
    assert!((0.0..30.0).contains(&age), "{age}");
    // ... and two by ann ten minutes ago, for an hour: the oldest is ten minutes old.
    let ann: Vec<String> = vec!["q4".into(), "q5".into()];
    let ten_minutes_ago = std::time::SystemTime::now() - Duration::from_secs(600);
    let out = spamscope::ops::review::claim_at(&reg, &ann, "ann", 3600, ten_minutes_ago).unwrap();
    assert_eq!(out.granted.len(), 2);
    // An expired claim is not open.
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    spamscope::ops::review::claim_at(&reg, &["q6".into()], "ann", 60, long_ago).unwrap();
    let text = metrics_text(&s).await;
    assert_eq!(sample(&text, open), Some(5.0));
    let age = sample(&text, oldest).unwrap();
    assert!((600.0..630.0).contains(&age), "{age}");
    // Ann's feedback on q4 ends her claim on it, her release the one on q5: the
    // service's claims, taken just now, are the oldest again.
    let record = NewFeedback {
        user_id: Some("q4".into()),
        features: features(3).1,
        true_label: 1,
        probability: None,
        model_version: None,
        predicted: None,
        notes: String::new(),
        origin: Origin::Service,
    };
    let mut store = FeedbackStore::of(&reg).unwrap();
    let sub = spamscope::store::feedback::Submission::Linked {
        record,
        moderator: Some("ann".into()),
        prediction_id: None,
        key: None,
    };
    assert!(store.add_submissions(&[sub]).unwrap()[0].is_ok());
    assert_eq!(
        spamscope::ops::review::release(&reg, &["q5".into()], "ann").unwrap(),
        1
    );
    let text = metrics_text(&s).await;
    assert_eq!(sample(&text, open), Some(3.0));
    let age = sample(&text, oldest).unwrap();
    assert!((0.0..30.0).contains(&age), "{age}");
}

/// The metric names in a text, whole (`spamscope_` and what follows of a name; a
/// recording rule's `spamscope:` names are not the service's).
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut from = 0;
    while let Some(at) = text[from..].find("spamscope_") {
        let start = from + at;
        let mut end = start + "spamscope_".len();
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if start == 0 || !ident(bytes[start - 1]) {
            out.insert(text[start..end].to_string());
        }
        from = end;
    }
    out
}

/// The Grafana dashboard and the Prometheus rules in `deploy/` name only metrics the
/// service exports: every name they use is in `/metrics` of a service that has scored,
/// taken feedback and retrained (so every conditional family is there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_rules_name_only_exported_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    quick_lenient_retrains(&reg);
    let s = state(&reg, Limits::default());
    for i in 0..30 {
        let (req, _) = features(100 + i);
        let body = json!({"features": req["features"], "label": 1, "user_id": format!("d-{i}")});
        assert_eq!(post(&s, "/feedback", &body).await.status, StatusCode::OK);
    }
    let r = post(&s, "/model/retrain", &json!({})).await;
    let done = wait_job(&s, r.body["job_id"].as_u64().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    // An experiment runs (the version not active beside the active one) and an
    // account is claimed for review.
    let active = s.active().manifest.version;
    let other = if active == 1 { 2 } else { 1 };
    let r = post(
        &s,
        "/model/experiment",
        &json!({"version": other, "mode": "shadow"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = post(&s, "/review/claims", &json!({"user_ids": ["d-1"]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = post(&s, "/predict", &features(1).0).await;
    let id = r.body["prediction_id"].as_str().unwrap().to_string();
    s.log.flush().unwrap();
    let fb = json!({"prediction_id": id, "is_correct": true});
    assert_eq!(post(&s, "/feedback", &fb).await.status, StatusCode::OK);
    // As `spamscope serve --mlflow` does with its tracker's counts.
    s.set_mlflow(Default::default());
    let text = metrics_text(&s).await;
    let exported: std::collections::BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    for family in [
        "spamscope_last_retrain_timestamp_seconds",
        "spamscope_feature_psi",
        "spamscope_feedback_judged",
        "spamscope_score_bucket",
        "spamscope_experiment_agreed",
        "spamscope_experiment_labelled",
        "spamscope_review_oldest_claim_seconds",
        "spamscope_mlflow_syncs_total",
    ] {
        assert!(exported.contains(family), "{family} not exported:\n{text}");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    for file in ["grafana/spamscope.json", "prometheus/rules.yml"] {
        let used = metric_names(&std::fs::read_to_string(root.join(file)).unwrap());
        assert!(used.len() >= 5, "{file}: {used:?}");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(unknown.is_empty(), "{file} uses {unknown:?}, not exported");
    }
    // The check itself sees a name the service does not export.
    assert!(
        metric_names("rate(spamscope_nonexistent_total[5m])")
            .contains("spamscope_nonexistent_total")
    );
}

/// A version saved before calibration existed (its model file has no calibration, its
/// manifest says none) keeps answering: `probability` is its score, and `calibrated`
/// says it is not a probability.
#[tokio::test]
async fn a_version_without_calibration_keeps_answering_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let data = default_dataset(DATA);
    let cfg = TrainConfig {
        params: ForestParams {
            n_trees: 10,
            max_depth: Some(10),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut trained = train(&data, None, &cfg, &NoProgress).unwrap();
    trained.model.calibration = None;
    trained.register(&reg, &data, &cfg, true).unwrap();
    let (manifest, model) = reg.load_active().unwrap();
    assert!(model.calibration.is_none() && manifest.calibration.is_none());
    let s = state(&reg, Limits::default());
    let (req, row) = features(3);
    let r = post(&s, "/predict", &req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["calibrated"], json!(false));
    let score = model.predict_one(&row);
    assert_eq!(r.body["score"].as_f64().unwrap(), score);
    assert_eq!(r.body["probability"].as_f64().unwrap(), score);
}
