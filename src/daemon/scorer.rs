//! The scorer thread: owns every model (tch tensors stay on this thread), batches vectors
//! across all streams — up to `max_batch` vectors or `max_wait_ms`, whichever comes first —,
//! scores each model's share in one forward pass on the GPU when there is one, and runs each
//! stream's [`Detector`]. Decisions update the metrics; transitions and source changes
//! become [`AlarmEvent`]s for the event thread.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tch::Tensor;

use super::{Control, EventMsg, StreamMsg};
use crate::alarm::{format_range, AlarmEvent, BandShare, EventKind};
use crate::detect::{top_bands_vs_normal, Decision, DetectConfig, Detector, Transition};
use crate::features::profile::ProfileWindow;
use crate::metrics::Metrics;
use crate::model::Bundle;

/// A loaded model and what explanations need.
pub struct LoadedModel {
    pub bundle: Bundle,
    pub id: String,
    pub dim: usize,
    pub n_mels: usize,
    pub band_hz: Vec<(f64, f64)>,
    /// Normal per-band shares (the bundle's), for explanations relative to normal.
    pub band_stats: Option<crate::model::BandStats>,
    /// A profile bundle's window: the scorer makes one profile per decision per stream.
    pub profile: Option<crate::features::profile::ProfileParams>,
    /// What the model scores: a profile's dimension, or `dim`.
    pub model_dim: usize,
}

impl LoadedModel {
    /// Load and verify the bundle at `path` (every check of [`Bundle::load`]) on `device`.
    pub fn load(path: &std::path::Path, id: String, device: tch::Device) -> Result<Self, crate::model::BundleError> {
        let bundle = Bundle::load(path, device)?;
        let f = bundle.manifest.features.clone().unwrap_or_default();
        let band_stats = bundle.manifest.band_stats.clone();
        Ok(LoadedModel {
            bundle,
            id,
            dim: f.vector_dim(),
            model_dim: f.model_dim(),
            n_mels: f.n_mels,
            band_hz: crate::alarm::band_ranges(&f),
            band_stats,
            profile: f.profile.clone(),
        })
    }
}

/// Per-stream state on the scorer thread.
pub struct ScoredStream {
    pub name: String,
    pub model: usize,
    pub detector: Detector,
    /// Seconds of audio per vector (hop / rate).
    pub vector_s: f64,
    pub ended: bool,
    /// The stream's last audio, in step with the decisions (alarm evidence); `None` for a
    /// log-mel replay.
    pub audio: Option<crate::audio::ring::AudioRing>,
    pub sample_rate: u32,
    /// Whether its model scores (see [`Health`]).
    pub health: Health,
    /// A profile bundle's running window over this stream's frames (one kernel with batch
    /// extraction, [`crate::features::profile::ProfileWindow`]); `None` for stacked vectors.
    pub profile: Option<ProfileWindow>,
}

/// The profile window of a stream scored by a bundle with `features`: the model's window, a
/// decision every `hop_s` of `detect`.
pub fn profile_window(features: &crate::features::FeatureParams, detect: &DetectConfig) -> Option<ProfileWindow> {
    let p = features.profile.as_ref()?;
    Some(ProfileWindow::new(features.n_mels, p, profile_hop(features, detect)))
}

/// Frames between a profile stream's decisions.
fn profile_hop(features: &crate::features::FeatureParams, detect: &DetectConfig) -> usize {
    let vector_s = features.hop_length as f64 / features.sample_rate as f64;
    ((detect.hop_s / vector_s).round() as usize).max(1)
}

/// Failed batches in a row after which a stream is reported down (`stream-down`, `/readyz`).
pub const FAILED_BATCHES_DOWN: u32 = 3;
/// Batches in a row that must score before a stream that was down is reported up again: a
/// model that scores now and then, failing in between, stays down.
pub const SCORED_BATCHES_UP: u32 = 5;

/// A stream's scoring health: down after [`FAILED_BATCHES_DOWN`] failed batches in a row, up
/// again only after [`SCORED_BATCHES_UP`] scored batches in a row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    failed_in_row: u32,
    scored_in_row: u32,
    down: bool,
}

