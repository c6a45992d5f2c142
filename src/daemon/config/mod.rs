//! The monitor's configuration (`config/monitor.example.toml`) in three steps: the raw serde
//! types here (each seam owns its part: `audio::source::SourceConfig`, `alarm::SinkConfig`,
//! `detect::DetectConfig`); [`MonitorConfig::validate`] (pure, every problem with its key
//! path) and [`MonitorConfig::check`] (models, WAV headers, secrets, ports) giving a
//! [`Monitor`], which cannot hold an invalid value; the daemon builds the objects from it.
//! Relative paths resolve against the config file's folder, so the same file works from any
//! directory and under systemd.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::alarm::sink::{self, NamedSink};
use crate::alarm::SinkConfig;
use crate::audio::source::SourceConfig;
use crate::config::{ConfigError, Problems};
use crate::detect::DetectConfig;
use crate::device::DeviceChoice;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// This box's name (and site) on a shared broker and in every event.
    pub identity: crate::config::identity::IdentityConfig,
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
    /// The console's and API's token for state-changing calls, from an environment variable
    /// or a file (never the config text); without one the console is read-only.
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    /// People with their own tokens and roles (`[[server.user]]`, see `daemon::access`).
    pub user: Vec<super::access::UserConfig>,
    /// Longest an operator may shelve a stream's alarms, in minutes.
    pub max_shelve_minutes: f64,
    /// Longest a maintenance may last, in minutes.
    pub max_maintenance_minutes: f64,
    /// `/readyz` reports degraded (503, the sink named) once a sink has been failing this long.
    pub sink_failing_degraded_s: f64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:9464".into(),
            token_env: None,
            token_file: None,
            user: Vec::new(),
            max_shelve_minutes: 480.0,
            max_maintenance_minutes: 10_080.0,
            sink_failing_degraded_s: 300.0,
        }
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
    /// Signal health: silence (dead microphone) and clipping.
    #[serde(default)]
    pub health: crate::detect::health::HealthConfig,
    /// How urgent this stream's alarms are: `critical`, `high`, `medium` (default), `low`.
    #[serde(default)]
    pub priority: crate::detect::event::Priority,
    /// When the machine counts as not running (`machine-off`: not scored, no alarm).
    #[serde(default)]
    pub run: Option<crate::detect::run::RunConfig>,
}

impl MonitorConfig {
    /// Parse TOML text; an error is one line with its position and key path.
    pub fn parse(text: &str) -> Result<Self, String> {
        crate::config::parse_toml(text)
    }

