//! What the MPDR stage watches after every epoch, and the product rule that decides which
//! energy `mpdr train` ships (issue 12).
//!
//! The *criterion* is computed from training data only: held-out normal vectors against
//! pseudo-anomalies (band-raised copies, [`super::select`]) and, when the model is trained for
//! one machine id (`--id`), against the normal clips of the *other* ids of the same machine
//! type — real recordings of machines that are not this one. Epoch 0 is the pre-trained
//! energy MPDR starts from, so every rule can compare MPDR with its own starting point:
//!
//! - `last`: ship the last epoch (the paper's recipe);
//! - `guard`: ship the last epoch unless its criterion is below the pre-trained energy's, then
//!   ship the pre-trained energy — MPDR never ships below its own AE on the criterion;
//! - `best`: ship the epoch (0 included) with the best criterion.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::diagnose::{diagnose, DiagnoseInput, Diagnostics};
use super::select::{pseudo_anomaly_auc, Snapshot};
use super::{manifold_uniform_auc, MpdrConfig, TorchNoise};
use crate::model::ShippedEnergy;
use crate::nn::ae::AutoEncoder;
use crate::nn::Energy;

/// Which epoch the bundle keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    Last,
    Guard,
    /// The epoch with the best criterion (`pseudo-anomaly`: its name before issue 12).
    #[serde(alias = "pseudo-anomaly")]
    Best,
}

/// The label-free score each epoch is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Criterion {
    /// AUC of held-out normals against band-raised pseudo-anomalies.
    #[default]
    PseudoAnomaly,
    /// AUC of held-out normals against the other machine ids' normals (`--id` only).
    OtherIds,
    /// The mean of the two (pseudo-anomalies alone when there are no other ids).
    Both,
}

impl Criterion {
    pub fn name(self) -> &'static str {
        match self {
            Criterion::PseudoAnomaly => "pseudo-anomaly",
            Criterion::OtherIds => "other-ids",
            Criterion::Both => "both",
        }
    }
}

/// One watched epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub criterion: Option<f64>,
    pub pseudo_anomaly_auc: Option<f64>,
    pub other_ids_auc: Option<f64>,
    pub manifold_uniform_auc: Option<f64>,
    pub diagnostics: Option<Diagnostics>,
}

/// Held-out data and settings of the watch.
pub struct WatchInput<'a> {
    pub heldout: &'a Tensor,
    pub pseudo: Option<Tensor>,
    pub other_ids: Option<&'a Tensor>,
    pub criterion: Criterion,
    /// Samples per manifold AE for the appendix-C monitor (0 = off).
    pub uniform_per_ae: i64,
    pub diagnostics: bool,
    pub n_mels: i64,
    pub seed: u64,
}

/// The per-epoch watch of one MPDR stage.
pub struct Watch<'a> {
    input: WatchInput<'a>,
    pub history: Vec<EpochRecord>,
    start: Option<(usize, f64, Snapshot)>,
    best: Option<(usize, f64, Snapshot)>,
}

fn auc_vs(energy: &dyn Energy, normal: &Tensor, other: &Tensor) -> Option<f64> {
    pseudo_anomaly_auc(energy, normal, other)
}

impl<'a> Watch<'a> {
    pub fn new(input: WatchInput<'a>) -> Self {
        Watch { input, history: Vec::new(), start: None, best: None }
    }

    /// The criterion of the current weights, with its parts (pseudo-anomaly, other-ids).
    fn criterion(&self, energy: &dyn Energy) -> (Option<f64>, Option<f64>, Option<f64>) {
        let h = self.input.heldout;
        let pseudo = self.input.pseudo.as_ref().and_then(|p| auc_vs(energy, h, p));
        let others = self.input.other_ids.and_then(|o| auc_vs(energy, h, o));
        let c = match self.input.criterion {
            Criterion::PseudoAnomaly => pseudo,
            Criterion::OtherIds => others.or(pseudo),
            Criterion::Both => match (pseudo, others) {
                (Some(p), Some(o)) => Some(0.5 * (p + o)),
                (p, o) => p.or(o),
            },
        };
        (c, pseudo, others)
    }

