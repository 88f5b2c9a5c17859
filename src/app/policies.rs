//! The Policies tab: the kept decision policies (live, shadow, drafts), a draft edited
//! with validation as you type and its diff against the live policy, a backtest on the
//! loaded data (per rule and per outcome, a chart of the decisions, the accounts decided
//! otherwise, openable on the score screen), and saving, publishing and shadowing.

use crate::eval::policy::{CompiledPolicy, Policy};
use crate::ops::policy::{PolicyStatus, diff};
use crate::workbench::Workbench;
use crate::workbench::policies::PolicyCommand;
use eframe::egui::{self, Color32, RichText};

/// What the tab asks of the app.
pub enum PoliciesAction {
    /// Open row `i` of the backtest's data on the score screen.
    Open(usize),
}

/// The draft's text as last checked, and what the check said.
enum Check {
    Valid(Policy),
    Invalid(String),
}

pub struct PoliciesPanel {
    /// The draft in RON (or JSON), as the policy files are written.
    pub text: String,
    checked: Option<(String, Check)>,
    /// A long draft being checked on a thread: its text and where the check comes.
    pending: Option<(String, std::sync::mpsc::Receiver<Check>)>,
    pub note: String,
    asked: bool,
    /// What the backtest runs on.
    pub on: crate::workbench::policies::BacktestOn,
    /// Accounts scored a day, to state the review load a day.
    pub daily: f64,
}

impl Default for PoliciesPanel {
    fn default() -> Self {
        PoliciesPanel {
            text: include_str!("../../assets/policy.ron").to_string(),
            checked: None,
            pending: None,
            note: String::new(),
            asked: false,
            on: Default::default(),
            daily: 10_000.0,
        }
    }
}

/// The longest draft checked within a frame (bytes).
const CHECK_IN_FRAME: usize = 4096;

fn check_text(text: &str) -> Check {
    match crate::ops::policy::parse(text) {
        Err(e) => Check::Invalid(crate::util::text::one_line(&e)),
        Ok(p) => match CompiledPolicy::compile(&p) {
            Ok(_) => Check::Valid(p),
            Err(e) => Check::Invalid(e.to_string()),
        },
    }
}

const OK: Color32 = Color32::from_rgb(0x2e, 0x7d, 0x32);
const BAD: Color32 = Color32::from_rgb(0xc6, 0x28, 0x28);

fn pct(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{:.1}%", x * 100.0))
}

impl PoliciesPanel {
    /// Checks the draft when its text changed since the last check: a parse and a
    /// compile, about 1.6 µs a character (3.1 s for the largest policy allowed, 1.9 MB
    /// of conditions). A draft of up to [`CHECK_IN_FRAME`] bytes is checked in the frame
    /// (a few milliseconds at most); a longer one on a thread of its own, the frame
    /// showing "checking…" meanwhile. None while the text's check is not done.
    fn check(&mut self, ctx: &egui::Context) -> Option<&Check> {
        if let Some((text, rx)) = &self.pending
            && let Ok(check) = rx.try_recv()
        {
            self.checked = Some((text.clone(), check));
            self.pending = None;
        }
        let current = |t: &String| *t == self.text;
        if !self.checked.as_ref().is_some_and(|(t, _)| current(t))
            && !self.pending.as_ref().is_some_and(|(t, _)| current(t))
        {
            if self.text.len() <= CHECK_IN_FRAME {
                self.checked = Some((self.text.clone(), check_text(&self.text)));
            } else {
                let (tx, rx) = std::sync::mpsc::channel();
                let (text, ctx) = (self.text.clone(), ctx.clone());
                std::thread::spawn(move || {
                    let _ = tx.send(check_text(&text));
                    ctx.request_repaint();
                });
                self.pending = Some((self.text.clone(), rx));
            }
        }
        self.checked
            .as_ref()
            .filter(|(t, _)| current(t))
            .map(|(_, c)| c)
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, wb: &mut Workbench) -> Option<PoliciesAction> {
        if !self.asked {
            self.asked = true;
            wb.refresh_policies();
        }
        ui.heading("Decision policies");
        ui.label("Rules in CEL over the features (X1..X51 or their names), probability, score and risk.<feature> decide allow, review or block; the most severe matching outcome wins. Test a draft on the loaded data before it goes live, run it in shadow beside the live policy, then publish it.");
        ui.add_space(4.0);
        let mut action = None;
        ui.columns(2, |cols| {
            self.kept(&mut cols[0], wb);
            action = self.draft(&mut cols[1], wb);
        });
        action
    }

