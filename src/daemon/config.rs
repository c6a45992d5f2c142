//! The monitor's configuration (`config/monitor.example.toml`): raw serde types, a pure
//! `validate()` that reports every problem with its key path, and `check_files()`, the step
//! that looks at the disk (model bundles, WAV headers). Relative paths resolve against the
//! config file's folder, so the same file works from any directory and under systemd.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::alarm::deliver::RetryPolicy;
use crate::audio::ChannelSelect;
use crate::config::Problems;
use crate::detect::DetectConfig;
use crate::device::DeviceChoice;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    pub server: ServerConfig,
    pub scoring: ScoringConfig,
    pub pipeline: PipelineConfig,
    pub state: StateConfig,
    #[serde(rename = "stream")]
    pub streams: Vec<StreamConfig>,
    #[serde(rename = "sink")]
    pub sinks: Vec<SinkConfig>,
}

/// `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; `""` turns the HTTP server off. Port 0 picks a free port (logged).
    pub listen: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { listen: "127.0.0.1:9464".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringConfig {
    pub device: DeviceChoice,
    /// Most vectors scored in one batch (all streams of one model together).
    pub max_batch: usize,
    /// Longest a vector waits for its batch to fill.
    pub max_wait_ms: u64,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig { device: DeviceChoice::Auto, max_batch: 4096, max_wait_ms: 20 }
    }
}

/// Queue sizes of the pipeline's bounded channels (see `daemon` for the overflow policies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Per device stream: audio blocks between the capture callback and the stream thread.
    pub audio_queue_blocks: usize,
    /// All streams: feature messages (one per audio block) waiting for the scorer.
    pub vector_queue: usize,
    /// Longest wait before a failed source is retried (backoff doubles from 0.5 s up to this).
    pub retry_max_s: f64,
    /// Seconds SIGTERM waits for the pipeline to drain before giving up on it.
    pub shutdown_timeout_s: f64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig { audio_queue_blocks: 64, vector_queue: 4096, retry_max_s: 30.0, shutdown_timeout_s: 10.0 }
    }
}

/// The durable outbox (`[state]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Folder of the outbox database. Default: `$STATE_DIRECTORY` (set by systemd's
    /// `StateDirectory=`), else `state` next to the config file.
    pub dir: Option<PathBuf>,
    /// Events kept on disk; the oldest delivered ones are pruned first, pending ones never.
    pub max_events: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig { dir: None, max_events: 100_000 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub name: String,
    /// Model bundle folder.
    pub model: PathBuf,
    pub source: SourceConfig,
    #[serde(default)]
    pub detect: DetectConfig,
}

/// Where a stream's audio comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceConfig {
    /// A sound card input through cpal (ALSA on Linux).
    Device {
        /// Device name as `mpdr devices` lists it, `"default"`, or its index in that list.
        #[serde(default = "default_device")]
        device: String,
        /// `"mix"` or a 0-based channel of the device.
        #[serde(default)]
        channel: ChannelSelect,
        /// Samples per callback block asked of the device (0 = the device's choice).
        #[serde(default)]
        block: u32,
    },
    /// Replay of a WAV file or of every WAV in a folder (sorted by name).
    File {
        path: PathBuf,
        /// Paced like a live source (`speed` x real time); false = as fast as the pipeline goes.
        #[serde(default = "yes")]
        realtime: bool,
        #[serde(default = "one")]
        speed: f64,
        #[serde(default, rename = "loop")]
        looped: bool,
        #[serde(default)]
        channel: ChannelSelect,
        /// Resample files whose rate is not the model's.
        #[serde(default)]
        resample: bool,
    },
    /// A machine of the synthetic plant (16 kHz; see `mpdr synth --help`).
    Synth {
        machine: crate::audio::synth::Machine,
        #[serde(default)]
        seed: u64,
        /// Which machine of its type (`mpdr synth dataset --seed S` makes id k from S*1000+k).
        #[serde(default)]
        instance: u64,
        fault: Option<crate::audio::synth::Fault>,
        /// Stream seconds before the fault starts; it reaches full severity `ramp_s` later.
        #[serde(default)]
        fault_at_s: f64,
        #[serde(default = "thirty")]
        ramp_s: f64,
        #[serde(default = "one")]
        severity: f64,
        #[serde(default = "six")]
        snr_db: f64,
        #[serde(default = "yes")]
        realtime: bool,
        #[serde(default = "one")]
        speed: f64,
    },
}

