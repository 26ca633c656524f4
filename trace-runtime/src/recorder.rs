//! Per-thread recorders: the hot path.
//!
//! Each thread appends fixed 24-byte records to a buffer of its own that was allocated (zeroed,
//! so the OS commits pages only as they fill) when the thread first recorded in the current
//! session. Appending takes no lock, allocates nothing and makes no syscall: a few relaxed
//! stores and one release store of the length, which the session reads when it stops.
//!
//! Stopping without losing events: a thread marks its buffer (the low bit of its length)
//! before it reads an event's end clock and clears the mark when it publishes the event.
//! `session::stop` reads its stop time, ends the epoch, issues a barrier on every thread of
//! the process (`barrier`) and then waits for the marks to clear: an event whose end is
//! before the stop time is then either published or marked, never neither. Paths that
//! attach a buffer or record into one they do not own yet count themselves in
//! [`IN_FLIGHT`] instead, and the session waits for that count to reach zero.
//!
//! Record layout, three `u64` words per slot. The low three bits of a record's first word
//! give its kind; call-site pointers are 8-aligned, so a plain event is just the pointer.
//!
//! | kind        | slot words                                                              |
//! |-------------|-------------------------------------------------------------------------|
//! | `EVENT`     | `site ptr`, start ticks, end ticks                                      |
//! | `ASYNC`     | `site ptr | 1`, start ticks, end ticks                                  |
//! | `NAMED`     | `2 | name_len << 8`, name ptr, start; then: end ticks, 0, 0             |
//! | `SHORT_NAMED` | `4 | name_len << 3 | name ptr << 16`, start, end (names under 8 KiB at addresses below 2^48, i.e. all of them on today's 64-bit targets) |
//! | `ARG`       | `3 | type << 3 | key_len << 8`, key ptr, owner start (or time); then: payload or string length, owner identity (0: innermost by time), 0; then the string's bytes |

use std::cell::{Cell, RefCell};
use std::ptr;
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::clock;
use crate::value::Value;

pub(crate) const KIND_EVENT: u64 = 0;
pub(crate) const KIND_ASYNC: u64 = 1;
pub(crate) const KIND_NAMED: u64 = 2;
pub(crate) const KIND_ARG: u64 = 3;
pub(crate) const KIND_SHORT_NAMED: u64 = 4;
/// Not a record: the `info` of a guard recorded into a call tree (see `calltree`).
pub(crate) const KIND_GRAPH: u64 = 5;
/// Name lengths that fit a `SHORT_NAMED` record.
pub(crate) const SHORT_NAME_LEN: u64 = 1 << 13;
pub(crate) const KIND_MASK: u64 = 7;

pub(crate) const TYPE_INT: u64 = 0;
pub(crate) const TYPE_UINT: u64 = 1;
pub(crate) const TYPE_FLOAT: u64 = 2;
pub(crate) const TYPE_BOOL: u64 = 3;
pub(crate) const TYPE_STR: u64 = 4;

/// Words per record slot.
pub(crate) const SLOT: usize = 3;

/// The recording level: 0 when off, else the highest level recorded. The only thing a
/// disabled call site reads.
pub(crate) static LEVEL: AtomicU8 = AtomicU8::new(0);
/// True while a session records events with the TSC clock: a guard's entry reads the counter
/// inline. Otherwise (the monotonic clock, or a graph-only session) it takes the slow entry.
pub(crate) static INLINE_TSC: AtomicBool = AtomicBool::new(false);
/// Incremented at every session start and stop: a buffer of an older epoch is not written.
pub(crate) static EPOCH: AtomicU64 = AtomicU64::new(0);
/// Events that could not be recorded because their thread had no buffer: it was being torn
/// down, or its buffer could not be allocated.
pub(crate) static LOST_WITHOUT_BUFFER: AtomicU64 = AtomicU64::new(0);
/// Records under way on the slow path, which reads [`EPOCH`] after counting itself here and
/// its end clock after that. `session::stop` waits for this to reach zero.
pub(crate) static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// The low bit of [`ThreadBuffer`]'s length word: an event's end clock was read and the event
/// is not published yet.
const WRITING: usize = 1;

/// One thread's records for one session, shared by the thread (which appends) and the session
/// (which reads after it stops).
pub(crate) struct ThreadBuffer {
    pub(crate) epoch: u64,
    pub(crate) thread_id: u64,
    pub(crate) thread_name: String,
    words: Box<[AtomicU64]>,
    /// Words published, shifted left by one, with [`WRITING`] in the low bit; written by the
    /// owner thread only.
    state: AtomicUsize,
    /// Records that did not fit.
    dropped: AtomicU64,
}

