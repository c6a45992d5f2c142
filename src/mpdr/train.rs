//! One generic training loop for every objective (manifold AEs, energy pre-training, MPDR):
//! seeded shuffling, minibatches (last partial batch kept), a progress bar with the step's
//! statistics and the epoch ETA, per-epoch hooks (validation, checkpoints) and a stop flag.

use super::error::{ensure, TrainError};
use std::collections::VecDeque;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use tch::{nn, nn::OptimizerConfig, Kind, TchError, Tensor};

use super::{mpdr_loss, sample_negatives, MpdrConfig, Noise};
use crate::nn::ae::AutoEncoder;
use crate::nn::Energy;

/// Statistics of one optimisation step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepStats {
    pub loss: f64,
    /// Mean energy of the positive batch (MPDR).
    pub e_pos: Option<f64>,
    /// Mean energy of the negatives (MPDR).
    pub e_neg: Option<f64>,
}

/// Something the loop can optimise one batch at a time.
pub trait Objective {
    fn step(&mut self, batch: &Tensor) -> Result<StepStats, TchError>;
    /// Called with `true` before the end-of-epoch hooks and `false` after them: an objective
    /// that averages its weights (EMA) shows the hooks the averaged ones.
    fn evaluation_weights(&mut self, _on: bool) {}
    /// After the last step: put the weights to keep in place.
    fn finish(&mut self) {}
}

/// Means over an epoch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochSummary {
    pub epoch: usize,
    pub steps: usize,
    pub loss: f64,
    pub e_pos: Option<f64>,
    pub e_neg: Option<f64>,
    pub seconds: f64,
}

/// Called by the loop; all methods optional.
pub trait Hooks {
    /// After every epoch (validation, checkpoints, logging). An error stops training.
    fn on_epoch_end(&mut self, _summary: &EpochSummary) -> Result<(), TrainError> {
        Ok(())
    }
    /// Checked before every step (Ctrl-C).
    fn stop_requested(&self) -> bool {
        false
    }
}

/// Hooks that do nothing.
pub struct NoHooks;
impl Hooks for NoHooks {}

