//! The sink seam: where events go. Each kind of sink is one file here — its configuration
//! (`[[sink]]`, tagged by `type`), its checks and its factory ([`SinkSpec`]) — plus one line
//! in the `sinks!` list below. Two kinds of sink exist:
//!
//! - **delivery sinks** (log, webhook, mqtt, exec, file) get every event of the streams they
//!   want from the durable outbox, through their own worker (`alarm::deliver`), with retries;
//! - **status servers** (modbus) publish the live state of every stream to whoever polls
//!   them; they are built once at start (a reload cannot rebind their port) and read the
//!   daemon's [`Metrics`].

pub mod exec;
pub mod file;
pub mod log;
pub mod modbus;
pub mod mqtt;
pub mod mqtt_command;
pub mod telemetry;
pub mod webhook;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::deliver::RetryPolicy;
use super::Sink;
use crate::config::Problems;
use crate::metrics::Metrics;

/// Keys every sink has: `name` (default: the type, numbered when repeated) keys its delivery
/// records; `streams` limits it to some streams (empty = all).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Common {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub streams: Vec<String>,
}

/// What building a sink gives.
pub enum Built {
    /// Fed from the outbox by a delivery worker with this retry policy.
    Delivery { sink: Box<dyn Sink>, retry: RetryPolicy },
    /// A status server, running until dropped.
    Server(Box<dyn Send>),
}

/// What a sink's factory may use.
pub struct BuildContext<'a> {
    /// The sink's delivery name.
    pub name: &'a str,
    pub metrics: &'a Arc<Metrics>,
}

/// One kind of sink: its checks and its factory. Only `build` opens sockets, starts threads
/// or reads secrets for use; `validate` is pure; `check` looks at the environment.
pub trait SinkSpec {
    fn common(&self) -> &Common;
    /// Every problem that needs no disk, network or environment, keys under `key`.
    fn validate(&self, key: &str, p: &mut Problems);
    /// Problems outside the file: secrets (environment, files), programs, and — when `ports`
    /// — whether an address can be bound (not on reload: the daemon holds it).
    fn check(&self, _key: &str, _p: &mut Problems, _ports: bool) {}
    /// What is allowed but worth a look (e.g. listening beyond this host): warnings.
    fn warnings(&self, _key: &str, _w: &mut Problems) {}
    /// Make relative paths absolute against `base` (the config file's folder).
    fn resolve_paths(&mut self, _base: &Path) {}
    /// Whether an unchanged sink keeps running across a reload (a broker session) rather than
    /// being rebuilt (which re-reads its secrets).
    fn keeps_session(&self) -> bool {
        false
    }
    /// A status server (built once at start) rather than a delivery sink.
    fn is_server(&self) -> bool {
        false
    }
    /// What only one sink may hold — a file it appends to (`file:<path>`), an address it
    /// listens on (`tcp:<addr>`) — so two sinks (or a sink and the HTTP server) cannot share it.
    fn exclusive(&self) -> Option<String> {
        None
    }
    /// The factory. An error is one line (the caller prefixes the sink's name).
    fn build(&self, ctx: &BuildContext) -> Result<Built, String>;
}

