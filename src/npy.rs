//! NumPy `.npy` (format 1.0–3.0) reading and writing. Reading accepts little- or big-endian
//! float (f4/f8), integer (i1–i8, u1–u8) and bool arrays, C or Fortran order, and returns
//! C-order f32.

use std::io::Write;
use std::path::Path;

use crate::error::InputError;

/// A C-order f32 array.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Parse `.npy` bytes; errors are plain messages (the caller adds the file).
pub fn parse(bytes: &[u8]) -> Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (missing the \\x93NUMPY magic)".into());
    }
    let major = bytes[6];
    let (header_len, header_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated .npy header".into());
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let header = bytes.get(header_start..header_start + header_len).ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let descr = dict_value(header, "descr").ok_or("the .npy header has no 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran = match dict_value(header, "fortran_order").ok_or("the .npy header has no 'fortran_order'")? {
        "True" => true,
        "False" => false,
        other => return Err(format!("bad fortran_order {other}")),
    };
    let shape_text = dict_value(header, "shape").ok_or("the .npy header has no 'shape'")?;
    let shape: Vec<usize> = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape {shape_text}")))
        .collect::<Result<_, _>>()?;
    // (kind, width, big-endian): f = float, i = signed, u = unsigned / bool.
    let (kind, width, big) = {
        // By `get`, not `split_at`: a non-ASCII character must be an error, not a panic.
        let unsupported = || format!("dtype {descr} is not supported");
        let order = descr.get(..1).ok_or_else(unsupported)?;
        let rest = &descr[1..];
        let big = order == ">";
        if !matches!(order, "<" | ">" | "=" | "|") {
            return Err(unsupported());
        }
        let k = rest.get(..1).ok_or_else(unsupported)?;
        let w = &rest[1..];
        let w: usize = w.parse().map_err(|_| format!("dtype {descr} is not supported"))?;
        match (k, w) {
            ("f", 4 | 8) | ("i", 1 | 2 | 4 | 8) | ("u", 1 | 2 | 4 | 8) => (k.chars().next().unwrap_or('f'), w, big),
            ("b", 1) => ('u', 1, false),
            _ => return Err(format!("dtype {descr} is not supported (float, int, uint or bool expected)")),
        }
    };
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|n| n.checked_mul(width).is_some())
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    let body = &bytes[header_start + header_len..];
    if body.len() < n * width {
        return Err(format!(
            "truncated: shape {:?} needs {} bytes of data, the file has {}",
            shape,
            n * width,
            body.len()
        ));
    }
    let mut flat: Vec<f32> = body[..n * width]
        .chunks_exact(width)
        .map(|c| {
            let mut b = [0u8; 8];
            for (i, byte) in c.iter().enumerate() {
                b[if big { width - 1 - i } else { i }] = *byte;
            }
            // b now holds the value little-endian in its first `width` bytes.
            match (kind, width) {
                ('f', 4) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                ('f', _) => f64::from_le_bytes(b) as f32,
                ('u', _) => u64::from_le_bytes(b) as f32,
                (_, w) => {
                    // Sign-extend a w-byte integer.
                    let shift = 64 - 8 * w as u32;
                    ((i64::from_le_bytes(b) << shift) >> shift) as f32
                }
            }
        })
        .collect();
    if fortran && shape.len() > 1 {
        flat = fortran_to_c(&flat, &shape);
    }
    Ok(NpyArray { shape, data: flat })
}

/// The raw text of `'key': value` in a numpy header dict (value up to the next top-level comma).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let k1 = format!("'{key}'");
    let at = header.find(&k1)? + k1.len();
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0;
    for (i, ch) in rest.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

fn fortran_to_c(data: &[f32], shape: &[usize]) -> Vec<f32> {
    let n = data.len();
    let mut out = vec![0.0; n];
    let mut idx = vec![0usize; shape.len()];
    for (c_pos, o) in out.iter_mut().enumerate() {
        // C index -> multi-index -> Fortran offset.
        let mut rem = c_pos;
        for d in (0..shape.len()).rev() {
            idx[d] = rem % shape[d];
            rem /= shape[d];
        }
        let mut f_pos = 0;
        let mut stride = 1;
        for d in 0..shape.len() {
            f_pos += idx[d] * stride;
            stride *= shape[d];
        }
        *o = data[f_pos];
    }
    out
}

