//! QEMU (TCG): the fast emulator for everything but VMX.

use crate::emulator::{run_dir, supervise, Emulator, Firmware, Outcome, RunOptions, Verdict};
use crate::qemu_monitor::NmiSender;
use crate::Result;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus};

/// `isa-debug-exit` turns the kernel's pass code 0x10 into (0x10 << 1) | 1.
const PASS_STATUS: i32 = 33;

fn verdict(status: ExitStatus) -> Verdict {
    match status.code() {
        Some(PASS_STATUS) => Verdict::Pass,
        code => Verdict::Fail(code.or(status.signal().map(|s| 128 + s))),
    }
}

/// Boot `iso` under QEMU.
pub fn run(iso: &Path, opts: &RunOptions) -> Result<Outcome> {
    let dir = run_dir(iso, Emulator::Qemu)?;
    let serial = dir.join("serial.txt");
    let monitor = dir.join("monitor.sock");
    let mut cmd = Command::new(crate::deps::qemu());
    cmd.args(["-machine", "pc", "-accel", "tcg", "-cpu", "max", "-m"])
        .arg(opts.memory_mib.to_string())
        .arg("-smp")
        .arg(opts.cpus.to_string())
        .arg("-cdrom")
        .arg(iso)
        .args(["-boot", "d", "-display", "none", "-no-reboot", "-monitor"])
        .arg(match opts.nmis_after {
            Some(_) => format!("unix:{},server,nowait", monitor.display()),
            None => "none".into(),
        })
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()));
    if opts.firmware == Firmware::Uefi {
        // OVMF as the machine's ROM: it boots the ISO's EFI system partition. Its variable
        // store is in the same image and read-only to QEMU, so nothing persists between runs.
        cmd.arg("-bios").arg(crate::deps::ovmf());
    }
    if opts.gdb {
        cmd.args(["-s", "-S"]);
    }
    let nmis =
        opts.nmis_after.clone().map(|marker| NmiSender::start(monitor, serial.clone(), marker));
    let (verdict, stderr) = supervise(cmd, &dir, &serial, opts, verdict, |_| {})?;
    if let Some(nmis) = nmis {
        fs::write(dir.join("nmis.txt"), nmis.stop().to_string())?;
    }
    Ok(Outcome {
        verdict,
        serial: fs::read_to_string(&serial).unwrap_or_default(),
        emulator_log: stderr.clone(),
        stderr,
        dir,
    })
}
