//! Chart building blocks shared by the screens.

use eframe::egui::{self, Color32};
use egui_plot::{Bar, BarChart, Legend, Plot};

/// A horizontal bar chart with one named row per value, the first value on top (ranked
/// lists: contributions, importance, importance changes). `color` picks each bar's color
/// from its value.
pub fn ranked_bars(
    ui: &mut egui::Ui,
    id: &str,
    names: &[String],
    values: &[f64],
    x_label: &str,
    label_width: f32,
    color: impl Fn(f64) -> Color32,
) {
    let n = names.len();
    let axis = names.to_vec();
    let bars: Vec<Bar> = values
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            Bar::new((n - 1 - k) as f64, v)
                .width(0.7)
                .name(&names[k])
                .fill(color(v))
        })
        .collect();
    Plot::new(id)
        .height((24.0 * n as f32 + 44.0).min(900.0))
        .allow_zoom(false)
        .allow_drag(false)
        .allow_scroll(false)
        .show_grid([true, false])
        .x_axis_label(x_label)
        .y_axis_min_width(label_width)
        .y_axis_formatter(move |mark, _| {
            let k = mark.value.round();
            if (mark.value - k).abs() > 1e-6 || k < 0.0 || k as usize >= n {
                return String::new();
            }
            axis[n - 1 - k as usize].clone()
        })
        .show(ui, |p| {
            p.bar_chart(
                BarChart::new(id, bars)
                    .horizontal()
                    .element_formatter(Box::new(|b, _| format!("{}: {:+.2}", b.name, b.value))),
            );
        });
}

/// A square plot with both axes from 0 to 1 (ROC and precision-recall curves).
pub fn unit_square(id: &str, height: f32, x_label: &str, y_label: &str) -> Plot<'static> {
    Plot::new(id)
        .height(height)
        .data_aspect(1.0)
        .legend(Legend::default())
        .x_axis_label(x_label.to_string())
        .y_axis_label(y_label.to_string())
        .include_x(0.0)
        .include_x(1.0)
        .include_y(0.0)
        .include_y(1.0)
}

/// A curve (ROC, precision-recall) as one line. Coarse curves (few thresholds: KNN,
/// naive Bayes, single trees) are drawn as separate segments: egui's stroke joins draw
/// a filled spike where a long, nearly vertical run meets a shallow segment.
pub fn curve(
    p: &mut egui_plot::PlotUi<'_>,
    name: String,
    points: Vec<[f64; 2]>,
    color: Color32,
    width: f32,
) {
    use egui_plot::{Line, PlotPoints};
    if points.len() > 60 {
        p.line(
            Line::new(name, PlotPoints::from(points))
                .color(color)
                .width(width),
        );
        return;
    }
    for w in points.windows(2) {
        p.line(
            Line::new(name.clone(), PlotPoints::from(w.to_vec()))
                .color(color)
                .width(width),
        );
    }
}

/// The i-th of a set of well-separated colors (golden-ratio hues, like egui_plot's own).
pub fn series_color(i: usize) -> Color32 {
    let h = (i as f32 * 0.618_034) % 1.0;
    egui::ecolor::Hsva::new(h, 0.85, 0.55, 1.0).into()
}
