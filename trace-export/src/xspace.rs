//! From a recording [`Snapshot`] to the `XSpace` that xprof's Profile tab reads.
//!
//! The facts this follows (all in the project's format notes): the host plane is named
//! exactly `/host:CPU`; line timestamps are relative to the profile start and absolute times
//! live in a `Task Environment` plane; events in a line are sorted by start, the longer
//! first on ties, and properly nested; `step_num` is an int64 stat.
//!
//! Steps: events that carry an integer `step_num` are step markers. xprof groups events into
//! steps from root events marked `_r`, and one root per step is wanted, never one per thread,
//! so only the outermost markers of the one line that has the most of them become roots
//! (`_r`, and a producer link `_pt/_p`). Every event of another thread that lies wholly
//! inside a step's time window gets the matching consumer link `_ct/_c`: the work of data
//! loaders and worker pools counts toward the step during which it ran, **by time**.
//!
//! # How the export stays fast
//!
//! A profile holds millions of events, most of them three integers (metadata id, offset,
//! duration). [`Layout::new`] decides where every event goes (lines, step markers, links)
//! without copying any event: a thread whose events nest, the usual case, becomes one line
//! that is the thread's own event list. [`Layout::encode`] then writes the protobuf bytes
//! straight from the recorded events in one pass, numbering the event and stat metadata as
//! it meets their names (looked up by address, not by hashing the text). A line or plane is
//! preceded by its length, known only once it is written: room is left for the length and
//! the gaps are closed at the end. No `XEvent` is ever built.
//!
//! The Chrome trace ([`chrome`](crate::chrome)) and the text report
//! ([`report`](crate::report)) read a [`Layout`] the same way, through [`Profile`], so that
//! they see exactly the events and stats the `.xplane.pb` file holds, and read an `XSpace`
//! decoded from a file through the same code.

use std::borrow::Cow;
use std::collections::BTreeMap;

use ahash::AHashMap;
use prost::encoding::encoded_len_varint;
use prost::Message;
use trace_runtime::session::{Event, Snapshot, ThreadRecord};
use trace_runtime::Value;

use crate::proto::xplane::{
    x_event, x_stat, XEvent, XEventMetadata, XPlane, XSpace, XStat, XStatMetadata,
};

/// The host plane's name, exactly as xprof matches it.
pub const HOST_PLANE: &str = "/host:CPU";
/// The plane with the profile's absolute start and stop times.
pub const TASK_ENVIRONMENT_PLANE: &str = "Task Environment";
/// The stat that marks events the exporter added (a step marker's own time).
pub const SYNTHETIC_STAT: &str = "synthetic";

/// What the name of the event standing for a step marker's own time adds to the marker's
/// name. The `/` keeps xprof from taking it for a step marker itself.
const SELF_SUFFIX: &str = "/self";
/// The producer/consumer type used for step links.
const STEP_LINK_TYPE: i64 = 1;
const PS_PER_NS: i64 = 1000;

/// Builds the profile of one host as a message: exactly what [`encode`] writes, decoded.
///
/// The profiler writes with [`encode`]; this is for callers that want to look at the
/// messages.
pub fn build(snapshot: &Snapshot, host: &str) -> XSpace {
    XSpace::decode(encode(snapshot, host).as_slice()).expect("encode writes a valid XSpace")
}

/// Encodes the profile of one host: the bytes of its `<host>.xplane.pb`.
pub fn encode(snapshot: &Snapshot, host: &str) -> Vec<u8> {
    Layout::new(snapshot, host).encode()
}

/// Decodes an `.xplane.pb` file's bytes, with a message that says what is wrong.
pub fn decode(bytes: &[u8]) -> Result<XSpace, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let space = XSpace::decode(bytes).map_err(|e| format!("not an XSpace profile ({e})"))?;
    if space.planes.is_empty() {
        return Err("not an XSpace profile (no planes)".into());
    }
    Ok(space)
}

// ---------------------------------------------------------------------------------------------
// Layout: where each recorded event goes
// ---------------------------------------------------------------------------------------------

/// The profile of one host as planned from a [`Snapshot`]: its lines, step markers and step
/// links, referring to the recorded events rather than copying them.
///
/// [`encode`](Layout::encode) writes it as `.xplane.pb` bytes;
/// [`chrome::write_json`](crate::chrome::write_json) and
/// [`Report::from_profile`](crate::report::Report::from_profile) read it directly.
///
/// # Examples
///
/// ```no_run
/// use trace_export::{chrome, report::Report, xspace::Layout};
/// # fn demo(snapshot: &trace_runtime::session::Snapshot) -> std::io::Result<()> {
/// let layout = Layout::new(snapshot, "my-host");
/// std::fs::write("my-host.xplane.pb", layout.encode())?;
/// chrome::write_json(&layout, std::fs::File::create("my-host.trace.json")?)?;
/// println!("{}", Report::from_profile(&layout));
/// # Ok(()) }
/// ```
pub struct Layout<'a> {
    snapshot: &'a Snapshot,
    host: String,
    lines: Vec<LinePlan<'a>>,
    steps: Steps,
    warnings: Vec<String>,
}

