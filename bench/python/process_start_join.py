# SPDX-License-Identifier: MIT
# process_start_join.py N - Python's multiprocessing Process start+join, µs per process (median
# of 5 runs of N), the peer of bench_process.c. Prints "start_join_us VALUE".
import multiprocessing as mp
import os
import statistics
import sys
import time


def nothing():
    pass


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    mp.set_start_method("fork")
    try:
        os.sched_setaffinity(0, {0})
    except OSError:
        pass
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            p = mp.Process(target=nothing)
            p.start()
            p.join()
        runs.append((time.perf_counter() - t0) / n * 1e6)
    print("start_join_us", statistics.median(runs))


if __name__ == "__main__":
    main()
