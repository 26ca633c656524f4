//! Where each recorded event goes: the lines of the host plane, the step markers and the
//! step links, planned from a snapshot without copying any event.
//!
//! A thread whose events nest, the usual case, becomes one line that is the thread's own
//! event list; the rules of nesting and of steps are `analysis`'s. The event metadata, one
//! per call site and what `ops` names it, is planned here too.

use std::borrow::Cow;

use ahash::AHashMap;
use trace_runtime::snapshot::{Event, HeapEventKind, Snapshot, ThreadRecord};
use trace_runtime::Callsite;

use super::ops::{full_names, OpSource};
use super::read::{Added, EventView, LineView, Stats, Visitor};
use super::schema::{
    line_id, ns_to_ps, COUNTERS_LINE, COUNTERS_LINE_ID, HEAP_COUNTER, HEAP_COUNTER_STAT, HEAP_LINE,
    HEAP_LINE_ID, HOST_PLANE, MEMORY_ALLOCATION, MEMORY_DEALLOCATION, PS_PER_NS, SELF_SUFFIX,
};
use crate::analysis::heap::HeapProfile;
use crate::analysis::nesting::{nest_into_lines, nests_on_one_line};
use crate::analysis::steps::{find_steps, step_links, StepTime, Steps};

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
/// # fn demo(snapshot: &trace_runtime::snapshot::Snapshot) -> std::io::Result<()> {
/// let layout = Layout::new(snapshot, "my-host");
/// std::fs::write("my-host.xplane.pb", layout.encode())?;
/// chrome::write_json(&layout, std::fs::File::create("my-host.trace.json")?)?;
/// println!("{}", Report::from_profile(&layout));
/// # Ok(()) }
/// ```
pub struct Layout<'a> {
    pub(super) snapshot: &'a Snapshot,
    pub(super) host: String,
    lines: Vec<LinePlan<'a>>,
    steps: Steps,
    /// The allocations and frees, on their threads' first lines.
    heap: HeapProfile,
    ops: Ops,
    pub(super) warnings: Vec<String>,
}

