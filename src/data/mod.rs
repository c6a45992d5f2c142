//! Dataset readers: one input file -> log-mel, from a WAV (through the front-end) or from a
//! precomputed `.npy` log-mel of shape (n_mels, frames) as DCASE ToyCar ships; DCASE folder
//! layouts ([`dcase`]); ADBench tables ([`npz`]) and MNIST IDX files ([`idx`]) for `mpdr bench`.

pub mod dcase;
pub mod extract;
pub mod frontend;
pub mod idx;
pub mod npy;
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

/// Read a precomputed log-mel `.npy` of shape (n_mels, frames).
pub fn read_logmel_npy(path: &Path, params: &FeatureParams) -> Result<LogMel, InputError> {
    let a = npy::read(path)?;
    if a.shape.len() != 2 || a.shape[0] != params.n_mels {
        return Err(InputError::new(
            path,
            format!("log-mel array has shape {:?}, expected ({}, frames) = (n_mels, frames)", a.shape, params.n_mels),
        ));
    }
    if a.shape[1] == 0 {
        return Err(InputError::new(path, "log-mel array has 0 frames"));
    }
    if let Some(i) = a.data.iter().position(|v| !v.is_finite()) {
        return Err(InputError::new(
            path,
            format!(
                "value at (mel {}, frame {}) is {}: log-mel must be finite",
                i / a.shape[1],
                i % a.shape[1],
                a.data[i]
            ),
        ));
    }
    Ok(LogMel::from_mel_major(a.shape[0], a.shape[1], &a.data))
}

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
