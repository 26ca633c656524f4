//! The event clock: the CPU timestamp counter where it is invariant, the monotonic clock
//! elsewhere. (Public for the workspace's tests and benchmarks only; `now`, `init` and `kind`
//! are all it offers outside this crate.)
//!
//! Events store raw ticks; a `Calibration` taken at session start and stop turns them into
//! nanoseconds off the hot path. The clock kind is chosen once, before the first session
//! records anything, and never changes afterwards, so ticks of one process always compare.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// True once the invariant TSC was chosen. Read on the hot path with one relaxed load.
static USE_TSC: AtomicBool = AtomicBool::new(false);
/// Process-wide origin of the fallback clock, and the first calibration point.
static ORIGIN: OnceLock<Anchor> = OnceLock::new();

/// The environment variable that forces the monotonic clock (`TRACE_CLOCK=monotonic`).
pub const CLOCK_ENV: &str = "TRACE_CLOCK";

/// The source the clock reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockKind {
    /// The CPU's invariant timestamp counter (`rdtsc`).
    Tsc,
    /// `std::time::Instant`, in nanoseconds since the process first used the clock.
    Monotonic,
}

/// Reads the clock: raw ticks, meaningful only through the session's calibration.
#[inline(always)]
pub fn now() -> u64 {
    #[cfg(target_arch = "x86_64")]
    if USE_TSC.load(Ordering::Relaxed) {
        // SAFETY: `rdtsc` has no preconditions; it is only selected after CPUID (or the
        // kernel's clocksource) confirmed an invariant counter on this machine.
        return unsafe { core::arch::x86_64::_rdtsc() };
    }
    monotonic_ticks()
}

