//! `tracing` spans recorded through `TraceLayer`, read back from the profile `profiler::stop`
//! writes.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Once;
use std::thread::JoinHandle;

use prost::Message;
use trace_export::profiler::{self, ProfileReport, ProfilerOptions};
use trace_export::proto::xplane::{x_event, x_stat, XPlane, XSpace};
use trace_runtime::TraceLayer;
use trace_tests::{is_tf_op, run_interleaved, scratch_dir, session_lock, yield_now};
use tracing::instrument;
use tracing_subscriber::prelude::*;

/// The layer is the global subscriber of this test binary, so that every thread has it.
fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing_subscriber::registry()
            .with(TraceLayer::default())
            .init();
    });
}

/// A profiler session that is stopped when dropped, also when the test fails first, so that
/// the next test can start its own.
struct Session {
    logdir: PathBuf,
}

impl Session {
    fn start(label: &str, level: u8) -> Session {
        install();
        let logdir = scratch_dir(label);
        profiler::start_with(
            &logdir,
            ProfilerOptions {
                host_tracer_level: level,
                run_name: Some("run".into()),
                host_name: Some("testhost".into()),
                ..Default::default()
            },
        )
        .unwrap();
        Session { logdir }
    }

    fn stop(&self) -> ProfileReport {
        profiler::stop().unwrap()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if profiler::is_active() {
            let _ = profiler::stop();
        }
    }
}

/// Threads joined when dropped, also when the test fails first.
#[derive(Default)]
struct Threads(Vec<JoinHandle<()>>);

impl Threads {
    fn spawn(&mut self, name: &str, f: impl FnOnce() + Send + 'static) {
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .unwrap();
        self.0.push(handle);
    }

    /// Joins every thread; panics if one panicked.
    fn join(&mut self) {
        let panicked = self
            .0
            .drain(..)
            .map(JoinHandle::join)
            .filter(Result::is_err)
            .count();
        assert_eq!(panicked, 0, "a thread panicked");
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        for handle in self.0.drain(..) {
            let _ = handle.join();
        }
    }
}

/// A metadata value as read back.
#[derive(Clone, Debug, PartialEq)]
enum Stat {
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
}

/// An event as read back.
#[derive(Clone, Debug)]
struct Ev {
    thread: String,
    /// The name as recorded: the metadata's display name.
    name: String,
    /// The name xprof reads.
    op: String,
    start_ps: i64,
    end_ps: i64,
    stats: BTreeMap<String, Stat>,
}

impl Ev {
    fn contains(&self, other: &Ev) -> bool {
        self.thread == other.thread
            && self.start_ps <= other.start_ps
            && other.end_ps <= self.end_ps
    }

    fn stat(&self, key: &str) -> Option<&Stat> {
        self.stats.get(key)
    }
}

/// Every event of the host plane, in line order then start order.
fn events(xplane: &Path) -> Vec<Ev> {
    let space = XSpace::decode(std::fs::read(xplane).unwrap().as_slice()).unwrap();
    let plane: &XPlane = space
        .planes
        .iter()
        .find(|p| p.name == "/host:CPU")
        .expect("/host:CPU plane");
    let stat_name = |id: i64| plane.stat_metadata[&id].name.clone();
    let mut out = Vec::new();
    for line in &plane.lines {
        for event in &line.events {
            let Some(x_event::Data::OffsetPs(start_ps)) = event.data else {
                panic!("event without offset");
            };
            let stats: BTreeMap<String, Stat> = event
                .stats
                .iter()
                .map(|s| {
                    let value = match s.value.clone().unwrap() {
                        x_stat::Value::Int64Value(v) => Stat::Int(v),
                        x_stat::Value::Uint64Value(v) => Stat::UInt(v),
                        x_stat::Value::DoubleValue(v) => Stat::Float(v),
                        x_stat::Value::StrValue(v) => Stat::Str(v),
                        x_stat::Value::RefValue(id) => Stat::Str(stat_name(id as i64)),
                        x_stat::Value::BytesValue(b) => panic!("bytes stat {b:?}"),
                    };
                    (stat_name(s.metadata_id), value)
                })
                .collect();
            let metadata = &plane.event_metadata[&event.metadata_id];
            // A root step marker keeps its name; every other span is an op xprof counts.
            if stats.contains_key("_r") {
                assert_eq!(metadata.name, metadata.display_name);
            } else {
                assert!(is_tf_op(&metadata.name), "{metadata:?}");
            }
            out.push(Ev {
                thread: line.name.clone(),
                name: metadata.display_name.clone(),
                op: metadata.name.clone(),
                start_ps,
                end_ps: start_ps + event.duration_ps,
                stats,
            });
        }
    }
    out
}

