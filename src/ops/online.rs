//! Online learning from moderators' corrections: retrain on the base data plus weighted
//! feedback, gate the candidate, promote or reject it.
//!
//! A retrain trains on the active version's base training split plus every feedback
//! record that is not yet consumed or that earlier accepted versions learned from (so
//! corrections are never forgotten), each weighted `feedback_weight` times a base row.
//! One slice of the *new* records (never seen by the active version) is held out. The
//! candidate is promoted only if its ROC-AUC on the base holdout is not more than
//! `max_auc_drop` below the active version's and its Brier score on the held-out feedback
//! is not worse (beyond `feedback_tolerance`, a noise allowance); otherwise it is
//! registered as rejected, with the reason. Either way the
//! new records are marked as consumed by the candidate, so a rejected (e.g. poisoned)
//! batch does not come back in the next retrain.
//!
//! The reference system's configuration also had a *learning rate*: it has no meaning for
//! a random forest, which is refit, not updated by gradient steps. How strongly
//! corrections count is `feedback_weight`; how cautious promotion is, `max_auc_drop`
//! (the settings: [`crate::ops::settings`]; when a retrain is due:
//! [`crate::ops::schedule`]).

use crate::data::preprocess::{Imputer, stratified_split};
use crate::data::synth::{SynthParams, default_dataset};
use crate::data::{Dataset, SourceKind};
use crate::eval::metrics::Metrics;
use crate::model::Model;
use crate::model::recipe::{ModelSpec, Recipe};
use crate::ops::error::{Error, Result};
use crate::store::feedback::{Claimant, Feedback, FeedbackStore};
use crate::store::{
    Evaluation, FeedbackEval, Gate, Holdout, Manifest, NewVersion, Registry, Status,
};
use crate::util::progress::Reporter;
// The settings and the "retrain due" rule lived here; their old paths keep working.
pub use crate::ops::schedule::{auto_retrain_due, retrain_due_reason};
pub use crate::ops::settings::{
    MAX_BATCH, MAX_FEEDBACK_WEIGHT, MAX_INTERVAL, MAX_MIN_SAMPLES, MIN_NEW_RECORDS,
    OnlineLearningConfig,
};
use serde::Serialize;
use std::collections::HashSet;
use std::time::Instant;

/// What a retrain did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub candidate: Manifest,
    pub promoted: bool,
    pub reason: String,
    pub train_seconds: f64,
    /// Feedback records in the training set / held out.
    pub feedback_train: usize,
    pub feedback_holdout: usize,
    /// The gate's held-out feedback by moderator (None: records without one): how the
    /// active version and the candidate did on each moderator's records.
    pub by_moderator: Vec<ModeratorGate>,
    /// Whether the new records were consumed (false when the candidate lost the race
    /// for promotion to another process's: they wait for the next retrain).
    pub consumed: bool,
}

/// Loads the data the active version was trained on (regenerated for synthetic data,
/// re-read and checked against its hash for a CSV).
pub fn load_base_data(m: &Manifest) -> Result<Dataset> {
    match &m.data.kind {
        SourceKind::Synthetic { seed, rows } => Ok(default_dataset(SynthParams {
            rows: *rows,
            seed: *seed,
        })),
        SourceKind::Csv { path } => {
            let d = Dataset::load_csv(std::path::Path::new(path))?;
            if d.source.sha256 != m.data.sha256 {
                return Err(Error::Invalid(format!(
                    "the base data {path} changed since version {} was trained (sha256 differs); retraining needs the same base data",
                    m.version
                )));
            }
            Ok(d)
        }
    }
}

/// Brier score, accuracy and (with both classes) AUC of `model` on feedback records.
fn feedback_eval(model: &Model, records: &[&Feedback], threshold: f64) -> Option<FeedbackEval> {
    if records.is_empty() {
        return None;
    }
    let labels: Vec<u8> = records.iter().map(|r| r.record.true_label).collect();
    let scores: Vec<f64> = records
        .iter()
        .map(|r| model.predict_one(&r.record.features))
        .collect();
    let n = labels.len() as f64;
    // Brier on what the version answers (its calibrated probability); the verdicts and
    // the ranking on its raw score.
    let brier = labels
        .iter()
        .zip(&scores)
        .map(|(&y, &s)| (model.probability(s) - f64::from(y)).powi(2))
        .sum::<f64>()
        / n;
    let accuracy = labels
        .iter()
        .zip(&scores)
        .filter(|&(&y, &p)| crate::eval::verdict::label(p, threshold) == y)
        .count() as f64
        / n;
    let roc_auc = Metrics::from_scores(&labels, &scores, threshold)
        .ok()
        .map(|m| m.roc_auc);
    Some(FeedbackEval {
        records: records.len(),
        brier,
        accuracy,
        roc_auc,
    })
}

