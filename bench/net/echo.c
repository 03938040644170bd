/*
 * The Linux guest's side of the networking bench: a TCP echo server on port 5555,
 * one thread, epoll, non-blocking sockets, TCP_NODELAY (as a latency-minded server
 * would set it). Prints "echo: listening on port 5555" once it listens, like
 * Torito's examples/echo, so the bench waits for the same line on both.
 *
 * usage: echod          the guest's server: port 5555, every address
 *        echod PORT     on 127.0.0.1:PORT only: bench/net/bench.py runs it so on the host
 *                       to measure the client's own floor (no VM in the path)
 *
 * Built by bench/net/run.sh: gcc -O2 -static -o echod echo.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536
#define MAXEV 64

struct conn {
    int fd;
    size_t len, off;        /* bytes read and not yet echoed: buf[off..len) */
    char buf[BUF];
};

static int ep;

static void drop(struct conn *c) {
    close(c->fd);          /* closing removes it from the epoll set */
    free(c);
}

/* Echo what is pending, then read more, until the socket would block either way.
 * Returns 0 to keep the connection, -1 to drop it. */
static int serve(struct conn *c) {
    for (;;) {
        while (c->off < c->len) {
            ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    /* Peer is slow: wait for room, stop reading meanwhile. */
                    struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                    return 0;
                }
                return -1;
            }
            c->off += (size_t)n;
        }
        c->off = c->len = 0;
        ssize_t n = recv(c->fd, c->buf, BUF, 0);
        if (n > 0) { c->len = (size_t)n; continue; }
        if (n == 0) return -1;                      /* peer closed */
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = c };
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            return 0;
        }
        return -1;
    }
}

int main(int argc, char **argv) {
    int one = 1;
    int port = argc > 1 ? atoi(argv[1]) : 5555;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) { perror("echo: socket"); return 1; }
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port),
                                .sin_addr.s_addr = htonl(argc > 1 ? INADDR_LOOPBACK : INADDR_ANY) };
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("echo: bind"); return 1; }
    if (listen(lfd, 128) < 0) { perror("echo: listen"); return 1; }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    printf("echo: listening on port %d\n", port);
    fflush(stdout);

    struct epoll_event evs[MAXEV];
    for (;;) {
        int n = epoll_wait(ep, evs, MAXEV, -1);
        if (n < 0) { if (errno == EINTR) continue; perror("echo: epoll_wait"); return 1; }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {                            /* the listener */
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = malloc(sizeof *c);
                    if (c == NULL) { close(fd); continue; }
                    c->fd = fd; c->len = c->off = 0;
                    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = c };
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (serve(c) < 0) drop(c);
        }
    }
}
