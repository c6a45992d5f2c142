//! `mpdr bench vectors`: ADBench `.npz` tables. Protocol (paper §4.5 / ADBench): per seed a
//! stratified random split (70% train / 30% test), anomalies removed from train, per-feature
//! standardisation fitted on train, AUROC and AUPR on test; mean ± std over seeds.
//!
//! MPDR-R as the paper's §4.5: one manifold AE and an energy AE, both MLPs with two
//! 1024-unit hidden layers, D_z = D_x if D_x ≤ 100 else round(0.7·D_x), spherical codes;
//! latent chain 1 step (0.1, noise 0.05), visible chain 5 steps (10, noise 0.1), γ 1e-4,
//! Adam 1e-4 — except the visible step, capped at d/2 by default ([`VisibleStep`]). Budgets scale with the data: batch = clamp(n_train / 8, 16, 128) and fixed step
//! counts (CPU default: 500 manifold, 500 pre-training, 150 MPDR steps; `--paper`: 50 epochs
//! each, as the paper's other experiments), expressed as epochs of the training split.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{BenchError, Context, Result};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::data::npz::{read_table, Table};
use crate::eval::metrics::{average_precision, roc_auc};
use crate::model::ModelKind;
use crate::mpdr::recipe::{self, EnergyPreset, TrainConfig, TrainData};
use crate::mpdr::select::SplitMix64;
use crate::nn::Activation;

/// Step budgets of one run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Budget {
    pub manifold_steps: usize,
    pub pretrain_steps: usize,
    pub mpdr_steps: usize,
    /// Use epochs instead (`--paper`): this many over the training split, per stage.
    pub epochs: Option<usize>,
}

impl Budget {
    pub const CPU: Budget = Budget { manifold_steps: 500, pretrain_steps: 500, mpdr_steps: 150, epochs: None };
    pub const PAPER: Budget = Budget { manifold_steps: 0, pretrain_steps: 0, mpdr_steps: 0, epochs: Some(50) };
}

/// The visible chain's step size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum VisibleStep {
    /// min(10, d/2). The energy is a mean over d squared errors, so its curvature along the
    /// residual is ≈ 2/d and a step λ moves x by 2λ/d of the residual: λ > d/2 overshoots the
    /// reconstruction and λ > d makes the chain diverge. The paper's 10 does that for d < 20
    /// (thyroid, d = 6: negatives' energy 1e6 after one MPDR epoch); the cap leaves d ≥ 20 as is.
    #[default]
    Capped,
    /// The paper's 10 for every table.
    Paper,
}

impl VisibleStep {
    pub fn for_dim(self, d: usize) -> f64 {
        match self {
            VisibleStep::Capped => (d as f64 / 2.0).min(10.0),
            VisibleStep::Paper => 10.0,
        }
    }
}

