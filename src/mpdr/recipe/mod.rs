//! The training recipe: [`train()`] runs the stages a model kind needs — manifold autoencoders,
//! energy pre-training, MPDR with its per-epoch watch and the product rule — through the one
//! generic loop and returns a ready [`Bundle`]. Its configuration ([`TrainConfig`], CPU-sized
//! defaults, the official DCASE MPDR-R recipe) lives in `config`.

mod config;
mod density;

use std::collections::BTreeMap;

use tch::{Device, Tensor};

pub use self::config::*;
use super::error::{ensure, TrainError};
use super::select::PseudoAnomaly;
use super::train::{self, EpochSummary, Hooks, LoopConfig, MpdrObjective, Objective, Pretrain, TrainReport};
use super::watch::{EpochRecord, Watch, WatchInput};
use super::TorchNoise;
use crate::config::Valid;
use crate::model::{Bundle, Manifest, ModelKind};

/// Progress of a whole training run, for front ends (logging, checkpoints, Ctrl-C).
pub trait TrainHooks {
    /// After each epoch of each stage (`manifold-<k>`, `pretrain`, `mpdr`).
    fn on_epoch(&mut self, _stage: &str, _summary: &EpochSummary, _bundle: &Bundle) -> Result<(), TrainError> {
        Ok(())
    }
    fn stop_requested(&self) -> bool {
        false
    }
    /// After the MPDR stage: every watched epoch (criterion, monitors, diagnostics).
    fn on_watch(&mut self, _history: &[EpochRecord]) {}
}

/// Hooks that do nothing.
pub struct Quiet;
impl TrainHooks for Quiet {}

struct StageHooks<'a> {
    stage: String,
    /// Epochs of this stage done before (a resumed run); added to reported epoch numbers.
    offset: usize,
    outer: &'a mut dyn TrainHooks,
    bundle: &'a Bundle,
    validation: Option<Validation<'a>>,
    metrics: &'a mut BTreeMap<String, f64>,
}

/// Called after each epoch with the epoch number; returns named metrics to log and record.
type Validation<'a> = Box<dyn FnMut(&EpochSummary) -> Vec<(String, f64)> + 'a>;

impl Hooks for StageHooks<'_> {
    fn on_epoch_end(&mut self, s: &EpochSummary) -> Result<(), TrainError> {
        let s = EpochSummary { epoch: s.epoch + self.offset, ..s.clone() };
        if let Some(v) = self.validation.as_mut() {
            for (name, value) in v(&s) {
                tracing::info!(stage = %self.stage, epoch = s.epoch, metric = name, value, "validation");
                self.metrics.insert(format!("{}_epoch{}_{name}", self.stage, s.epoch), value);
            }
        }
        self.outer.on_epoch(&self.stage, &s, self.bundle)
    }
    fn stop_requested(&self) -> bool {
        self.outer.stop_requested()
    }
}

/// What to train on: standardised vectors (N, D), optionally held-out normal vectors for the
/// appendix-C validation, and the frame layout (IDNN needs `n_mels` x `frames` = D).
#[derive(Debug)]
pub struct TrainData<'a> {
    pub train: &'a Tensor,
    pub heldout: Option<&'a Tensor>,
    /// Standardised normal vectors of the *other* machine ids of the same type (`--id`), for
    /// the label-free selection checks; never trained on.
    pub other_ids: Option<&'a Tensor>,
    /// The other ids' remaining normal vectors: real negatives when `mpdr.other_ids_negatives` > 0.
    pub other_ids_train: Option<&'a Tensor>,
    pub n_mels: i64,
    pub frames: i64,
}

/// Epochs of `stage` already done in a (resumed) bundle.
pub fn epochs_done(bundle: &Bundle, stage: &str) -> usize {
    bundle.manifest.provenance.stages.get(&format!("{stage}_epochs")).copied().unwrap_or(0) as usize
}

