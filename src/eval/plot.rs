//! PNG plots for evaluation reports (plotters, bitmap backend): the ROC curve of each machine
//! id and the score histograms of normal vs anomalous files with the calibrated threshold.
//! Labels use a system TrueType font (DejaVu Sans, Debian's fonts-dejavu-core); without one
//! the plots are skipped with a warning rather than drawn unlabelled.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/local/share/fonts/DejaVuSans.ttf",
];

/// Registers the label font once; false when none is installed.
pub fn font_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let Some(bytes) = FONT_PATHS.iter().find_map(|p| std::fs::read(p).ok()) else { return false };
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
    })
}

/// A plot that could not be drawn or written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: cannot draw plot: {message}", path.display())]
pub struct PlotError {
    pub path: std::path::PathBuf,
    pub message: String,
}

fn err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> PlotError + '_ {
    move |e| PlotError { path: path.to_path_buf(), message: e.to_string() }
}

/// ROC curve (fpr, tpr points) with the chance diagonal.
pub fn roc_png(path: &Path, title: &str, fpr: &[f64], tpr: &[f64]) -> Result<(), PlotError> {
    let e = err(path);
    let root = BitMapBackend::new(path, (520, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(&e)?;
    chart.configure_mesh().x_desc("false positive rate").y_desc("true positive rate").draw().map_err(&e)?;
    chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3))).map_err(&e)?;
    chart
        .draw_series(LineSeries::new(fpr.iter().copied().zip(tpr.iter().copied()), BLUE.stroke_width(2)))
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// Histograms of normal and anomalous scores, and the threshold as a vertical line.
pub fn histogram_png(
    path: &Path,
    title: &str,
    normal: &[f64],
    anomaly: &[f64],
    threshold: Option<f64>,
) -> Result<(), PlotError> {
    let e = err(path);
    let all = normal.iter().chain(anomaly).copied().chain(threshold);
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo.is_finite() && hi > lo { (lo, hi) } else { (0.0, 1.0) };
    let bins = 20usize;
    let width = (hi - lo) / bins as f64;
    let count = |xs: &[f64]| {
        let mut c = vec![0usize; bins];
        for &x in xs {
            c[(((x - lo) / width) as usize).min(bins - 1)] += 1;
        }
        c
    };
    let (cn, ca) = (count(normal), count(anomaly));
    let top = cn.iter().chain(&ca).copied().max().unwrap_or(1).max(1) as f64;
    let root = BitMapBackend::new(path, (640, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(40)
        .build_cartesian_2d(lo..hi, 0f64..top * 1.1)
        .map_err(&e)?;
    chart.configure_mesh().x_desc("file score (mean energy)").y_desc("files").draw().map_err(&e)?;
    for (counts, colour, label) in [(&cn, BLUE, "normal"), (&ca, RED, "anomaly")] {
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let x0 = lo + i as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], colour.mix(0.4).filled())
            }))
            .map_err(&e)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.mix(0.4).filled()));
    }
    if let Some(t) = threshold {
        chart
            .draw_series(LineSeries::new([(t, 0.0), (t, top * 1.1)], BLACK.stroke_width(2)))
            .map_err(&e)?
            .label("threshold")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], BLACK.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// Named series of (x, y) points as lines with markers, one colour each, on a shared axis.
pub fn lines_png(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<(), PlotError> {
    let e = err(path);
    let root = BitMapBackend::new(path, (760, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let pts = || series.iter().flat_map(|(_, p)| p.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (x0, x1) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (x, _)| (a.min(*x), b.max(*x)));
    let (y0, y1) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, y)| (a.min(*y), b.max(*y)));
    let (x0, x1) = if x0.is_finite() && x1 > x0 { (x0, x1) } else { (0.0, 1.0) };
    let (y0, y1) = if y0.is_finite() && y1 > y0 { (y0 - 0.05 * (y1 - y0), y1 + 0.05 * (y1 - y0)) } else { (0.0, 1.0) };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(&e)?;
    chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(&e)?;
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
            .map_err(&e)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, colour.filled()))).map_err(&e)?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// One operating point of a threshold sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OperatingPoint {
    pub threshold: f64,
    pub false_alarms_per_day: f64,
    pub detection_rate: f64,
}

