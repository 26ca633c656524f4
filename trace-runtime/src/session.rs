//! Recording sessions: start, stop, and the [`Snapshot`] of what was recorded.
//!
//! This is the interface the exporters build on (`trace-export`'s `profiler` and `summary`).
//! One session records at a time, process-wide.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::barrier;
use crate::callsite::Callsite;
use crate::calltree::{CallTree, ThreadTree, GRAPH_ONLY};
use crate::clock::{self, Anchor, Calibration, ClockKind};
use crate::recorder::{
    ThreadBuffer, EPOCH, INLINE_TSC, IN_FLIGHT, KIND_ARG, KIND_ASYNC, KIND_EVENT, KIND_MASK,
    KIND_NAMED, KIND_SHORT_NAMED, LEVEL, LOST_WITHOUT_BUFFER, SHORT_NAME_LEN, SLOT, TYPE_BOOL,
    TYPE_FLOAT, TYPE_INT, TYPE_STR, TYPE_UINT,
};
use crate::value::Value;

/// How a session records.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Records events whose level is at most this (1 critical, 2 info, 3 verbose).
    pub level: u8,
    /// Each thread's buffer holds this many events without metadata; beyond it, events are
    /// dropped and counted.
    pub max_events_per_thread: usize,
    /// What is kept of each scope.
    pub mode: RecordMode,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            level: 2,
            max_events_per_thread: 1 << 22,
            mode: RecordMode::Events,
        }
    }
}

/// What a session keeps of each scope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordMode {
    /// Every scope as an event with its start, end and metadata, in bounded per-thread
    /// buffers ([`Snapshot::threads`]).
    #[default]
    Events,
    /// Only the call graph: each thread folds its calls into a tree of call paths as they
    /// happen ([`Snapshot::call_trees`]). Memory grows with the number of distinct call paths,
    /// not with the number of calls; there is no per-event buffer to overflow. Metadata is
    /// not kept, and entering a scope costs more than in `Events` mode.
    CallGraph,
}

/// Why a session could not start or stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// `start` while a session records.
    AlreadyActive,
    /// `stop` with no session recording.
    NotActive,
    /// A level outside 1..=3.
    InvalidLevel(u8),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::AlreadyActive => f.write_str("a recording session is already active"),
            SessionError::NotActive => f.write_str("no recording session is active"),
            SessionError::InvalidLevel(level) => {
                write!(
                    f,
                    "level {level} is not 1 (critical), 2 (info) or 3 (verbose)"
                )
            }
        }
    }
}

impl std::error::Error for SessionError {}

struct Active {
    epoch: u64,
    capacity_words: usize,
    level: u8,
    mode: RecordMode,
    start: Anchor,
    buffers: Vec<Arc<ThreadBuffer>>,
    trees: Vec<Arc<ThreadTree>>,
    /// `stop` has ended the recording and waits for events under way: a new session cannot
    /// start yet, and threads may still attach to this one.
    stopping: bool,
}

static SESSION: Mutex<Option<Active>> = Mutex::new(None);

/// The longest `stop` waits for a thread to publish an event whose end clock it has read. A
/// thread suspended there (by a debugger, or a signal that stops it) would hold the stop for
/// good; after this, its event is counted as dropped instead.
const PUBLISH_WAIT_LIMIT: Duration = Duration::from_secs(1);

