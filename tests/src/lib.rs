//! Helpers for the integration tests: build an image once per test binary, boot it, and
//! check the serial log in the test-line format of `protocols::testlog`.

use protocols::testlog::{parse_line, parse_summary, Outcome as Line};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
pub use xtask::emulator::{Emulator, Outcome, RunOptions, Verdict};

static BUILT: Mutex<Option<HashMap<&'static str, PathBuf>>> = Mutex::new(None);

/// The ISO of image `name`, built on first use.
pub fn iso(name: &'static str) -> PathBuf {
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let map = built.get_or_insert_with(HashMap::new);
    if let Some(p) = map.get(name) {
        return p.clone();
    }
    let image = xtask::image::find(name).unwrap_or_else(|e| panic!("{e}"));
    let path = xtask::image::build(image).unwrap_or_else(|e| panic!("building {name}: {e}"));
    map.insert(name, path.clone());
    path
}

/// Boot image `name` under `emulator` with `opts`.
pub fn boot_with(name: &'static str, emulator: Emulator, opts: &RunOptions) -> Outcome {
    let iso = iso(name);
    xtask::emulator::run(emulator, &iso, opts).unwrap_or_else(|e| panic!("running {name}: {e}"))
}

/// Boot image `name` under `emulator` with default options.
pub fn boot(name: &'static str, emulator: Emulator) -> Outcome {
    boot_with(name, emulator, &RunOptions::default())
}

/// Panic with the full report unless `cond`.
#[track_caller]
pub fn check(outcome: &Outcome, cond: bool, what: &str) {
    assert!(cond, "{what}\n{}", outcome.report());
}

/// Assert the run passed, ran at least `min_checks` test lines, none failed, and the
/// summary line agrees with the lines.
#[track_caller]
pub fn assert_suite_passed(outcome: &Outcome, min_checks: u32) {
    check(outcome, outcome.verdict == Verdict::Pass, "the emulator did not report a pass");
    let mut passed = 0;
    let mut failed = Vec::new();
    let mut summary = None;
    for line in outcome.serial.lines() {
        match parse_line(line) {
            Some(Line::Pass(_)) => passed += 1,
            Some(Line::Fail(name, why)) => failed.push(format!("{name}: {why}")),
            None => {}
        }
        if let Some(s) = parse_summary(line) {
            summary = Some(s);
        }
    }
    check(outcome, failed.is_empty(), &format!("failing checks: {failed:?}"));
    check(outcome, passed >= min_checks, &format!("only {passed} checks ran, want {min_checks}"));
    check(outcome, summary == Some((passed, 0)), &format!("summary {summary:?} != ({passed}, 0)"));
}
