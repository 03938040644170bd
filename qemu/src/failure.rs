//! The one error type: what went wrong, plus everything the guest printed.

use std::fmt;

/// A guest did not do what a test waited for: it never printed a line, did not exit in
/// time, exited with the wrong code, or could not be started.
///
/// `Display` and `Debug` both print the reason, the command that reproduces the run, the
/// whole console and `run.sh`'s stderr, so `.unwrap()` or a test returning
/// `Result<(), Failure>` shows the full story.
#[derive(Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong, in one sentence.
    pub reason: String,
    /// The command line that reproduces the run (`qemu/run.sh IMAGE OPTIONS...`).
    pub command: String,
    /// The guest's serial console so far.
    pub console: String,
    /// What `run.sh` and QEMU printed on stderr so far.
    pub stderr: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.reason)?;
        writeln!(f, "command: {}", self.command)?;
        writeln!(f, "--- console ---")?;
        if self.console.is_empty() {
            writeln!(f, "(nothing)")?;
        } else {
            writeln!(f, "{}", self.console.trim_end())?;
        }
        writeln!(f, "--- stderr ---")?;
        if self.stderr.is_empty() {
            write!(f, "(nothing)")
        } else {
            write!(f, "{}", self.stderr.trim_end())
        }
    }
}

// Debug is what a test harness prints for `Result::unwrap` and `-> Result<(), Failure>`:
// make it as readable as Display rather than one line of escaped text.
impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Failure {}
