//! What to fit: a model kind with its parameters, and optional SMOTE resampling of the
//! training rows. Stored in every version's manifest, so that retraining from feedback
//! fits the same kind of model as the active version.

use crate::data::resample::{SmoteParams, smote};
use crate::model::baselines::BaselineSpec;
use crate::model::boosting::BoostParams;
use crate::model::forest::{ClassWeight, ForestParams, MaxFeatures};
use crate::model::{BaselineFit, Estimate, Estimator, FitError};
use crate::util::progress::Reporter;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ModelSpec {
    /// Our random forest; also extra-trees (`random_splits`) and a single tree.
    Forest(ForestParams),
    /// smartcore baselines.
    Baseline(BaselineSpec),
    /// Histogram gradient boosting.
    Boosted(BoostParams),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub spec: ModelSpec,
    /// SMOTE with this many neighbours before fitting (spammers oversampled to as many
    /// rows as legitimate accounts).
    #[serde(default)]
    pub smote_k: Option<usize>,
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_seed() -> u64 {
    42
}

impl Recipe {
    pub fn forest(params: ForestParams) -> Recipe {
        Recipe {
            seed: params.seed,
            spec: ModelSpec::Forest(params),
            smote_k: None,
        }
    }

    /// One line for people: kind, size, imbalance handling.
    pub fn describe(&self) -> String {
        let kind = match &self.spec {
            ModelSpec::Forest(p) if p.n_trees == 1 => "decision tree".to_string(),
            ModelSpec::Forest(p) if p.random_splits => format!("extra-trees, {} trees", p.n_trees),
            ModelSpec::Forest(p) => format!("random forest, {} trees", p.n_trees),
            ModelSpec::Baseline(BaselineSpec::Logistic { .. }) => "logistic regression".into(),
            ModelSpec::Baseline(BaselineSpec::GaussianNb) => "Gaussian naive Bayes".into(),
            ModelSpec::Baseline(BaselineSpec::BernoulliNb { .. }) => "Bernoulli naive Bayes".into(),
            ModelSpec::Baseline(BaselineSpec::Knn { k, sample }) => {
                format!("KNN (k = {k}, {sample} sampled rows)")
            }
            ModelSpec::Baseline(BaselineSpec::Ridge { .. }) => "Ridge classifier".into(),
            ModelSpec::Baseline(BaselineSpec::Sgd { .. }) => "SGD classifier (hinge)".into(),
            ModelSpec::Boosted(p) => format!("gradient boosting ({})", p.describe()),
        };
        let weights = match &self.spec {
            ModelSpec::Forest(p) if p.class_weight == ClassWeight::Balanced => ", balanced weights",
            ModelSpec::Boosted(p) if p.balanced => ", balanced weights",
            ModelSpec::Baseline(BaselineSpec::Ridge { .. } | BaselineSpec::Sgd { .. }) => {
                ", balanced weights"
            }
            _ => "",
        };
        let smote = if self.smote_k.is_some() {
            ", SMOTE"
        } else {
            ""
        };
        format!("{kind}{weights}{smote}")
    }

    /// [`Recipe::describe`] with the parameters a search varies (a tuning trial's
    /// name).
    pub fn describe_params(&self) -> String {
        match &self.spec {
            ModelSpec::Forest(p) => format!(
                "{}; depth {}, split {}, leaf {}, features {}",
                self.describe(),
                p.max_depth
                    .map_or("unlimited".to_string(), |d| d.to_string()),
                p.min_samples_split,
                p.min_samples_leaf,
                match p.max_features {
                    MaxFeatures::Sqrt => "sqrt".to_string(),
                    MaxFeatures::All => "all".to_string(),
                    MaxFeatures::Count(k) => k.to_string(),
                }
            ),
            ModelSpec::Boosted(p) => format!(
                "{}{}",
                self.describe(),
                if p.balanced { "" } else { ", unweighted" }
            ),
            ModelSpec::Baseline(_) => self.describe(),
        }
    }

    pub fn validate(&self) -> Result<(), FitError> {
        match &self.spec {
            ModelSpec::Forest(p) => Estimate::validate(p)?,
            ModelSpec::Baseline(b) => Estimate::validate(&BaselineFit { spec: b, seed: 0 })?,
            ModelSpec::Boosted(p) => Estimate::validate(p)?,
        }
        if self.smote_k == Some(0) {
            return Err(FitError::Invalid("SMOTE needs at least 1 neighbour".into()));
        }
        Ok(())
    }

    /// Fits on imputed column-major features, 0/1 labels and optional row weights
    /// (SMOTE first when asked), through the model kind's [`Estimate`].
    pub fn fit(
        &self,
        columns: &[&[f64]],
        labels: &[u8],
        weights: Option<&[f64]>,
        reporter: &dyn Reporter,
    ) -> Result<Estimator, FitError> {
        self.validate()?;
        let resampled;
        let mut w_ext: Vec<f64> = Vec::new();
        let (columns, labels, weights): (Vec<&[f64]>, &[u8], Option<&[f64]>) = match self.smote_k {
            Some(k) => {
                reporter.stage("SMOTE", 0, 1);
                resampled = smote(
                    columns,
                    labels,
                    SmoteParams {
                        k,
                        ratio: 1.0,
                        seed: self.seed,
                    },
                )?;
                reporter.stage("SMOTE", 1, 1);
                if let Some(w) = weights {
                    w_ext = w.to_vec();
                    w_ext.resize(resampled.labels.len(), 1.0);
                }
                let w = weights.map(|_| w_ext.as_slice());
                (
                    resampled.columns.iter().map(Vec::as_slice).collect(),
                    &resampled.labels,
                    w,
                )
            }
            None => (columns.to_vec(), labels, weights),
        };
        reporter.check()?;
        Ok(match &self.spec {
            ModelSpec::Forest(p) => {
                Estimator::Forest(Estimate::fit(p, &columns, labels, weights, reporter)?)
            }
            ModelSpec::Boosted(p) => {
                Estimator::Boosted(Estimate::fit(p, &columns, labels, weights, reporter)?)
            }
            ModelSpec::Baseline(spec) => {
                let b = BaselineFit {
                    spec,
                    seed: self.seed,
                };
                Estimator::Baseline(b.fit(&columns, labels, weights, reporter)?)
            }
        })
    }
}

/// One entry of the model comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub name: String,
    pub recipe: Recipe,
    /// Shown beside the results (e.g. that KNN runs on a sample).
    pub note: Option<String>,
}

