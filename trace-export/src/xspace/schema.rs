//! The names and units of xprof's XSpace that the writer and the readers share.

/// The host plane's name, exactly as xprof matches it.
pub const HOST_PLANE: &str = "/host:CPU";
/// The plane with the profile's absolute start and stop times.
pub const TASK_ENVIRONMENT_PLANE: &str = "Task Environment";
/// The stat that marks events the exporter added (a step marker's own time).
pub const SYNTHETIC_STAT: &str = "synthetic";

/// The names of the events of the memory profile (TensorFlow's allocators' own).
pub const MEMORY_ALLOCATION: &str = "MemoryAllocation";
/// See [`MEMORY_ALLOCATION`].
pub const MEMORY_DEALLOCATION: &str = "MemoryDeallocation";
/// The allocator the memory profile names (its `memory_id`).
pub(crate) const HEAP_ALLOCATOR: &str = "heap";

/// The line of the memory profile's events.
pub(crate) const HEAP_LINE: &str = "heap";
/// Its line id: the last of the ids xprof reserves for the lines it derives (from
/// `0xdeadbeef`, 32-bit in some versions, so this is that number's low 32 bits as well). The
/// op statistics and step events skip such lines; the memory profile reads every line.
pub(crate) const HEAP_LINE_ID: i64 = 0xdeadbeef + 289;

/// True for a line of the host plane that holds a thread's events: not the heap line nor
/// the counter line.
pub(crate) fn is_thread_line(id: i64, name: &str) -> bool {
    !(id == HEAP_LINE_ID && name == HEAP_LINE || id == COUNTERS_LINE_ID && name == COUNTERS_LINE)
}

/// The line the trace viewer draws as counter tracks: one per event name, of the events'
/// numeric stat.
pub(crate) const COUNTERS_LINE: &str = "_counters_";
/// Its line id: no thread's (thread lines are numbered from 1).
pub(crate) const COUNTERS_LINE_ID: i64 = 0;
/// The counter of heap in use, and its one stat.
pub(crate) const HEAP_COUNTER: &str = "heap in use";
pub(crate) const HEAP_COUNTER_STAT: &str = "bytes";

/// True for the events of the memory profile: an allocation or a free, of no duration.
pub(crate) fn is_heap_event(name: &str, duration_ps: i64) -> bool {
    duration_ps == 0 && (name == MEMORY_ALLOCATION || name == MEMORY_DEALLOCATION)
}

/// What the recorded name of the event standing for a childless step marker's own time adds
/// to the marker's name. xprof keeps a step only if some host compute lies inside it, which
/// a marker is not: this child is that compute. Like every event but a root marker it is
/// named as an op (`Train/self:Self`), so the step breakdown counts the marker's time as
/// host compute, as it did before, and framework_op_stats lists it as an op of type `Self`
/// instead of leaving it to `IDLE`. The `/` in it keeps xprof from taking it for a step
/// marker. A marker with children gets none: its own time, spent in code between them that
/// records nothing, is the step's "All Others" time (less what linked work of other threads
/// covers), as TensorFlow's Python time between ops is.
pub(crate) const SELF_SUFFIX: &str = "/self";
/// The producer/consumer type used for step links.
pub(crate) const STEP_LINK_TYPE: i64 = 1;
pub(crate) const PS_PER_NS: i64 = 1000;

/// Nanoseconds as picoseconds, saturating.
pub(crate) fn ns_to_ps(ns: u64) -> i64 {
    (ns as i64).saturating_mul(PS_PER_NS)
}

/// Line ids: a thread's first line is its thread number (below this), and the extra lines a
/// thread needs for overlapping or async events follow at multiples of it (the trace viewer
/// shows ids as 32-bit tids).
pub(crate) const LINE_ID_STRIDE: i64 = 100_000;

/// The line id of a thread's `k`-th line.
pub(crate) fn line_id(thread_id: u64, k: usize) -> i64 {
    (thread_id % LINE_ID_STRIDE as u64) as i64 + k as i64 * LINE_ID_STRIDE
}

/// The thread a line belongs to: the writer numbers a thread's lines `thread + k * 100 000`.
pub fn thread_of_line(line_id: i64) -> i64 {
    line_id.rem_euclid(LINE_ID_STRIDE)
}
