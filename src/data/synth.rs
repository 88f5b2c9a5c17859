//! The synthetic default dataset: a port of `shared/reference/synth_reference.py`.
//!
//! Every random number is a pure function of (row, stream) (see [`CounterRng`]), and the
//! floating-point operations are evaluated in the same order as the reference, so the
//! default seed and size reproduce the reference CSV byte for byte.

use crate::data::catalog::N_FEATURES;
use crate::data::{DataSource, Dataset, SourceKind};
use crate::util::rng::CounterRng;
use rayon::prelude::*;
use std::io::Write;

pub const DEFAULT_SEED: u64 = 0x5EED_F1BE_2024_0001;
pub const DEFAULT_ROWS: usize = 458_798;
/// Positives in the full-size dataset; smaller datasets keep the same share.
pub const DEFAULT_POSITIVES: usize = 12_342;
const NAN_ROWS_X13: [usize; 6] = [4_321, 77_777, 123_456, 234_567, 345_678, 456_789];
const FIRST_USER_ID: i64 = 10_000_000;

// Latent-mode mixture (legit L, subtle S, blatant B).
const POS_B: f64 = 0.62;
const POS_S: f64 = 0.36;
const NEG_S: f64 = 0.002;
const NEG_B: f64 = 0.0004;
const MU: [f64; 3] = [0.0, 2.0, 4.0];
const SD: [f64; 3] = [0.9, 0.6, 0.8];

