//! What `#[traced]` and `trace!` record: names, levels, metadata, async events and control
//! flow, checked on the events of a real session rather than on the generated tokens.

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use trace_runtime::session::{self, SessionConfig};
use trace_runtime::snapshot::{Event, Snapshot};
use trace_runtime::{trace, traced, Trace, Value};

/// Runs `f` in a session recording at `level` and returns what it recorded.
fn record(level: u8, f: impl FnOnce()) -> Snapshot {
    let _lock = trace_tests::session_lock();
    session::start(&SessionConfig {
        level,
        ..SessionConfig::default()
    })
    .expect("no other session is active");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let snapshot = session::stop().expect("the session is active");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    snapshot
}

/// The recorded events called `name`, in start order.
fn named<'a>(snapshot: &'a Snapshot, name: &str) -> Vec<&'a Event> {
    let mut events: Vec<&Event> = snapshot
        .events()
        .map(|(_, event)| event)
        .filter(|event| event.name() == name)
        .collect();
    events.sort_by_key(|event| event.start_ns);
    events
}

fn only<'a>(snapshot: &'a Snapshot, name: &str) -> &'a Event {
    match named(snapshot, name).as_slice() {
        [event] => event,
        events => panic!("expected one `{name}` event, got {events:?}"),
    }
}

fn contains(outer: &Event, inner: &Event) -> bool {
    outer.start_ns <= inner.start_ns && inner.end_ns <= outer.end_ns
}

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// Pending once, after sleeping `pause`: a suspension point that takes time.
async fn pause_then_yield(pause: Duration) {
    let mut yielded = false;
    std::future::poll_fn(|_| {
        if yielded {
            Poll::Ready(())
        } else {
            std::thread::sleep(pause);
            yielded = true;
            Poll::Pending
        }
    })
    .await
}

#[traced]
fn default_name() {}

mod model {
    #[trace_runtime::traced]
    pub(crate) fn forward(x: f64) -> f64 {
        x * 2.0
    }
}

#[test]
fn default_name_is_the_function_path() {
    let snapshot = record(2, || {
        default_name();
        model::forward(1.0);
    });
    let event = only(&snapshot, "macro_expansion::default_name");
    let site = event.callsite().expect("macro events have a call site");
    assert_eq!(site.name(), "macro_expansion::default_name");
    assert_eq!(site.level(), 1);
    assert!(
        site.file().ends_with("macro_expansion.rs"),
        "{}",
        site.file()
    );
    only(&snapshot, "macro_expansion::model::forward");
}

#[traced(name = "Train", step_num = step, loss = 0.5, tag = "train", first = step == 0)]
fn train_step(step: i64) -> i64 {
    step + 1
}

#[test]
fn name_and_metadata_options() {
    let snapshot = record(2, || {
        assert_eq!(train_step(0), 1);
        assert_eq!(train_step(7), 8);
    });
    let events = named(&snapshot, "Train");
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].metadata("step_num"), Some(&Value::Int(7)));
    assert_eq!(events[1].metadata("loss"), Some(&Value::Float(0.5)));
    assert_eq!(events[1].metadata("tag"), Some(&Value::Str("train".into())));
    assert_eq!(events[0].metadata("first"), Some(&Value::Bool(true)));
    assert_eq!(events[1].metadata("first"), Some(&Value::Bool(false)));
}

/// The first metadata of a scope travels inside its event's record when it is a number that
/// fits 32 bits; any other value under the first key is recorded as metadata of its own. Either
/// way every value arrives, in the order written, with its type.
#[test]
fn the_first_metadata_arrives_in_order_whatever_its_value() {
    fn values(event: &Event) -> Vec<(&str, Value<'static>)> {
        event
            .all_metadata()
            .iter()
            .map(|(key, value)| (*key, value.clone()))
            .collect()
    }
    let big = i64::from(i32::MAX) + 1;
    let snapshot = record(1, || {
        for first in [
            Value::Int(-3),
            Value::Int(big),
            Value::UInt(u64::from(u32::MAX)),
            Value::UInt(u64::MAX),
            Value::Bool(false),
            Value::Float(0.25),
            Value::Str("seven".into()),
        ] {
            trace!("first", first = first.clone(), second = 2u8, {
                trace_runtime::set_metadata("late", true);
            });
        }
        block_on(async_step(9, Duration::ZERO));
    });
    let events = named(&snapshot, "first");
    let firsts: Vec<_> = events.iter().map(|e| values(e)).collect();
    let expected = |first: Value<'static>| {
        vec![
            ("first", first),
            ("second", Value::UInt(2)),
            ("late", Value::Bool(true)),
        ]
    };
    assert_eq!(
        firsts,
        [
            expected(Value::Int(-3)),
            expected(Value::Int(big)),
            expected(Value::UInt(u64::from(u32::MAX))),
            expected(Value::UInt(u64::MAX)),
            expected(Value::Bool(false)),
            expected(Value::Float(0.25)),
            expected(Value::Str("seven".into())),
        ]
    );
    // An async fn's first metadata stays a record of its own: its event may end elsewhere.
    let step = only(&snapshot, "async_step");
    assert_eq!(step.metadata("id"), Some(&Value::UInt(9)));
}

