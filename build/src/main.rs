//! `cargo xtask`: the one way in. Run `cargo xtask help` for the commands.

use std::process::{Command, ExitCode};
use std::time::Duration;
use xtask::emulator::{self, Emulator, RunOptions, Verdict};
use xtask::{cargo, err, image, Result};

const HELP: &str = "\
cargo xtask <command> [options]

commands:
  build [--image NAME]          build the kernel, the user programs and the image's ISO
  run   [--emulator bochs|qemu] [--image NAME] [--cpu MODEL] [--timeout SECS] [--gdb]
                                boot an image headless and show its serial console
                                (default: bochs, image default); exit 0 only on a pass
  test                          everything: formatting, lints, host unit tests, the
                                integration tests that boot images under QEMU and Bochs,
                                and the fuzz smoke
  bench                         boot the default image under Bochs and print the
                                benchmark lines (Bochs TSC ticks = emulated instructions)
  fuzz  [--time SECS]           smoke every libFuzzer target in tests/fuzz (SECS each,
                                default 10; needs the nightly toolchain, installs cargo-fuzz)
  fuzz  --long TARGET [--time SECS]
                                fuzz one target for SECS (default a day), then report
                                coverage (with the nightly llvm-tools component)
  trace record [OUT] | extract LOG OUT | replay FILE | seeds FILE [--every N]
                                exit traces: record guest32's under Bochs, turn a serial
                                log into a trace file, replay one against the VMM's
                                dispatcher, cut one into vmm_dispatch fuzz seeds
  images                        list the images
";

struct Args(Vec<String>);

impl Args {
    fn flag(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|a| a != name);
        self.0.len() != before
    }

    fn value(&mut self, name: &str) -> Result<Option<String>> {
        let Some(i) = self.0.iter().position(|a| a == name) else { return Ok(None) };
        if i + 1 >= self.0.len() {
            return Err(err!("{name} needs a value"));
        }
        let v = self.0.remove(i + 1);
        self.0.remove(i);
        Ok(Some(v))
    }

    fn finish(self) -> Result<()> {
        match self.0.first() {
            Some(extra) => Err(err!("unexpected argument {extra:?}\n\n{HELP}")),
            None => Ok(()),
        }
    }
}

