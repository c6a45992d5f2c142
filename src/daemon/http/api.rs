//! The console's page and its HTTP API (documented in the README):
//!
//! - `GET /` — the console (one HTML page embedded in the binary, no CDN);
//! - `GET /api/streams` — every stream: state, score, threshold (`model_threshold`,
//!   `threshold_source`, `override`), level, priority, acknowledgement, shelf or maintenance,
//!   model, calibration, false alarms per day at its threshold;
//! - `GET /api/streams/<name>/history` — the last hour of window decisions;
//! - `GET /api/events?limit=N&stream=S` — the newest events, newest first;
//! - `GET /api/sinks` — per delivery sink: pending, delivered, dead, failing since, last error;
//! - `GET /api/live` — Server-Sent Events: `streams` every second, each new `event`;
//! - `GET /api/streams/<name>/false_alarms?threshold=X` — the false-alarm estimate at X;
//! - `GET /api/whoami` — the token's user and role;
//! - `GET /evidence/<event id>.png|.wav` — an alarm's spectrogram and audio;
//! - changes, for an operator's `Authorization: Bearer <token>`:
//!   `POST|DELETE /api/streams/<name>/threshold` (`{"value": X, "reason": "..."}`),
//!   `POST /api/events/<raised id>/ack`, `POST|DELETE /api/streams/<name>/shelve`
//!   (`{"minutes": N, "reason": "..."}`), `POST|DELETE /api/streams/<name>/maintenance` and
//!   `POST|DELETE /api/maintenance` (every stream).
//!
//! Errors are JSON `{"error": "..."}`: 404 for an unknown stream or event, 400 for a bad
//! value (naming the field), 401 without a valid token, 403 for a viewer or a read-only
//! console, 409 for a change that does not apply (an alarm that is over, no override to
//! revert), 413 for a body over 4 KiB (the parser's limit).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::request::Request;
use super::Response;
use crate::daemon::console::{api_error, ApiError, Console, Shelf};
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
            let model = c.and_then(|c| c.model(i));
            let fa = model.as_ref().and_then(|m| m.false_alarms);
            let finite = |v: f64| v.is_finite().then_some(v);
            let ov = c.and_then(|c| c.override_of(&s.name)).map(|o| {
                serde_json::json!({ "value": o.value, "by": o.by, "at": crate::alarm::rfc3339_utc(o.unix_s * 1000), "reason": o.reason })
            });
            let shelf = s.suppressed().map(|x| {
                serde_json::json!({ "kind": x.kind, "by": x.by, "reason": x.reason,
                    "since": crate::alarm::rfc3339_utc(x.since_unix_s * 1000), "until": crate::alarm::rfc3339_utc(x.until_unix_s * 1000) })
            });
            serde_json::json!({
                "name": s.name,
                "state": s.display_state(),
                "alarm_state": s.alarm_state().as_str(),
                "priority": s.priority,
                "acknowledged": s.acknowledged(),
                "acknowledged_by": s.acknowledged_by(),
                "raised_id": s.active_raised_id(),
                "machine_off": s.machine_off.load(Ordering::Relaxed),
                "suppression": shelf,
                "up": s.up.load(Ordering::Relaxed),
                "score": finite(s.window_score.get()),
                "threshold": finite(threshold),
                "model_threshold": c.and_then(|c| c.model_threshold(i)).and_then(finite),
                "threshold_source": c.map(|c| c.threshold_source(i)),
                "override": ov,
                "level_dbfs": finite(s.level_dbfs.get()),
                "alarms_raised": s.alarms_raised.load(Ordering::Relaxed),
                "model": s.model,
                "model_kind": models.iter().find(|x| x.id == s.model).map(|x| x.kind.clone()),
                "calibration": model.map(|m| m.calibration),
                "false_alarms_per_day": fa.map(|f| f.per_day(threshold)).and_then(finite),
            })
        })
        .collect();
    serde_json::Value::Array(list)
}

/// The newest `limit` events (of `stream` when given), newest first.
pub fn events(m: &Metrics, limit: usize, stream: Option<&str>) -> serde_json::Value {
    let list: Vec<serde_json::Value> = match m.recent_events.lock() {
        Ok(r) => {
            r.1.iter()
                .rev()
                .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
                .filter(|v| stream.is_none_or(|s| v["stream"] == s))
                .take(limit)
                .collect()
        }
        Err(_) => Vec::new(),
    };
    serde_json::Value::Array(list)
}

