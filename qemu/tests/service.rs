//! A service of one's own: `make new-service` writes a crate outside the workspace, and
//! there `cargo build --release`, `cargo host-test` and `cargo run --release` do what its
//! README says, with nothing else set up by hand.
//!
//! Each test generates its crate under the system's temporary directory (outside this
//! workspace, as a user's repository would be) and builds it with the crate's own
//! configuration. The builds share one target directory under this package's
//! `CARGO_TARGET_TMPDIR` (so the second build, and the next test run, reuse the compiled
//! Torito), never the workspace's target directory, which `cargo test` holds locked.
//! Settings the Makefile exports for the workspace's own builds are taken out of the
//! environment first, so that cargo sees what a user's shell would give it.
//!
//! Bounds only limit how long a broken build or guest can hang the run; nothing asserts
//! a timing.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use torito_qemu_tests::{Failure, Guest, workspace_root};

/// The port a generated service listens on (qemu/new-service.sh's default).
const SERVICE_PORT: u16 = 8080;
/// Bound for boot plus DHCP to reach the listening line (the image is built already).
const BOOT: Duration = Duration::from_secs(120);
/// Bound for one request and for the guest's exit.
const STEP: Duration = Duration::from_secs(60);

/// A directory under the system's temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let path =
            std::env::temp_dir().join(format!("torito-service-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        assert!(
            !path.starts_with(workspace_root()),
            "{} is inside the workspace: the test must build outside it",
            path.display()
        );
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `program args` in `directory`, with the environment a user's shell would have: no
/// jobserver or flags inherited from the `make test` and `cargo test` running this test.
fn command(program: &str, args: &[&str], directory: &Path) -> Command {
    let mut command = Command::new(program);
    command.args(args).current_dir(directory);
    for inherited in [
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
        "CARGO_MAKEFLAGS",
        "CARGO_TARGET_X86_64_UNKNOWN_NONE_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUN_ARGS",
    ] {
        command.env_remove(inherited);
    }
    command
}

/// The shared target directory for generated services.
fn services_target() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("services")
}

/// Runs `command` to its end and returns its output.
fn run(mut command: Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `make new-service NAME=name DIR=directory`, which must succeed; returns the crate.
fn new_service(name: &str, directory: &Path) -> PathBuf {
    let output = run(command(
        "make",
        &[
            "-s",
            "new-service",
            &format!("NAME={name}"),
            &format!("DIR={}", directory.display()),
        ],
        &workspace_root(),
    ));
    assert!(
        output.status.success(),
        "make new-service NAME={name} failed ({}):\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    directory.join(name)
}

/// `cargo ARGS` in the service crate `service` with the shared target directory, which
/// must succeed; returns its stdout and stderr.
fn cargo(service: &Path, args: &[&str]) -> String {
    let mut cargo = command("cargo", args, service);
    cargo.env("CARGO_TARGET_DIR", services_target());
    let output = run(cargo);
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "`cargo {}` in {} failed ({}):\n{all}",
        args.join(" "),
        service.display(),
        output.status
    );
    all
}

/// `cargo run --release [-- words]` in `service` as a guest, with `run_args` as RUN_ARGS.
fn cargo_run(service: &Path, run_args: &str, words: &[&str]) -> Result<Guest, Failure> {
    let mut args = vec!["run", "--release"];
    if !words.is_empty() {
        args.push("--");
        args.extend(words);
    }
    let mut run = command("cargo", &args, service);
    run.env("CARGO_TARGET_DIR", services_target())
        .env("RUN_ARGS", run_args);
    let description = format!(
        "cd {} && RUN_ARGS='{run_args}' cargo {}",
        service.display(),
        args.join(" ")
    );
    Guest::start_command(run, description)
}

/// Sends `request` and reads until `expected.len()` bytes came back.
fn ask(port: u16, request: &[u8], expected: &[u8]) -> Result<(), String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .map_err(|error| format!("cannot connect to port {port}: {error}"))?;
    stream
        .set_read_timeout(Some(STEP))
        .map_err(|error| error.to_string())?;
    stream
        .write_all(request)
        .map_err(|error| format!("sending {:?}: {error}", text(request)))?;
    let mut reply = vec![0; expected.len()];
    stream.read_exact(&mut reply).map_err(|error| {
        format!(
            "no complete answer to {:?} (expected {:?}): {error}",
            text(request),
            text(expected)
        )
    })?;
    if reply != expected {
        return Err(format!(
            "answer to {:?}: expected {:?}, got {:?}",
            text(request),
            text(expected),
            text(&reply)
        ));
    }
    Ok(())
}

