//! Offline training and evaluation on DCASE folders (`mpdr train`, `mpdr eval`): files ->
//! cached log-mel -> standardised vectors -> recipe -> calibrated bundle ([`train`]); bundle +
//! test files -> per-file and per-window scores -> per-id AUC / pAUC ([`evaluate()`]), written
//! by `eval::report`.

pub mod calibrate;
pub mod dev_data;
pub mod evaluate;
pub mod record;

pub use evaluate::{evaluate, score_files};

/// Why `mpdr train` or `mpdr eval` stopped.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// A data folder or file (the path and what is wrong).
    #[error(transparent)]
    Input(#[from] crate::error::InputError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Bundle(#[from] crate::model::BundleError),
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Report(#[from] crate::eval::report::ReportError),
    /// `--resume` without a usable checkpoint.
    #[error("--resume: no usable checkpoint in {}: {error}", path.display())]
    NoCheckpoint { path: PathBuf, error: crate::model::BundleError },
    /// Stopped by a signal; the checkpoint stays.
    #[error("training interrupted; the last finished epoch is checkpointed in {} — run the same command with --resume to continue", checkpoint.display())]
    Interrupted { checkpoint: PathBuf },
    /// A metric that cannot be computed for one machine id (e.g. no anomalous clip).
    #[error("{}: machine id {id}: {error}", path.display())]
    Metric { path: PathBuf, id: String, error: crate::eval::metrics::MetricError },
}

type Result<T, E = OfflineError> = std::result::Result<T, E>;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tch::Tensor;

use crate::config::Valid;
use crate::data::dcase::{self, DcaseFile, MachineDir};
use crate::data::extract::{self, OnBadFile};
use crate::detect::window_scores;
use crate::error::InputError;
use crate::eval::calibrate::calibrate;
use crate::features::{FeatureParams, LogMel};
use crate::model::{Bundle, ModelKind, Scaler};
use crate::mpdr::error::TrainError;
use crate::mpdr::recipe::{self, TrainConfig, TrainData, TrainHooks};

/// Options of `mpdr train` besides the config file.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub data: PathBuf,
    pub model: ModelKind,
    pub out: PathBuf,
    /// The recipe, validated once (after the command line's overrides).
    pub config: Valid<TrainConfig>,
    pub cache: Option<PathBuf>,
    pub on_bad: OnBadFile,
    /// Continue from `<out>/checkpoint` instead of starting afresh.
    pub resume: bool,
    /// Train on this machine id's files only; the other ids' normals feed the selection checks.
    pub id: Option<String>,
    /// Keep a copy of every epoch's bundle under `<out>/epochs/<stage>-<n>`.
    pub keep_epochs: bool,
    /// Set (e.g. by SIGINT) to stop after the current step; the last checkpoint stays usable.
    pub stop: Arc<AtomicBool>,
}

/// Where `train` keeps the per-epoch checkpoint of a run writing to `out`.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// Writes a loadable bundle (with features, scaler and stage progress) after every epoch, and
/// passes the stop flag to the loop.
struct Checkpoints {
    dir: PathBuf,
    features: FeatureParams,
    audio: crate::audio::AudioOptions,
    scaler: Scaler,
    stop: Arc<AtomicBool>,
    /// `--keep-epochs`: also write each epoch's bundle to `<keep>/<stage>-<epoch>`.
    keep: Option<PathBuf>,
    /// The MPDR stage's watched epochs, for the training report.
    watched: Vec<crate::mpdr::watch::EpochRecord>,
    /// `--id`: kept epochs are evaluated on that id's clips, as the final bundle.
    machine_id: Option<String>,
}

