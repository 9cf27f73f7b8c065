//! CPU time of the calling thread, for the examples that measure cost (the load harness's codec
//! floor, `wake_cost`).

use std::time::Duration;

/// CPU time the calling thread has used, from `/proc/thread-self/schedstat` (Linux); `None`
/// where that file is missing or unreadable.
pub fn this_thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        stat.split_whitespace().next()?.parse().ok()?,
    ))
}
