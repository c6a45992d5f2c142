//! `mqtt` sink (rumqttc): each event is published with QoS 1 to a topic template (e.g.
//! `plant/{stream}/alarm`) and counts as delivered only when the broker's PUBACK arrives;
//! then the stream's retained state topic is updated. A retained status topic says `online`
//! once connected, and the broker publishes the Last Will `offline` if the daemon vanishes.
//! TLS (system roots or a CA file) and username/password are options.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError};
use rumqttc::{Client, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport};

use serde::{Deserialize, Serialize};

use super::{check_secret, check_secret_keys, check_timeout, five, read_secret, BuildContext, Built, Common, SinkSpec};
use crate::alarm::{AlarmEvent, EventKind, RetryPolicy, Sink, SinkError};
use crate::config::Problems;
use crate::files::absolute;

/// `[[sink]] type = "mqtt"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    #[serde(flatten)]
    pub common: Common,
    pub host: String,
    #[serde(default = "mqtt_port")]
    pub port: u16,
    #[serde(default = "client_id")]
    pub client_id: String,
    /// `{stream}` and `{kind}` are filled in.
    #[serde(default = "event_topic")]
    pub topic: String,
    /// Retained per-stream state (alarm / normal / down / up).
    #[serde(default = "state_topic")]
    pub state_topic: String,
    /// Retained `online`; the Last Will sets `offline`.
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
}

fn telemetry_topic() -> String {
    "mpdr/{stream}/telemetry".into()
}
fn discovery_prefix() -> String {
    "homeassistant".into()
}

