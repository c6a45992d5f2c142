//! Streaming extraction: blocks of any size in, log-mel frames and stacked vectors out as soon
//! as they are complete. Gives exactly the batch extractor's output (same kernel, same padding);
//! `finish` emits the frames that need right padding.
//!
//! Allocation: all buffers are sized in `new`; `push` never allocates. `finish` allocates only
//! for a reflect-padded stream shorter than n_fft/2 + 1 samples (handled by the batch path).

use super::{logmel_with, FeatureParams, FrameKernel, PadMode};

/// Turns samples into log-mel frames.
pub struct FrameStream {
    params: FeatureParams,
    kernel: FrameKernel,
    pad: usize,
    /// Padded signal from (at most) the next frame's start; capacity fixed.
    buf: Vec<f64>,
    /// Index in `buf` where the next frame starts.
    start: usize,
    /// Reflect mode: the first pad+1 samples, held until the left padding can be written.
    head: Vec<f64>,
    started: bool,
    n_samples: u64,
    frame_out: Vec<f32>,
}

impl FrameStream {
    /// `params` must be valid.
    pub fn new(params: &FeatureParams) -> Self {
        let pad = params.n_fft / 2;
        let capacity = 4 * params.n_fft.max(params.hop_length);
        let mut s = FrameStream {
            params: params.clone(),
            kernel: FrameKernel::new(params),
            pad,
            buf: Vec::with_capacity(capacity),
            start: 0,
            head: Vec::with_capacity(pad + 1),
            started: false,
            n_samples: 0,
            frame_out: vec![0.0; params.n_mels],
        };
        s.reset();
        s
    }

    pub fn params(&self) -> &FeatureParams {
        &self.params
    }

    /// Samples pushed since the last reset.
    pub fn samples_seen(&self) -> u64 {
        self.n_samples
    }

    /// Forget everything; the next sample is the first of a new signal.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.head.clear();
        self.start = 0;
        self.n_samples = 0;
        self.started = false;
        if self.params.pad_mode == PadMode::Constant {
            self.buf.resize(self.pad, 0.0);
            self.started = true;
        }
    }

    /// Feed samples; `on_frame` gets each completed log-mel frame (n_mels values) in order.
    /// Samples must be finite (callers check; a NaN would poison the frames it touches).
    pub fn push(&mut self, block: &[f32], on_frame: &mut impl FnMut(&[f32])) {
        self.n_samples += block.len() as u64;
        let mut rest = block;
        if !self.started {
            let take = (self.pad + 1 - self.head.len()).min(rest.len());
            self.head.extend(rest[..take].iter().map(|&x| x as f64));
            rest = &rest[take..];
            if self.head.len() < self.pad + 1 {
                return;
            }
            // Left reflect padding: x[pad], x[pad-1], ..., x[1], then the held samples.
            for i in (1..=self.pad).rev() {
                self.buf.push(self.head[i]);
            }
            self.buf.extend_from_slice(&self.head);
            self.started = true;
            self.drain_frames(on_frame);
        }
        while !rest.is_empty() {
            let room = self.buf.capacity() - self.buf.len();
            let take = room.min(rest.len());
            self.buf.extend(rest[..take].iter().map(|&x| x as f64));
            rest = &rest[take..];
            self.drain_frames(on_frame);
        }
    }

    /// End of signal: emit the frames that reach into the right padding, then reset.
    pub fn finish(&mut self, on_frame: &mut impl FnMut(&[f32])) {
        if self.n_samples == 0 {
            self.reset();
            return;
        }
        if !self.started {
            // Reflect mode with fewer than pad+1 samples: numpy reflects repeatedly.
            let signal: Vec<f32> = self.head.iter().map(|&x| x as f32).collect();
            if let Ok(lm) = logmel_with(&mut self.kernel, &self.params, &signal) {
                for frame in lm.data.chunks_exact(self.params.n_mels) {
                    on_frame(frame);
                }
            }
            self.reset();
            return;
        }
        // Right padding: zeros, or x[L-2], x[L-3], ..., x[L-1-pad] (buf keeps >= pad+1 samples).
        for i in 0..self.pad {
            let value = match self.params.pad_mode {
                PadMode::Constant => 0.0,
                PadMode::Reflect => {
                    // The last real sample sits at len-1-i after i pad values were pushed.
                    let last = self.buf.len() - 1 - 2 * i;
                    self.buf[last - 1]
                }
            };
            if self.buf.len() == self.buf.capacity() {
                self.compact();
            }
            self.buf.push(value);
            self.drain_frames(on_frame);
        }
        self.reset();
    }

    fn drain_frames(&mut self, on_frame: &mut impl FnMut(&[f32])) {
        let n_fft = self.params.n_fft;
        while self.start + n_fft <= self.buf.len() {
            self.kernel.process(&self.buf[self.start..self.start + n_fft], &mut self.frame_out);
            on_frame(&self.frame_out);
            self.start += self.params.hop_length;
        }
        if self.buf.len() == self.buf.capacity() {
            self.compact();
        }
    }

    /// Move the live tail to the front. Keeps the next frame's samples and, for reflect
    /// padding, at least pad+1 real samples plus the pad values already written after them.
    fn compact(&mut self) {
        let keep = 2 * self.pad + 1;
        let from = self.start.min(self.buf.len().saturating_sub(keep));
        self.buf.copy_within(from.., 0);
        self.buf.truncate(self.buf.len() - from);
        self.start -= from;
    }
}

