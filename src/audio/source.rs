//! Audio sources behind one trait: a sound-card input (cpal) and WAV replay. A source is
//! created and driven on its stream's own thread (cpal streams are not `Send` everywhere);
//! the stream thread calls [`Source::open`] until it succeeds (with backoff) and then
//! [`Source::next`] for mono blocks at the model's rate.
//!
//! Capture never blocks: the cpal callback only copies into a buffer taken from a free list
//! and `try_send`s it; with no free buffer or a full queue the block is dropped and counted.
//! The callback does not allocate (buffers are preallocated and recycled).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use super::resample::StreamResampler;
use super::{wav, AudioOptions, ChannelSelect};

/// What one call of [`Source::next`] produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// `out` holds a new block; its last sample arrived at this instant.
    Data(Instant),
    /// Nothing yet; call again (the call waited a little).
    Idle,
    /// The source is finished (a file replay without loop).
    End,
}

pub trait Source {
    /// Describes the source for logs and errors.
    fn describe(&self) -> String;
    /// (Re)open. An error leaves the stream down; the caller retries with backoff.
    fn open(&mut self) -> Result<(), String>;
    /// The next block into `out` (cleared first). An error means the source failed while
    /// running: the caller marks the stream down and reopens.
    fn next(&mut self, out: &mut Vec<f32>) -> Result<Next, String>;
    /// Real-time sources drop when the pipeline is full; others apply back-pressure.
    fn realtime(&self) -> bool;
    /// Samples dropped at capture so far (before they reached the stream thread).
    fn dropped(&self) -> u64 {
        0
    }
}

// ---------------------------------------------------------------------------------------
// File replay

/// Replays a WAV file, or a folder's WAVs in name order, at `speed` x real time or as fast as
/// the pipeline takes it, optionally looping.
pub struct FileSource {
    path: PathBuf,
    rate: u32,
    opts: AudioOptions,
    realtime: bool,
    speed: f64,
    looped: bool,
    files: Vec<PathBuf>,
    /// Index in `files` of the file in `samples`: one file is decoded at a time.
    current: usize,
    samples: Vec<f32>,
    pos: usize,
    /// Samples emitted since open (pacing reference).
    emitted: u64,
    t0: Instant,
}

impl FileSource {
    pub fn new(path: PathBuf, rate: u32, opts: AudioOptions, realtime: bool, speed: f64, looped: bool) -> Self {
        FileSource {
            path,
            rate,
            opts,
            realtime,
            speed,
            looped,
            files: Vec::new(),
            current: 0,
            samples: Vec::new(),
            pos: 0,
            emitted: 0,
            t0: Instant::now(),
        }
    }

    fn block_len(&self) -> usize {
        // 100 ms of audio per block live; 1 s when replaying as fast as possible.
        if self.realtime {
            (self.rate / 10).max(1) as usize
        } else {
            self.rate as usize
        }
    }
}

impl FileSource {
    /// Decode file `index` of the list (one file in memory at a time).
    fn load(&mut self, index: usize) -> Result<(), String> {
        let f = self.files.get(index).ok_or_else(|| format!("{}: no files", self.path.display()))?;
        self.samples = wav::read_mono(f, self.rate, &self.opts).map_err(|e| e.to_string())?;
        self.current = index;
        self.pos = 0;
        Ok(())
    }
}

impl Source for FileSource {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn open(&mut self) -> Result<(), String> {
        self.files =
            crate::daemon::config::wav_files(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        self.load(0)?;
        self.emitted = 0;
        self.t0 = Instant::now();
        Ok(())
    }

    fn next(&mut self, out: &mut Vec<f32>) -> Result<Next, String> {
        out.clear();
        if self.pos >= self.samples.len() {
            let next = self.current + 1;
            if next < self.files.len() {
                self.load(next)?;
            } else if self.looped {
                self.load(0)?;
            } else {
                return Ok(Next::End);
            }
        }
        let end = (self.pos + self.block_len()).min(self.samples.len());
        if self.realtime {
            let due = self.t0
                + Duration::from_secs_f64(
                    (self.emitted + (end - self.pos) as u64) as f64 / self.rate as f64 / self.speed,
                );
            let now = Instant::now();
            if due > now {
                // Sleep in short steps so a stop request is seen quickly.
                let wait = (due - now).min(Duration::from_millis(50));
                std::thread::sleep(wait);
                if Instant::now() < due {
                    return Ok(Next::Idle);
                }
            }
        }
        out.extend_from_slice(&self.samples[self.pos..end]);
        self.emitted += (end - self.pos) as u64;
        self.pos = end;
        Ok(Next::Data(Instant::now()))
    }

