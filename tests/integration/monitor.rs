//! `mpdr monitor` as a real process: generated WAVs, a bundle trained by `mpdr train` in the
//! test, the real HTTP endpoint, real signals.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mpdr::audio::wav;

use super::util::{mpdr, train_ok};

pub const RATE: u32 = 16_000;

/// A hum with harmonics and noise; `anomalous` adds a 3 kHz whine and noise bursts.
pub fn machine(seconds: f64, seed: u32, anomalous: impl Fn(f64) -> bool) -> Vec<f32> {
    let mut s = 0x1234_5678u32 ^ seed.wrapping_mul(2_654_435_761);
    let mut noise = move || {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (s as f64 / 4_294_967_296.0) - 0.5
    };
    (0..(seconds * RATE as f64) as usize)
        .map(|n| {
            let t = n as f64 / RATE as f64;
            let mut x: f64 =
                (1..6).map(|h| (2.0 * std::f64::consts::PI * 150.0 * h as f64 * t).sin() * 0.3 / h as f64).sum();
            x += 0.1 * noise();
            if anomalous(t) {
                x += 0.25 * (2.0 * std::f64::consts::PI * 3000.0 * t).sin();
                if n % 2000 < 100 {
                    x += 0.4 * noise();
                }
            }
            (0.5 * x) as f32
        })
        .collect()
}

/// A bundle trained once per test binary on generated normal clips (AE, calibrated for 2-s windows).
pub fn model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("monitor-model-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let data = root.join("machine");
        std::fs::create_dir_all(data.join("train")).unwrap();
        for i in 0..12 {
            let p = data.join(format!("train/normal_id_00_{i:08}.wav"));
            wav::write_pcm16(&p, RATE, 1, &machine(3.0, i, |_| false)).unwrap();
        }
        let cfg = root.join("train.toml");
        std::fs::write(
            &cfg,
            "seed = 5\nholdout = 0.25\n[pretrain]\nepochs = 30\nbatch_size = 128\n\
             [calibration]\nwindow_s = 2.0\nfalse_alarms_per_day = 1.0\n",
        )
        .unwrap();
        let bundle = root.join("bundle");
        train_ok(&data, "ae", &bundle, &cfg, &["--no-cache"]);
        bundle
    })
}

/// A running `mpdr monitor` with its log lines (JSON) collected.
pub struct Monitor {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    addr: String,
}

impl Monitor {
    pub fn start(config: &Path, extra: &[&str]) -> Monitor {
        Monitor::start_env(config, extra, &[])
    }

    pub fn start_env(config: &Path, extra: &[&str], env: &[(&str, &Path)]) -> Monitor {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mpdr"));
        cmd.args(["--log-json", "monitor", "--config", config.to_str().unwrap()])
            .args(extra)
            .envs(env.iter().map(|(k, v)| (*k, *v)));
        Monitor::spawn(cmd)
    }

