//! `mpdr record`: normal operation into DCASE-named clips that `mpdr train` takes.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Options of `mpdr record`.
#[derive(Debug, Clone, clap::Args)]
pub struct RecordArgs {
    /// Sound-card input: a name or index from `mpdr devices`, or "default".
    #[arg(long, conflicts_with = "from", required_unless_present = "from")]
    pub device: Option<String>,
    /// Replay a WAV instead (a box without a microphone, or a recording made elsewhere).
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Dataset folder: clips go to `<out>/<machine>/train/`.
    #[arg(long)]
    pub out: PathBuf,
    /// Machine type (the folder name), e.g. "pump".
    #[arg(long)]
    pub machine: String,
    /// Machine id, two digits (as in `normal_id_<NN>_...`).
    #[arg(long, default_value = "00")]
    pub id: String,
    /// Stop after this many minutes (default: until Ctrl-C, or the end of --from).
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Length of each clip, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub clip_s: f64,
    /// Sample rate of the clips (the model's; the device's own rate is converted).
    #[arg(long, default_value_t = 16_000)]
    pub rate: u32,
}

pub fn record(args: &RecordArgs) -> Result<()> {
    use crate::audio::source::{device::DeviceConfig, file::FileConfig, SourceConfig};
    anyhow::ensure!(
        args.id.len() == 2 && args.id.chars().all(|c| c.is_ascii_digit()),
        "--id {}: expected two digits, e.g. 00",
        args.id
    );
    anyhow::ensure!(
        !args.machine.is_empty() && args.machine.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        "--machine {:?}: use letters, digits, '-', '_' or '.'",
        args.machine
    );
    anyhow::ensure!(
        args.clip_s.is_finite() && (1.0..=600.0).contains(&args.clip_s),
        "--clip-s {}: expected 1–600 s",
        args.clip_s
    );
    anyhow::ensure!((8_000..=192_000).contains(&args.rate), "--rate {}: expected 8000–192000 Hz", args.rate);
    if let Some(m) = args.minutes {
        anyhow::ensure!(m.is_finite() && m > 0.0, "--minutes {m}: expected a positive number");
    }
    let source = match (&args.device, &args.from) {
        (_, Some(f)) => {
            let mut c = FileConfig::new(f.clone(), None);
            c.audio.resample = true;
            SourceConfig::File(c)
        }
        (Some(d), None) => {
            SourceConfig::Device(DeviceConfig { device: d.clone(), channel: Default::default(), block: 0 })
        }
        (None, None) => anyhow::bail!("give --device <name|index> or --from <wav>"),
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing the Ctrl-C handler")?;
    }
    let opts = crate::offline::record::RecordOptions {
        source,
        out: args.out.clone(),
        machine: args.machine.clone(),
        id: args.id.clone(),
        seconds: args.minutes.map(|m| m * 60.0),
        clip_s: args.clip_s,
        rate: args.rate,
        meter: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let r = crate::offline::record::record(&opts, &stop)?;
    let dir = args.out.join(&args.machine).join("train");
    println!(
        "{}: {} clip(s), {:.0} s of audio ({} warning(s))",
        dir.display(),
        r.clips.len(),
        r.seconds,
        r.warnings.len()
    );
    for w in &r.warnings {
        println!("warning: {w}");
    }
    Ok(())
}
