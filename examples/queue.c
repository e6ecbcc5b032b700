/* SPDX-License-Identifier: MIT */
/* queue.c - a Queue between processes: producers and consumers, blocking puts and gets, timeouts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mproc.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "queue: check failed: %s (line %d)\n", #cond, __LINE__);               \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

enum { PRODUCERS = 2, CONSUMERS = 2, JOBS = 50 };

/* Work items are plain structs; a negative n tells a consumer to stop (a "poison pill"). */
struct job {
    int producer;
    int n;
};

static mp_queue *jobs, *results;

static int produce(void *arg)
{
    int me = (int)(intptr_t)arg;
    for (int i = 1; i <= JOBS; i++) {
        struct job j = {me, i};
        /* jobs holds at most 4 messages: put blocks until a consumer makes room */
        if (mp_queue_put(jobs, &j, sizeof j, 10.0) != 0) return 1;
    }
    return 0;
}

static int consume(void *arg)
{
    (void)arg;
    for (;;) {
        struct job j;
        size_t n;
        int rc = mp_queue_get(jobs, &j, sizeof j, &n, 10.0); /* blocks, at most 10 s */
        if (rc != 0 || n != sizeof j) return 1;
        if (j.n < 0) return 0;
        long square = (long)j.n * j.n;
        if (mp_queue_put(results, &square, sizeof square, 10.0) != 0) return 1;
    }
}

int main(void)
{
    CHECK(mp_queue_new(&jobs, 4, 0) == 0);    /* maxsize 4 messages */
    CHECK(mp_queue_new(&results, 0, 0) == 0); /* bounded only by its 1 MiB ring */

    /* Timeouts: an empty queue gives -ETIMEDOUT, after the wait or at once without waiting. */
    long v;
    size_t n;
    CHECK(mp_queue_get(results, &v, sizeof v, &n, 0.1) == -ETIMEDOUT);
    CHECK(mp_queue_get_nowait(results, &v, sizeof v, &n) == -ETIMEDOUT);
    printf("get on an empty queue: %s after 0.1 s\n", mp_err_name(-ETIMEDOUT));

    mp_process *procs[PRODUCERS + CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++) {
        CHECK(mp_process_new(&procs[i], "consumer", consume, NULL) == 0);
        CHECK(mp_process_start(procs[i]) == 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        mp_process **p = &procs[CONSUMERS + i];
        CHECK(mp_process_new(p, "producer", produce, (void *)(intptr_t)i) == 0);
        CHECK(mp_process_start(*p) == 0);
    }

    /* Collect every result while the workers run. */
    long sum = 0;
    for (int i = 0; i < PRODUCERS * JOBS; i++) {
        CHECK(mp_queue_get(results, &v, sizeof v, &n, 10.0) == 0 && n == sizeof v);
        sum += v;
    }
    long want = 0;
    for (int i = 1; i <= JOBS; i++)
        want += (long)PRODUCERS * i * i;
    printf("%d results from %d consumers, sum of squares %ld (expected %ld)\n", PRODUCERS * JOBS,
           CONSUMERS, sum, want);
    CHECK(sum == want);

    /* One poison pill per consumer, then wait for everyone. */
    for (int i = 0; i < CONSUMERS; i++) {
        struct job stop = {-1, -1};
        CHECK(mp_queue_put(jobs, &stop, sizeof stop, 10.0) == 0);
    }
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++) {
        int code = -1;
        CHECK(mp_process_join(procs[i], 10.0) == 0);
        CHECK(mp_process_exitcode(procs[i], &code) == 0 && code == 0);
        mp_process_free(&procs[i]);
    }

    /* A full queue: put_nowait says so at once, put with a timeout waits and then gives up. */
    struct job j = {0, 0};
    for (int i = 0; i < 4; i++)
        CHECK(mp_queue_put_nowait(jobs, &j, sizeof j) == 0);
    CHECK(mp_queue_is_full(jobs) == 1 && mp_queue_qsize(jobs) == 4);
    CHECK(mp_queue_put_nowait(jobs, &j, sizeof j) == -ETIMEDOUT);
    CHECK(mp_queue_put(jobs, &j, sizeof j, 0.1) == -ETIMEDOUT);
    printf("put on a full queue: %s at once and after 0.1 s\n", mp_err_name(-ETIMEDOUT));

    /* Close: no more puts; gets drain what is left, then report MP_ECLOSED. */
    CHECK(mp_queue_close(jobs) == 0);
    CHECK(mp_queue_put(jobs, &j, sizeof j, 0) == MP_ECLOSED);
    int drained = 0;
    while (mp_queue_get(jobs, &j, sizeof j, &n, 1.0) == 0)
        drained++;
    CHECK(drained == 4);
    CHECK(mp_queue_get(jobs, &j, sizeof j, &n, 1.0) == MP_ECLOSED);
    printf("closed: drained %d, then %s\n", drained, mp_err_name(MP_ECLOSED));

    mp_queue_free(&jobs);
    mp_queue_free(&results);
    CHECK(jobs == NULL && results == NULL);
    return 0;
}
