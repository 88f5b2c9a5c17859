//! Exploratory statistics of a dataset for the analysts' views: summary table and
//! correlations (polars lazy expressions), per-class histograms, missing values, a PCA
//! projection of a sample, and the typical legitimate account. Computed once per dataset
//! on a worker thread.

use crate::data::Dataset;
use crate::data::catalog::{N_FEATURES, catalog};
use crate::data::preprocess::median;
use crate::util::progress::Reporter;
use crate::util::rng::SplitMix64;
use polars::prelude::*;

/// The statistics of one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub missing: usize,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub q25: f64,
    pub median: f64,
    pub q75: f64,
    pub max: f64,
}

/// Per-class histogram of one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Bin `i` covers `[edges[i], edges[i + 1])` (the last bin is closed and also holds
    /// values above the upper edge when `clipped`).
    pub edges: Vec<f64>,
    /// One bin per integer value (edges are value +- 0.5).
    pub discrete: bool,
    /// Values above the last edge were counted in the last bin.
    pub clipped: bool,
    /// Counts per bin: legitimate (label 0), spammers (label 1). Without labels every
    /// row counts as legitimate.
    pub counts: [Vec<u64>; 2],
}

/// A 2-D projection of a sample on the first two principal components.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    pub points: Vec<[f64; 2]>,
    pub labels: Vec<u8>,
    /// Share of the (standardised) variance explained by each component.
    pub explained: [f64; 2],
}

#[derive(Debug, Clone, PartialEq)]
pub struct Eda {
    pub rows: usize,
    /// (legitimate, spammers), when the data has labels.
    pub class_counts: Option<[usize; 2]>,
    pub summary: Vec<Summary>,
    /// Names of the correlation matrix's rows/columns: X1..X51 and, with labels, `label`.
    pub corr_names: Vec<String>,
    /// Pearson correlations (NaN where a column is constant).
    pub corr: Vec<Vec<f64>>,
    /// Correlation of each feature with the label (empty without labels).
    pub label_corr: Vec<f64>,
    /// Pairs with |r| > 0.8: (i, j, r), i < j, by decreasing |r|.
    pub high_pairs: Vec<(usize, usize, f64)>,
    pub histograms: Vec<Histogram>,
    pub pca: Option<Pca>,
    /// Per-feature medians of legitimate accounts (of all rows without labels): the
    /// "typical legitimate account" of the score form.
    pub typical_legit: Vec<f64>,
}

fn frame(d: &Dataset) -> PolarsResult<DataFrame> {
    let mut cols: Vec<Column> = catalog()
        .features
        .iter()
        .zip(&d.columns)
        .map(|(f, c)| {
            let vals: Vec<Option<f64>> = c.iter().map(|&v| (!v.is_nan()).then_some(v)).collect();
            Column::new(f.id.as_str().into(), vals)
        })
        .collect();
    if let Some(l) = &d.labels {
        let v: Vec<f64> = l.iter().map(|&x| f64::from(x)).collect();
        cols.push(Column::new("label".into(), v));
    }
    DataFrame::new(d.n_rows(), cols)
}

fn scalar(df: &DataFrame, name: &str) -> f64 {
    df.column(name)
        .ok()
        .and_then(|c| c.cast(&DataType::Float64).ok())
        .and_then(|c| c.f64().ok().and_then(|s| s.get(0)))
        .unwrap_or(f64::NAN)
}

/// Why statistics could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EdaError {
    #[error("the dataset has no rows")]
    Empty,
    #[error("{0}")]
    Polars(String),
    #[error("cancelled")]
    Cancelled(#[from] crate::util::progress::Cancelled),
}

