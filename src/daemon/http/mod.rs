//! `/metrics`, `/healthz`, `/readyz`, the console and its API ([`api`]) on a small blocking
//! HTTP/1.1 server: one thread per
//! connection, at most [`MAX_CONNECTIONS`] in all (the longest-waiting evicted for a newcomer,
//! see [`crate::admission`]) and [`MAX_PER_CLIENT`] from one address, request heads under a deadline,
//! reads and writes under timeouts — so a client that pipelines requests and never reads the
//! answers, or holds idle connections, only ever blocks its own connections while health checks
//! from everyone else are answered. Health: the scorer went round its loop recently. Ready:
//! models, sources and sinks are up (the same moment systemd gets READY=1) and every stream's
//! model scores.

pub mod api;
pub mod request;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::error::{thread, DaemonError};
use crate::admission;

pub use api::Ctx;
use request::{Parsed, Request};

/// Seconds of scorer silence after which `/healthz` reports unhealthy.
pub const HEALTHY_WITHIN_S: f64 = 10.0;
/// Open connections at most; when full, the longest-waiting one is evicted for a newcomer
/// (or, with none waiting, the newcomer gets 503).
pub const MAX_CONNECTIONS: usize = 64;
/// Open connections from one client address at most.
pub const MAX_PER_CLIENT: usize = 16;
/// Connections kept beyond [`MAX_CONNECTIONS`] (one per address) for `/healthz`, `/readyz`
/// and `/metrics` when every other one is busy: one request each, whole within 1 s.
pub const RESERVED: usize = 8;
/// A connection silent this long (or a client not reading an answer) is closed.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests one connection may make before it is closed.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 1000;
/// Live feeds (`/api/live`) held open at once: a console each; more would starve the rest.
pub const MAX_LIVE: usize = 16;

pub struct HttpServer {
    pub addr: SocketAddr,
    handle: JoinHandle<()>,
}

impl HttpServer {
    pub fn start(listen: SocketAddr, ctx: Ctx, stop: Arc<AtomicBool>) -> Result<Self, DaemonError> {
        let ctx = Arc::new(ctx);
        let fail = |message: String| DaemonError::Http { addr: listen, message };
        let listener = TcpListener::bind(listen).map_err(|e| fail(format!("cannot listen: {e}")))?;
        let addr = listener.local_addr().map_err(|e| fail(e.to_string()))?;
        listener.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
        let open = admission::table(MAX_CONNECTIONS, MAX_PER_CLIENT, RESERVED);
        let handle = std::thread::Builder::new()
            .name("mpdr-http".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((sock, peer)) => admit(sock, peer.ip(), &open, &ctx, &stop),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "HTTP accept failed");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })
            .map_err(thread("HTTP"))?;
        Ok(HttpServer { addr, handle })
    }

    pub fn join(self) {
        let _ = self.handle.join();
    }
}

/// Start a connection's thread, or answer 503 when the limits are reached (see [`crate::admission`]).
fn admit(mut sock: TcpStream, ip: IpAddr, open: &admission::Open, ctx: &Arc<Ctx>, stop: &Arc<AtomicBool>) {
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(IO_TIMEOUT));
    let _ = sock.set_write_timeout(Some(IO_TIMEOUT));
    let conn = match admission::admit(open, ip, &sock) {
        Ok(c) => c,
        Err(why) => {
            let text = match why {
                admission::Refused::PerClient => "too many connections from your address: try again\n",
                admission::Refused::Full => "too many connections: try again\n",
            };
            let _ = Response::text(503, text).write(&mut sock, false);
            return;
        }
    };
    let (open, ctx, stop) = (open.clone(), ctx.clone(), stop.clone());
    let spawned = std::thread::Builder::new().name("mpdr-http-conn".into()).spawn(move || {
        let head = if conn.reserve { Duration::from_secs(1) } else { IO_TIMEOUT };
        serve_with(sock, &ctx, &stop, head, &conn);
        admission::release(&open, &conn);
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start an HTTP connection thread");
    }
}