impl std::fmt::Debug for Layout<'_> {
    /// A summary: the events themselves are the snapshot's.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layout")
            .field("host", &self.host)
            .field("lines", &self.lines.len())
            .field("events", &self.snapshot.event_count())
            .field("steps", &self.steps.markers.len())
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// One line of the host plane: some or all of one thread's events.
struct LinePlan<'a> {
    id: i64,
    name: String,
    /// The thread's events.
    events: &'a [Event],
    /// Which of them, by index, in order; `None`: all of them (a thread whose events nest).
    picked: Option<Vec<usize>>,
    /// `(position in the line, step index)` of the events linked to a step, by position.
    links: Vec<(usize, usize)>,
}

impl<'a> LinePlan<'a> {
    fn new(id: i64, name: String, events: &'a [Event], picked: Option<Vec<usize>>) -> Self {
        LinePlan {
            id,
            name,
            events,
            picked,
            links: Vec::new(),
        }
    }

    /// The line's events, in order.
    fn iter(&self) -> LineEvents<'a, '_> {
        match &self.picked {
            None => LineEvents::All(self.events.iter()),
            Some(picked) => LineEvents::Picked(picked.iter(), self.events),
        }
    }
}

/// The events of a [`LinePlan`].
enum LineEvents<'a, 'p> {
    All(std::slice::Iter<'a, Event>),
    Picked(std::slice::Iter<'p, usize>, &'a [Event]),
}

impl<'a> Iterator for LineEvents<'a, '_> {
    type Item = &'a Event;

    #[inline]
    fn next(&mut self) -> Option<&'a Event> {
        match self {
            LineEvents::All(events) => events.next(),
            LineEvents::Picked(picked, events) => picked.next().map(|&i| &events[i]),
        }
    }
}

impl<'a> Layout<'a> {
    /// Plans the profile of `snapshot` for the host named `host`.
    pub fn new(snapshot: &'a Snapshot, host: &str) -> Layout<'a> {
        let mut lines = Vec::new();
        for thread in &snapshot.threads {
            plan_thread(thread, &mut lines);
        }
        let steps = find_steps(&lines);
        link_to_steps(&mut lines, &steps);
        Layout {
            snapshot,
            host: host.to_owned(),
            lines,
            steps,
            warnings: warnings(snapshot),
        }
    }

    /// Calls `visitor` with the host plane, each line, and each line's events with their
    /// stats: the recorded metadata, then the step stats added here.
    fn visit<'s, V: Visitor<'s>>(&'s self, visitor: &mut V) {
        visitor.plane(HOST_PLANE);
        let duration_ps = (self.snapshot.duration_ns as i64).saturating_mul(PS_PER_NS);
        for (index, line) in self.lines.iter().enumerate() {
            visitor.line(&LineView {
                id: line.id,
                display_id: line.id,
                name: &line.name,
                display_name: "",
                timestamp_ns: 0,
                duration_ps,
            });
            let markers = if index == self.steps.line {
                &self.steps.markers[..]
            } else {
                &[]
            };
            visit_line(line, markers, visitor);
            visitor.line_end();
        }
    }
}

/// Visits the events of one line; `markers` are the positions of its step markers.
#[inline]
fn visit_line<'s, V: Visitor<'s>>(line: &'s LinePlan<'_>, markers: &[usize], visitor: &mut V) {
    let mut events = line.iter().peekable();
    let mut markers = markers.iter().enumerate().peekable();
    let mut links = line.links.iter().peekable();
    let mut position = 0;
    while let Some(event) = events.next() {
        let offset_ps = ns_to_ps(event.start_ns);
        let duration_ps = ns_to_ps(event.end_ns.saturating_sub(event.start_ns));
        // Markers and links are sorted by position: each is the next one or not there.
        // (Links are never on the markers' line: their events are grouped by nesting.)
        let mut added = Added::None;
        let marker = markers.next_if(|&(_, &at)| at == position);
        if let Some((step, _)) = marker {
            added = Added::Marker(step_link_id(step));
        } else if let Some(&(_, step)) = links.next_if(|&&(at, _)| at == position) {
            added = Added::Link(step_link_id(step));
        }
        visitor.event(&EventView {
            name: event.name,
            suffix: "",
            offset_ps,
            duration_ps,
            stats: Stats::Recorded {
                metadata: &event.metadata,
                added,
            },
        });
        // xprof keeps only steps with some compute inside: a marker with no nested event
        // gets a child that stands for its own time.
        let has_child = events
            .peek()
            .is_some_and(|next| next.start_ns < event.end_ns);
        if marker.is_some() && !has_child {
            visitor.event(&EventView {
                name: event.name,
                suffix: SELF_SUFFIX,
                offset_ps,
                duration_ps,
                stats: Stats::Recorded {
                    metadata: &[],
                    added: Added::Synthetic,
                },
            });
        }
        position += 1;
    }
}

/// Adds the lines of one thread: its synchronous events, on as many lines as they need to
/// nest, then its async events likewise.
fn plan_thread<'a>(thread: &'a ThreadRecord, lines: &mut Vec<LinePlan<'a>>) {
    let events = &thread.events[..];
    // The usual case: synchronous scopes always nest, so the thread is one line as it is.
    if !events.is_empty() && nests_on_one_line(events) {
        let id = line_id(thread.thread_id, 0);
        lines.push(LinePlan::new(id, thread.name.clone(), events, None));
        return;
    }
    let (sync, asynchronous): (Vec<usize>, Vec<usize>) =
        (0..events.len()).partition(|&i| !events[i].is_async);
    for (k, picked) in nest_into_lines(events, sync).into_iter().enumerate() {
        let name = match k {
            0 => thread.name.clone(),
            k => format!("{} (overlapping {k})", thread.name),
        };
        let id = line_id(thread.thread_id, k);
        lines.push(LinePlan::new(id, name, events, Some(picked)));
    }
    for (k, picked) in nest_into_lines(events, asynchronous)
        .into_iter()
        .enumerate()
    {
        let name = format!("{} (async {})", thread.name, k + 1);
        let id = line_id(thread.thread_id, 1000 + k);
        lines.push(LinePlan::new(id, name, events, Some(picked)));
    }
}

