//! Entry points of the `mpdr` subcommands: `main.rs` parses arguments and calls one of these.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::audio::ChannelSelect;
use crate::config::FrontEndConfig;
use crate::data::{load_logmel, npy};
use crate::features::PadMode;

/// What `mpdr features` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FeatureOutput {
    /// Log-mel spectrogram, shape (n_mels, frames).
    Logmel,
    /// Stacked vectors, shape (n_vectors, n_mels * frames).
    Vectors,
}

/// Options of `mpdr features`.
#[derive(Debug, Clone)]
pub struct FeaturesArgs {
    pub input: PathBuf,
    pub out: PathBuf,
    pub what: FeatureOutput,
    pub pad: Option<PadMode>,
    pub config: Option<PathBuf>,
    pub channel: Option<ChannelSelect>,
    pub resample: bool,
}

/// `mpdr features`: one WAV or log-mel `.npy` -> float32 `.npy`. Returns the written shape.
pub fn features(args: &FeaturesArgs) -> Result<Vec<usize>> {
    let mut cfg = match &args.config {
        Some(path) => FrontEndConfig::load(path)?,
        None => FrontEndConfig::default(),
    };
    if let Some(pad) = args.pad {
        cfg.features.pad_mode = pad;
    }
    if let Some(channel) = args.channel {
        cfg.audio.channel = channel;
    }
    cfg.audio.resample |= args.resample;
    let lm = load_logmel(&args.input, &cfg.features, &cfg.audio)?;
    let (shape, data) = match args.what {
        FeatureOutput::Logmel => (vec![lm.n_mels, lm.n_frames], lm.to_mel_major()),
        FeatureOutput::Vectors => {
            let v = lm.vectors(cfg.features.frames);
            (vec![v.n, v.dim], v.data)
        }
    };
    npy::write(&args.out, &shape, &data).with_context(|| "writing features")?;
    tracing::info!(input = %args.input.display(), out = %args.out.display(), ?shape, pad = %cfg.features.pad_mode, "features written");
    Ok(shape)
}
