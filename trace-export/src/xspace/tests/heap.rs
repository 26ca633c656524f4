//! The memory profile's events in the written profile: where they go, what they carry, and
//! how the Chrome trace and the report read them back.

use trace_runtime::snapshot::{HeapEvent, ThreadRecord};

use super::*;
use crate::proto::xplane::x_stat;

/// Stats of an event by name, integers and strings as text.
fn stats_of(plane: &XPlane, event: &XEvent) -> HashMap<String, String> {
    event
        .stats
        .iter()
        .map(|stat| {
            let name = plane.stat_metadata[&stat.metadata_id].name.clone();
            let value = match &stat.value {
                Some(x_stat::Value::Int64Value(v)) => v.to_string(),
                Some(x_stat::Value::StrValue(s)) => s.clone(),
                other => panic!("{name}: not an int64 or a string: {other:?}"),
            };
            (name, value)
        })
        .collect()
}

fn steps_and_heap() -> Snapshot {
    // Two steps on `main`; a loader thread that allocates in step 1 and frees in step 2,
    // and a block freed at the very time a step begins.
    let main = ThreadRecord::new(
        1,
        "main",
        vec![
            step("Train", 0, 1_000, 2_000),
            event("forward", 1_100, 1_500),
            step("Train", 1, 3_000, 4_000),
            event("forward", 3_100, 3_500),
        ],
        0,
    )
    .with_heap(vec![
        HeapEvent::allocation(1_200, 0x10, 4096),
        HeapEvent::deallocation(3_000, 0x10, 4096),
        HeapEvent::allocation(3_000, 0x20, 8192),
    ]);
    let loader =
        ThreadRecord::new(2, "loader", vec![event("load", 1_700, 1_900)], 0).with_heap(vec![
            HeapEvent::allocation(1_800, 0x30, 1024),
            HeapEvent::deallocation(3_200, 0x30, 1024),
            // A block from before the session: left out.
            HeapEvent::deallocation(3_300, 0x99, 64),
        ]);
    Snapshot::new(
        1_700_000_000_000_000_000,
        10_000,
        ClockKind::Monotonic,
        2,
        Recording::Events(vec![main, loader]),
    )
}

#[test]
fn heap_events_go_on_a_derived_line_in_order_with_int64_stats() {
    let snapshot = steps_and_heap();
    let space = build(&snapshot, "host");
    let plane = space.planes.iter().find(|p| p.name == HOST_PLANE).unwrap();
    let name = |e: &XEvent| plane.event_metadata[&e.metadata_id].name.clone();
    for line in &plane.lines {
        let order: Vec<(i64, i64)> = line
            .events
            .iter()
            .map(|e| match e.data {
                Some(x_event::Data::OffsetPs(offset)) => (offset, -e.duration_ps),
                _ => panic!("an event without an offset"),
            })
            .collect();
        assert!(order.is_sorted(), "line {} is not in order", line.name);
    }
    let heap: Vec<(String, &str, HashMap<String, String>)> = plane
        .lines
        .iter()
        .flat_map(|line| {
            line.events
                .iter()
                .filter(|e| name(e).starts_with("Memory"))
                .map(move |e| (name(e), line.name.as_str(), stats_of(plane, e)))
        })
        .collect();
    /// Name, line, heap in use, peak, scope, step link.
    type Row<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
    );
    let summary: Vec<Row<'_>> = heap
        .iter()
        .map(|(name, line, stats)| {
            assert_eq!(stats["allocator_name"], "heap");
            assert_eq!(stats["requested_bytes"], stats["allocation_bytes"]);
            (
                name.as_str(),
                *line,
                stats["bytes_allocated"].as_str(),
                stats["peak_bytes_in_use"].as_str(),
                stats.get("tf_op").map(String::as_str),
                stats.get("_c").map(String::as_str),
            )
        })
        .collect();
    // All threads' on one line, in time order, each linked to the step it happened in.
    #[rustfmt::skip]
    let expected: [Row<'_>; 5] = [
        ("MemoryAllocation", "heap", "4096", "4096", Some("forward"), Some("1")),
        ("MemoryAllocation", "heap", "5120", "5120", Some("load"), Some("1")),
        ("MemoryDeallocation", "heap", "1024", "5120", Some("Train"), Some("2")),
        ("MemoryAllocation", "heap", "9216", "9216", Some("Train"), Some("2")),
        ("MemoryDeallocation", "heap", "8192", "9216", None, Some("2")),
    ];
    assert_eq!(summary, expected);
    let addr = &heap[0].2["addr"];
    assert_eq!(addr, &0x10.to_string());
    // The heap line has an id xprof's op statistics skip (one of its derived lines').
    let line = plane.lines.iter().find(|l| l.name == "heap").unwrap();
    assert_eq!(line.id as i32 as u32, 0xdeadbeef + 289);
    // The trace viewer's counter track: heap in use over all threads, in time order.
    let counters = plane.lines.iter().find(|l| l.name == "_counters_").unwrap();
    let track: Vec<(String, String)> = counters
        .events
        .iter()
        .map(|e| (name(e), stats_of(plane, e)["bytes"].clone()))
        .collect();
    let expected = ["4096", "5120", "1024", "9216", "8192"];
    assert_eq!(
        track,
        expected.map(|b| ("heap in use".to_owned(), b.to_owned()))
    );
}

#[test]
fn chrome_trace_and_report_read_the_heap_alike_from_plan_and_file() {
    let snapshot = steps_and_heap();
    let layout = Layout::new(&snapshot, "host");
    let space = build(&snapshot, "host");
    let (planned_json, planned) = readings(&layout);
    let (decoded_json, decoded) = readings(&space);
    assert_eq!(planned_json, decoded_json);
    assert_eq!(planned, decoded);
    // The heap is a counter track, not instants.
    let trace: serde_json::Value = serde_json::from_str(&planned_json).unwrap();
    let counters: Vec<i64> = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "C")
        .map(|e| e["args"]["bytes"].as_i64().unwrap())
        .collect();
    assert_eq!(counters.len(), 5);
    assert!(!planned_json.contains("MemoryAllocation"));
    // The report: peak, counts, and who allocated; heap events are not call sites.
    let heap = &planned.heap;
    assert_eq!(
        (heap.allocations, heap.frees, heap.peak_bytes),
        (3, 2, 9216)
    );
    let scopes: Vec<(&str, u64, u64)> = heap
        .by_scope
        .iter()
        .map(|s| (s.name.as_str(), s.allocations, s.bytes))
        .collect();
    assert_eq!(
        scopes,
        [("Train", 1, 8192), ("forward", 1, 4096), ("load", 1, 1024)]
    );
    assert!(planned.sites.iter().all(|s| !s.name.starts_with("Memory")));
    assert_eq!(planned.events, 5);
}
