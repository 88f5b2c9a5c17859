//! "Score an account": the 51-field form, the live gauge, the risk factors (TreeSHAP),
//! the version panel and the feedback form.

use super::gauge::{self, GREEN, RED};
use crate::data::catalog::{Kind, N_FEATURES, catalog};
use crate::model::explain::Explanation;
use crate::store::feedback::{NewFeedback, Origin};
use crate::util::rng::SplitMix64;
use crate::workbench::{JobKind, Workbench};
use eframe::egui::{self, Color32, RichText};
use serde::{Deserialize, Serialize};

const PLACEHOLDER: &str = "lowest allowed values (waiting for the data statistics)";

/// What the form holds (persisted).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ScoreState {
    /// Index into the catalog's categories.
    pub category: usize,
    /// The values the model sees: one per feature, None = missing (imputed).
    pub inputs: Vec<Option<f64>>,
    /// The user id typed in "Load account".
    pub user_query: String,
    /// Where the current inputs came from.
    pub loaded: String,
    /// The user id of the loaded account, when the inputs are a real account's.
    pub loaded_user: Option<String>,
}

impl ScoreState {
    /// Raw model input: NaN for missing.
    pub fn raw(&self) -> Vec<f64> {
        self.inputs.iter().map(|v| v.unwrap_or(f64::NAN)).collect()
    }

    pub fn set_from_raw(&mut self, raw: &[f64], what: String) {
        self.inputs = raw.iter().map(|&v| (!v.is_nan()).then_some(v)).collect();
        self.loaded = what;
        self.loaded_user = None;
    }

    /// The inputs of the account `user` (feedback on them names that user).
    pub fn set_account(&mut self, raw: &[f64], user: crate::data::UserId, what: String) {
        self.set_from_raw(raw, what);
        self.loaded_user = Some(user.to_string());
    }
}

#[derive(Debug, Default)]
struct FeedbackDraft {
    /// Was the prediction correct? None until answered.
    correct: Option<bool>,
    /// The true label when the prediction was wrong (1 = spammer).
    true_label: u8,
    notes: String,
}

/// The screen's transient state (drafts of invalid values, the feedback draft).
#[derive(Default)]
pub struct ScorePanel {
    /// Values being edited that are outside the allowed range: (value, reason).
    invalid: Vec<Option<(f64, String)>>,
    feedback: FeedbackDraft,
    rng: Option<SplitMix64>,
    /// The raw score behind the gauge in the last frame, and for which inputs.
    shown: Option<f64>,
    shown_key: Option<u64>,
}

