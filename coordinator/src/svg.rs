//! Small self-contained SVG line charts for the report (no fonts or scripts fetched).

/// One polyline.
pub struct Series {
    pub points: Vec<(f64, f64)>,
    pub color: String,
    pub label: Option<String>,
    /// Vertical error bars (half-widths), one per point.
    pub error: Option<Vec<f64>>,
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: Vec<Series>,
    /// Dashed vertical markers with labels.
    pub markers: Vec<(f64, String)>,
    /// Fixed axis ranges, else the data's.
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
    /// A dotted diagonal (ROC chance line, calibration identity).
    pub diagonal: bool,
}

/// A colour from a fixed palette (colour-blind-safe Okabe–Ito first).
pub fn palette(i: usize) -> String {
    const P: [&str; 10] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000", "#999999", "#8C564B"];
    P[i % P.len()].to_string()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub fn render(c: &Chart) -> String {
    let (w, h) = (560.0, 360.0);
    let (l, r, t, b) = (62.0, 16.0, 28.0, 44.0);
    let all = c.series.iter().flat_map(|s| s.points.iter().enumerate().map(move |(k, p)| (p, s.error.as_ref().map_or(0.0, |e| e[k]))));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for ((x, y), e) in all {
        if x.is_finite() && y.is_finite() {
            x0 = x0.min(*x);
            x1 = x1.max(*x);
            y0 = y0.min(y - e);
            y1 = y1.max(y + e);
        }
    }
    if let Some((a, z)) = c.x_range {
        (x0, x1) = (a, z);
    }
    if let Some((a, z)) = c.y_range {
        (y0, y1) = (a, z);
    }
    if !(x1 > x0) {
        (x0, x1) = (x0 - 1.0, x0 + 1.0);
    }
    if !(y1 > y0) {
        (y0, y1) = (y0 - 1.0, y0 + 1.0);
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let px = |x: f64| l + (x.clamp(x0, x1) - x0) / (x1 - x0) * (w - l - r);
    // Values outside a fixed range are drawn at its edge rather than outside the frame.
    let py = |y: f64| h - b - (y.clamp(y0, y1) - y0) / (y1 - y0) * (h - t - b);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n<text x=\"{}\" y=\"17\" text-anchor=\"middle\" font-size=\"13\">{}</text>\n",
        w / 2.0,
        escape(c.title)
    );
    s.push_str(&format!("<rect x=\"{l}\" y=\"{t}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", w - l - r, h - t - b));
    for k in 0..=4 {
        let fx = x0 + (x1 - x0) * k as f64 / 4.0;
        let fy = y0 + (y1 - y0) * k as f64 / 4.0;
        s.push_str(&format!("<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n", px(fx), h - b + 14.0, tick(fx)));
        s.push_str(&format!("<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n", l - 4.0, py(fy) + 4.0, tick(fy)));
        s.push_str(&format!("<line x1=\"{l}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>\n", w - r, py(fy), py(fy)));
    }
    s.push_str(&format!("<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", (l + w - r) / 2.0, h - 8.0, escape(c.x_label)));
    s.push_str(&format!(
        "<text x=\"14\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">{}</text>\n",
        (t + h - b) / 2.0,
        (t + h - b) / 2.0,
        escape(c.y_label)
    ));
    if c.diagonal {
        s.push_str(&format!(
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"2 3\"/>\n",
            px(x0.max(y0)),
            py(x0.max(y0)),
            px(x1.min(y1)),
            py(x1.min(y1))
        ));
    }
    for (x, label) in &c.markers {
        s.push_str(&format!("<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{t}\" y2=\"{1}\" stroke=\"#666\" stroke-dasharray=\"4 3\"/>\n", px(*x), h - b));
        s.push_str(&format!("<text x=\"{:.1}\" y=\"{}\" font-size=\"10\">{}</text>\n", px(*x) + 3.0, t + 11.0, escape(label)));
    }
    let mut legend_y = t + 14.0;
    for se in &c.series {
        let pts: Vec<String> = se.points.iter().filter(|p| p.0.is_finite() && p.1.is_finite()).map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
        s.push_str(&format!("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>\n", se.color, pts.join(" ")));
        if let Some(err) = &se.error {
            for ((x, y), e) in se.points.iter().zip(err) {
                s.push_str(&format!(
                    "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"{3}\" stroke-opacity=\"0.5\"/>\n",
                    px(*x),
                    py(y - e),
                    py(y + e),
                    se.color
                ));
            }
        }
        if let Some(label) = &se.label {
            s.push_str(&format!(
                "<line x1=\"{}\" x2=\"{}\" y1=\"{legend_y:.1}\" y2=\"{legend_y:.1}\" stroke=\"{}\" stroke-width=\"2\"/>\n",
                w - r - 150.0,
                w - r - 134.0,
                se.color
            ));
            s.push_str(&format!("<text x=\"{}\" y=\"{:.1}\" font-size=\"10\">{}</text>\n", w - r - 130.0, legend_y + 3.5, escape(label)));
            legend_y += 13.0;
        }
    }
    s.push_str("</svg>\n");
    s
}

fn tick(v: f64) -> String {
    if v == 0.0 || (v.abs() >= 0.01 && v.abs() < 1e4) { format!("{:.3}", v).trim_end_matches('0').trim_end_matches('.').to_string() } else { format!("{v:.1e}") }
}
