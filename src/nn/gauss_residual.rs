//! An energy that starts from the Gaussian (issue 23): E(z) = ‖(z − μ) U‖² / D + c(z), the
//! profile Gaussian's squared Mahalanobis distance per dimension (fitted in closed form, then
//! frozen) plus a learnt correction c, an MLP with one output whose last layer starts at zero —
//! so before MPDR the energy *is* the Gaussian, and MPDR (`mpdr-gaussian`) can only refine a
//! strong energy; the product rule ships the Gaussian (epoch 0) when no MPDR epoch beats it.
//!
//! Variables: `gauss.mean`, `gauss.prec_chol` (not trained), `corr.*` (the MLP).
//! Explanation per dimension: (z − μ)ᵢ (Σ⁻¹ (z − μ))ᵢ / D, plus c(z) / D: they sum to E.

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use super::gaussian::{Gaussian, GaussianSpec};
use super::{l2_of, Energy, EnergyKind, Mlp, MlpSpec};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussResidualSpec {
    pub gaussian: GaussianSpec,
    /// The correction: `gaussian.dim` inputs, one output.
    pub correction: MlpSpec,
    /// L2 coefficient on the correction's parameters.
    #[serde(default)]
    pub l2: f64,
}

#[derive(Debug)]
pub struct GaussResidual {
    pub spec: GaussResidualSpec,
    /// The frozen start: its variables are `gauss.mean`, `gauss.prec_chol`.
    gauss: Gaussian,
    corr: Mlp,
}

impl GaussResidual {
    pub fn new(p: &nn::Path, s: &GaussResidualSpec) -> Self {
        let gauss = Gaussian::new(&(p / "gauss"), &s.gaussian);
        GaussResidual { spec: s.clone(), gauss, corr: Mlp::new(&(p / "corr"), &s.correction) }
    }

    /// Fit the Gaussian on row-major `data` (N × D, scaled) and zero the correction's last
    /// layer: the energy is then the Gaussian's. Returns the shrinkage.
    pub fn start_from_gaussian(&mut self, data: &[f64], n: usize) -> Result<f64, String> {
        let fit = self.gauss.fit(data, n)?;
        // The last layer's weight and bias (params are weight, bias per layer): c starts at 0.
        let params = self.corr.params();
        for t in params.iter().rev().take(2) {
            let _ = tch::no_grad(|| t.shallow_clone().f_zero_()).map_err(|e| e.to_string())?;
        }
        Ok(fit.shrinkage)
    }

    fn dim(&self) -> f64 {
        self.spec.gaussian.dim as f64
    }
}

impl Energy for GaussResidual {
    fn energy(&self, x: &Tensor, train: bool) -> Tensor {
        self.gauss.energy(x, train) / self.dim() + self.corr.forward(x, train).reshape([-1])
    }
    fn reg(&self) -> Tensor {
        l2_of(&self.corr.params()) * self.spec.l2
    }
    fn kind(&self) -> EnergyKind {
        EnergyKind::Scalar
    }
    fn energy_explained(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>), tch::TchError> {
        // The Gaussian's per-dimension terms zᵢ(Σ⁻¹z)ᵢ, plus c(z) spread evenly, all over D.
        let (_, q) = self.gauss.energy_explained(x)?;
        let q = q.ok_or_else(|| tch::TchError::Kind("the gaussian explains by dimension".into()))?;
        let c = self.corr.forward(x, false).f_reshape([-1, 1])?;
        let per_dim = q.f_add(&c)?.f_div_scalar(self.dim())?;
        let e = per_dim.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?;
        Ok((e, Some(per_dim)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Activation;
    use tch::Device;

    #[test]
    fn starts_as_the_gaussian_and_explains_its_score() {
        crate::device::init_threads();
        let spec = GaussResidualSpec {
            gaussian: GaussianSpec { dim: 4, shrinkage: Default::default() },
            correction: MlpSpec::new(4, &[8], 1, Activation::LeakyRelu),
            l2: 0.0,
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let mut e = GaussResidual::new(&vs.root(), &spec);
        let data: Vec<f64> = (0..200).map(|i| ((i * 37 % 101) as f64 / 50.0 - 1.0) * (1.0 + (i % 4) as f64)).collect();
        e.start_from_gaussian(&data, 50).unwrap();
        let gvs = nn::VarStore::new(Device::Cpu);
        let mut g = crate::nn::gaussian::Gaussian::new(&gvs.root(), &spec.gaussian);
        g.fit(&data, 50).unwrap();
        let x = Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0]).view([2, 4]);
        let want = g.energy(&x, false).to_kind(Kind::Float) / 4.0;
        let got = e.energy(&x, false);
        assert!(f64::try_from((&got - &want).abs().max()).unwrap() < 1e-4, "{got:?} vs {want:?}");
        let (en, per) = e.energy_explained(&x).unwrap();
        let sum = per.unwrap().sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        assert!(f64::try_from((&en - &sum).abs().max()).unwrap() < 1e-4);
    }
}
