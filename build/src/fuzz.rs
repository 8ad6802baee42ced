//! `cargo xtask fuzz`: the libFuzzer targets in `tests/fuzz`, as a short smoke of every
//! target or as one long campaign with a coverage report.
//!
//! cargo-fuzz needs the nightly toolchain (libFuzzer's instrumentation uses `-Z` flags),
//! while the rest of the project builds on stable, so the fuzz crate is its own workspace
//! built with `cargo +nightly fuzz build`; the binaries it makes are then run directly, so
//! what is fuzzed is exactly what was built. The targets are discovered with
//! `cargo fuzz list`, so a new target is smoked without touching this file. The smoke
//! writes new inputs to a scratch folder (libFuzzer grows only the first corpus folder it
//! is given) so the checked-in seeds never change; a campaign keeps its grown corpus in
//! `tests/fuzz/corpus-work/` so a later campaign resumes from it.

use crate::{err, Result};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Seconds each target runs in the smoke: long enough to execute the seeds and some
/// thousands of mutations on every target, short enough that all of them together stay
/// within the few minutes `cargo xtask test` can spare on two cores.
pub const SMOKE_SECONDS: u64 = 10;
/// A campaign's default length: a day. Security engineers run these for days; `--time`
/// picks anything else.
pub const CAMPAIGN_SECONDS: u64 = 24 * 3600;
/// libFuzzer's per-input time limit: every target handles one input in microseconds, so
/// an input that takes this long is a hang and is reported as a failure.
const INPUT_TIMEOUT_SECONDS: u64 = 10;
/// Extra wall time the watchdog allows beyond `-max_total_time` (loading the corpus,
/// writing artifacts) before it kills a run that will not end.
const WATCHDOG_GRACE: Duration = Duration::from_secs(300);

const USAGE: &str = "\
usage: cargo xtask fuzz [--time SECS]                 smoke every target (SECS each, default 10)
       cargo xtask fuzz --long TARGET [--time SECS] [--runs N] [--sanitizer address|none]
                        [--no-trace-compares]         campaign on TARGET (default 86400 s, or
                                                      until N runs), then a coverage report";

/// How the targets are instrumented beyond coverage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sanitizer {
    /// AddressSanitizer, cargo-fuzz's default: catches memory errors in `unsafe` code.
    Address,
    /// None: the code under test is safe Rust (bounds and overflow checks stay on), and
    /// without ASan's bookkeeping the targets that walk the whole kernel state after every
    /// step run several times faster, which is what a long campaign needs.
    None,
}

impl Sanitizer {
    fn parse(v: &str) -> Result<Self> {
        match v {
            "address" => Ok(Self::Address),
            "none" => Ok(Self::None),
            other => Err(err!("--sanitizer takes address or none, not {other:?}")),
        }
    }

    /// cargo-fuzz's name for it.
    fn name(self) -> &'static str {
        match self {
            Self::Address => "address",
            Self::None => "none",
        }
    }
}

/// How the targets are built: cargo-fuzz's defaults (AddressSanitizer, compares traced
/// for libFuzzer's value profile) or lighter instrumentation for long campaigns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Build {
    /// The sanitizer.
    pub sanitizer: Sanitizer,
    /// Whether comparisons are traced (libFuzzer learns the operands and tries them). The
    /// `syscalls` target spends most of its time in its state checks, whose comparisons
    /// teach libFuzzer nothing; without the tracing it runs over twice as fast.
    pub trace_compares: bool,
}

impl Build {
    /// What the smoke and a default campaign use.
    pub const DEFAULT: Self = Self { sanitizer: Sanitizer::Address, trace_compares: true };

    /// Where cargo-fuzz builds it: one folder per kind of build, so switching never
    /// rebuilds another's binaries.
    fn target_dir(self) -> PathBuf {
        let base = fuzz_dir().join("target");
        match (self.sanitizer, self.trace_compares) {
            (Sanitizer::Address, true) => base,
            (Sanitizer::Address, false) => base.join("no-trace-compares"),
            (Sanitizer::None, true) => base.join("no-sanitizer"),
            (Sanitizer::None, false) => base.join("no-sanitizer-no-trace-compares"),
        }
    }
}

