//! Helpers for tests that run many client connections at once.

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

#[cfg(test)]
mod tests {
    use super::*;

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
