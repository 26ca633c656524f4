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
//! Names: xprof counts a host event as a framework op (framework_op_stats, the overview
//! page's op figures) only when its metadata name reads `<op name>:<OpType>`, and keys ops by
//! that name. So each call site's events get such a name of their own
//! (`my_crate::train::forward` is `my_crate/train/forward:Forward`; the rule is `ops`'s),
//! and the name as recorded is the metadata's `display_name`, which xprof's trace viewer, the
//! Chrome trace and the report show. Root step markers keep their own name.
//!
//! # How the export stays fast
//!
//! A profile holds millions of events, most of them three integers (metadata id, offset,
//! duration). [`Layout::new`] decides where every event goes (lines, step markers, links)
//! without copying any event: a thread whose events nest, the usual case, becomes one line
//! that is the thread's own event list. [`Layout::encode`] then writes the protobuf bytes
//! straight from the recorded events in one pass, numbering the event and stat metadata as
//! it meets their names (looked up by address, not by hashing the text). No `XEvent` is
//! ever built. [`Layout::encode_to`], which the profiler writes files with, measures the
//! lines first and streams the same bytes through a small buffer, so that a profile's file
//! is never whole in memory.
//!
//! # Modules
//!
//! `schema` holds the names xprof reads, `ops` the rule that names each call site's events
//! as an op, `layout` plans lines, steps and event metadata (with the rules of `analysis`),
//! `encode` writes the bytes, and `read` is the read model that the encoder, the Chrome
//! trace and the report share.
//!
//! The Chrome trace ([`chrome`](crate::chrome)) and the text report
//! ([`report`](crate::report)) read a [`Layout`] the same way, through [`Profile`], so that
//! they see exactly the events and stats the `.xplane.pb` file holds, and read an `XSpace`
//! decoded from a file through the same code.

mod encode;
mod layout;
mod ops;
mod read;
mod schema;

use prost::Message;
use trace_runtime::snapshot::Snapshot;

use crate::proto::xplane::XSpace;

pub use layout::Layout;
pub(crate) use read::{EventView, Interner, LineView, StatValue, Visitor};
pub(crate) use schema::{is_heap_event, is_thread_line};
pub use schema::{
    thread_of_line, HOST_PLANE, MEMORY_ALLOCATION, MEMORY_DEALLOCATION, SYNTHETIC_STAT,
    TASK_ENVIRONMENT_PLANE,
};

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
            Profile::Planned(layout) => layout.host(),
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

    /// `(host plane, line id)` of the host planes' lines, in the order they are visited
    /// (planes numbered from 0).
    pub(crate) fn line_ids(self) -> Vec<(usize, i64)> {
        match self {
            Profile::Planned(layout) => layout.line_ids().map(|id| (0, id)).collect(),
            Profile::Decoded(space) => read::line_ids(space).collect(),
        }
    }

    /// Calls `visitor` with each host plane, each of its lines and each line's events.
    pub(crate) fn visit<V: Visitor<'a>>(self, visitor: &mut V) {
        match self {
            Profile::Planned(layout) => layout.visit(visitor),
            Profile::Decoded(space) => read::visit_space(space, visitor),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