fn named<'a>(events: &'a [Ev], name: &str) -> Vec<&'a Ev> {
    events.iter().filter(|e| e.name == name).collect()
}

fn only<'a>(events: &'a [Ev], name: &str) -> &'a Ev {
    let found = named(events, name);
    assert_eq!(found.len(), 1, "events named {name:?}: {found:#?}");
    found[0]
}

fn this_thread() -> String {
    std::thread::current().name().unwrap().to_owned()
}

#[instrument]
fn forward(rows: u64, label: &str) -> u64 {
    tracing::debug_span!("matmul").in_scope(|| black_box(rows * 2))
}

#[derive(Debug)]
#[allow(dead_code)] // read by `Debug` only
struct Shape {
    dims: Vec<u32>,
}

#[test]
fn spans_are_events_with_names_nesting_fields_and_levels() {
    let _l = session_lock();
    let session = Session::start("tracing-fields", 2);
    let text = "say \"hi\"\nand\tbye \u{1F600}";
    {
        let outer = tracing::info_span!(
            "outer",
            text,
            count = 3u32,
            neg = -4i64,
            ratio = 0.5,
            flag = true,
            shape = ?Shape { dims: vec![2, 3] },
            big = ?vec![7u8; 2000],
            late = tracing::field::Empty,
        )
        .entered();
        outer.record("late", "given later");
        forward(4, "a \"quoted\"\nlabel");
        tracing::trace_span!("verbose").in_scope(|| black_box(1));
        tracing::error_span!("failing").in_scope(|| black_box(2));
        tracing::warn_span!("warning").in_scope(|| black_box(3));
        tracing::info!(answer = 42, "an event, not a span");
    }
    let report = session.stop();
    let events = events(&report.xplane);
    let mut names: Vec<_> = events.iter().map(|e| e.name.as_str()).collect();
    names.sort();
    // TRACE spans are level 3, above the default level 2; `tracing` events are left out.
    assert_eq!(names, ["failing", "forward", "matmul", "outer", "warning"]);
    // Spans have no call site of the profiler's: they are ops by name.
    let mut ops: Vec<_> = events.iter().map(|e| e.op.as_str()).collect();
    ops.sort();
    ops.dedup();
    assert_eq!(
        ops,
        [
            "failing:Failing",
            "forward:Forward",
            "matmul:Matmul",
            "outer:Outer",
            "warning:Warning"
        ]
    );
    assert!(events.iter().all(|e| e.thread == this_thread()));

    let outer = only(&events, "outer");
    let forward = only(&events, "forward");
    let matmul = only(&events, "matmul");
    assert!(outer.contains(forward) && forward.contains(matmul));
    assert!(outer.contains(only(&events, "failing")) && outer.contains(only(&events, "warning")));
    assert!(forward.end_ps <= only(&events, "failing").start_ps);

    assert_eq!(outer.stat("text"), Some(&Stat::Str(text.into())));
    assert_eq!(outer.stat("count"), Some(&Stat::UInt(3)));
    assert_eq!(outer.stat("neg"), Some(&Stat::Int(-4)));
    assert_eq!(outer.stat("ratio"), Some(&Stat::Float(0.5)));
    assert_eq!(outer.stat("flag"), Some(&Stat::Int(1)));
    assert_eq!(
        outer.stat("shape"),
        Some(&Stat::Str("Shape { dims: [2, 3] }".into()))
    );
    assert_eq!(outer.stat("late"), Some(&Stat::Str("given later".into())));
    // Long `Debug` text is cut at 1 KiB and marked.
    let Some(Stat::Str(big)) = outer.stat("big") else {
        panic!("big: {:?}", outer.stat("big"));
    };
    assert!(big.len() <= 1024 && big.starts_with("[7, 7, ") && big.ends_with('…'));

    assert_eq!(forward.stat("rows"), Some(&Stat::UInt(4)));
    assert_eq!(
        forward.stat("label"),
        Some(&Stat::Str("a \"quoted\"\nlabel".into()))
    );
    assert!(matmul.stats.is_empty(), "{matmul:?}");
}

