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
use trace_runtime::{trace, traced, TracedAllocator, DEFAULT_MIN_RECORDED_BYTES};
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
        trace!("names the thread", {});
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
    let snapshot = record(|| {
        drop(early);
        trace!("names the thread", {});
    });
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

/// A thread whose first record is an allocation is named by the operating system's name of
/// the thread (std's cannot be asked for from inside the allocator), which Linux cuts at 15
/// bytes; its first scope then gives it its full name.
#[test]
fn a_thread_that_allocates_first_is_named_by_its_first_scope() {
    let _l = session_lock();
    const LONG: &str = "a-thread-with-a-long-name";
    let run = |scope: bool| {
        std::thread::Builder::new()
            .name(LONG.into())
            .spawn(move || {
                black_box(vec![0u8; MIB]);
                if scope {
                    trace!("scope", {});
                }
            })
            .unwrap()
            .join()
            .unwrap();
    };
    let snapshot = record(|| run(false));
    let names: Vec<&str> = snapshot.threads().iter().map(|t| t.name.as_str()).collect();
    if cfg!(target_os = "linux") {
        assert!(names.contains(&&LONG[..15]), "{names:?}");
    }
    let snapshot = record(|| run(true));
    let names: Vec<&str> = snapshot.threads().iter().map(|t| t.name.as_str()).collect();
    assert!(names.contains(&LONG), "{names:?}");
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

#[traced(name = "Train", step_num = step)]
fn train_step(step: i64, held: &mut Vec<Vec<u8>>) {
    grow(held);
    spike(step);
}

/// Keeps one more MiB each step.
#[traced]
fn grow(held: &mut Vec<Vec<u8>>) {
    held.push(black_box(vec![1u8; MIB]));
}

/// Takes 8 MiB for a moment in step 3: the peak, 4 + 8 MiB.
#[traced]
fn spike(step: i64) {
    if step == 3 {
        black_box(vec![2u8; 8 * MIB]);
    }
}

/// What xprof's own converter makes of a profile's memory: the `memory_profile` tool's JSON,
/// the trace viewer's heap counter track and the calls in `framework_op_stats`, summed up by
/// a script run in the oracle's venv.
fn xprof_memory_profile(python: &std::path::Path, xplane: &std::path::Path) -> serde_json::Value {
    const SCRIPT: &str = r#"
import json, sys
from xprof.convert import raw_to_tool_data as r2t
data, _ = r2t.xspace_to_tool_data([sys.argv[1]], "memory_profile", {"use_saved_result": False})
profile = json.loads(data)["memoryProfilePerAllocator"]["heap"]
timeline = profile["sampledTimelineSnapshots"]
trace, _ = r2t.xspace_to_tool_data([sys.argv[1]], "trace_viewer@", {"use_saved_result": False})
counters = [e for e in json.loads(trace)["traceEvents"] if e.get("ph") == "C" and e["name"] == "heap in use"]
ops, _ = r2t.xspace_to_tool_data([sys.argv[1]], "framework_op_stats", {"use_saved_result": False})
table = json.loads(ops)[0]
ids = [c["id"] for c in table["cols"]]
occurrences = {}
for row in table["rows"]:
    cells = dict(zip(ids, [c.get("v") for c in row["c"]]))
    occurrences[cells["operation"]] = occurrences.get(cells["operation"], 0) + int(cells["occurrences"])
print(json.dumps({
    "op_occurrences": occurrences,
    "counter_peak": max(v for c in counters for _, v in c["entries"]),
    "peak": int(profile["profileSummary"]["peakStats"]["peakBytesInUse"]),
    "steps_in_time_order": [int(s["activityMetadata"]["stepId"])
        for s in sorted(timeline, key=lambda s: int(s["timeOffsetPs"]))],
    "peak_ops": sorted({s["activityMetadata"]["tfOpName"] for s in profile["memoryProfileSnapshots"]}),
}))
"#;
    let printed =
        trace_tests::run_python(python, "xprof's converter", SCRIPT, &[xplane.as_os_str()]);
    serde_json::from_slice(&printed).expect("the script prints JSON")
}

/// A training loop that holds one more MiB each step and 8 MiB more for a moment in step 3,
/// profiled and read back by xprof's `memory_profile` converter: the peak is what the program
/// held, the timeline spans the steps, and the table names the functions that allocated.
#[test]
fn xprofs_memory_profile_shows_the_heap_per_step() {
    let _l = session_lock();
    let logdir = trace_tests::scratch_dir("memory-profile");
    let options = trace_export::profiler::ProfilerOptions {
        chrome_trace: false,
        ..Default::default()
    };
    let mut held = Vec::with_capacity(16);
    trace_export::profiler::start_with(&logdir, options).unwrap();
    for step in 0..6 {
        train_step(step, &mut held);
    }
    let written = trace_export::profiler::stop().unwrap();
    drop(held);
    let report = &written.report;

    // The text report sums up the same events.
    let peak = 12 * MIB as u64;
    let slack = 64 << 10; // blocks of 1 KiB and more that the harness allocates meanwhile
    assert!(
        (peak..peak + slack).contains(&report.heap.peak_bytes),
        "report: {report}"
    );
    let scopes: Vec<&str> = report
        .heap
        .by_scope
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(&scopes[..2], ["heap::spike", "heap::grow"], "{report}");
    assert_eq!(report.heap.by_scope[1].bytes, 6 * MIB as u64);

    let Some(python) = trace_tests::oracle_python() else {
        return;
    };
    let xprof = xprof_memory_profile(&python, &written.xplane);
    let xprof_peak = xprof["peak"].as_u64().unwrap();
    assert_eq!(xprof_peak, report.heap.peak_bytes, "{xprof}");
    // Allocations are no calls: the ops that allocated count their calls alone.
    let calls = &xprof["op_occurrences"];
    assert_eq!(calls["heap/grow"].as_u64(), Some(6), "{xprof}");
    assert_eq!(calls["heap/spike"].as_u64(), Some(6), "{xprof}");
    assert!(calls.get("heap::grow").is_none(), "{xprof}");
    // The trace viewer draws heap in use as a counter track that reaches the same peak.
    assert_eq!(xprof["counter_peak"].as_u64(), Some(xprof_peak), "{xprof}");
    // The timeline runs through every step, in step order.
    let mut steps: Vec<u64> = serde_json::from_value(xprof["steps_in_time_order"].clone()).unwrap();
    assert!(steps.is_sorted(), "{xprof}");
    steps.dedup();
    assert_eq!(steps, [0, 1, 2, 3, 4, 5], "{xprof}");
    // The peak step's table names the functions that allocated: the spike and the growth.
    let ops: Vec<String> = serde_json::from_value(xprof["peak_ops"].clone()).unwrap();
    assert!(ops.contains(&"heap::spike".to_owned()), "{xprof}");
    assert!(ops.contains(&"heap::grow".to_owned()), "{xprof}");
}

thread_local! {
    static KEPT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A thread-local freed as its thread exits: the thread's first record in the session comes
/// from a destructor, while std is tearing the thread down. Asking std for the thread's
/// handle there would panic inside the allocator; the free is recorded under the thread's
/// OS name instead (or counted as lost if the recorder's own locals are gone already).
#[test]
fn a_free_while_the_thread_exits_is_recorded_safely() {
    let _l = session_lock();
    let (exit, wait) = std::sync::mpsc::channel::<()>();
    let (ready, allocated) = std::sync::mpsc::channel::<usize>();
    let thread = std::thread::Builder::new()
        .name("tls-teardown".into())
        .spawn(move || {
            KEPT.with(|kept| *kept.borrow_mut() = vec![3u8; 2 * MIB]);
            ready
                .send(KEPT.with(|kept| kept.borrow().as_ptr() as usize))
                .unwrap();
            wait.recv().unwrap();
        })
        .unwrap();
    let addr = allocated.recv().unwrap();
    let snapshot = record(|| {
        exit.send(()).unwrap();
        thread.join().unwrap();
    });
    let recorded = snapshot
        .threads()
        .iter()
        .find(|t| t.name == "tls-teardown")
        .map(|t| at(t, addr));
    match recorded {
        Some(events) => assert_eq!(events, [(HeapEventKind::Deallocation, 2 * MIB as u64)]),
        None => assert!(
            snapshot.dropped() > 0,
            "the free was neither recorded nor counted"
        ),
    }
}
