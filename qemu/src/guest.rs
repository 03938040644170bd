//! A running guest: `qemu/run.sh` in its own process group, its output captured.
//!
//! Life cycle: [`Guest::start`] spawns `run.sh` (which builds the QEMU command line, and
//! for `--boot grub` the ISO) with stdout and stderr piped into reader threads; the test
//! waits for lines ([`Guest::wait_for_line`]) and for the exit ([`Guest::wait_exit`]).
//! A timeout, or dropping the `Guest`, ends the whole process group, QEMU included.

use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::failure::Failure;
use crate::options::RunOptions;
use crate::output::{Captured, Which};
use crate::{free_port, image_path, workspace_root};

/// How long a guest gets to shut down after SIGTERM before its group gets SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_secs(3);

/// How long the reader threads get to drain the pipes after `run.sh` has exited.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How many host ports [`Guest::start_forwarded`] tries before giving up.
const FORWARD_ATTEMPTS: usize = 5;

/// What QEMU prints on stderr when it cannot bind a `hostfwd` host port.
const FORWARD_REFUSED: &str = "Could not set up host forwarding rule";

/// How a guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `run.sh`'s exit status: the guest's exit code, 124 when the guest printed no exit
    /// line, 2 for a usage error; `None` when `run.sh` was killed by a signal.
    pub code: Option<i32>,
    /// The whole serial console.
    pub console: String,
    /// What `run.sh` and QEMU printed on stderr.
    pub stderr: String,
}

impl Outcome {
    /// The first console line containing `substring`.
    pub fn line(&self, substring: &str) -> Option<&str> {
        self.console.lines().find(|line| line.contains(substring))
    }
}

/// A guest running in QEMU through `qemu/run.sh`.
///
/// Dropping a `Guest` that is still running ends its process group (QEMU included).
#[derive(Debug)]
pub struct Guest {
    /// The command that reproduces this run, for failure messages.
    command: String,
    /// `run.sh`; its pid is also the process group id of everything it starts.
    child: Child,
    /// Set once `child` has been reaped.
    exited: Option<ExitStatus>,
    /// Kept open and unused: QEMU's stdio chardev then never sees end of input.
    _stdin: Option<ChildStdin>,
    captured: Arc<Captured>,
    readers: Vec<JoinHandle<()>>,
}

impl Guest {
    /// Starts `image` (a name such as `"hello"` for `build/hello.elf`, or a path; see
    /// [`image_path`](crate::image_path)) with `options`.
    ///
    /// # Panics
    ///
    /// When the image is missing (the message says to run `make images` first) or
    /// `run.sh` cannot be spawned: a test cannot do anything useful then. Use
    /// [`Guest::try_start`] to handle these as errors.
    pub fn start(image: &str, options: &RunOptions) -> Guest {
        match Guest::try_start(image, options) {
            Ok(guest) => guest,
            Err(failure) => panic!("{failure}"),
        }
    }

    /// Starts `image` with `options`, like [`Guest::start`].
    ///
    /// # Errors
    ///
    /// A [`Failure`] when the image does not exist (run `make images` first) or `run.sh`
    /// cannot be spawned.
    pub fn try_start(image: &str, options: &RunOptions) -> Result<Guest, Failure> {
        let root = workspace_root();
        let image = image_path(image);
        let script = root.join("qemu").join("run.sh");
        let args = options.args();
        let command = reproduce(&script, &image, &args);
        let failure = |reason: String| Failure {
            reason,
            command: command.clone(),
            console: String::new(),
            stderr: String::new(),
        };
        if !image.is_file() {
            return Err(failure(format!(
                "no image at {}: run `make images` first",
                image.display()
            )));
        }
        let mut run = Command::new(&script);
        run.arg(&image).args(&args).current_dir(&root);
        Guest::start_command(run, command)
    }

