//! "Evaluate model": ROC and precision-recall curves of the active version on its
//! holdout, the confusion matrix, the reliability diagram before and after calibration,
//! and a threshold slider (or a threshold found from a target precision, a review
//! capacity or the costs of errors) that moves the operating point live and can be
//! saved as the version's threshold.

use crate::eval::calibration::{Reliability, cross_fitted, reliability};
use crate::eval::metrics::{Confusion, PrPoint, Ranked, RocPoint, pr_curve, roc_curve};
use crate::eval::threshold::{Criterion, OperatingPoint};
use crate::workbench::{JobKind, Workbench};
use eframe::egui::{self, Color32, RichText};
use egui_plot::{Line, PlotPoints, Points};
use serde::{Deserialize, Serialize};

/// Persisted: the working threshold per version, and what a threshold is found by.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EvaluateState {
    /// (version, threshold being explored).
    pub working: Option<(u32, f64)>,
    pub by: By,
    /// Target precision (0-1).
    pub precision: f64,
    /// Accounts the team reviews per day.
    pub capacity: f64,
    /// Cost of a missed spammer and of a wrongly flagged legitimate account.
    pub cost_missed: f64,
    pub cost_blocked: f64,
    /// Accounts scored per day.
    pub daily_volume: f64,
}

impl Default for EvaluateState {
    fn default() -> Self {
        EvaluateState {
            working: None,
            by: By::Precision,
            precision: 0.9,
            capacity: 300.0,
            cost_missed: 50.0,
            cost_blocked: 5.0,
            daily_volume: 20_000.0,
        }
    }
}

/// What a threshold is found by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum By {
    Precision,
    Capacity,
    Cost,
}

impl By {
    fn label(self) -> &'static str {
        match self {
            By::Precision => "target precision",
            By::Capacity => "review capacity",
            By::Cost => "costs of errors",
        }
    }
}

impl EvaluateState {
    fn criterion(&self) -> Criterion {
        match self.by {
            By::Precision => Criterion::Precision(self.precision),
            By::Capacity => Criterion::Capacity {
                per_day: self.capacity,
            },
            By::Cost => Criterion::Cost {
                missed: self.cost_missed,
                blocked: self.cost_blocked,
            },
        }
    }
}

/// Curves of one version, computed once (the holdout has ~92k rows).
struct Curves {
    version: u32,
    ranked: Ranked,
    roc: Vec<RocPoint>,
    pr: Vec<PrPoint>,
    auc: f64,
    ap: f64,
    /// The raw score's reliability, and the calibrated probability's (each half of the
    /// holdout calibrated on the other, so no account judges its own calibration).
    raw: Option<Reliability>,
    calibrated: Option<Reliability>,
}

#[derive(Default)]
pub struct EvaluatePanel {
    curves: Option<Curves>,
    /// The last "Find" result or its error.
    found: Option<Result<String, String>>,
}

impl EvaluatePanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, state: &mut EvaluateState, wb: &mut Workbench) {
        let Some(active) = wb.active.clone() else {
            ui.label("No active model yet.");
            return;
        };
        let m = &active.manifest;
        let Some(holdout) = &active.holdout else {
            ui.label(format!(
                "Version {} has no readable holdout predictions; retrain to evaluate it.",
                m.version
            ));
            return;
        };
        if self.curves.as_ref().is_none_or(|c| c.version != m.version) {
            let (Ok(roc), Ok(pr)) = (
                roc_curve(&holdout.labels, &holdout.scores),
                pr_curve(&holdout.labels, &holdout.scores),
            ) else {
                ui.label("The holdout has a single class: no curves.");
                return;
            };
            let ranked = Ranked::new(&holdout.labels, &holdout.scores);
            let calibrated = active
                .model
                .calibration
                .as_ref()
                .and_then(|_| cross_fitted(&holdout.labels, &holdout.scores).ok())
                .and_then(|p| reliability(&holdout.labels, &p, 10).ok());
            self.found = None;
            self.curves = Some(Curves {
                raw: reliability(&holdout.labels, &holdout.scores, 10).ok(),
                calibrated,
                version: m.version,
                auc: ranked.roc_auc(),
                ap: ranked.average_precision(),
                ranked,
                roc: crate::eval::metrics::thin(&roc, 2000),
                pr: crate::eval::metrics::thin(&pr, 2000),
            });
        }
        let Some(c) = &self.curves else { return };
        let mut t = match state.working {
            Some((v, t)) if v == m.version => t,
            _ => m.threshold,
        };