/// Stream `name`'s window decisions of the last hour, oldest first: `[unix_ms, score,
/// threshold, state]` rows.
pub fn history(m: &Metrics, i: usize) -> serde_json::Value {
    let s = &m.streams[i];
    let rows: Vec<serde_json::Value> = s
        .history
        .lock()
        .map(|h| {
            h.iter()
                .map(|p| {
                    let f = |v: f32| v.is_finite().then_some(v);
                    serde_json::json!([p.unix_ms, f(p.score), f(p.threshold), p.state.as_str()])
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({ "stream": s.name, "columns": ["unix_ms", "score", "threshold", "state"], "points": rows })
}

/// Every delivery sink's health.
pub fn sinks(ctx: &Ctx) -> serde_json::Value {
    let degraded_s = degraded_after_s(ctx);
    let now = crate::alarm::deliver::now_ms();
    let list: Vec<serde_json::Value> = ctx
        .metrics
        .sinks
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let since = s.failing_since_ms();
            let failing_s = s.failing_for_s(now);
            let state = match failing_s {
                Some(f) if f >= degraded_s => "degraded",
                Some(_) => "failing",
                None => "ok",
            };
            serde_json::json!({
                "name": s.name,
                "state": state,
                "pending": s.pending.load(Ordering::Relaxed),
                "delivered": s.delivered.load(Ordering::Relaxed),
                "retries": s.retries.load(Ordering::Relaxed),
                "dead": s.dead.load(Ordering::Relaxed),
                "failing_since": since.map(crate::alarm::rfc3339_utc),
                "failing_for_s": failing_s,
                "last_error": s.last_error(),
            })
        })
        .collect();
    serde_json::Value::Array(list)
}

/// How long a sink may fail before `/readyz` says degraded.
pub fn degraded_after_s(ctx: &Ctx) -> f64 {
    ctx.console.as_deref().map_or(300.0, |c| c.limits.sink_failing_degraded_s)
}

fn stream_index(ctx: &Ctx, name: &str) -> Result<usize, ApiError> {
    ctx.metrics
        .streams
        .iter()
        .position(|s| s.name == name)
        .ok_or_else(|| api_error(404, format!("no stream named {name:?}")))
}

/// The JSON body of a change (an empty body reads as `{}`).
fn body(req: &Request, shape: &str) -> Result<serde_json::Value, ApiError> {
    if req.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(serde_json::json!({}));
    }
    serde_json::from_slice(&req.body).map_err(|_| api_error(400, format!("the body must be JSON: {shape}")))
}

/// A change: the console, the operator's name, then `f`.
fn change(req: &Request, ctx: &Ctx, f: impl FnOnce(&Console, &str) -> Result<serde_json::Value, ApiError>) -> Response {
    let result = (|| {
        let c = ctx.console.as_deref().ok_or_else(crate::daemon::console::read_only_error)?;
        let by = c.operator(req.header("authorization"), req.header("x-mpdr-user"))?;
        f(c, &by)
    })();
    match result {
        Ok(v) => json(200, &v),
        Err(e) => error(e),
    }
}

/// `{"minutes": N, "reason": "..."}`.
fn shelf_body(req: &Request) -> Result<(f64, String), ApiError> {
    let v = body(req, "{\"minutes\": <number>, \"reason\": \"...\"}")?;
    let minutes = v["minutes"].as_f64().ok_or_else(|| api_error(400, "minutes: must be a number"))?;
    Ok((minutes, v["reason"].as_str().unwrap_or("").to_string()))
}

fn shelve(req: &Request, ctx: &Ctx, name: &str, kind: Shelf) -> Response {
    change(req, ctx, |c, by| {
        let i = stream_index(ctx, name)?;
        if req.method == "DELETE" {
            c.unshelve(i, kind, by)?;
            return Ok(serde_json::json!({ "stream": name, kind.as_str(): false }));
        }
        let (minutes, reason) = shelf_body(req)?;
        let until = c.shelve(i, kind, minutes, &reason, by)?;
        Ok(
            serde_json::json!({ "stream": name, kind.as_str(): true, "until": crate::alarm::rfc3339_utc(until * 1000), "by": by }),
        )
    })
}

/// The answer to a console or API request; `None` when the path is not one of theirs.
pub fn route(req: &Request, ctx: &Ctx) -> Option<Response> {
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let stream = |name: &str| stream_index(ctx, name);
    let r = match (req.method.as_str(), parts.as_slice()) {
        ("GET", [""]) => {
            Response { status: 200, content_type: "text/html; charset=utf-8", body: PAGE.as_bytes().to_vec() }
        }
        ("GET", ["api", "streams"]) => json(200, &streams(ctx)),
        ("GET", ["api", "sinks"]) => json(200, &sinks(ctx)),
        ("GET", ["api", "events"]) => {
            let limit = query(req, "limit").and_then(|v| v.parse().ok()).unwrap_or(100usize).min(10_000);
            json(200, &events(&ctx.metrics, limit, query(req, "stream")))
        }
        ("GET", ["api", "whoami"]) => match ctx.console.as_deref().map(|c| c.authorize(req.header("authorization"))) {
            Some(Ok(u)) => json(200, &serde_json::json!({ "name": u.name, "role": u.role })),
            Some(Err(e)) => error(e),
            None => error(crate::daemon::console::read_only_error()),
        },
        ("GET", ["api", "streams", name, "history"]) => match stream(name) {
            Ok(i) => json(200, &history(&ctx.metrics, i)),
            Err(e) => error(e),
        },
        ("GET", ["api", "streams", name, "false_alarms"]) => {
            let i = match stream(name) {
                Ok(i) => i,
                Err(e) => return Some(error(e)),
            };
            let t = query(req, "threshold").and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite());
            let Some(t) = t else {
                return Some(error(api_error(400, "threshold=<finite number> is needed")));
            };
            let fa = ctx.console.as_deref().and_then(|c| c.model(i)).and_then(|m| m.false_alarms);
            json(
                200,
                &serde_json::json!({ "threshold": t, "false_alarms_per_day": fa.map(|f| f.per_day(t)).filter(|v| v.is_finite()) }),
            )
        }
        ("GET", ["evidence", file]) => evidence(ctx, file),
        ("POST", ["api", "streams", name, "threshold"]) => change(req, ctx, |c, by| {
            let i = stream(name)?;
            let v = body(req, "{\"value\": <number>, \"reason\": \"...\"}")?;
            let value = v["value"].as_f64().ok_or_else(|| api_error(400, "value: must be a number"))?;
            let (old, new) = c.set_threshold(i, value, by, v["reason"].as_str().unwrap_or(""))?;
            Ok(serde_json::json!({ "stream": name, "old": old, "new": new, "by": by }))
        }),
        ("DELETE", ["api", "streams", name, "threshold"]) => change(req, ctx, |c, by| {
            let (old, new) = c.revert_threshold(stream(name)?, by)?;
            Ok(serde_json::json!({ "stream": name, "old": old, "new": new, "by": by, "threshold_source": "model" }))
        }),
        ("POST", ["api", "events", id, "ack"]) => change(req, ctx, |c, by| {
            let (stream, raised_id) = c.acknowledge_event(id, by)?;
            Ok(
                serde_json::json!({ "event": id, "raised_id": raised_id, "stream": stream, "acknowledged": true, "by": by }),
            )
        }),
        ("POST" | "DELETE", ["api", "streams", name, "shelve"]) => shelve(req, ctx, name, Shelf::Shelved),
        ("POST" | "DELETE", ["api", "streams", name, "maintenance"]) => shelve(req, ctx, name, Shelf::Maintenance),
        ("POST" | "DELETE", ["api", "maintenance"]) => change(req, ctx, |c, by| {
            let shelf = (req.method == "POST").then(|| shelf_body(req)).transpose()?;
            let changed = c.every_stream(|i| {
                match &shelf {
                    Some((minutes, reason)) => c.shelve(i, Shelf::Maintenance, *minutes, reason, by).map(|_| ()),
                    None => c.unshelve(i, Shelf::Maintenance, by),
                }
                .map(|()| ctx.metrics.streams[i].name.clone())
            })?;
            Ok(serde_json::json!({ "maintenance": shelf.is_some(), "streams": changed, "by": by }))
        }),
        (_, ["api", ..]) | (_, ["evidence", ..]) => error(api_error(404, format!("no {} {}", req.method, req.path))),
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
