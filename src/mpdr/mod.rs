//! Manifold Projection-Diffusion Recovery (Yoon et al., NeurIPS 2023), as the official code
//! runs it (see MPDR-SPEC §2.4; paper/code switches are config fields):
//!
//! 1. split the batch over K frozen manifold autoencoders (contiguous ⌊B/K⌋ slices);
//! 2. σ ~ U[σ_min, σ_max] per sample; z = Π(f_e(x)); z̃ = Π(z + σε); x̃ = f_d(z̃);
//! 3. optional latent chain on the sphere (unit tangent gradient), then a visible chain on
//!    the recovery energy Ẽ(x | z̃, σ) = E(x)/T + γ·d(Π f_e(x), z̃)² / (2σ²);
//! 4. loss = mean E(x) − mean E(x⁻) + regularisers, Adam on the energy only.
//!
//! Input gradients use `Tensor::run_backward`, so sampling never touches parameter gradients.
//! All random draws go through [`Noise`], so a test can replay a reference's draws exactly.

pub mod diagnose;
pub mod error;
pub mod recipe;
pub mod report;
pub mod select;
pub mod train;
pub mod watch;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::config::Problems;
use crate::nn::ae::{project_sphere, AutoEncoder};
use crate::nn::{l2_of, Energy, EnergyKind};

/// Distance in the recovery term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distance {
    /// Squared angle arccos(⟨a, b⟩ − 1e-6)² (the official code; default).
    #[default]
    Geodesic,
    /// Squared Euclidean ‖a − b‖² (the paper's formula).
    Euclidean,
}

/// The latent (on-manifold) chain. `steps = 0` skips it (x₀⁻ = x̃).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatentChain {
    pub steps: usize,
    pub step_size: f64,
    pub noise: f64,
    pub temperature: f64,
}

impl Default for LatentChain {
    fn default() -> Self {
        LatentChain { steps: 0, step_size: 0.1, noise: 0.01, temperature: 1.0 }
    }
}

/// The visible (data-space) chain. `steps = 0` uses x₀⁻ as the negative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VisibleChain {
    pub steps: usize,
    /// Literal step λ on the gradient (`mcmc_custom_stepsize`).
    pub step_size: f64,
    /// Standard deviation of the added noise.
    pub noise: f64,
    /// Clamp x after each step, e.g. [0, 1] for images.
    pub bound: Option<[f64; 2]>,
}

impl Default for VisibleChain {
    fn default() -> Self {
        VisibleChain { steps: 5, step_size: 10.0, noise: 0.005, bound: None }
    }
}

/// What the negatives carry besides the decoded manifold point (issue 12, BENCHMARKS.md
/// "Why MPDR dips"): decoded points are denoised — smoother than any recording — and an
/// energy can tell them from data by texture alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Texture {
    /// The spec: x⁻ is the visible chain's end, started at f_d(z̃).
    #[default]
    None,
    /// Start the visible chain at f_d(z̃) + r, r = x − f_d(Π f_e(x)) the sample's own residual.
    ResidualBefore,
    /// Run the chain from f_d(z̃), then add the residual r to its end.
    ResidualAfter,
    /// Add Gaussian noise with the per-dimension std of the batch's residuals to the chain's end.
    MatchedNoise,
}

