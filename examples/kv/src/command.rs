//! The commands: one request's arguments in, its reply appended to the output.
//!
//! Replies and error texts follow Redis 7, so that redis-cli and redis-benchmark (and
//! client libraries) read them as they read Redis's. A command refused for memory
//! leaves no partial reply behind: the output is cut back to where the command's reply
//! started and `-OOM ...` is written instead.

use crate::resp::{self, Digits, OutOfMemory};
use crate::store::{self, Condition, ExpireCondition, Refused, Store, Ttl};
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::ops::Range;

/// The OOM reply (Redis's text).
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// The commands this server knows (COMMAND COUNT).
const COMMANDS: &[&str] = &[
    "PING", "ECHO", "SET", "GET", "DEL", "EXISTS", "INCR", "DECR", "INCRBY", "DECRBY", "MGET",
    "MSET", "EXPIRE", "PEXPIRE", "TTL", "PTTL", "DBSIZE", "FLUSHALL", "FLUSHDB", "SELECT",
    "CONFIG", "INFO", "COMMAND", "QUIT",
];

/// One request's arguments: ranges into the connection's buffer.
#[derive(Clone, Copy)]
pub struct Args<'a> {
    buffer: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    /// The arguments at `ranges` of `buffer` (every range lies inside it: the parser
    /// made them).
    pub fn new(buffer: &'a [u8], ranges: &'a [Range<usize>]) -> Self {
        Self { buffer, ranges }
    }

    /// How many arguments (the command's name included).
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `index`.
    ///
    /// # Panics
    /// When `index` is not below [`len`](Self::len).
    pub fn get(&self, index: usize) -> &'a [u8] {
        &self.buffer[self.ranges[index].clone()]
    }

    /// Arguments from `start` on.
    fn from(&self, start: usize) -> impl Iterator<Item = &'a [u8]> + '_ {
        (start..self.len()).map(|index| self.get(index))
    }
}

/// What the connection does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Read the next request.
    Continue,
    /// Send the replies so far, then close (QUIT, or no room even for an error reply).
    Close,
}

/// Where a command stops early.
enum Stop {
    /// Refused for memory: the reply becomes `-OOM`.
    OutOfMemory,
}

impl From<OutOfMemory> for Stop {
    fn from(_: OutOfMemory) -> Self {
        Stop::OutOfMemory
    }
}

type Outcome = Result<After, Stop>;

/// Runs the request in `args` (not empty) against `store` at `now` (milliseconds),
/// appending its reply to `out`.
pub fn execute(store: &Store, args: Args<'_>, now: u64, out: &mut Vec<u8>) -> After {
    let start = out.len();
    match run(store, args, now, out) {
        Ok(after) => after,
        Err(Stop::OutOfMemory) => {
            out.truncate(start);
            match resp::error(out, OOM) {
                Ok(()) => After::Continue,
                Err(OutOfMemory) => After::Close,
            }
        }
    }
}

/// The command's name in upper case (names longer than any command stay as they are:
/// they match nothing).
fn upper(name: &[u8]) -> ([u8; 16], usize) {
    let mut buffer = [0u8; 16];
    if name.len() <= buffer.len() {
        buffer[..name.len()].copy_from_slice(name);
        buffer[..name.len()].make_ascii_uppercase();
        (buffer, name.len())
    } else {
        (buffer, 0)
    }
}

