//! `spamscope score`: score a CSV of accounts.

use super::ScoreArgs;
use super::input::version_and_data;
use spamscope::model::explain::Method;
use spamscope::ops::error::Result;
use spamscope::util::progress::StderrProgress;

/// `spamscope score`: writes probabilities, verdicts and reasons for a CSV of accounts.
pub fn run(args: ScoreArgs) -> Result<()> {
    let ScoreArgs {
        data,
        out,
        registry: reg,
        version,
        threshold,
        explain,
        exact,
    } = args;
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
