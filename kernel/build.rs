//! Puts the linker script on the library search path of every crate that links the
//! kernel, so an application needs no linker script of its own (`.cargo/config.toml`
//! passes `-Ttorito.ld`). Cargo passes this search path on to dependents, also to a
//! service crate outside the workspace (docs/services.md); a link argument it would not.

fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::copy("torito.ld", out.join("torito.ld")).expect("copy torito.ld to OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=torito.ld");
}
