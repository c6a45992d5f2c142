//! Threshold overrides: a runtime threshold set from the console or the API — finite and > 0,
//! who, when and why kept in `<state>/thresholds.json` — is *visible* (`GET /api/streams`:
//! `threshold_source`, `override`; a badge in the console; logged at every start and reload,
//! and by `mpdr calibrate --state-dir`) and *revertible* (`DELETE
//! /api/streams/<name>/threshold`). It survives restarts and reloads as long as the config's
//! threshold setting for that stream stays what it was; once the file's setting changes (a
//! new number, or `"model"` → a number), the file wins and the override is dropped, logged.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{api_error, ApiError, Console};
use crate::alarm::{AlarmEvent, EventKind};
use crate::daemon::Control;
use crate::detect::ThresholdSetting;

/// File in the state folder with the runtime thresholds.
pub const THRESHOLDS_FILE: &str = "thresholds.json";

/// One runtime threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Override {
    pub value: f64,
    /// The config's setting it replaced (`"model"` or the number), as JSON.
    pub config: String,
    pub by: String,
    pub unix_s: u64,
    #[serde(default)]
    pub reason: String,
    /// The threshold it replaced (the bundle's or the config's number), when known.
    #[serde(default)]
    pub replaced: Option<f64>,
}

fn setting_key(s: ThresholdSetting) -> String {
    serde_json::to_string(&s).unwrap_or_default()
}

/// The overrides kept in `state_dir` (none when the file is absent or unreadable).
pub fn read(state_dir: &Path) -> BTreeMap<String, Override> {
    let path = state_dir.join(THRESHOLDS_FILE);
    match crate::files::read_regular_string(&path) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), error = %e, "runtime thresholds unreadable: the config's apply");
            BTreeMap::new()
        }),
        Err(_) => BTreeMap::new(),
    }
}

/// Drop (and log) the overrides whose stream's setting in the config — `settings`, by stream
/// index, streams named `names` — is no longer the one they replaced; true when any went.
/// Streams no longer in the config keep theirs.
fn prune(o: &mut BTreeMap<String, Override>, names: &[String], settings: &[ThresholdSetting]) -> bool {
    let before = o.len();
    o.retain(|name, ov| {
        let setting = names.iter().position(|n| n == name).and_then(|i| settings.get(i));
        let keep = setting.is_none_or(|s| ov.config == setting_key(*s));
        if !keep {
            tracing::warn!(stream = %name, runtime = ov.value, "the config's threshold changed since the runtime change: the config's applies");
        }
        keep
    });
    o.len() != before
}

impl Console {
    pub(super) fn load_overrides(&self) {
        let mut o = read(&self.state_dir);
        let settings = self.settings.lock().map(|s| s.clone()).unwrap_or_default();
        if prune(&mut o, &self.names(), &settings) {
            self.save_overrides(&o);
        }
        self.mark_overridden(&o);
        if let Ok(mut cur) = self.overrides.lock() {
            *cur = o;
        }
    }

    fn names(&self) -> Vec<String> {
        self.metrics.streams.iter().map(|s| s.name.clone()).collect()
    }

    /// Say which overrides are in effect (`when`: start, reload).
    pub fn log_overrides(&self, when: &str) {
        for (i, name) in self.names().iter().enumerate() {
            if let Some(ov) = self.override_of(name) {
                let model = self.model_threshold(i);
                tracing::warn!(stream = %name, threshold = ov.value, model_threshold = ?model, by = %ov.by, at = %crate::alarm::rfc3339_utc(ov.unix_s * 1000), when, "threshold override in effect, not the model's: DELETE /api/streams/{name}/threshold (or the console's revert) returns to it");
            }
        }
    }

    /// A reload: the new settings; overrides whose setting changed are dropped.
    pub fn reconfigured(&self, settings: Vec<ThresholdSetting>) {
        if let Ok(mut o) = self.overrides.lock() {
            if prune(&mut o, &self.names(), &settings) {
                self.save_overrides(&o);
            }
        }
        if let Ok(mut s) = self.settings.lock() {
            *s = settings;
        }
    }

    /// The override of stream `name`, if one applies (those of a changed setting are pruned
    /// when the console starts and on every reload).
    pub fn override_of(&self, name: &str) -> Option<Override> {
        self.overrides.lock().ok().and_then(|o| o.get(name).cloned())
    }

    /// The runtime threshold of stream `name`, if one applies.
    pub fn runtime_threshold(&self, name: &str) -> Option<f64> {
        self.override_of(name).map(|o| o.value)
    }

    /// Stream `i`'s threshold without an override: the config's number, else its bundle's.
    pub fn model_threshold(&self, i: usize) -> Option<f64> {
        match self.settings.lock().ok()?.get(i).copied()? {
            ThresholdSetting::Value(v) => Some(v),
            ThresholdSetting::Model => self.model(i)?.threshold,
        }
    }

