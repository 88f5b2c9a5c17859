//! What the commands print: one JSON object (`--json`), metrics as text.

use serde_json::{Value, json};
use spamscope::data::catalog::catalog;
use spamscope::eval::metrics::Metrics;

pub fn print_json(v: &Value) {
    println!("{v}");
}

pub fn metrics_json(m: &Metrics) -> Value {
    serde_json::to_value(m).expect("metrics serialise")
}

pub fn importance_json(importance: &[f64]) -> Value {
    let map: serde_json::Map<String, Value> = catalog()
        .ids()
        .zip(importance)
        .map(|(id, v)| (id.to_string(), json!(v)))
        .collect();
    Value::Object(map)
}

pub fn print_metrics(m: &Metrics) {
    println!(
        "accuracy {:.4}  precision {:.4}  recall {:.4}  F1 {:.4}  ROC-AUC {:.4}  AP {:.4}",
        m.accuracy, m.precision, m.recall, m.f1, m.roc_auc, m.average_precision
    );
    println!(
        "confusion: tn {}  fp {}  fn {}  tp {}",
        m.tn, m.fp, m.fn_, m.tp
    );
}
