//! The start-up handshake between the boot core and one secondary CPU: who owns the
//! start parameters and stacks when that CPU is late.
//!
//! The boot core starts the other CPUs one at a time, through one parameter block (stack
//! top, core index) and one trampoline. A CPU that starts after the boot core stopped
//! waiting for it must not take the next CPU's parameters and run on its stack, and the
//! boot core must know whether the late CPU may still be using what it was given. One
//! word, changed only by compare-and-swap, settles both: whoever moves it first wins.
//!
//! ```text
//!   boot core: expect(id) ──> Waiting(id) ──CPU: claim(id)──> Claimed(id) ──CPU: arrive(id)──> Arrived(id)
//!                                  │                              │
//!                     boot: give_up(id)                 boot: give_up(id)
//!                                  v                              v
//!                      Abandoned: NeverClaimed        Abandoned: AfterClaim
//! ```
//!
//! * `NeverClaimed`: the CPU never took the parameters and never will (its claim now
//!   fails and it halts before touching memory): the boot core parks it with INIT and
//!   may give the same stacks and core index to the next CPU.
//! * `AfterClaim`: the CPU took them and may still be running on its stack; its arrival
//!   now fails and it halts, but nothing it was given may be reused.
//!
//! The CPU's `claim` is made by the trampoline in assembly (`lock cmpxchg`) with the
//! same values as [`Handshake::claim`]; the rest is here so that it is tested on the
//! host. `id` is the CPU's xAPIC id (8 bits; CPUID leaf 1 gives the CPU its own).

use core::sync::atomic::{AtomicU64, Ordering};

/// The word's value when the boot core has given up on the CPU it expected.
pub const ABANDONED: u64 = u64::MAX;
/// Added to the CPU's id once it has claimed the parameters (the trampoline uses it).
pub const CLAIMED: u64 = 1 << 32;
/// Added to the CPU's id once it has arrived in the kernel.
const ARRIVED: u64 = 2 << 32;

/// Where one CPU's start stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Not started yet (or too slow so far).
    Waiting,
    /// It took the start parameters and runs on its stack, not yet in the kernel.
    Claimed,
    /// It is up.
    Arrived,
    /// The boot core gave up on it, or the word belongs to another CPU.
    Abandoned,
}

/// What [`Handshake::give_up`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// It arrived after all: it is up.
    Arrived,
    /// It never took its parameters and now never will: park it, reuse what it had.
    NeverClaimed,
    /// It took its parameters but did not arrive: it now halts when it gets there, but
    /// its stacks and core index may still be in use.
    AfterClaim,
}

/// The handshake word for the CPU being started.
pub struct Handshake<'a>(&'a AtomicU64);

impl<'a> Handshake<'a> {
    /// The handshake over `word` (in the trampoline's parameter block).
    pub fn new(word: &'a AtomicU64) -> Self {
        Self(word)
    }

    /// Boot core, before the first start: no CPU may claim anything (the word starts as
    /// whatever the memory held).
    pub fn close(&self) {
        self.0.store(ABANDONED, Ordering::Release);
    }

    /// Boot core: the CPU `id` may now claim the parameters, which must be written
    /// before this call (the store releases them).
    pub fn expect(&self, id: u32) {
        self.0.store(u64::from(id), Ordering::Release);
    }

