//! No configuration can make a command panic: random online-learning settings and
//! training parameters, absurd values included (NaN, infinities, 1e308, usize::MAX),
//! are either refused with a message or run to an answer.

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
        mostly(2..=256usize, absurd_usize()),
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
        prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>(), 0..100_000u64],
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

    /// A settings file is checked when it is read; a retrain with any settings ends
    /// with an answer or an error, never a panic.
    #[test]
    fn any_online_settings_are_refused_or_retrain(cfg in online_config()) {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template(), dir.path());
        let reg = Registry::open(dir.path()).unwrap();
        let text = ron::to_string(&cfg).unwrap();
        std::fs::write(reg.layout().online_config(), text).unwrap();
        let loaded = OnlineLearningConfig::load(&reg);
        match cfg.validate() {
            Err(e) => {
                prop_assert!(loaded.is_err(), "the file check let through: {e}");
                let again = retrain(&reg, &cfg, &NoProgress);
                prop_assert!(again.is_err());
                prop_assert!(!e.to_string().contains('\n'), "one line: {e}");
            }
            Ok(()) => {
                prop_assert!(loaded.is_ok(), "{:?}", loaded.err());
                // Ok or a clear error; a panic fails the test.
                let r = retrain(&reg, &cfg, &NoProgress);
                if std::env::var_os("SHOW_CASES").is_some() {
                    eprintln!("accepted settings: retrain {:?}", r.as_ref().map(|o| o.promoted).map_err(|e| e.to_string()));
                }
            }
        }
    }

    /// Training parameters of `spamscope train` and the app: any values end in a
    /// model or an error.
    #[test]
    fn any_training_parameters_train_or_are_refused(
        params in forest_params(),
        test_fraction in mostly(0.05..0.5f64, absurd_f64()),
        threshold in mostly(0.0..=1.0f64, absurd_f64()),
    ) {
        static DATA: OnceLock<spamscope::data::Dataset> = OnceLock::new();
        let data = DATA.get_or_init(|| default_dataset(SynthParams { rows: 1500, seed: 4 }));
        let cfg = TrainConfig { params, recipe: None, test_fraction, threshold };
        if let Ok(t) = train(data, None, &cfg, &NoProgress) {
            prop_assert!(t.metrics.roc_auc.is_finite());
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
