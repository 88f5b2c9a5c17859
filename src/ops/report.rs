//! Report folder: a Markdown model card with PNG charts (drawn by plotters' bitmap
//! backend, no display needed) and the scored review queue as CSV.
//!
//! Layout of `DIR`:
//! - `model_card.md`: data source, model and parameters, holdout metrics at the
//!   threshold, importance, the latest model comparison, feedback and version history
//! - `charts/class_balance.png`, `charts/importance.png`, `charts/correlation.png`,
//!   `charts/roc_pr.png`, `charts/confusion.png` (+ `charts/comparison_roc.png` when a
//!   comparison was run)
//! - `scored_queue.csv`: every account of the data scored by the version, ranked by
//!   probability, with its three largest contributions
//!
//! Each file is written to a temporary name and renamed, so an interrupted export
//! leaves complete files only.

use crate::data::Dataset;
use crate::data::catalog::catalog;
use crate::data::eda::Eda;
use crate::eval::metrics::{Metrics, pr_curve, roc_curve};
use crate::model::Model;
use crate::model::explain::Method;
use crate::ops::compare::Saved;
use crate::ops::error::{Error, Result};
use crate::ops::score::{ScoredBatch, score_batch, write_batch_csv};
use crate::store::feedback::FeedbackStats;
use crate::store::{Holdout, Manifest, Registry, write_atomic};
use crate::util::progress::Reporter;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// Everything the report is made of.
pub struct ReportInput<'a> {
    pub manifest: &'a Manifest,
    pub model: &'a Model,
    pub holdout: &'a Holdout,
    pub data: &'a Dataset,
    pub eda: &'a Eda,
    pub comparison: Option<&'a Saved>,
    pub feedback: Option<FeedbackStats>,
    /// All versions of the registry, ascending.
    pub versions: Vec<Manifest>,
}

/// What was written.
#[derive(Debug)]
pub struct Written {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub scored_rows: usize,
}

const FONT: &str = "sans-serif";
const W: u32 = 1000;

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // egui's own UI font, embedded in the binary: no system fonts needed.
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

fn chart_err(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |e| Error::io(path, format!("cannot draw chart: {e}"))
}

/// Renders a chart to PNG: plotters writes the file itself, so it draws to a temporary
/// name that is renamed when complete.
fn png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> std::result::Result<(), String>,
) -> Result<()> {
    register_font();
    // The bitmap backend picks the image format from the extension: keep ".png".
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("chart.png");
    let tmp = path.with_file_name(format!(".{name}.part.png"));
    {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.to_string())
            .map_err(chart_err(path))?;
        draw(&root).map_err(chart_err(path))?;
        root.present()
            .map_err(|e| e.to_string())
            .map_err(chart_err(path))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn e2s<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

const SPAM: RGBColor = RGBColor(200, 60, 50);
const LEGIT: RGBColor = RGBColor(60, 110, 190);

pub fn class_balance_chart(path: &Path, counts: [usize; 2]) -> Result<()> {
    png(path, (700, 480), |root| {
        let max = counts[0].max(counts[1]).max(1) as f64 * 1.15;
        let mut c = ChartBuilder::on(root)
            .caption("Class balance", (FONT, 26))
            .margin(16)
            .x_label_area_size(36)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..2f64, 0f64..max)
            .map_err(e2s)?;
        c.configure_mesh()
            .disable_x_mesh()
            .disable_x_axis()
            .y_desc("accounts")
            .label_style((FONT, 15))
            .draw()
            .map_err(e2s)?;
        let total = (counts[0] + counts[1]).max(1) as f64;
        for (i, (name, color)) in [("legitimate", LEGIT), ("spammer", SPAM)]
            .iter()
            .enumerate()
        {
            let x = i as f64;
            let v = counts[i] as f64;
            c.draw_series([Rectangle::new(
                [(x + 0.2, 0.0), (x + 0.8, v)],
                color.filled(),
            )])
            .map_err(e2s)?;
            c.draw_series([Text::new(
                format!("{name}: {} ({:.2}%)", counts[i], 100.0 * v / total),
                (x + 0.2, v + max * 0.03),
                (FONT, 17),
            )])
            .map_err(e2s)?;
        }
        Ok(())
    })
}

