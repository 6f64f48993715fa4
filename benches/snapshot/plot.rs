//! The curves' pictures: SVG line charts drawn with `plotters`. A log axis
//! is drawn as a linear one over the values' logarithms, its ticks labelled
//! with the values themselves.

use std::path::Path;

use plotters::prelude::*;

/// One axis: its label, and whether its scale is logarithmic.
pub struct Axis {
    label: String,
    log: bool,
}

impl Axis {
    pub fn log(label: &str) -> Self {
        Axis {
            label: label.into(),
            log: true,
        }
    }

    /// A linear axis starting at zero.
    pub fn linear(label: &str) -> Self {
        Axis {
            label: label.into(),
            log: false,
        }
    }

    fn to_plot(&self, v: f64) -> f64 {
        if self.log {
            v.max(f64::MIN_POSITIVE).log10()
        } else {
            v
        }
    }

    fn label(&self, v: f64) -> String {
        let v = if self.log { 10f64.powf(v) } else { v };
        if v.abs() >= 10.0 || v == v.round() {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    }

    /// The plotted range of `values` (already on the plot's scale).
    fn range(&self, values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
        let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
        if self.log {
            let pad = ((hi - lo) * 0.05).max(0.05);
            (lo - pad)..(hi + pad)
        } else {
            0.0..(hi * 1.1).max(f64::MIN_POSITIVE)
        }
    }
}

/// A named line through points.
pub struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: &str, xs: &[f64], ys: impl IntoIterator<Item = f64>) -> Self {
        Series {
            name: name.into(),
            points: xs.iter().copied().zip(ys).collect(),
        }
    }
}

/// Draws `series` into an SVG file at `path`; a failure is reported, not fatal.
pub fn lines(path: &Path, title: &str, x: Axis, y: Axis, series: &[Series]) {
    if let Err(e) = draw(path, title, &x, &y, series) {
        eprintln!("cannot draw {}: {e}", path.display());
    } else {
        println!("picture: {}", path.display());
    }
}

fn draw(
    path: &Path,
    title: &str,
    x: &Axis,
    y: &Axis,
    series: &[Series],
) -> Result<(), Box<dyn std::error::Error>> {
    let plotted: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .map(|&(a, b)| (x.to_plot(a), y.to_plot(b)))
                .collect()
        })
        .collect();
    let xr = x.range(plotted.iter().flatten().map(|p| p.0));
    let yr = y.range(plotted.iter().flatten().map(|p| p.1));
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(xr, yr)?;
    let fx = |v: &f64| x.label(*v);
    let fy = |v: &f64| y.label(*v);
    chart
        .configure_mesh()
        .x_desc(x.label.as_str())
        .y_desc(y.label.as_str())
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (i, (s, points)) in series.iter().zip(&plotted).enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(s.name.as_str())
            .legend(move |(lx, ly)| {
                PathElement::new(vec![(lx, ly), (lx + 20, ly)], color.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
