//! Per-stream detection: window scores from vector energies, and the alarm state machine.
//!
//! Time here is *stream time* (seconds of audio since the stream started), so accelerated
//! replays and real-time capture behave the same and tests are deterministic. One
//! [`Detector`] per stream, owned by the scorer thread; nothing here allocates per vector.

pub mod event;
pub mod health;
pub mod machine;
pub mod run;
pub mod signal_fault;
pub mod window;

use serde::{Deserialize, Serialize};

pub use machine::AlarmMachine;
pub use window::{band_shares, window_band_shares, window_scores, WindowMean};

/// Detection settings of one stream (`[stream.detect]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Window score = mean vector energy over this many seconds.
    pub window_s: f64,
    /// A window decision every this many seconds.
    pub hop_s: f64,
    /// `"model"`: the bundle's calibrated threshold; or a number.
    pub threshold: ThresholdSetting,
    /// The score must stay above the threshold this long before an alarm is raised.
    pub on_delay_s: f64,
    /// ... and below it this long before the alarm clears (hysteresis).
    pub off_delay_s: f64,
    /// While an alarm stays raised, raise it again every this many seconds (0 = never).
    pub re_alarm_s: f64,
    /// Mel bands named in an event's explanation.
    pub top_bands: usize,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            window_s: 10.0,
            hop_s: 1.0,
            threshold: ThresholdSetting::Model,
            on_delay_s: 30.0,
            off_delay_s: 60.0,
            re_alarm_s: 0.0,
            top_bands: 3,
        }
    }
}

/// Where a stream's threshold comes from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ThresholdSetting {
    Value(f64),
    #[serde(with = "model_literal")]
    Model,
}

mod model_literal {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("model")
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        let s = String::deserialize(d)?;
        if s == "model" {
            Ok(())
        } else {
            Err(D::Error::custom(format!("expected \"model\" or a number, got \"{s}\"")))
        }
    }
}

impl DetectConfig {
    pub fn validate(&self, prefix: &str, p: &mut crate::config::Problems) {
        let pos = |v: f64| v.is_finite() && v > 0.0;
        let nonneg = |v: f64| v.is_finite() && v >= 0.0;
        // Bounds a running daemon can hold: a window is kept in memory (and in the evidence).
        if !(pos(self.window_s) && (0.1..=3600.0).contains(&self.window_s)) {
            p.push(format!("{prefix}.window_s"), format!("must be 0.1–3600 s, got {}", self.window_s));
        }
        if !pos(self.hop_s) || (pos(self.window_s) && self.hop_s > self.window_s) {
            p.push(
                format!("{prefix}.hop_s"),
                format!("must be > 0 and at most window_s ({}), got {}", self.window_s, self.hop_s),
            );
        }
        for (k, v) in
            [("on_delay_s", self.on_delay_s), ("off_delay_s", self.off_delay_s), ("re_alarm_s", self.re_alarm_s)]
        {
            if !nonneg(v) || v > 604_800.0 {
                p.push(format!("{prefix}.{k}"), format!("must be 0–604800 s (a week), got {v}"));
            }
        }
        if self.top_bands > 1024 {
            p.push(format!("{prefix}.top_bands"), format!("must be at most 1024, got {}", self.top_bands));
        }
        if let ThresholdSetting::Value(t) = self.threshold {
            if !t.is_finite() {
                p.push(format!("{prefix}.threshold"), format!("must be \"model\" or a finite number, got {t}"));
            }
        }
    }
}

/// What a window decision changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Raised { repeat: u32 },
    Cleared,
}

/// Alarm state of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum AlarmState {
    Normal,
    /// Above the threshold, waiting out the on-delay.
    Pending,
    Alarm,
    /// Below the threshold while alarmed, waiting out the off-delay.
    Clearing,
}

impl AlarmState {
    /// Every state in its gauge order (`mpdr_alarm_state`: 0 normal ... 3 clearing).
    pub const ALL: [AlarmState; 4] = [AlarmState::Normal, AlarmState::Pending, AlarmState::Alarm, AlarmState::Clearing];

    /// The gauge value.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The state of a gauge value (anything out of range reads as `Normal`).
    pub fn from_code(code: u8) -> Self {
        Self::ALL.get(code as usize).copied().unwrap_or(AlarmState::Normal)
    }

