//! Starting the other CPUs (application processors, APs).
//!
//! The CPUs come from the MADT (q35, microvm with ACPI, GRUB's RSDP); without ACPI from
//! the MP configuration table (Firecracker), or else from QEMU's fw_cfg CPU count
//! (microvm `acpi=off`), APIC ids then assumed 0..n. Both tables are parsed by torito-boot
//! (`arch::acpi` finds them).
//!
//! Each AP gets INIT, then a start-up IPI pointing at a real-mode trampoline copied to
//! 0x8000; the trampoline switches to protected and long mode on the kernel's own page
//! tables and calls `torito_ap_entry` on a stack made for that AP (frames with a guard
//! page below each stack). Waits are only what the architecture needs: the INIT-to-SIPI
//! 10 ms delay of the MP specification applies to CPUs before family 6 (Linux drops it
//! for the same reason), a second SIPI is sent only if the first did not start the CPU
//! within 200 us, and an AP that is not up after a generous window (1 s to take its
//! parameters, 1 s more to arrive) is reported and left out. A late AP cannot take the
//! next one's parameters: a handshake word (`cpu_start`) decides, by compare-and-swap,
//! whether it claimed them before the boot core gave up; if it did not, it is parked
//! with INIT and its stacks go to the next CPU; if it did, nothing it was given is reused
//! and the CPUs after it stay parked.

use super::{acpi, clock, gdt, interrupts, lapic, paging, percpu, serial, stacks};
use crate::cpu_start::{GiveUp, Progress};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use stacks::{StackExtent, StackKind};

const TRAMPOLINE: u64 = 0x8000;
/// Parameters for the AP, at the end of the trampoline page.
const PARAMETERS: u64 = TRAMPOLINE + 0xf00;
/// As the boot stack (`torito_boot::BOOT_STACK_SIZE`), which runs the same kind of work.
const AP_STACK: u64 = torito_boot::BOOT_STACK_SIZE as u64;
const AP_IST_STACK: u64 = 8 * 1024;

core::arch::global_asm!(
    r#"
    .section .rodata.torito_trampoline, "a"
    .global torito_trampoline_start
    .global torito_trampoline_end
    .code16
torito_trampoline_start:
    cli
    cld
    xor %ax, %ax
    mov %ax, %ds
    lgdtl 0x8000 + (torito_ap_gdt_pointer - torito_trampoline_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $(0x8000 + (torito_ap_protected - torito_trampoline_start))

    .code32
torito_ap_protected:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $(1 << 5), %eax                 /* PAE */
    mov %eax, %cr4
    mov 0x8f00, %eax                   /* parameters: page table root */
    mov %eax, %cr3
    mov $0xc0000080, %ecx              /* EFER: LME | NXE */
    rdmsr
    or $((1 << 8) | (1 << 11)), %eax
    wrmsr
    mov %cr0, %eax
    or $((1 << 31) | (1 << 16)), %eax  /* PG | WP */
    mov %eax, %cr0
    ljmpl $0x18, $(0x8000 + (torito_ap_long - torito_trampoline_start))

    .code64
torito_ap_long:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $1, %eax
    cpuid                              /* EBX bits 31:24: this CPU's APIC id */
    shr $24, %ebx
    mov %rbx, %rax                     /* expected: the boot core waits for this CPU */
    mov %rbx, %rcx
    bts $32, %rcx                      /* CLAIMED | id (cpu_start.rs) */
    lock cmpxchg %rcx, 0x8f28          /* claim the parameters, before touching memory */
    jne torito_ap_park
    mov 0x8f08, %rsp                   /* stack top */
    mov 0x8f18, %rdi                   /* core index */
    mov 0x8f20, %rsi                   /* what the core runs */
    xor %ebp, %ebp
    mov 0x8f10, %rax                   /* entry */
    call *%rax
    ud2

torito_ap_park:                        /* not (or no longer) this CPU's turn: stay */
    cli
    hlt
    jmp torito_ap_park

    .balign 8
torito_ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff           /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff           /* 0x10: data */
    .quad 0x00af9a000000ffff           /* 0x18: 64-bit code */
torito_ap_gdt_pointer:
    .short 31
    .long 0x8000 + (torito_ap_gdt - torito_trampoline_start)
torito_trampoline_end:
    .text
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    static torito_trampoline_start: u8;
    static torito_trampoline_end: u8;
}

/// Offset of the start handshake's word in the parameter block (`cpu_start`).
const HANDSHAKE: u64 = 0x28;

/// How long the boot core waits for a CPU to claim its parameters, and then again for
/// it to arrive. Generous: it costs only when a listed CPU does not start, while an
/// emulator under load (or one that emulates real mode slowly) can take hundreds of
/// milliseconds for a CPU that is fine (Linux waits 10 s).
const WINDOW_MICROS: u64 = 1_000_000;

/// Testing: `smp.late=ID` makes the CPU with APIC id ID late on purpose: the boot core
/// announces an id no CPU has (CPUID gives 8 bits), so that CPU's claim fails as a late
/// one's does, and the late-CPU path runs under QEMU.
fn made_late() -> Option<u32> {
    let line = torito_boot::Cmdline::parse(super::entry::boot_info()?.cmdline()).ok()?;
    line.get("smp.late")?.value?.parse().ok()
}

/// The start handshake's word, in the trampoline page.
fn handshake() -> crate::cpu_start::Handshake<'static> {
    // SAFETY: the word lies in the parameter block of the trampoline page, which stays
    // reserved for it for the kernel's life (LOW_RESERVED) and mapped read-write; it is
    // 8-aligned, and every access to it is atomic (here, and the trampoline's `lock
    // cmpxchg`).
    let word = unsafe { AtomicU64::from_ptr((PARAMETERS + HANDSHAKE) as *mut u64) };
    crate::cpu_start::Handshake::new(word)
}

