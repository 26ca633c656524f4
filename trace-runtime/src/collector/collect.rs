//! From a stopped session's buffers and call trees to its [`Snapshot`]: records decoded,
//! metadata matched to its events, events outside the session left out, and every tick
//! converted by the session's one calibration.

use crate::calltree::ThreadTree;
use crate::clock::Calibration;
use crate::record::{self, RawEvent, RawHeap, OWNER_STARTING, SLOT};
use crate::registry::{self, Registry};
use crate::snapshot::{
    Event, HeapEvent, HeapTally, Identity, RecordMode, Recording, Snapshot, ThreadCallTree,
    ThreadRecord,
};

/// The snapshot of a stopped session: its buffers read, or its call trees. Events are kept
/// when their ticks lie within `[start, stop_ticks]`; every time is converted by
/// `calibration` alone.
///
/// Memory stays near the snapshot's own size: each buffer is parsed in place into 32-byte
/// events and its pages are given back at once; events are put in start order by a linear
/// pass, in place (see [`order_by_start`]), not by a general sort into a second vector.
pub(crate) fn snapshot(active: Registry, stop_ticks: u64, calibration: &Calibration) -> Snapshot {
    let window = active.start.ticks..=stop_ticks;
    let mut threads: Vec<Vec<Event>> = Vec::with_capacity(active.buffers.len());
    let mut heaps: Vec<Vec<HeapEvent>> = Vec::with_capacity(active.buffers.len());
    let mut args = Vec::new();
    for buffer in &active.buffers {
        // Every event is kept until its metadata found it; only then are those outside
        // the session left out, so that their metadata cannot be taken for another's.
        // Times stay in ticks until then.
        let thread = threads.len();
        // Small pages, not huge ones: a virtual machine whose host backs guest memory lazily
        // can charge several times more per byte for fresh huge pages (see `buffer`); in
        // such phases they cost `stop` of 10 M events about 0.4 s more than small pages.
        let mut events = Vec::with_capacity(buffer.published_words() / SLOT);
        let mut heap = Vec::new();
        buffer.read_published(|words| {
            // SAFETY: a buffer is written only by the recorder, with `record`'s encoders.
            unsafe {
                record::decode(
                    words,
                    |raw| events.push(event_of(raw)),
                    |arg| args.push((thread, arg)),
                    |raw| {
                        if window.contains(&raw.time) {
                            heap.push(heap_event_of(raw, calibration));
                        }
                    },
                )
            }
        });
        buffer.release_pages();
        order_by_start(&mut events);
        threads.push(events);
        heaps.push(heap);
    }

    // Metadata of a guard names its event by (identity, start), looked up on the guard's
    // own thread first: two threads can read the same tick for the same call site. An
    // async fn that moved has its event on another thread, found in a second pass among
    // async events only (a sync scope never moves).
    // Free `set_metadata` names a time instead. Events are sorted by start, so each
    // lookup is a binary search.
    let mut moved = Vec::new();
    for (thread, arg) in args {
        let events = &mut threads[thread];
        let owner = match arg.owner_ident {
            0 => innermost_at(events, arg.owner_start),
            OWNER_STARTING => starting_at(events, arg.owner_start),
            ident => owner_of(events, ident, arg.owner_start),
        };
        match owner {
            Some(i) => events[i].push_metadata(arg.key, arg.value),
            None if arg.owner_ident != 0 && arg.owner_ident != OWNER_STARTING => moved.push(arg),
            None => {}
        }
    }
    for arg in moved {
        let found = threads.iter().enumerate().find_map(|(t, events)| {
            owner_of(events, arg.owner_ident, arg.owner_start)
                .filter(|&i| events[i].is_async())
                .map(|i| (t, i))
        });
        if let Some((t, i)) = found {
            threads[t][i].push_metadata(arg.key, arg.value);
        }
    }

    let threads = active
        .buffers
        .iter()
        .zip(threads)
        .zip(heaps)
        .map(|((buffer, mut events), heap)| {
            // Keep what ran inside the session: not a scope entered during an earlier
            // session, nor one that ended after this one stopped. Then ticks become ns.
            events.retain_mut(|event| {
                let (start, end) = (event.start_ns, event.end_ns);
                let inside = window.contains(&start) && window.contains(&end) && start <= end;
                event.start_ns = calibration.ns_since_start(start);
                event.end_ns = calibration.ns_since_start(end);
                inside
            });
            events.shrink_to_fit();
            ThreadRecord {
                thread_id: buffer.thread_id,
                name: buffer.thread_name(),
                events,
                dropped: buffer.dropped(),
                heap,
                heap_unrecorded: {
                    let (allocations, bytes) = buffer.unrecorded_allocations();
                    HeapTally::new(allocations, bytes)
                },
            }
        })
        .collect::<Vec<_>>();
    let lost = registry::take_lost();
    let recording = match active.mode {
        RecordMode::Events => {
            let mut threads = threads;
            threads.sort_by_key(|t| t.thread_id);
            if let Some(first) = threads.first_mut() {
                first.dropped += lost;
            }
            Recording::Events(threads)
        }
        RecordMode::CallGraph => {
            let mut trees: Vec<ThreadCallTree> = active
                .trees
                .iter()
                .map(|tree| read_call_tree(tree, calibration))
                .collect();
            trees.sort_by_key(|t| t.thread_id);
            if let Some(first) = trees.first_mut() {
                first.dropped += lost;
            }
            Recording::CallGraph(trees)
        }
    };
    Snapshot {
        start_wall_ns: calibration.wall_ns(active.start.ticks),
        stop_wall_ns: calibration.wall_ns(stop_ticks),
        duration_ns: calibration.ns_since_start(stop_ticks),
        clock: crate::clock::kind(),
        level: active.level,
        recording,
    }
}

