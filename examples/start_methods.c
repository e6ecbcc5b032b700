/* SPDX-License-Identifier: MIT */
/* start_methods.c - one pool map and one Process (a named target, a passed Queue) under fork, spawn
 * and forkserver: the same results */
/* mp-test: timeout=120 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <mproc.h>

/* A pool task: the cube of an int. Registered by name, so that a worker that is not a copy of
 * this process (spawn, forkserver) finds it in its own table: MP_FUNC_REGISTER runs at load time
 * in every process that runs this binary. */
static int cube(const void *arg, size_t len, mp_task_result *res)
{
    int x;
    if (len != sizeof x) return mp_task_fail(res, 1, "expected an int, got %zu bytes", len);
    memcpy(&x, arg, sizeof x);
    int y = x * x * x;
    return mp_task_result_set(res, &y, sizeof y);
}
MP_FUNC_REGISTER("start_methods.cube", cube)

/* Set by main after mp_init. A forked child sees 42 (it is a copy of main's memory); a spawned or
 * forkserver child is a fresh image of the program and sees 0. */
static int marker;

/* A pool task that reports what its worker sees of `marker`. */
static int get_marker(const void *arg, size_t len, mp_task_result *res)
{
    (void)arg;
    (void)len;
    return mp_task_result_set(res, &marker, sizeof marker);
}
MP_FUNC_REGISTER("start_methods.marker", get_marker)

/* A Process target: a registered function too, with an argument of bytes (how many numbers to
 * send). It finds the queue its parent passed as object 0 and sends n squares, then `marker`. */
static int producer(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    int n;
    if (len != sizeof n) return 2;
    memcpy(&n, arg, sizeof n);
    mp_queue *q;
    if (mp_process_passed(0, MP_KIND_QUEUE, &q) != 0) return 3; /* borrowed: not freed here */
    for (int i = 1; i <= n; i++) {
        int sq = i * i;
        if (mp_queue_put(q, &sq, sizeof sq, 10.0) != 0) return 4;
    }
    return mp_queue_put(q, &marker, sizeof marker, 10.0) == 0 ? 0 : 4;
}
MP_FUNC_REGISTER("start_methods.producer", producer)

enum { N = 8 };

static int check(int rc, const char *method, const char *what)
{
    if (rc != 0)
        fprintf(stderr, "%s: %s: %s (%s)\n", method, what, mp_strerror(rc),
                *mp_last_error() ? mp_last_error() : "no detail");
    return rc != 0;
}

/* The pool job: cubes of 1..N on 2 workers started with `m`. Fills out[N], and *seen with what a
 * worker sees of `marker`. */
static int pool_job(mp_start_method m, int *out, int *seen)
{
    const char *name = mp_start_method_name(m);
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = 2;
    o.start_method = m; /* the only change a pool needs: tasks are already named */
    mp_pool *pool;
    if (check(mp_pool_new(&pool, &o), name, "mp_pool_new")) return 1;
    int in[N];
    for (int i = 0; i < N; i++)
        in[i] = i + 1;
    mp_result *r = NULL;
    int rc = mp_pool_map_fixed(pool, "start_methods.cube", in, N, sizeof in[0], out, sizeof out[0],
                               NULL, &r, 30.0);
    int bad = check(rc, name, "mp_pool_map_fixed");
    mp_result_free(&r);
    if (!bad)
        bad |= check(mp_pool_apply(pool, "start_methods.marker", NULL, 0, &r, 30.0), name,
                     "mp_pool_apply");
    if (!bad) {
        const void *data;
        size_t len;
        bad |= check(mp_result_get(r, &data, &len, 0), name, "mp_result_get");
        if (!bad) memcpy(seen, data, sizeof *seen);
    }
    mp_result_free(&r);
    mp_pool_close(pool);
    bad |= check(mp_pool_join(pool, 30.0), name, "mp_pool_join");
    mp_pool_free(&pool);
    return bad;
}

