//! Readers of untrusted files: `xspace::decode` and everything `trace-export report` and
//! `convert` build on it (the text report, the Chrome trace writer), the TFRecord reader of
//! event files. (The `trace-export` tool itself is tested in `trace-cli/tests/tool.rs`.)
//!
//! Garbage, truncated and bit-flipped input must give an error or a valid value: never a
//! panic, and never an allocation out of proportion to the input. A counting global allocator
//! measures the second promise. The writers are checked the other way round: what they write
//! reads back the same.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::sync::OnceLock;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::Index;
use prost::Message;
use trace_export::proto::tensorboard::{event, summary, Event};
use trace_export::proto::xplane::{
    x_event, x_stat, XEvent, XEventMetadata, XLine, XPlane, XSpace, XStat, XStatMetadata,
};
use trace_export::report::Report;
use trace_export::tfrecord::{read_records, RecordError};
use trace_export::{chrome, summary as tf_summary, xspace};
use trace_runtime::clock::ClockKind;
use trace_runtime::snapshot::{Event as Scope, Recording, Snapshot, ThreadRecord};
use trace_runtime::Value;

// ---------------------------------------------------------------------------------------------
// Counting what the readers allocate

/// The system allocator, counting the bytes each thread holds and the most it held.
struct CountingAllocator;

