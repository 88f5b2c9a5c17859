//! `spamscope train`: train a forest and register it.

use super::input::{load_data, registry, warn, with_threads};
use super::output::{importance_json, metrics_json, print_json, print_metrics};
use super::{ClassWeightArg, TrainArgs};
use serde_json::json;
use spamscope::data::Dataset;
use spamscope::model::forest::{ClassWeight, ForestParams};
use spamscope::ops::error::Result;
use spamscope::ops::train::{TrainConfig, train_and_register};
use spamscope::util::progress::StderrProgress;

/// `spamscope train`: trains, evaluates and registers a forest (the active version).
pub fn run(args: TrainArgs) -> Result<()> {
    let TrainArgs {
        data,
        test,
        test_fraction,
        trees,
        max_depth,
        min_samples_split,
        min_samples_leaf,
        class_weight,
        seed,
        threads,
        registry: reg,
        json,
    } = args;
    let cfg = TrainConfig {
        params: ForestParams {
            n_trees: trees,
            max_depth: (max_depth > 0).then_some(max_depth),
            min_samples_split,
            min_samples_leaf,
            class_weight: match class_weight {
                ClassWeightArg::Balanced => ClassWeight::Balanced,
                ClassWeightArg::None => ClassWeight::None,
            },
            seed,
            ..ForestParams::default()
        },
        recipe: None,
        test_fraction,
        threshold: 0.5,
    };
    cfg.params.validate()?;
    let registry = registry(reg)?;
    let d = load_data(&data)?;
    warn(&d);
    let test_d = match &test {
        Some(p) => {
            let t = Dataset::load_csv(p)?;
            warn(&t);
            Some(t)
        }
        None => None,
    };
    let progress = StderrProgress::new();
    let (trained, manifest) = with_threads(threads, || {
        train_and_register(&registry, &d, test_d.as_ref(), &cfg, &progress)
    })??;
    let m = &trained.metrics;
    if json {
        print_json(&json!({
            "version": manifest.version,
            "train_seconds": trained.train_seconds,
            "rows": trained.train_rows,
            "test_rows": trained.holdout.labels.len(),
            "model_bytes": manifest.model_file.bytes,
            "metrics": metrics_json(m),
            "importance": importance_json(trained.model.importance()),
        }));
    } else {
        println!(
            "version {} trained on {} rows in {:.1} s ({}, model file {:.1} MB)",
            manifest.version,
            trained.train_rows,
            trained.train_seconds,
            trained.model.describe(),
            manifest.model_file.bytes as f64 / 1e6
        );
        print_metrics(m);
    }
    super::input::log_to_mlflow(&registry);
    Ok(())
}
