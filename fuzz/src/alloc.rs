//! A counting global allocator, so targets can bound the peak of live heap
//! bytes per iteration (a decompression bomb or a header that reserves its
//! declared length shows up here even when nothing panics).
//!
//! The fuzz binaries and the regression test install it with
//! `#[global_allocator]`; when it is not installed (a plain library user),
//! [`Peak::check`] does nothing. Counters are per thread: libFuzzer runs one
//! input at a time on one thread, and `cargo test` runs each test on its own
//! thread, so parallel tests do not see each other's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The counting allocator: [`System`] plus per-thread live and peak byte counts.
#[derive(Debug)]
pub struct CountingAlloc;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn add(n: isize) {
    // `try_with`: never panic inside the allocator, even during thread teardown.
    let _ = LIVE.try_with(|live| {
        let v = live.get().wrapping_add(n);
        live.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v)
            }
        });
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments and
// only updates thread-local counters, which neither allocate nor unwind.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        p
    }
}

fn live() -> isize {
    LIVE.try_with(Cell::get).unwrap_or(0)
}

/// Whether [`CountingAlloc`] is the global allocator of this program.
pub fn is_counting() -> bool {
    let before = live();
    let b = std::hint::black_box(Box::new([0u8; 64]));
    let after = live();
    drop(b);
    after != before
}

/// The peak of live heap bytes on this thread since [`Peak::start`].
#[derive(Debug)]
pub struct Peak {
    base: isize,
    active: bool,
}

impl Peak {
    /// Starts measuring from the current live size.
    pub fn start() -> Peak {
        let active = is_counting();
        let base = live();
        let _ = PEAK.try_with(|p| p.set(base));
        Peak { base, active }
    }

    /// Bytes above the start at the highest point so far (0 when not counting).
    pub fn peak(&self) -> usize {
        if !self.active {
            return 0;
        }
        let p = PEAK.try_with(Cell::get).unwrap_or(self.base);
        usize::try_from(p - self.base).unwrap_or(0)
    }

    /// Panics if the peak passed `bound` (no-op when the allocator is not installed).
    pub fn check(&self, bound: usize, what: &str) {
        let peak = self.peak();
        assert!(
            peak <= bound,
            "{what}: peak live heap {peak} bytes exceeds the bound of {bound} bytes"
        );
    }
}
