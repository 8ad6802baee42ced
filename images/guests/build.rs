//! Links each guest with the linker script of its mode; host builds get nothing.
fn main() {
    const GUESTS: [(&str, &str); 8] = [
        ("guest64", "long.ld"),
        ("guest32", "protected.ld"),
        ("guest_real", "real.ld"),
        ("guest_triple", "long.ld"),
        ("guest_bench", "long.ld"),
        ("guest_controls", "long.ld"),
        ("guest_devices", "long.ld"),
        ("guest_restart", "long.ld"),
    ];
    println!("cargo:rerun-if-changed=link");
    println!("cargo:rerun-if-changed=src/common");
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-none") {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    for (bin, script) in GUESTS {
        println!("cargo:rustc-link-arg-bin={bin}=-T{dir}/link/{script}");
    }
    for arg in ["--no-pie", "-zmax-page-size=0x1000", "--build-id=none"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
