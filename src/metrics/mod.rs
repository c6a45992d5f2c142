//! The daemon's counters and gauges, shared lock-free between threads (atomics only) and
//! rendered in the Prometheus text format for `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::time::Instant;

use crate::detect::AlarmState;

mod render;

/// An f64 gauge stored as bits.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed)
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// A histogram with fixed buckets (upper bounds in seconds).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

pub const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
    pub fn observe(&self, seconds: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| seconds <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
    /// Upper bound of the bucket holding quantile `q` (an estimate, as Prometheus would).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let want = (q * n as f64).ceil() as u64;
        let mut acc = 0;
        for (i, c) in self.counts.iter().enumerate() {
            acc += c.load(Ordering::Relaxed);
            if acc >= want {
                return Some(self.bounds[i]);
            }
        }
        Some(f64::INFINITY)
    }
    pub(crate) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut acc = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            acc += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {acc}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count());
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count());
    }
}

/// Stream states in `mpdr_stream_up`: down 0, up 1; `mpdr_stream_ended` marks finished replays.
#[derive(Debug)]
pub struct StreamMetrics {
    pub name: String,
    pub model: String,
    pub samples_in: AtomicU64,
    pub samples_dropped: AtomicU64,
    pub vectors_scored: AtomicU64,
    pub decisions: AtomicU64,
    pub window_score: Gauge,
    pub threshold: Gauge,
    /// The detector's [`AlarmState`], as its gauge code.
    alarm_state: AtomicU8,
    pub alarms_raised: AtomicU64,
    pub up: AtomicBool,
    pub ended: AtomicBool,
    pub outages: AtomicU64,
    /// Signal health of the last block (`[stream.health]`).
    pub level_dbfs: Gauge,
    pub peak_dbfs: Gauge,
    pub clipped_samples: AtomicU64,
    pub signal_lost: AtomicBool,
    /// The input is faulty (DC offset, level far out of range, sustained clipping).
    pub signal_fault: AtomicBool,
    /// False while the stream's model keeps failing to score its vectors (the stream is blind).
    pub scoring_up: AtomicBool,
    /// The alarm now raised (its `raised` events) and who acknowledged it.
    occurrence: std::sync::Mutex<Occurrence>,
    /// The stream's alarm priority (`[[stream]] priority`).
    pub priority: crate::detect::event::Priority,
    /// The machine is not running (`[stream.run]`): not scored, no alarm.
    pub machine_off: AtomicBool,
    /// A threshold override (console, API) is in effect.
    pub threshold_overridden: AtomicBool,
    /// Shelved or in maintenance, as the console shows it (`None`: neither); kept by the console.
    pub suppression: std::sync::Mutex<Option<Suppressed>>,
    /// The last hour of window decisions, for the console's chart.
    pub history: std::sync::Mutex<std::collections::VecDeque<HistoryPoint>>,
}

/// A shelf or a maintenance in effect on a stream.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Suppressed {
    /// `shelved` or `maintenance`.
    pub kind: String,
    pub by: String,
    pub reason: String,
    pub since_unix_s: u64,
    pub until_unix_s: u64,
}

/// One window decision of a stream's history (`GET /api/streams/<name>/history`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryPoint {
    pub unix_ms: u64,
    pub score: f32,
    pub threshold: f32,
    pub state: AlarmState,
}

/// Decisions kept per stream: an hour at one a second, at most.
pub const HISTORY_POINTS: usize = 3600;
/// ... and no older than this.
pub const HISTORY_MS: u64 = 3_600_000;

