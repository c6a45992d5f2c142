//! Interpolation DNN: predicts the middle frame of a stacked vector from the other frames.
//! Energy = mean over the target's dimensions of the squared prediction error (MPDR §2.1).

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::{l2_of, Activation, Energy, EnergyKind, Mlp, MlpSpec};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdnnSpec {
    pub n_mels: i64,
    pub frames: i64,
    pub context_hidden: Vec<i64>,
    pub latent: i64,
    pub decoder_hidden: Vec<i64>,
    pub activation: Activation,
    /// L2 coefficient on the context network's parameters.
    #[serde(default)]
    pub l2_context: f64,
}

impl IdnnSpec {
    /// The MPDR code's DCASE IDNN: 512 -> 128x4 -> 32, 32 -> 128x4 -> 128, LeakyReLU.
    pub fn dcase(n_mels: i64, frames: i64) -> Self {
        IdnnSpec {
            n_mels,
            frames,
            context_hidden: vec![128; 4],
            latent: 32,
            decoder_hidden: vec![128; 4],
            activation: Activation::LeakyRelu,
            l2_context: 0.0,
        }
    }
}

/// Variables: `ctx.*`, `dec.*`.
#[derive(Debug)]
pub struct Idnn {
    pub spec: IdnnSpec,
    ctx: Mlp,
    dec: Mlp,
    ctx_vars: Vec<Tensor>,
}

impl Idnn {
    pub fn new(p: &nn::Path, s: &IdnnSpec) -> Self {
        let ctx_in = s.n_mels * (s.frames - 1);
        let ctx = Mlp::new(&(p / "ctx"), &MlpSpec::new(ctx_in, &s.context_hidden, s.latent, s.activation));
        let dec = Mlp::new(&(p / "dec"), &MlpSpec::new(s.latent, &s.decoder_hidden, s.n_mels, s.activation));
        let ctx_vars = ctx.params();
        Idnn { spec: s.clone(), ctx, dec, ctx_vars }
    }

    /// (context (B, n_mels·(frames-1)), target (B, n_mels)) of stacked vectors x.
    pub fn split(&self, x: &Tensor) -> (Tensor, Tensor) {
        let n = self.spec.n_mels;
        let mid = self.spec.frames / 2;
        let total = n * self.spec.frames;
        let ctx = Tensor::cat(&[x.narrow(1, 0, mid * n), x.narrow(1, (mid + 1) * n, total - (mid + 1) * n)], 1);
        (ctx, x.narrow(1, mid * n, n))
    }

    fn sq_error(&self, x: &Tensor, train: bool) -> Tensor {
        let (ctx, target) = self.split(x);
        (target - self.dec.forward(&self.ctx.forward(&ctx, train), train)).square()
    }

    pub fn energy(&self, x: &Tensor, train: bool) -> Tensor {
        let e = self.sq_error(x, train);
        e.mean_dim([1i64].as_slice(), false, e.kind())
    }

    pub fn reg(&self) -> Tensor {
        l2_of(&self.ctx_vars) * self.spec.l2_context
    }
}

impl Energy for Idnn {
    fn energy(&self, x: &Tensor, train: bool) -> Tensor {
        Idnn::energy(self, x, train)
    }
    fn reg(&self) -> Tensor {
        Idnn::reg(self)
    }
    fn kind(&self) -> EnergyKind {
        EnergyKind::Recon
    }
    fn per_dim_error(&self, x: &Tensor) -> Option<Tensor> {
        Some(self.sq_error(x, false))
    }
    fn energy_explained(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>), tch::TchError> {
        let sq = self.sq_error(x, false);
        Ok((sq.f_mean_dim([1i64].as_slice(), false, sq.kind())?, Some(sq)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn context_is_the_outer_frames_and_target_the_middle_one() {
        let vs = nn::VarStore::new(Device::Cpu);
        let idnn = Idnn::new(&vs.root(), &IdnnSpec::dcase(128, 5));
        let x = Tensor::arange(640, (Kind::Float, Device::Cpu)).reshape([1, 640]);
        let (c, t) = idnn.split(&x);
        assert_eq!(c.size(), vec![1, 512]);
        assert_eq!(t.double_value(&[0, 0]), 256.0);
        assert_eq!(c.double_value(&[0, 255]), 255.0);
        assert_eq!(c.double_value(&[0, 256]), 384.0);
        assert_eq!(idnn.energy(&x, false).size(), vec![1]);
    }
}
