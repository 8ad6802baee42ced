//! Host tools the build needs, where they are, and how they get installed.
//!
//! Each program and firmware file is found by asking the system (an environment variable
//! naming it, then `PATH` or the places distributions put it, Debian's first), so nothing
//! assumes one distribution's layout. Only what the command at hand needs is checked: a
//! QEMU run never asks for Bochs. On Debian, as root, what is missing is installed with
//! `apt-get install --no-remove`, after a dry run: an install that would remove a package
//! the user has (a newer release's `qemu-utils`, say) stops with what conflicts and how to
//! resolve it, and nothing is changed. Elsewhere the exact command is printed instead.

use crate::progress::Status;
use crate::{err, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A group of host tools one kind of work needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Assembling hybrid BIOS + UEFI ISOs: `grub-mkrescue` with GRUB's BIOS and x86-64 EFI
    /// modules, `xorriso`, `mformat`.
    Grub,
    /// Booting under QEMU.
    Qemu,
    /// Booting under QEMU through UEFI: the OVMF firmware.
    Ovmf,
    /// Booting under Bochs: the emulator with its debugger, its BIOS and a VGA BIOS.
    Bochs,
}

impl Need {
    /// Every need: what `cargo xtask test` uses.
    pub const ALL: &'static [Need] = &[Need::Grub, Need::Qemu, Need::Ovmf, Need::Bochs];

    /// Debian's packages for it.
    fn apt_packages(self) -> &'static [&'static str] {
        match self {
            Need::Grub => {
                &["grub-pc-bin", "grub-efi-amd64-bin", "grub-common", "xorriso", "mtools"]
            }
            Need::Qemu => &["qemu-system-x86"],
            Need::Ovmf => &["ovmf"],
            Need::Bochs => &["bochs", "bochsbios", "vgabios", "bochs-term"],
        }
    }

    /// What it is, for messages on systems without apt.
    fn words(self) -> &'static str {
        match self {
            Need::Grub => {
                "GRUB for BIOS and UEFI (grub-mkrescue, the i386-pc and x86_64-efi modules), \
                 xorriso, mtools"
            }
            Need::Qemu => "QEMU for x86-64 (qemu-system-x86_64)",
            Need::Ovmf => "OVMF, the UEFI firmware for QEMU (one image, code and variables)",
            Need::Bochs => {
                "Bochs built with its debugger and the term display, its BIOS, a VGA BIOS"
            }
        }
    }
}

/// A program or file the build uses: the variable that overrides it and where to look.
struct Lookup {
    var: &'static str,
    /// Program names searched on `PATH` (empty for a file).
    programs: &'static [&'static str],
    /// File paths tried in order (Debian's first); `$BXSHARE/...` is relative to Bochs's
    /// share folder when that variable is set.
    files: &'static [&'static str],
    /// For a folder: a file inside it that shows it is the right one.
    inside: Option<&'static str>,
}

const QEMU: Lookup =
    Lookup { var: "XTASK_QEMU", programs: &["qemu-system-x86_64"], files: &[], inside: None };
const BOCHS: Lookup =
    Lookup { var: "XTASK_BOCHS", programs: &["bochs-bin", "bochs"], files: &[], inside: None };
const BOCHS_BIOS: Lookup = Lookup {
    var: "XTASK_BOCHS_BIOS",
    programs: &[],
    files: &[
        "$BXSHARE/BIOS-bochs-latest",
        "/usr/share/bochs/BIOS-bochs-latest",
        "/usr/local/share/bochs/BIOS-bochs-latest",
        "/opt/homebrew/share/bochs/BIOS-bochs-latest",
    ],
    inside: None,
};
const VGABIOS: Lookup = Lookup {
    var: "XTASK_VGABIOS",
    programs: &[],
    files: &[
        "/usr/share/vgabios/vgabios.bin",
        "$BXSHARE/VGABIOS-lgpl-latest",
        "/usr/share/bochs/VGABIOS-lgpl-latest",
        "/usr/local/share/bochs/VGABIOS-lgpl-latest",
        "/opt/homebrew/share/bochs/VGABIOS-lgpl-latest",
    ],
    inside: None,
};
const GRUB_MKRESCUE: Lookup = Lookup {
    var: "XTASK_GRUB_MKRESCUE",
    programs: &["grub-mkrescue", "grub2-mkrescue"],
    files: &[],
    inside: None,
};
/// GRUB's BIOS platform folder (grub-mkrescue's `-d`), found by its Multiboot2 module.
const GRUB_PC: Lookup = Lookup {
    var: "XTASK_GRUB_PC_DIR",
    programs: &[],
    files: &["/usr/lib/grub/i386-pc", "/usr/lib/grub2/i386-pc", "/usr/share/grub2/i386-pc"],
    inside: Some("multiboot2.mod"),
};
/// GRUB's x86-64 EFI platform folder, which makes the ISO boot through UEFI as well.
const GRUB_EFI: Lookup = Lookup {
    var: "XTASK_GRUB_EFI_DIR",
    programs: &[],
    files: &[
        "/usr/lib/grub/x86_64-efi",
        "/usr/lib/grub2/x86_64-efi",
        "/usr/share/grub2/x86_64-efi",
    ],
    inside: Some("multiboot2.mod"),
};
/// OVMF as one image (code and variables), which QEMU's `-bios` takes.
const OVMF: Lookup = Lookup {
    var: "XTASK_OVMF",
    programs: &[],
    files: &[
        "/usr/share/ovmf/OVMF.fd",
        "/usr/share/qemu/OVMF.fd",
        "/usr/share/edk2/x64/OVMF.fd",
        "/usr/share/edk2-ovmf/x64/OVMF.fd",
    ],
    inside: None,
};