/// How one column is drawn; parameters as in the reference's `SPEC` table.
#[derive(Debug, Clone, Copy)]
enum Spec {
    /// X1: days = exp(a + b s + sd Z); seconds, clipped.
    Age(f64, f64, f64),
    /// X2: days * exp(a + b s + sd Z + e act).
    Msgs(f64, f64, f64, f64),
    /// lo + #{thr < a + b s + Z}.
    Ord(f64, f64, &'static [f64], i64),
    /// Clipped normal band whose mean/sd interpolate with sigmoid(k (s - s0)).
    BandNorm(f64, f64, f64, f64, f64, f64, i64, i64),
    /// [X[src] >= k], flipped with probability p.
    ThrFlip(usize, i64, f64),
    /// Bernoulli(sigmoid(a + b s)).
    Bern(f64, f64),
    /// lo + Poisson(exp(a + b s)) truncated at kmax.
    Pois(f64, f64, i64, i64),
    /// clip(round(a + b s + e act + sd Z), lo, hi).
    ClipNorm(f64, f64, f64, i64, i64, f64),
    /// clip(round(lo + (X[src] - q) m + sd Z), lo, hi).
    Affine(usize, f64, i64, f64, i64, i64),
    /// Poisson(exp(a + b s) + exp(a0 + e act)) truncated at kmax.
    Pois2(f64, f64, f64, f64, i64),
    /// Poisson(exp(a + b s + sig Z)) truncated at kmax.
    PoisLn(f64, f64, f64, i64),
    /// X[src] flipped with probability p.
    CopyFlip(usize, f64),
    /// Bernoulli(p), independent of the label.
    Const(f64),
}

use Spec::*;

/// Columns in evaluation order (sources before derived columns), as in the reference.
const SPEC: [(usize, Spec); N_FEATURES] = [
    (1, Age(5.8, -0.30, 1.0)),
    (2, Msgs(-2.0, 0.80, 0.6, 0.5)),
    (3, Ord(0.0, -0.20, &[-0.4, 0.7, 1.7], 0)),
    (4, Ord(0.0, 0.03, &[-0.8, 0.2, 1.2], 0)),
    (5, Ord(0.0, 0.00, &[-0.5, 0.6], 0)),
    (6, Ord(0.0, 0.30, &[0.13, 1.17], 2)),
    (7, Ord(0.0, -0.42, &[-1.0, 0.0, 0.9, 1.8], 0)),
    (8, BandNorm(2.0, 2.0, 11.0, 7.5, 8.0, 1.9, 4, 25)),
    (9, Ord(0.0, 0.02, &[-0.3, 0.9], 0)),
    (20, Ord(0.0, 0.35, &[-0.3, 0.3, 1.2], 0)),
    (10, ThrFlip(20, 2, 0.018)),
    (11, Bern(-4.0, 0.18)),
    (12, Bern(-2.5, 0.12)),
    (13, Bern(1.6, -0.14)),
    (14, Pois(-2.0, 0.09, 30, 0)),
    (15, Bern(2.5, -0.12)),
    (16, ClipNorm(8.0, 0.6, 1.2, 3, 18, 2.5)),
    (18, Affine(16, 10.0 / 15.0, 3, 1.14, 3, 13)),
    (
        17,
        Ord(0.0, -0.20, &[-1.8, -1.0, -0.4, 0.1, 0.6, 1.1, 1.7], 1),
    ),
    (19, Pois2(-3.4, 1.6, -2.0, 0.8, 80)),
    (21, Pois2(-2.5, 0.8, -1.5, 0.8, 60)),
    (22, PoisLn(-2.8, 0.9, 0.7, 60)),
    (23, Pois(0.5, 0.016, 40, 0)),
    (32, Pois(1.0, 0.010, 40, 0)),
    (24, Bern(-1.0, 0.06)),
    (25, Bern(-2.0, 0.08)),
    (26, Bern(-4.0, 0.16)),
    (28, Bern(-1.5, 0.04)),
    (31, Bern(0.5, -0.06)),
    (34, Bern(-2.2, 0.10)),
    (36, Bern(-1.0, 0.02)),
    (37, Bern(-3.0, 0.10)),
    (38, Bern(-4.5, 0.16)),
    (39, Bern(-0.5, 0.03)),
    (40, Bern(-2.5, 0.06)),
    (41, Bern(-2.0, 0.09)),
    (42, Bern(-1.2, 0.02)),
    (43, Bern(-3.0, 0.08)),
    (45, Bern(-0.8, 0.00)),
    (49, Bern(-5.0, 0.20)),
    (50, Bern(-5.0, 0.18)),
    (51, Bern(-1.5, 0.05)),
    (35, CopyFlip(34, 0.005)),
    (44, CopyFlip(41, 0.015)),
    (27, Const(0.0008)),
    (29, Const(0.001)),
    (30, Const(0.0)),
    (33, Const(0.0)),
    (46, Const(0.0005)),
    (47, Const(0.0003)),
    (48, Const(0.0002)),
];

#[inline]
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Poisson by sequential inverse CDF, truncated at `kmax`.
#[inline]
fn pois_inv(u: f64, lam: f64, kmax: i64) -> i64 {
    let mut p = (-lam).exp();
    let mut cdf = p;
    let mut k = 0;
    for j in 1..=kmax {
        if u <= cdf {
            break;
        }
        k += 1;
        p = p * lam / j as f64;
        cdf += p;
    }
    k
}

#[inline]
fn clip_round(x: f64, lo: f64, hi: f64) -> i64 {
    // numpy: clip(rint(x), lo, hi) then cast to int64.
    x.round_ties_even().clamp(lo, hi) as i64
}

/// Parameters of a generated dataset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthParams {
    pub rows: usize,
    pub seed: u64,
}

impl Default for SynthParams {
    fn default() -> Self {
        SynthParams {
            rows: DEFAULT_ROWS,
            seed: DEFAULT_SEED,
        }
    }
}

impl SynthParams {
    /// Positives for this size: exactly 12,342 at full size, the same share otherwise.
    pub fn positives(&self) -> usize {
        if self.rows == DEFAULT_ROWS {
            DEFAULT_POSITIVES
        } else {
            ((self.rows as f64) * (DEFAULT_POSITIVES as f64 / DEFAULT_ROWS as f64)).round() as usize
        }
    }
}

/// The generated table: integer columns, with X13 missing (`None`) in 6 fixed rows.
pub struct SynthTable {
    pub labels: Vec<u8>,
    pub user_ids: Vec<i64>,
    /// `columns[c]` holds X(c+1).
    pub columns: Vec<Vec<i64>>,
    /// Rows whose X13 is missing.
    pub missing_x13: Vec<usize>,
}

