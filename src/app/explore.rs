//! "Explore data": class balance, feature importance, correlations, distributions,
//! missing values, PCA and the summary table, all from statistics computed off the UI
//! thread (see `eda.rs`).

use crate::data::catalog::{N_FEATURES, catalog};
use crate::data::eda::Eda;
use crate::workbench::{JobKind, Workbench};
use eframe::egui::{self, Color32, RichText};
use egui_extras::{Column, TableBuilder};
use egui_plot::{Bar, BarChart, Heatmap, Legend, Plot, PlotPoints, Points};
use serde::{Deserialize, Serialize};

const LEGIT: Color32 = Color32::from_rgb(80, 150, 220);
const SPAM: Color32 = Color32::from_rgb(215, 70, 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum View {
    #[default]
    Overview,
    Importance,
    Correlations,
    Distributions,
    Pca,
    Summary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ImportanceOrder {
    #[default]
    Importance,
    Column,
    Name,
}

/// Persisted choices of the Explore tab.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ExploreState {
    pub view: View,
    pub top_n: usize,
    pub order: ImportanceOrder,
    /// Feature shown in the distribution view.
    pub feature: usize,
    /// Histograms as shares of each class (true) or raw counts.
    pub normalise: bool,
}

impl Default for ExploreState {
    fn default() -> Self {
        ExploreState {
            view: View::Overview,
            top_n: 15,
            order: ImportanceOrder::Importance,
            feature: 18,
            normalise: true,
        }
    }
}

#[derive(Default)]
pub struct ExplorePanel;

impl ExplorePanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, state: &mut ExploreState, wb: &Workbench) {
        ui.horizontal_wrapped(|ui| {
            for (v, name) in [
                (View::Overview, "Overview"),
                (View::Importance, "Feature importance"),
                (View::Correlations, "Correlations"),
                (View::Distributions, "Distributions"),
                (View::Pca, "PCA"),
                (View::Summary, "Summary table"),
            ] {
                ui.selectable_value(&mut state.view, v, name);
            }
        });
        ui.separator();
        if state.view == View::Importance {
            importance(ui, state, wb);
            return;
        }
        let Some(eda) = wb.eda.clone() else {
            ui.horizontal(|ui| {
                if wb.is_running(JobKind::Statistics) {
                    ui.add(egui::Spinner::new());
                    ui.label("Computing statistics of the loaded data…");
                } else {
                    ui.label("No statistics yet: the data is still loading.");
                }
            });
            return;
        };
        match state.view {
            View::Overview => overview(ui, &eda),
            View::Correlations => correlations(ui, &eda),
            View::Distributions => distributions(ui, state, &eda),
            View::Pca => pca(ui, &eda),
            View::Summary => summary(ui, &eda),
            View::Importance => {}
        }
    }
}

fn feature_name(i: usize) -> String {
    let f = &catalog().features[i];
    format!("{} {}", f.id, f.label)
}

