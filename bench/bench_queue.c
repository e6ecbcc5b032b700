/* SPDX-License-Identifier: MIT */
/* bench_queue.c - mproc's queue against Python's multiprocessing.Queue, raw pipes and memcpy, in
 * the same run.
 *
 * Figures (medians of >= 5 runs):
 *   queue.tput64.msgs_per_s          64-byte messages, producer on cpu 1, consumer on cpu 0
 *   queue.tput64.python.msgs_per_s   the same with Python's multiprocessing.Queue
 *   queue.tput64.ratio_python        mproc / Python, median of per-pair ratios (target >= 50)
 *   queue.tput64.ring.msgs_per_s     the same over a plain lock-free SPSC ring of 64-byte slots in
 *                                    shared memory (spinning both ends): the hardware's reference
 *   queue.tput64.ratio_ring          mproc / ring, median of per-pair ratios (target >= 0.6)
 *   queue.tput64.batch.msgs_per_s    the same as queue.tput64 with mp_queue_put_many and
 *                                    mp_queue_get_many, batches of 64 messages
 *   queue.tput64.batch.ratio_ring    batch / ring, median of per-pair ratios
 *   queue.tput64.mpmc4.msgs_per_s    4 producers and 4 consumers on one queue (unpinned)
 *   queue.tput64.mpmc4.python.msgs_per_s, queue.tput64.mpmc4.ratio_python   the same with Python
 *   queue.rtt64.{same,cross}.us      ping-pong of 64 bytes over two queues, one CPU / two CPUs
 *   pipe.raw.rtt64.{same,cross}.us   the same over two raw pipe2() pipes, pinned the same way
 *   queue.rtt64.{same,cross}.ratio_pipe   (targets <= 1.5 same, <= 0.05 cross)
 *   queue.tput1m.gb_per_s            1 MiB messages through the default 1 MiB ring (streamed)
 *   memcpy.64m.gb_per_s              memcpy of 64 MiB, this run
 *   queue.tput1m.ratio_memcpy        (target >= 0.4)
 * Every throughput series alternates with its reference run by run (see main).
 * BENCH_QUICK shrinks every loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "mproc/error.h"
#include "mproc/queue.h"

#define MIB ((size_t)1 << 20)

static void die(const char *what, int rc)
{
    bench_note("bench_queue: %s: %s", what, mp_strerror(rc));
    exit(1);
}

static int other_cpu(void)
{
    return sysconf(_SC_NPROCESSORS_ONLN) >= 2 ? 1 : 0;
}

/* A child on the other CPU puts count messages of size bytes; this process on cpu 0 gets them.
 * The clock starts at the first message. Returns messages per second. */
static double tput(size_t size, long count)
{
    mp_queue *q;
    int rc = mp_queue_new(&q, 0, 0);
    if (rc < 0) die("mp_queue_new", rc);
    char *buf = malloc(size);
    memset(buf, 7, size);
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(other_cpu());
        for (long i = 0; i < count; i++)
            if (mp_queue_put(q, buf, size, 30) < 0) _exit(2);
        _exit(0);
    }
    bench_pin(0);
    size_t n;
    if ((rc = mp_queue_get(q, buf, size, &n, 30)) < 0) die("get", rc);
    double t = bench_now();
    for (long i = 1; i < count; i++)
        if ((rc = mp_queue_get(q, buf, size, &n, 30)) < 0) die("get", rc);
    t = bench_now() - t;
    if (bench_reap(pid) != 0) die("producer", -EIO);
    free(buf);
    mp_queue_free(&q);
    return (double)(count - 1) / t;
}

/* tput with batches: the producer puts BATCH messages per mp_queue_put_many, the consumer takes
 * up to BATCH per mp_queue_get_many. Same pinning and clock as tput. */
#define BATCH 64
static double tput_batch(long count)
{
    mp_queue *q;
    int rc = mp_queue_new(&q, 0, 0);
    if (rc < 0) die("mp_queue_new", rc);
    static unsigned char buf[BATCH][64];
    struct iovec v[BATCH];
    size_t lens[BATCH];
    for (int i = 0; i < BATCH; i++)
        v[i] = (struct iovec){buf[i], 64};
    memset(buf, 7, sizeof buf);
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(other_cpu());
        for (long i = 0; i < count;) {
            long want = count - i < BATCH ? count - i : BATCH;
            ssize_t k = mp_queue_put_many(q, v, (size_t)want, 30);
            if (k <= 0) _exit(2);
            i += k;
        }
        _exit(0);
    }
    bench_pin(0);
    ssize_t k = mp_queue_get_many(q, v, BATCH, lens, 30);
    if (k < 0) die("get_many", (int)k);
    long got = k, first = k;
    double t = bench_now();
    while (got < count) {
        if ((k = mp_queue_get_many(q, v, BATCH, lens, 30)) < 0) die("get_many", (int)k);
        got += k;
    }
    t = bench_now() - t;
    if (bench_reap(pid) != 0) die("producer", -EIO);
    mp_queue_free(&q);
    return (double)(count - first) / t;
}