fn write_parameter(offset: u64, value: u64) {
    // SAFETY: the parameter block lies in the trampoline page, which the boot core owns
    // during bring-up (reserved from the frame allocator: LOW_RESERVED).
    unsafe { core::ptr::write_volatile((PARAMETERS + offset) as *mut u64, value) };
}

/// One guarded stack of `size` bytes for `core`, from frames; its extent.
fn make_stack(core: usize, kind: StackKind, size: u64) -> Option<StackExtent> {
    let base = paging::allocate_frames(1 + size / 4096)?;
    paging::unmap_guard(base).ok()?;
    let extent = StackExtent {
        kind,
        guard: base,
        bottom: base + 4096,
        top: base + 4096 + size,
        core,
    };
    stacks::register(extent);
    Some(extent)
}

/// The APIC ids of the CPUs other than this one (at most `MAX_CPUS - 1`), how many there
/// are, and how many more were listed.
fn other_cpus(own: u32) -> ([u32; percpu::MAX_CPUS], usize, usize) {
    let mut ids = [0u32; percpu::MAX_CPUS];
    let mut count = 0;
    let mut skipped = 0;
    let mut add = |id: u32| {
        if id == own {
        } else if count + 1 < percpu::MAX_CPUS {
            ids[count] = id;
            count += 1;
        } else {
            skipped += 1;
        }
    };
    let source = if let Some(madt) = acpi::madt() {
        madt.local_apics().for_each(&mut add);
        "the MADT"
    } else {
        let mut others = false;
        for id in acpi::mp_table()
            .into_iter()
            .flat_map(|table| table.processors())
        {
            others |= id != own;
            add(id);
        }
        if others {
            "the MP table"
        } else {
            // No MP table, or one that lists only this CPU (SeaBIOS with ACPI off).
            (0..fw_cfg_cpu_count()).for_each(&mut add);
            "fw_cfg's count"
        }
    };
    log::debug!("smp: CPUs from {}", source);
    (ids, count, skipped)
}

/// QEMU's fw_cfg CPU count (key 0x05), or 1 when there is no fw_cfg.
fn fw_cfg_cpu_count() -> u32 {
    use x86_64::instructions::port::Port;
    // SAFETY: ports 0x510 (selector) and 0x511 (data) are QEMU's fw_cfg; the signature
    // check (key 0, "QEMU") comes first, so on other machines we only read back 0xff.
    unsafe {
        Port::<u16>::new(0x510).write(0);
        let signature: [u8; 4] = core::array::from_fn(|_| Port::<u8>::new(0x511).read());
        if &signature != b"QEMU" {
            return 1;
        }
        Port::<u16>::new(0x510).write(5);
        let low = Port::<u8>::new(0x511).read();
        let high = Port::<u8>::new(0x511).read();
        u32::from(u16::from_le_bytes([low, high])).max(1)
    }
}

