//! "Review queue": a scored file of accounts ranked by probability, filtered, with the
//! top three reasons per account; open an account on the score screen, give bulk
//! feedback on selected accounts, export the table.

use super::gauge::{GREEN, RED, band_color};
use crate::data::catalog::catalog;
use crate::ops::score::Queue;
use crate::workbench::{JobKind, Workbench};
use eframe::egui::{self, RichText};
use egui_extras::{Column, TableBuilder};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum VerdictFilter {
    #[default]
    All,
    Spammers,
    Legitimate,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueState {
    pub verdict: VerdictFilter,
    pub min_probability: f64,
    pub max_probability: f64,
}

impl Default for QueueState {
    fn default() -> Self {
        QueueState {
            verdict: VerdictFilter::All,
            min_probability: 0.0,
            max_probability: 1.0,
        }
    }
}

/// What the app should do after this frame.
pub enum QueueAction {
    /// Show row `i` of the queue's data on the score screen.
    Open(usize),
    /// Ask for a file of accounts to score.
    PickFile,
}

#[derive(Default)]
pub struct QueuePanel {
    /// Rows passing the filter, ranked; recomputed when the filter or queue changes.
    shown: Vec<u32>,
    shown_key: Option<(usize, VerdictFilter, u64, u64)>,
    selected: BTreeSet<usize>,
    export_path: String,
    /// A file to score, typed (for systems without a file dialog).
    score_path: String,
}

impl QueuePanel {
    /// The review queue: how to score, the filters, the bulk actions, export, the table.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        state: &mut QueueState,
        wb: &mut Workbench,
    ) -> Option<QueueAction> {
        let mut action = self.score_toolbar(ui, wb);
        let Some(q) = wb.queue.clone() else {
            ui.label("No accounts scored yet.");
            return action;
        };
        summary(ui, &q);
        filters(ui, state);
        self.refresh_shown(&q, state);
        self.selection_actions(ui, &q, wb);
        self.export_row(ui, &q, wb);
        ui.weak(
            "Click a row to open the account on the score screen; tick rows for bulk feedback.",
        );
        ui.separator();
        if let Some(i) = self.table(ui, &q, wb) {
            action = Some(QueueAction::Open(i));
        }
        action
    }

    /// The row of ways to score accounts (a picked file, a typed path, the loaded
    /// data, the team's traffic) and the cancel button; asks for a file pick.
    fn score_toolbar(&mut self, ui: &mut egui::Ui, wb: &mut Workbench) -> Option<QueueAction> {
        let mut action = None;
        let scoring = wb.is_running(JobKind::Queue);
        ui.horizontal(|ui| {
            if ui
                .add_enabled(
                    !scoring && wb.active.is_some(),
                    egui::Button::new("Score a file of accounts…"),
                )
                .on_hover_text("A CSV with user_id and X1..X51 (label optional)")
                .clicked()
            {
                action = Some(QueueAction::PickFile);
            }
            let label = ui.label("or path:");
            ui.add(egui::TextEdit::singleline(&mut self.score_path).desired_width(260.0))
                .labelled_by(label.id);
            if ui
                .add_enabled(
                    !scoring && wb.active.is_some() && !self.score_path.trim().is_empty(),
                    egui::Button::new("Score file"),
                )
                .clicked()
            {
                wb.score_queue(Some(PathBuf::from(self.score_path.trim())));
            }
            if ui
                .add_enabled(
                    !scoring && wb.active.is_some() && wb.data.is_some(),
                    egui::Button::new("Score the loaded data"),
                )
                .clicked()
            {
                wb.score_queue(None);
            }
            if wb.is_remote()
                && ui
                    .add_enabled(
                        !scoring && wb.active.is_some(),
                        egui::Button::new("Score the team's recent traffic"),
                    )
                    .on_hover_text("The 2,000 accounts the team's service scored most recently, one row each, ranked and explained here")
                    .clicked()
            {
                wb.score_team_traffic(2_000);
            }
            if wb.is_remote()
                && ui
                    .add_enabled(
                        !scoring && wb.active.is_some(),
                        egui::Button::new("The team's review decisions"),
                    )
                    .on_hover_text("The accounts the team's live decision policy sent to review that nobody reviewed since: most severe first, then highest score, with the rules that sent each")
                    .clicked()
            {
                wb.score_team_decisions(2_000);
            }
            if scoring && ui.button("Cancel scoring").clicked() {
                wb.cancel(JobKind::Queue);
            }
        });
        action
    }

    /// Recomputes the shown rows when the queue or the filter changed; a new queue
    /// clears the selection.
    fn refresh_shown(&mut self, q: &Arc<Queue>, state: &QueueState) {
        let verdict = match state.verdict {
            VerdictFilter::All => None,
            VerdictFilter::Spammers => Some(true),
            VerdictFilter::Legitimate => Some(false),
        };
        let key = (
            Arc::as_ptr(q) as usize,
            state.verdict,
            state.min_probability.to_bits(),
            state.max_probability.to_bits(),
        );
        if self.shown_key != Some(key) {
            if self.shown_key.is_none_or(|k| k.0 != key.0) {
                self.selected.clear();
            }
            self.shown = q.filtered(verdict, state.min_probability, state.max_probability);
            self.shown_key = Some(key);
        }
    }

    /// The selection row: counts, select all / clear, bulk feedback on the selected
    /// accounts, and claiming or releasing them for review.
    fn selection_actions(&mut self, ui: &mut egui::Ui, q: &Queue, wb: &mut Workbench) {
        ui.horizontal(|ui| {
            ui.label(format!(
                "{} shown, {} selected.",
                self.shown.len(),
                self.selected.len()
            ));
            if ui.button("Select all shown").clicked() {
                self.selected.extend(self.shown.iter().map(|&i| i as usize));
            }
            if ui.button("Clear selection").clicked() {
                self.selected.clear();
            }
            let any = !self.selected.is_empty();
            if ui
                .add_enabled(any, egui::Button::new("Confirm as spammers"))
                .on_hover_text("Record the selected accounts as spammers (one transaction)")
                .clicked()
            {
                wb.queue_feedback(std::mem::take(&mut self.selected).into_iter().collect(), 1);
            }
            if ui
                .add_enabled(any, egui::Button::new("Mark as legitimate"))
                .on_hover_text("Record the selected accounts as legitimate (one transaction)")
                .clicked()
            {
                wb.queue_feedback(std::mem::take(&mut self.selected).into_iter().collect(), 0);
            }
            ui.separator();
            let ids = |sel: &BTreeSet<usize>| -> Vec<String> {
                sel.iter().map(|&i| q.data.user_ids[i].to_string()).collect()
            };
            if ui
                .add_enabled(any, egui::Button::new("Claim selected"))
                .on_hover_text(format!(
                    "Take the selected accounts for {} minutes, so nobody else on the team reviews them meanwhile",
                    crate::workbench::CLAIM_SECONDS / 60
                ))
                .clicked()
            {
                wb.claim_reviews(ids(&self.selected));
            }
            if ui
                .add_enabled(any, egui::Button::new("Release selected"))
                .on_hover_text("Give back your claims on the selected accounts")
                .clicked()
            {
                wb.release_reviews(ids(&self.selected));
            }
        });
    }

    /// The export row: a path (defaulting next to the scored file) and the button
    /// that writes the shown rows to it.
    fn export_row(&mut self, ui: &mut egui::Ui, q: &Queue, wb: &mut Workbench) {
        ui.horizontal(|ui| {
            let label = ui.label("Export shown rows to:");
            if self.export_path.is_empty() {
                self.export_path = default_export_path(&q.data.source);
            }
            ui.add(egui::TextEdit::singleline(&mut self.export_path).desired_width(360.0))
                .labelled_by(label.id);
            if ui
                .add_enabled(
                    !wb.is_running(JobKind::Export),
                    egui::Button::new("Export CSV"),
                )
                .clicked()
            {
                let rows = self.shown.iter().map(|&i| i as usize).collect();
                wb.export_queue(PathBuf::from(self.export_path.trim()), rows);
            }
        });
    }

    /// The ranked table of shown accounts (tick box, rank, id, probability, verdict,
    /// label if known, review status, top three reasons). Applies a tick to the
    /// selection, asks for the reviews of the rows on screen, and returns the row
    /// clicked to open it.
    fn table(&mut self, ui: &mut egui::Ui, q: &Queue, wb: &mut Workbench) -> Option<usize> {
        let cat = catalog();
        let has_labels = q.data.labels.is_some();
        let mut open = None;
        let mut toggle = None;
        // Labels in the rows must not take clicks (text selection): a click on a row
        // opens the account.
        ui.style_mut().interaction.selectable_labels = false;
        let mut table = TableBuilder::new(ui)
            .id_salt("queue_table")
            .striped(true)
            .sense(egui::Sense::click())
            .column(Column::exact(24.0))
            .column(Column::exact(70.0))
            .column(Column::exact(100.0))
            .column(Column::exact(90.0))
            .column(Column::exact(90.0));
        if has_labels {
            table = table.column(Column::exact(90.0));
        }
        let decided = q.decisions.as_ref();
        if decided.is_some() {
            table = table.column(Column::initial(220.0).at_least(120.0));
        }
        let mut on_screen = Vec::new();
        table
            .column(Column::initial(190.0).at_least(100.0))
            .columns(Column::initial(230.0).at_least(120.0), 3)
            .header(20.0, |mut h| {
                let mut titles = vec!["", "Rank", "User id", "Probability", "Verdict"];
                if has_labels {
                    titles.push("Label");
                }
                if decided.is_some() {
                    titles.push("Decision (rules)");
                }
                titles.extend(["Review", "Reason 1", "Reason 2", "Reason 3"]);
                for t in titles {
                    h.col(|ui| {
                        ui.strong(t);
                    });
                }
            })
            .body(|body| {
                body.rows(20.0, self.shown.len(), |mut row| {
                    let rank = row.index();
                    let i = self.shown[rank] as usize;
                    let p = q.batch.probability[i];
                    let selected = self.selected.contains(&i);
                    row.set_selected(selected);
                    row.col(|ui| {
                        let mut on = selected;
                        if ui
                            .checkbox(&mut on, "")
                            .on_hover_text("Select for bulk feedback")
                            .changed()
                        {
                            toggle = Some(i);
                        }
                    });
                    row.col(|ui| {
                        ui.label((rank + 1).to_string());
                    });
                    row.col(|ui| {
                        ui.label(crate::util::text::clip(&q.data.user_ids[i]));
                    });
                    row.col(|ui| {
                        ui.label(RichText::new(format!("{:.1}%", p * 100.0)).color(band_color(p)));
                    });
                    row.col(|ui| {
                        if q.batch.is_spammer(i) {
                            ui.colored_label(RED, "spammer");
                        } else {
                            ui.colored_label(GREEN, "legitimate");
                        }
                    });
                    if let Some(l) = &q.data.labels {
                        row.col(|ui| {
                            ui.label(if l[i] == 1 { "spammer" } else { "legitimate" });
                        });
                    }
                    if let Some((d, rules)) = decided.and_then(|d| d.get(i)) {
                        row.col(|ui| {
                            ui.label(format!("{d}: {}", rules.join(", ")))
                                .on_hover_text(rules.join("\n"));
                        });
                    }
                    let id = q.data.user_ids[i].to_string();
                    row.col(|ui| review_cell(ui, wb.reviews.get(&id).map(|a| &**a)));
                    on_screen.push(id);
                    for r in 0..3 {
                        row.col(|ui| {
                            if let Some(&(f, c)) = q.batch.reasons(i).get(r) {
                                let feat = &cat.features[f as usize];
                                ui.label(
                                    RichText::new(format!("{} {:+.1} pts", feat.label, c * 100.0))
                                        .color(if c > 0.0 { RED } else { GREEN }),
                                )
                                .on_hover_text(format!(
                                    "{} = {}",
                                    feat.label, q.data.columns[f as usize][i]
                                ));
                            }
                        });
                    }
                    if row.response().clicked() && toggle != Some(i) {
                        open = Some(i);
                    }
                });
            });
        wb.want_reviews(on_screen);
        if let Some(i) = toggle
            && !self.selected.remove(&i)
        {
            self.selected.insert(i);
        }
        open
    }
}

