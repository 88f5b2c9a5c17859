//! `spamscope retrain`: retrain from moderators' feedback now.

use super::RetrainArgs;
use super::input::registry;
use super::output::{metrics_json, print_json, print_metrics};
use serde_json::json;
use spamscope::ops::error::Result;
use spamscope::util::progress::StderrProgress;

/// `spamscope retrain`: retrains from feedback and prints the gate's verdict.
pub fn run(args: RetrainArgs) -> Result<()> {
    let RetrainArgs {
        registry: reg,
        json,
    } = args;
    let registry = registry(reg)?;
    let cfg = spamscope::ops::settings::OnlineLearningConfig::load(&registry)?;
    // A job of the store: with a shared store, one retrain at a time across the
    // replicas and commands, and followed from any replica.
    let by = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    let o =
        spamscope::ops::online::retrain_job(&registry, &cfg, &by, &StderrProgress::new(), |o| {
            serde_json::to_string(&spamscope::service::api::RetrainResult::from(o))
                .expect("a retrain result always serialises")
        })?;
    let gate = o.candidate.gate.as_ref();
    if json {
        print_json(&json!({
            "candidate_version": o.candidate.version,
            "promoted": o.promoted,
            "reason": o.reason,
            "train_seconds": o.train_seconds,
            "feedback_train": o.feedback_train,
            "feedback_holdout": o.feedback_holdout,
            "active_version": registry.active()?,
            "metrics": metrics_json(&o.candidate.metrics),
            "base_auc_active": gate.map(|g| g.base_auc_active),
            "feedback_candidate": gate.and_then(|g| g.feedback_candidate),
            "feedback_active": gate.and_then(|g| g.feedback_active),
            "by_moderator": o.by_moderator,
        }));
    } else {
        println!(
            "candidate v{} trained in {:.1} s on {} feedback records ({} held out)",
            o.candidate.version, o.train_seconds, o.feedback_train, o.feedback_holdout
        );
        println!("{}", o.reason);
        for m in &o.by_moderator {
            println!(
                "  held out from {}: {} records, accuracy {:.3} (active {:.3}), Brier {:.4} (active {:.4})",
                m.moderator.as_deref().unwrap_or("no moderator"),
                m.candidate.records,
                m.candidate.accuracy,
                m.active.accuracy,
                m.candidate.brier,
                m.active.brier
            );
        }
        print_metrics(&o.candidate.metrics);
    }
    super::input::log_to_mlflow(&registry);
    Ok(())
}
