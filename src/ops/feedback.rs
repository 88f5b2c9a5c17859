//! Moderators' feedback as every front-end records it: records built from scored
//! accounts, stored in one transaction, and the store's check whether that made an
//! automatic retrain due.

use crate::data::Dataset;
use crate::ops::error::Result;
use crate::ops::online::retrain_due_reason;
use crate::ops::score::ScoredBatch;
use crate::store::Registry;
use crate::store::feedback::{
    FeedbackStore, FeedbackWriter, ModeratorStats, NewFeedback, Origin, Submission,
};
use std::collections::HashMap;
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

/// How many shared accounts' worth of the team's agreement a moderator's trust starts
/// from.
pub const TRUST_PRIOR: f64 = 10.0;

/// Each moderator's trust, from 0 to 1: how often their labels agree with other
/// moderators' labels on the same accounts, shrunk toward the team's agreement as if
/// they had [`TRUST_PRIOR`] more pairs at the team's rate. A newcomer with few shared
/// accounts gets about the team's figure; one whose labels the others contradict on many
/// accounts gets a low one. None when nobody shares an account (nothing to compare);
/// records without a moderator get None too.
pub fn trust(stats: &[ModeratorStats]) -> Vec<Option<f64>> {
    let named = stats.iter().filter(|m| m.moderator.is_some());
    let (agreed, pairs) = named.fold((0u64, 0u64), |(a, p), m| {
        (a + m.agreed_with_others, p + m.pairs_with_others)
    });
    if pairs == 0 {
        return vec![None; stats.len()];
    }
    let team = agreed as f64 / pairs as f64;
    stats
        .iter()
        .map(|m| {
            m.moderator.as_ref().map(|_| {
                (m.agreed_with_others as f64 + TRUST_PRIOR * team)
                    / (m.pairs_with_others as f64 + TRUST_PRIOR)
            })
        })
        .collect()
}

/// Each moderator's trust ([`trust`]) by name, from the store's statistics.
pub fn trust_by_moderator(store: &FeedbackStore) -> Result<HashMap<String, f64>> {
    let stats = store.moderator_stats()?;
    let trust = trust(&stats);
    Ok(stats
        .into_iter()
        .zip(trust)
        .filter_map(|(m, t)| Some((m.moderator?, t?)))
        .collect())
}

/// A feedback record's training weight: `base`, times its moderator's trust when there
/// is one (records without a moderator, or of a moderator without a trust, keep `base`).
pub fn record_weight(base: f64, moderator: Option<&str>, trust: &HashMap<String, f64>) -> f64 {
    base * moderator.and_then(|m| trust.get(m)).copied().unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::UserId;
    use crate::data::catalog::N_FEATURES;

    /// A team of four on 60 accounts: three label the truth, one labels at random;
    /// a fifth moderator labelled one account, truthfully.
    #[test]
    fn a_moderator_who_labels_at_random_gets_a_low_trust() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FeedbackStore::open_in(dir.path()).unwrap();
        let mut rng = crate::util::rng::SplitMix64::new(7);
        let mut subs = Vec::new();
        let mut give = |who: &str, user: usize, label: u8| {
            subs.push(Submission::Linked {
                record: NewFeedback {
                    user_id: Some(UserId::from(format!("acct-{user}").as_str())),
                    features: vec![0.0; N_FEATURES],
                    true_label: label,
                    probability: None,
                    model_version: None,
                    predicted: None,
                    notes: String::new(),
                    origin: Origin::Service,
                },
                moderator: Some(who.to_string()),
                prediction_id: None,
            })
        };
        for u in 0..60 {
            let truth = u8::from(u % 3 == 0);
            for who in ["ann", "ben", "cat"] {
                give(who, u, truth);
            }
            give("rnd", u, u8::from(rng.next_f64() < 0.5));
        }
        give("new", 0, 1);
        assert!(
            store
                .add_submissions(&subs)
                .unwrap()
                .iter()
                .all(|r| r.is_ok())
        );
        let stats = store.moderator_stats().unwrap();
        let t = trust(&stats);
        let of = |name: &str| {
            let i = stats
                .iter()
                .position(|m| m.moderator.as_deref() == Some(name))
                .unwrap();
            t[i].unwrap()
        };
        let honest = ["ann", "ben", "cat"].map(of);
        assert!(honest.iter().all(|&x| x > 0.75), "{honest:?}");
        assert!(of("rnd") < 0.6, "{}", of("rnd"));
        assert!(honest.iter().all(|&x| x - of("rnd") > 0.2));
        // The newcomer's four pairs barely move them from the team's agreement.
        let team: f64 = stats.iter().map(|m| m.agreed_with_others).sum::<u64>() as f64
            / stats.iter().map(|m| m.pairs_with_others).sum::<u64>() as f64;
        assert!((of("new") - team).abs() < 0.1, "{} vs {team}", of("new"));
        // Nothing shared, nothing to say.
        assert_eq!(trust(&stats[..0]), Vec::<Option<f64>>::new());
        // With trust weighting the random labeller's records count for less in a
        // retrain; records without a moderator keep the base weight.
        let by_name = trust_by_moderator(&store).unwrap();
        let w = |m: Option<&str>| record_weight(5.0, m, &by_name);
        assert!(
            w(Some("rnd")) < w(Some("ann")) - 1.0,
            "{} {}",
            w(Some("rnd")),
            w(Some("ann"))
        );
        assert_eq!(w(None), 5.0);
        assert_eq!(w(Some("someone else")), 5.0);
    }
}