/// What a campaign runs.
#[derive(Clone, Copy, Debug)]
pub struct Campaign {
    /// Wall-time limit.
    pub seconds: u64,
    /// Stop after this many runs (libFuzzer's `-runs`), if given.
    pub runs: Option<u64>,
    /// Instrumentation.
    pub build: Build,
}

/// The fuzz crate's folder.
pub fn fuzz_dir() -> PathBuf {
    crate::root().join("tests").join("fuzz")
}

/// Where smoke scratch corpora and run logs go (inside the build output, ignored by git).
fn work_dir() -> PathBuf {
    crate::target_dir().join("fuzz")
}

/// `cargo xtask fuzz [--long TARGET] [--time SECS]`.
pub fn command(args: Vec<String>) -> Result<bool> {
    let mut long = None;
    let mut time = None;
    let mut runs = None;
    let mut sanitizer = None;
    let mut trace_compares = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |what: &str| it.next().ok_or_else(|| err!("{arg} needs {what}\n{USAGE}"));
        match arg.as_str() {
            "--long" => long = Some(value("a target")?),
            "--time" => {
                let v = value("seconds")?;
                time = Some(v.parse::<u64>().map_err(|_| err!("--time takes seconds, not {v:?}"))?);
            }
            "--runs" => {
                let v = value("a count")?;
                runs = Some(v.parse::<u64>().map_err(|_| err!("--runs takes a count, not {v:?}"))?);
            }
            "--sanitizer" => sanitizer = Some(Sanitizer::parse(&value("a sanitizer")?)?),
            "--no-trace-compares" => trace_compares = Some(false),
            other => return Err(err!("unexpected argument {other:?}\n{USAGE}")),
        }
    }
    ensure_tools()?;
    match long {
        Some(target) => campaign(
            &target,
            Campaign {
                seconds: time.unwrap_or(CAMPAIGN_SECONDS),
                runs,
                build: Build {
                    sanitizer: sanitizer.unwrap_or(Sanitizer::Address),
                    trace_compares: trace_compares.unwrap_or(true),
                },
            },
        ),
        None if runs.is_some() || sanitizer.is_some() || trace_compares.is_some() => Err(err!(
            "--runs, --sanitizer and --no-trace-compares are for campaigns (--long TARGET)\n{USAGE}"
        )),
        None => smoke(time.unwrap_or(SMOKE_SECONDS)),
    }
}

/// A `cargo +nightly` command run in the fuzz crate. The plain `cargo` on PATH is used
/// (not `$CARGO`, which names the stable toolchain's binary and would ignore `+nightly`),
/// and variables the outer stable cargo may have set are dropped so they cannot leak
/// stable settings or another target folder into the nightly build.
fn nightly_cargo() -> Command {
    let mut c = Command::new("cargo");
    c.arg("+nightly").current_dir(fuzz_dir());
    for var in
        ["RUSTUP_TOOLCHAIN", "RUSTC", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_TARGET_DIR"]
    {
        c.env_remove(var);
    }
    c
}

/// Check for the nightly toolchain and install cargo-fuzz when it is missing.
pub fn ensure_tools() -> Result<()> {
    let toolchains = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .map_err(|e| err!("rustup not found ({e}); cargo-fuzz needs a rustup-managed nightly"))?;
    let has_nightly = String::from_utf8_lossy(&toolchains.stdout)
        .lines()
        .any(|l| l.trim_start().starts_with("nightly"));
    if !has_nightly {
        return Err(err!(
            "the nightly toolchain is missing; cargo-fuzz needs it (libFuzzer's \
             instrumentation uses unstable -Z flags). Install it with:\n  \
             rustup toolchain install nightly --profile minimal"
        ));
    }
    let have_fuzz = nightly_cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if have_fuzz {
        return Ok(());
    }
    println!(
        "xtask: cargo-fuzz is missing; installing it with `cargo install cargo-fuzz --locked`"
    );
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(err!("`cargo install cargo-fuzz --locked` failed; run it by hand to see why"))
    }
}