fn session() -> MutexGuard<'static, Option<Active>> {
    // The state is consistent after every statement, so a panic elsewhere never poisons it
    // for good.
    SESSION
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts recording on every thread.
pub fn start(config: &SessionConfig) -> Result<(), SessionError> {
    if !(1..=3).contains(&config.level) {
        return Err(SessionError::InvalidLevel(config.level));
    }
    let mut state = session();
    if state.is_some() {
        return Err(SessionError::AlreadyActive);
    }
    let clock = clock::init();
    let epoch = EPOCH.load(Ordering::Relaxed) + 1;
    *state = Some(Active {
        epoch,
        capacity_words: config.max_events_per_thread.saturating_mul(SLOT),
        level: config.level,
        mode: config.mode,
        start: Anchor::now(),
        buffers: Vec::new(),
        trees: Vec::new(),
        stopping: false,
    });
    barrier::prepare();
    let graph_only = config.mode == RecordMode::CallGraph;
    GRAPH_ONLY.store(graph_only, Ordering::SeqCst);
    INLINE_TSC.store(clock == ClockKind::Tsc && !graph_only, Ordering::SeqCst);
    EPOCH.store(epoch, Ordering::SeqCst);
    if cfg!(feature = "enable") {
        LEVEL.store(config.level, Ordering::SeqCst);
    }
    Ok(())
}

/// True while a session records.
pub fn is_active() -> bool {
    session().as_ref().is_some_and(|active| !active.stopping)
}

/// Stops recording and returns everything recorded since [`start`].
///
/// An event is in the snapshot exactly when it ended before the stop time (and started after
/// the start): `stop` waits for events whose end clock was read before it and that are not
/// published yet. The order matters: the stop time is read first, then the epoch ends, then
/// every thread passes a memory barrier (the `barrier` module). A thread marks its buffer before
/// it reads an end clock; after the barrier, any thread whose end is before the stop time
/// has its mark visible (or has published the event already).
pub fn stop() -> Result<Snapshot, SessionError> {
    let (stop, graph_only) = {
        let mut state = session();
        let active = state
            .as_mut()
            .filter(|active| !active.stopping)
            .ok_or(SessionError::NotActive)?;
        active.stopping = true;
        // Call trees are sealed all at once, with every thread's lock held, so that each
        // call is counted exactly when its end (read under its lock) precedes the stop time.
        let mut trees: Vec<_> = active
            .trees
            .iter()
            .map(|tree| tree.tree.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let stop = Anchor::now();
        clock::complete_earlier_instructions();
        LEVEL.store(0, Ordering::SeqCst);
        EPOCH.store(active.epoch + 1, Ordering::SeqCst);
        GRAPH_ONLY.store(false, Ordering::SeqCst);
        for tree in &mut trees {
            tree.sealed = true;
        }
        (stop, active.mode == RecordMode::CallGraph)
    };
    // Past the deadline, what is still under way is counted as dropped.
    let deadline = Instant::now() + PUBLISH_WAIT_LIMIT;
    if !graph_only {
        barrier::all_threads();
        // Slow-path records count themselves before they read the epoch: once none is under
        // way, every later one reads the ended epoch, and the set of buffers is final.
        if !wait_until(deadline, || IN_FLIGHT.load(Ordering::Acquire) == 0) {
            let unfinished = IN_FLIGHT.load(Ordering::Acquire) as u64;
            LOST_WITHOUT_BUFFER.fetch_add(unfinished, Ordering::Relaxed);
        }
    }
    let active = session().take().ok_or(SessionError::NotActive)?;
    for buffer in &active.buffers {
        if !wait_until(deadline, || !buffer.is_writing()) {
            buffer.count_drop();
        }
    }
    let calibration = Calibration::new(&active.start, &stop);
    Ok(Snapshot::decode(active, stop.ticks, &calibration))
}

/// Spins, then yields, then sleeps until `done`; false if `deadline` passed first.
fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    let mut round = 0u32;
    while !done() {
        if round < 64 {
            std::hint::spin_loop();
        } else if round < 128 {
            std::thread::yield_now();
        } else if Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(50));
        } else {
            return done();
        }
        round += 1;
    }
    true
}