/// Thread lines use the thread's number; the extra lines a thread needs for overlapping or
/// async events follow at multiples of 100 000 (trace viewer shows ids as 32-bit tids).
fn line_id(thread_id: u64, k: usize) -> i64 {
    (thread_id % 100_000) as i64 + k as i64 * 100_000
}

fn step_link_id(step_index: usize) -> i64 {
    step_index as i64 + 1
}

/// The end times of a line's open events, innermost last.
#[derive(Default)]
struct OpenEvents(Vec<u64>);

impl OpenEvents {
    /// Closes the events that ended by `event`'s start; true if `event` then nests in the
    /// innermost open one (or none is open), so that the line can take it.
    #[inline]
    fn admits(&mut self, event: &Event) -> bool {
        while self.0.last().is_some_and(|&end| end <= event.start_ns) {
            self.0.pop();
        }
        !matches!(self.0.last(), Some(&end) if event.end_ns > end)
    }

    fn open(&mut self, event: &Event) {
        self.0.push(event.end_ns);
    }
}

/// True if all `events` (sorted) are synchronous and every two are nested or disjoint:
/// [`nest_into_lines`] would put them all on one line.
fn nests_on_one_line(events: &[Event]) -> bool {
    let mut open = OpenEvents::default();
    for event in events {
        if event.is_async || !open.admits(event) {
            return false;
        }
        open.open(event);
    }
    true
}

/// Splits the events at `picked` (sorted) into as few lines as needed so that, within each,
/// every two events are nested or disjoint (xprof derives nesting from order): each event
/// goes to the first line that admits it. Sync scopes need one line; guards held across
/// `.await` and async events may overlap partially and need more.
fn nest_into_lines(events: &[Event], picked: Vec<usize>) -> Vec<Vec<usize>> {
    let mut lines: Vec<(Vec<usize>, OpenEvents)> = Vec::new();
    for i in picked {
        let event = &events[i];
        match lines
            .iter_mut()
            .find_map(|(line, open)| open.admits(event).then_some((line, open)))
        {
            Some((line, open)) => {
                line.push(i);
                open.open(event);
            }
            None => {
                let mut open = OpenEvents::default();
                open.open(event);
                lines.push((vec![i], open));
            }
        }
    }
    lines.into_iter().map(|(line, _)| line).collect()
}

/// The step markers: the outermost events with an integer `step_num` on the line that has
/// the most of them (one root per step, never one per thread).
#[derive(Default)]
struct Steps {
    line: usize,
    /// Positions in the line's events, in time order.
    markers: Vec<usize>,
    /// The markers' time windows, in the same order.
    windows: Vec<(u64, u64)>,
}

