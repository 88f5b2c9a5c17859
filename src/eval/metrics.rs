//! Classification metrics with scikit-learn's definitions (checked against scikit-learn's
//! output on the shared fixtures to 1e-9).
//!
//! Decisions: an account is predicted positive when its score is strictly above the
//! threshold (scikit-learn's `predict` for a forest: class 1 when p1 > 0.5). Curves group
//! tied scores into one point, as scikit-learn's `roc_curve` / `precision_recall_curve`.
//! Scores may be any finite numbers (negative too).

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricsError {
    #[error("no rows to evaluate")]
    Empty,
    #[error("labels and scores have different lengths ({0} vs {1})")]
    Length(usize, usize),
    #[error("ROC-AUC and average precision need both classes, but every label is {0}")]
    OneClass(u8),
    #[error("label at row {0} is not 0 or 1")]
    BadLabel(usize),
    #[error("score at row {0} is not a finite number")]
    BadScore(usize),
}

/// Confusion matrix counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Confusion {
    pub tn: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub tp: u64,
}

fn ratio(a: u64, b: u64) -> f64 {
    // scikit-learn's zero_division default: 0.
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl Confusion {
    pub fn from_predictions(labels: &[u8], preds: &[u8]) -> Confusion {
        let mut c = Confusion::default();
        for (&y, &p) in labels.iter().zip(preds) {
            match (y, p) {
                (0, 0) => c.tn += 1,
                (0, _) => c.fp += 1,
                (_, 0) => c.fn_ += 1,
                _ => c.tp += 1,
            }
        }
        c
    }

    pub fn total(&self) -> u64 {
        self.tn + self.fp + self.fn_ + self.tp
    }
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.total())
    }
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    pub fn f1(&self) -> f64 {
        // 2 tp / (2 tp + fp + fn), scikit-learn's formula.
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

/// The metric set reported everywhere (CLI, manifests, app).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub roc_auc: f64,
    pub average_precision: f64,
    pub tn: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub tp: u64,
}

/// Metrics of 0/1 decisions without scores (a hard-voting model): the thresholded
/// ones only; ROC-AUC and average precision need scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DecisionMetrics {
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub tn: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub tp: u64,
}

impl DecisionMetrics {
    pub fn from_decisions(labels: &[u8], preds: &[u8]) -> Result<DecisionMetrics, MetricsError> {
        if labels.is_empty() {
            return Err(MetricsError::Empty);
        }
        if preds.len() != labels.len() {
            return Err(MetricsError::Length(labels.len(), preds.len()));
        }
        if let Some(i) = labels.iter().chain(preds).position(|&l| l > 1) {
            return Err(MetricsError::BadLabel(i % labels.len()));
        }
        let c = Confusion::from_predictions(labels, preds);
        Ok(DecisionMetrics {
            accuracy: c.accuracy(),
            precision: c.precision(),
            recall: c.recall(),
            f1: c.f1(),
            tn: c.tn,
            fp: c.fp,
            fn_: c.fn_,
            tp: c.tp,
        })
    }
}

impl Metrics {
    /// Thresholded metrics from explicit 0/1 decisions; ranking metrics from scores.
    pub fn from_predictions(
        labels: &[u8],
        preds: &[u8],
        scores: &[f64],
    ) -> Result<Metrics, MetricsError> {
        check(labels, scores)?;
        if preds.len() != labels.len() {
            return Err(MetricsError::Length(labels.len(), preds.len()));
        }
        if let Some(i) = preds.iter().position(|&p| p > 1) {
            return Err(MetricsError::BadLabel(i));
        }
        let c = Confusion::from_predictions(labels, preds);
        let ranked = Ranked::new(labels, scores);
        Ok(Metrics {
            accuracy: c.accuracy(),
            precision: c.precision(),
            recall: c.recall(),
            f1: c.f1(),
            roc_auc: ranked.roc_auc(),
            average_precision: ranked.average_precision(),
            tn: c.tn,
            fp: c.fp,
            fn_: c.fn_,
            tp: c.tp,
        })
    }

    /// All metrics from scores, predicting positive when `score > threshold`.
    pub fn from_scores(
        labels: &[u8],
        scores: &[f64],
        threshold: f64,
    ) -> Result<Metrics, MetricsError> {
        let preds: Vec<u8> = scores
            .iter()
            .map(|&s| super::verdict::label(s, threshold))
            .collect();
        Metrics::from_predictions(labels, &preds, scores)
    }

    pub fn confusion(&self) -> Confusion {
        Confusion {
            tn: self.tn,
            fp: self.fp,
            fn_: self.fn_,
            tp: self.tp,
        }
    }
}

pub(crate) fn check(labels: &[u8], scores: &[f64]) -> Result<(), MetricsError> {
    if labels.is_empty() {
        return Err(MetricsError::Empty);
    }
    if labels.len() != scores.len() {
        return Err(MetricsError::Length(labels.len(), scores.len()));
    }
    if let Some(i) = labels.iter().position(|&l| l > 1) {
        return Err(MetricsError::BadLabel(i));
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricsError::BadScore(i));
    }
    let pos = labels.iter().filter(|&&l| l == 1).count();
    if pos == 0 {
        return Err(MetricsError::OneClass(0));
    }
    if pos == labels.len() {
        return Err(MetricsError::OneClass(1));
    }
    Ok(())
}

