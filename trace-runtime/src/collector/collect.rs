//! From a stopped session's buffers and call trees to its [`Snapshot`]: records decoded,
//! metadata matched to its events, events outside the session left out, and every tick
//! converted by the session's one calibration.

use crate::calltree::ThreadTree;
use crate::clock::Calibration;
use crate::record::{self, RawEvent};
use crate::registry::{self, Registry};
use crate::snapshot::{Event, RecordMode, Recording, Snapshot, ThreadCallTree, ThreadRecord};
use crate::value::Value;

/// The snapshot of a stopped session: its buffers read, or its call trees. Events are kept
/// when their ticks lie within `[start, stop_ticks]`; every time is converted by
/// `calibration` alone.
pub(crate) fn snapshot(active: Registry, stop_ticks: u64, calibration: &Calibration) -> Snapshot {
    let window = active.start.ticks..=stop_ticks;
    let mut threads = Vec::with_capacity(active.buffers.len());
    let mut args = Vec::new();
    for buffer in &active.buffers {
        // Every event is kept until its metadata found it; only then are those outside
        // the session left out, so that their metadata cannot be taken for another's.
        // SAFETY: a buffer is written only by the recorder, with `record`'s encoders.
        let (mut events, thread_args) = unsafe { record::decode(&buffer.published()) };
        // Records arrive in completion order, each caller after its callees: nearly
        // sorted by start, which the stable sort handles in long runs.
        events.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
        args.extend(thread_args.into_iter().map(|arg| (threads.len(), arg)));
        threads.push((buffer, events));
    }

    // Metadata of a guard names its event by (identity, start), looked up on the guard's
    // own thread first: two threads can read the same tick for the same call site. An
    // async fn that moved has its event on another thread, found in a second pass among
    // async events only (a sync scope never moves).
    // Free `set_metadata` names a time instead. Events are sorted by start, so each
    // lookup is a binary search; metadata is kept per thread as (event, key, value).
    type Attached = Vec<(usize, &'static str, Value<'static>)>;
    let mut metadata: Vec<Attached> = vec![Vec::new(); threads.len()];
    let mut moved = Vec::new();
    for (thread, arg) in args {
        let events = &threads[thread].1;
        let owner = if arg.owner_ident != 0 {
            owner_of(events, arg.owner_ident, arg.owner_start)
        } else {
            innermost_at(events, arg.owner_start)
        };
        match owner {
            Some(i) => metadata[thread].push((i, arg.key, arg.value)),
            None if arg.owner_ident != 0 => moved.push(arg),
            None => {}
        }
    }
    for arg in moved {
        let found = threads.iter().enumerate().find_map(|(t, (_, events))| {
            owner_of(events, arg.owner_ident, arg.owner_start)
                .filter(|&i| events[i].is_async)
                .map(|i| (t, i))
        });
        if let Some((t, i)) = found {
            metadata[t].push((i, arg.key, arg.value));
        }
    }

    let threads = threads
        .into_iter()
        .zip(metadata)
        .map(|((buffer, events), mut attached)| {
            // Stable: an event's metadata stays in the order it was recorded.
            attached.sort_by_key(|&(i, _, _)| i);
            let mut attached = attached.into_iter().peekable();
            let events = events
                .into_iter()
                .enumerate()
                .filter_map(|(i, raw)| {
                    let mut metadata = Vec::new();
                    while let Some((_, key, value)) = attached.next_if(|&(at, _, _)| at == i) {
                        metadata.push((key, value));
                    }
                    // Keep what ran inside the session: not a scope entered during an
                    // earlier session, nor one that ended after this one stopped.
                    let inside = window.contains(&raw.start)
                        && window.contains(&raw.end)
                        && raw.start <= raw.end;
                    inside.then(|| Event {
                        name: raw.name,
                        callsite: raw.callsite,
                        start_ns: calibration.ns_since_start(raw.start),
                        end_ns: calibration.ns_since_start(raw.end),
                        is_async: raw.is_async,
                        metadata,
                    })
                })
                .collect();
            ThreadRecord {
                thread_id: buffer.thread_id,
                name: buffer.thread_name.clone(),
                events,
                dropped: buffer.dropped(),
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

/// The event of a sorted line that started at `start` with identity `ident`.
fn owner_of(events: &[RawEvent], ident: u64, start: u64) -> Option<usize> {
    let first = events.partition_point(|e| e.start < start);
    events[first..]
        .iter()
        .take_while(|e| e.start == start)
        .position(|e| e.ident == ident)
        .map(|k| first + k)
}

/// The innermost event of a sorted line that contains `time`.
fn innermost_at(events: &[RawEvent], time: u64) -> Option<usize> {
    let started = events.partition_point(|e| e.start <= time);
    (0..started).rev().find(|&i| events[i].end >= time)
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
                let mut kept: Vec<_> = events.iter().map(|e| e.name).collect();
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
                let at = |name| events.iter().find(|e| e.name == name).unwrap();
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
        assert_eq!(event.metadata, vec![("seq", Value::UInt(3))]);
    }
}
