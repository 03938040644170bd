/*
 * The block bench's Linux side: the same measurements as examples/block's bench mode
 * (app.bench=1), on the Linux guest's /dev/vda, with O_DIRECT so the guest's page cache
 * plays no part (Torito has none):
 *
 *   sequential write: the whole disk in 64 KiB requests, 32 in flight (32 threads, each
 *                     taking every 32nd chunk, as Torito's 32 tasks do), then fsync;
 *   sequential read:  the same, reading;
 *   random reads:     2000 reads of 4 KiB at the same pseudo-random aligned offsets as
 *                     Torito's (SplitMix64 of seed 0xbe7c), 1 and then 32 in flight.
 *
 * Prints the same "bench: ..." lines as Torito's example, then "bench: done".
 * Built by bench/block/run.sh: gcc -O2 -static -pthread -o blockbench blockbench.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define SEQUENTIAL (64 * 1024)
#define DEPTH 32
#define RANDOM 4096
#define REQUESTS 2000

static int fd;
static uint64_t disk_bytes;

struct job {
    int worker, depth, write, random;
};

static uint64_t word(uint64_t seed, uint64_t index) {
    uint64_t z = seed + (index + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *work(void *argument) {
    struct job *job = argument;
    void *buffer;
    if (posix_memalign(&buffer, 4096, SEQUENTIAL)) {
        perror("blockbench: posix_memalign");
        exit(1);
    }
    if (job->random) {
        uint64_t slots = disk_bytes / RANDOM;
        for (uint64_t request = job->worker; request < REQUESTS; request += job->depth) {
            off_t offset = (off_t)(word(0xbe7c, request) % slots) * RANDOM;
            if (pread(fd, buffer, RANDOM, offset) != RANDOM) {
                perror("blockbench: pread");
                exit(1);
            }
        }
    } else {
        uint64_t chunks = disk_bytes / SEQUENTIAL;
        for (uint64_t chunk = job->worker; chunk < chunks; chunk += job->depth) {
            off_t offset = (off_t)chunk * SEQUENTIAL;
            ssize_t done = job->write ? pwrite(fd, buffer, SEQUENTIAL, offset)
                                      : pread(fd, buffer, SEQUENTIAL, offset);
            if (done != SEQUENTIAL) {
                perror("blockbench: sequential");
                exit(1);
            }
        }
    }
    free(buffer);
    return NULL;
}

static uint64_t run(int depth, int write, int random) {
    pthread_t threads[DEPTH];
    struct job jobs[DEPTH];
    uint64_t start = now_us();
    for (int worker = 0; worker < depth; worker++) {
        jobs[worker] = (struct job){worker, depth, write, random};
        pthread_create(&threads[worker], NULL, work, &jobs[worker]);
    }
    for (int worker = 0; worker < depth; worker++)
        pthread_join(threads[worker], NULL);
    if (write && fsync(fd)) {
        perror("blockbench: fsync");
        exit(1);
    }
    uint64_t micros = now_us() - start;
    return micros ? micros : 1;
}

int main(int argc, char **argv) {
    const char *device = argc > 1 ? argv[1] : "/dev/vda";
    fd = open(device, O_RDWR | O_DIRECT);
    if (fd < 0 || ioctl(fd, BLKGETSIZE64, &disk_bytes)) {
        perror(device);
        return 1;
    }
    const char *names[2] = {"sequential write", "sequential read"};
    for (int pass = 0; pass < 2; pass++) {
        uint64_t micros = run(DEPTH, pass == 0, 0);
        printf("bench: %s: %llu KiB in %llu us: %llu KiB/s\n", names[pass],
               (unsigned long long)(disk_bytes / 1024), (unsigned long long)micros,
               (unsigned long long)(disk_bytes * 1000000 / 1024 / micros));
    }
    int depths[2] = {1, DEPTH};
    for (int index = 0; index < 2; index++) {
        uint64_t micros = run(depths[index], 0, 1);
        printf("bench: 4 KiB random reads, depth %d: %d in %llu us: %llu IOPS\n",
               depths[index], REQUESTS, (unsigned long long)micros,
               (unsigned long long)REQUESTS * 1000000 / micros);
    }
    printf("bench: done\n");
    fflush(stdout);
    return 0;
}