fn main() -> ExitCode {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    let command = if argv.is_empty() { "help".to_string() } else { argv.remove(0) };
    let result = match command.as_str() {
        "build" => build(Args(argv)),
        "run" => run(Args(argv)),
        "test" => test(Args(argv)),
        "bench" => bench(Args(argv)),
        "fuzz" => xtask::fuzz::command(argv),
        "trace" => xtask::trace::command(argv),
        "images" => {
            for i in image::IMAGES {
                println!("{:<26} {}", i.name, i.about);
            }
            Ok(true)
        }
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(true)
        }
        other => Err(err!("unknown command {other:?}\n\n{HELP}")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn build(mut args: Args) -> Result<bool> {
    let name = args.value("--image")?.unwrap_or_else(|| "default".into());
    args.finish()?;
    let iso = image::build(image::find(&name)?)?;
    println!("xtask: built {}", iso.display());
    Ok(true)
}

fn run(mut args: Args) -> Result<bool> {
    let emulator = Emulator::parse(&args.value("--emulator")?.unwrap_or_else(|| "bochs".into()))?;
    let name = args.value("--image")?.unwrap_or_else(|| "default".into());
    let mut opts = RunOptions { stream: true, ..RunOptions::default() };
    if let Some(cpu) = args.value("--cpu")? {
        opts.bochs_cpu = cpu;
    }
    if let Some(t) = args.value("--timeout")? {
        opts.timeout = Duration::from_secs(t.parse().map_err(|_| err!("--timeout takes seconds"))?);
    }
    opts.gdb = args.flag("--gdb");
    args.finish()?;
    if opts.gdb {
        if emulator != Emulator::Qemu {
            return Err(err!("--gdb needs --emulator qemu (Bochs's debugger is not a gdb stub)"));
        }
        opts.timeout = Duration::from_secs(24 * 3600);
    }
    let iso = image::build(image::find(&name)?)?;
    if opts.gdb {
        let kernel = xtask::target_dir().join("kernel").join(cargo::TARGET).join("release/kernel");
        println!(
            "xtask: QEMU waits for a debugger on localhost:1234; attach with\n  gdb {} -ex 'target remote :1234'",
            kernel.display()
        );
    }
    println!("xtask: booting {name} under {} (timeout {:?})", emulator.name(), opts.timeout);
    let outcome = emulator::run(emulator, &iso, &opts)?;
    println!();
    match &outcome.verdict {
        Verdict::Pass => println!("xtask: PASS ({})", outcome.dir.display()),
        other => println!("xtask: FAIL: {other:?}; logs in {}", outcome.dir.display()),
    }
    Ok(outcome.verdict == Verdict::Pass)
}

fn cargo_cmd() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(xtask::root());
    c
}

fn step(name: &str, cmd: &mut Command) -> Result<()> {
    println!("xtask: {name}");
    let status = cmd.status()?;
    if status.success() {
        Ok(())
    } else {
        Err(err!("{name} failed"))
    }
}

fn test(args: Args) -> Result<bool> {
    args.finish()?;
    xtask::deps::ensure()?;
    step("cargo fmt --check", cargo_cmd().args(["fmt", "--all", "--check"]))?;
    step(
        "clippy (host crates)",
        cargo_cmd().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
    )?;
    step(
        "clippy (bare-metal kernel)",
        cargo_cmd()
            .args([
                "clippy",
                "--release",
                "--target",
                cargo::TARGET,
                "-p",
                "kernel",
                "--target-dir",
            ])
            .arg(xtask::target_dir().join("kernel"))
            .env("CARGO_ENCODED_RUSTFLAGS", cargo::KERNEL_RUSTFLAGS.join("\x1f"))
            .args(["--", "-D", "warnings"]),
    )?;
    let mut user = cargo_cmd();
    user.args(["clippy", "--release", "--target", cargo::TARGET, "--target-dir"])
        .arg(xtask::target_dir().join("user"))
        .env("CARGO_ENCODED_RUSTFLAGS", cargo::USER_RUSTFLAGS.join("\x1f"));
    for p in cargo::USER_PROGRAMS {
        user.args(["-p", p]);
    }
    step("clippy (bare-metal user programs)", user.args(["--", "-D", "warnings"]))?;
    step(
        "host unit tests and emulator integration tests",
        cargo_cmd().args(["test", "--workspace"]),
    )?;
    // Last, as it needs the nightly toolchain and cargo-fuzz (checked and installed there).
    xtask::fuzz::command(Vec::new())
}

fn bench(args: Args) -> Result<bool> {
    args.finish()?;
    let iso = image::build(image::find("default")?)?;
    let outcome = emulator::run(Emulator::Bochs, &iso, &RunOptions::default())?;
    if outcome.verdict != Verdict::Pass {
        return Err(err!("the benchmark run failed:\n{}", outcome.report()));
    }
    println!(
        "benchmarks under Bochs 2.7 (corei7_skylake_x), in TSC ticks = emulated instructions:"
    );
    let mut any = false;
    for line in outcome.serial.lines().map(str::trim_end) {
        if let Some(rest) = line.strip_prefix("bench: ") {
            println!("  {rest}");
            any = true;
        } else if let Some(rest) = line.strip_prefix("guest_bench: ") {
            // The guest prints hex (it has no decimal formatting); show decimal.
            let (name, hex) = rest.rsplit_once(' ').unwrap_or((rest, ""));
            match u64::from_str_radix(hex.trim_start_matches("0x"), 16) {
                Ok(ticks) => {
                    println!("  {name} (guest, kernel, ring-3 VMM and back): {ticks} ticks")
                }
                Err(_) => println!("  {rest}"),
            }
            any = true;
        }
    }
    if !any {
        return Err(err!("the run printed no benchmark lines"));
    }
    Ok(true)
}
