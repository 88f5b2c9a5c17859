//! The model comparison (the reference report's table): every candidate is trained and
//! evaluated on the same stratified split, with the same imputation.

use crate::data::Dataset;
use crate::eval::metrics::{Metrics, RocPoint, roc_curve, thin};
use crate::model::recipe::{Candidate, CandidateKind};
use crate::ops::error::Result;
use crate::ops::python::PeerSplit;
use crate::ops::train::{Prepared, TrainConfig, Trained, prepare};
use crate::store::{Document, Registry};
use crate::util::progress::{Prefixed, Reporter};
use serde::{Deserialize, Serialize};

/// One candidate's outcome.
pub struct Outcome {
    pub name: String,
    pub note: Option<String>,
    /// A peer row: the Python library that ran it ("xgboost 3.2.0"; the library's
    /// name alone when it did not run). Peer rows cannot be promoted.
    pub peer: Option<String>,
    /// The candidate's scores, or why it failed to train.
    pub result: std::result::Result<Scored, crate::Error>,
}

/// A candidate that trained: its holdout metrics at 0.5, fit time, ROC curve, and the
/// trained model (kept so it can be promoted into the registry).
pub struct Scored {
    pub metrics: Metrics,
    pub fit_seconds: f64,
    /// ROC curve thinned to about 400 points (for plots).
    pub roc: Vec<RocPoint>,
    pub trained: Option<Trained>,
}

pub struct Comparison {
    pub outcomes: Vec<Outcome>,
    pub train_rows: usize,
    pub test_rows: usize,
    pub test_positives: usize,
    /// Where the data came from (shown with the table).
    pub data_label: String,
}

/// A row of the machine-readable table (`spamscope compare --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub roc_auc: f64,
    pub average_precision: f64,
    pub fit_seconds: f64,
    /// A peer row's library ("xgboost 3.2.0"): run in Python, not promotable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

/// How a peer row is marked wherever the table is shown.
pub const PEER_MARK: &str = "peer — not promotable";

impl Row {
    /// The row of a model that trained (or ran in Python: `peer`).
    pub fn of(name: &str, s: &Scored, peer: Option<String>) -> Row {
        let m = &s.metrics;
        Row {
            name: name.to_string(),
            accuracy: m.accuracy,
            precision: m.precision,
            recall: m.recall,
            f1: m.f1,
            roc_auc: m.roc_auc,
            average_precision: m.average_precision,
            fit_seconds: s.fit_seconds,
            peer,
        }
    }
}

impl Comparison {
    /// Rows of the models that trained, in candidate order.
    pub fn rows(&self) -> Vec<Row> {
        self.outcomes
            .iter()
            .filter_map(|o| Some(Row::of(&o.name, o.result.as_ref().ok()?, o.peer.clone())))
            .collect()
    }

    fn best_by(&self, key: impl Fn(&Metrics) -> f64) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for (i, o) in self.outcomes.iter().enumerate() {
            if let Ok(s) = &o.result {
                let v = key(&s.metrics);
                if v.is_finite() && best.is_none_or(|(_, b)| v > b) {
                    best = Some((i, v));
                }
            }
        }
        best.map(|(i, _)| i)
    }

    /// Index of the outcome with the highest F1 at 0.5 (first on ties).
    pub fn best_f1(&self) -> Option<usize> {
        self.best_by(|m| m.f1)
    }

    /// Index of the outcome with the highest ROC-AUC (first on ties).
    pub fn best_auc(&self) -> Option<usize> {
        self.best_by(|m| m.roc_auc)
    }

    /// The table as Markdown (used by the report and `spamscope compare`).
    pub fn markdown(&self) -> String {
        let (bf, ba) = (self.best_f1(), self.best_auc());
        let mut s = String::from(
            "| model | accuracy | precision | recall | F1 | ROC-AUC | avg precision | fit s | notes |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
        );
        for (i, o) in self.outcomes.iter().enumerate() {
            let mut marks = Vec::new();
            if bf == Some(i) {
                marks.push("best F1");
            }
            if ba == Some(i) {
                marks.push("best AUC");
            }
            let note = match &o.peer {
                Some(lib) => format!(
                    "{PEER_MARK} ({lib} in Python){}{}",
                    if o.note.is_some() { "; " } else { "" },
                    o.note.clone().unwrap_or_default()
                ),
                None => o.note.clone().unwrap_or_default(),
            };
            match &o.result {
                Ok(r) => {
                    let m = &r.metrics;
                    let name = if marks.is_empty() {
                        o.name.clone()
                    } else {
                        format!("**{}** ({})", o.name, marks.join(", "))
                    };
                    s += &format!(
                        "| {name} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.1} | {note} |\n",
                        m.accuracy,
                        m.precision,
                        m.recall,
                        m.f1,
                        m.roc_auc,
                        m.average_precision,
                        r.fit_seconds
                    );
                }
                Err(e) => s += &format!("| {} | failed: {e} | | | | | | | {note} |\n", o.name),
            }
        }
        s
    }
}

