//! A moderation team on one model, as every front-end does it: confirm an account's
//! final label (one or a file of them), look at an account (its confirmed label, who
//! reviewed it, who is reviewing it now), and claim accounts for review so two
//! moderators do not review the same account at once.

use crate::data::UserId;
use crate::ops::error::{Error, Result};
use crate::store::Registry;
use crate::store::feedback::FeedbackStore;
pub use crate::store::review::{
    AccountRecord, AccountStatus, ClaimHolder, ClaimOutcome, ConfirmedLabel, OpenClaims,
};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Most accounts in one claim, release or status request.
pub const MAX_IDS: usize = 1_000;

/// Longest review claim, in seconds (a day).
pub const MAX_CLAIM_TTL_SECONDS: u64 = 86_400;

/// Most characters of a confirmation's notes.
pub const MAX_NOTES: usize = 10_000;

/// `ids` as user ids: 1 to [`MAX_IDS`] of them, each non-empty and at most
/// [`crate::data::MAX_USER_ID_BYTES`] bytes; an error names `field` and the index.
pub fn user_ids(ids: &[String], field: &str) -> Result<Vec<UserId>> {
    if ids.is_empty() || ids.len() > MAX_IDS {
        return Err(Error::Invalid(format!(
            "{field} must hold 1 to {MAX_IDS} user ids (got {})",
            ids.len()
        )));
    }
    ids.iter()
        .enumerate()
        .map(|(i, u)| match crate::data::user_id_problem(u.trim()) {
            Some(problem) => Err(Error::Invalid(format!("{field}[{i}]: {problem}"))),
            None => Ok(UserId::from(u.trim())),
        })
        .collect()
}

/// One user id, checked; the error names `field`.
pub fn user_id(id: &str, field: &str) -> Result<UserId> {
    match crate::data::user_id_problem(id.trim()) {
        Some(problem) => Err(Error::Invalid(format!("{field}: {problem}"))),
        None => Ok(UserId::from(id.trim())),
    }
}

/// Claims `ids` for review by `moderator` for `ttl_seconds` (1 to
/// [`MAX_CLAIM_TTL_SECONDS`]): the ids granted (free, expired, or already
/// `moderator`'s, renewed) and those held by someone else.
pub fn claim(
    registry: &Registry,
    ids: &[String],
    moderator: &str,
    ttl_seconds: u64,
) -> Result<ClaimOutcome> {
    claim_at(registry, ids, moderator, ttl_seconds, SystemTime::now())
}

/// [`claim`] at time `now`.
pub fn claim_at(
    registry: &Registry,
    ids: &[String],
    moderator: &str,
    ttl_seconds: u64,
    now: SystemTime,
) -> Result<ClaimOutcome> {
    claim_in(
        &mut FeedbackStore::of(registry)?,
        ids,
        moderator,
        ttl_seconds,
        now,
    )
}

/// [`claim_at`] on an open store (the service keeps one open).
pub fn claim_in(
    store: &mut FeedbackStore,
    ids: &[String],
    moderator: &str,
    ttl_seconds: u64,
    now: SystemTime,
) -> Result<ClaimOutcome> {
    if !(1..=MAX_CLAIM_TTL_SECONDS).contains(&ttl_seconds) {
        return Err(Error::Invalid(format!(
            "ttl_seconds must be between 1 and {MAX_CLAIM_TTL_SECONDS} (got {ttl_seconds})"
        )));
    }
    let ids = user_ids(ids, "user_ids")?;
    Ok(store.claim_for_review(&ids, moderator, Duration::from_secs(ttl_seconds), now)?)
}

/// Gives back `moderator`'s claims on `ids`; returns how many there were.
pub fn release(registry: &Registry, ids: &[String], moderator: &str) -> Result<usize> {
    release_in(&mut FeedbackStore::of(registry)?, ids, moderator)
}

/// [`release`] on an open store.
pub fn release_in(store: &mut FeedbackStore, ids: &[String], moderator: &str) -> Result<usize> {
    let ids = user_ids(ids, "user_ids")?;
    Ok(store.release_review_claims(&ids, moderator)?)
}

/// For each of `ids`: who is reviewing it now, who reviewed it (the feedback records on
/// it) and its confirmed label.
pub fn status(registry: &Registry, ids: &[String]) -> Result<Vec<AccountStatus>> {
    status_at(registry, ids, SystemTime::now())
}

/// [`status`] at time `now`.
pub fn status_at(
    registry: &Registry,
    ids: &[String],
    now: SystemTime,
) -> Result<Vec<AccountStatus>> {
    status_in(&mut FeedbackStore::of(registry)?, ids, now)
}