#[derive(Debug, Clone, PartialEq)]
pub struct LoopConfig {
    pub epochs: usize,
    pub batch_size: i64,
    /// Seeds libtorch's generator (shuffling and MPDR noise).
    pub seed: u64,
    /// Stop after this many steps in total (for short runs and tests).
    pub max_steps: Option<usize>,
    pub progress: bool,
    /// Shown in the progress bar ("ae-32", "mpdr", ...).
    pub label: String,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig { epochs: 1, batch_size: 512, seed: 1, max_steps: None, progress: false, label: "train".into() }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainReport {
    pub epochs: Vec<EpochSummary>,
    pub steps: usize,
    pub seconds: f64,
    /// True when stopped by `stop_requested`; the unfinished epoch is not in `epochs` (its
    /// steps are in `steps`). Reaching `max_steps` is not an interruption: that epoch counts.
    pub interrupted: bool,
}

/// Run `objective` over `data` (rows are samples).
pub fn run(
    objective: &mut dyn Objective,
    data: &Tensor,
    cfg: &LoopConfig,
    hooks: &mut dyn Hooks,
) -> Result<TrainReport, TrainError> {
    tch::manual_seed(cfg.seed as i64);
    let n = data.size()[0];
    ensure(n > 0, || "no training data".into())?;
    let batches_per_epoch = ((n + cfg.batch_size - 1) / cfg.batch_size) as u64;
    let start = Instant::now();
    let mut report = TrainReport::default();
    for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        // The bar's total is this epoch's steps: all its batches, or what `max_steps` leaves.
        let left = cfg.max_steps.map_or(u64::MAX, |m| m.saturating_sub(report.steps) as u64);
        let bar = if cfg.progress { ProgressBar::new(batches_per_epoch.min(left)) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} [{elapsed}<{eta}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("{} epoch {epoch}/{}", cfg.label, cfg.epochs));
        let perm = Tensor::randperm(n, (Kind::Int64, data.device()));
        let mut sum = EpochSummary { epoch, ..Default::default() };
        let (mut pos_sum, mut neg_sum) = (0.0, 0.0);
        let mut i = 0;
        let mut budget_reached = false;
        while i < n {
            if hooks.stop_requested() {
                report.interrupted = true;
                break;
            }
            if cfg.max_steps.is_some_and(|m| report.steps >= m) {
                budget_reached = true;
                break;
            }
            let len = cfg.batch_size.min(n - i);
            let batch = data.index_select(0, &perm.narrow(0, i, len));
            let s = objective.step(&batch)?;
            ensure(s.loss.is_finite(), || {
                format!("{}: loss became {} at epoch {epoch}, step {}", cfg.label, s.loss, sum.steps + 1)
            })?;
            sum.steps += 1;
            report.steps += 1;
            sum.loss += s.loss;
            pos_sum += s.e_pos.unwrap_or(0.0);
            neg_sum += s.e_neg.unwrap_or(0.0);
            let msg = match (s.e_pos, s.e_neg) {
                (Some(p), Some(q)) => format!("loss {:.4} E(x) {p:.4} E(x-) {q:.4}", s.loss),
                _ => format!("loss {:.5}", s.loss),
            };
            bar.set_message(msg);
            bar.inc(1);
            if s.e_pos.is_some() {
                sum.e_pos = Some(pos_sum / sum.steps as f64);
                sum.e_neg = Some(neg_sum / sum.steps as f64);
            }
            i += len;
        }
        bar.finish_and_clear();
        if report.interrupted {
            break;
        }
        if sum.steps > 0 {
            sum.loss /= sum.steps as f64;
            sum.seconds = t0.elapsed().as_secs_f64();
            tracing::info!(label = %cfg.label, epoch, steps = sum.steps, loss = sum.loss, e_pos = %crate::error::or_none(sum.e_pos), e_neg = %crate::error::or_none(sum.e_neg), seconds = sum.seconds, "epoch done");
            objective.evaluation_weights(true);
            let hooked = hooks.on_epoch_end(&sum);
            objective.evaluation_weights(false);
            hooked?;
            report.epochs.push(sum);
        }
        if budget_reached {
            break;
        }
    }
    objective.finish();
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Pre-training of a reconstruction energy (or a manifold AE) on its own loss.
pub struct Pretrain<'a> {
    pub energy: &'a dyn Energy,
    pub opt: nn::Optimizer,
}

impl<'a> Pretrain<'a> {
    /// Adam (PyTorch defaults) over all trainable variables of `vs`.
    pub fn new(energy: &'a dyn Energy, vs: &nn::VarStore, lr: f64) -> Result<Self, TchError> {
        Ok(Pretrain { energy, opt: nn::Adam::default().build(vs, lr)? })
    }
}

impl Objective for Pretrain<'_> {
    fn step(&mut self, batch: &Tensor) -> Result<StepStats, TchError> {
        let loss = self
            .energy
            .pretrain_loss(batch)
            .ok_or_else(|| TchError::Kind("a scalar energy has no pre-training loss".into()))?;
        self.opt.zero_grad();
        loss.backward();
        self.opt.step();
        Ok(StepStats { loss: loss.f_double_value(&[])?, e_pos: None, e_neg: None })
    }
}

/// Divergence monitor of the official code, as logging only (MPDR-SPEC §5.21): warns when
/// the mean E(x⁻) jumps above its rolling mean + 6·max(std, 0.1) after 2,000 steps.
#[derive(Debug, Default)]
pub struct DivergenceMonitor {
    window: VecDeque<f64>,
    steps: usize,
    pub warnings: usize,
}

