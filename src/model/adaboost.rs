//! scikit-learn's `AdaBoostClassifier` with its defaults: the SAMME algorithm over 50
//! decision stumps (depth-1 Gini trees), learning rate 1, no class weights.
//!
//! Round `m` fits a stump to the current row weights, takes its weighted error `e`,
//! gives it the say `a_m = lr * ln((1 - e) / e)`, multiplies the weights of the rows it
//! got wrong by `exp(a_m)` and normalises. scikit-learn's probability for two classes is
//! the logistic function of `d(x) = 2 * sum_m a_m * s_m(x) / sum_m a_m`, with `s_m = +1`
//! when stump `m` says spammer and `-1` otherwise. Every stump reads one feature, so `d`
//! is a sum of one term per feature: the model is additive in log-odds and explained
//! exactly by those terms, like logistic regression.
//!
//! Stumps split between the forest's quantile bins (at most 256 per feature, one bin per
//! value when a feature has no more distinct values than that), so a split on a feature
//! with more distinct values can sit at a slightly different threshold than scikit-
//! learn's exact search; ties between equally good features go to the lower column
//! (scikit-learn draws the order of features at random).

use crate::model::forest::binning::BinnedData;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// One decision stump: `x[feature] <= threshold` says `left`, otherwise `right` (0 or
/// 1). A stump that found no split has an infinite threshold (every row goes left).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stump {
    pub feature: u16,
    pub threshold: f64,
    pub left: u8,
    pub right: u8,
    /// Its say in the vote (SAMME's estimator weight).
    pub weight: f64,
}

impl Stump {
    /// +1 when the stump says spammer, -1 otherwise.
    fn sign(&self, x: &[f64]) -> f64 {
        let class = if x[self.feature as usize] <= self.threshold {
            self.left
        } else {
            self.right
        };
        if class == 1 { 1.0 } else { -1.0 }
    }

    fn constant(&self) -> bool {
        self.threshold == f64::INFINITY || self.left == self.right
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaBoost {
    pub stumps: Vec<Stump>,
}

/// Why AdaBoost could not be fitted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AdaBoostError {
    #[error("AdaBoost's first stump is no better than chance (weighted error {0:.3})")]
    NoBetterThanChance(f64),
}

impl AdaBoost {
    /// Fits on imputed column-major features and 0/1 labels; `weights` (if any) are the
    /// rows' starting weights, as scikit-learn's `sample_weight`.
    pub fn fit(
        columns: &[&[f64]],
        labels: &[u8],
        weights: Option<&[f64]>,
        estimators: usize,
        learning_rate: f64,
    ) -> Result<AdaBoost, AdaBoostError> {
        let n = labels.len();
        let binned = BinnedData::build(columns, 256);
        let mut w: Vec<f64> = match weights {
            Some(w) => w.to_vec(),
            None => vec![1.0; n],
        };
        let total: f64 = w.iter().sum();
        w.iter_mut().for_each(|v| *v /= total);
        let mut stumps = Vec::with_capacity(estimators);
        for m in 0..estimators {
            let mut stump = best_stump(&binned, labels, &w);
            let wrong: Vec<bool> = (0..n)
                .map(|i| {
                    let class = if columns[stump.feature as usize][i] <= stump.threshold {
                        stump.left
                    } else {
                        stump.right
                    };
                    class != labels[i]
                })
                .collect();
            let sum: f64 = w.iter().sum();
            let error = w
                .iter()
                .zip(&wrong)
                .filter(|(_, b)| **b)
                .map(|(v, _)| v)
                .sum::<f64>()
                / sum;
            if error <= 0.0 {
                // A perfect stump: scikit-learn keeps it with weight 1 and stops.
                stump.weight = 1.0;
                stumps.push(stump);
                break;
            }
            if error >= 0.5 {
                if stumps.is_empty() {
                    return Err(AdaBoostError::NoBetterThanChance(error));
                }
                break;
            }
            stump.weight = learning_rate * ((1.0 - error) / error).ln();
            if m + 1 < estimators {
                let boost = stump.weight.exp();
                for (v, &bad) in w.iter_mut().zip(&wrong) {
                    if bad && *v > 0.0 {
                        *v *= boost;
                    }
                }
                let sum: f64 = w.iter().sum();
                stumps.push(stump);
                if !(sum.is_finite() && sum > 0.0) {
                    break;
                }
                w.iter_mut().for_each(|v| *v /= sum);
            } else {
                stumps.push(stump);
            }
        }
        Ok(AdaBoost { stumps })
    }

    /// The decision value's constant part and its term per feature (`t` is overwritten):
    /// `d(x) = constant + sum(t)`.
    pub fn terms(&self, x: &[f64], t: &mut [f64]) -> f64 {
        t.fill(0.0);
        let total: f64 = self.stumps.iter().map(|s| s.weight).sum();
        let mut constant = 0.0;
        for s in &self.stumps {
            let v = 2.0 * s.weight * s.sign(x) / total;
            if s.constant() {
                constant += v;
            } else {
                t[s.feature as usize] += v;
            }
        }
        constant
    }

