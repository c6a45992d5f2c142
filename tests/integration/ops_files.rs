//! The shipped Prometheus alert rules and Grafana dashboard (issue 24): the rules pass
//! `promtool check rules` (Debian's `prometheus` package; a structural check without it), the
//! dashboard is a Grafana dashboard, and every `mpdr_*` metric either names is one the daemon
//! exports.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use mpdr::metrics::{Metrics, SinkMetrics, StreamMetrics};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every metric family `/metrics` exports (histograms with their series suffixes).
fn exported() -> BTreeSet<String> {
    let m = Metrics::new(vec![StreamMetrics::new("s", "m")], vec![]);
    if let Ok(mut v) = m.sinks.lock() {
        v.push(std::sync::Arc::new(SinkMetrics::new("hook")));
    }
    let mut names = BTreeSet::new();
    for line in m.render().lines().filter(|l| !l.starts_with('#')) {
        let name: String = line.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        names.insert(name);
    }
    names
}

/// The `mpdr_*` and `process_*` names in `text`.
fn named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["mpdr_", "process_"] {
        for (i, _) in text.match_indices(prefix) {
            if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
                continue;
            }
            let name: String = text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            out.insert(name);
        }
    }
    out
}

#[test]
fn alert_rules_parse_and_name_only_exported_metrics() {
    let rules = root().join("config/prometheus/mpdr.rules.yml");
    let text = std::fs::read_to_string(&rules).unwrap();
    match Command::new("promtool").args(["check", "rules", rules.to_str().unwrap()]).output() {
        Ok(o) => assert!(
            o.status.success(),
            "promtool check rules: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => {
            eprintln!("promtool not installed (Debian's prometheus package): structural check only");
            assert!(text.starts_with('#') || text.starts_with("groups:"));
            assert!(text.contains("\ngroups:\n") || text.starts_with("groups:"));
            for block in text.split("- alert: ").skip(1) {
                assert!(block.contains("expr: ") && block.contains("summary: "), "{block}");
            }
        }
    }
    let alerts: Vec<&str> = text.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    for want in [
        "MpdrSinkFailing",
        "MpdrDeadLetters",
        "MpdrSignalLost",
        "MpdrStreamDown",
        "MpdrReloadFailed",
        "MpdrAlarmUnacknowledged",
    ] {
        assert!(alerts.contains(&want), "{want} missing: {alerts:?}");
    }
    let exported = exported();
    for name in named(&text) {
        assert!(exported.contains(&name), "the rules name {name}, which is not exported");
    }
}

#[test]
fn the_grafana_dashboard_is_valid_and_names_only_exported_metrics() {
    let text = std::fs::read_to_string(root().join("config/grafana/mpdr-dashboard.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(d["title"].is_string() && d["uid"].is_string() && d["schemaVersion"].as_u64().unwrap() >= 30);
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "unique panel ids");
        let g = &p["gridPos"];
        assert!(g["w"].as_u64().unwrap() <= 24 && g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24, "{p}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty() && targets.iter().all(|t| t["expr"].is_string()), "{p}");
    }
    let exported = exported();
    let mut used = BTreeSet::new();
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            used.extend(named(t["expr"].as_str().unwrap()));
        }
    }
    for name in &used {
        assert!(exported.contains(name), "the dashboard queries {name}, which is not exported");
    }
    for want in ["mpdr_window_score", "mpdr_threshold", "mpdr_sink_pending", "mpdr_alarm_acknowledged"] {
        assert!(used.contains(want), "{want} is not on the dashboard");
    }
}
