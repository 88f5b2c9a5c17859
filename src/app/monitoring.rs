//! "Monitoring": scoring latency, errors by kind, feedback agreement over time per
//! version, and data drift per feature (PSI) with the usual 0.1 / 0.25 bands.

use crate::data::catalog::{N_FEATURES, catalog};
use crate::eval::monitor::{PSI_MAJOR, PSI_MODERATE};
use crate::ops::alert::AlertKind;
use crate::workbench::Workbench;
use eframe::egui::{self, Color32};
use egui_plot::{Bar, BarChart, HLine, Legend, Line, Plot, PlotPoints, Points, VLine};

/// Alerts to show in the banner: drift above 0.25 on an important feature, feedback
/// agreement more than 10 points below the version's holdout precision.
pub fn alerts(wb: &Workbench) -> Vec<(AlertKind, String)> {
    let mut out = Vec::new();
    let Some(active) = &wb.active else { return out };
    if let Some(d) = wb
        .drift
        .as_ref()
        .filter(|d| d.version == active.manifest.version)
    {
        let imp = &active.model.importance();
        for (i, &p) in d.psi.iter().enumerate() {
            if p > PSI_MAJOR && important(imp, i) {
                let f = &catalog().features[i];
                out.push((AlertKind::Drift, format!(
                    "Data drift: {} {} has PSI {:.2} (> {PSI_MAJOR}) in recently scored accounts; it weighs {:.1}% in v{}.",
                    f.id,
                    f.label,
                    p,
                    imp[i] * 100.0,
                    active.manifest.version
                )));
            }
        }
    }
    if let Some(s) = &wb.feedback
        && let Some(v) = s
            .by_version
            .iter()
            .find(|v| v.version == Some(active.manifest.version))
        && v.total >= 20
    {
        let agreement = v.agreed as f64 / v.total as f64;
        let precision = active.manifest.metrics.precision;
        if agreement < precision - 0.10 {
            out.push((AlertKind::AgreementDrop, format!(
                "Feedback agreement for v{} is {:.1}%, more than 10 points below its holdout precision {:.1}% ({} records).",
                active.manifest.version,
                agreement * 100.0,
                precision * 100.0,
                v.total
            )));
        }
    }
    out
}

/// Among the ten most important features, or weighing at least 2%.
fn important(importance: &[f64], i: usize) -> bool {
    let rank = importance.iter().filter(|&&v| v > importance[i]).count();
    rank < 10 || importance[i] >= 0.02
}

#[derive(Default)]
pub struct MonitoringPanel;

impl MonitoringPanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, wb: &mut Workbench) {
        wb.request_drift();
        egui::ScrollArea::vertical()
            .id_salt("monitoring")
            .show(ui, |ui| {
                ui.columns(2, |cols| {
                    latency(&mut cols[0], wb);
                    errors(&mut cols[1], wb);
                });
                ui.separator();
                ui.columns(2, |cols| {
                    agreement(&mut cols[0], wb);
                    drift(&mut cols[1], wb);
                });
            });
    }
}

fn latency(ui: &mut egui::Ui, wb: &Workbench) {
    ui.heading("Scoring latency (one account)");
    let lat = wb.monitor.latencies_us();
    let Some((p50, p99)) = wb.monitor.latency_percentiles() else {
        ui.label("No account scored on the score screen yet.");
        return;
    };
    ui.label(format!(
        "{} scorings: p50 {:.0} µs, p99 {:.0} µs.",
        lat.len(),
        p50,
        p99
    ));
    if let Some(q) = &wb.queue {
        ui.label(format!(
            "Last batch: {} accounts in {:.1} s ({:.0} accounts/s, {:.1} µs per account).",
            q.batch.len(),
            q.batch.seconds,
            q.batch.rows_per_second(),
            q.batch.seconds * 1e6 / q.batch.len().max(1) as f64
        ));
    }
    // Log-spaced histogram of latencies.
    let lo = lat.iter().copied().fold(f64::INFINITY, f64::min).max(1.0);
    let hi = lat.iter().copied().fold(0.0, f64::max).max(lo * 1.01);
    let nb = 30;
    let (llo, lhi) = (lo.log10(), hi.log10());
    let width = (lhi - llo) / nb as f64;
    let mut counts = vec![0u64; nb];
    for &v in lat {
        let b = (((v.max(1.0).log10() - llo) / width).floor().max(0.0) as usize).min(nb - 1);
        counts[b] += 1;
    }
    Plot::new("latency")
        .height(260.0)
        .x_axis_label("latency (µs, log scale)")
        .y_axis_label("scorings")
        .x_axis_formatter(|m, _| format!("{:.0}", 10f64.powf(m.value)))
        .show(ui, |p| {
            p.bar_chart(BarChart::new(
                "latency",
                counts
                    .iter()
                    .enumerate()
                    .map(|(b, &c)| {
                        Bar::new(llo + width * (b as f64 + 0.5), c as f64).width(width * 0.9)
                    })
                    .collect(),
            ));
            p.vline(VLine::new("p50", p50.max(1.0).log10()).color(Color32::from_rgb(70, 170, 90)));
            p.vline(VLine::new("p99", p99.max(1.0).log10()).color(Color32::from_rgb(215, 70, 60)));
        });
}

