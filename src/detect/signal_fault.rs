//! Signal faults: the *input* is wrong, not the machine — a DC offset (a failing preamp or
//! ADC), a level far outside what the model was trained on (a dead microphone whose preamp
//! hiss is above the silence level, a gain turned far up), sustained full-scale clipping.
//! Each is judged on one-second windows, becomes a fault after `fault_after_s`, and while it
//! lasts the stream is not scored (no `raised`): a `signal-fault` event names the reason, a
//! `signal-ok` one its end. The level range comes from the bundle ([`LevelRange`], measured on
//! the training recordings with [`block_levels`], the same measure as here).

use serde::{Deserialize, Serialize};

use super::health::{dbfs, HealthConfig};

/// The RMS levels (dBFS, one-second blocks) of the recordings a bundle was trained on: the
/// 0.5th and 99.5th percentiles, so a stray block does not widen the range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelRange {
    pub rms_dbfs_low: f64,
    pub rms_dbfs_high: f64,
    /// One-second blocks measured.
    pub blocks: usize,
}

impl LevelRange {
    /// The range of `levels` (dBFS of one-second blocks); `None` without any.
    pub fn fit(levels: &mut Vec<f64>) -> Option<LevelRange> {
        levels.retain(|l| l.is_finite());
        if levels.is_empty() {
            return None;
        }
        levels.sort_by(f64::total_cmp);
        let at = |q: f64| levels[((levels.len() - 1) as f64 * q).round() as usize];
        Some(LevelRange { rms_dbfs_low: at(0.005), rms_dbfs_high: at(0.995), blocks: levels.len() })
    }

    /// Problems with a range read from a bundle (field names under `levels.`).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let (lo, hi) = (self.rms_dbfs_low, self.rms_dbfs_high);
        if !(lo.is_finite() && (-200.0..=0.0).contains(&lo)) {
            return Err(("rms_dbfs_low", format!("must be a level in [-200, 0] dBFS, got {lo}")));
        }
        if !(hi.is_finite() && (lo..=0.0).contains(&hi)) {
            return Err(("rms_dbfs_high", format!("must be a level in [rms_dbfs_low, 0] dBFS, got {hi}")));
        }
        Ok(())
    }
}

/// RMS level (dBFS) of each whole one-second block of `samples` at `rate`.
pub fn block_levels(samples: &[f32], rate: u32) -> Vec<f64> {
    samples
        .chunks_exact(rate.max(1) as usize)
        .map(|b| dbfs((b.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>() / b.len() as f64).sqrt()))
        .collect()
}

/// What is wrong with the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    DcOffset,
    LevelLow,
    LevelHigh,
    Clipping,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::DcOffset => "dc-offset",
            Reason::LevelLow => "level-low",
            Reason::LevelHigh => "level-high",
            Reason::Clipping => "clipping",
        }
    }
}

/// A change of the stream's signal-fault state.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultEvent {
    Fault { reason: Reason, detail: String },
    Ok { rms_dbfs: f64 },
}

/// One stream's signal-fault watcher.
#[derive(Debug, Clone)]
pub struct SignalFaults {
    cfg: HealthConfig,
    range: Option<LevelRange>,
    /// Levels below this are the machine being off (`[stream.run]`), not a fault.
    off_below_dbfs: Option<f64>,
    rate: usize,
    // The one-second window being filled.
    n: usize,
    sum: f64,
    sq: f64,
    clipped: usize,
    /// The reason seen in the window(s) so far, and for how long; the fault in effect.
    seen: Option<(Reason, f64)>,
    fine_s: f64,
    fault: Option<Reason>,
    /// The last block alone looked faulty: it is not scored even before the fault is declared
    /// (the onset of a DC offset must not raise an alarm while the fault waits its delay).
    block_bad: bool,
}

impl SignalFaults {
    pub fn new(cfg: HealthConfig, rate: u32, range: Option<LevelRange>, off_below_dbfs: Option<f64>) -> Self {
        SignalFaults {
            cfg,
            range,
            off_below_dbfs,
            rate: rate.max(1) as usize,
            n: 0,
            sum: 0.0,
            sq: 0.0,
            clipped: 0,
            seen: None,
            fine_s: 0.0,
            fault: None,
            block_bad: false,
        }
    }

