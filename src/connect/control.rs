//! What a task's thread and the runtime share: the state the runtime asks for (run, pause,
//! stop), the state the task is in, and its counters.
//!
//! Invariants:
//! 1. Only the runtime sets the target; only the task's thread sets its state, except that the
//!    runtime marks a task `Failed` when making it (the connector's `task`) panicked, and then
//!    starts no thread for it.
//! 2. A change of target wakes every wait of the task (its condition variable, and the blocked
//!    poll of a sink's consumer), so pause and stop take effect within one poll of the task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::consumer::WakeupHandle;

/// What the runtime wants a task to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Run,
    Pause,
    Stop,
}

/// The state of a connector or a task (Kafka Connect's states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectorState {
    /// Not running: starting, or stopped.
    Unassigned,
    /// Running.
    Running,
    /// Paused: a source task does not poll, a sink task does not consume.
    Paused,
    /// Stopped by an error or a panic; the status's `trace` says why. Restart it.
    Failed,
}

/// A task's shared state.
pub(crate) struct TaskControl {
    target: Mutex<Target>,
    cond: Condvar,
    wakeup: Mutex<Option<WakeupHandle>>,
    status: Mutex<(ConnectorState, Option<String>)>,
    /// Records handed to the task (sink) or written to topics (source).
    pub records: AtomicU64,
    /// Records skipped under `errors.tolerance=all`.
    pub skipped: AtomicU64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Offset commits done (source offsets stored, or consumer offsets committed).
    pub commits: AtomicU64,
}

impl TaskControl {
    pub fn new(target: Target) -> Self {
        TaskControl {
            target: Mutex::new(target),
            cond: Condvar::new(),
            wakeup: Mutex::new(None),
            status: Mutex::new((ConnectorState::Unassigned, None)),
            records: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        }
    }

    pub fn target(&self) -> Target {
        *self.target.lock()
    }

    /// Asks the task for `target` and wakes its waits (invariant 2).
    pub fn set_target(&self, target: Target) {
        *self.target.lock() = target;
        self.cond.notify_all();
        if let Some(w) = &*self.wakeup.lock() {
            w.wakeup();
        }
    }

    /// The handle that interrupts the task's consumer poll.
    pub fn set_wakeup(&self, wakeup: Option<WakeupHandle>) {
        *self.wakeup.lock() = wakeup;
    }

    /// Waits up to `timeout` while the target is `Run`; returns the target then.
    pub fn wait_while_running(&self, timeout: Duration) -> Target {
        let deadline = crate::storage::deadline_after(timeout);
        let mut target = self.target.lock();
        while *target == Target::Run {
            if self.cond.wait_until(&mut target, deadline).timed_out() {
                break;
            }
        }
        *target
    }

    /// Waits up to `timeout` while the target is `Pause`; returns the target then.
    pub fn wait_while_paused(&self, timeout: Duration) -> Target {
        let deadline = crate::storage::deadline_after(timeout);
        let mut target = self.target.lock();
        while *target == Target::Pause {
            if self.cond.wait_until(&mut target, deadline).timed_out() {
                break;
            }
        }
        *target
    }

    pub fn set_state(&self, state: ConnectorState, trace: Option<String>) {
        *self.status.lock() = (state, trace);
    }

    pub fn state(&self) -> (ConnectorState, Option<String>) {
        self.status.lock().clone()
    }

    pub fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Runs code of a connector or a task, turning a panic into `Err` with its message, so that it
/// never unwinds into the runtime (or through it into the application calling it).
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| panic_message(&*p))
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
