//! What the console and its API may change at run time: a stream's threshold (persisted in
//! the state folder, an audited `threshold-changed` event) and acknowledging an alarm (an
//! `acknowledged` event, the same as the Modbus register's). State-changing calls need the
//! token (`[server] token_env` / `token_file`), compared in constant time; without one the
//! console is read-only.
//!
//! Which threshold wins: a runtime change is kept in `<state>/thresholds.json` with the
//! config's threshold setting at the time. It survives restarts and reloads as long as the
//! config's setting for that stream stays what it was; once the file's setting changes (a
//! new number, or `"model"` → a number), the file wins and the runtime value is dropped,
//! logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};

use super::{Control, EventMsg};
use crate::alarm::{AlarmEvent, EventKind};
use crate::detect::ThresholdSetting;
use crate::metrics::Metrics;

/// File in the state folder with the runtime thresholds.
pub const THRESHOLDS_FILE: &str = "thresholds.json";

/// One runtime threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Override {
    pub value: f64,
    /// The config's setting it replaced (`"model"` or the number), as JSON.
    pub config: String,
    pub by: String,
    pub unix_s: u64,
}

/// Why an API call is refused: an HTTP status and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

pub fn api_error(status: u16, message: impl Into<String>) -> ApiError {
    ApiError { status, message: message.into() }
}

/// A state-changing call where no token is configured.
pub fn read_only_error() -> ApiError {
    api_error(403, "the console is read-only: set server.token_env or server.token_file")
}

/// The false-alarm model of a bundle's calibration: gamma window scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FalseAlarmModel {
    pub shape: f64,
    pub scale: f64,
    pub windows_per_day: f64,
}

impl FalseAlarmModel {
    /// Expected false alarms per day at `threshold` (window exceedances, before on-delays).
    pub fn per_day(&self, threshold: f64) -> f64 {
        use statrs::distribution::{ContinuousCDF, Gamma};
        match Gamma::new(self.shape, 1.0 / self.scale) {
            Ok(g) => g.sf(threshold) * self.windows_per_day,
            Err(_) => f64::NAN,
        }
    }
}

pub struct Console {
    pub metrics: Arc<Metrics>,
    ctrl: Sender<Control>,
    /// Taken at shutdown, so the event thread can end.
    events: Mutex<Option<Sender<EventMsg>>>,
    state_dir: PathBuf,
    token: Option<Vec<u8>>,
    /// Per stream: the config's setting and the bundle's false-alarm model.
    settings: Mutex<Vec<ThresholdSetting>>,
    pub false_alarms: Vec<Option<FalseAlarmModel>>,
    /// Per stream: how its bundle's threshold was calibrated, in words.
    pub calibration: Vec<String>,
    overrides: Mutex<BTreeMap<String, Override>>,
}

fn setting_key(s: ThresholdSetting) -> String {
    serde_json::to_string(&s).unwrap_or_default()
}

/// The runtime thresholds kept in `state_dir` (none when the file is absent or unreadable).
fn load_overrides(state_dir: &Path) -> BTreeMap<String, Override> {
    let path = state_dir.join(THRESHOLDS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), error = %e, "runtime thresholds unreadable: the config's apply");
            BTreeMap::new()
        }),
        Err(_) => BTreeMap::new(),
    }
}

/// Drop (and log) the runtime thresholds whose stream's setting in the config — `settings`,
/// by stream index, streams named `names` — is no longer the one they replaced; true when
/// any went. Streams no longer in the config keep theirs.
fn prune(o: &mut BTreeMap<String, Override>, names: &[String], settings: &[ThresholdSetting]) -> bool {
    let before = o.len();
    o.retain(|name, ov| {
        let setting = names.iter().position(|n| n == name).and_then(|i| settings.get(i));
        let keep = setting.is_none_or(|s| ov.config == setting_key(*s));
        if !keep {
            tracing::warn!(stream = %name, runtime = ov.value, "the config's threshold changed since the runtime change: the config's applies");
        }
        keep
    });
    o.len() != before
}

