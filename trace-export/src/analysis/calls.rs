//! Calls: what was called from where, and where the time went.
//!
//! Every thread's events are replayed, in time order, through the runtime's call-tree fold
//! ([`CallTree`], the one that graph-only sessions run live on each thread): calls are
//! folded into a tree of *call paths* of event names (`train_step`, `train_step/forward`,
//! `train_step/forward/matmul`), recursion folded into the ancestor of the same name, and a
//! call's self time is its duration less the time of the calls made directly inside it. The
//! threads' trees, replayed or folded live, are then merged by path into the [`CallGraph`]
//! that TensorBoard's Graphs tab shows (`graph` writes it); the text report sums the same
//! self times per event name.
//!
//! Each node counts its calls and sums its total (inclusive) and self time. A folded
//! recursive call still counts as a call and adds its self time; its total time is already
//! inside the ancestor's.

use std::collections::BTreeMap;
use std::hash::Hash;

use ahash::{AHashMap, AHashSet};
use trace_runtime::session::CallTree;
use trace_runtime::snapshot::{CallPath, Event, Snapshot};
use trace_runtime::Callsite;

/// One call path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallNode {
    /// The node's name: the path of sanitized event names, joined by `/`.
    pub name: String,
    /// The event name, as recorded.
    pub event_name: &'static str,
    /// The index of the caller's node in [`CallGraph::nodes`]; `None` for a root.
    pub parent: Option<usize>,
    /// Other nodes that called this one through recursion (the back edges of folded calls,
    /// except a function calling itself).
    pub recursive_callers: Vec<usize>,
    /// Calls, folded recursive calls included.
    pub calls: u64,
    /// Calls that were folded into this node because it was already on the call path.
    pub recursive_calls: u64,
    /// Time from entry to exit of the outermost calls, in nanoseconds.
    pub total_ns: u64,
    /// Time in this node's own calls and not in any callee, in nanoseconds.
    pub self_ns: u64,
    /// Start of the first call, in nanoseconds since the session start.
    pub first_start_ns: u64,
    /// The thread of the first call.
    pub first_thread_id: u64,
    /// Names of the threads that made the calls, in order of thread id.
    pub threads: Vec<String>,
    /// `file:line` of the call sites that recorded the calls (events of `Trace::new` have
    /// none).
    pub callsites: Vec<String>,
}

/// The call graph of a [`Snapshot`]: see the [module documentation](self).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallGraph {
    pub(crate) nodes: Vec<CallNode>,
    /// When the session started (wall clock), for the times written with the graph.
    pub(crate) start_wall_ns: u64,
    pub(crate) thread_names: BTreeMap<u64, String>,
}

/// Replays one thread's calls, given in start order (the longer first on ties), through a
/// [`CallTree`]: each call enters when it starts, and the calls open then exit first, in the
/// order they end (the inner first on ties), as they did while recording.
pub(crate) struct Replay<N> {
    tree: CallTree<N>,
    /// The calls entered and not exited yet, the one that ends first on top. Nested calls
    /// just stack up; only a call that outlasts the one it started in is inserted deeper.
    open: Vec<Open<N>>,
}

/// A call entered and not exited yet.
struct Open<N> {
    end: u64,
    frame: u32,
    start: u64,
    name: N,
    site: Option<&'static Callsite>,
}

impl<N: Copy + Eq + Hash> Replay<N> {
    pub(crate) fn new() -> Self {
        Replay {
            tree: CallTree::new(0),
            open: Vec::new(),
        }
    }

    /// The next call, no earlier than the one before.
    pub(crate) fn call(&mut self, name: N, site: Option<&'static Callsite>, start: u64, end: u64) {
        self.exit_until(start);
        if let Some(frame) = self.tree.enter(name, site, start) {
            let call = Open {
                end,
                frame,
                start,
                name,
                site,
            };
            // Above every call that ends no earlier: on top when it nests.
            match self.open.last() {
                Some(top) if top.end < end => {
                    let at = self.open.partition_point(|open| open.end >= end);
                    self.open.insert(at, call);
                }
                _ => self.open.push(call),
            }
        }
    }

    /// Exits the calls that ended by `time`.
    fn exit_until(&mut self, time: u64) {
        while self.open.last().is_some_and(|call| call.end <= time) {
            let call = self.open.pop().expect("checked");
            self.tree
                .exit(call.name, call.site, call.frame, call.start, call.end);
        }
    }

    /// The folded tree, every call exited.
    pub(crate) fn finish(mut self) -> CallTree<N> {
        self.exit_until(u64::MAX);
        self.tree
    }
}

/// One thread's recorded events folded into call paths, times in nanoseconds.
pub(crate) fn fold_events(events: &[Event]) -> Vec<CallPath> {
    let mut replay = Replay::new();
    for event in events {
        replay.call(event.name(), event.callsite(), event.start_ns, event.end_ns);
    }
    replay.finish().paths(|ns| ns, |ns| ns)
}

/// Builds the graph by merging threads' call trees.
#[derive(Default)]
struct Builder {
    nodes: Vec<CallNode>,
    /// (parent node, event name) → node.
    index: AHashMap<(Option<usize>, &'static str), usize>,
    /// Per node: the threads that called it, in order of first call.
    threads: Vec<Vec<u64>>,
    /// Per node: the distinct call sites (usually one).
    callsites: Vec<Vec<&'static Callsite>>,
}

impl Builder {
    fn node(&mut self, parent: Option<usize>, name: &'static str) -> usize {
        if let Some(&node) = self.index.get(&(parent, name)) {
            return node;
        }
        let node = self.nodes.len();
        self.nodes.push(CallNode {
            name: String::new(),
            event_name: name,
            parent,
            recursive_callers: Vec::new(),
            calls: 0,
            recursive_calls: 0,
            total_ns: 0,
            self_ns: 0,
            first_start_ns: u64::MAX,
            first_thread_id: 0,
            threads: Vec::new(),
            callsites: Vec::new(),
        });
        self.threads.push(Vec::new());
        self.callsites.push(Vec::new());
        self.index.insert((parent, name), node);
        node
    }

