//! The populating thread: commits the pages of recording buffers ahead of their writers (see
//! `buffer`), so that a thread's first session takes its page faults on a spare core
//! instead of in the middle of the code it records. One per process, started by the first
//! session, asleep while no buffer asks.

use std::sync::{Arc, Once};

use crate::buffer::{self, ThreadBuffer};
use crate::registry::{self, Inside};

/// Starts the populating thread, once per process. When it cannot start, every writer
/// populates its own pages, as it does before this is called.
pub(crate) fn start() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("trace-populate".into())
            .spawn(run);
        if let Ok(handle) = spawned {
            buffer::set_populator(handle.thread().clone());
        }
    });
}

fn run() {
    // Its allocations are the profiler's own: a traced allocator must not record them.
    let _inside = Inside::enter();
    let mut placement = Placement::new();
    let mut asking = Vec::new();
    loop {
        std::thread::park();
        while populate_asked(&mut asking, &mut placement) {}
    }
}

/// Populates a piece of what each buffer in `asking`, and each of the recording session's
/// buffers that asks, asked for; keeps in `asking` those with pieces left, so that an ask
/// this thread took is finished even once the session has stopped and handed its buffers
/// over (a writer may be waiting for it). False when none has pieces left.
fn populate_asked(asking: &mut Vec<Arc<ThreadBuffer>>, placement: &mut Placement) -> bool {
    if let Some(active) = registry::lock().as_ref() {
        for buffer in &active.buffers {
            if buffer.has_ask() && !asking.iter().any(|known| Arc::ptr_eq(known, buffer)) {
                asking.push(Arc::clone(buffer));
            }
        }
    }
    // The registry is unlocked while pages are populated.
    asking.retain(|buffer| {
        if let Some(cpu) = buffer.asker_cpu() {
            placement.keep_off(cpu);
        }
        buffer.populate_asked()
    });
    !asking.is_empty()
}

/// Where the populating thread may run. The scheduler tends to wake a thread on the CPU of the
/// thread that woke it, and there, it would take the writer's time for the pages it
/// populates, which is what it is for not to do. So it keeps off the CPU of the writer it
/// works for, where the process may run on others.
struct Placement {
    /// The CPUs the process may run on, as the thread found them.
    #[cfg(target_os = "linux")]
    allowed: Option<libc::cpu_set_t>,
    /// The CPU kept off, or `usize::MAX`.
    avoided: usize,
}

impl Placement {
    fn new() -> Placement {
        Placement {
            #[cfg(target_os = "linux")]
            allowed: allowed_cpus(),
            avoided: usize::MAX,
        }
    }

    /// Moves the thread off `cpu`, when it may run elsewhere.
    #[cfg(target_os = "linux")]
    fn keep_off(&mut self, cpu: usize) {
        if cpu == self.avoided || cpu >= libc::CPU_SETSIZE as usize {
            return;
        }
        let Some(mut set) = self.allowed else {
            return;
        };
        // SAFETY: `cpu` is below CPU_SETSIZE, and `set` is a valid set.
        unsafe { libc::CPU_CLR(cpu, &mut set) };
        // SAFETY: a valid set.
        if unsafe { libc::CPU_COUNT(&set) } == 0 {
            return;
        }
        // SAFETY: the calling thread (0), a set of the size given.
        let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
        if rc == 0 {
            self.avoided = cpu;
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn keep_off(&mut self, _cpu: usize) {}
}

/// The CPUs the calling thread may run on.
#[cfg(target_os = "linux")]
fn allowed_cpus() -> Option<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set, filled in by the call.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the calling thread (0), a set of the size given.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    (rc == 0).then_some(set)
}
