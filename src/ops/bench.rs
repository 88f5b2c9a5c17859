//! `spamscope bench`: our forest and its peers (scikit-learn's RandomForestClassifier,
//! XGBoost in random-forest mode, YDF's RandomForestLearner) on the same data and split,
//! in one run, so the figures can be reported as ratios on a shared, noisy machine; and
//! shap's TreeExplainer on the scikit-learn forest against our exact TreeSHAP.
//!
//! Each peer runs `benches/peers.py` in its own Python process (in a venv that
//! `benches/make_venv.sh` creates under `target/`), so its memory figures are its own and
//! one peer failing loses nothing of the others. A peer that cannot be installed or run
//! is reported as missing, with the reason, never dropped and never an error.

use crate::data::Dataset;
use crate::data::catalog::N_FEATURES;
use crate::data::preprocess::{Imputer, stratified_split};
use crate::data::synth::{SynthParams, default_dataset};
use crate::eval::metrics::Metrics;
use crate::model::Model;
use crate::model::explain::Method;
use crate::model::forest::ForestParams;
use crate::ops::error::{Error, Result};
use crate::util::progress::StderrProgress;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub struct BenchArgs {
    pub data: Option<PathBuf>,
    pub rows: Option<usize>,
    pub trees: usize,
    /// Run the Python peers (`--no-peers` turns them off).
    pub peers: bool,
    pub python: Option<PathBuf>,
    pub json: bool,
}

/// Accounts explained in bulk for our TreeSHAP throughput.
const BULK_SHAP_ACCOUNTS: usize = 400;
/// Accounts shap's TreeExplainer explains (about a second and a half each at 300 trees).
const SHAP_ACCOUNTS: usize = 3;
/// The targets.
const TREESHAP_MS_TARGET: f64 = 10.0;
const BULK_SHAP_TARGET: f64 = 500.0;
const QUEUE_OVER_PLAIN_TARGET: f64 = 0.75;

/// A system compared with ours: its key in the JSON and `--peer` of `peers.py`, and the
/// name shown in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Peer {
    Sklearn,
    Xgboost,
    Ydf,
    Shap,
}

impl Peer {
    const FORESTS: [Peer; 3] = [Peer::Sklearn, Peer::Xgboost, Peer::Ydf];
    const ALL: [Peer; 4] = [Peer::Sklearn, Peer::Xgboost, Peer::Ydf, Peer::Shap];

    fn key(self) -> &'static str {
        match self {
            Peer::Sklearn => "sklearn",
            Peer::Xgboost => "xgboost",
            Peer::Ydf => "ydf",
            Peer::Shap => "shap",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Peer::Sklearn => "scikit-learn",
            Peer::Xgboost => "XGBoost",
            Peer::Ydf => "YDF",
            Peer::Shap => "shap",
        }
    }
}

fn missing(reason: impl Into<String>) -> Value {
    json!({ "missing": reason.into() })
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
    let threads = rayon::current_num_threads();
    eprintln!(
        "bench: {} rows ({} train / {} test), {} trees, {} threads",
        d.n_rows(),
        split.train.len(),
        split.test.len(),
        args.trees,
        threads
    );
    let ours = run_ours(&d, &labels, &split.train, &split.test, args.trees)?;
    let peers = if args.peers {
        run_peers(
            &d,
            &split.train,
            &split.test,
            args.trees,
            threads,
            args.python.as_deref(),
        )
    } else {
        Peer::ALL
            .iter()
            .map(|&p| (p, missing("not run (--no-peers)")))
            .collect()
    };
    let report = build_report(
        d.n_rows(),
        split.train.len(),
        split.test.len(),
        args.trees,
        threads,
        ours,
        peers,
    );
    if args.json {
        println!("{report}");
    } else {
        print!("{}", format_report(&report));
    }
    Ok(())
}

