//! Batch scoring output and prediction files.

use crate::data::catalog::catalog;
use crate::data::{DataError, Dataset};
use crate::model::Model;
use crate::model::explain::Method;
use crate::ops::error::{Error, Result};
use crate::util::progress::Reporter;
use polars::prelude::*;
use std::io::Write;
use std::path::Path;

/// A scored table: raw scores, calibrated probabilities and, optionally, each account's
/// largest contributions, in the data's row order.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredBatch {
    pub version: u32,
    pub threshold: f64,
    /// How `reasons` were computed (None when no explanations were asked for).
    pub method: Option<Method>,
    /// The model's raw scores (verdicts compare them with the threshold).
    pub score: Vec<f64>,
    /// Calibrated probabilities (the raw scores for a version without calibration).
    pub probability: Vec<f64>,
    /// Contributions kept per row.
    pub k: usize,
    /// `reasons[i * k..(i + 1) * k]`: (feature index, contribution), largest first.
    reasons: Vec<(u16, f64)>,
    /// Wall-clock time of the scoring.
    pub seconds: f64,
    /// A mixed batch ([`ScoredBatch::mix`]): each row's (version, threshold); None when
    /// every row is `version`'s.
    per_row: Option<Vec<(u32, f64)>>,
}

impl ScoredBatch {
    pub fn len(&self) -> usize {
        self.score.len()
    }
    pub fn is_empty(&self) -> bool {
        self.score.is_empty()
    }
    pub fn is_spammer(&self, i: usize) -> bool {
        crate::eval::verdict::is_spam(self.score[i], self.threshold_of(i))
    }
    /// The version that scored row `i`.
    pub fn version_of(&self, i: usize) -> u32 {
        self.per_row.as_ref().map_or(self.version, |r| r[i].0)
    }
    /// The threshold of the version that scored row `i`.
    pub fn threshold_of(&self, i: usize) -> f64 {
        self.per_row.as_ref().map_or(self.threshold, |r| r[i].1)
    }
    /// Row `i` from `b` where `take_b[i]`, else from `self` (a canary's answer: each
    /// row by the version its arm names). Both must score the same rows; contributions
    /// are kept up to the smaller count of the two.
    pub fn mix(&self, b: &ScoredBatch, take_b: &[bool]) -> Result<ScoredBatch> {
        if b.len() != self.len() || take_b.len() != self.len() {
            return Err(Error::Invalid(format!(
                "cannot mix batches of {}, {} and {} rows",
                self.len(),
                b.len(),
                take_b.len()
            )));
        }
        let k = self.k.min(b.k);
        let mut out = ScoredBatch {
            version: self.version,
            threshold: self.threshold,
            method: if k > 0 { self.method } else { None },
            score: Vec::with_capacity(self.len()),
            probability: Vec::with_capacity(self.len()),
            k,
            reasons: Vec::with_capacity(self.len() * k),
            seconds: self.seconds + b.seconds,
            per_row: Some(Vec::with_capacity(self.len())),
        };
        for (i, &from_b) in take_b.iter().enumerate() {
            let src = if from_b { b } else { self };
            out.score.push(src.score[i]);
            out.probability.push(src.probability[i]);
            out.reasons.extend_from_slice(&src.reasons(i)[..k]);
            if let Some(r) = out.per_row.as_mut() {
                r.push((src.version_of(i), src.threshold_of(i)));
            }
        }
        Ok(out)
    }
    /// The largest contributions of row `i`.
    pub fn reasons(&self, i: usize) -> &[(u16, f64)] {
        &self.reasons[i * self.k..(i + 1) * self.k]
    }
    pub fn rows_per_second(&self) -> f64 {
        self.len() as f64 / self.seconds.max(1e-9)
    }
}

/// A scored file of accounts, ranked for review (the review queue).
#[derive(Debug, Clone)]
pub struct Queue {
    pub data: std::sync::Arc<Dataset>,
    pub batch: ScoredBatch,
    /// Row indices by decreasing score (ties: file order), or in the order a decision
    /// policy queued them.
    pub ranked: Vec<u32>,
    /// For a queue filled by a decision policy: each row's decision and the rules that
    /// sent it.
    pub decisions: Option<Vec<(String, Vec<String>)>>,
}

