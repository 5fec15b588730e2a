//! PNG plots of a run with plotters: throughput over time and the latency percentile
//! spectrum, one series per phase. Text uses a TTF font registered at run time (ab_glyph, no
//! fontconfig).

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::LoadtestError;
use crate::stats::PhaseStats;

const COLORS: [RGBColor; 6] = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
/// Highest quantile on the spectrum plot, as nines (4 = p99.99).
const MAX_NINES: f64 = 4.0;

/// Registers `font` as the `sans-serif` family; must be called once before drawing.
pub fn register_font(font: &Path) -> Result<(), LoadtestError> {
    let bytes = std::fs::read(font).map_err(|e| LoadtestError::io(font, e))?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| {
        LoadtestError::Plot {
            path: font.display().to_string(),
            reason: "not a usable TTF font".into(),
        }
    })
}

fn plot_err(path: &Path) -> impl Fn(String) -> LoadtestError + '_ {
    move |reason| LoadtestError::Plot {
        path: path.display().to_string(),
        reason,
    }
}

fn phase_name(p: &PhaseStats) -> String {
    match p.info.target_events_per_s {
        Some(r) => format!("open {r:.0} ev/s"),
        None => format!("closed, {} in flight", p.info.concurrency),
    }
}

/// Draws `throughput.png` and `latency.png` into `dir`; returns their paths.
pub fn draw(dir: &Path, title: &str, phases: &[PhaseStats]) -> Result<Vec<PathBuf>, LoadtestError> {
    let names: Vec<String> = phases.iter().map(phase_name).collect();
    let t = dir.join("throughput.png");
    let series = phases
        .iter()
        .map(|p| {
            let pts = p.timeline.iter().enumerate();
            pts.map(|(s, v)| (s as f64 + 0.5, v.events as f64))
                .collect()
        })
        .collect();
    let xmax = phases.iter().map(|p| p.timeline.len()).max().unwrap_or(1);
    line_chart(&LineChart {
        path: &t,
        caption: format!("{title}: throughput"),
        x_max: (xmax.max(1)) as f64,
        x_desc: "seconds into the phase",
        y_desc: "events answered per second",
        x_label: None,
        names: &names,
        series,
    })
    .map_err(plot_err(&t))?;
    let l = dir.join("latency.png");
    let series = phases
        .iter()
        .map(|p| {
            let pts = p.spectrum.iter().filter(|(q, _)| *q < 1.0);
            pts.map(|(q, ms)| (nines(*q), *ms)).collect()
        })
        .collect();
    let label = |x: &f64| format!("{}%", 100.0 * (1.0 - 10f64.powf(-*x)));
    line_chart(&LineChart {
        path: &l,
        caption: format!("{title}: latency by percentile"),
        x_max: MAX_NINES,
        x_desc: "percentile",
        y_desc: "latency ms",
        x_label: Some(&label),
        names: &names,
        series,
    })
    .map_err(plot_err(&l))?;
    Ok(vec![t, l])
}

fn nines(q: f64) -> f64 {
    (-(1.0 - q).max(1e-12).log10()).min(MAX_NINES)
}

/// One PNG line chart, one named series per phase, y from 0.
struct LineChart<'a> {
    path: &'a Path,
    caption: String,
    x_max: f64,
    x_desc: &'a str,
    y_desc: &'a str,
    x_label: Option<&'a dyn Fn(&f64) -> String>,
    names: &'a [String],
    series: Vec<Vec<(f64, f64)>>,
}

fn line_chart(c: &LineChart<'_>) -> Result<(), String> {
    let root = BitMapBackend::new(c.path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let y_max = c
        .series
        .iter()
        .flatten()
        .map(|p| p.1)
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(&c.caption, ("sans-serif", 22))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..c.x_max, 0f64..y_max)
        .map_err(|e| e.to_string())?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(c.x_desc).y_desc(c.y_desc);
    if let Some(f) = c.x_label {
        mesh.x_labels(5).x_label_formatter(f);
    }
    mesh.draw().map_err(|e| e.to_string())?;
    for (i, (points, name)) in c.series.iter().zip(c.names).enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_scale() {
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert!((nines(0.5) - 0.301).abs() < 1e-3);
        assert_eq!(nines(1.0), MAX_NINES);
    }
}
