//! WAV decoding with hound: PCM 8/16/24/32-bit and IEEE float32, any channel count, scaled to
//! [-1, 1) exactly as librosa/soundfile do (int16 / 32768, ...). Every failure names the file.

use std::path::Path;

use hound::{SampleFormat, WavReader, WavSpec, WavWriter};

use super::{resample::resample, AudioOptions, ChannelSelect};
use crate::error::InputError;

/// A decoded file: mono samples and the rate they are at.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    /// Channels in the file (before selection or mixing).
    pub channels: u16,
}

/// A WAV reader on `path`, a regular file only (a FIFO or device is refused at once); odd-sized
/// chunks before `data` may be padded (as the RIFF spec says) or not (as some writers do).
pub fn open_wav(path: &Path) -> hound::Result<WavReader<std::io::BufReader<Padless>>> {
    let mut f = crate::files::open_regular(path)?;
    let skip = pad_offsets(&mut f)?;
    WavReader::new(std::io::BufReader::new(Padless { inner: f, pos: 0, skip }))
}

/// A RIFF file as hound reads it: hound skips a chunk by its size and does not know the pad
/// byte that follows an odd-sized one, so those bytes are dropped on the way.
pub struct Padless {
    inner: std::fs::File,
    pos: u64,
    /// Offsets of the pad bytes to drop, ascending.
    skip: std::collections::VecDeque<u64>,
}

impl std::io::Read for Padless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.skip.front() == Some(&self.pos) {
            let mut pad = [0u8; 1];
            self.inner.read_exact(&mut pad)?;
            self.pos += 1;
            self.skip.pop_front();
        }
        let room = self.skip.front().map_or(buf.len() as u64, |&at| at - self.pos).min(buf.len() as u64) as usize;
        let n = self.inner.read(&mut buf[..room])?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Where the pad bytes of the odd-sized chunks before `data` are: a zero byte after the
/// chunk that is followed by a plausible chunk id (so an unpadded file, against the spec but
/// common, reads too). Leaves `f` at its start.
fn pad_offsets(f: &mut std::fs::File) -> std::io::Result<std::collections::VecDeque<u64>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut skip = std::collections::VecDeque::new();
    let len = f.metadata()?.len();
    let mut head = [0u8; 12];
    if f.read_exact(&mut head).is_ok() && &head[..4] == b"RIFF" && &head[8..] == b"WAVE" {
        let mut pos = 12u64;
        for _ in 0..64 {
            let mut ch = [0u8; 8];
            if pos + 8 > len || f.seek(SeekFrom::Start(pos)).and_then(|_| f.read_exact(&mut ch)).is_err() {
                break;
            }
            if &ch[..4] == b"data" {
                break;
            }
            let size = u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]) as u64;
            let mut next = pos + 8 + size;
            if size % 2 == 1 {
                let mut after = [0u8; 5];
                let padded = f.seek(SeekFrom::Start(next)).and_then(|_| f.read_exact(&mut after)).is_ok()
                    && after[0] == 0
                    && after[1..].iter().all(|b| b.is_ascii_graphic() || *b == b' ');
                if padded {
                    skip.push_back(next);
                    next += 1;
                }
            }
            pos = next;
        }
    }
    f.seek(SeekFrom::Start(0))?;
    Ok(skip)
}

fn describe(e: hound::Error) -> String {
    match e {
        hound::Error::IoError(io) if io.kind() == std::io::ErrorKind::NotFound => format!("cannot open: {io}"),
        hound::Error::IoError(io)
            if matches!(io.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::InvalidInput) =>
        {
            format!("cannot open: {io}")
        }
        hound::Error::IoError(io) => format!("truncated or empty: the file ends inside the WAV header ({io})"),
        hound::Error::FormatError(m) if m.contains("bits per sample") => {
            format!("unsupported encoding: {m} (PCM 8/16/24/32-bit or float32 expected)")
        }
        hound::Error::FormatError(m) => format!("not a valid WAV file: {m}"),
        hound::Error::Unsupported => "unsupported WAV encoding (PCM 8/16/24/32-bit or float32 expected)".into(),
        hound::Error::InvalidSampleFormat => "unsupported WAV sample format (PCM or float32 expected)".into(),
        hound::Error::TooWide => "sample width too large for its container".into(),
        hound::Error::UnfinishedSample => "file ends in the middle of a sample".into(),
    }
}

