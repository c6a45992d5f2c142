//! Model bundles: a directory with `manifest.toml` (everything needed to rebuild and check the
//! model: kind, network specs, feature parameters, scaler, threshold, provenance, checksums)
//! and safetensors weights — `energy.safetensors` plus `manifold_<k>.safetensors` for the
//! manifold autoencoders (kept for retraining). Loading verifies the schema, every checksum,
//! and every tensor name and shape before any weight is used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::features::FeatureParams;
use crate::nn::ae::{AeSpec, AutoEncoder};
use crate::nn::{Energy, EnergyNet, EnergySpec};

pub mod check;
mod weights;
pub use weights::safetensors_header;
use weights::{sha256_file, verify_and_load};

pub const SCHEMA_VERSION: u32 = 1;

/// What was trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    Ae,
    Idnn,
    MpdrR,
    MpdrIdnn,
    MpdrS,
    /// Spectral profiles + a shrinkage-covariance Gaussian (issue 23).
    Gaussian,
    /// Spectral profiles + a Gaussian mixture.
    Gmm,
    /// MPDR on spectral profiles with an energy that starts as the profile Gaussian (its
    /// quadratic form plus a learnt correction, [`crate::nn::gauss_residual`]).
    MpdrGaussian,
}

impl ModelKind {
    /// A density fitted on spectral profiles in closed form / by EM: no networks, no epochs.
    pub fn is_density(self) -> bool {
        matches!(self, ModelKind::Gaussian | ModelKind::Gmm)
    }
    /// Trains an MPDR stage (the product rule applies).
    pub fn is_mpdr(self) -> bool {
        matches!(self, ModelKind::MpdrR | ModelKind::MpdrIdnn | ModelKind::MpdrS | ModelKind::MpdrGaussian)
    }
    /// Scores spectral profiles only (no stacked-vector recipe exists for it).
    pub fn needs_profiles(self) -> bool {
        self.is_density() || self == ModelKind::MpdrGaussian
    }
    /// The kind a bundle of this kind is when its MPDR stage shipped the pre-trained energy:
    /// what it then scores with (MPDR-R: the AE; MPDR-IDNN: the IDNN).
    pub fn pretrained(self) -> Option<ModelKind> {
        match self {
            ModelKind::MpdrR => Some(ModelKind::Ae),
            ModelKind::MpdrIdnn => Some(ModelKind::Idnn),
            _ => None,
        }
    }
    /// Starts MPDR from an energy of its own making, not a pre-trained network.
    pub fn skips_pretrain(self) -> bool {
        matches!(self, ModelKind::MpdrS | ModelKind::MpdrGaussian)
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelKind::Ae => "ae",
            ModelKind::Idnn => "idnn",
            ModelKind::MpdrR => "mpdr-r",
            ModelKind::MpdrIdnn => "mpdr-idnn",
            ModelKind::MpdrS => "mpdr-s",
            ModelKind::Gaussian => "gaussian",
            ModelKind::Gmm => "gmm",
            ModelKind::MpdrGaussian => "mpdr-gaussian",
        })
    }
}

/// Per-dimension standardisation fitted on training vectors, then an optional clamp (±3 for
/// DCASE, MPDR-SPEC §1.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scaler {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub clamp: Option<f32>,
}