/// Called by a thread's first record in a session: its buffer, registered with the session.
/// `spare` is the thread's buffer of an earlier session: when that session has finished
/// reading it and it has the capacity wanted, it is emptied and reused, so its pages, already
/// committed, cost no page faults again. With no session recording, `spare` is handed back.
pub(crate) fn attach_thread(
    epoch: u64,
    thread_id: u64,
    thread_name: fn(u64) -> String,
    spare: Option<Arc<ThreadBuffer>>,
) -> Result<Arc<ThreadBuffer>, Option<Arc<ThreadBuffer>>> {
    let mut state = session();
    let Some(active) = state
        .as_mut()
        .filter(|active| active.epoch == epoch && active.mode == RecordMode::Events)
    else {
        return Err(spare);
    };
    let reused = spare.and_then(|mut buffer| {
        let inner = Arc::get_mut(&mut buffer)?;
        if inner.capacity_words() != active.capacity_words {
            return None;
        }
        inner.reset(epoch);
        Some(buffer)
    });
    let buffer = match reused {
        Some(buffer) => buffer,
        None => {
            let fresh = ThreadBuffer::new(
                epoch,
                active.capacity_words,
                thread_id,
                thread_name(thread_id),
            );
            let Some(fresh) = fresh else {
                // Out of memory: the event is lost, and counted.
                LOST_WITHOUT_BUFFER.fetch_add(1, Ordering::Relaxed);
                return Err(None);
            };
            Arc::new(fresh)
        }
    };
    active.buffers.push(Arc::clone(&buffer));
    Ok(buffer)
}

/// Called by a thread's first call in a graph-only session: its call tree, registered with
/// the session. `None` when no graph-only session of `epoch` records.
pub(crate) fn attach_call_tree(
    epoch: u64,
    thread_id: u64,
    thread_name: fn(u64) -> String,
) -> Option<Arc<ThreadTree>> {
    let mut state = session();
    let active = state
        .as_mut()
        .filter(|active| active.epoch == epoch && active.mode == RecordMode::CallGraph)?;
    let tree = Arc::new(ThreadTree {
        epoch,
        tree: Mutex::new(CallTree::new(
            thread_id,
            thread_name(thread_id),
            active.start.ticks,
        )),
    });
    active.trees.push(Arc::clone(&tree));
    Some(tree)
}

/// Everything one session recorded.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Wall-clock nanoseconds since the Unix epoch when the session started.
    pub start_wall_ns: u64,
    /// Wall-clock nanoseconds since the Unix epoch when it stopped: `start_wall_ns` plus
    /// `duration_ns`.
    pub stop_wall_ns: u64,
    /// Session length in nanoseconds, converted from the event clock like every event time,
    /// so every event lies within `[0, duration_ns]`.
    pub duration_ns: u64,
    /// The clock the events were timed with.
    pub clock: ClockKind,
    /// The session's level.
    pub level: u8,
    /// One entry per thread that recorded, ordered by thread id (in
    /// [`RecordMode::Events`]).
    pub threads: Vec<ThreadRecord>,
    /// One call tree per thread that recorded, ordered by thread id (in
    /// [`RecordMode::CallGraph`]).
    pub call_trees: Vec<ThreadCallTree>,
}

/// One thread's calls, folded by call path ([`RecordMode::CallGraph`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadCallTree {
    /// A process-wide thread number, as in [`ThreadRecord::thread_id`].
    pub thread_id: u64,
    /// The thread's name, or `thread-<id>`.
    pub name: String,
    /// The call paths; a node's parent comes before it.
    pub nodes: Vec<CallPath>,
    /// Calls that could not be counted.
    pub dropped: u64,
}

/// One call path of a thread: the calls of one name made from one caller path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallPath {
    /// The event name.
    pub name: &'static str,
    /// The call site of the first call, for `#[traced]` and `trace!` scopes.
    pub callsite: Option<&'static Callsite>,
    /// The caller's index in [`ThreadCallTree::nodes`]; `None` for a root.
    pub parent: Option<usize>,
    /// Other nodes that reached this one through recursion (a call whose name was already on
    /// its path is folded into that ancestor), except the node itself.
    pub recursive_callers: Vec<usize>,
    /// Calls, folded recursive calls included.
    pub calls: u64,
    /// Calls folded into this node because it was already on the call path.
    pub recursive_calls: u64,
    /// Time from entry to exit of the calls that were not folded, in nanoseconds.
    pub total_ns: u64,
    /// Time in the calls themselves and not in a callee, in nanoseconds.
    pub self_ns: u64,
    /// Start of the first call, in nanoseconds since the session start.
    pub first_start_ns: u64,
}

