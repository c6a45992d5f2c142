//! Entry points of the `mpdr` subcommands: `main.rs` parses arguments and calls one of these.
#![allow(clippy::print_stdout)] // the CLI prints its results on stdout

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::audio::ChannelSelect;
use crate::data::frontend::FrontEndConfig;
use crate::data::{load_logmel, npy};
use crate::features::PadMode;

mod alarms;
mod backtest;
mod bench;
mod doctor;
mod plant;
mod record;
mod service;

pub use alarms::{alarms, AlarmsArgs, AlarmsCommand};
pub use backtest::{backtest, calibrate, score, BacktestArgs, CalibrateArgs, ScoreArgs};
pub use bench::{bench, BenchArgs, BenchCommand};
pub use doctor::{doctor, DoctorArgs};
pub use plant::{plant, PlantArgs};
pub use record::{record, RecordArgs};
pub use service::validate_as_service;

/// What `mpdr features` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FeatureOutput {
    /// Log-mel spectrogram, shape (n_mels, frames).
    Logmel,
    /// Stacked vectors, shape (n_vectors, n_mels * frames).
    Vectors,
}

/// Options of `mpdr features`.
#[derive(Debug, Clone)]
pub struct FeaturesArgs {
    pub input: PathBuf,
    pub out: PathBuf,
    pub what: FeatureOutput,
    pub pad: Option<PadMode>,
    pub config: Option<PathBuf>,
    pub channel: Option<ChannelSelect>,
    pub resample: bool,
}

/// `mpdr features`: one WAV or log-mel `.npy` -> float32 `.npy`. Returns the written shape.
pub fn features(args: &FeaturesArgs) -> Result<Vec<usize>> {
    let mut cfg = match &args.config {
        Some(path) => FrontEndConfig::load(path)?,
        None => FrontEndConfig::default(),
    };
    if let Some(pad) = args.pad {
        cfg.features.pad_mode = pad;
    }
    if let Some(channel) = args.channel {
        cfg.audio.channel = channel;
    }
    cfg.audio.resample |= args.resample;
    let lm = load_logmel(&args.input, &cfg.features, &cfg.audio)?;
    let (shape, data) = match args.what {
        FeatureOutput::Logmel => (vec![lm.n_mels, lm.n_frames], lm.to_mel_major()),
        FeatureOutput::Vectors => {
            let v = lm.vectors(cfg.features.frames);
            (vec![v.n, v.dim], v.data)
        }
    };
    npy::write(&args.out, &shape, &data).with_context(|| "writing features")?;
    tracing::info!(input = %args.input.display(), out = %args.out.display(), ?shape, pad = %cfg.features.pad_mode, "features written");
    Ok(shape)
}

/// Feature-cache and bad-file options shared by `train` and `eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct DataOptions {
    /// Feature cache folder (default $MPDR_CACHE, $XDG_CACHE_HOME/mpdr or ~/.cache/mpdr).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Do not read or write the feature cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Unreadable files: fail (default) or skip with a warning and a count.
    #[arg(long, value_enum, default_value = "fail")]
    pub on_bad_file: crate::data::extract::OnBadFile,
}

impl DataOptions {
    pub fn cache(&self) -> Option<PathBuf> {
        if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(crate::data::extract::default_cache_dir)
        }
    }
}

/// Options of `mpdr train`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Machine folder with train/ (normal_id_XX_*.wav|npy) and optionally test/; or a plain
    /// folder of normal recordings of one machine (any WAV names, no train/: all are id 00);
    /// or a folder of machine folders (one bundle per machine under --out).
    #[arg(long)]
    pub data: PathBuf,
    /// gmm (default) / gaussian: a density of each window's spectral profile (mean log-mel
    /// per band), fitted in a second; ae / idnn: the frame-level baselines — better for
    /// machines whose faults are short impacts (sliders); mpdr-r / mpdr-idnn: MPDR on those
    /// energies; mpdr-s: scalar energy; mpdr-gaussian: MPDR from the profile Gaussian.
    /// BENCHMARKS.md, issue 23.
    #[arg(long, value_enum, default_value = "gmm")]
    pub model: crate::model::ModelKind,
    /// Bundle folder to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Training recipe (see config/train.example.toml); default: the CPU-sized recipe of config/train.example.toml.
    #[arg(long, conflicts_with = "quick")]
    pub config: Option<PathBuf>,
    /// A one-minute try: the small recipe of config/train.quick.toml (built in) instead of the
    /// default one — to see the whole path before a real run.
    #[arg(long)]
    pub quick: bool,
    /// Seed of the split, the initialisation and the batches (overrides the recipe's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// auto | cpu | cuda | cuda:N
    #[arg(long)]
    pub device: Option<crate::device::DeviceChoice>,
    /// Epochs of the last stage (MPDR; pre-training for ae / idnn).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop the last stage after this many steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Continue an interrupted run from `<out>/checkpoint`.
    #[arg(long)]
    pub resume: bool,
    /// Train one model for this machine id only (e.g. 01); the other ids' normal clips then
    /// serve the label-free checks (they are normal recordings of other machines).
    #[arg(long)]
    pub id: Option<String>,
    /// Keep every epoch's bundle under `<out>/epochs/<stage>-<n>` (for trajectories).
    #[arg(long)]
    pub keep_epochs: bool,
    /// Per-MPDR-epoch diagnostics (energies of data, negatives and pseudo-anomalies, the
    /// texture probe) in `<out>/training.md`, `training.json` and `diagnostics.png`.
    #[arg(long)]
    pub diagnostics: bool,
    #[command(flatten)]
    pub data_options: DataOptions,
}

