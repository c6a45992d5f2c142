//! What the console and its API may change at run time, and who may: acknowledging an alarm
//! (one occurrence, by its `raised` event), threshold overrides (`threshold.rs`: visible,
//! bounded, revertible), shelving and maintenance (`shelf.rs`: with an expiry, surviving
//! restarts). Every change is an audited event naming the person (`daemon::access`: named
//! tokens with roles, or the shared token). Without any token the console is read-only.

mod shelf;
mod threshold;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;

pub use shelf::{Limits, Shelf, SUPPRESSIONS_FILE};
pub use threshold::{read as threshold_overrides, Override, THRESHOLDS_FILE};

use super::access::{Role, User};
use super::{Control, EventMsg};
use crate::alarm::{AlarmEvent, EventKind};
use crate::detect::ThresholdSetting;
use crate::metrics::{AckRefusal, Metrics};

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
    api_error(403, "the console is read-only: set server.token_env / token_file or add a [[server.user]]")
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

/// What a stream's bundle says about its threshold (refreshed when a reload swaps a bundle).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamModel {
    /// The bundle's calibrated threshold.
    pub threshold: Option<f64>,
    pub false_alarms: Option<FalseAlarmModel>,
    /// How its threshold was calibrated, in words.
    pub calibration: String,
}

impl StreamModel {
    pub fn of(m: &crate::model::Manifest) -> Self {
        let false_alarms = m.threshold.as_ref().and_then(|t| {
            let d = &t.details;
            let (shape, scale) = (*d.get("gamma_shape")?, *d.get("gamma_scale")?);
            let per_window = *d.get("window_exceedance_probability")?;
            let windows_per_day = d.get("target_false_alarms_per_day")? / per_window;
            (windows_per_day.is_finite() && windows_per_day > 0.0).then_some(FalseAlarmModel {
                shape,
                scale,
                windows_per_day,
            })
        });
        let calibration = match &m.threshold {
            Some(t) => format!("{} ({})", t.method, t.fitted_on.as_deref().unwrap_or("training held-out normals")),
            None => "not calibrated".into(),
        };
        StreamModel { threshold: m.threshold.as_ref().map(|t| t.value), false_alarms, calibration }
    }
}

pub struct Console {
    pub metrics: Arc<Metrics>,
    ctrl: Sender<Control>,
    /// Taken at shutdown, so the event thread can end.
    events: Mutex<Option<Sender<EventMsg>>>,
    state_dir: PathBuf,
    users: Vec<User>,
    pub limits: Limits,
    /// Per stream: the config's threshold setting.
    settings: Mutex<Vec<ThresholdSetting>>,
    /// Per stream: its bundle's threshold, false-alarm model and calibration.
    models: Mutex<Vec<StreamModel>>,
    overrides: Mutex<std::collections::BTreeMap<String, Override>>,
}