/// One thread's events.
#[derive(Clone, Debug)]
pub struct ThreadRecord {
    /// A process-wide thread number (1, 2, ... in order of first record).
    pub thread_id: u64,
    /// The thread's name, or `thread-<id>`.
    pub name: String,
    /// Events sorted by start, the longer first on ties (so parents precede children).
    pub events: Vec<Event>,
    /// Events and metadata that did not fit in the thread's buffer.
    pub dropped: u64,
}

/// One recorded scope.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The event name.
    pub name: &'static str,
    /// The call site, for events of `#[traced]` and `trace!` (not for [`Trace::new`]).
    ///
    /// [`Trace::new`]: crate::Trace::new
    pub callsite: Option<&'static Callsite>,
    /// Start, in nanoseconds since the session start.
    pub start_ns: u64,
    /// End, in nanoseconds since the session start.
    pub end_ns: u64,
    /// Recorded from first poll to completion of an `async fn`.
    pub is_async: bool,
    /// Metadata in the order it was recorded.
    pub metadata: Vec<(&'static str, Value<'static>)>,
}

impl Event {
    /// Duration in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        self.end_ns - self.start_ns
    }

    /// The metadata value recorded under `key` last.
    pub fn metadata(&self, key: &str) -> Option<&Value<'static>> {
        self.metadata
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

impl Snapshot {
    /// Events dropped on every thread, plus those lost while a thread was being torn down.
    pub fn dropped(&self) -> u64 {
        self.threads.iter().map(|t| t.dropped).sum::<u64>()
            + self.call_trees.iter().map(|t| t.dropped).sum::<u64>()
    }

    /// The number of recorded events.
    pub fn event_count(&self) -> u64 {
        self.threads.iter().map(|t| t.events.len() as u64).sum()
    }

    /// Every event with its thread.
    pub fn events(&self) -> impl Iterator<Item = (&ThreadRecord, &Event)> {
        self.threads
            .iter()
            .flat_map(|t| t.events.iter().map(move |e| (t, e)))
    }

