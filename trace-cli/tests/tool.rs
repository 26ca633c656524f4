//! The `trace-export` tool against bad input: garbage, truncated, bit-flipped and spliced
//! profiles, event files given in their place, missing paths and unwritable outputs. It reads
//! what it can, and otherwise fails with one line naming the file and exit code 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use trace_export::{summary, xspace};
use trace_runtime::clock::ClockKind;
use trace_runtime::snapshot::{Event, Recording, Snapshot, ThreadRecord};

/// A valid profile's bytes: four steps with nested work.
fn valid_xplane() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let mut events = Vec::new();
        for step in 0..4u64 {
            let t = step * 1_000;
            events.push(Event::new("Train", t, t + 900).with("step_num", step as i64));
            events.push(Event::new("forward", t + 100, t + 500).with("rows", 4u64));
        }
        let snapshot = Snapshot::new(
            1_700_000_000_000_000_000,
            4_000,
            ClockKind::Monotonic,
            2,
            Recording::Events(vec![ThreadRecord::new(1, "main", events, 0)]),
        );
        xspace::encode(&snapshot, "testhost")
    })
}

/// A fresh, empty directory for one test.
fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trace-cli-tool-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The bytes of an event file the summary writer wrote.
fn valid_event_file() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = scratch("event-file");
        let writer = summary::create_file_writer(&dir).unwrap();
        writer.scalar("loss", 0.25, 0).unwrap();
        writer.scalar("loss", f64::INFINITY, i64::MAX).unwrap();
        writer.close().unwrap();
        let bytes = std::fs::read(writer.path()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        bytes
    })
}

/// Runs `trace-export report <path>`.
fn report(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trace-export"))
        .arg("report")
        .arg(path)
        .output()
        .unwrap()
}

/// Checks that the tool failed cleanly: exit code 1 (not a panic's 101 or a signal), and one
/// line on stderr that says what is wrong with which file.
fn assert_clean_failure(output: &Output, path: &Path, reason: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}: {stderr}",
        path.display()
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("trace-export: error: "), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains(reason), "{stderr}");
}