impl TrainHooks for Checkpoints {
    fn on_epoch(
        &mut self,
        stage: &str,
        s: &crate::mpdr::train::EpochSummary,
        bundle: &Bundle,
    ) -> Result<(), TrainError> {
        let mut m = bundle.manifest.clone();
        m.features = Some(self.features.clone());
        m.audio = Some(self.audio);
        m.scaler = Some(self.scaler.clone());
        m.provenance.machine_id = self.machine_id.clone();
        m.provenance.stages.insert(format!("{stage}_epochs"), s.epoch as u64);
        bundle.save_as(&self.dir, &m)?;
        if let Some(keep) = &self.keep {
            bundle.save_as(&keep.join(format!("{stage}-{}", s.epoch)), &m)?;
        }
        Ok(())
    }
    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    fn on_watch(&mut self, history: &[crate::mpdr::watch::EpochRecord]) {
        self.watched = history.to_vec();
    }
}

/// The training files of machine id `id` (all when `None`) and those of the other ids.
/// An id without training files is an error naming the folder and the ids it has.
pub fn split_by_id(md: &MachineDir, id: Option<&str>) -> Result<(Vec<DcaseFile>, Vec<DcaseFile>)> {
    let Some(id) = id else { return Ok((md.train.clone(), Vec::new())) };
    let (own, others): (Vec<DcaseFile>, Vec<DcaseFile>) = md.train.iter().cloned().partition(|f| f.id == id);
    if own.is_empty() {
        let mut ids: Vec<&str> = md.train.iter().map(|f| f.id.as_str()).collect();
        ids.dedup();
        let dir = md.root.join("train");
        let message = format!("--id {id}: no training files of that machine id (ids here: {})", ids.join(", "));
        return Err(InputError::new(&dir, message).into());
    }
    Ok((own, others))
}

/// Files of `files` held out for calibration: per machine id, every k-th file (k = 1/share),
/// at least one per id when share > 0 and the id has two or more files.
pub fn holdout_split(files: &[DcaseFile], share: f64) -> (Vec<DcaseFile>, Vec<DcaseFile>) {
    let held = holdout_mask(files.iter().map(|f| f.id.as_str()), share);
    split_by_mask(files.iter().cloned(), held)
}

/// `items` split into (kept, held) by `held`.
fn split_by_mask<T>(items: impl IntoIterator<Item = T>, held: Vec<bool>) -> (Vec<T>, Vec<T>) {
    let (mut keep, mut out) = (Vec::new(), Vec::new());
    for (item, h) in items.into_iter().zip(held) {
        if h {
            out.push(item)
        } else {
            keep.push(item)
        }
    }
    (keep, out)
}

/// Which of the items (given by machine id, in order) are held out: per id, the last item of
/// each of `round(len * share)` equal slices (at least one when share > 0 and the id has two
/// or more items, never all of them).
pub fn holdout_mask<'a>(ids: impl Iterator<Item = &'a str>, share: f64) -> Vec<bool> {
    let ids: Vec<&str> = ids.collect();
    let mut by_id: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        by_id.entry(id).or_default().push(i);
    }
    let mut held = vec![false; ids.len()];
    for group in by_id.values() {
        let len = group.len();
        let n_held =
            if share > 0.0 && len >= 2 { ((len as f64 * share).round() as usize).clamp(1, len - 1) } else { 0 };
        for j in 0..n_held {
            held[group[(j + 1) * len / n_held - 1]] = true;
        }
    }
    held
}

/// Long recordings cut into clips of `clip_s` seconds ([`LogMel::into_clips`]), so that a
/// folder of a few hour-long WAVs gives a held-out share and calibration windows like a
/// folder of 10-s clips. Returns the items and how many recordings were cut.
fn into_clips(
    items: Vec<(DcaseFile, LogMel)>,
    clip_s: f64,
    params: &FeatureParams,
) -> (Vec<(DcaseFile, LogMel)>, usize) {
    let clip_frames = vectors_per_window(clip_s, params); // one frame per hop, as one vector
    let mut cut = 0;
    let mut out = Vec::with_capacity(items.len());
    for (f, lm) in items {
        let clips = lm.into_clips(clip_frames);
        cut += usize::from(clips.len() > 1);
        out.extend(clips.into_iter().map(|c| (f.clone(), c)));
    }
    (out, cut)
}

