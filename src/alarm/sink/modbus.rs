//! `modbus` sink, a status server: a Modbus TCP server (function codes 3 and 4 to read, 6 and 16 to write)
//! that a PLC or SCADA polls. The register map (all 16-bit registers, holding and input
//! registers alike; documented in the README):
//!
//! | address | content |
//! |---|---|
//! | 0 | heartbeat counter, +1 per second (wraps) |
//! | 1 | number of streams |
//! | 2 | daemon status bits: bit 0 ready |
//! | 3 | maintenance: minutes left of the longest maintenance in effect (0: none); with `maintenance_writes = true`, write N (1–65535) to put every stream into maintenance for N minutes (at most `server.max_maintenance_minutes`), 0 to end it |
//! | 10 + 10·i + 0 | stream i status bits: 0 alarm, 1 stream down, 2 model loaded, 3 acknowledged, 4 pending (above threshold, waiting out the on-delay), 5 replay ended, 6 signal lost (silent input), 7 shelved, 8 in maintenance, 9 machine off, 10 manual threshold override |
//! | 10 + 10·i + 1 | window score × 1000, unsigned, saturating at 65535 |
//! | 10 + 10·i + 2 | threshold × 1000, unsigned, saturating |
//! | 10 + 10·i + 3..4 | window score, IEEE-754 f32, high word first (big-endian word order) |
//! | 10 + 10·i + 5..6 | threshold, f32, high word first |
//! | 10 + 10·i + 7 | alarms raised (wraps) |
//! | 10 + 10·i + 8 | acknowledge: write 1 to acknowledge the stream's active alarm (sets status bit 3 until the next alarm; nothing when none is active); reads 0/1 |
//! | 10 + 10·i + 9 | priority: 1 critical, 2 high, 3 medium, 4 low |
//!
//! Every other write is refused with exception 02 (illegal data address); other function
//! codes with exception 01. One thread per client connection: at most 32 in all and 8 from one
//! address; a connection that sends no request for `idle_timeout_s` (default 60) is closed,
//! so idle clients cannot lock a PLC out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{BuildContext, Built, Common, SinkSpec};
use crate::config::Problems;
use crate::detect::AlarmState;
use crate::metrics::Metrics;

/// `[[sink]] type = "modbus"`: the registers of every stream (so no `streams` key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusConfig {
    #[serde(flatten)]
    pub common: Common,
    /// `host:port` to listen on (port 0: any free port, logged).
    #[serde(default = "modbus_listen")]
    pub listen: SocketAddr,
    /// Seconds without a request after which a client connection is closed.
    #[serde(default = "idle_timeout_s")]
    pub idle_timeout_s: f64,
    /// Let clients write register 3 (maintenance of every stream).
    #[serde(default)]
    pub maintenance_writes: bool,
}

fn idle_timeout_s() -> f64 {
    60.0
}

fn modbus_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1502))
}

impl SinkSpec for ModbusConfig {
    fn common(&self) -> &Common {
        &self.common
    }

    fn validate(&self, key: &str, p: &mut Problems) {
        if !self.common.streams.is_empty() {
            p.push(format!("{key}.streams"), "a Modbus server serves every stream's registers: remove streams");
        }
        if !(self.idle_timeout_s.is_finite() && (1.0..=86_400.0).contains(&self.idle_timeout_s)) {
            p.push(format!("{key}.idle_timeout_s"), format!("must be in 1..=86400 s, got {}", self.idle_timeout_s));
        }
    }

    fn warnings(&self, key: &str, w: &mut Problems) {
        crate::config::warn_if_public(w, &format!("{key}.listen"), self.listen);
    }

    fn exclusive(&self) -> Option<String> {
        (self.listen.port() != 0).then(|| format!("tcp:{}", self.listen))
    }

    fn check(&self, key: &str, p: &mut Problems, ports: bool) {
        if ports {
            if let Err(e) = TcpListener::bind(self.listen) {
                p.push(format!("{key}.listen"), format!("cannot listen on {}: {e}", self.listen));
            }
        }
    }

