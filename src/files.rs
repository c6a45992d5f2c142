//! Finding input files (a leaf: no other module of the crate is imported).

use std::path::{Path, PathBuf};

/// Make `p` absolute against `base` (a config file's folder) when it is relative.
pub fn absolute(p: &mut PathBuf, base: &Path) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

/// A secret or certificate key's value may name a systemd credential instead of a file:
/// `credential:NAME` is `$CREDENTIALS_DIRECTORY/NAME` (the unit's `LoadCredential=NAME:…`).
pub const CREDENTIAL: &str = "credential:";

/// [`absolute`] for a secret file key: a `credential:NAME` is left as it is.
pub fn absolute_secret(p: &mut PathBuf, base: &Path) {
    if !p.to_str().is_some_and(|s| s.starts_with(CREDENTIAL)) {
        absolute(p, base);
    }
}

/// The file a secret key names: itself, or for `credential:NAME` the credential systemd
/// handed over in `$CREDENTIALS_DIRECTORY`.
pub fn secret_path(p: &Path) -> Result<PathBuf, String> {
    let Some(name) = p.to_str().and_then(|s| s.strip_prefix(CREDENTIAL)) else {
        return Ok(p.to_path_buf());
    };
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(format!("{}: a credential name is one file name, got {name:?}", p.display()));
    }
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) if !dir.is_empty() => Ok(Path::new(&dir).join(name)),
        _ => Err(format!(
            "credential {name}: $CREDENTIALS_DIRECTORY is not set (the unit's LoadCredential={name}:/path provides it; outside systemd set it to a folder holding {name})"
        )),
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

/// What kind of thing `meta` describes, for "expected a regular file" errors.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Open `path` for reading only if it is a regular file: a FIFO, socket or device is refused
/// at once (opened non-blocking, so a FIFO with no writer cannot hang the caller) with one
/// line naming what it is. Every input file (weights, recordings, secrets, configs) goes
/// through here.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f =
        std::fs::OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32).open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} (expected a regular file)", kind_of(&meta)),
        ));
    }
    Ok(f)
}

/// [`std::fs::read`] for regular files only (see [`open_regular`]).
pub fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = open_regular(path)?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

/// [`std::fs::read_to_string`] for regular files only (see [`open_regular`]).
pub fn read_regular_string(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_regular(path)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Bytes free for an unprivileged writer on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_and_folders_are_refused_at_once_and_regular_files_read() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("weights.pt");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let e = read_regular(&fifo).unwrap_err().to_string();
        assert!(e.contains("a FIFO (expected a regular file)"), "{e}");
        let e = read_regular(d.path()).unwrap_err().to_string();
        assert!(e.contains("folder") || e.contains("directory"), "{e}");
        let f = d.path().join("ok.txt");
        std::fs::write(&f, "hi").unwrap();
        assert_eq!(read_regular_string(&f).unwrap(), "hi");
        assert!(free_bytes(d.path()).unwrap() > 0);
    }
}
