//! Graph-only recording: each thread folds its calls into a tree of call paths as they
//! happen, so memory grows with the number of distinct paths, never with the number of calls.
//!
//! A session started with [`RecordMode::CallGraph`](crate::session::RecordMode) switches the
//! guards onto this path (their entry leaves the inline clock read for
//! `Trace::enter_slow`). Entering a scope finds or adds the child node of the innermost open
//! scope and pushes a frame; leaving it adds the call's time to the node. A call whose name
//! is already on the path from the root is folded into that ancestor (recursion), as the
//! exporters' call graph folds it.
//!
//! Each thread's tree sits behind a mutex that only the thread itself takes while recording.
//! `session::stop` takes every thread's lock at once, reads its stop time and seals the trees:
//! a call whose exit (and its end clock, read under the lock) came first is counted, a later
//! one sees the seal and belongs to no session. A thread waits for its lock only during that
//! seal, which takes microseconds.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ahash::AHashMap;

use crate::callsite::Callsite;
use crate::clock;
use crate::recorder::{self, EPOCH, KIND_ASYNC, KIND_EVENT, KIND_GRAPH, KIND_MASK};

/// True while a graph-only session records.
pub(crate) static GRAPH_ONLY: AtomicBool = AtomicBool::new(false);

/// Frames deeper than this are not recorded (and counted as dropped).
const MAX_FRAMES: usize = 1 << 24;

/// A graph guard's `info` word: `KIND_GRAPH`, the guard's own kind (bits 3..6), its frame
/// (bits 8..32) and, for a named guard, the name's length (bits 32..64).
fn pack(info: u64, frame: u32) -> Option<u64> {
    let name_len = info >> 8;
    (name_len < 1 << 32)
        .then_some(KIND_GRAPH | (info & KIND_MASK) << 3 | u64::from(frame) << 8 | name_len << 32)
}

/// The guard's own `info` (kind and name length) and frame, from [`pack`]'s word.
fn unpack(graph_info: u64) -> (u64, u32) {
    let info = (graph_info >> 3) & KIND_MASK | (graph_info >> 32) << 8;
    (info, ((graph_info >> 8) & 0xff_ffff) as u32)
}

/// One thread's tree in one session.
pub(crate) struct ThreadTree {
    pub(crate) epoch: u64,
    pub(crate) tree: Mutex<CallTree>,
}

/// One call path of one thread, in ticks.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) name: &'static str,
    pub(crate) callsite: Option<&'static Callsite>,
    pub(crate) parent: Option<u32>,
    pub(crate) recursive_callers: Vec<u32>,
    pub(crate) calls: u64,
    pub(crate) recursive_calls: u64,
    pub(crate) total_ticks: u64,
    pub(crate) self_ticks: u64,
    pub(crate) first_start: u64,
}

/// A scope open on the thread.
struct Frame {
    node: u32,
    start: u64,
    /// Ticks spent in the calls directly inside this one.
    children_ticks: u64,
    /// The frame of the caller, when it is open on this thread.
    parent_frame: Option<u32>,
    /// Folded into an ancestor of the same name (recursion): its time is already counted.
    folded: bool,
    /// Closed out of order (an `async` guard); removed once the frames above it close.
    closed: bool,
}

/// One thread's tree, shared with the session that reads it at stop.
pub(crate) struct CallTree {
    pub(crate) thread_id: u64,
    pub(crate) thread_name: String,
    pub(crate) nodes: Vec<Node>,
    /// (parent, name) → node.
    index: AHashMap<(Option<u32>, &'static str), u32>,
    frames: Vec<Frame>,
    /// The session's start, in ticks: a call entered before it belongs to no session.
    session_start: u64,
    /// Set by the session when it stopped: calls no longer count.
    pub(crate) sealed: bool,
}

impl CallTree {
    pub(crate) fn new(thread_id: u64, thread_name: String, session_start: u64) -> CallTree {
        CallTree {
            thread_id,
            thread_name,
            nodes: Vec::new(),
            index: AHashMap::new(),
            frames: Vec::new(),
            session_start,
            sealed: false,
        }
    }

    fn node(
        &mut self,
        parent: Option<u32>,
        name: &'static str,
        site: Option<&'static Callsite>,
    ) -> u32 {
        if let Some(&node) = self.index.get(&(parent, name)) {
            return node;
        }
        let node = self.nodes.len() as u32;
        self.nodes.push(Node {
            name,
            callsite: site,
            parent,
            recursive_callers: Vec::new(),
            calls: 0,
            recursive_calls: 0,
            total_ticks: 0,
            self_ticks: 0,
            first_start: u64::MAX,
        });
        self.index.insert((parent, name), node);
        node
    }

    /// The nearest node named `name` on the path from the root to `node`.
    fn on_path(&self, mut node: u32, name: &str) -> Option<u32> {
        loop {
            let entry = &self.nodes[node as usize];
            if entry.name == name {
                return Some(node);
            }
            node = entry.parent?;
        }
    }