/// The line saying what was scored, with which version, and how fast.
fn summary(ui: &mut egui::Ui, q: &Queue) {
    ui.label(format!(
        "{}: {} accounts scored with v{} (threshold {:.2}) in {:.1} s, {:.0} accounts/s. Reasons: path attribution.",
        q.data.source.describe(),
        q.batch.len(),
        q.batch.version,
        q.batch.threshold,
        q.batch.seconds,
        q.batch.rows_per_second()
    ));
}

/// The filter row: verdict and probability range.
fn filters(ui: &mut egui::Ui, state: &mut QueueState) {
    ui.horizontal(|ui| {
        ui.label("Show:");
        ui.selectable_value(&mut state.verdict, VerdictFilter::All, "all");
        ui.selectable_value(
            &mut state.verdict,
            VerdictFilter::Spammers,
            "flagged as spammers",
        );
        ui.selectable_value(&mut state.verdict, VerdictFilter::Legitimate, "legitimate");
        ui.separator();
        let lo = ui.label("Probability from");
        ui.add(
            egui::DragValue::new(&mut state.min_probability)
                .range(0.0..=1.0)
                .speed(0.01)
                .fixed_decimals(2),
        )
        .labelled_by(lo.id);
        let hi = ui.label("to");
        ui.add(
            egui::DragValue::new(&mut state.max_probability)
                .range(0.0..=1.0)
                .speed(0.01)
                .fixed_decimals(2),
        )
        .labelled_by(hi.id);
    });
}

