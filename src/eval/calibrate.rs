//! Alarm-threshold calibration on held-out normal recordings.
//!
//! Window scores of normal sound are positive and right-skewed; like the DCASE 2021 baseline
//! we fit a gamma distribution to them (here by the method of moments, which needs no
//! iteration and is stable for the few dozen windows a plant engineer records) and put the
//! threshold at the quantile that gives the target false-alarm rate. The target is stated
//! the way plant engineers think: false alarms per day of monitoring, with one independent
//! decision per window (`window_s`). With few held-out windows the empirical quantile cannot
//! reach 1e-5-level tails; the fit extrapolates, and the bundle records both the fit and the
//! largest held-out score so the margin is visible — and warns when the audio is too little.
//!
//! **The decision-cadence model.** The daemon decides every `hop_s` on the last `window_s` of
//! audio, so neighbouring decisions share most of their audio and are strongly correlated. We
//! count one chance of a false alarm per *window length* of audio (overlapping windows
//! decorrelate after one window): false alarms per day ≈ (86 400 / window_s) ×
//! P(window score exceeds the threshold), with P from the gamma fit of non-overlapping window scores. The hop then does
//! not matter, and the on-delay (which only removes excursions shorter than it) is given no
//! credit: the model is conservative. `mpdr backtest` on normal audio checks it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::Threshold;

/// The false-alarm budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrationTarget {
    /// Tolerated false alarms per day of monitoring (default 1/7: one per week).
    pub false_alarms_per_day: f64,
    /// Length of one decision window in seconds.
    pub window_s: f64,
}

impl Default for CalibrationTarget {
    fn default() -> Self {
        CalibrationTarget { false_alarms_per_day: 1.0 / 7.0, window_s: 10.0 }
    }
}

impl CalibrationTarget {
    /// Probability that one normal window exceeds the threshold.
    pub fn exceedance(&self) -> f64 {
        (self.false_alarms_per_day * self.window_s / 86_400.0).clamp(1e-12, 0.5)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalibrationError {
    #[error("need at least 3 held-out window scores to calibrate, got {0}")]
    TooFew(usize),
    #[error("held-out scores must be finite and > 0 for a gamma fit (score {index} is {value})")]
    BadScore { index: usize, value: f64 },
    #[error("held-out scores are all equal ({0}): cannot fit a spread")]
    NoSpread(f64),
}

/// Upper regularised incomplete gamma Q(a, x) = 1 − P(a, x) (statrs).
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    statrs::function::gamma::gamma_ur(a, x)
}

/// The x with Q(k, x/θ) = p (bisection on a log scale; Q is monotone in x).
pub fn gamma_upper_quantile(k: f64, theta: f64, p: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, (k + 1.0) * 2.0);
    while gamma_q(k, hi) > p {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if gamma_q(k, mid) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi) * theta
}

/// Fit a gamma to normal window scores and place the threshold for `target`.
pub fn calibrate(scores: &[f64], target: &CalibrationTarget) -> Result<Threshold, CalibrationError> {
    if scores.len() < 3 {
        return Err(CalibrationError::TooFew(scores.len()));
    }
    if let Some((index, &value)) = scores.iter().enumerate().find(|(_, s)| !(s.is_finite() && **s > 0.0)) {
        return Err(CalibrationError::BadScore { index, value });
    }
    let n = scores.len() as f64;
    let mean = scores.iter().sum::<f64>() / n;
    let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0);
    if var <= 0.0 {
        return Err(CalibrationError::NoSpread(mean));
    }
    let (k, theta) = (mean * mean / var, var / mean);
    let p = target.exceedance();
    let value = gamma_upper_quantile(k, theta, p);
    let max = scores.iter().cloned().fold(f64::MIN, f64::max);
    let details = BTreeMap::from([
        ("gamma_shape".to_string(), k),
        ("gamma_scale".to_string(), theta),
        ("target_false_alarms_per_day".to_string(), target.false_alarms_per_day),
        ("window_s".to_string(), target.window_s),
        ("window_exceedance_probability".to_string(), p),
        ("heldout_windows".to_string(), n),
        ("heldout_max_score".to_string(), max),
        ("heldout_mean_score".to_string(), mean),
    ]);
    let warnings = warnings(n, p, k, target);
    for w in &warnings {
        tracing::warn!("calibration: {w}");
    }
    Ok(Threshold { value, method: "gamma-moments".into(), details, warnings, fitted_on: None })
}

