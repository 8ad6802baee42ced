//! The `linux` image's guest: a Debian kernel and a busybox initramfs, both made here.
//!
//! The kernel is Debian's `linux-image-cloud-amd64` (bookworm's small cloud kernel, with
//! the 8250 serial console built in, so it needs no modules); `XTASK_LINUX_KERNEL` names
//! any other bzImage instead. The initramfs is written by [`crate::cpio`]: the static
//! busybox of Debian's `busybox-static` (or `XTASK_BUSYBOX`) at `/bin/busybox`, the
//! `/dev/console` node the kernel opens for init before any file system is mounted, and
//! an `/init` script that mounts proc, sysfs and devtmpfs, installs busybox's applet
//! links, prints [`INIT_MARKER`] and runs a shell on the console. It is left uncompressed:
//! every kernel unpacks that, and decompressing is what a guest under an emulator pays
//! most for. Everything is cached under `target/linux/`.

use crate::cpio::Newc;
use crate::{debian, err, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The boot module holding the bzImage.
pub const KERNEL_MODULE: &str = "linux_kernel";
/// The boot module holding the initramfs.
pub const INITRAMFS_MODULE: &str = "linux_initramfs";
/// The boot modules a Linux image carries besides the usual ones.
pub const MODULES: &[&str] = &[KERNEL_MODULE, INITRAMFS_MODULE];
/// Broken Linux guests for the `linux-refused` image: the first 64 KiB of the kernel (a
/// truncated bzImage), and a valid bzImage of one page that loads at 1 MiB, so that a
/// VM of a few MiB reaches the initramfs check.
pub const BROKEN_MODULES: &[&str] = &["linux_truncated", "linux_tiny"];

/// The broken guests' bytes, made from the real kernel `kernel`.
pub fn broken(kernel: &[u8]) -> [(&'static str, Vec<u8>); 2] {
    let truncated = kernel.get(..64 * 1024).unwrap_or(kernel).to_vec();
    // A 64-bit entry (at 0x200) that halts for good: never reached, since the VMM refuses
    // the VM, but a valid kernel all the same.
    let mut tiny =
        vmm_server::linux_boot::bzimage::minimal_setup(0x400, 0x10_0000, 0x1_0000).to_vec();
    let mut code = vec![0u8; 0x400];
    code[0x200..0x204].copy_from_slice(&[0xfa, 0xf4, 0xeb, 0xfd]); // cli; hlt; jmp hlt
    tiny.extend(code);
    [(BROKEN_MODULES[0], truncated), (BROKEN_MODULES[1], tiny)]
}

/// The Debian package of the kernel (a meta package: the current bookworm cloud kernel).
pub const KERNEL_PACKAGE: &str = "linux-image-cloud-amd64";
/// The Debian package of the static busybox.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";
/// The line `/init` prints first, which a test waits for.
pub const INIT_MARKER: &str = "linux: init reached";

/// The kernel and initramfs, as files.
#[derive(Clone, Debug)]
pub struct Guest {
    /// The bzImage.
    pub kernel: PathBuf,
    /// The newc initramfs.
    pub initramfs: PathBuf,
}

/// Where the Linux files are cached.
pub fn dir() -> PathBuf {
    crate::target_dir().join("linux")
}

/// `/init`: what the kernel runs first, with the console as its standard streams.
pub fn init_script() -> String {
    format!(
        "#!/bin/sh\n\
         # Mount what a shell expects, then give the console a shell with job control.\n\
         export PATH=/bin:/sbin:/usr/bin:/usr/sbin\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox mount -t sysfs sysfs /sys\n\
         /bin/busybox mount -t devtmpfs devtmpfs /dev\n\
         /bin/busybox --install -s\n\
         echo '{INIT_MARKER}'\n\
         setsid cttyhack sh\n\
         # The shell ended: power the VM off rather than let the kernel panic.\n\
         echo 'linux: shell exited, powering off'\n\
         poweroff -f\n"
    )
}

/// The initramfs holding `busybox`.
pub fn initramfs(busybox: &[u8]) -> Result<Vec<u8>> {
    let mut a = Newc::new();
    for d in ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root"] {
        a.dir(d, 0o755);
    }
    // The console device (major 5, minor 1): the kernel opens it for init.
    a.char_dev("dev/console", 0o600, 5, 1);
    a.file("bin/busybox", 0o755, busybox).ok_or_else(|| err!("busybox is over 4 GiB"))?;
    a.symlink("bin/sh", "busybox");
    a.file("init", 0o755, init_script().as_bytes()).ok_or_else(|| err!("init too large"))?;
    Ok(a.finish())
}

/// A file from a Debian package: the package's `.deb` cached in `target/linux/debs/`,
/// unpacked under `target/linux/PACKAGE/`, and the first path `pick` chooses in it.
fn from_package(package: &str, pick: impl Fn(&Path) -> Option<PathBuf>) -> Result<PathBuf> {
    let real = debian::resolve(package)?;
    let deb = debian::download(&real, &dir().join("debs"))?;
    let root = dir().join(&real);
    if let Some(p) = pick(&root) {
        return Ok(p);
    }
    debian::unpack(&deb, &root)?;
    pick(&root).ok_or_else(|| err!("{} holds no file the build expects", deb.display()))
}

/// An override variable's file, if it is set (and then it must exist).
fn named_by(var: &str) -> Result<Option<PathBuf>> {
    match std::env::var_os(var) {
        Some(v) => {
            let p = PathBuf::from(v);
            if p.is_file() {
                Ok(Some(p))
            } else {
                Err(err!("{var} = {} is not a file", p.display()))
            }
        }
        None => Ok(None),
    }
}

fn kernel_in(root: &Path) -> Option<PathBuf> {
    let boot = fs::read_dir(root.join("boot")).ok()?;
    let mut found: Vec<PathBuf> = boot
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// Write `bytes` to `path` by renaming a finished file over it, so a reader sees the old
/// file or the new one, never half of one.
fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("partial-{}", std::process::id()));
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// Fetch (or reuse) the kernel and busybox, write the initramfs, and return both files
/// (the kernel copied to `target/linux/vmlinuz`, where the VMM's host test looks).
pub fn prepare() -> Result<Guest> {
    // Tests boot Linux images side by side: one fetch and one write at a time, and each
    // file replaced whole (an image being built may be copying the last one).
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let kernel = match named_by("XTASK_LINUX_KERNEL")? {
        Some(p) => p,
        None => from_package(KERNEL_PACKAGE, kernel_in).map_err(|e| {
            err!("{e}\n(or point XTASK_LINUX_KERNEL at a bzImage with a serial console built in)")
        })?,
    };
    let busybox = match named_by("XTASK_BUSYBOX")? {
        Some(p) => p,
        None => {
            from_package(BUSYBOX_PACKAGE, |r| Some(r.join("bin/busybox")).filter(|p| p.is_file()))
                .map_err(|e| err!("{e}\n(or point XTASK_BUSYBOX at a statically linked busybox)"))?
        }
    };
    let bytes = fs::read(&kernel).map_err(|e| err!("{}: {e}", kernel.display()))?;
    vmm_server::linux_boot::LinuxImage::parse(&bytes)
        .map_err(|e| err!("{}: the VMM would refuse it: {e}", kernel.display()))?;
    let out = dir();
    fs::create_dir_all(&out)?;
    let vmlinuz = out.join("vmlinuz");
    replace(&vmlinuz, &bytes)?;
    let cpio = out.join("initramfs.cpio");
    let busybox = fs::read(&busybox).map_err(|e| err!("{}: {e}", busybox.display()))?;
    replace(&cpio, &initramfs(&busybox)?)?;
    Ok(Guest { kernel: vmlinuz, initramfs: cpio })
}

#[cfg(test)]
mod tests {
    use super::{init_script, initramfs, INIT_MARKER};

    #[test]
    fn the_initramfs_holds_busybox_the_console_and_init() {
        let a = initramfs(b"\x7fELF busybox").unwrap();
        let has = |needle: &[u8]| a.windows(needle.len()).any(|w| w == needle);
        for name in ["bin/busybox\0", "bin/sh\0", "dev/console\0", "init\0", "TRAILER!!!\0"] {
            assert!(has(name.as_bytes()), "{name}");
        }
        assert!(has(b"\x7fELF busybox"));
        assert!(a.starts_with(b"070701"));
    }

    #[test]
    fn init_mounts_prints_the_marker_and_runs_a_shell() {
        let s = init_script();
        assert!(s.starts_with("#!/bin/sh\n"));
        for line in [
            "mount -t proc proc /proc",
            "mount -t sysfs sysfs /sys",
            "mount -t devtmpfs devtmpfs /dev",
            &format!("echo '{INIT_MARKER}'"),
            "setsid cttyhack sh",
        ] {
            assert!(s.contains(line), "{line}");
        }
    }
}
