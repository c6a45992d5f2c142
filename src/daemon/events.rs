//! The event thread and the sinks' delivery workers. Each event is first committed to the
//! outbox with one delivery record per sink that wants its stream, then the workers of those
//! sinks are woken; they deliver from the outbox (see `alarm::deliver`). On reload the
//! workers are replaced; undelivered records of kept sink names carry over.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Result;
use crossbeam_channel::{bounded, Receiver, Sender};

use super::config::{MonitorConfig, SinkConfig};
use super::EventMsg;
use crate::alarm::deliver::{RetryPolicy, Worker};
use crate::alarm::exec::ExecSink;
use crate::alarm::mqtt::{MqttSettings, MqttSink};
use crate::alarm::outbox::Outbox;
use crate::alarm::webhook::{read_secret, WebhookSink};
use crate::alarm::{EventKind, LogSink, Sink};
use crate::metrics::{Metrics, SinkMetrics};

/// A delivery worker and the streams it wants (empty = all).
pub struct SinkSlot {
    pub worker: Worker,
    pub streams: Vec<String>,
}

/// One idle worker per outbox-fed sink of `cfg` (a log sink when none is configured), their
/// counters published in `metrics`; [`spawn`] starts them.
pub fn build_workers(cfg: &MonitorConfig, state_dir: &Path, metrics: &Metrics) -> Result<Vec<SinkSlot>> {
    let names = cfg.sink_names();
    struct Spec(String, Box<dyn Sink>, RetryPolicy, Vec<String>);
    let mut specs: Vec<Spec> = Vec::new();
    for (s, name) in cfg.sinks.iter().zip(names) {
        let key = |k: &str| format!("sink \"{name}\": {k}");
        let (sink, retry): (Box<dyn Sink>, RetryPolicy) = match s {
            SinkConfig::Modbus { .. } => continue,
            SinkConfig::Log { .. } => (Box::new(LogSink), RetryPolicy::default()),
            SinkConfig::Webhook { url, hmac_secret_env, hmac_secret_file, timeout_s, retry, .. } => {
                let secret = read_secret(hmac_secret_env.as_deref(), hmac_secret_file.as_deref())
                    .map_err(|e| anyhow::anyhow!("{}", key(&e)))?;
                if secret.is_none() {
                    tracing::warn!(sink = %name, "webhook without hmac_secret_env/hmac_secret_file: bodies are not signed");
                }
                (Box::new(WebhookSink::new(url, Duration::from_secs_f64(*timeout_s), secret)), retry.clone())
            }
            SinkConfig::Mqtt {
                host,
                port,
                client_id,
                topic,
                state_topic,
                status_topic,
                username,
                password_env,
                password_file,
                tls,
                ca_file,
                timeout_s,
                retry,
                ..
            } => {
                let password = read_secret(password_env.as_deref(), password_file.as_deref())
                    .map_err(|e| anyhow::anyhow!("{}", key(&e)))?
                    .map(|p| String::from_utf8_lossy(&p).to_string());
                let ca = match ca_file {
                    Some(f) => Some(
                        std::fs::read(f).map_err(|e| anyhow::anyhow!("{}", key(&format!("{}: {e}", f.display()))))?,
                    ),
                    None => None,
                };
                let settings = MqttSettings {
                    host: host.clone(),
                    port: *port,
                    client_id: client_id.clone(),
                    topic: topic.clone(),
                    state_topic: state_topic.clone(),
                    status_topic: status_topic.clone(),
                    username: username.clone(),
                    password,
                    tls: *tls,
                    ca,
                    timeout: Duration::from_secs_f64(*timeout_s),
                };
                (Box::new(MqttSink::connect(settings).map_err(|e| anyhow::anyhow!("{}", key(&e)))?), retry.clone())
            }
            SinkConfig::Exec { command, timeout_s, retry, .. } => {
                (Box::new(ExecSink::new(command.clone(), Duration::from_secs_f64(*timeout_s))), retry.clone())
            }
        };
        specs.push(Spec(name, sink, retry, s.streams().to_vec()));
    }
    if cfg.sinks.is_empty() {
        specs.push(Spec("log".into(), Box::new(LogSink), RetryPolicy::default(), Vec::new()));
    }
    let old = metrics.sinks.lock().map(|v| v.clone()).unwrap_or_default();
    let mut slots = Vec::new();
    let mut published = Vec::new();
    for Spec(name, sink, retry, streams) in specs {
        let m = old.iter().find(|m| m.name == name).cloned().unwrap_or_else(|| Arc::new(SinkMetrics::new(&name)));
        published.push(m.clone());
        slots.push(SinkSlot { worker: Worker::spawn(name, sink, state_dir.to_path_buf(), retry, m)?, streams });
    }
    if let Ok(mut v) = metrics.sinks.lock() {
        *v = published;
    }
    Ok(slots)
}

