//! `file` sink: every event appended to a JSON-lines file and synced to disk before the
//! delivery counts — an append-only local audit log. A line may repeat after a crash between
//! the write and the outbox's record of it; the event `id` tells repeats apart.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{BuildContext, Built, Common, SinkSpec};
use crate::alarm::{AlarmEvent, RetryPolicy, Sink, SinkError};
use crate::config::Problems;
use crate::files::absolute;

/// `[[sink]] type = "file"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    #[serde(flatten)]
    pub common: Common,
    /// The JSON-lines file (created when missing; its folder must exist).
    pub path: PathBuf,
    #[serde(default)]
    pub retry: RetryPolicy,
}

impl SinkSpec for FileSinkConfig {
    fn common(&self) -> &Common {
        &self.common
    }

    fn validate(&self, key: &str, p: &mut Problems) {
        if self.path.as_os_str().is_empty() {
            p.push(format!("{key}.path"), "must name a file, e.g. \"/var/log/mpdr/events.jsonl\"");
        }
        self.retry.validate(&format!("{key}.retry"), p);
    }

    fn check(&self, key: &str, p: &mut Problems, _ports: bool) {
        let folder = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !folder.is_dir() {
            p.push(format!("{key}.path"), format!("{}: no such folder", folder.display()));
        } else if self.path.is_dir() {
            p.push(format!("{key}.path"), format!("{}: is a folder, expected a file", self.path.display()));
        } else if self.path.exists() && !self.path.is_file() {
            // /dev/full, a FIFO, a socket: appends would fail (or block) forever.
            p.push(format!("{key}.path"), format!("{}: not a regular file", self.path.display()));
        }
    }

    fn exclusive(&self) -> Option<String> {
        Some(format!("file:{}", self.path.display()))
    }

    fn resolve_paths(&mut self, base: &Path) {
        absolute(&mut self.path, base);
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Built, String> {
        let sink = FileSink::open(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        Ok(Built::Delivery { sink: Box::new(sink), retry: self.retry.clone() })
    }
}

/// Appends one JSON line per event.
pub struct FileSink {
    path: PathBuf,
    file: File,
}

impl FileSink {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(FileSink { path: path.to_path_buf(), file })
    }
}

impl Sink for FileSink {
    fn deliver(&mut self, ev: &AlarmEvent) -> Result<(), SinkError> {
        let mut line = ev.to_json();
        line.push('\n');
        // One write of the whole line (O_APPEND), then to the disk: a delivered event survives
        // a power cut. A full disk or a lost mount is retried.
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| SinkError::Retry(format!("{}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarm::EventKind;

    #[test]
    fn events_are_appended_as_json_lines_across_reopens() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("events.jsonl");
        let (a, b) = (AlarmEvent::new(EventKind::Raised, "fan", 1.0), AlarmEvent::new(EventKind::Cleared, "fan", 2.0));
        FileSink::open(&path).unwrap().deliver(&a).unwrap();
        FileSink::open(&path).unwrap().deliver(&b).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let back: Vec<AlarmEvent> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(back, [a, b]);
        let mut p = Problems::default();
        let cfg = FileSinkConfig {
            common: Common::default(),
            path: d.path().join("no/such/x.jsonl"),
            retry: RetryPolicy::default(),
        };
        cfg.check("sink[0]", &mut p, false);
        assert_eq!(p.0[0].key, "sink[0].path", "{p}");
    }
}