    fn realtime(&self) -> bool {
        self.realtime
    }
}

// ---------------------------------------------------------------------------------------
// Synthetic plant

/// A machine of the synthetic plant ([`super::synth`]), paced at `speed` x real time (or as
/// fast as the pipeline takes it). Never ends.
pub struct SynthSource {
    spec: super::synth::SynthSpec,
    gen: Option<super::synth::Synth>,
    realtime: bool,
    speed: f64,
    emitted: u64,
    t0: Instant,
}

impl SynthSource {
    pub fn new(spec: super::synth::SynthSpec, realtime: bool, speed: f64) -> Self {
        SynthSource { spec, gen: None, realtime, speed, emitted: 0, t0: Instant::now() }
    }
}

impl Source for SynthSource {
    fn describe(&self) -> String {
        format!("synthetic {}", self.spec.machine.name())
    }

    fn open(&mut self) -> Result<(), String> {
        // A reopen continues the machine's timeline (the plant did not stop).
        if self.gen.is_none() {
            self.gen = Some(super::synth::Synth::new(self.spec.clone()));
        }
        self.t0 = Instant::now();
        self.emitted = 0;
        Ok(())
    }

    fn next(&mut self, out: &mut Vec<f32>) -> Result<Next, String> {
        let gen = self.gen.as_mut().ok_or("not open")?;
        let rate = super::synth::RATE as usize;
        let n = if self.realtime { rate / 10 } else { rate };
        if self.realtime {
            let due = self.t0 + Duration::from_secs_f64((self.emitted + n as u64) as f64 / rate as f64 / self.speed);
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).min(Duration::from_millis(50)));
                if Instant::now() < due {
                    out.clear();
                    return Ok(Next::Idle);
                }
            }
        }
        out.resize(n, 0.0);
        gen.fill(out);
        self.emitted += n as u64;
        Ok(Next::Data(Instant::now()))
    }

    fn realtime(&self) -> bool {
        self.realtime
    }
}

// ---------------------------------------------------------------------------------------
// Sound card (cpal)

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

/// A cpal input. The model's rate is asked of the device; when it cannot deliver it, the
/// device's rate is converted in the stream thread.
pub struct DeviceSource {
    device: String,
    channel: ChannelSelect,
    block: u32,
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
    pub fn new(device: String, channel: ChannelSelect, block: u32, rate: u32, queue_blocks: usize) -> Self {
        DeviceSource {
            device,
            channel,
            block,
            rate,
            queue_blocks,
            stream: None,
            rx: None,
            free_tx: None,
            failed: Arc::new(Mutex::new(None)),
            dropped: Arc::new(AtomicU64::new(0)),
            resampler: None,
            scratch: Vec::new(),
        }
    }

    fn find(&self) -> Result<cpal::Device, String> {
        use cpal::traits::{DeviceTrait, HostTrait};
        let host = cpal::default_host();
        if self.device == "default" {
            return host.default_input_device().ok_or_else(|| "no default input device".to_string());
        }
        let mut devices = host.input_devices().map_err(|e| format!("cannot list input devices: {e}"))?;
        if let Ok(i) = self.device.parse::<usize>() {
            return devices.nth(i).ok_or_else(|| format!("no input device with index {i} (see `mpdr devices`)"));
        }
        devices
            .find(|d| d.name().map(|n| n == self.device).unwrap_or(false))
            .ok_or_else(|| format!("no input device named \"{}\" (see `mpdr devices`)", self.device))
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
        format!("input device \"{}\"", self.device)
    }

