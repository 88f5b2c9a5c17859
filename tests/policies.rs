//! Decision policies on the service (issue 25): drafts, publishing by an admin, the
//! decisions on `/predict`, batches and CSV, the decision log read by account with the
//! reviews beside it, the review queue filled by decisions with review times on
//! `/metrics`, and a shadow policy's agreement and precision.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use spamscope::data::synth::{SynthParams, default_dataset};
use spamscope::service::{Limits, State, router};
use spamscope::store::Registry;
use spamscope::store::predictions::Retention;
use spamscope::store::tokens::{Role, TokenStore};
use std::sync::Arc;
use tower::ServiceExt;

mod common;

const DATA: SynthParams = SynthParams {
    rows: 3000,
    seed: 5,
};

struct Team {
    s: Arc<State>,
    lead: String,
    ann: String,
    scorer: String,
    _dir: tempfile::TempDir,
}

/// A registry with a trained version and the team's tokens: (folder, registry, lead's
/// (admin), ann's (moderator), checkout's (scorer)).
fn team_registry() -> (tempfile::TempDir, Registry, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    common::train_version(&reg, DATA, 10);
    let tokens = TokenStore::open_in(dir.path());
    let lead = tokens.add("lead", Role::Admin).unwrap();
    let ann = tokens.add("ann", Role::Moderator).unwrap();
    let scorer = tokens.add("checkout", Role::Scorer).unwrap();
    (dir, reg, lead, ann, scorer)
}

fn team() -> Team {
    let (dir, reg, lead, ann, scorer) = team_registry();
    let s = State::new(reg, Limits::default(), Retention::default(), true).unwrap();
    Team {
        s,
        lead,
        ann,
        scorer,
        _dir: dir,
    }
}

async fn call(
    s: &Arc<State>,
    method: &str,
    uri: &str,
    body: Option<Value>,
    token: &str,
) -> (StatusCode, Value) {
    let (status, text) = call_text(
        s,
        method,
        uri,
        body.map(|b| b.to_string()),
        "application/json",
        token,
    )
    .await;
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {text}"));
    (status, v)
}

