//! What a written profile must say, checked from the outside: the `XSpace` decoded from the
//! bytes against the recording it came from, and the Chrome trace and text report against
//! that `XSpace`. Nothing here calls the code under test; each check states the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use trace_runtime::snapshot::{Event, Snapshot};
use trace_runtime::{Callsite, Value};

use crate::proto::xplane::{x_event, x_stat, XEvent, XPlane, XSpace, XStat};
use crate::report::{Report, SiteStats, StepTime};
use crate::xspace::{HOST_PLANE, SYNTHETIC_STAT, TASK_ENVIRONMENT_PLANE};

// ---------------------------------------------------------------------------------------------
// Reading a decoded plane

/// A plane's metadata names by id.
pub(super) struct Names<'a> {
    /// Each event metadata's `name` and `display_name`.
    events: BTreeMap<i64, (&'a str, &'a str)>,
    stats: BTreeMap<i64, &'a str>,
}

impl<'a> Names<'a> {
    pub(super) fn new(plane: &'a XPlane) -> Self {
        Names {
            events: (plane.event_metadata.iter())
                .map(|(&id, m)| (id, (m.name.as_str(), m.display_name.as_str())))
                .collect(),
            stats: (plane.stat_metadata.iter())
                .map(|(&id, m)| (id, m.name.as_str()))
                .collect(),
        }
    }

    /// An event's name, the one xprof reads; an unknown id names nothing.
    pub(super) fn event(&self, event: &XEvent) -> &'a str {
        self.events
            .get(&event.metadata_id)
            .map_or("", |names| names.0)
    }

    /// An event's display name, the name it was recorded with; an unknown id names nothing.
    fn display(&self, event: &XEvent) -> &'a str {
        self.events
            .get(&event.metadata_id)
            .map_or("", |names| names.1)
    }

    /// The name a reader shows for an event: its display name, else its name.
    fn shown(&self, event: &XEvent) -> &'a str {
        match self.display(event) {
            "" => self.event(event),
            display => display,
        }
    }

    /// A stat's name; an unknown id names nothing.
    pub(super) fn stat(&self, stat: &XStat) -> &'a str {
        self.stats.get(&stat.metadata_id).copied().unwrap_or("")
    }

    /// A stat's value as text: a `ref_value` is the name of the stat metadata it refers to.
    fn text(&self, stat: &XStat) -> String {
        match &stat.value {
            Some(x_stat::Value::Int64Value(v)) => v.to_string(),
            Some(x_stat::Value::Uint64Value(v)) => v.to_string(),
            Some(x_stat::Value::DoubleValue(v)) => v.to_string(),
            Some(x_stat::Value::StrValue(s)) => s.clone(),
            Some(x_stat::Value::BytesValue(b)) => format!("<{} bytes>", b.len()),
            Some(x_stat::Value::RefValue(id)) => self
                .stats
                .get(&(*id as i64))
                .copied()
                .unwrap_or("")
                .to_owned(),
            None => String::new(),
        }
    }
}

/// An event's start after its line's base time; an aggregated event has none (0).
pub(super) fn offset_ps(event: &XEvent) -> i64 {
    match event.data {
        Some(x_event::Data::OffsetPs(ps)) => ps,
        _ => 0,
    }
}

fn ns_to_ps(ns: u64) -> i64 {
    (ns as i64).saturating_mul(1000)
}

/// Picoseconds as nanoseconds, to the nearest (none below 0).
fn ps_to_ns(ps: i64) -> u64 {
    ((ps.max(0) as u128 + 500) / 1000) as u64
}

/// Values compared bit for bit, so that NaN equals itself.
fn same_value(a: &Option<x_stat::Value>, b: &Option<x_stat::Value>) -> bool {
    match (a, b) {
        (Some(x_stat::Value::DoubleValue(a)), Some(x_stat::Value::DoubleValue(b))) => {
            a.to_bits() == b.to_bits()
        }
        _ => a == b,
    }
}

/// How a recorded metadata value is stored: integers and bools as int64 (a `step_num`
/// too when it fits, as xprof reads it), other unsigned integers as uint64, floats as double.
fn stored(key: &str, value: &Value<'_>) -> x_stat::Value {
    match *value {
        Value::Int(v) => x_stat::Value::Int64Value(v),
        Value::UInt(v) if key == "step_num" && i64::try_from(v).is_ok() => {
            x_stat::Value::Int64Value(v as i64)
        }
        Value::UInt(v) => x_stat::Value::Uint64Value(v),
        Value::Float(v) => x_stat::Value::DoubleValue(v),
        Value::Bool(v) => x_stat::Value::Int64Value(v.into()),
        Value::Str(ref s) => x_stat::Value::StrValue(s.to_string()),
    }
}

