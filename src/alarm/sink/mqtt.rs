//! `mqtt` sink (rumqttc): each event is published with QoS 1 to a topic template and counts
//! as delivered only when the broker's PUBACK arrives; then the stream's retained state topic
//! is updated. The box's retained status topic says `online` (JSON: box, site, streams,
//! version) once connected, and the broker publishes the Last Will (`offline`) if the daemon
//! vanishes. TLS (a CA file) and username/password are options.
//!
//! Many boxes share one broker through one topic layout ([`LAYOUT`]): `<prefix>/<box>/status`
//! and `<prefix>/<box>/<stream>/{event,state,telemetry}`, the box named by `[identity]`;
//! `mpdr plant` reads exactly this layout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError};
use rumqttc::{Client, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport};

use serde::{Deserialize, Serialize};

use super::{check_secret, check_secret_keys, check_timeout, five, read_secret, BuildContext, Built, Common, SinkSpec};
use crate::alarm::{AlarmEvent, EventKind, RetryPolicy, Sink, SinkError};
use crate::config::identity::Identity;
use crate::config::Problems;

/// `[[sink]] type = "mqtt"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    #[serde(flatten)]
    pub common: Common,
    pub host: String,
    #[serde(default = "mqtt_port")]
    pub port: u16,
    /// Default: `mpdr-<box>-<pid>`.
    pub client_id: Option<String>,
    /// The first level(s) of every topic (`{prefix}`): one per plant or site on a shared broker.
    #[serde(default = "prefix")]
    pub prefix: String,
    /// `{prefix}`, `{box}`, `{stream}` and `{kind}` are filled in.
    #[serde(default = "event_topic")]
    pub topic: String,
    /// Retained per-stream state (alarm / normal / down / up).
    #[serde(default = "state_topic")]
    pub state_topic: String,
    /// The box's retained status (`online`); the Last Will sets `offline`.
    #[serde(default = "status_topic")]
    pub status_topic: String,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub tls: bool,
    /// CA certificate (PEM) for TLS.
    pub ca_file: Option<PathBuf>,
    #[serde(default = "five")]
    pub timeout_s: f64,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Plant telemetry every this many seconds (score, threshold, level, state per stream);
    /// absent: none.
    pub telemetry_s: Option<f64>,
    /// `{stream}` is filled in.
    #[serde(default = "telemetry_topic")]
    pub telemetry_topic: String,
    /// Home Assistant MQTT discovery messages for every stream's telemetry (needs telemetry_s).
    #[serde(default)]
    pub discovery: bool,
    #[serde(default = "discovery_prefix")]
    pub discovery_prefix: String,
    /// Accept operators' commands (ack, shelve, maintenance) on `{prefix}/{box}/{stream}/command`
    /// and `{prefix}/{box}/command` (see `mqtt_command`); needs a broker login (`username`)
    /// and a broker ACL that lets only operators publish there.
    #[serde(default)]
    pub commands: bool,
}

/// The fleet's topic layout (the defaults; `mpdr plant` reads it): (key, template).
pub const LAYOUT: [(&str, &str); 4] = [
    ("topic", "{prefix}/{box}/{stream}/event"),
    ("state_topic", "{prefix}/{box}/{stream}/state"),
    ("status_topic", "{prefix}/{box}/status"),
    ("telemetry_topic", "{prefix}/{box}/{stream}/telemetry"),
];

fn prefix() -> String {
    "mpdr".into()
}
fn telemetry_topic() -> String {
    LAYOUT[3].1.into()
}
fn discovery_prefix() -> String {
    "homeassistant".into()
}

fn mqtt_port() -> u16 {
    1883
}
fn event_topic() -> String {
    LAYOUT[0].1.into()
}
fn state_topic() -> String {
    LAYOUT[1].1.into()
}
fn status_topic() -> String {
    LAYOUT[2].1.into()
}

impl SinkSpec for MqttConfig {
    /// The broker session (and its queue of in-flight messages) survives a reload that leaves
    /// this sink's settings as they were.
    fn keeps_session(&self) -> bool {
        true
    }

    fn common(&self) -> &Common {
        &self.common
    }