thread_local! {
    /// Bytes allocated by this thread and not yet freed by it.
    static LIVE: Cell<usize> = const { Cell::new(0) };
    /// The most `LIVE` reached since the last [`peak_allocation`] began.
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(bytes: usize) {
    // `try_with`: the allocator also runs while thread-locals are torn down. The cells have
    // const initializers and no destructor, so touching them never allocates.
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(bytes);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn note_free(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the `GlobalAlloc`
// contract; the bookkeeping around it touches only plain thread-local integers.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees about `layout`.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            note_alloc(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            note_alloc(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees about `ptr`, `layout` and `new_size`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // Counted as the new block first, then the old one freed: the worst case, a copy.
            note_alloc(new_size);
            note_free(layout.size());
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` and returns its result and the most bytes this thread held at once meanwhile,
/// beyond what it held before.
fn peak_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    let result = f();
    let peak = PEAK.with(Cell::get);
    (result, peak - base)
}

/// What reading `len` bytes of a profile may allocate at most: a constant (the Chrome writer's
/// 64 KiB buffer and small tables) plus a fixed multiple of the input. Each decoded message
/// costs at most a couple of hundred bytes of structs for the 2 bytes (tag and length) that
/// the smallest encoding of it takes, and a growing `Vec` briefly holds its old and new
/// blocks; the factor leaves room for that. A reader that trusted a length field would
/// exceed it by orders of magnitude.
fn allocation_bound(len: usize) -> usize {
    (1 << 18) + 512 * len
}

/// Does with `bytes` what `trace-export report` and `convert` do with a file's contents, and
/// checks that it neither panics (a panic fails the test) nor allocates beyond
/// [`allocation_bound`]. Returns the decoding error, if any.
fn read_like_the_tool(bytes: &[u8]) -> Result<(), String> {
    let (result, peak) = peak_allocation(|| {
        let space = xspace::decode(bytes)?;
        let report = Report::from_xspace(&space);
        let text = report.to_string();
        assert!(text.contains("events on"), "{text}");
        chrome::write_json(&space, std::io::sink()).map_err(|e| e.to_string())?;
        Ok(())
    });
    assert!(
        peak <= allocation_bound(bytes.len()),
        "reading {} bytes allocated {peak} bytes at once",
        bytes.len()
    );
    result
}

// ---------------------------------------------------------------------------------------------
// Valid files to damage

/// A recording as the runtime would hand it over: two threads, four steps, nested scopes,
/// metadata of every type, and a few dropped events.
fn sample_snapshot() -> Snapshot {
    let scope = |name, start_ns, end_ns, metadata: Vec<(&'static str, Value<'static>)>| {
        metadata
            .into_iter()
            .fold(Scope::new(name, start_ns, end_ns), |scope, (key, value)| {
                scope.with(key, value)
            })
    };
    let mut main = Vec::new();
    let mut loader = Vec::new();
    for step in 0..4u64 {
        let t = step * 1_000;
        main.push(scope(
            "Train",
            t,
            t + 900,
            vec![("step_num", Value::Int(step as i64))],
        ));
        main.push(scope(
            "forward",
            t + 100,
            t + 500,
            vec![
                ("rows", Value::UInt(4)),
                ("name", Value::Str("quote\" new\nline 😀".into())),
            ],
        ));
        main.push(scope(
            "loss",
            t + 600,
            t + 800,
            vec![
                ("loss", Value::Float(0.25)),
                ("in_cache", Value::Bool(true)),
            ],
        ));
        loader.push(scope(
            "load",
            t + 10,
            t + 90,
            vec![("batch", Value::Int(-1))],
        ));
    }
    Snapshot::new(
        1_700_000_000_000_000_000,
        4_000,
        ClockKind::Monotonic,
        2,
        Recording::Events(vec![
            ThreadRecord::new(1, "main", main, 0),
            ThreadRecord::new(2, "loader", loader, 3),
        ]),
    )
}

/// The `.xplane.pb` bytes of [`sample_snapshot`].
fn valid_xplane() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| xspace::build(&sample_snapshot(), "testhost").encode_to_vec())
}

/// A fresh, empty directory for one test.
fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "trace-export-untrusted-{label}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The bytes of an event file the summary writer wrote: the version record and scalars with
/// hostile tags and extreme values.
fn valid_event_file() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = scratch("event-file");
        let writer = tf_summary::create_file_writer(&dir).unwrap();
        writer.scalar("loss", 0.25, 0).unwrap();
        writer
            .scalar("tag \"quoted\"\nnew line 😀", f64::NAN, i64::MIN)
            .unwrap();
        writer.scalar("loss", f64::INFINITY, i64::MAX).unwrap();
        writer.close().unwrap();
        let bytes = std::fs::read(writer.path()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        bytes
    })
}

/// Byte offsets at which the records of a TFRecord stream end (0 included).
fn record_boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut boundaries = vec![0];
    for record in read_records(bytes).unwrap() {
        boundaries.push(boundaries.last().unwrap() + 12 + record.len() + 4);
    }
    boundaries
}

// ---------------------------------------------------------------------------------------------
// xplane.pb: deterministic cases

#[test]
fn the_valid_profile_reads() {
    read_like_the_tool(valid_xplane()).unwrap();
    let space = xspace::decode(valid_xplane()).unwrap();
    let report = Report::from_xspace(&space);
    assert_eq!(report.steps.len(), 4);
    assert_eq!(report.events, 16);
}

#[test]
fn empty_and_garbage_profiles_are_errors() {
    assert_eq!(read_like_the_tool(b""), Err("the file is empty".into()));
    for garbage in [
        &b"this is not a profile\n"[..],
        &[0xff; 64][..],
        &[0; 64][..],
        // The first bytes of an event file: a TFRecord length, not a protobuf tag.
        &valid_event_file()[..32],
    ] {
        let err = read_like_the_tool(garbage).unwrap_err();
        assert!(err.starts_with("not an XSpace profile"), "{err}");
    }
}

#[test]
fn huge_length_prefixes_are_rejected_without_allocating() {
    // `planes` (field 1) and, inside a plane, `lines` (field 3) and a name (field 2), each
    // claiming far more bytes than the input holds.
    let mut inputs = Vec::new();
    for claimed in [u64::MAX, 1 << 62, 1 << 40, u32::MAX as u64, 1 << 20] {
        let mut varint = Vec::new();
        prost::encoding::encode_varint(claimed, &mut varint);
        let mut top = vec![0x0a];
        top.extend_from_slice(&varint);
        top.extend_from_slice(&[0; 16]);
        inputs.push(top);
        for inner_tag in [0x1a, 0x12] {
            let mut inner = vec![inner_tag];
            inner.extend_from_slice(&varint);
            inner.extend_from_slice(&[0; 8]);
            let mut outer = vec![0x0a, inner.len() as u8];
            outer.extend_from_slice(&inner);
            inputs.push(outer);
        }
    }
    for input in inputs {
        let err = read_like_the_tool(&input).unwrap_err();
        assert!(err.starts_with("not an XSpace profile"), "{input:?}: {err}");
    }
}

/// A length-delimited field `tag` holding `body`.
fn field(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![tag];
    prost::encoding::encode_varint(body.len() as u64, &mut bytes);
    bytes.extend_from_slice(body);
    bytes
}

#[test]
fn floods_of_empty_messages_allocate_in_proportion() {
    // The most a reader allocates per input byte: 20 000 empty planes, lines or events, two
    // bytes each, every one of which becomes a struct (about 160, 130 and 70 bytes per input
    // byte were measured at the time of writing, against the bound's 512).
    let empties = |tag: u8| -> Vec<u8> { [tag, 0].repeat(20_000) };
    let host_plane = |body: &[u8]| {
        field(
            0x0a,
            &[&field(0x12, xspace::HOST_PLANE.as_bytes())[..], body].concat(),
        )
    };
    let planes = empties(0x0a);
    let lines = host_plane(&empties(0x1a));
    let events = host_plane(&field(0x1a, &empties(0x22)));
    for input in [planes, lines, events] {
        read_like_the_tool(&input).unwrap();
    }
}

#[test]
fn every_cut_inside_the_host_plane_is_an_error() {
    // The host plane is the first field and holds nearly the whole file; a cut anywhere in
    // it leaves a length prefix that runs past the end. (A cut exactly between two top-level
    // fields leaves a shorter valid message: protobuf has no end marker.)
    let bytes = valid_xplane();
    let mut host_plane_end = 1;
    let len = prost::encoding::decode_varint(&mut &bytes[1..]).unwrap() as usize;
    host_plane_end += prost::encoding::encoded_len_varint(len as u64) + len;
    for cut in 1..host_plane_end {
        assert!(read_like_the_tool(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}

// ---------------------------------------------------------------------------------------------
// xplane.pb: properties

/// Integers that reach the edges more often than uniform sampling would.
fn hostile_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0),
        -2_000i64..2_000,
        any::<i64>()
    ]
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("/host:CPU".to_owned()),
        Just("step_num".to_owned()),
        Just("_r".to_owned()),
        Just(xspace::SYNTHETIC_STAT.to_owned()),
        ".{0,12}",
    ]
}

fn arbitrary_stat() -> impl Strategy<Value = XStat> {
    let value = prop_oneof![
        Just(None),
        hostile_i64().prop_map(|v| Some(x_stat::Value::Int64Value(v))),
        any::<u64>().prop_map(|v| Some(x_stat::Value::Uint64Value(v))),
        any::<f64>().prop_map(|v| Some(x_stat::Value::DoubleValue(v))),
        hostile_string().prop_map(|v| Some(x_stat::Value::StrValue(v))),
        vec(any::<u8>(), 0..8).prop_map(|v| Some(x_stat::Value::BytesValue(v))),
        any::<u64>().prop_map(|v| Some(x_stat::Value::RefValue(v % 8))),
    ];
    (prop_oneof![0i64..8, hostile_i64()], value)
        .prop_map(|(metadata_id, value)| XStat { metadata_id, value })
}

fn arbitrary_event() -> impl Strategy<Value = XEvent> {
    let data = prop_oneof![
        Just(None),
        hostile_i64().prop_map(|ps| Some(x_event::Data::OffsetPs(ps))),
        hostile_i64().prop_map(|n| Some(x_event::Data::NumOccurrences(n))),
    ];
    (
        prop_oneof![0i64..8, hostile_i64()],
        data,
        hostile_i64(),
        vec(arbitrary_stat(), 0..4),
    )
        .prop_map(|(metadata_id, data, duration_ps, stats)| XEvent {
            metadata_id,
            data,
            duration_ps,
            stats,
        })
}

fn arbitrary_plane() -> impl Strategy<Value = XPlane> {
    let line = (
        hostile_i64(),
        hostile_string(),
        hostile_i64(),
        hostile_i64(),
        vec(arbitrary_event(), 0..12),
    )
        .prop_map(|(id, name, timestamp_ns, duration_ps, events)| XLine {
            id,
            display_id: id,
            name,
            timestamp_ns,
            duration_ps,
            events,
            ..Default::default()
        });
    (
        prop_oneof![Just(xspace::HOST_PLANE.to_owned()), hostile_string()],
        vec(line, 0..4),
        btree_map(0i64..8, hostile_string(), 0..6),
        btree_map(0i64..8, hostile_string(), 0..6),
    )
        .prop_map(|(name, lines, event_names, stat_names)| XPlane {
            name,
            lines,
            event_metadata: event_names
                .into_iter()
                .map(|(id, name)| {
                    let metadata = XEventMetadata {
                        id,
                        name,
                        ..Default::default()
                    };
                    (id, metadata)
                })
                .collect(),
            stat_metadata: stat_names
                .into_iter()
                .map(|(id, name)| {
                    let metadata = XStatMetadata {
                        id,
                        name,
                        ..Default::default()
                    };
                    (id, metadata)
                })
                .collect(),
            ..Default::default()
        })
}

/// `cases` cases, and no regression files: proptest cannot place them for integration
/// tests, and a failure prints its minimal input anyway.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    // Each case takes well under a millisecond: 256 cases keep every property to a fraction
    // of a second.
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..1024)) {
        let _ = read_like_the_tool(&bytes);
    }

    #[test]
    fn truncated_profiles_never_panic(cut in any::<Index>()) {
        let bytes = valid_xplane();
        let _ = read_like_the_tool(&bytes[..cut.index(bytes.len())]);
    }

    #[test]
    fn bit_flipped_profiles_never_panic(bits in vec(any::<Index>(), 1..4)) {
        // Protobuf has no checksum: a flip may leave a valid (different) profile, which must
        // then read like any other.
        let mut bytes = valid_xplane().to_vec();
        for bit in bits {
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        let _ = read_like_the_tool(&bytes);
    }

    #[test]
    fn spliced_garbage_never_panics(
        at in any::<Index>(),
        removed in 0usize..64,
        garbage in vec(any::<u8>(), 0..64),
    ) {
        let bytes = valid_xplane();
        let at = at.index(bytes.len());
        let end = (at + removed).min(bytes.len());
        let spliced = [&bytes[..at], &garbage[..], &bytes[end..]].concat();
        let _ = read_like_the_tool(&spliced);
    }

    #[test]
    fn any_decodable_profile_reads_without_panic(planes in vec(arbitrary_plane(), 1..3)) {
        // Well-formed protobuf with hostile contents: extreme offsets and durations, dangling
        // metadata ids, step markers without steps, names that collide with reserved ones.
        let space = XSpace {
            planes,
            warnings: vec!["warning\nwith 😀".into()],
            ..Default::default()
        };
        prop_assert!(read_like_the_tool(&space.encode_to_vec()).is_ok());
    }
}

// ---------------------------------------------------------------------------------------------
// Event files: the TFRecord reader on a file the summary writer wrote

/// Reads an event file as TensorBoard would: every record's checksums, then each record as an
/// `Event`. Returns the events, or why the stream is damaged.
fn read_event_file(bytes: &[u8]) -> Result<Vec<Event>, RecordError> {
    let (records, peak) = peak_allocation(|| read_records(bytes));
    // Only the record list is allocated; the data stays borrowed from the input.
    assert!(
        peak <= 1024 + bytes.len(),
        "{peak} bytes for {}",
        bytes.len()
    );
    Ok(records?
        .into_iter()
        // A record with valid checksums can still be damaged protobuf; it must not panic.
        .filter_map(|record| Event::decode(record).ok())
        .collect())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn event_file_truncations_keep_whole_records_only(cut in any::<Index>()) {
        let bytes = valid_event_file();
        let cut = cut.index(bytes.len() + 1);
        let boundaries = record_boundaries(bytes);
        match read_event_file(&bytes[..cut]) {
            Ok(events) => {
                // Only a cut between two records reads, and then as the records before it.
                let whole = boundaries.iter().position(|&b| b == cut);
                prop_assert_eq!(Some(events.len()), whole);
            }
            Err(e) => {
                prop_assert!(!boundaries.contains(&cut));
                let is_truncated = matches!(e, RecordError::Truncated { .. });
                prop_assert!(is_truncated, "{}", e);
            }
        }
    }

    #[test]
    fn every_bit_flip_in_an_event_file_is_detected(bit in any::<Index>()) {
        let mut bytes = valid_event_file().to_vec();
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(read_event_file(&bytes).is_err());
    }

    #[test]
    fn arbitrary_bytes_after_valid_records_never_panic(garbage in vec(any::<u8>(), 0..256)) {
        let bytes = [valid_event_file(), &garbage[..]].concat();
        let _ = read_event_file(&bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// Writers: what is written reads back the same

proptest! {
    // Each case creates and writes a file: a few milliseconds.
    #![proptest_config(config(32))]

    #[test]
    fn scalars_round_trip_through_an_event_file(
        scalars in vec((".{1,16}", any::<f64>(), hostile_i64()), 0..16),
    ) {
        let dir = scratch("scalars-round-trip");
        let writer = tf_summary::create_file_writer(&dir).unwrap();
        for (tag, value, step) in &scalars {
            writer.scalar(tag, *value, *step).unwrap();
        }
        writer.flush().unwrap();
        let bytes = std::fs::read(writer.path()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let events = read_event_file(&bytes).unwrap();
        prop_assert_eq!(events.len(), scalars.len() + 1);
        prop_assert_eq!(
            &events[0].what,
            &Some(event::What::FileVersion("brain.Event:2".into()))
        );
        for (event, (tag, value, step)) in events[1..].iter().zip(&scalars) {
            prop_assert_eq!(event.step, *step);
            let Some(event::What::Summary(summary)) = &event.what else {
                panic!("not a summary: {event:?}");
            };
            let written = &summary.value[0];
            prop_assert_eq!(&written.tag, tag);
            let Some(summary::value::Value::Tensor(tensor)) = &written.value else {
                panic!("not a tensor: {written:?}");
            };
            // TensorBoard reads scalars as f32: the value is rounded, NaN stays NaN.
            let expected = *value as f32;
            let read = tensor.float_val[0];
            prop_assert!(read.to_bits() == expected.to_bits() || (read.is_nan() && expected.is_nan()));
        }
    }
}