    fn open(&mut self) -> Result<(), String> {
        use cpal::traits::{DeviceTrait, StreamTrait};
        self.stream = None;
        let dev = self.find()?;
        let name = dev.name().unwrap_or_default();
        let default = dev.default_input_config().map_err(|e| format!("{name}: no input config: {e}"))?;
        let channels = default.channels();
        if let ChannelSelect::Index(i) = self.channel {
            if i >= channels {
                return Err(format!("{name}: has {channels} channel(s), channel {i} asked for"));
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
        if self.block > 0 {
            config.buffer_size = cpal::BufferSize::Fixed(self.block);
        }
        self.resampler = if rate == self.rate {
            None
        } else {
            Some(StreamResampler::new(rate, self.rate).map_err(|e| e.to_string())?)
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
        let cap =
            Capture { channels: channels as usize, channel: self.channel, tx, free_rx, dropped: self.dropped.clone() };
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
            other => return Err(format!("{name}: sample format {other:?} is not supported")),
        }
        .map_err(|e| format!("{name}: cannot open input stream: {e}"))?;
        stream.play().map_err(|e| format!("{name}: cannot start input stream: {e}"))?;
        tracing::info!(device = %name, rate, channels, resampled = self.resampler.is_some(), "input device opened");
        self.stream = Some(stream);
        self.rx = Some(rx);
        self.free_tx = Some(free_tx);
        Ok(())
    }

    fn next(&mut self, out: &mut Vec<f32>) -> Result<Next, String> {
        out.clear();
        if let Some(e) = self.failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            self.stream = None;
            return Err(format!("stream error: {e}"));
        }
        let (Some(rx), Some(free)) = (&self.rx, &self.free_tx) else {
            return Err("not open".into());
        };
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(buf) => {
                let arrived = Instant::now();
                match &mut self.resampler {
                    None => out.extend_from_slice(&buf),
                    Some(r) => {
                        self.scratch.clear();
                        r.push(&buf, &mut self.scratch).map_err(|e| e.to_string())?;
                        out.extend_from_slice(&self.scratch);
                    }
                }
                let _ = free.try_send(buf);
                Ok(Next::Data(arrived))
            }
            Err(RecvTimeoutError::Timeout) => Ok(Next::Idle),
            Err(RecvTimeoutError::Disconnected) => {
                self.stream = None;
                Err("the capture stream stopped".into())
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

/// Stop flag helper for sleeps that must end early on shutdown.
pub fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let until = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_tone(dir: &std::path::Path, name: &str, n: usize) -> PathBuf {
        let p = dir.join(name);
        let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.01).sin() * 0.5).collect();
        wav::write_f32(&p, 16000, 1, &x).unwrap();
        p
    }

    #[test]
    fn fast_file_replay_yields_every_sample_once_then_ends() {
        let d = tempfile::tempdir().unwrap();
        let p = write_tone(d.path(), "a.wav", 40_000);
        let mut s = FileSource::new(p, 16000, AudioOptions::default(), false, 1.0, false);
        s.open().unwrap();
        let (mut buf, mut total, mut blocks) = (Vec::new(), 0, 0);
        while let Next::Data(_) = s.next(&mut buf).unwrap() {
            total += buf.len();
            blocks += 1;
        }
        assert_eq!((total, blocks), (40_000, 3));
        assert_eq!(s.next(&mut buf).unwrap(), Next::End);
    }

    #[test]
    fn realtime_replay_is_paced_by_speed_and_loops() {
        let d = tempfile::tempdir().unwrap();
        write_tone(d.path(), "b.wav", 8_000);
        write_tone(d.path(), "a.wav", 8_000);
        // Folder of two 0.5-s files at 20x: 1 s of audio per 50 ms.
        let mut s = FileSource::new(d.path().to_path_buf(), 16000, AudioOptions::default(), true, 20.0, true);
        s.open().unwrap();
        let start = Instant::now();
        let (mut buf, mut total) = (Vec::new(), 0usize);
        while total < 48_000 {
            if let Next::Data(_) = s.next(&mut buf).unwrap() {
                total += buf.len();
            }
        }
        let took = start.elapsed().as_secs_f64();
        // 3 s of audio at 20x = 0.15 s; looped past the 1-s folder twice. Generous bounds:
        // this checks pacing exists (not wall-clock performance).
        assert!(took >= 0.14, "paced, not instant: {took}");
        assert_eq!(total, 48_000);
    }

    #[test]
    fn a_missing_file_fails_to_open_with_its_path_and_a_missing_device_too() {
        let mut s = FileSource::new("/nonexistent/x.wav".into(), 16000, AudioOptions::default(), true, 1.0, false);
        let e = s.open().unwrap_err();
        assert!(e.contains("/nonexistent/x.wav"), "{e}");
        let mut dev = DeviceSource::new("no-such-device-xyz".into(), ChannelSelect::Mix, 0, 16000, 4);
        let e = dev.open().unwrap_err();
        assert!(e.contains("no-such-device-xyz") || e.contains("cannot list"), "{e}");
    }
}