/// One distinct score: cumulative counts of rows scoring >= it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Step {
    score: f64,
    tp: u64,
    fp: u64,
}

/// Scores sorted descending and grouped by distinct value: sort once, then read
/// confusion matrices at any threshold in O(log n) (the app's threshold slider).
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    steps: Vec<Step>,
    pos: u64,
    neg: u64,
}

impl Ranked {
    /// Labels must be 0/1 and scores finite (see [`Metrics::from_scores`]).
    pub fn new(labels: &[u8], scores: &[f64]) -> Ranked {
        let mut order: Vec<(f64, u8)> =
            scores.iter().copied().zip(labels.iter().copied()).collect();
        order.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let mut steps: Vec<Step> = Vec::new();
        let (mut tp, mut fp) = (0u64, 0u64);
        for (i, &(s, y)) in order.iter().enumerate() {
            if y == 1 {
                tp += 1;
            } else {
                fp += 1;
            }
            if i + 1 == order.len() || order[i + 1].0 != s {
                steps.push(Step { score: s, tp, fp });
            }
        }
        Ranked {
            steps,
            pos: tp,
            neg: fp,
        }
    }

    /// Confusion counts when predicting positive for `score > threshold`.
    pub fn confusion_above(&self, threshold: f64) -> Confusion {
        let k = self
            .steps
            .partition_point(|s| super::verdict::is_spam(s.score, threshold));
        let (tp, fp) = if k == 0 {
            (0, 0)
        } else {
            (self.steps[k - 1].tp, self.steps[k - 1].fp)
        };
        Confusion {
            tp,
            fp,
            fn_: self.pos - tp,
            tn: self.neg - fp,
        }
    }

    /// The distinct scores, highest first.
    pub fn scores(&self) -> impl ExactSizeIterator<Item = f64> + '_ {
        self.steps.iter().map(|s| s.score)
    }

    /// Rows ranked (both classes).
    pub fn rows(&self) -> u64 {
        self.pos + self.neg
    }

    /// Trapezoidal area under the ROC curve, in exact integer arithmetic.
    pub fn roc_auc(&self) -> f64 {
        let (mut prev_tp, mut prev_fp) = (0u64, 0u64);
        let mut twice_area: u128 = 0;
        for s in &self.steps {
            twice_area += ((s.fp - prev_fp) as u128) * ((s.tp + prev_tp) as u128);
            prev_tp = s.tp;
            prev_fp = s.fp;
        }
        twice_area as f64 / (2.0 * self.pos as f64 * self.neg as f64)
    }

    /// scikit-learn's average precision: sum over thresholds of
    /// (recall_k - recall_{k-1}) * precision_k, no interpolation.
    pub fn average_precision(&self) -> f64 {
        let mut ap = 0.0;
        let mut prev_tp = 0u64;
        for s in &self.steps {
            if s.tp > prev_tp {
                let precision = s.tp as f64 / (s.tp + s.fp) as f64;
                ap += (s.tp - prev_tp) as f64 / self.pos as f64 * precision;
            }
            prev_tp = s.tp;
        }
        ap
    }
}

/// A point of the ROC curve: rows scoring >= `threshold` are predicted positive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    pub threshold: f64,
    pub fpr: f64,
    pub tpr: f64,
}

/// A point of the precision-recall curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrPoint {
    pub threshold: f64,
    pub precision: f64,
    pub recall: f64,
}

/// About `n` evenly spaced points of a curve, keeping the last one (for plots).
pub fn thin<T: Copy>(v: &[T], n: usize) -> Vec<T> {
    if v.len() <= n {
        return v.to_vec();
    }
    let step = v.len() as f64 / n as f64;
    let mut out: Vec<T> = (0..n).map(|i| v[(i as f64 * step) as usize]).collect();
    out.push(v[v.len() - 1]);
    out
}

/// ROC curve from (0, 0) (threshold +inf) through every distinct score.
pub fn roc_curve(labels: &[u8], scores: &[f64]) -> Result<Vec<RocPoint>, MetricsError> {
    check(labels, scores)?;
    let r = Ranked::new(labels, scores);
    let mut pts = vec![RocPoint {
        threshold: f64::INFINITY,
        fpr: 0.0,
        tpr: 0.0,
    }];
    pts.extend(r.steps.iter().map(|s| RocPoint {
        threshold: s.score,
        fpr: s.fp as f64 / r.neg as f64,
        tpr: s.tp as f64 / r.pos as f64,
    }));
    Ok(pts)
}

/// Precision-recall curve by decreasing threshold (recall increasing).
pub fn pr_curve(labels: &[u8], scores: &[f64]) -> Result<Vec<PrPoint>, MetricsError> {
    check(labels, scores)?;
    let r = Ranked::new(labels, scores);
    Ok(r.steps
        .iter()
        .map(|s| PrPoint {
            threshold: s.score,
            precision: s.tp as f64 / (s.tp + s.fp) as f64,
            recall: s.tp as f64 / r.pos as f64,
        })
        .collect())
}