/// The `raised` events of the alarm a stream has now, and its acknowledgement.
#[derive(Debug, Clone, Default)]
struct Occurrence {
    /// The first `raised` of the alarm (repeat 0); `None` when no alarm is raised.
    raised_id: Option<String>,
    /// Its reminders (re-alarms), which make it unacknowledged again.
    reminders: Vec<String>,
    acked_by: Option<String>,
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum AckRefusal {
    NoAlarm,
    /// The event is a `raised` of an alarm that is over.
    Over,
    AlreadyBy(String),
}

impl StreamMetrics {
    pub fn new(name: &str, model: &str) -> Self {
        StreamMetrics {
            name: name.into(),
            model: model.into(),
            samples_in: AtomicU64::new(0),
            samples_dropped: AtomicU64::new(0),
            vectors_scored: AtomicU64::new(0),
            decisions: AtomicU64::new(0),
            window_score: Gauge::default(),
            threshold: Gauge::default(),
            alarm_state: AtomicU8::new(AlarmState::Normal.code()),
            alarms_raised: AtomicU64::new(0),
            up: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            outages: AtomicU64::new(0),
            level_dbfs: Gauge::default(),
            peak_dbfs: Gauge::default(),
            clipped_samples: AtomicU64::new(0),
            signal_lost: AtomicBool::new(false),
            signal_fault: AtomicBool::new(false),
            scoring_up: AtomicBool::new(true),
            occurrence: Default::default(),
            priority: Default::default(),
            machine_off: AtomicBool::new(false),
            threshold_overridden: AtomicBool::new(false),
            suppression: Default::default(),
            history: Default::default(),
        }
    }

    pub fn alarm_state(&self) -> AlarmState {
        AlarmState::from_code(self.alarm_state.load(Ordering::Relaxed))
    }

    pub fn set_alarm_state(&self, state: AlarmState) {
        self.alarm_state.store(state.code(), Ordering::Relaxed)
    }
}

/// Delivery counters of one sink.
#[derive(Debug)]
pub struct SinkMetrics {
    pub name: String,
    pub pending: AtomicU64,
    pub delivered: AtomicU64,
    pub retries: AtomicU64,
    pub dead: AtomicU64,
    /// From the event's creation to its delivery.
    pub latency: Histogram,
    /// Since when deliveries fail (ms since the epoch; 0: they do not).
    failing_since_ms: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

impl SinkMetrics {
    pub fn new(name: &str) -> Self {
        SinkMetrics {
            name: name.into(),
            pending: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            dead: AtomicU64::new(0),
            latency: Histogram::new(DELIVERY_BUCKETS),
            failing_since_ms: AtomicU64::new(0),
            last_error: Default::default(),
        }
    }

    /// A delivery failed with `error` (`retry`: the sink is unreachable, not one event refused).
    pub fn failed(&self, error: &str, retry: bool) {
        if retry {
            let _ = self.failing_since_ms.compare_exchange(0, unix_ms().max(1), Ordering::Relaxed, Ordering::Relaxed);
        }
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error.chars().take(500).collect());
        }
    }

    /// A delivery succeeded: the sink is not failing.
    pub fn succeeded(&self) {
        self.failing_since_ms.store(0, Ordering::Relaxed);
    }

