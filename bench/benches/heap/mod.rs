//! Heap rows: an allocation and its free through `TracedAllocator`, side by side with `System`,
//! a hand-written equivalent and dhat, in one run.
//!
//! Every row runs [`alloc_free`]: `GlobalAlloc::alloc` of one block, then its `dealloc`,
//! called directly on an allocator value. Nothing is installed as the global allocator: the
//! recording path is the same, and the harness's own allocations stay out of the rows. One
//! "span" of the harness ([`Subject::run`]) is one such pair here.
//!
//! The rows are interleaved round by round with the span table's baseline (rdtsc x2 + a
//! 24-byte thread-local record), so that the budget's "two baseline records" is measured in
//! the same run. What a row adds to `System` is the median over rounds of its slot minus
//! `System`'s slot of the same round and block size: adjacent slots share the machine's
//! state of the moment, which the difference of two medians would not.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;

use trace_runtime::session::{self, SessionConfig};
use trace_runtime::snapshot::Snapshot;
use trace_runtime::{TracedAllocator, DEFAULT_MIN_RECORDED_BYTES};

use super::{
    baseline_record, measured_rows, median, pass, start_session, stop_session, tsc, Baseline, Row,
    Settings, Subject, BATCH,
};

/// A block the traced allocator records: its allocation and its free, two records.
const RECORDED: usize = 4096;

/// A block it only counts.
const SMALL: usize = 64;

const _: () = assert!(SMALL < DEFAULT_MIN_RECORDED_BYTES && RECORDED >= DEFAULT_MIN_RECORDED_BYTES);

/// Buffer bytes per event of `SessionConfig::max_events_per_thread`: one three-word slot.
const SLOT_BYTES: usize = 24;

/// Allocates a block of `size` bytes through `heap` and frees it, `pairs` times.
#[inline(never)]
fn alloc_free<A: GlobalAlloc>(heap: &A, size: usize, pairs: u64) {
    let Ok(layout) = Layout::from_size_align(size, 16) else {
        return;
    };
    for _ in 0..pairs {
        // SAFETY: `layout` has a non-zero size; a block is freed once, with the layout it was
        // allocated with, by the allocator it came from. `black_box` keeps the pair from
        // being elided.
        unsafe {
            let block = black_box(heap.alloc(layout));
            if !block.is_null() {
                heap.dealloc(block, layout);
            }
        }
    }
}

/// `System` plus what a hand-written recorder adds per call: one `rdtsc` and a 24-byte record
/// (address, time, size) into the baseline's thread-local buffer. The floor for what
/// `TracedAllocator` records: one clock read and three stores per call.
struct HandWrittenHeap;

// SAFETY: every call is passed to `System` unchanged; recording only reads the pointer and
// the size.
unsafe impl GlobalAlloc for HandWrittenHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        let block = unsafe { System.alloc(layout) };
        baseline_record(block as u64, tsc(), layout.size() as u64);
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        baseline_record(block as u64 | 1, tsc(), layout.size() as u64);
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(block, layout) }
    }
}

/// The allocator a row calls.
#[derive(Clone, Copy, PartialEq)]
enum Heap {
    System,
    /// `TracedAllocator` with no session.
    Off,
    /// `TracedAllocator` while a session records.
    On,
    /// [`HandWrittenHeap`].
    HandWritten,
    /// `dhat::Alloc` while a `dhat::Profiler` runs in testing mode (it writes no file).
    Dhat,
}

/// What a row runs: `heap`'s alloc+free pairs of `size`-byte blocks, on this thread or on a
/// new thread each slot.
#[derive(Clone, Copy, PartialEq)]
struct Kind {
    heap: Heap,
    size: usize,
    /// A new thread each slot: with recording on, the slot is that thread's first session,
    /// whose buffer is fresh (this thread reuses its buffer from the last round). A new
    /// thread also allocates from another of glibc's arenas than the main thread does, so
    /// such a row is compared with `System` on a new thread.
    new_thread: bool,
}

impl Kind {
    const fn new(heap: Heap, size: usize) -> Kind {
        Kind {
            heap,
            size,
            new_thread: false,
        }
    }

    const fn on_new_thread(self) -> Kind {
        Kind {
            new_thread: true,
            ..self
        }
    }

