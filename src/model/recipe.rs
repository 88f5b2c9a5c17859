//! What to fit: a model kind with its parameters, and optional SMOTE resampling of the
//! training rows. Stored in every version's manifest, so that retraining from feedback
//! fits the same kind of model as the active version.

use crate::data::resample::{SmoteParams, smote};
use crate::model::baselines::BaselineSpec;
use crate::model::boosting::BoostParams;
use crate::model::ensemble::Combine;
use crate::model::forest::{ClassWeight, ForestParams, MaxFeatures};
use crate::model::{BaselineFit, Ensemble, Estimate, Estimator, FitError};
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
    /// scikit-learn's `BaggingClassifier` of a forest: `estimators` forests, each fitted
    /// on its own bootstrap sample of the rows (drawn as row counts from the recipe's
    /// seed), averaged. The result is one forest of all their trees (equal tree counts,
    /// so the mean over trees is the mean of the forests), explained exactly by
    /// TreeSHAP.
    Bagged {
        forest: ForestParams,
        estimators: usize,
    },
    /// scikit-learn's `VotingClassifier`: each member fitted on the same rows, their
    /// probabilities averaged (soft) or their decisions counted (`hard`; see
    /// [`crate::model::ensemble::Combine`]). Members are plain models, not ensembles.
    Voting {
        members: Vec<ModelSpec>,
        #[serde(default)]
        hard: bool,
    },
    /// scikit-learn's `StackingClassifier`: a balanced logistic regression over the
    /// members' probabilities, fitted on their out-of-fold predictions over `folds`
    /// stratified folds; the members are then fitted on all the rows.
    Stacking {
        members: Vec<ModelSpec>,
        folds: usize,
    },
    /// LightGBM fitted by the library itself (cargo feature `lightgbm`) and kept as
    /// spamscope's boosted trees (see [`crate::model::lgbm`]).
    LightGbm(crate::model::lgbm::LgbmParams),
    /// XGBoost fitted by the library itself (cargo feature `xgboost`) and kept as
    /// spamscope's boosted trees (see [`crate::model::xgboost`]).
    XGBoost(crate::model::xgboost::XgbParams),
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
            ModelSpec::Baseline(BaselineSpec::AdaBoost { estimators, .. }) => {
                format!("AdaBoost (SAMME), {estimators} stumps")
            }
            ModelSpec::Baseline(BaselineSpec::Mlp { hidden, .. }) => {
                format!("neural network (MLP {}-{})", hidden[0], hidden[1])
            }
            ModelSpec::Boosted(p) => format!("gradient boosting ({})", p.describe()),
            ModelSpec::Bagged { forest, estimators } => format!(
                "bagging of {estimators} random forests, {} trees each",
                forest.n_trees
            ),
            ModelSpec::LightGbm(p) => format!(
                "LightGBM, {} rounds, {} leaves, learning rate {}",
                p.iterations, p.num_leaves, p.learning_rate
            ),
            ModelSpec::XGBoost(p) => format!(
                "XGBoost, {} rounds, depth {}, learning rate {}",
                p.iterations, p.max_depth, p.learning_rate
            ),
            ModelSpec::Voting { members, hard } => format!(
                "{} vote of {}",
                if *hard { "hard" } else { "soft" },
                self.describe_members(members)
            ),
            ModelSpec::Stacking { members, folds } => format!(
                "stacking ({folds}-fold, balanced logistic regression) of {}",
                self.describe_members(members)
            ),
        };
        let weights = match &self.spec {
            ModelSpec::Forest(p) if p.class_weight == ClassWeight::Balanced => ", balanced weights",
            ModelSpec::Bagged { forest, .. } if forest.class_weight == ClassWeight::Balanced => {
                ", balanced weights"
            }
            ModelSpec::Boosted(p) if p.balanced => ", balanced weights",
            ModelSpec::LightGbm(p) if p.balanced => ", balanced weights",
            ModelSpec::XGBoost(_) => ", spammers weighted",
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
            ModelSpec::Baseline(_)
            | ModelSpec::Bagged { .. }
            | ModelSpec::Voting { .. }
            | ModelSpec::Stacking { .. }
            | ModelSpec::XGBoost(_)
            | ModelSpec::LightGbm(_) => self.describe(),
        }
    }

    pub fn validate(&self) -> Result<(), FitError> {
        match &self.spec {
            ModelSpec::Forest(p) => Estimate::validate(p)?,
            ModelSpec::Baseline(b) => Estimate::validate(&BaselineFit { spec: b, seed: 0 })?,
            ModelSpec::Boosted(p) => Estimate::validate(p)?,
            ModelSpec::Bagged { forest, estimators } => {
                Estimate::validate(forest)?;
                if !(1..=100).contains(estimators) {
                    return Err(FitError::Invalid(format!(
                        "bagging needs 1 to 100 estimators, got {estimators}"
                    )));
                }
            }
            ModelSpec::LightGbm(p) => p.validate().map_err(FitError::Invalid)?,
            ModelSpec::XGBoost(p) => p.validate().map_err(FitError::Invalid)?,
            ModelSpec::Voting { members, .. } | ModelSpec::Stacking { members, .. } => {
                if !(2..=crate::model::MAX_MEMBERS).contains(&members.len()) {
                    return Err(FitError::Invalid(format!(
                        "an ensemble needs 2 to {} members, got {}",
                        crate::model::MAX_MEMBERS,
                        members.len()
                    )));
                }
                if let ModelSpec::Stacking { folds, .. } = &self.spec
                    && !(2..=20).contains(folds)
                {
                    return Err(FitError::Invalid(format!(
                        "stacking needs 2 to 20 folds, got {folds}"
                    )));
                }
                for m in members {
                    if matches!(m, ModelSpec::Voting { .. } | ModelSpec::Stacking { .. }) {
                        return Err(FitError::Invalid(
                            "an ensemble cannot have an ensemble as a member".into(),
                        ));
                    }
                    Recipe {
                        spec: m.clone(),
                        smote_k: None,
                        seed: self.seed,
                    }
                    .validate()?;
                }
            }
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
            ModelSpec::Bagged { forest, estimators } => Estimator::Forest(bag(
                forest,
                *estimators,
                self.seed,
                (&columns, labels, weights),
                reporter,
            )?),
            ModelSpec::Baseline(spec) => {
                let b = BaselineFit {
                    spec,
                    seed: self.seed,
                };
                Estimator::Baseline(b.fit(&columns, labels, weights, reporter)?)
            }
            #[cfg(feature = "lightgbm")]
            ModelSpec::LightGbm(p) => Estimator::Boosted(crate::model::lgbm::fit(
                p, &columns, labels, weights, reporter,
            )?),
            #[cfg(not(feature = "lightgbm"))]
            ModelSpec::LightGbm(_) => {
                return Err(FitError::Invalid(crate::model::lgbm::NOT_BUILT.into()));
            }
            #[cfg(feature = "xgboost")]
            ModelSpec::XGBoost(p) => Estimator::Boosted(crate::model::xgboost::fit(
                p, &columns, labels, weights, reporter,
            )?),
            #[cfg(not(feature = "xgboost"))]
            ModelSpec::XGBoost(_) => {
                return Err(FitError::Invalid(crate::model::xgboost::NOT_BUILT.into()));
            }
            ModelSpec::Voting { members, hard } => {
                let fitted =
                    self.fit_members(members, (&columns, labels, weights), "", reporter)?;
                let combine = if *hard { Combine::Hard } else { Combine::Soft };
                Estimator::Ensemble(Ensemble::new(fitted, combine))
            }
            ModelSpec::Stacking { members, folds } => {
                self.fit_stacking(members, *folds, (&columns, labels, weights), reporter)?
            }
        })
    }

    fn describe_members(&self, members: &[ModelSpec]) -> String {
        members
            .iter()
            .map(|m| self.member(m).describe())
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A member's recipe: its model with the ensemble's seed, no resampling.
    fn member(&self, spec: &ModelSpec) -> Recipe {
        Recipe {
            spec: spec.clone(),
            smote_k: None,
            seed: self.seed,
        }
    }

    /// Each member fitted on the rows, one after the other (progress says which).
    fn fit_members(
        &self,
        members: &[ModelSpec],
        (columns, labels, weights): (&[&[f64]], &[u8], Option<&[f64]>),
        stage: &str,
        reporter: &dyn Reporter,
    ) -> Result<Vec<Estimator>, FitError> {
        let mut fitted = Vec::with_capacity(members.len());
        for (k, m) in members.iter().enumerate() {
            let prefix = format!("{stage}member {}/{}", k + 1, members.len());
            fitted.push(self.member(m).fit(
                columns,
                labels,
                weights,
                &crate::util::progress::Prefixed {
                    inner: reporter,
                    prefix: &prefix,
                },
            )?);
        }
        Ok(fitted)
    }

    /// scikit-learn's `StackingClassifier(cv=folds)`: each member fitted on all but one
    /// stratified fold and scoring that fold gives every row an out-of-fold probability
    /// per member; the balanced logistic regression is fitted on those; then the members
    /// are fitted on all the rows.
    fn fit_stacking(
        &self,
        members: &[ModelSpec],
        folds: usize,
        (columns, labels, weights): (&[&[f64]], &[u8], Option<&[f64]>),
        reporter: &dyn Reporter,
    ) -> Result<Estimator, FitError> {
        let parts = crate::data::preprocess::stratified_folds(labels, folds, self.seed)
            .map_err(|e| FitError::Invalid(format!("stacking: {e}")))?;
        let n = labels.len();
        let mut oof = vec![vec![0.0; n]; members.len()];
        let mut in_test = vec![false; n];
        for (k, test) in parts.iter().enumerate() {
            in_test.iter_mut().for_each(|t| *t = false);
            test.iter().for_each(|&i| in_test[i] = true);
            let train: Vec<usize> = (0..n).filter(|&i| !in_test[i]).collect();
            let cols: Vec<Vec<f64>> = columns
                .iter()
                .map(|c| train.iter().map(|&i| c[i]).collect())
                .collect();
            let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
            let y: Vec<u8> = train.iter().map(|&i| labels[i]).collect();
            let w: Option<Vec<f64>> = weights.map(|w| train.iter().map(|&i| w[i]).collect());
            drop(train);
            let fitted = self.fit_members(
                members,
                (&refs, &y, w.as_deref()),
                &format!("fold {}/{folds}: ", k + 1),
                reporter,
            )?;
            drop(cols);
            let rows: Vec<f64> = test
                .iter()
                .flat_map(|&i| columns.iter().map(move |c| c[i]))
                .collect();
            for (m, est) in fitted.iter().enumerate() {
                for (&i, p) in test.iter().zip(est.predict_rows(&rows)) {
                    oof[m][i] = p;
                }
            }
        }
        reporter.check()?;
        let (weights_, intercept) =
            crate::model::ensemble::fit_stacker(&oof, labels).map_err(FitError::Invalid)?;
        let fitted =
            self.fit_members(members, (columns, labels, weights), "all rows: ", reporter)?;
        Ok(Estimator::Ensemble(Ensemble::new(
            fitted,
            Combine::Stacked {
                weights: weights_,
                intercept,
            },
        )))
    }
}

