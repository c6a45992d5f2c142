//! `mpdr alarms`: the daemon's outbox from the command line (list, show, re-drive dead letters).

use std::path::PathBuf;

use anyhow::{Context, Result};

/// `mpdr alarms`: inspect the outbox and re-drive dead letters.
#[derive(Debug, Clone, clap::Args)]
pub struct AlarmsArgs {
    /// The daemon's monitor config: its outbox is found as the daemon finds it (`[state] dir`,
    /// else `$STATE_DIRECTORY`, else `state/` next to the config).
    #[arg(long, global = true, conflicts_with = "state_dir")]
    pub config: Option<PathBuf>,
    /// The daemon's state folder itself (default: `$STATE_DIRECTORY`, else `./state`; under
    /// systemd /var/lib/mpdr).
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: AlarmsCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum AlarmsCommand {
    /// Events, newest first, with their delivery counts.
    List {
        /// Only events with pending deliveries, or with dead letters.
        #[arg(long, value_parser = ["pending", "dead"])]
        state: Option<String>,
        /// Show at most this many events (it says when it cut the list).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// One event (JSON) and the state of each of its deliveries.
    Show {
        /// The event's id (the first column of `mpdr alarms list`).
        id: String,
    },
    /// Put dead letters back to pending: one event's, or all with --all.
    Retry {
        /// The event whose dead letters to re-queue.
        id: Option<String>,
        /// Re-queue every dead letter.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

pub fn alarms(args: &AlarmsArgs) -> Result<()> {
    use crate::alarm::outbox::{Outbox, DB_FILE};
    let state_dir = match (&args.config, &args.state_dir) {
        (Some(c), _) => {
            let cfg = crate::daemon::config::MonitorConfig::read(c)?;
            cfg.state_folder(&crate::files::parent_dir(c))
        }
        (None, Some(d)) => d.clone(),
        (None, None) => {
            std::env::var_os("STATE_DIRECTORY").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("state"))
        }
    };
    let db = state_dir.join(DB_FILE);
    anyhow::ensure!(
        db.exists(),
        "{}: no outbox here (give the daemon's config with --config, or its [state] dir with --state-dir)",
        db.display()
    );
    let mut o = Outbox::open(&state_dir)?;
    match &args.command {
        AlarmsCommand::List { state, limit, json } => {
            use std::io::Write as _;
            let rows = o.list(state.as_deref(), *limit)?;
            let shown = rows.len();
            let mut out = std::io::stdout().lock();
            for r in rows {
                let line = if *json {
                    serde_json::to_string(&r)?
                } else {
                    format!(
                        "{}  {}  {:<12} {:<24} pending {} delivered {} dead {}",
                        r.id,
                        crate::alarm::rfc3339_utc(r.created_ms),
                        r.kind,
                        r.stream,
                        r.pending,
                        r.delivered,
                        r.dead
                    )
                };
                // `mpdr alarms list | head`: a closed pipe ends the listing, quietly.
                if writeln!(out, "{line}").is_err() {
                    return Ok(());
                }
            }
            if shown == *limit {
                eprintln!("(the newest {shown} events; --limit N shows more)");
            }
        }
        AlarmsCommand::Show { id } => {
            let (ev, rows) = o.show(id)?.with_context(|| format!("{}: no event {id}", db.display()))?;
            println!("{}", serde_json::to_string_pretty(&ev)?);
            if let Some(e) = &ev.evidence {
                println!("evidence: audio {}\nevidence: spectrogram {}", e.wav, e.png);
            }
            for r in rows {
                println!(
                    "{:<16} {:<10} attempts {:<3} {}",
                    r.sink,
                    r.state,
                    r.attempts,
                    r.error.map(|e| format!("last error: {e}")).unwrap_or_default()
                );
            }
        }
        AlarmsCommand::Retry { id, all } => {
            anyhow::ensure!(id.is_some() || *all, "give an event id, or --all for every dead letter");
            let n = o.redrive(id.as_deref(), crate::alarm::deliver::now_ms())?;
            println!("{n} delivery(ies) re-queued; a running daemon picks them up within a second");
        }
    }
    Ok(())
}
