/* Dom0's echo probe for qemu/xen-domu.sh: connects to HOST:PORT (retrying while the
 * domU's server comes up), sends ROUNDS messages of 64 bytes one at a time, checks that
 * each comes back byte for byte, and prints the median and the spread of the round
 * trips in microseconds:
 *
 *   rtt: 1000 rounds of 64 bytes, median 812 us, p10 790 us, p90 901 us, connect 3 ms
 *
 * (connect: from the first attempt to the connection, retries and SYN retransmissions
 * included: a server that answers late shows there.)
 *
 * Each round's bytes differ (a counter mixed into a pattern), so a stale or reordered
 * reply fails. Exits 1 (with the reason) on a refused connection after the retries, a
 * short read, a wrong byte or a timeout (10 s per round).
 *
 * usage: rtt HOST PORT ROUNDS
 * Built by qemu/xen-domu.sh: gcc -O2 -static -o rtt rtt.c */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define SIZE 64

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int connect_retrying(const char *host, int port) {
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
    if (inet_pton(AF_INET, host, &address.sin_addr) != 1) {
        fprintf(stderr, "rtt: %s is not an IPv4 address\n", host);
        return -1;
    }
    for (int attempt = 0; attempt < 50; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) { perror("rtt: socket"); return -1; }
        struct timeval limit = { .tv_sec = 10 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
        if (connect(fd, (struct sockaddr *)&address, sizeof address) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
        fprintf(stderr, "rtt: connect to %s:%d: %s (attempt %d)\n", host, port,
                strerror(errno), attempt + 1);
        close(fd);
        usleep(200000);
    }
    return -1;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: rtt HOST PORT ROUNDS\n"); return 2; }
    int port = atoi(argv[2]), rounds = atoi(argv[3]);
    if (port <= 0 || port > 65535 || rounds <= 0) {
        fprintf(stderr, "rtt: PORT must be 1-65535 and ROUNDS above 0\n");
        return 2;
    }
    double asked = now_us();
    int fd = connect_retrying(argv[1], port);
    double connected = now_us();
    if (fd < 0) return 1;
    double *times = malloc(sizeof(double) * (size_t)rounds);
    if (!times) { fprintf(stderr, "rtt: out of memory\n"); return 1; }
    unsigned char out[SIZE], in[SIZE];
    for (int round = 0; round < rounds; round++) {
        for (int i = 0; i < SIZE; i++) out[i] = (unsigned char)(round * 131 + i * 7 + (round >> 8));
        double start = now_us();
        if (send(fd, out, SIZE, 0) != SIZE) { perror("rtt: send"); return 1; }
        size_t got = 0;
        while (got < SIZE) {
            ssize_t n = recv(fd, in + got, SIZE - got, 0);
            if (n <= 0) {
                fprintf(stderr, "rtt: round %d: %s after %zu of %d bytes\n", round,
                        n == 0 ? "connection closed" : strerror(errno), got, SIZE);
                return 1;
            }
            got += (size_t)n;
        }
        times[round] = now_us() - start;
        if (memcmp(in, out, SIZE) != 0) {
            for (int i = 0; i < SIZE; i++)
                if (in[i] != out[i]) {
                    fprintf(stderr, "rtt: round %d: byte %d is %u, sent %u\n", round, i, in[i], out[i]);
                    break;
                }
            return 1;
        }
    }
    close(fd);
    qsort(times, (size_t)rounds, sizeof(double), compare);
    printf("rtt: %d rounds of %d bytes, median %.0f us, p10 %.0f us, p90 %.0f us, connect %.0f ms\n",
           rounds, SIZE, times[rounds / 2], times[rounds / 10], times[rounds * 9 / 10],
           (connected - asked) / 1e3);
    return 0;
}
