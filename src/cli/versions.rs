//! `spamscope versions` and `spamscope rollback`: the registered versions, and which one is active.

use super::input::registry;
use super::output::{metrics_json, print_json};
use super::{RollbackArgs, VersionsArgs};
use serde_json::{Value, json};
use spamscope::ops::error::Result;

/// `spamscope versions`: lists the registered versions.
pub fn list(args: VersionsArgs) -> Result<()> {
    let VersionsArgs {
        registry: reg,
        json,
    } = args;
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

/// `spamscope rollback`: makes an earlier version active.
pub fn rollback(args: RollbackArgs) -> Result<()> {
    let RollbackArgs {
        to,
        registry: reg,
        json,
    } = args;
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
