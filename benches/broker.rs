//! Fleet sizing: the plant telemetry of many simulated streams (the `mqtt` sink's own
//! payloads and topics, `<prefix>/<box>/<stream>/telemetry`, QoS 0, retained) through one real
//! mosquitto to one subscriber that builds the plant view (`mpdr plant`'s model). For each
//! offered rate: messages/s received, loss, and the CPU of the broker, the publishers and the
//! subscriber (from /proc). `cargo bench --bench broker` (~2 min).
//! MPDR_BROKER_RATES (e.g. "1000,10000") and MPDR_BROKER_SECONDS override the sweep.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a test or benchmark: failing loudly is the point

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpdr::alarm::sink::telemetry;
use mpdr::metrics::{Metrics, StreamMetrics};

/// CPU seconds (user + system) of a process, or of this process's threads named `prefix*`.
fn cpu_s(pid: u32, thread_prefix: Option<&str>) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let parse = |stat: &str| -> f64 {
        let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / tick
    };
    match thread_prefix {
        None => std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| parse(&s)).unwrap_or(0.0),
        Some(p) => std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(p)))
            .map(|t| std::fs::read_to_string(t.path().join("stat")).map(|s| parse(&s)).unwrap_or(0.0))
            .sum(),
    }
}

fn main() {
    let _ = tracing_subscriber::fmt().with_env_filter("error").try_init();
    let rates: Vec<u64> = std::env::var("MPDR_BROKER_RATES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1_000, 5_000, 10_000, 20_000, 40_000, 80_000, 160_000]);
    let seconds: f64 = std::env::var("MPDR_BROKER_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10.0);
    let d = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let conf = d.path().join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n"))
        .unwrap();
    let Ok(mut broker) =
        Command::new("/usr/sbin/mosquitto").arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn()
    else {
        println!("skipped: no /usr/sbin/mosquitto (make setup installs it)");
        return;
    };
    std::thread::sleep(Duration::from_millis(500));

    // The control room: one subscriber to everything, feeding the plant view.
    let received = Arc::new(AtomicU64::new(0));
    let plant = Arc::new(Mutex::new(mpdr::plant::Plant::default()));
    {
        let (received, plant) = (received.clone(), plant.clone());
        let mut o = rumqttc::MqttOptions::new("bench-plant", "127.0.0.1", port);
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = rumqttc::Client::new(o, 1000);
        std::thread::Builder::new()
            .name("bench-sub".into())
            .spawn(move || {
                for n in conn.iter() {
                    match n {
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                            client.subscribe("bench/#", rumqttc::QoS::AtMostOnce).unwrap();
                        }
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                            plant.lock().unwrap().apply("bench", &p.topic, &p.payload);
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            })
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));

    println!("mosquitto {} on this machine; {seconds} s per rate; telemetry once per second per stream", version());
    println!(
        "| streams | boxes | sent msg/s | received msg/s | lost (whole run) | broker CPU | publishers CPU | subscriber CPU |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let me = std::process::id();
    for &rate in &rates {
        // Boxes of at most 500 streams each, each one MQTT client publishing every stream's
        // telemetry once a second, as `telemetry_s = 1` does.
        let boxes = rate.div_ceil(500).max(1);
        let per_box = rate / boxes;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let r_start = received.load(Ordering::Relaxed);
        let mut handles = Vec::new();
        for b in 0..boxes {
            let (stop, sent) = (stop.clone(), sent.clone());
            let mut o = rumqttc::MqttOptions::new(format!("bench-box-{rate}-{b}"), "127.0.0.1", port);
            o.set_max_packet_size(1 << 20, 1 << 20);
            let (client, mut conn) = rumqttc::Client::new(o, 1000);
            std::thread::Builder::new()
                .name("bench-pub-net".into())
                .spawn(move || {
                    for n in conn.iter() {
                        if n.is_err() {
                            break;
                        }
                    }
                })
                .unwrap();
            let mut m = Metrics::new(
                (0..per_box).map(|s| StreamMetrics::new(&format!("s{s:04}"), "fan-1234")).collect(),
                vec![],
            );
            m.identity.box_name = format!("box-{b:03}");
            for (i, s) in m.streams.iter().enumerate() {
                s.window_score.set(0.5 + i as f64 * 1e-3);
                s.threshold.set(1.0);
                s.level_dbfs.set(-23.0);
            }
            let template = format!("bench/{}/{{stream}}/telemetry", m.identity.box_name);
            handles.push(
                std::thread::Builder::new()
                    .name("bench-pub".into())
                    .spawn(move || {
                        let mut next = Instant::now();
                        while !stop.load(Ordering::Relaxed) {
                            for s in &m.streams {
                                let t = telemetry::topic(&template, &s.name);
                                if client.publish(t, rumqttc::QoS::AtMostOnce, true, telemetry::payload(&m, s)).is_ok()
                                {
                                    sent.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            next += Duration::from_secs(1);
                            std::thread::sleep(next.saturating_duration_since(Instant::now()));
                        }
                        let _ = client.disconnect();
                    })
                    .unwrap(),
            );
        }
        // Warm up 2 s, then measure.
        std::thread::sleep(Duration::from_secs(2));
        let (r0, s0, t0) = (received.load(Ordering::Relaxed), sent.load(Ordering::Relaxed), Instant::now());
        let (b0, p0, c0) = (cpu_s(broker.id(), None), cpu_s(me, Some("bench-pub")), cpu_s(me, Some("bench-sub")));
        std::thread::sleep(Duration::from_secs_f64(seconds));
        let wall = t0.elapsed().as_secs_f64();
        let (r1, s1) = (received.load(Ordering::Relaxed), sent.load(Ordering::Relaxed));
        let (b1, p1, c1) = (cpu_s(broker.id(), None), cpu_s(me, Some("bench-pub")), cpu_s(me, Some("bench-sub")));
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            let _ = h.join();
        }
        // Loss over the whole run: what was sent against what arrived once the queues emptied.
        let mut last = received.load(Ordering::Relaxed);
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = received.load(Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
        let (all_sent, all_got) = (sent.load(Ordering::Relaxed), last - r_start);
        let got = (r1 - r0) as f64 / wall;
        let lost = 1.0 - all_got as f64 / all_sent.max(1) as f64;
        println!(
            "| {} | {boxes} | {:.0} | {got:.0} | {:.2}% | {:.0}% of a core | {:.0}% | {:.0}% |",
            per_box * boxes,
            (s1 - s0) as f64 / wall,
            100.0 * lost.max(0.0),
            100.0 * (b1 - b0) / wall,
            100.0 * (p1 - p0) / wall,
            100.0 * (c1 - c0) / wall
        );
    }
    let (n, online, streams, _) = plant.lock().unwrap().counts();
    println!("plant view at the end: {n} boxes ({online} with a status), {streams} streams");
    let _ = broker.kill();
    let _ = broker.wait();
}

fn version() -> String {
    Command::new("/usr/sbin/mosquitto")
        .arg("-h")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
        .unwrap_or_default()
        .replace("mosquitto version ", "")
}
