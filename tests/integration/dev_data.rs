//! The DCASE workflow on a generated `dev_data`: one bundle per machine, bundles and machines
//! paired by name (a mismatch refused), the per-id result table, scores for unlabelled clips.

use std::path::Path;

use super::util::mpdr;

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn ok(o: &std::process::Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    out
}

#[test]
fn dev_data_trains_one_bundle_per_machine_and_evaluates_them_by_name() {
    let d = tempfile::tempdir().unwrap();
    let dev = d.path().join("dev_data");
    ok(&mpdr(&[
        "synth",
        "dataset",
        "--out",
        &s(&dev),
        "--machine",
        "fan",
        "--machine",
        "pump",
        "--ids",
        "2",
        "--train",
        "4",
        "--test",
        "2",
        "--clip-s",
        "3",
    ]));
    let recipe = d.path().join("tiny.toml");
    std::fs::write(
        &recipe,
        "seed = 3\nholdout = 0.25\n[pretrain]\nepochs = 3\nbatch_size = 128\n[calibration]\nwindow_s = 1.0\n",
    )
    .unwrap();
    let models = d.path().join("models");
    ok(&mpdr(&[
        "train",
        "--data",
        &s(&dev),
        "--model",
        "ae",
        "--out",
        &s(&models),
        "--config",
        &s(&recipe),
        "--no-cache",
    ]));
    for m in ["fan", "pump"] {
        assert!(models.join(m).join("manifest.toml").is_file(), "{m} bundle");
    }
    let rep = d.path().join("reports");
    ok(&mpdr(&["eval", "--bundle", &s(&models), "--data", &s(&dev), "--out", &s(&rep), "--no-cache"]));
    let csv = std::fs::read_to_string(rep.join("result.csv")).unwrap();
    for row in ["machine,id,AUC,pAUC", "fan,00,", "fan,02,", "pump,harmonic mean,", "all,arithmetic mean,"] {
        assert!(csv.contains(row), "{row} in\n{csv}");
    }
    // One machine's bundle on the whole dev_data: refused, naming what to give instead.
    let o = mpdr(&["eval", "--bundle", &s(&models.join("fan")), "--data", &s(&dev), "--out", &s(&rep), "--no-cache"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("trained on \"fan\"") && e.contains("folder of bundles named by machine"), "{e}");
    // Unlabelled clips, named like the DCASE evaluation set.
    let eval_set = d.path().join("eval/fan/test");
    std::fs::create_dir_all(&eval_set).unwrap();
    for (i, f) in std::fs::read_dir(dev.join("fan/test")).unwrap().map(|e| e.unwrap().path()).enumerate() {
        let id = if f.to_string_lossy().contains("id_00") { "00" } else { "02" };
        std::fs::copy(&f, eval_set.join(format!("id_{id}_{i:08}.wav"))).unwrap();
    }
    let out = d.path().join("scores");
    let stdout = ok(&mpdr(&[
        "score",
        "--bundle",
        &s(&models),
        "--data",
        &s(&d.path().join("eval/fan")),
        "--out",
        &s(&out),
        "--no-cache",
    ]));
    let sc = std::fs::read_to_string(out.join("anomaly_score_fan_id_00.csv")).unwrap();
    assert_eq!(sc.lines().count(), 4, "{sc}");
    assert!(sc.lines().all(|l| l.starts_with("id_00_") && l.split(',').nth(1).unwrap().parse::<f64>().is_ok()), "{sc}");
    assert!(stdout.contains("anomaly_score_fan_id_02.csv"), "{stdout}");
}