impl Scaler {
    /// Fit on row-major `data` of `dim` columns: mean and population std (ddof 0); a
    /// constant column gets std 1, as scikit-learn's StandardScaler.
    pub fn fit(data: &[f32], dim: usize, clamp: Option<f32>) -> Self {
        let n = (data.len() / dim).max(1) as f64;
        let mut mean = vec![0f64; dim];
        for row in data.chunks_exact(dim) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += *v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; dim];
        for row in data.chunks_exact(dim) {
            for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (*v as f64 - m).powi(2);
            }
        }
        let std = var.iter().map(|s| (s / n).sqrt()).map(|s| if s > 0.0 { s as f32 } else { 1.0 }).collect();
        Scaler { mean: mean.iter().map(|&m| m as f32).collect(), std, clamp }
    }

    /// (x − mean) / std, then clamp (training-time use; scoring goes through [`ScalerTensors`]).
    pub fn apply(&self, x: &Tensor) -> Tensor {
        match self.tensors(x.kind(), x.device()).and_then(|t| t.f_apply(x)) {
            Ok(z) => z,
            Err(e) => panic!("scaler: {e}"),
        }
    }

    /// The mean and std as tensors of `kind` on `device`, built once for many batches.
    pub fn tensors(&self, kind: Kind, device: Device) -> Result<ScalerTensors, tch::TchError> {
        let t = |v: &[f32]| Tensor::f_from_slice(v)?.f_to_kind(kind)?.f_to_device(device);
        Ok(ScalerTensors { of: self.clone(), mean: t(&self.mean)?, std: t(&self.std)?, clamp: self.clamp })
    }
}

/// A [`Scaler`]'s tensors on the scoring device, with the scaler they were built from.
#[derive(Debug)]
pub struct ScalerTensors {
    of: Scaler,
    mean: Tensor,
    std: Tensor,
    clamp: Option<f32>,
}

impl ScalerTensors {
    /// (x − mean) / std, then clamp; every libtorch call fallible.
    pub fn f_apply(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let z = x.f_sub(&self.mean)?.f_div(&self.std)?;
        match self.clamp {
            Some(c) => z.f_clamp(-c as f64, c as f64),
            None => Ok(z),
        }
    }
}

/// The alarm threshold on the model's score, and how it was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub value: f64,
    /// e.g. "gamma-fit" or "empirical-quantile" or "manual".
    pub method: String,
    /// Free-form numbers of the fit (targets, parameters, counts).
    #[serde(default)]
    pub details: BTreeMap<String, f64>,
    /// What a user should know about the fit (e.g. it rests on too little audio).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Where the threshold was last fitted: `training held-out normals`, or the on-site
    /// recordings of `mpdr calibrate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted_on: Option<String>,
}

impl Threshold {
    /// The decision window it was calibrated for, when the fit recorded one.
    pub fn window_s(&self) -> Option<f64> {
        self.details.get("window_s").copied()
    }
}

/// How the bundle came to be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Provenance {
    pub mpdr_version: String,
    pub created_unix_s: u64,
    pub seed: u64,
    /// Epochs / steps per training stage ("manifold", "pretrain", "mpdr").
    pub stages: BTreeMap<String, u64>,
    pub data: String,
    pub data_fingerprint: String,
    /// The machine id the model was trained for (`mpdr train --id`); `None`: every id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    pub wall_time_s: f64,
    pub metrics: BTreeMap<String, f64>,
    /// Which energy an MPDR training shipped (the pre-trained one or an MPDR epoch) and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipped: Option<ShippedEnergy>,
}

/// The product rule's decision at the end of an MPDR stage (issue 12).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippedEnergy {
    /// `last`, `guard` or `best`.
    pub rule: String,
    /// The label-free criterion: `pseudo-anomaly`, `other-ids` or `both`.
    pub criterion: String,
    /// `pretrained` (the energy before MPDR) or `mpdr`.
    pub shipped: String,
    /// MPDR epoch of the shipped weights (0 = pre-trained).
    pub epoch: u64,
    pub score_shipped: f64,
    pub score_pretrained: f64,
    /// The criterion of MPDR's last epoch.
    pub score_last: f64,
    /// How much an MPDR epoch had to beat the pre-trained energy by (criterion units).
    #[serde(default)]
    pub margin: f64,
    pub reason: String,
}

