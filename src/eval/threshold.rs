//! Thresholds from what a team decides by: a target precision, a review capacity, or
//! the costs of a missed spammer and of a wrongly blocked account. Each is read off a
//! version's holdout (labels and raw scores) and reported as the operating point it
//! gives there: precision, recall, and the share (and daily number) of accounts flagged.

use crate::eval::metrics::{MetricsError, Ranked, check};
use serde::{Deserialize, Serialize};

/// What the threshold is chosen by.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Criterion {
    /// The lowest threshold (most spammers caught) whose precision is at least this.
    Precision(f64),
    /// At most this many accounts flagged per day.
    Capacity { per_day: f64 },
    /// The least expected cost: `missed` per spammer let through, `blocked` per
    /// legitimate account flagged.
    Cost { missed: f64, blocked: f64 },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ThresholdError {
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("{0}")]
    Invalid(String),
    #[error("no threshold reaches a precision of {0:.3} on the holdout")]
    Unreachable(f64),
}

/// A threshold and what it gives on the holdout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// Raw score strictly above which an account is a spammer.
    pub threshold: f64,
    pub precision: f64,
    pub recall: f64,
    /// Share of accounts flagged.
    pub flagged_share: f64,
    /// Accounts flagged per day at the stated daily volume.
    pub flagged_per_day: f64,
    /// Expected cost per account (for [`Criterion::Cost`]; 0 otherwise).
    pub cost_per_account: f64,
}

/// The operating point of `threshold` on the holdout.
pub fn at(
    labels: &[u8],
    scores: &[f64],
    threshold: f64,
    daily_volume: f64,
) -> Result<OperatingPoint, MetricsError> {
    check(labels, scores)?;
    Ok(OperatingPoint::at(
        &Ranked::new(labels, scores),
        threshold,
        daily_volume,
    ))
}

impl OperatingPoint {
    /// The operating point of `threshold` on ranked holdout scores (what the Evaluate
    /// tab's slider shows).
    pub fn at(r: &Ranked, threshold: f64, daily_volume: f64) -> OperatingPoint {
        point(r, threshold, daily_volume, None)
    }
}

fn point(
    r: &Ranked,
    threshold: f64,
    daily_volume: f64,
    cost: Option<(f64, f64)>,
) -> OperatingPoint {
    let c = r.confusion_above(threshold);
    let n = c.total() as f64;
    let flagged_share = (c.tp + c.fp) as f64 / n;
    OperatingPoint {
        threshold,
        // Nothing flagged: no false alarm, precision 1 by convention here.
        precision: if c.tp + c.fp == 0 { 1.0 } else { c.precision() },
        recall: c.recall(),
        flagged_share,
        flagged_per_day: flagged_share * daily_volume,
        cost_per_account: cost.map_or(0.0, |(m, b)| (m * c.fn_ as f64 + b * c.fp as f64) / n),
    }
}

/// Chooses a threshold on the holdout (labels, raw scores) by `criterion`, with
/// `daily_volume` accounts scored per day. Thresholds fall halfway between adjacent
/// distinct scores, so a slightly different score on new data lands on the same side.
pub fn choose(
    labels: &[u8],
    scores: &[f64],
    criterion: Criterion,
    daily_volume: f64,
) -> Result<OperatingPoint, ThresholdError> {
    check(labels, scores)?;
    choose_on(&Ranked::new(labels, scores), criterion, daily_volume)
}