impl ScorePanel {
    /// The raw score behind the gauge in the last frame (None before a model exists).
    pub fn shown_score(&self) -> Option<f64> {
        self.shown
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, state: &mut ScoreState, wb: &mut Workbench) {
        let cat = catalog();
        // Until statistics exist the form shows the lowest allowed values; replace them
        // with a typical legitimate account as soon as it is known.
        if state.loaded == PLACEHOLDER
            && let Some(e) = &wb.eda
        {
            state.set_from_raw(&e.typical_legit, "typical legitimate account".into());
        }
        if state.inputs.len() != N_FEATURES {
            // A typical legitimate account of the loaded data, once statistics exist;
            // the catalog's lower bounds until then.
            match &wb.eda {
                Some(e) => {
                    state.set_from_raw(&e.typical_legit, "typical legitimate account".into())
                }
                None => {
                    let mins: Vec<f64> = cat.features.iter().map(|f| f.min).collect();
                    state.set_from_raw(&mins, PLACEHOLDER.into());
                }
            }
        }
        if self.invalid.len() != N_FEATURES {
            self.invalid = vec![None; N_FEATURES];
        }

        let Some(active) = wb.active.clone() else {
            ui.add_space(40.0);
            ui.vertical_centered(|ui| {
                ui.heading("Preparing the model");
                match wb.jobs.iter().find(|j| matches!(j.kind, JobKind::Setup | JobKind::Train)) {
                    Some(j) => {
                        let text = if j.total > 1 {
                            format!("{}: {}/{}", j.stage, j.done, j.total)
                        } else {
                            j.stage.clone()
                        };
                        ui.label("First start: spamscope generates the synthetic default data and trains the reference forest. The window stays usable meanwhile.");
                        ui.add(
                            egui::ProgressBar::new(j.fraction().unwrap_or(0.0))
                                .text(text)
                                .desired_width(420.0),
                        );
                    }
                    None => {
                        ui.label("No model is available. Use Model > Train now to train one on the loaded data.");
                    }
                }
            });
            return;
        };

        let raw = state.raw();
        // Score again only when the inputs (or the version) changed; each scoring is
        // recorded for monitoring.
        let key = crate::workbench::explain_key(&raw, active.manifest.version);
        let score = match (self.shown_key == Some(key), self.shown) {
            (true, Some(p)) => p,
            _ => {
                let p = wb
                    .score_one(&raw)
                    .unwrap_or_else(|| active.model.predict_one(&raw));
                self.shown_key = Some(key);
                p
            }
        };
        self.shown = Some(score);
        wb.request_explanation(&raw);
        let threshold = active.manifest.threshold;
        let probability = active.model.probability(score);

        ui.columns(2, |cols| {
            egui::ScrollArea::vertical()
                .id_salt("form")
                .show(&mut cols[0], |ui| {
                    self.loaders(ui, state, wb);
                    ui.separator();
                    self.form(ui, state, active.model.importance());
                });
            egui::ScrollArea::vertical()
                .id_salt("results")
                .show(&mut cols[1], |ui| {
                    ui.vertical_centered(|ui| {
                        // The gauge reads in probability: the threshold is shown where
                        // the calibration puts it.
                        gauge::gauge(
                            ui,
                            probability,
                            active.model.probability(threshold),
                            crate::eval::verdict::is_spam(score, threshold),
                        );
                        ui.label(
                            RichText::new(format!(
                                "Spam probability: {:.1}% (version {})",
                                probability * 100.0,
                                active.manifest.version,
                            ))
                            .strong(),
                        );
                        ui.label(
                            RichText::new(match &active.model.calibration {
                                Some(c) => format!(
                                    "Raw score {score:.3}, spammer above {threshold:.2}; calibrated ({}) — the average account is {:.1}% likely to be a spammer",
                                    c.method(),
                                    100.0 * c.base_rate
                                ),
                                None => format!(
                                    "Raw score {score:.3}, spammer above {threshold:.2}; this version has no calibration (trained before calibration existed): the score is not a probability"
                                ),
                            })
                            .weak(),
                        );
                    });
                    ui.label(RichText::new(format!("Account: {}", state.loaded)).weak());
                    ui.separator();
                    risk_factors(ui, state, wb, &raw);
                    ui.separator();
                    version_panel(ui, wb);
                    ui.separator();
                    self.feedback_form(ui, state, wb, (score, probability), threshold);
                });
        });
    }