    /// The kept policies and the shadow's numbers.
    fn kept(&mut self, ui: &mut egui::Ui, wb: &mut Workbench) {
        ui.horizontal(|ui| {
            ui.strong(if wb.is_remote() {
                "Kept on the team's service"
            } else {
                "Kept in this registry"
            });
            if ui.button("Refresh").clicked() {
                wb.refresh_policies();
            }
        });
        let Some(book) = wb.policies.clone() else {
            ui.label("Reading the policies…");
            return;
        };
        if book.list.is_empty() {
            ui.label("No policy is kept yet: write one on the right and save it as a draft. Until one is published, the service answers without a decision.");
        }
        let mut command = None;
        if !book.list.is_empty() {
            egui::Grid::new("policies-kept")
            .striped(true)
            .num_columns(5)
            .show(ui, |ui| {
                for h in ["Policy", "Status", "Rules", "By", ""] {
                    ui.strong(h);
                }
                ui.end_row();
                for e in &book.list {
                    let r = &e.record;
                    ui.label(format!("v{}", r.version));
                    let status = RichText::new(e.status.name());
                    ui.label(match e.status {
                        PolicyStatus::Live => status.color(OK).strong(),
                        PolicyStatus::Shadow => status.strong(),
                        _ => status,
                    })
                    .on_hover_text(format!(
                        "written {}{}",
                        r.created_at,
                        r.published_at
                            .as_ref()
                            .map(|t| format!(", published {t}"))
                            .unwrap_or_default()
                    ));
                    ui.label(r.policy.rules.len().to_string());
                    ui.label(&r.author);
                    ui.horizontal(|ui| {
                        if ui
                            .small_button("Edit")
                            .on_hover_text("Load its rules into the draft")
                            .clicked()
                        {
                            self.text = ron::ser::to_string_pretty(
                                &r.policy,
                                ron::ser::PrettyConfig::default(),
                            )
                            .unwrap_or_default();
                        }
                        if e.status != PolicyStatus::Live {
                            if ui
                                .small_button("Publish")
                                .on_hover_text("Make it decide every request (an admin's step on a team's service)")
                                .clicked()
                            {
                                command = Some(PolicyCommand::Publish(r.version));
                            }
                            if e.status == PolicyStatus::Shadow {
                                if ui.small_button("Stop shadow").clicked() {
                                    command = Some(PolicyCommand::Shadow(None));
                                }
                            } else if ui
                                .small_button("Shadow")
                                .on_hover_text("Decide every request beside the live policy, logging what it would have decided")
                                .clicked()
                            {
                                command = Some(PolicyCommand::Shadow(Some(r.version)));
                            }
                        }
                    });
                    ui.end_row();
                }
            });
        }
        if let Some(c) = command {
            wb.policy_command(c);
        }
        if let (Some(n), Some(s)) = (book.shadow, &book.shadow_stats) {
            ui.add_space(8.0);
            ui.strong(format!("Policy v{n} in shadow"));
            ui.label(format!(
                "{} predictions decided; the live policy decided {} of them alike ({}).",
                s.decided,
                s.agreed,
                pct(s.agreement)
            ));
            for c in s.changes.iter().take(6) {
                ui.label(format!(
                    "{} live {} -> shadow {}",
                    c.predictions, c.live, c.shadow
                ));
            }
            egui::Grid::new("policies-shadow")
                .striped(true)
                .num_columns(5)
                .show(ui, |ui| {
                    for h in ["Outcome", "Shadow", "Precision", "Live", "Precision"] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for o in &s.outcomes {
                        ui.label(&o.outcome);
                        ui.label(o.shadow.predictions.to_string());
                        ui.label(pct(o.shadow.precision));
                        ui.label(o.live.predictions.to_string());
                        ui.label(pct(o.live.precision));
                        ui.end_row();
                    }
                });
            ui.small(
                "Precision: the share of spammers among the predictions with a moderator's label.",
            );
        }
    }