/// Computes everything the Explore tab shows.
pub fn compute(d: &Dataset, reporter: &dyn Reporter) -> Result<Eda, EdaError> {
    let n = d.n_rows();
    if n == 0 {
        return Err(EdaError::Empty);
    }
    reporter.stage("summary statistics", 0, 4);
    let df = frame(d).map_err(|e| EdaError::Polars(e.to_string()))?;
    let summary = summary_table(&df)?;
    reporter.check()?;

    reporter.stage("correlations", 1, 4);
    let mut names: Vec<String> = catalog().ids().map(str::to_string).collect();
    if d.labels.is_some() {
        names.push("label".into());
    }
    let corr = correlations(df, &names, &summary)?;
    let high_pairs = high_pairs(&corr);
    let label_corr = if d.labels.is_some() {
        (0..N_FEATURES).map(|i| corr[i][N_FEATURES]).collect()
    } else {
        Vec::new()
    };

    reporter.stage("histograms", 2, 4);
    let histograms = d
        .columns
        .iter()
        .zip(&summary)
        .map(|(c, s)| histogram(c, d.labels.as_deref(), s))
        .collect();

    reporter.stage("PCA", 3, 4);
    let pca = pca(d, &summary, 3000, 7);

    let typical_legit = typical_legit(d);
    reporter.stage("done", 4, 4);
    Ok(Eda {
        rows: n,
        class_counts: d.labels.as_ref().map(|l| {
            let pos = l.iter().filter(|&&v| v == 1).count();
            [l.len() - pos, pos]
        }),
        summary,
        corr_names: names,
        corr,
        label_corr,
        high_pairs,
        histograms,
        pca,
        typical_legit,
    })
}

/// The summary table: one lazy select with nine expressions per feature (count,
/// missing, mean, std, min, quartiles, max).
fn summary_table(df: &DataFrame) -> Result<Vec<Summary>, EdaError> {
    let cat = catalog();
    let mut exprs = Vec::new();
    for f in &cat.features {
        let c = || col(f.id.as_str());
        let id = &f.id;
        exprs.extend([
            c().count().alias(format!("{id}_count")),
            c().null_count().alias(format!("{id}_missing")),
            c().mean().alias(format!("{id}_mean")),
            c().std(1).alias(format!("{id}_std")),
            c().min().alias(format!("{id}_min")),
            c().quantile(lit(0.25), QuantileMethod::Linear)
                .alias(format!("{id}_q25")),
            c().median().alias(format!("{id}_median")),
            c().quantile(lit(0.75), QuantileMethod::Linear)
                .alias(format!("{id}_q75")),
            c().max().alias(format!("{id}_max")),
        ]);
    }
    let stats = df
        .clone()
        .lazy()
        .select(exprs)
        .collect()
        .map_err(|e| EdaError::Polars(e.to_string()))?;
    Ok(cat
        .features
        .iter()
        .map(|f| {
            let g = |s: &str| scalar(&stats, &format!("{}_{s}", f.id));
            Summary {
                count: g("count") as usize,
                missing: g("missing") as usize,
                mean: g("mean"),
                std: g("std"),
                min: g("min"),
                q25: g("q25"),
                median: g("median"),
                q75: g("q75"),
                max: g("max"),
            }
        })
        .collect())
}

/// The correlation matrix of the columns `names`: missing values are filled with the
/// column median first (X13 has a handful), then one lazy select of pairwise Pearson
/// coefficients. The diagonal is 1, NaN for a constant feature.
// Symmetric matrices read more clearly with (i, j) indices than with iterators.
#[allow(clippy::needless_range_loop)]
fn correlations(
    df: DataFrame,
    names: &[String],
    summary: &[Summary],
) -> Result<Vec<Vec<f64>>, EdaError> {
    let filled = df
        .lazy()
        .with_columns(
            names
                .iter()
                .map(|c| col(c.as_str()).fill_null(col(c.as_str()).median()))
                .collect::<Vec<_>>(),
        )
        .collect()
        .map_err(|e| EdaError::Polars(e.to_string()))?;
    let k = names.len();
    let mut pair_exprs = Vec::new();
    for i in 0..k {
        for j in i + 1..k {
            pair_exprs.push(
                pearson_corr(col(names[i].as_str()), col(names[j].as_str()))
                    .alias(format!("{i}_{j}")),
            );
        }
    }
    let corr_df = filled
        .lazy()
        .select(pair_exprs)
        .collect()
        .map_err(|e| EdaError::Polars(e.to_string()))?;
    let mut corr = vec![vec![f64::NAN; k]; k];
    for i in 0..k {
        corr[i][i] = if summary.get(i).is_none_or(|s| s.std > 0.0) {
            1.0
        } else {
            f64::NAN
        };
        for j in i + 1..k {
            let r = scalar(&corr_df, &format!("{i}_{j}"));
            corr[i][j] = r;
            corr[j][i] = r;
        }
    }
    Ok(corr)
}

