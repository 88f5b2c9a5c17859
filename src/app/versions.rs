//! "Versions": the model history (parent, time, rows, feedback used, holdout and
//! feedback metrics, status), retrain and rollback, metrics across versions, and a
//! side-by-side comparison of two versions.

use crate::data::catalog::{N_FEATURES, catalog};
use crate::eval::metrics::roc_curve;
use crate::store::Manifest;
use crate::workbench::{JobKind, Workbench};
use eframe::egui::{self, Color32, RichText};
use egui_extras::{Column, TableBuilder};
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct VersionsState {
    /// The two versions compared (A, B).
    pub compare: (Option<u32>, Option<u32>),
}

pub struct VersionsPanel {
    /// ROC points per version, computed once from its holdout.
    roc: std::collections::HashMap<u32, Vec<[f64; 2]>>,
    /// The experiment form: candidate, canary (else shadow), canary share.
    exp_version: Option<u32>,
    exp_canary: bool,
    exp_share: f64,
}

impl Default for VersionsPanel {
    fn default() -> VersionsPanel {
        VersionsPanel {
            roc: Default::default(),
            exp_version: None,
            exp_canary: false,
            exp_share: 0.1,
        }
    }
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.digits$}"))
}

impl VersionsPanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, state: &mut VersionsState, wb: &mut Workbench) {
        let manifests: Vec<Manifest> = wb
            .versions
            .iter()
            .filter_map(|r| r.manifest.as_ref().ok().cloned())
            .collect();
        let active = wb.active_version;
        ui.horizontal(|ui| {
            let busy = wb.is_training();
            if ui
                .add_enabled(!busy && active.is_some(), egui::Button::new("Retrain now"))
                .on_hover_text(
                    "Train a candidate on the base data plus moderators' feedback; it becomes active only if it passes the promotion gate",
                )
                .clicked()
            {
                wb.retrain_now();
            }
            if busy && ui.button("Cancel retraining").clicked() {
                wb.cancel(JobKind::Retrain);
            }
            let new = wb
                .feedback
                .as_ref()
                .map(|s| s.total)
                .unwrap_or(0);
            if wb.is_remote() {
                ui.label(format!(
                    "{new} feedback record(s) on the team's service, which retrains (automatically by its own settings, or when asked here)."
                ));
                return;
            }
            let cfg = wb.online.clone().unwrap_or_default();
            ui.label(format!(
                "{new} feedback record(s) in total. Automatic retraining: {} (at {} new records, at most every {} s).",
                if cfg.auto_retrain { "on" } else { "off" },
                cfg.min_samples,
                cfg.retrain_interval
            ));
        });
        ui.separator();
        if wb.is_remote() {
            self.experiment(ui, wb, &manifests, active);
            ui.separator();
        }
        if manifests.is_empty() {
            ui.label("No versions yet.");
            return;
        }
        let mut activate = None;
        egui::ScrollArea::vertical()
            .id_salt("versions_scroll")
            .show(ui, |ui| {
                ui.heading("History");
                history_table(ui, &manifests, active, &mut activate);
                for r in &wb.versions {
                    if let Err(e) = &r.manifest {
                        ui.colored_label(
                            Color32::from_rgb(235, 90, 80),
                            format!("v{}: unreadable: {e}", r.version),
                        );
                    }
                }
                ui.add_space(8.0);
                ui.columns(2, |cols| {
                    metrics_chart(&mut cols[0], &manifests);
                    compare(&mut cols[1], state, &manifests, wb, &mut self.roc);
                });
            });
        if let Some(v) = activate {
            wb.rollback(v);
        }
    }
}

