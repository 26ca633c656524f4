//! The read model: a profile's host planes, lines and events as the Chrome trace writer, the
//! text report and the XSpace encoder read them, whether planned from a recording (without
//! building any message) or decoded from a file.

use std::collections::BTreeMap;

use ahash::AHashMap;
use trace_runtime::Value;

use super::schema::{
    is_thread_line, COUNTERS_LINE, HEAP_ALLOCATOR, HOST_PLANE, STEP_LINK_TYPE, SYNTHETIC_STAT,
};
use crate::analysis::heap::HeapSample;
use crate::proto::xplane::{x_event, x_stat, XEvent, XPlane, XSpace, XStat};

/// Receives a profile's host planes in order: each plane, then each of its lines, then each
/// line's events. Strings live as long as the profile (`'s`).
pub(crate) trait Visitor<'s> {
    /// A host plane begins.
    fn plane(&mut self, _name: &'s str) {}
    /// A line begins.
    fn line(&mut self, line: &LineView<'s>);
    /// The next event of the current line.
    fn event(&mut self, event: &EventView<'s, '_>);
    /// The current line ends.
    fn line_end(&mut self) {}
    /// True to be shown the counter line (`_counters_`), which holds no thread's events:
    /// the trace viewer draws it as counter tracks. Other readers skip it.
    fn wants_counters(&self) -> bool {
        false
    }
}

/// A line's own fields.
pub(crate) struct LineView<'s> {
    pub(crate) id: i64,
    pub(crate) display_id: i64,
    pub(crate) name: &'s str,
    pub(crate) display_name: &'s str,
    pub(crate) timestamp_ns: i64,
    pub(crate) duration_ps: i64,
}

/// One event of a line.
pub(crate) struct EventView<'s, 'v> {
    /// The name it was recorded with, for people to read (its metadata's `display_name`;
    /// empty when there is none).
    pub(crate) name: &'s str,
    /// The name xprof reads (its metadata's `name`): an op full name such as
    /// `my_crate/train/forward:Forward`, or a root step marker's own name.
    pub(crate) op: &'s str,
    /// Start in picoseconds after the line's base time.
    pub(crate) offset_ps: i64,
    pub(crate) duration_ps: i64,
    pub(crate) stats: Stats<'s, 'v>,
}

impl<'s> EventView<'s, '_> {
    /// The name to show: the recorded one, else (none recorded, or a file that has no display
    /// names) the name xprof reads, as xprof's trace viewer shows events.
    #[inline]
    pub(crate) fn shown(&self) -> &'s str {
        if self.name.is_empty() {
            self.op
        } else {
            self.name
        }
    }
}

/// An event's stats, in order.
#[derive(Clone, Copy)]
pub(crate) enum Stats<'s, 'v> {
    /// A recorded event's metadata, then the stats the exporter adds.
    Recorded {
        metadata: &'s [(&'static str, Value<'static>)],
        added: Added,
    },
    /// An allocation or free of the memory profile, and its step link (`_ct/_c`) when it
    /// is on another line than the step markers'.
    Heap {
        sample: &'v HeapSample,
        link: Option<i64>,
    },
    /// A sample of a counter line: one int64, under `name`.
    Counter { name: &'static str, value: i64 },
    /// Stats decoded from a file, named through their plane's metadata.
    Decoded {
        stats: &'s [XStat],
        plane: &'v PlaneView<'s>,
    },
}

/// The stats the exporter adds to a recorded event.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Added {
    None,
    /// A step marker: root `_r`, producer type `_pt` and producer id `_p`.
    Marker(i64),
    /// Work inside a step on another line: consumer type `_ct` and consumer id `_c`.
    Link(i64),
    /// An event the exporter made up.
    Synthetic,
}

impl Added {
    /// The added stats, each an int64.
    fn stats(self) -> &'static [&'static str] {
        match self {
            Added::None => &[],
            Added::Marker(_) => &["_r", "_pt", "_p"],
            Added::Link(_) => &["_ct", "_c"],
            Added::Synthetic => &[SYNTHETIC_STAT],
        }
    }

    fn value(self, index: usize) -> i64 {
        match (self, index) {
            (Added::Marker(_), 0) | (Added::Synthetic, _) => 1,
            (Added::Marker(id), 2) | (Added::Link(id), 1) => id,
            _ => STEP_LINK_TYPE,
        }
    }
}

impl<'s, 'v> Stats<'s, 'v> {
    /// True if the event has no stat.
    #[inline]
    pub(crate) fn is_empty(self) -> bool {
        match self {
            Stats::Recorded { metadata, added } => metadata.is_empty() && added == Added::None,
            Stats::Heap { .. } | Stats::Counter { .. } => false,
            Stats::Decoded { stats, .. } => stats.is_empty(),
        }
    }

