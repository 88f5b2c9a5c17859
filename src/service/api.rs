//! The service's request and response types. Handlers return these (serialized by
//! serde) and name them in their `#[utoipa::path]` annotations, so `GET /openapi.json`
//! is derived from the same definitions that produce the responses.
//!
//! Requests are parsed by hand from JSON (so each error names its field, e.g.
//! `[3].features.X7`); the request types here document that shape, and a test posts
//! each documented example to its route.

use crate::ops::predict::RiskFactor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// One account to score: the 51 column ids (`X1`..`X51`) or catalog names, each a
/// number or null (missing, imputed with the version's median).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"features": {"X1": 86400.0, "X2": 40.0, "X7": 0.0, "X12": 1.0}, "user_id": "u-1001"}))]
pub struct PredictRequest {
    pub features: BTreeMap<String, Option<f64>>,
    /// The marketplace's account id (text, at most 256 bytes), kept with the logged
    /// prediction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// One feature's share of a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Contribution {
    /// Column id, `X1`..`X51`.
    pub feature: String,
    /// Catalog name.
    pub name: String,
    /// The value scored (after imputation).
    pub value: f64,
    /// Probability points this feature added (negative: removed).
    pub contribution: f64,
}

/// A scored account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PredictResponse {
    /// 1: spammer, 0: legitimate.
    pub prediction: u8,
    /// Probability of being a spammer, calibrated on the version's held-out accounts
    /// (the raw score for a version trained before calibration: see `calibrated`).
    pub probability: f64,
    /// The model's raw score; the verdict is `score > threshold`.
    pub score: f64,
    /// Whether `probability` is calibrated.
    pub calibrated: bool,
    pub is_spammer: bool,
    /// The published risk indicators this account meets.
    pub risk_factors: Vec<RiskFactor>,
    /// Quote it in `POST /feedback`.
    pub prediction_id: String,
    /// The version that produced this answer.
    pub model_version: u32,
    /// A raw score strictly above it is a spammer.
    pub threshold: f64,
    /// Top contributions by magnitude (`?explain=`).
    pub contributions: Vec<Contribution>,
    /// How the contributions were computed; null without contributions.
    pub explanation_method: Option<String>,
    /// Column ids that were missing and imputed.
    pub imputed: Vec<String>,
    /// The live decision policy's outcome (`allow`, `review`, `block` or a team's own);
    /// null while no policy is published.
    #[serde(default)]
    pub decision: Option<String>,
    /// The names of the policy's rules that matched, in the policy's order.
    #[serde(default)]
    pub matched_rules: Vec<String>,
    /// The policy that decided; null while no policy is published.
    #[serde(default)]
    pub policy_version: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `healthy` when the service answers.
    pub status: String,
    /// spamscope's version.
    pub version: String,
    pub model_version: u32,
    pub uptime_seconds: f64,
}

/// `GET /health/ready`: whether this replica should get traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    /// `ready`, or `not ready` (answered with 503).
    pub status: String,
    /// The version loaded and answering.
    pub model_version: u32,
    /// `folder` or `postgres`: where the registry is kept.
    pub store: String,
    /// Why it is not ready (the store does not answer...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A version's metrics on its holdout; ROC-AUC and average precision are null when
/// the model gives no scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelMetrics {
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Same as `f1` (the reference's name).
    pub f1_score: f64,
    pub roc_auc: Option<f64>,
    pub average_precision: Option<f64>,
}

