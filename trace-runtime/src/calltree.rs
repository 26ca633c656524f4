//! The call-tree fold: calls folded into a tree of call paths as they enter and exit, so
//! that memory grows with the number of distinct paths, never with the number of calls.
//!
//! Entering a call finds or adds the child node of the innermost open call and pushes a
//! frame; leaving it adds the call's time to the node. A call whose name is already on the
//! path from the root is folded into that ancestor (recursion). A call's self time is its
//! duration less the time of the calls made directly inside it.
//!
//! It is the one fold of the project: graph-only sessions run it live on each thread
//! (`local::graph`), and `trace-export` replays recorded events through it, so the Graphs tab,
//! the text report and the summaries count calls and self time by the same rules.

use std::hash::Hash;
use std::sync::Mutex;

use ahash::AHashMap;

use crate::callsite::Callsite;
use crate::snapshot::CallPath;

/// Frames deeper than this are not recorded (and counted as dropped).
const MAX_FRAMES: usize = 1 << 24;
/// Distinct call sites kept per call path (one, nearly always).
pub(crate) const MAX_CALLSITES: usize = 8;

/// One thread's tree in one graph-only session, shared by the thread (which folds its calls
/// into it) and the session (which seals and reads it at stop).
pub(crate) struct ThreadTree {
    pub(crate) epoch: u64,
    pub(crate) thread_id: u64,
    pub(crate) thread_name: String,
    pub(crate) state: Mutex<LiveTree>,
}

/// A tree being folded live.
pub(crate) struct LiveTree {
    pub(crate) fold: CallTree,
    /// Set by the session when it stopped: calls no longer count.
    pub(crate) sealed: bool,
}

/// One call path, in the fold's time unit (clock ticks live, nanoseconds in a replay).
#[derive(Clone, Debug)]
struct Node<N> {
    name: N,
    /// Distinct call sites of its calls, in order of first call, at most [`MAX_CALLSITES`].
    callsites: Vec<&'static Callsite>,
    parent: Option<u32>,
    recursive_callers: Vec<u32>,
    calls: u64,
    recursive_calls: u64,
    total_ticks: u64,
    self_ticks: u64,
    first_start: u64,
}

/// A scope open on the thread.
#[derive(Debug)]
struct Frame<N> {
    node: u32,
    /// The node and folding of the last call made directly inside this one: a loop calls
    /// the same name again and again, found without a lookup.
    last_callee: Option<(N, u32, bool)>,
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

/// One thread's calls, folded into call paths as they enter and exit. A call whose name is
/// already on its path from the root folds into that ancestor (recursion); its self time is
/// its duration less the time of the calls made directly inside it.
///
/// Times are in any unit, as long as it is one unit: clock ticks while recording, or
/// nanoseconds when recorded events are replayed (`enter` and `exit` in time order). Names
/// are `&'static str` while recording; a replay may name calls by anything that compares,
/// such as interned ids. Sums saturate: a replay may read hostile times from a file.
#[derive(Debug)]
pub struct CallTree<N = &'static str> {
    nodes: Vec<Node<N>>,
    /// (parent, name) → node.
    index: AHashMap<(Option<u32>, N), u32>,
    frames: Vec<Frame<N>>,
    /// The node of the last call made with no call open, as [`Frame::last_callee`].
    last_root: Option<(N, u32)>,
    /// The session's start: a call entered before it belongs to no session.
    session_start: u64,
}

impl<N: Copy + Eq + Hash> CallTree<N> {
    /// An empty tree for calls that start at `session_start` or later.
    pub fn new(session_start: u64) -> CallTree<N> {
        CallTree {
            nodes: Vec::new(),
            index: AHashMap::new(),
            frames: Vec::new(),
            last_root: None,
            session_start,
        }
    }

