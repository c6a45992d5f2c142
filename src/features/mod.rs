//! DCASE 2020 Task 2 log-mel features, numerically equal to librosa.
//!
//! One kernel ([`FrameKernel`]) turns one n_fft-long frame of the centre-padded signal into one
//! log-mel frame: periodic Hann window, real FFT, |X|^power, sparse Slaney mel bank,
//! `(20/power)·log10(S + f64::EPSILON)`. The batch extractor ([`logmel`]) and the streaming
//! extractor ([`stream::StreamingExtractor`]) both call it, so they cannot drift apart.
//!
//! Arithmetic is f64 end to end (output stored as f32): librosa's float32 pipeline has a
//! round-off floor about 140 dB below a frame's peak, and matching a float64 reference on pure
//! tones needs more headroom than that.
//!
//! Padding: `constant` (zeros, librosa >= 0.9, the default) or `reflect` (numpy reflect, the
//! DCASE 2020 baseline on librosa 0.6). Only the first and last frames differ between them.

pub mod mel;
pub mod profile;
pub mod stream;

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

use crate::config::Problems;
use mel::MelFilterbank;

/// How the signal is padded by n_fft/2 on each side before framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PadMode {
    /// Zeros (librosa >= 0.9).
    #[default]
    Constant,
    /// numpy `reflect`, edge sample excluded (librosa <= 0.8, the DCASE 2020 baseline).
    Reflect,
}

impl std::fmt::Display for PadMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PadMode::Constant => "constant",
            PadMode::Reflect => "reflect",
        })
    }
}

/// Every parameter of the front-end. Defaults are the DCASE 2020 Task 2 baseline's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureParams {
    pub sample_rate: u32,
    pub n_fft: usize,
    pub hop_length: usize,
    pub n_mels: usize,
    /// Consecutive log-mel frames stacked into one vector (5 -> 640-D).
    pub frames: usize,
    pub fmin: f64,
    /// Upper mel edge in Hz; `None` means sample_rate / 2.
    pub fmax: Option<f64>,
    /// Exponent of the magnitude spectrum (2 = power).
    pub power: f64,
    pub pad_mode: PadMode,
    /// Score spectral profiles of windows of frames instead of stacked vectors
    /// ([`profile`]); needs `frames = 1`. Absent: stacked vectors, as every bundle before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<profile::ProfileParams>,
}

impl Default for FeatureParams {
    fn default() -> Self {
        FeatureParams {
            sample_rate: 16000,
            n_fft: 1024,
            hop_length: 512,
            n_mels: 128,
            frames: 5,
            fmin: 0.0,
            fmax: None,
            power: 2.0,
            pad_mode: PadMode::Constant,
            profile: None,
        }
    }
}

impl FeatureParams {
    pub fn fmax_hz(&self) -> f64 {
        self.fmax.unwrap_or(self.sample_rate as f64 / 2.0)
    }

    /// Dimension of one stacked vector (`n_mels * frames`): what a stream's front-end makes.
    pub fn vector_dim(&self) -> usize {
        self.n_mels * self.frames
    }

    /// The seconds a profile bundle's window spans (`None`: stacked vectors, any window).
    pub fn profile_window_s(&self) -> Option<f64> {
        self.profile.as_ref().map(|p| p.window_frames as f64 * self.hop_length as f64 / self.sample_rate as f64)
    }

    /// Dimension of what the model scores: a profile's, or a stacked vector's.
    pub fn model_dim(&self) -> usize {
        self.profile.as_ref().map_or(self.vector_dim(), |p| p.dim(self.n_mels))
    }

    /// What the model scores of one clip: its profiles (windows every `hop_frames`), or its
    /// stacked vectors. Empty when the clip is too short for one.
    pub fn model_vectors(&self, lm: &LogMel) -> Vectors {
        match &self.profile {
            Some(p) => {
                let v = profile::profiles(lm, p, p.hop_frames);
                Vectors { dim: v.dim, n: v.n, data: v.data }
            }
            None => lm.vectors(self.frames),
        }
    }

