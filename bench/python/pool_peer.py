# SPDX-License-Identifier: MIT
"""pool_peer.py - Python's multiprocessing.Pool measured the way bench_pool.c measures mproc's pool.

Prints "key value" lines: map.tasks_per_s (trivial function, default chunksize), map_cs1.tasks_per_s
(chunksize=1), apply.rtt.cross.us / apply.rtt.same.us (one apply_async().get() round trip, caller
pinned to CPU 0, the single worker pinned to CPU 1 / CPU 0), worker.private_kib (an idle worker's
Private_Clean + Private_Dirty). Arguments: --quick, --reps N, --map N, --cs1 N, --rtt N.
"""
import multiprocessing as mp
import os
import statistics
import sys
import time


def ident(x):
    return x


def pin(cpu):
    os.sched_setaffinity(0, {cpu})


def worker_pid(_):
    return os.getpid()


def private_kib(pid):
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def arg(name, default):
    if name in sys.argv:
        return int(sys.argv[sys.argv.index(name) + 1])
    return default


def main():
    quick = "--quick" in sys.argv
    reps = arg("--reps", 5)
    n_map = arg("--map", 200_000 if quick else 1_000_000)
    n_cs1 = arg("--cs1", 4_000 if quick else 20_000)
    n_rtt = arg("--rtt", 300 if quick else 2_000)
    ctx = mp.get_context("fork")

    with ctx.Pool(1) as p:
        pid = p.apply(worker_pid, (0,))
        time.sleep(0.1)
        print("worker.private_kib", private_kib(pid), flush=True)

    with ctx.Pool(2) as p:
        p.map(ident, range(1000))
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            p.map(ident, range(n_map))
            ts.append(time.perf_counter() - t0)
        print("map.tasks_per_s", n_map / statistics.median(ts), flush=True)
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            p.map(ident, range(n_cs1), chunksize=1)
            ts.append(time.perf_counter() - t0)
        print("map_cs1.tasks_per_s", n_cs1 / statistics.median(ts), flush=True)

    if len(os.sched_getaffinity(0)) >= 2:
        saved = os.sched_getaffinity(0)
        pin(0)
        for label, cpu in (("cross", 1), ("same", 0)):
            with ctx.Pool(1, initializer=pin, initargs=(cpu,)) as p:
                for i in range(50):
                    p.apply_async(ident, (i,)).get()
                meds = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    for i in range(n_rtt):
                        p.apply_async(ident, (i,)).get()
                    meds.append((time.perf_counter() - t0) / n_rtt * 1e6)
                print(f"apply.rtt.{label}.us", statistics.median(meds), flush=True)
        os.sched_setaffinity(0, saved)


if __name__ == "__main__":
    main()
