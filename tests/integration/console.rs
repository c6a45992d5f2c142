//! The live console in a real browser (issue 16): the daemon on a synthetic plant with a
//! developing fault, its console driven by headless Chromium through playwright-core
//! (`tests/console/drive.mjs`), a real webhook receiver; then the API's refusals of bad input.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::monitor::Monitor;
use super::util::{http_call as call, mpdr};

/// playwright-core in `target/browser` (npm), or why not.
fn playwright() -> Result<PathBuf, String> {
    if !Path::new("/usr/bin/chromium").exists() {
        return Err("Debian's chromium is not installed (make setup installs it)".into());
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser");
    if !dir.join("node_modules/playwright-core").is_dir() {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let o = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "playwright-core@1.65.1"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("npm: {e}"))?;
        if !o.status.success() {
            return Err(format!("npm install playwright-core failed: {}", String::from_utf8_lossy(&o.stderr)));
        }
    }
    let script = dir.join("drive.mjs");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/drive.mjs"), &script)
        .map_err(|e| e.to_string())?;
    Ok(script)
}

/// A webhook receiver: its URL and the events it got, in order.
fn receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    (url, super::util::json_receiver(listener))
}

fn plant(dir: &Path, hook: &str) -> PathBuf {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let synth = |machine: &str, extra: &[&str]| {
        let out = dir.join(format!("{machine}.wav"));
        let mut args = vec!["synth", "--machine", machine, "--instance", "1000", "--seed", "9", "--seconds", "150"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", out.to_str().unwrap()]);
        assert!(mpdr(&args).status.success());
        out
    };
    let fan = synth("fan", &["--fault", "bearing", "--fault-at", "20", "--ramp", "10"]);
    let pump = synth("pump", &[]);
    std::fs::write(dir.join("token"), "console-test-token\n").unwrap();
    let cfg = dir.join("monitor.toml");
    let stream = |name: &str, wav: &Path| {
        format!(
            "[[stream]]\nname = \"{name}\"\nmodel = \"{}\"\nsource = {{ type = \"file\", path = \"{}\", realtime = true, speed = 3.0 }}\n\
             detect = {{ window_s = 5.0, hop_s = 1.0, on_delay_s = 3.0, off_delay_s = 5.0, threshold = \"model\" }}\n",
            models.join(name).display(),
            wav.display()
        )
    };
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"token\"\n{}{}[[sink]]\ntype = \"log\"\n[[sink]]\ntype = \"webhook\"\nurl = \"{hook}\"\n",
            stream("fan", &fan),
            stream("pump", &pump)
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn the_console_shows_the_plant_live_and_acknowledges_and_tunes_in_a_real_browser() {
    let script = match playwright() {
        Ok(s) => s,
        Err(why) => {
            eprintln!("SKIP: {why}");
            return;
        }
    };
    let d = tempfile::tempdir().unwrap();
    let (hook, got) = receiver();
    let cfg = plant(d.path(), &hook);
    let m = Monitor::start(&cfg, &[]);
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshot.png");
    let narrow = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshot-420.png");
    let o = Command::new("node")
        .arg(&script)
        .args([
            &format!("http://{}/", m.addr()),
            "console-test-token",
            "2",
            "fan",
            shot.to_str().unwrap(),
            narrow.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{out}\n{}\n{:#?}", String::from_utf8_lossy(&o.stderr), m.log());
    let seen: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(seen["streams"], serde_json::json!(["fan", "pump"]));
    assert!(seen["refused"].as_str().unwrap().contains("refused (401)"), "{seen}");
    // Errors and successes look different.
    assert!(seen["refused_class"].as_str().unwrap().contains("err"), "{seen}");
    assert!(seen["acknowledged_class"].as_str().unwrap().contains("ok"), "{seen}");
    assert_eq!(seen["ack_buttons"], 1, "only the active alarm can be acknowledged: {seen}");
    // The override is visible: manual value, the model's, who; and it can be reverted.
    let badge = seen["badge"].as_str().unwrap();
    assert!(badge.contains("model") && badge.contains("Dana (shared-token)"), "{badge}");
    assert_eq!(seen["revert_button"], 1, "{seen}");
    assert!(seen["sinks"].as_array().unwrap().iter().any(|s| s == "webhook:ok"), "{seen}");
    // A phone's width: nothing cut off, events below the streams.
    let n = &seen["narrow"];
    assert!(n["scroll_width"].as_u64() <= n["inner_width"].as_u64(), "horizontal overflow at 420 px: {n}");
    assert_eq!(n["overflowing"], serde_json::json!([]), "{n}");
    assert_eq!(n["events_below"], true, "{n}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "a screenshot of the console");
    assert!(std::fs::metadata(&narrow).unwrap().len() > 10_000, "a screenshot at 420 px");

    // The acknowledge and the threshold change reached the webhook as events.
    let until = Instant::now() + Duration::from_secs(30);
    let kinds = || got.lock().unwrap().iter().map(|e| e["kind"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>();
    while !(kinds().contains(&"acknowledged".into()) && kinds().contains(&"threshold-changed".into()))
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let k = kinds();
    assert!(k.contains(&"acknowledged".to_string()) && k.contains(&"threshold-changed".to_string()), "{k:?}");
    let changed = got.lock().unwrap().iter().find(|e| e["kind"] == "threshold-changed").cloned().unwrap();
    assert_eq!(changed["stream"], "fan");
    assert_eq!(changed["threshold"], 123.25);
    assert_eq!(changed["by"], "Dana (shared-token)", "{changed}");
    let acked = got.lock().unwrap().iter().find(|e| e["kind"] == "acknowledged").cloned().unwrap();
    assert!(acked["raised_id"].is_string(), "{acked}");
    // Persisted in the state folder; applied in the metrics.
    let saved = std::fs::read_to_string(d.path().join("state/thresholds.json")).unwrap();
    assert!(saved.contains("123.25"), "{saved}");
    assert_eq!(m.metric("mpdr_threshold{stream=\"fan\"}"), Some(123.25));
    let (status, _) = m.stop(30);
    assert!(status.success());

    // A restart keeps the runtime threshold (the config's setting did not change), says so in
    // its log, and DELETE reverts it to the model's.
    let m = Monitor::start(&cfg, &[]);
    assert_eq!(m.metric("mpdr_threshold{stream=\"fan\"}"), Some(123.25));
    assert!(m.wait_line(|l| l.contains("threshold override in effect"), 10).is_some());
    let (code, text) = call(m.addr(), "DELETE", "/api/streams/fan/threshold", Some("console-test-token"), b"");
    assert_eq!(code, 200, "{text}");
    let (_, text) = call(m.addr(), "GET", "/api/streams", None, b"");
    let fan = serde_json::from_str::<serde_json::Value>(&text).unwrap()[0].clone();
    assert_eq!(fan["threshold_source"], "model", "{fan}");
    assert_ne!(fan["threshold"].as_f64(), Some(123.25));
    let (status, _) = m.stop(30);
    assert!(status.success());
}

#[test]
fn the_api_refuses_bad_input_with_json_errors_and_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (hook, got) = receiver();
    let cfg = plant(d.path(), &hook);
    let m = Monitor::start(&cfg, &[]);
    let before = m.metric("mpdr_threshold{stream=\"fan\"}").unwrap();
    let tok = Some("console-test-token");
    /// (method, path, token, body, the status it must get)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        ("POST", "/api/streams/fan/threshold", None, br#"{"value": 1.0}"#.to_vec(), 401),
        ("POST", "/api/streams/fan/threshold", Some("wrong"), br#"{"value": 1.0}"#.to_vec(), 401),
        ("POST", "/api/streams/nope/threshold", tok, br#"{"value": 1.0}"#.to_vec(), 404),
        ("POST", "/api/streams/fan/threshold", tok, br#"{"value": "high"}"#.to_vec(), 400),
        ("POST", "/api/streams/fan/threshold", tok, br#"{"value": 1e999}"#.to_vec(), 400),
        ("POST", "/api/streams/fan/threshold", tok, b"not json".to_vec(), 400),
        ("POST", "/api/streams/fan/threshold", tok, vec![b' '; 64 * 1024], 413),
        ("POST", "/api/events/01a00000-0000-7000-8000-000000000000/ack", tok, b"{}".to_vec(), 404),
        ("POST", "/api/streams/fan/threshold", tok, br#"{"value": -5}"#.to_vec(), 400),
        ("POST", "/api/streams/fan/threshold", tok, br#"{"value": 0}"#.to_vec(), 400),
        ("DELETE", "/api/streams/fan/threshold", tok, vec![], 409),
        ("POST", "/api/streams/fan/shelve", tok, br#"{"minutes": 100000, "reason": "x"}"#.to_vec(), 400),
        ("DELETE", "/api/streams/fan/shelve", tok, vec![], 409),
        ("GET", "/api/streams/nope/false_alarms?threshold=1", None, vec![], 404),
        ("GET", "/api/streams/fan/false_alarms?threshold=abc", None, vec![], 400),
        ("GET", "/api/nothing", None, vec![], 404),
        ("GET", "/evidence/../../etc/passwd", None, vec![], 404),
    ];
    for (method, path, token, body, want) in cases {
        let (status, text) = call(m.addr(), method, path, token, &body);
        assert_eq!(status, want, "{method} {path}: {text}");
        if want != 413 {
            let v: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
            assert!(v["error"].is_string(), "{text}");
        }
    }
    assert_eq!(m.metric("mpdr_threshold{stream=\"fan\"}"), Some(before), "nothing changed");
    assert!(!d.path().join("state/thresholds.json").exists());
    assert!(!got.lock().unwrap().iter().any(|e| e["kind"] == "threshold-changed" || e["kind"] == "acknowledged"));
    let (code, text) = call(m.addr(), "GET", "/api/streams", None, b"");
    assert_eq!(code, 200);
    let streams: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(streams.as_array().unwrap().len(), 2);
    let (status, _) = m.stop(30);
    assert!(status.success());
}
