//! Slaney mel filterbank with Slaney area normalisation, as `librosa.filters.mel(htk=False,
//! norm="slaney")`: built by `mel_spec` in f64, rounded to f32 like librosa's default dtype, and kept sparse
//! (each band is one contiguous run of FFT bins) so applying it costs ~2 multiply-adds per bin.

/// Slaney Hz -> mel: linear below 1 kHz (200/3 Hz per mel), logarithmic above (`mel_spec`'s,
/// as librosa's `hz_to_mel(htk=False)`).
pub fn hz_to_mel(f: f64) -> f64 {
    mel_spec::mel::hz_to_mel(f, false)
}

/// Inverse of [`hz_to_mel`].
pub fn mel_to_hz(m: f64) -> f64 {
    mel_spec::mel::mel_to_hz(m, false)
}

/// One mel band: weights for FFT bins `start .. start + weights.len()`.
#[derive(Debug, Clone, PartialEq)]
pub struct MelBand {
    pub start: usize,
    pub weights: Vec<f64>,
}

/// The filterbank, `n_mels` bands over `n_fft / 2 + 1` bins.
#[derive(Debug, Clone, PartialEq)]
pub struct MelFilterbank {
    pub n_bins: usize,
    pub bands: Vec<MelBand>,
}

impl MelFilterbank {
    /// Build the bank with `mel_spec`'s Slaney filterbank (librosa's algorithm, in f64), rounded
    /// to f32 like librosa's default dtype and stored sparse. `fmax` is clamped by nothing:
    /// callers validate `fmin < fmax <= sr/2`.
    pub fn slaney(sample_rate: f64, n_fft: usize, n_mels: usize, fmin: f64, fmax: f64) -> Self {
        let n_bins = n_fft / 2 + 1;
        let dense = mel_spec::mel::mel(sample_rate, n_fft, n_mels, Some(fmin), Some(fmax), false, true);
        let bands = dense
            .rows()
            .into_iter()
            .map(|row| {
                // librosa stores the bank as float32; round the same way.
                let row: Vec<f64> = row.iter().map(|&w| w as f32 as f64).collect();
                match row.iter().position(|&w| w != 0.0) {
                    None => MelBand { start: 0, weights: Vec::new() },
                    Some(start) => {
                        let end = row.iter().rposition(|&w| w != 0.0).map_or(start, |e| e + 1);
                        MelBand { start, weights: row[start..end].to_vec() }
                    }
                }
            })
            .collect();
        MelFilterbank { n_bins, bands }
    }

    /// Dense (n_mels, n_bins) copy, row-major, for tests and inspection.
    pub fn to_dense(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.bands.len() * self.n_bins];
        for (i, band) in self.bands.iter().enumerate() {
            let row = &mut out[i * self.n_bins..(i + 1) * self.n_bins];
            row[band.start..band.start + band.weights.len()].copy_from_slice(&band.weights);
        }
        out
    }

    /// `out[i] = Σ_k M[i,k] · power[k]`.
    #[inline]
    pub fn apply(&self, power: &[f64], out: &mut [f64]) {
        for (o, band) in out.iter_mut().zip(&self.bands) {
            let p = &power[band.start..band.start + band.weights.len()];
            *o = p.iter().zip(&band.weights).map(|(a, b)| a * b).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// librosa's triangles written out (the bank before `mel_spec` built it): the oracle.
    fn closed_form(sr: f64, n_fft: usize, n_mels: usize, fmin: f64, fmax: f64) -> Vec<f64> {
        let (lo, hi) = (hz_to_mel(fmin), hz_to_mel(fmax));
        let edges: Vec<f64> =
            (0..n_mels + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64)).collect();
        let mut out = Vec::new();
        for i in 0..n_mels {
            let (l, m, h) = (edges[i], edges[i + 1], edges[i + 2]);
            for k in 0..n_fft / 2 + 1 {
                let f = k as f64 * sr / n_fft as f64;
                out.push((0f64.max(((f - l) / (m - l)).min((h - f) / (h - m))) * 2.0 / (h - l)) as f32 as f64);
            }
        }
        out
    }

    #[test]
    fn mel_spec_bank_equals_the_closed_form_triangles() {
        for (sr, n_fft, n_mels, fmin, fmax) in [(16000.0, 1024, 128, 0.0, 8000.0), (16000.0, 512, 40, 50.0, 7000.0)] {
            let bank = MelFilterbank::slaney(sr, n_fft, n_mels, fmin, fmax).to_dense();
            let want = closed_form(sr, n_fft, n_mels, fmin, fmax);
            let worst = bank.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(worst <= 1e-9, "max |difference| {worst}");
        }
    }

    /// Values from MPDR-SPEC §1.4 ("Mel-filter checks"), computed with librosa 0.10.2.
    #[test]
    fn dcase_filterbank_matches_librosa_reference_values() {
        let bank = MelFilterbank::slaney(16000.0, 1024, 128, 0.0, 8000.0);
        let dense = bank.to_dense();
        let total: f64 = dense.iter().sum();
        assert!((total - 8.18838).abs() < 5e-5, "sum {total}");
        assert_eq!(bank.bands[0].start, 1);
        assert_eq!(bank.bands[0].weights.len(), 2);
        assert!((bank.bands[0].weights[0] - 0.02857778).abs() < 1e-8);
        assert!((bank.bands[0].weights[1] - 0.02837754).abs() < 1e-8);
        assert_eq!((bank.bands[64].start, bank.bands[64].start + bank.bands[64].weights.len()), (107, 113));
        assert_eq!((bank.bands[127].start, bank.bands[127].start + bank.bands[127].weights.len()), (488, 512));
    }

    #[test]
    fn mel_scale_round_trips_and_is_linear_below_1khz() {
        for f in [0.0, 100.0, 999.0, 1000.0, 4000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(f)) - f).abs() < 1e-9);
        }
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(8000.0) - 45.24564).abs() < 1e-5);
    }

    #[test]
    fn sparse_apply_equals_dense_product() {
        let bank = MelFilterbank::slaney(16000.0, 512, 40, 50.0, 7000.0);
        let power: Vec<f64> = (0..bank.n_bins).map(|k| ((k * 37) % 11) as f64 + 0.5).collect();
        let mut out = vec![0.0; 40];
        bank.apply(&power, &mut out);
        let dense = bank.to_dense();
        for i in 0..40 {
            let want: f64 = (0..bank.n_bins).map(|k| dense[i * bank.n_bins + k] * power[k]).sum();
            assert!((out[i] - want).abs() <= 1e-12 * want.abs().max(1.0));
        }
    }
}
