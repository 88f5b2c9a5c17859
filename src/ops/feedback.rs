//! Moderators' feedback as every front-end records it: records built from scored
//! accounts, stored in one transaction, and the store's check whether that made an
//! automatic retrain due.

use crate::data::Dataset;
use crate::ops::error::Result;
use crate::ops::online::retrain_due_reason;
use crate::ops::score::ScoredBatch;
use crate::store::Registry;
use crate::store::feedback::{FeedbackStore, NewFeedback, Origin};

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

/// Stores one record given through the service by `moderator` (about the logged
/// prediction `prediction_id`, if any) and asks whether a retrain is due.
pub fn record_attributed(
    registry: &Registry,
    record: &NewFeedback,
    moderator: &str,
    prediction_id: Option<&str>,
) -> Result<Recorded> {
    let id = FeedbackStore::open_in(registry.root())?.add_attributed(
        record,
        moderator,
        prediction_id,
    )?;
    Ok(Recorded {
        ids: vec![id],
        retrain_due: retrain_due_reason(registry),
    })
}

/// Stores feedback on a prediction this registry never logged: it has no features,
/// so it counts in the statistics and never in a retrain.
pub fn record_unlinked(
    registry: &Registry,
    prediction_id: &str,
    is_correct: bool,
    actual_label: Option<u8>,
    notes: &str,
    moderator: &str,
) -> Result<i64> {
    Ok(FeedbackStore::open_in(registry.root())?.add_unlinked(
        prediction_id,
        is_correct,
        actual_label,
        notes,
        moderator,
    )?)
}
