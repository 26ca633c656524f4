//! Where each recorded event goes: the lines of the host plane, the step markers and the
//! step links, planned from a snapshot without copying any event.
//!
//! A thread whose events nest, the usual case, becomes one line that is the thread's own
//! event list; the rules of nesting and of steps are `analysis`'s.

use trace_runtime::snapshot::{Event, HeapEventKind, Snapshot, ThreadRecord};

use super::read::{Added, EventView, LineView, Stats, Visitor};
use super::schema::{
    line_id, ns_to_ps, COUNTERS_LINE, COUNTERS_LINE_ID, HEAP_COUNTER, HEAP_COUNTER_STAT,
    HOST_PLANE, MEMORY_ALLOCATION, MEMORY_DEALLOCATION, PS_PER_NS, SELF_SUFFIX,
};
use crate::analysis::heap::{HeapProfile, HeapSample};
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
    /// The thread (its index in the snapshot) whose heap events this line holds: a thread's
    /// first line holds them.
    heap_of: Option<usize>,
}

impl<'a> LinePlan<'a> {
    fn new(id: i64, name: String, events: &'a [Event], picked: Option<Vec<usize>>) -> Self {
        LinePlan {
            id,
            name,
            events,
            picked,
            links: Vec::new(),
            heap_of: None,
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
        for (index, thread) in snapshot.threads().iter().enumerate() {
            let first = lines.len();
            plan_thread(thread, &mut lines);
            if !heap.threads[index].is_empty() {
                if lines.len() == first {
                    // A thread that only allocated.
                    let id = line_id(thread.thread_id, 0);
                    lines.push(LinePlan::new(
                        id,
                        thread.name.clone(),
                        &[],
                        Some(Vec::new()),
                    ));
                }
                lines[first].heap_of = Some(index);
            }
        }
        let steps = find_steps(lines.iter().map(LinePlan::iter));
        for (index, line) in lines.iter_mut().enumerate() {
            // Events on the markers' own line are grouped by nesting already.
            if index != steps.line {
                line.links = step_links(line.iter(), &steps);
            }
        }
        Layout {
            snapshot,
            host: host.to_owned(),
            lines,
            steps,
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
            let heap = HeapEvents {
                samples: line.heap_of.map_or(&[], |t| &self.heap.threads[t][..]),
                // Off the markers' line, each is linked to its step by time.
                steps: (index != self.steps.line).then_some(&self.steps),
            };
            visit_line(line, markers, heap, visitor);
            visitor.line_end();
        }
        if !self.heap.in_use.is_empty() && visitor.wants_counters() {
            visitor.line(&LineView {
                id: COUNTERS_LINE_ID,
                display_id: COUNTERS_LINE_ID,
                name: COUNTERS_LINE,
                display_name: "",
                timestamp_ns: 0,
                duration_ps,
            });
            for &(time_ns, in_use) in &self.heap.in_use {
                visitor.event(&EventView {
                    name: HEAP_COUNTER,
                    suffix: "",
                    offset_ps: ns_to_ps(time_ns),
                    duration_ps: 0,
                    stats: Stats::Counter {
                        name: HEAP_COUNTER_STAT,
                        value: i64::try_from(in_use).unwrap_or(i64::MAX),
                    },
                });
            }
            visitor.line_end();
        }
    }
}

/// The heap events of a line, and the steps to link them to.
struct HeapEvents<'s> {
    samples: &'s [HeapSample],
    steps: Option<&'s Steps>,
}

impl<'s> HeapEvents<'s> {
    /// Visits the heap events before `until_ns` (all with `None`), in time order. At equal
    /// times they follow the line's events: zero-length events come after longer ones.
    #[inline]
    fn visit_before<V: Visitor<'s>>(&mut self, until_ns: Option<u64>, visitor: &mut V) {
        let due = match until_ns {
            None => self.samples.len(),
            Some(t) => self.samples.partition_point(|s| s.time_ns < t),
        };
        let (now, later) = self.samples.split_at(due);
        self.samples = later;
        for sample in now {
            let link = self.steps.and_then(|steps| steps.at(sample.time_ns));
            visitor.event(&EventView {
                name: match sample.kind {
                    HeapEventKind::Allocation => MEMORY_ALLOCATION,
                    HeapEventKind::Deallocation => MEMORY_DEALLOCATION,
                },
                suffix: "",
                offset_ps: ns_to_ps(sample.time_ns),
                duration_ps: 0,
                stats: Stats::Heap {
                    sample,
                    link: link.map(step_link_id),
                },
            });
        }
    }
}

/// Visits the events of one line; `markers` are the positions of its step markers. The
/// heap events go in among them by time.
#[inline]
fn visit_line<'s, V: Visitor<'s>>(
    line: &'s LinePlan<'_>,
    markers: &[usize],
    mut heap: HeapEvents<'s>,
    visitor: &mut V,
) {
    let mut events = line.iter().peekable();
    let mut markers = markers.iter().enumerate().peekable();
    let mut links = line.links.iter().peekable();
    let mut position = 0;
    while let Some(event) = events.next() {
        if !heap.samples.is_empty() {
            heap.visit_before(Some(event.start_ns), visitor);
        }
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
            name: event.name(),
            suffix: "",
            offset_ps,
            duration_ps,
            stats: Stats::Recorded {
                metadata: event.all_metadata(),
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
                name: event.name(),
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
    heap.visit_before(None, visitor);
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
