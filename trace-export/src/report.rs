//! The text report: call sites ranked by self time, and the step times.

use std::fmt;

use crate::proto::xplane::XSpace;
use ahash::AHashMap;

use crate::analysis::calls::Replay;
use crate::xspace::{
    is_heap_event, thread_of_line, EventView, Interner, LineView, Profile, StatValue, Visitor,
    MEMORY_DEALLOCATION, SYNTHETIC_STAT,
};

/// Statistics of one event name over a profile.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteStats {
    /// The event name, as recorded.
    pub name: String,
    /// The names xprof's tools list these events under, sorted: one op per call site
    /// (`my_crate/train/forward:Forward` in framework_op_stats), or a root step marker's own
    /// name.
    pub ops: Vec<String>,
    /// How many events.
    pub count: u64,
    /// Sum of durations, in nanoseconds.
    pub total_ns: u64,
    /// Sum of durations minus the time spent in nested events on the same thread.
    pub self_ns: u64,
    /// Median duration.
    pub p50_ns: u64,
    /// 99th-percentile duration.
    pub p99_ns: u64,
    /// Longest duration.
    pub max_ns: u64,
}

impl SiteStats {
    /// Mean duration in nanoseconds.
    pub fn mean_ns(&self) -> u64 {
        self.total_ns.checked_div(self.count).unwrap_or(0)
    }
}

/// One step: a root (`_r`) step marker of the profile.
#[derive(Clone, Debug, PartialEq)]
pub struct StepTime {
    /// The step marker's name and number, as the overview page shows it (`Train 3`).
    pub name: String,
    /// The step's duration in nanoseconds.
    pub duration_ns: u64,
}

/// The heap as the memory profile holds it: its peak, and who allocated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeapReport {
    /// Allocations recorded.
    pub allocations: u64,
    /// Frees recorded (of blocks allocated in the session).
    pub frees: u64,
    /// The most heap in use at once, in bytes.
    pub peak_bytes: u64,
    /// Per scope that allocated (the innermost open one; "" outside every scope): its
    /// allocations and their bytes, the most bytes first.
    pub by_scope: Vec<ScopeAllocations>,
}

/// What one scope allocated.
#[derive(Clone, Debug, PartialEq)]
pub struct ScopeAllocations {
    /// The scope's name.
    pub name: String,
    /// How many allocations.
    pub allocations: u64,
    /// Their bytes in all.
    pub bytes: u64,
}

/// What a profile holds, summed up: built from an `XSpace`, so it reads written files too.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Per event name, by self time, longest first.
    pub sites: Vec<SiteStats>,
    /// The steps, in order.
    pub steps: Vec<StepTime>,
    /// Events in the profile.
    pub events: u64,
    /// Threads that recorded.
    pub threads: usize,
    /// The profile's warnings (dropped events among them).
    pub warnings: Vec<String>,
    /// The heap, when a traced allocator recorded it.
    pub heap: HeapReport,
    /// Rows shown by `Display` (all when 0).
    pub top: usize,
}

impl Report {
    /// Computes the report of the host planes in `space` (a profile read from a file).
    pub fn from_xspace(space: &XSpace) -> Report {
        Report::from_profile(space)
    }

    /// Computes the report of the host planes of a profile: a
    /// [`Layout`](crate::xspace::Layout) planned from a recording, or an [`XSpace`].
    pub fn from_profile<'a>(profile: impl Into<Profile<'a>>) -> Report {
        let profile = profile.into();
        let mut lines_left: AHashMap<Thread, usize> = AHashMap::new();
        for (plane, id) in profile.line_ids() {
            *lines_left.entry((plane, thread_of_line(id))).or_default() += 1;
        }
        let mut tally = Tally {
            report: Report {
                warnings: profile.warnings().to_vec(),
                threads: lines_left.len(),
                top: 20,
                ..Default::default()
            },
            names: Interner::new(),
            sites: Vec::new(),
            lines_left,
            calls: AHashMap::new(),
            plane: None,
            line: None,
            lines_in_order: matches!(profile, Profile::Planned(_)),
            streaming: None,
            heap_scopes: AHashMap::new(),
        };
        profile.visit(&mut tally);
        tally.finish()
    }
}

/// A thread of a profile: its host plane (numbered from 0) and thread number.
type Thread = (usize, i64);

/// The events of one name, summed up.
#[derive(Default)]
struct Site<'a> {
    durations_ns: Durations,
    self_ps: u64,
    /// The distinct names xprof reads for them.
    ops: Vec<&'a str>,
}

