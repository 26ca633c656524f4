//! `trace_export::summary`: event files, scalars, and traces exported as a call graph, read
//! back with the crate's TFRecord reader and the proto messages.

use std::fs;
use std::path::{Path, PathBuf};

use prost::Message;
use trace_export::graph::{sanitize, DEVICE};
use trace_export::proto::tensorboard::{
    attr_value, event, summary::value, DataType, Event, GraphDef, RunMetadata,
};
use trace_export::summary::{self, TraceOptions, STEP_TIME_TAG};
use trace_export::tfrecord::{masked_crc32c, read_records, RecordWriter};
use trace_export::{profiler, Error};
use trace_runtime::traced;
use trace_tests::session_lock;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("trace-tests-summary-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .contains("tfevents")
        })
        .collect();
    files.sort();
    files
}

/// Every event of the file, checking both CRCs of every record.
fn read_events(path: &Path) -> Vec<Event> {
    let bytes = fs::read(path).unwrap();
    read_records(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .map(|record| Event::decode(record).unwrap())
        .collect()
}

/// The summary values of the events, with the event's step.
fn values(events: &[Event]) -> Vec<(i64, &trace_export::proto::tensorboard::summary::Value)> {
    events
        .iter()
        .filter_map(|e| match &e.what {
            Some(event::What::Summary(s)) => Some((e.step, s)),
            _ => None,
        })
        .flat_map(|(step, s)| s.value.iter().map(move |v| (step, v)))
        .collect()
}

/// `(step, value)` of a scalar tag.
/// The wall clock in seconds since the Unix epoch, as `Event.wall_time` holds it.
fn unix_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn scalars(events: &[Event], tag: &str) -> Vec<(i64, f32)> {
    values(events)
        .into_iter()
        .filter(|(_, v)| v.tag == tag)
        .map(|(step, v)| match &v.value {
            Some(value::Value::Tensor(t)) => (step, t.float_val[0]),
            other => panic!("{tag}: not a tensor: {other:?}"),
        })
        .collect()
}

/// The node name of a call path of functions defined in this file.
fn path(functions: &[&str]) -> String {
    functions
        .iter()
        .map(|f| sanitize(&format!("{}::{f}", module_path!())))
        .collect::<Vec<_>>()
        .join("/")
}

fn attr_i(graph: &GraphDef, node: &str, key: &str) -> i64 {
    let node = graph
        .node
        .iter()
        .find(|n| n.name == node)
        .unwrap_or_else(|| panic!("no node {node}"));
    match node.attr[key].value {
        Some(attr_value::Value::I(i)) => i,
        ref other => panic!("{key}: {other:?}"),
    }
}

/// The run metadata of the `graph_run_metadata` summary tagged `tag`, and the event's step.
fn run_metadata(events: &[Event], tag: &str) -> (i64, RunMetadata) {
    let (step, value) = values(events)
        .into_iter()
        .find(|(_, v)| v.tag == tag)
        .unwrap_or_else(|| panic!("no summary tagged {tag}"));
    let metadata = value.metadata.as_ref().unwrap();
    let plugin = metadata.plugin_data.as_ref().unwrap();
    assert_eq!(plugin.plugin_name, "graph_run_metadata");
    assert_eq!(plugin.content, b"1");
    let Some(value::Value::Tensor(tensor)) = &value.value else {
        panic!("run metadata is not a tensor");
    };
    assert_eq!(tensor.dtype, i32::from(DataType::DtString));
    assert!(tensor.tensor_shape.as_ref().unwrap().dim.is_empty());
    assert_eq!(tensor.string_val.len(), 1);
    (step, RunMetadata::decode(&*tensor.string_val[0]).unwrap())
}

fn graph_defs(events: &[Event]) -> Vec<GraphDef> {
    events
        .iter()
        .filter_map(|e| match &e.what {
            Some(event::What::GraphDef(bytes)) => Some(GraphDef::decode(&**bytes).unwrap()),
            _ => None,
        })
        .collect()
}

fn xplanes(logdir: &Path) -> Vec<PathBuf> {
    let Ok(runs) = fs::read_dir(logdir.join("plugins").join("profile")) else {
        return Vec::new();
    };
    runs.flat_map(|run| fs::read_dir(run.unwrap().path()).unwrap())
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".xplane.pb"))
        .collect()
}

