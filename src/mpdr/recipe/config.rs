//! The training recipe's configuration: every knob of MPDR-SPEC §3 in one TOML document
//! ([`TrainConfig`]), the CPU-sized default, the official DCASE MPDR-R configuration, the
//! networks each model kind builds, and the file loader that overrides only the keys a file gives.

use serde::{Deserialize, Serialize};

pub use super::super::watch::{Criterion, Selection};
use crate::audio::AudioOptions;
use crate::config::Problems;
use crate::device::DeviceChoice;
use crate::eval::calibrate::CalibrationTarget;
use crate::features::FeatureParams;
use crate::model::ModelKind;
use crate::mpdr::MpdrConfig;
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
    /// Which energy the bundle keeps ([`crate::mpdr::watch`]): `last`; `guard` (the last epoch
    /// unless the pre-trained energy scores better on the criterion); `best` (the epoch,
    /// 0 = pre-trained, with the best criterion).
    pub select: Selection,
    /// The label-free criterion of `select` ([`Criterion`]).
    pub criterion: Criterion,
    /// An MPDR epoch is shipped by `best` / `guard` only if its criterion beats the pre-trained
    /// energy's by more than this many standard errors of that AUC (0 = any tie or gain).
    pub margin_se: f64,
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
    /// When the pre-trained energy is shipped (`select` chose epoch 0), keep the manifold AEs
    /// and the MPDR kind in the bundle; by default the bundle is what it scores with (an `ae`
    /// or `idnn` bundle, without the unused manifold AEs).
    pub keep_manifold: bool,
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
            margin_se: 1.0,
            diagnostics: false,
            fuse: false,
            pseudo_shift: 2.0,
            ema: 0.0,
            keep_manifold: false,
        }
    }
}

/// The density energies of profiles (`gaussian`, `gmm`): `[density]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DensityConfig {
    /// `gaussian`: the covariance's shrinkage, `ledoit-wolf` or `oas`.
    pub shrinkage: crate::nn::gaussian::Shrinkage,
    /// `gmm`: mixture components.
    pub components: i64,
    /// `gmm`: added to each component's covariance diagonal (standardised units).
    pub reg: f64,
    /// `gmm`: EM runs from this many seeded starts; the most likely on the training profiles
    /// is kept (label-free).
    pub inits: usize,
    /// Too few training windows (under 8 × the minimum) for the recipe's profile window: use
    /// the longest of 156, 64, 32 frames that gives enough (hop a quarter window).
    pub auto_window: bool,
}

impl Default for DensityConfig {
    fn default() -> Self {
        DensityConfig { shrinkage: Default::default(), components: 2, reg: 0.1, inits: 4, auto_window: true }
    }
}

impl DensityConfig {
    /// The fewest training profiles a density of `kind` on `dim`-D profiles is fitted on:
    /// a Gaussian needs 8 (the shrinkage keeps it defined below D), a mixture 8 per component.
    pub fn min_samples(&self, kind: ModelKind) -> usize {
        match kind {
            ModelKind::Gmm => 8 * self.components.max(1) as usize,
            _ => 8,
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
    /// Recordings of at least twice this length (seconds) are cut into clips of this length
    /// before the held-out split (a folder of a few long WAVs trains like one of clips).
    pub clip_s: f64,
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
    pub density: DensityConfig,
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
                texture: crate::mpdr::Texture::ResidualAfter,
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
            clip_s: 10.0,
            features: FeatureParams::default(),
            audio: AudioOptions::default(),
            clamp: 3.0,
            calibration: CalibrationTarget::default(),
            manifold: ManifoldConfig::default(),
            energy: EnergyConfig::default(),
            pretrain: StageConfig::default(),
            mpdr: MpdrConfig::default(),
            mpdr_schedule: MpdrSchedule::default(),
            density: DensityConfig::default(),
        }
    }

    /// This recipe for `kind`: a density kind scores spectral profiles, so it gets the default
    /// `[features.profile]` (and single frames) when the recipe names none.
    pub fn for_kind(mut self, kind: ModelKind) -> Self {
        if kind.needs_profiles() && self.features.profile.is_none() {
            self.features.profile = Some(Default::default());
            self.features.frames = 1;
        }
        self
    }

    /// Parse a recipe file. Every key it gives overrides the default recipe
    /// ([`TrainConfig::default`]); every key it leaves out keeps its default — also inside a
    /// table it gives only in part (`[mpdr]\nlr = 3e-5` changes the learning rate and nothing
    /// else). Unknown keys and wrong types are errors naming the key.
    pub fn from_toml(text: &str) -> Result<TrainConfig, String> {
        // Alone first: errors then point at the file's own lines and keys.
        let _: TrainConfig = crate::config::parse_toml(text)?;
        let user: toml::Table = text.parse().map_err(|e| crate::config::toml_error(text, &e, ""))?;
        let mut merged = toml::Table::try_from(TrainConfig::default()).map_err(|e| format!("default recipe: {e}"))?;
        merge_tables(&mut merged, user);
        merged.try_into().map_err(|e: toml::de::Error| e.message().trim().replace('\n', " "))
    }

