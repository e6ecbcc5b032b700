/* SPDX-License-Identifier: MIT */
/* mech_pool.c - the process pool: apply round trip (one worker pinned beside or across from the
 * caller) and map throughput of a trivial function (automatic chunks, chunk size 1). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avail.h"
#include "mpbench.h"

#ifdef MPB_HAVE_POOL
#include "mproc/error.h"
#include "mproc/pool.h"

#define TIMEOUT 60.0

/* The trivial task: gives its 8-byte argument back. */
static int echo_task(const void *arg, size_t len, mp_task_result *res)
{
    return mp_task_result_set(res, arg, len);
}
MP_FUNC_REGISTER("mpbench.echo", echo_task)

static int apply_once(void *arg)
{
    mp_result *r = NULL;
    long x = 42;
    int rc = mp_pool_apply(arg, "mpbench.echo", &x, sizeof x, &r, TIMEOUT);
    mp_result_free(&r);
    return rc;
}

struct mapper {
    mp_pool *pool;
    size_t chunksize;
    size_t batch;
    mp_buf *items;
    long *vals;
};

/* n items of 8 bytes through the pool, in maps of `batch` items. */
static int map_items(void *arg, long n)
{
    struct mapper *m = arg;
    mp_task_options o;
    mp_task_options_init(&o);
    o.chunksize = m->chunksize;
    for (long done = 0; done < n;) {
        size_t k = (size_t)(n - done) < m->batch ? (size_t)(n - done) : m->batch;
        mp_result *r = NULL;
        int rc = mp_pool_map(m->pool, "mpbench.echo", m->items, k, &o, &r, TIMEOUT);
        mp_result_free(&r);
        if (rc < 0) return rc;
        done += (long)k;
    }
    return 0;
}

/* The live pool, for Ctrl-C: terminating it stops its supervisor from replacing the workers
 * that mpb_kill_all is killing. The mutex stays locked after that: the program is exiting. */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static mp_pool *live;

static void stop_live_pool(void)
{
    pthread_mutex_lock(&live_mu);
    if (live) mp_pool_terminate(live);
}

static void set_live(mp_pool *p)
{
    pthread_mutex_lock(&live_mu);
    live = p;
    mpb_stop_hook = p ? stop_live_pool : NULL;
    pthread_mutex_unlock(&live_mu);
}

static mp_pool *make_pool(const char *name, int processes, const int *cpus, int ncpus)
{
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = processes;
    o.cpus = cpus;
    o.ncpus = ncpus;
    mp_pool *p = NULL;
    int rc = mp_pool_new(&p, &o);
    if (rc < 0) mpb_fail(name, "mp_pool_new: %s", mp_strerror(rc));
    if (p) set_live(p);
    return p;
}

static void free_pool(mp_pool **p)
{
    set_live(NULL);
    mp_pool_close(*p);
    mp_pool_join(*p, TIMEOUT);
    mp_pool_free(p);
}

static void map_figure(const char *name, const char *label, bool quick, size_t chunksize,
                       size_t batch)
{
    if (!mpb_wantq(name, quick)) return;
    int cpus[] = {0, 1};
    mp_pool *p = make_pool(name, mpb->ncpu >= 2 ? 2 : 1, cpus, mpb->ncpu >= 2 ? 2 : 1);
    if (!p) return;
    struct mapper m = {p, chunksize, batch, calloc(batch, sizeof(mp_buf)),
                       calloc(batch, sizeof(long))};
    if (m.items && m.vals) {
        for (size_t i = 0; i < batch; i++) {
            m.vals[i] = (long)i;
            m.items[i].data = &m.vals[i];
            m.items[i].len = sizeof(long);
        }
        mpb_loop(name, label, map_items, &m, "task/s", 1);
    }
    free(m.items);
    free(m.vals);
    free_pool(&p);
}

void mpb_bench_pool(void)
{
    static const char *plname[] = {"same", "cross"};
    static const char *plhuman[] = {"same CPU", "cross-CPU"};
    for (int pl = 0; pl < 2; pl++) {
        char name[64], label[96];
        snprintf(name, sizeof name, "pool.apply.rtt.%s", plname[pl]);
        if (!mpb_wantq(name, true)) continue;
        if (pl == MPB_CROSS && mpb->ncpu < 2) continue;
        snprintf(label, sizeof label, "mp_pool_apply round trip, worker %s", plhuman[pl]);
        int cpu = pl;
        mp_pool *p = make_pool(name, 1, &cpu, 1);
        if (!p) continue;
        mpb_events(name, label, apply_once, p, mpb->rtt_n);
        free_pool(&p);
    }
    map_figure("pool.map", "mp_pool_map, trivial task, automatic chunks, 2 workers", true, 0,
               100000);
    map_figure("pool.map_cs1", "mp_pool_map, trivial task, chunk size 1, 2 workers", true, 1, 2000);
}
#else
void mpb_bench_pool(void) {}
#endif
