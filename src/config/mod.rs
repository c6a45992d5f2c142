//! What every configuration shares, and nothing else (a leaf: it imports no other module of
//! the crate). Configuration comes in three steps:
//!
//! 1. raw serde types (`deny_unknown_fields`), parsed by [`parse_toml`]: a syntax or type error
//!    is one line with its position (`line L, column C`) and the key path;
//! 2. a pure `validate()` that collects every [`Problem`] with its key path, and turns the raw
//!    type into a validated one ([`Valid`], or a type of its own) that cannot hold an invalid
//!    value;
//! 3. building the objects — the only step that opens files, devices and sockets.

pub mod identity;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

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

/// A warning when `addr` listens beyond this host (allowed: a SCADA network may need it).
pub fn warn_if_public(w: &mut Problems, key: &str, addr: std::net::SocketAddr) {
    if !addr.ip().is_loopback() {
        w.push(key, format!("{addr} listens beyond this host: make sure a firewall keeps it to the plant network"));
    }
}

impl std::error::Error for Problems {}

/// Errors loading a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {problems}")]
    Invalid { path: PathBuf, problems: Problems },
}

/// A parse failure (message) or a parsed-but-invalid config (problems).
#[derive(Debug)]
pub enum ParseOrInvalid {
    Parse(String),
    Invalid(Problems),
}

/// `line L, column C` (both 1-based) of byte `offset` in `text`: the one position format of
/// every configuration and manifest error.
pub fn position(text: &str, offset: usize) -> String {
    let before = &text[..floor_char_boundary(text, offset.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One line for a toml error of `text`: position, key path (when known) and toml's message
/// (which spans several lines with a source excerpt otherwise).
pub fn toml_error(text: &str, e: &toml::de::Error, key: &str) -> String {
    let msg = e.message().trim().replace('\n', " ");
    let at = e.span().map(|s| position(text, s.start));
    // A syntax-level error (a number too large, a bad string) has no serde path: name the
    // key from the text — the table header above and the `key =` of the line.
    let guessed = match (key.is_empty(), e.span()) {
        (true, Some(s)) => key_at(text, s.start),
        _ => None,
    };
    let key = guessed.as_deref().unwrap_or(key);
    match (at, key.is_empty()) {
        (Some(at), false) => format!("{at}: {key}: {msg}"),
        (Some(at), true) => format!("{at}: {msg}"),
        (None, false) => format!("{key}: {msg}"),
        (None, true) => msg,
    }
}

/// The dotted key whose value sits at byte `offset` of `text`, read off the text: the last
/// `[table]` / `[[array]]` header before it and the line's `key =`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = &text[..floor_char_boundary(text, offset.min(text.len()))];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[line_start..].find('\n').map_or(text.len(), |i| line_start + i);
    let (name, _) = text[line_start..line_end].split_once('=')?;
    let name = name.trim().trim_matches('"');
    if name.is_empty() || name.starts_with('[') || name.contains(char::is_whitespace) {
        return None;
    }
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{name}"),
        _ => name.to_string(),
    })
}

/// Parse TOML `text` into `T`; an error is one line with the position and the key path.
pub fn parse_toml<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        toml_error(text, e.inner(), &key)
    })
}

/// Read and parse a TOML file (not yet validated).
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text =
        crate::files::read_regular_string(path).map_err(|error| ConfigError::Read { path: path.into(), error })?;
    parse_toml(&text).map_err(|message| ConfigError::Parse { path: path.into(), message })
}

/// A configuration that can check itself without touching the disk.
pub trait Validate {
    /// Every problem, each with its key path.
    fn validate(&self) -> Problems;
}

/// A configuration that passed [`Validate::validate`]: only [`Valid::new`] makes one, so a
/// function taking `&Valid<T>` never sees an invalid `T` and never validates again.
#[derive(Debug, Clone, PartialEq)]
pub struct Valid<T>(T);

impl<T: Validate> Valid<T> {
    pub fn new(cfg: T) -> Result<Self, Problems> {
        cfg.validate().into_result(Valid(cfg))
    }
}

impl<T> Valid<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Valid<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_too_large_names_its_key() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct S {
            scoring: std::collections::BTreeMap<String, u64>,
        }
        let e = parse_toml::<S>("[scoring]\nmax_wait_ms = 18446744073709551615\n").unwrap_err();
        assert!(e.starts_with("line 2, column 15: scoring.max_wait_ms: "), "{e}");
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }

    #[test]
    fn errors_give_line_column_and_key_path_on_one_line() {
        let e = parse_toml::<Outer>("\n[inner]\nn = \"three\"\n").unwrap_err();
        assert!(e.starts_with("line 3, column 5: inner.n: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = parse_toml::<Outer>("[inner]\nn = 1\nm = 2\n").unwrap_err();
        assert!(e.starts_with("line 3, column 1:") && e.contains('m'), "{e}");
        assert_eq!(position("ab\ncé\nx", 6), "line 2, column 3");
    }
}
