//! The desktop app driven headless with egui_kittest: the real UI, real worker threads,
//! a registry in a temporary folder and a small synthetic dataset.

use eframe::egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use spamscope::app::{AppConfig, Credentials, SpamscopeApp, Tab};
use spamscope::data::synth::SynthParams;
use spamscope::model::forest::ForestParams;
use spamscope::ops::train::TrainConfig;
use spamscope::store::feedback::FeedbackStore;
use spamscope::workbench::WorkbenchConfig;
use std::path::Path;
use std::time::{Duration, Instant};

fn config(dir: &Path, dataset: Option<&Path>) -> AppConfig {
    config_with(
        dir,
        dataset,
        SynthParams {
            rows: 6000,
            seed: 11,
        },
    )
}

fn config_with(dir: &Path, dataset: Option<&Path>, synth: SynthParams) -> AppConfig {
    AppConfig {
        workbench: WorkbenchConfig {
            registry_root: dir.to_path_buf(),
            dataset: dataset.map(Path::to_path_buf),
            synth,
            train: TrainConfig {
                params: ForestParams {
                    n_trees: 25,
                    max_depth: Some(12),
                    ..Default::default()
                },
                ..Default::default()
            },
            remote: None,
            mlflow: None,
        },
        persist: false,
        server: None,
        credentials: Credentials {
            dir: dir.join("credentials"),
            keyring: false,
        },
    }
}

fn harness(dir: &Path, dataset: Option<&Path>) -> Harness<'static, SpamscopeApp> {
    harness_with(config(dir, dataset))
}

fn harness_with(cfg: AppConfig) -> Harness<'static, SpamscopeApp> {
    Harness::builder()
        .with_size([1500.0, 1000.0])
        .build_eframe(move |cc| SpamscopeApp::new(cc, cfg.clone()))
}

/// Steps frames until every background job and the explanation are done.
fn settle(h: &mut Harness<'_, SpamscopeApp>) {
    let start = Instant::now();
    loop {
        h.run_steps(1);
        if h.state().is_settled() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the app did not settle"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    h.run_steps(3);
}

/// Removes what changes from run to run (time stamps, fading notices) before a snapshot.
fn freeze(h: &mut Harness<'_, SpamscopeApp>) {
    let app = h.state_mut();
    app.clear_notices();
    if let Some(a) = app.workbench.active.as_mut() {
        a.manifest.created_at = "2026-11-24T00:00:00Z".into();
        a.manifest.train_seconds = 1.0;
    }
    if let Some(q) = app.workbench.queue.as_ref() {
        let mut q = (**q).clone();
        q.batch.seconds = 1.0;
        app.workbench.queue = Some(std::sync::Arc::new(q));
    }
    for r in app.workbench.versions.iter_mut() {
        if let Ok(m) = r.manifest.as_mut() {
            m.created_at = format!("2026-11-24T00:0{}:00Z", m.version % 10);
            m.train_seconds = 1.0;
        }
    }
    if let Some(cv) = app.workbench.cross_validation.as_ref() {
        let mut cv = (**cv).clone();
        for r in &mut cv.rows {
            r.fit_seconds.mean = 1.0;
        }
        app.workbench.cross_validation = Some(std::sync::Arc::new(cv));
    }
    if let Some(t) = app.workbench.policy_test.as_ref() {
        let mut test = t.test.clone();
        test.policy_seconds = 0.01;
        test.scoring_seconds = 0.5;
        app.workbench.policy_test = Some(std::sync::Arc::new(spamscope::workbench::PolicyTested {
            test,
            data: t.data.clone(),
        }));
    }
    if let Some(t) = app.workbench.tuning.as_ref() {
        let mut t = (**t).clone();
        t.seconds = 6.0;
        for trial in &mut t.trials {
            if let Some(c) = trial.cv.as_mut() {
                c.fit_seconds.mean = 1.0;
            }
        }
        app.workbench.tuning = Some(std::sync::Arc::new(t));
    }
    h.run_steps(2);
}

#[test]
fn gauge_shows_the_models_probability_for_the_typed_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(dir.path(), None);
    settle(&mut h);
    assert_eq!(
        h.state()
            .workbench
            .active
            .as_ref()
            .unwrap()
            .manifest
            .version,
        1,
        "first start trained a version"
    );
    // Type a value into a count field of the "Message Behavior" category.
    h.get_by_label("Message Behavior").click();
    h.run_steps(2);
    h.get_by_role_and_label(Role::SpinButton, "Urgent messages")
        .set_value_accesskit(7.0);
    h.run_steps(2);
    settle(&mut h);
    let app = h.state();
    let inputs = app.state.score.raw();
    assert_eq!(inputs[18], 7.0, "the typed value reached the model input");
    let model = app.workbench.active.as_ref().unwrap().model.clone();
    let expected = model.predict_one(&inputs);
    assert_eq!(app.score.shown_score(), Some(expected));
    // The calibrated probability is on screen, for people and screen readers, and
    // the raw score beside it.
    let calibration = model
        .calibration
        .as_ref()
        .expect("a new version is calibrated");
    h.get_by_label_contains(&format!(
        "Spam probability: {:.1}%",
        model.probability(expected) * 100.0
    ));
    h.get_by_label_contains(&format!(
        "Raw score {expected:.3}, spammer above 0.50; calibrated ({})",
        calibration.method()
    ));

    // An out-of-range value is refused with a reason and does not reach the model.
    h.get_by_role_and_label(Role::SpinButton, "Urgent messages")
        .set_value_accesskit(500.0);
    h.run_steps(2);
    h.get_by_label_contains("refused: Urgent messages must be between 0 and 80");
    assert_eq!(h.state().state.score.raw()[18], 7.0);
}

#[test]
fn submitting_feedback_writes_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(dir.path(), None);
    settle(&mut h);
    // The moderator name from Settings goes with the record.
    h.get_by_label("Settings").click();
    h.run_steps(2);
    h.get_by_role_and_label(Role::TextInput, "Moderator name")
        .focus();
    h.run_steps(2);
    h.get_by_role_and_label(Role::TextInput, "Moderator name")
        .type_text("sam");
    h.run_steps(2);
    h.get_by_label("Score an account").click();
    settle(&mut h);
    // These sit below the fold of the results column: use the accessibility action.
    h.get_by_label("Wrong").click_accesskit();
    h.run_steps(2);
    h.get_by_label("Submit feedback").click_accesskit();
    h.run_steps(2);
    settle(&mut h);
    let store = FeedbackStore::open_in(dir.path()).unwrap();
    let records = store.records(false).unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0].record;
    let app = h.state();
    let inputs = app.state.score.raw();
    for (a, b) in r.features.iter().zip(&inputs) {
        assert!(a == b || (a.is_nan() && b.is_nan()));
    }
    assert_eq!(
        Some(r.true_label),
        r.predicted.map(|p| 1 - p),
        "marked wrong"
    );
    assert_eq!(r.model_version, Some(1));
    assert_eq!(records[0].moderator.as_deref(), Some("sam"));
    assert_eq!(app.workbench.feedback.as_ref().unwrap().total, 1);
    h.get_by_label_contains("Feedback so far: 1 record(s)");
}

