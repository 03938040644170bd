//! The store: one map from keys to values, shared by every core, in [`SHARDS`] shards
//! each under its own spin lock.
//!
//! Why spin locks, and why shards: a lock is held for one hash-table operation and at
//! most one copy of a value (1 MiB at most), never across an `await`, and no interrupt
//! handler touches the store; so a core that finds a shard taken waits at most for one
//! such operation, and a sleeping lock (parking the task, waking it later) would cost
//! more than the wait. Torito's tasks are never preempted on their core, so a task
//! holding a shard cannot be interrupted by another task that wants it. The key's hash,
//! computed once per command, picks the shard, so cores working on different keys take
//! different locks instead of queueing on one. The lock is `spin`'s test-and-set mutex
//! (the crate the kernel's heap uses), not a ticket lock: under a hypervisor a ticket
//! lock hands the lock to the next vCPU in line even when that vCPU is descheduled, and
//! every other waiter then waits for it too.
//!
//! Lock order: a shard's lock, then (when allocating) the heap's; nothing holds the
//! heap's lock while taking a shard's, so the two cannot deadlock.
//!
//! Memory: every allocation whose size a client picks (keys, values, the tables'
//! growth) is fallible and answered with [`Refused::OutOfMemory`]; before a write, the
//! heap's real use (what the `memory` function given to [`Store::new`] reports: the
//! kernel heap's bytes in use, connection buffers included, as Redis counts its
//! allocator's `used_memory`) plus what the write adds must stay within the limit.
//!
//! Expiry: each entry may carry a deadline in milliseconds on the caller's clock
//! (`now`, passed to every call). An expired entry is removed when a command finds it,
//! and [`Store::sweep`] removes the rest, one shard per call.

use alloc::vec::Vec;
use core::hash::BuildHasher;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use foldhash::fast::FixedState;
use hashbrown::HashTable;
use spin::Mutex;

/// How many shards (locks) the store has.
pub const SHARDS: usize = 16;

/// Bytes an entry costs beyond its key and value: the entry itself, the two allocations'
/// headers and the table's slot, roughly. Counted against the limit before a write.
pub const ENTRY_OVERHEAD: usize = core::mem::size_of::<Entry>() + 32;

/// One key's value and deadline.
struct Entry {
    hash: u64,
    key: Vec<u8>,
    value: Vec<u8>,
    /// Milliseconds on the store's clock after which the key is gone.
    expires: Option<u64>,
}

impl Entry {
    fn expired(&self, now: u64) -> bool {
        self.expires.is_some_and(|deadline| deadline <= now)
    }
}

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The heap's use plus the write would pass the limit, or the heap had no room.
    OutOfMemory,
    /// INCR and friends: the value is not a decimal 64-bit integer.
    NotAnInteger,
    /// INCR and friends: the result would not fit in 64 bits.
    Overflow,
}

/// A SET's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Always (plain SET).
    Always,
    /// NX: only when the key does not exist.
    IfAbsent,
    /// XX: only when the key exists.
    IfPresent,
}

/// An EXPIRE's condition (Redis 7: NX, XX, GT, LT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireCondition {
    /// Always.
    Always,
    /// NX: only when the key has no deadline.
    NoDeadline,
    /// XX: only when the key has a deadline.
    HasDeadline,
    /// GT: only when the new deadline is later (no deadline counts as never).
    Later,
    /// LT: only when the new deadline is earlier (no deadline counts as never).
    Earlier,
}

/// What TTL finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// No such key.
    Missing,
    /// The key has no deadline.
    Forever,
    /// Milliseconds left.
    Left(u64),
}

/// Counters, read by INFO.
#[derive(Debug, Default)]
pub struct Stats {
    /// Keys removed because their deadline passed.
    pub expired: AtomicU64,
    /// Writes refused for memory.
    pub refused: AtomicU64,
}

/// The store. See the module documentation.
pub struct Store {
    shards: [Mutex<HashTable<Entry>>; SHARDS],
    hasher: FixedState,
    limit: usize,
    memory: fn() -> usize,
    next_sweep: AtomicUsize,
    stats: Stats,
}

fn hash_of(entry: &Entry) -> u64 {
    entry.hash
}

/// A fresh copy of `bytes`, or `None` when the heap has no room.
fn copy(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut copy = Vec::new();
    copy.try_reserve_exact(bytes.len()).ok()?;
    copy.extend_from_slice(bytes);
    Some(copy)
}