    /// An alarm is raised: `Alarm`, or `Clearing` (below the threshold, waiting out the off-delay).
    pub fn is_raised(self) -> bool {
        matches!(self, AlarmState::Alarm | AlarmState::Clearing)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Normal => "normal",
            AlarmState::Pending => "pending",
            AlarmState::Alarm => "alarm",
            AlarmState::Clearing => "clearing",
        }
    }
}

/// One window decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Stream time at the end of the window, seconds.
    pub t_s: f64,
    pub score: f64,
    pub threshold: f64,
    pub state: AlarmState,
    pub transition: Option<Transition>,
    /// Mean per-mel-band error share over the window (sums to 1), when the energy has one.
    pub bands: Option<Vec<f64>>,
}

/// Window aggregation plus the alarm state machine of one stream.
#[derive(Debug, Clone)]
pub struct Detector {
    cfg: DetectConfig,
    /// Vector period in seconds (hop_length / sample_rate).
    vector_s: f64,
    /// The window score of the last `window` vector energies (the one window-scoring path).
    scores: WindowMean,
    /// Band shares of the same `window` vectors, in step with the energy ring.
    bands: Vec<f64>,
    n_bands: usize,
    vectors_seen: u64,
    /// The alarm state machine, fed with the window scores.
    machine: AlarmMachine,
}

impl Detector {
    /// `vector_s`: seconds between vectors; `n_bands`: mel bands per explanation (0 = none).
    pub fn new(cfg: DetectConfig, threshold: f64, vector_s: f64, n_bands: usize) -> Self {
        let scores = WindowMean::from_seconds(cfg.window_s, cfg.hop_s, vector_s);
        Detector {
            vector_s,
            bands: vec![0.0; scores.window() * n_bands],
            scores,
            n_bands,
            vectors_seen: 0,
            machine: AlarmMachine::new(&cfg, threshold),
            cfg,
        }
    }

    pub fn state(&self) -> AlarmState {
        self.machine.state()
    }
    pub fn threshold(&self) -> f64 {
        self.machine.threshold()
    }
    pub fn config(&self) -> &DetectConfig {
        &self.cfg
    }

    /// `n` vectors passed unscored (silence, a failed batch): stream time moves on, the window
    /// keeps what it had.
    pub fn advance(&mut self, n: u64) {
        self.vectors_seen += n;
    }

    /// Vectors seen so far, scored or not (stream time = this x the vector period).
    pub fn vectors_seen(&self) -> u64 {
        self.vectors_seen
    }

    /// New settings (a reload). The window ring is kept when its length is unchanged; the
    /// alarm state is kept either way, so a reload neither raises nor clears by itself.
    pub fn reconfigure(&mut self, cfg: DetectConfig, threshold: f64) {
        let keep = Detector::new(cfg.clone(), threshold, self.vector_s, self.n_bands);
        if keep.scores.window() != self.scores.window() {
            self.scores = keep.scores;
            self.bands = keep.bands;
        } else {
            self.scores.set_hop(keep.scores.hop());
        }
        self.machine.reconfigure(&cfg, threshold);
        self.cfg = cfg;
    }

    /// Add one vector's energy (and its per-band errors, `n_bands` long, when available);
    /// returns a decision when a hop completes over a full window.
    pub fn push(&mut self, energy: f64, bands: Option<&[f32]>) -> Option<Decision> {
        if self.n_bands > 0 {
            let head = self.scores.head();
            let slot = &mut self.bands[head * self.n_bands..(head + 1) * self.n_bands];
            match bands {
                Some(b) if b.len() == self.n_bands => band_shares(b, slot),
                _ => slot.fill(0.0),
            }
        }
        self.vectors_seen += 1;
        let score = self.scores.push(energy)?;
        let window = self.scores.window() as f64;
        let bands = (self.n_bands > 0).then(|| {
            let mut mean = vec![0.0; self.n_bands];
            for row in self.bands.chunks_exact(self.n_bands) {
                for (m, v) in mean.iter_mut().zip(row) {
                    *m += v / window;
                }
            }
            mean
        });
        Some(self.decide(score, bands))
    }