#[test]
fn every_screen_renders_and_matches_its_snapshot() {
    // The real default data (all 458,798 synthetic accounts); a small forest keeps the
    // test quick.
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness_with(config_with(dir.path(), None, SynthParams::default()));
    settle(&mut h);
    freeze(&mut h);
    h.snapshot("score");
    h.get_by_label("Explore data").click();
    h.run_steps(2);
    assert_eq!(h.state().state.tab, Tab::Explore);
    for (view, name) in [
        ("Overview", "explore_overview"),
        ("Feature importance", "explore_importance"),
        ("Correlations", "explore_correlations"),
        ("Distributions", "explore_distributions"),
        ("PCA", "explore_pca"),
        ("Summary table", "explore_summary"),
    ] {
        h.get_by_label(view).click();
        h.run_steps(3);
        h.snapshot(name);
    }
    h.get_by_label("Evaluate model").click();
    h.run_steps(3);
    h.snapshot("evaluate");
    // The calibration section: the raw score's error and the calibrated one's.
    h.get_by_label_contains("Raw score: expected calibration error");
    h.get_by_label_contains(
        "Calibrated (isotonic; each half of the holdout calibrated on the other)",
    );

    // A threshold found from a target precision: the working threshold moves to the
    // point `eval::threshold` chooses on the holdout, and the tab says what it gives.
    h.get_by_role_and_label(Role::SpinButton, "precision at least")
        .set_value_accesskit(0.8);
    h.run_steps(2);
    h.get_by_label("Find").click();
    h.run_steps(3);
    let active = h.state().workbench.active.clone().unwrap();
    let holdout = active.holdout.clone().unwrap();
    let want = spamscope::eval::threshold::choose(
        &holdout.labels,
        &holdout.scores,
        spamscope::eval::threshold::Criterion::Precision(0.8),
        20_000.0,
    )
    .unwrap();
    assert!(want.precision >= 0.8);
    assert_eq!(
        h.state().state.evaluate.working,
        Some((active.manifest.version, want.threshold))
    );
    h.get_by_label_contains(&format!(
        "By target precision: threshold {:.4} gives precision {:.3}",
        want.threshold, want.precision
    ));
    h.get_by_label_contains(&format!(
        "A raw score of {:.4} is a calibrated probability of",
        want.threshold
    ));
    h.snapshot("evaluate_threshold");
}

#[test]
fn a_small_csv_loads_and_a_broken_one_keeps_the_old_data() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("small.csv");
    let t = spamscope::data::synth::generate(SynthParams { rows: 900, seed: 3 });
    t.write_csv(std::fs::File::create(&csv).unwrap()).unwrap();
    let mut h = harness(&dir.path().join("reg"), Some(&csv));
    settle(&mut h);
    let data = h.state().workbench.data.clone().unwrap();
    assert!(!data.source.is_synthetic());
    assert_eq!(data.n_rows(), 900);
    h.get_by_label_contains("Data: CSV file");
    for tab in ["Explore data", "Evaluate model", "Score an account"] {
        h.get_by_label(tab).click();
        h.run_steps(3);
    }

    let bad = dir.path().join("broken.csv");
    std::fs::write(&bad, "label,user_id,X1\n0,1,2\n").unwrap();
    // File > Open dataset by path…, type the path, Open.
    h.get_by_label("File").click();
    h.run_steps(2);
    h.get_by_label("Open dataset by path…").click();
    h.run_steps(2);
    h.get_by_role_and_label(Role::TextInput, "Path:")
        .set_text_value_accesskit(bad.to_str().unwrap());
    h.run_steps(2);
    h.get_by_label("Open").click();
    h.run_steps(2);
    settle(&mut h);
    h.get_by_label_contains("could not open the dataset");
    let after = h.state().workbench.data.clone().unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&data, &after),
        "the previous data stays"
    );
}

/// Text user ids work in the app: "Load account" finds "00123" (not "123"), feedback
/// on it stores the id as text, and the review queue lists the ids as written.
#[test]
fn text_user_ids_load_score_and_queue() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("text_ids.csv");
    let t = spamscope::data::synth::generate(SynthParams { rows: 900, seed: 3 });
    let mut bytes = Vec::new();
    t.write_csv(&mut bytes).unwrap();
    let text: String = String::from_utf8(bytes)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(k, l)| {
            if k == 0 {
                return format!("{l}\n");
            }
            let (label, rest) = l.split_once(',').unwrap();
            let (_, features) = rest.split_once(',').unwrap();
            let id = if k == 6 {
                "00123".to_string()
            } else {
                format!("acct-{k:04x}")
            };
            format!("{label},{id},{features}\n")
        })
        .collect();
    std::fs::write(&csv, text).unwrap();
    let mut h = harness(&dir.path().join("reg"), Some(&csv));
    settle(&mut h);
    let data = h.state().workbench.data.clone().unwrap();
    assert_eq!(&*data.user_ids[5], "00123");

    h.get_by_label("Score an account").click();
    h.run_steps(2);
    h.get_by_role_and_label(Role::TextInput, "User id:")
        .set_text_value_accesskit("123");
    h.run_steps(1);
    h.get_by_label("Load account").click();
    h.run_steps(2);
    assert!(
        h.state()
            .state
            .score
            .loaded
            .contains("is not in the loaded data"),
        "{}",
        h.state().state.score.loaded
    );
    h.get_by_role_and_label(Role::TextInput, "User id:")
        .set_text_value_accesskit(" 00123 ");
    h.run_steps(1);
    h.get_by_label("Load account").click();
    h.run_steps(2);
    settle(&mut h);
    assert_eq!(h.state().state.score.raw(), data.row(5));
    assert!(h.state().state.score.loaded.starts_with("user 00123"));
    h.get_by_label("Wrong").click_accesskit();
    h.run_steps(2);
    h.get_by_label("Submit feedback").click_accesskit();
    h.run_steps(2);
    settle(&mut h);
    let store = FeedbackStore::open_in(&dir.path().join("reg")).unwrap();
    let records = store.records(false).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].record.user_id.as_deref(), Some("00123"));

    h.get_by_label("Review queue").click();
    h.run_steps(2);
    h.get_by_label("Score the loaded data").click();
    h.run_steps(2);
    settle(&mut h);
    let q = h.state().workbench.queue.clone().expect("a scored queue");
    let top = q.ranked[0] as usize;
    let uid = q.data.user_ids[top].to_string();
    assert!(uid == "00123" || uid.starts_with("acct-"), "{uid}");
    h.get_by_label(&uid).click();
    h.run_steps(2);
    assert_eq!(h.state().state.tab, Tab::Score);
    assert_eq!(h.state().state.score.raw(), q.data.row(top));
    assert_eq!(h.state().state.score.loaded_user.as_deref(), Some(&*uid));
}

