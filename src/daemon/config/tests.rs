//! The monitor config's parse, validate and path rules, each with the key it names.
use super::*;

#[test]
fn example_config_parses_and_validates() {
    let text = include_str!("../../../config/monitor.example.toml");
    let cfg = MonitorConfig::parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.validate().is_empty(), "{}", cfg.validate());
    assert_eq!(cfg.streams.len(), 3);
    assert!(matches!(cfg.streams[0].source, SourceConfig::Device(_)));
    assert_eq!(cfg.scoring, ScoringConfig::default());
    assert_eq!(cfg.pipeline, PipelineConfig::default());
    assert_eq!(crate::alarm::sink::names(&cfg.sinks), ["log", "webhook", "mqtt", "modbus", "exec", "file"]);
    let valid = cfg.into_valid(Path::new("/etc/mpdr")).unwrap();
    assert_eq!(valid.listen(), Some("127.0.0.1:9464".parse().unwrap()));
}

#[test]
fn the_fleet_template_validates_and_names_its_box_after_the_host() {
    let cfg =
        MonitorConfig::parse(include_str!("../../../config/fleet.monitor.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.validate().is_empty(), "{}", cfg.validate());
    assert_eq!(cfg.identity.resolve().box_name, crate::config::identity::host_name());
    let warned: Vec<String> = cfg.warnings().0.into_iter().map(|w| w.key).collect();
    assert!(warned.contains(&"server.listen".to_string()), "{warned:?}");
    assert!(!warned.iter().any(|k| k.starts_with("sink")), "the fleet layout: {warned:?}");
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let text = r#"
[server]
listen = "nowhere"
[[stream]]
name = "a"
model = "m"
source = { type = "file", path = "x.wav", speed = 0 }
detect = { window_s = 0, on_delay_s = -1 }
[[stream]]
name = "a"
model = "m"
source = { type = "device" }
[[sink]]
type = "log"
streams = ["b"]
"#;
    let cfg = MonitorConfig::parse(text).unwrap();
    let keys: Vec<String> = cfg.validate().0.into_iter().map(|p| p.key).collect();
    assert_eq!(
        keys,
        [
            "server.listen",
            "stream[0].detect.window_s",
            "stream[0].detect.on_delay_s",
            "stream[0].source.speed",
            "stream[1].name",
            "sink[0].streams"
        ]
    );
}

#[test]
fn values_a_daemon_cannot_hold_are_refused_before_they_start_or_reload() {
    let text = r#"
[pipeline]
shutdown_timeout_s = 1e20
[[stream]]
name = "a"
model = "m"
source = { type = "file", path = "x.wav", speed = 1e-300 }
detect = { window_s = 1e20, hop_s = 30 }
[[sink]]
type = "webhook"
url = "http://127.0.0.1:1/x"
timeout_s = 1e20
"#;
    let keys: Vec<String> = MonitorConfig::parse(text).unwrap().validate().0.into_iter().map(|p| p.key).collect();
    for k in ["pipeline.shutdown_timeout_s", "stream[0].detect.window_s", "stream[0].source.speed", "sink[0].timeout_s"]
    {
        assert!(keys.iter().any(|x| x == k), "{k} in {keys:?}");
    }
    let cfg = MonitorConfig::parse("[[stream]]\nname = \"a\"\nmodel = \"m\"\nsource = { type = \"device\" }\ndetect = { window_s = 10, hop_s = 30 }\n").unwrap();
    assert_eq!(cfg.validate().0[0].key, "stream[0].detect.hop_s");
}

#[test]
fn configs_that_would_validate_and_then_fail_are_refused_with_the_key() {
    let text = r#"
[server]
listen = "127.0.0.1:9500"
[[stream]]
name = ".."
model = "m"
source = { type = "device" }
[[stream]]
name = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
model = "m"
source = { type = "device" }
[[sink]]
type = "modbus"
listen = "127.0.0.1:9500"
[[sink]]
type = "modbus"
name = "plc2"
listen = "127.0.0.1:9500"
[[sink]]
type = "file"
path = "/tmp/a.jsonl"
[[sink]]
type = "file"
name = "again"
path = "/tmp/a.jsonl"
retry = { initial_s = 10.0, max_s = 1.0 }
[[sink]]
type = "mqtt"
host = "h"
prefix = "$SYS"
"#;
    let problems = MonitorConfig::parse(text).unwrap().validate();
    let keys: Vec<String> = problems.0.iter().map(|p| p.key.clone()).collect();
    for k in [
        "stream[0].name",
        "stream[1].name",
        "sink[0].listen",
        "sink[1]",
        "sink[3]",
        "sink[3].retry.initial_s",
        "sink[4].prefix",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} in {problems}");
    }
    let mut p = Problems::default();
    let file: SinkConfig = crate::config::parse_toml::<W>(
        "[sink]
type = \"file\"
path = \"/dev/full\"
",
    )
    .unwrap()
    .sink;
    file.spec().check("sink[0]", &mut p, false);
    assert!(p.0.iter().any(|x| x.message.contains("not a regular file")), "{p}");
}

#[test]
fn a_state_dir_that_is_a_file_or_under_proc_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("file");
    std::fs::write(&f, "x").unwrap();
    for (dir, want) in [(f.as_path(), "not a folder"), (Path::new("/proc/self"), "pseudo-file system")] {
        let mut p = Problems::default();
        check_state_dir(dir, &mut p);
        assert!(p.0.len() == 1 && p.0[0].key == "state.dir" && p.0[0].message.contains(want), "{p}");
    }
    let mut p = Problems::default();
    check_state_dir(&d.path().join("new"), &mut p);
    assert!(p.is_empty(), "a folder to be created is fine");
}

#[derive(serde::Deserialize)]
struct W {
    sink: SinkConfig,
}

#[test]
fn unknown_keys_and_types_are_one_line_errors_with_the_line() {
    let e = MonitorConfig::parse("[scoring]\nmax_bach = 3\n").unwrap_err();
    assert!(e.starts_with("line 2, column 1: scoring") && e.contains("max_bach") && !e.contains('\n'), "{e}");
    let e = MonitorConfig::parse("[[sink]]\ntype = \"pager\"\n").unwrap_err();
    assert!(e.contains("pager"), "{e}");
    let e = MonitorConfig::parse("[[sink]]\ntype = \"modbus\"\nlisten = \"anywhere\"\n").unwrap_err();
    assert!(e.starts_with("line 1, column 1: sink[0]") || e.contains("listen") || e.contains("socket address"), "{e}");
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let mut cfg = MonitorConfig::parse(
        "[[stream]]\nname = \"a\"\nmodel = \"models/a\"\nsource = { type = \"file\", path = \"/abs/a.wav\" }\n",
    )
    .unwrap();
    cfg.resolve_paths(Path::new("/etc/mpdr"));
    assert_eq!(cfg.streams[0].model, Path::new("/etc/mpdr/models/a"));
    assert!(matches!(&cfg.streams[0].source, SourceConfig::File(f) if f.path == Path::new("/abs/a.wav")));
}
