//! A recording thread's first session takes its page faults off that thread: past its
//! buffer's first chunk, the populating thread commits the pages ahead of it. Its own process
//! (a test binary of its own), because it turns transparent huge pages off for the process.
#![cfg(target_os = "linux")]

use trace_runtime::session::{self, SessionConfig};
use trace_runtime::trace;

/// The calling thread's minor page faults so far.
fn thread_minor_faults() -> i64 {
    // SAFETY: getrusage writes a `rusage` into the zeroed one given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a `rusage`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    usage.ru_minflt
}

#[test]
fn a_recording_thread_leaves_its_page_faults_to_the_populating_thread() {
    // Small pages only, so that a page fault is a page: a huge page is one fault, whoever
    // takes it, and the counts would not tell the two apart.
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    assert_eq!(
        rc,
        0,
        "PR_SET_THP_DISABLE: {}",
        std::io::Error::last_os_error()
    );

    const EVENTS: u64 = 400_000;
    session::start(&SessionConfig::default()).expect("start");
    let faults = std::thread::spawn(|| {
        let before = thread_minor_faults();
        for i in 0..EVENTS {
            // A body of a few hundred nanoseconds, as real code has: the populating thread
            // then keeps ahead even on a loaded machine.
            trace!("step", {
                let mut x = i;
                for _ in 0..100 {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                x
            });
        }
        thread_minor_faults() - before
    })
    .join()
    .expect("recording thread");
    let snapshot = session::stop().expect("stop");

    assert_eq!(snapshot.event_count(), EVENTS);
    assert_eq!(snapshot.dropped(), 0);
    // 24 bytes an event: about 2 300 pages written, 64 of them the first chunk's.
    let pages = (EVENTS * 24 / 4096) as i64;
    assert!(
        faults < pages / 4,
        "the recording thread took {faults} page faults writing {pages} pages"
    );
}
