//! The command line of `cargo xtask`, parsed by clap. It lives in the library, not in
//! `main.rs`, so host tests can check every help text and every refusal of a bad input
//! (message and exit code) without spawning the tool.
//!
//! Checks that need more than one argument (`--cpu` only with Bochs, `--gdb` only with
//! QEMU) run in [`parse_from`] and come back as clap errors, so every usage error looks
//! and exits alike (status 2).

use crate::emulator::{Emulator, Firmware};
use crate::fuzz::Sanitizer;
use clap::builder::{PossibleValuesParser, RangedU64ValueParser};
use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// The exit statuses, as the help and the README give them.
pub const EXIT_CODES: &str = "\
Exit status:
  0  pass (for `run`: the image reached the outcome its manifest expects)
  1  a test failed: a run that did not reach its expected outcome, a failing test step,
     a fuzz crash
  2  usage or environment error: a bad argument, a missing tool that cannot be
     installed, a build that failed";

/// The Bochs CPU models this tool knows (those of Bochs 2.7's `bochs -help cpu`). A run
/// also asks the installed Bochs, which may know fewer.
pub const BOCHS_CPUS: &[&str] = &[
    "bx_generic",
    "pentium",
    "pentium_mmx",
    "amd_k6_2_chomper",
    "p2_klamath",
    "p3_katmai",
    "p4_willamette",
    "core_duo_t2400_yonah",
    "atom_n270",
    "p4_prescott_celeron_336",
    "athlon64_clawhammer",
    "athlon64_venice",
    "turion64_tyler",
    "phenom_8650_toliman",
    "core2_penryn_t9600",
    "corei5_lynnfield_750",
    "corei5_arrandale_m520",
    "corei7_sandy_bridge_2600k",
    "zambezi",
    "trinity_apu",
    "ryzen",
    "corei7_ivy_bridge_3770k",
    "corei7_haswell_4770",
    "broadwell_ult",
    "corei7_skylake_x",
    "corei3_cnl",
    "corei7_icelake_u",
    "tigerlake",
];

/// The Bochs CPU model a run uses unless told otherwise: VT-x with EPT, VPID and
/// unrestricted guest.
pub const DEFAULT_BOCHS_CPU: &str = "corei7_skylake_x";

/// Run folders kept per image under `target/runs/` unless `--keep` says otherwise.
pub const DEFAULT_KEEP: usize = 10;

/// `cargo xtask`: build, boot and test the microkernel.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, boot and test the microkernel",
    after_help = EXIT_CODES,
    disable_version_flag = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the kernel, the user programs and an image's ISO
    #[command(after_help = EXIT_CODES)]
    Build {
        /// The image (see `cargo xtask images`)
        #[arg(long, default_value = "default", value_parser = image_names())]
        image: String,
    },
    /// Boot an image headless, show its serial console, and compare the outcome with the
    /// one its manifest expects
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Everything CI runs: formatting, lints, host unit tests, the integration tests that
    /// boot images under QEMU and Bochs, and the fuzz smoke
    #[command(after_help = EXIT_CODES)]
    Test,
    /// Boot the default image under Bochs and print the benchmark figures (Bochs TSC ticks
    /// = emulated instructions), then Linux's boot to /init under the VMM and bare
    #[command(after_help = EXIT_CODES)]
    Bench(BenchArgs),
    /// Fuzz the libFuzzer targets in tests/fuzz: a smoke of every target, a long campaign
    /// on one (--long), or a reproduction of a saved input (repro)
    #[command(after_help = EXIT_CODES)]
    Fuzz(FuzzArgs),
    /// Plant each known bug in the kernel in turn (Send without the write right, a
    /// transfer without the grant right, a fastpath that ignores a ready higher-priority
    /// thread, a badge changed by re-minting) and show the syscalls fuzz target finds it
    /// from the checked-in seeds
    #[command(after_help = EXIT_CODES)]
    Plant {
        /// Fuzz each bug at most this long: a number of seconds, or with a unit
        #[arg(long, value_name = "TIME", default_value = "60s", value_parser = parse_duration)]
        time: Duration,
        /// Leave out the seeds that find a bug on their own, so it must be found by
        /// mutating the others
        #[arg(long)]
        hold_out: bool,
    },
    /// Mutation testing (cargo-mutants) of the kernel's capability, IPC, scheduling,
    /// fastpath, untyped, Reply and vCPU-reply-validation code, against its unit tests
    /// and the replayed syscalls corpus: prints killed, missed and timed-out counts and
    /// updates the checked-in survivors list (tests/mutants/survivors.md)
    #[command(after_help = EXIT_CODES)]
    Mutants {
        /// Run only this shard of the mutants, as K/N (1-based)
        #[arg(long, value_name = "K/N")]
        shard: Option<String>,
        /// Run only the mutants whose names match this regex
        #[arg(long = "re", value_name = "REGEX")]
        matching: Option<String>,
        /// Run only the mutants the previous run did not kill
        #[arg(long)]
        iterate: bool,
    },
    /// Exit traces: record guest32's under Bochs, turn a serial log into a trace, replay
    /// one against the VMM's dispatcher, cut one into fuzz seeds
    #[command(after_help = EXIT_CODES)]
    Trace {
        /// What to do with traces.
        #[command(subcommand)]
        command: TraceCommand,
    },
    /// List the images: name, purpose and the outcome a run expects
    Images,
    /// Fetch the Linux guest's kernel and busybox (Debian packages, cached in
    /// target/linux/), write its initramfs, and check the kernel as the VMM's loader will
    #[command(after_help = EXIT_CODES)]
    Linux,
}

