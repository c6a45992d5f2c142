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
//! - `guard`: ship the last epoch if its criterion beats the pre-trained energy's by more than
//!   a margin, else the pre-trained energy — MPDR never ships below its own AE on the criterion;
//! - `best`: ship the MPDR epoch with the best criterion if it beats the pre-trained energy's
//!   by more than the margin, else the pre-trained energy.
//!
//! The margin is `margin_se` standard errors of the pre-trained energy's criterion AUC
//! (Hanley–McNeil): an epoch must win by more than the criterion's own noise, so a noisy
//! flicker of the criterion does not ship a worse energy (BENCHMARKS.md, issue 12 §5).

use super::error::TrainError;
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

impl<'a> Watch<'a> {
    pub fn new(input: WatchInput<'a>) -> Self {
        Watch { input, history: Vec::new(), start: None, best: None }
    }

    /// The criterion of the current weights, with its parts (pseudo-anomaly, other-ids).
    fn criterion(&self, energy: &dyn Energy) -> (Option<f64>, Option<f64>, Option<f64>) {
        let h = self.input.heldout;
        let pseudo = self.input.pseudo.as_ref().and_then(|p| pseudo_anomaly_auc(energy, h, p));
        let others = self.input.other_ids.and_then(|o| pseudo_anomaly_auc(energy, h, o));
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

    /// The weights of the first watched epoch (the energy MPDR started from).
    pub fn start_weights(&self) -> Option<&Snapshot> {
        self.start.as_ref().map(|s| &s.2)
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
            let first = self.start.is_none();
            if first {
                self.start = Some((epoch, c, Snapshot::take(energy_vs)));
            }
            // The best *MPDR* epoch (the start only until there is one).
            if first || self.best.as_ref().is_none_or(|b| c > b.1 || Some(b.0) == self.start.as_ref().map(|s| s.0)) {
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
    pub fn decide(
        &self,
        rule: Selection,
        margin_se: f64,
        energy_vs: &tch::nn::VarStore,
    ) -> Result<Option<ShippedEnergy>, TrainError> {
        let crit = self.input.criterion.name().to_string();
        let (Some((e0, c0, snap0)), Some((eb, cb, snapb))) = (&self.start, &self.best) else { return Ok(None) };
        let (e0, c0, eb, cb) = (*e0, *c0, *eb, *cb);
        let last = self.history.iter().rev().find_map(|r| r.criterion.map(|c| (r.epoch, c)));
        let Some((el, cl)) = last else { return Ok(None) };
        let h = self.input.heldout.size()[0].max(1) as usize;
        let p = self.input.pseudo.as_ref().map(|p| p.size()[0].max(1) as usize).unwrap_or(h);
        let margin = margin_se * auc_standard_error(c0, p, h);
        let need = c0 + margin;
        let beat = |c: f64| if margin > 0.0 { c > need } else { c >= need };
        let pre = |why: String| -> Result<(usize, f64, String), TrainError> {
            snap0.restore(energy_vs)?;
            Ok((e0, c0, format!("{why}: shipped the pre-trained energy")))
        };
        let (epoch, score, reason) = match rule {
            Selection::Last => (el, cl, "rule `last`: the last epoch, whatever the criterion".to_string()),
            Selection::Guard if beat(cl) => (
                el,
                cl,
                format!("rule `guard`: the last epoch's criterion {cl:.4} beats the pre-trained energy's {c0:.4} by more than the margin {margin:.4}"),
            ),
            Selection::Guard => pre(format!(
                "rule `guard`: the last epoch's criterion {cl:.4} does not beat the pre-trained energy's {c0:.4} by the margin {margin:.4}"
            ))?,
            Selection::Best if eb != e0 && beat(cb) => {
                snapb.restore(energy_vs)?;
                (eb, cb, format!("rule `best`: epoch {eb} has the best criterion {cb:.4}, above the pre-trained energy's {c0:.4} by more than the margin {margin:.4} (last {cl:.4})"))
            }
            Selection::Best => pre(format!(
                "rule `best`: no MPDR epoch beats the pre-trained energy's criterion {c0:.4} by the margin {margin:.4} (best {cb:.4} at epoch {eb}, last {cl:.4})"
            ))?,
        };
        Ok(Some(ShippedEnergy {
            rule: rule_name(rule).into(),
            criterion: crit,
            shipped: if epoch == e0 { "pretrained".into() } else { "mpdr".into() },
            epoch: epoch as u64,
            score_shipped: score,
            score_pretrained: c0,
            score_last: cl,
            margin,
            reason,
        }))
    }
}

/// Standard error of an AUC `a` estimated from `n_pos` positives and `n_neg` negatives
/// (Hanley & McNeil 1982).
pub fn auc_standard_error(a: f64, n_pos: usize, n_neg: usize) -> f64 {
    let a = a.clamp(0.0, 1.0);
    let (q1, q2) = (a / (2.0 - a), 2.0 * a * a / (1.0 + a));
    let (n1, n2) = (n_pos.max(1) as f64, n_neg.max(1) as f64);
    let var = (a * (1.0 - a) + (n1 - 1.0) * (q1 - a * a) + (n2 - 1.0) * (q2 - a * a)) / (n1 * n2);
    var.max(0.0).sqrt()
}

pub fn rule_name(rule: Selection) -> &'static str {
    match rule {
        Selection::Last => "last",
        Selection::Guard => "guard",
        Selection::Best => "best",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hanley_mcneil_standard_error() {
        // A = 0.5, 100 + 100: Q1 = Q2 = 1/3, var = (0.25 + 2·99·(1/3 − 1/4)) / 10^4.
        let want = ((0.25 + 2.0 * 99.0 * (1.0 / 3.0 - 0.25)) / 1e4f64).sqrt();
        assert!((auc_standard_error(0.5, 100, 100) - want).abs() < 1e-12);
        assert!(auc_standard_error(0.98, 4000, 4000) < auc_standard_error(0.98, 400, 400));
        assert!(auc_standard_error(0.99, 4000, 4000) < auc_standard_error(0.9, 4000, 4000));
        assert_eq!(auc_standard_error(1.0, 10, 10), 0.0);
    }
}
