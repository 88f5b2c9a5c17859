//! Policies as a team works with them: check a policy file, and test a draft on labelled
//! history (every account scored by a model version, the draft's decisions and each
//! rule's record, what changes against the live policy, the review load it implies).

use crate::data::Dataset;
use crate::eval::policy::{Backtest, CompiledPolicy, Policy, PolicyError, Rule, Signals};
use crate::model::Model;
use crate::model::explain::Method;
use crate::ops::error::{Error, Result};
use crate::store::predictions::DecisionTag;
use crate::store::{PolicyPointers, Registry, StoreError};
use crate::util::progress::Reporter;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// Largest policy file read.
const MAX_FILE: u64 = 4 << 20;

impl From<PolicyError> for Error {
    fn from(e: PolicyError) -> Error {
        Error::Invalid(e.to_string())
    }
}

/// Reads a policy: JSON (a text starting with `{`) or RON, as `assets/policy.ron`.
pub fn parse(text: &str) -> std::result::Result<Policy, String> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("not a policy in JSON: {e}"))
    } else {
        ron::from_str(text).map_err(|e| format!("not a policy in RON: {e}"))
    }
}

/// Reads and compiles a policy file; every error names the file and, for a rule, the
/// rule and the place in its condition.
pub fn load(path: &Path) -> Result<CompiledPolicy> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > MAX_FILE {
        return Err(Error::io(
            path,
            format!("larger than {} MiB: not a policy", MAX_FILE >> 20),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let policy = parse(&text).map_err(|e| Error::io(path, crate::util::text::one_line(&e)))?;
    CompiledPolicy::compile(&policy).map_err(|e| Error::io(path, e))
}

/// A draft policy tested on labelled accounts.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyTest {
    /// The model version whose probabilities the rules read.
    pub version: u32,
    #[serde(flatten)]
    pub backtest: Backtest,
    /// The user ids of the accounts whose decision changed (as `backtest.changed`).
    pub changed_users: Vec<String>,
    /// Seconds to score the accounts, and to run the policy (and the live one) on them.
    pub scoring_seconds: f64,
    pub policy_seconds: f64,
    /// Share of the accounts the draft sends to `review`, and what that is a day at the
    /// stated daily volume of accounts.
    pub review_share: f64,
    pub daily_volume: Option<f64>,
    pub daily_review: Option<f64>,
}

/// Tests `draft` (against `live` when given) on the labelled accounts of `d`, scored by
/// `model` (version `version`).
pub fn test(
    d: &Dataset,
    model: &Model,
    version: u32,
    draft: &CompiledPolicy,
    live: Option<&CompiledPolicy>,
    daily_volume: Option<f64>,
    reporter: &dyn Reporter,
) -> Result<PolicyTest> {
    test_labelled(
        d,
        &labels_of(d),
        model,
        version,
        draft,
        live,
        daily_volume,
        reporter,
    )
}

/// Each account's label in `d` (None throughout for a file without labels).
pub fn labels_of(d: &Dataset) -> Vec<Option<u8>> {
    match &d.labels {
        Some(l) => l.iter().map(|&v| Some(v)).collect(),
        None => vec![None; d.n_rows()],
    }
}

/// [`test`] on accounts of which only some are labelled (`labels`, one per row of `d`):
/// history whose labels are still arriving.
#[allow(clippy::too_many_arguments)]
pub fn test_labelled(
    d: &Dataset,
    labels: &[Option<u8>],
    model: &Model,
    version: u32,
    draft: &CompiledPolicy,
    live: Option<&CompiledPolicy>,
    daily_volume: Option<f64>,
    reporter: &dyn Reporter,
) -> Result<PolicyTest> {
    if labels.len() != d.n_rows() {
        return Err(Error::Invalid(format!(
            "{} labels for {} accounts",
            labels.len(),
            d.n_rows()
        )));
    }
    if let Some(v) = daily_volume
        && !(v.is_finite() && v > 0.0 && v <= 1e12)
    {
        return Err(Error::Invalid(format!(
            "the daily volume must be a number of accounts above 0, got {v}"
        )));
    }
    let start = Instant::now();
    let scored = crate::ops::score::score_batch(
        d,
        model,
        version,
        0.5,
        0,
        Method::PathAttribution,
        reporter,
    )?;
    let scoring_seconds = start.elapsed().as_secs_f64();
    reporter.stage("running the policy", 0, 1);
    let start = Instant::now();
    let columns: Vec<&[f64]> = d.columns.iter().map(Vec::as_slice).collect();
    let s = Signals {
        columns: &columns,
        probability: &scored.probability,
        score: &scored.score,
    };
    let backtest = Backtest::run(draft, live, &s, labels)?;
    let policy_seconds = start.elapsed().as_secs_f64();
    reporter.stage("running the policy", 1, 1);
    let review = backtest
        .outcomes
        .iter()
        .find(|o| o.outcome == "review")
        .map_or(0, |o| o.accounts);
    let review_share = review as f64 / d.n_rows().max(1) as f64;
    Ok(PolicyTest {
        version,
        changed_users: backtest
            .changed
            .iter()
            .map(|c| d.user_ids[c.row].to_string())
            .collect(),
        backtest,
        scoring_seconds,
        policy_seconds,
        review_share,
        daily_volume,
        daily_review: daily_volume.map(|v| v * review_share),
    })
}

// ---- Policies kept in the registry: drafts, the live one, a shadow ----

/// A policy kept in the registry, as stored (JSON): the policy, who wrote it and when,
/// and who published it or ran it in shadow.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PolicyRecord {
    pub version: u32,
    pub policy: Policy,
    pub author: String,
    pub created_at: String,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub published_by: Option<String>,
    #[serde(default)]
    pub published_at: Option<String>,
    #[serde(default)]
    pub shadow_by: Option<String>,
    #[serde(default)]
    pub shadow_since: Option<String>,
}

