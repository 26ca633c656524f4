//! Write → read round trip of the profiler: generated trees of scopes, with hostile names and
//! metadata of every type, are recorded with `Trace`, written by `profiler::stop`, read back
//! with `xspace::decode` and compared: names (each event's name as recorded, and an op name
//! that xprof parses), nesting, and every metadata value.

use std::path::Path;
use std::time::{Duration, Instant};

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use trace_export::profiler::{self, ProfilerOptions};
use trace_export::proto::xplane::{x_event, x_stat, XEvent, XPlane};
use trace_export::xspace;
use trace_runtime::{Trace, Value};
use trace_tests::{is_tf_op, scratch_dir, session_lock};

/// A scope to record: its name, its metadata and the scopes nested in it.
#[derive(Clone, Debug)]
struct Scope {
    name: &'static str,
    metadata: Vec<(&'static str, Value<'static>)>,
    children: Vec<Scope>,
}

/// A scope as read back from the profile.
#[derive(Debug, PartialEq)]
struct ReadScope {
    /// The name as recorded: the metadata's display name.
    name: String,
    /// Whether the metadata's name is a TensorFlow op full name, as xprof's framework op
    /// tools need (no scope here is a step marker).
    is_op: bool,
    stats: Vec<(String, Stat)>,
    children: Vec<ReadScope>,
}

/// A stat value that compares floats by their bits, so that NaN equals itself.
#[derive(Debug, PartialEq)]
enum Stat {
    Int(i64),
    UInt(u64),
    FloatBits(u64),
    Str(String),
    Other(String),
}

/// What the profile holds for a recorded value (booleans are int64 stats, as in xprof).
fn expected_stat(value: &Value<'_>) -> Stat {
    match value {
        Value::Int(v) => Stat::Int(*v),
        Value::UInt(v) => Stat::UInt(*v),
        Value::Float(v) => Stat::FloatBits(v.to_bits()),
        Value::Bool(v) => Stat::Int(i64::from(*v)),
        Value::Str(s) => Stat::Str(s.to_string()),
    }
}

fn read_stat(value: Option<&x_stat::Value>) -> Stat {
    match value {
        Some(x_stat::Value::Int64Value(v)) => Stat::Int(*v),
        Some(x_stat::Value::Uint64Value(v)) => Stat::UInt(*v),
        Some(x_stat::Value::DoubleValue(v)) => Stat::FloatBits(v.to_bits()),
        Some(x_stat::Value::StrValue(s)) => Stat::Str(s.clone()),
        other => Stat::Other(format!("{other:?}")),
    }
}

fn expected(scope: &Scope) -> ReadScope {
    ReadScope {
        name: scope.name.to_owned(),
        is_op: true,
        stats: scope
            .metadata
            .iter()
            .map(|(key, value)| ((*key).to_owned(), expected_stat(value)))
            .collect(),
        children: scope.children.iter().map(expected).collect(),
    }
}

/// Keeps the thread busy for a moment, so that every scope lasts and no two scopes start or
/// end at the same clock reading: nesting is then unambiguous in the profile.
fn pause() {
    let start = Instant::now();
    while start.elapsed() < Duration::from_micros(2) {
        std::hint::spin_loop();
    }
}

fn record(scope: &Scope) {
    let guard = Trace::new(scope.name);
    for (key, value) in &scope.metadata {
        guard.set_metadata(key, value.clone());
    }
    pause();
    for child in &scope.children {
        record(child);
    }
    pause();
}

fn offset(event: &XEvent) -> i64 {
    match event.data {
        Some(x_event::Data::OffsetPs(ps)) => ps,
        ref other => panic!("event without an offset: {other:?}"),
    }
}

/// Rebuilds the tree of a line from its events, which are sorted by start and nested.
fn read_line(plane: &XPlane, events: &[XEvent]) -> Vec<ReadScope> {
    // The open scopes, innermost last, with their end; closed ones go into their parent.
    let mut roots = Vec::new();
    let mut open: Vec<(ReadScope, i64)> = Vec::new();
    let close = |open: &mut Vec<(ReadScope, i64)>, roots: &mut Vec<ReadScope>| {
        let (scope, _) = open.pop().expect("an open scope");
        match open.last_mut() {
            Some((parent, _)) => parent.children.push(scope),
            None => roots.push(scope),
        }
    };
    for event in events {
        let start = offset(event);
        while open.last().is_some_and(|&(_, end)| end <= start) {
            close(&mut open, &mut roots);
        }
        let metadata = &plane.event_metadata[&event.metadata_id];
        let scope = ReadScope {
            name: metadata.display_name.clone(),
            is_op: is_tf_op(&metadata.name),
            stats: event
                .stats
                .iter()
                .map(|stat| {
                    let key = plane.stat_metadata[&stat.metadata_id].name.clone();
                    (key, read_stat(stat.value.as_ref()))
                })
                .collect(),
            children: Vec::new(),
        };
        open.push((scope, start + event.duration_ps));
    }
    while !open.is_empty() {
        close(&mut open, &mut roots);
    }
    roots
}