    /// Watch the weights now in `energy_vs` as epoch `epoch` (0 = before MPDR); returns named
    /// metrics for the log and the manifest.
    pub fn observe(
        &mut self,
        epoch: usize,
        e_train: Option<f64>,
        energy: &dyn Energy,
        energy_vs: &tch::nn::VarStore,
        ensemble: &[AutoEncoder],
        cfg: &MpdrConfig,
    ) -> Vec<(String, f64)> {
        let (criterion, pseudo, others) = self.criterion(energy);
        let uniform = (self.input.uniform_per_ae > 0 && epoch > 0)
            .then(|| {
                manifold_uniform_auc(energy, ensemble, self.input.heldout, self.input.uniform_per_ae, &mut TorchNoise)
            })
            .flatten();
        let diagnostics = self.input.diagnostics.then(|| {
            let di = DiagnoseInput {
                heldout: self.input.heldout,
                pseudo: self.input.pseudo.as_ref(),
                other_ids: self.input.other_ids,
                n_mels: self.input.n_mels,
                max_rows: 1536,
                seed: self.input.seed,
            };
            diagnose(energy, ensemble, cfg, &di, epoch, e_train)
        });
        if let Some(c) = criterion {
            if self.start.is_none() {
                self.start = Some((epoch, c, Snapshot::take(energy_vs)));
            }
            if self.best.as_ref().is_none_or(|b| c > b.1) {
                self.best = Some((epoch, c, Snapshot::take(energy_vs)));
            }
        }
        let mut out = Vec::new();
        let mut put = |name: &str, v: Option<f64>| {
            if let Some(v) = v {
                out.push((name.to_string(), v));
            }
        };
        put("criterion", criterion);
        put("pseudo_anomaly_auc", pseudo);
        put("other_ids_auc", others);
        put("manifold_uniform_auc", uniform);
        if let Some(d) = &diagnostics {
            put("diag_e_heldout", Some(d.e_heldout));
            put("diag_e_neg", Some(d.e_neg()));
            put("diag_probe_auc", d.probe_auc);
            put("diag_e_pseudo", d.e_pseudo);
            put("diag_e_other_ids", d.e_other_ids);
        }
        self.history.push(EpochRecord {
            epoch,
            criterion,
            pseudo_anomaly_auc: pseudo,
            other_ids_auc: others,
            manifold_uniform_auc: uniform,
            diagnostics,
        });
        out
    }

    /// Apply `rule` after the stage: restore the chosen epoch's weights into `energy_vs` and
    /// say what was shipped and why. `None` when no epoch had a criterion (no held-out data).
    pub fn decide(self, rule: Selection, energy_vs: &tch::nn::VarStore) -> anyhow::Result<Option<ShippedEnergy>> {
        let crit = self.input.criterion.name().to_string();
        let (Some((e0, c0, snap0)), Some((eb, cb, snapb))) = (self.start, self.best) else { return Ok(None) };
        let last = self.history.iter().rev().find_map(|r| r.criterion.map(|c| (r.epoch, c)));
        let Some((el, cl)) = last else { return Ok(None) };
        let (epoch, score, reason) = match rule {
            Selection::Last => (el, cl, "rule `last`: the last epoch, whatever the criterion".to_string()),
            Selection::Guard if cl >= c0 => (
                el,
                cl,
                format!("rule `guard`: the last epoch's criterion {cl:.4} >= the pre-trained energy's {c0:.4}"),
            ),
            Selection::Guard => {
                snap0.restore(energy_vs)?;
                (e0, c0, format!("rule `guard`: the last epoch's criterion {cl:.4} < the pre-trained energy's {c0:.4}: shipped the pre-trained energy"))
            }
            Selection::Best => {
                snapb.restore(energy_vs)?;
                (
                    eb,
                    cb,
                    format!(
                        "rule `best`: epoch {eb} has the best criterion {cb:.4} (pre-trained {c0:.4}, last {cl:.4})"
                    ),
                )
            }
        };
        Ok(Some(ShippedEnergy {
            rule: rule_name(rule).into(),
            criterion: crit,
            shipped: if epoch == e0 { "pretrained".into() } else { "mpdr".into() },
            epoch: epoch as u64,
            score_shipped: score,
            score_pretrained: c0,
            score_last: cl,
            reason,
        }))
    }
}

pub fn rule_name(rule: Selection) -> &'static str {
    match rule {
        Selection::Last => "last",
        Selection::Guard => "guard",
        Selection::Best => "best",
    }
}
