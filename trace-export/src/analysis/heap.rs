//! Heap in use over time, from the allocations and frees a traced allocator recorded.
//!
//! Heap in use counts the blocks allocated during the session and not freed yet. A free of a
//! block allocated before the session (no allocation of that address is open) is left out:
//! it would take the count below zero and says nothing about the session. The events of all
//! threads are replayed in one time order, frees before allocations at the same time (the
//! allocator records a free before it gives the block back, and an allocation after it got
//! one), so that a block freed on one thread and handed out again on another is counted
//! once. Each allocation and free is attributed to the innermost synchronous scope open on
//! its thread at the time: the function that allocated.

use ahash::AHashMap;
use trace_runtime::snapshot::{Event, HeapEventKind, Snapshot};

/// One allocation or free of the heap profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeapSample {
    pub(crate) time_ns: u64,
    pub(crate) kind: HeapEventKind,
    pub(crate) addr: u64,
    pub(crate) bytes: u64,
    /// Heap in use just after this event.
    pub(crate) in_use: u64,
    /// The highest heap in use up to this event.
    pub(crate) peak: u64,
    /// The innermost synchronous scope open on the thread at the time, if any.
    pub(crate) scope: Option<&'static str>,
}

/// The heap profile of a snapshot.
#[derive(Debug, Default)]
pub(crate) struct HeapProfile {
    /// Every thread's samples, in time order.
    pub(crate) samples: Vec<HeapSample>,
    /// Frees of blocks allocated before the session, left out.
    pub(crate) frees_of_older_blocks: u64,
    /// Allocations counted but not recorded (below the allocator's threshold): count, bytes.
    pub(crate) unrecorded: (u64, u64),
}

impl HeapProfile {
    /// The heap profile of `snapshot`; empty when no traced allocator recorded.
    pub(crate) fn new(snapshot: &Snapshot) -> HeapProfile {
        let threads = snapshot.threads();
        let mut profile = HeapProfile::default();
        for thread in threads {
            profile.unrecorded.0 += thread.heap_unrecorded.allocations;
            profile.unrecorded.1 += thread.heap_unrecorded.bytes;
        }
        let mut order: Vec<(u64, bool, u32, u32)> = threads
            .iter()
            .enumerate()
            .flat_map(|(t, thread)| {
                thread.heap.iter().enumerate().map(move |(i, event)| {
                    let allocation = event.kind == HeapEventKind::Allocation;
                    (event.time_ns, allocation, t as u32, i as u32)
                })
            })
            .collect();
        if order.is_empty() {
            return profile;
        }
        order.sort_unstable();
        let scopes: Vec<Vec<Option<&'static str>>> = threads
            .iter()
            .map(|thread| scopes_at(thread.heap.iter().map(|e| e.time_ns), &thread.events))
            .collect();
        let mut live: AHashMap<u64, u64> = AHashMap::new();
        let (mut in_use, mut peak) = (0u64, 0u64);
        for (_, _, t, i) in order {
            let event = &threads[t as usize].heap[i as usize];
            let bytes = match event.kind {
                HeapEventKind::Allocation => {
                    // A free that was not recorded (its buffer was full) leaves the block
                    // open: a new block at its address replaces it.
                    if let Some(old) = live.insert(event.addr, event.bytes) {
                        in_use -= old;
                    }
                    in_use += event.bytes;
                    peak = peak.max(in_use);
                    event.bytes
                }
                HeapEventKind::Deallocation => match live.remove(&event.addr) {
                    Some(bytes) => {
                        in_use -= bytes;
                        bytes
                    }
                    None => {
                        profile.frees_of_older_blocks += 1;
                        continue;
                    }
                },
            };
            profile.samples.push(HeapSample {
                time_ns: event.time_ns,
                kind: event.kind,
                addr: event.addr,
                bytes,
                in_use,
                peak,
                scope: scopes[t as usize][i as usize],
            });
        }
        profile
    }
}

/// The innermost synchronous event of `events` (sorted by start, the longer first on ties)
/// open at each of `times` (in order). Async events are left out: they are not nested in the
/// thread's calls.
fn scopes_at(times: impl Iterator<Item = u64>, events: &[Event]) -> Vec<Option<&'static str>> {
    let mut open: Vec<&Event> = Vec::new();
    let mut next = events.iter().filter(|e| !e.is_async()).peekable();
    let mut scopes = Vec::new();
    for t in times {
        while let Some(event) = next.next_if(|e| e.start_ns <= t) {
            while open.last().is_some_and(|top| top.end_ns < event.start_ns) {
                open.pop();
            }
            open.push(event);
        }
        while open.last().is_some_and(|top| top.end_ns < t) {
            open.pop();
        }
        scopes.push(open.last().map(|e| e.name()));
    }
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;
    use trace_runtime::snapshot::{ClockKind, HeapEvent, Recording, ThreadRecord};

    fn snapshot(threads: Vec<ThreadRecord>) -> Snapshot {
        Snapshot::new(
            0,
            1_000,
            ClockKind::Monotonic,
            2,
            Recording::Events(threads),
        )
    }

    fn in_use(profile: &HeapProfile) -> Vec<(u64, u64, u64)> {
        let all: Vec<_> = (profile.samples.iter())
            .map(|s| (s.time_ns, s.in_use, s.peak))
            .collect();
        assert!(all.is_sorted_by_key(|&(time, _, _)| time));
        all
    }

    #[test]
    fn heap_in_use_counts_blocks_of_the_session_across_threads() {
        let main = ThreadRecord::new(1, "main", vec![], 0).with_heap(vec![
            HeapEvent::allocation(10, 0x1000, 100),
            HeapEvent::deallocation(15, 0x9000, 4096), // allocated before the session
            HeapEvent::allocation(20, 0x2000, 50),
            HeapEvent::deallocation(40, 0x2000, 50),
        ]);
        // Another thread frees main's first block; at the same time it gets it again: the
        // free counts first.
        let worker = ThreadRecord::new(2, "worker", vec![], 0).with_heap(vec![
            HeapEvent::allocation(30, 0x1000, 70),
            HeapEvent::deallocation(30, 0x1000, 100),
        ]);
        let profile = HeapProfile::new(&snapshot(vec![main, worker]));
        assert_eq!(
            in_use(&profile),
            [
                (10, 100, 100),
                (20, 150, 150),
                (30, 50, 150),
                (30, 120, 150),
                (40, 70, 150)
            ]
        );
        assert_eq!(profile.frees_of_older_blocks, 1);
    }

    #[test]
    fn each_sample_is_attributed_to_the_innermost_open_scope() {
        let events = vec![
            Event::new("step", 0, 100),
            Event::new("forward", 10, 40),
            Event::new("matmul", 20, 30),
            Event::new("backward", 50, 90),
            Event::new("spawned", 55, 200).asynchronous(),
        ];
        let heap = [5, 25, 35, 45, 60, 95, 150]
            .iter()
            .map(|&t| HeapEvent::allocation(t, t * 16, 1))
            .collect();
        let thread = ThreadRecord::new(1, "main", events, 0).with_heap(heap);
        let profile = HeapProfile::new(&snapshot(vec![thread]));
        let scopes: Vec<_> = profile.samples.iter().map(|s| s.scope).collect();
        assert_eq!(
            scopes,
            [
                Some("step"),
                Some("matmul"),
                Some("forward"),
                Some("step"),
                Some("backward"),
                Some("step"),
                None
            ]
        );
    }
}