/// The sink kinds: `Variant("type", config type)`. A new sink is a file of this folder and one
/// line here.
macro_rules! sinks {
    ($($(#[$doc:meta])* $variant:ident($kind:literal, $cfg:ty)),* $(,)?) => {
        /// `[[sink]]`, tagged by `type`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", rename_all = "kebab-case")]
        // Sized by its largest kind (mqtt); a config is read once, so no boxing.
        #[allow(clippy::large_enum_variant)]
        pub enum SinkConfig {
            $($(#[$doc])* $variant($cfg)),*
        }

        impl SinkConfig {
            /// The `type` key.
            pub fn kind(&self) -> &'static str {
                match self { $(SinkConfig::$variant(_) => $kind),* }
            }
            pub fn spec(&self) -> &dyn SinkSpec {
                match self { $(SinkConfig::$variant(c) => c),* }
            }
            pub fn spec_mut(&mut self) -> &mut dyn SinkSpec {
                match self { $(SinkConfig::$variant(c) => c),* }
            }
        }
    };
}

sinks! {
    /// One structured log line per event.
    Log("log", log::LogConfig),
    /// HTTP(S) POST of the event JSON, optionally HMAC-signed.
    Webhook("webhook", webhook::WebhookConfig),
    /// MQTT publish (QoS 1) plus retained per-stream state and online/offline status.
    Mqtt("mqtt", mqtt::MqttConfig),
    /// A Modbus TCP server with the register map in the README (a status server).
    Modbus("modbus", modbus::ModbusConfig),
    /// A program run per event, the event JSON on stdin.
    Exec("exec", exec::ExecConfig),
    /// An append-only JSON-lines file: a local audit log of every event.
    File("file", file::FileSinkConfig),
}

impl SinkConfig {
    pub fn streams(&self) -> &[String] {
        &self.spec().common().streams
    }
}

/// A sink that passed validation, with its delivery name.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedSink {
    pub name: String,
    pub config: SinkConfig,
}

/// The sinks' delivery names: the given one, else the type (numbered when repeated).
pub fn names(sinks: &[SinkConfig]) -> Vec<String> {
    let mut seen = BTreeMap::<&str, usize>::new();
    for s in sinks {
        *seen.entry(s.kind()).or_default() += 1;
    }
    let mut k = BTreeMap::<&str, usize>::new();
    sinks
        .iter()
        .map(|s| match &s.spec().common().name {
            Some(n) => n.clone(),
            None if seen[s.kind()] == 1 => s.kind().to_string(),
            None => {
                let i = k.entry(s.kind()).or_default();
                *i += 1;
                format!("{}-{i}", s.kind())
            }
        })
        .collect()
}

/// Every problem of `sinks` (keys `sink[i]...`) without touching the environment; `streams`
/// are the stream names a sink may ask for.
pub fn validate(sinks: &[SinkConfig], streams: &[&str], p: &mut Problems) {
    let names = names(sinks);
    for (i, s) in sinks.iter().enumerate() {
        let key = format!("sink[{i}]");
        if names[..i].contains(&names[i]) {
            p.push(format!("{key}.name"), format!("\"{}\" is used by another sink", names[i]));
        }
        for name in s.streams() {
            if !streams.contains(&name.as_str()) {
                p.push(format!("{key}.streams"), format!("no stream is named \"{name}\""));
            }
        }
        s.spec().validate(&key, p);
        if let Some(r) = s.spec().exclusive() {
            if sinks[..i].iter().any(|o| o.spec().exclusive().as_ref() == Some(&r)) {
                p.push(key.clone(), format!("{r} is used by another sink"));
            }
        }
    }
}

/// The problems [`SinkSpec::check`] finds, for every sink.
pub fn check(sinks: &[SinkConfig], p: &mut Problems, ports: bool) {
    for (i, s) in sinks.iter().enumerate() {
        s.spec().check(&format!("sink[{i}]"), p, ports);
    }
}

/// `timeout_s` must be a positive number.
pub(crate) fn check_timeout(key: &str, t: f64, p: &mut Problems) {
    if !(t.is_finite() && t > 0.0 && t <= 3600.0) {
        p.push(format!("{key}.timeout_s"), format!("must be > 0 and at most 3600 s, got {t}"));
    }
}

/// A secret given by environment variable or by file, never both; `what` names the keys
/// (`hmac_secret` -> `hmac_secret_env` / `hmac_secret_file`).
pub fn check_secret_keys(key: &str, what: &str, env: &Option<String>, file: &Option<PathBuf>, p: &mut Problems) {
    if env.is_some() && file.is_some() {
        p.push(format!("{key}.{what}_env"), format!("give {what}_env or {what}_file, not both"));
    }
}

/// The secret can be read (check step).
pub fn check_secret(key: &str, what: &str, env: &Option<String>, file: &Option<PathBuf>, p: &mut Problems) {
    if let Err(e) = read_secret(env.as_deref(), file.as_deref()) {
        let k = if env.is_some() { "env" } else { "file" };
        p.push(format!("{key}.{what}_{k}"), e);
    }
}

/// Read a secret: the named environment variable, or a file's content (trailing newline cut).
pub fn read_secret(env: Option<&str>, file: Option<&Path>) -> Result<Option<Vec<u8>>, String> {
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(v.into_bytes())),
            _ => Err(format!("environment variable {var} is not set (or empty)")),
        };
    }
    if let Some(path) = file {
        let path = &crate::files::secret_path(path)?;
        // A regular file of reasonable size: `/dev/zero` must not be read until memory runs out.
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: cannot read the secret: {e}", path.display()))?;
        if !meta.is_file() || meta.len() > 65_536 {
            return Err(format!("{}: a secret file must be a regular file of at most 64 KiB", path.display()));
        }
        let mut bytes =
            crate::files::read_regular(path).map_err(|e| format!("{}: cannot read the secret: {e}", path.display()))?;
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

fn five() -> f64 {
    5.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct W {
        #[serde(rename = "sink")]
        sinks: Vec<SinkConfig>,
    }

    #[test]
    fn names_default_to_the_type_numbered_when_repeated() {
        let w: W = crate::config::parse_toml(
            "[[sink]]\ntype = \"log\"\n[[sink]]\ntype = \"exec\"\ncommand = [\"true\"]\n[[sink]]\ntype = \"exec\"\ncommand = [\"true\"]\nname = \"pager\"\n[[sink]]\ntype = \"exec\"\ncommand = [\"true\"]\n",
        )
        .unwrap();
        assert_eq!(names(&w.sinks), ["log", "exec-1", "pager", "exec-2"]);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_position() {
        let e = crate::config::parse_toml::<W>("[[sink]]\ntype = \"webhook\"\nurl = \"http://x\"\nretries = 3\n")
            .unwrap_err();
        assert!(e.starts_with("line ") && e.contains("retries"), "{e}");
        let e = crate::config::parse_toml::<W>("[[sink]]\ntype = \"pager\"\n").unwrap_err();
        assert!(e.contains("pager"), "{e}");
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
        assert!(read_secret(None, Some(Path::new("/dev/zero"))).unwrap_err().contains("regular file"));
    }
}
