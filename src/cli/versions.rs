//! `spamscope versions`, `spamscope rollback` and `spamscope threshold`: the registered
//! versions, which one is active, and the threshold each decides by.

use super::input::registry;
use super::output::print_json;
use super::{RollbackArgs, ThresholdArgs, VersionsArgs};
use serde_json::json;
use spamscope::ops::error::Result;
use spamscope::service::api::VersionRow;

/// `spamscope versions`: lists the registered versions.
pub fn list(args: VersionsArgs) -> Result<()> {
    let VersionsArgs {
        registry: reg,
        json,
    } = args;
    let registry = registry(reg)?;
    let (active, list) = spamscope::ops::versions::list(&registry)?;
    if json {
        // The service's shape (`GET /model/versions`), row for row.
        let versions: Vec<VersionRow> = list.iter().map(VersionRow::from).collect();
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
        for l in &list {
            let mark = if l.active { "*" } else { " " };
            match &l.manifest {
                Ok(m) => println!(
                    "{mark} v{}  {}  parent {}  {} rows  AUC {:.4}  F1 {:.4}  {}{}",
                    m.version,
                    m.created_at,
                    m.parent.map_or("-".to_string(), |p| format!("v{p}")),
                    m.train_rows,
                    m.metrics.roc_auc,
                    m.metrics.f1,
                    l.status,
                    l.reason
                        .as_ref()
                        .map_or(String::new(), |r| format!(" ({r})"))
                ),
                Err(err) => println!("{mark} v{}  unreadable: {err}", l.version),
            }
        }
    }
    Ok(())
}

/// `spamscope rollback`: makes an earlier version active.
pub fn rollback(args: RollbackArgs) -> Result<()> {
    let RollbackArgs {
        to,
        registry: reg,
        json,
    } = args;
    let registry = registry(reg)?;
    let r = spamscope::ops::versions::rollback(&registry, to)?;
    let (m, previous) = (r.manifest, r.previous);
    if json {
        print_json(&json!({ "active": m.version, "previous": previous }));
    } else {
        println!(
            "version {} is active (was {})",
            m.version,
            previous.map_or("none".into(), |p| format!("v{p}"))
        );
    }
    super::input::log_to_mlflow(&registry);
    Ok(())
}

/// `spamscope threshold`: a threshold chosen by precision, capacity or costs.
pub fn threshold(args: ThresholdArgs) -> Result<()> {
    use spamscope::eval::threshold::{Criterion, OperatingPoint};
    let criterion = match (
        args.precision,
        args.capacity,
        args.cost_missed,
        args.cost_blocked,
    ) {
        (Some(p), _, _, _) => Criterion::Precision(p),
        (_, Some(per_day), _, _) => Criterion::Capacity { per_day },
        (_, _, Some(missed), Some(blocked)) => Criterion::Cost { missed, blocked },
        _ => unreachable!("clap requires one criterion"),
    };
    let registry = registry(args.registry)?;
    let c = spamscope::ops::versions::choose_version_threshold(
        &registry,
        args.version,
        criterion,
        args.daily_volume,
        args.save,
    )?;
    if args.json {
        print_json(&json!({
            "version": c.version,
            "chosen": c.chosen,
            "probability_at_threshold": c.probability,
            "current": c.current,
            "daily_volume": args.daily_volume,
            "saved": args.save,
        }));
    } else {
        let line = |name: &str, p: &OperatingPoint| {
            println!(
                "{name:<8} threshold {:.4}: precision {:.3}, recall {:.3}, {:.2}% flagged = {:.0} a day of {}",
                p.threshold,
                p.precision,
                p.recall,
                100.0 * p.flagged_share,
                p.flagged_per_day,
                args.daily_volume
            )
        };
        println!("version {} on its holdout:", c.version);
        line("chosen", &c.chosen);
        line("current", &c.current);
        match c.probability {
            Some(p) => println!(
                "the chosen threshold is a calibrated probability of {:.1}%",
                100.0 * p
            ),
            None => println!("this version has no calibration; thresholds are on its raw score"),
        }
        if args.save {
            println!("saved as version {}'s threshold", c.version);
        }
    }
    if args.save {
        super::input::log_to_mlflow(&registry);
    }
    Ok(())
}