/// Our forest: fit (with its peak memory), predictions, latencies, explanations, the
/// review queue's workload.
fn run_ours(
    d: &Dataset,
    labels: &[u8],
    train: &[usize],
    test: &[usize],
    trees: usize,
) -> Result<Value> {
    let params = ForestParams {
        n_trees: trees,
        ..ForestParams::default()
    };
    let t = Instant::now();
    let (fitted, memory) = crate::util::memory::measure(|| {
        let imputer = Imputer::fit(&d.columns, train);
        let cols = imputer.transform_columns(&d.columns, train);
        let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        let y: Vec<u8> = train.iter().map(|&i| labels[i]).collect();
        params
            .fit(&refs, &y, None, &StderrProgress::new())
            .map(|forest| (imputer, forest))
    });
    let (imputer, forest) = fitted?;
    let fit_seconds = t.elapsed().as_secs_f64();
    let model = Model::forest(imputer, forest);
    let t = Instant::now();
    let scores = model.predict_dataset(d, Some(test));
    let predict_seconds = t.elapsed().as_secs_f64();
    let test_labels: Vec<u8> = test.iter().map(|&i| labels[i]).collect();
    let m = Metrics::from_scores(&test_labels, &scores, 0.5)?;
    let rows: Vec<Vec<f64>> = test.iter().take(200).map(|&i| d.row(i)).collect();
    let timed = |n: usize, f: &dyn Fn(&[f64])| -> f64 {
        median(
            rows.iter()
                .take(n)
                .map(|r| {
                    let t = Instant::now();
                    f(r);
                    t.elapsed().as_secs_f64() * 1000.0
                })
                .collect(),
        )
    };
    let single = timed(200, &|r| {
        std::hint::black_box(model.predict_one(r));
    });
    let treeshap = timed(15, &|r| {
        std::hint::black_box(model.explain_one(r, Method::TreeShap));
    });
    let saabas = timed(200, &|r| {
        std::hint::black_box(model.explain_one(r, Method::PathAttribution));
    });
    // Exact TreeSHAP in bulk, as an export of every account's reasons would run it.
    let bulk: Vec<usize> = test.iter().copied().take(BULK_SHAP_ACCOUNTS).collect();
    eprintln!("bench: exact TreeSHAP of {} test accounts...", bulk.len());
    let t = Instant::now();
    let bulk_rows = model.imputer.transform_rows(&d.columns, &bulk);
    std::hint::black_box(model.explain_rows(&bulk_rows, Method::TreeShap));
    let bulk_seconds = t.elapsed().as_secs_f64();
    // The floor under exact TreeSHAP of this forest: walking the nodes it visits per
    // account, with no arithmetic, on one thread.
    let (traversal_ms, traversal_nodes) = match model.as_forest() {
        Some(f) => {
            let rows: Vec<&[f64]> = bulk_rows.chunks(N_FEATURES).take(20).collect();
            let t = Instant::now();
            let nodes: usize = rows
                .iter()
                .map(|x| std::hint::black_box(f.shap_traversal(x)))
                .sum();
            (
                json!(t.elapsed().as_secs_f64() * 1000.0 / rows.len() as f64),
                json!(nodes / rows.len().max(1)),
            )
        }
        None => (Value::Null, Value::Null),
    };
    // The review queue's workload: every account of the file, probabilities only and
    // with the top three reasons (path attribution), in three alternating rounds with
    // medians: their ratio is what the target is about, and this machine's speed drifts.
    let (mut plain, mut with_reasons) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = Instant::now();
        std::hint::black_box(model.predict_dataset(d, None));
        plain.push(t.elapsed().as_secs_f64());
        let queue = crate::ops::score::score_batch(
            d,
            &model,
            0,
            0.5,
            3,
            Method::PathAttribution,
            &crate::util::progress::NoProgress,
        )?;
        with_reasons.push(queue.seconds);
    }
    let score_all_seconds = median(plain);
    let queue_seconds = median(with_reasons);
    let plain_rows_per_second = d.n_rows() as f64 / score_all_seconds.max(1e-9);
    let queue_rows_per_second = d.n_rows() as f64 / queue_seconds.max(1e-9);
    Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "score_all_seconds": score_all_seconds,
        "score_all_rows": d.n_rows(),
        "score_all_rows_per_second": plain_rows_per_second,
        "queue_seconds": queue_seconds,
        "queue_rows_per_second": queue_rows_per_second,
        "queue_over_plain": queue_rows_per_second / plain_rows_per_second,
        "fit_seconds": fit_seconds,
        "fit_peak_rss_bytes": memory.peak_rss_bytes,
        "fit_extra_rss_bytes": memory.extra_rss_bytes,
        "predict_seconds": predict_seconds,
        "single_row_ms": single,
        "treeshap_ms": treeshap,
        "treeshap_bulk_accounts": bulk.len(),
        "treeshap_bulk_seconds": bulk_seconds,
        "treeshap_bulk_accounts_per_second": bulk.len() as f64 / bulk_seconds.max(1e-9),
        "treeshap_traversal_ms": traversal_ms,
        "treeshap_traversal_nodes": traversal_nodes,
        "path_attribution_ms": saabas,
        "roc_auc": m.roc_auc,
        "f1": m.f1,
        "precision": m.precision,
        "recall": m.recall,
        "model_bytes": model.to_bytes().len(),
        "nodes": model.as_forest().map_or(0, |f| f.n_nodes()),
    }))
}