impl Queue {
    pub fn new(data: std::sync::Arc<Dataset>, batch: ScoredBatch) -> Queue {
        let mut ranked: Vec<u32> = (0..batch.len() as u32).collect();
        ranked.sort_by(|&a, &b| {
            batch.score[b as usize]
                .total_cmp(&batch.score[a as usize])
                .then(a.cmp(&b))
        });
        Queue {
            data,
            batch,
            ranked,
            decisions: None,
        }
    }

    /// A queue a decision policy filled, in its order (most severe decision first, then
    /// highest score): `decisions` holds each row's decision and rules.
    pub fn decided(
        data: std::sync::Arc<Dataset>,
        batch: ScoredBatch,
        decisions: Vec<(String, Vec<String>)>,
    ) -> Queue {
        Queue {
            ranked: (0..batch.len() as u32).collect(),
            data,
            batch,
            decisions: Some(decisions),
        }
    }

    /// Ranked rows whose verdict and probability pass the filter.
    pub fn filtered(&self, verdict: Option<bool>, lo: f64, hi: f64) -> Vec<u32> {
        self.ranked
            .iter()
            .copied()
            .filter(|&i| {
                let p = self.batch.probability[i as usize];
                p >= lo && p <= hi && verdict.is_none_or(|v| self.batch.is_spammer(i as usize) == v)
            })
            .collect()
    }
}

/// Scores every row in chunks (progress, cancellation); with `explain > 0` keeps that
/// many largest contributions per row (path attribution is fast enough for whole files;
/// TreeSHAP is exact but slow).
pub fn score_batch(
    d: &Dataset,
    model: &Model,
    version: u32,
    threshold: f64,
    explain: usize,
    method: Method,
    reporter: &dyn Reporter,
) -> Result<ScoredBatch> {
    let start = std::time::Instant::now();
    let n = d.n_rows();
    // KNN gets no per-account reasons in bulk (see `Model::bulk_reasons`).
    let k = if model.bulk_reasons() {
        explain.min(crate::data::catalog::N_FEATURES)
    } else {
        0
    };
    let mut score = Vec::with_capacity(n);
    let mut reasons = Vec::with_capacity(n * k);
    // Exact explanations take milliseconds per account: small chunks keep progress
    // and cancelling prompt.
    let chunk_rows = if k > 0 && method != Method::PathAttribution {
        64
    } else {
        16_384
    };
    reporter.stage("scoring", 0, n);
    let idx: Vec<usize> = (0..n).collect();
    for chunk in idx.chunks(chunk_rows) {
        if reporter.cancelled() {
            return Err(crate::Error::Cancelled);
        }
        let rows = model.imputer.transform_rows(&d.columns, chunk);
        let nf = crate::data::catalog::N_FEATURES;
        let contributions: Vec<f64> = match method {
            _ if k == 0 => {
                score.extend(model.predict_rows(&rows));
                Vec::new()
            }
            // Probability and reasons from one walk of the trees.
            Method::PathAttribution => {
                let (p, phi) = model.predict_attributed_rows(&rows);
                score.extend(p);
                phi
            }
            Method::TreeShap
            | Method::LogOdds
            | Method::Occlusion
            | Method::Members
            | Method::HardVote
            | Method::Stacked => {
                score.extend(model.predict_rows(&rows));
                model
                    .explain_rows(&rows, method)
                    .into_iter()
                    .flat_map(|e| e.contributions)
                    .collect()
            }
        };
        for phi in contributions.chunks(nf) {
            reasons.extend(top_k(phi, k));
        }
        reporter.stage("scoring", score.len(), n);
    }
    Ok(ScoredBatch {
        version,
        threshold,
        method: (k > 0).then(|| model.bulk_method(method)),
        probability: model.probabilities(&score),
        score,
        k,
        reasons,
        seconds: start.elapsed().as_secs_f64(),
        per_row: None,
    })
}