#[test]
fn settings_retrain_and_rollback_through_the_ui() {
    use spamscope::store::feedback::{NewFeedback, Origin};
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(dir.path(), None);
    settle(&mut h);

    // Settings: an invalid value is refused with the reason, a valid one is saved.
    h.get_by_label("Settings").click();
    h.run_steps(3);
    h.get_by_role_and_label(Role::SpinButton, "Feedback weight")
        .set_value_accesskit(0.0);
    h.run_steps(2);
    h.get_by_label("Save settings").click();
    h.run_steps(2);
    h.get_by_label_contains("Not saved: online learning settings: feedback_weight");
    assert!(!dir.path().join("online.ron").exists());
    h.get_by_role_and_label(Role::SpinButton, "Feedback weight")
        .set_value_accesskit(5.0);
    h.get_by_role_and_label(Role::SpinButton, "Max ROC-AUC drop")
        .set_value_accesskit(0.05);
    h.run_steps(2);
    h.get_by_label("Save settings").click();
    h.run_steps(2);
    settle(&mut h);
    let saved = spamscope::ops::online::OnlineLearningConfig::load(
        &spamscope::store::Registry::open(dir.path()).unwrap(),
    )
    .unwrap();
    assert_eq!(saved.max_auc_drop, 0.05);
    freeze(&mut h);
    h.snapshot("settings");

    // Moderators' corrections arrive (60 accounts marked as spammers).
    let data = h.state().workbench.data.clone().unwrap();
    let labels = data.labels.clone().unwrap();
    let records: Vec<NewFeedback> = (0..data.n_rows())
        .filter(|&i| labels[i] == 0)
        .take(60)
        .map(|i| NewFeedback {
            user_id: Some(data.user_ids[i].clone()),
            features: data.row(i),
            true_label: 1,
            probability: None,
            model_version: Some(1),
            predicted: Some(0),
            notes: "reported by sellers".into(),
            origin: Origin::App,
        })
        .collect();
    FeedbackStore::open_in(dir.path())
        .unwrap()
        .add_batch(&records)
        .unwrap();

    // Versions: retrain now; version 2 appears with its gate decision.
    h.get_by_label("Versions").click();
    h.run_steps(3);
    h.get_by_label("Retrain now").click();
    h.run_steps(2);
    settle(&mut h);
    let app = h.state();
    assert_eq!(app.workbench.versions.len(), 2);
    let v2 = app.workbench.versions[1].manifest.as_ref().unwrap();
    assert_eq!(v2.parent, Some(1));
    assert_eq!(
        v2.feedback_used
            + v2.gate
                .as_ref()
                .unwrap()
                .feedback_candidate
                .unwrap()
                .records,
        60
    );
    let promoted = v2.gate.as_ref().unwrap().promoted;
    // The notice reports the gate's held-out feedback by moderator (these records
    // carry no name).
    let held_out = v2
        .gate
        .as_ref()
        .unwrap()
        .feedback_candidate
        .unwrap()
        .records;
    assert!(
        app.notices_text().iter().any(|t| t.contains(&format!(
            "held-out feedback by moderator: unnamed {held_out} records, accuracy"
        ))),
        "{:?}",
        app.notices_text()
    );
    assert_eq!(
        app.workbench.active_version,
        Some(if promoted { 2 } else { 1 })
    );
    // Activate the other version from the history table.
    let other = if promoted { 1 } else { 2 };
    h.get_by_label(&format!("Activate v{other}")).click();
    h.run_steps(2);
    settle(&mut h);
    assert_eq!(h.state().workbench.active_version, Some(other));
    assert_eq!(
        h.state()
            .workbench
            .active
            .as_ref()
            .unwrap()
            .manifest
            .version,
        other,
        "the scoring model was swapped"
    );
    freeze(&mut h);
    h.snapshot("versions");
}

#[test]
fn review_queue_scores_filters_opens_gives_bulk_feedback_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(dir.path(), None);
    settle(&mut h);
    h.get_by_label("Review queue").click();
    h.run_steps(2);
    h.get_by_label("Score the loaded data").click();
    h.run_steps(2);
    settle(&mut h);
    let q = h.state().workbench.queue.clone().expect("a scored queue");
    assert_eq!(q.batch.len(), 6000);
    assert_eq!(q.batch.reasons(0).len(), 3);
    // Ranked by probability.
    let p: Vec<f64> = q
        .ranked
        .iter()
        .map(|&i| q.batch.probability[i as usize])
        .collect();
    assert!(p.windows(2).all(|w| w[0] >= w[1]));
    // The scores are the active model's, the probabilities their calibration.
    let model = h.state().workbench.active.as_ref().unwrap().model.clone();
    for i in [0usize, 17, 4321] {
        let score = model.predict_one(&q.data.row(i));
        assert_eq!(q.batch.score[i], score);
        assert_eq!(q.batch.probability[i], model.probability(score));
    }

    // Filter to flagged accounts.
    h.get_by_label("flagged as spammers").click();
    h.run_steps(2);
    let flagged = (0..q.batch.len())
        .filter(|&i| q.batch.is_spammer(i))
        .count();
    h.get_by_label_contains(&format!("{flagged} shown, 0 selected."));

    // Tick the first two rows and confirm them as spammers in one go.
    let boxes: Vec<_> = h.get_all_by_label("Select for bulk feedback").collect();
    assert!(boxes.len() >= 2);
    boxes[0].click();
    h.run_steps(1);
    h.get_all_by_label("Select for bulk feedback")
        .nth(1)
        .unwrap()
        .click();
    h.run_steps(2);
    h.get_by_label_contains(&format!("{flagged} shown, 2 selected."));
    h.get_by_label("Confirm as spammers").click();
    h.run_steps(2);
    settle(&mut h);
    let store = FeedbackStore::open_in(dir.path()).unwrap();
    let records = store.records(false).unwrap();
    assert_eq!(records.len(), 2);
    for r in &records {
        assert_eq!(r.record.true_label, 1);
        assert_eq!(r.record.origin, spamscope::store::feedback::Origin::Queue);
        assert_eq!(r.record.model_version, Some(1));
    }

    h.get_by_label("flagged as spammers").click();
    h.run_steps(2);
    // The filter refreshes the shown rows' review claims in the background: wait for
    // it, or a slow machine snapshots its "review claims: starting" status.
    settle(&mut h);
    freeze(&mut h);
    h.snapshot("queue");

    // Export the shown rows.
    let out = dir.path().join("scored.csv");
    h.get_by_role_and_label(Role::TextInput, "Export shown rows to:")
        .set_text_value_accesskit(out.to_str().unwrap());
    h.run_steps(1);
    h.get_by_label("Export CSV").click();
    h.run_steps(2);
    settle(&mut h);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), flagged + 1);
    assert!(
        text.starts_with("user_id,probability,is_spammer,model_version,score,explanation_method")
    );

    // Clicking a row opens the account on the score screen.
    let top = q.ranked[0] as usize;
    let uid = q.data.user_ids[top].to_string();
    h.get_by_label(&uid).click();
    h.run_steps(2);
    assert_eq!(h.state().state.tab, Tab::Score);
    assert_eq!(h.state().state.score.raw(), q.data.row(top));
    assert!(h.state().state.score.loaded.contains(&uid));
}

