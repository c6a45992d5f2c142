//! Weight files: checksums, and a safetensors file's tensors checked against the network the
//! manifest describes before libtorch reads them.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};
use tch::nn;

use super::BundleError;

pub(super) fn sha256_file(path: &Path) -> Result<(String, u64), BundleError> {
    let bytes = crate::files::read_regular(path)
        .map_err(|e| BundleError::Io { path: path.into(), message: format!("cannot read: {e}") })?;
    let digest = Sha256::digest(&bytes);
    Ok((digest.iter().map(|b| format!("{b:02x}")).collect(), bytes.len() as u64))
}

/// Names and shapes in a safetensors file, from its JSON header.
fn safetensors_shapes(path: &Path) -> Result<BTreeMap<String, Vec<i64>>, BundleError> {
    let bytes = crate::files::read_regular(path)
        .map_err(|e| BundleError::Io { path: path.into(), message: format!("cannot read: {e}") })?;
    safetensors_header(&bytes).map_err(|detail| BundleError::Mismatch { path: path.into(), detail })
}

/// Names and shapes of the tensors a safetensors file declares (its 8-byte length, then its
/// JSON header), checked against the file's size: every tensor's byte range within the data.
pub fn safetensors_header(bytes: &[u8]) -> Result<BTreeMap<String, Vec<i64>>, String> {
    let len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        .ok_or("not a safetensors file (too short)")?;
    let data_len =
        (bytes.len() as u64 - 8).checked_sub(len).ok_or("not a safetensors file (header past end of file)")?;
    let header = &bytes[8..8 + len as usize];
    let json: serde_json::Value = serde_json::from_slice(header).map_err(|e| format!("not a safetensors file: {e}"))?;
    let obj = json.as_object().ok_or("safetensors header is not an object")?;
    let mut out = BTreeMap::new();
    for (name, v) in obj {
        if name == "__metadata__" {
            continue;
        }
        let shape: Vec<i64> = v
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|d| d.as_i64().filter(|d| *d >= 0)).collect())
            .ok_or_else(|| format!("tensor {name} has no shape of non-negative integers"))?;
        let offsets: Option<Vec<u64>> =
            v.get("data_offsets").and_then(|o| o.as_array()).and_then(|a| a.iter().map(|d| d.as_u64()).collect());
        match offsets.as_deref() {
            Some(&[a, b]) if a <= b && b <= data_len => {}
            _ => {
                return Err(format!("tensor {name}: data_offsets missing or outside the file's {data_len} data bytes"))
            }
        }
        out.insert(name.clone(), shape);
    }
    Ok(out)
}

/// Check a file's tensors against a VarStore's variables, then load them.
pub(super) fn verify_and_load(vs: &mut nn::VarStore, path: &Path) -> Result<(), BundleError> {
    let in_file = safetensors_shapes(path)?;
    let wanted: BTreeMap<String, Vec<i64>> = vs.variables().into_iter().map(|(k, v)| (k, v.size())).collect();
    for (name, shape) in &wanted {
        match in_file.get(name) {
            None => {
                return Err(BundleError::Mismatch {
                    path: path.into(),
                    detail: format!("tensor {name} is missing (the manifest's network needs it)"),
                })
            }
            Some(s) if s != shape => {
                return Err(BundleError::Mismatch {
                    path: path.into(),
                    detail: format!("tensor {name} has shape {s:?}, the manifest's network needs {shape:?}"),
                })
            }
            _ => {}
        }
    }
    if let Some(extra) = in_file.keys().find(|k| !wanted.contains_key(*k)) {
        return Err(BundleError::Mismatch {
            path: path.into(),
            detail: format!("unexpected tensor {extra} (not in the manifest's network)"),
        });
    }
    vs.load(path).map_err(|e| BundleError::Torch { path: path.into(), message: e.to_string() })
}
