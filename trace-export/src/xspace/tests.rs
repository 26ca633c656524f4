//! The direct encoder, and the Chrome trace and report read from a [`Layout`], against the
//! struct-based code they replace (`reference`): same bytes, same JSON, same report.

use std::borrow::Cow;

use proptest::prelude::*;
use prost::Message;
use trace_runtime::clock::ClockKind;
use trace_runtime::snapshot::{Event, Recording, Snapshot, ThreadRecord};
use trace_runtime::Value;

use super::*;
use crate::chrome;
use crate::proto::xplane::{XLine, XStat, XStatMetadata};
use crate::report::Report;

fn event(name: &'static str, start_ns: u64, end_ns: u64) -> Event {
    Event::new(name, start_ns, end_ns)
}

fn asynchronous(name: &'static str, start_ns: u64, end_ns: u64) -> Event {
    event(name, start_ns, end_ns).asynchronous()
}

fn with(mut event: Event, key: &'static str, value: impl Into<Value<'static>>) -> Event {
    event.metadata.push((key, value.into()));
    event
}

fn step(name: &'static str, step: i64, start_ns: u64, end_ns: u64) -> Event {
    with(event(name, start_ns, end_ns), "step_num", step)
}

/// A name that is equal to `text` but not at the address of any literal.
fn leaked(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

struct Thread {
    id: u64,
    name: &'static str,
    events: Vec<Event>,
    dropped: u64,
}

fn thread(id: u64, name: &'static str, events: Vec<Event>) -> Thread {
    Thread {
        id,
        name,
        events,
        dropped: 0,
    }
}

/// A snapshot with events sorted as `session::stop` sorts them.
fn snapshot(threads: Vec<Thread>) -> Snapshot {
    let threads = threads
        .into_iter()
        .map(|t| ThreadRecord::new(t.id, t.name, t.events, t.dropped))
        .collect();
    Snapshot::new(
        1_700_000_000_000_000_000,
        1_000_000_000,
        ClockKind::Monotonic,
        2,
        Recording::Events(threads),
    )
}

/// Snapshots that exercise every rule of the layout and every kind of value.
fn fixtures() -> Vec<(&'static str, Snapshot)> {
    let mut fixtures = Vec::new();

    // Steps with nested work on one thread, as a training loop records them.
    let mut events = Vec::new();
    for s in 0..5u64 {
        let start = s * 1000;
        events.push(step("train", s as i64, start, start + 900));
        for j in 0..4 {
            events.push(event("op", start + 10 + j * 200, start + 150 + j * 200));
        }
    }
    fixtures.push(("nested steps", snapshot(vec![thread(1, "main", events)])));

    // Scopes that overlap partially (a guard held across an `.await`) and async events.
    fixtures.push((
        "overlapping and async",
        snapshot(vec![thread(
            3,
            "worker",
            vec![
                event("a", 0, 100),
                event("b", 50, 150),
                event("c", 60, 70),
                event("d", 120, 300),
                event("e", 140, 160),
                asynchronous("fetch", 10, 400),
                asynchronous("fetch", 20, 30),
                asynchronous("fetch", 25, 500),
                asynchronous("parse", 410, 420),
            ],
        )]),
    ));

    // Steps on two threads: the line with the most markers wins; the other thread's work
    // inside a step's window is linked to it. Markers nested in markers, markers without
    // children, zero-length markers, a marker whose follower starts at its end.
    let main = vec![
        step("Train", 0, 0, 100),
        event("forward", 10, 50),
        step("Train", 1, 100, 200),
        step("inner", 7, 120, 180),
        event("forward", 130, 140),
        step("Train", 2, 200, 300),
        step("Train", 3, 300, 300),
        step("Train", 4, 300, 400),
        event("after", 400, 450),
    ];
    let loader = vec![
        step("load", 0, 0, 40),
        event("read", 5, 30),
        event("read", 10, 20),
        step("load", 1, 90, 130),
        event("decode", 150, 199),
        event("decode", 150, 160),
        event("decode", 210, 320),
        event("late", 390, 500),
        event("outside", 600, 700),
    ];
    fixtures.push((
        "steps on two threads",
        snapshot(vec![thread(1, "main", main), thread(2, "loader", loader)]),
    ));

    // Metadata of every value type, including the values at the edges.
    let values = vec![
        with(
            with(with(event("ints", 0, 10), "i", i64::MIN), "i_max", i64::MAX),
            "zero",
            0i64,
        ),
        with(
            with(event("uints", 10, 20), "u", u64::MAX),
            "step_num",
            u64::MAX,
        ),
        with(event("uint step", 20, 30), "step_num", 12u64),
        with(
            with(
                with(with(event("floats", 30, 40), "f", 1.5f64), "nan", f64::NAN),
                "inf",
                f64::NEG_INFINITY,
            ),
            "neg_zero",
            -0.0f64,
        ),
        with(with(event("bools", 40, 50), "yes", true), "no", false),
        with(
            with(event("strs", 50, 60), "s", "borrowed"),
            "owned",
            Value::Str(Cow::Owned("owned \"quoted\"\n\t\u{1}💥".into())),
        ),
        with(event("empty str", 60, 70), "", ""),
        // Two step numbers: the event's step is the last, the report shows the first.
        with(
            with(event("Train", 70, 80), "step_num", "first"),
            "step_num",
            5i64,
        ),
        with(event("float step", 80, 90), "step_num", 2.5f64),
        // Keys the exporter also writes.
        with(
            with(event("user keys", 90, 95), "_r", 9i64),
            SYNTHETIC_STAT,
            1i64,
        ),
    ];
    fixtures.push((
        "every value type",
        snapshot(vec![thread(4, "values", values)]),
    ));

    // Hostile names, equal names at different addresses, a real event named like a
    // synthetic one, an empty name, extreme times, dropped events, an empty thread and a
    // thread whose line id is 0.
    let mut quiet = thread(6, "quiet", Vec::new());
    quiet.dropped = 3;
    let mut busy = thread(
        100_000,
        "thread \"zero\"\n\u{0}",
        vec![
            step("x", 1, 0, 10),
            event("x/self", 20, 30),
            event(leaked("x/self"), 40, 50),
            event(leaked("op"), 60, 70),
            event("op", 70, 80),
            event("", 80, 90),
            event("名前 \"q\" \\ \n 🦀", 90, 95),
            event("zero", 95, 95),
            event("far", u64::MAX / 2, u64::MAX / 2 + 10),
        ],
    );
    busy.dropped = 900;
    fixtures.push((
        "hostile names and edges",
        snapshot(vec![busy, quiet, thread(7, "", vec![event("op", 1, 2)])]),
    ));

    fixtures.push(("empty", snapshot(Vec::new())));
    fixtures
}

/// Chrome trace JSON and report of `profile`.
fn readings<'a>(profile: impl Into<Profile<'a>>) -> (String, Report) {
    let profile = profile.into();
    let mut json = Vec::new();
    chrome::write_json(profile, &mut json).unwrap();
    (
        String::from_utf8(json).unwrap(),
        Report::from_profile(profile),
    )
}

