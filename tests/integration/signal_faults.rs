//! Issue 25, "signal faults": a DC offset, a dead microphone's hiss far below the level the
//! model was trained at, and fully clipped input each give a `signal-fault` event with its
//! reason — never a `raised` — and the stream is scored again once the input is fine.

use super::monitor::{machine, model, replay_to_the_end, RATE};

#[test]
fn dc_offset_hiss_and_full_clipping_are_signal_faults_not_anomalies() {
    let bundle = std::fs::read_to_string(model().join("manifest.toml")).unwrap();
    assert!(bundle.contains("[levels]") && bundle.contains("rms_dbfs_low"), "training records its level range");
    let d = tempfile::tempdir().unwrap();
    let r = RATE as usize;
    // 6 s machine | 6 s + DC 0.61 | 6 s machine | 6 s hiss at -70 dBFS | 6 s machine |
    // 6 s fully clipped | 6 s machine.
    let mut x = machine(42.0, 7, |_| false);
    x[6 * r..12 * r].iter_mut().for_each(|v| *v += 0.61);
    let mut s = 7u32;
    for v in x[18 * r..24 * r].iter_mut() {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *v = ((s as f64 / 4_294_967_296.0 - 0.5) * 2.0 * 10f64.powf(-70.0 / 20.0) * 3f64.sqrt()) as f32;
    }
    x[30 * r..36 * r].iter_mut().for_each(|v| *v = if *v >= 0.0 { 1.0 } else { -1.0 });
    let detect = "{ window_s = 2.0, hop_s = 0.5, threshold = \"model\", on_delay_s = 0.0, off_delay_s = 1.0 }";
    let m = replay_to_the_end(d.path(), &x, detect);
    let events = m.events_at_least(8, 20);
    let got: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{}{}",
                e["kind"].as_str().unwrap(),
                e["reason"].as_str().map(|r| format!(":{r}")).unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "stream-up",
            "signal-fault:dc-offset",
            "signal-ok",
            "signal-fault:level-low",
            "signal-ok",
            "clipping", // the gain warning, at once
            "signal-fault:clipping",
            "signal-ok"
        ],
        "{events:#?}"
    );
    assert_eq!(m.metric("mpdr_alarms_raised_total{stream=\"m\"}"), Some(0.0), "no anomaly raised");
    assert!(events[1]["message"].as_str().unwrap().contains("not a machine anomaly"), "{:?}", events[1]);
    assert_eq!(m.metric("mpdr_stream_signal_fault{stream=\"m\"}"), Some(0.0));
    let (status, _) = m.stop(20);
    assert!(status.success());
}