/// The fuzz targets, as `cargo fuzz list` names them.
pub fn targets() -> Result<Vec<String>> {
    let out = nightly_cargo().args(["fuzz", "list"]).stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err(err!("`cargo +nightly fuzz list` failed in {}", fuzz_dir().display()));
    }
    let list: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if list.is_empty() {
        return Err(err!("`cargo fuzz list` found no target in {}", fuzz_dir().display()));
    }
    Ok(list)
}

/// Build every target once (with debug assertions: an arithmetic overflow in the code
/// under test is a bug worth a crash report, and so is a failed `debug_assert!`).
fn build_all(b: Build) -> Result<()> {
    println!("xtask: building the fuzz targets (cargo +nightly fuzz build, {b:?})");
    let mut cmd = nightly_cargo();
    cmd.args(["fuzz", "build", "--debug-assertions", "--sanitizer", b.sanitizer.name()]);
    if !b.trace_compares {
        cmd.arg("--no-trace-compares");
    }
    let status = cmd.arg("--target-dir").arg(b.target_dir()).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(err!("building the fuzz targets failed"))
    }
}

/// The libFuzzer arguments every run shares.
fn libfuzzer_args(seconds: u64) -> Vec<String> {
    vec![
        format!("-max_total_time={seconds}"),
        format!("-timeout={INPUT_TIMEOUT_SECONDS}"),
        "-print_final_stats=1".into(),
    ]
}

/// A `rustc +nightly` query's output.
fn nightly_rustc(args: &[&str]) -> Option<String> {
    let out = Command::new("rustc")
        .arg("+nightly")
        .args(args)
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The host triple, which names cargo-fuzz's output folders.
fn host_triple() -> Result<String> {
    let version = nightly_rustc(&["-vV"]).ok_or_else(|| err!("`rustc +nightly -vV` failed"))?;
    version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_string())
        .ok_or_else(|| err!("`rustc +nightly -vV` names no host"))
}

/// The libFuzzer binary `cargo fuzz build` made for `target`.
fn binary(target: &str, b: Build) -> Result<PathBuf> {
    let host = host_triple()?;
    let path = b.target_dir().join(&host).join("release").join(target);
    if path.is_file() {
        Ok(path)
    } else {
        Err(err!("{} was not built; is {target} a target of tests/fuzz?", path.display()))
    }
}

/// Run the binary built for `target` (not `cargo fuzz run`, which would rebuild first and
/// so fuzz whatever the sources say at that moment, or fail on a half-edited tree), new
/// inputs going to `corpus`, seeds read from the checked-in corpus when there is one, and
/// failing inputs saved where cargo-fuzz saves them.
fn run_command(target: &str, corpus: &Path, seconds: u64, build: Build) -> Result<Command> {
    let artifacts = fuzz_dir().join("artifacts").join(target);
    fs::create_dir_all(&artifacts)?;
    let mut c = Command::new(binary(target, build)?);
    c.current_dir(fuzz_dir()).arg(corpus);
    let seeds = fuzz_dir().join("corpus").join(target);
    if seeds.is_dir() {
        c.arg(seeds);
    }
    c.args(libfuzzer_args(seconds));
    // A target's dictionary (values its code compares against, e.g. the MSR indices the
    // VMM knows), when there is one.
    let dict = fuzz_dir().join("dict").join(format!("{target}.dict"));
    if dict.is_file() {
        c.arg(format!("-dict={}", dict.display()));
    }
    c.arg(format!("-artifact_prefix={}/", artifacts.display()));
    // What cargo-fuzz sets for AddressSanitizer, unless the caller chose otherwise.
    if std::env::var_os("ASAN_OPTIONS").is_none() {
        c.env("ASAN_OPTIONS", "detect_odr_violation=0");
    }
    Ok(c)
}