impl std::fmt::Debug for Layout<'_> {
    /// A summary: the events themselves are the snapshot's.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layout")
            .field("host", &self.host)
            .field("lines", &self.lines.len())
            .field("events", &self.snapshot.event_count())
            .field("steps", &self.steps.markers.len())
            .field("ops", &self.ops.names.len())
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

    /// The event at `position` in the line.
    fn get(&self, position: usize) -> Option<&'a Event> {
        match &self.picked {
            None => self.events.get(position),
            Some(picked) => picked.get(position).map(|&i| &self.events[i]),
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
        let heap = HeapProfile::new(snapshot);
        for thread in snapshot.threads() {
            plan_thread(thread, &mut lines);
        }
        let steps = find_steps(lines.iter().map(LinePlan::iter));
        for (index, line) in lines.iter_mut().enumerate() {
            // Events on the markers' own line are grouped by nesting already.
            if index != steps.line {
                line.links = step_links(line.iter(), &steps);
            }
        }
        let ops = Ops::new(snapshot, &lines, &steps);
        Layout {
            snapshot,
            host: host.to_owned(),
            lines,
            steps,
            ops,
            warnings: warnings(snapshot, &heap),
            heap,
        }
    }

    /// The steps of the overview page, in time order.
    pub(crate) fn step_times(&self) -> impl Iterator<Item = StepTime> + '_ {
        self.steps.times()
    }

    /// The host's name.
    pub(super) fn host(&self) -> &str {
        &self.host
    }

    /// The ids of the host plane's lines, in order.
    pub(super) fn line_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.lines.iter().map(|line| line.id)
    }

    /// Calls `visitor` with the host plane, each line, and each line's events with their
    /// stats: the recorded metadata, then the step stats added here.
    pub(super) fn visit<'s, V: Visitor<'s>>(&'s self, visitor: &mut V) {
        visitor.plane(HOST_PLANE);
        let duration_ps = (self.snapshot.duration_ns as i64).saturating_mul(PS_PER_NS);
        let mut recent = Recent::new();
        for (index, line) in self.lines.iter().enumerate() {
            visitor.line(&LineView {
                id: line.id,
                display_id: line.id,
                name: &line.name,
                display_name: "",
                timestamp_ns: 0,
                duration_ps,
            });
            let markers = markers_on(&self.steps, index);
            walk_line(line, markers, |event, role, added, duration_ps| {
                let op = self.ops.find(&mut recent, event, role);
                let metadata = match role {
                    Role::MarkerSelf => &[],
                    Role::Op | Role::Marker => event.all_metadata(),
                };
                visitor.event(&EventView {
                    name: &self.ops.recorded[op],
                    op: &self.ops.names[op],
                    offset_ps: ns_to_ps(event.start_ns),
                    duration_ps,
                    stats: Stats::Recorded { metadata, added },
                });
            });
            visitor.line_end();
        }
        if !self.heap.samples.is_empty() {
            self.visit_heap(duration_ps, visitor);
        }
    }

    /// The heap line: every allocation and free, of all threads, in time order, each linked
    /// to the step it happened in by time. Its id is one of xprof's derived lines', which
    /// the op statistics leave out: an event with a `tf_op` stat counts as a call of that op
    /// on any other line. Then the counter line, for the trace viewer.
    fn visit_heap<'s, V: Visitor<'s>>(&'s self, duration_ps: i64, visitor: &mut V) {
        visitor.line(&LineView {
            id: HEAP_LINE_ID,
            display_id: HEAP_LINE_ID,
            name: HEAP_LINE,
            display_name: "",
            timestamp_ns: 0,
            duration_ps,
        });
        for sample in &self.heap.samples {
            let link = self.steps.at(sample.time_ns).map(step_link_id);
            visitor.event(&EventView {
                // Named as TensorFlow's allocators name them, with no name to show: the
                // trace viewer hides them, and the other readers draw or count them.
                name: "",
                op: match sample.kind {
                    HeapEventKind::Allocation => MEMORY_ALLOCATION,
                    HeapEventKind::Deallocation => MEMORY_DEALLOCATION,
                },
                offset_ps: ns_to_ps(sample.time_ns),
                duration_ps: 0,
                stats: Stats::Heap { sample, link },
            });
        }
        visitor.line_end();
        if visitor.wants_counters() {
            visitor.line(&LineView {
                id: COUNTERS_LINE_ID,
                display_id: COUNTERS_LINE_ID,
                name: COUNTERS_LINE,
                display_name: "",
                timestamp_ns: 0,
                duration_ps,
            });
            for sample in &self.heap.samples {
                visitor.event(&EventView {
                    name: "",
                    op: HEAP_COUNTER,
                    offset_ps: ns_to_ps(sample.time_ns),
                    duration_ps: 0,
                    stats: Stats::Counter {
                        name: HEAP_COUNTER_STAT,
                        value: i64::try_from(sample.in_use).unwrap_or(i64::MAX),
                    },
                });
            }
            visitor.line_end();
        }
    }
}

/// What an event stands for in the profile, which decides its metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Role {
    /// Any recorded event but a root step marker: an op.
    Op,
    /// A root step marker (`_r`).
    Marker,
    /// The event the exporter adds for a childless root marker's own time.
    MarkerSelf,
}