/// A heap record as a heap event, its time converted.
fn heap_event_of(raw: RawHeap, calibration: &Calibration) -> HeapEvent {
    let time_ns = calibration.ns_since_start(raw.time);
    match raw.free {
        false => HeapEvent::allocation(time_ns, raw.addr, raw.bytes),
        true => HeapEvent::deallocation(time_ns, raw.addr, raw.bytes),
    }
}

/// An event of the recorder's, in ticks until the snapshot converts it.
fn event_of(raw: RawEvent) -> Event {
    let identity = match raw.long_name {
        Some(name) => Identity::of_name(name),
        None => Identity::of_record_word(raw.word),
    };
    let mut event = Event::recorded(identity, raw.start, raw.end);
    // The first metadata: later records of the scope's metadata are attached after it.
    if let Some((key, value)) = raw.number {
        event.push_metadata(key, value);
    }
    event
}

/// Puts one thread's events, read in the order they completed, in start order, the longer
/// first on ties (so a caller precedes its callees).
///
/// A thread's records complete callee before caller: for scopes that nest, the completion
/// order is the call tree in post-order. One pass rebuilds the tree (each completing event
/// adopts the earlier events that started no earlier than it did) and a second lays it out
/// in pre-order, which is start order; the events then move to their places in place. Scopes
/// that overlap partially (a guard held across `.await`, async events) can defeat that: the
/// result is checked, and sorted when it is not in order.
pub(crate) fn order_by_start(events: &mut [Event]) {
    let in_order = |e: &[Event]| {
        e.windows(2).all(|w| {
            w[0].start_ns < w[1].start_ns
                || (w[0].start_ns == w[1].start_ns && w[0].end_ns >= w[1].end_ns)
        })
    };
    if in_order(events) {
        return;
    }
    if let Some(mut place) = preorder_places(events) {
        for i in 0..events.len() {
            while place[i] as usize != i {
                let j = place[i] as usize;
                events.swap(i, j);
                place.swap(i, j);
            }
        }
        if in_order(events) {
            return;
        }
    }
    events.sort_by(|a, b| a.start_ns.cmp(&b.start_ns).then(b.end_ns.cmp(&a.end_ns)));
}

