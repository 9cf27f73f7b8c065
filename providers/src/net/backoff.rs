//! The one retry policy: exponential backoff with jitter, a cap on attempts, and the
//! server's `Retry-After` honoured when it gives one.
//!
//! Waiting goes through a [`Sleeper`], so tests observe the delays without sleeping, and
//! the jitter comes from a small seedable generator, so a seeded policy is deterministic.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use voxline_engine::provider::{BoxFuture, ProviderError};

/// How a failed provider request is retried. Plain data; [`Backoff::start`] makes a schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    /// Total attempts including the first; 1 disables retries.
    pub max_attempts: u32,
    /// The delay before the first retry, before jitter.
    pub initial_delay: Duration,
    /// Each retry waits this many times longer than the one before.
    pub multiplier: f64,
    /// Upper bound for the computed (not the server-requested) delay.
    pub max_delay: Duration,
    /// Fraction of each computed delay that is randomised, 0..=1: the delay is drawn
    /// uniformly from `[d * (1 - jitter), d]`.
    pub jitter: f64,
    /// The longest server-requested wait (`Retry-After`) worth waiting on a live call;
    /// a longer one ends the retries so the caller can fall back at once.
    pub max_retry_after: Duration,
    /// Seed for the jitter; `None` seeds from the OS's per-process randomness.
    pub seed: Option<u64>,
}

impl Default for Backoff {
    /// Three attempts, 200 ms doubling to at most 2 s, half jitter, server waits up to 5 s:
    /// short enough that a caller on the phone never waits long for a failing provider.
    fn default() -> Self {
        Backoff {
            max_attempts: 3,
            initial_delay: Duration::from_millis(200),
            multiplier: 2.0,
            max_delay: Duration::from_secs(2),
            jitter: 0.5,
            max_retry_after: Duration::from_secs(5),
            seed: None,
        }
    }
}

impl Backoff {
    /// A policy that never retries.
    pub fn none() -> Self {
        Backoff {
            max_attempts: 1,
            ..Backoff::default()
        }
    }

    /// Starts a retry schedule for one operation.
    pub fn start(&self) -> BackoffSchedule {
        let seed = self.seed.unwrap_or_else(random_seed);
        BackoffSchedule {
            policy: self.clone(),
            attempts: 1,
            rng: SplitMix64(seed),
        }
    }
}

/// The retry state of one operation: how many attempts were made, what to wait next.
#[derive(Clone, Debug)]
pub struct BackoffSchedule {
    policy: Backoff,
    attempts: u32,
    rng: SplitMix64,
}

impl BackoffSchedule {
    /// Attempts made so far (the first counts).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The wait before the next attempt, or `None` when the attempts are used up or the
    /// server asked for a longer wait than `max_retry_after`. A server's `retry_after`
    /// replaces the computed delay.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        if self.attempts >= self.policy.max_attempts {
            return None;
        }
        let delay = match retry_after {
            Some(wait) if wait > self.policy.max_retry_after => return None,
            Some(wait) => wait,
            None => self.computed_delay(),
        };
        self.attempts += 1;
        Some(delay)
    }

    fn computed_delay(&mut self) -> Duration {
        let retry_index = self.attempts.saturating_sub(1);
        let exp = self.policy.multiplier.max(1.0).powi(retry_index as i32);
        let base = self.policy.initial_delay.as_secs_f64() * exp;
        let capped = base.min(self.policy.max_delay.as_secs_f64()).max(0.0);
        let jitter = self.policy.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter * self.rng.next_f64();
        Duration::from_secs_f64(capped * factor)
    }
}

/// Waits for a duration. The default is tokio's timer; tests substitute one that records.
pub trait Sleeper: Send + Sync {
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// Sleeps on the tokio timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A sleeper that returns at once and remembers every requested wait, for tests.
#[derive(Clone, Debug, Default)]
pub struct RecordingSleeper {
    waits: Arc<Mutex<Vec<Duration>>>,
}

impl RecordingSleeper {
    /// A sleeper with no recorded waits.
    pub fn new() -> Self {
        RecordingSleeper::default()
    }

    /// The waits requested so far, in order.
    pub fn waits(&self) -> Vec<Duration> {
        self.waits.lock().map(|w| w.clone()).unwrap_or_default()
    }
}

impl Sleeper for RecordingSleeper {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        if let Ok(mut w) = self.waits.lock() {
            w.push(duration);
        }
        Box::pin(tokio::task::yield_now())
    }
}

/// A shared sleeper handle, as stored in provider configs.
#[derive(Clone)]
pub struct SharedSleeper(pub Arc<dyn Sleeper>);

impl SharedSleeper {
    /// Wraps a sleeper.
    pub fn new(sleeper: impl Sleeper + 'static) -> Self {
        SharedSleeper(Arc::new(sleeper))
    }
}