/// The reference report's comparison: our forest at 100 and 300 trees, extra-trees, a
/// single tree, gradient boosting, the smartcore baselines, and the forest (100 trees)
/// with balanced weights vs SMOTE vs no imbalance handling.
pub fn default_candidates(seed: u64) -> Vec<Candidate> {
    let forest = |n_trees: usize| ForestParams {
        n_trees,
        seed,
        ..ForestParams::default()
    };
    let c = |name: &str, spec: ModelSpec, smote_k: Option<usize>, note: Option<&str>| Candidate {
        name: name.into(),
        recipe: Recipe {
            spec,
            smote_k,
            seed,
        },
        note: note.map(str::to_string),
    };
    vec![
        c(
            "forest 300 trees",
            ModelSpec::Forest(forest(300)),
            None,
            Some("the reference model; balanced class weights"),
        ),
        c(
            "forest 100 trees",
            ModelSpec::Forest(forest(100)),
            None,
            Some("balanced class weights"),
        ),
        c(
            "forest 100 unweighted",
            ModelSpec::Forest(ForestParams {
                class_weight: ClassWeight::None,
                ..forest(100)
            }),
            None,
            Some("no class-imbalance handling"),
        ),
        c(
            "forest 100 + SMOTE",
            ModelSpec::Forest(ForestParams {
                class_weight: ClassWeight::None,
                ..forest(100)
            }),
            Some(5),
            Some("SMOTE k = 5 to 1:1, no class weights"),
        ),
        c(
            "extra-trees 300",
            ModelSpec::Forest(ForestParams {
                random_splits: true,
                bootstrap: false,
                ..forest(300)
            }),
            None,
            Some("random thresholds, no bootstrap, balanced"),
        ),
        c(
            "decision tree",
            ModelSpec::Forest(ForestParams {
                n_trees: 1,
                bootstrap: false,
                max_features: MaxFeatures::All,
                ..forest(1)
            }),
            None,
            Some("depth 20, all features, balanced"),
        ),
        c(
            "gradient boosting",
            ModelSpec::Boosted(BoostParams::default()),
            None,
            None,
        ),
        c(
            "logistic regression",
            ModelSpec::Baseline(BaselineSpec::Logistic { alpha: 1.0 }),
            None,
            Some("smartcore, standardised features, L2 alpha 1"),
        ),
        c(
            "Gaussian naive Bayes",
            ModelSpec::Baseline(BaselineSpec::GaussianNb),
            None,
            Some(
                "fitted by spamscope: smartcore's fit is quadratic in rows; same estimates as smartcore's and scikit-learn's",
            ),
        ),
        c(
            "Bernoulli naive Bayes",
            ModelSpec::Baseline(BaselineSpec::BernoulliNb { binarize: 0.0 }),
            None,
            Some("smartcore, features binarised at > 0"),
        ),
        c(
            "KNN (k = 5)",
            ModelSpec::Baseline(BaselineSpec::Knn {
                k: 5,
                sample: KNN_SAMPLE,
            }),
            None,
            Some(KNN_NOTE),
        ),
        c(
            "KNN (k = 10)",
            ModelSpec::Baseline(BaselineSpec::Knn {
                k: 10,
                sample: KNN_SAMPLE,
            }),
            None,
            Some(KNN_NOTE),
        ),
        c(
            "Ridge classifier",
            ModelSpec::Baseline(BaselineSpec::Ridge { alpha: 1.0 }),
            None,
            Some(
                "fitted by spamscope (least squares on ±1 targets, standardised features, alpha 1, balanced weights); score = logistic of the decision value",
            ),
        ),
        c(
            "SGD classifier",
            ModelSpec::Baseline(BaselineSpec::Sgd {
                alpha: 1e-4,
                epochs: 50,
            }),
            None,
            Some(
                "fitted by spamscope (hinge loss, L2 alpha 1e-4, optimal learning rate, standardised features, balanced weights); score = logistic of the decision value",
            ),
        ),
    ]
}

/// Training rows KNN keeps: every test account is compared with each of them, so the
/// full training set (367k rows) would take hours to score.
pub const KNN_SAMPLE: usize = 20_000;
const KNN_NOTE: &str = "smartcore cover tree; fitted on a stratified sample of 20,000 training rows (scoring against all rows is too slow)";
