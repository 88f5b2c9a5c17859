//! Decision policies in the app: the kept policies (this computer's registry, or the
//! team's service), a draft's backtest on the loaded data, saving, publishing and
//! running a shadow. GUI-free: the panel sends these commands and draws the state.

use super::poll::Msg;
use super::{JobKind, Notice, PolicyTested, Workbench};
use crate::eval::policy::{CompiledPolicy, Policy};
use crate::ops::policy::PolicyBook;
use crate::util::progress::Reporter;
use std::sync::Arc;

/// What a draft is tested on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BacktestOn {
    /// The data loaded in the app (its labels).
    #[default]
    LoadedData,
    /// The registry's feedback records, with confirmed labels first.
    Feedback,
    /// The registry's newest 100,000 logged predictions, labelled where labels arrived.
    Log,
}

impl BacktestOn {
    pub fn name(self) -> &'static str {
        match self {
            BacktestOn::LoadedData => "the loaded data",
            BacktestOn::Feedback => "the feedback",
            BacktestOn::Log => "the prediction log",
        }
    }
}

/// What to do with a kept policy.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyCommand {
    /// Keep a draft (by the moderator name here, or the team token's name).
    Save {
        policy: Policy,
        note: String,
    },
    Publish(u32),
    /// Run a kept policy in shadow (None: stop the shadow).
    Shadow(Option<u32>),
}

impl Workbench {
    /// Reads the kept policies (and a shadow's numbers) again.
    pub fn refresh_policies(&mut self) {
        let client = self.client.clone();
        let registry = self.registry.clone();
        self.spawn(JobKind::Policies, move |ctx| {
            ctx.reporter.stage("reading the policies", 0, 1);
            let book = match (client, registry) {
                (Some(c), _) => c
                    .policies()
                    .and_then(|l| {
                        let stats = if l.shadow.is_some() {
                            c.shadow_status()?.stats
                        } else {
                            None
                        };
                        Ok(PolicyBook {
                            list: l.policies,
                            live: l.live,
                            shadow: l.shadow,
                            shadow_stats: stats,
                        })
                    })
                    .map_err(|e| e.to_string()),
                (None, Some(reg)) => crate::ops::policy::book(&reg).map_err(|e| e.to_string()),
                (None, None) => Err("the registry is not open yet".into()),
            };
            match book {
                Ok(b) => ctx.send(Msg::Policies(Arc::new(b))),
                Err(e) => ctx.error(format!("policies: {e}")),
            }
        });
    }

    /// Backtests `draft` on the loaded data or the registry's history with the active
    /// version, against the live policy (as last read).
    pub fn backtest_policy(&mut self, draft: Policy, on: BacktestOn) {
        let Some(active) = self.active.clone() else {
            self.notices
                .push(Notice::Error("a backtest needs an active model".into()));
            return;
        };
        let loaded = self.data.clone();
        let registry = self.registry.clone();
        if on != BacktestOn::LoadedData && self.client.is_some() {
            self.notices.push(Notice::Error(
                "on a team's service its feedback and log are the service's: test on the loaded data here, or with `spamscope policy test --history` where the service's store is".into(),
            ));
            return;
        }
        let live = self
            .policies
            .as_ref()
            .and_then(|b| b.live_policy())
            .map(|e| e.record.policy.clone());
        self.spawn(JobKind::Policies, move |ctx| {
            let compiled = match CompiledPolicy::compile(&draft) {
                Ok(c) => c,
                Err(e) => return ctx.error(format!("the draft: {e}")),
            };
            let live = match live.as_ref().map(CompiledPolicy::compile).transpose() {
                Ok(l) => l,
                Err(e) => return ctx.error(format!("the live policy: {e}")),
            };
            let (data, labels) = match (on, loaded, registry) {
                (BacktestOn::LoadedData, Some(d), _) => {
                    let labels = crate::ops::policy::labels_of(&d);
                    (d, labels)
                }
                (BacktestOn::LoadedData, None, _) => return ctx.error("no data loaded".into()),
                (_, _, None) => return ctx.error("the registry is not open yet".into()),
                (_, _, Some(reg)) => {
                    ctx.reporter.stage("reading the history", 0, 1);
                    let source = if on == BacktestOn::Feedback {
                        crate::ops::policy::HistorySource::Feedback
                    } else {
                        crate::ops::policy::HistorySource::Log(100_000)
                    };
                    match crate::ops::policy::history(&reg, source) {
                        Ok(h) => (Arc::new(h.data), h.labels),
                        Err(e) => return ctx.error(format!("the history: {e}")),
                    }
                }
            };
            match crate::ops::policy::test_labelled(
                &data,
                &labels,
                &active.model,
                active.manifest.version,
                &compiled,
                live.as_ref(),
                None,
                &ctx.reporter,
            ) {
                Ok(test) => {
                    ctx.info(format!(
                        "backtest on {} accounts: the policy ran in {:.2} s (scoring {:.1} s)",
                        test.backtest.accounts, test.policy_seconds, test.scoring_seconds
                    ));
                    ctx.send(Msg::PolicyTested(Arc::new(PolicyTested { test, data })));
                }
                Err(e) => ctx.failed(e, "backtest cancelled", "backtest failed"),
            }
        });
    }

