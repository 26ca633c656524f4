//! Properties of the profile written from a recording, in place of a frozen copy of older
//! exporters to compare bytes with:
//!
//! * the bytes [`encode`] writes are exactly what prost writes for the `XSpace` they decode
//!   to (decode, then encode, gives them back; [`build`] is that `XSpace`), they are the same
//!   every time, and the same whatever addresses the names live at;
//! * that `XSpace` says what was recorded ([`model::check_read_back`]): every event once on
//!   a line of its thread with its name, times and metadata, lines that nest, the step
//!   markers and their links, one op per call site named as xprof parses ops;
//! * the Chrome trace and the report read from the [`Layout`] equal those read from the
//!   decoded file, and say what that file holds ([`model::check_chrome`],
//!   [`model::expected_report`]), for files this crate never writes as well.
//!
//! Each is checked on hand-made recordings that hit every rule, then on random ones.

use std::borrow::Cow;
use std::collections::HashMap;

use proptest::prelude::*;
use prost::Message;
use trace_runtime::clock::ClockKind;
use trace_runtime::snapshot::{Event, Recording, Snapshot, ThreadRecord};
use trace_runtime::{Callsite, Value};

use super::*;
use crate::chrome;
use crate::proto::xplane::{
    x_event, XEvent, XEventMetadata, XLine, XPlane, XSpace, XStat, XStatMetadata,
};
use crate::report::Report;

mod heap;
mod model;

use model::Json;

fn event(name: &'static str, start_ns: u64, end_ns: u64) -> Event {
    Event::new(name, start_ns, end_ns)
}

fn asynchronous(name: &'static str, start_ns: u64, end_ns: u64) -> Event {
    event(name, start_ns, end_ns).asynchronous()
}

/// `event` with the given metadata.
fn described(event: Event, metadata: Vec<(&'static str, Value<'static>)>) -> Event {
    event.with_metadata(metadata)
}

fn with(event: Event, key: &'static str, value: impl Into<Value<'static>>) -> Event {
    event.with(key, value)
}

fn step(name: &'static str, step: i64, start_ns: u64, end_ns: u64) -> Event {
    with(event(name, start_ns, end_ns), "step_num", step)
}

/// Call sites as the macros make them: two of them and a named event share a name, one is a
/// function's path, one records step markers.
static LOAD_EARLY: Callsite = Callsite::new("load", "app::data", "src/data.rs", 10, 2);
static LOAD_LATE: Callsite = Callsite::new("load", "app::data", "src/data.rs", 42, 2);
static FORWARD: Callsite = Callsite::new(
    "my_crate::train::forward",
    "my_crate::train",
    "src/train.rs",
    7,
    2,
);
static TRAIN: Callsite = Callsite::new("Train", "my_crate", "src/main.rs", 3, 2);

