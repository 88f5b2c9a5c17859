//! Every setting follows its documented range (README, "Learning from moderators"): a
//! value inside is accepted and kept as written, a value outside is refused with an
//! error naming the field. And no configuration can make a command panic: random
//! online-learning settings and training parameters, absurd values included (NaN,
//! infinities, 1e308, usize::MAX), are either refused so or run to an answer.

use proptest::prelude::*;
use spamscope::data::synth::{SynthParams, default_dataset};
use spamscope::model::forest::{ClassWeight, ForestParams, MaxFeatures};
use spamscope::ops::online::{OnlineLearningConfig, retrain};
use spamscope::ops::train::{TrainConfig, train};
use spamscope::store::Registry;
use spamscope::store::feedback::{FeedbackStore, NewFeedback, Origin};
use spamscope::util::progress::NoProgress;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The documented upper bound of min samples split and leaf, and of training rows.
const MOST_ROWS: usize = 33_554_432;
/// "At most ten years" (of 365 days), in seconds.
const TEN_YEARS: u64 = 10 * 365 * 24 * 3600;

/// The fields of forest parameters outside their documented ranges, each as the error
/// names it.
fn forest_violations(p: &ForestParams) -> Vec<&'static str> {
    let mut v = Vec::new();
    if !(1..=100_000).contains(&p.n_trees) {
        v.push("trees");
    }
    if p.max_depth.is_some_and(|d| !(1..=64).contains(&d)) {
        v.push("max depth");
    }
    if !(2..=MOST_ROWS).contains(&p.min_samples_split) {
        v.push("min samples split");
    }
    if !(1..=MOST_ROWS).contains(&p.min_samples_leaf) {
        v.push("leaf");
    }
    if !(2..=256).contains(&p.max_bins) {
        v.push("bins");
    }
    // Not in the README's list, but a count of no features cannot train.
    if p.max_features == MaxFeatures::Count(0) {
        v.push("max features");
    }
    v
}

/// The online-learning settings outside their documented ranges, by name.
fn online_violations(c: &OnlineLearningConfig) -> Vec<&'static str> {
    let mut v = Vec::new();
    if !(1..=1_000_000).contains(&c.batch_size) {
        v.push("batch_size");
    }
    if !(10..=100_000_000).contains(&c.min_samples) {
        v.push("min_samples");
    }
    if c.retrain_interval > TEN_YEARS {
        v.push("retrain_interval");
    }
    if !(c.feedback_weight > 0.0 && c.feedback_weight <= 1000.0) {
        v.push("feedback_weight");
    }
    if !(0.0..=1.0).contains(&c.max_auc_drop) {
        v.push("max_auc_drop");
    }
    if !(c.feedback_holdout > 0.0 && c.feedback_holdout < 1.0) {
        v.push("feedback_holdout");
    }
    if !(0.0..=1.0).contains(&c.feedback_tolerance) {
        v.push("feedback_tolerance");
    }
    v.extend(forest_violations(&c.forest));
    v
}

/// Checks one answer against the documented ranges: `Ok` exactly when nothing is out
/// of range, otherwise an error that names one of the fields out of range.
fn check_answer<T>(
    what: &str,
    violations: &[&str],
    answer: Result<T, impl std::fmt::Display>,
) -> Option<T> {
    match answer {
        Ok(t) => {
            assert!(
                violations.is_empty(),
                "{what}: accepted although {violations:?} are out of range"
            );
            Some(t)
        }
        Err(e) => {
            let e = e.to_string();
            assert!(
                !violations.is_empty(),
                "{what}: refused values inside the documented ranges: {e}"
            );
            assert!(
                violations.iter().any(|f| e.contains(f)),
                "{what}: the error names none of {violations:?}: {e}"
            );
            assert!(!e.contains('\n'), "{what}: one line: {e}");
            None
        }
    }
}