/// [`retrain`] as a job of the registry's store, as a command runs it: refused while
/// another retrain runs in any process sharing the store (a service replica's or
/// another command's), followed from any replica (`GET /jobs/{id}`) while it runs;
/// its end is recorded with `describe`'s text of the outcome.
pub fn retrain_job(
    registry: &Registry,
    cfg: &OnlineLearningConfig,
    by: &str,
    reporter: &dyn Reporter,
    describe: impl FnOnce(&Outcome) -> String,
) -> Result<Outcome> {
    use crate::store::jobs::{Jobs, Started};
    let jobs = Jobs::of(registry);
    let id = match jobs.start("retrain", by)? {
        Started::New(id) => id,
        Started::Running(id) => {
            return Err(crate::Error::Conflict(format!(
                "retrain job {id} is running (started by a service replica or another command); wait for it to finish"
            )));
        }
    };
    let outcome = jobs.while_running(id, || retrain(registry, cfg, reporter));
    let end = match &outcome {
        Ok(o) => Ok(describe(o)),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = jobs.finish(id, end) {
        tracing::warn!("retrain job {id}: its end was not recorded: {e}");
    }
    outcome
}

/// Retrains from feedback and registers the candidate (active if promoted).
pub fn retrain(
    registry: &Registry,
    cfg: &OnlineLearningConfig,
    reporter: &dyn Reporter,
) -> Result<Outcome> {
    cfg.validate()?;
    let (active_manifest, active_model) = registry.load_active()?;
    let mut store = FeedbackStore::of(registry)?;
    // Take the new records for this retrain only; give back what it does not consume.
    let claimant = Claimant::this_process();
    let new = store.claim_unused(&claimant)?;
    let result = retrain_claimed(
        registry,
        cfg,
        reporter,
        (&active_manifest, &active_model),
        &mut store,
        &new,
    );
    if !result.as_ref().is_ok_and(|o| o.consumed) {
        store.release(&claimant)?;
    }
    result
}

/// One retrain on the `new` records claimed for it: split the feedback, train a
/// candidate on the base training rows plus feedback, gate it against the active
/// version, register it and record what happened.
fn retrain_claimed(
    registry: &Registry,
    cfg: &OnlineLearningConfig,
    reporter: &dyn Reporter,
    (active_manifest, active_model): (&Manifest, &Model),
    store: &mut FeedbackStore,
    new: &[Feedback],
) -> Result<Outcome> {
    let records = store.records(false)?;
    let rejected = rejected_versions(registry)?;
    if new.len() < MIN_NEW_RECORDS {
        return Err(Error::Invalid(format!(
            "retraining needs at least {MIN_NEW_RECORDS} new feedback records; there are {}",
            new.len()
        )));
    }
    let feedback = split_feedback(&records, &rejected, new, cfg.feedback_holdout);

    reporter.stage("loading base data", 0, 1);
    let base = load_base_data(active_manifest)?;
    let labels = base.require_both_classes()?;
    let split = base_split(active_manifest, &base, labels)?;

    let set = training_set(cfg, store, &base, labels, &split.train, &feedback.train)?;
    let mut fitted = fit_candidate(active_manifest, cfg, set, reporter)?;

    // Recalibrated on the base holdout, as training calibrates a new version.
    reporter.stage("calibrating", 0, 1);
    let test_set = split.test_set.as_ref().unwrap_or(&base);
    let test_labels: Vec<u8> = {
        let l = test_set.require_labels()?;
        split.test.iter().map(|&i| l[i]).collect()
    };
    // The candidate's holdout scores: its calibration's data, then the gate's.
    let cand_scores = fitted.model.predict_dataset(test_set, Some(&split.test));
    fitted.model.calibrate(&cand_scores, &test_labels)?;

    reporter.stage("evaluating", 0, 1);
    let gate = run_gate(
        cfg,
        active_manifest.threshold,
        (active_model, &fitted.model),
        (test_set, &split.test, test_labels),
        cand_scores,
        &feedback.holdout,
    )?;

    reporter.stage("saving", 0, 1);
    record_outcome(
        registry,
        cfg,
        (active_manifest, active_model),
        store,
        &feedback,
        fitted,
        gate,
    )
}

/// The versions the gate rejected: feedback they learned from goes back into training.
fn rejected_versions(registry: &Registry) -> Result<HashSet<u32>> {
    Ok(registry
        .list()?
        .into_iter()
        .filter_map(|e| e.manifest.ok())
        .filter(|m| m.status == Status::Rejected)
        .map(|m| m.version)
        .collect())
}

/// The feedback records a retrain trains on and the ones its gate holds out.
struct FeedbackSplit<'a> {
    /// The new records claimed for this retrain.
    new: &'a [Feedback],
    /// Records accepted versions learned from, then the new records not held out.
    train: Vec<&'a Feedback>,
    /// Every k-th new record (k from `feedback_holdout`).
    holdout: Vec<&'a Feedback>,
}

