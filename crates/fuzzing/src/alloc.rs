//! A global allocator that counts, per thread, the bytes alive and their
//! peak, so a case's memory can be bounded by the size of its input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static CAP: Cell<isize> = const { Cell::new(isize::MAX) };
}

/// The counting allocator. A fuzz test binary installs it with
/// `#[global_allocator] static A: polyarch_fuzzing::Counting = polyarch_fuzzing::Counting;`.
pub struct Counting;

fn grow(by: usize) -> bool {
    let by = by as isize;
    LIVE.try_with(|live| {
        let now = live.get().saturating_add(by);
        if now > CAP.with(Cell::get) {
            return false;
        }
        live.set(now);
        PEAK.with(|p| p.set(p.get().max(now)));
        true
    })
    .unwrap_or(true)
}

fn shrink(by: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(by as isize)));
}

// SAFETY: every call is forwarded to `System` unchanged; only counters of
// this thread are touched, and they never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !grow(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !grow(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            if !grow(new_size - layout.size()) {
                return std::ptr::null_mut();
            }
        } else {
            shrink(layout.size() - new_size);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Starts a measurement on this thread: the peak is reset to what is alive
/// now, and allocations past `cap` more bytes fail (the process aborts with
/// the size asked, instead of swapping the machine to death).
pub(crate) fn arm(cap: usize) -> isize {
    let live = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(live));
    CAP.with(|c| c.set(live.saturating_add(cap.min(isize::MAX as usize) as isize)));
    live
}

/// Ends a measurement: the peak number of bytes allocated above `start`.
pub(crate) fn disarm(start: isize) -> usize {
    CAP.with(|c| c.set(isize::MAX));
    PEAK.with(Cell::get).saturating_sub(start).max(0) as usize
}

/// Whether [`Counting`] is this process's global allocator.
pub(crate) fn installed() -> bool {
    let start = arm(usize::MAX);
    let v = std::hint::black_box(vec![0u8; 4096]);
    drop(v);
    disarm(start) >= 4096
}