/// Sums up a profile's events. Self time comes from the call-tree fold of each thread
/// (`analysis::calls`), as in the Graphs tab: the lines of a thread are merged back into the
/// thread's calls first.
struct Tally<'a> {
    report: Report,
    /// Event names, numbered 1, 2, ...: `sites[id - 1]` sums up the events named `id`.
    names: Interner<'a>,
    sites: Vec<Site<'a>>,
    /// Per thread: the lines not visited yet.
    lines_left: AHashMap<Thread, usize>,
    /// Per thread with lines still to come: its calls so far, `(name id, start, end)` in ps.
    calls: AHashMap<Thread, Vec<(i64, u64, u64)>>,
    /// The host plane being visited.
    plane: Option<usize>,
    /// The line being visited: its thread and where its events start (ps).
    line: Option<(Thread, u64)>,
    /// True when every line holds its events in start order, the longer first on ties (a
    /// profile planned from a recording); a file's lines are sorted here first.
    lines_in_order: bool,
    /// The fold of a thread that is one line in order, the usual case: its calls go straight
    /// in.
    streaming: Option<Replay<i64>>,
    /// Per scope that allocated: allocations and bytes.
    heap_scopes: AHashMap<&'a str, (u64, u64)>,
}

impl<'a> Visitor<'a> for Tally<'a> {
    fn plane(&mut self, _name: &'a str) {
        self.plane = Some(self.plane.map_or(0, |plane| plane + 1));
    }

    fn line(&mut self, line: &LineView<'a>) {
        let origin_ps = (line.timestamp_ns.max(0) as u64).saturating_mul(1000);
        let thread = (self.plane.unwrap_or(0), thread_of_line(line.id));
        self.line = Some((thread, origin_ps));
        let alone = self.lines_in_order
            && self.lines_left.get(&thread) == Some(&1)
            && !self.calls.contains_key(&thread);
        self.streaming = alone.then(Replay::new);
    }

    fn event(&mut self, event: &EventView<'a, '_>) {
        let stats = event.stats;
        if is_heap_event(event.op, event.duration_ps) {
            return self.heap_event(event);
        }
        if !stats.is_empty() {
            if stats.get(SYNTHETIC_STAT).is_some() {
                return;
            }
            if stats.get("_r").is_some() {
                let step = stats.get("step_num").map(StatValue::text);
                self.report.steps.push(StepTime {
                    name: format!("{} {}", event.shown(), step.unwrap_or_default()),
                    duration_ns: ps_to_ns(event.duration_ps),
                });
            }
        }
        let name = self.names.id(event.shown());
        if name as usize > self.sites.len() {
            self.sites.push(Site::default());
        }
        let site = &mut self.sites[name as usize - 1];
        site.durations_ns.push(ps_to_ns(event.duration_ps));
        // Nearly always the op of the event before: the same text at the same address.
        if !site
            .ops
            .last()
            .is_some_and(|op| std::ptr::eq(*op, event.op))
            && !site.ops.contains(&event.op)
        {
            site.ops.push(event.op);
        }
        self.report.events += 1;
        // Saturating: a profile read from a file may hold any offset and duration.
        let (thread, origin_ps) = self.line.expect("events come inside a line");
        let start = origin_ps.saturating_add(event.offset_ps.max(0) as u64);
        let end = start.saturating_add(event.duration_ps.max(0) as u64);
        match &mut self.streaming {
            Some(replay) => replay.call(name, None, start, end),
            None => self
                .calls
                .entry(thread)
                .or_default()
                .push((name, start, end)),
        }
    }

    fn line_end(&mut self) {
        let Some((thread, _)) = self.line.take() else {
            return;
        };
        let left = self.lines_left.entry(thread).or_insert(1);
        *left = left.saturating_sub(1);
        let replay = match self.streaming.take() {
            Some(replay) => replay,
            None if *left > 0 => return, // more of this thread's calls to come
            None => {
                let Some(mut calls) = self.calls.remove(&thread) else {
                    return;
                };
                // Lines merged back are sorted as a thread's events are, stably (so that a
                // line's own order stands on ties).
                calls.sort_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)));
                let mut replay = Replay::new();
                for (name, start, end) in calls {
                    replay.call(name, None, start, end);
                }
                replay
            }
        };
        for (name, self_ps) in replay.finish().self_times() {
            let site = &mut self.sites[name as usize - 1];
            site.self_ps = site.self_ps.saturating_add(self_ps);
        }
    }
}

