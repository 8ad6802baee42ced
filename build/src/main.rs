//! `cargo xtask`: the one way in. Run `cargo xtask --help` for the commands; the command
//! line itself is defined in `cli.rs`.
//!
//! Exit status: 0 pass, 1 a test failed (a run that did not reach its expected outcome,
//! a failing test step, a fuzz crash), 2 a usage or environment error. A command returns
//! `Ok(false)` for the first, having said why, and `Err` for the second.

use std::process::{Command as Process, ExitCode};
use xtask::cli::{self, BenchArgs, Command, RunArgs};
use xtask::emulator::{self, Emulator, RunOptions, Verdict};
use xtask::{cargo, deps, err, image, progress, Result};

fn main() -> ExitCode {
    let cli = match cli::parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        // Help and usage errors print themselves and exit 0 or 2.
        Err(e) => e.exit(),
    };
    progress::enable();
    let result = match cli.command {
        Command::Build { image } => build(&image),
        Command::Run(args) => run(args),
        Command::Test => test(),
        Command::Bench(BenchArgs { exit_trace: Some(exit), .. }) => {
            xtask::exit_trace::command(exit)
        }
        Command::Bench(args) if args.linux => xtask::linux_bench::run(),
        Command::Bench(args) if args.cpus > 1 => bench_cpus(args.cpus),
        Command::Bench(_) => bench().and_then(|ok| Ok(ok && xtask::linux_bench::run()?)),
        Command::Fuzz(args) => xtask::fuzz::command(args),
        Command::Plant { time, hold_out } => xtask::plant::command(time.as_secs().max(1), hold_out),
        Command::Mutants { shard, matching, iterate } => {
            xtask::mutants::command(&xtask::mutants::Selection { shard, matching, iterate })
        }
        Command::Trace { command } => xtask::trace::command(command),
        Command::Images => images(),
        Command::Linux => linux(),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn build(name: &str) -> Result<bool> {
    let iso = image::build(image::find(name)?)?;
    println!("xtask: built {}", iso.display());
    Ok(true)
}

fn images() -> Result<bool> {
    for i in image::IMAGES {
        let info = i.info()?;
        println!("{}\n    {}\n    expects: {}", i.name, info.about, info.expect);
    }
    Ok(true)
}

fn linux() -> Result<bool> {
    let guest = xtask::linux::prepare()?;
    let bytes = std::fs::read(&guest.kernel)?;
    let kernel = vmm_server::linux_boot::LinuxImage::parse(&bytes)
        .map_err(|e| err!("{}: {e}", guest.kernel.display()))?;
    let initramfs = std::fs::metadata(&guest.initramfs)?.len();
    println!(
        "xtask: {}: bzImage, boot protocol {}.{:02}, {} bytes, needs {} MiB from {:#x}",
        guest.kernel.display(),
        kernel.version >> 8,
        kernel.version & 0xff,
        bytes.len(),
        u64::from(kernel.init_size).div_ceil(1 << 20),
        kernel.pref_address
    );
    println!("xtask: {}: newc initramfs, {initramfs} bytes", guest.initramfs.display());
    Ok(true)
}

fn run(args: RunArgs) -> Result<bool> {
    let image = image::find(&args.image)?;
    let expect = image.info()?.expect;
    let mut opts = RunOptions {
        stream: true,
        timeout: args.timeout,
        gdb: args.gdb,
        keep_runs: Some(args.keep),
        memory_mib: image.memory_mib(),
        firmware: args.firmware,
        cpus: args.cpus,
        ..RunOptions::default()
    };
    if image.linux && args.emulator == Emulator::Bochs {
        // A Linux guest's shell: what is typed here reaches its serial console.
        opts.serial_input = xtask::serial_input::SerialInput::Stdin;
    }
    if let Some(cpu) = args.cpu {
        opts.bochs_cpu = cpu;
    }
    if opts.gdb {
        opts.timeout = std::time::Duration::from_secs(24 * 3600);
    }
    let iso = image::build(image)?;
    if opts.gdb {
        let kernel = xtask::target_dir().join("kernel").join(cargo::TARGET).join("release/kernel");
        println!(
            "xtask: QEMU waits for a debugger on localhost:1234; attach with\n  gdb {} -ex 'target remote :1234'",
            kernel.display()
        );
    }
    let outcome = emulator::run(args.emulator, &iso, &opts)?;
    match expect.judge(&outcome) {
        Ok(words) => {
            println!("xtask: PASS ({words}); logs in {}", outcome.dir.display());
            Ok(true)
        }
        Err(why) => {
            eprintln!("xtask: FAIL: {why}");
            let errors = outcome.emulator_errors();
            if !errors.is_empty() {
                eprintln!("xtask: {} said:", args.emulator.name());
                for line in errors.iter().take(20) {
                    eprintln!("  {line}");
                }
                if errors.len() > 20 {
                    eprintln!("  ... and {} more lines", errors.len() - 20);
                }
            }
            eprintln!("xtask: expected: {expect}; logs in {}", outcome.dir.display());
            Ok(false)
        }
    }
}

fn cargo_cmd() -> Process {
    let mut c = Process::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(xtask::root());
    c
}

/// Run one step of `test` with its output on the terminal: `false` when it fails.
fn step(name: &str, cmd: &mut Process) -> Result<bool> {
    println!("xtask: {name}");
    let program = cmd.get_program().to_string_lossy().into_owned();
    let status = cmd.status().map_err(|e| err!("cannot start {program}: {e}"))?;
    if !status.success() {
        eprintln!("xtask: FAIL: {name} ({status})");
    }
    Ok(status.success())
}

fn test() -> Result<bool> {
    deps::ensure(deps::Need::ALL)?;
    let mut kernel = cargo_cmd();
    kernel
        .args(["clippy", "--release", "--target", cargo::TARGET, "-p", "kernel", "--target-dir"])
        .arg(xtask::target_dir().join("kernel"))
        .env("CARGO_ENCODED_RUSTFLAGS", cargo::KERNEL_RUSTFLAGS.join("\x1f"))
        .args(["--", "-D", "warnings"]);
    // The exit tracer is built only on request: lint it here so that it keeps building.
    let mut traced = cargo_cmd();
    traced
        .args(["clippy", "--release", "--target", cargo::TARGET, "-p", "kernel"])
        .args(["--features", "exit-trace", "--target-dir"])
        .arg(xtask::target_dir().join("kernel-exit-trace"))
        .env("CARGO_ENCODED_RUSTFLAGS", cargo::KERNEL_RUSTFLAGS.join("\x1f"))
        .args(["--", "-D", "warnings"]);
    let mut user = cargo_cmd();
    user.args(["clippy", "--release", "--target", cargo::TARGET, "--target-dir"])
        .arg(xtask::target_dir().join("user"))
        .env("CARGO_ENCODED_RUSTFLAGS", cargo::USER_RUSTFLAGS.join("\x1f"));
    for p in xtask::programs::packages()? {
        user.args(["-p", p]);
    }
    user.arg("--features").arg(cargo::USER_FEATURES.join(","));
    user.args(["--", "-D", "warnings"]);
    // The production VMM: the same code without the test modes.
    let mut production = cargo_cmd();
    production
        .args(["clippy", "--release", "--target", cargo::TARGET, "-p", "vmm-server"])
        .arg("--target-dir")
        .arg(xtask::target_dir().join("user-production"))
        .env("CARGO_ENCODED_RUSTFLAGS", cargo::USER_RUSTFLAGS.join("\x1f"))
        .args(["--", "-D", "warnings"]);
    let mut fmt = cargo_cmd();
    fmt.args(["fmt", "--all", "--check"]);
    let mut host = cargo_cmd();
    host.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);
    let mut tests = cargo_cmd();
    tests.args(["test", "--workspace"]);
    let steps: [(&str, &mut Process); 7] = [
        ("cargo fmt --check", &mut fmt),
        ("clippy (host crates)", &mut host),
        ("clippy (bare-metal kernel)", &mut kernel),
        ("clippy (bare-metal kernel with the exit tracer)", &mut traced),
        ("clippy (bare-metal user programs)", &mut user),
        ("clippy (the production VMM, without test modes)", &mut production),
        ("host unit tests and emulator integration tests", &mut tests),
    ];
    for (name, cmd) in steps {
        if !step(name, cmd)? {
            return Ok(false);
        }
    }
    // Last, as it needs the nightly toolchain and cargo-fuzz (checked and installed there).
    xtask::fuzz::command(cli::FuzzArgs {
        command: None,
        long: None,
        time: None,
        runs: None,
        sanitizer: None,
        no_trace_compares: false,
    })
}