    /// Saves, publishes or shadows a policy, then reads the policies again.
    pub fn policy_command(&mut self, cmd: PolicyCommand) {
        let client = self.client.clone();
        let registry = self.registry.clone();
        let who = self
            .moderator
            .clone()
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| "app".into());
        self.spawn(JobKind::Policies, move |ctx| {
            let done: Result<(String, PolicyBook), String> = match (client, registry) {
                (Some(c), _) => (|| {
                    let msg = match &cmd {
                        PolicyCommand::Save { policy, note } => {
                            let d = c.draft_policy(policy, note)?;
                            format!("kept policy {} as a draft", d.policy.record.version)
                        }
                        PolicyCommand::Publish(n) => {
                            c.publish_policy(*n)?;
                            format!("policy {n} is live")
                        }
                        PolicyCommand::Shadow(n) => c.shadow_policy(*n)?.message,
                    };
                    let l = c.policies()?;
                    let stats = if l.shadow.is_some() {
                        c.shadow_status()?.stats
                    } else {
                        None
                    };
                    Ok((
                        msg,
                        PolicyBook {
                            list: l.policies,
                            live: l.live,
                            shadow: l.shadow,
                            shadow_stats: stats,
                        },
                    ))
                })()
                .map_err(|e: crate::remote::RemoteError| e.to_string()),
                (None, Some(reg)) => (|| {
                    let msg = match &cmd {
                        PolicyCommand::Save { policy, note } => {
                            let r = crate::ops::policy::save_draft(&reg, policy, &who, note)?;
                            format!("kept policy {} as a draft", r.version)
                        }
                        PolicyCommand::Publish(n) => {
                            crate::ops::policy::publish(&reg, *n, &who)?;
                            format!("policy {n} is live")
                        }
                        PolicyCommand::Shadow(Some(n)) => {
                            crate::ops::policy::set_shadow(&reg, Some(*n), &who)?;
                            format!("policy {n} runs in shadow beside the live one")
                        }
                        PolicyCommand::Shadow(None) => {
                            crate::ops::policy::set_shadow(&reg, None, &who)?;
                            "no policy runs in shadow".into()
                        }
                    };
                    Ok((msg, crate::ops::policy::book(&reg)?))
                })()
                .map_err(|e: crate::Error| e.to_string()),
                (None, None) => Err("the registry is not open yet".into()),
            };
            match done {
                Ok((msg, book)) => {
                    ctx.info(msg);
                    ctx.send(Msg::Policies(Arc::new(book)));
                }
                Err(e) => ctx.error(format!("policies: {e}")),
            }
        });
    }
}
