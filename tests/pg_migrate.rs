//! `spamscope store migrate` against a real, throwaway PostgreSQL server: a registry
//! folder holding every kind of data copied into the database and back, with nothing
//! lost (ids, hashes, NaN, statuses); a copy cut short completed by running it again;
//! a target holding other data refused with nothing written.

mod common;

use common::pg::TempPg;
use serde_json::Value;
use spamscope::data::UserId;
use spamscope::data::catalog::N_FEATURES;
use spamscope::data::synth::SynthParams;
use spamscope::store::feedback::{
    FeedbackStore, IdempotencyKey, NewFeedback, Origin, Outcome, Submission,
};
use spamscope::store::location::Location;
use spamscope::store::predictions::{
    DecisionTag, ExperimentTag, PredictionLog, PredictionRecord, Retention, new_prediction_id,
};
use spamscope::store::tokens::{Role, TokenStore};
use spamscope::store::{Document, Registry};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

const DATA: SynthParams = SynthParams {
    rows: 1500,
    seed: 5,
};
const KEEP: Retention = Retention {
    max_rows: 0,
    max_days: 0,
};
/// More than one page of the copy (5,000 rows).
const PREDICTIONS: usize = 7_300;

fn spamscope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spamscope"))
        .args(args)
        .env_remove("SPAMSCOPE_STORE")
        .output()
        .unwrap()
}

fn record(user: &str, label: u8) -> NewFeedback {
    let mut features: Vec<f64> = (0..N_FEATURES).map(|i| i as f64 * 0.25).collect();
    features[9] = f64::NAN;
    NewFeedback {
        user_id: Some(UserId::from(user)),
        features,
        true_label: label,
        probability: Some(0.7),
        model_version: Some(1),
        predicted: Some(1),
        notes: format!("on {user}"),
        origin: Origin::Service,
    }
}

fn keyed(r: NewFeedback, key: &str) -> Submission {
    Submission::Linked {
        key: Some(IdempotencyKey::new(key, "mod-a", &format!("{r:?}")).unwrap()),
        record: r,
        moderator: Some("mod-a".into()),
        prediction_id: Some("p-000000000001".into()),
    }
}

