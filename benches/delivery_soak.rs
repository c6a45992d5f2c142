//! Delivery soak: 10,000 events through the outbox to a webhook receiver that fails 30% of
//! requests at random, an exec sink that fails 30% of runs at random, and a real mosquitto
//! broker with a subscriber. Checks that nothing is lost and reports throughput and the p99
//! delivery latency seen by the receivers. `cargo bench --bench delivery_soak` (~1–2 min).
//! MPDR_SOAK_EVENTS overrides the count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a test or benchmark: failing loudly is the point

use std::collections::HashSet;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use mpdr::alarm::deliver::now_ms;
use mpdr::alarm::{AlarmEvent, EventKind};
use mpdr::daemon::config::MonitorConfig;
use mpdr::daemon::events;
use mpdr::metrics::{Metrics, StreamMetrics};

fn p99(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64) * 0.99) as usize).copied().unwrap_or(f64::NAN)
}

fn main() {
    let _ = tracing_subscriber::fmt().with_env_filter("error").try_init();
    let n: usize = std::env::var("MPDR_SOAK_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let d = tempfile::tempdir().unwrap();

    // Webhook receiver: 30% of requests answered 500 at random.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alarms", listener.local_addr().unwrap());
    /// Ids delivered, their latencies (s), requests refused, the accepted events' `seq` in order.
    type Received = (HashSet<String>, Vec<f64>, u64, Vec<u64>);
    let web: Arc<Mutex<Received>> = Arc::default();
    let w = web.clone();
    let server = tiny_http::Server::from_listener(listener, None).unwrap();
    std::thread::spawn(move || {
        let mut s: u64 = 42;
        for mut req in server.incoming_requests() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let fail = s % 100 < 30;
            let mut body = String::new();
            let _ = req.as_reader().read_to_string(&mut body);
            if !fail {
                let ev: AlarmEvent = serde_json::from_str(&body).unwrap();
                let mut g = w.lock().unwrap();
                if g.0.insert(ev.id.clone()) {
                    g.1.push(now_ms().saturating_sub(ev.unix_ms) as f64 / 1000.0);
                }
                g.3.push(ev.seq.unwrap_or(0));
            } else {
                w.lock().unwrap().2 += 1;
            }
            let _ = req.respond(tiny_http::Response::empty(if fail { 500 } else { 200 }));
        }
    });

    // MQTT broker and subscriber (skipped without mosquitto).
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let conf = d.path().join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n"))
        .unwrap();
    let broker = Command::new("/usr/sbin/mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok();
    std::thread::sleep(Duration::from_millis(500));
    let mqtt: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mqtt_order: Arc<Mutex<Vec<u64>>> = Arc::default();
    if broker.is_some() {
        let m = mqtt.clone();
        let mo = mqtt_order.clone();
        let mut o = rumqttc::MqttOptions::new("soak-sub", "127.0.0.1", port);
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = rumqttc::Client::new(o, 1000);
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe("soak/+/event", rumqttc::QoS::AtLeastOnce);
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if let Ok(ev) = serde_json::from_slice::<AlarmEvent>(&p.payload) {
                            mo.lock().unwrap().push(ev.seq.unwrap_or(0));
                            m.lock().unwrap().insert(ev.id);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        std::thread::sleep(Duration::from_millis(500));
    }

    // Exec: fails 30% of runs at random; appends the id on success.
    let log = d.path().join("exec.log");
    let script = format!(
        "r=$(od -An -N1 -tu1 /dev/urandom); [ \"$r\" -lt 77 ] && exit 1; echo \"$MPDR_EVENT_ID\" >> {}",
        log.display()
    );
    let mut text = format!(
        "[state]\ndir = \"{}\"\n[[stream]]\nname = \"s\"\nmodel = \"m\"\nsource = {{ type = \"device\" }}\n\
         [[sink]]\ntype = \"webhook\"\nurl = \"{url}\"\nretry = {{ initial_s = 0.02, max_s = 0.5 }}\n\
         [[sink]]\ntype = \"exec\"\ncommand = [\"sh\", \"-c\", '{script}']\nretry = {{ initial_s = 0.02, max_s = 0.5 }}\n",
        d.path().join("state").display()
    );
    if broker.is_some() {
        text += &format!("[[sink]]\ntype = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {port}\ntopic = \"soak/{{stream}}/event\"\nstate_topic = \"soak/{{stream}}/state\"\n");
    }
    let cfg = MonitorConfig::parse(&text).unwrap().into_valid(d.path()).unwrap();
    let metrics = Arc::new(Metrics::new(vec![StreamMetrics::new("s", "m")], vec![]));
    let state = d.path().join("state");
    let slots = events::build_workers(&cfg.sinks(), &state, &metrics).unwrap();
    let (tx, rx) = bounded(10_000);
    let ev_thread = events::spawn(rx, slots, state.clone(), 1_000_000, metrics.clone(), None).unwrap();
    std::thread::sleep(Duration::from_millis(500)); // MQTT connects

    let start = Instant::now();
    let mut ids = HashSet::new();
    let mut order = Vec::new();
    for i in 0..n {
        let mut e = AlarmEvent::new(if i % 2 == 0 { EventKind::Raised } else { EventKind::Cleared }, "s", i as f64);
        e.message = format!("soak event {i}");
        ids.insert(e.id.clone());
        order.push(e.id.clone());
        tx.send(Box::new(e)).unwrap();
    }
    let queued = start.elapsed().as_secs_f64();
    let sinks = if broker.is_some() { 3 } else { 2 };
    let delivered = |metrics: &Metrics| -> u64 {
        metrics.sinks.lock().unwrap().iter().map(|s| s.delivered.load(std::sync::atomic::Ordering::Relaxed)).sum()
    };
    let deadline = Instant::now() + Duration::from_secs(900);
    while delivered(&metrics) < (n * sinks) as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let wall = start.elapsed().as_secs_f64();
    drop(tx);
    let _ = ev_thread.handle.join();

    let web = web.lock().unwrap();
    let exec_ids: HashSet<String> =
        std::fs::read_to_string(&log).unwrap_or_default().lines().map(String::from).collect();
    let mqtt_ids = mqtt.lock().unwrap().clone();
    let lost = |got: &HashSet<String>| ids.iter().filter(|i| !got.contains(*i)).count();
    println!("machine: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    println!(
        "{n} events committed in {queued:.2} s; all sinks done in {wall:.1} s ({:.0} deliveries/s)",
        (n * sinks) as f64 / wall
    );
    println!(
        "webhook: {} delivered, {} lost, {} requests refused (500), p99 latency {:.2} s",
        web.0.len(),
        lost(&web.0),
        web.2,
        p99(web.1.clone())
    );
    println!("exec:    {} delivered, {} lost", exec_ids.len(), lost(&exec_ids));
    // Order: every sink must see the stream's events in the order they were recorded.
    let position: std::collections::HashMap<&str, u64> =
        order.iter().enumerate().map(|(i, id)| (id.as_str(), i as u64 + 1)).collect();
    let exec_order: Vec<u64> =
        std::fs::read_to_string(&log).unwrap_or_default().lines().filter_map(|id| position.get(id).copied()).collect();
    let backwards = |v: &[u64]| v.windows(2).filter(|w| w[1] <= w[0]).count();
    let mqtt_order = mqtt_order.lock().unwrap().clone();
    println!(
        "order (deliveries that went back in seq): webhook {} of {}, exec {} of {}, mqtt {} of {}",
        backwards(&web.3),
        web.3.len(),
        backwards(&exec_order),
        exec_order.len(),
        backwards(&mqtt_order),
        mqtt_order.len()
    );
    if broker.is_some() {
        println!("mqtt:    {} delivered, {} lost", mqtt_ids.len(), lost(&mqtt_ids));
    } else {
        println!("mqtt:    skipped (no mosquitto)");
    }
    for s in metrics.sinks.lock().unwrap().iter() {
        let r = std::sync::atomic::Ordering::Relaxed;
        println!(
            "  sink {:<8} delivered {:>6} retries {:>6} dead {:>3} p99 latency ≤ {:?} s",
            s.name,
            s.delivered.load(r),
            s.retries.load(r),
            s.dead.load(r),
            s.latency.quantile(0.99)
        );
    }
    if let Some(mut b) = broker {
        let _ = b.kill();
        let _ = b.wait();
    }
}