fn run(store: &Store, args: Args<'_>, now: u64, out: &mut Vec<u8>) -> Outcome {
    let (name, length) = upper(args.get(0));
    let name = &name[..length];
    // The arity each command accepts: exactly n, or at least n (negative, as Redis).
    let arity: i32 = match name {
        b"PING" => -1,
        b"ECHO" | b"GET" | b"INCR" | b"DECR" | b"TTL" | b"PTTL" | b"SELECT" => 2,
        b"SET" => -3,
        b"DEL" | b"EXISTS" | b"MGET" | b"COMMAND" | b"INFO" => -1,
        b"INCRBY" | b"DECRBY" => 3,
        b"MSET" => -3,
        b"EXPIRE" | b"PEXPIRE" => -3,
        b"DBSIZE" | b"QUIT" => 1,
        b"FLUSHALL" | b"FLUSHDB" => -1,
        b"CONFIG" => -2,
        _ => return unknown(args, out),
    };
    let count = args.len() as i32;
    let arity_ok = if arity < 0 {
        count >= -arity
    } else {
        count == arity
    };
    let arity_ok = arity_ok
        && match name {
            b"DEL" | b"EXISTS" | b"MGET" => count >= 2,
            b"PING" | b"FLUSHALL" | b"FLUSHDB" => count <= 2,
            b"MSET" => count % 2 == 1,
            b"EXPIRE" | b"PEXPIRE" => count <= 4,
            _ => true,
        };
    if !arity_ok {
        let mut lower = [0u8; 16];
        lower[..name.len()].copy_from_slice(name);
        lower[..name.len()].make_ascii_lowercase();
        resp::error_parts(
            out,
            &[
                b"ERR wrong number of arguments for '",
                &lower[..name.len()],
                b"' command",
            ],
        )?;
        return Ok(After::Continue);
    }
    match name {
        b"PING" if count == 2 => resp::bulk(out, args.get(1))?,
        b"PING" => resp::simple(out, "PONG")?,
        b"ECHO" => resp::bulk(out, args.get(1))?,
        b"SET" => set(store, args, now, out)?,
        b"GET" => store.get(args.get(1), now, |value| match value {
            Some(value) => resp::bulk(out, value),
            None => resp::nil(out),
        })?,
        b"DEL" => {
            let removed = args.from(1).filter(|key| store.delete(key, now)).count();
            resp::integer(out, removed as i64)?;
        }
        b"EXISTS" => {
            let found = args.from(1).filter(|key| store.exists(key, now)).count();
            resp::integer(out, found as i64)?;
        }
        b"INCR" => add(store, args.get(1), Some(1), now, out)?,
        b"DECR" => add(store, args.get(1), Some(-1), now, out)?,
        b"INCRBY" => add(store, args.get(1), store::integer(args.get(2)), now, out)?,
        b"DECRBY" => {
            let delta = store::integer(args.get(2)).map(|delta| delta.checked_neg());
            match delta {
                Some(None) => resp::error(out, "ERR decrement would overflow")?,
                Some(Some(delta)) => add(store, args.get(1), Some(delta), now, out)?,
                None => add(store, args.get(1), None, now, out)?,
            }
        }
        b"MGET" => {
            resp::array_header(out, args.len() - 1)?;
            for key in args.from(1) {
                store.get(key, now, |value| match value {
                    Some(value) => resp::bulk(out, value),
                    None => resp::nil(out),
                })?;
            }
        }
        b"MSET" => {
            // Admitted as a whole first, so that a refused MSET usually changes nothing;
            // each key is then set atomically, the MSET as a whole is not (its keys
            // live in different shards).
            let bytes: usize = args.from(1).map(|arg| arg.len()).sum::<usize>()
                + (args.len() / 2) * store::ENTRY_OVERHEAD;
            admitted(store.admit(bytes))?;
            for pair in 0..args.len() / 2 {
                let (key, value) = (args.get(1 + 2 * pair), args.get(2 + 2 * pair));
                admitted(
                    store
                        .set(key, value, None, Condition::Always, now)
                        .map(|_| ()),
                )?;
            }
            resp::simple(out, "OK")?;
        }
        b"EXPIRE" => expire(store, args, 1000, now, out)?,
        b"PEXPIRE" => expire(store, args, 1, now, out)?,
        b"TTL" | b"PTTL" => {
            let value = match store.ttl(args.get(1), now) {
                Ttl::Missing => -2,
                Ttl::Forever => -1,
                Ttl::Left(left) if name == b"TTL" => left.saturating_add(500) as i64 / 1000,
                Ttl::Left(left) => left as i64,
            };
            resp::integer(out, value)?;
        }
        b"DBSIZE" => resp::integer(out, store.len() as i64)?,
        b"FLUSHALL" | b"FLUSHDB" => match args.len() {
            2 if !args.get(1).eq_ignore_ascii_case(b"ASYNC")
                && !args.get(1).eq_ignore_ascii_case(b"SYNC") =>
            {
                resp::error(out, "ERR syntax error")?
            }
            _ => {
                store.clear();
                resp::simple(out, "OK")?;
            }
        },
        b"SELECT" => match args.get(1) {
            b"0" => resp::simple(out, "OK")?,
            _ => resp::error(out, "ERR DB index is out of range")?,
        },
        b"CONFIG" => config(store, args, out)?,
        b"INFO" => info(store, now, out)?,
        b"COMMAND" => command(args, out)?,
        b"QUIT" => {
            resp::simple(out, "OK")?;
            return Ok(After::Close);
        }
        _ => unreachable!("every name with an arity has a branch"),
    }
    Ok(After::Continue)
}

fn admitted(result: Result<(), Refused>) -> Result<(), Stop> {
    result.map_err(|_| Stop::OutOfMemory)
}

