//! The Redis-protocol store (examples/kv), probed from the host with Debian's redis-cli
//! (redis-tools; qemu/setup.sh installs it) and with raw sockets where exact bytes
//! matter.
//!
//! Needs `build/kv.elf` (`make images`). Each test boots it on one machine and CPU
//! count, forwards a free host port to 6379 and runs these steps in order, each against
//! a deadline:
//!
//! 1. every command and its errors through redis-cli, replies compared as it prints
//!    them;
//! 2. `redis-cli --pipe` with 10,000 requests, then DBSIZE;
//! 3. 3,000 requests written at once on a raw socket: the replies in order, byte-exact;
//! 4. a 1 MiB value of every byte value, set by redis-cli and by a raw socket, read back
//!    byte-exact; one byte more is refused and the connection closed;
//! 5. 1,000 keys: DBSIZE;
//! 6. malformed frames: each answered with its error, then the connection closes;
//! 7. keys with a deadline vanish, read or not (the sweep task);
//! 8. 50 clients at once, each setting and reading its own keys and counting on a
//!    shared counter; the counter is exact afterwards;
//! 9. a fresh connection still answers.
//!
//! A separate boot with a small `kv.maxmemory=` fills the store until `-OOM`, and the
//! service must go on serving reads, deletes and, after the deletes, writes.
//!
//! A boot with a QMP socket presses the ACPI power button (`system_powerdown`) while
//! eight clients pipeline SETs and GETs: every batch sent before the stop is answered
//! whole, no reply is cut, every connection ends with a clean end of stream, kv prints
//! `kv: stopped cleanly` and the VM exits 0 (microvm, and q35 with two CPUs).
//!
//! Then the console must show no `!!!` line (panic or CPU exception). Deadlines only
//! bound how long a broken guest can hang the run; nothing asserts a timing.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use torito_qemu_tests::powerdown_under_load as powerdown_under_load_of;
use torito_qemu_tests::{
    Failure, Guest, LoadClient, Qmp, RunOptions, Step, expect_end, expect_graceful_stop,
    failed_connections, read_up_to, run_clients, run_steps, seeded_bytes,
};

/// The guest port the store serves.
const GUEST_PORT: u16 = 6379;
/// What the image prints once it accepts connections.
const LISTENING: &str = "kv: listening on port 6379";
/// Bound for boot plus DHCP to reach the listening line.
const BOOT: Duration = Duration::from_secs(60);
/// Bound for one socket read or write (and one redis-cli run).
const IO: Duration = Duration::from_secs(60);
/// The OOM reply.
const OOM: &str = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
/// The largest value the store takes.
const MIB: usize = 1 << 20;

const STEPS: [Step; 9] = [
    ("every command through redis-cli", commands),
    ("redis-cli --pipe", pipe),
    ("pipelining on a raw socket", pipelining),
    ("1 MiB values", big_values),
    ("1,000 keys", thousand_keys),
    ("malformed frames", malformed),
    ("expiry", expiry),
    ("50 concurrent clients", concurrent),
    ("a fresh connection after all that", fresh),
];

/// Boots kv with `options`, runs `steps` against it, and checks the console.
fn kv_service(options: RunOptions, steps: &[Step]) -> Result<(), Failure> {
    let (guest, port) = Guest::start_forwarded("kv", &options, GUEST_PORT, LISTENING, BOOT)?;
    run_steps(
        &guest,
        &format!("kv {}", options.args().join(" ")),
        port,
        steps,
    )
}

#[test]
fn kv_microvm() -> Result<(), Failure> {
    kv_service(RunOptions::default(), &STEPS)
}

/// Four cores: the connections spread over them, all on one store.
#[test]
fn kv_microvm_smp4() -> Result<(), Failure> {
    kv_service(RunOptions::default().smp(4), &STEPS)
}

/// virtio-pci on q35, two cores.
#[test]
fn kv_q35_smp2() -> Result<(), Failure> {
    kv_service(RunOptions::default().machine("q35").smp(2), &STEPS)
}

/// A 4 MB limit (Redis's units: 4mb = 4 MiB): writes are refused with `-OOM` once the
/// heap's use would pass it, and the service keeps serving.
#[test]
fn kv_memory_limit() -> Result<(), Failure> {
    kv_service(
        RunOptions::default().smp(2).append("kv.maxmemory=4mb"),
        &[("the memory limit", memory_limit)],
    )
}

