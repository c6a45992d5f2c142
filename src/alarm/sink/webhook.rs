//! `webhook` sink: HTTP(S) POST of the event JSON. With a secret (from an environment
//! variable or a file, never the config text) each request is signed the Standard Webhooks way
//! ([`crate::alarm::hmac`]): `webhook-id` (the event id, also `X-Mpdr-Event-Id`: the
//! idempotency key), `webhook-timestamp` (send time, Unix seconds) and `webhook-signature:
//! v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`; a retry is signed anew. 2xx = delivered; 4xx other than 408/429 = dead letter with the reason;
//! anything else (5xx, 408, 429, timeouts, connection errors) = retry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{check_secret, check_secret_keys, check_timeout, five, read_secret, BuildContext, Built, Common, SinkSpec};
use crate::alarm::hmac::webhook_signature;
use crate::alarm::{AlarmEvent, RetryPolicy, Sink, SinkError};
use crate::config::Problems;

/// `[[sink]] type = "webhook"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    #[serde(flatten)]
    pub common: Common,
    pub url: String,
    /// HMAC-SHA256 signing secret from this environment variable ...
    pub hmac_secret_env: Option<String>,
    /// ... or from this file (never in the config text).
    pub hmac_secret_file: Option<PathBuf>,
    #[serde(default = "five")]
    pub timeout_s: f64,
    #[serde(default)]
    pub retry: RetryPolicy,
}

impl SinkSpec for WebhookConfig {
    fn common(&self) -> &Common {
        &self.common
    }

    fn validate(&self, key: &str, p: &mut Problems) {
        let ok = self
            .url
            .strip_prefix("http://")
            .or_else(|| self.url.strip_prefix("https://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/') && !rest.contains(' '));
        if !ok {
            p.push(format!("{key}.url"), format!("expected an http:// or https:// URL, got \"{}\"", redact(&self.url)));
        }
        check_secret_keys(key, "hmac_secret", &self.hmac_secret_env, &self.hmac_secret_file, p);
        check_timeout(key, self.timeout_s, p);
        self.retry.validate(&format!("{key}.retry"), p);
    }

    fn check(&self, key: &str, p: &mut Problems, _ports: bool) {
        check_secret(key, "hmac_secret", &self.hmac_secret_env, &self.hmac_secret_file, p);
    }

    fn resolve_paths(&mut self, base: &Path) {
        if let Some(f) = &mut self.hmac_secret_file {
            crate::files::absolute_secret(f, base);
        }
    }

    fn build(&self, ctx: &BuildContext) -> Result<Built, String> {
        let secret = read_secret(self.hmac_secret_env.as_deref(), self.hmac_secret_file.as_deref())?;
        if secret.is_none() {
            tracing::warn!(sink = %ctx.name, "webhook without hmac_secret_env/hmac_secret_file: bodies are not signed");
        }
        let sink = WebhookSink::new(&self.url, Duration::from_secs_f64(self.timeout_s), secret);
        Ok(Built::Delivery { sink: Box::new(sink), retry: self.retry.clone() })
    }
}

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

/// `text` with the password of any `scheme://user:password@host` in it, and every value of
/// its query string (`?token=…&api_key=…`), replaced by `***`: a URL's credentials never
/// reach logs, metrics, the outbox's last-error or `mpdr alarms show`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c == '/' || c.is_whitespace()).unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        // The path and query, up to the end of the URL.
        let tail = &tail[end..];
        let mut url_end = tail.find(|c: char| c.is_whitespace() || c == '"' || c == '\'').unwrap_or(tail.len());
        // "<url>: <error>": the colon is the message's, not the URL's.
        if tail[..url_end].ends_with(':') {
            url_end -= 1;
        }
        let (url, after) = tail.split_at(url_end);
        match url.split_once('?') {
            Some((path, query)) => {
                out.push_str(path);
                out.push('?');
                let (query, fragment) = query.split_once('#').map_or((query, None), |(q, f)| (q, Some(f)));
                let masked: Vec<String> = query
                    .split('&')
                    .map(|kv| match kv.split_once('=') {
                        Some((k, _)) => format!("{k}=***"),
                        None => kv.to_string(),
                    })
                    .collect();
                out.push_str(&masked.join("&"));
                if let Some(f) = fragment {
                    out.push('#');
                    out.push_str(f);
                }
            }
            None => out.push_str(url),
        }
        rest = after;
    }
    out.push_str(rest);
    out
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
            .set("X-Mpdr-Event-Id", &ev.id)
            .set("webhook-id", &ev.id);
        if let Some(s) = &self.secret {
            let now = crate::metrics::unix_s();
            req = req
                .set("webhook-timestamp", &now.to_string())
                .set("webhook-signature", &webhook_signature(s, &ev.id, now, body.as_bytes()));
        }
        match req.send_string(&body) {
            Ok(resp) => classify(resp.status()),
            Err(ureq::Error::Status(code, _)) => classify(code),
            Err(ureq::Error::Transport(t)) => Err(SinkError::Retry(redact(&format!("{}: {t}", redact(&self.url))))),
        }
    }
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
    fn passwords_in_urls_are_redacted() {
        assert_eq!(redact("http://user:s3cret@host:8080/a"), "http://user:***@host:8080/a");
        assert_eq!(redact("https://host/a: error"), "https://host/a: error");
        assert_eq!(redact("x http://u:p@h/ y http://h:1/z"), "x http://u:***@h/ y http://h:1/z");
        // Tokens in a query string (issue 25): every value masked, keys kept.
        assert_eq!(
            redact("http://h/hook?token=abc123&api_key=k9: Connection refused"),
            "http://h/hook?token=***&api_key=***: Connection refused"
        );
        assert_eq!(redact("\"https://u:p@h:1/a?x=1#frag\" failed"), "\"https://u:***@h:1/a?x=***#frag\" failed");
        assert_eq!(redact("http://h/a?flag"), "http://h/a?flag");
    }
}
