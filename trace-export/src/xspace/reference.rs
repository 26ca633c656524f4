//! The exporters as they were before [`Layout`](super::Layout) and the direct encoder: the
//! struct-based `build`, Chrome trace writer and report, kept verbatim (but for visibility
//! and imports) as the reference the tests compare the new code with, byte for byte.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, Write};

use ahash::AHashMap;
use trace_runtime::snapshot::{Event, Snapshot};
use trace_runtime::Value;

use crate::proto::xplane::{
    x_event, x_stat, XEvent, XEventMetadata, XLine, XPlane, XSpace, XStat, XStatMetadata,
};
use crate::report::{Report, SiteStats, StepTime};
use crate::xspace::{HOST_PLANE, TASK_ENVIRONMENT_PLANE};

/// The producer/consumer type used for step links.
const STEP_LINK_TYPE: i64 = 1;
const PS_PER_NS: i64 = 1000;

/// Builds the profile of one host.
pub(super) fn build(snapshot: &Snapshot, host: &str) -> XSpace {
    let mut plane = PlaneBuilder::new(1, HOST_PLANE);
    let mut lines = Vec::new();
    for thread in snapshot.threads() {
        let (sync, asynchronous): (Vec<&Event>, Vec<&Event>) =
            thread.events.iter().partition(|e| !e.is_async);
        for (k, events) in nest_into_lines(sync).into_iter().enumerate() {
            let name = match k {
                0 => thread.name.clone(),
                k => format!("{} (overlapping {k})", thread.name),
            };
            lines.push(LinePlan::new(line_id(thread.thread_id, k), name, events));
        }
        for (k, events) in nest_into_lines(asynchronous).into_iter().enumerate() {
            let name = format!("{} (async {})", thread.name, k + 1);
            lines.push(LinePlan::new(
                line_id(thread.thread_id, 1000 + k),
                name,
                events,
            ));
        }
    }

    let steps = find_steps(&lines);
    link_to_steps(&mut lines, &steps);

    let duration_ps = (snapshot.duration_ns as i64).saturating_mul(PS_PER_NS);
    for (line_index, line) in lines.into_iter().enumerate() {
        // Which events of this line are step markers, and of which step.
        let mut marker_of = vec![None; line.events.len()];
        if line_index == steps.line {
            for (step, &event_index) in steps.markers.iter().enumerate() {
                marker_of[event_index] = Some(step);
            }
        }
        let mut events = Vec::with_capacity(line.events.len());
        for (i, (event, link)) in line.events.iter().zip(&line.step_links).enumerate() {
            let mut stats: Vec<XStat> = event
                .metadata
                .iter()
                .map(|(key, value)| plane.value_stat(key, value))
                .collect();
            let marker = marker_of[i];
            if let Some(step) = marker {
                stats.push(plane.int_stat("_r", 1));
                stats.push(plane.int_stat("_pt", STEP_LINK_TYPE));
                stats.push(plane.int_stat("_p", step_link_id(step)));
            }
            if let Some(step) = link {
                stats.push(plane.int_stat("_ct", STEP_LINK_TYPE));
                stats.push(plane.int_stat("_c", step_link_id(*step)));
            }
            events.push(plane.event(event.name, event.start_ns, event.end_ns, stats));
            // xprof keeps only steps with some compute inside: a marker with no nested
            // event gets a child that stands for its own time.
            let has_child = line
                .events
                .get(i + 1)
                .is_some_and(|next| next.start_ns < event.end_ns);
            if marker.is_some() && !has_child {
                let stats = vec![plane.int_stat(SYNTHETIC_STAT, 1)];
                // The `/` keeps xprof from taking it for a step marker itself.
                let name = format!("{}/self", event.name);
                events.push(plane.event(&name, event.start_ns, event.end_ns, stats));
            }
        }
        plane.plane.lines.push(XLine {
            id: line.id,
            display_id: line.id,
            name: line.name,
            duration_ps,
            events,
            ..Default::default()
        });
    }

    let mut warnings = Vec::new();
    for thread in snapshot.threads() {
        if thread.dropped > 0 {
            warnings.push(format!(
                "{} events dropped on thread '{}' ({}): its buffer was full; raise \
                 ProfilerOptions::max_events_per_thread",
                thread.dropped, thread.name, thread.thread_id
            ));
        }
    }

    let mut environment = PlaneBuilder::new(2, TASK_ENVIRONMENT_PLANE);
    let stats = vec![
        environment.uint_stat("profile_start_time", snapshot.start_wall_ns),
        environment.uint_stat("profile_stop_time", snapshot.stop_wall_ns),
    ];
    environment.plane.stats = stats;

    XSpace {
        planes: vec![plane.plane, environment.plane],
        errors: Vec::new(),
        warnings,
        hostnames: vec![host.to_owned()],
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

/// Splits sorted events into as few lines as needed so that, within each, every two events
/// are nested or disjoint (xprof derives nesting from order). Sync scopes need one line;
/// guards held across `.await` and async events may overlap partially and need more.
fn nest_into_lines(events: Vec<&Event>) -> Vec<Vec<&Event>> {
    // Each line keeps the stack of end times of its open events.
    let mut lines: Vec<(Vec<&Event>, Vec<u64>)> = Vec::new();
    for event in events {
        let fits = lines.iter_mut().find_map(|(line, open)| {
            while open.last().is_some_and(|&end| end <= event.start_ns) {
                open.pop();
            }
            match open.last() {
                Some(&end) if event.end_ns > end => None,
                _ => Some((line, open)),
            }
        });
        match fits {
            Some((line, open)) => {
                line.push(event);
                open.push(event.end_ns);
            }
            None => lines.push((vec![event], vec![event.end_ns])),
        }
    }
    lines.into_iter().map(|(line, _)| line).collect()
}

struct LinePlan<'a> {
    id: i64,
    name: String,
    events: Vec<&'a Event>,
    /// The step each event is linked to, by index.
    step_links: Vec<Option<usize>>,
}

impl<'a> LinePlan<'a> {
    fn new(id: i64, name: String, events: Vec<&'a Event>) -> Self {
        let step_links = vec![None; events.len()];
        LinePlan {
            id,
            name,
            events,
            step_links,
        }
    }
}

/// The step markers: the outermost events with an integer `step_num` on the line that has
/// the most of them (one root per step, never one per thread).
#[derive(Debug, Default)]
struct Steps {
    line: usize,
    /// Indices into the line's events, in time order.
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
        for (i, event) in line.events.iter().enumerate() {
            if step_num(event).is_none() {
                continue;
            }
            if steps
                .windows
                .last()
                .is_some_and(|&(_, end)| event.start_ns < end)
            {
                continue; // nested in the previous step marker
            }
            steps.markers.push(i);
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
        let mut linked_until = 0;
        for (event, link) in line.events.iter().zip(&mut line.step_links) {
            if event.start_ns < linked_until {
                continue; // inside an event that is linked already
            }
            let candidate = steps
                .windows
                .partition_point(|&(start, _)| start <= event.start_ns);
            if let Some(i) = candidate.checked_sub(1) {
                if event.end_ns <= steps.windows[i].1 {
                    *link = Some(i);
                    linked_until = event.end_ns.max(event.start_ns + 1);
                }
            }
        }
    }
}

/// The stat that marks events the exporter added (a step marker's own time).
const SYNTHETIC_STAT: &str = "synthetic";

/// Interns event and stat metadata of one plane.
struct PlaneBuilder {
    plane: XPlane,
    event_ids: AHashMap<String, i64>,
    stat_ids: AHashMap<String, i64>,
}

impl PlaneBuilder {
    fn new(id: i64, name: &str) -> Self {
        PlaneBuilder {
            plane: XPlane {
                id,
                name: name.to_owned(),
                ..Default::default()
            },
            event_ids: AHashMap::new(),
            stat_ids: AHashMap::new(),
        }
    }

    fn event_metadata_id(&mut self, name: &str) -> i64 {
        if let Some(&id) = self.event_ids.get(name) {
            return id;
        }
        let id = self.event_ids.len() as i64 + 1;
        self.event_ids.insert(name.to_owned(), id);
        self.plane.event_metadata.insert(
            id,
            XEventMetadata {
                id,
                name: name.to_owned(),
                ..Default::default()
            },
        );
        id
    }

    fn stat_metadata_id(&mut self, key: &str) -> i64 {
        if let Some(&id) = self.stat_ids.get(key) {
            return id;
        }
        let id = self.stat_ids.len() as i64 + 1;
        self.stat_ids.insert(key.to_owned(), id);
        self.plane.stat_metadata.insert(
            id,
            XStatMetadata {
                id,
                name: key.to_owned(),
                ..Default::default()
            },
        );
        id
    }

    fn event(&mut self, name: &str, start_ns: u64, end_ns: u64, stats: Vec<XStat>) -> XEvent {
        XEvent {
            metadata_id: self.event_metadata_id(name),
            data: Some(x_event::Data::OffsetPs(ns_to_ps(start_ns))),
            duration_ps: ns_to_ps(end_ns.saturating_sub(start_ns)),
            stats,
        }
    }

    fn int_stat(&mut self, key: &str, value: i64) -> XStat {
        XStat {
            metadata_id: self.stat_metadata_id(key),
            value: Some(x_stat::Value::Int64Value(value)),
        }
    }

    fn uint_stat(&mut self, key: &str, value: u64) -> XStat {
        XStat {
            metadata_id: self.stat_metadata_id(key),
            value: Some(x_stat::Value::Uint64Value(value)),
        }
    }

    fn value_stat(&mut self, key: &str, value: &Value<'_>) -> XStat {
        let value = match value {
            Value::Int(v) => x_stat::Value::Int64Value(*v),
            // xprof reads step numbers with IntValue(): keep them int64 when they fit.
            Value::UInt(v) if key == "step_num" && *v <= i64::MAX as u64 => {
                x_stat::Value::Int64Value(*v as i64)
            }
            Value::UInt(v) => x_stat::Value::Uint64Value(*v),
            Value::Float(v) => x_stat::Value::DoubleValue(*v),
            Value::Bool(v) => x_stat::Value::Int64Value(i64::from(*v)),
            Value::Str(s) => x_stat::Value::StrValue(s.to_string()),
        };
        XStat {
            metadata_id: self.stat_metadata_id(key),
            value: Some(value),
        }
    }
}

fn ns_to_ps(ns: u64) -> i64 {
    (ns as i64).saturating_mul(PS_PER_NS)
}

/// A decoded view of a plane: metadata names by id, for readers of written profiles.
pub(super) struct PlaneView<'a> {
    event_names: BTreeMap<i64, &'a str>,
    stat_names: BTreeMap<i64, &'a str>,
}

