//! `mpdr features` through the real binary: outputs, options, and every kind of bad input.

use std::path::Path;

use mpdr::audio::wav;
use mpdr::data::npy;
use mpdr::features::{logmel, FeatureParams};

use super::util::{f32le, mpdr, pcm16, tone, wav_bytes};

/// Runs `mpdr features <input> --out <out>` expecting failure; returns stderr.
fn expect_failure(input: &Path, extra: &[&str]) -> String {
    let out = input.with_extension("out.npy");
    let mut args = vec!["features", input.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = mpdr(&args);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "{} should fail; stderr: {stderr}", input.display());
    assert!(!stderr.contains("panicked"), "panic on {}: {stderr}", input.display());
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one-line error expected, got: {stderr}");
    let name = input.file_name().unwrap().to_str().unwrap();
    assert!(lines[0].contains(name), "error does not name the file: {stderr}");
    assert!(!out.exists(), "no output may be written on failure");
    lines[0].to_string()
}

#[test]
fn writes_logmel_and_vectors_equal_to_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let x = tone(1000.0, 16000, 16000, 0.5);
    let input = dir.path().join("tone.wav");
    wav::write_f32(&input, 16000, 1, &x).unwrap();
    let lm_path = dir.path().join("lm.npy");
    let vec_path = dir.path().join("vec.npy");
    let o = mpdr(&["features", input.to_str().unwrap(), "--out", lm_path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = mpdr(&[
        "features",
        input.to_str().unwrap(),
        "--out",
        vec_path.to_str().unwrap(),
        "--what",
        "vectors",
        "--pad",
        "reflect",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = logmel(&FeatureParams::default(), &x).unwrap();
    let got = npy::read(&lm_path).unwrap();
    assert_eq!(got.shape, vec![128, 32]);
    assert_eq!(got.data, want.to_mel_major());
    let reflect = FeatureParams { pad_mode: mpdr::features::PadMode::Reflect, ..Default::default() };
    let want_v = logmel(&reflect, &x).unwrap().vectors(5);
    let got_v = npy::read(&vec_path).unwrap();
    assert_eq!(got_v.shape, vec![28, 640]);
    assert_eq!(got_v.data, want_v.data);

    // A log-mel .npy input skips the front-end: vectors of it equal vectors of the WAV.
    let vec2 = dir.path().join("vec2.npy");
    let o = mpdr(&["features", lm_path.to_str().unwrap(), "--out", vec2.to_str().unwrap(), "--what", "vectors"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(npy::read(&vec2).unwrap().data, want.vectors(5).data);
}

#[test]
fn pcm_widths_decode_to_the_same_signal() {
    let dir = tempfile::tempdir().unwrap();
    let x = tone(440.0, 16000, 4000, 0.5);
    let p16 = dir.path().join("a16.wav");
    wav::write_pcm16(&p16, 16000, 1, &x).unwrap();
    let s16 = wav::decode(&p16, Default::default()).unwrap().samples;
    // 8, 24 and 32-bit PCM, written by hand.
    let p8 = dir.path().join("a8.wav");
    let d8: Vec<u8> = x.iter().map(|v| ((v * 127.0).round() as i16 + 128) as u8).collect();
    std::fs::write(&p8, wav_bytes(1, 1, 16000, 8, d8.len() as u32, &d8)).unwrap();
    let p24 = dir.path().join("a24.wav");
    let d24: Vec<u8> = x.iter().flat_map(|v| ((v * 8388607.0).round() as i32).to_le_bytes()[..3].to_vec()).collect();
    std::fs::write(&p24, wav_bytes(1, 1, 16000, 24, d24.len() as u32, &d24)).unwrap();
    let p32 = dir.path().join("a32.wav");
    let d32: Vec<u8> = x.iter().flat_map(|v| ((*v as f64 * 2147483647.0).round() as i32).to_le_bytes()).collect();
    std::fs::write(&p32, wav_bytes(1, 1, 16000, 32, d32.len() as u32, &d32)).unwrap();
    for (path, tol) in [(&p8, 1.0 / 100.0), (&p24, 1e-6), (&p32, 1e-7), (&p16, 1e-4)] {
        let s = wav::decode(path, Default::default()).unwrap().samples;
        assert_eq!(s.len(), x.len());
        let err = s.iter().zip(&x).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(err < tol, "{}: max error {err}", path.display());
    }
    assert_eq!(s16[1], (x[1] * 32767.0).round() / 32768.0);
}

#[test]
fn channels_are_selected_or_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let left = tone(500.0, 16000, 8000, 0.5);
    let right = tone(3000.0, 16000, 8000, 0.5);
    let inter: Vec<f32> = left.iter().zip(&right).flat_map(|(l, r)| [*l, *r]).collect();
    let path = dir.path().join("stereo.wav");
    wav::write_f32(&path, 16000, 2, &inter).unwrap();
    use mpdr::audio::ChannelSelect;
    assert_eq!(wav::decode(&path, ChannelSelect::Index(0)).unwrap().samples, left);
    assert_eq!(wav::decode(&path, ChannelSelect::Index(1)).unwrap().samples, right);
    let mix = wav::decode(&path, ChannelSelect::Mix).unwrap().samples;
    assert!((mix[10] - (left[10] + right[10]) / 2.0).abs() < 1e-7);
    let err = expect_failure(&path, &["--channel", "2"]);
    assert!(err.contains("channel 2") && err.contains("2 channel"), "{err}");
}

#[test]
fn resampling_is_opt_in_and_keeps_the_spectrum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cd.wav");
    wav::write_f32(&path, 44100, 1, &tone(1000.0, 44100, 44100, 0.5)).unwrap();
    let err = expect_failure(&path, &[]);
    assert!(err.contains("44100 Hz") && err.contains("16000 Hz"), "{err}");
    let out = dir.path().join("cd.npy");
    let o = mpdr(&["features", path.to_str().unwrap(), "--out", out.to_str().unwrap(), "--resample"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = npy::read(&out).unwrap();
    assert_eq!(got.shape, vec![128, 32]);
    let direct = logmel(&FeatureParams::default(), &tone(1000.0, 16000, 16000, 0.5)).unwrap().to_mel_major();
    // Interior frames: resampled and natively sampled tones agree closely in loud bands.
    for m in 0..128 {
        let (a, b) = (got.data[m * 32 + 16], direct[m * 32 + 16]);
        if b > -20.0 {
            assert!((a - b).abs() < 0.05, "band {m}: {a} vs {b}");
        }
    }
}

#[test]
fn bad_inputs_give_one_line_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("text.wav", b"this is not audio at all, just text".to_vec(), "not a valid WAV"),
        ("empty.wav", Vec::new(), "truncated or empty"),
        ("header_only.wav", wav_bytes(1, 1, 16000, 16, 0, &[])[..30].to_vec(), "truncated or empty"),
        ("liar.wav", wav_bytes(1, 1, 16000, 16, 32000, &pcm16(&[1, 2, 3, 4])), "truncated"),
        ("zero_channels.wav", wav_bytes(1, 0, 16000, 16, 8, &pcm16(&[1, 2, 3, 4])), "channel"),
        ("alaw.wav", wav_bytes(6, 1, 16000, 8, 4, &[1, 2, 3, 4]), "unsupported"),
        ("float64.wav", wav_bytes(3, 1, 16000, 64, 16, &[0; 16]), "unsupported"),
        ("no_samples.wav", wav_bytes(1, 1, 16000, 16, 0, &[]), "no audio samples"),
        ("nan.wav", wav_bytes(3, 1, 16000, 32, 12, &f32le(&[0.1, f32::NAN, 0.2])), "sample 1"),
        ("inf.wav", wav_bytes(3, 1, 16000, 32, 8, &f32le(&[f32::INFINITY, 0.2])), "inf"),
        ("rate.wav", wav_bytes(1, 1, 8000, 16, 8, &pcm16(&[1, 2, 3, 4])), "8000 Hz"),
        ("audio.mp3", b"ID3".to_vec(), "expected a .wav file or a .npy"),
        ("wrong_shape.npy", npy::to_bytes(&[64, 10], &[0.0; 640]), "expected (128, frames)"),
        ("three_d.npy", npy::to_bytes(&[128, 2, 2], &[0.0; 512]), "shape [128, 2, 2]"),
        ("nan.npy", npy::to_bytes(&[128, 1], &[f32::NAN; 128]), "finite"),
        ("garbage.npy", b"PK\x03\x04 zip, not npy".to_vec(), "not a .npy file"),
    ];
    for (name, bytes, needle) in cases {
        std::fs::write(p(name), &bytes).unwrap();
        let err = expect_failure(&p(name), &[]);
        assert!(err.contains(needle), "{name}: expected '{needle}' in: {err}");
    }
    let err = expect_failure(&p("missing.wav"), &[]);
    assert!(err.contains("missing.wav"), "{err}");
}

#[test]
fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let wav_path = dir.path().join("x.wav");
    wav::write_f32(&wav_path, 16000, 1, &tone(440.0, 16000, 2000, 0.5)).unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[features]\nn_fft = 1000\nhop_length = 0\n").unwrap();
    let o = mpdr(&[
        "features",
        wav_path.to_str().unwrap(),
        "--out",
        dir.path().join("o.npy").to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("bad.toml") && err.contains("features.hop_length"), "{err}");
    std::fs::write(&cfg, "[features]\nhopp = 3\n").unwrap();
    let o = mpdr(&["features", wav_path.to_str().unwrap(), "--out", "/dev/null", "--config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("hopp"), "{err}");
}

#[test]
fn help_lists_every_command() {
    let o = mpdr(&["--help"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    for cmd in [
        "features",
        "train",
        "eval",
        "backtest",
        "calibrate",
        "monitor",
        "validate",
        "devices",
        "alarms",
        "synth",
        "demo",
        "bench",
    ] {
        assert!(text.contains(cmd), "--help lacks '{cmd}'");
    }
}

#[test]
fn devices_explains_an_empty_list() {
    let o = mpdr(&["devices"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    let real = out.lines().any(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && !l.contains(" null "));
    assert!(real || (out.contains("Checked:") && out.contains("/dev/snd")), "{out}");
}
