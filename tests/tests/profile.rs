//! The profile `profiler::stop` writes, decoded: what xprof's Profile tab will read.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use prost::Message;
use trace_export::profiler::{self, ProfilerOptions};
use trace_export::proto::xplane::{x_event, x_stat, XEvent, XPlane, XSpace};
use trace_export::Error;
use trace_runtime::{trace, traced};
use trace_tests::{scratch_dir, session_lock};

#[traced]
fn forward(x: u64) -> u64 {
    trace!("matmul", rows = 4u32, { std::hint::black_box(x * 3) })
}

#[traced]
fn backward(x: u64) -> u64 {
    std::hint::black_box(x + 1)
}

#[traced(name = "Train", step_num = step)]
fn train_step(step: i64) -> u64 {
    std::thread::sleep(std::time::Duration::from_micros(300));
    backward(forward(step as u64))
}

fn options(run: &str) -> ProfilerOptions {
    ProfilerOptions {
        run_name: Some(run.into()),
        host_name: Some("testhost".into()),
        ..Default::default()
    }
}

fn read_space(path: &Path) -> XSpace {
    XSpace::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
}

fn host_plane(space: &XSpace) -> &XPlane {
    space
        .planes
        .iter()
        .find(|p| p.name == "/host:CPU")
        .expect("/host:CPU plane")
}

struct View<'a> {
    plane: &'a XPlane,
}

impl<'a> View<'a> {
    /// The name xprof reads.
    fn name(&self, event: &XEvent) -> &'a str {
        &self.plane.event_metadata[&event.metadata_id].name
    }

    /// The name as recorded, which the trace viewer shows.
    fn display(&self, event: &XEvent) -> &'a str {
        &self.plane.event_metadata[&event.metadata_id].display_name
    }

    fn stats(&self, event: &'a XEvent) -> BTreeMap<&'a str, &'a x_stat::Value> {
        event
            .stats
            .iter()
            .map(|s| {
                (
                    self.plane.stat_metadata[&s.metadata_id].name.as_str(),
                    s.value.as_ref().unwrap(),
                )
            })
            .collect()
    }
}

fn offset(event: &XEvent) -> i64 {
    match event.data {
        Some(x_event::Data::OffsetPs(ps)) => ps,
        _ => panic!("event without offset"),
    }
}

