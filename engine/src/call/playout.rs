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
        let tag = self.chunks.front()?.tag;
        self.pull_from(tag, out)
    }

    /// Like [`pull`](Self::pull), but only from speech `tag`: speeches play in their own
    /// order, whatever order their audio arrived in. `None` when `tag` has nothing queued.
    pub fn pull_from(&mut self, tag: u64, out: &mut AudioFrame) -> Option<u64> {
        if self.paused || self.queued_samples == 0 {
            return None;
        }
        let first = self.chunks.iter().position(|c| c.tag == tag)?;
        let rate = self.chunks[first].rate;
        out.reset(rate, FrameOrigin::Generated);
        let want = rate.frame_samples();
        let mut filled = 0;
        let dst = out.samples_mut();
        let mut i = first;
        while filled < want && i < self.chunks.len() {
            let chunk = &mut self.chunks[i];
            if chunk.tag != tag {
                i += 1;
                continue;
            }
            if chunk.rate != rate {
                break;
            }
            let avail = chunk.samples.len() - chunk.offset;
            let n = avail.min(want - filled);
            dst[filled..filled + n].copy_from_slice(&chunk.samples[chunk.offset..chunk.offset + n]);
            chunk.offset += n;
            filled += n;
            self.queued_samples -= n;
            if chunk.offset == chunk.samples.len() {
                // Dropping the drained chunk shifts the rest down; `i` now names the next one.
                self.chunks.remove(i);
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
    fn speeches_play_in_their_own_order() {
        let mut p = Playout::new();
        p.push(1, SampleRate::Hz8000, vec![1; 100]);
        p.push(2, SampleRate::Hz8000, vec![2; 160]);
        p.push(1, SampleRate::Hz8000, vec![1; 160]);
        let mut f = AudioFrame::silent(SampleRate::Hz8000);
        assert_eq!(p.pull_from(1, &mut f), Some(1));
        assert!(
            f.samples().iter().all(|&s| s == 1),
            "speech 2's audio is not mixed in"
        );
        assert_eq!(p.pull_from(1, &mut f), Some(1));
        assert_eq!(f.samples()[99], 1);
        assert_eq!(f.samples()[100], 0);
        assert_eq!(p.pull_from(1, &mut f), None);
        assert_eq!(p.pull_from(2, &mut f), Some(2));
        assert!(p.is_empty());
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
