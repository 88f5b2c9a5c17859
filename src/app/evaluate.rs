//! "Evaluate model": ROC and precision-recall curves of the active version on its
//! holdout, the confusion matrix, and a threshold slider that moves the operating point
//! live and can be saved as the version's threshold.

use crate::eval::metrics::{Confusion, PrPoint, Ranked, RocPoint, pr_curve, roc_curve};
use crate::workbench::{JobKind, Workbench};
use eframe::egui::{self, Color32, RichText};
use egui_plot::{Line, PlotPoints, Points};
use serde::{Deserialize, Serialize};

/// Persisted: the working threshold per version.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct EvaluateState {
    /// (version, threshold being explored).
    pub working: Option<(u32, f64)>,
}

/// Curves of one version, computed once (the holdout has ~92k rows).
struct Curves {
    version: u32,
    ranked: Ranked,
    roc: Vec<RocPoint>,
    pr: Vec<PrPoint>,
    auc: f64,
    ap: f64,
}

#[derive(Default)]
pub struct EvaluatePanel {
    curves: Option<Curves>,
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
            self.curves = Some(Curves {
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
            ui.add(
                egui::Slider::new(&mut t, 0.0..=1.0)
                    .step_by(0.01)
                    .text("Decision threshold"),
            );
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
        state.working = Some((m.version, t));
        let conf = c.ranked.confusion_above(t);
        let (fpr, tpr) = (
            conf.fp as f64 / (conf.fp + conf.tn).max(1) as f64,
            conf.recall(),
        );
        ui.label(
            RichText::new(format!(
                "At {:.2}: precision {:.3}   recall {:.3}   F1 {:.3}   accuracy {:.4}",
                t,
                conf.precision(),
                conf.recall(),
                conf.f1(),
                conf.accuracy()
            ))
            .strong(),
        );
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
    }
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
