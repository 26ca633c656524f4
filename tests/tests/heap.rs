//! What a `TracedAllocator` installed as the global allocator records, read back from the
//! session snapshot: allocations and frees with their addresses and sizes, small blocks
//! counted instead, nothing while no session records, no deadlock when a thread's first
//! record is an allocation, and nothing lost when `stop` races with allocating threads.

use std::alloc::System;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use trace_runtime::session::{self, RecordMode, SessionConfig};
use trace_runtime::snapshot::{HeapEvent, HeapEventKind, Snapshot, ThreadRecord};
use trace_runtime::{trace, TracedAllocator, DEFAULT_MIN_RECORDED_BYTES};
use trace_tests::session_lock;

#[global_allocator]
static HEAP: TracedAllocator<System> = TracedAllocator::new(System);

const MIB: usize = 1 << 20;

fn record(body: impl FnOnce()) -> Snapshot {
    session::start(&SessionConfig::default()).unwrap();
    body();
    session::stop().unwrap()
}

fn thread_named<'s>(snapshot: &'s Snapshot, name: &str) -> &'s ThreadRecord {
    snapshot
        .threads()
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("thread {name:?} recorded nothing"))
}

fn this_thread(snapshot: &Snapshot) -> &ThreadRecord {
    thread_named(snapshot, std::thread::current().name().unwrap_or(""))
}

/// The heap events of `thread` at `addr`, as (kind, bytes).
fn at(thread: &ThreadRecord, addr: usize) -> Vec<(HeapEventKind, u64)> {
    thread
        .heap
        .iter()
        .filter(|e| e.addr == addr as u64)
        .map(|e| (e.kind, e.bytes))
        .collect()
}

