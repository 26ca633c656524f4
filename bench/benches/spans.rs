//! Span cost, memory per event, export throughput, two-thread scaling and the traced allocator
//! (module `heap`), side by side with a hand-written baseline and with peer profilers, in one
//! run.
//!
//! Run with `cargo bench -p trace-bench` (one to three minutes), or `TRACE_BENCH_QUICK=1 cargo
//! bench -p trace-bench` / `cargo bench -p trace-bench -- --quick` for a smoke run of a few
//! seconds. The results table is printed and written to `<target dir>/trace-bench-report.md`.
//!
//! # Method
//!
//! Every system runs the same shape of work: batches of [`BATCH`] inner spans, each batch
//! inside one outer span, so the measured span is nested one level deep and the outer span
//! costs 1/[`BATCH`] of a span. The inner body is `black_box(i)` everywhere.
//!
//! The systems are interleaved round by round (A B C ... A B C ...); each system's numbers are
//! medians over rounds. Per slot we take the wall time of the instrumented loop and the CPU
//! time of the whole process (every thread, so background collector and writer threads
//! count), and we drain those background threads before reading the CPU clock: fastrace is
//! flushed, tracing-chrome's writer is flushed and waited for. Our own recorder has no
//! background work while recording; what `session::stop` does afterwards is measured in the
//! export section. Budgets are judged on the CPU-time ratio, which other processes on a
//! shared machine disturb less than the wall time.
//!
//! The `enable`-feature-off build cannot share a binary with this one (the feature would
//! unify); it is measured by `bench/disabled-probe`, a separate crate with its own workspace.

use std::alloc::Layout;
use std::cell::Cell;
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::{Duration, Instant};

use trace_runtime::session::{self, SessionConfig};
use trace_runtime::snapshot::Snapshot;
use trace_runtime::{trace, traced};

mod heap;

/// Inner spans per outer span.
const BATCH: u64 = 1000;

// ---------------------------------------------------------------------------------------------
// Run settings
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Settings {
    quick: bool,
    /// Interleaved rounds of the span table.
    rounds: usize,
    /// Wanted CPU time of one system's slot.
    slot: Duration,
    /// Upper bound on spans per slot.
    max_spans: u64,
    /// Upper bound on spans per slot for systems that keep everything in memory (tracy
    /// without a viewer).
    max_spans_unbounded_memory: u64,
    /// Rounds and spans per thread of the two-thread comparison.
    thread_rounds: usize,
    thread_spans: u64,
    /// Events of the memory measurement.
    memory_events: u64,
    /// Events of the export measurement, and repetitions of the export.
    export_events: u64,
    export_reps: usize,
}