/// Calls `each` with the events of one line in order, as the profile holds them: each
/// recorded event with its role, the stats the exporter adds to it and its duration in
/// picoseconds, and the synthetic child of a root step marker that has none. `markers` are
/// the positions of the line's root step markers.
///
/// An event that ends when an event it lies in ends is written 1 ps shorter per such event:
/// xprof's op statistics sort begins and ends by time, keeping the line's order on ties,
/// which puts the outer end first and drops the inner op. The recorded times are whole
/// nanoseconds, and the inner scope did end first, so the order is the true one; readers
/// round to nanoseconds.
#[inline]
fn walk_line<'a>(
    line: &LinePlan<'a>,
    markers: &[usize],
    mut each: impl FnMut(&'a Event, Role, Added, i64),
) {
    let mut events = line.iter().peekable();
    let mut markers = markers.iter().enumerate().peekable();
    let mut links = line.links.iter().peekable();
    // The ends of the events that the current one lies in, innermost last (non-increasing:
    // the line nests).
    let mut open: Vec<u64> = Vec::new();
    let mut position = 0;
    while let Some(event) = events.next() {
        while let Some(&end) = open.last() {
            if end > event.start_ns {
                break;
            }
            open.pop();
        }
        let ties = match open.last() {
            Some(&end) if end == event.end_ns => (open.iter().rev())
                .take_while(|&&end| end == event.end_ns)
                .count(),
            _ => 0,
        };
        let recorded_ps = ns_to_ps(event.end_ns.saturating_sub(event.start_ns));
        let shortened = |by: usize| recorded_ps.saturating_sub(by as i64).max(0);
        let duration = shortened(ties);
        // Markers and links are sorted by position: each is the next one or not there.
        // (Links are never on the markers' line: their events are grouped by nesting.)
        let marker = markers.next_if(|&(_, &at)| at == position);
        if let Some((step, _)) = marker {
            each(
                event,
                Role::Marker,
                Added::Marker(step_link_id(step)),
                duration,
            );
        } else if let Some(&(_, step)) = links.next_if(|&&(at, _)| at == position) {
            each(event, Role::Op, Added::Link(step_link_id(step)), duration);
        } else {
            each(event, Role::Op, Added::None, duration);
        }
        if marker.is_some() && needs_own_time(event, events.peek().copied()) {
            // It lies in the marker and ends with it.
            each(
                event,
                Role::MarkerSelf,
                Added::Synthetic,
                shortened(ties + 1),
            );
        }
        open.push(event.end_ns);
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
        (0..events.len()).partition(|&i| !events[i].is_async());
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

/// Whether a root step marker gets a child that stands for its own time: xprof keeps only
/// steps with some compute inside, and a marker with no event nested in it (the `next` on its
/// line starts at its end or later) has none.
fn needs_own_time(marker: &Event, next: Option<&Event>) -> bool {
    next.is_none_or(|next| next.start_ns >= marker.end_ns)
}

/// The positions of the root step markers on the line numbered `index`.
fn markers_on(steps: &Steps, index: usize) -> &[usize] {
    if index == steps.line {
        &steps.markers
    } else {
        &[]
    }
}

/// The event metadata of the host plane, planned before any of it is written: one per call
/// site, per name of the events recorded without one (`Trace::new`, `tracing` spans), per
/// name of root step markers, and per childless marker's own time (each role apart, so that
/// a call site's root markers keep their name and its other events are an op). The
/// encoder numbers them in the order the profile first holds them.
///
/// Planned here rather than as the encoder meets them, because the names tell call sites
/// apart by their place in the source (`ops`), which takes knowing all of them, and the
/// Chrome trace and the report, written alongside, read the same names.
struct Ops {
    /// Per op: what its events were recorded as (a marker's own time: the marker's name and
    /// `/self`), and the name xprof reads.
    recorded: Vec<Cow<'static, str>>,
    names: Vec<String>,
    /// Ops by call site address, and by name for events without a call site.
    sites: AHashMap<(usize, Role), usize>,
    named: AHashMap<(&'static str, Role), usize>,
}

impl Ops {
    fn new(snapshot: &Snapshot, lines: &[LinePlan<'_>], steps: &Steps) -> Ops {
        let mut plan = OpsPlan {
            ops: Ops {
                recorded: Vec::new(),
                names: Vec::new(),
                sites: AHashMap::new(),
                named: AHashMap::new(),
            },
            sources: Vec::new(),
            events: Vec::new(),
            recent: Recent::new(),
        };
        // Every event is an op of its call site (or name)...
        for thread in snapshot.threads() {
            for event in &thread.events {
                plan.count(event, Role::Op, 1);
            }
        }
        // ...but a root step marker, and a childless one has a child that is one.
        if let Some(line) = lines.get(steps.line) {
            for &position in &steps.markers {
                let marker = line
                    .get(position)
                    .expect("a marker is an event of its line");
                plan.count(marker, Role::Op, -1);
                plan.count(marker, Role::Marker, 1);
                if needs_own_time(marker, line.get(position + 1)) {
                    plan.count(marker, Role::MarkerSelf, 1);
                }
            }
        }
        // Only the ops that some event is get a name.
        let OpsPlan {
            mut ops,
            sources,
            events,
            ..
        } = plan;
        let live: Vec<usize> = (0..events.len()).filter(|&op| events[op] > 0).collect();
        let live_sources: Vec<OpSource<'_>> = (live.iter())
            .map(|&op| OpSource {
                recorded: &ops.recorded[op],
                site: sources[op].0,
                marker: sources[op].1,
            })
            .collect();
        let names = full_names(&live_sources);
        ops.names = vec![String::new(); events.len()];
        for (op, name) in live.into_iter().zip(names) {
            ops.names[op] = name;
        }
        ops
    }

    /// The op of `event` in `role`.
    #[inline]
    fn find(&self, recent: &mut Recent, event: &Event, role: Role) -> usize {
        let key = Recent::key(event, role);
        if let Some(op) = recent.get(key) {
            return op;
        }
        let op = (self.lookup(event, role)).expect("the layout plans the op of every event");
        recent.put(key, op);
        op
    }

    #[inline(never)]
    fn lookup(&self, event: &Event, role: Role) -> Option<usize> {
        match event.callsite() {
            Some(site) => self.sites.get(&(address(site), role)),
            None => self.named.get(&(event.name(), role)),
        }
        .copied()
    }
}

/// [`Ops`] being planned: each op's call site and role, and how many events it has.
struct OpsPlan {
    ops: Ops,
    sources: Vec<(Option<&'static Callsite>, bool)>,
    events: Vec<isize>,
    recent: Recent,
}

impl OpsPlan {
    /// Counts `n` more events for the op of `event` in `role`, made if it is new.
    #[inline]
    fn count(&mut self, event: &Event, role: Role, n: isize) {
        let key = Recent::key(event, role);
        let op = match self.recent.get(key) {
            Some(op) => op,
            None => {
                let op = self
                    .ops
                    .lookup(event, role)
                    .unwrap_or_else(|| self.add(event, role));
                self.recent.put(key, op);
                op
            }
        };
        self.events[op] += n;
    }

    #[inline(never)]
    fn add(&mut self, event: &Event, role: Role) -> usize {
        let ops = &mut self.ops;
        let op = ops.recorded.len();
        let name = event.name();
        ops.recorded.push(match role {
            Role::MarkerSelf => Cow::Owned(format!("{name}{SELF_SUFFIX}")),
            Role::Op | Role::Marker => Cow::Borrowed(name),
        });
        match event.callsite() {
            Some(site) => ops.sites.insert((address(site), role), op),
            None => ops.named.insert((name, role), op),
        };
        self.sources.push((event.callsite(), role == Role::Marker));
        self.events.push(0);
        op
    }
}

fn address(site: &'static Callsite) -> usize {
    site as *const Callsite as usize
}

/// The ops of the events met last, by the address of their call site or name, so that the
/// usual lookup hashes no text: most events come from a few call sites.
struct Recent(Box<[(usize, usize, usize); RECENT]>);

/// Entries of a [`Recent`] table.
const RECENT: usize = 256;

impl Recent {
    fn new() -> Self {
        // No call site or name is at address 0, so the empty table matches nothing.
        Recent(Box::new([(0, 0, 0); RECENT]))
    }

    /// An event's key: its call site's address and role, or its name's address, length and
    /// role (odd, so that the two never meet).
    #[inline]
    fn key(event: &Event, role: Role) -> (usize, usize) {
        match event.callsite() {
            Some(site) => (address(site), (role as usize) << 1),
            None => {
                let name = event.name();
                (
                    name.as_ptr() as usize,
                    (name.len() << 2 | role as usize) << 1 | 1,
                )
            }
        }
    }

    #[inline]
    fn slot((address, tag): (usize, usize)) -> usize {
        // Fibonacci hashing picks the slot.
        ((address ^ tag).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) % RECENT
    }

    #[inline]
    fn get(&self, key: (usize, usize)) -> Option<usize> {
        let (address, tag, op) = self.0[Self::slot(key)];
        ((address, tag) == key).then_some(op)
    }

    #[inline]
    fn put(&mut self, key: (usize, usize), op: usize) {
        self.0[Self::slot(key)] = (key.0, key.1, op);
    }
}

pub(super) fn step_link_id(step_index: usize) -> i64 {
    step_index as i64 + 1
}

fn warnings(snapshot: &Snapshot, heap: &HeapProfile) -> Vec<String> {
    let mut warnings = Vec::new();
    let (small, small_bytes) = heap.unrecorded;
    if small > 0 {
        warnings.push(format!(
            "heap: {small} allocations ({small_bytes} bytes in all) were smaller than the \
             traced allocator records and are not in the memory profile; lower \
             TracedAllocator::min_recorded_bytes to see them"
        ));
    }
    for thread in snapshot.threads() {
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
