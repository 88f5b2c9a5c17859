//! The review queue: scoring a file, the loaded data or the team's recent traffic;
//! moderators' verdicts on its rows; exporting rows.

use super::feedback::{store_feedback, to_outbox};
use super::poll::Msg;
use super::{JobKind, Notice, Workbench};
use crate::data::Dataset;
use crate::model::explain::Method;
use crate::ops::score::Queue;
use crate::store::feedback::Origin;
use crate::util::progress::Reporter;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the review queue's accounts come from.
enum QueueSource {
    File(PathBuf),
    /// The team service's recent traffic, at most this many accounts.
    Team(crate::remote::Client, usize),
    /// The accounts the team's live policy sent to review, at most this many.
    TeamDecisions(crate::remote::Client, usize),
}

impl Workbench {
    /// Scores a file of accounts (or the loaded data when `path` is None) with the active
    /// version for the review queue: probabilities and the top three contributions
    /// (path attribution) of every account.
    pub fn score_queue(&mut self, path: Option<PathBuf>) {
        self.score_queue_from(path.map(QueueSource::File));
    }

    /// Scores the team service's recent traffic (the newest `limit` accounts it
    /// scored) for the review queue, here with the local copy of its model.
    pub fn score_team_traffic(&mut self, limit: usize) {
        let Some(client) = self.client.clone() else {
            self.notices.push(Notice::Error(
                "the team's traffic is on a team's service: connect to one first".into(),
            ));
            return;
        };
        self.score_queue_from(Some(QueueSource::Team(client, limit)));
    }

    /// Scores the accounts the team's live decision policy sent to review (at most
    /// `limit`), in the service's order, with the rules that sent each.
    pub fn score_team_decisions(&mut self, limit: usize) {
        let Some(client) = self.client.clone() else {
            self.notices.push(Notice::Error(
                "the team's decisions are on a team's service: connect to one first".into(),
            ));
            return;
        };
        self.score_queue_from(Some(QueueSource::TeamDecisions(client, limit)));
    }

    fn score_queue_from(&mut self, source: Option<QueueSource>) {
        let Some(active) = self.active.clone() else {
            self.notices
                .push(Notice::Error("no active model to score with".into()));
            return;
        };
        let loaded = self.data.clone();
        self.spawn(JobKind::Queue, move |ctx| {
            let mut decisions = None;
            let data = match source {
                Some(QueueSource::TeamDecisions(client, limit)) => {
                    ctx.reporter.stage("reading the team's decisions", 0, 1);
                    match client.review_decisions(limit) {
                        Ok(t) if t.accounts.is_empty() => {
                            return ctx.info(
                                "no account waits for review: the team's live policy sent none, or all were reviewed"
                                    .into(),
                            );
                        }
                        Ok(t) => {
                            decisions = Some(
                                t.accounts
                                    .iter()
                                    .map(|a| {
                                        (
                                            a.decision.clone().unwrap_or_default(),
                                            a.matched_rules.clone(),
                                        )
                                    })
                                    .collect::<Vec<_>>(),
                            );
                            Arc::new(traffic_dataset(
                                &format!(
                                    "{}/review/queue?source=decisions (the accounts the team's policy sent to review)",
                                    client.url()
                                ),
                                t,
                            ))
                        }
                        Err(e) => return ctx.error(format!("the team's decisions: {e}")),
                    }
                }
                Some(QueueSource::Team(client, limit)) => {
                    ctx.reporter.stage("reading the team's traffic", 0, 1);
                    match client.review_queue(limit) {
                        Ok(t) if t.accounts.is_empty() => {
                            return ctx
                                .info("the team's service has scored no accounts yet".into());
                        }
                        Ok(t) => Arc::new(traffic_dataset(
                            &format!("{}/review/queue (the team's recent traffic)", client.url()),
                            t,
                        )),
                        Err(e) => return ctx.error(format!("the team's traffic: {e}")),
                    }
                }
                Some(QueueSource::File(p)) => {
                    ctx.reporter.stage("reading", 0, 1);
                    match Dataset::load_csv(&p) {
                        Ok(d) => Arc::new(d),
                        Err(e) => {
                            return ctx.error(format!("could not open the accounts file: {e}"));
                        }
                    }
                }
                None => match loaded {
                    Some(d) => d,
                    None => return ctx.error("no data loaded".into()),
                },
            };
            match crate::ops::score::score_batch(
                &data,
                &active.model,
                active.manifest.version,
                active.manifest.threshold,
                3,
                Method::PathAttribution,
                &ctx.reporter,
            ) {
                Ok(b) => {
                    ctx.info(format!(
                        "scored {} accounts in {:.1} s ({:.0} accounts/s) with v{}",
                        b.len(),
                        b.seconds,
                        b.rows_per_second(),
                        b.version
                    ));
                    let q = match decisions {
                        Some(d) => Queue::decided(data, b, d),
                        None => Queue::new(data, b),
                    };
                    ctx.send(Msg::Queue(Arc::new(q)));
                }
                Err(e) => ctx.failed(e, "scoring cancelled", "scoring failed"),
            }
        });
    }

