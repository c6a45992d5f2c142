//! `/metrics`, `/healthz` and `/readyz` on a small blocking HTTP/1.1 server: one thread per
//! connection, at most [`MAX_CONNECTIONS`] in all and [`MAX_PER_CLIENT`] from one address,
//! reads and writes under timeouts — so a client that pipelines requests and never reads the
//! answers, or holds idle connections, only ever blocks its own connections while health checks
//! from everyone else are answered. Health: the scorer went round its loop recently. Ready:
//! models, sources and sinks are up (the same moment systemd gets READY=1) and every stream's
//! model scores.

pub mod request;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::error::{thread, DaemonError};
use crate::metrics::Metrics;
use request::{Parsed, Request};

/// Seconds of scorer silence after which `/healthz` reports unhealthy.
pub const HEALTHY_WITHIN_S: f64 = 10.0;
/// Open connections at most; one more is answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 64;
/// Open connections from one client address at most.
pub const MAX_PER_CLIENT: usize = 16;
/// A connection silent this long (or a client not reading an answer) is closed.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests one connection may make before it is closed.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 1000;

pub struct HttpServer {
    pub addr: SocketAddr,
    handle: JoinHandle<()>,
}

/// Open connections per client address.
type Open = Arc<Mutex<HashMap<IpAddr, usize>>>;

impl HttpServer {
    pub fn start(listen: SocketAddr, metrics: Arc<Metrics>, stop: Arc<AtomicBool>) -> Result<Self, DaemonError> {
        let fail = |message: String| DaemonError::Http { addr: listen, message };
        let listener = TcpListener::bind(listen).map_err(|e| fail(format!("cannot listen: {e}")))?;
        let addr = listener.local_addr().map_err(|e| fail(e.to_string()))?;
        listener.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
        let open: Open = Arc::default();
        let handle = std::thread::Builder::new()
            .name("mpdr-http".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((sock, peer)) => admit(sock, peer.ip(), &open, &metrics, &stop),
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

/// Start a connection's thread, or answer 503 when the limits are reached.
fn admit(mut sock: TcpStream, ip: IpAddr, open: &Open, metrics: &Arc<Metrics>, stop: &Arc<AtomicBool>) {
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(IO_TIMEOUT));
    let _ = sock.set_write_timeout(Some(IO_TIMEOUT));
    let admitted = {
        let Ok(mut map) = open.lock() else { return };
        let total: usize = map.values().sum();
        let mine = map.entry(ip).or_insert(0);
        if total >= MAX_CONNECTIONS || *mine >= MAX_PER_CLIENT {
            false
        } else {
            *mine += 1;
            true
        }
    };
    if !admitted {
        let r = Response::text(503, "too many connections: try again\n");
        let _ = r.write(&mut sock, false);
        return;
    }
    let (open, metrics, stop) = (open.clone(), metrics.clone(), stop.clone());
    let spawned = std::thread::Builder::new().name("mpdr-http-conn".into()).spawn(move || {
        serve(sock, &metrics, &stop);
        if let Ok(mut map) = open.lock() {
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start an HTTP connection thread");
    }
}

/// Answer one connection's requests until it closes, errs, times out or the server stops.
fn serve(mut sock: TcpStream, m: &Metrics, stop: &AtomicBool) {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut served = 0;
    while !stop.load(Ordering::Relaxed) && served < MAX_REQUESTS_PER_CONNECTION {
        match request::parse(&buf) {
            Ok(Parsed::Complete(req, used)) => {
                buf.drain(..used);
                served += 1;
                let keep = req.keep_alive() && served < MAX_REQUESTS_PER_CONNECTION;
                if respond(&req, m).write(&mut sock, keep).is_err() || !keep {
                    return;
                }
            }
            Ok(Parsed::Incomplete) => match sock.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            Err(refused) => {
                let _ = Response::text(refused.status, &format!("{}\n", refused.reason)).write(&mut sock, false);
                return;
            }
        }
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
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// The answer to one request (pure: no I/O).
pub fn respond(req: &Request, m: &Metrics) -> Response {
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
            if !m.ready.load(Ordering::Relaxed) {
                Response::text(503, "starting\n")
            } else if !blind.is_empty() {
                Response::text(503, &format!("scoring fails for stream(s): {}\n", blind.join(", ")))
            } else {
                Response::text(200, "ready\n")
            }
        }
        ("GET", _) => Response::text(404, "not found: try /metrics, /healthz, /readyz\n"),
        _ => Response::text(405, "only GET\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let srv = HttpServer::start("127.0.0.1:0".parse().unwrap(), m.clone(), stop.clone()).unwrap();
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
        assert!(get(srv.addr, "/nope").starts_with("HTTP/1.1 404"));
        stop.store(true, Ordering::Relaxed);
        drop(greedy);
        srv.join();
    }
}
