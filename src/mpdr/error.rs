//! The one error type of training (the recipe, its stages, the epoch watch, the reports).

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A libtorch call failed.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// A bundle or checkpoint could not be written or read.
    #[error(transparent)]
    Bundle(#[from] crate::model::BundleError),
    /// The data, the networks or a checkpoint do not fit the recipe.
    #[error("{0}")]
    Mismatch(String),
    /// A report file could not be written.
    #[error("{}: cannot write: {error}", path.display())]
    Write { path: std::path::PathBuf, error: std::io::Error },
    #[error(transparent)]
    Plot(#[from] crate::eval::plot::PlotError),
}

/// `Err(TrainError::Mismatch(message))` unless `ok`.
pub(crate) fn ensure(ok: bool, message: impl FnOnce() -> String) -> Result<(), TrainError> {
    if ok {
        Ok(())
    } else {
        Err(TrainError::Mismatch(message()))
    }
}