    /// Since when the sink's deliveries fail.
    pub fn failing_since_ms(&self) -> Option<u64> {
        Some(self.failing_since_ms.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    /// How long, at `now_ms`, the sink's deliveries have been failing.
    pub fn failing_for_s(&self, now_ms: u64) -> Option<f64> {
        self.failing_since_ms().map(|t| now_ms.saturating_sub(t) as f64 / 1000.0)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

pub const DELIVERY_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

impl StreamMetrics {
    /// The stream's state as people see it: `down` (source down, or its model fails to
    /// score), `signal-lost`, `signal-fault`, `machine-off`, else its alarm state (`normal`, `pending`, `alarm`, `clearing`).
    pub fn display_state(&self) -> &'static str {
        let down = !self.up.load(Ordering::Relaxed) && !self.ended.load(Ordering::Relaxed);
        if down || !self.scoring_up.load(Ordering::Relaxed) {
            "down"
        } else if self.signal_lost.load(Ordering::Relaxed) {
            "signal-lost"
        } else if self.signal_fault.load(Ordering::Relaxed) {
            "signal-fault"
        } else if self.machine_off.load(Ordering::Relaxed) {
            "machine-off"
        } else {
            self.alarm_state().as_str()
        }
    }

    /// `shelved` or `maintenance` while one is in effect.
    pub fn suppressed(&self) -> Option<Suppressed> {
        self.suppression.lock().ok().and_then(|s| s.clone())
    }

    /// Whether the alarm now raised has been acknowledged (false when none is raised).
    pub fn acknowledged(&self) -> bool {
        self.occurrence.lock().map(|o| o.raised_id.is_some() && o.acked_by.is_some()).unwrap_or(false)
    }

    /// Who acknowledged the alarm now raised.
    pub fn acknowledged_by(&self) -> Option<String> {
        self.occurrence.lock().ok().and_then(|o| o.raised_id.as_ref().and(o.acked_by.clone()))
    }

    /// The id of the `raised` event of the alarm now raised (`None` when there is none).
    pub fn active_raised_id(&self) -> Option<String> {
        self.occurrence.lock().ok().and_then(|o| o.raised_id.clone())
    }

    /// A `raised` event: `repeat` 0 begins an alarm, a reminder makes it unacknowledged again.
    pub fn raised(&self, id: &str, repeat: u32) {
        if let Ok(mut o) = self.occurrence.lock() {
            if repeat == 0 || o.raised_id.is_none() {
                *o = Occurrence { raised_id: Some(id.to_string()), ..Default::default() };
            } else {
                o.reminders.push(id.to_string());
                o.acked_by = None;
            }
        }
    }

    /// The alarm cleared: the id of its `raised` event.
    pub fn cleared(&self) -> Option<String> {
        self.occurrence.lock().ok().and_then(|mut o| std::mem::take(&mut *o).raised_id)
    }

    /// Mark the alarm now raised acknowledged by `by` — the one whose `raised` event is `id`
    /// when given (the alarm's first `raised` or a reminder). Returns its first `raised` id.
    fn set_acknowledged(&self, id: Option<&str>, by: &str) -> Result<String, AckRefusal> {
        let mut o = self.occurrence.lock().map_err(|_| AckRefusal::NoAlarm)?;
        let Some(active) = o.raised_id.clone() else {
            return Err(if id.is_some() { AckRefusal::Over } else { AckRefusal::NoAlarm });
        };
        if let Some(id) = id {
            if id != active && !o.reminders.iter().any(|r| r == id) {
                return Err(AckRefusal::Over);
            }
        }
        if let Some(who) = &o.acked_by {
            return Err(AckRefusal::AlreadyBy(who.clone()));
        }
        o.acked_by = Some(by.to_string());
        Ok(active)
    }

    /// Keep a window decision in the history (the last hour, at most [`HISTORY_POINTS`]).
    pub fn remember_decision(&self, score: f64, threshold: f64, state: AlarmState) {
        let unix_ms = unix_ms();
        if let Ok(mut h) = self.history.lock() {
            h.push_back(HistoryPoint { unix_ms, score: score as f32, threshold: threshold as f32, state });
            while h.len() > HISTORY_POINTS || h.front().is_some_and(|p| p.unix_ms + HISTORY_MS < unix_ms) {
                h.pop_front();
            }
        }
    }
}

/// An operator's command that arrives through a sink (an MQTT command topic, a Modbus
/// register) instead of the console's API; the daemon's console carries it out.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Acknowledge the stream's active alarm (only the one whose `raised` is `raised_id`, when given).
    Ack {
        raised_id: Option<String>,
    },
    Shelve {
        minutes: f64,
        reason: String,
    },
    Unshelve,
    Maintenance {
        minutes: f64,
        reason: String,
    },
    EndMaintenance,
}

/// Carries out a [`Command`] for stream `Some(i)` (or every stream: `None`) on behalf of `by`;
/// `Ok` with what was done, `Err` with why not.
pub struct CommandHook(pub Box<CommandFn>);

impl std::fmt::Debug for CommandHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommandHook")
    }
}

/// The function behind a [`CommandHook`].
pub type CommandFn = dyn Fn(Option<usize>, Command, &str) -> Result<String, String> + Send + Sync;

/// Told of each acknowledgement: the stream index, who, and the id of the alarm's `raised`.
pub struct AckHook(pub Box<AckFn>);

/// The function behind an [`AckHook`].
pub type AckFn = dyn Fn(usize, &str, &str) + Send + Sync;