/// An event's `step_num` as xprof wants it: an int64.
fn step_num(event: &Event) -> Option<i64> {
    match event.metadata("step_num")? {
        Value::Int(n) => Some(*n),
        Value::UInt(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

fn find_steps(lines: &[LinePlan<'_>]) -> Steps {
    let mut best = Steps::default();
    for (line_index, line) in lines.iter().enumerate() {
        let mut steps = Steps {
            line: line_index,
            ..Default::default()
        };
        for (position, event) in line.iter().enumerate() {
            if event.metadata.is_empty() || step_num(event).is_none() {
                continue;
            }
            if steps
                .windows
                .last()
                .is_some_and(|&(_, end)| event.start_ns < end)
            {
                continue; // nested in the previous step marker
            }
            steps.markers.push(position);
            steps.windows.push((event.start_ns, event.end_ns));
        }
        if steps.markers.len() > best.markers.len() {
            best = steps;
        }
    }
    best
}

/// Gives every event of another line that lies wholly inside a step window the step's
/// consumer link; its descendants inherit the step through nesting. (Events on the markers'
/// own line are grouped by nesting already.)
fn link_to_steps(lines: &mut [LinePlan<'_>], steps: &Steps) {
    if steps.markers.is_empty() {
        return;
    }
    for (line_index, line) in lines.iter_mut().enumerate() {
        if line_index == steps.line {
            continue;
        }
        let mut links = Vec::new();
        let mut linked_until = 0;
        for (position, event) in line.iter().enumerate() {
            if event.start_ns < linked_until {
                continue; // inside an event that is linked already
            }
            let candidate = steps
                .windows
                .partition_point(|&(start, _)| start <= event.start_ns);
            if let Some(i) = candidate.checked_sub(1) {
                if event.end_ns <= steps.windows[i].1 {
                    links.push((position, i));
                    linked_until = event.end_ns.max(event.start_ns + 1);
                }
            }
        }
        line.links = links;
    }
}

fn warnings(snapshot: &Snapshot) -> Vec<String> {
    let mut warnings = Vec::new();
    for thread in &snapshot.threads {
        if thread.dropped > 0 {
            warnings.push(format!(
                "{} events dropped on thread '{}' ({}): its buffer was full; raise \
                 ProfilerOptions::max_events_per_thread",
                thread.dropped, thread.name, thread.thread_id
            ));
        }
    }
    warnings
}

/// The `Task Environment` plane: the profile's absolute start and stop times.
fn environment_plane(snapshot: &Snapshot) -> XPlane {
    let times = [
        ("profile_start_time", snapshot.start_wall_ns),
        ("profile_stop_time", snapshot.stop_wall_ns),
    ];
    let mut plane = XPlane {
        id: 2,
        name: TASK_ENVIRONMENT_PLANE.to_owned(),
        ..Default::default()
    };
    for (id, (name, ns)) in (1..).zip(times) {
        let metadata = XStatMetadata {
            id,
            name: name.to_owned(),
            description: String::new(),
        };
        plane.stat_metadata.insert(id, metadata);
        plane.stats.push(XStat {
            metadata_id: id,
            value: Some(x_stat::Value::Uint64Value(ns)),
        });
    }
    plane
}

fn ns_to_ps(ns: u64) -> i64 {
    (ns as i64).saturating_mul(PS_PER_NS)
}

// ---------------------------------------------------------------------------------------------
// Profile: what the exporters read, planned or decoded
// ---------------------------------------------------------------------------------------------

/// A profile that the Chrome trace writer and the text report read: just planned from a
/// recording, or decoded from an `.xplane.pb` file. Both read the same: the host planes,
/// their lines, and each line's events with their stats.
#[derive(Clone, Copy, Debug)]
pub enum Profile<'a> {
    /// Planned from a recording ([`Layout::new`]): read without building any message.
    Planned(&'a Layout<'a>),
    /// Decoded from a file ([`decode`]).
    Decoded(&'a XSpace),
}

impl<'a> From<&'a Layout<'a>> for Profile<'a> {
    fn from(layout: &'a Layout<'a>) -> Self {
        Profile::Planned(layout)
    }
}

impl<'a> From<&'a XSpace> for Profile<'a> {
    fn from(space: &'a XSpace) -> Self {
        Profile::Decoded(space)
    }
}

impl<'a> Profile<'a> {
    /// The profile's host name, if it names one.
    pub(crate) fn host(self) -> &'a str {
        match self {
            Profile::Planned(layout) => &layout.host,
            Profile::Decoded(space) => space.hostnames.first().map_or("", String::as_str),
        }
    }

    /// The profile's warnings.
    pub(crate) fn warnings(self) -> &'a [String] {
        match self {
            Profile::Planned(layout) => &layout.warnings,
            Profile::Decoded(space) => &space.warnings,
        }
    }

    /// Calls `visitor` with each host plane, each of its lines and each line's events.
    pub(crate) fn visit<V: Visitor<'a>>(self, visitor: &mut V) {
        match self {
            Profile::Planned(layout) => layout.visit(visitor),
            Profile::Decoded(space) => visit_space(space, visitor),
        }
    }
}

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
    /// The name is `name` followed by `suffix` (empty but for the events standing for a step
    /// marker's own time, whose name is built).
    pub(crate) name: &'s str,
    pub(crate) suffix: &'static str,
    /// Start in picoseconds after the line's base time.
    pub(crate) offset_ps: i64,
    pub(crate) duration_ps: i64,
    pub(crate) stats: Stats<'s, 'v>,
}

