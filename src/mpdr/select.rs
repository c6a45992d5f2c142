//! Label-free checkpoint selection for the MPDR stage.
//!
//! MPDR's test AUC first dips below its pre-trained energy's and only later recovers (issue 4,
//! BENCHMARKS.md), and the appendix-C monitor rises through the dip, so it cannot say when to
//! stop. This module scores each epoch on *pseudo-anomalies* instead: held-out normal vectors
//! with one random band of mel bins raised by `shift` standard deviations in every frame — a
//! new tone or noise band, the commonest shape of a machine fault — against the same held-out
//! normals. The epoch (0 = the pre-trained energy) with the best AUC is kept. No test file and
//! no label is looked at.

use tch::{Kind, Tensor};

use super::error::TrainError;
use crate::nn::Energy;

/// SplitMix64: a tiny deterministic generator, independent of libtorch's global RNG so that
/// making pseudo-anomalies does not shift the training's random stream.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// How pseudo-anomalies are made from standardised, frame-major vectors of `frames` x `n_mels`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PseudoAnomaly {
    pub n_mels: usize,
    pub frames: usize,
    /// Width of the raised band in mel bins.
    pub band: usize,
    /// Raise in standard deviations of the standardised features.
    pub shift: f64,
    /// Clamp after raising (the training data's clamp; 0 = none).
    pub clamp: f64,
}

impl PseudoAnomaly {
    /// One pseudo-anomaly per row of `normal` (N, frames*n_mels), deterministic in `seed`.
    pub fn make(&self, normal: &Tensor, seed: u64) -> Tensor {
        let n = normal.size()[0].max(0) as usize;
        let dim = self.n_mels * self.frames;
        let band = self.band.clamp(1, self.n_mels);
        let mut mask = vec![0f32; n * dim];
        let mut rng = SplitMix64::new(seed);
        for row in mask.chunks_exact_mut(dim) {
            let lo = rng.below(self.n_mels - band + 1);
            for frame in row.chunks_exact_mut(self.n_mels) {
                frame[lo..lo + band].fill(1.0);
            }
        }
        let mask = Tensor::from_slice(&mask).view([n as i64, dim as i64]).to_device(normal.device());
        let raised = normal + mask * self.shift;
        if self.clamp > 0.0 {
            raised.clamp(-self.clamp, self.clamp)
        } else {
            raised
        }
    }
}

/// Energies of the rows of `x` (scaled vectors) under no-grad, 4,096 rows at a time.
pub fn energies(energy: &dyn Energy, x: &Tensor) -> Option<Vec<f64>> {
    tch::no_grad(|| {
        let mut out = Vec::new();
        for chunk in x.split(4096, 0) {
            out.extend(Vec::<f64>::try_from(energy.energy(&chunk, false).to_kind(Kind::Double)).ok()?);
        }
        Some(out)
    })
}

/// AUC of `energy` separating `pseudo` (positives) from `normal`; `None` when the energies are
/// not finite or a side is empty.
pub fn pseudo_anomaly_auc(energy: &dyn Energy, normal: &Tensor, pseudo: &Tensor) -> Option<f64> {
    let (neg, pos) = (energies(energy, normal)?, energies(energy, pseudo)?);
    if neg.is_empty() || pos.is_empty() || neg.iter().chain(&pos).any(|v| !v.is_finite()) {
        return None;
    }
    let labels: Vec<bool> = std::iter::repeat_n(false, neg.len()).chain(std::iter::repeat_n(true, pos.len())).collect();
    let scores: Vec<f64> = neg.into_iter().chain(pos).collect();
    crate::eval::metrics::roc_auc(&labels, &scores).ok()
}

/// Copies of a variable store's tensors, to restore the best epoch after training.
#[derive(Debug)]
pub struct Snapshot(Vec<(String, Tensor)>);

impl Snapshot {
    pub fn take(vs: &tch::nn::VarStore) -> Self {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        Snapshot(vars)
    }

