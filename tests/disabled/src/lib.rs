//! Every recording API, built with trace-runtime's `enable` feature off: it must compile
//! unchanged and record nothing.

use trace_runtime::{trace, traced, Trace, Value};

/// A traced free function with metadata that uses its argument.
#[traced(name = "Train", step_num = step, level = 2)]
pub fn train_step(step: i64) -> i64 {
    let doubled = trace!("double", step_num = step, { step * 2 });
    trace!("late", |tm| {
        tm.set_metadata("in_cache", true);
    });
    trace_runtime::set_metadata("loss", 0.5);
    doubled
}

/// A traced method, a generic function and an async function.
pub struct Model;

impl Model {
    /// Traced `&self` method.
    #[traced]
    pub fn forward(&self, x: f32) -> f32 {
        x * 2.0
    }
}

/// Traced generic function returning `Result` with `?`.
#[traced(kind = "parse")]
pub fn parse<T: std::str::FromStr>(input: &str) -> Result<T, T::Err> {
    let value = input.trim().parse::<T>()?;
    Ok(value)
}

/// Traced async function.
#[traced]
pub async fn handler(id: u32) -> u32 {
    id + 1
}

/// The guard API.
pub fn guards() -> bool {
    let tm = Trace::new("evaluate").arg("examples", 128u32);
    tm.set_metadata("value", Value::from("x"));
    let _verbose = Trace::with_level("verbose", 3);
    tm.is_active() || trace_runtime::is_recording()
}

/// `tracing` spans through `TraceLayer`, on a registry as `tracing` users install it.
pub fn tracing_spans() -> tracing::Dispatch {
    use tracing_subscriber::prelude::*;
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry().with(trace_runtime::TraceLayer::default()),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        let step = tracing::info_span!(
            "Train",
            step_num = 3,
            text = "x",
            loss = tracing::field::Empty
        )
        .entered();
        step.record("loss", 0.5);
        tracing::debug_span!("inner").in_scope(|| ());
    });
    dispatch
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The traced allocator compiles and passes every call on.
    #[global_allocator]
    static HEAP: trace_runtime::TracedAllocator<std::alloc::System> =
        trace_runtime::TracedAllocator::new(std::alloc::System).min_recorded_bytes(0);

    use std::future::Future;
    use trace_runtime::session::{self, SessionConfig};

    #[test]
    fn the_feature_is_off() {
        const { assert!(!trace_runtime::ENABLED) };
    }

    #[test]
    fn trace_is_zero_sized() {
        assert_eq!(std::mem::size_of::<Trace>(), 0);
    }

    #[test]
    fn everything_runs_and_nothing_is_recorded() {
        session::start(&SessionConfig::default()).unwrap();
        assert_eq!(train_step(21), 42);
        assert_eq!(Model.forward(1.5), 3.0);
        assert_eq!(parse::<i32>(" 7 "), Ok(7));
        assert!(parse::<i32>("x").is_err());
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let mut future = std::pin::pin!(handler(1));
        assert_eq!(
            future.as_mut().poll(&mut context),
            std::task::Poll::Ready(2)
        );
        assert!(!guards());
        tracing_spans();
        std::hint::black_box(vec![0u8; 1 << 20]);
        let snapshot = session::stop().unwrap();
        assert_eq!(snapshot.event_count(), 0);
        assert!(snapshot.threads().iter().all(|t| t.heap.is_empty()));
        assert_eq!(trace_runtime::callsites().count(), 0);
    }
}
