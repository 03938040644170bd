//! The two ways in: a PVH note and a multiboot2 header, one 32->64-bit path.
//!
//! Both protocols enter in 32-bit protected mode with paging off, no usable stack and
//! `ebx` pointing at the loader's boot information:
//!
//! * PVH (`XEN_ELFNOTE_PHYS32_ENTRY`, used by QEMU `-kernel`, Firecracker, Cloud
//!   Hypervisor and Xen) jumps to `torito_pvh_entry`;
//! * multiboot2 (GRUB) jumps to the ELF entry point, `torito_multiboot2_entry`, with the
//!   magic value in `eax`.
//!
//! The common path reads the TSC (the boot-time epoch), checks that the CPU has long
//! mode and NX (and says so on COM1 when it does not: a silent hang is the worst failure),
//! identity-maps the first 1 GiB with 2 MiB pages, enables PAE, long mode, NX and paging,
//! zeroes `.bss` (not every loader does) and calls the kernel's
//! `torito_kernel_entry(protocol, magic, info, entry_tsc)` on the boot stack.
//! The kernel replaces these early page tables with its own at once.
//!
//! The boot stack has an unmapped guard page below it once the kernel's tables are in
//! place: `__boot_stack_guard`, `__boot_stack_bottom`, `__boot_stack_top` are exported
//! for that.

/// `protocol` value passed to `torito_kernel_entry` for a PVH boot.
pub const PROTOCOL_PVH: u32 = 1;
/// `protocol` value passed to `torito_kernel_entry` for a multiboot2 boot.
pub const PROTOCOL_MULTIBOOT2: u32 = 2;

/// Size of the boot stack, on which the kernel (and core 0's executor) runs.
///
/// 128 KiB, because `main` and every task on core 0 are polled on it, nested: the
/// generic `block_on` holds `main`'s state and a task's poll frame sits under it, and a
/// driver's set-up (virtio-drivers builds its virtqueues by value) adds frames of
/// several KiB. With 64 KiB, the files example's virtio-fs set-up under its `main`
/// overflowed (qemu/tests/files.rs caught it). It is `.bss`: no bytes in the image.
pub const BOOT_STACK_SIZE: usize = 128 * 1024;