/// Generates the table (about a second for the full size on one core).
pub fn generate(params: SynthParams) -> SynthTable {
    let n = params.rows;
    let n_pos = params.positives().min(n);
    let r = CounterRng { seed: params.seed };

    // Labels: the n_pos rows with the smallest stream-0 hash are positive.
    let mut order: Vec<(u64, u32)> = (0..n).map(|i| (r.raw(i as u64, 0), i as u32)).collect();
    if n_pos < n {
        order.select_nth_unstable(n_pos);
    }
    let mut labels = vec![0u8; n];
    for &(_, i) in &order[..n_pos] {
        labels[i as usize] = 1;
    }
    drop(order);

    let mut columns: Vec<Vec<i64>> = vec![Vec::new(); N_FEATURES];
    const CHUNK: usize = 8192;
    let parts: Vec<Vec<[i64; N_FEATURES]>> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|k| {
            (k * CHUNK..((k + 1) * CHUNK).min(n))
                .map(|i| generate_row(&r, i, labels[i]))
                .collect()
        })
        .collect();
    for c in columns.iter_mut() {
        c.reserve_exact(n);
    }
    for part in parts {
        for row in part {
            for (c, v) in row.iter().enumerate() {
                columns[c].push(*v);
            }
        }
    }
    let missing_x13 = NAN_ROWS_X13.iter().copied().filter(|&i| i < n).collect();
    SynthTable {
        labels,
        user_ids: (0..n as i64).map(|i| FIRST_USER_ID + i).collect(),
        columns,
        missing_x13,
    }
}

fn generate_row(r: &CounterRng, i: usize, label: u8) -> [i64; N_FEATURES] {
    let row = i as u64;
    let um = r.uniform(row, 1);
    let mode = if label == 1 {
        if um < POS_B {
            2
        } else if um < POS_B + POS_S {
            1
        } else {
            0
        }
    } else if um < NEG_B {
        2
    } else if um < NEG_B + NEG_S {
        1
    } else {
        0
    };
    let s = MU[mode] + SD[mode] * r.normal(row, 2);
    let act = r.normal(row, 208);
    let u = |c: usize| r.uniform(row, 4 * c as u64);
    let z = |c: usize, j: u64| r.normal(row, 4 * c as u64 + j);

    let mut x = [0i64; N_FEATURES];
    let mut ln_days = 0.0;
    for &(c, spec) in SPEC.iter() {
        let v = match spec {
            Age(a, b, sd) => {
                ln_days = a + b * s + sd * z(c, 0);
                clip_round(ln_days.exp() * 86400.0, 3600.0, 315_360_000.0)
            }
            Msgs(a, b, sd, e) => clip_round(
                (ln_days + a + b * s + e * act + sd * z(c, 0)).exp(),
                0.0,
                200_000.0,
            ),
            Ord(a, b, thr, lo) => {
                let lat = a + b * s + z(c, 0);
                lo + thr.iter().filter(|&&t| lat > t).count() as i64
            }
            BandNorm(k, s0, m0, m1, sd0, sd1, lo, hi) => {
                let w = sigmoid(k * (s - s0));
                clip_round(
                    m0 + (m1 - m0) * w + (sd0 + (sd1 - sd0) * w) * z(c, 0),
                    lo as f64,
                    hi as f64,
                )
            }
            ThrFlip(src, k, p) => {
                let base = i64::from(x[src - 1] >= k);
                if u(c) < p { 1 - base } else { base }
            }
            Bern(a, b) => i64::from(u(c) < sigmoid(a + b * s)),
            Pois(a, b, kmax, lo) => lo + pois_inv(u(c), (a + b * s).exp(), kmax - lo),
            ClipNorm(a, b, sd, lo, hi, e) => {
                clip_round(a + b * s + e * act + sd * z(c, 0), lo as f64, hi as f64)
            }
            Affine(src, m, q, sd, lo, hi) => clip_round(
                lo as f64 + (x[src - 1] - q) as f64 * m + sd * z(c, 0),
                lo as f64,
                hi as f64,
            ),
            Pois2(a, b, a0, e, kmax) => {
                let lam = (a + b * s).exp() + (a0 + e * act).exp();
                pois_inv(u(c), lam, kmax)
            }
            PoisLn(a, b, sig, kmax) => pois_inv(u(c), (a + b * s + sig * z(c, 2)).exp(), kmax),
            CopyFlip(src, p) => {
                let v = x[src - 1];
                if u(c) < p { 1 - v } else { v }
            }
            Const(p) => i64::from(u(c) < p),
        };
        x[c - 1] = v;
    }
    x
}

