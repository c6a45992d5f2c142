//! The whole monitor pipeline (`mpdr::daemon::run`): N file streams through the real stream
//! threads, scorer and detectors. Not criterion: each case is one long run.
//!
//! - `fast`: N streams replayed as fast as possible -> audio-seconds processed per wall-second
//!   (total and per stream); the real-time capacity is about that many 16 kHz streams.
//! - `live`: N streams paced at real time for `MPDR_BENCH_LIVE_S` seconds -> dropped samples and
//!   p50/p99 latency from a hop's last sample arriving to its window decision.
//! - `soak`: 16 streams, one hour of audio each, accelerated; RSS sampled every second.
//!
//! `cargo bench --bench pipeline` (all cases; ~5 min on 2 cores) or
//! `cargo bench --bench pipeline -- fast|live|soak`. Numbers go to BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a test or benchmark: failing loudly is the point

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mpdr::audio::wav;
use mpdr::daemon::{run, RunControl};
use mpdr::features::FeatureParams;
use mpdr::model::{Bundle, Manifest, ModelKind, Threshold};
use mpdr::mpdr::recipe::{EnergyConfig, EnergyPreset, TrainConfig};

fn machine_wav(path: &Path, seconds: usize) {
    let mut s: u32 = 99;
    let x: Vec<f32> = (0..seconds * 16000)
        .map(|n| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let t = n as f64 / 16000.0;
            (0.1 * (s as f64 / 4_294_967_296.0 - 0.5) + 0.3 * (2.0 * std::f64::consts::PI * 150.0 * t).sin()) as f32
        })
        .collect();
    wav::write_pcm16(path, 16000, 1, &x).unwrap();
}

/// A threshold no score reaches: the benchmark measures scoring, not alarms.
fn never() -> Threshold {
    Threshold { value: 1e30, method: "manual".into(), details: Default::default(), warnings: vec![], fitted_on: None }
}

/// An untrained bundle with the given energy: scoring cost does not depend on the weights.
fn bundle(dir: &Path, kind: ModelKind, preset: EnergyPreset) -> PathBuf {
    let f = FeatureParams::default();
    let cfg = TrainConfig { energy: EnergyConfig { preset, ..Default::default() }, ..TrainConfig::default() };
    let mut m = Manifest::new(kind, cfg.energy_spec(f.vector_dim() as i64, f.n_mels as i64, f.frames as i64), vec![]);
    let dim = f.vector_dim();
    m.scaler = Some(mpdr::model::Scaler { mean: vec![-40.0; dim], std: vec![10.0; dim], clamp: Some(3.0) });
    m.features = Some(f);
    m.threshold = Some(never());
    let path = dir.join(format!("{kind}"));
    Bundle::build(m, tch::Device::Cpu).save(&path).unwrap();
    path
}

/// The default kind (issue 23): a 2-component GMM on 10-s profiles, fitted on random
/// profiles (scoring cost does not depend on the fit, but the mixture must be proper).
fn gmm_bundle(dir: &Path) -> PathBuf {
    let cfg = TrainConfig::default().for_kind(ModelKind::Gmm);
    let f = cfg.features.clone();
    let dim = f.model_dim();
    let nets = cfg.networks(ModelKind::Gmm, dim as i64, f.n_mels as i64, 1);
    let mut m = Manifest::new(ModelKind::Gmm, nets.energy, vec![]);
    m.scaler = Some(mpdr::model::Scaler { mean: vec![-40.0; dim], std: vec![10.0; dim], clamp: None });
    m.features = Some(f);
    m.threshold = Some(never());
    let mut b = Bundle::build(m, tch::Device::Cpu);
    let mut s: u64 = 7;
    let data: Vec<f64> = (0..400 * dim)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect();
    if let mpdr::nn::EnergyNet::Gmm(g) = &mut b.energy {
        g.fit(&data, 400, 1, 1).unwrap();
    }
    let path = dir.join("gmm");
    b.save(&path).unwrap();
    path
}

struct Outcome {
    wall_s: f64,
    audio_s: f64,
    dropped: u64,
    scored: u64,
    p50: Option<f64>,
    p99: Option<f64>,
    rss_mb: Vec<(f64, f64)>,
}

fn rss_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    pages * 4096.0 / 1e6
}

