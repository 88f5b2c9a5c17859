//! Progress reporting and cancellation for long jobs (generation, training, scoring).
//!
//! Jobs call [`Reporter::stage`] with a stage name and a done/total count; the CLI prints
//! it, the app forwards it over a channel to the UI. [`Reporter::cancelled`] is polled
//! between units of work.

/// A job stopped because its reporter asked it to: the one cancellation every layer's
/// error carries, and that the crate error turns into [`crate::Error::Cancelled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

pub trait Reporter: Sync {
    /// `done` of `total` units of `stage` are finished.
    fn stage(&self, stage: &str, done: usize, total: usize);
    /// Whether the job should stop as soon as possible.
    fn cancelled(&self) -> bool {
        false
    }
    /// `Err(Cancelled)` once the job should stop: `reporter.check()?` between units.
    fn check(&self) -> Result<(), Cancelled> {
        if self.cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Reports nothing, never cancels.
pub struct NoProgress;

impl Reporter for NoProgress {
    fn stage(&self, _: &str, _: usize, _: usize) {}
}

/// Prints stage changes (and every tenth of a long stage) to standard error.
pub struct StderrProgress {
    last: std::sync::Mutex<(String, usize)>,
}

impl StderrProgress {
    pub fn new() -> Self {
        StderrProgress {
            last: std::sync::Mutex::new((String::new(), usize::MAX)),
        }
    }
}

impl Default for StderrProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for StderrProgress {
    fn stage(&self, stage: &str, done: usize, total: usize) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let tenth = (done * 10).checked_div(total).unwrap_or(0);
        if last.0 != stage || (total > 1 && tenth != last.1) {
            if total > 1 {
                eprintln!("{stage}: {done}/{total}");
            } else {
                eprintln!("{stage}...");
            }
            *last = (stage.to_string(), tenth);
        }
    }
}

/// Stage names prefixed with what they belong to ("forest 300 trees: trees 12/300",
/// "bag 2/10: trees 40/100").
pub struct Prefixed<'a> {
    pub inner: &'a dyn Reporter,
    pub prefix: &'a str,
}

impl Reporter for Prefixed<'_> {
    fn stage(&self, stage: &str, done: usize, total: usize) {
        self.inner
            .stage(&format!("{}: {stage}", self.prefix), done, total);
    }
    fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }
}