impl<'a> Tally<'a> {
    /// Counts an allocation or free, by the stats of the memory profile.
    fn heap_event(&mut self, event: &EventView<'a, '_>) {
        let int = |key| match event.stats.get(key) {
            Some(StatValue::Int(v)) => v.max(0) as u64,
            _ => 0,
        };
        let heap = &mut self.report.heap;
        heap.peak_bytes = heap.peak_bytes.max(int("peak_bytes_in_use"));
        if event.op == MEMORY_DEALLOCATION {
            heap.frees += 1;
            return;
        }
        heap.allocations += 1;
        let scope = match event.stats.get("tf_op") {
            Some(StatValue::Str(name)) => name,
            _ => "",
        };
        let entry = self.heap_scopes.entry(scope).or_default();
        entry.0 += 1;
        entry.1 += int("requested_bytes");
    }

    fn finish(self) -> Report {
        let Tally {
            mut report,
            names,
            sites,
            heap_scopes,
            ..
        } = self;
        report.heap.by_scope = heap_scopes
            .into_iter()
            .map(|(name, (allocations, bytes))| ScopeAllocations {
                name: name.to_owned(),
                allocations,
                bytes,
            })
            .collect();
        (report.heap.by_scope)
            .sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
        report.sites = (1..)
            .zip(sites)
            .filter(|(_, site)| site.durations_ns.len() > 0)
            .map(|(id, site)| {
                let Site {
                    durations_ns: mut all,
                    self_ps,
                    ops,
                } = site;
                let mut ops: Vec<String> = ops.into_iter().map(str::to_owned).collect();
                ops.sort();
                let rank = |q: f64| ((all.len() - 1) as f64 * q).round() as u64;
                let (p50, p99) = (rank(0.5), rank(0.99));
                SiteStats {
                    name: names.name(id).to_owned(),
                    ops,
                    count: all.len(),
                    total_ns: all.total,
                    self_ns: round_ps_to_ns(self_ps),
                    p50_ns: all.nth(p50),
                    p99_ns: all.nth(p99),
                    max_ns: all.max,
                }
            })
            .collect();
        report
            .sites
            .sort_by(|a, b| b.self_ns.cmp(&a.self_ns).then_with(|| a.name.cmp(&b.name)));
        report
    }
}

/// The durations of one name's events, in nanoseconds, kept so that any rank among them is
/// exact: most events are short and many share a duration, so the short ones are counted
/// per nanosecond rather than kept one by one (8 bytes each, for millions of events).
#[derive(Default)]
struct Durations {
    /// How many lasted each number of nanoseconds below [`SHORT_NS`]; empty until one did.
    short: Vec<u64>,
    short_len: u64,
    /// The others: those that fit a `u32`, then the rest.
    medium: Vec<u32>,
    long: Vec<u64>,
    /// Their sum (saturating) and the longest.
    total: u64,
    max: u64,
}

/// Durations counted per nanosecond below this.
const SHORT_NS: u64 = 1024;

impl Durations {
    #[inline]
    fn push(&mut self, ns: u64) {
        self.total = self.total.saturating_add(ns);
        self.max = self.max.max(ns);
        if ns < SHORT_NS {
            if self.short.is_empty() {
                self.short = vec![0; SHORT_NS as usize];
            }
            self.short[ns as usize] += 1;
            self.short_len += 1;
        } else if let Ok(ns) = u32::try_from(ns) {
            self.medium.push(ns);
        } else {
            self.long.push(ns);
        }
    }

    fn len(&self) -> u64 {
        self.short_len + self.medium.len() as u64 + self.long.len() as u64
    }

    /// The `k`-th shortest, from 0; `k` is below [`len`](Self::len). Every short one is
    /// shorter than every medium one, and every medium one than every long one.
    fn nth(&mut self, k: u64) -> u64 {
        if k < self.short_len {
            let mut below = 0;
            for (ns, &count) in self.short.iter().enumerate() {
                below += count;
                if k < below {
                    return ns as u64;
                }
            }
        }
        let k = (k - self.short_len) as usize;
        if k < self.medium.len() {
            return u64::from(*self.medium.select_nth_unstable(k).1);
        }
        *self.long.select_nth_unstable(k - self.medium.len()).1
    }
}

/// Picoseconds as nanoseconds, to the nearest: the writer ends an event a few picoseconds
/// early when it ends with the event it lies in (see `xspace`).
fn ps_to_ns(ps: i64) -> u64 {
    round_ps_to_ns(ps.max(0) as u64)
}