    /// Stores moderators' verdict on queue rows as feedback, in one transaction.
    pub fn queue_feedback(&mut self, rows: Vec<usize>, true_label: u8) {
        let (Some(registry), Some(q)) = (self.registry.clone(), self.queue.clone()) else {
            return;
        };
        if rows.is_empty() {
            return;
        }
        let wake = self.link.as_ref().map(|l| l.waker());
        let moderator = self.moderator.clone();
        self.spawn(JobKind::Feedback, move |ctx| {
            let records = crate::ops::feedback::records(
                &q.data,
                &rows,
                |_| true_label,
                Some(&q.batch),
                "bulk review from the queue",
                Origin::Queue,
            );
            if let Some(w) = wake {
                return to_outbox(ctx, &registry, &records, &w);
            }
            store_feedback(ctx, &registry, &records, moderator.as_deref(), |ids| {
                format!(
                    "{} account(s) recorded as {}",
                    ids.len(),
                    if true_label == 1 {
                        "spammers"
                    } else {
                        "legitimate"
                    }
                )
            });
        });
    }

    /// Writes the queue rows `rows` (in that order) to a CSV.
    pub fn export_queue(&mut self, path: PathBuf, rows: Vec<usize>) {
        let Some(q) = self.queue.clone() else { return };
        self.spawn(
            JobKind::Export,
            move |ctx| match crate::ops::score::write_batch_csv(
                &q.data,
                &q.batch,
                Some(&rows),
                &path,
            ) {
                Ok(()) => ctx.info(format!(
                    "wrote {} ({} accounts)",
                    path.display(),
                    rows.len()
                )),
                Err(e) => ctx.error(format!("export failed: {e}")),
            },
        );
    }
}

/// The team's recent traffic as a dataset (no labels) to score locally.
fn traffic_dataset(source: &str, t: crate::service::api::TrafficQueue) -> Dataset {
    use crate::data::catalog::N_FEATURES;
    let mut columns: Vec<Vec<f64>> = (0..N_FEATURES)
        .map(|_| Vec::with_capacity(t.accounts.len()))
        .collect();
    let mut user_ids = Vec::with_capacity(t.accounts.len());
    let mut hash_input = String::new();
    for a in &t.accounts {
        for (f, col) in columns.iter_mut().enumerate() {
            col.push(a.features.get(f).copied().flatten().unwrap_or(f64::NAN));
        }
        hash_input.push_str(&a.prediction_id);
        user_ids.push(crate::data::UserId::from(a.user_id.as_str()));
    }
    Dataset {
        source: crate::data::DataSource {
            kind: crate::data::SourceKind::Csv {
                path: source.to_string(),
            },
            sha256: crate::util::hash::sha256_hex(hash_input.as_bytes()),
        },
        user_ids,
        labels: None,
        columns,
        warnings: Vec::new(),
    }
}