/// Splits the feedback: learned-from records of accepted (not `rejected`) versions
/// stay in the training set; every k-th new record (by id) is held out for the gate,
/// the rest are trained on.
fn split_feedback<'a>(
    records: &'a [Feedback],
    rejected: &HashSet<u32>,
    new: &'a [Feedback],
    feedback_holdout: f64,
) -> FeedbackSplit<'a> {
    let kept = records
        .iter()
        .filter(|r| r.used_in_version.is_some_and(|v| !rejected.contains(&v)));
    let every = (1.0 / feedback_holdout).round().max(2.0) as usize;
    let mut holdout: Vec<&Feedback> = Vec::new();
    let mut new_train: Vec<&Feedback> = Vec::new();
    for (i, r) in new.iter().enumerate() {
        if i % every == every - 1 {
            holdout.push(r);
        } else {
            new_train.push(r);
        }
    }
    FeedbackSplit {
        new,
        train: kept.chain(new_train).collect(),
        holdout,
    }
}

/// The active version's base rows split as it was evaluated.
struct BaseSplit {
    /// Row indices of the base data to train on.
    train: Vec<usize>,
    /// Row indices of the test set (the base data, or `test_set`).
    test: Vec<usize>,
    /// The active version's separate test file, if it had one.
    test_set: Option<Dataset>,
}

/// Splits the base data the way the active version was evaluated: the same
/// stratified split, or all of it for training and its test file for testing.
fn base_split(active_manifest: &Manifest, base: &Dataset, labels: &[u8]) -> Result<BaseSplit> {
    Ok(match &active_manifest.evaluation {
        Evaluation::Split {
            test_fraction,
            seed,
        } => {
            let s = stratified_split(labels, *test_fraction, *seed)?;
            BaseSplit {
                train: s.train,
                test: s.test,
                test_set: None,
            }
        }
        Evaluation::TestFile { source } => {
            let SourceKind::Csv { path } = &source.kind else {
                return Err(Error::Invalid(
                    "unknown test data of the active version".into(),
                ));
            };
            let t = Dataset::load_csv(std::path::Path::new(path))?;
            let n = t.n_rows();
            BaseSplit {
                train: (0..base.n_rows()).collect(),
                test: (0..n).collect(),
                test_set: Some(t),
            }
        }
    })
}

/// The candidate's training data, imputed, with a weight per row.
struct TrainingSet {
    imputer: Imputer,
    profiles: Vec<crate::eval::monitor::FeatureProfile>,
    cols: Vec<Vec<f64>>,
    y: Vec<u8>,
    w: Vec<f64>,
}

/// Builds the training set: the base training rows (weight 1) followed by the
/// feedback rows (weight `feedback_weight`, scaled by the moderator's trust when
/// trust weighting is on), imputed with an imputer fitted on the base rows. Fails
/// when the result has only one class.
fn training_set(
    cfg: &OnlineLearningConfig,
    store: &FeedbackStore,
    base: &Dataset,
    labels: &[u8],
    base_train: &[usize],
    fb_train: &[&Feedback],
) -> Result<TrainingSet> {
    let imputer = Imputer::fit(&base.columns, base_train);
    let profiles = crate::eval::monitor::profile(&base.columns, base_train);
    let mut cols = imputer.transform_columns(&base.columns, base_train);
    let mut y: Vec<u8> = base_train.iter().map(|&i| labels[i]).collect();
    let mut w: Vec<f64> = vec![1.0; base_train.len()];
    let trust = if cfg.trust_weighting {
        crate::ops::trust::trust_by_moderator(store)?
    } else {
        Default::default()
    };
    for r in fb_train {
        let mut x = r.record.features.clone();
        imputer.apply_row(&mut x);
        for (c, v) in cols.iter_mut().zip(&x) {
            c.push(*v);
        }
        y.push(r.record.true_label);
        w.push(crate::ops::trust::record_weight(
            cfg.feedback_weight,
            r.moderator.as_deref(),
            &trust,
        ));
    }
    if y.iter().all(|&l| l == y[0]) {
        return Err(Error::Invalid(
            "the training set has only one class; retraining needs both spammers and legitimate accounts".into(),
        ));
    }
    Ok(TrainingSet {
        imputer,
        profiles,
        cols,
        y,
        w,
    })
}