    /// Whether the last block is not to be scored: a fault in effect, or the block alone
    /// faulty.
    pub fn unscored(&self) -> bool {
        self.fault.is_some() || self.block_bad
    }

    /// The fault in effect (the stream is not scored meanwhile).
    pub fn fault(&self) -> Option<Reason> {
        self.fault
    }

    /// Take one block (mono, at the model's rate); a change of state when a window completes.
    pub fn push(&mut self, block: &[f32]) -> Option<FaultEvent> {
        // Judged in 100-ms pieces: a block (up to a second in a fast replay) in which the
        // signal turns faulty is not scored at all.
        self.block_bad = block.chunks((self.rate / 10).max(1)).any(|piece| {
            let n = piece.len() as f64;
            let (mut sum, mut sq, mut clipped) = (0f64, 0f64, 0usize);
            for &x in piece {
                let x = x as f64;
                sum += x;
                sq += x * x;
                clipped += usize::from(x.abs() >= self.cfg.clip_level);
            }
            self.classify(sum / n, dbfs((sq / n).sqrt()), clipped as f64 / n).is_some()
        });
        let mut change = None;
        for &x in block {
            let x = x as f64;
            self.n += 1;
            self.sum += x;
            self.sq += x * x;
            self.clipped += usize::from(x.abs() >= self.cfg.clip_level);
            if self.n == self.rate {
                change = self.judge().or(change);
                (self.n, self.sum, self.sq, self.clipped) = (0, 0.0, 0.0, 0);
            }
        }
        // The block that ends a fault reaches back into it (the frames stacked into its first
        // vectors): scoring resumes with the next one.
        if matches!(change, Some(FaultEvent::Ok { .. })) {
            self.block_bad = true;
        }
        change
    }

    /// What one full window says, and the state change it brings.
    fn judge(&mut self) -> Option<FaultEvent> {
        let n = self.n as f64;
        let rms_dbfs = dbfs((self.sq / n).sqrt());
        let (reason, detail) = match self.classify(self.sum / n, rms_dbfs, self.clipped as f64 / n) {
            Some((r, d)) => (Some(r), d),
            None => (None, String::new()),
        };
        self.step(reason, detail, rms_dbfs)
    }

    /// The fault a stretch of signal shows (mean, RMS level, share of samples clipped).
    fn classify(&self, mean: f64, rms_dbfs: f64, clipped: f64) -> Option<(Reason, String)> {
        let silent = rms_dbfs < self.cfg.silence_dbfs; // signal-lost's business
        let off = self.off_below_dbfs.is_some_and(|t| rms_dbfs < t); // machine-off's
        let m = self.cfg.level_margin_db;
        if mean.abs() >= self.cfg.dc_offset {
            Some((Reason::DcOffset, format!("a DC offset of {mean:+.2} of full scale")))
        } else if clipped >= self.cfg.clip_fault_share {
            Some((Reason::Clipping, format!("{:.0}% of samples at full scale", 100.0 * clipped)))
        } else {
            match self.range {
                Some(r) if !silent && !off && rms_dbfs < r.rms_dbfs_low - m => Some((
                    Reason::LevelLow,
                    format!(
                        "level {rms_dbfs:.0} dBFS, far below the {:.0} dBFS the model was trained at or above",
                        r.rms_dbfs_low
                    ),
                )),
                Some(r) if rms_dbfs > r.rms_dbfs_high + m => Some((
                    Reason::LevelHigh,
                    format!(
                        "level {rms_dbfs:.0} dBFS, far above the {:.0} dBFS the model was trained at or below",
                        r.rms_dbfs_high
                    ),
                )),
                _ => None,
            }
        }
    }