/// The `k` largest contributions by absolute value, as
/// [`crate::model::explain::Explanation::top`] orders them.
/// Selected in one pass into a buffer of `k` (ties: lower index first), without
/// sorting all of `phi` nor allocating: per row of a bulk scoring this costs a few
/// comparisons per feature.
pub(crate) fn top_k(phi: &[f64], k: usize) -> impl Iterator<Item = (u16, f64)> + use<> {
    const MAX: usize = crate::data::catalog::N_FEATURES;
    let k = k.min(phi.len()).min(MAX);
    let mut best = [(0u16, 0.0f64); MAX];
    let mut len = 0usize;
    for (f, &v) in phi.iter().enumerate().take(u16::MAX as usize) {
        let a = v.abs();
        // Later features lose ties: the first place holding a strictly smaller one.
        let at = best[..len]
            .iter()
            .position(|&(_, b)| a.total_cmp(&b.abs()) == std::cmp::Ordering::Greater)
            .unwrap_or(len);
        if at >= k {
            continue;
        }
        let end = len.min(k - 1);
        best.copy_within(at..end, at + 1);
        best[at] = (f as u16, v);
        len = (len + 1).min(k);
    }
    best.into_iter().take(len)
}

/// Writes `user_id,probability,is_spammer,model_version,score` (+ explanation columns) for
/// the rows `order` (all rows in file order when None) to `out`, atomically.
pub fn write_batch_csv(
    d: &Dataset,
    b: &ScoredBatch,
    order: Option<&[usize]>,
    out: &Path,
) -> Result<()> {
    let text = batch_csv(d, b, order);
    let tmp = out.with_extension("partial");
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))
}

/// The text [`write_batch_csv`] writes (the service answers CSV batches with it).
pub fn batch_csv(d: &Dataset, b: &ScoredBatch, order: Option<&[usize]>) -> String {
    batch_csv_with(d, b, order, &[])
}

/// [`batch_csv`] with more columns after `score` (the service's decisions): each a
/// name and one text cell per row of `b` (quoted as a cell needs).
pub fn batch_csv_with(
    d: &Dataset,
    b: &ScoredBatch,
    order: Option<&[usize]>,
    extra: &[(&str, Vec<String>)],
) -> String {
    let cat = catalog();
    let all: Vec<usize>;
    let order = match order {
        Some(o) => o,
        None => {
            all = (0..b.len()).collect();
            &all
        }
    };
    let mut text = String::with_capacity(order.len() * (40 + b.k * 40));
    text.push_str("user_id,probability,is_spammer,model_version,score");
    for (name, _) in extra {
        text.push(',');
        text.push_str(name);
    }
    if b.method.is_some() {
        text.push_str(",explanation_method");
        for r in 1..=b.k {
            text.push_str(&format!(
                ",reason{r}_feature,reason{r}_value,reason{r}_contribution"
            ));
        }
    }
    text.push('\n');
    let method_name = match b.method {
        Some(Method::TreeShap) => "treeshap",
        Some(Method::PathAttribution) => "path_attribution",
        Some(Method::LogOdds) => "log_odds",
        Some(Method::Occlusion) => "occlusion",
        Some(Method::Members) => "members",
        Some(Method::HardVote) => "hard_vote",
        Some(Method::Stacked) => "stacked",
        None => "",
    };
    // The user id is text from the input: written through `csv_cell` (formula-like ids
    // get a leading `'`, commas and quotes are quoted). The other cells are numbers and
    // names this program formats itself (a contribution such as -0.0123 stays a number).
    for &i in order {
        text.push_str(&format!(
            "{},{},{},{},{}",
            crate::util::text::csv_cell(&d.user_ids[i]),
            b.probability[i],
            u8::from(b.is_spammer(i)),
            b.version_of(i),
            b.score[i]
        ));
        for (_, cells) in extra {
            text.push(',');
            text.push_str(&crate::util::text::csv_cell(
                cells.get(i).map_or("", String::as_str),
            ));
        }
        if b.method.is_some() {
            text.push(',');
            text.push_str(method_name);
            for &(f, c) in b.reasons(i) {
                let f = f as usize;
                let v = d.columns[f][i];
                let v = if v.is_nan() {
                    String::new()
                } else {
                    v.to_string()
                };
                text.push_str(&format!(",{},{v},{c}", cat.features[f].id));
            }
        }
        text.push('\n');
    }
    text
}