    /// Opens a call; returns its frame index, or `None` beyond [`MAX_FRAMES`].
    fn enter(
        &mut self,
        name: &'static str,
        site: Option<&'static Callsite>,
        start: u64,
    ) -> Option<u32> {
        if self.frames.len() >= MAX_FRAMES {
            return None;
        }
        let parent_frame = self.frames.iter().rposition(|f| !f.closed);
        let (node, folded) = match parent_frame {
            Some(i) => {
                let caller = self.frames[i].node;
                match self.on_path(caller, name) {
                    Some(ancestor) => {
                        let callers = &mut self.nodes[ancestor as usize].recursive_callers;
                        if ancestor != caller && !callers.contains(&caller) {
                            callers.push(caller);
                        }
                        (ancestor, true)
                    }
                    None => (self.node(Some(caller), name, site), false),
                }
            }
            None => (self.node(None, name, site), false),
        };
        let entry = &mut self.nodes[node as usize];
        entry.first_start = entry.first_start.min(start);
        self.frames.push(Frame {
            node,
            start,
            children_ticks: 0,
            parent_frame: parent_frame.map(|i| i as u32),
            folded,
            closed: false,
        });
        Some((self.frames.len() - 1) as u32)
    }

    /// Closes the call opened as frame `frame` at `start`. A call whose frame is not on this
    /// thread (an `async fn` that moved) is counted at the root under its name; one entered
    /// before the session started is not counted, as events mode keeps no such event.
    fn exit(
        &mut self,
        name: &'static str,
        site: Option<&'static Callsite>,
        frame: u32,
        start: u64,
        end: u64,
    ) {
        let duration = end.saturating_sub(start);
        let open = self
            .frames
            .get(frame as usize)
            .is_some_and(|f| f.start == start && !f.closed);
        if !open {
            if start < self.session_start {
                return;
            }
            let node = self.node(None, name, site);
            let entry = &mut self.nodes[node as usize];
            entry.calls += 1;
            entry.total_ticks += duration;
            entry.self_ticks += duration;
            entry.first_start = entry.first_start.min(start);
            return;
        }
        let f = &mut self.frames[frame as usize];
        f.closed = true;
        let (node, children, folded, parent) = (f.node, f.children_ticks, f.folded, f.parent_frame);
        let entry = &mut self.nodes[node as usize];
        entry.calls += 1;
        if folded {
            // The ancestor's own call is still open and its total covers this one.
            entry.recursive_calls += 1;
        } else {
            entry.total_ticks += duration;
        }
        entry.self_ticks += duration.saturating_sub(children);
        if let Some(parent) = parent.and_then(|p| self.frames.get_mut(p as usize)) {
            if !parent.closed {
                parent.children_ticks += duration;
            }
        }
        while self.frames.last().is_some_and(|f| f.closed) {
            self.frames.pop();
        }
    }
}

thread_local! {
    static TREE: RefCell<Option<Arc<ThreadTree>>> = const { RefCell::new(None) };
}

/// The name and call site of a guard's identity (see `Trace`).
fn describe(ident: usize, info: u64) -> (&'static str, Option<&'static Callsite>) {
    match info & KIND_MASK {
        KIND_EVENT | KIND_ASYNC => {
            // SAFETY: guards of these kinds store the address of a `&'static Callsite`.
            let site: &'static Callsite = unsafe { &*(ident as *const Callsite) };
            (site.name(), Some(site))
        }
        _ => (crate::session::static_str(ident as u64, info >> 8), None),
    }
}

/// Why a call was not counted.
enum Missed {
    /// No graph-only session records the call: it belongs to none.
    NoSession,
    /// The call happened in a session but could not be counted.
    Lost,
}

/// Runs `f` on this thread's tree of the current session, attaching one first.
fn with_tree<R>(f: impl FnOnce(&mut CallTree) -> Option<R>) -> Result<R, Missed> {
    let epoch = EPOCH.load(Ordering::Acquire);
    TREE.try_with(|cell| {
        // Borrowed: a call made while this thread updates its tree (a traced allocator).
        let mut slot = cell.try_borrow_mut().map_err(|_| Missed::Lost)?;
        if slot.as_ref().map(|tree| tree.epoch) != Some(epoch) {
            *slot = Some(
                crate::session::attach_call_tree(
                    epoch,
                    recorder::thread_id(),
                    recorder::thread_name,
                )
                .ok_or(Missed::NoSession)?,
            );
        }
        let tree = slot.as_ref().ok_or(Missed::NoSession)?;
        // Taken by another thread only while the session seals the trees. A panic inside
        // `f` leaves the tree consistent (each update is a few counters), so poisoning is
        // ignored.
        let mut tree = tree.tree.lock().unwrap_or_else(|p| p.into_inner());
        if tree.sealed {
            return Err(Missed::NoSession);
        }
        f(&mut tree).ok_or(Missed::Lost)
    })
    // The thread is being torn down.
    .unwrap_or(Err(Missed::Lost))
}

fn count_if_lost<R>(result: Result<R, Missed>) -> Option<R> {
    match result {
        Ok(value) => Some(value),
        Err(Missed::NoSession) => None,
        Err(Missed::Lost) => {
            recorder::count_lost();
            None
        }
    }
}

/// Opens a call of the guard `(ident, info)` at `start`; returns the guard's new `info`
/// word, or `None` when the call is not recorded (counted as lost when it belongs to a
/// session).
pub(crate) fn enter(ident: usize, info: u64, start: u64) -> Option<u64> {
    let (name, site) = describe(ident, info);
    count_if_lost(with_tree(|tree| {
        tree.enter(name, site, start)
            .and_then(|frame| pack(info, frame))
    }))
}

/// Closes a call opened by [`enter`]; `graph_info` is what it returned. The end clock is read
/// under the tree's lock, so the call is counted exactly when it ended before the stop.
pub(crate) fn exit(ident: usize, graph_info: u64, start: u64) {
    let (info, frame) = unpack(graph_info);
    let (name, site) = describe(ident, info);
    count_if_lost(with_tree(|tree| {
        tree.exit(name, site, frame, start, clock::now());
        Some(())
    }));
}
