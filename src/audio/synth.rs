//! The synthetic plant: deterministic (by seed), 16 kHz, physically motivated machine sounds
//! with faults that develop over time — for `mpdr demo`, `mpdr synth`, tests and demo models.
//!
//! Every machine has a shaft (or stroke) rate that drifts slowly with load, and sits in
//! factory background noise (brown-ish noise, 50/100 Hz hum, distant impacts) at a chosen SNR:
//! - fan: shaft 1x and 2x, blade-pass tone (7 blades) with harmonics, blade-modulated
//!   broadband air noise;
//! - pump: shaft, vane-pass pulsation (6 vanes) modulating low-passed flow noise;
//! - valve: actuation every ~2 s with realistic jitter: a click (2.5 kHz resonance) and a
//!   thump (400 Hz), quiet flow hiss between;
//! - slider: travel strokes every 3 s (motor whine with harmonics under a trapezoid envelope),
//!   an end-stop knock at each end.
//!
//! Faults grow linearly from `fault_at_s` over `ramp_s` to full `severity`:
//! bearing (impacts at the outer-race frequency 3.57x shaft exciting a 3.2 kHz resonance),
//! imbalance (1x growth), looseness (harmonic and half-harmonic series of the shaft rate),
//! cavitation (broadband high-frequency bursts), leak (4–7 kHz hiss), sticking (actuation
//! timing jitter and a 1.8 kHz squeal), rail damage (1.5 kHz impacts along the stroke).

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

pub const RATE: u32 = 16_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Machine {
    Fan,
    Pump,
    Valve,
    Slider,
}

impl Machine {
    pub const ALL: [Machine; 4] = [Machine::Fan, Machine::Pump, Machine::Valve, Machine::Slider];
    pub fn name(self) -> &'static str {
        match self {
            Machine::Fan => "fan",
            Machine::Pump => "pump",
            Machine::Valve => "valve",
            Machine::Slider => "slider",
        }
    }
    /// Faults that belong to this machine type (any fault can be injected into any machine).
    pub fn typical_faults(self) -> &'static [Fault] {
        match self {
            Machine::Fan => &[Fault::Bearing, Fault::Imbalance, Fault::Looseness],
            Machine::Pump => &[Fault::Cavitation, Fault::Bearing, Fault::Imbalance],
            Machine::Valve => &[Fault::Leak, Fault::Sticking],
            Machine::Slider => &[Fault::RailDamage, Fault::Looseness],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    Bearing,
    Imbalance,
    Looseness,
    Cavitation,
    Leak,
    Sticking,
    RailDamage,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Bearing => "bearing",
            Fault::Imbalance => "imbalance",
            Fault::Looseness => "looseness",
            Fault::Cavitation => "cavitation",
            Fault::Leak => "leak",
            Fault::Sticking => "sticking",
            Fault::RailDamage => "rail-damage",
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthSpec {
    pub machine: Machine,
    #[serde(default)]
    pub seed: u64,
    /// Which physical machine of its type (its shaft rate varies ±4% between instances).
    #[serde(default)]
    pub instance: u64,
    /// Machine-to-background power ratio in dB.
    #[serde(default = "default_snr")]
    pub snr_db: f64,
    #[serde(default)]
    pub fault: Option<Fault>,
    /// Stream time (s) when the fault starts to develop.
    #[serde(default)]
    pub fault_at_s: f64,
    /// Seconds from onset to full severity.
    #[serde(default = "default_ramp")]
    pub ramp_s: f64,
    #[serde(default = "one")]
    pub severity: f64,
}

fn default_snr() -> f64 {
    6.0
}
fn default_ramp() -> f64 {
    30.0
}
fn one() -> f64 {
    1.0
}

impl SynthSpec {
    pub fn normal(machine: Machine, seed: u64) -> Self {
        SynthSpec {
            machine,
            seed,
            instance: 0,
            snr_db: default_snr(),
            fault: None,
            fault_at_s: 0.0,
            ramp_s: default_ramp(),
            severity: 1.0,
        }
    }
}

/// xorshift64* noise, uniform in [-1, 1).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
    fn unit(&mut self) -> f64 {
        0.5 * (self.next() + 1.0)
    }
}

