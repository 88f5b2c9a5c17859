//! Feedback: storing records here (and asking whether a retrain is due) or keeping them
//! in the outbox of a team's service; the feedback statistics.

use super::jobs::JobCtx;
use super::link::outbox_path;
use super::poll::Msg;
use super::{JobKind, Workbench};
use crate::store::Registry;
use crate::store::feedback::{FeedbackStore, NewFeedback};

impl Workbench {
    /// Stores one feedback record (one transaction) in the background.
    pub fn submit_feedback(&mut self, record: NewFeedback) {
        let Some(registry) = self.registry.clone() else {
            return;
        };
        if let Some(w) = self.link.as_ref().map(|l| l.waker()) {
            self.spawn(JobKind::Feedback, move |ctx| {
                to_outbox(ctx, &registry, &[record], &w)
            });
            return;
        }
        let moderator = self.moderator.clone();
        self.spawn(JobKind::Feedback, move |ctx| {
            store_feedback(ctx, &registry, &[record], moderator.as_deref(), |ids| {
                format!("feedback saved (record #{})", ids[0])
            });
        });
    }
}

/// Keeps feedback in the outbox of a team's service (one transaction) and wakes the
/// link to send it.
pub(super) fn to_outbox(
    ctx: &JobCtx,
    registry: &Registry,
    records: &[NewFeedback],
    wake: &std::sync::mpsc::Sender<()>,
) {
    let bodies: Vec<_> = records.iter().map(crate::remote::feedback_body).collect();
    let kept = crate::remote::outbox::Outbox::open(&outbox_path(registry.root()))
        .and_then(|mut o| o.enqueue(&bodies));
    match kept {
        Ok(keys) => {
            ctx.info(format!(
                "feedback kept for the team's service ({} record{})",
                keys.len(),
                if keys.len() == 1 { "" } else { "s" }
            ));
            let _ = wake.send(());
        }
        Err(e) => ctx.error(format!("feedback was not saved: {e}")),
    }
}

/// Stores feedback records in one transaction, refreshes the statistics and lets the
/// store say whether an automatic retrain is now due.
pub(super) fn store_feedback(
    ctx: &JobCtx,
    registry: &Registry,
    records: &[NewFeedback],
    moderator: Option<&str>,
    saved: impl FnOnce(&[i64]) -> String,
) {
    match crate::ops::feedback::record_by(registry, records, moderator) {
        Ok(r) => {
            ctx.info(saved(&r.ids));
            send_feedback_stats(ctx, registry);
            if let Some(reason) = r.retrain_due {
                ctx.send(Msg::AutoRetrain(reason));
            }
        }
        Err(e) => {
            ctx.error(format!("feedback was not saved: {e}"));
            send_feedback_stats(ctx, registry);
        }
    }
}

pub(super) fn send_feedback_stats(ctx: &JobCtx, registry: &Registry) {
    let read = FeedbackStore::of(registry).and_then(|s| Ok((s.stats()?, s.agreement_over_time()?)));
    match read {
        Ok((stats, over_time)) => {
            ctx.send(Msg::FeedbackStats(stats));
            ctx.send(Msg::Agreement(over_time));
        }
        Err(e) => ctx.error(format!("feedback statistics unavailable: {e}")),
    }
}