/// The step number that makes an event a step marker: an integer that fits an int64.
fn step_num(event: &Event) -> Option<i64> {
    match *event.metadata("step_num")? {
        Value::Int(n) => Some(n),
        Value::UInt(n) => i64::try_from(n).ok(),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The recording, read back from the decoded XSpace

/// One event of a decoded line.
#[derive(Clone, Copy)]
enum Item<'a> {
    /// A recorded event (`index` in its thread), with its metadata id and the stats the
    /// exporter added after its own.
    Recorded {
        event: &'a Event,
        index: usize,
        metadata_id: i64,
        added: &'a [XStat],
    },
    /// An event the exporter made up for the own time of the step marker `of`.
    Synthetic { of: &'a Event, metadata_id: i64 },
}

/// A decoded line, matched with the recording.
struct Line<'a> {
    thread: usize,
    items: Vec<Item<'a>>,
}

impl<'a> Line<'a> {
    fn recorded(&self) -> impl Iterator<Item = (&'a Event, usize, &'a [XStat])> + '_ {
        self.items.iter().filter_map(|item| match *item {
            Item::Recorded {
                event,
                index,
                added,
                ..
            } => Some((event, index, added)),
            Item::Synthetic { .. } => None,
        })
    }
}

/// Checks that ids are the keys of their maps, numbered 1, 2, ... in order of first use
/// (events, then each event's stats, line by line), one per name, each used.
fn check_metadata_ids(plane: &XPlane) {
    for (&key, m) in &plane.event_metadata {
        assert_eq!(key, m.id, "event metadata keyed by its id");
        assert!(m.metadata.is_empty());
        assert!(m.stats.is_empty() && m.child_id.is_empty());
    }
    for (&key, m) in &plane.stat_metadata {
        assert_eq!(key, m.id, "stat metadata keyed by its id");
        assert!(m.description.is_empty());
    }
    let (mut events, mut stats) = (Vec::new(), Vec::new());
    for line in &plane.lines {
        for event in &line.events {
            if !events.contains(&event.metadata_id) {
                events.push(event.metadata_id);
            }
        }
    }
    let stat_lists = std::iter::once(&plane.stats).chain(
        plane
            .lines
            .iter()
            .flat_map(|l| l.events.iter().map(|e| &e.stats)),
    );
    for list in stat_lists {
        for stat in list {
            if !stats.contains(&stat.metadata_id) {
                stats.push(stat.metadata_id);
            }
        }
    }
    let dense = |n: usize| (1..=n as i64).collect::<Vec<_>>();
    assert_eq!(
        events,
        dense(plane.event_metadata.len()),
        "event ids by first use"
    );
    assert_eq!(
        stats,
        dense(plane.stat_metadata.len()),
        "stat ids by first use"
    );
    let distinct = |names: Vec<&str>| names.iter().collect::<BTreeSet<_>>().len() == names.len();
    assert!(distinct(
        plane.event_metadata.values().map(|m| &*m.name).collect()
    ));
    assert!(distinct(
        plane.stat_metadata.values().map(|m| &*m.name).collect()
    ));
}