#[test]
fn the_tool_reports_a_valid_profile() {
    let dir = scratch("cli-valid");
    let path = dir.join("testhost.xplane.pb");
    std::fs::write(&path, valid_xplane()).unwrap();
    let output = report(&path);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("4 steps"), "{stdout}");
    // Events show as recorded, not as the op names xprof reads.
    assert!(stdout.contains("forward"), "{stdout}");
    assert!(!stdout.contains("forward:Forward"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_tool_reports_json_with_each_call_sites_ops() {
    let dir = scratch("cli-json");
    let path = dir.join("testhost.xplane.pb");
    std::fs::write(&path, valid_xplane()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_trace-export"))
        .args(["report", "--json", "--top", "0"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let [report] = reports.as_array().unwrap().as_slice() else {
        panic!("one report per file: {reports}");
    };
    assert_eq!(report["file"], path.to_string_lossy().as_ref());
    assert_eq!(report["events"], 8);
    assert_eq!(report["threads"], 1);
    assert_eq!(report["more_sites"], 0);
    let steps: Vec<_> = (report["steps"].as_array().unwrap().iter())
        .map(|step| {
            (
                step["name"].as_str().unwrap(),
                step["duration_ns"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("Train 0", 900),
            ("Train 1", 900),
            ("Train 2", 900),
            ("Train 3", 900)
        ]
    );
    let sites = report["sites"].as_array().unwrap();
    let site = |name: &str| sites.iter().find(|s| s["name"] == name).unwrap();
    // Four of each: forward lasts 400 ns, Train 900 ns of which 500 are its own.
    let forward = site("forward");
    assert_eq!(forward["ops"], serde_json::json!(["forward:Forward"]));
    assert_eq!(forward["count"], 4);
    assert_eq!(forward["total_ns"], 1_600);
    assert_eq!(forward["self_ns"], 1_600);
    assert_eq!(forward["p50_ns"], 400);
    assert_eq!(forward["max_ns"], 400);
    let train = site("Train");
    assert_eq!(
        train["ops"],
        serde_json::json!(["Train"]),
        "a step marker keeps its name"
    );
    assert_eq!(train["count"], 4);
    assert_eq!(train["self_ns"], 2_000);
    assert_eq!(sites.len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_tool_rejects_garbage_truncated_and_bit_flipped_profiles() {
    let dir = scratch("cli-damaged");
    let valid = valid_xplane();
    let mut cases: Vec<(String, Vec<u8>, &str)> = vec![
        ("empty".into(), Vec::new(), "the file is empty"),
        (
            "garbage".into(),
            b"GIF89a this is not a profile".to_vec(),
            "not an XSpace profile",
        ),
    ];
    for cut in [1, 2, 10, valid.len() / 3, valid.len() / 2] {
        cases.push((
            format!("cut-{cut}"),
            valid[..cut].to_vec(),
            "not an XSpace profile",
        ));
    }
    // Flips that break the structure: the first field's wire type, and the top bit of its
    // length, which then claims more bytes than the file holds.
    for (byte, bit) in [(0, 0), (0, 1), (1, 7), (2, 6)] {
        let mut flipped = valid.to_vec();
        flipped[byte] ^= 1 << bit;
        cases.push((
            format!("flip-{byte}-{bit}"),
            flipped,
            "not an XSpace profile",
        ));
    }
    for (name, bytes, reason) in cases {
        let path = dir.join(format!("{name}.xplane.pb"));
        std::fs::write(&path, bytes).unwrap();
        assert_clean_failure(&report(&path), &path, reason);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_tool_never_panics_on_damaged_profiles() {
    // Bit flips and splices that may or may not leave valid protobuf: the tool reads the
    // profile or fails cleanly, never panics. A fixed pseudo-random sequence keeps this
    // reproducible.
    let dir = scratch("cli-fuzz");
    let valid = valid_xplane();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let path = dir.join("damaged.xplane.pb");
    for _ in 0..24 {
        let mut bytes = valid.to_vec();
        for _ in 0..1 + next() % 3 {
            let bit = (next() % (bytes.len() as u64 * 8)) as usize;
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        std::fs::write(&path, &bytes).unwrap();
        let output = report(&path);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        if !output.status.success() {
            assert_clean_failure(&output, &path, "not an XSpace profile");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_tool_rejects_event_files_whole_truncated_or_flipped() {
    // `trace-export` reads profiles only; an event file given to it, intact or damaged, is a
    // clean error.
    let dir = scratch("cli-events");
    let valid = valid_event_file();
    let mut cases = vec![("whole", valid.to_vec()), ("cut", valid[..20].to_vec())];
    let mut flipped = valid.to_vec();
    flipped[valid.len() / 2] ^= 0x10;
    cases.push(("flipped", flipped));
    for (name, bytes) in cases {
        let path = dir.join(format!("events.out.tfevents.{name}.v2"));
        std::fs::write(&path, bytes).unwrap();
        assert_clean_failure(&report(&path), &path, "not an XSpace profile");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_tool_names_missing_and_empty_paths() {
    let dir = scratch("cli-missing");
    let missing = dir.join("no-such-logdir");
    assert_clean_failure(&report(&missing), &missing, "read directory");
    assert_clean_failure(&report(&dir), &dir, "no .xplane.pb file here");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_tool_converts_nothing_from_damaged_profiles_and_names_unwritable_outputs() {
    let dir = scratch("cli-convert");
    let convert = |xplane: &Path, out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_trace-export"))
            .arg("convert")
            .arg(xplane)
            .arg("--chrome")
            .arg(out)
            .output()
            .unwrap()
    };
    let garbage = dir.join("garbage.xplane.pb");
    std::fs::write(&garbage, b"not a profile").unwrap();
    let out = dir.join("out.json.gz");
    assert_clean_failure(&convert(&garbage, &out), &garbage, "not an XSpace profile");
    assert!(!out.exists(), "nothing is written from a damaged profile");

    let valid = dir.join("valid.xplane.pb");
    std::fs::write(&valid, valid_xplane()).unwrap();
    let nowhere = dir.join("no-such-dir").join("out.json");
    assert_clean_failure(&convert(&valid, &nowhere), &nowhere, "write");

    // A full disk: every write to /dev/full fails with ENOSPC. Through a symlink, so that the
    // test can check the tool leaves what it did not create alone.
    if Path::new("/dev/full").exists() {
        let full = dir.join("full.json.gz");
        std::os::unix::fs::symlink("/dev/full", &full).unwrap();
        assert_clean_failure(&convert(&valid, &full), &full, "write");
        assert!(
            full.symlink_metadata().is_ok(),
            "the output link was removed"
        );
        assert!(Path::new("/dev/full").exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
