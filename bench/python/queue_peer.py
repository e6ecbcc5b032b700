# SPDX-License-Identifier: MIT
"""Python's side of bench_queue: multiprocessing.Queue moving 64-byte bytes objects.

    python3 queue_peer.py COUNT REPS [MPMC_COUNT]
        ->  "tput64_msgs_per_s <median>"   one producer pinned to CPU 1, the consumer on CPU 0,
                                           like the C side
            "mpmc4_msgs_per_s <median>"    (when MPMC_COUNT > 0) 4 producers and 4 consumers,
                                           unpinned, MPMC_COUNT messages in all, like the C side
"""
import multiprocessing as mp
import os
import statistics
import sys
import time

NPROD = 4
NCONS = 4


def pin(cpu):
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass


def unpin():
    try:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    except OSError:
        pass


def producer(q, count, cpu):
    pin(cpu)
    msg = b"x" * 64
    for _ in range(count):
        q.put(msg)
    q.close()
    q.join_thread()


def one_run(count):
    q = mp.Queue()
    cpu = 1 if os.cpu_count() and os.cpu_count() >= 2 else 0
    p = mp.Process(target=producer, args=(q, count, cpu))
    p.start()
    pin(0)
    q.get()  # the clock starts at the first message, as in the C side
    t = time.perf_counter()
    for _ in range(count - 1):
        q.get()
    t = time.perf_counter() - t
    p.join()
    return (count - 1) / t


def mpmc_producer(q, go, count):
    msg = b"x" * 64
    go.wait()
    for _ in range(count):
        q.put(msg)
    q.close()
    q.join_thread()


def mpmc_consumer(q, go, got, last, i):
    go.wait()
    n = 0
    t = 0.0
    while True:
        m = q.get()
        if m is None:
            break
        n += 1
        t = time.monotonic()
    with got.get_lock():
        got.value += n
    last[i] = t


def mpmc_run(count):
    """As the C side: everybody waits for a start signal; the clock runs from it to the last
    message any consumer received. Each consumer stops at a sentinel put after every producer
    has finished (the C side closes the queue instead)."""
    unpin()  # one_run pinned this process; the children inherit its mask
    q = mp.Queue()
    go = mp.Event()
    got = mp.Value("q", 0)
    last = mp.Array("d", NCONS)
    each = count // NPROD
    prods = [mp.Process(target=mpmc_producer, args=(q, go, each)) for _ in range(NPROD)]
    cons = [mp.Process(target=mpmc_consumer, args=(q, go, got, last, i)) for i in range(NCONS)]
    for p in prods + cons:
        p.start()
    time.sleep(0.05)  # let them reach the start line
    t0 = time.monotonic()
    go.set()
    for p in prods:
        p.join()
    for _ in cons:
        q.put(None)
    for p in cons:
        p.join()
    if got.value != each * NPROD:
        raise SystemExit("mpmc: messages lost")
    return got.value / (max(last) - t0)


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    mpmc = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    mp.set_start_method("fork")
    runs = [one_run(count) for _ in range(reps)]
    print("tput64_msgs_per_s", statistics.median(runs), flush=True)
    if mpmc > 0:
        runs = [mpmc_run(mpmc) for _ in range(reps)]
        print("mpmc4_msgs_per_s", statistics.median(runs))


if __name__ == "__main__":
    main()
