//! `mpdr monitor`: the streaming daemon.
//!
//! ```text
//! stream threads (one per [[stream]])        scorer thread              event thread
//! source -> StreamingExtractor -> vectors ==> batch across streams ==> sinks (log; issue 6: outbox)
//!   cpal callback --(audio queue)--> |         models, detectors
//! ```
//!
//! Edges and their overflow policies:
//! - cpal callback -> stream thread: bounded (`pipeline.audio_queue_blocks`), recycled
//!   buffers; when full the callback drops the block and counts its samples. Never blocks.
//! - stream thread -> scorer: one bounded queue for all streams (`pipeline.vector_queue`
//!   messages, one per audio block). Live sources (devices, paced replays) `try_send` and
//!   count dropped samples when it is full; as-fast-as-possible replays block (back-pressure:
//!   nothing is live, so nothing is lost). Up/down/end messages always block (rare, ordered).
//! - scorer -> event thread: bounded; the scorer blocks (events are rare and must not be lost).
//!
//! Shutdown is in-band: stream threads stop their sources and send `End`; the supervisor
//! drops its own sender so the queue closes when the last stream is done; the scorer drains
//! and exits, dropping the event sender; the event thread drains and exits. Every thread is
//! joined, within `pipeline.shutdown_timeout_s`.

pub mod access;
pub mod commit;
pub mod config;
pub mod console;
pub mod error;
pub mod events;
pub mod http;
pub mod notify;
mod reload;
pub mod scorer;
mod start;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use error::DaemonError;

type Result<T, E = DaemonError> = std::result::Result<T, E>;
use crossbeam_channel::{bounded, Sender, TrySendError};

use crate::alarm::AlarmEvent;
use crate::audio::source::{sleep_unless, Next, OpenContext};
use crate::detect::{DetectConfig, ThresholdSetting};
use crate::features::stream::StreamingExtractor;
use crate::features::FeatureParams;
use crate::metrics::{Metrics, StreamMetrics};
use crate::model::Manifest;
use config::{Monitor, StreamConfig};

/// From the stream threads to the scorer.
#[derive(Debug)]
pub enum StreamMsg {
    /// `data` holds whole vectors of the stream's model, frame-major.
    Vectors {
        stream: usize,
        data: Vec<f32>,
        dim: usize,
        arrived: Instant,
        /// The block was silence: its vectors advance stream time but are not scored.
        silent: bool,
        /// The block's samples (first message of a block, audio sources): the scorer keeps the
        /// last window of them for alarm evidence.
        audio: Vec<f32>,
    },
    /// The machine stopped or runs again (`[stream.run]`).
    Run {
        stream: usize,
        event: crate::detect::run::RunEvent,
        t_s: f64,
    },
    /// A signal fault began or ended (`[stream.health]`, the bundle's level range).
    Fault {
        stream: usize,
        event: crate::detect::signal_fault::FaultEvent,
        t_s: f64,
    },
    /// The signal's health changed (`[stream.health]`).
    Health {
        stream: usize,
        event: crate::detect::health::HealthEvent,
        /// Stream time of the block that changed it.
        t_s: f64,
    },
    Up {
        stream: usize,
    },
    Down {
        stream: usize,
        reason: String,
    },
    End {
        stream: usize,
    },
}

impl StreamMsg {
    pub fn vector_count(&self) -> usize {
        match self {
            StreamMsg::Vectors { data, dim, .. } => data.len() / dim.max(&1),
            _ => 0,
        }
    }
}

/// Live changes for the scorer (SIGHUP).
#[derive(Debug)]
pub enum Control {
    /// (stream index, detection settings, threshold).
    Reconfigure(Vec<(usize, DetectConfig, f64)>),
    /// Load and verify the bundle at `path` and put it in model slot `model`; the running one
    /// keeps scoring when it is refused. The answer comes on `reply`.
    Swap { model: usize, path: PathBuf, id: String, reply: Sender<Result<(), String>> },
    /// A runtime threshold for one stream (console, API).
    Threshold { stream: usize, value: f64 },
}

/// To the event thread.
pub type EventMsg = Box<AlarmEvent>;