    /// Where stream `i`'s threshold comes from: `override`, `config` (a number in the file)
    /// or `model` (its bundle's calibration).
    pub fn threshold_source(&self, i: usize) -> &'static str {
        let name = &self.metrics.streams[i].name;
        if self.override_of(name).is_some() {
            "override"
        } else if matches!(self.settings.lock().ok().and_then(|s| s.get(i).copied()), Some(ThresholdSetting::Value(_)))
        {
            "config"
        } else {
            "model"
        }
    }

    /// `mpdr_threshold_overridden` per stream.
    fn mark_overridden(&self, o: &BTreeMap<String, Override>) {
        for s in &self.metrics.streams {
            s.threshold_overridden.store(o.contains_key(&s.name), std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn save_overrides(&self, o: &BTreeMap<String, Override>) {
        self.mark_overridden(o);
        let text = serde_json::to_string_pretty(o).unwrap_or_default();
        if let Err(e) = crate::files::write_atomic(&self.state_dir.join(THRESHOLDS_FILE), text.as_bytes()) {
            tracing::error!(error = %e, "cannot save the runtime thresholds");
        }
    }

    /// Override stream `i`'s threshold with `value` (finite, > 0): applied, persisted, audited.
    pub fn set_threshold(&self, i: usize, value: f64, by: &str, reason: &str) -> Result<(f64, f64), ApiError> {
        if !(value.is_finite() && value > 0.0) {
            return Err(api_error(400, format!("value: the threshold must be a finite number > 0, got {value}")));
        }
        let s = self.stream(i)?;
        let old = s.threshold.get();
        let setting = self.settings.lock().ok().and_then(|v| v.get(i).copied()).unwrap_or(ThresholdSetting::Model);
        self.apply(i, value)?;
        if let Ok(mut o) = self.overrides.lock() {
            let unix_s = crate::metrics::unix_s();
            let ov = Override {
                value,
                config: setting_key(setting),
                by: by.into(),
                unix_s,
                reason: reason.into(),
                replaced: self.model_threshold(i),
            };
            o.insert(s.name.clone(), ov);
            self.save_overrides(&o);
        }
        let mut ev = AlarmEvent::new(EventKind::ThresholdChanged, &s.name, 0.0);
        ev.threshold = Some(value);
        ev.by = Some(by.into());
        ev.reason = (!reason.is_empty()).then(|| reason.to_string());
        ev.message = format!("{}: threshold overridden from {old} to {value} by {by}", s.name);
        self.send(ev);
        tracing::info!(stream = %s.name, old, new = value, by, "threshold overridden at run time");
        Ok((old, value))
    }

    /// Drop stream `i`'s override: back to the config's or the bundle's threshold.
    pub fn revert_threshold(&self, i: usize, by: &str) -> Result<(f64, f64), ApiError> {
        let s = self.stream(i)?;
        if self.override_of(&s.name).is_none() {
            return Err(api_error(409, format!("{}: no threshold override in effect", s.name)));
        }
        let model = self.model_threshold(i).unwrap_or(f64::INFINITY);
        let old = s.threshold.get();
        self.apply(i, model)?;
        if let Ok(mut o) = self.overrides.lock() {
            o.remove(&s.name);
            self.save_overrides(&o);
        }
        let mut ev = AlarmEvent::new(EventKind::ThresholdChanged, &s.name, 0.0);
        ev.threshold = Some(model);
        ev.by = Some(by.into());
        ev.message = format!("{}: threshold override {old} reverted to the model's {model} by {by}", s.name);
        self.send(ev);
        tracing::info!(stream = %s.name, old, new = model, by, "threshold override reverted");
        Ok((old, model))
    }

    fn apply(&self, i: usize, value: f64) -> Result<(), ApiError> {
        self.ctrl
            .send(Control::Threshold { stream: i, value })
            .map_err(|_| api_error(503, "the scorer has stopped"))?;
        self.metrics.streams[i].threshold.set(value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_of_a_changed_setting_is_pruned_and_others_kept() {
        let ov = |config: &str| Override {
            value: 2.0,
            config: config.into(),
            by: "ann".into(),
            unix_s: 1,
            reason: String::new(),
            replaced: Some(1.0),
        };
        let mut o = BTreeMap::from([("a".to_string(), ov("\"model\"")), ("b".to_string(), ov("\"model\""))]);
        let names = ["a".to_string(), "b".to_string()];
        assert!(prune(&mut o, &names, &[ThresholdSetting::Model, ThresholdSetting::Value(3.0)]));
        assert_eq!(o.keys().collect::<Vec<_>>(), ["a"]);
        // Files of older versions (no reason, no replaced) still read.
        let old: Override =
            serde_json::from_str(r#"{"value":2.6,"config":"\"model\"","by":"console","unix_s":5}"#).unwrap();
        assert_eq!((old.reason.as_str(), old.replaced), ("", None));
    }
}