/// The JSON report: ours, every peer (figures or `{"missing": reason}`), shap, ratios
/// of ours over each peer and the targets.
fn build_report(
    rows: usize,
    train_rows: usize,
    test_rows: usize,
    trees: usize,
    threads: usize,
    ours: Value,
    mut peers: HashMap<Peer, Value>,
) -> Value {
    let mut take = |p: Peer| peers.remove(&p).unwrap_or_else(|| missing("not run"));
    let forests: Map<String, Value> = Peer::FORESTS
        .iter()
        .map(|&p| (p.key().to_string(), take(p)))
        .collect();
    let shap = take(Peer::Shap);
    let ratio = |a: &Value, b: &Value| -> Value {
        match (a.as_f64(), b.as_f64()) {
            (Some(a), Some(b)) if b > 0.0 => json!(a / b),
            _ => Value::Null,
        }
    };
    let mut ratios = Map::new();
    let mut auc_difference = Map::new();
    for (key, p) in &forests {
        let r: Map<String, Value> = RATIO_KEYS
            .iter()
            .map(|&k| (k.to_string(), ratio(&ours[k], &p[k])))
            .collect();
        ratios.insert(key.clone(), Value::Object(r));
        let diff = p["roc_auc"].as_f64().zip(ours["roc_auc"].as_f64());
        auc_difference.insert(key.clone(), json!(diff.map(|(p, o)| o - p)));
    }
    ratios.insert(
        "shap".into(),
        json!({ "treeshap_ms": ratio(&ours["treeshap_ms"], &shap["ms_per_account"]) }),
    );
    let target = |value: &Value, op: &str, bound: f64| -> Value {
        let pass = value.as_f64().map(|v| match op {
            "<=" => v <= bound,
            _ => v >= bound,
        });
        json!({ "value": value, "target": format!("{op} {bound}"), "pass": pass })
    };
    json!({
        "rows": rows,
        "train_rows": train_rows,
        "test_rows": test_rows,
        "trees": trees,
        "threads": threads,
        "targets": {
            "treeshap_ms": target(&ours["treeshap_ms"], "<=", TREESHAP_MS_TARGET),
            "treeshap_bulk_accounts_per_second":
                target(&ours["treeshap_bulk_accounts_per_second"], ">=", BULK_SHAP_TARGET),
            "queue_over_plain": target(&ours["queue_over_plain"], ">=", QUEUE_OVER_PLAIN_TARGET),
        },
        "ours": ours,
        "peers": forests,
        "shap": shap,
        "ratios_ours_over": ratios,
        "auc_difference_ours_minus": auc_difference,
    })
}

/// The figures with a ratio of ours over each forest peer (lower is better for all).
const RATIO_KEYS: [&str; 7] = [
    "fit_seconds",
    "predict_seconds",
    "score_all_seconds",
    "single_row_ms",
    "model_bytes",
    "fit_peak_rss_bytes",
    "fit_extra_rss_bytes",
];

/// The report as the table `spamscope bench` prints: one column per system.
fn format_report(r: &Value) -> String {
    let mut out = String::new();
    let cols = Columns::of(r);
    table_heading(&mut out, &cols);
    speed_rows(&mut out, &cols);
    quality_rows(&mut out, &cols);
    footprint_rows(&mut out, &cols);
    missing_peers(&mut out, &cols);
    shap_line(&mut out, r);
    ours_only_lines(&mut out, &r["ours"]);
    target_lines(&mut out, r);
    out
}

