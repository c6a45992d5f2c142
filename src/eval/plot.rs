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

fn err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("{}: cannot draw plot: {e}", path.display())
}

/// ROC curve (fpr, tpr points) with the chance diagonal.
pub fn roc_png(path: &Path, title: &str, fpr: &[f64], tpr: &[f64]) -> anyhow::Result<()> {
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
) -> anyhow::Result<()> {
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
