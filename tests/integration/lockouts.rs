//! Issue 25, "lockouts": clients on five loopback addresses holding every connection they can
//! (slow request heads, live feeds, idle Modbus sessions) do not lock a health check or a PLC
//! on another address out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpdr::audio::wav;

use super::delivery::{free_port, modbus, regs};
use super::monitor::{machine, write_config, Monitor, RATE};

const DETECT: &str = "{ window_s = 2.0, hop_s = 0.5, threshold = \"model\" }";

/// A TCP connection to `to` from the loopback address `from` (127.0.0.x).
fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(s.into())
}

const ATTACKERS: [&str; 5] = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"];

/// 16 connections (the per-address limit) from each attacking address, each made and remade by `hold` until `stop`.
fn attack(
    to: SocketAddr,
    stop: &Arc<AtomicBool>,
    hold: fn(TcpStream, &AtomicBool),
) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    for from in ATTACKERS {
        for _ in 0..16 {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match connect_from(from, to) {
                        Ok(s) => hold(s, &stop),
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            }));
        }
    }
    threads
}

fn monitor(dir: &std::path::Path, sink: &str) -> Monitor {
    let w = dir.join("normal.wav");
    wav::write_pcm16(&w, RATE, 1, &machine(4.0, 1, |_| false)).unwrap();
    let source = format!("{{ type = \"file\", path = \"{}\", realtime = true, loop = true }}", w.display());
    Monitor::start(&write_config(dir, "monitor.toml", &source, DETECT, sink), &[])
}

/// `GET path` from 127.0.0.1: the status code (0 when refused or cut).
fn status(addr: SocketAddr, path: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(addr) else { return 0 };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Health and metrics from a sixth address, ten times over 12 s while the attack goes on.
fn health_stays_answered(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(12);
    let mut answers = Vec::new();
    while Instant::now() < until {
        answers.push((status(addr, "/healthz"), status(addr, "/metrics")));
        std::thread::sleep(Duration::from_millis(1200));
    }
    assert!(answers.iter().all(|&a| a == (200, 200)), "{answers:?}");
}

#[test]
fn slow_request_heads_from_five_addresses_do_not_lock_health_checks_out() {
    let d = tempfile::tempdir().unwrap();
    let m = monitor(d.path(), "");
    let addr: SocketAddr = m.addr().parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // One header byte every 2 s, never finishing the head.
    let threads = attack(addr, &stop, |mut s, stop| {
        let _ = s.write_all(b"G");
        while !stop.load(Ordering::Relaxed) && s.write_all(b"a").is_ok() {
            std::thread::sleep(Duration::from_secs(2));
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    health_stays_answered(addr);
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().unwrap());
}

#[test]
fn live_feed_subscribers_from_five_addresses_do_not_lock_health_checks_out() {
    let d = tempfile::tempdir().unwrap();
    let m = monitor(d.path(), "");
    let addr: SocketAddr = m.addr().parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let threads = attack(addr, &stop, |mut s, stop| {
        let _ = s.write_all(b"GET /api/live HTTP/1.1\r\n\r\n");
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    health_stays_answered(addr);
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().unwrap());
}

#[test]
fn idle_modbus_sessions_from_five_addresses_do_not_lock_a_plc_out() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let m = monitor(d.path(), &format!("[[sink]]\ntype = \"modbus\"\nlisten = \"127.0.0.1:{port}\"\n"));
    assert!(m.wait_line(|l| l.contains("Modbus TCP server listening"), 60).is_some(), "{:?}", m.log());
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // 5 addresses x 8 sessions (each address's limit), each reading once and then idling.
    let mut held = Vec::new();
    for from in ATTACKERS {
        for i in 0..8u16 {
            let mut s = connect_from(from, to).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            assert_eq!(regs(&modbus(&mut s, i, &[3, 0, 0, 0, 1])).len(), 1);
            held.push(s);
        }
    }
    // A PLC on a sixth address polls eight times: served every time.
    for tid in 0..8u16 {
        let mut plc = connect_from("127.0.0.7", to).unwrap();
        plc.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let r = modbus(&mut plc, 100 + tid, &[3, 0, 0, 0, 4]);
        assert_eq!(regs(&r).len(), 4, "poll {tid}: {r:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(held);
}
