//! The last seconds of a stream's audio, shared between its stream thread (which appends) and
//! the event thread (which copies an alarm's window out as evidence).

use std::sync::{Arc, Mutex};

/// A ring of the newest `capacity` samples, with the absolute index of each.
#[derive(Debug, Clone)]
pub struct AudioRing {
    buf: Vec<f32>,
    /// Samples appended since the start (the absolute index of the next one).
    total: u64,
}

/// The ring as the threads share it.
pub type SharedRing = Arc<Mutex<AudioRing>>;

impl AudioRing {
    pub fn new(capacity: usize) -> Self {
        AudioRing { buf: vec![0.0; capacity.max(1)], total: 0 }
    }

    pub fn shared(capacity: usize) -> SharedRing {
        Arc::new(Mutex::new(Self::new(capacity)))
    }

    /// Append samples (only the newest `capacity` are kept).
    pub fn push(&mut self, block: &[f32]) {
        let cap = self.buf.len();
        let skip = block.len().saturating_sub(cap);
        self.total += skip as u64;
        for &x in &block[skip..] {
            let i = (self.total % cap as u64) as usize;
            self.buf[i] = x;
            self.total += 1;
        }
    }

    /// Samples `[from, to)` by absolute index, when all of them are still held.
    pub fn range(&self, from: u64, to: u64) -> Option<Vec<f32>> {
        let cap = self.buf.len() as u64;
        if to > self.total || from >= to || self.total - from > cap {
            return None;
        }
        Some((from..to).map(|k| self.buf[(k % cap) as usize]).collect())
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_samples_by_absolute_index() {
        let mut r = AudioRing::new(5);
        r.push(&[0.0, 1.0, 2.0]);
        r.push(&[3.0, 4.0, 5.0, 6.0]);
        assert_eq!(r.total(), 7);
        assert_eq!(r.range(2, 7), Some(vec![2.0, 3.0, 4.0, 5.0, 6.0]));
        assert_eq!(r.range(1, 3), None, "sample 1 is gone");
        assert_eq!(r.range(5, 8), None, "sample 7 has not arrived");
        r.push(&(10..30).map(|x| x as f32).collect::<Vec<_>>());
        assert_eq!(r.range(22, 27), Some(vec![25.0, 26.0, 27.0, 28.0, 29.0]));
        // A block longer than the ring by a count that is not a multiple of it.
        r.push(&(100..107).map(|x| x as f32).collect::<Vec<_>>());
        assert_eq!(r.range(29, 34), Some(vec![102.0, 103.0, 104.0, 105.0, 106.0]));
    }
}