    /// Number of STFT frames librosa makes for `n_samples` samples (centre padding).
    pub fn n_frames(&self, n_samples: usize) -> usize {
        1 + n_samples / self.hop_length
    }

    /// Record every problem under `prefix` (e.g. "features").
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        let key = |k: &str| format!("{prefix}.{k}");
        if !(1..=768_000).contains(&self.sample_rate) {
            problems.push(key("sample_rate"), format!("must be in 1..=768000 Hz, got {}", self.sample_rate));
        }
        if !(2..=65536).contains(&self.n_fft) || !self.n_fft.is_multiple_of(2) {
            problems.push(key("n_fft"), format!("must be an even number in 2..=65536, got {}", self.n_fft));
        }
        if !(1..=self.n_fft.max(1)).contains(&self.hop_length) {
            problems.push(key("hop_length"), format!("must be in 1..=n_fft ({}), got {}", self.n_fft, self.hop_length));
        }
        if !(1..=1024).contains(&self.n_mels) {
            problems.push(key("n_mels"), format!("must be in 1..=1024, got {}", self.n_mels));
        }
        if !(1..=64).contains(&self.frames) {
            problems.push(key("frames"), format!("must be in 1..=64, got {}", self.frames));
        }
        if !(self.power.is_finite() && self.power > 0.0 && self.power <= 4.0) {
            problems.push(
                key("power"),
                format!("must be in (0, 4] (1: magnitude, 2: power spectrogram), got {}", self.power),
            );
        }
        let nyquist = self.sample_rate as f64 / 2.0;
        if !(self.fmin.is_finite() && self.fmin >= 0.0) {
            problems.push(key("fmin"), format!("must be >= 0, got {}", self.fmin));
        }
        if let Some(fmax) = self.fmax {
            if !(fmax.is_finite() && fmax > self.fmin && fmax <= nyquist) {
                problems.push(
                    key("fmax"),
                    format!("must be in (fmin, sample_rate/2] = ({}, {nyquist}], got {fmax}", self.fmin),
                );
            }
        } else if self.fmin >= nyquist && self.sample_rate > 0 {
            problems.push(key("fmin"), format!("must be below sample_rate/2 = {nyquist}, got {}", self.fmin));
        }
        if problems.is_empty() {
            // Mel bands narrower than an FFT bin are empty: their log-mel is a constant floor.
            let bank =
                mel::MelFilterbank::slaney(self.sample_rate as f64, self.n_fft, self.n_mels, self.fmin, self.fmax_hz());
            let empty = bank.bands.iter().filter(|b| b.weights.is_empty()).count();
            if empty > 0 {
                problems.push(
                    key("fmax"),
                    format!(
                        "{empty} of the {} mel bands between fmin = {} and fmax = {} Hz hold no FFT bin: widen the range, lower n_mels or raise n_fft",
                        self.n_mels,
                        self.fmin,
                        self.fmax_hz()
                    ),
                );
            }
        }
        if let Some(p) = &self.profile {
            p.validate(&key("profile"), problems);
            if self.frames != 1 {
                problems.push(
                    key("frames"),
                    format!("must be 1 with [profile] (profiles average single frames), got {}", self.frames),
                );
            }
        }
    }

    /// Validated copy or the list of problems.
    pub fn validated(&self, prefix: &str) -> Result<(), Problems> {
        let mut p = Problems::default();
        self.validate(prefix, &mut p);
        p.into_result(())
    }
}

/// Log-mel spectrogram stored frame-major: `data[t * n_mels + m]` = LM[m, t].
/// Frame-major makes every stacked vector a contiguous slice.
#[derive(Debug, Clone, PartialEq)]
pub struct LogMel {
    pub n_mels: usize,
    pub n_frames: usize,
    pub data: Vec<f32>,
}

impl LogMel {
    /// Build from a (n_mels, frames) mel-major array, as stored in DCASE `.npy` files.
    pub fn from_mel_major(n_mels: usize, n_frames: usize, mel_major: &[f32]) -> Self {
        let mut data = vec![0.0; n_mels * n_frames];
        for m in 0..n_mels {
            for t in 0..n_frames {
                data[t * n_mels + m] = mel_major[m * n_frames + t];
            }
        }
        LogMel { n_mels, n_frames, data }
    }