/// A number of a system's figures with `digits` decimals ("missing" for a peer that
/// did not run, "-" when absent).
fn cell_num(v: &Value, k: &str, digits: usize) -> String {
    if v.get("missing").is_some() {
        return "missing".into();
    }
    v[k].as_f64()
        .map_or("-".to_string(), |x| format!("{x:.digits$}"))
}

/// A byte count of a system's figures in MB (as [`cell_num`] for a missing one).
fn cell_mb(v: &Value, k: &str) -> String {
    if v.get("missing").is_some() {
        return "missing".into();
    }
    v[k].as_f64()
        .map_or("-".to_string(), |x| format!("{:.1}", x / 1e6))
}

/// A text of a system's figures (as [`cell_num`] for a missing one).
fn cell_text(v: &Value, k: &str) -> String {
    match (v.get("missing"), v[k].as_str()) {
        (Some(_), _) => "missing".into(),
        (None, Some(s)) => s.to_string(),
        (None, None) => "-".into(),
    }
}

/// The report's columns: ours, then each forest peer.
struct Columns<'a> {
    r: &'a Value,
    peers: Vec<(Peer, &'a Value)>,
}

impl<'a> Columns<'a> {
    fn of(r: &'a Value) -> Columns<'a> {
        let peers = Peer::FORESTS
            .iter()
            .map(|&p| (p, &r["peers"][p.key()]))
            .collect();
        Columns { r, peers }
    }

    /// A value of ours and of each peer.
    fn cells(&self, f: &dyn Fn(&Value) -> String) -> Vec<String> {
        std::iter::once(f(&self.r["ours"]))
            .chain(self.peers.iter().map(|(_, p)| f(p)))
            .collect()
    }

    /// Each peer's ratio or difference from `table` (the figure `k` of it, if given);
    /// blank under ours.
    fn versus(&self, table: &str, k: Option<&str>, f: &dyn Fn(f64) -> String) -> Vec<String> {
        let value = |p: Peer| {
            let v = &self.r[table][p.key()];
            k.map_or(v, |k| &v[k]).as_f64().map_or("-".into(), f)
        };
        std::iter::once(String::new())
            .chain(self.peers.iter().map(|&(p, _)| value(p)))
            .collect()
    }
}

/// The setup line (rows, split, trees, threads), the systems' names and versions.
fn table_heading(out: &mut String, cols: &Columns<'_>) {
    use std::fmt::Write;
    let r = cols.r;
    let _ = writeln!(
        out,
        "{} rows, {} train / {} test, {} trees, {} threads",
        r["rows"], r["train_rows"], r["test_rows"], r["trees"], r["threads"]
    );
    let header: Vec<String> = std::iter::once("spamscope")
        .chain(cols.peers.iter().map(|(p, _)| p.name()))
        .map(str::to_string)
        .collect();
    push_row(out, "", &header);
    push_row(out, "version", &cols.cells(&|v| cell_text(v, "version")));
}

/// Fit, predict, score-all and single-row times, each with ours over each peer.
fn speed_rows(out: &mut String, cols: &Columns<'_>) {
    for (label, k, digits) in [
        ("fit (s)", "fit_seconds", 2),
        ("batch predict, test set (s)", "predict_seconds", 3),
        ("score all rows (s)", "score_all_seconds", 3),
        ("single row (ms)", "single_row_ms", 3),
    ] {
        push_row(out, label, &cols.cells(&|v| cell_num(v, k, digits)));
        let ratios = cols.versus("ratios_ours_over", Some(k), &|x| format!("{x:.3}"));
        push_row(out, "  ours / peer", &ratios);
    }
}

/// ROC-AUC (with ours minus each peer) and precision, recall and F1 at 0.5.
fn quality_rows(out: &mut String, cols: &Columns<'_>) {
    push_row(out, "ROC-AUC", &cols.cells(&|v| cell_num(v, "roc_auc", 4)));
    let diff = cols.versus("auc_difference_ours_minus", None, &|x| format!("{x:+.4}"));
    push_row(out, "  ours - peer", &diff);
    for (label, k) in [
        ("precision at 0.5", "precision"),
        ("recall at 0.5", "recall"),
        ("F1 at 0.5", "f1"),
    ] {
        push_row(out, label, &cols.cells(&|v| cell_num(v, k, 4)));
    }
}

/// Memory while training and the model's size.
fn footprint_rows(out: &mut String, cols: &Columns<'_>) {
    let peak = cols.cells(&|v| cell_mb(v, "fit_peak_rss_bytes"));
    push_row(out, "peak memory, training (MB)", &peak);
    let extra = cols.cells(&|v| cell_mb(v, "fit_extra_rss_bytes"));
    push_row(out, "  of which training (MB)", &extra);
    push_row(
        out,
        "model size (MB)",
        &cols.cells(&|v| cell_mb(v, "model_bytes")),
    );
}

/// A line per peer that did not run, with why.
fn missing_peers(out: &mut String, cols: &Columns<'_>) {
    use std::fmt::Write;
    for (p, v) in &cols.peers {
        if let Some(why) = v["missing"].as_str() {
            let _ = writeln!(out, "{}: missing: {why}", p.name());
        }
    }
}

/// The shap library's TreeExplainer against our exact TreeSHAP (or why shap is
/// missing).
fn shap_line(out: &mut String, r: &Value) {
    use std::fmt::Write;
    let o = &r["ours"];
    let s = &r["shap"];
    match s["missing"].as_str() {
        Some(why) => {
            let _ = writeln!(
                out,
                "shap TreeExplainer: missing: {why}; ours exact TreeSHAP {} ms per account",
                cell_num(o, "treeshap_ms", 2)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "shap {} TreeExplainer (tree_path_dependent) on the scikit-learn forest: {} ms per account (median of {}); ours exact TreeSHAP: {} ms (ours / shap {})",
                cell_text(s, "version"),
                cell_num(s, "ms_per_account", 1),
                s["accounts"],
                cell_num(o, "treeshap_ms", 2),
                cell_num(&r["ratios_ours_over"]["shap"], "treeshap_ms", 4),
            );
        }
    }
}

/// Our figures with no peer to compare: bulk TreeSHAP and path attribution, the
/// traversal floor under TreeSHAP, scoring all rows and the review queue.
fn ours_only_lines(out: &mut String, o: &Value) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "ours exact TreeSHAP in bulk: {} accounts in {} s = {} accounts/s; path attribution: {} ms per account",
        o["treeshap_bulk_accounts"],
        cell_num(o, "treeshap_bulk_seconds", 2),
        cell_num(o, "treeshap_bulk_accounts_per_second", 0),
        cell_num(o, "path_attribution_ms", 3),
    );
    let _ = writeln!(
        out,
        "floor under exact TreeSHAP: walking the {} nodes it visits per account, no arithmetic: {} ms per account on one thread",
        o["treeshap_traversal_nodes"],
        cell_num(o, "treeshap_traversal_ms", 2),
    );
    let _ = writeln!(
        out,
        "all {} rows: {} rows/s; review queue with 3 reasons per row: {} rows/s; queue / plain {}",
        o["score_all_rows"],
        cell_num(o, "score_all_rows_per_second", 0),
        cell_num(o, "queue_rows_per_second", 0),
        cell_num(o, "queue_over_plain", 3),
    );
}

