//! "Compare models": the reference report's comparison on the loaded data (one
//! stratified split): the table with the best-by-F1 and best-by-AUC marked, the ROC
//! curves overlaid, promotion of any model into the registry, report export; and the
//! same models cross-validated over k stratified folds (mean ± standard deviation);
//! and a search for the forest's or gradient boosting's best parameters (Tune), every
//! trial in a table, the best one promotable.

use crate::model::recipe::default_candidates;
use crate::ops::compare::{Comparison, CrossValidation, OverFolds, Saved};
use crate::ops::tune::{Space, Tuning};
use crate::workbench::{JobKind, Workbench};
use eframe::egui::{self, Color32, RichText};
use egui_plot::{Legend, Line, Plot, PlotPoints};

/// Which candidates to run (by name); all by default.
pub struct ComparePanel {
    /// (name, ticked, note, the Python library of a peer row).
    selected: Vec<(String, bool, Option<String>, Option<&'static str>)>,
    /// Folds of a cross-validation or of each tuning trial (2-10).
    folds: usize,
    /// What a search draws from, and at most how many trials.
    space: Space,
    trials: usize,
}

impl Default for ComparePanel {
    fn default() -> Self {
        ComparePanel {
            selected: default_candidates(42)
                .into_iter()
                .map(|c| {
                    let peer = c.peer_library();
                    (c.name, true, c.note, peer)
                })
                .collect(),
            folds: 5,
            space: Space::Forest,
            trials: 20,
        }
    }
}

/// What the panel asks the app to do.
pub enum CompareAction {
    /// Export a report, choosing the folder in a dialog.
    PickReportFolder,
}

fn metric(ui: &mut egui::Ui, v: f64) {
    ui.label(if v.is_finite() {
        format!("{v:.4}")
    } else {
        "n/a".into()
    });
}

impl ComparePanel {
    /// The comparison: the models and actions, then the saved run's table and ROC curves.
    pub fn ui(&mut self, ui: &mut egui::Ui, wb: &mut Workbench) -> Option<CompareAction> {
        intro(ui);
        self.model_choice(ui);
        let action = self.toolbar(ui, wb);
        ui.separator();
        self.tune_row(ui, wb);
        if let Some(t) = wb.tuning.clone() {
            let promote = !wb.is_training() && !wb.is_running(JobKind::Promote);
            if tuning_table(ui, &t, promote) {
                wb.promote_tuned();
            }
            ui.separator();
        }
        if let Some(cv) = wb.cross_validation.clone() {
            cv_table(ui, &cv);
            ui.separator();
        }

        let Some(saved) = wb.saved_comparison.clone() else {
            ui.label("No comparison yet. Run one to fill the table.");
            return action;
        };
        let live = wb.comparison.clone();
        summary(ui, &saved, live.is_some());
        let mut promote: Option<String> = None;
        let can_promote = !wb.is_training() && !wb.is_running(JobKind::Promote);
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                promote =
                    self.results_table(ui, &saved, live.as_ref().map(|(c, _)| &**c), can_promote);
            });
            ui.add_space(12.0);
            ui.vertical(|ui| roc_plot(ui, &saved));
        });
        if let Some(name) = promote {
            wb.promote(&name);
        }
        action
    }

    /// The collapsible list of candidates, each ticked to take part.
    fn model_choice(&mut self, ui: &mut egui::Ui) {
        egui::CollapsingHeader::new("Models to compare")
            .default_open(false)
            .show(ui, |ui| {
                for (name, on, note, peer) in &mut self.selected {
                    ui.horizontal(|ui| {
                        let r = ui.checkbox(on, name.as_str());
                        if let Some(n) = note {
                            r.on_hover_text(n.as_str());
                        }
                        if let Some(lib) = peer {
                            ui.weak(format!("peer: runs in Python ({lib}), not promotable"));
                        }
                    });
                }
            });
    }

    /// The actions row (run or cancel the comparison, export a report) and the last
    /// report's path; asks for a report folder pick.
    fn toolbar(&mut self, ui: &mut egui::Ui, wb: &mut Workbench) -> Option<CompareAction> {
        let mut action = None;
        ui.horizontal(|ui| {
            let busy = wb.is_training();
            let names: Vec<String> = self
                .selected
                .iter()
                .filter(|s| s.1)
                .map(|s| s.0.clone())
                .collect();
            if ui
                .add_enabled(
                    !busy && !names.is_empty() && wb.data.is_some(),
                    egui::Button::new("Run comparison"),
                )
                .on_hover_text("Train and evaluate the selected models on the loaded data")
                .clicked()
            {
                wb.run_comparison(names.clone());
            }
            ui.add(
                egui::DragValue::new(&mut self.folds)
                    .range(2..=10)
                    .prefix("folds: "),
            );
            if ui
                .add_enabled(
                    !busy && !names.is_empty() && wb.data.is_some(),
                    egui::Button::new("Cross-validate"),
                )
                .on_hover_text("Train and score the selected models on each of the stratified folds in turn (the same folds for every model): mean ± standard deviation, nothing registered")
                .clicked()
            {
                wb.run_cross_validation(names, self.folds);
            }
            if wb.is_running(JobKind::Compare) && ui.button("Cancel comparison").clicked() {
                wb.cancel(JobKind::Compare);
            }
            ui.separator();
            let can_report = wb.active.is_some() && wb.data.is_some() && !wb.is_running(JobKind::Report);
            if ui
                .add_enabled(can_report, egui::Button::new("Export report"))
                .on_hover_text("Model card (Markdown), PNG charts and the scored queue, in a new folder under the registry's reports/")
                .clicked()
            {
                wb.export_report(None);
            }
            if ui
                .add_enabled(can_report, egui::Button::new("Export report to…"))
                .on_hover_text("Choose the folder")
                .clicked()
            {
                action = Some(CompareAction::PickReportFolder);
            }
        });
        if let Some(p) = &wb.last_report {
            ui.label(format!("Last report: {}", p.display()));
        }
        action
    }

    /// Tune: the search space, the number of trials and the button (the folds are the
    /// toolbar's).
    fn tune_row(&mut self, ui: &mut egui::Ui, wb: &mut Workbench) {
        ui.horizontal(|ui| {
            ui.label("Tune the parameters of");
            for (space, name) in [
                (Space::Forest, "the forest"),
                (Space::Boosting, "boosting"),
                (Space::Both, "both"),
            ] {
                ui.radio_value(&mut self.space, space, name);
            }
            let label = ui.label("trials");
            ui.add(egui::DragValue::new(&mut self.trials).range(1..=200))
                .labelled_by(label.id);
            if ui
                .add_enabled(
                    !wb.is_training() && wb.data.is_some(),
                    egui::Button::new("Tune"),
                )
                .on_hover_text("Random search: each trial's parameters drawn from the seed, cross-validated over the folds above and scored by mean average precision (the class is rare); every trial is kept, the best can be promoted")
                .clicked()
            {
                wb.run_tuning(self.space, self.trials, self.folds);
            }
        });
    }

    /// The metrics grid: a row per model (best by F1 and by AUC marked, a Promote
    /// button for models of this session's comparison), then the failed models.
    /// Returns the model whose Promote was clicked.
    fn results_table(
        &self,
        ui: &mut egui::Ui,
        saved: &Saved,
        live: Option<&Comparison>,
        can_promote: bool,
    ) -> Option<String> {
        let mut promote = None;
        egui::Grid::new("compare-grid")
            .striped(true)
            .num_columns(10)
            .show(ui, |ui| {
                for h in [
                    "model",
                    "accuracy",
                    "precision",
                    "recall",
                    "F1",
                    "ROC-AUC",
                    "avg precision",
                    "fit s",
                    "",
                    "",
                ] {
                    ui.label(RichText::new(h).strong());
                }
                ui.end_row();
                for r in &saved.rows {
                    let mut marks = Vec::new();
                    if saved.best_f1.as_deref() == Some(r.name.as_str()) {
                        marks.push("best F1");
                    }
                    if saved.best_auc.as_deref() == Some(r.name.as_str()) {
                        marks.push("best AUC");
                    }
                    let note = self
                        .selected
                        .iter()
                        .find(|s| s.0 == r.name)
                        .and_then(|s| s.2.clone());
                    let name = ui.label(if marks.is_empty() {
                        RichText::new(&r.name)
                    } else {
                        RichText::new(&r.name).strong()
                    });
                    if let Some(n) = note {
                        name.on_hover_text(n);
                    }
                    for v in [
                        r.accuracy,
                        r.precision,
                        r.recall,
                        r.f1,
                        r.roc_auc,
                        r.average_precision,
                    ] {
                        metric(ui, v);
                    }
                    ui.label(format!("{:.1}", r.fit_seconds));
                    ui.label(
                        RichText::new(marks.join(" · ")).color(Color32::from_rgb(40, 150, 60)),
                    );
                    if let Some(lib) = &r.peer {
                        ui.weak(crate::ops::compare::PEER_MARK)
                            .on_hover_text(format!("Fitted by {lib} in Python on the same split; spamscope cannot save, explain or retrain it"));
                        ui.end_row();
                        continue;
                    }
                    let available = live.is_some_and(|c| {
                        c.outcomes.iter().any(|o| {
                            o.name == r.name && o.result.as_ref().is_ok_and(|s| s.trained.is_some())
                        })
                    });
                    if ui
                        .add_enabled(available && can_promote, egui::Button::new("Promote"))
                        .on_hover_text(format!(
                            "Register {} as a new version and make it active",
                            r.name
                        ))
                        .clicked()
                    {
                        promote = Some(r.name.clone());
                    }
                    ui.end_row();
                }
                for (name, why) in &saved.failed {
                    ui.label(name);
                    ui.colored_label(Color32::from_rgb(200, 60, 50), format!("failed: {why}"));
                    ui.end_row();
                }
            });
        promote
    }
}

