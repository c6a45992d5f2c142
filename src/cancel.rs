//! The process's stop request (SIGTERM/SIGINT): long loads and checks — a multi-GiB WAV's
//! checking pass, a decode, a resample — look at it between blocks, so a stop is honoured
//! within the unit's stop timeout at every point (a leaf: no other module is imported).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The flag the signal handlers set (and the daemon's own stop flag).
pub fn flag() -> Arc<AtomicBool> {
    STOP.get_or_init(|| Arc::new(AtomicBool::new(false))).clone()
}

/// Whether a stop was requested.
pub fn requested() -> bool {
    STOP.get().is_some_and(|f| f.load(Ordering::Relaxed))
}

/// The one-line error of work abandoned because a stop was requested.
pub const STOPPED: &str = "stopped (SIGTERM/SIGINT) before the end";
