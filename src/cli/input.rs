//! What the commands read: the registry, data files, a version and its threshold, the
//! worker threads.

use spamscope::data::Dataset;
use spamscope::data::synth::{SynthParams, default_dataset};
use spamscope::ops::error::{Error, Result};
use spamscope::store::Registry;
use spamscope::store::location::Location;
use std::path::{Path, PathBuf};

/// The store given with `--store`/`--cache` (or SPAMSCOPE_STORE), for every command.
static STORE: std::sync::OnceLock<Option<Location>> = std::sync::OnceLock::new();

/// `--cache` as given.
static CACHE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// The MLflow tracking server given with `--mlflow` (or MLFLOW_TRACKING_URI).
static MLFLOW: std::sync::OnceLock<Option<spamscope::ops::mlflow::Tracking>> =
    std::sync::OnceLock::new();

/// Reads `--mlflow` (else MLFLOW_TRACKING_URI) once, before a command runs: a bad
/// setting fails the command before it trains.
pub fn choose_mlflow(url: Option<String>) -> Result<()> {
    let t = spamscope::ops::mlflow::Tracking::from_setting(url.as_deref())
        .map_err(|e| Error::Invalid(format!("--mlflow: {e}")))?;
    let _ = MLFLOW.set(t);
    Ok(())
}

/// Where runs are logged, when MLflow is configured.
pub fn mlflow() -> Option<spamscope::ops::mlflow::Tracking> {
    MLFLOW.get().cloned().flatten()
}

/// After a command changed `registry` (trained, retrained, compared, rolled back):
/// with MLflow configured, sends what MLflow lacks and says what happened (or that
/// nothing is lost), on stderr. Never fails the command.
pub fn log_to_mlflow(registry: &Registry) {
    if let Some(t) = mlflow() {
        eprintln!(
            "{}",
            spamscope::ops::mlflow::sync_after_change(registry, &t)
        );
    }
}

/// `--cache` as given (`store migrate` applies it to whichever side is a database).
pub fn cache_dir() -> Option<PathBuf> {
    CACHE.get().cloned().flatten()
}

/// Reads `--store` (else SPAMSCOPE_STORE) and `--cache` once, before a command runs.
/// `two_stores`: the command names its stores itself (`store migrate`), so `--store`
/// does not go with it and `--cache` goes alone.
pub fn choose_store(store: Option<String>, cache: Option<PathBuf>, two_stores: bool) -> Result<()> {
    if two_stores {
        if store.is_some() {
            return Err(Error::Invalid(
                "store migrate names its two stores with --from and --to; --store does not go with it".into(),
            ));
        }
        let _ = CACHE.set(cache);
        return Ok(());
    }
    let _ = CACHE.set(cache.clone());
    let store = store.or_else(|| {
        std::env::var(spamscope::store::location::STORE_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty())
    });
    let location = match store {
        Some(s) => {
            Some(Location::parse(&s, cache).map_err(|e| Error::Invalid(format!("--store: {e}")))?)
        }
        None if cache.is_some() => {
            return Err(Error::Invalid(
                "--cache goes with a postgres:// store (--store or SPAMSCOPE_STORE)".into(),
            ));
        }
        None => None,
    };
    let _ = STORE.set(location);
    Ok(())
}

/// Where a command's registry is: `--registry DIR` when given, else `--store` (or
/// SPAMSCOPE_STORE), else the default folder.
pub fn location(dir: Option<PathBuf>) -> Result<Location> {
    match (dir, STORE.get().cloned().flatten()) {
        (Some(d), Some(Location::Postgres { .. })) => Err(Error::Invalid(format!(
            "--registry {} and a postgres:// store are two registries: give one",
            d.display()
        ))),
        (Some(d), _) => Ok(Location::Folder(d)),
        (None, Some(l)) => Ok(l),
        (None, None) => Ok(Location::Folder(Registry::default_root())),
    }
}

pub fn registry(dir: Option<PathBuf>) -> Result<Registry> {
    Ok(Registry::open_at(&location(dir)?)?)
}

pub fn load_data(spec: &str) -> Result<Dataset> {
    if spec == "synthetic" {
        eprintln!("generating the synthetic default dataset...");
        Ok(default_dataset(SynthParams::default()))
    } else {
        eprintln!("loading {spec}...");
        Ok(Dataset::load_csv(Path::new(spec))?)
    }
}

pub fn warn(d: &Dataset) {
    for w in &d.warnings {
        eprintln!("warning: {}: {w}", d.source_name());
    }
}

/// The one threshold check ([`spamscope::ops::versions::check_threshold`]).
pub use spamscope::ops::versions::check_threshold;

/// The version to use (given or active), its threshold (or the one given) and the data.
pub fn version_and_data(
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

/// Runs `f` on a rayon pool with `threads` workers (or the global pool).
pub fn with_threads<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> Result<T> {
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
