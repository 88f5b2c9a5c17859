//! Online learning: feedback really teaches the model, poisoned feedback is rejected by
//! the gate, degenerate cases are clear errors, and killing a retrain loses nothing.

use serde_json::Value;
use spamscope::data::synth::{SynthParams, default_dataset};
use spamscope::model::baselines::BaselineSpec;
use spamscope::model::forest::ForestParams;
use spamscope::model::recipe::{ModelSpec, Recipe};
use spamscope::ops::online::{OnlineLearningConfig, retrain};
use spamscope::ops::train::{TrainConfig, train};
use spamscope::store::feedback::{FeedbackStore, NewFeedback, Origin};
use spamscope::store::{Registry, Status};
use spamscope::util::progress::NoProgress;
use spamscope::util::rng::SplitMix64;
use std::path::Path;
use std::process::Command;

const BASE: SynthParams = SynthParams {
    rows: 12_000,
    seed: 21,
};

fn forest() -> ForestParams {
    ForestParams {
        n_trees: 60,
        max_depth: Some(14),
        ..Default::default()
    }
}

/// A registry whose active version 1 was trained on the synthetic base data.
fn setup(dir: &Path) -> Registry {
    let reg = Registry::open(dir).unwrap();
    let data = default_dataset(BASE);
    let cfg = TrainConfig {
        params: forest(),
        ..Default::default()
    };
    let t = train(&data, None, &cfg, &NoProgress).unwrap();
    t.register(&reg, &data, &cfg, true).unwrap();
    reg
}

fn online_cfg() -> OnlineLearningConfig {
    OnlineLearningConfig {
        forest: forest(),
        ..Default::default()
    }
}

/// Legitimate-looking accounts of the base data that also carry a pattern the base
/// data never shows: shortened links (X30) and off-platform payment requests (X29).
fn pattern_accounts(n: usize, seed: u64) -> Vec<Vec<f64>> {
    let data = default_dataset(SynthParams { rows: 8000, seed });
    let labels = data.labels.as_ref().unwrap();
    (0..data.n_rows())
        .filter(|&i| labels[i] == 0)
        .take(n)
        .map(|i| {
            let mut x = data.row(i);
            x[28] = 1.0; // X29
            x[29] = 1.0; // X30
            x
        })
        .collect()
}

