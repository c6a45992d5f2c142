//! The console's page and its HTTP API (documented in the README):
//!
//! - `GET /` — the console (one HTML page embedded in the binary, no CDN);
//! - `GET /api/streams` — every stream: state, score, threshold, level, model, calibration,
//!   false alarms per day at its threshold (when the bundle's calibration gives a model);
//! - `GET /api/events?limit=N` — the newest events, newest first;
//! - `GET /api/live` — Server-Sent Events: `streams` every second, each new `event`;
//! - `GET /api/streams/<name>/false_alarms?threshold=X` — the false-alarm estimate at X;
//! - `GET /evidence/<event id>.png|.wav` — an alarm's spectrogram and audio;
//! - `POST /api/streams/<name>/threshold` `{"value": X}` and `POST /api/events/<id>/ack` —
//!   need `Authorization: Bearer <token>`.
//!
//! Errors are JSON `{"error": "..."}`: 404 for an unknown stream or event, 400 for a bad
//! value, 401/403 without the token, 413 for a body over 4 KiB (the parser's limit).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::request::Request;
use super::Response;
use crate::daemon::console::{ApiError, Console};
use crate::metrics::Metrics;

/// What a request can reach: the metrics, and the console's actions (absent in tests and
/// fuzzing: read-only).
pub struct Ctx {
    pub metrics: Arc<Metrics>,
    pub console: Option<Arc<Console>>,
}

const PAGE: &str = include_str!("console.html");

pub fn json(status: u16, v: &serde_json::Value) -> Response {
    Response { status, content_type: "application/json", body: v.to_string().into_bytes() }
}

fn error(e: ApiError) -> Response {
    json(e.status, &serde_json::json!({ "error": e.message }))
}

fn query<'a>(req: &'a Request, key: &str) -> Option<&'a str> {
    req.query.split('&').find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Every stream, as the console shows it.
pub fn streams(ctx: &Ctx) -> serde_json::Value {
    let m = &ctx.metrics;
    let models = m.models.lock().map(|v| v.clone()).unwrap_or_default();
    let list: Vec<serde_json::Value> = m
        .streams
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let threshold = s.threshold.get();
            let c = ctx.console.as_deref();
            let fa = c.and_then(|c| c.false_alarms.get(i).copied().flatten());
            let finite = |v: f64| v.is_finite().then_some(v);
            serde_json::json!({
                "name": s.name,
                "state": s.display_state(),
                "alarm_state": s.alarm_state().as_str(),
                "acknowledged": s.acknowledged(),
                "up": s.up.load(Ordering::Relaxed),
                "score": finite(s.window_score.get()),
                "threshold": finite(threshold),
                "level_dbfs": finite(s.level_dbfs.get()),
                "alarms_raised": s.alarms_raised.load(Ordering::Relaxed),
                "model": s.model,
                "model_kind": models.iter().find(|x| x.id == s.model).map(|x| x.kind.clone()),
                "calibration": c.and_then(|c| c.calibration.get(i).cloned()),
                "false_alarms_per_day": fa.map(|f| f.per_day(threshold)).and_then(finite),
            })
        })
        .collect();
    serde_json::Value::Array(list)
}

/// The newest `limit` events, newest first.
pub fn events(m: &Metrics, limit: usize) -> serde_json::Value {
    let list: Vec<serde_json::Value> = match m.recent_events.lock() {
        Ok(r) => r.1.iter().rev().take(limit).filter_map(|j| serde_json::from_str(j).ok()).collect(),
        Err(_) => Vec::new(),
    };
    serde_json::Value::Array(list)
}

fn stream_index(ctx: &Ctx, name: &str) -> Result<usize, ApiError> {
    ctx.metrics
        .streams
        .iter()
        .position(|s| s.name == name)
        .ok_or_else(|| crate::daemon::console::api_error(404, format!("no stream named {name:?}")))
}

