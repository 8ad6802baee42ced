//! `cargo xtask plant`: shows that the `syscalls` fuzz target finds real bugs. Each bug
//! of the kernel's `planted` module is planted in turn (one build with the `planted-bugs`
//! feature; the `PLANTED_BUG` variable picks the bug of a run) and the target runs from
//! the checked-in seeds alone, with a fresh corpus, until it fails or the time is up.
//! Then one run with no bug planted, as long, shows the target stays quiet on the real
//! kernel. The build is the fast one (no sanitizer, no comparison tracing).

use crate::fuzz::{ensure_tools, fuzz_dir, host_triple, nightly_cargo, work_dir};
use crate::progress::Status;
use crate::{err, Result};
use std::fs::{self, File};
use std::process::Stdio;
use std::time::Instant;

/// The bugs, as `PLANTED_BUG` names them (see `kernel/src/planted.rs`).
pub const BUGS: [&str; 4] = [
    "send-without-write",
    "transfer-without-grant",
    "fastpath-ignores-priority",
    "remint-changes-badge",
];

/// Plant each bug and fuzz for at most `seconds`; `Ok(true)` if every bug was found and
/// the unplanted kernel passed.
pub fn command(seconds: u64, hold_out: bool) -> Result<bool> {
    ensure_tools()?;
    let target_dir = fuzz_dir().join("target").join("planted");
    let mut build = nightly_cargo();
    build.args([
        "fuzz",
        "build",
        "--debug-assertions",
        "--sanitizer",
        "none",
        "--no-trace-compares",
        "--features",
        "planted-bugs",
        "syscalls",
        "--target-dir",
    ]);
    build.arg(&target_dir);
    Status::start("building the syscalls target with the planted bugs")
        .run(&mut build, "plant-build")
        .map_err(|e| err!("building the planted target failed: {e}"))?;
    let binary = target_dir.join(host_triple()?).join("release").join("syscalls");
    let seeds = fuzz_dir().join("corpus").join("syscalls");
    let mut all_ok = true;
    for bug in BUGS.iter().copied().map(Some).chain([None]) {
        let name = bug.unwrap_or("none");
        let dir = work_dir().join("plant").join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("corpus"))?;
        // With `hold_out`, the seeds that find the bug on their own are left out: what
        // is found then is found by mutating the others.
        let seeds = match (hold_out, bug) {
            (true, Some(b)) => {
                let kept = dir.join("seeds");
                fs::create_dir_all(&kept)?;
                for entry in fs::read_dir(&seeds)? {
                    let path = entry?.path();
                    let alone = std::process::Command::new(&binary)
                        .arg(&path)
                        .env("PLANTED_BUG", b)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()?;
                    if alone.success() {
                        fs::copy(&path, kept.join(path.file_name().unwrap_or_default()))?;
                    } else {
                        println!("plant: {b}: seed {} finds it alone; held out", path.display());
                    }
                }
                kept
            }
            _ => seeds.clone(),
        };
        let log_path = dir.join("log");
        let log = File::create(&log_path)?;
        let mut cmd = std::process::Command::new(&binary);
        cmd.current_dir(fuzz_dir())
            .arg(dir.join("corpus"))
            .arg(&seeds)
            .arg(format!("-max_total_time={seconds}"))
            .arg("-timeout=10")
            .arg(format!("-artifact_prefix={}/", dir.display()))
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null());
        match bug {
            Some(b) => cmd.env("PLANTED_BUG", b),
            None => cmd.env_remove("PLANTED_BUG"),
        };
        let status =
            Status::start(format!("fuzzing syscalls with {name} planted ({seconds} s at most)"));
        let started = Instant::now();
        let exit = cmd.status()?;
        let secs = started.elapsed().as_secs_f64();
        drop(status);
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let crashed = !exit.success() && text.contains("Test unit written");
        // libFuzzer prints INITED once every seed has run: a failure before it came
        // from a seed as checked in, one after it from a mutation.
        let by = if text.contains("INITED") { "by mutation" } else { "by a seed" };
        let runs = text
            .lines()
            .filter_map(|l| l.strip_prefix('#')?.split_whitespace().next()?.parse::<u64>().ok())
            .next_back()
            .unwrap_or(0);
        // The panic message is the line after `panicked at`.
        let why =
            text.lines().skip_while(|l| !l.contains("panicked at")).nth(1).unwrap_or("").trim();
        match (bug, crashed) {
            (Some(_), true) => {
                println!("plant: {name}: FOUND in {secs:.1} s ({by}, ~{runs} runs): {why}")
            }
            (Some(_), false) => {
                all_ok = false;
                println!("plant: {name}: NOT FOUND in {secs:.1} s ({runs} runs)");
            }
            (None, false) => println!("plant: no bug planted: clean for {secs:.1} s ({runs} runs)"),
            (None, true) => {
                all_ok = false;
                println!(
                    "plant: no bug planted: FAILED in {secs:.1} s: {why}; log {}",
                    log_path.display()
                );
            }
        }
    }
    Ok(all_ok)
}