impl DivergenceMonitor {
    pub fn observe(&mut self, e_neg: f64) {
        self.steps += 1;
        if self.steps > 2000 && self.window.len() >= 2 {
            let n = self.window.len() as f64;
            let mean = self.window.iter().sum::<f64>() / n;
            let std = (self.window.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
            if e_neg > mean + 6.0 * std.max(0.1) && e_neg > 0.2 {
                self.warnings += 1;
                tracing::warn!(step = self.steps, e_neg, mean, std, "MPDR may be diverging: E(x-) jumped");
            }
        }
        self.window.push_back(e_neg);
        if self.window.len() > 1000 {
            self.window.pop_front();
        }
    }
}

/// The MPDR objective: negatives from the frozen ensemble, then one Adam step on the energy.
pub struct MpdrObjective<'a> {
    pub energy: &'a dyn Energy,
    pub ensemble: &'a [AutoEncoder],
    pub cfg: MpdrConfig,
    pub opt: nn::Optimizer,
    pub params: Vec<Tensor>,
    pub noise: Box<dyn Noise + 'a>,
    pub monitor: DivergenceMonitor,
    /// θ₀ for `mpdr.anchor`.
    anchor: Option<Vec<Tensor>>,
    /// Weight EMA: decay and the averaged copies (`mpdr_schedule.ema`).
    ema: Option<(f64, Vec<Tensor>)>,
    steps: usize,
    /// `gamma_neg_recon` after `neg_equilibrium` resolved it (first step).
    pub gamma_neg_recon: Option<f64>,
    /// Real negatives (other machine ids' normals) for `other_ids_negatives`.
    real_negatives: Option<Tensor>,
    /// Mel bands per frame of the vectors (0 = unknown: no shifted negatives).
    n_mels: i64,
}

fn copies(params: &[Tensor]) -> Vec<Tensor> {
    params.iter().map(|p| p.detach().copy()).collect()
}

/// Swap the values of two lists of same-shaped tensors in place.
fn swap_values(a: &[Tensor], b: &[Tensor]) {
    tch::no_grad(|| {
        for (x, y) in a.iter().zip(b) {
            let tmp = x.detach().copy();
            x.detach().copy_(y);
            y.detach().copy_(&tmp);
        }
    });
}

impl<'a> MpdrObjective<'a> {
    /// Adam over the trainable variables of `energy_vs` (the ensemble lives elsewhere, frozen).
    pub fn new(
        energy: &'a dyn Energy,
        energy_vs: &nn::VarStore,
        ensemble: &'a [AutoEncoder],
        cfg: MpdrConfig,
        noise: Box<dyn Noise + 'a>,
    ) -> Result<Self, TchError> {
        let opt = nn::Adam::default().build(energy_vs, cfg.lr)?;
        let params = energy_vs.trainable_variables();
        let anchor = (cfg.anchor > 0.0).then(|| copies(&params));
        Ok(MpdrObjective {
            energy,
            ensemble,
            cfg,
            opt,
            noise,
            monitor: Default::default(),
            anchor,
            ema: None,
            steps: 0,
            gamma_neg_recon: None,
            real_negatives: None,
            n_mels: 0,
            params,
        })
    }

    /// Replace `cfg.other_ids_negatives` of every batch's negatives by random rows of `real`.
    pub fn with_real_negatives(mut self, real: Option<Tensor>) -> Self {
        self.real_negatives = real.filter(|r| r.size()[0] > 0 && self.cfg.other_ids_negatives > 0.0);
        self
    }

    /// Tell the objective the frame layout (needed by `shift_negatives`).
    pub fn with_mel_bands(mut self, n_mels: i64) -> Self {
        self.n_mels = n_mels;
        self
    }

