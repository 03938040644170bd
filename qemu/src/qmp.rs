//! A small QMP client: drives a running QEMU from a test through the Unix socket that
//! `run.sh --qmp PATH` opens ([`RunOptions::qmp`](crate::RunOptions::qmp)).
//!
//! QMP is line-oriented JSON: QEMU greets (`{"QMP": ...}`), the client sends
//! `qmp_capabilities` to leave negotiation mode, then each command gets one reply line,
//! `{"return": ...}` or `{"error": ...}`, with asynchronous events (`{"event": ...}`) on
//! lines of their own in between. That is all a test needs, so there is no JSON parser
//! here: commands are written as text, replies told apart by their first key.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often [`Qmp::connect`] retries while QEMU has not created the socket yet.
const RETRY: Duration = Duration::from_millis(50);

/// A QMP session with one QEMU, past capability negotiation.
#[derive(Debug)]
pub struct Qmp {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    /// Events QEMU sent so far (one JSON object each), oldest first.
    events: Vec<String>,
}

impl Qmp {
    /// Connects to the QMP socket at `path` (retrying until QEMU has created it, up to
    /// `timeout`), reads the greeting and negotiates capabilities.
    ///
    /// # Errors
    /// What went wrong: no socket within `timeout`, no greeting, or a refused
    /// `qmp_capabilities`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, String> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(error) if Instant::now() >= deadline => {
                    return Err(format!(
                        "no QMP socket at {} within {timeout:?}: {error}",
                        path.display()
                    ));
                }
                Err(_) => std::thread::sleep(RETRY),
            }
        };
        // Every read is bounded: a QEMU that stops answering fails the test, not hangs it.
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|error| format!("QMP socket: {error}"))?;
        let reader = BufReader::new(
            stream
                .try_clone()
                .map_err(|error| format!("QMP socket: {error}"))?,
        );
        let mut qmp = Qmp {
            writer: stream,
            reader,
            events: Vec::new(),
        };
        let greeting = qmp.read_line()?.unwrap_or_default();
        if !greeting.starts_with("{\"QMP\"") {
            return Err(format!("QMP: expected the greeting, got `{greeting}`"));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// One line from QEMU, without its line end; `Ok(None)` when QEMU closed the socket
    /// (it ended).
    fn read_line(&mut self) -> Result<Option<String>, String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(line.trim_end().to_string())),
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
                ) =>
            {
                Ok(None)
            }
            Err(error) => Err(format!("QMP: reading a reply: {error}")),
        }
    }

    /// Runs `command` with `arguments` (a JSON object, or `None`) and returns QEMU's
    /// `{"return": ...}` line. Events that arrive first are kept ([`Qmp::events`]).
    ///
    /// # Errors
    /// QEMU's `{"error": ...}` line, QEMU ending before it answered, or what went wrong
    /// on the socket.
    pub fn execute(&mut self, command: &str, arguments: Option<&str>) -> Result<String, String> {
        self.run(command, arguments)?
            .ok_or_else(|| format!("QMP: QEMU ended before it answered {command}"))
    }

    /// Like [`Qmp::execute`], but QEMU ending before it answers is `Ok(None)`: a command
    /// that may stop the VM at once (a guest that powers off as soon as it sees the
    /// power button) loses its answer to the race, and the guest's exit status tells
    /// the rest.
    fn run(&mut self, command: &str, arguments: Option<&str>) -> Result<Option<String>, String> {
        let request = match arguments {
            Some(arguments) => format!("{{\"execute\":\"{command}\",\"arguments\":{arguments}}}\n"),
            None => format!("{{\"execute\":\"{command}\"}}\n"),
        };
        self.writer
            .write_all(request.as_bytes())
            .map_err(|error| format!("QMP: sending {command}: {error}"))?;
        loop {
            let Some(line) = self.read_line()? else {
                return Ok(None);
            };
            match Reply::of(&line) {
                Reply::Return => return Ok(Some(line)),
                Reply::Error => return Err(format!("QMP: {command} refused: {line}")),
                Reply::Event => self.events.push(line),
                Reply::Other => return Err(format!("QMP: unexpected reply to {command}: {line}")),
            }
        }
    }

    /// Presses the ACPI power button (`system_powerdown`). QEMU ending before it answers
    /// counts as done (the guest may power off at once).
    ///
    /// # Errors
    /// QEMU's refusal, or what went wrong on the socket.
    pub fn system_powerdown(&mut self) -> Result<(), String> {
        self.run("system_powerdown", None).map(drop)
    }

    /// Presses `keys` together and releases them (`send-key` with QEMU key names such as
    /// `ctrl`, `alt`, `delete`). QEMU ending before it answers counts as done.
    ///
    /// # Errors
    /// As [`Qmp::system_powerdown`].
    pub fn send_keys(&mut self, keys: &[&str]) -> Result<(), String> {
        self.run("send-key", Some(&send_key_arguments(keys)))
            .map(drop)
    }

    /// The events QEMU sent while this session waited for replies.
    pub fn events(&self) -> &[String] {
        &self.events
    }
}

