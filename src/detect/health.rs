//! Signal health of one stream, block by block: RMS and peak level in dBFS, clipped samples,
//! silence. A dead microphone (an all-zero or near-silent signal) is a *signal* problem, not a
//! machine anomaly: silent blocks are not scored, and a silence that lasts raises
//! `signal-lost` (then `signal-restored`); sustained clipping raises `clipping`.

use serde::{Deserialize, Serialize};

/// `[stream.health]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// A block whose RMS is below this (dBFS) is silence: its vectors are not scored.
    pub silence_dbfs: f64,
    /// Silence this long raises `signal-lost` ...
    pub lost_after_s: f64,
    /// ... and sound this long afterwards `signal-restored`.
    pub restored_after_s: f64,
    /// A sample at or above this magnitude (full scale = 1) is clipped.
    pub clip_level: f64,
    /// `clipping` when at least this share of a block's samples is clipped ...
    pub clip_share: f64,
    /// ... at most once every this many seconds.
    pub clip_every_s: f64,
    /// Signal faults (`signal-fault`, the stream not scored meanwhile; see
    /// [`super::signal_fault`]): a mean of at least this (full scale = 1) is a DC offset ...
    pub dc_offset: f64,
    /// ... a level this many dB outside the range the model was trained on ...
    pub level_margin_db: f64,
    /// ... this share of a second's samples clipped is sustained clipping ...
    pub clip_fault_share: f64,
    /// ... each for this many seconds in a row.
    pub fault_after_s: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            silence_dbfs: -80.0,
            lost_after_s: 2.0,
            restored_after_s: 1.0,
            clip_level: 0.999,
            clip_share: 0.001,
            clip_every_s: 300.0,
            dc_offset: 0.1,
            level_margin_db: 30.0,
            clip_fault_share: 0.05,
            fault_after_s: 2.0,
        }
    }
}

impl HealthConfig {
    pub fn validate(&self, prefix: &str, p: &mut crate::config::Problems) {
        if !(self.silence_dbfs.is_finite() && self.silence_dbfs < 0.0) {
            p.push(
                format!("{prefix}.silence_dbfs"),
                format!("must be a level below 0 dBFS, got {}", self.silence_dbfs),
            );
        }
        for (k, v) in [
            ("lost_after_s", self.lost_after_s),
            ("restored_after_s", self.restored_after_s),
            ("clip_every_s", self.clip_every_s),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                p.push(format!("{prefix}.{k}"), format!("must be >= 0, got {v}"));
            }
        }
        for (k, v) in [("dc_offset", self.dc_offset), ("clip_fault_share", self.clip_fault_share)] {
            if !(v > 0.0 && v <= 1.0) {
                p.push(format!("{prefix}.{k}"), format!("must be in (0, 1] (of full scale), got {v}"));
            }
        }
        if !(self.level_margin_db.is_finite() && self.level_margin_db > 0.0) {
            p.push(format!("{prefix}.level_margin_db"), format!("must be > 0 dB, got {}", self.level_margin_db));
        }
        if !(self.fault_after_s.is_finite() && self.fault_after_s >= 1.0) {
            p.push(format!("{prefix}.fault_after_s"), format!("must be >= 1 s, got {}", self.fault_after_s));
        }
        if !(self.clip_level > 0.0 && self.clip_level <= 1.0) {
            p.push(format!("{prefix}.clip_level"), format!("must be in (0, 1], got {}", self.clip_level));
        }
        if !(self.clip_share > 0.0 && self.clip_share <= 1.0) {
            p.push(format!("{prefix}.clip_share"), format!("must be in (0, 1], got {}", self.clip_share));
        }
    }
}

/// One block's levels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockHealth {
    pub rms_dbfs: f64,
    pub peak_dbfs: f64,
    pub clipped: usize,
    /// Below `silence_dbfs`: not scored.
    pub silent: bool,
}

/// A change of the stream's signal health.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HealthEvent {
    Lost { rms_dbfs: f64 },
    Restored { rms_dbfs: f64 },
    Clipping { share: f64, peak_dbfs: f64 },
}

/// Level in dBFS of an amplitude (full scale 1); -inf-safe (floor -200).
pub fn dbfs(amplitude: f64) -> f64 {
    (20.0 * amplitude.max(1e-10).log10()).max(-200.0)
}

