//! Graph-only sessions: calls folded into per-thread call trees as they run.

use std::sync::{Mutex, MutexGuard};

use trace_runtime::session::{self, RecordMode, SessionConfig};
use trace_runtime::snapshot::{CallPath, Snapshot, ThreadCallTree};
use trace_runtime::Trace;

fn lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn record_graph(body: impl FnOnce()) -> Snapshot {
    let config = SessionConfig {
        mode: RecordMode::CallGraph,
        ..SessionConfig::default()
    };
    session::start(&config).expect("start");
    body();
    session::stop().expect("stop")
}

/// Each node as `path (calls, recursive calls)`.
fn paths(tree: &ThreadCallTree) -> Vec<(String, u64, u64)> {
    let mut names: Vec<String> = Vec::new();
    tree.nodes
        .iter()
        .map(|node: &CallPath| {
            let name = match node.parent {
                Some(p) => format!("{}/{}", names[p], node.name),
                None => node.name.to_owned(),
            };
            names.push(name.clone());
            (name, node.calls, node.recursive_calls)
        })
        .collect()
}

fn recurse(depth: u32) {
    let _g = Trace::new("recurse");
    if depth > 0 {
        recurse(depth - 1);
    }
}

#[test]
fn calls_fold_by_path_and_recursion_folds_into_its_ancestor() {
    let _l = lock();
    let snapshot = record_graph(|| {
        for _ in 0..3 {
            let _step = Trace::new("step");
            for _ in 0..4 {
                let leaf = Trace::new("leaf");
                leaf.set_metadata("ignored", 1i64);
            }
            recurse(5);
        }
    });
    assert!(
        snapshot.threads().is_empty(),
        "graph-only sessions keep no events"
    );
    assert_eq!(snapshot.call_trees().len(), 1);
    let tree = &snapshot.call_trees()[0];
    assert_eq!(
        paths(tree),
        [
            ("step".to_owned(), 3, 0),
            ("step/leaf".to_owned(), 12, 0),
            ("step/recurse".to_owned(), 18, 15),
        ]
    );
    let (step, leaf, recursion) = (&tree.nodes[0], &tree.nodes[1], &tree.nodes[2]);
    // Totals nest: a caller's total covers its callees' totals and its own self time.
    assert!(step.total_ns >= leaf.total_ns + recursion.total_ns);
    assert_eq!(
        step.total_ns,
        step.self_ns + leaf.total_ns + recursion.total_ns
    );
    assert_eq!(leaf.total_ns, leaf.self_ns);
    assert_eq!(
        recursion.total_ns, recursion.self_ns,
        "recursion is all its own time"
    );
    assert!(
        recursion.recursive_callers.is_empty(),
        "a function calling itself"
    );
    assert_eq!(snapshot.dropped(), 0);
}

#[test]
fn guards_dropped_out_of_order_are_counted_once_each() {
    let _l = lock();
    let snapshot = record_graph(|| {
        // As guards held across `.await` in interleaved futures drop.
        let outer = Trace::new("outer");
        let inner = Trace::new("inner");
        drop(outer);
        let after = Trace::new("after");
        drop(inner);
        drop(after);
    });
    let tree = &snapshot.call_trees()[0];
    assert_eq!(
        paths(tree),
        [
            ("outer".to_owned(), 1, 0),
            ("outer/inner".to_owned(), 1, 0),
            ("outer/inner/after".to_owned(), 1, 0),
        ]
    );
}

#[test]
fn each_thread_has_its_tree_and_a_guard_that_moved_counts_at_the_root() {
    let _l = lock();
    let snapshot = record_graph(|| {
        let moved = Trace::new("moved");
        std::thread::Builder::new()
            .name("worker".into())
            .spawn(move || {
                let _w = Trace::new("work");
                drop(moved);
            })
            .expect("spawn")
            .join()
            .expect("join");
    });
    let names: Vec<&str> = snapshot
        .call_trees()
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"worker"));
    let worker = snapshot
        .call_trees()
        .iter()
        .find(|t| t.name == "worker")
        .expect("worker");
    // `moved` was entered on the main thread and ended on the worker, inside `work`.
    assert_eq!(
        paths(worker),
        [("work".to_owned(), 1, 0), ("moved".to_owned(), 1, 0)]
    );
}

#[test]
fn a_later_events_session_records_events_again() {
    let _l = lock();
    let _ = record_graph(|| {
        let _g = Trace::new("graph");
    });
    session::start(&SessionConfig::default()).expect("start");
    {
        let _g = Trace::new("event");
    }
    let snapshot = session::stop().expect("stop");
    assert!(snapshot.call_trees().is_empty());
    let names: Vec<&str> = snapshot.events().map(|(_, e)| e.name()).collect();
    assert_eq!(names, ["event"]);
}