/// Every MPDR hyperparameter. Defaults: the official DCASE MPDR-R config (MPDR-SPEC §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MpdrConfig {
    pub sigma_min: f64,
    pub sigma_max: f64,
    /// γ (`proj_const`) on the recovery term, in both chains.
    pub gamma: f64,
    pub distance: Distance,
    /// Energy temperature T in Ẽ.
    pub temperature: f64,
    pub latent: LatentChain,
    pub visible: VisibleChain,
    /// Coefficient of mean E(x⁻)² for reconstruction energies (`gamma_neg_recon`).
    pub gamma_neg_recon: f64,
    /// Coefficient of mean E(x)² + mean E(x⁻)² for scalar energies (`gamma_vx`).
    pub gamma_vx: f64,
    /// Extra L2 on every energy parameter (`l2_norm_reg_netx`).
    pub l2_energy: f64,
    /// Add the energy's own regulariser (encoder L2 ...; `custom_netx_reg`).
    pub energy_reg: bool,
    /// Adam learning rate for the energy during MPDR.
    pub lr: f64,
    /// Texture of the negatives (data-like residual noise); `none` = the spec.
    pub texture: Texture,
    /// Coefficient of Σ‖θ − θ₀‖², a pull of the energy towards its weights at MPDR's start.
    pub anchor: f64,
    /// Linear learning-rate warm-up from 0 over this many MPDR steps (0 = none).
    pub warmup_steps: usize,
    /// k > 0 sets `gamma_neg_recon` = 1 / (2·k·Ē₀), Ē₀ the mean energy of the training data at
    /// MPDR's start: the push on a negative then vanishes at k times the data's energy, not at
    /// 1 / (2·gamma_neg_recon). 0 = off (`gamma_neg_recon` as given).
    pub neg_equilibrium: f64,
    /// Share of each batch's negatives replaced by normal vectors of the *other* machine ids
    /// of the same type (`mpdr train --id`; real recordings, so the data's texture). 0 = off.
    pub other_ids_negatives: f64,
    /// Share of each batch's negatives replaced by copies of positives shifted along the mel
    /// axis by 1..=`max_shift` bins (up or down, edge bins repeated): the same clip's texture
    /// with its tones moved, the shape of a speed or load change. 0 = off.
    pub shift_negatives: f64,
    pub max_shift: i64,
}

impl Default for MpdrConfig {
    fn default() -> Self {
        MpdrConfig {
            sigma_min: 0.05,
            sigma_max: 0.3,
            gamma: 1e-4,
            distance: Distance::Geodesic,
            temperature: 1.0,
            latent: LatentChain::default(),
            visible: VisibleChain::default(),
            gamma_neg_recon: 1.0,
            gamma_vx: 1.0,
            l2_energy: 0.0,
            energy_reg: true,
            lr: 1e-5,
            texture: Texture::None,
            anchor: 0.0,
            warmup_steps: 0,
            neg_equilibrium: 0.0,
            other_ids_negatives: 0.0,
            shift_negatives: 0.0,
            max_shift: 2,
        }
    }
}

impl MpdrConfig {
    pub fn validate(&self, prefix: &str, p: &mut Problems) {
        let key = |k: &str| format!("{prefix}.{k}");
        if !(self.sigma_min > 0.0 && self.sigma_min <= self.sigma_max && self.sigma_max.is_finite()) {
            p.push(
                key("sigma_min"),
                format!("need 0 < sigma_min <= sigma_max, got {} and {}", self.sigma_min, self.sigma_max),
            );
        }
        for (k, v) in [
            ("gamma", self.gamma),
            ("gamma_neg_recon", self.gamma_neg_recon),
            ("gamma_vx", self.gamma_vx),
            ("l2_energy", self.l2_energy),
            ("anchor", self.anchor),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                p.push(key(k), format!("must be a finite number >= 0, got {v}"));
            }
        }
        for (k, v) in
            [("temperature", self.temperature), ("latent.temperature", self.latent.temperature), ("lr", self.lr)]
        {
            if !(v.is_finite() && v > 0.0) {
                p.push(key(k), format!("must be a finite number > 0, got {v}"));
            }
        }
        for (k, v) in [
            ("latent.step_size", self.latent.step_size),
            ("latent.noise", self.latent.noise),
            ("visible.step_size", self.visible.step_size),
            ("visible.noise", self.visible.noise),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                p.push(key(k), format!("must be a finite number >= 0, got {v}"));
            }
        }
        // Langevin chains run every step of every batch: bounds a training run can finish in.
        for (k, v) in [("latent.steps", self.latent.steps), ("visible.steps", self.visible.steps)] {
            if v > 10_000 {
                p.push(key(k), format!("must be at most 10000 steps per sample, got {v}"));
            }
        }
        for (k, v) in [("other_ids_negatives", self.other_ids_negatives), ("shift_negatives", self.shift_negatives)] {
            if !(0.0..=1.0).contains(&v) {
                p.push(key(k), format!("must be in [0, 1], got {v}"));
            }
        }
        if self.other_ids_negatives + self.shift_negatives > 1.0 {
            p.push(key("shift_negatives"), "other_ids_negatives + shift_negatives must be <= 1".to_string());
        }
        if self.max_shift < 1 {
            p.push(key("max_shift"), format!("must be >= 1, got {}", self.max_shift));
        }
        if !(self.neg_equilibrium.is_finite() && self.neg_equilibrium >= 0.0) {
            p.push(
                key("neg_equilibrium"),
                format!("must be a finite number >= 0 (0 = off), got {}", self.neg_equilibrium),
            );
        }
        if let Some([lo, hi]) = self.visible.bound {
            if lo >= hi || lo.is_nan() || hi.is_nan() {
                p.push(key("visible.bound"), format!("need lower < upper, got [{lo}, {hi}]"));
            }
        }
    }
}