    /// Read and parse `path` and make its relative paths absolute against its folder.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: MonitorConfig = crate::config::read_toml(path)?;
        cfg.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(cfg)
    }

    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(d) = &mut self.state.dir {
            crate::files::absolute(d, base);
        }
        if let Some(f) = &mut self.server.token_file {
            crate::files::absolute_secret(f, base);
        }
        for u in &mut self.server.user {
            u.resolve_paths(base);
        }
        for s in &mut self.sinks {
            s.spec_mut().resolve_paths(base);
        }
        for s in &mut self.streams {
            crate::files::absolute(&mut s.model, base);
            s.source.resolve_paths(base);
        }
    }

    /// Every problem that needs no disk access.
    pub fn validate(&self) -> Problems {
        let mut p = Problems::default();
        self.identity.validate("identity", &mut p);
        if let Err(e) = self.server.address() {
            p.push("server.listen", e);
        }
        crate::alarm::sink::check_secret_keys(
            "server",
            "token",
            &self.server.token_env,
            &self.server.token_file,
            &mut p,
        );
        super::access::validate(&self.server.user, &mut p);
        for (k, v, most) in [
            ("max_shelve_minutes", self.server.max_shelve_minutes, 43_200.0),
            ("max_maintenance_minutes", self.server.max_maintenance_minutes, 525_600.0),
            ("sink_failing_degraded_s", self.server.sink_failing_degraded_s, 604_800.0),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= most) {
                p.push(format!("server.{k}"), format!("must be > 0 and at most {most}, got {v}"));
            }
        }
        // Bounds a running daemon can hold: queues are allocated up front, waits are added to
        // clocks.
        if !(1..=65_536).contains(&self.scoring.max_batch) {
            p.push("scoring.max_batch", format!("must be in 1..=65536, got {}", self.scoring.max_batch));
        }
        if self.scoring.max_wait_ms > 10_000 {
            p.push("scoring.max_wait_ms", format!("must be at most 10000 ms, got {}", self.scoring.max_wait_ms));
        }
        let pl = &self.pipeline;
        for (k, v) in [("audio_queue_blocks", pl.audio_queue_blocks), ("vector_queue", pl.vector_queue)] {
            if !(1..=1_000_000).contains(&v) {
                p.push(format!("pipeline.{k}"), format!("must be in 1..=1000000, got {v}"));
            }
        }
        for (k, v) in [("retry_max_s", pl.retry_max_s), ("shutdown_timeout_s", pl.shutdown_timeout_s)] {
            if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
                p.push(format!("pipeline.{k}"), format!("must be > 0 and at most 3600 s, got {v}"));
            }
        }
        let mut names = BTreeSet::new();
        for (i, s) in self.streams.iter().enumerate() {
            let key = format!("stream[{i}]");
            if s.name.trim().is_empty() {
                p.push(format!("{key}.name"), "must not be empty");
            } else if s.name.len() > 64 || s.name.chars().all(|c| c == '.') {
                // A name is a topic level, a file name part and a label: "." and ".." are paths.
                p.push(format!("{key}.name"), format!("1–64 characters, not only dots, got {:?}", s.name));
            } else if !s.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                p.push(format!("{key}.name"), format!("use letters, digits, '-', '_' or '.', got \"{}\"", s.name));
            } else if !names.insert(s.name.as_str()) {
                p.push(format!("{key}.name"), format!("\"{}\" is used by another stream", s.name));
            }
            s.detect.validate(&format!("{key}.detect"), &mut p);
            s.health.validate(&format!("{key}.health"), &mut p);
            if let Some(r) = &s.run {
                r.validate(&format!("{key}.run"), &mut p);
            }
            s.source.validate(&format!("{key}.source"), &mut p);
        }
        if self.state.max_events == 0 {
            p.push("state.max_events", "must be >= 1");
        }
        sink::validate(&self.sinks, &names.into_iter().collect::<Vec<_>>(), &mut p);
        if let Ok(Some(addr)) = self.server.address() {
            let mine = format!("tcp:{addr}");
            for (i, s) in self.sinks.iter().enumerate() {
                if addr.port() != 0 && s.spec().exclusive().as_ref() == Some(&mine) {
                    p.push(format!("sink[{i}].listen"), format!("{addr} is server.listen's address"));
                }
            }
        }
        p
    }

    /// Problems outside the file: bundles that do not load or do not fit their stream, WAV
    /// files the model cannot take, sinks' secrets, programs and (when `ports`) addresses.
    /// A missing source file is not a problem: the stream starts `down` and retries.
    pub fn check(&self, p: &mut Problems, ports: bool) {
        // A GPU this libtorch cannot see is a problem here, not a start that fails (and a
        // service restarting in a loop).
        if let Err(e) = self.scoring.device.resolve() {
            p.push("scoring.device", e.to_string());
        }
        let mut loaded = std::collections::BTreeMap::new();
        for (i, s) in self.streams.iter().enumerate() {
            let key = format!("stream[{i}]");
            // The whole bundle, once per folder: manifest ranges, checksums, tensor shapes,
            // finite weights.
            let manifest = match loaded.entry(s.model.clone()).or_insert_with(|| {
                crate::model::Bundle::load(&s.model, tch::Device::Cpu).map(|b| b.manifest).map_err(|e| e.to_string())
            }) {
                Ok(m) => m.clone(),
                Err(e) => {
                    p.push(format!("{key}.model"), e.clone());
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
            s.source.check(&format!("{key}.source"), features, p);
            if let (crate::audio::source::SourceConfig::File(f), Some(audio)) = (&s.source, manifest.audio) {
                f.check_trained_channel(&format!("{key}.model"), audio.channel, &s.model, p);
            }
        }
        sink::check(&self.sinks, p, ports);
        crate::alarm::sink::check_secret("server", "token", &self.server.token_env, &self.server.token_file, p);
        let shared =
            crate::alarm::sink::read_secret(self.server.token_env.as_deref(), self.server.token_file.as_deref());
        super::access::check(&self.server.user, shared.ok().flatten(), p);
    }

    /// What is allowed but may surprise: listening beyond this host, a device or recording
    /// not there yet. `validate` prints them, the monitor logs them; neither refuses.
    pub fn warnings(&self) -> Problems {
        let mut w = Problems::default();
        if let Ok(Some(addr)) = self.server.address() {
            crate::config::warn_if_public(&mut w, "server.listen", addr);
        }
        if self.streams.is_empty() {
            // The installed config: the daemon runs (console, /metrics) and /readyz says why it
            // is not ready, until a stream is added.
            w.push("stream", "no [[stream]] configured: the daemon starts and monitors nothing (/readyz: not ready)");
        }
        for (i, s) in self.streams.iter().enumerate() {
            s.source.spec().warnings(&format!("stream[{i}].source"), &mut w);
            // A profile bundle decides on windows of its own length (it was trained on them).
            let manifest = crate::model::Bundle::read_manifest(&s.model).ok();
            let features = manifest.as_ref().and_then(|m| m.features.clone());
            // The bundle's threshold means its false-alarm budget for windows of its length.
            let calibrated = manifest.as_ref().and_then(|m| m.threshold.as_ref()).and_then(|t| t.window_s());
            if let (crate::detect::ThresholdSetting::Model, Some(cal), None) =
                (s.detect.threshold, calibrated, features.as_ref().and_then(|f| f.profile_window_s()))
            {
                if (cal - s.detect.window_s).abs() > 1e-9 {
                    w.push(
                        format!("stream[{i}].detect.window_s"),
                        format!(
                            "{} s, but {}'s threshold was calibrated for {cal} s windows: its false-alarm budget does not hold (set window_s = {cal}, or run `mpdr calibrate --window-s {}`)",
                            s.detect.window_s,
                            s.model.display(),
                            s.detect.window_s
                        ),
                    );
                }
            }
            // Its window_s only sets the evidence audio's length: shorter than the profile
            // window, the evidence would leave out part of what was judged (longer is harmless).
            if let Some(model_s) = features.as_ref().and_then(|f| f.profile_window_s()) {
                if s.detect.window_s < model_s - 0.05 {
                    w.push(
                        format!("stream[{i}].detect.window_s"),
                        format!(
                            "{} s, but {} decides on its own {model_s:.2}-s profile windows (what it was trained on) and window_s sets only the evidence audio's length: an alarm's audio would leave out part of what was judged (set window_s ≥ {model_s:.2}, or leave it at its default)",
                            s.detect.window_s,
                            s.model.display()
                        ),
                    );
                }
            }
        }
        for (i, s) in self.sinks.iter().enumerate() {
            s.spec().warnings(&format!("sink[{i}]"), &mut w);
        }
        w
    }

    /// The validated form (no disk access; see [`Monitor::load`] for the whole check).
    /// `config_dir` locates the default outbox folder.
    pub fn into_valid(self, config_dir: &Path) -> Result<Monitor, Problems> {
        self.validate().into_result(())?;
        Ok(self.validated(config_dir))
    }

    /// The outbox folder the daemon of this config uses (`config_dir`: the file's folder):
    /// `[state] dir`, else `$STATE_DIRECTORY`, else `<config dir>/state`.
    pub fn state_folder(&self, config_dir: &Path) -> PathBuf {
        state_dir(self.state.dir.as_deref(), config_dir)
    }

    /// The validated form of a config whose `validate()` found nothing.
    fn validated(self, config_dir: &Path) -> Monitor {
        let listen = self.server.address().ok().flatten();
        let sinks = sink::names(&self.sinks)
            .into_iter()
            .zip(&self.sinks)
            .map(|(name, config)| NamedSink { name, config: config.clone() })
            .collect();
        let state_dir = state_dir(self.state.dir.as_deref(), config_dir);
        Monitor { cfg: self, listen, sinks, state_dir }
    }
}

impl ServerConfig {
    /// The address to listen on; `None` when the server is off.
    pub fn address(&self) -> Result<Option<SocketAddr>, String> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        self.listen
            .parse()
            .map(Some)
            .map_err(|_| format!("expected host:port like 127.0.0.1:9464, got \"{}\"", self.listen))
    }
}