impl VersionsPanel {
    /// The team service's shadow or canary experiment: its numbers, promote or stop; or
    /// the form to start one.
    fn experiment(
        &mut self,
        ui: &mut egui::Ui,
        wb: &mut Workbench,
        manifests: &[Manifest],
        active: Option<u32>,
    ) {
        use crate::workbench::ExperimentCommand;
        ui.heading("Experiment on live traffic");
        let status = wb.experiment.clone();
        match status
            .as_ref()
            .and_then(|s| s.experiment.as_ref().map(|e| (s, e)))
        {
            Some((s, e)) if s.running => {
                ui.label(format!(
                    "{} of version {} beside version {}{}, started by {} at {}.",
                    if e.mode == "canary" {
                        "Canary"
                    } else {
                        "Shadow"
                    },
                    e.candidate_version,
                    e.active_version,
                    e.share
                        .map_or(String::new(), |x| format!(" ({:.0}% of users)", x * 100.0)),
                    e.started_by,
                    e.started_at
                ));
                if let Some(st) = &s.stats {
                    ui.label(format!(
                        "{} requests: {} answered by the active version, {} by the candidate; verdicts agreed on {} of {} scored by both.",
                        st.requests,
                        st.answered_by_active,
                        st.answered_by_candidate,
                        fmt_opt(st.agreement.map(|a| a * 100.0), 1) + "%",
                        st.both_scored
                    ));
                    egui::Grid::new("experiment_versions")
                        .striped(true)
                        .show(ui, |ui| {
                            for h in [
                                "Version",
                                "Answered",
                                "Scored",
                                "Mean probability",
                                "Labelled by moderators",
                                "Accuracy on them",
                                "Scores (10 bins, 0 to 1)",
                            ] {
                                ui.strong(h);
                            }
                            ui.end_row();
                            for v in &st.versions {
                                ui.label(format!(
                                    "v{}{}",
                                    v.version,
                                    if v.candidate { " (candidate)" } else { "" }
                                ));
                                ui.label(v.answered.to_string());
                                ui.label(v.scored.to_string());
                                ui.label(fmt_opt(v.mean_probability, 3));
                                ui.label(v.labelled.to_string());
                                ui.label(fmt_opt(v.accuracy.map(|a| a * 100.0), 1) + "%");
                                bars(ui, &v.histogram);
                                ui.end_row();
                            }
                        });
                }
                ui.horizontal(|ui| {
                    let busy = wb.is_running(JobKind::Experiment);
                    if ui
                        .add_enabled(
                            !busy,
                            egui::Button::new(format!("Promote version {}", e.candidate_version)),
                        )
                        .on_hover_text(
                            "Make the candidate the team's active version and end the experiment",
                        )
                        .clicked()
                    {
                        wb.experiment_command(ExperimentCommand::Promote);
                    }
                    if ui
                        .add_enabled(!busy, egui::Button::new("Stop experiment"))
                        .clicked()
                    {
                        wb.experiment_command(ExperimentCommand::Stop);
                    }
                });
            }
            _ => {
                let others: Vec<u32> = manifests
                    .iter()
                    .map(|m| m.version)
                    .filter(|&v| Some(v) != active)
                    .collect();
                if others.is_empty() {
                    ui.label("Only one version: train another (Retrain now) to try it beside the active one.");
                    return;
                }
                if self.exp_version.is_none_or(|v| !others.contains(&v)) {
                    self.exp_version = others.last().copied();
                }
                ui.horizontal(|ui| {
                    ui.label("Run version");
                    egui::ComboBox::from_id_salt("exp_version")
                        .selected_text(self.exp_version.map_or("-".into(), |v| format!("v{v}")))
                        .show_ui(ui, |ui| {
                            for v in &others {
                                ui.selectable_value(
                                    &mut self.exp_version,
                                    Some(*v),
                                    format!("v{v}"),
                                );
                            }
                        });
                    ui.label("beside the active one as");
                    ui.radio_value(&mut self.exp_canary, false, "shadow")
                        .on_hover_text("Both score every request; the active version answers");
                    ui.radio_value(&mut self.exp_canary, true, "canary")
                        .on_hover_text(
                            "The candidate answers a share of the users (sticky per user id)",
                        );
                    if self.exp_canary {
                        let l = ui.label("share");
                        ui.add(
                            egui::DragValue::new(&mut self.exp_share)
                                .range(0.01..=1.0)
                                .speed(0.01)
                                .fixed_decimals(2),
                        )
                        .labelled_by(l.id);
                    }
                    let busy = wb.is_running(JobKind::Experiment);
                    if ui
                        .add_enabled(!busy, egui::Button::new("Start experiment"))
                        .clicked()
                        && let Some(v) = self.exp_version
                    {
                        wb.experiment_command(ExperimentCommand::Start {
                            version: v,
                            canary: self.exp_canary,
                            share: self.exp_share,
                        });
                    }
                });
            }
        }
    }
}