/* The reference for queue.tput64.ratio_ring: the plainest lock-free single-producer
 * single-consumer ring in shared memory, 1 MiB of 64-byte slots (the queue's default ring size),
 * each index on its own cache-line pair, each side caching the other's index and re-reading it
 * only when the ring looks full or empty, both sides spinning. No crash safety, no blocking, no
 * variable sizes: what the hardware does with 64-byte messages between two CPUs. */
#define RING_SLOTS 16384u

/* One pause; every 4096th (~100 us of waiting) gives the CPU away instead: on a machine shared
 * with other work the other side may have been preempted, and spinning until the end of its
 * time slice would measure the scheduler, not the ring. A quiet machine never waits that long. */
static inline void relax(unsigned *spins)
{
    if (++*spins % 4096 == 0) {
        sched_yield();
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

struct spsc {
    alignas(128) _Atomic uint64_t head;
    alignas(128) _Atomic uint64_t tail;
    alignas(128) unsigned char slot[RING_SLOTS][64];
};

static double ring_tput(long count)
{
    struct spsc *r =
        mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) die("mmap", -errno);
    unsigned char buf[64];
    memset(buf, 7, sizeof buf);
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(other_cpu());
        uint64_t t = 0, head = 0;
        unsigned spins = 0;
        for (long i = 0; i < count; i++, t++) {
            while (t - head == RING_SLOTS) {
                head = atomic_load_explicit(&r->head, memory_order_acquire);
                if (t - head == RING_SLOTS) relax(&spins);
            }
            buf[0] = (unsigned char)i;
            memcpy(r->slot[t % RING_SLOTS], buf, 64);
            atomic_store_explicit(&r->tail, t + 1, memory_order_release);
        }
        _exit(0);
    }
    bench_pin(0);
    uint64_t h = 0, tail = 0;
    unsigned spins = 0;
    double t0 = 0;
    unsigned sum = 0;
    for (long i = 0; i < count; i++, h++) {
        while (h == tail) {
            tail = atomic_load_explicit(&r->tail, memory_order_acquire);
            if (h == tail) relax(&spins);
        }
        memcpy(buf, r->slot[h % RING_SLOTS], 64);
        sum += buf[0];
        atomic_store_explicit(&r->head, h + 1, memory_order_release);
        if (i == 0) t0 = bench_now(); /* the clock starts at the first message, as in tput */
    }
    double t = bench_now() - t0;
    if (bench_reap(pid) != 0) die("ring producer", -EIO);
    munmap(r, sizeof *r);
    if (sum == 1) bench_note("."); /* keeps the copies out of the optimiser's reach */
    return (double)(count - 1) / t;
}

/* queue.tput64.mpmc4: NPROD producers put count/NPROD 64-byte messages each, NCONS consumers get
 * until the queue is closed (after every producer has finished). Nobody is pinned: 8 processes
 * share the machine's CPUs as the scheduler decides, as in Python's peer. The clock runs from the
 * start signal (all children are waiting on a pipe) to the last message any consumer received. */
#define NPROD 4
#define NCONS 4
struct mpmc_shared {
    _Atomic uint64_t got;
    double last[NCONS];
};