fn round_ps_to_ns(ps: u64) -> u64 {
    ps / 1000 + u64::from(ps % 1000 >= 500)
}

/// Bytes in a short binary unit.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        let text = if b >= (1u64 << 30) as f64 {
            format!("{:.2} GiB", b / (1u64 << 30) as f64)
        } else if b >= (1 << 20) as f64 {
            format!("{:.2} MiB", b / (1 << 20) as f64)
        } else if b >= 1024.0 {
            format!("{:.2} KiB", b / 1024.0)
        } else {
            format!("{} B", self.0)
        };
        f.pad(&text)
    }
}

/// Nanoseconds in a short human unit.
struct Duration(u64);

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0 as f64;
        let text = if ns >= 1e9 {
            format!("{:.2} s", ns / 1e9)
        } else if ns >= 1e6 {
            format!("{:.2} ms", ns / 1e6)
        } else if ns >= 1e3 {
            format!("{:.2} µs", ns / 1e3)
        } else {
            format!("{} ns", self.0)
        };
        f.pad(&text)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} events on {} threads", self.events, self.threads)?;
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        if !self.steps.is_empty() {
            let total =
                (self.steps.iter()).fold(0u64, |sum, step| sum.saturating_add(step.duration_ns));
            writeln!(
                f,
                "{} steps, mean {}",
                self.steps.len(),
                Duration(total / self.steps.len() as u64)
            )?;
        }
        let width = self
            .sites
            .iter()
            .take(self.shown())
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(4)
            .clamp(4, 60);
        writeln!(
            f,
            "{:<width$}  {:>9}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}",
            "name", "count", "total", "self", "mean", "p50", "p99", "max"
        )?;
        for site in self.sites.iter().take(self.shown()) {
            let mut name: String = site.name.chars().take(width).collect();
            if site.name.chars().count() > width {
                name.pop();
                name.push('…');
            }
            // Keep the table on one line per row whatever the name holds.
            let name: String = name
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            writeln!(
                f,
                "{name:<width$}  {:>9}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}",
                site.count,
                Duration(site.total_ns),
                Duration(site.self_ns),
                Duration(site.mean_ns()),
                Duration(site.p50_ns),
                Duration(site.p99_ns),
                Duration(site.max_ns),
            )?;
        }
        if self.sites.len() > self.shown() {
            writeln!(f, "... {} more", self.sites.len() - self.shown())?;
        }
        let heap = &self.heap;
        if heap.allocations > 0 {
            writeln!(
                f,
                "heap: peak {} in use; {} allocations, {} frees",
                Bytes(heap.peak_bytes),
                heap.allocations,
                heap.frees
            )?;
            for scope in heap.by_scope.iter().take(self.shown().min(10)) {
                let name = if scope.name.is_empty() {
                    "(outside traced scopes)"
                } else {
                    &scope.name
                };
                let name: String = name
                    .chars()
                    .take(60)
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                writeln!(
                    f,
                    "  {name:<width$}  {:>9} allocations  {:>10}",
                    scope.allocations,
                    Bytes(scope.bytes)
                )?;
            }
        }
        Ok(())
    }
}

impl Report {
    fn shown(&self) -> usize {
        if self.top == 0 {
            self.sites.len()
        } else {
            self.top
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Ranks as a sorted copy gives them.
    fn check(values: &[u64]) {
        let mut durations = Durations::default();
        for &ns in values {
            durations.push(ns);
        }
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        assert_eq!(durations.len(), sorted.len() as u64);
        assert_eq!(durations.max, sorted.last().copied().unwrap_or(0));
        let total = sorted.iter().fold(0u64, |sum, &ns| sum.saturating_add(ns));
        assert_eq!(durations.total, total);
        for (k, &ns) in sorted.iter().enumerate() {
            assert_eq!(durations.nth(k as u64), ns, "rank {k} of {sorted:?}");
        }
    }

    #[test]
    fn durations_rank_exactly_at_every_boundary() {
        check(&[]);
        check(&[0]);
        check(&[
            SHORT_NS - 1,
            SHORT_NS,
            0,
            u32::MAX.into(),
            u64::from(u32::MAX) + 1,
        ]);
        check(&[u64::MAX, u64::MAX, 5, 5, 5, 1 << 40, SHORT_NS, 7]);
    }

    proptest! {
        #[test]
        fn durations_rank_as_a_sorted_list(values in prop::collection::vec(
            prop_oneof![0..2 * SHORT_NS, 0..u64::from(u32::MAX) + 10, any::<u64>()],
            0..200,
        )) {
            check(&values);
        }
    }
}
