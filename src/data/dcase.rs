//! DCASE 2020 Task 2 folders: `<machine>/train/normal_id_XX_*.{wav,npy}` and
//! `<machine>/test/{normal,anomaly}_id_XX_*.{wav,npy}`. Machine ids and labels come from the
//! file names; `.npy` files are precomputed log-mel (n_mels, frames).

use std::path::{Path, PathBuf};

use crate::error::InputError;

/// One labelled recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcaseFile {
    pub path: PathBuf,
    /// Machine id, e.g. "00".
    pub id: String,
    pub anomaly: bool,
}

/// A machine-type folder.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineDir {
    pub root: PathBuf,
    /// Folder name, e.g. "pump".
    pub machine: String,
    pub train: Vec<DcaseFile>,
    pub test: Vec<DcaseFile>,
}

impl MachineDir {
    /// Sorted, distinct machine ids of the test files.
    pub fn test_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.test.iter().map(|f| f.id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Parse `normal_id_00_00000012.wav` -> (anomaly?, "00").
pub fn parse_name(path: &Path) -> Result<(bool, String), InputError> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let parts: Vec<&str> = stem.split('_').collect();
    let anomaly = match parts.first() {
        Some(&"normal") => false,
        Some(&"anomaly") => true,
        _ => {
            return Err(InputError::new(
                path,
                "file name has no label: expected normal_id_XX_*.wav or anomaly_id_XX_*.wav",
            ))
        }
    };
    match (parts.get(1), parts.get(2)) {
        (Some(&"id"), Some(id)) if !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) => {
            Ok((anomaly, id.to_string()))
        }
        _ => Err(InputError::new(path, "file name has no machine id: expected <label>_id_XX_*.wav")),
    }
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, InputError> {
    let entries = std::fs::read_dir(dir).map_err(|e| InputError::new(dir, format!("cannot read folder: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(),
                    Some("wav" | "npy")
                )
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Whether `root` is a plain folder of recordings (no `train/`, WAV or `.npy` files in it):
/// every file is a normal training clip of one machine, id 00.
pub fn is_plain(root: &Path) -> bool {
    !root.join("train").is_dir() && list(root).is_ok_and(|f| !f.is_empty())
}

/// Read a machine folder: the DCASE layout (training files must be normal; every file must
/// carry a label and id), or a plain folder of normal recordings ([`is_plain`]).
pub fn scan(root: &Path) -> Result<MachineDir, InputError> {
    if !root.is_dir() {
        return Err(InputError::new(root, "not a folder (expected a DCASE machine folder with train/ and test/)"));
    }
    let machine = root.file_name().and_then(|n| n.to_str()).unwrap_or("machine").to_string();
    if is_plain(root) {
        let train = list(root)?.into_iter().map(|path| DcaseFile { path, id: "00".into(), anomaly: false }).collect();
        return Ok(MachineDir { root: root.to_path_buf(), machine, train, test: Vec::new() });
    }
    let read = |sub: &str, need: bool| -> Result<Vec<DcaseFile>, InputError> {
        let dir = root.join(sub);
        if !dir.is_dir() {
            return if need { Err(InputError::new(&dir, "missing folder")) } else { Ok(Vec::new()) };
        }
        list(&dir)?
            .into_iter()
            .map(|path| parse_name(&path).map(|(anomaly, id)| DcaseFile { path, id, anomaly }))
            .collect()
    };
    let train = read("train", true)?;
    if train.is_empty() {
        return Err(InputError::new(&root.join("train"), "no training files (.wav or .npy)"));
    }
    if let Some(bad) = train.iter().find(|f| f.anomaly) {
        return Err(InputError::new(&bad.path, "anomalous file in train/: training data must be normal"));
    }
    let test = read("test", false)?;
    Ok(MachineDir { root: root.to_path_buf(), machine, train, test })
}

/// Machine folders under `root`: `root` itself when it has a train/ folder, else its
/// sub-folders that do (sorted).
pub fn machine_folders(root: &Path) -> Result<Vec<PathBuf>, InputError> {
    if root.join("train").is_dir() || is_plain(root) {
        return Ok(vec![root.to_path_buf()]);
    }
    let entries = std::fs::read_dir(root).map_err(|e| InputError::new(root, format!("cannot read folder: {e}")))?;
    let mut dirs: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("train").is_dir()).collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(InputError::new(
            root,
            "no recordings here: expected WAV files of normal operation, or the DCASE layout (<machine>/train/normal_id_XX_*.wav)",
        ));
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_folder_of_wavs_is_one_machine_of_normal_clips() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("press-3");
        std::fs::create_dir_all(&root).unwrap();
        for n in ["monday.wav", "tuesday.WAV", "notes.txt"] {
            std::fs::write(root.join(n), b"x").unwrap();
        }
        assert!(is_plain(&root));
        assert_eq!(machine_folders(&root).unwrap(), vec![root.clone()]);
        let md = scan(&root).unwrap();
        assert_eq!(md.machine, "press-3");
        assert_eq!(md.train.len(), 2);
        assert!(md.train.iter().all(|f| !f.anomaly && f.id == "00") && md.test.is_empty());
        let empty = d.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(machine_folders(&empty).unwrap_err().to_string().contains("no recordings here"));
    }

    #[test]
    fn names_give_labels_and_ids() {
        assert_eq!(parse_name(Path::new("a/normal_id_02_00000012.wav")).unwrap(), (false, "02".into()));
        assert_eq!(parse_name(Path::new("anomaly_id_00_00000001.npy")).unwrap(), (true, "00".into()));
        assert!(parse_name(Path::new("id_00_00000001.wav")).unwrap_err().to_string().contains("no label"));
        assert!(parse_name(Path::new("normal_00.wav")).unwrap_err().to_string().contains("machine id"));
    }

    #[test]
    fn scan_reads_a_folder_and_refuses_bad_layouts() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("pump");
        std::fs::create_dir_all(m.join("train")).unwrap();
        assert!(scan(&m).unwrap_err().to_string().contains("no training files"));
        for f in [
            "train/normal_id_00_00000000.wav",
            "train/normal_id_02_00000000.npy",
            "train/notes.txt",
            "test/anomaly_id_02_00000001.wav",
            "test/normal_id_00_00000003.wav",
        ] {
            std::fs::create_dir_all(m.join(f).parent().unwrap()).unwrap();
            std::fs::write(m.join(f), b"x").unwrap();
        }
        let md = scan(&m).unwrap();
        assert_eq!((md.machine.as_str(), md.train.len(), md.test.len()), ("pump", 2, 2));
        assert_eq!(md.test_ids(), vec!["00".to_string(), "02".to_string()]);
        assert_eq!(machine_folders(d.path()).unwrap(), vec![m.clone()]);
        std::fs::write(m.join("test/id_00_00000009.wav"), b"x").unwrap();
        assert!(scan(&m).unwrap_err().to_string().contains("id_00_00000009.wav"));
        assert!(scan(&d.path().join("nope")).unwrap_err().to_string().contains("not a folder"));
    }
}