/// Trains and evaluates every candidate on one split of `data` (`test_fraction`
/// held out, stratified, seeded). A candidate that fails is reported, the others go on.
/// With `keep_models`, each outcome keeps its trained model for promotion.
fn compare(
    data: &Dataset,
    candidates: &[Candidate],
    test_fraction: f64,
    seed: u64,
    keep_models: bool,
    reporter: &dyn Reporter,
) -> Result<Comparison> {
    let prep = prepare(data, None, test_fraction, seed, reporter)?;
    compare_prepared(
        &prep,
        &data.source.describe(),
        candidates,
        seed,
        keep_models,
        reporter,
    )
}

/// [`compare`] on a prepared split (peer rows run with the bench venv's Python).
pub fn compare_prepared(
    prep: &Prepared,
    data_label: &str,
    candidates: &[Candidate],
    seed: u64,
    keep_models: bool,
    reporter: &dyn Reporter,
) -> Result<Comparison> {
    let test_labels: Vec<u8> = {
        let l = prep.test_set.require_labels()?;
        prep.test_idx.iter().map(|&i| l[i]).collect()
    };
    let mut peers = None;
    let mut outcomes = Vec::with_capacity(candidates.len());
    for (k, c) in candidates.iter().enumerate() {
        if reporter.cancelled() {
            return Err(crate::Error::Cancelled);
        }
        reporter.stage(
            &format!("model {}/{}: {}", k + 1, candidates.len(), c.name),
            0,
            1,
        );
        let progress = Prefixed {
            inner: reporter,
            prefix: &c.name,
        };
        let (result, peer) = match &c.kind {
            CandidateKind::Native(recipe) => (
                prep.fit(recipe, 0.5, &progress).map(|t| {
                    let roc = roc_curve(&t.holdout.labels, &t.holdout.scores).unwrap_or_default();
                    Scored {
                        metrics: t.metrics,
                        fit_seconds: t.train_seconds,
                        roc: thin(&roc, 400),
                        trained: keep_models.then_some(t),
                    }
                }),
                None,
            ),
            CandidateKind::Peer { library } => {
                match run_peer(prep, &mut peers, &c.name, &test_labels, seed, &progress) {
                    Ok((scored, lib)) => (Ok(scored), Some(lib)),
                    Err(e) => (Err(e), Some(library.to_string())),
                }
            }
        };
        if reporter.cancelled() || matches!(result, Err(crate::Error::Cancelled)) {
            return Err(crate::Error::Cancelled);
        }
        outcomes.push(Outcome {
            name: c.name.clone(),
            note: c.note.clone(),
            peer,
            result,
        });
    }
    Ok(Comparison {
        outcomes,
        train_rows: prep.labels.len(),
        test_rows: test_labels.len(),
        test_positives: test_labels.iter().filter(|&&l| l == 1).count(),
        data_label: data_label.to_string(),
    })
}