#[test]
fn the_profile_has_threads_steps_links_and_sorted_nested_events() {
    let _l = session_lock();
    let logdir = scratch_dir("profile");
    profiler::start_with(&logdir, options("run1")).unwrap();
    // A worker that serves each step while the step waits for it.
    let (requests, receiver) = std::sync::mpsc::channel::<i64>();
    let (done, replies) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::Builder::new()
        .name("data-loader".into())
        .spawn(move || {
            for step in receiver {
                trace!("load", batch = step, {
                    std::thread::sleep(std::time::Duration::from_micros(50))
                });
                done.send(()).unwrap();
            }
        })
        .unwrap();
    for step in 0..6 {
        trace!("Train", step_num = step, {
            requests.send(step).unwrap();
            replies.recv().unwrap();
            backward(forward(step as u64));
        });
    }
    drop(requests);
    worker.join().unwrap();
    let report = profiler::stop().unwrap();

    let run = logdir.join("plugins/profile/run1");
    assert_eq!(report.xplane, run.join("testhost.xplane.pb"));
    assert_eq!(report.events, 6 * 4 + 6);
    assert_eq!(report.dropped, 0);
    let space = read_space(&report.xplane);
    assert_eq!(space.hostnames, ["testhost"]);
    assert!(space.warnings.is_empty());

    let plane = host_plane(&space);
    let view = View { plane };
    // One event metadata per call site, keyed by its own id.
    let names: Vec<_> = plane
        .event_metadata
        .values()
        .map(|m| m.name.as_str())
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(names.len(), unique.len());
    assert!(plane.event_metadata.iter().all(|(id, m)| *id == m.id));
    assert!(plane.stat_metadata.iter().all(|(id, m)| *id == m.id));

    let main_name = std::thread::current().name().unwrap().to_owned();
    let main = plane
        .lines
        .iter()
        .find(|l| l.name == main_name)
        .expect("this thread's line");
    let loader = plane
        .lines
        .iter()
        .find(|l| l.name == "data-loader")
        .expect("loader line");
    for line in &plane.lines {
        // Relative timestamps: no absolute epoch in the line, events within the session.
        assert_eq!(line.timestamp_ns, 0);
        let session_ps = line.duration_ps;
        for pair in line.events.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(
                offset(a) < offset(b) || (offset(a) == offset(b) && a.duration_ps >= b.duration_ps),
                "events sorted by start, longer first"
            );
        }
        for event in &line.events {
            assert!(offset(event) + event.duration_ps <= session_ps);
        }
    }

    // The main line: Train > forward > matmul, then backward, six times; roots only here.
    // Each call site is an op xprof counts, `<op name>:<OpType>`, shown by its recorded
    // name; the step markers keep theirs.
    let main_names: Vec<_> = main.events.iter().map(|e| view.name(e)).collect();
    assert_eq!(main_names.len(), 24);
    for (step, chunk) in main.events.chunks(4).enumerate() {
        let [train, fwd, matmul, bwd] = chunk else {
            unreachable!()
        };
        let names = |e| (view.name(e), view.display(e));
        assert_eq!(names(train), ("Train", "Train"));
        assert_eq!(names(fwd), ("profile/forward:Forward", "profile::forward"));
        assert_eq!(names(matmul), ("matmul:Matmul", "matmul"));
        assert_eq!(
            names(bwd),
            ("profile/backward:Backward", "profile::backward")
        );
        let end = |e: &XEvent| offset(e) + e.duration_ps;
        assert!(offset(train) <= offset(fwd) && end(fwd) <= end(train));
        assert!(offset(fwd) <= offset(matmul) && end(matmul) <= end(fwd));
        assert!(end(fwd) <= offset(bwd) && end(bwd) <= end(train));
        let stats = view.stats(train);
        assert_eq!(stats["step_num"], &x_stat::Value::Int64Value(step as i64));
        assert_eq!(stats["_r"], &x_stat::Value::Int64Value(1));
        assert_eq!(stats["_p"], &x_stat::Value::Int64Value(step as i64 + 1));
        assert_eq!(view.stats(matmul)["rows"], &x_stat::Value::Uint64Value(4));
        assert!(!view.stats(fwd).contains_key("_r"));
    }
    // `_r` on one line only.
    let roots: usize = plane
        .lines
        .iter()
        .map(|l| {
            l.events
                .iter()
                .filter(|e| view.stats(e).contains_key("_r"))
                .count()
        })
        .sum();
    assert_eq!(roots, 6);
    // Loader work inside a step window is linked to that step.
    assert_eq!(loader.events.len(), 6);
    for (step, event) in loader.events.iter().enumerate() {
        let stats = view.stats(event);
        assert_eq!(stats["_ct"], &x_stat::Value::Int64Value(1));
        assert_eq!(stats["_c"], &x_stat::Value::Int64Value(step as i64 + 1));
        assert_eq!(stats["batch"], &x_stat::Value::Int64Value(step as i64));
        assert_eq!(
            (view.name(event), view.display(event)),
            ("load:Load", "load")
        );
    }

    // Absolute times in the Task Environment plane.
    let env = space
        .planes
        .iter()
        .find(|p| p.name == "Task Environment")
        .unwrap();
    let env_stats: BTreeMap<_, _> = env
        .stats
        .iter()
        .map(|s| {
            (
                env.stat_metadata[&s.metadata_id].name.as_str(),
                s.value.clone().unwrap(),
            )
        })
        .collect();
    let (Some(x_stat::Value::Uint64Value(start)), Some(x_stat::Value::Uint64Value(stop))) = (
        env_stats.get("profile_start_time"),
        env_stats.get("profile_stop_time"),
    ) else {
        panic!("task environment stats: {env_stats:?}");
    };
    assert!(start < stop && *start > 1_600_000_000_000_000_000);

    // The Chrome trace beside it holds the same events, with thread names.
    let mut json = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(report.trace_json.as_ref().unwrap()).unwrap())
        .read_to_string(&mut json)
        .unwrap();
    let trace: serde_json::Value = serde_json::from_str(&json).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let complete: Vec<_> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(complete.len(), 30);
    assert!(events
        .iter()
        .any(|e| e["ph"] == "M" && e["args"]["name"] == "data-loader"));
    let train = complete.iter().find(|e| e["name"] == "Train").unwrap();
    assert_eq!(train["args"]["step_num"], 0);
    // Events keep their recorded names there.
    let shown = |name: &str| complete.iter().filter(|e| e["name"] == name).count();
    assert_eq!(shown("profile::forward"), 6);
    assert_eq!(shown("load"), 6);

    // The text report ranks call sites and lists the steps.
    let text = report.to_string();
    assert!(text.contains("6 steps"), "{text}");
    assert!(text.contains("matmul"), "{text}");
    assert!(text.contains("profile::forward"), "{text}");
    assert!(!text.contains(":Forward"), "{text}");
    assert_eq!(report.report.steps.len(), 6);
    assert_eq!(report.report.steps[2].name, "Train 2");
    // Each row names the ops xprof lists its events under.
    let ops = |name: &str| {
        let site = report.report.sites.iter().find(|s| s.name == name);
        site.map(|s| s.ops.clone()).unwrap_or_default()
    };
    assert_eq!(ops("profile::forward"), ["profile/forward:Forward"]);
    assert_eq!(ops("Train"), ["Train"]);
}

