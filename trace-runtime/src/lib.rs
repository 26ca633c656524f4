//! Instrumentation that costs nothing until a profiler session records it.
//!
//! Annotate functions with [`#[traced]`](traced) and blocks with [`trace!`]; start a session
//! with `trace_export::profiler::start` (or `trace_export::summary::trace_on`) and the scopes
//! are recorded into per-thread buffers at roughly the cost of reading the clock twice. Open
//! the files it writes in TensorBoard's Profile tab.
//!
//! ```
//! use trace_runtime::{trace, traced, Trace};
//!
//! #[traced(name = "Train", step_num = step)]
//! fn train_step(step: i64) -> f32 {
//!     let loss = trace!("forward", { 0.5f32 * step as f32 });
//!     trace_runtime::set_metadata("loss", loss);
//!     loss
//! }
//!
//! # fn main() {
//! for step in 0..3 {
//!     train_step(step);
//! }
//! let _tm = Trace::new("evaluate").arg("examples", 128u32);
//! # }
//! ```
//!
//! # In libraries
//!
//! Depend on `trace-runtime` with `default-features = false`. Your annotations then compile to
//! the bare code unless the final application turns the `enable` feature on.
//!
//! # In applications
//!
//! Depend on `trace-runtime` with its default `enable` feature and on `trace-export` for the
//! sessions and files. With `enable` off, `#[traced]` returns the function unchanged, `trace!`
//! expands to its block, [`Trace`] is zero-sized and every function is a no-op.
//!
//! # Levels
//!
//! Both macros take `level = 1 | 2 | 3` (critical, info, verbose; default 1). A session records
//! the events at or below its level.
//!
//! # `tracing`
//!
//! With the `tracing` feature, `TraceLayer` records `tracing` spans (`#[instrument]`,
//! `info_span!`, ...) like `trace!` scopes while a session records: install it with
//! `tracing_subscriber::registry().with(TraceLayer::default())`.
//!
//! # How it is built
//!
//! `switch` holds the atomics every call site reads; `clock` the TSC or monotonic clock and a
//! session's one calibration; `record` the buffer format (layout, encoders, decoder);
//! `buffer` a thread's buffer; `calltree` the call-tree fold; `registry` the session's state
//! and the threads attached to it. The hot side, on the recording thread, is `local` (the
//! [`Trace`] guard, the recorder, graph-only recording, `TraceLayer`); the cold side is
//! `collector` (start, stop, and turning buffers into a [`snapshot::Snapshot`]). Neither
//! side imports the other. `trace-export` drives sessions through the hidden `session`
//! module, which is not a stable API.

#![warn(missing_docs, unreachable_pub)]
// With `enable` off the recorder is compiled (sessions still start and stop) but never called.
#![cfg_attr(not(feature = "enable"), allow(dead_code))]

// The map: `switch`, `clock`, `callsite` and `value` depend on nothing else here. `record`
// is the buffer format, `buffer` the buffer, `calltree` the call-path fold; `registry` holds
// the session's state and the threads attached to it. `local` is the hot side (the guard and
// what it calls on the recording thread), `collector` the cold side (start, stop, and the
// snapshot); neither imports the other. `snapshot` is the data model handed to exporters.
mod buffer;
mod callsite;
mod calltree;
#[doc(hidden)]
pub mod clock;
mod collector;
mod local;
mod record;
mod registry;
pub mod snapshot;
mod switch;
mod value;

#[cfg(feature = "enable")]
pub use local::guard::{is_recording, set_metadata, Trace};

#[cfg(feature = "tracing")]
pub use local::layer::TraceLayer;

#[cfg(not(feature = "enable"))]
mod disabled;
#[cfg(not(feature = "enable"))]
pub use disabled::{is_recording, set_metadata, Trace};

pub use callsite::{callsites, Callsite};
pub use local::allocator::{TracedAllocator, DEFAULT_MIN_RECORDED_BYTES};
pub use trace_macros::{trace, traced};
pub use value::{Scalar, Value};

/// How `trace-export` drives recording: start and stop a session, and fold calls into call
/// trees by the rules of a graph-only session. Not a public API: it changes without notice.
/// Programs start and stop sessions through `trace_export::profiler` and
/// `trace_export::summary`.
#[doc(hidden)]
pub mod session {
    pub use crate::calltree::CallTree;
    pub use crate::collector::session::{is_active, start, stop, SessionConfig, SessionError};
    pub use crate::snapshot::RecordMode;
}

/// True when this build records (the `enable` feature is on).
pub const ENABLED: bool = cfg!(feature = "enable");

/// What the macro expansions call. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::__callsite as callsite;
    pub use crate::callsite::{Callsite, Registration};
    pub use inventory;

    use crate::Trace;

    /// The guard of a sync scope.
    #[inline(always)]
    pub fn enter(site: &'static Callsite) -> Trace {
        #[cfg(feature = "enable")]
        return Trace::enter_site(site, crate::record::KIND_EVENT);
        #[cfg(not(feature = "enable"))]
        {
            let _ = site;
            Trace::disabled()
        }
    }

    /// The first metadata of a scope, under its call site's inline key (the site passed to
    /// [`enter`] or [`enter_async`], declared with that key).
    #[inline(always)]
    pub fn set_inline_metadata<'a>(
        guard: &mut Trace,
        site: &'static Callsite,
        value: impl Into<crate::Value<'a>>,
    ) {
        #[cfg(feature = "enable")]
        guard.set_inline_metadata(site, value.into());
        #[cfg(not(feature = "enable"))]
        {
            let _ = (guard, site, value);
        }
    }

    /// The guard of an `async fn` body: from first poll to completion.
    #[inline(always)]
    pub fn enter_async(site: &'static Callsite) -> Trace {
        #[cfg(feature = "enable")]
        return Trace::enter_site(site, crate::record::KIND_ASYNC);
        #[cfg(not(feature = "enable"))]
        {
            let _ = site;
            Trace::disabled()
        }
    }
}
