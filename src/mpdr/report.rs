//! The training report of an MPDR stage (`<out>/training.md`, `training.json`, and with
//! `--diagnostics` `diagnostics.png`): the criterion and monitors of every watched epoch, the
//! diagnostics, and which energy was shipped and why.

use std::fmt::Write as _;
use std::path::Path;

use super::error::TrainError;
use super::watch::EpochRecord;
use crate::model::Manifest;

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "—".into())
}

/// Markdown of the watched epochs and the shipping decision.
pub fn markdown(manifest: &Manifest, history: &[EpochRecord]) -> String {
    let mut s = format!("# Training report — {}\n\n", manifest.kind);
    let _ = writeln!(
        s,
        "Data: `{}`{}; seed {}; {:.0} s.\n",
        manifest.provenance.data,
        manifest.provenance.machine_id.as_ref().map(|i| format!(", machine id {i}")).unwrap_or_default(),
        manifest.provenance.seed,
        manifest.provenance.wall_time_s
    );
    if let Some(sh) = &manifest.provenance.shipped {
        let _ = writeln!(s, "**Shipped: the {} energy** (epoch {}; criterion `{}` {:.4}; pre-trained {:.4}, last MPDR epoch {:.4}). {}.\n",
            if sh.shipped == "pretrained" { "pre-trained" } else { "MPDR" }, sh.epoch, sh.criterion, sh.score_shipped, sh.score_pretrained, sh.score_last, sh.reason);
    }
    if history.is_empty() {
        return s;
    }
    s.push_str("Epoch 0 is the energy MPDR starts from. Criterion and AUCs: held-out normal vectors against pseudo-anomalies and the other machine ids' normals (training data only). Diagnostics: mean energies; probe = texture-probe AUC, data vs negatives (1 = separable by smoothness alone).\n\n");
    s.push_str("| epoch | criterion | pseudo-anomaly AUC | other-ids AUC | manifold-uniform AUC | E(train) | E(held-out) | E(x⁻) | E(x⁻) per AE | E(pseudo) | E(other ids) | probe AUC | probe AUC (chain start) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in history {
        let d = r.diagnostics.as_ref();
        let per_ae = d
            .map(|d| d.e_neg_per_ae.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(" / "))
            .unwrap_or_else(|| "—".into());
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.epoch,
            opt(r.criterion),
            opt(r.pseudo_anomaly_auc),
            opt(r.other_ids_auc),
            opt(r.manifold_uniform_auc),
            opt(d.and_then(|d| d.e_train)),
            opt(d.map(|d| d.e_heldout)),
            opt(d.map(|d| d.e_neg())),
            per_ae,
            opt(d.and_then(|d| d.e_pseudo)),
            opt(d.and_then(|d| d.e_other_ids)),
            opt(d.and_then(|d| d.probe_auc)),
            opt(d.and_then(|d| d.probe_auc_init))
        );
    }
    if let Some(d) = history.iter().rev().find_map(|r| r.diagnostics.as_ref()) {
        let buckets: Vec<String> =
            d.e_neg_by_sigma.iter().map(|(lo, hi, e)| format!("σ {lo:.2}–{hi:.2}: {e:.4}")).collect();
        let _ = writeln!(s, "\nE(x⁻) by σ at the last epoch: {}.", buckets.join("; "));
    }
    s
}

/// Write training.md, training.json and (with diagnostics) diagnostics.png into `out`.
pub fn write(out: &Path, manifest: &Manifest, history: &[EpochRecord]) -> Result<(), TrainError> {
    if history.is_empty() && manifest.provenance.shipped.is_none() {
        return Ok(());
    }
    let json = serde_json::json!({ "shipped": manifest.provenance.shipped, "epochs": history });
    let path = out.join("training.json");
    let text = serde_json::to_string_pretty(&json).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    let write = |path: std::path::PathBuf, text: String| {
        std::fs::write(&path, text).map_err(|error| TrainError::Write { path, error })
    };
    write(path, text)?;
    write(out.join("training.md"), markdown(manifest, history))?;
    if history.iter().any(|r| r.diagnostics.is_some()) && crate::eval::plot::font_available() {
        let line = |name: &str, f: &dyn Fn(&EpochRecord) -> Option<f64>| {
            (name.to_string(), history.iter().filter_map(|r| f(r).map(|v| (r.epoch as f64, v))).collect::<Vec<_>>())
        };
        let energies = [
            line("E(held-out)", &|r| r.diagnostics.as_ref().map(|d| d.e_heldout)),
            line("E(negatives)", &|r| r.diagnostics.as_ref().map(|d| d.e_neg())),
            line("E(pseudo-anomalies)", &|r| r.diagnostics.as_ref().and_then(|d| d.e_pseudo)),
            line("E(other ids)", &|r| r.diagnostics.as_ref().and_then(|d| d.e_other_ids)),
        ];
        crate::eval::plot::lines_png(
            &out.join("diagnostics.png"),
            "MPDR energies per epoch",
            "MPDR epoch",
            "mean energy",
            &energies,
        )?;
        let aucs = [
            line("criterion", &|r| r.criterion),
            line("pseudo-anomaly AUC", &|r| r.pseudo_anomaly_auc),
            line("other-ids AUC", &|r| r.other_ids_auc),
            line("texture probe AUC", &|r| r.diagnostics.as_ref().and_then(|d| d.probe_auc)),
        ];
        crate::eval::plot::lines_png(
            &out.join("criterion.png"),
            "Label-free checks per epoch",
            "MPDR epoch",
            "AUC",
            &aucs,
        )?;
    }
    Ok(())
}
