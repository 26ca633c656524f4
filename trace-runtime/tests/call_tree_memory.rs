//! A graph-only session's memory grows with the distinct call paths, not with the calls:
//! live heap bytes, counted by this test binary's allocator, stay flat from one million to
//! ten million calls.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use trace_runtime::session::{self, RecordMode, SessionConfig};
use trace_runtime::{trace, traced};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` with the same arguments; the counter is
// bookkeeping only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[traced]
fn leaf(i: u64) -> u64 {
    std::hint::black_box(i)
}

#[traced]
fn recurse(depth: u32) -> u32 {
    if depth == 0 {
        0
    } else {
        recurse(depth - 1) + 1
    }
}

/// `calls` calls spread over four call paths (and a recursion folded into one of them).
fn work(calls: u64) {
    let mut i = 0;
    while i < calls {
        trace!("batch", {
            for _ in 0..98 {
                leaf(i);
                i += 1;
            }
            recurse(1); // two calls
            i += 2;
        });
        i += 1;
    }
}

#[test]
fn graph_only_memory_stays_flat_over_ten_million_calls() {
    let config = SessionConfig {
        mode: RecordMode::CallGraph,
        ..SessionConfig::default()
    };
    session::start(&config).expect("start");
    work(1_000_000);
    let after_one_million = LIVE_BYTES.load(Ordering::Relaxed);
    work(9_000_000);
    let after_ten_million = LIVE_BYTES.load(Ordering::Relaxed);
    let snapshot = session::stop().expect("stop");

    let growth = after_ten_million as i64 - after_one_million as i64;
    assert!(
        growth <= 0,
        "live heap grew by {growth} bytes over 9 million more calls"
    );
    let tree = &snapshot.call_trees()[0];
    assert_eq!(tree.nodes.len(), 3, "batch, batch/leaf, batch/recurse");
    let calls: u64 = tree.nodes.iter().map(|n| n.calls).sum();
    assert!(calls >= 10_000_000, "{calls} calls counted");
    assert_eq!(snapshot.dropped(), 0);
}