    /// One vector period of a stream whose window scores are made elsewhere (a profile
    /// bundle scores each window's profile): with `Some((score, per-band errors))` the alarm
    /// machine decides on it at this vector's time.
    pub fn push_window(&mut self, window: Option<(f64, Option<&[f32]>)>) -> Option<Decision> {
        self.vectors_seen += 1;
        let (score, errors) = window?;
        let bands = errors.filter(|b| self.n_bands > 0 && b.len() == self.n_bands).map(|b| {
            let mut shares = vec![0.0; b.len()];
            band_shares(b, &mut shares);
            shares
        });
        Some(self.decide(score, bands))
    }

    fn decide(&mut self, score: f64, bands: Option<Vec<f64>>) -> Decision {
        let t_s = self.vectors_seen as f64 * self.vector_s;
        let transition = self.machine.step(score, t_s);
        let (threshold, state) = (self.machine.threshold(), self.machine.state());
        Decision { t_s, score, threshold, state, transition, bands }
    }
}

/// The `k` bands that stand out most against normal: by z-score `(share - mean) / std` when
/// the bundle has its normal band statistics, else by share; (band, share, z), first first.
pub fn top_bands_vs_normal(
    shares: &[f64],
    normal: Option<(&[f64], &[f64])>,
    k: usize,
) -> Vec<(usize, f64, Option<f64>)> {
    match normal {
        Some((mean, std)) if mean.len() == shares.len() && std.len() == shares.len() => {
            let mut z: Vec<(usize, f64, Option<f64>)> = shares
                .iter()
                .zip(mean.iter().zip(std))
                .enumerate()
                // A floor on the spread: a band that never varies in normal audio is not
                // infinitely surprising.
                .map(|(b, (&s, (&m, &sd)))| (b, s, Some((s - m) / sd.max(1e-3 * m.abs()).max(1e-9))))
                .collect();
            z.sort_by(|a, b| b.2.unwrap_or(0.0).total_cmp(&a.2.unwrap_or(0.0)).then(a.0.cmp(&b.0)));
            z.truncate(k);
            z
        }
        _ => top_bands(shares, k).into_iter().map(|(b, s)| (b, s, None)).collect(),
    }
}

