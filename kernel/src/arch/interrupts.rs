//! The IDT, its 256 entry stubs and the dispatcher they call.
//!
//! Stable Rust has no `x86-interrupt` ABI, so every vector gets a 16-byte assembly stub
//! that pushes a uniform frame (a zero where the CPU pushes no error code, then the
//! vector number) and jumps to the common entry, which saves the general registers and
//! calls `torito_interrupt_dispatch`.
//!
//! * Vectors 0-31 are CPU exceptions: handed to the reporter given to `init`
//!   (`exceptions::report`, which sits above this module and uses its frame type), fatal.
//! * `TIMER_VECTOR` is the local APIC timer: acknowledged, nothing more. Its only job is
//!   to end the `hlt` of an idle executor, which then fires expired timers itself.
//! * Vectors registered with `register` run their handler, which must only acknowledge
//!   its device and wake (no allocation, no lock a task may hold), then get an EOI.
//! * Anything else is acknowledged and otherwise ignored.
//!
//! `enable_and_halt` is the idle core's `sti; hlt`, here because the dispatcher guards
//! it: an interrupt taken *between* the two instructions returns past the `hlt` (see its
//! docs for why a hypervisor can deliver one there).

pub use super::vectors::{FIRST_DEVICE_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR, WAKE_VECTOR};
use super::{lapic, stacks};
use conquer_once::spin::Once;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use x86_64::VirtAddr;
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;

/// The register state an entry stub saves, in memory order (lowest address first).
#[repr(C)]
#[derive(Debug)]
#[allow(missing_docs)]
pub struct InterruptFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

core::arch::global_asm!(
    r#"
    .section .text.torito_idle_halt, "ax"
    .code64
    .global torito_idle_halt
    .global torito_idle_hlt
    /* `sti; hlt; ret`, with the address of the `hlt` named so that the dispatcher can
     * recognise an interrupt taken in STI's shadow. */
torito_idle_halt:
    sti
torito_idle_hlt:
    hlt
    ret
"#
);

core::arch::global_asm!(
    r#"
    .section .text.torito_isr, "ax"
    .code64
    .balign 16
    .global torito_isr_table
    /* 256 stubs, one per vector, 16 bytes apart: `push $0` where the CPU pushes no
     * error code, `push` of the vector, `jmp` to torito_isr_common. */
torito_isr_table:
    .set vector, 0
    .rept 256
    .balign {stub_bytes}, 0xcc
    .if (vector == 8) || ((vector >= 10) && (vector <= 14)) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30)
    .else
    push $0
    .endif
    push $vector
    jmp torito_isr_common
    .set vector, vector + 1
    .endr
    /* Fails to assemble if a stub outgrew its 16 bytes (the IDT assumes them). */
    .org torito_isr_table + 256 * {stub_bytes}, 0xcc

torito_isr_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    cld
    mov %rsp, %rdi
    call torito_interrupt_dispatch
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq
    "#,
    stub_bytes = const STUB_BYTES,
    options(att_syntax)
);

unsafe extern "C" {
    static torito_isr_table: u8;
    fn torito_idle_halt();
    static torito_idle_hlt: u8;
}

/// Enables interrupts and halts until one arrives, as one step: STI's one-instruction
/// interrupt shadow covers the `hlt`, so an interrupt that is already pending, or that
/// arrives in between, ends the halt rather than being taken just before it.
///
/// That is the hardware's promise, and a hypervisor can break it. Under Xen under QEMU's
/// emulator, an interrupt is sometimes delivered with its return address on the `hlt`
/// itself: intercore on 4 vCPUs of dom0 under load saw one or two in 6,000 cross-core
/// round trips. The wake IPI's handler ran, the core went on to execute the `hlt` with
/// work queued, and slept until its next timer: stalls of 6 to 10 s. So the dispatcher
/// checks every interrupt's return address, moves one that is on this `hlt` past it and
/// counts it (`PerCpu::halts_skipped`): the halt ends as if that interrupt had ended it.
pub fn enable_and_halt() {
    // SAFETY: `torito_idle_halt` is `sti; hlt; ret` (the assembly above): it changes only
    // RFLAGS.IF, which every caller wants set, and returns to its caller.
    unsafe { torito_idle_halt() }
}

/// Moves an interrupted `rip` that is on the idle `hlt` past it (one byte); says whether
/// it did.
fn skip_idle_halt(rip: &mut u64) -> bool {
    let halt = (&raw const torito_idle_hlt) as u64;
    if *rip != halt {
        return false;
    }
    *rip = halt + 1;
    true
}

/// Size of one entry stub in `torito_isr_table` (at most 2 + 5 + 5 bytes of code).
const STUB_BYTES: usize = 16;

/// The IDT: 256 gates of 16 bytes (Intel SDM vol. 3, 6.14.1), each two words. Written in
/// place, word by word, so the boot builds no 4 KiB table on its stack to copy over
/// (under TCG every byte of such a copy is an emulated step).
#[repr(C, align(16))]
struct Idt([[AtomicU64; 2]; 256]);

