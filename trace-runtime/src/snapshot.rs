//! What a session recorded: the data model that `trace-export` writes into files.
//!
//! A [`Snapshot`] is what stopping a session returns. It holds either every event of every
//! thread, or, for a graph-only session, every thread's calls folded by call path
//! ([`Recording`]). Times are nanoseconds since the session start, all converted by one
//! calibration, so every event lies within `[0, duration_ns]`.
//!
//! The types are `#[non_exhaustive]`: read their fields, and build them (in tests and tools)
//! with their constructors.

use crate::callsite::Callsite;
pub use crate::clock::ClockKind;
use crate::value::Value;

/// What a session keeps of each scope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordMode {
    /// Every scope as an event with its start, end and metadata, in bounded per-thread
    /// buffers ([`Recording::Events`]).
    #[default]
    Events,
    /// Only the call graph: each thread folds its calls into a tree of call paths as they
    /// happen ([`Recording::CallGraph`]). Memory grows with the number of distinct call paths,
    /// not with the number of calls; there is no per-event buffer to overflow. Metadata is
    /// not kept, and entering a scope costs more than in `Events` mode.
    CallGraph,
}

/// What a session kept, by the mode it recorded in.
#[derive(Clone, Debug)]
pub enum Recording {
    /// One entry per thread that recorded, ordered by thread id ([`RecordMode::Events`]).
    Events(Vec<ThreadRecord>),
    /// One call tree per thread that recorded, ordered by thread id
    /// ([`RecordMode::CallGraph`]).
    CallGraph(Vec<ThreadCallTree>),
}

/// Everything one session recorded.
#[derive(Clone, Debug)]
#[non_exhaustive]
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
    /// The threads' events or call trees.
    pub recording: Recording,
}

impl Snapshot {
    /// A snapshot of a session that started at `start_wall_ns` and lasted `duration_ns`.
    /// Threads are ordered by id, and each thread's events by start, the longer first on
    /// ties (so parents precede children), as a stopped session orders them.
    pub fn new(
        start_wall_ns: u64,
        duration_ns: u64,
        clock: ClockKind,
        level: u8,
        mut recording: Recording,
    ) -> Snapshot {
        match &mut recording {
            Recording::Events(threads) => {
                threads.sort_by_key(|t| t.thread_id);
                for thread in threads {
                    thread
                        .events
                        .sort_by(|a, b| a.start_ns.cmp(&b.start_ns).then(b.end_ns.cmp(&a.end_ns)));
                }
            }
            Recording::CallGraph(trees) => trees.sort_by_key(|t| t.thread_id),
        }
        Snapshot {
            start_wall_ns,
            stop_wall_ns: start_wall_ns.saturating_add(duration_ns),
            duration_ns,
            clock,
            level,
            recording,
        }
    }

    /// The mode the session recorded in.
    pub fn mode(&self) -> RecordMode {
        match self.recording {
            Recording::Events(_) => RecordMode::Events,
            Recording::CallGraph(_) => RecordMode::CallGraph,
        }
    }

    /// Every thread's events (none for a graph-only session).
    pub fn threads(&self) -> &[ThreadRecord] {
        match &self.recording {
            Recording::Events(threads) => threads,
            Recording::CallGraph(_) => &[],
        }
    }

    /// Every thread's call tree (none for an events session).
    pub fn call_trees(&self) -> &[ThreadCallTree] {
        match &self.recording {
            Recording::Events(_) => &[],
            Recording::CallGraph(trees) => trees,
        }
    }

    /// Events or calls dropped on every thread, plus those lost while a thread was being
    /// torn down.
    pub fn dropped(&self) -> u64 {
        self.threads().iter().map(|t| t.dropped).sum::<u64>()
            + self.call_trees().iter().map(|t| t.dropped).sum::<u64>()
    }

    /// The number of recorded events.
    pub fn event_count(&self) -> u64 {
        self.threads().iter().map(|t| t.events.len() as u64).sum()
    }

    /// Every event with its thread.
    pub fn events(&self) -> impl Iterator<Item = (&ThreadRecord, &Event)> {
        self.threads()
            .iter()
            .flat_map(|t| t.events.iter().map(move |e| (t, e)))
    }
}

/// One thread's events.
#[derive(Clone, Debug)]
#[non_exhaustive]
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

impl ThreadRecord {
    /// A thread's events (ordered by [`Snapshot::new`]).
    pub fn new(thread_id: u64, name: impl Into<String>, events: Vec<Event>, dropped: u64) -> Self {
        ThreadRecord {
            thread_id,
            name: name.into(),
            events,
            dropped,
        }
    }
}

/// One recorded scope.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
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
    /// A synchronous event with no call site and no metadata.
    pub fn new(name: &'static str, start_ns: u64, end_ns: u64) -> Event {
        Event {
            name,
            callsite: None,
            start_ns,
            end_ns,
            is_async: false,
            metadata: Vec::new(),
        }
    }

    /// The event, recorded at `site`.
    pub fn at(mut self, site: &'static Callsite) -> Event {
        self.callsite = Some(site);
        self
    }

    /// The event, as an `async fn`'s (from first poll to completion).
    pub fn asynchronous(mut self) -> Event {
        self.is_async = true;
        self
    }

    /// The event with one more metadata entry.
    pub fn with(mut self, key: &'static str, value: impl Into<Value<'static>>) -> Event {
        self.metadata.push((key, value.into()));
        self
    }

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

/// One thread's calls, folded by call path ([`RecordMode::CallGraph`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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

impl ThreadCallTree {
    /// A thread's call paths, a parent before its children.
    pub fn new(
        thread_id: u64,
        name: impl Into<String>,
        nodes: Vec<CallPath>,
        dropped: u64,
    ) -> Self {
        ThreadCallTree {
            thread_id,
            name: name.into(),
            nodes,
            dropped,
        }
    }
}

/// One call path of a thread: the calls of one name made from one caller path.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallPath {
    /// The event name.
    pub name: &'static str,
    /// The distinct call sites of its calls (for `#[traced]` and `trace!` scopes), in order
    /// of first call, at most eight.
    pub callsites: Vec<&'static Callsite>,
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