/// A step number costs its span no room: a buffer of 100 events holds 100 spans that each
/// carry one, and the spans past it are counted as dropped, none cut in half.
#[test]
fn a_step_number_fits_inside_its_event() {
    let _lock = trace_tests::session_lock();
    session::start(&SessionConfig {
        max_events_per_thread: 100,
        ..SessionConfig::default()
    })
    .unwrap();
    // A new thread: its buffer is fresh, of this session's capacity.
    std::thread::spawn(|| {
        for step in 0..150i64 {
            trace!("step", step_num = step, {});
        }
    })
    .join()
    .unwrap();
    let snapshot = session::stop().unwrap();
    let steps: Vec<_> = named(&snapshot, "step")
        .iter()
        .map(|e| e.metadata("step_num").cloned())
        .collect();
    assert_eq!(
        steps,
        (0..100).map(|s| Some(Value::Int(s))).collect::<Vec<_>>()
    );
    assert_eq!(snapshot.dropped(), 50);
}

static EVALUATED: AtomicUsize = AtomicUsize::new(0);

fn counted(value: i64) -> i64 {
    EVALUATED.fetch_add(1, Ordering::SeqCst);
    value
}

#[traced(name = "counted_verbose", level = 3, value = counted(3))]
fn counted_verbose() {}

#[traced(name = "counted_info", level = 2, value = counted(2))]
fn counted_info() {}

#[test]
fn levels_and_lazy_metadata() {
    {
        // No session (the lock keeps other tests from starting one): no metadata evaluated.
        let _lock = trace_tests::session_lock();
        EVALUATED.store(0, Ordering::SeqCst);
        counted_info();
        trace!("block", value = counted(1), {});
        assert_eq!(EVALUATED.load(Ordering::SeqCst), 0);
    }

    // Level 2 records `counted_info` but not the verbose one, whose metadata is not evaluated.
    let snapshot = record(2, || {
        counted_verbose();
        counted_info();
        trace!("verbose block", level = 3, value = counted(1), {});
    });
    assert_eq!(EVALUATED.load(Ordering::SeqCst), 1);
    assert!(named(&snapshot, "counted_verbose").is_empty());
    assert!(named(&snapshot, "verbose block").is_empty());
    let info = only(&snapshot, "counted_info");
    assert_eq!(info.metadata("value"), Some(&Value::Int(2)));
    assert_eq!(info.callsite().map(|site| site.level()), Some(2));

    let snapshot = record(3, || {
        counted_verbose();
        trace!("verbose block", level = 3, {});
    });
    only(&snapshot, "counted_verbose");
    only(&snapshot, "verbose block");
}

#[traced(name = "checked_parse", input = input)]
fn checked_parse(input: &str) -> Result<i64, std::num::ParseIntError> {
    if input.is_empty() {
        return Ok(0);
    }
    let value = trace!("parse", { input.trim().parse::<i64>()? });
    Ok(value)
}

#[test]
fn early_exits_still_end_the_events() {
    let snapshot = record(2, || {
        assert_eq!(checked_parse("12"), Ok(12));
        assert_eq!(checked_parse(""), Ok(0));
        assert!(checked_parse("x").is_err());
    });
    let outer = named(&snapshot, "checked_parse");
    let inner = named(&snapshot, "parse");
    assert_eq!(outer.len(), 3);
    assert_eq!(inner.len(), 2, "the early `return` skips the block");
    assert!(contains(outer[0], inner[0]));
    assert!(
        contains(outer[2], inner[1]),
        "`?` leaves the block and the function"
    );
    assert_eq!(outer[1].metadata("input"), Some(&Value::Str("".into())));
}

