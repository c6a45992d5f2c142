//! MNIST's IDX files (`t10k-images-idx3-ubyte[.gz]`, ...): a big-endian header — two zero
//! bytes, a type code (0x08 = unsigned byte), the number of dimensions — then one u32 per
//! dimension and the data. Gzipped files (magic 1f 8b) are inflated on the fly.

use std::io::Read;
use std::path::Path;

use crate::error::InputError;

/// An unsigned-byte IDX array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Largest inflated size of a gzipped IDX file (MNIST's largest is 47 MB): a gzip bomb stops here.
const MAX_INFLATED: u64 = 1 << 30;

/// Read an unsigned-byte IDX file with `want_dims` dimensions (3 for images, 1 for labels).
pub fn read_idx(path: &Path, want_dims: usize) -> Result<Idx, InputError> {
    let e = |m: String| InputError::new(path, m);
    let raw = crate::files::read_regular(path).map_err(|err| e(format!("cannot read: {err}")))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .take(MAX_INFLATED + 1)
            .read_to_end(&mut out)
            .map_err(|err| e(format!("corrupt gzip stream: {err}")))?;
        if out.len() as u64 > MAX_INFLATED {
            return Err(e(format!("inflates to more than {} MiB: not an MNIST file", MAX_INFLATED >> 20)));
        }
        out
    } else {
        raw
    };
    parse(&bytes, want_dims).map_err(e)
}

fn parse(b: &[u8], want_dims: usize) -> Result<Idx, String> {
    if b.len() < 4 {
        return Err(format!("too short for an IDX header ({} bytes)", b.len()));
    }
    let want_magic = 0x0800 | want_dims as u32;
    let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if magic != want_magic {
        return Err(format!(
            "wrong magic number 0x{magic:08x}: expected 0x{want_magic:08x} (unsigned-byte IDX with {want_dims} dimension(s))"
        ));
    }
    let head = 4 + 4 * want_dims;
    if b.len() < head {
        return Err(format!("header cut short: {} bytes, need {head}", b.len()));
    }
    let dims: Vec<usize> = (0..want_dims)
        .map(|i| u32::from_be_bytes([b[4 + 4 * i], b[5 + 4 * i], b[6 + 4 * i], b[7 + 4 * i]]) as usize)
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} are too large"))?;
    if b.len() - head != n {
        return Err(format!("the header promises {n} bytes of data ({dims:?}), the file has {}", b.len() - head));
    }
    Ok(Idx { dims, data: b[head..].to_vec() })
}

/// Write an unsigned-byte IDX file, gzipped when `gzip` (fixtures for tests).
pub fn write_idx(path: &Path, idx: &Idx, gzip: bool) -> Result<(), InputError> {
    use std::io::Write;
    let mut b = vec![0u8, 0, 0x08, idx.dims.len() as u8];
    for &d in &idx.dims {
        b.extend_from_slice(&(d as u32).to_be_bytes());
    }
    b.extend_from_slice(&idx.data);
    let e = |err: std::io::Error| InputError::new(path, format!("cannot write: {err}"));
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&b).map_err(e)?;
        b = enc.finish().map_err(e)?;
    }
    std::fs::write(path, b).map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_plain_and_gzipped_and_checks_magic_and_length() {
        let d = tempfile::tempdir().unwrap();
        let idx = Idx { dims: vec![2, 3, 3], data: (0..18).collect() };
        for gz in [false, true] {
            let p = d.path().join(format!("a{gz}"));
            write_idx(&p, &idx, gz).unwrap();
            assert_eq!(read_idx(&p, 3).unwrap(), idx);
            let err = read_idx(&p, 1).unwrap_err().to_string();
            assert!(err.contains(&format!("a{gz}")) && err.contains("wrong magic number 0x00000803"), "{err}");
        }
        let mut bytes = std::fs::read(d.path().join("afalse")).unwrap();
        bytes.pop();
        std::fs::write(d.path().join("short"), &bytes).unwrap();
        let err = read_idx(&d.path().join("short"), 3).unwrap_err().to_string();
        assert!(err.contains("promises 18 bytes") && err.contains("has 17"), "{err}");
        std::fs::write(d.path().join("gz"), [0x1f, 0x8b, 1, 2, 3]).unwrap();
        assert!(read_idx(&d.path().join("gz"), 3).unwrap_err().to_string().contains("gzip"));
    }
}