fn wait_micros(micros: u64) {
    let end = clock::now_nanos() + micros * 1000;
    while clock::now_nanos() < end {
        core::hint::spin_loop();
    }
}

/// Waits up to `micros` for CPU `apic_id` to leave the `from` step of its start.
fn wait_past(apic_id: u32, from: Progress, micros: u64) -> Progress {
    let end = clock::now_nanos() + micros * 1000;
    loop {
        let progress = handshake().progress(apic_id);
        if progress != from || clock::now_nanos() >= end {
            return progress;
        }
        core::hint::spin_loop();
    }
}

/// What a secondary core runs once it is up: its executor, forever. Given by the caller
/// (the runtime, above `arch`), so that `arch` needs nothing from above it; it reaches
/// the core through the trampoline's parameters.
pub type CoreMain = extern "C" fn(usize) -> !;

/// The right to start the other CPUs. There is one: [`StartOthers::take`] hands it out
/// once and [`start_others`] consumes it, so no core is sent INIT while it runs Torito
/// (a "call once" token rather than an `unsafe` promise).
pub struct StartOthers(());

static START_TAKEN: AtomicBool = AtomicBool::new(false);

impl StartOthers {
    /// The token, the first time; `None` after that.
    pub fn take() -> Option<Self> {
        (!START_TAKEN.swap(true, Ordering::AcqRel)).then_some(Self(()))
    }
}