/// The level range of the training WAVs (one-second blocks at the model's rate, as the
/// monitor measures them); `None` when they are log-mel files. Unreadable files were already
/// reported by the extraction; here they are skipped.
fn training_levels(
    files: &[DcaseFile],
    params: &FeatureParams,
    audio: &crate::audio::AudioOptions,
) -> Option<crate::detect::signal_fault::LevelRange> {
    let mut levels = Vec::new();
    for f in files.iter().filter(|f| f.path.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav"))) {
        if let Ok(x) = crate::audio::wav::read_mono(&f.path, params.sample_rate, audio) {
            levels.extend(crate::detect::signal_fault::block_levels(&x, params.sample_rate));
        }
    }
    let range = crate::detect::signal_fault::LevelRange::fit(&mut levels);
    if let Some(r) = &range {
        tracing::info!(
            low_dbfs = r.rms_dbfs_low,
            high_dbfs = r.rms_dbfs_high,
            blocks = r.blocks,
            "training level range"
        );
    }
    range
}

fn fingerprint(files: &[DcaseFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default().as_bytes());
        h.update(std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0).to_le_bytes());
    }
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn load(
    files: &[DcaseFile],
    params: &FeatureParams,
    cfg: &TrainConfig,
    cache: Option<&Path>,
    on_bad: OnBadFile,
) -> Result<Vec<(DcaseFile, LogMel)>> {
    let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    let lms = extract::logmels(&paths, params, &cfg.audio, cache, on_bad)?;
    Ok(files.iter().cloned().zip(lms).filter_map(|(f, lm)| lm.map(|l| (f, l))).collect())
}

fn stack(items: &[(DcaseFile, LogMel)], params: &FeatureParams) -> (Vec<f32>, usize) {
    let mut data = Vec::new();
    let mut n = 0;
    for (_, lm) in items {
        let v = params.model_vectors(lm);
        n += v.n;
        data.extend_from_slice(&v.data);
    }
    (data, n)
}

/// Energies of `v` under `bundle` (raw features in; the bundle scales them); `None` when empty.
fn energies_of(bundle: &Bundle, v: &crate::features::Vectors) -> Result<Option<Vec<f32>>> {
    if v.n == 0 {
        return Ok(None);
    }
    let e = bundle.score(&Tensor::from_slice(&v.data).reshape([v.n as i64, v.dim as i64]), 4096)?;
    Ok(Some(Vec::<f32>::try_from(&e)?))
}

/// Energies of every vector the bundle scores of `lm` — its stacked vectors, or its profiles
/// every `hop_frames` — under `bundle`. `None` when the clip is too short for one.
pub(crate) fn vector_energies(bundle: &Bundle, lm: &LogMel, params: &FeatureParams) -> Result<Option<Vec<f32>>> {
    energies_of(bundle, &params.model_vectors(lm))
}

/// A clip's window scores as the daemon decides them, non-overlapping: the mean energy over
/// each `per_window` stacked vectors ([`window_scores`]), or — for a profile bundle, whose
/// window is its profile's — the energy of each window's profile. `None`: too short.
pub(crate) fn clip_window_scores(
    bundle: &Bundle,
    lm: &LogMel,
    params: &FeatureParams,
    per_window: usize,
) -> Result<Option<Vec<f64>>> {
    match &params.profile {
        Some(p) => {
            let e = energies_of(bundle, &window_profiles(lm, p))?;
            Ok(e.map(|e| e.iter().map(|&x| x as f64).collect()))
        }
        None => Ok(vector_energies(bundle, lm, params)?.map(|e| window_scores(&e, per_window, per_window))),
    }
}

/// The profiles of a clip's non-overlapping windows (what calibration and explanations see).
fn window_profiles(lm: &LogMel, p: &crate::features::profile::ProfileParams) -> crate::features::Vectors {
    let v = crate::features::profile::profiles(lm, p, p.window_frames);
    crate::features::Vectors { dim: v.dim, n: v.n, data: v.data }
}

