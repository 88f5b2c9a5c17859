//! The command line: `spamscope <command>`. With `--json` a command prints exactly one
//! JSON object on standard output; progress goes to standard error. Every error is one
//! line on standard error and a non-zero exit code.
//!
//! This file holds the arguments (clap) and the dispatch; each command group runs in its
//! own file, what they share is in `input.rs` (what commands read) and `output.rs`
//! (what they print).

mod bench;
mod compare;
mod data;
mod evaluate;
mod feedback;
mod input;
mod label;
mod mlflow;
mod output;
mod policy;
mod report;
mod retrain;
mod score;
mod serve;
mod store;
mod token;
mod train;
mod versions;

use clap::{Args, Parser, Subcommand, ValueEnum};
use spamscope::ops::error::Result;
use std::path::PathBuf;

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
    /// Where a command's registry is kept: a folder, or a PostgreSQL database
    /// (postgres://user:password@host:port/db) shared by many service replicas.
    /// Default: SPAMSCOPE_STORE, else --registry or the default folder.
    #[arg(long, global = true, value_name = "FOLDER|URL")]
    pub store: Option<String>,
    /// With a postgres:// store: the local folder for downloaded model files, logs
    /// and reports (default: a folder named after the server in the cache directory).
    #[arg(long, global = true, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// An MLflow tracking server (http://host:port) to log every training, retraining,
    /// comparison and the `production` alias to (experiment and registered model:
    /// MLFLOW_EXPERIMENT_NAME, else spamscope). Default: MLFLOW_TRACKING_URI. A server
    /// that does not answer loses nothing: the next sync sends what it lacks.
    #[arg(long, global = true, value_name = "URL")]
    pub mlflow: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ClassWeightArg {
    Balanced,
    None,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write the synthetic default dataset (or another size/seed) as CSV.
    GenData(GenDataArgs),
    /// Train a forest, evaluate it on a holdout, register it as the active version.
    Train(TrainArgs),
    /// Train the comparison's models on one stratified split and print their metrics
    /// (the table is kept in the registry for the Compare tab and reports).
    Compare(CompareArgs),
    /// Search the forest's (or gradient boosting's) parameters by cross-validated
    /// average precision; list every trial; register the best one with --promote.
    Tune(TuneArgs),
    /// Export a report folder: Markdown model card, PNG charts, scored queue (CSV).
    Report(ReportArgs),
    /// Evaluate a registered version on a labelled CSV.
    Eval(EvalArgs),
    /// Score a CSV of accounts and write probabilities, verdicts and top reasons.
    Score(ScoreArgs),
    /// Metrics of a predictions file (scikit-learn's definitions).
    Metrics(MetricsArgs),
    /// List the registered model versions.
    Versions(VersionsArgs),
    /// Retrain from moderators' feedback now; promote the candidate if it passes the gate.
    Retrain(RetrainArgs),
    /// Serve scoring and feedback over HTTP (a drop-in for the reference API).
    Serve(ServeArgs),
    /// Make an earlier version active again.
    Rollback(RollbackArgs),
    /// Choose a version's decision threshold from a target precision, a review capacity
    /// or the costs of errors, on its holdout; show what it gives (and save it).
    Threshold(ThresholdArgs),
    /// Moderator feedback: import labelled accounts, show statistics.
    #[command(subcommand)]
    Feedback(FeedbackCommand),
    /// API tokens of the scoring service: add (the secret is shown once), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Accounts' confirmed final labels: confirm one, or import a file of them.
    #[command(subcommand)]
    Label(LabelCommand),
    /// The store itself: copy a registry between a folder and a PostgreSQL database.
    #[command(subcommand)]
    Store(StoreCommand),
    /// MLflow tracking: send the registry's versions, comparisons and the production
    /// alias to the MLflow server of --mlflow (or MLFLOW_TRACKING_URI).
    #[command(subcommand)]
    Mlflow(MlflowCommand),
    /// Benchmark our forest against scikit-learn, XGBoost and YDF (and our TreeSHAP
    /// against shap's) on the same data and split.
    Bench(BenchArgs),
    /// Decision policies (rules in CEL over the features, the probability and the risk
    /// indicators): check a policy file, test a draft on labelled history, keep drafts,
    /// publish one, run one in shadow.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Check a policy file: every rule compiles, names known features and a declared
    /// outcome (errors give the rule, line and column).
    Validate {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Test a draft policy on a labelled CSV scored by a model version: accounts hit,
    /// precision and recall per rule and per outcome, accounts decided otherwise than by
    /// the live policy (--live), and the review load at --daily-volume accounts a day.
    Test {
        file: PathBuf,
        /// A labelled CSV of accounts (label,user_id,X1..X51).
        #[arg(long, required_unless_present = "history", conflicts_with = "history")]
        data: Option<PathBuf>,
        /// Or the registry's own history: `feedback` (the moderators' records, with
        /// confirmed labels first) or `log` (the newest --rows predictions of the log,
        /// labelled where a label has arrived).
        #[arg(long, value_parser = ["feedback", "log"])]
        history: Option<String>,
        /// Predictions of the log to read with `--history log`.
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
        /// The policy in force, to list the accounts the draft decides otherwise
        /// (default: the registry's live policy, if one is published).
        #[arg(long)]
        live: Option<PathBuf>,
        #[arg(long)]
        registry: Option<PathBuf>,
        /// The model version whose probabilities the rules read (default: the active one).
        #[arg(long)]
        version: Option<u32>,
        /// Accounts scored a day, to state the review load in accounts a day.
        #[arg(long)]
        daily_volume: Option<f64>,
        /// How many of the changed accounts to list (all with --json).
        #[arg(long, default_value_t = 20)]
        list: usize,
        #[arg(long)]
        json: bool,
    },
    /// Keep a policy file in the registry as a draft (it must validate); prints its
    /// number and its diff against the live policy.
    Draft {
        file: PathBuf,
        /// Who wrote it (default: $USER, else "cli").
        #[arg(long)]
        author: Option<String>,
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Publish a policy: a kept draft (--version N) or a file (kept first); it decides
    /// every request from now on, on every replica. Whoever can write the registry is
    /// its admin here; through the service this needs an admin token.
    Publish {
        /// A policy file to keep and publish.
        file: Option<PathBuf>,
        /// A kept policy to publish.
        #[arg(long, conflicts_with = "file")]
        version: Option<u32>,
        /// Who publishes (default: $USER, else "cli").
        #[arg(long)]
        by: Option<String>,
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Run a kept policy (--version N) or a file beside the live one on the service's
    /// traffic, deciding nothing (--stop ends it); `--stats` shows its agreement with the
    /// live policy and precision on labelled accounts.
    Shadow {
        file: Option<PathBuf>,
        #[arg(long, conflicts_with_all = ["file", "stop"])]
        version: Option<u32>,
        #[arg(long, conflicts_with = "file")]
        stop: bool,
        #[arg(long, conflicts_with_all = ["file", "stop", "version"])]
        stats: bool,
        #[arg(long)]
        by: Option<String>,
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The kept policies, newest first, with which is live and which in shadow.
    List {
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// One kept policy's rules and its diff against the live policy.
    Show {
        version: u32,
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct GenDataArgs {
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = spamscope::data::synth::DEFAULT_ROWS)]
    pub rows: usize,
    #[arg(long, default_value_t = spamscope::data::synth::DEFAULT_SEED)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training CSV (label,user_id,X1..X51), or `synthetic` for the built-in data.
    #[arg(long)]
    pub data: String,
    /// Evaluate on this file instead of a holdout split.
    #[arg(long)]
    pub test: Option<PathBuf>,
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    #[arg(long, default_value_t = 300)]
    pub trees: usize,
    /// Maximum depth; 0 for unlimited.
    #[arg(long, default_value_t = 20)]
    pub max_depth: usize,
    #[arg(long, default_value_t = 5)]
    pub min_samples_split: usize,
    #[arg(long, default_value_t = 1)]
    pub min_samples_leaf: usize,
    #[arg(long, value_enum, default_value_t = ClassWeightArg::Balanced)]
    pub class_weight: ClassWeightArg,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub registry: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Labelled CSV, or `synthetic` for the built-in data.
    #[arg(long)]
    pub data: String,
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Only these models (comma-separated names as in the table, e.g.
    /// "decision tree,logistic regression"); default: all.
    #[arg(long)]
    pub only: Option<String>,
    /// Register the model of this name as a new version and make it active.
    #[arg(long)]
    pub promote: Option<String>,
    /// Cross-validate over K stratified folds (the same for every model; `--folds`
    /// alone: 5) instead of one split: every metric as mean ± standard deviation.
    #[arg(long, value_name = "K", num_args = 0..=1, default_missing_value = "5")]
    pub folds: Option<usize>,
    #[arg(long)]
    pub registry: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TuneArgs {
    /// Labelled CSV, or `synthetic` for the built-in data.
    #[arg(long)]
    pub data: String,
    /// What to search: forest, boosting, or both (alternating trials).
    #[arg(long, default_value = "forest")]
    pub space: String,
    /// At most this many trials.
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// Start no trial after this long (e.g. 10m, 1h).
    #[arg(long)]
    pub time: Option<humantime::Duration>,
    /// Stratified folds each trial is cross-validated over.
    #[arg(long, default_value_t = 3)]
    pub folds: usize,
    /// Draws the trials and the folds: the same seed, the same search.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Train the best trial (holdout of --test-fraction) and make it the active version.
    #[arg(long)]
    pub promote: bool,
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    #[arg(long)]
    pub registry: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Folder to write (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    /// Accounts to describe and score: a CSV, or `synthetic`; default: the
    /// version's training data.
    #[arg(long)]
    pub data: Option<String>,
    /// Version to report on (default: the active one).
    #[arg(long)]
    pub version: Option<u32>,
    #[arg(long)]
    pub registry: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub registry: Option<PathBuf>,
    /// Version to use (default: the active one).
    #[arg(long)]
    pub version: Option<u32>,
    /// Decision threshold (default: the version's).
    #[arg(long)]
    pub threshold: Option<f64>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub registry: Option<PathBuf>,
    #[arg(long)]
    pub version: Option<u32>,
    /// Decision threshold (default: the version's).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Add the K largest feature contributions per account.
    #[arg(long, default_value_t = 0)]
    pub explain: usize,
    /// Use exact TreeSHAP instead of path attribution (slow on big files).
    #[arg(long)]
    pub exact: bool,
}

#[derive(Args, Debug)]
pub struct MetricsArgs {
    #[arg(long)]
    pub predictions: PathBuf,
    #[arg(long, default_value = "y_test")]
    pub label_col: String,
    #[arg(long, default_value = "y_proba")]
    pub score_col: String,
    /// 0/1 decisions; without it decisions are score > threshold.
    #[arg(long)]
    pub pred_col: Option<String>,
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
    /// Also print a threshold sweep with this many steps.
    #[arg(long)]
    pub sweep: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct VersionsArgs {
    #[arg(long)]
    pub registry: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RetrainArgs {
    #[arg(long)]
    pub registry: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[arg(long)]
    pub registry: Option<PathBuf>,
    /// Address to listen on; loopback unless API tokens exist.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Log level on stderr: error, warn, info (a line per failed request and
    /// every change of version) or debug (a line per request).
    #[arg(long, default_value = "info")]
    pub log: tracing::Level,
    /// POST alerts (error rate, an experiment's agreement dropping) as JSON to this
    /// http(s) URL; default: `webhook_url` in the registry's online.ron, if set.
    #[arg(long)]
    pub webhook: Option<String>,
    /// With a postgres:// store that does not answer yet (starting with it, say): try
    /// again every second for at most this many seconds (1-3600) before giving up.
    /// Default: give up at once, in one line.
    #[arg(long, value_name = "SECONDS")]
    pub wait_for_store: Option<u64>,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// The version to activate.
    #[arg(long)]
    pub to: u32,
    #[arg(long)]
    pub registry: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("by").required(true).args(["precision", "capacity", "cost_missed"])))]
pub struct ThresholdArgs {
    /// The lowest threshold whose precision on the holdout is at least this (0-1).
    #[arg(long)]
    pub precision: Option<f64>,
    /// At most this many accounts flagged for review per day (at --daily-volume).
    #[arg(long)]
    pub capacity: Option<f64>,
    /// The cost of a missed spammer (with --cost-blocked): the cheapest threshold.
    #[arg(long, requires = "cost_blocked")]
    pub cost_missed: Option<f64>,
    /// The cost of a legitimate account wrongly flagged.
    #[arg(long, requires = "cost_missed")]
    pub cost_blocked: Option<f64>,
    /// Accounts scored per day, for the daily review load.
    #[arg(long, default_value_t = 20_000.0)]
    pub daily_volume: f64,
    /// The version (default: the active one).
    #[arg(long)]
    pub version: Option<u32>,
    /// Save the chosen threshold as the version's.
    #[arg(long)]
    pub save: bool,
    #[arg(long)]
    pub registry: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Data to use (default: the synthetic default dataset).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use only the first N rows of the data.
    #[arg(long)]
    pub rows: Option<usize>,
    #[arg(long, default_value_t = 300)]
    pub trees: usize,
    /// Skip the Python peers (ours only).
    #[arg(long, alias = "no-sklearn")]
    pub no_peers: bool,
    /// Python interpreter for the peers (default: a venv the bench creates).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Reproduce the reference's whole model table instead: every row of `compare`
    /// fitted by spamscope and by scikit-learn (or its own library) on one split, side
    /// by side.
    #[arg(long)]
    pub table: bool,
    /// With --table: only these rows (comma-separated names as in `compare`).
    #[arg(long, requires = "table")]
    pub only: Option<String>,
    #[arg(long)]
    pub json: bool,
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

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Copy a registry whole (versions, active version, documents, tokens, feedback,
    /// prediction log) into another store, then verify counts and checksums. The
    /// target must be empty (or a copy cut short, which this completes); stop every
    /// service and command writing to the source first.
    Migrate {
        /// The registry to copy: a folder or a postgres:// URL.
        #[arg(long, value_name = "FOLDER|URL")]
        from: String,
        /// Where to copy it: a folder or a postgres:// URL (created if needed).
        #[arg(long, value_name = "FOLDER|URL")]
        to: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum MlflowCommand {
    /// Log to MLflow every version and comparison it lacks (made while it was down,
    /// or before it was configured), move the production alias to the active version
    /// and bring logged runs' feedback metrics up to date. A running `spamscope serve
    /// --mlflow` does this by itself.
    Sync {
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        json: bool,
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
        Some(cmd) => {
            match input::choose_store(cli.store, cli.cache, matches!(cmd, Command::Store(_)))
                .and_then(|()| input::choose_mlflow(cli.mlflow))
                .and_then(|()| run(cmd))
            {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {}", spamscope::util::text::one_line(&e.to_string()));
                    1
                }
            }
        }
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
                spamscope::util::text::one_line(&e.to_string())
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

/// Runs one command.
pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::GenData(a) => data::gen_data(a),
        Command::Train(a) => train::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Report(a) => report::run(a),
        Command::Eval(a) => evaluate::eval(a),
        Command::Score(a) => score::run(a),
        Command::Metrics(a) => evaluate::metrics(a),
        Command::Versions(a) => versions::list(a),
        Command::Retrain(a) => retrain::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Rollback(a) => versions::rollback(a),
        Command::Threshold(a) => versions::threshold(a),
        Command::Tune(a) => compare::tune(a),
        Command::Feedback(cmd) => feedback::run(cmd),
        Command::Token(cmd) => token::run(cmd),
        Command::Label(cmd) => label::run(cmd),
        Command::Store(cmd) => store::run(cmd),
        Command::Mlflow(cmd) => mlflow::run(cmd),
        Command::Bench(a) => bench::run(a),
        Command::Policy(cmd) => policy::run(cmd),
    }
}
