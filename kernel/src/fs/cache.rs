//! A disk's chunk cache: bounded, CLOCK eviction, counted, shared by every reader.
//!
//! The disk is cut into aligned chunks ([`super::disk`] uses 64 KiB: one virtio-blk
//! request each, large enough that a file read is a few requests, small enough that a
//! 4 KiB file does not crowd out much). A chunk is either *loading* (one reader, or a
//! read-ahead, has a request in flight for it; every other reader of it waits, so two
//! readers of one chunk make one request) or *ready* (its bytes, and a `referenced`
//! bit). When the cache is full a new chunk takes the place of the first ready chunk
//! the clock hand finds unreferenced, clearing the bits it passes (CLOCK: LRU's
//! behaviour without moving entries on every hit). Loading chunks are never evicted: the
//! device owns their buffers. When every slot is loading, or the cache holds none
//! (`fs.cache=0`), a read goes to the disk uncached instead of waiting for room.
//!
//! The cache is plain data: no lock, no allocation of chunk memory, no device. The disk
//! code allocates a chunk's buffer (and, when the heap has no room, calls
//! [`ChunkCache::shrink`] and tries again, or reads uncached) and wakes the wakers
//! [`ChunkCache::fill`] hands back after dropping its lock. So it is tested on the host.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::ops::Bound;
use core::task::Waker;

/// What a cache counted since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads served from a ready chunk.
    pub hits: u64,
    /// Reads that found no chunk and went to the disk (cached or not).
    pub misses: u64,
    /// Ready chunks dropped to make room (or to give memory back).
    pub evictions: u64,
    /// Reads that found their chunk loading and waited for it instead of asking the disk.
    pub joined: u64,
    /// Misses served uncached: every slot was loading, or the cache holds no chunk.
    pub uncached: u64,
    /// Chunks loaded ahead of a sequential reader.
    pub read_ahead: u64,
    /// Chunks held now (ready or loading).
    pub chunks: usize,
    /// The most chunks it holds.
    pub capacity: usize,
}

enum Slot<B> {
    /// A request for it is in flight (a read-ahead's, or a reader's); these wait for it.
    Loading {
        waiters: Vec<Waker>,
        ahead: bool,
    },
    Ready {
        data: B,
        referenced: bool,
    },
}

/// What [`ChunkCache::lookup`] found.
pub enum Lookup<'a, B> {
    /// The chunk's bytes.
    Hit(&'a B),
    /// Another reader is loading it: the waker given is woken when it is ready (or
    /// given up); look again then.
    Wait,
    /// The caller loads it: read it, then [`ChunkCache::fill`] it (with `None` if the
    /// read failed), whatever happens.
    Load,
    /// No room: read it without the cache.
    Uncached,
}

/// The cache of one disk's chunks; `B` is a chunk's buffer.
pub struct ChunkCache<B> {
    capacity: usize,
    slots: BTreeMap<u64, Slot<B>>,
    /// The last chunk the clock hand looked at.
    hand: Option<u64>,
    /// Read-aheads in flight.
    ahead: usize,
    stats: CacheStats,
}