    /// Run `cmd` (an `mpdr --log-json monitor ...`, possibly behind a wrapper that `exec`s it).
    pub fn spawn(mut cmd: Command) -> Monitor {
        let mut child = cmd
            .env("MPDR_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("mpdr monitor starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut m = Monitor { child, lines, addr: String::new() };
        m.addr = m
            .wait_line(|l| l.contains("serving the console"), 60)
            .and_then(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
            .and_then(|v| v["fields"]["address"].as_str().map(String::from))
            .unwrap_or_else(|| panic!("no HTTP address logged: {:?}", m.log()));
        m
    }

    /// The HTTP address it serves (`host:port`).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn wait_line(&self, want: impl Fn(&str) -> bool, secs: u64) -> Option<String> {
        let until = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < until {
            if let Some(l) = self.log().into_iter().find(|l| want(l)) {
                return Some(l);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).expect("connect to the monitor");
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, text.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
    }

    /// Value of a metric line `name{labels}`, e.g. `mpdr_stream_ended{stream="m"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics");
        body.lines().find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
    }

    pub fn wait_metric(&self, series: &str, ok: impl Fn(f64) -> bool, secs: u64) -> f64 {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.metric(series);
            if let Some(v) = v.filter(|v| ok(*v)) {
                return v;
            }
            assert!(Instant::now() < until, "{series} = {v:?} never got there; log: {:#?}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// SIGTERM and the exit status, which must come within `secs`.
    pub fn stop(mut self, secs: u64) -> (std::process::ExitStatus, Vec<String>) {
        self.signal("TERM");
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return (st, self.log());
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!("no exit within {secs} s after SIGTERM; log: {:#?}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The log sink's events once there are at least `n` (it delivers from the outbox on its
    /// own thread, a moment after the metrics count them), waiting up to `secs`.
    pub fn events_at_least(&self, n: usize, secs: u64) -> Vec<serde_json::Value> {
        let until = Instant::now() + Duration::from_secs(secs);
        while self.events().len() < n && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.events()
    }

    /// The alarm events logged by the log sink, parsed.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.log()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "mpdr::alarm")
            .filter_map(|v| v["fields"]["event"].as_str().and_then(|e| serde_json::from_str(e).ok()))
            .collect()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

pub fn write_config(dir: &Path, name: &str, stream_source: &str, detect: &str, extra: &str) -> PathBuf {
    let p = dir.join(name);
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{extra}\n[[stream]]\nname = \"m\"\nmodel = \"{}\"\nsource = {stream_source}\ndetect = {detect}\n",
        model().display()
    );
    std::fs::write(&p, text).unwrap();
    p
}

/// `signal` replayed as fast as possible by a monitor with `detect`, run until it has ended.
pub fn replay_to_the_end(dir: &Path, signal: &[f32], detect: &str) -> Monitor {
    let w = dir.join("replay.wav");
    wav::write_pcm16(&w, RATE, 1, signal).unwrap();
    let source = format!("{{ type = \"file\", path = \"{}\", realtime = false }}", w.display());
    let cfg = write_config(dir, "monitor.toml", &source, detect, "");
    let m = Monitor::start(&cfg, &[]);
    m.wait_metric("mpdr_stream_ended{stream=\"m\"}", |v| v == 1.0, 120);
    m
}

#[test]
fn an_anomaly_raises_exactly_one_alarm_that_clears_after_it_ends() {
    let d = tempfile::tempdir().unwrap();
    // 20 s normal, 20 s anomalous, 30 s normal.
    let signal = machine(70.0, 99, |t| (20.0..40.0).contains(&t));
    let detect = "{ window_s = 2.0, hop_s = 0.5, threshold = \"model\", on_delay_s = 3.0, off_delay_s = 4.0 }";
    let m = replay_to_the_end(d.path(), &signal, detect);
    assert_eq!(m.get("/healthz").0, 200);
    let (code, why) = m.get("/readyz");
    assert_eq!(code, 200, "{why}");
    assert_eq!(m.metric("mpdr_alarms_raised_total{stream=\"m\"}"), Some(1.0));
    assert_eq!(m.metric("mpdr_events_total{kind=\"raised\"}"), Some(1.0));
    assert_eq!(m.metric("mpdr_events_total{kind=\"cleared\"}"), Some(1.0));
    assert_eq!(m.metric("mpdr_alarm_state{stream=\"m\"}"), Some(0.0));
    let scored = m.metric("mpdr_vectors_scored_total{stream=\"m\"}").unwrap();
    assert!((scored - (70.0 * 16000.0 / 512.0 - 4.0)).abs() < 3.0, "every vector scored: {scored}");
    assert_eq!(m.metric("mpdr_audio_dropped_samples_total{stream=\"m\"}"), Some(0.0), "a fast replay is lossless");
    let events = m.events_at_least(3, 10);
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["stream-up", "raised", "cleared"], "{events:#?}");
    let (raised, cleared) = (&events[1], &events[2]);
    let t_raise = raised["stream_time_s"].as_f64().unwrap();
    let t_clear = cleared["stream_time_s"].as_f64().unwrap();
    // Raised after the on-delay once windows cover the fault; cleared after the off-delay
    // once the last anomalous window has passed.
    assert!((23.0..=26.0).contains(&t_raise), "raised at {t_raise}");
    assert!((44.0..=48.0).contains(&t_clear), "cleared at {t_clear}");
    assert!(raised["score"].as_f64().unwrap() > raised["threshold"].as_f64().unwrap());
    assert_eq!(uuid::Uuid::parse_str(raised["id"].as_str().unwrap()).unwrap().get_version_num(), 7);
    assert_ne!(raised["id"], cleared["id"]);
    // The explanation points at the 3 kHz whine.
    let top = &raised["top_bands"][0];
    let (lo, hi) = (top["lo_hz"].as_f64().unwrap(), top["hi_hz"].as_f64().unwrap());
    assert!(lo <= 3100.0 && hi >= 2900.0, "strongest band {lo}–{hi} Hz: {raised:#}");
    assert!(raised["message"].as_str().unwrap().contains("kHz"));
    // ... and says how far above normal it is (the bundle keeps its normal band shares).
    let z = top["z"].as_f64().expect("a z-score against the calibration audio");
    assert!(z > 3.0, "the whine is far above normal: {z}");
    assert!(raised["message"].as_str().unwrap().contains("σ"), "{raised:#}");
    // The evidence: the window's audio and its spectrogram, named by the event id.
    let wav_path = raised["evidence"]["wav"].as_str().expect("evidence in the payload");
    assert!(wav_path.ends_with(&format!("{}.wav", raised["id"].as_str().unwrap())), "{wav_path}");
    let r = hound::WavReader::open(wav_path).unwrap();
    assert_eq!(r.duration(), 2 * RATE, "the 2-s window");
    assert!(Path::new(raised["evidence"]["png"].as_str().unwrap()).is_file() || !mpdr::eval::plot::font_available());
    let o = Command::new(env!("CARGO_BIN_EXE_mpdr"))
        .args([
            "alarms",
            "show",
            raised["id"].as_str().unwrap(),
            "--state-dir",
            d.path().join("state").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("evidence: audio"), "{}", String::from_utf8_lossy(&o.stderr));
    let (status, log) = m.stop(20);
    assert!(status.success(), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("stopped cleanly")));
}

#[test]
fn a_dead_microphone_raises_signal_lost_and_no_anomaly() {
    let d = tempfile::tempdir().unwrap();
    // 10 s of machine, 30 s of digital silence (an unplugged microphone), 10 s of machine.
    let mut signal = machine(50.0, 5, |_| false);
    signal[10 * RATE as usize..40 * RATE as usize].iter_mut().for_each(|x| *x = 0.0);
    let detect = "{ window_s = 2.0, hop_s = 0.5, threshold = \"model\", on_delay_s = 0.0, off_delay_s = 1.0 }";
    let m = replay_to_the_end(d.path(), &signal, detect);
    let events = m.events_at_least(3, 10);
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["stream-up", "signal-lost", "signal-restored"], "{events:#?}");
    let lost = events[1]["stream_time_s"].as_f64().unwrap();
    assert!((11.0..=13.0).contains(&lost), "lost 2 s into the silence: {lost}");
    assert!(events[1]["message"].as_str().unwrap().contains("microphone"));
    assert_eq!(m.metric("mpdr_alarms_raised_total{stream=\"m\"}"), Some(0.0), "silence is not an anomaly");
    assert_eq!(m.metric("mpdr_events_total{kind=\"signal-lost\"}"), Some(1.0));
    assert_eq!(m.metric("mpdr_stream_signal_lost{stream=\"m\"}"), Some(0.0), "restored at the end");
    let level = m.metric("mpdr_stream_level_dbfs{stream=\"m\"}").unwrap();
    assert!((-40.0..0.0).contains(&level), "the machine's level: {level} dBFS");
    // Stream time kept counting through the silence: every vector was accounted for.
    let scored = m.metric("mpdr_vectors_scored_total{stream=\"m\"}").unwrap();
    assert!(scored < 25.0 * 16000.0 / 512.0, "silent vectors are not scored: {scored}");
    let (status, _) = m.stop(20);
    assert!(status.success());
}

#[test]
fn sighup_applies_a_valid_config_live_and_keeps_running_on_an_invalid_one() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("normal.wav");
    wav::write_pcm16(&w, RATE, 1, &machine(5.0, 7, |_| false)).unwrap();
    let source =
        format!("{{ type = \"file\", path = \"{}\", realtime = true, speed = 5.0, loop = true }}", w.display());
    let detect = |thr: &str| format!("{{ window_s = 1.0, hop_s = 0.5, threshold = {thr} }}");
    let cfg = write_config(d.path(), "monitor.toml", &source, &detect("\"model\""), "");
    let m = Monitor::start(&cfg, &[]);
    let model_thr = m.wait_metric("mpdr_threshold{stream=\"m\"}", |v| v.is_finite() && v > 0.0, 30);
    m.wait_metric("mpdr_window_decisions_total{stream=\"m\"}", |v| v >= 2.0, 30);

    write_config(d.path(), "monitor.toml", &source, &detect("123.5"), "");
    m.signal("HUP");
    m.wait_metric("mpdr_config_reloads_total", |v| v == 1.0, 30);
    assert_eq!(m.wait_metric("mpdr_threshold{stream=\"m\"}", |v| v == 123.5, 30), 123.5);

    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("window_s = 1.0", "window_s = -1.0")).unwrap();
    m.signal("HUP");
    m.wait_metric("mpdr_config_reload_failures_total", |v| v == 1.0, 30);
    assert!(m.log().iter().any(|l| l.contains("reload rejected") && l.contains("detect.window_s")), "{:#?}", m.log());
    assert_eq!(m.metric("mpdr_threshold{stream=\"m\"}"), Some(123.5), "the old config keeps running");
    let before = m.metric("mpdr_window_decisions_total{stream=\"m\"}").unwrap();
    m.wait_metric("mpdr_window_decisions_total{stream=\"m\"}", |v| v > before, 30);
    assert_ne!(model_thr, 123.5);

    // SIGTERM mid-stream: drains and exits 0 in bounded time.
    let (status, log) = m.stop(15);
    assert!(status.success(), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("stopped cleanly")));
}