/// Size and SHA-256 of one weight file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema_version: u32,
    pub kind: ModelKind,
    pub energy: EnergySpec,
    #[serde(default)]
    pub manifold: Vec<AeSpec>,
    /// Front-end the vectors come from (absent for non-audio benchmark models).
    pub features: Option<FeatureParams>,
    /// How recordings were turned into mono at the model's rate (channel, resampling); eval
    /// and the monitor decode files the same way. Absent in bundles from before it was kept.
    #[serde(default)]
    pub audio: Option<crate::audio::AudioOptions>,
    pub scaler: Option<Scaler>,
    pub threshold: Option<Threshold>,
    #[serde(default)]
    pub provenance: Provenance,
    /// Score fusion (`mpdr_schedule.fuse`): the pre-trained energy is kept as
    /// `reference.safetensors` (same network as `energy`) and the score is the mean of both
    /// energies, each standardised by its held-out normal vectors' mean and std.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<Fusion>,
    /// Per-band error shares of normal windows (the calibration audio): alarms explain a band
    /// by how far it is above its normal share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band_stats: Option<BandStats>,
    /// The RMS level range of the training recordings (one-second blocks): the monitor tells
    /// a signal far outside it (a dead microphone's hiss, a gain turned up) from a machine
    /// fault. Absent for bundles trained on log-mel files or before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<crate::detect::signal_fault::LevelRange>,
    /// Weight files by name, filled in by `save`.
    #[serde(default)]
    pub files: BTreeMap<String, FileEntry>,
}

/// Mean and standard deviation of each mel band's share of a window's error, over normal
/// windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandStats {
    pub windows: usize,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl BandStats {
    /// From window band-share vectors (at least 2 windows, all the same length).
    pub fn fit(windows: &[Vec<f64>]) -> Option<BandStats> {
        let n = windows.len();
        let b = windows.first()?.len();
        if n < 2 || b == 0 || windows.iter().any(|w| w.len() != b) {
            return None;
        }
        let mut mean = vec![0.0; b];
        for w in windows {
            mean.iter_mut().zip(w).for_each(|(m, x)| *m += x / n as f64);
        }
        let mut var = vec![0.0; b];
        for w in windows {
            var.iter_mut().zip(w.iter().zip(&mean)).for_each(|(v, (x, m))| *v += (x - m).powi(2) / (n - 1) as f64);
        }
        Some(BandStats { windows: n, mean, std: var.into_iter().map(f64::sqrt).collect() })
    }
}

/// Standardisation of the two fused energies (held-out normal vectors).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fusion {
    pub energy_mean: f64,
    pub energy_std: f64,
    pub reference_mean: f64,
    pub reference_std: f64,
}

impl Fusion {
    /// The fused score of the two energies.
    pub fn combine(&self, e: &Tensor, e_ref: &Tensor) -> Tensor {
        ((e - self.energy_mean) / self.energy_std.max(1e-12)
            + (e_ref - self.reference_mean) / self.reference_std.max(1e-12))
            * 0.5
    }
}

impl Manifest {
    pub fn new(kind: ModelKind, energy: EnergySpec, manifold: Vec<AeSpec>) -> Self {
        Manifest {
            schema_version: SCHEMA_VERSION,
            kind,
            energy,
            manifold,
            features: None,
            audio: None,
            scaler: None,
            threshold: None,
            fusion: None,
            band_stats: None,
            levels: None,
            provenance: Provenance { mpdr_version: env!("CARGO_PKG_VERSION").into(), ..Default::default() },
            files: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("{}: invalid manifest: {message}", path.display())]
    Manifest { path: PathBuf, message: String },
    #[error("{}: schema version {found}, this mpdr reads version {SCHEMA_VERSION}", path.display())]
    Schema { path: PathBuf, found: u32 },
    #[error("{}: checksum mismatch: manifest says sha256 {expected}, file has {actual} (corrupted or replaced)", path.display())]
    Checksum { path: PathBuf, expected: String, actual: String },
    #[error("{}: {detail}", path.display())]
    Mismatch { path: PathBuf, detail: String },
    #[error("{}: libtorch: {message}", path.display())]
    Torch { path: PathBuf, message: String },
}

/// A loaded or freshly built model.
pub struct Bundle {
    pub manifest: Manifest,
    pub energy_vs: nn::VarStore,
    pub energy: EnergyNet,
    pub manifold_vs: Vec<nn::VarStore>,
    pub manifold: Vec<AutoEncoder>,
    /// The pre-trained energy of a fused bundle ([`Fusion`]).
    pub reference: Option<(nn::VarStore, EnergyNet)>,
    /// The manifest's scaler as tensors on the energy's device, built on first use and again
    /// only when `manifest.scaler` changes (not per batch).
    scaler_tensors: std::cell::RefCell<Option<ScalerTensors>>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle").field("manifest", &self.manifest).finish_non_exhaustive()
    }
}

