//! `exec` sink: run a command per event with the event JSON on stdin and key fields in the
//! environment (`MPDR_EVENT_ID`, `MPDR_EVENT_KIND`, `MPDR_STREAM`, `MPDR_SCORE`,
//! `MPDR_THRESHOLD`, `MPDR_TIME`, `MPDR_MESSAGE`). Exit status 0 = delivered; anything else,
//! or running past the timeout (the process is killed), = retry.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{check_timeout, BuildContext, Built, Common, SinkSpec};
use crate::alarm::{AlarmEvent, RetryPolicy, Sink, SinkError};
use crate::config::Problems;

/// `[[sink]] type = "exec"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    #[serde(flatten)]
    pub common: Common,
    /// Program and arguments; the event JSON arrives on stdin.
    pub command: Vec<String>,
    #[serde(default = "ten")]
    pub timeout_s: f64,
    #[serde(default)]
    pub retry: RetryPolicy,
}

fn ten() -> f64 {
    10.0
}

impl SinkSpec for ExecConfig {
    fn common(&self) -> &Common {
        &self.common
    }

    fn validate(&self, key: &str, p: &mut Problems) {
        if self.command.first().is_none_or(|c| c.is_empty()) {
            p.push(format!("{key}.command"), "needs a program, e.g. [\"/usr/local/bin/notify\", \"--urgent\"]");
        }
        check_timeout(key, self.timeout_s, p);
        self.retry.validate(&format!("{key}.retry"), p);
    }

    fn check(&self, key: &str, p: &mut Problems, _ports: bool) {
        if let Some(prog) = self.command.first().filter(|c| !c.is_empty()) {
            if !program_exists(prog) {
                p.push(format!("{key}.command"), format!("\"{prog}\" is not an executable file or on PATH"));
            }
        }
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Built, String> {
        let sink = ExecSink::new(self.command.clone(), Duration::from_secs_f64(self.timeout_s));
        Ok(Built::Delivery { sink: Box::new(sink), retry: self.retry.clone() })
    }
}

fn program_exists(prog: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        |p: &Path| p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false);
    if prog.contains('/') {
        return executable(Path::new(prog));
    }
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| executable(&d.join(prog))))
}

pub struct ExecSink {
    command: Vec<String>,
    timeout: Duration,
}

impl ExecSink {
    pub fn new(command: Vec<String>, timeout: Duration) -> Self {
        ExecSink { command, timeout }
    }
}

impl Sink for ExecSink {
    fn deliver(&mut self, ev: &AlarmEvent) -> Result<(), SinkError> {
        let (prog, args) = self.command.split_first().ok_or_else(|| SinkError::Permanent("empty command".into()))?;
        let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        let mut child = Command::new(prog)
            .args(args)
            .env("MPDR_EVENT_ID", &ev.id)
            .env("MPDR_EVENT_KIND", ev.kind.as_str())
            .env("MPDR_STREAM", &ev.stream)
            .env("MPDR_SCORE", num(ev.score))
            .env("MPDR_THRESHOLD", num(ev.threshold))
            .env("MPDR_TIME", &ev.time)
            .env("MPDR_MESSAGE", &ev.message)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| SinkError::Retry(format!("{prog}: cannot start: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its stdin is fine: ignore a broken pipe.
            let _ = stdin.write_all(ev.to_json().as_bytes());
        }
        let until = Instant::now() + self.timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    let tail: String = err.trim().chars().rev().take(200).collect::<String>().chars().rev().collect();
                    return Err(SinkError::Retry(format!("{prog} exited with {status}: {tail}")));
                }
                Ok(None) if Instant::now() >= until => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(SinkError::Retry(format!("{prog}: killed after {:?}", self.timeout)));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(SinkError::Retry(format!("{prog}: {e}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarm::EventKind;

    #[test]
    fn the_command_gets_the_event_on_stdin_and_in_its_environment() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let script = format!(
            "cat > {0}.json; printf '%s %s %s' \"$MPDR_EVENT_KIND\" \"$MPDR_STREAM\" \"$MPDR_EVENT_ID\" > {0}.env",
            out.display()
        );
        let mut sink = ExecSink::new(vec!["sh".into(), "-c".into(), script], Duration::from_secs(10));
        let ev = AlarmEvent::new(EventKind::Raised, "pump-1", 3.0);
        sink.deliver(&ev).unwrap();
        let json: AlarmEvent =
            serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap()).unwrap();
        assert_eq!(json, ev);
        assert_eq!(std::fs::read_to_string(out.with_extension("env")).unwrap(), format!("raised pump-1 {}", ev.id));
    }

    #[test]
    fn failures_and_timeouts_are_retried() {
        let ev = AlarmEvent::new(EventKind::Cleared, "s", 0.0);
        let mut fail =
            ExecSink::new(vec!["sh".into(), "-c".into(), "echo nope >&2; exit 3".into()], Duration::from_secs(10));
        match fail.deliver(&ev) {
            Err(SinkError::Retry(m)) => assert!(m.contains("nope"), "{m}"),
            other => panic!("{other:?}"),
        }
        let mut slow = ExecSink::new(vec!["sleep".into(), "30".into()], Duration::from_millis(200));
        let t = Instant::now();
        assert!(matches!(slow.deliver(&ev), Err(SinkError::Retry(_))));
        assert!(t.elapsed() < Duration::from_secs(10), "killed at the timeout");
    }
}