#[test]
fn a_source_that_fails_is_reported_down_and_comes_back_up() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("later.wav");
    let cfg = write_config(
        d.path(),
        "monitor.toml",
        &format!("{{ type = \"file\", path = \"{}\", realtime = true, speed = 10.0, loop = true }}", w.display()),
        "{ window_s = 1.0, hop_s = 0.5, threshold = \"model\" }",
        "[pipeline]\nretry_max_s = 1.0\n",
    );
    let m = Monitor::start(&cfg, &[]);
    m.wait_line(|l| l.contains("stream-down"), 30).expect("a stream-down event");
    assert_eq!(m.metric("mpdr_stream_up{stream=\"m\"}"), Some(0.0));
    assert_eq!(m.get("/readyz").0, 200, "the daemon runs without the source");
    wav::write_pcm16(&w, RATE, 1, &machine(3.0, 3, |_| false)).unwrap();
    m.wait_metric("mpdr_stream_up{stream=\"m\"}", |v| v == 1.0, 30);
    m.wait_metric("mpdr_vectors_scored_total{stream=\"m\"}", |v| v > 0.0, 30);
    let kinds: Vec<String> = m.events_at_least(2, 10).iter().map(|e| e["kind"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["stream-down", "stream-up"]);
    assert_eq!(m.metric("mpdr_stream_outages_total{stream=\"m\"}"), Some(1.0));
    let (status, _) = m.stop(15);
    assert!(status.success());
}

