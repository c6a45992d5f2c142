//! The source seam: where a stream's audio comes from. Each kind of source is one file here
//! — its configuration (`[stream.source]`, tagged by `type`), its checks and its [`Source`]
//! — plus one line in the `sources!` list below; [`SourceConfig::build`] is the factory.
//!
//! A source is created and driven on its stream's own thread (cpal streams are not `Send`
//! everywhere): the stream thread calls [`Source::open`] until it succeeds (with backoff) and
//! then [`Source::next`] for mono blocks at the model's rate.

pub mod device;
pub mod file;
pub mod logmel;
pub mod synthetic;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::Problems;
use crate::features::FeatureParams;

pub use device::{DeviceConfig, DeviceSource};
pub use file::{FileConfig, FileSource};
pub use logmel::{LogmelConfig, LogmelSource};
pub use synthetic::{SynthConfig, SynthSource};

/// What one call of [`Source::next`] produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// `out` holds a new block; its last sample arrived at this instant.
    Data(Instant),
    /// Nothing yet; call again (the call waited a little).
    Idle,
    /// The source is finished (a file replay without loop).
    End,
}

/// Why a source cannot deliver audio: the stream goes down and the source is reopened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// A file (or folder) of a replay.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// A sound-card input.
    #[error("{device}: {message}")]
    Device { device: String, message: String },
    /// `next` before a successful `open`.
    #[error("the source is not open")]
    NotOpen,
}

/// A file that cannot be read (its error names it).
impl From<crate::error::InputError> for SourceError {
    fn from(e: crate::error::InputError) -> Self {
        SourceError::File { path: e.path, message: e.message }
    }
}

pub trait Source {
    /// Describes the source for logs and errors.
    fn describe(&self) -> String;
    /// (Re)open. An error leaves the stream down; the caller retries with backoff.
    fn open(&mut self) -> Result<(), SourceError>;
    /// The next block into `out` (cleared first). An error means the source failed while
    /// running: the caller marks the stream down and reopens.
    fn next(&mut self, out: &mut Vec<f32>) -> Result<Next, SourceError>;
    /// Real-time sources drop when the pipeline is full; others apply back-pressure.
    fn realtime(&self) -> bool;
    /// Samples dropped at capture so far (before they reached the stream thread).
    fn dropped(&self) -> u64 {
        0
    }
    /// `Some(n_mels)` when blocks are log-mel frames (frame-major), not samples.
    fn frames(&self) -> Option<usize> {
        None
    }
}

/// What opening a source needs from the rest of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenContext {
    /// The model's sample rate: every source delivers mono blocks at this rate.
    pub rate: u32,
    /// Capture queue length of device sources, in blocks.
    pub queue_blocks: usize,
    /// The model's mel bands (log-mel replays check their arrays against it).
    pub n_mels: usize,
}

/// One kind of source: its checks and its factory.
pub trait SourceSpec {
    /// Every problem that needs no disk access, keys under `key` (e.g. `stream[0].source`).
    fn validate(&self, key: &str, p: &mut Problems);
    /// Problems against the model's front-end and on disk (e.g. WAV headers of a replay).
    fn check(&self, _key: &str, _features: &FeatureParams, _p: &mut Problems) {}
    /// What may still come right by itself (a device not plugged in yet, a recording not
    /// there yet): `validate` prints these as warnings and the monitor starts, the stream down.
    fn warnings(&self, _key: &str, _w: &mut Problems) {}
    /// Make relative paths absolute against `base` (the config file's folder).
    fn resolve_paths(&mut self, _base: &Path) {}
    /// The factory: a closed source of this kind (the stream thread opens it).
    fn build(&self, ctx: OpenContext) -> Box<dyn Source>;
    /// Whether the source delivers samples (false: log-mel frames, no audio to keep or judge).
    fn has_audio(&self) -> bool {
        true
    }
}

