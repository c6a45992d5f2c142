//! SIGHUP: validate the new file (every bundle it names loaded and checked), swap in bundles
//! that changed, push what may change live (detection settings, thresholds, sinks), and warn
//! about what needs a restart (sources, streams added or removed, status servers, a model
//! whose front end differs). Anything refused leaves the running configuration as it is.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};

use super::config::Monitor;
use super::error::DaemonError;
use super::events::{self, Replacement};
use super::{model_id, threshold_of, Control};
use crate::metrics::Metrics;
use crate::model::{Bundle, Manifest};

/// A model slot of the scorer: the bundle folder it was loaded from and its manifest.
#[derive(Debug, Clone)]
pub struct Slot {
    pub path: PathBuf,
    pub manifest: Manifest,
}

/// How long the scorer may take to load a swapped bundle.
const SWAP_TIMEOUT: Duration = Duration::from_secs(120);

/// Apply the file at `path` to the running daemon; returns the new config and its sinks.
pub fn reload(
    path: &Path,
    current: &Monitor,
    slots: &mut [Slot],
    stream_model: &[usize],
    ctrl: &Sender<Control>,
    console: &super::console::Console,
    metrics: &Arc<Metrics>,
) -> Result<(Monitor, Vec<Replacement>), DaemonError> {
    let state_dir = current.state_dir();
    let new = Monitor::load(path, false)?;
    let servers = |c: &Monitor| c.sinks().into_iter().filter(|s| s.config.spec().is_server()).collect::<Vec<_>>();
    if servers(&new) != servers(current) {
        tracing::warn!("status-server sink (modbus) changes take effect after a restart");
    }
    swap_models(&new, current, slots, stream_model, ctrl, metrics)?;
    // A swapped bundle brings its own calibration and false-alarm model.
    for (i, &k) in stream_model.iter().enumerate() {
        let model = super::console::StreamModel::of(&slots[k].manifest);
        if console.model(i).as_ref() != Some(&model) {
            console.model_swapped(i, model);
        }
    }
    // Runtime thresholds stay unless the file's setting for their stream changed.
    let settings = (current.streams().iter())
        .map(|old| new.streams().iter().find(|s| s.name == old.name).unwrap_or(old).detect.threshold)
        .collect();
    console.reconfigured(settings);
    let mut changes = Vec::new();
    for (i, old) in current.streams().iter().enumerate() {
        let Some(n) = new.streams().iter().find(|s| s.name == old.name) else {
            tracing::warn!(stream = %old.name, "removed from the config: keeps running until restart");
            continue;
        };
        if n.source != old.source {
            tracing::warn!(stream = %old.name, "source changed: takes effect after a restart");
        }
        if n.priority != old.priority || n.run != old.run {
            tracing::warn!(stream = %old.name, "priority or [stream.run] changed: takes effect after a restart");
        }
        let slot = &slots[stream_model[i]];
        if n.model != slot.path {
            tracing::warn!(stream = %old.name, "model changed: takes effect after a restart");
        }
        let threshold =
            console.runtime_threshold(&n.name).unwrap_or_else(|| threshold_of(n.detect.threshold, &slot.manifest));
        changes.push((i, n.detect.clone(), threshold));
    }
    console.log_overrides("reload");
    for n in new.streams() {
        if !current.streams().iter().any(|s| s.name == n.name) {
            tracing::warn!(stream = %n.name, "new stream: starts after a restart");
        }
    }
    let replacements = events::rebuild_workers(&new.sinks(), &current.sinks(), state_dir, metrics)?;
    ctrl.send(Control::Reconfigure(changes)).map_err(|_| DaemonError::Scorer("it has stopped".into()))?;
    Ok((new, replacements))
}

/// Each model slot whose streams now name one bundle that differs from the loaded one (another
/// folder, or the same folder with new weights or manifest) gets it, loaded and verified by the
/// scorer before the swap.
fn swap_models(
    new: &Monitor,
    current: &Monitor,
    slots: &mut [Slot],
    stream_model: &[usize],
    ctrl: &Sender<Control>,
    metrics: &Metrics,
) -> Result<(), DaemonError> {
    for (k, slot) in slots.iter_mut().enumerate() {
        let wanted: BTreeSet<&PathBuf> = current
            .streams()
            .iter()
            .enumerate()
            .filter(|(i, _)| stream_model[*i] == k)
            .filter_map(|(_, old)| new.streams().iter().find(|s| s.name == old.name))
            .map(|s| &s.model)
            .collect();
        if wanted.len() > 1 {
            tracing::warn!(model = %slot.path.display(), "streams that shared this bundle now name different ones: takes effect after a restart");
            continue;
        }
        let Some(&path) = wanted.iter().next() else { continue };
        let manifest = Bundle::read_manifest(path)?;
        if *path == slot.path && manifest == slot.manifest {
            continue;
        }
        if manifest.features != slot.manifest.features {
            tracing::warn!(model = %path.display(), "the new bundle's front end differs from the running one's: takes effect after a restart");
            continue;
        }
        let id = model_id(path, &manifest);
        let (reply, answer) = bounded(1);
        let swap = Control::Swap { model: k, path: path.clone(), id: id.clone(), reply };
        ctrl.send(swap).map_err(|_| DaemonError::Scorer("it has stopped".into()))?;
        match answer.recv_timeout(SWAP_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(DaemonError::Swap(e)),
            Err(_) => return Err(DaemonError::Swap(format!("{}: the scorer did not answer in time", path.display()))),
        }
        if let Ok(mut infos) = metrics.models.lock() {
            if let Some(info) = infos.get_mut(k) {
                info.id = id.clone();
                info.path = path.display().to_string();
                info.kind = manifest.kind.to_string();
            }
        }
        *slot = Slot { path: path.clone(), manifest };
    }
    Ok(())
}
