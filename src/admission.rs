//! Who gets a connection when a server (HTTP, Modbus TCP) is full: at most `max` are open
//! and `per_client` from one address; when all are taken, the connection that has waited
//! longest for its next request (an idle keep-alive, a client trickling its request head, a
//! Modbus client that polls rarely) is closed to make room — least recently active first — so
//! clients from many addresses holding connections open cannot lock out a health check or a
//! PLC polling from another address. Connections busy answering (and HTTP live feeds, under
//! their own cap) are never evicted. A leaf: no other module of the crate is imported.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A connection waiting less than this is never evicted: it has had no time to send.
pub const MIN_IDLE: std::time::Duration = std::time::Duration::from_millis(500);

/// One admitted connection: since when it waits for a request (`None` while answering).
pub struct Conn {
    id: u64,
    /// Admitted beyond `max` into the room kept for quick requests (health checks): the
    /// server gives it one short request.
    pub reserve: bool,
    ip: IpAddr,
    waiting_since: Mutex<Option<Instant>>,
    sock: Option<TcpStream>,
}

impl Conn {
    /// Waiting for the next request from now on (true), or busy answering (false).
    pub fn waiting(&self, yes: bool) {
        if let Ok(mut w) = self.waiting_since.lock() {
            *w = yes.then(Instant::now);
        }
    }

    /// A connection outside any table (tests).
    pub fn detached() -> Arc<Conn> {
        Arc::new(Conn {
            id: 0,
            reserve: false,
            ip: IpAddr::from([127, 0, 0, 1]),
            waiting_since: Mutex::new(None),
            sock: None,
        })
    }
}

/// The open connections and the limits.
pub struct Table {
    conns: HashMap<u64, Arc<Conn>>,
    next: u64,
    max: usize,
    per_client: usize,
    reserve: usize,
}

pub type Open = Arc<Mutex<Table>>;

/// A table of at most `max` connections, `per_client` from one address, and `reserve` more
/// (one per address) kept for quick requests when all are busy.
pub fn table(max: usize, per_client: usize, reserve: usize) -> Open {
    Arc::new(Mutex::new(Table { conns: HashMap::new(), next: 0, max, per_client, reserve }))
}

/// Why a connection was not admitted.
pub enum Refused {
    PerClient,
    Full,
}

/// Admit a connection from `ip` (its socket `sock`, cloned for eviction), evicting the
/// longest-waiting one when the server is full.
pub fn admit(open: &Open, ip: IpAddr, sock: &TcpStream) -> Result<Arc<Conn>, Refused> {
    let Ok(mut t) = open.lock() else { return Err(Refused::Full) };
    if t.conns.values().filter(|c| c.ip == ip).count() >= t.per_client {
        return Err(Refused::PerClient);
    }
    let mut reserve = false;
    if t.conns.values().filter(|c| !c.reserve).count() >= t.max {
        let oldest = t
            .conns
            .values()
            .filter_map(|c| c.waiting_since.lock().ok().and_then(|w| *w).map(|since| (since, c.id)))
            // A connection just made (a health check on its way) is not taken for an idle one.
            .filter(|(since, _)| since.elapsed() >= MIN_IDLE)
            .min()
            .map(|(_, id)| id);
        match oldest.and_then(|id| t.conns.remove(&id)) {
            Some(victim) => {
                if let Some(s) = &victim.sock {
                    let _ = s.shutdown(Shutdown::Both);
                }
                tracing::debug!(client = %victim.ip, "server full: the least recently active connection was closed");
            }
            None => {
                // Every connection busy or just made: the room kept for quick requests, one
                // per address.
                let kept: Vec<&Arc<Conn>> = t.conns.values().filter(|c| c.reserve).collect();
                if kept.len() >= t.reserve || kept.iter().any(|c| c.ip == ip) {
                    return Err(Refused::Full);
                }
                reserve = true;
            }
        }
    }
    t.next += 1;
    let conn = Arc::new(Conn {
        id: t.next,
        reserve,
        ip,
        waiting_since: Mutex::new(Some(Instant::now())),
        sock: sock.try_clone().ok(),
    });
    t.conns.insert(conn.id, conn.clone());
    Ok(conn)
}

/// The connection is over (served, failed or evicted).
pub fn release(open: &Open, conn: &Conn) {
    if let Ok(mut t) = open.lock() {
        t.conns.remove(&conn.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_evicts_the_least_recently_active_connection_and_never_a_busy_one() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sock = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let open = table(3, 2, 0);
        let ip = |n: u8| IpAddr::from([127, 0, 0, n]);
        let a = admit(&open, ip(2), &sock).ok().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = admit(&open, ip(2), &sock).ok().unwrap();
        std::thread::sleep(MIN_IDLE);
        assert!(matches!(admit(&open, ip(2), &sock), Err(Refused::PerClient)));
        let c = admit(&open, ip(3), &sock).ok().unwrap();
        a.waiting(false); // busy answering: never evicted
        let d = admit(&open, ip(4), &sock).ok().expect("room made");
        let ids: Vec<u64> = open.lock().unwrap().conns.keys().copied().collect();
        assert!(ids.contains(&a.id) && !ids.contains(&b.id) && ids.contains(&c.id) && ids.contains(&d.id));
        for x in [&c, &d] {
            x.waiting(false);
        }
        assert!(matches!(admit(&open, ip(5), &sock), Err(Refused::Full)), "all busy: refused");
        release(&open, &c);
        assert!(admit(&open, ip(5), &sock).is_ok());
    }
}