    /// The stats as `(name, value)`, in order.
    pub(crate) fn iter(self) -> StatIter<'s, 'v> {
        StatIter {
            stats: self,
            next: 0,
        }
    }

    /// The first stat named `name`.
    pub(crate) fn get(self, name: &str) -> Option<StatValue<'s>> {
        self.iter()
            .find(|&(key, _)| key == name)
            .map(|(_, value)| value)
    }
}

/// The iterator of [`Stats::iter`].
pub(crate) struct StatIter<'s, 'v> {
    stats: Stats<'s, 'v>,
    next: usize,
}

impl<'s> Iterator for StatIter<'s, '_> {
    type Item = (&'s str, StatValue<'s>);

    fn next(&mut self) -> Option<Self::Item> {
        let i = self.next;
        self.next += 1;
        match self.stats {
            Stats::Recorded { metadata, added } => match metadata.get(i) {
                Some((key, value)) => Some((key, recorded_value(key, value))),
                None => {
                    let i = i - metadata.len();
                    let key = added.stats().get(i)?;
                    Some((key, StatValue::Int(added.value(i))))
                }
            },
            Stats::Heap { sample, link } => heap_stat(sample, link, i),
            Stats::Counter { name, value } => (i == 0).then_some((name, StatValue::Int(value))),
            Stats::Decoded { stats, plane } => {
                let stat = stats.get(i)?;
                Some((plane.stat_name(stat), plane.stat_value(stat)))
            }
        }
    }
}

/// The `index`-th stat of a heap event: what xprof's memory profile reads, all integers as
/// int64 (it reads no other), the scope if there is one, then the step link.
fn heap_stat<'s>(
    sample: &HeapSample,
    link: Option<i64>,
    index: usize,
) -> Option<(&'s str, StatValue<'s>)> {
    let int = |v: u64| StatValue::Int(i64::try_from(v).unwrap_or(i64::MAX));
    let link = link.map(Added::Link);
    let link_stat = |i: usize| link.map(|l| (l.stats()[i], StatValue::Int(l.value(i))));
    [
        Some(("allocator_name", StatValue::Str(HEAP_ALLOCATOR))),
        Some(("bytes_allocated", int(sample.in_use))),
        Some(("peak_bytes_in_use", int(sample.peak))),
        Some(("requested_bytes", int(sample.bytes))),
        Some(("allocation_bytes", int(sample.bytes))),
        Some(("addr", int(sample.addr))),
        sample.scope.map(|scope| ("tf_op", StatValue::Str(scope))),
        link_stat(0),
        link_stat(1),
    ]
    .into_iter()
    .flatten()
    .nth(index)
}

/// A stat's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum StatValue<'s> {
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(&'s str),
    Bytes(&'s [u8]),
    /// `ref_value`: the id of a stat metadata whose name is the value.
    Ref {
        id: u64,
        name: &'s str,
    },
    /// No value set.
    Missing,
}

impl StatValue<'_> {
    /// The value as text (`ref_value` resolved).
    pub(crate) fn text(self) -> String {
        match self {
            StatValue::Int(v) => v.to_string(),
            StatValue::UInt(v) => v.to_string(),
            StatValue::Double(v) => v.to_string(),
            StatValue::Str(s) | StatValue::Ref { name: s, .. } => s.to_owned(),
            StatValue::Bytes(b) => format!("<{} bytes>", b.len()),
            StatValue::Missing => String::new(),
        }
    }
}

/// A recorded metadata value as the profile stores it.
fn recorded_value<'s>(key: &str, value: &'s Value<'static>) -> StatValue<'s> {
    match value {
        Value::Int(v) => StatValue::Int(*v),
        // xprof reads step numbers with IntValue(): keep them int64 when they fit.
        Value::UInt(v) if key == "step_num" && *v <= i64::MAX as u64 => StatValue::Int(*v as i64),
        Value::UInt(v) => StatValue::UInt(*v),
        Value::Float(v) => StatValue::Double(*v),
        Value::Bool(v) => StatValue::Int(i64::from(*v)),
        Value::Str(s) => StatValue::Str(s),
    }
}

/// `(host plane, line id)` of the host planes' lines of a decoded space, in the order they
/// are visited.
pub(super) fn line_ids(space: &XSpace) -> impl Iterator<Item = (usize, i64)> + '_ {
    space
        .planes
        .iter()
        .filter(|p| p.name == HOST_PLANE)
        .enumerate()
        .flat_map(|(index, plane)| {
            (plane.lines.iter())
                .filter(|line| is_thread_line(line.id, &line.name))
                .map(move |line| (index, line.id))
        })
}