    fn loaders(&mut self, ui: &mut egui::Ui, state: &mut ScoreState, wb: &Workbench) {
        ui.horizontal_wrapped(|ui| {
            let typical = wb.eda.as_ref().map(|e| e.typical_legit.clone());
            if ui
                .add_enabled(
                    typical.is_some(),
                    egui::Button::new("Reset to typical legitimate account"),
                )
                .on_hover_text("Median values of the legitimate accounts in the loaded data")
                .clicked()
                && let Some(t) = typical
            {
                state.set_from_raw(&t, "typical legitimate account".into());
                self.invalid = vec![None; N_FEATURES];
            }
            let labels = wb.data.as_ref().and_then(|d| d.labels.clone());
            for (text, class) in [("Random spammer", 1u8), ("Random legitimate", 0u8)] {
                if ui
                    .add_enabled(labels.is_some(), egui::Button::new(text))
                    .on_hover_text("Load a random labelled account of this class from the data")
                    .clicked()
                    && let (Some(d), Some(l)) = (&wb.data, &labels)
                {
                    let rows: Vec<usize> = (0..l.len()).filter(|&i| l[i] == class).collect();
                    if !rows.is_empty() {
                        let rng = self.rng.get_or_insert_with(|| {
                            SplitMix64::new(
                                std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .map_or(1, |d| d.as_nanos() as u64),
                            )
                        });
                        let i = rows[rng.below(rows.len())];
                        state.set_account(&d.row(i), d.user_ids[i].clone(), describe_row(d, i));
                        self.invalid = vec![None; N_FEATURES];
                    }
                }
            }
        });
        ui.horizontal(|ui| {
            let label = ui.label("User id:");
            let edit = ui
                .add(egui::TextEdit::singleline(&mut state.user_query).desired_width(140.0))
                .labelled_by(label.id);
            let go = ui.button("Load account").clicked()
                || (edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)));
            if go && let Some(d) = &wb.data {
                // Ids are text, compared exactly (after trimming): "00123" is not "123".
                let uid = state.user_query.trim();
                if let Some(i) = d.find_user(uid) {
                    state.set_account(&d.row(i), d.user_ids[i].clone(), describe_row(d, i));
                    self.invalid = vec![None; N_FEATURES];
                } else if uid.is_empty() {
                    state.loaded = "type a user id to load".to_string();
                } else {
                    state.loaded = format!(
                        "user {} is not in the loaded data",
                        crate::util::text::quote(uid)
                    );
                }
            }
        });
    }

    fn form(&mut self, ui: &mut egui::Ui, state: &mut ScoreState, importance: &[f64]) {
        let cat = catalog();
        ui.horizontal_wrapped(|ui| {
            for (i, c) in cat.categories.iter().enumerate() {
                ui.selectable_value(&mut state.category, i, c.as_str());
            }
        });
        state.category = state.category.min(cat.categories.len() - 1);
        let category = &cat.categories[state.category];
        ui.add_space(4.0);
        egui::Grid::new("fields")
            .num_columns(2)
            .striped(true)
            .spacing([12.0, 6.0])
            .show(ui, |ui| {
                for (i, f) in cat.in_category(category) {
                    let tip = format!(
                        "{} ({})\n{}\nAllowed: {} to {}\nImportance in the active model: {:.2}%",
                        f.label,
                        f.id,
                        f.description,
                        f.min,
                        f.max,
                        importance.get(i).copied().unwrap_or(0.0) * 100.0
                    );
                    let label = ui.label(&f.label).on_hover_text(&tip);
                    ui.horizontal(|ui| {
                        self.field(ui, state, i, label.id, &tip);
                    });
                    ui.end_row();
                }
            });
    }

    fn field(
        &mut self,
        ui: &mut egui::Ui,
        state: &mut ScoreState,
        i: usize,
        label: egui::Id,
        tip: &str,
    ) {
        let f = &catalog().features[i];
        let Some(current) = state.inputs[i] else {
            ui.weak("missing (imputed with the training median)");
            if ui
                .small_button("Set")
                .on_hover_text("Enter a value")
                .clicked()
            {
                state.inputs[i] = Some(f.min);
            }
            return;
        };
        match f.kind {
            Kind::Flag => {
                let mut on = current != 0.0;
                let text = if on { "yes" } else { "no" };
                if ui
                    .checkbox(&mut on, text)
                    .labelled_by(label)
                    .on_hover_text(tip)
                    .changed()
                {
                    state.inputs[i] = Some(if on { 1.0 } else { 0.0 });
                }
            }
            Kind::Ordinal => {
                let mut v = current;
                let text = f
                    .level_label(v)
                    .map_or_else(|| v.to_string(), str::to_string);
                egui::ComboBox::from_id_salt(("ordinal", i))
                    .selected_text(text)
                    .width(180.0)
                    .show_ui(ui, |ui| {
                        for (k, name) in f.levels.iter().enumerate() {
                            ui.selectable_value(&mut v, f.min + k as f64, name.as_str());
                        }
                    })
                    .response
                    .labelled_by(label)
                    .on_hover_text(tip);
                if v != current {
                    state.inputs[i] = Some(v);
                }
            }
            Kind::Count | Kind::Continuous => {
                // Edit a draft; only values inside the allowed range reach the model.
                let mut v = self.invalid[i].as_ref().map_or(current, |(v, _)| *v);
                let speed = ((f.max - f.min) / 500.0).max(0.05);
                let mut dv = egui::DragValue::new(&mut v).speed(speed);
                if f.kind == Kind::Count {
                    dv = dv.fixed_decimals(0);
                }
                let resp = ui.add(dv).labelled_by(label).on_hover_text(tip);
                if resp.changed() {
                    match f.check(v) {
                        Ok(()) => {
                            state.inputs[i] = Some(v);
                            self.invalid[i] = None;
                        }
                        Err(reason) => self.invalid[i] = Some((v, reason.to_string())),
                    }
                }
                if let Some((_, reason)) = &self.invalid[i] {
                    ui.colored_label(RED, format!("refused: {reason}; the model keeps {current}"));
                }
            }
        }
    }

    fn feedback_form(
        &mut self,
        ui: &mut egui::Ui,
        state: &ScoreState,
        wb: &mut Workbench,
        (score, probability): (f64, f64),
        threshold: f64,
    ) {
        ui.heading("Feedback");
        let predicted = crate::eval::verdict::label(score, threshold);
        let verdict = if predicted == 1 {
            "spammer"
        } else {
            "legitimate"
        };
        ui.label(format!(
            "The model says: {verdict} ({:.1}%). Was the prediction correct?",
            probability * 100.0
        ));
        ui.horizontal(|ui| {
            ui.radio_value(&mut self.feedback.correct, Some(true), "Correct");
            if ui
                .radio_value(&mut self.feedback.correct, Some(false), "Wrong")
                .clicked()
            {
                self.feedback.true_label = 1 - predicted;
            }
        });
        if self.feedback.correct == Some(false) {
            ui.horizontal(|ui| {
                ui.label("True label:");
                ui.radio_value(&mut self.feedback.true_label, 1, "Spammer");
                ui.radio_value(&mut self.feedback.true_label, 0, "Legitimate");
            });
        }
        let notes_label = ui.label("Notes:");
        ui.add(
            egui::TextEdit::multiline(&mut self.feedback.notes)
                .desired_rows(2)
                .desired_width(f32::INFINITY)
                .hint_text("What did you check? (optional)"),
        )
        .labelled_by(notes_label.id);
        let saving = wb.is_running(JobKind::Feedback);
        let ready = self.feedback.correct.is_some() && !saving;
        if ui
            .add_enabled(ready, egui::Button::new("Submit feedback"))
            .on_disabled_hover_text("Answer whether the prediction was correct first")
            .clicked()
        {
            let true_label = match self.feedback.correct {
                Some(true) => predicted,
                _ => self.feedback.true_label,
            };
            let user_id = state.loaded_user.as_deref().map(crate::data::UserId::from);
            wb.submit_feedback(NewFeedback {
                user_id,
                features: state.raw(),
                true_label,
                probability: Some(score),
                model_version: wb.active.as_ref().map(|a| a.manifest.version),
                predicted: Some(predicted),
                notes: std::mem::take(&mut self.feedback.notes),
                origin: Origin::App,
            });
            self.feedback.correct = None;
        }
        if let Some(s) = &wb.feedback {
            ui.label(format!(
                "Feedback so far: {} record(s); the model agreed with moderators on {}.",
                s.total,
                s.agreement
                    .map_or("-".to_string(), |a| format!("{:.1}%", a * 100.0))
            ));
            if !s.by_version.is_empty() {
                egui::CollapsingHeader::new("Feedback by model version")
                    .default_open(false)
                    .show(ui, |ui| {
                        egui::Grid::new("feedback_by_version")
                            .num_columns(3)
                            .striped(true)
                            .show(ui, |ui| {
                                ui.strong("Version");
                                ui.strong("Records");
                                ui.strong("Agreement");
                                ui.end_row();
                                for v in &s.by_version {
                                    ui.label(
                                        v.version.map_or("none (imported unscored)".into(), |v| {
                                            format!("v{v}")
                                        }),
                                    );
                                    ui.label(v.total.to_string());
                                    ui.label(match v.version {
                                        Some(_) if v.total > 0 => format!(
                                            "{:.1}%",
                                            v.agreed as f64 / v.total as f64 * 100.0
                                        ),
                                        _ => "-".into(),
                                    });
                                    ui.end_row();
                                }
                            });
                    });
            }
        }
    }
}

