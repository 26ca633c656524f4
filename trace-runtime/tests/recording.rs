//! What the recorder keeps, read back from the session's snapshot. These tests use the
//! guard API directly; the macro forms are tested in the workspace's `tests/` crate.

use std::sync::{Mutex, MutexGuard};

use trace_runtime::session::{self, SessionConfig};
use trace_runtime::snapshot::Snapshot;
use trace_runtime::{Trace, Value};

fn lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn record(config: SessionConfig, body: impl FnOnce()) -> Snapshot {
    session::start(&config).expect("start");
    body();
    session::stop().expect("stop")
}

fn names(snapshot: &Snapshot) -> Vec<&'static str> {
    snapshot.events().map(|(_, e)| e.name()).collect()
}

#[test]
fn nested_guards_nest_in_time_and_keep_metadata() {
    let _l = lock();
    let snapshot = record(SessionConfig::default(), || {
        let outer = Trace::new("outer").arg("step_num", 7i64);
        {
            let _inner = Trace::new("inner");
            std::hint::black_box(0);
        }
        outer.set_metadata("loss", 0.5);
        drop(outer);
    });
    assert_eq!(names(&snapshot), ["outer", "inner"]);
    let thread = &snapshot.threads()[0];
    let (outer, inner) = (&thread.events[0], &thread.events[1]);
    assert!(outer.start_ns <= inner.start_ns && inner.end_ns <= outer.end_ns);
    assert_eq!(outer.metadata("step_num"), Some(&Value::Int(7)));
    assert_eq!(outer.metadata("loss"), Some(&Value::Float(0.5)));
    assert!(inner.all_metadata().is_empty());
    assert_eq!(snapshot.dropped(), 0);
}

#[test]
fn call_sites_from_the_private_macro_are_registered() {
    let _l = lock();
    fn site() -> &'static trace_runtime::Callsite {
        trace_runtime::__private::callsite!("registered_site", 2)
    }
    let snapshot = record(SessionConfig::default(), || {
        let _g = trace_runtime::__private::enter(site());
    });
    let event = &snapshot.threads()[0].events[0];
    assert_eq!(event.name(), "registered_site");
    assert_eq!(event.callsite(), Some(site()));
    assert!(trace_runtime::callsites().any(|s| std::ptr::eq(s, site())));
}

#[test]
fn free_set_metadata_goes_to_the_innermost_open_event() {
    let _l = lock();
    let snapshot = record(SessionConfig::default(), || {
        let _outer = Trace::new("outer");
        {
            let _inner = Trace::new("inner");
            trace_runtime::set_metadata("in_cache", true);
            trace_runtime::set_metadata("function_name", String::from("f\"\n😀"));
        }
        trace_runtime::set_metadata("after_inner", 3u8);
    });
    let events = &snapshot.threads()[0].events;
    assert_eq!(events[1].name(), "inner");
    assert_eq!(events[1].metadata("in_cache"), Some(&Value::Bool(true)));
    assert_eq!(
        events[1].metadata("function_name"),
        Some(&Value::Str("f\"\n😀".into()))
    );
    assert_eq!(events[0].metadata("after_inner"), Some(&Value::UInt(3)));
}

#[test]
fn nothing_is_recorded_while_off_and_metadata_is_not_converted() {
    let _l = lock();
    assert!(!trace_runtime::is_recording());
    let tm = Trace::new("off");
    assert!(!tm.is_active());
    drop(tm);
    let snapshot = record(SessionConfig::default(), || {});
    assert_eq!(snapshot.event_count(), 0);
}

#[test]
fn levels_filter_events() {
    let _l = lock();
    let config = SessionConfig {
        level: 1,
        ..Default::default()
    };
    let snapshot = record(config, || {
        let _a = Trace::with_level("critical", 1);
        let _b = Trace::with_level("info", 2);
        let _c = Trace::with_level("verbose", 3);
    });
    assert_eq!(names(&snapshot), ["critical"]);
}

