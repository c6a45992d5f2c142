//! Faults injected into a running `mpdr monitor` (issue 15): bundles that change or break
//! under it, a model that cannot score, a corrupted outbox. Real processes, real files.

use std::path::{Path, PathBuf};

use mpdr::audio::wav;
use sha2::{Digest, Sha256};

use super::monitor::{machine, model, Monitor, RATE};
use super::util::mpdr;

/// A copy of the test bundle in `dir`.
pub fn copy_bundle(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for f in std::fs::read_dir(model()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
    }
    to
}

/// Rewrite the float32 weights of `bundle`'s energy with `edit`, and its checksum in the
/// manifest with them: a bundle that passes the checksum and differs in its weights.
fn edit_weights(bundle: &Path, edit: impl Fn(&mut [f32])) {
    let path = bundle.join("energy.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let old = format!("{:x}", Sha256::digest(&bytes));
    let start = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut floats: Vec<f32> =
        bytes[start..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    edit(&mut floats);
    for (c, f) in bytes[start..].chunks_exact_mut(4).zip(&floats) {
        c.copy_from_slice(&f.to_le_bytes());
    }
    std::fs::write(&path, &bytes).unwrap();
    let new = format!("{:x}", Sha256::digest(&bytes));
    let manifest = bundle.join("manifest.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains(&old));
    std::fs::write(&manifest, text.replace(&old, &new)).unwrap();
}

pub fn config(dir: &Path, streams: &[(&str, &Path)], wav: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut text = String::from("[server]\nlisten = \"127.0.0.1:0\"\n");
    for (name, bundle) in streams {
        text += &format!(
            "[[stream]]\nname = \"{name}\"\nmodel = \"{}\"\nsource = {{ type = \"file\", path = \"{}\", realtime = true, speed = 5.0, loop = true }}\ndetect = {{ window_s = 1.0, hop_s = 0.5, threshold = \"model\" }}\n",
            bundle.display(),
            wav.display()
        );
    }
    let p = dir.join("monitor.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn model_info(m: &Monitor) -> String {
    m.get("/metrics").1.lines().find(|l| l.starts_with("mpdr_model_info")).unwrap_or_default().to_string()
}

#[test]
fn sighup_swaps_in_a_changed_bundle_and_keeps_the_old_one_when_the_new_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let bundle = copy_bundle(d.path(), "bundle");
    let w = d.path().join("normal.wav");
    wav::write_pcm16(&w, RATE, 1, &machine(5.0, 7, |_| false)).unwrap();
    let cfg = config(d.path(), &[("m", &bundle)], &w);
    let m = Monitor::start(&cfg, &[]);
    m.wait_metric("mpdr_window_decisions_total{stream=\"m\"}", |v| v >= 2.0, 30);
    let before = model_info(&m);
    let original = std::fs::read(bundle.join("energy.safetensors")).unwrap();
    let manifest = std::fs::read(bundle.join("manifest.toml")).unwrap();

    // A NaN weight with its checksum updated: refused, the running model goes on.
    edit_weights(&bundle, |w| w[3] = f32::NAN);
    m.signal("HUP");
    m.wait_metric("mpdr_config_reload_failures_total", |v| v == 1.0, 60);
    let log = m.log();
    assert!(log.iter().any(|l| l.contains("reload rejected") && l.contains("NaN")), "{log:#?}");
    let n = m.metric("mpdr_window_decisions_total{stream=\"m\"}").unwrap();
    m.wait_metric("mpdr_window_decisions_total{stream=\"m\"}", |v| v > n + 2.0, 30);
    assert_eq!(model_info(&m), before);

    // New, valid weights: loaded, verified and swapped in without a restart.
    std::fs::write(bundle.join("energy.safetensors"), &original).unwrap();
    std::fs::write(bundle.join("manifest.toml"), &manifest).unwrap();
    edit_weights(&bundle, |w| w[3] *= 1.01);
    // ... recalibrated on site: the console must say so after the reload.
    let text = std::fs::read_to_string(bundle.join("manifest.toml")).unwrap();
    let start = text.find("fitted_on = ").unwrap();
    let end = start + text[start..].find('\n').unwrap();
    let text = format!("{}fitted_on = \"site: 8 h recorded on the line\"{}", &text[..start], &text[end..]);
    std::fs::write(bundle.join("manifest.toml"), text).unwrap();
    let calibration = || {
        let v: serde_json::Value = serde_json::from_str(&m.get("/api/streams").1).unwrap();
        v[0]["calibration"].as_str().unwrap_or("").to_string()
    };
    assert!(!calibration().contains("site: 8 h"), "{}", calibration());
    m.signal("HUP");
    m.wait_metric("mpdr_config_reloads_total", |v| v == 1.0, 60);
    assert!(m.log().iter().any(|l| l.contains("model swapped in")), "{:#?}", m.log());
    let after = model_info(&m);
    assert_ne!(after, before, "mpdr_model_info names the new weights");
    assert!(
        calibration().contains("site: 8 h recorded on the line"),
        "the swapped bundle's calibration: {}",
        calibration()
    );
    let n = m.metric("mpdr_window_decisions_total{stream=\"m\"}").unwrap();
    m.wait_metric("mpdr_window_decisions_total{stream=\"m\"}", |v| v > n + 2.0, 30);
    let (status, log) = m.stop(20);
    assert!(status.success(), "{log:#?}");
}

#[test]
fn a_model_that_cannot_score_reports_its_stream_down_while_the_others_score() {
    let d = tempfile::tempdir().unwrap();
    let bad = copy_bundle(d.path(), "overflowing");
    // Finite weights that overflow every energy to infinity or NaN: loads, cannot score.
    edit_weights(&bad, |w| w.iter_mut().for_each(|x| *x = 3.0e38));
    let w = d.path().join("normal.wav");
    wav::write_pcm16(&w, RATE, 1, &machine(5.0, 9, |_| false)).unwrap();
    let cfg = config(d.path(), &[("good", model()), ("bad", &bad)], &w);
    let m = Monitor::start(&cfg, &[]);
    m.wait_line(|l| l.contains("stream-down") && l.contains("fails to score"), 60).expect("a stream-down event");
    assert_eq!(m.metric("mpdr_stream_scoring_up{stream=\"bad\"}"), Some(0.0));
    assert_eq!(m.metric("mpdr_stream_scoring_up{stream=\"good\"}"), Some(1.0));
    let (code, body) = m.get("/readyz");
    assert!(code == 503 && body.contains("bad"), "{code} {body}");
    assert_eq!(m.get("/healthz").0, 200, "the daemon itself is alive");
    let n = m.metric("mpdr_window_decisions_total{stream=\"good\"}").unwrap();
    m.wait_metric("mpdr_window_decisions_total{stream=\"good\"}", |v| v > n + 2.0, 30);
    assert_eq!(m.metric("mpdr_window_decisions_total{stream=\"bad\"}"), Some(0.0));
    let (status, _) = m.stop(20);
    assert!(status.success());
}

#[test]
fn a_corrupted_outbox_is_refused_with_its_path_and_left_as_it_was() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("normal.wav");
    wav::write_pcm16(&w, RATE, 1, &machine(2.0, 1, |_| false)).unwrap();
    let cfg = config(d.path(), &[("m", model())], &w);
    let state = d.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let db = state.join("outbox.sqlite3");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mpdr"))
        .args(["monitor", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("outbox.sqlite3"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), garbage, "never overwritten");
    let o = mpdr(&["alarms", "--state-dir", state.to_str().unwrap(), "list"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("outbox.sqlite3"));
}

/// A command that runs `mpdr --log-json monitor --config <config>` with a `size`-byte tmpfs
/// mounted on `state` (its own user and mount namespace: no root needed); `None` where the
/// kernel does not allow it.
fn on_small_disk(state: &Path, size: &str, config: &Path) -> Option<std::process::Command> {
    let probe = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(format!("mount -t tmpfs -o size=1m none '{}'", state.display()))
        .output()
        .ok()?;
    if !probe.status.success() {
        return None;
    }
    let mut c = std::process::Command::new("unshare");
    c.args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size={size} none '{}' && exec \"$0\" --log-json monitor --config \"$1\"",
            state.display()
        ))
        .arg(env!("CARGO_BIN_EXE_mpdr"))
        .arg(config);
    Some(c)
}

#[test]
fn a_full_state_folder_holds_new_events_and_delivers_every_one_to_every_sink_when_space_returns() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // 6 cycles of 4 s normal, 4 s faulty at twice real time: an alarm raised and cleared every 4 s.
    let w = d.path().join("cycle.wav");
    let one: Vec<f32> = machine(8.0, 3, |t| t >= 4.0);
    wav::write_pcm16(&w, RATE, 1, &one.repeat(6)).unwrap();
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let hooked = crate::util::json_receiver(hook);
    let jsonl = d.path().join("events.jsonl"); // the file sink lives outside the small disk
    let cfg = d.path().join("monitor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = \"{}\"\n[[stream]]\nname = \"m\"\nmodel = \"{}\"\n\
             source = {{ type = \"file\", path = \"{}\", realtime = true, speed = 2.0 }}\n\
             detect = {{ window_s = 1.0, hop_s = 0.5, on_delay_s = 0.5, off_delay_s = 0.5, threshold = \"model\" }}\n\
             [[sink]]\ntype = \"log\"\n[[sink]]\ntype = \"file\"\npath = \"{}\"\n\
             [[sink]]\ntype = \"webhook\"\nurl = \"http://{hook_addr}/h\"\nretry = {{ initial_s = 0.1, max_s = 0.5 }}\n",
            state.display(),
            model().display(),
            w.display(),
            jsonl.display()
        ),
    )
    .unwrap();
    let Some(cmd) = on_small_disk(&state, "16m", &cfg) else {
        eprintln!("SKIP: no user+mount namespaces here (unshare --user --mount), so no small disk to fill");
        return;
    };
    let m = Monitor::spawn(cmd);
    let pid = m.child.id();
    assert!(m.events_at_least(2, 60).iter().any(|e| e["kind"] == "raised"), "{:#?}", m.log());

    // Fill the daemon's state folder, seen from outside its mount namespace.
    let filler = PathBuf::from(format!("/proc/{pid}/root{}", state.display())).join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).and_then(|_| f.sync_data()).is_ok() {}
    }
    m.wait_line(|l| l.contains("cannot commit the event to the outbox: held in memory"), 60).expect("held, loudly");
    let (code, why) = m.get("/readyz");
    assert_eq!(code, 503, "{why}");
    assert!(why.contains("held in memory"), "{why}");
    m.wait_metric("mpdr_events_held", |v| v >= 2.0, 30);
    std::fs::remove_file(&filler).unwrap();

    // Space is back: the held events are committed, the replay ends, every event decided
    // reaches every sink.
    m.wait_line(|l| l.contains("every held event is committed"), 30).expect("re-committed");
    m.wait_metric("mpdr_stream_ended{stream=\"m\"}", |v| v == 1.0, 60);
    m.wait_metric("mpdr_events_held", |v| v == 0.0, 30);
    let (code, _) = m.get("/readyz");
    assert_ne!(code, 503, "ready again");
    let (_, body) = m.get("/metrics");
    let decided: f64 = body
        .lines()
        .filter_map(|l| l.strip_prefix("mpdr_events_total{"))
        .filter_map(|l| l.split(' ').nth(1)?.parse::<f64>().ok())
        .sum();
    let raised = m.metric("mpdr_events_total{kind=\"raised\"}").unwrap();
    assert!(raised >= 4.0, "alarms while the disk was full and after: {raised}");
    assert_eq!(m.metric("mpdr_events_dropped_total"), Some(0.0));
    let n = decided as usize;
    let logged = m.events_at_least(n, 60);
    let ids = |v: &[serde_json::Value]| {
        v.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(logged.len(), n, "log sink: {:#?}", m.log());
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let filed = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&jsonl)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    while (filed().len() < n || hooked.lock().unwrap().len() < n) && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(ids(&filed()), ids(&logged), "file sink");
    assert_eq!(ids(&hooked.lock().unwrap()), ids(&logged), "webhook");
    // Delivered while the disk was full, recorded later: not sent again and again meanwhile.
    let requests = hooked.lock().unwrap().len();
    assert!(requests <= n + 3, "{requests} webhook requests for {n} events");
    // In order and without gaps, per stream.
    let seqs: Vec<u64> = logged.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=n as u64).collect::<Vec<_>>());
    let (status, log) = m.stop(30);
    assert!(status.success(), "{log:#?}");
}

