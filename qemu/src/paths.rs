//! Where things are: the workspace root and the built images.
//!
//! Paths are found from this crate's own location, so tests work from any current
//! directory (cargo runs integration tests in the package directory).

use std::path::PathBuf;

/// The workspace root (the directory holding `qemu/`, `build/` and the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// The path of a built image: `build/NAME.elf` under the workspace root for a bare name
/// such as `"hello"`; anything containing a `/` or ending in `.elf` is taken as a path
/// (relative paths are relative to the workspace root).
pub fn image_path(image: &str) -> PathBuf {
    if image.contains('/') || image.ends_with(".elf") {
        workspace_root().join(image)
    } else {
        workspace_root().join("build").join(format!("{image}.elf"))
    }
}
