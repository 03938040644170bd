/*
 * Prints the host's TSC rate in kHz, measured against CLOCK_MONOTONIC_RAW in 5 rounds of 100 ms.
 *
 * Why: under TCG, QEMU's guest TSC is the host TSC, and the Linux guest calibrates it
 * against microvm's PIT, which fails often under TCG ("tsc: Unable to calibrate against
 * PIT ... Marking TSC unstable"), after which that kernel hangs in its boot. The bench
 * passes the measured rate as tsc_early_khz= so the guest skips that calibration.
 *
 * Built by bench/linux/guest.sh (linux_append): gcc -O2 -o tsc_khz tsc_khz.c
 */
#include <stdio.h>
#include <time.h>
#include <x86intrin.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(void) {
    enum { ROUNDS = 5 };
    double khz[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        double t0 = now();
        unsigned long long c0 = __rdtsc();
        while (now() - t0 < 0.1) {}
        double t1 = now();
        unsigned long long c1 = __rdtsc();
        khz[round] = (double)(c1 - c0) / (t1 - t0) / 1000.0;
    }
    /* The median of the rounds: a preemption between the paired reads skews one round. */
    for (int i = 1; i < ROUNDS; i++)
        for (int j = i; j > 0 && khz[j - 1] > khz[j]; j--) {
            double t = khz[j]; khz[j] = khz[j - 1]; khz[j - 1] = t;
        }
    printf("%.0f\n", khz[ROUNDS / 2]);
    return 0;
}
