//! `mpdr plant`: one view of every box and stream that publishes to a broker in the fleet
//! layout of the `mqtt` sink ([`crate::alarm::sink::mqtt::LAYOUT`]). The view is built from
//! what the daemons already publish — each box's retained status (with its Last Will), each
//! stream's retained state, the events and the optional telemetry — so a newcomer sees the
//! whole plant at once, and nothing here is a protocol of its own.

pub mod listen;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// One stream as the plant sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StreamView {
    /// alarm | normal | up | down | signal-lost (retained state or telemetry); `unknown`
    /// before either arrived.
    pub state: String,
    /// Kind and time of the newest event seen (from the retained state or the event topic).
    pub last_event: Option<String>,
    pub last_event_time: Option<String>,
    pub last_event_unix_ms: Option<u64>,
    pub score: Option<f64>,
    pub threshold: Option<f64>,
    pub level_dbfs: Option<f64>,
    /// The alarm now raised was acknowledged by someone.
    pub acknowledged: bool,
    /// Alarms shelved, or the stream in maintenance, by an operator.
    pub shelved: bool,
    pub maintenance: bool,
    /// `critical`, `high`, `medium` or `low` (when its box says).
    pub priority: Option<String>,
    /// Unix ms of the newest message about this stream (any topic), as stamped by its box.
    pub updated_unix_ms: Option<u64>,
    /// Unix ms of its newest telemetry.
    #[serde(skip)]
    pub telemetry_unix_ms: Option<u64>,
}

/// One box.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BoxView {
    pub site: Option<String>,
    /// online | offline | unknown (streams seen before the status).
    pub status: String,
    /// Why it is offline: `lost` (the Last Will: a crash, a cut link) or `stopped`.
    pub reason: Option<String>,
    pub version: Option<String>,
    /// Unix seconds of the status message.
    pub since_unix_s: Option<u64>,
    /// How often the box said it sends telemetry (none: it does not).
    pub telemetry_s: Option<f64>,
    /// Unix ms of the box's newest telemetry (as the box stamped it: the telemetry topics are
    /// retained, so a newcomer sees how old the last one is).
    pub last_telemetry_unix_ms: Option<u64>,
    /// When this viewer received the box's status (its clock).
    #[serde(skip)]
    pub status_received_ms: Option<u64>,
    pub streams: BTreeMap<String, StreamView>,
}

/// The plant: every box seen under one prefix.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plant {
    pub boxes: BTreeMap<String, BoxView>,
    /// Since when this viewer listens (unix ms; `None`: unknown, absence proves nothing).
    pub listening_since_ms: Option<u64>,
    /// Why the view may be incomplete or wrong (messages it could not read, boxes beyond
    /// [`MAX_BOXES`], a link that broke); `--check` fails while there is any.
    pub incomplete: BTreeMap<String, u64>,
}

/// Boxes one view holds at most: beyond, new box names are ignored (and the view says so),
/// so a publisher inventing names cannot grow it without bound.
pub const MAX_BOXES: usize = 2000;

fn num(v: &Value, k: &str) -> Option<f64> {
    v.get(k).and_then(Value::as_f64)
}
fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

impl Plant {
    /// Take one message published under `prefix`. Topics outside the layout and payloads that
    /// are not the layout's JSON are ignored (a plain `online` counts as a status); returns
    /// whether the message was taken. Constant work per message (no copy of the view).
    pub fn apply(&mut self, prefix: &str, topic: &str, payload: &[u8]) -> bool {
        self.apply_at(prefix, topic, payload, crate::alarm::deliver::now_ms())
    }

