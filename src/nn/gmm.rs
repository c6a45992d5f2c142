//! A Gaussian mixture energy on profile vectors: E(z) = −log p(z) under k full-covariance
//! components, fitted by seeded EM in f64 (k-means++ and Lloyd's iterations to start, then EM
//! until the mean log-likelihood gains less than 1e-3, as scikit-learn's `GaussianMixture`),
//! with `reg` added to every covariance's diagonal.
//!
//! Variables (f64): `weights` (k), `means` (k, D), `prec_chol` (k, D, D; U with Σ⁻¹ = U Uᵀ).
//! Explanation: per dimension, the responsibility-weighted half quadratic form
//! Σₖ rₖ · ½ zₖᵢ (Σₖ⁻¹ zₖ)ᵢ, plus the rest of the energy (log-determinants, weights, the
//! mixture's log-sum-exp) spread evenly, so the explanations sum to the energy.

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use super::gaussian::{precision_cholesky, row_major, write};
use super::{Energy, EnergyKind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GmmSpec {
    pub dim: i64,
    pub components: i64,
    /// Added to each covariance's diagonal (scikit-learn's `reg_covar`).
    pub reg: f64,
}

#[derive(Debug)]
pub struct Gmm {
    pub spec: GmmSpec,
    weights: Tensor,
    means: Tensor,
    prec_chol: Tensor,
}

/// What a fit found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GmmFit {
    pub iterations: usize,
    pub converged: bool,
    pub mean_log_likelihood: f64,
}

impl Gmm {
    pub fn new(p: &nn::Path, s: &GmmSpec) -> Self {
        let (k, d) = (s.components, s.dim);
        Gmm {
            spec: s.clone(),
            weights: p.zeros_no_train("weights", &[k]),
            means: p.zeros_no_train("means", &[k, d]),
            prec_chol: p.zeros_no_train("prec_chol", &[k, d, d]),
        }
    }

    /// Fit on row-major `data` (N × D, scaled): EM from `inits` seeded k-means starts, the
    /// one with the highest training likelihood kept (scikit-learn's `n_init`).
    pub fn fit(&mut self, data: &[f64], n: usize, seed: u64, inits: usize) -> Result<GmmFit, String> {
        let (k, d) = (self.spec.components as usize, self.spec.dim as usize);
        if n < k {
            return Err(format!("{n} samples for {k} components"));
        }
        let x = DMatrix::from_row_slice(n, d, data);
        let mut best: Option<(Mixture, GmmFit)> = None;
        for r in 0..inits.max(1) as u64 {
            let (model, fit) = em(&x, k, self.spec.reg, seed.wrapping_add(r.wrapping_mul(7919)))?;
            if best.as_ref().is_none_or(|(_, b)| fit.mean_log_likelihood > b.mean_log_likelihood) {
                best = Some((model, fit));
            }
        }
        let Some((model, fit)) = best else { return Err("no start".into()) };
        write(&self.weights, model.weights.as_slice(), &[k as i64])?;
        let means: Vec<f64> = model.means.iter().flat_map(|m| m.iter().copied()).collect();
        write(&self.means, &means, &[k as i64, d as i64])?;
        let prec: Vec<f64> = model.prec_chol.iter().flat_map(row_major).collect();
        write(&self.prec_chol, &prec, &[k as i64, d as i64, d as i64])?;
        Ok(fit)
    }
}

/// One EM run from a k-means start seeded by `seed`.
fn em(x: &DMatrix<f64>, k: usize, reg: f64, seed: u64) -> Result<(Mixture, GmmFit), String> {
    let labels = kmeans(x, k, seed);
    let n = x.nrows();
    let mut resp = DMatrix::zeros(n, k);
    for (i, &l) in labels.iter().enumerate() {
        resp[(i, l)] = 1.0;
    }
    let mut model = m_step(x, &resp, reg)?;
    let mut lower = f64::NEG_INFINITY;
    let (mut iterations, mut converged) = (0, false);
    for it in 1..=100 {
        let (r, ll) = e_step(x, &model);
        model = m_step(x, &r, reg)?;
        iterations = it;
        if (ll - lower).abs() < 1e-3 {
            converged = true;
            break;
        }
        lower = ll;
    }
    // The final parameters' own likelihood (the loop's is of the previous step's).
    let (_, ll) = e_step(x, &model);
    Ok((model, GmmFit { iterations, converged, mean_log_likelihood: ll }))
}

