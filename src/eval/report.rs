//! The files `mpdr eval` writes: `report.json`, `report.md`, `scores.csv` and the plots.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::dcase::DcaseFile;
use crate::eval::metrics::MetricError;
use crate::eval::plot::PlotError;

/// A report file that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: cannot write: {error}", path.display())]
    Write { path: std::path::PathBuf, error: std::io::Error },
    #[error(transparent)]
    Metric(#[from] MetricError),
    #[error(transparent)]
    Plot(#[from] PlotError),
}

type Result<T, E = ReportError> = std::result::Result<T, E>;

/// Write `text` to `path`; an error names the file.
pub(crate) fn put(path: std::path::PathBuf, text: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(&path, text).map_err(|error| ReportError::Write { path, error })
}

/// Per-id results, as `report.json` writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdReport {
    pub id: String,
    pub auc: f64,
    pub pauc: f64,
    pub n_normal: usize,
    pub n_anomaly: usize,
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub machine: String,
    pub model: String,
    pub ids: Vec<IdReport>,
    pub mean_auc: f64,
    pub mean_pauc: f64,
    pub threshold: Option<f64>,
    /// Share of test files whose file score is above the threshold, normal and anomalous.
    pub false_alarm_rate: Option<f64>,
    pub detection_rate: Option<f64>,
    /// The window view: windows of `window_s` (the calibration's); share of test files with at
    /// least one window above the threshold, normal and anomalous.
    #[serde(default)]
    pub window_s: Option<f64>,
    #[serde(default)]
    pub window_false_alarm_rate: Option<f64>,
    #[serde(default)]
    pub window_detection_rate: Option<f64>,
}

/// One test clip's scores.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipScore {
    pub file: DcaseFile,
    /// Mean energy over the clip's vectors (what AUC and pAUC rank).
    pub score: f64,
    /// Its window scores, as the daemon would decide them.
    pub windows: Vec<f64>,
}

/// Write `report.json`, `report.md`, `scores.csv` (one line per file), `windows.csv` (one
/// line per window) and the plots to `out`.
pub fn write(out: &Path, report: &Report, clips: &[ClipScore]) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|error| ReportError::Write { path: out.to_path_buf(), error })?;
    put(out.join("report.json"), serde_json::to_string_pretty(report).unwrap_or_default())?;
    let mut csv = String::from("file,id,label,score\n");
    let mut windows = String::from("file,id,label,window,score\n");
    for c in clips {
        let f = &c.file;
        let name = f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let label = if f.anomaly { "anomaly" } else { "normal" };
        let _ = writeln!(csv, "{name},{},{label},{}", f.id, c.score);
        for (k, w) in c.windows.iter().enumerate() {
            let _ = writeln!(windows, "{name},{},{label},{k},{w}", f.id);
        }
    }
    put(out.join("scores.csv"), csv)?;
    put(out.join("windows.csv"), windows)?;
    let scores: Vec<(DcaseFile, f64)> = clips.iter().map(|c| (c.file.clone(), c.score)).collect();
    let scores = &scores;
    put(out.join("report.md"), markdown(report))?;
    plots(report, scores, out)
}

/// `roc_<id>.png` and `hist_<id>.png` for every id (skipped, with a warning, without a font).
fn plots(report: &Report, scores: &[(DcaseFile, f64)], out: &Path) -> Result<()> {
    if !crate::eval::plot::font_available() {
        tracing::warn!("no TrueType font found (install fonts-dejavu-core): report plots skipped");
        return Ok(());
    }
    for id in &report.ids {
        let (labels, s): (Vec<bool>, Vec<f64>) =
            scores.iter().filter(|(f, _)| f.id == id.id).map(|(f, s)| (f.anomaly, *s)).unzip();
        let roc = crate::eval::metrics::roc_curve(&labels, &s)?;
        let title =
            format!("{} id {} — {}: AUC {:.3}, pAUC {:.3}", report.machine, id.id, report.model, id.auc, id.pauc);
        crate::eval::plot::roc_png(&out.join(format!("roc_{}.png", id.id)), &title, &roc.fpr, &roc.tpr)?;
        let pick = |anomalous: bool| -> Vec<f64> {
            labels.iter().zip(&s).filter(|(l, _)| **l == anomalous).map(|(_, v)| *v).collect()
        };
        let (normal, anomaly) = (pick(false), pick(true));
        let title = format!("{} id {}: file scores and threshold", report.machine, id.id);
        crate::eval::plot::histogram_png(
            &out.join(format!("hist_{}.png", id.id)),
            &title,
            &normal,
            &anomaly,
            report.threshold,
        )?;
    }
    Ok(())
}

/// What the bundle's calibrated threshold means on these test files, in words a plant engineer
/// acts on: of 10 faults like these, how many would alarm, and how many normal files would.
pub fn threshold_meaning(r: &Report) -> Option<String> {
    let t = r.threshold?;
    let (view, fa, d) = match (r.window_s, r.window_false_alarm_rate, r.window_detection_rate) {
        (Some(w), Some(fa), Some(d)) => (format!("a {w} s window"), fa, d),
        _ => ("the file score".to_string(), r.false_alarm_rate?, r.detection_rate?),
    };
    Some(format!(
        "at its calibrated threshold ({t:.4}, {view} above it alarms) about {:.0} in 10 of these anomalous test files would alarm, and {:.1}% of the normal ones; `mpdr backtest` on a recording gives false alarms per day and detection delay",
        d * 10.0,
        fa * 100.0
    ))
}

fn markdown(r: &Report) -> String {
    let mut s = format!(
        "# {} — {}\n\nPlots: `roc_<id>.png` (ROC curve), `hist_<id>.png` (file-score histograms with the threshold).\n\n| id | AUC | pAUC (0.1, McClish) | normal | anomaly |\n|---|---|---|---|---|\n",
        r.machine, r.model
    );
    for i in &r.ids {
        let _ = writeln!(s, "| {} | {:.4} | {:.4} | {} | {} |", i.id, i.auc, i.pauc, i.n_normal, i.n_anomaly);
    }
    let _ = writeln!(s, "| **mean** | **{:.4}** | **{:.4}** | | |\n", r.mean_auc, r.mean_pauc);
    match (r.threshold, r.false_alarm_rate, r.detection_rate) {
        (Some(t), Some(fa), Some(d)) => {
            let _ = writeln!(
                s,
                "Calibrated threshold {t:.6}: {:.1}% of normal test files above it, {:.1}% of anomalous.",
                fa * 100.0,
                d * 100.0
            );
        }
        _ => s.push_str("No calibrated threshold in this bundle.\n"),
    }
    if let Some(m) = threshold_meaning(r) {
        let _ = writeln!(s, "\nIn short: {m}.");
    }
    if let (Some(w), Some(fa), Some(d)) = (r.window_s, r.window_false_alarm_rate, r.window_detection_rate) {
        let _ = writeln!(
            s,
            "\nWindow view ({w} s windows, as the daemon scores them; `windows.csv`): {:.1}% of normal test files have a window above the threshold, {:.1}% of anomalous.",
            fa * 100.0,
            d * 100.0
        );
    }
    s
}