/// Leaves no trace and no step behind for the next test.
fn reset() {
    summary::trace_off();
    summary::clear_step();
}

fn work() {
    let mut x = 0u64;
    for i in 0..200 {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    std::hint::black_box(x);
}

// A known call pattern: outer calls middle 3 times (each calls leaf twice), then leaf once.

#[traced]
fn leaf() {
    work();
}

#[traced]
fn middle() {
    leaf();
    leaf();
}

#[traced]
fn outer() {
    for _ in 0..3 {
        middle();
    }
    leaf();
}

#[traced]
fn factorial(n: u64) -> u64 {
    work();
    if n <= 1 {
        1
    } else {
        n * factorial(n - 1)
    }
}

#[traced(step_num = step)]
fn train(step: i64) {
    leaf();
}

// ---------------------------------------------------------------------------------------------
// Event files and scalars

#[test]
fn event_file_name_and_first_record() {
    let dir = scratch("first");
    let writer = summary::create_file_writer(&dir).unwrap();
    assert_eq!(writer.logdir(), dir);
    assert_eq!(event_files(&dir), [writer.path().to_path_buf()]);

    let name = writer.path().file_name().unwrap().to_str().unwrap();
    let parts: Vec<&str> = name.split('.').collect();
    assert_eq!(&parts[..3], ["events", "out", "tfevents"]);
    assert_eq!(parts[3].len(), 10, "{name}");
    assert!(parts[3].bytes().all(|b| b.is_ascii_digit()), "{name}");
    let host = trace_export::host_name();
    let pid = std::process::id();
    assert!(name.contains(&format!(".{host}.{pid}.")), "{name}");
    assert!(name.ends_with(".v2"), "{name}");

    // The first record is written as soon as the writer exists, and is exactly the golden
    // record of the format notes but for the wall time.
    let bytes = fs::read(writer.path()).unwrap();
    let golden = hex("1800000000000000 a37f4b22 \
         0900000040fc54d9411a0d627261696e2e4576656e743a32 eced8f9d");
    assert_eq!(bytes[..12], golden[..12], "length and its masked CRC");
    let records = read_records(&bytes).unwrap();
    assert_eq!(records.len(), 1);
    let data = records[0];
    assert_eq!(
        bytes[12 + data.len()..16 + data.len()],
        masked_crc32c(data).to_le_bytes()
    );
    let mut first = Event::decode(data).unwrap();
    assert_eq!(
        first.what,
        Some(event::What::FileVersion("brain.Event:2".into()))
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - first.wall_time).abs() < 60.0);
    assert_eq!(parts[3].parse::<u64>().unwrap(), first.wall_time as u64);
    first.wall_time = 1_700_000_000.0;
    let mut framed = RecordWriter::new(Vec::new());
    framed.write_record(&first.encode_to_vec()).unwrap();
    assert_eq!(framed.into_inner(), golden);

    // A second writer on the same directory gets its own file.
    let second = summary::create_file_writer(&dir).unwrap();
    assert_ne!(second.path(), writer.path());
    assert_eq!(event_files(&dir).len(), 2);
    fs::remove_dir_all(&dir).unwrap();
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn scalars_are_rank_0_floats_with_metadata_on_first_use() {
    let dir = scratch("scalars");
    let writer = summary::create_file_writer(&dir).unwrap();
    writer.scalar("loss", 0.25, 1).unwrap();
    writer.scalar("loss", 0.125f32, 2).unwrap();
    writer.scalar("accuracy", 1, 2).unwrap();
    writer.clone().scalar("loss", 1e300, i64::MIN).unwrap();
    writer.scalar("loss", f64::NAN, i64::MAX).unwrap();
    assert!(matches!(
        writer.scalar("", 1.0, 0),
        Err(Error::InvalidOption { option: "tag", .. })
    ));
    // Every call is on disk without an explicit flush.
    let events = read_events(writer.path());
    assert_eq!(events.len(), 6);
    let loss = scalars(&events, "loss");
    assert_eq!(loss[..2], [(1, 0.25), (2, 0.125)]);
    assert_eq!(loss[2], (i64::MIN, f32::INFINITY));
    assert_eq!(loss[3].0, i64::MAX);
    assert!(loss[3].1.is_nan());
    assert_eq!(scalars(&events, "accuracy"), [(2, 1.0)]);

    let mut seen = std::collections::HashSet::new();
    for (_, value) in values(&events) {
        let Some(value::Value::Tensor(tensor)) = &value.value else {
            panic!("scalar is not a tensor");
        };
        assert_eq!(tensor.dtype, i32::from(DataType::DtFloat));
        assert!(tensor.tensor_shape.as_ref().unwrap().dim.is_empty());
        assert_eq!(tensor.float_val.len(), 1);
        assert!(tensor.tensor_content.is_empty());
        let first = seen.insert(value.tag.clone());
        match (&value.metadata, first) {
            (Some(metadata), true) => {
                let plugin = metadata.plugin_data.as_ref().unwrap();
                assert_eq!(plugin.plugin_name, "scalars");
                assert!(plugin.content.is_empty());
            }
            (None, false) => {}
            (metadata, first) => panic!("{}: first={first} metadata={metadata:?}", value.tag),
        }
    }
    for event in &events {
        assert!(event.wall_time > 1.6e9);
    }

    writer.flush().unwrap();
    writer.close().unwrap();
    writer.close().unwrap();
    let err = writer.scalar("loss", 1.0, 9).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err
        .to_string()
        .contains(&writer.path().display().to_string()));
    assert_eq!(read_events(writer.path()).len(), 6);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dropping_the_writer_keeps_every_record() {
    let dir = scratch("drop");
    let path = {
        let writer = summary::create_file_writer(&dir).unwrap();
        for step in 0..100 {
            writer.scalar("x", step as f64, step).unwrap();
        }
        writer.path().to_path_buf()
    };
    assert_eq!(scalars(&read_events(&path), "x").len(), 100);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unwritable_logdirs_are_typed_errors_naming_the_path() {
    let dir = scratch("unwritable");
    let file = dir.join("a-file");
    fs::write(&file, b"not a directory").unwrap();

    // Permission bits do not stop root, a regular file in the path does.
    let under_file = file.join("sub");
    let err = summary::create_file_writer(&under_file).unwrap_err();
    let Error::Io { path, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(path.starts_with(&file), "{err}");
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );

    let err = summary::create_file_writer(&file).unwrap_err();
    let Error::Io { path, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(path, &file, "{err}");
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );

    // Nothing was written: the file is intact and it is the only entry.
    assert_eq!(fs::read(&file).unwrap(), b"not a directory");
    let entries: Vec<_> = fs::read_dir(&dir).unwrap().collect();
    assert_eq!(entries.len(), 1);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn default_writer_is_scoped_by_its_guard() {
    let _lock = session_lock();
    let dir = scratch("default");
    let a = summary::create_file_writer(dir.join("a")).unwrap();
    let b = summary::create_file_writer(dir.join("b")).unwrap();
    let current = || summary::default_writer().map(|w| w.path().to_path_buf());
    assert_eq!(current(), None);
    {
        let _a = a.as_default();
        assert_eq!(current().as_deref(), Some(a.path()));
        {
            let _b = b.as_default();
            assert_eq!(current().as_deref(), Some(b.path()));
        }
        assert_eq!(current().as_deref(), Some(a.path()));
        b.set_as_default();
        assert_eq!(current().as_deref(), Some(b.path()));
    }
    assert_eq!(current(), None);

    summary::set_step(3);
    assert_eq!(summary::get_step(), Some(3));
    summary::set_step(i64::MIN);
    assert_eq!(summary::get_step(), Some(i64::MIN));
    summary::clear_step();
    assert_eq!(summary::get_step(), None);
    fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// trace_on / trace_export

#[test]
fn trace_export_writes_the_call_graph() {
    let _lock = session_lock();
    reset();
    let dir = scratch("graph");
    let writer = summary::create_file_writer(&dir).unwrap();
    let _default = writer.as_default();

    summary::trace_on(TraceOptions::default()).unwrap();
    outer();
    assert_eq!(factorial(5), 120);
    summary::trace_export("calls", Some(4), None).unwrap();
    // Not recording any more.
    outer();

    let events = read_events(writer.path());
    let (step, metadata) = run_metadata(&events, "calls");
    assert_eq!(step, 4);
    let graph = metadata.function_graphs[0]
        .pre_optimization_graph
        .clone()
        .unwrap();
    // The same graph is the run's graph.
    assert_eq!(graph_defs(&events), std::slice::from_ref(&graph));

    let mut names: Vec<&str> = graph.node.iter().map(|n| n.name.as_str()).collect();
    names.sort_unstable();
    let mut expected = vec![
        path(&["outer"]),
        path(&["outer", "middle"]),
        path(&["outer", "middle", "leaf"]),
        path(&["outer", "leaf"]),
        path(&["factorial"]),
    ];
    expected.sort_unstable();
    assert_eq!(names, expected, "one node per call path, recursion folded");

    assert_eq!(attr_i(&graph, &path(&["outer"]), "calls"), 1);
    assert_eq!(attr_i(&graph, &path(&["outer", "middle"]), "calls"), 3);
    assert_eq!(
        attr_i(&graph, &path(&["outer", "middle", "leaf"]), "calls"),
        6
    );
    assert_eq!(attr_i(&graph, &path(&["outer", "leaf"]), "calls"), 1);
    assert_eq!(attr_i(&graph, &path(&["factorial"]), "calls"), 5);
    assert_eq!(attr_i(&graph, &path(&["factorial"]), "recursive_calls"), 4);

    // Edges run from caller to callee; roots have no input.
    for node in &graph.node {
        assert_eq!(node.op, "TracedCall");
        assert_eq!(node.device, DEVICE);
        match node.name.rsplit_once('/') {
            Some((caller, _)) => assert_eq!(node.input, [caller]),
            None => assert!(node.input.is_empty(), "{}", node.name),
        }
        let total = attr_i(&graph, &node.name, "total_ns");
        let own = attr_i(&graph, &node.name, "self_ns");
        assert!(
            0 < own && own <= total,
            "{}: self {own} total {total}",
            node.name
        );
    }
    // Total time includes the callees'; the parts add up.
    let outer_total = attr_i(&graph, &path(&["outer"]), "total_ns");
    let children: i64 = [path(&["outer", "middle"]), path(&["outer", "leaf"])]
        .iter()
        .map(|n| attr_i(&graph, n, "total_ns"))
        .sum();
    assert_eq!(
        outer_total,
        children + attr_i(&graph, &path(&["outer"]), "self_ns")
    );

    // Step stats: one entry per node, named like it, lasting its total time.
    let stats = metadata.step_stats.unwrap();
    assert_eq!(stats.dev_stats.len(), 1);
    let device = &stats.dev_stats[0];
    assert_eq!(device.device, DEVICE);
    let stat_names: Vec<&str> = device
        .node_stats
        .iter()
        .map(|s| s.node_name.as_str())
        .collect();
    let node_names: Vec<&str> = graph.node.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(stat_names, node_names);
    for (stats, node) in device.node_stats.iter().zip(&graph.node) {
        let total = attr_i(&graph, &node.name, "total_ns");
        assert_eq!(stats.all_end_rel_nanos, total);
        assert_eq!(stats.all_end_rel_micros, total / 1000);
        assert_eq!(stats.op_end_rel_micros, total / 1000);
        assert!(stats.all_start_micros > 1_600_000_000_000_000);
        assert!(
            stats.timeline_label.contains("calls"),
            "{}",
            stats.timeline_label
        );
    }

    // Graph only: no profile, no step markers, no step times.
    assert!(xplanes(&dir).is_empty());
    assert!(scalars(&events, STEP_TIME_TAG).is_empty());
    // The trace is gone.
    assert!(matches!(
        summary::trace_export("calls", Some(4), None),
        Err(Error::NotActive(_))
    ));
    drop(_default);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn step_markers_become_step_time_scalars_and_the_profile_goes_to_the_logdir() {
    let _lock = session_lock();
    reset();
    let dir = scratch("steps");
    let writer = summary::create_file_writer(&dir).unwrap();
    let _default = writer.as_default();

    summary::trace_on(TraceOptions {
        graph: false,
        profiler: true,
        ..Default::default()
    })
    .unwrap();
    let before = unix_secs();
    for step in 10..14 {
        train(step);
    }
    let after = unix_secs();
    summary::trace_export("steps", Some(0), None).unwrap();

    let events = read_events(writer.path());
    let times = scalars(&events, STEP_TIME_TAG);
    assert_eq!(
        times.iter().map(|(step, _)| *step).collect::<Vec<_>>(),
        [10, 11, 12, 13]
    );
    assert!(times.iter().all(|(_, ms)| *ms > 0.0 && *ms < 10_000.0));
    // Each step's scalar is stamped with the moment the step ended, on the session's clock:
    // inside the session, in step order (the wall clock may be a little off the session's
    // calibrated one).
    let stamps: Vec<f64> = events
        .iter()
        .filter(|e| {
            values(std::slice::from_ref(e))
                .iter()
                .any(|(_, v)| v.tag == STEP_TIME_TAG)
        })
        .map(|e| e.wall_time)
        .collect();
    assert_eq!(stamps.len(), 4);
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    assert!(
        stamps
            .iter()
            .all(|&t| before - 0.05 <= t && t <= after + 0.05),
        "{stamps:?} outside [{before}, {after}]"
    );
    let with_metadata = values(&events)
        .iter()
        .filter(|(_, v)| v.metadata.is_some())
        .count();
    assert_eq!(
        with_metadata, 1,
        "scalars metadata on the tag's first value only"
    );
    // graph: false writes no graph.
    assert!(graph_defs(&events).is_empty());
    assert!(values(&events).iter().all(|(_, v)| v.tag == STEP_TIME_TAG));
    // profiler: true without profiler_outdir: the profile goes to the writer's logdir.
    assert_eq!(xplanes(&dir).len(), 1);
    drop(_default);
    fs::remove_dir_all(&dir).unwrap();
}

/// One recording, read back from the three places that report on it: the Graphs tab's
/// nodes (event file), the text report of the written profile, and the overview page's step
/// markers in that profile, with the step time scalars. Self time per event name, and the
/// steps with their durations, agree exactly.
#[test]
fn report_graph_and_step_times_agree_on_one_recording() {
    let _lock = session_lock();
    reset();
    let dir = scratch("agree");
    let writer = summary::create_file_writer(&dir).unwrap();
    let _default = writer.as_default();

    summary::trace_on(TraceOptions {
        graph: true,
        profiler: true,
        ..Default::default()
    })
    .unwrap();
    for step in 0..5 {
        std::thread::scope(|s| {
            s.spawn(|| {
                middle();
                assert_eq!(factorial(4), 24);
                // Guards dropped out of order overlap partially: the thread needs a second
                // line in the profile, and its calls are still folded as one thread's.
                let first = trace_runtime::Trace::new("overlapping_a");
                leaf();
                let second = trace_runtime::Trace::new("overlapping_b");
                leaf();
                drop(first);
                leaf();
                drop(second);
            });
            train(step);
            outer();
        });
    }
    summary::trace_export("agree", Some(0), None).unwrap();

    let events = read_events(writer.path());
    let (_, metadata) = run_metadata(&events, "agree");
    let graph = metadata.function_graphs[0]
        .pre_optimization_graph
        .clone()
        .unwrap();
    let text =
        |node: &trace_export::proto::tensorboard::NodeDef, key: &str| match &node.attr[key].value {
            Some(attr_value::Value::S(s)) => String::from_utf8(s.clone()).unwrap(),
            other => panic!("{key}: {other:?}"),
        };
    let mut graph_self: std::collections::BTreeMap<String, i64> = Default::default();
    for node in &graph.node {
        *graph_self.entry(text(node, "event")).or_default() +=
            attr_i(&graph, &node.name, "self_ns");
    }

    let files = xplanes(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let space = trace_export::xspace::decode(&fs::read(&files[0]).unwrap()).unwrap();
    let report = trace_export::report::Report::from_xspace(&space);
    let report_self: std::collections::BTreeMap<String, i64> = report
        .sites
        .iter()
        .map(|site| (site.name.clone(), site.self_ns as i64))
        .collect();
    assert_eq!(report_self, graph_self, "self time per event name");
    assert!(graph_self.len() >= 5, "{graph_self:?}");

    // The step markers the overview page groups by (`_r` roots), decoded on their own.
    let plane = space
        .planes
        .iter()
        .find(|p| p.name == trace_export::xspace::HOST_PLANE)
        .unwrap();
    let stat_id = |name: &str| {
        plane
            .stat_metadata
            .values()
            .find(|m| m.name == name)
            .map(|m| m.id)
    };
    let (root, step_num) = (stat_id("_r").unwrap(), stat_id("step_num").unwrap());
    let mut markers: Vec<(i64, u64)> = Vec::new();
    for line in &plane.lines {
        for event in &line.events {
            if event.stats.iter().any(|s| s.metadata_id == root) {
                let number = event
                    .stats
                    .iter()
                    .find(|s| s.metadata_id == step_num)
                    .and_then(|s| match s.value {
                        Some(trace_export::proto::xplane::x_stat::Value::Int64Value(n)) => Some(n),
                        _ => None,
                    })
                    .unwrap();
                markers.push((number, (event.duration_ps / 1000) as u64));
            }
        }
    }
    assert_eq!(
        markers.iter().map(|m| m.0).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    let reported: Vec<u64> = report.steps.iter().map(|s| s.duration_ns).collect();
    assert_eq!(reported, markers.iter().map(|m| m.1).collect::<Vec<_>>());
    let scalars = scalars(&events, STEP_TIME_TAG);
    let expected: Vec<(i64, f32)> = markers
        .iter()
        .map(|&(step, ns)| (step, (ns as f64 / 1e6) as f32))
        .collect();
    assert_eq!(scalars, expected, "profile/step_time_ms");
    drop(_default);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_step_keeps_the_trace_for_a_retry() {
    let _lock = session_lock();
    reset();
    let dir = scratch("nostep");
    let writer = summary::create_file_writer(&dir).unwrap();
    let _default = writer.as_default();

    summary::trace_on(TraceOptions::default()).unwrap();
    outer();
    let err = summary::trace_export("retry", None, None).unwrap_err();
    assert!(
        matches!(&err, Error::NoStep { name } if name == "retry"),
        "{err:?}"
    );
    assert!(err.to_string().contains("retry"), "{err}");
    // Recording stopped, but the trace is kept: a new trace cannot start over it.
    assert!(!trace_runtime::is_recording());
    outer();
    assert!(matches!(
        summary::trace_on(TraceOptions::default()),
        Err(Error::AlreadyActive { .. })
    ));
    assert_eq!(read_events(writer.path()).len(), 1, "nothing written yet");

    summary::set_step(7);
    summary::trace_export("retry", None, None).unwrap();
    let events = read_events(writer.path());
    let (step, metadata) = run_metadata(&events, "retry");
    assert_eq!(step, 7);
    let graph = metadata.function_graphs[0]
        .pre_optimization_graph
        .clone()
        .unwrap();
    // The data recorded before the failed call, and only it.
    assert_eq!(attr_i(&graph, &path(&["outer"]), "calls"), 1);
    assert_eq!(attr_i(&graph, &path(&["outer", "middle"]), "calls"), 3);
    assert!(matches!(
        summary::trace_export("retry", None, None),
        Err(Error::NotActive(_))
    ));
    reset();
    drop(_default);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn profiler_trace_needs_a_destination() {
    let _lock = session_lock();
    reset();
    let dir = scratch("nodest");
    assert!(summary::default_writer().is_none());

    summary::trace_on(TraceOptions {
        graph: true,
        profiler: true,
        ..Default::default()
    })
    .unwrap();
    outer();
    let err = summary::trace_export("t", Some(0), None).unwrap_err();
    assert!(matches!(err, Error::NoDestination(_)), "{err:?}");
    // Kept: the retry with a directory writes the profile of what ran before.
    summary::trace_export("t", Some(0), Some(&dir)).unwrap();
    let xplanes = xplanes(&dir);
    assert_eq!(xplanes.len(), 1);
    assert!(fs::metadata(&xplanes[0]).unwrap().len() > 0);
    // No writer: no event file.
    assert!(event_files(&dir).is_empty());

    // Graph only and no default writer: nowhere to write.
    summary::trace_on(TraceOptions::default()).unwrap();
    let err = summary::trace_export("t", Some(0), Some(&dir)).unwrap_err();
    assert!(matches!(err, Error::NoDestination(_)), "{err:?}");
    summary::trace_off();
    assert!(matches!(
        summary::trace_export("t", Some(0), None),
        Err(Error::NotActive(_))
    ));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn trace_export_without_trace_on_is_an_error() {
    let _lock = session_lock();
    reset();
    let err = summary::trace_export("t", Some(0), None).unwrap_err();
    assert!(matches!(err, Error::NotActive(_)), "{err:?}");
    assert!(err.to_string().contains("trace_on"), "{err}");
    assert!(matches!(
        summary::trace_export("", Some(0), None),
        Err(Error::InvalidOption { option: "name", .. })
    ));
}

#[test]
fn trace_on_twice_is_an_error() {
    let _lock = session_lock();
    reset();
    summary::trace_on(TraceOptions::default()).unwrap();
    let err = summary::trace_on(TraceOptions::default()).unwrap_err();
    assert!(matches!(err, Error::AlreadyActive { .. }), "{err:?}");
    assert!(err.to_string().contains("trace"), "{err}");
    summary::trace_off();
    assert!(!trace_runtime::is_recording());
    summary::trace_off();
    // Off again: a new trace starts.
    summary::trace_on(TraceOptions::default()).unwrap();
    summary::trace_off();

    let err = summary::trace_on(TraceOptions {
        level: 4,
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, Error::InvalidOption { .. }), "{err:?}");
}

#[test]
fn trace_on_while_the_profiler_runs_is_an_error() {
    let _lock = session_lock();
    reset();
    let dir = scratch("profiler");
    profiler::start(&dir).unwrap();
    let err = summary::trace_on(TraceOptions::default()).unwrap_err();
    let Error::AlreadyActive { active, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(active.contains("profiler"), "{err}");
    // trace_off leaves the profiler's session alone.
    summary::trace_off();
    assert!(profiler::is_active());
    outer();
    let report = profiler::stop().unwrap();
    assert!(report.events > 0);
    fs::remove_dir_all(&dir).unwrap();
}
