//! The steps on the registry's versions that every front-end takes the same way: roll
//! back (make another version active), choose and set a version's decision threshold.

use super::error::{Error, Result};
use crate::eval::threshold::{Criterion, OperatingPoint};
use crate::model::Model;
use crate::store::{Holdout, Manifest, Registry};

/// One version as every front-end lists it (`spamscope versions --json`, the service's
/// `GET /model/versions`, the app's Versions tab).
#[derive(Debug, Clone)]
pub struct Listed {
    pub version: u32,
    /// Its manifest, or why it cannot be read.
    pub manifest: std::result::Result<Manifest, String>,
    pub active: bool,
    /// active / previous / rejected / rolled back, or unreadable.
    pub status: &'static str,
    /// Why it has its status: the promotion gate's reason, else the operator's (a
    /// rollback).
    pub reason: Option<String>,
}

/// Why a version has its status, as every front-end shows it: the latest word on it
/// (a rollback's or an operator's reason), else the promotion gate's.
pub fn reason(m: &Manifest) -> Option<String> {
    m.status_reason
        .clone()
        .or_else(|| m.gate.as_ref().map(|g| g.reason.clone()))
}

/// Every version of the registry, oldest first, and the active one.
pub fn list(registry: &Registry) -> Result<(Option<u32>, Vec<Listed>)> {
    let active = registry.active()?;
    let rows = registry
        .list()?
        .into_iter()
        .map(|e| match e.manifest {
            Ok(m) => Listed {
                version: m.version,
                active: Some(m.version) == active,
                status: m.status_name(active),
                reason: reason(&m),
                manifest: Ok(m),
            },
            Err(err) => Listed {
                version: e.version,
                active: Some(e.version) == active,
                status: "unreadable",
                reason: None,
                manifest: Err(err.to_string()),
            },
        })
        .collect();
    Ok((active, rows))
}

/// A rollback: the version now active and the one that was.
#[derive(Debug, Clone)]
pub struct Rollback {
    pub manifest: Manifest,
    pub previous: Option<u32>,
}

/// Makes version `to` active (after checking it loads); the version that was active is
/// marked as rolled back. Under the registry's lock, so concurrent writers in any
/// process see one order.
pub fn rollback(registry: &Registry, to: u32) -> Result<Rollback> {
    let (manifest, previous) = registry.rollback_from(to)?;
    Ok(Rollback { manifest, previous })
}

/// Checks a decision threshold: a probability, 0 to 1.
pub fn check_threshold(t: f64) -> Result<f64> {
    if (0.0..=1.0).contains(&t) {
        Ok(t)
    } else {
        Err(Error::Invalid(format!(
            "threshold must be between 0 and 1, got {t}"
        )))
    }
}

/// Saves `threshold` as version `v`'s decision threshold. Only the threshold changes:
/// the manifest is re-read under the registry's lock, so a rollback written meanwhile
/// by another process keeps its status. Returns the manifest as saved.
pub fn set_threshold(registry: &Registry, v: u32, threshold: f64) -> Result<Manifest> {
    let t = check_threshold(threshold)?;
    Ok(registry.set_threshold(v, t)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_out_of_range_is_refused_naming_it() {
        for t in [-0.1, 1.5, f64::NAN] {
            let e = check_threshold(t).unwrap_err();
            assert!(
                matches!(&e, Error::Invalid(m) if m.starts_with("threshold must be between 0 and 1")),
                "{e}"
            );
        }
        assert_eq!(check_threshold(0.0).unwrap(), 0.0);
        assert_eq!(check_threshold(1.0).unwrap(), 1.0);
    }
}

/// A threshold chosen for a version on its holdout.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChosenThreshold {
    pub version: u32,
    /// The chosen point: threshold (on the raw score), precision, recall, review load.
    pub chosen: OperatingPoint,
    /// The calibrated probability at the chosen threshold (None: the version has no
    /// calibration).
    pub probability: Option<f64>,
    /// The version's saved threshold and what it gives, for comparison.
    pub current: OperatingPoint,
}

/// Chooses a threshold for `model` on its `holdout` by `criterion` at `daily_volume`
/// accounts a day; `current` is the version's saved threshold.
pub fn choose_threshold(
    version: u32,
    model: &Model,
    holdout: &Holdout,
    current: f64,
    criterion: Criterion,
    daily_volume: f64,
) -> Result<ChosenThreshold> {
    use crate::eval::metrics::{Ranked, check};
    check(&holdout.labels, &holdout.scores)?;
    let ranked = Ranked::new(&holdout.labels, &holdout.scores);
    let chosen = crate::eval::threshold::choose_on(&ranked, criterion, daily_volume)?;
    Ok(ChosenThreshold {
        version,
        probability: model
            .calibration
            .as_ref()
            .map(|c| c.apply(chosen.threshold)),
        current: OperatingPoint::at(&ranked, current, daily_volume),
        chosen,
    })
}

/// [`choose_threshold`] for version `v` of the registry (the active one when None),
/// saved as its threshold when `save`.
pub fn choose_version_threshold(
    registry: &Registry,
    v: Option<u32>,
    criterion: Criterion,
    daily_volume: f64,
    save: bool,
) -> Result<ChosenThreshold> {
    let (manifest, model) = registry.load_version(v)?;
    let holdout = registry.load_holdout(manifest.version)?;
    let chosen = choose_threshold(
        manifest.version,
        &model,
        &holdout,
        manifest.threshold,
        criterion,
        daily_volume,
    )?;
    if save {
        set_threshold(registry, manifest.version, chosen.chosen.threshold)?;
    }
    Ok(chosen)
}
