//! `spamscope mlflow sync`: send the registry to MLflow.

use super::MlflowCommand;
use super::input::{mlflow, registry};
use super::output::print_json;
use spamscope::ops::error::{Error, Result};
use spamscope::ops::mlflow::sync;
use spamscope::util::progress::StderrProgress;

pub fn run(cmd: MlflowCommand) -> Result<()> {
    let MlflowCommand::Sync {
        registry: reg,
        json,
    } = cmd;
    let Some(t) = mlflow() else {
        return Err(Error::Invalid(
            "no MLflow server: give --mlflow http://host:port or set MLFLOW_TRACKING_URI".into(),
        ));
    };
    let registry = registry(reg)?;
    eprintln!(
        "sending {} to MLflow at {} (experiment {})...",
        registry.shown(),
        t.url(),
        t.experiment
    );
    let wait = std::time::Duration::from_secs(120);
    let synced = sync(&registry, &t, wait, &StderrProgress::new())
        .map_err(|e| Error::Io {
            path: format!("MLflow {}", t.url()),
            message: if e.is_unreachable() {
                format!("{e}; nothing is lost: run this again once it answers")
            } else {
                e.to_string()
            },
        })?
        .ok_or_else(|| {
            Error::Conflict(format!(
                "another process has been sending {} to MLflow for {} s; it sends everything this would",
                registry.shown(),
                wait.as_secs()
            ))
        })?;
    if json {
        print_json(&serde_json::to_value(&synced).expect("a sync's account always serialises"));
    } else {
        for line in synced.lines() {
            println!("{line}");
        }
    }
    Ok(())
}
