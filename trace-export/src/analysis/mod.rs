//! The one analysis core: what the writers and the report derive from a recording, each rule
//! in one place.
//!
//! * `nesting`: how a thread's events are split into properly nested lines.
//! * `steps`: which events mark steps, and which work belongs to which step.
//! * [`calls`]: the call-tree fold (the runtime's own, replayed over events), self time, and
//!   the call graph merged across threads.
//! * `heap`: heap in use over time, and which scope allocated what.
//!
//! The XSpace writer plans its lines and steps here; the summaries take their step times
//! from the same plan; the Graphs tab and the text report take calls and self time from the
//! same fold. One recording therefore reads the same in every file and in the report.

pub mod calls;
pub(crate) mod heap;
pub(crate) mod nesting;
pub(crate) mod steps;
