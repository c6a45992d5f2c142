//! The training recipe: every knob of MPDR-SPEC §3 in one TOML document, with CPU-sized
//! defaults and the official DCASE MPDR-R configuration as [`TrainConfig::dcase_official`], and [`train`], which runs the stages a
//! model kind needs — manifold autoencoders, energy pre-training, MPDR — through the one
//! generic loop and returns a ready [`Bundle`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::select::{PseudoAnomaly, Snapshot};
use super::train::{self, EpochSummary, Hooks, LoopConfig, MpdrObjective, Objective, Pretrain, TrainReport};
pub use super::watch::{Criterion, Selection};
use super::watch::{EpochRecord, Watch, WatchInput};
use super::{MpdrConfig, TorchNoise};
use crate::audio::AudioOptions;
use crate::config::Problems;
use crate::device::DeviceChoice;
use crate::eval::calibrate::CalibrationTarget;
use crate::features::FeatureParams;
use crate::model::{Bundle, Manifest, ModelKind};
use crate::nn::ae::AeSpec;
use crate::nn::idnn::IdnnSpec;
use crate::nn::scalar::ScalarSpec;
use crate::nn::{Activation, EnergySpec, MlpSpec, NetSpec};

/// The manifold ensemble (K independent AEs, frozen during MPDR).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManifoldConfig {
    pub latent_dims: Vec<i64>,
    pub hidden: Vec<i64>,
    pub activation: Activation,
    pub spherical: bool,
    pub l2_enc: f64,
    pub lr: f64,
    pub epochs: usize,
    pub batch_size: i64,
}

impl Default for ManifoldConfig {
    fn default() -> Self {
        ManifoldConfig {
            latent_dims: vec![32, 64, 128],
            hidden: vec![1024, 1024],
            activation: Activation::LeakyRelu,
            spherical: true,
            l2_enc: 1e-5,
            lr: 1e-4,
            epochs: 50,
            batch_size: 512,
        }
    }
}

/// Which energy network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnergyPreset {
    /// The released MPDR-R config: 640-1024-1024-32(Π)-1024-1024-640, LeakyReLU, l2enc 1e-5.
    DcaseAe1024,
    /// The paper's MPDR-R energy: 5+5 FC layers, 128 wide, 32-D spherical latent, encoder
    /// ReLU / decoder LeakyReLU, l2enc 1e-5 (≈30x cheaper per step).
    PaperAe128,
    /// The MPDR code's DCASE IDNN (context 512-128x4-32, decoder 32-128x4-128).
    Idnn,
    /// An MLP with one output (MPDR-S): hidden 1024x4, LeakyReLU, spectral norm, out scale.
    ScalarMlp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnergyConfig {
    pub preset: EnergyPreset,
    /// Overrides the encoder L2 of AE presets (context L2 for IDNN).
    pub l2: Option<f64>,
    /// Overrides the latent size of AE presets (32 for both).
    pub latent: Option<i64>,
    /// Where the energy starts: its own pre-training stage, or a copy of manifold AE 0
    /// (`transfer_ae`, the paper's MNIST MPDR-R: "initialised from (f_e, f_d)").
    pub init: EnergyInit,
}

/// How an energy network gets its starting weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnergyInit {
    /// The pre-training stage (`[pretrain]`) trains it on the data (reconstruction energies).
    #[default]
    Pretrain,
    /// Copy every variable of manifold AE 0 with the same name and shape; no pre-training.
    Manifold,
}

impl Default for EnergyConfig {
    fn default() -> Self {
        EnergyConfig { preset: EnergyPreset::DcaseAe1024, l2: None, latent: None, init: EnergyInit::Pretrain }
    }
}

/// One optimisation stage's schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StageConfig {
    pub lr: f64,
    pub epochs: usize,
    pub batch_size: i64,
    /// Stop after this many steps (0 = no limit); for CPU-sized budgets.
    pub max_steps: usize,
}

