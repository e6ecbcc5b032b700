/* SPDX-License-Identifier: MIT */
/* own_mpi.c - a program that initialises MPI itself (issue 13), driven by tests/mpi/pool.sh.
 *
 *   mpirun -np 3 mpi_own_mpi [leak]
 *
 * Every rank calls MPI_Init and exchanges a message of its own with rank 0 (on MPI_COMM_WORLD,
 * before mp_init: mproc's traffic runs on a duplicate communicator and never meets it); then
 * mp_init hands ranks 1..2 to mproc, which uses the program's MPI. Rank 0 maps over an MPI pool,
 * then calls MPI_Finalize itself: mproc releases its worker ranks from inside that call, so the
 * job ends cleanly. With "leak" the pool is neither joined nor freed before MPI_Finalize. */
#include <mpi.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mproc.h"

static int twice(const void *arg, size_t len, mp_task_result *res)
{
    int64_t x;
    if (len != sizeof x) return mp_task_fail(res, 1, "bad size");
    memcpy(&x, arg, sizeof x);
    x *= 2;
    return mp_task_result_set(res, &x, sizeof x);
}
MP_FUNC_REGISTER("twice", twice)

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size, fails = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int v = rank;
    if (rank == 0) {
        for (int r = 1; r < size; r++) {
            MPI_Recv(&v, 1, MPI_INT, r, 5, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            fails += v != r;
        }
    } else {
        MPI_Send(&v, 1, MPI_INT, 0, 5, MPI_COMM_WORLD);
    }
    mp_init(&argc, &argv); /* ranks 1..N-1 serve here, then finalise and exit */
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.backend = MP_POOL_BACKEND_MPI;
    mp_pool *p = NULL;
    int rc = mp_pool_new(&p, &o);
    if (rc) {
        printf("FAIL mp_pool_new: %s (%s)\n", mp_strerror(rc), mp_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    enum { N = 1000 };
    int64_t in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    mp_result *r = NULL;
    rc = mp_pool_map_fixed(p, "twice", in, N, sizeof in[0], out, sizeof out[0], NULL, &r, 60);
    for (int i = 0; i < N && rc == 0; i++)
        fails += out[i] != 2 * i;
    fails += rc != 0;
    mp_result_free(&r);
    int leak = argc > 1 && !strcmp(argv[1], "leak");
    if (!leak) {
        mp_pool_close(p);
        mp_pool_join(p, 30);
        mp_pool_free(&p);
    }
    printf("own_mpi%s: %d worker ranks, map %s, %d failure(s)\n", leak ? " leak" : "", size - 1,
           mp_strerror(rc), fails);
    fflush(stdout);
    MPI_Finalize();
    return fails ? 1 : 0;
}
