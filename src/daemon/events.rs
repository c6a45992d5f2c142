//! The event thread and the sinks' delivery workers. Each event is first committed to the
//! outbox with one delivery record per sink that wants its stream, then the workers of those
//! sinks are woken; they deliver from the outbox (see `alarm::deliver`). On reload the
//! workers are replaced; undelivered records of kept sink names carry over.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::error::{thread, DaemonError};
use super::EventMsg;
use crate::alarm::deliver::Worker;
use crate::alarm::outbox::Outbox;
use crate::alarm::sink::{BuildContext, Built, NamedSink};
use crate::alarm::EventKind;
use crate::metrics::{Metrics, SinkMetrics};

pub use super::commit::SinkSlot;

/// A reload's sinks: a new worker, or the running one kept (its config did not change: an
/// MQTT session, a webhook's connection pool survive the reload).
pub enum Replacement {
    New(SinkSlot),
    Keep { name: String },
}

/// One idle worker per delivery sink of `sinks` (status servers are not fed from the outbox),
/// their counters published in `metrics`; [`spawn`] starts them.
pub fn build_workers(
    sinks: &[NamedSink],
    state_dir: &Path,
    metrics: &Arc<Metrics>,
) -> Result<Vec<SinkSlot>, DaemonError> {
    let all = rebuild_workers(sinks, &[], state_dir, metrics)?;
    Ok(all.into_iter().filter_map(|r| if let Replacement::New(s) = r { Some(s) } else { None }).collect())
}

/// For a reload: a new idle worker per delivery sink of `sinks`, except those exactly as in
/// `running` (same name, same settings), which are kept.
pub fn rebuild_workers(
    sinks: &[NamedSink],
    running: &[NamedSink],
    state_dir: &Path,
    metrics: &Arc<Metrics>,
) -> Result<Vec<Replacement>, DaemonError> {
    let old = metrics.sinks.lock().map(|v| v.clone()).unwrap_or_default();
    let mut slots = Vec::new();
    let mut published = Vec::new();
    for s in sinks.iter().filter(|s| !s.config.spec().is_server()) {
        if s.config.spec().keeps_session() && running.contains(s) {
            if let Some(m) = old.iter().find(|m| m.name == s.name) {
                published.push(m.clone());
            }
            slots.push(Replacement::Keep { name: s.name.clone() });
            continue;
        }
        let ctx = BuildContext { name: &s.name, metrics };
        let Built::Delivery { sink, retry } =
            s.config.spec().build(&ctx).map_err(|message| DaemonError::Sink { name: s.name.clone(), message })?
        else {
            continue;
        };
        let m = old.iter().find(|m| m.name == s.name).cloned().unwrap_or_else(|| Arc::new(SinkMetrics::new(&s.name)));
        published.push(m.clone());
        let worker = Worker::spawn(s.name.clone(), sink, state_dir.to_path_buf(), retry, m)?;
        slots.push(Replacement::New(SinkSlot { worker, streams: s.config.streams().to_vec() }));
    }
    if let Ok(mut v) = metrics.sinks.lock() {
        *v = published;
    }
    Ok(slots)
}

/// The status servers of `sinks`, started; they run until dropped.
pub fn start_servers(sinks: &[NamedSink], metrics: &Arc<Metrics>) -> Result<Vec<Box<dyn Send>>, DaemonError> {
    let mut servers = Vec::new();
    for s in sinks.iter().filter(|s| s.config.spec().is_server()) {
        let ctx = BuildContext { name: &s.name, metrics };
        let sink_error = |message| DaemonError::Sink { name: s.name.clone(), message };
        match s.config.spec().build(&ctx).map_err(sink_error)? {
            Built::Server(server) => servers.push(server),
            Built::Delivery { .. } => return Err(sink_error("not a status server".into())),
        }
    }
    Ok(servers)
}

/// The event thread's handle plus its worker-replacement channel.
pub struct Events {
    pub handle: JoinHandle<()>,
    pub replace: Sender<Vec<Replacement>>,
}