/// Everything read from `snapshot` the new way equals what the reference code gives.
fn check(label: &str, snapshot: &Snapshot, host: &str) {
    let reference = reference::build(snapshot, host);
    let bytes = reference.encode_to_vec();
    let layout = Layout::new(snapshot, host);
    assert!(
        layout.encode() == bytes,
        "{label}: encoded bytes differ from the reference"
    );
    assert!(encode(snapshot, host) == bytes, "{label}");
    // Compared as bytes: NaN values make the messages unequal to themselves.
    assert!(build(snapshot, host).encode_to_vec() == bytes, "{label}");

    let mut json = Vec::new();
    reference::write_json(&reference, &mut json).unwrap();
    let json = String::from_utf8(json).unwrap();
    let report = reference::report(&reference);
    let (planned_json, planned_report) = readings(&layout);
    assert_eq!(planned_json, json, "{label}: Chrome trace from the layout");
    assert_eq!(planned_report, report, "{label}: report from the layout");
    let (decoded_json, decoded_report) = readings(&reference);
    assert_eq!(decoded_json, json, "{label}: Chrome trace from the XSpace");
    assert_eq!(decoded_report, report, "{label}: report from the XSpace");
}

#[test]
fn encoding_chrome_and_report_match_the_reference() {
    for (label, snapshot) in fixtures() {
        check(label, &snapshot, "host");
        check(label, &snapshot, "hostile \"host\"\n🦀");
    }
}

#[test]
fn the_fixtures_cover_what_they_claim() {
    let fixtures = fixtures();
    let space = |label: &str| {
        let (_, snapshot) = fixtures.iter().find(|(l, _)| *l == label).unwrap();
        build(snapshot, "h")
    };
    let names = |space: &XSpace| -> Vec<String> {
        space.planes[0]
            .lines
            .iter()
            .map(|l| l.name.clone())
            .collect()
    };
    assert_eq!(
        names(&space("overlapping and async")),
        [
            "worker",
            "worker (overlapping 1)",
            "worker (async 1)",
            "worker (async 2)"
        ]
    );
    let two = space("steps on two threads");
    let host = &two.planes[0];
    let stat_id = |name: &str| {
        host.stat_metadata
            .values()
            .find(|m| m.name == name)
            .map(|m| m.id)
    };
    let count = |line: &XLine, stat: &str| {
        let id = stat_id(stat).unwrap();
        line.events
            .iter()
            .filter(|e| e.stats.iter().any(|s| s.metadata_id == id))
            .count()
    };
    // Markers: Train 0, 1, 2 and 4 (3 lies in 4, `inner` in 1); Train 2 has no child.
    assert_eq!(count(&host.lines[0], "_r"), 4);
    assert_eq!(count(&host.lines[0], SYNTHETIC_STAT), 1);
    // The loader's markers are not roots; `load 0` and the first `decode` are linked.
    assert_eq!(count(&host.lines[1], "_r"), 0);
    assert_eq!(count(&host.lines[1], "_c"), 2);
    let hostile = space("hostile names and edges");
    // Thread 100 000's line is numbered 0; threads come in id order.
    assert_eq!(hostile.planes[0].lines[1].id, 0);
    assert_eq!(hostile.warnings.len(), 2);
}