/// [`status_at`] on an open store.
pub fn status_in(
    store: &mut FeedbackStore,
    ids: &[String],
    now: SystemTime,
) -> Result<Vec<AccountStatus>> {
    let ids = user_ids(ids, "user_ids")?;
    Ok(store.claims_and_reviews(&ids, now)?)
}

/// One account: its claim, the feedback records on it and its confirmed label.
pub fn account(registry: &Registry, id: &str) -> Result<AccountStatus> {
    account_in(&mut FeedbackStore::of(registry)?, id)
}

/// [`account`] on an open store.
pub fn account_in(store: &mut FeedbackStore, id: &str) -> Result<AccountStatus> {
    let id = user_id(id, "user_id")?;
    let mut all = store.claims_and_reviews(std::slice::from_ref(&id), SystemTime::now())?;
    Ok(all.remove(0))
}

/// A confirmation and the one it replaced, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    pub confirmed: ConfirmedLabel,
    pub replaced: Option<ConfirmedLabel>,
}

/// Confirms the final label of account `id` (1: spammer, 0: legitimate), by `by`, in one
/// transaction; it replaces an earlier confirmation.
pub fn confirm_label(
    registry: &Registry,
    id: &str,
    label: u8,
    by: &str,
    notes: &str,
) -> Result<Confirmation> {
    confirm_label_in(&mut FeedbackStore::of(registry)?, id, label, by, notes)
}

/// [`confirm_label`] on an open store.
pub fn confirm_label_in(
    store: &mut FeedbackStore,
    id: &str,
    label: u8,
    by: &str,
    notes: &str,
) -> Result<Confirmation> {
    let id = user_id(id, "user_id")?;
    if label > 1 {
        return Err(Error::Invalid(format!(
            "label must be 0 or 1 (got {label})"
        )));
    }
    if notes.chars().count() > MAX_NOTES {
        return Err(Error::Invalid(format!(
            "notes are longer than {MAX_NOTES} characters"
        )));
    }
    let replaced = store
        .confirm_labels(&[(id.clone(), label)], by, notes, SystemTime::now())?
        .remove(0);
    let confirmed = store
        .confirmed_label(&id)?
        .ok_or_else(|| Error::Invalid(format!("user_id {id}: the confirmation was not kept")))?;
    Ok(Confirmation {
        confirmed,
        replaced,
    })
}

/// A label as people write it: `1`, `spam`, `spammer`, `true` or `0`, `legit`,
/// `legitimate`, `false` (any case).
pub fn parse_label(s: &str) -> Option<u8> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "spam" | "spammer" | "true" => Some(1),
        "0" | "legit" | "legitimate" | "false" => Some(0),
        _ => None,
    }
}

/// The two cells of a `user_id,label` line (the id may be quoted, with `""` for a quote).
fn two_cells(line: &str) -> Option<(String, &str)> {
    if let Some(rest) = line.strip_prefix('"') {
        let mut id = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '"' {
                id.push(c);
                continue;
            }
            match rest[i + 1..].chars().next() {
                Some('"') => {
                    id.push('"');
                    chars.next();
                }
                _ => return Some((id, rest[i + 1..].trim_start().strip_prefix(',')?)),
            }
        }
        return None;
    }
    let (id, label) = line.rsplit_once(',')?;
    Some((id.to_string(), label))
}

/// Confirms the labels of a `user_id,label` CSV file (a header line is allowed; labels
/// as [`parse_label`] reads them) by `by`, all in one transaction; a bad line stops the
/// import with its line number and nothing is stored. Returns how many were confirmed.
pub fn import_confirmed(registry: &Registry, path: &Path, by: &str) -> Result<usize> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut labels = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{} line {}", path.display(), n + 1);
        let Some((id, label)) = two_cells(line) else {
            return Err(Error::Invalid(format!("{}: expected user_id,label", at())));
        };
        let Some(label) = parse_label(label) else {
            if n == 0 && label.trim().eq_ignore_ascii_case("label") {
                continue;
            }
            return Err(Error::Invalid(format!(
                "{}: label must be 0/1 or spam/legit (got {})",
                at(),
                crate::util::text::quote(label.trim())
            )));
        };
        labels.push((user_id(&id, &format!("{} user_id", at()))?, label));
    }
    let notes = format!("imported from {}", path.display());
    FeedbackStore::of(registry)?.confirm_labels(&labels, by, &notes, SystemTime::now())?;
    Ok(labels.len())
}

