//! `type = "synth"`: a machine of the synthetic plant ([`crate::audio::synth`]).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{check_speed, one, paced, yes, Next, OpenContext, Source, SourceError, SourceSpec};
use crate::audio::synth::{Synth, SynthSpec, RATE};
use crate::config::Problems;

/// `source = { type = "synth", machine = "fan", ... }`: the [`SynthSpec`] keys plus pacing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthConfig {
    /// The machine, its instance and seed, its fault (`mpdr synth dataset --seed S` makes id
    /// k from seed S*1000+k).
    #[serde(flatten)]
    pub spec: SynthSpec,
    /// Paced like a live source (`speed` x real time); false = as fast as the pipeline goes.
    #[serde(default = "yes")]
    pub realtime: bool,
    #[serde(default = "one")]
    pub speed: f64,
}

impl SourceSpec for SynthConfig {
    fn validate(&self, key: &str, p: &mut Problems) {
        check_speed(key, self.speed, p);
        let s = &self.spec;
        for (k, v) in [("fault_at_s", s.fault_at_s), ("ramp_s", s.ramp_s), ("severity", s.severity)] {
            if !(v.is_finite() && v >= 0.0) {
                p.push(format!("{key}.{k}"), format!("must be >= 0, got {v}"));
            }
        }
        if !s.snr_db.is_finite() {
            p.push(format!("{key}.snr_db"), format!("must be a number, got {}", s.snr_db));
        }
    }

    /// The plant is 16 kHz: the model must be too.
    fn check(&self, key: &str, features: &crate::features::FeatureParams, p: &mut Problems) {
        let rate = features.sample_rate;
        if rate != RATE {
            p.push(key.to_string(), format!("synthetic sources are {RATE} Hz, the model expects {rate} Hz"));
        }
    }

    fn build(&self, _ctx: OpenContext) -> Box<dyn Source> {
        Box::new(SynthSource::new(self.clone()))
    }
}

/// A machine of the synthetic plant ([`crate::audio::synth`]), paced at `speed` x real time (or as
/// fast as the pipeline takes it). Never ends.
pub struct SynthSource {
    cfg: SynthConfig,
    gen: Option<Synth>,
    emitted: u64,
    t0: Instant,
}

impl SynthSource {
    pub fn new(cfg: SynthConfig) -> Self {
        SynthSource { cfg, gen: None, emitted: 0, t0: Instant::now() }
    }
}

impl Source for SynthSource {
    fn describe(&self) -> String {
        format!("synthetic {}", self.cfg.spec.machine.name())
    }

    fn open(&mut self) -> Result<(), SourceError> {
        // A reopen continues the machine's timeline (the plant did not stop).
        if self.gen.is_none() {
            self.gen = Some(Synth::new(self.cfg.spec.clone()));
        }
        self.t0 = Instant::now();
        self.emitted = 0;
        Ok(())
    }

    fn next(&mut self, out: &mut Vec<f32>) -> Result<Next, SourceError> {
        let gen = self.gen.as_mut().ok_or(SourceError::NotOpen)?;
        let n = if self.cfg.realtime { RATE as usize / 10 } else { RATE as usize };
        if self.cfg.realtime && !paced(self.t0, self.emitted + n as u64, RATE, self.cfg.speed) {
            out.clear();
            return Ok(Next::Idle);
        }
        out.resize(n, 0.0);
        gen.fill(out);
        self.emitted += n as u64;
        Ok(Next::Data(Instant::now()))
    }

    fn realtime(&self) -> bool {
        self.cfg.realtime
    }
}