/// A header mpdr can read: channels and a rate, the channel asked for among them.
/// The sample rates a recording may have, Hz: below, a header is nonsense (a 1-Hz file
/// resampled to 16 kHz would need 16,000x its size); above, no microphone records.
pub const MIN_RATE: u32 = 1_000;
/// The most a file read whole (training, eval, `features`, a resampled replay) may decode to,
/// bytes of f32 samples: 1 GiB, about 4.6 h at 16 kHz.
pub const MAX_DECODE_BYTES: u64 = 1 << 30;
pub const MAX_RATE: u32 = 384_000;

fn check_spec(path: &Path, spec: &WavSpec, channel: ChannelSelect) -> Result<(), InputError> {
    let fail = |m: String| Err(InputError::new(path, m));
    if spec.channels == 0 {
        return fail("header declares 0 channels".into());
    }
    if !(MIN_RATE..=MAX_RATE).contains(&spec.sample_rate) {
        return fail(format!(
            "header declares a sample rate of {} Hz (expected {MIN_RATE} to {MAX_RATE} Hz)",
            spec.sample_rate
        ));
    }
    match channel {
        ChannelSelect::Index(c) if c >= spec.channels => {
            fail(format!("channel {c} requested but the file has {} channel(s) (0-based)", spec.channels))
        }
        _ => Ok(()),
    }
}

/// Decode a WAV file to mono f32 at its own rate, selecting or mixing channels: a
/// [`WavStream`] read to its end.
pub fn decode(path: &Path, channel: ChannelSelect) -> Result<Decoded, InputError> {
    decode_stream(WavStream::open(path, channel)?)
}

/// [`decode`] of an opened stream.
fn decode_stream(mut stream: WavStream) -> Result<Decoded, InputError> {
    let spec = stream.spec;
    let path = stream.path.clone();
    let path = path.as_path();
    let mut samples = Vec::with_capacity(stream.frames_present());
    // A block at a time, so a stop request is honoured during a long decode.
    let mut block = Vec::new();
    loop {
        stream.read(1 << 20, &mut block)?;
        if block.is_empty() {
            break;
        }
        if crate::cancel::requested() {
            return Err(InputError::new(path, crate::cancel::STOPPED));
        }
        samples.extend_from_slice(&block);
    }
    Ok(Decoded { samples, sample_rate: spec.sample_rate, channels: spec.channels })
}

/// Decode and bring to `target_rate`: resample when `opts.resample`, else refuse a mismatch.
pub fn read_mono(path: &Path, target_rate: u32, opts: &AudioOptions) -> Result<Vec<f32>, InputError> {
    // Bounded before anything is allocated: the samples at the file's rate and after resampling.
    let head = WavStream::open(path, opts.channel)?;
    let frames = head.frames_present() as u64;
    let resampled = frames * target_rate as u64 / head.sample_rate() as u64;
    let bytes = 4 * frames.max(if opts.resample { resampled } else { 0 });
    if bytes > MAX_DECODE_BYTES {
        return Err(InputError::new(
            path,
            format!(
                "{:.1} h of audio ({} MiB decoded) is more than a file read whole may hold ({} MiB): split it, or replay it with the monitor's file source at the model's rate, which streams it",
                frames as f64 / head.sample_rate() as f64 / 3600.0,
                bytes >> 20,
                MAX_DECODE_BYTES >> 20
            ),
        ));
    }
    let d = decode_stream(head)?;
    if d.samples.is_empty() {
        return Err(InputError::new(path, "contains no audio samples"));
    }
    if d.sample_rate == target_rate {
        return Ok(d.samples);
    }
    if !opts.resample {
        return Err(InputError::new(
            path,
            format!(
                "sample rate is {} Hz but {} Hz is configured (enable audio.resample / --resample to convert)",
                d.sample_rate, target_rate
            ),
        ));
    }
    tracing::info!(file = %path.display(), from = d.sample_rate, to = target_rate, "resampling");
    resample(&d.samples, d.sample_rate, target_rate).map_err(|e| InputError::new(path, e.to_string()))
}

/// A WAV file read a block at a time, mono at its own rate: how the file source replays hours
/// of audio without holding them (the same header checks, scaling and channel selection as
/// [`decode`]; a sample that is not finite, or data cut short, is an error when it is reached).
pub struct WavStream {
    path: std::path::PathBuf,
    reader: WavReader<std::io::BufReader<Padless>>,
    spec: WavSpec,
    channel: ChannelSelect,
    /// Interleaved samples declared by the header, and read so far.
    declared: usize,
    read: usize,
    interleaved: Vec<f32>,
}