impl From<&crate::eval::metrics::Metrics> for ModelMetrics {
    fn from(m: &crate::eval::metrics::Metrics) -> ModelMetrics {
        let finite = |x: f64| x.is_finite().then_some(x);
        ModelMetrics {
            accuracy: m.accuracy,
            precision: m.precision,
            recall: m.recall,
            f1: m.f1,
            f1_score: m.f1,
            roc_auc: finite(m.roc_auc),
            average_precision: finite(m.average_precision),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelVersion {
    pub version: u32,
    /// When the version was trained (RFC 3339).
    pub last_updated: String,
    pub metrics: ModelMetrics,
    pub threshold: f64,
    pub model_kind: String,
}

/// The reference's kinds of feature.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FeatureType {
    Numeric,
    Categorical,
    Boolean,
}

/// One column of the feature catalog, with the active version's importance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeatureInfo {
    pub name: String,
    pub label: String,
    pub description: String,
    pub category: String,
    #[serde(rename = "type")]
    pub kind: FeatureType,
    pub importance: f64,
    pub min: f64,
    pub max: f64,
    /// Names of an ordinal code's levels, from 0.
    pub levels: Vec<String>,
    /// The value imputed when the feature is missing.
    pub median: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelInfo {
    pub metrics: ModelMetrics,
    /// By column id.
    pub feature_mapping: BTreeMap<String, FeatureInfo>,
    pub categories: Vec<String>,
    pub model_version: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionFeedback {
    /// Null for feedback on accounts no version scored.
    pub model_version: Option<u32>,
    pub total: u64,
    /// Records that carry this version's verdict.
    #[serde(default)]
    pub judged: u64,
    /// Of those, the ones where the verdict matched the moderator.
    pub correct: u64,
    /// `correct / judged`, null without any judged record.
    #[serde(default)]
    pub agreement: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeedbackStats {
    /// Feedback records with the account's features (what `spamscope feedback stats`
    /// counts as `total`); unlinked feedback is counted beside, in `unlinked_feedback`.
    pub total_feedback: u64,
    /// Of those, records that carry the model's verdict.
    #[serde(default)]
    pub judged: u64,
    /// Of the judged records, those where the model's verdict matched the moderator.
    pub correct_predictions: u64,
    /// `correct_predictions / judged` (0 without any judged record; the reference's
    /// field).
    pub accuracy: f64,
    /// The same share, null without any judged record (the CLI's `agreement`).
    #[serde(default)]
    pub agreement: Option<f64>,
    /// Feedback quoting a prediction id this service never logged (no features, no
    /// verdict of ours): not in the counts above.
    pub unlinked_feedback: u64,
    /// Of those, the ones saying the model was right.
    #[serde(default)]
    pub unlinked_correct: u64,
    /// When the newest version made from feedback was trained (or the active version,
    /// before any retrain): ISO 8601 with an offset.
    pub last_retrain: String,
    pub by_version: Vec<VersionFeedback>,
    /// Who said what (records with features; feedback on unknown predictions is not
    /// counted here).
    pub by_moderator: Vec<ModeratorFeedback>,
}

/// One moderator's feedback.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModeratorFeedback {
    /// The token's name; null for records given without one (the app, imports).
    pub moderator: Option<String>,
    pub total: u64,
    /// Share of their records carrying a verdict where the model agreed with them.
    pub agreement_with_model: Option<f64>,
    /// Pairs of their records with another moderator's on the same account.
    pub pairs_with_others: u64,
    /// Share of those pairs with the same label.
    pub agreement_with_others: Option<f64>,
    /// Their records on accounts whose final label someone else confirmed.
    pub confirmed: u64,
    /// Share of those records with the confirmed label.
    pub agreement_with_confirmed: Option<f64>,
    /// 0 to 1: agreement with the confirmed labels, shrunk toward their agreement with
    /// the others, itself shrunk toward the team's (see docs/team.md); null when there
    /// is nothing to compare.
    pub trust: Option<f64>,
}

/// A registry version.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct VersionRow {
    pub version: u32,
    /// `active`, `promoted`, `rejected`, ... or `unreadable`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<ModelMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_used: Option<usize>,
    /// The gate's or the operator's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What it was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_rows: Option<usize>,
    /// Its decision threshold (spam strictly above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Why an unreadable version cannot be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&crate::ops::versions::Listed> for VersionRow {
    /// The one shape of a listed version, for the service and the command line.
    fn from(l: &crate::ops::versions::Listed) -> VersionRow {
        match &l.manifest {
            Ok(m) => VersionRow {
                version: l.version,
                status: l.status.to_string(),
                parent: m.parent,
                created_at: Some(m.created_at.clone()),
                active: Some(l.active),
                model_kind: Some(m.model_kind()),
                metrics: Some((&m.metrics).into()),
                feedback_used: Some(m.feedback_used),
                reason: l.reason.clone(),
                data: Some(m.data.describe()),
                train_rows: Some(m.train_rows),
                threshold: Some(m.threshold),
                error: None,
            },
            Err(e) => VersionRow {
                version: l.version,
                status: l.status.to_string(),
                active: Some(l.active),
                error: Some(e.clone()),
                ..Default::default()
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Versions {
    pub versions: Vec<VersionRow>,
    /// The version answering requests now.
    pub serving: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"to": 1}))]
pub struct RollbackRequest {
    /// The version to make active.
    pub to: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RollbackResponse {
    pub model_version: u32,
    pub message: String,
}

/// The reference's feedback on a prediction it answered.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"prediction_id": "p-0123456789abcdef0123456789abcdef", "is_correct": false, "actual_label": 1, "feedback_notes": "sent a malware brief"}))]
pub struct PredictionFeedback {
    /// The `prediction_id` of a `/predict` answer.
    pub prediction_id: String,
    pub is_correct: bool,
    /// 0/1 or false/true; by default the opposite of the prediction when not correct.
    #[serde(default)]
    pub actual_label: Option<u8>,
    #[serde(default)]
    pub feedback_notes: Option<String>,
}

/// Feedback on an account scored elsewhere.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"features": {"X1": 3600.0, "X2": 120.0, "X12": 1.0}, "label": 1, "notes": "confirmed scam"}))]
pub struct AccountFeedback {
    pub features: BTreeMap<String, Option<f64>>,
    /// 0/1 or false/true.
    pub label: u8,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum FeedbackRequest {
    Prediction(PredictionFeedback),
    Account(AccountFeedback),
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeedbackResponse {
    /// `success`, or `accepted` for an unknown prediction id.
    pub status: String,
    pub message: String,
    pub feedback_id: i64,
    /// False when the prediction id is unknown: the feedback has no features and
    /// counts only in the statistics.
    pub linked: bool,
    /// The label stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<u8>,
    /// Why an automatic retrain is now due, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrain_due: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobAccepted {
    pub job_id: u64,
    pub status: String,
    /// Where to follow it.
    pub poll: String,
}

/// What a finished retrain did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RetrainResult {
    pub candidate_version: u32,
    pub promoted: bool,
    pub reason: String,
    pub feedback_train: usize,
    pub feedback_holdout: usize,
    pub metrics: ModelMetrics,
    /// The held-out feedback by moderator: how each version did on their records.
    pub by_moderator: Vec<ModeratorGate>,
}

impl From<&crate::ops::online::Outcome> for RetrainResult {
    fn from(o: &crate::ops::online::Outcome) -> RetrainResult {
        RetrainResult {
            candidate_version: o.candidate.version,
            promoted: o.promoted,
            reason: o.reason.clone(),
            feedback_train: o.feedback_train,
            feedback_holdout: o.feedback_holdout,
            metrics: (&o.candidate.metrics).into(),
            by_moderator: o
                .by_moderator
                .iter()
                .map(|m| ModeratorGate {
                    moderator: m.moderator.clone(),
                    records: m.candidate.records,
                    accuracy_active: m.active.accuracy,
                    accuracy_candidate: m.candidate.accuracy,
                    brier_active: m.active.brier,
                    brier_candidate: m.candidate.brier,
                })
                .collect(),
        }
    }
}

/// One moderator's held-out feedback in a retrain's gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModeratorGate {
    /// Null: records given without a moderator.
    pub moderator: Option<String>,
    pub records: usize,
    pub accuracy_active: f64,
    pub accuracy_candidate: f64,
    pub brier_active: f64,
    pub brier_candidate: f64,
}

/// A retrain started through `POST /model/retrain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: u64,
    pub kind: String,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    pub stage: String,
    pub done: usize,
    pub total: usize,
    pub started_by: String,
    pub result: Option<RetrainResult>,
    pub error: Option<String>,
}

/// Confirms an account's final label (`POST /accounts/{user_id}/label`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"label": 1, "notes": "malware brief confirmed by the security team"}))]
pub struct ConfirmLabelRequest {
    /// 1: spammer, 0: legitimate (or true/false).
    pub label: u8,
    #[serde(default)]
    pub notes: Option<String>,
}

/// An account's confirmed final label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConfirmedLabel {
    pub user_id: String,
    /// 1: spammer, 0: legitimate.
    pub label: u8,
    /// The token name of who confirmed it (last).
    pub confirmed_by: String,
    /// RFC 3339, UTC.
    pub confirmed_at: String,
    pub notes: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfirmLabelResponse {
    pub confirmed: ConfirmedLabel,
    /// The confirmation this one replaced, if any.
    pub replaced: Option<ConfirmedLabel>,
}

/// A feedback record on an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AccountReview {
    pub feedback_id: i64,
    /// The token name; null for records given without one (the app, imports).
    pub moderator: Option<String>,
    /// The label the moderator gave: 1 spammer, 0 legitimate.
    pub label: u8,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The model's verdict (1/0), raw score (the verdict is `score > threshold`; the
    /// field keeps the reference's name) and version when the feedback was given.
    pub model_verdict: Option<u8>,
    pub probability: Option<f64>,
    pub model_version: Option<u32>,
}

/// Who is reviewing an account now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReviewClaim {
    pub moderator: String,
    /// RFC 3339, UTC.
    pub claimed_at: String,
    pub expires_at: String,
}

/// One account for the team: its confirmed label, its unexpired review claim and the
/// feedback records on it (oldest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AccountStatus {
    pub user_id: String,
    pub confirmed: Option<ConfirmedLabel>,
    pub claim: Option<ReviewClaim>,
    pub reviews: Vec<AccountReview>,
    /// The account's newest logged predictions (at most 100), newest first: what the
    /// model said and what the decision policies decided. With `reviews` and
    /// `confirmed`, the account's history in one place.
    #[serde(default)]
    pub decisions: Vec<LoggedDecision>,
}