#[test]
fn a_source_that_disappears_mid_run_goes_down_and_comes_back_when_it_returns() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("live.wav");
    let audio = machine(2.0, 4, |_| false);
    wav::write_pcm16(&w, RATE, 1, &audio).unwrap();
    let cfg = config(d.path(), &[("m", model())], &w);
    // Retries every second at most: the backoff, kept short for the test.
    std::fs::write(&cfg, format!("[pipeline]\nretry_max_s = 1.0\n{}", std::fs::read_to_string(&cfg).unwrap())).unwrap();
    let m = Monitor::start(&cfg, &[]);
    m.wait_metric("mpdr_window_decisions_total{stream=\"m\"}", |v| v >= 2.0, 30);
    std::fs::remove_file(&w).unwrap();
    m.wait_line(|l| l.contains("stream-down"), 30).expect("stream-down once the recording is gone");
    assert_eq!(m.wait_metric("mpdr_stream_up{stream=\"m\"}", |v| v == 0.0, 10), 0.0);
    std::thread::sleep(std::time::Duration::from_secs(2)); // a few retries with backoff
    wav::write_pcm16(&w, RATE, 1, &audio).unwrap();
    m.wait_metric("mpdr_stream_up{stream=\"m\"}", |v| v == 1.0, 30);
    let n = m.metric("mpdr_window_decisions_total{stream=\"m\"}").unwrap();
    m.wait_metric("mpdr_window_decisions_total{stream=\"m\"}", |v| v > n, 30);
    let kinds: Vec<String> = m.events().iter().map(|e| e["kind"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["stream-up", "stream-down", "stream-up"]);
    let (status, _) = m.stop(20);
    assert!(status.success());
}