/// `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Instead of the figures: single-step one round trip of this exit through the kernel
    /// and the VMM (a kernel built with the `exit-trace` feature) and count its
    /// instructions by function
    #[arg(long, value_name = "EXIT", num_args = 0..=1, default_missing_value = "cpuid")]
    pub exit_trace: Option<TracedExit>,
    /// Only the Linux figure: boot the `linux` image's kernel to /init under the VMM and
    /// on bare Bochs and compare
    #[arg(long)]
    pub linux: bool,
    /// Give the machine this many CPUs (the reference CPU model only, no Linux figure)
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with_all = ["linux", "exit_trace"],
          value_parser = clap::value_parser!(u8).range(1..=16))]
    pub cpus: u8,
}

/// The exit `cargo xtask bench --exit-trace` follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TracedExit {
    /// A CPUID exit of the benchmark guest.
    Cpuid,
    /// An MMIO read of the benchmark guest (an EPT violation the VMM emulates).
    Mmio,
}

/// `cargo xtask run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The emulator
    #[arg(long, value_enum, default_value_t = Emulator::Bochs)]
    pub emulator: Emulator,
    /// The image (see `cargo xtask images`)
    #[arg(long, default_value = "default", value_parser = image_names())]
    pub image: String,
    /// The Bochs CPU model (Bochs only; QEMU always emulates `-cpu max`)
    #[arg(long, value_name = "MODEL", value_parser = PossibleValuesParser::new(BOCHS_CPUS))]
    pub cpu: Option<String>,
    /// The firmware that boots the hybrid ISO (`uefi`: OVMF, QEMU only)
    #[arg(long, value_enum, default_value_t = Firmware::Bios)]
    pub firmware: Firmware,
    /// The machine's CPUs (1-16; the kernel starts as many as the firmware lists)
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=16))]
    pub cpus: u8,
    /// Kill the emulator and fail after this long: a number of seconds, or with a unit
    /// (90s, 5m, 1h)
    #[arg(long, value_name = "TIME", default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Start QEMU's gdb stub and wait for a debugger (QEMU only)
    #[arg(long)]
    pub gdb: bool,
    /// Keep the logs of this many runs per image under target/runs/ (older ones are removed)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_KEEP,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub keep: usize,
}

/// `cargo xtask fuzz`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FuzzArgs {
    /// Reproduce a saved input instead of fuzzing.
    #[command(subcommand)]
    pub command: Option<FuzzCommand>,
    /// Run a long campaign on this target instead of the smoke of every target
    #[arg(long, value_name = "TARGET")]
    pub long: Option<String>,
    /// How long: each target in the smoke (default 10s), or the campaign (default 1 day);
    /// seconds, or with a unit (90s, 5m, 1h, 2d)
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub time: Option<Duration>,
    /// Stop the campaign after this many runs
    #[arg(long, value_name = "N", requires = "long",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: Option<u64>,
    /// The campaign's sanitizer (`none` for the targets whose code under test forbids unsafe)
    #[arg(long, value_enum, requires = "long")]
    pub sanitizer: Option<Sanitizer>,
    /// Build the campaign's targets without comparison tracing
    #[arg(long, requires = "long")]
    pub no_trace_compares: bool,
}

/// `cargo xtask fuzz <command>`.
#[derive(Debug, Subcommand)]
pub enum FuzzCommand {
    /// Run one saved input (a crash a campaign or the smoke found) against its target,
    /// built as the run that found it was (or as the options here say)
    #[command(after_help = EXIT_CODES)]
    Repro {
        /// The fuzz target
        target: String,
        /// The input
        file: PathBuf,
        /// The sanitizer (default: the one of the run that saved FILE, else address)
        #[arg(long, value_enum)]
        sanitizer: Option<Sanitizer>,
        /// Build without comparison tracing (default: as the run that saved FILE)
        #[arg(long)]
        no_trace_compares: bool,
    },
}