/// The generated service as its README promises: it is formatted and clippy-clean, its
/// host tests pass, and `cargo run --release` boots it on four cores (RUN_ARGS), forwards
/// a host port to it (RUN_ARGS' `--forward` replacing the configured one) and it answers
/// requests.
#[test]
fn a_generated_service_builds_tests_boots_and_answers() -> Result<(), Failure> {
    let scratch = Scratch::new("answers");
    let service = new_service("hello-svc", &scratch.0);
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        ".gitignore",
        ".cargo/config.toml",
        "src/main.rs",
        "src/lib.rs",
    ] {
        assert!(
            service.join(file).is_file(),
            "make new-service wrote no {file}"
        );
    }
    cargo(&service, &["fmt", "--check"]);
    // The template is code users start from: held to our own lint bar, for the image
    // and for the host-tested library.
    cargo(&service, &["clippy", "--", "-D", "warnings"]);
    cargo(
        &service,
        &[
            "clippy",
            "--target",
            "host-tuple",
            "--lib",
            "--tests",
            "--",
            "-D",
            "warnings",
        ],
    );
    let tests = cargo(&service, &["host-test"]);
    assert!(
        tests.contains("test result: ok. 2 passed"),
        "cargo host-test did not run the template's two tests:\n{tests}"
    );
    cargo(&service, &["build", "--release"]);

    let (guest, port) = Guest::start_forwarded_with(
        SERVICE_PORT,
        "hello-svc: listening on port 8080",
        BOOT,
        |port| {
            cargo_run(
                &service,
                &format!("--smp 4 --forward {port}:{SERVICE_PORT}"),
                &[],
            )
        },
    )?;
    guest.wait_for_line("smp: 4 cores up", STEP)?;
    ask(port, b"ping\n", b"pong\n").map_err(|error| guest.failure(error))?;
    ask(port, b"hello\r\nping\nsplit", b"hello\npong\n").map_err(|error| guest.failure(error))?;
    let stderr = guest.stderr();
    let runner_line = stderr
        .lines()
        .find(|line| line.starts_with("cargo-runner: "))
        .unwrap_or_default();
    if runner_line.contains("8080:8080") || !runner_line.contains(&format!("{port}:8080")) {
        return Err(guest.failure(format!(
            "RUN_ARGS' --forward {port}:8080 should replace the configured 8080:8080; the \
             runner ran `{runner_line}`"
        )));
    }
    if guest.console().contains("!!!") {
        return Err(guest.failure("the guest reported a fault"));
    }
    Ok(())
}

/// A service whose `main` returns an error: `cargo run` exits with the guest's status
/// (1), the error is on the console, and the words after `cargo run --` reached the
/// kernel command line.
#[test]
fn cargo_run_exits_with_the_status_of_main() -> Result<(), Failure> {
    let scratch = Scratch::new("fails");
    let service = new_service("failing-svc", &scratch.0);
    std::fs::write(
        service.join("src/main.rs"),
        r#"#![no_std]
#![no_main]

#[torito::main]
async fn main() -> Result<(), &'static str> {
    Err(torito::boot::arg("app.reason").unwrap_or("no app.reason on the command line"))
}
"#,
    )
    .unwrap();
    cargo(&service, &["build", "--release"]);
    let mut guest = cargo_run(&service, "", &["app.reason=no-upstream-configured"])?;
    let outcome = guest.expect_exit(1, BOOT)?;
    if !outcome
        .console
        .contains("main returned an error: no-upstream-configured")
    {
        return Err(guest.failure(
            "the console does not show main's error with the reason given after `cargo run --`",
        ));
    }
    Ok(())
}