fn default_device() -> String {
    "default".into()
}
fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}
fn six() -> f64 {
    6.0
}
fn thirty() -> f64 {
    30.0
}

/// Where events go (`[[sink]]`, tagged by `type`). Every sink but `modbus` is fed from the
/// durable outbox by its own worker; `name` (default: the type, numbered when repeated) keys
/// its delivery records; `streams` limits it to some streams (empty = all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SinkConfig {
    Log {
        name: Option<String>,
        #[serde(default)]
        streams: Vec<String>,
    },
    Webhook {
        name: Option<String>,
        #[serde(default)]
        streams: Vec<String>,
        url: String,
        /// HMAC-SHA256 signing secret from this environment variable ...
        hmac_secret_env: Option<String>,
        /// ... or from this file (never in the config text).
        hmac_secret_file: Option<PathBuf>,
        #[serde(default = "five")]
        timeout_s: f64,
        #[serde(default)]
        retry: RetryPolicy,
    },
    Mqtt {
        name: Option<String>,
        #[serde(default)]
        streams: Vec<String>,
        host: String,
        #[serde(default = "mqtt_port")]
        port: u16,
        #[serde(default = "client_id")]
        client_id: String,
        /// `{stream}` and `{kind}` are filled in.
        #[serde(default = "event_topic")]
        topic: String,
        /// Retained per-stream state (alarm / normal / down / up).
        #[serde(default = "state_topic")]
        state_topic: String,
        /// Retained `online`; the Last Will sets `offline`.
        #[serde(default = "status_topic")]
        status_topic: String,
        username: Option<String>,
        password_env: Option<String>,
        password_file: Option<PathBuf>,
        #[serde(default)]
        tls: bool,
        /// CA certificate (PEM) for TLS.
        ca_file: Option<PathBuf>,
        #[serde(default = "five")]
        timeout_s: f64,
        #[serde(default)]
        retry: RetryPolicy,
    },
    /// A Modbus TCP server with the register map in the README (not fed from the outbox).
    Modbus {
        name: Option<String>,
        #[serde(default = "modbus_listen")]
        listen: String,
    },
    Exec {
        name: Option<String>,
        #[serde(default)]
        streams: Vec<String>,
        /// Program and arguments; the event JSON arrives on stdin.
        command: Vec<String>,
        #[serde(default = "ten")]
        timeout_s: f64,
        #[serde(default)]
        retry: RetryPolicy,
    },
}

fn five() -> f64 {
    5.0
}
fn ten() -> f64 {
    10.0
}
fn mqtt_port() -> u16 {
    1883
}
fn client_id() -> String {
    format!("mpdr-{}", std::process::id())
}
fn event_topic() -> String {
    "mpdr/{stream}/event".into()
}
fn state_topic() -> String {
    "mpdr/{stream}/state".into()
}
fn status_topic() -> String {
    "mpdr/status".into()
}
fn modbus_listen() -> String {
    "127.0.0.1:1502".into()
}

impl SinkConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Log { .. } => "log",
            SinkConfig::Webhook { .. } => "webhook",
            SinkConfig::Mqtt { .. } => "mqtt",
            SinkConfig::Modbus { .. } => "modbus",
            SinkConfig::Exec { .. } => "exec",
        }
    }
    fn given_name(&self) -> Option<&String> {
        match self {
            SinkConfig::Log { name, .. }
            | SinkConfig::Webhook { name, .. }
            | SinkConfig::Mqtt { name, .. }
            | SinkConfig::Modbus { name, .. }
            | SinkConfig::Exec { name, .. } => name.as_ref(),
        }
    }
    pub fn streams(&self) -> &[String] {
        match self {
            SinkConfig::Log { streams, .. }
            | SinkConfig::Webhook { streams, .. }
            | SinkConfig::Mqtt { streams, .. }
            | SinkConfig::Exec { streams, .. } => streams,
            SinkConfig::Modbus { .. } => &[],
        }
    }
}

