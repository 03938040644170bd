# The boot-time floor: a do-nothing PVH kernel for bench/run.sh.
#
# QEMU enters it in 32-bit protected mode, paging off, flat segments (the PVH ABI). It
# writes one line to COM1 and ends QEMU through isa-debug-exit. The bench times its
# first console byte: whatever Torito's hello takes beyond that is the kernel's own cost.
# The line is Torito's exit line, so qemu/run.sh exits 0 for it like for a real image.
#
# Assembled with `--defsym HANG=1` it prints the line and then hangs instead of exiting
# (qemu/tests/harness.rs uses that to check that a timeout ends QEMU).
#
# Assembled with `--defsym WORK=N` it first runs code that QEMU must translate (once),
# for bench/run.sh to price translation under TCG against the plain floor:
#   WORK=1: 4000 register-only instructions in one straight line (a few blocks);
#   WORK=2: 2000 instructions with a memory operand, in one straight line;
#   WORK=3: 1000 blocks of two register instructions (an add and a jump to the next).

    # The PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY). QEMU 7.2 reads an ELF64 note's
    # descriptor as 8 bytes: the entry is a .quad with descsz 8, as Linux emits it.
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                 # namesz: "Xen\0"
    .long 8                 # descsz
    .long 18                # type: XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .quad _start
    .balign 4

    .text
    .code32
    .globl _start
_start:
.ifdef WORK
.if WORK == 1
    .rept 4000
    add $1, %eax
    .endr
.elseif WORK == 2
    .rept 2000
    addl $1, 0x7000
    .endr
.else
    .rept 1000
    add $1, %eax
    jmp 4f
4:
    .endr
.endif
.endif
    cld
    mov $0x3f8, %dx         # COM1 data register: QEMU's UART needs no setup to send
    mov $message, %esi
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:
.ifndef HANG
    xor %eax, %eax
    out %al, $0xf4          # isa-debug-exit: QEMU ends with status (0 << 1) | 1
.endif
    cli
3:  hlt                     # with interrupts off: sleeps until QEMU is killed
    jmp 3b

message:
.ifdef HANG
    .asciz "floor: hanging\n"
.else
    .asciz "torito: exit(0)\n"
.endif