pub fn importance_chart(path: &Path, importance: &[f64], top: usize) -> Result<()> {
    let cat = catalog();
    let order = crate::model::explain::rank_by_magnitude(importance);
    let shown: Vec<usize> = order.into_iter().take(top).collect();
    png(path, (W, 60 + 28 * shown.len() as u32), |root| {
        let max = shown.first().map_or(1.0, |&f| importance[f]).max(1e-9) * 1.6;
        let n = shown.len() as f64;
        let mut c = ChartBuilder::on(root)
            .caption(
                format!("Feature importance (top {})", shown.len()),
                (FONT, 24),
            )
            .margin(14)
            .x_label_area_size(30)
            .y_label_area_size(10)
            .build_cartesian_2d(0f64..max, 0f64..n)
            .map_err(e2s)?;
        c.configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .label_style((FONT, 14))
            .draw()
            .map_err(e2s)?;
        for (rank, &f) in shown.iter().enumerate() {
            let y = n - rank as f64 - 1.0;
            let v = importance[f];
            c.draw_series([Rectangle::new(
                [(0.0, y + 0.15), (v, y + 0.85)],
                LEGIT.filled(),
            )])
            .map_err(e2s)?;
            let name = &cat.features[f].name;
            c.draw_series([Text::new(
                format!("{} {}  {:.3}", cat.features[f].id, name, v),
                (v + max * 0.01, y + 0.75),
                (FONT, 15),
            )])
            .map_err(e2s)?;
        }
        Ok(())
    })
}

/// Diverging blue-white-red colour for a correlation in [-1, 1].
fn corr_color(r: f64) -> RGBColor {
    let r = if r.is_finite() {
        r.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let t = r.abs();
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * t).round() as u8;
    let end = if r >= 0.0 { SPAM } else { LEGIT };
    RGBColor(mix(255, end.0), mix(255, end.1), mix(255, end.2))
}

pub fn correlation_chart(path: &Path, names: &[String], corr: &[Vec<f64>]) -> Result<()> {
    let n = names.len() as i32;
    png(path, (900, 900), |root| {
        let mut c = ChartBuilder::on(root)
            .caption("Pearson correlation (blue -1, white 0, red +1)", (FONT, 24))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0..n, 0..n)
            .map_err(e2s)?;
        c.configure_mesh()
            .disable_mesh()
            .x_labels(names.len().div_ceil(5))
            .y_labels(names.len().div_ceil(5))
            .x_label_formatter(&|i| names.get(*i as usize).cloned().unwrap_or_default())
            .y_label_formatter(&|i| {
                names
                    .get((n - 1 - *i) as usize)
                    .cloned()
                    .unwrap_or_default()
            })
            .label_style((FONT, 13))
            .draw()
            .map_err(e2s)?;
        c.draw_series((0..n).flat_map(|i| {
            (0..n).map(move |j| {
                let r = corr[i as usize][j as usize];
                Rectangle::new([(j, n - 1 - i), (j + 1, n - i)], corr_color(r).filled())
            })
        }))
        .map_err(e2s)?;
        Ok(())
    })
}

/// Unit-square axes of a ROC chart (false positive rate vs true positive rate).
fn roc_axes<'a, DB: DrawingBackend + 'a>(
    area: &'a DrawingArea<DB, Shift>,
    caption: String,
) -> std::result::Result<
    ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    String,
> {
    let mut c = ChartBuilder::on(area)
        .caption(caption, (FONT, 22))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(e2s)?;
    c.configure_mesh()
        .x_desc("false positive rate")
        .y_desc("true positive rate")
        .label_style((FONT, 14))
        .draw()
        .map_err(e2s)?;
    Ok(c)
}

