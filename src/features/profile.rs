//! Spectral profiles: per mel band, statistics of the log-mel over a window of W frames — the
//! seconds-long view of a machine's sound that the profile energies (`gaussian`, `gmm`, and any
//! network given `[features.profile]`) score.
//!
//! One kernel ([`ProfileWindow`]) for batch and streaming: it keeps a ring of the last W
//! frames and running per-band sums (O(bands) per frame), and yields a profile every `hop`
//! frames once the window is full. The batch extractor ([`profiles`]) pushes a clip's frames
//! through the same kernel, so a clip gives the same profiles, bit for bit, offline and live.
//! The sums are recomputed from the ring each time it wraps, so round-off never accumulates
//! over a long stream (O(W · bands) every W frames: still O(bands) per frame).
//!
//! Statistics ([`ProfileStat`]), each `n_mels` values, concatenated in the order given:
//! * `mean` — mean dB per band (the reference, `../shared/reference/profile_reference.py`);
//! * `std` — standard deviation over time per band: how much a band fluctuates (transients,
//!   impacts, a rattle), which the mean smooths away;
//! * `delta` — mean absolute frame-to-frame change per band (onsets and flutter).

use serde::{Deserialize, Serialize};

use super::LogMel;
use crate::config::Problems;

/// One per-band statistic of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProfileStat {
    Mean,
    Std,
    Delta,
}

/// How windows of frames become profile vectors (`[features.profile]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileParams {
    /// Frames per window (313 = 10 s at 16 kHz, hop 512). A clip shorter than this is one
    /// window of all its frames (a 10-s DCASE clip is one window).
    pub window_frames: usize,
    /// Frames between training and evaluation windows of a longer recording (the daemon
    /// decides every `[stream.detect] hop_s` instead).
    pub hop_frames: usize,
    /// The statistics, `n_mels` values each, in this order.
    pub stats: Vec<ProfileStat>,
}

impl Default for ProfileParams {
    fn default() -> Self {
        ProfileParams { window_frames: 313, hop_frames: 156, stats: vec![ProfileStat::Mean] }
    }
}

impl ProfileParams {
    /// Dimension of one profile: `n_mels` per statistic.
    pub fn dim(&self, n_mels: usize) -> usize {
        n_mels * self.stats.len()
    }

    pub fn validate(&self, prefix: &str, p: &mut Problems) {
        if !(2..=1_000_000).contains(&self.window_frames) {
            p.push(
                format!("{prefix}.window_frames"),
                format!("must be 2..=1000000 frames, got {}", self.window_frames),
            );
        }
        if !(1..=self.window_frames.max(1)).contains(&self.hop_frames) {
            p.push(
                format!("{prefix}.hop_frames"),
                format!("must be 1..=window_frames ({}), got {}", self.window_frames, self.hop_frames),
            );
        }
        if self.stats.is_empty() {
            p.push(format!("{prefix}.stats"), "must name at least one of \"mean\", \"std\", \"delta\"");
        }
        let mut seen = self.stats.clone();
        seen.sort_by_key(|s| *s as u8);
        seen.dedup();
        if seen.len() != self.stats.len() {
            p.push(format!("{prefix}.stats"), "names a statistic twice");
        }
    }
}

/// The streaming profile kernel: a ring of the last `window` frames with running per-band
/// sums of x, x² and |Δx|.
#[derive(Debug, Clone)]
pub struct ProfileWindow {
    n_mels: usize,
    stats: Vec<ProfileStat>,
    window: usize,
    hop: usize,
    /// `window` frames, frame-major, and each frame's |Δ| to the frame before it.
    ring: Vec<f64>,
    deltas: Vec<f64>,
    head: usize,
    filled: usize,
    since: usize,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    sum_delta: Vec<f64>,
    /// The last frame pushed (for the next Δ); `None` at the start of a stream.
    last: Option<Vec<f64>>,
    out: Vec<f32>,
}

impl ProfileWindow {
    /// `window` and `hop` in frames (at least 1 and 2).
    pub fn new(n_mels: usize, params: &ProfileParams, hop: usize) -> Self {
        let window = params.window_frames.max(2);
        ProfileWindow {
            n_mels,
            stats: params.stats.clone(),
            window,
            hop: hop.max(1),
            ring: vec![0.0; window * n_mels],
            deltas: vec![0.0; window * n_mels],
            head: 0,
            filled: 0,
            since: 0,
            sum: vec![0.0; n_mels],
            sum_sq: vec![0.0; n_mels],
            sum_delta: vec![0.0; n_mels],
            last: None,
            out: vec![0.0; params.dim(n_mels)],
        }
    }

    pub fn window(&self) -> usize {
        self.window
    }
    pub fn hop(&self) -> usize {
        self.hop
    }
    pub fn dim(&self) -> usize {
        self.out.len()
    }
    /// Frames in the window now.
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// A new hop; the window is kept.
    pub fn set_hop(&mut self, hop: usize) {
        self.hop = hop.max(1);
    }

