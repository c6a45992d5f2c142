//! What a stream reports: alarm transitions, source up/down, signal health. The vocabulary of
//! `AlarmEvent` (alarm layer) and of `mpdr_events_total` (metrics).

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    Raised,
    Cleared,
    StreamDown,
    StreamUp,
    /// The signal went silent (a dead or unplugged microphone): no anomaly is raised meanwhile.
    SignalLost,
    SignalRestored,
    /// The input clips (gain too high, or a knock at the microphone).
    Clipping,
    /// Someone acknowledged the stream's alarm (console, API or Modbus register).
    Acknowledged,
    /// A stream's threshold was changed at run time (console or API): who, old, new; or
    /// reverted to the model's.
    ThresholdChanged,
    /// An operator shelved the stream's alarms for a while (who, why, until when): it is
    /// scored and its decisions recorded, but no `raised` is delivered.
    Shelved,
    /// The shelf ended: taken down by someone, or expired.
    Unshelved,
    /// The stream (or the whole box) went into maintenance: out of service, alarms suppressed.
    MaintenanceStarted,
    MaintenanceEnded,
    /// The machine is not running (`[stream.run]`: its level below the running range): the
    /// stream is not scored, so a stopped machine never alarms.
    MachineOff,
    /// ... and runs again.
    MachineOn,
    /// The input is wrong, not the machine (`reason`: dc-offset, level-low, level-high,
    /// clipping): the stream is not scored until it is fine again.
    SignalFault,
    /// ... and the input is fine again.
    SignalOk,
}

impl EventKind {
    /// Every kind, in the order of `mpdr_events_total`.
    pub const ALL: [EventKind; 17] = [
        EventKind::Raised,
        EventKind::Cleared,
        EventKind::StreamDown,
        EventKind::StreamUp,
        EventKind::SignalLost,
        EventKind::SignalRestored,
        EventKind::Clipping,
        EventKind::Acknowledged,
        EventKind::ThresholdChanged,
        EventKind::Shelved,
        EventKind::Unshelved,
        EventKind::MaintenanceStarted,
        EventKind::MaintenanceEnded,
        EventKind::MachineOff,
        EventKind::MachineOn,
        EventKind::SignalFault,
        EventKind::SignalOk,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Raised => "raised",
            EventKind::Cleared => "cleared",
            EventKind::StreamDown => "stream-down",
            EventKind::StreamUp => "stream-up",
            EventKind::SignalLost => "signal-lost",
            EventKind::SignalRestored => "signal-restored",
            EventKind::Clipping => "clipping",
            EventKind::Acknowledged => "acknowledged",
            EventKind::ThresholdChanged => "threshold-changed",
            EventKind::Shelved => "shelved",
            EventKind::Unshelved => "unshelved",
            EventKind::MaintenanceStarted => "maintenance-started",
            EventKind::MaintenanceEnded => "maintenance-ended",
            EventKind::MachineOff => "machine-off",
            EventKind::MachineOn => "machine-on",
            EventKind::SignalFault => "signal-fault",
            EventKind::SignalOk => "signal-ok",
        }
    }

    /// A problem (logged as a warning), not a recovery.
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            EventKind::Raised
                | EventKind::StreamDown
                | EventKind::SignalLost
                | EventKind::Clipping
                | EventKind::SignalFault
        )
    }
}

/// How urgent a stream's alarms are (ISA-18.2 priority), in every event and on every sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Priority {
    Critical,
    High,
    #[default]
    Medium,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Priority::Critical, Priority::High, Priority::Medium, Priority::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }

    /// The register / gauge value: 1 critical ... 4 low.
    pub fn code(self) -> u8 {
        self as u8 + 1
    }
}
