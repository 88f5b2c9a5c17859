//! Calibration: a monotone map from a model's raw score to the probability that the
//! account is a spammer, fitted on held-out accounts.
//!
//! The balanced forest (and any model fitted with class weights or SMOTE) scores as if
//! spammers were as common as legitimate accounts, so its score over-states the chance
//! of spam. Each version is calibrated on its holdout: isotonic regression (pool
//! adjacent violators, interpolated linearly between block ends and clipped outside
//! them, as scikit-learn's `IsotonicRegression(out_of_bounds="clip")`) when the
//! holdout has at least [`ISOTONIC_MIN_ROWS`] rows and [`ISOTONIC_MIN_EACH`] of each
//! class, otherwise Platt's sigmoid (`1 / (1 + exp(a·s + b))`, Platt's regularised
//! targets, Newton's method). Both are non-decreasing in the score, so a threshold on
//! the raw score and one on the probability decide the same accounts.

use serde::{Deserialize, Serialize};

/// Fewest holdout rows for isotonic regression (scikit-learn's guide: isotonic
/// over-fits below about a thousand).
pub const ISOTONIC_MIN_ROWS: usize = 1000;
/// Fewest holdout rows of each class for isotonic regression.
pub const ISOTONIC_MIN_EACH: usize = 50;
/// Most knots an isotonic map may have (a hostile model file cannot ask for more).
const MAX_KNOTS: usize = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CalibrationError {
    #[error("calibration needs both spammers and legitimate accounts in its holdout")]
    OneClass,
    #[error("calibration needs as many scores as labels ({0} scores, {1} labels)")]
    Length(usize, usize),
    #[error("calibration needs finite scores between 0 and 1 (row {0})")]
    BadScore(usize),
    #[error("invalid calibration: {0}")]
    Invalid(String),
}

/// How the map was fitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CalibrationMap {
    /// Knots `(score, probability)`, scores non-decreasing, probabilities
    /// non-decreasing; linear between knots, clipped outside.
    Isotonic { scores: Vec<f64>, probs: Vec<f64> },
    /// `1 / (1 + exp(a·score + b))`, `a ≤ 0`.
    Platt { a: f64, b: f64 },
}

/// A version's calibration, stored in its model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub map: CalibrationMap,
    /// Holdout accounts it was fitted on, and the spammers among them.
    pub rows: usize,
    pub positives: usize,
    /// Mean calibrated probability on those accounts: the average account's
    /// probability (isotonic makes it the observed spam rate exactly).
    pub base_rate: f64,
}

impl Calibration {
    /// Fits on raw scores and 0/1 labels of held-out accounts: isotonic when there
    /// are enough of them, Platt otherwise.
    pub fn fit(scores: &[f64], labels: &[u8]) -> Result<Calibration, CalibrationError> {
        if scores.len() != labels.len() {
            return Err(CalibrationError::Length(scores.len(), labels.len()));
        }
        if let Some(i) = scores
            .iter()
            .position(|s| !s.is_finite() || !(0.0..=1.0).contains(s))
        {
            return Err(CalibrationError::BadScore(i));
        }
        let positives = labels.iter().filter(|&&l| l == 1).count();
        let n = labels.len();
        if positives == 0 || positives == n {
            return Err(CalibrationError::OneClass);
        }
        let map = if n >= ISOTONIC_MIN_ROWS
            && positives >= ISOTONIC_MIN_EACH
            && n - positives >= ISOTONIC_MIN_EACH
        {
            isotonic(scores, labels)
        } else {
            platt(scores, labels)
        };
        let mut c = Calibration {
            map,
            rows: n,
            positives,
            base_rate: 0.0,
        };
        c.base_rate = scores.iter().map(|&s| c.apply(s)).sum::<f64>() / n as f64;
        Ok(c)
    }

    /// The calibrated probability of a raw score.
    pub fn apply(&self, score: f64) -> f64 {
        match &self.map {
            CalibrationMap::Isotonic { scores, probs } => interpolate(scores, probs, score),
            CalibrationMap::Platt { a, b } => sigmoid(-(a * score + b)),
        }
    }