/// Source of the random draws of one MPDR step.
pub trait Noise {
    /// U[0, 1) of `shape`, kind and device of `like`.
    fn uniform(&mut self, shape: &[i64], like: &Tensor) -> Tensor;
    /// N(0, 1) of `shape`, kind and device of `like`.
    fn normal(&mut self, shape: &[i64], like: &Tensor) -> Tensor;
}

/// libtorch's global generator (seed it with `tch::manual_seed`).
#[derive(Debug, Default)]
pub struct TorchNoise;

impl Noise for TorchNoise {
    fn uniform(&mut self, shape: &[i64], like: &Tensor) -> Tensor {
        Tensor::rand(shape, (like.kind(), like.device()))
    }
    fn normal(&mut self, shape: &[i64], like: &Tensor) -> Tensor {
        Tensor::randn(shape, (like.kind(), like.device()))
    }
}

/// Replays recorded draws in order (for parity tests against a reference implementation).
#[derive(Debug, Default)]
pub struct ReplayNoise {
    pub draws: VecDeque<Tensor>,
}

impl Noise for ReplayNoise {
    fn uniform(&mut self, shape: &[i64], like: &Tensor) -> Tensor {
        self.next(shape, like)
    }
    fn normal(&mut self, shape: &[i64], like: &Tensor) -> Tensor {
        self.next(shape, like)
    }
}

impl ReplayNoise {
    fn next(&mut self, shape: &[i64], like: &Tensor) -> Tensor {
        match self.draws.pop_front() {
            Some(t) if t.size() == shape => t.to_kind(like.kind()).to_device(like.device()),
            Some(t) => panic!("replayed draw has shape {:?}, the step asked for {:?}", t.size(), shape),
            None => panic!("no replayed draw left for shape {shape:?}"),
        }
    }
}

/// What one sampling pass produced (all detached).
#[derive(Debug)]
pub struct Negatives {
    /// Final negatives x⁻ (K·⌊B/K⌋ rows).
    pub x_neg: Tensor,
    /// Chain starts x₀⁻ (x̃, or f_d of the latent chain's end).
    pub x_init: Tensor,
    /// The σ each negative was drawn with.
    pub sigma: Tensor,
}

/// Copies of frame-major rows (N, frames·n_mels) shifted along the mel axis by a random
/// 1..=max_shift bins, up or down, per row; bins shifted in repeat the edge bin.
pub fn mel_shifted(x: &Tensor, n_mels: i64, max_shift: i64, noise: &mut dyn Noise) -> Tensor {
    let (n, d) = (x.size()[0], x.size()[1]);
    let frames = d / n_mels.max(1);
    let u = Vec::<f64>::try_from(noise.uniform(&[n], x).to_kind(Kind::Double)).unwrap_or_default();
    let bins = Tensor::arange(n_mels, (Kind::Int64, x.device()));
    let shifts: Vec<i64> = u
        .iter()
        .map(|&v| {
            let k = ((v * 2.0 * max_shift as f64).floor() as i64).clamp(0, 2 * max_shift - 1);
            if k < max_shift {
                -(k + 1)
            } else {
                k - max_shift + 1
            }
        })
        .collect();
    let shift = Tensor::from_slice(&shifts).to_device(x.device()).unsqueeze(1);
    // Output bin m reads input bin m - shift, clamped to the band edges.
    let src = (bins.unsqueeze(0) - shift).clamp(0, n_mels - 1); // (N, n_mels)
    let idx = src.unsqueeze(1).expand([n, frames, n_mels], false);
    x.view([n, frames, n_mels]).gather(2, &idx, false).view([n, d])
}