/// A folder registry with something in every part: two versions (v2 rolled back, a
/// threshold set), documents, two tokens, feedback in all six tables, and a
/// prediction log of several pages spread over 40 days. Returns the tokens' secrets.
fn fill(dir: &Path) -> Vec<String> {
    let reg = Registry::open(dir).unwrap();
    common::train_version(&reg, DATA, 4);
    common::train_version(&reg, DATA, 5);
    reg.rollback_from(1).unwrap();
    reg.set_threshold(1, 0.42).unwrap();
    reg.write_document(
        Document::Experiment,
        "{\"id\":\"exp-1\",\"mode\":\"shadow\"}",
    )
    .unwrap();
    reg.write_document(Document::OnlineSettings, "(enabled: true)")
        .unwrap();
    reg.write_document(Document::LatestComparison, "{\"rows\":[]}")
        .unwrap();
    // Two comparisons kept for MLflow.
    assert!(
        reg.keep_comparison("20261201T100000Z-aa", "{\"a\":1}")
            .unwrap()
    );
    assert!(
        reg.keep_comparison("20261202T100000Z-bb", "{\"b\":2}")
            .unwrap()
    );
    // Three decision policies: one live, one in shadow, one draft.
    for cut in ["0.9", "0.8", "0.7"] {
        let p = spamscope::ops::policy::parse(&format!(
            "(rules: [(name: \"likely\", when: \"probability > {cut}\", outcome: \"block\")])"
        ))
        .unwrap();
        spamscope::ops::policy::save_draft(&reg, &p, "ana", "").unwrap();
    }
    spamscope::ops::policy::publish(&reg, 1, "admin").unwrap();
    spamscope::ops::policy::set_shadow(&reg, Some(2), "mo").unwrap();
    let tokens = TokenStore::of(&reg);
    let secrets = vec![
        tokens.add("svc-a", Role::Scorer).unwrap(),
        tokens.add("mod-a", Role::Moderator).unwrap(),
    ];
    let mut fb = FeedbackStore::of(&reg).unwrap();
    fb.add(&record("20000001", 1)).unwrap();
    let subs = [
        keyed(record("20000002", 0), "key-1"),
        keyed(record("20000003", 1), "key-2"),
        Submission::Unlinked {
            prediction_id: "p-elsewhere".into(),
            is_correct: false,
            actual_label: Some(1),
            notes: "seen on another service".into(),
            moderator: "mod-a".into(),
            key: Some(IdempotencyKey::new("key-3", "mod-a", "b3").unwrap()),
        },
    ];
    // mod-a claimed 20000003 before reviewing it: a timed review.
    fb.claim_for_review(
        &[UserId::from("20000003")],
        "mod-a",
        Duration::from_secs(3600),
        SystemTime::now(),
    )
    .unwrap();
    for r in fb.add_submissions(&subs).unwrap() {
        assert!(matches!(r.unwrap(), Outcome::Stored(_)));
    }
    let now = SystemTime::now();
    fb.confirm_labels(&[(UserId::from("20000002"), 0)], "lead", "checked", now)
        .unwrap();
    fb.claim_for_review(
        &[UserId::from("20000009")],
        "mod-b",
        Duration::from_secs(3600),
        now,
    )
    .unwrap();
    let log = PredictionLog::open_for(&reg, KEEP).unwrap();
    for i in 0..PREDICTIONS {
        let mut features: Vec<f64> = (0..N_FEATURES).map(|j| (i + j) as f64 / 9.0).collect();
        features[i % N_FEATURES] = f64::NAN;
        let days_ago = (i % 41) as u64;
        log.append(PredictionRecord {
            id: new_prediction_id(),
            created_at: humantime::format_rfc3339_millis(
                now - Duration::from_secs(days_ago * 86_400),
            )
            .to_string(),
            version: 1 + (i % 2) as u32,
            features,
            score: (i % 100) as f64 / 100.0,
            caller: "svc-a".into(),
            user_id: (i % 3 != 0).then(|| format!("{}", 30_000_000 + i)),
            experiment: (i % 5 == 0).then(|| ExperimentTag {
                experiment: "exp-1".into(),
                other_version: 2,
                other_probability: 0.5,
            }),
            decision: (i % 7 == 0).then(|| DecisionTag {
                policy_version: 1,
                decision: "review".into(),
                matched_rules: vec!["likely".into(), "a \"quoted\" rule".into()],
            }),
            shadow: (i % 7 == 1).then(|| DecisionTag {
                policy_version: 2,
                decision: "block".into(),
                matched_rules: Vec::new(),
            }),
        });
        if i % 4_000 == 0 {
            log.flush().unwrap();
        }
    }
    log.flush().unwrap();
    assert_eq!(log.count().unwrap(), PREDICTIONS as u64);
    secrets
}