impl Lookup {
    fn find(&self) -> Option<PathBuf> {
        if let Some(v) = std::env::var_os(self.var) {
            // What the user named, or nothing: never a default behind their back.
            let p = PathBuf::from(v);
            return p.exists().then_some(p);
        }
        if let Some(p) = self.programs.iter().find_map(|p| on_path(p)) {
            return Some(p);
        }
        let share = std::env::var("BXSHARE").ok();
        self.files
            .iter()
            .filter_map(|f| match (f.strip_prefix("$BXSHARE"), &share) {
                (Some(rest), Some(s)) => Some(PathBuf::from(format!("{s}{rest}"))),
                (Some(_), None) => None,
                (None, _) => Some(PathBuf::from(f)),
            })
            .find(|p| self.inside.map_or_else(|| p.clone(), |f| p.join(f)).exists())
    }

    /// The path, or the first default (for a message that names what is missing).
    fn path(&self) -> PathBuf {
        self.find().unwrap_or_else(|| {
            PathBuf::from(
                self.programs.first().copied().or(self.files.get(1).copied()).unwrap_or(""),
            )
        })
    }

    /// What to tell a user for whom it is missing.
    fn missing(&self) -> String {
        match std::env::var_os(self.var) {
            Some(v) => format!("{} = {} does not exist", self.var, Path::new(&v).display()),
            None if !self.programs.is_empty() => {
                format!("{} (not on PATH; or set {})", self.programs.join(" or "), self.var)
            }
            None => format!("{} (or set {})", self.files.join(" or "), self.var),
        }
    }
}

/// QEMU's program.
pub fn qemu() -> PathBuf {
    QEMU.path()
}

/// Bochs's program (Debian's `bochs-bin` is the emulator itself, without the wrapper).
pub fn bochs() -> PathBuf {
    BOCHS.path()
}

/// Bochs's BIOS ROM.
pub fn bochs_bios() -> PathBuf {
    BOCHS_BIOS.path()
}

/// The VGA BIOS ROM Bochs loads.
pub fn vgabios() -> PathBuf {
    VGABIOS.path()
}

/// `grub-mkrescue` (`grub2-mkrescue` on Fedora).
pub fn grub_mkrescue() -> PathBuf {
    GRUB_MKRESCUE.path()
}

/// OVMF's firmware image.
pub fn ovmf() -> PathBuf {
    OVMF.path()
}

/// GRUB's i386-pc folder, when it was found.
pub fn grub_pc_dir() -> Option<PathBuf> {
    GRUB_PC.find()
}

