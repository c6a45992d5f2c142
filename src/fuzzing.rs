//! Fuzz entry points: every parser of what mpdr reads from files, sockets and editors, each
//! from bytes, through the same code the product runs (file readers get the bytes as a file).
//! The AFL++ harnesses in `fuzz/` call these, and `tests/fuzz_regressions.rs` replays every
//! input under `tests/fixtures/fuzz/<target>/` through them: an input that once crashed stays
//! a test. Each returns normally on any input; a panic or an abort is the bug.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crate::audio::{AudioOptions, ChannelSelect};
use crate::features::FeatureParams;

/// One fuzz entry point.
pub type Target = fn(&[u8]);

/// The targets, by name (the folder names under `tests/fixtures/fuzz/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("wav", wav),
    ("npy", npy),
    ("npz", npz),
    ("idx", idx),
    ("monitor_toml", monitor_toml),
    ("train_toml", train_toml),
    ("manifest", manifest),
    ("safetensors", safetensors),
    ("http", http),
    ("modbus", modbus),
    ("labels", labels),
    ("signal", signal),
];

/// Run target `name` on `data`; false when there is no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match TARGETS.iter().find(|(n, _)| *n == name) {
        Some((_, f)) => {
            f(data);
            true
        }
        None => false,
    }
}

/// `data` as a file the path-based readers can open (one per process and extension, in
/// memory where `/dev/shm` exists).
fn as_file(data: &[u8], ext: &str) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let path = dir.join(format!("mpdr-fuzz-{}.{ext}", std::process::id()));
    let _ = std::fs::write(&path, data);
    path
}

/// WAV decoding as `mpdr features`, `train` and file sources do it: every channel choice,
/// with and without resampling to 16 kHz.
pub fn wav(data: &[u8]) {
    let path = as_file(data, "wav");
    let _ = crate::audio::wav::decode(&path, ChannelSelect::Mix);
    let _ = crate::audio::wav::decode(&path, ChannelSelect::Index(1));
    let _ = crate::audio::wav::read_mono(&path, 16_000, &AudioOptions { channel: ChannelSelect::Mix, resample: true });
}

/// A `.npy` array, then as a log-mel feature file of the default front end.
pub fn npy(data: &[u8]) {
    let _ = crate::npy::parse(data);
    let path = as_file(data, "npy");
    let _ = crate::features::read_logmel_npy(&path, &FeatureParams::default());
}

/// An ADBench `.npz` table.
pub fn npz(data: &[u8]) {
    let path = as_file(data, "npz");
    let _ = crate::data::npz::read_table(&path);
}

/// An MNIST idx file (images: 3 dimensions; labels: 1).
pub fn idx(data: &[u8]) {
    let path = as_file(data, "idx");
    let _ = crate::data::idx::read_idx(&path, 3);
    let _ = crate::data::idx::read_idx(&path, 1);
}

/// A monitor config: parse, validate (pure), its listen address.
pub fn monitor_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = crate::daemon::config::MonitorConfig::parse(text) {
        let _ = cfg.validate();
        let _ = cfg.server.address();
    }
}

/// A training recipe: parse onto the defaults, validate.
pub fn train_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = crate::mpdr::recipe::TrainConfig::from_toml(text) {
        let _ = cfg.validate();
    }
}

/// A bundle manifest: parse, then every range and cross-field check.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = crate::config::parse_toml::<crate::model::Manifest>(text) {
        let _ = crate::model::check::problems(&m);
    }
}

/// A safetensors header, as checked before libtorch reads a weight file.
pub fn safetensors(data: &[u8]) {
    let _ = crate::model::safetensors_header(data);
}

fn metrics() -> &'static Arc<crate::metrics::Metrics> {
    static M: OnceLock<Arc<crate::metrics::Metrics>> = OnceLock::new();
    M.get_or_init(|| {
        let streams =
            vec![crate::metrics::StreamMetrics::new("fan", "m"), crate::metrics::StreamMetrics::new("pump", "m")];
        Arc::new(crate::metrics::Metrics::new(streams, vec![]))
    })
}

/// HTTP requests as the daemon's server reads them (pipelined: every request of the bytes),
/// each answered.
pub fn http(data: &[u8]) {
    use crate::daemon::http::request::{parse, Parsed};
    let mut rest = data;
    while let Ok(Parsed::Complete(req, used)) = parse(rest) {
        let ctx = crate::daemon::http::Ctx { metrics: metrics().clone(), console: None };
        let _ = crate::daemon::http::respond(&req, &ctx);
        rest = &rest[used.max(1).min(rest.len())..];
    }
}

/// Modbus TCP PDUs as the status server answers them (function code, then its data).
pub fn modbus(data: &[u8]) {
    static S: OnceLock<crate::alarm::sink::modbus::ModbusState> = OnceLock::new();
    let state = S.get_or_init(|| crate::alarm::sink::modbus::ModbusState::new(metrics().clone()));
    for pdu in data.split(|b| *b == 0xFF) {
        let _ = state.handle(pdu);
    }
}

/// A backtest labels CSV (BOM, quoting, overlapping rows), as `mpdr backtest --labels` reads it.
pub fn labels(data: &[u8]) {
    let path = as_file(data, "csv");
    let _ = crate::backtest::labels::read_csv(&path);
}

/// Audio levels through the signal watchers (health, signal faults): the first 8 bytes set a
/// trained level range and the block size, the rest are float32 samples of any value.
pub fn signal(data: &[u8]) {
    use crate::detect::health::{HealthConfig, HealthMonitor};
    use crate::detect::signal_fault::{LevelRange, SignalFaults};
    if data.len() < 8 {
        return;
    }
    let lo = -(data[0] as f64);
    let range =
        (data[1] != 0).then(|| LevelRange { rms_dbfs_low: lo, rms_dbfs_high: lo + data[2] as f64 / 4.0, blocks: 1 });
    let rate = 1000 + 100 * data[3] as u32;
    let block = 1 + u16::from_le_bytes([data[4], data[5]]) as usize;
    let samples: Vec<f32> = data[8..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let mut health = HealthMonitor::new(HealthConfig::default(), rate);
    let mut faults =
        SignalFaults::new(HealthConfig::default(), rate, range, (data[6] != 0).then_some(-(data[7] as f64)));
    for b in samples.chunks(block) {
        let _ = health.push(b);
        let _ = faults.push(b);
        let _ = faults.unscored();
    }
}