/// Everything a registry holds, read through its public operations, for comparing two.
#[derive(Debug, PartialEq)]
struct Contents {
    versions: Vec<spamscope::store::Manifest>,
    models: Vec<Vec<u8>>,
    active: Option<u32>,
    documents: Vec<Option<String>>,
    comparisons: Vec<(String, Option<String>)>,
    tokens: Vec<spamscope::store::tokens::StoredToken>,
    feedback: Vec<(&'static str, spamscope::util::hash::Tally)>,
    /// Debug text: NaN features compare equal.
    records: Vec<String>,
    predictions: Vec<String>,
}

fn contents(reg: &Registry) -> Contents {
    let numbers = reg.version_numbers().unwrap();
    let fb = FeedbackStore::of(reg).unwrap();
    let log = PredictionLog::open_for(reg, KEEP).unwrap();
    let mut predictions = Vec::new();
    let mut after = 0;
    loop {
        let page = log.page(after, 1000).unwrap();
        let Some(last) = page.last() else { break };
        after = last.0;
        predictions.extend(page.iter().map(|(_, r)| format!("{r:?}")));
    }
    predictions.sort();
    Contents {
        versions: numbers.iter().map(|&v| reg.manifest(v).unwrap()).collect(),
        models: numbers
            .iter()
            .map(|&v| reg.load(v).unwrap().1.to_bytes())
            .collect(),
        active: reg.active().unwrap(),
        documents: Document::ALL
            .iter()
            .map(|&d| reg.read_document(d).unwrap())
            .collect(),
        comparisons: reg
            .comparison_ids()
            .unwrap()
            .into_iter()
            .map(|id| {
                let text = reg.read_comparison(&id).unwrap();
                (id, text)
            })
            .collect(),
        tokens: TokenStore::of(reg).export().unwrap(),
        feedback: fb.export_tables().unwrap().summary(),
        records: fb
            .records(false)
            .unwrap()
            .iter()
            .map(|r| format!("{r:?}"))
            .collect(),
        predictions,
    }
}

fn migrate(from: &str, to: &str, cache: &Path) -> std::process::Output {
    spamscope(&[
        "store",
        "migrate",
        "--from",
        from,
        "--to",
        to,
        "--cache",
        cache.to_str().unwrap(),
        "--json",
    ])
}

fn counts(out: &std::process::Output) -> Vec<(String, u64)> {
    assert!(
        out.status.success(),
        "migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["verified"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["part"].as_str().unwrap().to_string(),
                p["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn count_of(counts: &[(String, u64)], part: &str) -> u64 {
    counts
        .iter()
        .find(|(p, _)| p.starts_with(part))
        .unwrap_or_else(|| panic!("no part {part} in {counts:?}"))
        .1
}

#[test]
fn a_folder_goes_into_postgresql_and_back_with_nothing_lost() {
    let pg = TempPg::start();
    let work = tempfile::tempdir().unwrap();
    let (src, back, cache) = (
        work.path().join("src"),
        work.path().join("back"),
        work.path().join("cache"),
    );
    let secrets = fill(&src);
    let url = pg.url();
    let src_str = src.to_str().unwrap();

    let out = migrate(src_str, &url, &cache);
    let c = counts(&out);
    assert_eq!(count_of(&c, "versions"), 2);
    assert_eq!(count_of(&c, "active version: v1"), 1);
    assert_eq!(count_of(&c, "documents"), 3);
    assert_eq!(count_of(&c, "comparisons kept"), 2);
    assert_eq!(count_of(&c, "decision policies (live: 1, shadow: 2)"), 3);
    assert_eq!(count_of(&c, "API tokens"), 2);
    assert_eq!(count_of(&c, "feedback table feedback"), 3);
    assert_eq!(count_of(&c, "feedback table unlinked_feedback"), 1);
    assert_eq!(count_of(&c, "feedback table feedback_keys"), 3);
    assert_eq!(count_of(&c, "feedback table confirmed_labels"), 1);
    assert_eq!(count_of(&c, "feedback table review_claims"), 1);
    assert_eq!(count_of(&c, "feedback table review_times"), 1);
    assert_eq!(count_of(&c, "prediction log"), PREDICTIONS as u64);

    let db = Registry::open_at(&Location::Postgres {
        url: url.clone(),
        cache: work.path().join("cache2"),
    })
    .unwrap();
    let source = Registry::open(&src).unwrap();
    assert_eq!(contents(&db), contents(&source));
    // The log went into day partitions (41 days of rows).
    assert_eq!(
        pg.psql("SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'predictions'"),
        "41"
    );
    // The same secrets work; a replayed key finds its record; new ids follow the copied.
    let tokens = TokenStore::of(&db).load().unwrap();
    for s in &secrets {
        assert!(tokens.verify(s).is_some());
    }
    let mut fb = FeedbackStore::of(&db).unwrap();
    let replay = fb
        .add_submissions(&[keyed(record("20000003", 1), "key-2")])
        .unwrap();
    let first = FeedbackStore::of(&source).unwrap().records(false).unwrap()[2].id;
    assert!(
        matches!(replay[0].as_ref().unwrap(), Outcome::Replayed { id, .. } if *id == first),
        "{replay:?}"
    );
    let new_id = fb.add(&record("20000004", 0)).unwrap();
    assert_eq!(new_id, first + 1);
    fb.add(&record("20000005", 0)).unwrap();
    db.load_active().unwrap();

    // Back into a new folder: the database's data, now with the two new records.
    let out = migrate(&url, back.to_str().unwrap(), &cache);
    let c = counts(&out);
    assert_eq!(count_of(&c, "feedback table feedback"), 5);
    assert_eq!(count_of(&c, "prediction log"), PREDICTIONS as u64);
    let folder = Registry::open(&back).unwrap();
    assert_eq!(contents(&folder), contents(&db));
    // And the folder serves: its active version loads, its secrets verify.
    assert_eq!(folder.load_active().unwrap().0.version, 1);
    assert!(
        TokenStore::of(&folder)
            .load()
            .unwrap()
            .verify(&secrets[0])
            .is_some()
    );
}

#[test]
fn a_copy_cut_short_is_completed_and_a_target_with_other_data_is_refused() {
    let pg = TempPg::start();
    let work = tempfile::tempdir().unwrap();
    let (src, cache) = (work.path().join("src"), work.path().join("cache"));
    fill(&src);
    let url = pg.url();
    let src_str = src.to_str().unwrap();
    let source = Registry::open(&src).unwrap();
    let db_at = |c: &str| {
        Registry::open_at(&Location::Postgres {
            url: url.clone(),
            cache: work.path().join(c),
        })
        .unwrap()
    };

    // A copy cut short: one version and a third of the log already there.
    {
        let db = db_at("c1");
        let files: Vec<Vec<u8>> = ["manifest.ron", "model.bin", "holdout.bin"]
            .iter()
            .map(|n| source.version_file(1, n).unwrap())
            .collect();
        db.install_version(1, &files[0], &files[1], &files[2])
            .unwrap();
        let from = PredictionLog::open_for(&source, KEEP).unwrap();
        let to = PredictionLog::open_for(&db, KEEP).unwrap();
        for (_, r) in from.page(0, 2_500).unwrap() {
            to.append(r);
        }
        to.flush().unwrap();
    }
    let c = counts(&migrate(src_str, &url, &cache));
    assert_eq!(count_of(&c, "prediction log"), PREDICTIONS as u64);
    assert_eq!(contents(&db_at("c2")), contents(&source));
    // Again: nothing new, still verified.
    let c = counts(&migrate(src_str, &url, &cache));
    assert_eq!(count_of(&c, "versions"), 2);

    // A target holding other data: refused in one line, exit 1, nothing written.
    pg.psql("CREATE DATABASE other");
    let other = url.replace("/spamscope", "/other");
    let other_reg = Registry::open_at(&Location::Postgres {
        url: other.clone(),
        cache: work.path().join("c3"),
    })
    .unwrap();
    TokenStore::of(&other_reg)
        .add("someone-else", Role::Admin)
        .unwrap();
    let out = migrate(src_str, &other, &cache);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim().lines().last().unwrap().matches("error:").count(),
        1
    );
    assert!(
        err.contains("tokens: the target holds other tokens"),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(other_reg.version_numbers().unwrap(), Vec::<u32>::new());
    // A row changed in the copy: the feedback tables no longer match; refused.
    pg.psql("UPDATE feedback SET true_label = 1 - true_label WHERE id = 1");
    let out = migrate(src_str, &url, &cache);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("feedback: the target holds 10 other rows"),
        "{err}"
    );

    // Bad arguments: one line each.
    let out = spamscope(&["store", "migrate", "--from", src_str, "--to", src_str]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("are the same store"),
        "{out:?}"
    );
    let out = migrate(src_str, work.path().join("f2").to_str().unwrap(), &cache);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--cache goes with a postgres:// side"),
        "{out:?}"
    );
    let missing = work.path().join("nowhere");
    let out = migrate(missing.to_str().unwrap(), &url, &cache);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no registry folder there"),
        "{out:?}"
    );
    let out = spamscope(&[
        "--store", &url, "store", "migrate", "--from", src_str, "--to", &url,
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--store does not go with it"),
        "{out:?}"
    );
}