fn errors(ui: &mut egui::Ui, wb: &Workbench) {
    ui.heading("Errors by kind (this session)");
    let e = wb.monitor.errors();
    if e.is_empty() {
        ui.label("No errors.");
        return;
    }
    egui::Grid::new("errors").striped(true).show(ui, |ui| {
        ui.strong("Kind");
        ui.strong("Count");
        ui.end_row();
        for (k, n) in e {
            ui.label(k);
            ui.label(n.to_string());
            ui.end_row();
        }
    });
}

fn agreement(ui: &mut egui::Ui, wb: &Workbench) {
    ui.heading("Feedback agreement over time");
    if wb.agreement.is_empty() {
        ui.label("No feedback with a model verdict yet.");
        return;
    }
    let mut hours: Vec<&str> = wb.agreement.iter().map(|a| a.hour.as_str()).collect();
    hours.dedup();
    let x_of = |h: &str| hours.iter().position(|x| *x == h).unwrap_or(0) as f64;
    let mut versions: Vec<u32> = wb.agreement.iter().map(|a| a.version).collect();
    versions.sort_unstable();
    versions.dedup();
    let labels: Vec<String> = hours.iter().map(|h| h.replace('T', " ") + "h").collect();
    let precision = wb
        .active
        .as_ref()
        .map(|a| (a.manifest.version, a.manifest.metrics.precision));
    Plot::new("agreement")
        .height(260.0)
        .legend(Legend::default())
        .include_y(0.0)
        .include_y(1.0)
        .y_axis_label("share of verdicts moderators agreed with")
        .x_axis_formatter(move |m, _| {
            let k = m.value.round();
            if (m.value - k).abs() > 1e-6 || k < 0.0 || k as usize >= labels.len() {
                return String::new();
            }
            labels[k as usize].clone()
        })
        .show(ui, |p| {
            for v in &versions {
                let pts: Vec<[f64; 2]> = wb
                    .agreement
                    .iter()
                    .filter(|a| a.version == *v)
                    .map(|a| [x_of(&a.hour), a.agreed as f64 / a.total.max(1) as f64])
                    .collect();
                p.line(Line::new(format!("v{v}"), PlotPoints::from(pts.clone())));
                p.points(Points::new(format!("v{v}"), PlotPoints::from(pts)).radius(3.0));
            }
            if let Some((v, prec)) = precision {
                p.hline(
                    HLine::new(format!("v{v} holdout precision - 10 pts"), prec - 0.10)
                        .color(Color32::from_rgb(215, 70, 60)),
                );
            }
        });
}

fn drift(ui: &mut egui::Ui, wb: &Workbench) {
    ui.heading("Data drift (PSI per feature)");
    let Some(active) = &wb.active else { return };
    if active.manifest.profiles.is_none() {
        ui.label(format!(
            "v{} has no training profile (made before drift monitoring); retrain to get one.",
            active.manifest.version
        ));
        return;
    }
    let Some(d) = wb
        .drift
        .as_ref()
        .filter(|d| d.version == active.manifest.version)
    else {
        ui.label(
            "Score accounts (review queue or score screen) to compare them with the training data.",
        );
        return;
    };
    ui.label(format!(
        "{} recently scored accounts against v{}'s training data. Below {PSI_MODERATE}: stable; {PSI_MODERATE} to {PSI_MAJOR}: moderate shift; above {PSI_MAJOR}: significant.",
        d.rows, d.version
    ));
    let color = |p: f64| {
        if p > PSI_MAJOR {
            Color32::from_rgb(215, 70, 60)
        } else if p > PSI_MODERATE {
            Color32::from_rgb(225, 185, 60)
        } else {
            Color32::from_rgb(70, 170, 90)
        }
    };
    Plot::new("drift")
        .height(260.0)
        .allow_scroll(false)
        .x_axis_label("feature (X1..X51)")
        .y_axis_label("PSI")
        .include_y(0.3)
        .show(ui, |p| {
            p.bar_chart(BarChart::new(
                "PSI",
                (0..N_FEATURES)
                    .map(|i| {
                        let f = &catalog().features[i];
                        Bar::new((i + 1) as f64, d.psi[i])
                            .name(format!("{} {}", f.id, f.label))
                            .fill(color(d.psi[i]))
                    })
                    .collect(),
            ));
            p.hline(HLine::new("0.1", PSI_MODERATE).color(Color32::from_rgb(225, 185, 60)));
            p.hline(HLine::new("0.25", PSI_MAJOR).color(Color32::from_rgb(215, 70, 60)));
        });
    let mut top: Vec<usize> = (0..N_FEATURES).collect();
    top.sort_by(|&a, &b| d.psi[b].total_cmp(&d.psi[a]));
    ui.label("Largest shifts:");
    for &i in top.iter().take(5) {
        let f = &catalog().features[i];
        ui.colored_label(
            color(d.psi[i]),
            format!("{} {}: PSI {:.3}", f.id, f.label, d.psi[i]),
        );
    }
}