/// Where a kept policy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyStatus {
    /// Decides every request.
    Live,
    /// Runs beside the live one, deciding nothing.
    Shadow,
    /// Never published.
    Draft,
    /// Published once, replaced since.
    Retired,
}

impl PolicyStatus {
    pub fn name(self) -> &'static str {
        match self {
            PolicyStatus::Live => "live",
            PolicyStatus::Shadow => "shadow",
            PolicyStatus::Draft => "draft",
            PolicyStatus::Retired => "retired",
        }
    }
}

/// A kept policy with where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, serde::Deserialize)]
pub struct PolicyEntry {
    #[serde(flatten)]
    pub record: PolicyRecord,
    pub status: PolicyStatus,
}

/// A kept policy, compiled: ready to decide.
#[derive(Debug, Clone)]
pub struct KeptPolicy {
    pub version: u32,
    pub compiled: CompiledPolicy,
}

/// Most characters of a policy's note, author name.
const MAX_NOTE: usize = 2_000;

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

fn record_of(registry: &Registry, n: u32, text: &str) -> Result<PolicyRecord> {
    let r: PolicyRecord = serde_json::from_str(text).map_err(|e| {
        Error::Invalid(format!(
            "{}: policy {n} is unreadable: {}",
            registry.policies_place(),
            crate::util::text::clip(&e.to_string())
        ))
    })?;
    if r.version != n {
        return Err(Error::Invalid(format!(
            "{}: policy {n} says it is policy {}",
            registry.policies_place(),
            r.version
        )));
    }
    Ok(r)
}

/// A kept policy compiled; an error names where it is kept.
fn compile_kept(registry: &Registry, r: &PolicyRecord) -> Result<CompiledPolicy> {
    CompiledPolicy::compile(&r.policy).map_err(|e| {
        Error::Invalid(format!(
            "{}: policy {}: {e}",
            registry.policies_place(),
            r.version
        ))
    })
}

