//! Scoring one account given as named values, as the service's `/predict` receives it:
//! the names are resolved through the feature catalog, values are checked against its
//! bounds, missing values are imputed with the version's medians (and listed), and the
//! answer carries the verdict, the published risk indicators that apply and the largest
//! contributions.

use crate::data::catalog::{N_FEATURES, catalog};
use crate::model::Model;
use crate::model::explain::Method;
use crate::store::Manifest;

/// Why a request's features cannot be scored; `field` names the offending key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeatureError {
    #[error("unknown feature {name} (expected X1..X51 or a catalog name)")]
    Unknown { name: String },
    #[error("feature {id} is given twice (as {first} and {second})")]
    Duplicate {
        id: String,
        first: String,
        second: String,
    },
    #[error("feature {id}: {message}")]
    Invalid { id: String, message: String },
    #[error("missing required features: {}", .ids.join(", "))]
    Missing { ids: Vec<String> },
}

impl FeatureError {
    /// The request field the error is about.
    pub fn field(&self) -> Option<String> {
        match self {
            FeatureError::Unknown { name } => Some(format!("features.{name}")),
            FeatureError::Duplicate { second, .. } => Some(format!("features.{second}")),
            FeatureError::Invalid { id, .. } => Some(format!("features.{id}")),
            FeatureError::Missing { ids } => ids.first().map(|id| format!("features.{id}")),
        }
    }
}

/// One account's 51 values (NaN = missing, to be imputed) and which were missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub values: Vec<f64>,
    /// Indices of the features the request did not give.
    pub missing: Vec<usize>,
}

/// The catalog index of a request key: a column id (`X7`, any case) or a catalog name
/// (`VerificationLevel`, any case).
pub fn resolve(name: &str) -> Option<usize> {
    let cat = catalog();
    // The common case, a column id: `Xn` is the n-th feature of the catalog.
    if let Some(n) = name
        .strip_prefix(['X', 'x'])
        .and_then(|d| d.parse::<usize>().ok())
        && let Some(f) = n.checked_sub(1).and_then(|i| cat.features.get(i))
        && f.id.eq_ignore_ascii_case(name)
    {
        return Some(n - 1);
    }
    cat.features
        .iter()
        .position(|f| f.id.eq_ignore_ascii_case(name) || f.name.eq_ignore_ascii_case(name))
}

/// Builds an account from (key, value) pairs. Values must be within the catalog's
/// bounds (finite, in range, whole where the kind is); `strict` refuses missing
/// features as the reference service did.
pub fn account<'a>(
    pairs: impl IntoIterator<Item = (&'a str, f64)>,
    strict: bool,
) -> Result<Account, FeatureError> {
    let cat = catalog();
    let mut values = vec![f64::NAN; N_FEATURES];
    let mut given: Vec<Option<&'a str>> = vec![None; N_FEATURES];
    for (key, v) in pairs {
        let Some(i) = resolve(key) else {
            return Err(FeatureError::Unknown {
                name: crate::util::text::clip(key),
            });
        };
        let f = &cat.features[i];
        if let Some(first) = given[i] {
            return Err(FeatureError::Duplicate {
                id: f.id.clone(),
                first: crate::util::text::clip(first),
                second: crate::util::text::clip(key),
            });
        }
        f.check(v).map_err(|e| FeatureError::Invalid {
            id: f.id.clone(),
            message: format!("{e} (got {v})"),
        })?;
        given[i] = Some(key);
        values[i] = v;
    }
    let missing: Vec<usize> = (0..N_FEATURES).filter(|&i| given[i].is_none()).collect();
    if strict && !missing.is_empty() {
        return Err(FeatureError::Missing {
            ids: missing
                .iter()
                .map(|&i| cat.features[i].id.clone())
                .collect(),
        });
    }
    Ok(Account { values, missing })
}

/// A published risk indicator that applies to an account (the reference service's
/// `risk_factors` entries: every value a string).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RiskFactor {
    pub feature: String,
    pub description: String,
    pub category: String,
    pub value: String,
    pub reason: String,
}

/// The catalog's published risk indicators that `values` meet (missing values meet
/// none), in catalog order. The score screen and the service show the same list.
pub fn risk_factors(values: &[f64]) -> Vec<RiskFactor> {
    catalog()
        .features
        .iter()
        .zip(values)
        .filter_map(|(f, &v)| {
            let rule = f.risk.as_ref()?;
            rule.matches(v).then(|| RiskFactor {
                feature: f.id.clone(),
                description: f.description.clone(),
                category: f.category.clone(),
                value: format_value(v),
                reason: rule.text.clone(),
            })
        })
        .collect()
}

/// A value as the reference printed it (`1.0`, `27.5`).
fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Which contributions to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Explain {
    None,
    /// The `k` largest path-attribution contributions (fast).
    Top(usize),
    /// The `k` largest exact contributions (TreeSHAP for forests; slower).
    Exact(usize),
}

