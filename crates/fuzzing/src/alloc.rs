//! A global allocator that counts, per thread, the bytes alive and their
//! peak, so a case's memory can be bounded by the size of its input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static CAP: Cell<isize> = const { Cell::new(isize::MAX) };
    /// The running case's input and where to save it if the cap is hit.
    static STASH: Cell<Option<(*const [u8], *const [u8])>> = const { Cell::new(None) };
}

/// The counting allocator. A fuzz test binary installs it with
/// `#[global_allocator] static A: polyarch_fuzzing::Counting = polyarch_fuzzing::Counting;`.
pub struct Counting;

fn grow(by: usize) -> bool {
    let by = by as isize;
    LIVE.try_with(|live| {
        let now = live.get().saturating_add(by);
        if now > CAP.with(Cell::get) {
            CAP.with(|c| c.set(isize::MAX));
            save_stash(by);
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

/// Records the running case's input and the file to save it to when it
/// hits the cap (the process aborts then, before any report could be made).
pub(crate) fn stash(input: Option<(&[u8], &[u8])>) {
    STASH.with(|s| s.set(input.map(|(i, p)| (i as *const [u8], p as *const [u8]))));
}

fn save_stash(asked: isize) {
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    let Some((input, path)) = STASH.with(Cell::take) else { return };
    // SAFETY: `stash` is set only for the duration of a case, while both
    // slices are borrowed by the caller.
    let (input, path) = unsafe { (&*input, &*path) };
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
    let saved = std::fs::File::create(path).and_then(|mut f| f.write_all(input)).is_ok();
    let mut err = std::io::stderr();
    let _ = err.write_all(b"fuzz case over the memory cap (asked ");
    let _ = writeln!(err, "{asked} bytes); input {}: {}", if saved { "saved" } else { "NOT saved" }, path.display());
}

/// Whether [`Counting`] is this process's global allocator.
pub(crate) fn installed() -> bool {
    let start = arm(usize::MAX);
    let v = std::hint::black_box(vec![0u8; 4096]);
    drop(v);
    disarm(start) >= 4096
}