/// Checks that `space` says what `snapshot` recorded: every event once, on a line of its
/// thread, with its name, times and metadata; lines that nest; the step markers, their
/// synthetic children and the links of other threads' work to the steps; the planes,
/// warnings and host name around them.
pub(super) fn check_read_back(snapshot: &Snapshot, host: &str, space: &XSpace) {
    // The planes around the events.
    assert_eq!(
        space.planes.len(),
        2,
        "a host plane and the environment plane"
    );
    let (plane, environment) = (&space.planes[0], &space.planes[1]);
    assert_eq!((plane.id, plane.name.as_str()), (1, HOST_PLANE));
    assert!(plane.stats.is_empty());
    assert_eq!(
        (environment.id, environment.name.as_str()),
        (2, TASK_ENVIRONMENT_PLANE)
    );
    assert!(environment.lines.is_empty() && environment.event_metadata.is_empty());
    check_metadata_ids(environment);
    let env_names = Names::new(environment);
    let times: Vec<(&str, Option<x_stat::Value>)> = (environment.stats.iter())
        .map(|s| (env_names.stat(s), s.value.clone()))
        .collect();
    assert_eq!(
        times,
        [
            (
                "profile_start_time",
                Some(x_stat::Value::Uint64Value(snapshot.start_wall_ns))
            ),
            (
                "profile_stop_time",
                Some(x_stat::Value::Uint64Value(snapshot.stop_wall_ns))
            ),
        ]
    );
    assert_eq!(space.hostnames, [host]);
    assert!(space.errors.is_empty());
    let dropped: Vec<_> = snapshot
        .threads()
        .iter()
        .filter(|t| t.dropped > 0)
        .collect();
    assert_eq!(
        space.warnings.len(),
        dropped.len(),
        "one warning per thread that dropped"
    );
    for (warning, thread) in space.warnings.iter().zip(dropped) {
        let says = format!(
            "{} events dropped on thread '{}' ({})",
            thread.dropped, thread.name, thread.thread_id
        );
        assert!(warning.starts_with(&says), "{warning:?}");
    }
    check_metadata_ids(plane);

    // Lines: each thread's, in thread order: synchronous events, then async ones.
    let names = Names::new(plane);
    let duration_ps = (snapshot.duration_ns as i64).saturating_mul(1000);
    let mut decoded = plane.lines.iter().peekable();
    let mut lines: Vec<Line<'_>> = Vec::new();
    for (t, thread) in snapshot.threads().iter().enumerate() {
        let own =
            |name: &str| name == thread.name || name.starts_with(&format!("{} (", thread.name));
        let mut mine = Vec::new();
        while let Some(line) = decoded.next_if(|l| own(&l.name)) {
            mine.push(line);
        }
        assert_eq!(
            mine.is_empty(),
            thread.events.is_empty(),
            "thread {:?}: a line when it has events",
            thread.name
        );
        let async_prefix = format!("{} (async ", thread.name);
        let sync = mine
            .iter()
            .take_while(|l| !l.name.starts_with(&async_prefix))
            .count();
        let base = (thread.thread_id % 100_000) as i64;
        for (k, line) in mine.iter().enumerate() {
            let (name, id) = match k {
                0 if sync > 0 => (thread.name.clone(), base),
                k if k < sync => (format!("{} (overlapping {k})", thread.name), base),
                k => (format!("{async_prefix}{})", k - sync + 1), base),
            };
            let slot = if k < sync { k } else { 1000 + k - sync };
            let id = id + slot as i64 * 100_000;
            assert_eq!((line.name.as_str(), line.id), (name.as_str(), id));
            assert_eq!(line.display_id, line.id);
            assert!(line.display_name.is_empty());
            assert_eq!((line.timestamp_ns, line.duration_ps), (0, duration_ps));
        }

        // Every decoded event is a recorded event of this thread, of the line's kind, in
        // the thread's order, or a marker's synthetic child; every recorded event is used
        // once.
        let mut used = vec![false; thread.events.len()];
        for (k, line) in mine.iter().enumerate() {
            let is_async = k >= sync;
            let mut items: Vec<Item<'_>> = Vec::new();
            let mut from = 0;
            // An event is written as long as it was recorded, less 1 ps for each event of
            // its line that it lies in and that ends when it does: xprof's op statistics
            // order ends at one time by line order, outer first, and would drop the inner.
            let written_ps = |items: &[Item<'_>], start: u64, end: u64| -> i64 {
                let enclosing = (items.iter())
                    .filter_map(|item| match *item {
                        Item::Recorded { event, .. } => Some(event),
                        Item::Synthetic { .. } => None,
                    })
                    .filter(|f| f.start_ns <= start && start < f.end_ns && f.end_ns == end)
                    .count();
                (ns_to_ps(end - start) - enclosing as i64).max(0)
            };
            for event in &line.events {
                assert!(
                    matches!(event.data, Some(x_event::Data::OffsetPs(_))),
                    "an offset, even when 0"
                );
                let found = (from..thread.events.len()).find(|&i| {
                    let recorded = &thread.events[i];
                    !used[i]
                        && recorded.is_async() == is_async
                        && names.display(event) == recorded.name()
                        && offset_ps(event) == ns_to_ps(recorded.start_ns)
                        && event.duration_ps
                            == written_ps(&items, recorded.start_ns, recorded.end_ns)
                        && event.stats.len() >= recorded.all_metadata().len()
                        && (recorded.all_metadata().iter().zip(&event.stats)).all(|((k, v), s)| {
                            names.stat(s) == *k && same_value(&s.value, &Some(stored(k, v)))
                        })
                });
                if let Some(i) = found {
                    used[i] = true;
                    from = i + 1;
                    let added = &event.stats[thread.events[i].all_metadata().len()..];
                    items.push(Item::Recorded {
                        event: &thread.events[i],
                        index: i,
                        metadata_id: event.metadata_id,
                        added,
                    });
                    continue;
                }
                // Not recorded: it must be the child of the marker just before it.
                let Some(&Item::Recorded {
                    event: marker,
                    added,
                    ..
                }) = items.last()
                else {
                    panic!("{:?}: an event that was not recorded", names.event(event));
                };
                assert!(added.first().is_some_and(|s| names.stat(s) == "_r"));
                assert_eq!(names.display(event), format!("{}/self", marker.name()));
                assert_eq!(offset_ps(event), ns_to_ps(marker.start_ns));
                // It lies in the marker and ends with it.
                let written = written_ps(&items, marker.start_ns, marker.end_ns);
                assert_eq!(event.duration_ps, written);
                let stats: Vec<_> = (event.stats.iter())
                    .map(|s| (names.stat(s), s.value.clone()))
                    .collect();
                assert_eq!(
                    stats,
                    [(SYNTHETIC_STAT, Some(x_stat::Value::Int64Value(1)))]
                );
                items.push(Item::Synthetic {
                    of: marker,
                    metadata_id: event.metadata_id,
                });
            }
            lines.push(Line { thread: t, items });
        }
        assert!(used.iter().all(|&u| u), "every recorded event is written");

        // Each line is sorted (by start, the longer first) and nests; an event goes on a
        // later line only when it would break the nesting of every earlier line of its kind.
        let first = lines.len() - mine.len();
        for (k, line) in lines[first..].iter().enumerate() {
            let mut open: Vec<u64> = Vec::new();
            let mut previous: Option<&Event> = None;
            for (event, _, _) in line.recorded() {
                if let Some(p) = previous {
                    assert!(
                        p.start_ns < event.start_ns
                            || (p.start_ns == event.start_ns && p.end_ns >= event.end_ns),
                        "sorted"
                    );
                }
                previous = Some(event);
                while open.last().is_some_and(|&end| end <= event.start_ns) {
                    open.pop();
                }
                assert!(open.last().is_none_or(|&end| event.end_ns <= end), "nests");
                open.push(event.end_ns);
            }
            let (kind_first, kind_k) = if k < sync { (0, k) } else { (sync, k - sync) };
            for (event, index, _) in line.recorded() {
                for earlier in &lines[first + kind_first..first + kind_first + kind_k] {
                    let blocked = earlier.recorded().any(|(f, f_index, _)| {
                        f_index < index
                            && f.start_ns <= event.start_ns
                            && event.start_ns < f.end_ns
                            && f.end_ns < event.end_ns
                    });
                    assert!(blocked, "{:?} could go on an earlier line", event.name());
                }
            }
        }
    }
    assert!(decoded.next().is_none(), "no line without a thread");

    // Step markers: on one line, the one with the most of them (the first of those), the
    // events with an integer step number that start inside no earlier such event.
    let markers = |line: &Line<'_>| -> Vec<usize> {
        let candidates: Vec<(usize, &Event)> = line
            .recorded()
            .filter(|(e, _, _)| step_num(e).is_some())
            .map(|(e, i, _)| (i, e))
            .collect();
        (0..candidates.len())
            .filter(|&c| {
                let e = candidates[c].1;
                !candidates[..c]
                    .iter()
                    .any(|(_, d)| d.start_ns <= e.start_ns && e.start_ns < d.end_ns)
            })
            .map(|c| candidates[c].0)
            .collect()
    };
    let counts: Vec<Vec<usize>> = lines.iter().map(markers).collect();
    let most = counts.iter().map(Vec::len).max().unwrap_or(0);
    let step_line = counts.iter().position(|m| m.len() == most && most > 0);
    let windows: Vec<(u64, u64)> = step_line.map_or_else(Vec::new, |l| {
        let thread = &snapshot.threads()[lines[l].thread];
        counts[l]
            .iter()
            .map(|&i| (thread.events[i].start_ns, thread.events[i].end_ns))
            .collect()
    });

    let int = |name: &'static str, v: i64| (name, Some(x_stat::Value::Int64Value(v)));
    let added_of = |added: &[XStat]| -> Vec<(&str, Option<x_stat::Value>)> {
        added
            .iter()
            .map(|s| (names.stat(s), s.value.clone()))
            .collect()
    };
    for (l, line) in lines.iter().enumerate() {
        let mut linked: Vec<&Event> = Vec::new();
        for (position, item) in line.items.iter().enumerate() {
            let Item::Recorded {
                event,
                index,
                added,
                ..
            } = *item
            else {
                continue;
            };
            let added = added_of(added);
            if Some(l) == step_line {
                // The marker line: markers and their synthetic children, no links.
                let marker = counts[l].iter().position(|&i| i == index);
                let expected = match marker {
                    Some(n) => vec![int("_r", 1), int("_pt", 1), int("_p", n as i64 + 1)],
                    None => Vec::new(),
                };
                assert_eq!(added, expected, "stats added to {:?}", event.name());
                if marker.is_some() {
                    // xprof keeps only steps with work inside: a marker with no nested
                    // event is followed by one that stands for its own time.
                    let next = line.items.get(position + 1);
                    let has_child = matches!(next, Some(Item::Recorded { event: n, .. }) if n.start_ns < event.end_ns);
                    let synthetic = matches!(next, Some(Item::Synthetic { .. }));
                    assert_eq!(
                        synthetic,
                        !has_child,
                        "{:?}'s synthetic child",
                        event.name()
                    );
                }
                continue;
            }
            // Another line: work inside a step's window is linked to that step, unless it
            // lies in a linked event already.
            let inside = |w: &(u64, u64)| w.0 <= event.start_ns && event.end_ns <= w.1;
            // Inside a linked event as the line nests: starting before it ends (a zero-length
            // one covers its instant), and a new event at another's end is its sibling.
            let in_linked = linked.iter().any(|f| {
                f.start_ns <= event.start_ns && event.start_ns < f.end_ns.max(f.start_ns + 1)
            });
            let step = windows.iter().rposition(|w| w.0 <= event.start_ns);
            let expected = match step {
                Some(n) if !in_linked && inside(&windows[n]) => {
                    linked.push(event);
                    vec![int("_ct", 1), int("_c", n as i64 + 1)]
                }
                _ => {
                    assert!(
                        in_linked || !windows.iter().any(inside),
                        "{:?} lies in a step's window",
                        event.name()
                    );
                    Vec::new()
                }
            };
            assert_eq!(added, expected, "stats added to {:?}", event.name());
        }
    }

    // Event metadata: the name events were recorded with is the display name (for a
    // marker's own time, the marker's name and `/self`). A root step marker keeps it as its
    // name too; every other event is an op of its own call site (of its name, recorded
    // without one), named `<op name>:<OpType>` as xprof parses it, the op name made of the
    // recorded name's letters and digits. xprof keys ops by op name: no two share one.
    let mut op_ids: BTreeMap<(Source<'_>, Role), i64> = BTreeMap::new();
    let mut op_sources: BTreeMap<i64, (Source<'_>, Role)> = BTreeMap::new();
    for (l, line) in lines.iter().enumerate() {
        for item in &line.items {
            let (event, metadata_id, role, display) = match *item {
                Item::Recorded {
                    event,
                    index,
                    metadata_id,
                    ..
                } => {
                    let root = Some(l) == step_line && counts[l].contains(&index);
                    let role = if root { Role::Marker } else { Role::Op };
                    (event, metadata_id, role, event.name().to_owned())
                }
                Item::Synthetic { of, metadata_id } => (
                    of,
                    metadata_id,
                    Role::MarkerSelf,
                    format!("{}/self", of.name()),
                ),
            };
            let metadata = &plane.event_metadata[&metadata_id];
            let name = metadata.name.as_str();
            assert_eq!(
                metadata.display_name, display,
                "the display name is as recorded"
            );
            if role == Role::Marker {
                assert_eq!(name, event.name(), "a root step marker keeps its name");
                continue;
            }
            let (op, ty) = parse_tf_op(name).unwrap_or_else(|| panic!("{name:?} is no op"));
            assert!(
                op != "IDLE" && op != "Iterator" && ty != "IDLE",
                "{name:?} takes a name xprof gives a meaning"
            );
            let letters = |text: &str| -> String {
                text.chars().filter(char::is_ascii_alphanumeric).collect()
            };
            // A recorded name that ends in `:Type` names its type; the rest names the op.
            let path = match display.rsplit_once(':') {
                Some((path, named))
                    if !path.is_empty()
                        && !path.ends_with(':')
                        && named.starts_with(|c: char| c.is_ascii_uppercase())
                        && named
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        && named != "IDLE"
                        && named != "Iterator" =>
                {
                    assert_eq!(ty, named, "{display:?} names its type");
                    path
                }
                _ => &display[..],
            };
            let recorded = match letters(path) {
                none if none.is_empty() => "unnamed".to_owned(),
                some => some,
            };
            let rest = letters(op).strip_prefix(&recorded).map(str::to_owned);
            assert!(
                rest.is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_digit())),
                "{name:?} is made of {display:?}"
            );
            let key = (source(event), role);
            let first = *op_ids.entry(key).or_insert(metadata_id);
            assert_eq!(first, metadata_id, "{name:?}: one op per call site");
            let first = *op_sources.entry(metadata_id).or_insert(key);
            assert_eq!(first, key, "{name:?}: one call site per op");
        }
    }
    let op_names: Vec<&str> = (plane.event_metadata.values())
        .filter_map(|m| m.name.split_once(':'))
        .map(|(op, _)| op)
        .collect();
    let distinct = op_names.iter().collect::<BTreeSet<_>>().len();
    assert_eq!(distinct, op_names.len(), "op names {op_names:?}");
}

