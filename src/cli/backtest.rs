//! `mpdr backtest` and `mpdr calibrate`: the operating point.
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
    println!("windows scored: {:.1}% of those the audio holds", 100.0 * r.windows_scored_share);
    Ok(r)
}

/// Options of `mpdr calibrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct CalibrateArgs {
    /// Bundle folder; its threshold is replaced in place.
    #[arg(long)]
    pub bundle: PathBuf,
    /// Normal recordings of the machine on site: a WAV or log-mel .npy, or a folder of them.
    #[arg(long)]
    pub data: PathBuf,
    /// Tolerated false alarms per day (default: the bundle's target).
    #[arg(long)]
    pub false_alarms_per_day: Option<f64>,
    /// Decision window in seconds (default: the bundle's; match the monitor's detect.window_s).
    #[arg(long)]
    pub window_s: Option<f64>,
    /// The monitor's config: warn about streams of this bundle whose threshold is overridden
    /// in its state folder (the override, not the new calibration, applies until reverted).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub data_options: super::DataOptions,
}

/// The streams of `config` scored by `bundle` whose threshold is overridden in the monitor's
/// state folder: one line each.
fn live_overrides(config: &std::path::Path, bundle: &std::path::Path) -> Result<Vec<String>> {
    let cfg = crate::daemon::config::MonitorConfig::read(config)?;
    let state = cfg.state_folder(&crate::files::parent_dir(config));
    let overrides = crate::daemon::console::threshold_overrides(&state);
    let same = |p: &std::path::Path| match (p.canonicalize(), bundle.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => p == bundle,
    };
    Ok(cfg
        .streams
        .iter()
        .filter(|s| same(&s.model))
        .filter_map(|s| {
            let o = overrides.get(&s.name)?;
            Some(format!(
                "stream {} has a threshold override ({} by {} at {}) in {}: it still applies, not this calibration — revert it in the console or with DELETE /api/streams/{}/threshold",
                s.name,
                o.value,
                o.by,
                crate::alarm::rfc3339_utc(o.unix_s * 1000),
                state.display(),
                s.name
            ))
        })
        .collect())
}

/// Re-fit a bundle's threshold on on-site normal audio.
pub fn calibrate(args: &CalibrateArgs) -> Result<()> {
    for (name, v) in [("--false-alarms-per-day", args.false_alarms_per_day), ("--window-s", args.window_s)] {
        if let Some(v) = v {
            anyhow::ensure!(v.is_finite() && v > 0.0, "{name} must be > 0, got {v}");
        }
    }
    let opts = crate::offline::calibrate::CalibrateOptions {
        bundle: args.bundle.clone(),
        data: args.data.clone(),
        false_alarms_per_day: args.false_alarms_per_day,
        window_s: args.window_s,
        cache: args.data_options.cache(),
        on_bad: args.data_options.on_bad_file,
    };
    let (t, old) = crate::offline::calibrate::recalibrate(&opts)?;
    let was = old.map(|o| format!(" (was {:.6})", o.value)).unwrap_or_default();
    println!(
        "{}: threshold {:.6}{was} for {} false alarm(s)/day on {} s windows, fitted on {}",
        args.bundle.display(),
        t.value,
        t.details.get("target_false_alarms_per_day").copied().unwrap_or(f64::NAN),
        t.details.get("window_s").copied().unwrap_or(f64::NAN),
        t.fitted_on.as_deref().unwrap_or("?")
    );
    for w in &t.warnings {
        println!("warning: {w}");
    }
    if let Some(config) = &args.config {
        for w in live_overrides(config, &args.bundle)? {
            println!("warning: {w}");
        }
    }
    Ok(())
}

/// Options of `mpdr score`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScoreArgs {
    /// Bundle folder, or a folder of bundles named by machine.
    #[arg(long)]
    pub bundle: PathBuf,
    /// A machine folder (its test/ clips are scored), or a folder of `[label_]id_XX_*` clips.
    #[arg(long)]
    pub data: PathBuf,
    /// Where the `anomaly_score_<machine>_id_XX.csv` files go.
    #[arg(long)]
    pub out: PathBuf,
    /// Machine name in the file names (default: the machine folder's name).
    #[arg(long)]
    pub machine: Option<String>,
    #[command(flatten)]
    pub data_options: super::DataOptions,
}

/// Score unlabelled clips (the DCASE evaluation set) into the submission CSVs.
pub fn score(args: &ScoreArgs) -> Result<()> {
    // A machine folder's test/ clips, or a folder of clips inside the machine's folder.
    let (machine_dir, clips) = match args.data.join("test") {
        t if t.is_dir() => (args.data.clone(), t),
        _ => (args.data.parent().map(PathBuf::from).unwrap_or_default(), args.data.clone()),
    };
    let machine = match &args.machine {
        Some(m) => m.clone(),
        None => machine_dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .context("--machine: cannot tell the machine from the folder name")?,
    };
    let b = crate::offline::dev_data::bundle_for(&args.bundle, &machine, false)?;
    let bundle = crate::model::Bundle::load(&b, tch::Device::Cpu)?;
    let cache = args.data_options.cache();
    let files = crate::offline::dev_data::score_unlabelled(
        &bundle,
        &clips,
        &machine,
        &args.out,
        cache.as_deref(),
        args.data_options.on_bad_file,
    )?;
    for f in files {
        println!("{}", f.display());
    }
    Ok(())
}