impl Default for StageConfig {
    fn default() -> Self {
        StageConfig { lr: 1e-3, epochs: 100, batch_size: 512, max_steps: 0 }
    }
}

/// Epochs and monitoring of the MPDR stage (its lr is `mpdr.lr`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MpdrSchedule {
    pub epochs: usize,
    pub batch_size: i64,
    pub max_steps: usize,
    /// Samples per manifold AE for the appendix-C validation AUC after each epoch (0 = off).
    pub validation_samples: i64,
    /// Which energy the bundle keeps ([`super::watch`]): `last`; `guard` (the last epoch
    /// unless the pre-trained energy scores better on the criterion); `best` (the epoch,
    /// 0 = pre-trained, with the best criterion).
    pub select: Selection,
    /// The label-free criterion of `select` ([`Criterion`]).
    pub criterion: Criterion,
    /// Per-epoch diagnostics (energies, texture probe) in the training report.
    pub diagnostics: bool,
    /// Score fusion: when MPDR is shipped, keep the pre-trained energy too and score with the
    /// mean of both, each standardised on the held-out normals (`Manifest::fusion`).
    pub fuse: bool,
    /// Pseudo-anomalies: one band of n_mels/8 mel bins raised by this many standard deviations.
    pub pseudo_shift: f64,
    /// Decay of an exponential moving average of the energy's weights during MPDR (0 = off);
    /// the epochs are validated and the stage ends with the averaged weights.
    pub ema: f64,
}

impl Default for MpdrSchedule {
    fn default() -> Self {
        MpdrSchedule {
            epochs: 12,
            batch_size: 512,
            max_steps: 0,
            validation_samples: 512,
            select: Selection::Last,
            criterion: Criterion::PseudoAnomaly,
            diagnostics: false,
            fuse: false,
            pseudo_shift: 2.0,
            ema: 0.0,
        }
    }
}

/// Everything `mpdr train` needs besides the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub seed: u64,
    pub device: DeviceChoice,
    /// Share of each machine id's training files held out (by file) for threshold calibration
    /// and the MPDR validation monitor.
    pub holdout: f64,
    pub features: FeatureParams,
    pub audio: AudioOptions,
    /// Standardised features are clamped to ±clamp (MPDR-SPEC §1.5); 0 = no clamp.
    pub clamp: f64,
    pub calibration: CalibrationTarget,
    pub manifold: ManifoldConfig,
    pub energy: EnergyConfig,
    pub pretrain: StageConfig,
    pub mpdr: MpdrConfig,
    pub mpdr_schedule: MpdrSchedule,
}

/// The default is the CPU-sized recipe of issues 4 and 12 (BENCHMARKS.md, "Choosing the
/// default recipe", "Making MPDR help on machine sounds"): the official DCASE settings except
/// 10 manifold-AE epochs, the paper's 128-wide energy (`paper-ae128`), 300 MPDR steps at the
/// official lr 1e-5 (issue 4 used 1e-4), negatives that carry their sample's residual (`texture = residual-after`) pushed
/// towards twice the data's energy (`neg_equilibrium = 2`), and the product rule: the epoch —
/// the pre-trained energy included — with the best pseudo-anomaly criterion is shipped.
/// [`TrainConfig::dcase_official`] is the released paper-scale recipe (a GPU budget).
impl Default for TrainConfig {
    fn default() -> Self {
        let official = TrainConfig::dcase_official();
        TrainConfig {
            manifold: ManifoldConfig { epochs: 10, ..official.manifold },
            energy: EnergyConfig { preset: EnergyPreset::PaperAe128, ..official.energy.clone() },
            mpdr: MpdrConfig {
                lr: 1e-5,
                texture: super::Texture::ResidualAfter,
                neg_equilibrium: 2.0,
                ..official.mpdr
            },
            mpdr_schedule: MpdrSchedule {
                max_steps: 300,
                select: Selection::Best,
                criterion: Criterion::PseudoAnomaly,
                ..official.mpdr_schedule
            },
            ..official
        }
    }
}