/// Visits the host planes of a decoded space.
pub(super) fn visit_space<'s, V: Visitor<'s>>(space: &'s XSpace, visitor: &mut V) {
    for plane in space.planes.iter().filter(|p| p.name == HOST_PLANE) {
        let view = PlaneView::new(plane);
        visitor.plane(&plane.name);
        for line in &plane.lines {
            if line.name == COUNTERS_LINE && !visitor.wants_counters() {
                continue;
            }
            visitor.line(&LineView {
                id: line.id,
                display_id: line.display_id,
                name: &line.name,
                display_name: &line.display_name,
                timestamp_ns: line.timestamp_ns,
                duration_ps: line.duration_ps,
            });
            for event in &line.events {
                let offset_ps = match event.data {
                    Some(x_event::Data::OffsetPs(ps)) => ps,
                    _ => 0,
                };
                let (op, name) = view.event_names(event);
                visitor.event(&EventView {
                    name,
                    op,
                    offset_ps,
                    duration_ps: event.duration_ps,
                    stats: Stats::Decoded {
                        stats: &event.stats,
                        plane: &view,
                    },
                });
            }
            visitor.line_end();
        }
    }
}

/// A decoded plane's metadata names by id.
pub(crate) struct PlaneView<'s> {
    /// Each event metadata's `name` and `display_name`.
    event_names: BTreeMap<i64, (&'s str, &'s str)>,
    stat_names: BTreeMap<i64, &'s str>,
}

impl<'s> PlaneView<'s> {
    fn new(plane: &'s XPlane) -> Self {
        PlaneView {
            event_names: plane
                .event_metadata
                .iter()
                .map(|(id, m)| (*id, (m.name.as_str(), m.display_name.as_str())))
                .collect(),
            stat_names: plane
                .stat_metadata
                .iter()
                .map(|(id, m)| (*id, m.name.as_str()))
                .collect(),
        }
    }

    /// An event's metadata `name` and `display_name`; an unknown id names nothing.
    fn event_names(&self, event: &XEvent) -> (&'s str, &'s str) {
        self.event_names
            .get(&event.metadata_id)
            .copied()
            .unwrap_or(("", ""))
    }

    fn stat_name(&self, stat: &XStat) -> &'s str {
        self.stat_names
            .get(&stat.metadata_id)
            .copied()
            .unwrap_or("")
    }

    fn stat_value(&self, stat: &'s XStat) -> StatValue<'s> {
        match &stat.value {
            Some(x_stat::Value::Int64Value(v)) => StatValue::Int(*v),
            Some(x_stat::Value::Uint64Value(v)) => StatValue::UInt(*v),
            Some(x_stat::Value::DoubleValue(v)) => StatValue::Double(*v),
            Some(x_stat::Value::StrValue(s)) => StatValue::Str(s),
            Some(x_stat::Value::BytesValue(b)) => StatValue::Bytes(b),
            Some(x_stat::Value::RefValue(id)) => StatValue::Ref {
                id: *id,
                name: self.stat_names.get(&(*id as i64)).copied().unwrap_or(""),
            },
            None => StatValue::Missing,
        }
    }
}

/// Numbers distinct names 1, 2, ... in order of first use, as a plane's metadata maps do.
///
/// Every event asks for its name's id, so the common lookup must not hash the text: a name
/// nearly always comes from the same `&'static str` of its call site, so a small table keyed
/// by the text's address answers first. The map by text behind it merges equal names at
/// different addresses. (An address stands for one text while the interner lives: every
/// name it sees is borrowed for `'s`.)
pub(crate) struct Interner<'s> {
    recent: Box<[(usize, usize, i64); RECENT]>,
    ids: AHashMap<&'s str, i64>,
    names: Vec<&'s str>,
}

/// Entries of an interner's address table.
const RECENT: usize = 256;

impl<'s> Interner<'s> {
    pub(crate) fn new() -> Self {
        Interner {
            // No text is at address 0, so the empty table matches nothing.
            recent: Box::new([(0, 0, 0); RECENT]),
            ids: AHashMap::new(),
            names: Vec::new(),
        }
    }

    /// The id of `name`.
    #[inline]
    pub(crate) fn id(&mut self, name: &'s str) -> i64 {
        let address = name.as_ptr() as usize;
        // Fibonacci hashing of the address picks the slot.
        let slot = (address.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) % RECENT;
        let (seen, len, id) = self.recent[slot];
        if seen == address && len == name.len() {
            return id;
        }
        let id = self.id_of_text(name);
        self.recent[slot] = (address, name.len(), id);
        id
    }

    #[inline(never)]
    fn id_of_text(&mut self, name: &'s str) -> i64 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as i64 + 1;
        self.names.push(name);
        self.ids.insert(name, id);
        id
    }

    /// The name of `id`.
    pub(crate) fn name(&self, id: i64) -> &'s str {
        self.names[(id - 1) as usize]
    }

    /// `(id, name)` of every name, by id.
    pub(super) fn iter(&self) -> impl Iterator<Item = (i64, &'s str)> + '_ {
        (1..).zip(self.names.iter().copied())
    }
}
