# SPDX-License-Identifier: MIT
"""sync_peer.py - Python's multiprocessing Lock and Value, measured the way bench_sync.c measures
mproc's, in the same run.

    python3 sync_peer.py [--quick] [--reps N]

Prints "key value" lines (medians of the repetitions):
    lock_ns              Lock().acquire() + release(), uncontended, ns per pair
    value_lock_incr_per_s  2 processes doing `with v.get_lock(): v.value += 1`, increments/s
"""
import multiprocessing as mp
import statistics
import sys
import time


def lock_ns(n):
    lock = mp.Lock()
    acquire, release = lock.acquire, lock.release
    t0 = time.perf_counter()
    for _ in range(n):
        acquire()
        release()
    return (time.perf_counter() - t0) / n * 1e9


def incr(v, n, start):
    start.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def value_lock_incr_per_s(n):
    v = mp.Value("q", 0)
    start = mp.Event()
    procs = [mp.Process(target=incr, args=(v, n, start)) for _ in range(2)]
    for p in procs:
        p.start()
    time.sleep(0.05)  # let both reach start.wait()
    t0 = time.perf_counter()
    start.set()
    for p in procs:
        p.join()
    el = time.perf_counter() - t0
    assert v.value == 2 * n, v.value
    return 2 * n / el


def main():
    quick = "--quick" in sys.argv
    reps = 5
    if "--reps" in sys.argv:
        reps = max(5, int(sys.argv[sys.argv.index("--reps") + 1]))
    mp.set_start_method("fork")
    n_lock = 20000 if quick else 200000
    n_incr = 20000 if quick else 100000
    print("lock_ns", statistics.median(lock_ns(n_lock) for _ in range(reps)))
    print("value_lock_incr_per_s",
          statistics.median(value_lock_incr_per_s(n_incr) for _ in range(reps)))


if __name__ == "__main__":
    main()
