//! No false OK, as a property: configs drawn at random from each key's working range and its
//! edges (a seeded generator, so a failure is reproducible from its case number) — every one
//! that `mpdr validate` accepts starts the monitor with file sources, survives a SIGHUP with
//! itself, and stops cleanly on SIGTERM.

use std::path::Path;
use std::time::{Duration, Instant};

use mpdr::audio::wav;

use super::monitor::{machine, model, Monitor, RATE};
use super::util::mpdr;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> usize {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as usize
    }

    /// One of `ok` (a key's working range and its edges), or — one time in fifteen — one of
    /// `bad` (just outside it, or absurd).
    fn pick<'a>(&mut self, ok: &[&'a str], bad: &[&'a str]) -> &'a str {
        if !bad.is_empty() && self.next().is_multiple_of(15) {
            return bad[self.next() % bad.len()];
        }
        ok[self.next() % ok.len()]
    }
}

fn config(case: u64, dir: &Path, wav: &Path) -> String {
    let mut r = Rng(case.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5);
    let window = r.pick(&["0.1", "0.5", "2.0", "10.0", "3600.0"], &["0.05", "1e20"]);
    let hop = r.pick(&["0.01", "0.1", "0.5", "2.0", "30.0"], &["0"]);
    let delay = |r: &mut Rng| r.pick(&["0", "0.5", "3", "604800"], &["1e9"]).to_string();
    let (on, off, re) = (delay(&mut r), delay(&mut r), delay(&mut r));
    let threshold = r.pick(&["\"model\"", "0.5", "-2.0", "1e30"], &[]);
    let speed = r.pick(&["0.01", "1.0", "50.0", "10000.0"], &["1e-300", "0"]);
    let realtime = r.pick(&["true", "false"], &[]);
    let lp = r.pick(&["true", "false"], &[]);
    let timeout = r.pick(&["0.001", "5", "3600"], &["1e20"]);
    let shutdown = r.pick(&["0.5", "10", "3600"], &["1e20"]);
    let retry = r.pick(&["0.01", "1", "3600"], &[]);
    let batch = r.pick(&["1", "64", "65536"], &["100000000"]);
    let wait = r.pick(&["0", "5", "10000"], &["18446744073709551615"]);
    let queue = r.pick(&["1", "16", "1000000"], &["1000000000000"]);
    let top = r.pick(&["0", "3", "1024"], &["100000000"]);
    let events = r.pick(&["1", "100000"], &[]);
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [scoring]\nmax_batch = {batch}\nmax_wait_ms = {wait}\n\
         [pipeline]\nvector_queue = {queue}\naudio_queue_blocks = {queue}\nretry_max_s = {retry}\nshutdown_timeout_s = {shutdown}\n\
         [state]\ndir = \"{state}\"\nmax_events = {events}\n\
         [[stream]]\nname = \"m\"\nmodel = \"{model}\"\n\
         source = {{ type = \"file\", path = \"{wav}\", realtime = {realtime}, speed = {speed}, loop = {lp} }}\n\
         detect = {{ window_s = {window}, hop_s = {hop}, on_delay_s = {on}, off_delay_s = {off}, re_alarm_s = {re}, threshold = {threshold}, top_bands = {top} }}\n\
         [[sink]]\ntype = \"log\"\n\
         [[sink]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/none\"\ntimeout_s = {timeout}\n\
         [[sink]]\ntype = \"file\"\npath = \"events.jsonl\"\n",
        state = dir.join("state").display(),
        model = model().display(),
        wav = wav.display(),
    )
}

#[test]
fn every_config_validate_accepts_starts_reloads_and_stops_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("clip.wav");
    wav::write_pcm16(&w, RATE, 1, &machine(3.0, 5, |_| false)).unwrap();
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..40u64 {
        let dir = d.path().join(format!("case{case}"));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("monitor.toml");
        std::fs::write(&cfg, config(case, &dir, &w)).unwrap();
        let o = mpdr(&["validate", "--config", cfg.to_str().unwrap()]);
        if !o.status.success() {
            refused += 1;
            let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            let keyed = |l: &str| {
                ["stream[0].", "pipeline.", "scoring.", "sink[", "state.", "detect."].iter().any(|k| l.contains(k))
            };
            assert!(out.lines().any(keyed), "case {case}: a refusal names its key:\n{out}");
            continue;
        }
        accepted += 1;
        let m = Monitor::start(&cfg, &[]);
        assert!(
            m.wait_line(|l| l.contains("\"monitoring\""), 60).is_some(),
            "case {case}: did not start: {:#?}",
            m.log()
        );
        m.signal("HUP");
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until && m.metric("mpdr_config_reloads_total") != Some(1.0) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(m.metric("mpdr_config_reloads_total"), Some(1.0), "case {case}: reload with itself: {:#?}", m.log());
        let (status, log) = m.stop(60);
        assert!(status.success(), "case {case}: {}\n{log:#?}", std::fs::read_to_string(&cfg).unwrap());
    }
    eprintln!("{accepted} configs accepted and run, {refused} refused");
    assert!(accepted >= 5 && refused >= 5, "{accepted} accepted, {refused} refused: the generator covers both sides");
}
