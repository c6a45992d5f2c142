//! The Gaussian energy on profile vectors: the squared Mahalanobis distance to the training
//! profiles' mean under a shrinkage covariance (Ledoit-Wolf or OAS, as scikit-learn computes
//! them), fitted in f64 with nalgebra's Cholesky factorisation.
//!
//! Stored as the mean `mean` (D) and the precision's Cholesky factor `prec_chol` (D × D,
//! upper triangular U with Σ⁻¹ = U Uᵀ, scikit-learn's `precisions_cholesky_`), in f64. The
//! energy of a scaled vector z is ‖(z − μ) U‖²; its explanation per dimension is
//! (z − μ)ᵢ · (Σ⁻¹ (z − μ))ᵢ, which sums to the energy exactly.

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use super::{Energy, EnergyKind};

/// How the covariance is shrunk towards a scaled identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shrinkage {
    /// Ledoit & Wolf (2004), scikit-learn's `LedoitWolf`.
    #[default]
    LedoitWolf,
    /// Oracle approximating shrinkage (Chen et al. 2010), scikit-learn's `OAS`.
    Oas,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianSpec {
    pub dim: i64,
    #[serde(default)]
    pub shrinkage: Shrinkage,
}

/// Variables: `mean` (D), `prec_chol` (D, D); f64, not trained by gradient.
#[derive(Debug)]
pub struct Gaussian {
    pub spec: GaussianSpec,
    mean: Tensor,
    prec_chol: Tensor,
}

/// What a fit found (for the training report).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaussianFit {
    pub shrinkage: f64,
    pub samples: usize,
}

impl Gaussian {
    pub fn new(p: &nn::Path, s: &GaussianSpec) -> Self {
        let d = s.dim;
        Gaussian {
            spec: s.clone(),
            mean: p.zeros_no_train("mean", &[d]),
            prec_chol: p.zeros_no_train("prec_chol", &[d, d]),
        }
    }

    /// Fit on row-major `data` (N × D, already scaled) and write the parameters.
    pub fn fit(&mut self, data: &[f64], n: usize) -> Result<GaussianFit, String> {
        let d = self.spec.dim as usize;
        let x = DMatrix::from_row_slice(n, d, data);
        let (mean, cov, shrinkage) = shrunk_covariance(&x, self.spec.shrinkage);
        let u = precision_cholesky(&cov).ok_or("the shrunk covariance is not positive definite")?;
        write(&self.mean, mean.as_slice(), &[d as i64])?;
        write(&self.prec_chol, &row_major(&u), &[d as i64, d as i64])?;
        Ok(GaussianFit { shrinkage, samples: n })
    }

    fn centred_whitened(&self, x: &Tensor) -> Result<(Tensor, Tensor), tch::TchError> {
        let z = x.f_sub(&self.mean)?;
        let y = z.f_matmul(&self.prec_chol)?;
        Ok((z, y))
    }
}

impl Energy for Gaussian {
    fn energy(&self, x: &Tensor, _train: bool) -> Tensor {
        let (_, y) = self.centred_whitened(x).unwrap_or_else(|e| panic!("gaussian energy: {e}"));
        y.square().sum_dim_intlist([1i64].as_slice(), false, y.kind())
    }
    fn reg(&self) -> Tensor {
        Tensor::zeros([], (Kind::Float, self.mean.device()))
    }
    fn kind(&self) -> EnergyKind {
        EnergyKind::Scalar
    }
    fn energy_explained(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>), tch::TchError> {
        let (z, y) = self.centred_whitened(x)?;
        // Σ⁻¹ z = U Uᵀ z, row-wise: (z U) Uᵀ.
        let w = y.f_matmul(&self.prec_chol.f_transpose(0, 1)?)?;
        let per_dim = z.f_mul(&w)?;
        let e = per_dim.f_sum_dim_intlist([1i64].as_slice(), false, per_dim.kind())?;
        Ok((e, Some(per_dim)))
    }
}

/// Copy f64 values into a variable (no gradient).
pub(crate) fn write(var: &Tensor, values: &[f64], shape: &[i64]) -> Result<(), String> {
    let t = Tensor::f_from_slice(values)
        .and_then(|t| t.f_view(shape))
        .and_then(|t| t.f_to_kind(var.kind()))
        .and_then(|t| t.f_to_device(var.device()))
        .map_err(|e| e.to_string())?;
    tch::no_grad(|| var.shallow_clone().f_copy_(&t)).map_err(|e| e.to_string())
}

pub(crate) fn row_major(m: &DMatrix<f64>) -> Vec<f64> {
    let mut out = Vec::with_capacity(m.nrows() * m.ncols());
    for r in 0..m.nrows() {
        out.extend(m.row(r).iter());
    }
    out
}

/// Mean, shrunk covariance and the shrinkage coefficient of the rows of `x`
/// (scikit-learn's `ledoit_wolf_shrinkage` / `oas`, data centred on its mean).
pub fn shrunk_covariance(x: &DMatrix<f64>, how: Shrinkage) -> (DVector<f64>, DMatrix<f64>, f64) {
    let (n, d) = (x.nrows(), x.ncols());
    let mean = x.row_mean().transpose();
    let mut xc = x.clone();
    for mut row in xc.row_iter_mut() {
        row -= mean.transpose();
    }
    let nf = n.max(1) as f64;
    let emp = xc.transpose() * &xc / nf;
    let mu = emp.trace() / d as f64;
    let shrinkage = match how {
        Shrinkage::LedoitWolf => {
            let x2 = xc.map(|v| v * v);
            let emp_trace: f64 = x2.sum() / nf;
            let delta_raw = (xc.transpose() * &xc).map(|v| v * v).sum() / (nf * nf);
            let beta_raw = (x2.transpose() * &x2).sum();
            let beta = (beta_raw / nf - delta_raw) / (d as f64 * nf);
            let delta = (delta_raw - 2.0 * mu * emp_trace + d as f64 * mu * mu) / d as f64;
            let beta = beta.min(delta);
            if beta == 0.0 {
                0.0
            } else {
                beta / delta
            }
        }
        Shrinkage::Oas => {
            let alpha = emp.map(|v| v * v).mean();
            let num = alpha + mu * mu;
            let den = (nf + 1.0) * (alpha - mu * mu / d as f64);
            if den == 0.0 {
                1.0
            } else {
                (num / den).min(1.0)
            }
        }
    };
    let mut cov = emp * (1.0 - shrinkage);
    for i in 0..d {
        cov[(i, i)] += shrinkage * mu;
    }
    (mean, cov, shrinkage)
}

