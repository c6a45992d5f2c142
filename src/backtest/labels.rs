//! What a backtest replays: recordings in order, each with its labelled segments. From a labels
//! CSV (`file,start_s,end_s,label`, label `normal` or `anomaly`; time not covered by an anomaly
//! row is normal) or from a DCASE machine folder's test clips (one segment per clip).

use std::path::{Path, PathBuf};

use crate::data::dcase::DcaseFile;
use crate::error::InputError;

/// One labelled stretch of a recording, seconds from the recording's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start_s: f64,
    pub end_s: f64,
    pub anomaly: bool,
}

/// One recording of the replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub path: PathBuf,
    pub duration_s: f64,
    /// Anomalous segments (what is not in one is normal), sorted, not overlapping.
    pub anomalies: Vec<Segment>,
}

/// Duration in seconds of a clip: a WAV's header, or a log-mel `.npy`'s frames x hop.
pub fn clip_duration(path: &Path, params: &crate::features::FeatureParams) -> Result<f64, InputError> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
        let lm = crate::features::read_logmel_npy(path, params)?;
        return Ok(lm.n_frames as f64 * params.hop_length as f64 / params.sample_rate as f64);
    }
    wav_duration(path)
}

/// Duration in seconds from a WAV header.
pub fn wav_duration(path: &Path) -> Result<f64, InputError> {
    let r = hound::WavReader::open(path).map_err(|e| InputError::new(path, format!("not a readable WAV: {e}")))?;
    let spec = r.spec();
    Ok(r.duration() as f64 / spec.sample_rate as f64)
}

/// Recordings of a labels CSV; paths in it are relative to the CSV's folder. Every bad row is
/// an error naming the CSV, the row and what is wrong.
pub fn read_csv(csv: &Path) -> Result<Vec<Recording>, InputError> {
    let text = crate::files::read_regular_string(csv).map_err(|e| InputError::new(csv, format!("cannot read: {e}")))?;
    // A spreadsheet's UTF-8 byte-order mark is not part of the header.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    // Normal rows, checked against every anomaly row once all are read.
    let mut normals: Vec<(usize, PathBuf, f64, f64)> = Vec::new();
    let base = csv.parent().unwrap_or(Path::new("."));
    let mut recs: Vec<Recording> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let row = i + 1;
        let line = line.trim();
        if line.is_empty() || (row == 1 && line.starts_with("file,")) {
            continue;
        }
        let bad = |m: String| InputError::new(csv, format!("row {row}: {m}"));
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        let [file, start, end, label] = cols[..] else {
            return Err(bad(format!("expected file,start_s,end_s,label, got {} column(s)", cols.len())));
        };
        let num = |v: &str, what: &str| -> Result<f64, InputError> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad(format!("{what} must be a number of seconds, got \"{v}\"")))
        };
        let (start_s, end_s) = (num(start, "start_s")?, num(end, "end_s")?);
        if start_s < 0.0 || end_s <= start_s {
            return Err(bad(format!("segment {start_s}..{end_s} s: need 0 <= start_s < end_s")));
        }
        let anomaly = match label {
            "anomaly" => true,
            "normal" => false,
            other => return Err(bad(format!("label must be normal or anomaly, got \"{other}\""))),
        };
        let path = base.join(file);
        if !path.is_file() {
            return Err(bad(format!("{}: no such file", path.display())));
        }
        let k = match recs.iter().position(|r| r.path == path) {
            Some(k) => k,
            None => {
                recs.push(Recording { duration_s: wav_duration(&path)?, path: path.clone(), anomalies: Vec::new() });
                recs.len() - 1
            }
        };
        let rec = &mut recs[k];
        if end_s > rec.duration_s + 1e-6 {
            return Err(bad(format!("segment ends at {end_s} s, past the file's end ({:.3} s)", rec.duration_s)));
        }
        if anomaly {
            if let Some(o) = rec.anomalies.iter().find(|s| start_s < s.end_s && s.start_s < end_s) {
                return Err(bad(format!("segment {start_s}..{end_s} s overlaps {}..{} s", o.start_s, o.end_s)));
            }
            rec.anomalies.push(Segment { start_s, end_s, anomaly });
            rec.anomalies.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        } else {
            normals.push((row, path, start_s, end_s));
        }
    }
    // A row saying "normal" over time another says "anomaly" contradicts it: say which.
    for (row, path, start_s, end_s) in normals {
        let rec = recs.iter().find(|r| r.path == path);
        if let Some(o) = rec.and_then(|r| r.anomalies.iter().find(|s| start_s < s.end_s && s.start_s < end_s)) {
            return Err(InputError::new(
                csv,
                format!(
                    "row {row}: normal segment {start_s}..{end_s} s overlaps the anomaly {}..{} s",
                    o.start_s, o.end_s
                ),
            ));
        }
    }
    if recs.is_empty() {
        return Err(InputError::new(csv, "no rows: expected file,start_s,end_s,label"));
    }
    Ok(recs)
}

