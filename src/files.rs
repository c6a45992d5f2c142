//! Finding input files (a leaf: no other module of the crate is imported).

use std::path::{Path, PathBuf};

/// Make `p` absolute against `base` (a config file's folder) when it is relative.
pub fn absolute(p: &mut PathBuf, base: &Path) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

/// A file, or the files of a folder whose extension is `ext` (any case), sorted by name:
/// the one rule for "a file or a folder of them" inputs (WAV replays, ADBench tables).
pub fn file_or_folder(path: &Path, ext: &str) -> std::io::Result<Vec<std::path::PathBuf>> {
    if path.is_dir() {
        let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case(ext)))
            .collect();
        v.sort();
        if v.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no .{ext} files in the folder")));
        }
        Ok(v)
    } else if path.exists() {
        Ok(vec![path.to_path_buf()])
    } else {
        Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    }
}

/// The folder holding `file` (`.` for a bare file name).
pub fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Write `bytes` to `path` through a temporary file in the same folder and a rename, so a
/// reader (or a crash) never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
    })
}