/// A histogram drawn as small bars (hover: the counts).
fn bars(ui: &mut egui::Ui, h: &[u64]) {
    let (rect, resp) = ui.allocate_exact_size(egui::vec2(120.0, 18.0), egui::Sense::hover());
    let max = h.iter().copied().max().unwrap_or(0).max(1) as f32;
    let w = rect.width() / h.len().max(1) as f32;
    for (i, &n) in h.iter().enumerate() {
        let height = rect.height() * n as f32 / max;
        let x = rect.left() + i as f32 * w;
        ui.painter().rect_filled(
            egui::Rect::from_min_max(
                egui::pos2(x + 1.0, rect.bottom() - height),
                egui::pos2(x + w - 1.0, rect.bottom()),
            ),
            0.0,
            Color32::from_rgb(90, 140, 220),
        );
    }
    resp.on_hover_text(format!(
        "requests per probability bin (0–0.1, …, 0.9–1): {}",
        h.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
    ));
}

fn history_table(
    ui: &mut egui::Ui,
    manifests: &[Manifest],
    active: Option<u32>,
    activate: &mut Option<u32>,
) {
    let headers = [
        "Version",
        "Parent",
        "Created",
        "Model",
        "Status",
        "Rows",
        "Feedback",
        "ROC-AUC",
        "F1",
        "Precision",
        "Recall",
        "Feedback Brier",
        "",
    ];
    TableBuilder::new(ui)
        .id_salt("history")
        .striped(true)
        .vscroll(false)
        .columns(Column::auto().at_least(60.0), headers.len() - 1)
        .column(Column::remainder())
        .header(20.0, |mut h| {
            for name in headers {
                h.col(|ui| {
                    ui.strong(name);
                });
            }
        })
        .body(|mut body| {
            for m in manifests.iter().rev() {
                body.row(20.0, |mut row| {
                    let status = m.status_name(active);
                    row.col(|ui| {
                        ui.label(format!("v{}", m.version));
                    });
                    row.col(|ui| {
                        ui.label(m.parent.map_or("-".into(), |p| format!("v{p}")));
                    });
                    row.col(|ui| {
                        ui.label(&m.created_at);
                    });
                    row.col(|ui| {
                        ui.add(
                            egui::Label::new(m.model_kind()).wrap_mode(egui::TextWrapMode::Extend),
                        );
                    });
                    row.col(|ui| {
                        let color = match status {
                            "active" => Color32::from_rgb(70, 170, 90),
                            "rejected" => Color32::from_rgb(215, 70, 60),
                            "rolled back" => Color32::from_rgb(225, 185, 60),
                            _ => ui.visuals().text_color(),
                        };
                        let r = ui.colored_label(color, status);
                        let why = crate::ops::versions::reason(m);
                        if let Some(why) = why {
                            r.on_hover_text(why);
                        }
                    });
                    row.col(|ui| {
                        ui.label(m.train_rows.to_string());
                    });
                    row.col(|ui| {
                        ui.label(m.feedback_used.to_string());
                    });
                    row.col(|ui| {
                        ui.label(format!("{:.4}", m.metrics.roc_auc));
                    });
                    row.col(|ui| {
                        ui.label(format!("{:.3}", m.metrics.f1));
                    });
                    row.col(|ui| {
                        ui.label(format!("{:.3}", m.metrics.precision));
                    });
                    row.col(|ui| {
                        ui.label(format!("{:.3}", m.metrics.recall));
                    });
                    row.col(|ui| {
                        let fb = m.gate.as_ref().and_then(|g| g.feedback_candidate);
                        ui.label(fmt_opt(fb.map(|f| f.brier), 4));
                    });
                    row.col(|ui| {
                        if Some(m.version) != active
                            && ui
                                .small_button(format!("Activate v{}", m.version))
                                .on_hover_text("Roll back (or forward) to this version")
                                .clicked()
                        {
                            *activate = Some(m.version);
                        }
                    });
                });
            }
        });
}

