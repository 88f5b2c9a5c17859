//! Preprocessing: median imputation (fitted on the training split, stored with the
//! model) and a seeded stratified train/test split.

use crate::util::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// Replaces missing values (NaN) with per-feature medians of the training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Imputer {
    pub medians: Vec<f64>,
}

/// scikit-learn's "balanced" class weights, `n / (2 * count(class))` for (legitimate,
/// spammer), from the two class counts (an empty class counts as one).
pub fn balanced_weights(negatives: usize, positives: usize) -> [f64; 2] {
    let n = (negatives + positives) as f64;
    [
        n / (2.0 * negatives.max(1) as f64),
        n / (2.0 * positives.max(1) as f64),
    ]
}

/// Each row's training weight: its class's balanced weight (when `balanced` and both
/// classes are present; else 1) times its own weight, if any.
pub fn row_weights(labels: &[u8], weights: Option<&[f64]>, balanced: bool) -> Vec<f64> {
    let n = labels.len();
    let pos = labels.iter().filter(|&&l| l == 1).count();
    let class_w = if balanced && pos > 0 && pos < n {
        balanced_weights(n - pos, pos)
    } else {
        [1.0, 1.0]
    };
    (0..n)
        .map(|i| class_w[labels[i] as usize] * weights.map_or(1.0, |w| w[i]))
        .collect()
}

/// Median of the non-missing values (mean of the two middle ones for an even count,
/// as numpy); 0 when every value is missing.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return 0.0;
    }
    let mid = v.len() / 2;
    let (_, &mut hi, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    if v.len() % 2 == 1 {
        hi
    } else {
        let lo = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo + hi) / 2.0
    }
}

impl Imputer {
    /// Fits medians on the rows `idx` of `columns`.
    pub fn fit(columns: &[Vec<f64>], idx: &[usize]) -> Imputer {
        Imputer {
            medians: columns
                .iter()
                .map(|c| median(&idx.iter().map(|&i| c[i]).collect::<Vec<_>>()))
                .collect(),
        }
    }

    /// Imputes one row in place.
    pub fn apply_row(&self, row: &mut [f64]) {
        for (x, m) in row.iter_mut().zip(&self.medians) {
            if x.is_nan() {
                *x = *m;
            }
        }
    }

    /// Imputed copies of `columns` restricted to rows `idx` (column-major).
    pub fn transform_columns(&self, columns: &[Vec<f64>], idx: &[usize]) -> Vec<Vec<f64>> {
        columns
            .iter()
            .zip(&self.medians)
            .map(|(c, &m)| {
                idx.iter()
                    .map(|&i| if c[i].is_nan() { m } else { c[i] })
                    .collect()
            })
            .collect()
    }

    /// Imputed rows `idx` as one row-major matrix (for batch prediction).
    pub fn transform_rows(&self, columns: &[Vec<f64>], idx: &[usize]) -> Vec<f64> {
        let nf = columns.len();
        let mut out = vec![0.0; idx.len() * nf];
        for (f, (c, &m)) in columns.iter().zip(&self.medians).enumerate() {
            for (k, &i) in idx.iter().enumerate() {
                let v = c[i];
                out[k * nf + f] = if v.is_nan() { m } else { v };
            }
        }
        out
    }
}

/// Row indices of a stratified split: each class keeps its share in both parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// Why rows cannot be split into a training and a test part.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SplitError(String);

