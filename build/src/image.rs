//! Bootable images: the kernel plus boot modules in a GRUB (Multiboot2) ISO.
//!
//! `default` is the system people boot. The `bad-init-*` images carry a deliberately
//! broken init module, made from the real one, to prove the kernel refuses it cleanly;
//! `bad-manifest` and `process-refused` prove the same of the root task for a manifest
//! module that does not decode and for a process the machine cannot make.
//!
//! How an image is made (which init, which manifest, a corrupted manifest module, the
//! kernel command line) is defined here; what it is for and the outcome a run must show
//! are declared in its manifest, in an `[images.NAME]` table the build tool reads and never
//! encodes. Several images share a manifest (the `bad-init-*` ones are the default system
//! with a broken init), so each manifest declares every image made from it.

use crate::emulator::{Outcome, Verdict};
use crate::{cargo, err, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// How an image's init module is derived from the built `init`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitVariant {
    /// The real program.
    Intact,
    /// Cut inside the program-header table.
    Truncated,
    /// `e_machine` set to ARM.
    WrongMachine,
    /// First loadable segment moved into the kernel's half of the address space.
    KernelOverlap,
}

/// An image that can be built and booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Image {
    /// Its name (`--image NAME`).
    pub name: &'static str,
    /// What goes in as `init`.
    pub init: InitVariant,
    /// Its system manifest, under `images/`.
    pub manifest: &'static str,
    /// Cut the encoded manifest short (to prove the root task refuses it cleanly).
    pub corrupt_manifest: bool,
    /// The kernel command line.
    pub cmdline: &'static str,
    /// Carries a Linux guest: the kernel and initramfs modules of [`crate::linux`].
    pub linux: bool,
    /// Also carries the broken Linux guests of [`crate::linux::BROKEN_MODULES`] (a
    /// truncated bzImage, a kernel too small for an initramfs), which VMMs must refuse.
    pub broken_linux: bool,
}

/// Every image this tree knows.
pub const IMAGES: &[Image] = &[
    Image {
        name: "default",
        init: InitVariant::Intact,
        manifest: "default.toml",
        corrupt_manifest: false,
        cmdline: "",
        linux: false,
        broken_linux: false,
    },
    Image {
        name: "bad-init-truncated",
        init: InitVariant::Truncated,
        manifest: "default.toml",
        corrupt_manifest: false,
        cmdline: "",
        linux: false,
        broken_linux: false,
    },
    Image {
        name: "bad-init-machine",
        init: InitVariant::WrongMachine,
        manifest: "default.toml",
        corrupt_manifest: false,
        cmdline: "",
        linux: false,
        broken_linux: false,
    },
    Image {
        name: "bad-init-kernel-overlap",
        init: InitVariant::KernelOverlap,
        manifest: "default.toml",
        corrupt_manifest: false,
        cmdline: "",
        linux: false,
        broken_linux: false,
    },
    Image {
        name: "bad-manifest",
        init: InitVariant::Intact,
        manifest: "default.toml",
        corrupt_manifest: true,
        cmdline: "",
        linux: false,
        broken_linux: false,
    },
    Image {
        name: "process-refused",
        init: InitVariant::Intact,
        manifest: "process-refused.toml",
        corrupt_manifest: false,
        cmdline: "",
        linux: false,
        broken_linux: false,
    },
    Image {
        name: "pit-tick",
        init: InitVariant::Intact,
        manifest: "default.toml",
        corrupt_manifest: false,
        cmdline: "tick=pit",
        linux: false,
        broken_linux: false,
    },
    Image {
        name: "trace",
        init: InitVariant::Intact,
        manifest: "trace.toml",
        corrupt_manifest: false,
        cmdline: "",
        linux: false,
        broken_linux: false,
    },
    Image {
        name: "devices",
        init: InitVariant::Intact,
        manifest: "devices.toml",
        corrupt_manifest: false,
        cmdline: "",
        linux: false,
        broken_linux: false,
    },
    Image {
        name: "device-process",
        init: InitVariant::Intact,
        manifest: "device-process.toml",
        corrupt_manifest: false,
        cmdline: "",
        linux: false,
        broken_linux: false,
    },
    Image {
        name: "vmm-restart",
        init: InitVariant::Intact,
        manifest: "vmm-restart.toml",
        corrupt_manifest: false,
        cmdline: "",
        linux: false,
        broken_linux: false,
    },
    Image {
        name: "linux",
        init: InitVariant::Intact,
        manifest: "linux.toml",
        corrupt_manifest: false,
        cmdline: "",
        linux: true,
        broken_linux: false,
    },
    Image {
        name: "linux-smp",
        init: InitVariant::Intact,
        manifest: "linux-smp.toml",
        corrupt_manifest: false,
        cmdline: "",
        linux: true,
        broken_linux: false,
    },
    Image {
        name: "linux-refused",
        init: InitVariant::Intact,
        manifest: "linux-refused.toml",
        corrupt_manifest: false,
        cmdline: "",
        linux: true,
        broken_linux: true,
    },
];