fn describe_row(d: &crate::data::Dataset, i: usize) -> String {
    let label = d.labels.as_ref().map_or(String::new(), |l| {
        format!(
            " (labelled {})",
            if l[i] == 1 { "spammer" } else { "legitimate" }
        )
    });
    format!("user {}{label}", crate::util::text::clip(&d.user_ids[i]))
}

fn format_value(f: &crate::data::catalog::Feature, v: f64) -> String {
    if v.is_nan() {
        return "missing".into();
    }
    match f.kind {
        Kind::Flag => (if v != 0.0 { "yes" } else { "no" }).into(),
        Kind::Ordinal => f
            .level_label(v)
            .map_or_else(|| v.to_string(), str::to_string),
        _ => format!("{v}"),
    }
}

/// What the contributions add up to, said plainly: they explain the raw score, from the
/// model's own average (under balanced weights spammers count as much as legitimate
/// accounts, so that average is far above the real share), not the calibrated
/// probability.
fn explanation_sum(e: &Explanation, model: Option<&crate::model::Model>) -> String {
    let raw = format!(
        "Contributions ({}) {} the raw score {:.1}% from the model's training average {:.1}%. Red pushes toward spam, green away.",
        e.method.name(),
        if e.method.additive() {
            "add up to"
        } else {
            "do not add up to"
        },
        e.prediction * 100.0,
        e.base * 100.0
    );
    match model.and_then(|m| Some((m, m.calibration.as_ref()?))) {
        Some((m, c)) => format!(
            "{raw} Calibrated, that score is a {:.1}% chance of spam; the average account's is {:.1}%.",
            m.probability(e.prediction) * 100.0,
            c.base_rate * 100.0
        ),
        None => raw,
    }
}