/// ROC (left) and precision-recall (right) of the holdout, with the operating point.
pub fn roc_pr_chart(
    path: &Path,
    holdout: &Holdout,
    metrics: &Metrics,
    threshold: f64,
) -> Result<()> {
    let roc = roc_curve(&holdout.labels, &holdout.scores)?;
    let pr = pr_curve(&holdout.labels, &holdout.scores)?;
    png(path, (1200, 560), |root| {
        let (left, right) = root.split_horizontally(600);
        let mut c = roc_axes(&left, format!("ROC (AUC {:.4})", metrics.roc_auc))?;
        c.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3)))
            .map_err(e2s)?;
        c.draw_series(LineSeries::new(
            roc.iter().map(|p| (p.fpr, p.tpr)),
            SPAM.stroke_width(2),
        ))
        .map_err(e2s)?;
        let cm = metrics.confusion();
        let fpr = cm.fp as f64 / (cm.fp + cm.tn).max(1) as f64;
        c.draw_series([Circle::new((fpr, metrics.recall), 6, BLACK.filled())])
            .map_err(e2s)?;
        c.draw_series([Text::new(
            format!("threshold {threshold:.2}"),
            (fpr + 0.03, metrics.recall - 0.05),
            (FONT, 15),
        )])
        .map_err(e2s)?;
        let mut c = ChartBuilder::on(&right)
            .caption(
                format!("Precision-recall (AP {:.4})", metrics.average_precision),
                (FONT, 22),
            )
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)
            .map_err(e2s)?;
        c.configure_mesh()
            .x_desc("recall")
            .y_desc("precision")
            .label_style((FONT, 14))
            .draw()
            .map_err(e2s)?;
        c.draw_series(LineSeries::new(
            pr.iter().map(|p| (p.recall, p.precision)),
            LEGIT.stroke_width(2),
        ))
        .map_err(e2s)?;
        c.draw_series([Circle::new(
            (metrics.recall, metrics.precision),
            6,
            BLACK.filled(),
        )])
        .map_err(e2s)?;
        Ok(())
    })
}

pub fn confusion_chart(path: &Path, metrics: &Metrics, threshold: f64) -> Result<()> {
    let cm = metrics.confusion();
    png(path, (640, 560), |root| {
        let mut c = ChartBuilder::on(root)
            .caption(
                format!("Confusion matrix at threshold {threshold:.2}"),
                (FONT, 22),
            )
            .margin(16)
            .build_cartesian_2d(0..2, 0..2)
            .map_err(e2s)?;
        c.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .disable_y_axis()
            .draw()
            .map_err(e2s)?;
        // Column = predicted, row = actual; legitimate accounts on the top row.
        let cells = [
            (0, 1, cm.tn, "TN", "legitimate, passed"),
            (1, 1, cm.fp, "FP", "legitimate, flagged"),
            (0, 0, cm.fn_, "FN", "spammer, passed"),
            (1, 0, cm.tp, "TP", "spammer, flagged"),
        ];
        let max = cells.iter().map(|c| c.2).max().unwrap_or(1).max(1) as f64;
        for (x, y, v, name, what) in cells {
            let t = ((v as f64).ln_1p() / max.ln_1p()).clamp(0.0, 1.0);
            let color = RGBColor(
                (255.0 - 150.0 * t) as u8,
                (255.0 - 110.0 * t) as u8,
                (255.0 - 40.0 * t) as u8,
            );
            c.draw_series([Rectangle::new([(x, y), (x + 1, y + 1)], color.filled())])
                .map_err(e2s)?;
            c.draw_series([Rectangle::new(
                [(x, y), (x + 1, y + 1)],
                BLACK.stroke_width(1),
            )])
            .map_err(e2s)?;
            // Labels are placed in pixels from the cell's top-left corner.
            let (px, py) = c.backend_coord(&(x, y + 1));
            root.draw(&Text::new(
                format!("{name} {v}"),
                (px + 20, py + 40),
                (FONT, 28),
            ))
            .map_err(e2s)?;
            root.draw(&Text::new(what, (px + 20, py + 80), (FONT, 17)))
                .map_err(e2s)?;
        }
        Ok(())
    })
}