/// Writes `cfg` as `online.ron` and reads it back: accepted exactly when every value is
/// inside its range, and then kept as written; otherwise refused naming a field.
fn check_online_settings(cfg: &OnlineLearningConfig) {
    let violations = online_violations(cfg);
    check_answer("validate", &violations, cfg.validate());
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let text = ron::to_string(cfg).unwrap();
    std::fs::write(reg.layout().online_config(), &text).unwrap();
    if let Some(loaded) = check_answer("load", &violations, OnlineLearningConfig::load(&reg)) {
        assert_eq!(&loaded, cfg, "kept as written: {text}");
    }
    std::fs::remove_file(reg.layout().online_config()).unwrap();
    if check_answer("save", &violations, cfg.save(&reg)).is_some() {
        assert_eq!(&OnlineLearningConfig::load(&reg).unwrap(), cfg);
    } else {
        assert!(
            !reg.layout().online_config().exists(),
            "refused settings are not written"
        );
    }
}

/// Each documented bound: the value on it is accepted and kept, the next one outside
/// is refused naming the field.
#[test]
fn every_setting_follows_its_documented_range() {
    type Set = fn(&mut OnlineLearningConfig);
    let inside: &[(&str, Set)] = &[
        ("batch_size 1", |c| c.batch_size = 1),
        ("batch_size 1e6", |c| c.batch_size = 1_000_000),
        ("min_samples 10", |c| c.min_samples = 10),
        ("min_samples 1e8", |c| c.min_samples = 100_000_000),
        ("retrain_interval 0", |c| c.retrain_interval = 0),
        ("retrain_interval 10 y", |c| c.retrain_interval = TEN_YEARS),
        ("feedback_weight tiny", |c| {
            c.feedback_weight = f64::MIN_POSITIVE
        }),
        ("feedback_weight 1000", |c| c.feedback_weight = 1000.0),
        ("max_auc_drop 0", |c| c.max_auc_drop = 0.0),
        ("max_auc_drop 1", |c| c.max_auc_drop = 1.0),
        ("feedback_holdout tiny", |c| {
            c.feedback_holdout = f64::MIN_POSITIVE
        }),
        ("feedback_holdout <1", |c| {
            c.feedback_holdout = 1f64.next_down()
        }),
        ("feedback_tolerance 0", |c| c.feedback_tolerance = 0.0),
        ("feedback_tolerance 1", |c| c.feedback_tolerance = 1.0),
        ("trees 1", |c| c.forest.n_trees = 1),
        ("trees 100000", |c| c.forest.n_trees = 100_000),
        ("max depth 1", |c| c.forest.max_depth = Some(1)),
        ("max depth 64", |c| c.forest.max_depth = Some(64)),
        ("max depth unlimited", |c| c.forest.max_depth = None),
        ("split 2", |c| c.forest.min_samples_split = 2),
        ("split most", |c| c.forest.min_samples_split = MOST_ROWS),
        ("leaf 1", |c| c.forest.min_samples_leaf = 1),
        ("leaf most", |c| c.forest.min_samples_leaf = MOST_ROWS),
        ("bins 2", |c| c.forest.max_bins = 2),
        ("bins 256", |c| c.forest.max_bins = 256),
    ];
    let outside: &[(&str, Set)] = &[
        ("batch_size", |c| c.batch_size = 0),
        ("batch_size", |c| c.batch_size = 1_000_001),
        ("min_samples", |c| c.min_samples = 9),
        ("min_samples", |c| c.min_samples = 100_000_001),
        ("retrain_interval", |c| c.retrain_interval = TEN_YEARS + 1),
        ("feedback_weight", |c| c.feedback_weight = 0.0),
        ("feedback_weight", |c| c.feedback_weight = 1000f64.next_up()),
        ("feedback_weight", |c| c.feedback_weight = f64::NAN),
        ("max_auc_drop", |c| c.max_auc_drop = -f64::MIN_POSITIVE),
        ("max_auc_drop", |c| c.max_auc_drop = 1f64.next_up()),
        ("max_auc_drop", |c| c.max_auc_drop = f64::NAN),
        ("feedback_holdout", |c| c.feedback_holdout = 0.0),
        ("feedback_holdout", |c| c.feedback_holdout = 1.0),
        ("feedback_holdout", |c| c.feedback_holdout = f64::NAN),
        ("feedback_tolerance", |c| {
            c.feedback_tolerance = -f64::MIN_POSITIVE
        }),
        ("feedback_tolerance", |c| {
            c.feedback_tolerance = 1f64.next_up()
        }),
        ("feedback_tolerance", |c| c.feedback_tolerance = f64::NAN),
        ("trees", |c| c.forest.n_trees = 0),
        ("trees", |c| c.forest.n_trees = 100_001),
        ("max depth", |c| c.forest.max_depth = Some(0)),
        ("max depth", |c| c.forest.max_depth = Some(65)),
        ("min samples split", |c| c.forest.min_samples_split = 1),
        ("min samples split", |c| {
            c.forest.min_samples_split = MOST_ROWS + 1
        }),
        ("leaf", |c| c.forest.min_samples_leaf = 0),
        ("leaf", |c| c.forest.min_samples_leaf = MOST_ROWS + 1),
        ("bins", |c| c.forest.max_bins = 1),
        ("bins", |c| c.forest.max_bins = 257),
    ];
    check_online_settings(&OnlineLearningConfig::default());
    for (what, set) in inside {
        let mut cfg = OnlineLearningConfig::default();
        set(&mut cfg);
        assert!(online_violations(&cfg).is_empty(), "{what}");
        check_online_settings(&cfg);
    }
    for (field, set) in outside {
        let mut cfg = OnlineLearningConfig::default();
        set(&mut cfg);
        assert_eq!(online_violations(&cfg), vec![*field]);
        check_online_settings(&cfg);
    }
}

