//! The recording hot path: each thread appends records to a buffer of its own
//! (`buffer::ThreadBuffer`), found through a thread-local pointer, in the layout of `record`.
//!
//! A thread's first record in a session takes the slow path: it attaches a buffer with the
//! registry, counted in [`IN_FLIGHT`] so that a concurrent `stop` waits for it. Appending
//! that record to a fresh buffer populates the buffer's first chunk of pages, outside the
//! registry's lock; later chunks are populated ahead of the writer by the populating
//! thread, or by the record that reaches them, in the buffer's cold path, so the hot path
//! takes no page fault.

use std::cell::{Cell, RefCell};
use std::ptr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::buffer::{ThreadBuffer, NAMELESS};
use crate::clock;
use crate::record::{
    arg_record, heap_word, long_numbered_event, named_record, numbered_event, numbered_event_word,
    short_arg_record, short_named_word, SLOT,
};
use crate::registry::{self, Caller, Inside};
use crate::switch::{EPOCH, GRAPH_ONLY, IN_FLIGHT};
use crate::value::Value;

/// Keeps this thread's buffer alive; its destructor clears [`CURRENT`] first so that the hot
/// path never sees a dangling pointer while the thread is torn down.
struct Owner(RefCell<Option<Arc<ThreadBuffer>>>);

impl Drop for Owner {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(ptr::null()));
        // The thread records no more: pages asked ahead of it would only be memory.
        if let Some(buffer) = self.0.borrow().as_ref() {
            buffer.withdraw_ask();
        }
    }
}

thread_local! {
    /// This thread's buffer, read by the hot path. Const-initialised and without a
    /// destructor, so access is a plain thread-pointer-relative load.
    static CURRENT: Cell<*const ThreadBuffer> = const { Cell::new(ptr::null()) };
    static OWNER: Owner = const { Owner(RefCell::new(None)) };
}

#[inline(always)]
fn current_buffer() -> Option<&'static ThreadBuffer> {
    let raw = CURRENT.with(|current| current.get());
    // SAFETY: a non-null CURRENT always points into the `Arc` held by this thread's OWNER,
    // which is only replaced after CURRENT is updated and whose destructor nulls CURRENT
    // before the `Arc` is released. The reference does not escape the calling function.
    unsafe { raw.as_ref() }
}

/// Records a three-word event that ends now: a call site's (`KIND_EVENT`, `KIND_ASYNC`) or a
/// short named one. Reads the end clock itself, after marking the buffer.
#[inline(always)]
pub(crate) fn record_site_event(w0: u64, start: u64) {
    if let Some(buffer) = current_buffer() {
        if buffer.epoch() == EPOCH.load(Ordering::Relaxed) {
            buffer.push_event_ending_now(w0, start);
            return;
        }
    }
    record_event_slow(w0, start);
}

/// Records a call site's event that ends now carrying `number` (`record::inline_number`) under
/// the site's inline key. Marked, and read from the clock, like [`record_site_event`].
#[inline(always)]
pub(crate) fn record_numbered_event(site: u64, number: u64, start: u64) {
    let w0 = numbered_event_word(site, number);
    if let Some(buffer) = current_buffer() {
        if buffer.epoch() == EPOCH.load(Ordering::Relaxed) {
            buffer.push_numbered_event_ending_now(w0, start, number);
            return;
        }
    }
    record_numbered_event_slow(w0, number, start);
}

/// [`record_numbered_event`] without this session's buffer (see [`record_event_slow`]).
#[cold]
#[inline(never)]
fn record_numbered_event_slow(w0: u64, number: u64, start: u64) {
    let _in_flight = InFlight::begin();
    let (epoch, end) = epoch_then_clock();
    match numbered_event(w0, start, end, number) {
        Some(slot) => record_slow(epoch, &slot, &[], Caller::Scope),
        None => record_slow(
            epoch,
            &long_numbered_event(w0, start, end, number),
            &[],
            Caller::Scope,
        ),
    }
}

/// Counts a slow-path record in [`IN_FLIGHT`] while it lives.
struct InFlight;

impl InFlight {
    /// Counts the caller in; the epoch it reads after this is the session it records into.
    fn begin() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Release);
    }
}

/// The epoch to record into and the end clock, read in that order after counting in.
fn epoch_then_clock() -> (u64, u64) {
    let epoch = EPOCH.load(Ordering::SeqCst);
    (epoch, clock::now_after_loads())
}

/// [`record_site_event`] without this session's buffer: the thread's first event in the
/// session, or one after the session stopped. Takes its words in registers so that the
/// inlined hot path stays small.
#[cold]
#[inline(never)]
fn record_event_slow(w0: u64, start: u64) {
    let _in_flight = InFlight::begin();
    let (epoch, end) = epoch_then_clock();
    record_slow(epoch, &[w0, start, end], &[], Caller::Scope);
}

/// Records an event that ends now, whose name is a run-time `&'static str`.
#[inline(always)]
pub(crate) fn record_named_event(name: &'static str, start: u64) {
    match short_named_word(name) {
        Some(w0) => record_site_event(w0, start),
        None => record_long_named_event(name, start),
    }
}

/// Names of 8 KiB and more take the slow path: they are rare, and their record is two slots.
#[cold]
fn record_long_named_event(name: &'static str, start: u64) {
    let _in_flight = InFlight::begin();
    let (epoch, end) = epoch_then_clock();
    record_slow(epoch, &named_record(name, start, end), &[], Caller::Scope);
}