impl TrainConfig {
    /// The official DCASE 2020 MPDR-R configuration (MPDR-SPEC §3): 50 manifold epochs, the
    /// released 1024-wide AE energy, 12 MPDR epochs at lr 1e-5 (`config/train.dcase-official.toml`).
    pub fn dcase_official() -> Self {
        TrainConfig {
            seed: 1,
            device: DeviceChoice::Auto,
            holdout: 0.1,
            features: FeatureParams::default(),
            audio: AudioOptions::default(),
            clamp: 3.0,
            calibration: CalibrationTarget::default(),
            manifold: ManifoldConfig::default(),
            energy: EnergyConfig::default(),
            pretrain: StageConfig::default(),
            mpdr: MpdrConfig::default(),
            mpdr_schedule: MpdrSchedule::default(),
        }
    }

    /// Parse a recipe file. Every key it gives overrides the default recipe
    /// ([`TrainConfig::default`]); every key it leaves out keeps its default — also inside a
    /// table it gives only in part (`[mpdr]\nlr = 3e-5` changes the learning rate and nothing
    /// else). Unknown keys and wrong types are errors naming the key.
    pub fn from_toml(text: &str) -> Result<TrainConfig, toml::de::Error> {
        // Alone first: errors then point at the file's own lines.
        let _: TrainConfig = toml::from_str(text)?;
        let user: toml::Table = text.parse()?;
        let mut merged = toml::Table::try_from(TrainConfig::default())
            .map_err(|e| <toml::de::Error as serde::de::Error>::custom(format!("default recipe: {e}")))?;
        merge_tables(&mut merged, user);
        merged.try_into()
    }

    pub fn validate(&self) -> Problems {
        let mut p = Problems::default();
        if !(0.0..0.9).contains(&self.holdout) {
            p.push("holdout", format!("must be in [0, 0.9), got {}", self.holdout));
        }
        if !(self.clamp.is_finite() && self.clamp >= 0.0) {
            p.push("clamp", format!("must be >= 0, got {}", self.clamp));
        }
        let c = &self.calibration;
        if !(c.false_alarms_per_day.is_finite() && c.false_alarms_per_day > 0.0) {
            p.push("calibration.false_alarms_per_day", format!("must be > 0, got {}", c.false_alarms_per_day));
        }
        if !(c.window_s.is_finite() && c.window_s > 0.0) {
            p.push("calibration.window_s", format!("must be > 0, got {}", c.window_s));
        }
        self.features.validate("features", &mut p);
        if self.manifold.latent_dims.is_empty() || self.manifold.latent_dims.iter().any(|&d| d < 1) {
            p.push(
                "manifold.latent_dims",
                format!("need one or more dimensions >= 1, got {:?}", self.manifold.latent_dims),
            );
        }
        if self.manifold.hidden.iter().any(|&d| d < 1) {
            p.push("manifold.hidden", format!("layer widths must be >= 1, got {:?}", self.manifold.hidden));
        }
        for (key, lr, bs) in [
            ("manifold", self.manifold.lr, self.manifold.batch_size),
            ("pretrain", self.pretrain.lr, self.pretrain.batch_size),
            ("mpdr_schedule", self.mpdr.lr, self.mpdr_schedule.batch_size),
        ] {
            if !(lr.is_finite() && lr > 0.0) {
                p.push(format!("{key}.lr"), format!("must be > 0, got {lr}"));
            }
            if bs < 1 {
                p.push(format!("{key}.batch_size"), format!("must be >= 1, got {bs}"));
            }
        }
        if let Some(l2) = self.energy.l2 {
            if !(l2.is_finite() && l2 >= 0.0) {
                p.push("energy.l2", format!("must be >= 0, got {l2}"));
            }
        }
        let shift = self.mpdr_schedule.pseudo_shift;
        if !(shift.is_finite() && shift > 0.0) {
            p.push("mpdr_schedule.pseudo_shift", format!("must be > 0, got {shift}"));
        }
        self.mpdr.validate("mpdr", &mut p);
        p
    }

