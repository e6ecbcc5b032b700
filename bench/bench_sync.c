/* SPDX-License-Identifier: MIT */
/* bench_sync.c - Lock, Value and Array against a raw robust mutex and Python, in one run.
 *
 * Figures (medians of >= 5 runs):
 *   mutex.robust.uncontended.ns   raw process-shared robust pthread mutex, lock+unlock (best
 *                                 chunk of 32 per rep, interleaved with the next figure's)
 *   lock.uncontended.ns           mp_lock_acquire + mp_lock_release, one process
 *   lock.uncontended.ratio_mutex  the two above (target <= 1.5)
 *   lock.python.uncontended.ns    Python's multiprocessing Lock, for reference
 *   value.lock_incr.per_s         2 processes: lock; get; set(x+1); unlock (typed calls)
 *   value.lock_incr.python.per_s  the same in Python: with v.get_lock(): v.value += 1
 *   value.lock_incr.ratio_python  (target >= 10)
 *   value.atomic_incr.per_s       2 processes: mp_value_add(v, 1)
 *   value.atomic_incr.ratio_python  against the Python Value+Lock figure (target >= 50)
 *   array.bulk.gb_per_s           16 MiB from process A's buffer to process B's through an Array
 *                                 (mp_array_write in A, mp_array_read in B), payload bytes/s
 * The two-process figures are unpinned (as Python's), so they mix same-CPU and cross-CPU phases.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "mproc/shared.h"
#include "mproc/sync.h"

static int reps;
static int quick;

static double raw_mutex_ns(long n)
{
    pthread_mutex_t *m =
        mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(m, &a);
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(m);
        pthread_mutex_unlock(m);
    }
    double el = bench_now() - t0;
    munmap(m, 4096);
    return el / (double)n * 1e9;
}

static double lock_ns(long n)
{
    mp_lock *l;
    if (mp_lock_new(&l)) exit(1);
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        mp_lock_acquire(l, MP_FOREVER);
        mp_lock_release(l);
    }
    double el = bench_now() - t0;
    mp_lock_free(&l);
    return el / (double)n * 1e9;
}

/* Two children run body(v, n) after a shared start flag; returns increments per second. */
static double two_procs(mp_value *v, long n, void (*body)(mp_value *, long))
{
    mp_event *go;
    mp_barrier *ready;
    mp_event_new(&go);
    mp_barrier_new(&ready, 3);
    pid_t pids[2];
    for (int k = 0; k < 2; k++) {
        pids[k] = fork();
        if (pids[k] == 0) {
            mp_barrier_wait(ready, 30);
            mp_event_wait(go, 30);
            body(v, n);
            _exit(0);
        }
    }
    mp_barrier_wait(ready, 30);
    double t0 = bench_now();
    mp_event_set(go);
    for (int k = 0; k < 2; k++)
        waitpid(pids[k], NULL, 0);
    double el = bench_now() - t0;
    int64_t total = 0;
    mp_value_get_i64(v, &total);
    if (total != 2 * n) bench_note("WRONG TOTAL %lld != %ld", (long long)total, 2 * n);
    mp_value_set_i64(v, 0);
    mp_event_free(&go);
    mp_barrier_free(&ready);
    return (double)(2 * n) / el;
}

static void incr_locked(mp_value *v, long n)
{
    mp_lock *l = mp_value_lock(v);
    for (long i = 0; i < n; i++) {
        int64_t x;
        mp_lock_acquire(l, MP_FOREVER);
        mp_value_get_i64(v, &x);
        mp_value_set_i64(v, x + 1);
        mp_lock_release(l);
    }
}

static void incr_atomic(mp_value *v, long n)
{
    for (long i = 0; i < n; i++)
        mp_value_add(v, 1, NULL);
}