/// Recovery energy Ẽ(x | z̃, σ) per sample.
pub fn recovery_energy(
    energy: &dyn Energy,
    ae: &AutoEncoder,
    x: &Tensor,
    z_tilde: &Tensor,
    sigma: &Tensor,
    cfg: &MpdrConfig,
) -> Tensor {
    let e = energy.energy(x, false) / cfg.temperature;
    if cfg.gamma == 0.0 {
        return e;
    }
    let z = ae.encode(x);
    let d2 = match cfg.distance {
        Distance::Geodesic => {
            let cos = (&z * z_tilde).sum_dim_intlist([1i64].as_slice(), false, z.kind()) - 1e-6;
            cos.clamp(-1.0 + 1e-6, 1.0 - 1e-6).acos().square()
        }
        Distance::Euclidean => (&z - z_tilde).square().sum_dim_intlist([1i64].as_slice(), false, z.kind()),
    };
    e + d2 * cfg.gamma / (sigma.square() * 2.0)
}

/// ∇ₓ Σᵢ f(xᵢ), leaving parameter gradients untouched.
fn input_grad(x: &Tensor, f: impl FnOnce(&Tensor) -> Tensor) -> Tensor {
    let x = x.detach().set_requires_grad(true);
    let y = f(&x).sum(x.kind());
    Tensor::run_backward(&[y], &[&x], false, false).remove(0)
}

/// Draw negatives for a batch with the frozen `ensemble`.
pub fn sample_negatives(
    energy: &dyn Energy,
    ensemble: &[AutoEncoder],
    x: &Tensor,
    cfg: &MpdrConfig,
    noise: &mut dyn Noise,
) -> Negatives {
    let k = ensemble.len() as i64;
    let n = x.size()[0] / k;
    let mut negs = Vec::with_capacity(ensemble.len());
    let mut inits = Vec::with_capacity(ensemble.len());
    let mut sigmas = Vec::with_capacity(ensemble.len());
    for (i, ae) in ensemble.iter().enumerate() {
        let xk = x.narrow(0, i as i64 * n, n).detach();
        let u = noise.uniform(&[n], &xk);
        let sigma = u * (cfg.sigma_min - cfg.sigma_max) + cfg.sigma_max;
        let (z_tilde, x0, residual) = tch::no_grad(|| {
            let z = ae.encode(&xk);
            let residual = (cfg.texture != Texture::None).then(|| &xk - ae.decode(&z));
            let eps = noise.normal(&z.size(), &z);
            let zt = project_sphere(&(z + eps * sigma.unsqueeze(1)));
            let x0 = ae.decode(&zt);
            (zt, x0, residual)
        });
        let mut x_init = match (&residual, cfg.texture) {
            (Some(r), Texture::ResidualBefore) => &x0 + r,
            _ => x0,
        };
        if cfg.latent.steps > 0 {
            let mut z = z_tilde.shallow_clone();
            for _ in 0..cfg.latent.steps {
                let g = input_grad(&z, |zr| recovery_energy(energy, ae, &ae.decode(zr), &z_tilde, &sigma, cfg));
                z = tch::no_grad(|| {
                    let radial = (&g * &z).sum_dim_intlist([1i64].as_slice(), true, g.kind());
                    let tangent = &g - radial * &z;
                    let unit = &tangent / tangent.norm_scalaropt_dim(2.0, [1i64].as_slice(), true);
                    let step = &z - unit * (cfg.latent.step_size / cfg.latent.temperature)
                        + noise.normal(&z.size(), &z) * cfg.latent.noise;
                    &step / step.norm_scalaropt_dim(2.0, [1i64].as_slice(), true)
                });
            }
            x_init = tch::no_grad(|| ae.decode(&z));
            if let (Some(r), Texture::ResidualBefore) = (&residual, cfg.texture) {
                x_init += r;
            }
        }
        let mut xv = x_init.shallow_clone();
        for _ in 0..cfg.visible.steps {
            let g = input_grad(&xv, |xr| recovery_energy(energy, ae, xr, &z_tilde, &sigma, cfg));
            xv = tch::no_grad(|| {
                let next = &xv - g * cfg.visible.step_size + noise.normal(&xv.size(), &xv) * cfg.visible.noise;
                match cfg.visible.bound {
                    Some([lo, hi]) => next.clamp(lo, hi),
                    None => next,
                }
            });
        }
        let xv = match (&residual, cfg.texture) {
            (Some(r), Texture::ResidualAfter) => &xv + r,
            (Some(r), Texture::MatchedNoise) => {
                let std = r.std_dim([0i64].as_slice(), true, true);
                &xv + noise.normal(&xv.size(), &xv) * std
            }
            _ => xv,
        };
        negs.push(xv.detach());
        inits.push(x_init.detach());
        sigmas.push(sigma);
    }
    Negatives { x_neg: Tensor::cat(&negs, 0), x_init: Tensor::cat(&inits, 0), sigma: Tensor::cat(&sigmas, 0) }
}

