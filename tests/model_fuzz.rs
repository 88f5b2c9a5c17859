//! The model decoders against random and mutated bytes: every input is a clear error or
//! a valid model that scores and explains, never a panic, abort or runaway allocation.
//! `FUZZ_CASES=N` runs longer (default 1500 per property).

use proptest::prelude::*;
use spamscope::data::Dataset;
use spamscope::data::catalog::N_FEATURES;
use spamscope::data::synth::{SynthParams, default_dataset};
use spamscope::model::Model;
use spamscope::model::baselines::BaselineSpec;
use spamscope::model::boosting::BoostParams;
use spamscope::model::explain::Method;
use spamscope::model::forest::ForestParams;
use spamscope::model::recipe::{ModelSpec, Recipe};
use spamscope::ops::train::{TrainConfig, train};
use spamscope::util::progress::NoProgress;
use std::sync::OnceLock;

fn data() -> &'static Dataset {
    static D: OnceLock<Dataset> = OnceLock::new();
    D.get_or_init(|| {
        default_dataset(SynthParams {
            rows: 1200,
            seed: 8,
        })
    })
}

/// The file bytes of a small model of each kind: forest, logistic regression, KNN,
/// gradient boosting.
fn valid_files() -> &'static [Vec<u8>] {
    static F: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    F.get_or_init(|| {
        let forest = ForestParams {
            n_trees: 3,
            max_depth: Some(5),
            ..Default::default()
        };
        let specs = [
            ModelSpec::Forest(forest.clone()),
            ModelSpec::Baseline(BaselineSpec::Logistic { alpha: 1.0 }),
            ModelSpec::Baseline(BaselineSpec::Knn { k: 3, sample: 50 }),
            ModelSpec::Boosted(BoostParams {
                iterations: 3,
                ..Default::default()
            }),
        ];
        specs
            .into_iter()
            .map(|spec| {
                let cfg = TrainConfig {
                    params: forest.clone(),
                    recipe: Some(Recipe {
                        spec,
                        smote_k: None,
                        seed: 1,
                    }),
                    ..Default::default()
                };
                train(data(), None, &cfg, &NoProgress)
                    .unwrap()
                    .model
                    .to_bytes()
            })
            .collect()
    })
}

/// Decodes; a model that loads must also score (a finite probability in [0, 1], never
/// NaN) and explain every way; one that does not load says why in one line.
fn decode_and_use(bytes: &[u8]) {
    match Model::from_bytes(bytes) {
        Ok(m) => {
            for row in 0..3 {
                let x = data().row(row);
                let p = m.predict_one(&x);
                assert!(
                    p.is_finite() && (0.0..=1.0).contains(&p),
                    "a loaded model answered probability {p} for row {row}"
                );
                for method in [Method::TreeShap, Method::PathAttribution] {
                    let e = m.explain_one(&x, method);
                    assert_eq!(e.contributions.len(), N_FEATURES);
                }
            }
        }
        Err(e) => {
            let e = e.to_string();
            assert!(!e.is_empty() && !e.contains('\n'), "one line: {e:?}");
        }
    }
}

/// Which valid files to mutate (`FUZZ_KIND=N` picks one, to chase a finding).
fn kinds() -> std::ops::Range<usize> {
    match std::env::var("FUZZ_KIND")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(k) if k < 4 => k..k + 1,
        _ => 0..4,
    }
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Random bytes behind each magic header (and none).
    #[test]
    fn random_bytes_are_refused_or_a_model(
        magic in prop_oneof![
            Just(b"SPSCRF01".to_vec()),
            Just(b"SPSCBL01".to_vec()),
            Just(b"SPSCGB01".to_vec()),
            Just(Vec::new()),
        ],
        body in prop::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut bytes = magic;
        bytes.extend(body);
        decode_and_use(&bytes);
    }

    /// A valid model file of each kind with bytes flipped, inserted, removed or cut.
    #[test]
    fn mutated_model_files_are_refused_or_a_model(
        kind in kinds(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..4u8), 1..8),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = valid_files()[kind].clone();
        for (at, byte, how) in edits {
            let i = at.index(bytes.len().max(1)).min(bytes.len().saturating_sub(1));
            match how {
                0 if !bytes.is_empty() => bytes[i] = byte,
                1 if !bytes.is_empty() => bytes[i] ^= 1 << (byte % 8),
                2 => bytes.insert(i, byte),
                _ if !bytes.is_empty() => { bytes.remove(i); }
                _ => {}
            }
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len() + 1));
        }
        decode_and_use(&bytes);
    }
}

#[test]
fn the_valid_files_load() {
    for bytes in valid_files() {
        let m = Model::from_bytes(bytes).unwrap();
        assert!(m.predict_one(&data().row(0)).is_finite());
    }
}