/// The answer to a console or API request; `None` when the path is not one of theirs.
pub fn route(req: &Request, ctx: &Ctx) -> Option<Response> {
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let r = match (req.method.as_str(), parts.as_slice()) {
        ("GET", [""]) => {
            Response { status: 200, content_type: "text/html; charset=utf-8", body: PAGE.as_bytes().to_vec() }
        }
        ("GET", ["api", "streams"]) => json(200, &streams(ctx)),
        ("GET", ["api", "events"]) => {
            let limit = query(req, "limit").and_then(|v| v.parse().ok()).unwrap_or(100usize).min(10_000);
            json(200, &events(&ctx.metrics, limit))
        }
        ("GET", ["api", "streams", name, "false_alarms"]) => {
            let i = match stream_index(ctx, name) {
                Ok(i) => i,
                Err(e) => return Some(error(e)),
            };
            let t = query(req, "threshold").and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite());
            let Some(t) = t else {
                return Some(error(crate::daemon::console::api_error(400, "threshold=<finite number> is needed")));
            };
            let fa = ctx.console.as_deref().and_then(|c| c.false_alarms.get(i).copied().flatten());
            json(
                200,
                &serde_json::json!({ "threshold": t, "false_alarms_per_day": fa.map(|f| f.per_day(t)).filter(|v| v.is_finite()) }),
            )
        }
        ("GET", ["evidence", file]) => evidence(ctx, file),
        ("POST", ["api", "streams", name, "threshold"]) => {
            let result = (|| {
                let c = ctx.console.as_deref().ok_or_else(crate::daemon::console::read_only_error)?;
                c.authorize(req.header("authorization"))?;
                let i = stream_index(ctx, name)?;
                let v: serde_json::Value = serde_json::from_slice(&req.body).map_err(|_| {
                    crate::daemon::console::api_error(400, "the body must be JSON: {\"value\": <number>}")
                })?;
                let value = v["value"]
                    .as_f64()
                    .ok_or_else(|| crate::daemon::console::api_error(400, "\"value\" must be a number"))?;
                let by = req.header("x-mpdr-user").unwrap_or("api").chars().take(64).collect::<String>();
                let (old, new) = c.set_threshold(i, value, &by)?;
                Ok(serde_json::json!({ "stream": name, "old": old, "new": new }))
            })();
            match result {
                Ok(v) => json(200, &v),
                Err(e) => error(e),
            }
        }
        ("POST", ["api", "events", id, "ack"]) => {
            let result = (|| {
                let c = ctx.console.as_deref().ok_or_else(crate::daemon::console::read_only_error)?;
                c.authorize(req.header("authorization"))?;
                let by = req.header("x-mpdr-user").unwrap_or("api").chars().take(64).collect::<String>();
                let stream = c.acknowledge_event(id, &by)?;
                Ok(serde_json::json!({ "event": id, "stream": stream, "acknowledged": true }))
            })();
            match result {
                Ok(v) => json(200, &v),
                Err(e) => error(e),
            }
        }
        (_, ["api", ..]) | (_, ["evidence", ..]) => {
            error(crate::daemon::console::api_error(404, format!("no {} {}", req.method, req.path)))
        }
        _ => return None,
    };
    Some(r)
}

/// An alarm's evidence file: `<uuid>.png` or `<uuid>.wav` from `<state>/evidence`.
fn evidence(ctx: &Ctx, file: &str) -> Response {
    let ok = file.len() == 40
        && (file.ends_with(".png") || file.ends_with(".wav"))
        && file[..36].bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    let found = ok
        .then_some(ctx.console.as_deref())
        .flatten()
        .and_then(|c| std::fs::read(c.state_dir().join("evidence").join(file)).ok());
    match found {
        Some(body) => {
            Response { status: 200, content_type: if file.ends_with(".png") { "image/png" } else { "audio/wav" }, body }
        }
        None => error(crate::daemon::console::api_error(404, "no such evidence file")),
    }
}