/// Thresholded metrics at one threshold of a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    pub threshold: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub confusion: Confusion,
}

/// Confusion counts at many thresholds (positive when `score > threshold`), computed on
/// one sorted copy of the scores.
pub fn threshold_sweep(
    labels: &[u8],
    scores: &[f64],
    thresholds: &[f64],
) -> Result<Vec<SweepPoint>, MetricsError> {
    check(labels, scores)?;
    let r = Ranked::new(labels, scores);
    Ok(thresholds
        .iter()
        .map(|&t| {
            let c = r.confusion_above(t);
            SweepPoint {
                threshold: t,
                accuracy: c.accuracy(),
                precision: c.precision(),
                recall: c.recall(),
                f1: c.f1(),
                confusion: c,
            }
        })
        .collect())
}

/// `n + 1` evenly spaced thresholds from `lo` to `hi`.
pub fn grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let n = n.max(1);
    (0..=n)
        .map(|i| lo + (hi - lo) * i as f64 / n as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_example_with_ties() {
        // scikit-learn: roc_auc_score([0,0,1,1,0,1], [.1,.4,.35,.8,.4,.4]) = 6/9 and
        // average_precision_score(...) = 0.7 (thresholds .8 -> P=1,R=1/3; .4 -> P=2/4,R=2/3;
        // .35 -> P=3/5,R=1): 1/3*1 + 1/3*0.5 + 1/3*0.6.
        let y = [0, 0, 1, 1, 0, 1];
        let s = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4];
        let m = Metrics::from_scores(&y, &s, 0.39).unwrap();
        assert!((m.roc_auc - 6.0 / 9.0).abs() < 1e-15, "{}", m.roc_auc);
        assert!((m.average_precision - 0.7).abs() < 1e-15);
        assert_eq!((m.tp, m.fp, m.fn_, m.tn), (2, 2, 1, 1));
        assert!((m.precision - 0.5).abs() < 1e-15);
        assert!((m.f1 - 4.0 / 7.0).abs() < 1e-15);
    }

    #[test]
    fn threshold_is_strict_like_sklearn_predict() {
        let y = [0, 1, 1, 0];
        let s = [0.5, 0.5, 0.9, 0.1];
        let m = Metrics::from_scores(&y, &s, 0.5).unwrap();
        assert_eq!((m.tp, m.fp), (1, 0));
    }

    #[test]
    fn negative_scores_and_perfect_ranking() {
        let y = [0, 0, 1, 1];
        let s = [-3.0, -2.5, -1.0, 4.0];
        let m = Metrics::from_scores(&y, &s, -2.0).unwrap();
        assert_eq!(m.roc_auc, 1.0);
        assert_eq!(m.average_precision, 1.0);
        assert_eq!(m.accuracy, 1.0);
    }

    #[test]
    fn curves_and_sweep_are_consistent() {
        let y = [0, 1, 0, 1, 1, 0, 0, 1];
        let s = [0.1, 0.9, 0.3, 0.3, 0.7, 0.2, 0.8, 0.6];
        let roc = roc_curve(&y, &s).unwrap();
        assert_eq!(roc[0].fpr, 0.0);
        assert_eq!(roc.last().unwrap().tpr, 1.0);
        assert_eq!(roc.last().unwrap().fpr, 1.0);
        assert!(
            roc.windows(2)
                .all(|w| w[0].fpr <= w[1].fpr && w[0].tpr <= w[1].tpr)
        );
        let pr = pr_curve(&y, &s).unwrap();
        assert_eq!(pr.last().unwrap().recall, 1.0);
        let sweep = threshold_sweep(&y, &s, &grid(0.0, 1.0, 10)).unwrap();
        assert_eq!(sweep.len(), 11);
        for p in &sweep {
            let m = Metrics::from_scores(&y, &s, p.threshold).unwrap();
            assert_eq!(p.confusion, m.confusion(), "t={}", p.threshold);
            assert_eq!(p.f1, m.f1);
        }
        assert_eq!(sweep[10].confusion.tp, 0);
        assert_eq!(sweep[0].confusion.fn_, 0);
    }

    #[test]
    fn errors() {
        assert_eq!(
            Metrics::from_scores(&[], &[], 0.5),
            Err(MetricsError::Empty)
        );
        assert_eq!(
            Metrics::from_scores(&[1, 1], &[0.2, 0.3], 0.5),
            Err(MetricsError::OneClass(1))
        );
        assert_eq!(
            Metrics::from_scores(&[0, 2], &[0.2, 0.3], 0.5),
            Err(MetricsError::BadLabel(1))
        );
        assert_eq!(
            Metrics::from_scores(&[0, 1], &[0.2, f64::NAN], 0.5),
            Err(MetricsError::BadScore(1))
        );
        assert_eq!(
            Metrics::from_scores(&[0, 1], &[0.2], 0.5),
            Err(MetricsError::Length(2, 1))
        );
    }
}
