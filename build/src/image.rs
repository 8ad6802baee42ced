//! Bootable images: the kernel plus boot modules in a GRUB (Multiboot2) ISO.
//!
//! `default` is the system people boot. The `bad-init-*` images carry a deliberately
//! broken init module, made from the real one, to prove the kernel refuses it cleanly;
//! `bad-manifest` and `process-refused` prove the same of the root task for a manifest
//! module that does not decode and for a process the machine cannot make.

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
    /// What it is for.
    pub about: &'static str,
    /// Its system manifest, under `images/`.
    pub manifest: &'static str,
    /// Cut the encoded manifest short (to prove the root task refuses it cleanly).
    pub corrupt_manifest: bool,
    /// The kernel command line.
    pub cmdline: &'static str,
}

/// Every image this tree knows.
pub const IMAGES: &[Image] = &[
    Image {
        name: "default",
        init: InitVariant::Intact,
        about: "the kernel, the root task and the test VMs",
        manifest: "default.toml",
        corrupt_manifest: false,
        cmdline: "",
    },
    Image {
        name: "bad-init-truncated",
        init: InitVariant::Truncated,
        about: "init cut short",
        manifest: "default.toml",
        corrupt_manifest: false,
        cmdline: "",
    },
    Image {
        name: "bad-init-machine",
        init: InitVariant::WrongMachine,
        about: "init built for ARM",
        manifest: "default.toml",
        corrupt_manifest: false,
        cmdline: "",
    },
    Image {
        name: "bad-init-kernel-overlap",
        init: InitVariant::KernelOverlap,
        about: "init with a segment inside kernel space",
        manifest: "default.toml",
        corrupt_manifest: false,
        cmdline: "",
    },
    Image {
        name: "bad-manifest",
        init: InitVariant::Intact,
        about: "a manifest module cut short",
        manifest: "default.toml",
        corrupt_manifest: true,
        cmdline: "",
    },
    Image {
        name: "process-refused",
        init: InitVariant::Intact,
        about: "a process the machine has too little memory for, before the console driver",
        manifest: "process-refused.toml",
        corrupt_manifest: false,
        cmdline: "",
    },
    Image {
        name: "pit-tick",
        init: InitVariant::Intact,
        about: "the default system with the PIT as the tick (no local APIC timer)",
        manifest: "default.toml",
        corrupt_manifest: false,
        cmdline: "tick=pit",
    },
    Image {
        name: "trace",
        init: InitVariant::Intact,
        about: "the root task's checks and guest32 alone, its VMM printing an exit trace",
        manifest: "trace.toml",
        corrupt_manifest: false,
        cmdline: "",
    },
];

/// Look an image up by name.
pub fn find(name: &str) -> Result<Image> {
    IMAGES.iter().copied().find(|i| i.name == name).ok_or_else(|| {
        let names: Vec<_> = IMAGES.iter().map(|i| i.name).collect();
        err!("unknown image {name:?}; known images: {}", names.join(", "))
    })
}

/// The boot modules that are ring-3 programs a manifest can start, as
/// `(module, program built by cargo::build_user)`; the console driver comes first, as
/// every other process prints through it.
pub const PROGRAM_MODULES: &[(&str, &str)] =
    &[("console", "console-driver"), ("fuzzer", "syscall-fuzzer"), ("vmm", "vmm-server")];

/// Every boot module a manifest can name: the programs, then the test guests (besides
/// them an image carries only `init` and the manifest itself).
pub fn modules() -> Vec<&'static str> {
    PROGRAM_MODULES.iter().map(|(m, _)| *m).chain(cargo::GUESTS.iter().copied()).collect()
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Build (or rebuild) the image's ISO; returns its path.
pub fn build(image: Image) -> Result<PathBuf> {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let images = crate::target_dir().join("images");
    fs::create_dir_all(&images)?;
    // Other processes (a test run beside an `xtask run`) build into the same tree.
    let lock = fs::File::create(images.join(".lock"))?;
    lock.lock()?;
    crate::deps::ensure()?;
    let kernel = cargo::build_kernel()?;
    let user = cargo::build_user()?;
    let init = mutate(&fs::read(user.join("init"))?, image.init)?;
    let guests = cargo::build_guests()?;

    let dir = images.join(image.name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("boot/grub"))?;
    fs::copy(&kernel, dir.join("boot/kernel"))?;
    fs::write(dir.join("boot/init"), init)?;
    for (module, program) in PROGRAM_MODULES {
        fs::copy(user.join(program), dir.join("boot").join(module))?;
    }
    for g in cargo::GUESTS {
        fs::copy(guests.join(g), dir.join("boot").join(g))?;
    }
    let manifest_path = crate::root().join("images").join(image.manifest);
    let text =
        fs::read_to_string(&manifest_path).map_err(|e| err!("{}: {e}", manifest_path.display()))?;
    let mut manifest = crate::manifest::encode(&manifest_path, &text, &modules())?;
    if image.corrupt_manifest {
        manifest.truncate(manifest.len() / 2);
    }
    fs::write(dir.join("boot/manifest"), manifest)?;
    fs::write(dir.join("boot/grub/grub.cfg"), grub_cfg(image.cmdline))?;
    let iso = images.join(format!("{}.iso", image.name));
    mkrescue(&dir, &iso)?;
    Ok(iso)
}

fn grub_cfg(cmdline: &str) -> String {
    let mut lines = String::from("  module2 /boot/init init\n  module2 /boot/manifest manifest\n");
    for m in modules() {
        lines.push_str(&format!("  module2 /boot/{m} {m}\n"));
    }
    format!(
        "set timeout=0\nset default=0\nmenuentry \"microkernel\" {{\n  multiboot2 /boot/kernel {cmdline}\n{lines}  boot\n}}\n"
    )
}

fn mkrescue(dir: &Path, iso: &Path) -> Result<()> {
    let out = Command::new("grub-mkrescue")
        .args([
            "--install-modules=multiboot2 normal iso9660 biosdisk part_msdos configfile",
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
