//! `mpdr demo`, shortened: the faulty machine raises exactly one alarm after its fault starts,
//! the healthy ones none, the webhook receiver gets the signed event, the report is written.

use std::path::Path;

use super::util::mpdr;

#[test]
fn the_demo_scenario_raises_one_alarm_on_the_faulty_machine_only() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("report");
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let o = mpdr(&[
        "demo",
        "--duration",
        "14",
        "--speed",
        "40",
        "--streams",
        "3",
        "--fault",
        "cavitation",
        "--out",
        out.to_str().unwrap(),
        "--models",
        models.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let streams = s["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 3);
    for st in streams {
        let alarms = st["alarms_raised"].as_u64().unwrap();
        if st["machine"] == "pump" {
            assert_eq!(st["fault"], "cavitation");
            assert_eq!(alarms, 1, "the faulty pump raises exactly one alarm: {s:#}");
            let (first, onset) = (st["first_alarm_s"].as_f64().unwrap(), st["fault_at_s"].as_f64().unwrap());
            assert!(first > onset, "raised after the fault starts ({first} s vs {onset} s)");
        } else {
            assert_eq!(alarms, 0, "healthy {} raises nothing: {s:#}", st["machine"]);
        }
    }
    assert_eq!(s["webhook_signatures_ok"], true);
    let events: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("events.json")).unwrap()).unwrap();
    let raised: Vec<&serde_json::Value> = events.iter().filter(|e| e["kind"] == "raised").collect();
    assert_eq!(raised.len(), 1, "{events:#?}");
    assert_eq!(raised[0]["stream"], "pump-1");
    // Cavitation is broadband above 2 kHz: the explanation points there.
    assert!(raised[0]["top_bands"][0]["lo_hz"].as_f64().unwrap() > 1500.0, "{:#}", raised[0]);
    for f in ["summary.md", "monitor.toml", "timeline_pump-1.png", "timeline_fan-1.png"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    if mpdr::eval::plot::font_available() {
        assert!(out.join("spectrogram_pump-1.png").exists());
    }
}
