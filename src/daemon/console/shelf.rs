//! Shelving and maintenance (ISA-18.2: *shelved* and *out of service*): an operator takes a
//! stream's alarms out of the way for at most a configured time, with a reason. Meanwhile the
//! stream is scored and its decisions are recorded (the outbox, the console's event list and
//! history), but no `raised` — nor the `cleared` that ends it — is delivered to any sink. A
//! `shelved` / `maintenance-started` event and its end (`unshelved` / `maintenance-ended`, by
//! a person or by expiry) go to every sink. Kept in `<state>/suppressions.json`, so a shelf
//! survives a restart and expires by itself, also while the daemon was down.

use std::collections::BTreeMap;

use super::{api_error, ApiError, Console};
use crate::alarm::{rfc3339_utc, AlarmEvent, EventKind};
use crate::metrics::Suppressed;

/// File in the state folder with the shelves and maintenances in effect.
pub const SUPPRESSIONS_FILE: &str = "suppressions.json";

/// The longest shelf and maintenance an operator may set (`[server]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_shelve_minutes: f64,
    pub max_maintenance_minutes: f64,
    /// `/readyz` degraded once a sink has failed this long.
    pub sink_failing_degraded_s: f64,
}

impl Limits {
    pub fn of(server: &crate::daemon::config::ServerConfig) -> Self {
        Limits {
            max_shelve_minutes: server.max_shelve_minutes,
            max_maintenance_minutes: server.max_maintenance_minutes,
            sink_failing_degraded_s: server.sink_failing_degraded_s,
        }
    }
}

/// Which suppression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shelf {
    Shelved,
    Maintenance,
}

impl Shelf {
    pub fn as_str(self) -> &'static str {
        match self {
            Shelf::Shelved => "shelved",
            Shelf::Maintenance => "maintenance",
        }
    }

    fn events(self) -> (EventKind, EventKind) {
        match self {
            Shelf::Shelved => (EventKind::Shelved, EventKind::Unshelved),
            Shelf::Maintenance => (EventKind::MaintenanceStarted, EventKind::MaintenanceEnded),
        }
    }
}

impl Console {
    /// The shelves of the state folder; those that expired while the daemon was down end now.
    pub(super) fn load_suppressions(&self) {
        let path = self.state_dir.join(SUPPRESSIONS_FILE);
        let saved: BTreeMap<String, Suppressed> = match crate::files::read_regular_string(&path) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "shelves unreadable: none applies");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        for (name, s) in saved {
            let Some(sm) = self.metrics.streams.iter().find(|m| m.name == name) else { continue };
            tracing::warn!(stream = %name, kind = %s.kind, by = %s.by, reason = %s.reason, until = %rfc3339_utc(s.until_unix_s * 1000), "alarms suppressed (from before the restart)");
            if let Ok(mut slot) = sm.suppression.lock() {
                *slot = Some(s);
            }
        }
        self.expire();
    }

    fn save_suppressions(&self) {
        let all: BTreeMap<&str, Suppressed> =
            self.metrics.streams.iter().filter_map(|s| Some((s.name.as_str(), s.suppressed()?))).collect();
        let text = serde_json::to_string_pretty(&all).unwrap_or_default();
        if let Err(e) = crate::files::write_atomic(&self.state_dir.join(SUPPRESSIONS_FILE), text.as_bytes()) {
            tracing::error!(error = %e, "cannot save the shelves");
        }
    }

    /// Shelve (or put into maintenance) stream `i` for `minutes` (> 0, at most the limit).
    pub fn shelve(&self, i: usize, kind: Shelf, minutes: f64, reason: &str, by: &str) -> Result<u64, ApiError> {
        let most = match kind {
            Shelf::Shelved => self.limits.max_shelve_minutes,
            Shelf::Maintenance => self.limits.max_maintenance_minutes,
        };
        if !(minutes.is_finite() && minutes > 0.0 && minutes <= most) {
            return Err(api_error(
                400,
                format!(
                    "minutes: must be > 0 and at most {most} (server.max_{}_minutes), got {minutes}",
                    if kind == Shelf::Shelved { "shelve" } else { "maintenance" }
                ),
            ));
        }
        let reason: String = reason.chars().filter(|c| !c.is_control()).take(200).collect();
        if kind == Shelf::Shelved && reason.trim().is_empty() {
            return Err(api_error(400, "reason: say why the alarms are shelved"));
        }
        let s = self.stream(i)?;
        let now = crate::metrics::unix_s();
        let until = now + (minutes * 60.0).round() as u64;
        let shelf = Suppressed {
            kind: kind.as_str().into(),
            by: by.into(),
            reason: reason.clone(),
            since_unix_s: now,
            until_unix_s: until,
        };
        if let Ok(mut slot) = s.suppression.lock() {
            *slot = Some(shelf);
        }
        self.save_suppressions();
        let mut ev = AlarmEvent::new(kind.events().0, &s.name, 0.0);
        ev.by = Some(by.into());
        ev.reason = Some(reason.clone());
        ev.until = Some(rfc3339_utc(until * 1000));
        ev.message = format!(
            "{}: alarms {} by {by} for {minutes} min ({reason})",
            s.name,
            if kind == Shelf::Shelved { "shelved" } else { "suppressed for maintenance" }
        );
        self.send(ev);
        tracing::info!(stream = %s.name, kind = kind.as_str(), by, minutes, reason, "alarms suppressed");
        Ok(until)
    }

    /// End stream `i`'s shelf or maintenance (`by`: a person, or `expiry`).
    pub fn unshelve(&self, i: usize, kind: Shelf, by: &str) -> Result<(), ApiError> {
        let s = self.stream(i)?;
        let taken =
            s.suppression.lock().ok().and_then(|mut slot| {
                slot.as_ref().is_some_and(|x| x.kind == kind.as_str()).then(|| slot.take()).flatten()
            });
        let Some(old) = taken else {
            return Err(api_error(
                409,
                format!("{}: not {}", s.name, if kind == Shelf::Shelved { "shelved" } else { "in maintenance" }),
            ));
        };
        self.save_suppressions();
        let mut ev = AlarmEvent::new(kind.events().1, &s.name, 0.0);
        ev.by = Some(by.into());
        ev.reason = Some(old.reason.clone());
        let how = if by == "expiry" { "expired".to_string() } else { format!("ended by {by}") };
        ev.message = format!("{}: {} {how}; alarms are delivered again", s.name, kind.as_str());
        self.send(ev);
        tracing::info!(stream = %s.name, kind = kind.as_str(), by, "suppression ended");
        Ok(())
    }

    /// End every shelf and maintenance whose time is up (the supervisor calls it each second).
    pub fn expire(&self) {
        let now = crate::metrics::unix_s();
        for (i, s) in self.metrics.streams.iter().enumerate() {
            let Some(x) = s.suppressed().filter(|x| x.until_unix_s <= now) else { continue };
            let kind = if x.kind == Shelf::Maintenance.as_str() { Shelf::Maintenance } else { Shelf::Shelved };
            let _ = self.unshelve(i, kind, "expiry");
        }
    }
}
