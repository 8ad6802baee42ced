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
//!
//! libFuzzer's own output (some 1,600 lines a minute) goes to a log file under
//! `target/fuzz/`; the terminal gets one progress line summarising it. A crashing input
//! is saved with a `.build` file beside it naming the build options of the run that found
//! it, so `cargo xtask fuzz repro TARGET FILE` rebuilds the same way.

use crate::cli::{show_duration, FuzzArgs, FuzzCommand};
use crate::progress::Status;
use crate::{err, Result};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
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

/// How the targets are instrumented beyond coverage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Sanitizer {
    /// AddressSanitizer, cargo-fuzz's default: catches memory errors in `unsafe` code.
    #[value(help = "AddressSanitizer (cargo-fuzz's default)")]
    Address,
    /// None: the code under test is safe Rust (bounds and overflow checks stay on), and
    /// without ASan's bookkeeping the targets that walk the whole kernel state after every
    /// step run several times faster, which is what a long campaign needs.
    #[value(help = "none: several times faster, for code under test that forbids unsafe")]
    None,
}

impl Sanitizer {
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

    /// The options of `cargo xtask fuzz` that select it (empty for the default).
    pub fn options(self) -> String {
        let mut o = String::new();
        if self.sanitizer != Sanitizer::Address {
            o.push_str(" --sanitizer ");
            o.push_str(self.sanitizer.name());
        }
        if !self.trace_compares {
            o.push_str(" --no-trace-compares");
        }
        o
    }

    /// The file saved beside a crashing input: the build that found it.
    fn record(self) -> String {
        format!("sanitizer = {}\ntrace_compares = {}\n", self.sanitizer.name(), self.trace_compares)
    }

