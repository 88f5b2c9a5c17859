//! `spamscope bench`: our forest and scikit-learn's on the same data and split, in one
//! run, so the figures can be reported as ratios on a shared, noisy machine.

use crate::data::Dataset;
use crate::data::preprocess::{Imputer, stratified_split};
use crate::data::synth::{SynthParams, default_dataset};
use crate::eval::metrics::Metrics;
use crate::model::Model;
use crate::model::explain::Method;
use crate::model::forest::ForestParams;
use crate::ops::error::{Error, Result};
use crate::util::progress::StderrProgress;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct BenchArgs {
    pub data: Option<PathBuf>,
    pub rows: Option<usize>,
    pub trees: usize,
    pub sklearn: bool,
    pub python: Option<PathBuf>,
    pub json: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: BenchArgs) -> Result<()> {
    let mut d = match &args.data {
        Some(p) => Dataset::load_csv(p)?,
        None => default_dataset(SynthParams::default()),
    };
    if let Some(n) = args.rows.filter(|&n| n < d.n_rows()) {
        d = d.subset(&(0..n).collect::<Vec<_>>());
    }
    let labels = d.require_both_classes()?.to_vec();
    let split = stratified_split(&labels, 0.2, 42)?;
    eprintln!(
        "bench: {} rows ({} train / {} test), {} trees, {} threads",
        d.n_rows(),
        split.train.len(),
        split.test.len(),
        args.trees,
        rayon::current_num_threads()
    );

    // Ours.
    let params = ForestParams {
        n_trees: args.trees,
        ..ForestParams::default()
    };
    let t = Instant::now();
    let imputer = Imputer::fit(&d.columns, &split.train);
    let cols = imputer.transform_columns(&d.columns, &split.train);
    let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
    let y: Vec<u8> = split.train.iter().map(|&i| labels[i]).collect();
    let forest = params.fit(&refs, &y, None, &StderrProgress::new())?;
    let fit_seconds = t.elapsed().as_secs_f64();
    drop(cols);
    let model = Model::forest(imputer, forest);
    let t = Instant::now();
    let scores = model.predict_dataset(&d, Some(&split.test));
    let predict_seconds = t.elapsed().as_secs_f64();
    let test_labels: Vec<u8> = split.test.iter().map(|&i| labels[i]).collect();
    let m = Metrics::from_scores(&test_labels, &scores, 0.5)?;
    let rows: Vec<Vec<f64>> = split.test.iter().take(200).map(|&i| d.row(i)).collect();
    let single: Vec<f64> = rows
        .iter()
        .map(|r| {
            let t = Instant::now();
            std::hint::black_box(model.predict_one(r));
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let shap: Vec<f64> = rows
        .iter()
        .take(15)
        .map(|r| {
            let t = Instant::now();
            std::hint::black_box(model.explain_one(r, Method::TreeShap));
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let saabas: Vec<f64> = rows
        .iter()
        .map(|r| {
            let t = Instant::now();
            std::hint::black_box(model.explain_one(r, Method::PathAttribution));
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    // The review queue's workload: every account of the file, probabilities only and
    // with the top three reasons (path attribution).
    let t = Instant::now();
    let all = model.predict_dataset(&d, None);
    let score_all_seconds = t.elapsed().as_secs_f64();
    std::hint::black_box(all);
    let queue = crate::ops::score::score_batch(
        &d,
        &model,
        0,
        0.5,
        3,
        Method::PathAttribution,
        &crate::util::progress::NoProgress,
    )?;
    let ours = json!({
        "score_all_seconds": score_all_seconds,
        "score_all_rows": d.n_rows(),
        "score_all_rows_per_second": d.n_rows() as f64 / score_all_seconds,
        "queue_seconds": queue.seconds,
        "queue_rows_per_second": queue.rows_per_second(),
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
        "single_row_ms": median(single),
        "treeshap_ms": median(shap),
        "path_attribution_ms": median(saabas),
        "roc_auc": m.roc_auc,
        "f1": m.f1,
        "precision": m.precision,
        "recall": m.recall,
        "model_bytes": model.to_bytes().len(),
        "nodes": model.as_forest().map_or(0, |f| f.n_nodes()),
    });

    let peer = if args.sklearn {
        Some(run_sklearn(
            &d,
            &split.train,
            &split.test,
            args.trees,
            args.python.as_deref(),
        )?)
    } else {
        None
    };
    let ratio = |k: &str| -> Value {
        match &peer {
            Some(p) => match (ours[k].as_f64(), p[k].as_f64()) {
                (Some(a), Some(b)) if b > 0.0 => json!(a / b),
                _ => Value::Null,
            },
            None => Value::Null,
        }
    };
    let report = json!({
        "rows": d.n_rows(),
        "train_rows": split.train.len(),
        "test_rows": split.test.len(),
        "trees": args.trees,
        "threads": rayon::current_num_threads(),
        "ours": ours,
        "sklearn": peer.clone().unwrap_or(Value::Null),
        "ratios_ours_over_sklearn": {
            "fit_seconds": ratio("fit_seconds"),
            "predict_seconds": ratio("predict_seconds"),
            "score_all_seconds": ratio("score_all_seconds"),
            "single_row_ms": ratio("single_row_ms"),
            "model_bytes": ratio("model_bytes"),
        },
        "auc_difference": peer.as_ref().and_then(|p| p["roc_auc"].as_f64()).map(|a| m.roc_auc - a),
    });
    if args.json {
        println!("{report}");
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &Value) {
    let o = &r["ours"];
    let s = &r["sklearn"];
    let f = |v: &Value, k: &str, digits: usize| -> String {
        v[k].as_f64()
            .map_or("-".to_string(), |x| format!("{x:.digits$}"))
    };
    println!(
        "{} rows, {} train / {} test, {} trees, {} threads",
        r["rows"], r["train_rows"], r["test_rows"], r["trees"], r["threads"]
    );
    println!(
        "{:<28}{:>14}{:>14}{:>12}",
        "", "spamscope", "scikit-learn", "ratio"
    );
    for (label, k, d) in [
        ("fit (s)", "fit_seconds", 2),
        ("batch predict, test set (s)", "predict_seconds", 3),
        ("score all rows (s)", "score_all_seconds", 3),
        ("single row (ms)", "single_row_ms", 3),
        ("model size (bytes)", "model_bytes", 0),
    ] {
        println!(
            "{:<28}{:>14}{:>14}{:>12}",
            label,
            f(o, k, d),
            f(s, k, d),
            f(&r["ratios_ours_over_sklearn"], k, 4)
        );
    }
    println!(
        "{:<28}{:>14}{:>14}{:>12}",
        "ROC-AUC",
        f(o, "roc_auc", 4),
        f(s, "roc_auc", 4),
        r["auc_difference"]
            .as_f64()
            .map_or("-".into(), |x| format!("{x:+.4}"))
    );
    for (label, k) in [
        ("precision at 0.5", "precision"),
        ("recall at 0.5", "recall"),
        ("F1 at 0.5", "f1"),
    ] {
        println!("{:<28}{:>14}{:>14}", label, f(o, k, 4), f(s, k, 4));
    }
    println!(
        "all {} rows: {} rows/s (scikit-learn {} rows/s); review queue with 3 reasons per row: {} rows/s",
        o["score_all_rows"],
        f(o, "score_all_rows_per_second", 0),
        f(s, "score_all_rows_per_second", 0),
        f(o, "queue_rows_per_second", 0)
    );
    println!(
        "TreeSHAP one account: {} ms; path attribution: {} ms",
        f(o, "treeshap_ms", 1),
        f(o, "path_attribution_ms", 3),
    );
}

/// Writes the split to CSV and runs `benches/sklearn_peer.py` in the bench venv.
fn run_sklearn(
    d: &Dataset,
    train: &[usize],
    test: &[usize],
    trees: usize,
    python: Option<&Path>,
) -> Result<Value> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = match python {
        Some(p) => p.to_path_buf(),
        None => {
            let venv = std::env::var_os("SPAMSCOPE_BENCH_VENV")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo.join("target").join("bench-venv"));
            eprintln!(
                "bench: preparing the scikit-learn venv at {}",
                venv.display()
            );
            let status = std::process::Command::new("bash")
                .arg(repo.join("benches").join("make_venv.sh"))
                .arg(&venv)
                .status()
                .map_err(|e| Error::Invalid(format!("cannot run make_venv.sh: {e}")))?;
            if !status.success() {
                return Err(Error::Invalid(
                    "creating the scikit-learn venv failed (see above); use --no-sklearn or --python".into(),
                ));
            }
            venv.join("bin").join("python")
        }
    };
    let dir = std::env::temp_dir().join(format!("spamscope-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let train_csv = dir.join("train.csv");
    let test_csv = dir.join("test.csv");
    let all_csv = dir.join("all.csv");
    write_subset(d, train, &train_csv)?;
    write_subset(d, test, &test_csv)?;
    write_subset(d, &(0..d.n_rows()).collect::<Vec<_>>(), &all_csv)?;
    eprintln!("bench: fitting scikit-learn (this takes a while)...");
    let out = std::process::Command::new(&python)
        .arg(repo.join("benches").join("sklearn_peer.py"))
        .arg(&train_csv)
        .arg(&test_csv)
        .arg(trees.to_string())
        .arg(&all_csv)
        .output()
        .map_err(|e| Error::Invalid(format!("cannot run {}: {e}", python.display())))?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        return Err(Error::Invalid(format!(
            "the scikit-learn peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Invalid(format!("the scikit-learn peer printed no JSON: {e}")))
}

fn write_subset(d: &Dataset, idx: &[usize], path: &Path) -> Result<()> {
    use std::io::Write;
    let f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = std::io::BufWriter::new(f);
    let labels = d.require_labels()?;
    let mut line = String::from("label,user_id");
    for id in crate::data::catalog::catalog().ids() {
        line.push(',');
        line.push_str(id);
    }
    writeln!(w, "{line}").map_err(|e| Error::io(path, e))?;
    for &i in idx {
        line.clear();
        // The user id is input text (see `csv_cell`); the rest are numbers.
        line.push_str(&format!(
            "{},{}",
            labels[i],
            crate::util::text::csv_cell(&d.user_ids[i])
        ));
        for c in &d.columns {
            line.push(',');
            if !c[i].is_nan() {
                line.push_str(&c[i].to_string());
            }
        }
        writeln!(w, "{line}").map_err(|e| Error::io(path, e))?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}