#[test]
fn a_recording_replaced_or_deleted_mid_run_is_noticed_and_reopened() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("live.wav");
    let audio = machine(30.0, 4, |_| false);
    wav::write_pcm16(&w, RATE, 1, &audio).unwrap();
    let cfg = config(d.path(), &[("m", model())], &w);
    let text = std::fs::read_to_string(&cfg).unwrap().replace("speed = 5.0, loop = true", "speed = 1.0");
    std::fs::write(&cfg, format!("[pipeline]\nretry_max_s = 1.0\n{text}")).unwrap();
    let m = Monitor::start(&cfg, &[]);
    m.wait_metric("mpdr_window_decisions_total{stream=\"m\"}", |v| v >= 2.0, 30);
    // Replaced by garbage: down, naming why.
    std::fs::write(&w, vec![0x5au8; 50_000]).unwrap();
    m.wait_line(|l| l.contains("stream-down") && l.contains("replaced or changed on disk"), 10).expect("noticed");
    assert_eq!(m.wait_metric("mpdr_stream_up{stream=\"m\"}", |v| v == 0.0, 10), 0.0);
    // A good recording again: up, scoring.
    wav::write_pcm16(&w, RATE, 1, &audio).unwrap();
    m.wait_metric("mpdr_stream_up{stream=\"m\"}", |v| v == 1.0, 30);
    let n = m.metric("mpdr_window_decisions_total{stream=\"m\"}").unwrap();
    m.wait_metric("mpdr_window_decisions_total{stream=\"m\"}", |v| v > n, 30);
    // Deleted: down again.
    std::fs::remove_file(&w).unwrap();
    m.wait_line(|l| l.contains("stream-down") && l.contains("deleted on disk"), 10).expect("deletion noticed");
    let (status, _) = m.stop(20);
    assert!(status.success());
}