impl std::fmt::Debug for AckHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckHook")
    }
}

/// Events the daemon keeps in memory for the console.
pub const RECENT_EVENTS: usize = 500;

/// A loaded model, for `mpdr_model_info`.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub id: String,
    pub kind: String,
    pub path: String,
    pub device: String,
}

#[derive(Debug)]
pub struct Metrics {
    /// This box on a shared broker (site, box): in every event and on `mpdr_build_info`.
    pub identity: crate::config::identity::Identity,
    pub streams: Vec<StreamMetrics>,
    /// Replaced when a reload swaps a bundle.
    pub models: std::sync::Mutex<Vec<ModelInfo>>,
    /// Told of every acknowledgement (the daemon turns it into an `acknowledged` event).
    /// (Taken out at shutdown: it holds a sender of the event thread.)
    pub on_ack: std::sync::Mutex<Option<AckHook>>,
    /// Carries out sinks' commands (taken out at shutdown, like `on_ack`).
    pub on_command: std::sync::Mutex<Option<CommandHook>>,
    /// The newest events as JSON (oldest first), with the sequence number of the last one:
    /// the console's event list and its live feed.
    pub recent_events: std::sync::Mutex<(u64, std::collections::VecDeque<String>)>,
    /// From a hop's last sample arriving to its window decision.
    pub latency: Histogram,
    pub batches: AtomicU64,
    pub batch_vectors: AtomicU64,
    pub scoring_errors: AtomicU64,
    /// Per `EventKind::ALL`.
    pub events: [AtomicU64; crate::detect::event::EventKind::ALL.len()],
    /// Delivery counters per sink; replaced on reload (counters of kept sinks carry over).
    pub sinks: std::sync::Mutex<Vec<std::sync::Arc<SinkMetrics>>>,
    pub outbox_errors: AtomicU64,
    /// The last event could not be committed to the outbox (a full or failing disk): `/readyz`
    /// is not ready until one is.
    pub outbox_failing: AtomicBool,
    /// Why the last commit failed (while `outbox_failing`).
    pub outbox_last_error: std::sync::Mutex<Option<String>>,
    /// Events held in memory until the outbox takes writes again, and those dropped because
    /// the hold was full.
    pub events_held: AtomicU64,
    pub events_dropped: AtomicU64,
    pub reloads: AtomicU64,
    /// Unix seconds of the start, and of the last configuration loaded (start or reload).
    pub started_unix_s: u64,
    pub last_reload_unix_s: AtomicU64,
    pub reload_failures: AtomicU64,
    pub ready: AtomicBool,
    started: Instant,
    /// Milliseconds since `started` of the scorer's last loop (the watchdog's pulse).
    pub scorer_pulse_ms: AtomicU64,
}

impl Metrics {
    pub fn new(streams: Vec<StreamMetrics>, models: Vec<ModelInfo>) -> Self {
        Metrics {
            identity: Default::default(),
            streams,
            models: std::sync::Mutex::new(models),
            on_ack: std::sync::Mutex::new(None),
            on_command: std::sync::Mutex::new(None),
            recent_events: Default::default(),
            latency: Histogram::new(LATENCY_BUCKETS),
            batches: AtomicU64::new(0),
            batch_vectors: AtomicU64::new(0),
            scoring_errors: AtomicU64::new(0),
            events: Default::default(),
            sinks: std::sync::Mutex::new(Vec::new()),
            outbox_errors: AtomicU64::new(0),
            outbox_failing: AtomicBool::new(false),
            outbox_last_error: std::sync::Mutex::new(None),
            events_held: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            started_unix_s: unix_s(),
            last_reload_unix_s: AtomicU64::new(unix_s()),
            reload_failures: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            started: Instant::now(),
            scorer_pulse_ms: AtomicU64::new(0),
        }
    }