fn mqtt_port() -> u16 {
    1883
}
fn client_id() -> String {
    format!("mpdr-{}", std::process::id())
}
fn event_topic() -> String {
    "mpdr/{stream}/event".into()
}
fn state_topic() -> String {
    "mpdr/{stream}/state".into()
}
fn status_topic() -> String {
    "mpdr/status".into()
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
        }
        for (k, t, known) in [
            ("topic", &self.topic, &["{stream}", "{kind}"][..]),
            ("state_topic", &self.state_topic, &["{stream}", "{kind}"][..]),
            ("status_topic", &self.status_topic, &[][..]),
            ("telemetry_topic", &self.telemetry_topic, &["{stream}"][..]),
            ("discovery_prefix", &self.discovery_prefix, &[][..]),
        ] {
            if t.is_empty() || t.contains('+') || t.contains('#') {
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
    }

    fn check(&self, key: &str, p: &mut Problems, _ports: bool) {
        check_secret(key, "password", &self.password_env, &self.password_file, p);
        if let Some(ca) = &self.ca_file {
            if let Err(e) = std::fs::read(ca) {
                p.push(format!("{key}.ca_file"), format!("{}: {e}", ca.display()));
            }
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        for f in [&mut self.password_file, &mut self.ca_file].into_iter().flatten() {
            absolute(f, base);
        }
    }

    fn build(&self, ctx: &BuildContext) -> Result<Built, String> {
        let password = read_secret(self.password_env.as_deref(), self.password_file.as_deref())?
            .map(|p| String::from_utf8_lossy(&p).to_string());
        let ca = match &self.ca_file {
            Some(f) => Some(std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?),
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
    /// Per stream, (time, id) of the newest event whose state was published: the outbox may
    /// deliver a retried older event after a newer one, which must not roll the state back.
    newest_state: std::collections::HashMap<String, (u64, String)>,
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

/// `{stream}` and `{kind}` filled in.
pub fn fill(template: &str, ev: &AlarmEvent) -> String {
    template.replace("{stream}", &ev.stream).replace("{kind}", ev.kind.as_str())
}

impl MqttSink {
    pub fn connect(
        s: MqttConfig,
        password: Option<String>,
        ca: Option<Vec<u8>>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, String> {
        let mut o = MqttOptions::new(&s.client_id, &s.host, s.port);
        o.set_keep_alive(Duration::from_secs(10));
        o.set_last_will(LastWill::new(&s.status_topic, "offline", QoS::AtLeastOnce, true));
        if let Some(u) = &s.username {
            o.set_credentials(u, password.unwrap_or_default());
        }
        if s.tls {
            let ca = ca.ok_or("tls = true needs ca_file (the broker's CA certificate, PEM)")?;
            o.set_transport(Transport::Tls(TlsConfiguration::Simple { ca, alpn: None, client_auth: None }));
        }
        let (client, mut connection) = Client::new(o, 64);
        let (tx, notes) = unbounded();
        let connected = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, stop2, status, birth) = (connected.clone(), stop.clone(), s.status_topic.clone(), client.clone());
        let announce = if s.discovery && s.telemetry_s.is_some() {
            super::telemetry::discovery(&metrics, &s.discovery_prefix, &s.telemetry_topic, &s.client_id)
        } else {
            Vec::new()
        };
        if let Some(t) = s.telemetry_s {
            let every = Duration::from_secs_f64(t);
            let topic = s.telemetry_topic.clone();
            super::telemetry::spawn(client.clone(), metrics, every, topic, stop.clone(), connected.clone());
        }
        std::thread::Builder::new()
            .name("mpdr-mqtt".into())
            .spawn(move || {
                let mut last_error = String::new();
                for n in connection.iter() {
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                    match n {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            c2.store(true, Ordering::Relaxed);
                            last_error.clear();
                            tracing::info!(topic = %status, "MQTT connected");
                            // Birth message at QoS 0, so its packet id never mixes with events'.
                            let _ = birth.try_publish(&status, QoS::AtMostOnce, true, "online");
                            for (topic, config) in &announce {
                                let _ = birth.try_publish(topic, QoS::AtMostOnce, true, config.clone());
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
        Ok(MqttSink { client, notes, connected, stop, s, timeout, newest_state: Default::default() })
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

impl Sink for MqttSink {
    fn deliver(&mut self, ev: &AlarmEvent) -> Result<(), SinkError> {
        let topic = fill(&self.s.topic, ev);
        self.publish_acked(&topic, ev.to_json(), false)?;
        let key = (ev.unix_ms, ev.id.clone());
        if self.newest_state.get(&ev.stream).is_some_and(|newest| *newest > key) {
            return Ok(()); // a newer event's state is already retained
        }
        let state = match ev.kind {
            EventKind::Raised => "alarm",
            EventKind::Cleared => "normal",
            EventKind::StreamDown => "down",
            EventKind::StreamUp | EventKind::SignalRestored => "up",
            EventKind::SignalLost => "signal-lost",
            // Events on the event topic that leave the stream's state as it is.
            EventKind::Clipping | EventKind::Acknowledged | EventKind::ThresholdChanged => return Ok(()),
        };
        let body = serde_json::json!({
            "state": state, "event_id": ev.id, "time": ev.time, "score": ev.score, "threshold": ev.threshold,
        });
        self.publish_acked(&fill(&self.s.state_topic, ev), body.to_string(), true)?;
        self.newest_state.insert(ev.stream.clone(), key);
        Ok(())
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        // A clean stop says so itself (the Last Will covers crashes and lost links).
        let _ = self.client.try_publish(&self.s.status_topic, QoS::AtMostOnce, true, "offline");
        std::thread::sleep(Duration::from_millis(50));
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistyped_topic_placeholder_is_named() {
        assert_eq!(unknown_placeholder("plant/{stream}/{kind}", &["{stream}", "{kind}"]), None);
        assert_eq!(unknown_placeholder("plant/{strem}/x", &["{stream}", "{kind}"]).as_deref(), Some("{strem}"));
        assert_eq!(unknown_placeholder("plant/{stream", &["{stream}"]).as_deref(), Some("{stream"));
        assert_eq!(unknown_placeholder("plant/stream}", &["{stream}"]).as_deref(), Some("}"));
        assert_eq!(unknown_placeholder("mpdr/{stream}/status", &[]).as_deref(), Some("{stream}"));
    }
}
