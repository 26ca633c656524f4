//! Recording a graph-only session: each thread folds its calls into its own
//! [`CallTree`](crate::calltree::CallTree) as they happen.
//!
//! A session started in [`RecordMode::CallGraph`](crate::snapshot::RecordMode) switches the
//! guards onto this path (their entry leaves the inline clock read for
//! `Trace::enter_slow`). Each thread's tree sits behind a mutex that only the thread itself
//! takes while recording. `collector::session::stop` takes every thread's lock at once, reads
//! its stop time and seals the trees: a call whose exit (and its end clock, read under the
//! lock) came first is counted, a later one sees the seal and belongs to no session. A
//! thread waits for its lock only during that seal, which takes microseconds.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::callsite::Callsite;
use crate::calltree::{CallTree, ThreadTree};
use crate::clock;
use crate::record::{callsite_at, static_str, KIND_ASYNC, KIND_EVENT, KIND_GRAPH, KIND_MASK};
use crate::registry;
use crate::switch::EPOCH;

/// A graph guard's `info` word: `KIND_GRAPH`, the guard's own kind (bits 3..6), its frame
/// (bits 8..32) and, for a named guard, the name's length (bits 32..64).
fn pack(info: u64, frame: u32) -> Option<u64> {
    let name_len = info >> 8;
    (name_len < 1 << 32)
        .then_some(KIND_GRAPH | (info & KIND_MASK) << 3 | u64::from(frame) << 8 | name_len << 32)
}

/// The guard's own `info` (kind and name length) and frame, from [`pack`]'s word.
fn unpack(graph_info: u64) -> (u64, u32) {
    let info = (graph_info >> 3) & KIND_MASK | (graph_info >> 32) << 8;
    (info, ((graph_info >> 8) & 0xff_ffff) as u32)
}

thread_local! {
    static TREE: RefCell<Option<Arc<ThreadTree>>> = const { RefCell::new(None) };
}

/// The name and call site of a guard's identity (see `Trace`).
fn describe(ident: usize, info: u64) -> (&'static str, Option<&'static Callsite>) {
    match info & KIND_MASK {
        KIND_EVENT | KIND_ASYNC => {
            // SAFETY: guards of these kinds store the address of a `&'static Callsite`.
            let site = unsafe { callsite_at(ident as u64) };
            (site.name(), Some(site))
        }
        // SAFETY: named guards store the address and length of a `&'static str`.
        _ => (unsafe { static_str(ident as u64, info >> 8) }, None),
    }
}

/// Why a call was not counted.
enum Missed {
    /// No graph-only session records the call: it belongs to none.
    NoSession,
    /// The call happened in a session but could not be counted.
    Lost,
}

/// Runs `f` on this thread's tree of the current session, attaching one first.
fn with_tree<R>(f: impl FnOnce(&mut CallTree) -> Option<R>) -> Result<R, Missed> {
    let epoch = EPOCH.load(Ordering::Acquire);
    TREE.try_with(|cell| {
        // Borrowed: a call made while this thread updates its tree (a traced allocator).
        let mut slot = cell.try_borrow_mut().map_err(|_| Missed::Lost)?;
        if slot.as_ref().map(|tree| tree.epoch) != Some(epoch) {
            *slot = Some(registry::attach_call_tree(epoch).ok_or(Missed::NoSession)?);
        }
        let tree = slot.as_ref().ok_or(Missed::NoSession)?;
        // Taken by another thread only while the session seals the trees. A panic inside
        // `f` leaves the tree consistent (each update is a few counters), so poisoning is
        // ignored.
        let mut live = tree.state.lock().unwrap_or_else(|p| p.into_inner());
        if live.sealed {
            return Err(Missed::NoSession);
        }
        f(&mut live.fold).ok_or(Missed::Lost)
    })
    // The thread is being torn down.
    .unwrap_or(Err(Missed::Lost))
}

fn count_if_lost<R>(result: Result<R, Missed>) -> Option<R> {
    match result {
        Ok(value) => Some(value),
        Err(Missed::NoSession) => None,
        Err(Missed::Lost) => {
            registry::count_lost(1);
            None
        }
    }
}

/// Opens a call of the guard `(ident, info)` at `start`; returns the guard's new `info`
/// word, or `None` when the call is not recorded (counted as lost when it belongs to a
/// session).
pub(crate) fn enter(ident: usize, info: u64, start: u64) -> Option<u64> {
    let (name, site) = describe(ident, info);
    count_if_lost(with_tree(|tree| {
        tree.enter(name, site, start)
            .and_then(|frame| pack(info, frame))
    }))
}

/// Closes a call opened by [`enter`]; `graph_info` is what it returned. The end clock is read
/// under the tree's lock, so the call is counted exactly when it ended before the stop.
pub(crate) fn exit(ident: usize, graph_info: u64, start: u64) {
    let (info, frame) = unpack(graph_info);
    let (name, site) = describe(ident, info);
    count_if_lost(with_tree(|tree| {
        tree.exit(name, site, frame, start, clock::now());
        Some(())
    }));
}