/// The explanation (TreeSHAP for forests) as a diverging bar chart plus the published risk flags.
fn risk_factors(ui: &mut egui::Ui, state: &ScoreState, wb: &Workbench, raw: &[f64]) {
    let cat = catalog();
    ui.heading("Why this score");
    match wb.explanation_for(raw) {
        None => {
            ui.horizontal(|ui| {
                ui.add(egui::Spinner::new());
                ui.label("Computing the explanation…");
            });
        }
        Some(e) => {
            let top = e.top(10);
            ui.label(explanation_sum(
                e,
                wb.active.as_ref().map(|a| a.model.as_ref()),
            ));
            let names: Vec<String> = top
                .iter()
                .map(|&(f, _)| {
                    let feat = &cat.features[f];
                    format!("{} = {}", feat.label, format_value(feat, raw[f]))
                })
                .collect();
            let values: Vec<f64> = top.iter().map(|&(_, c)| c * 100.0).collect();
            super::charts::ranked_bars(
                ui,
                "risk_factors",
                &names,
                &values,
                "contribution (percentage points)",
                220.0,
                |v| if v > 0.0 { RED } else { GREEN },
            );
            egui::Grid::new("contributions")
                .num_columns(3)
                .striped(true)
                .show(ui, |ui| {
                    ui.strong("Feature");
                    ui.strong("Value");
                    ui.strong("Contribution");
                    ui.end_row();
                    for &(f, c) in &top {
                        let feat = &cat.features[f];
                        ui.label(&feat.label).on_hover_text(&feat.description);
                        ui.label(format_value(feat, raw[f]));
                        ui.colored_label(
                            if c > 0.0 { RED } else { GREEN },
                            format!("{:+.2} pts", c * 100.0),
                        );
                        ui.end_row();
                    }
                });
        }
    }
    ui.add_space(6.0);
    ui.strong("Published risk indicators");
    let values: Vec<f64> = state.inputs.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
    let flags: Vec<String> = crate::ops::predict::risk_factors(&values)
        .into_iter()
        .filter_map(|r| {
            let i = crate::ops::predict::resolve(&r.feature)?;
            let f = &cat.features[i];
            Some(format!(
                "{} ({} = {})",
                r.reason,
                f.label,
                format_value(f, values[i])
            ))
        })
        .collect();
    if flags.is_empty() {
        ui.colored_label(GREEN, "None of the published risk indicators applies.");
    } else {
        for f in flags {
            ui.colored_label(Color32::from_rgb(230, 150, 60), format!("- {f}"));
        }
    }
}