/// The heading and what the comparison does.
/// The cross-validated table: a row per model, each metric as mean ± standard deviation
/// over the folds (the best mean ROC-AUC in bold).
/// Every trial of the search, best first (by mean average precision over the folds);
/// true when "Promote best trial" was clicked.
fn tuning_table(ui: &mut egui::Ui, t: &Tuning, can_promote: bool) -> bool {
    ui.strong(format!(
        "Tuning: {} trials ({:?}), each over {} stratified folds (seed {}), stopped by {}, {:.0} s; mean ± standard deviation",
        t.trials.len(),
        t.space,
        t.folds,
        t.seed,
        t.stopped_by,
        t.seconds
    ));
    let order = t.ranked();
    let cell = |ui: &mut egui::Ui, m: &OverFolds, strong: bool| {
        let text = format!("{:.4} ± {:.4}", m.mean, m.std);
        ui.label(if strong {
            RichText::new(text).strong()
        } else {
            RichText::new(text)
        });
    };
    egui::ScrollArea::vertical()
        .id_salt("tuning")
        .max_height(220.0)
        .show(ui, |ui| {
            egui::Grid::new("tuning_table")
                .striped(true)
                .show(ui, |ui| {
                    for h in [
                        "trial",
                        "model",
                        "average precision",
                        "ROC-AUC",
                        "F1",
                        "fit s",
                    ] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for i in order {
                        let trial = &t.trials[i];
                        let best = Some(i) == t.best;
                        ui.label(if best {
                            format!("{} (best)", trial.number)
                        } else {
                            trial.number.to_string()
                        });
                        ui.label(&trial.name);
                        match &trial.cv {
                            Some(c) => {
                                cell(ui, &c.average_precision, best);
                                cell(ui, &c.roc_auc, false);
                                cell(ui, &c.f1, false);
                                ui.label(format!("{:.2}", c.fit_seconds.mean));
                            }
                            None => {
                                ui.colored_label(
                                    Color32::from_rgb(200, 60, 50),
                                    trial.error.as_deref().unwrap_or("failed"),
                                );
                            }
                        }
                        ui.end_row();
                    }
                });
        });
    t.best.is_some()
        && ui
            .add_enabled(can_promote, egui::Button::new("Promote best trial"))
            .on_hover_text("Train the best trial's parameters on the loaded data (the usual holdout, calibrated) and make it the active version")
            .clicked()
}

