//! `linux boot to init`: the same kernel, initramfs and command line booted under the VMM
//! (the `linux` image) and on bare Bochs (GRUB loading them directly), each to its first
//! shell prompt and the command that ends it, in Bochs ticks (emulated instructions):
//! under the VMM from `VCpuStart` to the VM's stop (the VMM's closing line), on bare Bochs
//! from GRUB's jump to the kernel's 32-bit entry (a debugger breakpoint) to the triple
//! fault of `reboot -f`. Both include the kernel's decompression; neither includes
//! loading the files from the CD.

use crate::emulator::{self, Emulator, Outcome, RunOptions};
use crate::serial_input::{SerialInput, Step};
use crate::{err, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The kernel's line when it starts `/init`.
const RUN_INIT: &str = "Run /init as init process";

/// The `linux` image's command line (its manifest's Linux VM's).
pub fn cmdline() -> Result<String> {
    let path = crate::root().join("images/linux.toml");
    let text = fs::read_to_string(&path).map_err(|e| err!("{}: {e}", path.display()))?;
    let file: toml::Value = toml::from_str(&text).map_err(|e| err!("{}: {e}", path.display()))?;
    file.get("vm")
        .and_then(|v| v.as_array())
        .and_then(|vms| vms.iter().find_map(|vm| vm.get("cmdline")?.as_str()))
        .map(String::from)
        .ok_or_else(|| err!("{}: no Linux VM with a cmdline", path.display()))
}

/// A GRUB ISO that boots the `linux` image's kernel and initramfs directly.
pub fn bare_iso() -> Result<PathBuf> {
    let guest = crate::linux::prepare()?;
    let images = crate::target_dir().join("images");
    let dir = images.join("linux-bare");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("boot/grub"))?;
    fs::copy(&guest.kernel, dir.join("boot/vmlinuz"))?;
    fs::copy(&guest.initramfs, dir.join("boot/initramfs.cpio"))?;
    // Bochs's CPU model reports a 3.5 GHz processor (CPUID 0x16) while its TSC runs at
    // the emulation's rate; left to believe the model, the kernel would stretch every
    // TSC-timed delay 70-fold. Under the VMM it gets the rate the microkernel measured
    // (CPUID 0x15), so the bare kernel is told the same.
    let cfg = format!(
        "set timeout=0\nset default=0\n{}menuentry \"linux\" {{\n  linux /boot/vmlinuz {} tsc_early_khz={BOCHS_TSC_KHZ}\n  initrd /boot/initramfs.cpio\n  boot\n}}\n",
        crate::image::KEEP_EFI_MODE,
        cmdline()?
    );
    fs::write(dir.join("boot/grub/grub.cfg"), cfg)?;
    let iso = images.join("linux-bare.iso");
    crate::image::mkrescue_with(&dir, &iso, "linux")?;
    Ok(iso)
}

/// Bochs's TSC rate: one tick per emulated instruction at the `ips` the run files set.
const BOCHS_TSC_KHZ: u64 = 50_000;

/// Where GRUB enters a bzImage it loads by the 32-bit boot protocol.
const CODE32_START: u64 = 0x10_0000;

/// The VM's ticks from its start to its stop, from the VMM's closing line.
pub fn vmm_ticks(serial: &str) -> Option<u64> {
    let line = serial.lines().find(|l| l.contains(" ticks from its start"))?;
    line.split(" ticks from its start").next()?.rsplit(", ").next()?.parse().ok()
}

/// The tick of the breakpoint at the kernel's entry, from Bochs's debugger output.
pub fn entry_tick(stdout: &str) -> Option<u64> {
    let after = stdout.split("Breakpoint 1,").nth(1)?;
    after.split("Next at t=").nth(1)?.split_whitespace().next()?.parse().ok()
}

/// The tick of Bochs's panic at the guest's triple fault, from its log.
pub fn end_tick(log: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains(">>PANIC<<"))?;
    line.get(..11)?.parse().ok()
}

/// Boot one side to `/init`, then end it with `end` typed at its shell; `bare` runs the
/// kernel on Bochs itself, whose CPU model lacks MSRs the kernel's 32-bit entry reads
/// (the VMM answers them).
fn boot(iso: &Path, memory_mib: u32, end: &str, bare: bool) -> Result<Outcome> {
    let opts = RunOptions {
        ignore_bad_msrs: bare,
        bochs_debugger: bare
            .then(|| format!("lbreak {CODE32_START:#x}\ncontinue\ncontinue\nquit\n")),
        timeout: Duration::from_secs(1200),
        memory_mib,
        serial_input: SerialInput::Script(vec![
            Step::new(crate::linux::INIT_MARKER, ""),
            Step::new("# ", end),
        ]),
        ..RunOptions::default()
    };
    emulator::run(Emulator::Bochs, iso, &opts)
}

/// Run both boots and print the figures; false when either did not reach `/init`.
pub fn run() -> Result<bool> {
    // Bare, the guest ends by a triple fault (reboot=t), which ends Bochs.
    let bare = boot(&bare_iso()?, 128, "reboot -f\n", true)?;
    let image = crate::image::find("linux")?;
    let vmm_iso = crate::image::build(image)?;
    let vmm = boot(&vmm_iso, image.memory_mib(), "poweroff -f\n", false)?;
    let bare_stdout = fs::read_to_string(bare.dir.join("stdout.txt")).unwrap_or_default();
    let bare_ticks = entry_tick(&bare_stdout)
        .zip(end_tick(&bare.emulator_log))
        .and_then(|(from, to)| to.checked_sub(from));
    let (Some(v), Some(b), true) =
        (vmm_ticks(&vmm.serial), bare_ticks, vmm.serial.contains(RUN_INIT))
    else {
        eprintln!(
            "xtask: FAIL: a Linux boot did not reach its shell; logs in {} and {}",
            vmm.dir.display(),
            bare.dir.display()
        );
        return Ok(false);
    };
    println!("linux boot to init (Debian's cloud kernel to its first prompt and the command that ends it, in ticks):");
    println!("  under the VMM (VCpuStart to the VM's stop): {v}");
    println!("  bare Bochs (the kernel's entry to its triple fault): {b}");
    println!("  ratio: {:.2} (aim <= 1.25)", v as f64 / b as f64);
    if let Some(exits) = vmm
        .serial
        .lines()
        .find_map(|l| l.trim_end().split_once(": exits by reason: ").map(|(_, e)| e))
    {
        println!("  VMM exits of the whole run by reason: {exits}");
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::{end_tick, entry_tick, vmm_ticks};

    #[test]
    fn the_ticks_are_read_from_each_side() {
        let vmm =
            "vmm vm_linux: VM stopped: powered off (HLT) after 4213 exits, 912345678 ticks from its start\n";
        assert_eq!(vmm_ticks(vmm), Some(912_345_678));
        let stdout =
            "Next at t=0\n(0) Breakpoint 1, 0x0000000000100000 in ?? ()\nNext at t=165661997\n";
        assert_eq!(entry_tick(stdout), Some(165_661_997));
        let log =
            "01070131947p[CPU0  ] >>PANIC<< exception(): 3rd (13) exception with no resolution\n";
        assert_eq!(end_tick(log), Some(1_070_131_947));
    }

    #[test]
    fn the_linux_image_has_a_command_line() {
        assert!(super::cmdline().unwrap().contains("console=ttyS0"));
    }
}
