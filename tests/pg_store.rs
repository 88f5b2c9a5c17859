//! The registry kept in PostgreSQL (issue 22), against a real throwaway server: versions
//! and their files, the active pointer and its compare-and-swap, the local cache and its
//! checksums, documents, tokens, the schema's migrations, and the CLI's `--store`.

mod common;

use common::pg::TempPg;
use spamscope::data::synth::SynthParams;
use spamscope::store::location::Location;
use spamscope::store::predictions::DecisionTag;
use spamscope::store::tokens::{Role, TokenStore};
use spamscope::store::{Document, ErrorKind, Registry, StoreError};
use std::process::Command;

const DATA: SynthParams = SynthParams {
    rows: 2000,
    seed: 11,
};

/// Two processes' worth of handles on one database, each with its own cache: what one
/// registers, promotes, rolls back or sets is what the other reads; model files come
/// down once, are checked, and a damaged cached copy is fetched again.
#[test]
fn two_handles_share_versions_active_pointer_and_documents() {
    let pg = TempPg::start();
    let (c1, c2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = pg.registry(c1.path());
    let b = pg.registry(c2.path());
    assert_eq!(b.active().unwrap(), None);
    assert!(matches!(b.load_active(), Err(StoreError::NoVersions(_))));

    common::train_version(&a, DATA, 5);
    common::train_version(&a, DATA, 6);
    assert_eq!(b.version_numbers().unwrap(), vec![1, 2]);
    assert_eq!(b.active().unwrap(), Some(2));
    let (m, model) = b.load_active().unwrap();
    assert_eq!(m.version, 2);
    assert_eq!(m.parent, Some(1));
    let (_, from_a) = a.load(2).unwrap();
    assert_eq!(model.to_bytes(), from_a.to_bytes());
    // Kept in b's cache under its checksum.
    let cached = c2.path().join("files").join(&m.model_file.sha256);
    assert_eq!(std::fs::read(&cached).unwrap(), model.to_bytes());
    // A damaged cached copy is not used: it is fetched and checked again.
    std::fs::write(&cached, b"not a model").unwrap();
    let (_, again) = b.load(2).unwrap();
    assert_eq!(again.to_bytes(), model.to_bytes());
    assert_eq!(std::fs::read(&cached).unwrap(), model.to_bytes());
    assert_eq!(b.load_holdout(2).unwrap().labels.len(), m.test_rows);

    // A rollback through one handle: the other sees the pointer and both statuses.
    let (target, previous) = b.rollback_from(1).unwrap();
    assert_eq!((target.version, previous), (1, Some(2)));
    assert_eq!(a.active().unwrap(), Some(1));
    assert_eq!(
        a.manifest(2).unwrap().status,
        spamscope::store::Status::RolledBack
    );
    a.set_threshold(1, 0.37).unwrap();
    assert_eq!(b.manifest(1).unwrap().threshold, 0.37);
    assert_eq!(
        b.manifest(1).unwrap().status,
        spamscope::store::Status::Registered
    );

    // Documents: one experiment at a time, whoever starts it.
    assert_eq!(b.read_document(Document::Experiment).unwrap(), None);
    assert!(
        a.create_document(Document::Experiment, "{\"x\":1}")
            .unwrap()
    );
    assert!(
        !b.create_document(Document::Experiment, "{\"x\":2}")
            .unwrap()
    );
    assert_eq!(
        b.read_document(Document::Experiment).unwrap().as_deref(),
        Some("{\"x\":1}")
    );
    assert!(b.remove_document(Document::Experiment).unwrap());
    assert!(!a.remove_document(Document::Experiment).unwrap());

    // A damaged file in the database is reported, never loaded.
    pg.psql(
        "UPDATE version_files SET content = 'x'::bytea WHERE version = 1 AND name = 'model.bin'",
    );
    // (Opened with a password in the URL: no message repeats it.)
    let c3 = tempfile::tempdir().unwrap();
    let fresh = Registry::open_at(&Location::Postgres {
        url: pg.url().replace("postgres@", "postgres:sekrit@"),
        cache: c3.path().to_path_buf(),
    })
    .unwrap();
    let err = fresh.load(1).unwrap_err();
    assert!(matches!(err, StoreError::Checksum { .. }), "{err}");
    assert!(
        !err.to_string().contains("sekrit"),
        "shows the password: {err}"
    );
    assert!(matches!(
        fresh.load_active(),
        Err(StoreError::DamagedActive { version: 1, .. })
    ));
    assert!(fresh.load(2).is_ok());
}

/// The compare-and-swap of a gated promotion: a candidate gated against version 1 is
/// kept as rejected when another process made version 2 active meanwhile.
/// The history of comparisons (for MLflow) and a task one process runs at a time
/// (an MLflow sync), alike on a folder and on the database: a comparison is kept once,
/// listed in time order; the task's holder excludes every other handle until it drops
/// its guard, or its session ends.
#[test]
fn comparisons_are_kept_and_a_task_runs_once_on_both_backends() {
    let pg = TempPg::start();
    let folder = tempfile::tempdir().unwrap();
    let (c1, c2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let both = [
        (
            Registry::open(folder.path()).unwrap(),
            Registry::open(folder.path()).unwrap(),
        ),
        (pg.registry(c1.path()), pg.registry(c2.path())),
    ];
    for (a, b) in &both {
        assert_eq!(a.comparison_ids().unwrap(), Vec::<String>::new());
        assert!(
            a.keep_comparison("20261202T100000Z-bb", "{\"b\":2}")
                .unwrap()
        );
        assert!(
            a.keep_comparison("20261201T100000Z-aa", "{\"a\":1}")
                .unwrap()
        );
        // Kept once: the second keeping of an id changes nothing.
        assert!(
            !b.keep_comparison("20261201T100000Z-aa", "{\"other\":1}")
                .unwrap()
        );
        assert_eq!(
            b.comparison_ids().unwrap(),
            vec!["20261201T100000Z-aa", "20261202T100000Z-bb"]
        );
        assert_eq!(
            b.read_comparison("20261201T100000Z-aa").unwrap().as_deref(),
            Some("{\"a\":1}")
        );
        assert_eq!(b.read_comparison("20991231T000000Z-zz").unwrap(), None);
        let e = b.read_comparison("../escape").unwrap_err().to_string();
        assert!(e.contains("not a comparison id"), "{e}");

        let held = a
            .exclusive("mlflow-sync", Duration::ZERO)
            .unwrap()
            .expect("free at first");
        let start = std::time::Instant::now();
        assert!(
            b.exclusive("mlflow-sync", Duration::from_millis(300))
                .unwrap()
                .is_none()
        );
        assert!(start.elapsed() >= Duration::from_millis(300));
        // Another task's name is another lock.
        assert!(b.exclusive("other", Duration::ZERO).unwrap().is_some());
        drop(held);
        // Free again; within a moment, not at once: a folder's lock is its file's
        // flock, which a process forked meanwhile by another test (fork copies every
        // open file until its exec) still shares for that instant (CI saw it once).
        assert!(
            b.exclusive("mlflow-sync", Duration::from_secs(5))
                .unwrap()
                .is_some()
        );
    }
    // A process killed while it holds the task gives it up (its session ends): a sync
    // held up by an MLflow that accepts connections and never answers.
    let (_, b) = &both[1];
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_spamscope"))
        .args(["mlflow", "sync", "--mlflow"])
        .arg(format!("http://{}", silent.local_addr().unwrap()))
        .env("SPAMSCOPE_STORE", pg.url())
        .arg("--cache")
        .arg(c1.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    until_true(|| {
        b.exclusive("mlflow-sync", Duration::ZERO)
            .unwrap()
            .is_none()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        b.exclusive("mlflow-sync", Duration::from_secs(10))
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_promotion_gated_against_a_replaced_version_is_rejected() {
    let pg = TempPg::start();
    let (c1, c2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = pg.registry(c1.path());
    let b = pg.registry(c2.path());
    common::train_version(&a, DATA, 5);
    // A candidate trained against v1...
    let data = spamscope::data::synth::default_dataset(DATA);
    let cfg = spamscope::ops::train::TrainConfig {
        params: spamscope::model::forest::ForestParams {
            n_trees: 4,
            max_depth: Some(6),
            ..Default::default()
        },
        ..Default::default()
    };
    let trained =
        spamscope::ops::train::train(&data, None, &cfg, &spamscope::util::progress::NoProgress)
            .unwrap();
    // ...while another process promotes v2.
    common::train_version(&b, DATA, 6);
    let gate = spamscope::store::Gate {
        against: 1,
        base_auc_active: 0.9,
        base_auc_candidate: 0.9,
        max_auc_drop: 0.01,
        feedback_active: None,
        feedback_candidate: None,
        promoted: true,
        reason: "better".into(),
    };
    let m = a
        .register(
            spamscope::store::NewVersion {
                model: &trained.model,
                holdout: &trained.holdout,
                data: data.source.clone(),
                train_rows: trained.train_rows,
                train_positives: trained.train_positives,
                evaluation: trained.evaluation.clone(),
                params: cfg.params.clone(),
                train_seconds: trained.train_seconds,
                threshold: 0.5,
                metrics: trained.metrics,
                status: spamscope::store::Status::Registered,
                status_reason: None,
                feedback_used: 0,
                gate: Some(gate),
                profiles: None,
                recipe: None,
            },
            true,
        )
        .unwrap();
    assert_eq!(m.version, 3);
    assert_eq!(m.status, spamscope::store::Status::Rejected);
    assert_eq!(b.active().unwrap(), Some(2));
}

/// Tokens keep only hashes; what one handle adds or revokes, another sees at once.
#[test]
fn tokens_are_shared_and_only_hashes_are_stored() {
    let pg = TempPg::start();
    let (c1, c2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = TokenStore::of(&pg.registry(c1.path()));
    let b = TokenStore::of(&pg.registry(c2.path()));
    assert!(!b.exists());
    let secret = a.add("mia", Role::Moderator).unwrap();
    assert!(b.exists());
    assert_eq!(b.load().unwrap().verify(&secret).unwrap().name, "mia");
    let stored = pg.psql("SELECT string_agg(sha256, ',') FROM api_tokens");
    assert!(!stored.contains(&secret) && !secret.is_empty());
    let dup = b.add("mia", Role::Admin).unwrap_err();
    assert!(dup.to_string().contains("already exists"), "{dup}");
    b.revoke("mia").unwrap();
    assert!(a.load().unwrap().verify(&secret).is_none());
    assert!(
        a.revoke("mia")
            .unwrap_err()
            .to_string()
            .contains("no token named")
    );
}

/// The schema is created once and recorded; a database migrated by a newer spamscope
/// is refused in one line; an unreachable server is a one-line busy error.
#[test]
fn schema_is_versioned_and_a_newer_one_is_refused() {
    let pg = TempPg::start();
    let c = tempfile::tempdir().unwrap();
    drop(pg.registry(c.path()));
    drop(pg.registry(c.path()));
    assert_eq!(
        pg.psql("SELECT count(*) FROM spamscope_schema"),
        spamscope::store::pg::schema::current().to_string()
    );
    pg.psql("INSERT INTO spamscope_schema (version, description) VALUES (999, 'from the future')");
    let err = Registry::open_at(&Location::Postgres {
        url: pg.url(),
        cache: c.path().to_path_buf(),
    })
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("schema is version 999"), "{text}");
    assert!(!text.contains('\n'), "{text}");

    let port = pg.port;
    drop(pg);
    let err = Registry::open_at(&Location::Postgres {
        url: format!("postgres://postgres@127.0.0.1:{port}/spamscope"),
        cache: c.path().to_path_buf(),
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy, "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

fn spamscope(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spamscope"));
    c.args(args).env_remove("SPAMSCOPE_STORE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// The CLI on a database: `--store` (or SPAMSCOPE_STORE) on any command; a wrong
/// password or database is one line and exit 1; `--registry` with a database is refused.
#[test]
fn commands_take_the_store_from_the_flag_or_the_environment() {
    let pg = TempPg::start();
    let cache = tempfile::tempdir().unwrap();
    let url = pg.url();
    let cache_arg = cache.path().to_str().unwrap();
    let csv = cache.path().join("small.csv");
    let out = spamscope(
        &["gen-data", "--rows", "2000", "--out", csv.to_str().unwrap()],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = spamscope(
        &[
            "train",
            "--data",
            csv.to_str().unwrap(),
            "--trees",
            "3",
            "--max-depth",
            "4",
            "--store",
            &url,
            "--cache",
            cache_arg,
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = spamscope(
        &["versions", "--json", "--cache", cache_arg],
        &[("SPAMSCOPE_STORE", &url)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["active"], 1, "{v}");

    let out = spamscope(
        &[
            "token", "add", "--name", "ops", "--role", "admin", "--store", &url, "--cache",
            cache_arg,
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pg.psql("SELECT name FROM api_tokens"), "ops");

    let out = spamscope(
        &[
            "versions",
            "--store",
            &format!("postgres://postgres@127.0.0.1:{}/nosuchdb", pg.port),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nosuchdb") && err.lines().count() == 1,
        "{err}"
    );

    let out = spamscope(&["versions", "--store", &url, "--registry", cache_arg], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("two registries"));
}

use spamscope::data::UserId;
use spamscope::data::catalog::N_FEATURES;
use spamscope::store::feedback::{
    Claimant, FeedbackStore, IdempotencyKey, NewFeedback, Origin, Submission,
};
use std::time::{Duration, SystemTime};

fn record(user: &str, label: u8, predicted: Option<u8>, version: Option<u32>) -> NewFeedback {
    let mut features: Vec<f64> = (0..N_FEATURES).map(|i| i as f64 * 0.5).collect();
    features[7] = f64::NAN;
    NewFeedback {
        user_id: Some(UserId::from(user)),
        features,
        true_label: label,
        probability: predicted.map(|p| if p == 1 { 0.8 } else { 0.2 }),
        model_version: version,
        predicted,
        notes: format!("on {user}"),
        origin: Origin::Service,
    }
}

fn linked(r: NewFeedback, moderator: &str, key: Option<&str>) -> Submission {
    Submission::Linked {
        key: key.map(|k| IdempotencyKey::new(k, moderator, &format!("{r:?}")).unwrap()),
        record: r,
        moderator: Some(moderator.into()),
        prediction_id: Some("p-1".into()),
    }
}

/// Every operation of the feedback store, done the same way on a registry folder
/// (SQLite) and on PostgreSQL, answers the same: outcomes, replays, refusals,
/// statistics, records (NaN kept), claims, confirmations.
#[test]
fn the_feedback_store_answers_alike_on_both_backends() {
    let pg = TempPg::start();
    let (folder, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let stores = [
        FeedbackStore::of(&Registry::open(folder.path()).unwrap()).unwrap(),
        FeedbackStore::of(&pg.registry(cache.path())).unwrap(),
    ];
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut answers: Vec<Vec<String>> = Vec::new();
    for mut s in stores {
        let mut a = Vec::new();
        let mut say = |x: String| a.push(x);
        let subs = vec![
            linked(record("u1", 1, Some(0), Some(1)), "mia", Some("k1")),
            linked(record("u2", 0, Some(0), Some(1)), "mia", None),
            linked(record("u1", 1, Some(1), Some(2)), "ben", Some("k1")),
            linked(record("u3", 7, None, None), "ben", None),
            Submission::Unlinked {
                prediction_id: "ext-9".into(),
                is_correct: true,
                actual_label: Some(0),
                notes: String::new(),
                moderator: "ben".into(),
                key: Some(IdempotencyKey::new("k2", "ben", "h").unwrap()),
            },
        ];
        say(format!("{:?}", s.add_submissions_at(&subs, t0).unwrap()));
        // Replays: the same key and body, another body, an unlinked replay.
        let again = vec![
            subs[0].clone(),
            linked(record("u1", 0, Some(0), Some(1)), "mia", Some("k1")),
            subs[4].clone(),
        ];
        say(format!(
            "{:?}",
            s.add_submissions_at(&again, t0 + Duration::from_secs(4000))
                .unwrap()
        ));
        say(format!("{:?}", s.stats().unwrap()));
        say(format!("{:?}", s.unlinked_counts().unwrap()));
        say(format!("{:?}", s.agreement_over_time().unwrap()));
        say(format!("{:?}", s.labels().unwrap()));
        say(format!("{:?}", s.count().unwrap()));
        let records = s.records(false).unwrap();
        assert!(records[0].record.features[7].is_nan());
        say(format!(
            "{:?}",
            records
                .iter()
                .map(|r| (
                    r.id,
                    &r.created_at,
                    &r.moderator,
                    &r.record.user_id,
                    r.record.true_label
                ))
                .collect::<Vec<_>>()
        ));
        // Review: claims, confirmations, the team's view.
        let ids: Vec<UserId> = ["u1", "u2", "u3", "u1 "]
            .iter()
            .map(|u| UserId::from(*u))
            .collect();
        let ttl = Duration::from_secs(600);
        say(format!("{:?}", s.open_review_claims(t0).unwrap()));
        say(format!(
            "{:?}",
            s.claim_for_review(&ids, "mia", ttl, t0).unwrap()
        ));
        say(format!(
            "{:?}",
            s.claim_for_review(&ids[1..], "ben", ttl, t0).unwrap()
        ));
        say(format!(
            "{:?}",
            s.claim_for_review(&ids[1..2], "ben", ttl, t0 + Duration::from_secs(601))
                .unwrap()
        ));
        say(format!(
            "{:?}",
            s.release_review_claims(&ids, "mia").unwrap()
        ));
        // Open: ben's claim on u2, taken at t0 + 601 s once mia's had expired.
        let at = |secs| t0 + Duration::from_secs(secs);
        let open = s.open_review_claims(at(700)).unwrap();
        assert_eq!(
            (open.open, open.oldest_age(at(700))),
            (1, Some(Duration::from_secs(99)))
        );
        say(format!("{open:?}"));
        say(format!("{:?}", s.open_review_claims(at(1201)).unwrap()));
        say(format!(
            "{:?}",
            s.confirm_labels(&[(UserId::from("u1"), 1)], "lead", "sure", t0)
                .unwrap()
        ));
        say(format!(
            "{:?}",
            s.confirm_labels(&[(UserId::from("u1"), 0)], "ben", "", t0)
                .unwrap()
        ));
        say(format!("{:?}", s.moderator_stats().unwrap()));
        say(format!("{:?}", s.claims_and_reviews(&ids, t0).unwrap()));
        say(format!("{:?}", s.account_records("u2").unwrap()));
        // A retrain's claim, use and release.
        let me = Claimant::this_process();
        let claimed = s.claim_unused(&me).unwrap();
        say(format!("{} {}", claimed.len(), s.count_unused().unwrap()));
        s.mark_used(&[claimed[0].id], 3).unwrap();
        s.release(&me).unwrap();
        say(format!("{}", s.count_unused().unwrap()));
        let shown = s.shown();
        answers.push(a.into_iter().map(|x| x.replace(&shown, "STORE")).collect());
    }
    for (i, (sqlite, pg)) in answers[0].iter().zip(&answers[1]).enumerate() {
        assert_eq!(sqlite, pg, "answer {i} differs");
    }
    assert!(answers[0][0].contains("Stored(1)") && answers[0][1].contains("KeyReused"));
}

/// Two replicas deliver the same keyed feedback at the same moment: each record is
/// stored once and both answers name it; two moderators claiming the same accounts on
/// two replicas get disjoint sets that cover them all.
#[test]
fn keys_and_claims_hold_across_processes_at_once() {
    let pg = TempPg::start();
    let caches = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let regs: Vec<Registry> = caches.iter().map(|c| pg.registry(c.path())).collect();
    let barrier = std::sync::Barrier::new(2);
    let ids: Vec<UserId> = (0..200)
        .map(|i| UserId::from(format!("acct{i}").as_str()))
        .collect();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = regs
            .iter()
            .enumerate()
            .map(|(n, reg)| {
                let (barrier, ids) = (&barrier, &ids);
                scope.spawn(move || {
                    let mut s = FeedbackStore::of(reg).unwrap();
                    barrier.wait();
                    let mut outcomes = Vec::new();
                    for i in 0..60 {
                        let sub = linked(
                            record(&format!("acct{i}"), 1, None, None),
                            "mia",
                            Some(&format!("key{i}")),
                        );
                        outcomes.push(s.add_submissions(&[sub]).unwrap().remove(0).unwrap());
                    }
                    let mut rev = ids.clone();
                    if n == 1 {
                        rev.reverse();
                    }
                    let mut granted = Vec::new();
                    for chunk in rev.chunks(10) {
                        granted.extend(
                            s.claim_for_review(
                                chunk,
                                &format!("mod{n}"),
                                Duration::from_secs(600),
                                SystemTime::now(),
                            )
                            .unwrap()
                            .granted,
                        );
                    }
                    (outcomes, granted)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(pg.psql("SELECT count(*) FROM feedback"), "60");
    for i in 0..60 {
        let (a, b) = (&results[0].0[i], &results[1].0[i]);
        assert_eq!(a.id(), b.id(), "key{i}: {a:?} {b:?}");
        let stored = [a, b]
            .iter()
            .filter(|o| matches!(o, spamscope::store::feedback::Outcome::Stored(_)))
            .count();
        assert_eq!(stored, 1, "key{i}: {a:?} {b:?}");
    }
    let (g0, g1) = (&results[0].1, &results[1].1);
    assert!(
        g0.iter().all(|u| !g1.contains(u)),
        "an account went to both"
    );
    assert_eq!(g0.len() + g1.len(), ids.len());
}

/// A job started through one replica is seen by the others; a second start of the
/// same kind anywhere is refused while it runs; a job whose process stopped beating
/// reads as failed and no longer blocks.
#[test]
fn jobs_are_shared_and_one_runs_at_a_time_across_replicas() {
    use spamscope::store::jobs::{Jobs, Started};
    let pg = TempPg::start();
    let (c1, c2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Jobs::of(&pg.registry(c1.path()));
    let b = Jobs::of(&pg.registry(c2.path()));
    let Started::New(first) = a.start("retrain", "ops").unwrap() else {
        panic!("nothing was running")
    };
    assert_eq!(b.start("retrain", "lead").unwrap(), Started::Running(first));
    a.progress(first, "training", 3, 10);
    let seen = b.get(first).unwrap().unwrap();
    assert_eq!(
        (
            seen.state.as_str(),
            seen.stage.as_str(),
            seen.done,
            seen.started_by.as_str()
        ),
        ("running", "training", 3, "ops")
    );
    a.finish(first, Ok("{\"promoted\": true}".into())).unwrap();
    let done = b.get(first).unwrap().unwrap();
    assert_eq!(done.state, "succeeded");
    assert_eq!(done.result.as_deref(), Some("{\"promoted\": true}"));
    // A replica killed mid-job: its job stops beating, reads as failed, blocks nothing.
    let Started::New(second) = b.start("retrain", "lead").unwrap() else {
        panic!("the first job has finished")
    };
    pg.psql(&format!(
        "UPDATE jobs SET heartbeat = now() - interval '1 minute' WHERE id = {second}"
    ));
    let dead = a.get(second).unwrap().unwrap();
    assert_eq!(dead.state, "failed");
    assert!(dead.error.unwrap().contains("stopped"));
    let Started::New(third) = a.start("retrain", "ops").unwrap() else {
        panic!("the dead job blocks nothing")
    };
    assert!(third > second);
    assert_eq!(a.get(999).unwrap(), None);

    // A command's retrain takes the same slot: refused while a replica's runs...
    let cache = tempfile::tempdir().unwrap();
    let retrain = || {
        Command::new(env!("CARGO_BIN_EXE_spamscope"))
            .args(["retrain", "--store", &pg.url(), "--cache"])
            .arg(cache.path())
            .env_remove("SPAMSCOPE_STORE")
            .output()
            .unwrap()
    };
    let out = retrain();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("retrain job {third} is running")) && err.lines().count() == 1,
        "{err}"
    );
    // ...and, once it ended, runs as a job any replica follows (here it fails: the
    // store has no model yet; the job says why).
    a.finish(third, Err("done".into())).unwrap();
    let out = retrain();
    assert_eq!(out.status.code(), Some(1));
    let id: u64 = pg
        .psql("SELECT max(id) FROM jobs WHERE started_by LIKE 'cli:%'")
        .parse()
        .unwrap();
    let job = b.get(id).unwrap().unwrap();
    assert_eq!(job.state, "failed");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(job.error.as_deref().unwrap()),
        "{job:?} {out:?}"
    );
}

/// The shared prediction log: what one replica appends another reads (NaN kept); a
/// repeated id is kept once; retention drops whole day partitions, never today's.
#[test]
fn the_prediction_log_is_shared_partitioned_and_pruned_by_day() {
    use spamscope::store::predictions::{
        ExperimentTag, PredictionLog, PredictionRecord, Retention, new_prediction_id,
    };
    let pg = TempPg::start();
    let (c1, c2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let keep = Retention {
        max_rows: 0,
        max_days: 0,
    };
    let a = PredictionLog::open_for(&pg.registry(c1.path()), keep).unwrap();
    let b = PredictionLog::open_for(&pg.registry(c2.path()), keep).unwrap();
    let at = |days_ago: u64| {
        humantime::format_rfc3339_millis(SystemTime::now() - Duration::from_secs(days_ago * 86_400))
            .to_string()
    };
    let rec = |days_ago: u64, exp: bool| {
        let mut features: Vec<f64> = (0..N_FEATURES).map(|i| i as f64 / 7.0).collect();
        features[3] = f64::NAN;
        PredictionRecord {
            id: new_prediction_id(),
            created_at: at(days_ago),
            version: 2,
            features,
            score: 0.625,
            caller: "svc".into(),
            user_id: Some("u1".into()),
            experiment: exp.then(|| ExperimentTag {
                experiment: "x1".into(),
                other_version: 3,
                other_probability: 0.25,
            }),
            // The live and shadow policies' decisions go with the experiment's rows.
            decision: exp.then(|| DecisionTag {
                policy_version: 1,
                decision: "review".into(),
                matched_rules: vec!["likely".into(), "new, \"payee\"".into()],
            }),
            shadow: exp.then(|| DecisionTag {
                policy_version: 2,
                decision: "block".into(),
                matched_rules: vec!["very likely".into()],
            }),
        }
    };
    let now = rec(0, true);
    a.append(now.clone());
    a.append(rec(40, false));
    a.append(rec(10, false));
    a.flush().unwrap();
    let got = b.get(&now.id).unwrap().unwrap();
    assert_eq!((got.score, &got.experiment), (0.625, &now.experiment));
    assert!(got.features[3].is_nan() && got.features[4] == 4.0 / 7.0);
    assert_eq!(b.experiment_rows("x1").unwrap().len(), 1);
    // Decisions read back, by account, by decision and by shadow policy.
    assert_eq!((&got.decision, &got.shadow), (&now.decision, &now.shadow));
    assert_eq!(b.of_user("u1", 10).unwrap().len(), 3);
    // Newest first, in order of arrival (the first appended comes last).
    assert_eq!(b.of_user("u1", 10).unwrap()[2].id, now.id);
    assert_eq!(b.decided("review", 10).unwrap().len(), 1);
    assert_eq!(b.decided("block", 10).unwrap().len(), 0);
    let shadow = b.shadow_rows(2).unwrap();
    assert_eq!(shadow.len(), 1);
    assert_eq!(
        (shadow[0].live.as_deref(), shadow[0].shadow.as_str()),
        (Some("review"), "block")
    );
    assert_eq!(b.recent(1).unwrap()[0].id, rec_id(&b.recent(3).unwrap(), 0));
    // The same id again: kept once, counted as dropped.
    a.append(now.clone());
    a.flush().unwrap();
    assert_eq!(b.count().unwrap(), 3);
    assert_eq!(a.dropped(), 1);
    assert_eq!(
        pg.psql("SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'predictions'"),
        "3"
    );
    // 30 days: the 40-day-old partition goes, whole.
    let month = Retention {
        max_rows: 0,
        max_days: 30,
    };
    let pruned = PredictionLog::open_for(&pg.registry(c1.path()), month).unwrap();
    assert_eq!(pruned.count().unwrap(), 2);
    // At most 1 row: every day before the newest that holds it goes; today stays.
    let one = Retention {
        max_rows: 1,
        max_days: 0,
    };
    let pruned = PredictionLog::open_for(&pg.registry(c1.path()), one).unwrap();
    assert_eq!(pruned.count().unwrap(), 1);
    assert!(pruned.get(&now.id).unwrap().is_some());
}

fn rec_id(rows: &[spamscope::store::predictions::PredictionRecord], i: usize) -> String {
    rows[i].id.clone()
}

/// TLS to the database as libpq's sslmode says, against a server that refuses
/// connections without it: the default (prefer) and `require` encrypt without checking
/// the certificate; `verify-ca` checks it against `sslrootcert`; `verify-full` also
/// checks the name (the certificate names db.internal, the URL 127.0.0.1: refused);
/// `disable`, an unknown authority or a missing file are one line each, and not taken
/// for a server that is down.
#[test]
fn tls_to_the_database_as_sslmode_says() {
    let pg = TempPg::start();
    let ca = pg.require_tls("DNS:db.internal");
    let cache = tempfile::tempdir().unwrap();
    let at = |query: &str| {
        Registry::open_at(&Location::Postgres {
            url: format!("{}{query}", pg.url()),
            cache: cache.path().to_path_buf(),
        })
    };
    let encrypted = |reg: &Registry| {
        // One statement on a pooled connection, then ask the server how it came in.
        reg.active().unwrap();
        pg.psql(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'spamscope'",
        )
    };
    let reg = at("").unwrap();
    assert_eq!(encrypted(&reg), "t");
    common::train_version(&reg, DATA, 3);
    drop(reg);
    let ca_q = ca.display().to_string().replace('/', "%2F");
    for q in [
        "?sslmode=require".to_string(),
        format!("?sslmode=verify-ca&sslrootcert={ca_q}"),
    ] {
        let reg = at(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(reg.load_active().unwrap().0.version, 1, "{q}");
        assert_eq!(encrypted(&reg), "t", "{q}");
    }
    // A replica's LISTEN connection goes the same way.
    let reg = at(&format!("?sslmode=verify-ca&sslrootcert={ca_q}")).unwrap();
    let mut changes = reg.changes().unwrap().unwrap();
    reg.set_threshold(1, 0.4).unwrap();
    assert!(changes.next(Duration::from_secs(5)).unwrap().is_some());

    let refused = |q: &str, says: &str| {
        let err = at(q).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(says), "{q}: {text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_ne!(err.kind(), ErrorKind::Busy, "{q}: {text}");
    };
    refused("?sslmode=disable", "no encryption");
    refused(
        &format!("?sslmode=verify-full&sslrootcert={ca_q}"),
        "certificate",
    );
    refused("?sslmode=verify-full", "certificate");
    refused(
        "?sslmode=verify-ca&sslrootcert=%2Fnonexistent.pem",
        "sslrootcert /nonexistent.pem",
    );
    refused("?sslmode=sometimes", "sslmode \"sometimes\"");
}

/// A retrain's claim on feedback lives exactly as long as its process's connection:
/// while it runs, another replica neither counts nor takes the records; once it is gone
/// without giving them back (killed: its connection closes), the next retrain anywhere
/// takes them at once (no pid to look up on another host, no day to wait).
#[test]
fn a_claim_lives_as_long_as_its_retrain() {
    let pg = TempPg::start();
    let (c1, c2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (r1, r2) = (pg.registry(c1.path()), pg.registry(c2.path()));
    let mut a = FeedbackStore::of(&r1).unwrap();
    for i in 0..3 {
        a.add(&record(&format!("5000000{i}"), 1, None, None))
            .unwrap();
    }
    let claimed = a.claim_unused(&Claimant::this_process()).unwrap();
    assert_eq!(claimed.len(), 3);
    let mut b = FeedbackStore::of(&r2).unwrap();
    assert_eq!(b.count_unused().unwrap(), 0);
    assert!(
        b.claim_unused(&Claimant::this_process())
            .unwrap()
            .is_empty()
    );
    b.release(&Claimant::this_process()).unwrap();
    // The first retrain dies holding its claims.
    drop(a);
    let mut c = FeedbackStore::of(&r2).unwrap();
    until_true(|| c.count_unused().unwrap() == 3);
    let taken = c.claim_unused(&Claimant::this_process()).unwrap();
    assert_eq!(taken.len(), 3);
}

/// Polls `ok` for up to 10 s (the server notices a closed connection at once on
/// loopback; this only bounds the test).
fn until_true(mut ok: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(10), "not within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Decision policies kept like versions (issue 25), on both backends: drafts written by
/// two handles at once get distinct numbers, publishes at once end with one live policy
/// and the others retired, a shadow runs beside the live one and ends when it is
/// published, and nothing unknown or invalid gets in.
#[test]
fn policies_are_drafted_published_and_shadowed_on_both_backends() {
    use spamscope::eval::policy::{Policy, Rule};
    use spamscope::ops::policy::{self as policy, PolicyStatus};
    let pg = TempPg::start();
    let folder = tempfile::tempdir().unwrap();
    let (c1, c2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let both = [
        (
            Registry::open(folder.path()).unwrap(),
            Registry::open(folder.path()).unwrap(),
        ),
        (pg.registry(c1.path()), pg.registry(c2.path())),
    ];
    let at = |cut: f64| Policy {
        outcomes: ["allow", "review", "block"].map(String::from).to_vec(),
        rules: vec![Rule {
            name: "likely".into(),
            when: format!("probability > {cut}"),
            outcome: "block".into(),
        }],
    };
    for (a, b) in &both {
        // Eight drafts from two handles at once: eight numbers, none twice.
        let mut numbers: Vec<u32> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let reg = if i % 2 == 0 { a } else { b };
                    s.spawn(move || {
                        policy::save_draft(reg, &at(0.5 + i as f64 / 100.0), "ana", "")
                            .unwrap()
                            .version
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=8).collect::<Vec<u32>>());
        // Publishing 1..4 at once: one of them is live, the others retired.
        std::thread::scope(|s| {
            for n in 1..=4u32 {
                let reg = if n % 2 == 0 { a } else { b };
                s.spawn(move || policy::publish(reg, n, "admin").unwrap());
            }
        });
        let live = a.policy_pointers().unwrap().live.unwrap();
        assert!((1..=4).contains(&live));
        let list = policy::list(b).unwrap();
        assert_eq!(list.len(), 8);
        for e in &list {
            let want = match e.record.version {
                n if n == live => PolicyStatus::Live,
                1..=4 => PolicyStatus::Retired,
                _ => PolicyStatus::Draft,
            };
            assert_eq!(e.status, want, "policy {}", e.record.version);
            assert_eq!(e.record.author, "ana");
            assert_eq!(e.record.published_by.is_some(), e.record.version <= 4);
        }
        // A shadow beside the live policy; not the live one itself; it ends when it
        // is published.
        policy::set_shadow(a, Some(6), "mo").unwrap();
        let (l, sh) = policy::kept(b).unwrap();
        assert_eq!((l.unwrap().version, sh.unwrap().version), (live, 6));
        assert_eq!(
            policy::get(b, 6).unwrap().record.shadow_by.as_deref(),
            Some("mo")
        );
        let e = policy::set_shadow(a, Some(live), "mo")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is live"), "{e}");
        policy::publish(b, 6, "admin").unwrap();
        let p = a.policy_pointers().unwrap();
        assert_eq!((p.live, p.shadow), (Some(6), None));
        // Unknown policies and invalid ones are refused, and change nothing.
        let e = policy::publish(a, 99, "admin").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        let mut bad = at(0.5);
        bad.rules[0].when = "probabilty > 0.5".into();
        let e = policy::save_draft(a, &bad, "ana", "")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 1, column 1") && e.contains("probabilty"),
            "{e}"
        );
        assert_eq!(a.policy_numbers().unwrap().len(), 8);
        assert_eq!(a.policy_pointers().unwrap().live, Some(6));
        // The diff against the live policy names the changed rule.
        let d = policy::diff(Some(&policy::get(a, 6).unwrap().record.policy), &at(0.9));
        assert_eq!((d.changed.len(), d.added.len(), d.removed.len()), (1, 0, 0));
    }
}

/// Review time (issue 25) on both backends: a claim ended by its holder's feedback is
/// kept as a review with its duration; feedback by someone else, or on an account
/// nobody claimed, is not a review.
#[test]
fn a_claim_ended_by_its_holders_feedback_is_a_timed_review_on_both_backends() {
    use spamscope::data::UserId;
    use std::time::SystemTime;
    let pg = TempPg::start();
    let (folder, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let regs = [
        Registry::open(folder.path()).unwrap(),
        pg.registry(cache.path()),
    ];
    for reg in &regs {
        let mut s = FeedbackStore::of(reg).unwrap();
        let ids: Vec<UserId> = ["a1", "a2"].iter().map(|u| UserId::from(*u)).collect();
        s.claim_for_review(&ids, "mia", Duration::from_secs(600), SystemTime::now())
            .unwrap();
        let subs = [
            linked(record("a1", 1, None, None), "mia", None),
            linked(record("a2", 0, None, None), "noor", None),
            linked(record("a3", 0, None, None), "mia", None),
        ];
        for o in s.add_submissions(&subs).unwrap() {
            o.unwrap();
        }
        let t = s.review_times(&[0.0, 60.0]).unwrap();
        assert_eq!(t.count, 1, "only mia's review of her claim");
        assert_eq!(t.buckets, vec![(0.0, t.buckets[0].1), (60.0, 1)]);
        assert!(t.sum_seconds >= 0.0 && t.sum_seconds < 60.0);
        // Mia's claim on a1 ended; noor's feedback left mia's claim on a2 open.
        assert_eq!(s.open_review_claims(SystemTime::now()).unwrap().open, 1);
    }
}