/// One split: row indices into the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// Stratified 70/30 split of `y`, deterministic in `seed`; anomalies are dropped from train.
pub fn split(y: &[bool], seed: u64) -> Split {
    let mut rng = SplitMix64::new(seed);
    let mut train = Vec::new();
    let mut test = Vec::new();
    for class in [false, true] {
        let mut idx: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        for i in (1..idx.len()).rev() {
            let j = rng.below(i + 1);
            idx.swap(i, j);
        }
        let k = (0.7 * idx.len() as f64).round() as usize;
        if !class {
            train.extend_from_slice(&idx[..k]);
        }
        test.extend_from_slice(&idx[k..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    Split { train, test }
}

/// The paper's latent size rule.
pub fn latent_dim(d: usize) -> i64 {
    if d <= 100 {
        d as i64
    } else {
        (0.7 * d as f64).round() as i64
    }
}

/// The training recipe of one dataset.
pub fn recipe(d: usize, n_train: usize, budget: Budget, step: VisibleStep, seed: u64) -> TrainConfig {
    let mut c = TrainConfig { seed, ..TrainConfig::dcase_official() };
    let batch = (n_train / 8).clamp(16, 128) as i64;
    let per_epoch = n_train.div_ceil(batch as usize).max(1);
    let epochs_for = |steps: usize| budget.epochs.unwrap_or(steps.div_ceil(per_epoch).max(1));
    let cap = |steps: usize| if budget.epochs.is_some() { 0 } else { steps };
    let dz = latent_dim(d);
    c.manifold.latent_dims = vec![dz];
    c.manifold.hidden = vec![1024, 1024];
    c.manifold.activation = Activation::LeakyRelu;
    c.manifold.epochs = epochs_for(budget.manifold_steps);
    c.manifold.batch_size = batch;
    c.energy.preset = EnergyPreset::DcaseAe1024;
    c.energy.latent = Some(dz);
    c.pretrain.lr = 1e-4;
    c.pretrain.epochs = epochs_for(budget.pretrain_steps);
    c.pretrain.batch_size = batch;
    c.pretrain.max_steps = cap(budget.pretrain_steps);
    c.mpdr.latent.steps = 1;
    c.mpdr.latent.step_size = 0.1;
    c.mpdr.latent.noise = 0.05;
    c.mpdr.visible.steps = 5;
    c.mpdr.visible.step_size = step.for_dim(d);
    c.mpdr.visible.noise = 0.1;
    c.mpdr.gamma = 1e-4;
    c.mpdr.lr = 1e-4;
    c.mpdr_schedule.epochs = epochs_for(budget.mpdr_steps);
    c.mpdr_schedule.batch_size = batch;
    c.mpdr_schedule.max_steps = cap(budget.mpdr_steps);
    c.mpdr_schedule.validation_samples = 0;
    c
}

/// Scores of one model on one split: AUROC, AUPR, training seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RunScore {
    pub auroc: f64,
    pub aupr: f64,
    pub train_s: f64,
}

/// Rows `idx` of the table, standardised with (mean, std) fitted on `fit` rows.
fn standardised(t: &Table, fit: &[usize], idx: &[usize]) -> Tensor {
    let d = t.d;
    let mut mean = vec![0f64; d];
    let mut var = vec![0f64; d];
    for &i in fit {
        for (j, m) in mean.iter_mut().enumerate() {
            *m += t.x[i * d + j] as f64 / fit.len() as f64;
        }
    }
    for &i in fit {
        for (j, v) in var.iter_mut().enumerate() {
            *v += (t.x[i * d + j] as f64 - mean[j]).powi(2) / fit.len() as f64;
        }
    }
    let std: Vec<f64> = var.iter().map(|v| if v.sqrt() > 1e-12 { v.sqrt() } else { 1.0 }).collect();
    let (mean, std) = (&mean, &std);
    let data: Vec<f32> =
        idx.iter().flat_map(|&i| (0..d).map(move |j| ((t.x[i * d + j] as f64 - mean[j]) / std[j]) as f32)).collect();
    Tensor::from_slice(&data).view([idx.len() as i64, d as i64])
}

/// Train `kind` on the split's training rows and score its test rows.
pub fn run_one(
    t: &Table,
    s: &Split,
    kind: ModelKind,
    budget: Budget,
    step: VisibleStep,
    seed: u64,
    device: Device,
) -> Result<RunScore> {
    let train = standardised(t, &s.train, &s.train);
    let test = standardised(t, &s.train, &s.test);
    let cfg = recipe(t.d, s.train.len(), budget, step, seed);
    let start = Instant::now();
    let data = TrainData {
        train: &train,
        heldout: None,
        other_ids: None,
        other_ids_train: None,
        n_mels: t.d as i64,
        frames: 1,
    };
    let bundle = recipe::train(
        kind,
        &data,
        &crate::config::Valid::new(cfg.clone()).map_err(|p| BenchError::Invalid(format!("recipe: {p}")))?,
        device,
        &mut recipe::Quiet,
        None,
    )?;
    let train_s = start.elapsed().as_secs_f64();
    let scores: Vec<f64> = Vec::<f64>::try_from(bundle.score(&test, 4096)?.to_kind(Kind::Double))?;
    let labels: Vec<bool> = s.test.iter().map(|&i| t.y[i]).collect();
    Ok(RunScore { auroc: roc_auc(&labels, &scores)?, aupr: average_precision(&labels, &scores)?, train_s })
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelResult {
    pub model: String,
    pub auroc_mean: f64,
    pub auroc_std: f64,
    pub aupr_mean: f64,
    pub aupr_std: f64,
    pub train_s_mean: f64,
    pub runs: Vec<RunScore>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasetResult {
    pub dataset: String,
    pub n: usize,
    pub d: usize,
    pub anomaly_rate: f64,
    pub models: Vec<ModelResult>,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
    let var = if v.len() > 1 { v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64 } else { 0.0 };
    (m, var.sqrt())
}

/// The `.npz` files of `path` (a file, or a folder's `*.npz` sorted by name).
pub fn npz_files(path: &Path) -> Result<Vec<PathBuf>> {
    crate::data::file_or_folder(path, "npz").map_err(|error| BenchError::Io { path: path.to_path_buf(), error })
}

/// Run every dataset x model x seed; write `results.json`, `results.md` and the splits
/// (`splits/<dataset>_seed<k>.json`, for `benches/pyod_compare.py`).
pub fn run(
    npz: &Path,
    out: &Path,
    models: &[ModelKind],
    seeds: usize,
    budget: Budget,
    step: VisibleStep,
    device: Device,
) -> Result<Vec<DatasetResult>> {
    let files = npz_files(npz)?;
    let bar = crate::progress::bar(files.len() as u64, "loading tables");
    let tables: Vec<(String, Table)> = files
        .iter()
        .map(|f| {
            let t = read_table(f)?;
            bar.inc(1);
            Ok((f.file_stem().unwrap_or_default().to_string_lossy().to_string(), t))
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    let splits_dir = out.join("splits");
    std::fs::create_dir_all(&splits_dir).map_err(|error| BenchError::Io { path: splits_dir.clone(), error })?;
    let mut results = Vec::new();
    for (name, t) in &tables {
        let mut model_results = Vec::new();
        let splits: Vec<Split> = (0..seeds).map(|k| split(&t.y, 1000 + k as u64)).collect();
        for (k, s) in splits.iter().enumerate() {
            super::write_file(
                &out.join("splits").join(format!("{name}_seed{k}.json")),
                serde_json::to_string(s).unwrap_or_default(),
            )?;
        }
        for &kind in models {
            let mut runs = Vec::new();
            for (k, s) in splits.iter().enumerate() {
                let r = run_one(t, s, kind, budget, step, k as u64 + 1, device)
                    .with_context(|| format!("{name}, {kind}, seed {k}"))?;
                tracing::info!(dataset = %name, model = %kind, seed = k, auroc = r.auroc, aupr = r.aupr, seconds = r.train_s, "run done");
                runs.push(r);
            }
            let (am, asd) = mean_std(&runs.iter().map(|r| r.auroc).collect::<Vec<_>>());
            let (pm, psd) = mean_std(&runs.iter().map(|r| r.aupr).collect::<Vec<_>>());
            let ts = runs.iter().map(|r| r.train_s).sum::<f64>() / runs.len().max(1) as f64;
            model_results.push(ModelResult {
                model: kind.to_string(),
                auroc_mean: am,
                auroc_std: asd,
                aupr_mean: pm,
                aupr_std: psd,
                train_s_mean: ts,
                runs,
            });
        }
        results.push(DatasetResult {
            dataset: name.clone(),
            n: t.n,
            d: t.d,
            anomaly_rate: t.y.iter().filter(|a| **a).count() as f64 / t.n as f64,
            models: model_results,
        });
        write_outputs(out, &results, seeds, budget, step)?;
    }
    Ok(results)
}

fn write_outputs(out: &Path, results: &[DatasetResult], seeds: usize, budget: Budget, step: VisibleStep) -> Result<()> {
    let json = serde_json::json!({ "protocol": "stratified 70/30 split, anomalies removed from train, standardised on train", "seeds": seeds, "budget": budget, "visible_step": step, "datasets": results });
    let mut md = format!("# mpdr bench vectors\n\n{seeds} seeds; mean ± std over seeds.\n\n| dataset | n | d | anomalies | model | AUROC | AUPR | train s |\n|---|---|---|---|---|---|---|---|\n");
    for r in results {
        for m in &r.models {
            md += &format!(
                "| {} | {} | {} | {:.1}% | {} | {:.3} ± {:.3} | {:.3} ± {:.3} | {:.1} |\n",
                r.dataset,
                r.n,
                r.d,
                100.0 * r.anomaly_rate,
                m.model,
                m.auroc_mean,
                m.auroc_std,
                m.aupr_mean,
                m.aupr_std,
                m.train_s_mean
            );
        }
    }
    super::write_results(out, &json, &md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_stratified_deterministic_and_keep_anomalies_out_of_train() {
        let y: Vec<bool> = (0..100).map(|i| i % 10 == 0).collect();
        let s = split(&y, 7);
        assert_eq!(s, split(&y, 7));
        assert_ne!(s, split(&y, 8));
        assert_eq!(s.train.len(), 63, "70% of the 90 normals");
        assert!(s.train.iter().all(|&i| !y[i]));
        assert_eq!(s.test.iter().filter(|&&i| y[i]).count(), 3, "30% of the 10 anomalies");
        assert_eq!(s.test.len(), 27 + 3);
        let mut all: Vec<usize> = s.train.iter().chain(&s.test).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 63 + 30, "disjoint");
    }

    #[test]
    fn latent_size_follows_the_paper() {
        assert_eq!((latent_dim(6), latent_dim(100), latent_dim(274)), (6, 100, 192));
        let c = recipe(64, 1000, Budget::CPU, VisibleStep::Capped, 1);
        assert_eq!(c.mpdr.visible.step_size, 10.0, "d >= 20 keeps the paper's step");
        assert_eq!(recipe(6, 1000, Budget::CPU, VisibleStep::Capped, 1).mpdr.visible.step_size, 3.0);
        assert_eq!(recipe(6, 1000, Budget::CPU, VisibleStep::Paper, 1).mpdr.visible.step_size, 10.0);
        assert_eq!(
            (c.manifold.latent_dims.clone(), c.energy.latent, c.mpdr.latent.steps, c.mpdr.visible.steps),
            (vec![64], Some(64), 1, 5)
        );
        assert_eq!((c.pretrain.batch_size, c.pretrain.epochs, c.pretrain.max_steps), (125, 63, 500));
    }
}
