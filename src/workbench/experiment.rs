//! The team service's shadow or canary experiment: start, stop, promote.

use super::{JobKind, Notice, Workbench};

/// What to do with the team service's experiment.
#[derive(Debug, Clone, PartialEq)]
pub enum ExperimentCommand {
    Start {
        version: u32,
        canary: bool,
        share: f64,
    },
    Stop,
    Promote,
}

impl Workbench {
    /// Starts, stops or promotes the team service's experiment; the link shows the
    /// result within a round.
    pub fn experiment_command(&mut self, cmd: ExperimentCommand) {
        let Some(client) = self.client.clone() else {
            self.notices.push(Notice::Error(
                "experiments run on a team's service: connect to one (File > Connect to server…)"
                    .into(),
            ));
            return;
        };
        let wake = self.link.as_ref().map(|l| l.waker());
        self.spawn(JobKind::Experiment, move |ctx| {
            let done = match &cmd {
                ExperimentCommand::Start {
                    version,
                    canary,
                    share,
                } => client
                    .start_experiment(
                        *version,
                        if *canary { "canary" } else { "shadow" },
                        canary.then_some(*share),
                    )
                    .map(|s| s.message),
                ExperimentCommand::Stop => client.stop_experiment().map(|s| s.message),
                ExperimentCommand::Promote => client.promote_experiment().map(|p| p.message),
            };
            match done {
                Ok(m) => ctx.info(m),
                Err(e) => ctx.error(format!("experiment: {e}")),
            }
            if let Some(w) = wake {
                let _ = w.send(());
            }
        });
    }
}