/// Reads the TSC without checking that it was chosen: for callers that checked
/// `recorder::INLINE_TSC`, which is only set when it was. Elsewhere than x86_64, [`now`].
#[inline(always)]
pub(crate) fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` has no preconditions.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    now()
}

/// [`now`], read only after every earlier instruction has completed, so that the reading is
/// not taken ahead of the loads before it (`rdtsc` may otherwise run early).
pub(crate) fn now_after_loads() -> u64 {
    complete_earlier_instructions();
    now()
}

/// Waits until every earlier instruction, clock reads included, has completed.
pub(crate) fn complete_earlier_instructions() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `lfence` has no preconditions; SSE2 is part of x86_64.
    unsafe {
        core::arch::x86_64::_mm_lfence()
    };
    #[cfg(not(target_arch = "x86_64"))]
    std::sync::atomic::fence(Ordering::SeqCst);
}

#[cold]
#[inline(never)]
fn monotonic_ticks() -> u64 {
    let origin = ORIGIN.get_or_init(Anchor::first);
    // +1 keeps every reading non-zero: zero marks an inactive guard.
    origin.instant.elapsed().as_nanos() as u64 + 1
}

/// The clock in use (the first call decides, see [`init`]).
pub fn kind() -> ClockKind {
    init()
}

/// Chooses the clock once; later calls return the same choice. Never panics: any doubt
/// about the counter selects the monotonic clock.
pub fn init() -> ClockKind {
    static KIND: OnceLock<ClockKind> = OnceLock::new();
    *KIND.get_or_init(|| {
        ORIGIN.get_or_init(Anchor::first);
        let forced = std::env::var(CLOCK_ENV).ok();
        let kind = if forced.as_deref() == Some("monotonic") || !tsc_is_invariant() {
            ClockKind::Monotonic
        } else {
            ClockKind::Tsc
        };
        if kind == ClockKind::Tsc {
            // Re-anchor so the first calibration point is in TSC ticks.
            USE_TSC.store(true, Ordering::SeqCst);
        }
        kind
    })
}

#[cfg(target_arch = "x86_64")]
fn tsc_is_invariant() -> bool {
    // CPUID leaf 0x8000_0007, EDX bit 8: "invariant TSC" (constant rate, runs in all
    // C-states). Hypervisors often hide the bit while the kernel still trusts the counter, so
    // the kernel's own clocksource choice counts too.
    let max_ext = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    let cpuid_says =
        max_ext >= 0x8000_0007 && core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0;
    cpuid_says || kernel_clocksource_is_tsc()
}

#[cfg(not(target_arch = "x86_64"))]
fn tsc_is_invariant() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn kernel_clocksource_is_tsc() -> bool {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .map(|s| s.trim() == "tsc")
        .unwrap_or(false)
}

/// One simultaneous reading of the event clock, the monotonic clock and the wall clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Anchor {
    /// Event-clock ticks.
    pub(crate) ticks: u64,
    /// The monotonic clock.
    pub(crate) instant: Instant,
    /// Wall-clock nanoseconds since the Unix epoch.
    pub(crate) wall_ns: u64,
}

impl Anchor {
    fn first() -> Anchor {
        Anchor {
            ticks: 0,
            instant: Instant::now(),
            wall_ns: wall_ns(),
        }
    }

    /// Reads all three clocks, as close together as possible.
    pub(crate) fn now() -> Anchor {
        init();
        let instant = Instant::now();
        let ticks = now();
        Anchor {
            ticks,
            instant,
            wall_ns: wall_ns(),
        }
    }
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Converts ticks to nanoseconds since a session's start: the one conversion of a session.
///
/// Everything a snapshot holds in time (event starts and ends, the session's duration, its
/// wall-clock start and stop) goes through one `Calibration`, so that what is ordered in ticks
/// stays ordered in nanoseconds: an event whose ticks lie within the session's lies within
/// `[0, duration]`, whatever rate was measured, because the conversion is monotonic.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Calibration {
    /// Ticks at the session start.
    pub(crate) start_ticks: u64,
    /// Nanoseconds per tick.
    pub(crate) ns_per_tick: f64,
    /// Wall-clock nanoseconds since the Unix epoch at the session start.
    pub(crate) start_wall_ns: u64,
}

impl Calibration {
    /// The calibration for a session between `start` and `stop`. The TSC rate is measured
    /// over the longer of the session and the process lifetime, so a short session does not
    /// mean an imprecise rate.
    pub(crate) fn new(start: &Anchor, stop: &Anchor) -> Calibration {
        let ns_per_tick = match kind() {
            ClockKind::Monotonic => 1.0,
            ClockKind::Tsc => tsc_rate(start, stop),
        };
        Calibration::with_rate(start, ns_per_tick)
    }

    /// The calibration of a session that started at `start`, with a given rate.
    pub(crate) fn with_rate(start: &Anchor, ns_per_tick: f64) -> Calibration {
        Calibration {
            start_ticks: start.ticks,
            ns_per_tick,
            start_wall_ns: start.wall_ns,
        }
    }

    /// Nanoseconds from the session start to `ticks` (0 for ticks before the start).
    /// Monotonic in `ticks`: a later reading never converts to an earlier time.
    #[inline]
    pub(crate) fn ns_since_start(&self, ticks: u64) -> u64 {
        self.ns(ticks.saturating_sub(self.start_ticks))
    }

    /// A length of `ticks` in nanoseconds.
    #[inline]
    pub(crate) fn ns(&self, ticks: u64) -> u64 {
        (ticks as f64 * self.ns_per_tick) as u64
    }

    /// Wall-clock nanoseconds since the Unix epoch at `ticks`: the session's wall-clock start
    /// plus the calibrated time since, not a second reading of another clock.
    #[inline]
    pub(crate) fn wall_ns(&self, ticks: u64) -> u64 {
        self.start_wall_ns
            .saturating_add(self.ns_since_start(ticks))
    }
}

fn tsc_rate(start: &Anchor, stop: &Anchor) -> f64 {
    static FIRST_TSC: OnceLock<(u64, Instant)> = OnceLock::new();
    let (first_ticks, first_instant) = *FIRST_TSC.get_or_init(|| (start.ticks, start.instant));
    let (ticks, ns) = if stop.ticks > first_ticks {
        let ns = stop.instant.duration_since(first_instant).as_nanos() as f64;
        ((stop.ticks - first_ticks) as f64, ns)
    } else {
        let ns = stop.instant.duration_since(start.instant).as_nanos() as f64;
        (stop.ticks.saturating_sub(start.ticks) as f64, ns)
    };
    if ticks > 0.0 && ns > 0.0 {
        ns / ticks
    } else {
        // Too short to measure: assume 1 GHz rather than divide by zero. Durations stay
        // ordered, and the next session measures again.
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic_and_non_zero() {
        init();
        let a = now();
        let b = now();
        assert!(a > 0);
        assert!(b >= a);
    }

    #[test]
    fn calibration_measures_elapsed_time() {
        let start = Anchor::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let stop = Anchor::now();
        let cal = Calibration::new(&start, &stop);
        let ns = cal.ns_since_start(stop.ticks);
        assert!(
            (15_000_000..200_000_000).contains(&ns),
            "{ns} ns for a 20 ms sleep"
        );
    }
}