#[test]
fn monitoring_shows_latency_errors_drift_and_raises_alerts() {
    let dir = tempfile::tempdir().unwrap();
    // Alerts also go to a webhook (Settings): a receiver here.
    let (hook, alerts) = common::receiver(vec![]);
    let reg = spamscope::store::Registry::open(dir.path()).unwrap();
    spamscope::ops::online::OnlineLearningConfig {
        webhook_url: Some(hook),
        ..Default::default()
    }
    .save(&reg)
    .unwrap();
    let mut h = harness(dir.path(), None);
    settle(&mut h);
    // Score a few accounts by hand (latency is recorded per scoring).
    h.get_by_label("Message Behavior").click();
    h.run_steps(2);
    for v in [1.0, 2.0, 3.0] {
        h.get_by_role_and_label(Role::SpinButton, "Urgent messages")
            .set_value_accesskit(v);
        h.run_steps(2);
    }
    assert!(h.state().workbench.monitor.latencies_us().len() >= 3);

    // A file of accounts whose most important behaviour has shifted: everybody sends
    // ten more urgent messages.
    let t = spamscope::data::synth::generate(SynthParams {
        rows: 3000,
        seed: 12,
    });
    let mut shifted = t.columns.clone();
    for v in shifted[18].iter_mut() {
        *v += 10;
    }
    let t = spamscope::data::synth::SynthTable {
        columns: shifted,
        ..t
    };
    let csv = dir.path().join("shifted.csv");
    t.write_csv(std::fs::File::create(&csv).unwrap()).unwrap();
    h.get_by_label("Review queue").click();
    h.run_steps(2);
    h.get_by_role_and_label(Role::TextInput, "or path:")
        .set_text_value_accesskit(csv.to_str().unwrap());
    h.run_steps(1);
    h.get_by_label("Score file").click();
    h.run_steps(2);
    settle(&mut h);
    // A broken file is an error of its kind.
    h.get_by_role_and_label(Role::TextInput, "or path:")
        .set_text_value_accesskit("/nonexistent/accounts.csv");
    h.run_steps(1);
    h.get_by_label("Score file").click();
    h.run_steps(2);
    settle(&mut h);

    h.get_by_label("Monitoring").click();
    h.run_steps(2);
    settle(&mut h);
    let d = h.state().workbench.drift.clone().expect("drift computed");
    assert!(d.psi[18] > 0.25, "X19 shifted: PSI {}", d.psi[18]);
    assert!(d.psi[0] < 0.1, "X1 did not shift: PSI {}", d.psi[0]);
    h.get_by_label_contains("Alert: Data drift: X19 Urgent messages");
    let a = alerts
        .recv_timeout(Duration::from_secs(30))
        .expect("the webhook got the alert");
    assert_eq!(a["kind"], "drift", "{a}");
    assert!(
        a["message"]
            .as_str()
            .unwrap()
            .contains("X19 Urgent messages"),
        "{a}"
    );
    assert_eq!(a["version"], 1);
    h.get_by_label_contains("scorings: p50");
    assert_eq!(h.state().workbench.monitor.errors()["Scoring accounts"], 1);

    // Moderators disagree with the flagged accounts: the agreement alert fires.
    h.get_by_label("Review queue").click();
    h.run_steps(2);
    h.get_by_label("flagged as spammers").click();
    h.run_steps(2);
    h.get_by_label("Select all shown").click();
    h.run_steps(1);
    h.get_by_label("Mark as legitimate").click();
    h.run_steps(2);
    settle(&mut h);
    h.get_by_label("Monitoring").click();
    h.run_steps(3);
    h.get_by_label_contains("Alert: Feedback agreement for v1 is 0.0%");
    let a = alerts
        .recv_timeout(Duration::from_secs(30))
        .expect("the agreement alert");
    assert_eq!(a["kind"], "agreement_drop", "{a}");
    freeze(&mut h);
    // Fixed latencies, hours and single scorings for the picture (which and how many
    // accounts the typing above scores depends on frame timing): the first three
    // accounts of the scored file, so the drift is recomputed on the same accounts
    // every run.
    let wb = &mut h.state_mut().workbench;
    let queue = wb.queue.clone().expect("the file was scored");
    let mut m = spamscope::eval::monitor::Monitor::default();
    for i in 0..3 {
        m.record_scoring(80.0 + 10.0 * i as f64, &queue.data.row(i));
    }
    m.record_error("Scoring accounts");
    wb.monitor = m;
    for a in wb.agreement.iter_mut() {
        a.hour = "2026-11-24T00".into();
    }
    h.run_steps(2);
    settle(&mut h);
    h.snapshot("monitoring");
}

