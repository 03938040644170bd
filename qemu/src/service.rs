//! Scaffolding for tests of a network service: running its steps in order, and pressing
//! the power button while clients are at work, then checking the graceful stop.

use crate::{Failure, Guest, Outcome, Qmp};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What the kernel prints when the ACPI power button is pressed.
pub const POWER_BUTTON: &str = "shutdown: requested by the ACPI power button";

/// One step of a service test: its name (for the failure) and what it does against the
/// host port forwarded to the service.
pub type Step = (&'static str, fn(u16) -> Result<(), String>);

/// Runs `steps` in order against `port` on `guest`, then checks that the console shows
/// no fault (`!!!`). Each step's duration is printed (seen with `--nocapture`), never
/// asserted. `label` names the run in those lines.
///
/// # Errors
/// The first failing step (its number, name and error) or the fault line, with the
/// guest's console.
pub fn run_steps(guest: &Guest, label: &str, port: u16, steps: &[Step]) -> Result<(), Failure> {
    for (number, (name, step)) in steps.iter().enumerate() {
        let started = Instant::now();
        step(port).map_err(|error| {
            guest.failure(format!(
                "step {} ({name}) against host port {port}: {error}",
                number + 1
            ))
        })?;
        eprintln!(
            "{label}: step {} ({name}) took {:?}",
            number + 1,
            started.elapsed()
        );
    }
    if let Some(line) = guest.console().lines().find(|line| line.contains("!!!")) {
        return Err(guest.failure(format!(
            "the guest reported a fault while serving: `{line}`"
        )));
    }
    Ok(())
}

/// What a client of [`powerdown_under_load`] is given: whether the stop has been
/// requested, and where to count its rounds.
#[derive(Debug)]
pub struct LoadClient<'a> {
    stopped: &'a AtomicBool,
    rounds: &'a AtomicUsize,
}

impl LoadClient<'_> {
    /// Whether the power button has been (or is being) pressed. A request sent before
    /// this turned true must be answered whole.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Counts one round (a request answered, a batch done).
    pub fn round_done(&self) {
        self.rounds.fetch_add(1, Ordering::SeqCst);
    }
}

/// How a [`powerdown_under_load`] run went.
#[derive(Debug)]
pub struct LoadRun<T> {
    /// Each client's result, in input order (a panicking client as an error).
    pub results: Vec<Result<T, String>>,
    /// Each client's rounds, counted with [`LoadClient::round_done`].
    pub rounds: Vec<usize>,
    /// What `system_powerdown` answered.
    pub powerdown: Result<(), String>,
}

impl<T> LoadRun<T> {
    /// The first client that got fewer than `rounds` rounds done (a failed client
    /// included), as an error: the load never got going before the stop.
    ///
    /// # Errors
    /// `client N had fewer than R rounds before the stop ...`.
    pub fn check_load(&self, rounds: usize) -> Result<(), String> {
        match self.rounds.iter().position(|&done| done < rounds) {
            Some(quiet) => Err(format!(
                "client {quiet} had fewer than {rounds} rounds before the stop: the load never \
                 got going"
            )),
            None => Ok(()),
        }
    }
}

/// Runs `client(index, input, &LoadClient)` for each input on a thread of its own, all
/// at once, and presses the power button through `qmp` once every client has done
/// `rounds_before_stop` rounds (a failed client no longer holds it back), or after `bound`
/// at the latest; then waits for every client. The clients see the stop through
/// [`LoadClient::stopped`], set just before the button is pressed.
pub fn powerdown_under_load<I, T, F>(
    qmp: &mut Qmp,
    inputs: Vec<I>,
    rounds_before_stop: usize,
    bound: Duration,
    client: F,
) -> LoadRun<T>
where
    I: Send,
    T: Send,
    F: Fn(usize, I, &LoadClient) -> Result<T, String> + Sync,
{
    let stopped = AtomicBool::new(false);
    let rounds: Vec<AtomicUsize> = inputs.iter().map(|_| AtomicUsize::new(0)).collect();
    let failed: Vec<AtomicBool> = inputs.iter().map(|_| AtomicBool::new(false)).collect();
    let client = &client;
    let (results, powerdown) = std::thread::scope(|scope| {
        let threads: Vec<_> = inputs
            .into_iter()
            .enumerate()
            .map(|(index, input)| {
                let handle = LoadClient {
                    stopped: &stopped,
                    rounds: &rounds[index],
                };
                let failed = &failed[index];
                scope.spawn(move || {
                    let result = client(index, input, &handle);
                    if result.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    result
                })
            })
            .collect();
        let deadline = Instant::now() + bound;
        let ready = || {
            rounds.iter().zip(&failed).all(|(done, failed)| {
                done.load(Ordering::SeqCst) >= rounds_before_stop || failed.load(Ordering::SeqCst)
            })
        };
        while !ready() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        stopped.store(true, Ordering::SeqCst);
        let powerdown = qmp.system_powerdown();
        let results: Vec<Result<T, String>> = threads
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| Err("the client thread panicked".into()))
            })
            .collect();
        (results, powerdown)
    });
    LoadRun {
        results,
        rounds: rounds
            .iter()
            .map(|done| done.load(Ordering::SeqCst))
            .collect(),
        powerdown,
    }
}

/// After the power button: the kernel's [`POWER_BUTTON`] line, then exit 0 within
/// `timeout`, with the service's `stopped` line and no fault (`!!!`) on the console.
///
/// # Errors
/// Whichever of those is missing, with the guest's console.
pub fn expect_graceful_stop(
    guest: &mut Guest,
    stopped: &str,
    timeout: Duration,
) -> Result<Outcome, Failure> {
    guest.wait_for_line(POWER_BUTTON, timeout)?;
    let outcome = guest.expect_exit(0, timeout)?;
    if outcome.line(stopped).is_none() {
        return Err(guest.failure(format!("no `{stopped}` line before the exit")));
    }
    if let Some(line) = outcome.line("!!!") {
        return Err(guest.failure(format!("the guest reported a fault: `{line}`")));
    }
    Ok(outcome)
}