static IDT: Idt = Idt([const { [AtomicU64::new(0), AtomicU64::new(0)] }; 256]);
static IDT_BUILT: Once = Once::uninit();

/// What reports a CPU exception and ends the VM.
pub type ExceptionReporter = fn(&InterruptFrame) -> !;

/// The `ExceptionReporter` given to `init`, as an address (0 until then), like the
/// device handlers below.
static REPORTER: AtomicUsize = AtomicUsize::new(0);

fn ist_for(vector: u8) -> u8 {
    match vector {
        8 => stacks::IST_DOUBLE_FAULT as u8,
        14 => stacks::IST_PAGE_FAULT as u8,
        2 | 18 => stacks::IST_NMI as u8,
        _ => 0,
    }
}

/// Builds the IDT (once) and loads it on this core; CPU exceptions go to `reporter`.
pub fn init(reporter: ExceptionReporter) {
    REPORTER.store(reporter as usize, Ordering::Release);
    IDT_BUILT.init_once(build);
    load();
}

fn build() {
    let base = (&raw const torito_isr_table) as u64;
    use x86_64::instructions::segmentation::Segment;
    let code = u64::from(x86_64::instructions::segmentation::CS::get_reg().0);
    for (vector, gate) in IDT.0.iter().enumerate() {
        let handler = base + (vector * STUB_BYTES) as u64;
        // offset 15:0, selector, IST, attributes (present, DPL 0, 64-bit interrupt gate,
        // so IF is cleared), offset 31:16; then offset 63:32.
        let low = (handler & 0xffff)
            | code << 16
            | u64::from(ist_for(vector as u8)) << 32
            | 0x8e << 40
            | (handler >> 16 & 0xffff) << 48;
        gate[0].store(low, Ordering::Relaxed);
        gate[1].store(handler >> 32, Ordering::Relaxed);
    }
}

/// Loads the (shared) IDT on this core; `init` has built it.
pub fn load() {
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::new(&raw const IDT as u64),
    };
    // SAFETY: the IDT is a `static` (never moved or freed), built by `init` on the boot
    // core before any other core loads it, and every gate points at a stub of
    // `torito_isr_table`, each of which ends in `iretq` or a fatal report.
    unsafe { lidt(&pointer) };
}

/// A device interrupt handler: acknowledge the device and wake; nothing more.
pub type Handler = fn();

static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];

/// Installs `handler` for `vector`.
///
/// # Errors
/// `Err(vector)` if the vector is reserved (below `FIRST_DEVICE_VECTOR` or the spurious
/// vector) or already taken.
pub fn register(vector: u8, handler: Handler) -> Result<(), u8> {
    if vector < FIRST_DEVICE_VECTOR || vector == SPURIOUS_VECTOR {
        return Err(vector);
    }
    HANDLERS[usize::from(vector)]
        .compare_exchange(0, handler as usize, Ordering::AcqRel, Ordering::Acquire)
        .map(|_| ())
        .map_err(|_| vector)
}

#[unsafe(no_mangle)]
extern "C" fn torito_interrupt_dispatch(frame: &mut InterruptFrame) {
    let vector = frame.vector as u8;
    match vector {
        0..=31 => {
            let report = REPORTER.load(Ordering::Acquire);
            if report == 0 {
                // Unreachable: `init` records the reporter before it loads the IDT.
                loop {
                    x86_64::instructions::hlt();
                }
            }
            // SAFETY: non-zero values are only ever stored by `init`, from a value of type
            // `ExceptionReporter`.
            let report = unsafe { core::mem::transmute::<usize, ExceptionReporter>(report) };
            report(frame)
        }
        SPURIOUS_VECTOR => {}
        _ if skip_idle_halt(&mut frame.rip) => {
            super::percpu::cpu(super::percpu::current())
                .halts_skipped
                .fetch_add(1, Ordering::Relaxed);
            dispatch_interrupt(vector);
        }
        _ => dispatch_interrupt(vector),
    }
}

/// Acknowledges and handles interrupt `vector` (32-255, not the spurious vector).
fn dispatch_interrupt(vector: u8) {
    match vector {
        TIMER_VECTOR => {
            super::percpu::cpu(super::percpu::current())
                .timer_interrupts
                .fetch_add(1, Ordering::Relaxed);
            lapic::end_of_interrupt();
        }
        WAKE_VECTOR => {
            super::percpu::cpu(super::percpu::current())
                .wakes_received
                .fetch_add(1, Ordering::Relaxed);
            lapic::end_of_interrupt();
        }
        _ => {
            let handler = HANDLERS[usize::from(vector)].load(Ordering::Acquire);
            if handler != 0 {
                // SAFETY: non-zero entries are only ever stored by `register`, from a
                // value of type `Handler`.
                let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(handler) };
                handler();
            }
            lapic::end_of_interrupt();
        }
    }
}