fn bench() -> Result<bool> {
    let iso = image::build(image::find("default")?)?;
    let version = xtask::bochs::about().version.as_deref().unwrap_or("of unknown version");
    // The reference CPU for every figure, then the older one for the VM-exit figures.
    for (cpu, all) in [("corei7_skylake_x", true), ("corei5_lynnfield_750", false)] {
        let opts = RunOptions { bochs_cpu: cpu.into(), ..RunOptions::default() };
        let outcome = emulator::run(Emulator::Bochs, &iso, &opts)?;
        if outcome.verdict != Verdict::Pass {
            eprintln!("xtask: FAIL: the benchmark run failed: {}", outcome.report());
            return Ok(false);
        }
        println!(
            "benchmarks under Bochs {version} ({cpu}, one CPU), in TSC ticks = emulated instructions:"
        );
        if !print_bench(&outcome.serial, all) {
            eprintln!("xtask: FAIL: the run printed no benchmark lines");
            return Ok(false);
        }
    }
    Ok(true)
}

/// The benchmark figures on a machine with `cpus` CPUs: the same-CPU figures (threads on
/// the boot CPU, with the other CPUs idle) and the cross-CPU ones (a server and a waiter
/// on CPU 1).
fn bench_cpus(cpus: u8) -> Result<bool> {
    let iso = image::build(image::find("default")?)?;
    let version = xtask::bochs::about().version.as_deref().unwrap_or("of unknown version");
    let cpu = xtask::cli::DEFAULT_BOCHS_CPU;
    let opts = RunOptions { bochs_cpu: cpu.into(), cpus, ..RunOptions::default() };
    let outcome = emulator::run(Emulator::Bochs, &iso, &opts)?;
    let online = format!("smp: {cpus} CPUs online");
    if outcome.verdict != Verdict::Pass || !outcome.serial.contains(&online) {
        eprintln!(
            "xtask: FAIL: the benchmark run failed or lacks {online:?}: {}",
            outcome.report()
        );
        return Ok(false);
    }
    println!("benchmarks under Bochs {version} ({cpu}, {cpus} CPUs), in TSC ticks = emulated instructions:");
    if !print_bench(&outcome.serial, true) {
        eprintln!("xtask: FAIL: the run printed no benchmark lines");
        return Ok(false);
    }
    for figure in ["ipc cross-cpu round trip (", "remote wake-up ("] {
        if !outcome.serial.contains(&format!("bench: {figure}")) {
            eprintln!("xtask: FAIL: the run printed no {figure:?} figure");
            return Ok(false);
        }
    }
    Ok(true)
}

