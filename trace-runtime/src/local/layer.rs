//! `tracing` spans recorded like `trace!` scopes: [`TraceLayer`] (cargo feature `tracing`).
//!
//! Each time a span is entered on a thread and exited again is one event of that thread,
//! named by the span (`Metadata` is `'static`: the name is never copied). This is what the
//! trace viewer should show for `#[instrument] async fn`, which `tracing` enters on every
//! poll: one event per poll, on the worker thread that ran it, and nothing while the future
//! waits. (`#[traced] async fn` records first poll to completion instead, because it has no
//! other hook; a span has one.)
//!
//! A span's fields are the metadata of its first entry. They are kept, on the thread that
//! created the span, from its creation to that entry: `#[instrument]` fns, `in_scope`,
//! `info_span!(..).entered()`, and `#[instrument] async fn`s that are `.await`ed or joined
//! on the thread that made them get them. A thread keeps the fields of at most 8 spans that
//! wait for their first entry (32 fields, 2 KiB of text): when more wait, the slots start
//! over and the earlier spans' entries go without fields. A span created on one thread and
//! first entered on another (`tokio::spawn(fut.instrument(span))`) records its entries
//! without the fields given at its creation. Fields recorded later with `Span::record` go to
//! the span's entry open on the recording thread (or wait with the others).
//!
//! The per-thread state is a fixed stack of open entries in a thread-local without a
//! destructor: recording allocates nothing and never panics. When no session records, every
//! callback returns after one relaxed load.

#[cfg(feature = "enable")]
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Level, Subscriber};
#[cfg(feature = "enable")]
use tracing_subscriber::layer::Context;
use tracing_subscriber::layer::Layer;
use tracing_subscriber::registry::LookupSpan;

/// A [`tracing_subscriber`] layer that records `tracing` spans while a profiler session
/// records, as [`trace!`](crate::trace) records its scopes.
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// let subscriber = tracing_subscriber::registry().with(trace_runtime::TraceLayer::default());
/// tracing::subscriber::with_default(subscriber, || {
///     let _span = tracing::info_span!("Train", step_num = 3).entered();
/// });
/// ```
///
/// - Each entry of a span on a thread (from enter to exit) is an event of that thread,
///   named by the span; an `#[instrument] async fn` gives one event per poll.
/// - Fields are the metadata of the span's first entry on the thread that created it:
///   integers, floats, bools and strings as they are, anything else formatted with `Debug`
///   (at most 1 KiB, cut at a character boundary and marked with `…`). Fields given later
///   with `Span::record` go to the entry open on the recording thread.
/// - A `step_num` field makes the span a step marker, as `#[traced(step_num = ...)]` does.
/// - Levels map onto TensorFlow's: `ERROR`, `WARN` and `INFO` are 1, `DEBUG` 2, `TRACE` 3;
///   a session records the spans at or below its level (by default all but `TRACE`).
/// - `tracing` events (`info!` and the like) are not recorded: they have no duration, and a
///   log line belongs in a log, not in the trace viewer's timeline.
///
/// With no session recording, each callback costs one relaxed atomic load. With the `enable`
/// feature off, the layer compiles and records nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceLayer {
    _private: (),
}

impl TraceLayer {
    /// The layer; the same as [`TraceLayer::default`].
    pub const fn new() -> TraceLayer {
        TraceLayer { _private: () }
    }
}

/// TensorFlow's level of a `tracing` level: 1 critical, 2 info, 3 verbose.
pub(crate) fn tf_level(level: &Level) -> u8 {
    match *level {
        Level::ERROR | Level::WARN | Level::INFO => 1,
        Level::DEBUG => 2,
        _ => 3,
    }
}

#[cfg(feature = "enable")]
impl<S> Layer<S> for TraceLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    #[inline]
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
        if crate::is_recording() {
            imp::created(attrs, id);
        }
    }

    #[inline]
    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if crate::is_recording() {
            imp::recorded(id, values);
        }
    }

    #[inline]
    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if crate::is_recording() {
            imp::entered(id, || ctx.metadata(id));
        }
    }

    #[inline]
    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        if crate::is_recording() {
            imp::exited(id);
        }
    }

    #[inline]
    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        if crate::is_recording() {
            imp::closed(&id);
        }
    }
}