impl<'a> PlaneView<'a> {
    pub(super) fn new(plane: &'a XPlane) -> Self {
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

    pub(super) fn event_name(&self, event: &XEvent) -> &'a str {
        self.event_names
            .get(&event.metadata_id)
            .copied()
            .unwrap_or("")
    }

    pub(super) fn stat_name(&self, stat: &XStat) -> &'a str {
        self.stat_names
            .get(&stat.metadata_id)
            .copied()
            .unwrap_or("")
    }

    /// A stat's value as text, resolving `ref_value` interning.
    pub(super) fn stat_text(&self, stat: &XStat) -> String {
        match &stat.value {
            Some(x_stat::Value::Int64Value(v)) => v.to_string(),
            Some(x_stat::Value::Uint64Value(v)) => v.to_string(),
            Some(x_stat::Value::DoubleValue(v)) => v.to_string(),
            Some(x_stat::Value::StrValue(s)) => s.clone(),
            Some(x_stat::Value::BytesValue(b)) => format!("<{} bytes>", b.len()),
            Some(x_stat::Value::RefValue(id)) => self
                .stat_names
                .get(&(*id as i64))
                .copied()
                .unwrap_or("")
                .to_owned(),
            None => String::new(),
        }
    }
}

/// An event's start in picoseconds from the line's base time.
pub(super) fn offset_ps(event: &XEvent) -> i64 {
    match event.data {
        Some(x_event::Data::OffsetPs(ps)) => ps,
        _ => 0,
    }
}