#[test]
fn the_session_level_decides_which_spans_are_recorded() {
    let _l = session_lock();
    for (level, expected) in [
        (1, &["error", "info", "warn"][..]),
        (3, &["debug", "error", "info", "trace", "warn"][..]),
    ] {
        let session = Session::start("tracing-levels", level);
        tracing::error_span!("error").in_scope(|| ());
        tracing::warn_span!("warn").in_scope(|| ());
        tracing::info_span!("info").in_scope(|| ());
        tracing::debug_span!("debug").in_scope(|| ());
        tracing::trace_span!("trace").in_scope(|| ());
        let events = events(&session.stop().xplane);
        let mut names: Vec<_> = events.iter().map(|e| e.name.as_str()).collect();
        names.sort();
        assert_eq!(names, expected, "level {level}");
    }
}

#[test]
fn spans_on_several_threads_are_events_of_their_threads() {
    let _l = session_lock();
    let session = Session::start("tracing-threads", 2);
    let mut threads = Threads::default();
    for worker in 0..3u64 {
        threads.spawn(&format!("worker-{worker}"), move || {
            for item in 0..4u64 {
                let _span = tracing::info_span!("work", worker, item).entered();
                forward(item, "threaded");
            }
        });
    }
    threads.join();
    let report = session.stop();
    let events = events(&report.xplane);
    for worker in 0..3u64 {
        let thread = format!("worker-{worker}");
        let work: Vec<_> = named(&events, "work")
            .into_iter()
            .filter(|e| e.thread == thread)
            .collect();
        assert_eq!(work.len(), 4, "{thread}");
        for (item, event) in work.iter().enumerate() {
            assert_eq!(event.stat("worker"), Some(&Stat::UInt(worker)));
            assert_eq!(event.stat("item"), Some(&Stat::UInt(item as u64)));
            let inner: Vec<_> = named(&events, "forward")
                .into_iter()
                .filter(|f| event.contains(f))
                .collect();
            assert_eq!(inner.len(), 1);
            assert_eq!(inner[0].stat("rows"), Some(&Stat::UInt(item as u64)));
        }
    }
    assert_eq!(report.dropped, 0);
}

#[instrument]
async fn fetch(id: u32) -> u32 {
    yield_now().await;
    tracing::info_span!("parse").in_scope(|| black_box(id))
}

#[test]
fn async_spans_are_one_event_per_poll_with_fields_on_the_first() {
    let _l = session_lock();
    let session = Session::start("tracing-async", 2);
    // Both futures are made before either is polled, as `join!` does.
    let (one, two) = (fetch(1), fetch(2));
    run_interleaved(vec![
        Box::pin(async move {
            one.await;
        }),
        Box::pin(async move {
            two.await;
        }),
    ]);
    let events = events(&session.stop().xplane);
    let fetches = named(&events, "fetch");
    // Each future is polled twice (it waits once), and `tracing` enters the span once more
    // to drop the future.
    assert!(fetches.len() >= 4, "{fetches:#?}");
    for id in [1u32, 2] {
        let first: Vec<_> = fetches
            .iter()
            .filter(|e| e.stat("id") == Some(&Stat::UInt(id.into())))
            .collect();
        assert_eq!(first.len(), 1, "fetch({id}): {fetches:#?}");
    }
    // Polls of the two futures alternate on one thread: their events never overlap.
    for pair in fetches.windows(2) {
        assert!(pair[0].end_ps <= pair[1].start_ps, "{pair:#?}");
    }
    // `parse` runs in each future's second poll.
    let parses = named(&events, "parse");
    assert_eq!(parses.len(), 2);
    for parse in parses {
        assert_eq!(fetches.iter().filter(|f| f.contains(parse)).count(), 1);
    }
}

