//! Thread-per-core workers for calls.
//!
//! A call's media clock wakes it every 20 ms and each wake-up touches the same state: its
//! codecs, jitter buffer and VAD. On a work-stealing runtime the call's task moves between
//! threads, so that state is pulled from another core's cache, and every timer that fires on
//! one thread wakes an idle sibling to steal the work. [`CallWorkers`] runs one single-threaded
//! tokio runtime per thread (timers, I/O reactor and tasks of its own) and keeps a call on the
//! worker it was given for the call's whole life: a call's tasks (provider sessions, the
//! driver) share that worker, and a worker's timers are served by one thread without waking
//! another.
//!
//! A media thread that waits behind other threads for a CPU sends its frames late: on a busy
//! machine the kernel's time-sharing scheduler may queue one engine thread behind another, or
//! behind anything else the process or the machine runs, for several milliseconds. A host that
//! owns the machine can give media threads a real-time priority ([`ThreadPriority`]): on the
//! pool with [`CallWorkers::set_priority`], on a tokio runtime of its own with
//! [`set_current_thread_priority`] in the builder's `on_thread_start`.
//!
//! Spawn the whole call on a worker, sockets included: a `tokio::net` socket belongs to the
//! reactor of the runtime it is created in, so create it inside the spawned future (or within
//! [`CallWorker::handle`]`.enter()`).

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle as ThreadHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A pool of single-threaded runtimes, one per thread; each spawned call stays on its worker.
pub struct CallWorkers {
    workers: Vec<CallWorker>,
    threads: Vec<(oneshot::Sender<()>, ThreadHandle<()>)>,
}

/// One worker of a [`CallWorkers`] pool: spawn onto it, or enter its runtime.
#[derive(Clone, Debug)]
pub struct CallWorker {
    index: usize,
    handle: Handle,
    live: Arc<AtomicUsize>,
}

impl CallWorkers {
    /// Starts `threads` workers (at least one) on threads named `{name}-{index}`.
    pub fn new(threads: usize, name: &str) -> io::Result<Self> {
        let count = threads.max(1);
        let mut workers = Vec::with_capacity(count);
        let mut running = Vec::with_capacity(count);
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    // The worker serves its tasks until the pool goes; then they are dropped.
                    runtime.block_on(async move {
                        let _ = stopped.await;
                    });
                })?;
            workers.push(CallWorker {
                index,
                handle,
                live: Arc::new(AtomicUsize::new(0)),
            });
            running.push((stop, thread));
        }
        Ok(CallWorkers {
            workers,
            threads: running,
        })
    }

    /// One worker per core the process may use.
    pub fn per_core(name: &str) -> io::Result<Self> {
        Self::new(available_cores(), name)
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Never true: a pool has at least one worker.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// The worker with the fewest live tasks spawned through the pool (the first of equals).
    pub fn least_loaded(&self) -> &CallWorker {
        self.workers
            .iter()
            .min_by_key(|w| w.live())
            .expect("a pool has at least one worker")
    }

    /// Worker `index` (`index % len()`).
    pub fn worker(&self, index: usize) -> &CallWorker {
        &self.workers[index % self.workers.len()]
    }

    /// Runs `task` on the least loaded worker.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.least_loaded().spawn(task)
    }

    /// Gives every worker thread `priority` (see [`ThreadPriority`]), waiting until each has
    /// applied it; the first refusal is returned (workers before it keep the new priority).
    ///
    /// Call it from outside the pool's workers: it waits for each of them in turn, and panics if
    /// called from inside an async context.
    pub fn set_priority(&self, priority: ThreadPriority) -> Result<(), PriorityError> {
        for worker in &self.workers {
            let (tx, rx) = oneshot::channel();
            worker.handle.spawn(async move {
                let _ = tx.send(set_current_thread_priority(priority));
            });
            rx.blocking_recv()
                .map_err(|_| PriorityError::WorkerGone)??;
        }
        Ok(())
    }

    /// Live tasks per worker, in worker order.
    pub fn live(&self) -> Vec<usize> {
        self.workers.iter().map(CallWorker::live).collect()
    }
}