fn cv_table(ui: &mut egui::Ui, cv: &CrossValidation) {
    ui.strong(format!(
        "Cross-validation: {} stratified folds (seed {}), {} accounts, metrics at threshold 0.5, mean ± standard deviation",
        cv.folds,
        cv.seed,
        cv.fold_rows.iter().sum::<usize>()
    ));
    let best = cv
        .rows
        .iter()
        .map(|r| r.roc_auc.mean)
        .fold(f64::NEG_INFINITY, f64::max);
    let cell = |ui: &mut egui::Ui, m: &OverFolds, strong: bool| {
        let text = if m.mean.is_finite() {
            format!("{:.4} ± {:.4}", m.mean, m.std)
        } else {
            "n/a".into()
        };
        ui.label(if strong {
            RichText::new(text).strong()
        } else {
            RichText::new(text)
        });
    };
    egui::Grid::new("cv_table").striped(true).show(ui, |ui| {
        for h in [
            "model",
            "ROC-AUC",
            "average precision",
            "F1",
            "precision",
            "recall",
            "accuracy",
            "fit s",
        ] {
            ui.strong(h);
        }
        ui.end_row();
        for r in &cv.rows {
            ui.label(&r.name);
            cell(ui, &r.roc_auc, r.roc_auc.mean == best);
            cell(ui, &r.average_precision, false);
            cell(ui, &r.f1, false);
            cell(ui, &r.precision, false);
            cell(ui, &r.recall, false);
            cell(ui, &r.accuracy, false);
            ui.label(format!("{:.2}", r.fit_seconds.mean));
            ui.end_row();
        }
    });
    for (name, why) in &cv.failed {
        ui.colored_label(
            Color32::from_rgb(200, 60, 50),
            format!("{name} failed: {why}"),
        );
    }
}