    fn node(&mut self, parent: Option<u32>, name: N, site: Option<&'static Callsite>) -> u32 {
        if let Some(&node) = self.index.get(&(parent, name)) {
            return node;
        }
        let node = self.nodes.len() as u32;
        self.nodes.push(Node {
            name,
            callsites: site.into_iter().collect(),
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
    fn on_path(&self, mut node: u32, name: N) -> Option<u32> {
        loop {
            let entry = &self.nodes[node as usize];
            if entry.name == name {
                return Some(node);
            }
            node = entry.parent?;
        }
    }

    /// Opens a call; returns its frame index, or `None` beyond [`MAX_FRAMES`].
    pub fn enter(&mut self, name: N, site: Option<&'static Callsite>, start: u64) -> Option<u32> {
        if self.frames.len() >= MAX_FRAMES {
            return None;
        }
        let parent_frame = self.frames.iter().rposition(|f| !f.closed);
        let (node, folded) = match parent_frame {
            Some(i) => match self.frames[i].last_callee {
                Some((last, node, folded)) if last == name => (node, folded),
                _ => {
                    let caller = self.frames[i].node;
                    let found = match self.on_path(caller, name) {
                        Some(ancestor) => {
                            let callers = &mut self.nodes[ancestor as usize].recursive_callers;
                            if ancestor != caller && !callers.contains(&caller) {
                                callers.push(caller);
                            }
                            (ancestor, true)
                        }
                        None => (self.node(Some(caller), name, site), false),
                    };
                    self.frames[i].last_callee = Some((name, found.0, found.1));
                    found
                }
            },
            None => match self.last_root {
                Some((last, node)) if last == name => (node, false),
                _ => {
                    let node = self.node(None, name, site);
                    self.last_root = Some((name, node));
                    (node, false)
                }
            },
        };
        let entry = &mut self.nodes[node as usize];
        entry.first_start = entry.first_start.min(start);
        if let Some(site) = site {
            let sites = &mut entry.callsites;
            if sites.len() < MAX_CALLSITES && !sites.iter().any(|s| std::ptr::eq(*s, site)) {
                sites.push(site);
            }
        }
        self.frames.push(Frame {
            node,
            last_callee: None,
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
    pub fn exit(
        &mut self,
        name: N,
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
            entry.total_ticks = entry.total_ticks.saturating_add(duration);
            entry.self_ticks = entry.self_ticks.saturating_add(duration);
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
            entry.total_ticks = entry.total_ticks.saturating_add(duration);
        }
        entry.self_ticks = entry
            .self_ticks
            .saturating_add(duration.saturating_sub(children));
        if let Some(parent) = parent.and_then(|p| self.frames.get_mut(p as usize)) {
            if !parent.closed {
                parent.children_ticks = parent.children_ticks.saturating_add(duration);
            }
        }
        while self.frames.last().is_some_and(|f| f.closed) {
            self.frames.pop();
        }
    }

    /// Each call path's name and self time (the time in its calls and not in a callee), a
    /// parent before its children.
    pub fn self_times(&self) -> impl Iterator<Item = (N, u64)> + '_ {
        self.nodes.iter().map(|node| (node.name, node.self_ticks))
    }
}

impl CallTree<&'static str> {
    /// The call paths, a parent before its children, with times converted by `duration_ns`
    /// (a length of time) and `since_start_ns` (a moment).
    ///
    /// Where a node's total is exactly its self time plus its callees' totals (no recursion
    /// folded in), its self time in nanoseconds is taken as the difference of the converted
    /// values, so that the parts add up to the whole exactly rather than within rounding.
    pub fn paths(
        &self,
        duration_ns: impl Fn(u64) -> u64,
        since_start_ns: impl Fn(u64) -> u64,
    ) -> Vec<CallPath> {
        let mut children_ticks = vec![0u64; self.nodes.len()];
        let mut children_ns = vec![0u64; self.nodes.len()];
        for node in &self.nodes {
            if let Some(parent) = node.parent {
                let p = parent as usize;
                children_ticks[p] = children_ticks[p].saturating_add(node.total_ticks);
                children_ns[p] = children_ns[p].saturating_add(duration_ns(node.total_ticks));
            }
        }
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let total_ns = duration_ns(node.total_ticks);
                let exact = node.recursive_calls == 0
                    && Some(node.total_ticks) == node.self_ticks.checked_add(children_ticks[i]);
                CallPath {
                    name: node.name,
                    callsites: node.callsites.clone(),
                    parent: node.parent.map(|p| p as usize),
                    recursive_callers: node.recursive_callers.iter().map(|&c| c as usize).collect(),
                    calls: node.calls,
                    recursive_calls: node.recursive_calls,
                    total_ns,
                    self_ns: if exact {
                        total_ns.saturating_sub(children_ns[i])
                    } else {
                        duration_ns(node.self_ticks)
                    },
                    first_start_ns: since_start_ns(node.first_start),
                }
            })
            .collect()
    }
}
