//! The cold side: starting and stopping sessions, turning what the threads recorded into a
//! [`Snapshot`](crate::snapshot::Snapshot), and the thread that populates buffers' pages
//! ahead of their writers. Nothing here runs on a recording thread's hot path.

mod barrier;
mod collect;
mod populator;
pub(crate) mod session;
