//! Issue 26, the box: `validate` names what the box or the service would trip on (an MQTT host
//! holding its port, a GPU this libtorch cannot use, a window other than the calibrated one, a
//! file the service user cannot read); secrets through systemd credentials; the installed
//! config (no stream yet) starts and says why it is not ready; `mpdr doctor`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use mpdr::alarm::hmac::verify_webhook;
use mpdr::audio::wav;

use super::delivery::{anomaly_wav, delivered_ids, receiver, wait_for};
use super::hardening::config;
use super::monitor::{machine, model, write_config, Monitor, RATE};

fn validate(cfg: &Path, env: &[(&str, &Path)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mpdr"))
        .args(["validate", "--config", cfg.to_str().unwrap()])
        .env_remove("CREDENTIALS_DIRECTORY")
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn validate_names_each_box_mistake_with_its_key() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("normal.wav");
    wav::write_pcm16(&w, RATE, 1, &machine(3.0, 1, |_| false)).unwrap();
    // The shared bundle was calibrated for 2-s windows; this config decides on 1-s ones.
    let cfg = config(d.path(), &[("m", model())], &w);
    let base = std::fs::read_to_string(&cfg).unwrap();
    let o = validate(&cfg, &[]);
    let t = text(&o);
    assert!(o.status.success(), "a warning, not a problem: {t}");
    assert!(t.contains("warning: stream[0].detect.window_s") && t.contains("calibrated for 2 s"), "{t}");

    // A profile bundle (the shipped pump model, 4.99-s windows) decides on its own windows: the
    // default 10-s window_s is no mistake; a 2-s one cuts the evidence short and is named.
    let pump = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/pump");
    for (window, warned) in [(None, false), (Some(2.0), true)] {
        let detect = window.map(|w| format!("detect = {{ window_s = {w:?}, hop_s = 1.0 }}\n")).unwrap_or_default();
        let stream = format!(
            "[[stream]]\nname = \"p\"\nmodel = \"{}\"\nsource = {{ type = \"file\", path = \"{}\" }}\n{detect}",
            pump.display(),
            w.display()
        );
        std::fs::write(&cfg, stream).unwrap();
        let o = validate(&cfg, &[]);
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        assert_eq!(t.contains("stream[0].detect.window_s"), warned, "window_s {window:?}: {t}");
        if warned {
            assert!(t.contains("4.99-s profile windows") && t.contains("evidence"), "{t}");
        }
    }

    // A broker host with its port: reconnecting forever to a name that does not exist.
    for (host, want) in [("127.0.0.1:1883", "port = 1883"), ("mqtt://broker.lan", "URL")] {
        std::fs::write(&cfg, format!("{base}[[sink]]\ntype = \"mqtt\"\nhost = \"{host}\"\n")).unwrap();
        let o = validate(&cfg, &[]);
        let t = text(&o);
        assert!(!o.status.success() && t.contains("sink[0].host") && t.contains(want), "{host}: {t}");
    }

    // A GPU this (CPU) libtorch cannot use: a problem by name, not a service restarting.
    if !tch::utils::has_cuda() {
        std::fs::write(&cfg, format!("[scoring]\ndevice = \"cuda\"\n{base}")).unwrap();
        let o = validate(&cfg, &[]);
        let t = text(&o);
        assert!(!o.status.success() && t.contains("scoring.device"), "{t}");
    }
}

#[test]
fn a_token_and_a_webhook_secret_come_from_the_credentials_directory() {
    let d = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alarms", listener.local_addr().unwrap());
    let hits = receiver(listener, 0);
    let creds = d.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("webhook-secret"), "cr3d-s3cret\n").unwrap();
    std::fs::write(creds.join("console-token"), "t0ken-from-systemd\n").unwrap();
    let extra = format!(
        "token_file = \"credential:console-token\"\n[[sink]]\ntype = \"webhook\"\nurl = \"{url}\"\n\
         hmac_secret_file = \"credential:webhook-secret\"\nretry = {{ initial_s = 0.05, max_s = 0.2 }}\n"
    );
    let source = format!("{{ type = \"file\", path = \"{}\", realtime = false }}", anomaly_wav(d.path()).display());
    let detect = "{ window_s = 2.0, hop_s = 0.5, threshold = \"model\", on_delay_s = 3.0, off_delay_s = 4.0 }";
    let cfg = write_config(d.path(), "monitor.toml", &source, detect, &extra);

    // Outside systemd (no $CREDENTIALS_DIRECTORY): both keys named, and what provides them.
    let o = validate(&cfg, &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    for key in ["server.token_file", "sink[0].hmac_secret_file"] {
        assert!(t.contains(key), "{key}: {t}");
    }
    assert!(t.contains("CREDENTIALS_DIRECTORY") && t.contains("LoadCredential=webhook-secret"), "{t}");
    let o = validate(&cfg, &[("CREDENTIALS_DIRECTORY", &creds)]);
    assert!(o.status.success(), "{}", text(&o));

    // As systemd starts it: bodies signed with the credential's secret, the API opened by the
    // credential's token and by nothing else.
    let m = Monitor::start_env(&cfg, &[], &[("CREDENTIALS_DIRECTORY", &creds)]);
    wait_for("a delivered event", 90, || !delivered_ids(&hits).is_empty());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    for h in hits.lock().unwrap().iter() {
        let mut parts = h.signature.splitn(3, ' ');
        let (id, ts, sig) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        assert!(verify_webhook(b"cr3d-s3cret", id, ts, h.body.as_bytes(), sig, now, 600), "{}", h.signature);
        assert!(!verify_webhook(b"t0ken-from-systemd", id, ts, h.body.as_bytes(), sig, now, 600));
    }
    let body = b"{\"value\": 2.5, \"reason\": \"credential test\"}";
    let (code, answer) = super::util::http_call(m.addr(), "POST", "/api/streams/m/threshold", Some("wrong"), body);
    assert!(code == 401 || code == 403, "{code} {answer}");
    let (code, answer) =
        super::util::http_call(m.addr(), "POST", "/api/streams/m/threshold", Some("t0ken-from-systemd"), body);
    assert_eq!(code, 200, "{answer}");
}

#[test]
fn the_installed_config_without_a_stream_starts_and_readyz_says_why() {
    let d = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/monitor.service.toml"))
        .unwrap()
        .replace("@PREFIX@", "/opt/mpdr")
        .replace("127.0.0.1:9464", "127.0.0.1:0");
    assert!(shipped.contains("# [[stream]]"), "the stream stays commented out until someone adds one");
    let cfg = d.path().join("monitor.toml");
    std::fs::write(&cfg, format!("[state]\ndir = \"{}\"\n{shipped}", d.path().join("state").display())).unwrap();
    let o = validate(&cfg, &[]);
    let t = text(&o);
    assert!(o.status.success() && t.contains("warning: stream: no [[stream]] configured"), "{t}");
    let m = Monitor::start(&cfg, &[]);
    m.wait_line(|l| l.contains("\"monitoring\""), 60).unwrap_or_else(|| panic!("{:#?}", m.log()));
    let (code, body) = m.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("no [[stream]] configured"), "{body}");
    let (code, _) = m.get("/");
    assert_eq!(code, 200, "the console is served");
    assert!(
        m.log().iter().any(|l| l.contains("\"console\":\"http://127.0.0.1:")),
        "the console URL is logged: {:#?}",
        m.log()
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:")).map(|u| u.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Whether a user other than root could open `path` inside the service's sandbox: no hidden
/// home (the sandbox mounts empty tmpfs over /home, /root and /run/user) and every folder on
/// the way searchable by others. A checkout under /root cannot host this test.
fn reachable_by_the_service(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let hidden = ["/home", "/root", "/run/user"].iter().any(|h| path.starts_with(h));
    !hidden
        && path.ancestors().all(|a| std::fs::metadata(a).map(|m| m.permissions().mode() & 0o001 != 0).unwrap_or(false))
}

#[test]
fn validate_as_the_service_names_what_its_user_cannot_read() {
    let tools = ["unshare", "setpriv", "getent"].iter().all(|t| Command::new(t).arg("--help").output().is_ok());
    if !is_root() || !tools {
        eprintln!("SKIP: validate --as-service needs root and util-linux's unshare and setpriv");
        return;
    }
    let exe = Path::new(env!("CARGO_BIN_EXE_mpdr"));
    let torch = mpdr::device::loaded_torch().lib;
    if let Some(p) = std::iter::once(exe).chain(torch.as_deref()).find(|p| !reachable_by_the_service(p)) {
        eprintln!("SKIP: {} is where the service user cannot reach it (a home or a folder without o+x)", p.display());
        return;
    }
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let private = d.path().join("private");
    std::fs::create_dir(&private).unwrap();
    let bundle = super::hardening::copy_bundle(&private, "b");
    std::fs::set_permissions(&private, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let token = d.path().join("token");
    std::fs::write(&token, "root-only\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let w = d.path().join("normal.wav");
    wav::write_pcm16(&w, RATE, 1, &machine(3.0, 1, |_| false)).unwrap();
    std::fs::set_permissions(&w, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let cfg = config(d.path(), &[("m", &bundle)], &w);
    let text_cfg = std::fs::read_to_string(&cfg).unwrap().replace(
        "listen = \"127.0.0.1:0\"\n",
        &format!("listen = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n", token.display()),
    );
    std::fs::write(&cfg, text_cfg).unwrap();
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();

    // As root everything reads; as the service neither the model nor the token does.
    assert!(validate(&cfg, &[]).status.success());
    let as_service = |unit: &Path| {
        Command::new(env!("CARGO_BIN_EXE_mpdr"))
            .args(["validate", "--as-service", "--service-user", "nobody", "--unit"])
            .arg(unit)
            .args(["--config", cfg.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let unit = d.path().join("mpdr-monitor.service");
    std::fs::write(&unit, "[Service]\n").unwrap();
    let o = as_service(&unit);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("stream[0].model") && t.contains("server.token_file") && t.contains("Permission denied"), "{t}");

    // The same token handed over as a systemd credential (read as root, like LoadCredential=),
    // the model where the service can read it: it passes.
    std::fs::write(&unit, format!("[Service]\nLoadCredential=console-token:{}\n", token.display())).unwrap();
    std::fs::set_permissions(&private, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let text_cfg =
        std::fs::read_to_string(&cfg).unwrap().replace(&token.display().to_string(), "credential:console-token");
    std::fs::write(&cfg, text_cfg).unwrap();
    let o = as_service(&unit);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 credential(s)"), "{}", text(&o));
}

#[test]
fn doctor_reports_the_libtorch_this_binary_loaded_and_times_scoring() {
    let o = Command::new(env!("CARGO_BIN_EXE_mpdr"))
        .args(["doctor", "--bench", "--device", "cpu", "--seconds", "0.2", "--bundle"])
        .arg(model())
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("libtorch: ") && t.contains("version 2.13"), "{t}");
    if !tch::utils::has_cuda() {
        assert!(t.contains("libtorch build: cpu") && t.contains("GPUs visible: 0"), "{t}");
    }
    let benches: Vec<&str> = t.lines().filter(|l| l.starts_with("bench cpu")).collect();
    assert_eq!(benches.len(), 2, "the bundle and the frame-level AE: {t}");
    for b in benches {
        let rate: f64 = b.split(": ").nth(2).and_then(|r| r.split(' ').next()).and_then(|r| r.parse().ok()).unwrap();
        assert!(rate > 0.0 && b.contains("real-time streams"), "{b}");
    }
}

#[test]
fn a_missing_sound_card_leaves_the_json_log_clean_and_says_so() {
    let d = tempfile::tempdir().unwrap();
    let source = "{ type = \"device\", device = \"default\" }";
    let detect = "{ window_s = 2.0, hop_s = 0.5, threshold = \"model\" }";
    let cfg = write_config(d.path(), "monitor.toml", source, detect, "");
    let m = Monitor::start(&cfg, &[]);
    // A box with a sound card opens it: nothing to check there.
    if Path::new("/dev/snd").exists() {
        eprintln!("SKIP: this box has a sound card");
        return;
    }
    m.wait_line(|l| l.contains("stream down"), 60).unwrap_or_else(|| panic!("{:#?}", m.log()));
    std::thread::sleep(std::time::Duration::from_secs(2)); // a retry or two
    let log = m.log();
    for l in &log {
        assert!(serde_json::from_str::<serde_json::Value>(l).is_ok(), "not a JSON line (libasound?): {l}");
    }
    assert!(log.iter().any(|l| l.contains("no sound card: /dev/snd does not exist")), "{log:#?}");
}