        ui.horizontal(|ui| {
            ui.label(format!(
                "Version {} on its holdout: {} accounts ({} spammers). ROC-AUC {:.4}, average precision {:.4}.",
                m.version,
                holdout.labels.len(),
                holdout.labels.iter().filter(|&&l| l == 1).count(),
                c.auc,
                c.ap
            ));
        });
        ui.horizontal(|ui| {
            // No step: a threshold found below keeps all its digits (a stepped slider
            // rounds the value it shows).
            ui.add(egui::Slider::new(&mut t, 0.0..=1.0).text("Decision threshold"));
            let saving = wb.is_running(JobKind::SaveThreshold);
            let differs = (t - m.threshold).abs() > 1e-12;
            if ui
                .add_enabled(
                    differs && !saving,
                    egui::Button::new("Save as version threshold"),
                )
                .on_hover_text("The gauge verdict and `spamscope score` use the saved threshold")
                .clicked()
            {
                wb.save_threshold(t);
            }
            if ui
                .add_enabled(differs, egui::Button::new("Reset"))
                .clicked()
            {
                t = m.threshold;
            }
            ui.label(format!("saved: {:.2}", m.threshold));
        });
        find_threshold(ui, &mut self.found, state, &active, &mut t);
        state.working = Some((m.version, t));
        let conf = c.ranked.confusion_above(t);
        let (fpr, tpr) = (
            conf.fp as f64 / (conf.fp + conf.tn).max(1) as f64,
            conf.recall(),
        );
        // The review load by the same rule as a found threshold's.
        let load = OperatingPoint::at(&c.ranked, t, state.daily_volume);
        ui.label(
            RichText::new(format!(
                "At {:.4}: precision {:.3}   recall {:.3}   F1 {:.3}   accuracy {:.4}   flagged {:.2}% = {:.0} a day of {:.0}",
                t,
                conf.precision(),
                conf.recall(),
                conf.f1(),
                conf.accuracy(),
                100.0 * load.flagged_share,
                load.flagged_per_day,
                state.daily_volume
            ))
            .strong(),
        );
        if let Some(cal) = &active.model.calibration {
            ui.label(format!(
                "A raw score of {t:.4} is a calibrated probability of {:.1}% ({}).",
                100.0 * cal.apply(t),
                cal.describe()
            ));
        }
        ui.columns(3, |cols| {
            super::charts::unit_square("roc", 380.0, "false positive rate", "true positive rate")
                .show(&mut cols[0], |p| {
                    super::charts::curve(
                        p,
                        format!("ROC (AUC {:.3})", c.auc),
                        c.roc.iter().map(|r| [r.fpr, r.tpr]).collect(),
                        super::charts::series_color(0),
                        1.5,
                    );
                    p.line(
                        Line::new("chance", PlotPoints::from(vec![[0.0, 0.0], [1.0, 1.0]]))
                            .color(Color32::GRAY),
                    );
                    p.points(
                        Points::new("operating point", PlotPoints::from(vec![[fpr, tpr]]))
                            .radius(6.0)
                            .color(Color32::from_rgb(230, 180, 60)),
                    );
                });
            super::charts::unit_square("pr", 380.0, "recall", "precision").show(
                &mut cols[1],
                |p| {
                    super::charts::curve(
                        p,
                        format!("precision-recall (AP {:.3})", c.ap),
                        c.pr.iter().map(|r| [r.recall, r.precision]).collect(),
                        super::charts::series_color(0),
                        1.5,
                    );
                    p.points(
                        Points::new(
                            "operating point",
                            PlotPoints::from(vec![[conf.recall(), conf.precision()]]),
                        )
                        .radius(6.0)
                        .color(Color32::from_rgb(230, 180, 60)),
                    );
                },
            );
            confusion_matrix(&mut cols[2], &conf);
        });
        ui.separator();
        calibration(ui, c, &active.model);
    }
}

/// "Find a threshold by": the criterion's inputs and a button that moves the
/// working threshold to the point it chooses on the holdout.
fn find_threshold(
    ui: &mut egui::Ui,
    found: &mut Option<Result<String, String>>,
    state: &mut EvaluateState,
    active: &crate::workbench::ActiveModel,
    t: &mut f64,
) {
    let Some(holdout) = &active.holdout else {
        return;
    };
    ui.horizontal_wrapped(|ui| {
        let label = ui.label("Find a threshold by");
        egui::ComboBox::from_id_salt("threshold_by")
            .selected_text(state.by.label())
            .show_ui(ui, |ui| {
                for by in [By::Precision, By::Capacity, By::Cost] {
                    ui.selectable_value(&mut state.by, by, by.label());
                }
            })
            .response
            .labelled_by(label.id);
        // Each input is named for people and screen readers (and the tests).
        let value = |ui: &mut egui::Ui, name: &str, v: &mut f64, range, speed: f64| {
            let label = ui.label(name);
            ui.add(egui::DragValue::new(v).range(range).speed(speed).max_decimals(3))
                .labelled_by(label.id);
        };
        match state.by {
            By::Precision => value(ui, "precision at least", &mut state.precision, 0.01..=1.0, 0.005),
            By::Capacity => value(ui, "reviews a day", &mut state.capacity, 0.0..=1e9, 10.0),
            By::Cost => {
                value(ui, "cost of a missed spammer", &mut state.cost_missed, 0.0..=1e9, 1.0);
                value(ui, "cost of a wrongly flagged user", &mut state.cost_blocked, 0.0..=1e9, 1.0);
            }
        }
        value(ui, "accounts scored a day", &mut state.daily_volume, 1.0..=1e10, 100.0);
        if ui.button("Find").clicked() {
            let chosen = crate::ops::versions::choose_threshold(
                active.manifest.version,
                &active.model,
                holdout,
                active.manifest.threshold,
                state.criterion(),
                state.daily_volume,
            );
            *found = Some(match chosen {
                Ok(c) => {
                    *t = c.chosen.threshold;
                    Ok(format!(
                        "By {}: threshold {:.4} gives precision {:.3}, recall {:.3}, {:.0} accounts to review a day.",
                        state.by.label(),
                        c.chosen.threshold,
                        c.chosen.precision,
                        c.chosen.recall,
                        c.chosen.flagged_per_day
                    ))
                }
                Err(e) => Err(crate::util::text::one_line(&e.to_string())),
            });
        }
    });
    match &*found {
        Some(Ok(text)) => {
            ui.label(text);
        }
        Some(Err(e)) => {
            ui.colored_label(Color32::from_rgb(200, 60, 60), e);
        }
        None => {}
    }
}