    /// The `System` row this one is compared with.
    fn reference(self) -> Kind {
        Kind {
            heap: Heap::System,
            ..self
        }
    }

    /// Whether the traced allocator records blocks of this size.
    fn records(self) -> bool {
        self.size >= DEFAULT_MIN_RECORDED_BYTES
    }
}

/// One row of the heap table.
struct AllocFree {
    kind: Kind,
    /// The hand-written row's records go to a baseline buffer of its own, managed as the
    /// baseline's row manages its.
    buffer: Baseline,
    dhat: Option<dhat::Profiler>,
    /// Pairs of the current slot.
    pairs: u64,
    tally: Tally,
    warnings: Vec<String>,
}

/// What a row's profiler kept, over every slot.
#[derive(Default)]
struct Tally {
    pairs: u64,
    /// Heap records (dhat: blocks).
    kept: u64,
    /// Allocations counted, not recorded.
    counted: u64,
    dropped: u64,
}

impl Tally {
    fn per_pair(&self, n: u64) -> f64 {
        n as f64 / self.pairs.max(1) as f64
    }
}

impl AllocFree {
    fn new(kind: Kind) -> AllocFree {
        AllocFree {
            kind,
            buffer: Baseline::default(),
            dhat: None,
            pairs: 0,
            tally: Tally::default(),
            warnings: Vec::new(),
        }
    }

    /// Adds a session's heap records to the tally; warns when they are not one per call.
    fn check_session(&mut self, snapshot: &Snapshot) {
        let threads = snapshot.threads();
        let kept = threads.iter().map(|t| t.heap.len() as u64).sum::<u64>();
        let counted = threads
            .iter()
            .map(|t| t.heap_unrecorded.allocations)
            .sum::<u64>();
        let dropped = snapshot.dropped();
        // The warm-up pair (recorded) on this thread, then the slot's pairs.
        let warm_up = u64::from(!self.kind.new_thread);
        let (expected_kept, expected_counted) = match self.kind.records() {
            true => (2 * (self.pairs + warm_up), 0),
            false => (2 * warm_up, self.pairs),
        };
        let tally = &mut self.tally;
        tally.pairs += self.pairs;
        tally.kept += kept.saturating_sub(2 * warm_up);
        tally.counted += counted;
        tally.dropped += dropped;
        if (kept, counted, dropped) != (expected_kept, expected_counted, 0)
            && self.warnings.len() < 3
        {
            self.warnings.push(format!(
                "{}: {kept} heap records, {counted} allocations counted, {dropped} dropped; \
                 expected {expected_kept}, {expected_counted}, 0",
                self.name()
            ));
        }
    }
}

impl Subject for AllocFree {
    fn name(&self) -> String {
        let Kind {
            heap,
            size,
            new_thread,
        } = self.kind;
        let kept = match self.kind.records() {
            true => "2 records",
            false => "counted",
        };
        let name = match heap {
            Heap::System => format!("System, {size} B"),
            Heap::Off => format!("TracedAllocator, off (no session), {size} B"),
            Heap::On => format!("TracedAllocator, on, {size} B ({kept})"),
            Heap::HandWritten => format!("hand-written: System + rdtsc + 24 B record, {size} B"),
            Heap::Dhat => format!("dhat::Alloc, profiler running, {size} B"),
        };
        match (new_thread, heap) {
            (false, _) => name,
            (true, Heap::On) => format!("{name}, thread's first session (info)"),
            (true, _) => format!("{name}, new thread each slot (info)"),
        }
    }

    // A new thread's costs come in lumps (its start, its fresh buffer's first chunks): its
    // rows run a fixed number of pairs, the same for both, as a program that allocates for a
    // while does, whatever the calibration finds.
    fn cap(&self, settings: &Settings) -> u64 {
        match self.kind.new_thread {
            true => settings.max_spans / 4,
            false => settings.max_spans,
        }
    }

    fn floor(&self, settings: &Settings) -> u64 {
        match self.kind.new_thread {
            true => self.cap(settings),
            false => BATCH,
        }
    }

