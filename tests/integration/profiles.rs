//! Spectral-profile bundles (issue 23) through the real binary and the library: the default
//! `mpdr train` (a GMM on profiles) and `--model gaussian` train, save, load and score the
//! same; eval's windows are the daemon's; a synthetic fault is found by the daemon itself
//! (`mpdr backtest`); a training set too small for its density is refused in one line.

use std::path::{Path, PathBuf};

use mpdr::audio::{wav, AudioOptions};
use mpdr::data::extract::OnBadFile;
use mpdr::detect::{DetectConfig, Detector, ThresholdSetting};
use mpdr::features::profile::ProfileWindow;
use mpdr::features::stream::StreamingExtractor;
use mpdr::model::{Bundle, ModelKind};
use tch::{Device, Tensor};

use super::monitor::{machine, RATE};
use super::util::mpdr;

/// 16 normal 4-s training clips, and test clips: 3 normal, 3 with a whine from the start.
fn machine_folder(root: &Path) -> PathBuf {
    let data = root.join("machine");
    std::fs::create_dir_all(data.join("train")).unwrap();
    std::fs::create_dir_all(data.join("test")).unwrap();
    for i in 0..16 {
        wav::write_pcm16(&data.join(format!("train/normal_id_00_{i:08}.wav")), RATE, 1, &machine(4.0, i, |_| false))
            .unwrap();
    }
    for i in 0..3 {
        let n = data.join(format!("test/normal_id_00_{:08}.wav", 100 + i));
        wav::write_pcm16(&n, RATE, 1, &machine(4.0, 100 + i, |_| false)).unwrap();
        let a = data.join(format!("test/anomaly_id_00_{:08}.wav", 200 + i));
        wav::write_pcm16(&a, RATE, 1, &machine(4.0, 200 + i, |_| true)).unwrap();
    }
    data
}

/// 1-s profiles every quarter second (16 clips x 13 windows), calibrated for 1-s windows.
const RECIPE: &str = "seed = 3\nholdout = 0.25\n[features]\nframes = 1\n[features.profile]\nwindow_frames = 32\n\
                      hop_frames = 8\n[calibration]\nwindow_s = 1.0\nfalse_alarms_per_day = 1.0\n";

fn train(data: &Path, out: &Path, recipe: &Path, model: Option<&str>) -> std::process::Output {
    let (d, o, r) = (data.to_str().unwrap(), out.to_str().unwrap(), recipe.to_str().unwrap());
    let mut args = vec!["train", "--data", d, "--out", o, "--config", r, "--no-cache"];
    if let Some(m) = model {
        args.extend(["--model", m]);
    }
    mpdr(&args)
}

fn scores(b: &Bundle, x: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(b.score(x, 7).unwrap()).unwrap()
}

#[test]
fn profile_bundles_train_save_load_score_explain_and_detect() {
    let d = tempfile::tempdir().unwrap();
    let data = machine_folder(d.path());
    let recipe = d.path().join("recipe.toml");
    std::fs::write(&recipe, RECIPE).unwrap();
    for (model, kind) in [(None, ModelKind::Gmm), (Some("gaussian"), ModelKind::Gaussian)] {
        let out = d.path().join(format!("{kind}"));
        let o = train(&data, &out, &recipe, model);
        assert!(o.status.success(), "{kind}: {}", String::from_utf8_lossy(&o.stderr));
        let b = Bundle::load(&out, Device::Cpu).unwrap();
        assert_eq!(b.manifest.kind, kind, "no --model trains the default, a gmm");
        let f = b.manifest.features.clone().unwrap();
        assert_eq!((f.model_dim(), f.frames), (128, 1));
        assert!(b.manifest.threshold.is_some() && b.manifest.band_stats.is_some(), "calibrated and explained");

        // Save / load / score: a loaded copy scores raw profiles exactly as the trained one.
        let lm = mpdr::data::load_logmel(&data.join("test/anomaly_id_00_00000200.wav"), &f, &AudioOptions::default())
            .unwrap();
        let v = f.model_vectors(&lm);
        let x = Tensor::from_slice(&v.data).reshape([v.n as i64, v.dim as i64]);
        let copy = d.path().join(format!("{kind}-copy"));
        let mut again = Bundle::load(&out, Device::Cpu).unwrap();
        again.save(&copy).unwrap();
        assert_eq!(scores(&b, &x), scores(&Bundle::load(&copy, Device::Cpu).unwrap(), &x));

        // Explanations: per band, summing to the window's score.
        let (e, bands) = b.score_explained(&x, 128).unwrap();
        let sum = bands.expect("profile energies explain by band").sum_dim_intlist(
            [1i64].as_slice(),
            false,
            tch::Kind::Double,
        );
        let e = e.to_kind(tch::Kind::Double);
        let gap = f64::try_from((&e - sum).abs().max()).unwrap();
        let scale = f64::try_from(e.abs().max()).unwrap().max(1.0);
        assert!(gap <= 1e-5 * scale, "{kind}: explanations sum to the score (gap {gap} on {scale}; float32 bands)");

        // The whine is found: eval ranks every anomalous clip above every normal one.
        let r =
            mpdr::offline::evaluate(&b, &data, &d.path().join(format!("{kind}-eval")), None, OnBadFile::Fail).unwrap();
        assert_eq!(r.ids[0].auc, 1.0, "{kind}: {r:?}");
    }
}