    /// CPU `id`: takes the parameters; `false` when they are not (or no longer) meant
    /// for it, and it must halt without touching memory. (The trampoline's assembly
    /// does this; here for the tests and as its specification.)
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn claim(&self, id: u32) -> bool {
        let id = u64::from(id);
        self.0
            .compare_exchange(id, CLAIMED | id, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// CPU `id`, once set up and done with the parameters: `true` if it may go on and
    /// run tasks, `false` if the boot core gave up on it meanwhile (it must halt).
    pub fn arrive(&self, id: u32) -> bool {
        let id = u64::from(id);
        self.0
            .compare_exchange(
                CLAIMED | id,
                ARRIVED | id,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Where CPU `id` stands.
    pub fn progress(&self, id: u32) -> Progress {
        let id = u64::from(id);
        match self.0.load(Ordering::Acquire) {
            value if value == id => Progress::Waiting,
            value if value == CLAIMED | id => Progress::Claimed,
            value if value == ARRIVED | id => Progress::Arrived,
            _ => Progress::Abandoned,
        }
    }

    /// Boot core: gives up on CPU `id`, unless it arrived meanwhile; says what it may
    /// still be using.
    pub fn give_up(&self, id: u32) -> GiveUp {
        let id = u64::from(id);
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            let outcome = match current {
                value if value == id => GiveUp::NeverClaimed,
                value if value == CLAIMED | id => GiveUp::AfterClaim,
                value if value == ARRIVED | id => return GiveUp::Arrived,
                // Not this CPU's word (never expected, or given up already): nothing
                // of the current parameters can be in its hands.
                _ => return GiveUp::NeverClaimed,
            };
            match self
                .0
                .compare_exchange(current, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return outcome,
                Err(now) => current = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_prompt_cpu_claims_then_arrives() {
        let word = AtomicU64::new(3);
        let handshake = Handshake::new(&word);
        handshake.close();
        assert_eq!(handshake.progress(3), Progress::Abandoned);
        assert!(!handshake.claim(3));
        handshake.expect(3);
        assert_eq!(handshake.progress(3), Progress::Waiting);
        assert!(handshake.claim(3));
        assert_eq!(handshake.progress(3), Progress::Claimed);
        assert!(handshake.arrive(3));
        assert_eq!(handshake.progress(3), Progress::Arrived);
        assert_eq!(handshake.give_up(3), GiveUp::Arrived);
        assert_eq!(handshake.progress(3), Progress::Arrived);
    }

    #[test]
    fn a_cpu_given_up_before_its_claim_can_never_claim() {
        let word = AtomicU64::new(0);
        let handshake = Handshake::new(&word);
        handshake.expect(1);
        assert_eq!(handshake.give_up(1), GiveUp::NeverClaimed);
        assert!(!handshake.claim(1));
        assert!(!handshake.arrive(1));
        assert_eq!(handshake.progress(1), Progress::Abandoned);
    }

    #[test]
    fn a_late_cpu_cannot_take_the_next_cpus_parameters() {
        let word = AtomicU64::new(0);
        let handshake = Handshake::new(&word);
        handshake.expect(1);
        assert_eq!(handshake.give_up(1), GiveUp::NeverClaimed);
        // The same parameters (stack, core index) now go to CPU 2; CPU 1 wakes up late.
        handshake.expect(2);
        assert!(!handshake.claim(1));
        assert_eq!(handshake.progress(2), Progress::Waiting);
        assert!(handshake.claim(2));
        assert!(!handshake.arrive(1));
        assert!(handshake.arrive(2));
        assert_eq!(handshake.progress(2), Progress::Arrived);
    }

    #[test]
    fn a_cpu_given_up_after_its_claim_is_not_reused_and_cannot_arrive() {
        let word = AtomicU64::new(0);
        let handshake = Handshake::new(&word);
        handshake.expect(5);
        assert!(handshake.claim(5));
        assert_eq!(handshake.give_up(5), GiveUp::AfterClaim);
        assert!(!handshake.arrive(5));
        assert_eq!(handshake.progress(5), Progress::Abandoned);
    }

    /// The race itself: a CPU claiming and arriving on one thread while the boot core
    /// gives up on another. Whatever the interleaving, the two sides agree: the CPU
    /// runs tasks exactly when the boot core counts it as up, and it uses its
    /// parameters exactly when the boot core does not reuse them.
    #[test]
    fn the_cpu_and_the_boot_core_always_agree() {
        for round in 0..20_000u32 {
            let word = Arc::new(AtomicU64::new(0));
            let id = round % 200;
            Handshake::new(&word).expect(id);
            let cpu_word = Arc::clone(&word);
            let cpu = std::thread::spawn(move || {
                let handshake = Handshake::new(&cpu_word);
                let claimed = handshake.claim(id);
                let arrived = claimed && handshake.arrive(id);
                (claimed, arrived)
            });
            if round % 3 == 0 {
                std::thread::yield_now();
            }
            let verdict = Handshake::new(&word).give_up(id);
            let (claimed, arrived) = cpu.join().expect("the CPU thread ran");
            match verdict {
                GiveUp::Arrived => assert!(claimed && arrived),
                GiveUp::AfterClaim => assert!(claimed && !arrived),
                GiveUp::NeverClaimed => assert!(!claimed && !arrived),
            }
        }
    }
}