    /// The energy network for `dim`-D vectors (`n_mels` x `frames` for IDNN).
    pub fn energy_spec(&self, dim: i64, n_mels: i64, frames: i64) -> EnergySpec {
        match self.energy.preset {
            EnergyPreset::DcaseAe1024 => {
                let z = self.energy.latent.unwrap_or(32);
                let mut s =
                    AeSpec::mlp(dim, &[1024, 1024], z, &[1024, 1024], Activation::LeakyRelu, Activation::LeakyRelu);
                s.l2_enc = self.energy.l2.unwrap_or(1e-5);
                EnergySpec::Ae(s)
            }
            EnergyPreset::PaperAe128 => {
                let z = self.energy.latent.unwrap_or(32);
                let mut s = AeSpec::mlp(dim, &[128; 4], z, &[128; 4], Activation::Relu, Activation::LeakyRelu);
                s.l2_enc = self.energy.l2.unwrap_or(1e-5);
                EnergySpec::Ae(s)
            }
            EnergyPreset::Idnn => {
                let mut s = IdnnSpec::dcase(n_mels, frames);
                s.l2_context = self.energy.l2.unwrap_or(0.0);
                EnergySpec::Idnn(s)
            }
            EnergyPreset::ScalarMlp => {
                let mut net = MlpSpec::new(dim, &[1024; 4], 1, Activation::LeakyRelu);
                net.spectral_norm = true;
                EnergySpec::Scalar(ScalarSpec {
                    net: NetSpec::Mlp(net),
                    out_scale: true,
                    l2: self.energy.l2.unwrap_or(0.0),
                })
            }
        }
    }

    pub fn manifold_specs(&self, dim: i64) -> Vec<AeSpec> {
        let m = &self.manifold;
        m.latent_dims
            .iter()
            .map(|&dz| {
                let mut s = AeSpec::mlp(dim, &m.hidden, dz, &m.hidden, m.activation, m.activation);
                s.spherical = m.spherical;
                s.l2_enc = m.l2_enc;
                s
            })
            .collect()
    }
}