    fn before(&mut self, pairs: u64) {
        self.pairs = pairs;
        match self.kind.heap {
            Heap::System | Heap::Off => {}
            Heap::On => {
                start_session(2 * (pairs + 1) + 16, 0);
                if !self.kind.new_thread {
                    // Attaches this thread's buffer, outside the slot. A block that is only
                    // counted would not: a thread without a buffer counts nothing.
                    alloc_free(&TracedAllocator::new(System), RECORDED, 1);
                }
            }
            Heap::HandWritten => self.buffer.before(2 * pairs),
            Heap::Dhat => self.dhat = Some(dhat::Profiler::builder().testing().build()),
        }
    }

    fn run(&mut self, pairs: u64) {
        let Kind {
            heap,
            size,
            new_thread,
        } = self.kind;
        let run = move || match heap {
            Heap::System => alloc_free(&System, size, pairs),
            Heap::Off | Heap::On => alloc_free(&TracedAllocator::new(System), size, pairs),
            Heap::HandWritten => alloc_free(&HandWrittenHeap, size, pairs),
            Heap::Dhat => alloc_free(&dhat::Alloc, size, pairs),
        };
        if new_thread {
            // Recording on, the new thread's first record attaches its fresh buffer inside
            // the slot, as in a program.
            let _ = std::thread::spawn(run).join();
        } else {
            run();
        }
    }