/// A logged prediction of an account and its decisions (`GET /accounts/{user_id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LoggedDecision {
    pub prediction_id: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Who asked (the token's name).
    pub caller: String,
    pub model_version: u32,
    /// The raw score.
    pub score: f64,
    /// The live policy's decision, its rules and version (null: no policy was live).
    pub decision: Option<String>,
    pub matched_rules: Vec<String>,
    pub policy_version: Option<u32>,
    /// What a shadow policy would have decided, and which (null: none ran).
    pub shadow_decision: Option<String>,
    pub shadow_policy_version: Option<u32>,
}

/// A live decision as answers carry it: the decision, the rules that matched and the
/// policy version (null, empty and null without one).
pub fn decision_fields(
    d: Option<crate::store::predictions::DecisionTag>,
) -> (Option<String>, Vec<String>, Option<u32>) {
    match d {
        Some(d) => (Some(d.decision), d.matched_rules, Some(d.policy_version)),
        None => (None, Vec::new(), None),
    }
}

impl From<crate::store::predictions::PredictionRecord> for LoggedDecision {
    fn from(r: crate::store::predictions::PredictionRecord) -> LoggedDecision {
        let (decision, matched_rules, policy_version) = decision_fields(r.decision);
        LoggedDecision {
            prediction_id: r.id,
            created_at: r.created_at,
            caller: r.caller,
            model_version: r.version,
            score: r.score,
            decision,
            matched_rules,
            policy_version,
            shadow_decision: r.shadow.as_ref().map(|d| d.decision.clone()),
            shadow_policy_version: r.shadow.map(|d| d.policy_version),
        }
    }
}

