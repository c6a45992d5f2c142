//! The density kinds (`gaussian`, `gmm`): no networks and no epochs — the training profiles'
//! statistics, fitted once in f64 (nalgebra), written into the bundle's f64 variables.

use tch::{Device, Kind};

use super::{TrainConfig, TrainData};
use crate::config::Valid;
use crate::model::{Bundle, Manifest, ModelKind};
use crate::mpdr::error::{ensure, TrainError};
use crate::nn::EnergyNet;

/// Fit a density of `kind` on `input.train` (standardised profiles).
pub fn fit(
    kind: ModelKind,
    input: &TrainData<'_>,
    cfg: &Valid<TrainConfig>,
    device: Device,
) -> Result<Bundle, TrainError> {
    let started = std::time::Instant::now();
    let (n, dim) = (input.train.size()[0], input.train.size()[1]);
    let need = cfg.density.min_samples(kind);
    ensure(n as usize >= need, || format!("{n} training profile(s); a {kind} needs at least {need}"))?;
    let nets = cfg.networks(kind, dim, input.n_mels, input.frames);
    let mut manifest = Manifest::new(kind, nets.energy, Vec::new());
    manifest.provenance.seed = cfg.seed;
    let mut bundle = Bundle::build(manifest, device);
    let data: Vec<f64> =
        Vec::<f64>::try_from(input.train.to_kind(Kind::Double).to_device(Device::Cpu).contiguous().view([-1]))?;
    let metrics = &mut bundle.manifest.provenance.metrics;
    match &mut bundle.energy {
        EnergyNet::Gaussian(g) => {
            let f = g.fit(&data, n as usize).map_err(TrainError::Mismatch)?;
            metrics.insert("shrinkage".into(), f.shrinkage);
            tracing::info!(profiles = n, dim, shrinkage = f.shrinkage, "gaussian fitted");
        }
        EnergyNet::Gmm(g) => {
            let f = g.fit(&data, n as usize, cfg.seed, cfg.density.inits).map_err(TrainError::Mismatch)?;
            metrics.insert("em_iterations".into(), f.iterations as f64);
            metrics.insert("em_converged".into(), f64::from(u8::from(f.converged)));
            metrics.insert("mean_log_likelihood".into(), f.mean_log_likelihood);
            tracing::info!(profiles = n, dim, iterations = f.iterations, converged = f.converged, "gmm fitted");
        }
        _ => return Err(TrainError::Mismatch(format!("{kind} is not a density kind"))),
    }
    metrics.insert("train_profiles".into(), n as f64);
    bundle.manifest.provenance.stages.insert("fit".into(), 1);
    bundle.manifest.provenance.wall_time_s = started.elapsed().as_secs_f64();
    Ok(bundle)
}