/// Every compared model's ROC curve in one chart; the best by F1 and by AUC are named.
pub fn comparison_roc_chart(path: &Path, saved: &Saved) -> Result<()> {
    png(path, (900, 700), |root| {
        let mut c = roc_axes(root, "Model comparison: ROC curves on one holdout".into())?;
        for (i, (name, curve)) in saved.roc.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let auc = saved
                .rows
                .iter()
                .find(|r| &r.name == name)
                .map_or(f64::NAN, |r| r.roc_auc);
            c.draw_series(LineSeries::new(
                curve.iter().map(|p| (p[0], p[1])),
                color.stroke_width(2),
            ))
            .map_err(e2s)?
            .label(format!("{name} ({auc:.3})"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 14))
            .draw()
            .map_err(e2s)?;
        Ok(())
    })
}

fn fmt_metric(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "n/a".into()
    }
}

/// The Markdown model card.
pub fn model_card(
    input: &ReportInput<'_>,
    charts: &[(&str, &str)],
    scored: &ScoredBatch,
) -> String {
    [
        card_title(input.manifest),
        card_data(input),
        card_model(input.manifest),
        card_holdout(input.manifest),
        card_importance(input.model.importance()),
        card_correlations(input),
        card_comparison(input),
        card_feedback(input.feedback.as_ref()),
        card_history(input.manifest, &input.versions),
        card_files(input.manifest, charts, scored),
    ]
    .concat()
}

/// The card's title and when and by what it was generated.
fn card_title(m: &Manifest) -> String {
    let mut s = String::new();
    s += &format!("# spamscope model card: version {}\n\n", m.version);
    s += &format!(
        "Generated {} by spamscope {}.\n\n",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        env!("CARGO_PKG_VERSION")
    );
    s
}

/// "Data": the training data and its hash, the report's data and its class balance.
fn card_data(input: &ReportInput<'_>) -> String {
    let m = input.manifest;
    let mut s = String::new();
    s += "## Data\n\n";
    s += &card_training_data(m);
    s += &format!(
        "- Report data (scored queue, charts): {}\n",
        input.data.source.describe()
    );
    if let Some([neg, pos]) = input.eda.class_counts {
        s += &format!(
            "- {} accounts, {} spammers ({:.2}%), {} legitimate\n",
            neg + pos,
            pos,
            100.0 * pos as f64 / (neg + pos).max(1) as f64,
            neg
        );
    }
    s += "\n![class balance](charts/class_balance.png)\n\n";
    s
}

/// The training data and its hash.
fn card_training_data(m: &Manifest) -> String {
    format!(
        "- Training data: {}\n- sha256 of the data: `{}`\n",
        m.data.describe(),
        m.data.sha256
    )
}

/// The model card of version `m` as an MLflow run carries it, with its charts, written
/// to `dir` (`model_card.md`, `charts/roc_pr.png`, `charts/confusion.png`,
/// `charts/importance.png`): what a full report says of the version itself, without
/// the report data's sections (those need the data, and scoring it takes seconds).
pub fn write_version_card(
    dir: &Path,
    m: &Manifest,
    holdout: &Holdout,
    feedback: Option<&FeedbackStats>,
    versions: &[Manifest],
) -> Result<Vec<PathBuf>> {
    let charts_dir = dir.join("charts");
    std::fs::create_dir_all(&charts_dir).map_err(|e| Error::io(&charts_dir, e))?;
    let importance: Vec<f64> = m.importance.iter().map(|(_, v)| *v).collect();
    let mut files = vec![
        charts_dir.join("roc_pr.png"),
        charts_dir.join("confusion.png"),
        charts_dir.join("importance.png"),
    ];
    roc_pr_chart(&files[0], holdout, &m.metrics, m.threshold)?;
    confusion_chart(&files[1], &m.metrics, m.threshold)?;
    importance_chart(&files[2], &importance, 20)?;
    let card = [
        card_title(m),
        format!("## Data\n\n{}\n", card_training_data(m)),
        card_model(m),
        card_holdout(m),
        card_importance(&importance),
        card_feedback(feedback),
        card_history(m, versions),
    ]
    .concat();
    let p = dir.join("model_card.md");
    std::fs::write(&p, card).map_err(|e| Error::io(&p, e))?;
    files.push(p);
    Ok(files)
}

