#!/usr/bin/env python3
"""The networking bench's client: measures a TCP echo server (Python 3 standard library).

usage: client.py PORT [--host 127.0.0.1] [--ping] [--round-trips N] [--warmup N]
                      [--bulk-mib N] [--connections N] [--conn-round-trips N] [--deadline S]
                      [--phases round_trip,bulk,concurrent]

Connect only once the server has printed its "listening" line: QEMU's user networking
accepts the host's connection before the guest listens, then backs the SYN off for
seconds.

Measures, one after the other, and prints them as one JSON object on stdout:
  rt_median_us, rt_p99_us   round trip of a 64-byte message on one connection (TCP_NODELAY),
                            N round trips after a warm-up; the median and 99th percentile.
  bulk_mib_s                bulk echo over one connection: a thread sends N MiB in 64 KiB
                            writes while the main thread reads the echo back; MiB/s from the
                            first write to the last byte read. The echoed bytes are checked.
  setup_s                   N connections opened one after the other, each confirmed by
                            a 64-byte round trip (see measure_concurrent for why not all
                            at once); seconds.
  concurrent_s              then one thread per connection, released together (a barrier),
                            each making M round trips of 64 bytes; seconds from the barrier
                            until every thread is done.
Each phase also reports how much it asked of the server: rt_count (round trips, warm-up
included), bulk_mib, conc_count (round trips, setup included), so a caller can divide.
A phase that fails (timeout, reset, wrong bytes) reports null and its error under
"errors" instead of ending the run. --ping makes one round trip and exits 0 on success.
Every socket operation has a timeout and the whole run has a deadline (--deadline):
the client never waits forever on a wedged guest.
"""

import argparse
import json
import socket
import statistics
import sys
import threading
import time

MESSAGE = bytes(range(64))


class Deadline(Exception):
    pass


def connect(host, port, timeout):
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(timeout)
    return sock


def recv_exact(sock, n):
    parts, got = [], 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            raise ConnectionError(f"connection closed after {got} of {n} bytes")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def round_trip(sock, message=MESSAGE):
    sock.sendall(message)
    echoed = recv_exact(sock, len(message))
    if echoed != message:
        raise ValueError("echo differs from what was sent")


def measure_round_trips(host, port, count, warmup, timeout, deadline):
    with connect(host, port, timeout) as sock:
        for _ in range(warmup):
            round_trip(sock)
        samples = []
        for i in range(count):
            if i % 100 == 0 and time.monotonic() > deadline:
                raise Deadline(f"deadline passed after {i} round trips")
            start = time.perf_counter_ns()
            round_trip(sock)
            samples.append((time.perf_counter_ns() - start) / 1000.0)
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(round(0.99 * (len(samples) - 1))))]
    return {"rt_median_us": round(statistics.median(samples), 1), "rt_p99_us": round(p99, 1),
            "rt_min_us": round(samples[0], 1), "rt_count": warmup + count}