/// Warnings, with numbers, when `n` held-out windows cannot support a tail probability `p`.
fn warnings(n: f64, p: f64, shape: f64, target: &CalibrationTarget) -> Vec<String> {
    let mut w = Vec::new();
    let audio_s = n * target.window_s;
    if n * p < 1.0 {
        let needed_days = (1.0 / p) * target.window_s / 86_400.0;
        w.push(format!(
            "the threshold for {} false alarm(s)/day extrapolates a gamma fit of {n:.0} window(s) ({audio_s:.0} s of audio) to a tail probability of {p:.2e} per {} s window: the fit alone decides it, and checking it on audio needs about {needed_days:.1} days of normal recordings; record normal audio on site and run `mpdr calibrate`",
            target.false_alarms_per_day, target.window_s
        ));
    }
    if n < 30.0 {
        w.push(format!(
            "only {n:.0} held-out window(s): the gamma's spread is itself uncertain by about ±{:.0}%",
            100.0 / (2.0 * (n - 1.0).max(1.0)).sqrt()
        ));
    }
    if shape > 1000.0 {
        w.push(format!("gamma shape {shape:.0}: the held-out windows barely vary, so the threshold sits just above them and live variation (load, background) may cross it"));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_gamma_matches_known_values() {
        // Q(1, x) = e^{-x}; Q(2, x) = (1 + x) e^{-x}; the others from scipy.special.gammaincc.
        assert!((gamma_q(1.0, 2.0) - (-2.0f64).exp()).abs() < 1e-14);
        assert!((gamma_q(2.0, 5.0) - 6.0 * (-5.0f64).exp()).abs() < 1e-14);
        assert!((gamma_q(3.5, 2.0) - 0.779_777_408_475_716).abs() < 1e-12);
        // Q(1/2, 30) = erfc(√30) = 9.4857e-15: the far tail keeps its relative accuracy.
        assert!(((gamma_q(0.5, 30.0) - 9.485_737_571_073_857e-15) / 9.485_737_571_073_857e-15).abs() < 1e-8);
    }

    #[test]
    fn quantile_inverts_the_tail() {
        for (k, theta, p) in [(1.0, 1.0, 1e-3), (4.0, 0.5, 1e-6), (50.0, 0.02, 1e-5)] {
            let x = gamma_upper_quantile(k, theta, p);
            assert!(((gamma_q(k, x / theta) - p) / p).abs() < 1e-6, "k {k}: Q = {}", gamma_q(k, x / theta));
        }
        // Exponential: quantile = -θ ln p.
        assert!((gamma_upper_quantile(1.0, 2.0, 1e-4) - 2.0 * 1e4f64.ln()).abs() < 1e-9);
    }

    #[test]
    fn threshold_sits_above_normal_scores_and_tightens_with_the_budget() {
        let scores: Vec<f64> = (0..40).map(|i| 1.0 + 0.1 * ((i * 7) % 13) as f64).collect();
        let week = calibrate(&scores, &CalibrationTarget::default()).unwrap();
        let hour = calibrate(&scores, &CalibrationTarget { false_alarms_per_day: 24.0, window_s: 10.0 }).unwrap();
        let max = scores.iter().cloned().fold(0.0, f64::max);
        assert!(week.value > max && week.value > hour.value, "{} {} {}", week.value, hour.value, max);
        assert!((week.details["window_exceedance_probability"] - 10.0 / (7.0 * 86400.0)).abs() < 1e-15);
        assert_eq!(calibrate(&[1.0, 2.0], &CalibrationTarget::default()), Err(CalibrationError::TooFew(2)));
        assert!(matches!(
            calibrate(&[1.0, f64::NAN, 2.0], &CalibrationTarget::default()),
            Err(CalibrationError::BadScore { index: 1, .. })
        ));
    }
}
