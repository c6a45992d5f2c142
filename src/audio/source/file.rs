//! `type = "file"`: replay of a WAV file, or of a folder's WAVs in name order.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{check_speed, one, paced, wav_files, yes, Next, OpenContext, Source, SourceError, SourceSpec};
use crate::audio::{wav, AudioOptions, ChannelSelect};
use crate::config::Problems;

/// `source = { type = "file", path = "...", ... }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub path: PathBuf,
    /// Paced like a live source (`speed` x real time); false = as fast as the pipeline goes.
    #[serde(default = "yes")]
    pub realtime: bool,
    #[serde(default = "one")]
    pub speed: f64,
    #[serde(default, rename = "loop")]
    pub looped: bool,
    /// `channel` and `resample` (files whose rate is not the model's).
    #[serde(flatten)]
    pub audio: AudioOptions,
}

impl FileConfig {
    /// A replay of `path` paced at `speed` x real time (`None`: as fast as possible).
    pub fn new(path: PathBuf, speed: Option<f64>) -> Self {
        FileConfig {
            path,
            realtime: speed.is_some(),
            speed: speed.unwrap_or(1.0),
            looped: false,
            audio: AudioOptions::default(),
        }
    }
}

impl SourceSpec for FileConfig {
    fn validate(&self, key: &str, p: &mut Problems) {
        check_speed(key, self.speed, p);
    }

    fn warnings(&self, key: &str, w: &mut Problems) {
        if !self.path.exists() {
            w.push(
                format!("{key}.path"),
                format!("{} does not exist (yet): the stream starts down and retries", self.path.display()),
            );
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        crate::files::absolute(&mut self.path, base);
    }

    /// Every WAV must be readable at the model's `rate` (or `resample`) with the channel asked
    /// for. A missing path is not a problem here: the stream starts down and retries.
    fn check(&self, key: &str, features: &crate::features::FeatureParams, p: &mut Problems) {
        let rate = features.sample_rate;
        for f in wav_files(&self.path).unwrap_or_default() {
            let spec = match wav::open_wav(&f) {
                Ok(r) => r.spec(),
                Err(e) => {
                    p.push(format!("{key}.path"), format!("{}: not a readable WAV: {e}", f.display()));
                    continue;
                }
            };
            if !(wav::MIN_RATE..=wav::MAX_RATE).contains(&spec.sample_rate) {
                p.push(
                    format!("{key}.path"),
                    format!(
                        "{}: header declares {} Hz (expected {} to {} Hz)",
                        f.display(),
                        spec.sample_rate,
                        wav::MIN_RATE,
                        wav::MAX_RATE
                    ),
                );
                continue;
            }
            if spec.sample_rate != rate && !self.audio.resample {
                p.push(
                    format!("{key}.path"),
                    format!(
                        "{}: {} Hz, the model expects {rate} Hz (set resample = true to convert)",
                        f.display(),
                        spec.sample_rate
                    ),
                );
            }
            if let ChannelSelect::Index(c) = self.audio.channel {
                if c >= spec.channels {
                    p.push(
                        format!("{key}.channel"),
                        format!("{}: has {} channel(s), asked for channel {c}", f.display(), spec.channels),
                    );
                }
            }
        }
    }

    fn build(&self, ctx: OpenContext) -> Box<dyn Source> {
        Box::new(FileSource::new(self.clone(), ctx.rate))
    }
}

impl FileConfig {
    /// A bundle trained on channel `c` of its recordings (`[audio] channel`) cannot judge
    /// files that do not have it: the same refusal as `mpdr eval`'s, at `validate` and start.
    pub fn check_trained_channel(&self, key: &str, trained: ChannelSelect, bundle: &Path, p: &mut Problems) {
        let ChannelSelect::Index(c) = trained else { return };
        for f in wav_files(&self.path).unwrap_or_default() {
            if let Ok(r) = wav::open_wav(&f) {
                if c >= r.spec().channels {
                    p.push(
                        key.to_string(),
                        format!(
                            "{} was trained on channel {c} ([audio] channel), but {} has {} channel(s)",
                            bundle.display(),
                            f.display(),
                            r.spec().channels
                        ),
                    );
                    return;
                }
            }
        }
    }
}

/// Replays a WAV file, or a folder's WAVs in name order, at `speed` x real time or as fast as
/// the pipeline takes it, optionally looping. A file is decoded whole, except a large one at
/// the model's rate (over [`STREAM_ABOVE_BYTES`]), which is checked in one streaming pass and
/// then read a block at a time ([`wav::WavStream`]): a day-long recording costs a block of
/// memory, and a bad file is still refused when it is opened, not halfway.
pub struct FileSource {
    cfg: FileConfig,
    rate: u32,
    files: Vec<PathBuf>,
    /// Index in `files` of the file being replayed: one file is open at a time.
    current: usize,
    stream: Option<wav::WavStream>,
    /// A resampled file, whole, and the position in it.
    samples: Vec<f32>,
    pos: usize,
    /// The next block, read but not yet paced out.
    pending: Vec<f32>,
    /// Samples emitted since open (pacing reference).
    emitted: u64,
    t0: Instant,
    stream_above: u64,
    /// The current file as it was when loaded (inode, size, mtime), and when that was last
    /// compared with the disk: a recording replaced or deleted mid-run is noticed.
    loaded_as: Option<FileStamp>,
    checked: Instant,
}

/// What identifies a file's content on disk without reading it.
type FileStamp = (u64, u64, Option<std::time::SystemTime>);

fn stamp(path: &std::path::Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.ino(), m.len(), m.modified().ok()))
}

