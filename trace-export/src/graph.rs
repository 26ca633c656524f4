//! The call graph written as TensorBoard's Graphs tab reads it.
//!
//! [`CallGraph`] (built in [`analysis::calls`](crate::analysis::calls)) has one node per
//! call path of event names: `train_step`, `train_step/forward`, `train_step/forward/matmul`.
//! The `/` makes TensorBoard group a function's callees inside it, and each callee lists its
//! caller as its input, so the edges run from caller to callee. Threads that run the same
//! path share its node.
//!
//! [`CallGraph::run_metadata`] packs the graph the way `tf.summary.trace_export` does: a
//! `RunMetadata` whose `function_graphs[0].pre_optimization_graph` is the [`GraphDef`] and
//! whose `step_stats` hold one `NodeExecStats` per node, named like the node, so that the
//! Graphs tab can color nodes by compute time.
//!
//! ```
//! use trace_export::graph::CallGraph;
//! # fn snapshot() -> trace_runtime::snapshot::Snapshot {
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

pub use crate::analysis::calls::{sanitize, CallGraph, CallNode};

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

impl CallGraph {
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
    use trace_runtime::session::CallTree;
    use trace_runtime::snapshot::{Event, Recording, Snapshot, ThreadCallTree, ThreadRecord};

    fn event(name: &'static str, start_ns: u64, end_ns: u64) -> Event {
        Event::new(name, start_ns, end_ns)
    }

    fn recorded(recording: Recording) -> Snapshot {
        Snapshot::new(
            1_700_000_000_000_000_000,
            1_000_000_000,
            ClockKind::Monotonic,
            2,
            recording,
        )
    }

    fn snapshot(threads: Vec<Vec<Event>>) -> Snapshot {
        let threads = threads
            .into_iter()
            .enumerate()
            .map(|(i, events)| ThreadRecord::new(i as u64 + 1, format!("t{}", i + 1), events, 0))
            .collect();
        recorded(Recording::Events(threads))
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
    /// A call's caller is the call open when it was entered, as the live fold sees it: an
    /// async event entered inside `mid` stays `mid`'s callee after `mid` returns.
    fn partial_overlaps_nest_under_the_call_open_at_entry() {
        let late = event("late", 60, 150).asynchronous();
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
            [
                "outer",
                "outer/mid",
                "outer/mid/late",
                "outer/mid/late/inside_late"
            ]
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
        // Calls as a graph-only session folds them live: `(name, start, end)`, nested by
        // time (the inner first on equal ends).
        let fold = |thread_id, name: &str, calls: &[(&'static str, u64, u64)]| {
            let mut tree = CallTree::new(0);
            let mut open: Vec<(&'static str, u32, u64, u64)> = Vec::new();
            for &(call, start, end) in calls {
                while open.last().is_some_and(|o| o.3 <= start) {
                    let (name, frame, start, end) = open.pop().unwrap();
                    tree.exit(name, None, frame, start, end);
                }
                let frame = tree.enter(call, None, start).unwrap();
                open.push((call, frame, start, end));
            }
            while let Some((name, frame, start, end)) = open.pop() {
                tree.exit(name, None, frame, start, end);
            }
            ThreadCallTree::new(thread_id, name, tree.paths(|t| t, |t| t), 0)
        };
        let main = fold(
            1,
            "main",
            &[
                ("step", 0, 50),
                ("io", 0, 15),
                ("io", 15, 30),
                ("step", 50, 100),
                ("io", 50, 65),
                ("io", 65, 80),
            ],
        );
        let worker = fold(2, "worker", &[("step", 0, 30)]);
        let snap = recorded(Recording::CallGraph(vec![main, worker]));
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
