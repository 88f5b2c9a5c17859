//! When an automatic retrain is due: enough new feedback records and enough time since
//! the newest version, as the registry's settings say.

use crate::ops::error::Result;
use crate::ops::settings::OnlineLearningConfig;
use crate::store::Registry;
use crate::store::feedback::FeedbackStore;
use std::time::SystemTime;

/// Why an automatic retrain is due now (settings as saved in the registry), if it is.
pub fn retrain_due_reason(registry: &Registry) -> Option<String> {
    let store = FeedbackStore::of(registry).ok()?;
    retrain_due_reason_in(registry, &store)
}

/// [`retrain_due_reason`] with the registry's feedback store already open (a
/// long-running process keeps one).
pub fn retrain_due_reason_in(registry: &Registry, store: &FeedbackStore) -> Option<String> {
    let cfg = OnlineLearningConfig::load(registry).ok()?;
    match auto_retrain_due_in(registry, &cfg, store) {
        Ok(true) => Some(format!(
            "at least {} new feedback records and {} s since the last version",
            cfg.min_samples, cfg.retrain_interval
        )),
        _ => None,
    }
}

/// Whether an automatic retrain is due: enough new records and enough time since the
/// newest version was made.
pub fn auto_retrain_due(registry: &Registry, cfg: &OnlineLearningConfig) -> Result<bool> {
    if !cfg.auto_retrain || registry.active()?.is_none() {
        return Ok(false);
    }
    auto_retrain_due_in(registry, cfg, &FeedbackStore::of(registry)?)
}

/// [`auto_retrain_due`] with the registry's feedback store already open.
pub fn auto_retrain_due_in(
    registry: &Registry,
    cfg: &OnlineLearningConfig,
    store: &FeedbackStore,
) -> Result<bool> {
    if !cfg.auto_retrain || registry.active()?.is_none() {
        return Ok(false);
    }
    let new = store.count_unused()?;
    if (new as usize) < cfg.min_samples {
        return Ok(false);
    }
    let newest = registry
        .list()?
        .into_iter()
        .filter_map(|e| e.manifest.ok())
        .filter_map(|m| humantime::parse_rfc3339(&m.created_at).ok())
        .max();
    Ok(match newest {
        Some(t) => SystemTime::now()
            .duration_since(t)
            .is_ok_and(|d| d.as_secs() >= cfg.retrain_interval),
        None => true,
    })
}