    fn is_server(&self) -> bool {
        true
    }

    fn build(&self, ctx: &BuildContext) -> Result<Built, String> {
        let idle = Duration::from_secs_f64(self.idle_timeout_s);
        let mut state = ModbusState::new(ctx.metrics.clone());
        state.maintenance_writes = self.maintenance_writes;
        let server = ModbusServer::start(self.listen, Arc::new(state), idle)?;
        tracing::info!(address = %server.addr, "Modbus TCP server listening");
        Ok(Built::Server(Box::new(server)))
    }
}

pub const STREAM_BASE: u16 = 10;
pub const STREAM_STRIDE: u16 = 10;
pub const ACK_OFFSET: u16 = 8;
/// The box's maintenance register.
pub const MAINTENANCE: u16 = 3;
const MAX_CLIENTS: usize = 32;
const MAX_PER_ADDRESS: usize = 8;

/// The registers over the daemon's metrics (acknowledgements live there too, shared with the
/// console and the API).
pub struct ModbusState {
    metrics: Arc<Metrics>,
    started: Instant,
    /// Register 3 is writable (maintenance).
    pub maintenance_writes: bool,
}

impl ModbusState {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        ModbusState { metrics, started: Instant::now(), maintenance_writes: false }
    }

    /// Minutes left of the longest maintenance in effect.
    fn maintenance_minutes(&self) -> u16 {
        let now = crate::metrics::unix_s();
        let left = (self.metrics.streams.iter())
            .filter_map(|s| s.suppressed().filter(|x| x.kind == "maintenance"))
            .map(|x| x.until_unix_s.saturating_sub(now).div_ceil(60))
            .max()
            .unwrap_or(0);
        left.min(u16::MAX as u64) as u16
    }

    /// The value of one register, or None for an address outside the map.
    pub fn read(&self, addr: u16) -> Option<u16> {
        self.read_with(addr, &mut None)
    }

    /// As [`read`](Self::read), reusing `cache` (stream index, its 10 registers) so that a
    /// block read sees one consistent snapshot of each stream.
    fn read_with(&self, addr: u16, cache: &mut Option<(usize, [u16; 10])>) -> Option<u16> {
        let m = &self.metrics;
        match addr {
            0 => return Some((self.started.elapsed().as_secs() & 0xffff) as u16),
            1 => return Some(m.streams.len().min(u16::MAX as usize) as u16),
            2 => return Some(m.ready.load(Ordering::Relaxed) as u16),
            3 => return Some(self.maintenance_minutes()),
            4..=9 => return Some(0),
            _ => {}
        }
        let i = ((addr - STREAM_BASE) / STREAM_STRIDE) as usize;
        let off = ((addr - STREAM_BASE) % STREAM_STRIDE) as usize;
        match cache {
            Some((j, regs)) if *j == i => Some(regs[off]),
            _ => {
                let regs = self.stream_registers(i)?;
                *cache = Some((i, regs));
                Some(regs[off])
            }
        }
    }

    /// The 10 registers of stream `i`, from one reading of its gauges.
    fn stream_registers(&self, i: usize) -> Option<[u16; 10]> {
        let m = &self.metrics;
        let s = m.streams.get(i)?;
        let state = s.alarm_state();
        let score = s.window_score.get();
        let thr = s.threshold.get();
        let scaled = |v: f64| if v.is_finite() { (v * 1000.0).clamp(0.0, 65535.0) as u16 } else { u16::MAX };
        let (sb, tb) = ((score as f32).to_bits(), (thr as f32).to_bits());
        let acked = self.metrics.streams[i].acknowledged();
        let shelf = s.suppressed();
        let status = state.is_raised() as u16
            | ((!s.up.load(Ordering::Relaxed) && !s.ended.load(Ordering::Relaxed)) as u16) << 1
            | (m.ready.load(Ordering::Relaxed) as u16) << 2
            | (acked as u16) << 3
            | ((state == AlarmState::Pending) as u16) << 4
            | (s.ended.load(Ordering::Relaxed) as u16) << 5
            | (s.signal_lost.load(Ordering::Relaxed) as u16) << 6
            | (shelf.as_ref().is_some_and(|x| x.kind == "shelved") as u16) << 7
            | (shelf.as_ref().is_some_and(|x| x.kind == "maintenance") as u16) << 8
            | (s.machine_off.load(Ordering::Relaxed) as u16) << 9
            | (s.threshold_overridden.load(Ordering::Relaxed) as u16) << 10;
        Some([
            status,
            scaled(score),
            scaled(thr),
            (sb >> 16) as u16,
            (sb & 0xffff) as u16,
            (tb >> 16) as u16,
            (tb & 0xffff) as u16,
            (s.alarms_raised.load(Ordering::Relaxed) & 0xffff) as u16,
            acked as u16,
            u16::from(s.priority.code()),
        ])
    }

    /// A write; Err(exception code) when refused.
    pub fn write(&self, addr: u16, value: u16) -> Result<(), u8> {
        if addr == MAINTENANCE && self.maintenance_writes {
            use crate::metrics::Command;
            let cmd = match value {
                0 => Command::EndMaintenance,
                n => Command::Maintenance { minutes: f64::from(n), reason: "set over Modbus".into() },
            };
            return match self.metrics.command(None, cmd, "modbus") {
                Ok(done) => {
                    tracing::info!(minutes = value, done = %done, "maintenance over Modbus");
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(minutes = value, error = %e, "maintenance over Modbus refused");
                    Err(3)
                }
            };
        }
        if addr < STREAM_BASE || (addr - STREAM_BASE) % STREAM_STRIDE != ACK_OFFSET {
            return Err(2);
        }
        let i = ((addr - STREAM_BASE) / STREAM_STRIDE) as usize;
        let s = self.metrics.streams.get(i).ok_or(2u8)?;
        match value {
            1 => {
                // The stream's active alarm only; nothing to acknowledge is not an error.
                if self.metrics.acknowledge(i, "modbus", None).is_ok() {
                    tracing::info!(stream = %s.name, "alarm acknowledged over Modbus");
                }
                Ok(())
            }
            0 => Ok(()),
            _ => Err(3),
        }
    }

    /// Answer one request PDU (function code + data) with a response PDU.
    pub fn handle(&self, pdu: &[u8]) -> Vec<u8> {
        let f = pdu.first().copied().unwrap_or(0);
        let ex = |code: u8| vec![f | 0x80, code];
        let u16_at = |k: usize| pdu.get(k..k + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        match f {
            3 | 4 => {
                let (Some(start), Some(count)) = (u16_at(1), u16_at(3)) else { return ex(3) };
                if count == 0 || count > 125 {
                    return ex(3);
                }
                let mut out = vec![f, (count * 2) as u8];
                let mut cache = None;
                for a in start as u32..start as u32 + count as u32 {
                    match u16::try_from(a).ok().and_then(|a| self.read_with(a, &mut cache)) {
                        Some(v) => out.extend_from_slice(&v.to_be_bytes()),
                        None => return ex(2),
                    }
                }
                out
            }
            6 => {
                let (Some(addr), Some(value)) = (u16_at(1), u16_at(3)) else { return ex(3) };
                match self.write(addr, value) {
                    Ok(()) => pdu[..5].to_vec(),
                    Err(c) => ex(c),
                }
            }
            16 => {
                let (Some(start), Some(count)) = (u16_at(1), u16_at(3)) else { return ex(3) };
                let bytes = pdu.get(5).copied().unwrap_or(0) as usize;
                if count == 0 || bytes != count as usize * 2 || pdu.len() < 6 + bytes {
                    return ex(3);
                }
                // All or nothing: check every address first.
                for k in 0..count {
                    let a = start.wrapping_add(k);
                    if a < STREAM_BASE || (a - STREAM_BASE) % STREAM_STRIDE != ACK_OFFSET {
                        return ex(2);
                    }
                }
                for k in 0..count as usize {
                    let v = u16::from_be_bytes([pdu[6 + 2 * k], pdu[7 + 2 * k]]);
                    if let Err(c) = self.write(start.wrapping_add(k as u16), v) {
                        return ex(c);
                    }
                }
                pdu[..5].to_vec()
            }
            _ => ex(1),
        }
    }
}

