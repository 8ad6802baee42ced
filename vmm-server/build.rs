//! Links the ring-3 program as a static executable with page-aligned segments.
fn main() {
    if std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-none") {
        for arg in [
            "--no-pie",
            "-zseparate-loadable-segments",
            "-zmax-page-size=0x1000",
            "--build-id=none",
            "--image-base=0x400000",
        ] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
}