/// What the caller controls: stop (SIGTERM/SIGINT) and reload (SIGHUP) flags, and whether to
/// exit once every finite replay has ended.
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    pub stop: Arc<AtomicBool>,
    pub reload: Arc<AtomicBool>,
    pub exit_when_done: bool,
    /// Filled with the run's metrics once the pipeline is up (benchmarks, embedding).
    pub metrics: Arc<std::sync::OnceLock<Arc<Metrics>>>,
    /// Every window decision of every stream, as the detector made it (`mpdr backtest`).
    pub tap: Option<Sender<Tapped>>,
}

/// One window decision, tapped from the scorer.
#[derive(Debug, Clone, PartialEq)]
pub struct Tapped {
    pub stream: usize,
    /// Stream time at the end of the window, seconds.
    pub t_s: f64,
    pub score: f64,
    pub threshold: f64,
    pub transition: Option<crate::detect::Transition>,
}

/// Model id for events and metrics: bundle folder name @ energy weights' sha256 prefix.
pub fn model_id(path: &Path, m: &Manifest) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "model".into());
    match m.files.get("energy.safetensors") {
        Some(f) => format!("{name}@{}", &f.sha256[..12.min(f.sha256.len())]),
        None => name,
    }
}

fn threshold_of(setting: ThresholdSetting, m: &Manifest) -> f64 {
    match setting {
        ThresholdSetting::Value(v) => v,
        ThresholdSetting::Model => m.threshold.as_ref().map(|t| t.value).unwrap_or(f64::INFINITY),
    }
}