/// What a libFuzzer run printed at the end, for the summary lines.
#[derive(Debug, Default)]
struct Stats {
    runs: Option<u64>,
    exec_per_sec: Option<u64>,
    cov: Option<u64>,
    ft: Option<u64>,
    corpus: Option<String>,
    /// Where libFuzzer wrote the input that failed (`Test unit written to ...`).
    artifact: Option<PathBuf>,
}

fn field_after(line: &str, key: &str) -> Option<u64> {
    let rest = line.split(key).nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

fn parse_stats(log: &str) -> Stats {
    let mut s = Stats::default();
    for line in log.lines() {
        if let Some(v) = field_after(line, "stat::number_of_executed_units:") {
            s.runs = Some(v);
        }
        if let Some(v) = field_after(line, "stat::average_exec_per_sec:") {
            s.exec_per_sec = Some(v);
        }
        // Progress lines: `#N  NEW  cov: C ft: F corp: U/S ...`; the last one wins.
        if line.starts_with('#') {
            s.cov = field_after(line, " cov:").or(s.cov);
            s.ft = field_after(line, " ft:").or(s.ft);
            if let Some(corp) = line.split(" corp: ").nth(1).and_then(|r| r.split(' ').next()) {
                s.corpus = Some(corp.to_string());
            }
        }
        if let Some(path) = line.split("Test unit written to ").nth(1) {
            let path = PathBuf::from(path.trim());
            s.artifact = Some(if path.is_absolute() { path } else { fuzz_dir().join(path) });
        }
    }
    s
}

fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "?".into(), |v| v.to_string())
}

impl Stats {
    fn summary(&self) -> String {
        format!(
            "{} execs, {} exec/s, cov {}, ft {}, corpus {}",
            show(self.runs),
            show(self.exec_per_sec),
            show(self.cov),
            show(self.ft),
            self.corpus.as_deref().unwrap_or("?"),
        )
    }
}

/// Wait for `child`, killing it if it outlives `limit`.
fn wait_with_watchdog(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if start.elapsed() > limit {
            // Killing can only fail if the child already exited, which `wait` then reaps.
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// The lines of a failed run's log worth showing: the panic message and its location
/// (the broken invariant), or libFuzzer's own report, else the end of the log.
fn failure_excerpt(log: &str) -> Vec<&str> {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains("panicked at"))
        .or_else(|| lines.iter().position(|l| l.contains("ERROR: libFuzzer")));
    match start {
        Some(i) => lines.iter().skip(i).take(12).copied().collect(),
        None => lines.iter().skip(lines.len().saturating_sub(40)).copied().collect(),
    }
}

fn reproduce_hint(target: &str, artifact: &Path) -> String {
    format!(
        "reproduce with:\n  (cd tests/fuzz && cargo +nightly fuzz run --debug-assertions {target} {})",
        artifact.strip_prefix(fuzz_dir()).unwrap_or(artifact).display()
    )
}

/// Run every target for `seconds`; fails at the end, naming each crashing input.
pub fn smoke(seconds: u64) -> Result<bool> {
    let targets = targets()?;
    build_all(Build::DEFAULT)?;
    let scratch_root = work_dir().join("smoke");
    let mut failures = Vec::new();
    let started = Instant::now();
    for target in &targets {
        let scratch = scratch_root.join(target);
        // A fresh scratch corpus each time: the smoke tests the checked-in seeds plus what
        // this run finds, and never grows the repository.
        if scratch.exists() {
            fs::remove_dir_all(&scratch)?;
        }
        fs::create_dir_all(&scratch)?;
        let log_path = work_dir().join(format!("{target}-smoke.log"));
        let log = File::create(&log_path)?;
        println!("xtask: fuzz smoke {target} ({seconds} s)");
        let mut child = run_command(target, &scratch, seconds, Build::DEFAULT)?
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()?;
        let status = wait_with_watchdog(&mut child, Duration::from_secs(seconds) + WATCHDOG_GRACE)?;
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let stats = parse_stats(&text);
        match status {
            Some(s) if s.success() => println!("xtask:   ok: {}", stats.summary()),
            other => {
                let why = match other {
                    None => "killed by the watchdog".to_string(),
                    Some(s) => s.to_string(),
                };
                eprintln!("---- from {} ----", log_path.display());
                for line in failure_excerpt(&text) {
                    eprintln!("{line}");
                }
                let found = match &stats.artifact {
                    Some(a) => {
                        format!("crashing input: {}\n{}", a.display(), reproduce_hint(target, a))
                    }
                    None => format!("no input was saved; full log: {}", log_path.display()),
                };
                eprintln!("xtask: FUZZ FAILURE in {target} ({why})\n{found}");
                failures.push(format!("{target}: {found}"));
            }
        }
    }
    println!(
        "xtask: fuzz smoke of {} targets took {} s",
        targets.len(),
        started.elapsed().as_secs()
    );
    // The plain closing line test runners print, so a log reader counts the targets.
    println!("fuzz: {} passed, {} failed", targets.len() - failures.len(), failures.len());
    if failures.is_empty() {
        Ok(true)
    } else {
        Err(err!("fuzz smoke failed:\n{}", failures.join("\n")))
    }
}

/// Copy `reader` line by line to the terminal and to `log`, so a campaign is watched live
/// and its final statistics can still be read back.
fn tee(reader: impl std::io::Read + Send + 'static, mut log: File) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        let stderr = std::io::stderr();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            // Terminal and log failures must not stop the campaign; the log is a copy.
            let _ = stderr.lock().write_all(&line);
            let _ = log.write_all(&line);
            line.clear();
        }
    })
}

