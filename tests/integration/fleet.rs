//! A plant of three boxes on one real mosquitto (three `mpdr monitor` processes, their own
//! state folders and identities): `mpdr plant --json` shows every box, the alarm on the right
//! box and stream; a box killed with SIGKILL turns `offline` (its Last Will); after a broker
//! restart every box is back without a restart of the daemons, and every event of every
//! outbox reached a subscriber.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mpdr::audio::wav;

use super::delivery::{free_port, mosquitto, subscriber_to, wait_for};
use super::monitor::{machine, model, Monitor, RATE};
use super::util::mpdr;

/// `box`'s config: its identity, its own state folder, an MQTT sink to `port`, and one
/// looping file stream per (name, wav).
fn config(dir: &Path, name: &str, port: u16, streams: &[(&str, &Path)], telemetry: bool) -> PathBuf {
    let mut t = format!(
        "[identity]\nbox = \"{name}\"\nsite = \"north\"\n[server]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = \"{}\"\n\
         [[sink]]\ntype = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {port}\ntimeout_s = 2.0\n\
         retry = {{ initial_s = 0.2, max_s = 1.0 }}\n{}",
        dir.join(format!("state-{name}")).display(),
        if telemetry { "telemetry_s = 0.5\n" } else { "" }
    );
    for (stream, w) in streams {
        t += &format!(
            "[[stream]]\nname = \"{stream}\"\nmodel = \"{}\"\n\
             source = {{ type = \"file\", path = \"{}\", realtime = true, speed = 4.0, loop = true }}\n\
             detect = {{ window_s = 2.0, hop_s = 0.5, threshold = \"model\", on_delay_s = 3.0, off_delay_s = 4.0 }}\n",
            model().display(),
            w.display()
        );
    }
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, t).unwrap();
    p
}