/// "Model": kind, lineage, status, training, imputation and the recipe's parameters.
fn card_model(m: &Manifest) -> String {
    let mut s = String::new();
    s += "## Model\n\n";
    s += &format!("- Kind: {}\n", m.model_kind());
    s += &format!(
        "- Created: {}{}\n",
        m.created_at,
        m.parent
            .map(|p| format!(", parent version {p}"))
            .unwrap_or_default()
    );
    s += &format!(
        "- Status: {:?}{}\n",
        m.status,
        m.status_reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    s += &format!(
        "- Trained on {} rows ({} spammers) in {:.1} s; {} feedback records used\n",
        m.train_rows, m.train_positives, m.train_seconds, m.feedback_used
    );
    s += "- Median imputation of missing values (medians of the training rows)\n";
    s += &format!(
        "- Calibration: {}\n",
        m.calibration
            .as_deref()
            .unwrap_or("none (saved before calibration existed: its score is not a probability)")
    );
    let recipe = ron::ser::to_string_pretty(&m.recipe(), ron::ser::PrettyConfig::default())
        .unwrap_or_else(|e| format!("(cannot print: {e})"));
    s += &format!("- Parameters:\n\n```ron\n{recipe}\n```\n\n");
    s
}

/// "Holdout metrics": how the version was evaluated, its metrics table, confusion
/// counts and charts.
fn card_holdout(m: &Manifest) -> String {
    let mut s = String::new();
    s += &format!("## Holdout metrics at threshold {:.2}\n\n", m.threshold);
    let how = match &m.evaluation {
        crate::store::Evaluation::Split {
            test_fraction,
            seed,
        } => format!(
            "a stratified {:.0}% holdout of the training data, seed {seed}",
            100.0 * test_fraction
        ),
        crate::store::Evaluation::TestFile { source } => {
            format!("the test file {}", source.describe())
        }
    };
    s += &format!(
        "Evaluated on {} accounts ({how}). A score above the threshold is flagged as a spammer.\n\n",
        m.test_rows
    );
    let x = &m.metrics;
    s += "| accuracy | precision | recall | F1 | ROC-AUC | average precision |\n|---:|---:|---:|---:|---:|---:|\n";
    s += &format!(
        "| {} | {} | {} | {} | {} | {} |\n\n",
        fmt_metric(x.accuracy),
        fmt_metric(x.precision),
        fmt_metric(x.recall),
        fmt_metric(x.f1),
        fmt_metric(x.roc_auc),
        fmt_metric(x.average_precision)
    );
    s += &format!(
        "Confusion: TN {}, FP {}, FN {}, TP {}.\n\n",
        x.tn, x.fp, x.fn_, x.tp
    );
    s += "![ROC and precision-recall](charts/roc_pr.png)\n\n![confusion matrix](charts/confusion.png)\n\n";
    s
}

/// "Feature importance": the model's fifteen most important features and the chart.
fn card_importance(imp: &[f64]) -> String {
    let cat = catalog();
    let mut s = String::new();
    s += "## Feature importance\n\n";
    s += "| rank | feature | name | category | importance |\n|---:|---|---|---|---:|\n";
    for (rank, f) in crate::model::explain::rank_by_magnitude(imp)
        .into_iter()
        .take(15)
        .enumerate()
    {
        let c = &cat.features[f];
        s += &format!(
            "| {} | {} | {} | {} | {:.4} |\n",
            rank + 1,
            c.id,
            c.name,
            c.category,
            imp[f]
        );
    }
    s += "\n![importance](charts/importance.png)\n\n";
    s
}

/// "Correlations": the heatmap and the feature pairs with |r| > 0.8.
fn card_correlations(input: &ReportInput<'_>) -> String {
    let mut s = String::new();
    s += "## Correlations\n\n![correlation heatmap](charts/correlation.png)\n\n";
    if input.eda.high_pairs.is_empty() {
        s += "No feature pair has |r| > 0.8.\n\n";
    } else {
        s += "Pairs with |r| > 0.8:\n\n";
        for (a, b, r) in &input.eda.high_pairs {
            s += &format!(
                "- {} / {}: {:.3}\n",
                input.eda.corr_names[*a], input.eda.corr_names[*b], r
            );
        }
        s += "\n";
    }
    s
}

/// "Model comparison": the registry's last comparison, or how to run one.
fn card_comparison(input: &ReportInput<'_>) -> String {
    let mut s = String::new();
    s += "## Model comparison\n\n";
    match input.comparison {
        Some(c) => {
            s += &format!(
                "Run {} on {}: {} training / {} test accounts ({} spammers), one stratified split, metrics at threshold 0.5.\n\n",
                c.created_at, c.data_label, c.train_rows, c.test_rows, c.test_positives
            );
            s += &c.markdown;
            s += "\n![comparison ROC curves](charts/comparison_roc.png)\n\n";
        }
        None => {
            s += "No comparison has been run on this registry yet (`spamscope compare`, or the Compare tab).\n\n"
        }
    }
    s
}

/// "Feedback": how many moderator decisions, how often the model agreed, by version.
fn card_feedback(feedback: Option<&FeedbackStats>) -> String {
    let mut s = String::new();
    s += "## Feedback\n\n";
    match feedback {
        Some(f) if f.total > 0 => {
            s += &format!(
                "{} moderator decisions recorded; the model's verdict agreed with {}.\n\n| version | decisions | agreed |\n|---|---:|---:|\n",
                f.total,
                f.agreement
                    .map_or("n/a".into(), |a| format!("{:.1}%", 100.0 * a))
            );
            for v in &f.by_version {
                s += &format!(
                    "| {} | {} | {} |\n",
                    v.version.map_or("none".into(), |v| v.to_string()),
                    v.total,
                    v.agreed
                );
            }
            s += "\n";
        }
        _ => s += "No moderator feedback recorded yet.\n\n",
    }
    s
}

/// "Version history": a row per version (this one marked) with its gate's reason.
fn card_history(m: &Manifest, versions: &[Manifest]) -> String {
    let mut s = String::new();
    s += "## Version history\n\n| version | created | kind | status | ROC-AUC | F1 | feedback used | gate |\n|---:|---|---|---|---:|---:|---:|---|\n";
    for v in versions {
        s += &format!(
            "| {}{} | {} | {} | {:?} | {} | {} | {} | {} |\n",
            v.version,
            if v.version == m.version {
                " (this)"
            } else {
                ""
            },
            v.created_at,
            v.model_kind(),
            v.status,
            fmt_metric(v.metrics.roc_auc),
            fmt_metric(v.metrics.f1),
            v.feedback_used,
            v.gate
                .as_ref()
                .map_or(String::new(), |g| g.reason.replace('|', "/")),
        );
    }
    s
}

/// "Files": the scored queue and each chart, with what it holds.
fn card_files(m: &Manifest, charts: &[(&str, &str)], scored: &ScoredBatch) -> String {
    let mut s = String::new();
    s += "\n## Files\n\n";
    s += &format!(
        "- `scored_queue.csv`: all {} accounts of the report data scored by version {}, highest probability first, with the three largest contributions ({}).\n",
        scored.len(),
        m.version,
        scored.method.map_or("none", |x| x.name())
    );
    for (file, what) in charts {
        s += &format!("- `charts/{file}`: {what}\n");
    }
    s
}

/// What a front-end already holds for a report; whatever is missing is read from the
/// registry or computed.
#[derive(Default)]
pub struct Known<'a> {
    pub holdout: Option<&'a Holdout>,
    pub eda: Option<&'a Eda>,
    pub comparison: Option<&'a Saved>,
    pub feedback: Option<FeedbackStats>,
}