#[test]
fn allocations_and_frees_are_recorded_with_address_size_and_time() {
    let _l = session_lock();
    let mut addr = 0;
    let snapshot = record(|| {
        trace!("allocate", {
            let block = black_box(vec![1u8; MIB]);
            addr = block.as_ptr() as usize;
            drop(block);
        });
    });
    let main = this_thread(&snapshot);
    use HeapEventKind::{Allocation, Deallocation};
    assert_eq!(
        at(main, addr),
        [(Allocation, MIB as u64), (Deallocation, MIB as u64)]
    );
    // In time order, inside the session and inside the scope that allocated.
    assert!(main.heap.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
    let scope = main.events.iter().find(|e| e.name() == "allocate").unwrap();
    for event in main.heap.iter().filter(|e| e.addr == addr as u64) {
        assert!(event.time_ns <= snapshot.duration_ns);
        assert!((scope.start_ns..=scope.end_ns).contains(&event.time_ns));
    }
}

#[test]
fn small_blocks_are_counted_not_recorded() {
    let _l = session_lock();
    let snapshot = record(|| {
        // Leave the thread's buffer attached first: small blocks are only counted then.
        trace!("attach", {});
        let small: Vec<Box<[u8; 100]>> = (0..1000).map(|_| Box::new([0u8; 100])).collect();
        black_box(&small);
    });
    let main = this_thread(&snapshot);
    assert!(
        main.heap
            .iter()
            .all(|e| e.bytes >= DEFAULT_MIN_RECORDED_BYTES as u64),
        "a small block was recorded: {:?}",
        main.heap.iter().find(|e| e.bytes < 1024)
    );
    assert!(
        main.heap_unrecorded.allocations >= 1000,
        "{:?}",
        main.heap_unrecorded
    );
    assert!(
        main.heap_unrecorded.bytes >= 100_000,
        "{:?}",
        main.heap_unrecorded
    );
}

#[test]
fn a_realloc_is_a_free_and_an_allocation() {
    let _l = session_lock();
    let (mut before, mut after) = (0, 0);
    let snapshot = record(|| {
        let mut block: Vec<u8> = Vec::with_capacity(4096);
        before = block.as_ptr() as usize;
        block.reserve_exact(64 * MIB);
        after = block.as_ptr() as usize;
        black_box(&block);
        std::mem::forget(block);
    });
    assert_ne!(before, after, "a 64 MiB growth moves the block");
    let main = this_thread(&snapshot);
    use HeapEventKind::{Allocation, Deallocation};
    assert_eq!(at(main, before), [(Allocation, 4096), (Deallocation, 4096)]);
    assert_eq!(at(main, after), [(Allocation, 64 * MIB as u64)]);
}

#[test]
fn nothing_is_recorded_outside_a_session_or_in_a_graph_only_one() {
    let _l = session_lock();
    // Before: allocated and freed with no session.
    black_box(vec![0u8; MIB]);
    let graph = SessionConfig {
        mode: RecordMode::CallGraph,
        ..SessionConfig::default()
    };
    session::start(&graph).unwrap();
    trace!("call", {
        black_box(vec![0u8; MIB]);
    });
    let snapshot = session::stop().unwrap();
    assert!(snapshot.threads().is_empty());
    assert_eq!(snapshot.call_trees().len(), 1);
    // A block allocated before a session and freed in it: the free is recorded, the
    // allocation is not (the exporter leaves such frees out of heap in use).
    let early = black_box(vec![0u8; MIB]);
    let addr = early.as_ptr() as usize;
    let snapshot = record(|| drop(early));
    assert_eq!(
        at(this_thread(&snapshot), addr),
        [(HeapEventKind::Deallocation, MIB as u64)]
    );
}

/// A thread whose first record in a session is an allocation attaches its buffer from inside
/// the allocator: that buffer is itself allocated, and must neither deadlock nor recurse.
#[test]
fn a_threads_first_record_may_be_an_allocation() {
    let _l = session_lock();
    let snapshot = record(|| {
        let threads: Vec<_> = (0..4)
            .map(|i| {
                std::thread::Builder::new()
                    .name(format!("allocator-{i}"))
                    .spawn(|| {
                        let block = black_box(vec![7u8; 2 * MIB]);
                        block.as_ptr() as usize
                    })
                    .unwrap()
            })
            .collect();
        for (i, thread) in threads.into_iter().enumerate() {
            let addr = thread.join().unwrap();
            black_box((i, addr));
        }
    });
    for i in 0..4 {
        let thread = thread_named(&snapshot, &format!("allocator-{i}"));
        let big: Vec<&HeapEvent> = thread
            .heap
            .iter()
            .filter(|e| e.bytes == 2 * MIB as u64)
            .collect();
        assert_eq!(big.len(), 2, "thread {i}: {:?}", thread.heap);
        assert_eq!(big[0].kind, HeapEventKind::Allocation);
        assert_eq!(big[1].kind, HeapEventKind::Deallocation);
        assert_eq!(big[0].addr, big[1].addr);
    }
}

/// Threads allocate and free without pause while sessions start and stop: every session's
/// allocations and frees pair up by address on each thread, but for the blocks that straddle
/// its start or its stop, and `stop` never hangs.
#[test]
fn stop_races_with_allocating_threads() {
    let _l = session_lock();
    let running = Arc::new(AtomicBool::new(true));
    let workers: Vec<_> = (0..3)
        .map(|i| {
            let running = Arc::clone(&running);
            std::thread::Builder::new()
                .name(format!("churn-{i}"))
                .spawn(move || {
                    let mut kept = Vec::new();
                    while running.load(Ordering::Relaxed) {
                        kept.push(black_box(vec![1u8; 4096 + i]));
                        if kept.len() > 16 {
                            kept.remove(0);
                        }
                    }
                })
                .unwrap()
        })
        .collect();
    for _ in 0..20 {
        let snapshot = record(|| std::thread::sleep(std::time::Duration::from_millis(2)));
        for thread in snapshot.threads() {
            let mut live = std::collections::HashMap::new();
            let mut unmatched_frees = 0;
            for event in &thread.heap {
                assert!(event.time_ns <= snapshot.duration_ns);
                match event.kind {
                    HeapEventKind::Allocation => {
                        assert!(
                            live.insert(event.addr, event.bytes).is_none(),
                            "allocated twice"
                        );
                    }
                    HeapEventKind::Deallocation => match live.remove(&event.addr) {
                        Some(bytes) => assert_eq!(bytes, event.bytes),
                        None => unmatched_frees += 1,
                    },
                }
            }
            // Only blocks allocated before the start are freed unmatched: at most the 17
            // a worker holds.
            assert!(unmatched_frees <= 17, "{}: {unmatched_frees}", thread.name);
            assert!(live.len() <= 17, "{}: {} live", thread.name, live.len());
        }
    }
    running.store(false, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
}
