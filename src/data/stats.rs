//! Column statistics shared by the data checks and the app's exploration views.

use rayon::prelude::*;

/// Pearson correlation over rows where both values are present (NaN = missing);
/// NaN when either column is constant or fewer than two pairs exist.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let (mut n, mut sa, mut sb) = (0usize, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        if !x.is_nan() && !y.is_nan() {
            n += 1;
            sa += x;
            sb += y;
        }
    }
    if n < 2 {
        return f64::NAN;
    }
    let (ma, mb) = (sa / n as f64, sb / n as f64);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        if !x.is_nan() && !y.is_nan() {
            let (dx, dy) = (x - ma, y - mb);
            sab += dx * dy;
            saa += dx * dx;
            sbb += dy * dy;
        }
    }
    if saa == 0.0 || sbb == 0.0 {
        return f64::NAN;
    }
    sab / (saa * sbb).sqrt()
}

/// Symmetric matrix of pairwise correlations (1 on the diagonal of varying columns).
pub fn correlation_matrix(columns: &[&[f64]]) -> Vec<Vec<f64>> {
    let k = columns.len();
    let pairs: Vec<(usize, usize)> = (0..k).flat_map(|i| (i..k).map(move |j| (i, j))).collect();
    let values: Vec<f64> = pairs
        .par_iter()
        .map(|&(i, j)| pearson(columns[i], columns[j]))
        .collect();
    let mut m = vec![vec![f64::NAN; k]; k];
    for (&(i, j), &v) in pairs.iter().zip(&values) {
        m[i][j] = v;
        m[j][i] = v;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_basics() {
        let a = [1.0, 2.0, 3.0, 4.0];
        assert!((pearson(&a, &[2.0, 4.0, 6.0, 8.0]) - 1.0).abs() < 1e-12);
        assert!((pearson(&a, &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert!(pearson(&a, &[1.0; 4]).is_nan());
        // Missing values drop the pair.
        assert!((pearson(&[1.0, f64::NAN, 3.0, 4.0], &[1.0, 100.0, 3.0, 4.0]) - 1.0).abs() < 1e-12);
        let m = correlation_matrix(&[&a, &[4.0, 3.0, 2.0, 1.0]]);
        assert!((m[0][1] + 1.0).abs() < 1e-12 && (m[1][0] + 1.0).abs() < 1e-12);
        assert!((m[0][0] - 1.0).abs() < 1e-12);
    }
}
