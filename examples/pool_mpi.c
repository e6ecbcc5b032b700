/* SPDX-License-Identifier: MIT */
/* pool_mpi.c - one pool program, two ways to run it (docs/mpi.md):
 *
 *     ./pool_mpi                      worker processes forked on this machine
 *     mpirun -np 4 ./pool_mpi         worker MPI ranks 1..3, on every host of the launch
 *
 * Nothing in the code changes: the pool asks for MP_POOL_BACKEND_AUTO, which is MPI when the
 * program was launched by mpirun and linked with libmproc-mpi, and the local fork backend
 * otherwise. Under mpirun, mp_init() is where ranks 1..N-1 start serving tasks (they never return
 * from it); rank 0 returns and runs the rest of main. Each task reports the host and pid it ran
 * on, so the output shows where the work went. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <mproc.h>

/* The sum of the divisors of the item's number, with the host and pid that computed it. */
struct answer {
    long n, divisor_sum;
    int pid;
    char host[52];
};

static int divisors(const void *arg, size_t len, mp_task_result *res)
{
    struct answer a = {0};
    if (len != sizeof a.n) return mp_task_fail(res, 1, "expected a long, got %zu bytes", len);
    memcpy(&a.n, arg, sizeof a.n);
    for (long d = 1; d <= a.n; d++)
        if (a.n % d == 0) a.divisor_sum += d;
    a.pid = (int)getpid();
    gethostname(a.host, sizeof a.host - 1);
    return mp_task_result_set(res, &a, sizeof a);
}
/* At file scope: every process running this binary, every MPI rank included, has it. */
MP_FUNC_REGISTER("example.divisors", divisors)

int main(int argc, char **argv)
{
    /* First thing in main: under mpirun, worker ranks stay in here serving tasks. */
    int rc = mp_init(&argc, &argv);
    if (rc < 0) {
        fprintf(stderr, "mp_init: %s\n", mp_strerror(rc));
        return 1;
    }
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.backend = MP_POOL_BACKEND_AUTO;
    o.processes = MP_POOL_CPUS; /* local: one per CPU; MPI: every worker rank */
    mp_pool *pool;
    if ((rc = mp_pool_new(&pool, &o)) != 0) {
        fprintf(stderr, "mp_pool_new: %s (%s)\n", mp_strerror(rc), mp_last_error());
        return 1;
    }
    enum { N = 40 };
    long numbers[N];
    mp_buf items[N];
    for (int i = 0; i < N; i++) {
        numbers[i] = 100000 + i;
        items[i] = (mp_buf){&numbers[i], sizeof numbers[i]};
    }
    mp_result *r;
    rc = mp_pool_map(pool, "example.divisors", items, N, NULL, &r, 60);
    if (rc != 0) {
        const char *msg;
        mp_result_error(r, NULL, &msg);
        fprintf(stderr, "map: %s: %s\n", mp_strerror(rc), msg);
        return 1;
    }
    printf("%d workers\n", mp_pool_processes(pool));
    for (int i = 0; i < N; i += 8) {
        const void *d;
        size_t len;
        struct answer a;
        mp_result_item(r, (size_t)i, &d, &len);
        memcpy(&a, d, sizeof a);
        printf("sigma(%ld) = %ld   (host %s, pid %d)\n", a.n, a.divisor_sum, a.host, a.pid);
    }
    mp_result_free(&r);
    mp_pool_close(pool);
    mp_pool_join(pool, MP_FOREVER);
    mp_pool_free(&pool);
    return 0;
}
