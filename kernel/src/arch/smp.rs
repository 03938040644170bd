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
//! within 200 us, and an AP that is not up after 100 ms is reported and left out.

use super::{acpi, clock, gdt, interrupts, lapic, paging, percpu, serial, stacks};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use stacks::{StackExtent, StackKind};

const TRAMPOLINE: u64 = 0x8000;
/// Parameters for the AP, at the end of the trampoline page.
const PARAMETERS: u64 = TRAMPOLINE + 0xf00;
const AP_STACK: u64 = 32 * 1024;
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
    mov 0x8f08, %rsp                   /* stack top */
    mov 0x8f18, %rdi                   /* core index */
    mov 0x8f20, %rsi                   /* what the core runs */
    xor %ebp, %ebp
    mov 0x8f10, %rax                   /* entry */
    call *%rax
    ud2

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

/// Written by each AP when it is up (its index), read by the boot core.
static ARRIVED: AtomicU64 = AtomicU64::new(u64::MAX);

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

fn wait_arrival(core: usize, micros: u64) -> bool {
    let end = clock::now_nanos() + micros * 1000;
    while clock::now_nanos() < end {
        if ARRIVED.load(Ordering::Acquire) == core as u64 {
            return true;
        }
        core::hint::spin_loop();
    }
    false
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

    let mut next = 1;
    for &apic_id in &ids[..count] {
        let core = next;
        let stacks = [
            make_stack(core, StackKind::Boot, AP_STACK),
            make_stack(core, StackKind::DoubleFault, AP_IST_STACK),
            make_stack(core, StackKind::PageFault, AP_IST_STACK),
            make_stack(core, StackKind::Nmi, AP_IST_STACK),
        ];
        let [Some(main), Some(double), Some(page), Some(nmi)] = stacks else {
            log::error!(
                "smp: no memory for the stacks of CPU (APIC id {}); it stays parked",
                apic_id
            );
            continue;
        };
        AP_IST[core].store(double.top, Ordering::Relaxed);
        AP_IST_PAGE[core].store(page.top, Ordering::Relaxed);
        AP_IST_NMI[core].store(nmi.top, Ordering::Relaxed);
        percpu::cpu(core).apic_id_set(apic_id);
        write_parameter(0x08, main.top);
        write_parameter(0x18, core as u64);
        lapic::send_init(apic_id);
        if old_cpu {
            wait_micros(10_000);
        }
        lapic::send_startup(apic_id, (TRAMPOLINE >> 12) as u8);
        let mut up = wait_arrival(core, 200);
        if !up {
            lapic::send_startup(apic_id, (TRAMPOLINE >> 12) as u8);
            up = wait_arrival(core, 100_000);
        }
        if up {
            next += 1;
        } else {
            log::error!(
                "smp: CPU with APIC id {} did not start; running without it",
                apic_id
            );
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
    percpu::cpu(core).online.store(true, Ordering::Release);
    ARRIVED.store(core as u64, Ordering::Release);
    x86_64::instructions::interrupts::enable();
    core_main(core)
}
