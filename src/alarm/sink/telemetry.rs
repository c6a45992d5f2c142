//! MQTT plant telemetry (opt-in per `mqtt` sink): every `telemetry_s` seconds each stream's
//! window score, threshold, input level and state on `telemetry_topic` (QoS 0, retained: a
//! newcomer gets the latest values and, from their time, whether the box went quiet), and —
//! with `discovery = true` — Home Assistant MQTT discovery messages (retained, on every
//! connect) so that each stream appears as sensors without hand configuration.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{Client, QoS};

use crate::metrics::{Metrics, StreamMetrics};

/// `{stream}` filled in.
pub fn topic(template: &str, stream: &str) -> String {
    template.replace("{stream}", stream)
}

/// One stream's telemetry message (JSON; non-finite numbers as null).
pub fn payload(m: &Metrics, s: &StreamMetrics) -> String {
    let finite = |v: f64| v.is_finite().then_some(v);
    let shelf = s.suppressed();
    serde_json::json!({
        "stream": s.name,
        "box": m.identity.box_name,
        "score": finite(s.window_score.get()),
        "threshold": finite(s.threshold.get()),
        "level_dbfs": finite(s.level_dbfs.get()),
        "state": s.display_state(),
        "priority": s.priority,
        "alarm": s.alarm_state().is_raised() && shelf.is_none(),
        "acknowledged": s.acknowledged(),
        "shelved": shelf.as_ref().is_some_and(|x| x.kind == "shelved"),
        "maintenance": shelf.as_ref().is_some_and(|x| x.kind == "maintenance"),
        "machine_off": s.machine_off.load(Ordering::Relaxed),
        "alarms_raised": s.alarms_raised.load(Ordering::Relaxed),
        "unix_s": crate::metrics::unix_s(),
        "unix_ms": crate::alarm::deliver::now_ms(),
    })
    .to_string()
}

/// Home Assistant discovery messages: (topic, retained config JSON), four sensors per stream
/// (numeric ones with `state_class: measurement`, so HA keeps their statistics) and a
/// `binary_sensor` of device class `problem` (on while the stream's alarm is raised and not
/// shelved or in maintenance),
/// unavailable while the box's status is not `online`; ids from the box name (stable across
/// restarts).
pub fn discovery(m: &Metrics, prefix: &str, telemetry_topic: &str, status_topic: &str) -> Vec<(String, String)> {
    let node: String = m.identity.box_name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let mut out = Vec::new();
    for s in &m.streams {
        let id: String = s.name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let state_topic = topic(telemetry_topic, &s.name);
        for (key, name, unit) in [
            ("score", "window score", None),
            ("threshold", "threshold", None),
            ("level_dbfs", "input level", Some("dBFS")),
            ("state", "state", None),
        ] {
            let unique = format!("mpdr_{node}_{id}_{key}");
            let mut cfg = serde_json::json!({
                "name": format!("{} {name}", s.name),
                "unique_id": unique,
                "object_id": unique,
                "state_topic": state_topic,
                "value_template": format!("{{{{ value_json.{key} }}}}"),
                "availability_topic": status_topic,
                "availability_template": "{{ value_json.status }}",
                "device": { "identifiers": [format!("mpdr_{node}_{id}")], "name": format!("mpdr {} {}", m.identity.box_name, s.name), "manufacturer": "mpdr", "model": s.model },
            });
            if let Some(u) = unit {
                cfg["unit_of_measurement"] = u.into();
            }
            if key != "state" {
                cfg["state_class"] = "measurement".into();
            }
            out.push((format!("{prefix}/sensor/{node}/{id}_{key}/config"), cfg.to_string()));
        }
        let unique = format!("mpdr_{node}_{id}_problem");
        let problem = serde_json::json!({
            "name": format!("{} problem", s.name),
            "unique_id": unique,
            "object_id": unique,
            "device_class": "problem",
            "state_topic": state_topic,
            "value_template": "{{ 'ON' if value_json.alarm else 'OFF' }}",
            "json_attributes_topic": state_topic,
            "availability_topic": status_topic,
            "availability_template": "{{ value_json.status }}",
            "device": { "identifiers": [format!("mpdr_{node}_{id}")], "name": format!("mpdr {} {}", m.identity.box_name, s.name), "manufacturer": "mpdr", "model": s.model },
        });
        out.push((format!("{prefix}/binary_sensor/{node}/{id}_problem/config"), problem.to_string()));
    }
    out
}

/// Publish every stream's telemetry each `every` while `connected` (nothing is queued for a
/// broker that is away: telemetry is for now, events go through the outbox), until `stop`.
pub fn spawn(
    client: Client,
    metrics: Arc<Metrics>,
    every: Duration,
    template: String,
    stop: Arc<AtomicBool>,
    connected: Arc<AtomicBool>,
) {
    let started = std::thread::Builder::new().name("mpdr-mqtt-telemetry".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if connected.load(Ordering::Relaxed) {
                for s in &metrics.streams {
                    let _ = client.try_publish(topic(&template, &s.name), QoS::AtMostOnce, true, payload(&metrics, s));
                }
            }
            // Sleep in short steps so a stop is seen quickly.
            let until = std::time::Instant::now() + every;
            while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    if let Err(e) = started {
        tracing::warn!(error = %e, "cannot start the MQTT telemetry thread");
    }
}