impl ThreadBuffer {
    /// A buffer of `capacity_words` zeroed words, or `None` if the allocation fails.
    pub(crate) fn new(
        epoch: u64,
        capacity_words: usize,
        thread_id: u64,
        thread_name: String,
    ) -> Option<ThreadBuffer> {
        Some(ThreadBuffer {
            epoch,
            thread_id,
            thread_name,
            words: zeroed_words(capacity_words)?,
            state: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    /// Reads the clock and appends the event that ends now, with the buffer marked from
    /// before the clock read until the event is published.
    #[inline(always)]
    fn push_event_ending_now(&self, w0: u64, start: u64) {
        // Even: only this thread writes the state, and it leaves it unmarked.
        let state = self.state.load(Ordering::Relaxed);
        self.state.store(state | WRITING, Ordering::Relaxed);
        // The mark is stored before the clock is read: `session::stop` relies on it.
        compiler_fence(Ordering::SeqCst);
        let end = clock::now();
        let len = state >> 1;
        match self.words.get(len..len + SLOT) {
            Some([a, b, c]) => {
                a.store(w0, Ordering::Relaxed);
                b.store(start, Ordering::Relaxed);
                c.store(end, Ordering::Relaxed);
                self.state.store((len + SLOT) << 1, Ordering::Release);
            }
            _ => self.drop_marked(state),
        }
    }

    /// The buffer is full: counts the event and clears the mark.
    #[cold]
    #[inline(never)]
    fn drop_marked(&self, state: usize) {
        self.count_drop();
        self.state.store(state, Ordering::Release);
    }

    /// Appends `header` (a whole number of slots) and `bytes` packed into whole slots.
    pub(crate) fn try_push_record(&self, header: &[u64], bytes: &[u8]) -> bool {
        let len = self.state.load(Ordering::Relaxed) >> 1;
        let byte_words = bytes.len().div_ceil(8).next_multiple_of(SLOT);
        let Some(dest) = self.words.get(len..len + header.len() + byte_words) else {
            return false;
        };
        let (head, tail) = dest.split_at(header.len());
        for (slot, &word) in head.iter().zip(header) {
            slot.store(word, Ordering::Relaxed);
        }
        for (slot, chunk) in tail.iter().zip(bytes.chunks(8)) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            slot.store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        self.state.store((len + dest.len()) << 1, Ordering::Release);
        true
    }

    /// Makes the buffer empty and gives it to session `epoch`. Needs the only reference,
    /// i.e. the earlier session has finished reading it.
    pub(crate) fn reset(&mut self, epoch: u64) {
        self.epoch = epoch;
        *self.state.get_mut() = 0;
        *self.dropped.get_mut() = 0;
    }

    /// Capacity in words.
    pub(crate) fn capacity_words(&self) -> usize {
        self.words.len()
    }

    /// True while the owner has read an event's end clock and not yet published the event.
    pub(crate) fn is_writing(&self) -> bool {
        self.state.load(Ordering::Acquire) & WRITING != 0
    }

    /// The published words, copied out. Called by the session after it stopped.
    pub(crate) fn published(&self) -> Vec<u64> {
        let len = self.state.load(Ordering::Acquire) >> 1;
        self.words[..len]
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .collect()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Allocates zeroed words without touching them, so untouched capacity costs no memory.
fn zeroed_words(n: usize) -> Option<Box<[AtomicU64]>> {
    if n == 0 {
        return Some(Box::new([]));
    }
    let layout = std::alloc::Layout::array::<AtomicU64>(n).ok()?;
    // SAFETY: the layout has a non-zero size (n > 0).
    let raw = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<AtomicU64>();
    if raw.is_null() {
        return None;
    }
    advise_huge_pages(raw.cast(), layout.size());
    // SAFETY: `raw` was allocated by the global allocator with the layout of `[AtomicU64; n]`;
    // all-zero bytes are a valid `AtomicU64`; ownership passes to the box.
    Some(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(raw, n)) })
}

/// Asks the kernel to back a large buffer with transparent huge pages where it is configured
/// to do so on request: the buffer's pages are committed as records fill them, and a 2 MiB
/// page costs one fault where 4 KiB pages cost 512. Only the whole huge pages inside the
/// allocation are advised; the advice changes no contents, and failure changes nothing.
#[cfg(target_os = "linux")]
fn advise_huge_pages(start: *mut u8, len: usize) {
    const HUGE_PAGE: usize = 2 << 20;
    let begin = (start as usize).next_multiple_of(HUGE_PAGE);
    let end = (start as usize + len) & !(HUGE_PAGE - 1);
    if end > begin {
        // SAFETY: [begin, end) lies inside the allocation that starts at `start`, which this
        // function's caller owns; MADV_HUGEPAGE neither reads nor changes its contents.
        unsafe { libc::madvise(begin as *mut libc::c_void, end - begin, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_start: *mut u8, _len: usize) {}

/// Keeps this thread's buffer alive; its destructor clears [`CURRENT`] first so that the hot
/// path never sees a dangling pointer while the thread is torn down.
struct Owner(RefCell<Option<Arc<ThreadBuffer>>>);

impl Drop for Owner {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(ptr::null()));
    }
}

thread_local! {
    /// This thread's buffer, read by the hot path. Const-initialised and without a
    /// destructor, so access is a plain thread-pointer-relative load.
    static CURRENT: Cell<*const ThreadBuffer> = const { Cell::new(ptr::null()) };
    static OWNER: Owner = const { Owner(RefCell::new(None)) };
    static THREAD_ID: Cell<u64> = const { Cell::new(0) };
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
        if buffer.epoch == EPOCH.load(Ordering::Relaxed) {
            buffer.push_event_ending_now(w0, start);
            return;
        }
    }
    record_event_slow(w0, start);
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
    record_slow(epoch, &[w0, start, end], &[]);
}

/// Records an event that ends now, whose name is a run-time `&'static str`.
#[inline(always)]
pub(crate) fn record_named_event(name: &'static str, start: u64) {
    let (ptr, len) = (name.as_ptr() as u64, name.len() as u64);
    if ptr >> 48 == 0 && len < SHORT_NAME_LEN {
        return record_site_event(ptr << 16 | len << 3 | KIND_SHORT_NAMED, start);
    }
    record_long_named_event(name, start)
}

/// Names of 8 KiB and more take the slow path: they are rare, and their record is two slots.
#[cold]
fn record_long_named_event(name: &'static str, start: u64) {
    let _in_flight = InFlight::begin();
    let (epoch, end) = epoch_then_clock();
    let header = [
        KIND_NAMED | (name.len() as u64) << 8,
        name.as_ptr() as u64,
        start,
        end,
        0,
        0,
    ];
    record_slow(epoch, &header, &[]);
}

/// Records one metadata entry for the event identified by (`owner_ident`, `owner_start`), or
/// with `owner_ident == 0` for the innermost event open on this thread at `owner_start`.
pub(crate) fn record_arg(key: &'static str, value: Value<'_>, owner_start: u64, owner_ident: u64) {
    let (ty, payload, bytes): (u64, u64, &[u8]) = match &value {
        Value::Int(v) => (TYPE_INT, *v as u64, &[]),
        Value::UInt(v) => (TYPE_UINT, *v, &[]),
        Value::Float(v) => (TYPE_FLOAT, v.to_bits(), &[]),
        Value::Bool(v) => (TYPE_BOOL, *v as u64, &[]),
        Value::Str(s) => (TYPE_STR, s.len() as u64, s.as_bytes()),
    };
    let header = [
        KIND_ARG | ty << 3 | (key.len() as u64) << 8,
        key.as_ptr() as u64,
        owner_start,
        payload,
        owner_ident,
        0,
    ];
    push_record(&header, bytes);
}

fn push_record(header: &[u64; 6], bytes: &[u8]) {
    if let Some(buffer) = current_buffer() {
        if buffer.epoch == EPOCH.load(Ordering::Relaxed) && buffer.try_push_record(header, bytes) {
            return;
        }
    }
    record_arg_slow(header, bytes);
}

#[cold]
#[inline(never)]
fn record_arg_slow(header: &[u64; 6], bytes: &[u8]) {
    let _in_flight = InFlight::begin();
    record_slow(EPOCH.load(Ordering::SeqCst), header, bytes);
}

/// Records into session `epoch`, read after the caller counted itself [`IN_FLIGHT`]: the
/// thread's first record in the session (its buffer is attached), a full buffer (the record
/// is counted as dropped), or a record after its session stopped (it belongs to none).
fn record_slow(epoch: u64, header: &[u64], bytes: &[u8]) {
    if let Some(buffer) = current_buffer() {
        if buffer.epoch == epoch {
            // The buffer is this session's: the record is a long named event, or it is full.
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
        match crate::session::attach_thread(epoch, thread_id(), thread_name, spare) {
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
            LOST_WITHOUT_BUFFER.fetch_add(1, Ordering::Relaxed);
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

/// Counts an event that had nowhere to go.
pub(crate) fn count_lost() {
    LOST_WITHOUT_BUFFER.fetch_add(1, Ordering::Relaxed);
}

/// A process-wide number for this thread, assigned at its first record (1, 2, ...).
pub(crate) fn thread_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    THREAD_ID
        .try_with(|id| {
            if id.get() == 0 {
                id.set(NEXT.fetch_add(1, Ordering::Relaxed));
            }
            id.get()
        })
        .unwrap_or(0)
}

pub(crate) fn thread_name(id: u64) -> String {
    match std::thread::current().name() {
        Some(name) => name.to_owned(),
        None => format!("thread-{id}"),
    }
}