/* A writes `size` bytes into the Array, B reads them out; the hand-off uses two semaphores. */
static double array_bulk_gbps(size_t size, int rounds)
{
    mp_array *a;
    mp_sem *full, *empty;
    if (mp_array_new(&a, 'B', size, NULL, true)) exit(1);
    mp_sem_new(&full, 0);
    mp_sem_new(&empty, 0);
    char *src = malloc(size);
    memset(src, 'x', size);
    pid_t pid = fork();
    if (pid == 0) {
        char *dst = malloc(size);
        for (int i = 0; i < rounds; i++) {
            mp_sem_acquire(full, 30);
            mp_array_read(a, 0, dst, size);
            mp_sem_release(empty);
        }
        _exit(dst[size - 1] == 'x' ? 0 : 1);
    }
    double t0 = bench_now();
    for (int i = 0; i < rounds; i++) {
        mp_array_write(a, 0, src, size);
        mp_sem_release(full);
        mp_sem_acquire(empty, 30);
    }
    double el = bench_now() - t0;
    waitpid(pid, NULL, 0);
    free(src);
    mp_sem_free(&full);
    mp_sem_free(&empty);
    mp_array_free(&a);
    return (double)size * rounds / el / 1e9;
}

#define MEDIAN_OF(expr)                                                                            \
    ({                                                                                             \
        double v_[64];                                                                             \
        for (int r_ = 0; r_ < reps; r_++)                                                          \
            v_[r_] = (expr);                                                                       \
        bench_median(v_, reps);                                                                    \
    })

int main(void)
{
    quick = bench_quick();
    reps = bench_reps(quick ? 5 : 7);
    if (reps > 64) reps = 64;
    long n_lock = quick ? 1000000 : 5000000;
    long n_incr = quick ? 200000 : 1000000;

    bench_note("uncontended lock+unlock, %ld pairs x %d", n_lock, reps);
    /* Interleaved in short chunks, so that load from other programs hits both alike. Each rep
     * takes the best chunk of each (a preempted chunk says nothing about the lock's cost); the
     * figures are the medians over the reps of those, and of their per-rep ratio. */
    enum { CHUNKS = 32 };
    double raw_v[64], mine_v[64], ratio_v[64];
    long chunk = n_lock / CHUNKS;
    for (int r = 0; r < reps; r++) {
        double raw_best = 1e30, mine_best = 1e30;
        for (int c = 0; c < CHUNKS; c++) {
            double x = raw_mutex_ns(chunk), y = lock_ns(chunk);
            if (x < raw_best) raw_best = x;
            if (y < mine_best) mine_best = y;
        }
        raw_v[r] = raw_best;
        mine_v[r] = mine_best;
        ratio_v[r] = mine_best / raw_best;
    }
    bench_emit("mutex.robust.uncontended.ns", bench_median(raw_v, reps), "ns");
    bench_emit("lock.uncontended.ns", bench_median(mine_v, reps), "ns");
    bench_emit("lock.uncontended.ratio_mutex", bench_median(ratio_v, reps), "x");

    bench_note("2 processes x %ld increments of a Value", n_incr);
    mp_value *v;
    if (mp_value_new(&v, 'q', NULL, true)) return 1;
    double locked = MEDIAN_OF(two_procs(v, n_incr, incr_locked));
    double atomic = MEDIAN_OF(two_procs(v, n_incr * 4, incr_atomic));
    mp_value_free(&v);
    bench_emit("value.lock_incr.per_s", locked, "1/s");
    bench_emit("value.atomic_incr.per_s", atomic, "1/s");

    bench_note("array bulk transfer");
    size_t size = 16u << 20;
    double gbps = MEDIAN_OF(array_bulk_gbps(size, quick ? 4 : 16));
    bench_emit("array.bulk.gb_per_s", gbps, "GB/s");

    bench_note("python peer");
    char keys[8][64];
    double vals[8];
    char args[64];
    snprintf(args, sizeof args, "%s--reps %d", quick ? "--quick " : "", reps);
    int n = bench_python("sync_peer.py", args, keys, vals, 8);
    double py_lock = 0, py_incr = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(keys[i], "lock_ns") == 0) py_lock = vals[i];
        if (strcmp(keys[i], "value_lock_incr_per_s") == 0) py_incr = vals[i];
    }
    if (py_lock > 0) bench_emit("lock.python.uncontended.ns", py_lock, "ns");
    if (py_incr > 0) {
        bench_emit("value.lock_incr.python.per_s", py_incr, "1/s");
        bench_emit("value.lock_incr.ratio_python", locked / py_incr, "x");
        bench_emit("value.atomic_incr.ratio_python", atomic / py_incr, "x");
    } else {
        bench_note("python peer failed: no python ratios");
    }
    return 0;
}