impl WavStream {
    pub fn open(path: &Path, channel: ChannelSelect) -> Result<Self, InputError> {
        let fail = |m: String| InputError::new(path, m);
        let reader = open_wav(path).map_err(|e| fail(describe(e)))?;
        let spec = reader.spec();
        check_spec(path, &spec, channel)?;
        if !matches!(
            (spec.sample_format, spec.bits_per_sample),
            (SampleFormat::Float, 32) | (SampleFormat::Int, 8 | 16 | 24 | 32)
        ) {
            return Err(fail(format!(
                "unsupported encoding: {}-bit {} (PCM 8/16/24/32-bit or float32 expected)",
                spec.bits_per_sample,
                if spec.sample_format == SampleFormat::Float { "float" } else { "PCM" }
            )));
        }
        let declared = reader.len() as usize;
        Ok(WavStream { path: path.to_path_buf(), reader, spec, channel, declared, read: 0, interleaved: Vec::new() })
    }

    pub fn sample_rate(&self) -> u32 {
        self.spec.sample_rate
    }

    /// Mono frames in the file (as its header declares them).
    pub fn frames(&self) -> usize {
        self.declared / self.spec.channels as usize
    }

    /// Frames the file can actually hold: a header may declare far more data than there is (a
    /// 40 KB file asking for 16 GB), so sizes are bounded by this, never by the header alone.
    pub fn frames_present(&self) -> usize {
        let bytes_per_frame = (self.spec.bits_per_sample as usize).div_ceil(8).max(1) * self.spec.channels as usize;
        let room = std::fs::metadata(&self.path).map(|m| m.len() as usize / bytes_per_frame).unwrap_or(0);
        self.frames().min(room)
    }

    /// The next (up to) `frames` mono samples into `out` (cleared); none at the end.
    pub fn read(&mut self, frames: usize, out: &mut Vec<f32>) -> Result<(), InputError> {
        out.clear();
        let channels = self.spec.channels as usize;
        let n = frames.saturating_mul(channels).min(self.declared - self.read);
        // A mono file is read straight into `out`; others through the interleaved buffer.
        let buf = if channels == 1 {
            &mut *out
        } else {
            self.interleaved.clear();
            &mut self.interleaved
        };
        let got = match (self.spec.sample_format, self.spec.bits_per_sample) {
            (SampleFormat::Float, _) => pull(self.reader.samples::<f32>(), n, 1.0, buf),
            (_, 8) => pull(self.reader.samples::<i8>(), n, 1.0 / 128.0, buf),
            (_, 16) => pull(self.reader.samples::<i16>(), n, 1.0 / 32768.0, buf),
            (_, 24) => pull(self.reader.samples::<i32>(), n, 1.0 / 8388608.0, buf),
            _ => pull(self.reader.samples::<i32>(), n, 1.0 / 2147483648.0, buf),
        };
        if let Err(e) = got {
            let message = match e {
                // hound reports a short read of the samples as an I/O error of kind `Other`
                // ("Failed to read enough bytes"), or as `UnexpectedEof`: either way, cut short.
                hound::Error::IoError(_) => format!(
                    "truncated: header declares {} samples but the data ends after {}",
                    self.declared,
                    self.read + buf.len()
                ),
                e => describe(e),
            };
            return Err(InputError::new(&self.path, message));
        }
        if let Some(i) = buf.iter().position(|s| !s.is_finite()) {
            let at = self.read + i;
            let message = format!("sample {at} (frame {}) is {}: audio must be finite", at / channels, buf[i]);
            return Err(InputError::new(&self.path, message));
        }
        self.read += buf.len();
        match self.channel {
            _ if channels == 1 => {}
            ChannelSelect::Index(c) => out.extend(self.interleaved.iter().skip(c as usize).step_by(channels)),
            ChannelSelect::Mix => out.extend(
                self.interleaved
                    .chunks_exact(channels)
                    .map(|f| (f.iter().map(|&s| s as f64).sum::<f64>() / channels as f64) as f32),
            ),
        }
        Ok(())
    }
}

