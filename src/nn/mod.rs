//! Neural networks on tch — one definition each, used by training and serving alike.
//!
//! * [`Mlp`]: fully connected stack (PyTorch-default init, optional spectral norm, optional
//!   learnable output scale).
//! * [`conv`]: the MNIST encoder/decoder of the paper's Table 8.
//! * [`ae::AutoEncoder`]: encoder + decoder, optional spherical latent, reconstruction energy.
//! * [`idnn::Idnn`]: interpolation DNN (context frames -> middle frame) energy.
//! * [`scalar::ScalarEnergy`]: a network with one output (MPDR-S).
//! * [`gaussian::Gaussian`], [`gmm::Gmm`]: density energies of profile vectors, fitted in
//!   closed form / by EM in f64 (not by gradient).
//!
//! [`EnergySpec`] describes any of them (it is what a bundle manifest stores); [`EnergyNet`]
//! is the built network behind the [`Energy`] trait that MPDR, scoring and benchmarks use.
//!
//! Variable names (`enc.0.weight`, ...) are stable: bundles and test fixtures rely on them.

pub mod ae;
pub mod conv;
pub mod gauss_residual;
pub mod gaussian;
pub mod gmm;
pub mod idnn;
pub mod scalar;

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Hidden-layer activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    Relu,
    /// LeakyReLU with negative slope 0.2 (the MPDR code's `leakyrelu`).
    LeakyRelu,
    Elu,
    Tanh,
    Sigmoid,
    Softplus,
    Linear,
}

impl Activation {
    pub fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Relu => x.relu(),
            // One fused kernel (PReLU with a constant slope) instead of three element-wise ops.
            Activation::LeakyRelu => x.prelu(&Tensor::from_slice(&[0.2f32]).to_kind(x.kind()).to_device(x.device())),
            Activation::Elu => x.elu(),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Softplus => x.softplus(),
            Activation::Linear => x.shallow_clone(),
        }
    }
}

/// PyTorch's default init for Linear/Conv: U(±1/√fan_in) for weights and biases.
pub(crate) fn torch_default_init(fan_in: i64) -> nn::Init {
    let b = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform { lo: -b, up: b }
}

/// Fully connected network: `input -> hidden... -> output`, activation after each hidden layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpSpec {
    pub input: i64,
    pub hidden: Vec<i64>,
    pub output: i64,
    pub activation: Activation,
    #[serde(default = "linear_act")]
    pub out_activation: Activation,
    /// Spectral normalisation on all but the last layer.
    #[serde(default)]
    pub spectral_norm: bool,
}

fn linear_act() -> Activation {
    Activation::Linear
}

impl MlpSpec {
    pub fn new(input: i64, hidden: &[i64], output: i64, activation: Activation) -> Self {
        MlpSpec {
            input,
            hidden: hidden.to_vec(),
            output,
            activation,
            out_activation: Activation::Linear,
            spectral_norm: false,
        }
    }
}

/// Spectral normalisation state (`torch.nn.utils.spectral_norm`): the left singular vector
/// estimate `u` (a non-trainable variable `sn_u`, saved with the weights), advanced by one
/// power iteration per training forward. The weight is viewed as (rows, -1).
#[derive(Debug)]
pub(crate) struct SpectralNorm {
    u: Tensor,
}

impl SpectralNorm {
    pub(crate) fn new(p: &nn::Path, rows: i64) -> Self {
        let u = p.zeros_no_train("sn_u", &[rows]);
        let mut h = u.shallow_clone();
        tch::no_grad(|| {
            let r = Tensor::randn([rows], (u.kind(), u.device()));
            h.copy_(&(&r / (r.norm() + 1e-12)));
        });
        SpectralNorm { u }
    }

    /// W / σ(W); σ = uᵀ W v with v = normalise(Wᵀ u). `u` is updated first when `train`, and
    /// copied before use, so the graph never sees a tensor that a later forward modifies.
    pub(crate) fn apply(&self, w: &Tensor, train: bool) -> Tensor {
        let rows = w.size()[0];
        let (u_now, v) = tch::no_grad(|| {
            let wm = w.detach().reshape([rows, -1]);
            let v = wm.transpose(0, 1).mv(&self.u);
            let v = &v / (v.norm() + 1e-12);
            if train {
                let nu = wm.mv(&v);
                let mut h = self.u.shallow_clone();
                h.copy_(&(&nu / (nu.norm() + 1e-12)));
            }
            (self.u.copy(), v)
        });
        let sigma = u_now.dot(&w.reshape([rows, -1]).mv(&v));
        w / sigma
    }
}

