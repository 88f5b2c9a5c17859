//! `spamscope report`: export a report folder.

use super::ReportArgs;
use super::input::{load_data, registry, warn};
use spamscope::ops::error::Result;
use spamscope::util::progress::StderrProgress;

/// `spamscope report`: writes a version's report folder.
pub fn run(args: ReportArgs) -> Result<()> {
    let ReportArgs {
        out,
        data,
        version,
        registry: reg,
    } = args;
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