/// The listening server; stops when `stop` is set.
pub struct ModbusServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl ModbusServer {
    pub fn start(listen: SocketAddr, state: Arc<ModbusState>, idle: Duration) -> Result<Self, String> {
        let listener = TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let clients = crate::admission::table(MAX_CLIENTS, MAX_PER_ADDRESS, 0);
        let handle = std::thread::Builder::new()
            .name("mpdr-modbus".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((sock, peer)) => {
                            // Full: the least recently active client makes room for this one.
                            let Ok(conn) = crate::admission::admit(&clients, peer.ip(), &sock) else {
                                tracing::warn!(%peer, "Modbus: too many clients (32 in all, 8 per address, none idle), connection refused");
                                continue;
                            };
                            let (state, stop, clients) = (state.clone(), stop2.clone(), clients.clone());
                            let _ = std::thread::Builder::new().name("mpdr-modbus-client".into()).spawn(move || {
                                serve(sock, &state, &stop, idle, &conn);
                                crate::admission::release(&clients, &conn);
                            });
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Modbus accept failed");
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(ModbusServer { addr, stop, handle: Some(handle) })
    }
}

impl Drop for ModbusServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One client: MBAP frames in, responses out, until EOF, an error or stop.
fn serve(mut sock: TcpStream, state: &ModbusState, stop: &AtomicBool, idle: Duration, conn: &crate::admission::Conn) {
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = sock.set_write_timeout(Some(Duration::from_secs(5)));
    let mut header = [0u8; 7];
    while !stop.load(Ordering::Relaxed) {
        let deadline = Instant::now() + idle;
        match read_full(&mut sock, &mut header, stop, deadline) {
            Ok(true) => {}
            _ => return,
        }
        let len = u16::from_be_bytes([header[4], header[5]]) as usize;
        if !(2..=254).contains(&len) || header[2..4] != [0, 0] {
            return; // not Modbus TCP: drop the connection
        }
        let mut pdu = vec![0u8; len - 1];
        if !matches!(read_full(&mut sock, &mut pdu, stop, Instant::now() + idle), Ok(true)) {
            return;
        }
        conn.waiting(false);
        let resp = state.handle(&pdu);
        let mut frame = Vec::with_capacity(7 + resp.len());
        frame.extend_from_slice(&header[..4]);
        frame.extend_from_slice(&((resp.len() + 1) as u16).to_be_bytes());
        frame.push(header[6]);
        frame.extend_from_slice(&resp);
        if sock.write_all(&frame).is_err() {
            return;
        }
        conn.waiting(true);
    }
}

/// Fill `buf`; Ok(false) on EOF, on stop, or when `deadline` passes first (an idle client).
fn read_full(sock: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool, deadline: Instant) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match sock.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::StreamMetrics;

    fn state() -> ModbusState {
        let m = Metrics::new(vec![StreamMetrics::new("a", "m"), StreamMetrics::new("b", "m")], vec![]);
        m.ready.store(true, Ordering::Relaxed);
        m.streams[1].window_score.set(1.5);
        m.streams[1].threshold.set(0.75);
        m.streams[1].up.store(true, Ordering::Relaxed);
        ModbusState::new(Arc::new(m))
    }

    #[test]
    fn reads_follow_the_documented_map() {
        let s = state();
        let r = s.handle(&[3, 0, 20, 0, 9]);
        assert_eq!(&r[..2], &[3, 18]);
        let regs: Vec<u16> = r[2..].chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        assert_eq!(regs[0], 0b100, "stream b: model loaded, up, no alarm");
        assert_eq!((regs[1], regs[2]), (1500, 750));
        assert_eq!(f32::from_bits((regs[3] as u32) << 16 | regs[4] as u32), 1.5);
        assert_eq!(f32::from_bits((regs[5] as u32) << 16 | regs[6] as u32), 0.75);
        assert_eq!(s.read(1), Some(2));
        assert_eq!(s.read(10), Some(0b110), "stream a: down (never came up), model loaded");
        assert_eq!(s.handle(&[3, 0, 30, 0, 1]), vec![0x83, 2], "no stream 2");
    }

    #[test]
    fn only_acknowledge_registers_are_writable_and_ack_lasts_until_the_next_alarm() {
        let s = state();
        let sm = &s.metrics.streams[0];
        sm.set_alarm_state(crate::detect::AlarmState::Alarm);
        sm.raised("r1", 0);
        assert_eq!(s.handle(&[6, 0, 11, 0, 1]), vec![0x86, 2], "score register is read-only");
        assert_eq!(s.handle(&[6, 0, 0, 0, 1]), vec![0x86, 2], "heartbeat is read-only");
        assert_eq!(s.handle(&[6, 0, 18, 0, 1]), vec![6, 0, 18, 0, 1]);
        assert_eq!(s.read(10).unwrap() & 0b1001, 0b1001, "alarm + acknowledged");
        sm.cleared();
        assert_eq!(s.handle(&[6, 0, 18, 0, 1]), vec![6, 0, 18, 0, 1], "no alarm: nothing to do, not an error");
        sm.raised("r2", 0);
        assert_eq!(s.read(10).unwrap() & 0b1000, 0, "a new alarm is not acknowledged");
        assert_eq!(
            s.handle(&[16, 0, 17, 0, 2, 4, 0, 0, 0, 1]),
            vec![0x90, 2],
            "a block write touching other registers"
        );
        assert_eq!(s.handle(&[16, 0, 18, 0, 1, 2, 0, 1]), vec![16, 0, 18, 0, 1]);
        assert_eq!(s.handle(&[5, 0, 0, 0xff, 0]), vec![0x85, 1], "coils are not supported");
        assert_eq!(s.handle(&[6, 0, 3, 0, 30]), vec![0x86, 2], "maintenance is read-only unless enabled");
        assert_eq!(s.read(19), Some(3), "priority: medium");
    }

    #[test]
    fn the_maintenance_register_commands_every_stream_when_enabled() {
        let mut s = state();
        s.maintenance_writes = true;
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let g = got.clone();
        *s.metrics.on_command.lock().unwrap() = Some(crate::metrics::CommandHook(Box::new(move |i, c, by| {
            g.lock().unwrap().push((i, c, by.to_string()));
            Ok("ok".into())
        })));
        assert_eq!(s.handle(&[6, 0, 3, 0, 30]), vec![6, 0, 3, 0, 30]);
        assert_eq!(s.handle(&[6, 0, 3, 0, 0]), vec![6, 0, 3, 0, 0]);
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), 2);
        assert!(
            matches!(&got[0], (None, crate::metrics::Command::Maintenance { minutes, .. }, by) if *minutes == 30.0 && by == "modbus")
        );
        assert_eq!(got[1].1, crate::metrics::Command::EndMaintenance);
        // A suppression shows in the status bits and register 3.
        *s.metrics.streams[0].suppression.lock().unwrap() = Some(crate::metrics::Suppressed {
            kind: "maintenance".into(),
            by: "x".into(),
            reason: String::new(),
            since_unix_s: 0,
            until_unix_s: crate::metrics::unix_s() + 600,
        });
        assert_eq!(s.read(10).unwrap() & (1 << 8), 1 << 8);
        assert_eq!(s.read(3), Some(10));
    }
}