/// The kept decision policies (`GET /policies`), newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyList {
    /// The policy deciding requests (null: none published).
    pub live: Option<u32>,
    /// The policy running in shadow (null: none).
    pub shadow: Option<u32>,
    pub policies: Vec<crate::ops::policy::PolicyEntry>,
}

/// A new draft policy (`POST /policies`): outcomes from least to most severe (default
/// allow, review, block) and rules of a name, a CEL condition and an outcome.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"rules": [{"name": "very likely", "when": "probability >= 0.9", "outcome": "block"}], "note": "block the clearest cases"}))]
pub struct PolicyDraft {
    #[serde(default)]
    pub outcomes: Option<Vec<String>>,
    pub rules: Vec<crate::eval::policy::Rule>,
    #[serde(default)]
    pub note: Option<String>,
}

/// One kept policy and what it changes against the live one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyDetail {
    pub policy: crate::ops::policy::PolicyEntry,
    /// The live policy it is compared with (null: none was live).
    pub against: Option<u32>,
    pub diff: crate::ops::policy::PolicyDiff,
}

/// The shadow policy and how it does (`GET /policies/shadow`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShadowStatus {
    pub running: bool,
    pub live: Option<u32>,
    pub shadow: Option<u32>,
    /// Agreement with the live policy and precision per outcome on labelled
    /// predictions, over every prediction the shadow decided.
    pub stats: Option<crate::ops::policy::ShadowStats>,
    pub message: String,
}