/// Where each event goes in pre-order of the call tree its completion order describes (see
/// [`order_by_start`]); `None` when there are too many events to number with `u32`.
///
/// One `u32` per event: subtree sizes, which become places. (Linked lists of children would
/// take three times the memory, committed afresh at every stop.)
fn preorder_places(events: &[Event]) -> Option<Vec<u32>> {
    let n = u32::try_from(events.len()).ok().filter(|&n| n < u32::MAX)?;
    // In completion order a subtree is the run of events that ends with its root, and a
    // root's children are the subtrees right before it, in order.
    let mut size_then_place = vec![1u32; n as usize];
    let mut roots: Vec<u32> = Vec::new();
    for i in 0..n {
        let start = events[i as usize].start_ns;
        // The open roots start in increasing order: those that started at or after this
        // event are its children, and they are on top.
        while let Some(&j) = roots.last() {
            if events[j as usize].start_ns < start {
                break;
            }
            roots.pop();
            size_then_place[i as usize] += size_then_place[j as usize];
        }
        roots.push(i);
    }
    // From the last event back, each one's parent is placed before it: the subtree's places
    // are the parent's, less the parent itself, filled from the end by the children met
    // last to first. `open` holds, per ancestor, the first event of its subtree and the end
    // of its places not taken yet; the whole forest is one more.
    let mut open: Vec<(u32, u32)> = vec![(0, n)];
    for i in (0..n).rev() {
        let size = size_then_place[i as usize];
        while open.last().is_some_and(|&(first, _)| first > i) {
            open.pop();
        }
        let (_, free_end) = open.last_mut().expect("the forest holds every event");
        let place = *free_end - size;
        *free_end = place;
        size_then_place[i as usize] = place;
        open.push((i + 1 - size, place + size));
    }
    Some(size_then_place)
}

/// The event of a sorted line that started at `start` with identity `ident` (times in
/// ticks).
fn owner_of(events: &[Event], ident: u64, start: u64) -> Option<usize> {
    let first = events.partition_point(|e| e.start_ns < start);
    events[first..]
        .iter()
        .take_while(|e| e.start_ns == start)
        .position(|e| e.ident() == ident)
        .map(|k| first + k)
}

/// The event of a sorted line that started at `start` (in ticks), the outermost on a tie.
fn starting_at(events: &[Event], start: u64) -> Option<usize> {
    let first = events.partition_point(|e| e.start_ns < start);
    events
        .get(first)
        .filter(|e| e.start_ns == start)
        .map(|_| first)
}

/// The innermost event of a sorted line that contains `time` (in ticks).
fn innermost_at(events: &[Event], time: u64) -> Option<usize> {
    let started = events.partition_point(|e| e.start_ns <= time);
    (0..started).rev().find(|&i| events[i].end_ns >= time)
}

