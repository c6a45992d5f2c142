//! `mpdr demo`: the whole product on the synthetic plant. Starts the real monitor
//! (`daemon::run`) with 3–4 synthetic machines, one of which develops a fault part-way, with
//! time accelerated; the log sink, a webhook sink posting to a receiver the demo runs itself,
//! and the Modbus server on a loopback port. Shows a live view (plain lines when stdout is not
//! a terminal) and writes a report: a timeline PNG per stream, a spectrogram of the alarmed
//! window with its top bands outlined, the delivered events, and a summary.
#![allow(clippy::print_stdout)] // the demo prints its console and summary on stdout

use std::io::{IsTerminal, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::alarm::hmac::verify_webhook;
use crate::alarm::{format_range, AlarmEvent, EventKind};
use crate::audio::synth::{Fault, Machine, Synth, SynthSpec};
use crate::daemon::{run, RunControl};
use crate::eval::plot::{evidence_png, font_available, timeline_png, TimelinePoint};
use crate::features::{logmel, FeatureParams};
use crate::metrics::Metrics;

/// The demo's knobs (`mpdr demo --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Machines to monitor (3 or 4: fan, pump, valve, slider).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(3..=4))]
    pub streams: u8,
    /// Time acceleration: stream seconds per wall second.
    #[arg(long, default_value_t = 20.0)]
    pub speed: f64,
    /// The fault one machine develops (on the first machine it is typical for).
    #[arg(long, value_enum, default_value = "bearing")]
    pub fault: Fault,
    /// Wall-clock length of the demo in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Real time (speed 1): watch the plant as it is; implies a longer --duration to see a fault.
    #[arg(long)]
    pub realtime: bool,
    /// Where the report goes.
    #[arg(long, default_value = "demo-report")]
    pub out: PathBuf,
    /// Folder with one model bundle per machine type (`models/<machine>`).
    #[arg(long, default_value = "models")]
    pub models: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamSummary {
    pub name: String,
    pub machine: String,
    pub fault: Option<String>,
    pub fault_at_s: Option<f64>,
    pub alarms_raised: u64,
    pub first_alarm_s: Option<f64>,
    pub top_bands: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    pub streams: Vec<StreamSummary>,
    pub webhook_events: usize,
    pub webhook_signatures_ok: bool,
    pub stream_seconds: f64,
    pub wall_seconds: f64,
}

const SECRET: &str = "mpdr-demo-secret";
/// The demo console's token (threshold changes, acknowledgements).
const CONSOLE_TOKEN: &str = "demo";
/// The demo machines are machine id 00 of the demo models' training data (`make models`:
/// `mpdr synth dataset --seed 1` makes id k from instance 1000 + k).
const INSTANCE: u64 = 1000;

/// Run the demo; returns its summary (also written to `<out>/summary.json`).
pub fn demo(args: &DemoArgs) -> Result<DemoSummary> {
    let speed = if args.realtime { 1.0 } else { args.speed };
    anyhow::ensure!(speed > 0.0 && speed.is_finite(), "--speed must be > 0");
    anyhow::ensure!(args.duration > 0.0, "--duration must be > 0");
    let machines: Vec<Machine> = Machine::ALL[..args.streams as usize].to_vec();
    let faulty = machines.iter().position(|m| m.typical_faults().contains(&args.fault)).unwrap_or(0);
    let stream_s = args.duration * speed;
    let fault_at = (0.3 * stream_s).max(20.0).min(0.6 * stream_s);
    for m in &machines {
        let p = args.models.join(m.name());
        anyhow::ensure!(
            p.join("manifest.toml").exists(),
            "{}: no demo model here (run from the project folder, or pass --models; `make models` rebuilds them)",
            p.display()
        );
    }
    let _ = std::fs::remove_dir_all(args.out.join("state"));
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}: cannot create", args.out.display()))?;
    let models = std::fs::canonicalize(&args.models)?;

    // The webhook receiver the alarms are delivered to.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let hook = format!("http://{}/alarms", listener.local_addr()?);
    let received: Arc<Mutex<Vec<(AlarmEvent, bool)>>> = Arc::default();
    {
        let received = received.clone();
        let server = tiny_http::Server::from_listener(listener, None).map_err(|e| anyhow::anyhow!("{e}"))?;
        std::thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let header = |name: &'static str| {
                    req.headers()
                        .iter()
                        .find(|h| h.field.equiv(name))
                        .map(|h| h.value.as_str().to_string())
                        .unwrap_or_default()
                };
                let (id, ts, sig) = (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
                let now = crate::metrics::unix_s();
                let ok = verify_webhook(SECRET.as_bytes(), &id, &ts, body.as_bytes(), &sig, now, 300);
                if let Ok(ev) = serde_json::from_str::<AlarmEvent>(&body) {
                    let mut r = received.lock().unwrap_or_else(|p| p.into_inner());
                    if !r.iter().any(|(e, _)| e.id == ev.id) {
                        r.push((ev, ok));
                    }
                }
                let _ = req.respond(tiny_http::Response::empty(204));
            }
        });
    }
    std::env::set_var("MPDR_DEMO_WEBHOOK_SECRET", SECRET);
    let modbus_port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let console_port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    std::env::set_var("MPDR_DEMO_CONSOLE_TOKEN", CONSOLE_TOKEN);

    // The monitor config, as a user would write it.
    let mut cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{console_port}\"\ntoken_env = \"MPDR_DEMO_CONSOLE_TOKEN\"\n[state]\ndir = \"{}\"\n",
        std::fs::canonicalize(&args.out)?.join("state").display()
    );
    for (i, m) in machines.iter().enumerate() {
        let fault = if i == faulty {
            format!(
                ", fault = \"{}\", fault_at_s = {fault_at:.1}, ramp_s = {:.1}",
                args.fault.name(),
                (0.1 * stream_s).min(60.0)
            )
        } else {
            String::new()
        };
        // A profile model decides on the windows it was trained on: the evidence shows the same.
        let window_s = crate::model::Bundle::read_manifest(&models.join(m.name()))
            .ok()
            .and_then(|b| b.features)
            .and_then(|f| f.profile_window_s())
            .unwrap_or(10.0);
        cfg += &format!(
            "[[stream]]\nname = \"{0}-1\"\nmodel = \"{1}\"\nsource = {{ type = \"synth\", machine = \"{0}\", seed = {2}, instance = {INSTANCE}{fault}, speed = {speed} }}\n\
             detect = {{ window_s = {window_s:.3}, hop_s = 1.0, threshold = \"model\", on_delay_s = 5.0, off_delay_s = 10.0 }}\n",
            m.name(),
            models.join(m.name()).display(),
            100 + i
        );
    }
    cfg += &format!(
        "[[sink]]\ntype = \"log\"\n[[sink]]\ntype = \"webhook\"\nurl = \"{hook}\"\nhmac_secret_env = \"MPDR_DEMO_WEBHOOK_SECRET\"\n\
         retry = {{ initial_s = 0.2, max_s = 2.0 }}\n[[sink]]\ntype = \"modbus\"\nlisten = \"127.0.0.1:{modbus_port}\"\n"
    );
    let cfg_path = args.out.join("monitor.toml");
    std::fs::write(&cfg_path, &cfg)?;

    let ctl = RunControl::default();
    let (stop, metrics_cell) = (ctl.stop.clone(), ctl.metrics.clone());
    let daemon = {
        let p = cfg_path.clone();
        std::thread::Builder::new().name("mpdr-demo-daemon".into()).spawn(move || run(&p, ctl))?
    };
    let start = Instant::now();
    let metrics = loop {
        if let Some(m) = metrics_cell.get() {
            break m.clone();
        }
        if daemon.is_finished() {
            return match daemon.join() {
                Ok(Err(e)) => Err(anyhow::Error::new(e).context("the monitor did not start")),
                _ => Err(anyhow::anyhow!("the monitor did not start")),
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let tty = std::io::stdout().is_terminal();
    let names: Vec<String> = machines.iter().map(|m| format!("{}-1", m.name())).collect();
    println!(
        "mpdr demo: {} synthetic machines at {speed}x real time for {:.0} s; {} develops a {} fault at stream time {:.0} s.\n\
         Alarms go to the log, to a webhook receiver ({hook}) and to Modbus TCP on 127.0.0.1:{modbus_port}.\n\
         Live console: http://127.0.0.1:{console_port}/ (token for changes: {CONSOLE_TOKEN}); up while the demo runs \
         (--realtime to watch at the machines' own pace).",
        machines.len(),
        args.duration,
        names[faulty],
        args.fault.name(),
        fault_at
    );
    let vector_s = 512.0 / 16000.0;
    let mut timelines: Vec<Vec<TimelinePoint>> = vec![Vec::new(); machines.len()];
    let mut shown = 0usize;
    let mut last_plain = Instant::now();
    while start.elapsed().as_secs_f64() < args.duration && !daemon.is_finished() {
        std::thread::sleep(Duration::from_millis(250));
        for (i, s) in metrics.streams.iter().enumerate() {
            let t_s = s.vectors_scored.load(Ordering::Relaxed) as f64 * vector_s;
            if s.decisions.load(Ordering::Relaxed) > 0 {
                timelines[i].push(TimelinePoint {
                    t_s,
                    score: s.window_score.get(),
                    threshold: s.threshold.get(),
                    alarm: s.alarm_state().is_raised(),
                });
            }
        }
        let events: Vec<AlarmEvent> =
            received.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(e, _)| e.clone()).collect();
        if tty {
            draw(&metrics, &machines, &events, start.elapsed().as_secs_f64(), args.duration);
        } else {
            for e in events.iter().skip(shown) {
                println!("[webhook] {} {} — {}", e.kind.as_str(), e.stream, e.message);
            }
            if last_plain.elapsed() >= Duration::from_secs(5) {
                println!("{}", status_line(&metrics, start.elapsed().as_secs_f64()));
                last_plain = Instant::now();
            }
        }
        shown = events.len();
    }
    // Give in-flight deliveries a moment, then stop the monitor.
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    match daemon.join() {
        Ok(r) => r?,
        Err(_) => anyhow::bail!("the monitor thread panicked"),
    }
    let wall = start.elapsed().as_secs_f64();
    report(args, &machines, faulty, fault_at, &timelines, &received, &metrics, wall)
}

fn status_line(m: &Metrics, t: f64) -> String {
    let parts: Vec<String> = m
        .streams
        .iter()
        .map(|s| {
            let st = match s.alarm_state() {
                crate::detect::AlarmState::Alarm => "ALARM",
                other => other.as_str(),
            };
            format!("{} {:.3}/{:.3} {st}", s.name, s.window_score.get(), s.threshold.get())
        })
        .collect();
    format!("[{t:5.1} s] {}", parts.join(" | "))
}

/// The live view: one bar per stream (score against threshold), then the latest events.
fn draw(m: &Metrics, machines: &[Machine], events: &[AlarmEvent], t: f64, total: f64) {
    let mut o = String::from("\x1b[H\x1b[2J");
    o += &format!("mpdr demo — {t:4.0} / {total:.0} s    (score bar: | marks the threshold)\n\n");
    for (s, m) in m.streams.iter().zip(machines) {
        let (score, thr) = (s.window_score.get(), s.threshold.get());
        let width = 40usize;
        let scale = (thr * 1.5).max(score).max(1e-9);
        let fill = ((score / scale) * width as f64).clamp(0.0, width as f64) as usize;
        let mark = ((thr / scale) * width as f64).clamp(0.0, width as f64 - 1.0) as usize;
        let bar: String = (0..width)
            .map(|i| {
                if i == mark {
                    '|'
                } else if i < fill {
                    '#'
                } else {
                    ' '
                }
            })
            .collect();
        let state = s.alarm_state();
        let (label, color) = match state {
            _ if state.is_raised() => ("ALARM  ", "\x1b[1;31m"),
            crate::detect::AlarmState::Pending => ("pending", "\x1b[33m"),
            _ => ("normal ", "\x1b[32m"),
        };
        o += &format!(
            "{:<10} {:<7} [{bar}] {:>8.4} / {:<8.4} {color}{label}\x1b[0m  alarms {}\n",
            s.name,
            m.name(),
            score,
            thr,
            s.alarms_raised.load(Ordering::Relaxed)
        );
    }
    o += "\nevents delivered to the webhook:\n";
    for e in events.iter().rev().take(8) {
        o += &format!("  {} {:<11} {:<9} {}\n", &e.time[11..19], e.kind.as_str(), e.stream, e.message);
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(o.as_bytes());
    let _ = out.flush();
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &DemoArgs,
    machines: &[Machine],
    faulty: usize,
    fault_at: f64,
    timelines: &[Vec<TimelinePoint>],
    received: &Mutex<Vec<(AlarmEvent, bool)>>,
    metrics: &Metrics,
    wall: f64,
) -> Result<DemoSummary> {
    let events: Vec<(AlarmEvent, bool)> = received.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let plots = font_available();
    let mut streams = Vec::new();
    for (i, m) in machines.iter().enumerate() {
        let s = &metrics.streams[i];
        let name = s.name.clone();
        let raised: Vec<&AlarmEvent> =
            events.iter().map(|(e, _)| e).filter(|e| e.stream == name && e.kind == EventKind::Raised).collect();
        let fault = (i == faulty).then(|| args.fault.name().to_string());
        if plots {
            timeline_png(
                &args.out.join(format!("timeline_{name}.png")),
                &format!("{name} ({}{})", m.name(), fault.as_ref().map(|f| format!(", {f} fault")).unwrap_or_default()),
                &timelines[i],
                (i == faulty).then_some(fault_at),
            )?;
        }
        let mut top = Vec::new();
        if let Some(first) = raised.first() {
            top = first
                .top_bands
                .iter()
                .map(|b| format!("{} ({:.0}%)", format_range(b.lo_hz, b.hi_hz), 100.0 * b.share))
                .collect();
            if plots {
                // The alarmed window, regenerated exactly (the plant is deterministic).
                let spec = SynthSpec {
                    machine: *m,
                    seed: 100 + i as u64,
                    fault: (i == faulty).then_some(args.fault),
                    fault_at_s: fault_at,
                    ramp_s: (0.1 * args.duration * if args.realtime { 1.0 } else { args.speed }).min(60.0),
                    instance: INSTANCE,
                    ..SynthSpec::normal(*m, 100 + i as u64)
                };
                let end = first.stream_time_s;
                let begin = (end - 10.0).max(0.0);
                let audio = Synth::render(&spec, end);
                let lm = logmel(&FeatureParams::default(), &audio[(begin * 16000.0) as usize..])?;
                let highlight: Vec<(usize, String)> = first
                    .top_bands
                    .iter()
                    .map(|b| {
                        (
                            b.band,
                            format!("band {}: {} ({:.0}%)", b.band, format_range(b.lo_hz, b.hi_hz), 100.0 * b.share),
                        )
                    })
                    .collect();
                evidence_png(
                    &args.out.join(format!("spectrogram_{name}.png")),
                    &format!("{name}: the 10 s before the alarm (stream time {begin:.0}–{end:.0} s)"),
                    &lm.to_mel_major(),
                    lm.n_mels,
                    lm.n_frames,
                    512.0 / 16000.0,
                    &crate::alarm::band_ranges(&FeatureParams::default()),
                    &highlight,
                )?;
            }
        }
        streams.push(StreamSummary {
            name,
            machine: m.name().into(),
            fault,
            fault_at_s: (i == faulty).then_some(fault_at),
            alarms_raised: s.alarms_raised.load(Ordering::Relaxed),
            first_alarm_s: raised.first().map(|e| e.stream_time_s),
            top_bands: top,
        });
    }
    let summary = DemoSummary {
        streams,
        webhook_events: events.len(),
        webhook_signatures_ok: events.iter().all(|(_, ok)| *ok),
        stream_seconds: metrics
            .streams
            .first()
            .map(|s| s.vectors_scored.load(Ordering::Relaxed) as f64 * 0.032)
            .unwrap_or(0.0),
        wall_seconds: wall,
    };
    let evs: Vec<&AlarmEvent> = events.iter().map(|(e, _)| e).collect();
    std::fs::write(args.out.join("events.json"), serde_json::to_string_pretty(&evs)?)?;
    std::fs::write(args.out.join("summary.json"), serde_json::to_string_pretty(&summary)?)?;
    let mut md = format!(
        "# mpdr demo\n\n{} machines, {:.0} s of plant time in {:.0} s; {} events delivered to the webhook (signatures {}).\n\n\
         | stream | machine | fault | alarms | first alarm (stream s) | strongest bands |\n|---|---|---|---|---|---|\n",
        machines.len(),
        summary.stream_seconds,
        wall,
        summary.webhook_events,
        if summary.webhook_signatures_ok { "verified" } else { "NOT verified" }
    );
    for s in &summary.streams {
        md += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            s.name,
            s.machine,
            s.fault.as_ref().map(|f| format!("{f} from {:.0} s", s.fault_at_s.unwrap_or(0.0))).unwrap_or("—".into()),
            s.alarms_raised,
            s.first_alarm_s.map(|t| format!("{t:.0}")).unwrap_or("—".into()),
            s.top_bands.join(", ")
        );
    }
    md += "\nPlots: `timeline_<stream>.png` (score, threshold, alarm spans), `spectrogram_<stream>.png` (the window that raised the alarm, top bands outlined). Events: `events.json`. The monitor config the demo ran: `monitor.toml`.\n";
    std::fs::write(args.out.join("summary.md"), &md)?;
    println!("\n{md}\nReport: {}", args.out.display());
    Ok(summary)
}
