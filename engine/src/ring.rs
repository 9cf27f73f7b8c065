//! Bounded lock-free single-producer/single-consumer rings for the media path.
//!
//! Frames cross from the media side to async tasks (and back) through these: a
//! push never blocks or allocates, a full ring drops the value and counts it,
//! and the consumer can await new values through an atomic waker.
//!
//! A ring may keep its values packed ([`Stored`]): the caller audio for a speech provider
//! ([`speech_ring`]) is kept at most 24 kHz wide, half an [`AudioFrame`]'s storage.

use std::future::poll_fn;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;

use atomic_waker::AtomicWaker;
use crossbeam::queue::ArrayQueue;
use voxline_codecs::{AudioFrame, FrameOrigin, SampleRate};

/// How a ring keeps the values of type `T` it holds: as they are (every `T` for itself), or
/// packed into a smaller slot.
pub trait Stored<T>: Sized {
    /// The value as the ring keeps it; `Err(value)` when it does not fit (the push then drops
    /// and counts it like a push into a full ring).
    fn pack(value: T) -> Result<Self, T>;
    /// The value back, as it was pushed.
    fn unpack(self) -> T;
}

impl<T> Stored<T> for T {
    fn pack(value: T) -> Result<T, T> {
        Ok(value)
    }

    fn unpack(self) -> T {
        self
    }
}

/// Samples a [`SpeechSlot`] holds: one 20 ms frame at 24 kHz.
pub const SPEECH_SLOT_SAMPLES: usize = 480;

/// A caller frame as a [`speech_ring`] keeps it: 8, 16 or 24 kHz (the driver hands speech
/// providers 8 or 16 kHz; a realtime session may take 24 kHz), in under 1 KB instead of an
/// [`AudioFrame`]'s 1.9 KB sized for 48 kHz, so the second of audio a call's ring holds costs
/// 48 KB instead of 96 KB. A 48 kHz frame does not fit and is counted as dropped.
#[derive(Clone, Copy)]
pub struct SpeechSlot {
    rate: SampleRate,
    origin: FrameOrigin,
    samples: [i16; SPEECH_SLOT_SAMPLES],
}

impl Stored<AudioFrame> for SpeechSlot {
    fn pack(frame: AudioFrame) -> Result<Self, AudioFrame> {
        let samples = frame.samples();
        if samples.len() > SPEECH_SLOT_SAMPLES {
            return Err(frame);
        }
        let mut slot = SpeechSlot {
            rate: frame.rate(),
            origin: frame.origin(),
            samples: [0; SPEECH_SLOT_SAMPLES],
        };
        slot.samples[..samples.len()].copy_from_slice(samples);
        Ok(slot)
    }

    fn unpack(self) -> AudioFrame {
        let mut frame = AudioFrame::silent(self.rate);
        frame.set_origin(self.origin);
        let n = frame.samples().len();
        frame.samples_mut().copy_from_slice(&self.samples[..n]);
        frame
    }
}

/// The sending half of the caller-audio ring for a speech provider (see [`speech_ring`]).
pub type SpeechRingProducer = RingProducer<AudioFrame, SpeechSlot>;

/// The receiving half of the caller-audio ring a speech provider reads (see [`speech_ring`]).
pub type SpeechRing = RingConsumer<AudioFrame, SpeechSlot>;

/// A ring of caller frames for a speech provider, at most `capacity` frames, each kept in a
/// [`SpeechSlot`]: frames go in and come out as [`AudioFrame`]s.
pub fn speech_ring(capacity: usize) -> (SpeechRingProducer, SpeechRing) {
    packed_ring(capacity)
}

struct Shared<T> {
    queue: ArrayQueue<T>,
    waker: AtomicWaker,
    closed: AtomicBool,
    dropped: AtomicU64,
}

/// The sending half of a ring of `T`s kept as `S`; owned by exactly one producer.
pub struct RingProducer<T, S = T> {
    shared: Arc<Shared<S>>,
    values: PhantomData<fn(T) -> T>,
}

/// The receiving half of a ring of `T`s kept as `S`; owned by exactly one consumer.
pub struct RingConsumer<T, S = T> {
    shared: Arc<Shared<S>>,
    values: PhantomData<fn(T) -> T>,
}

/// Creates a ring holding at most `capacity` values (at least one).
pub fn ring<T>(capacity: usize) -> (RingProducer<T>, RingConsumer<T>) {
    packed_ring(capacity)
}