def measure_bulk(host, port, mib, timeout, deadline):
    total = mib * 1024 * 1024
    block = bytes((i * 7 + 3) & 0xFF for i in range(65536))  # not periodic in 64 bytes
    sender_error = []
    with connect(host, port, timeout) as sock:
        def send():
            try:
                sent = 0
                while sent < total:
                    n = min(len(block), total - sent)
                    sock.sendall(block[:n])
                    sent += n
            except OSError as error:  # the reader sees the consequence; keep the cause
                sender_error.append(repr(error))

        received = bytearray()
        start = time.perf_counter()
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        while len(received) < total:
            if time.monotonic() > deadline:
                raise Deadline(f"deadline passed after {len(received)} of {total} bytes echoed")
            chunk = sock.recv(min(262144, total - len(received)))
            if not chunk:
                raise ConnectionError(f"closed after {len(received)} of {total} bytes echoed"
                                      + (f" (sender: {sender_error[0]})" if sender_error else ""))
            received += chunk
        elapsed = time.perf_counter() - start
        sender.join(timeout)
    if sender_error:
        raise ConnectionError("sender: " + sender_error[0])
    expected = block * (total // len(block)) + block[: total % len(block)]
    if received != expected:
        first = next(i for i in range(total) if received[i] != expected[i])
        raise ValueError(f"echoed bytes differ from those sent, first at offset {first}")
    return {"bulk_mib_s": round(mib / elapsed, 2), "bulk_s": round(elapsed, 3), "bulk_mib": mib}


def measure_concurrent(host, port, connections, round_trips, timeout, deadline):
    # Setup, one connection at a time, each confirmed by one round trip (so the guest has
    # accepted it). Not in a burst: QEMU's hostfwd socket listens with a backlog of 1
    # (`ss -ltn` shows it), so a burst of connects overflows the host kernel's accept
    # queue and those connections wait for the host's SYN/SYN-ACK retransmissions
    # (1 s, 3 s, 7 s, 15 s...): that would time the host, not the guest.
    socks = []
    try:
        start = time.perf_counter()
        for index in range(connections):
            if time.monotonic() > deadline:
                raise Deadline(f"deadline passed after {index} connections")
            sock = connect(host, port, timeout)
            socks.append(sock)
            round_trip(sock, bytes((index + i) & 0xFF for i in range(64)))
        setup = time.perf_counter() - start

        barrier = threading.Barrier(connections + 1)
        errors = []
        lock = threading.Lock()

        def client(index, sock):
            # Distinct bytes per connection: a mixed-up echo shows as an error.
            message = bytes((index + i) & 0xFF for i in range(64))
            try:
                barrier.wait(timeout)
                for _ in range(round_trips):
                    round_trip(sock, message)
            except Exception as error:  # collected and reported, not raised in a thread
                with lock:
                    errors.append(f"connection {index}: {error!r}")

        threads = [threading.Thread(target=client, args=(i, sock), daemon=True)
                   for i, sock in enumerate(socks)]
        for thread in threads:
            thread.start()
        barrier.wait(timeout)
        start = time.perf_counter()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        elapsed = time.perf_counter() - start
        stuck = sum(thread.is_alive() for thread in threads)
        if stuck:
            errors.append(f"{stuck} of {connections} connections still running at the deadline")
        if errors:
            raise ConnectionError(f"{len(errors)} failed: " + "; ".join(errors[:3]))
    finally:
        for sock in socks:
            sock.close()
    return {"concurrent_s": round(elapsed, 3), "setup_s": round(setup, 3),
            "conc_count": connections * (round_trips + 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ping", action="store_true", help="one round trip, then exit")
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--bulk-mib", type=int, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--conn-round-trips", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=20.0, help="per socket operation, s")
    parser.add_argument("--deadline", type=float, default=240.0, help="whole run, s")
    parser.add_argument("--phases", default="round_trip,bulk,concurrent")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("client: loopback only (the guests are reached through QEMU's hostfwd)")

    if args.ping:
        try:
            with connect(args.host, args.port, args.timeout) as sock:
                round_trip(sock)
        except Exception as error:
            print(f"client: ping failed: {error!r}", file=sys.stderr)
            sys.exit(1)
        return

    deadline = time.monotonic() + args.deadline
    result, errors = {}, {}
    phases = [
        ("round_trip", lambda: measure_round_trips(
            args.host, args.port, args.round_trips, args.warmup, args.timeout, deadline),
         ["rt_median_us", "rt_p99_us", "rt_min_us", "rt_count"]),
        ("bulk", lambda: measure_bulk(args.host, args.port, args.bulk_mib, args.timeout,
                                      deadline), ["bulk_mib_s", "bulk_s", "bulk_mib"]),
        ("concurrent", lambda: measure_concurrent(
            args.host, args.port, args.connections, args.conn_round_trips, args.timeout,
            deadline), ["concurrent_s", "setup_s", "conc_count"]),
    ]
    wanted = args.phases.split(",")
    unknown = set(wanted) - {name for name, _, _ in phases}
    if unknown:
        sys.exit(f"client: unknown phase(s) {', '.join(sorted(unknown))}")
    for name, run, keys in phases:
        if name not in wanted:
            continue
        try:
            result.update(run())
        except Exception as error:
            errors[name] = repr(error)
            result.update({key: None for key in keys})
    result["errors"] = errors
    print(json.dumps(result))


if __name__ == "__main__":
    main()