/// A trained candidate and what its registration records of the training.
struct Fitted {
    model: Model,
    recipe: Recipe,
    profiles: Vec<crate::eval::monitor::FeatureProfile>,
    /// The training labels (for the row and positive counts).
    y: Vec<u8>,
    train_seconds: f64,
}

/// Fits the candidate on `set`: the same kind of model as the active version;
/// forests take the configured parameters (Settings), other kinds keep the ones
/// they were compared with.
fn fit_candidate(
    active_manifest: &Manifest,
    cfg: &OnlineLearningConfig,
    set: TrainingSet,
    reporter: &dyn Reporter,
) -> Result<Fitted> {
    let TrainingSet {
        imputer,
        profiles,
        cols,
        y,
        w,
    } = set;
    let start = Instant::now();
    let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
    let recipe = match active_manifest.recipe() {
        r if matches!(r.spec, ModelSpec::Forest(_)) => Recipe {
            spec: ModelSpec::Forest(cfg.forest.clone()),
            ..r
        },
        r => r,
    };
    let estimator = recipe.fit(&refs, &y, Some(&w), reporter)?;
    drop(cols);
    let train_seconds = start.elapsed().as_secs_f64();
    Ok(Fitted {
        model: Model {
            imputer,
            estimator,
            calibration: None,
        },
        recipe,
        profiles,
        y,
        train_seconds,
    })
}

/// The gate's verdict on a candidate, with what it measured.
struct GateVerdict {
    /// The base holdout with the candidate's scores.
    holdout: Holdout,
    cand_metrics: Metrics,
    active_metrics: Metrics,
    fb_cand: Option<FeedbackEval>,
    fb_active: Option<FeedbackEval>,
    promoted: bool,
    reason: String,
}

/// The gate: both versions on the same base holdout and the same held-out feedback.
/// The candidate passes if its ROC-AUC is not more than `max_auc_drop` below the
/// active version's and its feedback Brier score not worse beyond
/// `feedback_tolerance`. The base holdout comes with its labels and the candidate's
/// scores on it (already computed for its calibration).
fn run_gate(
    cfg: &OnlineLearningConfig,
    threshold: f64,
    (active_model, candidate): (&Model, &Model),
    (test_set, base_test, test_labels): (&Dataset, &[usize], Vec<u8>),
    cand_scores: Vec<f64>,
    holdout_fb: &[&Feedback],
) -> Result<GateVerdict> {
    let active_scores = active_model.predict_dataset(test_set, Some(base_test));
    let cand_metrics = Metrics::from_scores(&test_labels, &cand_scores, threshold)?;
    let active_metrics = Metrics::from_scores(&test_labels, &active_scores, threshold)?;
    let fb_cand = feedback_eval(candidate, holdout_fb, threshold);
    let fb_active = feedback_eval(active_model, holdout_fb, threshold);
    let auc_ok = cand_metrics.roc_auc >= active_metrics.roc_auc - cfg.max_auc_drop;
    let fb_ok = match (&fb_cand, &fb_active) {
        (Some(c), Some(a)) => c.brier <= a.brier + cfg.feedback_tolerance,
        _ => true,
    };
    let promoted = auc_ok && fb_ok;
    let reason = gate_reason(
        cfg,
        (auc_ok, fb_ok),
        (&cand_metrics, &active_metrics),
        (&fb_cand, &fb_active),
    );
    Ok(GateVerdict {
        holdout: Holdout {
            user_ids: base_test
                .iter()
                .map(|&i| test_set.user_ids[i].clone())
                .collect(),
            labels: test_labels,
            scores: cand_scores,
        },
        cand_metrics,
        active_metrics,
        fb_cand,
        fb_active,
        promoted,
        reason,
    })
}