impl Gmm {
    /// Per-component log densities plus log weights (B, k), the centred vectors (k, B, D)
    /// and their whitened images (k, B, D).
    fn log_joint(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor), tch::TchError> {
        let d = self.spec.dim as f64;
        let z = x.f_unsqueeze(0)?.f_sub(&self.means.f_unsqueeze(1)?)?;
        let y = z.f_matmul(&self.prec_chol)?;
        let q = y.f_square()?.f_sum_dim_intlist([2i64].as_slice(), false, y.kind())?; // (k, B)
        let log_det =
            self.prec_chol.f_diagonal(0, 1, 2)?.f_log()?.f_sum_dim_intlist([1i64].as_slice(), false, y.kind())?; // (k,)
        let lp = q
            .f_mul_scalar(-0.5)?
            .f_add_scalar(-0.5 * d * (2.0 * std::f64::consts::PI).ln())?
            .f_add(&log_det.f_unsqueeze(1)?)?
            .f_add(&self.weights.f_log()?.f_unsqueeze(1)?)?;
        Ok((lp.f_transpose(0, 1)?, z, y))
    }
}

impl Energy for Gmm {
    fn energy(&self, x: &Tensor, _train: bool) -> Tensor {
        let (lp, _, _) = self.log_joint(x).unwrap_or_else(|e| panic!("gmm energy: {e}"));
        -lp.logsumexp([1i64].as_slice(), false)
    }
    fn reg(&self) -> Tensor {
        Tensor::zeros([], (Kind::Float, self.means.device()))
    }
    fn kind(&self) -> EnergyKind {
        EnergyKind::Scalar
    }
    fn energy_explained(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>), tch::TchError> {
        let (lp, z, y) = self.log_joint(x)?;
        let e = lp.f_logsumexp([1i64].as_slice(), false)?.f_neg()?;
        let r = lp.f_softmax(1, lp.kind())?.f_transpose(0, 1)?.f_unsqueeze(2)?; // (k, B, 1)
                                                                                // zᵢ (Σ⁻¹ z)ᵢ per component, weighted by responsibility, halved.
        let quad = z.f_mul(&y.f_matmul(&self.prec_chol.f_transpose(1, 2)?)?)?;
        let per = quad.f_mul(&r)?.f_sum_dim_intlist([0i64].as_slice(), false, quad.kind())?.f_mul_scalar(0.5)?;
        let rest = e.f_sub(&per.f_sum_dim_intlist([1i64].as_slice(), false, per.kind())?)?;
        let per = per.f_add(&rest.f_unsqueeze(1)?.f_div_scalar(self.spec.dim as f64)?)?;
        Ok((e, Some(per)))
    }
}

struct Mixture {
    weights: DVector<f64>,
    means: Vec<DVector<f64>>,
    prec_chol: Vec<DMatrix<f64>>,
}

fn m_step(x: &DMatrix<f64>, resp: &DMatrix<f64>, reg: f64) -> Result<Mixture, String> {
    let (n, d) = (x.nrows(), x.ncols());
    let k = resp.ncols();
    let nk: Vec<f64> = (0..k).map(|j| resp.column(j).sum() + 10.0 * f64::EPSILON).collect();
    let mut means = Vec::with_capacity(k);
    let mut prec_chol = Vec::with_capacity(k);
    for j in 0..k {
        let mean = (x.transpose() * resp.column(j)) / nk[j];
        let mut diff = x.clone();
        for mut row in diff.row_iter_mut() {
            row -= mean.transpose();
        }
        let mut weighted = diff.clone();
        for i in 0..n {
            weighted.row_mut(i).scale_mut(resp[(i, j)]);
        }
        let mut cov = weighted.transpose() * &diff / nk[j];
        for i in 0..d {
            cov[(i, i)] += reg;
        }
        let u = precision_cholesky(&cov)
            .ok_or_else(|| format!("component {j}'s covariance is not positive definite (raise reg)"))?;
        means.push(mean);
        prec_chol.push(u);
    }
    let total: f64 = nk.iter().sum();
    Ok(Mixture { weights: DVector::from_iterator(k, nk.iter().map(|v| v / total)), means, prec_chol })
}

/// Responsibilities (N × k) and the mean log-likelihood.
fn e_step(x: &DMatrix<f64>, m: &Mixture) -> (DMatrix<f64>, f64) {
    let (n, d) = (x.nrows(), x.ncols());
    let k = m.means.len();
    let mut lp = DMatrix::zeros(n, k);
    for j in 0..k {
        let log_det: f64 = m.prec_chol[j].diagonal().iter().map(|v| v.ln()).sum();
        let mut diff = x.clone();
        for mut row in diff.row_iter_mut() {
            row -= m.means[j].transpose();
        }
        let y = diff * &m.prec_chol[j];
        for i in 0..n {
            let q = y.row(i).norm_squared();
            lp[(i, j)] = m.weights[j].ln() - 0.5 * (d as f64 * (2.0 * std::f64::consts::PI).ln() + q) + log_det;
        }
    }
    let mut total = 0.0;
    for i in 0..n {
        let max = lp.row(i).max();
        let lse = max + lp.row(i).iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        total += lse;
        for j in 0..k {
            lp[(i, j)] = (lp[(i, j)] - lse).exp();
        }
    }
    (lp, total / n as f64)
}