/// A bad `kv.maxmemory=` stops the service with a message naming the key, not a crash.
#[test]
fn kv_bad_memory_limit() -> Result<(), Failure> {
    let mut guest = Guest::start("kv", &RunOptions::default().append("kv.maxmemory=lots"));
    let outcome = guest.expect_exit(1, BOOT)?;
    if outcome
        .line("kv.maxmemory=\"lots\" is not a size")
        .is_none()
    {
        return Err(guest.failure("no message naming the bad kv.maxmemory value"));
    }
    Ok(())
}

// --- Clients ----------------------------------------------------------------------------

/// Runs redis-cli against `port` with `args`, and `stdin` on its standard input; its
/// standard output. `--no-raw` prints replies as a terminal shows them, so that a null,
/// an empty string and an error look different.
fn cli_with(port: u16, args: &[&str], stdin: &[u8]) -> Result<Vec<u8>, String> {
    let port_text = port.to_string();
    let mut child = Command::new("timeout")
        .arg(IO.as_secs().to_string())
        .args(["redis-cli", "-p", &port_text])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("running redis-cli (apt-get install redis-tools): {error}"))?;
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    let writer = thread::spawn(move || input.write_all(&stdin));
    let output = child
        .wait_with_output()
        .map_err(|error| format!("waiting for redis-cli: {error}"))?;
    let _ = writer.join();
    if !output.status.success() {
        return Err(format!(
            "redis-cli {args:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(output.stdout)
}

/// One redis-cli command (`--no-raw`), its output as text.
fn cli(port: u16, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["--no-raw"];
    all.extend_from_slice(args);
    let output = cli_with(port, &all, b"")?;
    Ok(String::from_utf8_lossy(&output).into_owned())
}

/// A raw connection with read and write timeouts.
fn connect(port: u16) -> Result<TcpStream, String> {
    torito_qemu_tests::connect(port, IO)
}

/// A request as clients encode it (an array of bulk strings).
fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads exactly `expected.len()` bytes and compares them with `expected`.
fn expect_bytes(stream: &mut TcpStream, expected: &[u8], what: &str) -> Result<(), String> {
    let mut reply = vec![0u8; expected.len()];
    stream
        .read_exact(&mut reply)
        .map_err(|error| format!("{what}: reading the reply: {error}"))?;
    if reply != expected {
        let at = reply
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        let show = |bytes: &[u8]| {
            String::from_utf8_lossy(&bytes[at.saturating_sub(20)..(at + 60).min(bytes.len())])
                .into_owned()
        };
        return Err(format!(
            "{what}: the reply differs at byte {at} of {}: got {:?}, expected {:?}",
            expected.len(),
            show(&reply),
            show(expected)
        ));
    }
    Ok(())
}

/// Sends one request and compares its reply.
fn round_trip(stream: &mut TcpStream, args: &[&[u8]], expected: &[u8]) -> Result<(), String> {
    stream
        .write_all(&request(args))
        .map_err(|error| format!("sending: {error}"))?;
    let what = format!("{:?}", String::from_utf8_lossy(args[0]));
    expect_bytes(stream, expected, &what)
}

/// Waits for the server to close the connection (end of stream, or a reset).
fn expect_closed(stream: &mut TcpStream, what: &str) -> Result<(), String> {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => Ok(()),
        Err(error) if error.kind() == ErrorKind::ConnectionReset => Ok(()),
        Ok(_) => Err(format!(
            "{what}: more bytes after the error instead of a close"
        )),
        Err(error) => Err(format!("{what}: the server did not close: {error}")),
    }
}

/// Reads one reply line (up to and with its `\r\n`).
fn read_line(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        stream
            .read_exact(&mut byte)
            .map_err(|error| format!("reading a reply line: {error}"))?;
        line.push(byte[0]);
    }
    Ok(line)
}

// --- Steps ------------------------------------------------------------------------------

