//! `mpdr plant`: every box and stream on one broker, in the terminal or as JSON.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::plant::listen::{follow, ListenOptions};

/// Options of `mpdr plant`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlantArgs {
    /// The broker the daemons publish to, host:port (e.g. 127.0.0.1:1883).
    #[arg(long)]
    pub mqtt: String,
    /// The first topic level(s) of the daemons' `mqtt` sinks (their `prefix`).
    #[arg(long, default_value = "mpdr")]
    pub prefix: String,
    /// Print the plant once as JSON (after --wait-s) and exit.
    #[arg(long)]
    pub json: bool,
    /// Print the table once (after --wait-s) and exit; the default when stdout is not a terminal.
    #[arg(long)]
    pub once: bool,
    /// For monitoring systems: print once (like --once, or --json), then exit 0 when every box
    /// is online and talking and no stream is in an unacknowledged alarm, down or without signal, else print
    /// what is wrong (one line each, on stderr) and exit 2.
    #[arg(long)]
    pub check: bool,
    /// With --check: an acknowledged alarm is a failure too (by default someone is on it).
    #[arg(long)]
    pub check_acknowledged: bool,
    /// Seconds to collect the retained topics (and what arrives) before --json / --once print.
    #[arg(long, default_value_t = 2.0)]
    pub wait_s: f64,
    /// Broker user name.
    #[arg(long)]
    pub username: Option<String>,
    /// Environment variable holding the broker password.
    #[arg(long)]
    pub password_env: Option<String>,
    /// The broker's CA certificate (PEM): connect with TLS.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

pub fn plant(a: &PlantArgs) -> Result<()> {
    let (host, port) = a
        .mqtt
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_string(), p.parse::<u16>().ok()?)))
        .filter(|(h, _)| !h.is_empty())
        .with_context(|| format!("--mqtt {}: expected host:port, e.g. 127.0.0.1:1883", a.mqtt))?;
    crate::alarm::sink::mqtt::check_prefix(&a.prefix).map_err(|e| anyhow::anyhow!("--prefix: {e}"))?;
    anyhow::ensure!(
        a.wait_s.is_finite() && (0.1..=600.0).contains(&a.wait_s),
        "--wait-s {}: expected 0.1–600",
        a.wait_s
    );
    let password = crate::alarm::sink::read_secret(a.password_env.as_deref(), None)
        .map_err(|e| anyhow::anyhow!("--password-env: {e}"))?
        .map(|p| String::from_utf8_lossy(&p).to_string());
    let ca = match &a.ca_file {
        Some(f) => Some(crate::files::read_regular(f).with_context(|| format!("--ca-file {}", f.display()))?),
        None => None,
    };
    let o = ListenOptions { host, port, prefix: a.prefix.clone(), username: a.username.clone(), password, ca };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing the Ctrl-C handler")?;
    }
    let connect = Duration::from_secs_f64(a.wait_s.max(5.0));
    let now_ms = crate::alarm::deliver::now_ms;
    let live = !a.json && !a.once && !a.check && std::io::IsTerminal::is_terminal(&std::io::stdout());
    if live {
        let title = format!("mpdr plant · {}:{} · prefix {}", o.host, o.port, o.prefix);
        follow(&o, &stop, None, Duration::from_secs(1), connect, |p, up| {
            let link = if up { "" } else { " · (broker away: reconnecting)" };
            print!("\x1b[H\x1b[2J{title}{link}\n{}", p.render(now_ms()));
        })
        .map_err(anyhow::Error::msg)?;
        return Ok(());
    }
    let until = Instant::now() + Duration::from_secs_f64(a.wait_s);
    let p =
        follow(&o, &stop, Some(until), Duration::from_secs(3600), connect, |_, _| {}).map_err(anyhow::Error::msg)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p.to_json(now_ms()))?);
    } else {
        print!("{}", p.render(now_ms()));
    }
    if a.check {
        let problems = p.problems(now_ms(), a.check_acknowledged);
        if !problems.is_empty() || p.boxes.is_empty() {
            if p.boxes.is_empty() {
                eprintln!("no box publishes under {}/ on {}:{}", o.prefix, o.host, o.port);
            }
            for line in problems {
                eprintln!("{line}");
            }
            std::process::exit(2);
        }
    }
    Ok(())
}
