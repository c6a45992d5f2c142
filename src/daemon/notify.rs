//! systemd's notify protocol (sd_notify(3)) over `$NOTIFY_SOCKET`, without libsystemd:
//! READY=1 once everything is up, WATCHDOG=1 while the pipeline is alive, STATUS= lines,
//! STOPPING=1 / RELOADING=1. Outside systemd every call is a no-op.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends one notification; false when not under systemd or the send failed.
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return false;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name).and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(&path))
    };
    sent.is_ok()
}

/// The watchdog period systemd asks for (`WatchdogSec=` -> `$WATCHDOG_USEC`), if any and if
/// meant for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_the_socket_named_in_the_environment() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // The only test in this binary that touches NOTIFY_SOCKET / WATCHDOG_*.
        std::env::set_var("NOTIFY_SOCKET", &path);
        std::env::set_var("WATCHDOG_USEC", "4000000");
        std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
        assert!(notify("READY=1\nSTATUS=2 streams"));
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=2 streams");
        assert_eq!(watchdog_interval(), Some(Duration::from_secs(4)));
        std::env::set_var("WATCHDOG_PID", "1");
        assert_eq!(watchdog_interval(), None, "meant for another process");
        std::env::remove_var("NOTIFY_SOCKET");
        assert!(!notify("READY=1"));
    }
}