    /// Write the copies back (same names and shapes, as taken from this store).
    pub fn restore(&self, vs: &tch::nn::VarStore) -> Result<(), TrainError> {
        let vars = vs.variables();
        tch::no_grad(|| {
            for (name, saved) in &self.0 {
                let mut v = vars
                    .get(name)
                    .ok_or_else(|| TrainError::Mismatch(format!("variable {name} vanished")))?
                    .shallow_clone();
                v.f_copy_(saved)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ae::{AeSpec, AutoEncoder};
    use crate::nn::Activation;
    use tch::{nn, Device};

    #[test]
    fn pseudo_anomalies_raise_one_band_in_every_frame_and_are_deterministic() {
        let p = PseudoAnomaly { n_mels: 8, frames: 3, band: 2, shift: 1.5, clamp: 0.0 };
        let x = Tensor::zeros([4, 24], (Kind::Float, Device::Cpu));
        let a = p.make(&x, 7);
        assert!(a.equal(&p.make(&x, 7)));
        assert!(!a.equal(&p.make(&x, 8)), "another seed moves the bands");
        let rows: Vec<Vec<f32>> = (0..4).map(|i| Vec::<f32>::try_from(a.get(i)).unwrap()).collect();
        for r in rows {
            let frames: Vec<&[f32]> = r.chunks(8).collect();
            assert!(frames.iter().all(|f| f == &frames[0]), "same band in every frame");
            let raised: Vec<usize> = (0..8).filter(|&m| frames[0][m] == 1.5).collect();
            assert_eq!(raised.len(), 2);
            assert_eq!(raised[1], raised[0] + 1, "contiguous band");
        }
        let clamped = PseudoAnomaly { clamp: 1.0, ..p }.make(&x, 7);
        assert_eq!(clamped.max().double_value(&[]), 1.0);
    }

    #[test]
    fn a_trained_autoencoder_ranks_pseudo_anomalies_above_normals_and_snapshots_restore() {
        crate::device::init_threads();
        tch::manual_seed(3);
        // Normals on a 2-D subspace of 16-D; pseudo-anomalies leave it.
        let basis = Tensor::randn([2, 16], (Kind::Float, Device::Cpu));
        let x = Tensor::randn([512, 2], (Kind::Float, Device::Cpu)).matmul(&basis) * 0.3;
        let vs = nn::VarStore::new(Device::Cpu);
        let mut spec = AeSpec::mlp(16, &[32], 2, &[32], Activation::Relu, Activation::Relu);
        spec.spherical = false;
        let ae = AutoEncoder::new(&vs.root(), &spec);
        let before = Snapshot::take(&vs);
        let mean_energy = |ae: &AutoEncoder| ae.energy(&x, false).mean(Kind::Float).double_value(&[]);
        let e_before = mean_energy(&ae);
        let mut opt = nn::OptimizerConfig::build(nn::Adam::default(), &vs, 1e-2).unwrap();
        for _ in 0..300 {
            opt.backward_step(&ae.energy(&x, true).mean(Kind::Float));
        }
        let p = PseudoAnomaly { n_mels: 4, frames: 4, band: 2, shift: 2.0, clamp: 0.0 };
        let pseudo = p.make(&x, 1);
        let trained = pseudo_anomaly_auc(&ae, &x, &pseudo).unwrap();
        assert!(trained > 0.9, "trained AE separates raised bands: {trained}");
        let after = Snapshot::take(&vs);
        let e_after = mean_energy(&ae);
        assert!(e_after < e_before, "training lowered the energy of the data");
        before.restore(&vs).unwrap();
        assert_eq!(mean_energy(&ae), e_before, "restoring the untrained weights undoes training");
        after.restore(&vs).unwrap();
        assert_eq!(mean_energy(&ae), e_after);
        assert_eq!(pseudo_anomaly_auc(&ae, &x, &pseudo).unwrap(), trained);
    }
}
