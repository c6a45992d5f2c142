//! The error every input reader returns: the file and what is wrong with it, on one line.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct InputError {
    pub path: PathBuf,
    pub message: String,
}

impl InputError {
    pub fn new(path: &Path, message: impl Into<String>) -> Self {
        InputError { path: path.to_path_buf(), message: message.into() }
    }
}

/// An optional value for a log line: the value, or `none` (never Rust's `Some(..)`).
pub fn or_none<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "none".to_string(), |x| x.to_string())
}