/// One account of the team's recent traffic (`GET /review/queue`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrafficAccount {
    /// The live policy's decision on this prediction, the rules that matched and the
    /// policy (null / empty without a policy).
    #[serde(default)]
    pub decision: Option<String>,
    #[serde(default)]
    pub matched_rules: Vec<String>,
    #[serde(default)]
    pub policy_version: Option<u32>,
    /// Who is reviewing the account now (`?source=decisions` only).
    #[serde(default)]
    pub claimed_by: Option<String>,
    /// The account's user id, or the prediction id when the request had none.
    pub user_id: String,
    pub prediction_id: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub model_version: u32,
    /// The calibrated probability when the version is being served (active or in an
    /// experiment), else the raw score (see `calibrated`).
    pub probability: f64,
    /// The raw score logged when it was scored.
    pub score: f64,
    pub calibrated: bool,
    /// The 51 values `X1`..`X51` as requested (null: missing).
    pub features: Vec<Option<f64>>,
}

/// The team's recent traffic, newest first, one row per account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrafficQueue {
    pub accounts: Vec<TrafficAccount>,
    /// `?source=decisions`: accounts waiting in all, and how long ago the oldest of
    /// them was decided (seconds).
    #[serde(default)]
    pub waiting: Option<u64>,
    #[serde(default)]
    pub oldest_waiting_seconds: Option<f64>,
}

