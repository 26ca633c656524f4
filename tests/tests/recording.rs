//! What `#[traced]` and `trace!` record, read back from the session snapshot.

use std::sync::atomic::{AtomicUsize, Ordering};

use trace_runtime::session::{self, SessionConfig};
use trace_runtime::snapshot::{Snapshot, ThreadRecord};
use trace_runtime::{trace, traced, Value};
use trace_tests::{run_interleaved, session_lock, yield_now};

fn record(body: impl FnOnce()) -> Snapshot {
    session::start(&SessionConfig::default()).unwrap();
    body();
    session::stop().unwrap()
}

fn main_thread(snapshot: &Snapshot) -> &ThreadRecord {
    let current = std::thread::current();
    let name = current.name().unwrap_or("");
    snapshot
        .threads()
        .iter()
        .find(|t| t.name == name)
        .expect("this thread recorded")
}

struct Model {
    scale: f32,
}

impl Model {
    #[traced]
    fn forward(&self, x: f32) -> f32 {
        self.activate(x * self.scale)
    }

    #[traced(name = "activation", level = 1)]
    fn activate(&self, x: f32) -> f32 {
        x.max(0.0)
    }

    #[traced]
    fn update(&mut self, by: f32) {
        self.scale += by;
    }
}

#[traced(name = "Train", step_num = step)]
fn train_step(model: &mut Model, step: i64) -> f32 {
    let y = model.forward(2.0);
    model.update(0.5);
    y
}

#[test]
fn nested_sync_calls_and_methods() {
    let _l = session_lock();
    let mut model = Model { scale: 1.0 };
    let snapshot = record(|| {
        for step in 0..3 {
            train_step(&mut model, step);
        }
    });
    let thread = main_thread(&snapshot);
    let names: Vec<_> = thread.events.iter().map(|e| e.name()).collect();
    let forward = concat!(module_path!(), "::forward");
    let update = concat!(module_path!(), "::update");
    assert_eq!(
        names,
        [
            "Train",
            forward,
            "activation",
            update,
            "Train",
            forward,
            "activation",
            update,
            "Train",
            forward,
            "activation",
            update
        ]
    );
    for (step, chunk) in thread.events.chunks(4).enumerate() {
        let [train, forward, activation, update] = chunk else {
            unreachable!()
        };
        assert_eq!(train.metadata("step_num"), Some(&Value::Int(step as i64)));
        assert!(train.start_ns <= forward.start_ns && forward.end_ns <= train.end_ns);
        assert!(forward.start_ns <= activation.start_ns && activation.end_ns <= forward.end_ns);
        assert!(forward.end_ns <= update.start_ns && update.end_ns <= train.end_ns);
        assert!(forward.all_metadata().is_empty());
    }
    assert_eq!(model.scale, 2.5);
}

#[test]
fn trace_blocks_keep_control_flow_and_values() {
    let _l = session_lock();
    fn parse(input: &str) -> Result<i64, std::num::ParseIntError> {
        let n = trace!("parse", input = input, { input.trim().parse::<i64>()? });
        Ok(trace!("double", |tm| {
            tm.set_metadata("in_cache", false);
            n * 2
        }))
    }
    let snapshot = record(|| {
        assert_eq!(parse(" 21 "), Ok(42));
        assert!(parse("x").is_err());
        let mut found = None;
        for i in 0..10 {
            trace!("search", i = i, {
                if i == 3 {
                    found = Some(i);
                    break;
                }
            });
        }
        assert_eq!(found, Some(3));
    });
    let events = &main_thread(&snapshot).events;
    let names: Vec<_> = events.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        ["parse", "double", "parse", "search", "search", "search", "search"]
    );
    assert_eq!(
        events[0].metadata("input"),
        Some(&Value::Str(" 21 ".into()))
    );
    assert_eq!(events[1].metadata("in_cache"), Some(&Value::Bool(false)));
    // The early return through `?` still ends the event.
    assert_eq!(events[2].metadata("input"), Some(&Value::Str("x".into())));
    // `break` ended the fourth search event too.
    assert_eq!(events[6].metadata("i"), Some(&Value::Int(3)));
}

#[traced(request = id)]
async fn handle(id: u32, polls: usize) -> u32 {
    for _ in 0..polls {
        trace!("work", request = id, { std::hint::black_box(id) });
        yield_now().await;
    }
    id
}