impl Bundle {
    /// Build the networks of `manifest` with fresh weights on `device` (float32).
    pub fn build(manifest: Manifest, device: Device) -> Self {
        let mut energy_vs = nn::VarStore::new(device);
        let energy = manifest.energy.build(&energy_vs.root());
        if manifest.energy.is_density() {
            // Densities are fitted and scored in f64 (a 128-D quadratic form keeps its digits):
            // the variables are cast in place, and scoring casts its input to the store's kind.
            energy_vs.set_kind(Kind::Double);
        }
        let mut manifold_vs = Vec::new();
        let mut manifold = Vec::new();
        for spec in &manifest.manifold {
            let vs = nn::VarStore::new(device);
            manifold.push(AutoEncoder::new(&vs.root(), spec));
            manifold_vs.push(vs);
        }
        let reference = manifest.fusion.map(|_| {
            let vs = nn::VarStore::new(device);
            let net = manifest.energy.build(&vs.root());
            (vs, net)
        });
        Bundle { manifest, energy_vs, energy, manifold_vs, manifold, reference, scaler_tensors: Default::default() }
    }

    /// Make this a fused bundle: a second copy of the energy's network is built, `fill` writes
    /// the reference weights into its store (e.g. a snapshot of the pre-trained energy), and
    /// both energies are standardised on `heldout` (scaled vectors).
    pub fn fuse_with<E>(
        &mut self,
        fill: impl FnOnce(&nn::VarStore) -> Result<(), E>,
        heldout: &Tensor,
    ) -> Result<Fusion, E> {
        let vs = nn::VarStore::new(self.energy_vs.device());
        let net = self.manifest.energy.build(&vs.root());
        fill(&vs)?;
        let stats = |e: &dyn Energy| -> (f64, f64) {
            tch::no_grad(|| {
                let v = e.energy(heldout, false).to_kind(Kind::Double);
                (v.mean(Kind::Double).double_value(&[]), v.std(true).double_value(&[]))
            })
        };
        let (energy_mean, energy_std) = stats(&self.energy);
        let (reference_mean, reference_std) = stats(&net);
        let f = Fusion { energy_mean, energy_std, reference_mean, reference_std };
        self.manifest.fusion = Some(f);
        self.reference = Some((vs, net));
        Ok(f)
    }

    /// Energies of scaled vectors, fused with the reference energy when the bundle has one.
    /// Standardise raw vectors with the manifest's scaler (its tensors cached).
    fn f_scale(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let Some(scaler) = &self.manifest.scaler else { return Ok(x.shallow_clone()) };
        let mut cache = self.scaler_tensors.borrow_mut();
        if cache.as_ref().is_none_or(|t| t.of != *scaler) {
            *cache = Some(scaler.tensors(x.kind(), x.device())?);
        }
        match cache.as_ref() {
            Some(t) => t.f_apply(x),
            None => Ok(x.shallow_clone()),
        }
    }

