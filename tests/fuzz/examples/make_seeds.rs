//! Regenerates the checked-in seed corpus (`corpus/<target>/`) from `fuzz::seeds`.
//!
//! Run from the repository root after `cargo xtask build` (so the real `init` ELF is a
//! seed too): `cargo run --manifest-path tests/fuzz/Cargo.toml --example make_seeds`.
//! Only the named seed files are written; inputs libFuzzer added are left alone.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let init_path = here.join("../../target/user/x86_64-unknown-none/release/init");
    let init = std::fs::read(&init_path).ok();
    if init.is_none() {
        eprintln!("no {} (run `cargo xtask build`); the init seed is skipped", init_path.display());
    }
    for (target, seeds) in fuzz::seeds::all(init.as_deref()) {
        let dir = here.join("corpus").join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in seeds {
            std::fs::write(dir.join(&name), &bytes)?;
            println!("{target}/{name}: {} bytes", bytes.len());
        }
    }
    Ok(())
}
