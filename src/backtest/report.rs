//! The backtest's `report.json`, `report.md`, `decisions.csv` and plots.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::labels::Recording;
use super::{delay_stats, poisson_ci_per_day, BacktestOptions, Outcome, SweepPoint};
use crate::daemon::Tapped;
use crate::detect::{DetectConfig, Transition};
use crate::eval::report::{put, ReportError};

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestReport {
    pub bundle: String,
    pub data: String,
    pub threshold: f64,
    pub detect: DetectConfig,
    pub recordings: usize,
    pub decisions: usize,
    /// Windows scored against the windows the audio holds (total length / hop): below 1 when
    /// windows failed to score, were silent, or the input was faulty (signal faults).
    pub windows_scored_share: f64,
    pub normal_hours: f64,
    pub anomalous_hours: f64,
    /// Alarms the daemon raised, and what they were against the labels.
    pub raised: usize,
    pub false_alarms: usize,
    pub ambiguous: usize,
    pub false_alarms_per_day: f64,
    /// Exact 95% Poisson interval (Garwood) of the rate, from `normal_hours` of audio.
    pub false_alarms_per_day_ci: [f64; 2],
    pub segments: usize,
    pub detected: usize,
    pub missed: usize,
    pub detection_rate: Option<f64>,
    pub median_delay_s: Option<f64>,
    pub p90_delay_s: Option<f64>,
    pub target_false_alarms_per_day: f64,
    /// Whether the normal audio can show the target at all: even zero false alarms only bound
    /// the rate below 3.69 / normal days (95%).
    pub budget_resolvable: bool,
    /// The lowest swept threshold with at most the target's false alarms (when resolvable).
    pub recommended_threshold: Option<f64>,
    pub recommended: Option<SweepPoint>,
    pub note: String,
    pub sweep: Vec<SweepPoint>,
    pub wall_s: f64,
}

impl BacktestReport {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        opts: &BacktestOptions,
        threshold: f64,
        recs: &[Recording],
        normal_days: f64,
        anomalous_s: f64,
        o: &Outcome,
        sweep: Vec<SweepPoint>,
        wall_s: f64,
        tapped: &[Tapped],
    ) -> Self {
        let segments = recs.iter().map(|r| r.anomalies.len()).sum::<usize>();
        let (median, p90) = delay_stats(&o.delays_s);
        let (lo, hi) =
            if normal_days > 0.0 { poisson_ci_per_day(o.false_alarms, normal_days) } else { (f64::NAN, f64::NAN) };
        let target = opts.false_alarms_per_day;
        // Zero false alarms in T days bound the rate below 3.69 / T: the audio resolves the
        // target only when that bound is below it.
        let resolvable = normal_days > 0.0 && poisson_ci_per_day(0, normal_days).1 <= target;
        let needed_h = 24.0 * poisson_ci_per_day(0, 1.0).1 / target;
        let recommended =
            resolvable.then(|| sweep.iter().find(|p| p.false_alarms_per_day <= target).cloned()).flatten();
        let note = if resolvable {
            format!("{:.1} h of normal audio resolve a budget of {target} false alarms/day.", normal_days * 24.0)
        } else {
            format!(
                "{:.2} h of normal audio cannot show {target} false alarms/day: even zero false alarms only bound the rate below {:.1}/day (95%). Needs at least {needed_h:.0} h of normal audio; no threshold is recommended.",
                normal_days * 24.0,
                poisson_ci_per_day(0, normal_days.max(1e-12)).1
            )
        };
        BacktestReport {
            bundle: opts.bundle.display().to_string(),
            data: opts.data.display().to_string(),
            threshold,
            detect: opts.detect.clone(),
            recordings: recs.len(),
            decisions: tapped.len(),
            windows_scored_share: {
                let total_s = normal_days * 86_400.0 + anomalous_s;
                let windows = ((total_s - opts.detect.window_s) / opts.detect.hop_s).floor() + 1.0;
                let scored = tapped.iter().filter(|t| t.score.is_finite()).count() as f64;
                if windows >= 1.0 {
                    (scored / windows).min(1.0)
                } else {
                    0.0
                }
            },
            normal_hours: normal_days * 24.0,
            anomalous_hours: anomalous_s / 3600.0,
            raised: o.raised,
            false_alarms: o.false_alarms,
            ambiguous: o.ambiguous,
            false_alarms_per_day: if normal_days > 0.0 { o.false_alarms as f64 / normal_days } else { f64::NAN },
            false_alarms_per_day_ci: [lo, hi],
            segments,
            detected: o.detected,
            missed: segments - o.detected,
            detection_rate: (segments > 0).then(|| o.detected as f64 / segments as f64),
            median_delay_s: median,
            p90_delay_s: p90,
            target_false_alarms_per_day: target,
            budget_resolvable: resolvable,
            recommended_threshold: recommended.as_ref().map(|p| p.threshold),
            recommended,
            note,
            sweep,
            wall_s,
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "—".into())
}