/// Print the benchmark lines of a run's log (`all`: the kernel's too, else only the VM
/// exits'); whether there were any.
fn print_bench(serial: &str, all: bool) -> bool {
    let mut any = false;
    // The benchmark guest runs twice, one VM after the other: with the UART in its VMM,
    // then out of process, where only the port-I/O figure (to the UART) differs.
    let mut seen = std::collections::BTreeSet::new();
    for line in serial.lines().map(str::trim_end) {
        if let Some(rest) = line.strip_prefix("bench: ").filter(|_| all) {
            println!("  {rest}");
            any = true;
        } else if let Some(rest) = line.strip_prefix("guest_bench: ") {
            // The guest prints hex (it has no decimal formatting); show decimal.
            let (name, hex) = rest.rsplit_once(' ').unwrap_or((rest, ""));
            let name = if seen.insert(name) {
                name.to_string()
            } else if name == "port-io exit round trip" {
                format!("{name}, out-of-process uart")
            } else {
                continue;
            };
            match u64::from_str_radix(hex.trim_start_matches("0x"), 16) {
                Ok(ticks) => {
                    println!("  {name} (guest, kernel, ring-3 VMM and back): {ticks} ticks")
                }
                Err(_) => println!("  {rest}"),
            }
            any = true;
        }
    }
    // The benchmark VM with the UART in its VMM: its VMM's split.
    let legs = serial
        .lines()
        .filter(|l| l.starts_with(BENCH_VMM))
        .find_map(|l| l.trim_end().split_once(LEGS).map(|(_, l)| l));
    if let Some(legs) = legs {
        for (name, figures) in legs.split(", ").filter_map(|kind| kind.split_once(' ')) {
            let f: Vec<&str> = figures.split(' ').collect();
            if let [exit, vmm, entry] = f[..] {
                println!(
                    "  {name} exit round trip, split: kernel exit leg {exit}, VMM {vmm}, kernel entry leg {entry} (the rest: the CPU's VM exit and entry, and the guest's loop)"
                );
            }
        }
    }
    any
}

/// The log lines of the benchmark VM's VMM (the one with its UART inside).
const BENCH_VMM: &str = "vmm vm_guest_bench:";

/// How a VMM reports where its round trips went (after `vmm NAME`).
const LEGS: &str = ": round-trip legs in ticks (kernel exit, VMM, kernel entry): ";