/// Profiles `roots` into `logdir` and reads back this thread's scopes.
fn round_trip(roots: &[Scope], logdir: &Path) -> Vec<ReadScope> {
    let options = ProfilerOptions {
        run_name: Some("run".into()),
        host_name: Some("host".into()),
        ..Default::default()
    };
    profiler::start_with(logdir, options).unwrap();
    for root in roots {
        record(root);
    }
    let report = profiler::stop().unwrap();
    assert_eq!(report.dropped, 0);
    let space = xspace::decode(&std::fs::read(&report.xplane).unwrap()).unwrap();
    let plane = space
        .planes
        .iter()
        .find(|p| p.name == xspace::HOST_PLANE)
        .unwrap();
    let thread = std::thread::current();
    let lines: Vec<_> = plane
        .lines
        .iter()
        .filter(|line| Some(line.name.as_str()) == thread.name())
        .collect();
    assert_eq!(lines.len(), 1, "properly nested scopes need one line");
    read_line(plane, &lines[0].events)
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// Leaks `text`: the runtime takes names and keys as `&'static str`. A few kilobytes per
/// test run.
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// Names and string values: empty, quotes, control characters, NUL, emoji, and one longer
/// than the short-name encoding (8 KiB).
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("quote\" back\\slash\nnew line\t\u{1}\u{7f} </script>".to_owned()),
        Just("nul \u{0} inside".to_owned()),
        Just("emoji 😀 and ünïcödé".to_owned()),
        Just("x".repeat(9_000)),
        any::<String>().prop_map(|s| s.chars().take(24).collect()),
        "[a-z_:]{1,16}",
    ]
}

/// Keys the profile uses for its own stats (step markers and links) are left out: the
/// exporter adds stats under them.
fn metadata_key() -> impl Strategy<Value = String> {
    hostile_text().prop_filter("reserved key", |key| {
        ![
            "step_num",
            "_r",
            "_pt",
            "_p",
            "_ct",
            "_c",
            xspace::SYNTHETIC_STAT,
        ]
        .contains(&key.as_str())
    })
}

fn metadata_value() -> impl Strategy<Value = Value<'static>> {
    prop_oneof![
        prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), any::<i64>()].prop_map(Value::Int),
        prop_oneof![Just(u64::MAX), Just(0), any::<u64>()].prop_map(Value::UInt),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(f64::MIN_POSITIVE),
            any::<f64>()
        ]
        .prop_map(Value::Float),
        any::<bool>().prop_map(Value::Bool),
        hostile_text().prop_map(Value::from),
    ]
}

fn scope() -> impl Strategy<Value = Scope> {
    // Keys are unique per scope: a repeated key would be two stats of one name.
    let leaf = (
        hostile_text(),
        btree_map(metadata_key(), metadata_value(), 0..4),
    )
        .prop_map(|(name, metadata)| Scope {
            name: leak(name),
            metadata: metadata
                .into_iter()
                .map(|(key, value)| (leak(key), value))
                .collect(),
            children: Vec::new(),
        });
    leaf.prop_recursive(4, 24, 4, |inner| {
        (inner.clone(), vec(inner, 0..4)).prop_map(|(mut scope, children)| {
            scope.children = children;
            scope
        })
    })
}

proptest! {
    // Each case is a profiling session written to disk (a few milliseconds).
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn recorded_scopes_read_back_with_names_nesting_and_metadata(roots in vec(scope(), 1..4)) {
        let _l = session_lock();
        let logdir = scratch_dir("round-trip");
        let read = round_trip(&roots, &logdir);
        std::fs::remove_dir_all(&logdir).unwrap();
        let wanted: Vec<ReadScope> = roots.iter().map(expected).collect();
        prop_assert_eq!(read, wanted);
    }
}