impl Drop for CallWorkers {
    /// Stops every worker (their unfinished tasks are dropped) and joins the threads.
    fn drop(&mut self) {
        for (stop, thread) in self.threads.drain(..) {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

impl CallWorker {
    /// Position in the pool.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The worker's runtime, to create sockets on (`handle().enter()`).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Tasks spawned on this worker through the pool that have not finished.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Runs `task` on this worker; it counts as live until it finishes or is dropped.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let live = Live::new(self.live.clone());
        self.handle.spawn(async move {
            let _live = live;
            task.await
        })
    }
}

/// Counts a task as live from spawn to completion, cancellation or the runtime's end.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Live(count)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How the operating system schedules a media thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThreadPriority {
    /// The time-sharing class every thread starts in: the thread shares CPUs fairly with every
    /// other, so it may wait a scheduler slice (a few ms) behind them when CPUs are busy.
    #[default]
    Normal,
    /// Fixed real-time priority 1–99 (Linux `SCHED_FIFO`): a ready thread runs before every
    /// time-shared thread, and rather than queue it behind a real-time thread of its level or
    /// above, the kernel moves it to a CPU that runs none. Needs `CAP_SYS_NICE` or an
    /// `RLIMIT_RTPRIO` allowance. The kernel keeps 5 % of every second for time-shared threads
    /// (`sched_rt_runtime_us`), so an overloaded engine slows the machine but cannot lock it.
    Realtime(u8),
}

/// Why a thread's priority could not be set.
#[derive(Debug, thiserror::Error)]
pub enum PriorityError {
    /// Real-time priorities run from 1 to 99.
    #[error("real-time priority {0} is outside 1..=99")]
    OutOfRange(u8),
    /// The kernel refused (typically `EPERM`: no `CAP_SYS_NICE` and no `RLIMIT_RTPRIO` room).
    #[error("the system refused the thread priority: {0}")]
    Refused(io::Error),
    /// Real-time thread priority is implemented for Linux only.
    #[error("real-time thread priority is supported on Linux only")]
    Unsupported,
    /// A worker's runtime stopped before it applied the priority.
    #[error("a worker stopped before it applied the priority")]
    WorkerGone,
}

/// Sets the calling thread's scheduling class and priority (see [`ThreadPriority`]).
#[cfg(target_os = "linux")]
pub fn set_current_thread_priority(priority: ThreadPriority) -> Result<(), PriorityError> {
    let (policy, level) = match priority {
        ThreadPriority::Normal => (libc::SCHED_OTHER, 0),
        ThreadPriority::Realtime(p @ 1..=99) => (libc::SCHED_FIFO, i32::from(p)),
        ThreadPriority::Realtime(p) => return Err(PriorityError::OutOfRange(p)),
    };
    let param = libc::sched_param {
        sched_priority: level,
    };
    // SAFETY: `param` is a valid `sched_param` for the call's duration; pid 0 is this thread.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } == 0 {
        Ok(())
    } else {
        Err(PriorityError::Refused(io::Error::last_os_error()))
    }
}

/// Sets the calling thread's scheduling class and priority (see [`ThreadPriority`]).
#[cfg(not(target_os = "linux"))]
pub fn set_current_thread_priority(priority: ThreadPriority) -> Result<(), PriorityError> {
    match priority {
        ThreadPriority::Normal => Ok(()),
        ThreadPriority::Realtime(_) => Err(PriorityError::Unsupported),
    }
}