/// With `enable` off the layer keeps every default: it sees spans and records nothing.
#[cfg(not(feature = "enable"))]
impl<S> Layer<S> for TraceLayer where S: Subscriber + for<'a> LookupSpan<'a> {}

#[cfg(feature = "enable")]
mod imp {
    use std::cell::RefCell;
    use std::fmt::{self, Write as _};
    use std::mem::ManuallyDrop;
    use std::sync::atomic::Ordering;

    use tracing_core::field::{Field, Visit};
    use tracing_core::span::{Attributes, Id, Record};
    use tracing_core::Metadata;

    use super::tf_level;
    use crate::registry;
    use crate::switch::{EPOCH, GRAPH_ONLY, LEVEL};
    use crate::value::Value;
    use crate::Trace;

    /// Entries open at once on one thread; deeper ones are counted as dropped.
    const DEPTH: usize = 64;
    /// Spans created on one thread and not entered yet whose fields are kept for their first
    /// entry.
    const PENDING: usize = 8;
    /// Fields, and bytes of string fields, kept for those spans.
    const FIELDS: usize = 32;
    const BYTES: usize = 2048;

    /// One thread's open entries and the fields of the spans it created that wait for their
    /// first entry. Fixed arrays in a thread-local without a destructor (the guards are
    /// `ManuallyDrop`), all zero bits at the start: nothing is allocated, access is a plain
    /// load, and a guard of an earlier session can be forgotten without recording anything.
    // In this order: the counters every callback reads share one cache line with the first
    // pending slots and are not pushed 2 KiB away by the stack of open entries.
    #[repr(C)]
    struct State {
        /// The session epoch the state belongs to; what an earlier one left is forgotten.
        epoch: u64,
        open_len: usize,
        /// Slots of `pending` in use: most spans are entered right after they are made, so
        /// this is mostly 0 or 1, and 0 spares the searches.
        pending_len: usize,
        fields_len: usize,
        bytes_len: usize,
        pending: [Pending; PENDING],
        open: [Open; DEPTH],
        fields: [Staged; FIELDS],
        bytes: [u8; BYTES],
    }

    /// A span entered on this thread and not exited yet.
    struct Open {
        id: u64,
        guard: ManuallyDrop<Trace>,
    }

    /// A span created on this thread and not entered yet (`id` 0: a free slot).
    #[derive(Clone, Copy)]
    struct Pending {
        id: u64,
        metadata: Option<&'static Metadata<'static>>,
    }

    /// A field of a pending span.
    #[derive(Clone, Copy)]
    struct Staged {
        span: u64,
        key: &'static str,
        value: StagedValue,
    }

    #[derive(Clone, Copy)]
    enum StagedValue {
        Int(i64),
        UInt(u64),
        Float(f64),
        Bool(bool),
        /// A range of [`State::bytes`].
        Str(u16, u16),
    }

    const NO_GUARD: ManuallyDrop<Trace> = ManuallyDrop::new(Trace::disabled());
    const NO_SPAN: Pending = Pending {
        id: 0,
        metadata: None,
    };
    const NO_FIELD: Staged = Staged {
        span: 0,
        key: "",
        value: StagedValue::Bool(false),
    };

    thread_local! {
        static STATE: RefCell<State> = const {
            RefCell::new(State {
                epoch: 0,
                open_len: 0,
                pending_len: 0,
                fields_len: 0,
                bytes_len: 0,
                pending: [NO_SPAN; PENDING],
                open: [const { Open { id: 0, guard: NO_GUARD } }; DEPTH],
                fields: [NO_FIELD; FIELDS],
                bytes: [0; BYTES],
            })
        };
    }

    /// Runs `f` on this thread's state, brought to the current session. Does nothing when the
    /// state is in use further up this thread's stack (a field's `Debug` that makes a span).
    #[inline(always)]
    fn with_state<R>(f: impl FnOnce(&mut State) -> Option<R>) -> Option<R> {
        STATE.with(|state| {
            let mut state = state.try_borrow_mut().ok()?;
            let epoch = EPOCH.load(Ordering::Relaxed);
            if state.epoch != epoch {
                // Guards of an earlier session would record into no session (or be left out
                // of this one by their start): they are forgotten, with the pending fields.
                state.epoch = epoch;
                state.open_len = 0;
                state.clear_pending();
            }
            f(&mut state)
        })
    }

    impl State {
        fn clear_pending(&mut self) {
            self.pending = [NO_SPAN; PENDING];
            self.pending_len = 0;
            self.fields_len = 0;
            self.bytes_len = 0;
        }