    /// Starts `command`, a command that runs `qemu/run.sh` in the end (such as `cargo
    /// run` in a service crate, whose runner it is), as a guest: its stdout is the
    /// console. `description` is the shell command that reproduces the run, for failure
    /// messages.
    ///
    /// # Errors
    ///
    /// A [`Failure`] when `command` cannot be spawned.
    pub fn start_command(mut command: Command, description: String) -> Result<Guest, Failure> {
        let mut child = command
            // A group of its own, so a timeout can end run.sh, grub-mkrescue and QEMU at
            // once without touching the test process.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| Failure {
                reason: format!("cannot spawn {description}: {error}"),
                command: description.clone(),
                console: String::new(),
                stderr: String::new(),
            })?;
        let captured = Arc::new(Captured::default());
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(captured.spawn_reader(stdout, Which::Stdout));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(captured.spawn_reader(stderr, Which::Stderr));
        }
        let stdin = child.stdin.take();
        Ok(Guest {
            command: description,
            child,
            exited: None,
            _stdin: stdin,
            captured,
            readers,
        })
    }

    /// Starts `image` with `options` plus a TCP forward from a free port on 127.0.0.1 to
    /// the guest's `guest_port`, waits for the console line containing `ready` (the
    /// guest's "listening" line), and returns the guest and the host port.
    ///
    /// Connect only after this returns: QEMU's user-mode networking accepts the host's
    /// connection before the guest listens and then backs the guest-side SYN off for
    /// seconds. The port comes from [`free_port`]; when QEMU cannot bind it because
    /// another process took it in the meantime, the guest is started again on another
    /// port (up to 5 tries).
    ///
    /// # Errors
    ///
    /// A [`Failure`] when the image is missing, no free port can be had, or the guest
    /// prints no `ready` line within `timeout` (the guest is killed then).
    pub fn start_forwarded(
        image: &str,
        options: &RunOptions,
        guest_port: u16,
        ready: &str,
        timeout: Duration,
    ) -> Result<(Guest, u16), Failure> {
        Guest::start_forwarded_with(guest_port, ready, timeout, |port| {
            Guest::try_start(image, &options.clone().forward(port, guest_port))
        })
    }

    /// Like [`Guest::start_forwarded`] for a guest that `start(port)` starts with a TCP
    /// forward from host port `port` to the guest's `guest_port` (for example a
    /// [`Guest::start_command`] whose command gets the port another way).
    ///
    /// # Errors
    ///
    /// As [`Guest::start_forwarded`], and whatever `start` returns.
    pub fn start_forwarded_with(
        guest_port: u16,
        ready: &str,
        timeout: Duration,
        mut start: impl FnMut(u16) -> Result<Guest, Failure>,
    ) -> Result<(Guest, u16), Failure> {
        let mut attempt = 1;
        loop {
            let port = free_port().map_err(|error| Failure {
                reason: format!(
                    "no free host port for the forward to guest port {guest_port}: {error}"
                ),
                command: String::new(),
                console: String::new(),
                stderr: String::new(),
            })?;
            let mut guest = start(port)?;
            let failure = match guest.wait_for_line(ready, timeout) {
                Ok(_) => return Ok((guest, port)),
                Err(failure) => failure,
            };
            if !guest.captured.lock().stdout.closed {
                // Timed out with the guest still running: not a port problem.
                return Err(failure);
            }
            // QEMU has ended: wait for run.sh so that all of stderr is in.
            let outcome = guest.wait_exit(DRAIN_GRACE)?;
            if outcome.stderr.contains(FORWARD_REFUSED) && attempt < FORWARD_ATTEMPTS {
                attempt += 1;
                continue;
            }
            return Err(Failure {
                stderr: outcome.stderr,
                console: outcome.console,
                ..failure
            });
        }
    }

    /// Waits until the console shows a complete line containing `substring` (searching
    /// from the first line, so it may have been printed already) and returns that line.
    ///
    /// # Errors
    ///
    /// A [`Failure`] with the console so far when `timeout` passes first, or when the
    /// console closes (QEMU ended) without such a line. The guest keeps running after a
    /// timeout here; [`Guest::wait_exit`] or dropping the `Guest` ends it.
    pub fn wait_for_line(&self, substring: &str, timeout: Duration) -> Result<String, Failure> {
        let deadline = Instant::now() + timeout;
        let found = self.captured.wait_until(deadline, |streams| {
            let console = &streams.stdout;
            if let Some(line) = console.lines.iter().find(|line| line.contains(substring)) {
                return Some(Ok(line.clone()));
            }
            if console.closed {
                // After the end, an unterminated last line counts as a line.
                return Some(match console.partial() {
                    Some(partial) if partial.contains(substring) => Ok(partial),
                    _ => Err(format!(
                        "the console ended (QEMU exited) without a line containing `{substring}`"
                    )),
                });
            }
            None
        });
        match found {
            Some(Ok(line)) => Ok(line),
            Some(Err(reason)) => Err(self.failure(reason)),
            None => Err(self.failure(format!(
                "no console line containing `{substring}` within {timeout:?}"
            ))),
        }
    }

    /// Waits for the guest to exit and returns its exit code and console.
    ///
    /// # Errors
    ///
    /// A [`Failure`] with the console when `timeout` passes first; QEMU has been killed
    /// by then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Outcome, Failure> {
        let deadline = Instant::now() + timeout;
        while self.exited.is_none() {
            match self.child.try_wait() {
                Ok(Some(status)) => self.exited = Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    self.kill();
                    return Err(self.failure(format!(
                        "the guest did not exit within {timeout:?}; QEMU was killed"
                    )));
                }
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(error) => {
                    self.kill();
                    return Err(self.failure(format!("cannot wait for run.sh: {error}")));
                }
            }
        }
        // run.sh waited for QEMU, so the pipes close now; give the readers time to drain.
        let drained = self
            .captured
            .wait_until(Instant::now() + DRAIN_GRACE, |streams| {
                (streams.stdout.closed && streams.stderr.closed).then_some(())
            });
        if drained.is_none() {
            // Something in the group still holds the pipes open: end it.
            signal_group(self.child.id(), "KILL");
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let streams = self.captured.lock();
        Ok(Outcome {
            code: self.exited.and_then(|status| status.code()),
            console: streams.stdout.text(),
            stderr: streams.stderr.text(),
        })
    }

    /// Waits for the guest to exit with exit code `code`.
    ///
    /// # Errors
    ///
    /// A [`Failure`] with the console when the guest does not exit within `timeout` or
    /// exits with another code.
    pub fn expect_exit(&mut self, code: i32, timeout: Duration) -> Result<Outcome, Failure> {
        let outcome = self.wait_exit(timeout)?;
        if outcome.code == Some(code) {
            Ok(outcome)
        } else {
            let got = match outcome.code {
                Some(124) => "124 (QEMU ended without a `torito: exit(N)` line)".to_string(),
                Some(other) => other.to_string(),
                None => "none (run.sh was killed by a signal)".to_string(),
            };
            Err(self.failure(format!("expected exit code {code}, got {got}")))
        }
    }

    /// The id of the process group holding `run.sh` and QEMU (the pid of `run.sh`).
    pub fn process_group(&self) -> u32 {
        self.child.id()
    }

    /// The console so far.
    pub fn console(&self) -> String {
        self.captured.lock().stdout.text()
    }

    /// What `run.sh` (and whatever started it, such as cargo) printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.captured.lock().stderr.text()
    }

    /// Ends the guest now: SIGTERM to the process group (QEMU shuts down cleanly and
    /// `run.sh` removes its temporary files), then SIGKILL to whatever is left.
    pub fn kill(&mut self) {
        if self.exited.is_some() {
            return;
        }
        let group = self.child.id();
        signal_group(group, "TERM");
        let deadline = Instant::now() + TERMINATE_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        // Also when run.sh ended first: QEMU may still be in the group.
        signal_group(group, "KILL");
        if self.exited.is_none() {
            self.exited = self.child.wait().ok();
        }
        // SIGKILL is delivered, not yet acted on: wait (boundedly) until the group is
        // gone, so that no QEMU outlives its Guest, even on a loaded machine.
        let deadline = Instant::now() + TERMINATE_GRACE;
        while process_group_alive(group) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// A failure with `reason`, the reproduction command and everything captured so
    /// far: for a test's own checks on what the guest printed.
    pub fn failure(&self, reason: impl Into<String>) -> Failure {
        let streams = self.captured.lock();
        Failure {
            reason: reason.into(),
            command: self.command.clone(),
            console: streams.stdout.text(),
            stderr: streams.stderr.text(),
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a live (not zombie) process is left in process group `group`. `kill -0`
/// would count zombies: QEMU is reparented to init when run.sh dies first, and init may
/// reap it a little later.
pub fn process_group_alive(group: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its ')'.
        let Some((_, fields)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = fields.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1);
        state != Some("Z") && pgrp == Some(group.to_string().as_str())
    })
}

/// Sends `signal` to every process in process group `group` (through kill(1): no libc).
fn signal_group(group: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{group}")])
        .stdout(Stdio::null())
        // "No such process" when the group is already gone: expected, not news.
        .stderr(Stdio::null())
        .status();
}

/// The shell command that reproduces a run, with paths relative to the workspace root.
fn reproduce(script: &std::path::Path, image: &std::path::Path, args: &[String]) -> String {
    let root = workspace_root();
    let relative = |path: &std::path::Path| {
        path.strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let mut words = vec![relative(script), relative(image)];
    words.extend(args.iter().cloned());
    words
        .iter()
        .map(|word| shell_quote(word))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes `word` for a POSIX shell when it needs it.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&byte));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_the_shell_would_split() {
        assert_eq!(shell_quote("log=debug"), "log=debug");
        assert_eq!(shell_quote("a=1 b=2"), "'a=1 b=2'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn a_missing_image_says_to_build_the_images() {
        let failure = Guest::try_start("no-such-image", &RunOptions::default()).unwrap_err();
        assert!(
            failure.reason.contains("run `make images` first"),
            "{failure}"
        );
        assert!(
            failure
                .command
                .starts_with("qemu/run.sh build/no-such-image.elf"),
            "{failure}"
        );
    }
}
