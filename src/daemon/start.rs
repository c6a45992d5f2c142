//! What `daemon::run` starts, in order: the models' manifests and ids, the metrics, the HTTP
//! server, the scorer thread (the models are loaded there, where tch stays) and one thread
//! per stream. Each returns what the supervisor needs to stop it again.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};
use tch::Device;

use super::config::{Monitor, MonitorConfig};
use super::error::thread;
use super::scorer::{profile_window, LoadedModel, ScoredStream, Scorer};
use super::{console, http, reload, stream_loop, Control, DaemonError, EventMsg, Result, StreamMsg, Tapped};
use crate::detect::Detector;
use crate::features::FeatureParams;
use crate::metrics::{Metrics, ModelInfo, StreamMetrics};
use crate::model::{Bundle, Manifest};

/// The distinct bundles of a config (one per folder, shared by the streams naming it).
pub(super) struct Models {
    pub paths: Vec<PathBuf>,
    pub manifests: Vec<Manifest>,
    /// Each stream's index into `paths`.
    pub stream_model: Vec<usize>,
    pub infos: Vec<ModelInfo>,
}

impl Models {
    pub fn read(cfg: &MonitorConfig, device: Device) -> Result<Self> {
        let mut paths: Vec<PathBuf> = Vec::new();
        for s in &cfg.streams {
            if !paths.contains(&s.model) {
                paths.push(s.model.clone());
            }
        }
        let manifests: Vec<Manifest> = paths.iter().map(|p| Bundle::read_manifest(p)).collect::<Result<_, _>>()?;
        let stream_model = cfg.streams.iter().map(|s| paths.iter().position(|p| p == &s.model).unwrap_or(0)).collect();
        let infos = paths
            .iter()
            .zip(&manifests)
            .map(|(p, m)| ModelInfo {
                id: super::model_id(p, m),
                kind: m.kind.to_string(),
                path: p.display().to_string(),
                device: format!("{device:?}"),
            })
            .collect();
        Ok(Models { paths, manifests, stream_model, infos })
    }

    /// The reload slots: each bundle's folder and the manifest it runs with.
    pub fn slots(&self) -> Vec<reload::Slot> {
        self.paths
            .iter()
            .zip(&self.manifests)
            .map(|(p, m)| reload::Slot { path: p.clone(), manifest: m.clone() })
            .collect()
    }

    /// The front-end of stream `i`'s model.
    pub fn features(&self, i: usize) -> FeatureParams {
        self.manifests[self.stream_model[i]].features.clone().unwrap_or_default()
    }
}

/// One metrics set for the run: a row per stream, the box's identity, the priorities.
pub(super) fn metrics(cfg: &MonitorConfig, models: &Models) -> Arc<Metrics> {
    let mut metrics = Metrics::new(
        (cfg.streams.iter().zip(&models.stream_model))
            .map(|(s, &m)| StreamMetrics::new(&s.name, &models.infos[m].id))
            .collect(),
        models.infos.clone(),
    );
    metrics.identity = cfg.identity.resolve();
    for (sm, s) in metrics.streams.iter_mut().zip(&cfg.streams) {
        sm.priority = s.priority;
    }
    Arc::new(metrics)
}

/// The console, API and /metrics server when `server.listen` is set; its URL logged.
pub(super) fn serve(
    valid: &Monitor,
    metrics: &Arc<Metrics>,
    console: &Arc<console::Console>,
    stop: &Arc<AtomicBool>,
) -> Result<Option<http::HttpServer>> {
    let Some(addr) = valid.listen() else { return Ok(None) };
    let ctx = http::Ctx { metrics: metrics.clone(), console: Some(console.clone()) };
    let h = http::HttpServer::start(addr, ctx, stop.clone())?;
    // The URL a person opens (an unspecified address: this box's loopback works).
    let ip = h.addr.ip();
    let host = match (ip.is_unspecified(), h.addr.is_ipv6()) {
        (true, _) => "127.0.0.1".to_string(),
        (false, true) => format!("[{ip}]"),
        (false, false) => ip.to_string(),
    };
    let url = format!("http://{host}:{}/", h.addr.port());
    tracing::info!(address = %h.addr, console = %url, "serving the console at {url} and /metrics, /healthz, /readyz");
    Ok(Some(h))
}

