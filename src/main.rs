//! The `mpdr` command line: parse arguments, set up logging, call one library entry point,
//! print the error chain on one line and exit non-zero on failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mpdr::audio::ChannelSelect;
use mpdr::cli::{self, AlarmsArgs, EvalArgs, FeatureOutput, FeaturesArgs, MonitorArgs, SynthArgs, TrainArgs};
use mpdr::features::PadMode;

#[derive(Parser)]
#[command(name = "mpdr", version, about = "Acoustic anomaly detection for industrial machines (MPDR energy models)")]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compute DCASE log-mel features of one WAV (or log-mel .npy) and write a float32 .npy.
    Features {
        /// Input: a .wav file, or a precomputed log-mel .npy of shape (n_mels, frames).
        input: PathBuf,
        /// Output .npy path.
        #[arg(long)]
        out: PathBuf,
        /// logmel: (n_mels, frames); vectors: (n_vectors, n_mels * frames).
        #[arg(long, value_enum, default_value = "logmel")]
        what: FeatureOutput,
        /// Centre padding: constant (zeros, librosa >= 0.9; default) or reflect (DCASE 2020 baseline).
        #[arg(long, value_enum)]
        pad: Option<PadMode>,
        /// TOML file with [features] and [audio] tables (see config/features.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Channel of a multi-channel file: "mix" (mean, default) or a 0-based index.
        #[arg(long)]
        channel: Option<ChannelSelect>,
        /// Resample files whose rate differs from the configured one (default: refuse them).
        #[arg(long)]
        resample: bool,
    },
    /// Train a model bundle on the normal recordings of a DCASE machine folder.
    Train(TrainArgs),
    /// Evaluate a bundle on the test files of a machine folder (or a folder of machine folders).
    Eval(EvalArgs),
    /// Replay recordings through the daemon's path and count what its alarms mean: false
    /// alarms per day, detection rate and delay, a threshold sweep.
    Backtest(mpdr::cli::BacktestArgs),
    /// Re-fit a bundle's alarm threshold on normal recordings made on site.
    Calibrate(mpdr::cli::CalibrateArgs),
    /// Record normal operation of a machine (a sound-card input, or --from a WAV) into
    /// DCASE-named clips: <out>/<machine>/train/normal_id_<NN>_<n>.wav, for `mpdr train`.
    Record(mpdr::cli::RecordArgs),
    /// Every box and stream publishing to one MQTT broker (the `mqtt` sink's fleet layout):
    /// status, state, last event and its age — live in the terminal, or once as JSON.
    Plant(mpdr::cli::PlantArgs),
    /// Score unlabelled clips (e.g. the DCASE evaluation set) into anomaly_score_<machine>_id_XX.csv.
    Score(mpdr::cli::ScoreArgs),
    /// Run the monitoring daemon (SIGTERM/SIGINT: drain and stop; SIGHUP: reload the config).
    Monitor(MonitorArgs),
    /// Check a monitor config and print every problem with its key, and warnings; non-zero
    /// exit if any problem. Loads and verifies every bundle; never binds a port or opens a
    /// device, so it is safe against the config of a running daemon (`systemctl reload`).
    Validate {
        /// The monitor config (TOML) to check.
        #[arg(long)]
        config: PathBuf,
        /// Accepted for older unit files; validate never binds ports.
        #[arg(long, hide = true)]
        no_ports: bool,
        /// Run the checks as the systemd service will (as root): as its user (--service-user,
        /// else nobody) with the audio group, /home, /root and /run/user hidden, and the unit's
        /// LoadCredential= files in $CREDENTIALS_DIRECTORY.
        #[arg(long)]
        as_service: bool,
        /// The service's user for --as-service.
        #[arg(long, default_value = "mpdr", requires = "as_service")]
        service_user: String,
        /// The unit whose LoadCredential= lines --as-service uses (default: the installed
        /// mpdr-monitor.service and its drop-ins).
        #[arg(long, requires = "as_service")]
        unit: Option<PathBuf>,
    },
    /// List the audio input devices (names and indices for `source = { type = "device" }`).
    Devices,
    /// What this box gives mpdr: architecture, the libtorch loaded (cpu or cuda build), GPUs
    /// visible (name, memory), sound inputs; --bench times scoring (vectors/s, real-time streams).
    Doctor(mpdr::cli::DoctorArgs),
    /// Inspect the alarm outbox: list, show, retry dead letters.
    Alarms(AlarmsArgs),
    /// Sounds of the synthetic plant: one WAV, or a DCASE-layout dataset (`mpdr synth dataset`).
    Synth(SynthArgs),
    /// The whole product on a synthetic plant: machines streaming, one developing a fault, the
    /// alarm raised, delivered (log, webhook, Modbus) and explained; a report at the end.
    Demo(mpdr::demo::DemoArgs),
    /// The paper's benchmarks through the same core: ADBench vectors and MNIST hold-out digits.
    Bench(mpdr::cli::BenchArgs),
}

fn init_tracing_to(json: bool, file: std::sync::Mutex<std::fs::File>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MPDR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(file);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MPDR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `mpdr … | head`: once the reader has gone, printing fails; that ends the command quietly
/// with success, like other Unix tools, instead of a panic message and exit 101.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    match &cli.command {
        // The demo owns the terminal (live view); the monitor's log goes to the report folder.
        Command::Demo(a) => {
            let _ = std::fs::create_dir_all(&a.out);
            match std::fs::File::create(a.out.join("monitor.log")) {
                Ok(f) => init_tracing_to(cli.log_json, std::sync::Mutex::new(f)),
                Err(_) => init_tracing(cli.log_json),
            }
        }
        _ => init_tracing(cli.log_json),
    }
    mpdr::device::init_threads();
    let result = match cli.command {
        Command::Features { input, out, what, pad, config, channel, resample } => {
            cli::features(&FeaturesArgs { input, out, what, pad, config, channel, resample }).map(|_| ())
        }
        Command::Train(a) => cli::train(&a).map(|_| ()),
        Command::Eval(a) => cli::eval(&a).map(|_| ()),
        Command::Backtest(a) => cli::backtest(&a).map(|_| ()),
        Command::Calibrate(a) => cli::calibrate(&a),
        Command::Record(a) => cli::record(&a),
        Command::Score(a) => cli::score(&a),
        Command::Plant(a) => cli::plant(&a),
        Command::Monitor(a) => cli::monitor(&a),
        Command::Validate { config, as_service: true, service_user, unit, .. } => {
            cli::validate_as_service(&config, &service_user, unit.as_deref())
        }
        Command::Validate { config, .. } => cli::validate(&config, false),
        Command::Devices => cli::devices(),
        Command::Doctor(a) => cli::doctor(&a),
        Command::Alarms(a) => cli::alarms(&a),
        Command::Synth(a) => cli::synth(&a),
        Command::Demo(a) => mpdr::demo::demo(&a).map(|_| ()),
        Command::Bench(a) => cli::bench(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpdr: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every option and argument of every subcommand says what it is for.
    #[test]
    fn every_option_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if a.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "mpdr", &mut missing);
        assert!(missing.is_empty(), "options without help: {missing:#?}");
    }
}
