//! The switch: the few atomics that every call site and recording thread reads, and that
//! only `collector::session` flips, at start and stop.
//!
//! A call site with recording off reads [`LEVEL`] alone, with one relaxed load.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// The recording level: 0 when off, else the highest level recorded. The only thing a
/// disabled call site reads.
pub(crate) static LEVEL: AtomicU8 = AtomicU8::new(0);
/// True while a session records events with the TSC clock: a guard's entry reads the counter
/// inline. Otherwise (the monotonic clock, or a graph-only session) it takes the slow entry.
pub(crate) static INLINE_TSC: AtomicBool = AtomicBool::new(false);
/// True while a graph-only session records: guards fold their calls into per-thread call
/// trees (`local::graph`) instead of appending records.
pub(crate) static GRAPH_ONLY: AtomicBool = AtomicBool::new(false);
/// Incremented at every session start and stop: a buffer or call tree of an older epoch is
/// not written.
pub(crate) static EPOCH: AtomicU64 = AtomicU64::new(0);
/// Records under way on the slow path, which reads [`EPOCH`] after counting itself here and
/// its end clock after that. `collector::session::stop` waits for this to reach zero.
pub(crate) static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// The epoch the next session records in.
pub(crate) fn next_epoch() -> u64 {
    EPOCH.load(Ordering::Relaxed) + 1
}

/// Turns recording on for session `epoch`: the modes first, then the epoch, then the level
/// that call sites check.
pub(crate) fn turn_on(epoch: u64, level: u8, graph_only: bool, inline_tsc: bool) {
    GRAPH_ONLY.store(graph_only, Ordering::SeqCst);
    INLINE_TSC.store(inline_tsc, Ordering::SeqCst);
    EPOCH.store(epoch, Ordering::SeqCst);
    if cfg!(feature = "enable") {
        LEVEL.store(level, Ordering::SeqCst);
    }
}

/// Turns recording off after session `epoch`: call sites stop first, then the epoch ends, so
/// that a record still under way finds its buffer's epoch over.
pub(crate) fn turn_off(epoch: u64) {
    LEVEL.store(0, Ordering::SeqCst);
    EPOCH.store(epoch + 1, Ordering::SeqCst);
    GRAPH_ONLY.store(false, Ordering::SeqCst);
}
