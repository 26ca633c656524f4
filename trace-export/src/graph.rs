//! The call graph of a recording, as TensorBoard's Graphs tab shows it.
//!
//! Every thread's events are nested by time into a call tree whose nodes are *call paths*
//! of event names: `train_step`, `train_step/forward`, `train_step/forward/matmul`. The `/`
//! makes TensorBoard group a function's callees inside it, and each callee lists its caller
//! as its input, so the edges run from caller to callee. Threads that run the same path
//! share its node.
//!
//! Each node counts its calls and sums its total (inclusive) and self time. Recursion is
//! folded: a call whose name is already on the current path is merged into that ancestor
//! instead of adding a level, so the graph grows with the distinct call paths, not with the
//! calls or the recursion depth. A folded call still counts as a call and adds its self
//! time; its total time is already inside the ancestor's.
//!
//! A graph-only session (`trace_on` with `graph: true, profiler: false`) records no events:
//! each thread folds its calls into a tree of call paths as they run, with the same folding,
//! and [`CallGraph::from_snapshot`] merges those trees the same way.
//!
//! [`CallGraph::run_metadata`] packs the graph the way `tf.summary.trace_export` does: a
//! `RunMetadata` whose `function_graphs[0].pre_optimization_graph` is the [`GraphDef`] and
//! whose `step_stats` hold one `NodeExecStats` per node, named like the node, so that the
//! Graphs tab can color nodes by compute time.
//!
//! ```
//! use trace_export::graph::CallGraph;
//! # fn snapshot() -> trace_runtime::session::Snapshot {
//! #     trace_runtime::session::start(&Default::default()).unwrap();
//! #     trace_runtime::session::stop().unwrap()
//! # }
//! let graph = CallGraph::from_snapshot(&snapshot());
//! for node in graph.nodes() {
//!     println!("{}: {} calls, {} ns self", node.name, node.calls, node.self_ns);
//! }
//! let graph_def = graph.graph_def();
//! assert_eq!(graph_def.node.len(), graph.nodes().len());
//! ```

use std::collections::BTreeMap;

use ahash::{AHashMap, AHashSet};
use trace_runtime::session::{Snapshot, ThreadCallTree};
use trace_runtime::Callsite;

use crate::proto::tensorboard::{
    attr_value, run_metadata, AttrValue, DeviceStepStats, GraphDef, NodeDef, NodeExecStats,
    RunMetadata, StepStats, VersionDef,
};

/// The device every node is placed on, in TensorFlow's form, so that TensorBoard's device
/// coloring and step stats line up.
pub const DEVICE: &str = "/job:localhost/replica:0/task:0/device:CPU:0";

/// The `op` of every node: one traced call.
const OP: &str = "TracedCall";

/// At most this many call sites are listed in a node's `callsites` attribute.
const MAX_LISTED_CALLSITES: usize = 8;

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
    nodes: Vec<CallNode>,
    start_wall_ns: u64,
    thread_names: BTreeMap<u64, String>,
}

/// An event that is open while later events are nested into it.
struct Frame {
    start_ns: u64,
    end_ns: u64,
    node: usize,
    /// Time covered by the events directly inside this one.
    children_ns: u64,
}

