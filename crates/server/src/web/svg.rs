//! The two tiny server-side graphics: a sparkline path and a strip of daily availability bars.
//! (Real charts — axes, bands, zoom — are drawn by the vendored uPlot in the browser.)

use std::fmt::Write;

/// Width and height of the sparkline in CSS pixels (no viewBox: the path is in pixels).
pub const SPARK_W: u32 = 60;
pub const SPARK_H: u32 = 16;

/// SVG path data for `values` scaled into the sparkline box (each series against its own
/// range, from zero); gaps start a new segment. Empty when there is nothing to draw.
pub fn sparkline(values: &[Option<f64>]) -> String {
    let max = values.iter().flatten().copied().fold(0.0_f64, f64::max);
    if values.len() < 2 || max <= 0.0 || !max.is_finite() {
        return String::new();
    }
    let step = SPARK_W as f64 / (values.len() - 1) as f64;
    let mut d = String::with_capacity(values.len() * 5);
    // Absolute move, then relative line-tos (`l5-3 5 4`): the shortest text for a few bytes
    // per overview row.
    let mut prev: Option<(i64, i64)> = None;
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) if v.is_finite() => {
                let x = (i as f64 * step).round() as i64;
                let y = (SPARK_H as f64 - 1.0 - (v / max) * (SPARK_H as f64 - 2.0)).round() as i64;
                match prev {
                    None => {
                        let _ = write!(d, "M{x} {y}l");
                    }
                    Some((px, py)) => {
                        let (dx, dy) = (x - px, y - py);
                        if !d.ends_with('l') {
                            d.push(' ');
                        }
                        let _ = write!(d, "{dx}");
                        if dy >= 0 {
                            d.push(' ');
                        }
                        let _ = write!(d, "{dy}");
                    }
                }
                prev = Some((x, y));
            }
            _ => {
                if d.ends_with('l') {
                    // A lone point: draw a dot-sized segment so it shows.
                    d.push_str("1 0");
                }
                prev = None;
            }
        }
    }
    if d.ends_with('l') {
        d.push_str("1 0");
    }
    d
}

/// One day's bar.
#[derive(Debug, Clone)]
pub struct DayBar {
    pub x: u32,
    /// CSS class: `b-none`, `b-ok`, `b-warn`, `b-bad`.
    pub class: &'static str,
    pub title: String,
}

/// Bar class by availability ratio.
pub fn bar_class(ratio: Option<f64>) -> &'static str {
    match ratio {
        None => "b-none",
        Some(r) if r >= 0.999 => "b-ok",
        Some(r) if r >= 0.99 => "b-warn",
        Some(_) => "b-bad",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_and_breaks_on_gaps() {
        assert_eq!(sparkline(&[]), "");
        assert_eq!(sparkline(&[None, None]), "");
        let d = sparkline(&[Some(1.0), Some(2.0), None, Some(2.0), Some(1.0)]);
        assert!(d.starts_with("M0 "), "{d}");
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert_eq!(
            sparkline(&[Some(1.0), Some(1.0), Some(2.0)]),
            "M0 8l30 0 30-7"
        );
        assert_eq!(
            sparkline(&[Some(1.0), None, Some(1.0)]),
            "M0 1l1 0M60 1l1 0"
        );
        assert!(!d.contains('<') && !d.contains('"'));
    }
}
