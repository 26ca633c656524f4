//! Helpers shared by the workspace-level tests in `tests/tests/`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Recording sessions are process-wide: every test that starts one, or records while one may
/// be active, holds this lock for its whole body, so such tests run one at a time.
pub fn session_lock() -> SessionLock {
    static LOCK: Mutex<()> = Mutex::new(());
    SessionLock {
        _held: LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
    }
}

/// Held by a test that uses the process-wide session (see [`session_lock`]). When the test
/// fails, it stops whatever session the test left recording before the next test can start
/// one, so that one failure does not cascade into others.
pub struct SessionLock {
    _held: MutexGuard<'static, ()>,
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        if std::thread::panicking() {
            trace_export::summary::trace_off();
            let _ = trace_export::profiler::stop();
            let _ = trace_runtime::session::stop();
        }
    }
}

/// Threads that run until told to stop. However the test ends, they are stopped and joined
/// before the value is gone: a failing test never leaves threads recording into the next
/// test's session. Declare it after the [`SessionLock`], so that it is dropped first.
pub struct Workers<T> {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<T>>,
}

impl<T: Send + 'static> Workers<T> {
    /// Spawns `count` threads named `<name>-<i>`, each running `body(i, stop)` with a flag
    /// that becomes true when the workers are stopped.
    pub fn spawn<F>(name: &str, count: usize, body: F) -> Workers<T>
    where
        F: Fn(usize, &AtomicBool) -> T + Send + Sync + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let body = Arc::new(body);
        let handles = (0..count)
            .map(|i| {
                let (stop, body) = (Arc::clone(&stop), Arc::clone(&body));
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || body(i, &stop))
                    .expect("spawn a worker thread")
            })
            .collect();
        Workers { stop, handles }
    }

    /// Stops the threads and returns what each returned, in spawn order; a worker's panic
    /// is resumed here.
    pub fn stop_and_join(mut self) -> Vec<T> {
        self.stop.store(true, Ordering::Relaxed);
        std::mem::take(&mut self.handles)
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    }
}

impl<T> Drop for Workers<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Whether `name` parses as a TensorFlow op full name as xprof reads one: `<op name>:<type>`
/// split at the first `:`, the op name matching `[A-Za-z0-9.][A-Za-z0-9_./]*` and the type
/// `[A-Z_][a-zA-Z0-9_]*` (and neither the `IDLE` that xprof keeps for idle time).
pub fn is_tf_op(name: &str) -> bool {
    let Some((op, ty)) = name.split_once(':') else {
        return false;
    };
    let op_ok = op
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_alphanumeric() || c == '.' || (i > 0 && matches!(c, '_' | '/')));
    let type_ok = ty
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_uppercase() || c == '_' || (i > 0 && c.is_ascii_alphanumeric()));
    !op.is_empty() && op_ok && !ty.is_empty() && type_ok && op != "IDLE" && ty != "IDLE"
}

/// A fresh, empty directory under the system's temporary directory.
pub fn scratch_dir(label: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "trace-tests-{label}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Polls futures round-robin on the calling thread until all complete: enough of an
/// executor to interleave `async fn`s deterministically.
pub fn run_interleaved(mut futures: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>>) {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    while !futures.is_empty() {
        futures.retain_mut(|f| f.as_mut().poll(&mut context).is_pending());
    }
}

/// A future that is pending once, then ready: an `.await` point that yields to the executor.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|_| {
        if std::mem::replace(&mut yielded, true) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The python of the oracle's venv (TensorBoard, xprof and xprof's capture client), or `None`
/// (after saying why) where it is missing outside CI. The venv is the one
/// `../shared/oracle/check` installs on first use (`$TRACE_ORACLE_VENV`, default
/// `~/.cache/trace-oracle/venv`); in CI (`CI=true`) a missing venv fails the test.
pub fn oracle_python() -> Option<PathBuf> {
    let venv = std::env::var_os("TRACE_ORACLE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            Path::new(&home).join(".cache/trace-oracle/venv")
        });
    let python = venv.join("bin/python");
    let script = workspace_root().join("../shared/oracle/check");
    if python.is_file() && script.is_file() {
        return Some(python);
    }
    let reason = format!(
        "xprof is not installed: no {} or no {} (running ../shared/oracle/check on any \
         logdir installs it)",
        python.display(),
        script.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason}");
    }
    eprintln!("skipped: {reason}");
    None
}

/// Runs `script` with the oracle venv's `python` and these arguments, and returns what it
/// printed; a failure fails the test, showing what the script wrote to stderr. `what` names
/// the script in that message.
pub fn run_python(python: &Path, what: &str, script: &str, args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let output = std::process::Command::new(python)
        // xprof's native code logs at INFO level otherwise.
        .env("TF_CPP_MIN_LOG_LEVEL", "1")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
