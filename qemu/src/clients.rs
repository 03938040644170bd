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
}
