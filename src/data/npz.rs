//! ADBench-style `.npz` tables: arrays `X` (n, d) and `y` (n,), y = 1 for anomalies.

use std::io::Read;
use std::path::Path;

use super::npy;
use crate::error::InputError;

/// A labelled table: row-major `x` (n x d), labels (true = anomaly).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub n: usize,
    pub d: usize,
    pub x: Vec<f32>,
    pub y: Vec<bool>,
}

/// Largest inflated array of an `.npz`.
const MAX_ENTRY: u64 = 2 << 30;

/// Read `X` and `y` from an `.npz` (stored or deflated) and check them.
pub fn read_table(path: &Path) -> Result<Table, InputError> {
    let e = |m: String| InputError::new(path, m);
    let file = crate::files::open_regular(path).map_err(|err| e(format!("cannot open: {err}")))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|err| e(format!("not an .npz (zip) file: {err}")))?;
    let mut get = |key: &str| -> Result<npy::NpyArray, InputError> {
        let mut entry = zip
            .by_name(&format!("{key}.npy"))
            .map_err(|_| e(format!("no array '{key}' (an ADBench .npz has keys X and y)")))?;
        // A zip bomb stops at MAX_ENTRY: ADBench tables are megabytes.
        let mut bytes = Vec::new();
        (&mut entry)
            .take(MAX_ENTRY + 1)
            .read_to_end(&mut bytes)
            .map_err(|err| e(format!("{key}: cannot read: {err}")))?;
        if bytes.len() as u64 > MAX_ENTRY {
            return Err(e(format!("{key}: inflates to more than {} MiB", MAX_ENTRY >> 20)));
        }
        npy::parse(&bytes).map_err(|m| e(format!("{key}: {m}")))
    };
    let x = get("X")?;
    let y = get("y")?;
    if x.shape.len() != 2 {
        return Err(e(format!("X must be 2-D (n, d), got shape {:?}", x.shape)));
    }
    let (n, d) = (x.shape[0], x.shape[1]);
    if d == 0 || n == 0 {
        return Err(e(format!("X is empty: shape {:?}", x.shape)));
    }
    if y.data.len() != n || y.shape.len() != 1 {
        return Err(e(format!("y must have shape ({n},) to match X, got {:?}", y.shape)));
    }
    if let Some(i) = x.data.iter().position(|v| !v.is_finite()) {
        return Err(e(format!("X has a non-finite value at row {}, column {}", i / d, i % d)));
    }
    if let Some(v) = y.data.iter().find(|v| **v != 0.0 && **v != 1.0) {
        return Err(e(format!("y must be 0 (normal) or 1 (anomaly), found {v}")));
    }
    let labels: Vec<bool> = y.data.iter().map(|v| *v == 1.0).collect();
    let anomalies = labels.iter().filter(|a| **a).count();
    if anomalies == 0 || anomalies == n {
        return Err(e(format!("y has a single class ({anomalies} anomalies of {n}): need both")));
    }
    Ok(Table { n, d, x: x.data, y: labels })
}

/// Write a table as an uncompressed `.npz` (X float64, y int64) — for tests and fixtures.
pub fn write_table(path: &Path, t: &Table) -> Result<(), InputError> {
    use std::io::Write;
    let e = |m: String| InputError::new(path, m);
    let f = std::fs::File::create(path).map_err(|err| e(format!("cannot create: {err}")))?;
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let arr = |descr: &str, shape: String, body: Vec<u8>| {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(&body);
        b
    };
    let x: Vec<u8> = t.x.iter().flat_map(|v| (*v as f64).to_le_bytes()).collect();
    let y: Vec<u8> = t.y.iter().flat_map(|v| (*v as i64).to_le_bytes()).collect();
    for (name, bytes) in
        [("X.npy", arr("<f8", format!("({}, {})", t.n, t.d), x)), ("y.npy", arr("<i8", format!("({},)", t.n), y))]
    {
        z.start_file(name, opts).map_err(|err| e(err.to_string()))?;
        z.write_all(&bytes).map_err(|err| e(err.to_string()))?;
    }
    z.finish().map_err(|err| e(err.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip_and_bad_ones_name_the_problem() {
        let d = tempfile::tempdir().unwrap();
        let t = Table { n: 3, d: 2, x: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5], y: vec![false, true, false] };
        let p = d.path().join("t.npz");
        write_table(&p, &t).unwrap();
        assert_eq!(read_table(&p).unwrap(), t);
        let one = Table { y: vec![false; 3], ..t.clone() };
        write_table(&p, &one).unwrap();
        assert!(read_table(&p).unwrap_err().to_string().contains("single class"));
        let nan = Table { x: vec![1.0, f32::NAN, 3.0, 4.0, 5.0, 6.0], ..t };
        write_table(&p, &nan).unwrap();
        let m = read_table(&p).unwrap_err().to_string();
        assert!(m.contains("row 0, column 1") && m.contains("t.npz"), "{m}");
        std::fs::write(&p, b"not a zip").unwrap();
        assert!(read_table(&p).unwrap_err().to_string().contains("not an .npz"));
    }
}