/// The feature pairs with |r| > 0.8: (i, j, r), i < j, by decreasing |r|.
fn high_pairs(corr: &[Vec<f64>]) -> Vec<(usize, usize, f64)> {
    let mut high_pairs: Vec<(usize, usize, f64)> = (0..N_FEATURES)
        .flat_map(|i| (i + 1..N_FEATURES).map(move |j| (i, j)))
        .map(|(i, j)| (i, j, corr[i][j]))
        .filter(|&(_, _, r)| r.abs() > 0.8)
        .collect();
    high_pairs.sort_by(|a, b| b.2.abs().total_cmp(&a.2.abs()));
    high_pairs
}

/// The typical legitimate account: per-feature medians of the legitimate rows (of
/// all rows without labels), whole numbers for every kind but continuous ones (a
/// median of an even count can fall between two integers).
fn typical_legit(d: &Dataset) -> Vec<f64> {
    let legit: Vec<usize> = match &d.labels {
        Some(l) => (0..d.n_rows()).filter(|&i| l[i] == 0).collect(),
        None => (0..d.n_rows()).collect(),
    };
    d.columns
        .iter()
        .zip(&catalog().features)
        .map(|(c, f)| {
            let m = median(&legit.iter().map(|&i| c[i]).collect::<Vec<_>>());
            if f.kind == crate::data::catalog::Kind::Continuous {
                m
            } else {
                m.round()
            }
        })
        .collect()
}

fn histogram(values: &[f64], labels: Option<&[u8]>, s: &Summary) -> Histogram {
    const MAX_BINS: usize = 40;
    let integral = values.iter().all(|v| v.is_nan() || v.fract() == 0.0);
    let (lo, hi) = (s.min, s.max);
    let mut clipped = false;
    let (edges, discrete) = if !lo.is_finite() {
        (vec![0.0, 1.0], true)
    } else if integral && hi - lo < MAX_BINS as f64 {
        let k = (hi - lo) as usize + 1;
        ((0..=k).map(|i| lo - 0.5 + i as f64).collect(), true)
    } else {
        // Heavy tails (account age, message counts): cover up to the 99th percentile
        // and put the rest in the last bin.
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_unstable_by(f64::total_cmp);
        let p99 = sorted[((sorted.len() - 1) as f64 * 0.99) as usize];
        let top = if p99 > lo { p99 } else { hi };
        clipped = top < hi;
        let w = (top - lo) / MAX_BINS as f64;
        ((0..=MAX_BINS).map(|i| lo + w * i as f64).collect(), false)
    };
    let nb = edges.len() - 1;
    let mut counts = [vec![0u64; nb], vec![0u64; nb]];
    let (first, width) = (edges[0], (edges[nb] - edges[0]) / nb as f64);
    for (i, &v) in values.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        let b = if width > 0.0 {
            (((v - first) / width).floor().max(0.0) as usize).min(nb - 1)
        } else {
            0
        };
        let class = labels.map_or(0, |l| l[i] as usize);
        counts[class][b] += 1;
    }
    Histogram {
        edges,
        discrete,
        clipped,
        counts,
    }
}