/// Read a `.npy` file.
pub fn read(path: &Path) -> Result<NpyArray, InputError> {
    let bytes = crate::files::read_regular(path).map_err(|e| InputError::new(path, format!("cannot read: {e}")))?;
    parse(&bytes).map_err(|m| InputError::new(path, m))
}

/// `.npy` bytes (format 1.0, little-endian float32, C order).
pub fn to_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let shape_text = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so that magic(6) + version(2) + len(2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Write a float32 `.npy` file.
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), InputError> {
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    let fail = |e: std::io::Error| InputError::new(path, format!("cannot write: {e}"));
    let mut f = std::fs::File::create(path).map_err(fail)?;
    f.write_all(&to_bytes(shape, data)).map_err(fail)?;
    f.sync_all().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_alignment() {
        let data: Vec<f32> = (0..6).map(|i| i as f32 * 0.5).collect();
        let bytes = to_bytes(&[2, 3], &data);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let a = parse(&bytes).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, data);
    }

    #[test]
    fn fortran_order_and_f8_are_converted() {
        // np.array([[1,2,3],[4,5,6]], dtype='<f8', order='F') stores 1,4,2,5,3,6.
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let header = "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }          \n";
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        for v in [1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let a = parse(&bytes).unwrap();
        assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn bad_files_get_specific_messages() {
        assert!(parse(b"RIFF0000WAVE").unwrap_err().contains("magic"));
        let mut b = to_bytes(&[4, 4], &[0.0; 16]);
        b.truncate(b.len() - 8);
        assert!(parse(&b).unwrap_err().contains("truncated"));
        let mut b = to_bytes(&[1], &[0.0]);
        let at = b.windows(3).position(|w| w == b"<f4").unwrap();
        b[at + 1] = b'c'; // complex64
        assert!(parse(&b).unwrap_err().contains("<c4"));
    }

    fn with_header(header: &str, body: &[u8]) -> Vec<u8> {
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn hostile_headers_are_errors_not_panics() {
        for header in [
            "{'descr': '<é4', 'fortran_order': False, 'shape': (2,), }",
            "{'descr': 'é', 'fortran_order': False, 'shape': (2,), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (128, 144115188075855872), }",
            "{'descr': '<f8', 'fortran_order': True, 'shape': (4294967296, 4294967296), }",
            "{'descr': '<f4', 'fortran_order': True, 'shape': (0, 3), }",
        ] {
            let r = parse(&with_header(header, &[0u8; 64]));
            assert!(r.is_err() || r.as_ref().is_ok_and(|a| a.data.is_empty()), "{header}: {r:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_header_and_body_parse_or_fail_without_panicking(
            header in "\\PC{0,80}",
            dims in proptest::collection::vec(0usize..1usize << 40, 0..4),
            fortran in proptest::bool::ANY,
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        ) {
            let _ = parse(&with_header(&header, &body));
            let shape = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
            let f = if fortran { "True" } else { "False" };
            let _ = parse(&with_header(&format!("{{'descr': '<f4', 'fortran_order': {f}, 'shape': ({shape},), }}"), &body));
        }
    }

    #[test]
    fn integer_and_bool_dtypes_become_floats() {
        let mk = |descr: &str, body: &[u8], n: usize| {
            let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({n},), }}");
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend_from_slice(&(header.len() as u16).to_le_bytes());
            b.extend_from_slice(header.as_bytes());
            b.extend_from_slice(body);
            parse(&b).unwrap().data
        };
        assert_eq!(mk("<i4", &[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], 2), vec![1.0, -1.0]);
        assert_eq!(mk(">i2", &[0xff, 0xfe, 0, 7], 2), vec![-2.0, 7.0]);
        assert_eq!(mk("|u1", &[0, 255], 2), vec![0.0, 255.0]);
        assert_eq!(mk("|b1", &[1, 0], 2), vec![1.0, 0.0]);
        assert_eq!(mk("<i8", &(-5i64).to_le_bytes(), 1), vec![-5.0]);
        assert_eq!(mk(">f8", &2.5f64.to_be_bytes(), 1), vec![2.5]);
    }
}
