/* SPDX-License-Identifier: MIT */
/* bench_pool.c - the process pool against Python's multiprocessing.Pool, measured in the same run.
 *
 * Figures (stdout, name<TAB>value<TAB>unit):
 *   pool.worker.private_kib (+ .python)  an idle worker's Private_Clean + Private_Dirty
 *   pool.apply.rtt.cross.us (+ .python, .ratio_python)  apply_async + get round trip, caller on
 *                                        CPU 0, the single worker on CPU 1
 *   pool.apply.rtt.same.us (+ .python)   the same with the worker on CPU 0
 *   pool.apply.rtt.cross.forkserver.us (+ .ratio_fork)  the cross round trip with the pool's
 *                                        factory started by the forkserver, against a fork pool
 *                                        measured in alternation with it (median of the per-rep
 *                                        ratios): the start method must not tax the data path
 *   pool.map.tasks_per_s (+ .python, .ratio_python)     trivial task, automatic chunks, 2 workers
 *   pool.map_fixed.tasks_per_s           the same through the fixed-size path
 *   pool.map_cs1.tasks_per_s (+ .python, .ratio_python) chunk size 1
 *   pool.cpu.speedup2                    CPU-bound map, 2 workers against 1
 *   pool.imap.rss_growth_kib             parent's VmHWM growth while imap streams 10 M items
 *                                        (measured first, while the high-water mark is low)
 * Medians of bench_reps(5) runs. BENCH_QUICK shrinks every size.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "mproc/error.h"
#include "mproc/pool.h"
#include "mproc/process.h"
#include "mproc/start.h"

static int t_ident(const void *arg, size_t len, mp_task_result *res)
{
    return mp_task_result_set(res, arg, len);
}
MP_FUNC_REGISTER("bench.ident", t_ident)

static int t_primes(const void *arg, size_t len, mp_task_result *res)
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
MP_FUNC_REGISTER("bench.primes", t_primes)

static int ncpu;

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_pool: %s: %s\n", what, mp_strerror(rc));
    exit(1);
}

static mp_pool *make_pool_with(int procs, const int *cpus, int ncpus, mp_start_method method)
{
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = procs;
    o.cpus = cpus;
    o.ncpus = ncpus;
    o.start_method = method;
    mp_pool *p;
    int rc = mp_pool_new(&p, &o);
    if (rc) {
        fprintf(stderr, "bench_pool: %s\n", mp_last_error());
        die("mp_pool_new", rc);
    }
    return p;
}

static mp_pool *make_pool(int procs, const int *cpus, int ncpus)
{
    return make_pool_with(procs, cpus, ncpus, MP_START_FORK);
}

static void end_pool(mp_pool **p)
{
    mp_pool_close(*p);
    mp_pool_join(*p, 30);
    mp_pool_free(p);
}

static long kib_field(const char *path, const char *const *keys, int nkeys)
{
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    char line[256];
    long total = 0;
    while (fgets(line, sizeof line, f))
        for (int k = 0; k < nkeys; k++)
            if (strncmp(line, keys[k], strlen(keys[k])) == 0) total += atol(line + strlen(keys[k]));
    fclose(f);
    return total;
}

static void bench_private(void)
{
    mp_pool *p = make_pool(1, NULL, 0);
    int x = 1;
    mp_result *r;
    mp_pool_apply(p, "bench.ident", &x, sizeof x, &r, 10);
    mp_result_free(&r);
    usleep(100000);
    pid_t pid;
    mp_pool_worker_pids(p, &pid, 1);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    const char *keys[] = {"Private_Clean:", "Private_Dirty:"};
    bench_emit("pool.worker.private_kib", (double)kib_field(path, keys, 2), "KiB");
    end_pool(&p);
}

/* One apply_async + get round trip, caller on CPU 0, worker on worker_cpu. */
static double bench_rtt(int worker_cpu, int n, int reps)
{
    mp_pool *p = make_pool(1, &worker_cpu, 1);
    double *v = calloc((size_t)reps, sizeof *v);
    for (int rep = -1; rep < reps; rep++) {
        double t0 = bench_now();
        for (int i = 0; i < n; i++) {
            mp_result *r;
            int rc = mp_pool_apply_async(p, "bench.ident", &i, sizeof i, NULL, &r);
            if (rc) die("apply_async", rc);
            if ((rc = mp_result_get(r, NULL, NULL, 10))) die("get", rc);
            mp_result_free(&r);
        }
        if (rep >= 0) v[rep] = (bench_now() - t0) / n * 1e6;
    }
    double m = bench_median(v, reps);
    free(v);
    end_pool(&p);
    return m;
}

/* n apply round trips on p, microseconds each. */
static double rtt_once(mp_pool *p, int n)
{
    double t0 = bench_now();
    for (int i = 0; i < n; i++) {
        mp_result *r;
        int rc = mp_pool_apply_async(p, "bench.ident", &i, sizeof i, NULL, &r);
        if (rc) die("apply_async", rc);
        if ((rc = mp_result_get(r, NULL, NULL, 10))) die("get", rc);
        mp_result_free(&r);
    }
    return (bench_now() - t0) / n * 1e6;
}

