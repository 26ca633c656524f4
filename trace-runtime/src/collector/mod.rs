//! The cold side: starting and stopping sessions, and turning what the threads recorded into
//! a [`Snapshot`](crate::snapshot::Snapshot). Nothing here runs on a recording thread's hot
//! path.

mod barrier;
mod collect;
pub(crate) mod session;