/// What an op stands for: a call site, or the name of events recorded without one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Source<'a> {
    Site(usize),
    Name(&'a str),
}

fn source(event: &Event) -> Source<'_> {
    match event.callsite() {
        Some(site) => Source::Site(site as *const Callsite as usize),
        None => Source::Name(event.name()),
    }
}

/// The part an event plays in the profile: a root step marker, the synthetic child that
/// stands for a marker's own time, or any other event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Op,
    Marker,
    MarkerSelf,
}

/// xprof's reading of a TensorFlow op full name (`ParseTfOpFullname`), with the stricter
/// op name pattern of its older versions: `(op name, type)`, split at the first `:`, if the
/// op name matches `[A-Za-z0-9.][A-Za-z0-9_./]*` and the type `[A-Z_][a-zA-Z0-9_]*`.
pub(super) fn parse_tf_op(full: &str) -> Option<(&str, &str)> {
    let (name, ty) = full.split_once(':')?;
    let name_ok = name
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_alphanumeric() || c == '.' || (i > 0 && matches!(c, '_' | '/')));
    let type_ok = ty
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_uppercase() || c == '_' || (i > 0 && c.is_ascii_alphanumeric()));
    (!name.is_empty() && name_ok && !ty.is_empty() && type_ok).then_some((name, ty))
}