/// Run the monitor until `ctl.stop` (or, with `exit_when_done`, until every replay ended).
pub fn run(config_path: &Path, ctl: RunControl) -> Result<()> {
    crate::device::init_threads();
    let valid = Monitor::load(config_path, true)?;
    let cfg = valid.config().clone();
    let device = cfg.scoring.device.resolve().map_err(DaemonError::Device)?;
    let models = start::Models::read(&cfg, device)?;
    let metrics = start::metrics(&cfg, &models);
    let (ev_tx, ev_rx) = bounded::<EventMsg>(10_000);
    let (ctrl_tx, ctrl_rx) = bounded::<Control>(16);
    let console = console::start(&valid, &metrics, &models.manifests, &models.stream_model, &ctrl_tx, &ev_tx)?;
    // Thresholds: the config's (or the bundle's), unless a runtime change still applies.
    // (A window other than the threshold's calibration window is one of the config's warnings.)
    let thresholds: Vec<f64> = (cfg.streams.iter().enumerate())
        .map(|(i, s)| {
            console
                .runtime_threshold(&s.name)
                .unwrap_or_else(|| threshold_of(s.detect.threshold, &models.manifests[models.stream_model[i]]))
        })
        .collect();
    for (i, t) in thresholds.iter().enumerate() {
        metrics.streams[i].threshold.set(*t);
    }
    let http_stop = Arc::new(AtomicBool::new(false));
    let http = start::serve(&valid, &metrics, &console, &http_stop)?;

    // Alarm delivery: the outbox, one worker per delivery sink, the event thread; the status
    // servers (Modbus).
    let state_dir = valid.state_dir().to_path_buf();
    let slots = events::build_workers(&valid.sinks(), &state_dir, &metrics)?;
    let evidence = crate::alarm::evidence::Evidence::new(
        &state_dir,
        (cfg.streams.iter().enumerate())
            .map(|(i, s)| {
                let audio =
                    crate::alarm::evidence::StreamAudio { features: models.features(i), window_s: s.detect.window_s };
                (s.name.clone(), audio)
            })
            .collect(),
    );
    let events = events::spawn(ev_rx, slots, state_dir.clone(), cfg.state.max_events, metrics.clone(), Some(evidence))?;
    tracing::info!(outbox = %state_dir.join(crate::alarm::outbox::DB_FILE).display(), "alarm outbox open");
    let servers = events::start_servers(&valid.sinks(), &metrics)?;

    let (tx, rx) = bounded::<StreamMsg>(cfg.pipeline.vector_queue);
    let inputs = start::ScorerInputs {
        thresholds,
        device,
        metrics: metrics.clone(),
        events: ev_tx,
        queue: rx,
        control: ctrl_rx,
        tap: ctl.tap.clone(),
    };
    let scorer = start::spawn_scorer(&cfg, &models, inputs)?;
    tracing::info!(models = models.manifests.len(), device = ?device, "models loaded");
    let stream_stop = Arc::new(AtomicBool::new(false));
    let stream_threads = start::spawn_streams(&cfg, &models, &tx, &metrics, &stream_stop)?;

    let _ = ctl.metrics.set(metrics.clone());
    metrics.ready.store(true, Ordering::Relaxed);
    notify::notify(&format!("READY=1\nSTATUS={}", status_line(&metrics)));
    tracing::info!(streams = cfg.streams.len(), "monitoring");
    let mut reloading =
        Reloading { path: config_path, slots: models.slots(), stream_model: &models.stream_model, ctrl: &ctrl_tx };
    let current = supervise(valid, &ctl, &mut reloading, &scorer, &console, &events, &metrics)?;

    // Shutdown: streams end in-band, then the queue closes and the scorer and events drain.
    notify::notify("STOPPING=1");
    metrics.ready.store(false, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs_f64(current.config().pipeline.shutdown_timeout_s);
    stream_stop.store(true, Ordering::Relaxed);
    drop(tx); // held until now: the scorer's queue closes when the last stream thread is done
    drop(ctrl_tx);
    // The console and the acknowledgement hook hold senders of the event thread.
    console.close();
    if let Ok(mut h) = metrics.on_ack.lock() {
        h.take();
    }
    if let Ok(mut h) = metrics.on_command.lock() {
        h.take();
    }
    let mut clean = join_until(stream_threads, deadline, "stream");
    clean &= join_until(vec![scorer], deadline, "scorer");
    // The event thread ends when the scorer's sender is gone; it stops the sink workers
    // (a delivery in progress may take up to its sink's timeout).
    clean &= join_until(vec![events.handle], deadline + Duration::from_secs(30), "events");
    drop(servers);
    http_stop.store(true, Ordering::Relaxed);
    if let Some(h) = http {
        h.join();
    }
    if !clean {
        return Err(DaemonError::Shutdown);
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// What a SIGHUP needs: the config file, the model slots and the scorer's control queue.
struct Reloading<'a> {
    path: &'a Path,
    slots: Vec<reload::Slot>,
    stream_model: &'a [usize],
    ctrl: &'a Sender<Control>,
}

/// The supervisor loop until a stop or the end of every replay: reloads, the systemd
/// watchdog (petted only while the scorer is alive and keeping up), console expiries, status.
/// Returns the configuration running at the end.
fn supervise(
    mut current: Monitor,
    ctl: &RunControl,
    r: &mut Reloading,
    scorer: &JoinHandle<()>,
    console: &console::Console,
    events: &events::Events,
    metrics: &Arc<Metrics>,
) -> Result<Monitor> {
    let watchdog = notify::watchdog_interval();
    let (mut last_pet, mut last_status, mut last_expiry) = (Instant::now(), Instant::now(), Instant::now());
    loop {
        if ctl.stop.load(Ordering::Relaxed) {
            tracing::info!("stop requested: draining");
            return Ok(current);
        }
        if ctl.exit_when_done && metrics.streams.iter().all(|s| s.ended.load(Ordering::Relaxed)) {
            tracing::info!("every stream has ended");
            return Ok(current);
        }
        if ctl.reload.swap(false, Ordering::Relaxed) {
            notify::notify("RELOADING=1");
            match reload::reload(r.path, &current, &mut r.slots, r.stream_model, r.ctrl, console, metrics) {
                Ok((new, slots)) => {
                    if events.replace.send(slots).is_err() {
                        tracing::warn!("sinks not replaced: the event thread has stopped");
                    }
                    current = new;
                    metrics.reloads.fetch_add(1, Ordering::Relaxed);
                    metrics.last_reload_unix_s.store(crate::metrics::unix_s(), Ordering::Relaxed);
                    tracing::info!("configuration reloaded");
                }
                Err(e) => {
                    metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("reload rejected, the running configuration stays: {e:#}");
                }
            }
            notify::notify(&format!("READY=1\nSTATUS={}", status_line(metrics)));
        }
        if let Some(w) = watchdog {
            // Pet only while the pipeline is alive: a stalled scorer gets us restarted.
            if last_pet.elapsed() >= w / 2
                && !scorer.is_finished()
                && metrics.scorer_silence_s() < w.as_secs_f64() / 2.0
            {
                notify::notify("WATCHDOG=1");
                last_pet = Instant::now();
            }
        }
        if last_expiry.elapsed() >= Duration::from_secs(1) {
            console.expire();
            last_expiry = Instant::now();
        }
        if last_status.elapsed() >= Duration::from_secs(5) {
            notify::notify(&format!("STATUS={}", status_line(metrics)));
            last_status = Instant::now();
        }
        if scorer.is_finished() {
            return Err(DaemonError::Scorer("the thread stopped unexpectedly".into()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status_line(m: &Metrics) -> String {
    let up = m.streams.iter().filter(|s| s.up.load(Ordering::Relaxed)).count();
    let alarms = m.streams.iter().filter(|s| s.alarm_state().is_raised()).count();
    format!("{} streams, {up} up, {alarms} in alarm", m.streams.len())
}

/// Join threads, giving up at `deadline`; false when some did not finish.
fn join_until(handles: Vec<JoinHandle<()>>, deadline: Instant, what: &str) -> bool {
    let mut ok = true;
    for h in handles {
        while !h.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if h.is_finished() {
            if h.join().is_err() {
                tracing::error!(thread = what, "thread panicked");
                ok = false;
            }
        } else {
            tracing::error!(thread = what, "did not stop in time");
            ok = false;
        }
    }
    ok
}

/// Log-mel level (dB) below which a frame is digital silence: log10 of the front-end's epsilon
/// alone is about -156 dB; any real signal, however quiet, is far above -140 dB.
const SILENT_FRAME_DB: f32 = -140.0;

/// Whether a stacked vector (frames x n_mels, frame-major) has a frame of digital silence.
fn touches_digital_silence(v: &[f32], n_mels: usize) -> bool {
    v.chunks_exact(n_mels.max(1)).any(|f| f.iter().all(|&x| x < SILENT_FRAME_DB))
}

/// A stream's level watchers: signal health, signal faults and, with `[stream.run]`, the
/// machine's running state.
struct Levels {
    health: crate::detect::health::HealthMonitor,
    faults: crate::detect::signal_fault::SignalFaults,
    run: Option<crate::detect::run::RunMonitor>,
    rate: f64,
}

impl Levels {
    /// Judge one audio block: levels into the metrics, changes to the scorer; true when the
    /// block is not to be scored (silence, or the machine not running).
    fn push(&mut self, idx: usize, block: &[f32], sm: &StreamMetrics, control: &impl Fn(StreamMsg)) -> bool {
        let (h, event) = self.health.push(block);
        sm.level_dbfs.set(h.rms_dbfs);
        sm.peak_dbfs.set(h.peak_dbfs);
        sm.clipped_samples.fetch_add(h.clipped as u64, Ordering::Relaxed);
        let t_s = self.health.time_s();
        if let Some(event) = event {
            control(StreamMsg::Health { stream: idx, event, t_s });
        }
        if let Some(event) = self.faults.push(block) {
            control(StreamMsg::Fault { stream: idx, event, t_s });
        }
        let faulty = self.faults.unscored();
        let Some(run) = &mut self.run else { return h.silent || faulty };
        let (scored, change) = run.push(h.rms_dbfs, block.len() as f64 / self.rate);
        if let Some(event) = change {
            control(StreamMsg::Run { stream: idx, event, t_s });
        }
        h.silent || faulty || !scored
    }
}

/// A stream thread: source -> features -> the scorer's queue, with reopen-and-backoff.
fn stream_loop(
    idx: usize,
    cfg: &StreamConfig,
    (features, range): (&FeatureParams, Option<crate::detect::signal_fault::LevelRange>),
    tx: &Sender<StreamMsg>,
    metrics: &Metrics,
    stop: &AtomicBool,
    pl: &config::PipelineConfig,
) {
    let ctx = OpenContext { rate: features.sample_rate, queue_blocks: pl.audio_queue_blocks, n_mels: features.n_mels };
    let mut source = cfg.source.build(ctx);
    let sm = &metrics.streams[idx];
    let dim = features.vector_dim();
    // Samples go through the streaming front-end; a log-mel replay's frames straight to the stacker.
    let mut extractor = StreamingExtractor::new(features);
    let mut stacker = crate::features::stream::VectorStacker::new(features.n_mels, features.frames);
    let mut levels = Levels {
        health: crate::detect::health::HealthMonitor::new(cfg.health.clone(), features.sample_rate),
        faults: crate::detect::signal_fault::SignalFaults::new(
            cfg.health.clone(),
            features.sample_rate,
            range,
            cfg.run.as_ref().map(|r| r.off_below_dbfs),
        ),
        run: cfg.run.clone().map(crate::detect::run::RunMonitor::new),
        rate: features.sample_rate as f64,
    };
    let mut block = Vec::with_capacity(features.sample_rate as usize);
    let mut open = false;
    let mut down_reported = false;
    let mut backoff = 0.5f64;
    let mut capture_dropped = 0u64;
    let control = |m: StreamMsg| {
        let _ = tx.send_timeout(m, Duration::from_secs_f64(pl.shutdown_timeout_s));
    };
    while !stop.load(Ordering::Relaxed) {
        if !open {
            match source.open() {
                Ok(()) => {
                    open = true;
                    backoff = 0.5;
                    down_reported = false;
                    control(StreamMsg::Up { stream: idx });
                }
                Err(e) => {
                    if !down_reported {
                        tracing::warn!(stream = %cfg.name, source = %source.describe(), error = %e, "source unavailable; retrying with backoff");
                        control(StreamMsg::Down { stream: idx, reason: e.to_string() });
                        down_reported = true;
                    }
                    sleep_unless(stop, Duration::from_secs_f64(backoff));
                    backoff = (backoff * 2.0).min(pl.retry_max_s);
                    continue;
                }
            }
        }
        match source.next(&mut block) {
            Ok(Next::Data(arrived)) => {
                // `Some(n_mels)`: a log-mel replay, whose blocks are frames, not samples.
                let frames = source.frames();
                // A log-mel replay counts the samples its frames stand for.
                let n_in = frames.map_or(block.len(), |m| block.len() / m.max(1) * features.hop_length);
                sm.samples_in.fetch_add(n_in as u64, Ordering::Relaxed);
                let d = source.dropped();
                if d > capture_dropped {
                    sm.samples_dropped.fetch_add(d - capture_dropped, Ordering::Relaxed);
                    capture_dropped = d;
                }
                // Signal health of audio blocks (a log-mel replay has no samples to judge).
                let silent = frames.is_none() && !block.is_empty() && levels.push(idx, &block, sm, &control);
                let mut data = Vec::new();
                match frames {
                    Some(m) => {
                        block.chunks_exact(m).for_each(|f| stacker.push(f, &mut |v: &[f32]| data.extend_from_slice(v)))
                    }
                    None => extractor.push(&block, |v| data.extend_from_slice(v)),
                }
                if data.is_empty() {
                    continue;
                }
                // Runs of scored and silent vectors, in order: a vector with a frame of digital
                // silence (the edges of a dropout) is not scored either. The usual block is one
                // run, sent as it is.
                let quiet = |v: &[f32]| silent || (frames.is_none() && touches_digital_silence(v, features.n_mels));
                let first = quiet(&data[..dim]);
                let runs: Vec<(bool, Vec<f32>)> = if data.chunks_exact(dim).all(|v| quiet(v) == first) {
                    vec![(first, data)]
                } else {
                    let mut runs: Vec<(bool, Vec<f32>)> = Vec::new();
                    for v in data.chunks_exact(dim) {
                        let q = quiet(v);
                        match runs.last_mut() {
                            Some((rq, d)) if *rq == q => d.extend_from_slice(v),
                            _ => runs.push((q, v.to_vec())),
                        }
                    }
                    runs
                };
                // The block's samples ride with its first message (the scorer's evidence ring).
                let mut audio = if frames.is_none() { block.clone() } else { Vec::new() };
                let (mut gone, mut dropped) = (false, false);
                for (quiet, data) in runs {
                    let audio = std::mem::take(&mut audio);
                    let msg = StreamMsg::Vectors { stream: idx, data, dim, arrived, silent: quiet, audio };
                    if source.realtime() {
                        match tx.try_send(msg) {
                            Ok(()) => {}
                            Err(TrySendError::Full(_)) => dropped = true,
                            Err(TrySendError::Disconnected(_)) => gone = true,
                        }
                    } else if tx.send(msg).is_err() {
                        gone = true;
                    }
                }
                if dropped {
                    sm.samples_dropped.fetch_add(block.len() as u64, Ordering::Relaxed);
                }
                if gone {
                    break;
                }
            }
            Ok(Next::Idle) => {}
            Ok(Next::End) => {
                tracing::info!(stream = %cfg.name, "source ended");
                break;
            }
            Err(e) => {
                tracing::warn!(stream = %cfg.name, source = %source.describe(), error = %e, "source failed; reopening");
                open = false;
                control(StreamMsg::Down { stream: idx, reason: e.to_string() });
                down_reported = true;
            }
        }
    }
    control(StreamMsg::End { stream: idx });
}
