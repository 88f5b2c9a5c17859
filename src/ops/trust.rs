//! How far each moderator's labels can be trusted (agreement with confirmed labels and
//! with the other moderators), and what that makes a feedback record weigh in a retrain.

use crate::ops::error::Result;
use crate::store::feedback::{FeedbackStore, ModeratorStats};
use std::collections::HashMap;

/// How many comparisons' worth of the prior each trust estimate starts from.
pub const TRUST_PRIOR: f64 = 10.0;

/// Each moderator's trust, from 0 to 1: an estimate of how often their labels are
/// right, preferring accounts whose final label was confirmed.
///
/// With `K` = [`TRUST_PRIOR`], for a moderator with `a` of `c` records agreeing with
/// the confirmed labels (accounts confirmed by someone else) and `q` of `p` pairs
/// agreeing with another moderator's label on the same account:
///
/// - the team's rate `T` = all moderators' `Σq / Σp` (or `Σa / Σc` when nobody shares
///   an account);
/// - the peer estimate `peer = (q + K·T) / (p + K)`: agreement with the others, shrunk
///   toward the team's as if they had `K` more pairs at the team's rate;
/// - `trust = (a + K·peer) / (c + K)`: agreement with the confirmed labels, shrunk
///   toward the peer estimate.
///
/// So confirmed labels decide once a moderator has many records on confirmed accounts;
/// without any, trust is the peer estimate; a newcomer with few records of either kind
/// gets about the team's figure. None when there is nothing to compare (no shared
/// accounts and no confirmed ones); records without a moderator get None too.
pub fn trust(stats: &[ModeratorStats]) -> Vec<Option<f64>> {
    let named = stats.iter().filter(|m| m.moderator.is_some());
    let (q, p, a, c) = named.fold((0u64, 0u64, 0u64, 0u64), |(q, p, a, c), m| {
        (
            q + m.agreed_with_others,
            p + m.pairs_with_others,
            a + m.agreed_with_confirmed,
            c + m.confirmed,
        )
    });
    let team = if p > 0 {
        q as f64 / p as f64
    } else if c > 0 {
        a as f64 / c as f64
    } else {
        return vec![None; stats.len()];
    };
    stats
        .iter()
        .map(|m| {
            m.moderator.as_ref().map(|_| {
                let peer = (m.agreed_with_others as f64 + TRUST_PRIOR * team)
                    / (m.pairs_with_others as f64 + TRUST_PRIOR);
                (m.agreed_with_confirmed as f64 + TRUST_PRIOR * peer)
                    / (m.confirmed as f64 + TRUST_PRIOR)
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
    use crate::store::feedback::{NewFeedback, Origin, Submission};

    /// A record of `who` labelling account `acct-{user}` as `label`.
    fn labelled_by(who: &str, user: usize, label: u8) -> Submission {
        Submission::Linked {
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
            key: None,
        }
    }

    /// A team of four on 60 accounts: three label the truth, one labels at random;
    /// a fifth moderator labelled one account, truthfully.
    #[test]
    fn a_moderator_who_labels_at_random_gets_a_low_trust() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FeedbackStore::open_in(dir.path()).unwrap();
        let mut rng = crate::util::rng::SplitMix64::new(7);
        let mut subs = Vec::new();
        let mut give = |who: &str, user: usize, label: u8| subs.push(labelled_by(who, user, label));
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

    /// A team of four on 200 shared accounts, half of them with a confirmed final label
    /// (by a lead who gave no feedback): three label the truth with 5% mistakes, one
    /// at random. Confirmed labels make the difference clear (peer agreement alone
    /// mixes the honest ones' agreement with the random one into theirs); a newcomer
    /// with two records sits near the team.
    #[test]
    fn confirmed_labels_separate_a_random_labeller_from_a_careful_team() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FeedbackStore::open_in(dir.path()).unwrap();
        let mut rng = crate::util::rng::SplitMix64::new(11);
        let mut subs = Vec::new();
        let mut give = |who: &str, user: usize, label: u8| subs.push(labelled_by(who, user, label));
        let truth = |u: usize| u8::from(u.is_multiple_of(3));
        for u in 0..200 {
            for who in ["ann", "ben", "cat"] {
                let slip = rng.next_f64() < 0.05;
                give(who, u, if slip { 1 - truth(u) } else { truth(u) });
            }
            give("rnd", u, u8::from(rng.next_f64() < 0.5));
        }
        give("new", 0, truth(0));
        give("new", 1, truth(1));
        assert!(
            store
                .add_submissions(&subs)
                .unwrap()
                .iter()
                .all(|r| r.is_ok())
        );
        let confirmed: Vec<(UserId, u8)> = (0..100)
            .map(|u| (UserId::from(format!("acct-{u}").as_str()), truth(u)))
            .collect();
        store
            .confirm_labels(&confirmed, "lead", "", std::time::SystemTime::now())
            .unwrap();
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
        assert!(honest.iter().all(|&x| x > 0.85), "{honest:?}");
        assert!(of("rnd") < 0.65, "{}", of("rnd"));
        // Without the confirmations the same team's honest trusts are lower (their
        // peers include the random labeller).
        let peer_only: Vec<ModeratorStats> = stats
            .iter()
            .map(|m| ModeratorStats {
                confirmed: 0,
                agreed_with_confirmed: 0,
                ..m.clone()
            })
            .collect();
        let before = trust(&peer_only);
        let ann = stats
            .iter()
            .position(|m| m.moderator.as_deref() == Some("ann"))
            .unwrap();
        assert!(before[ann].unwrap() < of("ann") - 0.05, "{before:?}");
        // The newcomer's two records barely move them from the team's mean.
        let team = (honest.iter().sum::<f64>() + of("rnd")) / 4.0;
        assert!((of("new") - team).abs() < 0.1, "{} vs {team}", of("new"));
        // Trust weighting in a retrain follows.
        let by_name = trust_by_moderator(&store).unwrap();
        let w = |m: &str| record_weight(5.0, Some(m), &by_name);
        assert!(w("rnd") < 0.75 * w("ann"), "{} {}", w("rnd"), w("ann"));
        // Only confirmed accounts, nobody sharing one: trust still defined.
        let lone = [ModeratorStats {
            moderator: Some("solo".into()),
            records: 4,
            judged: 0,
            agreed_with_model: 0,
            pairs_with_others: 0,
            agreed_with_others: 0,
            confirmed: 4,
            agreed_with_confirmed: 4,
        }];
        assert_eq!(trust(&lone), vec![Some(1.0)]);
    }
}