/// Runs the peer row `name` in Python on the prepared split (written once per split,
/// at its first peer row): its metrics at 0.5 and ROC curve from its scores of the same
/// test rows, and its library's name and version.
pub fn run_peer(
    prep: &Prepared,
    split: &mut Option<PeerSplit>,
    name: &str,
    test_labels: &[u8],
    seed: u64,
    reporter: &dyn Reporter,
) -> Result<(Scored, String)> {
    if split.is_none() {
        let train: Vec<&[f64]> = prep.columns.iter().map(Vec::as_slice).collect();
        let test = prep
            .imputer
            .transform_columns(&prep.test_set.columns, &prep.test_idx);
        let test: Vec<&[f64]> = test.iter().map(Vec::as_slice).collect();
        *split = Some(PeerSplit::write(
            crate::ops::python::interpreter(),
            &train,
            &prep.labels,
            &test,
            seed,
        )?);
    }
    let fit = split.as_ref().expect("written above").run(name, reporter)?;
    let metrics = Metrics::from_scores(test_labels, &fit.scores, 0.5)?;
    let roc = roc_curve(test_labels, &fit.scores).unwrap_or_default();
    Ok((
        Scored {
            metrics,
            fit_seconds: fit.fit_seconds,
            roc: thin(&roc, 400),
            trained: None,
        },
        fit.describe(),
    ))
}

/// A metric over the folds of a cross-validation: each fold's value, their mean and
/// standard deviation (population, numpy's default `std`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverFolds {
    pub mean: f64,
    pub std: f64,
    pub folds: Vec<f64>,
}

impl OverFolds {
    fn of(values: Vec<f64>) -> OverFolds {
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        OverFolds {
            mean,
            std: var.sqrt(),
            folds: values,
        }
    }
}

/// A model's cross-validated row: every metric (at threshold 0.5) over the folds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvRow {
    pub name: String,
    pub accuracy: OverFolds,
    pub precision: OverFolds,
    pub recall: OverFolds,
    pub f1: OverFolds,
    pub roc_auc: OverFolds,
    pub average_precision: OverFolds,
    pub fit_seconds: OverFolds,
}

/// A stratified k-fold cross-validation of the comparison's models: the same folds for
/// every model, each fold's imputation fitted on its training part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossValidation {
    pub folds: usize,
    pub seed: u64,
    pub data_label: String,
    /// Rows and spammers in each fold's test part.
    pub fold_rows: Vec<usize>,
    pub fold_positives: Vec<usize>,
    pub rows: Vec<CvRow>,
    /// Models that failed on some fold, with the first reason.
    pub failed: Vec<(String, String)>,
}

impl CrossValidation {
    /// The table in Markdown: mean ± standard deviation over the folds.
    pub fn markdown(&self) -> String {
        let mut s = String::from(
            "| model | accuracy | precision | recall | F1 | ROC-AUC | average precision | fit s |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let f = |m: &OverFolds| format!("{:.4} ± {:.4}", m.mean, m.std);
        for r in &self.rows {
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.2} |\n",
                r.name,
                f(&r.accuracy),
                f(&r.precision),
                f(&r.recall),
                f(&r.f1),
                f(&r.roc_auc),
                f(&r.average_precision),
                r.fit_seconds.mean
            );
        }
        for (name, why) in &self.failed {
            s += &format!("\n{name} failed: {why}\n");
        }
        s
    }
}