/// An event recorded at `site`.
fn at(site: &'static Callsite, start_ns: u64, end_ns: u64) -> Event {
    Event::new("", start_ns, end_ns).at(site)
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

    // Call sites: two that share a name with each other and with a named event, root
    // markers of a call site whose other events are ops, names xprof reserves.
    let train = |step: i64, start: u64, end: u64| with(at(&TRAIN, start, end), "step_num", step);
    let main = vec![
        train(0, 0, 100),
        at(&FORWARD, 10, 40),
        at(&LOAD_LATE, 12, 20),
        at(&LOAD_EARLY, 20, 30),
        // Ends with the event it lies in.
        event("load", 30, 40),
        train(1, 100, 200),
        train(7, 110, 150),
        event("IDLE", 120, 130),
        at(&FORWARD, 160, 170),
        event(leaked("load"), 170, 180),
    ];
    let worker = vec![
        train(2, 5, 50),
        at(&LOAD_EARLY, 10, 20),
        event("Iterator", 60, 70),
    ];
    fixtures.push((
        "call sites",
        snapshot(vec![thread(1, "main", main), thread(2, "worker", worker)]),
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

/// The same recording with every event name and metadata key moved to another address.
fn moved(snapshot: &Snapshot) -> Snapshot {
    let mut copies: HashMap<&str, &'static str> = HashMap::new();
    let mut elsewhere = |text: &'static str| *copies.entry(text).or_insert_with(|| leaked(text));
    let mut snapshot = snapshot.clone();
    let Recording::Events(threads) = &mut snapshot.recording else {
        return snapshot;
    };
    for thread in threads {
        for event in &mut thread.events {
            let metadata = (event.all_metadata().iter())
                .map(|(key, value)| (elsewhere(key), value.clone()))
                .collect();
            let mut copy = Event::new(elsewhere(event.name()), event.start_ns, event.end_ns)
                .with_metadata(metadata);
            if let Some(site) = event.callsite() {
                copy = copy.at(site);
            }
            if event.is_async() {
                copy = copy.asynchronous();
            }
            *event = copy;
        }
    }
    snapshot
}

/// Checks every property of the profile of `snapshot` written for `host`.
fn check(label: &str, snapshot: &Snapshot, host: &str) {
    let bytes = encode(snapshot, host);
    // Compared as bytes: NaN values make messages unequal to themselves.
    let layout = Layout::new(snapshot, host);
    assert!(
        layout.encode() == bytes,
        "{label}: the layout encodes alike"
    );
    assert!(
        streamed(&layout) == bytes,
        "{label}: streamed to a writer, the same bytes"
    );
    assert!(
        encode(snapshot, host) == bytes,
        "{label}: the same bytes every time"
    );
    assert!(
        encode(&moved(snapshot), host) == bytes,
        "{label}: names are told apart by their text, not their address"
    );
    let space = decode(&bytes).expect("the bytes decode");
    assert!(
        space.encode_to_vec() == bytes,
        "{label}: decoding and encoding again gives the bytes back"
    );
    assert!(build(snapshot, host).encode_to_vec() == bytes, "{label}");

    model::check_read_back(snapshot, host, &space);

    let (json, report) = readings(&layout);
    let (decoded_json, decoded_report) = readings(&space);
    assert_eq!(
        json, decoded_json,
        "{label}: Chrome trace of the layout and of the file"
    );
    assert_eq!(
        report, decoded_report,
        "{label}: report of the layout and of the file"
    );
    model::check_chrome(&json, &space);
    assert_eq!(report, model::expected_report(&space), "{label}: report");
}

/// A writer that takes a few bytes per call, as a slow pipe would.
#[derive(Default)]
struct Trickle(Vec<u8>);

impl std::io::Write for Trickle {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = bytes.len().min(7);
        self.0.extend_from_slice(&bytes[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What [`Layout::encode_to`] writes.
fn streamed(layout: &Layout<'_>) -> Vec<u8> {
    let mut out = Trickle::default();
    layout.encode_to(&mut out).expect("a Vec takes any write");
    out.0
}

/// Steps of nested work on two threads, with metadata, MiBs once encoded: many times
/// what the encoder buffers before it writes.
fn large_snapshot() -> Snapshot {
    let mut main = Vec::new();
    let mut worker = Vec::new();
    for s in 0..200u64 {
        let start = s * 100_000;
        main.push(at(&TRAIN, start, start + 90_000).with("step_num", s as i64));
        for i in 0..1000 {
            let t = start + 10 + i * 80;
            main.push(at(&FORWARD, t, t + 70));
            if i % 10 == 0 {
                worker.push(with(at(&LOAD_EARLY, t + 5, t + 50), "bytes", i * 7));
            }
        }
    }
    snapshot(vec![thread(1, "main", main), thread(2, "worker", worker)])
}

#[test]
fn a_profile_streamed_to_a_writer_is_the_bytes_encoded_in_memory() {
    let snapshot = large_snapshot();
    let layout = Layout::new(&snapshot, "host");
    let bytes = layout.encode();
    assert!(bytes.len() > 1 << 20, "{} bytes", bytes.len());
    assert!(streamed(&layout) == bytes);
    assert!(decode(&bytes).is_ok());
}

#[test]
fn a_writer_error_ends_the_stream() {
    struct Full(usize);
    impl std::io::Write for Full {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if self.0 < bytes.len() {
                return Err(std::io::Error::other("disk full"));
            }
            self.0 -= bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let snapshot = large_snapshot();
    let layout = Layout::new(&snapshot, "host");
    let error = layout.encode_to(Full(1 << 20)).unwrap_err();
    assert_eq!(error.to_string(), "disk full");
}

#[test]
fn fixtures_write_what_was_recorded() {
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
    // Threads come in id order: thread 7's line, then thread 100 000's, numbered 0.
    let ids: Vec<i64> = hostile.planes[0].lines.iter().map(|l| l.id).collect();
    assert_eq!(ids, [7, 0]);
    assert_eq!(hostile.warnings.len(), 2);

    // Event metadata: (name, display name). Every event but a root marker is an op.
    let metadata = |space: &XSpace| -> Vec<(String, String)> {
        let mut all: Vec<_> = (space.planes[0].event_metadata.values())
            .map(|m| (m.name.clone(), m.display_name.clone()))
            .collect();
        all.sort();
        all
    };
    let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut all: Vec<_> = (pairs.iter())
            .map(|(name, display)| (name.to_string(), display.to_string()))
            .collect();
        all.sort();
        all
    };
    assert_eq!(
        metadata(&hostile),
        owned(&[
            ("op:Op", "op"),
            ("x", "x"),
            // The marker's own time comes first, so the real `x/self` is the second.
            ("x/self:Self", "x/self"),
            ("x/self_2:Self", "x/self"),
            ("unnamed:Unnamed", ""),
            ("q:Q", "名前 \"q\" \\ \n 🦀"),
            ("zero:Zero", "zero"),
            ("far:Far", "far"),
        ])
    );
    // Call sites that share a name: the named event first, then by file and line. Root
    // markers keep their name; the same call site's other events are an op.
    assert_eq!(
        metadata(&space("call sites")),
        owned(&[
            ("Train", "Train"),
            ("Train:Train", "Train"),
            ("my_crate/train/forward:Forward", "my_crate::train::forward"),
            ("load:Load", "load"),
            ("load_2:Load", "load"),
            ("load_3:Load", "load"),
            ("IDLE_2:Idle", "IDLE"),
            ("Iterator_2:Iterator", "Iterator"),
        ])
    );
    let calls = space("call sites");
    let plane = &calls.planes[0];
    let name_at = |line: usize, event: usize| {
        let id = plane.lines[line].events[event].metadata_id;
        plane.event_metadata[&id].name.as_str()
    };
    assert_eq!(name_at(0, 2), "load_3:Load", "the later line");
    assert_eq!(name_at(0, 3), "load_2:Load", "the earlier line");
    assert_eq!(
        name_at(1, 1),
        "load_2:Load",
        "the same call site on another thread"
    );
    assert_eq!(name_at(0, 9), "load:Load", "the same name elsewhere");
    // An event that ends with the event it lies in ends 1 ps before it.
    let duration_at = |line: usize, event: usize| plane.lines[line].events[event].duration_ps;
    assert_eq!((duration_at(0, 1), duration_at(0, 4)), (30_000, 9_999));
}

/// A decoded profile may hold what this crate never writes: several host planes, line
/// display names and base times, aggregated events, unknown metadata ids, negative
/// durations, and byte, ref and missing values. The Chrome trace and the report read it
/// by the same rules.
#[test]
fn decoded_profiles_read_by_the_same_rules() {
    use crate::proto::xplane::x_stat::Value as V;

    let (_, snapshot) = fixtures().swap_remove(2);
    let mut space = build(&snapshot, "h");
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
    line.events[0].data = Some(x_event::Data::NumOccurrences(3));
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

    let (json, report) = readings(&space);
    model::check_chrome(&json, &space);
    assert_eq!(report, model::expected_report(&space));

    // A few of the rules, spelled out.
    let doc: Json = serde_json::from_str(&json).unwrap();
    let events = match &doc {
        Json::Object(top) => match &top[1].1 {
            Json::Array(events) => events.clone(),
            _ => unreachable!(),
        },
        _ => unreachable!(),
    };
    let field = |event: &Json, key: &str| -> Json {
        let Json::Object(fields) = event else {
            unreachable!()
        };
        fields.iter().find(|(k, _)| k == key).unwrap().1.clone()
    };
    let shown = |json: Json| format!("{json:?}");
    let second_plane: Vec<&Json> = events
        .iter()
        .filter(|e| shown(field(e, "pid")) == "Int(2)")
        .collect();
    assert_eq!(
        shown(field(second_plane[0], "args")),
        r#"Object([("name", Str("h /host:CPU"))])"#
    );
    assert_eq!(
        shown(field(second_plane[1], "args")),
        r#"Object([("name", Str("shown \"name\""))])"#,
        "the display name"
    );
    let first = second_plane[3];
    assert_eq!(
        shown(field(first, "ts")),
        "Float(0.005)",
        "base time, no offset"
    );
    let unknown = second_plane[4];
    assert_eq!(shown(field(unknown, "name")), r#"Str("")"#);
    assert_eq!(shown(field(unknown, "dur")), "Float(0.0)");
    assert_eq!(
        shown(field(second_plane[5], "args")),
        r#"Object([("step_num", Str("<3 bytes>")), ("step_num", Str("interned")), ("step_num", Str("")), ("step_num", Str("inf")), ("", Str(""))])"#
    );
    assert_eq!(report.threads, 2 * space.planes[0].lines.len());
}

#[test]
fn interner_numbers_texts_not_addresses() {
    let mut interner = Interner::new();
    let op = leaked("op");
    assert_eq!(interner.id("op"), 1);
    assert_eq!(interner.id("train"), 2);
    assert_eq!(interner.id(op), 1);
    assert_eq!(interner.id("op"), 1);
    assert_eq!(interner.id(leaked("train/self")), 3);
    assert_eq!(interner.id("train/self"), 3);
    assert_eq!(interner.id(&op[..1]), 4);
    assert_eq!(interner.name(3), "train/self");
    assert_eq!(interner.name(4), "o");
    // Many names, more than the address table holds: ids stay right after evictions.
    let many: Vec<&'static str> = (0..2000).map(|i| leaked(&format!("n{i}"))).collect();
    for round in 0..2 {
        for (i, name) in many.iter().enumerate() {
            assert_eq!(interner.id(name), i as i64 + 5, "round {round}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Random recordings

/// Event names, a few of them also at a second address, and some that differ only in what
/// an op name cannot hold.
fn name() -> impl Strategy<Value = &'static str> {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| {
        let texts = [
            "a",
            "b",
            "Train",
            "x",
            "x/self",
            "",
            "名前 \"q\" \\ \n 🦀",
            "load",
            "load:Load",
            "a b",
            "IDLE",
        ];
        texts
            .iter()
            .copied()
            .chain(["a", "Train", "x/self"].map(leaked))
            .collect()
    });
    prop::sample::select(names.clone())
}

/// Where an event comes from: a name (events recorded without a call site) or a call site.
#[derive(Clone, Copy, Debug)]
enum Origin {
    Named(&'static str),
    Site(&'static Callsite),
}

/// Usually a name; else one of a few call sites, which share names with each other and
/// with named events.
fn origin() -> impl Strategy<Value = Origin> {
    let sites: Vec<&'static Callsite> = vec![&LOAD_EARLY, &LOAD_LATE, &FORWARD, &TRAIN];
    prop_oneof![
        3 => name().prop_map(Origin::Named),
        1 => prop::sample::select(sites).prop_map(Origin::Site),
    ]
}

/// An event from `origin`.
fn recorded(origin: Origin, start: u64, end: u64) -> Event {
    match origin {
        Origin::Named(name) => event(name, start, end),
        Origin::Site(site) => at(site, start, end),
    }
}

/// Metadata values of every kind, with the values at the edges.
fn value() -> impl Strategy<Value = Value<'static>> {
    let edges = [0, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX];
    let floats = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1e300, 2.5];
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        (-2i64..4).prop_map(Value::Int),
        any::<u64>().prop_map(Value::UInt),
        prop::sample::select(edges.to_vec()).prop_map(Value::UInt),
        any::<f64>().prop_map(Value::Float),
        prop::sample::select(floats.to_vec()).prop_map(Value::Float),
        any::<bool>().prop_map(Value::Bool),
        "(.|\n){0,6}".prop_map(|s| Value::Str(Cow::Owned(s))),
    ]
}

/// Metadata, usually none; keys include those the exporter writes itself.
fn metadata() -> impl Strategy<Value = Metadata> {
    let key = prop::sample::select(vec!["k", "step_num", "_r", "_c", SYNTHETIC_STAT, "", "名"]);
    prop_oneof![
        3 => Just(Vec::new()),
        1 => prop::collection::vec((key, value()), 1..4),
    ]
}

/// A step number, or another value under that key, or none.
fn step_value() -> impl Strategy<Value = Option<Value<'static>>> {
    prop_oneof![
        2 => Just(None),
        2 => (0i64..4).prop_map(|n| Some(Value::Int(n))),
        1 => (0u64..4).prop_map(|n| Some(Value::UInt(n))),
        1 => prop::sample::select(vec![
            Value::UInt(u64::MAX),
            Value::Float(2.0),
            Value::Str(Cow::Borrowed("3")),
            Value::Bool(true),
        ])
        .prop_map(Some),
    ]
}

/// A scope and the scopes inside it.
#[derive(Clone, Debug)]
struct Scope {
    /// Time since the end of the previous sibling (or the parent's start).
    gap: u64,
    /// Its length, at least; it lasts until its last child ends.
    len: u64,
    /// Its name, or its call site.
    origin: Origin,
    step: Option<Value<'static>>,
    metadata: Metadata,
    children: Vec<Scope>,
}

fn scope() -> impl Strategy<Value = Scope> {
    let own = || (0u64..20, 0u64..40, origin(), step_value(), metadata());
    let leaf = own().prop_map(|(gap, len, origin, step, metadata)| Scope {
        gap,
        len,
        origin,
        step,
        metadata,
        children: Vec::new(),
    });
    leaf.prop_recursive(3, 24, 4, move |inner| {
        (own(), prop::collection::vec(inner, 0..4)).prop_map(
            |((gap, len, origin, step, metadata), children)| Scope {
                gap,
                len,
                origin,
                step,
                metadata,
                children,
            },
        )
    })
}

/// Records `scope` starting at `start`, as a thread's synchronous scopes nest; returns its
/// end.
fn record(scope: &Scope, start: u64, events: &mut Vec<Event>) -> u64 {
    let at = events.len();
    let mut metadata = scope.metadata.clone();
    metadata.extend(scope.step.clone().map(|step| ("step_num", step)));
    events.push(described(recorded(scope.origin, start, start), metadata));
    let mut end = start;
    for child in &scope.children {
        end = record(child, end + child.gap, events);
    }
    events[at].end_ns = end.max(start + scope.len);
    events[at].end_ns
}

/// An event's metadata.
type Metadata = Vec<(&'static str, Value<'static>)>;

/// Free-standing events: `(start, len, origin, metadata)`.
fn loose() -> impl Strategy<Value = Vec<(u64, u64, Origin, Metadata)>> {
    prop::collection::vec((0u64..400, 0u64..150, origin(), metadata()), 0..6)
}

/// Random threads: nested scopes (training loops with step markers among them), scopes
/// that overlap partially (guards held across an `.await`), async events, and now and then
/// an event far in the future and dropped events.
fn arbitrary_snapshot() -> impl Strategy<Value = Snapshot> {
    let thread = (
        prop::sample::select(vec![1u64, 2, 7, 100_000, 123_456, 200_007]),
        prop::collection::vec(scope(), 0..5),
        prop_oneof![3 => Just(Vec::new()), 1 => loose()],
        prop_oneof![3 => Just(Vec::new()), 1 => loose()],
        prop::bool::weighted(0.1),
        prop_oneof![4 => Just(0u64), 1 => 1u64..1000],
    );
    let base = prop::sample::select(vec!["main", "loader", "thread \"q\"\n\u{0}", "", "名前 🦀"]);
    let threads = prop::collection::vec((thread, base), 0..4);
    let duration = prop::sample::select(vec![1_000_000_000u64, u64::MAX]);
    (threads, duration).prop_map(|(threads, duration_ns)| {
        let mut ids = Vec::new();
        let threads = threads
            .into_iter()
            .filter(|((id, ..), _)| {
                let new = !ids.contains(id);
                ids.push(*id);
                new
            })
            .enumerate()
            .map(
                |(i, ((id, scopes, overlapping, async_events, far, dropped), base))| {
                    let mut events = Vec::new();
                    let mut end = 0;
                    for scope in &scopes {
                        end = record(scope, end + scope.gap, &mut events);
                    }
                    for (start, len, origin, metadata) in overlapping {
                        events.push(described(recorded(origin, start, start + len), metadata));
                    }
                    for (start, len, origin, metadata) in async_events {
                        let event = recorded(origin, start, start + len).asynchronous();
                        events.push(described(event, metadata));
                    }
                    if far {
                        events.push(event("far", u64::MAX / 2, u64::MAX / 2 + 10));
                    }
                    Thread {
                        id,
                        name: leaked(&format!("{base}#{i}")),
                        events,
                        dropped,
                    }
                },
            )
            .collect();
        let mut snapshot = snapshot(threads);
        snapshot.duration_ns = duration_ns;
        snapshot.stop_wall_ns = snapshot.start_wall_ns.saturating_add(duration_ns);
        snapshot
    })
}

// ---------------------------------------------------------------------------------------------
// Random decoded profiles

/// Profiles as a file may hold them: any planes, lines, offsets, durations and stats,
/// unknown metadata ids included.
fn arbitrary_space() -> impl Strategy<Value = XSpace> {
    use crate::proto::xplane::x_stat::Value as V;
    let value = prop_oneof![
        any::<i64>().prop_map(V::Int64Value),
        any::<u64>().prop_map(V::Uint64Value),
        any::<f64>().prop_map(V::DoubleValue),
        prop::sample::select(vec![f64::NAN, f64::NEG_INFINITY, 0.1]).prop_map(V::DoubleValue),
        "(.|\n){0,4}".prop_map(V::StrValue),
        prop::collection::vec(any::<u8>(), 0..4).prop_map(V::BytesValue),
        (0u64..6).prop_map(V::RefValue),
    ];
    let stat = (0i64..6, prop::option::of(value))
        .prop_map(|(metadata_id, value)| XStat { metadata_id, value });
    let data = prop_oneof![
        (-2_000i64..500_000).prop_map(x_event::Data::OffsetPs),
        (0i64..4).prop_map(x_event::Data::NumOccurrences),
        Just(x_event::Data::OffsetPs(i64::MAX)),
    ];
    let event = (
        0i64..5,
        prop::option::of(data),
        prop_oneof![4 => -100i64..300_000, 1 => Just(i64::MAX)],
        prop::collection::vec(stat, 0..4),
    )
        .prop_map(|(metadata_id, data, duration_ps, stats)| XEvent {
            metadata_id,
            data,
            duration_ps,
            stats,
        });
    let line = (
        (0i64..3, 0i64..3),
        ("(.|\n){0,3}", "(.|\n){0,3}"),
        prop_oneof![0i64..5, Just(i64::MAX), Just(-3i64)],
        prop::collection::vec(event, 0..8),
    )
        .prop_map(
            |((id, display_id), (name, display_name), timestamp_ns, events)| XLine {
                id,
                display_id,
                name,
                display_name,
                timestamp_ns,
                events,
                ..Default::default()
            },
        );
    let names = || {
        prop::collection::vec(
            prop::sample::select(vec!["a", "b", "_r", "step_num", SYNTHETIC_STAT, ""]),
            0..5,
        )
    };
    // Event metadata with a display name or none, as other writers leave it.
    let display_names = prop::collection::vec(
        prop::sample::select(vec!["", "", "a", "shown \"a\"\n🦀"]),
        5,
    );
    let plane = (
        prop::sample::select(vec![HOST_PLANE, "/device:GPU:0"]),
        prop::collection::vec(line, 0..3),
        (names(), display_names),
        names(),
    )
        .prop_map(
            |(name, lines, (event_names, display_names), stat_names)| XPlane {
                name: name.into(),
                lines,
                event_metadata: (1..)
                    .zip(event_names.into_iter().zip(display_names))
                    .map(|(id, (name, display_name))| {
                        (
                            id,
                            XEventMetadata {
                                id,
                                name: name.into(),
                                display_name: display_name.into(),
                                ..Default::default()
                            },
                        )
                    })
                    .collect(),
                stat_metadata: (1..)
                    .zip(stat_names)
                    .map(|(id, name)| {
                        let name = name.into();
                        (
                            id,
                            XStatMetadata {
                                id,
                                name,
                                description: String::new(),
                            },
                        )
                    })
                    .collect(),
                ..Default::default()
            },
        );
    (
        prop::collection::vec(plane, 1..3),
        prop::collection::vec("(.|\n){0,4}", 0..2),
        prop::collection::vec("(.|\n){0,4}", 0..2),
    )
        .prop_map(|(planes, hostnames, warnings)| XSpace {
            planes,
            hostnames,
            warnings,
            ..Default::default()
        })
}

proptest! {
    #[test]
    fn random_recordings_write_what_was_recorded(snapshot in arbitrary_snapshot()) {
        check("random", &snapshot, "host");
    }

    #[test]
    fn random_files_read_by_the_same_rules(space in arbitrary_space()) {
        let (json, report) = readings(&space);
        model::check_chrome(&json, &space);
        prop_assert_eq!(report, model::expected_report(&space));
    }
}
