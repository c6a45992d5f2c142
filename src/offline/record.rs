//! `mpdr record`: normal operation of one machine into clips of the DCASE layout and naming
//! (`<out>/<machine>/train/normal_id_<NN>_<n>.wav`, 16-bit mono at the model's rate), from a
//! sound-card input or a WAV replay, with a level meter and warnings for silence and
//! clipping. A stop request (Ctrl-C) keeps every finished clip; the unfinished one is dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::audio::source::{Next, OpenContext, Source, SourceConfig};
use crate::detect::health::{dbfs, HealthConfig, HealthEvent, HealthMonitor};
use crate::error::InputError;

pub struct RecordOptions {
    pub source: SourceConfig,
    pub out: PathBuf,
    pub machine: String,
    pub id: String,
    /// Stop after this much audio (`None`: until the source ends or a stop request).
    pub seconds: Option<f64>,
    pub clip_s: f64,
    pub rate: u32,
    /// A level line per second on the terminal.
    pub meter: bool,
}

/// What a recording made.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recorded {
    pub clips: Vec<PathBuf>,
    /// Seconds of finished clips.
    pub seconds: f64,
    pub warnings: Vec<String>,
}

/// The next free clip number in `dir` for `id`.
fn next_index(dir: &Path, id: &str) -> u64 {
    let prefix = format!("normal_id_{id}_");
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    n.strip_prefix(&prefix)?.strip_suffix(".wav")?.parse::<u64>().ok()
                })
                .max()
                .map_or(0, |m| m + 1)
        })
        .unwrap_or(0)
}

/// Record until the source ends, `opts.seconds` are done, or `stop` is set.
pub fn record(opts: &RecordOptions, stop: &AtomicBool) -> Result<Recorded, InputError> {
    let dir = opts.out.join(&opts.machine).join("train");
    std::fs::create_dir_all(&dir).map_err(|e| InputError::new(&dir, format!("cannot create: {e}")))?;
    let ctx = OpenContext { rate: opts.rate, queue_blocks: 64, n_mels: 128 };
    let mut source: Box<dyn Source> = opts.source.spec().build(ctx);
    source.open().map_err(|e| InputError::new(&dir, format!("cannot open the source: {e}")))?;
    let clip_len = (opts.clip_s * opts.rate as f64).round() as usize;
    let limit = opts.seconds.map(|s| (s * opts.rate as f64).round() as u64);
    let mut index = next_index(&dir, &opts.id);
    let mut out = Recorded::default();
    let (mut clip, mut block) = (Vec::with_capacity(clip_len), Vec::new());
    // The daemon's signal health (its default `[stream.health]`): silence for 2 s, clipping.
    let mut health = HealthMonitor::new(HealthConfig::default(), opts.rate);
    let (mut total, mut meter_sq, mut meter_n) = (0u64, 0.0f64, 0usize);
    let mut last_meter = Instant::now();
    while !stop.load(Ordering::Relaxed) && limit.is_none_or(|l| total < l) {
        match source.next(&mut block) {
            Ok(Next::Data(_)) => {}
            Ok(Next::Idle) => continue,
            Ok(Next::End) => break,
            Err(e) => return Err(InputError::new(&dir, format!("the source failed: {e}"))),
        }
        let take = limit.map_or(block.len(), |l| block.len().min((l - total) as usize));
        let b = &block[..take];
        total += b.len() as u64;
        let (level, event) = health.push(b);
        meter_sq += 10f64.powf(level.rms_dbfs / 10.0) * b.len() as f64;
        meter_n += b.len();
        let warning = match event {
            Some(HealthEvent::Lost { rms_dbfs }) => Some(format!(
                "the input is silent ({rms_dbfs:.0} dBFS for 2 s): a dead microphone, a muted channel, or ALSA's null device?"
            )),
            Some(HealthEvent::Clipping { share, peak_dbfs }) => Some(format!(
                "the input clips ({:.2}% of samples at full scale, peak {peak_dbfs:.1} dBFS): lower the gain",
                100.0 * share
            )),
            Some(HealthEvent::Restored { .. }) | None => None,
        };
        if let Some(w) = warning {
            tracing::warn!("{w}");
            out.warnings.push(w);
        }
        if opts.meter && last_meter.elapsed().as_secs_f64() >= 1.0 {
            let level = dbfs((meter_sq / meter_n.max(1) as f64).sqrt());
            let bar = "#".repeat(((level + 80.0).clamp(0.0, 80.0) / 2.0) as usize);
            eprint!(
                "\r{:>7.1} dBFS |{bar:<40}| {:>6.1} s, {} clip(s) ",
                level,
                total as f64 / opts.rate as f64,
                out.clips.len()
            );
            (meter_sq, meter_n, last_meter) = (0.0, 0, Instant::now());
        }
        let mut rest = b;
        while !rest.is_empty() {
            let n = (clip_len - clip.len()).min(rest.len());
            clip.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if clip.len() == clip_len {
                let path = dir.join(format!("normal_id_{}_{index:08}.wav", opts.id));
                crate::audio::wav::write_pcm16(&path, opts.rate, 1, &clip)?;
                out.clips.push(path);
                out.seconds += opts.clip_s;
                index += 1;
                clip.clear();
            }
        }
    }
    if opts.meter {
        eprintln!();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_continues_after_existing_clips() {
        let d = tempfile::tempdir().unwrap();
        for n in ["normal_id_03_00000000.wav", "normal_id_03_00000007.wav", "normal_id_04_00000020.wav", "x.wav"] {
            std::fs::write(d.path().join(n), b"").unwrap();
        }
        assert_eq!(next_index(d.path(), "03"), 8);
        assert_eq!(next_index(d.path(), "05"), 0);
    }
}
