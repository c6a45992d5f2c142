//! Alarm delivery against real receivers: a local HTTP server, a real mosquitto broker, a
//! Modbus TCP client (our raw frames and pymodbus), the outbox surviving SIGKILL.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpdr::alarm::hmac::verify_webhook;
use mpdr::audio::wav;

use super::monitor::{machine, write_config, Monitor, RATE};
use super::util::mpdr;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// 70 s: normal, anomalous 20–40 s, normal -> events stream-up, raised, cleared.
pub fn anomaly_wav(dir: &Path) -> PathBuf {
    let w = dir.join("replay.wav");
    wav::write_pcm16(&w, RATE, 1, &machine(70.0, 99, |t| (20.0..40.0).contains(&t))).unwrap();
    w
}

const DETECT: &str = "{ window_s = 2.0, hop_s = 0.5, threshold = \"model\", on_delay_s = 3.0, off_delay_s = 4.0 }";

#[derive(Clone, Debug)]
pub struct Hit {
    pub status: u16,
    pub id: String,
    pub signature: String,
    pub body: String,
}

/// A real HTTP receiver: answers 500 to the first `fail_first` requests, then 200.
pub fn receiver(listener: TcpListener, fail_first: usize) -> Arc<Mutex<Vec<Hit>>> {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let h = hits.clone();
    let server = tiny_http::Server::from_listener(listener, None).unwrap();
    std::thread::spawn(move || {
        for mut req in server.incoming_requests() {
            let mut body = String::new();
            req.as_reader().read_to_string(&mut body).unwrap();
            let header = |n: &'static str| {
                req.headers()
                    .iter()
                    .find(|x| x.field.equiv(n))
                    .map(|x| x.value.as_str().to_string())
                    .unwrap_or_default()
            };
            let mut hits = h.lock().unwrap();
            let status = if hits.len() < fail_first { 500 } else { 200 };
            let signature =
                format!("{} {} {}", header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
            hits.push(Hit { status, id: header("X-Mpdr-Event-Id"), signature, body });
            drop(hits);
            let _ = req.respond(tiny_http::Response::empty(status));
        }
    });
    hits
}

pub fn delivered_ids(hits: &Mutex<Vec<Hit>>) -> BTreeSet<String> {
    hits.lock().unwrap().iter().filter(|h| h.status == 200).map(|h| h.id.clone()).collect()
}