fn overview(ui: &mut egui::Ui, eda: &Eda) {
    ui.columns(2, |cols| {
        let ui = &mut cols[0];
        ui.heading("Class distribution");
        match eda.class_counts {
            Some([neg, pos]) => {
                ui.label(format!(
                    "{} accounts: {} legitimate, {} spammers ({:.2}%)",
                    eda.rows,
                    neg,
                    pos,
                    pos as f64 / eda.rows as f64 * 100.0
                ));
                Plot::new("classes")
                    .height(260.0)
                    .allow_zoom(false)
                    .allow_drag(false)
                    .allow_scroll(false)
                    .x_axis_formatter(|m, _| match m.value.round() as i64 {
                        0 if (m.value - 0.0).abs() < 1e-6 => "legitimate".into(),
                        1 if (m.value - 1.0).abs() < 1e-6 => "spammer".into(),
                        _ => String::new(),
                    })
                    .y_axis_label("accounts")
                    .show(ui, |p| {
                        p.bar_chart(
                            BarChart::new(
                                "accounts",
                                vec![
                                    Bar::new(0.0, neg as f64).name("legitimate").fill(LEGIT),
                                    Bar::new(1.0, pos as f64).name("spammer").fill(SPAM),
                                ],
                            )
                            .width(0.6),
                        );
                    });
            }
            None => {
                ui.label(format!("{} accounts, no labels in this file.", eda.rows));
            }
        }
        let ui = &mut cols[1];
        ui.heading("Missing values per feature");
        let missing: Vec<(usize, usize)> = eda
            .summary
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s.missing))
            .collect();
        let total: usize = missing.iter().map(|m| m.1).sum();
        ui.label(format!(
            "{total} missing value(s) in total; {}",
            missing
                .iter()
                .filter(|m| m.1 > 0)
                .map(|(i, m)| format!(
                    "{} {}: {m}",
                    catalog().features[*i].id,
                    catalog().features[*i].label
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Plot::new("missing")
            .height(260.0)
            .allow_zoom(false)
            .allow_drag(false)
            .allow_scroll(false)
            .x_axis_label("feature (X1..X51)")
            .y_axis_label("missing values")
            .show(ui, |p| {
                p.bar_chart(BarChart::new(
                    "missing",
                    missing
                        .iter()
                        .map(|&(i, m)| Bar::new((i + 1) as f64, m as f64).name(feature_name(i)))
                        .collect(),
                ));
            });
    });
}

fn importance(ui: &mut egui::Ui, state: &mut ExploreState, wb: &Workbench) {
    let Some(active) = &wb.active else {
        ui.label("No active model yet.");
        return;
    };
    let imp = &active.model.importance();
    ui.horizontal(|ui| {
        ui.label(format!(
            "Impurity-based importance of version {} (sums to 100%).",
            active.manifest.version
        ));
        ui.add(egui::Slider::new(&mut state.top_n, 5..=N_FEATURES).text("top N"));
        ui.label("Order:");
        ui.selectable_value(
            &mut state.order,
            ImportanceOrder::Importance,
            "by importance",
        );
        ui.selectable_value(&mut state.order, ImportanceOrder::Column, "by column");
        ui.selectable_value(&mut state.order, ImportanceOrder::Name, "by name");
    });
    let mut ranked: Vec<usize> = (0..N_FEATURES).collect();
    ranked.sort_by(|&a, &b| imp[b].total_cmp(&imp[a]));
    let mut shown: Vec<usize> = ranked.iter().copied().take(state.top_n).collect();
    match state.order {
        ImportanceOrder::Importance => {}
        ImportanceOrder::Column => shown.sort_unstable(),
        ImportanceOrder::Name => shown.sort_by_key(|&i| catalog().features[i].label.clone()),
    }
    let names: Vec<String> = shown.iter().map(|&i| feature_name(i)).collect();
    let values: Vec<f64> = shown.iter().map(|&i| imp[i] * 100.0).collect();
    ui.columns(2, |cols| {
        super::charts::ranked_bars(
            &mut cols[0],
            "importance",
            &names,
            &values,
            "importance (%)",
            230.0,
            |_| LEGIT,
        );
        let ui = &mut cols[1];
        TableBuilder::new(ui)
            .id_salt("importance_table")
            .striped(true)
            .column(Column::exact(44.0))
            .column(Column::exact(300.0))
            .column(Column::remainder())
            .header(20.0, |mut h| {
                h.col(|ui| {
                    ui.strong("Rank");
                });
                h.col(|ui| {
                    ui.strong("Feature");
                });
                h.col(|ui| {
                    ui.strong("Importance");
                });
            })
            .body(|body| {
                body.rows(18.0, N_FEATURES, |mut row| {
                    let i = ranked[row.index()];
                    row.col(|ui| {
                        ui.label(format!("{}", row_rank(&ranked, i)));
                    });
                    row.col(|ui| {
                        ui.add(egui::Label::new(feature_name(i)).truncate())
                            .on_hover_text(&catalog().features[i].description);
                    });
                    row.col(|ui| {
                        ui.label(format!("{:.2}%", imp[i] * 100.0));
                    });
                });
            });
    });
}

fn row_rank(ranked: &[usize], i: usize) -> usize {
    ranked.iter().position(|&r| r == i).map_or(0, |p| p + 1)
}

fn correlations(ui: &mut egui::Ui, eda: &Eda) {
    let k = eda.corr_names.len();
    ui.label(format!(
        "Pearson correlation of all {} features{}. Hover a cell for the pair and its value.",
        N_FEATURES,
        if k > N_FEATURES { " and the label" } else { "" }
    ));
    ui.columns(2, |cols| {
        let ui = &mut cols[0];
        // Heatmap rows are drawn bottom-up: put X1 at the top.
        let mut values = Vec::with_capacity(k * k);
        for r in (0..k).rev() {
            for c in 0..k {
                let v = eda.corr[r][c];
                values.push(if v.is_nan() { 0.0 } else { v });
            }
        }
        let names = eda.corr_names.clone();
        let corr = eda.corr.clone();
        Plot::new("corr_heatmap")
            .data_aspect(1.0)
            .height(560.0)
            .show_axes([false, false])
            .show_grid([false, false])
            .allow_scroll(false)
            .label_formatter(move |pos| {
                let p = match pos {
                    egui_plot::HoverPosition::NearDataPoint { position, .. } => *position,
                    egui_plot::HoverPosition::Elsewhere { position } => *position,
                };
                let (c, r) = (p.x.floor(), (k as f64 - p.y.ceil()).floor() + 0.0);
                if c < 0.0 || r < 0.0 || c as usize >= k || r as usize >= k {
                    return None;
                }
                let (r, c) = (r as usize, c as usize);
                Some(format!("{} vs {}: {:.3}", names[r], names[c], corr[r][c]))
            })
            .show(ui, |p| {
                p.heatmap(
                    Heatmap::new(values, k)
                        .range(-1.0, 1.0)
                        .show_labels(false)
                        .palette(&[
                            Color32::from_rgb(40, 90, 200),
                            Color32::from_rgb(240, 240, 240),
                            Color32::from_rgb(200, 50, 40),
                        ]),
                );
            });
        let ui = &mut cols[1];
        ui.heading("Pairs with |r| > 0.8");
        if eda.high_pairs.is_empty() {
            ui.label("none");
        }
        for &(i, j, r) in &eda.high_pairs {
            ui.label(format!(
                "{} ~ {}: {:+.3}",
                feature_name(i),
                feature_name(j),
                r
            ));
        }
        if !eda.label_corr.is_empty() {
            ui.add_space(8.0);
            ui.heading("Correlation with the label");
            let mut order: Vec<usize> = (0..N_FEATURES).collect();
            order.sort_by(|&a, &b| {
                let (x, y) = (eda.label_corr[a].abs(), eda.label_corr[b].abs());
                y.total_cmp(&x)
            });
            Plot::new("label_corr")
                .height(300.0)
                .allow_zoom(false)
                .allow_drag(false)
                .allow_scroll(false)
                .x_axis_label("features, strongest first")
                .y_axis_label("r with label")
                .show(ui, |p| {
                    p.bar_chart(BarChart::new(
                        "r",
                        order
                            .iter()
                            .enumerate()
                            .map(|(k, &i)| {
                                let r = eda.label_corr[i];
                                Bar::new(k as f64, if r.is_nan() { 0.0 } else { r })
                                    .name(feature_name(i))
                                    .fill(if r > 0.0 { SPAM } else { LEGIT })
                            })
                            .collect(),
                    ));
                });
        }
    });
}

fn distributions(ui: &mut egui::Ui, state: &mut ExploreState, eda: &Eda) {
    let cat = catalog();
    state.feature = state.feature.min(N_FEATURES - 1);
    ui.horizontal(|ui| {
        let label = ui.label("Feature:");
        egui::ComboBox::from_id_salt("dist_feature")
            .selected_text(feature_name(state.feature))
            .width(280.0)
            .show_ui(ui, |ui| {
                for i in 0..N_FEATURES {
                    ui.selectable_value(&mut state.feature, i, feature_name(i));
                }
            })
            .response
            .labelled_by(label.id);
        ui.checkbox(&mut state.normalise, "Share of each class");
    });
    let i = state.feature;
    let f = &cat.features[i];
    let h = &eda.histograms[i];
    let s = &eda.summary[i];
    ui.label(format!(
        "{}. Mean {:.3}, median {}, {} missing{}{}",
        f.description,
        s.mean,
        s.median,
        s.missing,
        if h.clipped {
            "; the last bin also holds values above the 99th percentile"
        } else {
            ""
        },
        eda.label_corr.get(i).map_or(String::new(), |r| format!(
            "; correlation with the label {r:+.3}"
        ))
    ));
    let totals = [
        h.counts[0].iter().sum::<u64>().max(1) as f64,
        h.counts[1].iter().sum::<u64>().max(1) as f64,
    ];
    let nb = h.counts[0].len();
    let width = (h.edges[nb] - h.edges[0]) / nb as f64;
    let classes: &[(usize, &str, Color32)] = if eda.class_counts.is_some() {
        &[(0, "legitimate", LEGIT), (1, "spammer", SPAM)]
    } else {
        &[(0, "all accounts", LEGIT)]
    };
    Plot::new("histogram")
        .height(420.0)
        .legend(Legend::default())
        .x_axis_label(format!("{} ({})", f.label, f.id))
        .y_axis_label(if state.normalise {
            "share of class"
        } else {
            "accounts"
        })
        .show(ui, |p| {
            // Classes side by side within each bin.
            let slot = width * 0.9 / classes.len() as f64;
            for (k, &(c, name, color)) in classes.iter().enumerate() {
                let bars: Vec<Bar> = (0..nb)
                    .map(|b| {
                        let x = h.edges[b] + width * 0.05 + slot * (k as f64 + 0.5);
                        let v = h.counts[c][b] as f64;
                        Bar::new(x, if state.normalise { v / totals[c] } else { v })
                            .width(slot * 0.95)
                    })
                    .collect();
                p.bar_chart(BarChart::new(name, bars).color(color.gamma_multiply(0.8)));
            }
        });
}

fn pca(ui: &mut egui::Ui, eda: &Eda) {
    let Some(pca) = &eda.pca else {
        ui.label("Too few rows for a PCA.");
        return;
    };
    ui.label(format!(
        "{} sampled accounts (spammers over-represented for visibility), standardised features projected on the first two principal components ({:.1}% and {:.1}% of the variance).",
        pca.points.len(),
        pca.explained[0] * 100.0,
        pca.explained[1] * 100.0
    ));
    let split = |class: u8| -> Vec<[f64; 2]> {
        pca.points
            .iter()
            .zip(&pca.labels)
            .filter(|(_, l)| **l == class)
            .map(|(p, _)| *p)
            .collect()
    };
    Plot::new("pca")
        .height(520.0)
        .legend(Legend::default())
        .x_axis_label("PC 1")
        .y_axis_label("PC 2")
        .show(ui, |p| {
            p.points(
                Points::new("legitimate", PlotPoints::from(split(0)))
                    .radius(2.0)
                    .color(LEGIT),
            );
            if eda.class_counts.is_some() {
                p.points(
                    Points::new("spammer", PlotPoints::from(split(1)))
                        .radius(2.0)
                        .color(SPAM),
                );
            }
        });
}

fn summary(ui: &mut egui::Ui, eda: &Eda) {
    ui.label(format!(
        "{} accounts. Quartiles are linear interpolations.",
        eda.rows
    ));
    let headers = [
        "Feature", "Count", "Mean", "Std", "Min", "25%", "50%", "75%", "Max", "Missing",
    ];
    TableBuilder::new(ui)
        .id_salt("summary_table")
        .striped(true)
        .column(Column::auto().at_least(220.0))
        .columns(Column::auto().at_least(70.0), headers.len() - 1)
        .header(20.0, |mut h| {
            for name in headers {
                h.col(|ui| {
                    ui.strong(name);
                });
            }
        })
        .body(|body| {
            body.rows(18.0, N_FEATURES, |mut row| {
                let i = row.index();
                let s = &eda.summary[i];
                row.col(|ui| {
                    ui.label(feature_name(i));
                });
                for v in [
                    s.count as f64,
                    s.mean,
                    s.std,
                    s.min,
                    s.q25,
                    s.median,
                    s.q75,
                    s.max,
                    s.missing as f64,
                ] {
                    row.col(|ui| {
                        ui.label(RichText::new(fmt_num(v)).monospace());
                    });
                }
            });
        });
}

fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}