    /// LM[m, t].
    pub fn get(&self, m: usize, t: usize) -> f32 {
        self.data[t * self.n_mels + m]
    }

    /// (n_mels, frames) row-major copy, the layout librosa returns.
    pub fn to_mel_major(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.data.len()];
        for t in 0..self.n_frames {
            for m in 0..self.n_mels {
                out[m * self.n_frames + t] = self.data[t * self.n_mels + m];
            }
        }
        out
    }

    /// Number of `frames`-stacked vectors: `n_frames - frames + 1` (0 when too short).
    pub fn n_vectors(&self, frames: usize) -> usize {
        (self.n_frames + 1).saturating_sub(frames)
    }

    /// Vector v: frames v..v+frames concatenated in time order (`vec[n_mels*t + m] = LM[m, v+t]`).
    pub fn vector(&self, v: usize, frames: usize) -> &[f32] {
        &self.data[v * self.n_mels..(v + frames) * self.n_mels]
    }

    /// A long recording cut into clips of `clip_frames` frames: one of at least two clips
    /// gives whole clips, the last one taking the rest; a shorter one is itself.
    pub fn into_clips(self, clip_frames: usize) -> Vec<LogMel> {
        let k = self.n_frames.checked_div(clip_frames).unwrap_or(1).max(1);
        if k == 1 {
            return vec![self];
        }
        (0..k)
            .map(|i| {
                let end = if i + 1 == k { self.n_frames } else { (i + 1) * clip_frames };
                let data = self.data[i * clip_frames * self.n_mels..end * self.n_mels].to_vec();
                LogMel { n_mels: self.n_mels, n_frames: end - i * clip_frames, data }
            })
            .collect()
    }

    /// All stacked vectors, row-major (n_vectors, n_mels * frames).
    pub fn vectors(&self, frames: usize) -> Vectors {
        let n = self.n_vectors(frames);
        let dim = self.n_mels * frames;
        let mut data = Vec::with_capacity(n * dim);
        for v in 0..n {
            data.extend_from_slice(self.vector(v, frames));
        }
        Vectors { dim, n, data }
    }
}

/// Row-major matrix of feature vectors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Vectors {
    pub dim: usize,
    pub n: usize,
    pub data: Vec<f32>,
}

impl Vectors {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// IDNN split of one stacked vector: the middle frame is the target, the others the context
/// (frames 1,2,4,5 of 5 -> dims [0, 2·n_mels) ∪ [3·n_mels, 5·n_mels), in that order).
pub fn idnn_split(vector: &[f32], n_mels: usize, context: &mut Vec<f32>, target: &mut Vec<f32>) {
    let frames = vector.len() / n_mels;
    let mid = frames / 2;
    context.clear();
    target.clear();
    context.extend_from_slice(&vector[..mid * n_mels]);
    context.extend_from_slice(&vector[(mid + 1) * n_mels..]);
    target.extend_from_slice(&vector[mid * n_mels..(mid + 1) * n_mels]);
}

/// The per-frame kernel shared by batch and streaming extraction. Owns its FFT plan and
/// scratch buffers: `process` does no allocation.
pub struct FrameKernel {
    n_fft: usize,
    fft: Arc<dyn RealToComplex<f64>>,
    window: Vec<f64>,
    frame: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    power: Vec<f64>,
    mel_power: Vec<f64>,
    exponent: f64,
    db_scale: f64,
    bank: MelFilterbank,
}

impl FrameKernel {
    /// `params` must be valid (see [`FeatureParams::validate`]).
    pub fn new(params: &FeatureParams) -> Self {
        let n_fft = params.n_fft;
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
        // Periodic Hann (scipy get_window('hann', fftbins=True)).
        let window =
            (0..n_fft).map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / n_fft as f64).cos()).collect();
        let bank =
            MelFilterbank::slaney(params.sample_rate as f64, n_fft, params.n_mels, params.fmin, params.fmax_hz());
        FrameKernel {
            n_fft,
            frame: fft.make_input_vec(),
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            fft,
            window,
            power: vec![0.0; n_fft / 2 + 1],
            mel_power: vec![0.0; params.n_mels],
            exponent: params.power,
            db_scale: 20.0 / params.power,
            bank,
        }
    }

    /// One frame of the padded signal (`n_fft` samples) -> `n_mels` log-mel values.
    pub fn process(&mut self, samples: &[f64], out: &mut [f32]) {
        debug_assert_eq!(samples.len(), self.n_fft);
        for ((f, s), w) in self.frame.iter_mut().zip(samples).zip(&self.window) {
            *f = s * w;
        }
        // Lengths are fixed at construction, so the FFT cannot fail.
        let _ = self.fft.process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch);
        if self.exponent == 2.0 {
            for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
                *p = c.re * c.re + c.im * c.im;
            }
        } else {
            for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
                *p = c.norm().powf(self.exponent);
            }
        }
        self.bank.apply(&self.power, &mut self.mel_power);
        for (o, s) in out.iter_mut().zip(&self.mel_power) {
            *o = (self.db_scale * (s + f64::EPSILON).log10()) as f32;
        }
    }
}

