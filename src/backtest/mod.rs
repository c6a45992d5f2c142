//! `mpdr backtest`: recordings replayed through the daemon itself — a monitor config with one
//! `file` stream (as fast as the CPU allows), the streaming front-end, the scorer, the
//! detector with its window, hop and delays — with every window decision tapped. What the
//! daemon raised is scored against the labels: false alarms per day on normal audio (with a
//! 95% interval), detection rate and delay per anomalous segment; then the recorded window
//! scores are replayed through the same alarm state machine at other thresholds (the sweep).

pub mod labels;
pub mod report;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::daemon::{RunControl, Tapped};
use crate::detect::{AlarmMachine, DetectConfig, ThresholdSetting, Transition};
use crate::error::InputError;
use labels::Recording;

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct BacktestOptions {
    pub bundle: PathBuf,
    /// A DCASE machine folder (its test clips), or a WAV / folder of WAVs.
    pub data: PathBuf,
    /// `file,start_s,end_s,label` for WAV input (without it all audio is normal).
    pub labels: Option<PathBuf>,
    pub out: PathBuf,
    /// The detector's settings (the daemon's `[stream.detect]`).
    pub detect: DetectConfig,
    /// The false-alarm budget the recommended threshold is chosen for.
    pub false_alarms_per_day: f64,
}

/// Why a backtest stopped.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Bundle(#[from] crate::model::BundleError),
    #[error("the replay through the daemon failed: {0}")]
    Daemon(crate::daemon::DaemonError),
    #[error(transparent)]
    Report(#[from] crate::eval::report::ReportError),
    #[error("{0}")]
    Invalid(String),
}

/// One point of the threshold sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepPoint {
    pub threshold: f64,
    pub false_alarms: usize,
    pub false_alarms_per_day: f64,
    pub detection_rate: Option<f64>,
    pub median_delay_s: Option<f64>,
}

/// What the daemon's alarms mean against the labels, at one threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub raised: usize,
    pub false_alarms: usize,
    /// Raises whose window touches an anomaly by less than half: neither detection nor false alarm.
    pub ambiguous: usize,
    pub detected: usize,
    /// Seconds from each detected segment's start to its first alarm.
    pub delays_s: Vec<f64>,
}

/// The anomalous spans `(start, end)` of the replay in stream seconds (recordings back to
/// back), and its total length.
fn anomalous_spans(recs: &[Recording]) -> (Vec<(f64, f64)>, f64) {
    let (mut spans, mut at) = (Vec::new(), 0.0);
    for r in recs {
        spans.extend(r.anomalies.iter().map(|s| (at + s.start_s, at + s.end_s)));
        at += r.duration_s;
    }
    (spans, at)
}

/// Score raise times against the anomalous spans: a raise whose window `[t - window, t]`
/// covers at least half of min(window, span) of a span detects it; one that touches no
/// anomalous audio is a false alarm; the rest are ambiguous.
pub fn attribute(raises: &[f64], window_s: f64, spans: &[(f64, f64)]) -> Outcome {
    let mut first: Vec<Option<f64>> = vec![None; spans.len()];
    let (mut false_alarms, mut ambiguous) = (0, 0);
    for &t in raises {
        let (a, b) = (t - window_s, t);
        let mut touched = false;
        let mut hit = None;
        for (k, s) in spans.iter().enumerate() {
            let overlap = (b.min(s.1) - a.max(s.0)).max(0.0);
            if overlap > 0.0 {
                touched = true;
                if overlap + 1e-9 >= 0.5 * window_s.min(s.1 - s.0) && hit.is_none() {
                    hit = Some(k);
                }
            }
        }
        match hit {
            Some(k) => {
                if first[k].is_none() {
                    first[k] = Some(t);
                }
            }
            None if touched => ambiguous += 1,
            None => false_alarms += 1,
        }
    }
    let delays_s: Vec<f64> = first.iter().zip(spans).filter_map(|(f, s)| f.map(|t| (t - s.0).max(0.0))).collect();
    Outcome { raised: raises.len(), false_alarms, ambiguous, detected: delays_s.len(), delays_s }
}