/// `cargo xtask trace <command>`.
#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Boot the trace image under Bochs and save guest32's exit trace
    Record {
        /// Where to save it (default: tests/fuzz/traces/guest32.trace)
        out: Option<PathBuf>,
    },
    /// Turn a serial log into a trace file
    Extract {
        /// The serial log
        log: PathBuf,
        /// The trace file to write
        out: PathBuf,
    },
    /// Replay a trace against the VMM's dispatcher and check every reply
    #[command(after_help = EXIT_CODES)]
    Replay {
        /// The trace file
        file: PathBuf,
    },
    /// Cut a trace into vmm_dispatch fuzz seeds
    Seeds {
        /// The trace file
        file: PathBuf,
        /// Exits per seed
        #[arg(long, value_name = "N", default_value_t = crate::trace::SEED_EXITS,
              value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
        every: usize,
    },
}

fn image_names() -> PossibleValuesParser {
    PossibleValuesParser::new(crate::image::IMAGES.iter().map(|i| i.name))
}

/// A length of time: a number of seconds, or a number with a unit (`ms`, `s`, `m`, `h`,
/// `d`); never zero, as a run or campaign that may not last at all is a mistake.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const EXAMPLES: &str = "a number of seconds or a number with a unit: 90, 90s, 5m, 1h, 2d";
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not {EXAMPLES}"))?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86400)),
        other => return Err(format!("unknown unit {other:?} in {text:?}; use {EXAMPLES}")),
    };
    if d.is_zero() {
        return Err(format!("{text:?} is no time at all; give more than 0 ({EXAMPLES})"));
    }
    Ok(d)
}

/// Words for a length of time: `90 s`, `5 min`, `2 h 30 min`.
pub fn show_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{} ms", d.as_millis()),
        1..=119 => format!("{s} s"),
        120..=7199 if s.is_multiple_of(60) => format!("{} min", s / 60),
        120..=7199 => format!("{} min {} s", s / 60, s % 60),
        _ if s.is_multiple_of(3600) => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// Parse the arguments after `cargo xtask` (`args` includes the program name first), with