/* The cross round trip of a forkserver pool and of a fork pool, measured in alternation (so that
 * a change of the machine's load hits both): *fs gets the forkserver pool's median, and the
 * median of the per-rep ratios forkserver / fork is returned. */
static double bench_rtt_forkserver(int worker_cpu, int n, int reps, double *fs)
{
    mp_pool *pf = make_pool_with(1, &worker_cpu, 1, MP_START_FORK);
    mp_pool *ps = make_pool_with(1, &worker_cpu, 1, MP_START_FORKSERVER);
    double *vs = calloc((size_t)reps, sizeof *vs), *ratio = calloc((size_t)reps, sizeof *ratio);
    for (int rep = -1; rep < reps; rep++) {
        double a = rtt_once(pf, n), b = rtt_once(ps, n);
        if (rep < 0) continue;
        vs[rep] = b;
        ratio[rep] = b / a;
    }
    *fs = bench_median(vs, reps);
    double m = bench_median(ratio, reps);
    free(vs);
    free(ratio);
    end_pool(&pf);
    end_pool(&ps);
    return m;
}

/* tasks/s of a map of n trivial items on 2 workers. */
static double bench_map(size_t n, size_t chunksize, int fixed, int reps)
{
    mp_pool *p = make_pool(2, NULL, 0);
    int *xs = malloc(n * sizeof *xs), *out = malloc(n * sizeof *out);
    mp_buf *items = malloc(n * sizeof *items);
    for (size_t i = 0; i < n; i++) {
        xs[i] = (int)i;
        items[i] = (mp_buf){&xs[i], sizeof xs[i]};
    }
    mp_task_options o;
    mp_task_options_init(&o);
    o.chunksize = chunksize;
    double *v = calloc((size_t)reps, sizeof *v);
    for (int rep = -1; rep < reps; rep++) {
        mp_result *r;
        double t0 = bench_now();
        int rc = fixed ? mp_pool_map_fixed(p, "bench.ident", xs, n, sizeof *xs, out, sizeof *out,
                                           &o, &r, 120)
                       : mp_pool_map(p, "bench.ident", items, n, &o, &r, 120);
        double t = bench_now() - t0;
        if (rc) die("map", rc);
        mp_result_free(&r);
        if (rep >= 0) v[rep] = (double)n / t;
    }
    double m = bench_median(v, reps);
    free(v);
    free(xs);
    free(out);
    free(items);
    end_pool(&p);
    return m;
}

static double cpu_map_once(mp_pool *p, const int *in, int *out, int ntasks)
{
    mp_task_options o;
    mp_task_options_init(&o);
    o.chunksize = 1;
    mp_result *r;
    double t0 = bench_now();
    int rc = mp_pool_map_fixed(p, "bench.primes", in, (size_t)ntasks, sizeof *in, out, sizeof *out,
                               &o, &r, 120);
    double t = bench_now() - t0;
    if (rc) die("cpu map", rc);
    mp_result_free(&r);
    return t;
}

/* The speed-up of a CPU-bound map on 2 workers over 1. The two pools run alternately, rep by
 * rep, so that both see the same load from the rest of the machine; the figure is the median of
 * the per-rep ratios. */
static double cpu_speedup2(int ntasks, int bound, int reps)
{
    int cpus[2] = {0, 1};
    mp_pool *p1 = make_pool(1, cpus, 1), *p2 = make_pool(2, cpus, 2);
    int *in = malloc((size_t)ntasks * sizeof *in), *out = malloc((size_t)ntasks * sizeof *out);
    for (int i = 0; i < ntasks; i++)
        in[i] = bound;
    double *ratio = calloc((size_t)reps, sizeof *ratio), *t1 = calloc((size_t)reps, sizeof *t1),
           *t2 = calloc((size_t)reps, sizeof *t2);
    cpu_map_once(p1, in, out, 2);
    cpu_map_once(p2, in, out, 2);
    for (int rep = 0; rep < reps; rep++) {
        t1[rep] = cpu_map_once(p1, in, out, ntasks);
        t2[rep] = cpu_map_once(p2, in, out, ntasks);
        ratio[rep] = t1[rep] / t2[rep];
    }
    bench_note("cpu map: 1 worker %.3f s, 2 workers %.3f s (medians)", bench_median(t1, reps),
               bench_median(t2, reps));
    double m = bench_median(ratio, reps);
    free(ratio);
    free(t1);
    free(t2);
    free(in);
    free(out);
    end_pool(&p1);
    end_pool(&p2);
    return m;
}

struct counter {
    long next, limit, buf;
};

static int count_iter(void *user, const void **data, size_t *len)
{
    struct counter *c = user;
    if (c->next >= c->limit) return 0;
    c->buf = c->next++;
    *data = &c->buf;
    *len = sizeof c->buf;
    return 1;
}