/// Records one metadata entry for the event identified by (`owner_ident`, `owner_start`), or
/// with `owner_ident == 0` for the innermost event open on this thread at `owner_start`.
/// `starting`: the owner is an event of this thread that never moves to another (not an
/// `async fn`'s), so its start alone finds it, and a number or bool fits one slot.
#[inline(always)]
pub(crate) fn record_arg(
    key: &'static str,
    value: Value<'_>,
    owner_start: u64,
    owner_ident: u64,
    starting: bool,
) {
    let by_start = starting || owner_ident == 0;
    if let Some(slot) = short_arg_record(key, &value, owner_start, starting && owner_ident != 0)
        .filter(|_| by_start)
    {
        return push_short_record(&slot);
    }
    let (header, bytes) = arg_record(key, &value, owner_start, owner_ident);
    push_record(&header, bytes);
}

/// Appends a one-slot record.
#[inline(always)]
fn push_short_record(slot: &[u64; SLOT]) {
    if let Some(buffer) = current_buffer() {
        if buffer.epoch() == EPOCH.load(Ordering::Relaxed) && buffer.try_push_record(slot, &[]) {
            return;
        }
    }
    record_arg_slow(slot, &[]);
}

fn push_record(header: &[u64; 6], bytes: &[u8]) {
    if let Some(buffer) = current_buffer() {
        if buffer.epoch() == EPOCH.load(Ordering::Relaxed) && buffer.try_push_record(header, bytes)
        {
            return;
        }
    }
    record_arg_slow(header, bytes);
}

#[cold]
#[inline(never)]
fn record_arg_slow(header: &[u64], bytes: &[u8]) {
    let _in_flight = InFlight::begin();
    record_slow(EPOCH.load(Ordering::SeqCst), header, bytes, Caller::Scope);
}

/// Records a heap block allocated (after the allocator returned it) or freed (before it is
/// given back), for a traced allocator while a session records. Blocks under `min_bytes` are
/// counted, not recorded. Never allocates on the way, except to attach the thread's buffer,
/// and then with the thread marked inside the profiler, so that those allocations are not
/// recorded and nothing recurses.
#[cold]
#[inline(never)]
pub(crate) fn record_heap(addr: usize, bytes: usize, free: bool, min_bytes: usize) {
    // Graph-only sessions keep no events; the profiler's own allocations are not the
    // program's.
    if GRAPH_ONLY.load(Ordering::Relaxed) || registry::inside() {
        return;
    }
    let buffer =
        current_buffer().filter(|b| b.epoch() & !NAMELESS == EPOCH.load(Ordering::Relaxed));
    if bytes < min_bytes {
        if let (Some(buffer), false) = (buffer, free) {
            buffer.count_unrecorded_allocation(bytes);
        }
        return;
    }
    let Some(w0) = heap_word(addr as u64, free) else {
        // An address the record cannot hold (at or above 2^48): lost, and counted.
        registry::count_lost(1);
        return;
    };
    if let Some(buffer) = buffer {
        return buffer.push_heap_now(w0, bytes as u64);
    }
    let _in_flight = InFlight::begin();
    let (epoch, time) = epoch_then_clock();
    record_slow(epoch, &[w0, time, bytes as u64], &[], Caller::Allocator);
}

/// Records into session `epoch`, read after the caller counted itself [`IN_FLIGHT`]: the
/// thread's first record in the session (its buffer is attached), a full buffer (the record
/// is counted as dropped), or a record after its session stopped (it belongs to none).
///
/// The thread is marked inside the profiler meanwhile: setting up its thread-locals and
/// buffer allocates, and a traced allocator must neither record that nor re-enter here.
fn record_slow(epoch: u64, header: &[u64], bytes: &[u8], caller: Caller) {
    let _inside = Inside::enter();
    if let Some(buffer) = current_buffer() {
        let own = buffer.epoch();
        if own & !NAMELESS == epoch {
            if own & NAMELESS != 0 && caller == Caller::Scope {
                // The allocator attached it: a scope's record can name the thread.
                buffer.name_thread(registry::thread_name(buffer.thread_id, Caller::Scope));
            }
            // The buffer is this session's: the record is a long named event, or it is full,
            // or it named the thread.
            if !buffer.try_push_record(header, bytes) {
                buffer.count_drop();
            }
            return;
        }
    }
    // This session has no buffer for the thread yet; `None` means no session is recording
    // (the event completed after its session stopped and belongs to none). The thread's
    // buffer of an earlier session is offered for reuse. No `RefCell` borrow is held while
    // the session is asked, so a traced allocator cannot re-enter into a borrowed cell.
    let attached = OWNER.try_with(|owner| {
        CURRENT.with(|current| current.set(ptr::null()));
        let spare = owner.0.take();
        match registry::attach_thread(epoch, spare, caller) {
            Ok(buffer) => {
                CURRENT.with(|current| current.set(Arc::as_ptr(&buffer)));
                owner.0.replace(Some(buffer));
                Some(())
            }
            Err(spare) => {
                // Put it back: a later session may still reuse it.
                let current = spare.as_ref().map_or(ptr::null(), Arc::as_ptr);
                owner.0.replace(spare);
                CURRENT.with(|c| c.set(current));
                None
            }
        }
    });
    match attached {
        Ok(Some(())) => {}
        Ok(None) => return,
        Err(_) => {
            registry::count_lost(1);
            return;
        }
    }
    let Some(buffer) = current_buffer() else {
        return;
    };
    if !buffer.try_push_record(header, bytes) {
        buffer.count_drop();
    }
}
