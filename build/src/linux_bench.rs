//! `linux boot to init`: the same kernel, initramfs and command line booted under the VMM
//! (the `linux` image) and on bare Bochs (GRUB loading them directly), compared by the
//! kernel's own clock at `Run /init as init process`. That clock is the guest's TSC from
//! early in `setup_arch`, which under the VMM includes every tick the VMM and the kernel
//! spend on its exits (a halted guest's skipped time counts on both: bare Bochs skips
//! ahead while halted too), so the ratio is the virtualization's cost over that span.

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
    let cfg = format!(
        "set timeout=0\nset default=0\nmenuentry \"linux\" {{\n  linux /boot/vmlinuz {}\n  initrd /boot/initramfs.cpio\n  boot\n}}\n",
        cmdline()?
    );
    fs::write(dir.join("boot/grub/grub.cfg"), cfg)?;
    let iso = images.join("linux-bare.iso");
    crate::image::mkrescue_with(&dir, &iso, "linux normal iso9660 biosdisk part_msdos configfile")?;
    Ok(iso)
}

/// The kernel's clock at `Run /init`, in seconds, and its TSC rate in MHz.
pub fn init_time(serial: &str) -> Option<(f64, f64)> {
    let stamp = |l: &str| -> Option<f64> {
        l.trim_start_matches('[').split(']').next()?.trim().parse().ok()
    };
    let at = serial.lines().find(|l| l.contains(RUN_INIT)).and_then(stamp)?;
    let mhz = serial
        .lines()
        .find_map(|l| l.split("tsc: Detected ").nth(1)?.strip_suffix(" MHz TSC"))
        .or_else(|| {
            serial
                .lines()
                .find_map(|l| l.split("tsc: Detected ").nth(1)?.strip_suffix(" MHz processor"))
        })
        .and_then(|m| m.trim().parse().ok())?;
    Some((at, mhz))
}

/// Boot one side to `/init`, then end it with `end` typed at its shell; `bare` runs the
/// kernel on Bochs itself, whose CPU model lacks MSRs the kernel's 32-bit entry reads
/// (the VMM answers them).
fn boot(iso: &Path, memory_mib: u32, end: &str, bare: bool) -> Result<Outcome> {
    let opts = RunOptions {
        ignore_bad_msrs: bare,
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
    let (Some((v, vmhz)), Some((b, bmhz))) = (init_time(&vmm.serial), init_time(&bare.serial))
    else {
        eprintln!(
            "xtask: FAIL: a Linux boot did not reach /init; logs in {} and {}",
            vmm.dir.display(),
            bare.dir.display()
        );
        return Ok(false);
    };
    let (vt, bt) = (v * vmhz * 1e6, b * bmhz * 1e6);
    println!("linux boot to init (the kernel's clock at \"{RUN_INIT}\", Debian's cloud kernel):");
    println!("  under the VMM: {vt:.0} ticks ({v:.3} s at {vmhz} MHz)");
    println!("  bare Bochs:    {bt:.0} ticks ({b:.3} s at {bmhz} MHz)");
    println!("  ratio: {:.2} (aim <= 1.25)", vt / bt);
    if let Some(exits) =
        vmm.serial.lines().find_map(|l| l.trim_end().strip_prefix("vmm: exits by reason: "))
    {
        println!("  VMM exits of the whole run by reason: {exits}");
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::init_time;

    #[test]
    fn the_init_line_and_tsc_rate_are_read() {
        let log = "[    0.000000] tsc: Detected 50.000 MHz processor\n[    0.000000] tsc: Detected 50.003 MHz TSC\n[    9.962810] Run /init as init process\n";
        assert_eq!(init_time(log), Some((9.962810, 50.003)));
        assert_eq!(init_time("[ 1.0] Run /init as init process\n"), None, "no TSC rate");
    }

    #[test]
    fn the_linux_image_has_a_command_line() {
        assert!(super::cmdline().unwrap().contains("console=ttyS0"));
    }
}