/// Fits `estimators` forests, each on a bootstrap sample of the rows (row counts as
/// weights, times the given weights), and joins their trees into one forest.
fn bag(
    params: &ForestParams,
    estimators: usize,
    seed: u64,
    (columns, labels, weights): (&[&[f64]], &[u8], Option<&[f64]>),
    reporter: &dyn Reporter,
) -> Result<crate::model::forest::Forest, FitError> {
    let n = labels.len();
    let mut trees = Vec::new();
    let mut importance = vec![0.0; columns.len()];
    for k in 0..estimators {
        reporter.check()?;
        let mut rng =
            crate::util::rng::SplitMix64::for_task(seed ^ 0x6261_6767_696e_6721, k as u64);
        let mut w = vec![0.0; n];
        for _ in 0..n {
            w[rng.below(n)] += 1.0;
        }
        if let Some(given) = weights {
            w.iter_mut().zip(given).for_each(|(a, b)| *a *= b);
        }
        let p = ForestParams {
            seed: params.seed.wrapping_add(k as u64),
            ..params.clone()
        };
        let prefix = format!("bag {}/{estimators}", k + 1);
        let f = Estimate::fit(
            &p,
            columns,
            labels,
            Some(&w),
            &crate::util::progress::Prefixed {
                inner: reporter,
                prefix: &prefix,
            },
        )?;
        for (a, b) in importance.iter_mut().zip(&f.importance) {
            *a += b / estimators as f64;
        }
        trees.extend(f.trees);
    }
    Ok(crate::model::forest::Forest {
        n_features: columns.len(),
        trees,
        importance,
    })
}

