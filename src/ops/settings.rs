//! The online-learning settings (`online.ron` in the registry): what a retrain does and
//! when one is due, where alerts go; their bounds, checked when the file is read and
//! written.

use crate::model::forest::ForestParams;
use crate::ops::error::{Error, Result};
use crate::store::{Document, Registry};
use serde::{Deserialize, Serialize};

/// Fewer new records than this make a retrain meaningless.
pub const MIN_NEW_RECORDS: usize = 10;
/// Upper bounds of the settings (documented in the README): larger values are refused
/// when the file is read and in the Settings panel.
pub const MAX_BATCH: usize = 1_000_000;
pub const MAX_MIN_SAMPLES: usize = 100_000_000;
pub const MAX_INTERVAL: u64 = 10 * 365 * 24 * 3600;
pub const MAX_FEEDBACK_WEIGHT: f64 = 1000.0;

/// Online-learning settings (`online.ron` in the registry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OnlineLearningConfig {
    /// The store checks the automatic-retrain condition every `batch_size` new records
    /// (and imports commit feedback in batches of this size).
    pub batch_size: usize,
    /// New feedback records needed before an automatic retrain.
    pub min_samples: usize,
    /// Seconds that must pass between automatic retrains.
    pub retrain_interval: u64,
    /// How much a feedback record counts relative to a base-data row.
    pub feedback_weight: f64,
    /// Promotion gate: largest allowed drop of ROC-AUC on the base holdout.
    pub max_auc_drop: f64,
    /// Share of the new feedback held out to judge the candidate on corrected cases.
    pub feedback_holdout: f64,
    /// Brier-score differences on held-out feedback up to this size count as a tie
    /// (noise), not as "worse".
    pub feedback_tolerance: f64,
    /// Retrain automatically when the conditions hold.
    pub auto_retrain: bool,
    /// Weight each feedback record also by its moderator's trust (agreement with the
    /// other moderators, see [`crate::ops::trust::trust`]); records without a
    /// moderator keep their weight. Off by default.
    pub trust_weighting: bool,
    /// Forest parameters of retrained versions.
    pub forest: ForestParams,
    /// Where alerts are POSTed (http or https), if anywhere: the service's watcher and
    /// the app's monitoring send them through [`crate::ops::alert::WebhookSender`].
    /// Absent in older files (None).
    pub webhook_url: Option<String>,
}

impl Default for OnlineLearningConfig {
    fn default() -> Self {
        OnlineLearningConfig {
            batch_size: 100,
            min_samples: 1000,
            retrain_interval: 3600,
            feedback_weight: 5.0,
            max_auc_drop: 0.005,
            feedback_holdout: 0.2,
            feedback_tolerance: 0.001,
            auto_retrain: true,
            trust_weighting: false,
            forest: ForestParams::default(),
            webhook_url: None,
        }
    }
}

impl OnlineLearningConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(format!("online learning settings: {m}")));
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return bad(format!("batch_size must be between 1 and {MAX_BATCH}"));
        }
        if !(MIN_NEW_RECORDS..=MAX_MIN_SAMPLES).contains(&self.min_samples) {
            return bad(format!(
                "min_samples must be between {MIN_NEW_RECORDS} and {MAX_MIN_SAMPLES}"
            ));
        }
        if self.retrain_interval > MAX_INTERVAL {
            return bad(format!(
                "retrain_interval must be at most {MAX_INTERVAL} s (ten years)"
            ));
        }
        if !(self.feedback_weight.is_finite()
            && self.feedback_weight > 0.0
            && self.feedback_weight <= MAX_FEEDBACK_WEIGHT)
        {
            return bad(format!(
                "feedback_weight must be a number above 0 and at most {MAX_FEEDBACK_WEIGHT}"
            ));
        }
        if !(self.max_auc_drop.is_finite() && (0.0..=1.0).contains(&self.max_auc_drop)) {
            return bad("max_auc_drop must be between 0 and 1".into());
        }
        if !(self.feedback_holdout > 0.0 && self.feedback_holdout < 1.0) {
            return bad("feedback_holdout must be between 0 and 1 (exclusive)".into());
        }
        if !(self.feedback_tolerance.is_finite() && (0.0..=1.0).contains(&self.feedback_tolerance))
        {
            return bad("feedback_tolerance must be between 0 and 1".into());
        }
        if let Some(url) = &self.webhook_url {
            crate::util::url::check_webhook_url(url).map_err(|e| {
                Error::Invalid(format!("online learning settings: webhook_url: {e}"))
            })?;
        }
        self.forest.validate()?;
        Ok(())
    }

    /// Reads the registry's settings (defaults when the file does not exist yet).
    pub fn load(registry: &Registry) -> Result<OnlineLearningConfig> {
        let Some(text) = registry.read_document(Document::OnlineSettings)? else {
            return Ok(Self::default());
        };
        let place = || registry.document_place(Document::OnlineSettings);
        let c: OnlineLearningConfig = ron::from_str(&text)
            .map_err(|e| Error::at(place(), format!("unreadable settings: {e}")))?;
        c.validate()
            .map_err(|e| Error::at(place(), e.to_string()))?;
        Ok(c)
    }

    /// Validates and writes the settings atomically.
    pub fn save(&self, registry: &Registry) -> Result<()> {
        self.validate()?;
        let text = ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::new())
            .expect("settings serialise");
        registry.write_document(Document::OnlineSettings, &text)?;
        Ok(())
    }
}