/// A scored account.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The model's raw score; the verdict compares it with the threshold.
    pub score: f64,
    /// The calibrated probability of spam (the raw score for a version without
    /// calibration).
    pub probability: f64,
    /// Whether `probability` is calibrated.
    pub calibrated: bool,
    pub is_spammer: bool,
    pub threshold: f64,
    pub version: u32,
    /// How `contributions` were computed (None when none were asked for or the model
    /// cannot afford them per request).
    pub method: Option<Method>,
    /// (feature index, contribution), largest magnitude first.
    pub contributions: Vec<(usize, f64)>,
    pub risk_factors: Vec<RiskFactor>,
}

/// Scores one account with a version (`manifest`'s threshold decides the verdict:
/// strictly above is a spammer).
pub fn predict(model: &Model, manifest: &Manifest, a: &Account, explain: Explain) -> Prediction {
    // Trace spans (the service's; recorded only when tracing is on).
    use crate::util::TRACE_TARGET as T;
    let (score, method, contributions) = match explain {
        Explain::Top(k) if k > 0 && model.bulk_reasons() => {
            // Probability and reasons from one walk of the trees.
            let _s = tracing::info_span!(target: T, "score_and_explain").entered();
            let (p, phi) = model.predict_attributed(&a.values);
            let top = crate::ops::score::top_k(&phi, k)
                .map(|(f, c)| (usize::from(f), c))
                .collect();
            (p, Some(model.bulk_method(Method::PathAttribution)), top)
        }
        Explain::Exact(k) if k > 0 => {
            let e = tracing::info_span!(target: T, "explain")
                .in_scope(|| model.explain_one(&a.values, model.detail_method()));
            let p =
                tracing::info_span!(target: T, "score").in_scope(|| model.predict_one(&a.values));
            (p, Some(e.method), e.top(k))
        }
        _ => (
            tracing::info_span!(target: T, "score").in_scope(|| model.predict_one(&a.values)),
            None,
            Vec::new(),
        ),
    };
    Prediction {
        score,
        probability: model.probability(score),
        calibrated: model.calibration.is_some(),
        is_spammer: crate::eval::verdict::is_spam(score, manifest.threshold),
        threshold: manifest.threshold,
        version: manifest.version,
        method,
        contributions,
        risk_factors: risk_factors(&a.values),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_given(v: f64) -> Vec<(String, f64)> {
        catalog()
            .features
            .iter()
            .map(|f| (f.id.clone(), v.clamp(f.min, f.max)))
            .collect()
    }

    #[test]
    fn names_ids_and_bounds() {
        assert_eq!(resolve("X7"), Some(6));
        assert_eq!(resolve("x7"), Some(6));
        assert_eq!(resolve("VerificationLevel"), Some(6));
        assert_eq!(resolve("X52"), None);
        assert_eq!(resolve("X0"), None);
        assert_eq!(resolve("X07"), None);
        assert_eq!(resolve("X+7"), None);
        assert_eq!(resolve("X51"), Some(50));
        let pairs = all_given(0.0);
        let a = account(pairs.iter().map(|(k, v)| (k.as_str(), *v)), true).unwrap();
        assert!(a.missing.is_empty());
        // Missing values: listed, NaN, refused only when strict.
        let a = account([("X1", 100.0), ("CountryTier", 3.0)], false).unwrap();
        assert_eq!(a.missing.len(), N_FEATURES - 2);
        assert!(a.values[1].is_nan() && a.values[5] == 3.0);
        let e = account([("X1", 100.0)], true).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("missing required features: X2, X3"),
            "{e}"
        );
        assert_eq!(e.field().as_deref(), Some("features.X2"));
        // Unknown, duplicate, out of range, not finite, not whole.
        let e = account([("X99", 1.0)], false).unwrap_err();
        assert_eq!(e.field().as_deref(), Some("features.X99"));
        let e = account([("X6", 3.0), ("countrytier", 3.0)], false).unwrap_err();
        assert!(matches!(e, FeatureError::Duplicate { .. }), "{e}");
        for bad in [99.0, f64::NAN, f64::INFINITY, 2.5] {
            let e = account([("X6", bad)], false).unwrap_err();
            assert!(matches!(e, FeatureError::Invalid { .. }), "{bad}: {e}");
            assert_eq!(e.field().as_deref(), Some("features.X6"));
        }
        // A hostile key is quoted, not pasted whole.
        let long = "k".repeat(10_000);
        assert!(
            account([(long.as_str(), 1.0)], false)
                .unwrap_err()
                .to_string()
                .len()
                < 300
        );
    }

    #[test]
    fn risk_factors_follow_the_catalog() {
        let cat = catalog();
        let mut values = vec![f64::NAN; N_FEATURES];
        assert!(risk_factors(&values).is_empty());
        let x6 = resolve("X6").unwrap();
        values[x6] = 4.0;
        let r = risk_factors(&values);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].feature, "X6");
        assert_eq!(r[0].value, "4.0");
        assert_eq!(r[0].category, cat.features[x6].category);
        values[x6] = 2.0;
        assert!(risk_factors(&values).is_empty());
    }
}
