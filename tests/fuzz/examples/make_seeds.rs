//! Regenerates the checked-in seed corpus (`corpus/<target>/`) from `fuzz::seeds`.
//!
//! Run from the repository root after `cargo xtask build` (so the real `init` ELF is a
//! seed too): `cargo run --manifest-path tests/fuzz/Cargo.toml --example make_seeds`.
//! Only the named seed files are written; inputs libFuzzer added are left alone. Naming
//! targets (`... --example make_seeds -- syscalls`) regenerates only theirs.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let init_path = here.join("../../target/user/x86_64-unknown-none/release/init");
    let init = std::fs::read(&init_path).ok();
    if init.is_none() {
        eprintln!("no {} (run `cargo xtask build`); the init seed is skipped", init_path.display());
    }
    // Target names on the command line regenerate only those targets' seeds.
    let only: Vec<String> = std::env::args().skip(1).collect();
    for (target, seeds) in fuzz::seeds::all(init.as_deref()) {
        if !only.is_empty() && !only.iter().any(|t| t == target) {
            continue;
        }
        let dir = here.join("corpus").join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in seeds {
            std::fs::write(dir.join(&name), &bytes)?;
            println!("{target}/{name}: {} bytes", bytes.len());
        }
    }
    Ok(())
}