    fn validate(&self, key: &str, p: &mut Problems) {
        if self.host.trim().is_empty() {
            p.push(format!("{key}.host"), "must not be empty");
        } else if let Some(why) = host_mistake(&self.host) {
            p.push(format!("{key}.host"), why);
        }
        const EVENT: &[&str] = &["{prefix}", "{box}", "{stream}", "{kind}"];
        if let Err(e) = check_prefix(&self.prefix) {
            p.push(format!("{key}.prefix"), e);
        }
        if let Some(id) = &self.client_id {
            if id.is_empty() || id.len() > 128 {
                p.push(format!("{key}.client_id"), "must be 1–128 characters");
            }
        }
        for (k, t, known) in [
            ("topic", &self.topic, EVENT),
            ("state_topic", &self.state_topic, EVENT),
            ("status_topic", &self.status_topic, &EVENT[..2]),
            ("telemetry_topic", &self.telemetry_topic, &EVENT[..3]),
            ("discovery_prefix", &self.discovery_prefix, &[][..]),
        ] {
            if t.is_empty() || t.contains('+') || t.contains('#') || t.chars().any(char::is_control) {
                p.push(format!("{key}.{k}"), format!("a topic to publish to (no wildcards), got \"{t}\""));
            }
            if let Some(bad) = unknown_placeholder(t, known) {
                let want = if known.is_empty() { "none".to_string() } else { known.join(", ") };
                p.push(format!("{key}.{k}"), format!("unknown placeholder {bad} (known here: {want})"));
            }
        }
        check_secret_keys(key, "password", &self.password_env, &self.password_file, p);
        if self.tls && self.ca_file.is_none() {
            p.push(format!("{key}.ca_file"), "tls = true needs the broker's CA certificate (PEM)");
        }
        check_timeout(key, self.timeout_s, p);
        self.retry.validate(&format!("{key}.retry"), p);
        if let Some(t) = self.telemetry_s {
            if !(t.is_finite() && (0.1..=3600.0).contains(&t)) {
                p.push(format!("{key}.telemetry_s"), format!("must be 0.1–3600 s, got {t}"));
            }
        }
        if self.discovery && self.telemetry_s.is_none() {
            p.push(format!("{key}.discovery"), "discovery announces the telemetry: set telemetry_s too");
        }
        if self.commands && self.username.is_none() {
            p.push(
                format!("{key}.commands"),
                "commands need a broker login (username), and the broker's ACL decides who may publish them",
            );
        }
    }

    fn warnings(&self, key: &str, w: &mut Problems) {
        for (k, t) in [("topic", &self.topic), ("state_topic", &self.state_topic), ("status_topic", &self.status_topic)]
        {
            if !t.contains("{box}") {
                w.push(format!("{key}.{k}"), format!("\"{t}\" has no {{box}}: boxes sharing the broker overwrite each other's topics, and `mpdr plant` reads only the default layout"));
            }
        }
    }

    fn check(&self, key: &str, p: &mut Problems, _ports: bool) {
        check_secret(key, "password", &self.password_env, &self.password_file, p);
        if let Some(ca) = &self.ca_file {
            if let Err(e) = read_ca(ca) {
                p.push(format!("{key}.ca_file"), e);
            }
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        for f in [&mut self.password_file, &mut self.ca_file].into_iter().flatten() {
            crate::files::absolute_secret(f, base);
        }
    }

    fn build(&self, ctx: &BuildContext) -> Result<Built, String> {
        let password = read_secret(self.password_env.as_deref(), self.password_file.as_deref())?
            .map(|p| String::from_utf8_lossy(&p).to_string());
        let ca = match &self.ca_file {
            Some(f) => Some(read_ca(f)?),
            None => None,
        };
        let sink = MqttSink::connect(self.clone(), password, ca, ctx.metrics.clone())?;
        Ok(Built::Delivery { sink: Box::new(sink), retry: self.retry.clone() })
    }
}

enum Note {
    Sent(u16),
    Acked(u16),
}

pub struct MqttSink {
    client: Client,
    notes: Receiver<Note>,
    connected: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    s: MqttConfig,
    timeout: Duration,
    identity: Identity,
    client_id: String,
    /// Per stream, (time, id) of the newest event whose state was published: the outbox may
    /// deliver a retried older event after a newer one, which must not roll the state back.
    newest_state: HashMap<String, (u64, String)>,
    /// Per stream, the retained state last published (topic, body): published again on every
    /// connect, so a broker that lost its retained messages in a restart gets them back.
    retained: Arc<Mutex<HashMap<String, (String, String)>>>,
    /// Per stream, the retained state body last published (its flags change without a new state).
    bodies: HashMap<String, serde_json::Value>,
}

/// A topic prefix: topic levels without wildcards, placeholders or a leading or trailing `/`
/// (the sink's `prefix`, `mpdr plant --prefix`).
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.contains(['+', '#', '{', '}']) || prefix.starts_with('/') || prefix.ends_with('/') {
        return Err(format!(
            "topic levels without wildcards, placeholders or a leading or trailing '/', got \"{prefix}\""
        ));
    }
    if prefix.starts_with('$') || prefix.chars().any(char::is_control) {
        return Err(format!(
            "must not start with '$' (the broker's own topics) or hold control characters, got {prefix:?}"
        ));
    }
    Ok(())
}

