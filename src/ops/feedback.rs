//! Moderators' feedback as every front-end records it: records built from scored
//! accounts, stored in one transaction, and the store's check whether that made an
//! automatic retrain due.

use crate::data::Dataset;
use crate::ops::error::Result;
use crate::ops::schedule::retrain_due_reason_in;
use crate::ops::score::ScoredBatch;
use crate::store::Registry;
use crate::store::feedback::{
    FeedbackStore, FeedbackWriter, IdempotencyKey, NewFeedback, Origin, Outcome, Submission,
};
// Trust lived here; its old paths keep working.
pub use crate::ops::trust::{TRUST_PRIOR, record_weight, trust, trust_by_moderator};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One feedback record per row of `rows`: the account's values from `data`, its true
/// label from `label`, and, when the rows were scored, the model's raw score, version
/// and verdict from `scored` (indexed like `data`).
pub fn records(
    data: &Dataset,
    rows: &[usize],
    label: impl Fn(usize) -> u8,
    scored: Option<&ScoredBatch>,
    notes: &str,
    origin: Origin,
) -> Vec<NewFeedback> {
    rows.iter()
        .map(|&i| NewFeedback {
            user_id: Some(data.user_ids[i].clone()),
            features: data.row(i),
            true_label: label(i),
            probability: scored.map(|s| s.score[i]),
            model_version: scored.map(|s| s.version),
            predicted: scored.map(|s| u8::from(s.is_spammer(i))),
            notes: notes.to_string(),
            origin,
        })
        .collect()
}

/// What storing feedback did.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The new records' ids, in order.
    pub ids: Vec<i64>,
    /// Why an automatic retrain is now due, if it is.
    pub retrain_due: Option<String>,
}

/// Stores `records` in one transaction and asks the store whether a retrain is due.
pub fn record(registry: &Registry, records: &[NewFeedback]) -> Result<Recorded> {
    record_by(registry, records, None)
}

/// [`record`], each record given by `moderator` (the app's moderator name).
pub fn record_by(
    registry: &Registry,
    records: &[NewFeedback],
    moderator: Option<&str>,
) -> Result<Recorded> {
    if let Some(m) = moderator {
        check_moderator_name(m)?;
    }
    let mut store = FeedbackStore::of(registry)?;
    let ids = store.add_batch_by(records, moderator)?;
    Ok(Recorded {
        ids,
        retrain_due: retrain_due_reason_in(registry, &store),
    })
}

/// What delivering feedback through the queue did.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Stored now.
    Stored(Recorded),
    /// Its idempotency key was delivered before with the same body: nothing was stored;
    /// the first delivery's id, whether it was linked, and its stored label.
    Replayed {
        id: i64,
        linked: bool,
        label: Option<u8>,
    },
}

impl Delivery {
    /// The record's id.
    pub fn id(&self) -> i64 {
        match self {
            Delivery::Stored(r) => r.ids.first().copied().unwrap_or_default(),
            Delivery::Replayed { id, .. } => *id,
        }
    }
}

/// Feedback from many callers at once (the service): one writer commits whatever
/// arrives together in one transaction, and whether a retrain is due is asked at most
/// once a second (it reads the settings, the versions and the store).
pub struct FeedbackQueue {
    registry: Registry,
    writer: FeedbackWriter,
    /// The store the "retrain due" check reads (opened once), and its last answer.
    due: Mutex<(FeedbackStore, Option<DueAnswer>)>,
}

/// When a "retrain due" answer was given, and the answer (the reason, if due).
type DueAnswer = (Instant, Option<String>);

/// How long a "retrain due" answer is reused.
const DUE_FOR: Duration = Duration::from_secs(1);

impl FeedbackQueue {
    /// The queue of `registry`'s feedback store; each of its connections waits at most
    /// `busy_wait` for another process's write lock before a busy error.
    pub fn open(registry: &Registry, busy_wait: Duration) -> Result<FeedbackQueue> {
        let open = || -> Result<FeedbackStore> {
            let mut store = FeedbackStore::of(registry)?;
            store.set_busy_wait(busy_wait)?;
            Ok(store)
        };
        Ok(FeedbackQueue {
            registry: registry.clone(),
            writer: FeedbackWriter::start(open()?)?,
            due: Mutex::new((open()?, None)),
        })
    }

    /// Stores one record given by `moderator` (about the logged prediction
    /// `prediction_id`, if any), record and attribution together. With an idempotency
    /// `key`, a replay of an earlier delivery stores nothing and answers like it, and
    /// the key with another body is a [`crate::Error::Conflict`].
    pub fn record_attributed(
        &self,
        record: NewFeedback,
        moderator: &str,
        prediction_id: Option<&str>,
        key: Option<IdempotencyKey>,
    ) -> Result<Delivery> {
        let out = self.writer.submit(Submission::Linked {
            record,
            moderator: Some(moderator.to_string()),
            prediction_id: prediction_id.map(str::to_string),
            key: key.clone(),
        })?;
        self.delivered(out, key.as_ref(), true)
    }