fn status_of(r: &PolicyRecord, p: PolicyPointers) -> PolicyStatus {
    if p.live == Some(r.version) {
        PolicyStatus::Live
    } else if p.shadow == Some(r.version) {
        PolicyStatus::Shadow
    } else if r.published_at.is_some() {
        PolicyStatus::Retired
    } else {
        PolicyStatus::Draft
    }
}

fn check_person(who: &str, field: &str) -> Result<()> {
    if who.trim().is_empty() || who.chars().count() > 200 || who.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "{field} must be a name of 1 to 200 characters without control characters"
        )));
    }
    Ok(())
}

/// Keeps `policy` as a new draft by `author` (it must compile); returns its record.
pub fn save_draft(
    registry: &Registry,
    policy: &Policy,
    author: &str,
    note: &str,
) -> Result<PolicyRecord> {
    save_compiled(registry, &CompiledPolicy::compile(policy)?, author, note)
}

/// [`save_draft`] of a policy compiled already (the service compiles first, to answer
/// a rule's error with its field; a policy of 500 long rules takes seconds to compile).
pub fn save_compiled(
    registry: &Registry,
    compiled: &CompiledPolicy,
    author: &str,
    note: &str,
) -> Result<PolicyRecord> {
    let policy = &compiled.policy;
    check_person(author, "author")?;
    if note.chars().count() > MAX_NOTE {
        return Err(Error::Invalid(format!(
            "a policy's note holds at most {MAX_NOTE} characters"
        )));
    }
    let mut out = None;
    registry.edit_policies(|e| {
        e.add(|n| {
            let r = PolicyRecord {
                version: n,
                policy: policy.clone(),
                author: author.trim().to_string(),
                created_at: now(),
                note: note.to_string(),
                published_by: None,
                published_at: None,
                shadow_by: None,
                shadow_since: None,
            };
            let text = serde_json::to_string_pretty(&r).expect("a policy record serialises");
            out = Some(r);
            text
        })
        .map_err(Error::from)
    })?;
    Ok(out.expect("the record was made"))
}

/// Publishes kept policy `n` (an admin's step; the front-end checks the role): it
/// decides from now on, the policy live before it is retired, and a shadow of the same
/// policy ends. Two processes publishing at once follow one another.
pub fn publish(registry: &Registry, n: u32, by: &str) -> Result<PolicyRecord> {
    check_person(by, "publisher")?;
    let r = registry.edit_policies(|e| {
        let Some(text) = e.read(n)? else {
            return Err(StoreError::NoSuchPolicy(n).into());
        };
        let mut r = record_of(registry, n, &text)?;
        // A stored policy that no longer compiles (written by hand, or by a newer
        // spamscope) is not published.
        compile_kept(registry, &r)?;
        r.published_by = Some(by.trim().to_string());
        r.published_at = Some(now());
        e.write(n, &serde_json::to_string_pretty(&r).expect("serialises"))?;
        let mut p = e.pointers()?;
        p.live = Some(n);
        if p.shadow == Some(n) {
            p.shadow = None;
        }
        e.set_pointers(p)?;
        Ok::<_, Error>(r)
    })?;
    Ok(r)
}

/// Runs kept policy `n` in shadow beside the live one (None: stops the shadow); by
/// `by`. The live policy cannot be its own shadow.
pub fn set_shadow(registry: &Registry, n: Option<u32>, by: &str) -> Result<PolicyPointers> {
    check_person(by, "who starts the shadow")?;
    registry.edit_policies(|e| {
        let mut p = e.pointers()?;
        if let Some(n) = n {
            let Some(text) = e.read(n)? else {
                return Err(StoreError::NoSuchPolicy(n).into());
            };
            if p.live == Some(n) {
                return Err(Error::Invalid(format!(
                    "policy {n} is live: a shadow runs another policy beside it"
                )));
            }
            let mut r = record_of(registry, n, &text)?;
            compile_kept(registry, &r)?;
            r.shadow_by = Some(by.trim().to_string());
            r.shadow_since = Some(now());
            e.write(n, &serde_json::to_string_pretty(&r).expect("serialises"))?;
        }
        p.shadow = n;
        e.set_pointers(p)?;
        Ok::<_, Error>(p)
    })
}