pub fn spawn(
    rx: Receiver<EventMsg>,
    slots: Vec<SinkSlot>,
    state_dir: PathBuf,
    max_events: usize,
    metrics: Arc<Metrics>,
    evidence: Option<crate::alarm::evidence::Evidence>,
) -> Result<Events, DaemonError> {
    let mut committer = super::commit::Committer::new(Outbox::open(&state_dir)?, evidence);
    let (replace, replaced) = bounded::<Vec<Replacement>>(4);
    let retry = crossbeam_channel::tick(Duration::from_secs(1));
    for s in &slots {
        s.worker.start(None);
    }
    let handle = std::thread::Builder::new().name("mpdr-events".into()).spawn(move || {
        let mut slots = slots;
        let mut since_prune = 0usize;
        let mut suppressed = Suppressed::default();
        loop {
            crossbeam_channel::select! {
                recv(rx) -> msg => match msg {
                    Ok(mut ev) => {
                        ev.stamp(&metrics.identity);
                        if let Some(s) = metrics.streams.iter().find(|s| s.name == ev.stream) {
                            ev.priority = Some(s.priority);
                        }
                        suppressed.judge(&mut ev, &metrics);
                        committer.take(*ev, &slots, &metrics);
                        since_prune += 1;
                        if since_prune >= 256 {
                            since_prune = 0;
                            committer.prune(max_events);
                        }
                    }
                    Err(_) => break,
                },
                recv(retry) -> _ => committer.drain(&slots, &metrics),
                recv(replaced) -> new => if let Ok(new) = new {
                    // Old workers finish their delivery in progress; a new worker of the same
                    // sink starts only after its predecessor has exited, the others at once.
                    // Kept sinks go on as they are.
                    let mut running = std::mem::take(&mut slots);
                    let mut started = Vec::new();
                    for r in new {
                        match r {
                            Replacement::Keep { name } => {
                                if let Some(i) = running.iter().position(|s| s.worker.name == name) {
                                    slots.push(running.swap_remove(i));
                                }
                            }
                            Replacement::New(s) => {
                                started.push(s.worker.name.clone());
                                slots.push(s);
                            }
                        }
                    }
                    let mut old: Vec<(String, JoinHandle<()>)> =
                        running.into_iter().map(|s| (s.worker.name.clone(), s.worker.stop())).collect();
                    for s in slots.iter().filter(|s| started.contains(&s.worker.name)) {
                        let previous = old.iter().position(|(n, _)| *n == s.worker.name).map(|i| old.swap_remove(i).1);
                        s.worker.start(previous);
                    }
                    std::thread::spawn(move || old.into_iter().for_each(|(_, h)| { let _ = h.join(); }));
                },
            }
        }
        committer.finish(&slots, &metrics);
        // Shutdown: the workers deliver what is due once more, then stop; what is undelivered
        // stays in the outbox for next time.
        for h in slots.into_iter().map(|s| s.worker.finish()).collect::<Vec<_>>() {
            let _ = h.join();
        }
    })
    .map_err(thread("event"))?;
    Ok(Events { handle, replace })
}

/// The alarms whose `raised` was suppressed: their reminders and their `cleared` are too, so
/// a receiver never gets a `cleared` of an alarm it was not told of.
#[derive(Default)]
struct Suppressed(std::collections::HashMap<String, String>);

impl Suppressed {
    /// Mark `ev` suppressed when its stream is shelved or in maintenance (a `raised`), or when
    /// it belongs to an alarm whose `raised` was.
    fn judge(&mut self, ev: &mut crate::alarm::AlarmEvent, metrics: &Metrics) {
        match ev.kind {
            EventKind::Raised if ev.repeat == 0 => {
                let shelf = metrics.streams.iter().find(|s| s.name == ev.stream).and_then(|s| s.suppressed());
                ev.suppressed = shelf.map(|s| s.kind);
                match &ev.suppressed {
                    Some(why) => {
                        ev.message = format!("{} (not delivered: {why})", ev.message);
                        self.0.insert(ev.stream.clone(), why.clone());
                    }
                    None => {
                        self.0.remove(&ev.stream);
                    }
                }
            }
            EventKind::Raised => ev.suppressed = self.0.get(&ev.stream).cloned(),
            EventKind::Cleared => ev.suppressed = self.0.remove(&ev.stream),
            _ => {}
        }
    }
}