/// The outcome a run of an image must show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The machine's explicit pass.
    Pass,
    /// A clean failing exit (not a timeout) whose serial log holds this text and no
    /// kernel panic: the system refused what the image gave it.
    Refused(String),
}

impl Expect {
    /// Parse a manifest's `expect`: `"pass"` or `"refused: TEXT"`.
    pub fn parse(text: &str) -> Result<Self> {
        match text.strip_prefix("refused:").map(str::trim) {
            Some("") => Err(err!("expect \"refused:\" needs the text the log must hold")),
            Some(t) => Ok(Self::Refused(t.to_string())),
            None if text == "pass" => Ok(Self::Pass),
            None => Err(err!("expect {text:?} is neither \"pass\" nor \"refused: TEXT\"")),
        }
    }

    /// Compare a run's outcome with this expectation: `Ok` with words for the pass line,
    /// `Err` with the reason it is not what was expected.
    pub fn judge(&self, out: &Outcome) -> std::result::Result<String, String> {
        match self {
            Self::Pass if out.verdict == Verdict::Pass => Ok("the machine reported a pass".into()),
            Self::Pass => Err(out.verdict.to_string()),
            Self::Refused(text) => {
                if out.verdict == Verdict::Pass {
                    Err(format!("the machine reported a pass, but a refusal was expected: {text}"))
                } else if out.verdict == Verdict::TimedOut {
                    Err(format!("{}; a clean refusal was expected: {text}", out.verdict))
                } else if out.serial.contains("KERNEL PANIC") {
                    Err(format!("the kernel panicked; a clean refusal was expected: {text}"))
                } else if !out.serial.contains(text.as_str()) {
                    Err(format!("{}, but the log lacks the expected refusal: {text}", out.verdict))
                } else {
                    Ok(format!("refused as expected: {text}"))
                }
            }
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pass => f.write_str("pass"),
            Self::Refused(t) => write!(f, "refused: {t}"),
        }
    }
}

/// What an image's manifest says of it.
#[derive(Clone, Debug)]
pub struct Info {
    /// What it is for.
    pub about: String,
    /// What a run must show.
    pub expect: Expect,
}

impl Image {
    /// The machine's RAM in MiB: a Linux VM takes a naturally aligned block of its whole
    /// RAM (128 MiB) beside the kernel's and the modules' memory, which 256 MiB cannot
    /// offer once the firmware's tables sit at its top.
    pub fn memory_mib(&self) -> u32 {
        if self.linux {
            512
        } else {
            256
        }
    }

    /// The boot modules its manifest may name.
    pub fn modules(&self) -> Result<Vec<&'static str>> {
        let linux = if self.linux { crate::linux::MODULES } else { &[] };
        let broken = if self.broken_linux { crate::linux::BROKEN_MODULES } else { &[] };
        Ok(modules()?.into_iter().chain(linux.iter().chain(broken).copied()).collect())
    }

    /// What its manifest says it is for and expects.
    pub fn info(&self) -> Result<Info> {
        let path = crate::root().join("images").join(self.manifest);
        let text = fs::read_to_string(&path).map_err(|e| err!("{}: {e}", path.display()))?;
        let all = crate::manifest::images(&path, &text)?;
        let info = all.get(self.name).ok_or_else(|| {
            err!("{}: no [images.{}] table says what the image is for", path.display(), self.name)
        })?;
        Ok(Info { about: info.about.clone(), expect: Expect::parse(&info.expect)? })
    }
}

