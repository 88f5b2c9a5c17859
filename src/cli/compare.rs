//! `spamscope compare`: the comparison of model kinds, and promoting one of them;
//! `spamscope tune`: the search for a model's best parameters.

use super::input::{load_data, registry, warn};
use super::output::print_json;
use super::{CompareArgs, TuneArgs};
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
        folds,
        registry: reg,
        json,
    } = args;
    if let Some(k) = folds {
        if promote.is_some() {
            return Err(spamscope::Error::Invalid(
                "--promote goes with a single split (its model is the one promoted); run without --folds to promote".into(),
            ));
        }
        return cross_validate(&data, seed, only.as_deref(), k, json);
    }
    let registry = registry(reg)?;
    let d = load_data(&data)?;
    warn(&d);
    let candidates = chosen(seed, only.as_deref())?;
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

/// `spamscope compare --folds K`: the cross-validated table (nothing is registered).
fn cross_validate(data: &str, seed: u64, only: Option<&str>, k: usize, json: bool) -> Result<()> {
    let d = load_data(data)?;
    warn(&d);
    let candidates = chosen(seed, only)?;
    let cv = compare::cross_validate(&d, &candidates, k, seed, &StderrProgress::new())?;
    if json {
        print_json(&serde_json::to_value(&cv).expect("a cross-validation always serialises"));
    } else {
        println!(
            "{k}-fold stratified cross-validation (seed {seed}) on {}: {} accounts, metrics at threshold 0.5, mean ± standard deviation over the folds\n",
            cv.data_label,
            cv.fold_rows.iter().sum::<usize>()
        );
        print!("{}", cv.markdown());
    }
    Ok(())
}

/// The models `--only` names (comma-separated), or all of them.
fn chosen(seed: u64, only: Option<&str>) -> Result<Vec<spamscope::model::recipe::Candidate>> {
    compare::select_candidates(seed, &names(only))
}

/// The names in an `--only` list (none: all models).
pub fn names(only: Option<&str>) -> Vec<String> {
    only.map(|o| o.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

/// `spamscope tune`: the trials table (best first), and the best trial registered with
/// `--promote`.
pub fn tune(args: TuneArgs) -> Result<()> {
    use spamscope::ops::tune;
    let cfg = tune::TuneConfig {
        space: tune::Space::parse(&args.space)?,
        trials: args.trials,
        budget: args.time.map(Into::into),
        folds: args.folds,
        seed: args.seed,
    };
    // The registry is opened first: a bad one fails before minutes of search.
    let registry = if args.promote {
        Some(registry(args.registry)?)
    } else {
        None
    };
    let d = load_data(&args.data)?;
    warn(&d);
    let progress = StderrProgress::new();
    let t = tune::tune(&d, &cfg, &progress)?;
    let promoted = match &registry {
        Some(r) => Some(tune::promote_best(r, &d, &t, args.test_fraction, &progress)?.1),
        None => None,
    };
    if args.json {
        print_json(&json!({
            "tuning": t,
            "best_trial": t.best_trial().map(|b| b.number),
            "promoted_version": promoted.as_ref().map(|m| m.version),
        }));
    } else {
        println!(
            "{} trials of {} ({:?} space, {} folds, seed {}; stopped by {}) in {:.1} s\n",
            t.trials.len(),
            args.trials,
            t.space,
            t.folds,
            t.seed,
            t.stopped_by,
            t.seconds
        );
        print!("{}", t.markdown());
        if let Some(m) = &promoted {
            println!(
                "\nregistered the best trial ({}) as version {} (active)",
                m.model_kind(),
                m.version
            );
        }
    }
    if let Some(r) = &registry {
        super::input::log_to_mlflow(r);
    }
    Ok(())
}
