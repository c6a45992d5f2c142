//! Audio input. For now: WAV files (any PCM width or float32, any channel count) decoded to
//! mono f32 at the model's sample rate. Live sources (cpal devices, file replay, the synthetic
//! plant) join behind a `Source` trait with the monitor.

pub mod resample;
pub mod ring;
pub mod source;
pub mod synth;
pub mod wav;

use serde::{Deserialize, Serialize};

use crate::config::Problems;

/// Which channel of a multi-channel file to use. In TOML: `"mix"` or a 0-based number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelSelect {
    /// Mean of all channels (the default; a mono file is unchanged).
    #[default]
    Mix,
    /// One channel, 0-based.
    Index(u16),
}

impl Serialize for ChannelSelect {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ChannelSelect::Mix => s.serialize_str("mix"),
            ChannelSelect::Index(i) => s.serialize_u16(*i),
        }
    }
}

impl<'de> Deserialize<'de> for ChannelSelect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => u16::try_from(n).map(ChannelSelect::Index).map_err(|_| {
                serde::de::Error::custom(format!("channel: expected \"mix\" or a channel number 0..65535, got {n}"))
            }),
            Raw::Text(t) => t.parse().map_err(|e: String| serde::de::Error::custom(format!("channel: {e}"))),
        }
    }
}

impl std::str::FromStr for ChannelSelect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "mix" {
            return Ok(ChannelSelect::Mix);
        }
        s.parse::<u16>()
            .map(ChannelSelect::Index)
            .map_err(|_| format!("expected \"mix\" or a channel number, got \"{s}\""))
    }
}

/// How files are turned into the model's mono signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioOptions {
    /// `"mix"` (mean of channels) or a 0-based channel index.
    pub channel: ChannelSelect,
    /// Resample files whose rate differs from `features.sample_rate`. Off by default: a rate
    /// mismatch is an error, so data is never silently changed.
    pub resample: bool,
}

impl Default for AudioOptions {
    fn default() -> Self {
        AudioOptions { channel: ChannelSelect::Mix, resample: false }
    }
}

impl AudioOptions {
    pub fn validate(&self, _prefix: &str, _problems: &mut Problems) {
        // Every representable value is valid; the channel is checked against each file.
    }
}
