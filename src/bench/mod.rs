//! Benchmarks of the paper through the same `nn`, `mpdr`, `model` and `eval` code as the
//! daemon: tabular vectors (ADBench, Table 6) and MNIST hold-out digits (Tables 1–2).

pub mod mnist;
pub mod vectors;

use std::path::Path;

use anyhow::{Context, Result};

/// Write `contents` to `path`; an error names the file.
pub(crate) fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("{}: cannot write", path.display()))
}

/// A benchmark's `results.json` (pretty) and `results.md` under `out`.
pub(crate) fn write_results(out: &Path, json: &serde_json::Value, md: &str) -> Result<()> {
    write_file(&out.join("results.json"), serde_json::to_string_pretty(json)?)?;
    write_file(&out.join("results.md"), md)
}