/// Step 1: every command and its errors, as redis-cli prints the replies.
fn commands(port: u16) -> Result<(), String> {
    let cases: &[(&[&str], &str)] = &[
        (&["FLUSHALL"], "OK\n"),
        (&["PING"], "PONG\n"),
        (&["PING", "hello"], "\"hello\"\n"),
        (
            &["PING", "a", "b"],
            "(error) ERR wrong number of arguments for 'ping' command\n",
        ),
        (&["ECHO", "two words"], "\"two words\"\n"),
        (
            &["ECHO"],
            "(error) ERR wrong number of arguments for 'echo' command\n",
        ),
        (&["GET", "k"], "(nil)\n"),
        (&["SET", "k", "v"], "OK\n"),
        (&["GET", "k"], "\"v\"\n"),
        (&["SET", "k", "w", "NX"], "(nil)\n"),
        (&["SET", "k", "w", "XX"], "OK\n"),
        (&["SET", "new", "w", "XX"], "(nil)\n"),
        (&["SET", "new", "w", "NX"], "OK\n"),
        (&["SET", "k", "v", "NX", "XX"], "(error) ERR syntax error\n"),
        (&["SET", "k", "v", "BOGUS"], "(error) ERR syntax error\n"),
        (
            &["SET", "k", "v", "EX", "soon"],
            "(error) ERR value is not an integer or out of range\n",
        ),
        (
            &["SET", "k", "v", "EX", "0"],
            "(error) ERR invalid expire time in 'set' command\n",
        ),
        (
            &["SET", "k"],
            "(error) ERR wrong number of arguments for 'set' command\n",
        ),
        (&["SET", "t", "v", "EX", "100"], "OK\n"),
        (&["TTL", "t"], "(integer) 100\n"),
        (&["SET", "t", "v", "PX", "100000"], "OK\n"),
        (&["TTL", "t"], "(integer) 100\n"),
        (&["TTL", "k"], "(integer) -1\n"),
        (&["TTL", "missing"], "(integer) -2\n"),
        (&["EXPIRE", "k", "50"], "(integer) 1\n"),
        (&["TTL", "k"], "(integer) 50\n"),
        (&["EXPIRE", "k", "10", "GT"], "(integer) 0\n"),
        (&["EXPIRE", "missing", "10"], "(integer) 0\n"),
        (
            &["EXPIRE", "k", "later"],
            "(error) ERR value is not an integer or out of range\n",
        ),
        (
            &["EXPIRE", "k"],
            "(error) ERR wrong number of arguments for 'expire' command\n",
        ),
        (&["DEL", "k", "missing"], "(integer) 1\n"),
        (
            &["DEL"],
            "(error) ERR wrong number of arguments for 'del' command\n",
        ),
        (&["EXISTS", "new", "new", "k"], "(integer) 2\n"),
        (&["INCR", "n"], "(integer) 1\n"),
        (&["INCRBY", "n", "41"], "(integer) 42\n"),
        (&["DECR", "n"], "(integer) 41\n"),
        (
            &["INCRBY", "n", "x"],
            "(error) ERR value is not an integer or out of range\n",
        ),
        (
            &["INCR", "new"],
            "(error) ERR value is not an integer or out of range\n",
        ),
        (&["SET", "max", "9223372036854775807"], "OK\n"),
        (
            &["INCR", "max"],
            "(error) ERR increment or decrement would overflow\n",
        ),
        (&["MSET", "a", "1", "b", "2"], "OK\n"),
        (
            &["MSET", "a", "1", "b"],
            "(error) ERR wrong number of arguments for 'mset' command\n",
        ),
        (
            &["MGET", "a", "missing", "b"],
            "1) \"1\"\n2) (nil)\n3) \"2\"\n",
        ),
        (&["DBSIZE"], "(integer) 6\n"),
        (&["CONFIG", "GET", "save"], "1) \"save\"\n2) \"\"\n"),
        (
            &["CONFIG", "GET", "appendonly"],
            "1) \"appendonly\"\n2) \"no\"\n",
        ),
        (&["COMMAND", "DOCS"], "(empty array)\n"),
        (&["SELECT", "1"], "(error) ERR DB index is out of range\n"),
        (
            &["NOSUCH", "x"],
            "(error) ERR unknown command 'NOSUCH', with args beginning with: 'x' \n",
        ),
        (&["FLUSHALL"], "OK\n"),
        (&["DBSIZE"], "(integer) 0\n"),
    ];
    for (args, expected) in cases {
        let output = cli(port, args)?;
        if output != *expected {
            return Err(format!(
                "redis-cli {args:?}: got {output:?}, expected {expected:?}"
            ));
        }
    }
    let info = cli(port, &["INFO"])?;
    if !info.contains("redis_version:") || !info.contains("used_memory:") {
        return Err(format!("INFO lacks redis_version or used_memory: {info:?}"));
    }
    Ok(())
}