/// The event thread's handle plus its worker-replacement channel.
pub struct Events {
    pub handle: JoinHandle<()>,
    pub replace: Sender<Vec<SinkSlot>>,
}

pub fn spawn(
    rx: Receiver<EventMsg>,
    slots: Vec<SinkSlot>,
    state_dir: PathBuf,
    max_events: usize,
    metrics: Arc<Metrics>,
) -> Result<Events> {
    let mut outbox = Outbox::open(&state_dir)?;
    let (replace, replaced) = bounded::<Vec<SinkSlot>>(4);
    for s in &slots {
        s.worker.start(None);
    }
    let handle = std::thread::Builder::new().name("mpdr-events".into()).spawn(move || {
        let mut slots = slots;
        let mut since_prune = 0usize;
        loop {
            crossbeam_channel::select! {
                recv(rx) -> msg => match msg {
                    Ok(ev) => {
                        record(&mut outbox, &ev, &slots, &metrics);
                        since_prune += 1;
                        if since_prune >= 256 {
                            since_prune = 0;
                            match outbox.prune(max_events) {
                                Ok(n) if n > 0 => tracing::debug!(pruned = n, "outbox pruned"),
                                Ok(_) => {}
                                Err(e) => tracing::warn!(error = %e, "outbox prune failed"),
                            }
                        }
                    }
                    Err(_) => break,
                },
                recv(replaced) -> new => if let Ok(new) = new {
                    // Old workers finish their delivery in progress; a new worker of the same
                    // sink starts only after its predecessor has exited, the others at once.
                    let mut old: Vec<(String, JoinHandle<()>)> =
                        std::mem::replace(&mut slots, new).into_iter().map(|s| (s.worker.name.clone(), s.worker.stop())).collect();
                    for s in &slots {
                        let previous = old.iter().position(|(n, _)| *n == s.worker.name).map(|i| old.swap_remove(i).1);
                        s.worker.start(previous);
                    }
                    std::thread::spawn(move || old.into_iter().for_each(|(_, h)| { let _ = h.join(); }));
                },
            }
        }
        // Shutdown: stop the workers; what is undelivered stays in the outbox for next time.
        for h in slots.into_iter().map(|s| s.worker.stop()).collect::<Vec<_>>() {
            let _ = h.join();
        }
    })?;
    Ok(Events { handle, replace })
}

/// Commit the event with one delivery per interested sink, then wake those sinks.
fn record(outbox: &mut Outbox, ev: &crate::alarm::AlarmEvent, slots: &[SinkSlot], metrics: &Metrics) {
    let k = match ev.kind {
        EventKind::Raised => 0,
        EventKind::Cleared => 1,
        EventKind::StreamDown => 2,
        EventKind::StreamUp => 3,
    };
    metrics.events[k].fetch_add(1, Ordering::Relaxed);
    let wanted: Vec<&SinkSlot> =
        slots.iter().filter(|s| s.streams.is_empty() || s.streams.contains(&ev.stream)).collect();
    let names: Vec<&str> = wanted.iter().map(|s| s.worker.name.as_str()).collect();
    // Retry the commit briefly (a busy disk); an event is never handed to a sink uncommitted.
    let mut tries = 0;
    while let Err(e) = outbox.add(ev, &names) {
        tries += 1;
        if tries >= 5 {
            metrics.outbox_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(event = %ev.id, error = %e, event_json = %ev.to_json(), "cannot write the event to the outbox: logged here instead");
            return;
        }
        std::thread::sleep(Duration::from_millis(100 * tries));
    }
    for s in wanted {
        s.worker.wake();
    }
}
