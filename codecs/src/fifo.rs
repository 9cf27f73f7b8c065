//! A fixed-capacity sample queue that turns packets of any duration into 20 ms frames.
//!
//! Decoders write whole packets at the tail and hand out frames from the head;
//! encoders queue frames and take packet-sized runs. The storage is allocated
//! once, and each sample carries its [`FrameOrigin`] so a frame assembled from
//! a received half and a concealed half is reported as concealed.

use crate::{AudioFrame, CodecError, FrameOrigin, SampleRate};

/// A linear queue of mono samples with per-sample origin, compacted on demand.
pub(crate) struct SampleFifo {
    rate: SampleRate,
    samples: Box<[i16]>,
    origins: Box<[FrameOrigin]>,
    head: usize,
    tail: usize,
}

/// How strongly an origin marks a frame: the strongest origin in a frame wins.
const fn severity(origin: FrameOrigin) -> u8 {
    match origin {
        FrameOrigin::Received => 0,
        FrameOrigin::Generated => 1,
        FrameOrigin::Recovered => 2,
        FrameOrigin::Concealed => 3,
    }
}

impl SampleFifo {
    /// A queue at `rate` holding up to `capacity_ms` of audio.
    pub(crate) fn new(rate: SampleRate, capacity_ms: usize) -> Self {
        let cap = rate.samples_per_ms() * capacity_ms;
        SampleFifo {
            rate,
            samples: vec![0; cap].into_boxed_slice(),
            origins: vec![FrameOrigin::Received; cap].into_boxed_slice(),
            head: 0,
            tail: 0,
        }
    }

    /// Samples queued.
    pub(crate) fn len(&self) -> usize {
        self.tail - self.head
    }

    /// Whole 20 ms frames ready to pop.
    pub(crate) fn frames_ready(&self) -> usize {
        self.len() / self.rate.frame_samples()
    }

    /// Drops everything queued.
    pub(crate) fn clear(&mut self) {
        self.head = 0;
        self.tail = 0;
    }

    /// A writable run of exactly `n` samples at the tail; publish it with [`Self::commit`].
    pub(crate) fn reserve(&mut self, n: usize) -> Result<&mut [i16], CodecError> {
        let free = self.samples.len() - self.len();
        if n > free {
            return Err(CodecError::QueueFull { needed: n, free });
        }
        if self.tail + n > self.samples.len() {
            self.samples.copy_within(self.head..self.tail, 0);
            self.origins.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            self.head = 0;
        }
        Ok(&mut self.samples[self.tail..self.tail + n])
    }

    /// Publishes `n` samples written into the run returned by [`Self::reserve`].
    pub(crate) fn commit(&mut self, n: usize, origin: FrameOrigin) {
        let n = n.min(self.samples.len() - self.tail);
        self.origins[self.tail..self.tail + n].fill(origin);
        self.tail += n;
    }

    /// Appends `samples` with the given origin.
    pub(crate) fn push(&mut self, samples: &[i16], origin: FrameOrigin) -> Result<(), CodecError> {
        self.reserve(samples.len())?.copy_from_slice(samples);
        self.commit(samples.len(), origin);
        Ok(())
    }

    /// The oldest `n` samples, if that many are queued.
    pub(crate) fn front(&self, n: usize) -> Option<&[i16]> {
        (self.len() >= n).then(|| &self.samples[self.head..self.head + n])
    }

    /// Drops the oldest `n` samples (at most all of them).
    pub(crate) fn consume(&mut self, n: usize) {
        self.head += n.min(self.len());
        if self.head == self.tail {
            self.clear();
        }
    }

    /// Removes the oldest 20 ms as a frame, marked with the strongest origin among its samples.
    pub(crate) fn pop_frame(&mut self) -> Option<AudioFrame> {
        let mut frame = AudioFrame::silent(self.rate);
        self.pop_frame_into(&mut frame).then_some(frame)
    }

    /// Like [`Self::pop_frame`], but writes into `out` (only the frame's samples are copied);
    /// returns false, leaving `out` as it was, when less than 20 ms is queued.
    pub(crate) fn pop_frame_into(&mut self, out: &mut AudioFrame) -> bool {
        let n = self.rate.frame_samples();
        let Some(samples) = self.front(n) else {
            return false;
        };
        let origins = &self.origins[self.head..self.head + n];
        // Almost always one origin for the whole frame: a byte compare that vectorizes.
        let first = origins.first().copied().unwrap_or_default();
        let origin = if origins.iter().all(|&o| o == first) {
            first
        } else {
            origins
                .iter()
                .copied()
                .max_by_key(|&o| severity(o))
                .unwrap_or_default()
        };
        // `samples` is exactly one frame at the queue's rate, so this cannot fail.
        let copied = out.fill_from(self.rate, origin, samples).is_ok();
        self.consume(n);
        copied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_frames_join_into_whole_frames() {
        let mut f = SampleFifo::new(SampleRate::Hz8000, 60);
        f.push(&[1; 80], FrameOrigin::Received).unwrap();
        assert!(f.pop_frame().is_none());
        f.push(&[2; 80], FrameOrigin::Concealed).unwrap();
        let frame = f.pop_frame().unwrap();
        assert_eq!(frame.origin(), FrameOrigin::Concealed);
        assert_eq!(frame.samples()[0], 1);
        assert_eq!(frame.samples()[159], 2);
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn pop_into_reuses_the_frame() {
        let mut f = SampleFifo::new(SampleRate::Hz8000, 60);
        let mut out = AudioFrame::silent(SampleRate::Hz16000);
        assert!(!f.pop_frame_into(&mut out));
        assert_eq!(out.rate(), SampleRate::Hz16000);
        f.push(&[7; 160], FrameOrigin::Recovered).unwrap();
        assert!(f.pop_frame_into(&mut out));
        assert_eq!(out.rate(), SampleRate::Hz8000);
        assert_eq!(out.origin(), FrameOrigin::Recovered);
        assert_eq!(out.samples(), &[7; 160][..]);
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn compacts_and_reports_overflow() {
        let mut f = SampleFifo::new(SampleRate::Hz8000, 60);
        for _ in 0..100 {
            f.push(&[3; 240], FrameOrigin::Received).unwrap();
            while f.pop_frame().is_some() {}
        }
        assert!(f.len() < 160);
        let err = f.push(&[0; 481], FrameOrigin::Received).unwrap_err();
        assert!(matches!(err, CodecError::QueueFull { .. }), "{err}");
    }
}