/// What `mpdr plant --json` sees now.
fn plant(port: u16) -> serde_json::Value {
    let o = mpdr(&["plant", "--mqtt", &format!("127.0.0.1:{port}"), "--json", "--wait-s", "1"]);
    assert!(o.status.success(), "mpdr plant: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn status(p: &serde_json::Value, name: &str) -> String {
    let b = p["boxes"].as_array().unwrap().iter().find(|b| b["box"] == name);
    b.and_then(|b| b["status"].as_str()).unwrap_or("absent").to_string()
}

fn wait_plant(port: u16, what: &str, secs: u64, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let p = plant(port);
        if ok(&p) {
            return p;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}; the plant: {p:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Ids of every event in a daemon's outbox.
fn outbox_ids(dir: &Path, name: &str) -> BTreeSet<String> {
    let state = dir.join(format!("state-{name}"));
    let o = mpdr(&["alarms", "list", "--json", "--limit", "100000", "--state-dir", state.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect()
}

fn received_ids(got: &Mutex<Vec<(String, String, bool)>>) -> BTreeSet<String> {
    (got.lock().unwrap().iter())
        .filter_map(|(_, p, _)| serde_json::from_str::<serde_json::Value>(p).ok())
        .filter_map(|v| v["id"].as_str().map(String::from))
        .collect()
}

fn stop_broker(b: &mut std::process::Child) {
    // SIGTERM: mosquitto saves its sessions (the subscriber's queue) before it exits.
    let _ = Command::new("kill").args(["-TERM", &b.id().to_string()]).status();
    let _ = b.wait();
}

#[test]
fn three_boxes_on_one_broker_one_plant_view_last_will_and_a_broker_restart() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker_dir = d.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let Some(mut broker) = mosquitto(&broker_dir, port) else {
        eprintln!("SKIP: mosquitto is not installed (make setup installs it)");
        return;
    };
    // A control room's persistent subscriber to every event of the plant.
    let got = subscriber_to(port, "control-room", "mpdr/+/+/event");
    std::thread::sleep(Duration::from_millis(300));
    let normal = d.path().join("normal.wav");
    wav::write_pcm16(&normal, RATE, 1, &machine(30.0, 5, |_| false)).unwrap();
    // 40 s looped at 4x: a fault from 10 s to 30 s of every loop (an alarm raised and cleared
    // every 10 s of wall time).
    let faulty = d.path().join("faulty.wav");
    wav::write_pcm16(&faulty, RATE, 1, &machine(40.0, 6, |t| (10.0..30.0).contains(&t))).unwrap();
    let cfg_a = config(d.path(), "box-a", port, &[("fan", &normal)], true);
    let cfg_b = config(d.path(), "box-b", port, &[("fan", &normal), ("pump", &faulty)], false);
    let cfg_c = config(d.path(), "box-c", port, &[("press", &normal)], false);
    let a = Monitor::start(&cfg_a, &[]);
    let b = Monitor::start(&cfg_b, &[]);
    let mut c = Monitor::start(&cfg_c, &[]);

    // Every box online; the alarm on box-b's pump and nowhere else.
    let p = wait_plant(port, "three boxes online and box-b/pump in alarm", 90, |p| {
        ["box-a", "box-b", "box-c"].iter().all(|n| status(p, n) == "online")
            && p["boxes"][1]["streams"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["stream"] == "pump" && s["state"] == "alarm"))
    });
    assert_eq!(p["total_boxes"], 3, "{p:#}");
    assert_eq!(p["boxes"][1]["box"], "box-b");
    assert_eq!(p["boxes"][1]["site"], "north");
    for bx in p["boxes"].as_array().unwrap() {
        for s in bx["streams"].as_array().unwrap() {
            let here = bx["box"] == "box-b" && s["stream"] == "pump";
            assert!(here || s["state"] != "alarm", "an alarm on {}/{}: {p:#}", bx["box"], s["stream"]);
        }
    }
    let pump = p["boxes"][1]["streams"].as_array().unwrap().iter().find(|s| s["stream"] == "pump").unwrap().clone();
    assert_eq!(pump["last_event"], "raised", "{pump}");
    assert!(pump["age_s"].as_f64().is_some_and(|a| (0.0..60.0).contains(&a)), "{pump}");

    // A hung box (SIGSTOP: its TCP link stays up, so no Last Will yet) goes quiet: its
    // telemetry stops and the plant flags it; it recovers when it runs again.
    assert_eq!(p["boxes"][0]["telemetry_s"], 0.5, "{p:#}");
    assert_eq!(p["boxes"][0]["stale"], false);
    let signal = |m: &Monitor, sig: &str| Command::new("kill").args([sig, &m.child.id().to_string()]).status().unwrap();
    signal(&a, "-STOP");
    let stopped = Instant::now();
    let p = wait_plant(port, "box-a quiet", 14, |p| p["boxes"][0]["stale"] == true);
    eprintln!("box-a flagged quiet {:.1} s after SIGSTOP", stopped.elapsed().as_secs_f64());
    assert_eq!(status(&p, "box-a"), "online", "not yet offline: the link is up");
    signal(&a, "-CONT");
    wait_plant(port, "box-a talking again", 30, |p| p["boxes"][0]["stale"] == false && status(p, "box-a") == "online");

    // SIGKILL one box: its Last Will turns it offline, the others stay online.
    c.child.kill().unwrap();
    c.child.wait().unwrap();
    let killed = Instant::now();
    let p = wait_plant(port, "box-c offline by its Last Will", 30, |p| status(p, "box-c") == "offline");
    let bc = p["boxes"].as_array().unwrap().iter().find(|b| b["box"] == "box-c").unwrap();
    // A monitoring system's check: exit 2 and what is wrong.
    let o = mpdr(&["plant", "--mqtt", &format!("127.0.0.1:{port}"), "--check", "--wait-s", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.lines().any(|l| l == "box-c: offline (lost)"), "{err}");
    assert_eq!(bc["reason"], "lost", "{bc}");
    eprintln!(
        "box-c seen offline {:.1} s after SIGKILL (one `mpdr plant --json --wait-s 1` is ~1 s)",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!((status(&p, "box-a"), status(&p, "box-b")), ("online".into(), "online".into()));
    // systemd would restart it: the same config and state folder.
    c = Monitor::start(&cfg_c, &[]);
    wait_plant(port, "box-c back online", 30, |p| status(p, "box-c") == "online");

    // The broker goes away until box-b has an event it cannot deliver, then comes back; the
    // daemons keep running.
    stop_broker(&mut broker);
    b.wait_metric("mpdr_sink_pending{sink=\"mqtt\"}", |v| v >= 1.0, 60);
    let mut broker = mosquitto(&broker_dir, port).expect("mosquitto restarts");
    let restarted = Instant::now();
    wait_plant(port, "every box online again after the broker restart", 60, |p| {
        ["box-a", "box-b", "box-c"].iter().all(|n| status(p, n) == "online")
    });
    eprintln!("every box online {:.1} s after the broker restart", restarted.elapsed().as_secs_f64());
    for m in [&a, &b, &c] {
        m.wait_metric("mpdr_sink_pending{sink=\"mqtt\"}", |v| v == 0.0, 60);
    }
    eprintln!("every outbox drained {:.1} s after the broker restart", restarted.elapsed().as_secs_f64());
    // No event lost: every event in every outbox reached the control room.
    let mut all = BTreeSet::new();
    for n in ["box-a", "box-b", "box-c"] {
        let ids = outbox_ids(d.path(), n);
        assert!(!ids.is_empty(), "{n} has events");
        all.extend(ids);
    }
    wait_for("every event at the control room", 60, || all.is_subset(&received_ids(&got)));
    let events: Vec<serde_json::Value> =
        got.lock().unwrap().iter().filter_map(|(_, p, _)| serde_json::from_str(p).ok()).collect();
    assert!(events.iter().any(|e| e["box"] == "box-b" && e["stream"] == "pump" && e["kind"] == "raised"));
    assert!(events.iter().all(|e| e["site"] == "north"), "every event says its site");

    // A second daemon that (mis)takes box-a's name: box-a says so in its log.
    let twin_cfg = d.path().join("twin.toml");
    let twin_text = std::fs::read_to_string(&cfg_a).unwrap().replace("state-box-a", "state-twin");
    std::fs::write(&twin_cfg, twin_text).unwrap();
    let twin = Monitor::start(&twin_cfg, &[]);
    assert!(
        a.wait_line(|l| l.contains("another daemon publishes as this box"), 30).is_some(),
        "box-a warns of its twin: {:?}",
        a.log().iter().rev().take(5).collect::<Vec<_>>()
    );
    let (st, _) = twin.stop(20);
    assert!(st.success());

    for m in [a, b, c] {
        let (st, _) = m.stop(20);
        assert!(st.success());
    }
    let p = plant(port);
    assert!(["box-a", "box-b", "box-c"].iter().all(|n| status(&p, n) == "offline"), "a clean stop says so: {p:#}");
    stop_broker(&mut broker);
}

/// A CA and a server certificate for 127.0.0.1 / localhost (openssl), in `dir`: (ca, cert, key).
fn certificates(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let run = |args: &[&str]| {
        Command::new("openssl").args(args).current_dir(dir).output().ok().filter(|o| o.status.success())
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=mpdr test CA",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ])?;
    std::fs::write(dir.join("san.ext"), "subjectAltName = IP:127.0.0.1, DNS:localhost\n").ok()?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ])?;
    Some((dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key")))
}

#[test]
fn a_box_and_the_plant_view_speak_tls_with_a_password_to_the_broker() {
    let d = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = certificates(d.path()) else {
        eprintln!("SKIP: openssl cannot make test certificates");
        return;
    };
    let Some(bin) = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].into_iter().find(|p| Path::new(p).exists()) else {
        eprintln!("SKIP: mosquitto is not installed (make setup installs it)");
        return;
    };
    // Users and passwords as a plant's broker has them: mpdr (the boxes) and control (the view).
    let passwords = d.path().join("passwd");
    for (i, (user, pass)) in [("mpdr", "box-secret"), ("control", "view-secret")].into_iter().enumerate() {
        let create = if i == 0 { vec!["-c"] } else { vec![] };
        let ok = Command::new("mosquitto_passwd").args(create).arg("-b").arg(&passwords).args([user, pass]).status();
        if !ok.is_ok_and(|s| s.success()) {
            eprintln!("SKIP: mosquitto_passwd is not installed (it comes with mosquitto)");
            return;
        }
    }
    let port = free_port();
    let conf = d.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            // `user root`: started as root it would drop to its own user, who cannot read the key.
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nuser root\ncafile {}\ncertfile {}\nkeyfile {}\n",
            passwords.display(),
            ca.display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let mut broker = Command::new(bin).arg("-c").arg(&conf).stderr(std::process::Stdio::null()).spawn().unwrap();
    wait_for("the TLS listener", 10, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let normal = d.path().join("normal.wav");
    wav::write_pcm16(&normal, RATE, 1, &machine(10.0, 5, |_| false)).unwrap();
    let cfg = config(d.path(), "box-t", port, &[("fan", &normal)], false);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let secret = d.path().join("mqtt.password");
    std::fs::write(&secret, "box-secret\n").unwrap();
    let text = text.replace(
        "host = \"127.0.0.1\"\n",
        &format!(
            "host = \"127.0.0.1\"\ntls = true\nca_file = \"{}\"\nusername = \"mpdr\"\npassword_file = \"{}\"\n",
            ca.display(),
            secret.display()
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    let m = Monitor::start(&cfg, &[]);
    let plant_as = |ca: &Path, password: &str| {
        let addr = format!("127.0.0.1:{port}");
        Command::new(env!("CARGO_BIN_EXE_mpdr"))
            .args(["plant", "--mqtt", &addr, "--json", "--wait-s", "1", "--ca-file", ca.to_str().unwrap()])
            .args(["--username", "control", "--password-env", "MPDR_TEST_MQTT_PASSWORD"])
            .env("MPDR_TEST_MQTT_PASSWORD", password)
            .output()
            .unwrap()
    };
    let plant_tls = |ca: &Path| plant_as(ca, "view-secret");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let o = plant_tls(&ca);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        if status(&p, "box-t") == "online" {
            break;
        }
        assert!(Instant::now() < until, "box-t online over TLS: {p:#}; {:?}", m.log());
        std::thread::sleep(Duration::from_millis(300));
    }
    // Another CA than the broker's: refused, one line naming the broker.
    let (other, _, _) = certificates(&{
        let o = d.path().join("other");
        std::fs::create_dir_all(&o).unwrap();
        o
    })
    .unwrap();
    let o = plant_tls(&other);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("cannot reach the broker"), "{err}");
    // A wrong password: refused, one line.
    let o = plant_as(&ca, "guess");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("cannot reach the broker") && err.lines().count() == 1, "{err}");
    let (st, _) = m.stop(20);
    assert!(st.success());
    let _ = broker.kill();
    let _ = broker.wait();
}

/// `payload` published retained at QoS 1 on `topic` as `user`; whether the broker took the
/// connection (a refused publish is acknowledged and dropped: MQTT 3.1.1 has no way to say no).
fn publish_as(port: u16, user: &str, password: &str, topic: &str, payload: &str) -> bool {
    let mut o = rumqttc::MqttOptions::new(format!("pub-{user}-{}", std::process::id()), "127.0.0.1", port);
    o.set_credentials(user, password);
    let (client, mut conn) = rumqttc::Client::new(o, 10);
    client.publish(topic, rumqttc::QoS::AtLeastOnce, true, payload.as_bytes().to_vec()).unwrap();
    for n in conn.iter().take(20) {
        match n {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                let _ = client.disconnect();
                return true;
            }
            Err(_) => return false,
            _ => {}
        }
    }
    false
}

#[test]
fn a_broker_acl_per_box_refuses_a_spoofed_retained_event_and_the_plant_view_keeps_the_alarm() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some(bin) = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].into_iter().find(|p| Path::new(p).exists()) else {
        eprintln!("SKIP: no mosquitto");
        return;
    };
    let pw = d.path().join("passwords");
    for (i, (user, secret)) in [("box1", "s1"), ("evil", "s2"), ("plant", "s3")].iter().enumerate() {
        let mut c = std::process::Command::new("mosquitto_passwd");
        if i == 0 {
            c.arg("-c");
        }
        assert!(c.args(["-b", pw.to_str().unwrap(), user, secret]).status().unwrap().success());
    }
    // The README's ACL: every box writes only under its own name; the plant viewer reads all.
    let acl = d.path().join("acl");
    std::fs::write(&acl, "pattern write mpdr/%u/#\npattern read mpdr/%u/#\nuser plant\ntopic read mpdr/#\n").unwrap();
    let conf = d.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {}\nuser root\n",
            pw.display(),
            acl.display()
        ),
    )
    .unwrap();
    let mut broker = std::process::Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let now = mpdr::alarm::deliver::now_ms();
    let status = format!(r#"{{"status":"online","box":"box1","streams":["fan"],"unix_s":{}}}"#, now / 1000);
    assert!(publish_as(port, "box1", "s1", "mpdr/box1/status", &status));
    let alarm = format!(r#"{{"state":"alarm","kind":"raised","unix_ms":{now}}}"#);
    assert!(publish_as(port, "box1", "s1", "mpdr/box1/fan/state", &alarm));
    // Another box's credentials, writing box1's topics: the broker drops it.
    let spoof = format!(r#"{{"state":"normal","kind":"cleared","unix_ms":{}}}"#, now + 1000);
    publish_as(port, "evil", "s2", "mpdr/box1/fan/state", &spoof);
    publish_as(port, "evil", "s2", "mpdr/box1/status", r#"{"status":"offline","reason":"lost"}"#);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mpdr"))
        .args(["plant", "--mqtt", &format!("127.0.0.1:{port}"), "--username", "plant", "--password-env", "PLANT_PW"])
        .args(["--check", "--wait-s", "3"])
        .env("PLANT_PW", "s3")
        .output()
        .unwrap();
    let _ = broker.kill();
    let _ = broker.wait();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("box1/fan: alarm"), "the spoofed clear was refused by the broker: {err}");
    assert!(!err.contains("offline"), "{err}");
}