    pub fn pulse(&self) {
        self.scorer_pulse_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Acknowledge stream `i`'s alarm now raised (`by`: an operator, `modbus`, `mqtt`) — when
    /// `raised_id` is given, only if it is that alarm's `raised` event. Returns the id of the
    /// alarm's first `raised` event; refused when no alarm is raised, the event's alarm is
    /// over, or it was already acknowledged.
    pub fn acknowledge(&self, i: usize, by: &str, raised_id: Option<&str>) -> Result<String, AckRefusal> {
        let s = self.streams.get(i).ok_or(AckRefusal::NoAlarm)?;
        let id = s.set_acknowledged(raised_id, by)?;
        if let Ok(hook) = self.on_ack.lock() {
            if let Some(h) = hook.as_ref() {
                (h.0)(i, by, &id);
            }
        }
        Ok(id)
    }

    /// Carry out a sink's command (see [`Command`]); refused when no console runs.
    pub fn command(&self, stream: Option<usize>, c: Command, by: &str) -> Result<String, String> {
        let hook = self.on_command.lock().map_err(|_| "the console is gone".to_string())?;
        match hook.as_ref() {
            Some(h) => (h.0)(stream, c, by),
            None => Err("commands are not accepted (no console)".into()),
        }
    }

    /// Keep an event (JSON) in the recent list, at most [`RECENT_EVENTS`].
    pub fn remember_event(&self, json: String) {
        if let Ok(mut r) = self.recent_events.lock() {
            r.0 += 1;
            r.1.push_back(json);
            while r.1.len() > RECENT_EVENTS {
                r.1.pop_front();
            }
        }
    }

    /// Seconds since the scorer last went round its loop.
    pub fn scorer_silence_s(&self) -> f64 {
        let now = self.started.elapsed().as_millis() as u64;
        now.saturating_sub(self.scorer_pulse_ms.load(Ordering::Relaxed)) as f64 / 1000.0
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn unix_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_quantiles_pick_the_bucket() {
        let h = Histogram::new(LATENCY_BUCKETS);
        for v in [0.0005, 0.002, 0.002, 0.03, 10.0] {
            h.observe(v);
        }
        let mut s = String::new();
        h.render(&mut s, "x", "");
        assert!(s.contains("x_bucket{le=\"0.001\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"0.0025\"} 3\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"5\"} 4\n") && s.contains("x_bucket{le=\"+Inf\"} 5\n"), "{s}");
        assert_eq!(h.quantile(0.5), Some(0.0025));
        assert_eq!(h.quantile(0.99), Some(f64::INFINITY));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new(vec![], vec![]);
        if let Ok(mut v) = m.sinks.lock() {
            v.push(std::sync::Arc::new(SinkMetrics::new("a\"b\\c\nd")));
        }
        assert!(m.render().contains("mpdr_sink_delivered_total{sink=\"a\\\"b\\\\c\\nd\"} 0\n"), "{}", m.render());
    }

    #[test]
    fn render_has_one_line_per_stream_and_metric() {
        let m = Metrics::new(vec![StreamMetrics::new("a", "m1"), StreamMetrics::new("b", "m1")], vec![]);
        m.streams[1].samples_in.fetch_add(16000, Ordering::Relaxed);
        m.streams[0].window_score.set(1.5);
        let text = m.render();
        assert!(text.contains("mpdr_audio_samples_total{stream=\"b\"} 16000\n"));
        assert!(text.contains("mpdr_window_score{stream=\"a\"} 1.5\n"));
        assert!(text.contains("mpdr_ready 0\n"));
        assert!(text.contains("mpdr_stream_state{stream=\"a\",state=\"normal\"} 1\n"), "{text}");
        assert!(text.contains("mpdr_stream_state{stream=\"a\",state=\"alarm\"} 0\n"));
        assert!(text.contains("mpdr_build_info{version=\""));
        if let Ok(mut v) = m.sinks.lock() {
            let s = std::sync::Arc::new(SinkMetrics::new("w"));
            s.retries.fetch_add(2, Ordering::Relaxed);
            s.dead.fetch_add(1, Ordering::Relaxed);
            v.push(s);
        }
        assert!(m.render().contains("mpdr_sink_failures_total 3\n"), "retries and dead letters are failures");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok() || value == "NaN", "{line}");
        }
    }
}
