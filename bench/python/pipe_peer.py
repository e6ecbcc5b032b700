# SPDX-License-Identifier: MIT
"""Python's side of bench_pipe: multiprocessing.Pipe() (duplex, the default) moving 64-byte
messages with send_bytes/recv_bytes, sender pinned to CPU 1 and receiver to CPU 0 like the C side.

    python3 pipe_peer.py COUNT REPS   ->  prints "tput64_msgs_per_s <median>"
"""
import multiprocessing as mp
import os
import statistics
import sys
import time


def pin(cpu):
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass


def sender(conn, count, cpu):
    pin(cpu)
    msg = b"x" * 64
    for _ in range(count):
        conn.send_bytes(msg)
    conn.close()


def one_run(count):
    r, w = mp.Pipe()
    cpu = 1 if os.cpu_count() and os.cpu_count() >= 2 else 0
    p = mp.Process(target=sender, args=(w, count, cpu))
    p.start()
    w.close()
    pin(0)
    r.recv_bytes()  # the clock starts at the first message, as in the C side
    t = time.perf_counter()
    for _ in range(count - 1):
        r.recv_bytes()
    t = time.perf_counter() - t
    p.join()
    r.close()
    return (count - 1) / t


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    mp.set_start_method("fork")
    runs = [one_run(count) for _ in range(reps)]
    print("tput64_msgs_per_s", statistics.median(runs))


if __name__ == "__main__":
    main()
