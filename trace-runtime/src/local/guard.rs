//! The `Trace` guard and the free functions around it.

use std::sync::atomic::Ordering;

use super::graph;
use super::recorder;
use crate::callsite::Callsite;
use crate::clock;
use crate::record::{
    can_carry_number, inline_number, static_str, KIND_ASYNC, KIND_EVENT, KIND_GRAPH, KIND_MASK,
    KIND_NAMED,
};
use crate::switch::{GRAPH_ONLY, INLINE_TSC, LEVEL};
use crate::value::Value;

/// A scope being recorded: the event starts when the guard is made and ends when it drops,
/// like TensorFlow's `tf.profiler.experimental.Trace` context manager.
///
/// When the profiler is off, making a guard costs one relaxed atomic load and the guard does
/// nothing; metadata passed to it is not recorded.
///
/// # Examples
///
/// ```
/// use trace_runtime::Trace;
///
/// for step in 0..3i64 {
///     let tm = Trace::new("Train").arg("step_num", step);
///     tm.set_metadata("loss", 0.25);
/// } // each event ends here
/// ```
#[must_use = "the event ends when the guard is dropped"]
#[derive(Debug)]
pub struct Trace {
    /// Start ticks; 0 when this guard records nothing.
    start: u64,
    /// The call site's address, or the name's for [`Trace::new`].
    ident: usize,
    /// Record kind, and the name's length for named events.
    info: u64,
}

impl Trace {
    /// Starts an event named `name` at level 1 (critical), recorded by any session.
    #[inline]
    pub fn new(name: &'static str) -> Trace {
        Trace::with_level(name, 1)
    }

    /// Starts an event at `level` (1 critical, 2 info, 3 verbose); sessions record it when
    /// their level is at least this.
    #[inline]
    pub fn with_level(name: &'static str, level: u8) -> Trace {
        if level.max(1) > LEVEL.load(Ordering::Relaxed) {
            return Trace::inactive();
        }
        Trace::enter(
            name.as_ptr() as usize,
            KIND_NAMED | (name.len() as u64) << 8,
        )
    }

    #[inline(always)]
    pub(crate) fn enter_site(site: &'static Callsite, kind: u64) -> Trace {
        if site.level() > LEVEL.load(Ordering::Relaxed) {
            return Trace::inactive();
        }
        Trace::enter(site as *const Callsite as usize, kind)
    }

    /// Starts a guard that passed its level check.
    #[inline(always)]
    fn enter(ident: usize, info: u64) -> Trace {
        let (start, info) = if INLINE_TSC.load(Ordering::Relaxed) {
            (clock::tsc(), info)
        } else {
            Trace::enter_slow(ident, info)
        };
        Trace { start, ident, info }
    }

    /// Entry with the monotonic clock, or into a graph-only session's call tree: the guard's
    /// start and info (a start of 0 records nothing). Two words, returned in registers.
    #[cold]
    #[inline(never)]
    fn enter_slow(ident: usize, info: u64) -> (u64, u64) {
        let start = clock::now();
        if GRAPH_ONLY.load(Ordering::Relaxed) {
            return match graph::enter(ident, info, start) {
                Some(graph_info) => (start, graph_info),
                None => (0, KIND_EVENT),
            };
        }
        (start, info)
    }

    #[inline(always)]
    const fn inactive() -> Trace {
        Trace {
            start: 0,
            ident: 0,
            info: KIND_EVENT,
        }
    }

    /// A guard that records nothing.
    pub const fn disabled() -> Trace {
        Trace::inactive()
    }

    /// Adds metadata and returns the guard, for building it in one expression.
    #[inline]
    pub fn arg<'a>(self, key: &'static str, value: impl Into<Value<'a>>) -> Trace {
        self.set_metadata(key, value);
        self
    }

    /// Attaches metadata to this event, at any time before it ends (TensorFlow's
    /// `Trace.set_metadata`). Does nothing, and does not convert `value`, when the event is
    /// not being recorded.
    #[inline]
    pub fn set_metadata<'a>(&self, key: &'static str, value: impl Into<Value<'a>>) {
        if self.start != 0 {
            // An `async fn`'s event may end on another thread: its metadata names it exactly.
            let starting = self.info != KIND_ASYNC;
            recorder::record_arg(key, value.into(), self.start, self.ident as u64, starting);
        }
    }

    /// True when this event is being recorded.
    #[inline(always)]
    pub fn is_active(&self) -> bool {
        self.start != 0
    }

    /// Attaches the first metadata of the macros' guard for `site`, under the site's inline
    /// key. A number that fits is kept in the guard and travels inside the event's own record
    /// (`record::inline_number`); anything else is recorded as by [`Trace::set_metadata`].
    #[inline]
    pub(crate) fn set_inline_metadata(&mut self, site: &'static Callsite, value: Value<'_>) {
        if self.start == 0 {
            return;
        }
        // Only a sync event of this very site, not yet carrying a number: its record is the
        // one that names the key.
        let ident = site as *const Callsite as usize;
        if self.info == KIND_EVENT && self.ident == ident && can_carry_number(ident as u64) {
            if let Some(number) = inline_number(&value) {
                self.info = number;
                return;
            }
        }
        if let Some(key) = site.inline_key() {
            self.set_metadata(key, value);
        }
    }
}

impl Drop for Trace {
    // Kept tiny so that it inlines into every scope: an inactive guard costs one compare. The
    // recording is out of line, with the guard's words passed by value, in registers: a guard
    // whose address is never taken is never spilled.
    #[inline(always)]
    fn drop(&mut self) {
        if self.start != 0 {
            end_event(self.ident, self.info, self.start);
        }
    }
}

/// Records the event of an active guard, which ends now. The recorder reads the end clock
/// itself, because when it is read matters to a concurrent stop (see `recorder`).
#[inline(never)]
fn end_event(ident: usize, info: u64, start: u64) {
    if info == KIND_EVENT || info == KIND_ASYNC {
        recorder::record_site_event(ident as u64 | info, start);
    } else if info & KIND_MASK == KIND_EVENT {
        // Not the plain `KIND_EVENT`: the info is an inline number.
        recorder::record_numbered_event(ident as u64, info, start);
    } else {
        record_other(ident, info, start);
    }
}

/// Ends a named event, or a call of a graph-only session.
#[inline(never)]
fn record_other(ident: usize, info: u64, start: u64) {
    if info & KIND_MASK == KIND_GRAPH {
        graph::exit(ident, info, start);
        return;
    }
    // SAFETY: named guards store the address and length of a `&'static str`.
    let name = unsafe { static_str(ident as u64, info >> 8) };
    recorder::record_named_event(name, start);
}

/// Attaches metadata to the innermost event open on this thread: the one that contains this
/// moment. Does nothing when not recording.
///
/// Inside an `async fn` that interleaves with others on one thread, prefer the guard's
/// [`Trace::set_metadata`], which names its event exactly.
#[inline]
pub fn set_metadata<'a>(key: &'static str, value: impl Into<Value<'a>>) {
    if LEVEL.load(Ordering::Relaxed) != 0 {
        recorder::record_arg(key, value.into(), clock::now(), 0, false);
    }
}

/// True while a session records.
#[inline]
pub fn is_recording() -> bool {
    LEVEL.load(Ordering::Relaxed) != 0
}
