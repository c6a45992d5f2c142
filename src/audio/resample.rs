//! Whole-signal sample-rate conversion with rubato's FFT resampler (band-limited, linear
//! phase). The output is aligned with the input (the resampler's delay is removed) and has
//! `ceil(len · to / from)` samples.

use rubato::{FftFixedIn, Resampler};

#[derive(Debug, thiserror::Error)]
#[error("resampling {from} Hz -> {to} Hz failed: {message}")]
pub struct ResampleError {
    pub from: u32,
    pub to: u32,
    pub message: String,
}

/// Resample a mono signal from `from` Hz to `to` Hz.
pub fn resample(signal: &[f32], from: u32, to: u32) -> Result<Vec<f32>, ResampleError> {
    if from == to {
        return Ok(signal.to_vec());
    }
    let err = |m: String| ResampleError { from, to, message: m };
    let chunk = 1024;
    let mut r = FftFixedIn::<f64>::new(from as usize, to as usize, chunk, 2, 1).map_err(|e| err(e.to_string()))?;
    let want = (signal.len() as u64 * to as u64).div_ceil(from as u64) as usize;
    let delay = r.output_delay();
    let mut out: Vec<f64> = Vec::with_capacity(want + delay + 2 * r.output_frames_max());
    let input: Vec<f64> = signal.iter().map(|&x| x as f64).collect();
    let mut pos = 0;
    while pos + chunk <= input.len() {
        let o = r.process(&[&input[pos..pos + chunk]], None).map_err(|e| err(e.to_string()))?;
        out.extend_from_slice(&o[0]);
        pos += chunk;
        if crate::cancel::requested() {
            return Err(err(crate::cancel::STOPPED.into()));
        }
    }
    let tail = &input[pos..];
    let o = r.process_partial(Some(&[tail]), None).map_err(|e| err(e.to_string()))?;
    out.extend_from_slice(&o[0]);
    // Flush the delay line with silence until the aligned output is complete.
    while out.len() < delay + want {
        let o = r.process_partial::<&[f64]>(None, None).map_err(|e| err(e.to_string()))?;
        if o[0].is_empty() {
            break;
        }
        out.extend_from_slice(&o[0]);
    }
    out.resize(delay + want, 0.0);
    Ok(out[delay..].iter().map(|&x| x as f32).collect())
}

/// Block-by-block resampling for live sources: push blocks of any length, get the converted
/// samples as they become available (delayed by the resampler's latency, ~chunk samples).
/// Buffers are allocated once; steady-state pushes do not allocate.
pub struct StreamResampler {
    r: FftFixedIn<f64>,
    chunk: usize,
    pending: Vec<f64>,
    out: Vec<Vec<f64>>,
    from: u32,
    to: u32,
}

impl StreamResampler {
    pub fn new(from: u32, to: u32) -> Result<Self, ResampleError> {
        let chunk = 1024;
        let r = FftFixedIn::<f64>::new(from as usize, to as usize, chunk, 2, 1).map_err(|e| ResampleError {
            from,
            to,
            message: e.to_string(),
        })?;
        let out = r.output_buffer_allocate(true);
        Ok(StreamResampler { r, chunk, pending: Vec::with_capacity(2 * chunk), out, from, to })
    }

    /// Append `block`'s converted samples (as far as whole chunks allow) to `out`.
    pub fn push(&mut self, block: &[f32], out: &mut Vec<f32>) -> Result<(), ResampleError> {
        let mut rest = block;
        while !rest.is_empty() {
            let take = (self.chunk - self.pending.len()).min(rest.len());
            self.pending.extend(rest[..take].iter().map(|&x| x as f64));
            rest = &rest[take..];
            if self.pending.len() == self.chunk {
                let (_, n) = self
                    .r
                    .process_into_buffer(&[&self.pending], &mut self.out, None)
                    .map_err(|e| ResampleError { from: self.from, to: self.to, message: e.to_string() })?;
                out.extend(self.out[0][..n].iter().map(|&x| x as f32));
                self.pending.clear();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, sr: u32, n: usize) -> Vec<f32> {
        (0..n).map(|i| (2.0 * std::f64::consts::PI * freq * i as f64 / sr as f64).sin() as f32).collect()
    }

    #[test]
    fn resampled_tone_keeps_frequency_phase_and_length() {
        let x = tone(440.0, 44100, 44100);
        let y = resample(&x, 44100, 16000).unwrap(); // ok: test
        assert_eq!(y.len(), 16000);
        let want = tone(440.0, 16000, 16000);
        // Away from the edges the resampled tone equals the tone sampled at 16 kHz.
        let err = y[500..15500].iter().zip(&want[500..15500]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err < 2e-3, "max error {err}");
    }

    #[test]
    fn energy_above_the_new_nyquist_is_removed() {
        let x = tone(12000.0, 48000, 48000);
        let y = resample(&x, 48000, 16000).unwrap(); // ok: test
        let rms = (y[1000..15000].iter().map(|v| v * v).sum::<f32>() / 14000.0).sqrt();
        assert!(rms < 1e-2, "12 kHz leaked through a 16 kHz resampler: rms {rms}");
    }

    #[test]
    fn streaming_resampler_matches_the_rate_and_keeps_a_tone() {
        let x = tone(1000.0, 48000, 48000);
        let mut r = StreamResampler::new(48000, 16000).unwrap();
        let mut y = Vec::new();
        for block in x.chunks(333) {
            r.push(block, &mut y).unwrap();
        }
        // All whole chunks converted: 46 chunks of 1024 input samples -> about 46 * 1024 / 3,
        // less what is still inside the resampler (under one chunk's output).
        let want = (48000 / 1024 * 1024 / 3) as i64;
        assert!((y.len() as i64 - want).abs() < 1024 / 3, "{} vs {want}", y.len());
        // Past the start-up delay, the output is a 1 kHz tone at 16 kHz: y[n] ≈ sin(2π n/16 + φ).
        let tail = &y[2000..10000];
        let rms = (tail.iter().map(|v| v * v).sum::<f32>() / tail.len() as f32).sqrt();
        assert!((rms - std::f32::consts::FRAC_1_SQRT_2).abs() < 0.01, "rms {rms}");
        let lag16: f32 = tail.windows(17).map(|w| (w[16] - w[0]).abs()).fold(0.0, f32::max);
        assert!(lag16 < 0.01, "period of 16 samples: {lag16}");
    }
}