/// Who claimed and who reviewed an account: "claimed by ned", "mia: spammer", ….
fn review_cell(ui: &mut egui::Ui, a: Option<&crate::service::api::AccountStatus>) {
    let Some(a) = a else { return };
    let name = |m: &Option<String>| m.clone().unwrap_or_else(|| "unnamed".into());
    let verdict = |l: u8| if l == 1 { "spammer" } else { "legitimate" };
    let mut parts = Vec::new();
    if let Some(c) = &a.confirmed {
        parts.push(format!("confirmed {}", verdict(c.label)));
    }
    for r in a.reviews.iter().rev().take(2) {
        parts.push(format!("{}: {}", name(&r.moderator), verdict(r.label)));
    }
    let claim = a.claim.as_ref();
    let text = match claim {
        Some(c) if parts.is_empty() => format!("claimed by {}", c.moderator),
        Some(c) => format!("claimed by {}; {}", c.moderator, parts.join(", ")),
        None => parts.join(", "),
    };
    let mut hover: Vec<String> = a
        .reviews
        .iter()
        .map(|r| {
            format!(
                "{} said {} at {}",
                name(&r.moderator),
                verdict(r.label),
                r.created_at
            )
        })
        .collect();
    if let Some(c) = claim {
        hover.push(format!("claimed by {} until {}", c.moderator, c.expires_at));
    }
    if let Some(c) = &a.confirmed {
        hover.push(format!(
            "confirmed {} by {} at {}",
            verdict(c.label),
            c.confirmed_by,
            c.confirmed_at
        ));
    }
    let color = if claim.is_some() {
        egui::Color32::from_rgb(230, 180, 60)
    } else {
        ui.visuals().text_color()
    };
    let l = ui.label(RichText::new(text).color(color));
    if !hover.is_empty() {
        l.on_hover_text(hover.join("\n"));
    }
}

fn default_export_path(source: &crate::data::DataSource) -> String {
    match &source.kind {
        crate::data::SourceKind::Csv { path } => {
            let p = PathBuf::from(path);
            p.with_file_name(format!(
                "{}_scored.csv",
                p.file_stem().and_then(|s| s.to_str()).unwrap_or("accounts")
            ))
            .display()
            .to_string()
        }
        crate::data::SourceKind::Synthetic { .. } => std::env::temp_dir()
            .join("spamscope_scored.csv")
            .display()
            .to_string(),
    }
}