/// One linear layer, optionally spectrally normalised.
#[derive(Debug)]
struct Dense {
    lin: nn::Linear,
    sn: Option<SpectralNorm>,
}

impl Dense {
    fn new(p: nn::Path, input: i64, output: i64, spectral_norm: bool) -> Self {
        let init = torch_default_init(input);
        let lin = nn::linear(&p, input, output, nn::LinearConfig { ws_init: init, bs_init: Some(init), bias: true });
        let sn = spectral_norm.then(|| SpectralNorm::new(&p, output));
        Dense { lin, sn }
    }

    fn params(&self) -> Vec<Tensor> {
        let mut v = vec![self.lin.ws.shallow_clone()];
        v.extend(self.lin.bs.as_ref().map(|b| b.shallow_clone()));
        v
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let w = match &self.sn {
            None => self.lin.ws.shallow_clone(),
            Some(sn) => sn.apply(&self.lin.ws, train),
        };
        x.linear(&w, self.lin.bs.as_ref())
    }
}

/// A built [`MlpSpec`]. Variables: `{i}.weight`, `{i}.bias` (and `{i}.sn_u`).
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<Dense>,
    activation: Activation,
    out_activation: Activation,
}

impl Mlp {
    pub fn new(p: &nn::Path, spec: &MlpSpec) -> Self {
        let mut sizes = vec![spec.input];
        sizes.extend(&spec.hidden);
        sizes.push(spec.output);
        let n = sizes.len() - 1;
        let layers =
            (0..n).map(|i| Dense::new(p / i, sizes[i], sizes[i + 1], spec.spectral_norm && i + 1 < n)).collect();
        Mlp { layers, activation: spec.activation, out_activation: spec.out_activation }
    }

    /// Trainable parameters (weights and biases), in layer order.
    pub fn params(&self) -> Vec<Tensor> {
        self.layers.iter().flat_map(Dense::params).collect()
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h, train);
            h = if i < last { self.activation.apply(&h) } else { self.out_activation.apply(&h) };
        }
        h
    }
}

/// Any network usable as an encoder or decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum NetSpec {
    Mlp(MlpSpec),
    ConvEncoder(conv::ConvEncoderSpec),
    ConvDecoder(conv::ConvDecoderSpec),
}

/// A built [`NetSpec`].
#[derive(Debug)]
pub enum Net {
    Mlp(Mlp),
    ConvEncoder(conv::ConvEncoder),
    ConvDecoder(conv::ConvDecoder),
}

impl Net {
    pub fn new(p: &nn::Path, spec: &NetSpec) -> Self {
        match spec {
            NetSpec::Mlp(s) => Net::Mlp(Mlp::new(p, s)),
            NetSpec::ConvEncoder(s) => Net::ConvEncoder(conv::ConvEncoder::new(p, s)),
            NetSpec::ConvDecoder(s) => Net::ConvDecoder(conv::ConvDecoder::new(p, s)),
        }
    }

    pub fn params(&self) -> Vec<Tensor> {
        match self {
            Net::Mlp(m) => m.params(),
            Net::ConvEncoder(m) => m.params(),
            Net::ConvDecoder(m) => m.params(),
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Net::Mlp(m) => m.forward(x, train),
            Net::ConvEncoder(m) => m.forward(x, train),
            Net::ConvDecoder(m) => m.forward(x),
        }
    }
}

/// How a reconstruction error is reduced over a sample's dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduction {
    /// Mean over dimensions (the MPDR code's `l2`; DCASE scores).
    #[default]
    Mean,
    /// Sum over dimensions (`l2_sum`; the paper's ‖x − g(x)‖²).
    Sum,
}

/// Whether an energy is a reconstruction error (regularised with E(x⁻)²) or a free scalar
/// (regularised with E(x)² + E(x⁻)²).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnergyKind {
    Recon,
    Scalar,
}