/// Kept policy `n`.
pub fn get(registry: &Registry, n: u32) -> Result<PolicyEntry> {
    let text = registry
        .read_policy(n)?
        .ok_or(StoreError::NoSuchPolicy(n))?;
    let record = record_of(registry, n, &text)?;
    let status = status_of(&record, registry.policy_pointers()?);
    Ok(PolicyEntry { record, status })
}

/// Every kept policy, newest first.
pub fn list(registry: &Registry) -> Result<Vec<PolicyEntry>> {
    let p = registry.policy_pointers()?;
    let mut out = Vec::new();
    for n in registry.policy_numbers()?.into_iter().rev() {
        let Some(text) = registry.read_policy(n)? else {
            continue;
        };
        let record = record_of(registry, n, &text)?;
        out.push(PolicyEntry {
            status: status_of(&record, p),
            record,
        });
    }
    Ok(out)
}

/// The live policy and the shadow, compiled (None where there is none).
pub fn kept(registry: &Registry) -> Result<(Option<KeptPolicy>, Option<KeptPolicy>)> {
    let p = registry.policy_pointers()?;
    let load = |n: Option<u32>| -> Result<Option<KeptPolicy>> {
        let Some(n) = n else { return Ok(None) };
        let r = get(registry, n)?.record;
        let compiled = compile_kept(registry, &r)?;
        Ok(Some(KeptPolicy {
            version: n,
            compiled,
        }))
    };
    Ok((load(p.live)?, load(p.shadow)?))
}

/// What changed from one policy to another, rule by rule (rules are matched by name).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema, serde::Deserialize)]
pub struct PolicyDiff {
    /// The outcomes before, when they changed.
    pub outcomes_before: Option<Vec<String>>,
    pub added: Vec<Rule>,
    pub removed: Vec<Rule>,
    /// Rules kept under their name with another condition or outcome.
    pub changed: Vec<RuleChange>,
    /// Rules kept as they were.
    pub unchanged: usize,
}

impl PolicyDiff {
    pub fn is_empty(&self) -> bool {
        self.outcomes_before.is_none()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
    }

    /// The diff as lines: `+ name -> outcome when ...` (added), `- ...` (removed), and
    /// for a changed rule `~ ...` (before) then `  now -> outcome when ...`.
    pub fn lines(&self) -> Vec<String> {
        let show = |r: &Rule| format!("{} -> {} when {}", r.name, r.outcome, r.when);
        let mut out = Vec::new();
        if let Some(a) = &self.outcomes_before {
            out.push(format!("~ outcomes were {}", a.join(" < ")));
        }
        out.extend(self.removed.iter().map(|r| format!("- {}", show(r))));
        out.extend(self.added.iter().map(|r| format!("+ {}", show(r))));
        for c in &self.changed {
            out.push(format!("~ {}", show(&c.before)));
            out.push(format!(
                "  now -> {} when {}",
                c.after.outcome, c.after.when
            ));
        }
        out
    }
}

/// A rule kept under its name, before and after.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, serde::Deserialize)]
pub struct RuleChange {
    pub before: Rule,
    pub after: Rule,
}

/// `after` against `before` (None: against no policy, every rule added).
pub fn diff(before: Option<&Policy>, after: &Policy) -> PolicyDiff {
    let empty = Policy {
        outcomes: after.outcomes.clone(),
        rules: Vec::new(),
    };
    let before = before.unwrap_or(&empty);
    let mut d = PolicyDiff {
        outcomes_before: (before.outcomes != after.outcomes).then(|| before.outcomes.clone()),
        ..Default::default()
    };
    for r in &after.rules {
        match before.rules.iter().find(|b| b.name == r.name) {
            None => d.added.push(r.clone()),
            Some(b) if b.when.trim() == r.when.trim() && b.outcome == r.outcome => d.unchanged += 1,
            Some(b) => d.changed.push(RuleChange {
                before: b.clone(),
                after: r.clone(),
            }),
        }
    }
    d.removed = before
        .rules
        .iter()
        .filter(|b| !after.rules.iter().any(|r| r.name == b.name))
        .cloned()
        .collect();
    d
}