/// Look an image up by name.
pub fn find(name: &str) -> Result<Image> {
    IMAGES.iter().copied().find(|i| i.name == name).ok_or_else(|| {
        let names: Vec<_> = IMAGES.iter().map(|i| i.name).collect();
        err!("unknown image {name:?}; known images: {}", names.join(", "))
    })
}

/// The program modules that are VMMs: their crate declares `[package.metadata.system]
/// role = "vmm"` in its Cargo.toml (see `programs`), so a manifest cannot hand a VM to a
/// program that does not serve one.
pub fn vmm_modules() -> Result<Vec<&'static str>> {
    crate::programs::modules_with_role("vmm")
}

/// The program modules that are device models (`role = "device-model"`): the only ones a
/// VM's device may run as out of process (`protocols::device_model`).
pub fn device_model_modules() -> Result<Vec<&'static str>> {
    crate::programs::modules_with_role("device-model")
}

/// Every boot module a manifest can name: the programs, then the test guests (besides
/// them an image carries only `init` and the manifest itself).
pub fn modules() -> Result<Vec<&'static str>> {
    let programs = crate::programs::all()?.iter().map(|p| p.module.as_str());
    Ok(programs.chain(cargo::GUESTS.iter().copied()).collect())
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Build (or rebuild) the image's ISO; returns its path.
pub fn build(image: Image) -> Result<PathBuf> {
    build_with(image, &[])
}

/// [`build`] with a kernel built with `kernel_features`, as its own image (named after
/// them).
pub fn build_with(image: Image, kernel_features: &[&str]) -> Result<PathBuf> {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let images = crate::target_dir().join("images");
    fs::create_dir_all(&images)?;
    // Other processes (a test run beside an `xtask run`) build into the same tree.
    let lock = fs::File::create(images.join(".lock"))?;
    lock.lock()?;
    crate::deps::ensure(&[crate::deps::Need::Grub])?;
    let kernel = cargo::build_kernel(kernel_features)?;
    let name = kernel_features.iter().fold(image.name.to_string(), |n, f| n + "-" + f);
    let user = cargo::build_user()?;
    let init = mutate(&fs::read(user.join("init"))?, image.init)?;
    let guests = cargo::build_guests()?;

    let dir = images.join(&name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("boot/grub"))?;
    fs::copy(&kernel, dir.join("boot/kernel"))?;
    fs::write(dir.join("boot/init"), init)?;
    for program in crate::programs::all()? {
        fs::copy(user.join(&program.package), dir.join("boot").join(&program.module))?;
    }
    for g in cargo::GUESTS {
        fs::copy(guests.join(g), dir.join("boot").join(g))?;
    }
    let manifest_path = crate::root().join("images").join(image.manifest);
    let text =
        fs::read_to_string(&manifest_path).map_err(|e| err!("{}: {e}", manifest_path.display()))?;
    if image.linux {
        let guest = crate::linux::prepare()?;
        fs::copy(&guest.kernel, dir.join("boot").join(crate::linux::KERNEL_MODULE))?;
        fs::copy(&guest.initramfs, dir.join("boot").join(crate::linux::INITRAMFS_MODULE))?;
        if image.broken_linux {
            for (name, bytes) in crate::linux::broken(&fs::read(&guest.kernel)?) {
                fs::write(dir.join("boot").join(name), bytes)?;
            }
        }
    }
    let mut manifest = crate::manifest::encode(&manifest_path, &text, &image.modules()?)?;
    let carried = carried(&manifest)?;
    if image.corrupt_manifest {
        manifest.truncate(manifest.len() / 2);
    }
    fs::write(dir.join("boot/manifest"), manifest)?;
    fs::write(dir.join("boot/grub/grub.cfg"), grub_cfg(image.cmdline, &carried))?;
    let iso = images.join(format!("{name}.iso"));
    mkrescue(&dir, &iso)?;
    Ok(iso)
}

