//! `make install` as a user runs it (`scripts/install.sh`, into a temporary prefix): the
//! installed binary loads libtorch from its own prefix, and with nothing but the systemd
//! unit's environment it passes the unit's `ExecStartPre` on the installed config and runs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_installed_binary_runs_with_the_units_environment_on_the_installed_config() {
    if Command::new("ldd").arg("--version").output().is_err() {
        eprintln!("SKIP: no ldd here");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let prefix = d.path().join("opt/mpdr");
    let etc = d.path().join("etc/mpdr");
    let link = d.path().join("usr/local/bin");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = Command::new(root.join("scripts/install.sh"))
        .env("PREFIX", &prefix)
        .env("MPDR_BINARY", env!("CARGO_BIN_EXE_mpdr"))
        .env("MPDR_ETC", &etc)
        .env("MPDR_BIN_LINK", &link)
        .env("MPDR_SYSTEMD", d.path().join("systemd"))
        .env("MPDR_INSTALL_LINK", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let unit = std::fs::read_to_string(d.path().join("systemd/mpdr-monitor.service")).unwrap();
    assert!(!unit.contains("@PREFIX@"), "{unit}");
    // The template: two daemons on one box, each with its config and its state.
    let template = std::fs::read_to_string(d.path().join("systemd/mpdr-monitor@.service")).unwrap();
    for want in ["--config /etc/mpdr/%i.toml", "StateDirectory=mpdr/%i", "WorkingDirectory=/var/lib/mpdr/%i"] {
        assert!(template.contains(want), "{want}: {template}");
    }
    assert!(!template.contains("/etc/mpdr/monitor.toml") && !template.contains("@PREFIX@"), "{template}");
    if Command::new("systemd-analyze").arg("--version").output().is_ok() {
        let t = d.path().join("mpdr-monitor@line1.service");
        std::fs::write(&t, template.replace(&format!("{}/bin/mpdr", prefix.display()), env!("CARGO_BIN_EXE_mpdr")))
            .unwrap();
        let o = Command::new("systemd-analyze").arg("verify").arg(&t).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && !err.contains("mpdr-monitor@line1.service:"), "{err}");
    }

    // libtorch comes from the prefix, not from the build tree.
    let bin = prefix.join("bin/mpdr");
    let ldd = String::from_utf8_lossy(&Command::new("ldd").arg(&bin).output().unwrap().stdout).to_string();
    let torch = ldd.lines().find(|l| l.contains("libtorch_cpu.so")).expect("links libtorch");
    let resolved = torch.split("=> ").nth(1).and_then(|r| r.split(" (").next()).unwrap_or_default();
    let resolved = std::fs::canonicalize(resolved.trim()).unwrap();
    assert_eq!(resolved, std::fs::canonicalize(prefix.join("lib/libtorch_cpu.so")).unwrap(), "{ldd}");
    // ... and `mpdr doctor` there still says which libtorch it is (the stamps came along).
    let doctor = Command::new(&bin).arg("doctor").env_clear().output().unwrap();
    let doctor = String::from_utf8_lossy(&doctor.stdout).to_string();
    let want = format!("libtorch: {} (version 2.13.0, ", prefix.display());
    let stamped = std::env::var_os("LIBTORCH").is_some_and(|t| Path::new(&t).join("build-version").exists());
    assert!(doctor.contains(&want) || !stamped, "{doctor}");

    // The unit's environment only: no PATH, HOME, LD_LIBRARY_PATH or LIBTORCH.
    let state = d.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let unit_env = |c: &mut Command| {
        c.env_clear()
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .env("MPDR_LOG", "info")
            .env("STATE_DIRECTORY", &state)
            .current_dir(&state);
    };
    // The fleet template, as installed, passes validate on this box (paths filled in).
    let fleet = prefix.join("share/mpdr/config/fleet.monitor.toml");
    assert!(!std::fs::read_to_string(&fleet).unwrap().contains("@PREFIX@"));
    let o = Command::new(link.join("mpdr")).args(["validate", "--config", fleet.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));

    let config = etc.join("monitor.toml");
    let mut validate = Command::new(link.join("mpdr"));
    validate.args(["validate", "--config", config.to_str().unwrap()]);
    unit_env(&mut validate);
    let o = validate.output().unwrap();
    assert!(
        o.status.success(),
        "ExecStartPre: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    // ExecStart on the installed config (its port made free for the test).
    let text = std::fs::read_to_string(&config).unwrap().replace("127.0.0.1:9464", "127.0.0.1:0");
    let cfg = d.path().join("monitor-test.toml");
    std::fs::write(&cfg, text).unwrap();
    let mut start = Command::new(link.join("mpdr"));
    start.args(["--log-json", "monitor", "--config", cfg.to_str().unwrap()]).stderr(Stdio::piped());
    unit_env(&mut start);
    let mut child = start.spawn().unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let until = Instant::now() + Duration::from_secs(60);
    let mut log = Vec::new();
    while Instant::now() < until && !log.iter().any(|l: &String| l.contains("\"monitoring\"")) {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            log.push(l);
        }
    }
    assert!(log.iter().any(|l| l.contains("\"monitoring\"")), "{log:#?}");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{log:#?}");
}