#[test]
fn broken_bundles_are_refused_by_validate_eval_and_monitor_naming_the_field() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data/machine");
    std::fs::create_dir_all(data.join("test")).unwrap();
    std::fs::create_dir_all(data.join("train")).unwrap();
    wav::write_pcm16(&data.join("train/normal_id_00_00000000.wav"), RATE, 1, &machine(3.0, 39, |_| false)).unwrap();
    for (i, anomalous) in [(0, false), (1, true)] {
        let name = if anomalous { "anomaly" } else { "normal" };
        let p = data.join(format!("test/{name}_id_00_{i:08}.wav"));
        wav::write_pcm16(&p, RATE, 1, &machine(3.0, 40 + i, |_| anomalous)).unwrap();
    }
    let w = d.path().join("normal.wav");
    wav::write_pcm16(&w, RATE, 1, &machine(3.0, 8, |_| false)).unwrap();
    type Edit = Box<dyn Fn(&Path)>;
    let manifest_edit = |from: &'static str, to: &'static str| -> Edit {
        Box::new(move |b: &Path| {
            let p = b.join("manifest.toml");
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.contains(from), "{from}");
            std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
        })
    };
    let cases: Vec<(&str, Edit, &str)> = vec![
        ("frames_zero", manifest_edit("frames = 5", "frames = 0"), "features.frames"),
        ("n_mels_64", manifest_edit("n_mels = 128", "n_mels = 64"), "energy"),
        ("hidden_2_40", manifest_edit("hidden = [", "hidden = [1099511627776, "), "energy.encoder.hidden[0]"),
        ("power_negative", manifest_edit("power = 2.0", "power = -2.0"), "features.power"),
        ("nan_weight", Box::new(|b: &Path| edit_weights(b, |w| w[0] = f32::NAN)), "NaN"),
        // issue 25: front-end nonsense, kind/energy mismatches, calibrations and integrity
        // entries that do not hold.
        ("fmax_10", manifest_edit("fmin = 0.0", "fmin = 0.0\nfmax = 10.0"), "features.fmax"),
        ("power_100", manifest_edit("power = 2.0", "power = 100.0"), "features.power"),
        ("l2_enc_nan", manifest_edit("l2_enc = 0.00001", "l2_enc = nan"), "energy.l2_enc"),
        ("mpdr_r_no_manifold", manifest_edit("kind = \"ae\"", "kind = \"mpdr-r\""), "manifold"),
        ("mpdr_s_ae_energy", manifest_edit("kind = \"ae\"", "kind = \"mpdr-s\""), "energy"),
        ("threshold_negative", manifest_edit("value = 1.", "value = -1."), "threshold.value"),
        ("method_unknown", manifest_edit("method = \"gamma-moments\"", "method = \"vibes\""), "threshold.method"),
        ("bytes_wrong", manifest_edit("bytes = ", "bytes = 1"), "bytes"),
        ("channel_5_on_mono", manifest_edit("channel = \"mix\"", "channel = 5"), "channel 5"),
        (
            "integrity_file_missing",
            Box::new(|b: &Path| {
                let p = b.join("manifest.toml");
                let text = std::fs::read_to_string(&p).unwrap();
                std::fs::write(&p, format!("{text}\n[files.\"manifold_0.safetensors\"]\nsha256 = \"00\"\nbytes = 4\n"))
                    .unwrap();
            }),
            "manifold_0.safetensors",
        ),
    ];
    for (name, edit, field) in cases {
        let b = copy_bundle(d.path(), name);
        edit(&b);
        let cfg = config(&d.path().join(name), &[("m", &b)], &w);
        let runs = [
            ("validate", mpdr(&["validate", "--config", cfg.to_str().unwrap()])),
            (
                "eval",
                mpdr(&[
                    "eval",
                    "--bundle",
                    b.to_str().unwrap(),
                    "--data",
                    data.to_str().unwrap(),
                    "--out",
                    d.path().join(format!("{name}-eval")).to_str().unwrap(),
                    "--no-cache",
                ]),
            ),
            ("monitor", mpdr(&["monitor", "--config", cfg.to_str().unwrap()])),
        ];
        for (what, o) in runs {
            let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            assert_eq!(o.status.code(), Some(1), "{name}: {what} must refuse, not panic: {out}");
            // eval names the recording it cannot decode with the bundle's channel.
            let names_bundle = out.contains(name) || (what == "eval" && name == "channel_5_on_mono");
            assert!(out.contains(field) && names_bundle, "{name}: {what} names {field} and the bundle: {out}");
            assert!(!out.contains("panicked"), "{name}: {what}: {out}");
        }
    }
}
