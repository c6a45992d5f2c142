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
    /// A stream's threshold was changed at run time (console or API): who, old, new.
    ThresholdChanged,
}

impl EventKind {
    /// Every kind, in the order of `mpdr_events_total`.
    pub const ALL: [EventKind; 9] = [
        EventKind::Raised,
        EventKind::Cleared,
        EventKind::StreamDown,
        EventKind::StreamUp,
        EventKind::SignalLost,
        EventKind::SignalRestored,
        EventKind::Clipping,
        EventKind::Acknowledged,
        EventKind::ThresholdChanged,
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
        }
    }

    /// A problem (logged as a warning), not a recovery.
    pub fn is_problem(self) -> bool {
        matches!(self, EventKind::Raised | EventKind::StreamDown | EventKind::SignalLost | EventKind::Clipping)
    }
}