/// An operating-point chart: false alarms per day (x) against detection rate (y), the points
/// joined in threshold order and labelled with their thresholds, the `current` and
/// `recommended` thresholds' points marked and named in the legend.
pub fn operating_points_png(
    path: &Path,
    title: &str,
    points: &[OperatingPoint],
    current: Option<f64>,
    recommended: Option<f64>,
) -> Result<(), PlotError> {
    let e = err(path);
    let root = BitMapBackend::new(path, (820, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut pts: Vec<OperatingPoint> =
        points.iter().copied().filter(|p| p.false_alarms_per_day.is_finite() && p.detection_rate.is_finite()).collect();
    pts.sort_by(|a, b| a.threshold.total_cmp(&b.threshold));
    let x1 = pts.iter().map(|p| p.false_alarms_per_day).fold(0f64, f64::max).max(1e-3) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.03 * x1..x1, -0.03f64..1.08f64)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_desc("false alarms per day (normal audio)")
        .y_desc("detection rate (anomalous segments)")
        .draw()
        .map_err(&e)?;
    let xy = |p: &OperatingPoint| (p.false_alarms_per_day, p.detection_rate);
    chart
        .draw_series(LineSeries::new(pts.iter().map(xy), BLUE.stroke_width(2)))
        .map_err(&e)?
        .label("swept thresholds (higher: left)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE.stroke_width(2)));
    chart.draw_series(pts.iter().map(|p| Circle::new(xy(p), 3, BLUE.filled()))).map_err(&e)?;
    // Threshold labels, thinned to about a dozen.
    let every = pts.len().div_ceil(12).max(1);
    let label = |v: f64| if v.abs() >= 100.0 || v.abs() < 0.01 { format!("{v:.3e}") } else { format!("{v:.3}") };
    chart
        .draw_series(pts.iter().enumerate().filter(|(i, _)| i % every == 0).map(|(_, p)| {
            EmptyElement::at(xy(p)) + Text::new(label(p.threshold), (6, 4), ("sans-serif", 11).into_font())
        }))
        .map_err(&e)?;
    let near = |t: f64| pts.iter().min_by(|a, b| (a.threshold - t).abs().total_cmp(&(b.threshold - t).abs())).copied();
    for (t, name, colour) in [(current, "current", RED), (recommended, "recommended", GREEN)] {
        let Some(p) = t.and_then(near) else { continue };
        let text = format!("{name} {}", label(p.threshold));
        chart
            .draw_series(std::iter::once(Circle::new(xy(&p), 8, colour.stroke_width(3))))
            .map_err(&e)?
            .label(text)
            .legend(move |(x, y)| Circle::new((x + 8, y), 6, colour.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// One point of a stream's timeline: stream time (s), window score, threshold, in alarm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimelinePoint {
    pub t_s: f64,
    pub score: f64,
    pub threshold: f64,
    pub alarm: bool,
}

/// Window score against the threshold over stream time, alarm spans shaded, the fault onset
/// (if any) marked.
pub fn timeline_png(
    path: &Path,
    title: &str,
    points: &[TimelinePoint],
    fault_at_s: Option<f64>,
) -> Result<(), PlotError> {
    let e = err(path);
    let root = BitMapBackend::new(path, (900, 360)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let t1 = points.last().map(|p| p.t_s).unwrap_or(1.0).max(1.0);
    let finite = points.iter().flat_map(|p| [p.score, p.threshold]).filter(|v| v.is_finite());
    let top = finite.fold(0f64, f64::max).max(1e-6) * 1.1;
    // A density's score can run 200x past its threshold: keep the threshold readable by
    // clipping the axis at 4x the threshold (the clipped scores run along the top).
    let thr = points.iter().map(|p| p.threshold).filter(|v| v.is_finite() && *v > 0.0).fold(0f64, f64::max);
    let clipped = thr > 0.0 && top > 4.0 * thr;
    let hi = if clipped { 4.0 * thr } else { top };
    let y_desc = if clipped { "window score (axis clipped at 4x threshold)" } else { "window score" };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..t1, 0f64..hi)
        .map_err(&e)?;
    chart.configure_mesh().x_desc("stream time (s)").y_desc(y_desc).draw().map_err(&e)?;
    // Alarm spans.
    let mut start = None;
    for (i, p) in points.iter().enumerate() {
        let end = i + 1 == points.len();
        match (p.alarm, start) {
            (true, None) => start = Some(p.t_s),
            (false, Some(s)) | (true, Some(s)) if !p.alarm || end => {
                chart
                    .draw_series(std::iter::once(Rectangle::new([(s, 0.0), (p.t_s, hi)], RED.mix(0.15).filled())))
                    .map_err(&e)?;
                start = None;
            }
            _ => {}
        }
    }
    if let Some(f) = fault_at_s {
        chart
            .draw_series(LineSeries::new([(f, 0.0), (f, hi)], BLACK.mix(0.5).stroke_width(1)))
            .map_err(&e)?
            .label("fault onset")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.5)));
    }
    chart
        .draw_series(LineSeries::new(
            points.iter().filter(|p| p.score.is_finite()).map(|p| (p.t_s, p.score.min(hi))),
            BLUE.stroke_width(2),
        ))
        .map_err(&e)?
        .label("window score")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            points.iter().filter(|p| p.threshold.is_finite()).map(|p| (p.t_s, p.threshold)),
            RED.stroke_width(2),
        ))
        .map_err(&e)?
        .label("threshold")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED.stroke_width(2)));
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// An alarm's evidence: the window's log-mel spectrogram (mel-major `n_mels` x `frames`, dB)
/// with the frequency axis in Hz (`band_hz`: each band's range), a dB colour bar, and the
/// strongest bands marked by ticks at both edges of the plot (the spectrogram itself stays
/// visible) and named in the legend.
#[allow(clippy::too_many_arguments)]
pub fn evidence_png(
    path: &Path,
    title: &str,
    mel_major: &[f32],
    n_mels: usize,
    frames: usize,
    hop_s: f64,
    band_hz: &[(f64, f64)],
    marks: &[(usize, String)],
) -> Result<(), PlotError> {
    let e = err(path);
    let root = BitMapBackend::new(path, (980, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let (main, bar) = root.split_horizontally(880);
    let (lo, hi) = mel_major.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let lo = lo.max(hi - 80.0);
    let t1 = (frames as f64 * hop_s).max(hop_s);
    let hz = |y: f64| {
        let b = (y.floor().max(0.0) as usize).min(band_hz.len().saturating_sub(1));
        band_hz.get(b).map(|(a, c)| 0.5 * (a + c)).unwrap_or(0.0)
    };
    let mut chart = ChartBuilder::on(&main)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..t1, 0f64..n_mels as f64)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("time in the window (s)")
        .y_desc("frequency")
        .y_labels(9)
        .y_label_formatter(&|y| {
            let f = hz(*y);
            if f >= 1000.0 {
                format!("{:.1} kHz", f / 1000.0)
            } else {
                format!("{f:.0} Hz")
            }
        })
        .draw()
        .map_err(&e)?;
    let cells = (0..n_mels).flat_map(|m| (0..frames).map(move |t| (m, t))).map(|(m, t)| {
        let v = ((mel_major[m * frames + t] - lo) / (hi - lo).max(1e-6)).clamp(0.0, 1.0) as f64;
        Rectangle::new([(t as f64 * hop_s, m as f64), ((t + 1) as f64 * hop_s, m as f64 + 1.0)], viridis(v).filled())
    });
    chart.draw_series(cells).map_err(&e)?;
    let tick = 0.03 * t1;
    for (i, (band, label)) in marks.iter().enumerate() {
        let y = *band as f64 + 0.5;
        let colour = [RED, MAGENTA, WHITE][i % 3];
        for (a, b) in [(0.0, tick), (t1 - tick, t1)] {
            chart
                .draw_series(std::iter::once(PathElement::new([(a, y), (b, y)], colour.stroke_width(3))))
                .map_err(&e)?;
        }
        chart
            .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
            .map_err(&e)?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(3)));
    }
    if !marks.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(&e)?;
    }
    // The colour bar, in dB.
    let mut cb = ChartBuilder::on(&bar)
        .margin_top(44)
        .margin_bottom(52)
        .margin_right(8)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..1.0, lo as f64..hi as f64)
        .map_err(&e)?;
    cb.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc("dB")
        .y_labels(6)
        .y_label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(&e)?;
    let steps = 64;
    let span = (hi - lo) as f64 / steps as f64;
    cb.draw_series((0..steps).map(|k| {
        let a = lo as f64 + k as f64 * span;
        Rectangle::new([(0.0, a), (1.0, a + span)], viridis(k as f64 / (steps - 1) as f64).filled())
    }))
    .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// Viridis-like colour for v in [0, 1] (piecewise linear through five anchors).