/// Stacks consecutive frames into vectors (`frames` x `n_mels`, time order).
pub struct VectorStacker {
    n_mels: usize,
    frames: usize,
    /// Ring of the last `frames` frames.
    ring: Vec<f32>,
    next: usize,
    filled: usize,
    vector: Vec<f32>,
}

impl VectorStacker {
    pub fn new(n_mels: usize, frames: usize) -> Self {
        VectorStacker {
            n_mels,
            frames,
            ring: vec![0.0; n_mels * frames],
            next: 0,
            filled: 0,
            vector: vec![0.0; n_mels * frames],
        }
    }

    pub fn reset(&mut self) {
        self.next = 0;
        self.filled = 0;
    }

    /// Add one frame; emits a vector once `frames` frames have been seen.
    pub fn push(&mut self, frame: &[f32], on_vector: &mut impl FnMut(&[f32])) {
        let m = self.n_mels;
        self.ring[self.next * m..(self.next + 1) * m].copy_from_slice(frame);
        self.next = (self.next + 1) % self.frames;
        self.filled = (self.filled + 1).min(self.frames);
        if self.filled == self.frames {
            // Oldest frame is at `next`.
            for t in 0..self.frames {
                let slot = (self.next + t) % self.frames;
                self.vector[t * m..(t + 1) * m].copy_from_slice(&self.ring[slot * m..(slot + 1) * m]);
            }
            on_vector(&self.vector);
        }
    }
}

/// Samples in, stacked feature vectors out.
pub struct StreamingExtractor {
    frames: FrameStream,
    stacker: VectorStacker,
}

impl StreamingExtractor {
    /// `params` must be valid.
    pub fn new(params: &FeatureParams) -> Self {
        StreamingExtractor {
            frames: FrameStream::new(params),
            stacker: VectorStacker::new(params.n_mels, params.frames),
        }
    }

    pub fn params(&self) -> &FeatureParams {
        self.frames.params()
    }

    /// Feed samples; `on_vector` gets each completed vector in time order.
    pub fn push(&mut self, block: &[f32], mut on_vector: impl FnMut(&[f32])) {
        let stacker = &mut self.stacker;
        self.frames.push(block, &mut |f: &[f32]| stacker.push(f, &mut on_vector));
    }