#[test]
fn mpdr_gaussian_starts_from_the_gaussian_and_ships_by_the_product_rule() {
    let d = tempfile::tempdir().unwrap();
    let data = machine_folder(d.path());
    let recipe = d.path().join("recipe.toml");
    let tiny = "[manifold]\nlatent_dims = [8]\nhidden = [32]\nepochs = 2\nbatch_size = 32\n\
                [mpdr_schedule]\nepochs = 2\nbatch_size = 32\npseudo_shift = 0.5\n[mpdr]\nlr = 3e-5\n";
    std::fs::write(&recipe, format!("{RECIPE}{tiny}")).unwrap();
    let out = d.path().join("mpdr-gaussian");
    let o = train(&data, &out, &recipe, Some("mpdr-gaussian"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let b = Bundle::load(&out, Device::Cpu).unwrap();
    assert_eq!(b.manifest.kind, ModelKind::MpdrGaussian);
    let shipped = b.manifest.provenance.shipped.clone().expect("the product rule decided");
    assert!(shipped.score_shipped >= shipped.score_pretrained, "never below the Gaussian it starts from: {shipped:?}");
    // Epoch 0 is the Gaussian itself: a `gaussian` bundle of the same data and split scores
    // the same clips proportionally (E = q / D when the correction is still 0).
    let g = d.path().join("gaussian");
    assert!(train(&data, &g, &d.path().join("recipe.toml"), Some("gaussian")).status.success());
    let f = b.manifest.features.clone().unwrap();
    let lm =
        mpdr::data::load_logmel(&data.join("test/anomaly_id_00_00000200.wav"), &f, &AudioOptions::default()).unwrap();
    let v = f.model_vectors(&lm);
    let x = Tensor::from_slice(&v.data).reshape([v.n as i64, v.dim as i64]);
    let (e, bands) = b.score_explained(&x, 128).unwrap();
    let sum = bands.unwrap().sum_dim_intlist([1i64].as_slice(), false, tch::Kind::Float);
    assert!(f64::try_from((&e - sum).abs().max()).unwrap() <= 1e-4 * f64::try_from(e.abs().max()).unwrap().max(1.0));
    if shipped.shipped == "pretrained" {
        let q = scores(&Bundle::load(&g, Device::Cpu).unwrap(), &x);
        for (a, b) in scores(&b, &x).iter().zip(&q) {
            assert!((a - b / 128.0).abs() <= 1e-3 * (b / 128.0).abs().max(1.0), "{a} vs {}", b / 128.0);
        }
    }
}

#[test]
fn eval_windows_are_the_daemons_profile_windows() {
    let d = tempfile::tempdir().unwrap();
    let data = machine_folder(d.path());
    let recipe = d.path().join("recipe.toml");
    std::fs::write(&recipe, RECIPE).unwrap();
    let out = d.path().join("gaussian");
    assert!(train(&data, &out, &recipe, Some("gaussian")).status.success());
    let b = Bundle::load(&out, Device::Cpu).unwrap();
    let f = b.manifest.features.clone().unwrap();
    let p = f.profile.clone().unwrap();
    // A 12-s clip, anomalous in its second half.
    let clip = data.join("test/anomaly_id_00_00000300.wav");
    wav::write_pcm16(&clip, RATE, 1, &machine(12.0, 300, |t| t > 6.0)).unwrap();
    let r = d.path().join("eval");
    mpdr::offline::evaluate(&b, &data, &r, None, OnBadFile::Fail).unwrap();
    let csv = std::fs::read_to_string(r.join("windows.csv")).unwrap();
    let eval: Vec<f64> = csv
        .lines()
        .filter(|l| l.starts_with("anomaly_id_00_00000300.wav,"))
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(eval.len() >= 10, "{} windows", eval.len());

    // The daemon's route: streaming frames in 1-s blocks, the scorer's profile window (a
    // decision every window), Bundle::score_explained, the detector.
    let vector_s = f.hop_length as f64 / f.sample_rate as f64;
    let window_s = p.window_frames as f64 * vector_s;
    let cfg = DetectConfig {
        window_s,
        hop_s: window_s,
        threshold: ThresholdSetting::Value(f64::INFINITY),
        ..Default::default()
    };
    let mut extractor = StreamingExtractor::new(&f);
    let mut window = ProfileWindow::new(f.n_mels, &p, p.window_frames);
    let mut detector = Detector::new(cfg, f64::INFINITY, vector_s, f.n_mels);
    let samples = wav::read_mono(&clip, f.sample_rate, &AudioOptions::default()).unwrap();
    let mut live = Vec::new();
    for block in samples.chunks(RATE as usize) {
        let mut frames = Vec::new();
        extractor.push(block, |v| frames.extend_from_slice(v));
        for frame in frames.chunks_exact(f.n_mels) {
            let scored = window.push(frame).map(|profile| {
                let x = Tensor::from_slice(profile).reshape([1, 128]);
                let (e, bands) = b.score_explained(&x, 128).unwrap();
                (
                    f64::try_from(e.reshape([-1]).get(0)).unwrap(),
                    Vec::<f32>::try_from(bands.unwrap().reshape([-1])).unwrap(),
                )
            });
            let decided = match &scored {
                Some((e, bands)) => detector.push_window(Some((*e, Some(bands.as_slice())))),
                None => detector.push_window(None),
            };
            if let Some(dec) = decided {
                assert!(dec.bands.is_some(), "decisions carry band shares");
                live.push(dec.score);
            }
        }
    }
    // The same windows (the streamed clip lacks the last frames only right padding completes).
    assert!(live.len() + 1 >= eval.len() && live.len() <= eval.len(), "{live:?} vs {eval:?}");
    for (s, o) in live.iter().zip(&eval) {
        assert!((s - o).abs() <= 1e-4 * o.abs().max(1e-6), "live {s} vs eval {o}");
    }
    let half = eval.len() / 2;
    let (early, late) = (
        eval[..half - 1].iter().cloned().fold(0.0, f64::max),
        eval[half + 1..].iter().cloned().fold(f64::INFINITY, f64::min),
    );
    assert!(late > early, "the anomalous half scores above the normal half: {eval:?}");
}

/// The real binary with `args`, which must succeed.
fn ok(args: &[&str]) {
    let o = mpdr(args);
    assert!(o.status.success(), "mpdr {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr));
}

/// `mpdr synth` of the demo fan's instance, `seconds` long, with `extra` flags.
fn synth_fan(seed: &str, seconds: &str, out: &Path, extra: &[&str]) {
    let out = out.to_str().unwrap();
    let mut args = vec!["synth", "--machine", "fan", "--instance", "1000", "--seed", seed, "--seconds", seconds];
    args.extend_from_slice(extra);
    args.extend(["--out", out]);
    ok(&args);
}

#[test]
fn the_daemon_finds_a_synthetic_fault_with_the_default_model() {
    let d = tempfile::tempdir().unwrap();
    let train_dir = d.path().join("fan/train");
    std::fs::create_dir_all(&train_dir).unwrap();
    for k in 0..24 {
        synth_fan(&(100 + k).to_string(), "10", &train_dir.join(format!("normal_id_00_{k:08}.wav")), &[]);
    }
    let bundle = d.path().join("bundle");
    let (data, b) = (d.path().join("fan"), bundle.to_str().unwrap().to_string());
    ok(&["train", "--data", data.to_str().unwrap(), "--out", &b, "--no-cache"]);
    let (wav, csv) = (d.path().join("day.wav"), d.path().join("day.csv"));
    let c = csv.to_str().unwrap();
    synth_fan("7", "400", &wav, &["--fault", "bearing", "--fault-at", "200", "--ramp", "20", "--labels", c]);
    let out = d.path().join("bt");
    ok(&["backtest", "--bundle", &b, "--data", wav.to_str().unwrap(), "--labels", c, "--out", out.to_str().unwrap()]);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!((r["segments"].as_u64(), r["detected"].as_u64()), (Some(1), Some(1)), "{r}");
    assert_eq!(r["false_alarms"].as_u64(), Some(0), "{r}");
}

#[test]
fn a_training_set_too_small_for_its_density_is_refused_in_one_line() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("tiny");
    std::fs::create_dir_all(data.join("train")).unwrap();
    for i in 0..3 {
        wav::write_pcm16(&data.join(format!("train/normal_id_00_{i:08}.wav")), RATE, 1, &machine(1.0, i, |_| false))
            .unwrap();
    }
    let recipe = d.path().join("recipe.toml");
    std::fs::write(&recipe, "holdout = 0.0\n").unwrap();
    let o = train(&data, &d.path().join("b"), &recipe, Some("gaussian"));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err.lines().find(|l| l.contains("error")).unwrap_or_default();
    assert!(
        line.contains(data.join("train").to_str().unwrap())
            && line.contains("3 training profile(s)")
            && line.contains("at least 8"),
        "{err}"
    );
    assert!(!d.path().join("b/manifest.toml").exists(), "nothing written");
}