/// Per-band errors (vectors x n_mels, row-major) of every stacked vector of `lm` under
/// `bundle`, through the daemon's scoring call; `None` for an energy without explanations.
pub(crate) fn vector_band_errors(
    bundle: &Bundle,
    lm: &LogMel,
    params: &FeatureParams,
    n_mels: usize,
) -> Result<Option<Vec<f32>>> {
    // A profile bundle explains each window's profile (non-overlapping, as calibrated).
    let v = match &params.profile {
        Some(p) => window_profiles(lm, p),
        None => lm.vectors(params.frames),
    };
    if v.n == 0 {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(v.n * n_mels);
    for chunk in v.data.chunks(4096 * v.dim) {
        let rows = (chunk.len() / v.dim) as i64;
        let x = Tensor::f_from_slice(chunk)?.f_view([rows, v.dim as i64])?;
        match bundle.score_explained(&x, n_mels as i64)?.1 {
            Some(b) => out.extend(Vec::<f32>::try_from(b.f_contiguous()?.f_view([-1])?)?),
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// The normal band statistics of `clips` (non-overlapping windows of `per_window` vectors).
pub(crate) fn band_stats(
    bundle: &Bundle,
    clips: &[&LogMel],
    params: &FeatureParams,
    per_window: usize,
) -> Result<Option<crate::model::BandStats>> {
    let mut windows = Vec::new();
    for lm in clips {
        let per_window = if params.profile.is_some() { 1 } else { per_window };
        match vector_band_errors(bundle, lm, params, params.n_mels)? {
            Some(e) => windows.extend(crate::detect::window_band_shares(&e, params.n_mels, per_window)),
            None => return Ok(None),
        }
    }
    Ok(crate::model::BandStats::fit(&windows))
}

/// The longest profile window — the recipe's, then 156, 64, 32 frames with a hop of a quarter
/// window — whose training windows number at least `target`: a handful of 10-s clips is too
/// few whole-clip profiles for a covariance, but many 2-s ones. Decided on training data only.
fn density_window(
    items: &[(DcaseFile, LogMel)],
    p: &crate::features::profile::ProfileParams,
    n_mels: usize,
    target: usize,
) -> crate::features::profile::ProfileParams {
    let count = |q: &crate::features::profile::ProfileParams| -> usize {
        items.iter().map(|(_, lm)| crate::features::profile::profiles(lm, q, q.hop_frames).n).sum()
    };
    let mut best = p.clone();
    for w in [p.window_frames, 156, 64, 32].into_iter().filter(|&w| w <= p.window_frames) {
        let q = crate::features::profile::ProfileParams {
            window_frames: w,
            hop_frames: if w == p.window_frames { p.hop_frames } else { (w / 4).max(1) },
            stats: p.stats.clone(),
        };
        let n = count(&q);
        best = q;
        if n >= target {
            break;
        }
    }
    if best != *p {
        tracing::info!(
            window_frames = best.window_frames,
            hop_frames = best.hop_frames,
            target,
            n_mels,
            "few training clips: shorter profile windows, so the density has enough of them"
        );
    }
    best
}

/// Vectors in a window of `window_s` seconds (one vector per hop).
pub fn vectors_per_window(window_s: f64, params: &FeatureParams) -> usize {
    ((window_s * params.sample_rate as f64 / params.hop_length as f64).round() as usize).max(1)
}

/// Train on one machine folder and write the bundle. Returns it. A checkpoint is written to
/// `<out>/checkpoint` after every epoch; a stop request ends with an error that says how to
/// resume, and the checkpoint is removed once the final bundle is written.
pub fn train(opts: &TrainOptions) -> Result<Bundle> {
    let started = std::time::Instant::now();
    let cfg = &opts.config;
    let md = dcase::scan(&opts.data)?;
    let params = cfg.features.clone();
    let (own, others) = split_by_id(&md, opts.id.as_deref())?;
    // The other ids' normals: a held-out share for the selection checks, the rest available
    // as real negatives (`mpdr.other_ids_negatives`); never the same file in both.
    let (other_train_files, other_files) = holdout_split(&others, cfg.holdout.max(0.1));
    let mpdr_stage = opts.model.is_mpdr();
    let s = &cfg.mpdr_schedule;
    let checks_need_others = s.diagnostics || !matches!(s.criterion, crate::mpdr::watch::Criterion::PseudoAnomaly);
    let other_files = if mpdr_stage && checks_need_others { other_files } else { Vec::new() };
    let negatives_need_others = mpdr_stage && cfg.mpdr.other_ids_negatives > 0.0;
    let other_train_files = if negatives_need_others { other_train_files } else { Vec::new() };
    tracing::info!(machine = %md.machine, id = %crate::error::or_none(opts.id.as_ref()), files = own.len(), other_ids = other_files.len(), "extracting features");
    let (own_items, cut) =
        into_clips(load(&own, &params, cfg, opts.cache.as_deref(), opts.on_bad)?, cfg.clip_s, &params);
    if cut > 0 {
        tracing::info!(
            recordings = cut,
            clips = own_items.len(),
            clip_s = cfg.clip_s,
            "long recordings cut into clips"
        );
    }
    let held = holdout_mask(own_items.iter().map(|(f, _)| f.id.as_str()), cfg.holdout);
    let (train_items, held_items) = split_by_mask(own_items, held);
    let other_items = load(&other_files, &params, cfg, opts.cache.as_deref(), opts.on_bad)?;
    let other_train_items = load(&other_train_files, &params, cfg, opts.cache.as_deref(), opts.on_bad)?;
    if opts.model.needs_profiles() && params.profile.is_none() {
        let message = format!("a {} scores spectral profiles: the recipe needs [features.profile]", opts.model);
        return Err(TrainError::Mismatch(message).into());
    }
    let params = match (&params.profile, opts.model.is_density()) {
        (Some(p), true) if cfg.density.auto_window => {
            let target = 8 * cfg.density.min_samples(opts.model);
            let p = density_window(&train_items, p, params.n_mels, target);
            FeatureParams { profile: Some(p), ..params }
        }
        _ => params,
    };
    let (raw, n) = stack(&train_items, &params);
    if n == 0 {
        let message = format!("training files give no feature vectors (clips shorter than {} frames?)", params.frames);
        return Err(InputError::new(&md.root, message).into());
    }
    let need = if opts.model.is_density() { cfg.density.min_samples(opts.model) } else { 1 };
    if n < need {
        let message = format!(
            "{n} training profile(s) from {} clip(s); a {} needs at least {need} — record more normal audio",
            train_items.len(),
            opts.model
        );
        return Err(InputError::new(&md.root.join("train"), message).into());
    }
    let dim = params.model_dim();
    // Profiles are scored unclamped: a band far outside its normal range is the evidence.
    let clamp = (cfg.clamp > 0.0 && params.profile.is_none()).then_some(cfg.clamp as f32);
    let scaler = Scaler::fit(&raw, dim, clamp);
    let to_tensor = |v: &[f32], rows: usize| scaler.apply(&Tensor::from_slice(v).reshape([rows as i64, dim as i64]));
    let train_t = to_tensor(&raw, n);
    // Scaled vectors of a file set, `None` when it gives none.
    let scaled = |items: &[(DcaseFile, LogMel)]| {
        let (raw, rows) = stack(items, &params);
        (rows > 0).then(|| to_tensor(&raw, rows))
    };
    let (held_t, other_t, other_train_t) = (scaled(&held_items), scaled(&other_items), scaled(&other_train_items));
    let device = cfg.device.resolve()?;
    let input = TrainData {
        train: &train_t,
        heldout: held_t.as_ref(),
        other_ids: other_t.as_ref(),
        other_ids_train: other_train_t.as_ref(),
        n_mels: params.n_mels as i64,
        frames: params.frames as i64,
    };
    let ckpt = checkpoint_dir(&opts.out);
    let resume = if opts.resume {
        let b =
            Bundle::load(&ckpt, device).map_err(|error| OfflineError::NoCheckpoint { path: ckpt.clone(), error })?;
        tracing::info!(checkpoint = %ckpt.display(), stages = %b.manifest.provenance.stages.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","), "resuming");
        Some(b)
    } else {
        None
    };
    let mut hooks = Checkpoints {
        dir: ckpt.clone(),
        features: params.clone(),
        audio: cfg.audio,
        scaler: scaler.clone(),
        stop: opts.stop.clone(),
        keep: opts.keep_epochs.then(|| opts.out.join("epochs")),
        watched: Vec::new(),
        machine_id: opts.id.clone(),
    };
    let mut bundle = recipe::train(opts.model, &input, cfg, device, &mut hooks, resume)?;
    if opts.stop.load(Ordering::Relaxed) {
        return Err(OfflineError::Interrupted { checkpoint: ckpt });
    }
    bundle.manifest.features = Some(params.clone());
    bundle.manifest.audio = Some(cfg.audio);
    bundle.manifest.scaler = Some(scaler);
    bundle.manifest.provenance.data = md.root.display().to_string();
    bundle.manifest.provenance.data_fingerprint = fingerprint(&own);
    bundle.manifest.levels = training_levels(&own, &params, &cfg.audio);
    bundle.manifest.provenance.machine_id = opts.id.clone();
    bundle.manifest.provenance.metrics.insert("train_vectors".into(), n as f64);

    // Threshold on held-out normal files.
    let per_window = vectors_per_window(cfg.calibration.window_s, &params);
    let mut windows = Vec::new();
    for (_, lm) in &held_items {
        if let Some(w) = clip_window_scores(&bundle, lm, &params, per_window)? {
            windows.extend(w);
        }
    }
    let clips: Vec<&LogMel> = held_items.iter().map(|(_, lm)| lm).collect();
    bundle.manifest.band_stats = band_stats(&bundle, &clips, &params, per_window)?;
    let target = crate::eval::calibrate::CalibrationTarget {
        window_s: params.profile_window_s().unwrap_or(cfg.calibration.window_s),
        ..cfg.calibration.clone()
    };
    match calibrate(&windows, &target) {
        Ok(mut t) => {
            tracing::info!(threshold = t.value, windows = windows.len(), "calibrated");
            t.fitted_on = Some(format!("training: {} held-out normal clip(s)", held_items.len()));
            bundle.manifest.threshold = Some(t);
        }
        Err(e) => tracing::warn!(error = %e, "no calibrated threshold (set a threshold in the monitor config)"),
    }
    bundle.manifest.provenance.wall_time_s = started.elapsed().as_secs_f64();
    bundle.save(&opts.out)?;
    crate::mpdr::report::write(&opts.out, &bundle.manifest, &hooks.watched)?;
    let _ = std::fs::remove_dir_all(&ckpt);
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdout_takes_evenly_spread_files_of_every_id() {
        let files: Vec<DcaseFile> = (0..20)
            .map(|i| DcaseFile {
                path: format!("normal_id_0{}_{i:08}.wav", i % 2).into(),
                id: format!("0{}", i % 2),
                anomaly: false,
            })
            .collect();
        let (keep, held) = holdout_split(&files, 0.2);
        assert_eq!((keep.len(), held.len()), (16, 4));
        assert_eq!(held.iter().filter(|f| f.id == "00").count(), 2);
        let (keep, held) = holdout_split(&files, 0.0);
        assert_eq!((keep.len(), held.len()), (20, 0));
        let two: Vec<DcaseFile> = files.iter().filter(|f| f.id == "00").take(2).cloned().collect();
        let (_, held) = holdout_split(&two, 0.1);
        assert_eq!(held.len(), 1, "at least one per id when possible");
    }
}