fn viridis(v: f64) -> RGBColor {
    const A: [(f64, f64, f64); 5] =
        [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let x = v.clamp(0.0, 1.0) * 4.0;
    let i = (x.floor() as usize).min(3);
    let f = x - i as f64;
    let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    RGBColor(mix(A[i].0, A[i + 1].0), mix(A[i].1, A[i + 1].1), mix(A[i].2, A[i + 1].2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operating_point_chart_is_drawn_with_its_marked_thresholds() {
        if !font_available() {
            eprintln!("SKIP: no DejaVu font");
            return;
        }
        let d = std::env::var_os("MPDR_PLOT_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let path = d.join(format!("operating-points-{}.png", std::process::id()));
        let points: Vec<OperatingPoint> = (0..30)
            .map(|i| {
                let t = 1.0 + 0.05 * i as f64;
                OperatingPoint {
                    threshold: t,
                    false_alarms_per_day: 40.0 * (-3.0 * (t - 1.0)).exp(),
                    detection_rate: (1.2 - 0.4 * (t - 1.0)).min(1.0),
                }
            })
            .collect();
        operating_points_png(&path, "operating points", &points, Some(1.5), Some(1.9)).unwrap();
        let png = std::fs::read(&path).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{} bytes", png.len());
        if std::env::var_os("MPDR_PLOT_DIR").is_none() {
            let _ = std::fs::remove_file(&path);
        }
    }
}