    /// Swap shares of the manifold negatives for real ones (other ids) and mel-shifted
    /// positives; a random subset of the manifold negatives is kept (every AE's share on average).
    fn replace_negatives(&mut self, x_neg: Tensor, batch: &Tensor) -> Tensor {
        let n = x_neg.size()[0];
        let count = |share: f64| ((n as f64 * share).round() as i64).clamp(0, n);
        let m_real = if self.real_negatives.is_some() { count(self.cfg.other_ids_negatives) } else { 0 };
        let m_shift = if self.n_mels > 0 { count(self.cfg.shift_negatives).min(n - m_real) } else { 0 };
        if m_real + m_shift == 0 {
            return x_neg;
        }
        let dev = x_neg.device();
        let keep = Tensor::randperm(n, (Kind::Int64, dev)).narrow(0, 0, n - m_real - m_shift);
        let mut parts = vec![x_neg.index_select(0, &keep)];
        if let (Some(real), true) = (&self.real_negatives, m_real > 0) {
            let pick = Tensor::randint(real.size()[0], [m_real], (Kind::Int64, dev));
            parts.push(real.index_select(0, &pick));
        }
        if m_shift > 0 {
            let pick = Tensor::randint(batch.size()[0], [m_shift], (Kind::Int64, dev));
            let src = batch.index_select(0, &pick);
            parts.push(super::mel_shifted(&src, self.n_mels, self.cfg.max_shift, self.noise.as_mut()));
        }
        Tensor::cat(&parts, 0)
    }

    /// Keep an exponential moving average of the weights with this decay (0 < decay < 1);
    /// epoch hooks see it and it is what the stage leaves in place.
    pub fn with_ema(mut self, decay: f64) -> Self {
        if decay > 0.0 && decay < 1.0 {
            self.ema = Some((decay, copies(&self.params)));
        }
        self
    }
}

impl Objective for MpdrObjective<'_> {
    fn step(&mut self, batch: &Tensor) -> Result<StepStats, TchError> {
        if batch.size()[0] < self.ensemble.len() as i64 {
            // Too small to give every manifold a sample (a tiny last batch): skip it.
            return Ok(StepStats { loss: 0.0, e_pos: None, e_neg: None });
        }
        let k = self.cfg.neg_equilibrium;
        if k > 0.0 && self.gamma_neg_recon.is_none() {
            let e0 = tch::no_grad(|| self.energy.energy(batch, false).mean(Kind::Double)).f_double_value(&[])?;
            let g = 1.0 / (2.0 * k * e0.max(1e-12));
            tracing::info!(data_energy = e0, gamma_neg_recon = g, "neg_equilibrium set gamma_neg_recon");
            self.cfg.gamma_neg_recon = g;
            self.gamma_neg_recon = Some(g);
        }
        self.steps += 1;
        if self.cfg.warmup_steps > 0 {
            self.opt.set_lr(self.cfg.lr * (self.steps as f64 / self.cfg.warmup_steps as f64).min(1.0));
        }
        let negs = sample_negatives(self.energy, self.ensemble, batch, &self.cfg, self.noise.as_mut());
        let x_neg = self.replace_negatives(negs.x_neg, batch);
        let (loss, ep, en) = mpdr_loss(self.energy, batch, &x_neg, &self.cfg, &self.params, self.anchor.as_deref());
        self.opt.zero_grad();
        loss.backward();
        self.opt.step();
        if let Some((decay, avg)) = &self.ema {
            tch::no_grad(|| {
                for (a, p) in avg.iter().zip(&self.params) {
                    let mixed = a * *decay + p.detach() * (1.0 - *decay);
                    a.shallow_clone().copy_(&mixed);
                }
            });
        }
        let en = en.f_double_value(&[])?;
        self.monitor.observe(en);
        Ok(StepStats { loss: loss.f_double_value(&[])?, e_pos: Some(ep.f_double_value(&[])?), e_neg: Some(en) })
    }

    fn evaluation_weights(&mut self, _on: bool) {
        if let Some((_, avg)) = &self.ema {
            swap_values(&self.params, avg);
        }
    }

    fn finish(&mut self) {
        if let Some((_, avg)) = self.ema.take() {
            swap_values(&self.params, &avg);
        }
    }
}