/// The energy interface shared by MPDR training, scoring and benchmarks.
pub trait Energy {
    /// Energy per sample, shape (B,). `train` advances spectral-norm power iterations.
    fn energy(&self, x: &Tensor, train: bool) -> Tensor;
    /// The network's own regulariser (e.g. encoder L2), a scalar tensor.
    fn reg(&self) -> Tensor;
    fn kind(&self) -> EnergyKind;
    /// Loss that pre-trains this energy on its own (reconstruction / prediction + reg).
    fn pretrain_loss(&self, x: &Tensor) -> Option<Tensor> {
        match self.kind() {
            EnergyKind::Recon => Some(self.energy(x, true).mean(Kind::Float) + self.reg()),
            EnergyKind::Scalar => None,
        }
    }
    /// Per-dimension squared error (B, D_out), for explanations; `None` for scalar energies.
    fn per_dim_error(&self, _x: &Tensor) -> Option<Tensor> {
        None
    }
    /// Energy (B,) and per-dimension error (B, D_out) from one forward pass (eval mode): what
    /// the daemon scores, so explanations cost nothing extra. The reductions are fallible; the
    /// network's forward pass is tch's `Module` (the scorer's `catch_unwind` covers it).
    fn energy_explained(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>), tch::TchError> {
        Ok((self.energy(x, false), None))
    }
}

/// Sum of squares of the given variables (a 0 scalar when there are none).
pub(crate) fn l2_of(vars: &[Tensor]) -> Tensor {
    match vars.split_first() {
        None => Tensor::zeros([], tch::kind::FLOAT_CPU),
        Some((first, rest)) => {
            rest.iter().fold(first.square().sum(first.kind()), |acc, v| acc + v.square().sum(v.kind()))
        }
    }
}

/// Every energy the product knows, as stored in a bundle manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EnergySpec {
    Ae(ae::AeSpec),
    Idnn(idnn::IdnnSpec),
    Scalar(scalar::ScalarSpec),
    Gaussian(gaussian::GaussianSpec),
    Gmm(gmm::GmmSpec),
    GaussResidual(gauss_residual::GaussResidualSpec),
}

/// A built energy network.
#[derive(Debug)]
pub enum EnergyNet {
    Ae(ae::AutoEncoder),
    Idnn(idnn::Idnn),
    Scalar(scalar::ScalarEnergy),
    Gaussian(gaussian::Gaussian),
    Gmm(gmm::Gmm),
    GaussResidual(gauss_residual::GaussResidual),
}

impl EnergySpec {
    /// Build under `p` (variables are created in `p`'s VarStore).
    pub fn build(&self, p: &nn::Path) -> EnergyNet {
        match self {
            EnergySpec::Ae(s) => EnergyNet::Ae(ae::AutoEncoder::new(p, s)),
            EnergySpec::Idnn(s) => EnergyNet::Idnn(idnn::Idnn::new(p, s)),
            EnergySpec::Scalar(s) => EnergyNet::Scalar(scalar::ScalarEnergy::new(p, s)),
            EnergySpec::Gaussian(s) => EnergyNet::Gaussian(gaussian::Gaussian::new(p, s)),
            EnergySpec::Gmm(s) => EnergyNet::Gmm(gmm::Gmm::new(p, s)),
            EnergySpec::GaussResidual(s) => EnergyNet::GaussResidual(gauss_residual::GaussResidual::new(p, s)),
        }
    }

    /// A density fitted in f64 (its variables are kept and scored in double precision).
    pub fn is_density(&self) -> bool {
        matches!(self, EnergySpec::Gaussian(_) | EnergySpec::Gmm(_))
    }

    /// Input dimension of the vectors this energy scores.
    pub fn input_dim(&self) -> i64 {
        match self {
            EnergySpec::Ae(s) => s.input_dim(),
            EnergySpec::Idnn(s) => s.n_mels * s.frames,
            EnergySpec::Scalar(s) => s.input_dim(),
            EnergySpec::Gaussian(s) => s.dim,
            EnergySpec::Gmm(s) => s.dim,
            EnergySpec::GaussResidual(s) => s.gaussian.dim,
        }
    }
}