impl Console {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        metrics: Arc<Metrics>,
        ctrl: Sender<Control>,
        events: Sender<EventMsg>,
        state_dir: &Path,
        token: Option<Vec<u8>>,
        settings: Vec<ThresholdSetting>,
        false_alarms: Vec<Option<FalseAlarmModel>>,
    ) -> Self {
        let mut overrides = load_overrides(state_dir);
        let names: Vec<String> = metrics.streams.iter().map(|s| s.name.clone()).collect();
        let pruned = prune(&mut overrides, &names, &settings);
        let console = Console {
            metrics,
            ctrl,
            events: Mutex::new(Some(events)),
            state_dir: state_dir.to_path_buf(),
            token,
            settings: Mutex::new(settings),
            false_alarms,
            calibration: Vec::new(),
            overrides: Mutex::new(BTreeMap::new()),
        };
        if pruned {
            console.save(&overrides);
        }
        if let Ok(mut o) = console.overrides.lock() {
            *o = overrides;
        }
        console
    }

    pub fn read_only(&self) -> bool {
        self.token.is_none()
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Check a request's `Authorization: Bearer <token>`.
    pub fn authorize(&self, header: Option<&str>) -> Result<(), ApiError> {
        let Some(token) = &self.token else { return Err(read_only_error()) };
        let given = header.and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("").trim();
        if crate::alarm::hmac::constant_time_eq(given.as_bytes(), token) {
            Ok(())
        } else {
            Err(api_error(401, "a valid token is needed (Authorization: Bearer <token>)"))
        }
    }

    /// A reload: the new settings; runtime thresholds whose setting changed are dropped.
    pub fn reconfigured(&self, settings: Vec<ThresholdSetting>) {
        if let Ok(mut o) = self.overrides.lock() {
            let names: Vec<String> = self.metrics.streams.iter().map(|s| s.name.clone()).collect();
            if prune(&mut o, &names, &settings) {
                self.save(&o);
            }
        }
        if let Ok(mut s) = self.settings.lock() {
            *s = settings;
        }
    }

    /// The runtime threshold of stream `name`, if one applies (those of a changed setting are
    /// pruned when the console starts and on every reload).
    pub fn runtime_threshold(&self, name: &str) -> Option<f64> {
        self.overrides.lock().ok().and_then(|o| o.get(name).map(|ov| ov.value))
    }

    fn save(&self, o: &BTreeMap<String, Override>) {
        let path = self.state_dir.join(THRESHOLDS_FILE);
        let tmp = self.state_dir.join(format!("{THRESHOLDS_FILE}.tmp"));
        let text = serde_json::to_string_pretty(o).unwrap_or_default();
        if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &path)) {
            tracing::error!(file = %path.display(), error = %e, "cannot save the runtime thresholds");
        }
    }

    /// Set stream `i`'s threshold to `value`: applied, persisted, audited.
    pub fn set_threshold(&self, i: usize, value: f64, by: &str) -> Result<(f64, f64), ApiError> {
        if !value.is_finite() {
            return Err(api_error(400, "the threshold must be a finite number"));
        }
        let s = self.metrics.streams.get(i).ok_or_else(|| api_error(404, "no such stream"))?;
        let old = s.threshold.get();
        let setting = self.settings.lock().ok().and_then(|v| v.get(i).copied()).unwrap_or(ThresholdSetting::Model);
        self.ctrl
            .send(Control::Threshold { stream: i, value })
            .map_err(|_| api_error(503, "the scorer has stopped"))?;
        s.threshold.set(value);
        if let Ok(mut o) = self.overrides.lock() {
            let unix_s = crate::metrics::unix_s();
            o.insert(s.name.clone(), Override { value, config: setting_key(setting), by: by.into(), unix_s });
            self.save(&o);
        }
        let mut ev = AlarmEvent::new(EventKind::ThresholdChanged, &s.name, 0.0);
        ev.threshold = Some(value);
        ev.message = format!("{}: threshold changed from {old} to {value} by {by}", s.name);
        self.send(ev);
        tracing::info!(stream = %s.name, old, new = value, by, "threshold changed at run time");
        Ok((old, value))
    }

    /// Acknowledge the alarm of the stream event `id` belongs to.
    pub fn acknowledge_event(&self, id: &str, by: &str) -> Result<String, ApiError> {
        let stream = self
            .event(id)
            .and_then(|v| v["stream"].as_str().map(String::from))
            .ok_or_else(|| api_error(404, "no such event"))?;
        let i = self
            .metrics
            .streams
            .iter()
            .position(|s| s.name == stream)
            .ok_or_else(|| api_error(404, "no such stream"))?;
        if self.metrics.streams[i].acknowledged() {
            return Ok(stream);
        }
        if !self.metrics.acknowledge(i, by) {
            return Err(api_error(409, format!("{stream} has no alarm raised to acknowledge")));
        }
        Ok(stream)
    }

    /// An event for the outbox (dropped after [`close`](Self::close)).
    pub fn send(&self, ev: AlarmEvent) {
        if let Some(tx) = self.events.lock().ok().and_then(|g| g.clone()) {
            let _ = tx.send(Box::new(ev));
        }
    }

    /// Shutdown: no more events from the console.
    pub fn close(&self) {
        if let Ok(mut g) = self.events.lock() {
            g.take();
        }
    }

    /// A recent event by id.
    pub fn event(&self, id: &str) -> Option<serde_json::Value> {
        let r = self.metrics.recent_events.lock().ok()?;
        r.1.iter().filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok()).find(|v| v["id"] == id)
    }
}

