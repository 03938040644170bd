//! Puts the linker script on the library search path of every crate that links the
//! kernel, so an application needs no linker script of its own (`.cargo/config.toml`
//! passes `-Ttorito.ld`).

fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::copy("torito.ld", out.join("torito.ld")).expect("copy torito.ld to OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=torito.ld");
}
