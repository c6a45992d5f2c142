//! Configuration in three steps: raw serde types (`deny_unknown_fields`) -> `validate()`, which
//! collects every problem with its key path -> building the objects that open files/devices.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audio::AudioOptions;
use crate::features::FeatureParams;

/// One problem: the key path (e.g. `features.n_fft`) and what is wrong with its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

/// All problems found in one config, reported together.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { key: key.into(), message: message.into() });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when there is no problem.
    pub fn into_result<T>(self, value: T) -> Result<T, Problems> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Errors loading a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {problems}")]
    Invalid { path: PathBuf, problems: Problems },
}

/// The front-end part of a config file: `[features]` and `[audio]`. Both optional; missing
/// keys take the DCASE defaults.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrontEndConfig {
    pub features: FeatureParams,
    pub audio: AudioOptions,
}

impl FrontEndConfig {
    pub fn validate(&self) -> Problems {
        let mut p = Problems::default();
        self.features.validate("features", &mut p);
        self.audio.validate("audio", &mut p);
        p
    }

    /// Read, parse and validate a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::parse(&text).map_err(|e| match e {
            ParseOrInvalid::Parse(message) => ConfigError::Parse { path: path.into(), message },
            ParseOrInvalid::Invalid(problems) => ConfigError::Invalid { path: path.into(), problems },
        })
    }

    pub fn parse(text: &str) -> Result<Self, ParseOrInvalid> {
        let cfg: Self = toml::from_str(text).map_err(|e| ParseOrInvalid::Parse(one_line_toml_error(&e)))?;
        let problems = cfg.validate();
        problems.into_result(cfg).map_err(ParseOrInvalid::Invalid)
    }
}

/// A parse failure (message) or a parsed-but-invalid config (problems).
#[derive(Debug)]
pub enum ParseOrInvalid {
    Parse(String),
    Invalid(Problems),
}

/// toml's messages span several lines with a source excerpt; keep them to one line.
pub fn one_line_toml_error(e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => format!("{msg} (at byte {})", span.start),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = FrontEndConfig::parse("[features]\nn_ffft = 1024\n").unwrap_err();
        match e {
            ParseOrInvalid::Parse(m) => assert!(m.contains("n_ffft"), "{m}"),
            ParseOrInvalid::Invalid(p) => panic!("expected a parse error, got {p}"),
        }
        let e =
            FrontEndConfig::parse("[features]\nn_fft = 1000\nn_mels = 0\n[audio]\nchannel = \"left\"\n").unwrap_err();
        match e {
            ParseOrInvalid::Parse(m) => assert!(m.contains("channel"), "{m}"),
            ParseOrInvalid::Invalid(p) => panic!("expected a parse error, got {p}"),
        }
        let e = FrontEndConfig::parse("[features]\nn_fft = 1001\nn_mels = 0\n").unwrap_err();
        match e {
            ParseOrInvalid::Invalid(p) => {
                let keys: Vec<_> = p.0.iter().map(|x| x.key.as_str()).collect();
                assert_eq!(keys, vec!["features.n_fft", "features.n_mels"]);
            }
            ParseOrInvalid::Parse(m) => panic!("expected problems, got {m}"),
        }
    }

    #[test]
    fn example_config_parses_to_the_defaults_it_documents() {
        let text = include_str!("../../config/features.example.toml");
        let cfg = FrontEndConfig::parse(text).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(cfg.features, FeatureParams::default());
        assert_eq!(cfg.audio, AudioOptions::default());
    }
}