#[test]
fn a_thread_that_exits_before_stop_keeps_its_events() {
    let _l = lock();
    let snapshot = record(SessionConfig::default(), || {
        std::thread::Builder::new()
            .name("loader".into())
            .spawn(|| {
                for _ in 0..10 {
                    let _g = Trace::new("load");
                }
            })
            .unwrap()
            .join()
            .unwrap();
    });
    let loader = snapshot
        .threads()
        .iter()
        .find(|t| t.name == "loader")
        .expect("loader thread");
    assert_eq!(loader.events.len(), 10);
    assert!(loader.events.iter().all(|e| e.name() == "load"));
}

#[test]
fn a_panic_unwinding_through_a_scope_records_the_event() {
    let _l = lock();
    let snapshot = record(SessionConfig::default(), || {
        let result = std::panic::catch_unwind(|| {
            let _g = Trace::new("panicking");
            panic!("boom");
        });
        assert!(result.is_err());
    });
    assert_eq!(names(&snapshot), ["panicking"]);
}

#[test]
fn overflow_drops_and_counts_and_memory_stays_bounded() {
    let _l = lock();
    let config = SessionConfig {
        max_events_per_thread: 1000,
        ..Default::default()
    };
    let snapshot = record(config, || {
        for _ in 0..5000 {
            let _g = Trace::new("tick");
        }
    });
    assert_eq!(snapshot.event_count(), 1000);
    assert_eq!(snapshot.dropped(), 4000);
}

#[test]
fn events_are_kept_per_session() {
    let _l = lock();
    let first = record(SessionConfig::default(), || {
        let _g = Trace::new("first");
    });
    // A scope that straddles a stop and a start belongs to neither session.
    session::start(&SessionConfig::default()).unwrap();
    let straddling = Trace::new("straddling");
    let first_again = session::stop().unwrap();
    let second = record(SessionConfig::default(), || {
        drop(straddling);
        let _g = Trace::new("second");
    });
    assert_eq!(names(&first), ["first"]);
    assert_eq!(first_again.event_count(), 0);
    assert_eq!(names(&second), ["second"]);
}

#[test]
fn session_misuse_is_an_error() {
    let _l = lock();
    assert_eq!(
        session::stop().unwrap_err(),
        session::SessionError::NotActive
    );
    session::start(&SessionConfig::default()).unwrap();
    assert_eq!(
        session::start(&SessionConfig::default()).unwrap_err(),
        session::SessionError::AlreadyActive {
            owner: "a recording session"
        }
    );
    session::stop().unwrap();
    let bad = SessionConfig {
        level: 4,
        ..Default::default()
    };
    assert_eq!(
        session::start(&bad).unwrap_err(),
        session::SessionError::InvalidLevel(4)
    );
}

#[test]
fn durations_follow_the_clock() {
    let _l = lock();
    let snapshot = record(SessionConfig::default(), || {
        let _g = Trace::new("sleep");
        std::thread::sleep(std::time::Duration::from_millis(10));
    });
    let event = &snapshot.threads()[0].events[0];
    assert!(
        (9_000_000..500_000_000).contains(&event.duration_ns()),
        "{} ns",
        event.duration_ns()
    );
    assert!(event.end_ns <= snapshot.duration_ns);
}

#[test]
fn a_reused_buffer_starts_empty_in_the_next_session() {
    let _l = lock();
    // The same capacity twice: the thread's buffer of the first session is reused.
    let config = SessionConfig {
        max_events_per_thread: 8,
        ..SessionConfig::default()
    };
    let first = record(config.clone(), || {
        for _ in 0..20 {
            let _g = Trace::new("first");
        }
    });
    assert_eq!(first.event_count(), 8);
    assert_eq!(first.dropped(), 12);

    let second = record(config.clone(), || {
        let _g = Trace::new("second").arg("step_num", 2i64);
    });
    assert_eq!(names(&second), ["second"]);
    assert_eq!(second.dropped(), 0, "the drop count starts again at zero");
    let event = &second.threads()[0].events[0];
    assert_eq!(event.all_metadata(), [("step_num", Value::Int(2))]);

    // A larger capacity: a new buffer, and the old one is not read.
    let third = record(
        SessionConfig {
            max_events_per_thread: 64,
            ..config
        },
        || {
            for _ in 0..30 {
                let _g = Trace::new("third");
            }
        },
    );
    assert_eq!(third.event_count(), 30);
    assert!(names(&third).iter().all(|&n| n == "third"));
    assert_eq!(third.dropped(), 0);
}
