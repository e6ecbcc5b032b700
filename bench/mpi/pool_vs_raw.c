/* SPDX-License-Identifier: MIT */
/* pool_vs_raw.c - the pool on MPI ranks against the raw master/worker loop, in one run (issue 13).
 *
 *   mpirun -np 3 pool_vs_raw [--tasks N] [--reps R] [--name PREFIX]
 *
 * The program initialises MPI itself (so this also exercises "mproc uses the program's MPI and
 * leaves finalising to it"): first every rank runs the raw loop of raw_master_worker.c (16-byte
 * tasks, one in flight per worker, blocking MPI_Send/MPI_Recv), then mp_init hands ranks 1..N-1 to
 * mproc and rank 0 maps the same tiny task over an MPI pool, at chunksize 1 and with automatic
 * chunks. Rank 0 prints (medians of R reps):
 *   PREFIX.map_cs1.raw_tasks_per_s (the raw loop)  PREFIX.map_cs1.tasks_per_s
 * PREFIX.map.tasks_per_s PREFIX.map_cs1.ratio_raw         PREFIX.map.ratio_raw PREFIX defaults to
 * "mpi". */
#include <mpi.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mproc.h"

enum { TAG_TASK = 1, TAG_RESULT = 2, TAG_STOP = 3 };
struct msg {
    uint64_t index, value;
};

static uint64_t work(uint64_t x)
{
    return x * 2654435761u + 1;
}

static int work_task(const void *arg, size_t len, mp_task_result *res)
{
    struct msg m;
    if (len != sizeof m) return mp_task_fail(res, 1, "bad size %zu", len);
    memcpy(&m, arg, sizeof m);
    m.value = work(m.value);
    return mp_task_result_set(res, &m, sizeof m);
}
MP_FUNC_REGISTER("work", work_task)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, long n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- the raw loop (as raw_master_worker.c) ---- */
static void raw_worker(void)
{
    for (;;) {
        struct msg m;
        MPI_Status st;
        MPI_Recv(&m, (int)sizeof m, MPI_BYTE, 0, MPI_ANY_TAG, MPI_COMM_WORLD, &st);
        if (st.MPI_TAG == TAG_STOP) return;
        m.value = work(m.value);
        MPI_Send(&m, (int)sizeof m, MPI_BYTE, 0, TAG_RESULT, MPI_COMM_WORLD);
    }
}

static long raw_rep(int nworkers, long ntasks)
{
    long sent = 0, got = 0, wrong = 0;
    for (int w = 1; w <= nworkers && sent < ntasks; w++, sent++) {
        struct msg m = {(uint64_t)sent, (uint64_t)sent};
        MPI_Send(&m, (int)sizeof m, MPI_BYTE, w, TAG_TASK, MPI_COMM_WORLD);
    }
    while (got < ntasks) {
        struct msg m;
        MPI_Status st;
        MPI_Recv(&m, (int)sizeof m, MPI_BYTE, MPI_ANY_SOURCE, TAG_RESULT, MPI_COMM_WORLD, &st);
        if (m.value != work(m.index)) wrong++;
        got++;
        if (sent < ntasks) {
            struct msg t = {(uint64_t)sent, (uint64_t)sent};
            MPI_Send(&t, (int)sizeof t, MPI_BYTE, st.MPI_SOURCE, TAG_TASK, MPI_COMM_WORLD);
            sent++;
        }
    }
    return wrong;
}