/// Deep-merge `over` into `base`: tables merge key by key, any other value replaces.
fn merge_tables(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_tables(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Progress of a whole training run, for front ends (logging, checkpoints, Ctrl-C).
pub trait TrainHooks {
    /// After each epoch of each stage ("manifold-<k>", "pretrain", "mpdr").
    fn on_epoch(&mut self, _stage: &str, _summary: &EpochSummary, _bundle: &Bundle) -> anyhow::Result<()> {
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
    fn on_epoch_end(&mut self, s: &EpochSummary) -> anyhow::Result<()> {
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
    cfg: &TrainConfig,
    device: Device,
    hooks: &mut dyn TrainHooks,
    resume: Option<Bundle>,
) -> anyhow::Result<Bundle> {
    let nets = cfg.networks(kind, input.train.size()[1], input.n_mels, input.frames);
    train_with(kind, input, cfg, nets, device, hooks, resume)
}

/// The networks of one model: the energy and the manifold autoencoders (none for AE/IDNN).
#[derive(Debug, Clone, PartialEq)]
pub struct Networks {
    pub energy: EnergySpec,
    pub manifold: Vec<AeSpec>,
}

impl TrainConfig {
    /// The networks [`train`] builds for `kind` on `dim`-D vectors from this config's presets.
    pub fn networks(&self, kind: ModelKind, dim: i64, n_mels: i64, frames: i64) -> Networks {
        let preset = match kind {
            ModelKind::Idnn | ModelKind::MpdrIdnn => EnergyPreset::Idnn,
            ModelKind::MpdrS => EnergyPreset::ScalarMlp,
            _ => self.energy.preset,
        };
        let energy_cfg = TrainConfig { energy: EnergyConfig { preset, ..self.energy.clone() }, ..self.clone() };
        let uses_mpdr = matches!(kind, ModelKind::MpdrR | ModelKind::MpdrIdnn | ModelKind::MpdrS);
        Networks {
            energy: energy_cfg.energy_spec(dim, n_mels, frames),
            manifold: if uses_mpdr { self.manifold_specs(dim) } else { Vec::new() },
        }
    }
}

/// Copy every variable of `from` that `to` has under the same name and shape; returns how
/// many were copied.
pub fn copy_matching(from: &tch::nn::VarStore, to: &tch::nn::VarStore) -> anyhow::Result<usize> {
    let src = from.variables();
    let mut n = 0;
    tch::no_grad(|| -> anyhow::Result<()> {
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

/// [`train`] with explicit networks (e.g. the MNIST conv nets of paper Table 8); the
/// schedule, MPDR settings and energy init still come from `cfg`.
pub fn train_with(
    kind: ModelKind,
    input: &TrainData<'_>,
    cfg: &TrainConfig,
    nets: Networks,
    device: Device,
    hooks: &mut dyn TrainHooks,
    resume: Option<Bundle>,
) -> anyhow::Result<Bundle> {
    let (data, heldout, n_mels, frames) = (input.train, input.heldout, input.n_mels, input.frames);
    let other_ids = input.other_ids.map(|o| o.to_device(device));
    let started = std::time::Instant::now();
    let problems = cfg.validate();
    anyhow::ensure!(problems.is_empty(), "invalid training config: {problems}");
    let data = data.to_device(device);
    let heldout = heldout.map(|h| h.to_device(device));
    let uses_mpdr = matches!(kind, ModelKind::MpdrR | ModelKind::MpdrIdnn | ModelKind::MpdrS);
    anyhow::ensure!(
        uses_mpdr != nets.manifold.is_empty(),
        "{kind} needs {} manifold autoencoder(s)",
        if uses_mpdr { "one or more" } else { "no" }
    );
    let mut manifest = Manifest::new(kind, nets.energy, nets.manifold);
    manifest.provenance.seed = cfg.seed;
    tch::manual_seed(cfg.seed as i64);
    let mut bundle = match resume {
        None => Bundle::build(manifest, device),
        Some(b) => {
            let same = b.manifest.kind == manifest.kind
                && b.manifest.energy == manifest.energy
                && b.manifest.manifold == manifest.manifold;
            anyhow::ensure!(same, "the checkpoint was trained with another model kind or network config: it cannot be resumed with this one");
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
    let copy = cfg.energy.init == EnergyInit::Manifold && kind != ModelKind::MpdrS;
    if copy && !bundle.manifold_vs.is_empty() && epochs_done(&bundle, "energy_copy") == 0 {
        let n = copy_matching(&bundle.manifold_vs[0], &bundle.energy_vs)?;
        anyhow::ensure!(n > 0, "energy.init = \"manifold\": the energy network shares no variable with manifold AE 0");
        tracing::info!(variables = n, "energy starts as a copy of manifold AE 0");
        bundle.manifest.provenance.stages.insert("energy_copy_epochs".into(), 1);
    }
    let done = epochs_done(&bundle, "pretrain");
    if kind != ModelKind::MpdrS && !(copy && uses_mpdr) && done < cfg.pretrain.epochs {
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
    let start = cfg.mpdr_schedule.fuse.then(|| Snapshot::take(&bundle.energy_vs));
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
        if let Some(shipped) = w.decide(cfg.mpdr_schedule.select, &bundle.energy_vs)? {
            metrics.insert("mpdr_selected_epoch".into(), shipped.epoch as f64);
            tracing::info!(shipped = %shipped.shipped, epoch = shipped.epoch, reason = %shipped.reason, "MPDR stage: energy shipped");
            let fuse = shipped.shipped == "mpdr";
            bundle.manifest.provenance.shipped = Some(shipped);
            if let (true, Some(start), Some(h)) = (fuse, &start, &heldout) {
                let f = bundle.fuse_with(start.tensors(), h)?;
                tracing::info!(?f, "score fusion: the pre-trained energy is kept beside the MPDR energy");
            }
        }
    }
    Ok(finish(bundle, metrics, started))
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
) -> anyhow::Result<TrainReport> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_table_keeps_the_defaults_of_the_keys_it_leaves_out() {
        let c = TrainConfig::from_toml("[mpdr]\nlr = 3e-5\n[mpdr_schedule]\nepochs = 4\n").unwrap();
        let d = TrainConfig::default();
        assert_eq!(c.mpdr, MpdrConfig { lr: 3e-5, ..d.mpdr.clone() }, "only lr changed");
        assert_eq!(c.mpdr_schedule, MpdrSchedule { epochs: 4, ..d.mpdr_schedule.clone() });
        assert_eq!(TrainConfig::from_toml("").unwrap(), d);
        let e = TrainConfig::from_toml("[mpdr]\nlr = \"fast\"\n").unwrap_err().to_string();
        assert!(e.contains("lr") || e.contains("line 2"), "{e}");
    }

    #[test]
    fn example_config_parses_and_matches_the_defaults() {
        let text = include_str!("../../config/train.example.toml");
        let cfg = TrainConfig::from_toml(text).unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.validate().is_empty(), "{}", cfg.validate());
        assert_eq!(cfg, TrainConfig::default());
    }

    #[test]
    fn official_config_file_is_the_official_dcase_mpdr_r_recipe() {
        let text = include_str!("../../config/train.dcase-official.toml");
        let c = TrainConfig::from_toml(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c, TrainConfig::dcase_official());
        let d = TrainConfig::default();
        assert_eq!((d.manifold.epochs, d.mpdr.lr, d.mpdr_schedule.max_steps), (10, 1e-5, 300));
        assert_eq!((d.mpdr.texture, d.mpdr.neg_equilibrium), (crate::mpdr::Texture::ResidualAfter, 2.0));
        assert_eq!((d.mpdr_schedule.select, d.mpdr_schedule.criterion), (Selection::Best, Criterion::PseudoAnomaly));
        assert_eq!(
            (c.mpdr.texture, c.mpdr.neg_equilibrium, c.mpdr_schedule.select),
            (crate::mpdr::Texture::None, 0.0, Selection::Last),
            "official = the spec"
        );
        let demo = TrainConfig::from_toml(include_str!("../../config/train.demo-models.toml")).unwrap();
        assert_eq!(demo, TrainConfig { holdout: 0.25, ..TrainConfig::default() });
        assert_eq!(d.energy.preset, EnergyPreset::PaperAe128);
        assert_eq!(c.manifold.latent_dims, vec![32, 64, 128]);
        assert_eq!((c.manifold.lr, c.manifold.epochs, c.manifold.l2_enc), (1e-4, 50, 1e-5));
        assert_eq!((c.pretrain.lr, c.pretrain.epochs), (1e-3, 100));
        assert_eq!((c.mpdr.sigma_min, c.mpdr.sigma_max, c.mpdr.gamma, c.mpdr.lr), (0.05, 0.3, 1e-4, 1e-5));
        assert_eq!((c.mpdr.visible.steps, c.mpdr.visible.step_size, c.mpdr.visible.noise), (5, 10.0, 0.005));
        assert_eq!(c.mpdr.latent.steps, 0);
        assert_eq!((c.mpdr_schedule.epochs, c.mpdr_schedule.batch_size), (12, 512));
        match c.energy_spec(640, 128, 5) {
            EnergySpec::Ae(a) => assert_eq!((a.latent, a.spherical, a.l2_enc), (32, true, 1e-5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = TrainConfig::from_toml("[mpdr]\nsigma_mni = 0.1\n").unwrap_err().to_string();
        assert!(e.contains("sigma_mni"), "{e}");
        let c =
            TrainConfig::from_toml("[mpdr]\nsigma_min = 0.5\nsigma_max = 0.1\n[manifold]\nlatent_dims = []\n").unwrap();
        let p = c.validate().to_string();
        assert!(p.contains("mpdr.sigma_min") && p.contains("manifold.latent_dims"), "{p}");
    }
}