    /// End of signal: flush the tail vectors, then reset for a new signal.
    pub fn finish(&mut self, mut on_vector: impl FnMut(&[f32])) {
        let stacker = &mut self.stacker;
        self.frames.finish(&mut |f: &[f32]| stacker.push(f, &mut on_vector));
        self.stacker.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::super::logmel;
    use super::*;
    use proptest::prelude::*;

    fn signal(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|i| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let noise = ((s >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.3;
                (noise + 0.4 * (i as f64 * 0.07).sin()) as f32
            })
            .collect()
    }

    fn stream_vectors(params: &FeatureParams, x: &[f32], blocks: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let mut frames_out = Vec::new();
        let mut fs = FrameStream::new(params);
        let mut ex = StreamingExtractor::new(params);
        let mut vecs = Vec::new();
        let mut pos = 0;
        let mut b = 0;
        while pos < x.len() {
            let n = blocks[b % blocks.len()].max(1).min(x.len() - pos);
            fs.push(&x[pos..pos + n], &mut |f: &[f32]| frames_out.extend_from_slice(f));
            ex.push(&x[pos..pos + n], |v| vecs.extend_from_slice(v));
            pos += n;
            b += 1;
        }
        fs.finish(&mut |f: &[f32]| frames_out.extend_from_slice(f));
        ex.finish(|v| vecs.extend_from_slice(v));
        (frames_out, vecs)
    }

    fn small_params(pad_mode: PadMode) -> FeatureParams {
        FeatureParams { n_fft: 64, hop_length: 16, n_mels: 8, frames: 3, pad_mode, ..FeatureParams::default() }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn streaming_equals_batch_for_any_block_sizes(
            len in 1usize..700,
            seed in any::<u64>(),
            blocks in proptest::collection::vec(1usize..200, 1..8),
            reflect in any::<bool>(),
            one_sample in any::<bool>(),
        ) {
            let params = small_params(if reflect { PadMode::Reflect } else { PadMode::Constant });
            let x = signal(len, seed);
            let blocks = if one_sample { vec![1] } else { blocks };
            let (frames, vecs) = stream_vectors(&params, &x, &blocks);
            let lm = logmel(&params, &x).unwrap();
            prop_assert_eq!(&frames, &lm.data);
            prop_assert_eq!(&vecs, &lm.vectors(params.frames).data);
        }
    }

    #[test]
    fn dcase_sized_stream_equals_batch_in_both_pad_modes() {
        let x = signal(16000 * 3 + 123, 7);
        for mode in [PadMode::Constant, PadMode::Reflect] {
            let params = FeatureParams { pad_mode: mode, ..FeatureParams::default() };
            let (frames, vecs) = stream_vectors(&params, &x, &[1, 511, 4096, 3]);
            let lm = logmel(&params, &x).unwrap();
            assert_eq!(frames, lm.data, "{mode}");
            assert_eq!(vecs, lm.vectors(5).data, "{mode}");
        }
    }

    #[test]
    fn extractor_is_reusable_after_finish() {
        let params = small_params(PadMode::Reflect);
        let mut ex = StreamingExtractor::new(&params);
        let x = signal(300, 1);
        let mut first = Vec::new();
        ex.push(&x, |v| first.extend_from_slice(v));
        ex.finish(|v| first.extend_from_slice(v));
        let mut second = Vec::new();
        ex.push(&x, |v| second.extend_from_slice(v));
        ex.finish(|v| second.extend_from_slice(v));
        assert_eq!(first, second);
        assert!(!first.is_empty());
    }

    #[test]
    fn steady_state_push_keeps_its_buffers() {
        let params = FeatureParams::default();
        let mut fs = FrameStream::new(&params);
        let cap = fs.buf.capacity();
        let x = signal(50_000, 3);
        let mut n = 0;
        for chunk in x.chunks(777) {
            fs.push(chunk, &mut |_f: &[f32]| n += 1);
            assert_eq!(fs.buf.capacity(), cap, "buffer reallocated");
        }
        assert_eq!(n, 50_000 / 512 + 1 - 1, "frames before finish: all whose window is complete");
    }
}