/// Each performance target with PASS, FAIL or n/a and the value measured.
fn target_lines(out: &mut String, r: &Value) {
    use std::fmt::Write;
    for (label, k, unit) in [
        ("TreeSHAP per account", "treeshap_ms", " ms"),
        (
            "bulk TreeSHAP",
            "treeshap_bulk_accounts_per_second",
            " accounts/s",
        ),
        ("review queue over plain scoring", "queue_over_plain", ""),
    ] {
        let t = &r["targets"][k];
        let verdict = match t["pass"].as_bool() {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "n/a",
        };
        let value = t["value"].as_f64().map_or("-".into(), |x| {
            if x >= 100.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.3}")
            }
        });
        let _ = writeln!(
            out,
            "target {label} {}{unit}: {verdict} ({value}{unit})",
            t["target"].as_str().unwrap_or("")
        );
    }
}

fn push_row(out: &mut String, label: &str, cells: &[String]) {
    use std::fmt::Write;
    let _ = write!(out, "{label:<30}");
    for c in cells {
        let _ = write!(out, "{c:>14}");
    }
    out.push('\n');
}

/// Where the peers' Python comes from and what the venv script said about each peer.
struct Python {
    interpreter: PathBuf,
    /// Peers the venv could not provide, with the reason.
    not_installed: HashMap<Peer, String>,
}