/// Fuzz one target as `c` says, then report coverage.
pub fn campaign(target: &str, c: Campaign) -> Result<bool> {
    let targets = targets()?;
    if !targets.iter().any(|t| t == target) {
        return Err(err!("no fuzz target {target:?}; the targets are: {}", targets.join(", ")));
    }
    build_all(c.build)?;
    let corpus = fuzz_dir().join("corpus-work").join(target);
    fs::create_dir_all(&corpus)?;
    fs::create_dir_all(work_dir())?;
    let log_path = work_dir().join(format!("{target}-campaign.log"));
    let runs = c.runs.map(|n| format!(" or {n} runs")).unwrap_or_default();
    println!(
        "xtask: fuzzing {target} for {} s{runs} ({:?}); corpus {} (kept for the next \
         campaign), log {}",
        c.seconds,
        c.build,
        corpus.display(),
        log_path.display()
    );
    let seconds = c.seconds;
    let mut cmd = run_command(target, &corpus, seconds, c.build)?;
    if let Some(n) = c.runs {
        cmd.arg(format!("-runs={n}"));
    }
    let mut child = cmd.stdin(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let copier = child.stderr.take().map(|e| File::create(&log_path).map(|log| tee(e, log)));
    let copier = copier.transpose()?;
    let status = wait_with_watchdog(&mut child, Duration::from_secs(seconds) + WATCHDOG_GRACE)?;
    if let Some(c) = copier {
        // A panicked copier thread only loses log lines.
        let _ = c.join();
    }
    let stats = parse_stats(&fs::read_to_string(&log_path).unwrap_or_default());
    let ok = matches!(status, Some(s) if s.success());
    if ok {
        println!("xtask: campaign {target} finished without a crash: {}", stats.summary());
    } else {
        let found = match &stats.artifact {
            Some(a) => format!("crashing input: {}\n{}", a.display(), reproduce_hint(target, a)),
            None => format!("no input was saved; full log: {}", log_path.display()),
        };
        eprintln!("xtask: FUZZ FAILURE in {target}: {}\n{found}", stats.summary());
    }
    // Coverage tooling problems are reported, never turned into a campaign failure.
    if let Err(e) = coverage(target, &corpus) {
        eprintln!("xtask: coverage report skipped: {e}");
    }
    Ok(ok)
}

/// The nightly toolchain's LLVM tools folder, if the `llvm-tools` component is installed.
fn llvm_tools() -> Option<(PathBuf, String)> {
    let sysroot = nightly_rustc(&["--print", "sysroot"])?;
    let host = host_triple().ok()?;
    let bin = PathBuf::from(sysroot.trim()).join("lib/rustlib").join(&host).join("bin");
    (bin.join("llvm-cov").is_file() && bin.join("llvm-profdata").is_file()).then_some((bin, host))
}

/// Replay the campaign's corpus under source-based coverage and summarise it per file.
fn coverage(target: &str, corpus: &Path) -> Result<()> {
    let Some((llvm, host)) = llvm_tools() else {
        return Err(err!(
            "the nightly toolchain has no LLVM tools; add them with:\n  \
             rustup component add llvm-tools-preview --toolchain nightly"
        ));
    };
    println!("xtask: measuring coverage of {target}'s corpus (cargo +nightly fuzz coverage)");
    let log_path = work_dir().join(format!("{target}-coverage.log"));
    let log = File::create(&log_path)?;
    let mut cmd = nightly_cargo();
    cmd.args(["fuzz", "coverage", target]).arg(corpus);
    let seeds = fuzz_dir().join("corpus").join(target);
    if seeds.is_dir() {
        cmd.arg(seeds);
    }
    let status = cmd.stdout(log.try_clone()?).stderr(log).stdin(Stdio::null()).status()?;
    if !status.success() {
        return Err(err!("`cargo fuzz coverage {target}` failed; see {}", log_path.display()));
    }
    let out_dir = fuzz_dir().join("coverage").join(target);
    let profdata = out_dir.join("coverage.profdata");
    let binary = fuzz_dir()
        .join("target")
        .join(&host)
        .join("coverage")
        .join(&host)
        .join("release")
        .join(target);
    // Only the project's own code: not the standard library or crates.io dependencies.
    let ignore = "(/rustc/|/\\.cargo/registry/|/lib/rustlib/)";
    let report = Command::new(llvm.join("llvm-cov"))
        .arg("report")
        .arg(&binary)
        .arg(format!("-instr-profile={}", profdata.display()))
        .arg(format!("-ignore-filename-regex={ignore}"))
        .status()?;
    if !report.success() {
        return Err(err!("llvm-cov report failed for {}", binary.display()));
    }
    let html = out_dir.join("html");
    let shown = Command::new(llvm.join("llvm-cov"))
        .arg("show")
        .arg(&binary)
        .arg(format!("-instr-profile={}", profdata.display()))
        .arg(format!("-ignore-filename-regex={ignore}"))
        .args(["-format=html", "-show-line-counts-or-regions"])
        .arg(format!("-output-dir={}", html.display()))
        .status()?;
    if shown.success() {
        println!("xtask: line-by-line coverage: {}", html.join("index.html").display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_stats;

    #[test]
    fn final_statistics_and_artifacts_are_read_back() {
        let log = "\
#2\tINITED cov: 20 ft: 21 corp: 1/1b exec/s: 0 rss: 30Mb
#4096\tpulse  cov: 201 ft: 330 corp: 60/4Kb lim: 43 exec/s: 2048 rss: 31Mb
==12== ERROR: libFuzzer: deadly signal
artifact_prefix='/w/tests/fuzz/artifacts/paging/'; Test unit written to /w/tests/fuzz/artifacts/paging/crash-ab
stat::number_of_executed_units: 4100
stat::average_exec_per_sec:     2050
";
        let s = parse_stats(log);
        assert_eq!(
            (s.runs, s.exec_per_sec, s.cov, s.ft),
            (Some(4100), Some(2050), Some(201), Some(330))
        );
        assert_eq!(s.corpus.as_deref(), Some("60/4Kb"));
        assert_eq!(
            s.artifact.as_deref(),
            Some(std::path::Path::new("/w/tests/fuzz/artifacts/paging/crash-ab"))
        );
    }
}
