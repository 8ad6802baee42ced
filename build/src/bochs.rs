//! Bochs: the emulator with VT-x. Debian's build has the internal debugger, so a small
//! debugger script continues at start and quits at the kernel's magic breakpoint
//! (exit 0 = pass); the kernel's shutdown-port write or a triple fault exits non-zero.

use crate::emulator::{run_dir, supervise, Emulator, Outcome, RunOptions, Verdict};
use crate::serial_input::{bridge, free_port, SerialInput};
use crate::{err, Result};
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

fn verdict(status: ExitStatus) -> Verdict {
    match status.code() {
        Some(0) => Verdict::Pass,
        code => Verdict::Fail(code),
    }
}

/// What the installed Bochs says of itself (`bochs -help cpu`): its version and the CPU
/// models it was built with.
#[derive(Clone, Debug, Default)]
pub struct About {
    /// `2.7`, from its banner.
    pub version: Option<String>,
    /// The CPU models it lists.
    pub cpus: Vec<String>,
}

/// Ask Bochs (once per process).
pub fn about() -> &'static About {
    static ABOUT: OnceLock<About> = OnceLock::new();
    ABOUT.get_or_init(|| {
        let out = Command::new(crate::deps::bochs())
            .args(["-help", "cpu"])
            .stdin(std::process::Stdio::null())
            .output();
        out.map(|o| parse_about(&String::from_utf8_lossy(&o.stdout), &o.stderr)).unwrap_or_default()
    })
}

fn parse_about(stdout: &str, stderr: &[u8]) -> About {
    let stderr = String::from_utf8_lossy(stderr);
    let version = stdout
        .lines()
        .chain(stderr.lines())
        .find_map(|l| l.split("Bochs x86 Emulator ").nth(1))
        .map(|v| v.trim().to_string());
    let cpus = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Supported CPU models"))
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(String::from)
        .collect();
    About { version, cpus }
}

/// Refuse a CPU model the installed Bochs does not have, naming those it has (the
/// command line checks the model against the list this tool knows; a Bochs built
/// differently may know fewer).
fn check_cpu(model: &str) -> Result<()> {
    let cpus = &about().cpus;
    if cpus.is_empty() || cpus.iter().any(|c| c == model) {
        return Ok(());
    }
    Err(err!(
        "this Bochs ({}) has no CPU model {model:?}; it has: {}",
        crate::deps::bochs().display(),
        cpus.join(", ")
    ))
}

fn bochsrc(iso: &Path, com1: &str, log: &Path, opts: &RunOptions) -> String {
    format!(
        "megs: {mem}
romimage: file={bios}
vgaromimage: file={vgabios}
cpu: model={cpu}, count={cpus}, ips=50000000, reset_on_triple_fault=0, ignore_bad_msrs={ignore}
ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14
ata0-master: type=cdrom, path={iso}, status=inserted
boot: cdrom
display_library: term
{com1}
magic_break: enabled=1
log: {log}
panic: action=fatal
error: action=report
info: action=report
debug: action=ignore
mouse: enabled=0
speaker: enabled=0
clock: sync=none, time0=local
",
        mem = opts.memory_mib,
        cpus = opts.cpus,
        bios = crate::deps::bochs_bios().display(),
        vgabios = crate::deps::vgabios().display(),
        cpu = opts.bochs_cpu,
        ignore = u8::from(opts.ignore_bad_msrs),
        iso = iso.display(),
        com1 = com1,
        log = log.display(),
    )
}

/// The `term` display draws into a pty that nobody reads; once its buffer fills, Bochs
/// blocks. Drain it.
fn drain_screen(stderr: &str) {
    let Some(rest) = stderr.split("connected to screen \"").nth(1) else { return };
    let Some(pty) = rest.split('"').next() else { return };
    let pty = pty.to_string();
    std::thread::spawn(move || {
        if let Ok(mut f) = fs::File::open(&pty) {
            let mut buf = [0u8; 4096];
            while matches!(f.read(&mut buf), Ok(n) if n > 0) {}
        }
    });
}

/// Boot `iso` under Bochs.
pub fn run(iso: &Path, opts: &RunOptions) -> Result<Outcome> {
    let dir = run_dir(iso, Emulator::Bochs)?;
    let serial = dir.join("serial.txt");
    let log = dir.join("bochs.log");
    let rc = dir.join("bochsrc");
    let script = dir.join("debugger.rc");
    // With input to type, COM1 is a TCP server the bridge connects to; it appends the
    // guest's output to the same log.
    let port = match opts.serial_input {
        SerialInput::None => None,
        _ => Some(free_port()?),
    };
    let com1 = match port {
        Some(port) => format!("com1: enabled=1, mode=socket-server, dev=localhost:{port}"),
        None => format!("com1: enabled=1, mode=file, dev={}", serial.display()),
    };
    fs::write(&rc, bochsrc(iso, &com1, &log, opts))?;
    let done = Arc::new(AtomicBool::new(false));
    let bridge = port.map(|p| bridge(p, serial.clone(), opts.serial_input.clone(), done.clone()));
    fs::write(&script, opts.bochs_debugger.as_deref().unwrap_or("continue\nquit\n"))?;
    check_cpu(&opts.bochs_cpu)?;
    let mut cmd = Command::new(crate::deps::bochs());
    cmd.arg("-q").arg("-f").arg(&rc).arg("-rc").arg(&script).env("TERM", "dumb");
    let mut seen = String::new();
    let (verdict, stderr) = supervise(cmd, &dir, &serial, opts, verdict, move |chunk| {
        let before = seen.contains("connected to screen");
        seen.push_str(chunk);
        if !before && seen.contains("connected to screen") {
            drain_screen(&seen);
        }
    })?;
    done.store(true, Ordering::Release);
    if let Some(b) = bridge {
        let _ = b.join();
    }
    Ok(Outcome {
        verdict,
        serial: fs::read_to_string(&serial).unwrap_or_default(),
        emulator_log: fs::read_to_string(&log).unwrap_or_default(),
        stderr,
        dir,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_and_cpu_models_are_read_from_bochs() {
        let stdout = "====\n                        Bochs x86 Emulator 2.7\n====\n\
                      Supported CPU models:\n\nbx_generic\ncorei7_skylake_x\n\n";
        let stderr = b"00000000000i[SIM   ] quit_sim called with exit code 0\n";
        let a = super::parse_about(stdout, stderr);
        assert_eq!(a.version.as_deref(), Some("2.7"));
        assert_eq!(a.cpus, ["bx_generic", "corei7_skylake_x"]);
    }

    /// Every model the command line offers is one the installed Bochs has (when there is
    /// one: the check is skipped on a machine without Bochs).
    #[test]
    fn the_known_cpu_models_are_those_of_the_installed_bochs() {
        let have = &super::about().cpus;
        if have.is_empty() {
            return;
        }
        for m in crate::cli::BOCHS_CPUS {
            assert!(have.iter().any(|h| h == m), "this Bochs lacks {m}");
        }
    }
}
