#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""mpbench_peer.py - the Python side of `mpbench --compare python`.

Measures the figures mpbench names on its command line with Python's multiprocessing, the same
way mpbench measures mproc (same pinning: the parent on CPU 0, the peer on CPU 0 for "same" and
CPU 1 for "cross"; the same sizes; reps of about the same length), and prints one line per figure:

    name median min max

Figures it has no counterpart for (raw.*, atomic.* - Python has no atomic add) are skipped.
Progress goes to stderr. Usage: mpbench_peer.py [--reps N] [--quick] [--tiny] NAME...
"""
import ctypes
import multiprocessing as mp
import os
import signal
import statistics
import sys
import time

CTX = mp.get_context("fork")
SIZES = {"64": 64, "4k": 4096, "1m": 1 << 20}
ARGS = {"reps": 5, "quick": False, "tiny": False}


def pin(cpu):
    try:
        os.sched_setaffinity(0, {cpu % os.cpu_count()})
    except OSError:
        pass


def peer_cpu(place):
    return 1 if place == "cross" else 0


def rep_seconds():
    return 0.002 if ARGS["tiny"] else 0.05 if ARGS["quick"] else 0.2


def rtt_count(size):
    n = 20 if ARGS["tiny"] else 500 if ARGS["quick"] else 3000
    if size >= 1 << 20:
        n //= 20
    elif size >= 4096:
        n //= 2
    return max(n, 5)


def quantile(v, q):
    s = sorted(v)
    pos = q * (len(s) - 1)
    lo = int(pos)
    return s[lo] + (pos - lo) * (s[lo + 1] - s[lo]) if lo + 1 < len(s) else s[lo]


def emit(name, values):
    print(f"{name} {statistics.median(values):.6g} {min(values):.6g} {max(values):.6g}", flush=True)


def calibrated(run, per_s):
    """Runs run(n) -> seconds: grows n until a rep lasts long enough, then takes ARGS reps and
    returns per_s(n, t) for each."""
    n, target = 16, rep_seconds()
    while True:
        t = run(n)
        if t >= target / 4 or n > 50_000_000:
            break
        n = max(n * 2, int(n * (target / 2) / max(t, 1e-9)))
    n = max(4, int(n * target / max(t, 1e-9)))
    return [per_s(n, run(n)) for _ in range(ARGS["reps"])]


# ---- channels: (make, parent send/recv, child send/recv) ------------------------------------


class PipeChan:
    def __init__(self, size):
        self.a, self.b = CTX.Pipe(duplex=True)

    def send(self, side, data):
        (self.a if side == 0 else self.b).send_bytes(data)

    def recv(self, side):
        return (self.a if side == 0 else self.b).recv_bytes()


class QueueChan:
    def __init__(self, size):
        self.q = [CTX.Queue(), CTX.Queue()]

    def send(self, side, data):
        self.q[side].put(data)

    def recv(self, side):
        return self.q[1 - side].get()


class ArrayChan:
    """A synchronized Array per direction, handed over with a raw Value flag (as mpbench)."""

    def __init__(self, size):
        self.size = size
        self.data = [CTX.Array("B", size), CTX.Array("B", size)]
        self.full = [CTX.Value("i", 0, lock=False), CTX.Value("i", 0, lock=False)]

    @staticmethod
    def wait(flag, want):
        i = 0
        while flag.value != want:
            i += 1
            if i > 64:
                os.sched_yield()

    def send(self, side, data):
        self.wait(self.full[side], 0)
        arr = self.data[side]
        with arr.get_lock():
            ctypes.memmove(arr.get_obj(), data, len(data))
        self.full[side].value = 1

    def recv(self, side):
        self.wait(self.full[1 - side], 1)
        arr = self.data[1 - side]
        with arr.get_lock():
            out = bytes(arr.get_obj())
        self.full[1 - side].value = 0
        return out


CHANNELS = {"pipe": PipeChan, "queue": QueueChan, "array": ArrayChan}


def echo_child(ch, cpu, total):
    pin(cpu)
    for _ in range(total):
        ch.send(1, ch.recv(1))


def rtt(name, chan_cls, size, place):
    n, reps = rtt_count(size), ARGS["reps"]
    warm = n // 5 + 1
    ch = chan_cls(size)
    pin(0)
    p = CTX.Process(target=echo_child, args=(ch, peer_cpu(place), warm + reps * n), daemon=True)
    p.start()
    msg = b"x" * size
    for _ in range(warm):
        ch.send(0, msg)
        ch.recv(0)
    med, p99 = [], []
    for _ in range(reps):
        lat = []
        for _ in range(n):
            t0 = time.perf_counter()
            ch.send(0, msg)
            ch.recv(0)
            lat.append((time.perf_counter() - t0) * 1e6)
        med.append(statistics.median(lat))
        p99.append(quantile(lat, 0.99))
    p.join(30)
    emit(name, med)
    emit(name + ".p99", p99)


def sink_child(ch, cpu, ctl):
    pin(cpu)
    while True:
        n = ctl.recv()
        if n == 0:
            return
        for _ in range(n):
            ch.recv(1)
        ctl.send(n)


def tput(name, chan_cls, size, place):
    ch = chan_cls(size)
    ctl_a, ctl_b = CTX.Pipe()
    pin(0)
    p = CTX.Process(target=sink_child, args=(ch, peer_cpu(place), ctl_b), daemon=True)
    p.start()
    msg = b"x" * size

    def run(n):
        t0 = time.perf_counter()
        ctl_a.send(n)
        for _ in range(n):
            ch.send(0, msg)
        ctl_a.recv()
        return time.perf_counter() - t0

    vals = calibrated(run, lambda n, t: n / t if size < 4096 else n * size / t / 1e6)
    ctl_a.send(0)
    p.join(30)
    emit(name, vals)


# ---- counters, lock -------------------------------------------------------------------------


def incr_child(v, cpu, ctl):
    pin(cpu)
    while True:
        n = ctl.recv()
        if n == 0:
            return
        for _ in range(n):
            with v.get_lock():
                v.value += 1
        ctl.send(n)


def lock_incr(name, place):
    v = CTX.Value("q", 0)
    ctl_a, ctl_b = CTX.Pipe()
    pin(0)
    p = CTX.Process(target=incr_child, args=(v, peer_cpu(place), ctl_b), daemon=True)
    p.start()

    def run(n):
        v.value = 0
        t0 = time.perf_counter()
        ctl_a.send(n)
        for _ in range(n):
            with v.get_lock():
                v.value += 1
        ctl_a.recv()
        t = time.perf_counter() - t0
        assert v.value == 2 * n, "lost increments"
        return t

    vals = calibrated(run, lambda n, t: 2 * n / t)
    ctl_a.send(0)
    p.join(30)
    emit(name, vals)


def lock_loop(name, recursive):
    lock = CTX.RLock() if recursive else CTX.Lock()
    pin(0)

    def run(n):
        acq, rel = lock.acquire, lock.release
        t0 = time.perf_counter()
        for _ in range(n):
            acq()
            rel()
        return time.perf_counter() - t0

    emit(name, calibrated(run, lambda n, t: t / n * 1e9))


# ---- signals, processes, pool ------------------------------------------------------------------


def signal_child(cpu, total):
    pin(cpu)
    parent = os.getppid()
    for _ in range(total):
        signal.sigwait([signal.SIGUSR1])
        os.kill(parent, signal.SIGUSR1)


def signal_rtt(name, place):
    n, reps = rtt_count(64), ARGS["reps"]
    warm = n // 5 + 1
    old = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    pin(0)
    p = CTX.Process(target=signal_child, args=(peer_cpu(place), warm + reps * n), daemon=True)
    p.start()
    for _ in range(warm):
        os.kill(p.pid, signal.SIGUSR1)
        signal.sigwait([signal.SIGUSR1])
    med, p99 = [], []
    for _ in range(reps):
        lat = []
        for _ in range(n):
            t0 = time.perf_counter()
            os.kill(p.pid, signal.SIGUSR1)
            signal.sigwait([signal.SIGUSR1])
            lat.append((time.perf_counter() - t0) * 1e6)
        med.append(statistics.median(lat))
        p99.append(quantile(lat, 0.99))
    p.join(30)
    signal.pthread_sigmask(signal.SIG_SETMASK, old)
    emit(name, med)
    emit(name + ".p99", p99)


def nothing():
    pass


def events(name, fn, per_rep):
    pin(0)
    fn()
    med, p99 = [], []
    for _ in range(ARGS["reps"]):
        lat = []
        for _ in range(per_rep):
            t0 = time.perf_counter()
            fn()
            lat.append((time.perf_counter() - t0) * 1e6)
        med.append(statistics.median(lat))
        p99.append(quantile(lat, 0.99))
    emit(name, med)
    emit(name + ".p99", p99)


def process_start(name, method="fork"):
    ctx = mp.get_context(method)

    def once():
        p = ctx.Process(target=nothing)
        p.start()
        p.join()

    # spawn costs an interpreter start per process (tens of ms): fewer of them.
    n = (5, 40, 300) if method != "spawn" else (5, 10, 40)
    events(name, once, n[0] if ARGS["tiny"] else n[1] if ARGS["quick"] else n[2])


def echo(x):
    return x


def pool_apply(name, place):
    with CTX.Pool(1, initializer=pin, initargs=(peer_cpu(place),)) as pool:
        events(name, lambda: pool.apply(echo, (42,)), rtt_count(64))


def pool_map(name, chunksize, batch):
    pin(0)
    with CTX.Pool(2) as pool:
        items = list(range(batch))

        def run(n):
            t0 = time.perf_counter()
            done = 0
            while done < n:
                k = min(batch, n - done)
                pool.map(echo, items[:k], chunksize) if chunksize else pool.map(echo, items[:k])
                done += k
            return time.perf_counter() - t0

        emit(name, calibrated(run, lambda n, t: n / t))


# ---- dispatch -------------------------------------------------------------------------------


def measure(name):
    parts = name.split(".")
    if name.endswith(".p99"):
        return  # printed together with its figure
    kind = parts[0]
    if kind in CHANNELS and len(parts) == 3:
        what, place = parts[1], parts[2]
        for tag, size in SIZES.items():
            if what == "rtt" + tag:
                return rtt(name, CHANNELS[kind], size, place)
            if what == "tput" + tag:
                return tput(name, CHANNELS[kind], size, place)
    if kind == "value" and parts[1] == "lock_incr":
        return lock_incr(name, parts[2])
    if name == "lock.uncontended":
        return lock_loop(name, False)
    if name == "lock.rlock_uncontended":
        return lock_loop(name, True)
    if kind == "signal" and parts[1] == "rtt":
        return signal_rtt(name, parts[2])
    if name == "process.start":
        return process_start(name)
    if name in ("process.start.spawn", "process.start.forkserver"):
        return process_start(name, parts[2])
    if name.startswith("pool.apply.rtt."):
        return pool_apply(name, parts[3])
    if name == "pool.map":
        return pool_map(name, 0, 100000)
    if name == "pool.map_cs1":
        return pool_map(name, 1, 2000)


def main(argv):
    names = []
    it = iter(argv)
    for a in it:
        if a == "--reps":
            ARGS["reps"] = int(next(it))
        elif a == "--quick":
            ARGS["quick"] = True
        elif a == "--tiny":
            ARGS["tiny"] = True
        elif a.startswith("-"):
            print(f"mpbench_peer.py: unknown option {a}", file=sys.stderr)
            return 2
        else:
            names.append(a)
    for name in names:
        t0 = time.perf_counter()
        try:
            measure(name)
        except Exception as e:  # one failed figure must not lose the others
            print(f"mpbench_peer.py: {name}: {e!r}", file=sys.stderr)
            continue
        if not ARGS["quick"] and not ARGS["tiny"]:
            print(f"mpbench_peer.py: {name} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
