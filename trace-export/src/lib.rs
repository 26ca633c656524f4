//! TensorFlow-style sessions that turn what `trace-runtime` recorded into files TensorBoard
//! reads.
//!
//! * [`profiler`]: `start` / `stop`, like `tf.profiler.experimental.start / stop`: writes
//!   `plugins/profile/<run>/<host>.xplane.pb` (the Profile tab: trace viewer, overview page
//!   with per-step times) and a Chrome trace beside it.
//! * [`summary`]: `create_file_writer`, `scalar`, `trace_on` / `trace_export` / `trace_off`,
//!   like `tf.summary`: event files with scalars and the call graph of what was traced, with
//!   compute time per node (TensorBoard's Scalars and Graphs tabs).
//! * [`analysis`]: the one analysis core (lines, steps, calls and self time) that every file
//!   and the report read a recording through.
//! * [`graph`]: the call graph written as TensorBoard's Graphs tab reads it.
//! * [`report`]: the text report of a profile (also the `trace-export report` tool, in the
//!   `trace-cli` crate).
//! * [`proto`], [`tfrecord`], [`xspace`], [`chrome`]: the file formats.
//!
//! Recordings come from `trace-runtime` as a [`Snapshot`](trace_runtime::snapshot::Snapshot);
//! the sessions here start and stop them through its (hidden, unstable) `session` seam.

#![warn(missing_docs, unreachable_pub)]

pub mod analysis;
pub mod chrome;
mod error;
mod events;
mod files;
pub mod graph;
mod gzip;
pub mod profiler;
pub mod proto;
pub mod report;
pub mod summary;
pub mod tfrecord;
pub mod xspace;

pub use error::{Error, Result};
pub use files::{host_name, profile_dir, run_name};
