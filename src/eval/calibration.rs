//! How far scores are from probabilities: the reliability diagram (ten equal-width
//! bins), expected calibration error and Brier score, and an honest estimate of a
//! calibration's effect on the accounts it is fitted on (cross-fitted halves).

use crate::eval::metrics::{MetricsError, check};
use crate::model::calibrate::{Calibration, CalibrationError};
use serde::{Deserialize, Serialize};

/// One bin of the reliability diagram: accounts whose probability is in `[lo, hi)`
/// (the last bin includes 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub count: u64,
    /// Mean predicted probability of the accounts in the bin (NaN when empty).
    pub predicted: f64,
    /// Share of spammers among them (NaN when empty).
    pub observed: f64,
}

/// Calibration of probabilities against 0/1 labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reliability {
    pub bins: Vec<Bin>,
    /// Expected calibration error: the count-weighted mean of |predicted − observed|
    /// over the bins.
    pub ece: f64,
    /// Mean squared difference between probability and label.
    pub brier: f64,
    /// Mean probability and observed spam rate over all accounts.
    pub mean_predicted: f64,
    pub observed: f64,
}

/// The reliability diagram over `n_bins` equal-width bins of `[0, 1]`.
pub fn reliability(
    labels: &[u8],
    probs: &[f64],
    n_bins: usize,
) -> Result<Reliability, MetricsError> {
    check(labels, probs)?;
    let n_bins = n_bins.max(1);
    let mut sums = vec![(0u64, 0.0f64, 0u64); n_bins];
    let mut brier = 0.0;
    for (&y, &p) in labels.iter().zip(probs) {
        let p = p.clamp(0.0, 1.0);
        let b = ((p * n_bins as f64) as usize).min(n_bins - 1);
        sums[b].0 += 1;
        sums[b].1 += p;
        sums[b].2 += u64::from(y);
        brier += (p - f64::from(y)).powi(2);
    }
    let n = labels.len() as f64;
    let bins: Vec<Bin> = sums
        .iter()
        .enumerate()
        .map(|(k, &(count, psum, pos))| Bin {
            lo: k as f64 / n_bins as f64,
            hi: (k + 1) as f64 / n_bins as f64,
            count,
            predicted: psum / count as f64,
            observed: pos as f64 / count as f64,
        })
        .collect();
    let ece = bins
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| b.count as f64 / n * (b.predicted - b.observed).abs())
        .sum();
    Ok(Reliability {
        ece,
        brier: brier / n,
        mean_predicted: probs.iter().sum::<f64>() / n,
        observed: labels.iter().map(|&l| f64::from(l)).sum::<f64>() / n,
        bins,
    })
}

/// Calibrated probabilities of `scores` where no account's own label took part in its
/// calibration: each half of the accounts (alternate rows of each class) is calibrated
/// on the other half. What a calibration fitted on these accounts does to accounts it
/// has not seen, measured on these accounts.
pub fn cross_fitted(labels: &[u8], scores: &[f64]) -> Result<Vec<f64>, CalibrationError> {
    if labels.len() != scores.len() {
        return Err(CalibrationError::Length(scores.len(), labels.len()));
    }
    // Alternate rows within each class, so both halves keep the spam rate.
    let mut seen = [0usize; 2];
    let half: Vec<usize> = labels
        .iter()
        .map(|&l| {
            let c = usize::from(l.min(1));
            seen[c] += 1;
            seen[c] % 2
        })
        .collect();
    let mut out = vec![0.0; scores.len()];
    for h in 0..2 {
        let (s, y): (Vec<f64>, Vec<u8>) = (0..scores.len())
            .filter(|&i| half[i] != h)
            .map(|i| (scores[i], labels[i]))
            .unzip();
        let c = Calibration::fit(&s, &y)?;
        for i in (0..scores.len()).filter(|&i| half[i] == h) {
            out[i] = c.apply(scores[i]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reliability_by_hand() {
        // Bins of .5: [0, .5) holds .1, .2, .4 (one spammer), [.5, 1] holds .6, 1.0
        // (two spammers).
        let r = reliability(&[0, 1, 0, 1, 1], &[0.1, 0.2, 0.4, 0.6, 1.0], 2).unwrap();
        assert_eq!(r.bins[0].count, 3);
        assert!((r.bins[0].predicted - 0.7 / 3.0).abs() < 1e-12);
        assert!((r.bins[0].observed - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.bins[1].count, 2);
        assert!((r.bins[1].predicted - 0.8).abs() < 1e-12);
        assert_eq!(r.bins[1].observed, 1.0);
        let ece = 0.6 * (0.7f64 / 3.0 - 1.0 / 3.0).abs() + 0.4 * 0.2;
        assert!((r.ece - ece).abs() < 1e-12, "{}", r.ece);
        let brier = (0.01 + 0.64 + 0.16 + 0.16 + 0.0) / 5.0;
        assert!((r.brier - brier).abs() < 1e-12);
        assert!((r.mean_predicted - 0.46).abs() < 1e-12);
        assert_eq!(r.observed, 0.6);
        assert!(reliability(&[0, 0], &[0.1, 0.2], 10).is_err());
    }

    #[test]
    fn cross_fitting_calibrates_each_half_on_the_other() {
        // Over-stated scores: the true probability is s².
        let n = 40_000;
        let mut state = 11u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (s, y): (Vec<f64>, Vec<u8>) = (0..n)
            .map(|_| {
                let s = next();
                (s, u8::from(next() < s * s))
            })
            .unzip();
        let before = reliability(&y, &s, 10).unwrap();
        let after = reliability(&y, &cross_fitted(&y, &s).unwrap(), 10).unwrap();
        assert!(before.ece > 0.1, "{}", before.ece);
        assert!(after.ece < 0.02, "{}", after.ece);
        assert!(after.brier < before.brier);
        // Each half went through the map fitted on the other half only.
        let p = cross_fitted(&y, &s).unwrap();
        let mut seen = [0usize; 2];
        let odd: Vec<usize> = (0..n)
            .filter(|&i| {
                seen[usize::from(y[i])] += 1;
                seen[usize::from(y[i])] % 2 == 1
            })
            .collect();
        let (os, oy): (Vec<f64>, Vec<u8>) = (0..n)
            .filter(|i| odd.binary_search(i).is_err())
            .map(|i| (s[i], y[i]))
            .unzip();
        let other = Calibration::fit(&os, &oy).unwrap();
        for &i in odd.iter().take(100) {
            assert_eq!(p[i], other.apply(s[i]));
        }
    }
}
