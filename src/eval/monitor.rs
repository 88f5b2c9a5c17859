//! Monitoring: scoring latency, errors by kind, and data drift (population stability
//! index) between a version's training data and the accounts scored recently.

use crate::data::catalog::N_FEATURES;
use crate::model::forest::binning::FeatureBins;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// PSI below this is "no significant change".
pub const PSI_MODERATE: f64 = 0.1;
/// PSI above this is a significant shift (alert on important features).
pub const PSI_MAJOR: f64 = 0.25;
/// Bins of a reference profile (equal-frequency, never splitting a value).
const PROFILE_BINS: usize = 10;
/// Floor for empty bins in PSI (avoids infinite terms).
const PSI_FLOOR: f64 = 1e-4;

/// The distribution of one feature in a version's training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureProfile {
    pub bins: FeatureBins,
    /// Share of training rows in each bin.
    pub proportions: Vec<f64>,
}

impl FeatureProfile {
    /// Profiles a column (missing values are left out).
    pub fn fit(values: &[f64]) -> FeatureProfile {
        let present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        let bins = FeatureBins::fit(&present, PROFILE_BINS);
        let proportions = bins_share(&bins, &present);
        FeatureProfile { bins, proportions }
    }

    /// Population stability index of `values` against this profile.
    pub fn psi(&self, values: &[f64]) -> f64 {
        let present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        if present.is_empty() {
            return 0.0;
        }
        psi(&self.proportions, &bins_share(&self.bins, &present))
    }
}

fn bins_share(bins: &FeatureBins, values: &[f64]) -> Vec<f64> {
    let mut counts = vec![0usize; bins.n_bins()];
    for &v in values {
        counts[bins.bin_of(v) as usize] += 1;
    }
    let n = values.len().max(1) as f64;
    counts.iter().map(|&c| c as f64 / n).collect()
}

/// PSI = sum over bins of (actual - expected) * ln(actual / expected), shares floored
/// at 1e-4.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(PSI_FLOOR), a.max(PSI_FLOOR));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// Profiles of every feature of the training rows `idx` of `columns`.
pub fn profile(columns: &[Vec<f64>], idx: &[usize]) -> Vec<FeatureProfile> {
    columns
        .iter()
        .map(|c| FeatureProfile::fit(&idx.iter().map(|&i| c[i]).collect::<Vec<_>>()))
        .collect()
}

/// PSI of each feature of `columns` (accounts scored recently) against `profiles`.
pub fn drift(profiles: &[FeatureProfile], columns: &[Vec<f64>]) -> Vec<f64> {
    profiles
        .iter()
        .zip(columns)
        .map(|(p, c)| p.psi(c))
        .collect()
}

/// PSI of every feature between a version's training data and the accounts scored
/// recently.
#[derive(Debug, Clone)]
pub struct Drift {
    pub version: u32,
    /// Accounts compared.
    pub rows: usize,
    pub psi: Vec<f64>,
}

impl Drift {
    /// Drift of `recent` (column-major) plus the rows of `also` (another column-major
    /// table, e.g. a scored file) against version `version`'s training `profiles`.
    pub fn measure(
        version: u32,
        profiles: &[FeatureProfile],
        mut recent: Vec<Vec<f64>>,
        also: Option<&[Vec<f64>]>,
    ) -> Drift {
        if let Some(also) = also {
            for (c, src) in recent.iter_mut().zip(also) {
                c.extend_from_slice(src);
            }
        }
        let rows = recent.first().map_or(0, Vec::len);
        Drift {
            version,
            rows,
            psi: drift(profiles, &recent),
        }
    }
}

/// Live counters of the app: single-account scoring latency and errors by kind.
#[derive(Debug, Default)]
pub struct Monitor {
    latencies_us: VecDeque<f64>,
    errors: BTreeMap<String, u64>,
    /// Raw rows scored on the score screen (for drift), newest last.
    recent: VecDeque<Vec<f64>>,
}

impl Monitor {
    const KEEP: usize = 5000;