#[test]
fn a_scorer_that_cannot_keep_up_drops_and_counts_while_capture_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("fast.wav");
    wav::write_pcm16(&w, RATE, 1, &machine(4.0, 11, |_| false)).unwrap();
    // A "live" source at 2000x real time into a 2-message queue with 1-vector batches.
    let cfg = write_config(
        d.path(),
        "monitor.toml",
        &format!("{{ type = \"file\", path = \"{}\", realtime = true, speed = 2000.0, loop = true }}", w.display()),
        "{ window_s = 1.0, hop_s = 1.0, threshold = \"model\" }",
        "[pipeline]\nvector_queue = 2\n[scoring]\nmax_batch = 1\nmax_wait_ms = 0\n",
    );
    let m = Monitor::start(&cfg, &[]);
    let dropped = m.wait_metric("mpdr_audio_dropped_samples_total{stream=\"m\"}", |v| v > 16000.0 * 60.0, 60);
    let samples = m.metric("mpdr_audio_samples_total{stream=\"m\"}").unwrap();
    let scored = m.metric("mpdr_vectors_scored_total{stream=\"m\"}").unwrap();
    assert!(samples >= dropped, "every dropped sample was captured first");
    assert!(scored * 512.0 < samples, "the scorer saw only part of the audio: {scored} vectors, {samples} samples");
    // Capture went on at its pace: far more audio than the scorer took.
    assert!(samples > 16000.0 * 60.0);
    let (status, _) = m.stop(15);
    assert!(status.success());
}