// ---- Decisions on requests, and what a shadow policy would have done ----

/// The live and the shadow policy's decisions on one scored account (None where there
/// is no such policy): what the service answers and logs.
pub fn decide(
    live: Option<&KeptPolicy>,
    shadow: Option<&KeptPolicy>,
    values: &[f64],
    probability: f64,
    score: f64,
) -> (Option<DecisionTag>, Option<DecisionTag>) {
    let account = crate::eval::policy::Account {
        values,
        probability,
        score,
    };
    let one = |k: &KeptPolicy| {
        let d = k.compiled.decide_one(&account);
        DecisionTag {
            policy_version: k.version,
            decision: k.compiled.outcome_name(d.outcome).to_string(),
            matched_rules: d
                .matched
                .iter()
                .map(|&r| k.compiled.policy.rules[r].name.clone())
                .collect(),
        }
    };
    (live.map(one), shadow.map(one))
}

/// A shadow policy's record on the traffic it saw: how often it agreed with the live
/// policy, which decisions it changed, and per outcome its precision on labelled
/// predictions beside the live policy's.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, serde::Deserialize)]
pub struct ShadowStats {
    pub policy_version: u32,
    /// Predictions the shadow decided.
    pub decided: u64,
    /// Of those, decided alike by the live policy (a prediction made without a live
    /// policy agrees with nothing).
    pub agreed: u64,
    pub agreement: Option<f64>,
    /// Every pair of differing decisions, most first.
    pub changes: Vec<DecisionChange>,
    pub outcomes: Vec<ShadowOutcome>,
}

/// Predictions the live policy decided `live` and the shadow `shadow`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, serde::Deserialize)]
pub struct DecisionChange {
    /// `(no policy)` for predictions made while no policy was live.
    pub live: String,
    pub shadow: String,
    pub predictions: u64,
}

/// One outcome's record under the shadow policy and the live one, on the same
/// predictions: how many were decided so, how many of those are labelled, and the
/// share of spammers among the labelled (precision).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, serde::Deserialize)]
pub struct ShadowOutcome {
    pub outcome: String,
    pub shadow: OutcomeCount,
    pub live: OutcomeCount,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema, serde::Deserialize)]
pub struct OutcomeCount {
    pub predictions: u64,
    pub labelled: u64,
    pub spammers: u64,
    pub precision: Option<f64>,
}

