//! A global allocator that counts the live heap bytes of each thread, so a
//! test sees only its own allocations whatever the harness's other threads
//! do meanwhile (a process-wide count once caught them and failed one run
//! in four). Included with `#[path]` by the memory tests of core and of the
//! tokio adapter; installing it is the including file's one line:
//! `#[global_allocator] static A: live_bytes::LiveBytes = live_bytes::LiveBytes;`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub(crate) struct LiveBytes;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn add(delta: isize) {
    // `try_with`: the thread-local may already be gone while a thread exits.
    let _ = LIVE.try_with(|c| c.set(c.get() + delta));
}

/// The bytes this thread has allocated and not freed.
pub(crate) fn live() -> isize {
    LIVE.with(Cell::get)
}

unsafe impl GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        add(l.size() as isize);
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        add(l.size() as isize);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        add(-(l.size() as isize));
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        add(n as isize - l.size() as isize);
        unsafe { System.realloc(p, l, n) }
    }
}