fn lookups(need: Need) -> &'static [Lookup] {
    const GRUB: &[Lookup] = &[
        GRUB_MKRESCUE,
        GRUB_PC,
        GRUB_EFI,
        Lookup { var: "XTASK_XORRISO", programs: &["xorriso"], files: &[], inside: None },
        Lookup { var: "XTASK_MFORMAT", programs: &["mformat"], files: &[], inside: None },
    ];
    match need {
        Need::Grub => GRUB,
        Need::Qemu => std::slice::from_ref(&QEMU),
        Need::Ovmf => std::slice::from_ref(&OVMF),
        Need::Bochs => &[BOCHS, BOCHS_BIOS, VGABIOS],
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// Make sure the bare-metal Rust target and the host tools of `needs` are present,
/// installing what is missing where that is safe.
pub fn ensure(needs: &[Need]) -> Result<()> {
    ensure_rust_target()?;
    let missing = |needs: &[Need]| -> (Vec<Need>, Vec<&'static Lookup>) {
        let mut which = Vec::new();
        let mut what = Vec::new();
        for &need in needs {
            let gone: Vec<&Lookup> = lookups(need).iter().filter(|l| l.find().is_none()).collect();
            if !gone.is_empty() {
                which.push(need);
                what.extend(gone);
            }
        }
        (which, what)
    };
    let (missing_needs, missing_what) = missing(needs);
    if missing_needs.is_empty() {
        return Ok(());
    }
    let what = missing_what.iter().map(|l| l.missing()).collect::<Vec<_>>().join("\n  ");
    // A path the user named that does not exist is theirs to fix; installing would not.
    if missing_what.iter().any(|l| std::env::var_os(l.var).is_some()) {
        return Err(err!("missing host tools:\n  {what}"));
    }
    if on_path("apt-get").is_none() {
        let words: Vec<&str> = missing_needs.iter().map(|n| n.words()).collect();
        return Err(err!(
            "missing host tools:\n  {what}\ninstall {} with your package manager, or point the \
             variables above at them",
            words.join("; ")
        ));
    }
    let mut packages: Vec<&str> =
        missing_needs.iter().flat_map(|n| n.apt_packages()).copied().collect();
    packages.dedup();
    let list = packages.join(" ");
    if !is_root() {
        return Err(err!(
            "missing host tools:\n  {what}\ninstall them with:\n  \
             sudo apt-get install --no-remove --no-install-recommends {list}"
        ));
    }
    apt_install(&packages)?;
    let (_, still) = missing(needs);
    if still.is_empty() {
        Ok(())
    } else {
        let what = still.iter().map(|l| l.missing()).collect::<Vec<_>>().join("\n  ");
        Err(err!("installed {list}, but these are still missing:\n  {what}"))
    }
}

/// Install Debian packages without removing or downgrading anything.
fn apt_install(packages: &[&str]) -> Result<()> {
    let list = packages.join(" ");
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive").stdin(Stdio::null());
        c
    };
    Status::start("apt-get update").run(&mut apt(&["update", "-q"]), "apt-update")?;
    // A dry run first: apt-get's resolver may otherwise remove a package the user installed
    // (a newer release's qemu-utils that conflicts with this release's QEMU).
    let install = ["install", "-y", "-q", "--no-install-recommends", "--no-remove"];
    let dry = apt(&install).arg("-s").args(packages).output()?;
    let said =
        String::from_utf8_lossy(&dry.stdout).into_owned() + &String::from_utf8_lossy(&dry.stderr);
    let removals: Vec<&str> = said.lines().filter(|l| l.starts_with("Remv ")).collect();
    if !dry.status.success() || !removals.is_empty() {
        let why: Vec<&str> = said
            .lines()
            .filter(|l| {
                l.starts_with("Remv ")
                    || l.contains("Depends:")
                    || l.contains("Breaks:")
                    || l.contains("Conflicts:")
                    || l.starts_with("E: ")
            })
            .collect();
        return Err(err!(
            "installing {list} would change packages you already have, so nothing was \
             installed. apt-get says:\n  {}\nResolve it by installing versions that match \
             what you have (for a package from a newer release, the same release's \
             {list}: `apt-get install -t RELEASE {list}`), or install the tools your own \
             way and point XTASK_QEMU, XTASK_BOCHS, XTASK_BOCHS_BIOS, XTASK_VGABIOS, \
             XTASK_GRUB_MKRESCUE, XTASK_GRUB_PC_DIR, XTASK_GRUB_EFI_DIR or XTASK_OVMF at them",
            why.join("\n  ")
        ));
    }
    Status::start(format!("installing {list}"))
        .run(apt(&install).args(packages), "apt-install")
        .map_err(|e| err!("apt-get install {list} failed: {e}"))
}

fn ensure_rust_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(crate::root())
        .output();
    match out {
        Ok(o)
            if String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "x86_64-unknown-none") =>
        {
            Ok(())
        }
        Ok(_) => Status::start("adding the x86_64-unknown-none Rust target")
            .run(
                Command::new("rustup")
                    .args(["target", "add", "x86_64-unknown-none"])
                    .current_dir(crate::root()),
                "rustup-target",
            )
            .map_err(|e| err!("`rustup target add x86_64-unknown-none` failed: {e}")),
        Err(_) => {
            Err(err!("rustup not found; install the x86_64-unknown-none target for your toolchain"))
        }
    }
}
