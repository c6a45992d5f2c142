//! `log` sink: each event as one structured log line (target `mpdr::alarm`, field `event` =
//! the JSON). Also the sink used when none is configured.

use serde::{Deserialize, Serialize};

use super::{BuildContext, Built, Common, SinkSpec};
use crate::alarm::{AlarmEvent, RetryPolicy, Sink, SinkError};
use crate::config::Problems;

/// `[[sink]] type = "log"`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(flatten)]
    pub common: Common,
}

impl SinkSpec for LogConfig {
    fn common(&self) -> &Common {
        &self.common
    }
    fn validate(&self, _key: &str, _p: &mut Problems) {}
    fn build(&self, _ctx: &BuildContext) -> Result<Built, String> {
        Ok(Built::Delivery { sink: Box::new(LogSink), retry: RetryPolicy::default() })
    }
}

/// Writes each event as one structured log line.
#[derive(Debug, Default)]
pub struct LogSink;

impl Sink for LogSink {
    fn deliver(&mut self, e: &AlarmEvent) -> Result<(), SinkError> {
        if e.kind.is_problem() {
            tracing::warn!(target: "mpdr::alarm", kind = e.kind.as_str(), stream = %e.stream, event = %e.to_json(), "{}", e.message)
        } else {
            tracing::info!(target: "mpdr::alarm", kind = e.kind.as_str(), stream = %e.stream, event = %e.to_json(), "{}", e.message)
        }
        Ok(())
    }
}