/// Row weights 0–1e6: on the bounds a forest trains, past them it is refused naming
/// the weights.
#[test]
fn row_weights_follow_their_documented_range() {
    let data = default_dataset(SynthParams { rows: 300, seed: 5 });
    let cols: Vec<Vec<f64>> = data
        .columns
        .iter()
        .map(|c| {
            c.iter()
                .map(|v| if v.is_finite() { *v } else { 0.0 })
                .collect()
        })
        .collect();
    let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
    let labels = data.labels.as_ref().unwrap();
    let params = ForestParams {
        n_trees: 2,
        ..Default::default()
    };
    let fit = |w: f64| {
        let mut weights = vec![1.0; labels.len()];
        weights[0] = w;
        params.fit(&refs, labels, Some(&weights), &NoProgress)
    };
    for w in [0.0, 1e6] {
        fit(w).unwrap_or_else(|e| panic!("weight {w} refused: {e}"));
    }
    for w in [
        -f64::MIN_POSITIVE,
        1e6f64.next_up(),
        f64::NAN,
        f64::INFINITY,
    ] {
        let e = fit(w).unwrap_err().to_string();
        assert!(e.contains("weights must be between 0 and 1e6"), "{w}: {e}");
    }
}

/// Values that break every rule: NaN, infinities, 1e308, negatives, any bits.
fn absurd_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(1e308),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(-1.0),
        Just(0.0),
        Just(-f64::MIN_POSITIVE),
        Just(1f64.next_up()),
        Just(1000f64.next_up()),
        0.0..2000.0f64,
        any::<f64>(),
    ]
}

fn absurd_usize() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(usize::MAX),
        Just(1 << 40),
        Just(MOST_ROWS),
        Just(MOST_ROWS + 1),
        any::<usize>()
    ]
}

/// Mostly a sensible value, sometimes an absurd one, so that both the refusals and the
/// runs with accepted values are exercised.
fn mostly<T: std::fmt::Debug + Clone + 'static>(
    sensible: impl Strategy<Value = T> + 'static,
    absurd: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![9 => sensible, 1 => absurd].boxed()
}