/// Stratified shuffle split: `ceil(test_fraction * n)` test rows, allocated to the
/// classes in proportion (largest remainders), the rows of each class drawn at random.
/// Both index lists are sorted.
pub fn stratified_split(labels: &[u8], test_fraction: f64, seed: u64) -> Result<Split, SplitError> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(SplitError(format!(
            "test fraction must be between 0 and 1 (exclusive), got {test_fraction}"
        )));
    }
    let n = labels.len();
    let n_test = (test_fraction * n as f64).ceil() as usize;
    let classes: [Vec<usize>; 2] = [
        (0..n).filter(|&i| labels[i] == 0).collect(),
        (0..n).filter(|&i| labels[i] == 1).collect(),
    ];
    if n_test == 0 || n_test >= n {
        return Err(SplitError(format!(
            "{n} rows are too few to hold out {test_fraction}"
        )));
    }
    // Proportional allocation with largest remainders.
    let exact: Vec<f64> = classes
        .iter()
        .map(|c| c.len() as f64 * n_test as f64 / n as f64)
        .collect();
    let mut take: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut left = n_test - take.iter().sum::<usize>();
    let mut order = [0usize, 1];
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    for &c in order.iter().cycle() {
        if left == 0 {
            break;
        }
        if take[c] < classes[c].len() {
            take[c] += 1;
            left -= 1;
        }
    }
    for c in 0..2 {
        if !classes[c].is_empty() && (take[c] == 0 || take[c] == classes[c].len()) {
            return Err(SplitError(format!(
                "class {c} has {} rows: too few to appear in both the training and the test split",
                classes[c].len()
            )));
        }
    }
    let mut rng = SplitMix64::new(seed);
    let mut train = Vec::with_capacity(n - n_test);
    let mut test = Vec::with_capacity(n_test);
    for (c, rows) in classes.iter().enumerate() {
        let mut rows = rows.clone();
        rng.shuffle(&mut rows);
        test.extend_from_slice(&rows[..take[c]]);
        train.extend_from_slice(&rows[take[c]..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    Ok(Split { train, test })
}

/// Stratified k-fold: the rows of each class shuffled (from `seed`) and dealt to the
/// `k` folds in turn, so every fold holds each class's rows within one of an equal
/// share. Each fold's test rows, sorted; together they are every row once.
pub fn stratified_folds(labels: &[u8], k: usize, seed: u64) -> Result<Vec<Vec<usize>>, SplitError> {
    if k < 2 {
        return Err(SplitError(format!("folds must be at least 2, got {k}")));
    }
    let mut rng = SplitMix64::new(seed);
    let mut folds = vec![Vec::new(); k];
    let mut next = 0;
    for c in [0u8, 1] {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        if rows.len() < k {
            return Err(SplitError(format!(
                "class {c} has {} rows: too few for {k} folds (each fold's test part needs one of each class)",
                rows.len()
            )));
        }
        rng.shuffle(&mut rows);
        for r in rows {
            folds[next].push(r);
            next = (next + 1) % k;
        }
    }
    for f in &mut folds {
        f.sort_unstable();
    }
    Ok(folds)
}

/// z-scores with the training mean and standard deviation (1 for constant features).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
}

impl Standardizer {
    pub fn fit(columns: &[&[f64]]) -> Standardizer {
        let (mut mean, mut scale) = (Vec::new(), Vec::new());
        for c in columns {
            let n = c.len().max(1) as f64;
            let m = c.iter().sum::<f64>() / n;
            let v = c.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
            mean.push(m);
            scale.push(if v > 0.0 { v.sqrt() } else { 1.0 });
        }
        Standardizer { mean, scale }
    }

    #[inline]
    pub fn z(&self, f: usize, x: f64) -> f64 {
        (x - self.mean[f]) / self.scale[f]
    }

    pub fn row(&self, x: &[f64]) -> Vec<f64> {
        x.iter().enumerate().map(|(f, &v)| self.z(f, v)).collect()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn stratified_folds_partition_rows_and_keep_class_shares() {
        let labels: Vec<u8> = (0..103).map(|i| u8::from(i % 10 == 0)).collect();
        let folds = stratified_folds(&labels, 5, 7).unwrap();
        let mut all: Vec<usize> = folds.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        let positives: Vec<usize> = folds
            .iter()
            .map(|f| f.iter().filter(|&&i| labels[i] == 1).count())
            .collect();
        let sizes: Vec<usize> = folds.iter().map(Vec::len).collect();
        assert!(positives.iter().max().unwrap() - positives.iter().min().unwrap() <= 1);
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
        assert_eq!(folds, stratified_folds(&labels, 5, 7).unwrap());
        assert_ne!(folds, stratified_folds(&labels, 5, 8).unwrap());
        assert!(stratified_folds(&labels, 1, 7).is_err());
        let e = stratified_folds(&labels, 12, 7).unwrap_err().to_string();
        assert!(e.contains("too few for 12 folds"), "{e}");
    }

    use super::*;

    #[test]
    fn median_like_numpy() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[f64::NAN, 5.0, 1.0]), 3.0);
        assert_eq!(median(&[f64::NAN]), 0.0);
    }

    #[test]
    fn imputer_fills_missing_values_with_training_medians() {
        let cols = vec![
            vec![1.0, f64::NAN, 3.0, 100.0],
            vec![0.0, 1.0, 1.0, f64::NAN],
        ];
        let imp = Imputer::fit(&cols, &[0, 1, 2]); // row 3 is not training data
        assert_eq!(imp.medians, vec![2.0, 1.0]);
        let mut row = vec![f64::NAN, 0.0];
        imp.apply_row(&mut row);
        assert_eq!(row, vec![2.0, 0.0]);
        assert_eq!(
            imp.transform_columns(&cols, &[1, 3]),
            vec![vec![2.0, 100.0], vec![1.0, 1.0]]
        );
        assert_eq!(
            imp.transform_rows(&cols, &[1, 3]),
            vec![2.0, 1.0, 100.0, 1.0]
        );
    }

    #[test]
    fn split_is_stratified_disjoint_and_seeded() {
        let labels: Vec<u8> = (0..1000).map(|i| u8::from(i % 37 == 0)).collect();
        let pos = labels.iter().filter(|&&l| l == 1).count(); // 28
        let s = stratified_split(&labels, 0.2, 1).unwrap();
        assert_eq!(s.test.len(), 200);
        assert_eq!(s.train.len() + s.test.len(), 1000);
        let test_pos = s.test.iter().filter(|&&i| labels[i] == 1).count();
        assert!(
            (test_pos as f64 - pos as f64 * 0.2).abs() <= 1.0,
            "{test_pos}"
        );
        let mut all: Vec<usize> = s.train.iter().chain(&s.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(s, stratified_split(&labels, 0.2, 1).unwrap());
        assert_ne!(s, stratified_split(&labels, 0.2, 2).unwrap());
    }

    #[test]
    fn split_errors() {
        for f in [0.0, 1.0] {
            let e = stratified_split(&[0, 1, 0, 1], f, 1)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("test fraction must be between 0 and 1 (exclusive)"),
                "{e}"
            );
        }
        // One positive cannot be in both parts.
        let e = stratified_split(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 0.2, 1).unwrap_err();
        assert!(e.to_string().contains("class 1"), "{e}");
    }
}
