//! Host tools the build needs. As root they are installed with apt-get; otherwise the
//! exact command to run is printed and the build stops.

use crate::{err, Result};
use std::process::Command;

/// A host program and the Debian packages that provide it (and what else it needs).
struct Tool {
    program: &'static str,
    packages: &'static [&'static str],
}

const TOOLS: &[Tool] = &[
    Tool { program: "qemu-system-x86_64", packages: &["qemu-system-x86"] },
    Tool { program: "bochs-bin", packages: &["bochs", "bochsbios", "vgabios", "bochs-term"] },
    Tool {
        program: "grub-mkrescue",
        packages: &["grub-pc-bin", "grub-common", "xorriso", "mtools"],
    },
    Tool { program: "xorriso", packages: &["xorriso"] },
    Tool { program: "mformat", packages: &["mtools"] },
];

/// Files that must exist besides programs (GRUB's BIOS modules, Bochs's ROMs).
const FILES: &[(&str, &str)] = &[
    ("/usr/lib/grub/i386-pc/multiboot2.mod", "grub-pc-bin"),
    ("/usr/share/bochs/BIOS-bochs-latest", "bochsbios"),
    ("/usr/share/vgabios/vgabios.bin", "vgabios"),
];

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// Make sure the bare-metal Rust target and every host tool are present.
pub fn ensure() -> Result<()> {
    ensure_rust_target()?;
    let mut missing: Vec<&str> = Vec::new();
    for t in TOOLS.iter().filter(|t| !on_path(t.program)) {
        missing.extend(t.packages);
    }
    for (file, pkg) in FILES {
        if !std::path::Path::new(file).exists() {
            missing.push(pkg);
        }
    }
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        return Err(err!(
            "missing host packages; install them with:\n  sudo apt-get install -y {list}"
        ));
    }
    eprintln!("xtask: installing {list}");
    let update = Command::new("apt-get").args(["update", "-q"]).status()?;
    if !update.success() {
        return Err(err!("apt-get update failed"));
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?;
    if !status.success() {
        return Err(err!("apt-get install {list} failed"));
    }
    Ok(())
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
        Ok(_) => {
            eprintln!("xtask: adding the x86_64-unknown-none target");
            let s = Command::new("rustup")
                .args(["target", "add", "x86_64-unknown-none"])
                .current_dir(crate::root())
                .status()?;
            if s.success() {
                Ok(())
            } else {
                Err(err!("`rustup target add x86_64-unknown-none` failed"))
            }
        }
        Err(_) => {
            Err(err!("rustup not found; install the x86_64-unknown-none target for your toolchain"))
        }
    }
}