/// The source kinds: `Variant(config type)`, tagged by `type` in kebab case. A new source is a
/// file of this folder and one line here.
macro_rules! sources {
    ($($(#[$doc:meta])* $variant:ident($cfg:ty)),* $(,)?) => {
        /// Where a stream's audio comes from (`source = { type = "...", ... }`).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", rename_all = "kebab-case")]
        pub enum SourceConfig {
            $($(#[$doc])* $variant($cfg)),*
        }

        impl SourceConfig {
            pub fn spec(&self) -> &dyn SourceSpec {
                match self { $(SourceConfig::$variant(c) => c),* }
            }
            pub fn spec_mut(&mut self) -> &mut dyn SourceSpec {
                match self { $(SourceConfig::$variant(c) => c),* }
            }
        }
    };
}

sources! {
    /// A sound card input through cpal (ALSA on Linux).
    Device(DeviceConfig),
    /// Replay of a WAV file or of every WAV in a folder (sorted by name).
    File(FileConfig),
    /// A machine of the synthetic plant (16 kHz; see `mpdr synth --help`).
    Synth(SynthConfig),
    /// Replay of log-mel `.npy` files (n_mels, frames), fed straight to the vector stage.
    Logmel(LogmelConfig),
}

impl SourceConfig {
    pub fn validate(&self, key: &str, p: &mut Problems) {
        self.spec().validate(key, p)
    }
    pub fn check(&self, key: &str, features: &FeatureParams, p: &mut Problems) {
        self.spec().check(key, features, p)
    }
    pub fn resolve_paths(&mut self, base: &Path) {
        self.spec_mut().resolve_paths(base)
    }
    /// The factory: a closed source of this kind (the stream thread opens it).
    pub fn build(&self, ctx: OpenContext) -> Box<dyn Source> {
        self.spec().build(ctx)
    }
}

/// The WAV files a file source plays: the file itself, or a folder's `*.wav` sorted by name.
pub fn wav_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    crate::files::file_or_folder(path, "wav")
}

/// `speed` must be a positive number (both paced sources share it).
fn check_speed(key: &str, speed: f64, p: &mut Problems) {
    if !(speed.is_finite() && (0.01..=10_000.0).contains(&speed)) {
        p.push(format!("{key}.speed"), format!("must be 0.01–10000 (x real time), got {speed}"));
    }
}

/// Wait, in steps of at most 50 ms, until `samples` more samples are due at `rate` x `speed`
/// since `t0`; false when they are not due yet (the caller returns `Next::Idle`).
fn paced(t0: Instant, samples: u64, rate: u32, speed: f64) -> bool {
    let due = t0 + Duration::from_secs_f64(samples as f64 / rate as f64 / speed);
    let now = Instant::now();
    if due > now {
        std::thread::sleep((due - now).min(Duration::from_millis(50)));
        return Instant::now() >= due;
    }
    true
}

fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}

/// Stop flag helper for sleeps that must end early on shutdown.
pub fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let until = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct W {
        source: SourceConfig,
    }

    #[test]
    fn each_kind_parses_with_its_defaults_and_rejects_unknown_keys() {
        let w: W = crate::config::parse_toml("source = { type = \"synth\", machine = \"fan\", seed = 3 }").unwrap();
        let SourceConfig::Synth(c) = w.source else { panic!("{:?}", w.source) };
        assert_eq!(
            c.spec,
            crate::audio::synth::SynthSpec {
                seed: 3,
                ..crate::audio::synth::SynthSpec::normal(crate::audio::synth::Machine::Fan, 3)
            }
        );
        assert!(c.realtime && c.speed == 1.0);
        let w: W = crate::config::parse_toml("source = { type = \"file\", path = \"a.wav\", channel = 1 }").unwrap();
        let SourceConfig::File(f) = w.source else { panic!() };
        assert_eq!(
            f.audio,
            crate::audio::AudioOptions { channel: crate::audio::ChannelSelect::Index(1), resample: false }
        );
        for bad in [
            "source = { type = \"synth\", machine = \"fan\", sed = 3 }",
            "source = { type = \"file\", path = \"a.wav\", lop = true }",
            "source = { type = \"device\", devise = \"hw:0\" }",
            "source = { type = \"tape\" }",
        ] {
            let e = crate::config::parse_toml::<W>(bad).unwrap_err();
            assert!(e.starts_with("line 1, column") && !e.contains('\n'), "{bad}: {e}");
        }
    }
}
