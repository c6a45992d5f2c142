//! Autoencoder: `x -> enc -> (Π onto the sphere) -> dec`. Its energy is the reconstruction
//! error (mean or sum of squares over a sample's dimensions), optionally times a learnable
//! scale s²; its own regulariser is `l2_enc · Σ‖encoder θ‖²` (biases included, as the MPDR code).

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::{l2_of, Energy, EnergyKind, Net, NetSpec, Reduction};

/// Π(v) = v / (‖v‖ + 1e-6), row-wise over the last dimension.
pub fn project_sphere(v: &Tensor) -> Tensor {
    v / (v.norm_scalaropt_dim(2.0, [-1i64].as_slice(), true) + 1e-6)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AeSpec {
    pub encoder: NetSpec,
    pub decoder: NetSpec,
    /// Latent dimension (encoder output, decoder input).
    pub latent: i64,
    /// Project the code onto the unit sphere (the MPDR default).
    #[serde(default = "yes")]
    pub spherical: bool,
    #[serde(default)]
    pub reduction: Reduction,
    /// L2 coefficient on encoder parameters.
    #[serde(default)]
    pub l2_enc: f64,
    /// Multiply the energy by a learnable s² (`learn_out_scale`).
    #[serde(default)]
    pub out_scale: bool,
}

fn yes() -> bool {
    true
}

impl AeSpec {
    /// FC autoencoder `input -> enc_hidden -> latent -> dec_hidden -> input`.
    pub fn mlp(
        input: i64,
        enc_hidden: &[i64],
        latent: i64,
        dec_hidden: &[i64],
        enc_act: super::Activation,
        dec_act: super::Activation,
    ) -> Self {
        AeSpec {
            encoder: NetSpec::Mlp(super::MlpSpec::new(input, enc_hidden, latent, enc_act)),
            decoder: NetSpec::Mlp(super::MlpSpec::new(latent, dec_hidden, input, dec_act)),
            latent,
            spherical: true,
            reduction: Reduction::Mean,
            l2_enc: 0.0,
            out_scale: false,
        }
    }

    pub fn input_dim(&self) -> i64 {
        match &self.encoder {
            NetSpec::Mlp(m) => m.input,
            NetSpec::ConvEncoder(c) => c.in_channels * c.size * c.size,
            NetSpec::ConvDecoder(_) => 0,
        }
    }
}

/// A built autoencoder. Variables: `enc.*`, `dec.*`, `out_scale`.
#[derive(Debug)]
pub struct AutoEncoder {
    pub spec: AeSpec,
    enc: Net,
    dec: Net,
    enc_vars: Vec<Tensor>,
    out_scale: Option<Tensor>,
}

impl AutoEncoder {
    pub fn new(p: &nn::Path, spec: &AeSpec) -> Self {
        let enc = Net::new(&(p / "enc"), &spec.encoder);
        let dec = Net::new(&(p / "dec"), &spec.decoder);
        let enc_vars = enc.params();
        let out_scale = spec.out_scale.then(|| p.var("out_scale", &[], nn::Init::Const(1.0)));
        AutoEncoder { spec: spec.clone(), enc, dec, enc_vars, out_scale }
    }

    /// The code: encoder output, projected onto the sphere when spherical (eval mode).
    pub fn encode(&self, x: &Tensor) -> Tensor {
        self.encode_train(x, false)
    }

    /// As [`encode`](Self::encode); `train` advances spectral-norm power iterations.
    pub fn encode_train(&self, x: &Tensor, train: bool) -> Tensor {
        let z = self.enc.forward(x, train);
        if self.spec.spherical {
            project_sphere(&z)
        } else {
            z
        }
    }

    pub fn decode(&self, z: &Tensor) -> Tensor {
        self.dec.forward(z, false)
    }

    /// Squared error per element, shape of x.
    fn sq_error(&self, x: &Tensor, train: bool) -> Tensor {
        let r = self.dec.forward(&self.encode_train(x, train), train);
        (x - r).square()
    }

    /// Reconstruction error per sample (B,), before the output scale.
    pub fn recon_error(&self, x: &Tensor, train: bool) -> Tensor {
        let e = self.sq_error(x, train).flatten(1, -1);
        match self.spec.reduction {
            Reduction::Mean => e.mean_dim([1i64].as_slice(), false, e.kind()),
            Reduction::Sum => e.sum_dim_intlist([1i64].as_slice(), false, e.kind()),
        }
    }

    pub fn energy(&self, x: &Tensor, train: bool) -> Tensor {
        let e = self.recon_error(x, train);
        match &self.out_scale {
            Some(s) => e * s.square(),
            None => e,
        }
    }

    pub fn reg(&self) -> Tensor {
        l2_of(&self.enc_vars) * self.spec.l2_enc
    }

    pub fn per_dim_error(&self, x: &Tensor) -> Option<Tensor> {
        Some(self.sq_error(x, false).flatten(1, -1))
    }
}

impl Energy for AutoEncoder {
    fn energy(&self, x: &Tensor, train: bool) -> Tensor {
        AutoEncoder::energy(self, x, train)
    }
    fn reg(&self) -> Tensor {
        AutoEncoder::reg(self)
    }
    fn kind(&self) -> EnergyKind {
        EnergyKind::Recon
    }
    fn per_dim_error(&self, x: &Tensor) -> Option<Tensor> {
        AutoEncoder::per_dim_error(self, x)
    }
    fn energy_explained(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>), tch::TchError> {
        let sq = self.sq_error(x, false).f_flatten(1, -1)?;
        let e = match self.spec.reduction {
            Reduction::Mean => sq.f_mean_dim([1i64].as_slice(), false, sq.kind())?,
            Reduction::Sum => sq.f_sum_dim_intlist([1i64].as_slice(), false, sq.kind())?,
        };
        let e = match &self.out_scale {
            Some(s) => e.f_mul(&s.f_square()?)?,
            None => e,
        };
        Ok((e, Some(sq)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Activation;
    use tch::{Device, Kind};

    #[test]
    fn spherical_codes_have_unit_norm_and_energy_is_mean_squared_error() {
        crate::device::init_threads();
        let vs = nn::VarStore::new(Device::Cpu);
        let ae = AutoEncoder::new(
            &(vs.root() / "m"),
            &AeSpec::mlp(20, &[16], 4, &[16], Activation::Relu, Activation::LeakyRelu),
        );
        let x = Tensor::randn([5, 20], (Kind::Float, Device::Cpu));
        let z = ae.encode(&x);
        let norms = z.norm_scalaropt_dim(2.0, [1i64].as_slice(), false);
        // Unit norm up to the 1e-6 guard: ‖v‖/(‖v‖+1e-6), which stays below 1e-5 away from 1
        // only for raw codes shorter than 0.1 — random draws make those, so compare exactly.
        let raw = ae.enc.forward(&x, false).norm_scalaropt_dim(2.0, [1i64].as_slice(), false);
        let want_norms = &raw / (&raw + 1e-6);
        assert!((&norms - want_norms).abs().max().double_value(&[]) < 1e-6);
        assert!(raw.min().double_value(&[]) > 1e-3, "random codes are not degenerate");
        let want = (&x - ae.decode(&z)).square().mean_dim([1i64].as_slice(), false, Kind::Float);
        assert!((ae.energy(&x, false) - want).abs().max().double_value(&[]) < 1e-6);
        assert_eq!(ae.enc_vars.len(), 4, "encoder weights and biases of 2 layers");
        let (e, dims) = Energy::energy_explained(&ae, &x).unwrap();
        assert!((e - ae.energy(&x, false)).abs().max().double_value(&[]) < 1e-6);
        assert!((dims.unwrap() - (&x - ae.decode(&z)).square()).abs().max().double_value(&[]) < 1e-6);
    }

    #[test]
    fn reg_is_l2_of_encoder_parameters_only() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut spec = AeSpec::mlp(6, &[], 3, &[], Activation::Relu, Activation::Relu);
        spec.l2_enc = 0.5;
        let ae = AutoEncoder::new(&vs.root(), &spec);
        let vars = vs.variables();
        let want: Tensor =
            0.5 * (vars["enc.0.weight"].square().sum(Kind::Float) + vars["enc.0.bias"].square().sum(Kind::Float));
        assert!((ae.reg() - want).abs().double_value(&[]) < 1e-6);
    }
}