pub fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn webhook_retries_until_the_receiver_answers_and_signs_every_body() {
    let d = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alarms", listener.local_addr().unwrap());
    let hits = receiver(listener, 4);
    let sink = format!(
        "[[sink]]\ntype = \"webhook\"\nurl = \"{url}\"\nhmac_secret_env = \"MPDR_TEST_WEBHOOK_SECRET\"\n\
         retry = {{ initial_s = 0.05, max_s = 0.2 }}\n"
    );
    let source = format!("{{ type = \"file\", path = \"{}\", realtime = false }}", anomaly_wav(d.path()).display());
    let cfg = write_config(d.path(), "monitor.toml", &source, DETECT, &sink);
    let secret_dir = tempfile::tempdir().unwrap();
    let m = Monitor::start_env(
        &cfg,
        &[],
        &[("MPDR_TEST_WEBHOOK_SECRET", Path::new("s3cr3t")), ("HOME", secret_dir.path())],
    );
    wait_for("3 delivered events", 90, || delivered_ids(&hits).len() == 3);
    m.wait_metric("mpdr_sink_delivered_total{sink=\"webhook\"}", |v| v == 3.0, 30);
    let hits = hits.lock().unwrap().clone();
    let failed: BTreeSet<&str> = hits.iter().filter(|h| h.status == 500).map(|h| h.id.as_str()).collect();
    let ok: BTreeSet<&str> = hits.iter().filter(|h| h.status == 200).map(|h| h.id.as_str()).collect();
    assert_eq!(hits.iter().filter(|h| h.status == 500).count(), 4);
    assert!(failed.is_subset(&ok), "retries carry the same event id: {failed:?} vs {ok:?}");
    for h in &hits {
        // Standard Webhooks: id, timestamp and body under one signature.
        let mut parts = h.signature.splitn(3, ' ');
        let (id, ts, sig) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        assert_eq!(id, h.id);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(verify_webhook(b"s3cr3t", id, ts, h.body.as_bytes(), sig, now, 600), "{}", h.signature);
        assert!(!verify_webhook(b"s3cr3t", id, ts, h.body.as_bytes(), sig, now + 3600, 600), "a replay an hour later");
        let ev: serde_json::Value = serde_json::from_str(&h.body).unwrap();
        assert_eq!(ev["id"], h.id.as_str());
    }
    let kinds: BTreeSet<String> = hits
        .iter()
        .map(|h| serde_json::from_str::<serde_json::Value>(&h.body).unwrap()["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["cleared", "raised", "stream-up"].map(String::from).into_iter().collect());
    assert_eq!(m.metric("mpdr_sink_retries_total{sink=\"webhook\"}"), Some(4.0));
    let (status, _) = m.stop(20);
    assert!(status.success());
    // The outbox agrees: three events, each delivered once to the one sink.
    let state = d.path().join("state");
    let o = mpdr(&["alarms", "list", "--json", "--state-dir", state.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["delivered"] == 1 && r["pending"] == 0 && r["dead"] == 0), "{rows:?}");
}

#[test]
fn a_refused_event_is_dead_lettered_and_alarms_retry_redrives_it() {
    let d = tempfile::tempdir().unwrap();
    // A receiver that refuses everything with 404 until told otherwise.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alarms", listener.local_addr().unwrap());
    let accept = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let got = Arc::new(Mutex::new(Vec::<String>::new()));
    let (a, g) = (accept.clone(), got.clone());
    let server = tiny_http::Server::from_listener(listener, None).unwrap();
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let ok = a.load(std::sync::atomic::Ordering::Relaxed);
            if ok {
                let id = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("X-Mpdr-Event-Id"))
                    .map(|h| h.value.as_str().to_string());
                g.lock().unwrap().extend(id);
            }
            let _ = req.respond(tiny_http::Response::empty(if ok { 204 } else { 404 }));
        }
    });
    let w = d.path().join("n.wav");
    wav::write_pcm16(&w, RATE, 1, &machine(5.0, 1, |_| false)).unwrap();
    let sink = format!("[[sink]]\ntype = \"webhook\"\nname = \"hook\"\nurl = \"{url}\"\n");
    let source = format!("{{ type = \"file\", path = \"{}\", realtime = false }}", w.display());
    let cfg = write_config(d.path(), "monitor.toml", &source, DETECT, &sink);
    let m = Monitor::start(&cfg, &[]);
    m.wait_metric("mpdr_sink_dead_letters_total{sink=\"hook\"}", |v| v == 1.0, 30);
    let state = d.path().join("state");
    let o = mpdr(&["alarms", "list", "--state", "dead", "--json", "--state-dir", state.to_str().unwrap()]);
    let row: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    let id = row["id"].as_str().unwrap().to_string();
    let o = mpdr(&["alarms", "show", &id, "--state-dir", state.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("HTTP 404"), "{}", String::from_utf8_lossy(&o.stdout));
    accept.store(true, std::sync::atomic::Ordering::Relaxed);
    let o = mpdr(&["alarms", "retry", &id, "--state-dir", state.to_str().unwrap()]);
    assert!(o.status.success());
    wait_for("the re-driven event", 30, || got.lock().unwrap().contains(&id));
    let (status, _) = m.stop(20);
    assert!(status.success());
}