/// The numbers of shadow `policy` from its logged rows and the moderators' labels (the
/// newest label of each user id).
pub fn shadow_stats(
    policy: &PolicyRecord,
    rows: &[crate::store::predictions::ShadowRow],
    labels: &[crate::store::feedback::FeedbackLabel],
) -> ShadowStats {
    use std::collections::HashMap;
    let mut by_user: HashMap<&str, u8> = HashMap::new();
    for l in labels {
        if let Some(u) = &l.user_id {
            by_user.insert(u, l.label);
        }
    }
    let mut outcomes: Vec<String> = policy.policy.outcomes.clone();
    for r in rows {
        for o in std::iter::once(&r.shadow).chain(&r.live) {
            if !outcomes.contains(o) {
                outcomes.push(o.clone());
            }
        }
    }
    let mut shadow = vec![OutcomeCount::default(); outcomes.len()];
    let mut live = vec![OutcomeCount::default(); outcomes.len()];
    let mut changes: HashMap<(String, String), u64> = HashMap::new();
    let mut agreed = 0;
    let count = |c: &mut OutcomeCount, label: Option<u8>| {
        c.predictions += 1;
        if let Some(l) = label {
            c.labelled += 1;
            c.spammers += u64::from(l);
        }
    };
    for r in rows {
        let label = r.user_id.as_deref().and_then(|u| by_user.get(u)).copied();
        let at = |o: &str| outcomes.iter().position(|x| x == o).unwrap_or(0);
        count(&mut shadow[at(&r.shadow)], label);
        if let Some(l) = &r.live {
            count(&mut live[at(l)], label);
        }
        if r.live.as_deref() == Some(r.shadow.as_str()) {
            agreed += 1;
        } else {
            let from = r.live.clone().unwrap_or_else(|| "(no policy)".into());
            *changes.entry((from, r.shadow.clone())).or_default() += 1;
        }
    }
    let precision = |c: &mut OutcomeCount| {
        c.precision = (c.labelled > 0).then(|| c.spammers as f64 / c.labelled as f64);
    };
    shadow.iter_mut().for_each(precision);
    live.iter_mut().for_each(precision);
    let mut changes: Vec<DecisionChange> = changes
        .into_iter()
        .map(|((live, shadow), predictions)| DecisionChange {
            live,
            shadow,
            predictions,
        })
        .collect();
    changes.sort_by(|a, b| {
        b.predictions
            .cmp(&a.predictions)
            .then_with(|| (&a.live, &a.shadow).cmp(&(&b.live, &b.shadow)))
    });
    let decided = rows.len() as u64;
    ShadowStats {
        policy_version: policy.version,
        decided,
        agreed,
        agreement: (decided > 0).then(|| agreed as f64 / decided as f64),
        changes,
        outcomes: outcomes
            .into_iter()
            .zip(shadow.into_iter().zip(live))
            .map(|(outcome, (shadow, live))| ShadowOutcome {
                outcome,
                shadow,
                live,
            })
            .collect(),
    }
}

/// The running shadow's numbers from a prediction log and a feedback store (None: no
/// shadow runs).
pub fn running_shadow_stats(
    registry: &Registry,
    log: &crate::store::predictions::PredictionLog,
    labels: &[crate::store::feedback::FeedbackLabel],
) -> Result<Option<ShadowStats>> {
    let Some(n) = registry.policy_pointers()?.shadow else {
        return Ok(None);
    };
    let record = get(registry, n)?.record;
    log.flush()?;
    let rows = log.shadow_rows(n)?;
    Ok(Some(shadow_stats(&record, &rows, labels)))
}

/// The kept policies as the Policies tab shows them: newest first, which is live and
/// which in shadow, and the shadow's numbers.
#[derive(Debug, Clone, Default)]
pub struct PolicyBook {
    pub list: Vec<PolicyEntry>,
    pub live: Option<u32>,
    pub shadow: Option<u32>,
    /// The shadow's agreement and precision (None: no shadow, or none read).
    pub shadow_stats: Option<ShadowStats>,
}

impl PolicyBook {
    /// The live policy's record.
    pub fn live_policy(&self) -> Option<&PolicyEntry> {
        self.live
            .and_then(|n| self.list.iter().find(|e| e.record.version == n))
    }
}

/// The policies of a registry; a shadow's numbers from its prediction log (a service
/// running on the same registry logs them) and the feedback labels.
pub fn book(reg: &Registry) -> Result<PolicyBook> {
    let p = reg.policy_pointers()?;
    let shadow_stats = match p.shadow {
        Some(_) => {
            let log = crate::store::predictions::PredictionLog::open_for(reg, Default::default())?;
            let labels = crate::store::feedback::FeedbackStore::of(reg)?.labels()?;
            running_shadow_stats(reg, &log, &labels)?
        }
        None => None,
    };
    Ok(PolicyBook {
        list: list(reg)?,
        live: p.live,
        shadow: p.shadow,
        shadow_stats,
    })
}

// ---- Labelled history from the stores ----

