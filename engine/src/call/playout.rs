//! The agent's playout queue: TTS audio chunks of one utterance, cut into 20 ms
//! frames on demand; each chunk is tagged with the speech it belongs to.
//!
//! Pulling a frame copies samples into a caller-owned frame and never allocates.

use std::collections::VecDeque;
use voxline_codecs::{AudioFrame, FrameOrigin, SampleRate};

/// One chunk of agent audio waiting to be played.
struct Chunk {
    tag: u64,
    rate: SampleRate,
    samples: Vec<i16>,
    offset: usize,
}

/// Audio queued for the current agent utterance.
#[derive(Default)]
pub struct Playout {
    chunks: VecDeque<Chunk>,
    queued_samples: usize,
    paused: bool,
}

impl Playout {
    /// An empty queue.
    pub fn new() -> Self {
        Playout {
            chunks: VecDeque::with_capacity(64),
            ..Default::default()
        }
    }

    /// Appends audio of the speech `tag`; a frame never mixes two tags or two rates.
    pub fn push(&mut self, tag: u64, rate: SampleRate, samples: Vec<i16>) {
        if samples.is_empty() {
            return;
        }
        self.queued_samples += samples.len();
        self.chunks.push_back(Chunk {
            tag,
            rate,
            samples,
            offset: 0,
        });
    }

    /// Drops every queued sample (barge-in).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.queued_samples = 0;
        self.paused = false;
    }

    /// Drops the queued samples of one speech.
    pub fn discard(&mut self, tag: u64) {
        let mut removed = 0;
        self.chunks.retain(|c| {
            let keep = c.tag != tag;
            if !keep {
                removed += c.samples.len() - c.offset;
            }
            keep
        });
        self.queued_samples -= removed;
    }

    /// True when samples of speech `tag` are still queued.
    pub fn has(&self, tag: u64) -> bool {
        self.chunks.iter().any(|c| c.tag == tag)
    }

    /// Holds playout (possible interruption) without discarding audio.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// True while held.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// True when no audio is queued.
    pub fn is_empty(&self) -> bool {
        self.queued_samples == 0
    }

    /// Fills `out` with the next 20 ms of one speech (zero-padded where it ends) and
    /// returns that speech's tag; `None`, leaving `out` untouched, when paused or empty.
    pub fn pull(&mut self, out: &mut AudioFrame) -> Option<u64> {
        if self.paused || self.queued_samples == 0 {
            return None;
        }
        let (rate, tag) = match self.chunks.front() {
            Some(c) => (c.rate, c.tag),
            None => return None,
        };
        out.reset(rate, FrameOrigin::Generated);
        let want = rate.frame_samples();
        let mut filled = 0;
        let dst = out.samples_mut();
        while filled < want {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.rate != rate || front.tag != tag {
                break;
            }
            let avail = front.samples.len() - front.offset;
            let n = avail.min(want - filled);
            dst[filled..filled + n].copy_from_slice(&front.samples[front.offset..front.offset + n]);
            front.offset += n;
            filled += n;
            self.queued_samples -= n;
            if front.offset == front.samples.len() {
                self.chunks.pop_front();
            }
        }
        Some(tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_chunk_boundaries() {
        let mut p = Playout::new();
        p.push(1, SampleRate::Hz8000, (0..100).collect());
        p.push(1, SampleRate::Hz8000, (100..250).collect());
        p.push(2, SampleRate::Hz8000, vec![7; 10]);
        let mut f = AudioFrame::silent(SampleRate::Hz8000);
        assert_eq!(p.pull(&mut f), Some(1));
        assert_eq!(f.samples()[..3], [0, 1, 2]);
        assert_eq!(f.samples()[159], 159);
        assert_eq!(p.pull(&mut f), Some(1));
        assert_eq!(f.samples()[89], 249);
        assert_eq!(
            f.samples()[90],
            0,
            "padded with silence, not the next speech"
        );
        assert_eq!(p.pull(&mut f), Some(2));
        assert_eq!(p.pull(&mut f), None);
    }

    #[test]
    fn pause_holds_and_clear_discards() {
        let mut p = Playout::new();
        p.push(1, SampleRate::Hz16000, vec![1; 3200]);
        p.push(2, SampleRate::Hz16000, vec![1; 3200]);
        let mut f = AudioFrame::silent(SampleRate::Hz16000);
        p.set_paused(true);
        assert_eq!(p.pull(&mut f), None);
        p.set_paused(false);
        assert_eq!(p.pull(&mut f), Some(1));
        p.discard(1);
        assert!(!p.has(1));
        assert_eq!(p.pull(&mut f), Some(2));
        p.clear();
        assert!(p.is_empty());
        assert_eq!(p.pull(&mut f), None);
    }
}