    /// Adds one thread's call tree: its paths become (or join) nodes of the same paths.
    fn merge_tree(&mut self, thread_id: u64, paths: &[CallPath]) {
        let mut node_of = Vec::with_capacity(paths.len());
        for path in paths {
            // A tree lists parents before their children.
            let parent = path.parent.and_then(|p| node_of.get(p).copied());
            let node = self.node(parent, path.name);
            node_of.push(node);
            let entry = &mut self.nodes[node];
            entry.calls += path.calls;
            entry.recursive_calls += path.recursive_calls;
            entry.total_ns += path.total_ns;
            entry.self_ns += path.self_ns;
            if path.first_start_ns < entry.first_start_ns {
                entry.first_start_ns = path.first_start_ns;
                entry.first_thread_id = thread_id;
            }
            let threads = &mut self.threads[node];
            if !threads.contains(&thread_id) {
                threads.push(thread_id);
            }
            for &site in &path.callsites {
                let sites = &mut self.callsites[node];
                if !sites.iter().any(|s| std::ptr::eq(*s, site)) {
                    sites.push(site);
                }
            }
        }
        for (path, &node) in paths.iter().zip(&node_of) {
            for &caller in &path.recursive_callers {
                if let Some(&caller) = node_of.get(caller) {
                    if !self.nodes[node].recursive_callers.contains(&caller) {
                        self.nodes[node].recursive_callers.push(caller);
                    }
                }
            }
        }
    }
}

impl CallGraph {
    /// Builds the call graph of every thread of `snapshot`: its events replayed through the
    /// call-tree fold, or the call trees a graph-only session folded as it ran.
    pub fn from_snapshot(snapshot: &Snapshot) -> CallGraph {
        let mut builder = Builder::default();
        let mut thread_names = BTreeMap::new();
        for thread in snapshot.threads() {
            thread_names.insert(thread.thread_id, thread.name.clone());
            builder.merge_tree(thread.thread_id, &fold_events(&thread.events));
        }
        for tree in snapshot.call_trees() {
            thread_names.insert(tree.thread_id, tree.name.clone());
            builder.merge_tree(tree.thread_id, &tree.nodes);
        }

        let Builder {
            mut nodes,
            threads,
            callsites,
            ..
        } = builder;
        let mut names = ComponentNames::default();
        for i in 0..nodes.len() {
            // Parents are created before their children, so their names exist already.
            let component = names.component(nodes[i].event_name);
            nodes[i].name = match nodes[i].parent {
                Some(parent) => format!("{}/{component}", nodes[parent].name),
                None => component.to_owned(),
            };
        }
        for ((node, mut threads), sites) in nodes.iter_mut().zip(threads).zip(callsites) {
            threads.sort_unstable();
            node.threads = threads
                .iter()
                .map(|id| thread_names.get(id).cloned().unwrap_or_default())
                .collect();
            let mut sites: Vec<(&str, u32)> = sites.iter().map(|s| (s.file(), s.line())).collect();
            sites.sort_unstable();
            sites.dedup();
            node.callsites = sites
                .iter()
                .map(|(file, line)| format!("{file}:{line}"))
                .collect();
        }
        CallGraph {
            nodes,
            start_wall_ns: snapshot.start_wall_ns,
            thread_names,
        }
    }

    /// The nodes; a node's parent comes before it.
    pub fn nodes(&self) -> &[CallNode] {
        &self.nodes
    }

    /// The node named `name` (a `/`-separated path).
    pub fn node(&self, name: &str) -> Option<&CallNode> {
        self.nodes.iter().find(|node| node.name == name)
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// Turns event names into node-name components, one distinct component per distinct name.
#[derive(Default)]
struct ComponentNames {
    by_event: AHashMap<&'static str, String>,
    taken: AHashSet<String>,
}

impl ComponentNames {
    fn component(&mut self, event_name: &'static str) -> &str {
        if !self.by_event.contains_key(event_name) {
            let base = sanitize(event_name);
            let mut candidate = base.clone();
            let mut n = 2;
            while self.taken.contains(&candidate) {
                candidate = format!("{base}_{n}");
                n += 1;
            }
            self.taken.insert(candidate.clone());
            self.by_event.insert(event_name, candidate);
        }
        &self.by_event[event_name]
    }
}

/// One path component of a node name, from an event name: `::` becomes `.`; letters, digits,
/// `_`, `-` and `.` stay; anything else, including `/` (the scope separator) and `:` (which
/// TensorFlow reads as an output index in inputs), becomes `_`.
pub fn sanitize(event_name: &str) -> String {
    let mut out = String::with_capacity(event_name.len());
    let mut chars = event_name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ':' if chars.peek() == Some(&':') => {
                chars.next();
                out.push('.');
            }
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') => out.push(c),
            _ => out.push('_'),
        }
    }
    // TensorFlow's node names start with a letter, digit or `.`; `-` would not do.
    match out.chars().next() {
        None => "unnamed".to_owned(),
        Some('-') => format!("_{out}"),
        Some(_) => out,
    }
}