#[test]
fn compare_tab_runs_models_promotes_one_and_exports_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(dir.path(), None);
    settle(&mut h);
    h.get_by_label("Compare models").click();
    h.run_steps(2);
    assert_eq!(h.state().state.tab, Tab::Compare);
    assert!(
        h.query_by_label("No comparison yet. Run one to fill the table.")
            .is_some()
    );
    // Leave out the three slowest native models and the rows run in Python (peers,
    // tested with a real environment in tests/peers.rs) through the selection list.
    h.get_by_label("Models to compare").click();
    h.run_steps(2);
    h.get_by_label("KNN (k = 5)").click_accesskit();
    h.get_by_label("KNN (k = 10)").click_accesskit();
    h.get_by_label("forest 100 + SMOTE").click_accesskit();
    // LightGBM, XGBoost and the hard vote and stacking on it are native with the
    // `lightgbm` and `xgboost` features, peers without: left out too, so that the
    // table and its snapshot are the same in every build.
    let by_feature = ["LightGBM", "XGBoost", "Voting (hard)", "Stacking"];
    let peers: Vec<String> = spamscope::model::recipe::default_candidates(42)
        .into_iter()
        .filter(|c| c.peer_library().is_some() || by_feature.contains(&c.name.as_str()))
        .map(|c| c.name)
        .collect();
    assert_eq!(peers.len(), 5);
    for p in &peers {
        h.get_by_label(p).click_accesskit();
    }
    h.run_steps(2);
    // Folded again: the list says which rows are peers only in builds without the features.
    h.get_by_label("Models to compare").click();
    h.run_steps(2);
    h.get_by_label("Run comparison").click_accesskit();
    h.run_steps(2);
    assert!(
        h.state().workbench.is_training(),
        "the comparison runs as a job"
    );
    settle(&mut h);
    let saved = h
        .state()
        .workbench
        .saved_comparison
        .clone()
        .expect("a comparison");
    let names: Vec<&str> = saved.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), 15, "{names:?} failed: {:?}", saved.failed);
    assert!(saved.failed.is_empty());
    assert!(!names.contains(&"KNN (k = 5)") && !names.contains(&"forest 100 + SMOTE"));
    assert!(names.contains(&"Ridge classifier") && names.contains(&"SGD classifier"));
    let best_auc = saved.best_auc.clone().unwrap();
    let max_auc = saved.rows.iter().map(|r| r.roc_auc).fold(0.0, f64::max);
    assert_eq!(
        saved
            .rows
            .iter()
            .find(|r| r.name == best_auc)
            .unwrap()
            .roc_auc,
        max_auc
    );
    assert!(
        h.query_by_label_contains("best AUC").is_some(),
        "the best model is marked"
    );
    // The comparison is saved in the registry for reports and the next start.
    assert!(dir.path().join("comparisons/latest.json").exists());

    // Promote the logistic regression (the 7th row).
    let lr = names
        .iter()
        .position(|n| *n == "logistic regression")
        .unwrap();
    h.get_all_by_label("Promote")
        .nth(lr)
        .unwrap()
        .click_accesskit();
    h.run_steps(2);
    settle(&mut h);
    let active = h.state().workbench.active.clone().unwrap();
    assert_eq!(active.manifest.version, 2);
    assert_eq!(active.manifest.model_kind(), "logistic regression");
    let lr_row = saved
        .rows
        .iter()
        .find(|r| r.name == "logistic regression")
        .unwrap();
    assert_eq!(active.manifest.metrics.roc_auc, lr_row.roc_auc);
    // The score screen explains the promoted model with its own method.
    h.get_by_label("Score an account").click();
    h.run_steps(2);
    settle(&mut h);
    assert!(h.query_by_label_contains("exact log-odds terms").is_some());
    assert!(
        h.query_by_label("logistic regression").is_some(),
        "version panel names the kind"
    );

    // Export the report into the registry's reports folder.
    h.get_by_label("Compare models").click();
    h.run_steps(2);
    h.get_by_label("Export report").click_accesskit();
    h.run_steps(2);
    settle(&mut h);
    let report = h
        .state()
        .workbench
        .last_report
        .clone()
        .expect("a report was written");
    assert!(report.starts_with(dir.path().join("reports")));
    let card = std::fs::read_to_string(report.join("model_card.md")).unwrap();
    assert!(
        card.contains("version 2") && card.contains("| gradient boosting |"),
        "{card}"
    );
    for chart in [
        "class_balance",
        "importance",
        "correlation",
        "roc_pr",
        "confusion",
        "comparison_roc",
    ] {
        assert!(
            report.join("charts").join(format!("{chart}.png")).exists(),
            "{chart}"
        );
    }
    let queue = std::fs::read_to_string(report.join("scored_queue.csv")).unwrap();
    assert_eq!(queue.lines().count(), 6001);

    // Snapshot with the run-to-run details (times, paths) fixed.
    freeze(&mut h);
    let app = h.state_mut();
    app.workbench.last_report = None;
    let mut s = (*app.workbench.saved_comparison.clone().unwrap()).clone();
    s.created_at = "2026-11-24T00:00:00Z".into();
    s.rows.iter_mut().for_each(|r| r.fit_seconds = 1.0);
    app.workbench.saved_comparison = Some(std::sync::Arc::new(s));
    h.run_steps(3);
    h.snapshot("compare");
}

/// The active version's model file is damaged: the app says so in a banner and rolls
/// back to the newest earlier version that loads with one click.
#[test]
fn a_damaged_active_version_offers_a_rollback() {
    use spamscope::data::synth::default_dataset;
    use spamscope::ops::train::train;
    use spamscope::util::progress::NoProgress;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), None);
    let reg = spamscope::store::Registry::open(dir.path()).unwrap();
    let data = default_dataset(cfg.workbench.synth);
    let small = TrainConfig {
        params: ForestParams {
            n_trees: 5,
            max_depth: Some(8),
            ..Default::default()
        },
        ..Default::default()
    };
    for _ in 0..2 {
        train(&data, None, &small, &NoProgress)
            .unwrap()
            .register(&reg, &data, &small, true)
            .unwrap();
    }
    let model = reg.version_dir(2).join("model.bin");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() - 50]).unwrap();

    let mut h = harness_with(cfg);
    settle(&mut h);
    assert!(
        h.state().workbench.active.is_none(),
        "nothing damaged is used"
    );
    h.get_by_label_contains("The active version v2 is damaged");
    freeze(&mut h);
    h.snapshot("damaged_banner");
    h.get_by_label("Roll back to v1").click();
    h.run_steps(2);
    settle(&mut h);
    let w = &h.state().workbench;
    assert_eq!(w.active.as_ref().unwrap().manifest.version, 1);
    assert!(w.damaged.is_none());
    assert!(
        h.query_by_label("Roll back to v1").is_none(),
        "the banner is gone"
    );
    assert_eq!(reg.active().unwrap(), Some(1));
}

mod common;