/// Labels, scores and optional decisions read from a predictions CSV.
pub struct Predictions {
    pub labels: Vec<u8>,
    /// None when the file has decisions but no score column (a hard-voting model).
    pub scores: Option<Vec<f64>>,
    pub preds: Option<Vec<u8>>,
}

/// Reads a predictions file (e.g. `y_test,y_pred,y_proba`). With a decision column
/// (`pred_col`) the score column may be absent.
pub fn read_predictions(
    path: &Path,
    label_col: &str,
    score_col: &str,
    pred_col: Option<&str>,
) -> Result<Predictions> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DataError::new(&name, "is empty").into());
    }
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0)) // all text; we parse with row numbers
        .into_reader_with_file_handle(std::io::Cursor::new(bytes))
        .finish()
        .map_err(|e| DataError::new(&name, e.to_string()))?;
    if df.height() == 0 {
        return Err(DataError::new(&name, "has a header but no data rows").into());
    }
    let column = |col: &str| -> Result<Vec<f64>> {
        let c = df.column(col).map_err(|_| {
            let have: Vec<String> = df
                .get_column_names()
                .iter()
                .map(|s| s.to_string())
                .collect();
            DataError::new(
                &name,
                format!(
                    "no column {} (columns: {})",
                    crate::util::text::quote(col),
                    crate::util::text::list(&have, 20)
                ),
            )
        })?;
        let s = c.str().map_err(|e| DataError::new(&name, e.to_string()))?;
        s.iter()
            .enumerate()
            .map(|(i, v)| {
                let at = |msg: String| DataError {
                    file: name.clone(),
                    line: Some(i + 2),
                    column: Some(col.to_string()),
                    message: msg,
                };
                let v = v.map(str::trim).unwrap_or("");
                if v.is_empty() {
                    return Err(at("value is empty".into()).into());
                }
                match v.parse::<f64>() {
                    Ok(x) if x.is_finite() => Ok(x),
                    Ok(_) => Err(at(format!("{v:?} is not a finite number")).into()),
                    Err(_) => Err(at(format!("{v:?} is not a number")).into()),
                }
            })
            .collect()
    };
    let binary = |col: &str| -> Result<Vec<u8>> {
        column(col)?
            .into_iter()
            .enumerate()
            .map(|(i, x)| {
                if x == 0.0 || x == 1.0 {
                    Ok(x as u8)
                } else {
                    Err(DataError {
                        file: name.clone(),
                        line: Some(i + 2),
                        column: Some(col.to_string()),
                        message: format!("must be 0 or 1, found {x}"),
                    }
                    .into())
                }
            })
            .collect()
    };
    let labels = binary(label_col)?;
    let preds = pred_col.map(binary).transpose()?;
    let scores = if preds.is_some() && df.column(score_col).is_err() {
        None
    } else {
        Some(column(score_col)?)
    };
    Ok(Predictions {
        labels,
        scores,
        preds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass selection gives what sorting all contributions gives, on random
    /// vectors with ties, zeros, infinities and NaN, for every k.
    #[test]
    fn top_k_selects_like_a_full_sort() {
        let mut rng = crate::util::rng::SplitMix64::new(5);
        let n = crate::data::catalog::N_FEATURES;
        for case in 0..3000 {
            let phi: Vec<f64> = (0..n)
                .map(|_| match rng.next_u64() % 10 {
                    0 => 0.0,
                    1 => 0.25,
                    2 => -0.25,
                    3 if case % 7 == 0 => f64::NAN,
                    4 if case % 5 == 0 => f64::NEG_INFINITY,
                    _ => rng.next_f64() - 0.5,
                })
                .collect();
            let k = case % (n + 2);
            let sorted: Vec<(u16, u64)> = crate::model::explain::rank_by_magnitude(&phi)
                .into_iter()
                .take(k)
                .map(|f| (f as u16, phi[f].to_bits()))
                .collect();
            let picked: Vec<(u16, u64)> = top_k(&phi, k).map(|(f, v)| (f, v.to_bits())).collect();
            assert_eq!(picked, sorted, "case {case}, k {k}");
        }
    }
}
