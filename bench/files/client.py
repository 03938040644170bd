#!/usr/bin/env python3
"""The files bench's client: against http://127.0.0.1:PORT, reads /big.bin whole (MiB/s)
and /small/N.bin (4 KiB files) over keep-alive connections (requests/s), one connection,
then CONNECTIONS at once, then CONNECTIONS again opened before the clock starts (the
requests alone, without the connections' set-up). Checks every body's length (and big.bin's bytes against
the host's copy). Prints one `bench: NAME: VALUE UNIT` line per measurement.

usage: client.py PORT BIG_FILE SMALL_COUNT [REQUESTS] [CONNECTIONS]
"""

import hashlib
import http.client
import sys
import threading
import time


def fetch(connection, path):
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"bench: GET {path}: status {response.status}")
    return body


def small_requests(port, count, requests, offset, totals, index, barrier=None):
    """`requests` GETs of 4 KiB files on one keep-alive connection; with a barrier, the
    connection is opened (and used once) first and the requests wait for the barrier."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    if barrier is not None:
        fetch(connection, f"/small/{offset % count}.bin")
        barrier.wait()
    for request in range(requests):
        body = fetch(connection, f"/small/{(request + offset) % count}.bin")
        if len(body) != 4096:
            raise SystemExit(f"bench: a small file came back with {len(body)} bytes")
    connection.close()
    totals[index] = requests


def concurrent(port, count, requests, connections, warm, label):
    """Small-file requests over `connections` at once (opened before the clock when
    `warm`); prints one bench line."""
    per = requests // connections
    totals = [0] * connections
    barrier = threading.Barrier(connections + 1) if warm else None
    threads = [threading.Thread(target=small_requests,
                                args=(port, count, per, i * 7, totals, i, barrier))
               for i in range(connections)]
    if not warm:
        started = time.monotonic()
    for thread in threads:
        thread.start()
    if warm:
        barrier.wait()
        started = time.monotonic()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    done = sum(totals)
    if done != per * connections:
        raise SystemExit("bench: a connection failed")
    print(f"bench: 4 KiB files, {label}: {done} in {elapsed:.2f} s: "
          f"{done / elapsed:.1f} requests/s", flush=True)


def main(argv):
    port, big, count = int(argv[0]), argv[1], int(argv[2])
    requests = int(argv[3]) if len(argv) > 3 else 400
    connections = int(argv[4]) if len(argv) > 4 else 8
    expected = hashlib.sha256(open(big, "rb").read()).hexdigest()

    # Warm-up: a first request through each guest's path (page cache, lookups).
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    fetch(connection, "/small/0.bin")

    started = time.monotonic()
    body = fetch(connection, "/big.bin")
    elapsed = time.monotonic() - started
    connection.close()
    if hashlib.sha256(body).hexdigest() != expected:
        raise SystemExit("bench: big.bin came back different")
    print(f"bench: big file: {len(body) >> 20} MiB in {elapsed:.2f} s: "
          f"{len(body) / elapsed / 1048576:.2f} MiB/s", flush=True)

    started = time.monotonic()
    small_requests(port, count, requests, 0, [0], 0)
    elapsed = time.monotonic() - started
    print(f"bench: 4 KiB files, 1 connection: {requests} in {elapsed:.2f} s: "
          f"{requests / elapsed:.1f} requests/s", flush=True)

    concurrent(port, count, requests, connections, False, f"{connections} connections")
    # The same with the connections set up first: the requests alone, without the
    # guest's TCP handshakes (a burst of SYNs) in the time.
    concurrent(port, count, requests, connections, True, f"{connections} warm connections")


if __name__ == "__main__":
    main(sys.argv[1:])