/// A decoded profile may hold what this crate never writes: several host planes, line
/// display names and base times, aggregated events, unknown metadata ids, and byte, ref and
/// missing values. The Chrome trace and the report read it as they did.
#[test]
fn decoded_profiles_read_as_before() {
    use crate::proto::xplane::x_event::Data;
    use crate::proto::xplane::x_stat::Value as V;

    let (_, snapshot) = fixtures().swap_remove(2);
    let mut space = reference::build(&snapshot, "h");
    let mut second = space.planes[0].clone();
    second.stat_metadata.insert(
        77,
        XStatMetadata {
            id: 77,
            name: "interned".into(),
            description: String::new(),
        },
    );
    let line = &mut second.lines[0];
    line.display_id = 0;
    line.display_name = "shown \"name\"".into();
    line.timestamp_ns = 5;
    line.events[0].data = Some(Data::NumOccurrences(3));
    line.events[1].metadata_id = 999;
    line.events[1].duration_ps = -5;
    line.events[2].stats = [
        V::BytesValue(vec![1, 2, 3]),
        V::RefValue(77),
        V::RefValue(78),
        V::DoubleValue(f64::INFINITY),
    ]
    .into_iter()
    .map(|value| XStat {
        metadata_id: 1,
        value: Some(value),
    })
    .chain([XStat {
        metadata_id: 555,
        value: None,
    }])
    .collect();
    space.planes.insert(1, second);

    let mut json = Vec::new();
    reference::write_json(&space, &mut json).unwrap();
    let (new_json, new_report) = readings(&space);
    assert_eq!(new_json, String::from_utf8(json).unwrap());
    assert_eq!(new_report, reference::report(&space));
}

#[test]
fn interner_numbers_texts_not_addresses() {
    let mut interner = Interner::new();
    let op = leaked("op");
    assert_eq!(interner.id("op"), 1);
    assert_eq!(interner.id("train"), 2);
    assert_eq!(interner.id(op), 1);
    assert_eq!(interner.id("op"), 1);
    assert_eq!(interner.id_with_suffix("train", "/self"), 3);
    assert_eq!(interner.id(leaked("train/self")), 3);
    assert_eq!(interner.id_with_suffix("op", ""), 1);
    assert_eq!(interner.name(3), "train/self");
    // Many names, more than the address table holds: ids stay right after evictions.
    let many: Vec<&'static str> = (0..2000).map(|i| leaked(&format!("n{i}"))).collect();
    for round in 0..2 {
        for (i, name) in many.iter().enumerate() {
            assert_eq!(interner.id(name), i as i64 + 4, "round {round}");
        }
    }
}

/// Random threads of random events (overlapping, async, with and without step numbers and
/// other metadata).
fn arbitrary_snapshot() -> impl Strategy<Value = Snapshot> {
    let name = prop::sample::select(vec!["a", "b", "Train", "x/self", "x", ""]);
    let value = prop_oneof![
        (0i64..4).prop_map(|n| ("step_num", Value::Int(n))),
        (0u64..4).prop_map(|n| ("step_num", Value::UInt(n))),
        any::<f64>().prop_map(|v| ("f", Value::Float(v))),
        any::<bool>().prop_map(|v| ("_r", Value::Bool(v))),
        ".{0,6}".prop_map(|s| ("s", Value::Str(Cow::Owned(s)))),
    ];
    let metadata = prop::collection::vec(value, 0..3);
    let metadata = prop_oneof![3 => Just(Vec::new()), 2 => metadata];
    let event = (
        name,
        0u64..300,
        0u64..120,
        prop::bool::weighted(0.1),
        metadata,
    )
        .prop_map(|(name, start, len, is_async, metadata)| {
            let mut event = event(name, start, start + len);
            event.metadata = metadata;
            event.is_async = is_async;
            event
        });
    let events = prop::collection::vec(event, 0..40);
    let thread_id = prop::sample::select(vec![1u64, 2, 7, 100_000, 123_456]);
    let threads = prop::collection::vec((thread_id, events, 0u64..2), 0..4);
    threads.prop_map(|threads| {
        let mut seen = Vec::new();
        let threads = threads
            .into_iter()
            .filter(|(id, _, _)| {
                let new = !seen.contains(id);
                seen.push(*id);
                new
            })
            .map(|(id, events, dropped)| Thread {
                id,
                name: "t",
                events,
                dropped,
            })
            .collect();
        snapshot(threads)
    })
}

proptest! {
    #[test]
    fn random_snapshots_match_the_reference(snapshot in arbitrary_snapshot()) {
        check("random", &snapshot, "host");
    }
}