/// A monitor configuration that passed validation and the file checks: addresses parsed,
/// sinks named, the outbox folder chosen. Only [`MonitorConfig::into_valid`] makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    cfg: MonitorConfig,
    listen: Option<SocketAddr>,
    sinks: Vec<NamedSink>,
    state_dir: PathBuf,
}

impl Monitor {
    /// Read, parse, validate and check `path`; every problem is reported, prefixed with the
    /// file. `ports`: also check that listening addresses are free (not on reload).
    /// Validated once: the checks of [`inspect`], then the validated form.
    pub fn load(path: &Path, ports: bool) -> Result<Monitor, ConfigError> {
        let (cfg, problems) = inspect(path, ports)?;
        if !problems.is_empty() {
            return Err(ConfigError::Invalid { path: path.into(), problems });
        }
        for w in cfg.warnings().0 {
            tracing::warn!(key = %w.key, "{}: {}", path.display(), w.message);
        }
        Ok(cfg.validated(path.parent().unwrap_or(Path::new("."))))
    }

    pub fn config(&self) -> &MonitorConfig {
        &self.cfg
    }
    pub fn streams(&self) -> &[StreamConfig] {
        &self.cfg.streams
    }
    /// The metrics server's address (`None`: off).
    pub fn listen(&self) -> Option<SocketAddr> {
        self.listen
    }
    /// Every configured sink with its delivery name (a log sink when none is configured).
    pub fn sinks(&self) -> Vec<NamedSink> {
        if self.sinks.is_empty() {
            let config = SinkConfig::Log(Default::default());
            return vec![NamedSink { name: "log".into(), config }];
        }
        self.sinks.clone()
    }
    /// The outbox folder: `[state] dir`, else `$STATE_DIRECTORY`, else `<config dir>/state`.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

/// Read `path` (an error only when it cannot be read or parsed) and collect every
/// validation and file problem: what `mpdr validate` prints.
pub fn inspect(path: &Path, ports: bool) -> Result<(MonitorConfig, Problems), ConfigError> {
    let cfg = MonitorConfig::read(path)?;
    let mut p = cfg.validate();
    cfg.check(&mut p, ports);
    check_state_dir(&cfg.state_folder(path.parent().unwrap_or(Path::new("."))), &mut p);
    Ok((cfg, p))
}

/// The outbox folder must be a folder (or not exist yet) on a real file system.
fn check_state_dir(dir: &Path, p: &mut Problems) {
    let pseudo = ["/proc", "/sys", "/dev"].iter().any(|root| dir.starts_with(root));
    if pseudo {
        p.push("state.dir", format!("{}: a kernel pseudo-file system, not a place for the outbox", dir.display()));
    } else if dir.exists() && !dir.is_dir() {
        p.push("state.dir", format!("{}: not a folder", dir.display()));
    }
}

fn state_dir(dir: Option<&Path>, config_dir: &Path) -> PathBuf {
    match dir {
        Some(d) => d.to_path_buf(),
        None => match std::env::var_os("STATE_DIRECTORY") {
            // systemd passes a colon-separated list when several are configured.
            Some(d) => PathBuf::from(d.to_string_lossy().split(':').next().unwrap_or_default()),
            None => config_dir.join("state"),
        },
    }
}

#[cfg(test)]
mod tests;