impl SynthTable {
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    /// Writes the CSV exactly as the reference does (pandas `to_csv`, integers, blank
    /// for missing X13).
    pub fn write_csv<W: Write>(&self, out: W) -> std::io::Result<()> {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
        let mut line = String::with_capacity(256);
        line.push_str("label,user_id");
        for c in 1..=N_FEATURES {
            line.push_str(&format!(",X{c}"));
        }
        line.push('\n');
        w.write_all(line.as_bytes())?;
        let mut missing = self.missing_x13.clone();
        missing.sort_unstable();
        let mut next_missing = missing.iter().peekable();
        for i in 0..self.rows() {
            line.clear();
            push_int(&mut line, i64::from(self.labels[i]));
            line.push(',');
            push_int(&mut line, self.user_ids[i]);
            let x13_missing = next_missing.peek() == Some(&&i);
            if x13_missing {
                next_missing.next();
            }
            for (c, col) in self.columns.iter().enumerate() {
                line.push(',');
                if !(c == 12 && x13_missing) {
                    push_int(&mut line, col[i]);
                }
            }
            line.push('\n');
            w.write_all(line.as_bytes())?;
        }
        w.flush()
    }

    /// The CSV bytes (used to fingerprint the data source).
    pub fn to_csv_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.rows() * 130);
        self.write_csv(&mut v)
            .expect("writing to memory cannot fail");
        v
    }

    /// Converts into a [`Dataset`] (floats, NaN for missing) tagged as synthetic.
    pub fn into_dataset(self, params: SynthParams) -> Dataset {
        let sha256 = crate::util::hash::sha256_hex(&self.to_csv_bytes());
        let mut columns: Vec<Vec<f64>> = self
            .columns
            .into_iter()
            .map(|c| c.into_iter().map(|v| v as f64).collect())
            .collect();
        for &i in &self.missing_x13 {
            columns[12][i] = f64::NAN;
        }
        Dataset {
            source: DataSource {
                kind: SourceKind::Synthetic {
                    seed: params.seed,
                    rows: params.rows,
                },
                sha256,
            },
            user_ids: self
                .user_ids
                .iter()
                .map(|&u| crate::data::user_id_from_int(u))
                .collect(),
            labels: Some(self.labels),
            columns,
            warnings: Vec::new(),
        }
    }
}

fn push_int(s: &mut String, v: i64) {
    use std::fmt::Write as _;
    let _ = write!(s, "{v}");
}

/// Generates the dataset in memory (the app's default data).
pub fn default_dataset(params: SynthParams) -> Dataset {
    generate(params).into_dataset(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_inverse_cdf() {
        // P(0) = e^-1 = 0.3679, P(<=1) = 0.7358, P(<=2) = 0.9197.
        assert_eq!(pois_inv(0.30, 1.0, 10), 0);
        assert_eq!(pois_inv(0.50, 1.0, 10), 1);
        assert_eq!(pois_inv(0.80, 1.0, 10), 2);
        assert_eq!(pois_inv(0.999_999, 1.0, 3), 3, "truncated at kmax");
    }

    #[test]
    fn small_table_has_schema_labels_and_missing_values() {
        let t = generate(SynthParams {
            rows: 5000,
            seed: DEFAULT_SEED,
        });
        assert_eq!(t.rows(), 5000);
        assert_eq!(t.columns.len(), N_FEATURES);
        let pos: usize = t.labels.iter().map(|&l| l as usize).sum();
        assert_eq!(pos, 135); // 5000 * 12342 / 458798 = 134.5 rounded
        assert_eq!(t.missing_x13, vec![4321]);
        let csv = String::from_utf8(t.to_csv_bytes()).unwrap();
        let mut lines = csv.lines();
        assert!(lines.next().unwrap().starts_with("label,user_id,X1,X2,"));
        let row4321 = csv.lines().nth(4322).unwrap();
        let cells: Vec<&str> = row4321.split(',').collect();
        assert_eq!(cells.len(), 53);
        assert_eq!(cells[2 + 12], "", "X13 blank");
    }

    #[test]
    fn different_seeds_give_different_data() {
        let a = generate(SynthParams { rows: 300, seed: 1 });
        let b = generate(SynthParams { rows: 300, seed: 2 });
        assert_ne!(a.columns[0], b.columns[0]);
        let a2 = generate(SynthParams { rows: 300, seed: 1 });
        assert_eq!(a.columns, a2.columns);
    }
}
