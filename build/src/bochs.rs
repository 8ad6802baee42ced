//! Bochs: the emulator with VT-x. Debian's build has the internal debugger, so a small
//! debugger script continues at start and quits at the kernel's magic breakpoint
//! (exit 0 = pass); the kernel's shutdown-port write or a triple fault exits non-zero.

use crate::emulator::{run_dir, supervise, Emulator, Outcome, RunOptions, Verdict};
use crate::Result;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus};

fn verdict(status: ExitStatus) -> Verdict {
    match status.code() {
        Some(0) => Verdict::Pass,
        code => Verdict::Fail(code),
    }
}

fn bochsrc(iso: &Path, serial: &Path, log: &Path, opts: &RunOptions) -> String {
    format!(
        "megs: {mem}
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
cpu: model={cpu}, count=1, ips=50000000, reset_on_triple_fault=0, ignore_bad_msrs=0
ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14
ata0-master: type=cdrom, path={iso}, status=inserted
boot: cdrom
display_library: term
com1: enabled=1, mode=file, dev={serial}
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
        cpu = opts.bochs_cpu,
        iso = iso.display(),
        serial = serial.display(),
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
    fs::write(&rc, bochsrc(iso, &serial, &log, opts))?;
    fs::write(&script, "continue\nquit\n")?;
    let mut cmd = Command::new("bochs-bin");
    cmd.arg("-q").arg("-f").arg(&rc).arg("-rc").arg(&script).env("TERM", "dumb");
    let mut seen = String::new();
    let (verdict, _stderr) = supervise(cmd, &dir, &serial, opts, verdict, move |chunk| {
        let before = seen.contains("connected to screen");
        seen.push_str(chunk);
        if !before && seen.contains("connected to screen") {
            drain_screen(&seen);
        }
    })?;
    Ok(Outcome {
        verdict,
        serial: fs::read_to_string(&serial).unwrap_or_default(),
        emulator_log: fs::read_to_string(&log).unwrap_or_default(),
        dir,
    })
}