/// One entry of the model comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub name: String,
    pub kind: CandidateKind,
    /// Shown beside the results (e.g. that KNN runs on a sample).
    pub note: Option<String>,
}

/// Who fits a comparison row.
#[derive(Debug, Clone, PartialEq)]
pub enum CandidateKind {
    /// spamscope fits it by this recipe: it can be promoted, explained and retrained.
    Native(Recipe),
    /// A row of the reference's table that spamscope cannot fit itself: run by the
    /// named Python library in the bench's environment on the same split, shown as
    /// "peer — not promotable" (or as not run, with the reason, where that environment
    /// or library is missing).
    Peer { library: &'static str },
}

impl Candidate {
    /// A natively fitted row.
    pub fn native(name: impl Into<String>, recipe: Recipe, note: Option<String>) -> Candidate {
        Candidate {
            name: name.into(),
            kind: CandidateKind::Native(recipe),
            note,
        }
    }

    /// The recipe of a native row; None for a peer row.
    pub fn recipe(&self) -> Option<&Recipe> {
        match &self.kind {
            CandidateKind::Native(r) => Some(r),
            CandidateKind::Peer { .. } => None,
        }
    }

    /// The Python library running a peer row.
    pub fn peer_library(&self) -> Option<&'static str> {
        match self.kind {
            CandidateKind::Peer { library } => Some(library),
            CandidateKind::Native(_) => None,
        }
    }
}

