//! `mpdr calibrate`: re-fit a bundle's threshold on normal recordings made on site — the usual
//! path on a real machine, where the training held-out share is a few minutes and the site's
//! background, mounting and load are not in it. Same window scores as training's calibration
//! (`detect::window_scores`), same fit; the bundle records where the threshold came from.

use std::path::PathBuf;

use super::{clip_window_scores, vectors_per_window, OfflineError, Result};
use crate::data::extract::{self, OnBadFile};
use crate::error::InputError;
use crate::eval::calibrate::{calibrate, CalibrationTarget};
use crate::model::{Bundle, Threshold};

/// What `mpdr calibrate` does.
#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    pub bundle: PathBuf,
    /// A WAV or log-mel `.npy`, or a folder of them: normal audio of the machine.
    pub data: PathBuf,
    /// Budget and window; `None` keeps the bundle's (its threshold's details), else the default.
    pub false_alarms_per_day: Option<f64>,
    pub window_s: Option<f64>,
    pub cache: Option<PathBuf>,
    pub on_bad: OnBadFile,
}

/// The new threshold, written into the bundle (in place); returns it and the old one.
pub fn recalibrate(opts: &CalibrateOptions) -> Result<(Threshold, Option<Threshold>)> {
    let mut bundle = Bundle::load(&opts.bundle, tch::Device::Cpu)?;
    let params = bundle
        .manifest
        .features
        .clone()
        .ok_or_else(|| InputError::new(&opts.bundle, "not an audio model (no [features])"))?;
    let old = bundle.manifest.threshold.clone();
    let detail = |k: &str| old.as_ref().and_then(|t| t.details.get(k).copied());
    let default = CalibrationTarget::default();
    let target = CalibrationTarget {
        false_alarms_per_day: opts
            .false_alarms_per_day
            .or(detail("target_false_alarms_per_day"))
            .unwrap_or(default.false_alarms_per_day),
        window_s: opts.window_s.unwrap_or_else(|| super::evaluate::calibration_window_s(&bundle)),
    };
    // A profile bundle's window is its profile's.
    let target = CalibrationTarget { window_s: params.profile_window_s().unwrap_or(target.window_s), ..target };
    let files = match crate::files::file_or_folder(&opts.data, "wav") {
        Ok(f) => f,
        Err(_) => crate::files::file_or_folder(&opts.data, "npy")
            .map_err(|e| InputError::new(&opts.data, format!("{e} (expected WAV or log-mel .npy recordings)")))?,
    };
    let audio = bundle.manifest.audio.unwrap_or_default();
    let lms = extract::logmels(&files, &params, &audio, opts.cache.as_deref(), opts.on_bad)?;
    let per_window = vectors_per_window(target.window_s, &params);
    let (mut windows, mut used, mut frames) = (Vec::new(), 0usize, 0usize);
    for lm in lms.iter().flatten() {
        if let Some(w) = clip_window_scores(&bundle, lm, &params, per_window)? {
            frames += lm.n_frames;
            windows.extend(w);
            used += 1;
        }
    }
    let hours = frames as f64 * params.hop_length as f64 / params.sample_rate as f64 / 3600.0;
    let mut t = calibrate(&windows, &target).map_err(|e| {
        OfflineError::Input(InputError::new(&opts.data, format!("cannot calibrate on these recordings: {e}")))
    })?;
    t.fitted_on = Some(format!("mpdr calibrate: {} ({used} file(s), {hours:.2} h of audio)", opts.data.display()));
    if let Some(o) = &old {
        t.details.insert("previous_threshold".into(), o.value);
    }
    bundle.manifest.threshold = Some(t.clone());
    let clips: Vec<&crate::features::LogMel> = lms.iter().flatten().collect();
    if let Some(stats) = super::band_stats(&bundle, &clips, &params, per_window)? {
        bundle.manifest.band_stats = Some(stats);
    }
    bundle.save(&opts.bundle)?;
    Ok((t, old))
}