/// Most accounts in one `recent traffic` queue.
pub const MAX_TRAFFIC: usize = 10_000;

/// The accounts the service scored most recently, newest first, one per user id (a
/// request without one is its own account, named by its prediction id): the team's
/// review queue. At most `limit` ([`MAX_TRAFFIC`] at most) from the newest
/// `4 × limit` predictions.
pub fn recent_traffic(
    log: &crate::store::predictions::PredictionLog,
    limit: usize,
) -> Result<Vec<crate::store::predictions::PredictionRecord>> {
    if limit == 0 || limit > MAX_TRAFFIC {
        return Err(Error::Invalid(format!(
            "limit must be 1 to {MAX_TRAFFIC} (got {limit})"
        )));
    }
    let recent = log
        .recent(limit.saturating_mul(4))
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let mut seen = std::collections::HashSet::new();
    Ok(recent
        .into_iter()
        .filter(|r| seen.insert(r.user_id.clone().unwrap_or_else(|| r.id.clone())))
        .take(limit)
        .collect())
}

/// An account the decision policy sent to review, waiting for a moderator.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedAccount {
    /// The newest logged prediction with the account's most severe queued decision.
    pub record: crate::store::predictions::PredictionRecord,
    /// The decision's place in the live policy's outcomes (higher: more severe).
    pub severity: usize,
    /// Who is reviewing it now, if anyone.
    pub claim: Option<ClaimHolder>,
}

/// The accounts the live policy's decisions sent to review and nobody reviewed since.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecisionQueue {
    /// Most severe first, then highest score; at most the limit asked.
    pub accounts: Vec<QueuedAccount>,
    /// Accounts waiting in all (of the decisions read), and when the oldest of them was
    /// decided (RFC 3339).
    pub waiting: usize,
    pub oldest_decided_at: Option<String>,
}

/// The outcomes that queue an account for review: `review` and every outcome more
/// severe than it (all but the least severe when a policy has no `review`).
pub fn queued_outcomes(outcomes: &[String]) -> &[String] {
    let from = outcomes.iter().position(|o| o == "review").unwrap_or(1);
    outcomes.get(from..).unwrap_or(&[])
}

/// The review queue filled by decisions: from the prediction log, the newest
/// predictions the live policy decided with a queued outcome (`outcomes`, least severe
/// first), one per account at its most severe such decision; an account leaves the
/// queue when it has a confirmed label or a moderator's feedback given at or after that
/// decision. Predictions without a user id cannot be reviewed by account and are left
/// out. Reads at most `4 × limit` predictions per outcome.
pub fn decision_queue(
    log: &crate::store::predictions::PredictionLog,
    store: &mut FeedbackStore,
    outcomes: &[String],
    limit: usize,
    now: SystemTime,
) -> Result<DecisionQueue> {
    if limit == 0 || limit > MAX_TRAFFIC {
        return Err(Error::Invalid(format!(
            "limit must be 1 to {MAX_TRAFFIC} (got {limit})"
        )));
    }
    let queued = queued_outcomes(outcomes);
    let first = outcomes.len() - queued.len();
    let mut seen = std::collections::HashSet::new();
    let mut candidates = Vec::new();
    for (k, o) in queued.iter().enumerate().rev() {
        for r in log.decided(o, limit.saturating_mul(4))? {
            let Some(u) = r.user_id.clone() else { continue };
            if seen.insert(u) {
                candidates.push((first + k, r));
            }
        }
    }
    let mut out = DecisionQueue::default();
    for chunk in candidates.chunks(MAX_IDS) {
        let ids: Vec<UserId> = chunk
            .iter()
            .map(|(_, r)| UserId::from(r.user_id.as_deref().unwrap_or_default()))
            .collect();
        let status = store.claims_and_reviews(&ids, now)?;
        for ((severity, record), st) in chunk.iter().zip(status) {
            let reviewed = st.confirmed.is_some()
                || st
                    .reviews
                    .iter()
                    .any(|v| v.moderator.is_some() && v.created_at >= record.created_at);
            if reviewed {
                continue;
            }
            out.waiting += 1;
            if out
                .oldest_decided_at
                .as_ref()
                .is_none_or(|t| record.created_at < *t)
            {
                out.oldest_decided_at = Some(record.created_at.clone());
            }
            out.accounts.push(QueuedAccount {
                record: record.clone(),
                severity: *severity,
                claim: st.claim,
            });
        }
    }
    out.accounts.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.record.score.total_cmp(&a.record.score))
    });
    out.accounts.truncate(limit);
    Ok(out)
}