/// `mpdr train --quick`: config/train.quick.toml, built in.
pub const QUICK_RECIPE: &str = include_str!("../../config/train.quick.toml");

/// Read a recipe file over the defaults (validated later, once, after the overrides).
fn read_train_config(path: &std::path::Path) -> Result<crate::mpdr::recipe::TrainConfig> {
    let text = crate::files::read_regular_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    crate::mpdr::recipe::TrainConfig::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// `mpdr train`.
pub fn train(args: &TrainArgs) -> Result<crate::model::Bundle> {
    // A dev_data folder: one bundle per machine folder, named by the machine. (A machine
    // folder — the DCASE layout or a plain folder of recordings — is trained below.)
    if !args.data.join("train").is_dir() && !crate::data::dcase::is_plain(&args.data) {
        let machines = crate::data::dcase::machine_folders(&args.data)?;
        anyhow::ensure!(
            args.id.is_none(),
            "--id {}: with a folder of machine folders ({}) train each machine whole, or give one machine folder",
            args.id.as_deref().unwrap_or_default(),
            args.data.display()
        );
        anyhow::ensure!(!args.resume, "--resume: give the one machine folder whose run was interrupted");
        let mut last = None;
        for m in machines {
            let name = m.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            let one = TrainArgs { data: m.clone(), out: args.out.join(&name), ..args.clone() };
            println!("{name}: training -> {}", one.out.display());
            last = Some(train(&one)?);
        }
        return last.context("no machine folder");
    }
    use crate::model::ModelKind;
    let mut cfg = match &args.config {
        Some(p) => read_train_config(p)?,
        None if args.quick => crate::mpdr::recipe::TrainConfig::from_toml(QUICK_RECIPE)
            .map_err(|e| anyhow::anyhow!("the built-in quick recipe: {e}"))?,
        None => Default::default(),
    };
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    if let Some(d) = args.device {
        cfg.device = d;
    }
    if args.diagnostics {
        cfg.mpdr_schedule.diagnostics = true;
    }
    let last_is_pretrain = matches!(args.model, ModelKind::Ae | ModelKind::Idnn);
    let (epochs, steps) = if last_is_pretrain {
        (&mut cfg.pretrain.epochs, &mut cfg.pretrain.max_steps)
    } else {
        (&mut cfg.mpdr_schedule.epochs, &mut cfg.mpdr_schedule.max_steps)
    };
    if let Some(e) = args.epochs {
        *epochs = e;
    }
    if let Some(m) = args.max_steps {
        *steps = m;
    }
    // Ctrl-C / SIGTERM: finish the current step, keep the last epoch's checkpoint, exit non-zero.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing the Ctrl-C handler")?;
    }
    let cfg = cfg.for_kind(args.model);
    // Validated once, with the command line's overrides applied.
    let default = if args.quick { "the quick recipe" } else { "the default recipe" };
    let source = args.config.as_ref().map_or(default.to_string(), |p| p.display().to_string());
    let config = crate::config::Valid::new(cfg).map_err(|p| anyhow::anyhow!("{source}: {p}"))?;
    let opts = crate::offline::TrainOptions {
        data: args.data.clone(),
        model: args.model,
        out: args.out.clone(),
        config,
        cache: args.data_options.cache(),
        on_bad: args.data_options.on_bad_file,
        resume: args.resume,
        id: args.id.clone(),
        keep_epochs: args.keep_epochs,
        stop,
    };
    let b = crate::offline::train(&opts)?;
    tracing::info!(out = %args.out.display(), threshold = %crate::error::or_none(b.manifest.threshold.as_ref().map(|t| t.value)), "bundle written");
    Ok(b)
}

