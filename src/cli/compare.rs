//! `spamscope compare`: the comparison of model kinds, and promoting one of them.

use super::CompareArgs;
use super::input::{load_data, registry, warn};
use super::output::print_json;
use serde_json::json;
use spamscope::ops::compare;
use spamscope::ops::error::Result;
use spamscope::util::progress::StderrProgress;

/// `spamscope compare`: trains the comparison's models and prints (and keeps) the table.
pub fn run(args: CompareArgs) -> Result<()> {
    let CompareArgs {
        data,
        test_fraction,
        seed,
        only,
        promote,
        registry: reg,
        json,
    } = args;
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
    super::input::log_to_mlflow(&registry);
    Ok(())
}