impl Health {
    /// A batch failed: true when the stream goes down with it.
    pub fn failed(&mut self) -> bool {
        self.scored_in_row = 0;
        self.failed_in_row = self.failed_in_row.saturating_add(1);
        if !self.down && self.failed_in_row >= FAILED_BATCHES_DOWN {
            self.down = true;
            return true;
        }
        false
    }

    /// A batch scored: true when the stream comes back up with it.
    pub fn scored(&mut self) -> bool {
        self.failed_in_row = 0;
        self.scored_in_row = self.scored_in_row.saturating_add(1);
        if self.down && self.scored_in_row >= SCORED_BATCHES_UP {
            self.down = false;
            return true;
        }
        false
    }
}

pub struct Scorer {
    pub models: Vec<LoadedModel>,
    pub streams: Vec<ScoredStream>,
    pub metrics: Arc<Metrics>,
    pub events: Sender<EventMsg>,
    pub max_batch: usize,
    pub max_wait: Duration,
    /// Every decision, for a backtest (`None` in service).
    pub tap: Option<Sender<super::Tapped>>,
}

/// One message of a batch, with its energies once scored.
struct Item {
    msg: StreamMsg,
    energies: Vec<f32>,
    bands: Vec<f32>,
    /// Profile streams: the frame of the message each energy's window ends at.
    at: Vec<usize>,
    /// Its model scored the batch (profile streams: also when no window fell due).
    scored: bool,
}

impl Item {
    fn new(msg: StreamMsg) -> Self {
        Item { msg, energies: Vec::new(), bands: Vec::new(), at: Vec::new(), scored: false }
    }
}

impl Scorer {
    /// Runs until the stream channel is closed (every sender dropped).
    pub fn run(mut self, rx: Receiver<StreamMsg>, ctrl: Receiver<Control>) {
        let mut batch: Vec<Item> = Vec::new();
        loop {
            self.metrics.pulse();
            while let Ok(c) = ctrl.try_recv() {
                self.apply(c);
            }
            let first = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let deadline = Instant::now() + self.max_wait;
            let mut n = first.vector_count();
            batch.push(Item::new(first));
            while n < self.max_batch {
                match rx.recv_deadline(deadline) {
                    Ok(m) => {
                        n += m.vector_count();
                        batch.push(Item::new(m));
                    }
                    Err(_) => break,
                }
            }
            self.score(&mut batch);
            for item in batch.drain(..) {
                self.dispatch(item);
            }
        }
        tracing::debug!("scorer stopped");
    }

