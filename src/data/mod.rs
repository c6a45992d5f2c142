//! Dataset readers: one input file -> log-mel, from a WAV (through the front-end) or from a
//! precomputed `.npy` log-mel of shape (n_mels, frames) as DCASE ToyCar ships; DCASE folder
//! layouts ([`dcase`]); ADBench tables ([`npz`]) and MNIST IDX files ([`idx`]) for `mpdr bench`.

pub mod dcase;
pub mod extract;
pub mod frontend;
pub mod idx;
pub use crate::npy;
pub mod npz;
pub mod synthetic;

use std::path::Path;

use crate::audio::{wav, AudioOptions};
use crate::error::InputError;
use crate::features::{logmel_with, FeatureParams, FrameKernel, LogMel};

/// What kind of input a path is, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Wav,
    Npy,
}

impl InputKind {
    pub fn of(path: &Path) -> Result<Self, InputError> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("wav") => Ok(InputKind::Wav),
            Some("npy") => Ok(InputKind::Npy),
            _ => Err(InputError::new(path, "unknown input type: expected a .wav file or a .npy log-mel file")),
        }
    }
}

pub use crate::features::read_logmel_npy;

/// Log-mel of one input file, WAV or `.npy`. Reuses `kernel` (built for `params`).
pub fn load_logmel_with(
    kernel: &mut FrameKernel,
    path: &Path,
    params: &FeatureParams,
    audio: &AudioOptions,
) -> Result<LogMel, InputError> {
    match InputKind::of(path)? {
        InputKind::Npy => read_logmel_npy(path, params),
        InputKind::Wav => {
            let samples = wav::read_mono(path, params.sample_rate, audio)?;
            logmel_with(kernel, params, &samples).map_err(|e| InputError::new(path, e.to_string()))
        }
    }
}

/// [`load_logmel_with`] with a fresh kernel.
pub fn load_logmel(path: &Path, params: &FeatureParams, audio: &AudioOptions) -> Result<LogMel, InputError> {
    load_logmel_with(&mut FrameKernel::new(params), path, params, audio)
}

pub use crate::files::file_or_folder;