/// The raise times the alarm state machine gives on recorded window scores at `threshold`.
pub fn raises_at(decisions: &[(f64, f64)], detect: &DetectConfig, threshold: f64) -> Vec<f64> {
    let mut m = AlarmMachine::new(detect, threshold);
    decisions
        .iter()
        .filter_map(|&(t, score)| matches!(m.step(score, t), Some(Transition::Raised { .. })).then_some(t))
        .collect()
}

/// The exact 95% interval (Garwood) of a Poisson rate: `count` events in `days`.
pub fn poisson_ci_per_day(count: usize, days: f64) -> (f64, f64) {
    use crate::eval::calibrate::gamma_upper_quantile;
    let k = count as f64;
    let lo = if count == 0 { 0.0 } else { gamma_upper_quantile(k, 1.0, 0.975) };
    let hi = gamma_upper_quantile(k + 1.0, 1.0, 0.025);
    (lo / days, hi / days)
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

/// Median and p90 of delays.
pub fn delay_stats(delays: &[f64]) -> (Option<f64>, Option<f64>) {
    let mut d = delays.to_vec();
    d.sort_by(f64::total_cmp);
    (quantile(&d, 0.5), quantile(&d, 0.9))
}

/// The recordings to replay, from the options.
fn recordings(
    opts: &BacktestOptions,
    machine_id: Option<&str>,
    params: &crate::features::FeatureParams,
) -> Result<Vec<Recording>, BacktestError> {
    if opts.data.join("test").is_dir() {
        if opts.labels.is_some() {
            return Err(BacktestError::Invalid(format!(
                "{}: a DCASE machine folder is labelled by its file names; --labels is for WAV recordings",
                opts.data.display()
            )));
        }
        let mut md = crate::data::dcase::scan(&opts.data)?;
        if let Some(id) = machine_id {
            md.test.retain(|f| f.id == id);
        }
        let is = |f: &crate::data::dcase::DcaseFile, ext: &str| {
            f.path.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
        };
        // One kind per replay: the WAVs when there are any, else the log-mel clips.
        let ext = if md.test.iter().any(|f| is(f, "wav")) { "wav" } else { "npy" };
        md.test.retain(|f| is(f, ext));
        if md.test.is_empty() {
            return Err(InputError::new(&opts.data.join("test"), "no test clips").into());
        }
        return Ok(labels::dcase_clips(&md.test, params)?);
    }
    match &opts.labels {
        Some(csv) => Ok(labels::read_csv(csv)?),
        None => {
            let files = crate::files::file_or_folder(&opts.data, "wav")
                .map_err(|e| InputError::new(&opts.data, e.to_string()))?;
            Ok(labels::unlabelled(&files)?)
        }
    }
}

/// Write the playlist (links in replay order) and the monitor config of the replay.
fn write_monitor_config(opts: &BacktestOptions, recs: &[Recording], resample: bool) -> Result<PathBuf, BacktestError> {
    let io = |p: &Path, e: std::io::Error| BacktestError::Input(InputError::new(p, e.to_string()));
    let playlist = opts.out.join("playlist");
    let _ = std::fs::remove_dir_all(&playlist);
    std::fs::create_dir_all(&playlist).map_err(|e| io(&playlist, e))?;
    let logmel = recs.iter().any(|r| r.path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")));
    let ext = if logmel { "npy" } else { "wav" };
    for (i, r) in recs.iter().enumerate() {
        let abs = std::fs::canonicalize(&r.path).map_err(|e| io(&r.path, e))?;
        let link = playlist.join(format!("{i:06}.{ext}"));
        std::os::unix::fs::symlink(&abs, &link).map_err(|e| io(&link, e))?;
    }
    let state = opts.out.join("state");
    let _ = std::fs::remove_dir_all(&state);
    let bundle = std::fs::canonicalize(&opts.bundle).map_err(|e| io(&opts.bundle, e))?;
    let detect = toml::to_string(&opts.detect).map_err(|e| BacktestError::Invalid(format!("detect settings: {e}")))?;
    let text = format!(
        "# Written by `mpdr backtest`: the daemon replays the playlist as fast as it can.\n\
         [server]\nlisten = \"\"\n[state]\ndir = {state:?}\n\
         [[stream]]\nname = \"backtest\"\nmodel = {bundle:?}\n\
         source = {source}\n\
         [stream.detect]\n{detect}\n\
         [[sink]]\ntype = \"file\"\npath = {events:?}\n",
        state = state.display().to_string(),
        bundle = bundle.display().to_string(),
        source = if logmel {
            format!("{{ type = \"logmel\", path = {:?} }}", playlist.display().to_string())
        } else {
            let p = playlist.display().to_string();
            format!("{{ type = \"file\", path = {p:?}, realtime = false, resample = {resample} }}")
        },
        events = opts.out.join("events.jsonl").display().to_string(),
    );
    let path = opts.out.join("monitor.toml");
    std::fs::write(&path, text).map_err(|e| io(&path, e))?;
    Ok(path)
}

/// Run the backtest and write its report; returns the report.
pub fn run(opts: &BacktestOptions) -> Result<report::BacktestReport, BacktestError> {
    let manifest = crate::model::Bundle::read_manifest(&opts.bundle)?;
    let threshold = match opts.detect.threshold {
        ThresholdSetting::Value(v) => v,
        ThresholdSetting::Model => manifest.threshold.as_ref().map(|t| t.value).ok_or_else(|| {
            BacktestError::Invalid(format!("{}: no calibrated threshold: give detect.threshold", opts.bundle.display()))
        })?,
    };
    let params = manifest.features.clone().ok_or_else(|| {
        BacktestError::Invalid(format!("{}: not an audio model (no [features])", opts.bundle.display()))
    })?;
    let recs = recordings(opts, manifest.provenance.machine_id.as_deref(), &params)?;
    std::fs::create_dir_all(&opts.out).map_err(|e| InputError::new(&opts.out, e.to_string()))?;
    // The daemon resolves relative paths against its config's folder: give it absolute ones.
    let out = std::fs::canonicalize(&opts.out).map_err(|e| InputError::new(&opts.out, e.to_string()))?;
    let opts = &BacktestOptions { out, ..opts.clone() };
    let resample = manifest.audio.map(|a| a.resample).unwrap_or(false);
    let config = write_monitor_config(opts, &recs, resample)?;
    let (tx, rx) = crossbeam_channel::unbounded::<Tapped>();
    let started = std::time::Instant::now();
    crate::daemon::run(&config, RunControl { exit_when_done: true, tap: Some(tx), ..Default::default() })
        .map_err(BacktestError::Daemon)?;
    let wall_s = started.elapsed().as_secs_f64();
    let tapped: Vec<Tapped> = rx.try_iter().collect();
    // A model that decided nothing (it failed on every window, or every window was silent)
    // says nothing about false alarms: "0 per day" would be a lie.
    if !tapped.iter().any(|t| t.score.is_finite()) {
        return Err(BacktestError::Invalid(format!(
            "{}: the model scored no window of the {} recording(s) (every window failed to score or was silent): no false-alarm rate can be given",
            opts.bundle.display(),
            recs.len()
        )));
    }
    let decisions: Vec<(f64, f64)> = tapped.iter().map(|t| (t.t_s, t.score)).collect();
    let live: Vec<f64> =
        tapped.iter().filter(|t| matches!(t.transition, Some(Transition::Raised { .. }))).map(|t| t.t_s).collect();
    let (spans, total_s) = anomalous_spans(&recs);
    let anomalous_s: f64 = spans.iter().map(|s| s.1 - s.0).sum();
    let normal_days = (total_s - anomalous_s).max(0.0) / 86_400.0;
    let outcome = attribute(&live, opts.detect.window_s, &spans);
    let sweep = sweep(&decisions, &opts.detect, &spans, normal_days, threshold);
    let r =
        report::BacktestReport::new(opts, threshold, &recs, normal_days, anomalous_s, &outcome, sweep, wall_s, &tapped);
    report::write(&opts.out, &r, &tapped, &spans)?;
    Ok(r)
}

/// The sweep: the configured threshold, quantiles 50–100% of the normal windows' scores (a
/// window touching no anomalous audio), and quantiles of the anomalous ones.
fn sweep(
    decisions: &[(f64, f64)],
    detect: &DetectConfig,
    spans: &[(f64, f64)],
    normal_days: f64,
    threshold: f64,
) -> Vec<SweepPoint> {
    let w = detect.window_s;
    let touches = |t: f64| spans.iter().any(|&(a, b)| t > a && t - w < b);
    let sorted = |anomalous: bool| {
        let mut v: Vec<f64> =
            decisions.iter().filter(|d| touches(d.0) == anomalous && d.1.is_finite()).map(|d| d.1).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (normal, anomalous) = (sorted(false), sorted(true));
    let mut thresholds: Vec<f64> = (0..=30).filter_map(|k| quantile(&normal, 0.5 + 0.5 * k as f64 / 30.0)).collect();
    thresholds.extend(normal.last().map(|m| m * 1.02));
    thresholds.extend((1..10).filter_map(|k| quantile(&anomalous, k as f64 / 10.0)));
    thresholds.push(threshold);
    thresholds.sort_by(f64::total_cmp);
    thresholds.dedup();
    let n_spans = spans.len();
    thresholds
        .into_iter()
        .map(|t| {
            let o = attribute(&raises_at(decisions, detect, t), detect.window_s, spans);
            SweepPoint {
                threshold: t,
                false_alarms: o.false_alarms,
                false_alarms_per_day: if normal_days > 0.0 { o.false_alarms as f64 / normal_days } else { f64::NAN },
                detection_rate: (n_spans > 0).then(|| o.detected as f64 / n_spans as f64),
                median_delay_s: delay_stats(&o.delays_s).0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_are_detections_false_alarms_or_ambiguous() {
        // Anomaly 100..200 s; window 10 s.
        let o = attribute(&[50.0, 104.0, 107.0, 150.0, 203.0, 300.0], 10.0, &[(100.0, 200.0)]);
        // 104: window 94..104 covers 4 s (< 5): ambiguous; 107 covers 7 s: detection (delay 7);
        // 203 covers 7 s of the span's end: detection, not the first; 50 and 300: false alarms.
        assert_eq!((o.raised, o.false_alarms, o.ambiguous, o.detected), (6, 2, 1, 1));
        assert_eq!(o.delays_s, vec![7.0]);
    }

    #[test]
    fn poisson_interval_brackets_the_rate() {
        let (lo, hi) = poisson_ci_per_day(0, 1.0);
        assert_eq!(lo, 0.0);
        assert!((hi - 3.689).abs() < 1e-3, "{hi}");
        let (lo, hi) = poisson_ci_per_day(10, 2.0);
        assert!((lo * 2.0 - 4.795).abs() < 1e-3 && (hi * 2.0 - 18.39).abs() < 1e-2, "{lo} {hi}");
    }

    #[test]
    fn the_sweep_replays_the_state_machine() {
        let detect =
            DetectConfig { window_s: 1.0, hop_s: 1.0, on_delay_s: 2.0, off_delay_s: 0.0, ..Default::default() };
        let d: Vec<(f64, f64)> = (1..=10).map(|t| (t as f64, if (4..=7).contains(&t) { 5.0 } else { 1.0 })).collect();
        assert_eq!(raises_at(&d, &detect, 2.0), vec![6.0], "above from t=4, raised after 2 s");
        assert!(raises_at(&d, &detect, 6.0).is_empty());
    }
}