    fn apply(&mut self, c: Control) {
        match c {
            Control::Swap { model, path, id, reply } => {
                let Some(old) = self.models.get(model) else {
                    let _ = reply.send(Err(format!("no model slot {model}")));
                    return;
                };
                let device = old.bundle.energy_vs.device();
                match LoadedModel::load(&path, id.clone(), device) {
                    Ok(m) if m.dim == old.dim && m.n_mels == old.n_mels => {
                        let features = m.bundle.manifest.features.clone().unwrap_or_default();
                        let new_window = m.profile != old.profile;
                        self.models[model] = m;
                        // A new model starts with a clean slate of failures (and, when its
                        // profile differs, with a new window).
                        for (i, s) in self.streams.iter_mut().enumerate().filter(|(_, s)| s.model == model) {
                            s.health = Health::default();
                            if new_window {
                                s.profile = profile_window(&features, s.detector.config());
                            }
                            self.metrics.streams[i].scoring_up.store(true, Ordering::Relaxed);
                        }
                        tracing::info!(model = %id, path = %path.display(), "model swapped in");
                        let _ = reply.send(Ok(()));
                    }
                    Ok(_) => {
                        let _ =
                            reply.send(Err(format!("{}: its vectors differ from the running model's", path.display())));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
            Control::Threshold { stream, value } => {
                if let Some(s) = self.streams.get_mut(stream) {
                    let cfg = s.detector.config().clone();
                    s.detector.reconfigure(cfg, value);
                    self.metrics.streams[stream].threshold.set(value);
                }
            }
            Control::Reconfigure(list) => {
                for (i, cfg, threshold) in list {
                    if let Some(s) = self.streams.get_mut(i) {
                        if let Some(w) = s.profile.as_mut() {
                            let features = self.models[s.model].bundle.manifest.features.clone().unwrap_or_default();
                            w.set_hop(profile_hop(&features, &cfg));
                        }
                        s.detector.reconfigure(cfg, threshold);
                        self.metrics.streams[i].threshold.set(threshold);
                    }
                }
            }
        }
    }

    /// Score every vector message of the batch: one forward pass per model.
    fn score(&mut self, batch: &mut [Item]) {
        // Per stream of the batch: `Some(error)` when its model failed, `None` when it scored.
        let mut outcomes: Vec<(usize, Option<String>)> = Vec::new();
        for (m, model) in self.models.iter().enumerate() {
            let idx: Vec<usize> = batch
                .iter()
                .enumerate()
                .filter(
                    |(_, it)| matches!(&it.msg, StreamMsg::Vectors { stream, silent: false, .. } if self.streams[*stream].model == m),
                )
                .map(|(i, _)| i)
                .collect();
            if idx.is_empty() {
                continue;
            }
            let mut flat = Vec::new();
            if model.profile.is_some() {
                // Frames into each stream's window, in order; a profile per decision that falls due.
                for it in batch.iter_mut() {
                    let Item { msg: StreamMsg::Vectors { stream, data, silent, .. }, at, .. } = it else { continue };
                    let st = &mut self.streams[*stream];
                    let Some(w) = st.profile.as_mut().filter(|_| st.model == m) else { continue };
                    if *silent {
                        // A profile window never spans a gap in the audio.
                        w.reset();
                        continue;
                    }
                    for (k, frame) in data.chunks_exact(model.dim).enumerate() {
                        if let Some(p) = w.push(frame) {
                            flat.extend_from_slice(p);
                            at.push(k);
                        }
                    }
                }
                if flat.is_empty() {
                    // No window fell due: the frames are in the windows, nothing to score.
                    idx.iter().for_each(|&i| batch[i].scored = true);
                    continue;
                }
            } else {
                for &i in &idx {
                    if let StreamMsg::Vectors { data, .. } = &batch[i].msg {
                        flat.extend_from_slice(data);
                    }
                }
            }
            let n = flat.len() / model.model_dim;
            let scored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<_, tch::TchError> {
                let x = Tensor::f_from_slice(&flat)?.f_view([n as i64, model.model_dim as i64])?;
                let (e, bands) = model.bundle.score_explained(&x, model.n_mels as i64)?;
                let e: Vec<f32> = Vec::<f32>::try_from(e.f_contiguous()?)?;
                let b: Vec<f32> = match bands {
                    Some(b) => Vec::<f32>::try_from(b.f_contiguous()?.f_view([-1])?)?,
                    None => Vec::new(),
                };
                Ok((e, b))
            }));
            let failure = match &scored {
                Ok(Ok((e, _))) if e.len() != n => Some(format!("{} energies for {n} vectors", e.len())),
                Ok(Ok((e, _))) if e.iter().any(|v| !v.is_finite()) => {
                    Some("the model gives NaN or infinite energies".into())
                }
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("libtorch panicked".into()),
            };
            let mut streams: Vec<usize> = idx
                .iter()
                .filter_map(
                    |&i| if let StreamMsg::Vectors { stream, .. } = &batch[i].msg { Some(*stream) } else { None },
                )
                .collect();
            streams.sort_unstable();
            streams.dedup();
            outcomes.extend(streams.into_iter().map(|s| (s, failure.clone())));
            if let Some(e) = failure {
                self.fail(&model.id, &e);
                continue;
            }
            let Ok(Ok((energies, bands))) = scored else { continue };
            self.metrics.batches.fetch_add(1, Ordering::Relaxed);
            self.metrics.batch_vectors.fetch_add(n as u64, Ordering::Relaxed);
            let has_bands = bands.len() == n * model.n_mels;
            let mut at = 0;
            for &i in &idx {
                batch[i].scored = true;
                let k = if model.profile.is_some() { batch[i].at.len() } else { batch[i].msg.vector_count() };
                batch[i].energies = energies[at..at + k].to_vec();
                if has_bands {
                    batch[i].bands = bands[at * model.n_mels..(at + k) * model.n_mels].to_vec();
                }
                at += k;
            }
        }
        for (stream, failure) in outcomes {
            match failure {
                Some(e) => self.stream_failed(stream, &e),
                None => self.stream_scored(stream),
            }
        }
    }

    fn fail(&self, model: &str, e: &str) {
        let c = self.metrics.scoring_errors.fetch_add(1, Ordering::Relaxed);
        // One line per power of two, so a persistent fault does not flood the log.
        if c.is_power_of_two() || c == 0 {
            tracing::error!(model, error = e, failures = c + 1, "scoring failed; the batch is dropped");
        }
    }

    fn stream_failed(&mut self, stream: usize, error: &str) {
        if self.streams[stream].health.failed() {
            self.metrics.streams[stream].scoring_up.store(false, Ordering::Relaxed);
            let msg = format!("stream down: its model fails to score ({error}); nothing is detected until it does");
            self.status_event(stream, EventKind::StreamDown, msg);
        }
    }

    fn stream_scored(&mut self, stream: usize) {
        if self.streams[stream].health.scored() {
            self.metrics.streams[stream].scoring_up.store(true, Ordering::Relaxed);
            let msg = format!("stream up: its model scores again ({SCORED_BATCHES_UP} batches in a row)");
            self.status_event(stream, EventKind::StreamUp, msg);
        }
    }

    fn dispatch(&mut self, item: Item) {
        match item.msg {
            StreamMsg::Vectors { stream, arrived, ref audio, .. } => {
                if let Some(r) = &mut self.streams[stream].audio {
                    r.push(audio);
                }
                if item.scored && self.streams[stream].profile.is_some() {
                    self.dispatch_windows(stream, &item, arrived);
                    return;
                }
                if item.energies.is_empty() {
                    // Silence, or a batch that failed to score: time moves on, nothing is decided.
                    let n = item.msg.vector_count() as u64;
                    self.streams[stream].detector.advance(n);
                    return;
                }
                let nb = self.models[self.streams[stream].model].n_mels;
                let sm = &self.metrics.streams[stream];
                sm.vectors_scored.fetch_add(item.energies.len() as u64, Ordering::Relaxed);
                for (k, &e) in item.energies.iter().enumerate() {
                    let bands = (!item.bands.is_empty()).then(|| &item.bands[k * nb..(k + 1) * nb]);
                    if let Some(d) = self.streams[stream].detector.push(e as f64, bands) {
                        self.metrics.latency.observe(arrived.elapsed().as_secs_f64());
                        self.decided(stream, d);
                    }
                }
            }
            StreamMsg::Health { stream, event, t_s } => {
                use crate::detect::health::HealthEvent;
                let sm = &self.metrics.streams[stream];
                let (kind, message) = match event {
                    HealthEvent::Lost { rms_dbfs } => {
                        sm.signal_lost.store(true, Ordering::Relaxed);
                        (EventKind::SignalLost, format!("signal lost: the input is silent ({rms_dbfs:.0} dBFS) — a dead or unplugged microphone? No anomaly is raised until it is back"))
                    }
                    HealthEvent::Restored { rms_dbfs } => {
                        sm.signal_lost.store(false, Ordering::Relaxed);
                        (EventKind::SignalRestored, format!("signal restored ({rms_dbfs:.0} dBFS)"))
                    }
                    HealthEvent::Clipping { share, peak_dbfs } => (
                        EventKind::Clipping,
                        format!("input clipping: {:.2}% of samples at full scale (peak {peak_dbfs:.1} dBFS) — lower the gain", 100.0 * share),
                    ),
                };
                self.status_event_at(stream, kind, message, t_s);
            }
            StreamMsg::Fault { stream, event, t_s } => {
                use crate::detect::signal_fault::FaultEvent;
                let sm = &self.metrics.streams[stream];
                let (kind, message, reason) = match event {
                    FaultEvent::Fault { reason, detail } => {
                        sm.signal_fault.store(true, Ordering::Relaxed);
                        (EventKind::SignalFault, format!("signal fault ({}): {detail} — not a machine anomaly; not scored, no anomaly raised until it is fine", reason.as_str()), Some(reason.as_str().to_string()))
                    }
                    FaultEvent::Ok { rms_dbfs } => {
                        sm.signal_fault.store(false, Ordering::Relaxed);
                        (EventKind::SignalOk, format!("signal fine again ({rms_dbfs:.0} dBFS): scoring resumes"), None)
                    }
                };
                self.status_event_with(stream, kind, message, t_s, reason);
            }
            StreamMsg::Run { stream, event, t_s } => {
                use crate::detect::run::RunEvent;
                let (kind, message, off) = match event {
                    RunEvent::Off { rms_dbfs } => (EventKind::MachineOff, format!("machine off: the level ({rms_dbfs:.0} dBFS) is below its running range; not scored, no alarm until it runs again"), true),
                    RunEvent::On { rms_dbfs } => (EventKind::MachineOn, format!("machine running again ({rms_dbfs:.0} dBFS): scoring resumes"), false),
                };
                self.metrics.streams[stream].machine_off.store(off, Ordering::Relaxed);
                self.status_event_at(stream, kind, message, t_s);
            }
            StreamMsg::Up { stream } => {
                self.metrics.streams[stream].up.store(true, Ordering::Relaxed);
                self.status_event(stream, EventKind::StreamUp, "stream up: audio is flowing".into());
            }
            StreamMsg::Down { stream, reason } => {
                let sm = &self.metrics.streams[stream];
                sm.up.store(false, Ordering::Relaxed);
                sm.outages.fetch_add(1, Ordering::Relaxed);
                self.status_event(stream, EventKind::StreamDown, format!("stream down: {reason}"));
            }
            StreamMsg::End { stream } => {
                self.streams[stream].ended = true;
                let sm = &self.metrics.streams[stream];
                sm.up.store(false, Ordering::Relaxed);
                sm.ended.store(true, Ordering::Relaxed);
            }
        }
    }

    /// A profile stream's message: one vector period per frame, a decision at each frame a
    /// window's profile was scored at.
    fn dispatch_windows(&mut self, stream: usize, item: &Item, arrived: Instant) {
        let nb = self.models[self.streams[stream].model].n_mels;
        let sm = &self.metrics.streams[stream];
        sm.vectors_scored.fetch_add(item.msg.vector_count() as u64, Ordering::Relaxed);
        let with_bands = item.bands.len() == item.at.len() * nb;
        let mut next = 0;
        for k in 0..item.msg.vector_count() {
            let window = (item.at.get(next) == Some(&k)).then(|| {
                let bands = with_bands.then(|| &item.bands[next * nb..(next + 1) * nb]);
                next += 1;
                (item.energies[next - 1] as f64, bands)
            });
            if let Some(d) = self.streams[stream].detector.push_window(window) {
                self.metrics.latency.observe(arrived.elapsed().as_secs_f64());
                self.decided(stream, d);
            }
        }
    }

    fn status_event(&self, stream: usize, kind: EventKind, message: String) {
        let s = &self.streams[stream];
        self.status_event_at(stream, kind, message, s.detector.vectors_seen() as f64 * s.vector_s);
    }

    fn status_event_at(&self, stream: usize, kind: EventKind, message: String, t_s: f64) {
        self.status_event_with(stream, kind, message, t_s, None);
    }

    /// [`Self::status_event_at`] with a `reason` (a signal fault's).
    fn status_event_with(&self, stream: usize, kind: EventKind, message: String, t_s: f64, reason: Option<String>) {
        let s = &self.streams[stream];
        let mut ev = AlarmEvent::new(kind, &s.name, t_s);
        ev.model_id = Some(self.models[s.model].id.clone());
        ev.message = format!("{}: {message}", s.name);
        ev.reason = reason;
        let _ = self.events.send(Box::new(ev));
    }

    fn decided(&mut self, stream: usize, d: Decision) {
        if let Some(tap) = &self.tap {
            let t =
                super::Tapped { stream, t_s: d.t_s, score: d.score, threshold: d.threshold, transition: d.transition };
            let _ = tap.send(t);
        }
        let sm = &self.metrics.streams[stream];
        sm.decisions.fetch_add(1, Ordering::Relaxed);
        sm.window_score.set(d.score);
        sm.threshold.set(d.threshold);
        sm.set_alarm_state(d.state);
        sm.remember_decision(d.score, d.threshold, d.state);
        let Some(t) = d.transition else { return };
        let s = &self.streams[stream];
        let model = &self.models[s.model];
        let cfg: &DetectConfig = s.detector.config();
        let kind = match t {
            Transition::Raised { .. } => EventKind::Raised,
            Transition::Cleared => EventKind::Cleared,
        };
        let mut ev = AlarmEvent::new(kind, &s.name, d.t_s);
        if let (Transition::Raised { .. }, Some(ring)) = (t, &s.audio) {
            let rate = s.sample_rate as f64;
            let end = ((d.t_s * rate).round() as u64).min(ring.total());
            ev.audio = ring.range(end.saturating_sub((cfg.window_s * rate).round() as u64), end);
        }
        ev.score = Some(d.score);
        ev.threshold = Some(d.threshold);
        ev.model_id = Some(model.id.clone());
        if let Some(b) = &d.bands {
            let normal = model.band_stats.as_ref().map(|s| (s.mean.as_slice(), s.std.as_slice()));
            ev.top_bands = top_bands_vs_normal(b, normal, cfg.top_bands)
                .into_iter()
                .map(|(band, share, z)| {
                    let (lo, hi) = model.band_hz.get(band).copied().unwrap_or((0.0, 0.0));
                    BandShare { band, lo_hz: lo, hi_hz: hi, share, z }
                })
                .collect();
        }
        let where_ = ev
            .top_bands
            .first()
            .map(|b| match b.z {
                Some(z) => format!(
                    "; most above normal: {} at {z:.1}σ ({:.1}% of the error)",
                    format_range(b.lo_hz, b.hi_hz),
                    100.0 * b.share
                ),
                None => {
                    format!("; strongest in {} ({:.0}% of the error)", format_range(b.lo_hz, b.hi_hz), 100.0 * b.share)
                }
            })
            .unwrap_or_default();
        ev.message = match t {
            Transition::Raised { repeat } => {
                sm.alarms_raised.fetch_add(1, Ordering::Relaxed);
                sm.raised(&ev.id, repeat);
                ev.repeat = repeat;
                let again = if repeat > 0 { format!(" (still, reminder {repeat})") } else { String::new() };
                format!(
                    "{}: ANOMALY{again} — window score {:.4} above threshold {:.4} for {} s{where_}",
                    s.name, d.score, d.threshold, cfg.on_delay_s
                )
            }
            Transition::Cleared => {
                ev.raised_id = sm.cleared();
                format!(
                    "{}: back to normal — window score {:.4} below threshold {:.4} for {} s",
                    s.name, d.score, d.threshold, cfg.off_delay_s
                )
            }
        };
        let _ = self.events.send(Box::new(ev));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_that_scores_now_and_then_goes_down_once_and_stays_down() {
        let mut h = Health::default();
        let mut changes = Vec::new();
        for round in 0..20 {
            for _ in 0..3 {
                if h.failed() {
                    changes.push(("down", round));
                }
            }
            if h.scored() {
                changes.push(("up", round));
            }
        }
        assert_eq!(changes, [("down", 0)]);
        let ups: Vec<bool> = (0..SCORED_BATCHES_UP).map(|_| h.scored()).collect();
        assert_eq!(ups.iter().filter(|u| **u).count(), 1, "up after {SCORED_BATCHES_UP} in a row: {ups:?}");
        assert!(!h.failed() && !h.failed() && h.failed(), "down again after 3 failures in a row");
    }
}
