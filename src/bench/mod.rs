//! Benchmarks of the paper through the same `nn`, `mpdr`, `model` and `eval` code as the
//! daemon: tabular vectors (ADBench, Table 6) and MNIST hold-out digits (Tables 1–2).

pub mod mnist;
pub mod vectors;

use std::path::Path;

/// Why a benchmark stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A data file (the path and what is wrong).
    #[error(transparent)]
    Input(#[from] crate::error::InputError),
    #[error(transparent)]
    Train(#[from] crate::mpdr::error::TrainError),
    #[error(transparent)]
    Bundle(#[from] crate::model::BundleError),
    #[error(transparent)]
    Metric(#[from] crate::eval::metrics::MetricError),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    #[error("{}: {error}", path.display())]
    Io { path: std::path::PathBuf, error: std::io::Error },
    /// Arguments or data the benchmark cannot run on.
    #[error("{0}")]
    Invalid(String),
    /// Where in the benchmark an error happened (dataset, model, seed; digit).
    #[error("{context}: {error}")]
    In { context: String, error: Box<BenchError> },
}

pub(crate) type Result<T, E = BenchError> = std::result::Result<T, E>;

/// `Err(BenchError::Invalid(message))` unless `ok`.
pub(crate) fn ensure(ok: bool, message: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(BenchError::Invalid(message()))
    }
}

/// Say where an error happened.
pub(crate) trait Context<T> {
    fn with_context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<BenchError>> Context<T> for std::result::Result<T, E> {
    fn with_context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| BenchError::In { context: context(), error: Box::new(e.into()) })
    }
}

/// Write `contents` to `path`; an error names the file.
pub(crate) fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, contents).map_err(|error| BenchError::Io { path: path.to_path_buf(), error })
}

/// A benchmark's `results.json` (pretty) and `results.md` under `out`.
pub(crate) fn write_results(out: &Path, json: &serde_json::Value, md: &str) -> Result<()> {
    write_file(&out.join("results.json"), serde_json::to_string_pretty(json).unwrap_or_default())?;
    write_file(&out.join("results.md"), md)
}