// ---------------------------------------------------------------------------------------------
// The Chrome trace, against the XSpace it shows

/// A JSON value that keeps an object's keys in order, duplicates included (event args may
/// repeat a key), and tells integers from other numbers.
#[derive(Clone, Debug)]
pub(super) enum Json {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Int(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Int(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Json::Object(entries))
    }
}

impl Json {
    fn fields(&self) -> &[(String, Json)] {
        match self {
            Json::Object(fields) => fields,
            other => panic!("an object, not {other:?}"),
        }
    }

    /// An object's fields by name; its keys must be distinct.
    fn object(&self) -> BTreeMap<&str, &Json> {
        let fields = self.fields();
        let map: BTreeMap<&str, &Json> = fields.iter().map(|(k, v)| (k.as_str(), v)).collect();
        assert_eq!(map.len(), fields.len(), "repeated keys in {self:?}");
        map
    }
}

/// Two JSON values: numbers within a few units of the last place, since a number written
/// in decimal reads back rounded.
fn same_json(a: &Json, b: &Json) -> bool {
    let close = |x: f64, y: f64| (x - y).abs() <= f64::max(1e-12, y.abs() * 8.0 * f64::EPSILON);
    match (a, b) {
        (Json::Float(x), Json::Float(y)) => close(*x, *y),
        (Json::Int(x), Json::Float(y)) | (Json::Float(y), Json::Int(x)) => close(*x as f64, *y),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && (x.iter().zip(y)).all(|((kx, x), (ky, y))| kx == ky && same_json(x, y))
        }
        (Json::Null, Json::Null) => true,
        (Json::Bool(x), Json::Bool(y)) => x == y,
        (Json::Int(x), Json::Int(y)) => x == y,
        (Json::Str(x), Json::Str(y)) => x == y,
        _ => false,
    }
}