/// Train a model of `kind`. The returned bundle has the networks, kind, seed, stage lengths,
/// wall time and validation metrics filled in; features, scaler and threshold are the caller's.
/// `resume`: a checkpoint of the same kind and networks; finished stages are skipped and an
/// unfinished one continues with its remaining epochs (Adam's moments restart from zero).
pub fn train(
    kind: ModelKind,
    input: &TrainData<'_>,
    cfg: &Valid<TrainConfig>,
    device: Device,
    hooks: &mut dyn TrainHooks,
    resume: Option<Bundle>,
) -> Result<Bundle, TrainError> {
    if kind.is_density() {
        return density::fit(kind, input, cfg, device);
    }
    let nets = cfg.networks(kind, input.train.size()[1], input.n_mels, input.frames);
    train_with(kind, input, cfg, nets, device, hooks, resume)
}

/// Copy every variable of `from` that `to` has under the same name and shape; returns how
/// many were copied.
pub fn copy_matching(from: &tch::nn::VarStore, to: &tch::nn::VarStore) -> Result<usize, TrainError> {
    let src = from.variables();
    let mut n = 0;
    tch::no_grad(|| -> Result<(), TrainError> {
        for (name, mut dst) in to.variables() {
            if let Some(s) = src.get(&name).filter(|s| s.size() == dst.size()) {
                dst.f_copy_(&s.f_to_device(dst.device())?)?;
                n += 1;
            }
        }
        Ok(())
    })?;
    Ok(n)
}

