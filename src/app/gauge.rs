//! The probability gauge: an arc from 0 to 100% with green / yellow / red bands
//! (0-30, 30-70, 70-100), a needle at the probability, a threshold marker, the number
//! and the verdict at the threshold.

use eframe::egui::{self, Align2, Color32, FontId, Pos2, Sense, Shape, Stroke, vec2};

pub const GREEN: Color32 = Color32::from_rgb(70, 170, 90);
pub const YELLOW: Color32 = Color32::from_rgb(225, 185, 60);
pub const RED: Color32 = Color32::from_rgb(215, 70, 60);

/// Color of the band a probability falls in.
pub fn band_color(p: f64) -> Color32 {
    if p < 0.3 {
        GREEN
    } else if p < 0.7 {
        YELLOW
    } else {
        RED
    }
}

/// Draws the gauge; `probability` and `threshold` in 0..=1. `spammer` is the verdict,
/// decided by the caller on the raw score (a calibration flat around the threshold can
/// map a score above it to the threshold's own probability).
pub fn gauge(ui: &mut egui::Ui, probability: f64, threshold: f64, spammer: bool) -> egui::Response {
    let size = vec2(340.0, 190.0);
    let (resp, painter) = ui.allocate_painter(size, Sense::hover());
    let rect = resp.rect;
    let center = egui::pos2(rect.center().x, rect.top() + 150.0);
    let radius = 115.0;
    let point = |t: f64, r: f32| -> Pos2 {
        // t = 0 at the left end (180 degrees), t = 1 at the right end (0 degrees).
        let a = std::f32::consts::PI * (1.0 - t.clamp(0.0, 1.0) as f32);
        center + r * vec2(a.cos(), -a.sin())
    };
    let arc = |t0: f64, t1: f64| -> Vec<Pos2> {
        (0..=40)
            .map(|i| point(t0 + (t1 - t0) * i as f64 / 40.0, radius))
            .collect()
    };
    for (t0, t1, color) in [(0.0, 0.3, GREEN), (0.3, 0.7, YELLOW), (0.7, 1.0, RED)] {
        painter.add(Shape::line(
            arc(t0, t1),
            Stroke::new(18.0, color.gamma_multiply(0.85)),
        ));
    }
    let text = ui.visuals().text_color();
    // Scale labels.
    for t in [0.0, 0.5, 1.0] {
        painter.text(
            point(t, radius + 22.0),
            Align2::CENTER_CENTER,
            format!("{:.0}%", t * 100.0),
            FontId::proportional(12.0),
            text,
        );
    }
    // Threshold marker: a tick across the arc.
    painter.line_segment(
        [
            point(threshold, radius - 16.0),
            point(threshold, radius + 14.0),
        ],
        Stroke::new(3.0, text),
    );
    painter.text(
        point(threshold, radius - 28.0),
        Align2::CENTER_CENTER,
        "threshold",
        FontId::proportional(10.0),
        text,
    );
    // Needle.
    painter.line_segment(
        [center, point(probability, radius - 6.0)],
        Stroke::new(4.0, text),
    );
    painter.circle_filled(center, 7.0, text);
    // Number and verdict.
    painter.text(
        center + vec2(0.0, -46.0),
        Align2::CENTER_CENTER,
        format!("{:.1}%", probability * 100.0),
        FontId::proportional(30.0),
        band_color(probability),
    );
    let (verdict, color) = if spammer {
        ("Likely spammer", RED)
    } else {
        ("Likely legitimate", GREEN)
    };
    painter.text(
        center + vec2(0.0, 24.0),
        Align2::CENTER_CENTER,
        format!("{verdict} at threshold {:.1}%", threshold * 100.0),
        FontId::proportional(15.0),
        color,
    );
    resp.on_hover_text(format!(
        "Probability that this account is a spammer: {:.2}%",
        probability * 100.0
    ))
}