/// Files larger than this (bytes) are streamed rather than decoded whole (~35 min of 16-bit
/// mono at 16 kHz).
pub const STREAM_ABOVE_BYTES: u64 = 64 << 20;

impl FileSource {
    pub fn new(cfg: FileConfig, rate: u32) -> Self {
        FileSource {
            cfg,
            rate,
            files: Vec::new(),
            current: 0,
            stream: None,
            samples: Vec::new(),
            pos: 0,
            pending: Vec::new(),
            emitted: 0,
            t0: Instant::now(),
            stream_above: STREAM_ABOVE_BYTES,
            loaded_as: None,
            checked: Instant::now(),
        }
    }

    fn block_len(&self) -> usize {
        // 100 ms of audio per block live; 1 s when replaying as fast as possible.
        if self.cfg.realtime {
            (self.rate / 10).max(1) as usize
        } else {
            self.rate as usize
        }
    }
}

impl FileSource {
    /// Open file `index` of the list (one file at a time): decoded whole, or — a large file
    /// at the model's rate — checked to its end in a streaming pass, then streamed.
    fn load(&mut self, index: usize) -> Result<(), SourceError> {
        let f = self.files.get(index).ok_or_else(|| self.error("no WAV files"))?.clone();
        (self.stream, self.samples, self.pos) = (None, Vec::new(), 0);
        self.loaded_as = stamp(&f);
        let large = std::fs::metadata(&f).is_ok_and(|m| m.len() > self.stream_above);
        let probe = if large { Some(wav::WavStream::open(&f, self.cfg.audio.channel)?) } else { None };
        match probe.filter(|p| p.sample_rate() == self.rate) {
            Some(mut check) => {
                if check.frames() == 0 {
                    return Err(SourceError::File { path: f, message: "contains no audio samples".into() });
                }
                let mut block = Vec::new();
                loop {
                    check.read(1 << 16, &mut block)?;
                    if block.is_empty() {
                        break;
                    }
                    if crate::cancel::requested() {
                        return Err(SourceError::File { path: f, message: crate::cancel::STOPPED.into() });
                    }
                }
                self.stream = Some(wav::WavStream::open(&f, self.cfg.audio.channel)?);
            }
            None => self.samples = wav::read_mono(&f, self.rate, &self.cfg.audio)?,
        }
        self.current = index;
        Ok(())
    }