impl<B> ChunkCache<B> {
    /// An empty cache of at most `capacity` chunks (0: every read uncached).
    pub fn new(capacity: usize) -> Self {
        ChunkCache {
            capacity,
            slots: BTreeMap::new(),
            hand: None,
            ahead: 0,
            stats: CacheStats {
                capacity,
                ..CacheStats::default()
            },
        }
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            chunks: self.slots.len(),
            ..self.stats
        }
    }

    /// Looks `chunk` up for a read; on [`Lookup::Wait`], `waker` is woken when the
    /// chunk's load ends. On [`Lookup::Load`] the chunk is now loading and the caller
    /// owes a [`fill`](Self::fill).
    pub fn lookup(&mut self, chunk: u64, waker: &Waker) -> Lookup<'_, B> {
        match self.slots.get_mut(&chunk) {
            Some(Slot::Ready { referenced, .. }) => {
                *referenced = true;
                self.stats.hits += 1;
            }
            Some(Slot::Loading { waiters, .. }) => {
                if !waiters.iter().any(|waiting| waiting.will_wake(waker)) {
                    waiters.push(waker.clone());
                    self.stats.joined += 1;
                }
                return Lookup::Wait;
            }
            None => {
                self.stats.misses += 1;
                if !self.make_room() {
                    self.stats.uncached += 1;
                    return Lookup::Uncached;
                }
                self.slots.insert(
                    chunk,
                    Slot::Loading {
                        waiters: Vec::new(),
                        ahead: false,
                    },
                );
                return Lookup::Load;
            }
        }
        match self.slots.get(&chunk) {
            Some(Slot::Ready { data, .. }) => Lookup::Hit(data),
            // Found ready just above, under the same `&mut self`.
            _ => Lookup::Uncached,
        }
    }

    /// Reserves `chunk` for a read-ahead: true when the caller should load it (and then
    /// [`fill`](Self::fill) it); false when it is cached or loading already, or there is
    /// no room.
    /// Read-aheads take at most half the slots, so that a reader's own miss finds room.
    pub fn prefetch(&mut self, chunk: u64) -> bool {
        if self.slots.contains_key(&chunk) || self.ahead >= self.capacity / 2 || !self.make_room() {
            return false;
        }
        self.ahead += 1;
        self.slots.insert(
            chunk,
            Slot::Loading {
                waiters: Vec::new(),
                ahead: true,
            },
        );
        self.stats.read_ahead += 1;
        true
    }

    /// Ends `chunk`'s load: `Some` makes it ready, `None` (the read failed, or no buffer)
    /// drops it, so the next reader loads it again. Returns the readers to wake (wake
    /// them after releasing whatever lock guards the cache).
    pub fn fill(&mut self, chunk: u64, data: Option<B>) -> Vec<Waker> {
        let waiters = match self.slots.remove(&chunk) {
            Some(Slot::Loading { waiters, ahead }) => {
                if ahead {
                    self.ahead -= 1;
                }
                waiters
            }
            Some(ready) => {
                // Not loading: a fill nobody owed. Keep what was there.
                self.slots.insert(chunk, ready);
                return Vec::new();
            }
            None => return Vec::new(),
        };
        if let Some(data) = data {
            self.slots.insert(
                chunk,
                Slot::Ready {
                    data,
                    referenced: false,
                },
            );
        }
        waiters
    }

    /// Drops one ready chunk (the heap is short of memory); false when none is ready.
    pub fn shrink(&mut self) -> bool {
        self.evict()
    }

    /// Whether `chunk` is ready (for tests: a lookup would change the state).
    #[cfg(test)]
    fn ready(&self, chunk: u64) -> bool {
        matches!(self.slots.get(&chunk), Some(Slot::Ready { .. }))
    }

    /// True when a new chunk fits: below capacity, or after evicting one.
    fn make_room(&mut self) -> bool {
        self.slots.len() < self.capacity || self.evict()
    }

    /// The clock: from the chunk after the hand, round the map (twice at most, since
    /// the first round may only clear bits), evicts the first unreferenced ready chunk,
    /// clearing the bits of the referenced ones it passes.
    fn evict(&mut self) -> bool {
        for _ in 0..2 * self.slots.len() {
            let after = self.hand.and_then(|hand| {
                self.slots
                    .range((Bound::Excluded(hand), Bound::Unbounded))
                    .next()
                    .map(|(chunk, _)| *chunk)
            });
            let Some(chunk) = after.or_else(|| self.slots.keys().next().copied()) else {
                return false;
            };
            self.hand = Some(chunk);
            match self.slots.get_mut(&chunk) {
                Some(Slot::Ready { referenced, .. }) if *referenced => *referenced = false,
                Some(Slot::Ready { .. }) => {
                    self.slots.remove(&chunk);
                    self.stats.evictions += 1;
                    return true;
                }
                _ => {}
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// A waker that counts its wakes.
    struct Counter(AtomicUsize);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn counter() -> (Arc<Counter>, Waker) {
        let count = Arc::new(Counter(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    fn load(cache: &mut ChunkCache<Vec<u8>>, chunk: u64) {
        assert!(matches!(cache.lookup(chunk, Waker::noop()), Lookup::Load));
        assert!(cache.fill(chunk, Some(vec![chunk as u8; 4])).is_empty());
    }

    fn hit(cache: &mut ChunkCache<Vec<u8>>, chunk: u64) -> bool {
        match cache.lookup(chunk, Waker::noop()) {
            Lookup::Hit(data) => {
                assert_eq!(
                    data,
                    &vec![chunk as u8; 4],
                    "chunk {chunk} holds its own bytes"
                );
                true
            }
            _ => false,
        }
    }

    #[test]
    fn a_loaded_chunk_is_a_hit_and_counted() {
        let mut cache = ChunkCache::new(4);
        load(&mut cache, 7);
        assert!(hit(&mut cache, 7));
        assert!(hit(&mut cache, 7));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.evictions), (2, 1, 0));
        assert_eq!((stats.chunks, stats.capacity), (1, 4));
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity_and_evicts_unreferenced_first() {
        let mut cache = ChunkCache::new(3);
        for chunk in 0..3 {
            load(&mut cache, chunk);
        }
        // 0 and 2 are used again; 1 is not: it goes first.
        assert!(hit(&mut cache, 0));
        assert!(hit(&mut cache, 2));
        load(&mut cache, 10);
        assert_eq!(cache.stats().chunks, 3);
        assert_eq!(cache.stats().evictions, 1);
        assert!(!cache.ready(1), "the unreferenced chunk was evicted");
        assert!(cache.ready(0) && cache.ready(2) && cache.ready(10));
        // A long scan of new chunks: the size stays bounded all along.
        for chunk in 100..1000 {
            load(&mut cache, chunk);
            assert!(cache.stats().chunks <= 3);
        }
        assert_eq!(cache.stats().evictions, 1 + 900);
    }

    #[test]
    fn concurrent_readers_of_one_chunk_make_one_load_and_all_wake() {
        let mut cache = ChunkCache::new(2);
        let (first, first_waker) = counter();
        let (second, second_waker) = counter();
        assert!(matches!(cache.lookup(5, &first_waker), Lookup::Load));
        assert!(matches!(cache.lookup(5, &second_waker), Lookup::Wait));
        // Polled again before the load ends: registered once, counted once.
        assert!(matches!(cache.lookup(5, &second_waker), Lookup::Wait));
        let (third, third_waker) = counter();
        assert!(matches!(cache.lookup(5, &third_waker), Lookup::Wait));
        let woken = cache.fill(5, Some(vec![5; 4]));
        assert_eq!(woken.len(), 2);
        woken.into_iter().for_each(Waker::wake);
        assert_eq!(first.0.load(Ordering::SeqCst), 0, "the loader is not woken");
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        assert_eq!(third.0.load(Ordering::SeqCst), 1);
        assert!(hit(&mut cache, 5) && hit(&mut cache, 5));
        let stats = cache.stats();
        assert_eq!((stats.misses, stats.joined, stats.hits), (1, 2, 2));
    }

    #[test]
    fn a_failed_load_wakes_the_waiters_and_the_next_reader_loads_again() {
        let mut cache: ChunkCache<Vec<u8>> = ChunkCache::new(2);
        let (waiting, waker) = counter();
        assert!(matches!(cache.lookup(3, Waker::noop()), Lookup::Load));
        assert!(matches!(cache.lookup(3, &waker), Lookup::Wait));
        cache.fill(3, None).into_iter().for_each(Waker::wake);
        assert_eq!(waiting.0.load(Ordering::SeqCst), 1);
        assert_eq!(cache.stats().chunks, 0, "nothing cached from a failed read");
        assert!(matches!(cache.lookup(3, &waker), Lookup::Load));
    }

    #[test]
    fn loading_chunks_are_never_evicted_and_a_full_cache_of_them_serves_uncached() {
        let mut cache: ChunkCache<Vec<u8>> = ChunkCache::new(2);
        assert!(matches!(cache.lookup(0, Waker::noop()), Lookup::Load));
        assert!(cache.prefetch(1));
        assert!(matches!(cache.lookup(2, Waker::noop()), Lookup::Uncached));
        assert!(!cache.prefetch(3), "no room for a read-ahead either");
        let stats = cache.stats();
        assert_eq!(
            (stats.misses, stats.uncached, stats.evictions),
            (1 + 1, 1, 0)
        );
        assert_eq!(stats.read_ahead, 1);
        // Once one is ready, it can make room again.
        cache.fill(0, Some(vec![0; 4]));
        assert!(matches!(cache.lookup(2, Waker::noop()), Lookup::Load));
        assert_eq!(cache.stats().evictions, 1);
    }

    #[test]
    fn hostile_sizes_a_cache_of_nothing_and_of_everything() {
        // fs.cache=0: every read uncached, nothing stored, nothing to shrink.
        let mut none: ChunkCache<Vec<u8>> = ChunkCache::new(0);
        for chunk in [0, 1, u64::MAX] {
            assert!(matches!(
                none.lookup(chunk, Waker::noop()),
                Lookup::Uncached
            ));
            assert!(!none.prefetch(chunk));
        }
        assert!(!none.shrink());
        assert_eq!(none.stats().chunks, 0);
        // A capacity beyond any memory: slots are taken only as chunks arrive, and the
        // disk code gives memory back with shrink when an allocation fails.
        let mut huge = ChunkCache::new(usize::MAX);
        for chunk in [0, u64::MAX, u64::MAX - 1] {
            load(&mut huge, chunk);
        }
        assert_eq!(huge.stats().chunks, 3);
        assert!(huge.shrink() && huge.shrink() && huge.shrink());
        assert!(!huge.shrink(), "nothing left to give back");
        assert_eq!(huge.stats().evictions, 3);
    }

    #[test]
    fn a_fill_nobody_owed_changes_nothing() {
        let mut cache = ChunkCache::new(2);
        load(&mut cache, 1);
        assert!(cache.fill(1, Some(vec![9; 4])).is_empty());
        assert!(cache.fill(2, Some(vec![9; 4])).is_empty());
        assert!(hit(&mut cache, 1), "the ready chunk kept its bytes");
        assert_eq!(cache.stats().chunks, 1);
    }

    #[test]
    fn read_ahead_takes_at_most_half_the_slots_so_a_reader_finds_room() {
        let mut cache: ChunkCache<Vec<u8>> = ChunkCache::new(4);
        assert!(cache.prefetch(1) && cache.prefetch(2));
        assert!(
            !cache.prefetch(3),
            "a third read-ahead of four slots is refused"
        );
        assert!(matches!(cache.lookup(0, Waker::noop()), Lookup::Load));
        assert!(matches!(cache.lookup(9, Waker::noop()), Lookup::Load));
        // Once one read-ahead ends, another may start (when a slot can be freed).
        cache.fill(1, Some(vec![1; 4]));
        cache.fill(0, Some(vec![0; 4]));
        assert!(cache.prefetch(3));
        assert_eq!(cache.stats().read_ahead, 3);
        // A failed read-ahead gives its share back too.
        cache.fill(3, None);
        cache.fill(2, None);
        assert!(cache.prefetch(5) && cache.prefetch(6));
    }

    #[test]
    fn read_ahead_skips_what_is_cached_or_loading() {
        let mut cache = ChunkCache::new(4);
        load(&mut cache, 0);
        assert!(!cache.prefetch(0));
        assert!(cache.prefetch(1));
        assert!(!cache.prefetch(1));
        // A reader of a chunk being read ahead waits for it.
        assert!(matches!(cache.lookup(1, Waker::noop()), Lookup::Wait));
        cache.fill(1, Some(vec![1; 4]));
        assert!(hit(&mut cache, 1));
        assert_eq!(cache.stats().read_ahead, 1);
    }
}
