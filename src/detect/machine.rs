//! The alarm state machine of one stream, fed with window scores: an on-delay to raise, an
//! off-delay to clear (hysteresis), an optional re-alarm. The daemon's [`super::Detector`]
//! drives it live; a backtest's threshold sweep replays recorded window scores through it.

use super::{AlarmState, DetectConfig, Transition};

/// State machine with its timing settings and threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmMachine {
    threshold: f64,
    on_delay_s: f64,
    off_delay_s: f64,
    re_alarm_s: f64,
    state: AlarmState,
    /// Stream time when the current Pending/Clearing/Alarm phase began.
    phase_since: f64,
    last_raise: f64,
    repeats: u32,
}

impl AlarmMachine {
    pub fn new(cfg: &DetectConfig, threshold: f64) -> Self {
        AlarmMachine {
            threshold,
            on_delay_s: cfg.on_delay_s,
            off_delay_s: cfg.off_delay_s,
            re_alarm_s: cfg.re_alarm_s,
            state: AlarmState::Normal,
            phase_since: 0.0,
            last_raise: 0.0,
            repeats: 0,
        }
    }

    pub fn state(&self) -> AlarmState {
        self.state
    }

    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// New timing and threshold; the state is kept (a reload neither raises nor clears).
    pub fn reconfigure(&mut self, cfg: &DetectConfig, threshold: f64) {
        self.threshold = threshold;
        self.on_delay_s = cfg.on_delay_s;
        self.off_delay_s = cfg.off_delay_s;
        self.re_alarm_s = cfg.re_alarm_s;
    }

    /// The state machine: on-delay to raise, off-delay to clear, optional re-alarm.
    pub fn step(&mut self, score: f64, t: f64) -> Option<Transition> {
        let above = score > self.threshold;
        match (self.state, above) {
            (AlarmState::Normal, true) => {
                self.state = AlarmState::Pending;
                self.phase_since = t;
                self.maybe_raise(t)
            }
            (AlarmState::Pending, true) => self.maybe_raise(t),
            (AlarmState::Pending, false) => {
                self.state = AlarmState::Normal;
                None
            }
            (AlarmState::Alarm, false) => {
                self.state = AlarmState::Clearing;
                self.phase_since = t;
                self.maybe_clear(t)
            }
            (AlarmState::Clearing, false) => self.maybe_clear(t),
            (AlarmState::Clearing, true) => {
                self.state = AlarmState::Alarm;
                self.maybe_re_alarm(t)
            }
            (AlarmState::Alarm, true) => self.maybe_re_alarm(t),
            (AlarmState::Normal, false) => None,
        }
    }

    // A delay of d seconds is met once the condition has held for d seconds of windows; the
    // first window above the threshold counts as the start (so on_delay 0 raises at once).
    fn maybe_raise(&mut self, t: f64) -> Option<Transition> {
        if t - self.phase_since + 1e-9 >= self.on_delay_s {
            self.state = AlarmState::Alarm;
            self.last_raise = t;
            self.repeats = 0;
            Some(Transition::Raised { repeat: 0 })
        } else {
            None
        }
    }

    fn maybe_clear(&mut self, t: f64) -> Option<Transition> {
        if t - self.phase_since + 1e-9 >= self.off_delay_s {
            self.state = AlarmState::Normal;
            Some(Transition::Cleared)
        } else {
            None
        }
    }

    fn maybe_re_alarm(&mut self, t: f64) -> Option<Transition> {
        let every = self.re_alarm_s;
        if every > 0.0 && t - self.last_raise + 1e-9 >= every {
            self.last_raise = t;
            self.repeats += 1;
            Some(Transition::Raised { repeat: self.repeats })
        } else {
            None
        }
    }
}
