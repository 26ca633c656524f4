//! Steps: which events mark training steps, and which work belongs to which step.
//!
//! Events that carry an integer `step_num` are step markers. One root per step is wanted,
//! never one per thread, so only the outermost markers of the one line that has the most of
//! them count (a marker nested in another is part of that step). Every event of another line
//! that lies wholly inside a step's time window belongs to that step: the work of data
//! loaders and worker pools counts toward the step during which it ran, **by time**.
//!
//! The profile's overview page (through the `_r` roots and `_pt/_ct` links the XSpace writer
//! adds), the `profile/step_time_ms` summaries and the text report all read these steps.

use trace_runtime::snapshot::Event;
use trace_runtime::Value;

/// The step markers of a profile's lines.
#[derive(Debug, Default)]
pub(crate) struct Steps {
    /// The line that holds the markers.
    pub(crate) line: usize,
    /// Positions in that line's events, in time order.
    pub(crate) markers: Vec<usize>,
    /// The markers' time windows, in the same order.
    pub(crate) windows: Vec<(u64, u64)>,
    /// The markers' step numbers, in the same order.
    pub(crate) numbers: Vec<i64>,
}

/// One step: its number, its duration, and when it ended (ns since the session start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StepTime {
    pub(crate) step: i64,
    pub(crate) duration_ns: u64,
    pub(crate) end_ns: u64,
}

impl Steps {
    /// The step whose window contains `time_ns`, by index.
    pub(crate) fn at(&self, time_ns: u64) -> Option<usize> {
        let i = self
            .windows
            .partition_point(|&(start, _)| start <= time_ns)
            .checked_sub(1)?;
        (time_ns <= self.windows[i].1).then_some(i)
    }

    /// The steps, in time order.
    pub(crate) fn times(&self) -> impl Iterator<Item = StepTime> + '_ {
        self.windows
            .iter()
            .zip(&self.numbers)
            .map(|(&(start, end), &step)| StepTime {
                step,
                duration_ns: end - start,
                end_ns: end,
            })
    }
}

/// An event's `step_num` as xprof wants it: an int64.
pub(crate) fn step_num(event: &Event) -> Option<i64> {
    match event.metadata("step_num")? {
        Value::Int(n) => Some(*n),
        Value::UInt(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

/// The step markers among `lines` (each line's events in order).
pub(crate) fn find_steps<'e, L>(lines: impl IntoIterator<Item = L>) -> Steps
where
    L: IntoIterator<Item = &'e Event>,
{
    let mut best = Steps::default();
    for (line_index, line) in lines.into_iter().enumerate() {
        let mut steps = Steps {
            line: line_index,
            ..Default::default()
        };
        for (position, event) in line.into_iter().enumerate() {
            if event.all_metadata().is_empty() {
                continue;
            }
            let Some(step) = step_num(event) else {
                continue;
            };
            if steps
                .windows
                .last()
                .is_some_and(|&(_, end)| event.start_ns < end)
            {
                continue; // nested in the previous step marker
            }
            steps.markers.push(position);
            steps.windows.push((event.start_ns, event.end_ns));
            steps.numbers.push(step);
        }
        if steps.markers.len() > best.markers.len() {
            best = steps;
        }
    }
    best
}

/// The events of another line than the markers' that belong to a step: `(position, step
/// index)` of each outermost event that lies wholly inside a step's window (its descendants
/// belong to the step through nesting).
pub(crate) fn step_links<'e>(
    line: impl IntoIterator<Item = &'e Event>,
    steps: &Steps,
) -> Vec<(usize, usize)> {
    let mut links = Vec::new();
    if steps.markers.is_empty() {
        return links;
    }
    let mut linked_until = 0;
    for (position, event) in line.into_iter().enumerate() {
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
    links
}
