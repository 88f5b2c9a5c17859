//! What the commands read: the registry, data files, a version and its threshold, the
//! worker threads.

use spamscope::data::Dataset;
use spamscope::data::synth::{SynthParams, default_dataset};
use spamscope::ops::error::{Error, Result};
use spamscope::store::Registry;
use std::path::{Path, PathBuf};

pub fn registry(dir: Option<PathBuf>) -> Result<Registry> {
    Ok(Registry::open(dir.unwrap_or_else(Registry::default_root))?)
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