/// Picoseconds as the microseconds a trace shows, to the nearest nanosecond (halves away
/// from zero).
fn micros(ps: i64) -> Json {
    let ps = i128::from(ps);
    let ns = (2 * ps + ps.signum() * 1000) / 2000;
    Json::Float(ns as f64 / 1000.0)
}

fn text(s: impl Into<String>) -> Json {
    Json::Str(s.into())
}

/// Checks that `json` is a Chrome trace of the host planes of `space`: per plane a process
/// named after the host, per line a named and ordered thread, per event a complete event
/// with its name, start, duration and stats.
pub(super) fn check_chrome(json: &str, space: &XSpace) {
    let doc: Json = serde_json::from_str(json).expect("the trace is JSON");
    let top = doc.object();
    assert_eq!(top.len(), 2);
    assert!(same_json(top["displayTimeUnit"], &text("ns")));
    let Json::Array(events) = top["traceEvents"] else {
        panic!("traceEvents is an array");
    };
    let mut events = events.iter();
    let mut expect = |what: &str, wanted: Vec<(&str, Json)>| {
        let event = events
            .next()
            .unwrap_or_else(|| panic!("the trace ends before {what}"));
        let fields = event.object();
        let keys: BTreeSet<&str> = wanted.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            fields.keys().copied().collect::<BTreeSet<_>>(),
            keys,
            "{what}"
        );
        for (key, value) in &wanted {
            assert!(
                same_json(fields[key], value),
                "{what}: {key} is {:?}, not {value:?}",
                fields[key]
            );
        }
    };
    let host = space.hostnames.first().map_or("", String::as_str);
    let host_planes = space.planes.iter().filter(|p| p.name == HOST_PLANE);
    for (pid, plane) in (1i128..).zip(host_planes) {
        let names = Names::new(plane);
        let meta = |name: &str| text(name);
        expect(
            "the process",
            vec![
                ("ph", meta("M")),
                ("name", meta("process_name")),
                ("pid", Json::Int(pid)),
                (
                    "args",
                    Json::Object(vec![("name".into(), text(format!("{host} {HOST_PLANE}")))]),
                ),
            ],
        );
        for (index, line) in plane.lines.iter().enumerate() {
            let tid = Json::Int(
                if line.display_id != 0 {
                    line.display_id
                } else {
                    line.id
                }
                .into(),
            );
            let name = if line.display_name.is_empty() {
                &line.name
            } else {
                &line.display_name
            };
            expect(
                "a thread's name",
                vec![
                    ("ph", meta("M")),
                    ("name", meta("thread_name")),
                    ("pid", Json::Int(pid)),
                    ("tid", tid.clone()),
                    ("args", Json::Object(vec![("name".into(), text(name))])),
                ],
            );
            expect(
                "a thread's place",
                vec![
                    ("ph", meta("M")),
                    ("name", meta("thread_sort_index")),
                    ("pid", Json::Int(pid)),
                    ("tid", tid.clone()),
                    (
                        "args",
                        Json::Object(vec![("sort_index".into(), Json::Int(index as i128))]),
                    ),
                ],
            );
            let base_ps = line.timestamp_ns.saturating_mul(1000);
            for event in &line.events {
                let mut fields = vec![
                    ("ph", meta("X")),
                    ("pid", Json::Int(pid)),
                    ("tid", tid.clone()),
                    ("ts", micros(base_ps.saturating_add(offset_ps(event)))),
                    ("dur", micros(event.duration_ps.max(0))),
                    // The recorded name, as xprof's trace viewer shows it.
                    ("name", text(names.shown(event))),
                ];
                if !event.stats.is_empty() {
                    let args = (event.stats.iter())
                        .map(|stat| {
                            let value = match stat.value {
                                Some(x_stat::Value::Int64Value(v)) => Json::Int(v.into()),
                                Some(x_stat::Value::Uint64Value(v)) => Json::Int(v.into()),
                                Some(x_stat::Value::DoubleValue(v)) if v.is_finite() => {
                                    Json::Float(v)
                                }
                                _ => text(names.text(stat)),
                            };
                            (names.stat(stat).to_owned(), value)
                        })
                        .collect();
                    fields.push(("args", Json::Object(args)));
                }
                expect("an event", fields);
            }
        }
    }
    assert!(events.next().is_none(), "nothing after the last event");
}

