//! The front-end part of a config file (`[features]` and `[audio]`), as `mpdr features` reads it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::audio::AudioOptions;
use crate::config::{parse_toml, read_toml, ConfigError, ParseOrInvalid, Problems, Validate};
use crate::features::FeatureParams;

/// The front-end part of a config file: `[features]` and `[audio]`. Both optional; missing
/// keys take the DCASE defaults.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrontEndConfig {
    pub features: FeatureParams,
    pub audio: AudioOptions,
}

impl FrontEndConfig {
    /// Read, parse and validate a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let cfg: Self = read_toml(path)?;
        cfg.validate().into_result(cfg).map_err(|problems| ConfigError::Invalid { path: path.into(), problems })
    }

    pub fn parse(text: &str) -> Result<Self, ParseOrInvalid> {
        let cfg: Self = parse_toml(text).map_err(ParseOrInvalid::Parse)?;
        let problems = cfg.validate();
        problems.into_result(cfg).map_err(ParseOrInvalid::Invalid)
    }
}

impl Validate for FrontEndConfig {
    fn validate(&self) -> Problems {
        let mut p = Problems::default();
        self.features.validate("features", &mut p);
        self.audio.validate("audio", &mut p);
        p
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
