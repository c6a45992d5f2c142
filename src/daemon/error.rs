//! The one error type of `mpdr monitor`: what stops the daemon from starting, reloading or
//! shutting down cleanly.

use std::net::SocketAddr;

/// Why the daemon stopped (or a reload was rejected).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("scoring.device: {0}")]
    Device(crate::device::DeviceError),
    #[error(transparent)]
    Bundle(#[from] crate::model::BundleError),
    #[error(transparent)]
    Outbox(#[from] crate::alarm::outbox::OutboxError),
    #[error(transparent)]
    Worker(#[from] crate::alarm::deliver::WorkerError),
    /// A sink's factory failed (its secret, broker, file or port).
    #[error("sink \"{name}\": {message}")]
    Sink { name: String, message: String },
    #[error("server.listen = \"{addr}\": {message}")]
    Http { addr: SocketAddr, message: String },
    #[error("cannot start the {thread} thread: {error}")]
    Thread { thread: &'static str, error: std::io::Error },
    /// The scorer thread ended or failed (loading a model, or unexpectedly).
    #[error("scorer: {0}")]
    Scorer(String),
    /// A reload's new bundle was refused by the scorer (the running one stays).
    #[error("model swap refused: {0}")]
    Swap(String),
    #[error("shutdown took longer than pipeline.shutdown_timeout_s; some threads were abandoned")]
    Shutdown,
}

/// `map_err` for a thread spawn.
pub(crate) fn thread(name: &'static str) -> impl FnOnce(std::io::Error) -> DaemonError {
    move |error| DaemonError::Thread { thread: name, error }
}