/// The gate's reason: what the promoted candidate scored, or each check it failed.
fn gate_reason(
    cfg: &OnlineLearningConfig,
    (auc_ok, fb_ok): (bool, bool),
    (cand_metrics, active_metrics): (&Metrics, &Metrics),
    (fb_cand, fb_active): (&Option<FeedbackEval>, &Option<FeedbackEval>),
) -> String {
    let promoted = auc_ok && fb_ok;
    let mut reasons = Vec::new();
    if !auc_ok {
        reasons.push(format!(
            "ROC-AUC on the base holdout fell from {:.4} to {:.4} (allowed drop {})",
            active_metrics.roc_auc, cand_metrics.roc_auc, cfg.max_auc_drop
        ));
    }
    if !fb_ok && let (Some(c), Some(a)) = (fb_cand, fb_active) {
        reasons.push(format!(
            "worse on the {} held-out feedback records (Brier {:.4} vs {:.4})",
            c.records, c.brier, a.brier
        ));
    }
    if promoted {
        format!(
            "promoted: base ROC-AUC {:.4} (active {:.4}){}",
            cand_metrics.roc_auc,
            active_metrics.roc_auc,
            match (fb_cand, fb_active) {
                (Some(c), Some(a)) => format!(
                    ", feedback Brier {:.4} (active {:.4}) on {} held-out records",
                    c.brier, a.brier, c.records
                ),
                _ => String::new(),
            }
        )
    } else {
        format!("rejected: {}", reasons.join("; "))
    }
}

/// Registers the candidate with the gate's verdict (active if promoted), marks the
/// new records as consumed by it unless it lost the race for promotion (then they
/// are given back), and says what the retrain did.
fn record_outcome(
    registry: &Registry,
    cfg: &OnlineLearningConfig,
    (active_manifest, active_model): (&Manifest, &Model),
    store: &mut FeedbackStore,
    feedback: &FeedbackSplit<'_>,
    fitted: Fitted,
    gate: GateVerdict,
) -> Result<Outcome> {
    let Fitted {
        model: candidate,
        recipe,
        profiles,
        y,
        train_seconds,
    } = fitted;
    let GateVerdict {
        holdout,
        cand_metrics,
        active_metrics,
        fb_cand,
        fb_active,
        promoted,
        reason,
    } = gate;
    let threshold = active_manifest.threshold;
    let manifest = registry.register(
        NewVersion {
            model: &candidate,
            holdout: &holdout,
            data: active_manifest.data.clone(),
            train_rows: y.len(),
            train_positives: y.iter().filter(|&&l| l == 1).count(),
            evaluation: active_manifest.evaluation.clone(),
            params: cfg.forest.clone(),
            recipe: Some(recipe),
            train_seconds,
            threshold,
            metrics: cand_metrics,
            status: if promoted {
                Status::Registered
            } else {
                Status::Rejected
            },
            status_reason: (!promoted).then(|| reason.clone()),
            feedback_used: feedback.train.len(),
            gate: Some(Gate {
                against: active_manifest.version,
                base_auc_active: active_metrics.roc_auc,
                base_auc_candidate: cand_metrics.roc_auc,
                max_auc_drop: cfg.max_auc_drop,
                feedback_active: fb_active,
                feedback_candidate: fb_cand,
                promoted,
                reason: reason.clone(),
            }),
            profiles: Some(profiles),
        },
        promoted,
    )?;
    // The new records are consumed by this candidate (accepted or rejected by the
    // gate); a candidate that lost the race for promotion gives them back.
    let lost_race = promoted && manifest.status == Status::Rejected;
    let (promoted, reason) = match &manifest.gate {
        Some(g) if lost_race => (false, g.reason.clone()),
        _ => (promoted, reason),
    };
    if !lost_race {
        let ids: Vec<i64> = feedback.new.iter().map(|r| r.id).collect();
        store.mark_used(&ids, manifest.version)?;
    }
    Ok(Outcome {
        consumed: !lost_race,
        candidate: manifest,
        promoted,
        reason,
        train_seconds,
        feedback_train: feedback.train.len(),
        feedback_holdout: feedback.holdout.len(),
        by_moderator: gate_by_moderator(active_model, &candidate, &feedback.holdout, threshold),
    })
}

/// One moderator's held-out feedback in the gate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeratorGate {
    pub moderator: Option<String>,
    pub active: FeedbackEval,
    pub candidate: FeedbackEval,
}

/// The gate's held-out feedback split by moderator, in order of first appearance.
fn gate_by_moderator(
    active: &Model,
    candidate: &Model,
    holdout: &[&Feedback],
    threshold: f64,
) -> Vec<ModeratorGate> {
    let mut groups: Vec<(Option<String>, Vec<&Feedback>)> = Vec::new();
    for &r in holdout {
        match groups.iter_mut().find(|(m, _)| *m == r.moderator) {
            Some((_, g)) => g.push(r),
            None => groups.push((r.moderator.clone(), vec![r])),
        }
    }
    groups
        .into_iter()
        .filter_map(|(moderator, g)| {
            Some(ModeratorGate {
                moderator,
                active: feedback_eval(active, &g, threshold)?,
                candidate: feedback_eval(candidate, &g, threshold)?,
            })
        })
        .collect()
}