    fn fused(&self, x: &Tensor) -> Tensor {
        let e = self.energy.energy(x, false);
        match (&self.reference, &self.manifest.fusion) {
            (Some((_, r)), Some(f)) => f.combine(&e, &r.energy(x, false)),
            _ => e,
        }
    }

    /// Write the bundle to `dir` (created if needed): weights first, then the manifest with
    /// their checksums, written to a temporary name and renamed, so a crash never leaves a
    /// manifest that points at missing weights.
    pub fn save(&mut self, dir: &Path) -> Result<(), BundleError> {
        self.manifest.files = self.save_as(dir, &self.manifest)?;
        Ok(())
    }

    /// Write this bundle's weights with `manifest` (e.g. a checkpoint's, with progress added)
    /// to `dir`; returns the file entries written into the manifest.
    pub fn save_as(&self, dir: &Path, manifest: &Manifest) -> Result<BTreeMap<String, FileEntry>, BundleError> {
        let io = |p: &Path, e: std::io::Error| BundleError::Io { path: p.into(), message: e.to_string() };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut files = BTreeMap::new();
        let mut write = |name: String, vs: &nn::VarStore| -> Result<(), BundleError> {
            let path = dir.join(&name);
            // Keep the .safetensors extension: tch picks the format from it.
            let tmp = dir.join(format!("tmp-{name}"));
            vs.save(&tmp).map_err(|e| BundleError::Torch { path: path.clone(), message: e.to_string() })?;
            std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
            let (sha256, bytes) = sha256_file(&path)?;
            files.insert(name, FileEntry { sha256, bytes });
            Ok(())
        };
        write("energy.safetensors".into(), &self.energy_vs)?;
        for (k, vs) in self.manifold_vs.iter().enumerate() {
            write(format!("manifold_{k}.safetensors"), vs)?;
        }
        if let Some((vs, _)) = &self.reference {
            write("reference.safetensors".into(), vs)?;
        }
        let mut m = manifest.clone();
        m.files = files.clone();
        let text = toml::to_string(&m)
            .map_err(|e| BundleError::Manifest { path: dir.join("manifest.toml"), message: e.to_string() })?;
        let tmp = dir.join("manifest.toml.tmp");
        std::fs::write(&tmp, text).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, dir.join("manifest.toml")).map_err(|e| io(dir, e))?;
        Ok(files)
    }

    /// Read and verify a bundle.
    pub fn load(dir: &Path, device: Device) -> Result<Self, BundleError> {
        let manifest = Self::read_manifest(dir)?;
        let mpath = dir.join("manifest.toml");
        // Every integrity entry: its file there, of its size and checksum (extra entries too).
        for (name, entry) in &manifest.files {
            let path = dir.join(name);
            let (actual, bytes) = sha256_file(&path)?;
            if bytes != entry.bytes {
                return Err(BundleError::Manifest {
                    path: mpath.clone(),
                    message: format!(
                        "files.\"{name}\".bytes: {} says {} bytes, the file has {bytes}",
                        path.display(),
                        entry.bytes
                    ),
                });
            }
            if actual != entry.sha256 {
                return Err(BundleError::Checksum { path, expected: entry.sha256.clone(), actual });
            }
        }
        let mut b = Bundle::build(manifest, device);
        let mut expected: Vec<(String, usize)> = vec![("energy.safetensors".into(), usize::MAX)];
        expected.extend((0..b.manifold.len()).map(|k| (format!("manifold_{k}.safetensors"), k)));
        if b.reference.is_some() {
            expected.push(("reference.safetensors".into(), usize::MAX - 1));
        }
        for (name, k) in expected {
            let path = dir.join(&name);
            if !b.manifest.files.contains_key(&name) {
                return Err(BundleError::Manifest {
                    path: mpath.clone(),
                    message: format!("files.\"{name}\" is missing"),
                });
            }
            let vs = match k {
                usize::MAX => &mut b.energy_vs,
                k if k == usize::MAX - 1 => match b.reference.as_mut() {
                    Some((vs, _)) => vs,
                    None => continue,
                },
                k => &mut b.manifold_vs[k],
            };
            verify_and_load(vs, &path)?;
            if let Some(name) = check::non_finite_tensor(vs) {
                return Err(BundleError::Mismatch {
                    path,
                    detail: format!("tensor {name} holds NaN or infinite weights"),
                });
            }
        }
        for vs in &mut b.manifold_vs {
            vs.freeze();
        }
        Ok(b)
    }

    /// Read and parse a bundle's `manifest.toml` only (no weights): for config checks.
    pub fn read_manifest(dir: &Path) -> Result<Manifest, BundleError> {
        let mpath = dir.join("manifest.toml");
        let text = crate::files::read_regular_string(&mpath)
            .map_err(|e| BundleError::Io { path: mpath.clone(), message: format!("cannot read: {e}") })?;
        // Check the schema version before the full parse, so old/new bundles get that message.
        if let Ok(v) = text.parse::<toml::Table>() {
            if let Some(found) = v.get("schema_version").and_then(|s| s.as_integer()) {
                if found != SCHEMA_VERSION as i64 {
                    return Err(BundleError::Schema { path: mpath, found: found as u32 });
                }
            }
        }
        let m: Manifest = crate::config::parse_toml(&text)
            .map_err(|message| BundleError::Manifest { path: mpath.clone(), message })?;
        check::problems(&m).into_result(m).map_err(|p| BundleError::Manifest { path: mpath, message: p.to_string() })
    }

    /// Energies (N,) and per-mel-band errors (N, n_mels) of raw vectors (N, D), on the CPU,
    /// in one forward pass under no-grad. Bands: the per-dimension error summed over the
    /// stacked frames (IDNN predicts one frame: its error is per band already); `None` for
    /// energies without a per-dimension error.
    pub fn score_explained(&self, vectors: &Tensor, n_mels: i64) -> Result<(Tensor, Option<Tensor>), tch::TchError> {
        let device = self.energy_vs.device();
        let kind = self.energy_vs.kind();
        tch::no_grad(|| {
            let x = self.f_scale(&vectors.f_to_device(device)?.f_to_kind(kind)?)?;
            let (e, dims) = self.energy.energy_explained(&x)?;
            let e = match (&self.reference, &self.manifest.fusion) {
                (Some((_, r)), Some(f)) => f.combine(&e, &r.energy(&x, false)),
                _ => e,
            };
            let bands = match dims {
                Some(d) if n_mels > 0 && d.size().len() == 2 && d.size()[1] % n_mels == 0 => {
                    let (n, width) = (d.size()[0], d.size()[1]);
                    let b = d.f_view([n, width / n_mels, n_mels])?.f_sum_dim_intlist(
                        [1i64].as_slice(),
                        false,
                        Kind::Float,
                    )?;
                    Some(b.f_to_device(Device::Cpu)?)
                }
                _ => None,
            };
            Ok((e.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?, bands))
        })
    }

    /// Energies of raw (unscaled) vectors (N, D) -> (N,), under no-grad, in batches.
    pub fn score(&self, vectors: &Tensor, batch: i64) -> Result<Tensor, tch::TchError> {
        let device = self.energy_vs.device();
        let kind = self.energy_vs.kind();
        let n = vectors.size()[0];
        let mut out = Vec::new();
        tch::no_grad(|| -> Result<(), tch::TchError> {
            let mut i = 0;
            while i < n {
                let len = batch.min(n - i);
                let x = self.f_scale(&vectors.f_narrow(0, i, len)?.f_to_device(device)?.f_to_kind(kind)?)?;
                out.push(self.fused(&x).f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?);
                i += len;
            }
            Ok(())
        })?;
        if out.is_empty() {
            return Ok(Tensor::zeros([0], tch::kind::FLOAT_CPU));
        }
        Tensor::f_cat(&out, 0)
    }
}