/// Step 2: `redis-cli --pipe` with 10,000 SETs in one stream.
fn pipe(port: u16) -> Result<(), String> {
    let mut input = request(&[b"FLUSHALL"]);
    for index in 0..10_000 {
        input.extend(request(&[
            b"SET",
            format!("pipe:{index}").as_bytes(),
            format!("{index}").as_bytes(),
        ]));
    }
    let output = String::from_utf8_lossy(&cli_with(port, &["--pipe"], &input)?).into_owned();
    if !output.contains("errors: 0, replies: 10001") {
        return Err(format!("redis-cli --pipe said: {output}"));
    }
    let size = cli(port, &["DBSIZE"])?;
    if size != "(integer) 10000\n" {
        return Err(format!("DBSIZE after the pipe: {size:?}"));
    }
    Ok(())
}

/// Step 3: 3,000 requests in one write (inline ones among them); the replies in order.
fn pipelining(port: u16) -> Result<(), String> {
    let mut stream = connect(port)?;
    let mut input = request(&[b"DEL", b"counter"]);
    let mut expected = b":0\r\n".to_vec();
    if cli(port, &["EXISTS", "counter"])? != "(integer) 0\n" {
        return Err("the counter exists already".into());
    }
    for index in 0..1000 {
        let key = format!("pipelined:{index}");
        let value = format!("value {index}");
        input.extend(request(&[b"SET", key.as_bytes(), value.as_bytes()]));
        input.extend(format!("GET {key}\r\n").into_bytes());
        input.extend(request(&[b"INCR", b"counter"]));
        expected.extend(b"+OK\r\n");
        expected.extend(format!("${}\r\n{value}\r\n", value.len()).into_bytes());
        expected.extend(format!(":{}\r\n", index + 1).into_bytes());
    }
    stream
        .write_all(&input)
        .map_err(|error| format!("sending 3,000 requests: {error}"))?;
    expect_bytes(&mut stream, &expected, "3,000 pipelined replies")
}

/// Step 4: 1 MiB values round-trip byte-exact; one byte more is refused.
fn big_values(port: u16) -> Result<(), String> {
    let mut value = seeded_bytes(0x6b76_0004, MIB);
    // Every byte value, CR and LF included, at the start.
    for (index, byte) in value.iter_mut().take(256).enumerate() {
        *byte = index as u8;
    }
    let mut expected = format!("${MIB}\r\n").into_bytes();
    expected.extend(&value);
    expected.extend(b"\r\n");
    // Set by redis-cli (-x: the last argument from standard input), read on a socket.
    cli_with(port, &["-x", "SET", "big:cli"], &value)?;
    let mut stream = connect(port)?;
    round_trip(&mut stream, &[b"GET", b"big:cli"], &expected)?;
    // Set and read on a socket, twice on one connection (the buffers grow and shrink).
    for round in 0..2 {
        round_trip(&mut stream, &[b"SET", b"big:raw", &value], b"+OK\r\n")?;
        round_trip(&mut stream, &[b"GET", b"big:raw"], &expected)
            .map_err(|error| format!("round {round}: {error}"))?;
    }
    // One byte more: the error, then the connection closes.
    let mut stream = connect(port)?;
    let too_big = vec![b'x'; MIB + 1];
    stream
        .write_all(&request(&[b"SET", b"big:refused", &too_big]))
        .or_else(|error| match error.kind() {
            // The server may close before taking all of it.
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => Ok(()),
            _ => Err(format!("sending the oversized value: {error}")),
        })?;
    expect_bytes(
        &mut stream,
        b"-ERR Protocol error: invalid bulk length\r\n",
        "a 1 MiB + 1 value",
    )?;
    expect_closed(&mut stream, "a 1 MiB + 1 value")?;
    let exists = cli(port, &["EXISTS", "big:refused"])?;
    if exists != "(integer) 0\n" {
        return Err(format!("the refused value was stored: {exists:?}"));
    }
    cli(port, &["DEL", "big:cli", "big:raw"]).map(|_| ())
}