    /// [`Plant::apply`] of a message received at `now_ms` (this viewer's clock).
    pub fn apply_at(&mut self, prefix: &str, topic: &str, payload: &[u8], now_ms: u64) -> bool {
        let Some(rest) = topic.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) else { return false };
        let levels: Vec<&str> = rest.split('/').collect();
        let raw = String::from_utf8_lossy(payload);
        let json = serde_json::from_str::<Value>(&raw).ok().filter(Value::is_object);
        let layout = matches!(levels.as_slice(), [_, "status"] | [_, _, "state" | "event" | "telemetry"]);
        if layout && !self.boxes.contains_key(levels[0]) && self.boxes.len() >= MAX_BOXES {
            self.note_incomplete(format!("more than {MAX_BOXES} boxes publish here: the others are not shown"));
            return false;
        }
        match levels.as_slice() {
            [b, "status"] => {
                let v = json.unwrap_or_else(|| serde_json::json!({ "status": raw.trim() }));
                let Some(status) = text(&v, "status").filter(|s| s == "online" || s == "offline") else {
                    self.note_incomplete(format!("unreadable status on {topic}: ignored"));
                    return false;
                };
                let since = v.get("unix_s").and_then(Value::as_u64);
                let bx = self.boxes.entry(b.to_string()).or_default();
                // A status older than the box's newest telemetry is stale (or spoofed): the
                // telemetry says the box runs.
                // (The Last Will, `lost`, carries the time the box connected: it is judged by the
                // telemetry that follows it instead, below.)
                let will = text(&v, "reason").as_deref() == Some("lost");
                if let (Some(t), Some(tel), false) = (since, bx.last_telemetry_unix_ms, will) {
                    if t.saturating_mul(1000) + 999 < tel {
                        return false;
                    }
                }
                bx.status_received_ms = Some(now_ms);
                bx.status = status;
                bx.reason = text(&v, "reason");
                bx.since_unix_s = since.or(bx.since_unix_s);
                bx.telemetry_s = v.get("telemetry_s").and_then(Value::as_f64).or(bx.telemetry_s);
                if let Some(site) = text(&v, "site") {
                    bx.site = Some(site);
                }
                if let Some(ver) = text(&v, "version") {
                    bx.version = Some(ver);
                }
                for s in v.get("streams").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                    bx.streams.entry(s.to_string()).or_insert_with(StreamView::unknown);
                }
            }
            [b, stream, what @ ("state" | "event" | "telemetry")] => {
                let Some(v) = json else {
                    self.note_incomplete(format!("unreadable {what} on {topic}: ignored"));
                    return false;
                };
                let bx = self
                    .boxes
                    .entry(b.to_string())
                    .or_insert_with(|| BoxView { status: "unknown".into(), ..Default::default() });
                if bx.site.is_none() {
                    bx.site = text(&v, "site");
                }
                let s = bx.streams.entry(stream.to_string()).or_insert_with(StreamView::unknown);
                // A state or event older than the stream's newest telemetry does not override
                // what the telemetry says (a stale retained message, or a spoofed one).
                let at = v.get("unix_ms").and_then(Value::as_u64);
                if *what != "telemetry" && at.is_some() && at < s.telemetry_unix_ms {
                    return false;
                }
                match *what {
                    "state" => {
                        if let Some(st) = text(&v, "state") {
                            s.state = st;
                        }
                        s.note_flags(&v);
                        s.note_event(text(&v, "kind"), text(&v, "time"), v.get("unix_ms").and_then(Value::as_u64));
                        s.score = num(&v, "score").or(s.score);
                        s.threshold = num(&v, "threshold").or(s.threshold);
                    }
                    "event" => {
                        let kind = text(&v, "kind");
                        if let Some(st) = kind
                            .as_deref()
                            .and_then(|k| crate::alarm::EventKind::ALL.iter().find(|e| e.as_str() == k).copied())
                            .and_then(crate::alarm::sink::mqtt::state_after)
                        {
                            s.state = st.into();
                        }
                        match kind.as_deref() {
                            Some("raised" | "cleared") => s.acknowledged = false,
                            Some("acknowledged") => s.acknowledged = true,
                            Some("shelved" | "unshelved") => s.shelved = kind.as_deref() == Some("shelved"),
                            Some(k @ ("maintenance-started" | "maintenance-ended")) => {
                                s.maintenance = k == "maintenance-started"
                            }
                            _ => {}
                        }
                        s.priority = text(&v, "priority").or(s.priority.take());
                        s.note_event(kind, text(&v, "time"), v.get("unix_ms").and_then(Value::as_u64));
                    }
                    _ => {
                        if let Some(st) = text(&v, "state") {
                            s.state = st;
                        }
                        s.note_flags(&v);
                        s.score = num(&v, "score");
                        s.threshold = num(&v, "threshold");
                        s.level_dbfs = num(&v, "level_dbfs");
                        // The box's clock; a message without a time counts as received now.
                        let at = (v.get("unix_ms").and_then(Value::as_u64))
                            .or_else(|| v.get("unix_s").and_then(Value::as_u64).map(|t| t * 1000))
                            .unwrap_or(now_ms);
                        s.updated_unix_ms = s.updated_unix_ms.max(Some(at));
                        s.telemetry_unix_ms = s.telemetry_unix_ms.max(Some(at));
                        // Live telemetry stamped after this viewer got an `offline`: the box runs
                        // (a spoofed or stale status), whatever the status said.
                        if bx.status == "offline" && bx.status_received_ms.is_some_and(|r| at > r + 1000) {
                            bx.status = "online".into();
                            bx.reason = None;
                        }
                        bx.last_telemetry_unix_ms = bx.last_telemetry_unix_ms.max(Some(at));
                    }
                }
            }
            _ => return false,
        }
        true
    }

    /// Say the view may be incomplete, and why (counted per reason; at most 100 reasons kept).
    pub fn note_incomplete(&mut self, why: String) {
        if let Some(n) = self.incomplete.get_mut(&why) {
            *n += 1;
        } else if self.incomplete.len() < 100 {
            self.incomplete.insert(why, 1);
        }
    }

    /// A box that says it is online but whose telemetry stopped: none for three of its
    /// periods and 5 s (a hung daemon, or an `online` left retained by a broker that lost the
    /// box's session). Without telemetry a box cannot be judged (false). Times are the boxes'
    /// clocks against this viewer's: keep them in NTP sync.
    pub fn is_stale(&self, b: &BoxView, now_ms: u64) -> bool {
        let Some(t) = b.telemetry_s.filter(|_| b.status == "online") else { return false };
        let Some(since) = b.last_telemetry_unix_ms.or(self.listening_since_ms) else { return false };
        now_ms.saturating_sub(since) as f64 > (3.0 * t + 5.0) * 1000.0
    }

    /// What needs a look, one line each (empty: every box online and talking, no stream in
    /// an unacknowledged alarm, down or without signal): `mpdr plant --check`. An
    /// acknowledged alarm counts too with `acknowledged`.
    pub fn problems(&self, now_ms: u64, acknowledged: bool) -> Vec<String> {
        let mut out: Vec<String> =
            self.incomplete.iter().map(|(why, n)| format!("view incomplete: {why} ({n}x)")).collect();
        for (name, b) in &self.boxes {
            match b.status.as_str() {
                "online" if self.is_stale(b, now_ms) => out.push(format!("{name}: online but quiet (no telemetry)")),
                "online" => {}
                "offline" => out.push(format!("{name}: offline ({})", b.reason.as_deref().unwrap_or("?"))),
                other => out.push(format!("{name}: {other} (no status)")),
            }
            if b.status == "offline" {
                continue; // its streams' states are stale
            }
            for (sname, st) in &b.streams {
                let ignored = st.state == "alarm" && st.acknowledged && !acknowledged;
                if matches!(st.state.as_str(), "alarm" | "down" | "signal-lost") && !ignored {
                    let ack = if st.acknowledged { " (acknowledged)" } else { "" };
                    out.push(format!("{name}/{sname}: {}{ack}", st.state));
                }
            }
        }
        out
    }

    /// Counts for the headline: (boxes, boxes online, streams, streams in alarm).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let online = self.boxes.values().filter(|b| b.status == "online").count();
        let streams = self.boxes.values().map(|b| b.streams.len()).sum();
        let alarms = self.boxes.values().flat_map(|b| b.streams.values()).filter(|s| s.state == "alarm").count();
        (self.boxes.len(), online, streams, alarms)
    }

    /// The view as JSON: `{"boxes": [{"box", "site", "status", ..., "streams": [{"stream",
    /// "state", "last_event", "age_s", ...}]}]}`, ages against `now_ms`.
    pub fn to_json(&self, now_ms: u64) -> Value {
        let boxes: Vec<Value> = self
            .boxes
            .iter()
            .map(|(name, b)| {
                let streams: Vec<Value> = b
                    .streams
                    .iter()
                    .map(|(sname, s)| {
                        let mut v = serde_json::to_value(s).unwrap_or_default();
                        v["stream"] = sname.as_str().into();
                        v["age_s"] = s.last_event_unix_ms.map(|t| now_ms.saturating_sub(t) as f64 / 1000.0).into();
                        v
                    })
                    .collect();
                let mut v = serde_json::to_value(b).unwrap_or_default();
                v["box"] = name.as_str().into();
                v["stale"] = self.is_stale(b, now_ms).into();
                v["streams"] = streams.into();
                v
            })
            .collect();
        let (n, online, streams, alarms) = self.counts();
        let incomplete: Vec<String> = self.incomplete.iter().map(|(why, n)| format!("{why} ({n}x)")).collect();
        serde_json::json!({ "boxes": boxes, "online": online, "total_boxes": n, "streams": streams, "alarms": alarms, "incomplete": incomplete })
    }

    /// The view as a table for a terminal (one line per stream; a box without streams gets
    /// one line of its own).
    pub fn render(&self, now_ms: u64) -> String {
        let (n, online, streams, alarms) = self.counts();
        let mut out = format!(
            "{n} box(es), {online} online · {streams} stream(s), {alarms} in alarm\n\n{:<16} {:<12} {:<14} {:<16} {:<12} {:<22} {:>8} {:>15}\n",
            "BOX", "SITE", "STATUS", "STREAM", "STATE", "LAST EVENT", "AGE", "SCORE / THR"
        );
        for (why, n) in &self.incomplete {
            out = format!("VIEW INCOMPLETE: {why} ({n}x)\n{out}");
        }
        for (name, b) in &self.boxes {
            let status = match (&b.status[..], b.reason.as_deref()) {
                ("offline", Some(r)) => format!("offline ({r})"),
                ("online", _) if self.is_stale(b, now_ms) => "online (quiet)".to_string(),
                (s, _) => s.to_string(),
            };
            let site = b.site.as_deref().unwrap_or("-");
            if b.streams.is_empty() {
                out += &format!("{name:<16} {site:<12} {status:<14}\n");
            }
            for (sname, s) in &b.streams {
                // A box that is away cannot vouch for its streams: their last state is shown
                // in brackets.
                let mut state = s.state.clone();
                for (on, tag) in [(s.acknowledged, "+ack"), (s.shelved, "+shelved"), (s.maintenance, "+maint")] {
                    if on {
                        state += tag;
                    }
                }
                let state = if b.status == "offline" { format!("({state})") } else { state };
                let age = s.last_event_unix_ms.map_or("-".to_string(), |t| age(now_ms.saturating_sub(t)));
                // The latest score against its threshold (telemetry, or the last state change).
                let score = match (s.score, s.threshold) {
                    (Some(v), Some(t)) => format!("{v:.3} / {t:.3}"),
                    (Some(v), None) => format!("{v:.3}"),
                    _ => "-".into(),
                };
                let line = format!(
                    "{name:<16} {site:<12} {status:<14} {sname:<16} {state:<12} {:<22} {age:>8} {score:>15}",
                    s.last_event.as_deref().unwrap_or("-"),
                );
                out += line.trim_end();
                out.push('\n');
            }
        }
        out
    }
}

