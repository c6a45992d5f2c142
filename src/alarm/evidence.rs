//! Alarm evidence: each `raised` event keeps what the daemon heard — the window's audio (WAV)
//! and its spectrogram (PNG, Hz axis, dB colour bar, the strongest bands marked) — in the
//! state folder's `evidence/`, named by the event id, pruned with the outbox. The event
//! payload carries the two paths.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{format_range, AlarmEvent, EventKind};
use crate::features::FeatureParams;

/// The files of one alarm's evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceFiles {
    pub wav: String,
    pub png: String,
}

/// What one stream's evidence needs besides the audio the event carries.
#[derive(Debug, Clone)]
pub struct StreamAudio {
    pub features: FeatureParams,
    /// The detector's window, seconds.
    pub window_s: f64,
}

/// The evidence folder and the streams' audio.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub dir: PathBuf,
    pub streams: HashMap<String, StreamAudio>,
}

/// Free space kept for the outbox when evidence is written, bytes.
const RESERVE_BYTES: u64 = 4 << 20;
/// Room counted for one spectrogram PNG, bytes.
const PNG_BYTES: u64 = 1 << 20;

impl Evidence {
    pub fn new(state_dir: &Path, streams: HashMap<String, StreamAudio>) -> Self {
        Evidence { dir: state_dir.join("evidence"), streams }
    }

    /// For a committed `raised` event of a stream with audio: write its WAV and PNG and record
    /// them in the event (true). Only with room to spare on the disk: evidence is the first
    /// thing dropped when space is short, before any event. Failures are logged, partial files
    /// removed; the event goes on without evidence.
    pub fn attach(&self, ev: &mut AlarmEvent) -> bool {
        if ev.kind != EventKind::Raised {
            return false;
        }
        let Some(src) = self.streams.get(&ev.stream) else { return false };
        let Some(samples) = ev.audio.take() else { return false };
        let needed = RESERVE_BYTES + 2 * samples.len() as u64 + PNG_BYTES;
        let _ = std::fs::create_dir_all(&self.dir);
        match crate::files::free_bytes(&self.dir) {
            Some(free) if free < needed => {
                tracing::warn!(event = %ev.id, free_bytes = free, needed_bytes = needed,
                    "alarm evidence not saved: the state folder is short of space (events come first)");
                return false;
            }
            _ => {}
        }
        match self.write(ev, src, &samples) {
            Ok(files) => {
                ev.evidence = Some(files);
                true
            }
            Err(e) => {
                self.remove(ev);
                tracing::warn!(event = %ev.id, error = %e, "alarm evidence not saved");
                false
            }
        }
    }

    /// Remove an event's evidence files (after a failed write, or when the event could not be
    /// updated to name them).
    pub fn remove(&self, ev: &mut AlarmEvent) {
        for ext in ["wav", "png"] {
            let _ = std::fs::remove_file(self.dir.join(format!("{}.{ext}", ev.id)));
        }
        ev.evidence = None;
    }

    fn write(&self, ev: &AlarmEvent, src: &StreamAudio, samples: &[f32]) -> Result<EvidenceFiles, String> {
        let rate = src.features.sample_rate as f64;
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let wav = self.dir.join(format!("{}.wav", ev.id));
        crate::audio::wav::write_pcm16(&wav, src.features.sample_rate, 1, samples).map_err(|e| e.to_string())?;
        let png = self.dir.join(format!("{}.png", ev.id));
        let lm = crate::features::logmel(&src.features, samples).map_err(|e| e.to_string())?;
        let marks: Vec<(usize, String)> = ev
            .top_bands
            .iter()
            .map(|b| {
                let how = match b.z {
                    Some(z) => format!("{z:.1}σ above normal"),
                    None => format!("{:.1}% of the error", 100.0 * b.share),
                };
                (b.band, format!("{}: {how}", format_range(b.lo_hz, b.hi_hz)))
            })
            .collect();
        if crate::eval::plot::font_available() {
            let title = format!(
                "{}: the {:.0} s that raised the alarm (stream time {:.0} s)",
                ev.stream, src.window_s, ev.stream_time_s
            );
            crate::eval::plot::evidence_png(
                &png,
                &title,
                &lm.to_mel_major(),
                lm.n_mels,
                lm.n_frames,
                src.features.hop_length as f64 / rate,
                &super::band_ranges(&src.features),
                &marks,
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(EvidenceFiles { wav: wav.display().to_string(), png: png.display().to_string() })
    }

    /// Remove the evidence of events the outbox no longer holds.
    pub fn prune(&self, kept: impl Fn(&str) -> bool) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return 0 };
        let mut removed = 0;
        for p in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let id = p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
            if !kept(&id) && std::fs::remove_file(&p).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}
