//! A thread's buffer of records for one session: appended to by its thread alone, read by
//! the session once it stops.
//!
//! The buffer is allocated zeroed, so the OS commits no page of it until it is needed.
//! Appending takes no lock, allocates nothing, makes no syscall and takes no page fault: a
//! few relaxed stores and one release store of the length, below a limit up to which the
//! pages are already populated. Pages are populated in chunks (`MADV_POPULATE_WRITE` on
//! Linux, one write per page elsewhere): the first chunk, [`FIRST_CHUNK`], by the thread's
//! first record; every later one (small ones to the end of the first huge page, then
//! [`MAX_CHUNK`]) ahead of the writer by the populating thread (`collector::populator`),
//! asked for once the writer is a quarter into the first chunk, and then as it enters each
//! chunk. So a thread's first session does not pay its
//! page faults on its own time while a core is free to take them, and at most one chunk
//! is populated beyond the one being written. When the populating thread has not started
//! on the chunk the writer reaches, the writer populates it itself, as it does where there
//! is no such thread; when it is populating it, the writer waits for it, a bounded time.
//! An event that crosses the limit has read its end clock already, so the populating is
//! not part of its duration; its mark is held meanwhile, so a `stop` at that moment waits
//! for one chunk to be populated. A buffer reused in a later session keeps its populated
//! pages.
//!
//! Stopping without losing events: the thread marks its buffer (the low bit of its length)
//! before it reads an event's end clock and clears the mark when it publishes the event.
//! `collector::session::stop` reads its stop time, ends the epoch, issues a barrier on every
//! thread of the process (`collector::barrier`) and then waits for the marks to clear: an
//! event whose end is before the stop time is then either published or marked, never
//! neither.

#[cfg(not(loom))]
use std::ptr;
#[cfg(not(loom))]
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{compiler_fence, AtomicUsize, Ordering};

// The atomics a buffer is made of: loom's under `--cfg loom`, so that the model tests at the
// end of this file explore every interleaving of the handoff between the recording thread
// and the session.
#[cfg(loom)]
use loom::sync::atomic as buffer_atomic;
#[cfg(not(loom))]
use std::sync::atomic as buffer_atomic;

use crate::clock;
use crate::record::{long_numbered_event, numbered_event, string_words, SLOT};

/// What a buffer keeps committed after `stop` has read it, for its thread's next session
/// (see [`ThreadBuffer::release_pages`]).
pub(crate) const RETAINED_BYTES: usize = 64 << 20;

/// The low bit of [`ThreadBuffer`]'s length word: an event's end clock was read and the event
/// is not published yet.
const WRITING: usize = 1;

/// Bytes populated by a buffer's first record (about 11 000 events): small, so that a thread
/// that records a little commits little.
pub(crate) const FIRST_CHUNK: usize = 256 << 10;

/// The largest chunk populated at once: one 2 MiB huge page (about 87 000 events), ending on
/// a huge-page boundary, so that where the kernel grants huge pages a chunk is one of them.
/// At most one chunk is populated beyond the one being written.
pub(crate) const MAX_CHUNK: usize = 2 << 20;

/// The bit of [`ThreadBuffer::asked`] set by the populating thread when it takes the ask.
const CLAIMED: usize = 1 << (usize::BITS - 1);

/// The longest a writer waits for small pages the populating thread is populating before it
/// populates them alongside it: about what a small chunk takes (256 KiB at 340 ps/B is
/// 90 µs), so that a writer that catches up with it waits for one piece at most, while a
/// populating thread that gets no CPU (every core busy with writers) holds no writer up for
/// long. Two threads populating the same small pages each fault in the pages the other has
/// not reached yet.
const AHEAD_WAIT_SMALL: std::time::Duration = std::time::Duration::from_micros(200);

/// The longest a writer waits for a huge page the populating thread is populating before it
/// populates it itself. Two threads faulting in one huge page may each clear a page of
/// their own, one of which is thrown away, so the writer waits as long as a huge page takes
/// even where fresh memory is slowest (2 MiB at 2.2 ns/B is under 5 ms).
const AHEAD_WAIT_HUGE: std::time::Duration = std::time::Duration::from_millis(10);

/// The step of the fallback that populates by writing: the smallest page size.
#[cfg(not(loom))]
const PAGE: usize = 4096;

/// A bit of [`ThreadBuffer::epoch`]: the buffer was attached from inside the global allocator,
/// where std's thread handle cannot be asked for the thread's name, so its name is the
/// operating system's (cut at 15 bytes on Linux). The epoch no longer matches the session's
/// for a scope's record, whose slow path then names the thread properly, once.
pub(crate) const NAMELESS: u64 = 1 << 63;

