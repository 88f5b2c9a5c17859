//! Hyperparameter search (issue 24, part 3): random search over the forest's and
//! gradient boosting's parameters, each trial scored by stratified k-fold
//! cross-validated average precision (the class is rare, so ROC-AUC flatters every
//! model; ROC-AUC and F1 are reported beside it). Every trial uses the same folds, the
//! trials are drawn from the seed (the same seed gives the same trials and, the fits
//! being seeded, the same scores), and the search stops at its trial count or its time
//! budget, whichever comes first. The best trial's recipe can be trained and
//! registered like any compared model.

use crate::data::Dataset;
use crate::model::boosting::BoostParams;
use crate::model::forest::{ClassWeight, ForestParams, MaxFeatures};
use crate::model::recipe::{Candidate, ModelSpec, Recipe};
use crate::ops::compare::{CvRow, cross_validate};
use crate::ops::error::{Error, Result};
use crate::util::progress::{Prefixed, Reporter};
use crate::util::rng::SplitMix64;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Which model kinds the search draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Space {
    Forest,
    Boosting,
    /// Alternating trials of each.
    Both,
}

impl Space {
    pub fn parse(s: &str) -> Result<Space> {
        match s {
            "forest" => Ok(Space::Forest),
            "boosting" => Ok(Space::Boosting),
            "both" => Ok(Space::Both),
            other => Err(Error::Invalid(format!(
                "unknown search space {}: use forest, boosting or both",
                crate::util::text::quote(other)
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TuneConfig {
    pub space: Space,
    /// At most this many trials.
    pub trials: usize,
    /// Stop starting trials after this long (None: no limit).
    pub budget: Option<Duration>,
    /// Stratified folds per trial.
    pub folds: usize,
    pub seed: u64,
}

impl Default for TuneConfig {
    fn default() -> Self {
        TuneConfig {
            space: Space::Forest,
            trials: 20,
            budget: None,
            folds: 3,
            seed: 42,
        }
    }
}

/// One trial: what was fitted and how it did over the folds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// 1-based, in the order drawn.
    pub number: usize,
    pub recipe: Recipe,
    /// The recipe in one line.
    pub name: String,
    /// Every metric over the folds; None with the reason when a fold failed.
    pub cv: Option<CvRow>,
    pub error: Option<String>,
}

/// A finished (or budget-stopped) search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tuning {
    pub space: Space,
    pub folds: usize,
    pub seed: u64,
    pub data_label: String,
    pub trials: Vec<Trial>,
    /// Index into `trials` of the highest mean average precision.
    pub best: Option<usize>,
    /// Why it stopped: "trials" or "time budget".
    pub stopped_by: String,
    pub seconds: f64,
}

impl Tuning {
    pub fn best_trial(&self) -> Option<&Trial> {
        self.best.map(|i| &self.trials[i])
    }

    /// Indices of the trials by decreasing mean average precision (failed ones last).
    pub fn ranked(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.trials.len()).collect();
        order.sort_by(|&a, &b| ap_of(&self.trials[b]).total_cmp(&ap_of(&self.trials[a])));
        order
    }

    /// The trials table in Markdown, best first.
    pub fn markdown(&self) -> String {
        let order = self.ranked();
        let mut s = String::from(
            "| trial | model | average precision | ROC-AUC | F1 | fit s |\n|---:|---|---:|---:|---:|---:|\n",
        );
        for i in order {
            let t = &self.trials[i];
            match &t.cv {
                Some(c) => {
                    s += &format!(
                        "| {}{} | {} | {:.4} ± {:.4} | {:.4} ± {:.4} | {:.4} ± {:.4} | {:.2} |\n",
                        t.number,
                        if Some(i) == self.best { " (best)" } else { "" },
                        t.name,
                        c.average_precision.mean,
                        c.average_precision.std,
                        c.roc_auc.mean,
                        c.roc_auc.std,
                        c.f1.mean,
                        c.f1.std,
                        c.fit_seconds.mean
                    )
                }
                None => {
                    s += &format!(
                        "| {} | {} | failed: {} | | | |\n",
                        t.number,
                        t.name,
                        t.error.as_deref().unwrap_or("")
                    )
                }
            }
        }
        s
    }
}

fn ap_of(t: &Trial) -> f64 {
    t.cv.as_ref()
        .map_or(f64::NEG_INFINITY, |c| c.average_precision.mean)
}

/// The `n`-th trial's recipe of a search: drawn from its own stream of the seed, so
/// trial `n` is the same whatever the budget.
pub fn draw(space: Space, seed: u64, n: usize) -> Recipe {
    let mut rng = SplitMix64::for_task(seed, n as u64);
    let boosting = match space {
        Space::Forest => false,
        Space::Boosting => true,
        Space::Both => n % 2 == 1,
    };
    let pick = |rng: &mut SplitMix64, values: &[usize]| values[rng.below(values.len())];
    let spec = if boosting {
        // Log-uniform learning rate in [0.02, 0.3].
        let lr = (0.02f64.ln() + rng.next_f64() * (0.3f64.ln() - 0.02f64.ln())).exp();
        // Three decimals: a readable trial name.
        let lr = (lr * 1000.0).round() / 1000.0;
        ModelSpec::Boosted(BoostParams {
            iterations: pick(&mut rng, &[100, 200, 300, 500]),
            learning_rate: lr as f32,
            max_depth: pick(&mut rng, &[3, 4, 5, 6, 8, 10]),
            balanced: rng.below(2) == 0,
            seed,
        })
    } else {
        let depth = pick(&mut rng, &[8, 12, 16, 20, 25, 0]);
        ModelSpec::Forest(ForestParams {
            n_trees: pick(&mut rng, &[50, 100, 150, 200, 300]),
            max_depth: (depth > 0).then_some(depth),
            min_samples_split: pick(&mut rng, &[2, 5, 10, 20]),
            min_samples_leaf: pick(&mut rng, &[1, 2, 5, 10]),
            max_features: match rng.below(4) {
                0 => MaxFeatures::Sqrt,
                k => MaxFeatures::Count([4, 10, 16][k - 1]),
            },
            class_weight: if rng.below(4) == 0 {
                ClassWeight::None
            } else {
                ClassWeight::Balanced
            },
            seed,
            ..ForestParams::default()
        })
    };
    Recipe {
        spec,
        smote_k: None,
        seed,
    }
}

/// Runs the search on `data` (labelled): progress per trial and fold, cancellable.
pub fn tune(data: &Dataset, cfg: &TuneConfig, reporter: &dyn Reporter) -> Result<Tuning> {
    if cfg.trials == 0 || cfg.trials > 10_000 {
        return Err(Error::Invalid(format!(
            "trials must be between 1 and 10000, got {}",
            cfg.trials
        )));
    }
    if !(2..=20).contains(&cfg.folds) {
        return Err(Error::Invalid(format!(
            "folds must be between 2 and 20, got {}",
            cfg.folds
        )));
    }
    data.require_both_classes()?;
    let start = Instant::now();
    let mut trials = Vec::new();
    let mut stopped_by = "trials";
    for n in 1..=cfg.trials {
        if cfg.budget.is_some_and(|b| start.elapsed() >= b) {
            stopped_by = "time budget";
            break;
        }
        if reporter.cancelled() {
            return Err(Error::Cancelled);
        }
        let recipe = draw(cfg.space, cfg.seed, n);
        let name = recipe.describe_params();
        let candidate = Candidate::native(name.clone(), recipe.clone(), None);
        let prefix = format!("trial {n}/{}", cfg.trials);
        let cv = cross_validate(
            data,
            std::slice::from_ref(&candidate),
            cfg.folds,
            cfg.seed,
            &Prefixed {
                inner: reporter,
                prefix: &prefix,
            },
        )?;
        let (cv, error) = match (cv.rows.into_iter().next(), cv.failed.into_iter().next()) {
            (Some(row), _) => (Some(row), None),
            (None, Some((_, why))) => (None, Some(why)),
            (None, None) => (None, Some("no result".to_string())),
        };
        trials.push(Trial {
            number: n,
            recipe,
            name,
            cv,
            error,
        });
    }
    let best = (0..trials.len())
        .filter(|&i| trials[i].cv.is_some())
        .max_by(|&a, &b| {
            ap_of(&trials[a])
                .total_cmp(&ap_of(&trials[b]))
                // Ties: the earlier trial.
                .then(b.cmp(&a))
        });
    Ok(Tuning {
        space: cfg.space,
        folds: cfg.folds,
        seed: cfg.seed,
        data_label: data.source.describe(),
        trials,
        best,
        stopped_by: stopped_by.into(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Trains the best trial's recipe on `data` (a stratified holdout of `test_fraction`,
/// calibrated on it) and registers it as the active version.
pub fn promote_best(
    registry: &crate::store::Registry,
    data: &Dataset,
    tuning: &Tuning,
    test_fraction: f64,
    reporter: &dyn Reporter,
) -> Result<(crate::ops::train::Trained, crate::store::Manifest)> {
    let best = tuning
        .best_trial()
        .ok_or_else(|| Error::Invalid("no trial finished: there is nothing to promote".into()))?;
    let cfg = crate::ops::train::TrainConfig {
        params: match &best.recipe.spec {
            ModelSpec::Forest(p) => p.clone(),
            _ => ForestParams::default(),
        },
        recipe: Some(best.recipe.clone()),
        test_fraction,
        ..Default::default()
    };
    crate::ops::train::train_and_register(registry, data, None, &cfg, reporter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::{SynthParams, default_dataset};
    use crate::util::progress::NoProgress;

    #[test]
    fn trials_are_drawn_from_the_seed() {
        for space in [Space::Forest, Space::Boosting, Space::Both] {
            for n in 1..20 {
                let r = draw(space, 7, n);
                assert_eq!(r, draw(space, 7, n));
                r.validate().unwrap();
            }
        }
        assert_ne!(draw(Space::Forest, 7, 1), draw(Space::Forest, 8, 1));
        assert_ne!(draw(Space::Forest, 7, 1), draw(Space::Forest, 7, 2));
        assert!(matches!(
            draw(Space::Both, 7, 1).spec,
            ModelSpec::Boosted(_)
        ));
        assert!(matches!(draw(Space::Both, 7, 2).spec, ModelSpec::Forest(_)));
    }

    #[test]
    fn a_search_keeps_every_trial_and_finds_the_best_by_average_precision() {
        let data = default_dataset(SynthParams {
            rows: 3000,
            seed: 4,
        });
        let cfg = TuneConfig {
            space: Space::Forest,
            trials: 3,
            budget: None,
            folds: 3,
            seed: 11,
        };
        let t = tune(&data, &cfg, &NoProgress).unwrap();
        assert_eq!(t.trials.len(), 3);
        assert_eq!(t.stopped_by, "trials");
        let aps: Vec<f64> = t.trials.iter().map(ap_of).collect();
        let best = t.best.unwrap();
        assert!(aps.iter().all(|&a| a <= aps[best]));
        assert_eq!(
            t.trials[best]
                .cv
                .as_ref()
                .unwrap()
                .average_precision
                .folds
                .len(),
            3
        );
        assert!(t.markdown().contains("(best)"));
        // Reproducible: the same seed, the same trials and scores.
        let again = tune(&data, &cfg, &NoProgress).unwrap();
        assert_eq!(again.trials.iter().map(ap_of).collect::<Vec<_>>(), aps);
        // A spent time budget starts no trial.
        let none = tune(
            &data,
            &TuneConfig {
                budget: Some(Duration::ZERO),
                ..cfg.clone()
            },
            &NoProgress,
        )
        .unwrap();
        assert!(none.trials.is_empty() && none.best.is_none());
        assert_eq!(none.stopped_by, "time budget");
        for bad in [
            TuneConfig {
                trials: 0,
                ..cfg.clone()
            },
            TuneConfig {
                folds: 1,
                ..cfg.clone()
            },
        ] {
            assert!(matches!(
                tune(&data, &bad, &NoProgress),
                Err(Error::Invalid(_))
            ));
        }
    }
}