/// Steps frames until `done` holds (60 s at most).
fn wait_until(
    h: &mut Harness<'_, SpamscopeApp>,
    what: &str,
    mut done: impl FnMut(&SpamscopeApp) -> bool,
) {
    let start = Instant::now();
    loop {
        h.run_steps(1);
        if done(h.state()) {
            h.run_steps(2);
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "waited 60 s for {what}; status {:?}",
            h.state().workbench.remote
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_app_joins_a_team_service_and_keeps_working_offline() {
    use spamscope::store::Registry;
    use spamscope::store::tokens::{Role as TokenRole, TokenStore};
    let synth = SynthParams {
        rows: 3000,
        seed: 5,
    };
    let server_dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(server_dir.path()).unwrap();
    common::train_version(&reg, synth, 8);
    let tokens = TokenStore::open_in(server_dir.path());
    let mia = tokens.add("mia", TokenRole::Moderator).unwrap();
    let ned = tokens.add("ned", TokenRole::Moderator).unwrap();
    let (rt, addr) = common::serve(&reg, 0);
    let url = format!("http://{addr}");

    let dir = tempfile::tempdir().unwrap();
    let mut h = harness_with(config_with(dir.path(), None, synth));
    settle(&mut h);
    // File > Connect to server…, address and token, Connect.
    h.get_by_label("File").click();
    h.run_steps(2);
    h.get_by_label("Connect to server…").click();
    h.run_steps(2);
    for (role, label, text) in [
        (Role::TextInput, "Server address:", &url),
        (Role::PasswordInput, "API token:", &mia),
    ] {
        h.get_by_role_and_label(role, label).focus();
        h.run_steps(2);
        h.get_by_role_and_label(role, label).type_text(text);
        h.run_steps(2);
    }
    h.get_by_label("Connect").click();
    wait_until(&mut h, "the team's version", |a| {
        a.workbench.is_remote()
            && a.workbench.active.as_ref().map(|m| m.manifest.version) == Some(1)
            && a.workbench.remote.as_ref().is_some_and(|r| r.connected)
    });
    h.get_by_label_contains(&format!("Connected to {url} (version 1)"));
    h.get_by_label_contains("0 feedback pending");
    // The token was kept, and the app says where (no keyring in tests: a 0600 file).
    wait_until(&mut h, "the token kept", |a| {
        a.credentials_load(&url).is_some()
    });
    assert_eq!(h.state().credentials_load(&url).unwrap(), mia);
    // The gauge scores locally with the team's model.
    settle(&mut h);
    let (_, model) = reg.load(1).unwrap();
    let inputs = h.state().state.score.raw();
    assert_eq!(
        h.state().score.shown_score(),
        Some(model.predict_one(&inputs))
    );

    // Offline: the feedback form still works; the record waits.
    let port = addr.port();
    rt.shutdown_background();
    wait_until(&mut h, "offline", |a| {
        a.workbench.remote.as_ref().is_some_and(|r| !r.connected)
    });
    h.get_by_label_contains(&format!("Offline: {url}"));
    h.get_by_label("Wrong").click_accesskit();
    h.run_steps(2);
    h.get_by_label("Submit feedback").click_accesskit();
    wait_until(&mut h, "one pending", |a| {
        a.workbench.remote.as_ref().is_some_and(|r| r.pending == 1)
    });
    h.get_by_label_contains("1 feedback pending");
    let stored = || {
        FeedbackStore::open_in(server_dir.path())
            .unwrap()
            .count()
            .unwrap()
    };
    assert_eq!(stored(), 0);
    // Online again: sent exactly once, as mia.
    let (rt, _) = common::serve(&reg, port);
    wait_until(&mut h, "sent", |a| {
        a.workbench
            .remote
            .as_ref()
            .is_some_and(|r| r.connected && r.pending == 0)
    });
    assert_eq!(stored(), 1);
    let rec = &FeedbackStore::open_in(server_dir.path())
        .unwrap()
        .records(false)
        .unwrap()[0];
    assert_eq!(rec.moderator.as_deref(), Some("mia"));
    assert_eq!(rec.record.features.len(), inputs.len());

    // Another moderator's feedback appears in the Team view.
    let body = serde_json::json!({"features": {"X1": 3600.0}, "label": 1, "user_id": "acct-9"});
    spamscope::remote::Client::new(&url, Some(ned.clone()))
        .unwrap()
        .feedback(&body, "ned-key-1")
        .unwrap();
    h.state_mut().state.tab = Tab::Team;
    wait_until(&mut h, "ned in the team", |a| {
        a.workbench
            .team
            .as_ref()
            .is_some_and(|t| t.by_moderator.len() >= 2)
    });
    h.get_by_label("ned");
    h.get_by_label("mia");

    // The review queue for a team: ned holds the top account; mia claims everything
    // shown and gets all but that one; the queue shows who holds what.
    h.state_mut().state.tab = Tab::Queue;
    h.run_steps(2);
    h.get_by_label("Score the loaded data").click();
    wait_until(&mut h, "the queue", |a| a.workbench.queue.is_some());
    let q = h.state().workbench.queue.clone().unwrap();
    let top = q.data.user_ids[q.filtered(None, 0.0, 1.0)[0] as usize].to_string();
    let ned_client = spamscope::remote::Client::new(&url, Some(ned.clone())).unwrap();
    assert_eq!(
        ned_client
            .claim(std::slice::from_ref(&top), 600)
            .unwrap()
            .granted,
        std::slice::from_ref(&top)
    );
    h.get_by_label("Select all shown").click();
    h.run_steps(2);
    h.get_by_label("Claim selected").click();
    wait_until(&mut h, "the claims", |a| {
        a.workbench
            .reviews
            .get(&top)
            .is_some_and(|r| r.claim.as_ref().is_some_and(|c| c.moderator == "ned"))
            && a.workbench
                .reviews
                .values()
                .filter(|r| r.claim.as_ref().is_some_and(|c| c.moderator == "mia"))
                .count()
                > 10
    });
    h.get_by_label_contains("held by others (e.g.");
    h.get_by_label("claimed by ned");
    let status = ned_client
        .review_status(std::slice::from_ref(
            &q.data.user_ids[q.filtered(None, 0.0, 1.0)[1] as usize].to_string(),
        ))
        .unwrap();
    assert_eq!(status.accounts[0].claim.as_ref().unwrap().moderator, "mia");
    h.state_mut().state.tab = Tab::Score;
    h.run_steps(2);

    // A promotion on the service arrives within seconds, with a notice on screen.
    common::train_version(&reg, synth, 12);
    wait_until(&mut h, "version 2", |a| {
        a.workbench.active.as_ref().map(|m| m.manifest.version) == Some(2)
    });
    h.get_by_label_contains("switched from version 1 to version 2");

    // Version 1 in shadow beside version 2, started from the Versions tab; traffic
    // shows in its numbers; one click promotes it, and the app follows.
    h.state_mut().state.tab = Tab::Versions;
    h.run_steps(2);
    // mia is a moderator: starting one needs an admin, and the app says so.
    h.get_by_label("Start experiment").click();
    wait_until(&mut h, "the refusal", |a| {
        a.notices_text().iter().any(|t| t.contains("needs admin"))
    });
    let lead =
        spamscope::remote::Client::new(&url, Some(tokens.add("lead", TokenRole::Admin).unwrap()))
            .unwrap();
    // The service re-reads its tokens within about a second: until it has, the new
    // token is refused as unknown (401), and a refused start changes nothing.
    let start = Instant::now();
    loop {
        match lead.start_experiment(1, "shadow", None) {
            Ok(_) => break,
            Err(spamscope::remote::RemoteError::Refused { status: 401, .. })
                if start.elapsed() < Duration::from_secs(30) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!(
                "starting the experiment as lead ({:?} after the token was added): {e}",
                start.elapsed()
            ),
        }
    }
    wait_until(&mut h, "the experiment", |a| {
        a.workbench.experiment.as_ref().is_some_and(|e| e.running)
    });
    for i in 0..5 {
        let body = serde_json::json!({"features": {"X1": 3600.0 * f64::from(i)}, "user_id": format!("u{i}")});
        ureq::post(format!("{url}/predict"))
            .header("Authorization", format!("Bearer {mia}"))
            .send_json(body)
            .unwrap();
    }
    wait_until(&mut h, "the experiment's numbers", |a| {
        a.workbench
            .experiment
            .as_ref()
            .and_then(|e| e.stats.as_ref())
            .is_some_and(|s| s.requests == 5 && s.both_scored == 5)
    });
    h.get_by_label_contains("Shadow of version 1 beside version 2");
    h.get_by_label_contains("5 requests: 5 answered by the active version, 0 by the candidate");
    lead.promote_experiment().unwrap();
    wait_until(&mut h, "version 1 promoted", |a| {
        a.workbench.active.as_ref().map(|m| m.manifest.version) == Some(1)
            && a.workbench.experiment.as_ref().is_some_and(|e| !e.running)
    });
    assert_eq!(reg.active().unwrap(), Some(1));
    drop(h);
    drop(rt);
}

/// The Compare tab cross-validates the selected models over the folds chosen (mean ±
/// standard deviation shown per model), as a cancellable job that registers nothing.
#[test]
fn compare_tab_cross_validates_the_selected_models() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(dir.path(), None);
    settle(&mut h);
    h.get_by_label("Compare models").click();
    h.run_steps(2);
    // Two models only: untick all but the decision tree and the logistic regression.
    h.get_by_label("Models to compare").click();
    h.run_steps(2);
    let keep = ["decision tree", "logistic regression"];
    let names: Vec<String> = spamscope::model::recipe::default_candidates(42)
        .into_iter()
        .map(|c| c.name)
        .collect();
    for n in names.iter().filter(|n| !keep.contains(&n.as_str())) {
        h.get_by_label(n).click_accesskit();
        h.run_steps(1);
    }
    // Folded again (peers are marked in the list only in builds without the features).
    h.get_by_label("Models to compare").click();
    h.run_steps(2);
    h.get_by_label("Cross-validate").click_accesskit();
    h.run_steps(2);
    assert!(h.state().workbench.is_training(), "it runs as a job");
    settle(&mut h);
    let cv = h
        .state()
        .workbench
        .cross_validation
        .clone()
        .expect("a cross-validation");
    assert_eq!(cv.folds, 5, "five folds by default");
    let rows: Vec<&str> = cv.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(rows, keep, "failed: {:?}", cv.failed);
    for r in &cv.rows {
        assert_eq!(r.roc_auc.folds.len(), 5);
    }
    assert!(
        h.query_by_label_contains("Cross-validation: 5 stratified folds")
            .is_some()
    );
    let lr = &cv.rows[1].roc_auc;
    assert!(
        h.query_by_label(&format!("{:.4} ± {:.4}", lr.mean, lr.std))
            .is_some(),
        "the table shows the mean ± std"
    );
    freeze(&mut h);
    h.snapshot("compare_cv");
    // Nothing was registered beyond the first version trained at start.
    let reg = spamscope::store::Registry::open(dir.path()).unwrap();
    assert_eq!(reg.version_numbers().unwrap(), vec![1]);
}

/// Tune in the Compare tab: a random search over gradient boosting's parameters runs as
/// a job, every trial lands in the table with its cross-validated average precision,
/// and "Promote best trial" registers the best one's recipe as the active version.
#[test]
fn compare_tab_tunes_and_promotes_the_best_trial() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(dir.path(), None);
    settle(&mut h);
    h.get_by_label("Compare models").click();
    h.run_steps(2);
    h.get_by_label("boosting").click();
    h.get_by_role_and_label(Role::SpinButton, "trials")
        .set_value_accesskit(3.0);
    h.run_steps(2);
    h.get_by_label("Tune").click_accesskit();
    h.run_steps(2);
    assert!(h.state().workbench.is_training(), "it runs as a job");
    settle(&mut h);
    let t = h.state().workbench.tuning.clone().expect("a search");
    assert_eq!(t.trials.len(), 3);
    assert_eq!(t.folds, 5, "the toolbar's folds");
    assert_eq!(t.space, spamscope::ops::tune::Space::Boosting);
    let best = t.best_trial().unwrap();
    for trial in &t.trials {
        assert!(matches!(
            trial.recipe.spec,
            spamscope::model::recipe::ModelSpec::Boosted(_)
        ));
        assert!(
            trial.cv.as_ref().unwrap().average_precision.mean
                <= best.cv.as_ref().unwrap().average_precision.mean
        );
    }
    let ap = &best.cv.as_ref().unwrap().average_precision;
    assert!(
        h.query_by_label(&format!("{:.4} ± {:.4}", ap.mean, ap.std))
            .is_some(),
        "the table shows the best trial's mean ± std"
    );
    h.get_by_label_contains(&format!("{} (best)", best.number));
    freeze(&mut h);
    h.snapshot("compare_tune");

    h.get_by_label("Promote best trial").click_accesskit();
    h.run_steps(2);
    settle(&mut h);
    let active = h.state().workbench.active.clone().unwrap();
    assert_eq!(active.manifest.version, 2);
    assert_eq!(active.manifest.recipe(), best.recipe);
    assert!(active.model.calibration.is_some(), "promoted calibrated");
    let reg = spamscope::store::Registry::open(dir.path()).unwrap();
    assert_eq!(reg.active().unwrap(), Some(2));
}

/// The Policies tab (issue 25): a draft checked as it is typed (a typo is named with its
/// rule, line and column), backtested on the loaded data with a chart of the decisions,
/// saved, published, changed (its diff against the live policy shown), backtested again
/// with the accounts it decides otherwise opened on the score screen, and run in shadow.
#[test]
fn the_policies_tab_checks_backtests_saves_publishes_and_shadows() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(dir.path(), None);
    settle(&mut h);
    h.get_by_label("Policies").click();
    h.run_steps(2);
    settle(&mut h);
    assert_eq!(h.state().state.tab, Tab::Policies);
    h.get_by_label_contains("No policy is kept yet");
    // The example policy checks; a typo in a condition is named where it is.
    h.get_by_label_contains("Valid: 4 rules; outcomes allow < review < block");
    let example = h.state().policies.text.clone();
    h.state_mut().policies.text = example.replace("probability >= 0.5", "probabilty >= 0.5");
    h.run_steps(2);
    h.get_by_label_contains(
        "Not valid: rule 2 (\"likely spam\"), line 1, column 1: unknown name \"probabilty\"",
    );
    // A long draft (120 rules, past what a frame checks) is checked on a thread: the
    // frame says so, then the result comes, its error named as well.
    let long: Vec<String> = (0..120)
        .map(|k| format!("(name: \"r{k}\", when: \"X19 > {k} && probability >= 0.{k:02}\", outcome: \"review\")"))
        .collect();
    let long = format!("(rules: [{}])", long.join(",\n"));
    assert!(long.len() > 4096);
    h.state_mut().policies.text = long.clone();
    h.run_steps(1);
    h.get_by_label("checking…");
    let start = Instant::now();
    while h.query_by_label_contains("Valid: 120 rules").is_none() {
        h.run_steps(1);
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no check of the long draft"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    h.state_mut().policies.text = long.replace("X19 > 80 ", "X19 > > 80 ");
    let start = Instant::now();
    while h
        .query_by_label_contains("Not valid: rule 81 (\"r80\"), line 1, column")
        .is_none()
    {
        h.run_steps(1);
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no error for the long draft"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    h.state_mut().policies.text = example.clone();
    h.run_steps(2);
    h.get_by_label_contains("No policy is live yet: every rule is new.");

    // Backtest on the loaded data: the same numbers as the command line's test.
    h.get_by_label("Backtest").click();
    h.run_steps(2);
    settle(&mut h);
    let t = h.state().workbench.policy_test.clone().expect("a backtest");
    assert_eq!(t.test.backtest.accounts, 6000);
    let review = t
        .test
        .backtest
        .outcomes
        .iter()
        .find(|o| o.outcome == "review")
        .unwrap();
    assert!(review.accounts > 0);
    h.get_by_label_contains("6000 accounts (6000 labelled");
    // The review load at the stated volume (10,000 accounts a day by default).
    h.get_by_label_contains(&format!(
        "accounts a day: about {:.0} to review a day.",
        10_000.0 * review.accounts as f64 / 6000.0
    ));
    freeze(&mut h);
    h.snapshot("policies_backtest");

    // Saved as a draft, then published: it is live.
    h.get_by_label("Save as draft").click();
    h.run_steps(2);
    settle(&mut h);
    h.get_by_label("Publish").click();
    h.run_steps(2);
    settle(&mut h);
    let reg = spamscope::store::Registry::open(dir.path()).unwrap();
    assert_eq!(reg.policy_pointers().unwrap().live, Some(1));
    let book = h.state().workbench.policies.clone().unwrap();
    assert_eq!(book.live, Some(1));
    h.get_by_label_contains("The same rules as the live policy v1.");

    // A stricter draft: its diff, and the accounts it blocks that the live one sent to
    // review, one opened on the score screen.
    h.state_mut().policies.text = example.replace("probability >= 0.9", "probability >= 0.7");
    h.run_steps(2);
    h.get_by_label_contains("Against the live policy v1:");
    h.get_by_label_contains("~ very likely spam -> block when probability >= 0.9");
    h.get_by_label_contains("now -> block when probability >= 0.7");
    h.get_by_label("Backtest").click();
    h.run_steps(2);
    settle(&mut h);
    let t = h.state().workbench.policy_test.clone().unwrap();
    let changed = &t.test.backtest.changed;
    assert!(!changed.is_empty());
    assert!(
        changed
            .iter()
            .all(|c| (c.live.as_str(), c.draft.as_str()) == ("review", "block"))
    );
    let first = changed[0].row;
    h.get_all_by_label("Open").next().unwrap().click();
    h.run_steps(2);
    assert_eq!(h.state().state.tab, Tab::Score);
    assert_eq!(
        h.state().state.score.loaded_user.as_deref(),
        Some(t.data.user_ids[first].to_string().as_str())
    );

    // Kept and run in shadow beside the live policy.
    h.get_by_label("Policies").click();
    h.run_steps(2);
    h.get_by_label("Save as draft").click();
    h.run_steps(2);
    settle(&mut h);
    h.get_by_label("Shadow").click();
    h.run_steps(2);
    settle(&mut h);
    let p = reg.policy_pointers().unwrap();
    assert_eq!((p.live, p.shadow), (Some(1), Some(2)));
    h.get_by_label_contains("Policy v2 in shadow");
    freeze(&mut h);
    h.snapshot("policies");
}

/// The review queue filled by the team's decisions (issue 25): the service's live policy
/// sent accounts to review or block; the app lists them in the service's order (most
/// severe, then highest score) with the rules that sent each.
#[test]
fn the_review_queue_shows_the_teams_decisions_with_their_rules() {
    use spamscope::store::Registry;
    use spamscope::store::tokens::{Role as TokenRole, TokenStore};
    let synth = SynthParams {
        rows: 3000,
        seed: 5,
    };
    let server_dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(server_dir.path()).unwrap();
    common::train_version(&reg, synth, 8);
    let policy = spamscope::ops::policy::parse(
        r#"(rules: [
            (name: "likely", when: "probability >= 0.5", outcome: "review"),
            (name: "very likely", when: "probability >= 0.9", outcome: "block"),
        ])"#,
    )
    .unwrap();
    spamscope::ops::policy::save_draft(&reg, &policy, "lead", "").unwrap();
    spamscope::ops::policy::publish(&reg, 1, "lead").unwrap();
    let tokens = TokenStore::open_in(server_dir.path());
    let mia = tokens.add("mia", TokenRole::Moderator).unwrap();
    let checkout = tokens.add("checkout", TokenRole::Scorer).unwrap();
    let (_rt, addr) = common::serve(&reg, 0);
    let url = format!("http://{addr}");
    // The marketplace scores 300 accounts.
    let data = spamscope::data::synth::default_dataset(synth);
    for i in 0..300 {
        ureq::post(&format!("{url}/predict"))
            .header("authorization", &format!("Bearer {checkout}"))
            .send_json(common::request_of(&data, i, Some(&format!("u-{i}"))))
            .unwrap();
    }
    let want = spamscope::remote::Client::new(&url, Some(mia.clone()))
        .unwrap()
        .review_decisions(2_000)
        .unwrap();
    assert!(want.accounts.len() >= 3, "{}", want.accounts.len());

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config_with(dir.path(), None, synth);
    cfg.server = Some(url.clone());
    cfg.credentials.save(&url, &mia).unwrap();
    let mut h = harness_with(cfg);
    wait_until(&mut h, "the team's version", |a| {
        a.workbench.remote.as_ref().is_some_and(|r| r.connected) && a.workbench.active.is_some()
    });
    settle(&mut h);
    h.get_by_label("Review queue").click();
    h.run_steps(2);
    h.get_by_label("The team's review decisions").click();
    h.run_steps(2);
    settle(&mut h);
    let q = h.state().workbench.queue.clone().expect("a queue");
    let decided = q.decisions.clone().expect("the decisions");
    let users: Vec<String> = q
        .ranked
        .iter()
        .map(|&i| q.data.user_ids[i as usize].to_string())
        .collect();
    let want_users: Vec<String> = want.accounts.iter().map(|a| a.user_id.clone()).collect();
    assert_eq!(users, want_users, "the service's order");
    for (a, (d, rules)) in want.accounts.iter().zip(&decided) {
        assert_eq!(Some(d), a.decision.as_ref());
        assert_eq!(rules, &a.matched_rules);
    }
    h.get_by_label("Decision (rules)");
    let first = &decided[0];
    h.get_all_by_label(&format!("{}: {}", first.0, first.1.join(", ")))
        .next()
        .expect("the first row's decision and rules");
    h.get_by_label_contains(
        "review/queue?source=decisions (the accounts the team's policy sent to review)",
    );
}
