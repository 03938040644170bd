//! A temporary directory per test, removed when the test ends.

use std::path::{Path, PathBuf};

/// A directory under the system's temporary directory, named after the test and this
/// process (tests of one run share a process and run at once, so `name` must differ
/// between them), emptied when created and removed on drop.
///
/// # Examples
///
/// ```
/// use torito_qemu_tests::TempDir;
///
/// let directory = TempDir::new("doc-example");
/// std::fs::write(directory.join("file"), b"data").unwrap();
/// let path = directory.path().to_path_buf();
/// drop(directory);
/// assert!(!path.exists());
/// ```
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `torito-NAME-PID` in the temporary directory, empty.
    ///
    /// # Panics
    /// When the directory cannot be created (a test cannot go on without it).
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("torito-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("creating {}: {error}", path.display()));
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