#[test]
fn events_pending_when_the_daemon_is_killed_are_delivered_after_restart() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port(); // nothing listens: every delivery fails
    let sink = format!(
        "[[sink]]\ntype = \"webhook\"\nname = \"hook\"\nurl = \"http://127.0.0.1:{port}/a\"\ntimeout_s = 1.0\n\
         retry = {{ initial_s = 0.1, max_s = 0.5 }}\n"
    );
    let source = format!("{{ type = \"file\", path = \"{}\", realtime = false }}", anomaly_wav(d.path()).display());
    let cfg = write_config(d.path(), "monitor.toml", &source, DETECT, &sink);
    let mut m = Monitor::start(&cfg, &[]);
    m.wait_metric("mpdr_events_total{kind=\"cleared\"}", |v| v == 1.0, 90);
    m.wait_metric("mpdr_sink_retries_total{sink=\"hook\"}", |v| v >= 3.0, 30);
    m.child.kill().unwrap(); // SIGKILL: no drain, no goodbye
    m.child.wait().unwrap();
    let state = d.path().join("state");
    let o = mpdr(&["alarms", "list", "--state", "pending", "--json", "--state-dir", state.to_str().unwrap()]);
    let pending: BTreeSet<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pending.len(), 3, "stream-up, raised and cleared are waiting in the outbox");

    // The receiver comes up; the daemon restarts (its source now missing: no new alarms).
    let hits = receiver(TcpListener::bind(("127.0.0.1", port)).unwrap(), 0);
    let source = "{ type = \"file\", path = \"/nonexistent/replay.wav\", realtime = false }";
    let cfg = write_config(d.path(), "monitor.toml", source, DETECT, &sink);
    let m = Monitor::start(&cfg, &[]);
    wait_for("every pending event", 60, || pending.is_subset(&delivered_ids(&hits)));
    let (status, _) = m.stop(20);
    assert!(status.success());
}

/// A mosquitto broker on `port` with persistence in `dir` (`user root`: started as root it
/// would drop to its own user, which cannot write `dir`, and lose its sessions on restart).
pub fn mosquitto(dir: &Path, port: u16) -> Option<Child> {
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].into_iter().find(|p| Path::new(p).exists())?;
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nuser root\n",
            dir.display()
        ),
    )
    .unwrap();
    let child = Command::new(bin).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().ok()?;
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(child)
}

/// The kinds of the events the subscriber got on `mpdr/b1/m/event`.
fn event_kinds(got: &Mutex<Vec<(String, String, bool)>>) -> BTreeSet<String> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(t, _, _)| t == "mpdr/b1/m/event")
        .filter_map(|(_, p, _)| serde_json::from_str::<serde_json::Value>(p).ok())
        .map(|v| v["kind"].as_str().unwrap_or("").to_string())
        .collect()
}

/// A persistent-session subscriber to `mpdr/#` collecting (topic, payload, retain).
fn subscriber(port: u16, id: &str) -> Arc<Mutex<Vec<(String, String, bool)>>> {
    subscriber_to(port, id, "mpdr/#")
}