/// the checks that involve more than one argument.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    if let Command::Run(r) = &cli.command {
        let run = || {
            let mut all = Cli::command();
            // Building fills in the subcommand's full name for its usage line.
            all.build();
            all.find_subcommand_mut("run").cloned()
        };
        let error = |kind, message: &str| match run() {
            Some(mut c) => c.error(kind, message),
            None => Cli::command().error(kind, message),
        };
        if r.cpu.is_some() && r.emulator != Emulator::Bochs {
            return Err(error(
                ErrorKind::ArgumentConflict,
                "--cpu picks a Bochs CPU model; QEMU always emulates `-cpu max`. \
                 Drop --cpu, or add --emulator bochs",
            ));
        }
        if r.firmware == Firmware::Uefi && r.emulator != Emulator::Qemu {
            return Err(error(
                ErrorKind::ArgumentConflict,
                "--firmware uefi needs --emulator qemu (Bochs boots through its BIOS only)",
            ));
        }
        if r.gdb && r.emulator != Emulator::Qemu {
            return Err(error(
                ErrorKind::ArgumentConflict,
                "--gdb needs --emulator qemu (Bochs's debugger is not a gdb stub)",
            ));
        }
    }
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, parse_from, Cli, Command, FuzzCommand};
    use clap::error::ErrorKind;
    use clap::CommandFactory;
    use std::time::Duration;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        parse_from(std::iter::once("cargo xtask").chain(line.split_whitespace()))
    }

    /// Refused with exit status 2 and a message holding every one of `words`.
    #[track_caller]
    fn refused(line: &str, words: &[&str]) {
        let e = parse(line).expect_err(line);
        assert_eq!(e.exit_code(), 2, "{line}: {e}");
        let text = e.render().to_string();
        for w in words {
            assert!(text.contains(w), "{line}: {w:?} missing from:\n{text}");
        }
    }

    #[test]
    fn every_command_has_its_own_help() {
        let mut lines = vec!["--help".to_string(), "help".to_string()];
        for sub in Cli::command().get_subcommands() {
            let name = sub.get_name();
            lines.push(format!("{name} --help"));
            lines.push(format!("help {name}"));
            for nested in sub.get_subcommands() {
                lines.push(format!("{name} {} --help", nested.get_name()));
            }
        }
        assert!(lines.iter().any(|l| l == "fuzz repro --help"));
        assert!(lines.iter().any(|l| l == "trace seeds --help"));
        for line in lines {
            let e = parse(&line).expect_err(&line);
            assert_eq!(e.kind(), ErrorKind::DisplayHelp, "{line}");
            assert_eq!(e.exit_code(), 0, "{line}");
        }
        let run = parse("run --help").unwrap_err().render().to_string();
        for w in ["--cpu", "corei7_skylake_x", "--timeout", "--keep", "Exit status", "2  usage"] {
            assert!(run.contains(w), "run --help lacks {w:?}:\n{run}");
        }
        let fuzz = parse("fuzz --help").unwrap_err().render().to_string();
        assert!(fuzz.contains("repro") && fuzz.contains("--long"), "{fuzz}");
    }

    #[test]
    fn the_readme_commands_parse_as_before() {
        let Command::Run(r) = parse("run").unwrap().command else { panic!("not run") };
        assert_eq!(r.emulator, crate::emulator::Emulator::Bochs);
        assert_eq!(
            (r.image.as_str(), r.cpu, r.timeout),
            ("default", None, Duration::from_secs(120))
        );
        assert!(matches!(parse("test").unwrap().command, Command::Test));
        let Command::Run(r) =
            parse("run --emulator qemu --image bad-manifest --timeout 30").unwrap().command
        else {
            panic!("not run")
        };
        assert_eq!((r.image.as_str(), r.timeout), ("bad-manifest", Duration::from_secs(30)));
        assert_eq!(r.firmware, crate::emulator::Firmware::Bios);
        let Command::Run(r) = parse("run --emulator qemu --firmware uefi").unwrap().command else {
            panic!("not run")
        };
        assert_eq!(r.firmware, crate::emulator::Firmware::Uefi);
        let Command::Run(r) = parse("run --cpus 2").unwrap().command else { panic!("not run") };
        assert_eq!(r.cpus, 2);
        let Command::Bench(b) = parse("bench --cpus 2").unwrap().command else { panic!("bench") };
        assert_eq!(b.cpus, 2);
        let Command::Fuzz(f) = parse("fuzz repro paging crash-1 --sanitizer none").unwrap().command
        else {
            panic!("not fuzz")
        };
        assert!(matches!(f.command, Some(FuzzCommand::Repro { .. })));
        let Command::Fuzz(f) =
            parse("fuzz --long syscalls --time 2h --runs 10 --sanitizer none --no-trace-compares")
                .unwrap()
                .command
        else {
            panic!("not fuzz")
        };
        assert_eq!(f.time, Some(Duration::from_secs(7200)));
    }

    #[test]
    fn bad_inputs_are_refused_saying_what_would_be_right() {
        refused(
            "run --cpu nope",
            &["invalid value 'nope' for '--cpu <MODEL>'", "corei7_skylake_x"],
        );
        refused(
            "run --emulator qemu --cpu corei7_skylake_x",
            &["--cpu picks a Bochs CPU model", "--emulator bochs"],
        );
        refused("run --timeout 0", &["no time at all", "90s"]);
        refused("run --timeout 5x", &["unknown unit \"x\"", "5m"]);
        refused("run --timeout soon", &["\"soon\" is not a number of seconds"]);
        refused("run --emulator kvm", &["invalid value 'kvm'", "qemu", "bochs"]);
        refused("run --image nope", &["invalid value 'nope'", "bad-manifest", "default"]);
        refused("run --gdb", &["--gdb needs --emulator qemu"]);
        refused("run --firmware uefi", &["--firmware uefi needs --emulator qemu"]);
        refused("run --cpus 0", &["--cpus", "1..=16"]);
        refused("bench --cpus 2 --linux", &["--cpus", "--linux"]);
        refused("run --cpus 17", &["--cpus", "1..=16"]);
        refused("run --emulator qemu --firmware efi", &["invalid value 'efi'", "bios, uefi"]);
        refused("run --keep 0", &["--keep"]);
        refused("run extra", &["unexpected argument 'extra'"]);
        refused("build --image", &["a value is required for '--image <IMAGE>'"]);
        refused("fuzz --runs 5", &["--long <TARGET>"]);
        refused("fuzz --time 0", &["no time at all"]);
        refused("fuzz --long paging --sanitizer memory", &["'memory'", "address", "none"]);
        refused("fuzz repro paging", &["<FILE>"]);
        refused("trace", &["record", "replay"]);
        refused("trace seeds f --every 0", &["--every"]);
        refused("frobnicate", &["unrecognized subcommand 'frobnicate'"]);
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-3").is_err());
        assert_eq!(super::show_duration(Duration::from_secs(120)), "2 min");
        assert_eq!(super::show_duration(Duration::from_secs(86400)), "24 h");
    }
}