fn markdown(r: &BacktestReport) -> String {
    let d = &r.detect;
    let mut s = format!(
        "# Backtest — {}\n\nData: {} ({} recording(s), {:.2} h normal, {:.2} h anomalous, {} anomalous segment(s)); replayed through the daemon in {:.0} s.\nDetector: window {} s, hop {} s, on-delay {} s, off-delay {} s; threshold {:.6}. Windows scored: {:.1}% of those the audio holds.\n\n",
        r.bundle, r.data, r.recordings, r.normal_hours, r.anomalous_hours, r.segments, r.wall_s, d.window_s, d.hop_s, d.on_delay_s, d.off_delay_s, r.threshold, 100.0 * r.windows_scored_share
    );
    let _ = writeln!(
        s,
        "| raised | false alarms | false alarms / day (95% CI) | ambiguous | detected | missed | detection rate | median delay (s) | p90 delay (s) |\n|---|---|---|---|---|---|---|---|---|\n| {} | {} | {:.2} ({:.2}–{:.2}) | {} | {} | {} | {} | {} | {} |\n",
        r.raised, r.false_alarms, r.false_alarms_per_day, r.false_alarms_per_day_ci[0], r.false_alarms_per_day_ci[1],
        r.ambiguous, r.detected, r.missed, opt(r.detection_rate, 3), opt(r.median_delay_s, 1), opt(r.p90_delay_s, 1)
    );
    let _ = writeln!(s, "{}", r.note);
    if let Some(p) = &r.recommended {
        let _ = writeln!(
            s,
            "\nRecommended threshold for {} false alarms/day: **{:.6}** ({} false alarms, {:.2}/day; detection rate {}, median delay {} s).",
            r.target_false_alarms_per_day, p.threshold, p.false_alarms, p.false_alarms_per_day, opt(p.detection_rate, 3), opt(p.median_delay_s, 1)
        );
    }
    s.push_str("\n## Threshold sweep (the recorded window scores through the same alarm state machine)\n\n| threshold | false alarms | per day | detection rate | median delay (s) |\n|---|---|---|---|---|\n");
    for p in &r.sweep {
        let _ = writeln!(
            s,
            "| {:.6} | {} | {:.2} | {} | {} |",
            p.threshold,
            p.false_alarms,
            p.false_alarms_per_day,
            opt(p.detection_rate, 3),
            opt(p.median_delay_s, 1)
        );
    }
    s.push_str("\nA raise is a detection of an anomalous segment when its window covers at least half of min(window, segment); a raise whose window touches no anomalous audio is a false alarm; the rest are ambiguous. Plots: `timeline.png`, `sweep.png`. Every decision: `decisions.csv`.\n");
    s
}

/// Write the report files into `out`.
pub fn write(out: &Path, r: &BacktestReport, tapped: &[Tapped], spans: &[(f64, f64)]) -> Result<(), ReportError> {
    put(out.join("report.json"), serde_json::to_string_pretty(r).unwrap_or_default())?;
    put(out.join("report.md"), markdown(r))?;
    let mut csv = String::from("t_s,score,threshold,transition\n");
    for t in tapped {
        let tr = match t.transition {
            Some(Transition::Raised { .. }) => "raised",
            Some(Transition::Cleared) => "cleared",
            None => "",
        };
        let _ = writeln!(csv, "{},{},{},{tr}", t.t_s, t.score, t.threshold);
    }
    put(out.join("decisions.csv"), csv)?;
    if !crate::eval::plot::font_available() {
        return Ok(());
    }
    // The timeline: at most ~4000 points, alarm spans from the live decisions.
    let step = (tapped.len() / 4000).max(1);
    let mut raised = false;
    let mut points = Vec::new();
    for (i, t) in tapped.iter().enumerate() {
        match t.transition {
            Some(Transition::Raised { .. }) => raised = true,
            Some(Transition::Cleared) => raised = false,
            None => {}
        }
        if i % step == 0 {
            points.push(crate::eval::plot::TimelinePoint {
                t_s: t.t_s,
                score: t.score,
                threshold: t.threshold,
                alarm: raised,
            });
        }
    }
    let first = spans.first().map(|s| s.0);
    crate::eval::plot::timeline_png(
        &out.join("timeline.png"),
        "backtest: window score, threshold, alarms",
        &points,
        first,
    )?;
    let points: Vec<crate::eval::plot::OperatingPoint> = (r.sweep.iter())
        .filter_map(|p| {
            Some(crate::eval::plot::OperatingPoint {
                threshold: p.threshold,
                false_alarms_per_day: p.false_alarms_per_day,
                detection_rate: p.detection_rate?,
            })
        })
        .collect();
    crate::eval::plot::operating_points_png(
        &out.join("sweep.png"),
        "operating points: false alarms per day against detection rate, by threshold",
        &points,
        Some(r.threshold),
        r.recommended_threshold,
    )?;
    Ok(())
}