/// The reference report's comparison, all of its rows: our forest at 100 and 300
/// trees, extra-trees, a single tree, gradient boosting, the baselines, the forest (100
/// trees) with balanced weights vs SMOTE vs no imbalance handling, the ensembles, and
/// the rows run by their own libraries in Python (peers).
pub fn default_candidates(seed: u64) -> Vec<Candidate> {
    let forest = |n_trees: usize| ForestParams {
        n_trees,
        seed,
        ..ForestParams::default()
    };
    let xgboost = ModelSpec::XGBoost(crate::model::xgboost::XgbParams {
        seed,
        ..Default::default()
    });
    // The reference's hard vote and stacking: forest, gradient boosting, XGBoost.
    let on_xgboost = vec![
        ModelSpec::Forest(forest(100)),
        ModelSpec::Boosted(BoostParams::default()),
        xgboost.clone(),
    ];
    let c = |name: &str, spec: ModelSpec, smote_k: Option<usize>, note: Option<&str>| {
        Candidate::native(
            name,
            Recipe {
                spec,
                smote_k,
                seed,
            },
            note.map(str::to_string),
        )
    };
    let peer = |name: &str, library: &'static str, note: &str| Candidate {
        name: name.into(),
        kind: CandidateKind::Peer { library },
        note: Some(note.into()),
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
            "Bagging (10 forests of 100)",
            ModelSpec::Bagged {
                forest: forest(100),
                estimators: 10,
            },
            None,
            Some(
                "scikit-learn's BaggingClassifier defaults (10 estimators, bootstrap) of the 100-tree balanced forest; one forest of 1,000 trees, explained by TreeSHAP",
            ),
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
        c(
            "AdaBoost",
            ModelSpec::Baseline(BaselineSpec::AdaBoost {
                estimators: 50,
                learning_rate: 1.0,
            }),
            None,
            Some(
                "fitted by spamscope: scikit-learn's defaults (SAMME, 50 decision stumps, learning rate 1, no class weights); stumps split between quantile bins; exact log-odds terms",
            ),
        ),
        c(
            "Voting (soft)",
            ModelSpec::Voting {
                members: vec![
                    ModelSpec::Forest(forest(100)),
                    ModelSpec::Boosted(BoostParams::default()),
                    ModelSpec::Baseline(BaselineSpec::Logistic { alpha: 1.0 }),
                ],
                hard: false,
            },
            None,
            Some(
                "scikit-learn's VotingClassifier(voting=\"soft\"): the mean probability of the 100-tree balanced forest, gradient boosting and logistic regression, as fitted above; explained by the mean of their explanations (exact)",
            ),
        ),
        if cfg!(feature = "xgboost") {
            c(
                "Voting (hard)",
                ModelSpec::Voting {
                    members: on_xgboost.clone(),
                    hard: true,
                },
                None,
                Some(
                    "scikit-learn's VotingClassifier(voting=\"hard\") of the 100-tree balanced forest, gradient boosting and XGBoost: score = share of members voting spammer; explained by the mean of their explanations (which do not add up to the vote)",
                ),
            )
        } else {
            peer(
                "Voting (hard)",
                "xgboost",
                "scikit-learn's VotingClassifier(voting=\"hard\") of the 100-tree balanced forest, gradient boosting and XGBoost; score = share of members voting spammer (this build has no xgboost feature)",
            )
        },
        if cfg!(feature = "xgboost") {
            c(
                "Stacking",
                ModelSpec::Stacking {
                    members: on_xgboost,
                    folds: 5,
                },
                None,
                Some(
                    "scikit-learn's StackingClassifier of the 100-tree balanced forest, gradient boosting and XGBoost: balanced logistic regression on 5-fold out-of-fold probabilities; explained by the members' explanations weighted by it (exact log-odds terms)",
                ),
            )
        } else {
            peer(
                "Stacking",
                "xgboost",
                "scikit-learn's StackingClassifier of the 100-tree balanced forest, gradient boosting and XGBoost; balanced logistic regression on 5-fold out-of-fold probabilities (this build has no xgboost feature)",
            )
        },
        c(
            "Neural network (MLP 100-50)",
            ModelSpec::Baseline(BaselineSpec::Mlp {
                hidden: [100, 50],
                alpha: 1e-4,
                max_epochs: 200,
            }),
            None,
            Some(
                "fitted by spamscope: scikit-learn's MLPClassifier defaults (ReLU layers of 100 and 50, Adam, batches of 200, alpha 1e-4, stops when the loss stalls, at most 200 epochs), standardised inputs, no class weights; explained by occlusion (approximate)",
            ),
        ),
        if cfg!(feature = "xgboost") {
            c(
                "XGBoost",
                xgboost,
                None,
                Some(
                    "fitted by XGBoost itself (the xgboost feature), XGBClassifier's defaults with scale_pos_weight 36; kept as spamscope's boosted trees: exact TreeSHAP on the log-odds",
                ),
            )
        } else {
            peer(
                "XGBoost",
                "xgboost",
                "XGBoost's XGBClassifier, scale_pos_weight 36, hist trees (this build has no xgboost feature)",
            )
        },
        if cfg!(feature = "lightgbm") {
            c(
                "LightGBM",
                ModelSpec::LightGbm(crate::model::lgbm::LgbmParams {
                    seed,
                    ..Default::default()
                }),
                None,
                Some(
                    "fitted by LightGBM itself (the lightgbm feature), LGBMClassifier's defaults with balanced class weights; kept as spamscope's boosted trees: exact TreeSHAP on the log-odds",
                ),
            )
        } else {
            peer(
                "LightGBM",
                "lightgbm",
                "LightGBM's LGBMClassifier, balanced class weights (this build has no lightgbm feature)",
            )
        },
        peer(
            "CatBoost",
            "catboost",
            "CatBoost's CatBoostClassifier, class weights 1:36",
        ),
    ]
}