    fn after(&mut self) {
        match self.kind.heap {
            Heap::System | Heap::Off => {}
            Heap::On => {
                if let Some(snapshot) = stop_session() {
                    self.check_session(&snapshot);
                }
            }
            Heap::HandWritten => self.buffer.after(),
            Heap::Dhat => {
                let stats = dhat::HeapStats::get();
                self.tally.pairs += self.pairs;
                self.tally.kept += stats.total_blocks;
                self.dhat = None;
            }
        }
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    fn tally(&self) -> String {
        let t = &self.tally;
        match self.kind.heap {
            Heap::On if self.kind.records() => {
                format!("{:.2} records, {} dropped", t.per_pair(t.kept), t.dropped)
            }
            Heap::On => format!(
                "{:.2} records, {:.2} counted",
                t.per_pair(t.kept),
                t.per_pair(t.counted)
            ),
            Heap::Dhat => format!("{:.2} blocks", t.per_pair(t.kept)),
            _ => String::new(),
        }
    }
}

/// The median over rounds of `row`'s CPU ns per pair less `reference`'s in the same round.
fn added(row: &Row, reference: &Row) -> f64 {
    let differences: Vec<f64> = row
        .slots
        .iter()
        .zip(&reference.slots)
        .map(|(a, b)| a.cpu_ns - b.cpu_ns)
        .collect();
    median(&differences)
}

/// Events of the buffer in [`bytes_per_record`].
const CAPACITY: usize = 10_000;

/// How many bytes of a session's buffer a heap record takes: a buffer of [`CAPACITY`] events
/// ([`CAPACITY`] x 24 B) receives twice as many records. Returns the records it kept, those
/// counted dropped, and the buffer's bytes per record kept.
fn bytes_per_record() -> Option<(u64, u64, f64)> {
    let config = SessionConfig {
        max_events_per_thread: CAPACITY,
        ..SessionConfig::default()
    };
    session::start(&config).ok()?;
    alloc_free(&TracedAllocator::new(System), RECORDED, CAPACITY as u64);
    let snapshot = stop_session()?;
    let kept = snapshot
        .threads()
        .iter()
        .map(|t| t.heap.len() as u64)
        .sum::<u64>();
    let bytes = (CAPACITY * SLOT_BYTES) as f64 / kept.max(1) as f64;
    Some((kept, snapshot.dropped(), bytes))
}

/// The heap rows, in table order. The budgets are judged on the first ones.
const KINDS: [Kind; 11] = [
    Kind::new(Heap::System, RECORDED),
    Kind::new(Heap::Off, RECORDED),
    Kind::new(Heap::On, RECORDED),
    Kind::new(Heap::HandWritten, RECORDED),
    Kind::new(Heap::System, SMALL),
    Kind::new(Heap::Off, SMALL),
    Kind::new(Heap::On, SMALL),
    Kind::new(Heap::System, RECORDED).on_new_thread(),
    Kind::new(Heap::On, RECORDED).on_new_thread(),
    Kind::new(Heap::Dhat, RECORDED),
    Kind::new(Heap::Dhat, SMALL),
];

pub(super) fn section(settings: &Settings, out: &mut String, notes: &mut Vec<String>) {
    let mut subjects: Vec<Box<dyn Subject>> = vec![Box::new(Baseline::default())];
    for kind in KINDS {
        subjects.push(Box::new(AllocFree::new(kind)));
    }
    let rows = measured_rows(subjects, settings, settings.rounds, "heap");
    let (baseline, rows) = rows.split_first().expect("the baseline row");
    let record = baseline.cpu();
    let row = |kind: Kind| {
        let i = KINDS.iter().position(|&k| k == kind);
        &rows[i.expect("a heap row of this kind")]
    };
    // What `kind`'s row adds to `System`'s of the same size and thread.
    let added_to_system = |kind: Kind| added(row(kind), row(kind.reference()));

    let _ = writeln!(
        out,
        "## Heap: an allocation + free through TracedAllocator\n\n\
         {} interleaved rounds; medians. Each row allocates a block and frees it \
         (`GlobalAlloc::alloc` then `dealloc`, called directly on the allocator). cpu = CPU time \
         of the process per pair; added = the median over rounds of the row's cpu less that of \
         `System` in the same round (same size, same thread). While a session records, a block \
         of {RECORDED} B is recorded at its allocation and at its free; one of {SMALL} B (under \
         `DEFAULT_MIN_RECORDED_BYTES`, {DEFAULT_MIN_RECORDED_BYTES}) is only counted. Kept = \
         what the profiler kept per pair, read from each round's snapshot (dhat: \
         `HeapStats::total_blocks`; dhat records every block, whatever its size, with its \
         backtrace). The \"new thread\" rows run each slot on a new thread: recording on, that \
         is the thread's first session, whose buffer is fresh.\n",
        settings.rounds
    );
    let _ = writeln!(
        out,
        "| system | pairs/slot | wall ns/pair | cpu ns/pair | added (cpu) | kept per pair |\n\
         |---|---:|---:|---:|---:|---|"
    );
    let mut line = |r: &Row, added: String, kept: String| {
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.2} | {added} | {kept} |",
            r.subject.name(),
            r.spans,
            r.wall(),
            r.cpu(),
        );
    };
    line(baseline, String::new(), "(cpu: ns per record)".into());
    for (kind, r) in KINDS.into_iter().zip(rows) {
        line(
            r,
            format!("{:+.2}", added_to_system(kind)),
            r.subject.tally(),
        );
    }

    let off = |size| added_to_system(Kind::new(Heap::Off, size));
    let on = added_to_system(Kind::new(Heap::On, RECORDED));
    let hand = added_to_system(Kind::new(Heap::HandWritten, RECORDED));
    let first = added_to_system(Kind::new(Heap::On, RECORDED).on_new_thread());
    let ratio = on / (2.0 * record);
    let _ = writeln!(
        out,
        "\n| what | measured | budget | result |\n|---|---:|---|---|\n\
         | off, {RECORDED} B: added | {:.2} ns | <= 1 ns | {} |\n\
         | off, {SMALL} B: added | {:.2} ns | <= 1 ns | {} |\n\
         | on, {RECORDED} B: added ({on:.2} ns) / two baseline records (2 x {record:.2} ns) \
         | {ratio:.2}x | <= 1.5x | {} |\n\
         | (info) on, {RECORDED} B: added / the hand-written recorder's ({hand:.2} ns) \
         | {:.2}x | | |\n\
         | (info) on, thread's first session: added ({first:.2} ns) / two baseline records \
         | {:.2}x | | |\n",
        off(RECORDED),
        pass(off(RECORDED) <= 1.0),
        off(SMALL),
        pass(off(SMALL) <= 1.0),
        pass(ratio <= 1.5),
        on / hand,
        first / (2.0 * record),
    );
    match bytes_per_record() {
        Some((kept, dropped, bytes)) => {
            let _ = writeln!(
                out,
                "Buffer per heap record: a session whose buffer holds {CAPACITY} events \
                 ({SLOT_BYTES} B each) was sent {} records; it kept {kept} and counted {dropped} \
                 dropped: {bytes:.1} B per record.\n",
                2 * CAPACITY
            );
        }
        None => notes.push("heap: the session of the buffer check did not start".into()),
    }
    for r in rows {
        notes.extend(r.subject.warnings());
    }
}
