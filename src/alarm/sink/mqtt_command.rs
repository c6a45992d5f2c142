//! Commands over MQTT (opt-in: `commands = true` on an `mqtt` sink with a broker login): an
//! operator's client publishes JSON to `{prefix}/{box}/{stream}/command` (one stream) or
//! `{prefix}/{box}/command` (every stream of the box):
//!
//! ```json
//! {"action": "ack", "raised_id": "<the raised event's id>", "by": "Dana"}
//! {"action": "shelve", "minutes": 60, "reason": "belt change", "by": "Dana"}
//! {"action": "unshelve" | "end-maintenance", "by": "Dana"}
//! {"action": "maintenance", "minutes": 120, "reason": "overhaul", "by": "Dana"}
//! ```
//!
//! The daemon's console carries them out exactly as the API would (the same limits, the same
//! audited events, `by` suffixed with "via mqtt"), and answers on `<topic>/result` (QoS 0,
//! not retained): `{"ok": true|false, "message": "..."}`. MQTT cannot say who published, so
//! the broker's ACL must: give the daemon's login read on `<prefix>/<box>/+/command` and
//! `<prefix>/<box>/command`, and write there only to operators' logins (README).

use crate::metrics::{Command, Metrics};

/// The topic filters to subscribe to, for a box whose event topics start with `base`
/// (`{prefix}/{box}`).
pub fn filters(base: &str) -> [String; 2] {
    [format!("{base}/+/command"), format!("{base}/command")]
}

/// Carry out the command published on `topic` (under `base`) with `payload`; the topic and
/// body of the answer. `None` for a topic that is not a command topic.
pub fn handle(metrics: &Metrics, base: &str, topic: &str, payload: &[u8]) -> Option<(String, String)> {
    let rest = topic.strip_prefix(base)?.strip_prefix('/')?;
    let stream = match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["command"] => None,
        [name, "command"] => Some(*name),
        _ => return None,
    };
    let result = run(metrics, stream, payload);
    let (ok, message) = match result {
        Ok(m) => (true, m),
        Err(e) => (false, e),
    };
    tracing::info!(topic, ok, message = %message, "MQTT command");
    Some((format!("{topic}/result"), serde_json::json!({ "ok": ok, "message": message }).to_string()))
}

fn run(metrics: &Metrics, stream: Option<&str>, payload: &[u8]) -> Result<String, String> {
    let i = match stream {
        None => None,
        Some(name) => Some(
            metrics.streams.iter().position(|s| s.name == name).ok_or_else(|| format!("no stream named {name:?}"))?,
        ),
    };
    let v: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| format!("the payload must be JSON with \"action\": {e}"))?;
    let text = |k: &str| v[k].as_str().unwrap_or("").chars().filter(|c| !c.is_control()).take(200).collect::<String>();
    let who = text("by");
    if who.trim().is_empty() {
        return Err("by: say who sends the command".into());
    }
    let by = format!("{} via mqtt", who.trim());
    let minutes = || v["minutes"].as_f64().ok_or_else(|| "minutes: must be a number".to_string());
    let cmd = match v["action"].as_str().unwrap_or("") {
        "ack" => Command::Ack { raised_id: v["raised_id"].as_str().map(String::from) },
        "shelve" => Command::Shelve { minutes: minutes()?, reason: text("reason") },
        "unshelve" => Command::Unshelve,
        "maintenance" => Command::Maintenance { minutes: minutes()?, reason: text("reason") },
        "end-maintenance" => Command::EndMaintenance,
        other => {
            return Err(format!(
                "action: expected ack, shelve, unshelve, maintenance or end-maintenance, got {other:?}"
            ))
        }
    };
    if i.is_none() && matches!(cmd, Command::Ack { .. } | Command::Shelve { .. } | Command::Unshelve) {
        return Err("acknowledging and shelving name one stream: publish to <prefix>/<box>/<stream>/command".into());
    }
    metrics.command(i, cmd, &by)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{CommandHook, StreamMetrics};

    #[test]
    fn commands_are_parsed_checked_and_answered() {
        let m = Metrics::new(vec![StreamMetrics::new("fan", "m")], vec![]);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        *m.on_command.lock().unwrap() = Some(CommandHook(Box::new(move |i, c, by| {
            s2.lock().unwrap().push((i, c, by.to_string()));
            Ok("done".into())
        })));
        let base = "mpdr/edge";
        let (topic, body) =
            handle(&m, base, "mpdr/edge/fan/command", br#"{"action":"ack","raised_id":"r1","by":"Dana"}"#).unwrap();
        assert_eq!(topic, "mpdr/edge/fan/command/result");
        assert!(body.contains("\"ok\":true"), "{body}");
        let got = seen.lock().unwrap().clone();
        assert_eq!(got, [(Some(0), Command::Ack { raised_id: Some("r1".into()) }, "Dana via mqtt".to_string())]);
        for (topic, payload, why) in [
            ("mpdr/edge/pump/command", r#"{"action":"ack","by":"x"}"#, "no stream"),
            ("mpdr/edge/fan/command", r#"{"action":"ack"}"#, "by:"),
            ("mpdr/edge/fan/command", r#"{"action":"reboot","by":"x"}"#, "action:"),
            ("mpdr/edge/fan/command", r#"{"action":"shelve","by":"x"}"#, "minutes:"),
            ("mpdr/edge/command", r#"{"action":"ack","by":"x"}"#, "name one stream"),
            ("mpdr/edge/fan/command", "not json", "JSON"),
        ] {
            let (_, body) = handle(&m, base, topic, payload.as_bytes()).unwrap();
            assert!(body.contains("\"ok\":false") && body.contains(why), "{payload}: {body}");
        }
        assert!(handle(&m, base, "mpdr/edge/fan/state", b"{}").is_none());
        let (_, body) =
            handle(&m, base, "mpdr/edge/command", br#"{"action":"maintenance","minutes":5,"by":"x"}"#).unwrap();
        assert!(body.contains("\"ok\":true"), "{body}");
        assert_eq!(seen.lock().unwrap().len(), 2, "refused commands never reach the console");
    }
}