/// An unknown command: Redis's error, with the first arguments (cut to 64 bytes).
fn unknown(args: Args<'_>, out: &mut Vec<u8>) -> Outcome {
    let mut parts: [&[u8]; 12] = [b""; 12];
    parts[0] = b"ERR unknown command '";
    parts[1] = shorten(args.get(0));
    parts[2] = b"', with args beginning with: ";
    let mut at = 3;
    for arg in args.from(1).take(3) {
        parts[at] = b"'";
        parts[at + 1] = shorten(arg);
        parts[at + 2] = b"' ";
        at += 3;
    }
    resp::error_parts(out, &parts[..at])?;
    Ok(After::Continue)
}

fn shorten(arg: &[u8]) -> &[u8] {
    &arg[..arg.len().min(64)]
}

/// SET key value [NX|XX] [EX seconds|PX milliseconds].
fn set(store: &Store, args: Args<'_>, now: u64, out: &mut Vec<u8>) -> Result<(), Stop> {
    let mut condition = Condition::Always;
    let mut expires = None;
    let mut at = 3;
    while at < args.len() {
        let option = args.get(at);
        let next = (at + 1 < args.len()).then(|| args.get(at + 1));
        if option.eq_ignore_ascii_case(b"NX") && condition == Condition::Always {
            condition = Condition::IfAbsent;
        } else if option.eq_ignore_ascii_case(b"XX") && condition == Condition::Always {
            condition = Condition::IfPresent;
        } else if (option.eq_ignore_ascii_case(b"EX") || option.eq_ignore_ascii_case(b"PX"))
            && expires.is_none()
            && let Some(amount) = next
        {
            let unit = if option.eq_ignore_ascii_case(b"EX") {
                1000
            } else {
                1
            };
            let Some(amount) = store::integer(amount) else {
                resp::error(out, "ERR value is not an integer or out of range")?;
                return Ok(());
            };
            match deadline(amount, unit, now) {
                Some(deadline) if amount > 0 => expires = Some(deadline),
                _ => {
                    resp::error(out, "ERR invalid expire time in 'set' command")?;
                    return Ok(());
                }
            }
            at += 1;
        } else {
            resp::error(out, "ERR syntax error")?;
            return Ok(());
        }
        at += 1;
    }
    match store.set(args.get(1), args.get(2), expires, condition, now) {
        Ok(true) => resp::simple(out, "OK")?,
        Ok(false) => resp::nil(out)?,
        Err(_) => return Err(Stop::OutOfMemory),
    }
    Ok(())
}

/// `now + amount * unit` milliseconds, or `None` when it does not fit; a deadline in
/// the past comes back as `now` or earlier (clamped at 0).
fn deadline(amount: i64, unit: i64, now: u64) -> Option<u64> {
    let deadline = i128::from(amount) * i128::from(unit) + i128::from(now);
    if deadline > i128::from(i64::MAX) {
        return None;
    }
    Some(deadline.max(0) as u64)
}

/// INCR, DECR, INCRBY, DECRBY: `delta` is `None` when the argument was not an integer.
fn add(
    store: &Store,
    key: &[u8],
    delta: Option<i64>,
    now: u64,
    out: &mut Vec<u8>,
) -> Result<(), Stop> {
    let Some(delta) = delta else {
        resp::error(out, "ERR value is not an integer or out of range")?;
        return Ok(());
    };
    match store.add(key, delta, now) {
        Ok(value) => resp::integer(out, value)?,
        Err(Refused::NotAnInteger) => {
            resp::error(out, "ERR value is not an integer or out of range")?
        }
        Err(Refused::Overflow) => resp::error(out, "ERR increment or decrement would overflow")?,
        Err(Refused::OutOfMemory) => return Err(Stop::OutOfMemory),
    }
    Ok(())
}