    /// The next block of the current file into `pending`; empty at its end.
    fn read_block(&mut self) -> Result<(), SourceError> {
        let n = self.block_len();
        match &mut self.stream {
            Some(s) => Ok(s.read(n, &mut self.pending)?),
            None => {
                let end = (self.pos + n).min(self.samples.len());
                self.pending.clear();
                self.pending.extend_from_slice(&self.samples[self.pos..end]);
                self.pos = end;
                Ok(())
            }
        }
    }

    fn error(&self, message: impl Into<String>) -> SourceError {
        SourceError::File { path: self.cfg.path.clone(), message: message.into() }
    }
}

impl Source for FileSource {
    fn describe(&self) -> String {
        format!("file {}", self.cfg.path.display())
    }

    fn open(&mut self) -> Result<(), SourceError> {
        self.files = wav_files(&self.cfg.path).map_err(|e| self.error(e.to_string()))?;
        self.load(0)?;
        self.emitted = 0;
        self.t0 = Instant::now();
        Ok(())
    }

    fn next(&mut self, out: &mut Vec<f32>) -> Result<Next, SourceError> {
        out.clear();
        if self.checked.elapsed() >= Duration::from_secs(1) {
            self.checked = Instant::now();
            if let Some(f) = self.files.get(self.current) {
                if stamp(f) != self.loaded_as {
                    let what = if f.exists() { "replaced or changed" } else { "deleted" };
                    return Err(SourceError::File {
                        path: f.clone(),
                        message: format!("the recording was {what} on disk while it was replayed: reopening"),
                    });
                }
            }
        }
        if self.pending.is_empty() {
            self.read_block()?;
            while self.pending.is_empty() {
                let next = self.current + 1;
                if next < self.files.len() {
                    self.load(next)?;
                } else if self.cfg.looped {
                    self.load(0)?;
                } else {
                    return Ok(Next::End);
                }
                self.read_block()?;
            }
        }
        // Sleep in short steps so a stop request is seen quickly.
        let n = self.pending.len();
        if self.cfg.realtime && !paced(self.t0, self.emitted + n as u64, self.rate, self.cfg.speed) {
            return Ok(Next::Idle);
        }
        std::mem::swap(out, &mut self.pending);
        self.pending.clear();
        self.emitted += n as u64;
        Ok(Next::Data(Instant::now()))
    }

    fn realtime(&self) -> bool {
        self.cfg.realtime
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
        let mut s = FileSource::new(FileConfig::new(p, None), 16000);
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
        let mut s =
            FileSource::new(FileConfig { looped: true, ..FileConfig::new(d.path().to_path_buf(), Some(20.0)) }, 16000);
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
    fn a_streamed_file_replays_the_same_samples_and_a_bad_one_is_refused_when_opened() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("stereo.wav");
        let x: Vec<f32> = (0..2 * 37_000).map(|i| ((i as f32) * 0.013).sin() * 0.4).collect();
        wav::write_pcm16(&p, 16000, 2, &x).unwrap();
        for channel in [ChannelSelect::Mix, ChannelSelect::Index(1)] {
            let cfg =
                FileConfig { audio: AudioOptions { channel, resample: false }, ..FileConfig::new(p.clone(), None) };
            let whole = wav::read_mono(&p, 16000, &cfg.audio).unwrap();
            let mut s = FileSource::new(cfg, 16000);
            s.stream_above = 0;
            s.open().unwrap();
            assert!(s.stream.is_some(), "streamed");
            let (mut buf, mut got) = (Vec::new(), Vec::new());
            while let Next::Data(_) = s.next(&mut buf).unwrap() {
                got.extend_from_slice(&buf);
            }
            assert_eq!(got, whole, "{channel:?}");
        }
        // Cut short: refused at open, as a whole decode would.
        let bytes = std::fs::read(&p).unwrap();
        let cut = d.path().join("cut.wav");
        std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
        let mut s = FileSource::new(FileConfig::new(cut, None), 16000);
        s.stream_above = 0;
        let e = s.open().unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains("cut.wav"), "{e}");
    }

    #[test]
    fn a_missing_file_fails_to_open_with_its_path() {
        let mut s = FileSource::new(FileConfig::new("/nonexistent/x.wav".into(), Some(1.0)), 16000);
        let e = s.open().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/x.wav"), "{e}");
    }
}
