//! The team's model versions in a local registry (see the module above): the version the
//! service answers with is installed first and made active here; the others follow,
//! one per [`Mirror::sync`], and their manifests are refreshed when the service's list
//! shows a change (a new status, threshold or reason).

use super::{Client, RemoteError};
use crate::service::api;
use crate::store::Registry;
use crate::store::layout::{HOLDOUT_FILE, MANIFEST_FILE, MODEL_FILE};
use std::collections::HashMap;

pub struct Mirror {
    registry: Registry,
    /// The service's rows as last seen, to notice changes.
    seen: HashMap<u32, String>,
}

/// What one [`Mirror::sync`] found and did.
#[derive(Debug, Clone)]
pub struct Synced {
    pub versions: api::Versions,
    /// Versions installed here by this sync.
    pub installed: Vec<u32>,
    /// The local active version changed (from, to) to follow the service.
    pub switched: Option<(Option<u32>, u32)>,
}

fn local(e: crate::store::StoreError) -> RemoteError {
    RemoteError::Local(e.to_string())
}

impl Mirror {
    pub fn new(registry: Registry) -> Mirror {
        Mirror {
            registry,
            seen: HashMap::new(),
        }
    }

    fn install(&self, client: &Client, v: u32) -> Result<(), RemoteError> {
        let manifest = client.version_file(v, MANIFEST_FILE)?;
        let model = client.version_file(v, MODEL_FILE)?;
        let holdout = client.version_file(v, HOLDOUT_FILE)?;
        self.registry
            .install_version(v, &manifest, &model, &holdout)
            .map_err(local)?;
        Ok(())
    }

    /// Reads the service's versions; installs the one it serves (and at most one
    /// other missing version), refreshes changed manifests, and makes the served
    /// version active here.
    pub fn sync(&mut self, client: &Client) -> Result<Synced, RemoteError> {
        let versions = client.versions()?;
        let serving = versions.serving;
        let mut have: Vec<u32> = self.registry.version_numbers().map_err(local)?;
        let mut installed = Vec::new();
        if !have.contains(&serving) {
            self.install(client, serving)?;
            installed.push(serving);
            have.push(serving);
        }
        let mut other_installed = false;
        for row in versions.versions.iter().rev() {
            if row.status == "unreadable" {
                continue;
            }
            let text = serde_json::to_string(row).unwrap_or_default();
            if !have.contains(&row.version) {
                if other_installed {
                    continue;
                }
                // A version that cannot be copied (damaged on the server) is skipped;
                // the served one above is what must succeed.
                match self.install(client, row.version) {
                    Ok(()) => {
                        installed.push(row.version);
                        have.push(row.version);
                        other_installed = true;
                    }
                    Err(e) if e.is_transient() => return Err(e),
                    Err(e) => {
                        tracing::warn!("version {} not copied: {e}", row.version);
                        continue;
                    }
                }
            } else if self.seen.get(&row.version) != Some(&text)
                && !installed.contains(&row.version)
            {
                let manifest = client.version_file(row.version, MANIFEST_FILE)?;
                if let Err(e) = self.registry.refresh_manifest(row.version, &manifest) {
                    tracing::warn!("version {}: {e}", row.version);
                }
            }
            self.seen.insert(row.version, text);
        }
        let active = self.registry.active().map_err(local)?;
        let switched = if active != Some(serving) {
            self.registry.set_active(serving).map_err(local)?;
            Some((active, serving))
        } else {
            None
        };
        Ok(Synced {
            versions,
            installed,
            switched,
        })
    }
}