fn version_panel(ui: &mut egui::Ui, wb: &Workbench) {
    let Some(a) = &wb.active else { return };
    let m = &a.manifest;
    ui.heading("Model version");
    egui::Grid::new("version").num_columns(2).show(ui, |ui| {
        let row = |ui: &mut egui::Ui, k: &str, v: String| {
            ui.label(k);
            ui.label(v);
            ui.end_row();
        };
        row(ui, "Active version", format!("v{}", m.version));
        row(ui, "Model", m.model_kind());
        row(ui, "Trained at", m.created_at.clone());
        row(
            ui,
            "Training rows",
            format!("{} ({} spammers)", m.train_rows, m.train_positives),
        );
        ui.label("Data source");
        let short = if m.data.is_synthetic() {
            "synthetic default data (not real accounts)".to_string()
        } else {
            m.data.describe()
        };
        ui.label(short)
            .on_hover_text(format!("{}\nsha256 {}", m.data.describe(), m.data.sha256));
        ui.end_row();
        row(
            ui,
            "Holdout",
            format!(
                "precision {:.3}  recall {:.3}  F1 {:.3}  ROC-AUC {:.3}",
                m.metrics.precision, m.metrics.recall, m.metrics.f1, m.metrics.roc_auc
            ),
        );
        row(ui, "Threshold", format!("{:.2}", m.threshold));
        let fb = wb.feedback.as_ref().and_then(|s| {
            s.by_version
                .iter()
                .find(|v| v.version == Some(m.version))
                .cloned()
        });
        row(
            ui,
            "Feedback for this version",
            match fb {
                Some(v) if v.total > 0 => format!(
                    "{} record(s), {:.1}% agreed",
                    v.total,
                    v.agreed as f64 / v.total as f64 * 100.0
                ),
                _ => "none yet".into(),
            },
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::explain::Method;

    #[test]
    fn the_sum_line_says_whether_contributions_add_up() {
        let e = |method| Explanation {
            method,
            base: 0.1,
            contributions: vec![0.2],
            prediction: 0.3,
        };
        let line = explanation_sum(&e(Method::TreeShap), None);
        assert!(line.contains(" add up to the raw score 30.0%"), "{line}");
        for m in [Method::HardVote, Method::Occlusion] {
            let line = explanation_sum(&e(m), None);
            assert!(
                line.contains("do not add up to the raw score 30.0%"),
                "{line}"
            );
        }
        let line = explanation_sum(&e(Method::Stacked), None);
        assert!(
            line.contains("stacking regression") && !line.contains("do not"),
            "{line}"
        );
    }
}