#[test]
fn trace_blocks_with_loops_and_late_metadata() {
    let snapshot = record(2, || {
        let mut total = 0;
        for i in 0..5i64 {
            total += trace!("iteration", i = i, |tm| {
                if i == 1 {
                    continue;
                }
                if i == 3 {
                    break;
                }
                tm.set_metadata("in_cache", i % 2 == 0);
                i * 10
            });
        }
        assert_eq!(total, 20);
    });
    let events = named(&snapshot, "iteration");
    assert_eq!(events.len(), 4, "iterations 0 to 3 each open the block");
    let values: Vec<_> = events.iter().map(|e| e.metadata("i").cloned()).collect();
    assert_eq!(
        values,
        [0, 1, 2, 3].map(|i| Some(Value::Int(i))),
        "metadata is recorded before the body runs"
    );
    assert_eq!(events[0].metadata("in_cache"), Some(&Value::Bool(true)));
    assert_eq!(events[1].metadata("in_cache"), None);
    assert!(events.iter().all(|event| !event.is_async()));
}

#[traced(name = "async_step", id = id)]
async fn async_step(id: u32, pause: Duration) -> u32 {
    pause_then_yield(pause).await;
    let doubled = trace!("inside", { id * 2 });
    pause_then_yield(pause).await;
    doubled
}

#[test]
fn async_fn_is_one_event_from_first_poll_to_completion() {
    let pause = Duration::from_millis(5);
    let snapshot = record(2, || {
        let future = async_step(4, pause);
        drop(Trace::new("created"));
        // Creating the future records nothing: the event starts at the first poll.
        std::thread::sleep(pause * 2);
        assert_eq!(block_on(future), 8);
    });
    let event = only(&snapshot, "async_step");
    assert!(event.is_async());
    assert_eq!(event.metadata("id"), Some(&Value::UInt(4)));
    let created = only(&snapshot, "created");
    let before_first_poll = Duration::from_nanos(event.start_ns - created.end_ns);
    assert!(before_first_poll >= pause * 2, "{before_first_poll:?}");
    let duration = Duration::from_nanos(event.duration_ns());
    assert!(
        duration >= pause * 2,
        "spans both suspensions: {duration:?}"
    );
    assert!(contains(event, only(&snapshot, "inside")));
}

#[test]
fn dropping_an_unfinished_async_fn_ends_its_event() {
    let snapshot = record(2, || {
        let mut future = Box::pin(async_step(1, Duration::ZERO));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_pending());
        drop(future);
        // A future never polled records nothing.
        drop(async_step(2, Duration::ZERO));
    });
    let event = only(&snapshot, "async_step");
    assert_eq!(event.metadata("id"), Some(&Value::UInt(1)));
}

#[traced(name = "shadowing")]
fn shadowing(pause: Duration) {
    // The user's binding is not the guard: dropping it early must not end the event.
    let __traced_guard = Trace::new("user guard");
    drop(__traced_guard);
    std::thread::sleep(pause);
}

#[test]
fn user_bindings_named_like_the_guard_do_not_end_the_event() {
    let pause = Duration::from_millis(5);
    let snapshot = record(2, || shadowing(pause));
    let event = only(&snapshot, "shadowing");
    assert!(Duration::from_nanos(event.duration_ns()) >= pause);
    let user = only(&snapshot, "user guard");
    assert!(contains(event, user) && user.end_ns < event.end_ns);
}

struct Counter {
    hits: Cell<u32>,
}

impl Counter {
    #[traced(name = "Counter::hit", before = self.hits.get())]
    fn hit(&self) -> u32 {
        self.hits.set(self.hits.get() + 1);
        self.hits.get()
    }
}

#[test]
fn methods_can_use_self_in_metadata() {
    let counter = Counter { hits: Cell::new(0) };
    let snapshot = record(2, || {
        counter.hit();
        counter.hit();
    });
    let events = named(&snapshot, "Counter::hit");
    assert_eq!(events[1].metadata("before"), Some(&Value::UInt(1)));
}

#[traced(name = "panics")]
fn panics() {
    trace!("before panic", {});
    panic!("unwinding through a traced scope");
}

#[test]
fn unwinding_through_a_traced_scope_records_it() {
    let snapshot = record(2, || {
        let outcome = std::panic::catch_unwind(panics);
        assert!(outcome.is_err());
    });
    assert!(contains(
        only(&snapshot, "panics"),
        only(&snapshot, "before panic")
    ));
}