/// A two-pole resonator (ringing filter) excited by impulses.
#[derive(Debug, Clone)]
struct Resonator {
    a1: f64,
    a2: f64,
    y1: f64,
    y2: f64,
}

impl Resonator {
    fn new(freq: f64, decay_s: f64) -> Self {
        let r = (-1.0 / (decay_s * RATE as f64)).exp();
        Resonator { a1: 2.0 * r * (2.0 * PI * freq / RATE as f64).cos(), a2: -r * r, y1: 0.0, y2: 0.0 }
    }
    fn step(&mut self, x: f64) -> f64 {
        let y = x + self.a1 * self.y1 + self.a2 * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// One-pole low-pass (and high-pass as input minus low-pass).
#[derive(Debug, Clone)]
struct OnePole {
    a: f64,
    y: f64,
}

impl OnePole {
    fn new(cutoff: f64) -> Self {
        OnePole { a: (-2.0 * PI * cutoff / RATE as f64).exp(), y: 0.0 }
    }
    fn low(&mut self, x: f64) -> f64 {
        self.y = (1.0 - self.a) * x + self.a * self.y;
        self.y
    }
    fn high(&mut self, x: f64) -> f64 {
        x - self.low(x)
    }
}

/// A streaming generator: `fill` continues where the last call stopped.
#[derive(Debug, Clone)]
pub struct Synth {
    spec: SynthSpec,
    n: u64,
    rng: Rng,
    /// Per-instance variation from the seed: base shaft rate factor, tone mix.
    base_hz: f64,
    phase: f64,
    drift: f64,
    /// Phase (in cycles) of the slow load cycle at t = 0, from the seed: recordings started at
    /// different times see different loads.
    load_phase: f64,
    // Background.
    brown: OnePole,
    impact: Resonator,
    // Machine parts.
    air_lp: OnePole,
    air_hp: OnePole,
    flow_lp: OnePole,
    click: Resonator,
    thump: Resonator,
    next_event_s: f64,
    // Faults.
    bearing: Resonator,
    bearing_phase: f64,
    burst: OnePole,
    burst_left: u32,
    leak_hp: OnePole,
    leak_lp: OnePole,
    squeal_left: u32,
    rail: Resonator,
    gain_machine: f64,
    gain_background: f64,
    mic_gain: f64,
}

impl Synth {
    pub fn new(spec: SynthSpec) -> Self {
        let mut rng = Rng::new(spec.seed ^ 0xA5A5_5A5A);
        // Where in its cycles the machine is when the recording starts: load, shaft or
        // stroke position, time to the next actuation — from the seed.
        let load_phase = rng.unit();
        let phase = rng.unit();
        let first_event_s = 0.05 + 2.0 * rng.unit();
        let mut instance = Rng::new(spec.instance.wrapping_add(0x1234_5678));
        let base = match spec.machine {
            Machine::Fan => 25.0,
            Machine::Pump => 48.0,
            Machine::Valve => 0.5,
            Machine::Slider => 1.0 / 3.0,
        };
        let base_hz = base * (1.0 + 0.04 * instance.next());
        // Gains set for roughly unit-variance parts, then the SNR.
        let gain_background = 0.05;
        // The microphone's gain, set per machine type as an installer sets a preamp: normal
        // operation peaks near -8 dBFS (the impulsive valve and slider need far less gain than
        // the fan), so that a fault has headroom and nothing clips.
        let mic_gain = match spec.machine {
            Machine::Fan => 0.68,
            Machine::Pump => 0.39,
            Machine::Valve => 0.029,
            Machine::Slider => 0.013,
        };
        let gain_machine = gain_background * 10f64.powf(spec.snr_db / 20.0);
        Synth {
            n: 0,
            base_hz,
            phase,
            drift: 0.0,
            load_phase,
            brown: OnePole::new(80.0),
            impact: Resonator::new(300.0, 0.03),
            air_lp: OnePole::new(4000.0),
            air_hp: OnePole::new(400.0),
            flow_lp: OnePole::new(600.0),
            click: Resonator::new(2500.0, 0.005),
            thump: Resonator::new(400.0, 0.02),
            next_event_s: first_event_s,
            bearing: Resonator::new(3200.0, 0.002),
            bearing_phase: 0.0,
            burst: OnePole::new(2000.0),
            burst_left: 0,
            leak_hp: OnePole::new(4000.0),
            leak_lp: OnePole::new(7000.0),
            squeal_left: 0,
            rail: Resonator::new(1500.0, 0.004),
            gain_machine,
            gain_background,
            mic_gain,
            rng,
            spec,
        }
    }

    pub fn spec(&self) -> &SynthSpec {
        &self.spec
    }

    /// Seconds generated so far.
    pub fn time_s(&self) -> f64 {
        self.n as f64 / RATE as f64
    }

    /// Fault severity at time t (0 before the onset).
    fn severity(&self, t: f64) -> f64 {
        match self.spec.fault {
            None => 0.0,
            Some(_) => {
                let x = if self.spec.ramp_s > 0.0 { (t - self.spec.fault_at_s) / self.spec.ramp_s } else { 1.0 };
                if t < self.spec.fault_at_s {
                    0.0
                } else {
                    x.clamp(0.0, 1.0) * self.spec.severity
                }
            }
        }
    }

    /// Generate the next `out.len()` samples (clipped to [-1, 1]).
    pub fn fill(&mut self, out: &mut [f32]) {
        let dt = 1.0 / RATE as f64;
        for o in out.iter_mut() {
            let t = self.n as f64 * dt;
            // Slow load drift (a few per cent over minutes) plus a small random walk.
            self.drift = (self.drift + 1e-5 * self.rng.next()).clamp(-0.01, 0.01);
            let rate = self.base_hz * (1.0 + 0.015 * (2.0 * PI * (t / 97.0 + self.load_phase)).sin() + self.drift);
            self.phase = (self.phase + rate * dt).fract();
            let th = 2.0 * PI * self.phase;
            let sev = self.severity(t);

            // Factory background: brown noise, mains hum, distant impacts.
            let mut bg = 6.0 * self.brown.low(self.rng.next())
                + 0.3 * (2.0 * PI * 50.0 * t).sin()
                + 0.1 * (2.0 * PI * 100.0 * t).sin()
                + 0.3 * self.rng.next();
            let kick = if self.rng.unit() < 0.3 * dt { 40.0 } else { 0.0 };
            bg += self.impact.step(kick) * 0.02;

            let w = self.rng.next();
            let mut m = match self.spec.machine {
                Machine::Fan => {
                    let bp = 7.0 * th;
                    let tones = 0.5 * th.sin()
                        + 0.2 * (2.0 * th).sin()
                        + 0.8 * bp.sin()
                        + 0.4 * (2.0 * bp).sin()
                        + 0.2 * (3.0 * bp).sin();
                    let air = self.air_hp.high(self.air_lp.low(w)) * (1.0 + 0.5 * bp.sin());
                    tones + 1.5 * air
                }
                Machine::Pump => {
                    let vp = 6.0 * th;
                    let flow = 8.0 * self.flow_lp.low(w) * (1.0 + 0.6 * vp.sin());
                    0.6 * th.sin() + 0.7 * vp.sin() + 0.3 * (2.0 * vp).sin() + flow
                }
                Machine::Valve => {
                    let mut x = 0.1 * self.air_hp.high(w);
                    if t >= self.next_event_s {
                        let jitter = if self.spec.fault == Some(Fault::Sticking) { 0.02 + 0.3 * sev } else { 0.02 };
                        self.next_event_s = t + (1.0 / rate) * (1.0 + jitter * self.rng.next());
                        x += self.click.step(30.0) + self.thump.step(20.0);
                        if self.spec.fault == Some(Fault::Sticking) && sev > 0.0 {
                            self.squeal_left = (0.25 * RATE as f64) as u32;
                        }
                    } else {
                        x += 0.6 * self.click.step(0.0) + self.thump.step(0.0);
                    }
                    x
                }
                Machine::Slider => {
                    // Stroke cycle: 40% travel out, 10% dwell, 40% back, 10% dwell.
                    let c = self.phase;
                    let moving = !(0.4..0.5).contains(&c) && c < 0.9;
                    let env = if moving {
                        let local = if c < 0.4 { c / 0.4 } else { (c - 0.5) / 0.4 };
                        (local / 0.1).min(1.0).min((1.0 - local) / 0.1)
                    } else {
                        0.0
                    };
                    let motor = 2.0 * PI * 120.0 * t;
                    let whine = env * (motor.sin() + 0.4 * (2.0 * motor).sin() + 0.2 * (3.0 * motor).sin());
                    let at_end = (c - 0.4).abs() < dt * rate || (c - 0.9).abs() < dt * rate;
                    whine + 0.3 * env * self.air_lp.low(w) + self.thump.step(if at_end { 25.0 } else { 0.0 })
                }
            };

            // Faults.
            if sev > 0.0 {
                if let Some(f) = self.spec.fault {
                    let shaft = if matches!(self.spec.machine, Machine::Valve | Machine::Slider) { 25.0 } else { rate };
                    m += match f {
                        Fault::Bearing => {
                            let bpfo = 3.57 * shaft;
                            let before = self.bearing_phase;
                            self.bearing_phase = (self.bearing_phase + bpfo * dt).fract();
                            let hit = if self.bearing_phase < before { 6.0 } else { 0.0 };
                            sev * self.bearing.step(hit)
                        }
                        Fault::Imbalance => sev * 2.5 * (2.0 * PI * self.phase_of(shaft, t)).sin(),
                        Fault::Looseness => {
                            let ph = 2.0 * PI * shaft * t;
                            sev * (2..=10).map(|k| (k as f64 * ph).sin() * 0.6 / (k as f64).sqrt()).sum::<f64>()
                                + sev * 0.4 * (1.5 * ph).sin()
                        }
                        Fault::Cavitation => {
                            // Collapsing vapour bubbles: 10–50 ms bursts, ~12 per second.
                            if self.burst_left == 0 && self.rng.unit() < 12.0 * dt {
                                self.burst_left = (RATE as f64 * (0.01 + 0.04 * self.rng.unit())) as u32;
                            }
                            if self.burst_left > 0 {
                                self.burst_left -= 1;
                                sev * 10.0 * self.burst.high(self.rng.next())
                            } else {
                                0.0
                            }
                        }
                        Fault::Leak => sev * 2.0 * self.leak_lp.low(self.leak_hp.high(self.rng.next())),
                        Fault::Sticking => {
                            if self.squeal_left > 0 {
                                self.squeal_left -= 1;
                                sev * 0.8 * (2.0 * PI * 1800.0 * t).sin()
                            } else {
                                0.0
                            }
                        }
                        Fault::RailDamage => {
                            // Impacts at fixed positions along the stroke while moving.
                            let c = self.phase;
                            let spot = [0.12, 0.27, 0.63, 0.78].iter().any(|&p| (c - p).abs() < dt * rate * 0.5);
                            sev * self.rail.step(if spot { 50.0 } else { 0.0 })
                        }
                    };
                }
            }
            let x = self.gain_machine * m + self.gain_background * bg;
            *o = (self.mic_gain * x).clamp(-1.0, 1.0) as f32;
            self.n += 1;
        }
    }

    fn phase_of(&self, f: f64, t: f64) -> f64 {
        (f * t).fract()
    }

    /// `seconds` of audio from the start (a fresh generator with the same spec).
    pub fn render(spec: &SynthSpec, seconds: f64) -> Vec<f32> {
        let mut s = Synth::new(spec.clone());
        let mut out = vec![0.0; (seconds * RATE as f64).round() as usize];
        s.fill(&mut out);
        out
    }

    /// `seconds` of audio from the start written to a 16-bit WAV, one second at a time.
    pub fn write_wav(spec: &SynthSpec, seconds: f64, path: &std::path::Path) -> Result<(), crate::error::InputError> {
        let mut s = Synth::new(spec.clone());
        let n = (seconds * RATE as f64).round() as usize;
        super::wav::write_pcm16_blocks(path, RATE, n, |b| s.fill(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarm::band_ranges;
    use crate::features::{logmel, FeatureParams};

    #[test]
    fn same_seed_same_samples_and_blocks_do_not_matter() {
        let spec = SynthSpec {
            fault: Some(Fault::Bearing),
            fault_at_s: 1.0,
            ramp_s: 1.0,
            ..SynthSpec::normal(Machine::Pump, 7)
        };
        let a = Synth::render(&spec, 3.0);
        let mut s = Synth::new(spec.clone());
        let mut b = vec![0.0; 48_000];
        for chunk in b.chunks_mut(1234) {
            s.fill(chunk);
        }
        assert_eq!(a, b);
        assert_ne!(a, Synth::render(&SynthSpec { seed: 8, ..spec }, 3.0));
        assert!(a.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
    }

    /// Mean log-mel per band (dB) of `seconds` of `spec`.
    fn band_means(spec: &SynthSpec, seconds: f64) -> Vec<f64> {
        let lm = logmel(&FeatureParams::default(), &Synth::render(spec, seconds)).unwrap();
        (0..lm.n_mels)
            .map(|m| (0..lm.n_frames).map(|t| lm.get(m, t) as f64).sum::<f64>() / lm.n_frames as f64)
            .collect()
    }

    /// Each fault raises the features most in the band where its physics puts it.
    #[test]
    fn each_fault_changes_the_mel_bands_it_should() {
        let ranges = band_ranges(&FeatureParams::default());
        let cases: [(Machine, Fault, f64, f64); 7] = [
            (Machine::Fan, Fault::Bearing, 2500.0, 4500.0),
            (Machine::Fan, Fault::Imbalance, 0.0, 60.0),
            (Machine::Fan, Fault::Looseness, 30.0, 400.0),
            (Machine::Pump, Fault::Cavitation, 2000.0, 8000.0),
            (Machine::Valve, Fault::Leak, 3500.0, 7500.0),
            (Machine::Valve, Fault::Sticking, 1600.0, 2000.0),
            (Machine::Slider, Fault::RailDamage, 1200.0, 1900.0),
        ];
        for (machine, fault, lo, hi) in cases {
            let normal = SynthSpec::normal(machine, 3);
            let faulty = SynthSpec { fault: Some(fault), fault_at_s: 0.0, ramp_s: 0.0, ..normal.clone() };
            let (a, b) = (band_means(&normal, 12.0), band_means(&faulty, 12.0));
            let (band, rise) = a.iter().zip(&b).map(|(x, y)| y - x).enumerate().fold((0, f64::MIN), |best, (i, d)| {
                if d > best.1 {
                    (i, d)
                } else {
                    best
                }
            });
            let (blo, bhi) = ranges[band];
            assert!(rise > 3.0, "{fault:?} on {machine:?}: largest rise only {rise:.1} dB");
            assert!(
                bhi >= lo && blo <= hi,
                "{fault:?} on {machine:?}: largest rise in band {band} ({blo:.0}–{bhi:.0} Hz), expected {lo}–{hi} Hz"
            );
        }
    }

    #[test]
    fn faults_develop_after_their_onset() {
        let spec = SynthSpec {
            fault: Some(Fault::Leak),
            fault_at_s: 6.0,
            ramp_s: 2.0,
            ..SynthSpec::normal(Machine::Valve, 1)
        };
        let before = Synth::render(&SynthSpec { fault: None, ..spec.clone() }, 6.0);
        assert_eq!(Synth::render(&spec, 6.0), before, "identical before the onset");
    }

    #[test]
    fn nothing_clips_normal_operation_peaks_near_minus_8_dbfs_and_faults_have_headroom() {
        use Fault::*;
        let cases = [
            (Machine::Fan, [None, Some(Bearing), Some(Imbalance), Some(Looseness)]),
            (Machine::Pump, [None, Some(Cavitation), Some(Bearing), Some(Imbalance)]),
            (Machine::Valve, [None, Some(Leak), Some(Sticking), None]),
            (Machine::Slider, [None, Some(RailDamage), Some(Looseness), None]),
        ];
        for (m, faults) in cases {
            for f in faults {
                let spec = SynthSpec { fault: f, fault_at_s: 0.0, ramp_s: 0.0, ..SynthSpec::normal(m, 3) };
                let peak = Synth::render(&spec, 20.0).iter().fold(0.0f32, |p, v| p.max(v.abs()));
                assert!(peak < 0.9, "{m:?} {f:?}: peak {peak:.2} (the health check would call it clipping)");
                if f.is_none() {
                    assert!((0.3..0.5).contains(&peak), "{m:?}: normal operation peaks at {peak:.2}");
                }
            }
        }
    }
}