/// A persistent-session subscriber to `filter` collecting (topic, payload, retain).
pub fn subscriber_to(port: u16, id: &str, filter: &str) -> Arc<Mutex<Vec<(String, String, bool)>>> {
    let filter = filter.to_string();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    o.set_clean_session(false);
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut conn) = rumqttc::Client::new(o, 100);
    std::thread::spawn(move || {
        for n in conn.iter() {
            match n {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe(filter.as_str(), rumqttc::QoS::AtLeastOnce);
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    g.lock().unwrap().push((
                        p.topic.clone(),
                        String::from_utf8_lossy(&p.payload).to_string(),
                        p.retain,
                    ));
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    });
    got
}

#[test]
fn mqtt_events_and_retained_state_arrive_and_survive_a_broker_restart() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some(mut broker) = mosquitto(d.path(), port) else {
        eprintln!("SKIP: mosquitto is not installed (make setup installs it)");
        return;
    };
    let got = subscriber(port, "mpdr-test-sub");
    std::thread::sleep(Duration::from_millis(300)); // the subscriber's session is set up
    let sink = format!(
        "[identity]\nbox = \"b1\"\n[[sink]]\ntype = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         timeout_s = 2.0\nretry = {{ initial_s = 0.2, max_s = 1.0 }}\n"
    );
    // Paced at 10x: the fault starts 2 s in; the broker is down from ~0.5 s to ~3.5 s.
    let source =
        format!("{{ type = \"file\", path = \"{}\", realtime = true, speed = 10.0 }}", anomaly_wav(d.path()).display());
    let cfg = write_config(d.path(), "monitor.toml", &source, DETECT, &sink);
    let m = Monitor::start(&cfg, &[]);
    wait_for("stream-up over MQTT", 30, || {
        got.lock().unwrap().iter().any(|(t, p, _)| t == "mpdr/b1/m/event" && p.contains("stream-up"))
    });
    broker.kill().unwrap();
    broker.wait().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let mut broker = mosquitto(d.path(), port).expect("mosquitto restarts");
    m.wait_metric("mpdr_stream_ended{stream=\"m\"}", |v| v == 1.0, 60);
    let ids = || event_kinds(&got);
    wait_for("raised and cleared after the restart", 60, || ids().len() == 3);
    assert_eq!(ids(), ["cleared", "raised", "stream-up"].map(String::from).into_iter().collect());
    // A newcomer gets the retained state and the daemon's status.
    m.wait_metric("mpdr_sink_pending{sink=\"mqtt\"}", |v| v == 0.0, 60);
    let late = subscriber(port, "mpdr-test-late");
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let l = late.lock().unwrap().clone();
        let state = l.iter().any(|(t, p, r)| t == "mpdr/b1/m/state" && *r && p.contains("\"state\":\"normal\""));
        let online = l.iter().any(|(t, p, r)| t == "mpdr/b1/status" && *r && p.contains("\"status\":\"online\""));
        if state && online {
            break;
        }
        assert!(Instant::now() < until, "retained state and status for a late subscriber; it got {l:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, _) = m.stop(20);
    assert!(status.success());
    let _ = broker.kill();
    let _ = broker.wait();
}

/// Raw Modbus TCP: one request PDU, the response PDU.
pub fn modbus(sock: &mut TcpStream, tid: u16, pdu: &[u8]) -> Vec<u8> {
    let mut frame = tid.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
    frame.push(1);
    frame.extend_from_slice(pdu);
    sock.write_all(&frame).unwrap();
    let mut head = [0u8; 7];
    sock.read_exact(&mut head).unwrap();
    assert_eq!(u16::from_be_bytes([head[0], head[1]]), tid);
    let mut body = vec![0u8; u16::from_be_bytes([head[4], head[5]]) as usize - 1];
    sock.read_exact(&mut body).unwrap();
    body
}

pub fn regs(resp: &[u8]) -> Vec<u16> {
    resp[2..].chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect()
}

#[test]
fn modbus_clients_read_the_register_map_through_an_alarm_and_only_ack_is_writable() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = format!("[[sink]]\ntype = \"modbus\"\nlisten = \"127.0.0.1:{port}\"\n[[sink]]\ntype = \"log\"\n");
    // A long fault (20–100 s) at 8x: the alarm stays up ~10 s of wall time for the clients.
    let w = d.path().join("long.wav");
    wav::write_pcm16(&w, RATE, 1, &machine(120.0, 5, |t| (20.0..100.0).contains(&t))).unwrap();
    let source = format!("{{ type = \"file\", path = \"{}\", realtime = true, speed = 8.0 }}", w.display());
    let cfg = write_config(d.path(), "monitor.toml", &source, DETECT, &sink);
    let m = Monitor::start(&cfg, &[]);
    // /metrics is served before the outbox opens and the Modbus server starts: wait for its line.
    assert!(m.wait_line(|l| l.contains("Modbus TCP server listening"), 60).is_some(), "{:?}", m.log());
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The Modbus server listens before the streams are up: wait for the ready bit.
    let mut tid = 1;
    let mut head = Vec::new();
    wait_for("the daemon's ready bit", 30, || {
        tid += 1;
        head = regs(&modbus(&mut sock, tid, &[3, 0, 0, 0, 3]));
        head[2] == 1
    });
    assert_eq!(head[1], 1, "one stream");
    // Wait for the alarm through the status register.
    let mut read_stream = |sock: &mut TcpStream| {
        tid += 1;
        regs(&modbus(sock, tid, &[3, 0, 10, 0, 9]))
    };
    wait_for("the alarm bit", 60, || read_stream(&mut sock)[0] & 1 == 1);
    let r = read_stream(&mut sock);
    let f32_of = |hi: u16, lo: u16| f32::from_bits((hi as u32) << 16 | lo as u32);
    let (score, thr) = (f32_of(r[3], r[4]), f32_of(r[5], r[6]));
    assert!(score > 0.0 && thr > 0.0, "{r:?}");
    // One block read is one snapshot: the scaled and the f32 forms agree (to f32 rounding).
    assert!((r[1] as f64 - score as f64 * 1000.0).abs() <= 1.0, "scaled score vs f32: {r:?}");
    assert!((r[2] as f64 - thr as f64 * 1000.0).abs() <= 1.0, "scaled threshold vs f32: {r:?}");
    assert_eq!(r[7], 1, "one alarm raised");
    assert_eq!(r[0] & 0b1000, 0, "not acknowledged yet");
    // Writes: score register refused, acknowledge accepted.
    assert_eq!(modbus(&mut sock, 90, &[6, 0, 11, 0, 7]), vec![0x86, 2]);
    assert_eq!(modbus(&mut sock, 91, &[6, 0, 18, 0, 1]), vec![6, 0, 18, 0, 1]);
    assert_eq!(read_stream(&mut sock)[0] & 0b1001, 0b1001, "alarm + acknowledged");
    // The register's acknowledge is an event for every sink, like the console's.
    m.wait_line(|l| l.contains("acknowledged by modbus"), 30).expect("an acknowledged event");
    // An independent client: pymodbus (Debian's python3-pymodbus), when installed.
    let script = format!(
        "from pymodbus.client import ModbusTcpClient\n\
         c = ModbusTcpClient('127.0.0.1', port={port}); assert c.connect()\n\
         r = c.read_holding_registers(10, 9, slave=1); assert not r.isError(), r\n\
         print('status', r.registers[0], 'alarms', r.registers[7])\n\
         w = c.write_register(12, 5, slave=1); print('write12', 'refused' if w.isError() else 'accepted')\n\
         c.close()\n"
    );
    // Debian's python3-pymodbus belongs to the system interpreter (another python3 may be first on PATH).
    let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
    match Command::new(python).args(["-c", &script]).output() {
        Ok(o) if o.status.success() => {
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(out.contains("alarms 1") && out.contains("write12 refused"), "{out}");
        }
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named") => {
            eprintln!("SKIP pymodbus part: python3-pymodbus is not installed")
        }
        Ok(o) => panic!("pymodbus client failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => eprintln!("SKIP pymodbus part: {e}"),
    }
    wait_for("the alarm to clear", 60, || read_stream(&mut sock)[0] & 1 == 0);
    let (status, _) = m.stop(20);
    assert!(status.success());
}

