//! Trying to break the recorder and the exporter: races, deep nesting, hostile values.

use std::sync::atomic::Ordering;

use prost::Message;
use trace_export::profiler::{self, ProfilerOptions};
use trace_export::proto::xplane::XSpace;
use trace_runtime::session::{self, SessionConfig};
use trace_runtime::{trace, traced, Trace, Value};
use trace_tests::{scratch_dir, session_lock, Workers};

#[test]
fn threads_record_while_sessions_start_and_stop_in_a_loop() {
    let _l = session_lock();
    let workers = Workers::spawn("worker", 3, |w, stop| {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            trace!("outer", worker = w as i64, {
                trace!("inner", i = i, { std::hint::black_box(i) });
            });
            i += 1;
        }
        i
    });
    let mut recorded = 0;
    for round in 0..40 {
        let config = SessionConfig {
            max_events_per_thread: 1 + round * 500,
            ..Default::default()
        };
        session::start(&config).unwrap();
        std::thread::sleep(std::time::Duration::from_micros(200));
        let snapshot = session::stop().unwrap();
        for thread in snapshot.threads() {
            for event in &thread.events {
                // Never torn: a known name, ordered times inside the session, and its metadata
                // unless the buffer ran out of room (then the drop is counted).
                assert!(event.start_ns <= event.end_ns && event.end_ns <= snapshot.duration_ns);
                let (key, ok): (&str, fn(&Value<'_>) -> bool) = match event.name() {
                    "outer" => ("worker", |v| matches!(v, Value::Int(0..=2))),
                    "inner" => ("i", |v| matches!(v, Value::UInt(_))),
                    other => panic!("unexpected event {other:?}"),
                };
                match event.metadata(key) {
                    Some(value) => assert!(ok(value), "{key} = {value:?}"),
                    None => assert!(thread.dropped > 0, "{} lost its metadata", event.name()),
                }
                recorded += 1;
            }
            // Outer events contain their inner one.
            for pair in thread.events.windows(2) {
                if pair[0].name() == "outer"
                    && pair[1].name() == "inner"
                    && pair[1].start_ns < pair[0].end_ns
                {
                    assert!(pair[1].end_ns <= pair[0].end_ns);
                }
            }
        }
    }
    let iterations: u64 = workers.stop_and_join().into_iter().sum();
    assert!(iterations > 0 && recorded > 0);
}

#[test]
fn profiler_and_summary_sessions_cannot_both_record() {
    let _l = session_lock();
    let logdir = scratch_dir("contend");
    profiler::start(&logdir).unwrap();
    assert_eq!(
        session::start(&SessionConfig::default()),
        Err(session::SessionError::AlreadyActive {
            owner: "a profiler session (profiler::start)"
        })
    );
    assert!(matches!(
        profiler::start(&logdir),
        Err(trace_export::Error::AlreadyActive { .. })
    ));
    profiler::stop().unwrap();
    // The state is clean afterwards.
    profiler::start(&logdir).unwrap();
    profiler::stop().unwrap();
}

#[traced]
fn recurse(depth: u32) -> u32 {
    if depth == 0 {
        0
    } else {
        1 + recurse(depth - 1)
    }
}

#[test]
fn one_hundred_thousand_nested_scopes_export() {
    let _l = session_lock();
    let logdir = scratch_dir("deep");
    profiler::start_with(
        &logdir,
        ProfilerOptions {
            run_name: Some("deep".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let depth = std::thread::Builder::new()
        .name("deep".into())
        .stack_size(1 << 30)
        .spawn(|| recurse(99_999))
        .unwrap()
        .join()
        .unwrap();
    let report = profiler::stop().unwrap();
    assert_eq!(depth, 99_999);
    assert_eq!(report.events, 100_000);
    let site = &report.report.sites[0];
    assert_eq!(site.count, 100_000);
    assert!(site.self_ns <= site.total_ns);
    let space = XSpace::decode(std::fs::read(&report.xplane).unwrap().as_slice()).unwrap();
    let line = &space.planes[0].lines[0];
    assert_eq!(line.events.len(), 100_000);
}

#[test]
fn zero_length_and_hostile_values_give_valid_files() {
    let _l = session_lock();
    let logdir = scratch_dir("hostile");
    profiler::start_with(
        &logdir,
        ProfilerOptions {
            run_name: Some("hostile".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let huge = "x".repeat(1 << 20);
    let hostile = "quote\" back\\slash\nnew line\u{1}\u{7f} emoji 😀 </script>";
    {
        let tm = Trace::new(hostile);
        tm.set_metadata("key \"with\"\nnewline 😀", "value \"with\"\n\u{0} nul 😀");
        tm.set_metadata("i64_min", i64::MIN);
        tm.set_metadata("u64_max", u64::MAX);
        tm.set_metadata("nan", f64::NAN);
        tm.set_metadata("inf", f64::INFINITY);
        tm.set_metadata("neg_inf", f64::NEG_INFINITY);
        tm.set_metadata("huge", huge.as_str());
    }
    trace!("Train", step_num = i64::MIN, {});
    let report = profiler::stop().unwrap();
    assert_eq!(report.events, 2);
    let space = XSpace::decode(std::fs::read(&report.xplane).unwrap().as_slice()).unwrap();
    let plane = &space.planes[0];
    // The name as recorded is the display name; the name xprof reads is an op name.
    let mut names: Vec<(&str, &str)> = (plane.event_metadata.values())
        .map(|m| (m.name.as_str(), m.display_name.as_str()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("Train", "Train"),
            ("Train/self:Self", "Train/self"),
            ("quote_back_slash_new_line_emoji_/script:Script", hostile),
        ]
    );
    let mut json = String::new();
    use std::io::Read;
    flate2::read::GzDecoder::new(std::fs::File::open(report.trace_json.unwrap()).unwrap())
        .read_to_string(&mut json)
        .unwrap();
    let trace: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let event = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str().is_some_and(|n| n.starts_with("quote")))
        .unwrap();
    assert_eq!(event["args"]["huge"].as_str().unwrap().len(), 1 << 20);
    assert_eq!(event["args"]["i64_min"], i64::MIN);
    assert_eq!(event["args"]["u64_max"], u64::MAX);
    assert_eq!(event["args"]["nan"], "NaN");
    assert_eq!(
        event["args"]["key \"with\"\nnewline 😀"],
        "value \"with\"\n\u{0} nul 😀"
    );
    // The report keeps one line per row whatever the names hold.
    let text = report.report.to_string();
    assert!(text.lines().all(|line| !line.contains('\u{1}')));
}

#[test]
fn a_later_export_into_the_same_logdir_still_works() {
    let _l = session_lock();
    let logdir = scratch_dir("again");
    for _ in 0..3 {
        profiler::start(&logdir).unwrap();
        recurse(3);
        let report = profiler::stop().unwrap();
        assert_eq!(report.events, 4);
    }
    let runs = std::fs::read_dir(logdir.join("plugins/profile"))
        .unwrap()
        .count();
    assert_eq!(runs, 3, "each profile gets its own run directory");
}

#[test]
fn the_profiler_cannot_start_during_a_summary_trace() {
    let _l = session_lock();
    let logdir = scratch_dir("trace-then-profiler");
    trace_export::summary::trace_on(Default::default()).unwrap();
    match profiler::start(&logdir) {
        Err(trace_export::Error::AlreadyActive { active, .. }) => {
            assert!(active.contains("trace_on"), "{active}")
        }
        other => panic!("{other:?}"),
    }
    trace_export::summary::trace_off();
    profiler::start(&logdir).unwrap();
    profiler::stop().unwrap();
}