/// Starts every other CPU, each ending in `core_main(its index)`; returns how many cores
/// run (including this one).
pub fn start_others(_once: StartOthers, core_main: CoreMain) -> usize {
    let started_at = clock::now_nanos();
    let own = lapic::id();
    let (ids, count, skipped) = other_cpus(own);
    if skipped > 0 {
        log::warn!(
            "smp: {} CPUs beyond the {} supported stay parked",
            skipped,
            percpu::MAX_CPUS
        );
    }
    if count == 0 {
        percpu::set_count(1);
        return 1;
    }
    let code = (&raw const torito_trampoline_start) as usize;
    let length = (&raw const torito_trampoline_end) as usize - code;
    if paging::set_low_executable(TRAMPOLINE, true).is_err() {
        log::error!("smp: cannot map the start-up trampoline; running on one core");
        percpu::set_count(1);
        return 1;
    }
    // SAFETY: the trampoline page (0x8000) is reserved low memory that nothing else uses
    // (LOW_RESERVED keeps it from the frame allocator) and is mapped writable; the source
    // is the trampoline's bytes in .rodata.
    unsafe { core::ptr::copy_nonoverlapping(code as *const u8, TRAMPOLINE as *mut u8, length) };
    write_parameter(0, paging::root_table());
    write_parameter(0x10, torito_ap_entry as *const () as u64);
    write_parameter(0x20, core_main as *const () as u64);
    let old_cpu =
        (x86_64::instructions::interrupts::without_interrupts(|| lapic::x86_64_cpuid(1).0) >> 8)
            & 0xf
            < 6;

    handshake().close();
    let late = made_late();
    let mut next = 1;
    // The stacks made for a core index, kept for the next CPU when the one they were
    // made for never claimed them.
    let mut spare: Option<[StackExtent; 4]> = None;
    for &apic_id in &ids[..count] {
        let core = next;
        let stacks = match spare.take() {
            Some(stacks) => stacks,
            None => {
                let made = [
                    make_stack(core, StackKind::Boot, AP_STACK),
                    make_stack(core, StackKind::DoubleFault, AP_IST_STACK),
                    make_stack(core, StackKind::PageFault, AP_IST_STACK),
                    make_stack(core, StackKind::Nmi, AP_IST_STACK),
                ];
                let [Some(main), Some(double), Some(page), Some(nmi)] = made else {
                    log::error!(
                        "smp: no memory for the stacks of CPU (APIC id {}); it stays parked",
                        apic_id
                    );
                    continue;
                };
                [main, double, page, nmi]
            }
        };
        let [main, double, page, nmi] = stacks;
        AP_IST[core].store(double.top, Ordering::Relaxed);
        AP_IST_PAGE[core].store(page.top, Ordering::Relaxed);
        AP_IST_NMI[core].store(nmi.top, Ordering::Relaxed);
        percpu::cpu(core).apic_id_set(apic_id);
        write_parameter(0x08, main.top);
        write_parameter(0x18, core as u64);
        let announced = if late == Some(apic_id) {
            apic_id | 0x100
        } else {
            apic_id
        };
        handshake().expect(announced);
        lapic::send_init(apic_id);
        if old_cpu {
            wait_micros(10_000);
        }
        lapic::send_startup(apic_id, (TRAMPOLINE >> 12) as u8);
        let mut progress = wait_past(announced, Progress::Waiting, 200);
        if progress == Progress::Waiting {
            lapic::send_startup(apic_id, (TRAMPOLINE >> 12) as u8);
            progress = wait_past(announced, Progress::Waiting, WINDOW_MICROS);
        }
        if progress == Progress::Claimed {
            progress = wait_past(announced, Progress::Claimed, WINDOW_MICROS);
        }
        if progress == Progress::Arrived {
            next += 1;
            continue;
        }
        match handshake().give_up(announced) {
            GiveUp::Arrived => next += 1,
            GiveUp::NeverClaimed => {
                // It never touched its parameters or stacks and now never will (its
                // claim fails); INIT parks it wherever it is in the trampoline, so it
                // does not run into the trampoline page once that is no longer
                // executable. Its stacks and core index go to the next CPU.
                lapic::send_init(apic_id);
                spare = Some(stacks);
                log::error!(
                    "smp: CPU with APIC id {} did not start within {} ms; parked with INIT, \
                     going on without it",
                    apic_id,
                    WINDOW_MICROS / 1000
                );
            }
            GiveUp::AfterClaim => {
                // It runs on core {core}'s stacks and may have set up that core's
                // per-CPU block and TSS; it halts when it reaches its arrival, but none
                // of that may be handed to another CPU. Not sent INIT: it may be in the
                // middle of something the boot core cannot see.
                log::error!(
                    "smp: CPU with APIC id {} started but did not arrive within {} ms; \
                     it halts when it does, and the remaining {} CPU(s) stay parked",
                    apic_id,
                    WINDOW_MICROS / 1000,
                    ids[..count].iter().skip_while(|&&id| id != apic_id).count() - 1
                );
                break;
            }
        }
    }
    let _ = paging::set_low_executable(TRAMPOLINE, false);
    percpu::set_count(next);
    log::info!(
        "smp: {} cores up; starting the other {} took {} us",
        next,
        next - 1,
        (clock::now_nanos() - started_at) / 1000
    );
    next
}

static AP_IST: [AtomicU64; percpu::MAX_CPUS] = [const { AtomicU64::new(0) }; percpu::MAX_CPUS];
static AP_IST_PAGE: [AtomicU64; percpu::MAX_CPUS] = [const { AtomicU64::new(0) }; percpu::MAX_CPUS];
static AP_IST_NMI: [AtomicU64; percpu::MAX_CPUS] = [const { AtomicU64::new(0) }; percpu::MAX_CPUS];

/// Where every AP lands in 64-bit mode, on its own stack, with what `start_others` was
/// given to run.
extern "C" fn torito_ap_entry(core: usize, core_main: CoreMain) -> ! {
    percpu::init(core, percpu::cpu(core).apic_id());
    gdt::init(
        core,
        [
            AP_IST[core].load(Ordering::Relaxed),
            AP_IST_PAGE[core].load(Ordering::Relaxed),
            AP_IST_NMI[core].load(Ordering::Relaxed),
        ],
    );
    interrupts::load();
    if lapic::init().is_err() {
        serial::force_write(format_args!(
            "smp: core {} cannot use its local APIC\n",
            core
        ));
    }
    if !handshake().arrive(percpu::cpu(core).apic_id()) {
        // The boot core gave up on this CPU and counts it out: stay halted.
        loop {
            x86_64::instructions::interrupts::disable();
            x86_64::instructions::hlt();
        }
    }
    percpu::cpu(core).online.store(true, Ordering::Release);
    x86_64::instructions::interrupts::enable();
    core_main(core)
}