/// The first `{...}` of `template` that is not one of `known`, or an unmatched brace.
fn unknown_placeholder(template: &str, known: &[&str]) -> Option<String> {
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        if rest[i..].starts_with('}') {
            return Some("}".into());
        }
        let Some(j) = rest[i..].find('}') else { return Some(rest[i..].to_string()) };
        let ph = &rest[i..i + j + 1];
        if !known.contains(&ph) {
            return Some(ph.to_string());
        }
        rest = &rest[i + j + 1..];
    }
    None
}

/// The broker's CA certificate: a file, or a `credential:NAME`.
fn read_ca(f: &Path) -> Result<Vec<u8>, String> {
    let path = crate::files::secret_path(f)?;
    crate::files::read_regular(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A broker `host` that cannot be one: a URL, or a host with its port (it would be looked up
/// as a name and reconnect forever). An IPv6 literal is a host.
fn host_mistake(host: &str) -> Option<String> {
    if let Some((scheme, rest)) = host.split_once("://") {
        return Some(format!(
            "\"{host}\" is a URL: give the host alone (\"{}\") and tls = {} / port",
            rest.split(['/', ':']).next().unwrap_or(rest),
            matches!(scheme, "mqtts" | "ssl" | "tls")
        ));
    }
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        return None;
    }
    if let Ok(sa) = host.parse::<std::net::SocketAddr>() {
        return Some(format!("\"{host}\" holds a port: give host = \"{}\" and port = {}", sa.ip(), sa.port()));
    }
    if let Some((h, port)) = host.rsplit_once(':') {
        if !h.contains(':') && port.parse::<u16>().is_ok() {
            return Some(format!("\"{host}\" holds a port: give host = \"{h}\" and port = {port}"));
        }
    }
    if host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Some(format!("\"{host}\" is not a host name or address"));
    }
    None
}

/// Options of a client of the plant's broker (a box's sink, `mpdr plant`): 10-s keep-alive,
/// user name and password when given, TLS with `ca` (the broker's CA certificate, PEM).
pub fn client_options(
    client_id: &str,
    host: &str,
    port: u16,
    username: Option<&str>,
    password: Option<String>,
    ca: Option<Vec<u8>>,
) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, host, port);
    o.set_keep_alive(Duration::from_secs(10));
    // rumqttc drops the whole connection on an incoming packet over its limit (10 KiB by
    // default): anyone who can publish 50 KiB on a topic we read (our own status topic) could
    // keep the sink disconnected. 1 MiB in, and our own events are far below it out.
    o.set_max_packet_size(1 << 20, 1 << 20);
    if let Some(u) = username {
        o.set_credentials(u, password.unwrap_or_default());
    }
    if let Some(ca) = ca {
        o.set_transport(Transport::Tls(TlsConfiguration::Simple { ca, alpn: None, client_auth: None }));
    }
    o
}

/// `{prefix}` and `{box}` filled in (the rest stays for [`fill`]).
pub fn for_box(template: &str, prefix: &str, id: &Identity) -> String {
    template.replace("{prefix}", prefix).replace("{box}", &id.box_name)
}

/// `{stream}` and `{kind}` filled in.
pub fn fill(template: &str, ev: &AlarmEvent) -> String {
    template.replace("{stream}", &ev.stream).replace("{kind}", ev.kind.as_str())
}

