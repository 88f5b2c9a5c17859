//! Batch scoring output and prediction files.

use crate::catalog::catalog;
use crate::data::{DataError, Dataset};
use crate::error::{Error, Result};
use crate::forest::explain::Method;
use crate::model::Model;
use polars::prelude::*;
use rayon::prelude::*;
use std::io::Write;
use std::path::Path;

/// One scored account.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub user_id: i64,
    pub probability: f64,
    pub is_spammer: bool,
    /// The largest contributions: (feature index, contribution).
    pub reasons: Vec<(usize, f64)>,
}

/// Scores every row; with `explain > 0`, keeps that many top contributions per row.
pub fn score_dataset(
    d: &Dataset,
    model: &Model,
    threshold: f64,
    explain: usize,
    method: Method,
) -> Vec<Scored> {
    let probs = model.predict_dataset(d, None);
    (0..d.n_rows())
        .into_par_iter()
        .map(|i| {
            let reasons = if explain > 0 {
                model.explain_one(&d.row(i), method).top(explain)
            } else {
                Vec::new()
            };
            Scored {
                user_id: d.user_ids[i],
                probability: probs[i],
                is_spammer: probs[i] > threshold,
                reasons,
            }
        })
        .collect()
}

/// Writes `user_id,probability,is_spammer,model_version` (+ explanation columns) to
/// `out`, atomically (a temp file renamed into place).
pub fn write_scores(
    d: &Dataset,
    model: &Model,
    version: u32,
    threshold: f64,
    explain: usize,
    method: Method,
    out: &Path,
) -> Result<()> {
    let scored = score_dataset(d, model, threshold, explain, method);
    let cat = catalog();
    let mut text = String::with_capacity(d.n_rows() * (40 + explain * 40));
    text.push_str("user_id,probability,is_spammer,model_version");
    if explain > 0 {
        text.push_str(",explanation_method");
        for k in 1..=explain {
            text.push_str(&format!(
                ",reason{k}_feature,reason{k}_value,reason{k}_contribution"
            ));
        }
    }
    text.push('\n');
    let method_name = match method {
        Method::TreeShap => "treeshap",
        Method::PathAttribution => "path_attribution",
    };
    for (i, s) in scored.iter().enumerate() {
        text.push_str(&format!(
            "{},{},{},{}",
            s.user_id,
            s.probability,
            u8::from(s.is_spammer),
            version
        ));
        if explain > 0 {
            text.push(',');
            text.push_str(method_name);
            for &(f, c) in &s.reasons {
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
    let tmp = out.with_extension("partial");
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))
}

/// Labels, scores and optional decisions read from a predictions CSV.
pub struct Predictions {
    pub labels: Vec<u8>,
    pub scores: Vec<f64>,
    pub preds: Option<Vec<u8>>,
}

/// Reads a predictions file (e.g. `y_test,y_pred,y_proba`).
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
                format!("no column {col:?} (columns: {})", have.join(", ")),
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
    Ok(Predictions {
        labels: binary(label_col)?,
        scores: column(score_col)?,
        preds: pred_col.map(binary).transpose()?,
    })
}