/// Forest parameters, small enough when valid that a case trains in well under a second.
fn forest_params() -> impl Strategy<Value = ForestParams> {
    (
        mostly(
            1..4usize,
            prop_oneof![Just(0usize), Just(100_001), Just(usize::MAX)],
        ),
        mostly(
            prop_oneof![Just(None), (1..10usize).prop_map(Some), Just(Some(64))],
            prop_oneof![Just(Some(0usize)), Just(Some(65)), Just(Some(usize::MAX))],
        ),
        mostly(2..20usize, absurd_usize()),
        mostly(1..20usize, absurd_usize()),
        mostly(
            prop_oneof![
                Just(MaxFeatures::Sqrt),
                Just(MaxFeatures::All),
                (1..60usize).prop_map(MaxFeatures::Count)
            ],
            absurd_usize().prop_map(MaxFeatures::Count),
        ),
        prop_oneof![Just(ClassWeight::Balanced), Just(ClassWeight::None)],
        (any::<bool>(), any::<bool>()),
        mostly(
            prop_oneof![Just(2usize), Just(256), 2..=256usize],
            absurd_usize(),
        ),
        any::<u64>(),
    )
        .prop_map(
            |(n_trees, max_depth, split, leaf, max_features, class_weight, (b, r), bins, seed)| {
                ForestParams {
                    n_trees,
                    max_depth,
                    min_samples_split: split,
                    min_samples_leaf: leaf,
                    max_features,
                    class_weight,
                    bootstrap: b,
                    max_bins: bins,
                    seed,
                    random_splits: r,
                }
            },
        )
}

fn online_config() -> impl Strategy<Value = OnlineLearningConfig> {
    (
        mostly(1..1000usize, absurd_usize()),
        mostly(10..100usize, absurd_usize()),
        prop_oneof![
            Just(0u64),
            Just(u64::MAX),
            Just(TEN_YEARS),
            Just(TEN_YEARS + 1),
            any::<u64>(),
            0..100_000u64
        ],
        (
            mostly(0.1..100.0f64, absurd_f64()),
            mostly(0.0..=1.0f64, absurd_f64()),
            mostly(0.05..0.95f64, absurd_f64()),
            mostly(0.0..0.1f64, absurd_f64()),
        ),
        (any::<bool>(), any::<bool>()),
        forest_params(),
    )
        .prop_map(
            |(
                batch_size,
                min_samples,
                retrain_interval,
                (w, drop, holdout, tol),
                (auto, trust),
                forest,
            )| {
                OnlineLearningConfig {
                    batch_size,
                    min_samples,
                    retrain_interval,
                    feedback_weight: w,
                    max_auc_drop: drop,
                    feedback_holdout: holdout,
                    feedback_tolerance: tol,
                    auto_retrain: auto,
                    trust_weighting: trust,
                    forest,
                    webhook_url: None,
                }
            },
        )
}