    /// Structural check of a loaded model with `nf` features.
    pub fn valid(&self, nf: usize) -> bool {
        !self.stumps.is_empty()
            && self.stumps.iter().all(|s| {
                (s.feature as usize) < nf
                    && !s.threshold.is_nan()
                    && s.left <= 1
                    && s.right <= 1
                    && s.weight.is_finite()
                    && s.weight > 0.0
            })
    }
}

/// The Gini-best stump for the row weights `w` over every feature's bins.
fn best_stump(binned: &BinnedData, labels: &[u8], w: &[f64]) -> Stump {
    let (mut tot0, mut tot1) = (0.0, 0.0);
    for (&l, &v) in labels.iter().zip(w) {
        if l == 1 { tot1 += v } else { tot0 += v }
    }
    let majority = u8::from(tot1 > tot0);
    let none = Stump {
        feature: 0,
        threshold: f64::INFINITY,
        left: majority,
        right: majority,
        weight: 0.0,
    };
    // Children's Gini impurity is W - (L0^2 + L1^2) / WL - (R0^2 + R1^2) / WR: the best
    // split has the largest sum of the two quotients.
    let score = |a: f64, b: f64| {
        if a + b > 0.0 {
            (a * a + b * b) / (a + b)
        } else {
            0.0
        }
    };
    let parent = score(tot0, tot1);
    let best = binned
        .bins
        .par_iter()
        .enumerate()
        .map(|(f, bins)| {
            let fb = &binned.features[f];
            let mut hist = vec![[0.0f64; 2]; fb.n_bins()];
            for ((&b, &l), &v) in bins.iter().zip(labels).zip(w) {
                hist[b as usize][l as usize] += v;
            }
            let (mut l0, mut l1) = (0.0, 0.0);
            let mut best: Option<(f64, usize, usize, f64, f64)> = None;
            let mut prev: Option<usize> = None;
            for (b, h) in hist.iter().enumerate() {
                if h[0] + h[1] <= 0.0 {
                    continue;
                }
                if let Some(p) = prev {
                    let gain = score(l0, l1) + score(tot0 - l0, tot1 - l1);
                    if best.is_none_or(|(g, ..)| gain > g) {
                        best = Some((gain, p, b, l0, l1));
                    }
                }
                l0 += h[0];
                l1 += h[1];
                prev = Some(b);
            }
            best.map(|(gain, left_bin, right_bin, l0, l1)| {
                (gain, f, fb.threshold(left_bin, right_bin), l0, l1)
            })
        })
        .collect::<Vec<_>>();
    let mut pick: Option<(f64, usize, f64, f64, f64)> = None;
    for c in best.into_iter().flatten() {
        if pick.is_none_or(|p| c.0 > p.0) {
            pick = Some(c);
        }
    }
    match pick {
        Some((gain, f, threshold, l0, l1)) if gain > parent * (1.0 + 1e-12) => Stump {
            feature: f as u16,
            threshold,
            left: u8::from(l1 > l0),
            right: u8::from(tot1 - l1 > tot0 - l0),
            weight: 0.0,
        },
        _ => none,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samme_on_a_hand_worked_example() {
        // Gini with equal weights prefers x0 <= 3.5 (left pure): wrong on row 4 only.
        let x0 = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let x1 = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0];
        let y = [0u8, 0, 0, 1, 0, 1];
        let cols: Vec<&[f64]> = vec![&x0, &x1];
        let m = AdaBoost::fit(&cols, &y, None, 2, 1.0).unwrap();
        let s = &m.stumps[0];
        assert_eq!((s.feature, s.threshold, s.left, s.right), (0, 3.5, 0, 1));
        // Error 1/6: say ln(5); row 4's weight times 5, all normalised to tenths.
        assert!((s.weight - 5f64.ln()).abs() < 1e-12);
        // Round 2 (row 4 weighs 5/10): x0 <= 5.5 -> 0 else 1 leaves only row 3 (1/10)
        // wrong, and its Gini (0.822) beats every other split (x1's is 0.683).
        let s = &m.stumps[1];
        assert_eq!((s.feature, s.threshold, s.left, s.right), (0, 5.5, 0, 1));
        assert!((s.weight - 9f64.ln()).abs() < 1e-12, "{}", s.weight);
        // Row 3 (x0 = 4): the first stump says spammer, the second not.
        let mut t = [0.0; 2];
        let c = m.terms(&[4.0, 1.0], &mut t);
        let expect = 2.0 * (5f64.ln() - 9f64.ln()) / (5f64.ln() + 9f64.ln());
        assert!((t[0] - expect).abs() < 1e-12 && t[1] == 0.0 && c == 0.0);
        assert!(m.valid(2) && !m.valid(0));
    }

    #[test]
    fn a_perfect_stump_stops_and_chance_is_refused() {
        let x0 = [1.0, 2.0, 3.0, 4.0];
        let y = [0u8, 0, 1, 1];
        let m = AdaBoost::fit(&[&x0], &y, None, 50, 1.0).unwrap();
        assert_eq!(m.stumps.len(), 1);
        assert_eq!(m.stumps[0].weight, 1.0);
        // Labels no split can tell apart: the stump says the majority, error 1/2.
        let same = [1.0, 1.0, 1.0, 1.0];
        assert_eq!(
            AdaBoost::fit(&[&same], &y, None, 50, 1.0),
            Err(AdaBoostError::NoBetterThanChance(0.5))
        );
    }
}
