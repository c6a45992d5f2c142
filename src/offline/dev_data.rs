//! The DCASE workflow over a whole `dev_data` folder: one bundle per machine (named by the
//! machine), bundles paired with machine folders by name, the per-id result table of the
//! DCASE baseline, and anomaly-score files for unlabelled clips (the DCASE evaluation set).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{vector_energies, OfflineError, Result};
use crate::data::extract::{self, OnBadFile};
use crate::error::InputError;
use crate::eval::report::Report;
use crate::model::Bundle;

/// The machine a bundle was trained on: the last component of its training data folder.
pub fn trained_machine(bundle: &Path) -> Result<String> {
    let m = Bundle::read_manifest(bundle)?;
    let data = PathBuf::from(&m.provenance.data);
    Ok(data.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default())
}

/// The bundle for `machine`: `models` itself when it is a bundle trained on that machine, else
/// `models/<machine>`. A mismatch is an error naming both.
pub fn bundle_for(models: &Path, machine: &str, several: bool) -> Result<PathBuf> {
    if models.join("manifest.toml").is_file() {
        let trained = trained_machine(models)?;
        if several {
            return Err(InputError::new(
                models,
                format!("a bundle trained on \"{trained}\", but --data holds several machine folders: give a folder of bundles named by machine (as `mpdr train --data <dev_data>` writes)"),
            )
            .into());
        }
        if !trained.is_empty() && trained != machine {
            // One bundle, one folder: a renamed copy of the data is common; say it, go on.
            tracing::warn!(bundle = %models.display(), trained, machine, "the bundle was trained on a folder of another name");
        }
        return Ok(models.to_path_buf());
    }
    let b = models.join(machine);
    if b.join("manifest.toml").is_file() {
        let trained = trained_machine(&b)?;
        if !trained.is_empty() && trained != machine {
            return Err(InputError::new(&b, format!("named \"{machine}\" but trained on \"{trained}\"")).into());
        }
        return Ok(b);
    }
    let mut have: Vec<String> = std::fs::read_dir(models)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().join("manifest.toml").is_file())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    have.sort();
    Err(InputError::new(models, format!("no bundle for machine \"{machine}\" (bundles here: {})", have.join(", ")))
        .into())
}

/// The per-id result table of the DCASE baseline (`result.csv`): per machine its ids' AUC and
/// pAUC, their arithmetic and harmonic means, then the same over every id.
pub fn result_csv(reports: &[Report]) -> String {
    let hmean = |v: &[f64]| v.len() as f64 / v.iter().map(|x| 1.0 / x.max(1e-12)).sum::<f64>();
    let amean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let mut s = String::from("machine,id,AUC,pAUC\n");
    let (mut all_auc, mut all_pauc) = (Vec::new(), Vec::new());
    for r in reports {
        let auc: Vec<f64> = r.ids.iter().map(|i| i.auc).collect();
        let pauc: Vec<f64> = r.ids.iter().map(|i| i.pauc).collect();
        for i in &r.ids {
            let _ = writeln!(s, "{},{},{:.6},{:.6}", r.machine, i.id, i.auc, i.pauc);
        }
        let _ = writeln!(s, "{},arithmetic mean,{:.6},{:.6}", r.machine, amean(&auc), amean(&pauc));
        let _ = writeln!(s, "{},harmonic mean,{:.6},{:.6}", r.machine, hmean(&auc), hmean(&pauc));
        all_auc.extend(auc);
        all_pauc.extend(pauc);
    }
    if reports.len() > 1 {
        let _ = writeln!(s, "all,arithmetic mean,{:.6},{:.6}", amean(&all_auc), amean(&all_pauc));
        let _ = writeln!(s, "all,harmonic mean,{:.6},{:.6}", hmean(&all_auc), hmean(&all_pauc));
    }
    s
}

/// Machine id of a clip name with or without a label: `id_01_00000000.wav`,
/// `normal_id_01_00000000.wav` -> "01".
pub fn clip_id(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let parts: Vec<&str> = stem.split('_').collect();
    let k = parts.iter().position(|p| *p == "id")?;
    let id = parts.get(k + 1)?;
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then(|| id.to_string())
}

