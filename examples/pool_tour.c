/* SPDX-License-Identifier: MIT */
/* pool_tour.c - a tour of the process pool, step by step: create, apply_async + get, apply, map,
 * close, join. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <mproc.h>

/* The event handled by the pool: square a number, and say which worker did it. */
struct answer {
    int value;
    int pid;
};

static int square(const void *arg, size_t len, mp_task_result *res)
{
    int x;
    if (len != sizeof x) return mp_task_fail(res, 1, "expected an int, got %zu bytes", len);
    memcpy(&x, arg, sizeof x);
    struct answer a = {x * x, (int)getpid()};
    return mp_task_result_set(res, &a, sizeof a);
}
/* Functions are named, not passed as pointers: every process registers the same table. */
MP_FUNC_REGISTER("tour.square", square)

static int check(int rc, const char *what)
{
    if (rc != 0) fprintf(stderr, "%s: %s\n", what, mp_strerror(rc));
    return rc != 0;
}

int main(void)
{
    int failures = 0;

    /* 1. Create the pool with a suitable number of processes. */
    mp_pool_options opts;
    mp_pool_options_init(&opts);
    opts.processes = 3;
    mp_pool *pool;
    if (check(mp_pool_new(&pool, &opts), "mp_pool_new")) return 1;
    printf("pool of %d workers\n", mp_pool_processes(pool));

    /* 2. Put events into the pool's queue asynchronously: apply_async returns at once. */
    enum { N = 6 };
    mp_result *results[N];
    for (int i = 0; i < N; i++)
        failures += check(mp_pool_apply_async(pool, "tour.square", &i, sizeof i, NULL, &results[i]),
                          "apply_async");

    /* 3. The workers take and handle the events; get() gives each return value. */
    for (int i = 0; i < N; i++) {
        const void *data;
        size_t len;
        if (check(mp_result_get(results[i], &data, &len, 10.0), "get")) {
            failures++;
        } else {
            struct answer a;
            memcpy(&a, data, sizeof a);
            printf("apply_async(%d) -> %d (worker %d)\n", i, a.value, a.pid);
            failures += a.value != i * i;
        }
        mp_result_free(&results[i]);
    }

    /* apply: the same, but it blocks until its event is handled. */
    int x = 12;
    mp_result *r;
    if (!check(mp_pool_apply(pool, "tour.square", &x, sizeof x, &r, 10.0), "apply")) {
        const void *data;
        mp_result_get(r, &data, NULL, 0);
        struct answer a;
        memcpy(&a, data, sizeof a);
        printf("apply(%d) -> %d\n", x, a.value);
        failures += a.value != 144;
    } else {
        failures++;
    }
    mp_result_free(&r);

    /* map: like the built-in map, through the pool; results come back in input order. */
    int xs[10];
    mp_buf items[10];
    for (int i = 0; i < 10; i++) {
        xs[i] = i + 1;
        items[i] = (mp_buf){&xs[i], sizeof xs[i]};
    }
    mp_result *m;
    if (!check(mp_pool_map(pool, "tour.square", items, 10, NULL, &m, 10.0), "map")) {
        printf("map:");
        for (size_t i = 0; i < mp_result_count(m); i++) {
            const void *data;
            mp_result_item(m, i, &data, NULL);
            struct answer a;
            memcpy(&a, data, sizeof a);
            printf(" %d", a.value);
            failures += a.value != xs[i] * xs[i];
        }
        printf("\n");
    } else {
        failures++;
    }
    mp_result_free(&m);

    /* 4. All events handled: close the pool (no new events) and join it (reclaim it). */
    failures += check(mp_pool_close(pool), "close");
    failures += check(mp_pool_join(pool, 10.0), "join");
    mp_pool_free(&pool);
    printf("%s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