/// Cross-validates `candidates` on `data` over `k` stratified folds (from `seed`):
/// fold by fold, every model trained on the other folds and scored on this one.
pub fn cross_validate(
    data: &Dataset,
    candidates: &[Candidate],
    k: usize,
    seed: u64,
    reporter: &dyn Reporter,
) -> Result<CrossValidation> {
    let labels = data.require_both_classes()?;
    let folds = crate::data::preprocess::stratified_folds(labels, k, seed)?;
    let mut per_model: Vec<Vec<Metrics>> = vec![Vec::new(); candidates.len()];
    let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); candidates.len()];
    let mut failed: Vec<Option<String>> = vec![None; candidates.len()];
    for (f, test_idx) in folds.iter().enumerate() {
        let mut in_test = vec![false; labels.len()];
        for &i in test_idx {
            in_test[i] = true;
        }
        let train_idx: Vec<usize> = (0..labels.len()).filter(|&i| !in_test[i]).collect();
        let prep = crate::ops::train::prepare_rows(
            data,
            &train_idx,
            data,
            test_idx.clone(),
            crate::store::Evaluation::Split {
                test_fraction: 1.0 / k as f64,
                seed,
            },
            reporter,
        )?;
        let test_labels: Vec<u8> = test_idx.iter().map(|&i| labels[i]).collect();
        let mut peers = None;
        for (m, c) in candidates.iter().enumerate() {
            if reporter.cancelled() {
                return Err(crate::Error::Cancelled);
            }
            if failed[m].is_some() {
                continue;
            }
            let prefix = format!("fold {}/{k}, {}", f + 1, c.name);
            let progress = Prefixed {
                inner: reporter,
                prefix: &prefix,
            };
            let fitted = match &c.kind {
                CandidateKind::Native(recipe) => prep
                    .fit(recipe, 0.5, &progress)
                    .map(|t| (t.metrics, t.train_seconds)),
                CandidateKind::Peer { .. } => {
                    run_peer(&prep, &mut peers, &c.name, &test_labels, seed, &progress)
                        .map(|(s, _)| (s.metrics, s.fit_seconds))
                }
            };
            match fitted {
                Ok((metrics, secs)) => {
                    per_model[m].push(metrics);
                    seconds[m].push(secs);
                }
                Err(crate::Error::Cancelled) => return Err(crate::Error::Cancelled),
                Err(e) => failed[m] = Some(format!("fold {}: {e}", f + 1)),
            }
        }
    }
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (m, c) in candidates.iter().enumerate() {
        if let Some(why) = failed[m].take() {
            failures.push((c.name.clone(), why));
            continue;
        }
        let over = |get: fn(&Metrics) -> f64| OverFolds::of(per_model[m].iter().map(get).collect());
        rows.push(CvRow {
            name: c.name.clone(),
            accuracy: over(|x| x.accuracy),
            precision: over(|x| x.precision),
            recall: over(|x| x.recall),
            f1: over(|x| x.f1),
            roc_auc: over(|x| x.roc_auc),
            average_precision: over(|x| x.average_precision),
            fit_seconds: OverFolds::of(seconds[m].clone()),
        });
    }
    Ok(CrossValidation {
        folds: k,
        seed,
        data_label: data.source.describe(),
        fold_rows: folds.iter().map(Vec::len).collect(),
        fold_positives: folds
            .iter()
            .map(|f| f.iter().filter(|&&i| labels[i] == 1).count())
            .collect(),
        rows,
        failed: failures,
    })
}

/// A comparison as kept in the registry (`comparisons/latest.json`) for reports and
/// for the Compare tab after a restart: the table, the marks and the ROC curves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// RFC 3339, UTC.
    pub created_at: String,
    pub data_label: String,
    pub train_rows: usize,
    pub test_rows: usize,
    pub test_positives: usize,
    pub rows: Vec<Row>,
    /// Candidates that failed, with the reason.
    pub failed: Vec<(String, String)>,
    pub best_f1: Option<String>,
    pub best_auc: Option<String>,
    /// (model name, [fpr, tpr] points).
    pub roc: Vec<(String, Vec<[f64; 2]>)>,
    /// The table in Markdown, with notes and marks.
    pub markdown: String,
}

impl Comparison {
    pub fn to_saved(&self) -> Saved {
        let name = |i: Option<usize>| i.map(|i| self.outcomes[i].name.clone());
        Saved {
            created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            data_label: self.data_label.clone(),
            train_rows: self.train_rows,
            test_rows: self.test_rows,
            test_positives: self.test_positives,
            rows: self.rows(),
            failed: self
                .outcomes
                .iter()
                .filter_map(|o| {
                    o.result
                        .as_ref()
                        .err()
                        .map(|e| (o.name.clone(), e.to_string()))
                })
                .collect(),
            best_f1: name(self.best_f1()),
            best_auc: name(self.best_auc()),
            roc: self
                .outcomes
                .iter()
                .filter_map(|o| {
                    let s = o.result.as_ref().ok()?;
                    Some((
                        o.name.clone(),
                        s.roc.iter().map(|p| [p.fpr, p.tpr]).collect(),
                    ))
                })
                .collect(),
            markdown: self.markdown(),
        }
    }
}

