//! `mpdr train` then `mpdr eval` through the real binary on a generated DCASE-layout folder.

use std::path::Path;

use mpdr::audio::wav;

use super::util::{mpdr, train_ok};

/// Deterministic machine-like sound: a hum with harmonics whose fundamental depends on the
/// machine id, plus broadband noise; anomalies add a 2.6 kHz whine and periodic clicks.
fn clip(id: u32, index: u32, anomaly: bool) -> Vec<f32> {
    let mut s: u32 = 0x9E37_79B9 ^ (id * 7919 + index * 104_729 + anomaly as u32);
    let mut noise = move || {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (s as f64 / 4_294_967_296.0) - 0.5
    };
    let f0 = if id == 0 { 120.0 } else { 180.0 };
    let jitter = 1.0 + 0.01 * noise();
    (0..32_000)
        .map(|n| {
            let t = n as f64 / 16_000.0;
            let mut x: f64 =
                (1..6).map(|h| (2.0 * std::f64::consts::PI * f0 * jitter * h as f64 * t).sin() * 0.3 / h as f64).sum();
            x += 0.1 * noise();
            if anomaly {
                x += 0.08 * (2.0 * std::f64::consts::PI * 2600.0 * t).sin();
                if n % 1600 < 40 {
                    x += 0.3 * noise();
                }
            }
            (x * 0.5) as f32
        })
        .collect()
}

