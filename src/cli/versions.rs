//! `spamscope versions` and `spamscope rollback`: the registered versions, and which one is active.

use super::input::registry;
use super::output::print_json;
use super::{RollbackArgs, VersionsArgs};
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
