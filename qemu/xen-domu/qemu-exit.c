/* Ends the QEMU machine under Xen from dom0: writes the status to isa-debug-exit's port
 * 0xf4 (QEMU exits with (status << 1) | 1). Dom0 is the one domain Xen lets at the I/O
 * ports; without the device the write does nothing and this returns 1, and dom0's init
 * falls back to a reboot (QEMU's -no-reboot ends the run on it).
 *
 * usage: qemu-exit STATUS
 * Built by qemu/xen-domu.sh: gcc -O2 -static -o qemu-exit qemu-exit.c */
#include <stdio.h>
#include <stdlib.h>
#include <sys/io.h>

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: qemu-exit STATUS\n"); return 2; }
    if (ioperm(0xf4, 4, 1) != 0) { perror("qemu-exit: ioperm"); return 1; }
    outl((unsigned)atoi(argv[1]), 0xf4);
    return 1; /* still here: no exit device */
}
