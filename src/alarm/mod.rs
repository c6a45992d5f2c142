//! Alarm events and the sink seam.
//!
//! The detector's transitions and the sources' up/down changes become [`AlarmEvent`]s with a
//! unique, time-ordered id (UUID v7) that delivery uses as its idempotency key. Sinks implement
//! [`Sink`]; each kind of sink is one file of [`sink`]. They run on their own delivery
//! workers, never on the audio or scoring path. A sink
//! that fails is logged and counted and never stops the daemon.

pub mod deliver;
pub mod evidence;
pub mod hmac;
pub mod outbox;
pub mod sink;

pub use deliver::RetryPolicy;
pub use sink::log::LogSink;
pub use sink::{SinkConfig, SinkSpec};

use serde::{Deserialize, Serialize};

use crate::features::mel::{hz_to_mel, mel_to_hz};
use crate::features::FeatureParams;

pub use crate::detect::event::{EventKind, Priority};

/// A mel band that contributes to the window's score, with its frequency range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandShare {
    pub band: usize,
    pub lo_hz: f64,
    pub hi_hz: f64,
    /// Share of the window's reconstruction error in this band (0–1).
    pub share: f64,
    /// How many normal standard deviations the share is above the band's normal share (the
    /// bundle's calibration audio); absent for bundles without band statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub z: Option<f64>,
}

/// The event payload's schema version ([`AlarmEvent::schema_version`]).
pub const EVENT_SCHEMA_VERSION: u32 = 1;

fn schema_one() -> u32 {
    1
}

/// One alarm event, as stored and delivered (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmEvent {
    /// The payload's schema: 1 is this layout; fields are only added within a version.
    #[serde(default = "schema_one")]
    pub schema_version: u32,
    /// UUID v7: unique and ordered by creation time; the idempotency key of every delivery.
    pub id: String,
    pub kind: EventKind,
    /// The site and box of the daemon that saw it (`[identity]`; absent in events of
    /// daemons older than the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, rename = "box", skip_serializing_if = "Option::is_none")]
    pub box_name: Option<String>,
    pub stream: String,
    /// Wall-clock time of the event, RFC 3339 UTC.
    pub time: String,
    pub unix_ms: u64,
    /// Seconds of audio the stream had delivered when the window ended.
    pub stream_time_s: f64,
    /// Window score and the threshold it was compared with (absent for stream up/down).
    pub score: Option<f64>,
    pub threshold: Option<f64>,
    /// The bundle that scored the stream: folder name and the energy weights' sha256 prefix.
    pub model_id: Option<String>,
    /// 0 for the first raise of an alarm, then 1, 2, ... for re-alarms.
    pub repeat: u32,
    /// Strongest mel bands of the window, largest share first.
    pub top_bands: Vec<BandShare>,
    /// One line for people.
    pub message: String,
    /// A `raised` event's window: its audio and spectrogram, in the state folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<evidence::EvidenceFiles>,
    /// Per stream: 1, 2, 3, ... in the order the daemon recorded the events (kept across
    /// restarts), so a receiver can order them and drop duplicates. Set when the event is
    /// committed to the outbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The stream's priority (`[[stream]] priority`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// `acknowledged` and `cleared`: the id of the `raised` event of the alarm concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raised_id: Option<String>,
    /// Who did it (an operator's name): acknowledged, threshold-changed, shelved, maintenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Why (shelved, maintenance), as the operator gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When a shelf or a maintenance ends by itself, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// A `raised` / `cleared` recorded but not delivered, and why: `shelved`, `maintenance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<String>,
    /// The window's audio, from the scorer to the evidence writer (never stored or sent).
    #[serde(skip)]
    pub audio: Option<Vec<f32>>,
}

impl AlarmEvent {
    /// A new event stamped now.
    pub fn new(kind: EventKind, stream: &str, stream_time_s: f64) -> Self {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let unix_ms = now.as_millis() as u64;
        AlarmEvent {
            schema_version: EVENT_SCHEMA_VERSION,
            id: uuid::Uuid::now_v7().to_string(),
            kind,
            site: None,
            box_name: None,
            stream: stream.to_string(),
            time: rfc3339_utc(unix_ms),
            unix_ms,
            stream_time_s,
            score: None,
            threshold: None,
            model_id: None,
            repeat: 0,
            top_bands: Vec::new(),
            message: String::new(),
            evidence: None,
            seq: None,
            priority: None,
            raised_id: None,
            by: None,
            reason: None,
            until: None,
            suppressed: None,
            audio: None,
        }
    }

    /// Say which box (and site) saw it.
    pub fn stamp(&mut self, id: &crate::config::identity::Identity) {
        self.site.clone_from(&id.site);
        self.box_name = Some(id.box_name.clone());
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"event not serialisable: {e}\"}}"))
    }
}

/// Frequency range in Hz of each Slaney mel band of `params` (filter m spans mel points m..m+2).
pub fn band_ranges(params: &FeatureParams) -> Vec<(f64, f64)> {
    let (lo, hi) = (hz_to_mel(params.fmin), hz_to_mel(params.fmax_hz()));
    let n = params.n_mels;
    let point = |i: usize| mel_to_hz(lo + (hi - lo) * i as f64 / (n + 1) as f64);
    (0..n).map(|m| (point(m), point(m + 2))).collect()
}

/// "1.2–3.4 kHz" / "80–240 Hz": a band range for people.
pub fn format_range(lo: f64, hi: f64) -> String {
    if hi >= 1000.0 {
        format!("{:.1}–{:.1} kHz", lo / 1000.0, hi / 1000.0)
    } else {
        format!("{lo:.0}–{hi:.0} Hz")
    }
}

/// Formats milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, (rem / 60) % 60, rem % 60, unix_ms % 1000)
}

/// Why a delivery failed: try again later, or never (dead letter).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SinkError {
    #[error("{0} (will retry)")]
    Retry(String),
    #[error("{0} (permanent)")]
    Permanent(String),
}

/// Where events go. Each sink runs on its own delivery worker thread, fed from the outbox;
/// `deliver` may block up to the sink's timeout. The event id is the idempotency key.
pub trait Sink: Send {
    fn deliver(&mut self, event: &AlarmEvent) -> Result<(), SinkError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_utc(1_798_761_599_999), "2026-12-31T23:59:59.999Z");
    }

    #[test]
    fn event_ids_are_unique_and_time_ordered_and_json_round_trips() {
        let a = AlarmEvent::new(EventKind::Raised, "pump-1", 12.5);
        let b = AlarmEvent::new(EventKind::Cleared, "pump-1", 13.0);
        assert_ne!(a.id, b.id);
        assert!(a.id < b.id, "v7 ids sort by time: {} {}", a.id, b.id);
        assert_eq!(uuid::Uuid::parse_str(&a.id).unwrap().get_version_num(), 7);
        let back: AlarmEvent = serde_json::from_str(&a.to_json()).unwrap();
        assert_eq!(back, a);
        assert!(a.to_json().contains("\"kind\":\"raised\""));
    }

    #[test]
    fn band_ranges_cover_the_spectrum_in_order() {
        let r = band_ranges(&FeatureParams::default());
        assert_eq!(r.len(), 128);
        assert!(r[0].0.abs() < 1e-9 && (r[127].1 - 8000.0).abs() < 1e-6);
        assert!(r.windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 > w[0].1));
        assert_eq!(format_range(2000.0, 4100.0), "2.0–4.1 kHz");
        assert_eq!(format_range(80.0, 240.0), "80–240 Hz");
    }
}
