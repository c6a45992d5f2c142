//! One window-scoring path: a clip's window scores are the same through calibration and
//! `mpdr eval` (`detect::window_scores`, `windows.csv`), the daemon's `Detector`, and the
//! daemon's own route to the energies (streaming features, `Bundle::score_explained`).

use mpdr::audio::{wav, AudioOptions};
use mpdr::data::extract::OnBadFile;
use mpdr::detect::{window_scores, DetectConfig, Detector, ThresholdSetting};
use mpdr::features::stream::StreamingExtractor;
use mpdr::model::Bundle;
use tch::{Device, Tensor};

use super::monitor::{machine, model, RATE};

#[test]
fn one_clip_gets_the_same_window_scores_in_calibration_eval_and_the_daemon() {
    let bundle = Bundle::load(model(), Device::Cpu).unwrap();
    let params = bundle.manifest.features.clone().unwrap();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("machine");
    std::fs::create_dir_all(data.join("train")).unwrap();
    std::fs::create_dir_all(data.join("test")).unwrap();
    let clip = data.join("test/anomaly_id_00_00000000.wav");
    wav::write_pcm16(&clip, RATE, 1, &machine(12.0, 77, |t| t > 6.0)).unwrap();
    wav::write_pcm16(&data.join("test/normal_id_00_00000001.wav"), RATE, 1, &machine(12.0, 78, |_| false)).unwrap();
    wav::write_pcm16(&data.join("train/normal_id_00_00000002.wav"), RATE, 1, &machine(3.0, 79, |_| false)).unwrap();

    // Calibration's path: the clip's vectors, their energies, detect::window_scores.
    let window_s = bundle.manifest.threshold.as_ref().unwrap().details["window_s"];
    let window = mpdr::offline::vectors_per_window(window_s, &params);
    let lm = mpdr::data::load_logmel(&clip, &params, &AudioOptions::default()).unwrap();
    let v = lm.vectors(params.frames);
    let x = Tensor::from_slice(&v.data).reshape([v.n as i64, v.dim as i64]);
    let energies = Vec::<f32>::try_from(&bundle.score(&x, 4096).unwrap()).unwrap();
    let offline = window_scores(&energies, window, window);
    assert_eq!(offline.len(), energies.len() / window);
    assert!(offline.len() >= 5, "{} windows", offline.len());

    // `mpdr eval`'s window view.
    let out = d.path().join("report");
    mpdr::offline::evaluate(&bundle, &data, &out, None, OnBadFile::Fail).unwrap();
    let csv = std::fs::read_to_string(out.join("windows.csv")).unwrap();
    let eval: Vec<f64> = csv
        .lines()
        .filter(|l| l.starts_with("anomaly_id_00_00000000.wav,"))
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(eval, offline, "eval's windows are calibration's, bit for bit");

    // The daemon's detector, deciding once per window on the same energies.
    let vector_s = params.hop_length as f64 / params.sample_rate as f64;
    let cfg = DetectConfig {
        window_s,
        hop_s: window_s,
        threshold: ThresholdSetting::Value(f64::INFINITY),
        ..DetectConfig::default()
    };
    let mut detector = Detector::new(cfg.clone(), f64::INFINITY, vector_s, 0);
    let decided: Vec<f64> = energies.iter().filter_map(|&e| detector.push(e as f64, None)).map(|d| d.score).collect();
    assert_eq!(decided, offline, "the detector's windows are calibration's, bit for bit");

    // The daemon's route to the energies: streaming features in 1-s blocks, batches scored
    // with explanations. Same windows up to float rounding (batch shapes differ), minus the
    // frames at the end that only offline right padding completes.
    let samples = wav::read_mono(&clip, params.sample_rate, &AudioOptions::default()).unwrap();
    let mut extractor = StreamingExtractor::new(&params);
    let mut live = Detector::new(cfg, f64::INFINITY, vector_s, params.n_mels);
    let mut streamed = Vec::new();
    for block in samples.chunks(RATE as usize) {
        let mut data = Vec::new();
        extractor.push(block, |v| data.extend_from_slice(v));
        if data.is_empty() {
            continue;
        }
        let n = (data.len() / v.dim) as i64;
        let (e, bands) = bundle
            .score_explained(&Tensor::from_slice(&data).reshape([n, v.dim as i64]), params.n_mels as i64)
            .unwrap();
        let e = Vec::<f32>::try_from(&e).unwrap();
        let bands = Vec::<f32>::try_from(bands.unwrap().reshape([-1])).unwrap();
        for (k, &ek) in e.iter().enumerate() {
            if let Some(dec) = live.push(ek as f64, Some(&bands[k * params.n_mels..(k + 1) * params.n_mels])) {
                streamed.push(dec.score);
            }
        }
    }
    assert!(streamed.len() + 1 >= offline.len() && streamed.len() <= offline.len(), "{streamed:?} vs {offline:?}");
    for (s, o) in streamed.iter().zip(&offline) {
        assert!((s - o).abs() <= 1e-5 * o.abs().max(1e-6), "live {s} vs offline {o}");
    }
}