async fn call_text(
    s: &Arc<State>,
    method: &str,
    uri: &str,
    body: Option<String>,
    content_type: &str,
    token: &str,
) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type)
        .body(body.map_or_else(Body::empty, Body::from))
        .unwrap();
    let res = router(s.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

/// Row `i` of the synthetic data as a `/predict` body for user `u-i`, with its values.
fn request(i: usize) -> (Value, Vec<f64>) {
    let data = default_dataset(DATA);
    (
        common::request_of(&data, i, Some(&format!("u-{i}"))),
        data.row(i),
    )
}

/// The draft every test publishes: two cuts on the probability and a rule on a
/// feature's value (`X1 > cut`), so a decision depends on both.
fn draft(x1_cut: f64, block_at: f64) -> Value {
    json!({
        "rules": [
            {"name": "likely", "when": "probability >= 0.5", "outcome": "review"},
            {"name": "very likely", "when": format!("probability >= {block_at}"), "outcome": "block"},
            {"name": "high X1", "when": format!("X1 > {x1_cut}"), "outcome": "review"},
        ],
        "note": "first policy"
    })
}

/// What `draft(x1_cut, block_at)` decides, computed here from the answer's probability
/// and the row's value: (decision, matched rules).
fn expected(p: f64, x1: f64, x1_cut: f64, block_at: f64) -> (String, Vec<String>) {
    let mut rules = Vec::new();
    if p >= 0.5 {
        rules.push("likely".to_string());
    }
    if p >= block_at {
        rules.push("very likely".to_string());
    }
    // A missing value meets no ordering comparison (CEL's rule).
    if x1 > x1_cut {
        rules.push("high X1".to_string());
    }
    let d = if p >= block_at {
        "block"
    } else if !rules.is_empty() {
        "review"
    } else {
        "allow"
    };
    (d.to_string(), rules)
}

fn median_x1() -> f64 {
    let data = default_dataset(DATA);
    let mut v: Vec<f64> = (0..200)
        .map(|i| data.row(i)[0])
        .filter(|x| !x.is_nan())
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_answered_logged_and_read_by_account() {
    let t = team();
    let s = &t.s;
    let cut = median_x1();
    // No policy yet: the decision fields are null, the reference's fields unchanged.
    let (req, _) = request(0);
    let (st, r) = call(s, "POST", "/predict", Some(req.clone()), &t.scorer).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert!(
        r["decision"].is_null() && r["policy_version"].is_null(),
        "{r}"
    );
    assert!(r["prediction"].is_u64() && r["probability"].is_f64() && r["risk_factors"].is_array());
    // The block cut: where the calibrated probability and the raw score of one of the
    // accounts fall on either side, so that a policy reading the wrong one decides
    // otherwise.
    let mut widest = (0.0, 0.9);
    for i in 0..80 {
        let (_, r) = call(s, "POST", "/predict", Some(request(i).0), &t.scorer).await;
        let (p, sc) = (
            r["probability"].as_f64().unwrap(),
            r["score"].as_f64().unwrap(),
        );
        if (p - sc).abs() > widest.0 && (p + sc) / 2.0 > 0.5 {
            widest = ((p - sc).abs(), (p + sc) / 2.0);
        }
    }
    assert!(
        widest.0 > 0.01,
        "calibration moves some probability: {widest:?}"
    );
    let block_at = widest.1;

    // A rule that does not compile is refused with its place; nothing is kept.
    let mut bad = draft(cut, block_at);
    bad["rules"][2]["when"] = json!("X1 >\n  probabilty");
    let (st, r) = call(s, "POST", "/policies", Some(bad), &t.ann).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{r}");
    assert_eq!(r["error"]["field"], "rules[2].when", "{r}");
    let m = r["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("line 2, column 3") && m.contains("probabilty"),
        "{m}"
    );

    // A moderator drafts; only an admin publishes; a scorer does neither.
    let (st, _) = call(
        s,
        "POST",
        "/policies",
        Some(draft(cut, block_at)),
        &t.scorer,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, r) = call(s, "POST", "/policies", Some(draft(cut, block_at)), &t.ann).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(
        (
            r["policy"]["version"].as_u64(),
            r["policy"]["status"].as_str()
        ),
        (Some(1), Some("draft"))
    );
    assert_eq!(r["policy"]["author"], "ann");
    assert_eq!(r["diff"]["added"].as_array().unwrap().len(), 3, "{r}");
    let (st, _) = call(s, "POST", "/policies/1/publish", None, &t.ann).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, r) = call(s, "POST", "/policies/1/publish", None, &t.lead).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(
        (
            r["policy"]["status"].as_str(),
            r["policy"]["published_by"].as_str()
        ),
        (Some("live"), Some("lead"))
    );
    let (st, r) = call(s, "POST", "/policies/9/publish", None, &t.lead).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{r}");

    // Every answer carries the live policy's decision, as the rules say.
    let mut seen = std::collections::BTreeMap::new();
    let mut answers = Vec::new();
    for i in 0..80 {
        let (req, row) = request(i);
        let (st, r) = call(s, "POST", "/predict", Some(req), &t.scorer).await;
        assert_eq!(st, StatusCode::OK, "{r}");
        let (d, rules) = expected(r["probability"].as_f64().unwrap(), row[0], cut, block_at);
        assert_eq!(r["decision"], d, "row {i}: {r}");
        assert_eq!(r["matched_rules"], json!(rules), "row {i}");
        assert_eq!(r["policy_version"], 1);
        *seen.entry(d).or_insert(0) += 1;
        answers.push(r);
    }
    assert!(seen.len() >= 2, "{seen:?}");
    // Batches (JSON and CSV) decide alike.
    let batch: Vec<Value> = (0..10).map(|i| request(i).0).collect();
    let (st, r) = call(s, "POST", "/predict/batch", Some(json!(batch)), &t.scorer).await;
    assert_eq!(st, StatusCode::OK);
    for (i, a) in r.as_array().unwrap().iter().enumerate() {
        assert_eq!(
            (&a["decision"], &a["matched_rules"]),
            (&answers[i]["decision"], &answers[i]["matched_rules"])
        );
    }
    let data = default_dataset(DATA);
    let mut csv = String::from("user_id,");
    csv.push_str(
        &(1..=51)
            .map(|k| format!("X{k}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    csv.push('\n');
    for i in 0..10 {
        let cells: Vec<String> = data
            .row(i)
            .iter()
            .map(|v| {
                if v.is_nan() {
                    String::new()
                } else {
                    v.to_string()
                }
            })
            .collect();
        csv.push_str(&format!("u-{i},{}\n", cells.join(",")));
    }
    let (st, text) = call_text(
        s,
        "POST",
        "/predict/batch?explain=0",
        Some(csv),
        "text/csv",
        &t.scorer,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let mut lines = text.lines();
    let head = cells(lines.next().unwrap());
    let col = |n: &str| {
        head.iter()
            .position(|h| h == n)
            .unwrap_or_else(|| panic!("no {n} in {head:?}"))
    };
    for (i, line) in lines.enumerate() {
        let row = cells(line);
        assert_eq!(
            row[col("decision")],
            *answers[i]["decision"].as_str().unwrap()
        );
        let rules: Value = serde_json::from_str(&row[col("matched_rules")]).unwrap();
        assert_eq!(rules, answers[i]["matched_rules"]);
        assert_eq!(&row[col("policy_version")], "1");
    }

    // The account's history in one place: its logged decisions, newest first, then a
    // moderator's review and an admin's confirmed label beside them.
    let u = "u-3";
    let (req, _) = request(3);
    let fb = json!({"features": req["features"], "label": 1, "user_id": u});
    let (st, r) = call(s, "POST", "/feedback", Some(fb), &t.ann).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (st, r) = call(
        s,
        "POST",
        &format!("/accounts/{u}/label"),
        Some(json!({"label": 1})),
        &t.lead,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (st, r) = call(s, "GET", &format!("/accounts/{u}"), None, &t.ann).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let logged = r["decisions"].as_array().unwrap();
    // Its two /predict, its JSON batch and CSV rows: four predictions, the newest first.
    assert_eq!(logged.len(), 4, "{r}");
    assert!(
        logged
            .windows(2)
            .all(|w| w[0]["created_at"].as_str() >= w[1]["created_at"].as_str())
    );
    let single = logged
        .iter()
        .find(|l| l["prediction_id"] == answers[3]["prediction_id"])
        .expect("the /predict answer is logged");
    assert_eq!(
        (
            &single["decision"],
            &single["matched_rules"],
            &single["policy_version"]
        ),
        (
            &answers[3]["decision"],
            &answers[3]["matched_rules"],
            &json!(1)
        )
    );
    assert_eq!(single["caller"], "checkout");
    assert_eq!(r["reviews"][0]["moderator"], "ann");
    assert_eq!(r["confirmed"]["label"], 1);

    // /metrics counts the decisions by policy and outcome.
    let (st, text) = call_text(s, "GET", "/metrics", None, "text/plain", &t.scorer).await;
    assert_eq!(st, StatusCode::OK);
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("spamscope_decisions_total{policy_version=\"1\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, 100.0, "80 single, 10 JSON, 10 CSV after the policy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_queue_is_filled_by_decisions_and_review_time_is_measured() {
    let t = team();
    let s = &t.s;
    let cut = median_x1();
    // Before a policy, the queue from decisions is empty.
    let (st, r) = call(s, "GET", "/review/queue?source=decisions", None, &t.ann).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["accounts"].as_array().unwrap().len(), 0);
    let (st, r) = call(s, "GET", "/review/queue?source=nothing", None, &t.ann).await;
    assert_eq!(
        (st, r["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("source"))
    );
    call(s, "POST", "/policies", Some(draft(cut, 0.9)), &t.ann).await;
    let (st, _) = call(s, "POST", "/policies/1/publish", None, &t.lead).await;
    assert_eq!(st, StatusCode::OK);
    let mut decided = std::collections::BTreeMap::new();
    for i in 0..60 {
        let (req, _) = request(i);
        let (_, r) = call(s, "POST", "/predict", Some(req), &t.scorer).await;
        decided.insert(
            format!("u-{i}"),
            (
                r["decision"].as_str().unwrap().to_string(),
                r["score"].as_f64().unwrap(),
            ),
        );
    }
    // u-0 scored twice: one row per account.
    let (req, _) = request(0);
    call(s, "POST", "/predict", Some(req), &t.scorer).await;
    let (st, r) = call(s, "GET", "/review/queue?source=decisions", None, &t.ann).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let queue = r["accounts"].as_array().unwrap();
    let want: Vec<&String> = decided
        .iter()
        .filter(|(_, (d, _))| d != "allow")
        .map(|(u, _)| u)
        .collect();
    assert!(want.len() >= 3, "{decided:?}");
    assert_eq!(queue.len(), want.len(), "{r}");
    assert_eq!(r["waiting"], want.len());
    // Most severe first, then highest score; each with the rules that sent it.
    let rank = |a: &Value| {
        (
            u8::from(a["decision"] == "block"),
            a["score"].as_f64().unwrap(),
        )
    };
    assert!(
        queue
            .windows(2)
            .all(|w| rank(&w[0]).partial_cmp(&rank(&w[1])) != Some(std::cmp::Ordering::Less)),
        "{r}"
    );
    for a in queue {
        assert_eq!(a["decision"], decided[a["user_id"].as_str().unwrap()].0);
        assert!(!a["matched_rules"].as_array().unwrap().is_empty(), "{a}");
        assert_eq!(a["features"].as_array().unwrap().len(), 51);
    }
    // Ann claims the first account and reviews it: it leaves the queue, and its review
    // time is on /metrics.
    let first = queue[0]["user_id"].as_str().unwrap().to_string();
    let (st, _) = call(
        s,
        "POST",
        "/review/claims",
        Some(json!({"user_ids": [first]})),
        &t.ann,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (_, r) = call(s, "GET", "/review/queue?source=decisions", None, &t.ann).await;
    assert_eq!(r["accounts"][0]["claimed_by"], "ann", "{r}");
    let i: usize = first[2..].parse().unwrap();
    let (req, _) = request(i);
    let fb = json!({"features": req["features"], "label": 1, "user_id": first});
    let (st, r) = call(s, "POST", "/feedback", Some(fb), &t.ann).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (_, r) = call(s, "GET", "/review/queue?source=decisions", None, &t.ann).await;
    let left: Vec<&str> = r["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(left.len(), want.len() - 1);
    assert!(!left.contains(&first.as_str()));
    assert!(r["oldest_waiting_seconds"].as_f64().unwrap() >= 0.0);
    let (_, text) = call_text(s, "GET", "/metrics", None, "text/plain", &t.scorer).await;
    let sample = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(sample("spamscope_review_seconds_count"), 1.0);
    assert_eq!(
        sample("spamscope_review_seconds_bucket{le=\"60\"}"),
        1.0,
        "reviewed within the minute"
    );
    assert_eq!(
        sample("spamscope_review_queue_waiting"),
        (want.len() - 1) as f64
    );
    assert!(sample("spamscope_review_queue_oldest_seconds") >= 0.0);
    assert_eq!(sample("spamscope_policy_version"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_policy_logs_what_it_would_decide_with_its_agreement_and_precision() {
    let t = team();
    let s = &t.s;
    let cut = median_x1();
    call(s, "POST", "/policies", Some(draft(cut, 0.9)), &t.ann).await;
    call(s, "POST", "/policies/1/publish", None, &t.lead).await;
    // The draft blocks from 0.7: it runs in shadow; the live policy cannot.
    let (st, r) = call(s, "POST", "/policies", Some(draft(cut, 0.7)), &t.ann).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["diff"]["changed"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["against"], 1);
    let (st, _) = call(s, "POST", "/policies/1/shadow", None, &t.ann).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, r) = call(s, "POST", "/policies/2/shadow", None, &t.ann).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(
        (r["running"].as_bool(), r["shadow"].as_u64()),
        (Some(true), Some(2))
    );

    let data = default_dataset(DATA);
    let (mut agreed, mut moved) = (0, 0);
    // (shadow decision, label) of the labelled predictions.
    let mut labelled = Vec::new();
    for i in 0..80 {
        let (req, row) = request(i);
        let (_, r) = call(s, "POST", "/predict", Some(req.clone()), &t.scorer).await;
        let p = r["probability"].as_f64().unwrap();
        // The live policy answers; the shadow's decision is only logged.
        assert_eq!(r["policy_version"], 1);
        let (live, _) = expected(p, row[0], cut, 0.9);
        let (shadow, _) = expected(p, row[0], cut, 0.7);
        assert_eq!(r["decision"], live);
        if live == shadow {
            agreed += 1;
        } else {
            assert_eq!((live.as_str(), shadow.as_str()), ("review", "block"));
            moved += 1;
        }
        // Every third account gets a moderator's label (its true one).
        if i % 3 == 0 {
            let label = data.labels.as_ref().unwrap()[i];
            let fb =
                json!({"features": req["features"], "label": label, "user_id": format!("u-{i}")});
            let (st, r) = call(s, "POST", "/feedback", Some(fb), &t.ann).await;
            assert_eq!(st, StatusCode::OK, "{r}");
            labelled.push((shadow, label));
        }
    }
    assert!(moved > 0, "some accounts between 0.7 and 0.9");
    let (st, r) = call(s, "GET", "/policies/shadow", None, &t.ann).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let x = &r["stats"];
    assert_eq!(
        (x["decided"].as_u64(), x["agreed"].as_u64()),
        (Some(80), Some(agreed)),
        "{r}"
    );
    assert_eq!(
        x["changes"],
        json!([{"live": "review", "shadow": "block", "predictions": moved}])
    );
    let blocked: Vec<u8> = labelled
        .iter()
        .filter(|(d, _)| d == "block")
        .map(|(_, l)| *l)
        .collect();
    let block = x["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["outcome"] == "block")
        .unwrap();
    assert_eq!(block["shadow"]["labelled"], blocked.len());
    if !blocked.is_empty() {
        let precision = blocked.iter().map(|&l| f64::from(l)).sum::<f64>() / blocked.len() as f64;
        assert!(
            (block["shadow"]["precision"].as_f64().unwrap() - precision).abs() < 1e-12,
            "{block}"
        );
    }
    let (_, text) = call_text(s, "GET", "/metrics", None, "text/plain", &t.scorer).await;
    assert!(
        text.contains(&format!(
            "spamscope_shadow_policy_agreed{{policy_version=\"2\"}} {agreed}"
        )),
        "{text}"
    );

    // Publishing the shadow ends it; it decides from then on.
    let (st, r) = call(s, "POST", "/policies/2/publish", None, &t.lead).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (_, r) = call(s, "GET", "/policies", None, &t.ann).await;
    assert_eq!(
        (r["live"].as_u64(), r["shadow"].as_u64()),
        (Some(2), None),
        "{r}"
    );
    let statuses: Vec<&str> = r["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["live", "retired"]);
    let (req, _) = request(1);
    let (_, r) = call(s, "POST", "/predict", Some(req), &t.scorer).await;
    assert_eq!(r["policy_version"], 2);
    let (st, _) = call(s, "DELETE", "/policies/shadow", None, &t.ann).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// The cells of one CSV line (quoted cells with `""` inside).
fn cells(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let (mut quoted, mut chars) = (false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(String::new()),
            (c, _) => out.last_mut().unwrap().push(c),
        }
    }
    out
}

/// The app's client of a team's service (`remote::Client`) over loopback: a moderator
/// drafts and shadows, publishing needs an admin's token, and a policy changed by the
/// command line on the same registry reaches the running service within its watcher's
/// round.
#[test]
fn the_teams_client_drafts_shadows_and_publishes_over_loopback() {
    use spamscope::remote::Client;
    let (_dir, reg, lead, ann, scorer) = team_registry();
    let (_rt, addr) = common::serve(&reg, 0);
    let url = format!("http://{addr}");
    let mo = Client::new(&url, Some(ann)).unwrap();
    let admin = Client::new(&url, Some(lead)).unwrap();
    let policy: spamscope::eval::policy::Policy = serde_json::from_value(draft(0.5, 0.9)).unwrap();
    let d = mo.draft_policy(&policy, "from the app").unwrap();
    assert_eq!((d.policy.record.version, d.against), (1, None));
    assert_eq!(d.policy.record.note, "from the app");
    let e = mo.publish_policy(1).unwrap_err().to_string();
    assert!(e.contains("403") || e.contains("admin"), "{e}");
    admin.publish_policy(1).unwrap();
    mo.draft_policy(&policy, "").unwrap();
    let s = mo.shadow_policy(Some(2)).unwrap();
    assert_eq!((s.live, s.shadow), (Some(1), Some(2)));
    let l = mo.policies().unwrap();
    assert_eq!(l.policies.len(), 2);
    assert_eq!(mo.shadow_status().unwrap().stats.unwrap().decided, 0);
    let s = mo.shadow_policy(None).unwrap();
    assert_eq!(s.shadow, None);
    // Published from the command line's side (the registry): the service follows.
    spamscope::ops::policy::publish(&reg, 2, "cli").unwrap();
    let (req, _) = request(0);
    let start = std::time::Instant::now();
    loop {
        let r: Value = ureq::post(&format!("{url}/predict"))
            .header("authorization", &format!("Bearer {scorer}"))
            .send_json(&req)
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        if r["policy_version"] == 2 {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "{r}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A draft tested on the registry's own history (issue 25): the prediction log with
/// whatever labels arrived (a confirmed label over a moderator's) decides as the
/// service decided when the same policy was live, and the feedback records are the
/// other history; the command line's `--history` gives the same counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_is_tested_on_the_logged_predictions_and_the_feedback() {
    use spamscope::ops::policy::{self, HistorySource};
    let t = team();
    let s = &t.s;
    let cut = median_x1();
    call(s, "POST", "/policies", Some(draft(cut, 0.9)), &t.ann).await;
    call(s, "POST", "/policies/1/publish", None, &t.lead).await;
    let mut decided = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..50 {
        let (_, r) = call(s, "POST", "/predict", Some(request(i).0), &t.scorer).await;
        *decided
            .entry(r["decision"].as_str().unwrap().into())
            .or_default() += 1;
    }
    // Ten accounts labelled by a moderator; one of them confirmed otherwise.
    for i in 0..10 {
        let fb =
            json!({"features": request(i).0["features"], "label": 1, "user_id": format!("u-{i}")});
        let (st, r) = call(s, "POST", "/feedback", Some(fb), &t.ann).await;
        assert_eq!(st, StatusCode::OK, "{r}");
    }
    let (st, _) = call(
        s,
        "POST",
        "/accounts/u-0/label",
        Some(json!({"label": 0})),
        &t.lead,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    s.log.flush().unwrap();
    let reg = s.registry.clone();
    let h = policy::history(&reg, HistorySource::Log(1_000)).unwrap();
    assert_eq!((h.data.n_rows(), h.labelled()), (50, 10));
    let at = |u: &str| {
        h.data
            .user_ids
            .iter()
            .position(|x| x.to_string() == u)
            .unwrap()
    };
    assert_eq!(
        (
            h.labels[at("u-0")],
            h.labels[at("u-1")],
            h.labels[at("u-20")]
        ),
        (Some(0), Some(1), None)
    );
    // The live policy on the log decides as the service did.
    let (live, _) = policy::kept(&reg).unwrap();
    let live = live.unwrap().compiled;
    let (_, model) = reg.load_active().unwrap();
    let bt = policy::test_labelled(
        &h.data,
        &h.labels,
        &model,
        1,
        &live,
        None,
        None,
        &spamscope::util::progress::NoProgress,
    )
    .unwrap();
    for o in &bt.backtest.outcomes {
        assert_eq!(
            o.accounts,
            decided.get(&o.outcome).copied().unwrap_or(0),
            "{}",
            o.outcome
        );
    }
    assert_eq!(bt.backtest.labelled, 10);
    let f = policy::history(&reg, HistorySource::Feedback).unwrap();
    assert_eq!((f.data.n_rows(), f.labelled()), (10, 10));
    assert_eq!(
        f.labels.iter().flatten().filter(|&&l| l == 0).count(),
        1,
        "u-0's confirmed label"
    );
    // The command line reads the same history.
    let file = t._dir.path().join("draft.json");
    std::fs::write(&file, draft(cut, 0.9).to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spamscope"))
        .args(["policy", "test"])
        .arg(&file)
        .args(["--history", "log", "--json", "--registry"])
        .arg(t._dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["accounts"].as_u64(), v["labelled"].as_u64()),
        (Some(50), Some(10))
    );
    let empty = tempfile::tempdir().unwrap();
    let reg2 = Registry::open(empty.path()).unwrap();
    let e = policy::history(&reg2, HistorySource::Feedback)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("hold no accounts"), "{e}");
}

/// A policy too large to decide on an async worker (40 rules of 250 comparisons: about
/// 40,000 operations an account) is decided on the blocking pool, with the same
/// answers; the 50 rules of the benchmark stay inline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_very_large_policy_is_decided_off_the_async_workers() {
    let t = team();
    let s = &t.s;
    let bench = spamscope::ops::policy::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/policy50.ron"
    )))
    .unwrap();
    assert!(
        bench.operations() <= spamscope::service::INLINE_POLICY_OPERATIONS,
        "{}",
        bench.operations()
    );
    let rules: Vec<Value> = (0..40)
        .map(|k| {
            let terms: Vec<String> = (0..250)
                .map(|j| format!("X{} > {}", j % 51 + 1, j + 10 * k))
                .collect();
            json!({"name": format!("r{k}"), "when": terms.join(" || "), "outcome": "review"})
        })
        .chain([json!({"name": "likely", "when": "probability >= 0.5", "outcome": "block"})])
        .collect();
    let (st, r) = call(
        s,
        "POST",
        "/policies",
        Some(json!({ "rules": rules })),
        &t.ann,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    call(s, "POST", "/policies/1/publish", None, &t.lead).await;
    assert!(
        !s.policies().inline(),
        "{}",
        s.policies().live.as_ref().unwrap().compiled.operations()
    );
    for i in 0..20 {
        let (req, row) = request(i);
        let (st, r) = call(s, "POST", "/predict", Some(req), &t.scorer).await;
        assert_eq!(st, StatusCode::OK, "{r}");
        // Rule k holds when some feature j % 51 is above j + 10k: r0 has the lowest bars.
        let p = r["probability"].as_f64().unwrap();
        let reviewed = (0..250).any(|j| row[j % 51] > j as f64);
        let want = if p >= 0.5 {
            "block"
        } else if reviewed {
            "review"
        } else {
            "allow"
        };
        assert_eq!(r["decision"], want, "row {i}");
    }
}
