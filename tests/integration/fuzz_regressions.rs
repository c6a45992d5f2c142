//! Every fuzz seed and every input that once crashed mpdr (the issue-15 probe's and the
//! fuzzers' finds, under `tests/fixtures/fuzz/<target>/`) goes through the same entry points
//! the AFL++ harnesses call, in this process: a panic fails the test. The crash inputs are
//! also checked to be refused with a message that names what is wrong.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn inputs(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(dir).unwrap() {
        let t = t.unwrap().path();
        let target = t.file_name().unwrap().to_string_lossy().to_string();
        for f in std::fs::read_dir(&t).unwrap() {
            out.push((target.clone(), f.unwrap().path()));
        }
    }
    out.sort();
    out
}

#[test]
fn every_seed_and_every_former_crash_runs_through_its_target_without_a_panic() {
    let mut n = 0;
    for dir in [root().join("fuzz/seeds"), root().join("tests/fixtures/fuzz")] {
        for (target, file) in inputs(&dir) {
            let data = std::fs::read(&file).unwrap();
            assert!(mpdr::fuzzing::run(&target, &data), "{}: no fuzz target {target}", file.display());
            n += 1;
        }
    }
    assert!(n >= 40, "only {n} inputs");
    let targets: Vec<&str> = mpdr::fuzzing::TARGETS.iter().map(|(t, _)| *t).collect();
    for t in &targets {
        assert!(root().join("fuzz/seeds").join(t).is_dir(), "no seeds for {t}");
        assert!(root().join("fuzz/src/bin").join(format!("{t}.rs")).is_file(), "no harness for {t}");
    }
}

#[test]
fn former_crash_files_are_refused_with_their_reason() {
    let dir = root().join("tests/fixtures/fuzz");
    for (target, file) in inputs(&dir) {
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        match target.as_str() {
            "npy" => {
                let e = mpdr::features::read_logmel_npy(&file, &Default::default()).unwrap_err().to_string();
                assert!(e.contains(file.file_name().unwrap().to_str().unwrap()), "{name}: {e}");
            }
            "wav" => {
                let e = mpdr::audio::wav::decode(&file, Default::default()).unwrap_err().to_string();
                assert!(e.contains(".wav"), "{name}: {e}");
                if name == "truncated_samples" || name == "data_larger_than_file" {
                    assert!(e.contains("truncated: header declares"), "{name}: {e}");
                    assert!(!e.contains("inside the WAV header"), "{name}: {e}");
                }
            }
            "manifest" => {
                let text = std::fs::read_to_string(&file).unwrap();
                let problems = match mpdr::config::parse_toml::<mpdr::model::Manifest>(&text) {
                    Ok(m) => mpdr::model::check::problems(&m).to_string(),
                    Err(e) => e,
                };
                let want = match name.as_str() {
                    "input_zero" => "energy.encoder.input",
                    "hidden_zero" => "energy.encoder.hidden[0]",
                    "hidden_2_40" => "energy.encoder.hidden[0]",
                    "hop_length_zero" => "features.hop_length",
                    "n_mels_zero" => "features.n_mels",
                    "frames_zero" => "features.frames",
                    "scaler_40" => "scaler.mean",
                    "n_fft_zero" => "features.n_fft",
                    "power_negative" => "features.power",
                    "no_scaler" => "scaler",
                    "latent_zero" => "energy.latent",
                    "std_zero" => "scaler.std[0]",
                    "n_mels_64" => "energy",
                    "threshold_nan" => "threshold.value",
                    // Found by AFL++: a width whose parameter count overflowed the sum.
                    "afl_hidden_sum_overflow" => "energy.encoder.hidden[0]",
                    other => panic!("no expectation for manifest fixture {other}"),
                };
                assert!(problems.contains(&format!("{want}:")), "{name}: want {want} in: {problems}");
            }
            "idx" => {
                let e = mpdr::data::idx::read_idx(&file, 3).unwrap_err().to_string();
                assert!(e.contains("too large"), "{name}: {e}");
            }
            "safetensors" => {
                let data = std::fs::read(&file).unwrap();
                assert!(mpdr::model::safetensors_header(&data).is_err(), "{name}");
            }
            _ => {}
        }
    }
}