/// The bench venv (created or completed by `benches/make_venv.sh`), or the given
/// interpreter as it is. Never fails: what is wrong becomes each peer's reason.
fn prepare_python(python: Option<&Path>) -> Python {
    if let Some(p) = python {
        return Python {
            interpreter: p.to_path_buf(),
            not_installed: HashMap::new(),
        };
    }
    let venv = crate::ops::python::venv_dir();
    let (ok, stdout, last_err) = crate::ops::python::make_venv(&[]);
    let not_installed = venv_report(ok, &stdout, &last_err);
    Python {
        interpreter: venv.join("bin").join("python"),
        not_installed,
    }
}

/// Reads make_venv.sh's lines (`PEER\tok` or `PEER\tmissing\tREASON`); a peer without a
/// line is missing with the script's last words.
fn venv_report(ok: bool, stdout: &str, last_err: &str) -> HashMap<Peer, String> {
    let mut said: HashMap<&str, Option<String>> = HashMap::new();
    for line in stdout.lines() {
        let mut parts = line.splitn(3, '\t');
        match (parts.next(), parts.next()) {
            (Some(peer), Some("ok")) => {
                said.insert(peer, None);
            }
            (Some(peer), Some("missing")) => {
                let why = parts.next().unwrap_or("").trim();
                let why = if why.is_empty() { "not installed" } else { why };
                said.insert(peer, Some(why.to_string()));
            }
            _ => {}
        }
    }
    let fallback = if last_err.is_empty() {
        format!(
            "make_venv.sh {}",
            if ok {
                "said nothing about it"
            } else {
                "failed"
            }
        )
    } else {
        format!("make_venv.sh failed: {last_err}")
    };
    Peer::ALL
        .iter()
        .filter_map(|&p| match said.get(p.key()) {
            Some(None) => None,
            Some(Some(why)) => Some((p, why.clone())),
            None => Some((p, fallback.clone())),
        })
        .collect()
}

