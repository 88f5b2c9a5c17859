//! Quantile binning: every feature is mapped once to at most 256 ordered bins.
//!
//! A bin never splits a distinct value, so a feature with at most `max_bins` distinct
//! values gets one bin per value and splits on it are exact. For each bin we keep the
//! smallest and largest training value inside it, so a split between bin `b` and the
//! next non-empty bin `b2` becomes the real-valued threshold `(hi[b] + lo[b2]) / 2`,
//! which prediction applies to raw inputs (`x <= threshold` goes left), like scikit-learn.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Bin boundaries of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureBins {
    /// Smallest training value in each bin.
    pub lo: Vec<f64>,
    /// Largest training value in each bin.
    pub hi: Vec<f64>,
}

impl FeatureBins {
    pub fn n_bins(&self) -> usize {
        self.lo.len()
    }

    /// Threshold separating bin `left` from the next non-empty bin `right`.
    #[inline]
    pub fn threshold(&self, left: usize, right: usize) -> f64 {
        0.5 * (self.hi[left] + self.lo[right])
    }

    /// Bin of a value: the first bin whose upper edge is >= the value.
    #[inline]
    pub fn bin_of(&self, x: f64) -> u8 {
        // Edges between consecutive bins are midpoints; binary search over them.
        let (mut lo, mut hi) = (0usize, self.lo.len() - 1);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if x <= self.threshold(mid, mid + 1) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo as u8
    }

    /// Builds bins from one column (no NaN).
    pub fn fit(values: &[f64], max_bins: usize) -> FeatureBins {
        let max_bins = max_bins.clamp(2, 256);
        let mut sorted = values.to_vec();
        sorted.sort_unstable_by(f64::total_cmp);
        // Distinct values with their counts.
        let mut distinct: Vec<(f64, usize)> = Vec::new();
        for &v in &sorted {
            match distinct.last_mut() {
                Some((last, c)) if *last == v => *c += 1,
                _ => distinct.push((v, 1)),
            }
        }
        if distinct.is_empty() {
            return FeatureBins {
                lo: vec![0.0],
                hi: vec![0.0],
            };
        }
        if distinct.len() <= max_bins {
            let vals: Vec<f64> = distinct.iter().map(|d| d.0).collect();
            return FeatureBins {
                lo: vals.clone(),
                hi: vals,
            };
        }
        // Greedy equal-frequency bins over distinct values; the target is recomputed
        // from what is left, so heavy values get bins of their own.
        let mut lo = Vec::with_capacity(max_bins);
        let mut hi = Vec::with_capacity(max_bins);
        let mut remaining = sorted.len();
        let mut i = 0;
        while i < distinct.len() {
            let bins_left = max_bins - lo.len();
            let values_left = distinct.len() - i;
            if values_left <= bins_left {
                for d in &distinct[i..] {
                    lo.push(d.0);
                    hi.push(d.0);
                }
                break;
            }
            let target = remaining as f64 / bins_left as f64;
            let start = distinct[i].0;
            let mut count = 0usize;
            while i < distinct.len() {
                let c = distinct[i].1;
                // Close the bin before a value that would overshoot the target by more
                // than the bin falls short of it (heavy values get bins of their own).
                if count > 0 && (count + c) as f64 - target > target - count as f64 {
                    break;
                }
                count += c;
                i += 1;
                if count as f64 >= target {
                    break;
                }
            }
            lo.push(start);
            hi.push(distinct[i - 1].0);
            remaining -= count;
        }
        FeatureBins { lo, hi }
    }
}

/// A binned training matrix, column-major (`bins[f][row]`).
#[derive(Debug, Clone)]
pub struct BinnedData {
    pub features: Vec<FeatureBins>,
    pub bins: Vec<Vec<u8>>,
}

impl BinnedData {
    /// Bins every column in parallel. Columns must not contain NaN.
    pub fn build(columns: &[&[f64]], max_bins: usize) -> BinnedData {
        let per: Vec<(FeatureBins, Vec<u8>)> = columns
            .par_iter()
            .map(|col| {
                let fb = FeatureBins::fit(col, max_bins);
                let b = col.iter().map(|&x| fb.bin_of(x)).collect();
                (fb, b)
            })
            .collect();
        let (features, bins) = per.into_iter().unzip();
        BinnedData { features, bins }
    }

    pub fn n_rows(&self) -> usize {
        self.bins.first().map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_cardinality_gets_exact_bins() {
        let v = [3.0, 1.0, 2.0, 2.0, 7.0];
        let b = FeatureBins::fit(&v, 256);
        assert_eq!(b.lo, vec![1.0, 2.0, 3.0, 7.0]);
        assert_eq!(b.threshold(2, 3), 5.0);
        assert_eq!(b.bin_of(1.0), 0);
        assert_eq!(b.bin_of(1.5), 0);
        assert_eq!(b.bin_of(1.6), 1);
        assert_eq!(b.bin_of(5.0), 2);
        assert_eq!(b.bin_of(100.0), 3);
        assert_eq!(b.bin_of(-100.0), 0);
    }

    #[test]
    fn high_cardinality_is_quantile_binned_without_splitting_values() {
        // 10,000 distinct values plus one heavy value.
        let mut v: Vec<f64> = (0..10_000).map(|i| i as f64).collect();
        v.extend(std::iter::repeat_n(5000.0, 5000));
        let b = FeatureBins::fit(&v, 64);
        assert_eq!(b.n_bins(), 64);
        for i in 0..b.n_bins() {
            assert!(b.lo[i] <= b.hi[i]);
            if i > 0 {
                assert!(b.hi[i - 1] < b.lo[i], "bins overlap at {i}");
            }
        }
        assert_eq!(b.lo[0], 0.0);
        assert_eq!(b.hi[63], 9999.0);
        // The heavy value is alone in its bin.
        let k = b.bin_of(5000.0) as usize;
        assert_eq!((b.lo[k], b.hi[k]), (5000.0, 5000.0));
        // Every value lands in the bin whose [lo, hi] holds it.
        for &x in &v {
            let k = b.bin_of(x) as usize;
            assert!(b.lo[k] <= x && x <= b.hi[k]);
        }
        // Roughly equal frequency.
        let mut counts = vec![0usize; 64];
        for &x in &v {
            counts[b.bin_of(x) as usize] += 1;
        }
        let max = counts.iter().filter(|&&c| c < 5000).max().unwrap();
        assert!(*max < 600, "{counts:?}");
    }

    #[test]
    fn constant_column_has_one_bin() {
        let b = FeatureBins::fit(&[4.0; 10], 256);
        assert_eq!(b.n_bins(), 1);
        assert_eq!(b.bin_of(9.0), 0);
    }
}