core::arch::global_asm!(
    r#"
    /* ---- multiboot2 header (spec 3.1.1): magic, arch 0 = i386, length, checksum ---- */
    .section .multiboot2_header, "a"
    .balign 8
torito_mb2_header:
    .long 0xe85250d6
    .long 0
    .long torito_mb2_header_end - torito_mb2_header
    .long 0x100000000 - (0xe85250d6 + (torito_mb2_header_end - torito_mb2_header))
    /* end tag */
    .short 0
    .short 0
    .long 8
torito_mb2_header_end:

    /* ---- PVH note: XEN_ELFNOTE_PHYS32_ENTRY (18), descriptor as a .quad (QEMU 7.2 reads
     * an ELF64 note's descriptor as 8 bytes; Linux emits it so too) ---- */
    .section .note.pvh, "a", @note
    .balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .balign 4
    .quad torito_pvh_entry
    .balign 4

    /* ---- 32-bit entry code ---- */
    .section .boot.text, "ax"
    .code32
    .global torito_pvh_entry
torito_pvh_entry:
    cli
    cld
    mov ${pvh}, %edi
    xor %esi, %esi
    jmp 1f

    .global torito_multiboot2_entry
torito_multiboot2_entry:
    cli
    cld
    mov ${mb2}, %edi
    mov %eax, %esi

1:  /* edi = protocol, esi = magic, ebx = boot information: keep these three. */
    rdtsc                          /* the boot epoch */
    mov %eax, torito_entry_tsc
    mov %edx, torito_entry_tsc+4
    mov $__boot_stack_top, %esp

    /* Zero the two upper boot tables; the loop below writes both halves of every PD
     * entry. Nothing here trusts the loader to have zeroed them. */
    mov %edi, %ebp
    mov $torito_boot_pml4, %edi
    mov $(2 * 4096 / 4), %ecx
    xor %eax, %eax
    rep stosl
    mov %ebp, %edi

    /* Long mode (bit 29) and NX (bit 20) in CPUID 0x80000001:EDX. */
    push %ebx
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb 9f
    mov $0x80000001, %eax
    cpuid
    bt $29, %edx
    jnc 9f
    bt $20, %edx
    jnc 9f
    pop %ebx

    /* Early page tables: PML4[0] -> PDPT[0] -> PD, 512 x 2 MiB identity pages. */
    mov $torito_boot_pdpt, %eax
    or $0x3, %eax
    mov %eax, torito_boot_pml4
    mov $torito_boot_pd, %eax
    or $0x3, %eax
    mov %eax, torito_boot_pdpt
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax                 /* present | writable | 2 MiB page */
    mov %eax, torito_boot_pd(,%ecx,8)
    movl $0, torito_boot_pd+4(,%ecx,8)  /* high half: no NX, no address bits above 4 GiB */
    inc %ecx
    cmp $512, %ecx
    jne 2b

    mov %cr4, %eax
    or $(1 << 5), %eax             /* PAE */
    mov %eax, %cr4
    mov $torito_boot_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx          /* EFER */
    rdmsr
    or $((1 << 8) | (1 << 11)), %eax /* LME | NXE */
    wrmsr
    mov %cr0, %eax
    or $((1 << 31) | (1 << 16) | 1), %eax /* PG | WP | PE */
    mov %eax, %cr0

    lgdt torito_boot_gdt_pointer
    ljmp $0x08, $3f

9:  /* No long mode or no NX: say so on COM1 and stop. */
    mov $torito_boot_no_long_mode, %esi
    mov $0x3f8, %dx
4:  lodsb
    test %al, %al
    jz 5f
    out %al, %dx
    jmp 4b
5:  hlt
    jmp 5b

    .code64
3:  mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    mov $__boot_stack_top, %rsp

    /* Zero .bss (the loader is not trusted to); rdi, the protocol, is kept in rbp. */
    mov %edi, %ebp
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $3, %ecx                   /* whole words: torito.ld aligns both ends to 64 */
    xor %eax, %eax
    rep stosq
    mov %ebp, %edi                 /* zero-extend: protocol */
    xor %ebp, %ebp                 /* rbp = 0 ends the backtrace walk */
    mov %esi, %esi                 /* magic */
    mov %ebx, %edx                 /* boot information address */
    mov torito_entry_tsc, %rcx     /* TSC at the first instruction */
    call torito_kernel_entry
    ud2

    .section .rodata.boot, "a"
    .balign 8
torito_boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff       /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff       /* 0x10: data */
torito_boot_gdt_pointer:
    .short torito_boot_gdt_pointer - torito_boot_gdt - 1
    .long torito_boot_gdt
torito_boot_no_long_mode:
    .asciz "torito: this CPU has no 64-bit long mode or no NX bit; cannot boot\r\n"

    .section .data.boot, "aw"
    .balign 8
torito_entry_tsc: .quad 0          /* written before .bss is zeroed, so not in .bss */

    .section .bss.unzeroed.boot, "aw", @nobits
    .balign 4096
torito_boot_pml4: .skip 4096
torito_boot_pdpt: .skip 4096
torito_boot_pd: .skip 4096
    .global __boot_stack_guard
__boot_stack_guard: .skip 4096
    .global __boot_stack_bottom
__boot_stack_bottom: .skip {stack_size}
    .global __boot_stack_top
__boot_stack_top:
    .code64
    .text
    "#,
    pvh = const PROTOCOL_PVH,
    mb2 = const PROTOCOL_MULTIBOOT2,
    stack_size = const BOOT_STACK_SIZE,
    options(att_syntax)
);