impl Store {
    /// An empty store whose hash is seeded with `seed` (pick it at random, so that
    /// clients cannot choose keys that collide), refusing writes once `memory()` (the
    /// heap's bytes in use) plus the write would pass `limit` bytes.
    pub fn new(seed: u64, limit: usize, memory: fn() -> usize) -> Self {
        Self {
            shards: [const { Mutex::new(HashTable::new()) }; SHARDS],
            hasher: FixedState::with_seed(seed),
            limit,
            memory,
            next_sweep: AtomicUsize::new(0),
            stats: Stats::default(),
        }
    }

    /// The memory limit, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The heap's bytes in use, as the store counts them against the limit.
    pub fn memory_used(&self) -> usize {
        (self.memory)()
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Refuses a write of `bytes` more when it would pass the limit.
    ///
    /// # Errors
    /// `Refused::OutOfMemory` (counted).
    pub fn admit(&self, bytes: usize) -> Result<(), Refused> {
        if (self.memory)().saturating_add(bytes) > self.limit {
            return Err(self.refuse());
        }
        Ok(())
    }

    fn refuse(&self) -> Refused {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        Refused::OutOfMemory
    }

    fn shard(&self, key: &[u8]) -> (u64, &Mutex<HashTable<Entry>>) {
        let hash = self.hasher.hash_one(key);
        // The table uses the hash's low bits for the bucket and its top seven for the
        // control byte; the shard takes bits in between.
        (hash, &self.shards[(hash >> 32) as usize % SHARDS])
    }

    /// The live entry for `key`, removing it first if its deadline has passed.
    fn live<'a>(
        &self,
        table: &'a mut HashTable<Entry>,
        hash: u64,
        key: &[u8],
        now: u64,
    ) -> Option<&'a mut Entry> {
        match table.find_entry(hash, |entry| entry.key == key) {
            Ok(entry) if entry.get().expired(now) => {
                entry.remove();
                self.stats.expired.fetch_add(1, Ordering::Relaxed);
                None
            }
            Ok(entry) => Some(entry.into_mut()),
            Err(_) => None,
        }
    }

    /// Calls `read` with `key`'s value (`None` when there is none), under the shard's
    /// lock: copy what you need and return.
    pub fn get<R>(&self, key: &[u8], now: u64, read: impl FnOnce(Option<&[u8]>) -> R) -> R {
        let (hash, shard) = self.shard(key);
        let mut table = shard.lock();
        read(
            self.live(&mut table, hash, key, now)
                .map(|entry| &entry.value[..]),
        )
    }

    /// Whether `key` exists.
    pub fn exists(&self, key: &[u8], now: u64) -> bool {
        self.get(key, now, |value| value.is_some())
    }

    /// Sets `key` to `value` with deadline `expires` (`None`: none; SET clears an old
    /// one) when `condition` holds; whether it did.
    ///
    /// # Errors
    /// `Refused::OutOfMemory` when the write would pass the limit or the heap is full;
    /// nothing changes then.
    pub fn set(
        &self,
        key: &[u8],
        value: &[u8],
        expires: Option<u64>,
        condition: Condition,
        now: u64,
    ) -> Result<bool, Refused> {
        self.admit(key.len() + value.len() + ENTRY_OVERHEAD)?;
        // The copy is made before taking the lock, so the lock is held for the table
        // operation only.
        let value = copy(value).ok_or_else(|| self.refuse())?;
        let (hash, shard) = self.shard(key);
        let mut table = shard.lock();
        match self.live(&mut table, hash, key, now) {
            Some(_) if condition == Condition::IfAbsent => Ok(false),
            Some(entry) => {
                entry.value = value;
                entry.expires = expires;
                Ok(true)
            }
            None if condition == Condition::IfPresent => Ok(false),
            None => {
                let key = copy(key).ok_or_else(|| self.refuse())?;
                table.try_reserve(1, hash_of).map_err(|_| self.refuse())?;
                table.insert_unique(
                    hash,
                    Entry {
                        hash,
                        key,
                        value,
                        expires,
                    },
                    hash_of,
                );
                Ok(true)
            }
        }
    }

    /// Removes `key`; whether it existed.
    pub fn delete(&self, key: &[u8], now: u64) -> bool {
        let (hash, shard) = self.shard(key);
        let mut table = shard.lock();
        match table.find_entry(hash, |entry| entry.key == key) {
            Ok(entry) => {
                let live = !entry.get().expired(now);
                entry.remove();
                live
            }
            Err(_) => false,
        }
    }

    /// Adds `delta` to the integer in `key` (0 when missing); the new value. The
    /// deadline stays.
    ///
    /// # Errors
    /// `NotAnInteger`, `Overflow`, or `OutOfMemory` (nothing changes then).
    pub fn add(&self, key: &[u8], delta: i64, now: u64) -> Result<i64, Refused> {
        self.admit(key.len() + 20 + ENTRY_OVERHEAD)?;
        let (hash, shard) = self.shard(key);
        let mut table = shard.lock();
        let mut digits = crate::resp::Digits::new();
        match self.live(&mut table, hash, key, now) {
            Some(entry) => {
                let old = integer(&entry.value).ok_or(Refused::NotAnInteger)?;
                let new = old.checked_add(delta).ok_or(Refused::Overflow)?;
                let text = digits.format(new);
                if entry.value.capacity() < text.len() {
                    let more = text.len() - entry.value.len();
                    entry.value.try_reserve(more).map_err(|_| self.refuse())?;
                }
                entry.value.clear();
                entry.value.extend_from_slice(text);
                Ok(new)
            }
            None => {
                let value = copy(digits.format(delta)).ok_or_else(|| self.refuse())?;
                let key = copy(key).ok_or_else(|| self.refuse())?;
                table.try_reserve(1, hash_of).map_err(|_| self.refuse())?;
                table.insert_unique(
                    hash,
                    Entry {
                        hash,
                        key,
                        value,
                        expires: None,
                    },
                    hash_of,
                );
                Ok(delta)
            }
        }
    }

    /// Gives `key` the deadline `deadline` when `condition` holds; whether it did (false
    /// for a missing key). A deadline not after `now` removes the key.
    pub fn expire(&self, key: &[u8], deadline: u64, condition: ExpireCondition, now: u64) -> bool {
        let (hash, shard) = self.shard(key);
        let mut table = shard.lock();
        let Some(entry) = self.live(&mut table, hash, key, now) else {
            return false;
        };
        let allowed = match (condition, entry.expires) {
            (ExpireCondition::Always, _) => true,
            (ExpireCondition::NoDeadline, old) => old.is_none(),
            (ExpireCondition::HasDeadline, old) => old.is_some(),
            (ExpireCondition::Later, old) => old.is_some_and(|old| deadline > old),
            (ExpireCondition::Earlier, old) => old.is_none_or(|old| deadline < old),
        };
        if !allowed {
            return false;
        }
        if deadline <= now {
            if let Ok(entry) = table.find_entry(hash, |entry| entry.key == key) {
                entry.remove();
            }
        } else {
            entry.expires = Some(deadline);
        }
        true
    }

    /// What is left of `key`'s life.
    pub fn ttl(&self, key: &[u8], now: u64) -> Ttl {
        let (hash, shard) = self.shard(key);
        let mut table = shard.lock();
        match self.live(&mut table, hash, key, now) {
            None => Ttl::Missing,
            Some(Entry { expires: None, .. }) => Ttl::Forever,
            Some(Entry {
                expires: Some(deadline),
                ..
            }) => Ttl::Left(*deadline - now),
        }
    }

    /// How many keys there are (keys past their deadline count until a command or a
    /// sweep finds them, as in Redis).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().len()).sum()
    }

    /// How many keys have a deadline (a walk over every shard: for INFO, not a hot path).
    pub fn with_deadline(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let table = shard.lock();
                table.iter().filter(|entry| entry.expires.is_some()).count()
            })
            .sum()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every key, and gives the tables' memory back.
    pub fn clear(&self) {
        for shard in &self.shards {
            // Dropped after the lock is released: freeing many entries takes a while.
            let old = core::mem::take(&mut *shard.lock());
            drop(old);
        }
    }

    /// Removes the expired keys of the next shard in turn; how many. Call it
    /// periodically: [`SHARDS`] calls sweep the whole store.
    pub fn sweep(&self, now: u64) -> usize {
        let index = self.next_sweep.fetch_add(1, Ordering::Relaxed) % SHARDS;
        let mut table = self.shards[index].lock();
        let before = table.len();
        table.retain(|entry| !entry.expired(now));
        let removed = before - table.len();
        // A table that emptied a lot (under a quarter of its slots used) gives memory back.
        if removed > 0 && table.len() < table.capacity() / 4 {
            table.shrink_to_fit(hash_of);
        }
        drop(table);
        self.stats
            .expired
            .fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }
}

/// `bytes` as Redis reads an integer value: an optional `-`, digits without leading
/// zeros (but "0"), within i64.
pub fn integer(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, bytes),
    };
    if digits.is_empty()
        || digits.len() > 19
        || (digits[0] == b'0' && (digits.len() > 1 || negative))
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let mut value: i64 = 0;
    for digit in digits {
        let digit = i64::from(digit - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(digit)?
        } else {
            value.checked_add(digit)?
        };
    }
    Some(value)
}