impl MonitorConfig {
    /// Parse TOML text; errors are one line with the line number.
    pub fn parse(text: &str) -> Result<Self, String> {
        crate::config::parse_toml(text)
    }

    /// Read and parse `path`, make its relative paths absolute against its folder, and
    /// validate; every problem is reported, prefixed with the file.
    pub fn load(path: &Path, ports: bool) -> anyhow::Result<Self> {
        let (cfg, p) = Self::read(path, ports)?;
        if !p.is_empty() {
            anyhow::bail!("{}: {} problem(s): {p}", path.display(), p.0.len());
        }
        Ok(cfg)
    }

    /// Read and parse `path` (an error only when it cannot be parsed), resolve its paths and
    /// collect every validation and file problem.
    /// `ports`: also check that listening addresses are free (not on reload).
    pub fn read(path: &Path, ports: bool) -> anyhow::Result<(Self, Problems)> {
        let text =
            std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
        let mut cfg = Self::parse(&text).map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))?;
        cfg.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        let mut p = cfg.validate();
        cfg.check_files(&mut p);
        cfg.check_sinks(&mut p, ports);
        Ok((cfg, p))
    }

    pub fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(d) = &mut self.state.dir {
            abs(d);
        }
        for sink in &mut self.sinks {
            match sink {
                SinkConfig::Webhook { hmac_secret_file: Some(f), .. } => abs(f),
                SinkConfig::Mqtt { password_file, ca_file, .. } => {
                    for f in [password_file, ca_file].into_iter().flatten() {
                        abs(f);
                    }
                }
                _ => {}
            }
        }
        for s in &mut self.streams {
            abs(&mut s.model);
            if let SourceConfig::File { path, .. } = &mut s.source {
                abs(path);
            }
        }
    }

    /// The sinks' delivery names: the given one, else the type (numbered when repeated).
    pub fn sink_names(&self) -> Vec<String> {
        let mut seen = std::collections::BTreeMap::<&str, usize>::new();
        for s in &self.sinks {
            *seen.entry(s.kind()).or_default() += 1;
        }
        let mut k = std::collections::BTreeMap::<&str, usize>::new();
        self.sinks
            .iter()
            .map(|s| match s.given_name() {
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

    /// The outbox folder: `[state] dir`, else `$STATE_DIRECTORY`, else `<config dir>/state`.
    pub fn state_dir(&self, config_dir: &Path) -> PathBuf {
        match &self.state.dir {
            Some(d) => d.clone(),
            None => match std::env::var_os("STATE_DIRECTORY") {
                // systemd passes a colon-separated list when several are configured.
                Some(d) => PathBuf::from(d.to_string_lossy().split(':').next().unwrap_or_default()),
                None => config_dir.join("state"),
            },
        }
    }

    /// Every problem that needs no disk access.
    pub fn validate(&self) -> Problems {
        let mut p = Problems::default();
        if !self.server.listen.is_empty() && self.server.listen.parse::<SocketAddr>().is_err() {
            p.push("server.listen", format!("expected host:port like 127.0.0.1:9464, got \"{}\"", self.server.listen));
        }
        if self.scoring.max_batch == 0 {
            p.push("scoring.max_batch", "must be >= 1");
        }
        let pl = &self.pipeline;
        if pl.audio_queue_blocks == 0 {
            p.push("pipeline.audio_queue_blocks", "must be >= 1");
        }
        if pl.vector_queue == 0 {
            p.push("pipeline.vector_queue", "must be >= 1");
        }
        for (k, v) in [("retry_max_s", pl.retry_max_s), ("shutdown_timeout_s", pl.shutdown_timeout_s)] {
            if !(v.is_finite() && v > 0.0) {
                p.push(format!("pipeline.{k}"), format!("must be > 0, got {v}"));
            }
        }
        if self.streams.is_empty() {
            p.push("stream", "no [[stream]] configured: nothing to monitor");
        }
        let mut names = BTreeSet::new();
        for (i, s) in self.streams.iter().enumerate() {
            let key = format!("stream[{i}]");
            if s.name.trim().is_empty() {
                p.push(format!("{key}.name"), "must not be empty");
            } else if !s.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                p.push(format!("{key}.name"), format!("use letters, digits, '-', '_' or '.', got \"{}\"", s.name));
            } else if !names.insert(s.name.as_str()) {
                p.push(format!("{key}.name"), format!("\"{}\" is used by another stream", s.name));
            }
            s.detect.validate(&format!("{key}.detect"), &mut p);
            if let SourceConfig::File { speed, .. } | SourceConfig::Synth { speed, .. } = &s.source {
                if !(speed.is_finite() && *speed > 0.0) {
                    p.push(format!("{key}.source.speed"), format!("must be > 0, got {speed}"));
                }
            }
            if let SourceConfig::Synth { fault_at_s, ramp_s, severity, snr_db, .. } = &s.source {
                for (k, v) in [("fault_at_s", fault_at_s), ("ramp_s", ramp_s), ("severity", severity)] {
                    if !(v.is_finite() && *v >= 0.0) {
                        p.push(format!("{key}.source.{k}"), format!("must be >= 0, got {v}"));
                    }
                }
                if !snr_db.is_finite() {
                    p.push(format!("{key}.source.snr_db"), format!("must be a number, got {snr_db}"));
                }
            }
        }
        if self.state.max_events == 0 {
            p.push("state.max_events", "must be >= 1");
        }
        let sink_names = self.sink_names();
        for (i, s) in self.sinks.iter().enumerate() {
            let key = format!("sink[{i}]");
            if sink_names[..i].contains(&sink_names[i]) {
                p.push(format!("{key}.name"), format!("\"{}\" is used by another sink", sink_names[i]));
            }
            for name in s.streams() {
                if !names.contains(name.as_str()) {
                    p.push(format!("{key}.streams"), format!("no stream is named \"{name}\""));
                }
            }
            let timeout = |p: &mut Problems, t: f64| {
                if !(t.is_finite() && t > 0.0) {
                    p.push(format!("{key}.timeout_s"), format!("must be > 0, got {t}"));
                }
            };
            match s {
                SinkConfig::Log { .. } => {}
                SinkConfig::Webhook { url, hmac_secret_env, hmac_secret_file, timeout_s, retry, .. } => {
                    let ok = url
                        .strip_prefix("http://")
                        .or_else(|| url.strip_prefix("https://"))
                        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/') && !rest.contains(' '));
                    if !ok {
                        p.push(format!("{key}.url"), format!("expected an http:// or https:// URL, got \"{url}\""));
                    }
                    if hmac_secret_env.is_some() && hmac_secret_file.is_some() {
                        p.push(format!("{key}.hmac_secret_env"), "give hmac_secret_env or hmac_secret_file, not both");
                    }
                    timeout(&mut p, *timeout_s);
                    retry.validate(&format!("{key}.retry"), &mut p);
                }
                SinkConfig::Mqtt {
                    host,
                    topic,
                    state_topic,
                    password_env,
                    password_file,
                    tls,
                    ca_file,
                    timeout_s,
                    retry,
                    ..
                } => {
                    if host.trim().is_empty() {
                        p.push(format!("{key}.host"), "must not be empty");
                    }
                    for (k, t) in [("topic", topic), ("state_topic", state_topic)] {
                        if t.is_empty() || t.contains('+') || t.contains('#') {
                            p.push(format!("{key}.{k}"), format!("a topic to publish to (no wildcards), got \"{t}\""));
                        }
                    }
                    if password_env.is_some() && password_file.is_some() {
                        p.push(format!("{key}.password_env"), "give password_env or password_file, not both");
                    }
                    if *tls && ca_file.is_none() {
                        p.push(format!("{key}.ca_file"), "tls = true needs the broker's CA certificate (PEM)");
                    }
                    timeout(&mut p, *timeout_s);
                    retry.validate(&format!("{key}.retry"), &mut p);
                }
                SinkConfig::Modbus { listen, .. } => {
                    if listen.parse::<SocketAddr>().is_err() {
                        p.push(
                            format!("{key}.listen"),
                            format!("expected host:port like 127.0.0.1:1502, got \"{listen}\""),
                        );
                    }
                }
                SinkConfig::Exec { command, timeout_s, retry, .. } => {
                    if command.is_empty() || command[0].is_empty() {
                        p.push(
                            format!("{key}.command"),
                            "needs a program, e.g. [\"/usr/local/bin/notify\", \"--urgent\"]",
                        );
                    }
                    timeout(&mut p, *timeout_s);
                    retry.validate(&format!("{key}.retry"), &mut p);
                }
            }
        }
        p
    }

    /// Problems outside the file: secrets (environment, files), programs, and — when
    /// `ports` — whether the Modbus address can be bound (not on reload: we hold it).
    pub fn check_sinks(&self, p: &mut Problems, ports: bool) {
        for (i, s) in self.sinks.iter().enumerate() {
            let key = format!("sink[{i}]");
            match s {
                SinkConfig::Webhook { hmac_secret_env, hmac_secret_file, .. } => {
                    if let Err(e) =
                        crate::alarm::webhook::read_secret(hmac_secret_env.as_deref(), hmac_secret_file.as_deref())
                    {
                        let k = if hmac_secret_env.is_some() { "hmac_secret_env" } else { "hmac_secret_file" };
                        p.push(format!("{key}.{k}"), e);
                    }
                }
                SinkConfig::Mqtt { password_env, password_file, ca_file, .. } => {
                    if let Err(e) =
                        crate::alarm::webhook::read_secret(password_env.as_deref(), password_file.as_deref())
                    {
                        let k = if password_env.is_some() { "password_env" } else { "password_file" };
                        p.push(format!("{key}.{k}"), e);
                    }
                    if let Some(ca) = ca_file {
                        if let Err(e) = std::fs::read(ca) {
                            p.push(format!("{key}.ca_file"), format!("{}: {e}", ca.display()));
                        }
                    }
                }
                SinkConfig::Exec { command, .. } => {
                    if let Some(prog) = command.first().filter(|c| !c.is_empty()) {
                        if !program_exists(prog) {
                            p.push(
                                format!("{key}.command"),
                                format!("\"{prog}\" is not an executable file or on PATH"),
                            );
                        }
                    }
                }
                SinkConfig::Modbus { listen, .. } if ports => {
                    if let Ok(addr) = listen.parse::<SocketAddr>() {
                        if let Err(e) = std::net::TcpListener::bind(addr) {
                            p.push(format!("{key}.listen"), format!("cannot listen on {listen}: {e}"));
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Problems found on disk: bundles that do not load, WAV files the model cannot take.
    /// A missing source file is not a problem here: the stream starts `down` and retries.
    pub fn check_files(&self, p: &mut Problems) {
        for (i, s) in self.streams.iter().enumerate() {
            let key = format!("stream[{i}]");
            let manifest = match crate::model::Bundle::read_manifest(&s.model) {
                Ok(m) => m,
                Err(e) => {
                    p.push(format!("{key}.model"), e.to_string());
                    continue;
                }
            };
            let Some(features) = &manifest.features else {
                p.push(format!("{key}.model"), format!("{}: not an audio model (no [features])", s.model.display()));
                continue;
            };
            if matches!(s.detect.threshold, crate::detect::ThresholdSetting::Model) && manifest.threshold.is_none() {
                p.push(
                    format!("{key}.detect.threshold"),
                    format!("\"model\", but {} has no calibrated threshold: give a number", s.model.display()),
                );
            }
            if matches!(s.source, SourceConfig::Synth { .. }) && features.sample_rate != crate::audio::synth::RATE {
                p.push(
                    format!("{key}.source"),
                    format!(
                        "synthetic sources are 16000 Hz, {} expects {} Hz",
                        s.model.display(),
                        features.sample_rate
                    ),
                );
            }
            if let SourceConfig::File { path, resample, channel, .. } = &s.source {
                for f in wav_files(path).unwrap_or_default() {
                    match hound::WavReader::open(&f) {
                        Ok(r) => {
                            let spec = r.spec();
                            if spec.sample_rate != features.sample_rate && !resample {
                                p.push(
                                    format!("{key}.source.path"),
                                    format!(
                                        "{}: {} Hz, the model expects {} Hz (set resample = true to convert)",
                                        f.display(),
                                        spec.sample_rate,
                                        features.sample_rate
                                    ),
                                );
                            }
                            if let ChannelSelect::Index(c) = channel {
                                if *c >= spec.channels {
                                    p.push(
                                        format!("{key}.source.channel"),
                                        format!(
                                            "{}: has {} channel(s), asked for channel {c}",
                                            f.display(),
                                            spec.channels
                                        ),
                                    );
                                }
                            }
                        }
                        Err(e) => {
                            p.push(format!("{key}.source.path"), format!("{}: not a readable WAV: {e}", f.display()))
                        }
                    }
                }
            }
        }
    }
}

fn program_exists(prog: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        |p: &Path| p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false);
    if prog.contains('/') {
        return executable(Path::new(prog));
    }
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| executable(&d.join(prog))))
}

/// The WAV files a file source plays: the file itself, or a folder's `*.wav` sorted by name.
pub fn wav_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    crate::data::file_or_folder(path, "wav")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_validates() {
        let text = include_str!("../../config/monitor.example.toml");
        let cfg = MonitorConfig::parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.validate().is_empty(), "{}", cfg.validate());
        assert_eq!(cfg.streams.len(), 3);
        assert!(matches!(cfg.streams[0].source, SourceConfig::Device { .. }));
        assert_eq!(cfg.scoring, ScoringConfig::default());
        assert_eq!(cfg.pipeline, PipelineConfig::default());
        assert_eq!(cfg.sink_names(), ["log", "webhook", "mqtt", "modbus", "exec"]);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
[server]
listen = "nowhere"
[[stream]]
name = "a"
model = "m"
source = { type = "file", path = "x.wav", speed = 0 }
detect = { window_s = 0, on_delay_s = -1 }
[[stream]]
name = "a"
model = "m"
source = { type = "device" }
[[sink]]
type = "log"
streams = ["b"]
"#;
        let cfg = MonitorConfig::parse(text).unwrap();
        let keys: Vec<String> = cfg.validate().0.into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "stream[0].detect.window_s",
                "stream[0].detect.on_delay_s",
                "stream[0].source.speed",
                "stream[1].name",
                "sink[0].streams"
            ]
        );
    }

    #[test]
    fn unknown_keys_and_types_are_one_line_errors_with_the_line() {
        let e = MonitorConfig::parse("[scoring]\nmax_bach = 3\n").unwrap_err();
        assert!(e.starts_with("line 2, column 1: scoring") && e.contains("max_bach") && !e.contains('\n'), "{e}");
        let e = MonitorConfig::parse("[[sink]]\ntype = \"pager\"\n").unwrap_err();
        assert!(e.contains("pager"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let mut cfg = MonitorConfig::parse(
            "[[stream]]\nname = \"a\"\nmodel = \"models/a\"\nsource = { type = \"file\", path = \"/abs/a.wav\" }\n",
        )
        .unwrap();
        cfg.resolve_paths(Path::new("/etc/mpdr"));
        assert_eq!(cfg.streams[0].model, Path::new("/etc/mpdr/models/a"));
        assert!(matches!(&cfg.streams[0].source, SourceConfig::File { path, .. } if path == Path::new("/abs/a.wav")));
    }
}
