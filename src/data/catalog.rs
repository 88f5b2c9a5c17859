//! The feature catalog: names, descriptions, categories, kinds and valid ranges of the
//! 51 model inputs, loaded once from `assets/features.ron` (embedded in the binary).

use serde::Deserialize;
use std::sync::OnceLock;

/// Number of feature columns in the schema (`X1..X51`).
pub const N_FEATURES: usize = 51;

const CATALOG_RON: &str = include_str!("../../assets/features.ron");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Kind {
    /// 0/1 indicator.
    Flag,
    /// Integer >= 0.
    Count,
    /// Small encoded integer with labelled levels.
    Ordinal,
    /// Real-valued.
    Continuous,
}

/// A published risk indicator: flagged when the value lies in `[lo, hi]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RiskRule {
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    pub text: String,
}

impl RiskRule {
    pub fn matches(&self, value: f64) -> bool {
        !value.is_nan()
            && self.lo.is_none_or(|lo| value >= lo)
            && self.hi.is_none_or(|hi| value <= hi)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Feature {
    /// Column id, `X1`..`X51`.
    pub id: String,
    /// Name used in the published report, e.g. `UrgentMessageCount`.
    pub name: String,
    /// Short human label for forms and charts.
    pub label: String,
    pub category: String,
    pub kind: Kind,
    pub min: f64,
    pub max: f64,
    pub description: String,
    #[serde(default)]
    pub levels: Vec<String>,
    #[serde(default)]
    pub risk: Option<RiskRule>,
}

/// A value the catalog does not allow for a feature.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("{label} must be a finite number")]
    NotFinite { label: String },
    #[error("{label} must be between {min} and {max}")]
    OutOfRange { label: String, min: f64, max: f64 },
    #[error("{label} must be a whole number")]
    NotWhole { label: String },
}

/// A feature catalog that does not parse or breaks the schema's rules.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct CatalogError(String);

impl Feature {
    /// Whether `value` is inside the published range (and integral where the kind says so).
    pub fn check(&self, value: f64) -> Result<(), ValueError> {
        let label = || self.label.clone();
        if !value.is_finite() {
            return Err(ValueError::NotFinite { label: label() });
        }
        if value < self.min || value > self.max {
            return Err(ValueError::OutOfRange {
                label: label(),
                min: self.min,
                max: self.max,
            });
        }
        if self.kind != Kind::Continuous && value.fract() != 0.0 {
            return Err(ValueError::NotWhole { label: label() });
        }
        Ok(())
    }

    /// Label of an ordinal value, if the catalog has one.
    pub fn level_label(&self, value: f64) -> Option<&str> {
        let i = value - self.min;
        if i < 0.0 || i.fract() != 0.0 {
            return None;
        }
        self.levels.get(i as usize).map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Catalog {
    pub categories: Vec<String>,
    pub features: Vec<Feature>,
}

impl Catalog {
    /// Parses and validates a catalog. The embedded one is available via [`catalog`].
    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        let cat: Catalog = ron::from_str(text)
            .map_err(|e| CatalogError(format!("feature catalog does not parse: {e}")))?;
        cat.validate()?;
        Ok(cat)
    }

    fn validate(&self) -> Result<(), CatalogError> {
        if self.features.len() != N_FEATURES {
            return Err(CatalogError(format!(
                "feature catalog has {} features, expected {N_FEATURES}",
                self.features.len()
            )));
        }
        for (i, f) in self.features.iter().enumerate() {
            let want = format!("X{}", i + 1);
            if f.id != want {
                return Err(CatalogError(format!(
                    "feature catalog entry {} has id {}, expected {want}",
                    i + 1,
                    f.id
                )));
            }
            if !self.categories.contains(&f.category) {
                return Err(CatalogError(format!(
                    "{}: unknown category {:?}",
                    f.id, f.category
                )));
            }
            if !(f.min.is_finite() && f.max.is_finite() && f.min <= f.max) {
                return Err(CatalogError(format!(
                    "{}: invalid range {}..{}",
                    f.id, f.min, f.max
                )));
            }
            if f.kind == Kind::Flag && (f.min != 0.0 || f.max != 1.0) {
                return Err(CatalogError(format!(
                    "{}: a flag must range over 0..1",
                    f.id
                )));
            }
            if f.kind == Kind::Ordinal && f.levels.len() as f64 != f.max - f.min + 1.0 {
                return Err(CatalogError(format!(
                    "{}: {} level labels for the range {}..{}",
                    f.id,
                    f.levels.len(),
                    f.min,
                    f.max
                )));
            }
            if f.name.is_empty() || f.label.is_empty() || f.description.is_empty() {
                return Err(CatalogError(format!(
                    "{}: name, label and description are required",
                    f.id
                )));
            }
        }
        for (i, f) in self.features.iter().enumerate() {
            if self.features[..i].iter().any(|g| g.name == f.name) {
                return Err(CatalogError(format!("{}: duplicate name {}", f.id, f.name)));
            }
        }
        Ok(())
    }

    /// Column index of an id like `X19`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.features.iter().position(|f| f.id == id)
    }