impl Console {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        metrics: Arc<Metrics>,
        ctrl: Sender<Control>,
        events: Sender<EventMsg>,
        state_dir: &Path,
        users: Vec<User>,
        limits: Limits,
        settings: Vec<ThresholdSetting>,
        models: Vec<StreamModel>,
    ) -> Self {
        let console = Console {
            metrics,
            ctrl,
            events: Mutex::new(Some(events)),
            state_dir: state_dir.to_path_buf(),
            users,
            limits,
            settings: Mutex::new(settings),
            models: Mutex::new(models),
            overrides: Mutex::new(Default::default()),
        };
        console.load_overrides();
        console.load_suppressions();
        console
    }

    pub fn read_only(&self) -> bool {
        self.users.is_empty()
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The person behind a request's `Authorization: Bearer <token>`.
    pub fn authorize(&self, header: Option<&str>) -> Result<&User, ApiError> {
        if self.read_only() {
            return Err(read_only_error());
        }
        let given = header.and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("").trim();
        super::access::find(&self.users, given.as_bytes())
            .ok_or_else(|| api_error(401, "a valid token is needed (Authorization: Bearer <token>)"))
    }

    /// [`authorize`](Self::authorize), for a change: an operator's name for the audit trail.
    /// With the shared token, the `X-Mpdr-User` header (a name typed in the console) is kept
    /// beside it, as said, not proven.
    pub fn operator(&self, header: Option<&str>, said: Option<&str>) -> Result<String, ApiError> {
        let u = self.authorize(header)?;
        if u.role != Role::Operator {
            return Err(api_error(403, format!("{} is a viewer: only an operator may change anything", u.name)));
        }
        let said: String = said.unwrap_or("").chars().filter(|c| !c.is_control()).take(64).collect();
        Ok(if u.name == super::access::SHARED_USER && !said.trim().is_empty() {
            format!("{} ({})", said.trim(), u.name)
        } else {
            u.name.clone()
        })
    }

    /// Stream `i`'s bundle facts.
    pub fn model(&self, i: usize) -> Option<StreamModel> {
        self.models.lock().ok().and_then(|m| m.get(i).cloned())
    }

    /// A reload swapped stream `i`'s bundle: its calibration text and false-alarm model.
    pub fn model_swapped(&self, i: usize, model: StreamModel) {
        if let Ok(mut m) = self.models.lock() {
            if let Some(slot) = m.get_mut(i) {
                *slot = model;
            }
        }
    }

    /// Acknowledge the alarm whose `raised` event is `id` (the alarm's first or a reminder):
    /// refused with 409 when the event is not a `raised`, its alarm is over, or it was
    /// already acknowledged. Returns the stream and the alarm's first `raised` id.
    pub fn acknowledge_event(&self, id: &str, by: &str) -> Result<(String, String), ApiError> {
        let ev = self.event(id).ok_or_else(|| api_error(404, format!("no event {id}")))?;
        let kind = ev["kind"].as_str().unwrap_or("?");
        if kind != EventKind::Raised.as_str() {
            return Err(api_error(
                409,
                format!("event {id} is a {kind} event, not a raised alarm: nothing to acknowledge"),
            ));
        }
        let stream = ev["stream"].as_str().unwrap_or("").to_string();
        let i = (self.metrics.streams.iter().position(|s| s.name == stream)).ok_or_else(|| {
            api_error(409, format!("event {id} is of stream {stream:?}, which this daemon no longer runs"))
        })?;
        match self.metrics.acknowledge(i, by, Some(id)) {
            Ok(raised) => Ok((stream, raised)),
            Err(AckRefusal::AlreadyBy(who)) => {
                Err(api_error(409, format!("{stream}: this alarm was already acknowledged by {who}")))
            }
            Err(AckRefusal::Over | AckRefusal::NoAlarm) => Err(api_error(
                409,
                format!(
                    "{stream}: the alarm of event {id} is over (cleared); only an active alarm can be acknowledged"
                ),
            )),
        }
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

    /// An event by id: a recent one, else from the outbox.
    pub fn event(&self, id: &str) -> Option<serde_json::Value> {
        let recent = self.metrics.recent_events.lock().ok().and_then(|r| {
            r.1.iter().filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok()).find(|v| v["id"] == id)
        });
        recent.or_else(|| {
            let o = crate::alarm::outbox::Outbox::open(&self.state_dir).ok()?;
            serde_json::to_value(o.show(id).ok()??.0).ok()
        })
    }

    /// A command from a sink (MQTT, Modbus) for stream `Some(i)` or every stream.
    pub fn command(&self, stream: Option<usize>, cmd: crate::metrics::Command, by: &str) -> Result<String, String> {
        let done = match stream {
            Some(i) => self.one_command(i, &cmd, by).map(|line| vec![line]),
            None => self.every_stream(|i| self.one_command(i, &cmd, by)),
        };
        done.map(|lines| lines.join("; ")).map_err(|e| e.message)
    }

    fn one_command(&self, i: usize, cmd: &crate::metrics::Command, by: &str) -> Result<String, ApiError> {
        use crate::metrics::Command;
        let name = &self.stream(i)?.name;
        match cmd {
            Command::Ack { raised_id } => match self.metrics.acknowledge(i, by, raised_id.as_deref()) {
                Ok(id) => Ok(format!("{name}: acknowledged {id}")),
                Err(e) => Err(api_error(409, format!("{name}: not acknowledged ({e:?})"))),
            },
            Command::Shelve { minutes, reason } => {
                self.shelve(i, Shelf::Shelved, *minutes, reason, by).map(|_| format!("{name}: shelved"))
            }
            Command::Unshelve => self.unshelve(i, Shelf::Shelved, by).map(|_| format!("{name}: unshelved")),
            Command::Maintenance { minutes, reason } => {
                self.shelve(i, Shelf::Maintenance, *minutes, reason, by).map(|_| format!("{name}: in maintenance"))
            }
            Command::EndMaintenance => {
                self.unshelve(i, Shelf::Maintenance, by).map(|_| format!("{name}: maintenance ended"))
            }
        }
    }

    /// `f` for every stream, in order: what each did; a stream it does not apply to (409) is
    /// skipped, any other refusal ends it (a box-wide maintenance from the API, MQTT, Modbus).
    pub fn every_stream(&self, f: impl Fn(usize) -> Result<String, ApiError>) -> Result<Vec<String>, ApiError> {
        let mut done = Vec::new();
        for i in 0..self.metrics.streams.len() {
            match f(i) {
                Ok(line) => done.push(line),
                Err(e) if e.status == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn stream(&self, i: usize) -> Result<&crate::metrics::StreamMetrics, ApiError> {
        self.metrics.streams.get(i).ok_or_else(|| api_error(404, "no such stream"))
    }
}

/// The event for an acknowledgement of stream `name`'s alarm `raised_id` by `by`.
pub fn acknowledged_event(name: &str, by: &str, raised_id: &str) -> AlarmEvent {
    let mut ev = AlarmEvent::new(EventKind::Acknowledged, name, 0.0);
    ev.message = format!("{name}: alarm acknowledged by {by}");
    ev.by = Some(by.to_string());
    ev.raised_id = Some(raised_id.to_string());
    ev
}

/// The console of a starting daemon: its users' tokens read, each stream's bundle facts, the
/// runtime thresholds and shelves of the state folder, and the acknowledgement hook that
/// turns every acknowledgement (console, API, Modbus, MQTT) into an `acknowledged` event.
pub fn start(
    valid: &super::config::Monitor,
    metrics: &Arc<Metrics>,
    manifests: &[crate::model::Manifest],
    stream_model: &[usize],
    ctrl: &Sender<Control>,
    events: &Sender<EventMsg>,
) -> Result<Arc<Console>, super::error::DaemonError> {
    let server = &valid.config().server;
    let sink_error = |message| super::error::DaemonError::Sink { name: "server.token".into(), message };
    let shared = crate::alarm::sink::read_secret(server.token_env.as_deref(), server.token_file.as_deref())
        .map_err(sink_error)?;
    let users = super::access::users(shared, &server.user).map_err(sink_error)?;
    let settings = valid.streams().iter().map(|s| s.detect.threshold).collect();
    let models = stream_model.iter().map(|&m| StreamModel::of(&manifests[m])).collect();
    let limits = Limits::of(server);
    let console = Arc::new(Console::new(
        metrics.clone(),
        ctrl.clone(),
        events.clone(),
        valid.state_dir(),
        users,
        limits,
        settings,
        models,
    ));
    let hook = {
        let (c, names) = (console.clone(), metrics.streams.iter().map(|s| s.name.clone()).collect::<Vec<_>>());
        crate::metrics::AckHook(Box::new(move |i, by, raised_id| {
            if let Some(name) = names.get(i) {
                tracing::info!(stream = %name, by, raised_id, "alarm acknowledged");
                c.send(acknowledged_event(name, by, raised_id));
            }
        }))
    };
    if let Ok(mut h) = metrics.on_ack.lock() {
        *h = Some(hook);
    }
    let commands = {
        let c = console.clone();
        crate::metrics::CommandHook(Box::new(move |stream, cmd, by| c.command(stream, cmd, by)))
    };
    if let Ok(mut h) = metrics.on_command.lock() {
        *h = Some(commands);
    }
    if console.read_only() {
        tracing::info!("console and API read-only (no server.token_env / token_file, no [[server.user]])");
    }
    console.log_overrides("start");
    Ok(console)
}