// Chrome trace JSON

/// Writes the host planes of `space` as Chrome trace JSON.
pub(super) fn write_json<W: Write>(space: &XSpace, out: W) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    out.write_all(b"{\"displayTimeUnit\":\"ns\",\"traceEvents\":[")?;
    let mut first = true;
    let mut separator = |out: &mut io::BufWriter<W>| -> io::Result<()> {
        if !std::mem::take(&mut first) {
            out.write_all(b",\n")?;
        }
        Ok(())
    };
    for (pid, plane) in space
        .planes
        .iter()
        .filter(|p| p.name == HOST_PLANE)
        .enumerate()
    {
        let pid = pid + 1;
        let view = PlaneView::new(plane);
        separator(&mut out)?;
        write!(
            out,
            "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{pid},\"args\":{{\"name\":"
        )?;
        let host = space.hostnames.first().map(String::as_str).unwrap_or("");
        json_string(&mut out, &format!("{host} {}", plane.name))?;
        out.write_all(b"}}")?;
        for (index, line) in plane.lines.iter().enumerate() {
            let tid = if line.display_id != 0 {
                line.display_id
            } else {
                line.id
            };
            separator(&mut out)?;
            write!(out, "{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"name\":")?;
            let name = if line.display_name.is_empty() {
                &line.name
            } else {
                &line.display_name
            };
            json_string(&mut out, name)?;
            out.write_all(b"}}")?;
            separator(&mut out)?;
            write!(
                out,
                "{{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"sort_index\":{index}}}}}"
            )?;
            let base_ps = line.timestamp_ns.saturating_mul(1000);
            for event in &line.events {
                separator(&mut out)?;
                let start_ps = base_ps.saturating_add(offset_ps(event));
                write!(
                    out,
                    "{{\"ph\":\"X\",\"pid\":{pid},\"tid\":{tid},\"ts\":{},\"dur\":{},\"name\":",
                    Micros(start_ps),
                    Micros(event.duration_ps.max(0))
                )?;
                json_string(&mut out, view.event_name(event))?;
                if !event.stats.is_empty() {
                    out.write_all(b",\"args\":{")?;
                    for (i, stat) in event.stats.iter().enumerate() {
                        if i > 0 {
                            out.write_all(b",")?;
                        }
                        json_string(&mut out, view.stat_name(stat))?;
                        out.write_all(b":")?;
                        match &stat.value {
                            Some(x_stat::Value::Int64Value(v)) => write!(out, "{v}")?,
                            Some(x_stat::Value::Uint64Value(v)) => write!(out, "{v}")?,
                            Some(x_stat::Value::DoubleValue(v)) if v.is_finite() => {
                                write!(out, "{v:?}")?
                            }
                            _ => json_string(&mut out, &view.stat_text(stat))?,
                        }
                    }
                    out.write_all(b"}")?;
                }
                out.write_all(b"}")?;
            }
        }
    }
    out.write_all(b"]}\n")?;
    out.flush()
}