/// Gathers a report's inputs for version `manifest` (`model`) described on `data` and
/// writes the folder to `dir`, or to the registry's report folder for that version.
pub fn export(
    registry: &Registry,
    manifest: &Manifest,
    model: &Model,
    data: &Dataset,
    known: Known<'_>,
    dir: Option<PathBuf>,
    reporter: &dyn Reporter,
) -> Result<Written> {
    let dir = dir.unwrap_or_else(|| {
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .replace(':', "-");
        registry.layout().report_dir(manifest.version, &stamp)
    });
    let loaded_holdout;
    let holdout = match known.holdout {
        Some(h) => h,
        None => {
            loaded_holdout = registry.load_holdout(manifest.version)?;
            &loaded_holdout
        }
    };
    let computed_eda;
    let eda = match known.eda {
        Some(e) => e,
        None => {
            computed_eda = crate::data::eda::compute(data, reporter)?;
            &computed_eda
        }
    };
    let loaded_comparison;
    let comparison = match known.comparison {
        Some(c) => Some(c),
        None => {
            loaded_comparison = crate::ops::compare::load_latest(registry)?;
            loaded_comparison.as_ref()
        }
    };
    let feedback = match known.feedback {
        Some(f) => f,
        None => crate::store::feedback::FeedbackStore::of(registry)?.stats()?,
    };
    let versions = registry
        .list()?
        .into_iter()
        .filter_map(|e| e.manifest.ok())
        .collect();
    let input = ReportInput {
        manifest,
        model,
        holdout,
        data,
        eda,
        comparison,
        feedback: Some(feedback),
        versions,
    };
    write_report(&dir, &input, reporter)
}

