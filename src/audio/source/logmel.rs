//! `type = "logmel"`: a replay of precomputed log-mel `.npy` files of shape (n_mels, frames)
//! (e.g. DCASE ToyCar's), one file or a folder's in name order, fed straight to the vector
//! stage — as fast as the pipeline takes them (a backtest source; there is no audio to pace).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{Next, OpenContext, Source, SourceError, SourceSpec};
use crate::config::Problems;
use crate::features::{read_logmel_npy, FeatureParams};

/// `source = { type = "logmel", path = "..." }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogmelConfig {
    pub path: PathBuf,
}

fn npy_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    crate::files::file_or_folder(path, "npy")
}

impl SourceSpec for LogmelConfig {
    fn validate(&self, _key: &str, _p: &mut Problems) {}

    /// Every array must be (n_mels, frames) for the model.
    fn check(&self, key: &str, features: &FeatureParams, p: &mut Problems) {
        for f in npy_files(&self.path).unwrap_or_default() {
            if let Err(e) = read_logmel_npy(&f, features) {
                p.push(format!("{key}.path"), e.to_string());
            }
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        crate::files::absolute(&mut self.path, base);
    }

    fn has_audio(&self) -> bool {
        false
    }

    fn build(&self, ctx: OpenContext) -> Box<dyn Source> {
        Box::new(LogmelSource { cfg: self.clone(), n_mels: ctx.n_mels, files: Vec::new(), next: 0 })
    }
}

/// Emits each file's frames as one block.
pub struct LogmelSource {
    cfg: LogmelConfig,
    n_mels: usize,
    files: Vec<PathBuf>,
    next: usize,
}

impl Source for LogmelSource {
    fn describe(&self) -> String {
        format!("log-mel replay {}", self.cfg.path.display())
    }

    fn open(&mut self) -> Result<(), SourceError> {
        self.files = npy_files(&self.cfg.path)
            .map_err(|e| SourceError::File { path: self.cfg.path.clone(), message: e.to_string() })?;
        self.next = 0;
        Ok(())
    }

    fn next(&mut self, out: &mut Vec<f32>) -> Result<Next, SourceError> {
        out.clear();
        let Some(f) = self.files.get(self.next) else { return Ok(Next::End) };
        let params = FeatureParams { n_mels: self.n_mels, ..FeatureParams::default() };
        let lm = read_logmel_npy(f, &params)?;
        out.extend_from_slice(&lm.data);
        self.next += 1;
        Ok(Next::Data(Instant::now()))
    }

    fn realtime(&self) -> bool {
        false
    }

    fn frames(&self) -> Option<usize> {
        Some(self.n_mels)
    }
}