/* One pool map of n tasks; returns the number of wrong results (or -1 on error). */
static long pool_rep(mp_pool *p, const mp_buf *items, const struct msg *in, long n, size_t cs)
{
    mp_task_options to;
    mp_task_options_init(&to);
    to.chunksize = cs;
    mp_result *r = NULL;
    int rc = mp_pool_map(p, "work", items, (size_t)n, &to, &r, MP_FOREVER);
    if (rc) {
        fprintf(stderr, "pool_vs_raw: map: %s\n", mp_strerror(rc));
        mp_result_free(&r);
        return -1;
    }
    long wrong = 0;
    for (long i = 0; i < n; i++) {
        const void *d;
        size_t l;
        struct msg m;
        if (mp_result_item(r, (size_t)i, &d, &l) || l != sizeof m) {
            wrong++;
            continue;
        }
        memcpy(&m, d, sizeof m);
        wrong += m.value != work(in[i].value);
    }
    mp_result_free(&r);
    return wrong;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long ntasks = 100000, reps = 5;
    const char *name = "mpi";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--tasks"))
            ntasks = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps"))
            reps = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--name"))
            name = argv[i + 1];
    }
    if (size < 2 || ntasks < 1 || reps < 1) {
        if (rank == 0) fprintf(stderr, "pool_vs_raw: needs -np >= 2, --tasks/--reps >= 1\n");
        MPI_Finalize();
        return 2;
    }
    int nworkers = size - 1;
    double *raw = calloc((size_t)reps, sizeof *raw), *cs1 = calloc((size_t)reps, sizeof *cs1),
           *aut = calloc((size_t)reps, sizeof *aut);
    long wrong = 0;
    if (rank != 0) {
        raw_worker();
    } else {
        wrong += raw_rep(nworkers, ntasks / 10 + nworkers); /* warm-up */
        for (long r = 0; r < reps; r++) {
            double t0 = now();
            wrong += raw_rep(nworkers, ntasks);
            raw[r] = (double)ntasks / (now() - t0);
            fprintf(stderr, "pool_vs_raw: raw rep %ld: %.0f tasks/s\n", r, raw[r]);
        }
        for (int w = 1; w <= nworkers; w++) {
            struct msg m = {0, 0};
            MPI_Send(&m, (int)sizeof m, MPI_BYTE, w, TAG_STOP, MPI_COMM_WORLD);
        }
    }

    /* From here ranks 1..N-1 serve the pool inside mp_init and never return. */
    mp_init(&argc, &argv);

    struct msg *in = malloc((size_t)ntasks * sizeof *in);
    mp_buf *items = malloc((size_t)ntasks * sizeof *items);
    for (long i = 0; i < ntasks; i++) {
        in[i] = (struct msg){(uint64_t)i, (uint64_t)i};
        items[i] = (mp_buf){&in[i], sizeof in[i]};
    }
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.backend = MP_POOL_BACKEND_MPI;
    mp_pool *p = NULL;
    int rc = mp_pool_new(&p, &o);
    if (rc) {
        fprintf(stderr, "pool_vs_raw: mp_pool_new: %s (%s)\n", mp_strerror(rc), mp_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    long w0 = pool_rep(p, items, in, ntasks / 10 + 1, 1); /* warm-up */
    wrong += w0 < 0 ? ntasks : w0;
    for (long r = 0; r < reps; r++) {
        double t0 = now();
        long w = pool_rep(p, items, in, ntasks, 1);
        cs1[r] = (double)ntasks / (now() - t0);
        t0 = now();
        long w2 = pool_rep(p, items, in, ntasks, 0);
        aut[r] = (double)ntasks / (now() - t0);
        wrong += (w < 0 ? ntasks : w) + (w2 < 0 ? ntasks : w2);
        fprintf(stderr, "pool_vs_raw: pool rep %ld: chunksize 1 %.0f, automatic %.0f tasks/s\n", r,
                cs1[r], aut[r]);
    }
    mp_pool_close(p);
    mp_pool_join(p, MP_FOREVER);
    mp_pool_free(&p);
    int status = 0;
    if (wrong) {
        fprintf(stderr, "pool_vs_raw: %ld wrong results\n", wrong);
        status = 1;
    } else {
        double mraw = median(raw, reps), mcs1 = median(cs1, reps), maut = median(aut, reps);
        printf("%s.map_cs1.raw_tasks_per_s\t%.0f\ttasks/s\n", name, mraw);
        printf("%s.map_cs1.tasks_per_s\t%.0f\ttasks/s\n", name, mcs1);
        printf("%s.map.tasks_per_s\t%.0f\ttasks/s\n", name, maut);
        printf("%s.map_cs1.ratio_raw\t%.2f\tratio\n", name, mcs1 / mraw);
        printf("%s.map.ratio_raw\t%.2f\tratio\n", name, maut / mraw);
        fflush(stdout);
    }
    free(in);
    free(items);
    free(raw);
    free(cs1);
    free(aut);
    MPI_Finalize(); /* the program's own: mproc releases its worker ranks first */
    return status;
}
