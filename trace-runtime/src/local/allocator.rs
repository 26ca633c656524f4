//! [`TracedAllocator`]: a global allocator that records the heap while a session records.

use std::alloc::{GlobalAlloc, Layout};

#[cfg(feature = "enable")]
use std::sync::atomic::Ordering;

#[cfg(feature = "enable")]
use crate::local::recorder::record_heap;
#[cfg(feature = "enable")]
use crate::switch::LEVEL;

/// The blocks a [`TracedAllocator::new`] records: those of at least this many bytes.
pub const DEFAULT_MIN_RECORDED_BYTES: usize = 1024;

/// A global allocator that passes every call to `inner` and, while a profiler session
/// records, records each allocation and free: TensorBoard's Memory Profile then shows the
/// heap in use over time, per step, and which traced function allocated what.
///
/// ```
/// #[global_allocator]
/// static HEAP: trace_runtime::TracedAllocator<std::alloc::System> =
///     trace_runtime::TracedAllocator::new(std::alloc::System);
/// # fn main() {}
/// ```
///
/// * **Off** (no session, or the `enable` feature off), a call costs `inner`'s plus one
///   relaxed load.
/// * **What it records**: blocks of at least [`DEFAULT_MIN_RECORDED_BYTES`] (change it with
///   [`min_recorded_bytes`](Self::min_recorded_bytes)), each allocation and each free as
///   one 24-byte record in the thread's buffer, like an event's. Smaller allocations are
///   not recorded, so that a program that allocates millions of small blocks a second does
///   not fill its buffers with them; on a thread that has a buffer in the session (it
///   recorded a scope or a larger block), they are counted (how many, how many bytes). A
///   small allocation alone never sets a buffer up. A block's free
///   is recorded exactly when its allocation is: both see the same size. A `realloc` is a
///   free and an allocation.
/// * **Heap in use** counts the recorded blocks allocated since the session started and not
///   freed yet; blocks allocated before it are not counted, and their frees are left out.
/// * Recording never allocates, never re-enters itself and takes no lock, except a thread's
///   first record in a session, which attaches its buffer; the allocations made for that
///   (and any made while the profiler holds its own lock) are the profiler's and are not
///   recorded.
pub struct TracedAllocator<A> {
    inner: A,
    min_bytes: usize,
}

impl<A> TracedAllocator<A> {
    /// Wraps `inner`, recording blocks of at least [`DEFAULT_MIN_RECORDED_BYTES`].
    pub const fn new(inner: A) -> Self {
        TracedAllocator {
            inner,
            min_bytes: DEFAULT_MIN_RECORDED_BYTES,
        }
    }

    /// The same allocator recording blocks of at least `bytes` (0 or 1: every block).
    pub const fn min_recorded_bytes(mut self, bytes: usize) -> Self {
        self.min_bytes = bytes;
        self
    }

    /// The allocator it passes calls to.
    pub const fn inner(&self) -> &A {
        &self.inner
    }

    /// Records a block obtained at `ptr` (null: nothing was).
    #[inline(always)]
    fn obtained(&self, ptr: *mut u8, size: usize) {
        #[cfg(feature = "enable")]
        if LEVEL.load(Ordering::Relaxed) != 0 && !ptr.is_null() {
            record_heap(ptr as usize, size, false, self.min_bytes);
        }
        #[cfg(not(feature = "enable"))]
        let _ = (ptr, size);
    }

    /// Records a block about to be given back: before it is, so that the record precedes
    /// that of whichever thread gets the block next.
    #[inline(always)]
    fn giving_back(&self, ptr: *mut u8, size: usize) {
        #[cfg(feature = "enable")]
        if LEVEL.load(Ordering::Relaxed) != 0 {
            record_heap(ptr as usize, size, true, self.min_bytes);
        }
        #[cfg(not(feature = "enable"))]
        let _ = (ptr, size);
    }
}

// SAFETY: every call is passed to `inner` with the caller's arguments and its result is
// returned unchanged; recording only reads the pointers and sizes.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TracedAllocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `inner`'s.
        let ptr = unsafe { self.inner.alloc(layout) };
        self.obtained(ptr, layout.size());
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`. Passed on, not built from `alloc`: an allocator's zeroed
        // memory can cost no page until it is written.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        self.obtained(ptr, layout.size());
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.giving_back(ptr, layout.size());
        // SAFETY: as for `alloc`.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        #[cfg(feature = "enable")]
        if LEVEL.load(Ordering::Relaxed) != 0 {
            let old = layout.size();
            record_heap(ptr as usize, old, true, self.min_bytes);
            // SAFETY: as for `alloc`.
            let moved = unsafe { self.inner.realloc(ptr, layout, new_size) };
            match moved.is_null() {
                // The old block is still the program's.
                true => record_heap(ptr as usize, old, false, self.min_bytes),
                false => record_heap(moved as usize, new_size, false, self.min_bytes),
            }
            return moved;
        }
        // SAFETY: as for `alloc`.
        unsafe { self.inner.realloc(ptr, layout, new_size) }
    }
}
