#!/usr/bin/env python3
"""The vsock bench's client: measures the vsock echo server through the host end of a
hybrid-vsock backend (a Unix socket; `CONNECT PORT\\n`, then the backend's `OK` line).

usage: client.py SOCKET [--port 5555] [--round-trips N] [--warmup N] [--bulk-mib N]

Prints one JSON object:
  rt_median_us, rt_p99_us   round trip of a 64-byte message, N round trips after a warm-up
  bulk_mib_s                N MiB echoed in 32 KiB rounds (each written whole, then its
                            echo read whole): MiB/s of payload each way. Rounds rather
                            than full duplex because vhost-device-vsock 0.3.0 deadlocks on
                            a full-duplex stream (qemu/tests/vsock.rs). Bytes are checked.
Every socket operation has a timeout: the client never waits forever on a wedged guest.
"""

import argparse
import json
import socket
import statistics
import time

MESSAGE = bytes(range(64))
ROUND = 32 << 10


def connect(path, port):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(path)
    sock.sendall(b"CONNECT %d\n" % port)
    line = b""
    while not line.endswith(b"\n"):
        byte = sock.recv(1)
        if not byte:
            raise RuntimeError("the backend closed before OK")
        line += byte
    if not line.startswith(b"OK"):
        raise RuntimeError("the backend answered %r" % line)
    return sock


def read_exact(sock, count):
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise RuntimeError("end of stream after %d of %d bytes" % (len(data), count))
        data.extend(chunk)
    return bytes(data)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("socket")
    parser.add_argument("--port", type=int, default=5555)
    parser.add_argument("--round-trips", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--bulk-mib", type=int, default=32)
    args = parser.parse_args()

    sock = connect(args.socket, args.port)
    samples = []
    for index in range(args.warmup + args.round_trips):
        started = time.perf_counter()
        sock.sendall(MESSAGE)
        if read_exact(sock, len(MESSAGE)) != MESSAGE:
            raise RuntimeError("round trip %d: wrong bytes" % index)
        if index >= args.warmup:
            samples.append((time.perf_counter() - started) * 1e6)
    sock.close()
    samples.sort()

    sock = connect(args.socket, args.port)
    data = bytes((i * 7 + i // 4096) & 0xFF for i in range(ROUND))
    total = args.bulk_mib << 20
    started = time.perf_counter()
    for offset in range(0, total, ROUND):
        sock.sendall(data)
        if read_exact(sock, ROUND) != data:
            raise RuntimeError("bulk: wrong bytes at offset %d" % offset)
    elapsed = time.perf_counter() - started
    sock.close()

    print(json.dumps({
        "rt_median_us": round(statistics.median(samples), 1),
        "rt_p99_us": round(samples[int(len(samples) * 0.99) - 1], 1),
        "rt_count": args.round_trips,
        "bulk_mib": args.bulk_mib,
        "bulk_mib_s": round(args.bulk_mib / elapsed, 1),
    }))


if __name__ == "__main__":
    main()