/// The MPDR loss on positives `x` and negatives `x_neg` (energy in training mode).
/// Returns (loss, mean E(x), mean E(x⁻)).
pub fn mpdr_loss(
    energy: &dyn Energy,
    x: &Tensor,
    x_neg: &Tensor,
    cfg: &MpdrConfig,
    params: &[Tensor],
    anchor: Option<&[Tensor]>,
) -> (Tensor, Tensor, Tensor) {
    let e_pos = energy.energy(x, true);
    let e_neg = energy.energy(x_neg, true);
    let (mp, mn) = (e_pos.mean(e_pos.kind()), e_neg.mean(e_neg.kind()));
    // Terms are added out of place: `loss` is part of the autograd graph.
    let mut terms = vec![&mp - &mn];
    match energy.kind() {
        EnergyKind::Recon => terms.push(e_neg.square().mean(e_neg.kind()) * cfg.gamma_neg_recon),
        EnergyKind::Scalar => {
            terms.push((e_pos.square().mean(e_pos.kind()) + e_neg.square().mean(e_neg.kind())) * cfg.gamma_vx)
        }
    }
    if cfg.energy_reg {
        terms.push(energy.reg().to_kind(mp.kind()).to_device(mp.device()));
    }
    if cfg.l2_energy > 0.0 {
        terms.push(l2_of(params) * cfg.l2_energy);
    }
    if let (true, Some(start)) = (cfg.anchor > 0.0, anchor) {
        let pull = params
            .iter()
            .zip(start)
            .fold(Tensor::zeros([], (mp.kind(), mp.device())), |acc, (p, p0)| acc + (p - p0).square().sum(p.kind()));
        terms.push(pull * cfg.anchor);
    }
    let loss = terms.into_iter().reduce(|a, b| a + b).unwrap_or_else(|| &mp - &mn);
    (loss, mp.detach(), mn.detach())
}

/// Appendix-C monitor: AUROC of held-out normals (label 0) against samples drawn uniformly on
/// each manifold AE's sphere and decoded (label 1). Needs no anomaly: high means the energy
/// keeps off-data regions of the manifold high.
pub fn manifold_uniform_auc(
    energy: &dyn Energy,
    ensemble: &[AutoEncoder],
    heldout: &Tensor,
    per_ae: i64,
    noise: &mut dyn Noise,
) -> Option<f64> {
    let (scores, labels) = tch::no_grad(|| {
        let mut scores: Vec<f64> = Vec::<f64>::try_from(energy.energy(heldout, false).to_kind(Kind::Double)).ok()?;
        let mut labels = vec![false; scores.len()];
        for ae in ensemble {
            let z = project_sphere(&noise.normal(&[per_ae, ae.spec.latent], heldout));
            let x = ae.decode(&z);
            let s: Vec<f64> = Vec::<f64>::try_from(energy.energy(&x, false).to_kind(Kind::Double)).ok()?;
            labels.extend(std::iter::repeat_n(true, s.len()));
            scores.extend(s);
        }
        Some((scores, labels))
    })?;
    crate::eval::metrics::roc_auc(&labels, &scores).ok()
}
