/* SPDX-License-Identifier: MIT */
/* pool_cpu.c - a CPU-bound map on 1 worker and on N workers: the speed-up of a process pool */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <mproc.h>

/* Counts the primes below the item's bound, the slow way: pure CPU work. */
static int count_primes(const void *arg, size_t len, mp_task_result *res)
{
    int hi;
    memcpy(&hi, arg, sizeof hi);
    int n = 0;
    for (int k = 2; k < hi; k++) {
        int prime = 1;
        for (int d = 2; d * d <= k; d++)
            if (k % d == 0) {
                prime = 0;
                break;
            }
        n += prime;
    }
    return mp_task_result_set(res, &n, sizeof n);
}
MP_FUNC_REGISTER("cpu.count_primes", count_primes)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs the map on a pool of `procs` workers; returns seconds, or -1. Fills total. */
static double run(int procs, const int *bounds, int n, long *total)
{
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = procs;
    mp_pool *pool;
    if (mp_pool_new(&pool, &o) != 0) return -1;
    /* the fixed-size path: an array of ints in, an array of ints out */
    int out[64];
    mp_task_options to;
    mp_task_options_init(&to);
    to.chunksize = 1;
    double t0 = now();
    mp_result *r;
    int rc = mp_pool_map_fixed(pool, "cpu.count_primes", bounds, (size_t)n, sizeof bounds[0], out,
                               sizeof out[0], &to, &r, 60.0);
    double t = now() - t0;
    mp_result_free(&r);
    mp_pool_close(pool);
    mp_pool_join(pool, 10.0);
    mp_pool_free(&pool);
    if (rc != 0) {
        fprintf(stderr, "map: %s\n", mp_strerror(rc));
        return -1;
    }
    *total = 0;
    for (int i = 0; i < n; i++)
        *total += out[i];
    return t;
}

int main(void)
{
    enum { N = 32 };
    int bounds[N];
    for (int i = 0; i < N; i++)
        bounds[i] = 100000;
    int cpus = mp_cpu_count();
    long one_total = 0, n_total = 0;
    double t1 = run(1, bounds, N, &one_total);
    double tn = run(cpus, bounds, N, &n_total);
    if (t1 < 0 || tn < 0) return 1;
    printf("%d tasks counting primes below %d: %ld primes in all\n", N, bounds[0], one_total);
    printf("1 worker:  %.3f s\n", t1);
    printf("%d workers: %.3f s  (speed-up %.2fx; the machine may be busy, so this varies)\n", cpus,
           tn, t1 / tn);
    /* Check the answers, not the timing: 9592 primes below 100000. */
    if (one_total != n_total || one_total != 9592L * N) {
        printf("wrong answer\n");
        return 1;
    }
    printf("ok\n");
    return 0;
}