fn metrics_chart(ui: &mut egui::Ui, manifests: &[Manifest]) {
    ui.heading("Holdout metrics across versions");
    let series = |f: fn(&Manifest) -> f64| -> Vec<[f64; 2]> {
        manifests
            .iter()
            .map(|m| [f64::from(m.version), f(m)])
            .collect()
    };
    Plot::new("versions_metrics")
        .height(300.0)
        .legend(Legend::default())
        .x_axis_label("version")
        .x_axis_formatter(|mark, _| {
            let v = mark.value.round();
            if (mark.value - v).abs() < 1e-6 && v >= 1.0 {
                format!("v{v}")
            } else {
                String::new()
            }
        })
        .include_y(0.0)
        .include_y(1.0)
        .show(ui, |p| {
            for (name, f) in [
                (
                    "ROC-AUC",
                    (|m: &Manifest| m.metrics.roc_auc) as fn(&Manifest) -> f64,
                ),
                ("F1", |m: &Manifest| m.metrics.f1),
                ("precision", |m: &Manifest| m.metrics.precision),
                ("recall", |m: &Manifest| m.metrics.recall),
            ] {
                let pts = series(f);
                p.line(Line::new(name, PlotPoints::from(pts.clone())));
                p.points(Points::new(name, PlotPoints::from(pts)).radius(3.0));
            }
        });
}

/// The side-by-side comparison of two versions: the pickers, their metrics, the
/// features whose importance moved most, and their ROC curves.
fn compare(
    ui: &mut egui::Ui,
    state: &mut VersionsState,
    manifests: &[Manifest],
    wb: &mut Workbench,
    roc_cache: &mut std::collections::HashMap<u32, Vec<[f64; 2]>>,
) {
    ui.heading("Compare two versions");
    let versions: Vec<u32> = manifests.iter().map(|m| m.version).collect();
    let (mut a, mut b) = compared_pair(state, manifests, &versions, wb.active_version);
    pair_pickers(ui, &versions, &mut a, &mut b);
    state.compare = (a, b);
    let (Some(a), Some(b)) = (a, b) else {
        ui.label("Two versions are needed.");
        return;
    };
    let get = |v: u32| manifests.iter().find(|m| m.version == v);
    let (Some(ma), Some(mb)) = (get(a), get(b)) else {
        return;
    };
    metrics_grid(ui, (a, ma), (b, mb));
    importance_changes(ui, ma, mb);
    roc_pair(ui, (a, b), wb, roc_cache);
}

/// The versions to compare: the remembered ones if they still exist, else B the
/// active (or newest) version and A its parent (or the newest other one); never the
/// same version twice when there is another.
fn compared_pair(
    state: &VersionsState,
    manifests: &[Manifest],
    versions: &[u32],
    active: Option<u32>,
) -> (Option<u32>, Option<u32>) {
    let newest = versions.last().copied();
    let default_b = active.or(newest);
    let default_a = default_b.and_then(|b| {
        manifests
            .iter()
            .find(|m| m.version == b)
            .and_then(|m| m.parent)
            .or_else(|| {
                versions
                    .iter()
                    .rev()
                    .copied()
                    .find(|&v| Some(v) != default_b)
            })
    });
    let b = state
        .compare
        .1
        .filter(|v| versions.contains(v))
        .or(default_b);
    let mut a = state
        .compare
        .0
        .filter(|v| versions.contains(v))
        .or(default_a);
    if a == b {
        // Comparing a version with itself says nothing: pick another one.
        a = versions.iter().rev().copied().find(|&v| Some(v) != b).or(a);
    }
    (a, b)
}

/// The A and B version pickers.
fn pair_pickers(ui: &mut egui::Ui, versions: &[u32], a: &mut Option<u32>, b: &mut Option<u32>) {
    ui.horizontal(|ui| {
        for (name, slot) in [("A:", a), ("B:", b)] {
            let label = ui.label(name);
            egui::ComboBox::from_id_salt(("compare", name))
                .selected_text(slot.map_or("-".into(), |v| format!("v{v}")))
                .show_ui(ui, |ui| {
                    for &v in versions {
                        ui.selectable_value(slot, Some(v), format!("v{v}"));
                    }
                })
                .response
                .labelled_by(label.id);
        }
    });
}

