/* SPDX-License-Identifier: MIT */
/* raw_master_worker.c - the naive MPI master/worker loop, written by hand (issue 13).
 *
 * Rank 0 hands out 16-byte tasks one at a time to ranks 1..N-1 (one task in flight per worker,
 * i.e. chunksize 1) and collects 16-byte results. It is the baseline that the future pool backend's
 * `mpi.map_cs1.ratio_raw` divides by, so it must stay as plain as a user would write it: blocking
 * MPI_Send/MPI_Recv, no batching, no pipelining.
 *
 *   mpirun -np 3 raw_master_worker [--tasks N] [--reps R] [--name PREFIX] [--forever]
 *
 * Rank 0 prints one figure line on stdout, "PREFIX.tasks_per_s<TAB>value<TAB>tasks/s" (median of
 * the reps; PREFIX defaults to mpi.raw.map_cs1), and the per-rep values on stderr.
 * --forever: the master never stops handing out work, so the run ends only when Open MPI ends it
 * (tests/mpi/kill.sh SIGKILLs a worker rank in the middle of it). */
#include <mpi.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { TAG_TASK = 1, TAG_RESULT = 2, TAG_STOP = 3 };

/* 16 bytes each way: the task index and an argument; the result echoes the index. */
struct msg {
    uint64_t index;
    uint64_t value;
};

static uint64_t work(uint64_t x)
{
    return x * 2654435761u + 1; /* tiny: the loop measures hand-off cost, not compute */
}

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

static long parse_long(const char *opt, const char *s, long min)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min) {
        fprintf(stderr, "raw_master_worker: bad value for %s: %s\n", opt, s);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    return v;
}

static void worker(void)
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

/* One rep: ntasks tasks, one in flight per worker. Returns the number of wrong results. */
static long master_rep(int nworkers, long ntasks, int forever)
{
    long sent = 0, got = 0, wrong = 0;
    for (int w = 1; w <= nworkers && (forever || sent < ntasks); w++, sent++) {
        struct msg m = {(uint64_t)sent, (uint64_t)sent};
        MPI_Send(&m, (int)sizeof m, MPI_BYTE, w, TAG_TASK, MPI_COMM_WORLD);
    }
    while (forever || got < ntasks) {
        struct msg m;
        MPI_Status st;
        MPI_Recv(&m, (int)sizeof m, MPI_BYTE, MPI_ANY_SOURCE, TAG_RESULT, MPI_COMM_WORLD, &st);
        if (m.value != work(m.index)) wrong++;
        got++;
        if (forever || sent < ntasks) {
            struct msg t = {(uint64_t)sent, (uint64_t)sent};
            MPI_Send(&t, (int)sizeof t, MPI_BYTE, st.MPI_SOURCE, TAG_TASK, MPI_COMM_WORLD);
            sent++;
        }
    }
    return wrong;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    long ntasks = 100000, reps = 5;
    int forever = 0;
    const char *name = "mpi.raw.map_cs1";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--forever")) {
            forever = 1;
            continue;
        }
        if (!v) {
            if (rank == 0) fprintf(stderr, "raw_master_worker: %s needs a value\n", a);
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
        if (!strcmp(a, "--tasks"))
            ntasks = parse_long(a, v, 1);
        else if (!strcmp(a, "--reps"))
            reps = parse_long(a, v, 1);
        else if (!strcmp(a, "--name"))
            name = v;
        else {
            if (rank == 0) fprintf(stderr, "raw_master_worker: unknown option %s\n", a);
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
        i++;
    }
    if (size < 2) {
        if (rank == 0)
            fprintf(stderr, "raw_master_worker: needs at least 2 ranks (got %d)\n", size);
        MPI_Finalize();
        return 2;
    }

    if (rank != 0) {
        worker();
        MPI_Finalize();
        return 0;
    }

    int nworkers = size - 1;
    if (forever) {
        fprintf(stderr, "raw_master_worker: rank 0 pid %ld serves tasks until the job ends\n",
                (long)getpid());
        master_rep(nworkers, 0, 1); /* never returns: only Open MPI can end this job */
    }
    /* One short warm-up rep (connections, page faults), then the measured reps. */
    long wrong = master_rep(nworkers, ntasks / 10 + nworkers, 0);
    double *rate = calloc((size_t)reps, sizeof *rate);
    if (!rate) MPI_Abort(MPI_COMM_WORLD, 1);
    for (long r = 0; r < reps; r++) {
        double t0 = now();
        wrong += master_rep(nworkers, ntasks, 0);
        rate[r] = (double)ntasks / (now() - t0);
        fprintf(stderr, "raw_master_worker: %s rep %ld: %.0f tasks/s (%d workers)\n", name, r,
                rate[r], nworkers);
    }
    for (int w = 1; w <= nworkers; w++) {
        struct msg m = {0, 0};
        MPI_Send(&m, (int)sizeof m, MPI_BYTE, w, TAG_STOP, MPI_COMM_WORLD);
    }
    int status = 0;
    if (wrong) {
        fprintf(stderr, "raw_master_worker: %ld wrong results\n", wrong);
        status = 1;
    } else {
        qsort(rate, (size_t)reps, sizeof *rate, cmp_double);
        double med = reps % 2 ? rate[reps / 2] : (rate[reps / 2 - 1] + rate[reps / 2]) / 2;
        printf("%s.tasks_per_s\t%.0f\ttasks/s\n", name, med);
        fflush(stdout);
    }
    free(rate);
    MPI_Finalize();
    return status;
}