/// Writes the whole report folder.
pub fn write_report(
    dir: &Path,
    input: &ReportInput<'_>,
    reporter: &dyn Reporter,
) -> Result<Written> {
    let charts_dir = dir.join("charts");
    std::fs::create_dir_all(&charts_dir).map_err(|e| Error::io(&charts_dir, e))?;
    let mut files = Vec::new();
    let mut charts: Vec<(&str, &str)> = Vec::new();
    let m = input.manifest;
    reporter.stage("charts", 0, 6);
    let p = charts_dir.join("class_balance.png");
    let counts = input.eda.class_counts.unwrap_or([0, 0]);
    class_balance_chart(&p, counts)?;
    files.push(p);
    charts.push(("class_balance.png", "accounts per class"));
    reporter.stage("charts", 1, 6);
    let p = charts_dir.join("importance.png");
    importance_chart(&p, input.model.importance(), 20)?;
    files.push(p);
    charts.push(("importance.png", "top 20 features by importance"));
    reporter.stage("charts", 2, 6);
    let p = charts_dir.join("correlation.png");
    correlation_chart(&p, &input.eda.corr_names, &input.eda.corr)?;
    files.push(p);
    charts.push(("correlation.png", "Pearson correlation heatmap"));
    reporter.stage("charts", 3, 6);
    let p = charts_dir.join("roc_pr.png");
    roc_pr_chart(&p, input.holdout, &m.metrics, m.threshold)?;
    files.push(p);
    charts.push(("roc_pr.png", "holdout ROC and precision-recall curves"));
    reporter.stage("charts", 4, 6);
    let p = charts_dir.join("confusion.png");
    confusion_chart(&p, &m.metrics, m.threshold)?;
    files.push(p);
    charts.push(("confusion.png", "holdout confusion matrix"));
    reporter.stage("charts", 5, 6);
    if let Some(c) = input.comparison {
        let p = charts_dir.join("comparison_roc.png");
        comparison_roc_chart(&p, c)?;
        files.push(p);
        charts.push(("comparison_roc.png", "ROC curves of the compared models"));
    }
    reporter.stage("charts", 6, 6);

    let scored = score_batch(
        input.data,
        input.model,
        m.version,
        m.threshold,
        3,
        Method::PathAttribution,
        reporter,
    )?;
    let mut order: Vec<usize> = (0..scored.len()).collect();
    order.sort_by(|&a, &b| scored.score[b].total_cmp(&scored.score[a]).then(a.cmp(&b)));
    let p = dir.join("scored_queue.csv");
    write_batch_csv(input.data, &scored, Some(&order), &p)?;
    files.push(p);

    let p = dir.join("model_card.md");
    write_atomic(&p, model_card(input, &charts, &scored).as_bytes())?;
    files.push(p);
    Ok(Written {
        dir: dir.to_path_buf(),
        files,
        scored_rows: scored.len(),
    })
}