impl Energy for EnergyNet {
    fn energy(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            EnergyNet::Ae(m) => m.energy(x, train),
            EnergyNet::Idnn(m) => m.energy(x, train),
            EnergyNet::Scalar(m) => m.energy(x, train),
            EnergyNet::Gaussian(m) => m.energy(x, train),
            EnergyNet::Gmm(m) => m.energy(x, train),
            EnergyNet::GaussResidual(m) => m.energy(x, train),
        }
    }
    fn reg(&self) -> Tensor {
        match self {
            EnergyNet::Ae(m) => m.reg(),
            EnergyNet::Idnn(m) => m.reg(),
            EnergyNet::Scalar(m) => m.reg(),
            EnergyNet::Gaussian(m) => m.reg(),
            EnergyNet::Gmm(m) => m.reg(),
            EnergyNet::GaussResidual(m) => m.reg(),
        }
    }
    fn kind(&self) -> EnergyKind {
        match self {
            EnergyNet::Scalar(_) | EnergyNet::Gaussian(_) | EnergyNet::Gmm(_) | EnergyNet::GaussResidual(_) => {
                EnergyKind::Scalar
            }
            _ => EnergyKind::Recon,
        }
    }
    fn per_dim_error(&self, x: &Tensor) -> Option<Tensor> {
        match self {
            EnergyNet::Ae(m) => m.per_dim_error(x),
            EnergyNet::Idnn(m) => m.per_dim_error(x),
            EnergyNet::Scalar(_) | EnergyNet::Gaussian(_) | EnergyNet::Gmm(_) | EnergyNet::GaussResidual(_) => None,
        }
    }
    fn energy_explained(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>), tch::TchError> {
        match self {
            EnergyNet::Ae(m) => m.energy_explained(x),
            EnergyNet::Idnn(m) => m.energy_explained(x),
            EnergyNet::Scalar(m) => m.energy_explained(x),
            EnergyNet::Gaussian(m) => m.energy_explained(x),
            EnergyNet::Gmm(m) => m.energy_explained(x),
            EnergyNet::GaussResidual(m) => m.energy_explained(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn mlp_shapes_and_default_init_bounds() {
        crate::device::init_threads();
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Mlp::new(&vs.root(), &MlpSpec::new(640, &[128, 128], 8, Activation::LeakyRelu));
        let y = m.forward(&Tensor::randn([4, 640], (Kind::Float, Device::Cpu)), false);
        assert_eq!(y.size(), vec![4, 8]);
        let vars = vs.variables();
        let w0 = &vars["0.weight"];
        assert_eq!(w0.size(), vec![128, 640]);
        let bound = 1.0 / 640f64.sqrt();
        assert!(w0.abs().max().double_value(&[]) <= bound + 1e-7);
        assert!(vars.contains_key("2.bias"));
    }

    #[test]
    fn leaky_relu_has_slope_two_tenths() {
        let x = Tensor::from_slice(&[-1.0f32, 0.0, 2.0]);
        let y = Activation::LeakyRelu.apply(&x);
        assert_eq!(Vec::<f32>::try_from(&y).unwrap(), vec![-0.2, 0.0, 2.0]);
    }

    #[test]
    fn spectral_norm_bounds_the_largest_singular_value() {
        crate::device::init_threads();
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut spec = MlpSpec::new(16, &[32], 1, Activation::Linear);
        spec.spectral_norm = true;
        let m = Mlp::new(&vs.root(), &spec);
        tch::no_grad(|| {
            let mut h = vs.variables()["0.weight"].shallow_clone();
            h.copy_(&(Tensor::randn([32, 16], (Kind::Float, Device::Cpu)) * 5.0));
        });
        let x = Tensor::randn([8, 16], (Kind::Float, Device::Cpu));
        for _ in 0..30 {
            let _ = m.forward(&x, true);
        }
        // Layer 0 alone (linear activation, so the first layer's map is W/σ x + b).
        let l0 = &m.layers[0];
        let w_sn = l0.forward(&Tensor::eye(16, (Kind::Float, Device::Cpu)), false) - l0.lin.bs.as_ref().unwrap();
        // Largest singular value by a long power iteration on W^T W.
        let wt = w_sn.transpose(0, 1); // (out, in) after the identity trick
        let mut v = Tensor::ones([16], (Kind::Float, Device::Cpu));
        for _ in 0..500 {
            let nv = wt.transpose(0, 1).mv(&wt.mv(&v));
            v = &nv / nv.norm();
        }
        let s = wt.mv(&v).norm().double_value(&[]);
        assert!((s - 1.0).abs() < 1e-3, "largest singular value {s}");
    }
}