    /// Features of one category, in column order, with their column index.
    pub fn in_category<'a>(
        &'a self,
        category: &'a str,
    ) -> impl Iterator<Item = (usize, &'a Feature)> + 'a {
        self.features
            .iter()
            .enumerate()
            .filter(move |(_, f)| f.category == category)
    }

    /// Column ids in schema order: `X1`..`X51`.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.features.iter().map(|f| f.id.as_str())
    }
}

/// The embedded catalog, parsed and validated on first use.
///
/// The catalog is compiled into the binary and validated by a unit test, so a failure
/// here is a build defect, not a user error.
pub fn catalog() -> &'static Catalog {
    static CAT: OnceLock<Catalog> = OnceLock::new();
    CAT.get_or_init(|| match Catalog::parse(CATALOG_RON) {
        Ok(c) => c,
        Err(e) => panic!("embedded feature catalog is invalid: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_is_valid_and_complete() {
        let c = Catalog::parse(CATALOG_RON).unwrap();
        assert_eq!(c.features.len(), 51);
        assert_eq!(c.ids().next(), Some("X1"));
        assert_eq!(c.features[18].name, "UrgentMessageCount");
        assert_eq!(c.index_of("X19"), Some(18));
        // The ranges the data spec publishes exactly.
        for (id, lo, hi) in [
            ("X6", 2.0, 4.0),
            ("X8", 4.0, 25.0),
            ("X16", 3.0, 18.0),
            ("X17", 1.0, 8.0),
            ("X18", 3.0, 13.0),
        ] {
            let f = &c.features[c.index_of(id).unwrap()];
            assert_eq!((f.min, f.max), (lo, hi), "{id}");
        }
        // Every category is used.
        for cat in &c.categories {
            assert!(c.in_category(cat).count() > 0, "{cat} unused");
        }
    }

    #[test]
    fn validation_rejects_bad_catalogs() {
        let bad_count = CATALOG_RON.replacen("(id: \"X51\"", "(id: \"X52\"", 1);
        assert!(
            Catalog::parse(&bad_count)
                .unwrap_err()
                .to_string()
                .contains("X52")
        );
        let dup = CATALOG_RON.replacen("(id: \"X2\"", "(id: \"X1\"", 1);
        assert!(
            Catalog::parse(&dup)
                .unwrap_err()
                .to_string()
                .contains("expected X2")
        );
        let e = Catalog::parse("Catalog(").unwrap_err().to_string();
        assert!(e.contains("feature catalog does not parse"), "{e}");
    }

    #[test]
    fn range_checks_and_labels() {
        let c = catalog();
        let x6 = &c.features[5];
        assert!(x6.check(3.0).is_ok());
        assert!(
            x6.check(5.0)
                .unwrap_err()
                .to_string()
                .contains("between 2 and 4")
        );
        assert!(x6.check(2.5).unwrap_err().to_string().contains("whole"));
        assert!(
            matches!(x6.check(f64::NAN), Err(ValueError::NotFinite { .. })),
            "{:?}",
            x6.check(f64::NAN)
        );
        assert_eq!(x6.level_label(4.0), Some("Tier 4: high risk"));
        assert_eq!(x6.level_label(1.0), None);
        let x8 = &c.features[7];
        let rule = x8.risk.as_ref().unwrap();
        assert!(rule.matches(5.0) && rule.matches(10.0));
        assert!(!rule.matches(4.0) && !rule.matches(11.0) && !rule.matches(f64::NAN));
    }
}