    /// The state change one window's verdict brings.
    fn step(&mut self, reason: Option<Reason>, detail: String, rms_dbfs: f64) -> Option<FaultEvent> {
        match reason {
            Some(r) => {
                self.fine_s = 0.0;
                let lasted = match self.seen {
                    Some((s, t)) if s == r => t + 1.0,
                    _ => 1.0,
                };
                self.seen = Some((r, lasted));
                if self.fault != Some(r) && lasted + 1e-9 >= self.cfg.fault_after_s.max(1.0) {
                    self.fault = Some(r);
                    return Some(FaultEvent::Fault { reason: r, detail });
                }
                None
            }
            None => {
                self.seen = None;
                self.fine_s += 1.0;
                if self.fault.is_some() && self.fine_s + 1e-9 >= self.cfg.restored_after_s.max(1.0) {
                    self.fault = None;
                    return Some(FaultEvent::Ok { rms_dbfs });
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, amp: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|i| offset + amp * (i as f32 * 0.07).sin() + 0.3 * amp * (i as f32 * 0.61).sin()).collect()
    }

    /// The events of `secs` seconds of `signal`, fed in 100-ms blocks.
    fn run(f: &mut SignalFaults, signal: &[f32]) -> Vec<FaultEvent> {
        signal.chunks(1600).filter_map(|b| f.push(b)).collect()
    }

    fn reasons(ev: &[FaultEvent]) -> Vec<&'static str> {
        ev.iter().map(|e| if let FaultEvent::Fault { reason, .. } = e { reason.as_str() } else { "ok" }).collect()
    }

    #[test]
    fn dc_offset_hiss_and_full_clipping_are_faults_and_normal_sound_clears_them() {
        let rate = 16000;
        let normal = tone(rate * 4, 0.1, 0.0);
        let mut levels = block_levels(&normal, rate as u32);
        let range = LevelRange::fit(&mut levels).unwrap();
        assert!((range.rms_dbfs_low - range.rms_dbfs_high).abs() < 1.0 && range.blocks == 4, "{range:?}");
        let mut f = SignalFaults::new(HealthConfig::default(), rate as u32, Some(range), None);
        assert!(run(&mut f, &normal).is_empty());
        assert_eq!(reasons(&run(&mut f, &tone(rate * 4, 0.1, 0.61))), ["dc-offset"]);
        assert_eq!(f.fault(), Some(Reason::DcOffset));
        assert_eq!(reasons(&run(&mut f, &normal)), ["ok"]);
        // Hiss at -70 dBFS: above the silence level (-80), far below the trained range.
        let hiss = tone(rate * 4, (10f64.powf(-70.0 / 20.0) * 2f64.sqrt()) as f32 * 0.95, 0.0);
        assert_eq!(reasons(&run(&mut f, &hiss)), ["level-low"]);
        assert_eq!(reasons(&run(&mut f, &normal)), ["ok"]);
        let square: Vec<f32> = (0..rate * 4).map(|i| if (i / 40) % 2 == 0 { 1.0 } else { -1.0 }).collect();
        assert_eq!(reasons(&run(&mut f, &square)), ["clipping"]);
        assert_eq!(reasons(&run(&mut f, &normal)), ["ok"]);
        // A fault shorter than fault_after_s is not one.
        assert!(run(&mut f, &tone(rate, 0.1, 0.61)).is_empty());
        // Without a trained range, the level rule is off; below the machine-off level, too.
        let mut no_range = SignalFaults::new(HealthConfig::default(), rate as u32, None, None);
        assert!(run(&mut no_range, &hiss).is_empty());
        let mut off = SignalFaults::new(HealthConfig::default(), rate as u32, Some(range), Some(-50.0));
        assert!(run(&mut off, &hiss).is_empty());
    }

    #[test]
    fn a_bundles_level_range_is_checked() {
        let ok = LevelRange { rms_dbfs_low: -40.0, rms_dbfs_high: -20.0, blocks: 9 };
        assert!(ok.check().is_ok());
        assert_eq!(LevelRange { rms_dbfs_low: f64::NAN, ..ok }.check().unwrap_err().0, "rms_dbfs_low");
        assert_eq!(LevelRange { rms_dbfs_high: -50.0, ..ok }.check().unwrap_err().0, "rms_dbfs_high");
    }
}