/// EXPIRE/PEXPIRE key amount [NX|XX|GT|LT]; `unit` is milliseconds per amount.
fn expire(
    store: &Store,
    args: Args<'_>,
    unit: i64,
    now: u64,
    out: &mut Vec<u8>,
) -> Result<(), Stop> {
    let Some(amount) = store::integer(args.get(2)) else {
        resp::error(out, "ERR value is not an integer or out of range")?;
        return Ok(());
    };
    let condition = match (args.len() == 4).then(|| args.get(3)) {
        None => ExpireCondition::Always,
        Some(option) if option.eq_ignore_ascii_case(b"NX") => ExpireCondition::NoDeadline,
        Some(option) if option.eq_ignore_ascii_case(b"XX") => ExpireCondition::HasDeadline,
        Some(option) if option.eq_ignore_ascii_case(b"GT") => ExpireCondition::Later,
        Some(option) if option.eq_ignore_ascii_case(b"LT") => ExpireCondition::Earlier,
        Some(option) => {
            resp::error_parts(out, &[b"ERR Unsupported option ", shorten(option)])?;
            return Ok(());
        }
    };
    let Some(deadline) = deadline(amount, unit, now) else {
        let command: &[u8] = if unit == 1 { b"pexpire" } else { b"expire" };
        resp::error_parts(
            out,
            &[b"ERR invalid expire time in '", command, b"' command"],
        )?;
        return Ok(());
    };
    let done = store.expire(args.get(1), deadline, condition, now);
    resp::integer(out, i64::from(done))?;
    Ok(())
}

/// CONFIG GET parameter...: the few parameters clients ask about (redis-benchmark reads
/// `save` and `appendonly`), as name/value pairs; `*` matches them all. Nothing can be
/// set.
fn config(store: &Store, args: Args<'_>, out: &mut Vec<u8>) -> Result<(), Stop> {
    if !args.get(1).eq_ignore_ascii_case(b"GET") || args.len() < 3 {
        resp::error_parts(
            out,
            &[
                b"ERR unknown subcommand or wrong number of arguments for '",
                shorten(args.get(1)),
                b"'. Try CONFIG GET.",
            ],
        )?;
        return Ok(());
    }
    let mut limit = Digits::new();
    let limit = limit.format(store.limit() as i64);
    let parameters: [(&[u8], &[u8]); 5] = [
        (b"save", b""),
        (b"appendonly", b"no"),
        (b"maxmemory", limit),
        (b"maxmemory-policy", b"noeviction"),
        (b"databases", b"1"),
    ];
    let wanted = |name: &[u8]| {
        args.from(2)
            .any(|pattern| pattern == b"*" || pattern.eq_ignore_ascii_case(name))
    };
    let matches = parameters.iter().filter(|(name, _)| wanted(name)).count();
    resp::array_header(out, 2 * matches)?;
    for (name, value) in parameters.iter().filter(|(name, _)| wanted(name)) {
        resp::bulk(out, name)?;
        resp::bulk(out, value)?;
    }
    Ok(())
}

/// A `core::fmt::Write` over a `Vec` that grows fallibly.
struct Text(Vec<u8>);

impl core::fmt::Write for Text {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        self.0
            .try_reserve(text.len())
            .map_err(|_| core::fmt::Error)?;
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

/// INFO: what clients and people look for, in Redis's format.
fn info(store: &Store, now: u64, out: &mut Vec<u8>) -> Result<(), Stop> {
    let mut text = Text(Vec::new());
    let stats = store.stats();
    write!(
        text,
        "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\nos:Torito\r\n\
         arch_bits:64\r\ntcp_port:6379\r\nuptime_in_seconds:{}\r\n\r\n\
         # Memory\r\nused_memory:{}\r\nmaxmemory:{}\r\nmaxmemory_policy:noeviction\r\n\r\n\
         # Stats\r\nexpired_keys:{}\r\nrejected_writes_oom:{}\r\n\r\n\
         # Keyspace\r\ndb0:keys={},expires={}\r\n",
        now / 1000,
        store.memory_used(),
        store.limit(),
        stats.expired.load(core::sync::atomic::Ordering::Relaxed),
        stats.refused.load(core::sync::atomic::Ordering::Relaxed),
        store.len(),
        store.with_deadline(),
    )
    .map_err(|_| Stop::OutOfMemory)?;
    resp::bulk(out, &text.0)?;
    Ok(())
}

/// COMMAND: no command table to offer (clients fall back to their own), so an empty
/// array for COMMAND, COMMAND DOCS and COMMAND LIST; COMMAND COUNT counts; COMMAND INFO
/// answers a null per name.
fn command(args: Args<'_>, out: &mut Vec<u8>) -> Result<(), Stop> {
    let sub = (args.len() > 1).then(|| args.get(1));
    match sub {
        Some(sub) if sub.eq_ignore_ascii_case(b"COUNT") => {
            resp::integer(out, COMMANDS.len() as i64)?
        }
        Some(sub) if sub.eq_ignore_ascii_case(b"INFO") => {
            resp::array_header(out, args.len() - 2)?;
            for _ in 2..args.len() {
                resp::append_raw(out, b"*-1\r\n")?;
            }
        }
        _ => resp::array_header(out, 0)?,
    }
    Ok(())
}