    /// Stores feedback on a prediction this registry never logged: it has no features,
    /// so it counts in the statistics and never in a retrain. `key` as in
    /// [`FeedbackQueue::record_attributed`].
    pub fn record_unlinked(
        &self,
        prediction_id: &str,
        is_correct: bool,
        actual_label: Option<u8>,
        notes: &str,
        moderator: &str,
        key: Option<IdempotencyKey>,
    ) -> Result<Delivery> {
        let out = self.writer.submit(Submission::Unlinked {
            prediction_id: prediction_id.to_string(),
            is_correct,
            actual_label,
            notes: notes.to_string(),
            moderator: moderator.to_string(),
            key: key.clone(),
        })?;
        self.delivered(out, key.as_ref(), false)
    }

    fn delivered(
        &self,
        out: Outcome,
        key: Option<&IdempotencyKey>,
        linked: bool,
    ) -> Result<Delivery> {
        match out {
            Outcome::Stored(id) => Ok(Delivery::Stored(Recorded {
                ids: vec![id],
                retrain_due: if linked { self.retrain_due() } else { None },
            })),
            Outcome::Replayed { id, linked, label } => Ok(Delivery::Replayed { id, linked, label }),
            Outcome::KeyReused => Err(crate::Error::Conflict(format!(
                "Idempotency-Key {} was used before with a different body; use a new key for new feedback",
                crate::util::text::quote(key.map_or("", |k| k.key()))
            ))),
        }
    }

    fn retrain_due(&self) -> Option<String> {
        let mut guard = self.due.lock().unwrap_or_else(|p| p.into_inner());
        let (store, due) = &mut *guard;
        match &*due {
            Some((at, reason)) if at.elapsed() < DUE_FOR => reason.clone(),
            _ => {
                let reason = retrain_due_reason_in(&self.registry, store);
                *due = Some((Instant::now(), reason.clone()));
                reason
            }
        }
    }
}

/// What an import stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub stored: usize,
    /// Records in the store afterwards.
    pub total: u64,
}

/// Imports the labelled accounts of `d` (read from `source`) as feedback: scored with
/// the active version when there is one (so the model's verdict and agreement are
/// known), stored `batch` records per transaction (the settings' `batch_size` when
/// None). Every front-end imports through it.
pub fn import(
    registry: &Registry,
    d: &Dataset,
    source: &str,
    batch: Option<usize>,
    reporter: &dyn crate::util::progress::Reporter,
) -> Result<Imported> {
    let batch = match batch {
        Some(b) => b,
        None => crate::ops::settings::OnlineLearningConfig::load(registry)?.batch_size,
    };
    if batch == 0 {
        return Err(crate::Error::Invalid("batch must be at least 1".into()));
    }
    let labels = d.require_labels()?;
    let scored = match registry.active()? {
        Some(_) => {
            let (m, model) = registry.load_active()?;
            Some(crate::ops::score::score_batch(
                d,
                &model,
                m.version,
                m.threshold,
                0,
                crate::model::explain::Method::PathAttribution,
                reporter,
            )?)
        }
        None => None,
    };
    let mut store = FeedbackStore::of(registry)?;
    let rows: Vec<usize> = (0..d.n_rows()).collect();
    let notes = format!("imported from {source}");
    let mut stored = 0usize;
    for chunk in rows.chunks(batch) {
        reporter.stage("storing feedback", stored, rows.len());
        let recs = records(
            d,
            chunk,
            |i| labels[i],
            scored.as_ref(),
            &notes,
            Origin::Import,
        );
        store.add_batch(&recs)?;
        stored += recs.len();
    }
    reporter.stage("storing feedback", stored, rows.len());
    Ok(Imported {
        stored,
        total: store.count()?,
    })
}

/// Longest moderator name, in bytes (a token's name has the same limit).
pub const MAX_MODERATOR_NAME: usize = 64;

/// A moderator name: 1 to [`MAX_MODERATOR_NAME`] bytes, no control characters, not
/// only spaces.
pub fn check_moderator_name(name: &str) -> Result<()> {
    let ok = !name.trim().is_empty()
        && name.len() <= MAX_MODERATOR_NAME
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(crate::ops::Error::Invalid(format!(
            "moderator name {}: 1 to {MAX_MODERATOR_NAME} bytes without control characters",
            crate::util::text::quote(name)
        )))
    }
}
