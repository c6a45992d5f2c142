//! `webhook` sink: HTTP(S) POST of the event JSON. With a secret (from an environment
//! variable or a file, never the config text) the body is signed: header
//! `X-Mpdr-Signature: sha256=<hex HMAC-SHA256(secret, body)>`; `X-Mpdr-Event-Id` carries the
//! idempotency key. 2xx = delivered; 4xx other than 408/429 = dead letter with the reason;
//! anything else (5xx, 408, 429, timeouts, connection errors) = retry.

use std::time::Duration;

use super::hmac::{hex, hmac_sha256};
use super::{AlarmEvent, Sink, SinkError};

pub struct WebhookSink {
    url: String,
    agent: ureq::Agent,
    secret: Option<Vec<u8>>,
}

impl WebhookSink {
    pub fn new(url: &str, timeout: Duration, secret: Option<Vec<u8>>) -> Self {
        let agent = ureq::AgentBuilder::new().timeout(timeout).build();
        WebhookSink { url: url.to_string(), agent, secret }
    }
}

/// The signature header value for `body`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex(&hmac_sha256(secret, body)))
}

/// What an HTTP status means for the delivery.
pub fn classify(status: u16) -> Result<(), SinkError> {
    match status {
        200..=299 => Ok(()),
        408 | 429 => Err(SinkError::Retry(format!("HTTP {status}"))),
        400..=499 => Err(SinkError::Permanent(format!("HTTP {status}: the receiver refused the event"))),
        _ => Err(SinkError::Retry(format!("HTTP {status}"))),
    }
}

impl Sink for WebhookSink {
    fn deliver(&mut self, ev: &AlarmEvent) -> Result<(), SinkError> {
        let body = ev.to_json();
        let mut req = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json")
            .set("User-Agent", concat!("mpdr/", env!("CARGO_PKG_VERSION")))
            .set("X-Mpdr-Event-Id", &ev.id);
        if let Some(s) = &self.secret {
            req = req.set("X-Mpdr-Signature", &signature(s, body.as_bytes()));
        }
        match req.send_string(&body) {
            Ok(resp) => classify(resp.status()),
            Err(ureq::Error::Status(code, _)) => classify(code),
            Err(ureq::Error::Transport(t)) => Err(SinkError::Retry(format!("{}: {t}", self.url))),
        }
    }
}

/// Read a secret: the named environment variable, or a file's content (trailing newline cut).
pub fn read_secret(env: Option<&str>, file: Option<&std::path::Path>) -> Result<Option<Vec<u8>>, String> {
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(v.into_bytes())),
            _ => Err(format!("environment variable {var} is not set (or empty)")),
        };
    }
    if let Some(path) = file {
        let mut bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read the secret: {e}", path.display()))?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        if bytes.is_empty() {
            return Err(format!("{}: the secret file is empty", path.display()));
        }
        return Ok(Some(bytes));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_delivered_retry_or_dead() {
        assert_eq!(classify(204), Ok(()));
        assert!(matches!(classify(500), Err(SinkError::Retry(_))));
        assert!(matches!(classify(429), Err(SinkError::Retry(_))));
        assert!(matches!(classify(408), Err(SinkError::Retry(_))));
        assert!(matches!(classify(404), Err(SinkError::Permanent(_))));
        assert!(matches!(classify(301), Err(SinkError::Retry(_))));
    }

    #[test]
    fn secrets_come_from_files_without_the_newline() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        std::fs::write(&p, "k3y\n").unwrap();
        assert_eq!(read_secret(None, Some(&p)).unwrap(), Some(b"k3y".to_vec()));
        assert!(read_secret(Some("MPDR_TEST_SURELY_UNSET_VAR"), None)
            .unwrap_err()
            .contains("MPDR_TEST_SURELY_UNSET_VAR"));
        assert_eq!(signature(b"Jefe", b"what do ya want for nothing?").len(), 7 + 64);
    }
}
