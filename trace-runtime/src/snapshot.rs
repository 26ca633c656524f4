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
    /// ties (so parents precede children), and its heap events by time, as a stopped session
    /// orders them.
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
                    thread.heap.sort_by_key(|h| h.time_ns);
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
    /// The thread's heap allocations and frees, in time order, recorded by a
    /// [`TracedAllocator`](crate::TracedAllocator) installed as the global allocator.
    pub heap: Vec<HeapEvent>,
    /// Allocations smaller than the allocator records, counted instead.
    pub heap_unrecorded: HeapTally,
}

impl ThreadRecord {
    /// A thread's events (ordered by [`Snapshot::new`]).
    pub fn new(thread_id: u64, name: impl Into<String>, events: Vec<Event>, dropped: u64) -> Self {
        ThreadRecord {
            thread_id,
            name: name.into(),
            events,
            dropped,
            heap: Vec::new(),
            heap_unrecorded: HeapTally::default(),
        }
    }

    /// The same thread with these heap events (in time order).
    pub fn with_heap(mut self, heap: Vec<HeapEvent>) -> Self {
        self.heap = heap;
        self
    }
}

/// One heap allocation or free, as a [`TracedAllocator`](crate::TracedAllocator) saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeapEvent {
    /// When, in nanoseconds since the session start: after the block was obtained, or
    /// before it was given back.
    pub time_ns: u64,
    /// The block's address.
    pub addr: u64,
    /// The block's size as the program asked for it (`Layout::size`).
    pub bytes: u64,
    /// An allocation or a free.
    pub kind: HeapEventKind,
}

impl HeapEvent {
    /// An allocation of `bytes` at `addr`.
    pub fn allocation(time_ns: u64, addr: u64, bytes: u64) -> HeapEvent {
        HeapEvent {
            time_ns,
            addr,
            bytes,
            kind: HeapEventKind::Allocation,
        }
    }

    /// A free of the `bytes` at `addr`.
    pub fn deallocation(time_ns: u64, addr: u64, bytes: u64) -> HeapEvent {
        HeapEvent {
            time_ns,
            addr,
            bytes,
            kind: HeapEventKind::Deallocation,
        }
    }
}

/// Whether a [`HeapEvent`] took a block or gave one back. A `realloc` is a free of the old
/// block followed by an allocation of the new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapEventKind {
    /// A block was allocated.
    Allocation,
    /// A block was freed.
    Deallocation,
}

/// Allocations that were counted but not recorded one by one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeapTally {
    /// How many.
    pub allocations: u64,
    /// Their bytes, as asked for.
    pub bytes: u64,
}

impl HeapTally {
    /// `allocations` blocks of `bytes` in all.
    pub fn new(allocations: u64, bytes: u64) -> HeapTally {
        HeapTally { allocations, bytes }
    }
}

/// One recorded scope: 32 bytes, of which the name or call site takes one word.
///
/// Build one with [`Event::new`] and the methods that follow it; read its times from the
/// fields and the rest through the methods.
#[derive(Clone)]
pub struct Event {
    /// The call site or name, and whether the event is an `async fn`'s (see [`Identity`]).
    identity: Identity,
    /// Start, in nanoseconds since the session start.
    pub start_ns: u64,
    /// End, in nanoseconds since the session start.
    pub end_ns: u64,
    /// Metadata in the order it was recorded; most events have none. Boxed so that an event
    /// without any takes one word for it, not three.
    #[allow(clippy::box_collection)]
    metadata: Option<Box<Vec<(&'static str, Value<'static>)>>>,
}

impl Event {
    /// A synchronous event with no call site and no metadata.
    pub fn new(name: &'static str, start_ns: u64, end_ns: u64) -> Event {
        Event {
            identity: Identity::of_name(name),
            start_ns,
            end_ns,
            metadata: None,
        }
    }

    /// An event recorded by the runtime, in its own words.
    pub(crate) fn recorded(identity: Identity, start: u64, end: u64) -> Event {
        Event {
            identity,
            start_ns: start,
            end_ns: end,
            metadata: None,
        }
    }

    /// The event, recorded at `site` (its name becomes the site's).
    pub fn at(mut self, site: &'static Callsite) -> Event {
        self.identity = Identity::of_site(site, self.is_async());
        self
    }

    /// The event, as an `async fn`'s (from first poll to completion).
    pub fn asynchronous(mut self) -> Event {
        self.identity = self.identity.asynchronous();
        self
    }

    /// The event with one more metadata entry.
    pub fn with(mut self, key: &'static str, value: impl Into<Value<'static>>) -> Event {
        self.metadata
            .get_or_insert_with(Default::default)
            .push((key, value.into()));
        self
    }

    /// The event with `metadata` in place of its metadata.
    pub fn with_metadata(mut self, metadata: Vec<(&'static str, Value<'static>)>) -> Event {
        self.metadata = (!metadata.is_empty()).then(|| Box::new(metadata));
        self
    }

