//! [`CountingAlloc`]: a global allocator that counts live heap bytes, for memory benchmarks.
//!
//! ```
//! use aether_testkit::alloc::CountingAlloc;
//!
//! // In a benchmark binary:
//! // #[global_allocator]
//! // static ALLOC: CountingAlloc = CountingAlloc::new();
//! let alloc = CountingAlloc::new();
//! assert_eq!(alloc.live_bytes(), 0);
//! ```

// The only unsafe code of the workspace: implementing `GlobalAlloc` is impossible without it.
// The workspace denies (rather than forbids) `unsafe_code` so that this module alone may.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Wraps [`System`] and keeps the number of live (allocated, not yet freed) heap bytes, as
/// requested by callers: the allocator's own per-block overhead is not included.
///
/// Install it with `#[global_allocator]`; every allocation then costs a relaxed atomic
/// update, so use it in memory benchmarks only, never in timing ones.
#[derive(Debug)]
pub struct CountingAlloc {
    live: AtomicUsize,
}

impl CountingAlloc {
    /// A counter at zero.
    pub const fn new() -> Self {
        Self {
            live: AtomicUsize::new(0),
        }
    }

    /// Heap bytes currently allocated through this allocator.
    pub fn live_bytes(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    fn grew(&self, bytes: usize) {
        self.live.fetch_add(bytes, Ordering::Relaxed);
    }

    fn shrank(&self, bytes: usize) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Default for CountingAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees carry over; the counter is only updated after a successful allocation and never
// affect what is returned.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            self.grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            self.grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        self.shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::realloc`'s contract.
        let new_ptr = unsafe { System.realloc(ptr, layout, new_size) };
        if !new_ptr.is_null() {
            self.shrank(layout.size());
            self.grew(new_size);
        }
        new_ptr
    }
}
