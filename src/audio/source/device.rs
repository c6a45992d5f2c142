//! `type = "device"`: a sound-card input through cpal (ALSA on Linux).
//!
//! Capture never blocks: the cpal callback only copies into a buffer taken from a free list
//! and `try_send`s it; with no free buffer or a full queue the block is dropped and counted.
//! The callback does not allocate (buffers are preallocated and recycled).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use serde::{Deserialize, Serialize};

use super::{Next, OpenContext, Source, SourceError, SourceSpec};
use crate::audio::resample::StreamResampler;
use crate::audio::ChannelSelect;
use crate::config::Problems;

/// `source = { type = "device", device = "...", channel = ..., block = ... }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Device name as `mpdr devices` lists it, `"default"`, or its index in that list.
    #[serde(default = "default_device")]
    pub device: String,
    /// `"mix"` or a 0-based channel of the device.
    #[serde(default)]
    pub channel: ChannelSelect,
    /// Samples per callback block asked of the device (0 = the device's choice).
    #[serde(default)]
    pub block: u32,
}

fn default_device() -> String {
    "default".into()
}

impl SourceSpec for DeviceConfig {
    /// Every value parses to a usable setting; the device itself is looked for at open.
    fn validate(&self, key: &str, p: &mut Problems) {
        if self.device.trim().is_empty() {
            p.push(format!("{key}.device"), "must not be empty (\"default\", a name or an index)");
        }
        if self.block > 65_536 {
            p.push(format!("{key}.block"), format!("must be at most 65536 samples, got {}", self.block));
        }
    }

    /// A device that is not there (yet) is a warning: it may be plugged in later, and the
    /// stream retries. Listing devices opens none of them.
    fn warnings(&self, key: &str, w: &mut Problems) {
        if self.device == "default" {
            return;
        }
        use cpal::traits::{DeviceTrait, HostTrait};
        // Names only: asking a device for its configuration would open it.
        let names: Result<Vec<String>, String> = cpal::default_host()
            .input_devices()
            .map(|d| d.map(|d| d.name().unwrap_or_default()).collect())
            .map_err(|e| format!("cannot list input devices: {e}"));
        match names {
            Ok(names) => {
                let found = match self.device.parse::<usize>() {
                    Ok(i) => i < names.len(),
                    Err(_) => names.contains(&self.device),
                };
                if !found {
                    w.push(
                        format!("{key}.device"),
                        format!(
                            "no input device \"{}\" now (seen: {names:?}); the stream retries until it appears",
                            self.device
                        ),
                    );
                }
            }
            Err(e) => w.push(format!("{key}.device"), e),
        }
    }

    fn build(&self, ctx: OpenContext) -> Box<dyn Source> {
        Box::new(DeviceSource::new(self.clone(), ctx))
    }
}

/// The input devices cpal sees on the default host: (index, name, default config).
pub fn list_devices() -> Result<Vec<(usize, String, String)>, String> {
    use cpal::traits::{DeviceTrait, HostTrait};
    let host = cpal::default_host();
    let devices = host.input_devices().map_err(|e| format!("cannot list input devices: {e}"))?;
    Ok(devices
        .enumerate()
        .map(|(i, d)| {
            let name = d.name().unwrap_or_else(|e| format!("<unnamed: {e}>"));
            let cfg = match d.default_input_config() {
                Ok(c) => format!("{} ch, {} Hz, {:?}", c.channels(), c.sample_rate().0, c.sample_format()),
                Err(e) => format!("no default config: {e}"),
            };
            (i, name, cfg)
        })
        .collect())
}

/// Reasons a box shows no sound card, checked on this machine.
pub fn why_no_microphone() -> Vec<String> {
    let mut out = vec!["no sound-card input found. Checked:".to_string()];
    let snd = std::path::Path::new("/dev/snd");
    let cards: Vec<String> = std::fs::read_dir(snd)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with("pcmC"))
                .collect()
        })
        .unwrap_or_default();
    if !snd.exists() {
        out.push("  - /dev/snd does not exist: no sound card (or the container/VM passes none through)".into());
    } else if cards.is_empty() {
        out.push("  - /dev/snd has no PCM devices: no capture hardware is attached".into());
    } else if std::fs::File::open(snd.join(&cards[0])).is_err() {
        out.push(format!("  - /dev/snd/{} exists but cannot be opened: add this user to the `audio` group (`sudo usermod -aG audio $USER`, then log in again); under systemd the unit has SupplementaryGroups=audio", cards[0]));
    } else {
        out.push(format!("  - /dev/snd has {} PCM device(s) and they open: check `arecord -l` and the card's capture switch (`alsamixer`)", cards.len()));
    }
    out.push("  - ALSA's `null` device records silence (for trying the chain, not a microphone); cpal hides the one named \"null\", so name one: put `pcm.silence { type null hint { show on description \"silence\" } }` in ~/.asoundrc, then use device \"silence\"".into());
    out.push("  - no microphone here? replay recordings instead: source = { type = \"file\", path = \"...\" }".into());
    out
}