/// The health state machine of one stream.
#[derive(Debug, Clone)]
pub struct HealthMonitor {
    cfg: HealthConfig,
    rate: f64,
    lost: bool,
    quiet_s: f64,
    loud_s: f64,
    t_s: f64,
    last_clip_s: Option<f64>,
}

impl HealthMonitor {
    pub fn new(cfg: HealthConfig, sample_rate: u32) -> Self {
        HealthMonitor {
            cfg,
            rate: sample_rate.max(1) as f64,
            lost: false,
            quiet_s: 0.0,
            loud_s: 0.0,
            t_s: 0.0,
            last_clip_s: None,
        }
    }

    pub fn lost(&self) -> bool {
        self.lost
    }

    /// Seconds of audio seen (the stream time of the last block's end).
    pub fn time_s(&self) -> f64 {
        self.t_s
    }

    /// Levels of `block` (mono, at the model's rate) and the health change it causes, if any.
    pub fn push(&mut self, block: &[f32]) -> (BlockHealth, Option<HealthEvent>) {
        let n = block.len().max(1);
        let (mut sq, mut peak, mut clipped) = (0f64, 0f64, 0usize);
        for &x in block {
            let a = (x as f64).abs();
            sq += a * a;
            peak = peak.max(a);
            clipped += usize::from(a >= self.cfg.clip_level);
        }
        let rms_dbfs = dbfs((sq / n as f64).sqrt());
        let h = BlockHealth { rms_dbfs, peak_dbfs: dbfs(peak), clipped, silent: rms_dbfs < self.cfg.silence_dbfs };
        let dt = block.len() as f64 / self.rate;
        self.t_s += dt;
        let event = if h.silent {
            self.quiet_s += dt;
            self.loud_s = 0.0;
            (!self.lost && self.quiet_s + 1e-9 >= self.cfg.lost_after_s).then(|| {
                self.lost = true;
                HealthEvent::Lost { rms_dbfs }
            })
        } else {
            self.loud_s += dt;
            self.quiet_s = 0.0;
            if self.lost && self.loud_s + 1e-9 >= self.cfg.restored_after_s {
                self.lost = false;
                Some(HealthEvent::Restored { rms_dbfs })
            } else {
                None
            }
        };
        let share = clipped as f64 / n as f64;
        let due = self.last_clip_s.is_none_or(|t| self.t_s - t + 1e-9 >= self.cfg.clip_every_s);
        if event.is_none() && !block.is_empty() && share >= self.cfg.clip_share && due {
            self.last_clip_s = Some(self.t_s);
            return (h, Some(HealthEvent::Clipping { share, peak_dbfs: h.peak_dbfs }));
        }
        (h, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_microphone_is_lost_after_the_delay_and_restored_by_sound() {
        let mut m = HealthMonitor::new(HealthConfig::default(), 16000);
        let zero = vec![0f32; 1600];
        let tone: Vec<f32> = (0..1600).map(|i| 0.1 * (i as f32 * 0.3).sin()).collect();
        let events: Vec<_> = (0..30).filter_map(|_| m.push(&zero).1).collect();
        assert_eq!(events.len(), 1, "one signal-lost for 3 s of zeros: {events:?}");
        assert!(matches!(events[0], HealthEvent::Lost { .. }));
        assert!(m.push(&zero).0.silent && m.lost());
        let back: Vec<_> = (0..15).filter_map(|_| m.push(&tone).1).collect();
        assert!(matches!(back[..], [HealthEvent::Restored { .. }]), "{back:?}");
        let (h, _) = m.push(&tone);
        assert!(!h.silent && (h.rms_dbfs - dbfs(0.1 / 2f64.sqrt())).abs() < 0.1, "{h:?}");
    }

    #[test]
    fn clipping_is_reported_at_most_once_per_interval() {
        let cfg = HealthConfig { clip_every_s: 1.0, ..HealthConfig::default() };
        let mut m = HealthMonitor::new(cfg, 16000);
        let hot: Vec<f32> = (0..1600).map(|i| if i % 100 == 0 { 1.0 } else { 0.2 }).collect();
        let n = (0..20).filter(|_| matches!(m.push(&hot).1, Some(HealthEvent::Clipping { .. }))).count();
        assert_eq!(n, 2, "2 s of clipping, one report per second");
        let mut p = crate::config::Problems::default();
        HealthConfig { silence_dbfs: 3.0, clip_share: 0.0, ..HealthConfig::default() }.validate("h", &mut p);
        assert_eq!(p.0.len(), 2, "{p}");
    }
}