/// `mpdr score`: every clip of `clips` (a folder of `[label_]id_XX_*.{wav,npy}`, e.g. a DCASE
/// evaluation-set machine's test/) scored by `bundle`; writes `anomaly_score_<machine>_id_XX.csv`
/// (`file,score`, the DCASE submission format) per id into `out`. Returns the files written.
pub fn score_unlabelled(
    bundle: &Bundle,
    clips: &Path,
    machine: &str,
    out: &Path,
    cache: Option<&Path>,
    on_bad: OnBadFile,
) -> Result<Vec<PathBuf>> {
    let params =
        bundle.manifest.features.clone().ok_or_else(|| InputError::new(clips, "the bundle is not an audio model"))?;
    let mut files = crate::files::file_or_folder(clips, "wav").unwrap_or_default();
    files.extend(crate::files::file_or_folder(clips, "npy").unwrap_or_default());
    files.sort();
    if files.is_empty() {
        return Err(InputError::new(clips, "no .wav or .npy clips").into());
    }
    let mut ided = Vec::new();
    for f in files {
        let id = clip_id(&f)
            .ok_or_else(|| InputError::new(&f, "file name has no machine id: expected [label_]id_XX_*.wav"))?;
        if bundle.manifest.provenance.machine_id.as_ref().is_none_or(|m| *m == id) {
            ided.push((id, f));
        }
    }
    let paths: Vec<PathBuf> = ided.iter().map(|(_, f)| f.clone()).collect();
    let lms = extract::logmels(&paths, &params, &bundle.manifest.audio.unwrap_or_default(), cache, on_bad)?;
    std::fs::create_dir_all(out).map_err(|e| InputError::new(out, format!("cannot create: {e}")))?;
    let mut by_id: std::collections::BTreeMap<String, String> = Default::default();
    for ((id, f), lm) in ided.iter().zip(lms) {
        let Some(lm) = lm else { continue };
        let Some(e) = vector_energies(bundle, &lm, &params)? else { continue };
        let score = e.iter().map(|&x| x as f64).sum::<f64>() / e.len() as f64;
        let name = f.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let _ = writeln!(by_id.entry(id.clone()).or_default(), "{name},{score}");
    }
    let mut written = Vec::new();
    for (id, rows) in by_id {
        let p = out.join(format!("anomaly_score_{machine}_id_{id}.csv"));
        std::fs::write(&p, rows).map_err(|e| OfflineError::Input(InputError::new(&p, format!("cannot write: {e}"))))?;
        written.push(p);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::report::IdReport;

    #[test]
    fn clip_ids_with_and_without_labels() {
        assert_eq!(clip_id(Path::new("t/id_03_00000001.wav")).as_deref(), Some("03"));
        assert_eq!(clip_id(Path::new("anomaly_id_01_00000001.npy")).as_deref(), Some("01"));
        assert_eq!(clip_id(Path::new("normal_00.wav")), None);
    }

    #[test]
    fn the_result_table_has_ids_and_both_means() {
        let r = |m: &str, v: &[(f64, f64)]| Report {
            machine: m.into(),
            model: "ae".into(),
            ids: v
                .iter()
                .enumerate()
                .map(|(i, &(auc, pauc))| IdReport { id: format!("0{i}"), auc, pauc, n_normal: 1, n_anomaly: 1 })
                .collect(),
            mean_auc: 0.0,
            mean_pauc: 0.0,
            threshold: None,
            false_alarm_rate: None,
            detection_rate: None,
            window_s: None,
            window_false_alarm_rate: None,
            window_detection_rate: None,
        };
        let csv = result_csv(&[r("fan", &[(0.5, 0.5), (1.0, 1.0)]), r("pump", &[(0.8, 0.6)])]);
        assert!(csv.contains("fan,01,1.000000,1.000000\n"), "{csv}");
        assert!(csv.contains("fan,arithmetic mean,0.750000,0.750000\n"), "{csv}");
        assert!(csv.contains("fan,harmonic mean,0.666667,0.666667\n"), "{csv}");
        assert!(csv.contains("all,arithmetic mean,0.766667,0.700000\n"), "{csv}");
    }
}