/// [`train()`] with explicit networks (e.g. the MNIST conv nets of paper Table 8); the
/// schedule, MPDR settings and energy init still come from `cfg`.
pub fn train_with(
    kind: ModelKind,
    input: &TrainData<'_>,
    cfg: &Valid<TrainConfig>,
    nets: Networks,
    device: Device,
    hooks: &mut dyn TrainHooks,
    resume: Option<Bundle>,
) -> Result<Bundle, TrainError> {
    let (data, heldout, n_mels, frames) = (input.train, input.heldout, input.n_mels, input.frames);
    let other_ids = input.other_ids.map(|o| o.to_device(device));
    let started = std::time::Instant::now();
    let data = data.to_device(device);
    let heldout = heldout.map(|h| h.to_device(device));
    let uses_mpdr = kind.is_mpdr();
    ensure(uses_mpdr != nets.manifold.is_empty(), || {
        format!("{kind} needs {} manifold autoencoder(s)", if uses_mpdr { "one or more" } else { "no" })
    })?;
    let mut manifest = Manifest::new(kind, nets.energy, nets.manifold);
    manifest.provenance.seed = cfg.seed;
    tch::manual_seed(cfg.seed as i64);
    let mut bundle = match resume {
        None => Bundle::build(manifest, device),
        Some(b) => {
            let same = b.manifest.kind == manifest.kind
                && b.manifest.energy == manifest.energy
                && b.manifest.manifold == manifest.manifold;
            ensure(same, || {
                "the checkpoint was trained with another model kind or network config: it cannot be resumed with this one".into()
            })?;
            b
        }
    };
    let mut metrics = BTreeMap::new();

    // 1. Manifold autoencoders, each independently.
    for k in 0..bundle.manifold.len() {
        let stage = format!("manifold-{k}");
        let done = epochs_done(&bundle, &stage);
        if done >= cfg.manifold.epochs {
            continue;
        }
        let r = {
            let ae = &bundle.manifold[k];
            let mut obj = Pretrain::new(ae, &bundle.manifold_vs[k], cfg.manifold.lr)?;
            let m = &cfg.manifold;
            let lc =
                stage_loop(stage.clone(), m.epochs - done, m.batch_size, cfg.seed + 100 + (k + 10 * done) as u64, 0);
            run_stage(&mut obj, &data, lc, done, &mut *hooks, &bundle, None, &mut metrics)?
        };
        record(&mut bundle, &stage, done, &r);
        if r.interrupted {
            return Ok(finish(bundle, metrics, started));
        }
    }
    for vs in &mut bundle.manifold_vs {
        vs.freeze();
    }

    // 2. Energy init: a copy of manifold AE 0, or pre-training (reconstruction / prediction).
    let copy = cfg.energy.init == EnergyInit::Manifold && !kind.skips_pretrain();
    if copy && !bundle.manifold_vs.is_empty() && epochs_done(&bundle, "energy_copy") == 0 {
        let n = copy_matching(&bundle.manifold_vs[0], &bundle.energy_vs)?;
        ensure(n > 0, || {
            "energy.init = \"manifold\": the energy network shares no variable with manifold AE 0".into()
        })?;
        tracing::info!(variables = n, "energy starts as a copy of manifold AE 0");
        bundle.manifest.provenance.stages.insert("energy_copy_epochs".into(), 1);
    }
    let done = epochs_done(&bundle, "pretrain");
    let mpdr_done = epochs_done(&bundle, "mpdr");
    if let (crate::nn::EnergyNet::GaussResidual(g), 0) = (&mut bundle.energy, mpdr_done) {
        // MPDR starts from the profile Gaussian: its quadratic form fitted, the correction at 0.
        let v: Vec<f64> =
            Vec::<f64>::try_from(data.to_kind(tch::Kind::Double).to_device(Device::Cpu).contiguous().view([-1]))?;
        let shrinkage = g.start_from_gaussian(&v, data.size()[0] as usize).map_err(TrainError::Mismatch)?;
        metrics.insert("shrinkage".into(), shrinkage);
        tracing::info!(shrinkage, "the energy starts as the profile Gaussian");
    }
    let own_start = kind.skips_pretrain() || (copy && uses_mpdr);
    if !own_start && done < cfg.pretrain.epochs {
        let r = {
            let mut obj = Pretrain::new(&bundle.energy, &bundle.energy_vs, cfg.pretrain.lr)?;
            let p = &cfg.pretrain;
            let lc =
                stage_loop("pretrain".into(), p.epochs - done, p.batch_size, cfg.seed + 200 + done as u64, p.max_steps);
            run_stage(&mut obj, &data, lc, done, &mut *hooks, &bundle, None, &mut metrics)?
        };
        record(&mut bundle, "pretrain", done, &r);
        if r.interrupted {
            return Ok(finish(bundle, metrics, started));
        }
    }
    if !uses_mpdr {
        return Ok(finish(bundle, metrics, started));
    }

    // 3. MPDR, with the appendix-C validation after each epoch when held-out data exist.
    let done = epochs_done(&bundle, "mpdr");
    if done >= cfg.mpdr_schedule.epochs {
        return Ok(finish(bundle, metrics, started));
    }
    let (r, warnings, watch) = {
        let mut obj = MpdrObjective::new(
            &bundle.energy,
            &bundle.energy_vs,
            &bundle.manifold,
            cfg.mpdr.clone(),
            Box::new(TorchNoise),
        )?
        .with_ema(cfg.mpdr_schedule.ema)
        .with_real_negatives(input.other_ids_train.map(|o| o.to_device(device)))
        .with_mel_bands(n_mels);
        let s = &cfg.mpdr_schedule;
        let lc = stage_loop("mpdr".into(), s.epochs - done, s.batch_size, cfg.seed + 300 + done as u64, s.max_steps);
        let (energy, ens, energy_vs) = (&bundle.energy, &bundle.manifold, &bundle.energy_vs);
        // The watch: criterion, monitors and diagnostics; epoch `done` is the energy MPDR starts from.
        let watch = heldout.as_ref().map(|h| {
            let p = PseudoAnomaly {
                n_mels: n_mels as usize,
                frames: frames as usize,
                band: (n_mels as usize / 8).max(1),
                shift: s.pseudo_shift,
                clamp: cfg.clamp,
            };
            std::cell::RefCell::new(Watch::new(WatchInput {
                heldout: h,
                pseudo: Some(p.make(h, cfg.seed ^ 0x5EED)),
                other_ids: other_ids.as_ref(),
                criterion: s.criterion,
                uniform_per_ae: s.validation_samples,
                diagnostics: s.diagnostics,
                n_mels,
                seed: cfg.seed,
            }))
        });
        if let Some(w) = &watch {
            for (name, value) in w.borrow_mut().observe(done, None, energy, energy_vs, ens, &cfg.mpdr) {
                tracing::info!(stage = "mpdr", epoch = done, metric = %name, value, "MPDR starts from this energy");
                metrics.insert(format!("mpdr_epoch{done}_{name}"), value);
            }
        }
        let watch_ref = watch.as_ref();
        let mpdr_cfg = &cfg.mpdr;
        let validation: Option<Validation> = watch_ref.map(|w| {
            Box::new(move |sum: &EpochSummary| {
                w.borrow_mut().observe(sum.epoch, sum.e_pos, energy, energy_vs, ens, mpdr_cfg)
            }) as Validation
        });
        let r = run_stage(&mut obj, &data, lc, done, hooks, &bundle, validation, &mut metrics)?;
        if let Some(g) = obj.gamma_neg_recon {
            metrics.insert("mpdr_gamma_neg_recon".into(), g);
        }
        let w = obj.monitor.warnings;
        (r, w, watch.map(|w| w.into_inner()))
    };
    record(&mut bundle, "mpdr", done, &r);
    metrics.insert("mpdr_divergence_warnings".into(), warnings as f64);
    if let (Some(w), false) = (watch, r.interrupted) {
        hooks.on_watch(&w.history);
        if let Some(shipped) = w.decide(cfg.mpdr_schedule.select, cfg.mpdr_schedule.margin_se, &bundle.energy_vs)? {
            metrics.insert("mpdr_selected_epoch".into(), shipped.epoch as f64);
            tracing::info!(shipped = %shipped.shipped, epoch = shipped.epoch, reason = %shipped.reason, "MPDR stage: energy shipped");
            let fuse = cfg.mpdr_schedule.fuse && shipped.shipped == "mpdr";
            let pretrained = shipped.shipped == "pretrained";
            bundle.manifest.provenance.shipped = Some(shipped);
            if pretrained && !cfg.mpdr_schedule.keep_manifold {
                as_pretrained(&mut bundle);
            }
            if let (true, Some(start), Some(h)) = (fuse, w.start_weights(), &heldout) {
                let f = bundle.fuse_with(|vs| start.restore(vs), h)?;
                tracing::info!(?f, "score fusion: the pre-trained energy is kept beside the MPDR energy");
            }
        }
    }
    Ok(finish(bundle, metrics, started))
}

