//! "Settings": the online-learning configuration, validated before it is saved.

use crate::model::forest::{ClassWeight, ForestParams};
use crate::ops::settings::OnlineLearningConfig;
use crate::workbench::Workbench;
use eframe::egui::{self, RichText};

#[derive(Default)]
pub struct SettingsPanel {
    /// The settings being edited (None until loaded from the registry).
    draft: Option<OnlineLearningConfig>,
    error: Option<String>,
}

impl SettingsPanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, wb: &mut Workbench, moderator: &mut String) {
        ui.heading("You");
        if wb.is_remote() {
            ui.label("On the team's service, feedback carries the name of your API token.");
        } else {
            ui.horizontal(|ui| {
                let label = ui.label("Moderator name");
                ui.add(egui::TextEdit::singleline(moderator).desired_width(200.0))
                    .labelled_by(label.id);
                ui.weak(
                    "stored with each feedback record you give (statistics and trust by moderator)",
                );
            });
            if !moderator.is_empty()
                && let Err(e) = crate::ops::feedback::check_moderator_name(moderator)
            {
                ui.colored_label(
                    egui::Color32::from_rgb(235, 90, 80),
                    format!("Not used: {e}"),
                );
            }
        }
        ui.add_space(8.0);
        if wb.is_remote() {
            ui.heading("Online learning");
            ui.label("Retraining, its settings and the promotion gate are the team service's: they are set where it runs (the app opened on its registry, or its online.ron). Model > Retrain from feedback asks it to retrain now.");
            return;
        }
        let Some(saved) = wb.online.clone() else {
            ui.label("Loading settings…");
            return;
        };
        let draft = self.draft.get_or_insert_with(|| saved.clone());
        ui.heading("Online learning");
        ui.label(
            "How the model learns from moderators' corrections. A retrain trains on the base data plus all accepted and new feedback; the candidate replaces the active version only if it passes the promotion gate.",
        );
        ui.add_space(6.0);
        egui::Grid::new("online_settings")
            .num_columns(3)
            .spacing([12.0, 6.0])
            .show(ui, |ui| {
                let row = |ui: &mut egui::Ui, name: &str, help: &str, w: &mut dyn FnMut(&mut egui::Ui, egui::Id)| {
                    let label = ui.label(name);
                    w(ui, label.id);
                    ui.weak(help);
                    ui.end_row();
                };
                row(ui, "Automatic retraining", "retrain by itself when both conditions below hold", &mut |ui, id| {
                    ui.checkbox(&mut draft.auto_retrain, "enabled").labelled_by(id);
                });
                row(ui, "Minimum new records", "new feedback records needed before an automatic retrain", &mut |ui, id| {
                    ui.add(egui::DragValue::new(&mut draft.min_samples).speed(10)).labelled_by(id);
                });
                row(ui, "Retrain interval (s)", "time that must pass between automatic retrains", &mut |ui, id| {
                    ui.add(egui::DragValue::new(&mut draft.retrain_interval).speed(60)).labelled_by(id);
                });
                row(ui, "Batch size", "records per transaction when importing; the store checks the trigger every batch", &mut |ui, id| {
                    ui.add(egui::DragValue::new(&mut draft.batch_size).speed(1)).labelled_by(id);
                });
                row(ui, "Feedback weight", "how much one corrected record counts relative to a base-data row", &mut |ui, id| {
                    ui.add(egui::DragValue::new(&mut draft.feedback_weight).speed(0.1).fixed_decimals(1)).labelled_by(id);
                });
                row(ui, "Max ROC-AUC drop", "promotion gate: largest allowed drop on the base holdout", &mut |ui, id| {
                    ui.add(egui::DragValue::new(&mut draft.max_auc_drop).speed(0.001).fixed_decimals(3)).labelled_by(id);
                });
                row(ui, "Feedback held out", "share of the new feedback kept aside to judge the candidate", &mut |ui, id| {
                    ui.add(egui::DragValue::new(&mut draft.feedback_holdout).speed(0.01).fixed_decimals(2)).labelled_by(id);
                });
                row(ui, "Weight by trust", "each feedback record counts in a retrain in proportion to its moderator's trust (Team tab); off: all alike", &mut |ui, id| {
                    ui.checkbox(&mut draft.trust_weighting, "enabled").labelled_by(id);
                });
                row(ui, "Alerts webhook", "data drift and agreement alerts are also POSTed (JSON) to this http(s) URL, retried with backoff, each kind at most every 10 minutes; empty: none", &mut |ui, id| {
                    let mut text = draft.webhook_url.clone().unwrap_or_default();
                    if ui
                        .add_sized([280.0, 20.0], egui::TextEdit::singleline(&mut text).hint_text("https://alerts.example/hook"))
                        .labelled_by(id)
                        .changed()
                    {
                        draft.webhook_url = (!text.trim().is_empty()).then(|| text.trim().to_string());
                    }
                });
                row(ui, "Feedback tolerance", "Brier-score differences on held-out feedback this small count as a tie", &mut |ui, id| {
                    ui.add(egui::DragValue::new(&mut draft.feedback_tolerance).speed(0.0005).fixed_decimals(4)).labelled_by(id);
                });
            });
        ui.add_space(6.0);
        ui.strong("Forest of retrained versions");
        forest_params(ui, &mut draft.forest);
        ui.add_space(6.0);
        ui.label(RichText::new(
            "The reference system also had a learning rate. A random forest is refit, not updated by gradient steps, so a learning rate has no meaning here: how strongly corrections count is the feedback weight, and how cautious promotion is, the AUC gate.",
        ).weak());
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            let changed = *draft != saved;
            if ui
                .add_enabled(changed, egui::Button::new("Save settings"))
                .clicked()
            {
                match draft.validate() {
                    Ok(()) => {
                        self.error = None;
                        wb.save_online(draft.clone());
                    }
                    Err(e) => self.error = Some(e.to_string()),
                }
            }
            if ui
                .add_enabled(changed, egui::Button::new("Discard changes"))
                .clicked()
            {
                *draft = saved.clone();
                self.error = None;
            }
            if ui.button("Restore defaults").clicked() {
                *draft = OnlineLearningConfig::default();
            }
        });
        if let Some(e) = &self.error {
            ui.colored_label(
                egui::Color32::from_rgb(235, 90, 80),
                format!("Not saved: {e}"),
            );
        }
    }
}