/// [`serve`], where each request must arrive whole within `head_timeout` of its first byte (or
/// of the previous answer): a client trickling a byte at a time is cut off (408), however
/// often it sends, so slow clients cannot hold the connection slots.
fn serve_with(mut sock: TcpStream, ctx: &Ctx, stop: &AtomicBool, head_timeout: Duration, conn: &admission::Conn) {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut served = 0;
    let mut since = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) && served < MAX_REQUESTS_PER_CONNECTION {
        match request::parse(&buf) {
            Ok(Parsed::Complete(req, used)) => {
                buf.drain(..used);
                conn.waiting(false);
                if conn.reserve {
                    // The room kept for health checks serves nothing else, once.
                    let health =
                        req.method == "GET" && ["/healthz", "/readyz", "/metrics"].contains(&req.path.as_str());
                    let r = if health { respond(&req, ctx) } else { Response::text(503, "busy: try again\n") };
                    let _ = r.write(&mut sock, false);
                    return;
                }
                served += 1;
                since = std::time::Instant::now();
                if req.method == "GET" && req.path == "/api/live" {
                    let Some(_feed) = LiveSlot::take() else {
                        let r = Response::text(503, &format!("at most {MAX_LIVE} live feeds at once\n"));
                        let _ = r.write(&mut sock, false);
                        return;
                    };
                    return live(sock, ctx, stop);
                }
                let keep = req.keep_alive() && served < MAX_REQUESTS_PER_CONNECTION;
                if respond(&req, ctx).write(&mut sock, keep).is_err() || !keep {
                    return;
                }
                conn.waiting(true);
            }
            Ok(Parsed::Incomplete) => {
                let left = head_timeout.saturating_sub(since.elapsed());
                if left.is_zero() {
                    if !buf.is_empty() {
                        let _ = Response::text(408, "the request took too long to arrive\n").write(&mut sock, false);
                    }
                    return;
                }
                let _ = sock.set_read_timeout(Some(left));
                match sock.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            Err(refused) => {
                let _ = Response::text(refused.status, &format!("{}\n", refused.reason)).write(&mut sock, false);
                return;
            }
        }
    }
}

