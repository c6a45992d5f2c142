//! Delivery workers: one thread per sink, fed from the outbox. A worker takes its sink's due
//! deliveries (oldest first), delivers them one by one and records the outcome: delivered;
//! retry later (exponential backoff from `initial_s` doubling up to `max_s`, with ±50%
//! jitter so many daemons do not retry in step); or dead letter (a permanent refusal, or
//! older than `max_age_s`). It sleeps until the next due time or until woken by a new event.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};
use serde::{Deserialize, Serialize};

use super::outbox::{Outbox, OutboxError};
use super::{Sink, SinkError};
use crate::metrics::SinkMetrics;
use crate::mpdr::select::SplitMix64;

/// Retry policy of one sink (`retry = { ... }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    pub initial_s: f64,
    pub max_s: f64,
    /// Undelivered this long after the event: dead letter.
    pub max_age_s: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { initial_s: 1.0, max_s: 300.0, max_age_s: 7.0 * 86_400.0 }
    }
}

impl RetryPolicy {
    pub fn validate(&self, prefix: &str, p: &mut crate::config::Problems) {
        for (k, v) in [("initial_s", self.initial_s), ("max_s", self.max_s), ("max_age_s", self.max_age_s)] {
            if !(v.is_finite() && v > 0.0) {
                p.push(format!("{prefix}.{k}"), format!("must be > 0, got {v}"));
            }
        }
        if self.initial_s > self.max_s {
            p.push(
                format!("{prefix}.initial_s"),
                format!(
                    "must be at most max_s ({}), got {}: the backoff starts below its cap",
                    self.max_s, self.initial_s
                ),
            );
        }
    }

    /// Delay before attempt `attempts + 1`, jittered by `u` in [0, 1).
    pub fn backoff_s(&self, attempts: u32, u: f64) -> f64 {
        let base = (self.initial_s * 2f64.powi(attempts.min(30) as i32)).min(self.max_s);
        base * (0.5 + u)
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Why a delivery worker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("sink \"{sink}\": cannot start its delivery thread: {error}")]
    Thread { sink: String, error: std::io::Error },
}

/// A worker thread: spawned idle, delivering once [`Worker::start`]ed.
pub struct Worker {
    pub name: String,
    wake: Sender<()>,
    stop: Arc<AtomicBool>,
    /// Set with `stop` by [`finish`](Self::finish): one last attempt at what is due.
    drain: Arc<AtomicBool>,
    start: Sender<Option<JoinHandle<()>>>,
    handle: JoinHandle<()>,
}

impl Worker {
    /// A worker for `name`'s records in the outbox in `state_dir`, delivered through `sink`.
    /// It delivers nothing until [`start`](Self::start); dropped or stopped unstarted, it exits.
    pub fn spawn(
        name: String,
        sink: Box<dyn Sink>,
        state_dir: PathBuf,
        policy: RetryPolicy,
        metrics: Arc<SinkMetrics>,
    ) -> Result<Worker, WorkerError> {
        let outbox = Outbox::open(&state_dir)?;
        let (wake, woken) = bounded(1);
        let (start, started) = bounded::<Option<JoinHandle<()>>>(1);
        let stop = Arc::new(AtomicBool::new(false));
        let drain = Arc::new(AtomicBool::new(false));
        let (n, s, dr) = (name.clone(), stop.clone(), drain.clone());
        let handle = std::thread::Builder::new()
            .name(format!("mpdr-sink-{name}"))
            .spawn(move || {
                // Wait for the go, and for the predecessor of the same sink (a reload) to finish
                // its delivery in progress, so one record is never in flight twice.
                let Ok(previous) = started.recv() else { return };
                if let Some(h) = previous {
                    let _ = h.join();
                }
                work(&n, sink, outbox, &policy, &metrics, &woken, &s, &dr)
            })
            .map_err(|error| WorkerError::Thread { sink: name.clone(), error })?;
        Ok(Worker { name, wake, stop, drain, start, handle })
    }