#[test]
fn validate_names_the_key_of_each_bad_sink() {
    let d = tempfile::tempdir().unwrap();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let sinks = format!(
        "[[sink]]\ntype = \"webhook\"\nurl = \"ftp://x\"\n\
         [[sink]]\ntype = \"webhook\"\nname = \"w2\"\nurl = \"http://127.0.0.1:1/a\"\nhmac_secret_env = \"MPDR_SURELY_UNSET_SECRET\"\n\
         [[sink]]\ntype = \"modbus\"\nlisten = \"{}\"\n\
         [[sink]]\ntype = \"exec\"\ncommand = [\"/nonexistent/notify\"]\n\
         [[sink]]\ntype = \"mqtt\"\nhost = \"127.0.0.1\"\ntls = true\n",
        busy.local_addr().unwrap()
    );
    let cfg = write_config(d.path(), "bad.toml", "{ type = \"device\" }", "{ threshold = 1.0 }", &sinks);
    let o = mpdr(&["validate", "--config", cfg.to_str().unwrap()]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for key in ["sink[0].url", "sink[1].hmac_secret_env", "sink[3].command", "sink[4].ca_file"] {
        assert!(out.contains(&format!(": {key}: ")), "{key} missing in:\n{out}");
    }
    assert!(out.contains("MPDR_SURELY_UNSET_SECRET"), "{out}");
    // A port held by someone (a running daemon, at `systemctl reload`) is not validate's
    // business: it binds nothing. The monitor itself refuses to start on it.
    assert!(!out.contains("sink[2].listen"), "{out}");
    let o = mpdr(&["validate", "--no-ports", "--config", cfg.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), out, "--no-ports is accepted and changes nothing");
}

#[test]
fn webhook_and_broker_down_for_the_whole_run_get_every_event_when_they_return() {
    let d = tempfile::tempdir().unwrap();
    let (web_port, mqtt_port) = (free_port(), free_port());
    // The subscriber's persistent session exists before the run: the broker queues for it.
    let Some(mut broker) = mosquitto(d.path(), mqtt_port) else {
        eprintln!("SKIP: mosquitto is not installed (make setup installs it)");
        return;
    };
    let got = subscriber(mqtt_port, "mpdr-test-late-sub");
    std::thread::sleep(Duration::from_millis(500));
    broker.kill().unwrap();
    broker.wait().unwrap();

    let sinks = format!(
        "[identity]\nbox = \"b1\"\n[[sink]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{web_port}/alarms\"\nretry = {{ initial_s = 0.2, max_s = 1.0 }}\n\
         [[sink]]\ntype = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {mqtt_port}\n\
         timeout_s = 2.0\nretry = {{ initial_s = 0.2, max_s = 1.0 }}\n"
    );
    let source = format!("{{ type = \"file\", path = \"{}\", realtime = false }}", anomaly_wav(d.path()).display());
    let cfg = write_config(d.path(), "monitor.toml", &source, DETECT, &sinks);
    let m = Monitor::start(&cfg, &[]);
    m.wait_metric("mpdr_stream_ended{stream=\"m\"}", |v| v == 1.0, 60);
    m.wait_metric("mpdr_sink_retries_total{sink=\"webhook\"}", |v| v >= 3.0, 30);
    m.wait_metric("mpdr_sink_retries_total{sink=\"mqtt\"}", |v| v >= 3.0, 30);
    // stream-up, raised and cleared wait in the outbox (the gauge refreshes every second).
    m.wait_metric("mpdr_sink_pending{sink=\"webhook\"}", |v| v == 3.0, 10);
    m.wait_metric("mpdr_sink_pending{sink=\"mqtt\"}", |v| v == 3.0, 10);

    // Both come back while the daemon runs: everything arrives, nothing is left pending.
    let hits = receiver(TcpListener::bind(("127.0.0.1", web_port)).unwrap(), 0);
    let mut broker = mosquitto(d.path(), mqtt_port).expect("mosquitto restarts");
    m.wait_metric("mpdr_sink_pending{sink=\"webhook\"}", |v| v == 0.0, 60);
    m.wait_metric("mpdr_sink_pending{sink=\"mqtt\"}", |v| v == 0.0, 60);
    assert_eq!(delivered_ids(&hits).len(), 3);
    let kinds = || event_kinds(&got);
    wait_for("the three events at the subscriber", 60, || kinds().len() == 3);

    // A reload that leaves the MQTT sink as it is keeps its broker session; changing the sink
    // makes a new one.
    let connects = |m: &Monitor| m.log().iter().filter(|l| l.contains("MQTT connected")).count();
    let before = connects(&m);
    m.signal("HUP");
    m.wait_metric("mpdr_config_reloads_total", |v| v == 1.0, 30);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(connects(&m), before, "the session survived the reload");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("timeout_s = 2.0", "timeout_s = 3.0")).unwrap();
    m.signal("HUP");
    m.wait_metric("mpdr_config_reloads_total", |v| v == 2.0, 30);
    wait_for("a new session for the changed sink", 30, || connects(&m) == before + 1);
    let (status, _) = m.stop(20);
    assert!(status.success());
    broker.kill().unwrap();
    broker.wait().unwrap();
}