/// One thread's records for one session, shared by the thread (which appends) and the session
/// (which reads after it stops).
pub(crate) struct ThreadBuffer {
    /// The session it records for, with [`NAMELESS`] while the thread's name is provisional.
    /// Changed by the owner thread only.
    epoch: std::sync::atomic::AtomicU64,
    pub(crate) thread_id: u64,
    thread_name: std::sync::Mutex<String>,
    words: Words,
    /// Words published, shifted left by one, with [`WRITING`] in the low bit; written by the
    /// owner thread only.
    state: buffer_atomic::AtomicUsize,
    /// The limit of the hot path, in words: at most `populated`, so appends below it take no
    /// page fault; past it, the cold path populates or asks for more. Read and written by the
    /// owner thread only (an atomic only so that the buffer is `Sync`; relaxed accesses are
    /// plain moves), kept by [`Self::reset`].
    ready: AtomicUsize,
    /// Words whose pages are populated, at most `words.len()`: raised by the owner or by the
    /// populating thread, lowered only when pages are given back. Only a hint: a word past it
    /// is written all the same, at the cost of a page fault.
    populated: AtomicUsize,
    /// The end, in words, of the pages the owner asked the populating thread for, with
    /// [`CLAIMED`] once that thread took the ask; 0 while nothing is asked.
    asked: AtomicUsize,
    /// The CPU the owner ran on when it last asked, or `usize::MAX`.
    asker_cpu: AtomicUsize,
    /// The first and the largest chunk populated at once, in bytes.
    chunks: (usize, usize),
    /// Records that did not fit.
    dropped: buffer_atomic::AtomicU64,
    /// Allocations below the traced allocator's threshold: count and bytes, counted instead
    /// of recorded. Written by the owner thread only, read after the session stops.
    heap_unrecorded: [AtomicUsize; 2],
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
            epoch: epoch.into(),
            thread_id,
            thread_name: thread_name.into(),
            words: zeroed_words(capacity_words)?,
            state: buffer_atomic::AtomicUsize::new(0),
            ready: AtomicUsize::new(0),
            populated: AtomicUsize::new(0),
            asked: AtomicUsize::new(0),
            asker_cpu: AtomicUsize::new(usize::MAX),
            chunks: (FIRST_CHUNK, MAX_CHUNK),
            dropped: buffer_atomic::AtomicU64::new(0),
            heap_unrecorded: Default::default(),
        })
    }

    /// The same buffer populated in chunks of `first` growing to `max` bytes, so that tests
    /// cross the populated limit often.
    #[cfg(test)]
    pub(crate) fn with_chunks(mut self, first: usize, max: usize) -> ThreadBuffer {
        self.chunks = (first, max);
        self
    }

    /// The session it records for, with [`NAMELESS`] set while its name is provisional.
    #[inline(always)]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// The thread's name.
    pub(crate) fn thread_name(&self) -> String {
        let name = self.thread_name.lock();
        name.unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Gives a buffer attached with a provisional name its thread's name (by the owner).
    pub(crate) fn name_thread(&self, name: String) {
        *self.thread_name.lock().unwrap_or_else(|p| p.into_inner()) = name;
        self.epoch.fetch_and(!NAMELESS, Ordering::Relaxed);
    }

    /// Marks the name as provisional (see [`NAMELESS`]).
    pub(crate) fn mark_nameless(&mut self) {
        *self.epoch.get_mut() |= NAMELESS;
    }

    /// Reads the clock and appends the event that ends now, with the buffer marked from
    /// before the clock read until the event is published.
    #[inline(always)]
    pub(crate) fn push_event_ending_now(&self, w0: u64, start: u64) {
        self.push_slot_now(|end| [w0, start, end]);
    }

    /// Reads the clock and appends a heap record of that time (`record::heap_word`), marked
    /// like an event.
    #[inline(always)]
    pub(crate) fn push_heap_now(&self, w0: u64, bytes: u64) {
        self.push_slot_now(|time| [w0, time, bytes]);
    }

    /// Reads the clock and appends the event with a number that ends now (see
    /// `record::numbered_event`): one slot, or two when it lasted 2^32 ticks or more. Marked
    /// like an event.
    #[inline(always)]
    pub(crate) fn push_numbered_event_ending_now(&self, w0: u64, start: u64, number: u64) {
        let state = self.mark_before_clock();
        let end = clock::now();
        match numbered_event(w0, start, end, number) {
            Some(slot) => self.publish_slot(state, slot),
            None => self.push_marked(state, &long_numbered_event(w0, start, end, number)),
        }
    }

    /// Reads the clock and appends the one-slot record `slot` makes of it. The buffer is
    /// marked from before the clock read until the record is published.
    #[inline(always)]
    fn push_slot_now(&self, slot: impl FnOnce(u64) -> [u64; SLOT]) {
        let state = self.mark_before_clock();
        self.publish_slot(state, slot(clock::now()));
    }

    /// Marks the buffer as being written; returns its state unmarked. The mark is stored
    /// before the caller reads the clock: `session::stop` relies on it.
    #[inline(always)]
    fn mark_before_clock(&self) -> usize {
        // Even: only this thread writes the state, and it leaves it unmarked.
        let state = self.state.load(Ordering::Relaxed);
        self.state.store(state | WRITING, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        state
    }

    /// Appends one slot to the marked buffer, publishes it and clears the mark.
    #[inline(always)]
    fn publish_slot(&self, state: usize, [w0, w1, w2]: [u64; SLOT]) {
        let len = state >> 1;
        // The one bounds check: against the populated limit, which is at most the capacity.
        if len + SLOT <= self.ready.load(Ordering::Relaxed) {
            // SAFETY: `len + SLOT <= ready <= words.len()`, so the three words exist.
            let (a, b, c) = unsafe {
                (
                    self.words.get_unchecked(len),
                    self.words.get_unchecked(len + 1),
                    self.words.get_unchecked(len + 2),
                )
            };
            a.store(w0, Ordering::Relaxed);
            b.store(w1, Ordering::Relaxed);
            c.store(w2, Ordering::Relaxed);
            self.state.store((len + SLOT) << 1, Ordering::Release);
        } else {
            self.push_marked(state, &[w0, w1, w2]);
        }
    }

    /// Appends `record` to the marked buffer past the populated limit (or a record longer than
    /// a slot): populates the next chunk and appends, or, when the buffer is full, counts the
    /// event as dropped. Either way the mark is cleared last. The end clock was read before:
    /// the populating is not part of the event.
    #[cold]
    #[inline(never)]
    fn push_marked(&self, state: usize, record: &[u64]) {
        let len = state >> 1;
        let end = len + record.len();
        if self.populate_through(end) {
            for (word, &value) in self.words[len..end].iter().zip(record) {
                word.store(value, Ordering::Relaxed);
            }
            self.state.store(end << 1, Ordering::Release);
        } else {
            self.count_drop();
            self.state.store(state, Ordering::Release);
        }
    }

    /// Appends `header` (a whole number of slots) and `bytes` packed into whole slots.
    pub(crate) fn try_push_record(&self, header: &[u64], bytes: &[u8]) -> bool {
        let len = self.state.load(Ordering::Relaxed) >> 1;
        let end = len + header.len() + string_words(bytes.len());
        if end > self.ready.load(Ordering::Relaxed) && !self.populate_through(end) {
            return false;
        }
        // SAFETY: `end <= ready <= words.len()`: either it was below the limit, or
        // `populate_through` raised the limit to at least `end`.
        let dest = unsafe { self.words.get_unchecked(len..end) };
        let (head, tail) = dest.split_at(header.len());
        for (slot, &word) in head.iter().zip(header) {
            slot.store(word, Ordering::Relaxed);
        }
        for (slot, chunk) in tail.iter().zip(bytes.chunks(8)) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            slot.store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        self.state.store(end << 1, Ordering::Release);
        true
    }

    /// Makes sure the pages up to word `end` are populated and raises the hot path's limit
    /// past it; false (and nothing done) if `end` is beyond the capacity. Waits for the
    /// populating thread when it is populating them, populates them here otherwise, and asks
    /// that thread for the next chunk when it is time (see [`Self::next_limit`]).
    #[cold]
    #[inline(never)]
    fn populate_through(&self, end: usize) -> bool {
        if end > self.words.len() {
            return false;
        }
        if end <= self.ready.load(Ordering::Relaxed) {
            return true;
        }
        let mut populated = self.populated.load(Ordering::Acquire);
        if end > populated {
            populated = match self.await_asked(end) {
                Some(populated) => populated,
                None => self.populate_here(populated, end),
            };
        }
        self.ready
            .store(self.next_limit(populated, end), Ordering::Relaxed);
        true
    }

    /// The end of the chunk that begins at word `from`, at least `end`, at most the capacity.
    ///
    /// Chunks are small up to a largest chunk past the first one (in a large buffer: the
    /// first chunk, then the first huge page in small chunks, never advised huge; see
    /// [`Words`]), and the largest past that; a chunk ends on an address that is a multiple
    /// of its size, so 2 MiB chunks are whole huge pages. Small chunks first, because the
    /// populating thread is asked for the next chunk only a little before the writer needs
    /// it there, and a small chunk is populated in time.
    fn chunk_end(&self, from: usize, end: usize) -> usize {
        const WORD: usize = std::mem::size_of::<u64>();
        let (first, max) = self.chunks;
        let chunk = if from * WORD < first + max {
            first
        } else {
            max
        }
        .max(WORD);
        let base = self.words.as_ptr() as usize;
        let chunk_end = (base + from * WORD + chunk) / chunk * chunk;
        ((chunk_end - base) / WORD).clamp(end, self.words.len())
    }

    /// Populates, on this thread, the chunk that begins at word `populated` and at least up to
    /// `end`; returns the new populated limit.
    fn populate_here(&self, populated: usize, end: usize) -> usize {
        let chunk_end = self.chunk_end(populated, end);
        populate_timed(&self.words, populated..chunk_end);
        self.populated
            .fetch_max(chunk_end, Ordering::Release)
            .max(chunk_end)
    }

    /// When the populating thread has taken an ask that covers word `end`, waits for it to
    /// finish ([`AHEAD_WAIT_SMALL`] or [`AHEAD_WAIT_HUGE`] at most) and returns the populated
    /// limit. `None` when the caller must populate: nothing covering `end` is asked, or the
    /// ask was not taken yet (it is withdrawn), or the wait ran out.
    fn await_asked(&self, end: usize) -> Option<usize> {
        let mut asked = self.asked.load(Ordering::Acquire);
        if asked != 0 && asked & CLAIMED == 0 {
            match self
                .asked
                .compare_exchange(asked, 0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return None,
                // Taken meanwhile.
                Err(now) => asked = now,
            }
        }
        if asked & CLAIMED == 0 || asked & !CLAIMED < end {
            return None;
        }
        let limit = if in_advised_huge_page(&self.words, self.populated.load(Ordering::Acquire)) {
            AHEAD_WAIT_HUGE
        } else {
            AHEAD_WAIT_SMALL
        };
        let began = std::time::Instant::now();
        for spin in 0u32.. {
            let populated = self.populated.load(Ordering::Acquire);
            if populated >= end {
                return Some(populated);
            }
            // The ask is done (the populated limit was raised before) or was given up.
            if self.asked.load(Ordering::Acquire) != asked || began.elapsed() > limit {
                let populated = self.populated.load(Ordering::Acquire);
                return (populated >= end).then_some(populated);
            }
            // Spin briefly, then let the populating thread have this core if it shares it.
            if spin < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        None
    }

    /// The hot path's next limit, the writer being about to write up to word `end` and the
    /// pages being populated up to `populated`. Asks the populating thread for the chunk
    /// after `populated` once the writer is a quarter into the first chunk (a thread that
    /// records a little commits only that chunk), or at once past it, unless an ask is
    /// outstanding; until the quarter mark, the limit is that mark.
    fn next_limit(&self, populated: usize, end: usize) -> usize {
        let capacity = self.words.len();
        if populated >= capacity || self.asked.load(Ordering::Relaxed) != 0 {
            return populated;
        }
        let first_chunk = self.chunk_end(0, 0);
        let ask_at = if populated <= first_chunk {
            populated / 4
        } else {
            0
        };
        if end < ask_at {
            return ask_at;
        }
        if let Some(populator) = populator() {
            self.asker_cpu.store(current_cpu(), Ordering::Relaxed);
            self.asked
                .store(self.chunk_end(populated, populated), Ordering::Release);
            // No lock, no allocation: a system call at most, when the thread sleeps.
            populator.unpark();
        }
        populated
    }

    /// Populates the next piece of the pages the owner asked for, taking the ask first if
    /// nobody has: called by the populating thread, the only one that takes asks. Returns
    /// true while pieces of the ask remain.
    ///
    /// A piece is one huge page where huge pages are advised, a small chunk otherwise: the
    /// populating thread goes round the buffers that ask, a piece at a time, so that one
    /// buffer's chunk does not hold up another's, and a writer waiting for its ask goes on as
    /// soon as the piece it needs is populated.
    pub(crate) fn populate_asked(&self) -> bool {
        let asked = self.asked.load(Ordering::Acquire);
        if asked == 0 {
            return false;
        }
        if asked & CLAIMED == 0
            && self
                .asked
                .compare_exchange(asked, asked | CLAIMED, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            // Withdrawn by the owner meanwhile.
            return false;
        }
        let asked_end = asked & !CLAIMED;
        let from = self.populated.load(Ordering::Acquire);
        let mut piece_end = self.chunk_end(from, from).min(asked_end);
        if !in_advised_huge_page(&self.words, from) {
            piece_end = piece_end.min(from + (self.chunks.0 / 8).max(1));
        }
        if from < piece_end {
            populate_timed(&self.words, from..piece_end);
            // Raised before the ask is cleared: a waiting writer looks at this first.
            self.populated.fetch_max(piece_end, Ordering::Release);
        }
        if piece_end < asked_end {
            return true;
        }
        self.asked.store(0, Ordering::Release);
        false
    }

    /// Gives up the pages asked for and not populated yet (by the owner, whose thread
    /// ends): the populating thread stops after the piece it may be populating.
    pub(crate) fn withdraw_ask(&self) {
        self.asked.store(0, Ordering::Release);
    }

    /// The CPU the owner ran on when it last asked for pages, if known.
    pub(crate) fn asker_cpu(&self) -> Option<usize> {
        Some(self.asker_cpu.load(Ordering::Relaxed)).filter(|&cpu| cpu != usize::MAX)
    }

    /// True when the owner has asked for pages that are not populated yet.
    pub(crate) fn has_ask(&self) -> bool {
        self.asked.load(Ordering::Relaxed) != 0
    }

    /// The hot path's limit, in words.
    #[cfg(test)]
    pub(crate) fn ready_words(&self) -> usize {
        self.ready.load(Ordering::Relaxed)
    }

    /// Words whose pages are populated.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn populated_words(&self) -> usize {
        self.populated.load(Ordering::Relaxed)
    }

    /// Makes the buffer empty and gives it to session `epoch`. Needs the only reference,
    /// i.e. the earlier session has finished reading it.
    /// Its populated pages stay populated.
    pub(crate) fn reset(&mut self, epoch: u64) {
        let nameless = *self.epoch.get_mut() & NAMELESS;
        *self.epoch.get_mut() = epoch | nameless;
        self.state = buffer_atomic::AtomicUsize::new(0);
        // Nobody else holds the buffer, so an ask not done is given up.
        *self.asked.get_mut() = 0;
        self.dropped = buffer_atomic::AtomicU64::new(0);
        self.heap_unrecorded = Default::default();
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

    /// Gives the pages of a buffer that was read back to the system, beyond the first
    /// [`RETAINED_BYTES`]: a thread that records again keeps that much committed for its next
    /// session (the steady state of a reused buffer), while a large recording's memory goes
    /// back. The buffer stays usable: its populated limit drops to what was kept, and a next
    /// session populates the rest again, chunk by chunk, off the hot path.
    pub(crate) fn release_pages(&self) {
        self.release_pages_beyond(RETAINED_BYTES / std::mem::size_of::<u64>());
    }

    /// Gives back the populated pages past the first `kept` words.
    fn release_pages_beyond(&self, kept: usize) {
        let populated = self.populated.load(Ordering::Acquire).min(self.words.len());
        let kept = populated.min(kept);
        if kept == populated {
            return;
        }
        // Lowered first. A chunk the populating thread is still populating may raise the
        // populated limit again over pages given back: those are then faulted in by writes,
        // as ever.
        self.populated.store(kept, Ordering::Release);
        self.ready.fetch_min(kept, Ordering::Relaxed);
        #[cfg(all(target_os = "linux", not(loom)))]
        {
            let start = self.words.as_ptr() as usize;
            // SAFETY: the pages lie inside this buffer's allocation, past the words kept. The
            // owner writes no published word again, and a record it may still be appending
            // belongs to no session (its epoch is over); a released page reads as zeros.
            unsafe {
                advise_whole_pages(
                    start + kept * 8..start + populated * 8,
                    PAGE,
                    libc::MADV_DONTNEED,
                )
            };
        }
    }

    /// The published words, copied out.
    #[cfg(any(test, loom))]
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

    /// Counts an allocation of `bytes` that is not recorded (by the owner thread).
    pub(crate) fn count_unrecorded_allocation(&self, bytes: usize) {
        let [count, total] = &self.heap_unrecorded;
        // Plain moves: only the owner writes these.
        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        total.store(
            total.load(Ordering::Relaxed).wrapping_add(bytes),
            Ordering::Relaxed,
        );
    }

    /// The allocations counted by [`Self::count_unrecorded_allocation`]: count and bytes.
    pub(crate) fn unrecorded_allocations(&self) -> (u64, u64) {
        let [count, total] = &self.heap_unrecorded;
        (
            count.load(Ordering::Relaxed) as u64,
            total.load(Ordering::Relaxed) as u64,
        )
    }
}

/// The CPU this thread runs on, or `usize::MAX` where that is not known.
fn current_cpu() -> usize {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: no arguments; the vDSO answers without a system call.
        let cpu = unsafe { libc::sched_getcpu() };
        if cpu >= 0 {
            return cpu as usize;
        }
    }
    usize::MAX
}

/// The thread that populates buffers ahead of their writers, once started (never under
/// loom, whose models start no session).
static POPULATOR: std::sync::OnceLock<std::thread::Thread> = std::sync::OnceLock::new();

/// Makes `thread` the one that buffers ask for pages ahead of their writers: it calls
/// [`ThreadBuffer::populate_asked`] on the buffers with an ask once woken.
pub(crate) fn set_populator(thread: std::thread::Thread) {
    let _ = POPULATOR.set(thread);
}

/// The populating thread, once started.
fn populator() -> Option<&'static std::thread::Thread> {
    POPULATOR.get()
}

