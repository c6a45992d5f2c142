//! `mpdr backtest`.
#![allow(clippy::print_stdout)] // the CLI prints its results on stdout

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::detect::DetectConfig;

/// Options of `mpdr backtest`.
#[derive(Debug, Clone, clap::Args)]
pub struct BacktestArgs {
    /// Bundle folder written by `mpdr train`.
    #[arg(long)]
    pub bundle: PathBuf,
    /// A DCASE machine folder (its test clips), or a WAV / folder of WAVs.
    #[arg(long)]
    pub data: PathBuf,
    /// Labels of WAV recordings: `file,start_s,end_s,label` (normal | anomaly); without it,
    /// all audio is normal.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Report folder: report.json, report.md, decisions.csv, timeline.png, sweep.png.
    #[arg(long)]
    pub out: PathBuf,
    /// TOML with the detector's settings, as a monitor's `[stream.detect]` (default: the
    /// daemon's defaults; for DCASE clips window 5 s, hop 1 s, no delays).
    #[arg(long)]
    pub detect: Option<PathBuf>,
    /// The false-alarm budget the recommended threshold is chosen for.
    #[arg(long, default_value_t = 1.0)]
    pub false_alarms_per_day: f64,
}

/// Run a backtest and print its headline.
pub fn backtest(args: &BacktestArgs) -> Result<crate::backtest::report::BacktestReport> {
    anyhow::ensure!(
        args.false_alarms_per_day.is_finite() && args.false_alarms_per_day > 0.0,
        "--false-alarms-per-day must be > 0, got {}",
        args.false_alarms_per_day
    );
    let detect = match &args.detect {
        Some(p) => {
            let cfg: DetectConfig = crate::config::read_toml(p)?;
            let mut problems = crate::config::Problems::default();
            cfg.validate("detect", &mut problems);
            problems.into_result(cfg).map_err(|p| {
                anyhow::anyhow!("{}: {p}", args.detect.as_ref().map(|d| d.display().to_string()).unwrap_or_default())
            })?
        }
        // DCASE clips are 6.4–10 s: windows of 5 s fit inside one, decided every second.
        None if args.data.join("test").is_dir() => {
            DetectConfig { window_s: 5.0, hop_s: 1.0, on_delay_s: 0.0, off_delay_s: 0.0, ..DetectConfig::default() }
        }
        None => DetectConfig::default(),
    };
    let opts = crate::backtest::BacktestOptions {
        bundle: args.bundle.clone(),
        data: args.data.clone(),
        labels: args.labels.clone(),
        out: args.out.clone(),
        detect,
        false_alarms_per_day: args.false_alarms_per_day,
    };
    let r = crate::backtest::run(&opts).with_context(|| format!("backtest of {}", args.bundle.display()))?;
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "—".into());
    println!(
        "{}: {} raised, {} false alarm(s) in {:.2} h normal = {:.2}/day (95% CI {:.2}–{:.2}); detected {}/{} segments, median delay {} s, p90 {} s",
        args.out.display(),
        r.raised,
        r.false_alarms,
        r.normal_hours,
        r.false_alarms_per_day,
        r.false_alarms_per_day_ci[0],
        r.false_alarms_per_day_ci[1],
        r.detected,
        r.segments,
        opt(r.median_delay_s),
        opt(r.p90_delay_s)
    );
    println!("{}", r.note);
    Ok(r)
}