#[test]
fn mqtt_telemetry_arrives_at_its_rate_and_home_assistant_discovery_is_retained() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some(mut broker) = mosquitto(d.path(), port) else {
        eprintln!("SKIP: mosquitto is not installed (make setup installs it)");
        return;
    };
    let got = subscriber(port, "mpdr-test-telemetry");
    std::thread::sleep(Duration::from_millis(300));
    let sink = format!(
        "[identity]\nbox = \"edge-7\"\n[[sink]]\ntype = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         telemetry_s = 0.5\ndiscovery = true\n"
    );
    let source = format!(
        "{{ type = \"file\", path = \"{}\", realtime = true, speed = 1.0, loop = true }}",
        anomaly_wav(d.path()).display()
    );
    let cfg = write_config(d.path(), "monitor.toml", &source, DETECT, &sink);
    let m = Monitor::start(&cfg, &[]);
    let telemetry = || {
        got.lock()
            .unwrap()
            .iter()
            .filter(|(t, _, _)| t == "mpdr/edge-7/m/telemetry")
            .map(|(_, p, _)| p.clone())
            .collect::<Vec<_>>()
    };
    wait_for("the first telemetry message", 30, || !telemetry().is_empty());
    let n0 = telemetry().len();
    std::thread::sleep(Duration::from_secs(5));
    let n = telemetry().len() - n0;
    assert!((7..=13).contains(&n), "{n} messages in 5 s at one per 0.5 s");
    let last: serde_json::Value = serde_json::from_str(telemetry().last().unwrap()).unwrap();
    assert_eq!((last["stream"].as_str(), last["box"].as_str()), (Some("m"), Some("edge-7")));
    assert!(last["threshold"].is_f64() && last["state"].is_string(), "{last}");
    for k in ["acknowledged", "shelved", "maintenance", "machine_off", "alarm"] {
        assert!(last[k].is_boolean(), "{k} in the telemetry: {last}");
    }
    assert_eq!(last["priority"], "medium");

    // A late subscriber gets the discovery configs, retained, valid JSON.
    let ha = subscriber_to(port, "mpdr-test-ha", "homeassistant/#");
    wait_for("five retained discovery configs", 30, || ha.lock().unwrap().len() >= 5);
    for (topic, payload, retained) in ha.lock().unwrap().iter() {
        assert!(retained, "{topic} retained");
        let v: serde_json::Value = serde_json::from_str(payload).unwrap();
        if topic.contains("/binary_sensor/") {
            // A problem sensor per stream, on while its alarm is raised.
            assert_eq!(topic, "homeassistant/binary_sensor/edge_7/m_problem/config");
            assert_eq!(v["device_class"], "problem", "{v}");
            assert!(v["value_template"].as_str().unwrap().contains("value_json.alarm"), "{v}");
            continue;
        }
        assert!(topic.starts_with("homeassistant/sensor/edge_7/m_") && topic.ends_with("/config"), "{topic}");
        // Numeric sensors keep long-term statistics in HA.
        let numeric = !topic.ends_with("m_state/config");
        assert_eq!(v["state_class"].as_str(), numeric.then_some("measurement"), "{topic}: {v}");
        assert_eq!(v["state_topic"], "mpdr/edge-7/m/telemetry");
        assert_eq!(v["availability_topic"], "mpdr/edge-7/status");
        assert!(v["unique_id"].as_str().unwrap().starts_with("mpdr_edge_7_m_"), "{v}");
        assert!(v["value_template"].as_str().unwrap().starts_with("{{ value_json."), "{v}");
    }
    let (status, _) = m.stop(20);
    assert!(status.success());
    broker.kill().unwrap();
    broker.wait().unwrap();
}

