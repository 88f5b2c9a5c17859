//! The synthetic default dataset against the reference generator and DATA_SPEC.md.

use spamscope::data::catalog::catalog;
use spamscope::data::stats::correlation_matrix;
use spamscope::data::synth::{SynthParams, generate};
use spamscope::util::hash::sha256_hex;

const REFERENCE_SHA256: &str = "88c39184cb1642e7a97a204865ba97099b3a9c38f3a56d76830ace2ccf188963";

#[test]
fn default_dataset_matches_the_reference_byte_for_byte() {
    let table = generate(SynthParams::default());
    let csv = table.to_csv_bytes();
    // Rows produced by shared/reference/synth_reference.py (a sample: the first 600,
    // every 997th, the last 50 and the rows around each missing X13).
    let sample = include_str!("fixtures/synth_reference_sample.csv");
    let text = std::str::from_utf8(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut sample_lines = sample.lines();
    let header = sample_lines.next().unwrap();
    assert_eq!(header.split_once(',').unwrap().1, lines[0]);
    let mut checked = 0;
    for l in sample_lines {
        let (row, expected) = l.split_once(',').unwrap();
        let row: usize = row.parse().unwrap();
        assert_eq!(
            lines[row + 1],
            expected,
            "row {row} differs from the reference"
        );
        checked += 1;
    }
    assert!(checked > 1000);
    // And the whole file, as DATA_SPEC.md publishes it.
    assert_eq!(sha256_hex(&csv), REFERENCE_SHA256);
}

#[test]
fn default_dataset_meets_the_published_statistics() {
    let t = generate(SynthParams::default());
    assert_eq!(t.rows(), 458_798);
    assert_eq!(t.labels.iter().map(|&l| l as usize).sum::<usize>(), 12_342);
    assert_eq!(t.missing_x13.len(), 6);

    let mut cols: Vec<Vec<f64>> = t
        .columns
        .iter()
        .map(|c| c.iter().map(|&v| v as f64).collect())
        .collect();
    for &i in &t.missing_x13 {
        cols[12][i] = f64::NAN;
    }
    let missing: usize = cols
        .iter()
        .map(|c| c.iter().filter(|v| v.is_nan()).count())
        .sum();
    assert_eq!(missing, 6, "all missing values are in X13");

    // Ranges of the columns the spec pins exactly: min and max equal the catalog's.
    let cat = catalog();
    for id in ["X6", "X8", "X16", "X17", "X18"] {
        let f = cat.index_of(id).unwrap();
        let min = cols[f].iter().copied().fold(f64::INFINITY, f64::min);
        let max = cols[f].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(
            (min, max),
            (cat.features[f].min, cat.features[f].max),
            "{id}"
        );
    }

    let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
    let corr = correlation_matrix(&refs);
    let pairs = [
        (18, 16, 0.844),
        (20, 10, 0.862),
        (35, 34, 0.972),
        (44, 41, 0.931),
    ];
    for (a, b, target) in pairs {
        let c = corr[a - 1][b - 1];
        assert!(
            (c - target).abs() <= 0.02,
            "corr(X{a}, X{b}) = {c}, target {target}"
        );
    }
    for (i, row) in corr.iter().enumerate() {
        for (j, &c) in row.iter().enumerate().skip(i + 1) {
            let listed = pairs
                .iter()
                .any(|&(a, b, _)| (a - 1, b - 1) == (i, j) || (b - 1, a - 1) == (i, j));
            if !listed && !c.is_nan() {
                assert!(
                    c.abs() <= 0.8,
                    "corr(X{}, X{}) = {c} exceeds 0.8",
                    i + 1,
                    j + 1
                );
            }
        }
    }
}
