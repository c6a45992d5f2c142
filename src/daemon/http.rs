//! `/metrics`, `/healthz` and `/readyz` on a small blocking HTTP server (tiny_http) with its
//! own thread. Health: the scorer went round its loop recently. Ready: models, sources and
//! sinks are up (the same moment systemd gets READY=1).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::error::{thread, DaemonError};
use crate::metrics::Metrics;

/// Seconds of scorer silence after which `/healthz` reports unhealthy.
pub const HEALTHY_WITHIN_S: f64 = 10.0;

pub struct HttpServer {
    pub addr: SocketAddr,
    handle: JoinHandle<()>,
}

impl HttpServer {
    pub fn start(listen: SocketAddr, metrics: Arc<Metrics>, stop: Arc<AtomicBool>) -> Result<Self, DaemonError> {
        let server = tiny_http::Server::http(listen)
            .map_err(|e| DaemonError::Http { addr: listen, message: format!("cannot listen: {e}") })?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| DaemonError::Http { addr: listen, message: "not an IP address".into() })?;
        let handle = std::thread::Builder::new()
            .name("mpdr-http".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match server.recv_timeout(Duration::from_millis(200)) {
                        Ok(Some(req)) => respond(req, &metrics),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "HTTP server failed");
                            break;
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

fn respond(req: tiny_http::Request, m: &Metrics) {
    let path = req.url().split('?').next().unwrap_or("").to_string();
    let (code, body, ctype) = match (req.method(), path.as_str()) {
        (tiny_http::Method::Get, "/metrics") => (200, m.render(), "text/plain; version=0.0.4"),
        (tiny_http::Method::Get, "/healthz") => {
            let silence = m.scorer_silence_s();
            if silence < HEALTHY_WITHIN_S {
                (200, "ok\n".to_string(), "text/plain")
            } else {
                (503, format!("scorer silent for {silence:.1} s\n"), "text/plain")
            }
        }
        (tiny_http::Method::Get, "/readyz") => {
            if m.ready.load(Ordering::Relaxed) {
                (200, "ready\n".to_string(), "text/plain")
            } else {
                (503, "starting\n".to_string(), "text/plain")
            }
        }
        (tiny_http::Method::Get, _) => (404, "not found: try /metrics, /healthz, /readyz\n".to_string(), "text/plain"),
        _ => (405, "only GET\n".to_string(), "text/plain"),
    };
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], ctype.as_bytes());
    let mut resp = tiny_http::Response::from_string(body).with_status_code(code);
    if let Ok(h) = header {
        resp = resp.with_header(h);
    }
    if let Err(e) = req.respond(resp) {
        tracing::debug!(error = %e, "HTTP client went away");
    }
}
