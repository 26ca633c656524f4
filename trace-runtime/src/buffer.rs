//! A thread's buffer of records for one session: appended to by its thread alone, read by
//! the session once it stops.
//!
//! The buffer is allocated zeroed, so the OS commits pages only as records fill them.
//! Appending takes no lock, allocates nothing and makes no syscall: a few relaxed stores and
//! one release store of the length.
//!
//! Stopping without losing events: the thread marks its buffer (the low bit of its length)
//! before it reads an event's end clock and clears the mark when it publishes the event.
//! `collector::session::stop` reads its stop time, ends the epoch, issues a barrier on every
//! thread of the process (`collector::barrier`) and then waits for the marks to clear: an
//! event whose end is before the stop time is then either published or marked, never
//! neither.

use std::ptr;
use std::sync::atomic::{compiler_fence, AtomicU64, Ordering};

// The atomics a buffer is made of: loom's under `--cfg loom`, so that the model tests at the
// end of this file explore every interleaving of the handoff between the recording thread
// and the session.
#[cfg(loom)]
use loom::sync::atomic as buffer_atomic;
#[cfg(not(loom))]
use std::sync::atomic as buffer_atomic;

use crate::clock;
use crate::record::{string_words, SLOT};

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
    pub(crate) fn push_event_ending_now(&self, w0: u64, start: u64) {
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
        let byte_words = string_words(bytes.len());
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

    /// How many words are published.
    pub(crate) fn published_words(&self) -> usize {
        self.state.load(Ordering::Acquire) >> 1
    }

    /// Calls `read` with the published words, in place. Called by the session after it
    /// stopped.
    #[cfg(not(loom))]
    pub(crate) fn read_published<R>(&self, read: impl FnOnce(&[u64]) -> R) -> R {
        let len = self.published_words();
        let published = &self.words[..len];
        // SAFETY: `AtomicU64` has the size, alignment and bit validity of `u64`. The owner
        // wrote these words before its release store of the length (acquired above) and
        // never writes them again: a record that comes later goes after them.
        let words = unsafe { std::slice::from_raw_parts(published.as_ptr().cast::<u64>(), len) };
        read(words)
    }

    /// Calls `read` with a copy of the published words (loom's atomics are not plain words).
    #[cfg(loom)]
    pub(crate) fn read_published<R>(&self, read: impl FnOnce(&[u64]) -> R) -> R {
        read(&self.published())
    }

    /// Gives the pages of a buffer that was read back to the system; the buffer stays
    /// usable (its pages read as zero, and are committed again as records fill them).
    pub(crate) fn release_pages(&self) {
        #[cfg(all(target_os = "linux", not(loom)))]
        {
            const PAGE: usize = 4096;
            let start = self.words.as_ptr() as usize;
            let end = start + std::mem::size_of_val(&*self.words);
            let (first, last) = (start.next_multiple_of(PAGE), end & !(PAGE - 1));
            if last > first {
                // SAFETY: [first, last) lies inside this buffer's allocation. The owner writes
                // no published word again, and a record it may still be appending belongs
                // to no session (its epoch is over); reading a released page gives zeros.
                unsafe {
                    libc::madvise(
                        first as *mut libc::c_void,
                        last - first,
                        libc::MADV_DONTNEED,
                    )
                };
            }
        }
    }

    /// The published words, copied out.
    #[cfg(loom)]
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

/// Model tests of the handoff, run with `RUSTFLAGS="--cfg loom" cargo test -p trace-runtime
/// --release --lib loom`: loom runs each closure under every interleaving of its threads (and
/// every outcome its memory orderings allow) and fails on any that breaks an assertion.
#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use crate::record::arg_record;
    use crate::value::Value;
    use loom::thread;
    use std::sync::Arc;

    // Statics, not consts: the records hold their addresses.
    static NAME: &str = "scope";
    static KEY: &str = "path";
    static TEXT: &str = "a string longer than eight bytes";

    fn arg_header(owner_start: u64) -> [u64; 6] {
        let value = Value::Str(TEXT.into());
        arg_record(KEY, &value, owner_start, NAME.as_ptr() as u64).0
    }

    /// What the session may see while the owner records: a prefix of the owner's records,
    /// each one whole, and the records are exactly those before the owner's mark.
    fn check_published(words: &[u64], site: u64) {
        let arg = arg_header(7);
        let text_words = string_words(TEXT.len());
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
            let capacity = SLOT + 2 * SLOT + string_words(TEXT.len());
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
