//! `mpdr eval`: a bundle's scores on a machine folder's test clips, per id AUC / pAUC, and
//! the report files.

use std::path::{Path, PathBuf};

use super::{clip_window_scores, vector_energies, vectors_per_window, OfflineError, Result};
use crate::data::dcase::{self, MachineDir};
use crate::data::extract::{self, OnBadFile};
use crate::error::InputError;
use crate::eval::metrics::{partial_auc, roc_auc, PaucKind};
use crate::eval::report::{ClipScore, IdReport, Report};
use crate::model::Bundle;

/// Score every test file of `md` with `bundle`: the file score (mean energy over the file's
/// vectors or profiles) and its window scores (the calibration's windows, [`crate::detect::window_scores`]).
pub fn score_files(
    bundle: &Bundle,
    md: &MachineDir,
    cache: Option<&Path>,
    on_bad: OnBadFile,
) -> Result<Vec<ClipScore>> {
    let params = bundle
        .manifest
        .features
        .clone()
        .ok_or_else(|| InputError::new(&md.root, "the bundle has no feature parameters: not an audio model"))?;
    let audio = bundle.manifest.audio.unwrap_or_default();
    let paths: Vec<PathBuf> = md.test.iter().map(|f| f.path.clone()).collect();
    let lms = extract::logmels(&paths, &params, &audio, cache, on_bad)?;
    let window = vectors_per_window(calibration_window_s(bundle), &params);
    let mut out = Vec::new();
    let bar = crate::progress::bar(md.test.len() as u64, "scoring");
    for (f, lm) in md.test.iter().zip(lms) {
        bar.inc(1);
        let Some(lm) = lm else { continue };
        match vector_energies(bundle, &lm, &params)? {
            Some(e) => out.push(ClipScore {
                file: f.clone(),
                score: e.iter().map(|&x| x as f64).sum::<f64>() / e.len() as f64,
                windows: clip_window_scores(bundle, &lm, &params, window)?.unwrap_or_default(),
            }),
            None => tracing::warn!(file = %f.path.display(), "too short for one vector; skipped"),
        }
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Evaluate one machine folder and write report.json, report.md and scores.csv to `out`.
pub fn evaluate(
    bundle: &Bundle,
    machine_dir: &Path,
    out: &Path,
    cache: Option<&Path>,
    on_bad: OnBadFile,
) -> Result<Report> {
    let mut md = dcase::scan(machine_dir)?;
    // A model of one machine id is evaluated on that id's test clips only.
    if let Some(id) = &bundle.manifest.provenance.machine_id {
        md.test.retain(|f| &f.id == id);
    }
    if md.test.is_empty() {
        return Err(InputError::new(&machine_dir.join("test"), "no test files").into());
    }
    let scores = score_files(bundle, &md, cache, on_bad)?;
    let mut ids = Vec::new();
    for id in md.test_ids() {
        let (labels, s): (Vec<bool>, Vec<f64>) =
            scores.iter().filter(|c| c.file.id == id).map(|c| (c.file.anomaly, c.score)).unzip();
        let metric = |error| OfflineError::Metric { path: machine_dir.to_path_buf(), id: id.clone(), error };
        let auc = roc_auc(&labels, &s).map_err(metric)?;
        let pauc = partial_auc(&labels, &s, 0.1, PaucKind::McClish).map_err(metric)?;
        let n_anomaly = labels.iter().filter(|&&l| l).count();
        ids.push(IdReport { id, auc, pauc, n_normal: labels.len() - n_anomaly, n_anomaly });
    }
    let mean = |f: fn(&IdReport) -> f64| ids.iter().map(f).sum::<f64>() / ids.len().max(1) as f64;
    let threshold = bundle.manifest.threshold.as_ref().map(|t| t.value);
    // Share of the files of one label whose score (file or any window) is above the threshold.
    let rate = |anomaly: bool, score: fn(&ClipScore) -> f64| {
        let t = threshold?;
        let group: Vec<f64> = scores.iter().filter(|c| c.file.anomaly == anomaly).map(score).collect();
        (!group.is_empty()).then(|| group.iter().filter(|&&s| s > t).count() as f64 / group.len() as f64)
    };
    let max_window = |c: &ClipScore| c.windows.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let report = Report {
        machine: md.machine.clone(),
        model: serde_json::to_value(bundle.manifest.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        mean_auc: mean(|r| r.auc),
        mean_pauc: mean(|r| r.pauc),
        ids,
        threshold,
        false_alarm_rate: rate(false, |c| c.score),
        detection_rate: rate(true, |c| c.score),
        window_s: Some(calibration_window_s(bundle)),
        window_false_alarm_rate: rate(false, max_window),
        window_detection_rate: rate(true, max_window),
    };
    crate::eval::report::write(out, &report, &scores)?;
    Ok(report)
}

/// The window length the bundle's threshold was calibrated for (10 s without a threshold).
pub fn calibration_window_s(bundle: &Bundle) -> f64 {
    bundle
        .manifest
        .threshold
        .as_ref()
        .and_then(|t| t.window_s())
        .unwrap_or(crate::eval::calibrate::CalibrationTarget::default().window_s)
}
