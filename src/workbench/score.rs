//! Scoring one account (the gauge), its explanation, and the drift of what was scored
//! recently.

use super::poll::Msg;
use super::{JobKind, Workbench};
use crate::eval::monitor::Drift;
use crate::model::explain::Explanation;
use crate::util::progress::Reporter;
use std::sync::Arc;
use std::time::Instant;

impl Workbench {
    /// Scores one account for the gauge and records the latency and inputs.
    pub fn score_one(&mut self, x: &[f64]) -> Option<f64> {
        let model = self.active.as_ref()?.model.clone();
        let start = Instant::now();
        let p = model.predict_one(x);
        self.monitor
            .record_scoring(start.elapsed().as_secs_f64() * 1e6, x);
        Some(p)
    }

    /// Computes drift (PSI per feature) of the accounts scored recently (the review
    /// queue's file and the accounts scored one by one) against the active version's
    /// training data, in the background; cheap to call every frame.
    pub fn request_drift(&mut self) {
        let Some(active) = &self.active else { return };
        let Some(profiles) = active.manifest.profiles.clone() else {
            return;
        };
        let queue = self.queue.clone();
        let singles = self.monitor.recent_len();
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            active.manifest.version.hash(&mut h);
            queue.as_ref().map(|q| Arc::as_ptr(q) as usize).hash(&mut h);
            singles.hash(&mut h);
            h.finish()
        };
        if self.drift_requested == Some(key) || (queue.is_none() && singles == 0) {
            return;
        }
        self.drift_requested = Some(key);
        let recent = self.monitor.recent_columns();
        let version = active.manifest.version;
        self.spawn(JobKind::Statistics, move |ctx| {
            ctx.reporter.stage("drift", 0, 1);
            let also = queue.as_ref().map(|q| q.data.columns.as_slice());
            let d = Drift::measure(version, &profiles, recent, also);
            ctx.send(Msg::Drift(key, Arc::new(d)));
        });
    }

    /// Asks for the TreeSHAP explanation of `x` (raw inputs) under the active model;
    /// the newest request wins. Cheap to call every frame.
    pub fn request_explanation(&mut self, x: &[f64]) {
        let Some(active) = &self.active else { return };
        let key = explain_key(x, active.manifest.version);
        if self.explain_requested == Some(key) {
            return;
        }
        self.explain_requested = Some(key);
        self.explainer
            .request(key, active.model.clone(), x.to_vec());
    }

    /// The explanation of `x` if it has arrived.
    pub fn explanation_for(&self, x: &[f64]) -> Option<&Explanation> {
        let active = self.active.as_ref()?;
        let key = explain_key(x, active.manifest.version);
        self.explanation
            .as_ref()
            .filter(|(k, _)| *k == key)
            .map(|(_, e)| e)
    }
}

/// A key identifying an explanation request: the inputs and the model version.
pub fn explain_key(x: &[f64], version: u32) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    version.hash(&mut h);
    for v in x {
        v.to_bits().hash(&mut h);
    }
    h.finish()
}