/// Up to `n` samples of `samples`, scaled, appended to `out`.
fn pull<T, I>(samples: I, n: usize, scale: f32, out: &mut Vec<f32>) -> Result<(), hound::Error>
where
    T: Into<f64>,
    I: Iterator<Item = hound::Result<T>>,
{
    for s in samples.take(n) {
        out.push((s?.into() as f32) * scale);
    }
    Ok(())
}

/// Write interleaved samples as 16-bit PCM (clipped to [-1, 1]).
pub fn write_pcm16(path: &Path, sample_rate: u32, channels: u16, interleaved: &[f32]) -> Result<(), InputError> {
    let spec = WavSpec { channels, sample_rate, bits_per_sample: 16, sample_format: SampleFormat::Int };
    let fail = |e: hound::Error| InputError::new(path, format!("cannot write WAV: {e}"));
    let mut w = WavWriter::create(path, spec).map_err(fail)?;
    for &s in interleaved {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).map_err(fail)?;
    }
    w.finalize().map_err(fail)
}

/// Write mono 16-bit PCM block by block: `fill` is asked for blocks until `n` samples are
/// written (hours of audio without holding them in memory).
pub fn write_pcm16_blocks(
    path: &Path,
    sample_rate: u32,
    n: usize,
    mut fill: impl FnMut(&mut [f32]),
) -> Result<(), InputError> {
    let spec = WavSpec { channels: 1, sample_rate, bits_per_sample: 16, sample_format: SampleFormat::Int };
    let fail = |e: hound::Error| InputError::new(path, format!("cannot write WAV: {e}"));
    let mut w = WavWriter::create(path, spec).map_err(fail)?;
    let mut block = vec![0f32; sample_rate.max(1) as usize];
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len());
        fill(&mut block[..k]);
        for &s in &block[..k] {
            w.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).map_err(fail)?;
        }
        left -= k;
    }
    w.finalize().map_err(fail)
}

/// Write interleaved samples as IEEE float32.
pub fn write_f32(path: &Path, sample_rate: u32, channels: u16, interleaved: &[f32]) -> Result<(), InputError> {
    let spec = WavSpec { channels, sample_rate, bits_per_sample: 32, sample_format: SampleFormat::Float };
    let fail = |e: hound::Error| InputError::new(path, format!("cannot write WAV: {e}"));
    let mut w = WavWriter::create(path, spec).map_err(fail)?;
    for &s in interleaved {
        w.write_sample(s).map_err(fail)?;
    }
    w.finalize().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_declaring_more_data_than_the_file_holds_is_truncated_not_an_allocation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("liar.wav");
        write_pcm16(&p, 16000, 1, &vec![0.25; 20_000]).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        let at = bytes.windows(4).position(|w| w == b"data").unwrap() + 4;
        bytes[at..at + 4].copy_from_slice(&0xfff0_0000u32.to_le_bytes()); // ~4 GB of data
        std::fs::write(&p, bytes).unwrap();
        let e = read_mono(&p, 16000, &AudioOptions::default()).unwrap_err().to_string();
        assert!(e.contains("liar.wav") && e.contains("truncated"), "{e}");
    }

    #[test]
    fn an_odd_sized_chunk_reads_padded_as_the_spec_says_and_unpadded_as_some_writers_do() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("plain.wav");
        let x: Vec<f32> = (0..1000).map(|i| ((i % 50) as f32 - 25.0) / 100.0).collect();
        write_pcm16(&p, 16000, 1, &x).unwrap();
        let plain = std::fs::read(&p).unwrap();
        let want = read_mono(&p, 16000, &AudioOptions::default()).unwrap();
        let at = plain.windows(4).position(|w| w == b"data").unwrap();
        for padded in [true, false] {
            // A 3-byte LIST chunk before the data: odd, so the spec pads it with one byte.
            let mut chunk = b"LIST\x03\0\0\0abc".to_vec();
            if padded {
                chunk.push(0);
            }
            let mut bytes = plain[..at].to_vec();
            bytes.extend_from_slice(&chunk);
            bytes.extend_from_slice(&plain[at..]);
            let riff = (bytes.len() - 8) as u32;
            bytes[4..8].copy_from_slice(&riff.to_le_bytes());
            let q = d.path().join(format!("list-{padded}.wav"));
            std::fs::write(&q, &bytes).unwrap();
            let got = read_mono(&q, 16000, &AudioOptions::default()).unwrap_or_else(|e| panic!("padded {padded}: {e}"));
            assert_eq!(got, want, "padded {padded}");
        }
    }
}
