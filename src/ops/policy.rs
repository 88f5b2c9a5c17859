//! Policies as a team works with them: check a policy file, and test a draft on labelled
//! history (every account scored by a model version, the draft's decisions and each
//! rule's record, what changes against the live policy, the review load it implies).

use crate::data::Dataset;
use crate::eval::policy::{Backtest, CompiledPolicy, Policy, PolicyError, Signals};
use crate::model::Model;
use crate::model::explain::Method;
use crate::ops::error::{Error, Result};
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
    let labels: Vec<Option<u8>> = match &d.labels {
        Some(l) => l.iter().map(|&v| Some(v)).collect(),
        None => vec![None; d.n_rows()],
    };
    reporter.stage("running the policy", 0, 1);
    let start = Instant::now();
    let columns: Vec<&[f64]> = d.columns.iter().map(Vec::as_slice).collect();
    let s = Signals {
        columns: &columns,
        probability: &scored.probability,
        score: &scored.score,
    };
    let backtest = Backtest::run(draft, live, &s, &labels)?;
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