/// A cpal input. The model's rate is asked of the device; when it cannot deliver it, the
/// device's rate is converted in the stream thread.
pub struct DeviceSource {
    cfg: DeviceConfig,
    rate: u32,
    queue_blocks: usize,
    stream: Option<cpal::Stream>,
    rx: Option<Receiver<Vec<f32>>>,
    free_tx: Option<Sender<Vec<f32>>>,
    failed: Arc<Mutex<Option<String>>>,
    dropped: Arc<AtomicU64>,
    resampler: Option<StreamResampler>,
    scratch: Vec<f32>,
}

impl DeviceSource {
    pub fn new(cfg: DeviceConfig, ctx: OpenContext) -> Self {
        DeviceSource {
            cfg,
            rate: ctx.rate,
            queue_blocks: ctx.queue_blocks,
            stream: None,
            rx: None,
            free_tx: None,
            failed: Arc::new(Mutex::new(None)),
            dropped: Arc::new(AtomicU64::new(0)),
            resampler: None,
            scratch: Vec::new(),
        }
    }

    fn error(&self, message: impl Into<String>) -> SourceError {
        let mut message = message.into();
        // libasound's own messages are silenced (build.rs, alsa_quiet.c): say the likely cause.
        if !std::path::Path::new("/dev/snd").exists() {
            message.push_str(" (no sound card: /dev/snd does not exist; `mpdr devices` says more)");
        }
        SourceError::Device { device: self.cfg.device.clone(), message }
    }

    fn find(&self) -> Result<cpal::Device, SourceError> {
        use cpal::traits::{DeviceTrait, HostTrait};
        let host = cpal::default_host();
        let want = &self.cfg.device;
        if want == "default" {
            return host.default_input_device().ok_or_else(|| self.error("no default input device"));
        }
        let mut devices = host.input_devices().map_err(|e| self.error(format!("cannot list input devices: {e}")))?;
        if let Ok(i) = want.parse::<usize>() {
            return devices
                .nth(i)
                .ok_or_else(|| self.error(format!("no input device with index {i} (see `mpdr devices`)")));
        }
        devices
            .find(|d| d.name().map(|n| n == *want).unwrap_or(false))
            .ok_or_else(|| self.error("no input device of that name (see `mpdr devices`)"))
    }
}

/// Copy one interleaved callback buffer as mono into a recycled buffer and hand it over.
struct Capture {
    channels: usize,
    channel: ChannelSelect,
    tx: Sender<Vec<f32>>,
    free_rx: Receiver<Vec<f32>>,
    dropped: Arc<AtomicU64>,
}

impl Capture {
    fn push<T: Copy>(&self, data: &[T], to_f32: impl Fn(T) -> f32) {
        let frames = data.len() / self.channels.max(1);
        let Ok(mut buf) = self.free_rx.try_recv() else {
            self.dropped.fetch_add(frames as u64, Ordering::Relaxed);
            return;
        };
        buf.clear();
        if buf.capacity() < frames {
            // Only when the device delivers a larger block than asked: count it as dropped
            // rather than allocate in the callback.
            self.dropped.fetch_add(frames as u64, Ordering::Relaxed);
            let _ = self.tx.try_send(buf);
            return;
        }
        match self.channel {
            ChannelSelect::Mix => {
                let c = self.channels.max(1);
                buf.extend(data.chunks_exact(c).map(|f| f.iter().map(|&s| to_f32(s)).sum::<f32>() / c as f32))
            }
            ChannelSelect::Index(i) => {
                buf.extend(data.chunks_exact(self.channels.max(1)).map(|f| to_f32(f[(i as usize).min(f.len() - 1)])))
            }
        }
        if let Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) = self.tx.try_send(buf) {
            self.dropped.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
    }
}

impl Source for DeviceSource {
    fn describe(&self) -> String {
        format!("input device \"{}\"", self.cfg.device)
    }

