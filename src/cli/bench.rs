//! `mpdr bench`.
#![allow(clippy::print_stdout)] // the CLI prints its results on stdout

use std::path::PathBuf;

use anyhow::Result;

/// `mpdr bench`: the paper's benchmarks through the shared core.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// ADBench tables (.npz with X and y): stratified 70/30 splits, AUROC and AUPR per seed.
    Vectors {
        /// An .npz file or a folder of them.
        #[arg(long)]
        npz: PathBuf,
        /// Results folder (per table: results.csv, results.md, per-seed trajectories).
        #[arg(long)]
        out: PathBuf,
        /// Models to run (repeat the flag for several).
        #[arg(long, value_enum, default_values = ["mpdr-r"])]
        model: Vec<crate::model::ModelKind>,
        /// Seeds per table and model (the split and the training both change with it).
        #[arg(long, default_value_t = 3)]
        seeds: usize,
        /// The paper-scale budget (50 epochs per stage; a GPU budget) instead of the CPU one.
        #[arg(long)]
        paper: bool,
        /// Visible-chain step: capped = min(10, d/2) (stable on low-d tables), paper = 10.
        #[arg(long, value_enum, default_value = "capped")]
        visible_step: crate::bench::vectors::VisibleStep,
        /// auto | cpu | cuda | cuda:N
        #[arg(long, default_value = "auto")]
        device: crate::device::DeviceChoice,
    },
    /// MNIST hold-out digit (paper Table 1, AUPR) and constant-image OOD (Table 2) with the
    /// Table 8 conv nets. Reads t10k-* IDX files (gzipped or not); train-* too when present.
    Mnist {
        /// Folder with t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz].
        #[arg(long)]
        idx_dir: PathBuf,
        /// Digit held out as the anomaly (repeat the flag for several).
        #[arg(long, required = true)]
        holdout: Vec<u8>,
        /// Results folder (results.csv, results.md).
        #[arg(long)]
        out: PathBuf,
        /// Models to run (repeat the flag for several); the AE is trained either way (it is
        /// the MPDR models' manifold).
        #[arg(long, value_enum, default_values = ["ae", "mpdr-r", "mpdr-s"])]
        model: Vec<crate::model::ModelKind>,
        /// Seed of the training runs.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The MPDR code's budget (AE 30 epochs, MPDR 60 epochs, batch 128; a GPU budget).
        #[arg(long, conflicts_with_all = ["ae_steps", "mpdr_steps"])]
        paper: bool,
        /// AE steps of the CPU budget (default 400).
        #[arg(long)]
        ae_steps: Option<usize>,
        /// MPDR steps per MPDR model of the CPU budget (default 100).
        #[arg(long)]
        mpdr_steps: Option<usize>,
        /// auto | cpu | cuda | cuda:N
        #[arg(long, default_value = "auto")]
        device: crate::device::DeviceChoice,
    },
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    match &args.command {
        BenchCommand::Vectors { npz, out, model, seeds, paper, visible_step, device } => {
            anyhow::ensure!(*seeds >= 1, "--seeds must be >= 1");
            for m in model {
                anyhow::ensure!(
                    matches!(
                        m,
                        crate::model::ModelKind::MpdrR | crate::model::ModelKind::MpdrS | crate::model::ModelKind::Ae
                    ),
                    "--model {m}: the vector benchmark runs mpdr-r, mpdr-s or ae"
                );
            }
            let budget = if *paper { crate::bench::vectors::Budget::PAPER } else { crate::bench::vectors::Budget::CPU };
            let device = device.resolve()?;
            let results = crate::bench::vectors::run(npz, out, model, *seeds, budget, *visible_step, device)?;
            println!("{} dataset(s); results in {}", results.len(), out.join("results.md").display());
            Ok(())
        }
        BenchCommand::Mnist { idx_dir, holdout, out, model, seed, paper, ae_steps, mpdr_steps, device } => {
            use crate::bench::mnist;
            let mut budget = if *paper { mnist::Budget::PAPER } else { mnist::Budget::CPU };
            budget.ae_steps = ae_steps.unwrap_or(budget.ae_steps);
            budget.mpdr_steps = mpdr_steps.unwrap_or(budget.mpdr_steps);
            anyhow::ensure!(
                *paper || (budget.ae_steps > 0 && budget.mpdr_steps > 0),
                "--ae-steps and --mpdr-steps must be >= 1"
            );
            let device = device.resolve()?;
            let results = mnist::run(idx_dir, out, holdout, model, budget, *seed, device)?;
            for r in &results {
                for m in &r.models {
                    println!(
                        "hold-out {}: {:<7} AUPR {:.3}  AUROC {:.3}  constant-image AUPR {:.3}  ({:.0} s)",
                        r.holdout, m.model, m.aupr, m.auroc, m.constant_aupr, m.train_s
                    );
                }
            }
            println!("results in {}", out.join("results.md").display());
            Ok(())
        }
    }
}
