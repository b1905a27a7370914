//! Waking readers: `AppendSignal` and deadlines that cannot overflow.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// A wake-up for threads that wait for appends to any of several logs: a counter that appends
/// bump, and a condition variable to sleep on between bumps.
#[derive(Debug, Default)]
pub(crate) struct AppendSignal {
    seq: Mutex<u64>,
    cond: Condvar,
}

impl AppendSignal {
    /// Bumps the counter and wakes the waiter.
    pub fn notify(&self) {
        *self.seq.lock() += 1;
        self.cond.notify_all();
    }

    /// The counter now; pass it to [`wait_past`](Self::wait_past) after checking for data, so an
    /// append between the check and the wait is not missed.
    pub fn current(&self) -> u64 {
        *self.seq.lock()
    }

    /// Sleeps until the counter moves past `seen` or `deadline` passes; returns whether it moved.
    pub fn wait_past(&self, seen: u64, deadline: Instant) -> bool {
        let mut seq = self.seq.lock();
        while *seq == seen {
            if self.cond.wait_until(&mut seq, deadline).timed_out() {
                return *seq != seen;
            }
        }
        true
    }
}

/// `Instant::now() + timeout`, or a deadline decades away when that would overflow.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}