impl StreamView {
    /// The flags a retained state or telemetry message carries.
    fn note_flags(&mut self, v: &Value) {
        let flag = |k: &str| v.get(k).and_then(Value::as_bool);
        self.acknowledged = flag("acknowledged").unwrap_or(self.acknowledged);
        self.shelved = flag("shelved").unwrap_or(self.shelved);
        self.maintenance = flag("maintenance").unwrap_or(self.maintenance);
        self.priority = text(v, "priority").or(self.priority.take());
    }

    /// A stream seen before its state or telemetry.
    fn unknown() -> Self {
        StreamView { state: "unknown".into(), ..Default::default() }
    }

    fn note_event(&mut self, kind: Option<String>, time: Option<String>, unix_ms: Option<u64>) {
        let Some(kind) = kind else { return };
        if unix_ms.is_some() && unix_ms < self.last_event_unix_ms {
            return; // an older event (a retained state after a newer event)
        }
        self.last_event = Some(kind);
        self.last_event_time = time;
        self.last_event_unix_ms = unix_ms;
        self.updated_unix_ms = self.updated_unix_ms.max(unix_ms);
    }
}

/// "12 s", "4 min", "3 h", "2 d".
fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_or_spoofed_messages_do_not_override_telemetry_and_the_view_says_when_it_is_incomplete() {
        let mut p = Plant::default();
        let online = r#"{"status":"online","streams":["fan"],"unix_s":100,"telemetry_s":1.0}"#;
        p.apply_at("mpdr", "mpdr/b/status", online.as_bytes(), 100_000);
        p.apply_at("mpdr", "mpdr/b/fan/telemetry", br#"{"state":"alarm","unix_ms":120000}"#, 120_000);
        // A retained `cleared` older than the telemetry does not show the alarming stream as normal.
        p.apply_at("mpdr", "mpdr/b/fan/event", br#"{"kind":"cleared","unix_ms":110000}"#, 121_000);
        assert_eq!(p.boxes["b"].streams["fan"].state, "alarm");
        assert!(p.problems(121_000, false).iter().any(|l| l.contains("b/fan: alarm")), "--check reports it");
        // An `offline` older than the telemetry is ignored; a Last Will is taken, then undone by
        // live telemetry stamped after it arrived.
        p.apply_at("mpdr", "mpdr/b/status", br#"{"status":"offline","reason":"stopped","unix_s":105}"#, 122_000);
        assert_eq!(p.boxes["b"].status, "online");
        p.apply_at("mpdr", "mpdr/b/status", br#"{"status":"offline","reason":"lost","unix_s":100}"#, 123_000);
        assert_eq!(p.boxes["b"].status, "offline");
        p.apply_at("mpdr", "mpdr/b/fan/telemetry", br#"{"state":"alarm","unix_ms":125000}"#, 125_000);
        assert_eq!(p.boxes["b"].status, "online", "a running box is not hidden by a spoofed will");
        // Garbage on a status topic blanks nothing, and says the view is incomplete.
        assert!(!p.apply_at("mpdr", "mpdr/b/status", b"\xff\x00garbage", 126_000));
        assert_eq!((p.boxes["b"].status.as_str(), p.boxes["b"].telemetry_s), ("online", Some(1.0)));
        assert!(p.problems(126_000, false).iter().any(|l| l.starts_with("view incomplete: unreadable status")));
        // Phantom boxes stop at the limit.
        for i in 0..MAX_BOXES + 50 {
            p.apply_at("mpdr", &format!("mpdr/ghost-{i}/status"), b"online", 127_000);
        }
        assert_eq!(p.boxes.len(), MAX_BOXES);
        assert!(p.to_json(127_000)["incomplete"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_str().unwrap().contains("more than")));
    }

    #[test]
    fn the_plant_follows_status_state_events_and_telemetry() {
        let mut p = Plant::default();
        let status = r#"{"status":"online","box":"edge-1","site":"north","streams":["fan","pump"],"unix_s":10}"#;
        assert!(p.apply("mpdr", "mpdr/edge-1/status", status.as_bytes()));
        assert!(!p.apply("mpdr", "other/edge-1/status", status.as_bytes()), "another prefix");
        assert_eq!(p.counts(), (1, 1, 2, 0));
        assert_eq!(p.boxes["edge-1"].streams["fan"].state, "unknown");
        let state = r#"{"state":"alarm","kind":"raised","time":"T1","unix_ms":5000,"score":3.0,"threshold":2.0}"#;
        p.apply("mpdr", "mpdr/edge-1/fan/state", state.as_bytes());
        assert_eq!(p.counts(), (1, 1, 2, 1));
        let fan = &p.boxes["edge-1"].streams["fan"];
        assert_eq!((fan.last_event.as_deref(), fan.score), (Some("raised"), Some(3.0)));
        // An event moves the state; an older retained state does not move the last event back.
        p.apply("mpdr", "mpdr/edge-1/fan/event", br#"{"kind":"cleared","time":"T2","unix_ms":9000}"#);
        p.apply("mpdr", "mpdr/edge-1/fan/state", state.as_bytes());
        assert_eq!(p.boxes["edge-1"].streams["fan"].last_event.as_deref(), Some("cleared"));
        p.apply(
            "mpdr",
            "mpdr/edge-1/pump/telemetry",
            br#"{"state":"normal","score":0.5,"level_dbfs":-20.0,"unix_s":11}"#,
        );
        assert_eq!(p.boxes["edge-1"].streams["pump"].level_dbfs, Some(-20.0));
        // The Last Will.
        p.apply("mpdr", "mpdr/edge-1/status", br#"{"status":"offline","reason":"lost","box":"edge-1"}"#);
        assert_eq!(p.counts().1, 0);
        let table = p.render(12_000);
        assert!(table.contains("offline (lost)") && table.contains("(normal)"), "{table}");
        assert!(table.contains("3.000 / 2.000"), "the fan's last score against its threshold: {table}");
        let j = p.to_json(12_000);
        assert_eq!(j["boxes"][0]["box"], "edge-1");
        assert_eq!(j["boxes"][0]["site"], "north");
        assert_eq!(j["boxes"][0]["streams"][0]["stream"], "fan");
        assert_eq!(j["boxes"][0]["streams"][0]["age_s"], 3.0);
        // A box whose telemetry stops is flagged, one without telemetry is not judged.
        let mut q = Plant { listening_since_ms: Some(0), ..Default::default() };
        q.apply_at("mpdr", "mpdr/e2/status", br#"{"status":"online","streams":["a"],"telemetry_s":1.0}"#, 0);
        q.apply_at("mpdr", "mpdr/e3/status", br#"{"status":"online","streams":["a"]}"#, 0);
        q.apply_at("mpdr", "mpdr/e2/a/telemetry", br#"{"state":"normal","score":0.5,"unix_s":1}"#, 1_300);
        assert!(!q.is_stale(&q.boxes["e2"], 8_000), "3 periods + 5 s not over yet");
        assert!(q.is_stale(&q.boxes["e2"], 9_500));
        assert!(!q.is_stale(&q.boxes["e3"], 1_000_000));
        assert!(q.render(9_500).contains("online (quiet)"));
        assert_eq!(q.problems(9_500, false), ["e2: online but quiet (no telemetry)"]);
        assert!(q.problems(8_000, false).is_empty(), "all well");
        assert_eq!(p.problems(12_000, false), ["edge-1: offline (lost)"], "an offline box's streams are not judged");
        // An acknowledged alarm: someone is on it (unless asked); shelving shows in the table.
        q.apply_at("mpdr", "mpdr/e3/a/event", br#"{"kind":"raised","priority":"high","unix_ms":1}"#, 1_000);
        assert_eq!(q.problems(1_000, false), ["e3/a: alarm"]);
        q.apply_at("mpdr", "mpdr/e3/a/event", br#"{"kind":"acknowledged","unix_ms":2}"#, 1_000);
        assert!(q.problems(1_000, false).is_empty());
        assert_eq!(q.problems(1_000, true), ["e3/a: alarm (acknowledged)"]);
        q.apply_at("mpdr", "mpdr/e3/a/state", br#"{"state":"alarm","acknowledged":true,"shelved":true}"#, 1_000);
        let e3 = &q.boxes["e3"].streams["a"];
        assert_eq!((e3.acknowledged, e3.shelved, e3.priority.as_deref()), (true, true, Some("high")));
        assert!(q.render(1_000).contains("alarm+ack+shelved"), "{}", q.render(1_000));
        assert_eq!(q.to_json(9_500)["boxes"][0]["stale"], true);
        // Garbage is ignored.
        assert!(!p.apply("mpdr", "mpdr/edge-1/fan/state", b"\xff\xfe"));
        assert!(!p.apply("mpdr", "mpdr/edge-1/status", b"maybe"));
        assert!(!p.apply("mpdr", "mpdr/a/b/c/d", b"{}"));
    }
}
