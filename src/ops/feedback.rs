//! Moderators' feedback as every front-end records it: records built from scored
//! accounts, stored in one transaction, and the store's check whether that made an
//! automatic retrain due.

use crate::data::Dataset;
use crate::ops::error::Result;
use crate::ops::online::retrain_due_reason;
use crate::ops::score::ScoredBatch;
use crate::store::Registry;
use crate::store::feedback::{FeedbackStore, FeedbackWriter, NewFeedback, Origin, Submission};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One feedback record per row of `rows`: the account's values from `data`, its true
/// label from `label`, and, when the rows were scored, the model's probability, version
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
            probability: scored.map(|s| s.probability[i]),
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
    let ids = FeedbackStore::open_in(registry.root())?.add_batch(records)?;
    Ok(Recorded {
        ids,
        retrain_due: retrain_due_reason(registry),
    })
}

/// Feedback from many callers at once (the service): one writer commits whatever
/// arrives together in one transaction, and whether a retrain is due is asked at most
/// once a second (it reads the settings, the versions and the store).
pub struct FeedbackQueue {
    registry: Registry,
    writer: FeedbackWriter,
    due: Mutex<Option<(Instant, Option<String>)>>,
}

/// How long a "retrain due" answer is reused.
const DUE_FOR: Duration = Duration::from_secs(1);

impl FeedbackQueue {
    pub fn open(registry: &Registry) -> Result<FeedbackQueue> {
        Ok(FeedbackQueue {
            registry: registry.clone(),
            writer: FeedbackWriter::open_in(registry.root())?,
            due: Mutex::new(None),
        })
    }

    /// Stores one record given by `moderator` (about the logged prediction
    /// `prediction_id`, if any), record and attribution together.
    pub fn record_attributed(
        &self,
        record: NewFeedback,
        moderator: &str,
        prediction_id: Option<&str>,
    ) -> Result<Recorded> {
        let id = self.writer.submit(Submission::Linked {
            record,
            moderator: Some(moderator.to_string()),
            prediction_id: prediction_id.map(str::to_string),
        })?;
        Ok(Recorded {
            ids: vec![id],
            retrain_due: self.retrain_due(),
        })
    }

    /// Stores feedback on a prediction this registry never logged: it has no features,
    /// so it counts in the statistics and never in a retrain.
    pub fn record_unlinked(
        &self,
        prediction_id: &str,
        is_correct: bool,
        actual_label: Option<u8>,
        notes: &str,
        moderator: &str,
    ) -> Result<i64> {
        Ok(self.writer.submit(Submission::Unlinked {
            prediction_id: prediction_id.to_string(),
            is_correct,
            actual_label,
            notes: notes.to_string(),
            moderator: moderator.to_string(),
        })?)
    }

    fn retrain_due(&self) -> Option<String> {
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        match &*due {
            Some((at, reason)) if at.elapsed() < DUE_FOR => reason.clone(),
            _ => {
                let reason = retrain_due_reason(&self.registry);
                *due = Some((Instant::now(), reason.clone()));
                reason
            }
        }
    }
}