/// Builds the tree; node names are assigned once it is complete.
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

    /// The nearest node on the path from the root to `node` (inclusive) named `name`.
    fn on_path(&self, mut node: usize, name: &str) -> Option<usize> {
        loop {
            if self.nodes[node].event_name == name {
                return Some(node);
            }
            node = self.nodes[node].parent?;
        }
    }

    /// Adds one thread's call tree: its paths become (or join) nodes of the same paths.
    fn merge_tree(&mut self, tree: &ThreadCallTree) {
        let mut node_of = Vec::with_capacity(tree.nodes.len());
        for path in &tree.nodes {
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
                entry.first_thread_id = tree.thread_id;
            }
            let threads = &mut self.threads[node];
            if !threads.contains(&tree.thread_id) {
                threads.push(tree.thread_id);
            }
            if let Some(site) = path.callsite {
                let sites = &mut self.callsites[node];
                if !sites.iter().any(|s| std::ptr::eq(*s, site)) {
                    sites.push(site);
                }
            }
        }
        for (path, &node) in tree.nodes.iter().zip(&node_of) {
            for &caller in &path.recursive_callers {
                if let Some(&caller) = node_of.get(caller) {
                    if !self.nodes[node].recursive_callers.contains(&caller) {
                        self.nodes[node].recursive_callers.push(caller);
                    }
                }
            }
        }
    }

    fn close(&mut self, frame: Frame) {
        let duration = frame.end_ns - frame.start_ns;
        self.nodes[frame.node].self_ns += duration.saturating_sub(frame.children_ns);
    }
}