/// Where to find labelled history besides a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistorySource {
    /// The moderators' feedback records (their values and labels), each account's
    /// label replaced by its confirmed label when it has one.
    Feedback,
    /// The newest predictions of the log (at most this many), labelled where a label
    /// has arrived: the account's confirmed label, else the moderator's label quoting
    /// the prediction, else the newest one on its account.
    Log(usize),
}

/// Most predictions read from the log for a backtest.
pub const MAX_LOG_ROWS: usize = 1_000_000;

/// Accounts from the stores to test a policy on, and their labels where known.
pub struct History {
    pub data: Dataset,
    pub labels: Vec<Option<u8>>,
}

impl History {
    pub fn labelled(&self) -> usize {
        self.labels.iter().flatten().count()
    }
}

/// Builds the history of `source` from `registry`'s stores.
pub fn history(registry: &Registry, source: HistorySource) -> Result<History> {
    use crate::data::catalog::N_FEATURES;
    use std::collections::HashMap;
    let store = crate::store::feedback::FeedbackStore::of(registry)?;
    let confirmed: HashMap<String, u8> = store
        .confirmed_labels()?
        .into_iter()
        .map(|(u, l)| (u.to_string(), l))
        .collect();
    let mut columns: Vec<Vec<f64>> = vec![Vec::new(); N_FEATURES];
    let mut user_ids = Vec::new();
    let mut labels = Vec::new();
    let mut push = |values: &[f64], user: String, label: Option<u8>| {
        for (c, &v) in columns.iter_mut().zip(values) {
            c.push(v);
        }
        user_ids.push(crate::data::UserId::from(user.as_str()));
        labels.push(label);
    };
    let what = match source {
        HistorySource::Feedback => {
            for f in store.records(false)? {
                let r = &f.record;
                if r.features.len() != N_FEATURES {
                    continue;
                }
                let user = r
                    .user_id
                    .as_ref()
                    .map_or_else(|| format!("feedback-{}", f.id), |u| u.to_string());
                let label = confirmed.get(&user).copied().unwrap_or(r.true_label);
                push(&r.features, user, Some(label));
            }
            "feedback records".to_string()
        }
        HistorySource::Log(n) => {
            if n == 0 || n > MAX_LOG_ROWS {
                return Err(Error::Invalid(format!(
                    "a backtest reads 1 to {MAX_LOG_ROWS} predictions of the log (got {n})"
                )));
            }
            let mut by_prediction: HashMap<String, u8> = HashMap::new();
            let mut by_user: HashMap<String, u8> = HashMap::new();
            for l in store.labels()? {
                if let Some(p) = l.prediction_id {
                    by_prediction.insert(p, l.label);
                }
                if let Some(u) = l.user_id {
                    by_user.insert(u, l.label);
                }
            }
            let log =
                crate::store::predictions::PredictionLog::open_for(registry, Default::default())?;
            for r in log.recent(n)?.into_iter().rev() {
                let label = r
                    .user_id
                    .as_ref()
                    .and_then(|u| confirmed.get(u))
                    .or_else(|| by_prediction.get(&r.id))
                    .or_else(|| r.user_id.as_ref().and_then(|u| by_user.get(u)))
                    .copied();
                let user = r.user_id.clone().unwrap_or_else(|| r.id.clone());
                push(&r.features, user, label);
            }
            "the prediction log".to_string()
        }
    };
    if user_ids.is_empty() {
        return Err(Error::Invalid(format!(
            "{} hold no accounts to test a policy on",
            what
        )));
    }
    let hash = crate::util::hash::sha256_hex(
        user_ids
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .join("\n")
            .as_bytes(),
    );
    Ok(History {
        data: Dataset {
            source: crate::data::DataSource {
                kind: crate::data::SourceKind::Csv {
                    path: format!("the registry's {what}"),
                },
                sha256: hash,
            },
            user_ids,
            labels: None,
            columns,
            warnings: Vec::new(),
        },
        labels,
    })
}