    /// Forget every frame (a gap in the audio: a window never spans it).
    pub fn reset(&mut self) {
        self.head = 0;
        self.filled = 0;
        self.since = 0;
        self.last = None;
        for v in [&mut self.sum, &mut self.sum_sq, &mut self.sum_delta] {
            v.fill(0.0);
        }
    }

    /// Add one log-mel frame (`n_mels` values); the window's profile when a hop completes
    /// over a full window.
    pub fn push(&mut self, frame: &[f32]) -> Option<&[f32]> {
        let m = self.n_mels;
        let slot = self.head * m;
        let full = self.filled == self.window;
        for b in 0..m {
            let x = frame.get(b).copied().unwrap_or(0.0) as f64;
            // The Δ of a window's first frame counts only if its predecessor is in the stream.
            let d = self.last.as_ref().map_or(0.0, |l| (x - l[b]).abs());
            if full {
                let (old, old_d) = (self.ring[slot + b], self.deltas[slot + b]);
                self.sum[b] -= old;
                self.sum_sq[b] -= old * old;
                self.sum_delta[b] -= old_d;
            }
            self.ring[slot + b] = x;
            self.deltas[slot + b] = d;
            self.sum[b] += x;
            self.sum_sq[b] += x * x;
            self.sum_delta[b] += d;
        }
        let last = self.last.get_or_insert_with(|| vec![0.0; m]);
        last.iter_mut().zip(frame).for_each(|(l, &x)| *l = x as f64);
        self.head = (self.head + 1) % self.window;
        self.filled = (self.filled + 1).min(self.window);
        if self.head == 0 {
            self.resum();
        }
        self.since += 1;
        if self.filled < self.window || self.since < self.hop {
            return None;
        }
        self.since = 0;
        Some(self.profile())
    }

    /// The profile of the frames in the window now (full or not; `None` when empty): the
    /// batch extractor's answer for a clip shorter than one window.
    pub fn partial(&mut self) -> Option<&[f32]> {
        (self.filled > 0).then(|| self.profile())
    }

    /// Exact sums from the ring (called when it wraps).
    fn resum(&mut self) {
        let m = self.n_mels;
        for v in [&mut self.sum, &mut self.sum_sq, &mut self.sum_delta] {
            v.fill(0.0);
        }
        for t in 0..self.filled {
            for b in 0..m {
                let x = self.ring[t * m + b];
                self.sum[b] += x;
                self.sum_sq[b] += x * x;
                self.sum_delta[b] += self.deltas[t * m + b];
            }
        }
    }

    fn profile(&mut self) -> &[f32] {
        let m = self.n_mels;
        let n = self.filled as f64;
        // The oldest frame's Δ reaches outside the window: it does not count.
        let oldest = if self.filled == self.window { self.head } else { 0 };
        let n_delta = (self.filled - 1).max(1) as f64;
        for (k, stat) in self.stats.iter().enumerate() {
            let out = &mut self.out[k * m..(k + 1) * m];
            for (b, o) in out.iter_mut().enumerate() {
                let mean = self.sum[b] / n;
                *o = match stat {
                    ProfileStat::Mean => mean,
                    ProfileStat::Std => (self.sum_sq[b] / n - mean * mean).max(0.0).sqrt(),
                    ProfileStat::Delta => (self.sum_delta[b] - self.deltas[oldest * m + b]) / n_delta,
                } as f32;
            }
        }
        &self.out
    }
}

/// Profile vectors of one clip, row-major (`n` × `dim`).
#[derive(Debug, Clone, PartialEq)]
pub struct Profiles {
    pub n: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

/// The profiles of a clip's windows of `params.window_frames` frames every `hop` frames,
/// through [`ProfileWindow`]; a clip shorter than one window gives one profile of all its
/// frames, an empty clip none.
pub fn profiles(lm: &LogMel, params: &ProfileParams, hop: usize) -> Profiles {
    let mut w = ProfileWindow::new(lm.n_mels, params, hop);
    let dim = w.dim();
    let mut data = Vec::new();
    for t in 0..lm.n_frames {
        if let Some(p) = w.push(&lm.data[t * lm.n_mels..(t + 1) * lm.n_mels]) {
            data.extend_from_slice(p);
        }
    }
    if data.is_empty() {
        if let Some(p) = w.partial() {
            data.extend_from_slice(p);
        }
    }
    Profiles { n: data.len() / dim.max(1), dim, data }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn clip(n_mels: usize, n_frames: usize, seed: u64) -> LogMel {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let data = (0..n_mels * n_frames)
            .map(|i| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                -60.0 + 30.0 * ((s >> 33) as f32 / (1u64 << 31) as f32) + (i % n_mels) as f32
            })
            .collect();
        LogMel { n_mels, n_frames, data }
    }

