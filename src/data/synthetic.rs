//! A DCASE-layout dataset from the synthetic plant (`mpdr synth dataset`):
//! `<out>/<machine>/train/normal_id_XX_*.wav` and `test/{normal,anomaly}_id_XX_*.wav`.

use std::path::PathBuf;

use crate::audio::synth::{Fault, Machine, Synth, SynthSpec, RATE};
use crate::error::InputError;

/// What to write.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSpec {
    pub out: PathBuf,
    /// Machine types (empty: all four).
    pub machines: Vec<Machine>,
    /// Machine instances per type (ids 00, 02, 04, ...).
    pub ids: u64,
    /// Normal training clips per id.
    pub train: u64,
    /// Normal and anomalous test clips per id (each).
    pub test: u64,
    pub clip_s: f64,
    /// Instance k of a type is machine `seed * 1000 + k` of the plant.
    pub seed: u64,
}

/// Write the dataset; returns each machine folder with its number of clips.
pub fn write(d: &DatasetSpec) -> Result<Vec<(PathBuf, usize)>, InputError> {
    let machines = if d.machines.is_empty() { Machine::ALL.to_vec() } else { d.machines.clone() };
    let mut written = Vec::new();
    for m in machines {
        let root = d.out.join(m.name());
        for sub in ["train", "test"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| InputError::new(&dir, format!("cannot create: {e}")))?;
        }
        let faults = m.typical_faults();
        let mut n = 0;
        for id in 0..d.ids {
            let instance = d.seed * 1000 + id;
            let clip = |seed: u64, fault: Option<Fault>, severity: f64| -> Vec<f32> {
                let spec =
                    SynthSpec { fault, fault_at_s: 0.0, ramp_s: 0.0, severity, instance, ..SynthSpec::normal(m, seed) };
                Synth::render(&spec, d.clip_s)
            };
            let write = |name: String, x: &[f32]| crate::audio::wav::write_pcm16(&root.join(name), RATE, 1, x);
            let label = 2 * id;
            for k in 0..d.train {
                write(format!("train/normal_id_{label:02}_{k:08}.wav"), &clip(instance * 100_000 + k, None, 0.0))?;
                n += 1;
            }
            for k in 0..d.test {
                write(
                    format!("test/normal_id_{label:02}_{k:08}.wav"),
                    &clip(instance * 100_000 + 50_000 + k, None, 0.0),
                )?;
                let fault = faults[k as usize % faults.len()];
                // Severity 0.3–1.0: some anomalies are subtle.
                let severity = 0.3 + 0.7 * ((k * 7919 + id * 104_729) % 1000) as f64 / 999.0;
                write(
                    format!("test/anomaly_id_{label:02}_{k:08}.wav"),
                    &clip(instance * 100_000 + 70_000 + k, Some(fault), severity),
                )?;
                n += 2;
            }
        }
        written.push((root, n));
    }
    Ok(written)
}
