//! The loaded dataset: opening a CSV, the synthetic data, their statistics.

use super::poll::Msg;
use super::{JobKind, Workbench};
use crate::data::Dataset;
use crate::data::eda;
use crate::data::synth::default_dataset;
use crate::util::progress::Reporter;
use std::path::PathBuf;
use std::sync::Arc;

impl Workbench {
    /// Loads a CSV in the background; on failure the current data stays.
    pub fn open_dataset(&mut self, path: PathBuf) {
        self.spawn(JobKind::OpenDataset, move |ctx| {
            ctx.reporter.stage("reading", 0, 1);
            match Dataset::load_csv(&path) {
                Ok(d) => {
                    let warnings = d.warnings.len();
                    ctx.send(Msg::Dataset(Arc::new(d)));
                    ctx.info(format!(
                        "opened {}{}",
                        path.display(),
                        if warnings > 0 {
                            format!(" ({warnings} warning(s), see the data banner)")
                        } else {
                            String::new()
                        }
                    ));
                }
                Err(e) => ctx.error(format!(
                    "could not open the dataset, keeping the current data: {e}"
                )),
            }
        });
    }

    /// Switches to the synthetic default dataset (generated in the background).
    pub fn use_synthetic(&mut self) {
        let params = self.config.synth;
        self.spawn(JobKind::OpenDataset, move |ctx| {
            ctx.reporter.stage("generating", 0, 1);
            ctx.send(Msg::Dataset(Arc::new(default_dataset(params))));
        });
    }

    pub(super) fn compute_statistics(&mut self, data: Arc<Dataset>) {
        self.spawn(JobKind::Statistics, move |ctx| {
            match eda::compute(&data, &ctx.reporter) {
                Ok(e) => ctx.send(Msg::Statistics(data, Arc::new(e))),
                Err(e) => ctx.error(format!("statistics failed: {e}")),
            }
        });
    }
}
