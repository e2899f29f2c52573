//! A driver runtime for tests that poll futures by hand: a clock that
//! stands still, timers that never fire, fixed "random" bytes, and a waker
//! that counts its wake-ups (one per simulated task). The tests bring their
//! own transport (`impl Io<Transport> for Rt`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use wsmachine::driver::{Runtime, Timer};

pub(crate) struct Rt;

// A test runtime's clock: read once, then it stands still.
#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Runtime for Rt {
    type Timer = NeverTimer;

    fn now() -> Instant {
        epoch()
    }

    fn timer() -> NeverTimer {
        NeverTimer
    }

    fn fill_random(buf: &mut [u8]) {
        buf.fill(0x5a);
    }
}

pub(crate) struct NeverTimer;

impl Timer for NeverTimer {
    fn reset(&mut self, _at: Instant) {}

    fn poll_elapsed(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

/// A waker that counts its wake-ups: one per simulated task.
#[derive(Default)]
pub(crate) struct Task(AtomicUsize);

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Task {
    pub(crate) fn new() -> (Arc<Task>, Waker) {
        let t = Arc::new(Task::default());
        let w = Waker::from(t.clone());
        (t, w)
    }

    pub(crate) fn woken(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}