/// Commits the pages of `words` (rounded out to whole pages) without changing their contents,
/// so that later writes take no page fault: `MADV_POPULATE_WRITE` (Linux 5.14 and later); where
/// it fails or is missing, one atomic no-op write per page. Never fails.
#[cfg(not(loom))]
fn populate(words: &[buffer_atomic::AtomicU64]) {
    if words.is_empty() {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        use std::sync::atomic::AtomicBool;
        /// Set once the kernel refused: older kernels, other page sizes.
        static UNSUPPORTED: AtomicBool = AtomicBool::new(false);
        if !UNSUPPORTED.load(Ordering::Relaxed) {
            let begin = words.as_ptr() as usize & !(PAGE - 1);
            let end = words.as_ptr() as usize + std::mem::size_of_val(words);
            // SAFETY: [begin, end) covers the pages that hold `words`, all mapped (they hold
            // part of a live allocation); MADV_POPULATE_WRITE faults them in writable as a
            // write would, and neither reads nor changes any byte.
            let rc = unsafe {
                libc::madvise(
                    begin as *mut libc::c_void,
                    end - begin,
                    libc::MADV_POPULATE_WRITE,
                )
            };
            if rc == 0 {
                return;
            }
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                UNSUPPORTED.store(true, Ordering::Relaxed);
            }
        }
    }
    populate_by_writing(words);
}

