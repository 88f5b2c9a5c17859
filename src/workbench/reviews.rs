//! Review claims: who reviews which queue account, claimed here or on the team's
//! service.

use super::poll::Msg;
use super::{JobKind, Workbench};
use crate::store::Registry;
use std::time::Instant;

/// How long a review claim lasts.
pub const CLAIM_SECONDS: u64 = 15 * 60;

/// How often the review status of the rows on screen is read again.
const REVIEWS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Workbench {
    /// Who claims on this computer: the moderator name, else "this computer".
    fn local_name(&self) -> String {
        self.moderator
            .clone()
            .unwrap_or_else(|| "this computer".into())
    }

    /// The review status of `ids` (the queue rows on screen) is wanted: read again when
    /// the rows or the feedback change (and every few seconds on a team's service), from
    /// the service or the store.
    pub fn want_reviews(&mut self, ids: Vec<String>) {
        if ids.is_empty() || self.is_running(JobKind::Review) {
            return;
        }
        // On this computer reviews change only by its own steps (which ask again); on a
        // team's service other moderators act, so the rows are read again every few
        // seconds.
        let remote = self.is_remote();
        let fresh = self
            .reviews_asked
            .as_ref()
            .is_some_and(|(asked, at)| *asked == ids && (!remote || at.elapsed() < REVIEWS_EVERY));
        if fresh {
            return;
        }
        self.reviews_asked = Some((ids.clone(), Instant::now()));
        self.read_reviews(ids);
    }

    fn read_reviews(&mut self, ids: Vec<String>) {
        let (client, registry) = (self.client.clone(), self.registry.clone());
        self.spawn(JobKind::Review, move |ctx| {
            match review_status(client.as_ref(), registry.as_ref(), &ids) {
                Ok(a) => ctx.send(Msg::Reviews(a)),
                Err(e) => ctx.error(format!("review status: {e}")),
            }
        });
    }

    /// Claims accounts for review ([`CLAIM_SECONDS`]) so that nobody else on the team
    /// reviews them meanwhile; says which someone else holds.
    pub fn claim_reviews(&mut self, ids: Vec<String>) {
        self.change_claims(ids, true);
    }

    /// Gives back this moderator's claims on accounts.
    pub fn release_reviews(&mut self, ids: Vec<String>) {
        self.change_claims(ids, false);
    }

    fn change_claims(&mut self, ids: Vec<String>, take: bool) {
        if ids.is_empty() {
            return;
        }
        let (client, registry, me) = (
            self.client.clone(),
            self.registry.clone(),
            self.local_name(),
        );
        self.spawn(JobKind::Review, move |ctx| {
            for chunk in ids.chunks(crate::ops::review::MAX_IDS) {
                let done: Result<String, String> = match (&client, &registry, take) {
                    (Some(c), _, true) => c
                        .claim(chunk, CLAIM_SECONDS)
                        .map(|r| claimed_text(r.granted.len(), &r.held))
                        .map_err(|e| e.to_string()),
                    (None, Some(reg), true) => {
                        crate::ops::review::claim(reg, chunk, &me, CLAIM_SECONDS)
                            .map(|r| {
                                let held: Vec<crate::service::api::HeldClaim> = r
                                    .held
                                    .into_iter()
                                    .map(|(u, h)| crate::service::api::HeldClaim {
                                        user_id: u.to_string(),
                                        moderator: h.moderator,
                                        expires_at: h.expires_at,
                                    })
                                    .collect();
                                claimed_text(r.granted.len(), &held)
                            })
                            .map_err(|e| e.to_string())
                    }
                    (Some(c), _, false) => c
                        .release(chunk)
                        .map(|r| format!("{} claim(s) given back", r.released))
                        .map_err(|e| e.to_string()),
                    (None, Some(reg), false) => crate::ops::review::release(reg, chunk, &me)
                        .map(|n| format!("{n} claim(s) given back"))
                        .map_err(|e| e.to_string()),
                    (None, None, _) => return,
                };
                match done {
                    Ok(t) => ctx.info(t),
                    Err(e) => return ctx.error(format!("review claims: {e}")),
                }
            }
            // What the rows show now.
            let first = &ids[..ids.len().min(crate::ops::review::MAX_IDS)];
            let read = review_status(client.as_ref(), registry.as_ref(), first).ok();
            if let Some(a) = read {
                ctx.send(Msg::Reviews(a));
            }
        });
    }
}

/// Who claimed and reviewed `ids`, from the team's service when there is one, else
/// from the local store (in requests of at most [`crate::ops::review::MAX_IDS`]).
fn review_status(
    client: Option<&crate::remote::Client>,
    registry: Option<&Registry>,
    ids: &[String],
) -> Result<Vec<crate::service::api::AccountStatus>, String> {
    let mut out = Vec::new();
    for chunk in ids.chunks(crate::ops::review::MAX_IDS) {
        let read: Vec<crate::service::api::AccountStatus> = match (client, registry) {
            (Some(c), _) => c.review_status(chunk).map_err(|e| e.to_string())?.accounts,
            (None, Some(r)) => crate::ops::review::status(r, chunk)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(Into::into)
                .collect(),
            (None, None) => return Ok(out),
        };
        out.extend(read);
    }
    Ok(out)
}

fn claimed_text(granted: usize, held: &[crate::service::api::HeldClaim]) -> String {
    let mut t = format!(
        "{granted} account(s) claimed for {} minutes",
        CLAIM_SECONDS / 60
    );
    if let Some(h) = held.first() {
        t.push_str(&format!(
            "; {} held by others (e.g. {} by {} until {})",
            held.len(),
            crate::util::text::clip(&h.user_id),
            h.moderator,
            h.expires_at
        ));
    }
    t
}