/// WAVs without labels: all normal (a false-alarm check on healthy recordings).
pub fn unlabelled(files: &[PathBuf]) -> Result<Vec<Recording>, InputError> {
    files
        .iter()
        .map(|p| Ok(Recording { path: p.clone(), duration_s: wav_duration(p)?, anomalies: Vec::new() }))
        .collect()
}

/// DCASE test clips, each one segment, in a fixed shuffled order (normal and anomalous mixed,
/// as a stream would meet them; the same order on every run).
pub fn dcase_clips(clips: &[DcaseFile], params: &crate::features::FeatureParams) -> Result<Vec<Recording>, InputError> {
    let mut order: Vec<&DcaseFile> = clips.iter().collect();
    order.sort_by(|a, b| a.path.cmp(&b.path));
    let mut rng = crate::mpdr::select::SplitMix64::new(0x6261_636b_7465_7374);
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
        .into_iter()
        .map(|f| {
            let duration_s = clip_duration(&f.path, params)?;
            let anomalies =
                if f.anomaly { vec![Segment { start_s: 0.0, end_s: duration_s, anomaly: true }] } else { vec![] };
            Ok(Recording { path: f.path.clone(), duration_s, anomalies })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rows_are_named() {
        let d = tempfile::tempdir().unwrap();
        crate::audio::wav::write_pcm16(&d.path().join("a.wav"), 16000, 1, &vec![0.1; 32000]).unwrap();
        let csv = d.path().join("l.csv");
        let run = |text: &str| {
            std::fs::write(&csv, text).unwrap();
            read_csv(&csv)
        };
        let ok = run("file,start_s,end_s,label\na.wav,0.5,1.5,anomaly\na.wav,0,0.5,normal\n").unwrap();
        assert_eq!(ok[0].anomalies, vec![Segment { start_s: 0.5, end_s: 1.5, anomaly: true }]);
        assert!((ok[0].duration_s - 2.0).abs() < 1e-9);
        // A spreadsheet's byte-order mark before the header (issue 25: it made the header a row).
        let bom = run("\u{feff}file,start_s,end_s,label\na.wav,0.5,1.5,anomaly\n").unwrap();
        assert_eq!(bom[0].anomalies.len(), 1);
        for (text, want) in [
            ("file,start_s,end_s,label\nb.wav,0,1,anomaly\n", "row 2: "),
            ("a.wav,0,3,anomaly\n", "past the file's end"),
            ("a.wav,-1,1,anomaly\n", "need 0 <= start_s < end_s"),
            ("a.wav,0,1,anomaly\na.wav,0.5,1.5,anomaly\n", "row 2: segment 0.5..1.5 s overlaps 0..1 s"),
            ("a.wav,0,1,broken\n", "normal or anomaly"),
            ("a.wav,0,1\n", "got 3 column(s)"),
            // issue 25: a normal row inside an anomaly contradicts it (it was dropped silently).
            (
                "a.wav,0,2,anomaly\na.wav,0.5,1.5,normal\n",
                "row 2: normal segment 0.5..1.5 s overlaps the anomaly 0..2 s",
            ),
        ] {
            let e = run(text).unwrap_err().to_string();
            assert!(e.contains("l.csv") && e.contains(want), "{text:?}: {e}");
        }
    }
}