/// numpy `reflect` index for position `i` (may be negative or past the end) of a length-`len`
/// signal: a periodic triangle with period 2(len-1); a 1-sample signal repeats itself.
fn reflect_index(i: isize, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len as isize - 1);
    let r = i.rem_euclid(period);
    (if r < len as isize { r } else { period - r }) as usize
}

/// The centre-padded signal librosa frames (`n_fft/2` on each side).
pub fn pad_signal(signal: &[f32], pad: usize, mode: PadMode) -> Vec<f64> {
    let len = signal.len();
    let mut out = Vec::with_capacity(len + 2 * pad);
    let at = |i: isize| -> f64 {
        if i >= 0 && (i as usize) < len {
            signal[i as usize] as f64
        } else {
            match mode {
                PadMode::Constant => 0.0,
                PadMode::Reflect => signal[reflect_index(i, len)] as f64,
            }
        }
    };
    for i in -(pad as isize)..(len + pad) as isize {
        out.push(at(i));
    }
    out
}

/// Errors of the batch front-end.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FeatureError {
    #[error("no samples: an empty signal has no spectrum")]
    Empty,
    #[error("sample {index} is {value}: audio must be finite")]
    NonFinite { index: usize, value: f32 },
}

/// Check that samples are finite; the error names the first bad one.
pub fn check_finite(signal: &[f32]) -> Result<(), FeatureError> {
    match signal.iter().position(|s| !s.is_finite()) {
        Some(index) => Err(FeatureError::NonFinite { index, value: signal[index] }),
        None => Ok(()),
    }
}

/// Batch extractor: a whole signal -> its log-mel spectrogram (librosa `melspectrogram` with
/// `center=True`, then `(20/power)·log10(S + eps)`). Reuse one kernel across files.
pub fn logmel_with(kernel: &mut FrameKernel, params: &FeatureParams, signal: &[f32]) -> Result<LogMel, FeatureError> {
    if signal.is_empty() {
        return Err(FeatureError::Empty);
    }
    check_finite(signal)?;
    let padded = pad_signal(signal, params.n_fft / 2, params.pad_mode);
    let n_frames = params.n_frames(signal.len());
    let mut data = vec![0.0f32; n_frames * params.n_mels];
    for (t, out) in data.chunks_exact_mut(params.n_mels).enumerate() {
        let start = t * params.hop_length;
        kernel.process(&padded[start..start + params.n_fft], out);
    }
    Ok(LogMel { n_mels: params.n_mels, n_frames, data })
}

/// [`logmel_with`] with a fresh kernel.
pub fn logmel(params: &FeatureParams, signal: &[f32]) -> Result<LogMel, FeatureError> {
    logmel_with(&mut FrameKernel::new(params), params, signal)
}