/// Training rows KNN keeps: every test account is compared with each of them, so the
/// full training set (367k rows) would take hours to score.
pub const KNN_SAMPLE: usize = 20_000;
const KNN_NOTE: &str = "smartcore cover tree; fitted on a stratified sample of 20,000 training rows (scoring against all rows is too slow)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::preprocess::Imputer;
    use crate::data::synth::{SynthParams, default_dataset};
    use crate::util::progress::NoProgress;

    #[test]
    fn bagging_joins_forests_fitted_on_their_own_bootstrap_samples() {
        let d = default_dataset(SynthParams {
            rows: 2000,
            seed: 2,
        });
        let idx: Vec<usize> = (0..d.n_rows()).collect();
        let cols = Imputer::fit(&d.columns, &idx).transform_columns(&d.columns, &idx);
        let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        let y = d.labels.as_ref().unwrap();
        let forest = ForestParams {
            n_trees: 4,
            max_depth: Some(6),
            ..ForestParams::default()
        };
        let recipe = |estimators| Recipe {
            spec: ModelSpec::Bagged {
                forest: forest.clone(),
                estimators,
            },
            smote_k: None,
            seed: 5,
        };
        let fit = |r: &Recipe| match r.fit(&refs, y, None, &NoProgress).unwrap() {
            Estimator::Forest(f) => f,
            other => panic!("{other:?}"),
        };
        let bagged = fit(&recipe(3));
        assert_eq!(bagged.trees.len(), 12);
        assert!((bagged.importance.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(bagged, fit(&recipe(3)), "seeded");
        // The first bag's trees are not a plain forest's: their rows were resampled.
        let plain = fit(&Recipe::forest(ForestParams {
            seed: forest.seed,
            ..forest.clone()
        }));
        assert_ne!(bagged.trees[..4], plain.trees[..]);
        assert_eq!(
            bagged.trees[..4],
            fit(&recipe(1)).trees[..],
            "bag 1 is bag 1"
        );
        assert!(recipe(0).validate().is_err() && recipe(101).validate().is_err());
        assert_eq!(
            recipe(10).describe(),
            "bagging of 10 random forests, 4 trees each, balanced weights"
        );
    }
}