/// A registry with an active version and 40 new feedback records, made once; each case
/// works on a copy.
fn template() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let data = default_dataset(SynthParams {
            rows: 2000,
            seed: 3,
        });
        let cfg = TrainConfig {
            params: ForestParams {
                n_trees: 3,
                max_depth: Some(6),
                ..Default::default()
            },
            ..Default::default()
        };
        let t = train(&data, None, &cfg, &NoProgress).unwrap();
        t.register(&reg, &data, &cfg, true).unwrap();
        let labels = data.labels.as_ref().unwrap();
        let records: Vec<NewFeedback> = (0..40)
            .map(|i| NewFeedback {
                user_id: Some(data.user_ids[i].clone()),
                features: data.row(i),
                true_label: 1 - labels[i],
                probability: None,
                model_version: None,
                predicted: None,
                notes: String::new(),
                origin: Origin::Import,
            })
            .collect();
        FeedbackStore::open_in(dir.path())
            .unwrap()
            .add_batch(&records)
            .unwrap();
        dir
    })
    .path()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target: PathBuf = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A settings file is checked against the documented ranges when it is read (kept
    /// as written when accepted); a retrain refuses the same settings naming the field,
    /// and with accepted settings it trains a candidate with exactly those parameters.
    #[test]
    fn any_online_settings_are_refused_or_retrain(cfg in online_config()) {
        check_online_settings(&cfg);
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template(), dir.path());
        let reg = Registry::open(dir.path()).unwrap();
        let violations = online_violations(&cfg);
        // A panic fails the test; so does an error with accepted settings.
        if let Some(o) = check_answer("retrain", &violations, retrain(&reg, &cfg, &NoProgress)) {
            prop_assert_eq!(&o.candidate.params, &cfg.forest);
            prop_assert_eq!(o.candidate.version, 2);
            prop_assert_eq!(o.feedback_train + o.feedback_holdout, 40);
            let prefix = if o.promoted { "promoted" } else { "rejected" };
            prop_assert!(o.reason.starts_with(prefix), "{}", o.reason);
            prop_assert_eq!(reg.active().unwrap(), Some(if o.promoted { 2 } else { 1 }));
        } else {
            prop_assert_eq!(reg.version_numbers().unwrap(), vec![1]);
        }
    }

    /// Training parameters of `spamscope train` and the app: values inside the ranges
    /// train a model with exactly those parameters; any value outside is refused naming
    /// its field (the test fraction strictly between 0 and 1, the threshold 0–1).
    #[test]
    fn any_training_parameters_train_or_are_refused(
        params in forest_params(),
        test_fraction in mostly(
            0.05..0.5f64,
            prop_oneof![Just(0.0), Just(1.0), Just(-0.5), Just(f64::NAN), Just(f64::INFINITY)],
        ),
        threshold in mostly(
            prop_oneof![Just(0.0), Just(1.0), 0.0..=1.0f64],
            prop_oneof![Just(-f64::MIN_POSITIVE), Just(1f64.next_up()), Just(f64::NAN)],
        ),
    ) {
        static DATA: OnceLock<spamscope::data::Dataset> = OnceLock::new();
        let data = DATA.get_or_init(|| default_dataset(SynthParams { rows: 1500, seed: 4 }));
        let mut violations = forest_violations(&params);
        if !(0.0..=1.0).contains(&threshold) {
            violations.push("threshold");
        }
        if !(test_fraction > 0.0 && test_fraction < 1.0) {
            violations.push("test fraction");
        }
        let cfg = TrainConfig { params: params.clone(), recipe: None, test_fraction, threshold };
        if let Some(t) = check_answer("train", &violations, train(data, None, &cfg, &NoProgress)) {
            prop_assert!((0.0..=1.0).contains(&t.metrics.roc_auc), "{}", t.metrics.roc_auc);
            let reg_dir = tempfile::tempdir().unwrap();
            let reg = Registry::open(reg_dir.path()).unwrap();
            let m = t.register(&reg, data, &cfg, true).unwrap();
            prop_assert_eq!(&m.params, &params);
            prop_assert_eq!(m.threshold, threshold);
        }
    }
}

/// The case that crashed: a feedback weight of 1e308 overflowed tree growing.
#[test]
fn an_enormous_feedback_weight_is_refused_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(template(), dir.path());
    let reg = Registry::open(dir.path()).unwrap();
    let cfg = OnlineLearningConfig {
        feedback_weight: 1e308,
        forest: ForestParams {
            n_trees: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    let e = retrain(&reg, &cfg, &NoProgress).unwrap_err().to_string();
    assert!(e.contains("feedback_weight"), "{e}");
    std::fs::write(reg.layout().online_config(), ron::to_string(&cfg).unwrap()).unwrap();
    let e = OnlineLearningConfig::load(&reg).unwrap_err().to_string();
    assert!(
        e.contains("online.ron") && e.contains("feedback_weight"),
        "{e}"
    );
}