/// Claims accounts for review (`POST /review/claims`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"user_ids": ["u-1001", "u-1002"], "ttl_seconds": 900}))]
pub struct ClaimRequest {
    /// 1 to 1,000 user ids.
    pub user_ids: Vec<String>,
    /// How long the claims last, 1 to 86,400 s; default 900.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// A claim someone else holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeldClaim {
    pub user_id: String,
    pub moderator: String,
    /// RFC 3339, UTC.
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClaimResponse {
    /// Now claimed by the caller (new, taken over after expiry, or renewed).
    pub granted: Vec<String>,
    /// Held by another moderator.
    pub held: Vec<HeldClaim>,
}

/// Accounts to release (`DELETE /review/claims`) or look up (`POST /review/status`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"user_ids": ["u-1001", "u-1002"]}))]
pub struct UserIdsRequest {
    /// 1 to 1,000 user ids.
    pub user_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReleaseResponse {
    /// How many of the caller's claims were released.
    pub released: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewStatus {
    /// One per distinct requested id, in request order.
    pub accounts: Vec<AccountStatus>,
}

impl From<crate::store::review::ConfirmedLabel> for ConfirmedLabel {
    fn from(c: crate::store::review::ConfirmedLabel) -> ConfirmedLabel {
        ConfirmedLabel {
            user_id: c.user_id.to_string(),
            label: c.label,
            confirmed_by: c.confirmed_by,
            confirmed_at: c.confirmed_at,
            notes: c.notes,
        }
    }
}

impl From<crate::store::review::AccountStatus> for AccountStatus {
    fn from(a: crate::store::review::AccountStatus) -> AccountStatus {
        AccountStatus {
            user_id: a.user_id.to_string(),
            confirmed: a.confirmed.map(Into::into),
            claim: a.claim.map(|c| ReviewClaim {
                moderator: c.moderator,
                claimed_at: c.claimed_at,
                expires_at: c.expires_at,
            }),
            reviews: a
                .reviews
                .into_iter()
                .map(|r| AccountReview {
                    feedback_id: r.id,
                    moderator: r.moderator,
                    label: r.label,
                    created_at: r.created_at,
                    model_verdict: r.predicted,
                    probability: r.probability,
                    model_version: r.model_version,
                })
                .collect(),
            decisions: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `not_json`, `wrong_type`, `unknown_feature`, `invalid_value`.
    pub code: String,
    pub message: String,
    /// The field at fault, e.g. `features.X7` or `[3].features.X7`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Every error: `detail` repeats the message, where FastAPI clients look for it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    pub detail: String,
}

/// `POST /model/experiment`: run `version` beside the active version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"version": 2, "mode": "canary", "share": 0.1}))]
pub struct ExperimentRequest {
    /// A registry version other than the active one.
    pub version: u32,
    /// `shadow` (both versions score every request, the active one answers) or
    /// `canary` (the candidate answers `share` of the users).
    pub mode: String,
    /// Canary: above 0 and at most 1 (required). Ignored for a shadow.
    #[serde(default)]
    pub share: Option<f64>,
}

/// An experiment's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExperimentInfo {
    pub id: String,
    /// `shadow` or `canary`.
    pub mode: String,
    pub candidate_version: u32,
    /// The version answering requests now (besides the candidate's canary share).
    pub active_version: u32,
    /// The active version when the experiment started.
    pub baseline_version: u32,
    /// Canary share; null for a shadow.
    pub share: Option<f64>,
    pub started_at: String,
    pub started_by: String,
}

/// One version's side of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExperimentVersion {
    pub version: u32,
    pub candidate: bool,
    /// Requests it answered.
    pub answered: u64,
    /// Requests it scored (answered, or beside the answer).
    pub scored: u64,
    pub mean_probability: Option<f64>,
    /// Its probabilities in 10 equal bins from 0 to 1.
    pub histogram: Vec<u64>,
    /// Scored requests on accounts moderators labelled (by prediction id, else user
    /// id), and how many its verdict got right.
    pub labelled: u64,
    pub correct: u64,
    pub accuracy: Option<f64>,
}

/// An experiment's numbers from its logged predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExperimentStats {
    pub requests: u64,
    pub answered_by_active: u64,
    pub answered_by_candidate: u64,
    /// Requests both versions scored, and those where their verdicts agreed.
    pub both_scored: u64,
    pub agreed: u64,
    #[serde(default)]
    pub agreement: Option<f64>,
    pub versions: Vec<ExperimentVersion>,
}

/// The running experiment and its numbers; `running: false` and nulls when none runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExperimentStatus {
    pub running: bool,
    pub experiment: Option<ExperimentInfo>,
    pub stats: Option<ExperimentStats>,
    pub message: String,
}

/// The candidate made active.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExperimentPromoted {
    pub model_version: u32,
    pub message: String,
    pub experiment: ExperimentInfo,
}

impl From<crate::ops::experiment::Stats> for ExperimentStats {
    fn from(s: crate::ops::experiment::Stats) -> ExperimentStats {
        ExperimentStats {
            requests: s.requests,
            answered_by_active: s.answered_by_active,
            answered_by_candidate: s.answered_by_candidate,
            both_scored: s.both_scored,
            agreed: s.agreed,
            agreement: s.agreement,
            versions: s
                .versions
                .into_iter()
                .map(|v| ExperimentVersion {
                    version: v.version,
                    candidate: v.candidate,
                    answered: v.answered,
                    scored: v.scored,
                    mean_probability: v.mean_probability,
                    histogram: v.histogram,
                    labelled: v.labelled,
                    correct: v.correct,
                    accuracy: v.accuracy,
                })
                .collect(),
        }
    }
}

impl ExperimentInfo {
    pub fn new(e: &crate::ops::experiment::Experiment, active: u32) -> ExperimentInfo {
        ExperimentInfo {
            id: e.id.clone(),
            mode: e.mode.name().into(),
            candidate_version: e.candidate,
            active_version: active,
            baseline_version: e.baseline,
            share: e.share,
            started_at: e.started_at.clone(),
            started_by: e.started_by.clone(),
        }
    }
}