#[test]
fn operators_acknowledge_and_shelve_over_mqtt_command_topics_and_the_retained_state_says_so() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some(mut broker) = mosquitto(d.path(), port) else {
        eprintln!("SKIP: mosquitto is not installed (make setup installs it)");
        return;
    };
    let got = subscriber(port, "mpdr-test-cmd-sub");
    std::thread::sleep(Duration::from_millis(300));
    // The replay ends inside its alarm, which stays active.
    let w = d.path().join("ends-in-alarm.wav");
    wav::write_pcm16(&w, RATE, 1, &machine(40.0, 5, |t| t >= 20.0)).unwrap();
    let sink = format!(
        "[identity]\nbox = \"b2\"\n[[sink]]\ntype = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         username = \"mpdr-daemon\"\ncommands = true\n"
    );
    let source = format!("{{ type = \"file\", path = \"{}\", realtime = false }}", w.display());
    let cfg = write_config(d.path(), "monitor.toml", &source, DETECT, &sink);
    let m = Monitor::start(&cfg, &[]);
    let events = || -> Vec<serde_json::Value> {
        (got.lock().unwrap().iter())
            .filter(|(t, _, _)| t == "mpdr/b2/m/event")
            .filter_map(|(_, p, _)| serde_json::from_str(p).ok())
            .collect()
    };
    wait_for("the raised event", 90, || events().iter().any(|e| e["kind"] == "raised"));
    let raised = events().into_iter().find(|e| e["kind"] == "raised").unwrap();
    let up = events().into_iter().find(|e| e["kind"] == "stream-up").unwrap();
    let results = || -> Vec<serde_json::Value> {
        (got.lock().unwrap().iter())
            .filter(|(t, _, _)| t == "mpdr/b2/m/command/result")
            .filter_map(|(_, p, _)| serde_json::from_str(p).ok())
            .collect()
    };
    // An operator's client (another login, which the broker's ACL would allow to command).
    let mut o = rumqttc::MqttOptions::new("operator-dana", "127.0.0.1", port);
    o.set_credentials("dana", "x");
    let (client, mut conn) = rumqttc::Client::new(o, 10);
    std::thread::spawn(move || for _ in conn.iter() {});
    let command = |body: serde_json::Value| {
        let n = results().len();
        client.publish("mpdr/b2/m/command", rumqttc::QoS::AtLeastOnce, false, body.to_string()).unwrap();
        wait_for("the command's answer", 20, || results().len() > n);
        results()[n].clone()
    };
    let stale = command(serde_json::json!({ "action": "ack", "raised_id": up["id"], "by": "Dana" }));
    assert_eq!(stale["ok"], false, "a stream-up is not an alarm: {stale}");
    let ok = command(serde_json::json!({ "action": "ack", "raised_id": raised["id"], "by": "Dana" }));
    assert_eq!(ok["ok"], true, "{ok}");
    let shelf = command(serde_json::json!({ "action": "shelve", "minutes": 30, "reason": "noisy", "by": "Dana" }));
    assert_eq!(shelf["ok"], true, "{shelf}");
    wait_for("acknowledged and shelved events", 20, || {
        let k: Vec<String> = events().iter().map(|e| e["kind"].as_str().unwrap_or("").to_string()).collect();
        k.contains(&"acknowledged".into()) && k.contains(&"shelved".into())
    });
    let acked = events().into_iter().find(|e| e["kind"] == "acknowledged").unwrap();
    assert_eq!((acked["by"].as_str(), acked["raised_id"].as_str()), (Some("Dana via mqtt"), raised["id"].as_str()));
    // The retained state carries the flags.
    let state = || {
        (got.lock().unwrap().iter())
            .rev()
            .filter(|(t, _, _)| t == "mpdr/b2/m/state")
            .find_map(|(_, p, _)| serde_json::from_str::<serde_json::Value>(p).ok())
    };
    wait_for("the retained state with both flags", 20, || {
        state().is_some_and(|s| s["acknowledged"] == true && s["shelved"] == true && s["state"] == "alarm")
    });
    let (status, _) = m.stop(20);
    assert!(status.success());
    broker.kill().unwrap();
    broker.wait().unwrap();
}