impl CallGraph {
    /// Builds the call graph of every thread of `snapshot`.
    pub fn from_snapshot(snapshot: &Snapshot) -> CallGraph {
        let mut builder = Builder::default();
        let mut thread_names = BTreeMap::new();
        for thread in &snapshot.threads {
            thread_names.insert(thread.thread_id, thread.name.clone());
            let mut open: Vec<Frame> = Vec::new();
            for event in &thread.events {
                // Events come sorted by start, the longer first on ties, so a caller
                // precedes its callees. Close what ended before this event starts.
                while open.last().is_some_and(|f| f.end_ns <= event.start_ns) {
                    let frame = open.pop().expect("checked");
                    builder.close(frame);
                }
                // The caller is the innermost open event that contains this one; async
                // events may overlap partially, so look past the ones that do not.
                let caller = open
                    .iter()
                    .rposition(|f| f.start_ns <= event.start_ns && event.end_ns <= f.end_ns);
                let duration = event.end_ns - event.start_ns;
                let (node, folded) = match caller {
                    Some(i) => {
                        open[i].children_ns += duration;
                        let caller_node = open[i].node;
                        match builder.on_path(caller_node, event.name) {
                            Some(ancestor) => {
                                if ancestor != caller_node
                                    && !builder.nodes[ancestor]
                                        .recursive_callers
                                        .contains(&caller_node)
                                {
                                    builder.nodes[ancestor].recursive_callers.push(caller_node);
                                }
                                (ancestor, true)
                            }
                            None => (builder.node(Some(caller_node), event.name), false),
                        }
                    }
                    None => (builder.node(None, event.name), false),
                };
                let entry = &mut builder.nodes[node];
                entry.calls += 1;
                if folded {
                    // The ancestor's own call is still open and its total covers this one.
                    entry.recursive_calls += 1;
                } else {
                    entry.total_ns += duration;
                }
                if event.start_ns < entry.first_start_ns {
                    entry.first_start_ns = event.start_ns;
                    entry.first_thread_id = thread.thread_id;
                }
                let threads = &mut builder.threads[node];
                if threads.last() != Some(&thread.thread_id) {
                    threads.push(thread.thread_id);
                }
                if let Some(site) = event.callsite {
                    let sites = &mut builder.callsites[node];
                    if !sites.iter().any(|s| std::ptr::eq(*s, site)) {
                        sites.push(site);
                    }
                }
                open.push(Frame {
                    start_ns: event.start_ns,
                    end_ns: event.end_ns,
                    node,
                    children_ns: 0,
                });
            }
            while let Some(frame) = open.pop() {
                builder.close(frame);
            }
        }
        // A graph-only session's call trees, folded by the recording threads already.
        for tree in &snapshot.call_trees {
            thread_names.insert(tree.thread_id, tree.name.clone());
            builder.merge_tree(tree);
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
            // Threads come one after the other, so each appears once; list them by id.
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

    /// The graph: one `NodeDef` per call path. A callee's `input` lists its caller (and the
    /// callers of folded recursive calls); the attributes `calls`, `total_ns`, `self_ns` (int)
    /// and `total`, `self`, `threads`, `callsites` (text) show in the node's info panel.
    pub fn graph_def(&self) -> GraphDef {
        let node = self
            .nodes
            .iter()
            .map(|node| {
                let mut input: Vec<String> = node
                    .parent
                    .iter()
                    .chain(&node.recursive_callers)
                    .map(|&i| self.nodes[i].name.clone())
                    .collect();
                input.dedup();
                let mut attr = BTreeMap::new();
                let mut int = |key: &str, value: u64| {
                    let value = i64::try_from(value).unwrap_or(i64::MAX);
                    attr.insert(
                        key.to_owned(),
                        AttrValue {
                            value: Some(attr_value::Value::I(value)),
                        },
                    );
                };
                int("calls", node.calls);
                int("total_ns", node.total_ns);
                int("self_ns", node.self_ns);
                if node.recursive_calls > 0 {
                    int("recursive_calls", node.recursive_calls);
                }
                let mut text = |key: &str, value: String| {
                    attr.insert(
                        key.to_owned(),
                        AttrValue {
                            value: Some(attr_value::Value::S(value.into_bytes())),
                        },
                    );
                };
                text("event", node.event_name.to_owned());
                text("total", format_ns(node.total_ns));
                text("self", format_ns(node.self_ns));
                text("threads", node.threads.join(", "));
                if !node.callsites.is_empty() {
                    let mut sites =
                        node.callsites[..node.callsites.len().min(MAX_LISTED_CALLSITES)].join(", ");
                    if node.callsites.len() > MAX_LISTED_CALLSITES {
                        sites.push_str(", ...");
                    }
                    text("callsites", sites);
                }
                NodeDef {
                    name: node.name.clone(),
                    op: OP.to_owned(),
                    input,
                    device: DEVICE.to_owned(),
                    attr,
                }
            })
            .collect();
        GraphDef {
            node,
            versions: Some(VersionDef {
                producer: 1,
                min_consumer: 0,
                bad_consumers: Vec::new(),
            }),
        }
    }

    /// Execution statistics: one `NodeExecStats` per node, named like its `NodeDef`, starting
    /// at the node's first call and lasting its total time, with a timeline label that gives
    /// calls, total and self time.
    pub fn step_stats(&self) -> StepStats {
        let node_stats = self
            .nodes
            .iter()
            .map(|node| {
                let start_ns = self.start_wall_ns.saturating_add(node.first_start_ns);
                let start_ns = i64::try_from(start_ns).unwrap_or(i64::MAX);
                let total_ns = i64::try_from(node.total_ns).unwrap_or(i64::MAX);
                let start_us = start_ns / 1000;
                let total_us = total_ns / 1000;
                NodeExecStats {
                    node_name: node.name.clone(),
                    all_start_micros: start_us,
                    op_start_rel_micros: 0,
                    op_end_rel_micros: total_us,
                    all_end_rel_micros: total_us,
                    timeline_label: format!(
                        "{} = {} calls, total {}, self {}",
                        node.event_name,
                        node.calls,
                        format_ns(node.total_ns),
                        format_ns(node.self_ns)
                    ),
                    scheduled_micros: start_us,
                    thread_id: node.first_thread_id as u32,
                    all_start_nanos: start_ns,
                    op_start_rel_nanos: 0,
                    op_end_rel_nanos: total_ns,
                    all_end_rel_nanos: total_ns,
                    scheduled_nanos: start_ns,
                }
            })
            .collect();
        let thread_names = self
            .thread_names
            .iter()
            .map(|(&id, name)| (id as u32, name.clone()))
            .collect();
        StepStats {
            dev_stats: vec![DeviceStepStats {
                device: DEVICE.to_owned(),
                node_stats,
                thread_names,
            }],
        }
    }

    /// What `tf.summary.trace_export` stores: the graph as the pre-optimization graph of one
    /// function, and the step stats.
    pub fn run_metadata(&self) -> RunMetadata {
        RunMetadata {
            step_stats: Some(self.step_stats()),
            partition_graphs: Vec::new(),
            function_graphs: vec![run_metadata::FunctionGraphs {
                partition_graphs: Vec::new(),
                pre_optimization_graph: Some(self.graph_def()),
                post_optimization_graph: None,
            }],
        }
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

/// Nanoseconds in a short human unit.
fn format_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.3} us", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.3} ms", ns as f64 / 1e6),
        _ => format!("{:.3} s", ns as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trace_runtime::clock::ClockKind;
    use trace_runtime::session::{Event, ThreadRecord};

    fn event(name: &'static str, start_ns: u64, end_ns: u64) -> Event {
        Event {
            name,
            callsite: None,
            start_ns,
            end_ns,
            is_async: false,
            metadata: Vec::new(),
        }
    }

    fn snapshot(threads: Vec<Vec<Event>>) -> Snapshot {
        Snapshot {
            start_wall_ns: 1_700_000_000_000_000_000,
            stop_wall_ns: 1_700_000_001_000_000_000,
            duration_ns: 1_000_000_000,
            clock: ClockKind::Monotonic,
            level: 2,
            threads: threads
                .into_iter()
                .enumerate()
                .map(|(i, mut events)| {
                    events
                        .sort_by(|a, b| a.start_ns.cmp(&b.start_ns).then(b.end_ns.cmp(&a.end_ns)));
                    ThreadRecord {
                        thread_id: i as u64 + 1,
                        name: format!("t{}", i + 1),
                        events,
                        dropped: 0,
                    }
                })
                .collect(),
            call_trees: Vec::new(),
        }
    }

    fn summary(graph: &CallGraph) -> Vec<(String, u64, u64, u64)> {
        graph
            .nodes()
            .iter()
            .map(|n| (n.name.clone(), n.calls, n.total_ns, n.self_ns))
            .collect()
    }

    #[test]
    fn nests_by_time_and_merges_paths() {
        let graph = CallGraph::from_snapshot(&snapshot(vec![vec![
            event("step", 0, 100),
            event("forward", 10, 40),
            event("matmul", 12, 30),
            event("forward", 50, 80),
            event("matmul", 55, 60),
            event("step", 200, 250),
            event("backward", 210, 220),
        ]]));
        assert_eq!(
            summary(&graph),
            [
                ("step".into(), 2, 150, 150 - 60 - 10),
                ("step/forward".into(), 2, 60, 60 - 23),
                ("step/forward/matmul".into(), 2, 23, 23),
                ("step/backward".into(), 1, 10, 10),
            ]
        );
        let def = graph.graph_def();
        assert_eq!(def.node[2].input, ["step/forward"]);
        assert!(def.node[0].input.is_empty());
        assert_eq!(
            def.node[1].attr["calls"].value,
            Some(attr_value::Value::I(2))
        );
        let stats = graph.step_stats();
        let names: Vec<_> = stats.dev_stats[0]
            .node_stats
            .iter()
            .map(|s| s.node_name.as_str())
            .collect();
        let node_names: Vec<_> = def.node.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, node_names);
        assert_eq!(stats.dev_stats[0].node_stats[1].all_end_rel_nanos, 60);
    }

    #[test]
    fn recursion_is_folded() {
        // fib calls fib calls fib ..., and a -> b -> a -> c.
        let graph = CallGraph::from_snapshot(&snapshot(vec![vec![
            event("fib", 0, 100),
            event("fib", 10, 90),
            event("fib", 20, 80),
            event("leaf", 30, 40),
            event("a", 200, 300),
            event("b", 210, 290),
            event("a", 220, 280),
            event("c", 230, 240),
        ]]));
        assert_eq!(
            summary(&graph),
            [
                ("fib".into(), 3, 100, 90),
                ("fib/leaf".into(), 1, 10, 10),
                ("a".into(), 2, 100, 20 + 50),
                ("a/b".into(), 1, 80, 20),
                ("a/c".into(), 1, 10, 10),
            ]
        );
        let fib = graph.node("fib").unwrap();
        assert_eq!(fib.recursive_calls, 2);
        // A function calling itself gets no self-loop; a -> b -> a gets the back edge.
        assert!(fib.recursive_callers.is_empty());
        let def = graph.graph_def();
        assert_eq!(def.node[2].input, ["a/b"]);
        assert_eq!(def.node[3].input, ["a"]);
    }

    #[test]
    fn threads_share_paths() {
        let graph = CallGraph::from_snapshot(&snapshot(vec![
            vec![event("work", 0, 10)],
            vec![event("work", 5, 25), event("io", 6, 8)],
        ]));
        assert_eq!(
            summary(&graph),
            [("work".into(), 2, 30, 28), ("work/io".into(), 1, 2, 2)]
        );
        assert_eq!(graph.nodes()[0].threads, ["t1", "t2"]);
    }

    #[test]
    fn partial_overlaps_nest_under_the_containing_event() {
        let mut late = event("late", 60, 150);
        late.is_async = true;
        let graph = CallGraph::from_snapshot(&snapshot(vec![vec![
            event("outer", 0, 200),
            event("mid", 50, 100),
            late,
            event("inside_late", 120, 130),
        ]]));
        assert_eq!(
            graph
                .nodes()
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>(),
            ["outer", "outer/mid", "outer/late", "outer/late/inside_late"]
        );
    }

    #[test]
    fn names_are_sanitized_and_unique() {
        assert_eq!(
            sanitize("my_crate::model::forward"),
            "my_crate.model.forward"
        );
        assert_eq!(sanitize("a/b"), "a_b");
        assert_eq!(sanitize("model/dense:MatMul"), "model_dense_MatMul");
        assert_eq!(sanitize("say \"hi\"\n🙂"), "say__hi___");
        assert_eq!(sanitize(""), "unnamed");
        assert_eq!(sanitize("-x"), "_-x");
        let graph = CallGraph::from_snapshot(&snapshot(vec![vec![
            event("a b", 0, 10),
            event("a_b", 20, 30),
            event("a/b", 40, 50),
        ]]));
        let names: Vec<_> = graph.nodes().iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a_b", "a_b_2", "a_b_3"]);
    }

    #[test]
    fn call_trees_of_threads_merge_by_path() {
        use trace_runtime::session::{CallPath, ThreadCallTree};
        let path = |name, parent, calls, total_ns, self_ns| CallPath {
            name,
            callsite: None,
            parent,
            recursive_callers: Vec::new(),
            calls,
            recursive_calls: 0,
            total_ns,
            self_ns,
            first_start_ns: 5,
        };
        let mut snap = snapshot(Vec::new());
        snap.call_trees = vec![
            ThreadCallTree {
                thread_id: 1,
                name: "main".into(),
                nodes: vec![
                    path("step", None, 2, 100, 40),
                    path("io", Some(0), 4, 60, 60),
                ],
                dropped: 0,
            },
            ThreadCallTree {
                thread_id: 2,
                name: "worker".into(),
                nodes: vec![path("step", None, 1, 30, 30)],
                dropped: 0,
            },
        ];
        let graph = CallGraph::from_snapshot(&snap);
        assert_eq!(
            summary(&graph),
            [
                ("step".to_owned(), 3, 130, 70),
                ("step/io".to_owned(), 4, 60, 60)
            ]
        );
        assert_eq!(
            graph.node("step").map(|n| n.threads.clone()),
            Some(vec!["main".to_owned(), "worker".to_owned()])
        );
    }

    #[test]
    fn empty_snapshot() {
        let graph = CallGraph::from_snapshot(&snapshot(vec![]));
        assert!(graph.is_empty());
        assert!(graph.graph_def().node.is_empty());
        assert_eq!(graph.step_stats().dev_stats[0].node_stats.len(), 0);
    }
}