#[test]
fn validate_lists_every_problem_with_its_key() {
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"x\"\n[[stream]]\nname = \"a b\"\nmodel = \"missing-model\"\nsource = { type = \"device\" }\ndetect = { hop_s = 0 }\n",
    )
    .unwrap();
    let o = mpdr(&["validate", "--config", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for key in ["server.listen", "stream[0].name", "stream[0].model", "stream[0].detect.hop_s"] {
        assert!(out.contains(&format!(": {key}: ")), "{key} missing in {out}");
    }
    let good = write_config(d.path(), "good.toml", "{ type = \"device\" }", "{ threshold = 1.0 }", "");
    let o = mpdr(&["validate", "--config", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn the_cpal_path_captures_from_alsas_null_device() {
    // ALSA's `null` PCM as the default capture device (cpal hides `null` itself): silent
    // buffers through the real cpal/ALSA path, no sound card needed.
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join(".asoundrc"), "pcm.!default {\n  type null\n}\n").unwrap();
    let list = Command::new(env!("CARGO_BIN_EXE_mpdr")).arg("devices").env("HOME", home.path()).output().unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    if !list.status.success() || !text.lines().any(|l| l.split_whitespace().nth(1) == Some("default")) {
        eprintln!("SKIP: ALSA's null device is not available here (mpdr devices: {text})");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(
        d.path(),
        "monitor.toml",
        "{ type = \"device\", device = \"default\" }",
        "{ window_s = 1.0, hop_s = 0.5, threshold = \"model\" }",
        "",
    );
    let m = Monitor::start_env(&cfg, &[], &[("HOME", home.path())]);
    m.wait_metric("mpdr_stream_up{stream=\"m\"}", |v| v == 1.0, 30);
    m.wait_metric("mpdr_audio_samples_total{stream=\"m\"}", |v| v >= 16000.0, 30);
    // The null device is digital silence: a dead microphone, not an anomaly.
    m.wait_metric("mpdr_stream_signal_lost{stream=\"m\"}", |v| v == 1.0, 30);
    assert_eq!(m.metric("mpdr_vectors_scored_total{stream=\"m\"}"), Some(0.0), "silence is not scored");
    assert_eq!(m.metric("mpdr_alarms_raised_total{stream=\"m\"}"), Some(0.0));
    let (status, log) = m.stop(15);
    assert!(status.success(), "{log:#?}");
}

#[test]
fn the_systemd_unit_verifies_with_the_built_binary() {
    let Ok(v) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIP: systemd-analyze is not installed");
        return;
    };
    assert!(v.status.success());
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/mpdr-monitor.service")).unwrap();
    for needed in
        ["Type=notify", "WatchdogSec=", "ExecStartPre=@PREFIX@/bin/mpdr validate", "ExecReload=/bin/kill -HUP"]
    {
        assert!(unit.contains(needed), "{needed}");
    }
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("mpdr-monitor.service");
    std::fs::write(
        &path,
        unit.replace("@PREFIX@/bin/mpdr", env!("CARGO_BIN_EXE_mpdr")).replace("@PREFIX@", "/opt/mpdr"),
    )
    .unwrap();
    let o = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !err.contains("mpdr-monitor.service:"), "{err}");
}