/// The reliability diagram: each bin's observed spam rate against its mean predicted
/// probability, for the raw score and the calibrated probability; ECE and Brier score.
fn calibration(ui: &mut egui::Ui, c: &Curves, model: &crate::model::Model) {
    ui.heading("Calibration: do the scores mean what they say?");
    let Some(raw) = &c.raw else { return };
    let mut text = format!(
        "Raw score: expected calibration error {:.4}, Brier {:.5}, mean {:.2}% against {:.2}% spammers.",
        raw.ece,
        raw.brier,
        100.0 * raw.mean_predicted,
        100.0 * raw.observed
    );
    match (&model.calibration, &c.calibrated) {
        (Some(cal), Some(after)) => text.push_str(&format!(
            "  Calibrated ({}; each half of the holdout calibrated on the other): ECE {:.4}, Brier {:.5}, mean {:.2}%.",
            cal.method(),
            after.ece,
            after.brier,
            100.0 * after.mean_predicted
        )),
        _ => text.push_str(
            "  This version has no calibration (trained before calibration existed): its score is shown as it is. Retrain to calibrate.",
        ),
    }
    let points = |r: &Reliability| -> Vec<[f64; 2]> {
        r.bins
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| [b.predicted, b.observed])
            .collect()
    };
    ui.columns(3, |cols| {
        super::charts::unit_square(
            "reliability",
            300.0,
            "predicted probability",
            "observed spam rate",
        )
        .show(&mut cols[0], |p| {
            p.line(
                Line::new("perfect", PlotPoints::from(vec![[0.0, 0.0], [1.0, 1.0]]))
                    .color(Color32::GRAY),
            );
            for (i, (name, r)) in [
                ("raw score", Some(raw)),
                ("calibrated", c.calibrated.as_ref()),
            ]
            .into_iter()
            .enumerate()
            {
                let Some(r) = r else { continue };
                let pts = points(r);
                p.line(
                    Line::new(name, PlotPoints::from(pts.clone()))
                        .color(super::charts::series_color(i))
                        .width(1.5),
                );
                p.points(
                    Points::new(name, PlotPoints::from(pts))
                        .radius(4.0)
                        .color(super::charts::series_color(i)),
                );
            }
        });
        let ui = &mut cols[1];
        ui.label(text);
        // Each bin of the calibrated probability (else of the raw score).
        let (what, r) = match &c.calibrated {
            Some(r) => ("calibrated probability", r),
            None => ("raw score", raw),
        };
        ui.add_space(6.0);
        egui::Grid::new("reliability_bins")
            .num_columns(4)
            .striped(true)
            .show(ui, |ui| {
                ui.strong(what);
                ui.strong("accounts");
                ui.strong("predicted");
                ui.strong("spammers");
                ui.end_row();
                for b in r.bins.iter().filter(|b| b.count > 0) {
                    ui.label(format!("{:.0}-{:.0}%", 100.0 * b.lo, 100.0 * b.hi));
                    ui.label(b.count.to_string());
                    ui.label(format!("{:.1}%", 100.0 * b.predicted));
                    ui.label(format!("{:.1}%", 100.0 * b.observed));
                    ui.end_row();
                }
            });
    });
}

fn confusion_matrix(ui: &mut egui::Ui, c: &Confusion) {
    ui.heading("Confusion matrix");
    egui::Grid::new("confusion")
        .num_columns(3)
        .spacing([18.0, 10.0])
        .show(ui, |ui| {
            ui.label("");
            ui.strong("predicted legitimate");
            ui.strong("predicted spammer");
            ui.end_row();
            ui.strong("legitimate");
            ui.label(format!("{} (TN)", c.tn));
            ui.label(format!("{} (FP)", c.fp));
            ui.end_row();
            ui.strong("spammer");
            ui.label(format!("{} (FN)", c.fn_));
            ui.label(format!("{} (TP)", c.tp));
            ui.end_row();
        });
    ui.add_space(6.0);
    ui.label(format!(
        "{} accounts would be flagged for review; {} spammers would be missed.",
        c.tp + c.fp,
        c.fn_
    ));
}
