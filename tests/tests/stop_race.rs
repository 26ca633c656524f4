//! `stop` against threads that are in the middle of recording: every event that ran wholly
//! between `start` returning and `stop` being called is in that session's snapshot, however
//! the threads were scheduled around the stop.
//!
//! The workers outnumber the cores, so the scheduler preempts them at arbitrary instructions,
//! the recording hot path included, while sessions start and stop in a loop.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use trace_runtime::session::{self, RecordMode, SessionConfig};
use trace_runtime::snapshot::Snapshot;
use trace_runtime::{clock, Trace, Value};
use trace_tests::{session_lock, Workers};

const WORKERS: usize = 4;
const SESSIONS: u32 = 30;

/// One scope a worker ran, timed from outside: `before` is read before the guard is made and
/// `after` once it has been dropped, so the event lies within them.
struct Ran {
    seq: u64,
    before: u64,
    after: u64,
}

/// A session as the controlling thread saw it, in clock ticks around its `start` and `stop`
/// calls.
struct Window {
    before_start: u64,
    after_start: u64,
    before_stop: u64,
    after_stop: u64,
    snapshot: Snapshot,
}

impl Window {
    /// Ran wholly between `start` returning and `stop` being called: must be recorded.
    fn contains(&self, ran: &Ran) -> bool {
        self.after_start <= ran.before && ran.after <= self.before_stop
    }

    /// Overlapped the calls to `start` and `stop` or what lies between: may be recorded.
    fn overlaps(&self, ran: &Ran) -> bool {
        self.before_start <= ran.after && ran.before <= self.after_stop
    }
}

/// Runs `WORKERS` threads that call `scope(seq)` in a loop, while sessions of `mode` start
/// and stop; returns each worker's log (by thread name) and the sessions.
fn race(mode: RecordMode) -> (HashMap<String, Vec<Ran>>, Vec<Window>) {
    // The clock is chosen at the first session start; the workers read it from then on.
    session::start(&SessionConfig::default()).unwrap();
    session::stop().unwrap();

    let workers = Workers::spawn("worker", WORKERS, |_, done| {
        let mut log = Vec::new();
        let mut seq = 0u64;
        while !done.load(Ordering::Relaxed) {
            let before = clock::now();
            let guard = Trace::new("scope").arg("seq", seq);
            let active = guard.is_active();
            drop(guard);
            let after = clock::now();
            if active {
                log.push(Ran { seq, before, after });
            }
            seq += 1;
        }
        (
            std::thread::current().name().unwrap_or_default().to_owned(),
            log,
        )
    });

    let mut windows = Vec::new();
    for round in 0..SESSIONS {
        let before_start = clock::now();
        session::start(&SessionConfig {
            mode,
            ..Default::default()
        })
        .unwrap();
        let after_start = clock::now();
        // Sessions of different lengths, so the stop lands at varied points of the workers'
        // time slices.
        std::thread::sleep(Duration::from_micros(200 + 300 * u64::from(round % 7)));
        let before_stop = clock::now();
        let snapshot = session::stop().unwrap();
        windows.push(Window {
            before_start,
            after_start,
            before_stop,
            after_stop: clock::now(),
            snapshot,
        });
        std::thread::sleep(Duration::from_micros(100));
    }
    let logs = workers.stop_and_join().into_iter().collect();
    (logs, windows)
}

#[test]
fn every_event_that_ran_inside_a_session_is_in_its_snapshot() {
    let _l = session_lock();
    let (logs, windows) = race(RecordMode::Events);
    let mut checked = 0u64;
    let mut missing = Vec::new();
    for (i, window) in windows.iter().enumerate() {
        for (worker, log) in &logs {
            let recorded: HashSet<u64> = window
                .snapshot
                .threads()
                .iter()
                .filter(|t| &t.name == worker)
                .flat_map(|t| &t.events)
                .filter_map(|e| match e.metadata("seq") {
                    Some(Value::UInt(seq)) => Some(*seq),
                    _ => None,
                })
                .collect();
            for ran in log.iter().filter(|ran| window.contains(ran)) {
                checked += 1;
                if !recorded.contains(&ran.seq) {
                    missing.push((i, worker.clone(), ran.seq));
                }
            }
        }
        assert_eq!(window.snapshot.dropped(), 0, "session {i} dropped events");
    }
    assert!(
        missing.is_empty(),
        "{} of {checked} events that ran inside a session are missing from it, e.g. \
         (session, thread, seq) {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        checked > 1000,
        "only {checked} events ran inside the sessions"
    );
}

#[test]
fn every_call_that_ran_inside_a_graph_session_is_counted() {
    let _l = session_lock();
    let (logs, windows) = race(RecordMode::CallGraph);
    let mut checked = 0u64;
    for (i, window) in windows.iter().enumerate() {
        for (worker, log) in &logs {
            let counted: u64 = window
                .snapshot
                .call_trees()
                .iter()
                .filter(|t| &t.name == worker)
                .flat_map(|t| &t.nodes)
                .filter(|node| node.name == "scope")
                .map(|node| node.calls)
                .sum();
            // At least every call that ran inside the window; at most the calls that
            // overlapped the session at all.
            let inside = log.iter().filter(|ran| window.contains(ran)).count() as u64;
            let overlapping = log.iter().filter(|ran| window.overlaps(ran)).count() as u64;
            checked += inside;
            assert!(
                counted >= inside,
                "session {i}, {worker}: {counted} calls counted, {inside} ran inside it"
            );
            assert!(
                counted <= overlapping,
                "session {i}, {worker}: {counted} calls counted, {overlapping} overlapped it"
            );
        }
        assert_eq!(window.snapshot.dropped(), 0, "session {i} dropped calls");
    }
    assert!(
        checked > 1000,
        "only {checked} calls ran inside the sessions"
    );
}