        /// The index of `id`'s innermost open entry.
        #[inline(always)]
        fn find_open(&self, id: u64) -> Option<usize> {
            (0..self.open_len).rev().find(|&i| self.open[i].id == id)
        }

        /// The pending slot of span `id`, which is not 0.
        #[inline(always)]
        fn find_pending(&self, id: u64) -> Option<usize> {
            if self.pending_len == 0 {
                return None;
            }
            self.pending.iter().position(|p| p.id == id)
        }

        /// Keeps `id`'s fields for its first entry. When every slot is taken, the slots start
        /// over: a bound that costs nothing to keep, and most spans are entered right after
        /// they are made.
        fn stage(&mut self, id: u64, metadata: &'static Metadata<'static>, attrs: &Attributes<'_>) {
            // A span that closed on another thread leaves its slot here, and `tracing` may
            // reuse its id.
            if self.take_pending(id).is_some() {
                self.forget_fields(id);
            }
            let free = self.pending.iter().position(|p| p.id == 0);
            let fits =
                self.fields_len + metadata.fields().len() <= FIELDS && self.bytes_len <= BYTES / 2;
            let slot = match free {
                Some(slot) if fits => slot,
                _ => {
                    self.clear_pending();
                    0
                }
            };
            self.pending_len += 1;
            self.pending[slot] = Pending {
                id,
                metadata: Some(metadata),
            };
            attrs.record(&mut Stager {
                state: self,
                span: id,
            });
        }

        /// Takes `id`'s pending slot: its metadata, with its fields recorded on `guard` by
        /// the caller through [`State::flush`].
        #[inline(always)]
        fn take_pending(&mut self, id: u64) -> Option<&'static Metadata<'static>> {
            let slot = self.find_pending(id)?;
            let metadata = self.pending[slot].metadata;
            self.pending[slot] = NO_SPAN;
            self.pending_len -= 1;
            metadata
        }

        /// Forgets `id`'s staged fields; frees the staging area once no span waits.
        fn forget_fields(&mut self, id: u64) {
            for field in &mut self.fields[..self.fields_len] {
                if field.span == id {
                    field.span = 0;
                }
            }
            self.forget_done();
        }

        /// Records `id`'s staged fields on `guard`; frees the staging area once no span waits.
        fn flush(&mut self, id: u64, guard: &Trace) {
            if self.fields_len > 0 {
                for i in 0..self.fields_len {
                    let field = self.fields[i];
                    if field.span != id {
                        continue;
                    }
                    self.fields[i].span = 0;
                    let value = match field.value {
                        StagedValue::Int(v) => Value::Int(v),
                        StagedValue::UInt(v) => Value::UInt(v),
                        StagedValue::Float(v) => Value::Float(v),
                        StagedValue::Bool(v) => Value::Bool(v),
                        StagedValue::Str(at, len) => {
                            let (at, len) = (usize::from(at), usize::from(len));
                            // Only whole characters are staged.
                            let text = self.bytes.get(at..at + len).unwrap_or_default();
                            Value::from(std::str::from_utf8(text).unwrap_or_default())
                        }
                    };
                    guard.set_metadata(field.key, value);
                }
            }
            self.forget_done();
        }

        /// Frees the staging area once no span waits for its first entry.
        #[inline(always)]
        fn forget_done(&mut self) {
            if self.pending_len == 0 {
                self.fields_len = 0;
                self.bytes_len = 0;
            }
        }

        fn push_field(&mut self, span: u64, key: &'static str, value: StagedValue) {
            if self.fields_len < FIELDS {
                self.fields[self.fields_len] = Staged { span, key, value };
                self.fields_len += 1;
            }
        }

        /// Copies `text` into the byte area, cut at a character boundary (and marked) when it
        /// does not fit.
        fn push_str(&mut self, span: u64, key: &'static str, text: &str) {
            let room = BYTES - self.bytes_len;
            if text.len() > room && room < CUT_MARK.len() {
                // Not even the mark fits: the field is left out.
                return;
            }
            let value = if text.len() <= room {
                text
            } else {
                let mut cut = room.saturating_sub(CUT_MARK.len());
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                &text[..cut]
            };
            let at = self.bytes_len;
            self.bytes[at..at + value.len()].copy_from_slice(value.as_bytes());
            let mut len = value.len();
            if value.len() < text.len() {
                self.bytes[at + len..at + len + CUT_MARK.len()]
                    .copy_from_slice(CUT_MARK.as_bytes());
                len += CUT_MARK.len();
            }
            self.bytes_len += len;
            self.push_field(span, key, StagedValue::Str(at as u16, len as u16));
        }
    }