impl Settings {
    fn from_env() -> Settings {
        let quick = std::env::var("TRACE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
            || std::env::args().any(|a| a == "--quick");
        if quick {
            Settings {
                quick,
                rounds: 5,
                slot: Duration::from_millis(1),
                max_spans: 50_000,
                max_spans_unbounded_memory: 10_000,
                thread_rounds: 3,
                thread_spans: 20_000,
                memory_events: 100_000,
                export_events: 100_000,
                export_reps: 1,
            }
        } else {
            Settings {
                quick,
                rounds: 31,
                slot: Duration::from_millis(20),
                max_spans: 2_000_000,
                max_spans_unbounded_memory: 200_000,
                thread_rounds: 21,
                thread_spans: 1_000_000,
                memory_events: 4_000_000,
                export_events: 10_000_000,
                export_reps: 3,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clocks and memory
// ---------------------------------------------------------------------------------------------

fn cpu_clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock ids used are always available on
    // Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time of every thread of the process.
fn process_cpu_ns() -> u64 {
    cpu_clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time of the calling thread.
fn thread_cpu_ns() -> u64 {
    cpu_clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Resident set size in bytes, from `/proc/self/statm`.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as u64
}

fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------------
// The systems under test
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Budget {
    None,
    /// CPU ns/span at most this many times the baseline's.
    Ratio(f64),
    /// CPU ns/span at most this.
    AbsNs(f64),
}

/// One row of the span table. `run` is the timed hot loop; `drain` finishes background work
/// and is counted in CPU time only; `before` and `after` are not timed.
trait Subject {
    fn name(&self) -> String;
    fn budget(&self) -> Budget {
        Budget::None
    }
    /// Spans per slot are capped at this (memory-hungry systems).
    fn cap(&self, settings: &Settings) -> u64 {
        settings.max_spans
    }
    /// Spans per slot are at least this (systems whose cost comes in large lumps).
    fn floor(&self, _settings: &Settings) -> u64 {
        BATCH
    }
    fn before(&mut self, _spans: u64) {}
    fn run(&mut self, spans: u64);
    fn drain(&mut self) {}
    fn after(&mut self) {}
    /// Anything that went wrong, for the notes.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
    /// Called once at the end.
    fn finish(&mut self) {}
    /// What the system kept of its slots (records, blocks), for the heap table.
    fn tally(&self) -> String {
        String::new()
    }
}

// --- empty loop -----------------------------------------------------------------------------

#[inline(never)]
fn empty_batch(base: u64) {
    for i in 0..BATCH {
        black_box(base + i);
    }
}

struct EmptyLoop;

impl Subject for EmptyLoop {
    fn name(&self) -> String {
        "empty loop (reference)".into()
    }
    fn run(&mut self, spans: u64) {
        for b in 0..spans / BATCH {
            empty_batch(b * BATCH);
        }
    }
}

// --- hand-written baseline --------------------------------------------------------------------

/// The baseline's record: start, end, id.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Record {
    start: u64,
    end: u64,
    id: u64,
}

/// The baseline's pre-allocated thread-local buffer.
struct BaselineBuffer {
    ptr: Cell<*mut Record>,
    len: Cell<usize>,
    cap: Cell<usize>,
}

thread_local! {
    static BASELINE: BaselineBuffer = const {
        BaselineBuffer {
            ptr: Cell::new(std::ptr::null_mut()),
            len: Cell::new(0),
            cap: Cell::new(0),
        }
    };
}

#[inline(always)]
fn tsc() -> u64 {
    // SAFETY: `rdtsc` has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[inline(always)]
fn baseline_record(id: u64, start: u64, end: u64) {
    BASELINE.with(|buf| {
        let len = buf.len.get();
        if len < buf.cap.get() {
            // SAFETY: `len < cap` and `ptr` points to `cap` records owned by this thread.
            unsafe { buf.ptr.get().add(len).write(Record { start, end, id }) };
            buf.len.set(len + 1);
        }
    });
}

const BASELINE_OUTER: u64 = 1;
const BASELINE_INNER: u64 = 2;

#[inline(never)]
fn baseline_batch(base: u64) {
    let outer_start = tsc();
    for i in 0..BATCH {
        let start = tsc();
        black_box(base + i);
        let end = tsc();
        baseline_record(BASELINE_INNER, start, end);
    }
    let outer_end = tsc();
    baseline_record(BASELINE_OUTER, outer_start, outer_end);
}

fn baseline_run(spans: u64) {
    for b in 0..spans / BATCH {
        baseline_batch(b * BATCH);
    }
}

fn records_for(spans: u64) -> usize {
    (spans + spans / BATCH + 16) as usize
}

/// Installs `records` (pre-faulted or fresh) as this thread's baseline buffer, returning the
/// allocation to free later.
fn baseline_install(records: usize, prefault: bool) -> (*mut Record, Layout) {
    let layout = Layout::array::<Record>(records.max(1)).expect("layout");
    // SAFETY: the layout has a non-zero size.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<Record>();
    assert!(!ptr.is_null(), "out of memory for the baseline buffer");
    if prefault {
        for i in 0..records {
            // SAFETY: `i < records`, inside the allocation.
            unsafe {
                ptr.add(i).write(Record {
                    start: 1,
                    end: 1,
                    id: 1,
                })
            };
        }
    }
    BASELINE.with(|buf| {
        buf.ptr.set(ptr);
        buf.len.set(0);
        buf.cap.set(records);
    });
    (ptr, layout)
}

fn baseline_uninstall(allocation: (*mut Record, Layout)) {
    baseline_detach();
    // SAFETY: allocated by `baseline_install` with this layout and not freed since.
    unsafe { std::alloc::dealloc(allocation.0.cast(), allocation.1) };
}

/// Detaches the thread's baseline buffer, leaving its allocation to the caller.
fn baseline_detach() {
    BASELINE.with(|buf| {
        buf.ptr.set(std::ptr::null_mut());
        buf.len.set(0);
        buf.cap.set(0);
    });
}

/// The baseline with a pre-allocated, already touched buffer reused every round.
#[derive(Default)]
struct Baseline {
    allocation: Option<(*mut Record, Layout, usize)>,
}

impl Subject for Baseline {
    fn name(&self) -> String {
        "baseline: rdtsc x2 + 24 B thread-local record".into()
    }
    fn before(&mut self, spans: u64) {
        let records = records_for(spans);
        match self.allocation {
            Some((_, _, cap)) if cap >= records => {
                BASELINE.with(|buf| buf.len.set(0));
            }
            _ => {
                if let Some((ptr, layout, _)) = self.allocation.take() {
                    baseline_uninstall((ptr, layout));
                }
                let (ptr, layout) = baseline_install(records, true);
                self.allocation = Some((ptr, layout, records));
            }
        }
        // Re-install (another subject may have used the thread-local).
        if let Some((ptr, _, cap)) = self.allocation {
            BASELINE.with(|buf| {
                buf.ptr.set(ptr);
                buf.len.set(0);
                buf.cap.set(cap);
            });
        }
    }
    fn run(&mut self, spans: u64) {
        baseline_run(spans);
    }
    fn after(&mut self) {
        BASELINE.with(|buf| buf.cap.set(0));
    }
}

/// The same loop writing into a freshly allocated, untouched zeroed buffer each round, like
/// our recorder's buffers: shows what first-touch page faults cost. With `huge`, the buffer is
/// advised to use transparent huge pages (`MADV_HUGEPAGE`), to show what that would save.
#[derive(Default)]
struct BaselineCold {
    huge: bool,
    allocation: Option<(*mut Record, Layout)>,
}

impl Subject for BaselineCold {
    fn name(&self) -> String {
        if self.huge {
            "baseline, fresh buffer + MADV_HUGEPAGE (info)".into()
        } else {
            "baseline, fresh zeroed buffer each round (info)".into()
        }
    }
    fn floor(&self, settings: &Settings) -> u64 {
        // A huge page is zeroed at its first touch: 2 MiB, about 87 000 records, at once.
        if self.huge {
            settings.max_spans / 2
        } else {
            BATCH
        }
    }
    fn before(&mut self, spans: u64) {
        // As large as our default session buffer, so it is a fresh mapping as well.
        let records = records_for(spans).max(SessionConfig::default().max_events_per_thread);
        let (ptr, layout) = baseline_install(records, false);
        if self.huge {
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
            let start = ptr as usize & !(page - 1);
            let end = ptr as usize + layout.size();
            // SAFETY: the range lies within the mapping that holds the allocation; the advice
            // changes no contents.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
        self.allocation = Some((ptr, layout));
    }
    fn run(&mut self, spans: u64) {
        baseline_run(spans);
    }
    fn after(&mut self) {
        if let Some(allocation) = self.allocation.take() {
            baseline_uninstall(allocation);
        }
    }
}

// --- this project -------------------------------------------------------------------------------

#[traced(name = "batch")]
#[inline(never)]
fn ours_batch(base: u64) {
    for i in 0..BATCH {
        trace!("inner", { black_box(base + i) });
    }
}

#[traced(name = "batch")]
#[inline(never)]
fn ours_batch_step(base: u64) {
    for i in 0..BATCH {
        trace!("step", step_num = (base + i) as i64, {
            black_box(base + i)
        });
    }
}

fn ours_run(spans: u64) {
    for b in 0..spans / BATCH {
        ours_batch(b * BATCH);
    }
}

fn ours_run_step(spans: u64) {
    for b in 0..spans / BATCH {
        ours_batch_step(b * BATCH);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum OursMode {
    On,
    OnStepNum,
    Off,
    /// Recording on, each slot on a new thread: its first session, a fresh buffer.
    OnFirstSession,
}

struct Ours {
    mode: OursMode,
    expected: u64,
    warnings: Vec<String>,
}

impl Ours {
    fn new(mode: OursMode) -> Ours {
        Ours {
            mode,
            expected: 0,
            warnings: Vec::new(),
        }
    }
}

/// Starts a session whose per-thread buffers hold at least `slots` three-word slots, and never
/// fewer than the default (4 Mi events, 96 MiB: above glibc's largest mmap threshold, so a new
/// buffer is a fresh mapping whose pages are committed as they fill, as in a real session).
/// A thread reuses its buffer of the previous session when the capacity is the same; `extra`
/// slots make the capacity differ, to measure a thread's first session.
fn start_session(slots: u64, extra: usize) {
    let config = SessionConfig {
        level: 2,
        max_events_per_thread: (slots as usize).max(SessionConfig::default().max_events_per_thread)
            + extra,
        ..SessionConfig::default()
    };
    if let Err(e) = session::start(&config) {
        eprintln!("trace-bench: session start failed: {e}");
    }
}

fn stop_session() -> Option<Snapshot> {
    match session::stop() {
        Ok(snapshot) => Some(snapshot),
        Err(e) => {
            eprintln!("trace-bench: session stop failed: {e}");
            None
        }
    }
}

impl Subject for Ours {
    fn name(&self) -> String {
        match self.mode {
            OursMode::On => "trace-runtime, recording on".into(),
            OursMode::OnStepNum => "trace-runtime, on, step_num metadata".into(),
            OursMode::Off => "trace-runtime, recording off (no session)".into(),
            OursMode::OnFirstSession => {
                "trace-runtime, on, thread's first session: fresh buffer (info)".into()
            }
        }
    }
    fn budget(&self) -> Budget {
        match self.mode {
            OursMode::On => Budget::Ratio(1.25),
            OursMode::OnStepNum => Budget::Ratio(1.3),
            OursMode::Off => Budget::AbsNs(1.0),
            OursMode::OnFirstSession => Budget::None,
        }
    }
    fn before(&mut self, spans: u64) {
        // Plus one warm-up event, recorded here so that the thread's first record in the
        // session (which sets up its buffer) is not timed.
        self.expected = spans + spans / BATCH + 1;
        match self.mode {
            // An event takes one slot, its step_num included (a number inside its record).
            OursMode::On | OursMode::OnFirstSession | OursMode::OnStepNum => {
                start_session(self.expected + 16, 0)
            }
            OursMode::Off => return,
        }
        trace!("warm-up", {});
    }
    fn run(&mut self, spans: u64) {
        match self.mode {
            OursMode::On | OursMode::Off => ours_run(spans),
            // The new thread's first record (not warmed up) sets its buffer up, inside the
            // timed slot, as in a program.
            OursMode::OnFirstSession => {
                let worker = std::thread::spawn(move || {
                    trace!("warm-up", {});
                    ours_run(spans)
                });
                let _ = worker.join();
            }
            OursMode::OnStepNum => ours_run_step(spans),
        }
    }
    fn after(&mut self) {
        if self.mode == OursMode::Off {
            return;
        }
        if let Some(snapshot) = stop_session() {
            let (events, dropped) = (snapshot.event_count(), snapshot.dropped());
            let with_step = snapshot
                .events()
                .filter(|(_, e)| e.metadata("step_num").is_some())
                .count() as u64;
            let expected_with_step = match self.mode {
                OursMode::OnStepNum => self.expected - self.expected / (BATCH + 1) - 1,
                _ => 0,
            };
            if with_step != expected_with_step && self.warnings.len() < 3 {
                self.warnings.push(format!(
                    "{}: {with_step} events carry step_num, expected {expected_with_step}",
                    self.name()
                ));
            }
            if (events != self.expected || dropped != 0) && self.warnings.len() < 3 {
                self.warnings.push(format!(
                    "{}: recorded {events} events, {dropped} dropped, expected {}",
                    self.name(),
                    self.expected
                ));
            }
        }
    }
}

// --- fastrace -----------------------------------------------------------------------------------

/// Receives fastrace's span batches and throws them away.
struct DiscardReporter;

impl fastrace::collector::Reporter for DiscardReporter {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        black_box(spans.len());
    }
}

#[inline(never)]
fn fastrace_batch(base: u64) {
    let root = fastrace::Span::root("batch", fastrace::collector::SpanContext::random());
    let _parent = root.set_local_parent();
    for i in 0..BATCH {
        let _span = fastrace::local::LocalSpan::enter_with_local_parent("inner");
        black_box(base + i);
    }
}

#[inline(never)]
fn fastrace_batch_property(base: u64) {
    let root = fastrace::Span::root("batch", fastrace::collector::SpanContext::random());
    let _parent = root.set_local_parent();
    for i in 0..BATCH {
        let _span = fastrace::local::LocalSpan::enter_with_local_parent("inner")
            .with_property(|| ("step_num", (base + i).to_string()));
        black_box(base + i);
    }
}

struct Fastrace {
    property: bool,
}

impl Subject for Fastrace {
    fn name(&self) -> String {
        if self.property {
            "fastrace, step_num property".into()
        } else {
            "fastrace (LocalSpan under a root)".into()
        }
    }
    fn run(&mut self, spans: u64) {
        for b in 0..spans / BATCH {
            if self.property {
                fastrace_batch_property(b * BATCH);
            } else {
                fastrace_batch(b * BATCH);
            }
        }
    }
    fn drain(&mut self) {
        fastrace::flush();
    }
}

// --- puffin and `profiling` -------------------------------------------------------------------

/// Batches per puffin frame.
const BATCHES_PER_FRAME: u64 = 100;

/// Formats `n` into `buf` without allocating.
fn decimal(buf: &mut [u8; 20], mut n: u64) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or("")
}

#[inline(never)]
fn puffin_batch(base: u64) {
    puffin::profile_scope!("batch");
    for i in 0..BATCH {
        puffin::profile_scope!("inner");
        black_box(base + i);
    }
}

#[inline(never)]
fn puffin_batch_data(base: u64) {
    puffin::profile_scope!("batch");
    for i in 0..BATCH {
        let mut buf = [0u8; 20];
        puffin::profile_scope!("inner", decimal(&mut buf, base + i));
        black_box(base + i);
    }
}

#[inline(never)]
fn profiling_batch(base: u64) {
    profiling::scope!("batch");
    for i in 0..BATCH {
        profiling::scope!("inner");
        black_box(base + i);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum PuffinMode {
    Plain,
    /// `set_scopes_on(false)`: puffin's "recording off".
    Off,
    Data,
    Profiling,
}

struct Puffin {
    mode: PuffinMode,
}

impl Subject for Puffin {
    fn name(&self) -> String {
        match self.mode {
            PuffinMode::Plain => "puffin".into(),
            PuffinMode::Off => "puffin, scopes off (info: a peer's \"off\")".into(),
            PuffinMode::Data => "puffin, step_num data (stack-formatted)".into(),
            PuffinMode::Profiling => "profiling -> puffin".into(),
        }
    }
    fn before(&mut self, _spans: u64) {
        puffin::set_scopes_on(self.mode != PuffinMode::Off);
    }
    fn run(&mut self, spans: u64) {
        let batches = spans / BATCH;
        for b in 0..batches {
            match self.mode {
                PuffinMode::Plain | PuffinMode::Off => puffin_batch(b * BATCH),
                PuffinMode::Data => puffin_batch_data(b * BATCH),
                PuffinMode::Profiling => profiling_batch(b * BATCH),
            }
            if (b + 1) % BATCHES_PER_FRAME == 0 || b + 1 == batches {
                if self.mode == PuffinMode::Profiling {
                    profiling::finish_frame!();
                } else {
                    puffin::GlobalProfiler::lock().new_frame();
                }
            }
        }
    }
    fn after(&mut self) {
        puffin::set_scopes_on(false);
    }
}

// --- tracing + tracing-chrome ---------------------------------------------------------------------

/// Counts flushes of the chrome layer's output, so the benchmark can wait for its writer
/// thread to catch up.
#[derive(Default)]
struct FlushSignal {
    count: Mutex<u64>,
    changed: Condvar,
}

impl FlushSignal {
    fn count(&self) -> u64 {
        *self.count.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait_past(&self, seen: u64) {
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        while *count <= seen {
            let (next, timeout) = self
                .changed
                .wait_timeout(count, Duration::from_secs(30))
                .unwrap_or_else(|e| e.into_inner());
            count = next;
            if timeout.timed_out() {
                eprintln!("trace-bench: tracing-chrome writer did not flush within 30 s");
                return;
            }
        }
    }
}

/// A temp file that signals every flush.
struct SignallingFile {
    file: std::fs::File,
    signal: Arc<FlushSignal>,
}

impl Write for SignallingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        let result = self.file.flush();
        *self.signal.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.signal.changed.notify_all();
        result
    }
}

struct TracingChrome {
    guard: tracing_chrome::FlushGuard,
    signal: Arc<FlushSignal>,
    paths: [PathBuf; 2],
    round: usize,
}

impl TracingChrome {
    /// Installs the global subscriber: a registry with the chrome layer writing to a temp file.
    fn install() -> Option<TracingChrome> {
        use tracing_subscriber::layer::SubscriberExt as _;
        let dir = std::env::temp_dir();
        let pid = std::process::id();
        let paths = [
            dir.join(format!("trace-bench-{pid}-a.json")),
            dir.join(format!("trace-bench-{pid}-b.json")),
        ];
        let signal = Arc::new(FlushSignal::default());
        let file = std::fs::File::create(&paths[0]).ok()?;
        let (layer, guard) = tracing_chrome::ChromeLayerBuilder::new()
            .writer(SignallingFile {
                file,
                signal: Arc::clone(&signal),
            })
            .include_args(false)
            .build();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber).ok()?;
        Some(TracingChrome {
            guard,
            signal,
            paths,
            round: 0,
        })
    }

    fn remove_files(&self) {
        for path in &self.paths {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[inline(never)]
fn tracing_batch(base: u64) {
    let _outer = tracing::info_span!("batch").entered();
    for i in 0..BATCH {
        let _span = tracing::info_span!("inner").entered();
        black_box(base + i);
    }
}

impl Subject for TracingChrome {
    fn name(&self) -> String {
        TRACING_CHROME.into()
    }
    fn before(&mut self, _spans: u64) {
        // Start a fresh file each round so the temp file stays small; wait until the writer
        // has finished the previous one.
        self.round += 1;
        if let Ok(file) = std::fs::File::create(&self.paths[self.round % 2]) {
            let seen = self.signal.count();
            self.guard.start_new(Some(Box::new(SignallingFile {
                file,
                signal: Arc::clone(&self.signal),
            })));
            self.signal.wait_past(seen);
        }
    }
    fn run(&mut self, spans: u64) {
        for b in 0..spans / BATCH {
            tracing_batch(b * BATCH);
        }
    }
    fn drain(&mut self) {
        let seen = self.signal.count();
        self.guard.flush();
        self.signal.wait_past(seen);
    }
    fn finish(&mut self) {
        self.remove_files();
    }
}

// --- tracing with a bare Registry, and with TraceLayer ------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum TracingMode {
    /// `tracing` with the bare `Registry`: what `tracing` costs before any layer.
    Registry,
    /// `Registry` + `TraceLayer`, a session recording.
    LayerOn,
    /// `Registry` + `TraceLayer`, no session.
    LayerOff,
}

/// `tracing` spans through a `Registry` of their own, made the thread's default for the slot
/// (so the global subscriber, tracing-chrome's, does not see them).
struct Tracing {
    mode: TracingMode,
    dispatch: tracing::Dispatch,
    expected: u64,
    warnings: Vec<String>,
}

const TRACING_REGISTRY: &str = "tracing, bare Registry (no layer)";
const TRACING_LAYER_ON: &str = "tracing + TraceLayer, recording on";
const TRACING_CHROME: &str = "tracing + tracing-chrome (temp file)";

impl Tracing {
    fn new(mode: TracingMode) -> Tracing {
        use tracing_subscriber::layer::SubscriberExt as _;
        let dispatch = match mode {
            TracingMode::Registry => tracing::Dispatch::new(tracing_subscriber::registry()),
            TracingMode::LayerOn | TracingMode::LayerOff => tracing::Dispatch::new(
                tracing_subscriber::registry().with(trace_runtime::TraceLayer::default()),
            ),
        };
        Tracing {
            mode,
            dispatch,
            expected: 0,
            warnings: Vec::new(),
        }
    }
}

impl Subject for Tracing {
    fn name(&self) -> String {
        match self.mode {
            TracingMode::Registry => TRACING_REGISTRY.into(),
            TracingMode::LayerOn => TRACING_LAYER_ON.into(),
            TracingMode::LayerOff => "tracing + TraceLayer, recording off (no session)".into(),
        }
    }
    fn before(&mut self, spans: u64) {
        if self.mode != TracingMode::LayerOn {
            return;
        }
        // Plus one warm-up span, recorded here so that the thread's first record in the
        // session (which sets up its buffer) is not timed.
        self.expected = spans + spans / BATCH + 1;
        start_session(self.expected + 16, 0);
        tracing::dispatcher::with_default(&self.dispatch, || {
            tracing::info_span!("warm-up").in_scope(|| ());
        });
    }
    fn run(&mut self, spans: u64) {
        tracing::dispatcher::with_default(&self.dispatch, || {
            for b in 0..spans / BATCH {
                tracing_batch(b * BATCH);
            }
        });
    }
    fn after(&mut self) {
        if self.mode != TracingMode::LayerOn {
            return;
        }
        if let Some(snapshot) = stop_session() {
            let (events, dropped) = (snapshot.event_count(), snapshot.dropped());
            if (events != self.expected || dropped != 0) && self.warnings.len() < 3 {
                self.warnings.push(format!(
                    "{}: recorded {events} events, {dropped} dropped, expected {}",
                    self.name(),
                    self.expected
                ));
            }
        }
    }
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
}

// --- tracy --------------------------------------------------------------------------------------

const TRACY_ONDEMAND: bool = cfg!(feature = "tracy-ondemand");

#[inline(never)]
fn tracy_batch(base: u64) {
    let _outer = tracy_client::span!("batch");
    for i in 0..BATCH {
        let _span = tracy_client::span!("inner");
        black_box(base + i);
    }
}

struct Tracy {
    _client: tracy_client::Client,
}

impl Subject for Tracy {
    fn name(&self) -> String {
        if TRACY_ONDEMAND {
            "tracy-client (ondemand, no viewer connected)".into()
        } else {
            "tracy-client (no viewer: queues in memory)".into()
        }
    }
    fn cap(&self, settings: &Settings) -> u64 {
        if TRACY_ONDEMAND {
            settings.max_spans
        } else {
            settings.max_spans_unbounded_memory
        }
    }
    fn run(&mut self, spans: u64) {
        for b in 0..spans / BATCH {
            tracy_batch(b * BATCH);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The span table
// ---------------------------------------------------------------------------------------------

struct Slot {
    wall_ns: f64,
    cpu_ns: f64,
    rss_growth: f64,
}

struct Row {
    subject: Box<dyn Subject>,
    spans: u64,
    slots: Vec<Slot>,
}

impl Row {
    fn measure(&mut self) {
        let spans = self.spans;
        self.subject.before(spans);
        let rss0 = rss_bytes();
        let cpu0 = process_cpu_ns();
        let t0 = Instant::now();
        self.subject.run(spans);
        let wall = t0.elapsed();
        self.subject.drain();
        let cpu = process_cpu_ns().saturating_sub(cpu0);
        let rss1 = rss_bytes();
        self.subject.after();
        let n = spans as f64;
        self.slots.push(Slot {
            wall_ns: wall.as_nanos() as f64 / n,
            cpu_ns: cpu as f64 / n,
            rss_growth: (rss1 as f64 - rss0 as f64) / n,
        });
    }

    fn wall(&self) -> f64 {
        median(&self.slots.iter().map(|s| s.wall_ns).collect::<Vec<_>>())
    }
    fn cpu(&self) -> f64 {
        median(&self.slots.iter().map(|s| s.cpu_ns).collect::<Vec<_>>())
    }
    fn rss(&self) -> f64 {
        median(&self.slots.iter().map(|s| s.rss_growth).collect::<Vec<_>>())
    }
}

/// A row per subject, each with the spans per slot its calibration found, measured `rounds`
/// times, interleaved (A B C ... A B C ...). `what` names the table in progress messages.
fn measured_rows(
    subjects: Vec<Box<dyn Subject>>,
    settings: &Settings,
    rounds: usize,
    what: &str,
) -> Vec<Row> {
    eprintln!(
        "trace-bench: {what}: calibrating {} systems",
        subjects.len()
    );
    let mut rows: Vec<Row> = subjects
        .into_iter()
        .map(|mut subject| {
            let spans = calibrate(subject.as_mut(), settings);
            Row {
                subject,
                spans,
                slots: Vec::new(),
            }
        })
        .collect();
    for round in 0..rounds {
        if round % 10 == 0 {
            eprintln!("trace-bench: {what}: round {}/{rounds}", round + 1);
        }
        for row in rows.iter_mut() {
            row.measure();
        }
    }
    rows
}

/// Picks spans per slot from a short trial so each slot takes about `settings.slot`.
fn calibrate(subject: &mut dyn Subject, settings: &Settings) -> u64 {
    let trial = 20 * BATCH;
    subject.before(trial);
    let cpu0 = process_cpu_ns();
    subject.run(trial);
    subject.drain();
    let cpu = process_cpu_ns().saturating_sub(cpu0).max(1);
    subject.after();
    let per_span = cpu as f64 / trial as f64;
    let wanted = (settings.slot.as_nanos() as f64 / per_span) as u64;
    let cap = subject.cap(settings).max(BATCH);
    (wanted / BATCH * BATCH).clamp(subject.floor(settings).min(cap), cap)
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "pass"
    } else {
        "FAIL"
    }
}

fn span_table(settings: &Settings, out: &mut String, notes: &mut Vec<String>) {
    let mut subjects: Vec<Box<dyn Subject>> = vec![
        Box::new(Baseline::default()),
        Box::new(EmptyLoop),
        Box::new(Ours::new(OursMode::On)),
        Box::new(Ours::new(OursMode::OnStepNum)),
        Box::new(Ours::new(OursMode::Off)),
        Box::new(BaselineCold::default()),
        Box::new(BaselineCold {
            huge: true,
            allocation: None,
        }),
        Box::new(Ours::new(OursMode::OnFirstSession)),
    ];

    // `TRACE_BENCH_ONLY=ours`: only this project's rows and the references, for quick
    // iteration on the hot path; `TRACE_BENCH_ONLY=tracing`: those and the `tracing` rows.
    let only = std::env::var("TRACE_BENCH_ONLY").unwrap_or_default();
    if only != "ours" {
        add_tracing(&mut subjects, notes, only == "tracing");
    }
    if only.is_empty() {
        add_peers(&mut subjects, notes);
    }
    span_rows(subjects, settings, out, notes);
}

/// `tracing` with a bare `Registry`, with `TraceLayer` (on and off), and with tracing-chrome's
/// layer: the `TraceLayer` budget is judged against the first and the last.
fn add_tracing(subjects: &mut Vec<Box<dyn Subject>>, notes: &mut Vec<String>, chrome: bool) {
    subjects.push(Box::new(Tracing::new(TracingMode::Registry)));
    subjects.push(Box::new(Tracing::new(TracingMode::LayerOn)));
    subjects.push(Box::new(Tracing::new(TracingMode::LayerOff)));
    if chrome {
        match TracingChrome::install() {
            Some(t) => subjects.push(Box::new(t)),
            None => notes
                .push("tracing + tracing-chrome: could not install the subscriber; skipped".into()),
        }
    }
}

/// The peer profilers' rows.
fn add_peers(subjects: &mut Vec<Box<dyn Subject>>, notes: &mut Vec<String>) {
    fastrace::set_reporter(DiscardReporter, fastrace::collector::Config::default());
    subjects.push(Box::new(Fastrace { property: false }));
    subjects.push(Box::new(Fastrace { property: true }));
    subjects.push(Box::new(Puffin {
        mode: PuffinMode::Plain,
    }));
    subjects.push(Box::new(Puffin {
        mode: PuffinMode::Data,
    }));
    subjects.push(Box::new(Puffin {
        mode: PuffinMode::Profiling,
    }));
    subjects.push(Box::new(Puffin {
        mode: PuffinMode::Off,
    }));
    match TracingChrome::install() {
        Some(t) => subjects.push(Box::new(t)),
        None => {
            notes.push("tracing + tracing-chrome: could not install the subscriber; skipped".into())
        }
    }
    subjects.push(Box::new(Tracy {
        _client: tracy_client::Client::start(),
    }));
}

fn span_rows(
    subjects: Vec<Box<dyn Subject>>,
    settings: &Settings,
    out: &mut String,
    notes: &mut Vec<String>,
) {
    let mut rows = measured_rows(subjects, settings, settings.rounds, "span table");

    let base_wall = rows[0].wall();
    let base_cpu = rows[0].cpu();
    let _ = writeln!(
        out,
        "## Span cost: enter+exit of a scope nested in an outer scope, one thread\n\n\
         {} interleaved rounds; medians over rounds. cpu = CPU time of every thread of the \
         process per span (background threads drained); ratio = median / baseline median; \
         budgets are judged on the cpu ratio (\"off\": on absolute cpu ns/span). RSS = resident \
         memory growth during the slot per span.\n",
        settings.rounds
    );
    let _ = writeln!(
        out,
        "| system | spans/slot | wall ns/span | cpu ns/span | ratio (wall) | ratio (cpu) | RSS B/span | budget | result |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|---|");
    for row in &rows {
        let (wall, cpu) = (row.wall(), row.cpu());
        let (budget, result) = match row.subject.budget() {
            Budget::None => (String::new(), String::new()),
            Budget::Ratio(r) => (format!("<= {r}x"), pass(cpu / base_cpu <= r).to_string()),
            Budget::AbsNs(ns) => (format!("<= {ns} ns"), pass(cpu <= ns).to_string()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.2} | {:.2}x | {:.2}x | {:.1} | {} | {} |",
            row.subject.name(),
            row.spans,
            wall,
            cpu,
            wall / base_wall,
            cpu / base_cpu,
            row.rss(),
            budget,
            result
        );
    }
    let _ = writeln!(
        out,
        "| trace-runtime, `enable` feature off | - | - | - | - | - | - | bare code | see `bench/disabled-probe` |"
    );
    let _ = writeln!(out);
    tracing_budget(&rows, out);

    // Rows 0..8 are, in order: baseline, empty loop, on, step_num, off, fresh-buffer baseline,
    // fresh-buffer baseline with huge pages, on in a first session.
    let (empty, off, cold, huge, first) = (
        rows[1].cpu(),
        rows[4].cpu(),
        rows[5].cpu(),
        rows[6].cpu(),
        rows[7].cpu(),
    );
    notes.push(format!(
        "a thread keeps its buffer and reuses it in the next session, so the rows above are a \
         steady state, like the baseline's touched buffer. A thread's first session writes \
         into a fresh mapping whose pages the populating thread commits ahead of it: \
         {first:.2} ns/span ({:.2}x) of CPU time of the process, that thread's work on the \
         other core included (the first-session table below judges the recording thread \
         itself). The baseline writing into such a fresh buffer costs \
         {cold:.2} ns/span with 4 KiB pages (first-touch page faults add {:.2} ns per 24-byte \
         record) and {huge:.2} ns/span with huge pages advised",
        first / base_cpu,
        cold - base_cpu,
    ));
    notes.push(format!(
        "recording off costs {:.2} ns/span more than the empty loop ({off:.2} vs {empty:.2})",
        off - empty
    ));
    for row in rows.iter_mut() {
        notes.extend(row.subject.warnings());
        row.subject.finish();
    }
    if TRACY_ONDEMAND {
        notes.push(
            "tracy-client was built with `ondemand`: with no viewer connected it records nothing, so its row is comparable to \"recording off\"".into(),
        );
    } else {
        notes.push(
            "tracy-client was built without `ondemand`: with no viewer connected every zone is queued in memory without bound (see its RSS column); spans per slot are capped for that reason".into(),
        );
    }
}

/// The `TraceLayer` budget: at most 1.5x `tracing` with the bare `Registry`, and at most a
/// tenth of tracing-chrome's layer, per span (CPU medians of the same run).
fn tracing_budget(rows: &[Row], out: &mut String) {
    let cpu = |name: &str| rows.iter().find(|r| r.subject.name() == name).map(Row::cpu);
    let (Some(registry), Some(layer)) = (cpu(TRACING_REGISTRY), cpu(TRACING_LAYER_ON)) else {
        return;
    };
    let _ = writeln!(
        out,
        "## `tracing` spans through TraceLayer\n\n\
         CPU ns/span medians of the table above; the layer records while a session is on.\n"
    );
    let _ = writeln!(
        out,
        "| compared with | its cpu ns/span | TraceLayer / it | budget | result |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|---|");
    let _ = writeln!(
        out,
        "| {TRACING_REGISTRY} | {registry:.2} | {:.2}x | <= 1.5x | {} |",
        layer / registry,
        pass(layer / registry <= 1.5)
    );
    if let Some(chrome) = cpu(TRACING_CHROME) {
        let _ = writeln!(
            out,
            "| {TRACING_CHROME} | {chrome:.2} | {:.3}x | <= 0.1x | {} |",
            layer / chrome,
            pass(layer / chrome <= 0.1)
        );
    }
    let _ = writeln!(out);
}

// ---------------------------------------------------------------------------------------------
// A thread's first session, over several processes
// ---------------------------------------------------------------------------------------------

/// Processes of the first-session measurement.
const FIRST_SESSION_PROCESSES: usize = 5;

/// Set in the environment of the processes the first-session measurement starts.
const FIRST_SESSION_CHILD: &str = "TRACE_BENCH_FIRST_SESSION_CHILD";

#[derive(Clone, Copy, PartialEq)]
enum FirstSessionSystem {
    Baseline,
    /// The baseline writing into a fresh buffer advised to use huge pages, as ours are: what
    /// committing memory costs the kernel, whoever triggers it (information).
    BaselineFresh,
    On,
    OnStepNum,
}

/// One round of a system on a new thread: its CPU ns per span. Ours records from the thread's
/// first record on, so attaching its buffer (a fresh one: the thread is new) is timed, as is
/// every page the buffer commits. The baseline's buffer is allocated and touched before the
/// timing, as the budget's reference is.
/// A round's costs per span, and the baseline's buffer (address and layout) to free when the
/// process is done.
fn first_session_round(
    system: FirstSessionSystem,
    spans: u64,
) -> (RoundCost, Option<(usize, Layout)>) {
    let worker = std::thread::spawn(move || {
        let allocation = match system {
            FirstSessionSystem::Baseline => Some(baseline_install(records_for(spans), true)),
            FirstSessionSystem::BaselineFresh => {
                // As large as our default buffer: a fresh mapping, never recycled heap.
                let records = SessionConfig::default().max_events_per_thread;
                let (ptr, layout) = baseline_install(records, false);
                // madvise wants a page-aligned start.
                let start = ptr as usize & !4095;
                let end = ptr as usize + layout.size();
                // SAFETY: the range lies within the mapping that holds the allocation just
                // made; the advice changes no contents.
                unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
                }
                Some((ptr, layout))
            }
            _ => None,
        };
        let (cpu0, process0, wall0) = (thread_cpu_ns(), process_cpu_ns(), Instant::now());
        match system {
            FirstSessionSystem::Baseline | FirstSessionSystem::BaselineFresh => baseline_run(spans),
            FirstSessionSystem::On => ours_run(spans),
            FirstSessionSystem::OnStepNum => ours_run_step(spans),
        }
        let wall = wall0.elapsed().as_nanos() as f64;
        let process = process_cpu_ns().saturating_sub(process0) as f64;
        let cpu = thread_cpu_ns().saturating_sub(cpu0) as f64;
        // The baselines' buffers stay allocated until the process ends: freed here, their
        // pages (committed already) would be what the next round's system gets first, and
        // it would not be writing fresh memory.
        let kept = allocation.map(|(ptr, layout)| {
            baseline_detach();
            (ptr as usize, layout)
        });
        let per_span = |ns: f64| ns / spans as f64;
        let cost = RoundCost {
            cpu: per_span(cpu),
            wall: per_span(wall),
            process: per_span(process),
        };
        (cost, kept)
    });
    let failed = RoundCost {
        cpu: f64::NAN,
        wall: f64::NAN,
        process: f64::NAN,
    };
    worker.join().unwrap_or((failed, None))
}

/// What a round of a system cost per span: its thread's CPU time, the wall time of its loop,
/// and the CPU time of the whole process meanwhile (the populating thread's among it).
#[derive(Clone, Copy)]
struct RoundCost {
    cpu: f64,
    wall: f64,
    process: f64,
}

/// The child process's part: one session with the default options, as a program starts it,
/// and rounds of the baseline, ours on and ours with `step_num`, interleaved, each on a new
/// thread. Prints the three medians (CPU ns/span) and what the session recorded.
fn first_session_child(settings: &Settings) {
    let (rounds, spans) = if settings.quick {
        (3, 20 * BATCH)
    } else {
        (11, 300 * BATCH)
    };
    let systems = [
        FirstSessionSystem::Baseline,
        FirstSessionSystem::On,
        FirstSessionSystem::OnStepNum,
        FirstSessionSystem::BaselineFresh,
    ];
    // The process's first start, which sets up what a process needs once (`stop`'s barrier,
    // the populating thread).
    let started = Instant::now();
    if let Err(e) = session::start(&SessionConfig::default()) {
        println!("error: session start failed: {e}");
        return;
    }
    println!("first-start {}", started.elapsed().as_nanos());
    let mut samples: Vec<Vec<RoundCost>> = vec![Vec::new(); systems.len()];
    let mut kept = Vec::new();
    for _ in 0..rounds {
        for (i, &system) in systems.iter().enumerate() {
            let (sample, buffer) = first_session_round(system, spans);
            samples[i].push(sample);
            kept.extend(buffer);
        }
    }
    let (events, dropped) = stop_session().map_or((0, 0), |s| (s.event_count(), s.dropped()));
    for (ptr, layout) in kept {
        // SAFETY: allocated by `baseline_install` with this layout and not freed since.
        unsafe { std::alloc::dealloc(ptr as *mut u8, layout) };
    }
    let expected = 2 * rounds as u64 * (spans + spans / BATCH);
    // Per system: the medians of its thread's CPU, its wall time and the process's CPU.
    let medians: Vec<String> = samples
        .iter()
        .map(|rounds| {
            let of = |f: fn(&RoundCost) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
            format!("{} {} {}", of(|r| r.cpu), of(|r| r.wall), of(|r| r.process))
        })
        .collect();
    println!(
        "first-session {} {events} {dropped} {expected}",
        medians.join(" ")
    );
}

/// Runs [`first_session_child`] in [`FIRST_SESSION_PROCESSES`] new processes of this bench, one
/// after the other, and tabulates each process's ratios to its own baseline.
fn first_session(out: &mut String, notes: &mut Vec<String>) {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            notes.push(format!(
                "first session: cannot find this bench's binary: {e}"
            ));
            return;
        }
    };
    let mut processes: Vec<FirstSessionProcess> = Vec::new();
    let mut first_starts = Vec::new();
    for process in 0..FIRST_SESSION_PROCESSES {
        eprintln!(
            "trace-bench: first-session process {}/{FIRST_SESSION_PROCESSES}",
            process + 1
        );
        let output = std::process::Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .env(FIRST_SESSION_CHILD, "1")
            .stderr(std::process::Stdio::inherit())
            .output();
        let stdout = match output {
            Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
            Err(e) => {
                notes.push(format!("first session: cannot start a process: {e}"));
                return;
            }
        };
        first_starts.extend(
            stdout
                .lines()
                .find_map(|line| line.strip_prefix("first-start "))
                .and_then(|ns| ns.parse::<f64>().ok()),
        );
        let fields: Vec<f64> = stdout
            .lines()
            .find_map(|line| line.strip_prefix("first-session "))
            .map(|rest| rest.split(' ').filter_map(|f| f.parse().ok()).collect())
            .unwrap_or_default();
        let (costs, counts) = fields.split_at(fields.len().saturating_sub(3));
        let costs: Vec<RoundCost> = costs
            .chunks_exact(3)
            .map(|c| RoundCost {
                cpu: c[0],
                wall: c[1],
                process: c[2],
            })
            .collect();
        let ([base, on, step, fresh], [events, dropped, expected]) = (&costs[..], counts) else {
            notes.push(format!(
                "first session: process {} printed no result: {}",
                process + 1,
                stdout.trim()
            ));
            continue;
        };
        if events != expected || *dropped != 0.0 {
            notes.push(format!(
                "first session, process {}: recorded {events} events, {dropped} dropped, \
                 expected {expected}",
                process + 1
            ));
        }
        processes.push(FirstSessionProcess {
            base: *base,
            on: *on,
            step: *step,
            fresh: *fresh,
        });
    }
    if processes.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## A thread's first session, {FIRST_SESSION_PROCESSES} processes\n\n\
         Each process starts one session with the default options and runs rounds of the \
         baseline, recording on and on with `step_num`, interleaved, each round on a new thread: \
         every buffer of ours is fresh, and its thread's first record (which attaches it) is \
         timed. Per span, medians over rounds: the thread's CPU time and the wall time of its \
         loop, as ratios to the same process's baseline (a touched buffer); a row's ratio is \
         the larger of the two, which the budget judges. The process's CPU time over the same \
         loop counts the populating thread's work too, on the other core (information), as \
         does the baseline writing into a fresh buffer with huge pages advised (its 24 B per \
         span committed as it goes): what the kernel charges for committing memory.\n"
    );
    let _ = writeln!(
        out,
        "| process | baseline cpu / wall ns/span | on cpu / wall ns/span | on ratio | on, process cpu ratio | step_num cpu / wall ns/span | step_num ratio | step_num, process cpu ratio | baseline, fresh buffer |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, p) in processes.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2}x | {:.2}x | {:.2} / {:.2} | {:.2}x | {:.2}x | {:.2}x |",
            i + 1,
            p.base.cpu,
            p.base.wall,
            p.on.cpu,
            p.on.wall,
            p.ratio(p.on),
            p.on.process / p.base.process,
            p.step.cpu,
            p.step.wall,
            p.ratio(p.step),
            p.step.process / p.base.process,
            p.fresh.cpu / p.base.cpu,
        );
    }
    let on: Vec<f64> = processes.iter().map(|p| p.ratio(p.on)).collect();
    let step: Vec<f64> = processes.iter().map(|p| p.ratio(p.step)).collect();
    let worst = |v: &[f64]| v.iter().copied().fold(f64::MIN, f64::max);
    let (worst_on, worst_step) = (worst(&on), worst(&step));
    let _ = writeln!(
        out,
        "\n| first session | worst | median | budget | result |\n|---|---:|---:|---|---|\n\
         | recording on | {worst_on:.2}x | {:.2}x | <= 1.25x in every process | {} |\n\
         | on, with `step_num` | {worst_step:.2}x | {:.2}x | <= 1.3x in every process | {} |\n",
        median(&on),
        pass(worst_on <= 1.25 && on.len() == FIRST_SESSION_PROCESSES),
        median(&step),
        pass(worst_step <= 1.3 && step.len() == FIRST_SESSION_PROCESSES),
    );
    let _ = writeln!(
        out,
        "The process's first `session::start`: {:.1} us (median of the {} processes; worst \
         {:.1} us). Once per process, it registers the process for `stop`'s barrier \
         (membarrier) and starts the populating thread; later starts are in the next table.\n",
        median(&first_starts) / 1e3,
        first_starts.len(),
        first_starts.iter().copied().fold(0.0, f64::max) / 1e3,
    );
}

/// One first-session process's medians per system.
struct FirstSessionProcess {
    base: RoundCost,
    on: RoundCost,
    step: RoundCost,
    fresh: RoundCost,
}

impl FirstSessionProcess {
    /// A system's ratio to the baseline: the larger of its thread's CPU time's and its wall
    /// time's, so that work moved to another thread counts when the thread waits for it.
    fn ratio(&self, system: RoundCost) -> f64 {
        (system.cpu / self.base.cpu).max(system.wall / self.base.wall)
    }
}

// ---------------------------------------------------------------------------------------------
// Session start
// ---------------------------------------------------------------------------------------------

/// What `session::start` costs, and a thread's first record in a session (which attaches its
/// buffer): a new thread's (a fresh buffer) and a thread's that recorded in the previous
/// session with the same capacity (its buffer reused).
fn start_cost(settings: &Settings, out: &mut String) {
    let rounds = if settings.quick { 5 } else { 41 };
    let (mut start, mut fresh, mut reused) = (Vec::new(), Vec::new(), Vec::new());
    let config = SessionConfig::default();
    let first_record = || {
        let t0 = Instant::now();
        trace!("first", {});
        t0.elapsed().as_nanos() as f64
    };
    for _ in 0..rounds {
        let t0 = Instant::now();
        let started = session::start(&config);
        start.push(t0.elapsed().as_nanos() as f64);
        if started.is_err() {
            continue;
        }
        fresh.push(std::thread::spawn(first_record).join().unwrap_or(f64::NAN));
        reused.push(first_record());
        drop(stop_session());
    }
    let _ = writeln!(
        out,
        "## Starting a session\n\n\
         {rounds} rounds; median wall time. A thread's first record in a session attaches its \
         buffer: a new thread's is fresh, a thread that recorded in the previous session (same \
         capacity) reuses its own.\n\n\
         | what | wall us |\n|---|---:|\n\
         | `session::start` (default options) | {:.1} |\n\
         | a new thread's first record (fresh buffer) | {:.1} |\n\
         | a thread's first record, buffer reused | {:.1} |\n",
        median(&start) / 1e3,
        median(&fresh) / 1e3,
        median(&reused) / 1e3,
    );
}

// ---------------------------------------------------------------------------------------------
// Two threads
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum ThreadedSystem {
    Ours,
    Baseline,
}

/// Runs `spans` spans on each of `threads` new threads at once; returns (wall, cpu) ns/span of
/// each thread.
fn threaded_round(system: ThreadedSystem, threads: usize, spans: u64) -> Vec<(f64, f64)> {
    if system == ThreadedSystem::Ours {
        // New threads: every buffer is fresh.
        start_session(spans + spans / BATCH + 64, 0);
    }
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                // Set-up outside the timing: our first record attaches the thread's buffer.
                let allocation = match system {
                    ThreadedSystem::Ours => {
                        trace!("warm-up", {});
                        None
                    }
                    ThreadedSystem::Baseline => Some(baseline_install(records_for(spans), true)),
                };
                barrier.wait();
                let cpu0 = thread_cpu_ns();
                let t0 = Instant::now();
                match system {
                    ThreadedSystem::Ours => ours_run(spans),
                    ThreadedSystem::Baseline => baseline_run(spans),
                }
                let wall = t0.elapsed().as_nanos() as f64;
                let cpu = thread_cpu_ns().saturating_sub(cpu0) as f64;
                if let Some(allocation) = allocation {
                    baseline_uninstall(allocation);
                }
                (wall / spans as f64, cpu / spans as f64)
            })
        })
        .collect();
    let results = handles.into_iter().filter_map(|h| h.join().ok()).collect();
    if system == ThreadedSystem::Ours {
        drop(stop_session());
    }
    results
}

fn two_threads(settings: &Settings, out: &mut String) {
    let configs = [
        (ThreadedSystem::Ours, 1usize),
        (ThreadedSystem::Ours, 2),
        (ThreadedSystem::Baseline, 1),
        (ThreadedSystem::Baseline, 2),
    ];
    let mut samples: Vec<Vec<(f64, f64)>> = vec![Vec::new(); configs.len()];
    for round in 0..settings.thread_rounds {
        if round % 10 == 0 {
            eprintln!(
                "trace-bench: thread round {}/{}",
                round + 1,
                settings.thread_rounds
            );
        }
        for (i, &(system, threads)) in configs.iter().enumerate() {
            samples[i].extend(threaded_round(system, threads, settings.thread_spans));
        }
    }
    let med = |i: usize| -> (f64, f64) {
        let wall: Vec<f64> = samples[i].iter().map(|s| s.0).collect();
        let cpu: Vec<f64> = samples[i].iter().map(|s| s.1).collect();
        (median(&wall), median(&cpu))
    };
    let _ = writeln!(
        out,
        "## Two threads recording at once vs one thread\n\n\
         {} interleaved rounds of {} spans per thread, each thread on a fresh thread; per-thread \
         medians (wall, and that thread's own CPU time); budget judged on the cpu ratio. The \
         baseline rows are a control for what the machine itself does with two busy threads.\n",
        settings.thread_rounds, settings.thread_spans
    );
    let _ = writeln!(
        out,
        "| system | threads | wall ns/span | cpu ns/span | 2T/1T (wall) | 2T/1T (cpu) | budget | result |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|---|");
    for pair in [0usize, 2] {
        let (w1, c1) = med(pair);
        let (w2, c2) = med(pair + 1);
        let (name, budget, result) = match configs[pair].0 {
            ThreadedSystem::Ours => (
                "trace-runtime, recording on",
                "<= 1.2x",
                pass(c2 / c1 <= 1.2),
            ),
            ThreadedSystem::Baseline => ("baseline (control)", "", ""),
        };
        let _ = writeln!(out, "| {name} | 1 | {w1:.2} | {c1:.2} | | | | |");
        let _ = writeln!(
            out,
            "| {name} | 2 | {w2:.2} | {c2:.2} | {:.2}x | {:.2}x | {budget} | {result} |",
            w2 / w1,
            c2 / c1
        );
    }
    let _ = writeln!(out);
}

// ---------------------------------------------------------------------------------------------
// Memory per event
// ---------------------------------------------------------------------------------------------

fn memory_per_event(settings: &Settings, out: &mut String) {
    let spans = settings.memory_events / (BATCH + 1) * BATCH;
    let spans = spans.max(BATCH);
    let mut rows = Vec::new();
    for with_step in [false, true] {
        // Capacity well above what is used: untouched capacity must cost nothing. The two
        // capacities differ, so that the second session does not reuse the first's buffer,
        // whose pages are already resident.
        start_session(
            4 * (3 * spans + spans / BATCH) + 64,
            usize::from(with_step) + 1,
        );
        trace!("warm-up", {});
        let rss0 = rss_bytes();
        if with_step {
            ours_run_step(spans);
        } else {
            ours_run(spans);
        }
        let rss1 = rss_bytes();
        let events = stop_session()
            .map(|s| s.event_count().saturating_sub(1))
            .unwrap_or(0);
        let per_event = (rss1.saturating_sub(rss0)) as f64 / events.max(1) as f64;
        rows.push((with_step, events, rss1.saturating_sub(rss0), per_event));
    }
    let _ = writeln!(
        out,
        "## Memory per recorded event\n\n\
         Resident-set growth (/proc/self/statm) while recording into a session whose buffer \
         capacity is 4x what is used. Memory is committed in whole pages and the buffer asks \
         for 2 MiB huge pages, so the last page is partly filled, and the buffer populates up \
         to one 2 MiB chunk ahead of its writer: the budget is judged on the growth less those \
         two bounded amounts (4 MiB per thread); the `paged` column is bytes/event with them.\n"
    );
    let _ = writeln!(
        out,
        "| events | metadata | RSS growth | bytes/event | paged | budget | result |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---|---|");
    const HUGE_PAGE: u64 = 2 << 20;
    // The largest chunk a buffer populates ahead of its writer (`MAX_CHUNK` in
    // trace-runtime's buffer.rs).
    const POPULATED_AHEAD: u64 = 2 << 20;
    for (with_step, events, growth, paged) in rows {
        let per_event =
            growth.saturating_sub(HUGE_PAGE + POPULATED_AHEAD) as f64 / events.max(1) as f64;
        let (meta, budget, result) = if with_step {
            ("step_num on each", "", "")
        } else {
            ("none", "<= 24 B", pass(per_event <= 24.0))
        };
        let _ = writeln!(
            out,
            "| {events} | {meta} | {:.1} MiB | {per_event:.1} | {paged:.1} | {budget} | {result} |",
            growth as f64 / (1 << 20) as f64
        );
    }
    let _ = writeln!(out);
}

// ---------------------------------------------------------------------------------------------
// Export throughput
// ---------------------------------------------------------------------------------------------

#[inline(never)]
fn export_step(step: u64) {
    trace!("step", step_num = step as i64, {
        for j in 0..BATCH - 1 {
            trace!("op", { black_box(j) });
        }
    });
}

/// Wall and CPU time of `f` on this thread.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let cpu0 = thread_cpu_ns();
    let t0 = Instant::now();
    let value = f();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = thread_cpu_ns().saturating_sub(cpu0) as f64 / 1e9;
    (value, wall, cpu)
}

fn export(settings: &Settings, out: &mut String) {
    let steps = (settings.export_events / BATCH).max(1);
    start_session(steps * BATCH + 3 * steps + 64, 0);
    let (_, record_wall, record_cpu) = timed(|| {
        for s in 0..steps {
            export_step(s);
        }
    });
    let (snapshot, stop_wall, stop_cpu) = timed(stop_session);
    let Some(snapshot) = snapshot else {
        let _ = writeln!(out, "## Export\n\nsession failed; skipped\n");
        return;
    };
    let events = snapshot.event_count();

    // Medians of every stage, and the bytes written.
    let mut total = StageTimes::default();
    let mut plan = StageTimes::default();
    let mut encode = StageTimes::default();
    let mut json = StageTimes::default();
    let mut report = StageTimes::default();
    let mut bytes = 0usize;
    let export_started = Instant::now();
    for rep in 0..settings.export_reps {
        // Keep the run bounded when the export is slow: repeat only while under 10 s.
        if rep > 0 && export_started.elapsed() > Duration::from_secs(10) {
            break;
        }
        eprintln!(
            "trace-bench: export rep {}/{} ({events} events)",
            rep + 1,
            settings.export_reps
        );
        // What the budget is about, end to end: the snapshot to the bytes of xplane.pb.
        let encoded = total.time(|| trace_export::xspace::encode(&snapshot, "bench-host"));
        bytes = encoded.len();
        drop(encoded);
        // The same in its two steps, and what the profiler also reads from the layout.
        let layout = plan.time(|| trace_export::xspace::Layout::new(&snapshot, "bench-host"));
        drop(encode.time(|| layout.encode()));
        if let Err(e) = json.time(|| trace_export::chrome::write_json(&layout, io::sink())) {
            eprintln!("trace-bench: write_json failed: {e}");
        }
        report.time(|| trace_export::report::Report::from_profile(&layout));
    }
    let scale = 10_000_000.0 / events.max(1) as f64;
    let _ = writeln!(
        out,
        "## Export of {events} events ({} steps of {BATCH} nested events, step_num on each step)\n\n\
         Median of {} repetition(s), one thread. Budget: the snapshot to the bytes of xplane.pb \
         (`xspace::encode`, which is `Layout::new` then `Layout::encode`, timed end to end) in \
         <= 0.5 s of this thread's CPU time (one core) per 10 M events; judged on the CPU time, \
         which other processes on a shared machine disturb less than the wall time (the \
         \"per 10 M\" column scales linearly{}).\n",
        steps,
        total.cpu.len(),
        if settings.quick {
            "; quick mode: indicative only"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "| stage | wall s | cpu s | cpu per 10 M events, s | M events/s (cpu) | budget | result |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---|");
    let encode_stage = format!(
        "Layout::encode ({:.1} MiB)",
        bytes as f64 / (1 << 20) as f64
    );
    // (stage, median wall and cpu, judged against the budget)
    let rows = [
        (
            "record (hot path, for reference)",
            (record_wall, record_cpu),
            false,
        ),
        (
            "session::stop (decode to Snapshot; not part of the export)",
            (stop_wall, stop_cpu),
            false,
        ),
        (
            "xspace::Layout::new (lines, step markers, links)",
            plan.medians(),
            false,
        ),
        (encode_stage.as_str(), encode.medians(), false),
        (
            "**xspace::encode: snapshot to xplane.pb bytes**",
            total.medians(),
            true,
        ),
        (
            "chrome::write_json(&layout) to io::sink()",
            json.medians(),
            false,
        ),
        (
            "report::Report::from_profile(&layout)",
            report.medians(),
            false,
        ),
    ];
    for (stage, (wall, cpu), judged) in rows {
        let (budget, result) = if judged {
            ("<= 0.5 s per 10 M (cpu)", pass(cpu * scale <= 0.5))
        } else {
            ("", "")
        };
        let _ = writeln!(
            out,
            "| {stage} | {wall:.3} | {cpu:.3} | {:.3} | {:.1} | {budget} | {result} |",
            cpu * scale,
            events as f64 / cpu / 1e6
        );
    }
    let _ = writeln!(out);
}

/// Resets the peak resident set size the kernel keeps (`VmHWM`) to the current one.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident set size in bytes since the last reset (`VmHWM` of `/proc/self/status`).
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// `profiler::stop()` end to end, as a user's program meets it: one session recording
/// `export_events` events on one thread, then `stop`, which reads every buffer and writes
/// every default file (xplane.pb and trace.json.gz). Wall time, CPU time of the process (all
/// threads), and the peak memory it adds over what was resident before it, per event. Then
/// the same work by phase, from the public pieces, on a second recording.
fn stop_end_to_end(settings: &Settings, out: &mut String) {
    use trace_export::profiler::{self, ProfilerOptions};
    let steps = (settings.export_events / BATCH).max(1);
    let dir = std::env::temp_dir().join(format!("trace-bench-stop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = ProfilerOptions {
        max_events_per_thread: (steps * BATCH + 3 * steps + 64) as usize,
        run_name: Some("bench".into()),
        host_name: Some("bench-host".into()),
        ..Default::default()
    };
    if let Err(e) = profiler::start_with(&dir, options.clone()) {
        let _ = writeln!(out, "## profiler::stop end to end\n\nstart failed: {e}\n");
        return;
    }
    for s in 0..steps {
        export_step(s);
    }
    let rss_before = rss_bytes();
    let peak_known = reset_peak_rss();
    let cpu0 = process_cpu_ns();
    let t0 = Instant::now();
    let report = profiler::stop();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = process_cpu_ns().saturating_sub(cpu0) as f64 / 1e9;
    let peak_added = peak_rss_bytes().saturating_sub(rss_before);
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            let _ = writeln!(out, "## profiler::stop end to end\n\nstop failed: {e}\n");
            return;
        }
    };
    let events = report.events.max(1);
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let files = size(&report.xplane) + report.trace_json.as_deref().map_or(0, size);
    let per_event_ns = wall * 1e9 / events as f64;
    let per_event_bytes = peak_added as f64 / events as f64;
    let _ =
        writeln!(
        out,
        "## profiler::stop end to end ({events} events, {steps} steps of {BATCH}, one thread)\n\n\
         Every default file written ({:.0} MiB). Memory: peak resident set during `stop` (VmHWM, \
         reset just before) less the resident set before it{}.\n",
        files as f64 / (1 << 20) as f64,
        if peak_known { "" } else { " (peak unavailable here: not measured)" }
    );
    let _ = writeln!(
        out,
        "| what | measured | per event | budget | result |\n|---|---:|---:|---|---|"
    );
    let _ = writeln!(
        out,
        "| wall | {wall:.3} s | {per_event_ns:.1} ns | <= 150 ns/event | {} |",
        pass(per_event_ns <= 150.0)
    );
    let _ = writeln!(
        out,
        "| CPU, all threads | {cpu:.3} s | {:.1} ns | | |",
        cpu * 1e9 / events as f64
    );
    let _ =
        writeln!(
        out,
        "| memory added at the peak | {:.1} MiB | {per_event_bytes:.1} B | <= 48 B/event | {} |",
        peak_added as f64 / (1 << 20) as f64,
        if peak_known { pass(per_event_bytes <= 48.0) } else { "" }
    );
    let _ = writeln!(out);

    // The same by phase, from the public pieces, on a second recording.
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    start_session(steps * BATCH + 3 * steps + 64, 0);
    for s in 0..steps {
        export_step(s);
    }
    let (snapshot, stop_wall, stop_cpu) = timed(stop_session);
    let Some(snapshot) = snapshot else {
        return;
    };
    let (layout, plan_wall, plan_cpu) =
        timed(|| trace_export::xspace::Layout::new(&snapshot, "bench-host"));
    let (bytes, encode_wall, encode_cpu) = timed(|| layout.encode());
    drop(bytes);
    let ((), write_wall, write_cpu) = timed(|| {
        if let Ok(file) = std::fs::File::create(dir.join("bench-host.xplane.pb")) {
            let _ = layout.encode_to(file);
        }
    });
    let ((), plain_wall, plain_cpu) = timed(|| {
        let _ = trace_export::chrome::write_json(&layout, io::sink());
    });
    let ((), json_wall, json_cpu) = timed(|| {
        if let Ok(file) = std::fs::File::create(dir.join("bench-host.trace.json.gz")) {
            let _ = trace_export::chrome::write_json_gz(&layout, io::BufWriter::new(file));
        }
    });
    let (_, report_wall, report_cpu) =
        timed(|| trace_export::report::Report::from_profile(&layout));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = writeln!(
        out,
        "By phase (one thread each, in the order `stop` runs them):\n\n\
         | phase | wall s | cpu s |\n|---|---:|---:|"
    );
    for (phase, wall, cpu) in [
        ("session::stop: buffers to Snapshot", stop_wall, stop_cpu),
        ("xspace::Layout::new", plan_wall, plan_cpu),
        (
            "(Layout::encode: the xplane's bytes in memory)",
            encode_wall,
            encode_cpu,
        ),
        (
            "Layout::encode_to: xplane.pb measured, then streamed to the file",
            write_wall,
            write_cpu,
        ),
        (
            "(chrome::write_json to io::sink: the JSON alone)",
            plain_wall,
            plain_cpu,
        ),
        ("chrome::write_json_gz to a file", json_wall, json_cpu),
        ("report::Report::from_profile", report_wall, report_cpu),
    ] {
        let _ = writeln!(out, "| {phase} | {wall:.3} | {cpu:.3} |");
    }
    let _ = writeln!(out);
}

/// Wall and CPU times of one export stage, one per repetition.
#[derive(Default)]
struct StageTimes {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl StageTimes {
    /// Runs `f`, keeping its times.
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let (value, wall, cpu) = timed(f);
        self.wall.push(wall);
        self.cpu.push(cpu);
        value
    }