fn intro(ui: &mut egui::Ui) {
    ui.heading("Compare models");
    ui.label(
        "Every model is trained on the same stratified 80/20 split of the loaded data, with the same median imputation, and evaluated on the same held-out accounts (metrics at threshold 0.5). On the full default data the whole comparison takes about ten minutes on two cores (the neural network and stacking take longest); it runs in the background. Cross-validate trains the same models on each of k stratified folds in turn instead (mean ± standard deviation over the folds; nothing is registered, and it takes about k times as long).",
    );
    ui.add_space(4.0);
}

/// What the comparison was run on, and a note when it is from an earlier session
/// (`live` false: nothing to promote).
fn summary(ui: &mut egui::Ui, saved: &Saved, live: bool) {
    ui.label(format!(
        "{} on {}: {} training / {} test accounts ({} spammers).",
        saved.created_at, saved.data_label, saved.train_rows, saved.test_rows, saved.test_positives
    ));
    if !live {
        ui.label(
            RichText::new(
                "Saved comparison from an earlier session: run it again to promote a model.",
            )
            .color(Color32::from_rgb(200, 140, 40)),
        );
    }
}

/// The models' ROC curves on the shared holdout, overlaid, the best by AUC thicker.
fn roc_plot(ui: &mut egui::Ui, saved: &Saved) {
    ui.label(RichText::new("ROC curves on the shared holdout").strong());
    let side = (ui.available_height() - 24.0).clamp(260.0, 560.0);
    Plot::new("compare-roc")
        .legend(Legend::default().position(egui_plot::Corner::RightBottom))
        .include_x(0.0)
        .include_x(1.0)
        .include_y(0.0)
        .include_y(1.0)
        .x_axis_label("false positive rate")
        .y_axis_label("true positive rate")
        .width(side)
        .height(side)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .show(ui, |p| {
            p.line(
                Line::new("chance", PlotPoints::from(vec![[0.0, 0.0], [1.0, 1.0]]))
                    .color(Color32::GRAY),
            );
            for (i, (name, curve)) in saved.roc.iter().enumerate() {
                let auc = saved
                    .rows
                    .iter()
                    .find(|r| &r.name == name)
                    .map_or(f64::NAN, |r| r.roc_auc);
                let best = saved.best_auc.as_deref() == Some(name.as_str());
                super::charts::curve(
                    p,
                    format!("{name} ({auc:.3})"),
                    curve.clone(),
                    super::charts::series_color(i),
                    if best { 3.0 } else { 1.5 },
                );
            }
        });
}