/// U with Σ⁻¹ = U Uᵀ (U = L⁻ᵀ for Σ = L Lᵀ), through nalgebra's Cholesky and a triangular
/// solve; `None` when `cov` is not positive definite.
pub fn precision_cholesky(cov: &DMatrix<f64>) -> Option<DMatrix<f64>> {
    let d = cov.nrows();
    let l = nalgebra::Cholesky::new(cov.clone())?.l();
    let l_inv = l.solve_lower_triangular(&DMatrix::identity(d, d))?;
    Some(l_inv.transpose())
}

/// Standard normals for tests: Box-Muller on a 64-bit LCG seeded by `seed`.
#[cfg(test)]
pub(crate) fn test_normals(seed: u64) -> impl FnMut() -> f64 {
    let mut s = seed;
    move || {
        let mut u = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (a, b) = (u(), u());
        (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    use super::test_normals as lcg;

    fn built(dim: i64, shrinkage: Shrinkage) -> (nn::VarStore, Gaussian) {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let g = Gaussian::new(&vs.root(), &GaussianSpec { dim, shrinkage });
        vs.set_kind(Kind::Double);
        (vs, g)
    }

    #[test]
    fn matches_the_closed_form_on_data_with_a_known_covariance() {
        // x = A n with a known A: Σ = A Aᵀ. With many samples the shrinkage vanishes and the
        // energy is the true Mahalanobis distance.
        let a = DMatrix::from_row_slice(3, 3, &[2.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.5, -0.3, 0.2]);
        let mut g = lcg(7);
        let n = 40_000;
        let mut data = Vec::with_capacity(n * 3);
        for _ in 0..n {
            let v = &a * DVector::from_fn(3, |_, _| g());
            data.extend(v.iter().map(|x| x + 1.0));
        }
        let (_vs, mut gauss) = built(3, Shrinkage::LedoitWolf);
        let fit = gauss.fit(&data, n).unwrap();
        assert!(fit.shrinkage < 0.01, "{fit:?}");
        let sigma = &a * a.transpose();
        let inv = sigma.clone().try_inverse().unwrap();
        let probe = DVector::from_row_slice(&[3.0, -1.0, 2.0]);
        let z = &probe - DVector::from_element(3, 1.0);
        let want = (z.transpose() * &inv * &z)[(0, 0)];
        let x = Tensor::from_slice(probe.as_slice()).view([1, 3]);
        let got = gauss.energy(&x, false).double_value(&[0]);
        assert!((got - want).abs() / want < 0.02, "{got} vs {want}");
    }

    #[test]
    fn explanations_sum_to_the_energy() {
        let mut g = lcg(3);
        let data: Vec<f64> = (0..50 * 6).map(|_| g()).collect();
        for how in [Shrinkage::LedoitWolf, Shrinkage::Oas] {
            let (_vs, mut gauss) = built(6, how);
            gauss.fit(&data, 50).unwrap();
            let x = Tensor::from_slice(&(0..24).map(|_| 2.0 * g()).collect::<Vec<f64>>()).view([4, 6]);
            let (e, per) = gauss.energy_explained(&x).unwrap();
            let sum = per.unwrap().sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
            assert!(f64::try_from((&e - &sum).abs().max()).unwrap() < 1e-9);
            assert!(f64::try_from((&e - gauss.energy(&x, false)).abs().max()).unwrap() < 1e-9);
        }
    }

    #[test]
    fn shrinkage_and_distance_equal_scikit_learn() {
        // x[i, j] = sin(1.3 k) + 0.5 cos(0.07 k²) + 0.3 j sin(0.11 k), k = 4 i + j; scikit-learn
        // 1.x: LedoitWolf().shrinkage_, OAS().shrinkage_, LedoitWolf().mahalanobis(x[:1] + 0.3).
        let x = DMatrix::from_fn(12, 4, |i, j| {
            let k = (4 * i + j) as f64;
            (k * 1.3).sin() + 0.5 * (k * k * 0.07).cos() + (j as f64) * 0.3 * (k * 0.11).sin()
        });
        let (_, _, lw) = shrunk_covariance(&x, Shrinkage::LedoitWolf);
        let (_, _, oas) = shrunk_covariance(&x, Shrinkage::Oas);
        assert!((lw - 0.4810561511712785).abs() < 1e-12, "ledoit-wolf {lw}");
        assert!((oas - 0.6249390633072567).abs() < 1e-12, "oas {oas}");
        let (_vs, mut gauss) = built(4, Shrinkage::LedoitWolf);
        gauss.fit(&row_major(&x), 12).unwrap();
        let probe: Vec<f64> = x.row(0).iter().map(|v| v + 0.3).collect();
        let e = gauss.energy(&Tensor::from_slice(&probe).view([1, 4]), false).double_value(&[0]);
        assert!((e - 6.96595907).abs() < 1e-7, "{e}");
    }
}
