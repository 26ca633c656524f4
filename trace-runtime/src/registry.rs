//! The thread registry: the recording session's state and the buffers and call trees of the
//! threads that recorded in it. A thread attaches on its first record in a session (a cold
//! path, under the registry's lock); the session takes the whole registry when it stops.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::buffer::ThreadBuffer;
use crate::calltree::{CallTree, LiveTree, ThreadTree};
use crate::clock::Anchor;
use crate::snapshot::RecordMode;

/// The session that records, and who it is for.
pub(crate) struct Registry {
    pub(crate) epoch: u64,
    /// Who started the session (named in the error a second start gets).
    pub(crate) owner: &'static str,
    pub(crate) capacity_words: usize,
    pub(crate) level: u8,
    pub(crate) mode: RecordMode,
    pub(crate) start: Anchor,
    pub(crate) buffers: Vec<Arc<ThreadBuffer>>,
    pub(crate) trees: Vec<Arc<ThreadTree>>,
    /// `stop` has ended the recording and waits for events under way: a new session cannot
    /// start yet, and threads may still attach to this one.
    pub(crate) stopping: bool,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// Events that could not be recorded because their thread had no buffer: it was being torn
/// down, or its buffer could not be allocated, or it was still attaching one when the session
/// stopped waiting for it.
static LOST_WITHOUT_BUFFER: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// True while this thread is inside the profiler's own bookkeeping: it holds the
    /// registry's lock, or attaches a buffer. Its allocations meanwhile are the profiler's,
    /// and a traced allocator must not record them: recording one could take the lock this
    /// thread holds, or touch a thread-local that is being set up. Const-initialised and
    /// without a destructor, so an allocator can read it at any time.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread [`inside`] the profiler while it lives.
pub(crate) struct Inside {
    was: bool,
}

impl Inside {
    pub(crate) fn enter() -> Inside {
        Inside {
            was: INSIDE.replace(true),
        }
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.set(self.was);
    }
}

/// True while this thread is inside the profiler's bookkeeping (see [`Inside`]).
#[inline(always)]
pub(crate) fn inside() -> bool {
    INSIDE.get()
}

/// The registry, locked, with the thread marked [`inside`] the profiler meanwhile.
pub(crate) struct Locked {
    // Fields drop in order: the lock is released before the mark is lifted.
    guard: MutexGuard<'static, Option<Registry>>,
    _inside: Inside,
}

impl std::ops::Deref for Locked {
    type Target = Option<Registry>;
    fn deref(&self) -> &Self::Target {
        &self.guard
    }
}

impl std::ops::DerefMut for Locked {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.guard
    }
}

/// The registry, locked.
pub(crate) fn lock() -> Locked {
    let inside = Inside::enter();
    // The state is consistent after every statement, so a panic elsewhere never poisons it
    // for good.
    let guard = REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Locked {
        guard,
        _inside: inside,
    }
}

/// Counts records lost without a buffer (see [`take_lost`]).
pub(crate) fn count_lost(records: u64) {
    LOST_WITHOUT_BUFFER.fetch_add(records, Ordering::Relaxed);
}

/// The records lost without a buffer since the last call.
pub(crate) fn take_lost() -> u64 {
    LOST_WITHOUT_BUFFER.swap(0, Ordering::Relaxed)
}

thread_local! {
    static THREAD_ID: Cell<u64> = const { Cell::new(0) };
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

/// Who asks for a thread's buffer: the name it gets depends on it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    /// A scope's record: std's thread handle names the thread.
    Scope,
    /// A traced allocator. It must not ask std for the thread's handle, which allocates on
    /// its first use and panics once the thread's locals are destroyed, both fatal inside a
    /// global allocator: the operating system's name of the thread is read instead.
    Allocator,
}

/// This thread's name, or `thread-<id>`.
pub(crate) fn thread_name(id: u64, caller: Caller) -> String {
    let name = match caller {
        Caller::Scope => std::thread::current().name().map(str::to_owned),
        Caller::Allocator => os_thread_name(),
    };
    name.unwrap_or_else(|| format!("thread-{id}"))
}

/// The calling thread's name as the operating system keeps it (on Linux, its first 15
/// bytes, as std sets it for threads it names). Reads it without allocating on the way.
#[cfg(target_os = "linux")]
fn os_thread_name() -> Option<String> {
    let mut name = [0u8; 16];
    // SAFETY: the buffer is 16 bytes, as PR_GET_NAME writes at most (NUL included).
    let done = unsafe {
        libc::prctl(
            libc::PR_GET_NAME,
            name.as_mut_ptr() as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    (done == 0 && len > 0).then(|| String::from_utf8_lossy(&name[..len]).into_owned())
}

#[cfg(not(target_os = "linux"))]
fn os_thread_name() -> Option<String> {
    None
}

/// Called by a thread's first record in a session: its buffer, registered with the session.
/// `spare` is the thread's buffer of an earlier session: when that session has finished
/// reading it and it has the capacity wanted, it is emptied and reused, so its pages, already
/// committed, cost no page faults again. With no session recording, `spare` is handed back.
pub(crate) fn attach_thread(
    epoch: u64,
    spare: Option<Arc<ThreadBuffer>>,
    caller: Caller,
) -> Result<Arc<ThreadBuffer>, Option<Arc<ThreadBuffer>>> {
    let mut state = lock();
    let Some(active) = state
        .as_mut()
        .filter(|active| active.epoch == epoch && active.mode == RecordMode::Events)
    else {
        return Err(spare);
    };
    let reused = spare.and_then(|mut buffer| {
        let inner = Arc::get_mut(&mut buffer)?;
        if inner.capacity_words() != active.capacity_words {
            return None;
        }
        inner.reset(epoch);
        Some(buffer)
    });
    let buffer = match reused {
        Some(buffer) => buffer,
        None => {
            let id = thread_id();
            let fresh =
                ThreadBuffer::new(epoch, active.capacity_words, id, thread_name(id, caller));
            let Some(mut fresh) = fresh else {
                // Out of memory: the event is lost, and counted.
                count_lost(1);
                return Err(None);
            };
            if caller == Caller::Allocator {
                fresh.mark_nameless();
            }
            Arc::new(fresh)
        }
    };
    active.buffers.push(Arc::clone(&buffer));
    Ok(buffer)
}

/// Called by a thread's first call in a graph-only session: its call tree, registered with
/// the session. `None` when no graph-only session of `epoch` records.
pub(crate) fn attach_call_tree(epoch: u64) -> Option<Arc<ThreadTree>> {
    let mut state = lock();
    let active = state
        .as_mut()
        .filter(|active| active.epoch == epoch && active.mode == RecordMode::CallGraph)?;
    let id = thread_id();
    let tree = Arc::new(ThreadTree {
        epoch,
        thread_id: id,
        thread_name: thread_name(id, Caller::Scope),
        state: Mutex::new(LiveTree {
            fold: CallTree::new(active.start.ticks),
            sealed: false,
        }),
    });
    active.trees.push(Arc::clone(&tree));
    Some(tree)
}
