//! Committing events to the outbox without losing any on a full or failing disk. An event
//! that cannot be committed is *held* in memory (bounded, counted, in order) and committed
//! as soon as the outbox takes writes again; while any is held, later events queue behind it
//! (a stream's order is its `seq`, given at commit) and `/readyz` is not ready. Alarm
//! evidence is written only with room to spare (an event's worth kept free) and goes into the
//! outbox with its event, so no sink delivers a payload without the evidence it later names;
//! on a short disk it is the first thing dropped, never an event, and an event that cannot be
//! committed takes its evidence files with it.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use crate::alarm::deliver::Worker;
use crate::alarm::evidence::Evidence;
use crate::alarm::outbox::Outbox;
use crate::alarm::{AlarmEvent, EventKind};
use crate::metrics::Metrics;

/// A delivery worker and the streams it wants (empty = all): what a committed event is
/// handed to.
pub struct SinkSlot {
    pub worker: Worker,
    pub streams: Vec<String>,
}

/// At most this many events are held in memory while the outbox refuses writes; beyond it the
/// oldest is dropped (logged whole, counted).
pub const MAX_HELD: usize = 10_000;

pub struct Committer {
    outbox: Outbox,
    held: VecDeque<AlarmEvent>,
    evidence: Option<Evidence>,
}

impl Committer {
    pub fn new(outbox: Outbox, evidence: Option<Evidence>) -> Self {
        Committer { outbox, held: VecDeque::new(), evidence }
    }

    /// Keep the outbox to `max_events` events and the evidence to the events it still holds.
    pub fn prune(&mut self, max_events: usize) {
        match self.outbox.prune(max_events) {
            Ok(n) if n > 0 => {
                tracing::debug!(pruned = n, "outbox pruned");
                if let Some(ev) = &self.evidence {
                    ev.prune(|id| self.outbox.has_event(id).unwrap_or(true));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "outbox prune failed"),
        }
    }

    /// Commit `ev` (after the ones held, if any) and wake the sinks that want it.
    pub fn take(&mut self, ev: AlarmEvent, slots: &[SinkSlot], metrics: &Metrics) {
        let k = EventKind::ALL.iter().position(|&k| k == ev.kind).unwrap_or(0);
        metrics.events[k].fetch_add(1, Ordering::Relaxed);
        self.held.push_back(ev);
        if self.held.len() > MAX_HELD {
            if let Some(lost) = self.held.pop_front() {
                metrics.events_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(event = %lost.id, held = MAX_HELD, event_json = %lost.to_json(),
                    "outbox still refuses writes and the in-memory queue is full: the oldest event is dropped (logged here)");
            }
        }
        self.drain(slots, metrics);
    }

    /// Commit the held events in order until one fails (the periodic retry calls this too).
    pub fn drain(&mut self, slots: &[SinkSlot], metrics: &Metrics) {
        let was_failing = metrics.outbox_failing.load(Ordering::Relaxed);
        while let Some(mut ev) = self.held.pop_front() {
            if let Err(e) = self.commit(&mut ev, slots, metrics) {
                metrics.outbox_errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut last) = metrics.outbox_last_error.lock() {
                    *last = Some(e.to_string());
                }
                if !was_failing {
                    tracing::error!(event = %ev.id, error = %e,
                        "cannot commit the event to the outbox: held in memory and retried every second until the disk takes writes again");
                }
                ev.audio = None; // held events keep no audio: their evidence is dropped first
                self.held.push_front(ev);
                metrics.outbox_failing.store(true, Ordering::Relaxed);
                metrics.events_held.store(self.held.len() as u64, Ordering::Relaxed);
                return;
            }
        }
        if was_failing {
            tracing::info!("the outbox takes writes again: every held event is committed");
        }
        metrics.outbox_failing.store(false, Ordering::Relaxed);
        metrics.events_held.store(0, Ordering::Relaxed);
    }

    /// At shutdown: one last try, then every event still held is logged whole (it could not
    /// be committed: the log is where it is kept).
    pub fn finish(&mut self, slots: &[SinkSlot], metrics: &Metrics) {
        self.drain(slots, metrics);
        for ev in self.held.drain(..) {
            metrics.events_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(event = %ev.id, event_json = %ev.to_json(),
                "stopping while the outbox still refuses writes: this event was never committed (logged here)");
        }
    }

    /// Commit one event (with its evidence) and a delivery per interested sink, wake the sinks.
    fn commit(&mut self, ev: &mut AlarmEvent, slots: &[SinkSlot], metrics: &Metrics) -> Result<(), String> {
        // A suppressed alarm (shelved, maintenance) is recorded, not delivered.
        let wanted: Vec<&SinkSlot> = slots
            .iter()
            .filter(|s| ev.suppressed.is_none() && (s.streams.is_empty() || s.streams.contains(&ev.stream)))
            .collect();
        let names: Vec<&str> = wanted.iter().map(|s| s.worker.name.as_str()).collect();
        // A busy database (another connection checkpointing) passes in moments: two quick
        // retries before the event is held.
        // The evidence is written first and committed with the event: a sink never delivers a
        // payload that names its evidence later (a delivery may start the moment it commits).
        if let Some(e) = &self.evidence {
            e.attach(ev);
        }
        let mut tries = 0;
        while let Err(err) = self.outbox.commit(ev, &names) {
            tries += 1;
            if tries >= 3 {
                if let Some(e) = &self.evidence {
                    e.remove(ev);
                }
                return Err(err.to_string());
            }
            std::thread::sleep(std::time::Duration::from_millis(50 * tries));
        }
        metrics.remember_event(ev.to_json());
        for s in wanted {
            s.worker.wake();
        }
        Ok(())
    }
}
