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
    let brier = labels
        .iter()
        .zip(&scores)
        .map(|(&y, &p)| (p - f64::from(y)).powi(2))
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

/// Retrains from feedback and registers the candidate (active if promoted).
pub fn retrain(
    registry: &Registry,
    cfg: &OnlineLearningConfig,
    reporter: &dyn Reporter,
) -> Result<Outcome> {
    cfg.validate()?;
    let (active_manifest, active_model) = registry.load_active()?;
    let mut store = FeedbackStore::open_in(registry.root())?;
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

fn retrain_claimed(
    registry: &Registry,
    cfg: &OnlineLearningConfig,
    reporter: &dyn Reporter,
    (active_manifest, active_model): (&Manifest, &Model),
    store: &mut FeedbackStore,
    new: &[Feedback],
) -> Result<Outcome> {
    let records = store.records(false)?;
    let rejected: HashSet<u32> = registry
        .list()?
        .into_iter()
        .filter_map(|e| e.manifest.ok())
        .filter(|m| m.status == Status::Rejected)
        .map(|m| m.version)
        .collect();
    if new.len() < MIN_NEW_RECORDS {
        return Err(Error::Invalid(format!(
            "retraining needs at least {MIN_NEW_RECORDS} new feedback records; there are {}",
            new.len()
        )));
    }
    // Learned-from records of accepted versions stay in the training set.
    let kept: Vec<&Feedback> = records
        .iter()
        .filter(|r| r.used_in_version.is_some_and(|v| !rejected.contains(&v)))
        .collect();
    // Every k-th new record (by id) is held out.
    let every = (1.0 / cfg.feedback_holdout).round().max(2.0) as usize;
    let mut holdout_fb: Vec<&Feedback> = Vec::new();
    let mut new_train: Vec<&Feedback> = Vec::new();
    for (i, r) in new.iter().enumerate() {
        if i % every == every - 1 {
            holdout_fb.push(r);
        } else {
            new_train.push(r);
        }
    }

    reporter.stage("loading base data", 0, 1);
    let base = load_base_data(active_manifest)?;
    let labels = base.require_both_classes()?;
    let (base_train, base_test, base_test_set): (Vec<usize>, Vec<usize>, Option<Dataset>) =
        match &active_manifest.evaluation {
            Evaluation::Split {
                test_fraction,
                seed,
            } => {
                let s = stratified_split(labels, *test_fraction, *seed)?;
                (s.train, s.test, None)
            }
            Evaluation::TestFile { source } => {
                let SourceKind::Csv { path } = &source.kind else {
                    return Err(Error::Invalid(
                        "unknown test data of the active version".into(),
                    ));
                };
                let t = Dataset::load_csv(std::path::Path::new(path))?;
                let n = t.n_rows();
                ((0..base.n_rows()).collect(), (0..n).collect(), Some(t))
            }
        };

    // Training set: base rows (weight 1) + feedback rows (weight feedback_weight).
    let fb_train: Vec<&Feedback> = kept.iter().chain(new_train.iter()).copied().collect();
    let imputer = Imputer::fit(&base.columns, &base_train);
    let profiles = crate::eval::monitor::profile(&base.columns, &base_train);
    let mut cols = imputer.transform_columns(&base.columns, &base_train);
    let mut y: Vec<u8> = base_train.iter().map(|&i| labels[i]).collect();
    let mut w: Vec<f64> = vec![1.0; base_train.len()];
    let trust = if cfg.trust_weighting {
        crate::ops::trust::trust_by_moderator(store)?
    } else {
        Default::default()
    };
    for r in &fb_train {
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
    let start = Instant::now();
    let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
    // The same kind of model as the active version; forests take the configured
    // parameters (Settings), other kinds keep the ones they were compared with.
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
    let candidate = Model { imputer, estimator };

    // Gate: both versions on the same base holdout and the same held-out feedback.
    reporter.stage("evaluating", 0, 1);
    let test_set = base_test_set.as_ref().unwrap_or(&base);
    let test_labels: Vec<u8> = {
        let l = test_set.require_labels()?;
        base_test.iter().map(|&i| l[i]).collect()
    };
    let cand_scores = candidate.predict_dataset(test_set, Some(&base_test));
    let active_scores = active_model.predict_dataset(test_set, Some(&base_test));
    let threshold = active_manifest.threshold;
    let cand_metrics = Metrics::from_scores(&test_labels, &cand_scores, threshold)?;
    let active_metrics = Metrics::from_scores(&test_labels, &active_scores, threshold)?;
    let fb_cand = feedback_eval(&candidate, &holdout_fb, threshold);
    let fb_active = feedback_eval(active_model, &holdout_fb, threshold);
    let auc_ok = cand_metrics.roc_auc >= active_metrics.roc_auc - cfg.max_auc_drop;
    let fb_ok = match (&fb_cand, &fb_active) {
        (Some(c), Some(a)) => c.brier <= a.brier + cfg.feedback_tolerance,
        _ => true,
    };
    let promoted = auc_ok && fb_ok;
    let mut reasons = Vec::new();
    if !auc_ok {
        reasons.push(format!(
            "ROC-AUC on the base holdout fell from {:.4} to {:.4} (allowed drop {})",
            active_metrics.roc_auc, cand_metrics.roc_auc, cfg.max_auc_drop
        ));
    }
    if !fb_ok && let (Some(c), Some(a)) = (&fb_cand, &fb_active) {
        reasons.push(format!(
            "worse on the {} held-out feedback records (Brier {:.4} vs {:.4})",
            c.records, c.brier, a.brier
        ));
    }
    let reason = if promoted {
        format!(
            "promoted: base ROC-AUC {:.4} (active {:.4}){}",
            cand_metrics.roc_auc,
            active_metrics.roc_auc,
            match (&fb_cand, &fb_active) {
                (Some(c), Some(a)) => format!(
                    ", feedback Brier {:.4} (active {:.4}) on {} held-out records",
                    c.brier, a.brier, c.records
                ),
                _ => String::new(),
            }
        )
    } else {
        format!("rejected: {}", reasons.join("; "))
    };

    reporter.stage("saving", 0, 1);
    let holdout = Holdout {
        user_ids: base_test
            .iter()
            .map(|&i| test_set.user_ids[i].clone())
            .collect(),
        labels: test_labels,
        scores: cand_scores,
    };
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
            feedback_used: fb_train.len(),
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
        let ids: Vec<i64> = new.iter().map(|r| r.id).collect();
        store.mark_used(&ids, manifest.version)?;
    }
    Ok(Outcome {
        consumed: !lost_race,
        candidate: manifest,
        promoted,
        reason,
        train_seconds,
        feedback_train: fb_train.len(),
        feedback_holdout: holdout_fb.len(),
        by_moderator: gate_by_moderator(active_model, &candidate, &holdout_fb, threshold),
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