    /// `isotonic` or `Platt`, for people.
    pub fn method(&self) -> &'static str {
        match self.map {
            CalibrationMap::Isotonic { .. } => "isotonic",
            CalibrationMap::Platt { .. } => "Platt",
        }
    }

    /// One line: method, rows, the average account's probability.
    pub fn describe(&self) -> String {
        format!(
            "{} on {} held-out accounts ({} spammers); the average account {:.1}%",
            self.method(),
            self.rows,
            self.positives,
            100.0 * self.base_rate
        )
    }

    /// Structural checks for a map read from a file.
    pub fn validate(&self) -> Result<(), CalibrationError> {
        let bad = |m: &str| Err(CalibrationError::Invalid(m.into()));
        let unit = |p: f64| p.is_finite() && (0.0..=1.0).contains(&p);
        match &self.map {
            CalibrationMap::Isotonic { scores, probs } => {
                if scores.is_empty() || scores.len() != probs.len() || scores.len() > MAX_KNOTS {
                    return bad("isotonic knots are empty, unpaired or too many");
                }
                if !scores.iter().chain(probs).all(|&v| unit(v)) {
                    return bad("isotonic knots must lie between 0 and 1");
                }
                if scores.windows(2).any(|w| w[1] < w[0]) || probs.windows(2).any(|w| w[1] < w[0]) {
                    return bad("isotonic knots must not decrease");
                }
            }
            CalibrationMap::Platt { a, b } => {
                if !a.is_finite() || !b.is_finite() || *a > 0.0 {
                    return bad("Platt's slope must be finite and not positive");
                }
            }
        }
        if self.positives > self.rows || !unit(self.base_rate) {
            return bad("the holdout counts or the base rate are out of range");
        }
        Ok(())
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `np.interp` with clipping: linear between knots, the end values outside.
fn interpolate(xs: &[f64], ys: &[f64], x: f64) -> f64 {
    let k = xs.partition_point(|&v| v <= x);
    if k == 0 {
        return ys[0];
    }
    if k == xs.len() {
        return ys[xs.len() - 1];
    }
    let (x0, x1, y0, y1) = (xs[k - 1], xs[k], ys[k - 1], ys[k]);
    if x1 <= x0 {
        return y1;
    }
    y0 + (y1 - y0) * (x - x0) / (x1 - x0)
}

/// Pool adjacent violators over the distinct scores (weighted by their counts); the
/// knots are the first and last score of each pooled block (scikit-learn keeps the
/// same points).
fn isotonic(scores: &[f64], labels: &[u8]) -> CalibrationMap {
    let mut order: Vec<(f64, u8)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    // Distinct scores: (score, weight, sum of labels).
    let mut distinct: Vec<(f64, f64, f64)> = Vec::new();
    for (s, y) in order {
        match distinct.last_mut() {
            Some(last) if last.0 == s => {
                last.1 += 1.0;
                last.2 += f64::from(y);
            }
            _ => distinct.push((s, 1.0, f64::from(y))),
        }
    }
    // Blocks: (first score, last score, weight, sum).
    let mut blocks: Vec<(f64, f64, f64, f64)> = Vec::with_capacity(distinct.len());
    for (s, w, sum) in distinct {
        blocks.push((s, s, w, sum));
        while blocks.len() >= 2 {
            let b = blocks[blocks.len() - 1];
            let a = blocks[blocks.len() - 2];
            if a.3 / a.2 < b.3 / b.2 {
                break;
            }
            blocks.pop();
            let last = blocks.last_mut().expect("two blocks");
            *last = (a.0, b.1, a.2 + b.2, a.3 + b.3);
        }
    }
    let mut xs = Vec::with_capacity(2 * blocks.len());
    let mut ys = Vec::with_capacity(2 * blocks.len());
    for (lo, hi, w, sum) in blocks {
        let p = (sum / w).clamp(0.0, 1.0);
        xs.push(lo);
        ys.push(p);
        if hi > lo {
            xs.push(hi);
            ys.push(p);
        }
    }
    CalibrationMap::Isotonic {
        scores: xs,
        probs: ys,
    }
}

/// Platt scaling (Lin, Lin & Weng's Newton method with backtracking, Platt's targets).
fn platt(scores: &[f64], labels: &[u8]) -> CalibrationMap {
    let pos = labels.iter().filter(|&&l| l == 1).count() as f64;
    let neg = labels.len() as f64 - pos;
    let hi = (pos + 1.0) / (pos + 2.0);
    let lo = 1.0 / (neg + 2.0);
    let t: Vec<f64> = labels
        .iter()
        .map(|&l| if l == 1 { hi } else { lo })
        .collect();
    // Loss of f = a·s + b with p = 1 / (1 + exp(f)).
    let loss = |a: f64, b: f64| -> f64 {
        scores
            .iter()
            .zip(&t)
            .map(|(&s, &t)| {
                let f = a * s + b;
                if f >= 0.0 {
                    t * f + (1.0 + (-f).exp()).ln()
                } else {
                    (t - 1.0) * f + (1.0 + f.exp()).ln()
                }
            })
            .sum()
    };
    let (mut a, mut b) = (0.0, ((neg + 1.0) / (pos + 1.0)).ln());
    let mut f_val = loss(a, b);
    for _ in 0..100 {
        let (mut h11, mut h22, mut h21, mut g1, mut g2) = (1e-12, 1e-12, 0.0, 0.0, 0.0);
        for (&s, &t) in scores.iter().zip(&t) {
            let p = sigmoid(-(a * s + b));
            let d2 = p * (1.0 - p);
            h11 += s * s * d2;
            h22 += d2;
            h21 += s * d2;
            let d1 = t - p;
            g1 += s * d1;
            g2 += d1;
        }
        if g1.abs() < 1e-5 && g2.abs() < 1e-5 {
            break;
        }
        let det = h11 * h22 - h21 * h21;
        let da = -(h22 * g1 - h21 * g2) / det;
        let db = -(-h21 * g1 + h11 * g2) / det;
        let gd = g1 * da + g2 * db;
        let mut step = 1.0;
        let mut moved = false;
        while step >= 1e-10 {
            let (na, nb) = (a + step * da, b + step * db);
            let nf = loss(na, nb);
            if nf < f_val + 1e-4 * step * gd {
                (a, b, f_val) = (na, nb, nf);
                moved = true;
                break;
            }
            step /= 2.0;
        }
        if !moved {
            break;
        }
    }
    // A score that ranks backwards would give a positive slope; calibration must keep
    // the ranking, so the flat map (the base rate) is used instead.
    if !a.is_finite() || !b.is_finite() || a > 0.0 {
        return CalibrationMap::Platt {
            a: 0.0,
            b: ((neg + 1.0) / (pos + 1.0)).ln(),
        };
    }
    CalibrationMap::Platt { a, b }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores whose true probability is `s²` (over-stated, as the balanced forest's).
    fn sample(n: usize, seed: u64) -> (Vec<f64>, Vec<u8>) {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let s = next();
                (s, u8::from(next() < s * s))
            })
            .unzip()
    }

    #[test]
    fn isotonic_matches_hand_computed_pooling() {
        // scikit-learn: IsotonicRegression(out_of_bounds="clip").fit([.1,.2,.3,.4,.5],
        // [0,1,0,1,1]) gives [0, .5, .5, 1, 1]; its knots are .1, .2, .3, .4, .5.
        let map = isotonic(&[0.1, 0.2, 0.3, 0.4, 0.5], &[0, 1, 0, 1, 1]);
        let CalibrationMap::Isotonic { scores, probs } = &map else {
            panic!("{map:?}")
        };
        assert_eq!(scores, &[0.1, 0.2, 0.3, 0.4, 0.5]);
        assert_eq!(probs, &[0.0, 0.5, 0.5, 1.0, 1.0]);
        let c = Calibration {
            map,
            rows: 5,
            positives: 3,
            base_rate: 0.6,
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(c.apply(0.15), 0.25));
        assert_eq!(c.apply(0.0), 0.0);
        assert_eq!(c.apply(0.9), 1.0);
        assert!(close(c.apply(0.35), 0.75));
    }

    #[test]
    fn isotonic_recovers_the_true_probability_and_the_base_rate() {
        let (s, y) = sample(200_000, 7);
        let c = Calibration::fit(&s, &y).unwrap();
        assert_eq!(c.method(), "isotonic");
        let observed = y.iter().filter(|&&l| l == 1).count() as f64 / y.len() as f64;
        assert!((c.base_rate - observed).abs() < 1e-9, "{}", c.base_rate);
        for x in [0.2, 0.5, 0.8] {
            assert!((c.apply(x) - x * x).abs() < 0.03, "{x}: {}", c.apply(x));
        }
        c.validate().unwrap();
        let mut prev = 0.0;
        for i in 0..=100 {
            let p = c.apply(i as f64 / 100.0);
            assert!(p >= prev);
            prev = p;
        }
    }

    #[test]
    fn small_holdouts_get_platt_which_keeps_the_order() {
        let (s, y) = sample(600, 3);
        let c = Calibration::fit(&s, &y).unwrap();
        assert_eq!(c.method(), "Platt");
        c.validate().unwrap();
        assert!(c.apply(0.9) > c.apply(0.5) && c.apply(0.5) > c.apply(0.1));
        // The fitted mean is close to the observed rate.
        let observed = y.iter().filter(|&&l| l == 1).count() as f64 / y.len() as f64;
        assert!(
            (c.base_rate - observed).abs() < 0.02,
            "{} {observed}",
            c.base_rate
        );
        // A score that ranks backwards gets the flat map, never a reversed one.
        let flipped: Vec<u8> = y.iter().map(|&l| 1 - l).collect();
        let c = Calibration::fit(&s, &flipped).unwrap();
        assert!(c.apply(0.1) == c.apply(0.9));
    }

    #[test]
    fn refuses_what_it_cannot_calibrate() {
        assert_eq!(
            Calibration::fit(&[0.1, 0.2], &[0, 0]),
            Err(CalibrationError::OneClass)
        );
        assert_eq!(
            Calibration::fit(&[0.1, f64::NAN], &[0, 1]),
            Err(CalibrationError::BadScore(1))
        );
        assert_eq!(
            Calibration::fit(&[0.1], &[0, 1]),
            Err(CalibrationError::Length(1, 2))
        );
        let bad = Calibration {
            map: CalibrationMap::Isotonic {
                scores: vec![0.5, 0.2],
                probs: vec![0.1, 0.2],
            },
            rows: 2,
            positives: 1,
            base_rate: 0.1,
        };
        assert!(bad.validate().is_err());
        let bad = Calibration {
            map: CalibrationMap::Platt { a: 1.0, b: 0.0 },
            ..bad
        };
        assert!(bad.validate().is_err());
    }
}