    fn open(&mut self) -> Result<(), SourceError> {
        use cpal::traits::{DeviceTrait, StreamTrait};
        self.stream = None;
        let dev = self.find()?;
        let name = dev.name().unwrap_or_default();
        let default = dev.default_input_config().map_err(|e| self.error(format!("{name}: no input config: {e}")))?;
        let channels = default.channels();
        if let ChannelSelect::Index(i) = self.cfg.channel {
            if i >= channels {
                return Err(self.error(format!("{name}: has {channels} channel(s), channel {i} asked for")));
            }
        }
        // Prefer the model's rate when the device offers it (ALSA plug devices convert).
        let offers_rate = dev
            .supported_input_configs()
            .map(|mut it| {
                it.any(|r| {
                    r.channels() == channels
                        && r.sample_format() == default.sample_format()
                        && r.min_sample_rate().0 <= self.rate
                        && r.max_sample_rate().0 >= self.rate
                })
            })
            .unwrap_or(false);
        let rate = if offers_rate { self.rate } else { default.sample_rate().0 };
        let mut config: cpal::StreamConfig = default.config();
        config.sample_rate = cpal::SampleRate(rate);
        if self.cfg.block > 0 {
            config.buffer_size = cpal::BufferSize::Fixed(self.cfg.block);
        }
        self.resampler = if rate == self.rate {
            None
        } else {
            Some(StreamResampler::new(rate, self.rate).map_err(|e| self.error(e.to_string()))?)
        };
        let (tx, rx) = bounded(self.queue_blocks);
        let (free_tx, free_rx) = bounded(self.queue_blocks + 2);
        // Buffers big enough for a generous callback (1 s of audio), allocated here once.
        for _ in 0..self.queue_blocks + 2 {
            let _ = free_tx.try_send(Vec::with_capacity(rate as usize));
        }
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let failed = self.failed.clone();
        let on_error = move |e: cpal::StreamError| {
            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        };
        let cap = Capture {
            channels: channels as usize,
            channel: self.cfg.channel,
            tx,
            free_rx,
            dropped: self.dropped.clone(),
        };
        let stream = match default.sample_format() {
            cpal::SampleFormat::F32 => {
                dev.build_input_stream(&config, move |d: &[f32], _: &_| cap.push(d, |s| s), on_error, None)
            }
            cpal::SampleFormat::I16 => dev.build_input_stream(
                &config,
                move |d: &[i16], _: &_| cap.push(d, |s| s as f32 / 32768.0),
                on_error,
                None,
            ),
            cpal::SampleFormat::I32 => dev.build_input_stream(
                &config,
                move |d: &[i32], _: &_| cap.push(d, |s| s as f32 / 2_147_483_648.0),
                on_error,
                None,
            ),
            cpal::SampleFormat::U16 => dev.build_input_stream(
                &config,
                move |d: &[u16], _: &_| cap.push(d, |s| (s as f32 - 32768.0) / 32768.0),
                on_error,
                None,
            ),
            other => return Err(self.error(format!("{name}: sample format {other:?} is not supported"))),
        }
        .map_err(|e| self.error(format!("{name}: cannot open input stream: {e}")))?;
        stream.play().map_err(|e| self.error(format!("{name}: cannot start input stream: {e}")))?;
        tracing::info!(device = %name, rate, channels, resampled = self.resampler.is_some(), "input device opened");
        self.stream = Some(stream);
        self.rx = Some(rx);
        self.free_tx = Some(free_tx);
        Ok(())
    }

    fn next(&mut self, out: &mut Vec<f32>) -> Result<Next, SourceError> {
        out.clear();
        if let Some(e) = self.failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            self.stream = None;
            return Err(self.error(format!("stream error: {e}")));
        }
        let (Some(rx), Some(free)) = (&self.rx, &self.free_tx) else {
            return Err(SourceError::NotOpen);
        };
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(buf) => {
                let arrived = Instant::now();
                match &mut self.resampler {
                    None => out.extend_from_slice(&buf),
                    Some(r) => {
                        self.scratch.clear();
                        r.push(&buf, &mut self.scratch).map_err(|e| SourceError::Device {
                            device: self.cfg.device.clone(),
                            message: e.to_string(),
                        })?;
                        out.extend_from_slice(&self.scratch);
                    }
                }
                let _ = free.try_send(buf);
                Ok(Next::Data(arrived))
            }
            Err(RecvTimeoutError::Timeout) => Ok(Next::Idle),
            Err(RecvTimeoutError::Disconnected) => {
                self.stream = None;
                Err(self.error("the capture stream stopped"))
            }
        }
    }

    fn realtime(&self) -> bool {
        true
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_fails_to_open_with_its_name() {
        let cfg = DeviceConfig { device: "no-such-device-xyz".into(), channel: ChannelSelect::Mix, block: 0 };
        let mut dev = DeviceSource::new(cfg, OpenContext { rate: 16000, queue_blocks: 4, n_mels: 128 });
        let e = dev.open().unwrap_err().to_string();
        assert!(e.contains("no-such-device-xyz"), "{e}");
    }
}
