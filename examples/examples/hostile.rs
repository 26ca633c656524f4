//! Writes a profile full of hostile names and values (quotes, backslashes, newlines, control
//! characters, emoji, a 1 MiB string, extreme numbers, NaN) so that TensorBoard's and xprof's
//! readers can be run on it: every file must stay valid.
//!
//! ```text
//! cargo run --example hostile -- logs/hostile
//! ```

use trace_export::profiler::{self, ProfilerOptions};
use trace_runtime::{trace, Trace};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let logdir = trace_examples::logdir_arg(
        "logs/hostile",
        "usage: hostile [LOGDIR]   (default: logs/hostile)",
    );
    profiler::start_with(
        &logdir,
        ProfilerOptions {
            run_name: Some("hostile".into()),
            ..Default::default()
        },
    )?;
    let huge = "🦀".repeat(1 << 18); // 1 MiB of four-byte characters
    for step in [i64::MIN, -1, 0, 1, i64::MAX] {
        trace!("Train \"step\"\n😀", step_num = step, {
            let tm =
                Trace::new("quote\" back\\slash\nnew line\u{1}\u{7f} tab\t emoji 😀 </script>");
            tm.set_metadata(
                "key \"with\"\nnewline 😀",
                "value \"with\"\n\u{0} nul \u{1b}[31m 😀",
            );
            tm.set_metadata("i64_min", i64::MIN);
            tm.set_metadata("u64_max", u64::MAX);
            tm.set_metadata("nan", f64::NAN);
            tm.set_metadata("inf", f64::INFINITY);
            tm.set_metadata("neg_inf", f64::NEG_INFINITY);
            tm.set_metadata("huge", huge.as_str());
            drop(tm);
            let _zero_length = Trace::new("");
        });
    }
    let report = profiler::stop()?;
    println!("{report}");
    Ok(())
}