/* The Process job: one child started with `m`, named target "start_methods.producer", argument N,
 * a Queue passed to it. Fills sq[N] and *seen (the child's `marker`). */
static int process_job(mp_start_method m, int *sq, int *seen)
{
    const char *name = mp_start_method_name(m);
    mp_queue *q;
    if (check(mp_queue_new(&q, 0, 0), name, "mp_queue_new")) return 1;
    mp_process *p = NULL;
    int n = N, bad = 0;
    bad |= check(mp_process_new_func(&p, "producer", "start_methods.producer", &n, sizeof n), name,
                 "mp_process_new_func");
    if (!bad) bad |= check(mp_process_set_start_method(p, m), name, "set_start_method");
    if (!bad) {
        int idx = mp_process_pass(p, MP_KIND_QUEUE, q); /* the child's object 0 */
        if (idx != 0) bad |= check(idx < 0 ? idx : -1, name, "mp_process_pass");
    }
    if (!bad) bad |= check(mp_process_start(p), name, "mp_process_start");
    if (!bad) {
        /* The same queue on both sides: the child's puts arrive here. */
        for (int i = 0; i <= N && !bad; i++) {
            int v;
            size_t len;
            bad |= check(mp_queue_get(q, &v, sizeof v, &len, 10.0), name, "mp_queue_get");
            if (!bad) *(i < N ? &sq[i] : seen) = v;
        }
        bad |= check(mp_process_join(p, 30.0), name, "mp_process_join");
        int code = -1;
        if (!bad && mp_process_exitcode(p, &code) == 0 && code != 0) {
            fprintf(stderr, "%s: the child exited with %d\n", name, code);
            bad = 1;
        }
    }
    if (p && mp_process_is_alive(p) == 1) { /* only after a failure above */
        mp_process_kill(p);
        mp_process_join(p, MP_FOREVER);
    }
    mp_process_free(&p);
    mp_queue_free(&q);
    return bad;
}

static void print_ints(const char *what, const int *v, int n)
{
    printf("  %-8s", what);
    for (int i = 0; i < n; i++)
        printf(" %d", v[i]);
    printf("\n");
}

int main(int argc, char **argv)
{
    /* First thing: in a child that mproc spawned (and in the forkserver) this runs what that
     * process was started for and exits; it never returns there. Here it returns 0 at once. It
     * also makes the objects created from now on able to travel to spawned children. */
    if (mp_init(&argc, &argv) != 0) return 1;
    marker = 42;

    static const mp_start_method methods[] = {MP_START_FORK, MP_START_SPAWN, MP_START_FORKSERVER};
    int first_cubes[N], first_squares[N], failures = 0;
    for (int k = 0; k < 3; k++) {
        mp_start_method m = methods[k];
        int cubes[N] = {0}, squares[N] = {0}, seen = -1, pool_seen = -1;
        printf("%s:\n", mp_start_method_name(m));
        if (pool_job(m, cubes, &pool_seen) || process_job(m, squares, &seen)) {
            failures++;
            continue;
        }
        print_ints("pool", cubes, N);
        print_ints("process", squares, N);
        const char *what =
            m == MP_START_FORK ? "a copy of this process" : "a fresh image of the program";
        printf("  a pool worker saw marker = %d, the process saw %d (%s)\n", pool_seen, seen, what);
        if (k == 0) {
            memcpy(first_cubes, cubes, sizeof cubes);
            memcpy(first_squares, squares, sizeof squares);
        } else if (memcmp(cubes, first_cubes, sizeof cubes) != 0 ||
                   memcmp(squares, first_squares, sizeof squares) != 0) {
            printf("  DIFFERENT from fork's results\n");
            failures++;
        }
        int want = m == MP_START_FORK ? 42 : 0;
        if (seen != want || pool_seen != want) failures++;
    }
    if (mp_forkserver_pid() > 0)
        printf("the forkserver runs as pid %d\n", (int)mp_forkserver_pid());
    printf(failures ? "FAILED\n" : "the same results under fork, spawn and forkserver\n");
    return failures ? 1 : 0;
}