/// Options of `mpdr eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Bundle folder written by `mpdr train`, or a folder of bundles named by machine (as
    /// `mpdr train --data <dev_data>` writes).
    #[arg(long)]
    pub bundle: PathBuf,
    /// A machine folder, or a folder of machine folders (each paired with its bundle by name).
    #[arg(long)]
    pub data: PathBuf,
    /// Report folder: report.json, report.md, scores.csv (one sub-folder per machine).
    #[arg(long)]
    pub out: PathBuf,
    /// auto | cpu | cuda | cuda:N (default auto: the GPU when there is one).
    #[arg(long)]
    pub device: Option<crate::device::DeviceChoice>,
    #[command(flatten)]
    pub data_options: DataOptions,
}

/// `mpdr eval`: one report per machine folder (and a summary when there are several).
pub fn eval(args: &EvalArgs) -> Result<Vec<crate::eval::report::Report>> {
    let device = args.device.unwrap_or_default().resolve()?;
    let cache = args.data_options.cache();
    let machines = crate::data::dcase::machine_folders(&args.data)?;
    let single = machines.len() == 1 && machines[0] == args.data;
    // Bundles and machines pair by name; a bundle is never scored on another machine.
    let mut pairs = Vec::new();
    for m in &machines {
        let name = m.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        pairs.push((m, crate::offline::dev_data::bundle_for(&args.bundle, &name, machines.len() > 1)?));
    }
    let mut reports = Vec::new();
    for (m, b) in pairs {
        let bundle = crate::model::Bundle::load(&b, device)?;
        let out = if single { args.out.clone() } else { args.out.join(m.file_name().unwrap_or_default()) };
        let r = crate::offline::evaluate(&bundle, m, &out, cache.as_deref(), args.data_options.on_bad_file)?;
        println!(
            "{}: mean AUC {:.4}, mean pAUC {:.4} ({} ids) -> {}",
            r.machine,
            r.mean_auc,
            r.mean_pauc,
            r.ids.len(),
            out.display()
        );
        if let Some(m) = crate::eval::report::threshold_meaning(&r) {
            println!("{}: {m}", r.machine);
        }
        reports.push(r);
    }
    if !single {
        let mut md = String::from("| machine | mean AUC | mean pAUC |\n|---|---|---|\n");
        for r in &reports {
            md.push_str(&format!("| {} | {:.4} | {:.4} |\n", r.machine, r.mean_auc, r.mean_pauc));
        }
        std::fs::create_dir_all(&args.out)?;
        std::fs::write(args.out.join("summary.md"), md)?;
    }
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("result.csv"), crate::offline::dev_data::result_csv(&reports))?;
    Ok(reports)
}

/// `mpdr monitor`.
#[derive(Debug, Clone, clap::Args)]
pub struct MonitorArgs {
    /// Monitor configuration (see config/monitor.example.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Exit once every stream's source has ended (finite file replays), after draining.
    #[arg(long)]
    pub exit_when_done: bool,
}

/// Run the daemon: SIGTERM/SIGINT drain and stop, SIGHUP reloads the configuration.
pub fn monitor(args: &MonitorArgs) -> Result<()> {
    // The daemon's stop flag is the process's: long loads and checks see it too.
    let ctl = crate::daemon::RunControl {
        stop: crate::cancel::flag(),
        exit_when_done: args.exit_when_done,
        ..Default::default()
    };
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, ctl.stop.clone()).context("installing the signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, ctl.reload.clone())
        .context("installing the SIGHUP handler")?;
    Ok(crate::daemon::run(&args.config, ctl)?)
}

/// `mpdr validate`: every problem of a monitor config (syntax, values, models, files) at once.
pub fn validate(config: &Path, ports: bool) -> Result<()> {
    let (cfg, p) = crate::daemon::config::inspect(config, ports)?;
    for w in &cfg.warnings().0 {
        println!("{}: warning: {}: {}", config.display(), w.key, w.message);
    }
    if p.is_empty() {
        println!("{}: OK ({} stream(s), {} sink(s))", config.display(), cfg.streams.len(), cfg.sinks.len().max(1));
        return Ok(());
    }
    for problem in &p.0 {
        println!("{}: {}: {}", config.display(), problem.key, problem.message);
    }
    anyhow::bail!("{}: {} problem(s)", config.display(), p.0.len())
}

/// `mpdr devices`: the input devices cpal sees.
pub fn devices() -> Result<()> {
    let list = crate::audio::source::device::list_devices().map_err(|e| anyhow::anyhow!(e))?;
    for (i, name, cfg) in &list {
        println!("{i:3}  {name}  ({cfg})");
    }
    // Only ALSA's virtual devices (or none): say why a microphone may be missing.
    if list.iter().all(|(_, name, _)| ["null", "default", "pulse", "pipewire"].contains(&name.as_str())) {
        for line in crate::audio::source::device::why_no_microphone() {
            println!("{line}");
        }
    }
    Ok(())
}