/// The cores this process may use (1 when the system cannot say).
pub(crate) fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// The calling thread's scheduling policy and priority, read back from the kernel.
    #[cfg(target_os = "linux")]
    fn current_policy() -> (i32, i32) {
        let mut param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is this thread; `param` is a live `sched_param` to write into.
        let policy = unsafe { libc::sched_getscheduler(0) };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::sched_getparam(0, &mut param) }, 0);
        (policy, param.sched_priority)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_priority_is_applied_or_refused_with_a_typed_error() {
        std::thread::spawn(|| {
            for bad in [0, 100] {
                let refused = set_current_thread_priority(ThreadPriority::Realtime(bad));
                assert!(
                    matches!(refused, Err(PriorityError::OutOfRange(p)) if p == bad),
                    "{refused:?}"
                );
            }
            assert_eq!(current_policy(), (libc::SCHED_OTHER, 0));
            // Allowed where the process may use real-time scheduling, refused elsewhere; either
            // way the kernel's view matches what the call said.
            match set_current_thread_priority(ThreadPriority::Realtime(3)) {
                Ok(()) => assert_eq!(current_policy(), (libc::SCHED_FIFO, 3)),
                Err(PriorityError::Refused(e)) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
                    assert_eq!(current_policy(), (libc::SCHED_OTHER, 0));
                }
                Err(e) => panic!("{e}"),
            }
            set_current_thread_priority(ThreadPriority::Normal).unwrap();
            assert_eq!(current_policy(), (libc::SCHED_OTHER, 0));
        })
        .join()
        .unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_pool_gives_every_worker_thread_the_priority() {
        let pool = CallWorkers::new(2, "vx-test").unwrap();
        let policy_of =
            |i: usize| block_on(pool.worker(i).spawn(async { current_policy() })).unwrap();
        let expected = match pool.set_priority(ThreadPriority::Realtime(2)) {
            Ok(()) => (libc::SCHED_FIFO, 2),
            Err(PriorityError::Refused(_)) => (libc::SCHED_OTHER, 0),
            Err(e) => panic!("{e}"),
        };
        assert_eq!((policy_of(0), policy_of(1)), (expected, expected));
        // This thread is not one of the pool's.
        assert_eq!(current_policy(), (libc::SCHED_OTHER, 0));
        pool.set_priority(ThreadPriority::Normal).unwrap();
        let normal = (libc::SCHED_OTHER, 0);
        assert_eq!((policy_of(0), policy_of(1)), (normal, normal));
    }

    #[test]
    fn tasks_go_to_the_least_loaded_worker_and_are_counted_until_they_end() {
        let pool = CallWorkers::new(2, "vx-test").unwrap();
        let (release, released) = tokio::sync::watch::channel(false);
        let mut joins = Vec::new();
        for _ in 0..5 {
            let mut released = released.clone();
            joins.push(pool.spawn(async move {
                let _ = released.wait_for(|r| *r).await;
            }));
        }
        assert_eq!(pool.live(), vec![3, 2]);
        release.send(true).unwrap();
        block_on(async {
            for j in joins {
                j.await.unwrap();
            }
        });
        assert_eq!(pool.live(), vec![0, 0]);
    }

    #[test]
    fn a_task_stays_on_its_worker_thread_across_timers_and_yields() {
        let pool = CallWorkers::new(2, "vx-test").unwrap();
        let joins: Vec<_> = (0..4)
            .map(|i| {
                pool.worker(i).spawn(async move {
                    let mut seen = Vec::new();
                    for _ in 0..10 {
                        seen.push(std::thread::current().name().map(str::to_owned));
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        tokio::task::yield_now().await;
                        // Tasks it spawns run on the same worker.
                        let inner = tokio::spawn(async {
                            std::thread::current().name().map(str::to_owned)
                        });
                        seen.push(inner.await.unwrap());
                    }
                    seen
                })
            })
            .collect();
        block_on(async {
            for (i, j) in joins.into_iter().enumerate() {
                let seen = j.await.unwrap();
                let expected = Some(format!("vx-test-{}", i % 2));
                assert!(seen.iter().all(|n| *n == expected), "{seen:?}");
            }
        });
    }

    #[test]
    fn a_panicking_task_fails_alone_and_the_worker_goes_on() {
        let pool = CallWorkers::new(1, "vx-test").unwrap();
        let bad = pool.spawn(async { panic!("a call's task failed") });
        let good = pool.spawn(async { 7 });
        block_on(async {
            assert!(bad.await.unwrap_err().is_panic());
            assert_eq!(good.await.unwrap(), 7);
        });
        assert_eq!(pool.live(), vec![0]);
        let after = pool.spawn(async { 8 });
        assert_eq!(block_on(after).unwrap(), 8);
    }

    #[test]
    fn dropping_the_pool_stops_unfinished_tasks_and_joins_the_threads() {
        let pool = CallWorkers::new(2, "vx-test").unwrap();
        let forever = pool.spawn(std::future::pending::<()>());
        let counter = pool.worker(0).live.clone();
        drop(pool);
        assert_eq!(counter.load(Ordering::Relaxed), 0);
        assert!(block_on(forever).unwrap_err().is_cancelled());
    }

    #[test]
    fn at_least_one_worker() {
        let pool = CallWorkers::new(0, "vx-test").unwrap();
        assert_eq!(pool.len(), 1);
        assert!(!pool.is_empty());
    }
}