/// Creates a ring holding at most `capacity` values (at least one), each kept as an `S`.
pub fn packed_ring<T, S: Stored<T>>(capacity: usize) -> (RingProducer<T, S>, RingConsumer<T, S>) {
    let shared = Arc::new(Shared {
        queue: ArrayQueue::new(capacity.max(1)),
        waker: AtomicWaker::new(),
        closed: AtomicBool::new(false),
        dropped: AtomicU64::new(0),
    });
    (
        RingProducer {
            shared: shared.clone(),
            values: PhantomData,
        },
        RingConsumer {
            shared,
            values: PhantomData,
        },
    )
}

impl<T, S: Stored<T>> RingProducer<T, S> {
    /// Pushes a value and wakes the consumer; when the ring is full (or the value does not
    /// fit its slot) the value is dropped, counted, and `false` is returned (the producer
    /// never waits).
    pub fn push(&self, value: T) -> bool {
        let stored = S::pack(value).is_ok_and(|slot| self.shared.queue.push(slot).is_ok());
        if !stored {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.waker.wake();
        stored
    }

    /// Values dropped because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Values currently waiting in the ring.
    pub fn len(&self) -> usize {
        self.shared.queue.len()
    }

    /// True when no value is waiting.
    pub fn is_empty(&self) -> bool {
        self.shared.queue.is_empty()
    }

    /// True once the consumer has gone away.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }
}

impl<T, S> Drop for RingProducer<T, S> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.waker.wake();
    }
}

impl<T, S: Stored<T>> RingConsumer<T, S> {
    /// Takes the oldest value, if any, without waiting.
    pub fn try_pop(&self) -> Option<T> {
        self.shared.queue.pop().map(S::unpack)
    }

    /// Waits for the next value; `None` once the producer is gone and the ring is drained.
    pub async fn recv(&self) -> Option<T> {
        poll_fn(|cx| {
            if let Some(v) = self.try_pop() {
                return Poll::Ready(Some(v));
            }
            self.shared.waker.register(cx.waker());
            if let Some(v) = self.try_pop() {
                return Poll::Ready(Some(v));
            }
            if self.shared.closed.load(Ordering::Acquire) {
                return Poll::Ready(self.try_pop());
            }
            Poll::Pending
        })
        .await
    }

    /// Discards every waiting value, returning how many were discarded.
    pub fn clear(&self) -> usize {
        let mut n = 0;
        while self.shared.queue.pop().is_some() {
            n += 1;
        }
        n
    }

    /// Values dropped by the producer because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Values currently waiting in the ring.
    pub fn len(&self) -> usize {
        self.shared.queue.len()
    }

    /// True when no value is waiting.
    pub fn is_empty(&self) -> bool {
        self.shared.queue.is_empty()
    }
}

impl<T, S> Drop for RingConsumer<T, S> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ring_drops_and_counts() {
        let (tx, rx) = ring::<u32>(2);
        assert!(tx.push(1));
        assert!(tx.push(2));
        assert!(!tx.push(3));
        assert_eq!(tx.dropped(), 1);
        assert_eq!(rx.try_pop(), Some(1));
        assert_eq!(rx.clear(), 1);
        assert!(rx.is_empty());
    }

    #[test]
    fn a_speech_ring_gives_back_the_frames_it_was_given_in_half_the_room() {
        assert!(std::mem::size_of::<SpeechSlot>() <= std::mem::size_of::<AudioFrame>() / 2 + 2);
        let (tx, rx) = speech_ring(4);
        let rates = [SampleRate::Hz8000, SampleRate::Hz16000, SampleRate::Hz24000];
        for (k, rate) in rates.into_iter().enumerate() {
            let mut frame = AudioFrame::silent(rate);
            frame.reset(rate, FrameOrigin::Concealed);
            for (i, s) in frame.samples_mut().iter_mut().enumerate() {
                *s = (i as i16 + 1) * (k as i16 + 1);
            }
            assert!(tx.push(frame));
            let back = rx.try_pop().expect("the frame");
            assert_eq!(back.rate(), rate);
            assert_eq!(back.origin(), FrameOrigin::Concealed);
            assert_eq!(back.samples(), frame.samples());
        }
        // A 48 kHz frame does not fit a slot: dropped and counted, never cut short.
        assert!(!tx.push(AudioFrame::silent(SampleRate::Hz48000)));
        assert_eq!(rx.dropped(), 1);
        assert!(rx.is_empty());
    }

    #[tokio::test]
    async fn recv_wakes_and_ends_when_producer_drops() {
        let (tx, rx) = ring::<u32>(8);
        let consumer = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
            got
        });
        for i in 0..5 {
            tx.push(i);
            tokio::task::yield_now().await;
        }
        drop(tx);
        assert_eq!(consumer.await.unwrap(), vec![0, 1, 2, 3, 4]);
    }
}