/// The event for an acknowledgement of stream `name` by `by`.
pub fn acknowledged_event(name: &str, by: &str) -> AlarmEvent {
    let mut ev = AlarmEvent::new(EventKind::Acknowledged, name, 0.0);
    ev.message = format!("{name}: alarm acknowledged by {by}");
    ev
}

/// The console of a starting daemon: its token read, each stream's false-alarm model from its
/// bundle's calibration, and the acknowledgement hook that turns every acknowledgement
/// (console, API, Modbus) into an `acknowledged` event.
pub fn start(
    valid: &super::config::Monitor,
    metrics: &Arc<Metrics>,
    manifests: &[crate::model::Manifest],
    stream_model: &[usize],
    ctrl: &Sender<Control>,
    events: &Sender<EventMsg>,
) -> Result<Arc<Console>, super::error::DaemonError> {
    let server = &valid.config().server;
    let token = crate::alarm::sink::read_secret(server.token_env.as_deref(), server.token_file.as_deref())
        .map_err(|message| super::error::DaemonError::Sink { name: "server.token".into(), message })?;
    let settings = valid.streams().iter().map(|s| s.detect.threshold).collect();
    let false_alarms = stream_model
        .iter()
        .map(|&m| {
            let d = &manifests[m].threshold.as_ref()?.details;
            let (shape, scale) = (*d.get("gamma_shape")?, *d.get("gamma_scale")?);
            let per_window = *d.get("window_exceedance_probability")?;
            let windows_per_day = d.get("target_false_alarms_per_day")? / per_window;
            (windows_per_day.is_finite() && windows_per_day > 0.0).then_some(FalseAlarmModel {
                shape,
                scale,
                windows_per_day,
            })
        })
        .collect();
    let mut console =
        Console::new(metrics.clone(), ctrl.clone(), events.clone(), valid.state_dir(), token, settings, false_alarms);
    console.calibration = stream_model
        .iter()
        .map(|&m| match &manifests[m].threshold {
            Some(t) => format!("{} ({})", t.method, t.fitted_on.as_deref().unwrap_or("training held-out normals")),
            None => "not calibrated".into(),
        })
        .collect();
    let console = Arc::new(console);
    let hook = {
        let (c, names) = (console.clone(), metrics.streams.iter().map(|s| s.name.clone()).collect::<Vec<_>>());
        crate::metrics::AckHook(Box::new(move |i, by| {
            if let Some(name) = names.get(i) {
                tracing::info!(stream = %name, by, "alarm acknowledged");
                c.send(acknowledged_event(name, by));
            }
        }))
    };
    if let Ok(mut h) = metrics.on_ack.lock() {
        *h = Some(hook);
    }
    if console.read_only() {
        tracing::info!("console and API read-only (no server.token_env / token_file)");
    }
    Ok(console)
}
