//! Is the machine running? A stopped machine sounds "wrong" to any model of its running
//! sound, so a stream with `[stream.run]` treats audio below the machine's running level as
//! *not running*: those blocks are not scored (so they can never raise an alarm — ISA-18.2's
//! suppression by design), and once the level has stayed below for `off_after_s` the stream
//! reports `machine-off`; sound at running level for `on_after_s` reports `machine-on`.
//! Until then the blocks stay unscored, so a start-up transient does not alarm either.

use serde::{Deserialize, Serialize};

/// `[stream.run]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// A block whose RMS level (dBFS) is below this is the machine not running — set it
    /// below the quietest level of the training audio (`mpdr features` prints levels).
    pub off_below_dbfs: f64,
    /// Below the level this long: `machine-off`.
    pub off_after_s: f64,
    /// At running level this long after that: `machine-on`, and scoring resumes.
    pub on_after_s: f64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig { off_below_dbfs: -50.0, off_after_s: 3.0, on_after_s: 2.0 }
    }
}

impl RunConfig {
    pub fn validate(&self, prefix: &str, p: &mut crate::config::Problems) {
        if !(self.off_below_dbfs.is_finite() && self.off_below_dbfs < 0.0 && self.off_below_dbfs > -200.0) {
            p.push(
                format!("{prefix}.off_below_dbfs"),
                format!("must be a level between -200 and 0 dBFS, got {}", self.off_below_dbfs),
            );
        }
        for (k, v) in [("off_after_s", self.off_after_s), ("on_after_s", self.on_after_s)] {
            if !(v.is_finite() && (0.0..=3600.0).contains(&v)) {
                p.push(format!("{prefix}.{k}"), format!("must be 0–3600 s, got {v}"));
            }
        }
    }
}

/// A change of the machine's running state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RunEvent {
    Off { rms_dbfs: f64 },
    On { rms_dbfs: f64 },
}

/// The running state of one stream's machine, block by block.
#[derive(Debug, Clone)]
pub struct RunMonitor {
    cfg: RunConfig,
    off: bool,
    quiet_s: f64,
    loud_s: f64,
}

impl RunMonitor {
    pub fn new(cfg: RunConfig) -> Self {
        RunMonitor { cfg, off: false, quiet_s: 0.0, loud_s: 0.0 }
    }

    /// Whether the machine is reported off.
    pub fn off(&self) -> bool {
        self.off
    }

    /// A block of `seconds` at `rms_dbfs`: whether it is to be scored, and the change it
    /// makes, if any.
    pub fn push(&mut self, rms_dbfs: f64, seconds: f64) -> (bool, Option<RunEvent>) {
        if rms_dbfs < self.cfg.off_below_dbfs {
            self.quiet_s += seconds;
            self.loud_s = 0.0;
            let event = (!self.off && self.quiet_s + 1e-9 >= self.cfg.off_after_s).then(|| {
                self.off = true;
                RunEvent::Off { rms_dbfs }
            });
            return (false, event);
        }
        self.loud_s += seconds;
        self.quiet_s = 0.0;
        if !self.off {
            return (true, None);
        }
        if self.loud_s + 1e-9 >= self.cfg.on_after_s {
            self.off = false;
            return (true, Some(RunEvent::On { rms_dbfs }));
        }
        (false, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_blocks_are_never_scored_and_off_and_on_wait_out_their_delays() {
        let mut m = RunMonitor::new(RunConfig { off_below_dbfs: -40.0, off_after_s: 1.0, on_after_s: 0.5 });
        assert_eq!(m.push(-20.0, 0.1), (true, None));
        // A dip shorter than off_after_s: not scored, not reported.
        let dip: Vec<_> = (0..5).map(|_| m.push(-60.0, 0.1)).collect();
        assert!(dip.iter().all(|&(scored, ev)| !scored && ev.is_none()), "{dip:?}");
        assert_eq!(m.push(-20.0, 0.1), (true, None));
        let stop: Vec<_> = (0..12).map(|_| m.push(-60.0, 0.1)).collect();
        assert_eq!(stop.iter().filter(|(_, e)| e.is_some()).count(), 1);
        assert!(matches!(stop[9].1, Some(RunEvent::Off { .. })), "after 1 s: {stop:?}");
        assert!(m.off() && stop.iter().all(|(s, _)| !s));
        // Running again: unscored until on_after_s, then machine-on and scored.
        let start: Vec<_> = (0..6).map(|_| m.push(-20.0, 0.1)).collect();
        assert!(start[..4].iter().all(|&(s, e)| !s && e.is_none()), "{start:?}");
        assert!(matches!(start[4], (true, Some(RunEvent::On { .. }))), "{start:?}");
        assert_eq!(start[5], (true, None));
        let mut p = crate::config::Problems::default();
        RunConfig { off_below_dbfs: 3.0, off_after_s: -1.0, on_after_s: f64::NAN }.validate("run", &mut p);
        assert_eq!(p.0.len(), 3, "{p}");
    }
}
