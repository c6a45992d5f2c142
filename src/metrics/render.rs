//! `/metrics`: the Prometheus text exposition of [`Metrics`], and the standard process metrics.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::{AlarmState, Metrics, SinkMetrics, StreamMetrics};

impl Metrics {
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096 + 1024 * self.streams.len());
        self.render_streams(&mut o);
        process_metrics(&mut o);
        self.render_daemon(&mut o);
        self.render_sinks(&mut o);
        o
    }

    /// One line per stream and series.
    fn render_streams(&self, o: &mut String) {
        type Field = fn(&StreamMetrics) -> f64;
        let per_stream: [(&str, &str, &str, Field); 23] = [
            ("mpdr_stream_level_dbfs", "gauge", "RMS level of the last audio block, dBFS", |s| s.level_dbfs.get()),
            ("mpdr_stream_peak_dbfs", "gauge", "Peak level of the last audio block, dBFS", |s| s.peak_dbfs.get()),
            ("mpdr_stream_clipped_samples_total", "counter", "Samples at or above the clip level", |s| {
                s.clipped_samples.load(Ordering::Relaxed) as f64
            }),
            (
                "mpdr_stream_signal_fault",
                "gauge",
                "1 while the input is faulty (DC offset, level out of range, clipping)",
                |s| s.signal_fault.load(Ordering::Relaxed) as u8 as f64,
            ),
            ("mpdr_stream_signal_lost", "gauge", "1 while the signal is silent (dead microphone)", |s| {
                s.signal_lost.load(Ordering::Relaxed) as u8 as f64
            }),
            ("mpdr_audio_samples_total", "counter", "Audio samples received", |s| {
                s.samples_in.load(Ordering::Relaxed) as f64
            }),
            ("mpdr_audio_dropped_samples_total", "counter", "Audio samples dropped because a queue was full", |s| {
                s.samples_dropped.load(Ordering::Relaxed) as f64
            }),
            ("mpdr_vectors_scored_total", "counter", "Feature vectors scored", |s| {
                s.vectors_scored.load(Ordering::Relaxed) as f64
            }),
            ("mpdr_window_decisions_total", "counter", "Window decisions made", |s| {
                s.decisions.load(Ordering::Relaxed) as f64
            }),
            ("mpdr_window_score", "gauge", "Latest window score (mean energy)", |s| s.window_score.get()),
            ("mpdr_threshold", "gauge", "Alarm threshold in force", |s| s.threshold.get()),
            ("mpdr_alarm_state", "gauge", "0 normal, 1 pending, 2 alarm, 3 clearing", |s| {
                s.alarm_state().code() as f64
            }),
            ("mpdr_alarm_acknowledged", "gauge", "1 when the alarm now raised was acknowledged", |s| {
                f64::from(u8::from(s.acknowledged()))
            }),
            ("mpdr_alarms_raised_total", "counter", "Alarms raised (re-alarms included)", |s| {
                s.alarms_raised.load(Ordering::Relaxed) as f64
            }),
            ("mpdr_stream_up", "gauge", "1 while the source delivers audio", |s| {
                s.up.load(Ordering::Relaxed) as u8 as f64
            }),
            ("mpdr_stream_ended", "gauge", "1 once a finite replay has ended", |s| {
                s.ended.load(Ordering::Relaxed) as u8 as f64
            }),
            ("mpdr_stream_scoring_up", "gauge", "0 while the stream's model keeps failing to score", |s| {
                s.scoring_up.load(Ordering::Relaxed) as u8 as f64
            }),
            ("mpdr_stream_outages_total", "counter", "Times the source went down", |s| {
                s.outages.load(Ordering::Relaxed) as f64
            }),
            ("mpdr_alarm_priority", "gauge", "The stream's alarm priority: 1 critical, 2 high, 3 medium, 4 low", |s| {
                f64::from(s.priority.code())
            }),
            ("mpdr_alarm_shelved", "gauge", "1 while an operator has shelved the stream's alarms", |s| {
                f64::from(u8::from(s.suppressed().is_some_and(|x| x.kind == "shelved")))
            }),
            ("mpdr_stream_maintenance", "gauge", "1 while the stream is in maintenance (alarms suppressed)", |s| {
                f64::from(u8::from(s.suppressed().is_some_and(|x| x.kind == "maintenance")))
            }),
            ("mpdr_machine_off", "gauge", "1 while the machine is not running ([stream.run]): not scored", |s| {
                f64::from(u8::from(s.machine_off.load(Ordering::Relaxed)))
            }),
            ("mpdr_threshold_overridden", "gauge", "1 while a manual threshold override is in effect", |s| {
                f64::from(u8::from(s.threshold_overridden.load(Ordering::Relaxed)))
            }),
        ];
        for (name, kind, help, f) in per_stream {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in &self.streams {
                let _ = writeln!(o, "{name}{{stream=\"{}\"}} {}", label(&s.name), fmt_f(f(s)));
            }
        }
        let _ = writeln!(
            o,
            "# HELP mpdr_stream_state 1 for the stream's alarm state, by name\n# TYPE mpdr_stream_state gauge"
        );
        for s in &self.streams {
            let now = s.alarm_state();
            for st in AlarmState::ALL {
                let _ = writeln!(
                    o,
                    "mpdr_stream_state{{stream=\"{}\",state=\"{}\"}} {}",
                    label(&s.name),
                    st.as_str(),
                    u8::from(st == now)
                );
            }
        }
    }

    /// The daemon's own series: build, start, reloads, models, latency, scoring, events.
    fn render_daemon(&self, o: &mut String) {
        let r = Ordering::Relaxed;
        let _ = writeln!(o, "# HELP mpdr_build_info The running binary\n# TYPE mpdr_build_info gauge");
        let site = self.identity.site.as_deref().unwrap_or("");
        let _ = writeln!(
            o,
            "mpdr_build_info{{version=\"{}\",box=\"{}\",site=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            label(&self.identity.box_name),
            label(site)
        );
        let _ = writeln!(
            o,
            "# HELP mpdr_start_time_seconds Unix time the daemon started\n# TYPE mpdr_start_time_seconds gauge"
        );
        let _ = writeln!(o, "mpdr_start_time_seconds {}", self.started_unix_s);
        let _ = writeln!(
            o,
            "# HELP mpdr_config_last_reload_success_timestamp_seconds Unix time the running configuration was loaded\n# TYPE mpdr_config_last_reload_success_timestamp_seconds gauge"
        );
        let _ = writeln!(o, "mpdr_config_last_reload_success_timestamp_seconds {}", self.last_reload_unix_s.load(r));
        let _ = writeln!(o, "# HELP mpdr_model_info Loaded models\n# TYPE mpdr_model_info gauge");
        let models = self.models.lock().map(|v| v.clone()).unwrap_or_default();
        for m in &models {
            let _ = writeln!(
                o,
                "mpdr_model_info{{model=\"{}\",kind=\"{}\",path=\"{}\",device=\"{}\"}} 1",
                label(&m.id),
                label(&m.kind),
                label(&m.path),
                label(&m.device)
            );
        }
        let _ = writeln!(
            o,
            "# HELP mpdr_decision_latency_seconds From a hop's last sample arriving to its window decision\n# TYPE mpdr_decision_latency_seconds histogram"
        );
        self.latency.render(o, "mpdr_decision_latency_seconds", "");
        let globals: [(&str, &str, &str, u64); 5] = [
            ("mpdr_scoring_batches_total", "counter", "Batches scored", self.batches.load(r)),
            ("mpdr_scoring_batch_vectors_total", "counter", "Vectors in all batches", self.batch_vectors.load(r)),
            ("mpdr_scoring_errors_total", "counter", "Batches that failed to score", self.scoring_errors.load(r)),
            ("mpdr_config_reloads_total", "counter", "Successful SIGHUP reloads", self.reloads.load(r)),
            ("mpdr_config_reload_failures_total", "counter", "Rejected SIGHUP reloads", self.reload_failures.load(r)),
        ];
        for (name, kind, help, v) in globals {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        let _ = writeln!(o, "# HELP mpdr_events_total Alarm events by kind\n# TYPE mpdr_events_total counter");
        for (k, c) in crate::detect::event::EventKind::ALL.iter().map(|k| k.as_str()).zip(&self.events) {
            let _ = writeln!(o, "mpdr_events_total{{kind=\"{k}\"}} {}", c.load(r));
        }
        let _ = writeln!(o, "# HELP mpdr_outbox_errors_total Events that could not be written to the outbox\n# TYPE mpdr_outbox_errors_total counter\nmpdr_outbox_errors_total {}", self.outbox_errors.load(r));
        let _ = writeln!(o, "# HELP mpdr_events_held Events held in memory until the outbox takes writes again\n# TYPE mpdr_events_held gauge\nmpdr_events_held {}", self.events_held.load(r));
        let _ = writeln!(o, "# HELP mpdr_events_dropped_total Events dropped because the outbox refused writes and the hold was full\n# TYPE mpdr_events_dropped_total counter\nmpdr_events_dropped_total {}", self.events_dropped.load(r));
        let _ = writeln!(o, "# HELP mpdr_ready 1 once sources, models and sinks are up\n# TYPE mpdr_ready gauge");
        let _ = writeln!(o, "mpdr_ready {}", self.ready.load(r) as u8);
    }

    /// Per delivery sink: the outbox's counts, failures, latency.
    fn render_sinks(&self, o: &mut String) {
        let r = Ordering::Relaxed;
        // One snapshot of the sinks for every sink line below.
        let sinks = self.sinks.lock().map(|v| v.clone()).unwrap_or_default();
        // Every failed delivery attempt, over the sinks of the running configuration.
        let failed: u64 = sinks.iter().map(|s| s.retries.load(r) + s.dead.load(r)).sum();
        let _ = writeln!(o, "# HELP mpdr_sink_failures_total Failed delivery attempts (retried or dead-lettered)\n# TYPE mpdr_sink_failures_total counter\nmpdr_sink_failures_total {failed}");
        type SinkField = fn(&SinkMetrics) -> u64;
        let now = super::unix_ms();
        let per_sink: [(&str, &str, &str, SinkField); 5] = [
            ("mpdr_sink_pending", "gauge", "Deliveries waiting in the outbox", |s| s.pending.load(Ordering::Relaxed)),
            ("mpdr_sink_delivered_total", "counter", "Deliveries that succeeded", |s| {
                s.delivered.load(Ordering::Relaxed)
            }),
            ("mpdr_sink_retries_total", "counter", "Failed attempts rescheduled", |s| {
                s.retries.load(Ordering::Relaxed)
            }),
            ("mpdr_sink_dead_letters_total", "counter", "Deliveries moved to dead letters", |s| {
                s.dead.load(Ordering::Relaxed)
            }),
            ("mpdr_sink_failing", "gauge", "1 while the sink's deliveries fail (unreachable, retrying)", |s| {
                u64::from(s.failing_since_ms().is_some())
            }),
        ];
        for (name, kind, help, f) in per_sink {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in &sinks {
                let _ = writeln!(o, "{name}{{sink=\"{}\"}} {}", label(&s.name), f(s));
            }
        }
        let _ = writeln!(o, "# HELP mpdr_sink_failing_seconds How long the sink's deliveries have been failing (0: they succeed)\n# TYPE mpdr_sink_failing_seconds gauge");
        for s in &sinks {
            let for_s = s.failing_for_s(now).unwrap_or(0.0);
            let _ = writeln!(o, "mpdr_sink_failing_seconds{{sink=\"{}\"}} {for_s}", label(&s.name));
        }
        let _ = writeln!(
            o,
            "# HELP mpdr_delivery_latency_seconds From an event's creation to its delivery\n# TYPE mpdr_delivery_latency_seconds histogram"
        );
        for s in &sinks {
            s.latency.render(o, "mpdr_delivery_latency_seconds", &format!("sink=\"{}\"", label(&s.name)));
        }
    }
}

