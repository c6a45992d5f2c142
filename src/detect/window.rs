//! The one window-scoring function: a window score is the mean vector energy over `window`
//! vectors, decided every `hop` vectors once a window is full. The daemon's [`Detector`]
//! pushes energies one by one; calibration, `mpdr eval`'s window view and backtests score a
//! whole clip with [`window_scores`] — both through [`WindowMean`], so a clip gets the same
//! scores, bit for bit, offline and live.
//!
//! [`Detector`]: super::Detector

/// A ring of the last `window` energies that yields a score every `hop` pushes.
#[derive(Debug, Clone)]
pub struct WindowMean {
    ring: Vec<f64>,
    head: usize,
    filled: usize,
    hop: usize,
    since: usize,
}

impl WindowMean {
    /// `window` and `hop` in vectors (at least 1).
    pub fn new(window: usize, hop: usize) -> Self {
        WindowMean { ring: vec![0.0; window.max(1)], head: 0, filled: 0, hop: hop.max(1), since: 0 }
    }

    /// Window and hop of `window_s` / `hop_s` seconds at `vector_s` seconds per vector.
    pub fn from_seconds(window_s: f64, hop_s: f64, vector_s: f64) -> Self {
        let n = |s: f64| ((s / vector_s).round() as usize).max(1);
        Self::new(n(window_s), n(hop_s))
    }

    pub fn window(&self) -> usize {
        self.ring.len()
    }
    pub fn hop(&self) -> usize {
        self.hop
    }
    /// Ring slot the next push writes (the detector keeps its band shares in step).
    pub fn head(&self) -> usize {
        self.head
    }

    /// A new hop length; the ring is kept.
    pub fn set_hop(&mut self, hop: usize) {
        self.hop = hop.max(1);
    }

    /// Add one energy; the window's score when a hop completes over a full window.
    pub fn push(&mut self, energy: f64) -> Option<f64> {
        self.ring[self.head] = energy;
        self.head = (self.head + 1) % self.ring.len();
        self.filled = (self.filled + 1).min(self.ring.len());
        self.since += 1;
        if self.filled < self.ring.len() || self.since < self.hop {
            return None;
        }
        self.since = 0;
        Some(self.ring.iter().sum::<f64>() / self.ring.len() as f64)
    }
}

/// One vector's per-band errors as shares of its total (negative errors count 0): what a
/// window's explanation averages.
pub fn band_shares(errors: &[f32], out: &mut [f64]) {
    let total: f64 = errors.iter().map(|&v| v.max(0.0) as f64).sum();
    for (s, &v) in out.iter_mut().zip(errors) {
        *s = if total > 0.0 { v.max(0.0) as f64 / total } else { 0.0 };
    }
}

/// Mean band shares of each non-overlapping window of `window` vectors of a clip's per-band
/// errors (`n_bands` per vector) — the calibration's view of what a normal window looks like.
pub fn window_band_shares(errors: &[f32], n_bands: usize, window: usize) -> Vec<Vec<f64>> {
    let w = window.max(1);
    let mut share = vec![0.0; n_bands];
    errors
        .chunks_exact(n_bands * w)
        .map(|win| {
            let mut mean = vec![0.0; n_bands];
            for v in win.chunks_exact(n_bands) {
                band_shares(v, &mut share);
                mean.iter_mut().zip(&share).for_each(|(m, s)| *m += s / w as f64);
            }
            mean
        })
        .collect()
}

/// Every window score of one clip's vector energies, as [`WindowMean`] decides them live. A
/// clip shorter than one window (a live stream never is) gives one score: its mean.
pub fn window_scores(energies: &[f32], window: usize, hop: usize) -> Vec<f64> {
    if energies.len() < window.max(1) {
        let n = energies.len().max(1) as f64;
        return vec![energies.iter().map(|&e| e as f64).sum::<f64>() / n];
    }
    let mut w = WindowMean::new(window, hop);
    energies.iter().filter_map(|&e| w.push(e as f64)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_overlapping_and_sliding_windows() {
        assert_eq!(window_scores(&[1.0, 3.0, 5.0, 7.0, 9.0], 2, 2), vec![2.0, 6.0]);
        assert_eq!(window_scores(&[1.0, 3.0, 5.0, 7.0], 2, 1), vec![2.0, 4.0, 6.0]);
        assert_eq!(window_scores(&[1.0, 3.0], 5, 5), vec![2.0], "a short clip is one window");
        assert_eq!(window_scores(&[1.0, 3.0], 2, 2), vec![2.0]);
    }
}
