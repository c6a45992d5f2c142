//! Why MPDR helps or hurts, measured per epoch (`mpdr train --diagnostics`, issue 12): the
//! energies of training data, held-out normals, negatives (per manifold AE and per σ bucket)
//! and pseudo-anomalies, and how separable the negatives are from data by a trivial *texture
//! probe* — a logistic regression on four statistics of each vector (frame-to-frame and
//! band-to-band roughness, std, mean), 3-fold cross-validated. A probe AUC near 1 means the
//! energy can tell negatives from data by smoothness alone (the shortcut of MPDR-DIP.md).
//!
//! The negatives drawn here use their own generator ([`SplitMixNoise`]), so switching the
//! diagnostics on does not change the training's random stream.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::select::{energies, SplitMix64};
use super::{sample_negatives, MpdrConfig, Noise};
use crate::nn::ae::AutoEncoder;
use crate::nn::Energy;

/// Draws from a [`SplitMix64`] stream (Box–Muller for normals), independent of libtorch's.
#[derive(Debug, Clone)]
pub struct SplitMixNoise(SplitMix64);

impl SplitMixNoise {
    pub fn new(seed: u64) -> Self {
        SplitMixNoise(SplitMix64::new(seed))
    }
    fn unit(&mut self) -> f64 {
        ((self.0.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn tensor(&mut self, shape: &[i64], like: &Tensor, normal: bool) -> Tensor {
        let n: i64 = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                if normal {
                    let (u1, u2) = (self.unit(), self.unit());
                    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
                } else {
                    self.unit() as f32
                }
            })
            .collect();
        Tensor::from_slice(&v).view(shape).to_kind(like.kind()).to_device(like.device())
    }
}

impl Noise for SplitMixNoise {
    fn uniform(&mut self, shape: &[i64], like: &Tensor) -> Tensor {
        self.tensor(shape, like, false)
    }
    fn normal(&mut self, shape: &[i64], like: &Tensor) -> Tensor {
        self.tensor(shape, like, true)
    }
}

/// Four texture statistics per row of frame-major vectors (N, frames·n_mels): mean squared
/// difference of adjacent frames, of adjacent mel bands, the row's std and its mean.
pub fn texture_stats(x: &Tensor, n_mels: i64) -> Vec<[f64; 4]> {
    let n = x.size()[0];
    let frames = x.size()[1] / n_mels.max(1);
    let v = x.detach().to_kind(Kind::Float).to_device(tch::Device::Cpu).view([n, frames, n_mels]);
    let dim1 = |t: Tensor| -> Vec<f64> {
        Vec::<f64>::try_from(t.flatten(1, -1).mean_dim([1i64].as_slice(), false, Kind::Double)).unwrap_or_default()
    };
    let df = if frames > 1 {
        dim1((v.narrow(1, 1, frames - 1) - v.narrow(1, 0, frames - 1)).square())
    } else {
        vec![0.0; n as usize]
    };
    let db = if n_mels > 1 {
        dim1((v.narrow(2, 1, n_mels - 1) - v.narrow(2, 0, n_mels - 1)).square())
    } else {
        vec![0.0; n as usize]
    };
    let flat = v.flatten(1, -1);
    let sd =
        Vec::<f64>::try_from(flat.std_dim([1i64].as_slice(), true, false).to_kind(Kind::Double)).unwrap_or_default();
    let mean = dim1(flat);
    (0..n as usize).map(|i| [df.get(i), db.get(i), sd.get(i), mean.get(i)].map(|v| v.copied().unwrap_or(0.0))).collect()
}

/// Logistic regression on standardised features by gradient descent (full batch).
fn fit_logistic(x: &[[f64; 4]], y: &[bool]) -> ([f64; 4], f64, [f64; 4], [f64; 4]) {
    let n = x.len().max(1) as f64;
    let mut mu = [0.0; 4];
    let mut sd = [0.0; 4];
    for j in 0..4 {
        mu[j] = x.iter().map(|r| r[j]).sum::<f64>() / n;
        sd[j] = (x.iter().map(|r| (r[j] - mu[j]).powi(2)).sum::<f64>() / n).sqrt().max(1e-12);
    }
    let (mut w, mut b) = ([0.0; 4], 0.0);
    for _ in 0..300 {
        let (mut gw, mut gb) = ([0.0; 4], 0.0);
        for (r, &label) in x.iter().zip(y) {
            let z: f64 = (0..4).map(|j| w[j] * (r[j] - mu[j]) / sd[j]).sum::<f64>() + b;
            let err = 1.0 / (1.0 + (-z).exp()) - if label { 1.0 } else { 0.0 };
            for j in 0..4 {
                gw[j] += err * (r[j] - mu[j]) / sd[j];
            }
            gb += err;
        }
        for j in 0..4 {
            w[j] -= 0.5 * gw[j] / n;
        }
        b -= 0.5 * gb / n;
    }
    (w, b, mu, sd)
}

/// 3-fold cross-validated AUC of a logistic regression telling `a` (label 0) from `b`
/// (label 1) by the four texture statistics; `None` when a side has fewer than 3 rows.
pub fn probe_auc(a: &[[f64; 4]], b: &[[f64; 4]]) -> Option<f64> {
    if a.len() < 3 || b.len() < 3 {
        return None;
    }
    let rows: Vec<([f64; 4], bool)> = a.iter().map(|r| (*r, false)).chain(b.iter().map(|r| (*r, true))).collect();
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for fold in 0..3 {
        let (train, test): (Vec<_>, Vec<_>) = rows.iter().enumerate().partition(|(i, _)| i % 3 != fold);
        let (tx, ty): (Vec<[f64; 4]>, Vec<bool>) = train.iter().map(|(_, r)| **r).unzip();
        let (w, bias, mu, sd) = fit_logistic(&tx, &ty);
        for (_, (r, l)) in test {
            scores.push((0..4).map(|j| w[j] * (r[j] - mu[j]) / sd[j]).sum::<f64>() + bias);
            labels.push(*l);
        }
    }
    crate::eval::metrics::roc_auc(&labels, &scores).ok()
}

/// One epoch's diagnostics (epoch 0 = the energy MPDR starts from).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    pub epoch: usize,
    /// Mean E(x) over the epoch's training batches (MPDR epochs only).
    pub e_train: Option<f64>,
    pub e_heldout: f64,
    /// Mean E(x⁻) of the negatives of each manifold AE (in ensemble order).
    pub e_neg_per_ae: Vec<f64>,
    /// (σ_lo, σ_hi, mean E(x⁻)) for three equal σ buckets.
    pub e_neg_by_sigma: Vec<(f64, f64, f64)>,
    /// Mean energy of the chains' starts x₀⁻.
    pub e_init: f64,
    /// Texture probe: held-out normals vs negatives.
    pub probe_auc: Option<f64>,
    /// Texture probe: held-out normals vs chain starts.
    pub probe_auc_init: Option<f64>,
    /// Mean E of the pseudo-anomalies, when made.
    pub e_pseudo: Option<f64>,
    /// Mean E of the other machine ids' normals, when given.
    pub e_other_ids: Option<f64>,
}

