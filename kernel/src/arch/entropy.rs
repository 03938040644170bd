//! The CPU's own entropy: RDSEED (a conditioned seed straight from the hardware source)
//! and RDRAND (a DRBG the hardware reseeds), when CPUID offers them.
//!
//! Both can fail transiently (the carry flag is clear when no value was ready): Intel
//! advises retrying RDRAND up to 10 times and treating more failures as a broken unit
//! (Intel DRNG Software Implementation Guide, 5.2.1); RDSEED fails more often under load
//! and is retried a little longer before the caller falls back to RDRAND.

use core::arch::x86_64::{__cpuid, __cpuid_count, _rdrand64_step, _rdseed64_step};

/// Which instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instruction {
    /// RDSEED.
    Rdseed,
    /// RDRAND.
    Rdrand,
}

/// Whether the CPU has `instruction` (CPUID.07H:EBX[18], CPUID.01H:ECX[30]).
pub fn available(instruction: Instruction) -> bool {
    match instruction {
        Instruction::Rdseed => __cpuid(0).eax >= 7 && __cpuid_count(7, 0).ebx & (1 << 18) != 0,
        Instruction::Rdrand => __cpuid(1).ecx & (1 << 30) != 0,
    }
}

/// One 64-bit value, or `None` after the retries failed.
fn step(instruction: Instruction) -> Option<u64> {
    let tries = match instruction {
        Instruction::Rdseed => 100,
        Instruction::Rdrand => 10,
    };
    let mut value = 0;
    for _ in 0..tries {
        // SAFETY: the instruction exists (callers check `available` first), and it only
        // writes `value`.
        let ok = unsafe {
            match instruction {
                Instruction::Rdseed => rdseed(&mut value),
                Instruction::Rdrand => rdrand(&mut value),
            }
        };
        if ok {
            return Some(value);
        }
        core::hint::spin_loop();
    }
    None
}

/// # Safety
/// The CPU must have RDSEED.
#[target_feature(enable = "rdseed")]
unsafe fn rdseed(value: &mut u64) -> bool {
    _rdseed64_step(value) == 1
}

/// # Safety
/// The CPU must have RDRAND.
#[target_feature(enable = "rdrand")]
unsafe fn rdrand(value: &mut u64) -> bool {
    _rdrand64_step(value) == 1
}

/// Fills `buffer` with `instruction` (which the caller checked is `available`); `false`
/// when the instruction kept failing.
pub fn fill(instruction: Instruction, buffer: &mut [u8]) -> bool {
    for chunk in buffer.chunks_mut(8) {
        let Some(value) = step(instruction) else {
            return false;
        };
        chunk.copy_from_slice(&value.to_le_bytes()[..chunk.len()]);
    }
    true
}