fn forest_params(ui: &mut egui::Ui, p: &mut ForestParams) {
    egui::Grid::new("forest_settings")
        .num_columns(2)
        .spacing([12.0, 6.0])
        .show(ui, |ui| {
            let label = ui.label("Trees");
            ui.add(egui::DragValue::new(&mut p.n_trees).speed(5))
                .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("Max depth (0 = unlimited)");
            let mut depth = p.max_depth.unwrap_or(0);
            if ui
                .add(egui::DragValue::new(&mut depth).speed(1))
                .labelled_by(label.id)
                .changed()
            {
                p.max_depth = (depth > 0).then_some(depth);
            }
            ui.end_row();
            let label = ui.label("Min samples split");
            ui.add(egui::DragValue::new(&mut p.min_samples_split).speed(1))
                .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("Min samples leaf");
            ui.add(egui::DragValue::new(&mut p.min_samples_leaf).speed(1))
                .labelled_by(label.id);
            ui.end_row();
            ui.label("Class weight");
            ui.horizontal(|ui| {
                ui.radio_value(&mut p.class_weight, ClassWeight::Balanced, "balanced");
                ui.radio_value(&mut p.class_weight, ClassWeight::None, "none");
            });
            ui.end_row();
            let label = ui.label("Seed");
            ui.add(egui::DragValue::new(&mut p.seed).speed(1))
                .labelled_by(label.id);
            ui.end_row();
        });
}
