//! Building the freestanding binaries for `x86_64-unknown-none`.
//!
//! The kernel and the user programs need different code models, so each group gets its
//! own cargo invocation, target directory and flags; nothing is set globally, which keeps
//! host builds and tests untouched.

use crate::{err, Result};
use std::path::PathBuf;
use std::process::Command;

/// The bare-metal target triple.
pub const TARGET: &str = "x86_64-unknown-none";

/// Flags of the ring-3 build: static executables at 4 MiB with page-aligned segments (the
/// loaders map whole pages with one set of permissions each). Debug information stays out
/// of boot modules, which the root task loads page by page.
pub const USER_RUSTFLAGS: &[&str] = &[
    "-Crelocation-model=static",
    "-Cstrip=debuginfo",
    "-Clink-arg=--no-pie",
    "-Clink-arg=-zseparate-loadable-segments",
    "-Clink-arg=-zmax-page-size=0x1000",
    "-Clink-arg=--build-id=none",
    "-Clink-arg=--image-base=0x400000",
];
/// Flags of the kernel build: it runs in the top 2 GiB.
pub const KERNEL_RUSTFLAGS: &[&str] = &["-Ccode-model=kernel", "-Crelocation-model=static"];

/// Features of the images' user programs: their VMM runs the test modes (hostile,
/// mutating, traced VMs and the test hypercalls); the production VMM is built without.
pub const USER_FEATURES: &[&str] = &["vmm-server/test-modes"];

fn cargo_build(packages: &[&str], target_subdir: &str, rustflags: &[&str]) -> Result<PathBuf> {
    cargo_build_with(packages, target_subdir, rustflags, &[])
}

fn cargo_build_with(
    packages: &[&str],
    target_subdir: &str,
    rustflags: &[&str],
    features: &[&str],
) -> Result<PathBuf> {
    let target_dir = crate::target_dir().join(target_subdir);
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(crate::root())
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags.join("\x1f"))
        .env_remove("RUSTFLAGS");
    for p in packages {
        cmd.args(["-p", p]);
    }
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    crate::progress::Status::start(format!("building {target_subdir} ({})", packages.join(", ")))
        .run(&mut cmd, &format!("build-{target_subdir}"))
        .map_err(|e| err!("building {} for {TARGET} failed: {e}", packages.join(", ")))?;
    Ok(target_dir.join(TARGET).join("release"))
}

/// Build the kernel with `features` (none for every image but a traced one), each set in
/// a target directory of its own; returns the path of its ELF.
pub fn build_kernel(features: &[&str]) -> Result<PathBuf> {
    let subdir = features.iter().fold(String::from("kernel"), |d, f| d + "-" + f);
    let dir = cargo_build_with(&["kernel"], &subdir, KERNEL_RUSTFLAGS, features)?;
    Ok(dir.join("kernel"))
}

/// The test guests (`images/guests`), each a module of the default image.
pub const GUESTS: &[&str] = &[
    "guest64",
    "guest32",
    "guest_real",
    "guest_triple",
    "guest_bench",
    "guest_controls",
    "guest_devices",
    "guest_restart",
];

/// Build the test guests; returns the directory holding their ELFs.
pub fn build_guests() -> Result<PathBuf> {
    cargo_build(&["test-guests"], "guests", &["-Crelocation-model=static"])
}

/// Build every user program as the images carry them; returns the directory holding
/// their ELFs.
pub fn build_user() -> Result<PathBuf> {
    cargo_build_with(&crate::programs::packages()?, "user", USER_RUSTFLAGS, USER_FEATURES)
}

/// Build `program` as [`build_user`] does but keeping its debug information (the code is
/// the same: stripping is the linker's last step), to name addresses of the stripped
/// one; returns the path of its ELF.
pub fn build_user_symbols(program: &str) -> Result<PathBuf> {
    let flags: Vec<&str> =
        USER_RUSTFLAGS.iter().copied().filter(|f| !f.starts_with("-Cstrip")).collect();
    Ok(cargo_build_with(&[program], "user-symbols", &flags, USER_FEATURES)?.join(program))
}
