//! Nesting: how a thread's events are split into lines in which every two events are nested
//! or disjoint, as xprof derives nesting from the order of a line's events.

use trace_runtime::snapshot::Event;

/// The end times of a line's open events, innermost last.
#[derive(Default)]
pub(crate) struct OpenEvents(Vec<u64>);

impl OpenEvents {
    /// Closes the events that ended by `event`'s start; true if `event` then nests in the
    /// innermost open one (or none is open), so that the line can take it.
    #[inline]
    pub(crate) fn admits(&mut self, event: &Event) -> bool {
        while self.0.last().is_some_and(|&end| end <= event.start_ns) {
            self.0.pop();
        }
        !matches!(self.0.last(), Some(&end) if event.end_ns > end)
    }

    pub(crate) fn open(&mut self, event: &Event) {
        self.0.push(event.end_ns);
    }
}

/// True if all `events` (sorted) are synchronous and every two are nested or disjoint:
/// [`nest_into_lines`] would put them all on one line.
pub(crate) fn nests_on_one_line(events: &[Event]) -> bool {
    let mut open = OpenEvents::default();
    for event in events {
        if event.is_async() || !open.admits(event) {
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
pub(crate) fn nest_into_lines(events: &[Event], picked: Vec<usize>) -> Vec<Vec<usize>> {
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