/// [`choose`] on ranked holdout scores (built once for several points).
pub fn choose_on(
    r: &Ranked,
    criterion: Criterion,
    daily_volume: f64,
) -> Result<OperatingPoint, ThresholdError> {
    let invalid = |m: String| Err(ThresholdError::Invalid(m));
    if !(daily_volume.is_finite() && daily_volume > 0.0) {
        return invalid(format!(
            "the daily volume must be a positive number of accounts, got {daily_volume}"
        ));
    }
    // Candidate thresholds, strictly decreasing: above every score (flag nothing),
    // then between each distinct score and the next lower one, then below all.
    let distinct: Vec<f64> = r.scores().collect();
    let mut candidates = Vec::with_capacity(distinct.len() + 1);
    candidates.push(1.0f64.max(distinct[0]));
    for w in distinct.windows(2) {
        candidates.push((w[0] + w[1]) / 2.0);
    }
    candidates.push((distinct[distinct.len() - 1] / 2.0).max(0.0));
    let n = r.rows() as f64;
    let cost = match criterion {
        Criterion::Cost { missed, blocked } => Some((missed, blocked)),
        _ => None,
    };
    let best = match criterion {
        Criterion::Precision(target) => {
            if !(target > 0.0 && target <= 1.0) {
                return invalid(format!(
                    "the target precision must be above 0 and at most 1, got {target}"
                ));
            }
            // The lowest threshold still at the target.
            candidates
                .iter()
                .rev()
                .map(|&t| point(r, t, daily_volume, None))
                .find(|p| p.flagged_share > 0.0 && p.precision >= target)
                .ok_or(ThresholdError::Unreachable(target))?
        }
        Criterion::Capacity { per_day } => {
            if !(per_day.is_finite() && per_day >= 0.0) {
                return invalid(format!(
                    "the review capacity must be a number of accounts per day, got {per_day}"
                ));
            }
            // The lowest threshold flagging no more than the team can review.
            let allowed = (per_day / daily_volume * n).floor();
            candidates
                .iter()
                .rev()
                .map(|&t| (t, r.confusion_above(t)))
                .find(|(_, c)| (c.tp + c.fp) as f64 <= allowed)
                .map(|(t, _)| point(r, t, daily_volume, None))
                .expect("the first candidate flags nothing")
        }
        Criterion::Cost { missed, blocked } => {
            if !(missed.is_finite() && blocked.is_finite() && missed >= 0.0 && blocked >= 0.0)
                || missed + blocked <= 0.0
            {
                return invalid(format!(
                    "the costs must be non-negative and not both 0, got missed {missed}, blocked {blocked}"
                ));
            }
            candidates
                .iter()
                .map(|&t| point(r, t, daily_volume, cost))
                .min_by(|a, b| a.cost_per_account.total_cmp(&b.cost_per_account))
                .expect("at least two candidates")
        }
    };
    Ok(OperatingPoint {
        threshold: best.threshold.clamp(0.0, 1.0),
        ..best
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Scores .9 .8 .7 .6 .5 .4 .3 .2 with labels 1 1 0 1 0 0 1 0.
    const S: [f64; 8] = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2];
    const Y: [u8; 8] = [1, 1, 0, 1, 0, 0, 1, 0];

    #[test]
    fn precision_target_takes_the_lowest_threshold_still_at_it() {
        // Flagging the top 2: precision 1; top 4: 3/4; top 7: 4/7.
        let p = choose(&Y, &S, Criterion::Precision(0.75), 100.0).unwrap();
        assert!((p.threshold - 0.55).abs() < 1e-12, "{p:?}");
        assert_eq!((p.precision, p.recall, p.flagged_share), (0.75, 0.75, 0.5));
        assert_eq!(p.flagged_per_day, 50.0);
        let p = choose(&Y, &S, Criterion::Precision(1.0), 100.0).unwrap();
        assert!((p.threshold - 0.75).abs() < 1e-12, "{p:?}");
        // The verdict rule agrees: scores strictly above the threshold are flagged.
        assert_eq!(
            at(&Y, &S, p.threshold, 100.0).unwrap(),
            OperatingPoint {
                cost_per_account: 0.0,
                ..p
            }
        );
        assert!(matches!(
            choose(&Y, &S, Criterion::Precision(0.0), 100.0),
            Err(ThresholdError::Invalid(_))
        ));
    }

    #[test]
    fn capacity_flags_no_more_than_the_team_reviews() {
        // 8 accounts stand for 1,000 a day; 300 a day allows 2 of the 8.
        let p = choose(&Y, &S, Criterion::Capacity { per_day: 300.0 }, 1000.0).unwrap();
        assert_eq!(p.flagged_share, 0.25);
        assert_eq!(p.flagged_per_day, 250.0);
        assert!((p.threshold - 0.75).abs() < 1e-12);
        let p = choose(&Y, &S, Criterion::Capacity { per_day: 0.0 }, 1000.0).unwrap();
        assert_eq!(p.flagged_share, 0.0);
        let p = choose(&Y, &S, Criterion::Capacity { per_day: 5000.0 }, 1000.0).unwrap();
        assert_eq!(p.flagged_share, 1.0);
    }

    #[test]
    fn costs_pick_the_cheapest_point() {
        // A missed spammer costs 10, a blocked user 1: flag down to .3 (cost 3 FP / 8).
        let p = choose(
            &Y,
            &S,
            Criterion::Cost {
                missed: 10.0,
                blocked: 1.0,
            },
            8.0,
        )
        .unwrap();
        assert!((p.threshold - 0.25).abs() < 1e-12, "{p:?}");
        assert_eq!(p.recall, 1.0);
        assert!((p.cost_per_account - 3.0 / 8.0).abs() < 1e-12);
        // Blocking is dear: flag only the sure ones.
        let p = choose(
            &Y,
            &S,
            Criterion::Cost {
                missed: 1.0,
                blocked: 10.0,
            },
            8.0,
        )
        .unwrap();
        assert!((p.threshold - 0.75).abs() < 1e-12, "{p:?}");
        assert!(matches!(
            choose(
                &Y,
                &S,
                Criterion::Cost {
                    missed: -1.0,
                    blocked: 1.0
                },
                8.0
            ),
            Err(ThresholdError::Invalid(_))
        ));
        assert!(matches!(
            choose(&Y, &S, Criterion::Capacity { per_day: 1.0 }, 0.0),
            Err(ThresholdError::Invalid(_))
        ));
    }
}