// ---------------------------------------------------------------------------------------------
// The text report, against the XSpace it sums up

/// The text report a profile must give: per event name as shown (the display name, else the
/// name) its count, durations, self time and the distinct names xprof reads for it, the steps
/// (the `_r` markers) and the threads.
///
/// Self time follows each thread's calls, its lines merged back (a line's thread is its id
/// modulo 100 000, as the writer numbers them): a call's caller is the call most recently
/// entered and not ended yet when it starts; calls end in order of their end, the later
/// entered first on ties; a call's self time is its duration less that of each callee that
/// ends while the call is still open.
pub(super) fn expected_report(space: &XSpace) -> Report {
    let mut report = Report {
        warnings: space.warnings.clone(),
        top: 20,
        ..Default::default()
    };
    // Durations (ns), self time (ps) and the names xprof reads, by name shown.
    let mut sites: BTreeMap<&str, (Vec<u64>, u64, BTreeSet<&str>)> = BTreeMap::new();
    for plane in space.planes.iter().filter(|p| p.name == HOST_PLANE) {
        let names = Names::new(plane);
        // Each thread's calls: name, start and end in ps, in the order the lines hold them.
        let mut threads: BTreeMap<i64, Vec<(&str, u64, u64)>> = BTreeMap::new();
        for line in &plane.lines {
            let origin = (line.timestamp_ns.max(0) as u64).saturating_mul(1000);
            let calls = threads.entry(line.id.rem_euclid(100_000)).or_default();
            for event in &line.events {
                let stat = |name: &str| event.stats.iter().find(|s| names.stat(s) == name);
                if stat(SYNTHETIC_STAT).is_some() {
                    continue;
                }
                if stat("_r").is_some() {
                    let step = stat("step_num").map(|s| names.text(s));
                    report.steps.push(StepTime {
                        name: format!("{} {}", names.shown(event), step.unwrap_or_default()),
                        duration_ns: ps_to_ns(event.duration_ps),
                    });
                }
                report.events += 1;
                let name = names.shown(event);
                let site = sites.entry(name).or_default();
                site.0.push(ps_to_ns(event.duration_ps));
                site.2.insert(names.event(event));
                let start = origin.saturating_add(offset_ps(event).max(0) as u64);
                let end = start.saturating_add(event.duration_ps.max(0) as u64);
                calls.push((name, start, end));
            }
        }
        report.threads += threads.len();
        for calls in threads.values_mut() {
            calls.sort_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)));
            for (name, self_ps) in self_times(calls) {
                let site = sites.entry(name).or_default();
                site.1 = site.1.saturating_add(self_ps);
            }
        }
    }
    report.sites = sites
        .into_iter()
        .map(|(name, (mut all, self_ps, ops))| {
            all.sort_unstable();
            let rank = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize];
            SiteStats {
                name: name.to_owned(),
                ops: ops.into_iter().map(str::to_owned).collect(),
                count: all.len() as u64,
                total_ns: all.iter().fold(0u64, |sum, &ns| sum.saturating_add(ns)),
                self_ns: ((self_ps as u128 + 500) / 1000) as u64,
                p50_ns: rank(0.5),
                p99_ns: rank(0.99),
                max_ns: all[all.len() - 1],
            }
        })
        .collect();
    report
        .sites
        .sort_by(|a, b| b.self_ns.cmp(&a.self_ns).then_with(|| a.name.cmp(&b.name)));
    report
}