    /// Begin delivering, after `previous` (the stopped worker this one replaces) has exited.
    pub fn start(&self, previous: Option<JoinHandle<()>>) {
        let _ = self.start.try_send(previous);
    }

    /// A new event may be due.
    pub fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// The daemon's clean stop: after the delivery in progress, one attempt at every record
    /// due now (stopping at the first failure); the rest stays in the outbox.
    pub fn finish(self) -> JoinHandle<()> {
        self.drain.store(true, Ordering::Relaxed);
        self.stop()
    }

    /// Stop after the delivery in progress (a reload: the replacing worker goes on);
    /// undelivered records stay in the outbox.
    pub fn stop(self) -> JoinHandle<()> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.try_send(());
        self.handle
    }
}

#[allow(clippy::too_many_arguments)] // the worker thread's whole state, passed once
fn work(
    name: &str,
    mut sink: Box<dyn Sink>,
    mut outbox: Outbox,
    policy: &RetryPolicy,
    m: &SinkMetrics,
    woken: &Receiver<()>,
    stop: &AtomicBool,
    drain: &AtomicBool,
) {
    let mut rng = SplitMix64::new(now_ms() ^ (name.len() as u64) << 32);
    let mut last_count = 0u64;
    let mut failing = false;
    // Delivered, but the outbox could not record it (a full disk): not sent again, recorded
    // once the disk takes writes.
    let mut unrecorded: std::collections::HashSet<String> = Default::default();
    while !stop.load(Ordering::Relaxed) {
        let now = now_ms();
        if now.saturating_sub(last_count) >= 1000 {
            if let Ok(c) = outbox.counts(name) {
                m.pending.store(c.pending, Ordering::Relaxed);
            }
            last_count = now;
        }
        let due = match outbox.due(name, now, 64) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(sink = name, error = %e, "outbox read failed");
                let _ = woken.recv_timeout(Duration::from_secs(1));
                continue;
            }
        };
        if due.is_empty() {
            let next = outbox.next_due_ms(name).ok().flatten();
            let wait = next.map(|t| t.saturating_sub(now)).unwrap_or(1000).clamp(5, 1000);
            let _ = woken.recv_timeout(Duration::from_millis(wait));
            continue;
        }
        let mut stalled = false;
        for d in due {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let now = now_ms();
            let id = d.event.id.clone();
            if unrecorded.contains(&id) {
                if outbox.mark_delivered(&id, name, now).is_ok() {
                    unrecorded.remove(&id);
                    continue;
                }
                stalled = true;
                break;
            }
            let age_s = now.saturating_sub(d.created_ms) as f64 / 1000.0;
            let result = if age_s > policy.max_age_s {
                Err(SinkError::Permanent(format!("undelivered after {age_s:.0} s (max_age_s {})", policy.max_age_s)))
            } else {
                sink.deliver(&d.event)
            };
            let delivered = result.is_ok();
            let recorded = match result {
                Ok(()) => {
                    m.delivered.fetch_add(1, Ordering::Relaxed);
                    m.succeeded();
                    m.latency.observe(now_ms().saturating_sub(d.created_ms) as f64 / 1000.0);
                    if failing {
                        tracing::info!(sink = name, "deliveries succeed again");
                        failing = false;
                    }
                    outbox.mark_delivered(&id, name, now_ms())
                }
                Err(SinkError::Retry(e)) => {
                    m.retries.fetch_add(1, Ordering::Relaxed);
                    m.failed(&e, true);
                    if !failing {
                        tracing::warn!(sink = name, event = %id, error = %e, "delivery failed; retrying with backoff");
                        failing = true;
                    }
                    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                    let delay_ms = (policy.backoff_s(d.attempts, u) * 1000.0) as u64;
                    outbox.reschedule(&id, name, now_ms() + delay_ms, &e)
                }
                Err(SinkError::Permanent(e)) => {
                    m.dead.fetch_add(1, Ordering::Relaxed);
                    m.failed(&e, false);
                    tracing::error!(sink = name, event = %id, reason = %e, "delivery abandoned: moved to dead letters (mpdr alarms retry re-drives it)");
                    outbox.dead_letter(&id, name, &e, now_ms())
                }
            };
            if let Err(e) = recorded {
                tracing::error!(sink = name, event = %id, error = %e, "outbox write failed");
                if delivered {
                    unrecorded.insert(id);
                }
                stalled = true;
                break;
            }
            // While a sink keeps failing, do not hammer it with the rest of the batch.
            if failing {
                break;
            }
        }
        // The outbox does not take writes (a full disk): wait before the next pass.
        if stalled {
            let _ = woken.recv_timeout(Duration::from_secs(1));
        }
    }
    // The daemon's clean stop (`finish`): one attempt at what is due now (an alarm raised just before the last
    // window of a replay, or before SIGTERM), stopping at the first failure; the rest stays
    // in the outbox for the next start, as before.
    if failing || !drain.load(Ordering::Relaxed) {
        return;
    }
    let Ok(due) = outbox.due(name, now_ms(), 1024) else { return };
    for d in due {
        if sink.deliver(&d.event).is_err() {
            break;
        }
        m.delivered.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = outbox.mark_delivered(&d.event.id, name, now_ms()) {
            tracing::error!(sink = name, event = %d.event.id, error = %e, "outbox write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let p = RetryPolicy { initial_s: 1.0, max_s: 10.0, max_age_s: 100.0 };
        assert_eq!(p.backoff_s(0, 0.5), 1.0);
        assert_eq!(p.backoff_s(3, 0.5), 8.0);
        assert_eq!(p.backoff_s(9, 0.5), 10.0);
        assert_eq!(p.backoff_s(2, 0.0), 2.0);
        assert!(p.backoff_s(2, 0.999) < 6.0);
    }

    /// Records (worker tag, event id) per delivery; each delivery takes 100 ms.
    struct Slow(&'static str, Arc<std::sync::Mutex<Vec<(&'static str, String)>>>);
    impl Sink for Slow {
        fn deliver(&mut self, event: &crate::alarm::AlarmEvent) -> Result<(), SinkError> {
            std::thread::sleep(Duration::from_millis(100));
            self.1.lock().unwrap().push((self.0, event.id.clone()));
            Ok(())
        }
    }

    #[test]
    fn a_replacing_worker_waits_for_its_predecessor_and_nothing_is_delivered_twice() {
        let d = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(d.path()).unwrap();
        for i in 0..6 {
            let ev = crate::alarm::AlarmEvent::new(crate::alarm::EventKind::Raised, "fan", i as f64);
            outbox.add(&ev, &["s"]).unwrap();
        }
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let policy = RetryPolicy { initial_s: 1.0, max_s: 1.0, max_age_s: 3600.0 };
        let spawn = |tag| {
            let m = Arc::new(SinkMetrics::new("s"));
            Worker::spawn("s".into(), Box::new(Slow(tag, log.clone())), d.path().to_path_buf(), policy.clone(), m)
                .unwrap()
        };
        // Spawned but not started: delivers nothing; dropped, its thread ends.
        let idle = spawn("idle");
        std::thread::sleep(Duration::from_millis(250));
        assert!(log.lock().unwrap().is_empty());
        drop(idle);
        let a = spawn("a");
        a.start(None);
        std::thread::sleep(Duration::from_millis(150));
        // Reload: "b" replaces "a" while "a" is mid-delivery.
        let b = spawn("b");
        b.start(Some(a.stop()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Outbox::open(d.path()).unwrap().counts("s").unwrap().delivered < 6 && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        b.stop().join().unwrap();
        let log = log.lock().unwrap();
        let mut ids: Vec<&String> = log.iter().map(|(_, id)| id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!((log.len(), ids.len()), (6, 6), "each event delivered exactly once: {log:?}");
        assert!(log.iter().any(|(t, _)| *t == "a") && log.iter().any(|(t, _)| *t == "b"), "{log:?}");
        assert!(log.iter().all(|(t, _)| *t != "idle"));
    }
}
