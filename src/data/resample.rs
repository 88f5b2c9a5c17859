//! SMOTE (Chawla et al. 2002): synthetic spammer rows interpolated between a spammer
//! and one of its k nearest spammer neighbours.
//!
//! Written here because no well-kept Rust crate does it: `imbalanced-sampling` has one
//! 0.1.0 release on ndarray 0.15 and kiddo, `imbalance-rs` pulls in linfa with its SVM
//! and trees. The neighbour search is smartcore's cover tree, on standardised features
//! (so counts and flags weigh alike). Like imbalanced-learn's `SMOTE`, every feature is
//! interpolated, so 0/1 flags of synthetic rows can be fractional.

use crate::data::preprocess::Standardizer;
use crate::util::rng::SplitMix64;
use rayon::prelude::*;
use smartcore::algorithm::neighbour::cover_tree::CoverTree;
use smartcore::metrics::distance::euclidian::Euclidian;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoteParams {
    /// Neighbours to interpolate towards.
    pub k: usize,
    /// Minority rows after resampling as a share of majority rows (1.0 = balanced,
    /// imbalanced-learn's default).
    pub ratio: f64,
    pub seed: u64,
}

impl Default for SmoteParams {
    fn default() -> Self {
        SmoteParams {
            k: 5,
            ratio: 1.0,
            seed: 42,
        }
    }
}

/// The training rows plus synthetic minority rows appended at the end.
pub struct Resampled {
    pub columns: Vec<Vec<f64>>,
    pub labels: Vec<u8>,
    pub synthetic: usize,
}

/// Why SMOTE cannot resample these rows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SmoteError(String);

/// Appends synthetic class-1 rows until class 1 has `ratio` times as many rows as
/// class 0. Errors when there are fewer than 2 minority rows.
pub fn smote(columns: &[&[f64]], labels: &[u8], p: SmoteParams) -> Result<Resampled, SmoteError> {
    let minority: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 1).collect();
    let majority = labels.len() - minority.len();
    if minority.len() < 2 {
        return Err(SmoteError(format!(
            "SMOTE needs at least 2 spammer rows, the training data has {}",
            minority.len()
        )));
    }
    if !(p.ratio > 0.0 && p.ratio.is_finite()) || p.k == 0 {
        return Err(SmoteError("SMOTE needs k >= 1 and a positive ratio".into()));
    }
    let wanted = ((majority as f64 * p.ratio).round() as usize).saturating_sub(minority.len());
    let st = Standardizer::fit(columns);
    let z: Vec<Vec<f64>> = minority
        .iter()
        .map(|&i| (0..columns.len()).map(|f| st.z(f, columns[f][i])).collect())
        .collect();
    let k = p.k.min(minority.len() - 1);
    let tree =
        CoverTree::new(z.clone(), Euclidian::new()).map_err(|e| SmoteError(e.to_string()))?;
    // k nearest other spammers of every spammer (the first hit is the row itself,
    // unless it has exact duplicates; either way the row's own index is skipped).
    let neighbours: Vec<Vec<usize>> = z
        .par_iter()
        .enumerate()
        .map(|(i, row)| {
            let mut hits = tree.find(row, k + 1).unwrap_or_default();
            hits.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            hits.into_iter()
                .map(|h| h.0)
                .filter(|&j| j != i)
                .take(k)
                .collect()
        })
        .collect();
    let mut out: Vec<Vec<f64>> = columns
        .iter()
        .map(|c| {
            let mut v = Vec::with_capacity(c.len() + wanted);
            v.extend_from_slice(c);
            v
        })
        .collect();
    let mut y = labels.to_vec();
    y.reserve(wanted);
    let mut rng = SplitMix64::new(p.seed ^ 0x0073_6d6f_7465);
    for _ in 0..wanted {
        let a = rng.below(minority.len());
        let nn = &neighbours[a];
        let gap = rng.next_f64();
        let (ra, rb) = if nn.is_empty() {
            (minority[a], minority[a])
        } else {
            (minority[a], minority[nn[rng.below(nn.len())]])
        };
        for (f, col) in out.iter_mut().enumerate() {
            let (xa, xb) = (columns[f][ra], columns[f][rb]);
            col.push(xa + gap * (xb - xa));
        }
        y.push(1);
    }
    Ok(Resampled {
        columns: out,
        labels: y,
        synthetic: wanted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_rows_lie_between_spammer_neighbours() {
        // Two separated spammer clusters; a synthetic row interpolates within one.
        let mut a = Vec::new();
        let mut b = Vec::new();
        let mut y = Vec::new();
        for i in 0..200 {
            a.push(i as f64 * 0.01);
            b.push(0.0);
            y.push(0);
        }
        for i in 0..10 {
            a.push(100.0 + i as f64);
            b.push(5.0);
            y.push(1);
            a.push(-100.0 - i as f64);
            b.push(-5.0);
            y.push(1);
        }
        let params = SmoteParams {
            k: 3,
            ..Default::default()
        };
        let r = smote(&[&a, &b], &y, params).unwrap();
        assert_eq!(r.synthetic, 200 - 20);
        assert_eq!(r.labels.iter().filter(|&&l| l == 1).count(), 200);
        assert_eq!(r.columns[0].len(), 400);
        for i in 220..400 {
            let (x, z) = (r.columns[0][i], r.columns[1][i]);
            // Same cluster as its neighbours: never interpolated across the gap.
            assert!(
                (100.0..=109.0).contains(&x) && z == 5.0
                    || (-109.0..=-100.0).contains(&x) && z == -5.0,
                "{x} {z}"
            );
        }
        // Deterministic for a seed.
        let again = smote(&[&a, &b], &y, params).unwrap();
        assert_eq!(again.columns, r.columns);
        let mut one = vec![0u8; 220];
        one[0] = 1;
        let Err(e) = smote(&[&a, &b], &one, SmoteParams::default()) else {
            panic!("SMOTE with one spammer row was accepted");
        };
        let e = e.to_string();
        assert!(
            e.contains("at least 2 spammer rows") && e.contains("has 1"),
            "{e}"
        );
    }
}