/// What a QMP line is, by its first key.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Return,
    Error,
    Event,
    Other,
}

impl Reply {
    fn of(line: &str) -> Reply {
        let key = line
            .trim_start_matches('{')
            .trim_start()
            .split(':')
            .next()
            .unwrap_or("");
        match key.trim() {
            "\"return\"" => Reply::Return,
            "\"error\"" => Reply::Error,
            "\"timestamp\"" | "\"event\"" => Reply::Event,
            _ => Reply::Other,
        }
    }
}

/// `send-key`'s arguments for `keys`, as QEMU key codes.
fn send_key_arguments(keys: &[&str]) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|key| format!("{{\"type\":\"qcode\",\"data\":\"{key}\"}}"))
        .collect();
    format!("{{\"keys\":[{}]}}", keys.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn replies_are_told_apart_by_their_first_key() {
        assert_eq!(Reply::of("{\"return\": {}}"), Reply::Return);
        assert_eq!(
            Reply::of("{\"error\": {\"class\": \"GenericError\"}}"),
            Reply::Error
        );
        // QEMU puts the timestamp first in an event.
        assert_eq!(
            Reply::of("{\"timestamp\": {\"seconds\": 1}, \"event\": \"POWERDOWN\"}"),
            Reply::Event
        );
        assert_eq!(Reply::of("{\"QMP\": {}}"), Reply::Other);
    }

    #[test]
    fn send_key_names_qcodes() {
        assert_eq!(
            send_key_arguments(&["ctrl", "alt", "delete"]),
            "{\"keys\":[{\"type\":\"qcode\",\"data\":\"ctrl\"},\
             {\"type\":\"qcode\",\"data\":\"alt\"},{\"type\":\"qcode\",\"data\":\"delete\"}]}"
        );
    }

    /// A fake QEMU: greets, answers negotiation, sends an event before the command's
    /// reply, then refuses the next command; the client sees each as QEMU means it.
    #[test]
    fn a_session_against_a_scripted_server() {
        let path =
            std::env::temp_dir().join(format!("torito-qmp-test-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            let mut heard = Vec::new();
            writer.write_all(b"{\"QMP\": {\"version\": {}}}\n").unwrap();
            let mut answer = |reply: &[u8]| {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                heard.push(line.trim_end().to_string());
                writer.write_all(reply).unwrap();
            };
            answer(b"{\"return\": {}}\n");
            answer(b"{\"timestamp\": {}, \"event\": \"POWERDOWN\"}\n{\"return\": {}}\n");
            answer(b"{\"error\": {\"class\": \"CommandNotFound\"}}\n");
            // The power button stops the VM before QEMU answers: the socket closes.
            answer(b"");
            heard
        });
        let mut qmp = Qmp::connect(&path, Duration::from_secs(10)).unwrap();
        qmp.system_powerdown().unwrap();
        assert_eq!(qmp.events().len(), 1);
        let refused = qmp.execute("no-such-command", None).unwrap_err();
        assert!(refused.contains("CommandNotFound"), "{refused}");
        assert_eq!(qmp.system_powerdown(), Ok(()));
        let heard = server.join().unwrap();
        assert_eq!(
            heard,
            [
                "{\"execute\":\"qmp_capabilities\"}",
                "{\"execute\":\"system_powerdown\"}",
                "{\"execute\":\"no-such-command\"}",
                "{\"execute\":\"system_powerdown\"}"
            ]
        );
        let _ = std::fs::remove_file(&path);
    }
}