/// One of the [`MAX_LIVE`] live-feed slots, given back when dropped.
struct LiveSlot;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl LiveSlot {
    fn take() -> Option<LiveSlot> {
        LIVE.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < MAX_LIVE).then_some(n + 1))
            .ok()
            .map(|_| LiveSlot)
    }
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Server-Sent Events until the client goes or the server stops: the streams every second,
/// and each new event as it is recorded.
fn live(mut sock: TcpStream, ctx: &Ctx, stop: &AtomicBool) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: keep-alive\r\n\r\n";
    if sock.write_all(head.as_bytes()).is_err() {
        return;
    }
    // Events recorded from now on (the page loads the earlier ones from /api/events).
    let mut seen = ctx.metrics.recent_events.lock().map(|r| r.0).unwrap_or(0);
    let mut last_streams = std::time::Instant::now() - Duration::from_secs(10);
    while !stop.load(Ordering::Relaxed) {
        let mut out = String::new();
        if let Ok(r) = ctx.metrics.recent_events.lock() {
            let new = (r.0 - seen).min(r.1.len() as u64) as usize;
            for e in r.1.iter().skip(r.1.len() - new) {
                out.push_str(&format!("event: event\ndata: {e}\n\n"));
            }
            seen = r.0;
        }
        if last_streams.elapsed() >= Duration::from_secs(1) {
            out.push_str(&format!("event: streams\ndata: {}\n\n", api::streams(ctx)));
            last_streams = std::time::Instant::now();
        }
        if !out.is_empty() && (sock.write_all(out.as_bytes()).is_err() || sock.flush().is_err()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An answer: status, content type, body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: &str) -> Self {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.as_bytes().to_vec() }
    }

    fn write(&self, w: &mut impl Write, keep_alive: bool) -> std::io::Result<()> {
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\nCache-Control: no-store\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        w.write_all(head.as_bytes())?;
        w.write_all(&self.body)?;
        w.flush()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        409 => "Conflict",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// The answer to one request (no I/O but an evidence file's read).
pub fn respond(req: &Request, ctx: &Ctx) -> Response {
    if let Some(r) = api::route(req, ctx) {
        return r;
    }
    let m = &ctx.metrics;
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/metrics") => {
            Response { status: 200, content_type: "text/plain; version=0.0.4", body: m.render().into_bytes() }
        }
        ("GET", "/healthz") => {
            let silence = m.scorer_silence_s();
            if silence < HEALTHY_WITHIN_S {
                Response::text(200, "ok\n")
            } else {
                Response::text(503, &format!("scorer silent for {silence:.1} s\n"))
            }
        }
        ("GET", "/readyz") => {
            let blind: Vec<&str> =
                m.streams.iter().filter(|s| !s.scoring_up.load(Ordering::Relaxed)).map(|s| s.name.as_str()).collect();
            let after = api::degraded_after_s(ctx);
            let now = crate::alarm::deliver::now_ms();
            let failing: Vec<String> = (m.sinks.lock().map(|v| v.clone()).unwrap_or_default().iter())
                .filter_map(|s| {
                    let for_s = s.failing_for_s(now)?;
                    (for_s >= after).then(|| {
                        format!("{} failing for {for_s:.0} s ({})", s.name, s.last_error().unwrap_or_default())
                    })
                })
                .collect();
            if !m.ready.load(Ordering::Relaxed) {
                Response::text(503, "starting\n")
            } else if m.streams.is_empty() {
                Response::text(
                    503,
                    "no [[stream]] configured: nothing is monitored (add one to the config, then reload)\n",
                )
            } else if !blind.is_empty() {
                Response::text(503, &format!("scoring fails for stream(s): {}\n", blind.join(", ")))
            } else if m.outbox_failing.load(Ordering::Relaxed) {
                let why = m.outbox_last_error.lock().ok().and_then(|e| e.clone()).unwrap_or_default();
                Response::text(
                    503,
                    &format!(
                        "outbox: {} event(s) held in memory, not committed (a full or failing disk?): {why}\n",
                        m.events_held.load(Ordering::Relaxed)
                    ),
                )
            } else if !failing.is_empty() {
                Response::text(503, &format!("degraded: sink {}\n", failing.join("; sink ")))
            } else {
                Response::text(200, "ready\n")
            }
        }
        ("GET", _) => Response::text(404, "not found: try /, /metrics, /healthz, /readyz, /api/streams\n"),
        _ => Response::text(405, "only GET here (changes: POST/DELETE under /api/, see the README)\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn health_is_answered_while_another_client_pipelines_without_reading() {
        let m = Arc::new(Metrics::new(vec![crate::metrics::StreamMetrics::new("a", "m")], vec![]));
        m.ready.store(true, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Ctx { metrics: m.clone(), console: None };
        let srv = HttpServer::start("127.0.0.1:0".parse().unwrap(), ctx, stop.clone()).unwrap();
        // A greedy client: thousands of pipelined /metrics, never reading an answer.
        let mut greedy = TcpStream::connect(srv.addr).unwrap();
        greedy.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let one = b"GET /metrics HTTP/1.1\r\n\r\n".repeat(3000);
        let _ = greedy.write_all(&one);
        assert!(get(srv.addr, "/healthz").starts_with("HTTP/1.1 200"));
        assert!(get(srv.addr, "/readyz").ends_with("ready\n"));
        m.streams[0].scoring_up.store(false, Ordering::Relaxed);
        let r = get(srv.addr, "/readyz");
        assert!(r.starts_with("HTTP/1.1 503") && r.contains("stream(s): a"), "{r}");
        m.streams[0].scoring_up.store(true, Ordering::Relaxed);
        m.outbox_failing.store(true, Ordering::Relaxed);
        let r = get(srv.addr, "/readyz");
        assert!(
            r.starts_with("HTTP/1.1 503") && r.contains("outbox"),
            "not ready while events cannot be committed: {r}"
        );
        assert!(get(srv.addr, "/nope").starts_with("HTTP/1.1 404"));
        stop.store(true, Ordering::Relaxed);
        drop(greedy);
        srv.join();
    }

    #[test]
    fn a_client_trickling_its_request_is_cut_off_at_the_head_deadline() {
        let m = Arc::new(Metrics::new(vec![], vec![]));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let ctx = Ctx { metrics: m, console: None };
            serve_with(sock, &ctx, &AtomicBool::new(false), Duration::from_millis(600), &admission::Conn::detached());
        });
        let mut c = TcpStream::connect(addr).unwrap();
        // One byte every 100 ms: each read is quick, the request never completes.
        let mut cut = false;
        for b in b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if c.write_all(&[*b]).is_err() {
                cut = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        server.join().unwrap();
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer);
        assert!(cut || answer.starts_with("HTTP/1.1 408"), "{answer:?}");
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    }

    #[test]
    fn live_feeds_are_capped() {
        let slots: Vec<LiveSlot> = std::iter::from_fn(LiveSlot::take).take(MAX_LIVE + 5).collect();
        assert_eq!(slots.len(), MAX_LIVE);
        assert!(LiveSlot::take().is_none());
        drop(slots);
        assert!(LiveSlot::take().is_some());
    }
}