/// The boot modules an image with the encoded `manifest` carries: every program (the
/// root task may start any), and of the guests only those its VMs boot, so that the
/// kernel's room for boot modules (`bootinfo::MAX_MODULES`) bounds what one image uses,
/// not how many guests the tree has.
fn carried(manifest: &[u8]) -> Result<Vec<String>> {
    let m = protocols::manifest::Manifest::decode(manifest)
        .map_err(|e| err!("the encoded manifest does not decode: {e:?}"))?;
    let programs = crate::programs::all()?.iter().map(|p| p.module.clone());
    let mut guests: Vec<String> = Vec::new();
    for vm in &m.vms {
        for g in core::iter::once(vm.guest).chain(vm.linux.and_then(|l| l.initrd)) {
            if !guests.iter().any(|x| x == g) {
                guests.push(g.to_string());
            }
        }
    }
    Ok(programs.chain(guests).collect())
}

fn grub_cfg(cmdline: &str, modules: &[String]) -> String {
    let mut lines = String::from("  module2 /boot/init init\n  module2 /boot/manifest manifest\n");
    for m in modules {
        lines.push_str(&format!("  module2 /boot/{m} {m}\n"));
    }
    format!(
        "set timeout=0\nset default=0\n{KEEP_EFI_MODE}menuentry \"microkernel\" {{\n  multiboot2 /boot/kernel {cmdline}\n{lines}  boot\n}}\n"
    )
}

/// Where Debian keeps GRUB's BIOS modules (grub-mkrescue's default).
const DEBIAN_GRUB_PC: &str = "/usr/lib/grub/i386-pc";

/// For grub.cfg: under UEFI there is no text mode to fall back to, so GRUB keeps the
/// firmware's video mode rather than search for one it has no driver for (the kernel
/// prints to the serial port either way).
pub const KEEP_EFI_MODE: &str = "if [ \"$grub_platform\" = efi ]; then set gfxpayload=keep; fi\n";

fn mkrescue(dir: &Path, iso: &Path) -> Result<()> {
    mkrescue_with(dir, iso, "multiboot2")
}

/// The modules every image's GRUB carries besides its loader: the configuration, the ISO's
/// file system, and every partition map (GRUB's EFI image probes them all at start).
const GRUB_MODULES: &str = "normal configfile test iso9660 part_msdos part_gpt part_apple \
    part_acorn part_amiga part_bsd part_dfly part_dvh part_plan part_sun part_sunpc";