/// Saves a comparison as the registry's latest (atomically), and keeps it in the
/// registry's history of comparisons (each is logged to MLflow once).
pub fn save(registry: &Registry, saved: &Saved) -> Result<()> {
    let json = serde_json::to_string_pretty(saved).expect("a comparison always serialises");
    registry.write_document(Document::LatestComparison, &json)?;
    registry.keep_comparison(&history_id(saved, &json), &json)?;
    Ok(())
}

/// A kept comparison's id: its time (digits only, so ids sort by time) and the start of
/// its text's SHA-256.
pub fn history_id(saved: &Saved, json: &str) -> String {
    let time: String = saved
        .created_at
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(40)
        .collect();
    format!(
        "{time}-{}",
        &crate::util::hash::sha256_hex(json.as_bytes())[..12]
    )
}

/// The kept comparison `id`; a damaged one is an error naming it.
pub fn load_kept(registry: &Registry, id: &str) -> Result<Option<Saved>> {
    let Some(text) = registry.read_comparison(id)? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        crate::Error::at(
            format!("comparison {id}"),
            format!("not a saved comparison: {e}"),
        )
    })
}

/// The registry's latest comparison, if one was run; a damaged one is an error.
pub fn load_latest(registry: &Registry) -> Result<Option<Saved>> {
    let Some(text) = registry.read_document(Document::LatestComparison)? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        crate::Error::at(
            registry.document_place(Document::LatestComparison),
            format!("not a saved comparison: {e}"),
        )
    })
}