/// Plain `cargo test` builds for the image's target, which has no test harness: it
/// fails, and its first error says to run `cargo host-test`.
#[test]
fn plain_cargo_test_says_to_use_host_test() {
    let scratch = Scratch::new("plain-test");
    let service = new_service("plain-test-svc", &scratch.0);
    let mut test = command("cargo", &["test"], &service);
    test.env("CARGO_TARGET_DIR", services_target());
    let output = run(test);
    let stderr = text(&output.stderr);
    let first_error = stderr
        .lines()
        .find(|line| line.starts_with("error"))
        .unwrap_or_default();
    assert!(
        !output.status.success() && first_error.contains("use `cargo host-test`"),
        "expected `cargo test` to fail with an error naming `cargo host-test` first; it \
         ended with {} and printed:\n{stderr}",
        output.status
    );
}

/// Without `--release` the image links too (it must end below 2 MiB): the generated
/// dev profile optimises the dependencies.
#[test]
fn a_debug_build_links() {
    let scratch = Scratch::new("debug");
    let service = new_service("debug-svc", &scratch.0);
    cargo(&service, &["build"]);
}

/// The generator refuses what it cannot make well, says why, and writes nothing.
#[test]
fn new_service_refuses_bad_names_and_existing_directories() {
    let scratch = Scratch::new("refuses");
    let existing = scratch.0.join("taken");
    std::fs::create_dir(&existing).unwrap();
    std::fs::write(existing.join("keep.txt"), "mine").unwrap();
    let cases = [
        ("taken", "8080", "already exists"),
        ("9lives", "8080", "is not a crate name"),
        ("my app", "8080", "is not a crate name"),
        ("fn", "8080", "is a Rust keyword"),
        ("torito", "8080", "already uses"),
        ("fine", "70000", "is not a TCP port"),
    ];
    for (name, port, message) in cases {
        let output = run(command(
            "make",
            &[
                "-s",
                "new-service",
                &format!("NAME={name}"),
                &format!("DIR={}", scratch.0.display()),
                &format!("PORT={port}"),
            ],
            &workspace_root(),
        ));
        let stderr = text(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(message),
            "NAME={name:?} PORT={port}: expected a refusal saying `{message}`, got {} \
             with:\n{stderr}",
            output.status
        );
    }
    let mut left: Vec<_> = std::fs::read_dir(&scratch.0)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["taken"],
        "a refused make new-service left files behind"
    );
    assert_eq!(
        std::fs::read_to_string(existing.join("keep.txt")).unwrap(),
        "mine"
    );
}

/// `PORT=N` reaches both places that name the port: the service's `PORT` and the
/// runner's forward.
#[test]
fn new_service_port_sets_the_service_and_the_forward() {
    let scratch = Scratch::new("port");
    let output = run(command(
        "make",
        &[
            "-s",
            "new-service",
            "NAME=port-svc",
            &format!("DIR={}", scratch.0.display()),
            "PORT=9090",
        ],
        &workspace_root(),
    ));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let service = scratch.0.join("port-svc");
    let library = std::fs::read_to_string(service.join("src/lib.rs")).unwrap();
    let config = std::fs::read_to_string(service.join(".cargo/config.toml")).unwrap();
    assert!(
        library.contains("pub const PORT: u16 = 9090;"),
        "src/lib.rs:\n{library}"
    );
    assert!(
        config.contains(r#""--forward", "9090:9090""#),
        ".cargo/config.toml:\n{config}"
    );
}
