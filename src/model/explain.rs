//! Explanation types shared by every model kind: which features pushed an account's
//! probability up or down. Each model kind computes them its own way (the forest's
//! TreeSHAP and path attribution live in `forest::explain`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    TreeShap,
    PathAttribution,
    /// Additive log-odds models (logistic regression, naive Bayes, boosting): each
    /// feature's exact log-odds term, mapped to probability (see `baselines`).
    LogOdds,
    /// Models without additive structure (KNN): the change in probability when the
    /// feature is set to its training mean. Not additive.
    Occlusion,
    /// An ensemble's (soft vote's): the mean of its members' explanations, each by its
    /// member's own method; adds up to the ensemble's probability.
    Members,
    /// A hard vote's: the mean of its members' explanations of their probabilities. The
    /// vote counts members over one half, a step no explanation adds up to.
    HardVote,
    /// Stacking's: its members' explanations weighted by its final logistic regression
    /// (exact log-odds terms where theirs are exact), scaled to probability; adds up.
    Stacked,
}

impl Method {
    /// Whether the contributions add up to the prediction from the base.
    pub fn additive(self) -> bool {
        !matches!(self, Method::Occlusion | Method::HardVote)
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::TreeShap => "TreeSHAP (exact, path-dependent)",
            Method::PathAttribution => "path attribution (Saabas)",
            Method::LogOdds => "exact log-odds terms (scaled to probability)",
            Method::Occlusion => "occlusion (approximate, not additive)",
            Method::Members => {
                "mean of the members' explanations (TreeSHAP, exact log-odds terms; adds up)"
            }
            Method::HardVote => {
                "mean of the members' explanations of their probabilities; the vote counts members over 50%, so not additive"
            }
            Method::Stacked => {
                "members' explanations weighted by the stacking regression (log-odds terms, scaled to probability; adds up)"
            }
        }
    }
}

/// An additive explanation of one prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub method: Method,
    /// Expected probability over the training data (the model's average output).
    pub base: f64,
    /// One contribution per feature.
    pub contributions: Vec<f64>,
    /// The explained probability: `base + sum(contributions)`.
    pub prediction: f64,
}

impl Explanation {
    /// Feature indices by decreasing absolute contribution.
    pub fn ranked(&self) -> Vec<usize> {
        rank_by_magnitude(&self.contributions)
    }

    /// The `k` largest contributions by absolute value: (feature, contribution).
    pub fn top(&self, k: usize) -> Vec<(usize, f64)> {
        self.ranked()
            .into_iter()
            .take(k)
            .map(|f| (f, self.contributions[f]))
            .collect()
    }
}

/// Indices of `contributions` by decreasing absolute value (ties: lower index first).
pub fn rank_by_magnitude(contributions: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..contributions.len()).collect();
    idx.sort_by(|&a, &b| {
        contributions[b]
            .abs()
            .total_cmp(&contributions[a].abs())
            .then(a.cmp(&b))
    });
    idx
}