/// The comparison's candidates named in `names` (case-insensitive, in the table's
/// order; all of them when `names` is empty). An unknown name is an error that lists
/// the models.
pub fn select_candidates(seed: u64, names: &[String]) -> Result<Vec<Candidate>> {
    let mut candidates = crate::model::recipe::default_candidates(seed);
    if names.is_empty() {
        return Ok(candidates);
    }
    for w in names {
        if !candidates
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(w.trim()))
        {
            return Err(crate::Error::Invalid(format!(
                "no model named {:?}; the models are: {}",
                w.trim(),
                candidates
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    candidates.retain(|c| names.iter().any(|w| c.name.eq_ignore_ascii_case(w.trim())));
    Ok(candidates)
}

/// A finished comparison as the front-ends show it.
pub struct Compared {
    pub comparison: Comparison,
    pub saved: Saved,
    /// Why the table could not be kept in the registry (the results are still here).
    pub not_saved: Option<crate::Error>,
}

/// Runs the comparison of `candidates` on `data` and keeps its table in the registry
/// (for the Compare tab after a restart, and for reports).
pub fn run(
    registry: &Registry,
    data: &Dataset,
    candidates: &[Candidate],
    test_fraction: f64,
    seed: u64,
    keep_models: bool,
    reporter: &dyn Reporter,
) -> Result<Compared> {
    let comparison = compare(data, candidates, test_fraction, seed, keep_models, reporter)?;
    let saved = comparison.to_saved();
    let not_saved = save(registry, &saved).err();
    Ok(Compared {
        comparison,
        saved,
        not_saved,
    })
}

/// Refuses early a promotion of a model that is not among `candidates`, or is a peer
/// row.
pub fn check_promotable(candidates: &[Candidate], name: &str) -> Result<()> {
    match candidates
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name))
    {
        Some(c) => match c.peer_library() {
            Some(lib) => Err(not_promotable(&c.name, lib)),
            None => Ok(()),
        },
        None => Err(crate::Error::Invalid(format!(
            "cannot promote {name:?}: it is not among the compared models"
        ))),
    }
}

fn not_promotable(name: &str, library: &str) -> crate::Error {
    crate::Error::Invalid(format!(
        "cannot promote {name:?}: it is a peer row, fitted by {library} in Python, which spamscope cannot save, explain or retrain"
    ))
}

/// Registers the compared model `name` (case-insensitive) as a new version and makes it
/// active; returns its manifest and the trained model. The comparison must have kept its
/// models (`keep_models`).
pub fn promote<'c>(
    registry: &Registry,
    comparison: &'c Comparison,
    data: &Dataset,
    name: &str,
    test_fraction: f64,
) -> Result<(crate::store::Manifest, &'c Trained)> {
    let Some(o) = comparison
        .outcomes
        .iter()
        .find(|o| o.name.eq_ignore_ascii_case(name))
    else {
        return Err(crate::Error::Invalid(format!(
            "cannot promote {name:?}: it is not among the compared models"
        )));
    };
    if let Some(lib) = &o.peer {
        return Err(not_promotable(&o.name, lib));
    }
    let trained = match &o.result {
        Ok(s) => s.trained.as_ref().ok_or_else(|| {
            crate::Error::Invalid(format!(
                "cannot promote {name:?}: the comparison did not keep its models"
            ))
        })?,
        Err(e) => {
            return Err(crate::Error::Invalid(format!(
                "cannot promote {name:?}: it failed to train: {e}"
            )));
        }
    };
    let cfg = TrainConfig {
        recipe: Some(trained.recipe.clone()),
        test_fraction,
        ..TrainConfig::default()
    };
    Ok((trained.register(registry, data, &cfg, true)?, trained))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::{SynthParams, default_dataset};
    use crate::util::progress::NoProgress;

    /// Every model sees the same folds (a model listed twice scores alike on each), a
    /// fold's numbers are those of training on the other folds and scoring it, and the
    /// summary is the folds' mean and population standard deviation.
    #[test]
    fn cross_validation_uses_one_set_of_folds_and_summarises_them() {
        let data = default_dataset(SynthParams {
            rows: 3000,
            seed: 3,
        });
        let all = crate::model::recipe::default_candidates(9);
        let pick = |name: &str| all.iter().find(|c| c.name == name).unwrap().clone();
        let mut twice = pick("decision tree");
        twice.name = "decision tree again".into();
        let candidates = vec![pick("decision tree"), twice, pick("logistic regression")];
        let cv = cross_validate(&data, &candidates, 4, 11, &NoProgress).unwrap();
        assert_eq!(cv.rows.len(), 3);
        assert_eq!(cv.fold_rows.iter().sum::<usize>(), 3000);
        assert_eq!(cv.rows[0].roc_auc.folds, cv.rows[1].roc_auc.folds);
        assert_ne!(cv.rows[0].roc_auc.folds, cv.rows[2].roc_auc.folds);
        // Fold 3 by hand.
        let labels = data.require_labels().unwrap();
        let folds = crate::data::preprocess::stratified_folds(labels, 4, 11).unwrap();
        let test: std::collections::HashSet<usize> = folds[2].iter().copied().collect();
        let train: Vec<usize> = (0..3000).filter(|i| !test.contains(i)).collect();
        let prep = crate::ops::train::prepare_rows(
            &data,
            &train,
            &data,
            folds[2].clone(),
            crate::store::Evaluation::Split {
                test_fraction: 0.25,
                seed: 11,
            },
            &NoProgress,
        )
        .unwrap();
        let t = prep
            .fit(candidates[2].recipe().unwrap(), 0.5, &NoProgress)
            .unwrap();
        assert_eq!(cv.rows[2].f1.folds[2], t.metrics.f1);
        assert_eq!(
            cv.rows[2].average_precision.folds[2],
            t.metrics.average_precision
        );
        let f = &cv.rows[2].roc_auc;
        let mean = f.folds.iter().sum::<f64>() / 4.0;
        let std = (f.folds.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
        assert!((f.mean - mean).abs() < 1e-12 && (f.std - std).abs() < 1e-12);
        assert!(f.std > 0.0);
    }

    #[test]
    fn cross_validation_stops_when_cancelled() {
        struct Cancel;
        impl Reporter for Cancel {
            fn stage(&self, _: &str, _: usize, _: usize) {}
            fn cancelled(&self) -> bool {
                true
            }
        }
        let data = default_dataset(SynthParams {
            rows: 1000,
            seed: 3,
        });
        let c = crate::model::recipe::default_candidates(9);
        assert!(matches!(
            cross_validate(&data, &c[..1], 3, 1, &Cancel),
            Err(crate::Error::Cancelled)
        ));
    }
}