impl Diagnostics {
    /// Mean E(x⁻) over all negatives.
    pub fn e_neg(&self) -> f64 {
        self.e_neg_per_ae.iter().sum::<f64>() / self.e_neg_per_ae.len().max(1) as f64
    }
}

fn mean_energy(energy: &dyn Energy, x: &Tensor) -> f64 {
    let e = energies(energy, x).unwrap_or_default();
    e.iter().sum::<f64>() / e.len().max(1) as f64
}

/// Everything to diagnose an epoch with (held-out normals at most `max_rows` rows are used).
pub struct DiagnoseInput<'a> {
    pub heldout: &'a Tensor,
    pub pseudo: Option<&'a Tensor>,
    pub other_ids: Option<&'a Tensor>,
    pub n_mels: i64,
    pub max_rows: i64,
    pub seed: u64,
}

/// Diagnose the current `energy` (call with the weights to report in place).
pub fn diagnose(
    energy: &dyn Energy,
    ensemble: &[AutoEncoder],
    cfg: &MpdrConfig,
    input: &DiagnoseInput<'_>,
    epoch: usize,
    e_train: Option<f64>,
) -> Diagnostics {
    let h = input.heldout;
    let rows = h.size()[0].min(input.max_rows);
    // A fixed, evenly spread subset, the same every epoch.
    let idx =
        Tensor::linspace(0.0, (h.size()[0] - 1).max(0) as f64, rows, (Kind::Float, h.device())).to_kind(Kind::Int64);
    let sub = h.index_select(0, &idx);
    let k = ensemble.len().max(1) as i64;
    let usable = (rows / k) * k;
    let mut d = Diagnostics {
        epoch,
        e_train,
        e_heldout: mean_energy(energy, h),
        e_pseudo: input.pseudo.map(|p| mean_energy(energy, p)),
        e_other_ids: input.other_ids.map(|o| mean_energy(energy, o)),
        ..Default::default()
    };
    if usable == 0 || ensemble.is_empty() {
        return d;
    }
    let x = sub.narrow(0, 0, usable);
    let mut noise = SplitMixNoise::new(input.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9));
    let negs = sample_negatives(energy, ensemble, &x, cfg, &mut noise);
    let e_neg: Vec<f64> = tch::no_grad(|| {
        Vec::<f64>::try_from(energy.energy(&negs.x_neg, false).to_kind(Kind::Double)).unwrap_or_default()
    });
    let per = (usable / k) as usize;
    d.e_neg_per_ae = e_neg.chunks(per.max(1)).map(|c| c.iter().sum::<f64>() / c.len().max(1) as f64).collect();
    let sigmas: Vec<f64> = Vec::<f64>::try_from(negs.sigma.to_kind(Kind::Double)).unwrap_or_default();
    let width = (cfg.sigma_max - cfg.sigma_min) / 3.0;
    for b in 0..3 {
        let lo = cfg.sigma_min + width * b as f64;
        let hi = lo + width;
        let picked: Vec<f64> =
            sigmas.iter().zip(&e_neg).filter(|(s, _)| **s >= lo && (**s < hi || b == 2)).map(|(_, e)| *e).collect();
        if !picked.is_empty() {
            d.e_neg_by_sigma.push((lo, hi, picked.iter().sum::<f64>() / picked.len() as f64));
        }
    }
    d.e_init = mean_energy(energy, &negs.x_init);
    let data = texture_stats(&x, input.n_mels);
    d.probe_auc = probe_auc(&data, &texture_stats(&negs.x_neg, input.n_mels));
    d.probe_auc_init = probe_auc(&data, &texture_stats(&negs.x_init, input.n_mels));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_separates_smooth_from_rough_vectors_and_not_a_set_from_itself() {
        tch::manual_seed(5);
        let rough = Tensor::randn([300, 40], (Kind::Float, tch::Device::Cpu));
        let smooth = rough.view([300, 5, 8]).mean_dim([1i64].as_slice(), true, Kind::Float).expand([300, 5, 8], false);
        let smooth = smooth.reshape([300, 40]);
        let (r, s) = (texture_stats(&rough, 8), texture_stats(&smooth, 8));
        assert!(s[0][0] < 1e-9 && r[0][0] > 0.1, "frame roughness: smooth {} rough {}", s[0][0], r[0][0]);
        let auc = probe_auc(&r, &s).unwrap();
        assert!(auc > 0.95, "smooth vs rough: {auc}");
        let (a, b) = r.split_at(150);
        let same = probe_auc(a, b).unwrap();
        assert!((0.3..0.7).contains(&same), "one distribution split in two: {same}");
        assert!(probe_auc(&r[..2], &s).is_none());
    }

    #[test]
    fn splitmix_noise_is_deterministic_and_roughly_standard_normal() {
        let like = Tensor::zeros([1], (Kind::Float, tch::Device::Cpu));
        let a = SplitMixNoise::new(3).normal(&[20000], &like);
        assert!(a.equal(&SplitMixNoise::new(3).normal(&[20000], &like)));
        let (m, s) = (a.mean(Kind::Double).double_value(&[]), a.std(true).double_value(&[]));
        assert!(m.abs() < 0.03 && (s - 1.0).abs() < 0.03, "mean {m} std {s}");
        let u = SplitMixNoise::new(3).uniform(&[1000], &like);
        assert!(u.min().double_value(&[]) >= 0.0 && u.max().double_value(&[]) < 1.0);
    }
}