/// The `k` largest entries of `shares` as (band index, share), largest first.
pub fn top_bands(shares: &[f64], k: usize) -> Vec<(usize, f64)> {
    let mut idx: Vec<(usize, f64)> = shares.iter().copied().enumerate().collect();
    idx.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(window_s: f64, hop_s: f64, on: f64, off: f64) -> DetectConfig {
        DetectConfig {
            window_s,
            hop_s,
            threshold: ThresholdSetting::Value(1.0),
            on_delay_s: on,
            off_delay_s: off,
            re_alarm_s: 0.0,
            top_bands: 2,
        }
    }

    /// Feed `energies` one per 0.1 s and return (time, transition) of every transition.
    fn run(d: &mut Detector, energies: &[f64]) -> Vec<(f64, Transition)> {
        energies
            .iter()
            .filter_map(|&e| d.push(e, None))
            .filter_map(|dec| dec.transition.map(|t| ((dec.t_s * 10.0).round() / 10.0, t)))
            .collect()
    }

    #[test]
    fn raises_after_the_on_delay_and_clears_after_the_off_delay() {
        let mut d = Detector::new(cfg(1.0, 0.5, 2.0, 3.0), 1.0, 0.1, 0);
        // 5 s normal, 6 s anomalous, 10 s normal.
        let e: Vec<f64> = (0..210).map(|i| if (50..110).contains(&i) { 2.0 } else { 0.5 }).collect();
        let tr = run(&mut d, &e);
        // The 1-s window mean exceeds 1.0 once half of it is anomalous: first at the decision
        // at t = 5.5, raised 2 s later; all normal again at t = 12.0, cleared 3 s later.
        assert_eq!(tr, vec![(7.5, Transition::Raised { repeat: 0 }), (15.0, Transition::Cleared)]);
    }

    #[test]
    fn a_blip_shorter_than_the_on_delay_raises_nothing() {
        let mut d = Detector::new(cfg(0.5, 0.5, 2.0, 1.0), 1.0, 0.1, 0);
        let e: Vec<f64> = (0..100).map(|i| if (30..45).contains(&i) { 5.0 } else { 0.0 }).collect();
        assert!(run(&mut d, &e).is_empty());
        assert_eq!(d.state(), AlarmState::Normal);
    }

    #[test]
    fn dips_shorter_than_the_off_delay_keep_the_alarm_and_re_alarm_repeats() {
        let mut c = cfg(0.5, 0.5, 0.0, 2.0);
        c.re_alarm_s = 3.0;
        let mut d = Detector::new(c, 1.0, 0.1, 0);
        // Anomalous 10 s with a 1-s dip in the middle, then normal.
        let e: Vec<f64> =
            (0..200).map(|i| if (0..100).contains(&i) && !(50..60).contains(&i) { 3.0 } else { 0.0 }).collect();
        let tr = run(&mut d, &e);
        assert_eq!(
            tr,
            vec![
                (0.5, Transition::Raised { repeat: 0 }),
                (3.5, Transition::Raised { repeat: 1 }),
                (6.5, Transition::Raised { repeat: 2 }),
                (9.5, Transition::Raised { repeat: 3 }),
                (12.5, Transition::Cleared),
            ]
        );
    }

    #[test]
    fn window_score_is_the_mean_energy_and_bands_are_mean_shares() {
        let mut d = Detector::new(cfg(0.4, 0.2, 0.0, 0.0), 10.0, 0.1, 3);
        let mut last = None;
        for (e, b) in
            [(1.0, [1.0f32, 0.0, 0.0]), (2.0, [0.0, 2.0, 2.0]), (3.0, [0.0, 0.0, 5.0]), (6.0, [1.0, 1.0, 2.0])]
        {
            if let Some(dec) = d.push(e, Some(&b)) {
                last = Some(dec);
            }
        }
        let dec = last.expect("a decision after a full window");
        assert_eq!(dec.score, 3.0);
        let bands = dec.bands.unwrap();
        let want = [(1.0 + 0.0 + 0.0 + 0.25) / 4.0, (0.0 + 0.5 + 0.0 + 0.25) / 4.0, (0.0 + 0.5 + 1.0 + 0.5) / 4.0];
        for (b, w) in bands.iter().zip(want) {
            assert!((b - w).abs() < 1e-12, "{bands:?}");
        }
        assert_eq!(top_bands(&bands, 2), vec![(2, want[2]), (0, want[0])]);
    }

    #[test]
    fn bands_are_ranked_by_how_far_above_normal_they_are() {
        // Band 0 always carries half the error; band 2 normally 10% ± 1%, now 20%.
        let shares = [0.5, 0.3, 0.2];
        let (mean, std) = ([0.5, 0.4, 0.1], [0.1, 0.1, 0.01]);
        let top = top_bands_vs_normal(&shares, Some((&mean, &std)), 2);
        assert_eq!(top[0].0, 2);
        assert!((top[0].2.unwrap() - 10.0).abs() < 1e-9, "{top:?}");
        assert_eq!(top[1].0, 0, "z 0 beats z -1");
        assert_eq!(top_bands_vs_normal(&shares, None, 1), vec![(0, 0.5, None)]);
        let stats = crate::model::BandStats::fit(&[vec![0.2, 0.8], vec![0.4, 0.6]]).unwrap();
        assert_eq!(stats.windows, 2);
        assert!((stats.mean[0] - 0.3).abs() < 1e-12 && (stats.std[0] - 0.1414213562).abs() < 1e-9, "{stats:?}");
    }

    #[test]
    fn reload_changes_the_threshold_without_touching_the_state() {
        let mut d = Detector::new(cfg(0.2, 0.1, 0.0, 0.0), 1.0, 0.1, 0);
        let tr = run(&mut d, &[2.0; 5]);
        assert_eq!(tr[0].1, Transition::Raised { repeat: 0 });
        d.reconfigure(cfg(0.2, 0.1, 0.0, 0.0), 5.0);
        assert_eq!(d.state(), AlarmState::Alarm);
        assert_eq!(run(&mut d, &[2.0]), vec![(0.6, Transition::Cleared)], "2.0 is under the new threshold");
    }

    #[test]
    fn threshold_setting_parses_model_or_a_number() {
        #[derive(Deserialize)]
        struct W {
            t: ThresholdSetting,
        }
        assert_eq!(toml::from_str::<W>("t = \"model\"").unwrap().t, ThresholdSetting::Model);
        assert_eq!(toml::from_str::<W>("t = 2.5").unwrap().t, ThresholdSetting::Value(2.5));
        assert!(toml::from_str::<W>("t = \"modle\"").is_err());
    }
}