    /// The event name.
    pub fn name(&self) -> &'static str {
        self.identity.name()
    }

    /// The call site, for events of `#[traced]` and `trace!` (not for [`Trace::new`]).
    ///
    /// [`Trace::new`]: crate::Trace::new
    pub fn callsite(&self) -> Option<&'static Callsite> {
        self.identity.callsite()
    }

    /// Recorded from first poll to completion of an `async fn`.
    pub fn is_async(&self) -> bool {
        self.identity.is_async()
    }

    /// Duration in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        self.end_ns - self.start_ns
    }

    /// The metadata value recorded under `key` last.
    pub fn metadata(&self, key: &str) -> Option<&Value<'static>> {
        self.all_metadata()
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// All metadata, in the order it was recorded.
    pub fn all_metadata(&self) -> &[(&'static str, Value<'static>)] {
        self.metadata.as_deref().map_or(&[], Vec::as_slice)
    }

    /// The identity metadata names the event by: its call site's or its name's address.
    pub(crate) fn ident(&self) -> u64 {
        self.identity.ident()
    }

    /// Attaches metadata found for the event.
    pub(crate) fn push_metadata(&mut self, key: &'static str, value: Value<'static>) {
        self.metadata
            .get_or_insert_with(Default::default)
            .push((key, value));
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
            && self.callsite().map(|s| s as *const Callsite)
                == other.callsite().map(|s| s as *const Callsite)
            && self.start_ns == other.start_ns
            && self.end_ns == other.end_ns
            && self.is_async() == other.is_async()
            && self.all_metadata() == other.all_metadata()
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.name())
            .field("callsite", &self.callsite())
            .field("start_ns", &self.start_ns)
            .field("end_ns", &self.end_ns)
            .field("is_async", &self.is_async())
            .field("metadata", &self.all_metadata())
            .finish()
    }
}

/// An event's call site or name in one word, as the recorder's records hold them: the low
/// three bits say which, and bit 0 marks an `async fn`'s event.
///
/// | tag | word                                                                       |
/// |-----|----------------------------------------------------------------------------|
/// | 0, 1 | a `&'static Callsite`'s address (8-aligned)                               |
/// | 4, 5 | a `&'static str` name: address `<< 16`, length `<< 3` (under 8 KiB, addresses below 2^48) |
/// | 2, 3 | any other name: its index in a process-wide table `<< 3`                  |
///
/// Only the constructors below make one, so the word always holds what its tag says.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity(u64);

const TAG_SITE: u64 = 0;
const TAG_LONG_NAME: u64 = 2;
const TAG_SHORT_NAME: u64 = 4;
const TAG_ASYNC: u64 = 1;
const SHORT_NAME_LEN: u64 = 1 << 13;

/// Names that do not fit a word: rare (8 KiB and more), kept for the life of the process.
static LONG_NAMES: std::sync::RwLock<Vec<&'static str>> = std::sync::RwLock::new(Vec::new());

impl Identity {
    /// A call site's events.
    pub(crate) fn of_site(site: &'static Callsite, is_async: bool) -> Identity {
        Identity(site as *const Callsite as u64 | TAG_SITE | u64::from(is_async))
    }

    /// A name's events.
    pub(crate) fn of_name(name: &'static str) -> Identity {
        let (ptr, len) = (name.as_ptr() as u64, name.len() as u64);
        if ptr >> 48 == 0 && len < SHORT_NAME_LEN {
            return Identity(ptr << 16 | len << 3 | TAG_SHORT_NAME);
        }
        let mut names = LONG_NAMES.write().unwrap_or_else(|p| p.into_inner());
        let index = match names.iter().position(|n| std::ptr::eq(*n, name)) {
            Some(index) => index,
            None => {
                names.push(name);
                names.len() - 1
            }
        };
        Identity((index as u64) << 3 | TAG_LONG_NAME)
    }

    /// A record's first word (see `record`): a call site's event (kinds `EVENT`, `ASYNC`) or
    /// a short named event (`SHORT_NAMED`) is the same word.
    pub(crate) fn of_record_word(w0: u64) -> Identity {
        Identity(w0)
    }

    fn asynchronous(self) -> Identity {
        Identity(self.0 | TAG_ASYNC)
    }

    fn is_async(self) -> bool {
        self.0 & TAG_ASYNC != 0
    }

    fn callsite(self) -> Option<&'static Callsite> {
        // SAFETY: a site tag is only set with a `&'static Callsite`'s address (`of_site`, or a
        // record word of kind EVENT or ASYNC, which holds one).
        (self.0 & 6 == TAG_SITE).then(|| unsafe { crate::record::callsite_at(self.0 & !7) })
    }

    fn name(self) -> &'static str {
        match self.0 & 6 {
            TAG_SITE => self.callsite().map_or("", Callsite::name),
            // SAFETY: a short name's word holds the address and length of a `&'static str`.
            TAG_SHORT_NAME => unsafe {
                crate::record::static_str(self.0 >> 16, (self.0 >> 3) & (SHORT_NAME_LEN - 1))
            },
            _ => {
                let names = LONG_NAMES.read().unwrap_or_else(|p| p.into_inner());
                names.get((self.0 >> 3) as usize).copied().unwrap_or("")
            }
        }
    }

    /// The address metadata names its event by (see `record`).
    fn ident(self) -> u64 {
        match self.0 & 6 {
            TAG_SITE => self.0 & !7,
            TAG_SHORT_NAME => self.0 >> 16,
            _ => self.name().as_ptr() as u64,
        }
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