static void unpin(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    for (long i = 0; i < n && i < CPU_SETSIZE; i++)
        CPU_SET((int)i, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static double mpmc_tput(long count)
{
    unpin(); /* the other figures pinned this process; the children inherit its mask */
    mp_queue *q;
    int rc = mp_queue_new(&q, 0, 0);
    if (rc < 0) die("mp_queue_new", rc);
    struct mpmc_shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) die("mmap", -errno);
    int go[2];
    if (pipe2(go, O_CLOEXEC) < 0) die("pipe2", -errno);
    long each = count / NPROD;
    pid_t pids[NPROD + NCONS];
    for (int i = 0; i < NPROD + NCONS; i++) {
        pids[i] = fork();
        if (pids[i] < 0) die("fork", -errno);
        if (pids[i] > 0) continue;
        close(go[1]);
        char c;
        if (read(go[0], &c, 1) != 0) _exit(3);
        char buf[64];
        memset(buf, 7, sizeof buf);
        if (i < NPROD) {
            for (long k = 0; k < each; k++)
                if (mp_queue_put(q, buf, sizeof buf, 30) < 0) _exit(2);
            _exit(0);
        }
        size_t n;
        uint64_t mine = 0;
        double last = 0;
        for (;;) {
            rc = mp_queue_get(q, buf, sizeof buf, &n, 30);
            if (rc == MP_ECLOSED) break;
            if (rc < 0 || n != 64) _exit(2);
            mine++;
            last = bench_now();
        }
        atomic_fetch_add(&sh->got, mine);
        sh->last[i - NPROD] = last;
        _exit(0);
    }
    close(go[0]);
    double t0 = bench_now();
    close(go[1]); /* every child's read returns 0: go */
    for (int i = 0; i < NPROD; i++)
        if (bench_reap(pids[i]) != 0) die("mpmc producer", -EIO);
    mp_queue_close(q);
    for (int i = NPROD; i < NPROD + NCONS; i++)
        if (bench_reap(pids[i]) != 0) die("mpmc consumer", -EIO);
    double end = 0;
    for (int i = 0; i < NCONS; i++)
        if (sh->last[i] > end) end = sh->last[i];
    uint64_t got = atomic_load(&sh->got);
    munmap(sh, sizeof *sh);
    mp_queue_free(&q);
    if (got != (uint64_t)(each * NPROD)) die("mpmc: messages lost", -EIO);
    return (double)got / (end - t0);
}

/* Ping-pong of 64 bytes: the child echoes on cpu `cpu`, this process on cpu 0. Returns us per
 * round trip. */
static double rtt_queue(int cpu, long rounds)
{
    mp_queue *ping, *pong;
    int rc = mp_queue_new(&ping, 0, 0);
    if (rc == 0) rc = mp_queue_new(&pong, 0, 0);
    if (rc < 0) die("mp_queue_new", rc);
    char buf[64] = {0};
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(cpu);
        size_t n;
        for (long i = 0; i < rounds + 1; i++) {
            if (mp_queue_get(ping, buf, sizeof buf, &n, 30) < 0) _exit(2);
            if (mp_queue_put(pong, buf, n, 30) < 0) _exit(2);
        }
        _exit(0);
    }
    bench_pin(0);
    size_t n;
    double t = 0;
    for (long i = 0; i < rounds + 1; i++) {
        if (i == 1) t = bench_now(); /* the first round warms up */
        if ((rc = mp_queue_put(ping, buf, sizeof buf, 30)) < 0) die("put", rc);
        if ((rc = mp_queue_get(pong, buf, sizeof buf, &n, 30)) < 0) die("get", rc);
    }
    t = bench_now() - t;
    if (bench_reap(pid) != 0) die("echo", -EIO);
    mp_queue_free(&ping);
    mp_queue_free(&pong);
    return t / (double)rounds * 1e6;
}

static double rtt_pipe(int cpu, long rounds)
{
    int a[2], b[2];
    if (pipe2(a, O_CLOEXEC) < 0 || pipe2(b, O_CLOEXEC) < 0) die("pipe2", -errno);
    char buf[64] = {0};
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(cpu);
        for (long i = 0; i < rounds + 1; i++) {
            if (read(a[0], buf, sizeof buf) != sizeof buf) _exit(2);
            if (write(b[1], buf, sizeof buf) != sizeof buf) _exit(2);
        }
        _exit(0);
    }
    bench_pin(0);
    double t = 0;
    for (long i = 0; i < rounds + 1; i++) {
        if (i == 1) t = bench_now();
        if (write(a[1], buf, sizeof buf) != sizeof buf) die("write", -errno);
        if (read(b[0], buf, sizeof buf) != sizeof buf) die("read", -errno);
    }
    t = bench_now() - t;
    if (bench_reap(pid) != 0) die("echo", -EIO);
    close(a[0]), close(a[1]), close(b[0]), close(b[1]);
    return t / (double)rounds * 1e6;
}

