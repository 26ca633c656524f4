//! Start and stop: the one state machine of recording. One session records at a time,
//! process-wide.
//!
//! This is the seam `trace-export` drives (its `profiler`, `summary` and capture server
//! start and stop sessions through it); it is not a stable API. A session names its owner,
//! so that a second `start` learns who holds the recorder.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::barrier;
use super::collect;
use super::populator;
use crate::clock::{self, Anchor, Calibration, ClockKind};
use crate::record::SLOT;
use crate::registry::{self, Registry};
use crate::snapshot::{RecordMode, Snapshot};
use crate::switch::{self, IN_FLIGHT};

/// How a session records.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Records events whose level is at most this (1 critical, 2 info, 3 verbose).
    pub level: u8,
    /// Each thread's buffer holds this many events without metadata; beyond it, events are
    /// dropped and counted.
    pub max_events_per_thread: usize,
    /// What is kept of each scope.
    pub mode: RecordMode,
    /// Who records, as a second `start` is told: "a profiler session", "a summary trace".
    pub owner: &'static str,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            level: 2,
            max_events_per_thread: 1 << 22,
            mode: RecordMode::Events,
            owner: "a recording session",
        }
    }
}

/// Why a session could not start or stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// `start` while a session records; `owner` is the recording session's.
    AlreadyActive {
        /// Who records ([`SessionConfig::owner`]).
        owner: &'static str,
    },
    /// `stop` with no session recording.
    NotActive,
    /// A level outside 1..=3.
    InvalidLevel(u8),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::AlreadyActive { owner } => write!(f, "{owner} is already recording"),
            SessionError::NotActive => f.write_str("no recording session is active"),
            SessionError::InvalidLevel(level) => {
                write!(
                    f,
                    "level {level} is not 1 (critical), 2 (info) or 3 (verbose)"
                )
            }
        }
    }
}

impl std::error::Error for SessionError {}

/// The longest `stop` waits for a thread to publish an event whose end clock it has read. A
/// thread suspended there (by a debugger, or a signal that stops it) would hold the stop for
/// good; after this, its event is counted as dropped instead.
const PUBLISH_WAIT_LIMIT: Duration = Duration::from_secs(1);

/// Starts recording on every thread.
pub fn start(config: &SessionConfig) -> Result<(), SessionError> {
    if !(1..=3).contains(&config.level) {
        return Err(SessionError::InvalidLevel(config.level));
    }
    populator::start();
    let mut state = registry::lock();
    if let Some(active) = state.as_ref() {
        return Err(SessionError::AlreadyActive {
            owner: active.owner,
        });
    }
    let clock = clock::init();
    let epoch = switch::next_epoch();
    *state = Some(Registry {
        epoch,
        owner: config.owner,
        capacity_words: config.max_events_per_thread.saturating_mul(SLOT),
        level: config.level,
        mode: config.mode,
        start: Anchor::now(),
        buffers: Vec::new(),
        trees: Vec::new(),
        stopping: false,
    });
    barrier::prepare();
    let graph_only = config.mode == RecordMode::CallGraph;
    switch::turn_on(
        epoch,
        config.level,
        graph_only,
        clock == ClockKind::Tsc && !graph_only,
    );
    Ok(())
}

/// True while a session records.
pub fn is_active() -> bool {
    registry::lock()
        .as_ref()
        .is_some_and(|active| !active.stopping)
}

/// Stops recording and returns everything recorded since [`start`].
///
/// An event is in the snapshot exactly when it ended before the stop time (and started after
/// the start): `stop` waits for events whose end clock was read before it and that are not
/// published yet. The order matters: the stop time is read first, then the epoch ends, then
/// every thread passes a memory barrier (`barrier`). A thread marks its buffer before it reads
/// an end clock; after the barrier, any thread whose end is before the stop time has its
/// mark visible (or has published the event already).
pub fn stop() -> Result<Snapshot, SessionError> {
    let (stop, graph_only) = {
        let mut state = registry::lock();
        let active = state
            .as_mut()
            .filter(|active| !active.stopping)
            .ok_or(SessionError::NotActive)?;
        active.stopping = true;
        // Call trees are sealed all at once, with every thread's lock held, so that each
        // call is counted exactly when its end (read under its lock) precedes the stop time.
        let mut trees: Vec<_> = active
            .trees
            .iter()
            .map(|tree| tree.state.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let stop = Anchor::now();
        clock::complete_earlier_instructions();
        switch::turn_off(active.epoch);
        for tree in &mut trees {
            tree.sealed = true;
        }
        (stop, active.mode == RecordMode::CallGraph)
    };
    // Past the deadline, what is still under way is counted as dropped.
    let deadline = Instant::now() + PUBLISH_WAIT_LIMIT;
    if !graph_only {
        barrier::all_threads();
        // Slow-path records count themselves before they read the epoch: once none is under
        // way, every later one reads the ended epoch, and the set of buffers is final.
        if !wait_until(deadline, || IN_FLIGHT.load(Ordering::Acquire) == 0) {
            registry::count_lost(IN_FLIGHT.load(Ordering::Acquire) as u64);
        }
    }
    let active = registry::lock().take().ok_or(SessionError::NotActive)?;
    for buffer in &active.buffers {
        if !wait_until(deadline, || !buffer.is_writing()) {
            buffer.count_drop();
        }
    }
    let calibration = Calibration::new(&active.start, &stop);
    Ok(collect::snapshot(active, stop.ticks, &calibration))
}

/// Spins, then yields, then sleeps until `done`; false if `deadline` passed first.
fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    let mut round = 0u32;
    while !done() {
        if round < 64 {
            std::hint::spin_loop();
        } else if round < 128 {
            std::thread::yield_now();
        } else if Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(50));
        } else {
            return done();
        }
        round += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, MutexGuard};

    /// Sessions are process-wide: the tests that start one take turns.
    fn serial() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A thread stuck between reading an end clock and publishing its record (suspended by a
    /// debugger, say) holds `stop` for the wait limit only; its record is counted as dropped.
    #[test]
    #[cfg(feature = "enable")]
    fn a_thread_stuck_mid_record_holds_stop_for_the_limit_only() {
        let _serial = serial();
        start(&SessionConfig::default()).unwrap();
        drop(crate::Trace::new("attaches this thread's buffer"));
        registry::lock().as_ref().unwrap().buffers[0].mark_writing();
        let began = Instant::now();
        let snapshot = stop().unwrap();
        let waited = began.elapsed();
        assert!(
            waited >= PUBLISH_WAIT_LIMIT,
            "stop returned after {waited:?}"
        );
        assert_eq!(snapshot.dropped(), 1);
        assert_eq!(snapshot.event_count(), 1);
    }

    /// A second start names the session that records.
    #[test]
    fn a_second_start_names_the_owner() {
        let _serial = serial();
        let owner = "the test's session";
        start(&SessionConfig {
            owner,
            ..Default::default()
        })
        .unwrap();
        let second = start(&SessionConfig::default());
        stop().unwrap();
        assert_eq!(second, Err(SessionError::AlreadyActive { owner }));
    }
}