impl EventView<'_, '_> {
    /// The event's full name.
    pub(crate) fn full_name(&self) -> Cow<'_, str> {
        if self.suffix.is_empty() {
            Cow::Borrowed(self.name)
        } else {
            Cow::Owned(format!("{}{}", self.name, self.suffix))
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
            Stats::Decoded { stats, plane } => {
                let stat = stats.get(i)?;
                Some((plane.stat_name(stat), plane.stat_value(stat)))
            }
        }
    }
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

/// Visits the host planes of a decoded space.
fn visit_space<'s, V: Visitor<'s>>(space: &'s XSpace, visitor: &mut V) {
    for plane in space.planes.iter().filter(|p| p.name == HOST_PLANE) {
        let view = PlaneView::new(plane);
        visitor.plane(&plane.name);
        for line in &plane.lines {
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
                visitor.event(&EventView {
                    name: view.event_name(event),
                    suffix: "",
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
    event_names: BTreeMap<i64, &'s str>,
    stat_names: BTreeMap<i64, &'s str>,
}

impl<'s> PlaneView<'s> {
    fn new(plane: &'s XPlane) -> Self {
        PlaneView {
            event_names: plane
                .event_metadata
                .iter()
                .map(|(id, m)| (*id, m.name.as_str()))
                .collect(),
            stat_names: plane
                .stat_metadata
                .iter()
                .map(|(id, m)| (*id, m.name.as_str()))
                .collect(),
        }
    }

    fn event_name(&self, event: &XEvent) -> &'s str {
        self.event_names
            .get(&event.metadata_id)
            .copied()
            .unwrap_or("")
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

// ---------------------------------------------------------------------------------------------
// Interning names
// ---------------------------------------------------------------------------------------------

/// Numbers distinct names 1, 2, ... in order of first use, as a plane's metadata maps do.
///
/// Every event asks for its name's id, so the common lookup must not hash the text: a name
/// nearly always comes from the same `&'static str` of its call site, so a small table keyed
/// by the text's address answers first. The map by text behind it merges equal names at
/// different addresses. (An address stands for one text while the interner lives: every
/// name it sees is borrowed for `'s`.)
pub(crate) struct Interner<'s> {
    recent: Box<[(usize, usize, i64); RECENT]>,
    ids: AHashMap<Cow<'s, str>, i64>,
    names: Vec<Cow<'s, str>>,
    /// Where names with a suffix are built for lookup.
    scratch: String,
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
            scratch: String::new(),
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
        let id = self.id_of_text(name, "");
        self.recent[slot] = (address, name.len(), id);
        id
    }

    /// The id of `name` followed by `suffix`.
    #[inline]
    pub(crate) fn id_with_suffix(&mut self, name: &'s str, suffix: &str) -> i64 {
        if suffix.is_empty() {
            self.id(name)
        } else {
            self.id_of_text(name, suffix)
        }
    }

    #[inline(never)]
    fn id_of_text(&mut self, name: &'s str, suffix: &str) -> i64 {
        let text = if suffix.is_empty() {
            name
        } else {
            self.scratch.clear();
            self.scratch.push_str(name);
            self.scratch.push_str(suffix);
            &self.scratch
        };
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let text = if suffix.is_empty() {
            Cow::Borrowed(name)
        } else {
            Cow::Owned(text.to_owned())
        };
        let id = self.names.len() as i64 + 1;
        self.names.push(text.clone());
        self.ids.insert(text, id);
        id
    }

    /// The name of `id`.
    pub(crate) fn name(&self, id: i64) -> &str {
        &self.names[(id - 1) as usize]
    }

    /// `(id, name)` of every name, by id.
    fn iter(&self) -> impl Iterator<Item = (i64, &str)> {
        (1..).zip(self.names.iter().map(|name| name.as_ref()))
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Protobuf wire format of the messages written by hand: `XEvent`, `XStat`, and the fields
/// of `XLine` around its events. Fields are written in field-number order with proto3's
/// rules (scalars equal to zero and empty strings are left out; a oneof member is written
/// even when zero), as prost writes the same messages.
mod wire {
    use super::encoded_len_varint;

    const VARINT: u8 = 0;
    const FIXED64: u8 = 1;
    const LEN: u8 = 2;

    /// The one-byte key of a field numbered below 16.
    const fn key(field: u8, wire_type: u8) -> u8 {
        field << 3 | wire_type
    }

    pub(super) const XSPACE_PLANES: u8 = key(1, LEN);
    pub(super) const XPLANE_LINES: u8 = key(3, LEN);
    pub(super) const XLINE_EVENTS: u8 = key(4, LEN);
    pub(super) const XEVENT_METADATA_ID: u8 = key(1, VARINT);
    pub(super) const XEVENT_OFFSET_PS: u8 = key(2, VARINT);
    pub(super) const XEVENT_DURATION_PS: u8 = key(3, VARINT);
    pub(super) const XEVENT_STATS: u8 = key(4, LEN);
    pub(super) const XSTAT_METADATA_ID: u8 = key(1, VARINT);
    pub(super) const XSTAT_DOUBLE: u8 = key(2, FIXED64);
    pub(super) const XSTAT_UINT64: u8 = key(3, VARINT);
    pub(super) const XSTAT_INT64: u8 = key(4, VARINT);
    pub(super) const XSTAT_STR: u8 = key(5, LEN);
    pub(super) const XSTAT_BYTES: u8 = key(6, LEN);
    pub(super) const XSTAT_REF: u8 = key(7, VARINT);
    pub(super) const XLINE_ID: u8 = key(1, VARINT);
    pub(super) const XLINE_NAME: u8 = key(2, LEN);
    pub(super) const XLINE_TIMESTAMP_NS: u8 = key(3, VARINT);
    pub(super) const XLINE_DURATION_PS: u8 = key(9, VARINT);
    pub(super) const XLINE_DISPLAY_ID: u8 = key(10, VARINT);
    pub(super) const XLINE_DISPLAY_NAME: u8 = key(11, LEN);

    /// Bytes of a varint; an int64 is written as its two's-complement u64.
    #[inline]
    pub(super) fn varint_len(value: u64) -> usize {
        encoded_len_varint(value)
    }

    #[inline]
    pub(super) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push(value as u8 | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    /// A few fields assembled on the stack: at most four keys and four varints.
    pub(super) struct Scratch {
        bytes: [u8; 4 * (1 + 10)],
        len: usize,
    }

    impl Scratch {
        #[inline]
        pub(super) fn new() -> Self {
            Scratch {
                bytes: [0; 4 * (1 + 10)],
                len: 0,
            }
        }

        #[inline]
        pub(super) fn push(&mut self, byte: u8) {
            self.bytes[self.len] = byte;
            self.len += 1;
        }

        #[inline]
        pub(super) fn varint(&mut self, mut value: u64) {
            while value >= 0x80 {
                self.push(value as u8 | 0x80);
                value >>= 7;
            }
            self.push(value as u8);
        }

        #[inline]
        pub(super) fn as_slice(&self) -> &[u8] {
            &self.bytes[..self.len]
        }
    }

    /// Bytes of a length-delimited field holding `len` bytes.
    #[inline]
    pub(super) fn framed_len(len: usize) -> usize {
        1 + varint_len(len as u64) + len
    }

    #[inline]
    pub(super) fn put_frame(out: &mut Vec<u8>, key: u8, len: usize) {
        out.push(key);
        put_varint(out, len as u64);
    }

    /// Bytes of an int64 field (none when zero).
    #[inline]
    pub(super) fn int64_len(value: i64) -> usize {
        if value == 0 {
            0
        } else {
            1 + varint_len(value as u64)
        }
    }

    #[inline]
    pub(super) fn put_int64(out: &mut Vec<u8>, key: u8, value: i64) {
        if value != 0 {
            out.push(key);
            put_varint(out, value as u64);
        }
    }

    pub(super) fn put_string(out: &mut Vec<u8>, key: u8, text: &str) {
        if !text.is_empty() {
            put_frame(out, key, text.len());
            out.extend_from_slice(text.as_bytes());
        }
    }
}

impl Layout<'_> {
    /// Encodes the profile: the bytes of its `.xplane.pb` (see the module docs for how).
    pub fn encode(&self) -> Vec<u8> {
        let events = self.snapshot.event_count() as usize;
        let mut out = Output::with_capacity(events.saturating_mul(16).saturating_add(1 << 16));
        // The host plane: its id and name, the lines, then the metadata maps (field order).
        let plane = out.open(wire::XSPACE_PLANES);
        let head = XPlane {
            id: 1,
            name: HOST_PLANE.to_owned(),
            ..Default::default()
        };
        put_message(&mut out.bytes, &head);
        let mut write = Write {
            ids: Ids::new(),
            out,
            line: None,
        };
        self.visit(&mut write);
        let Write { ids, mut out, .. } = write;
        put_message(&mut out.bytes, &ids.metadata());
        out.close(plane);
        // Then the environment plane, the warnings and the host name.
        let rest = XSpace {
            planes: vec![environment_plane(self.snapshot)],
            errors: Vec::new(),
            warnings: self.warnings.clone(),
            hostnames: vec![self.host.clone()],
        };
        put_message(&mut out.bytes, &rest);
        out.finish()
    }
}

/// Appends the fields of `message` (without a length prefix).
fn put_message(out: &mut Vec<u8>, message: &impl Message) {
    message
        .encode(out)
        .expect("a Vec grows to hold any message");
}

/// The bytes being written, where a length-delimited field can be opened before its length
/// is known.
///
/// [`open`](Output::open) leaves room for the longest key and length;
/// [`close`](Output::close) writes them at the end of that room, which leaves a gap before
/// them; [`finish`](Output::finish) closes the gaps. Measuring every line first would take
/// a second pass over millions of events; closing the gaps is one move of bytes that are in
/// memory already.
struct Output {
    bytes: Vec<u8>,
    /// Byte ranges to drop, in the order they were made.
    gaps: Vec<std::ops::Range<usize>>,
    /// Their total length.
    gaps_len: usize,
}

/// A field opened in an [`Output`].
struct Opened {
    key: u8,
    /// Where its room for the key and length begins.
    at: usize,
    /// The gaps' total length when it was opened.
    gaps_len: usize,
}

/// The longest key (of a field numbered below 16) and length.
const MAX_FRAME: usize = 1 + 10;

impl Output {
    fn with_capacity(capacity: usize) -> Self {
        Output {
            bytes: Vec::with_capacity(capacity),
            gaps: Vec::new(),
            gaps_len: 0,
        }
    }

    /// Opens a length-delimited field whose key is `key`.
    fn open(&mut self, key: u8) -> Opened {
        let at = self.bytes.len();
        self.bytes.resize(at + MAX_FRAME, 0);
        Opened {
            key,
            at,
            gaps_len: self.gaps_len,
        }
    }

    /// Closes `field`: everything written since it was opened is its content.
    fn close(&mut self, field: Opened) {
        let content = field.at + MAX_FRAME;
        // The gaps left by the fields it holds are not part of it.
        let len = self.bytes.len() - content - (self.gaps_len - field.gaps_len);
        let mut frame = wire::Scratch::new();
        frame.push(field.key);
        frame.varint(len as u64);
        let start = content - frame.as_slice().len();
        self.bytes[start..content].copy_from_slice(frame.as_slice());
        self.gaps.push(field.at..start);
        self.gaps_len += start - field.at;
    }

    /// The bytes without the gaps.
    fn finish(self) -> Vec<u8> {
        let Output {
            mut bytes,
            mut gaps,
            ..
        } = self;
        // A field's gap is made when it closes, after the gaps of the fields inside it.
        gaps.sort_unstable_by_key(|gap| gap.start);
        // Move each run of bytes between gaps (and the one after the last) to `to`.
        let end = bytes.len();
        let mut to = 0;
        let mut from = 0;
        let runs = gaps
            .iter()
            .map(|gap| (gap.start, gap.end))
            .chain([(end, end)]);
        for (run_end, next_from) in runs {
            if to != from {
                bytes.copy_within(from..run_end, to);
            }
            to += run_end - from;
            from = next_from;
        }
        bytes.truncate(to);
        bytes
    }
}

/// The metadata ids of one plane.
struct Ids<'s> {
    events: Interner<'s>,
    stats: Interner<'s>,
}

impl<'s> Ids<'s> {
    fn new() -> Self {
        Ids {
            events: Interner::new(),
            stats: Interner::new(),
        }
    }

    /// The plane's metadata maps, every id with its name.
    fn metadata(&self) -> XPlane {
        let events = self.events.iter().map(|(id, name)| {
            let metadata = XEventMetadata {
                id,
                name: name.to_owned(),
                ..Default::default()
            };
            (id, metadata)
        });
        let stats = self.stats.iter().map(|(id, name)| {
            let metadata = XStatMetadata {
                id,
                name: name.to_owned(),
                description: String::new(),
            };
            (id, metadata)
        });
        XPlane {
            event_metadata: events.collect(),
            stat_metadata: stats.collect(),
            ..Default::default()
        }
    }

    /// An event's metadata id and the length of its message.
    // Inlined into both passes, so that the event's fields stay in registers.
    #[inline(always)]
    fn event(&mut self, event: &EventView<'s, '_>) -> (i64, usize) {
        let id = self.events.id_with_suffix(event.name, event.suffix);
        let mut len = 1
            + wire::varint_len(id as u64)
            + 1
            + wire::varint_len(event.offset_ps as u64)
            + wire::int64_len(event.duration_ps);
        if !event.stats.is_empty() {
            for (name, value) in event.stats.iter() {
                len += wire::framed_len(stat_len(self.stats.id(name), value));
            }
        }
        (id, len)
    }
}

/// The length of an `XStat` message.
fn stat_len(metadata_id: i64, value: StatValue<'_>) -> usize {
    let value_len = match value {
        StatValue::Int(v) => 1 + wire::varint_len(v as u64),
        StatValue::UInt(v) | StatValue::Ref { id: v, .. } => 1 + wire::varint_len(v),
        StatValue::Double(_) => 1 + 8,
        StatValue::Str(s) => wire::framed_len(s.len()),
        StatValue::Bytes(b) => wire::framed_len(b.len()),
        StatValue::Missing => 0,
    };
    wire::int64_len(metadata_id) + value_len
}

fn put_stat(out: &mut Vec<u8>, metadata_id: i64, value: StatValue<'_>) {
    wire::put_int64(out, wire::XSTAT_METADATA_ID, metadata_id);
    match value {
        StatValue::Int(v) => {
            out.push(wire::XSTAT_INT64);
            wire::put_varint(out, v as u64);
        }
        StatValue::UInt(v) => {
            out.push(wire::XSTAT_UINT64);
            wire::put_varint(out, v);
        }
        StatValue::Double(v) => {
            out.push(wire::XSTAT_DOUBLE);
            out.extend_from_slice(&v.to_le_bytes());
        }
        StatValue::Str(s) => {
            wire::put_frame(out, wire::XSTAT_STR, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        StatValue::Bytes(b) => {
            wire::put_frame(out, wire::XSTAT_BYTES, b.len());
            out.extend_from_slice(b);
        }
        StatValue::Ref { id, .. } => {
            out.push(wire::XSTAT_REF);
            wire::put_varint(out, id);
        }
        StatValue::Missing => {}
    }
}

/// Writes the lines of [`Layout::encode`].
struct Write<'s> {
    ids: Ids<'s>,
    out: Output,
    /// The open line, and its fields numbered after its events, written at its end.
    line: Option<(Opened, i64, i64, &'s str)>,
}

impl<'s> Visitor<'s> for Write<'s> {
    fn line(&mut self, line: &LineView<'s>) {
        let field = self.out.open(wire::XPLANE_LINES);
        let out = &mut self.out.bytes;
        wire::put_int64(out, wire::XLINE_ID, line.id);
        wire::put_string(out, wire::XLINE_NAME, line.name);
        wire::put_int64(out, wire::XLINE_TIMESTAMP_NS, line.timestamp_ns);
        self.line = Some((field, line.duration_ps, line.display_id, line.display_name));
    }

    #[inline]
    fn event(&mut self, event: &EventView<'s, '_>) {
        let (id, len) = self.ids.event(event);
        // Most events are only these fields: put them together on the stack, append once.
        let mut head = wire::Scratch::new();
        head.push(wire::XLINE_EVENTS);
        head.varint(len as u64);
        head.push(wire::XEVENT_METADATA_ID);
        head.varint(id as u64);
        head.push(wire::XEVENT_OFFSET_PS);
        head.varint(event.offset_ps as u64);
        if event.duration_ps != 0 {
            head.push(wire::XEVENT_DURATION_PS);
            head.varint(event.duration_ps as u64);
        }
        let out = &mut self.out.bytes;
        out.extend_from_slice(head.as_slice());
        if !event.stats.is_empty() {
            for (name, value) in event.stats.iter() {
                let stat_id = self.ids.stats.id(name);
                wire::put_frame(out, wire::XEVENT_STATS, stat_len(stat_id, value));
                put_stat(out, stat_id, value);
            }
        }
    }

    fn line_end(&mut self) {
        let (field, duration_ps, display_id, display_name) =
            self.line.take().expect("a line is open");
        let out = &mut self.out.bytes;
        wire::put_int64(out, wire::XLINE_DURATION_PS, duration_ps);
        wire::put_int64(out, wire::XLINE_DISPLAY_ID, display_id);
        wire::put_string(out, wire::XLINE_DISPLAY_NAME, display_name);
        self.out.close(field);
    }
}

#[cfg(test)]
pub(crate) mod tests;