/// k-means++ seeding then Lloyd's iterations (at most 300); the label of each row.
fn kmeans(x: &DMatrix<f64>, k: usize, seed: u64) -> Vec<usize> {
    let n = x.nrows();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let mut uniform = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let dist2 = |i: usize, c: &DVector<f64>| (x.row(i).transpose() - c).norm_squared();
    let mut centres: Vec<DVector<f64>> = vec![x.row(((uniform() * n as f64) as usize).min(n - 1)).transpose()];
    while centres.len() < k {
        let d: Vec<f64> = (0..n).map(|i| centres.iter().map(|c| dist2(i, c)).fold(f64::INFINITY, f64::min)).collect();
        let total: f64 = d.iter().sum();
        let mut target = uniform() * total;
        let mut pick = n - 1;
        for (i, v) in d.iter().enumerate() {
            if target < *v {
                pick = i;
                break;
            }
            target -= v;
        }
        centres.push(x.row(pick).transpose());
    }
    let mut labels = vec![usize::MAX; n];
    for _ in 0..300 {
        let mut changed = false;
        for (i, label) in labels.iter_mut().enumerate() {
            let best = (0..k).min_by(|&a, &b| dist2(i, &centres[a]).total_cmp(&dist2(i, &centres[b]))).unwrap_or(0);
            changed |= *label != best;
            *label = best;
        }
        if !changed {
            break;
        }
        for (j, c) in centres.iter_mut().enumerate() {
            let members: Vec<usize> = (0..n).filter(|&i| labels[i] == j).collect();
            if !members.is_empty() {
                *c = members.iter().map(|&i| x.row(i).transpose()).sum::<DVector<f64>>() / members.len() as f64;
            }
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gaussian::test_normals as normals;
    use tch::Device;

    fn built(dim: i64, components: i64) -> (nn::VarStore, Gmm) {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let g = Gmm::new(&vs.root(), &GmmSpec { dim, components, reg: 1e-6 });
        vs.set_kind(Kind::Double);
        (vs, g)
    }

    #[test]
    fn finds_two_clusters_and_scores_the_gap_between_them_as_unlikely() {
        // 300 points around (-5, 0) with sd 1 and 100 around (5, 0) with sd 0.5.
        let mut g = normals(11);
        let mut data = Vec::new();
        for i in 0..400 {
            let (cx, sd) = if i % 4 == 3 { (5.0, 0.5) } else { (-5.0, 1.0) };
            data.extend([cx + sd * g(), sd * g()]);
        }
        let (_vs, mut gmm) = built(2, 2);
        let fit = gmm.fit(&data, 400, 0, 1).unwrap();
        assert!(fit.converged, "{fit:?}");
        let mut w: Vec<f64> = Vec::<f64>::try_from(&gmm.weights).unwrap();
        w.sort_by(f64::total_cmp);
        assert!((w[0] - 0.25).abs() < 0.02 && (w[1] - 0.75).abs() < 0.02, "weights {w:?}");
        let mut mx: Vec<f64> = Vec::<f64>::try_from(gmm.means.select(1, 0)).unwrap();
        mx.sort_by(f64::total_cmp);
        assert!((mx[0] + 5.0).abs() < 0.2 && (mx[1] - 5.0).abs() < 0.1, "means {mx:?}");
        let probe = Tensor::from_slice(&[-5.0f64, 0.0, 5.0, 0.0, 0.0, 0.0]).view([3, 2]);
        let e: Vec<f64> = Vec::<f64>::try_from(gmm.energy(&probe, false)).unwrap();
        assert!(e[2] > e[0] + 5.0 && e[2] > e[1] + 5.0, "the gap is far less likely: {e:?}");
        // The density of the tight cluster's centre: log(0.25 / (2π · 0.25)) ≈ −0.45 ⇒ E ≈ 0.45.
        assert!((e[1] - (-(0.25f64 / (2.0 * std::f64::consts::PI * 0.25)).ln())).abs() < 0.15, "{e:?}");
        let (e2, per) = gmm.energy_explained(&probe).unwrap();
        let sum = per.unwrap().sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
        assert!(f64::try_from((&e2 - &sum).abs().max()).unwrap() < 1e-9, "explanations sum to the energy");
    }

    #[test]
    fn the_same_seed_gives_the_same_mixture() {
        let mut g = normals(5);
        let data: Vec<f64> = (0..200 * 3).map(|_| g()).collect();
        let (_a, mut one) = built(3, 3);
        let (_b, mut two) = built(3, 3);
        one.fit(&data, 200, 42, 3).unwrap();
        two.fit(&data, 200, 42, 3).unwrap();
        assert_eq!(
            Vec::<f64>::try_from(one.means.view([-1])).unwrap(),
            Vec::<f64>::try_from(two.means.view([-1])).unwrap()
        );
    }
}