/// Make a hybrid ISO of `dir` that boots through a BIOS (El Torito) and through UEFI (an
/// EFI system partition image), whose GRUB carries `loader` (a GRUB loader module).
pub fn mkrescue_with(dir: &Path, iso: &Path, loader: &str) -> Result<()> {
    let modules = format!("{loader} {GRUB_MODULES}");
    let mut cmd = Command::new(crate::deps::grub_mkrescue());
    // grub-mkrescue finds Debian's folder itself, and with it any other platform
    // installed beside; name the folder only where GRUB keeps it elsewhere.
    if let Some(pc) = crate::deps::grub_pc_dir().filter(|d| d != Path::new(DEBIAN_GRUB_PC)) {
        cmd.arg("-d").arg(pc);
    }
    let out = cmd
        .args([
            &format!("--install-modules={modules}"),
            "--locales=",
            "--fonts=",
            "--themes=",
            "--compress=no",
            "-o",
        ])
        .arg(iso)
        .arg(dir)
        .output()?;
    if !out.status.success() {
        return Err(err!("grub-mkrescue failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

fn put_u16(b: &mut [u8], at: usize, v: u16) -> Result<()> {
    b.get_mut(at..at + 2)
        .ok_or_else(|| err!("init ELF too short"))?
        .copy_from_slice(&v.to_le_bytes());
    Ok(())
}

fn get_u64(b: &[u8], at: usize) -> Result<u64> {
    let s = b.get(at..at + 8).ok_or_else(|| err!("init ELF too short"))?;
    Ok(u64::from_le_bytes(s.try_into().map_err(|_| err!("init ELF too short"))?))
}

/// Derive a broken init from the real one.
pub fn mutate(elf: &[u8], variant: InitVariant) -> Result<Vec<u8>> {
    let mut b = elf.to_vec();
    match variant {
        InitVariant::Intact => {}
        InitVariant::Truncated => b.truncate(100),
        InitVariant::WrongMachine => put_u16(&mut b, 18, 0x28)?,
        InitVariant::KernelOverlap => {
            let phoff = get_u64(&b, 32)? as usize;
            let phnum = b.get(56..58).map_or(0, |n| u16::from_le_bytes([n[0], n[1]])) as usize;
            let first_load = (0..phnum)
                .map(|i| phoff + i * 56)
                .find(|&at| b.get(at..at + 4) == Some(&1u32.to_le_bytes()[..]))
                .ok_or_else(|| err!("init ELF has no PT_LOAD"))?;
            // p_vaddr sits 16 bytes into the program header.
            let kernel = 0xffff_ffff_8010_0000u64.to_le_bytes();
            b.get_mut(first_load + 16..first_load + 24)
                .ok_or_else(|| err!("init ELF too short"))?
                .copy_from_slice(&kernel);
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::{Expect, IMAGES};

    #[test]
    fn an_image_carries_every_program_and_only_the_guests_its_vms_boot() {
        for image in IMAGES {
            let path = crate::root().join("images").join(image.manifest);
            let text = std::fs::read_to_string(&path).unwrap();
            let manifest =
                crate::manifest::encode(&path, &text, &image.modules().unwrap()).unwrap();
            let carried = super::carried(&manifest).unwrap();
            for p in crate::programs::all().unwrap() {
                assert!(carried.contains(&p.module), "{}: {}", image.name, p.module);
            }
            for g in crate::cargo::GUESTS {
                let booted = text.contains(&format!("guest = \"{g}\""));
                assert_eq!(carried.iter().any(|c| c == g), booted, "{}: {g}", image.name);
            }
            // The kernel lists this many, besides init and the manifest.
            assert!(carried.len() + 2 <= protocols::bootinfo::MAX_MODULES, "{}", image.name);
        }
    }
    use crate::emulator::{Outcome, Verdict};

    fn outcome(verdict: Verdict, serial: &str) -> Outcome {
        Outcome {
            verdict,
            serial: serial.into(),
            emulator_log: String::new(),
            stderr: String::new(),
            dir: Default::default(),
        }
    }

    #[test]
    fn every_image_says_what_it_is_for_and_what_it_expects() {
        for image in IMAGES {
            let info = image.info().unwrap_or_else(|e| panic!("{}: {e}", image.name));
            assert!(!info.about.is_empty(), "{}", image.name);
            let refused = image.name.starts_with("bad-") || image.name == "process-refused";
            assert_eq!(matches!(info.expect, Expect::Refused(_)), refused, "{}", image.name);
        }
    }

    #[test]
    fn a_manifest_names_only_images_built_from_it() {
        let dir = crate::root().join("images");
        for manifest in ["default.toml", "process-refused.toml", "trace.toml", "linux.toml"] {
            let path = dir.join(manifest);
            let text = std::fs::read_to_string(&path).unwrap();
            for name in crate::manifest::images(&path, &text).unwrap().keys() {
                let image = super::find(name).unwrap();
                assert_eq!(image.manifest, manifest, "{name}");
            }
        }
    }

    #[test]
    fn expectations_are_parsed_and_judged() {
        assert_eq!(Expect::parse("pass").unwrap(), Expect::Pass);
        let refused = Expect::parse("refused: init refused").unwrap();
        assert_eq!(refused, Expect::Refused("init refused".into()));
        assert!(Expect::parse("refused:").is_err());
        assert!(Expect::parse("fail").unwrap_err().to_string().contains("\"refused: TEXT\""));

        let clean = outcome(Verdict::Fail(Some(35)), "kernel: init refused\n");
        assert_eq!(refused.judge(&clean).unwrap(), "refused as expected: init refused");
        assert!(Expect::Pass.judge(&clean).unwrap_err().contains("exited with status 35"));
        let other = outcome(Verdict::Fail(Some(35)), "kernel: something else\n");
        assert!(refused.judge(&other).unwrap_err().contains("lacks the expected refusal"));
        let hang = outcome(Verdict::TimedOut, "kernel: init refused\n");
        assert!(refused.judge(&hang).unwrap_err().contains("timeout"));
        let passed = outcome(Verdict::Pass, "");
        assert!(refused.judge(&passed).unwrap_err().contains("a refusal was expected"));
        assert!(Expect::Pass.judge(&passed).is_ok());
    }
}
