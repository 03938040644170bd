//! Captured output: reader threads turn a pipe into lines that waiters can watch.
//!
//! Each stream (stdout = the guest's serial console, stderr = `run.sh` and QEMU) gets one
//! thread that reads raw bytes as they arrive and splits them into lines. Reading bytes
//! rather than lines means a half-printed line is not lost when the guest hangs: it is kept
//! as `partial` and shown in failures. Waiters sleep on a condition variable that every new
//! chunk and the end of a stream notify.

use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Instant;

/// One captured stream.
#[derive(Debug, Default)]
pub(crate) struct Text {
    /// Complete lines, without their `\n` (and without a `\r` before it: the serial port
    /// may send CRLF).
    pub(crate) lines: Vec<String>,
    /// Bytes after the last `\n`.
    partial: Vec<u8>,
    /// The writer closed the pipe (QEMU and `run.sh` are gone, or closed it).
    pub(crate) closed: bool,
}

impl Text {
    fn push(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' {
                let mut line = std::mem::take(&mut self.partial);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.lines.push(String::from_utf8_lossy(&line).into_owned());
            } else {
                self.partial.push(byte);
            }
        }
    }

    /// The unfinished last line, if any.
    pub(crate) fn partial(&self) -> Option<String> {
        (!self.partial.is_empty()).then(|| String::from_utf8_lossy(&self.partial).into_owned())
    }

    /// Everything so far, lines joined with `\n`, the unfinished line last.
    pub(crate) fn text(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            text.push_str(line);
            text.push('\n');
        }
        if let Some(partial) = self.partial() {
            text.push_str(&partial);
        }
        text
    }
}

/// Both streams of one run.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    /// QEMU's stdout: the guest's serial console.
    pub(crate) stdout: Text,
    /// `run.sh`'s and QEMU's stderr.
    pub(crate) stderr: Text,
}

/// Which stream a reader thread feeds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Which {
    Stdout,
    Stderr,
}

/// The streams plus the condition variable their readers signal.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    streams: Mutex<Streams>,
    changed: Condvar,
}

impl Captured {
    /// Locks the streams. A reader thread cannot panic while holding the lock (it only
    /// appends bytes), so a poisoned lock still holds consistent data: use it.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Streams> {
        self.streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Calls `check` on the streams now and after every change until it returns `Some`,
    /// or `deadline` passes (then `None`).
    pub(crate) fn wait_until<T>(
        &self,
        deadline: Instant,
        mut check: impl FnMut(&Streams) -> Option<T>,
    ) -> Option<T> {
        let mut streams = self.lock();
        loop {
            if let Some(found) = check(&streams) {
                return Some(found);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            streams = self
                .changed
                .wait_timeout(streams, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Starts a thread that copies `pipe` into the chosen stream until end of file.
    pub(crate) fn spawn_reader(
        self: &Arc<Self>,
        mut pipe: impl Read + Send + 'static,
        which: Which,
    ) -> JoinHandle<()> {
        let captured = Arc::clone(self);
        thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            loop {
                let read = match pipe.read(&mut buffer) {
                    Ok(0) => 0,
                    Ok(read) => read,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => 0,
                };
                let mut streams = captured.lock();
                let text = match which {
                    Which::Stdout => &mut streams.stdout,
                    Which::Stderr => &mut streams.stderr,
                };
                if read == 0 {
                    text.closed = true;
                } else {
                    text.push(&buffer[..read]);
                }
                drop(streams);
                captured.changed.notify_all();
                if read == 0 {
                    return;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_across_chunks_and_drops_carriage_returns() {
        let mut text = Text::default();
        text.push(b"Hel");
        text.push(b"lo\r\nslept 1");
        text.push(b"0000 us\nhalf");
        assert_eq!(text.lines, ["Hello", "slept 10000 us"]);
        assert_eq!(text.partial().as_deref(), Some("half"));
        assert_eq!(text.text(), "Hello\nslept 10000 us\nhalf");
    }

    #[test]
    fn reader_marks_the_stream_closed_at_end_of_file() {
        let captured = Arc::new(Captured::default());
        let reader = captured.spawn_reader(&b"one\ntwo"[..], Which::Stdout);
        reader.join().unwrap();
        let streams = captured.lock();
        assert!(streams.stdout.closed);
        assert_eq!(streams.stdout.text(), "one\ntwo");
    }
}
