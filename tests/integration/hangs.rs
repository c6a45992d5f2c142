//! Issue 25, "hangs": nothing the daemon or the CLI is given can block it — a FIFO where a
//! weights file should be, a 4 GiB recording, a header that says 1 Hz — and SIGTERM is
//! honoured within 10 s at every point.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mpdr::audio::wav;

use super::hardening::{config, copy_bundle};
use super::monitor::{machine, model, Monitor, RATE};
use super::util::wav_bytes;

/// `mpdr args...`, which must finish within `secs` (killed and failed otherwise).
fn within(secs: u64, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mpdr"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            panic!("mpdr {args:?} still running after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn mkfifo(p: &Path) {
    let _ = std::fs::remove_file(p);
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout)
}

#[test]
fn a_fifo_for_weights_is_refused_at_once_by_validate_eval_and_backtest_and_on_reload() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("normal.wav");
    wav::write_pcm16(&w, RATE, 1, &machine(3.0, 1, |_| false)).unwrap();
    let bundle = copy_bundle(d.path(), "b");
    let cfg = config(&d.path().join("cfg"), &[("m", &bundle)], &w);

    // The daemon runs on the real weights; then they are swapped for a FIFO and reloaded.
    let m = Monitor::start(&cfg, &[]);
    m.wait_metric("mpdr_window_decisions_total{stream=\"m\"}", |v| v >= 1.0, 30);
    mkfifo(&bundle.join("energy.safetensors"));
    m.signal("HUP");
    m.wait_line(|l| l.contains("FIFO"), 20).unwrap_or_else(|| panic!("reload refused naming the FIFO: {:#?}", m.log()));
    let n = m.metric("mpdr_window_decisions_total{stream=\"m\"}").unwrap();
    m.wait_metric("mpdr_window_decisions_total{stream=\"m\"}", |v| v > n, 20);
    let (code, _) = m.get("/healthz");
    assert_eq!(code, 200);
    let (status, log) = m.stop(10);
    assert!(status.success(), "{log:#?}");

    let s = |p: &Path| p.to_str().unwrap().to_string();
    let o = within(20, &["validate", "--config", &s(&cfg)]);
    assert!(!o.status.success() && stderr(&o).contains("a FIFO"), "{}", stderr(&o));
    let data = d.path().join("machine");
    std::fs::create_dir_all(data.join("test")).unwrap();
    std::fs::create_dir_all(data.join("train")).unwrap();
    wav::write_pcm16(&data.join("train/normal_id_00_00000000.wav"), RATE, 1, &machine(3.0, 4, |_| false)).unwrap();
    wav::write_pcm16(&data.join("test/normal_id_00_00000000.wav"), RATE, 1, &machine(3.0, 2, |_| false)).unwrap();
    wav::write_pcm16(&data.join("test/anomaly_id_00_00000000.wav"), RATE, 1, &machine(3.0, 3, |_| true)).unwrap();
    let out = d.path().join("out");
    let o = within(20, &["eval", "--bundle", &s(&bundle), "--data", &s(&data), "--out", &s(&out), "--no-cache"]);
    assert!(!o.status.success() && stderr(&o).contains("a FIFO"), "{}", stderr(&o));
    let o = within(20, &["backtest", "--bundle", &s(&bundle), "--data", &s(&w), "--out", &s(&out)]);
    assert!(!o.status.success() && stderr(&o).contains("a FIFO"), "{}", stderr(&o));
    // A FIFO as the recording or the config is refused the same way.
    let fifo_wav = d.path().join("live.wav");
    mkfifo(&fifo_wav);
    let o = within(20, &["features", &s(&fifo_wav), "--out", &s(&d.path().join("f.npy"))]);
    assert!(!o.status.success() && stderr(&o).contains("a FIFO"), "{}", stderr(&o));
    let fifo_cfg = d.path().join("fifo.toml");
    mkfifo(&fifo_cfg);
    let o = within(20, &["validate", "--config", &s(&fifo_cfg)]);
    assert!(!o.status.success() && stderr(&o).contains("a FIFO"), "{}", stderr(&o));
}

#[test]
fn sigterm_stops_the_monitor_within_10_s_during_the_check_of_a_4_gib_recording() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("huge.wav");
    // 16-bit mono at the model's rate, 4 GiB of data declared and present (sparse: no disk).
    let data_len: u32 = u32::MAX - 65;
    let head = wav_bytes(1, 1, RATE, 16, data_len, &[]);
    std::fs::write(&w, &head).unwrap();
    std::fs::OpenOptions::new().write(true).open(&w).unwrap().set_len(head.len() as u64 + data_len as u64).unwrap();
    let cfg = config(d.path(), &[("m", model())], &w);
    let m = Monitor::start(&cfg, &[]);
    std::thread::sleep(Duration::from_secs(2)); // well inside the checking pass
    assert_eq!(m.metric("mpdr_stream_up{stream=\"m\"}"), Some(0.0), "still checking");
    let (status, log) = m.stop(10);
    assert!(status.success(), "{log:#?}");
    // `mpdr features` reads files whole: refused from the header, before any allocation.
    let o = within(20, &["features", w.to_str().unwrap(), "--out", d.path().join("f.npy").to_str().unwrap()]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("huge.wav") && e.contains("more than a file read whole"), "{e}");
}

#[test]
fn a_recording_whose_header_says_1_hz_is_refused_by_name_everywhere() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("slow.wav");
    let samples: Vec<u8> = (0..32_000u32).flat_map(|i| ((i % 200) as i16 * 50).to_le_bytes()).collect();
    std::fs::write(&w, wav_bytes(1, 1, 1, 16, samples.len() as u32, &samples)).unwrap();
    let cfg = config(d.path(), &[("m", model())], &w);
    let text = std::fs::read_to_string(&cfg).unwrap().replace("speed = 5.0", "speed = 5.0, resample = true");
    std::fs::write(&cfg, text).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let o = within(20, &["validate", "--config", &s(&cfg)]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("slow.wav") && e.contains("1 Hz"), "{e}");
    let o = within(20, &["monitor", "--config", &s(&cfg)]);
    assert!(!o.status.success() && stderr(&o).contains("1 Hz"), "{}", stderr(&o));
    let o = within(20, &["features", "--resample", &s(&w), "--out", &s(&d.path().join("f.npy"))]);
    assert!(!o.status.success() && stderr(&o).contains("1 Hz"), "{}", stderr(&o));
}

#[test]
fn a_gpu_this_libtorch_cannot_see_is_refused_by_validate_naming_the_key() {
    if tch::Cuda::is_available() {
        eprintln!("SKIP: a GPU is visible here");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("normal.wav");
    wav::write_pcm16(&w, RATE, 1, &machine(2.0, 1, |_| false)).unwrap();
    let cfg = config(d.path(), &[("m", model())], &w);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("[scoring]\ndevice = \"cuda\"\n{text}")).unwrap();
    let o = within(60, &["validate", "--config", cfg.to_str().unwrap()]);
    let e = stderr(&o);
    // ... and says why by the libtorch build: a CPU-only one, or a CUDA one without a GPU.
    let why = ["CPU-only build", "CUDA libtorch sees no GPU"];
    assert!(!o.status.success() && e.contains("scoring.device") && why.iter().any(|w| e.contains(w)), "{e}");
}