int main(void)
{
    int reps = bench_reps(5);
    int quick = bench_quick();
    double v[64], w[64];
    if (reps > 64) reps = 64;

    /* Every series alternates with its reference, run by run, and each ratio is the median of
     * the per-pair ratios: the load of a shared machine drifts too much between two separate
     * series (a quiet minute for one and a busy one for the other can halve a ratio). One rep:
     * mproc one-way, the ring, mproc in batches, Python's Queue (one-way, then 4+4), mproc 4+4. */
    long n64 = quick ? 200000 : 2000000, nmp = quick ? 200000 : 2000000;
    bench_note("bench_queue: 64-byte throughput, %ld messages: mproc, a plain SPSC ring, mproc in "
               "batches, Python's Queue, then %d producers and %d consumers (mproc %ld messages), "
               "alternating x %d",
               n64, NPROD, NCONS, nmp, reps);
    double vr[64], vratio[64], vb[64], vbratio[64], vpy[64], vpyr[64], vpm[64], vpmr[64];
    int npy = 0, npm = 0;
    char args[64];
    snprintf(args, sizeof args, "%ld 1 %ld", quick ? 20000L : 100000L, quick ? 20000L : 100000L);
    for (int r = 0; r < reps; r++) {
        v[r] = tput(64, n64);
        vr[r] = ring_tput(n64);
        vb[r] = tput_batch(n64);
        vratio[r] = v[r] / vr[r];
        vbratio[r] = vb[r] / vr[r];
        char keys[8][64];
        double vals[8];
        int np = bench_python("queue_peer.py", args, keys, vals, 8);
        w[r] = mpmc_tput(nmp);
        for (int i = 0; i < np; i++) {
            if (strcmp(keys[i], "tput64_msgs_per_s") == 0 && vals[i] > 0) {
                vpy[npy] = vals[i];
                vpyr[npy++] = v[r] / vals[i];
            }
            if (strcmp(keys[i], "mpmc4_msgs_per_s") == 0 && vals[i] > 0) {
                vpm[npm] = vals[i];
                vpmr[npm++] = w[r] / vals[i];
            }
        }
    }
    bench_emit("queue.tput64.msgs_per_s", bench_median(v, reps), "msgs/s");
    bench_emit("queue.tput64.ring.msgs_per_s", bench_median(vr, reps), "msgs/s");
    bench_emit("queue.tput64.ratio_ring", bench_median(vratio, reps), "x");
    bench_emit("queue.tput64.batch.msgs_per_s", bench_median(vb, reps), "msgs/s");
    bench_emit("queue.tput64.batch.ratio_ring", bench_median(vbratio, reps), "x");
    bench_emit("queue.tput64.mpmc4.msgs_per_s", bench_median(w, reps), "msgs/s");
    if (npy > 0) {
        bench_emit("queue.tput64.python.msgs_per_s", bench_median(vpy, npy), "msgs/s");
        bench_emit("queue.tput64.ratio_python", bench_median(vpyr, npy), "x");
    } else {
        bench_note("bench_queue: python3 peer failed; no Python figures");
    }
    if (npm > 0) {
        bench_emit("queue.tput64.mpmc4.python.msgs_per_s", bench_median(vpm, npm), "msgs/s");
        bench_emit("queue.tput64.mpmc4.ratio_python", bench_median(vpmr, npm), "x");
    }

    long rs = quick ? 2000 : 20000, rc = quick ? 300 : 2000, rq = quick ? 20000 : 100000;
    for (int r = 0; r < reps; r++)
        v[r] = rtt_queue(0, rs), w[r] = rtt_pipe(0, rs);
    double qs = bench_median(v, reps), ps = bench_median(w, reps);
    for (int r = 0; r < reps; r++)
        v[r] = rtt_queue(other_cpu(), rq), w[r] = rtt_pipe(other_cpu(), rc);
    double qc = bench_median(v, reps), pc = bench_median(w, reps);
    bench_emit("queue.rtt64.same.us", qs, "us");
    bench_emit("queue.rtt64.cross.us", qc, "us");
    bench_emit("pipe.raw.rtt64.same.us", ps, "us");
    bench_emit("pipe.raw.rtt64.cross.us", pc, "us");
    bench_emit("queue.rtt64.same.ratio_pipe", qs / ps, "x");
    bench_emit("queue.rtt64.cross.ratio_pipe", qc / pc, "x");

    long n1m = quick ? 100 : 1000;
    for (int r = 0; r < reps; r++)
        v[r] = tput(MIB, n1m) * (double)MIB / 1e9;
    double q1m = bench_median(v, reps);
    double mc = bench_memcpy_gb_per_s(64 * MIB, reps);
    bench_emit("queue.tput1m.gb_per_s", q1m, "GB/s");
    bench_emit("memcpy.64m.gb_per_s", mc, "GB/s");
    bench_emit("queue.tput1m.ratio_memcpy", q1m / mc, "x");
    return 0;
}
