//! A memory barrier on every running thread of the process, issued by one thread.
//!
//! This is what lets the recording hot path mark its buffer with a plain store: `stop` pays
//! for the ordering instead, once. On Linux it is the `membarrier` system call (private
//! expedited: an interrupt to each CPU that runs a thread of this process; a thread that is
//! not running made its stores visible when it was switched out). Where that is not
//! available, a short sleep stands in: an unfenced store becomes visible to other cores
//! within microseconds, but nothing bounds that in theory.

use std::time::Duration;

/// How long a missing system barrier is waited for instead.
const FALLBACK_WAIT: Duration = Duration::from_millis(1);

/// Prepares [`all_threads`]; done when a session starts so that the stop is quick.
pub(crate) fn prepare() {
    system::register();
}

/// Returns once every thread of the process has passed a full memory barrier since the call
/// began: stores it made before are visible to the caller.
pub(crate) fn all_threads() {
    if !system::barrier() {
        std::thread::sleep(FALLBACK_WAIT);
    }
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod system {
    use std::sync::OnceLock;

    // From the kernel's `linux/membarrier.h`.
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    static REGISTERED: OnceLock<bool> = OnceLock::new();

    fn membarrier(cmd: libc::c_long) -> bool {
        // SAFETY: membarrier takes two integer arguments and touches no memory of ours; an
        // unknown or refused command fails with an error code.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_long,
                0 as libc::c_long,
            ) == 0
        }
    }

    /// The process must declare its use of the expedited barrier once (Linux 4.14 and later).
    pub(super) fn register() -> bool {
        *REGISTERED.get_or_init(|| membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED))
    }

    pub(super) fn barrier() -> bool {
        register() && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod system {
    pub(super) fn register() -> bool {
        false
    }

    pub(super) fn barrier() -> bool {
        false
    }
}
