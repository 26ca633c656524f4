//! Runnable examples live in `examples/`: `cargo run --release --example train`.
//!
//! This library holds what they share: reading the logdir argument.

/// The logdir given as the only argument, or `default` without one. `-h` or `--help` prints
/// `usage` and exits; any other flag, or a second argument, prints it to stderr and exits
/// with code 2, so that a mistyped option never becomes a directory.
pub fn logdir_arg(default: &str, usage: &str) -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => default.to_owned(),
        [flag] if flag == "-h" || flag == "--help" => {
            println!("{usage}");
            std::process::exit(0);
        }
        [logdir] if !logdir.starts_with('-') => logdir.clone(),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