    /// The window [t0, t0 + w) computed directly, in f64.
    fn naive(lm: &LogMel, t0: usize, w: usize, stats: &[ProfileStat]) -> Vec<f64> {
        let m = lm.n_mels;
        let mut out = Vec::new();
        for s in stats {
            for b in 0..m {
                let xs: Vec<f64> = (t0..t0 + w).map(|t| lm.get(b, t) as f64).collect();
                let mean = xs.iter().sum::<f64>() / w as f64;
                out.push(match s {
                    ProfileStat::Mean => mean,
                    ProfileStat::Std => (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / w as f64).sqrt(),
                    ProfileStat::Delta => {
                        xs.windows(2).map(|p| (p[1] - p[0]).abs()).sum::<f64>() / (w - 1).max(1) as f64
                    }
                });
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Streaming in any chunking = batch = the direct formula, for every statistic.
        #[test]
        fn streaming_equals_batch_and_the_direct_formula(
            n_mels in 1usize..6, n_frames in 1usize..200, window in 2usize..40, hop in 1usize..40,
            seed in 0u64..1000, chunks in proptest::collection::vec(1usize..17, 1..8),
        ) {
            let hop = hop.min(window);
            let lm = clip(n_mels, n_frames, seed);
            let params = ProfileParams {
                window_frames: window,
                hop_frames: hop,
                stats: vec![ProfileStat::Mean, ProfileStat::Std, ProfileStat::Delta],
            };
            let batch = profiles(&lm, &params, hop);
            // Streaming: frames arrive in blocks of varying size, as from a source.
            let mut w = ProfileWindow::new(n_mels, &params, hop);
            let mut streamed = Vec::new();
            let (mut t, mut k) = (0, 0);
            while t < n_frames {
                let len = chunks[k % chunks.len()].min(n_frames - t);
                for f in t..t + len {
                    if let Some(p) = w.push(&lm.data[f * n_mels..(f + 1) * n_mels]) {
                        streamed.extend_from_slice(p);
                    }
                }
                t += len;
                k += 1;
            }
            if n_frames >= window {
                prop_assert_eq!(&streamed, &batch.data);
                prop_assert_eq!(batch.n, (n_frames - window) / hop + 1);
            } else {
                prop_assert!(streamed.is_empty());
                prop_assert_eq!(batch.n, 1);
            }
            let w_eff = window.min(n_frames);
            for (i, row) in batch.data.chunks_exact(batch.dim).enumerate() {
                let want = naive(&lm, i * hop, w_eff, &params.stats);
                for (a, b) in row.iter().zip(&want) {
                    prop_assert!((*a as f64 - b).abs() < 1e-3, "window {i}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn a_day_of_frames_does_not_drift() {
        // 2.7 M frames of a loud, varying band: the running sums are rebuilt at every wrap.
        let params =
            ProfileParams { window_frames: 313, hop_frames: 31, stats: vec![ProfileStat::Mean, ProfileStat::Std] };
        let mut w = ProfileWindow::new(1, &params, 31);
        // A decision falls on the last frame: 313 + 31 k frames.
        const N: u64 = 313 + 31 * 87_000;
        let mut last = None;
        for t in 0..N {
            let x = if t % 7 == 0 { 90.0 } else { -80.0 + (t % 13) as f32 };
            if let Some(p) = w.push(&[x]) {
                last = Some(p.to_vec());
            }
        }
        let mut tail: Vec<f32> =
            (N - 313..N).map(|t| if t % 7 == 0 { 90.0 } else { -80.0 + (t % 13) as f32 }).collect();
        let lm = LogMel { n_mels: 1, n_frames: tail.len(), data: std::mem::take(&mut tail) };
        let want = naive(&lm, 0, 313, &params.stats);
        let got = last.unwrap();
        assert!(
            (got[0] as f64 - want[0]).abs() < 1e-4 && (got[1] as f64 - want[1]).abs() < 1e-4,
            "{got:?} vs {want:?}"
        );
    }

    #[test]
    fn a_reset_starts_a_new_window() {
        let params = ProfileParams { window_frames: 3, hop_frames: 1, stats: vec![ProfileStat::Mean] };
        let mut w = ProfileWindow::new(1, &params, 1);
        assert!(w.push(&[1.0]).is_none() && w.push(&[2.0]).is_none());
        assert_eq!(w.push(&[3.0]), Some([2.0f32].as_slice()));
        w.reset();
        assert!(w.push(&[10.0]).is_none() && w.push(&[10.0]).is_none());
        assert_eq!(w.push(&[13.0]), Some([11.0f32].as_slice()));
    }

    #[test]
    fn params_are_validated_by_key() {
        let mut p = Problems::default();
        ProfileParams { window_frames: 1, hop_frames: 5, stats: vec![] }.validate("features.profile", &mut p);
        let s = p.to_string();
        assert!(s.contains("features.profile.window_frames") && s.contains("features.profile.stats"), "{s}");
    }
}