#[test]
fn spans_open_at_stop_leave_valid_profiles() {
    let _l = session_lock();
    let session = Session::start("tracing-open-1", 2);
    let (release, released) = mpsc::channel::<()>();
    let (entered, is_entered) = mpsc::channel::<()>();
    let mut threads = Threads::default();
    // Declared after the threads, so dropped (and the thread released) before they are joined.
    let release = release;
    threads.spawn("holder", move || {
        let _span = tracing::info_span!("held", across = "stop").entered();
        entered.send(()).unwrap();
        // Ends in the next session, or when the test fails.
        let _ = released.recv();
        tracing::info_span!("after").in_scope(|| ());
    });
    is_entered.recv().unwrap();
    let open = tracing::info_span!("open", here = true).entered();
    tracing::info_span!("closed").in_scope(|| ());
    let first = session.stop();
    drop(session);

    // The next session sees the spans end: they belong to neither session.
    let second = Session::start("tracing-open-2", 2);
    drop(open);
    release.send(()).unwrap();
    threads.join();
    tracing::info_span!("fresh", n = 1).in_scope(|| ());
    let report = second.stop();

    let first = events(&first.xplane);
    let names: Vec<_> = first.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["closed"]);
    let second = events(&report.xplane);
    let mut names: Vec<_> = second.iter().map(|e| e.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["after", "fresh"]);
    assert_eq!(only(&second, "fresh").stat("n"), Some(&Stat::Int(1)));
    assert_eq!(report.dropped, 0);
}

/// The oracle (TensorBoard's and xprof's own readers), beside the workspace as in CI.
fn oracle() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/oracle/check");
    path.exists().then_some(path)
}

#[instrument(level = "debug")]
fn load(batch: i64) -> i64 {
    std::thread::sleep(std::time::Duration::from_micros(200));
    batch
}

#[test]
fn a_step_num_field_makes_overview_page_steps() {
    let Some(oracle) = oracle() else {
        eprintln!("skipped: the oracle is not beside the workspace");
        return;
    };
    let _l = session_lock();
    let session = Session::start("tracing-steps", 2);
    {
        let (requests, received) = mpsc::channel::<i64>();
        let (done, replies) = mpsc::channel::<()>();
        let mut threads = Threads::default();
        threads.spawn("data-loader", move || {
            for batch in received {
                load(batch);
                let _ = done.send(());
            }
        });
        let requests = requests;
        for step in 0..8u64 {
            let _step = tracing::info_span!("Train", step_num = step).entered();
            requests.send(step as i64).unwrap();
            replies.recv().unwrap();
            forward(step, "step");
        }
        drop(requests);
        threads.join();
    }
    let report = session.stop();
    let events = events(&report.xplane);
    for (step, train) in named(&events, "Train").iter().enumerate() {
        assert_eq!(train.stat("step_num"), Some(&Stat::Int(step as i64)));
    }

    let json = session.logdir.join("oracle.json");
    let output = std::process::Command::new(&oracle)
        .arg(&session.logdir)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the oracle rejected {}:\n{}{}",
        session.logdir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(summary["ok"], true, "{summary}");
    let steps = &summary["xplanes"][0]["tools"]["overview_page"]["steps"];
    let names: Vec<_> = steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_str().unwrap().to_owned())
        .collect();
    // xprof drops the first and the last step when there are more than five.
    let expected: Vec<_> = (1..7).map(|n| format!("Train {n}")).collect();
    assert_eq!(names, expected);
    assert!(steps
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s[1].as_f64().unwrap() > 0.0));
    let threads = &summary["xplanes"][0]["tools"]["trace_viewer"]["threads"];
    assert!(
        threads
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "data-loader"),
        "{threads}"
    );
}

#[instrument]
fn recurse(depth: u32) -> u32 {
    if depth == 0 {
        0
    } else {
        1 + recurse(depth - 1)
    }
}

#[test]
fn entries_deeper_than_the_stack_are_counted_as_dropped() {
    let _l = session_lock();
    let session = Session::start("tracing-deep", 2);
    assert_eq!(recurse(99), 99);
    recurse(3);
    let report = session.stop();
    let events = events(&report.xplane);
    // A thread keeps 64 entries open at once: the 36 deeper calls are dropped and counted.
    assert_eq!(named(&events, "recurse").len(), 64 + 4);
    assert_eq!(report.dropped, 36);
    let depths: Vec<_> = named(&events, "recurse")
        .iter()
        .filter_map(|e| match e.stat("depth") {
            Some(Stat::UInt(d)) => Some(*d),
            _ => None,
        })
        .collect();
    let expected: Vec<u64> = (36..100).rev().chain((0..4).rev()).collect();
    assert_eq!(depths, expected);
}