#[test]
fn interleaved_async_fns_each_record_one_event_from_first_poll_to_completion() {
    let _l = session_lock();
    let snapshot = record(|| {
        run_interleaved(vec![
            Box::pin(async {
                assert_eq!(handle(1, 3).await, 1);
            }),
            Box::pin(async {
                assert_eq!(handle(2, 5).await, 2);
            }),
        ]);
    });
    let events = &main_thread(&snapshot).events;
    let handle_name = concat!(module_path!(), "::handle");
    let requests: Vec<_> = events.iter().filter(|e| e.name() == handle_name).collect();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|e| e.is_async()));
    let one = requests
        .iter()
        .find(|e| e.metadata("request") == Some(&Value::UInt(1)))
        .unwrap();
    let two = requests
        .iter()
        .find(|e| e.metadata("request") == Some(&Value::UInt(2)))
        .unwrap();
    // They overlap: each spans from its first poll to its completion.
    assert!(one.start_ns < two.start_ns && two.start_ns < one.end_ns && one.end_ns < two.end_ns);
    let work = |id: u32| {
        events
            .iter()
            .filter(|e| {
                e.name() == "work" && e.metadata("request") == Some(&Value::UInt(id.into()))
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(work(1).len(), 3);
    assert_eq!(work(2).len(), 5);
    // Each request's work lies inside its own request's span, whatever ran in between.
    assert!(work(1)
        .iter()
        .all(|w| one.start_ns <= w.start_ns && w.end_ns <= one.end_ns));
    assert!(work(2)
        .iter()
        .all(|w| two.start_ns <= w.start_ns && w.end_ns <= two.end_ns));
}

#[traced(request = id)]
async fn fail_after(id: u32, polls: usize) -> u32 {
    for _ in 0..polls {
        trace!("work", request = id, { std::hint::black_box(id) });
        yield_now().await;
    }
    panic!("request {id} failed");
}

#[test]
fn a_panic_in_a_traced_async_fn_records_its_event() {
    let _l = session_lock();
    let snapshot = record(|| {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_interleaved(vec![
                Box::pin(async {
                    handle(1, 10).await;
                }),
                Box::pin(async {
                    fail_after(2, 2).await;
                }),
            ]);
        }));
        assert!(outcome.is_err());
    });
    let events = &main_thread(&snapshot).events;
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.name() == concat!(module_path!(), "::fail_after"))
        .collect();
    assert_eq!(failed.len(), 1, "{events:#?}");
    let failed = failed[0];
    assert!(failed.is_async());
    assert_eq!(failed.metadata("request"), Some(&Value::UInt(2)));
    // Its work before the panic lies inside it.
    let work: Vec<_> = events
        .iter()
        .filter(|e| e.name() == "work" && e.metadata("request") == Some(&Value::UInt(2)))
        .collect();
    assert_eq!(work.len(), 2);
    assert!(work
        .iter()
        .all(|w| failed.start_ns <= w.start_ns && w.end_ns <= failed.end_ns));
    // The sibling that the unwinding dropped mid-flight ends where it was dropped.
    let sibling: Vec<_> = events
        .iter()
        .filter(|e| e.name() == concat!(module_path!(), "::handle"))
        .collect();
    assert_eq!(sibling.len(), 1);
    assert!(sibling[0].start_ns < failed.end_ns && failed.end_ns <= sibling[0].end_ns);
}

#[test]
fn metadata_expressions_run_only_while_recording() {
    let _l = session_lock();
    static EVALUATED: AtomicUsize = AtomicUsize::new(0);
    fn expensive() -> i64 {
        EVALUATED.fetch_add(1, Ordering::SeqCst);
        7
    }
    #[traced(cost = expensive())]
    fn lazy() {}
    lazy();
    trace!("lazy_block", cost = expensive(), {});
    assert_eq!(EVALUATED.load(Ordering::SeqCst), 0, "evaluated while off");
    let snapshot = record(|| {
        lazy();
        trace!("lazy_block", cost = expensive(), {});
    });
    assert_eq!(EVALUATED.load(Ordering::SeqCst), 2);
    assert!(snapshot
        .events()
        .all(|(_, e)| e.metadata("cost") == Some(&Value::Int(7))));
}

#[test]
fn a_panic_through_a_traced_fn_records_its_event() {
    let _l = session_lock();
    #[traced]
    fn explode(n: u32) -> u32 {
        if n > 0 {
            panic!("explode {n}");
        }
        n
    }
    let snapshot = record(|| {
        assert!(std::panic::catch_unwind(|| explode(1)).is_err());
    });
    let names: Vec<_> = snapshot.events().map(|(_, e)| e.name()).collect();
    assert_eq!(names, [concat!(module_path!(), "::explode")]);
}

#[test]
fn every_call_site_is_listed_hit_or_not() {
    #[traced(name = "never_called_site")]
    fn never_called() {}
    let _ = never_called as fn();
    assert!(trace_runtime::callsites().any(|site| site.name() == "never_called_site"));
    assert!(trace_runtime::callsites().any(|site| site.name() == "Train"));
}