/// Run `n` streams of `wav` on `model`; `live` = paced at real time for `seconds`, else fast.
fn run_case(dir: &Path, model: &Path, wav: &Path, n: usize, live: Option<f64>, loops: bool) -> Outcome {
    let mut text = String::from("[server]\nlisten = \"\"\n[scoring]\ndevice = \"cpu\"\n");
    for i in 0..n {
        text += &format!(
            "[[stream]]\nname = \"s{i}\"\nmodel = \"{}\"\nsource = {{ type = \"file\", path = \"{}\", realtime = {}, loop = {} }}\n\
             detect = {{ window_s = 10.0, hop_s = 1.0, threshold = \"model\" }}\n",
            model.display(),
            wav.display(),
            live.is_some(),
            loops
        );
    }
    text += "[[sink]]\ntype = \"log\"\n";
    let cfg = dir.join("bench.toml");
    std::fs::write(&cfg, text).unwrap();
    let ctl = RunControl { exit_when_done: live.is_none(), ..Default::default() };
    let (stop, metrics) = (ctl.stop.clone(), ctl.metrics.clone());
    let start = Instant::now();
    let sampler = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.push((start.elapsed().as_secs_f64(), rss_mb()));
                if let Some(s) = live {
                    if start.elapsed().as_secs_f64() > s {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            samples
        }
    });
    let result = run(&cfg, ctl);
    let wall_s = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let rss = sampler.join().unwrap();
    result.unwrap();
    let m = metrics.get().expect("metrics published");
    let r = Ordering::Relaxed;
    let samples: u64 = m.streams.iter().map(|s| s.samples_in.load(r)).sum();
    Outcome {
        wall_s,
        audio_s: samples as f64 / 16000.0,
        dropped: m.streams.iter().map(|s| s.samples_dropped.load(r)).sum(),
        scored: m.streams.iter().map(|s| s.vectors_scored.load(r)).sum(),
        p50: m.latency.quantile(0.5),
        p99: m.latency.quantile(0.99),
        rss_mb: rss,
    }
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| if v.is_finite() { format!("≤{:.1} ms", v * 1e3) } else { "> 5 s".into() }).unwrap_or("-".into())
}

fn main() {
    mpdr::device::init_threads();
    let _ = tracing_subscriber::fmt().with_env_filter("warn").try_init();
    let which: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |c: &str| which.is_empty() || which.iter().any(|w| w == c);
    let dir = tempfile::tempdir().unwrap();
    let wav60 = dir.path().join("m60.wav");
    machine_wav(&wav60, 60);
    let idnn = bundle(dir.path(), ModelKind::Idnn, EnergyPreset::Idnn);
    let ae1024 = bundle(dir.path(), ModelKind::MpdrR, EnergyPreset::DcaseAe1024);
    let ae128 = bundle(dir.path(), ModelKind::Ae, EnergyPreset::PaperAe128);
    let gmm = gmm_bundle(dir.path());
    println!(
        "machine: {} cores; libtorch threads 1",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    if want("fast") {
        println!("\n| energy | streams | audio s | wall s | audio-s per wall-s | per stream | vectors |");
        println!("|---|---|---|---|---|---|---|");
        for (name, model, n) in [
            ("gmm (profiles, default)", &gmm, 256),
            ("idnn", &idnn, 64),
            ("paper-ae128", &ae128, 64),
            ("dcase-ae1024 (mpdr-r)", &ae1024, 16),
        ] {
            let o = run_case(dir.path(), model, &wav60, n, None, false);
            println!(
                "| {name} | {n} | {:.0} | {:.1} | {:.0} | {:.1} | {} |",
                o.audio_s,
                o.wall_s,
                o.audio_s / o.wall_s,
                o.audio_s / o.wall_s / n as f64,
                o.scored
            );
        }
    }
    if want("live") {
        let secs: f64 = std::env::var("MPDR_BENCH_LIVE_S").ok().and_then(|v| v.parse().ok()).unwrap_or(30.0);
        println!(
            "\n| energy | real-time streams | seconds | dropped samples | p50 latency | p99 latency | peak RSS MB |"
        );
        println!("|---|---|---|---|---|---|---|");
        // `MPDR_BENCH_ONLY=<text>`: only the cases whose energy name contains it.
        let only = std::env::var("MPDR_BENCH_ONLY").unwrap_or_default();
        for (name, model, n) in [
            ("gmm (profiles, default)", &gmm, 256),
            ("gmm (profiles, default)", &gmm, 512),
            ("gmm (profiles, default)", &gmm, 1000),
            ("gmm (profiles, default)", &gmm, 2000),
            ("idnn", &idnn, 256),
            ("dcase-ae1024 (mpdr-r)", &ae1024, 32),
            ("dcase-ae1024 (mpdr-r)", &ae1024, 64),
        ]
        .into_iter()
        .filter(|c| c.0.contains(only.as_str()))
        {
            let o = run_case(dir.path(), model, &wav60, n, Some(secs), true);
            let peak = o.rss_mb.iter().map(|x| x.1).fold(0.0, f64::max);
            println!("| {name} | {n} | {:.0} | {} | {} | {} | {peak:.0} |", o.wall_s, o.dropped, ms(o.p50), ms(o.p99));
        }
    }
    if want("soak") {
        // 16 streams x 1 hour of audio (the 60-s file looped 60 times), as fast as possible.
        let hour = dir.path().join("hour");
        std::fs::create_dir_all(&hour).unwrap();
        for k in 0..60 {
            std::fs::hard_link(&wav60, hour.join(format!("{k:02}.wav"))).unwrap();
        }
        let o = run_case(dir.path(), &idnn, &hour, 16, None, false);
        let after_warmup: Vec<f64> = o.rss_mb.iter().filter(|(t, _)| *t >= o.wall_s * 0.1).map(|x| x.1).collect();
        let (first, last) = (after_warmup.first().copied().unwrap_or(0.0), after_warmup.last().copied().unwrap_or(0.0));
        let peak = after_warmup.iter().copied().fold(0.0, f64::max);
        println!(
            "\nsoak: 16 streams x 3600 s (idnn) in {:.0} s wall; RSS after warm-up {first:.0} MB -> end {last:.0} MB (peak {peak:.0} MB, growth {:+.1}%)",
            o.wall_s,
            100.0 * (last - first) / first.max(1e-9)
        );
    }
}