/// The box's status message (retained): `online` with what it runs and how often it sends
/// telemetry (so a viewer can tell a box that went quiet), or `offline` (the Last Will:
/// `lost`; a clean stop: `stopped`).
pub fn status_payload(
    status: &str,
    reason: Option<&str>,
    id: &Identity,
    client: &str,
    streams: &[String],
    telemetry_s: Option<f64>,
) -> String {
    let mut v = serde_json::json!({
        "status": status, "box": id.box_name, "site": id.site, "client": client,
        "version": env!("CARGO_PKG_VERSION"), "unix_s": crate::metrics::unix_s(),
    });
    if status == "online" {
        v["streams"] = streams.into();
        v["telemetry_s"] = telemetry_s.into();
    }
    if let Some(r) = reason {
        v["reason"] = r.into();
    }
    v.to_string()
}

impl MqttSink {
    pub fn connect(
        mut s: MqttConfig,
        password: Option<String>,
        ca: Option<Vec<u8>>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, String> {
        let identity = metrics.identity.clone();
        for t in [&mut s.topic, &mut s.state_topic, &mut s.status_topic, &mut s.telemetry_topic] {
            *t = for_box(t, &s.prefix, &identity);
        }
        let client_id =
            s.client_id.clone().unwrap_or_else(|| format!("mpdr-{}-{}", identity.box_name, std::process::id()));
        let streams: Vec<String> = metrics.streams.iter().map(|m| m.name.clone()).collect();
        if s.tls && ca.is_none() {
            return Err("tls = true needs ca_file (the broker's CA certificate, PEM)".into());
        }
        let ca = ca.filter(|_| s.tls);
        let mut o = client_options(&client_id, &s.host, s.port, s.username.as_deref(), password, ca);
        let will = status_payload("offline", Some("lost"), &identity, &client_id, &[], None);
        o.set_last_will(LastWill::new(&s.status_topic, will, QoS::AtLeastOnce, true));
        let (client, mut connection) = Client::new(o, 64);
        let (tx, notes) = unbounded();
        let connected = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let retained: Arc<Mutex<HashMap<String, (String, String)>>> = Default::default();
        let (c2, stop2, status, birth, again) =
            (connected.clone(), stop.clone(), s.status_topic.clone(), client.clone(), retained.clone());
        let announce = if s.discovery && s.telemetry_s.is_some() {
            super::telemetry::discovery(&metrics, &s.discovery_prefix, &s.telemetry_topic, &s.status_topic)
        } else {
            Vec::new()
        };
        if let Some(t) = s.telemetry_s {
            let every = Duration::from_secs_f64(t);
            let topic = s.telemetry_topic.clone();
            super::telemetry::spawn(client.clone(), metrics.clone(), every, topic, stop.clone(), connected.clone());
        }
        // Commands: `{prefix}/{box}` is what the event topic of the layout starts with.
        let command_base = s.commands.then(|| for_box("{prefix}/{box}", &s.prefix, &identity));
        let (id2, telemetry_s, me) = (identity.clone(), s.telemetry_s, client_id.clone());
        let mut warned_twin = false;
        std::thread::Builder::new()
            .name("mpdr-mqtt".into())
            .spawn(move || {
                let mut last_error = String::new();
                // Birth message and re-announcements at QoS 0, so their packet ids never mix
                // with events'. Queued without blocking (this thread drives the connection):
                // whatever did not fit in the request queue is tried again on the next event,
                // so a box is never left without its retained `online`.
                let mut birth_due = false;
                let born = || {
                    let online = status_payload("online", None, &id2, &me, &streams, telemetry_s);
                    let mut ok = birth.try_publish(&status, QoS::AtMostOnce, true, online).is_ok();
                    for (topic, config) in &announce {
                        ok &= birth.try_publish(topic, QoS::AtMostOnce, true, config.clone()).is_ok();
                    }
                    let states: Vec<(String, String)> =
                        again.lock().map(|m| m.values().cloned().collect()).unwrap_or_default();
                    for (topic, body) in states {
                        ok &= birth.try_publish(topic, QoS::AtMostOnce, true, body).is_ok();
                    }
                    // Our own status topic: a live `online` from another client means two
                    // daemons share this box name.
                    ok &= birth.try_subscribe(&status, QoS::AtMostOnce).is_ok();
                    for f in command_base.iter().flat_map(|b| super::mqtt_command::filters(b)) {
                        ok &= birth.try_subscribe(f, QoS::AtLeastOnce).is_ok();
                    }
                    ok
                };
                for n in connection.iter() {
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                    if birth_due && c2.load(Ordering::Relaxed) && born() {
                        birth_due = false;
                    }
                    match n {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            c2.store(true, Ordering::Relaxed);
                            last_error.clear();
                            tracing::info!(topic = %status, "MQTT connected");
                            birth_due = !born();
                        }
                        Ok(Event::Incoming(Packet::Publish(p)))
                            if command_base.as_ref().is_some_and(|b| p.topic.starts_with(b.as_str()))
                                && p.topic.ends_with("/command") =>
                        {
                            let base = command_base.as_deref().unwrap_or_default();
                            if let Some((topic, body)) = super::mqtt_command::handle(&metrics, base, &p.topic, &p.payload) {
                                let _ = birth.try_publish(topic, QoS::AtMostOnce, false, body);
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) if p.topic == status && !p.retain && !warned_twin => {
                            let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                            if v["status"] == "online" && v["client"].as_str().is_some_and(|c| c != me) {
                                warned_twin = true;
                                tracing::warn!(topic = %status, other = %v["client"], "another daemon publishes as this box: give each daemon its own [identity] box (their statuses and topics overwrite each other)");
                            }
                        }
                        Ok(Event::Incoming(Packet::PubAck(a))) => {
                            let _ = tx.send(Note::Acked(a.pkid));
                        }
                        Ok(Event::Outgoing(Outgoing::Publish(pkid))) if pkid != 0 => {
                            let _ = tx.send(Note::Sent(pkid));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            c2.store(false, Ordering::Relaxed);
                            let msg = e.to_string();
                            if msg != last_error {
                                tracing::warn!(error = %msg, "MQTT connection lost; reconnecting");
                                last_error = msg;
                            }
                            std::thread::sleep(Duration::from_millis(500));
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        let timeout = Duration::from_secs_f64(s.timeout_s);
        Ok(MqttSink {
            client,
            notes,
            connected,
            stop,
            s,
            timeout,
            identity,
            client_id,
            newest_state: Default::default(),
            retained,
            bodies: Default::default(),
        })
    }

    /// Publish with QoS 1 and wait for this publish's PUBACK.
    fn publish_acked(&mut self, topic: &str, payload: String, retain: bool) -> Result<(), SinkError> {
        while self.notes.try_recv().is_ok() {}
        if !self.connected.load(Ordering::Relaxed) {
            return Err(SinkError::Retry(format!("not connected to {}:{}", self.s.host, self.s.port)));
        }
        self.client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
            .map_err(|e| SinkError::Retry(format!("publish to {topic}: {e}")))?;
        let until = Instant::now() + self.timeout;
        let mut pkid = None;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.notes.recv_timeout(left) {
                Ok(Note::Sent(p)) if pkid.is_none() => pkid = Some(p),
                Ok(Note::Acked(p)) if Some(p) == pkid => return Ok(()),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return Err(SinkError::Retry(format!("no PUBACK for {topic} within {:?}", self.timeout)))
                }
            }
        }
    }
}

/// The retained state a stream is in after `kind`; `None` for events that leave it as it is.
pub fn state_after(kind: EventKind) -> Option<&'static str> {
    Some(match kind {
        EventKind::Raised => "alarm",
        EventKind::Cleared => "normal",
        EventKind::StreamDown => "down",
        EventKind::StreamUp | EventKind::SignalRestored => "up",
        EventKind::SignalLost => "signal-lost",
        EventKind::MachineOff => "machine-off",
        EventKind::MachineOn | EventKind::SignalOk => "up",
        EventKind::SignalFault => "signal-fault",
        EventKind::Clipping
        | EventKind::Acknowledged
        | EventKind::ThresholdChanged
        | EventKind::Shelved
        | EventKind::Unshelved
        | EventKind::MaintenanceStarted
        | EventKind::MaintenanceEnded => return None,
    })
}

impl Sink for MqttSink {
    fn deliver(&mut self, ev: &AlarmEvent) -> Result<(), SinkError> {
        let topic = fill(&self.s.topic, ev);
        self.publish_acked(&topic, ev.to_json(), false)?;
        let key = (ev.unix_ms, ev.id.clone());
        if self.newest_state.get(&ev.stream).is_some_and(|newest| *newest > key) {
            return Ok(()); // a newer event's state is already retained
        }
        let Some(value) = self.state_body(ev) else { return Ok(()) };
        let body = value.to_string();
        let state_topic = fill(&self.s.state_topic, ev);
        self.publish_acked(&state_topic, body.clone(), true)?;
        self.bodies.insert(ev.stream.clone(), value);
        self.newest_state.insert(ev.stream.clone(), key);
        if let Ok(mut m) = self.retained.lock() {
            m.insert(ev.stream.clone(), (state_topic, body));
        }
        Ok(())
    }
}

impl MqttSink {
    /// The stream's retained state after `ev` — its state (`alarm`, `normal`, `down`, ...)
    /// and flags (`acknowledged`, `shelved`, `maintenance`, `priority`) — or `None` when `ev`
    /// changes neither.
    fn state_body(&self, ev: &AlarmEvent) -> Option<serde_json::Value> {
        let mut body = self.bodies.get(&ev.stream).cloned().unwrap_or_else(
            || serde_json::json!({ "state": "up", "acknowledged": false, "shelved": false, "maintenance": false }),
        );
        let flag = |k: &str, v: bool| (k.to_string(), v);
        let flags: Vec<(String, bool)> = match ev.kind {
            EventKind::Raised | EventKind::Cleared => vec![flag("acknowledged", false)],
            EventKind::Acknowledged => vec![flag("acknowledged", true)],
            EventKind::Shelved => vec![flag("shelved", true)],
            EventKind::Unshelved => vec![flag("shelved", false)],
            EventKind::MaintenanceStarted => vec![flag("maintenance", true)],
            EventKind::MaintenanceEnded => vec![flag("maintenance", false)],
            _ => vec![],
        };
        let state = state_after(ev.kind);
        if state.is_none() && flags.iter().all(|(k, v)| body[k.as_str()] == *v) {
            return None;
        }
        for (k, v) in flags {
            body[k.as_str()] = v.into();
        }
        if let Some(st) = state {
            body["state"] = st.into();
            body["score"] = ev.score.into();
            body["threshold"] = ev.threshold.into();
        }
        for (k, v) in [
            ("box", serde_json::json!(self.identity.box_name)),
            ("site", serde_json::json!(self.identity.site)),
            ("stream", serde_json::json!(ev.stream)),
            ("kind", serde_json::json!(ev.kind.as_str())),
            ("event_id", serde_json::json!(ev.id)),
            ("time", serde_json::json!(ev.time)),
            ("unix_ms", serde_json::json!(ev.unix_ms)),
            ("priority", serde_json::json!(ev.priority)),
        ] {
            body[k] = v;
        }
        Some(body)
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        // A clean stop says so itself (the Last Will covers crashes and lost links).
        let bye = status_payload("offline", Some("stopped"), &self.identity, &self.client_id, &[], None);
        let _ = self.client.try_publish(&self.s.status_topic, QoS::AtMostOnce, true, bye);
        std::thread::sleep(Duration::from_millis(50));
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_holding_a_port_or_a_url_is_named() {
        assert!(host_mistake("127.0.0.1:1883").unwrap().contains("host = \"127.0.0.1\" and port = 1883"));
        assert!(host_mistake("broker.plant:8883").unwrap().contains("port = 8883"));
        assert!(host_mistake("[::1]:1883").unwrap().contains("port = 1883"));
        assert!(host_mistake("mqtt://broker:1883").unwrap().contains("URL"));
        assert!(host_mistake("mqtts://broker").unwrap().contains("tls = true"));
        for fine in ["127.0.0.1", "::1", "fe80::1", "broker.plant", "localhost"] {
            assert_eq!(host_mistake(fine), None, "{fine}");
        }
    }

    #[test]
    fn a_mistyped_topic_placeholder_is_named() {
        assert_eq!(unknown_placeholder("plant/{stream}/{kind}", &["{stream}", "{kind}"]), None);
        assert_eq!(unknown_placeholder("plant/{strem}/x", &["{stream}", "{kind}"]).as_deref(), Some("{strem}"));
        assert_eq!(unknown_placeholder("plant/{stream", &["{stream}"]).as_deref(), Some("{stream"));
        assert_eq!(unknown_placeholder("plant/stream}", &["{stream}"]).as_deref(), Some("}"));
        assert_eq!(unknown_placeholder("mpdr/{stream}/status", &[]).as_deref(), Some("{stream}"));
        let id = Identity { site: None, box_name: "edge-7".into() };
        assert_eq!(for_box(LAYOUT[0].1, "acme/north", &id), "acme/north/edge-7/{stream}/event");
    }
}
