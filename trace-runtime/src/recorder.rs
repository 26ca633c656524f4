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

// The atomics a buffer is made of: loom's under `--cfg loom`, so that the model tests at the
// end of this file explore every interleaving of the handoff between the recording thread
// and the session.
#[cfg(loom)]
use loom::sync::atomic as buffer_atomic;
#[cfg(not(loom))]
use std::sync::atomic as buffer_atomic;

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
/// down, or its buffer could not be allocated, or it was still attaching one when the session
/// stopped waiting for it.
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
    words: Box<[buffer_atomic::AtomicU64]>,
    /// Words published, shifted left by one, with [`WRITING`] in the low bit; written by the
    /// owner thread only.
    state: buffer_atomic::AtomicUsize,
    /// Records that did not fit.
    dropped: buffer_atomic::AtomicU64,
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
            state: buffer_atomic::AtomicUsize::new(0),
            dropped: buffer_atomic::AtomicU64::new(0),
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
        self.state = buffer_atomic::AtomicUsize::new(0);
        self.dropped = buffer_atomic::AtomicU64::new(0);
    }

    /// Capacity in words.
    pub(crate) fn capacity_words(&self) -> usize {
        self.words.len()
    }

    /// Marks the buffer as if its owner were stuck between an end clock and its publication.
    #[cfg(test)]
    pub(crate) fn mark_writing(&self) {
        self.state.fetch_or(WRITING, Ordering::Relaxed);
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

    pub(crate) fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Under loom, atomics are model objects that must be constructed.
#[cfg(loom)]
fn zeroed_words(n: usize) -> Option<Box<[buffer_atomic::AtomicU64]>> {
    Some((0..n).map(|_| buffer_atomic::AtomicU64::new(0)).collect())
}

/// Allocates zeroed words without touching them, so untouched capacity costs no memory.
#[cfg(not(loom))]
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
#[cfg(all(target_os = "linux", not(loom)))]
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

#[cfg(all(not(target_os = "linux"), not(loom)))]
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

/// Model tests of the handoff, run with `RUSTFLAGS="--cfg loom" cargo test -p trace-runtime
/// --release --lib loom`: loom runs each closure under every interleaving of its threads (and
/// every outcome its memory orderings allow) and fails on any that breaks an assertion.
#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use loom::thread;

    // Statics, not consts: the records hold their addresses.
    static NAME: &str = "scope";
    static KEY: &str = "path";
    static TEXT: &str = "a string longer than eight bytes";

    fn arg_header(owner_start: u64) -> [u64; 6] {
        [
            KIND_ARG | TYPE_STR << 3 | (KEY.len() as u64) << 8,
            KEY.as_ptr() as u64,
            owner_start,
            TEXT.len() as u64,
            NAME.as_ptr() as u64,
            0,
        ]
    }

    /// What the session may see while the owner records: a prefix of the owner's records,
    /// each one whole, and the records are exactly those before the owner's mark.
    fn check_published(words: &[u64], site: u64) {
        let arg = arg_header(7);
        let text_words = TEXT.len().div_ceil(8).next_multiple_of(SLOT);
        // The event's slot, then the argument's two slots and its string's slots.
        let whole = [0, SLOT, SLOT + 2 * SLOT + text_words];
        assert!(whole.contains(&words.len()), "torn: {} words", words.len());
        if words.len() >= SLOT {
            assert_eq!(&words[..2], &[site, 7]);
            assert!(words[2] != 0, "end clock missing");
        }
        if words.len() > SLOT {
            assert_eq!(&words[SLOT..3 * SLOT], &arg);
            let bytes: Vec<u8> = words[3 * SLOT..]
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .take(TEXT.len())
                .collect();
            assert_eq!(bytes, TEXT.as_bytes());
        }
    }

    /// The session's side of a stop: reads the buffer at any moment, and when it finds the
    /// mark set, waits for it to clear and reads again.
    fn session_reads(buffer: &ThreadBuffer, site: u64) -> (Vec<u64>, u64) {
        let marked = buffer.is_writing();
        let words = buffer.published();
        check_published(&words, site);
        if !marked {
            return (words, buffer.dropped());
        }
        while buffer.is_writing() {
            thread::yield_now();
        }
        let words = buffer.published();
        check_published(&words, site);
        (words, buffer.dropped())
    }

    // The session runs on a spawned thread and the owner on the model's own: loom (0.7)
    // explores too little when a spawned thread's first access is a load that comes before
    // the other thread's stores.

    /// The session reads the buffer at any moment of the owner's recording: it sees whole
    /// records only, and once a mark it saw is clear the event whose clock was read is
    /// published.
    #[test]
    fn the_session_sees_whole_records_and_waits_out_the_mark() {
        loom::model(|| {
            let site = 8u64;
            let capacity = SLOT + 2 * SLOT + TEXT.len().div_ceil(8).next_multiple_of(SLOT);
            let buffer = Arc::new(ThreadBuffer::new(1, capacity, 1, String::new()).unwrap());
            let session = {
                let buffer = Arc::clone(&buffer);
                thread::spawn(move || {
                    let marked = buffer.is_writing();
                    let (words, _) = session_reads(&buffer, site);
                    (marked, words.len())
                })
            };
            buffer.push_event_ending_now(site, 7);
            assert!(buffer.try_push_record(&arg_header(7), TEXT.as_bytes()));
            let (marked, len) = session.join().unwrap();
            if marked {
                assert!(len >= SLOT, "the marked event was not published");
            }
            check_published(&buffer.published(), site);
        });
    }

    /// A full buffer: a session that saw the mark finds the drop counted once it clears.
    #[test]
    fn a_drop_is_counted_before_the_mark_clears() {
        loom::model(|| {
            let buffer = Arc::new(ThreadBuffer::new(1, 0, 1, String::new()).unwrap());
            let session = {
                let buffer = Arc::clone(&buffer);
                thread::spawn(move || {
                    let marked = buffer.is_writing();
                    let (words, dropped) = session_reads(&buffer, 8);
                    assert!(words.is_empty());
                    if marked {
                        assert_eq!(dropped, 1, "the mark cleared before the drop was counted");
                    }
                })
            };
            buffer.push_event_ending_now(8, 7);
            session.join().unwrap();
            assert_eq!(buffer.dropped(), 1);
        });
    }
}