/// `mpdr synth`: sounds of the synthetic plant.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SynthArgs {
    #[command(subcommand)]
    pub command: Option<SynthCommand>,
    /// Machine type.
    #[arg(long, value_enum, default_value = "pump")]
    pub machine: crate::audio::synth::Machine,
    /// Length of the recording.
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    /// A fault that develops during the recording.
    #[arg(long, value_enum)]
    pub fault: Option<crate::audio::synth::Fault>,
    /// Seconds before the fault starts.
    #[arg(long, default_value_t = 0.0)]
    pub fault_at: f64,
    /// Seconds from the fault's onset to full severity.
    #[arg(long, default_value_t = 30.0)]
    pub ramp: f64,
    /// How strong the fault is at full severity (1 = the dataset's anomalies; 0.3 faint).
    #[arg(long, default_value_t = 1.0)]
    pub severity: f64,
    /// Seed of the machine's noise and of the fault.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Which machine of its type (`mpdr synth dataset --seed S` trains id k on instance S*1000+k).
    #[arg(long, default_value_t = 0)]
    pub instance: u64,
    /// Machine-to-background ratio in dB.
    #[arg(long, default_value_t = 6.0)]
    pub snr_db: f64,
    /// Output WAV (16 kHz mono, 16-bit; written in blocks, so hours are fine).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the recording's labels (`file,start_s,end_s,label`, for `mpdr backtest`): the
    /// fault, if any, is anomalous from --fault-at to the end.
    #[arg(long)]
    pub labels: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum SynthCommand {
    /// A DCASE-layout folder: OUT/MACHINE/train/normal_id_XX_*.wav, test/{normal,anomaly}_id_XX_*.wav.
    Dataset(SynthDatasetArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct SynthDatasetArgs {
    /// Dataset folder to write (one sub-folder per machine type).
    #[arg(long)]
    pub out: PathBuf,
    /// Machine types (default: all four).
    #[arg(long, value_enum)]
    pub machine: Vec<crate::audio::synth::Machine>,
    /// Machine instances (ids 00, 02, 04, ...).
    #[arg(long, default_value_t = 2)]
    pub ids: u64,
    /// Normal training clips per id.
    #[arg(long, default_value_t = 30)]
    pub train: u64,
    /// Normal and anomalous test clips per id (each).
    #[arg(long, default_value_t = 10)]
    pub test: u64,
    /// Length of each clip, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub clip_s: f64,
    /// Seed of the dataset: id k of seed S is machine instance S*1000+k.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn synth(args: &SynthArgs) -> Result<()> {
    use crate::audio::synth::{Synth, SynthSpec};
    if let Some(SynthCommand::Dataset(d)) = &args.command {
        return synth_dataset(d);
    }
    let out = args.out.clone().context("--out <file.wav> is required")?;
    anyhow::ensure!(args.seconds > 0.0 && args.seconds.is_finite(), "--seconds must be > 0, got {}", args.seconds);
    let spec = SynthSpec {
        machine: args.machine,
        seed: args.seed,
        instance: args.instance,
        snr_db: args.snr_db,
        fault: args.fault,
        fault_at_s: args.fault_at,
        ramp_s: args.ramp,
        severity: args.severity,
    };
    Synth::write_wav(&spec, args.seconds, &out)?;
    if let Some(csv) = &args.labels {
        let name = match (out.parent(), csv.parent()) {
            (Some(a), Some(b)) if a == b => out.file_name().map(PathBuf::from).unwrap_or_else(|| out.clone()),
            _ => std::fs::canonicalize(&out).unwrap_or_else(|_| out.clone()),
        };
        let mut text = String::from("file,start_s,end_s,label\n");
        if args.fault.is_some() && args.fault_at < args.seconds {
            text += &format!("{},{},{},anomaly\n", name.display(), args.fault_at, args.seconds);
        }
        if args.fault.is_none() || args.fault_at > 0.0 {
            text += &format!(
                "{},0,{},normal\n",
                name.display(),
                if args.fault.is_some() { args.fault_at.min(args.seconds) } else { args.seconds }
            );
        }
        std::fs::write(csv, text).with_context(|| format!("{}: cannot write", csv.display()))?;
    }
    println!(
        "{}: {:.1} s of {}{}",
        out.display(),
        args.seconds,
        args.machine.name(),
        match args.fault {
            Some(f) => format!(", {} from {:.0} s", f.name(), args.fault_at),
            None => String::new(),
        }
    );
    Ok(())
}

fn synth_dataset(d: &SynthDatasetArgs) -> Result<()> {
    let spec = crate::data::synthetic::DatasetSpec {
        out: d.out.clone(),
        machines: d.machine.clone(),
        ids: d.ids,
        train: d.train,
        test: d.test,
        clip_s: d.clip_s,
        seed: d.seed,
    };
    for (root, n) in crate::data::synthetic::write(&spec)? {
        println!("{}: {n} clips of {:.0} s", root.display(), d.clip_s);
    }
    Ok(())
}