    /// Reads a stopped session's buffers: the events whose ticks lie within
    /// `[start, stop_ticks]`, every time converted by `calibration` alone.
    fn decode(active: Active, stop_ticks: u64, calibration: &Calibration) -> Snapshot {
        let window = active.start.ticks..=stop_ticks;
        let mut threads = Vec::with_capacity(active.buffers.len());
        let mut args = Vec::new();
        for buffer in &active.buffers {
            // Every event is kept until its metadata found it; only then are those outside
            // the session left out, so that their metadata cannot be taken for another's.
            let (mut events, thread_args) = decode_words(&buffer.published());
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
        let mut threads = threads;
        threads.sort_by_key(|t| t.thread_id);
        let mut call_trees: Vec<ThreadCallTree> = active
            .trees
            .iter()
            .map(|tree| read_call_tree(tree, calibration))
            .collect();
        call_trees.sort_by_key(|t| t.thread_id);
        let lost = LOST_WITHOUT_BUFFER.swap(0, Ordering::Relaxed);
        if let Some(first) = threads.first_mut() {
            first.dropped += lost;
        } else if let Some(first) = call_trees.first_mut() {
            first.dropped += lost;
        }
        Snapshot {
            start_wall_ns: calibration.wall_ns(active.start.ticks),
            stop_wall_ns: calibration.wall_ns(stop_ticks),
            duration_ns: calibration.ns_since_start(stop_ticks),
            clock: clock::kind(),
            level: active.level,
            threads,
            call_trees,
        }
    }
}

struct RawEvent {
    name: &'static str,
    callsite: Option<&'static Callsite>,
    /// The call site's or the name's address: with `start`, what metadata names its owner by.
    ident: u64,
    start: u64,
    end: u64,
    is_async: bool,
}

struct RawArg {
    key: &'static str,
    value: Value<'static>,
    owner_ident: u64,
    owner_start: u64,
}

/// Parses one buffer's published words (layout in `recorder`).
fn decode_words(words: &[u64]) -> (Vec<RawEvent>, Vec<RawArg>) {
    let mut events = Vec::new();
    let mut args = Vec::new();
    let mut at = 0;
    while let Some(slot) = words.get(at..at + SLOT) {
        let w0 = slot[0];
        let kind = w0 & KIND_MASK;
        if kind == KIND_EVENT || kind == KIND_ASYNC {
            let ident = w0 & !KIND_MASK;
            // SAFETY: the recorder writes only `&'static Callsite` addresses into the first
            // word of these records, and nothing else writes the buffer.
            let site: &'static Callsite = unsafe { &*(ident as *const Callsite) };
            events.push(RawEvent {
                name: site.name(),
                callsite: Some(site),
                ident,
                start: slot[1],
                end: slot[2],
                is_async: kind == KIND_ASYNC,
            });
            at += SLOT;
            continue;
        }
        if kind == KIND_SHORT_NAMED {
            let ptr = w0 >> 16;
            events.push(RawEvent {
                name: static_str(ptr, (w0 >> 3) & (SHORT_NAME_LEN - 1)),
                callsite: None,
                ident: ptr,
                start: slot[1],
                end: slot[2],
                is_async: false,
            });
            at += SLOT;
            continue;
        }
        let Some(record) = words.get(at..at + 2 * SLOT) else {
            break;
        };
        at += 2 * SLOT;
        match kind {
            KIND_NAMED => events.push(RawEvent {
                name: static_str(record[1], w0 >> 8),
                callsite: None,
                ident: record[1],
                start: record[2],
                end: record[3],
                is_async: false,
            }),
            KIND_ARG => {
                let payload = record[3];
                let value = match (w0 >> 3) & 7 {
                    TYPE_INT => Value::Int(payload as i64),
                    TYPE_UINT => Value::UInt(payload),
                    TYPE_FLOAT => Value::Float(f64::from_bits(payload)),
                    TYPE_BOOL => Value::Bool(payload != 0),
                    TYPE_STR => {
                        let len = payload as usize;
                        let byte_words = len.div_ceil(8).next_multiple_of(SLOT);
                        let Some(packed) = words.get(at..at + byte_words) else {
                            break;
                        };
                        at += byte_words;
                        let bytes: Vec<u8> = packed
                            .iter()
                            .flat_map(|w| w.to_le_bytes())
                            .take(len)
                            .collect();
                        Value::Str(Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()))
                    }
                    _ => break,
                };
                args.push(RawArg {
                    key: static_str(record[1], w0 >> 8),
                    value,
                    owner_ident: record[4],
                    owner_start: record[2],
                });
            }
            _ => break,
        }
    }
    (events, args)
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

/// A thread's call tree, in nanoseconds. The tree is sealed, so the thread no longer
/// changes it.
fn read_call_tree(tree: &ThreadTree, calibration: &Calibration) -> ThreadCallTree {
    let tree = tree
        .tree
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let ns = |ticks: u64| calibration.ns(ticks);
    // Sums over each node's children, in ticks and in nanoseconds: where a node's total is
    // exactly its self time plus its callees' totals (no recursion folded in), its self time
    // in nanoseconds is taken as the difference, so that the parts add up to the whole
    // exactly rather than within rounding.
    let mut children_ticks = vec![0u64; tree.nodes.len()];
    let mut children_ns = vec![0u64; tree.nodes.len()];
    for node in &tree.nodes {
        if let Some(parent) = node.parent {
            children_ticks[parent as usize] += node.total_ticks;
            children_ns[parent as usize] += ns(node.total_ticks);
        }
    }
    let nodes = tree
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let total_ns = ns(node.total_ticks);
            let exact = node.recursive_calls == 0
                && node.total_ticks == node.self_ticks + children_ticks[i];
            CallPath {
                name: node.name,
                callsite: node.callsite,
                parent: node.parent.map(|p| p as usize),
                recursive_callers: node.recursive_callers.iter().map(|&c| c as usize).collect(),
                calls: node.calls,
                recursive_calls: node.recursive_calls,
                total_ns,
                self_ns: if exact {
                    total_ns.saturating_sub(children_ns[i])
                } else {
                    ns(node.self_ticks)
                },
                first_start_ns: calibration.ns_since_start(node.first_start),
            }
        })
        .collect();
    ThreadCallTree {
        thread_id: tree.thread_id,
        name: tree.thread_name.clone(),
        nodes,
        dropped: 0,
    }
}