#[test]
fn a_large_message_on_the_boxs_status_topic_does_not_drop_the_sinks_session() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some(mut broker) = mosquitto(d.path(), port) else {
        eprintln!("SKIP: mosquitto is not installed (make setup installs it)");
        return;
    };
    let sink = format!("[identity]\nbox = \"b3\"\n[[sink]]\ntype = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {port}\n");
    let w = d.path().join("normal.wav");
    wav::write_pcm16(&w, RATE, 1, &machine(5.0, 2, |_| false)).unwrap();
    let source =
        format!("{{ type = \"file\", path = \"{}\", realtime = true, speed = 1.0, loop = true }}", w.display());
    let cfg = write_config(d.path(), "monitor.toml", &source, DETECT, &sink);
    let m = Monitor::start(&cfg, &[]);
    m.wait_line(|l| l.contains("MQTT connected"), 30).expect("the sink connects");
    // A hostile client: 50 KiB, not retained, on the daemon's own status topic, five times.
    let mut o = rumqttc::MqttOptions::new("hostile", "127.0.0.1", port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut conn) = rumqttc::Client::new(o, 10);
    std::thread::spawn(move || for _ in conn.iter() {});
    for _ in 0..5 {
        client.publish("mpdr/b3/status", rumqttc::QoS::AtMostOnce, false, vec![b'x'; 50 * 1024]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(1));
    let lost = m.log().iter().filter(|l| l.contains("MQTT connection lost")).count();
    assert_eq!(lost, 0, "the session survived: {:#?}", m.log());
    let (status, _) = m.stop(20);
    assert!(status.success());
    broker.kill().unwrap();
    broker.wait().unwrap();
}