/// Read a precomputed log-mel `.npy` of shape (n_mels, frames).
pub fn read_logmel_npy(path: &std::path::Path, params: &FeatureParams) -> Result<LogMel, crate::error::InputError> {
    let a = crate::npy::read(path)?;
    if a.shape.len() != 2 || a.shape[0] != params.n_mels {
        return Err(crate::error::InputError::new(
            path,
            format!("log-mel array has shape {:?}, expected ({}, frames) = (n_mels, frames)", a.shape, params.n_mels),
        ));
    }
    if a.shape[1] == 0 {
        return Err(crate::error::InputError::new(path, "log-mel array has 0 frames"));
    }
    if let Some(i) = a.data.iter().position(|v| !v.is_finite()) {
        return Err(crate::error::InputError::new(
            path,
            format!(
                "value at (mel {}, frame {}) is {}: log-mel must be finite",
                i / a.shape[1],
                i % a.shape[1],
                a.data[i]
            ),
        ));
    }
    Ok(LogMel::from_mel_major(a.shape[0], a.shape[1], &a.data))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_recording_is_cut_into_whole_clips_the_last_taking_the_rest() {
        let lm = |n: usize| LogMel { n_mels: 2, n_frames: n, data: (0..2 * n).map(|x| x as f32).collect() };
        let clips = lm(70).into_clips(30);
        assert_eq!(clips.iter().map(|c| c.n_frames).collect::<Vec<_>>(), [30, 40]);
        assert_eq!(clips[1].data[0], 60.0, "the second clip starts at frame 30");
        assert_eq!(lm(59).into_clips(30).len(), 1, "shorter than two clips: itself");
        assert_eq!(lm(10).into_clips(0).len(), 1);
    }

    use super::*;

    fn params(pad_mode: PadMode) -> FeatureParams {
        FeatureParams { pad_mode, ..FeatureParams::default() }
    }

    #[test]
    fn reflect_padding_matches_numpy() {
        // np.pad([1,2,3,4], 2, 'reflect') == [3,2,1,2,3,4,3,2]
        let p = pad_signal(&[1.0, 2.0, 3.0, 4.0], 2, PadMode::Reflect);
        assert_eq!(p, vec![3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0]);
        // Pads longer than the signal reflect repeatedly:
        // np.pad([1,2,3], 5, 'reflect') == [2,1,2,3,2,1,2,3,2,1,2,3,2]
        let p = pad_signal(&[1.0, 2.0, 3.0], 5, PadMode::Reflect);
        assert_eq!(p, vec![2.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0]);
        assert_eq!(pad_signal(&[7.0], 2, PadMode::Reflect), vec![7.0; 5]);
        assert_eq!(pad_signal(&[7.0], 2, PadMode::Constant), vec![0.0, 0.0, 7.0, 0.0, 0.0]);
    }

    #[test]
    fn frame_count_and_vector_count_follow_librosa() {
        let p = FeatureParams::default();
        assert_eq!(p.n_frames(160000), 313);
        let lm = logmel(&p, &vec![0.1; 160000]).unwrap();
        assert_eq!((lm.n_frames, lm.n_vectors(5)), (313, 309));
        assert_eq!(lm.vectors(5).dim, 640);
    }

    #[test]
    fn a_sine_lands_in_the_mel_band_that_covers_its_frequency() {
        let p = FeatureParams::default();
        let bank = MelFilterbank::slaney(16000.0, 1024, 128, 0.0, 8000.0);
        for freq in [250.0, 1000.0, 3000.0, 6000.0] {
            let x: Vec<f32> =
                (0..16000).map(|n| (2.0 * std::f64::consts::PI * freq * n as f64 / 16000.0).sin() as f32).collect();
            let lm = logmel(&p, &x).unwrap();
            let t = lm.n_frames / 2;
            let best = (0..128).max_by(|&a, &b| lm.get(a, t).total_cmp(&lm.get(b, t))).unwrap();
            // The band whose triangle peaks nearest the tone's bin.
            let bin = freq / 15.625;
            let band = &bank.bands[best];
            assert!(
                (band.start as f64) <= bin && bin <= (band.start + band.weights.len()) as f64,
                "{freq} Hz peaked in band {best} covering bins {}..{}",
                band.start,
                band.start + band.weights.len()
            );
        }
    }

    #[test]
    fn spec_reference_vector_matches_librosa_values() {
        // MPDR-SPEC §1.4: LCG noise plus a 440 Hz tone, librosa 0.10.2 reference values.
        let mut s: u32 = 12345;
        let y: Vec<f32> = (0..16000)
            .map(|n| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                let u = s as f64 / 4294967296.0;
                (0.2 * (u - 0.5) + 0.3 * (2.0 * std::f64::consts::PI * 440.0 * n as f64 / 16000.0).sin()) as f32
            })
            .collect();
        assert!((y[0] - -0.0959195).abs() < 1e-6 && (y[2] - 0.1102525).abs() < 1e-6);
        for (mode, lm00, lm50, lm127_31, mean, sum_v0) in [
            (PadMode::Reflect, 1.2921, 2.8046, -10.8022, -10.8364, -6796.524),
            (PadMode::Constant, -4.8665, -3.0861, -11.7176, -11.0137, -7262.502),
        ] {
            let lm = logmel(&params(mode), &y).unwrap();
            assert_eq!((lm.n_frames, lm.n_vectors(5)), (32, 28));
            let close = |a: f32, b: f64, tol: f64| (a as f64 - b).abs() <= tol;
            assert!(close(lm.get(0, 0), lm00, 1e-4), "{mode} LM[0,0] = {}", lm.get(0, 0));
            assert!(close(lm.get(5, 0), lm50, 1e-4));
            assert!(close(lm.get(10, 7), -11.9963, 1e-4));
            assert!(close(lm.get(64, 16), -6.2923, 1e-4));
            assert!(close(lm.get(127, 31), lm127_31, 1e-4));
            let m: f64 = lm.data.iter().map(|&v| v as f64).sum::<f64>() / lm.data.len() as f64;
            assert!((m - mean).abs() < 1e-4, "{mode} mean {m}");
            let lo = lm.data.iter().cloned().fold(f32::INFINITY, f32::min);
            let hi = lm.data.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            assert!(close(lo, -25.2694, 1e-4) && close(hi, 23.9109, 1e-4));
            let v = lm.vectors(5);
            let sum0: f64 = v.row(0).iter().map(|&x| x as f64).sum();
            assert!((sum0 - sum_v0).abs() < 2e-3, "{mode} sum vec0 {sum0}");
            assert!(close(v.row(3)[130], -12.7021, 1e-4));
            assert_eq!(v.row(3)[130], lm.get(2, 4));
        }
    }

    #[test]
    fn idnn_split_takes_the_middle_frame_as_target() {
        let v: Vec<f32> = (0..640).map(|i| i as f32).collect();
        let (mut c, mut t) = (Vec::new(), Vec::new());
        idnn_split(&v, 128, &mut c, &mut t);
        assert_eq!(t, (256..384).map(|i| i as f32).collect::<Vec<_>>());
        assert_eq!(c.len(), 512);
        assert_eq!(c[255], 255.0);
        assert_eq!(c[256], 384.0);
    }

    #[test]
    fn empty_and_non_finite_signals_are_refused() {
        let p = FeatureParams::default();
        assert_eq!(logmel(&p, &[]), Err(FeatureError::Empty));
        assert!(matches!(logmel(&p, &[0.0, f32::NAN]), Err(FeatureError::NonFinite { index: 1, .. })));
    }

    #[test]
    fn validation_names_each_bad_key() {
        let p = FeatureParams { n_fft: 1023, hop_length: 0, fmax: Some(9000.0), ..Default::default() };
        let err = p.validated("features").unwrap_err().to_string();
        assert!(err.contains("features.n_fft"), "{err}");
        assert!(err.contains("features.hop_length"), "{err}");
        assert!(err.contains("features.fmax"), "{err}");
    }
}