/// One write per page: adding zero changes no word, and being atomic it races with no reader
/// of the published words.
#[cfg(not(loom))]
fn populate_by_writing(words: &[buffer_atomic::AtomicU64]) {
    let step = PAGE / std::mem::size_of::<u64>();
    for word in words.iter().step_by(step).chain(words.last()) {
        word.fetch_add(0, Ordering::Relaxed);
    }
}

/// What small pages have cost to populate in this process so far: picoseconds and bytes.
#[cfg(not(loom))]
static SMALL_PAGES_COST: [std::sync::atomic::AtomicU64; 2] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 2];

/// What chunks of huge pages have cost lately, in picoseconds per KiB: a moving average (see
/// [`judge_huge_chunk`]), from 0 at first and at its limit when tried again after a withdrawal
/// (see [`huge_pages_pay`]).
#[cfg(not(loom))]
static HUGE_PAGES_RECENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// When huge pages were withdrawn, in ms since [`process_ms`]'s origin, plus one; 0 while
/// buffers ask for them.
#[cfg(not(loom))]
static HUGE_PAGES_WITHDRAWN_AT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long buffers go without huge pages once withdrawn, before one asks for them again: the
/// slow phases of a host that backs guest memory lazily come and go.
#[cfg(not(loom))]
const HUGE_PAGES_RETRY_MS: u64 = 100;

