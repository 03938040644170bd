//! Helpers for tests that run client connections: many at once, or one echo.

use std::io::{Read, Write};

/// Ok when every connection succeeded; otherwise how many failed and the first five
/// reasons, each with its connection number.
///
/// # Errors
/// The summary text when at least one connection failed.
pub fn failed_connections(results: &[Result<(), String>]) -> Result<(), String> {
    let failures: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(index, result)| {
            result
                .as_ref()
                .err()
                .map(|error| format!("connection {index}: {error}"))
        })
        .collect();
    if failures.is_empty() {
        return Ok(());
    }
    let shown = failures[..failures.len().min(5)].join("\n  ");
    Err(format!(
        "{} of {} connections failed:\n  {shown}",
        failures.len(),
        results.len()
    ))
}

/// Runs `client(index, input)` for every input on its own thread, all at once, and
/// returns each one's result in input order (a panicking client counts as failed).
pub fn run_clients<T, F>(inputs: Vec<T>, client: F) -> Vec<Result<(), String>>
where
    T: Send,
    F: Fn(usize, T) -> Result<(), String> + Sync,
{
    let client = &client;
    std::thread::scope(|scope| {
        let threads: Vec<_> = inputs
            .into_iter()
            .enumerate()
            .map(|(index, input)| scope.spawn(move || client(index, input)))
            .collect();
        threads
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| Err("the client thread panicked".into()))
            })
            .collect()
    })
}

/// Sends `message` on `stream` and reads as many bytes back: Ok when they are the same.
///
/// # Errors
/// What went wrong, for a test's failure: `sending: ...`, `no echo: ...` or
/// `wrong echo: ...` (with the bytes that came back).
pub fn echo_round_trip(stream: &mut (impl Read + Write), message: &[u8]) -> Result<(), String> {
    stream
        .write_all(message)
        .map_err(|error| format!("sending: {error}"))?;
    let mut reply = vec![0u8; message.len()];
    stream
        .read_exact(&mut reply)
        .map_err(|error| format!("no echo: {error}"))?;
    if reply != message {
        return Err(format!("wrong echo: {reply:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that takes whatever is written and answers with `0`'s bytes, then ends.
    struct Peer(&'static [u8]);

    impl Read for Peer {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buffer)
        }
    }

    impl Write for Peer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_echo_round_trip_checks_the_bytes_that_come_back() {
        assert_eq!(echo_round_trip(&mut Peer(b"ab"), b"ab"), Ok(()));
        let error = echo_round_trip(&mut Peer(b"ba"), b"ab").unwrap_err();
        assert_eq!(error, "wrong echo: [98, 97]");
        let error = echo_round_trip(&mut Peer(b"a"), b"ab").unwrap_err();
        assert!(error.starts_with("no echo: "), "{error}");
    }

    #[test]
    fn summarizes_failures_with_their_numbers() {
        assert_eq!(failed_connections(&[Ok(()), Ok(())]), Ok(()));
        let summary = failed_connections(&[Ok(()), Err("reset".into())]).unwrap_err();
        assert!(
            summary.starts_with("1 of 2 connections failed"),
            "{summary}"
        );
        assert!(summary.contains("connection 1: reset"), "{summary}");
    }

    #[test]
    fn clients_run_with_their_index_and_input() {
        let results = run_clients(vec![10, 20, 30], |index, input| {
            if input == (index + 1) * 10 {
                Ok(())
            } else {
                Err(format!("{index}: {input}"))
            }
        });
        assert_eq!(results, vec![Ok(()), Ok(()), Ok(())]);
        let results = run_clients(
            vec![1, 2],
            |_, input| if input == 2 { panic!("boom") } else { Ok(()) },
        );
        assert_eq!(results[0], Ok(()));
        assert!(results[1].is_err());
    }
}