    /// Median wall and CPU time.
    fn medians(&self) -> (f64, f64) {
        (median(&self.wall), median(&self.cpu))
    }
}

// ---------------------------------------------------------------------------------------------

fn report_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        });
    target.join("trace-bench-report.md")
}

fn main() {
    let settings = Settings::from_env();
    let started = Instant::now();
    trace_runtime::clock::init();
    if std::env::var_os(FIRST_SESSION_CHILD).is_some() {
        first_session_child(&settings);
        return;
    }
    let mut out = String::new();
    let mut notes = Vec::new();
    let _ = writeln!(
        out,
        "# trace-bench report{}\n\nclock: {:?}; {} CPUs online; batch = {BATCH} inner spans per outer span.\n",
        if settings.quick { " (quick mode)" } else { "" },
        trace_runtime::clock::kind(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    // `TRACE_BENCH_ONLY=stop`, `=capture` or `=heap`: only that section; `=ours` (or
    // `=tracing`): the rows that run quickly, without the export.
    let only = std::env::var("TRACE_BENCH_ONLY").ok();
    if !matches!(only.as_deref(), Some("stop" | "capture" | "heap")) {
        span_table(&settings, &mut out, &mut notes);
        first_session(&mut out, &mut notes);
        start_cost(&settings, &mut out);
        two_threads(&settings, &mut out);
        memory_per_event(&settings, &mut out);
    }
    if only.is_none() || only.as_deref() == Some("heap") {
        heap::section(&settings, &mut out, &mut notes);
    }
    if only.is_none() {
        export(&settings, &mut out);
    }
    if only.is_none() || only.as_deref() == Some("stop") {
        stop_end_to_end(&settings, &mut out);
    }
    if only.is_none() || only.as_deref() == Some("capture") {
        live_capture::section(&settings, &mut out, &mut notes);
    }

    if !notes.is_empty() {
        let _ = writeln!(out, "## Notes\n");
        for note in &notes {
            let _ = writeln!(out, "- {note}");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "total run time: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    print!("{out}");
    let path = report_path();
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, &out));
    match written {
        Ok(()) => eprintln!("trace-bench: report written to {}", path.display()),
        Err(e) => eprintln!("trace-bench: could not write {}: {e}", path.display()),
    }
}

// ---------------------------------------------------------------------------------------------
// Live capture: what serving the profiler costs the profiled loop
// ---------------------------------------------------------------------------------------------

mod live_capture {
    use std::fmt::Write as _;
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use trace_export::profiler::client::{self, CaptureOptions};
    use trace_export::profiler::server::{self, ProfilerServer};
    use trace_runtime::session;

    use super::{measured_rows, ours_run, pass, Ours, OursMode, Settings, Subject};

    /// The loop with recording off while a profiler server is up and idle (no capture).
    struct OffServerIdle {
        server: Option<ProfilerServer>,
    }

    impl Subject for OffServerIdle {
        fn name(&self) -> String {
            "recording off, profiler server idle".into()
        }
        fn before(&mut self, _spans: u64) {
            self.server = server::start("127.0.0.1:0").ok();
            // Process CPU time counts every thread: let the server's thread finish starting
            // (its runtime, the listener), so that the slot sees it idle.
            std::thread::sleep(Duration::from_millis(20));
        }
        fn run(&mut self, spans: u64) {
            ours_run(spans);
        }
        fn after(&mut self) {
            self.server = None;
        }
    }

    /// The loop recorded by a live capture: a capture client in another thread asks the
    /// server to record for longer than the slot runs.
    struct DuringCapture {
        server: Option<ProfilerServer>,
        capture: Option<JoinHandle<Result<(), String>>>,
        logdir: std::path::PathBuf,
        duration_ms: u64,
        warnings: Vec<String>,
    }

    impl Subject for DuringCapture {
        fn name(&self) -> String {
            "recording on, during a live capture".into()
        }
        fn before(&mut self, _spans: u64) {
            if self.server.is_none() {
                self.server = server::start("127.0.0.1:0").ok();
            }
            let Some(server) = &self.server else {
                self.warnings
                    .push("the profiler server did not start".into());
                return;
            };
            let addr = server.local_addr().to_string();
            let (logdir, duration_ms) = (self.logdir.clone(), self.duration_ms);
            self.capture = Some(std::thread::spawn(move || {
                let options = CaptureOptions {
                    duration_ms,
                    attempts: 1,
                    max_events: 1 << 22,
                    ..CaptureOptions::default()
                };
                client::trace_with(&addr, &logdir, options)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }));
            let deadline = Instant::now() + Duration::from_secs(10);
            while !session::is_active() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
            trace_runtime::trace!("warm-up", {});
        }
        fn run(&mut self, spans: u64) {
            ours_run(spans);
        }
        fn after(&mut self) {
            if let Some(capture) = self.capture.take() {
                match capture.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => self.warnings.push(format!("capture failed: {e}")),
                    Err(_) => self.warnings.push("the capture thread panicked".into()),
                }
            }
            let _ = std::fs::remove_dir_all(&self.logdir);
        }
        fn warnings(&self) -> Vec<String> {
            self.warnings.clone()
        }
    }

    pub(super) fn section(settings: &Settings, out: &mut String, notes: &mut Vec<String>) {
        let duration_ms = if settings.quick { 100 } else { 300 };
        let subjects: Vec<Box<dyn Subject>> = vec![
            Box::new(Ours::new(OursMode::Off)),
            Box::new(OffServerIdle { server: None }),
            Box::new(Ours::new(OursMode::On)),
            Box::new(DuringCapture {
                server: None,
                capture: None,
                logdir: std::env::temp_dir()
                    .join(format!("trace-bench-capture-{}", std::process::id())),
                duration_ms,
                warnings: Vec::new(),
            }),
        ];
        let rounds = settings.rounds.min(11);
        let rows = measured_rows(subjects, settings, rounds, "live capture");
        let _ = writeln!(
            out,
            "## Live capture: the profiled loop with a profiler server\n\n\
             {rounds} interleaved rounds, medians; same loop as the span table. A capture \
             records through the same recorder as a local session; its client and the \
             server wait in other threads.\n"
        );
        let _ = writeln!(
            out,
            "| system | spans/slot | cpu ns/span | compared with | ratio | budget | result |"
        );
        let _ = writeln!(out, "|---|---:|---:|---|---:|---|---|");
        for (i, row) in rows.iter().enumerate() {
            let cpu = row.cpu();
            let (reference, ratio) = match i {
                1 => ("recording off, no server", cpu / rows[0].cpu()),
                3 => ("recording on, local session", cpu / rows[2].cpu()),
                _ => ("", f64::NAN),
            };
            let (budget, result) = match i {
                // "Unmeasurable": within the noise of the same loop without a server.
                1 | 3 => ("<= 1.1x".to_string(), pass(ratio <= 1.1).to_string()),
                _ => (String::new(), String::new()),
            };
            let ratio = if ratio.is_nan() {
                String::new()
            } else {
                format!("{ratio:.2}x")
            };
            let _ = writeln!(
                out,
                "| {} | {} | {cpu:.2} | {reference} | {ratio} | {budget} | {result} |",
                row.subject.name(),
                row.spans,
            );
            notes.extend(row.subject.warnings());
        }
        let _ = writeln!(out);
    }
}