    /// Read back [`Build::record`]; `None` if it is not one.
    fn from_record(text: &str) -> Option<Self> {
        let mut b = Self::DEFAULT;
        for line in text.lines() {
            match line.split_once(" = ")? {
                ("sanitizer", "address") => b.sanitizer = Sanitizer::Address,
                ("sanitizer", "none") => b.sanitizer = Sanitizer::None,
                ("trace_compares", v) => b.trace_compares = v.parse().ok()?,
                _ => return None,
            }
        }
        Some(b)
    }

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

impl std::fmt::Display for Build {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sanitizer = match self.sanitizer {
            Sanitizer::Address => "AddressSanitizer",
            Sanitizer::None => "no sanitizer",
        };
        let compares =
            if self.trace_compares { "comparisons traced" } else { "no comparison tracing" };
        write!(f, "{sanitizer}, {compares}")
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
pub(crate) fn work_dir() -> PathBuf {
    crate::target_dir().join("fuzz")
}

/// `cargo xtask fuzz`, as the command line gave it.
pub fn command(args: FuzzArgs) -> Result<bool> {
    ensure_tools()?;
    if let Some(FuzzCommand::Repro { target, file, sanitizer, no_trace_compares }) = args.command {
        let found = Build::from_record(&fs::read_to_string(record_path(&file)).unwrap_or_default());
        let mut build = found.unwrap_or(Build::DEFAULT);
        if let Some(s) = sanitizer {
            build.sanitizer = s;
        }
        if no_trace_compares {
            build.trace_compares = false;
        }
        return repro(&target, &file, build);
    }
    match args.long {
        Some(target) => campaign(
            &target,
            Campaign {
                seconds: args.time.map_or(CAMPAIGN_SECONDS, |t| t.as_secs().max(1)),
                runs: args.runs,
                build: Build {
                    sanitizer: args.sanitizer.unwrap_or(Sanitizer::Address),
                    trace_compares: !args.no_trace_compares,
                },
            },
        ),
        None => smoke(args.time.map_or(SMOKE_SECONDS, |t| t.as_secs().max(1))),
    }
}

/// A `cargo +nightly` command run in the fuzz crate. The plain `cargo` on PATH is used
/// (not `$CARGO`, which names the stable toolchain's binary and would ignore `+nightly`),
/// and variables the outer stable cargo may have set are dropped so they cannot leak
/// stable settings or another target folder into the nightly build.
pub(crate) fn nightly_cargo() -> Command {
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
    let mut cmd = nightly_cargo();
    cmd.args(["fuzz", "build", "--debug-assertions", "--sanitizer", b.sanitizer.name()]);
    if !b.trace_compares {
        cmd.arg("--no-trace-compares");
    }
    cmd.arg("--target-dir").arg(b.target_dir());
    Status::start(format!("building the fuzz targets ({b})"))
        .run(&mut cmd, "fuzz-build")
        .map_err(|e| err!("building the fuzz targets failed: {e}"))
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
pub(crate) fn host_triple() -> Result<String> {
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

/// The last libFuzzer progress line in the tail of a log, summarised: `#N` executions,
/// coverage, features, corpus and speed.
fn progress_summary(tail: &str) -> Option<String> {
    let line = tail.lines().rev().find(|l| l.starts_with('#') && l.contains(" cov: "))?;
    let execs = line.trim_start_matches('#').split_whitespace().next()?;
    let field = |key: &str| line.split(key).nth(1)?.split_whitespace().next();
    Some(format!(
        "{execs} execs, cov {}, ft {}, corpus {}, {} exec/s",
        field(" cov: ").unwrap_or("?"),
        field(" ft: ").unwrap_or("?"),
        field(" corp: ").unwrap_or("?"),
        field(" exec/s: ").unwrap_or("?"),
    ))
}

/// The last few kilobytes of a file (a campaign's log grows by megabytes an hour).
fn tail(path: &Path) -> String {
    let Ok(mut f) = File::open(path) else { return String::new() };
    let len = f.metadata().map_or(0, |m| m.len());
    if f.seek(SeekFrom::Start(len.saturating_sub(8192))).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    // A short read only shortens the progress line.
    let _ = f.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Wait for `child`, killing it if it outlives `limit`; the progress line shows the
/// latest statistics from its log.
fn wait_with_watchdog(
    child: &mut Child,
    limit: Duration,
    log: &Path,
    status: &Status,
) -> Result<Option<ExitStatus>> {
    let start = Instant::now();
    let mut polled = Instant::now();
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
        if polled.elapsed() >= Duration::from_secs(1) {
            polled = Instant::now();
            if let Some(summary) = progress_summary(&tail(log)) {
                status.detail(&summary);
            }
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

/// Where the build options of the run that saved `artifact` are kept.
fn record_path(artifact: &Path) -> PathBuf {
    let mut name = artifact.file_name().unwrap_or_default().to_os_string();
    name.push(".build");
    artifact.with_file_name(name)
}

/// Save the build beside a crashing input and say how to reproduce it with that build.
fn reproduce_hint(target: &str, artifact: &Path, build: Build) -> String {
    // Without the record, `repro` falls back to the default build and the hint below
    // still names the options.
    let _ = fs::write(record_path(artifact), build.record());
    let relative = artifact.strip_prefix(fuzz_dir()).unwrap_or(artifact);
    let mut cargo_fuzz = format!("--sanitizer {}", build.sanitizer.name());
    if !build.trace_compares {
        cargo_fuzz.push_str(" --no-trace-compares");
    }
    format!(
        "reproduce with:\n  cargo xtask fuzz repro {target} {}{}\nor with cargo-fuzz:\n  \
         (cd tests/fuzz && cargo +nightly fuzz run --debug-assertions {cargo_fuzz} {target} {})",
        artifact.display(),
        build.options(),
        relative.display()
    )
}

/// What a failed run found, for the closing lines.
fn found(target: &str, stats: &Stats, log_path: &Path, build: Build) -> String {
    match &stats.artifact {
        Some(a) => format!("crashing input: {}\n{}", a.display(), reproduce_hint(target, a, build)),
        None => format!("no input was saved; full log: {}", log_path.display()),
    }
}

/// Run `target`'s binary, built as `build`, with `corpus` for new inputs, its output in
/// `log_path`, for `seconds` plus the watchdog's grace; `extra` are more libFuzzer flags.
fn run_logged(
    target: &str,
    corpus: &Path,
    seconds: u64,
    build: Build,
    extra: &[String],
    log_path: &Path,
    status: &Status,
) -> Result<Option<ExitStatus>> {
    let log = File::create(log_path)?;
    let mut child = run_command(target, corpus, seconds, build)?
        .args(extra)
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()?;
    wait_with_watchdog(&mut child, Duration::from_secs(seconds) + WATCHDOG_GRACE, log_path, status)
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
        if !crate::progress::enabled() {
            println!("xtask: fuzz smoke {target} ({seconds} s)");
        }
        let status = Status::start(format!("fuzz smoke {target} ({seconds} s)"));
        let exit = run_logged(target, &scratch, seconds, Build::DEFAULT, &[], &log_path, &status)?;
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let stats = parse_stats(&text);
        match exit {
            Some(s) if s.success() => {
                let words = format!("ok: {}", stats.summary());
                if crate::progress::enabled() {
                    status.finish(&words);
                } else {
                    println!("xtask:   {words}");
                }
            }
            other => {
                status.finish("CRASH");
                let why = match other {
                    None => "killed by the watchdog".to_string(),
                    Some(s) => s.to_string(),
                };
                eprintln!("---- from {} ----", log_path.display());
                for line in failure_excerpt(&text) {
                    eprintln!("{line}");
                }
                let found = found(target, &stats, &log_path, Build::DEFAULT);
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
    if !failures.is_empty() {
        eprintln!("xtask: FAIL: the fuzz smoke found crashes:\n{}", failures.join("\n"));
    }
    Ok(failures.is_empty())
}

/// Check that `target` is one of the fuzz crate's.
fn check_target(target: &str) -> Result<()> {
    let targets = targets()?;
    if targets.iter().any(|t| t == target) {
        Ok(())
    } else {
        Err(err!("no fuzz target {target:?}; the targets are: {}", targets.join(", ")))
    }
}

/// Fuzz one target as `c` says, then report coverage.
pub fn campaign(target: &str, c: Campaign) -> Result<bool> {
    check_target(target)?;
    build_all(c.build)?;
    let corpus = fuzz_dir().join("corpus-work").join(target);
    fs::create_dir_all(&corpus)?;
    fs::create_dir_all(work_dir())?;
    let log_path = work_dir().join(format!("{target}-campaign.log"));
    let runs = c.runs.map(|n| format!(" or {n} runs")).unwrap_or_default();
    println!(
        "xtask: fuzzing {target} for {}{runs} ({}); corpus {} (kept for the next \
         campaign), libFuzzer's output in {}",
        show_duration(Duration::from_secs(c.seconds)),
        c.build,
        corpus.display(),
        log_path.display()
    );
    let extra: Vec<String> = c.runs.map(|n| format!("-runs={n}")).into_iter().collect();
    let status = Status::start_with(format!("fuzzing {target}"), Some(Duration::from_secs(10)));
    let exit = run_logged(target, &corpus, c.seconds, c.build, &extra, &log_path, &status)?;
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let stats = parse_stats(&text);
    let ok = matches!(exit, Some(s) if s.success());
    if ok {
        status.finish("done");
        println!("xtask: campaign {target} finished without a crash: {}", stats.summary());
    } else {
        status.finish("CRASH");
        eprintln!("---- from {} ----", log_path.display());
        for line in failure_excerpt(&text) {
            eprintln!("{line}");
        }
        let found = found(target, &stats, &log_path, c.build);
        eprintln!("xtask: FUZZ FAILURE in {target}: {}\n{found}", stats.summary());
    }
    // Coverage tooling problems are reported, never turned into a campaign failure.
    if let Err(e) = coverage(target, &corpus) {
        eprintln!("xtask: coverage report skipped: {e}");
    }
    Ok(ok)
}

/// Run one saved input against `target` built as `build`: a pass if it no longer fails.
pub fn repro(target: &str, file: &Path, build: Build) -> Result<bool> {
    if !file.is_file() {
        return Err(err!("{}: no such input file", file.display()));
    }
    check_target(target)?;
    build_all(build)?;
    let file = fs::canonicalize(file)?;
    println!("xtask: running {} against {target} ({build})", file.display());
    let out = Command::new(binary(target, build)?)
        .current_dir(fuzz_dir())
        .arg(&file)
        .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
        .env(
            "ASAN_OPTIONS",
            std::env::var("ASAN_OPTIONS").unwrap_or("detect_odr_violation=0".into()),
        )
        .stdin(Stdio::null())
        .output()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        println!("xtask: PASS: the input runs without a failure ({build})");
        return Ok(true);
    }
    for line in failure_excerpt(&text) {
        eprintln!("{line}");
    }
    eprintln!("xtask: FAIL: the input still fails ({}, {build})", out.status);
    Ok(false)
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
    use super::{parse_stats, progress_summary, Build, Sanitizer};

    #[test]
    fn a_crash_is_reproduced_with_the_build_that_found_it() {
        let b = Build { sanitizer: Sanitizer::None, trace_compares: false };
        assert_eq!(Build::from_record(&b.record()), Some(b));
        assert_eq!(b.options(), " --sanitizer none --no-trace-compares");
        assert_eq!(Build::DEFAULT.options(), "");
        assert_eq!(b.to_string(), "no sanitizer, no comparison tracing");
        let dir = std::env::temp_dir().join(format!("xtask-hint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let crash = dir.join("crash-1");
        let hint = super::reproduce_hint("syscalls", &crash, b);
        assert!(hint.contains("fuzz repro syscalls"), "{hint}");
        assert!(hint.contains("crash-1 --sanitizer none --no-trace-compares"), "{hint}");
        assert!(hint.contains("fuzz run --debug-assertions --sanitizer none"), "{hint}");
        let saved = std::fs::read_to_string(super::record_path(&crash)).unwrap();
        assert_eq!(Build::from_record(&saved), Some(b));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn libfuzzer_progress_is_summarised_in_one_line() {
        let tail = "#4096\tpulse  cov: 201 ft: 330 corp: 60/4Kb lim: 43 exec/s: 2048 rss: 31Mb\n\
                    #8192\tNEW    cov: 205 ft: 341 corp: 61/4Kb lim: 43 exec/s: 2730 rss: 31Mb L: 4/4\n";
        assert_eq!(
            progress_summary(tail).as_deref(),
            Some("8192 execs, cov 205, ft 341, corpus 61/4Kb, 2730 exec/s")
        );
        assert_eq!(progress_summary("INFO: Seed: 1\n"), None);
    }

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
