//! The command line: `spamscope <command>`. With `--json` a command prints exactly one
//! JSON object on standard output; progress goes to standard error. Every error is one
//! line on standard error and a non-zero exit code.

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use spamscope::data::Dataset;
use spamscope::data::catalog::catalog;
use spamscope::data::synth::{SynthParams, default_dataset, generate};
use spamscope::eval::metrics::Metrics;
use spamscope::model::explain::Method;
use spamscope::model::forest::{ClassWeight, ForestParams};
use spamscope::ops::compare;
use spamscope::ops::error::{Error, Result};
use spamscope::ops::train::{TrainConfig, evaluate, train_and_register};
use spamscope::store::Registry;
use spamscope::util::progress::{NoProgress, StderrProgress};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "spamscope",
    version,
    about = "Score marketplace accounts for spam risk, explain the score, learn from moderators.",
    long_about = "Score marketplace accounts for spam risk, explain the score, learn from moderators.\n\nWithout a command, spamscope opens the desktop app."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Open the app on a team's spamscope service (e.g. http://127.0.0.1:8000): its
    /// versions, feedback and statistics; scoring stays local on a copy of its model.
    /// The token is asked once (or taken from SPAMSCOPE_TOKEN). Remembered: the next
    /// start without it connects again (File > Work on this computer only leaves).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ClassWeightArg {
    Balanced,
    None,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write the synthetic default dataset (or another size/seed) as CSV.
    GenData {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = spamscope::data::synth::DEFAULT_ROWS)]
        rows: usize,
        #[arg(long, default_value_t = spamscope::data::synth::DEFAULT_SEED)]
        seed: u64,
    },
    /// Train a forest, evaluate it on a holdout, register it as the active version.
    Train {
        /// Training CSV (label,user_id,X1..X51), or `synthetic` for the built-in data.
        #[arg(long)]
        data: String,
        /// Evaluate on this file instead of a holdout split.
        #[arg(long)]
        test: Option<PathBuf>,
        #[arg(long, default_value_t = 0.2)]
        test_fraction: f64,
        #[arg(long, default_value_t = 300)]
        trees: usize,
        /// Maximum depth; 0 for unlimited.
        #[arg(long, default_value_t = 20)]
        max_depth: usize,
        #[arg(long, default_value_t = 5)]
        min_samples_split: usize,
        #[arg(long, default_value_t = 1)]
        min_samples_leaf: usize,
        #[arg(long, value_enum, default_value_t = ClassWeightArg::Balanced)]
        class_weight: ClassWeightArg,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Train the comparison's models on one stratified split and print their metrics
    /// (the table is kept in the registry for the Compare tab and reports).
    Compare {
        /// Labelled CSV, or `synthetic` for the built-in data.
        #[arg(long)]
        data: String,
        #[arg(long, default_value_t = 0.2)]
        test_fraction: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Only these models (comma-separated names as in the table, e.g.
        /// "decision tree,logistic regression"); default: all.
        #[arg(long)]
        only: Option<String>,
        /// Register the model of this name as a new version and make it active.
        #[arg(long)]
        promote: Option<String>,
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Export a report folder: Markdown model card, PNG charts, scored queue (CSV).
    Report {
        /// Folder to write (created if needed).
        #[arg(long)]
        out: PathBuf,
        /// Accounts to describe and score: a CSV, or `synthetic`; default: the
        /// version's training data.
        #[arg(long)]
        data: Option<String>,
        /// Version to report on (default: the active one).
        #[arg(long)]
        version: Option<u32>,
        #[arg(long)]
        registry: Option<PathBuf>,
    },
    /// Evaluate a registered version on a labelled CSV.
    Eval {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        registry: Option<PathBuf>,
        /// Version to use (default: the active one).
        #[arg(long)]
        version: Option<u32>,
        /// Decision threshold (default: the version's).
        #[arg(long)]
        threshold: Option<f64>,
        #[arg(long)]
        json: bool,
    },
    /// Score a CSV of accounts and write probabilities, verdicts and top reasons.
    Score {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        version: Option<u32>,
        /// Decision threshold (default: the version's).
        #[arg(long)]
        threshold: Option<f64>,
        /// Add the K largest feature contributions per account.
        #[arg(long, default_value_t = 0)]
        explain: usize,
        /// Use exact TreeSHAP instead of path attribution (slow on big files).
        #[arg(long)]
        exact: bool,
    },
    /// Metrics of a predictions file (scikit-learn's definitions).
    Metrics {
        #[arg(long)]
        predictions: PathBuf,
        #[arg(long, default_value = "y_test")]
        label_col: String,
        #[arg(long, default_value = "y_proba")]
        score_col: String,
        /// 0/1 decisions; without it decisions are score > threshold.
        #[arg(long)]
        pred_col: Option<String>,
        #[arg(long, default_value_t = 0.5)]
        threshold: f64,
        /// Also print a threshold sweep with this many steps.
        #[arg(long)]
        sweep: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// List the registered model versions.
    Versions {
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Retrain from moderators' feedback now; promote the candidate if it passes the gate.
    Retrain {
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Serve scoring and feedback over HTTP (a drop-in for the reference API).
    Serve {
        #[arg(long)]
        registry: Option<PathBuf>,
        /// Address to listen on; loopback unless API tokens exist.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// Worker threads (default: the number of cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Log level on stderr: error, warn, info (a line per failed request and
        /// every change of version) or debug (a line per request).
        #[arg(long, default_value = "info")]
        log: tracing::Level,
        /// POST alerts (error rate, an experiment's agreement dropping) as JSON to this
        /// http(s) URL; default: `webhook_url` in the registry's online.ron, if set.
        #[arg(long)]
        webhook: Option<String>,
    },
    /// Make an earlier version active again.
    Rollback {
        /// The version to activate.
        #[arg(long)]
        to: u32,
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Moderator feedback: import labelled accounts, show statistics.
    #[command(subcommand)]
    Feedback(FeedbackCommand),
    /// API tokens of the scoring service: add (the secret is shown once), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Accounts' confirmed final labels: confirm one, or import a file of them.
    #[command(subcommand)]
    Label(LabelCommand),
    /// Benchmark our forest against scikit-learn, XGBoost and YDF (and our TreeSHAP
    /// against shap's) on the same data and split.
    Bench {
        /// Data to use (default: the synthetic default dataset).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Use only the first N rows of the data.
        #[arg(long)]
        rows: Option<usize>,
        #[arg(long, default_value_t = 300)]
        trees: usize,
        /// Skip the Python peers (ours only).
        #[arg(long, alias = "no-sklearn")]
        no_peers: bool,
        /// Python interpreter for the peers (default: a venv the bench creates).
        #[arg(long)]
        python: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum FeedbackCommand {
    /// Store every labelled row of a CSV as a feedback record (scored by the active
    /// version when there is one), committed in batches.
    Import {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        registry: Option<PathBuf>,
        /// Records per transaction (default: the online-learning batch_size).
        #[arg(long)]
        batch: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Totals and agreement between the model and moderators, per version.
    Stats {
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum LabelCommand {
    /// Confirm one account's final label (replaces an earlier confirmation).
    Confirm {
        #[arg(long)]
        user_id: String,
        /// spam or legit (also 1/0).
        #[arg(long)]
        label: String,
        #[arg(long, default_value = "")]
        notes: String,
        /// Who confirms (default: $USER, else "cli").
        #[arg(long)]
        by: Option<String>,
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Confirm the labels of a `user_id,label` CSV (header optional; labels spam/legit
    /// or 1/0), all in one transaction.
    Import {
        file: PathBuf,
        /// Who confirms (default: $USER, else "cli").
        #[arg(long)]
        by: Option<String>,
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print its secret (shown this once; only its hash is kept).
    Add {
        /// 1 to 64 characters among letters, digits and _ . @ -
        #[arg(long)]
        name: String,
        /// scorer (predict), moderator (+ feedback) or admin (+ retrain, rollback, versions).
        #[arg(long)]
        role: String,
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The tokens: name, role, creation time (never secrets or hashes).
    List {
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Remove a token; its secret stops working.
    Revoke {
        name: String,
        #[arg(long)]
        registry: Option<PathBuf>,
    },
}

/// Parses arguments and runs; returns the process exit code.
pub fn main_with_args(args: Vec<std::ffi::OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                print!("{e}");
                return 0;
            }
            // One line: clap's message without the usage and help hints.
            let text = e.render().to_string();
            let msg: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more"))
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("{}", msg.join(" "));
            return 2;
        }
    };
    match cli.command {
        None => open_app(cli.server),
        Some(_) if cli.server.is_some() => {
            eprintln!(
                "error: --server opens the app on a team's service; it does not go with a command (commands take --registry)"
            );
            2
        }
        Some(cmd) => match run(cmd) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {}", one_line(&e.to_string()));
                1
            }
        },
    }
}

/// Without a command: the desktop app, when this binary has it.
#[cfg(feature = "gui")]
fn open_app(server: Option<String>) -> i32 {
    if let Some(Err(e)) = server.as_deref().map(spamscope::remote::normalize_url) {
        eprintln!("error: --server: {e}");
        return 2;
    }
    match spamscope::app::run(server) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "error: cannot open the app window: {}",
                one_line(&e.to_string())
            );
            1
        }
    }
}

#[cfg(not(feature = "gui"))]
fn open_app(_server: Option<String>) -> i32 {
    eprintln!(
        "this spamscope was built without the desktop app (--no-default-features); \
         build it with the default features (`cargo run --release`) for the app, \
         or run `spamscope --help` for the commands"
    );
    2
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn registry(dir: Option<PathBuf>) -> Result<Registry> {
    Ok(Registry::open(dir.unwrap_or_else(Registry::default_root))?)
}

fn print_json(v: &Value) {
    println!("{v}");
}

fn load_data(spec: &str) -> Result<Dataset> {
    if spec == "synthetic" {
        eprintln!("generating the synthetic default dataset...");
        Ok(default_dataset(SynthParams::default()))
    } else {
        eprintln!("loading {spec}...");
        Ok(Dataset::load_csv(Path::new(spec))?)
    }
}

fn warn(d: &Dataset) {
    for w in &d.warnings {
        eprintln!("warning: {}: {w}", d.source_name());
    }
}

fn check_threshold(t: f64) -> Result<f64> {
    if (0.0..=1.0).contains(&t) {
        Ok(t)
    } else {
        Err(Error::Invalid(format!(
            "threshold must be between 0 and 1, got {t}"
        )))
    }
}

/// The version to use (given or active), its threshold (or the one given) and the data.
fn version_and_data(
    reg: Option<PathBuf>,
    version: Option<u32>,
    threshold: Option<f64>,
    data: &Path,
) -> Result<(
    spamscope::store::Manifest,
    spamscope::model::Model,
    f64,
    Dataset,
)> {
    let registry = registry(reg)?;
    let (manifest, model) = registry.load_version(version)?;
    let t = check_threshold(threshold.unwrap_or(manifest.threshold))?;
    let d = Dataset::load_csv(data)?;
    warn(&d);
    Ok((manifest, model, t, d))
}

fn metrics_json(m: &Metrics) -> Value {
    serde_json::to_value(m).expect("metrics serialise")
}

fn importance_json(importance: &[f64]) -> Value {
    let map: serde_json::Map<String, Value> = catalog()
        .ids()
        .zip(importance)
        .map(|(id, v)| (id.to_string(), json!(v)))
        .collect();
    Value::Object(map)
}

/// Runs `f` on a rayon pool with `threads` workers (or the global pool).
fn with_threads<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> Result<T> {
    match threads {
        None => Ok(f()),
        Some(0) => Err(Error::Invalid("threads must be at least 1".into())),
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map(|p| p.install(f))
            .map_err(|e| Error::Invalid(format!("cannot start {n} threads: {e}"))),
    }
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::GenData { out, rows, seed } => {
            if rows == 0 {
                return Err(Error::Invalid("rows must be at least 1".into()));
            }
            let p = SynthParams { rows, seed };
            let t = generate(p);
            let tmp = out.with_extension("csv.partial");
            let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            t.write_csv(f).map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, &out).map_err(|e| Error::io(&out, e))?;
            let pos: usize = t.labels.iter().map(|&l| l as usize).sum();
            eprintln!(
                "wrote {} ({} rows, {} spammers, {} missing values)",
                out.display(),
                t.rows(),
                pos,
                t.missing_x13.len()
            );
            Ok(())
        }
        Command::Train {
            data,
            test,
            test_fraction,
            trees,
            max_depth,
            min_samples_split,
            min_samples_leaf,
            class_weight,
            seed,
            threads,
            registry: reg,
            json,
        } => {
            let cfg = TrainConfig {
                params: ForestParams {
                    n_trees: trees,
                    max_depth: (max_depth > 0).then_some(max_depth),
                    min_samples_split,
                    min_samples_leaf,
                    class_weight: match class_weight {
                        ClassWeightArg::Balanced => ClassWeight::Balanced,
                        ClassWeightArg::None => ClassWeight::None,
                    },
                    seed,
                    ..ForestParams::default()
                },
                recipe: None,
                test_fraction,
                threshold: 0.5,
            };
            cfg.params.validate()?;
            let registry = registry(reg)?;
            let d = load_data(&data)?;
            warn(&d);
            let test_d = match &test {
                Some(p) => {
                    let t = Dataset::load_csv(p)?;
                    warn(&t);
                    Some(t)
                }
                None => None,
            };
            let progress = StderrProgress::new();
            let (trained, manifest) = with_threads(threads, || {
                train_and_register(&registry, &d, test_d.as_ref(), &cfg, &progress)
            })??;
            let m = &trained.metrics;
            if json {
                print_json(&json!({
                    "version": manifest.version,
                    "train_seconds": trained.train_seconds,
                    "rows": trained.train_rows,
                    "test_rows": trained.holdout.labels.len(),
                    "model_bytes": manifest.model_file.bytes,
                    "metrics": metrics_json(m),
                    "importance": importance_json(trained.model.importance()),
                }));
            } else {
                println!(
                    "version {} trained on {} rows in {:.1} s ({}, model file {:.1} MB)",
                    manifest.version,
                    trained.train_rows,
                    trained.train_seconds,
                    trained.model.describe(),
                    manifest.model_file.bytes as f64 / 1e6
                );
                print_metrics(m);
            }
            Ok(())
        }
        Command::Eval {
            data,
            registry: reg,
            version,
            threshold,
            json,
        } => {
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
        Command::Score {
            data,
            out,
            registry: reg,
            version,
            threshold,
            explain,
            exact,
        } => {
            let (manifest, model, t, d) = version_and_data(reg, version, threshold, &data)?;
            let method = if exact {
                Method::TreeShap
            } else {
                Method::PathAttribution
            };
            let b = spamscope::ops::score::score_batch(
                &d,
                &model,
                manifest.version,
                t,
                explain,
                method,
                &StderrProgress::new(),
            )?;
            spamscope::ops::score::write_batch_csv(&d, &b, None, &out)?;
            eprintln!("wrote {} ({} accounts)", out.display(), d.n_rows());
            Ok(())
        }
        Command::Metrics {
            predictions,
            label_col,
            score_col,
            pred_col,
            threshold,
            sweep,
            json,
        } => {
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
                    let m = spamscope::eval::metrics::DecisionMetrics::from_decisions(
                        &p.labels, preds,
                    )?;
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
        Command::Compare {
            data,
            test_fraction,
            seed,
            only,
            promote,
            registry: reg,
            json,
        } => {
            let registry = registry(reg)?;
            let d = load_data(&data)?;
            warn(&d);
            let names: Vec<String> = only
                .as_deref()
                .map(|o| o.split(',').map(str::to_string).collect())
                .unwrap_or_default();
            let candidates = compare::select_candidates(seed, &names)?;
            if let Some(p) = &promote {
                compare::check_promotable(&candidates, p)?;
            }
            let compared = compare::run(
                &registry,
                &d,
                &candidates,
                test_fraction,
                seed,
                promote.is_some(),
                &StderrProgress::new(),
            )?;
            if let Some(e) = compared.not_saved {
                return Err(e);
            }
            let (cmp, saved) = (&compared.comparison, &compared.saved);
            let promoted = match &promote {
                Some(p) => Some(compare::promote(&registry, cmp, &d, p, test_fraction)?.0),
                None => None,
            };
            if json {
                print_json(&json!({
                    "models": cmp.rows(),
                    "best_f1": saved.best_f1,
                    "best_auc": saved.best_auc,
                    "failed": saved.failed,
                    "promoted_version": promoted.as_ref().map(|m| m.version),
                }));
            } else {
                println!(
                    "{} training / {} test accounts ({} spammers), metrics at threshold 0.5\n",
                    cmp.train_rows, cmp.test_rows, cmp.test_positives
                );
                print!("{}", cmp.markdown());
                if let Some(m) = promoted {
                    println!(
                        "\nregistered {} as version {} (active)",
                        m.model_kind(),
                        m.version
                    );
                }
            }
            Ok(())
        }
        Command::Report {
            out,
            data,
            version,
            registry: reg,
        } => {
            let registry = registry(reg)?;
            let (manifest, model) = registry.load_version(version)?;
            let d = match &data {
                Some(spec) => load_data(spec)?,
                None => {
                    eprintln!("loading the version's training data...");
                    spamscope::ops::online::load_base_data(&manifest)?
                }
            };
            warn(&d);
            let w = spamscope::ops::report::export(
                &registry,
                &manifest,
                &model,
                &d,
                Default::default(),
                Some(out),
                &StderrProgress::new(),
            )?;
            println!(
                "report for version {} written to {} ({} files, {} accounts scored)",
                manifest.version,
                w.dir.display(),
                w.files.len(),
                w.scored_rows
            );
            Ok(())
        }
        Command::Versions {
            registry: reg,
            json,
        } => {
            let registry = registry(reg)?;
            let active = registry.active()?;
            let list = registry.list()?;
            if json {
                let versions: Vec<Value> = list
                    .iter()
                    .map(|e| match &e.manifest {
                        Ok(m) => json!({
                            "version": m.version,
                            "parent": m.parent,
                            "created_at": m.created_at,
                            "active": Some(m.version) == active,
                            "status": m.status_name(active),
                            "feedback_used": m.feedback_used,
                            "gate": m.gate.as_ref().map(|g| g.reason.clone()),
                            "data": m.data.describe(),
                            "train_rows": m.train_rows,
                            "threshold": m.threshold,
                            "model": m.model_kind(),
                            "metrics": metrics_json(&m.metrics),
                        }),
                        Err(err) => json!({
                            "version": e.version,
                            "active": Some(e.version) == active,
                            "error": err.to_string(),
                        }),
                    })
                    .collect();
                print_json(&json!({
                    "registry": registry.root().display().to_string(),
                    "active": active,
                    "versions": versions,
                }));
            } else {
                println!("registry {}", registry.root().display());
                if list.is_empty() {
                    println!("no versions yet");
                }
                for e in &list {
                    let mark = if Some(e.version) == active { "*" } else { " " };
                    match &e.manifest {
                        Ok(m) => println!(
                            "{mark} v{}  {}  parent {}  {} rows  AUC {:.4}  F1 {:.4}  {}",
                            m.version,
                            m.created_at,
                            m.parent.map_or("-".to_string(), |p| format!("v{p}")),
                            m.train_rows,
                            m.metrics.roc_auc,
                            m.metrics.f1,
                            m.status_name(active)
                        ),
                        Err(err) => println!("{mark} v{}  unreadable: {err}", e.version),
                    }
                }
            }
            Ok(())
        }
        Command::Feedback(cmd) => run_feedback(cmd),
        Command::Token(cmd) => run_token(cmd),
        Command::Label(cmd) => run_label(cmd),
        Command::Retrain {
            registry: reg,
            json,
        } => {
            let registry = registry(reg)?;
            let cfg = spamscope::ops::online::OnlineLearningConfig::load(&registry)?;
            let o = spamscope::ops::online::retrain(&registry, &cfg, &StderrProgress::new())?;
            let gate = o.candidate.gate.as_ref();
            if json {
                print_json(&json!({
                    "candidate_version": o.candidate.version,
                    "promoted": o.promoted,
                    "reason": o.reason,
                    "train_seconds": o.train_seconds,
                    "feedback_train": o.feedback_train,
                    "feedback_holdout": o.feedback_holdout,
                    "active_version": registry.active()?,
                    "metrics": metrics_json(&o.candidate.metrics),
                    "base_auc_active": gate.map(|g| g.base_auc_active),
                    "feedback_candidate": gate.and_then(|g| g.feedback_candidate),
                    "feedback_active": gate.and_then(|g| g.feedback_active),
                    "by_moderator": o.by_moderator,
                }));
            } else {
                println!(
                    "candidate v{} trained in {:.1} s on {} feedback records ({} held out)",
                    o.candidate.version, o.train_seconds, o.feedback_train, o.feedback_holdout
                );
                println!("{}", o.reason);
                for m in &o.by_moderator {
                    println!(
                        "  held out from {}: {} records, accuracy {:.3} (active {:.3}), Brier {:.4} (active {:.4})",
                        m.moderator.as_deref().unwrap_or("no moderator"),
                        m.candidate.records,
                        m.candidate.accuracy,
                        m.active.accuracy,
                        m.candidate.brier,
                        m.active.brier
                    );
                }
                print_metrics(&o.candidate.metrics);
            }
            Ok(())
        }
        Command::Serve {
            registry: reg,
            addr,
            workers,
            log,
            webhook,
        } => {
            let _ = tracing_subscriber::fmt()
                .with_max_level(log)
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .try_init();
            let workers = workers
                .filter(|&w| (1..=1024).contains(&w))
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            spamscope::service::run(
                spamscope::service::ServeConfig {
                    registry_root: reg.unwrap_or_else(Registry::default_root),
                    addr,
                    workers,
                    limits: Default::default(),
                    retention: Default::default(),
                    webhook,
                },
                &StderrProgress::new(),
            )
            .map_err(|e| match e {
                spamscope::service::ServeError::Ops(e) => e,
                e => spamscope::Error::Invalid(e.to_string()),
            })
        }
        Command::Rollback {
            to,
            registry: reg,
            json,
        } => {
            let registry = registry(reg)?;
            let previous = registry.active()?;
            let m = registry.rollback(to)?;
            if json {
                print_json(&json!({ "active": m.version, "previous": previous }));
            } else {
                println!(
                    "version {} is active (was {})",
                    m.version,
                    previous.map_or("none".into(), |p| format!("v{p}"))
                );
            }
            Ok(())
        }
        Command::Bench {
            data,
            rows,
            trees,
            no_peers,
            python,
            json,
        } => spamscope::ops::bench::run(spamscope::ops::bench::BenchArgs {
            data,
            rows,
            trees,
            peers: !no_peers,
            python,
            json,
        }),
    }
}

fn run_feedback(cmd: FeedbackCommand) -> Result<()> {
    use spamscope::store::feedback::{FeedbackStore, Origin};
    match cmd {
        FeedbackCommand::Import {
            data,
            registry: reg,
            batch,
            json,
        } => {
            let registry = registry(reg)?;
            let batch = match batch {
                Some(b) => b,
                None => spamscope::ops::online::OnlineLearningConfig::load(&registry)?.batch_size,
            };
            if batch == 0 {
                return Err(Error::Invalid("batch must be at least 1".into()));
            }
            let d = Dataset::load_csv(&data)?;
            warn(&d);
            let labels = d.require_labels()?;
            // Score with the active version when there is one, so agreement is known.
            let scored = match registry.active()? {
                Some(_) => {
                    let (m, model) = registry.load_active()?;
                    Some(spamscope::ops::score::score_batch(
                        &d,
                        &model,
                        m.version,
                        m.threshold,
                        0,
                        Method::PathAttribution,
                        &NoProgress,
                    )?)
                }
                None => None,
            };
            let mut store = FeedbackStore::open_in(registry.root())?;
            let mut stored = 0usize;
            let rows: Vec<usize> = (0..d.n_rows()).collect();
            let notes = format!("imported from {}", data.display());
            for chunk in rows.chunks(batch) {
                let records = spamscope::ops::feedback::records(
                    &d,
                    chunk,
                    |i| labels[i],
                    scored.as_ref(),
                    &notes,
                    Origin::Import,
                );
                store.add_batch(&records)?;
                stored += records.len();
            }
            if json {
                print_json(&json!({ "imported": stored, "total": store.count()? }));
            } else {
                println!(
                    "imported {stored} feedback records ({} in total)",
                    store.count()?
                );
            }
            Ok(())
        }
        FeedbackCommand::Stats {
            registry: reg,
            json,
        } => {
            let registry = registry(reg)?;
            let st = FeedbackStore::open_in(registry.root())?.stats()?;
            if json {
                let by_version: serde_json::Map<String, Value> = st
                    .by_version
                    .iter()
                    .map(|v| {
                        (
                            v.version.map_or("none".to_string(), |v| v.to_string()),
                            json!({
                                "total": v.total,
                                "agreed": v.agreed,
                                "agreement": (v.version.is_some() && v.total > 0)
                                    .then(|| v.agreed as f64 / v.total as f64),
                            }),
                        )
                    })
                    .collect();
                print_json(&json!({
                    "total": st.total,
                    "agreement": st.agreement,
                    "by_version": by_version,
                }));
            } else {
                println!(
                    "{} feedback records, agreement {}",
                    st.total,
                    st.agreement
                        .map_or("-".to_string(), |a| format!("{:.1}%", a * 100.0))
                );
                for v in &st.by_version {
                    println!(
                        "  version {}: {} records, {} agreed",
                        v.version.map_or("-".to_string(), |v| v.to_string()),
                        v.total,
                        v.agreed
                    );
                }
            }
            Ok(())
        }
    }
}

fn run_label(cmd: LabelCommand) -> Result<()> {
    use spamscope::ops::review;
    let who = |by: Option<String>| {
        by.or_else(|| std::env::var("USER").ok())
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| "cli".to_string())
    };
    match cmd {
        LabelCommand::Confirm {
            user_id,
            label,
            notes,
            by,
            registry: reg,
            json,
        } => {
            let Some(l) = review::parse_label(&label) else {
                return Err(Error::Invalid(format!(
                    "--label must be spam or legit (got {})",
                    spamscope::util::text::quote(&label)
                )));
            };
            let c = review::confirm_label(&registry(reg)?, &user_id, l, &who(by), &notes)?;
            let name = |l: u8| if l == 1 { "spam" } else { "legit" };
            if json {
                print_json(&json!({
                    "user_id": c.confirmed.user_id.to_string(),
                    "label": c.confirmed.label,
                    "confirmed_by": c.confirmed.confirmed_by,
                    "confirmed_at": c.confirmed.confirmed_at,
                    "replaced": c.replaced.as_ref().map(|r| json!({
                        "label": r.label,
                        "confirmed_by": r.confirmed_by,
                        "confirmed_at": r.confirmed_at,
                    })),
                }));
            } else {
                println!(
                    "{} confirmed as {} by {}{}",
                    c.confirmed.user_id,
                    name(c.confirmed.label),
                    c.confirmed.confirmed_by,
                    c.replaced.as_ref().map_or(String::new(), |r| format!(
                        " (was {} by {} at {})",
                        name(r.label),
                        r.confirmed_by,
                        r.confirmed_at
                    ))
                );
            }
            Ok(())
        }
        LabelCommand::Import {
            file,
            by,
            registry: reg,
            json,
        } => {
            let n = review::import_confirmed(&registry(reg)?, &file, &who(by))?;
            if json {
                print_json(&json!({ "confirmed": n }));
            } else {
                println!("confirmed {n} labels from {}", file.display());
            }
            Ok(())
        }
    }
}

fn run_token(cmd: TokenCommand) -> Result<()> {
    use spamscope::store::tokens::{Role, TokenStore};
    match cmd {
        TokenCommand::Add {
            name,
            role,
            registry: reg,
            json,
        } => {
            let role = Role::parse(&role)?;
            let store = TokenStore::open_in(registry(reg)?.root());
            let secret = store.add(&name, role)?;
            let created_at = store
                .list()?
                .into_iter()
                .find(|t| t.name == name)
                .map(|t| t.created_at);
            if json {
                print_json(&json!({
                    "name": name,
                    "role": role.name(),
                    "created_at": created_at,
                    "token": secret,
                }));
            } else {
                println!("{secret}");
            }
            eprintln!(
                "token {name} ({role}) added; this is the only time its secret is shown: store it now"
            );
            Ok(())
        }
        TokenCommand::List {
            registry: reg,
            json,
        } => {
            let tokens = TokenStore::open_in(registry(reg)?.root()).list()?;
            if json {
                let list: Vec<Value> = tokens
                    .iter()
                    .map(|t| json!({"name": t.name, "role": t.role.name(), "created_at": t.created_at}))
                    .collect();
                print_json(&json!({ "tokens": list }));
            } else if tokens.is_empty() {
                println!("no tokens");
            } else {
                for t in &tokens {
                    println!("{}  {}  {}", t.name, t.role, t.created_at);
                }
            }
            Ok(())
        }
        TokenCommand::Revoke {
            name,
            registry: reg,
        } => {
            TokenStore::open_in(registry(reg)?.root()).revoke(&name)?;
            println!("revoked token {name}");
            Ok(())
        }
    }
}

fn print_metrics(m: &Metrics) {
    println!(
        "accuracy {:.4}  precision {:.4}  recall {:.4}  F1 {:.4}  ROC-AUC {:.4}  AP {:.4}",
        m.accuracy, m.precision, m.recall, m.f1, m.roc_auc, m.average_precision
    );
    println!(
        "confusion: tn {}  fp {}  fn {}  tp {}",
        m.tn, m.fp, m.fn_, m.tp
    );
}