/// What the scorer thread is handed.
pub(super) struct ScorerInputs {
    pub thresholds: Vec<f64>,
    pub device: Device,
    pub metrics: Arc<Metrics>,
    pub events: Sender<EventMsg>,
    pub queue: Receiver<StreamMsg>,
    pub control: Receiver<Control>,
    pub tap: Option<Sender<Tapped>>,
}

/// The scorer thread; returns once its models are loaded (or with why they are not).
pub(super) fn spawn_scorer(cfg: &MonitorConfig, models: &Models, inputs: ScorerInputs) -> Result<JoinHandle<()>> {
    let (loaded_tx, loaded_rx) = bounded::<Result<()>>(1);
    let (cfg, paths, infos) = (cfg.clone(), models.paths.clone(), models.infos.clone());
    let features: Vec<FeatureParams> = (0..cfg.streams.len()).map(|i| models.features(i)).collect();
    let stream_model = models.stream_model.clone();
    let handle = std::thread::Builder::new()
        .name("mpdr-scorer".into())
        .spawn(move || {
            crate::device::init_threads();
            let mut loaded = Vec::new();
            for (p, info) in paths.iter().zip(&infos) {
                match LoadedModel::load(p, info.id.clone(), inputs.device) {
                    Ok(m) => loaded.push(m),
                    Err(e) => {
                        let _ = loaded_tx.send(Err(DaemonError::Bundle(e)));
                        return;
                    }
                }
            }
            let streams = (cfg.streams.iter().enumerate())
                .map(|(i, s)| scored_stream(s, stream_model[i], &features[i], inputs.thresholds[i]))
                .collect();
            let _ = loaded_tx.send(Ok(()));
            Scorer {
                models: loaded,
                streams,
                metrics: inputs.metrics,
                events: inputs.events,
                max_batch: cfg.scoring.max_batch,
                max_wait: Duration::from_millis(cfg.scoring.max_wait_ms),
                tap: inputs.tap,
            }
            .run(inputs.queue, inputs.control)
        })
        .map_err(thread("scorer"))?;
    match loaded_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(DaemonError::Scorer("the thread died while loading the models".into())),
    }
}

/// A stream as the scorer keeps it: its detector, and (audio sources) the last window plus
/// 2 s of its audio for alarm evidence.
fn scored_stream(s: &super::config::StreamConfig, model: usize, f: &FeatureParams, threshold: f64) -> ScoredStream {
    let vector_s = f.hop_length as f64 / f.sample_rate as f64;
    ScoredStream {
        name: s.name.clone(),
        model,
        detector: Detector::new(s.detect.clone(), threshold, vector_s, f.n_mels),
        vector_s,
        ended: false,
        audio: s.source.spec().has_audio().then(|| {
            let seconds = s.detect.window_s + 2.0;
            crate::audio::ring::AudioRing::new((seconds * f.sample_rate as f64) as usize)
        }),
        sample_rate: f.sample_rate,
        health: Default::default(),
        profile: profile_window(f, &s.detect),
    }
}

/// One capture thread per stream, each feeding the scorer's queue.
pub(super) fn spawn_streams(
    cfg: &MonitorConfig,
    models: &Models,
    tx: &Sender<StreamMsg>,
    metrics: &Arc<Metrics>,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    for (i, s) in cfg.streams.iter().enumerate() {
        let features = models.features(i);
        let range = models.manifests[models.stream_model[i]].levels;
        let (s, tx, metrics, stop, pl) = (s.clone(), tx.clone(), metrics.clone(), stop.clone(), cfg.pipeline.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("mpdr-stream-{i}"))
                .spawn(move || stream_loop(i, &s, (&features, range), &tx, &metrics, &stop, &pl))
                .map_err(thread("stream"))?,
        );
    }
    Ok(threads)
}
