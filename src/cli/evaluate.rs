//! `spamscope eval` and `spamscope metrics`: how good a version, or a predictions file, is.

use super::input::version_and_data;
use super::output::{metrics_json, print_json, print_metrics};
use super::{EvalArgs, MetricsArgs};
use serde_json::{Value, json};
use spamscope::eval::metrics::Metrics;
use spamscope::ops::error::{Error, Result};
use spamscope::ops::train::evaluate;

/// `spamscope eval`: a registered version's metrics on a labelled CSV.
pub fn eval(args: EvalArgs) -> Result<()> {
    let EvalArgs {
        data,
        registry: reg,
        version,
        threshold,
        json,
    } = args;
    let (manifest, model, t, d) = version_and_data(reg, version, threshold, &data)?;
    let (m, _) = evaluate(&model, &d, t)?;
    if json {
        print_json(&json!({
            "version": manifest.version,
            "rows": d.n_rows(),
            "threshold": t,
            "metrics": metrics_json(&m),
        }));
    } else {
        println!(
            "version {} on {} ({} rows), threshold {t}",
            manifest.version,
            data.display(),
            d.n_rows()
        );
        print_metrics(&m);
    }
    Ok(())
}

/// `spamscope metrics`: the metrics of a predictions file.
pub fn metrics(args: MetricsArgs) -> Result<()> {
    let MetricsArgs {
        predictions,
        label_col,
        score_col,
        pred_col,
        threshold,
        sweep,
        json,
    } = args;
    let p = spamscope::ops::score::read_predictions(
        &predictions,
        &label_col,
        &score_col,
        pred_col.as_deref(),
    )?;
    let scores = match (&p.scores, &p.preds) {
        (Some(s), _) => s,
        (None, preds) => {
            // Decisions alone (a hard-voting model): the thresholded metrics.
            let preds = preds.as_deref().unwrap_or_default();
            if sweep.is_some() {
                return Err(Error::Invalid(format!(
                    "a threshold sweep needs scores, and {} has no column {}",
                    predictions.display(),
                    spamscope::util::text::quote(&score_col)
                )));
            }
            let m = spamscope::eval::metrics::DecisionMetrics::from_decisions(&p.labels, preds)?;
            let note = format!(
                "ROC-AUC and average precision need scores (no column {})",
                spamscope::util::text::quote(&score_col)
            );
            if json {
                let mut v = serde_json::to_value(m).expect("metrics serialise");
                v["roc_auc"] = Value::Null;
                v["average_precision"] = Value::Null;
                v["rows"] = json!(p.labels.len());
                v["note"] = json!(note);
                print_json(&v);
            } else {
                println!("{} rows", p.labels.len());
                println!(
                    "accuracy {:.4}  precision {:.4}  recall {:.4}  F1 {:.4}",
                    m.accuracy, m.precision, m.recall, m.f1
                );
                println!(
                    "confusion: tn {}  fp {}  fn {}  tp {}",
                    m.tn, m.fp, m.fn_, m.tp
                );
                println!("{note}");
            }
            return Ok(());
        }
    };
    let m = match &p.preds {
        Some(preds) => Metrics::from_predictions(&p.labels, preds, scores)?,
        None => Metrics::from_scores(&p.labels, scores, threshold)?,
    };
    let sweep = match sweep {
        Some(n) => {
            let lo = scores.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            Some(spamscope::eval::metrics::threshold_sweep(
                &p.labels,
                scores,
                &spamscope::eval::metrics::grid(lo.min(0.0), hi.max(1.0), n),
            )?)
        }
        None => None,
    };
    if json {
        let mut v = metrics_json(&m);
        v["rows"] = json!(p.labels.len());
        if let Some(s) = &sweep {
            v["sweep"] = serde_json::to_value(s).expect("sweep serialises");
        }
        print_json(&v);
    } else {
        println!("{} rows", p.labels.len());
        print_metrics(&m);
        if let Some(s) = &sweep {
            println!("threshold  precision  recall  f1");
            for pt in s {
                println!(
                    "{:>9.4}  {:>9.4}  {:>6.4}  {:.4}",
                    pt.threshold, pt.precision, pt.recall, pt.f1
                );
            }
        }
    }
    Ok(())
}