fn record(features: Vec<f64>, label: u8) -> NewFeedback {
    NewFeedback {
        user_id: None,
        features,
        true_label: label,
        probability: None,
        model_version: None,
        predicted: None,
        notes: String::new(),
        origin: Origin::App,
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn feedback_teaches_a_pattern_the_base_data_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let reg = setup(dir.path());
    let (_, v1) = reg.load_active().unwrap();
    // Moderators mark 400 such accounts as spammers.
    let train_accounts = pattern_accounts(400, 31);
    let mut store = FeedbackStore::open_in(dir.path()).unwrap();
    store
        .add_batch(
            &train_accounts
                .iter()
                .map(|x| record(x.clone(), 1))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    // Fresh accounts with the pattern, never seen in feedback.
    let probe = pattern_accounts(300, 77);
    let before: Vec<f64> = probe.iter().map(|x| v1.predict_one(x)).collect();
    assert!(
        mean(&before) < 0.2,
        "v1 sees legitimate accounts: {}",
        mean(&before)
    );

    let mut cfg = online_cfg();
    // Small data: two forests' AUC differ by noise of about a percent.
    cfg.max_auc_drop = 0.02;
    let o = retrain(&reg, &cfg, &NoProgress).unwrap();
    assert!(o.promoted, "{}", o.reason);
    assert_eq!(reg.active().unwrap(), Some(o.candidate.version));
    assert_eq!(o.candidate.parent, Some(1));
    assert_eq!(o.feedback_train + o.feedback_holdout, 400);
    let (m2, v2) = reg.load_active().unwrap();
    // Recalibrated on the base holdout: a calibration of its own, not v1's.
    let (c1, c2) = (
        v1.calibration.as_ref().unwrap(),
        v2.calibration.as_ref().unwrap(),
    );
    assert_ne!(c1, c2);
    assert_eq!(c2.rows, m2.test_rows);
    assert_eq!(m2.calibration, Some(c2.describe()));
    let after: Vec<f64> = probe.iter().map(|x| v2.predict_one(x)).collect();
    assert!(
        mean(&after) > 0.5 && mean(&after) > mean(&before) + 0.4,
        "the promoted version learned the pattern: {:.3} -> {:.3}",
        mean(&before),
        mean(&after)
    );
    // Without the pattern the same accounts stay legitimate.
    let plain: Vec<f64> = probe
        .iter()
        .map(|x| {
            let mut x = x.clone();
            x[28] = 0.0;
            x[29] = 0.0;
            v2.predict_one(&x)
        })
        .collect();
    assert!(mean(&plain) < 0.2, "{}", mean(&plain));
    // The records are marked as used by the new version.
    let recs = store.records(false).unwrap();
    assert!(
        recs.iter()
            .all(|r| r.used_in_version == Some(o.candidate.version))
    );
    let gate = o.candidate.gate.unwrap();
    assert!(gate.feedback_candidate.unwrap().brier < gate.feedback_active.unwrap().brier);
}

#[test]
fn retraining_keeps_the_kind_of_a_promoted_comparison_model() {
    // The active version is a logistic regression (as promoted from the comparison):
    // retraining refits a logistic regression, with feedback rows repeated by weight.
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let data = default_dataset(BASE);
    let cfg = TrainConfig {
        recipe: Some(Recipe {
            spec: ModelSpec::Baseline(BaselineSpec::Logistic { alpha: 1.0 }),
            smote_k: None,
            seed: 42,
        }),
        ..Default::default()
    };
    let t = train(&data, None, &cfg, &NoProgress).unwrap();
    t.register(&reg, &data, &cfg, true).unwrap();
    let (m1, v1) = reg.load_active().unwrap();
    assert_eq!(m1.model_kind(), "logistic regression");
    let mut store = FeedbackStore::open_in(dir.path()).unwrap();
    store
        .add_batch(
            &pattern_accounts(400, 31)
                .into_iter()
                .map(|x| record(x, 1))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let probe = pattern_accounts(300, 77);
    let before: Vec<f64> = probe.iter().map(|x| v1.predict_one(x)).collect();
    let mut online = online_cfg();
    online.max_auc_drop = 0.05;
    let o = retrain(&reg, &online, &NoProgress).unwrap();
    assert_eq!(o.candidate.model_kind(), "logistic regression");
    let (_, v2) = reg.load(o.candidate.version).unwrap();
    let after: Vec<f64> = probe.iter().map(|x| v2.predict_one(x)).collect();
    assert!(
        mean(&after) > mean(&before) + 0.2,
        "the retrained logistic regression learned the pattern: {:.3} -> {:.3}",
        mean(&before),
        mean(&after)
    );
}

#[test]
fn poisoned_feedback_is_rejected_by_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let reg = setup(dir.path());
    // 3000 ordinary accounts with coin-flip labels.
    let data = default_dataset(SynthParams {
        rows: 3000,
        seed: 55,
    });
    let mut rng = SplitMix64::new(9);
    let poison: Vec<NewFeedback> = (0..data.n_rows())
        .map(|i| record(data.row(i), u8::from(rng.next_f64() < 0.5)))
        .collect();
    let mut store = FeedbackStore::open_in(dir.path()).unwrap();
    store.add_batch(&poison).unwrap();
    let o = retrain(&reg, &online_cfg(), &NoProgress).unwrap();
    assert!(!o.promoted);
    assert!(o.reason.contains("ROC-AUC"), "{}", o.reason);
    assert_eq!(reg.active().unwrap(), Some(1), "the active version stays");
    let m = reg.manifest(o.candidate.version).unwrap();
    assert_eq!(m.status, Status::Rejected);
    assert!(m.status_reason.unwrap().starts_with("rejected"));
    // The poisoned batch is consumed: it does not come back in the next retrain.
    let e = retrain(&reg, &online_cfg(), &NoProgress).unwrap_err();
    assert!(
        e.to_string().contains("at least 10 new feedback records"),
        "{e}"
    );
}

#[test]
fn degenerate_cases_are_clear_errors() {
    // No model yet.
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let e = retrain(&reg, &online_cfg(), &NoProgress).unwrap_err();
    assert!(e.to_string().contains("no model version yet"), "{e}");

    // Too few records.
    let reg = setup(dir.path());
    let mut store = FeedbackStore::open_in(dir.path()).unwrap();
    let few: Vec<NewFeedback> = pattern_accounts(3, 1)
        .into_iter()
        .map(|x| record(x, 1))
        .collect();
    store.add_batch(&few).unwrap();
    let e = retrain(&reg, &online_cfg(), &NoProgress).unwrap_err();
    assert!(e.to_string().contains("there are 3"), "{e}");

    // Feedback of one class only still retrains (AUC on it is simply undefined).
    let more: Vec<NewFeedback> = pattern_accounts(30, 2)
        .into_iter()
        .map(|x| record(x, 1))
        .collect();
    store.add_batch(&more).unwrap();
    let mut cfg = online_cfg();
    cfg.max_auc_drop = 0.05;
    let o = retrain(&reg, &cfg, &NoProgress).unwrap();
    let g = o.candidate.gate.unwrap();
    assert_eq!(g.feedback_candidate.unwrap().roc_auc, None);

    // Invalid settings are refused with the reason.
    let bad = OnlineLearningConfig {
        feedback_weight: 0.0,
        ..online_cfg()
    };
    assert!(
        bad.save(&reg)
            .unwrap_err()
            .to_string()
            .contains("feedback_weight")
    );
    std::fs::write(dir.path().join("online.ron"), "(batch_size: 0)").unwrap();
    let e = OnlineLearningConfig::load(&reg).unwrap_err();
    assert!(
        e.to_string().contains("online.ron") && e.to_string().contains("batch_size"),
        "{e}"
    );
}

#[test]
fn base_data_that_changed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("base.csv");
    let t = spamscope::data::synth::generate(SynthParams {
        rows: 3000,
        seed: 4,
    });
    t.write_csv(std::fs::File::create(&csv).unwrap()).unwrap();
    let reg = Registry::open(dir.path().join("reg")).unwrap();
    let data = spamscope::data::Dataset::load_csv(&csv).unwrap();
    let cfg = TrainConfig {
        params: forest(),
        ..Default::default()
    };
    train(&data, None, &cfg, &NoProgress)
        .unwrap()
        .register(&reg, &data, &cfg, true)
        .unwrap();
    let mut store = FeedbackStore::open_in(reg.root()).unwrap();
    store
        .add_batch(
            &pattern_accounts(20, 3)
                .into_iter()
                .map(|x| record(x, 1))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    // Someone edits the base file.
    let text = std::fs::read_to_string(&csv).unwrap();
    std::fs::write(&csv, text.replacen("\n0,", "\n1,", 1)).unwrap();
    let e = retrain(&reg, &online_cfg(), &NoProgress).unwrap_err();
    assert!(e.to_string().contains("changed since version 1"), "{e}");
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_spamscope")
}

#[test]
fn retrain_and_rollback_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let reg = setup(dir.path());
    let mut store = FeedbackStore::open_in(dir.path()).unwrap();
    store
        .add_batch(
            &pattern_accounts(200, 5)
                .into_iter()
                .map(|x| record(x, 1))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let mut cfg = online_cfg();
    cfg.max_auc_drop = 0.02;
    cfg.save(&reg).unwrap();
    let out = Command::new(bin())
        .args([
            "retrain",
            "--registry",
            dir.path().to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["candidate_version"], 2);
    assert_eq!(v["promoted"], true);
    assert!(v["reason"].as_str().unwrap().starts_with("promoted"));
    assert!(v["metrics"]["roc_auc"].as_f64().unwrap() > 0.8);
    // The held-out feedback by moderator: these records came without one.
    let by = v["by_moderator"].as_array().unwrap();
    assert_eq!(by.len(), 1, "{v}");
    assert_eq!(by[0]["moderator"], Value::Null);
    assert_eq!(by[0]["candidate"]["records"], v["feedback_holdout"]);

    let out = Command::new(bin())
        .args([
            "rollback",
            "--to",
            "1",
            "--registry",
            dir.path().to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["active"].as_u64(), v["previous"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(reg.manifest(2).unwrap().status, Status::RolledBack);
    let out = Command::new(bin())
        .args([
            "versions",
            "--registry",
            dir.path().to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["versions"][1]["status"], "rolled back");
    assert_eq!(v["versions"][0]["status"], "active");
    // Rolling back to a version that does not exist is a one-line error.
    let out = Command::new(bin())
        .args([
            "rollback",
            "--to",
            "7",
            "--registry",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.trim().lines().count() == 1 && err.contains("version 7"),
        "{err}"
    );
}

#[test]
fn killing_a_retrain_leaves_the_registry_valid_and_loses_no_feedback() {
    let dir = tempfile::tempdir().unwrap();
    let reg = setup(dir.path());
    let mut store = FeedbackStore::open_in(dir.path()).unwrap();
    store
        .add_batch(
            &pattern_accounts(300, 8)
                .into_iter()
                .map(|x| record(x, 1))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    // A slow retrain (many trees) so that it is still training when killed.
    let cfg = OnlineLearningConfig {
        forest: ForestParams {
            n_trees: 3000,
            ..Default::default()
        },
        ..online_cfg()
    };
    cfg.save(&reg).unwrap();
    let mut child = Command::new(bin())
        .args(["retrain", "--registry", dir.path().to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it reports tree progress, then kill it.
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let started = lines
        .by_ref()
        .any(|l| l.is_ok_and(|l| l.starts_with("trees:")));
    assert!(started, "the retrain reached the training stage");
    child.kill().unwrap();
    child.wait().unwrap();

    // The old active version still loads; no new version is visible; nothing is lost.
    let reg = Registry::open(dir.path()).unwrap();
    assert_eq!(reg.active().unwrap(), Some(1));
    reg.load_active().unwrap();
    assert_eq!(reg.version_numbers().unwrap(), vec![1]);
    assert_eq!(
        std::fs::read_dir(dir.path().join("staging"))
            .unwrap()
            .count(),
        0,
        "leftovers are cleared on open"
    );
    let store = FeedbackStore::open_in(dir.path()).unwrap();
    assert_eq!(store.count().unwrap(), 300);
    assert_eq!(store.count_unused().unwrap(), 300);
    // And a normal retrain afterwards works.
    let mut cfg = online_cfg();
    cfg.max_auc_drop = 0.02;
    let o = retrain(&reg, &cfg, &NoProgress).unwrap();
    assert_eq!(o.candidate.version, 2);
}

/// Accepts any candidate: the gate cannot be what keeps a second promotion out.
fn permissive_cfg() -> OnlineLearningConfig {
    OnlineLearningConfig {
        max_auc_drop: 1.0,
        feedback_tolerance: 1.0,
        forest: ForestParams {
            n_trees: 8,
            max_depth: Some(8),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn add_pattern_feedback(dir: &Path, n: usize) {
    FeedbackStore::open_in(dir)
        .unwrap()
        .add_batch(
            &pattern_accounts(n, 9)
                .into_iter()
                .map(|x| record(x, 1))
                .collect::<Vec<_>>(),
        )
        .unwrap();
}

/// Another process changes the active version while a candidate trains: the
/// candidate is not promoted over it (compare-and-swap), says why, and gives its
/// feedback back for the next retrain.
#[test]
fn a_candidate_gated_against_a_replaced_version_is_not_promoted() {
    struct Meanwhile<'a>(&'a Registry, std::sync::atomic::AtomicBool);
    impl spamscope::util::progress::Reporter for Meanwhile<'_> {
        fn stage(&self, stage: &str, _: usize, _: usize) {
            if stage == "saving" && !self.1.swap(true, std::sync::atomic::Ordering::SeqCst) {
                // What `spamscope rollback --to 2` in another process would do.
                self.0.rollback(2).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = setup(dir.path());
    // A second version, not active.
    let data = default_dataset(BASE);
    let cfg = TrainConfig {
        params: ForestParams {
            n_trees: 5,
            ..forest()
        },
        ..Default::default()
    };
    train(&data, None, &cfg, &NoProgress)
        .unwrap()
        .register(&reg, &data, &cfg, false)
        .unwrap();
    add_pattern_feedback(dir.path(), 40);
    let o = retrain(
        &reg,
        &permissive_cfg(),
        &Meanwhile(&reg, Default::default()),
    )
    .unwrap();
    assert!(!o.promoted, "{}", o.reason);
    assert!(
        o.reason.contains("active version changed from v1 to v2"),
        "{}",
        o.reason
    );
    assert_eq!(reg.active().unwrap(), Some(2));
    assert_eq!(o.candidate.status, Status::Rejected);
    let store = FeedbackStore::open_in(dir.path()).unwrap();
    assert_eq!(
        store.count_unused().unwrap(),
        40,
        "the feedback is given back"
    );
    // The next retrain gates against v2 and may promote.
    let again = retrain(&reg, &permissive_cfg(), &NoProgress).unwrap();
    assert!(again.promoted, "{}", again.reason);
    assert_eq!(again.candidate.gate.as_ref().unwrap().against, 2);
    assert_eq!(store.count_unused().unwrap(), 0);
}

/// Opens `fifo` for writing once a reader has opened it, polling until `deadline` (a
/// plain open would block for ever if the reader never came); fails with the child's
/// stderr if the child exited instead.
#[cfg(unix)]
fn writer_once_read(
    fifo: &Path,
    child: &mut std::process::Child,
    stderr: &std::sync::Arc<std::sync::Mutex<String>>,
) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        // Without a reader a non-blocking open for writing fails (ENXIO).
        if let Ok(probe) = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
        {
            // A reader is there: this blocking open returns at once.
            let w = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            drop(probe);
            return w;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the retrain exited ({status}) before reading the base data: {}",
                stderr.lock().unwrap()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the retrain did not open the base data within 120 s: {}",
            stderr.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Two processes retrain the same registry at once, each with new feedback of its own:
/// both gate against v1 and both candidates pass the (permissive) gate, yet exactly one
/// is promoted; the other is refused because the active version moved, gives its
/// feedback back, and no claim is left behind.
///
/// The base data is a FIFO (behind a symlink the test re-points) that the test writes
/// only once both retrains are reading it: a retrain reads its base data after loading
/// the active version and claiming its feedback, so both are provably mid-retrain, with
/// disjoint claims, before either can register.
#[cfg(unix)]
#[test]
fn two_retrains_at_once_promote_exactly_once() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("base.csv");
    spamscope::data::synth::generate(BASE)
        .write_csv(std::fs::File::create(&csv).unwrap())
        .unwrap();
    let root = dir.path().join("reg");
    let reg = Registry::open(&root).unwrap();
    let data = spamscope::data::Dataset::load_csv(&csv).unwrap();
    let cfg = TrainConfig {
        params: forest(),
        ..Default::default()
    };
    train(&data, None, &cfg, &NoProgress)
        .unwrap()
        .register(&reg, &data, &cfg, true)
        .unwrap();
    permissive_cfg().save(&reg).unwrap();
    let base = std::fs::read(&csv).unwrap();
    std::fs::remove_file(&csv).unwrap();
    let fifos = [
        dir.path().join("base-a.fifo"),
        dir.path().join("base-b.fifo"),
    ];
    for f in &fifos {
        let made = Command::new("mkfifo").arg(f).status().unwrap();
        assert!(made.success(), "mkfifo {}", f.display());
    }
    let add = |seed: u64| {
        FeedbackStore::open_in(&root)
            .unwrap()
            .add_batch(
                &pattern_accounts(60, seed)
                    .into_iter()
                    .map(|x| record(x, 1))
                    .collect::<Vec<_>>(),
            )
            .unwrap()
    };
    let mut children = Vec::new();
    let mut writers = Vec::new();
    for (i, fifo) in fifos.iter().enumerate() {
        // This retrain's own feedback, then its base data path leads to its own FIFO.
        add(9 + i as u64);
        let link = dir.path().join("base.csv.new");
        std::os::unix::fs::symlink(fifo, &link).unwrap();
        std::fs::rename(&link, &csv).unwrap();
        let mut child = Command::new(bin())
            .args(["retrain", "--registry", root.to_str().unwrap(), "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Drained as it comes: progress must never block the retrain.
        let err = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = err.clone();
        let drain = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        writers.push(writer_once_read(fifo, &mut child, &err));
        children.push((child, err, drain));
    }
    // Both are mid-retrain: every record is claimed, by two different retrains, 60 each.
    let claims: Vec<Option<String>> = FeedbackStore::open_in(&root)
        .unwrap()
        .records(false)
        .unwrap()
        .into_iter()
        .map(|r| r.claimed_by)
        .collect();
    assert_eq!(claims.len(), 120);
    assert!(claims.iter().all(Option::is_some), "{claims:?}");
    assert_ne!(claims[0], claims[60], "one claim per retrain");
    assert!(claims[..60].iter().all(|c| *c == claims[0]));
    assert!(claims[60..].iter().all(|c| *c == claims[60]));
    assert_eq!(
        reg.version_numbers().unwrap(),
        vec![1],
        "nothing registered yet"
    );

    // Release both at once.
    let feeders: Vec<_> = writers
        .into_iter()
        .map(|mut w| {
            let base = base.clone();
            std::thread::spawn(move || w.write_all(&base).unwrap())
        })
        .collect();
    for f in feeders {
        f.join().unwrap();
    }
    let outs: Vec<Value> = children
        .into_iter()
        .map(|(child, err, drain)| {
            let out = child.wait_with_output().unwrap();
            drain.join().unwrap();
            let err = err.lock().unwrap();
            assert!(out.status.success(), "{err}");
            assert!(!err.contains("panicked"), "{err}");
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let winners: Vec<usize> = (0..2).filter(|&i| outs[i]["promoted"] == true).collect();
    assert_eq!(winners.len(), 1, "exactly one promotion: {outs:?}");
    let (w, l) = (winners[0], 1 - winners[0]);
    let won = outs[w]["candidate_version"].as_u64().unwrap() as u32;
    let lost = outs[l]["candidate_version"].as_u64().unwrap() as u32;
    let reason = outs[l]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("active version changed from v1 to v{won}")),
        "{reason}"
    );
    assert_eq!(reg.active().unwrap(), Some(won));
    assert_eq!(reg.manifest(lost).unwrap().status, Status::Rejected);
    // Both were gated against v1: only the moved version kept one out.
    for v in [won, lost] {
        assert_eq!(reg.manifest(v).unwrap().gate.unwrap().against, 1);
    }
    // The winner consumed its own records; the loser gave its records back.
    let records = FeedbackStore::open_in(&root)
        .unwrap()
        .records(false)
        .unwrap();
    assert!(records.iter().all(|r| r.claimed_by.is_none()));
    for (i, r) in records.iter().enumerate() {
        let expected = (i / 60 == w).then_some(won);
        assert_eq!(r.used_in_version, expected, "record {}", r.id);
    }
}