/// Step 5: 1,000 keys, counted by DBSIZE.
fn thousand_keys(port: u16) -> Result<(), String> {
    let mut stream = connect(port)?;
    let mut input = request(&[b"FLUSHALL"]);
    let mut expected = b"+OK\r\n".to_vec();
    for index in 0..1000 {
        input.extend(request(&[b"SET", format!("key:{index}").as_bytes(), b"v"]));
        expected.extend(b"+OK\r\n");
    }
    stream
        .write_all(&input)
        .map_err(|error| error.to_string())?;
    expect_bytes(&mut stream, &expected, "1,000 SETs")?;
    let size = cli(port, &["DBSIZE"])?;
    if size != "(integer) 1000\n" {
        return Err(format!("DBSIZE: {size:?}"));
    }
    let sample = cli(port, &["MGET", "key:0", "key:999", "key:1000"])?;
    if sample != "1) \"v\"\n2) \"v\"\n3) (nil)\n" {
        return Err(format!("MGET of the first, last and one past: {sample:?}"));
    }
    Ok(())
}

/// Step 6: malformed frames, each on its own connection: the error, then a close.
fn malformed(port: u16) -> Result<(), String> {
    let cases: [(&[u8], &[u8]); 6] = [
        (
            b"*2\r\n$3\r\nGET\r\n$x\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*abc\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n:5\r\n",
            b"-ERR Protocol error: expected '$', got ':'\r\n",
        ),
        (
            b"*1\r\n$4\r\nPINGxx",
            b"-ERR Protocol error: expected '\\r\\n'\r\n",
        ),
        (
            b"SET k \"open\r\n",
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        (
            &[0xff; 70_000],
            b"-ERR Protocol error: too big inline request\r\n",
        ),
    ];
    for (input, expected) in cases {
        let what = format!(
            "{:?}",
            String::from_utf8_lossy(&input[..input.len().min(20)])
        );
        let mut stream = connect(port)?;
        // A valid request first: it is answered before the bad one.
        let mut bytes = request(&[b"PING"]);
        bytes.extend_from_slice(input);
        stream
            .write_all(&bytes)
            .map_err(|error| format!("{what}: sending: {error}"))?;
        let mut all = b"+PONG\r\n".to_vec();
        all.extend_from_slice(expected);
        expect_bytes(&mut stream, &all, &what)?;
        expect_closed(&mut stream, &what)?;
    }
    // Garbage that is not a frame at all still gets an answer (an unknown command).
    let mut stream = connect(port)?;
    stream
        .write_all(b"\x01\x02 x\r\n")
        .map_err(|e| e.to_string())?;
    expect_bytes(
        &mut stream,
        b"-ERR unknown command '\x01\x02', with args beginning with: 'x' \r\n",
        "binary inline command",
    )
}

/// Step 7: deadlines: a key read after its deadline is gone, and keys nobody reads are
/// swept away (DBSIZE drops to zero by itself).
fn expiry(port: u16) -> Result<(), String> {
    let mut stream = connect(port)?;
    round_trip(&mut stream, &[b"FLUSHALL"], b"+OK\r\n")?;
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for index in 0..100 {
        input.extend(request(&[
            b"SET",
            format!("short:{index}").as_bytes(),
            b"v",
            b"PX",
            b"100",
        ]));
        expected.extend(b"+OK\r\n");
    }
    stream
        .write_all(&input)
        .map_err(|error| error.to_string())?;
    expect_bytes(&mut stream, &expected, "100 SETs with PX 100")?;
    round_trip(&mut stream, &[b"SET", b"kept", b"v"], b"+OK\r\n")?;
    // Poll until the sweep has removed them: 16 shards at 100 ms each take 1.6 s; the
    // deadline only bounds a broken sweep.
    let deadline = Instant::now() + IO;
    loop {
        thread::sleep(Duration::from_millis(250));
        stream
            .write_all(&request(&[b"DBSIZE"]))
            .map_err(|e| e.to_string())?;
        let reply = read_line(&mut stream)?;
        if reply == b":1\r\n" {
            break;
        }
        if Instant::now() > deadline {
            let reply = String::from_utf8_lossy(&reply).into_owned();
            return Err(format!("expired keys never swept: DBSIZE still {reply:?}"));
        }
    }
    round_trip(&mut stream, &[b"GET", b"short:5"], b"$-1\r\n")?;
    round_trip(&mut stream, &[b"GET", b"kept"], b"$1\r\nv\r\n")
}

/// Step 8: 50 clients at once, each with its own keys, all counting on one counter.
///
/// The connections are opened one after another (each answers a PING before the next
/// opens), then all 50 work at once. Fifty SYNs in one burst through QEMU's user
/// networking sometimes leave some connections unanswered for more than a minute, with
/// the echo service too (2026-12, q35 with two CPUs): that is the network stack's or
/// slirp's matter, not the store's, and is left to a test of its own.
fn concurrent(port: u16) -> Result<(), String> {
    const CLIENTS: usize = 50;
    const ROUNDS: usize = 20;
    cli(port, &["DEL", "shared"])?;
    let mut streams = Vec::new();
    for client in 0..CLIENTS {
        let mut stream = connect(port).map_err(|error| format!("client {client}: {error}"))?;
        round_trip(&mut stream, &[b"PING"], b"+PONG\r\n")
            .map_err(|error| format!("client {client}: {error}"))?;
        streams.push(stream);
    }
    let results = run_clients(streams, |client, mut stream| {
        for round in 0..ROUNDS {
            let key = format!("client:{client}:{round}");
            let length = 1 + (client * 37 + round * 101) % 3000;
            let value = seeded_bytes((client * 1000 + round) as u64, length);
            round_trip(&mut stream, &[b"SET", key.as_bytes(), &value], b"+OK\r\n")?;
            let mut expected = format!("${}\r\n", value.len()).into_bytes();
            expected.extend(&value);
            expected.extend(b"\r\n");
            round_trip(&mut stream, &[b"GET", key.as_bytes()], &expected)?;
            stream
                .write_all(&request(&[b"INCR", b"shared"]))
                .map_err(|error| error.to_string())?;
            let reply = read_line(&mut stream)?;
            if reply.first() != Some(&b':') {
                return Err(format!("INCR: {:?}", String::from_utf8_lossy(&reply)));
            }
        }
        Ok(())
    });
    failed_connections(&results)?;
    let total = cli(port, &["GET", "shared"])?;
    if total != format!("\"{}\"\n", CLIENTS * ROUNDS) {
        return Err(format!(
            "the shared counter is {total:?}, not {}",
            CLIENTS * ROUNDS
        ));
    }
    Ok(())
}

/// Step 9: still serving.
fn fresh(port: u16) -> Result<(), String> {
    let output = cli(port, &["PING"])?;
    if output != "PONG\n" {
        return Err(format!("PING: {output:?}"));
    }
    Ok(())
}

/// The limit step: fill with 256 KiB values until `-OOM`; reads, deletes and PING go
/// on; after deletes, writes work again; a new connection is served.
fn memory_limit(port: u16) -> Result<(), String> {
    let mut stream = connect(port)?;
    let value = seeded_bytes(0x6b76_00ff, 256 << 10);
    let mut stored = 0;
    loop {
        let key = format!("fill:{stored}");
        stream
            .write_all(&request(&[b"SET", key.as_bytes(), &value]))
            .map_err(|error| error.to_string())?;
        let mut reply = [0u8; 5];
        stream
            .read_exact(&mut reply)
            .map_err(|error| error.to_string())?;
        match &reply {
            b"+OK\r\n" => stored += 1,
            b"-OOM " => {
                expect_bytes(&mut stream, &OOM.as_bytes()[5..], "the OOM reply")?;
                break;
            }
            other => return Err(format!("SET {key}: {:?}", String::from_utf8_lossy(other))),
        }
        if stored > 64 {
            return Err("64 values of 256 KiB stored under a 4 MiB limit".into());
        }
    }
    if stored == 0 {
        return Err("not one 256 KiB value fits under the 4 MiB limit".into());
    }
    // Still serving: reads, other writes refused, PING, a new connection.
    let mut expected = format!("${}\r\n", value.len()).into_bytes();
    expected.extend(&value);
    expected.extend(b"\r\n");
    round_trip(&mut stream, &[b"GET", b"fill:0"], &expected)?;
    round_trip(&mut stream, &[b"SET", b"more", &value], OOM.as_bytes())?;
    round_trip(&mut stream, &[b"PING"], b"+PONG\r\n")?;
    let size = cli(port, &["DBSIZE"])?;
    if size != format!("(integer) {stored}\n") {
        return Err(format!("DBSIZE {size:?} after {stored} stored values"));
    }
    // Deleting makes room again.
    round_trip(
        &mut stream,
        &[b"DEL", b"fill:0", b"fill:1"],
        if stored > 1 { b":2\r\n" } else { b":1\r\n" },
    )?;
    round_trip(&mut stream, &[b"SET", b"more", &value], b"+OK\r\n")?;
    let info = cli(port, &["INFO"])?;
    if !info.contains("maxmemory:4194304") || info.contains("rejected_writes_oom:0\r") {
        return Err(format!(
            "INFO does not show the limit and the refusals: {info:?}"
        ));
    }
    fresh(port)
}

// --- Stopping -------------------------------------------------------------------------

/// What kv prints once every connection has closed after a stop request.
const STOPPED: &str = "kv: stopped cleanly";
/// Clients at work when the stop comes, and batches each does before it.
const LOAD_CLIENTS: usize = 8;
const BATCHES_BEFORE_STOP: usize = 5;
/// Requests per batch (written at once: a pipeline).
const BATCH: usize = 16;

/// One client: pipelined batches of SET and GET until the stop, each batch's replies
/// read whole; then reads to the end of the stream. A batch written before the stop was
/// requested must be answered whole; a reply cut short fails whenever it happens.
fn load_client(client: usize, mut stream: TcpStream, load: &LoadClient) -> Result<(), String> {
    let mut batch_number = 0;
    while !load.stopped() {
        let mut input = Vec::new();
        let mut expected = Vec::new();
        for index in 0..BATCH / 2 {
            let key = format!("stop:{client}:{batch_number}:{index}");
            let value = seeded_bytes((client * 100_000 + batch_number * 100 + index) as u64, 100);
            input.extend(request(&[b"SET", key.as_bytes(), &value]));
            input.extend(request(&[b"GET", key.as_bytes()]));
            expected.extend(b"+OK\r\n");
            expected.extend(format!("${}\r\n", value.len()).into_bytes());
            expected.extend(&value);
            expected.extend(b"\r\n");
        }
        let written = stream.write_all(&input);
        let before_stop = written.is_ok() && !load.stopped();
        if written.is_err() {
            if load.stopped() {
                return Ok(());
            }
            return Err(format!("batch {batch_number}: sending: {written:?}"));
        }
        let reply = read_up_to(&mut stream, expected.len(), !before_stop)
            .map_err(|error| format!("batch {batch_number}: {error}"))?;
        let got = reply.len();
        if got == 0 && !before_stop {
            return Ok(());
        }
        if reply[..] != expected[..got] || got < expected.len() {
            return Err(format!(
                "batch {batch_number} (sent {} the stop): {got} of {} reply bytes, {}",
                if before_stop { "before" } else { "after" },
                expected.len(),
                if reply[..] == expected[..got] {
                    "cut short"
                } else {
                    "wrong"
                }
            ));
        }
        batch_number += 1;
        load.round_done();
    }
    expect_end(&mut stream)
}

/// `system_powerdown` while eight clients pipeline requests: kv stops accepting,
/// answers every batch sent before the stop whole, closes each connection cleanly,
/// prints its line and exits 0.
fn powerdown_under_load(name: &str, options: RunOptions) -> Result<(), Failure> {
    // A socket of this test's own: tests run at once.
    let path =
        std::env::temp_dir().join(format!("torito-qmp-kv-{name}-{}.sock", std::process::id()));
    let (mut guest, port) =
        Guest::start_forwarded("kv", &options.qmp(&path), GUEST_PORT, LISTENING, BOOT)?;
    let mut qmp = Qmp::connect(&path, IO).map_err(|error| guest.failure(error))?;
    // Connected one after another (see `concurrent`), then all at work at once.
    let mut streams = Vec::new();
    for client in 0..LOAD_CLIENTS {
        let mut stream = connect(port).map_err(|error| guest.failure(error))?;
        round_trip(&mut stream, &[b"PING"], b"+PONG\r\n")
            .map_err(|error| guest.failure(format!("client {client}: {error}")))?;
        streams.push(stream);
    }
    let run = powerdown_under_load_of(&mut qmp, streams, BATCHES_BEFORE_STOP, IO, load_client);
    run.powerdown.map_err(|error| guest.failure(error))?;
    failed_connections(&run.results).map_err(|error| guest.failure(error))?;
    expect_graceful_stop(&mut guest, STOPPED, IO)?;
    Ok(())
}

#[test]
fn kv_powerdown_under_load_q35_smp2() -> Result<(), Failure> {
    powerdown_under_load("q35", RunOptions::default().machine("q35").smp(2))
}

#[test]
fn kv_powerdown_under_load_microvm() -> Result<(), Failure> {
    powerdown_under_load("microvm", RunOptions::default())
}