    /// Records one single-account scoring: its latency and the inputs.
    pub fn record_scoring(&mut self, micros: f64, x: &[f64]) {
        if self.latencies_us.len() == Self::KEEP {
            self.latencies_us.pop_front();
        }
        self.latencies_us.push_back(micros);
        if x.len() == N_FEATURES {
            if self.recent.len() == Self::KEEP {
                self.recent.pop_front();
            }
            self.recent.push_back(x.to_vec());
        }
    }

    pub fn record_error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_insert(0) += 1;
    }

    pub fn latencies_us(&self) -> &VecDeque<f64> {
        &self.latencies_us
    }

    pub fn errors(&self) -> &BTreeMap<String, u64> {
        &self.errors
    }

    /// Accounts scored one by one, column-major.
    pub fn recent_columns(&self) -> Vec<Vec<f64>> {
        (0..N_FEATURES)
            .map(|f| self.recent.iter().map(|r| r[f]).collect())
            .collect()
    }

    pub fn recent_len(&self) -> usize {
        self.recent.len()
    }

    /// (p50, p99) of the recorded latencies in microseconds.
    pub fn latency_percentiles(&self) -> Option<(f64, f64)> {
        let q = quantiles(self.latencies_us.iter().copied(), &[0.5, 0.99])?;
        Some((q[0], q[1]))
    }
}

/// The samples' values at the quantiles `qs` (each in 0..=1; the sample at the rounded
/// rank, so every answer is an observed value); None without samples.
pub fn quantiles(samples: impl IntoIterator<Item = f64>, qs: &[f64]) -> Option<Vec<f64>> {
    let mut v: Vec<f64> = samples.into_iter().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let last = v.len() - 1;
    Some(
        qs.iter()
            .map(|q| v[((last as f64) * q.clamp(0.0, 1.0)).round() as usize])
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::SplitMix64;

    #[test]
    fn psi_is_zero_for_the_same_distribution_and_grows_with_shift() {
        let mut rng = SplitMix64::new(1);
        let a: Vec<f64> = (0..20_000)
            .map(|_| (rng.next_f64() * 100.0).floor())
            .collect();
        let b: Vec<f64> = (0..20_000)
            .map(|_| (rng.next_f64() * 100.0).floor())
            .collect();
        let shifted: Vec<f64> = b.iter().map(|v| v + 30.0).collect();
        let p = FeatureProfile::fit(&a);
        assert_eq!(p.proportions.len(), 10);
        assert!((p.proportions.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p.psi(&b) < 0.01, "{}", p.psi(&b));
        assert!(p.psi(&shifted) > PSI_MAJOR, "{}", p.psi(&shifted));
        // A flag whose rate moves from 10% to 40%.
        let flag = |rate: f64, seed: u64| -> Vec<f64> {
            let mut r = SplitMix64::new(seed);
            (0..10_000)
                .map(|_| f64::from(u8::from(r.next_f64() < rate)))
                .collect()
        };
        let pf = FeatureProfile::fit(&flag(0.1, 2));
        assert_eq!(pf.proportions.len(), 2);
        let moved = pf.psi(&flag(0.4, 3));
        // Exact PSI for 0.9/0.1 -> 0.6/0.4: (0.6-0.9)ln(0.6/0.9) + (0.4-0.1)ln(0.4/0.1).
        let exact = (0.6f64 - 0.9) * (0.6f64 / 0.9).ln() + (0.4f64 - 0.1) * (4.0f64).ln();
        assert!((moved - exact).abs() < 0.05, "{moved} vs {exact}");
    }

    #[test]
    fn monitor_counts_latency_and_errors() {
        let mut m = Monitor::default();
        assert!(m.latency_percentiles().is_none());
        for i in 0..100 {
            m.record_scoring(i as f64, &[0.0; N_FEATURES]);
        }
        let (p50, p99) = m.latency_percentiles().unwrap();
        assert!((p50 - 50.0).abs() <= 1.0 && p99 >= 97.0);
        m.record_error("Opening dataset");
        m.record_error("Opening dataset");
        assert_eq!(m.errors()["Opening dataset"], 2);
        assert_eq!(m.recent_columns()[0].len(), 100);
    }
}
