//! The version history: listing the versions, which one is active, rolling back, a
//! version's threshold and its holdout predictions.

use super::jobs::JobCtx;
use super::poll::Msg;
use super::{ActiveModel, JobKind, VersionRow, Workbench};
use crate::store::Registry;
use std::sync::Arc;
use std::sync::mpsc::Sender;

impl Workbench {
    /// Makes version `v` active.
    pub fn rollback(&mut self, v: u32) {
        if let Some(client) = self.client.clone() {
            let wake = self.link.as_ref().map(|l| l.waker());
            self.spawn(JobKind::Rollback, move |ctx| {
                match client.rollback(v) {
                    Ok(r) => ctx.info(format!(
                        "the team's service now answers with version {}",
                        r.model_version
                    )),
                    Err(e) => ctx.error(format!("could not activate version {v}: {e}")),
                }
                if let Some(w) = wake {
                    let _ = w.send(());
                }
            });
            return;
        }
        let Some(registry) = self.registry.clone() else {
            return;
        };
        self.spawn(JobKind::Rollback, move |ctx| {
            match crate::ops::versions::rollback(&registry, v).and_then(|_| load_active(&registry))
            {
                Ok(a) => {
                    ctx.send(Msg::Model(a));
                    ctx.info(format!("version {v} is active"));
                    ctx.log_to_mlflow(&registry);
                }
                Err(e) => ctx.error(format!("could not activate version {v}: {e}")),
            }
            send_versions(ctx, &registry);
        });
    }

    /// Loads the holdout predictions of version `v` (for the comparison view).
    pub fn request_holdout(&mut self, v: u32) {
        if self.holdouts.contains_key(&v) || !self.holdouts_requested.insert(v) {
            return;
        }
        if let Some(a) = self.active.as_ref().filter(|a| a.manifest.version == v)
            && let Some(h) = &a.holdout
        {
            self.holdouts.insert(v, h.clone());
            return;
        }
        let Some(registry) = self.registry.clone() else {
            return;
        };
        self.spawn(JobKind::Registry, move |ctx| {
            match registry.load_holdout(v) {
                Ok(h) => ctx.send(Msg::Holdout(v, Arc::new(h))),
                Err(e) => ctx.error(format!("holdout of version {v}: {e}")),
            }
        });
    }

    /// Saves `threshold` as the active version's decision threshold.
    pub fn save_threshold(&mut self, threshold: f64) {
        if self.refused_on_team("a version's threshold is set on the team's service") {
            return;
        }
        let (Some(registry), Some(active)) = (self.registry.clone(), self.active.as_ref()) else {
            return;
        };
        // Only the number goes to the job: the manifest is re-read under the registry's
        // lock there, so a rollback another process wrote meanwhile is kept.
        let version = active.manifest.version;
        self.spawn(JobKind::SaveThreshold, move |ctx| {
            let result = crate::ops::versions::set_threshold(&registry, version, threshold);
            send_versions(ctx, &registry);
            match result {
                Ok(m) => {
                    ctx.info(format!(
                        "threshold {threshold:.2} saved for version {}",
                        m.version
                    ));
                    ctx.send(Msg::Manifest(m));
                }
                Err(e) => ctx.error(format!("the threshold was not saved: {e}")),
            }
        });
    }
}

pub(super) fn load_active(registry: &Registry) -> crate::Result<ActiveModel> {
    let (manifest, model) = registry.load_active()?;
    let holdout = registry.load_holdout(manifest.version).ok().map(Arc::new);
    Ok(ActiveModel {
        manifest,
        model: Arc::new(model),
        holdout,
    })
}

pub(super) fn send_versions(ctx: &JobCtx, registry: &Registry) {
    if let Err(e) = versions_msg(registry).map(|m| ctx.send(m)) {
        ctx.error(format!("cannot list versions: {e}"));
    }
}

/// Sends the registry's version list on `tx` (the team link, outside jobs).
pub(super) fn send_versions_to(tx: &Sender<Msg>, registry: &Registry) {
    if let Ok(m) = versions_msg(registry) {
        let _ = tx.send(m);
    }
}

fn versions_msg(registry: &Registry) -> Result<Msg, crate::store::StoreError> {
    Ok(Msg::Versions(
        registry
            .list()?
            .into_iter()
            .map(|e| VersionRow {
                version: e.version,
                manifest: e.manifest.map_err(Arc::new),
            })
            .collect(),
        registry.active()?,
    ))
}