/// A label value in the text exposition format: backslash, double quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn fmt_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// The Prometheus client's standard process metrics, from `/proc/self` (absent elsewhere).
fn process_metrics(o: &mut String) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
    // Fields after the command name (which may hold spaces) start at ") ".
    let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else { return };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    // Linux reports CPU time in clock ticks: USER_HZ is 100 on every architecture.
    const TICKS: f64 = 100.0;
    let rss_kb = std::fs::read_to_string("/proc/self/status").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
    });
    let mut line = |name: &str, kind: &str, help: &str, v: Option<f64>| {
        if let Some(v) = v {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", fmt_f(v));
        }
    };
    // stat fields (1-based in proc(5)): 14 utime, 15 stime, 20 num_threads, 23 vsize;
    // `rest` starts at field 3.
    let cpu = num(11).zip(num(12)).map(|(u, s)| (u + s) / TICKS);
    line("process_cpu_seconds_total", "counter", "User and system CPU time, seconds", cpu);
    line("process_resident_memory_bytes", "gauge", "Resident memory, bytes", rss_kb.map(|k| k * 1024.0));
    line("process_virtual_memory_bytes", "gauge", "Virtual memory, bytes", num(20));
    line("process_threads", "gauge", "Threads", num(17));
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as f64).ok();
    line("process_open_fds", "gauge", "Open file descriptors", fds);
}