fn json_string<W: Write>(out: &mut W, text: &str) -> io::Result<()> {
    serde_json::to_writer(out, text).map_err(io::Error::from)
}

/// Picoseconds shown as microseconds with nanosecond precision.
struct Micros(i64);

impl std::fmt::Display for Micros {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ns = self.0 / 1000;
        let sign = if ns < 0 { "-" } else { "" };
        let ns = ns.unsigned_abs();
        write!(f, "{sign}{}.{:03}", ns / 1000, ns % 1000)
    }
}

// Report

/// `Report::from_xspace` as it was.
pub(super) fn report(space: &XSpace) -> Report {
    let mut durations: AHashMap<&str, (Vec<u64>, u64)> = AHashMap::new();
    let mut report = Report {
        warnings: space.warnings.clone(),
        top: 20,
        ..Default::default()
    };
    for plane in space.planes.iter().filter(|p| p.name == HOST_PLANE) {
        let view = PlaneView::new(plane);
        for line in &plane.lines {
            report.threads += 1;
            // Open events: (name, end in ps, time covered by children in ps).
            let mut open: Vec<(&str, i64, i64, i64)> = Vec::new();
            for event in &line.events {
                let stat = |name: &str| event.stats.iter().find(|s| view.stat_name(s) == name);
                if stat(SYNTHETIC_STAT).is_some() {
                    continue;
                }
                if stat("_r").is_some() {
                    let step = stat("step_num")
                        .map(|s| view.stat_text(s))
                        .unwrap_or_default();
                    report.steps.push(StepTime {
                        name: format!("{} {step}", view.event_name(event)),
                        duration_ns: ps_to_ns(event.duration_ps),
                    });
                }
                let start = offset_ps(event);
                while let Some(&(_, end, _, _)) = open.last() {
                    if end > start {
                        break;
                    }
                    close_event(open.pop().expect("checked"), &mut durations);
                }
                // Saturating: a profile read from a file may hold any offset and duration.
                if let Some(parent) = open.last_mut() {
                    parent.3 = parent.3.saturating_add(event.duration_ps);
                }
                let name = view.event_name(event);
                let end = start.saturating_add(event.duration_ps);
                open.push((name, end, event.duration_ps, 0));
                report.events += 1;
            }
            while let Some(entry) = open.pop() {
                close_event(entry, &mut durations);
            }
        }
    }
    report.sites = durations
        .into_iter()
        .map(|(name, (mut all, self_ns))| {
            all.sort_unstable();
            let pick = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize];
            SiteStats {
                name: name.to_owned(),
                count: all.len() as u64,
                total_ns: all.iter().fold(0, |sum, &ns| sum.saturating_add(ns)),
                self_ns,
                p50_ns: pick(0.5),
                p99_ns: pick(0.99),
                max_ns: *all.last().expect("non-empty"),
            }
        })
        .collect();
    report
        .sites
        .sort_by(|a, b| b.self_ns.cmp(&a.self_ns).then_with(|| a.name.cmp(&b.name)));
    report
}

/// Accounts a finished event: (name, end, duration, time in children), all in ps.
fn close_event<'a>(
    entry: (&'a str, i64, i64, i64),
    durations: &mut AHashMap<&'a str, (Vec<u64>, u64)>,
) {
    let (name, _, duration, children) = entry;
    let slot = durations.entry(name).or_default();
    slot.0.push(ps_to_ns(duration));
    let self_ps = duration.saturating_sub(children.min(duration));
    slot.1 = slot.1.saturating_add(ps_to_ns(self_ps));
}

fn ps_to_ns(ps: i64) -> u64 {
    (ps.max(0) / 1000) as u64
}