/// Judges one more chunk of huge pages that cost `sample` ps/KiB, given the recent average and
/// what small pages cost (ps/KiB): the new average, and whether huge pages should be withdrawn.
///
/// Where a host backs guest memory lazily, a huge page it has not backed costs some 20 times
/// what one it has costs, and some 6 times what small pages cost, for as long as such a phase
/// lasts; some phases mix the two kinds, and there huge pages still pay while fewer than about
/// one chunk in seven is slow. Each chunk weighs an eighth of the average, which starts at 0
/// (huge pages are presumed to pay), and they are withdrawn once it is twice what small pages
/// cost: after three slow chunks in a row, and rarely where slow chunks are scattered.
#[cfg_attr(loom, allow(dead_code))]
fn judge_huge_chunk(recent: u64, sample: u64, small: u64) -> (u64, bool) {
    let recent = (7 * recent + sample) / 8;
    (recent, small != 0 && recent > 2 * small)
}

/// Milliseconds since this process first asked.
#[cfg(not(loom))]
fn process_ms() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// True when a new buffer should ask for huge pages: unless they were withdrawn less than
/// [`HUGE_PAGES_RETRY_MS`] ago. Once that has passed, the buffer asking tries them again, on
/// probation: the average restarts at the limit, so that one more slow chunk withdraws them
/// again (a probe costs one slow chunk while a slow phase lasts), while fast chunks bring it
/// down.
#[cfg(not(loom))]
fn huge_pages_pay() -> bool {
    let withdrawn_at = HUGE_PAGES_WITHDRAWN_AT.load(Ordering::Relaxed);
    if withdrawn_at == 0 {
        return true;
    }
    if process_ms() + 1 < withdrawn_at + HUGE_PAGES_RETRY_MS {
        return false;
    }
    if HUGE_PAGES_WITHDRAWN_AT
        .compare_exchange(withdrawn_at, 0, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        HUGE_PAGES_RECENT.store(2 * small_pages_cost(), Ordering::Relaxed);
    }
    true
}

/// Picoseconds per KiB.
#[cfg(not(loom))]
fn per_kib(picos: u64, bytes: u64) -> u64 {
    (picos as u128 * 1024 / bytes.max(1) as u128) as u64
}

/// What small pages have cost so far, in picoseconds per KiB; 0 before any was measured.
#[cfg(not(loom))]
fn small_pages_cost() -> u64 {
    let [picos, bytes] = &SMALL_PAGES_COST;
    per_kib(picos.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed))
}

/// Populates `range` of `words`, timing it to learn whether huge pages pay here.
///
/// A huge page is cheaper than the 512 small pages it replaces when the kernel has one at
/// hand, but in a virtual machine whose host backs guest memory lazily a huge page can come
/// from memory the host has not backed yet and cost many times more. Each buffer's first
/// chunk is made of small pages, which tells what those cost; each chunk of huge pages is
/// judged against that ([`judge_huge_chunk`]), and once huge pages cost over twice as much
/// per byte lately, the advice is withdrawn from the rest of the buffer, and buffers
/// made in the next [`HUGE_PAGES_RETRY_MS`] do not ask for them. (Concurrent populating
/// threads may each update the average from a stale value: it is an estimate.)
#[cfg(not(loom))]
fn populate_timed(words: &Words, range: std::ops::Range<usize>) {
    const WORD: usize = std::mem::size_of::<u64>();
    let bytes = (range.len() * WORD) as u64;
    let advised = words.advised.load(Ordering::Relaxed);
    let huge = advised && range.start >= words.huge.start && range.end <= words.huge.end;
    let small = range.end <= words.huge.start || !advised;
    let began = std::time::Instant::now();
    populate(&words[range.clone()]);
    let picos = began.elapsed().as_nanos() as u64 * 1000;
    if small {
        let [small_picos, small_bytes] = &SMALL_PAGES_COST;
        small_picos.fetch_add(picos, Ordering::Relaxed);
        small_bytes.fetch_add(bytes, Ordering::Relaxed);
    } else if huge && bytes != 0 {
        let (average, withdraw) = judge_huge_chunk(
            HUGE_PAGES_RECENT.load(Ordering::Relaxed),
            per_kib(picos, bytes),
            small_pages_cost(),
        );
        HUGE_PAGES_RECENT.store(average, Ordering::Relaxed);
        if withdraw && HUGE_PAGES_WITHDRAWN_AT.load(Ordering::Relaxed) == 0 {
            HUGE_PAGES_WITHDRAWN_AT.store(process_ms() + 1, Ordering::Relaxed);
        }
    }
    if advised && HUGE_PAGES_WITHDRAWN_AT.load(Ordering::Relaxed) != 0 {
        words.advised.store(false, Ordering::Relaxed);
        let rest = &words[range.end.clamp(words.huge.start, words.huge.end)..words.huge.end];
        advise_pages(rest, false);
    }
}

/// True when word `at` of `words` lies in a huge page that is still advised to be one.
#[cfg(not(loom))]
fn in_advised_huge_page(words: &Words, at: usize) -> bool {
    words.advised.load(Ordering::Relaxed) && words.huge.contains(&at)
}

#[cfg(loom)]
fn in_advised_huge_page(_words: &Words, _at: usize) -> bool {
    false
}

/// Under loom the words are model objects: nothing to populate or time, and touching them
/// would only add operations to every explored interleaving.
#[cfg(loom)]
fn populate_timed(_words: &Words, _range: std::ops::Range<usize>) {}