/// The two versions' holdout metrics with B - A (green when B is not worse), their
/// training rows and feedback used.
fn metrics_grid(ui: &mut egui::Ui, (a, ma): (u32, &Manifest), (b, mb): (u32, &Manifest)) {
    egui::Grid::new("compare_grid")
        .striped(true)
        .show(ui, |ui| {
            ui.strong("");
            ui.strong(format!("v{a}"));
            ui.strong(format!("v{b}"));
            ui.strong("B - A");
            ui.end_row();
            for (name, x, y) in [
                ("ROC-AUC", ma.metrics.roc_auc, mb.metrics.roc_auc),
                (
                    "average precision",
                    ma.metrics.average_precision,
                    mb.metrics.average_precision,
                ),
                ("precision", ma.metrics.precision, mb.metrics.precision),
                ("recall", ma.metrics.recall, mb.metrics.recall),
                ("F1", ma.metrics.f1, mb.metrics.f1),
                ("accuracy", ma.metrics.accuracy, mb.metrics.accuracy),
            ] {
                ui.label(name);
                ui.label(format!("{x:.4}"));
                ui.label(format!("{y:.4}"));
                ui.label(RichText::new(format!("{:+.4}", y - x)).color(if y >= x {
                    Color32::from_rgb(70, 170, 90)
                } else {
                    Color32::from_rgb(215, 70, 60)
                }));
                ui.end_row();
            }
            ui.label("training rows");
            ui.label(ma.train_rows.to_string());
            ui.label(mb.train_rows.to_string());
            ui.label("");
            ui.end_row();
            ui.label("feedback used");
            ui.label(ma.feedback_used.to_string());
            ui.label(mb.feedback_used.to_string());
            ui.label("");
            ui.end_row();
        });
}

/// Importance changes: bars for the ten features that moved most from A to B (shown
/// only when both versions have an importance per feature).
fn importance_changes(ui: &mut egui::Ui, ma: &Manifest, mb: &Manifest) {
    let imp = |m: &Manifest| -> Vec<f64> { m.importance.iter().map(|(_, v)| *v).collect() };
    let (ia, ib) = (imp(ma), imp(mb));
    if ia.len() == N_FEATURES && ib.len() == N_FEATURES {
        let mut order: Vec<usize> = (0..N_FEATURES).collect();
        order.sort_by(|&x, &y| (ib[y] - ia[y]).abs().total_cmp(&(ib[x] - ia[x]).abs()));
        order.truncate(10);
        let names: Vec<String> = order
            .iter()
            .map(|&i| {
                format!(
                    "{} {}",
                    catalog().features[i].id,
                    catalog().features[i].label
                )
            })
            .collect();
        let deltas: Vec<f64> = order.iter().map(|&i| (ib[i] - ia[i]) * 100.0).collect();
        ui.label("Largest importance changes (B - A, percentage points):");
        super::charts::ranked_bars(
            ui,
            "importance_delta",
            &names,
            &deltas,
            "change (percentage points)",
            200.0,
            |d| {
                if d >= 0.0 {
                    Color32::from_rgb(215, 70, 60)
                } else {
                    Color32::from_rgb(80, 150, 220)
                }
            },
        );
    }
}

/// ROC curves on each version's holdout: asks for the holdouts, computes each
/// version's curve once (kept in `roc_cache`) and plots the two that are there.
fn roc_pair(
    ui: &mut egui::Ui,
    (a, b): (u32, u32),
    wb: &mut Workbench,
    roc_cache: &mut std::collections::HashMap<u32, Vec<[f64; 2]>>,
) {
    wb.request_holdout(a);
    wb.request_holdout(b);
    for v in [a, b] {
        if !roc_cache.contains_key(&v)
            && let Some(h) = wb.holdouts.get(&v)
            && let Ok(roc) = roc_curve(&h.labels, &h.scores)
        {
            roc_cache.insert(
                v,
                crate::eval::metrics::thin(&roc, 1500)
                    .iter()
                    .map(|r| [r.fpr, r.tpr])
                    .collect(),
            );
        }
    }
    let (ca, cb) = (roc_cache.get(&a).cloned(), roc_cache.get(&b).cloned());
    super::charts::unit_square(
        "compare_roc",
        300.0,
        "false positive rate",
        "true positive rate",
    )
    .show(ui, |p| {
        if let Some(c) = ca {
            p.line(Line::new(format!("v{a} ROC"), PlotPoints::from(c)).width(1.5));
        }
        if let Some(c) = cb {
            p.line(Line::new(format!("v{b} ROC"), PlotPoints::from(c)).width(1.5));
        }
    });
}