/// PCA of a sample (up to `max_points`, spammers over-represented so they are visible),
/// features standardised with the full data's mean and std.
#[allow(clippy::needless_range_loop)]
fn pca(d: &Dataset, summary: &[Summary], max_points: usize, seed: u64) -> Option<Pca> {
    let n = d.n_rows();
    if n < 3 {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let mut idx: Vec<usize> = match &d.labels {
        Some(l) => {
            let mut pos: Vec<usize> = (0..n).filter(|&i| l[i] == 1).collect();
            let mut neg: Vec<usize> = (0..n).filter(|&i| l[i] == 0).collect();
            rng.shuffle(&mut pos);
            rng.shuffle(&mut neg);
            pos.truncate(max_points / 2);
            neg.truncate(max_points - pos.len());
            pos.into_iter().chain(neg).collect()
        }
        None => {
            let mut all: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut all);
            all.truncate(max_points);
            all
        }
    };
    idx.sort_unstable();
    let m = idx.len();
    let z: Vec<Vec<f64>> = idx
        .iter()
        .map(|&i| {
            d.columns
                .iter()
                .zip(summary)
                .map(|(c, s)| {
                    let v = if c[i].is_nan() { s.median } else { c[i] };
                    if s.std > 0.0 {
                        (v - s.mean) / s.std
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let k = N_FEATURES;
    let mut cov = vec![vec![0.0; k]; k];
    for row in &z {
        for a in 0..k {
            for b in a..k {
                cov[a][b] += row[a] * row[b];
            }
        }
    }
    for a in 0..k {
        for b in a..k {
            cov[a][b] /= (m - 1) as f64;
            cov[b][a] = cov[a][b];
        }
    }
    let trace: f64 = (0..k).map(|a| cov[a][a]).sum();
    if trace <= 0.0 {
        return None;
    }
    // Two leading eigenvectors by power iteration with deflation.
    let mut vecs: Vec<Vec<f64>> = Vec::new();
    let mut vals = [0.0; 2];
    for (c, val) in vals.iter_mut().enumerate() {
        let mut v: Vec<f64> = (0..k).map(|i| 1.0 + (i * (c + 1)) as f64 * 0.01).collect();
        let mut lambda = 0.0;
        for _ in 0..500 {
            let mut w: Vec<f64> = (0..k)
                .map(|a| (0..k).map(|b| cov[a][b] * v[b]).sum())
                .collect();
            for u in &vecs {
                let dot: f64 = w.iter().zip(u).map(|(x, y)| x * y).sum();
                for (wi, ui) in w.iter_mut().zip(u) {
                    *wi -= dot * ui;
                }
            }
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            for x in w.iter_mut() {
                *x /= norm;
            }
            let converged = (norm - lambda).abs() < 1e-12 * norm.max(1.0);
            lambda = norm;
            v = w;
            if converged {
                break;
            }
        }
        *val = lambda;
        vecs.push(v);
    }
    let points = z
        .iter()
        .map(|row| {
            let p = |u: &Vec<f64>| row.iter().zip(u).map(|(x, y)| x * y).sum::<f64>();
            [p(&vecs[0]), p(&vecs[1])]
        })
        .collect();
    Some(Pca {
        points,
        labels: idx
            .iter()
            .map(|&i| d.labels.as_ref().map_or(0, |l| l[i]))
            .collect(),
        explained: [vals[0] / trace, vals[1] / trace],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::stats::pearson;
    use crate::data::synth::{SynthParams, default_dataset};
    use crate::util::progress::NoProgress;

    #[test]
    fn statistics_agree_with_direct_computation() {
        let d = default_dataset(SynthParams {
            rows: 5000,
            seed: 3,
        });
        let e = compute(&d, &NoProgress).unwrap();
        assert_eq!(e.rows, 5000);
        assert_eq!(e.class_counts, Some([5000 - d.positives(), d.positives()]));
        // X16 (index 15): compare with plain Rust.
        let c = &d.columns[15];
        let mean = c.iter().sum::<f64>() / c.len() as f64;
        let s = &e.summary[15];
        assert!((s.mean - mean).abs() < 1e-9);
        assert_eq!(s.min, c.iter().copied().fold(f64::INFINITY, f64::min));
        assert_eq!(s.median, median(c));
        assert_eq!(s.count + s.missing, 5000);
        // Correlation of the derived pair X18 ~ X16.
        let r = pearson(&d.columns[17], &d.columns[15]);
        assert!(
            (e.corr[17][15] - r).abs() < 1e-9,
            "{} vs {r}",
            e.corr[17][15]
        );
        assert!(e.high_pairs.iter().any(|&(i, j, _)| (i, j) == (15, 17)));
        assert_eq!(e.corr_names.last().map(String::as_str), Some("label"));
        assert_eq!(e.label_corr.len(), 51);
        // X19 (urgent messages) is positively correlated with being a spammer.
        assert!(e.label_corr[18] > 0.2);
        // Histograms count every non-missing value once.
        for (h, s) in e.histograms.iter().zip(&e.summary) {
            let total: u64 = h.counts[0].iter().chain(&h.counts[1]).sum();
            assert_eq!(total as usize, s.count);
        }
        assert!(e.histograms[9].discrete && !e.histograms[0].discrete);
        let p = e.pca.as_ref().unwrap();
        assert_eq!(p.points.len(), p.labels.len());
        assert!(p.explained[0] >= p.explained[1] && p.explained[0] > 0.0);
        assert_eq!(e.typical_legit.len(), 51);
        assert_eq!(
            e.typical_legit[18], 0.0,
            "a typical legitimate account sends no urgent messages"
        );
    }

    #[test]
    fn works_without_labels() {
        let mut d = default_dataset(SynthParams { rows: 300, seed: 4 });
        d.labels = None;
        let e = compute(&d, &NoProgress).unwrap();
        assert!(e.class_counts.is_none() && e.label_corr.is_empty());
        assert_eq!(e.corr.len(), 51);
    }
}