#[test]
fn a_span_made_on_one_thread_and_entered_on_another_records_its_entries() {
    let _l = session_lock();
    let session = Session::start("tracing-moved", 2);
    let span = tracing::info_span!("moved", made_here = true);
    let mut threads = Threads::default();
    threads.spawn("enterer", move || {
        span.in_scope(|| tracing::info_span!("inside", n = 5).in_scope(|| ()));
        span.in_scope(|| ());
    });
    threads.join();
    tracing::info_span!("after", n = 6).in_scope(|| ());
    let report = session.stop();
    let events = events(&report.xplane);
    let moved = named(&events, "moved");
    assert_eq!(moved.len(), 2);
    assert!(moved.iter().all(|e| e.thread == "enterer"));
    // Fields given at creation stay on the creating thread.
    assert!(moved.iter().all(|e| e.stats.is_empty()), "{moved:#?}");
    assert!(moved[0].contains(only(&events, "inside")));
    assert_eq!(only(&events, "inside").stat("n"), Some(&Stat::Int(5)));
    assert_eq!(only(&events, "after").stat("n"), Some(&Stat::Int(6)));
    assert_eq!(report.dropped, 0);
}

#[test]
fn a_graph_only_session_folds_tracing_spans_into_its_call_tree() {
    use trace_runtime::session::{self, RecordMode, SessionConfig};
    let _l = session_lock();
    install();
    /// Stops the session if the test fails before it does.
    struct StopOnDrop;
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            if session::is_active() {
                let _ = session::stop();
            }
        }
    }
    session::start(&SessionConfig {
        mode: RecordMode::CallGraph,
        ..SessionConfig::default()
    })
    .unwrap();
    let _stop = StopOnDrop;
    for step in 0..3u64 {
        let train = tracing::info_span!("Train", step_num = step, loss = tracing::field::Empty);
        let _step = train.enter();
        train.record("loss", 0.5);
        forward(step, "graph");
        forward(step, "graph");
    }
    let snapshot = session::stop().unwrap();
    let tree = snapshot
        .call_trees()
        .iter()
        .find(|t| t.name == this_thread())
        .expect("this thread's call tree");
    let node = |name: &str| tree.nodes.iter().position(|n| n.name == name).unwrap();
    let (train, fwd, matmul) = (node("Train"), node("forward"), node("matmul"));
    assert_eq!(tree.nodes[train].parent, None);
    assert_eq!(tree.nodes[fwd].parent, Some(train));
    assert_eq!(tree.nodes[matmul].parent, Some(fwd));
    assert_eq!(
        (
            tree.nodes[train].calls,
            tree.nodes[fwd].calls,
            tree.nodes[matmul].calls
        ),
        (3, 6, 6)
    );
    assert_eq!(snapshot.dropped(), 0);
}

#[test]
fn long_string_fields_are_cut_and_never_overflow_the_thread_state() {
    let _l = session_lock();
    let session = Session::start("tracing-long", 2);
    let long = "é".repeat(700); // 1400 bytes
    for _ in 0..3 {
        // Made together, entered later: their fields wait side by side.
        let spans: Vec<_> = (0..4)
            .map(
                |i| tracing::info_span!("long", i, a = long.as_str(), b = long.as_str(), c = ?long),
            )
            .collect();
        for span in &spans {
            span.in_scope(|| ());
        }
    }
    let report = session.stop();
    let events = events(&report.xplane);
    let long_events = named(&events, "long");
    assert_eq!(long_events.len(), 12);
    for event in long_events {
        for key in ["a", "b", "c"] {
            match event.stat(key) {
                // Whole, or cut at a character boundary and marked.
                Some(Stat::Str(text)) => assert!(
                    *text == long
                        || (text.ends_with('…') && long.starts_with(text.trim_end_matches('…'))),
                    "{key}: {} bytes",
                    text.len()
                ),
                None => {}
                other => panic!("{key}: {other:?}"),
            }
        }
    }
    // When the text would overflow, the slots start over: the last span made of each group
    // waits alone, and its first field is whole.
    for last in [3, 7, 11] {
        assert_eq!(
            named(&events, "long")[last].stat("a"),
            Some(&Stat::Str(long.clone()))
        );
    }
}
