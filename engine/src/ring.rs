//! Bounded lock-free single-producer/single-consumer rings for the media path.
//!
//! Frames cross from the media side to async tasks (and back) through these: a
//! push never blocks or allocates, a full ring drops the value and counts it,
//! and the consumer can await new values through an atomic waker.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;

use atomic_waker::AtomicWaker;
use crossbeam::queue::ArrayQueue;

struct Shared<T> {
    queue: ArrayQueue<T>,
    waker: AtomicWaker,
    closed: AtomicBool,
    dropped: AtomicU64,
}

/// The sending half of a ring; owned by exactly one producer.
pub struct RingProducer<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving half of a ring; owned by exactly one consumer.
pub struct RingConsumer<T> {
    shared: Arc<Shared<T>>,
}

/// Creates a ring holding at most `capacity` values (at least one).
pub fn ring<T>(capacity: usize) -> (RingProducer<T>, RingConsumer<T>) {
    let shared = Arc::new(Shared {
        queue: ArrayQueue::new(capacity.max(1)),
        waker: AtomicWaker::new(),
        closed: AtomicBool::new(false),
        dropped: AtomicU64::new(0),
    });
    (
        RingProducer {
            shared: shared.clone(),
        },
        RingConsumer { shared },
    )
}

impl<T> RingProducer<T> {
    /// Pushes a value and wakes the consumer; when the ring is full the value
    /// is dropped, counted, and `false` is returned (the producer never waits).
    pub fn push(&self, value: T) -> bool {
        let stored = self.shared.queue.push(value).is_ok();
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

impl<T> Drop for RingProducer<T> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.waker.wake();
    }
}

impl<T> RingConsumer<T> {
    /// Takes the oldest value, if any, without waiting.
    pub fn try_pop(&self) -> Option<T> {
        self.shared.queue.pop()
    }

    /// Waits for the next value; `None` once the producer is gone and the ring is drained.
    pub async fn recv(&self) -> Option<T> {
        poll_fn(|cx| {
            if let Some(v) = self.shared.queue.pop() {
                return Poll::Ready(Some(v));
            }
            self.shared.waker.register(cx.waker());
            if let Some(v) = self.shared.queue.pop() {
                return Poll::Ready(Some(v));
            }
            if self.shared.closed.load(Ordering::Acquire) {
                return Poll::Ready(self.shared.queue.pop());
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

impl<T> Drop for RingConsumer<T> {
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