    /// A span was created: its fields are kept for its first entry, when it is recorded.
    #[inline]
    pub(super) fn created(attrs: &Attributes<'_>, id: &Id) {
        let metadata = attrs.metadata();
        // Nothing to keep for a span the session leaves out, nor in a graph-only session,
        // which keeps no metadata.
        if !level_recorded(metadata) || GRAPH_ONLY.load(Ordering::Relaxed) {
            return;
        }
        with_state(|state| {
            state.stage(id.into_u64(), metadata, attrs);
            Some(())
        });
    }

    /// A span was entered on this thread: an entry opens, and the span's first one takes
    /// the fields given at its creation.
    #[inline]
    pub(super) fn entered(id: &Id, metadata: impl FnOnce() -> Option<&'static Metadata<'static>>) {
        let id = id.into_u64();
        with_state(|state| {
            let pending = state.take_pending(id);
            let metadata = match pending {
                Some(metadata) => metadata,
                None => metadata()?,
            };
            if state.open_len == DEPTH {
                // Too deep: counted, and no guard is made (a graph-only session's call tree
                // must see every guard it gave out end).
                if pending.is_some() {
                    state.forget_fields(id);
                }
                if level_recorded(metadata) {
                    registry::count_lost(1);
                }
                return None;
            }
            let guard = start(metadata);
            if pending.is_some() {
                state.flush(id, &guard);
            }
            if !guard.is_active() {
                return None;
            }
            state.open[state.open_len] = Open {
                id,
                guard: ManuallyDrop::new(guard),
            };
            state.open_len += 1;
            Some(())
        });
    }

    /// A span was exited on this thread: its innermost open entry ends and is recorded.
    #[inline]
    pub(super) fn exited(id: &Id) {
        let id = id.into_u64();
        let guard = with_state(|state| {
            let len = state.open_len;
            // Entries close in the order they opened, nearly always: the top one.
            let at = if len > 0 && state.open[len - 1].id == id {
                len - 1
            } else {
                state.find_open(id)?
            };
            let guard = std::mem::replace(&mut state.open[at].guard, NO_GUARD);
            if at + 1 < len {
                state.open[at..len].rotate_left(1);
            }
            state.open_len = len - 1;
            Some(ManuallyDrop::into_inner(guard))
        });
        // Dropping the guard records the entry's event, with the state no longer borrowed.
        drop(guard);
    }

    /// Fields given with `Span::record`: metadata of the span's innermost entry open on this
    /// thread, or kept for its first entry when it was not entered yet.
    pub(super) fn recorded(id: &Id, values: &Record<'_>) {
        // A graph-only session keeps no metadata.
        if GRAPH_ONLY.load(Ordering::Relaxed) {
            return;
        }
        let id = id.into_u64();
        with_state(|state| {
            if let Some(at) = state.find_open(id) {
                values.record(&mut Fields(&state.open[at].guard));
            } else if state.find_pending(id).is_some() {
                values.record(&mut Stager { state, span: id });
            }
            Some(())
        });
    }

    /// A span closed: if it was never entered, its fields are forgotten.
    #[inline]
    pub(super) fn closed(id: &Id) {
        let id = id.into_u64();
        with_state(|state| {
            if state.take_pending(id).is_some() {
                state.forget_fields(id);
            }
            Some(())
        });
    }

    #[inline(always)]
    fn level_recorded(metadata: &Metadata<'_>) -> bool {
        tf_level(metadata.level()) <= LEVEL.load(Ordering::Relaxed)
    }

    /// A guard for a span of `metadata`, started now; inactive when the session's level
    /// leaves the span out.
    #[inline(always)]
    fn start(metadata: &'static Metadata<'static>) -> Trace {
        Trace::with_level(metadata.name(), tf_level(metadata.level()))
    }