    /// The draft: editor, check, diff, actions and the backtest.
    fn draft(&mut self, ui: &mut egui::Ui, wb: &mut Workbench) -> Option<PoliciesAction> {
        let label = ui.strong("Draft");
        egui::ScrollArea::vertical()
            .id_salt("policy-editor")
            .max_height(260.0)
            .show(ui, |ui| {
                ui.add(
                    egui::TextEdit::multiline(&mut self.text)
                        .code_editor()
                        .desired_rows(12)
                        .desired_width(f32::INFINITY),
                )
                .labelled_by(label.id);
            });
        let live = wb.policies.as_ref().and_then(|b| {
            b.live_policy()
                .map(|e| (e.record.version, e.record.policy.clone()))
        });
        let ctx = ui.ctx().clone();
        let policy = match self.check(&ctx) {
            None => {
                ui.label("checking…");
                None
            }
            Some(Check::Valid(p)) => {
                ui.colored_label(
                    OK,
                    format!(
                        "Valid: {} rules; outcomes {}",
                        p.rules.len(),
                        p.outcomes.join(" < ")
                    ),
                );
                Some(p.clone())
            }
            Some(Check::Invalid(e)) => {
                ui.colored_label(BAD, format!("Not valid: {e}"));
                None
            }
        };
        if let Some(p) = &policy {
            let d = diff(live.as_ref().map(|(_, l)| l), p);
            match &live {
                None => ui.label("No policy is live yet: every rule is new."),
                Some((n, _)) if d.is_empty() => {
                    ui.label(format!("The same rules as the live policy v{n}."))
                }
                Some((n, _)) => ui.label(format!("Against the live policy v{n}:")),
            };
            if live.is_some() {
                for l in d.lines() {
                    let color = match l.chars().next() {
                        Some('+') => OK,
                        Some('-') => BAD,
                        _ => ui.visuals().text_color(),
                    };
                    ui.label(RichText::new(l).monospace().color(color));
                }
            }
        }
        ui.horizontal(|ui| {
            let label = ui.label("Note");
            ui.add(egui::TextEdit::singleline(&mut self.note).desired_width(240.0))
                .labelled_by(label.id);
        });
        ui.horizontal(|ui| {
            let ready = policy.is_some();
            use crate::workbench::policies::BacktestOn;
            if ui
                .add_enabled(ready, egui::Button::new("Backtest"))
                .clicked()
                && let Some(p) = &policy
            {
                wb.backtest_policy(p.clone(), self.on);
            }
            let label = ui.label("on");
            egui::ComboBox::from_id_salt("policy-backtest-on")
                .selected_text(self.on.name())
                .show_ui(ui, |ui| {
                    for on in [
                        BacktestOn::LoadedData,
                        BacktestOn::Feedback,
                        BacktestOn::Log,
                    ] {
                        ui.selectable_value(&mut self.on, on, on.name());
                    }
                })
                .response
                .labelled_by(label.id);
            if ui
                .add_enabled(ready, egui::Button::new("Save as draft"))
                .clicked()
                && let Some(p) = &policy
            {
                wb.policy_command(PolicyCommand::Save {
                    policy: p.clone(),
                    note: self.note.clone(),
                });
            }
        });
        ui.add_space(6.0);
        self.backtest(ui, wb)
    }

    fn backtest(&mut self, ui: &mut egui::Ui, wb: &Workbench) -> Option<PoliciesAction> {
        let t = wb.policy_test.clone()?;
        let b = &t.test.backtest;
        ui.strong("Backtest result");
        ui.label(format!(
            "{}: {} accounts ({} labelled, {} spammers), probabilities of v{}; the policy ran in {:.2} s. {:.1}% go to review.",
            t.data.source_name(),
            b.accounts,
            b.labelled,
            b.spammers,
            t.test.version,
            t.test.policy_seconds,
            t.test.review_share * 100.0
        ));
        let mut action = None;
        if !b.changed.is_empty() {
            ui.label(format!(
                "{} accounts decided otherwise than by the live policy:",
                b.changed.len()
            ));
            egui::ScrollArea::vertical()
                .id_salt("policy-changed")
                .max_height(120.0)
                .show(ui, |ui| {
                    for (c, user) in b.changed.iter().zip(&t.test.changed_users).take(200) {
                        ui.horizontal(|ui| {
                            ui.label(format!(
                                "{}: {} -> {}",
                                crate::util::text::clip(user),
                                c.live,
                                c.draft
                            ));
                            if ui.small_button("Open").clicked() {
                                action = Some(PoliciesAction::Open(c.row));
                            }
                        });
                    }
                });
        }
        ui.horizontal(|ui| {
            let label = ui.label("At");
            ui.add(
                egui::DragValue::new(&mut self.daily)
                    .range(1.0..=1e9)
                    .speed(100.0),
            )
            .labelled_by(label.id);
            ui.label(format!(
                "accounts a day: about {:.0} to review a day.",
                self.daily * t.test.review_share
            ));
        });
        egui::Grid::new("policy-rules")
            .striped(true)
            .num_columns(5)
            .show(ui, |ui| {
                for h in ["Rule", "Outcome", "Hits", "Precision", "Recall"] {
                    ui.strong(h);
                }
                ui.end_row();
                for r in &b.rules {
                    ui.label(&r.name);
                    ui.label(&r.outcome);
                    ui.label(r.hits.to_string());
                    ui.label(pct(r.precision));
                    ui.label(pct(r.recall));
                    ui.end_row();
                }
                for o in &b.outcomes {
                    ui.strong(format!("-> {}", o.outcome));
                    ui.label("");
                    ui.label(o.accounts.to_string());
                    ui.label(pct(o.precision));
                    ui.label(pct(o.recall));
                    ui.end_row();
                }
            });
        let names: Vec<String> = b.outcomes.iter().map(|o| o.outcome.clone()).collect();
        let values: Vec<f64> = b.outcomes.iter().map(|o| o.accounts as f64).collect();
        super::charts::ranked_bars(
            ui,
            "policy-outcomes",
            &names,
            &values,
            "accounts",
            90.0,
            |_| Color32::from_rgb(0x42, 0x7a, 0xb5),
        );
        action
    }
}