fn make_machine(root: &Path) {
    for id in [0u32, 2] {
        for i in 0..10 {
            let p = root.join(format!("train/normal_id_0{id}_{i:08}.wav"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            wav::write_pcm16(&p, 16_000, 1, &clip(id, i, false)).unwrap();
        }
        for i in 0..4 {
            std::fs::create_dir_all(root.join("test")).unwrap();
            wav::write_pcm16(
                &root.join(format!("test/normal_id_0{id}_{:08}.wav", 100 + i)),
                16_000,
                1,
                &clip(id, 100 + i, false),
            )
            .unwrap();
            wav::write_pcm16(
                &root.join(format!("test/anomaly_id_0{id}_{i:08}.wav")),
                16_000,
                1,
                &clip(id, 200 + i, true),
            )
            .unwrap();
        }
    }
}

/// A temp dir holding a generated machine folder `toy/` and `recipe` as `train.toml`.
fn toy_with_recipe(recipe: &str) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let machine = d.path().join("toy");
    make_machine(&machine);
    let cfg = d.path().join("train.toml");
    std::fs::write(&cfg, recipe).unwrap();
    (d, machine, cfg)
}

const CONFIG: &str = r#"
seed = 3
holdout = 0.2
[energy]
preset = "paper-ae128"
[pretrain]
epochs = 40
batch_size = 128
[calibration]
window_s = 2.0
false_alarms_per_day = 1.0
"#;

#[test]
fn train_then_eval_writes_a_calibrated_bundle_and_a_dcase_report() {
    let (d, machine, cfg) = toy_with_recipe(CONFIG);
    let (bundle, report) = (d.path().join("bundle"), d.path().join("report"));
    let cache = d.path().join("cache");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    train_ok(&machine, "ae", &bundle, &cfg, &["--cache-dir", &s(&cache)]);
    let manifest = std::fs::read_to_string(bundle.join("manifest.toml")).unwrap();
    assert!(manifest.contains("kind = \"ae\"") && manifest.contains("method = \"gamma-moments\""), "{manifest}");
    assert_eq!(std::fs::read_dir(cache.join("features")).unwrap().count(), 20, "train files cached");

    let o = mpdr(&[
        "eval",
        "--bundle",
        &s(&bundle),
        "--data",
        &s(&machine),
        "--out",
        &s(&report),
        "--cache-dir",
        &s(&cache),
    ]);
    assert!(o.status.success(), "eval failed: {}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["machine"], "toy");
    assert_eq!(json["model"], "ae");
    let ids = json["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 2);
    for id in ids {
        assert_eq!((id["n_normal"].as_u64(), id["n_anomaly"].as_u64()), (Some(4), Some(4)));
        let (auc, pauc) = (id["auc"].as_f64().unwrap(), id["pauc"].as_f64().unwrap());
        assert!((0.0..=1.0).contains(&auc) && (0.0..=1.0).contains(&pauc));
    }
    assert!(json["mean_auc"].as_f64().unwrap() >= 0.9, "the whine and clicks should be easy: {json}");
    let thr = json["threshold"].as_f64().unwrap();
    assert!(manifest.contains(&format!("value = {thr}")), "report threshold {thr} is the bundle's");
    let csv = std::fs::read_to_string(report.join("scores.csv")).unwrap();
    assert_eq!(csv.lines().count(), 17);
    assert!(csv.starts_with("file,id,label,score\n"));
    assert!(std::fs::read_to_string(report.join("report.md")).unwrap().contains("| **mean** |"));
    if mpdr::eval::plot::font_available() {
        for png in ["roc_00.png", "roc_02.png", "hist_00.png", "hist_02.png"] {
            let bytes = std::fs::read(report.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
            assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 2000, "{png} is not a drawn PNG");
        }
    } else {
        eprintln!("no TrueType font installed: plot files not checked");
    }
}

#[test]
fn bad_folders_give_errors_naming_the_path() {
    let d = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let out = d.path().join("b");
    let missing = d.path().join("nope");
    let o = mpdr(&["train", "--data", &s(&missing), "--model", "ae", "--out", &s(&out), "--no-cache"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope"));
    let m = d.path().join("m");
    std::fs::create_dir_all(m.join("train")).unwrap();
    let o = mpdr(&["train", "--data", &s(&m), "--model", "ae", "--out", &s(&out), "--no-cache"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no training files"));
    wav::write_pcm16(&m.join("train/clip_00.wav"), 16_000, 1, &[0.0; 100]).unwrap();
    let o = mpdr(&["train", "--data", &s(&m), "--model", "ae", "--out", &s(&out), "--no-cache"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("clip_00.wav") && err.contains("no label"), "{err}");
    let cfg = d.path().join("bad.toml");
    std::fs::write(&cfg, "[mpdr]\nsigma_max = -1\n").unwrap();
    let o = mpdr(&["train", "--data", &s(&m), "--model", "ae", "--out", &s(&out), "--config", &s(&cfg)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.toml") && err.contains("mpdr.sigma_min"), "{err}");
    assert!(!out.exists());
}

#[test]
fn ctrl_c_keeps_a_checkpoint_and_resume_finishes_the_run() {
    let (d, machine, cfg) =
        toy_with_recipe("[energy]\npreset = \"paper-ae128\"\n[pretrain]\nepochs = 400\nbatch_size = 128\n");
    let out = d.path().join("bundle");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let args =
        ["train", "--data", &s(&machine), "--model", "ae", "--out", &s(&out), "--config", &s(&cfg), "--no-cache"];
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_mpdr"))
        .args(args)
        .env("MPDR_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ckpt = out.join("checkpoint/manifest.toml");
    let t0 = std::time::Instant::now();
    while !ckpt.exists() && t0.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(ckpt.exists(), "no checkpoint after the first epoch");
    let kill = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "an interrupted run must exit non-zero");
    assert!(err.contains("--resume") && !err.contains("panicked"), "{err}");
    assert!(!out.join("manifest.toml").exists(), "no final bundle from an interrupted run");
    // The checkpoint is a valid bundle, part-way through pre-training.
    let b = mpdr::model::Bundle::load(&out.join("checkpoint"), tch::Device::Cpu).unwrap();
    let done = b.manifest.provenance.stages["pretrain_epochs"];
    assert!((1..400).contains(&done), "checkpoint at epoch {done}");
    assert!(b.manifest.scaler.is_some() && b.manifest.features.is_some());

    let mut resume = args.to_vec();
    resume.push("--resume");
    let o = mpdr(&resume);
    assert!(o.status.success(), "resume failed: {}", String::from_utf8_lossy(&o.stderr));
    let m = std::fs::read_to_string(out.join("manifest.toml")).unwrap();
    assert!(m.contains("pretrain_epochs = 400"), "{m}");
    assert!(!out.join("checkpoint").exists(), "checkpoint removed after the final bundle");
}

#[test]
fn mpdr_idnn_trains_and_evaluates_through_the_pipeline() {
    let recipe = "holdout = 0.2\n[manifold]\nlatent_dims = [8, 16]\nhidden = [64]\nepochs = 2\nbatch_size = 128\n\
                  [pretrain]\nepochs = 5\nbatch_size = 128\n[mpdr]\nlr = 1e-4\n[mpdr_schedule]\nepochs = 2\nbatch_size = 128\n\
                  validation_samples = 32\n[calibration]\nwindow_s = 2.0\n";
    let (d, machine, cfg) = toy_with_recipe(recipe);
    let (bundle, report) = (d.path().join("bundle"), d.path().join("report"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    train_ok(&machine, "mpdr-idnn", &bundle, &cfg, &["--no-cache"]);
    let b = mpdr::model::Bundle::load(&bundle, tch::Device::Cpu).unwrap();
    assert!(matches!(b.manifest.energy, mpdr::nn::EnergySpec::Idnn(_)));
    // On so small a set the MPDR stage may not beat its pre-trained IDNN on the held-out
    // pseudo-anomalies; then the bundle is the IDNN, labelled so, without the manifold AEs.
    let shipped = b.manifest.provenance.shipped.as_ref().expect("the MPDR stage says what it shipped");
    let (label, manifold) = if shipped.shipped == "mpdr" { ("mpdr-idnn", 2) } else { ("idnn", 0) };
    eprintln!("mpdr-idnn: shipped {} at epoch {} ({})", shipped.shipped, shipped.epoch, shipped.reason);
    assert_eq!(b.manifold.len(), manifold);
    let st = &b.manifest.provenance.stages;
    assert_eq!((st["manifold-1_epochs"], st["pretrain_epochs"], st["mpdr_epochs"]), (2, 5, 2));
    assert!(b.manifest.provenance.metrics.contains_key("mpdr_epoch2_manifold_uniform_auc"));
    let o = mpdr(&["eval", "--bundle", &s(&bundle), "--data", &s(&machine), "--out", &s(&report), "--no-cache"]);
    assert!(o.status.success(), "eval failed: {}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["model"], label);
    eprintln!("mpdr-idnn synthetic mean AUC {}", json["mean_auc"]);
    assert!(json["mean_auc"].as_f64().unwrap() > 0.5, "{json}");
}

#[test]
fn eval_decodes_recordings_with_the_channel_the_model_was_trained_on() {
    // Channel 1 carries the machine; channel 0 carries the opposite label's sound, so the mix
    // of a normal and of an anomalous file is the same sound: only channel 1 separates them.
    let d = tempfile::tempdir().unwrap();
    let machine = d.path().join("stereo");
    let stereo = |path: &Path, id: u32, i: u32, anomaly: bool| {
        let (ch1, ch0) = (clip(id, i, anomaly), clip(id, i + 1000, !anomaly));
        let inter: Vec<f32> = ch0.iter().zip(&ch1).flat_map(|(a, b)| [*a, *b]).collect();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        wav::write_pcm16(path, 16_000, 2, &inter).unwrap();
    };
    for i in 0..10 {
        stereo(&machine.join(format!("train/normal_id_00_{i:08}.wav")), 0, i, false);
    }
    for i in 0..4 {
        stereo(&machine.join(format!("test/normal_id_00_{:08}.wav", 100 + i)), 0, 100 + i, false);
        stereo(&machine.join(format!("test/anomaly_id_00_{i:08}.wav")), 0, 200 + i, true);
    }
    let cfg = d.path().join("train.toml");
    std::fs::write(&cfg, format!("{CONFIG}[audio]\nchannel = 1\n")).unwrap();
    let (bundle, report) = (d.path().join("bundle"), d.path().join("report"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    train_ok(&machine, "ae", &bundle, &cfg, &[]);
    let b = mpdr::model::Bundle::load(&bundle, tch::Device::Cpu).unwrap();
    assert_eq!(b.manifest.audio.map(|a| a.channel), Some(mpdr::audio::ChannelSelect::Index(1)));
    let o = mpdr(&["eval", "--bundle", &s(&bundle), "--data", &s(&machine), "--out", &s(&report), "--no-cache"]);
    assert!(o.status.success(), "eval failed: {}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap()).unwrap();
    assert!(json["mean_auc"].as_f64().unwrap() > 0.9, "channel 1 separates the clips: {json}");
}

#[test]
fn a_model_of_one_machine_id_uses_the_other_ids_for_its_checks_and_is_evaluated_on_its_own_id() {
    let recipe = "holdout = 0.2\n[manifold]\nlatent_dims = [8]\nhidden = [64]\nepochs = 2\nbatch_size = 128\n\
                  [pretrain]\nepochs = 5\nbatch_size = 128\n[mpdr]\nlr = 1e-4\ntexture = \"residual-after\"\nneg_equilibrium = 2.0\n\
                  other_ids_negatives = 0.25\n[mpdr_schedule]\nepochs = 2\nbatch_size = 128\nselect = \"guard\"\n\
                  validation_samples = 0\n[calibration]\nwindow_s = 2.0\n";
    let (d, machine, cfg) = toy_with_recipe(recipe);
    let (bundle, report) = (d.path().join("bundle"), d.path().join("report"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    train_ok(&machine, "mpdr-r", &bundle, &cfg, &["--no-cache", "--id", "02", "--diagnostics"]);
    let b = mpdr::model::Bundle::load(&bundle, tch::Device::Cpu).unwrap();
    assert_eq!(b.manifest.provenance.machine_id.as_deref(), Some("02"));
    let shipped = b.manifest.provenance.shipped.clone().expect("the product rule's decision is in the manifest");
    assert_eq!((shipped.rule.as_str(), shipped.criterion.as_str()), ("guard", "pseudo-anomaly"));
    assert!(["pretrained", "mpdr"].contains(&shipped.shipped.as_str()));
    let m = &b.manifest.provenance.metrics;
    assert!(m.contains_key("mpdr_epoch0_other_ids_auc") && m.contains_key("mpdr_epoch2_diag_probe_auc"), "{m:?}");
    let md = std::fs::read_to_string(bundle.join("training.md")).unwrap();
    assert!(md.contains("**Shipped:") && md.contains("| 2 |"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("training.json")).unwrap()).unwrap();
    assert_eq!(json["epochs"].as_array().unwrap().len(), 3, "epochs 0, 1, 2 watched");
    let o = mpdr(&["eval", "--bundle", &s(&bundle), "--data", &s(&machine), "--out", &s(&report), "--no-cache"]);
    assert!(o.status.success(), "eval failed: {}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap()).unwrap();
    let ids: Vec<&str> = r["ids"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["02"], "a model of id 02 is evaluated on id 02 only");
    // An id without training files is refused, naming the folder and the ids there.
    let o = mpdr(&[
        "train",
        "--data",
        &s(&machine),
        "--model",
        "ae",
        "--out",
        &s(&d.path().join("x")),
        "--id",
        "07",
        "--no-cache",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--id 07") && err.contains("00, 02"), "{err}");
}

#[test]
fn a_plain_folder_of_recordings_trains_a_bundle() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("press-3");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..6 {
        let p = data.join(format!("recording-{i}.wav"));
        wav::write_pcm16(&p, 16_000, 1, &super::monitor::machine(3.0, 60 + i, |_| false)).unwrap();
    }
    let cfg = d.path().join("train.toml");
    std::fs::write(
        &cfg,
        "seed = 2\nholdout = 0.34\n[pretrain]\nepochs = 3\nbatch_size = 128\n[calibration]\nwindow_s = 1.0\n",
    )
    .unwrap();
    let out = d.path().join("bundle");
    super::util::train_ok(&data, "ae", &out, &cfg, &["--no-cache"]);
    let m = mpdr::model::Bundle::read_manifest(&out).unwrap();
    assert!(m.threshold.is_some(), "calibrated on the held-out recordings");
    assert!(m.provenance.data.contains("press-3"), "{}", m.provenance.data);
}

#[test]
fn one_long_recording_is_cut_into_clips_and_gives_a_held_out_share() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("line-7");
    std::fs::create_dir_all(&data).unwrap();
    wav::write_pcm16(&data.join("shift.wav"), 16_000, 1, &super::monitor::machine(40.0, 91, |_| false)).unwrap();
    let cfg = d.path().join("train.toml");
    std::fs::write(
        &cfg,
        "seed = 2\nholdout = 0.25\nclip_s = 5.0\n[pretrain]\nepochs = 2\nbatch_size = 128\n[calibration]\nwindow_s = 1.0\n",
    )
    .unwrap();
    let out = d.path().join("bundle");
    train_ok(&data, "ae", &out, &cfg, &["--no-cache"]);
    let t = mpdr::model::Bundle::read_manifest(&out).unwrap().threshold.expect("calibrated on held-out clips");
    assert_eq!(
        t.fitted_on.as_deref(),
        Some("training: 2 held-out normal clip(s)"),
        "40 s in 5-s clips, a quarter held out"
    );
}

#[test]
fn record_writes_dcase_named_clips_that_train_accepts_and_warns_on_silence() {
    let d = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let long = d.path().join("long.wav");
    wav::write_pcm16(&long, 16_000, 1, &super::monitor::machine(35.0, 77, |_| false)).unwrap();
    let ds = d.path().join("ds");
    let o =
        mpdr(&["record", "--from", &s(&long), "--out", &s(&ds), "--machine", "pump", "--id", "05", "--clip-s", "5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let train = ds.join("pump/train");
    let mut names: Vec<String> =
        std::fs::read_dir(&train).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    names.sort();
    assert_eq!(names.len(), 7, "35 s in 5-s clips: {names:?}");
    assert_eq!(names[0], "normal_id_05_00000000.wav");
    assert_eq!(names[6], "normal_id_05_00000006.wav");
    for n in &names {
        let r = hound::WavReader::open(train.join(n)).unwrap();
        assert_eq!((r.spec().sample_rate, r.spec().channels, r.len()), (16_000, 1, 80_000), "{n}");
    }
    let cfg = d.path().join("train.toml");
    std::fs::write(
        &cfg,
        "seed = 2\nholdout = 0.3\n[pretrain]\nepochs = 2\nbatch_size = 128\n[calibration]\nwindow_s = 1.0\n",
    )
    .unwrap();
    train_ok(&ds.join("pump"), "ae", &d.path().join("bundle"), &cfg, &["--no-cache"]);

    // Silence is recorded and warned about.
    let quiet = d.path().join("quiet.wav");
    wav::write_pcm16(&quiet, 16_000, 1, &vec![0.0; 16_000 * 6]).unwrap();
    let o = mpdr(&["record", "--from", &s(&quiet), "--out", &s(&ds), "--machine", "quiet"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("warning: the input is silent"), "{out}");
    // ALSA's null device through cpal, which hides the one named "null": a named one in the
    // user's ~/.asoundrc (what `mpdr devices` tells a user without a microphone to do).
    let home = d.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(".asoundrc"), "pcm.silence {\n type null\n hint { show on description \"silence\" }\n}\n")
        .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mpdr"))
        .args(["record", "--device", "silence", "--out", &s(&ds), "--machine", "null", "--minutes", "0.2"])
        .args(["--clip-s", "5"])
        .env("HOME", &home)
        .output()
        .unwrap();
    if o.status.success() {
        assert!(String::from_utf8_lossy(&o.stdout).contains("warning: the input is silent"));
        let clips: Vec<_> = std::fs::read_dir(ds.join("null/train")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(clips.len(), 2, "12 s of the null device in 5-s clips");
        for c in clips {
            let mut r = hound::WavReader::open(&c).unwrap();
            assert_eq!((r.spec().sample_rate, r.len()), (16_000, 80_000), "{}", c.display());
            assert!(r.samples::<i16>().all(|x| x.unwrap() == 0), "silence");
        }
    } else {
        // No ALSA library configuration at all (not Debian's libasound2-data): say so.
        eprintln!("SKIP null-device part: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
}