    /// A `step_num` is an int64, as the profile wants it.
    fn unsigned(key: &str, value: u64) -> Value<'static> {
        match i64::try_from(value) {
            Ok(step) if key == "step_num" => Value::Int(step),
            _ => Value::UInt(value),
        }
    }

    /// Records visited fields as metadata of a guard's event.
    struct Fields<'a>(&'a Trace);

    impl Visit for Fields<'_> {
        fn record_i64(&mut self, field: &Field, value: i64) {
            self.0.set_metadata(field.name(), value);
        }

        fn record_u64(&mut self, field: &Field, value: u64) {
            self.0
                .set_metadata(field.name(), unsigned(field.name(), value));
        }

        fn record_i128(&mut self, field: &Field, value: i128) {
            match i64::try_from(value) {
                Ok(v) => self.record_i64(field, v),
                Err(_) => self.record_debug(field, &value),
            }
        }

        fn record_u128(&mut self, field: &Field, value: u128) {
            match u64::try_from(value) {
                Ok(v) => self.record_u64(field, v),
                Err(_) => self.record_debug(field, &value),
            }
        }

        fn record_f64(&mut self, field: &Field, value: f64) {
            self.0.set_metadata(field.name(), value);
        }

        fn record_bool(&mut self, field: &Field, value: bool) {
            self.0.set_metadata(field.name(), value);
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.set_metadata(field.name(), value);
        }

        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.0
                .set_metadata(field.name(), Text::debug(value).as_str());
        }
    }

    /// Keeps visited fields of a pending span.
    struct Stager<'a> {
        state: &'a mut State,
        span: u64,
    }

    impl Stager<'_> {
        fn push(&mut self, field: &Field, value: StagedValue) {
            self.state.push_field(self.span, field.name(), value);
        }
    }

    impl Visit for Stager<'_> {
        fn record_i64(&mut self, field: &Field, value: i64) {
            self.push(field, StagedValue::Int(value));
        }

        fn record_u64(&mut self, field: &Field, value: u64) {
            let value = match unsigned(field.name(), value) {
                Value::Int(v) => StagedValue::Int(v),
                _ => StagedValue::UInt(value),
            };
            self.push(field, value);
        }

        fn record_i128(&mut self, field: &Field, value: i128) {
            match i64::try_from(value) {
                Ok(v) => self.record_i64(field, v),
                Err(_) => self.record_debug(field, &value),
            }
        }

        fn record_u128(&mut self, field: &Field, value: u128) {
            match u64::try_from(value) {
                Ok(v) => self.record_u64(field, v),
                Err(_) => self.record_debug(field, &value),
            }
        }

        fn record_f64(&mut self, field: &Field, value: f64) {
            self.push(field, StagedValue::Float(value));
        }

        fn record_bool(&mut self, field: &Field, value: bool) {
            self.push(field, StagedValue::Bool(value));
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            if self.state.fields_len < FIELDS {
                self.state.push_str(self.span, field.name(), value);
            }
        }

        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            if self.state.fields_len < FIELDS {
                self.state
                    .push_str(self.span, field.name(), Text::debug(value).as_str());
            }
        }
    }

    /// Bytes of `Debug` text kept per field.
    const TEXT_CAPACITY: usize = 1024;
    /// Marks text that was cut.
    const CUT_MARK: &str = "…";

    /// `Debug` text formatted on the stack, cut at a character boundary (and marked) when it
    /// is longer than [`TEXT_CAPACITY`]: formatting a field never allocates, and stops once
    /// cut.
    struct Text {
        bytes: [u8; TEXT_CAPACITY],
        len: usize,
        cut: bool,
    }

    impl Text {
        fn debug(value: &dyn fmt::Debug) -> Text {
            let mut text = Text {
                bytes: [0; TEXT_CAPACITY],
                len: 0,
                cut: false,
            };
            // An error here means the text was cut: what fits is kept.
            let _ = write!(text, "{value:?}");
            text
        }

        fn as_str(&self) -> &str {
            // Only whole characters are ever copied in.
            std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
        }

        fn push(&mut self, s: &str) {
            self.bytes[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
            self.len += s.len();
        }
    }

    impl fmt::Write for Text {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            if self.cut {
                return Err(fmt::Error);
            }
            let room = (TEXT_CAPACITY - CUT_MARK.len()).saturating_sub(self.len);
            if s.len() <= room {
                self.push(s);
                return Ok(());
            }
            let mut cut = room;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            self.push(&s[..cut]);
            self.push(CUT_MARK);
            self.cut = true;
            Err(fmt::Error)
        }
    }
}