/// A buffer's words: zeroed, never touched by the allocation, so that untouched capacity
/// costs no memory, and placed so that its first chunk ([`FIRST_CHUNK`]) ends on a huge-page
/// boundary: past the first chunk and the huge page after it (small pages, populated in small
/// chunks), every chunk is made of whole huge pages where the kernel grants them. A large
/// buffer is allocated with up to a huge page of slack in front for
/// that; the slack is never touched, so it costs address space only.
#[cfg(not(loom))]
struct Words {
    /// The allocation: its start and layout.
    allocation: ptr::NonNull<u8>,
    layout: std::alloc::Layout,
    /// The first word, inside the allocation.
    first: ptr::NonNull<AtomicU64>,
    len: usize,
    /// The words in whole huge pages, and whether they are still advised to use them.
    huge: std::ops::Range<usize>,
    advised: std::sync::atomic::AtomicBool,
}

// SAFETY: `Words` owns its allocation and hands out only `&[AtomicU64]`, which is `Send` and
// `Sync`, like the `Box<[AtomicU64]>` it stands for.
#[cfg(not(loom))]
unsafe impl Send for Words {}
// SAFETY: as above.
#[cfg(not(loom))]
unsafe impl Sync for Words {}

#[cfg(not(loom))]
impl std::ops::Deref for Words {
    type Target = [AtomicU64];

    #[inline(always)]
    fn deref(&self) -> &[AtomicU64] {
        // SAFETY: `first` points to `len` zero-initialised (or since written) words inside the
        // allocation, which lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.first.as_ptr(), self.len) }
    }
}

#[cfg(not(loom))]
impl Drop for Words {
    fn drop(&mut self) {
        if self.layout.size() != 0 {
            // SAFETY: allocated by `zeroed_words` with this layout, freed only here.
            unsafe { std::alloc::dealloc(self.allocation.as_ptr(), self.layout) };
        }
    }
}

/// Under loom, atomics are model objects that must be constructed.
#[cfg(loom)]
type Words = Box<[buffer_atomic::AtomicU64]>;

#[cfg(loom)]
fn zeroed_words(n: usize) -> Option<Words> {
    Some((0..n).map(|_| buffer_atomic::AtomicU64::new(0)).collect())
}

/// `n` zeroed words (see [`Words`]), or `None` if the allocation fails.
#[cfg(not(loom))]
fn zeroed_words(n: usize) -> Option<Words> {
    const WORD: usize = std::mem::size_of::<AtomicU64>();
    if n == 0 {
        return Some(Words {
            allocation: ptr::NonNull::dangling(),
            layout: std::alloc::Layout::new::<()>(),
            first: ptr::NonNull::dangling(),
            len: 0,
            huge: 0..0,
            advised: false.into(),
        });
    }
    // Buffers smaller than a few huge pages are not placed: they would gain little.
    let slack = if n * WORD >= 4 * MAX_CHUNK {
        MAX_CHUNK
    } else {
        0
    };
    let size = n.checked_mul(WORD)?.checked_add(slack)?;
    let layout =
        std::alloc::Layout::from_size_align(size, std::mem::align_of::<AtomicU64>()).ok()?;
    // SAFETY: the layout has a non-zero size (n > 0).
    let allocation = ptr::NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
    let start = allocation.as_ptr() as usize;
    let offset = if slack == 0 {
        0
    } else {
        // The first word such that the first chunk ends on a huge-page boundary.
        (start + FIRST_CHUNK).next_multiple_of(MAX_CHUNK) - FIRST_CHUNK - start
    };
    // SAFETY: `offset + n * WORD <= size`: `offset < slack` (or both are 0), and the offset
    // is a multiple of the word size, since `start`, FIRST_CHUNK and MAX_CHUNK are.
    let first = unsafe { allocation.as_ptr().add(offset) }.cast::<AtomicU64>();
    // The whole huge pages inside the words, past the first chunk and one huge page more,
    // which are populated in small chunks.
    let (begin, end) = (first as usize, first as usize + n * WORD);
    let huge_begin = ((begin + FIRST_CHUNK + MAX_CHUNK).next_multiple_of(MAX_CHUNK) - begin) / WORD;
    let huge_end = ((end & !(MAX_CHUNK - 1)).saturating_sub(begin) / WORD).max(huge_begin);
    let words = Words {
        allocation,
        layout,
        // SAFETY: inside a non-null allocation.
        first: unsafe { ptr::NonNull::new_unchecked(first) },
        len: n,
        huge: huge_begin.min(n)..huge_end.min(n),
        advised: false.into(),
    };
    if !words.huge.is_empty() && huge_pages_pay() {
        advise_pages(&words[words.huge.clone()], true);
        words.advised.store(true, Ordering::Relaxed);
    }
    Some(words)
}

/// Gives `advice` for the whole pages of `page` bytes (a power of two) that lie inside
/// `range`, if any; failure changes nothing.
///
/// # Safety
///
/// `range` must lie inside memory this process owns, and the advice must not take away
/// contents anyone still reads.
#[cfg(all(target_os = "linux", not(loom)))]
unsafe fn advise_whole_pages(range: std::ops::Range<usize>, page: usize, advice: libc::c_int) {
    let (first, last) = (range.start.next_multiple_of(page), range.end & !(page - 1));
    if last > first {
        // SAFETY: whole pages inside `range` (the caller's contract).
        unsafe { libc::madvise(first as *mut libc::c_void, last - first, advice) };
    }
}

/// Asks the kernel to back `words`, whole huge pages, with transparent huge pages (`huge`)
/// where it is configured to do so on request, or withdraws the request. The advice changes
/// no contents, and failure changes nothing.
#[cfg(all(target_os = "linux", not(loom)))]
fn advise_pages(words: &[AtomicU64], huge: bool) {
    if words.is_empty() {
        return;
    }
    let advice = if huge {
        libc::MADV_HUGEPAGE
    } else {
        libc::MADV_NOHUGEPAGE
    };
    // SAFETY: the range is `words`, memory this process owns; the advice neither reads nor
    // changes its contents.
    unsafe {
        libc::madvise(
            words.as_ptr() as *mut libc::c_void,
            std::mem::size_of_val(words),
            advice,
        )
    };
}