impl Default for SharedSleeper {
    fn default() -> Self {
        SharedSleeper::new(TokioSleeper)
    }
}

impl fmt::Debug for SharedSleeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSleeper")
    }
}

impl Sleeper for SharedSleeper {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.0.sleep(duration)
    }
}

/// Runs `op` until it succeeds, fails with a non-retryable error, or the policy gives up.
/// `op` gets the attempt number (from 1). A `RateLimited` error's `retry_after` is honoured.
pub async fn retry<T, F, Fut>(
    policy: &Backoff,
    sleeper: &dyn Sleeper,
    mut op: F,
) -> Result<T, ProviderError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut schedule = policy.start();
    loop {
        let err = match op(schedule.attempts()).await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        if !err.is_retryable() {
            return Err(err);
        }
        let retry_after = match &err {
            ProviderError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        };
        match schedule.next_delay(retry_after) {
            Some(delay) => sleeper.sleep(delay).await,
            None => return Err(err),
        }
    }
}

/// SplitMix64: tiny, fast, good enough to spread retries; not for cryptography.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn random_seed() -> u64 {
    RandomState::new().build_hasher().finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded() -> Backoff {
        Backoff {
            max_attempts: 4,
            initial_delay: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_millis(300),
            jitter: 0.5,
            max_retry_after: Duration::from_secs(1),
            seed: Some(7),
        }
    }

    #[test]
    fn delays_grow_are_capped_and_jittered_deterministically() {
        let a: Vec<_> = {
            let mut s = seeded().start();
            std::iter::from_fn(|| s.next_delay(None)).collect()
        };
        let b: Vec<_> = {
            let mut s = seeded().start();
            std::iter::from_fn(|| s.next_delay(None)).collect()
        };
        assert_eq!(a, b, "same seed, same schedule");
        assert_eq!(a.len(), 3, "4 attempts = 3 waits");
        let bounds = [(50, 100), (100, 200), (150, 300)];
        for (d, (lo, hi)) in a.iter().zip(bounds) {
            let ms = d.as_secs_f64() * 1000.0;
            assert!(
                ms >= lo as f64 && ms <= hi as f64,
                "{ms} not in {lo}..={hi}"
            );
        }
    }

    #[test]
    fn no_jitter_is_exact() {
        let policy = Backoff {
            jitter: 0.0,
            ..seeded()
        };
        let mut s = policy.start();
        assert_eq!(s.next_delay(None), Some(Duration::from_millis(100)));
        assert_eq!(s.next_delay(None), Some(Duration::from_millis(200)));
        assert_eq!(s.next_delay(None), Some(Duration::from_millis(300)));
        assert_eq!(s.next_delay(None), None);
    }

    #[test]
    fn retry_after_replaces_the_delay_and_long_waits_give_up() {
        let mut s = seeded().start();
        assert_eq!(
            s.next_delay(Some(Duration::from_millis(700))),
            Some(Duration::from_millis(700))
        );
        assert_eq!(s.next_delay(Some(Duration::from_secs(30))), None);
        assert_eq!(s.attempts(), 2);
    }

    #[test]
    fn none_never_retries() {
        assert_eq!(Backoff::none().start().next_delay(None), None);
    }

    #[tokio::test]
    async fn retry_stops_on_success_and_on_permanent_errors() {
        let sleeper = RecordingSleeper::new();
        let mut calls = 0;
        let out = retry(&seeded(), &sleeper, |attempt| {
            calls += 1;
            async move {
                if attempt < 3 {
                    Err(ProviderError::RateLimited {
                        provider: "p".into(),
                        retry_after: Some(Duration::from_millis(5)),
                    })
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(out, Ok(3));
        assert_eq!(calls, 3);
        assert_eq!(sleeper.waits(), vec![Duration::from_millis(5); 2]);

        let mut calls = 0;
        let out: Result<(), _> = retry(&seeded(), &sleeper, |_| {
            calls += 1;
            async {
                Err(ProviderError::Auth {
                    provider: "p".into(),
                    status: 401,
                })
            }
        })
        .await;
        assert_eq!(out.unwrap_err().kind(), "auth");
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn retry_gives_up_after_max_attempts() {
        let sleeper = RecordingSleeper::new();
        let mut calls = 0;
        let out: Result<(), _> = retry(&seeded(), &sleeper, |_| {
            calls += 1;
            async {
                Err(ProviderError::Http {
                    provider: "p".into(),
                    status: 503,
                    body: String::new(),
                })
            }
        })
        .await;
        assert_eq!(out.unwrap_err().kind(), "http");
        assert_eq!(calls, 4);
        assert_eq!(sleeper.waits().len(), 3);
    }
}
