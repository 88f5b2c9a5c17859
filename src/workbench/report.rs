//! Writing a report folder for the active version.

use super::poll::Msg;
use super::{JobKind, Notice, Workbench};
use std::path::PathBuf;

impl Workbench {
    /// Writes a report folder for the active version (to `dir`, or to the registry's
    /// report folder when None): model card, charts, scored queue.
    pub fn export_report(&mut self, dir: Option<PathBuf>) {
        let (Some(registry), Some(active), Some(data)) = (
            self.registry.clone(),
            self.active.clone(),
            self.data.clone(),
        ) else {
            self.notices.push(Notice::Error(
                "a report needs an active model and loaded data".into(),
            ));
            return;
        };
        let eda = self.eda.clone();
        let saved = self.saved_comparison.clone();
        let feedback = self.feedback.clone();
        self.spawn(JobKind::Report, move |ctx| {
            let known = crate::ops::report::Known {
                holdout: active.holdout.as_deref(),
                eda: eda.as_deref(),
                comparison: saved.as_deref(),
                feedback,
            };
            match crate::ops::report::export(
                &registry,
                &active.manifest,
                &active.model,
                &data,
                known,
                dir,
                &ctx.reporter,
            ) {
                Ok(w) => {
                    ctx.info(format!("report written to {}", w.dir.display()));
                    ctx.send(Msg::Report(w.dir));
                }
                Err(e) => ctx.error(format!("report not written: {e}")),
            }
        });
    }
}