/// The pre-trained energy was shipped: label the bundle by what it scores with and drop the
/// manifold AEs it does not use (`provenance.shipped` keeps the MPDR stage's record).
fn as_pretrained(bundle: &mut Bundle) {
    let Some(kind) = bundle.manifest.kind.pretrained() else { return };
    tracing::info!(from = %bundle.manifest.kind, to = %kind, manifold_aes = bundle.manifold.len(), "the pre-trained energy is shipped: the bundle is labelled by it, without the unused manifold AEs (mpdr_schedule.keep_manifold keeps them)");
    bundle.manifest.kind = kind;
    bundle.manifest.manifold.clear();
    bundle.manifold.clear();
    bundle.manifold_vs.clear();
}

/// The loop settings of one stage (`max_steps` 0 = no limit).
fn stage_loop(label: String, epochs: usize, batch_size: i64, seed: u64, max_steps: usize) -> LoopConfig {
    LoopConfig { epochs, batch_size, seed, max_steps: (max_steps > 0).then_some(max_steps), progress: true, label }
}

/// One stage through the generic loop, reporting each epoch (numbered after `offset` done
/// before) to `hooks` under the loop's label.
#[allow(clippy::too_many_arguments)]
fn run_stage<'a>(
    obj: &mut dyn Objective,
    data: &Tensor,
    lc: LoopConfig,
    offset: usize,
    hooks: &mut dyn TrainHooks,
    bundle: &'a Bundle,
    validation: Option<Validation<'a>>,
    metrics: &mut BTreeMap<String, f64>,
) -> Result<TrainReport, TrainError> {
    let mut h = StageHooks { stage: lc.label.clone(), offset, outer: hooks, bundle, validation, metrics };
    train::run(obj, data, &lc, &mut h)
}

/// Add a stage run's epochs and steps to the bundle's provenance (`<stage>_epochs`, `_steps`).
fn record(bundle: &mut Bundle, stage: &str, done_before: usize, r: &TrainReport) {
    let st = &mut bundle.manifest.provenance.stages;
    st.insert(format!("{stage}_epochs"), (done_before + r.epochs.len()) as u64);
    *st.entry(format!("{stage}_steps")).or_insert(0) += r.steps as u64;
}

fn finish(mut bundle: Bundle, metrics: BTreeMap<String, f64>, started: std::time::Instant) -> Bundle {
    bundle.manifest.provenance.metrics.extend(metrics);
    bundle.manifest.provenance.wall_time_s = started.elapsed().as_secs_f64();
    bundle.manifest.provenance.created_unix_s =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    bundle
}