#[test]
fn dropped_events_are_counted_and_reported_in_the_profile() {
    let _l = session_lock();
    let logdir = scratch_dir("dropped");
    let options = ProfilerOptions {
        max_events_per_thread: 100,
        ..options("run")
    };
    profiler::start_with(&logdir, options).unwrap();
    for i in 0..1000u64 {
        backward(i);
    }
    let report = profiler::stop().unwrap();
    assert_eq!(report.events, 100);
    assert_eq!(report.dropped, 900);
    let space = read_space(&report.xplane);
    assert_eq!(space.warnings.len(), 1);
    assert!(
        space.warnings[0].starts_with("900 events dropped"),
        "{:?}",
        space.warnings
    );
    assert!(report.to_string().contains("dropped: 900"));
}

#[test]
fn session_misuse_and_bad_paths_are_typed_errors() {
    let _l = session_lock();
    assert!(matches!(profiler::stop(), Err(Error::NotActive(_))));
    let logdir = scratch_dir("misuse");
    profiler::start(&logdir).unwrap();
    assert!(matches!(
        profiler::start(&logdir),
        Err(Error::AlreadyActive { .. })
    ));
    profiler::stop().unwrap();

    let file = logdir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    match profiler::start(&file) {
        Err(Error::Io { path, .. }) => assert!(path.starts_with(&file), "{path:?}"),
        other => panic!("{other:?}"),
    }
    let bad_level = ProfilerOptions {
        host_tracer_level: 0,
        ..Default::default()
    };
    assert!(matches!(
        profiler::start_with(&logdir, bad_level),
        Err(Error::InvalidOption { .. })
    ));
    let bad_name = ProfilerOptions {
        run_name: Some("../escape".into()),
        ..Default::default()
    };
    assert!(matches!(
        profiler::start_with(&logdir, bad_name),
        Err(Error::InvalidOption { .. })
    ));
    assert!(!trace_runtime::is_recording());
}

/// Set in a child process of the multi-host test: profile into this logdir and exit.
const CHILD_LOGDIR: &str = "TRACE_TESTS_CHILD_LOGDIR";

#[test]
fn profile_child_process() {
    let Ok(logdir) = std::env::var(CHILD_LOGDIR) else {
        return; // only meaningful as a child of the test below
    };
    profiler::start_with(&logdir, options("shared")).unwrap();
    for step in 0..3 {
        train_step(step);
    }
    profiler::stop().unwrap();
}

#[test]
fn processes_profiling_one_run_write_one_host_file_each() {
    let logdir = scratch_dir("multihost");
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "profile_child_process", "--nocapture"])
                .env(CHILD_LOGDIR, &logdir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let run = logdir.join("plugins/profile/shared");
    let mut hosts: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|name| name.strip_suffix(".xplane.pb").map(str::to_owned))
        .collect();
    hosts.sort();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    assert_eq!(hosts[0], "testhost");
    assert!(hosts[1].starts_with("testhost."), "{hosts:?}");
    for host in &hosts {
        let space = read_space(&run.join(format!("{host}.xplane.pb")));
        let plane = host_plane(&space);
        assert_eq!(
            plane.lines.iter().map(|l| l.events.len()).sum::<usize>(),
            12
        );
        assert!(run.join(format!("{host}.trace.json.gz")).is_file());
    }
    // No temporary file is left where TensorBoard looks.
    assert!(std::fs::read_dir(&run).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
}