/// Each call's name and self time, for calls `(name, start, end)` in start order (see
/// [`expected_report`]).
fn self_times<'a>(calls: &[(&'a str, u64, u64)]) -> Vec<(&'a str, u64)> {
    let duration = |i: usize| calls[i].2 - calls[i].1;
    let mut caller: Vec<Option<usize>> = vec![None; calls.len()];
    let mut in_callees = vec![0u64; calls.len()];
    let mut open: Vec<usize> = Vec::new();
    let end_calls_until =
        |time: u64, open: &mut Vec<usize>, caller: &[Option<usize>], in_callees: &mut [u64]| {
            // The call that ends first, the later entered on ties.
            while let Some(k) = (0..open.len())
                .filter(|&k| calls[open[k]].2 <= time)
                .min_by_key(|&k| (calls[open[k]].2, std::cmp::Reverse(open[k])))
            {
                let ended = open.remove(k);
                if let Some(c) = caller[ended].filter(|c| open.contains(c)) {
                    in_callees[c] = in_callees[c].saturating_add(duration(ended));
                }
            }
        };
    for i in 0..calls.len() {
        end_calls_until(calls[i].1, &mut open, &caller, &mut in_callees);
        caller[i] = open.last().copied();
        open.push(i);
    }
    end_calls_until(u64::MAX, &mut open, &caller, &mut in_callees);
    (0..calls.len())
        .map(|i| (calls[i].0, duration(i).saturating_sub(in_callees[i])))
        .collect()
}