static void bench_imap_rss(long n)
{
    mp_pool *p = make_pool(2, NULL, 0);
    const char *keys[] = {"VmHWM:"};
    long before = kib_field("/proc/self/status", keys, 1);
    struct counter c = {0, n, 0};
    mp_task_options o;
    mp_task_options_init(&o);
    o.chunksize = 64;
    mp_imap *it;
    int rc = mp_pool_imap(p, "bench.ident", count_iter, &c, &o, &it);
    if (rc) die("imap", rc);
    double t0 = bench_now();
    long got = 0;
    const void *d;
    while ((rc = mp_imap_next(it, &d, NULL, NULL, 60)) == 0)
        got++;
    double t = bench_now() - t0;
    if (rc != MP_EEOF || got != n) die("imap_next", rc);
    mp_imap_free(&it);
    long after = kib_field("/proc/self/status", keys, 1);
    bench_note("imap: %ld items in %.2f s (%.0f items/s), VmHWM %ld -> %ld KiB", n, t, n / t,
               before, after);
    bench_emit("pool.imap.rss_growth_kib", (double)(after - before), "KiB");
    end_pool(&p);
}

static double py_value(char keys[][64], const double *vals, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (strcmp(keys[i], key) == 0) return vals[i];
    return -1;
}

int main(int argc, char **argv)
{
    mp_init(&argc, &argv); /* the forkserver pool's factory starts from here */
    int quick = bench_quick();
    int reps = bench_reps(5);
    ncpu = mp_cpu_count();
    size_t n_map = quick ? 200000 : 1000000;
    size_t n_cs1 = quick ? 20000 : 200000;
    int n_rtt = quick ? 2000 : 20000;
    long n_imap = quick ? 1000000 : 10000000;

    bench_private();
    /* Before the maps below raise the high-water mark, so that imap's growth is visible. */
    bench_imap_rss(n_imap);
    double cross = -1, same;
    if (ncpu >= 2) {
        bench_pin(0);
        cross = bench_rtt(1, n_rtt, reps);
        same = bench_rtt(0, n_rtt, reps);
        bench_emit("pool.apply.rtt.cross.us", cross, "us");
        bench_emit("pool.apply.rtt.same.us", same, "us");
        double fs_us;
        /* Finer alternation (3x the reps, a third of the round trips each): load hits both. */
        double fs_ratio = bench_rtt_forkserver(1, n_rtt / 3, 3 * reps, &fs_us);
        bench_emit("pool.apply.rtt.cross.forkserver.us", fs_us, "us");
        bench_emit("pool.apply.rtt.cross.forkserver.ratio_fork", fs_ratio, "x");
        cpu_set_t all;
        CPU_ZERO(&all);
        for (int i = 0; i < ncpu; i++)
            CPU_SET(i, &all);
        sched_setaffinity(0, sizeof all, &all);
    } else {
        same = bench_rtt(0, n_rtt, reps);
        bench_emit("pool.apply.rtt.same.us", same, "us");
    }
    double map = bench_map(n_map, 0, 0, reps);
    bench_emit("pool.map.tasks_per_s", map, "tasks/s");
    double mapf = bench_map(n_map, 0, 1, reps);
    bench_emit("pool.map_fixed.tasks_per_s", mapf, "tasks/s");
    double cs1 = bench_map(n_cs1, 1, 0, reps);
    bench_emit("pool.map_cs1.tasks_per_s", cs1, "tasks/s");

    if (ncpu >= 2) {
        int bound = quick ? 50000 : 200000;
        bench_emit("pool.cpu.speedup2", cpu_speedup2(16, bound, reps), "x");
    }

    char keys[16][64];
    double vals[16];
    char args[128];
    snprintf(args, sizeof args, "--reps %d%s", reps, quick ? " --quick" : "");
    bench_note("running Python's Pool (bench/python/pool_peer.py %s)", args);
    int n = bench_python("pool_peer.py", args, keys, vals, 16);
    if (n <= 0) {
        bench_note("python peer failed; no Python figures");
        return 0;
    }
    double py_priv = py_value(keys, vals, n, "worker.private_kib");
    double py_map = py_value(keys, vals, n, "map.tasks_per_s");
    double py_cs1 = py_value(keys, vals, n, "map_cs1.tasks_per_s");
    double py_cross = py_value(keys, vals, n, "apply.rtt.cross.us");
    double py_same = py_value(keys, vals, n, "apply.rtt.same.us");
    if (py_priv >= 0) bench_emit("pool.worker.private_kib.python", py_priv, "KiB");
    if (py_map > 0) {
        bench_emit("pool.map.python.tasks_per_s", py_map, "tasks/s");
        bench_emit("pool.map.ratio_python", map / py_map, "x");
    }
    if (py_cs1 > 0) {
        bench_emit("pool.map_cs1.python.tasks_per_s", py_cs1, "tasks/s");
        bench_emit("pool.map_cs1.ratio_python", cs1 / py_cs1, "x");
    }
    if (py_cross > 0 && cross > 0) {
        bench_emit("pool.apply.rtt.cross.python.us", py_cross, "us");
        bench_emit("pool.apply.rtt.cross.ratio_python", cross / py_cross, "x");
    }
    if (py_same > 0) bench_emit("pool.apply.rtt.same.python.us", py_same, "us");
    return 0;
}
