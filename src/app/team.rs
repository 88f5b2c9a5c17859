//! The Team view: who said what on the team's service, and how far each moderator's
//! labels are trusted (the estimate is the service's, documented in docs/team.md).

use crate::workbench::Workbench;
use eframe::egui;

pub struct TeamPanel;

fn pct(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{:.0}%", x * 100.0))
}

impl TeamPanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, wb: &mut Workbench) {
        ui.heading("Team");
        if !wb.is_remote() {
            ui.label("This app works on this computer's registry alone. Connect to your team's service (File > Connect to server…) to share feedback and one model, and to see each moderator's statistics and trust here.");
            return;
        }
        let Some(team) = wb.team.clone() else {
            ui.label("Waiting for the team's statistics from the service…");
            return;
        };
        ui.label(format!(
            "{} feedback records; the model agreed with {} of the judged ones. Trust: each moderator's agreement with the accounts' confirmed final labels, shrunk toward their agreement with the other moderators on shared accounts, itself shrunk toward the team's, so a few records say little (see docs/team.md).",
            team.total_feedback,
            pct((team.total_feedback > 0).then_some(team.accuracy))
        ));
        ui.add_space(6.0);
        egui::Grid::new("team-table")
            .striped(true)
            .num_columns(8)
            .show(ui, |ui| {
                for h in [
                    "Moderator",
                    "Records",
                    "Agreement with the model",
                    "Shared with others",
                    "Agreement with others",
                    "On confirmed accounts",
                    "Agreement with confirmed",
                    "Trust",
                ] {
                    ui.strong(h);
                }
                ui.end_row();
                for m in &team.by_moderator {
                    ui.label(m.moderator.as_deref().unwrap_or("(no name: app or import)"));
                    ui.label(m.total.to_string());
                    ui.label(pct(m.agreement_with_model));
                    ui.label(m.pairs_with_others.to_string());
                    ui.label(pct(m.agreement_with_others));
                    ui.label(m.confirmed.to_string());
                    ui.label(pct(m.agreement_with_confirmed));
                    match m.trust {
                        Some(t) => {
                            ui.add(
                                egui::ProgressBar::new(t as f32)
                                    .text(format!("{t:.2}"))
                                    .desired_width(140.0),
                            );
                        }
                        None => {
                            ui.label("–");
                        }
                    }
                    ui.end_row();
                }
            });
    }
}