/// Runs every peer on the split, each in its own process: the forests, then shap on the
/// scikit-learn forest. Every peer gets figures or `{"missing": reason}`.
fn run_peers(
    d: &Dataset,
    train: &[usize],
    test: &[usize],
    trees: usize,
    threads: usize,
    python: Option<&Path>,
) -> HashMap<Peer, Value> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("spamscope-bench-{}-{run}", std::process::id()));
    let written = std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(&dir, e))
        .and_then(|()| {
            write_subset(d, train, &dir.join("train.csv"))?;
            write_subset(d, test, &dir.join("test.csv"))?;
            write_subset(
                d,
                &(0..d.n_rows()).collect::<Vec<_>>(),
                &dir.join("all.csv"),
            )
        });
    let out = match written {
        Err(e) => Peer::ALL
            .iter()
            .map(|&p| (p, missing(format!("cannot write the split: {e}"))))
            .collect(),
        Ok(()) => {
            let py = prepare_python(python);
            run_peer_processes(
                &py,
                &repo.join("benches").join("peers.py"),
                &dir,
                trees,
                threads,
            )
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn run_peer_processes(
    py: &Python,
    script: &Path,
    dir: &Path,
    trees: usize,
    threads: usize,
) -> HashMap<Peer, Value> {
    let mut out: HashMap<Peer, Value> = HashMap::new();
    let model = dir.join("sklearn-forest.pickle");
    for peer in Peer::ALL {
        let result = if let Some(why) = py.not_installed.get(&peer) {
            missing(why.clone())
        } else if let Some(why) = (peer == Peer::Shap)
            .then(|| out[&Peer::Sklearn]["missing"].as_str())
            .flatten()
        {
            missing(format!(
                "needs the scikit-learn forest, which is missing ({why})"
            ))
        } else {
            let mut args: Vec<OsString> = vec![
                script.into(),
                "--peer".into(),
                peer.key().into(),
                "--test".into(),
                dir.join("test.csv").into(),
            ];
            if peer == Peer::Shap {
                args.extend([
                    "--model-in".into(),
                    model.clone().into(),
                    "--accounts".into(),
                    SHAP_ACCOUNTS.to_string().into(),
                ]);
                eprintln!("bench: shap's TreeExplainer on the scikit-learn forest...");
            } else {
                args.extend([
                    "--train".into(),
                    dir.join("train.csv").into(),
                    "--all".into(),
                    dir.join("all.csv").into(),
                    "--trees".into(),
                    trees.to_string().into(),
                    "--threads".into(),
                    threads.to_string().into(),
                ]);
                if peer == Peer::Sklearn {
                    args.extend(["--model-out".into(), model.clone().into()]);
                }
                eprintln!("bench: fitting {} (this takes a while)...", peer.name());
            }
            run_peer(&py.interpreter, &args)
        };
        if let Some(why) = result["missing"].as_str() {
            eprintln!("bench: {} missing: {why}", peer.name());
        }
        out.insert(peer, result);
    }
    out
}

/// Runs one peer process: its JSON (the last line of its stdout), or
/// `{"missing": reason}` with the one line that says why it failed.
fn run_peer(python: &Path, args: &[OsString]) -> Value {
    let out = match Command::new(python)
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) => return missing(format!("cannot run {}: {e}", python.display())),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last_err = stderr.lines().rev().map(str::trim).find(|l| !l.is_empty());
    if !out.status.success() {
        return missing(match last_err {
            Some(l) => l.to_string(),
            None => format!(
                "{} failed ({}) without a message",
                python.display(),
                out.status
            ),
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    match serde_json::from_str::<Value>(last) {
        Ok(v) if v.is_object() && v.get("missing").is_none() => v,
        Ok(_) => missing("printed no JSON object"),
        Err(e) => missing(format!("printed no JSON: {e}")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> (Dataset, Vec<usize>, Vec<usize>) {
        let d = default_dataset(SynthParams { rows: 600, seed: 3 });
        let labels = d.require_both_classes().unwrap().to_vec();
        let split = stratified_split(&labels, 0.2, 42).unwrap();
        (d, split.train, split.test)
    }

    #[cfg(unix)]
    #[test]
    fn a_peer_that_cannot_run_is_missing_with_its_reason() {
        let (d, train, test) = small();
        for (python, reason) in [
            (
                "/bin/false",
                "/bin/false failed (exit status: 1) without a message",
            ),
            (
                "/nonexistent/python",
                "cannot run /nonexistent/python: No such file",
            ),
        ] {
            let peers = run_peers(&d, &train, &test, 3, 1, Some(Path::new(python)));
            for p in Peer::FORESTS {
                let why = peers[&p]["missing"].as_str().unwrap_or_default();
                assert!(why.contains(reason), "{p:?}: {}", peers[&p]);
            }
            let why = peers[&Peer::Shap]["missing"].as_str().unwrap_or_default();
            assert!(
                why.starts_with("needs the scikit-learn forest") && why.contains(reason),
                "{why}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_peer_that_prints_no_json_is_missing() {
        // `echo` succeeds and prints its arguments: not a JSON object.
        let v = run_peer(Path::new("echo"), &["--peer".into(), "ydf".into()]);
        let why = v["missing"].as_str().unwrap_or_default();
        assert!(why.starts_with("printed no JSON: "), "{v}");
        // `sh -c` fails with a message: its last line is the reason.
        let v = run_peer(
            Path::new("sh"),
            &[
                "-c".into(),
                "echo first >&2; echo 'No module named ydf' >&2; exit 3".into(),
            ],
        );
        assert_eq!(v["missing"], "No module named ydf");
        let v = run_peer(
            Path::new("sh"),
            &["-c".into(), "echo '{\"fit_seconds\": 2}'".into()],
        );
        assert_eq!(v["fit_seconds"], 2);
    }

    #[test]
    fn the_venv_script_reports_each_peer() {
        let out = "sklearn\tok\nxgboost\tmissing\tpip install xgboost-cpu failed: ERROR: no wheel\nshap\tok\n";
        let r = venv_report(true, out, "");
        assert_eq!(
            r[&Peer::Xgboost],
            "pip install xgboost-cpu failed: ERROR: no wheel"
        );
        assert!(!r.contains_key(&Peer::Sklearn) && !r.contains_key(&Peer::Shap));
        // No line for YDF: the script's own last words.
        assert_eq!(r[&Peer::Ydf], "make_venv.sh said nothing about it");
        let r = venv_report(false, "", "make_venv: python3 -m venv failed: no ensurepip");
        for p in Peer::ALL {
            assert_eq!(
                r[&p],
                "make_venv.sh failed: make_venv: python3 -m venv failed: no ensurepip"
            );
        }
    }

    fn figures(fit: f64, auc: f64) -> Value {
        json!({
            "version": "1.2.3",
            "fit_seconds": fit,
            "predict_seconds": 0.5,
            "score_all_seconds": 1.0,
            "single_row_ms": 2.0,
            "roc_auc": auc,
            "precision": 0.8,
            "recall": 0.7,
            "f1": 0.75,
            "fit_peak_rss_bytes": 1_000_000_000u64,
            "fit_extra_rss_bytes": 700_000_000u64,
            "model_bytes": 50_000_000u64,
        })
    }

    #[test]
    fn the_table_shows_missing_peers_with_their_reason() {
        let mut ours = figures(1.0, 0.95);
        ours["treeshap_ms"] = json!(4.0);
        ours["treeshap_bulk_accounts_per_second"] = json!(400.0);
        ours["queue_over_plain"] = json!(0.8);
        let peers = HashMap::from([
            (Peer::Sklearn, figures(4.0, 0.94)),
            (
                Peer::Xgboost,
                missing("pip install xgboost-cpu failed: ERROR: no wheel"),
            ),
            (Peer::Ydf, figures(2.0, 0.96)),
            (
                Peer::Shap,
                json!({"version": "0.51.0", "ms_per_account": 1400.0, "accounts": 3}),
            ),
        ]);
        let r = build_report(1000, 800, 200, 300, 2, ours, peers);
        assert_eq!(r["ratios_ours_over"]["sklearn"]["fit_seconds"], 0.25);
        assert_eq!(r["ratios_ours_over"]["ydf"]["fit_seconds"], 0.5);
        assert_eq!(r["ratios_ours_over"]["xgboost"]["fit_seconds"], Value::Null);
        assert_eq!(
            r["peers"]["xgboost"]["missing"],
            "pip install xgboost-cpu failed: ERROR: no wheel"
        );
        assert!((r["auc_difference_ours_minus"]["sklearn"].as_f64().unwrap() - 0.01).abs() < 1e-9);
        assert_eq!(r["targets"]["treeshap_ms"]["pass"], true);
        assert_eq!(
            r["targets"]["treeshap_bulk_accounts_per_second"]["pass"],
            false
        );
        assert_eq!(r["targets"]["queue_over_plain"]["pass"], true);

        let table = format_report(&r);
        let header = table.lines().nth(1).unwrap();
        for name in ["spamscope", "scikit-learn", "XGBoost", "YDF"] {
            assert!(header.contains(name), "{header}");
        }
        let fit = table.lines().find(|l| l.starts_with("fit (s)")).unwrap();
        assert_eq!(
            fit.split_whitespace().collect::<Vec<_>>(),
            ["fit", "(s)", "1.00", "4.00", "missing", "2.00"]
        );
        let ratio = table
            .lines()
            .skip_while(|l| !l.starts_with("fit (s)"))
            .nth(1)
            .unwrap();
        assert_eq!(
            ratio.split_whitespace().collect::<Vec<_>>(),
            ["ours", "/", "peer", "0.250", "-", "0.500"]
        );
        let memory = table
            .lines()
            .find(|l| l.starts_with("peak memory"))
            .unwrap();
        assert_eq!(
            memory.split_whitespace().collect::<Vec<_>>(),
            [
                "peak", "memory,", "training", "(MB)", "1000.0", "1000.0", "missing", "1000.0"
            ]
        );
        assert!(
            table.contains("XGBoost: missing: pip install xgboost-cpu failed: ERROR: no wheel"),
            "{table}"
        );
        assert!(
            table.contains("on the scikit-learn forest: 1400.0 ms per account (median of 3)"),
            "{table}"
        );
        assert!(
            table.contains("target bulk TreeSHAP >= 500 accounts/s: FAIL (400 accounts/s)"),
            "{table}"
        );
        assert!(
            table.contains("target TreeSHAP per account <= 10 ms: PASS (4.000 ms)"),
            "{table}"
        );
    }
}