/// Rebuilds a `&'static str` from the pointer and length the recorder stored.
pub(crate) fn static_str(ptr: u64, len: u64) -> &'static str {
    // SAFETY: the recorder stores only the address and length of `&'static str`s (names and
    // keys), which stay valid and UTF-8 for the life of the program.
    unsafe {
        std::str::from_utf8_unchecked(std::slice::from_raw_parts(ptr as *const u8, len as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer holding the given records.
    fn buffer(thread_id: u64, records: &[&[u64]]) -> Arc<ThreadBuffer> {
        let buffer = ThreadBuffer::new(1, 64, thread_id, format!("t{thread_id}")).unwrap();
        for record in records {
            assert!(buffer.try_push_record(record, &[]));
        }
        Arc::new(buffer)
    }

    fn short_named(name: &'static str, start: u64, end: u64) -> [u64; 3] {
        let (ptr, len) = (name.as_ptr() as u64, name.len() as u64);
        [ptr << 16 | len << 3 | KIND_SHORT_NAMED, start, end]
    }

    fn uint_arg(key: &'static str, value: u64, owner: &'static str, start: u64) -> [u64; 6] {
        [
            KIND_ARG | TYPE_UINT << 3 | (key.len() as u64) << 8,
            key.as_ptr() as u64,
            start,
            value,
            owner.as_ptr() as u64,
            0,
        ]
    }

    /// A thread stuck between reading an end clock and publishing its record (suspended by a
    /// debugger, say) holds `stop` for the wait limit only; its record is counted as dropped.
    #[test]
    #[cfg(feature = "enable")]
    fn a_thread_stuck_mid_record_holds_stop_for_the_limit_only() {
        start(&SessionConfig::default()).unwrap();
        drop(crate::Trace::new("attaches this thread's buffer"));
        session().as_ref().unwrap().buffers[0].mark_writing();
        let began = Instant::now();
        let snapshot = stop().unwrap();
        let waited = began.elapsed();
        assert!(
            waited >= PUBLISH_WAIT_LIMIT,
            "stop returned after {waited:?}"
        );
        assert_eq!(snapshot.dropped(), 1);
        assert_eq!(snapshot.event_count(), 1);
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
                let active = Active {
                    epoch: 1,
                    capacity_words: 64,
                    level: 1,
                    mode: RecordMode::Events,
                    start,
                    buffers: vec![buffer(1, &slots)],
                    trees: Vec::new(),
                    stopping: true,
                };
                let calibration = Calibration::with_rate(&start, session_rate * drift);
                let snapshot = Snapshot::decode(active, stop_ticks, &calibration);
                let events = &snapshot.threads[0].events;
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
        let active = Active {
            epoch: 1,
            capacity_words: 64,
            level: 1,
            mode: RecordMode::Events,
            start,
            buffers: vec![late, inside],
            trees: Vec::new(),
            stopping: true,
        };
        let calibration = Calibration::new(&active.start, &stop);
        let snapshot = Snapshot::decode(active, stop.ticks, &calibration);
        let events: Vec<_> = snapshot.events().map(|(t, e)| (t.thread_id, e)).collect();
        assert_eq!(events.len(), 1, "{events:?}");
        let (thread, event) = events[0];
        assert_eq!(thread, 2);
        assert_eq!(event.metadata, vec![("seq", Value::UInt(3))]);
    }
}