    /// Every problem, with its key path ([`crate::config::Validate`]).
    pub fn validate(&self) -> Problems {
        let mut p = Problems::default();
        if !(0.0..0.9).contains(&self.holdout) {
            p.push("holdout", format!("must be in [0, 0.9), got {}", self.holdout));
        }
        if !(self.clip_s.is_finite() && (1.0..=3600.0).contains(&self.clip_s)) {
            p.push("clip_s", format!("must be 1–3600 s, got {}", self.clip_s));
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
        let m = self.mpdr_schedule.margin_se;
        if !(m.is_finite() && m >= 0.0) {
            p.push("mpdr_schedule.margin_se", format!("must be a finite number >= 0, got {m}"));
        }
        let shift = self.mpdr_schedule.pseudo_shift;
        if !(shift.is_finite() && shift > 0.0) {
            p.push("mpdr_schedule.pseudo_shift", format!("must be > 0, got {shift}"));
        }
        let ema = self.mpdr_schedule.ema;
        if !(0.0..1.0).contains(&ema) {
            p.push("mpdr_schedule.ema", format!("must be in [0, 1) (a decay; 0 = off), got {ema}"));
        }
        self.mpdr.validate("mpdr", &mut p);
        let d = &self.density;
        if !(1..=64).contains(&d.components) {
            p.push("density.components", format!("must be 1..=64, got {}", d.components));
        }
        if !(d.reg.is_finite() && d.reg >= 0.0) {
            p.push("density.reg", format!("must be finite and >= 0, got {}", d.reg));
        }
        if !(1..=100).contains(&d.inits) {
            p.push("density.inits", format!("must be 1..=100, got {}", d.inits));
        }
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

/// The networks of one model: the energy and the manifold autoencoders (none for AE/IDNN).
#[derive(Debug, Clone, PartialEq)]
pub struct Networks {
    pub energy: EnergySpec,
    pub manifold: Vec<AeSpec>,
}

impl TrainConfig {
    /// The networks [`train`](super::train()) builds for `kind` on `dim`-D vectors from this config's presets.
    pub fn networks(&self, kind: ModelKind, dim: i64, n_mels: i64, frames: i64) -> Networks {
        let d = &self.density;
        match kind {
            ModelKind::Gaussian => {
                let spec = crate::nn::gaussian::GaussianSpec { dim, shrinkage: d.shrinkage };
                return Networks { energy: EnergySpec::Gaussian(spec), manifold: Vec::new() };
            }
            ModelKind::Gmm => {
                let spec = crate::nn::gmm::GmmSpec { dim, components: d.components, reg: d.reg };
                return Networks { energy: EnergySpec::Gmm(spec), manifold: Vec::new() };
            }
            ModelKind::MpdrGaussian => {
                let spec = crate::nn::gauss_residual::GaussResidualSpec {
                    gaussian: crate::nn::gaussian::GaussianSpec { dim, shrinkage: d.shrinkage },
                    correction: MlpSpec::new(dim, &[256, 256], 1, Activation::LeakyRelu),
                    l2: self.energy.l2.unwrap_or(1e-4),
                };
                return Networks { energy: EnergySpec::GaussResidual(spec), manifold: self.manifold_specs(dim) };
            }
            _ => {}
        }
        let preset = match kind {
            ModelKind::Idnn | ModelKind::MpdrIdnn => EnergyPreset::Idnn,
            ModelKind::MpdrS => EnergyPreset::ScalarMlp,
            _ => self.energy.preset,
        };
        let energy_cfg = TrainConfig { energy: EnergyConfig { preset, ..self.energy.clone() }, ..self.clone() };
        let uses_mpdr = kind.is_mpdr();
        Networks {
            energy: energy_cfg.energy_spec(dim, n_mels, frames),
            manifold: if uses_mpdr { self.manifold_specs(dim) } else { Vec::new() },
        }
    }
}

impl crate::config::Validate for TrainConfig {
    fn validate(&self) -> Problems {
        TrainConfig::validate(self)
    }
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
        // Values that would never finish or diverge are refused with their key (issue 25).
        let bad = TrainConfig::from_toml("[mpdr.visible]\nsteps = 100000000\n[mpdr_schedule]\nema = 2.0\n").unwrap();
        let keys: Vec<String> = bad.validate().0.into_iter().map(|p| p.key).collect();
        assert!(keys.contains(&"mpdr.visible.steps".into()) && keys.contains(&"mpdr_schedule.ema".into()), "{keys:?}");
        assert_eq!(TrainConfig::from_toml("").unwrap(), d);
        let e = TrainConfig::from_toml("[mpdr]\nlr = \"fast\"\n").unwrap_err();
        assert!(e.starts_with("line 2, column 6: mpdr.lr: "), "{e}");
    }

    #[test]
    fn example_config_parses_and_matches_the_defaults() {
        let text = include_str!("../../../config/train.example.toml");
        let cfg = TrainConfig::from_toml(text).unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.validate().is_empty(), "{}", cfg.validate());
        assert_eq!(cfg, TrainConfig::default());
    }

    #[test]
    fn official_config_file_is_the_official_dcase_mpdr_r_recipe() {
        let text = include_str!("../../../config/train.dcase-official.toml");
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
        let demo = TrainConfig::from_toml(include_str!("../../../config/train.demo-models.toml")).unwrap();
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