/// A sealed thread call tree, in nanoseconds.
fn read_call_tree(tree: &ThreadTree, calibration: &Calibration) -> ThreadCallTree {
    let live = tree.state.lock().unwrap_or_else(|p| p.into_inner());
    let nodes = live.fold.paths(
        |ticks| calibration.ns(ticks),
        |ticks| calibration.ns_since_start(ticks),
    );
    ThreadCallTree::new(tree.thread_id, tree.thread_name.clone(), nodes, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::ThreadBuffer;
    use crate::clock::{self, Anchor};
    use crate::record::{arg_record, short_named_word};
    use crate::snapshot::RecordMode;
    use crate::value::Value;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// A buffer holding the given records.
    fn buffer(thread_id: u64, records: &[&[u64]]) -> Arc<ThreadBuffer> {
        let buffer = ThreadBuffer::new(1, 64, thread_id, format!("t{thread_id}")).unwrap();
        for record in records {
            assert!(buffer.try_push_record(record, &[]));
        }
        Arc::new(buffer)
    }

    fn short_named(name: &'static str, start: u64, end: u64) -> [u64; 3] {
        [short_named_word(name).unwrap(), start, end]
    }

    fn uint_arg(key: &'static str, value: u64, owner: &'static str, start: u64) -> [u64; 6] {
        arg_record(key, &Value::UInt(value), start, owner.as_ptr() as u64).0
    }

    /// A stopped session's registry holding `buffers`.
    fn stopped(start: Anchor, buffers: Vec<Arc<ThreadBuffer>>) -> Registry {
        Registry {
            epoch: 1,
            owner: "test",
            capacity_words: 64,
            level: 1,
            mode: RecordMode::Events,
            start,
            buffers,
            trees: Vec::new(),
            stopping: true,
        }
    }

    /// The TSC's rate over the process lifetime (what the calibration uses) differs from its
    /// rate within the session, by 0.1% either way, at very different tick rates: every event
    /// that ran inside the session is kept, lies within `[0, duration_ns]`, and nests as it
    /// did in ticks; the wall-clock stop is the start plus the duration.
    #[test]
    fn events_stay_inside_their_session_whatever_the_rate() {
        let start = Anchor {
            ticks: 5_000_000,
            instant: Instant::now(),
            wall_ns: 1_700_000_000_000_000_000,
        };
        let stop_ticks = start.ticks + 20_000_000;
        let (a, z) = (start.ticks, stop_ticks);
        // (name, start, end): nested pairs touching both ends of the session, and two
        // events outside it (entered before the start, ended after the stop).
        let records: [(&'static str, u64, u64); 7] = [
            ("inner_first", a, a + 1),
            ("inner_last", z - 1, z),
            ("outer", a, z),
            ("middle", a + 7, z - 3),
            ("instant", z, z),
            ("before", a - 1, a + 2),
            ("after", z - 2, z + 1),
        ];
        let inside = |&(_, s, e): &(&str, u64, u64)| a <= s && e <= z;
        for session_rate in [0.4, 1.0, 2.5] {
            for drift in [1.001, 0.999] {
                let words: Vec<[u64; 3]> = records
                    .iter()
                    .map(|&(name, s, e)| short_named(name, s, e))
                    .collect();
                let slots: Vec<&[u64]> = words.iter().map(|w| &w[..]).collect();
                let active = stopped(start, vec![buffer(1, &slots)]);
                let calibration = Calibration::with_rate(&start, session_rate * drift);
                let snapshot = snapshot(active, stop_ticks, &calibration);
                let events = &snapshot.threads()[0].events;
                let mut kept: Vec<_> = events.iter().map(|e| e.name()).collect();
                let mut expected: Vec<_> =
                    records.iter().filter(|r| inside(r)).map(|r| r.0).collect();
                kept.sort_unstable();
                expected.sort_unstable();
                assert_eq!(kept, expected, "rate {session_rate} x {drift}");
                for event in events {
                    assert!(
                        event.start_ns <= event.end_ns && event.end_ns <= snapshot.duration_ns,
                        "{event:?} outside 0..={} at rate {session_rate} x {drift}",
                        snapshot.duration_ns
                    );
                }
                let at = |name| events.iter().find(|e| e.name() == name).unwrap();
                for child in ["inner_first", "inner_last", "middle", "instant"] {
                    let (parent, child) = (at("outer"), at(child));
                    assert!(parent.start_ns <= child.start_ns && child.end_ns <= parent.end_ns);
                }
                assert_eq!(at("outer").end_ns, snapshot.duration_ns);
                assert_eq!(
                    snapshot.stop_wall_ns,
                    snapshot.start_wall_ns + snapshot.duration_ns
                );
            }
        }
    }

    /// Two threads read the same tick when entering the same scope. One event ended after
    /// the stop and is left out; its metadata must not be given to the other thread's event.
    #[test]
    fn metadata_of_an_event_left_out_stays_with_it() {
        clock::init();
        let start = Anchor::now();
        std::thread::sleep(Duration::from_millis(2));
        let stop = Anchor::now();
        let name: &'static str = "scope";
        let entered = start.ticks + 1;
        let late = buffer(
            1,
            &[
                &uint_arg("seq", 7, name, entered),
                &short_named(name, entered, stop.ticks + 1),
            ],
        );
        let inside = buffer(
            2,
            &[
                &uint_arg("seq", 3, name, entered),
                &short_named(name, entered, stop.ticks),
            ],
        );
        let active = stopped(start, vec![late, inside]);
        let calibration = Calibration::new(&active.start, &stop);
        let snapshot = snapshot(active, stop.ticks, &calibration);
        let events: Vec<_> = snapshot.events().map(|(t, e)| (t.thread_id, e)).collect();
        assert_eq!(events.len(), 1, "{events:?}");
        let (thread, event) = events[0];
        assert_eq!(thread, 2);
        assert_eq!(event.all_metadata(), vec![("seq", Value::UInt(3))]);
    }

    /// Events in the order a thread completes them (as its buffer holds them), from nested
    /// scopes, scopes that overlap partially and zero-length ones, come out in start order,
    /// the longer first on ties, none lost: as a sort would put them.
    #[test]
    fn completion_order_becomes_start_order() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for case in 0..300 {
            // A thread's scopes: opened and closed at increasing times, mostly nested
            // (closing the innermost), sometimes closing another (a guard across `.await`).
            let (mut open, mut done, mut now) = (Vec::<u64>::new(), Vec::new(), 0u64);
            for _ in 0..(case % 40) * 3 {
                // Even cases move time on at every step; odd ones let events tie.
                now += next(3) + u64::from(case % 2 == 0);
                if open.is_empty() || next(2) == 0 {
                    open.push(now);
                } else {
                    let k = if case % 3 == 0 {
                        next(open.len() as u64) as usize
                    } else {
                        open.len() - 1
                    };
                    done.push((open.remove(k), now));
                }
            }
            let names = ["a", "b", "c"];
            let mut events: Vec<Event> = done
                .iter()
                .enumerate()
                .map(|(i, &(start, end))| Event::new(names[i % 3], start, end))
                .collect();
            let times = |e: &[Event]| e.iter().map(|e| (e.start_ns, e.end_ns)).collect::<Vec<_>>();
            if case % 3 != 0 && case % 2 == 0 {
                // Nested scopes need no sort: the pre-order places alone put them in order
                // (ties at equal times may take the sort instead).
                let places = preorder_places(&events).unwrap();
                let mut placed = events.clone();
                for (event, &place) in events.iter().zip(&places) {
                    placed[place as usize] = event.clone();
                }
                assert!(
                    placed
                        .windows(2)
                        .all(|w| (w[0].start_ns, std::cmp::Reverse(w[0].end_ns))
                            <= (w[1].start_ns, std::cmp::Reverse(w[1].end_ns))),
                    "case {case}: {:?} from {:?}",
                    times(&placed),
                    times(&events)
                );
            }
            let mut sorted = events.clone();
            sorted.sort_by(|a, b| a.start_ns.cmp(&b.start_ns).then(b.end_ns.cmp(&a.end_ns)));
            order_by_start(&mut events);
            let times = |e: &[Event]| e.iter().map(|e| (e.start_ns, e.end_ns)).collect::<Vec<_>>();
            assert_eq!(times(&events), times(&sorted), "case {case}");
            let names_of = |e: &[Event]| {
                let mut n: Vec<_> = e.iter().map(|e| (e.start_ns, e.end_ns, e.name())).collect();
                n.sort_unstable();
                n
            };
            assert_eq!(names_of(&events), names_of(&sorted));
        }
    }
}