#[cfg(all(not(target_os = "linux"), not(loom)))]
fn advise_pages(_words: &[AtomicU64], _huge: bool) {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::record::string_slots;

    /// Words of the `ARG` header used below, and what `try_push_record` packs a string into.
    const HEADER: [u64; 2 * SLOT] = [3, 11, 12, 13, 14, 15];

    /// Appends events and metadata with strings of every length until well past the capacity,
    /// to a buffer populated in chunks smaller than a record and in chunks that grow, and
    /// checks that what is published is exactly what fit, record for record, and that every
    /// event that did not fit is counted. Events with an inline number take one slot or two.
    #[test]
    fn records_stay_whole_across_chunks_and_drops_are_counted_at_capacity() {
        for (first, max) in [(16, 16), (64, 256), (256, 4096), (FIRST_CHUNK, MAX_CHUNK)] {
            let capacity = 3 * 200;
            let buffer = ThreadBuffer::new(1, capacity, 1, String::new())
                .unwrap()
                .with_chunks(first, max);
            let mut expected: Vec<u64> = Vec::new();
            let (mut event_drops, mut refused, mut limits) = (0, 0, vec![0]);
            for i in 0..400u64 {
                if i % 3 == 2 {
                    let text = vec![b'a' + (i % 26) as u8; (i % 40) as usize];
                    let words = 2 * SLOT + string_words(text.len());
                    let fits = expected.len() + words <= capacity;
                    assert_eq!(buffer.try_push_record(&HEADER, &text), fits, "record {i}");
                    if fits {
                        expected.extend(HEADER);
                        expected.extend(string_slots(&text));
                    } else {
                        refused += 1;
                    }
                } else if i % 3 == 1 {
                    // An event with a number: one slot when it lasted under 2^32 ticks (it
                    // started now), two when it started 2^33 ticks ago.
                    let now = clock::now();
                    let start = if i % 2 == 0 {
                        now
                    } else {
                        now.wrapping_sub(1 << 33)
                    };
                    let words = if i % 2 == 0 { SLOT } else { 2 * SLOT };
                    let fits = expected.len() + words <= capacity;
                    let (w0, number) = ((8 * i) | (1 << 48), i << 32);
                    buffer.push_numbered_event_ending_now(w0, start, number);
                    if fits {
                        let published = buffer.published();
                        let last = &published[expected.len()..];
                        assert_eq!(last.len(), words, "record {i}");
                        if i % 2 == 0 {
                            assert_eq!(last[2] >> 32, i, "record {i}");
                            expected.extend([w0, start, last[2]]);
                        } else {
                            expected.extend([w0 | 1 << 51, start, last[2], number, 0, 0]);
                        }
                    } else {
                        event_drops += 1;
                    }
                } else {
                    let fits = expected.len() + SLOT <= capacity;
                    buffer.push_event_ending_now(8 * i, i);
                    if fits {
                        let end = buffer.published()[expected.len() + 2];
                        expected.extend([8 * i, i, end]);
                    } else {
                        event_drops += 1;
                    }
                }
                assert!(!buffer.is_writing());
                assert!(buffer.ready_words() <= capacity);
                assert!(buffer.ready_words() >= expected.len());
                if limits.last() != Some(&buffer.ready_words()) {
                    limits.push(buffer.ready_words());
                }
            }
            assert_eq!(buffer.published(), expected, "chunks {first}..{max}");
            assert_eq!(buffer.dropped(), event_drops);
            assert!(event_drops > 0 && refused > 0);
            if max < capacity * 8 {
                assert!(limits.len() > 3, "populated in {} steps", limits.len() - 1);
            }
        }
    }

    /// Costs seen on a KVM guest, in ps per KiB: small pages about 340 000, huge pages the
    /// host has backed 80 000 to 150 000, huge pages it has not about 2 100 000.
    fn judge(samples: &[u64]) -> Vec<bool> {
        let (mut recent, mut verdicts) = (0, Vec::new());
        for &sample in samples {
            let (average, withdraw) = judge_huge_chunk(recent, sample, 340_000);
            recent = average;
            verdicts.push(withdraw);
        }
        verdicts
    }

    /// Huge pages are withdrawn on the third slow chunk in a row, and kept through fast
    /// chunks with slow ones among them, and before small pages were ever measured.
    #[test]
    fn huge_pages_are_withdrawn_in_a_run_of_slow_chunks_only() {
        assert_eq!(judge(&[2_100_000; 5]), [false, false, true, true, true]);
        // Slow chunks among fast ones, one in four at the end.
        let mixed = [
            90_000, 2_100_000, 90_000, 90_000, 90_000, 90_000, 90_000, 2_100_000, 90_000,
            2_100_000, 90_000,
        ];
        assert_eq!(judge(&mixed), [false; 11]);
        assert_eq!(judge_huge_chunk(0, 8_000_000, 0), (1_000_000, false));
        // On probation (tried again, the average at the limit): one slow chunk withdraws them,
        // a fast one keeps them.
        assert!(judge_huge_chunk(680_000, 2_100_000, 340_000).1);
        assert!(!judge_huge_chunk(680_000, 90_000, 340_000).1);
    }

    /// A buffer reused in the next session keeps its populated pages: the limit stays, and
    /// appending works from the start again.
    #[test]
    fn a_reset_buffer_keeps_its_populated_limit() {
        let mut buffer = ThreadBuffer::new(1, 3 * 100, 1, String::new())
            .unwrap()
            .with_chunks(64, 64);
        for i in 0..50 {
            buffer.push_event_ending_now(8 * i, i);
        }
        let ready = buffer.ready_words();
        assert!(ready >= 150);
        buffer.reset(2);
        assert_eq!(buffer.ready_words(), ready);
        buffer.push_event_ending_now(8, 1);
        assert_eq!(&buffer.published()[..2], &[8, 1]);
        assert_eq!(buffer.dropped(), 0);
    }

    /// A buffer whose pages `stop` gave back starts populating over in its next session:
    /// records after the reset are whole, none dropped, and the limit grows again.
    #[test]
    fn a_released_buffer_populates_again_after_its_reset() {
        let capacity = 3 * 20_000;
        let mut buffer = ThreadBuffer::new(1, capacity, 1, String::new())
            .unwrap()
            .with_chunks(4096, 4096);
        for i in 0..10_000 {
            buffer.push_event_ending_now(8 * i, i);
        }
        let before = buffer.published();
        buffer.read_published(|words| assert_eq!(words, &before[..]));
        // A small buffer keeps its pages; past what is kept, they are given back.
        let ready = buffer.ready_words();
        buffer.release_pages();
        assert_eq!(buffer.ready_words(), ready);
        buffer.release_pages_beyond(0);
        assert_eq!(buffer.ready_words(), 0);
        buffer.reset(2);
        let mut expected = Vec::new();
        for i in 0..15_000u64 {
            buffer.push_event_ending_now(8 * (i + 1), i);
            expected.extend([8 * (i + 1), i]);
        }
        let words = buffer.published();
        assert_eq!(words.len(), 3 * 15_000);
        let got: Vec<u64> = words.chunks(3).flat_map(|r| [r[0], r[1]]).collect();
        assert_eq!(got, expected);
        assert!(buffer.ready_words() >= 3 * 15_000);
        assert_eq!(buffer.dropped(), 0);
    }

    /// The populating thread's side, driven by hand: an ask is populated one small chunk at a
    /// time; a writer that needs pages of an ask taken waits until they are populated, and
    /// withdraws an ask nobody took, to populate the pages itself.
    #[test]
    fn asks_are_populated_a_piece_at_a_time_and_waited_for_once_taken() {
        // Large enough to be placed, so that its words begin on a page boundary.
        let buffer = ThreadBuffer::new(1, 4 * MAX_CHUNK / 8, 1, String::new())
            .unwrap()
            .with_chunks(4096, 65536);
        buffer.push_event_ending_now(8, 1);
        assert_eq!(
            buffer.populated_words(),
            512,
            "the first chunk, by the writer"
        );
        let buffer = std::sync::Arc::new(buffer);

        // Nothing asked: nothing to do.
        assert!(!buffer.has_ask() && !buffer.populate_asked());

        // Taken, then populated in pieces of one small chunk.
        let asked_end = 512 + 4 * 512;
        buffer.asked.store(asked_end, Ordering::Release);
        assert!(buffer.populate_asked());
        assert_eq!(buffer.populated_words(), 1024);
        assert_ne!(buffer.asked.load(Ordering::Acquire) & CLAIMED, 0);
        // The writer needs the last piece: it waits while another thread populates the rest.
        let helper = {
            let buffer = std::sync::Arc::clone(&buffer);
            std::thread::spawn(move || while buffer.populate_asked() {})
        };
        // Each wait is bounded; a loaded machine may run the helper later than that.
        let populated = loop {
            if let Some(populated) = buffer.await_asked(asked_end) {
                break populated;
            }
            assert_ne!(buffer.asked.load(Ordering::Acquire) & CLAIMED, 0);
        };
        assert!(populated >= asked_end);
        helper.join().unwrap();
        assert_eq!(buffer.populated_words(), asked_end);
        assert!(!buffer.has_ask());

        // Not taken: the writer withdraws it and populates itself.
        buffer.asked.store(asked_end + 512, Ordering::Release);
        assert_eq!(buffer.await_asked(asked_end + 1), None);
        assert!(!buffer.has_ask() && !buffer.populate_asked());
        assert_eq!(buffer.populated_words(), asked_end);

        // Withdrawn by a thread that ends: the populating thread does nothing more.
        buffer.asked.store(asked_end + 512, Ordering::Release);
        buffer.withdraw_ask();
        assert!(!buffer.populate_asked());
        assert_eq!(buffer.populated_words(), asked_end);
    }

    /// A thread that records a little commits only its first chunk and asks for nothing; past
    /// a quarter of that chunk it asks for the next one, when a populating thread runs.
    #[test]
    fn the_next_chunk_is_asked_for_a_quarter_into_the_first() {
        // Large enough to be placed, so that its words begin on a page boundary.
        let buffer = ThreadBuffer::new(1, 4 * MAX_CHUNK / 8, 1, String::new())
            .unwrap()
            .with_chunks(4096, 65536);
        for i in 0..10 {
            buffer.push_event_ending_now(8, i);
        }
        assert_eq!(buffer.populated_words(), 512);
        assert_eq!(buffer.ready_words(), 128, "the quarter mark");
        assert!(!buffer.has_ask());
        for i in 0..40 {
            buffer.push_event_ending_now(8, i);
        }
        assert_eq!(buffer.ready_words(), 512);
        // Only a populating thread is asked; this buffer is in no session, so none takes it.
        assert_eq!(buffer.has_ask(), populator().is_some());
    }

    /// The fallback where the kernel cannot populate: it changes no word.
    #[test]
    fn populating_by_writing_changes_nothing() {
        let words: Vec<AtomicU64> = (0..3000).map(AtomicU64::new).collect();
        populate_by_writing(&words[5..2999]);
        assert!(words
            .iter()
            .enumerate()
            .all(|(i, w)| w.load(Ordering::Relaxed) == i as u64));
    }

    /// A large buffer's first chunk ends on a huge-page boundary, and the largest chunks end
    /// on a multiple of their size: whole huge pages.
    #[test]
    fn the_largest_chunks_end_on_huge_page_boundaries() {
        let capacity = 4 * MAX_CHUNK / 8;
        let buffer = ThreadBuffer::new(1, capacity, 1, String::new()).unwrap();
        let base = buffer.words.as_ptr() as usize;
        assert_eq!((base + FIRST_CHUNK) % MAX_CHUNK, 0);
        let mut seen = 0;
        for i in 0..(capacity / SLOT) as u64 {
            buffer.push_event_ending_now(8, i);
            let ready = buffer.ready_words();
            if ready != seen {
                seen = ready;
                let populated = ready * 8;
                if populated > 2 * MAX_CHUNK && ready < capacity {
                    assert_eq!((base + populated) % MAX_CHUNK, 0, "limit at {populated}");
                }
            }
        }
        assert_eq!(buffer.dropped(), 0);
    }
}

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
    /// published. Both records cross the populated limit, the event with its mark set: with
    /// the usual chunks, the first record populates the first chunk; with one-word chunks,
    /// each record populates its own words.
    #[test]
    fn the_session_sees_whole_records_and_waits_out_the_mark() {
        for (first, max) in [(FIRST_CHUNK, MAX_CHUNK), (8, 8)] {
            model_whole_records(first, max);
        }
    }

    fn model_whole_records(first: usize, max: usize) {
        loom::model(move || {
            let site = 8u64;
            let capacity = SLOT + 2 * SLOT + string_words(TEXT.len());
            let buffer = ThreadBuffer::new(1, capacity, 1, String::new()).unwrap();
            let buffer = Arc::new(buffer.with_chunks(first, max));
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
            assert_eq!(buffer.ready_words(), capacity);
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
