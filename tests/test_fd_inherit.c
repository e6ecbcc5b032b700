/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=120 */
/* test_fd_inherit.c - nothing of mproc leaks into children (issue 9): the number of fds a child
 * holds is a baseline whatever pools, queues and processes exist in its parent. Before, a pool's
 * eventfd and worker pidfds went to every later fork: worker k of a pool held k sibling pidfds,
 * with 11 pools a worker held 36 fds instead of 6, and an mp_process child started beside a pool
 * held 3 extra.
 *
 * Which module closes what: a pool worker is forked by its pool's worker factory, which closes
 * every fd marked internal (mp__fd_internal_add) when it starts, so workers are clean whatever
 * the rest does (cases "worker_*"). An mp_process child is clean once mp__fork closes the marked
 * fds in every child (case "process_child_*"), and queues' own fds once the queue marks them. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "mp_test.h"
#include "mproc/error.h"
#include "mproc/pool.h"
#include "mproc/process.h"
#include "mproc/queue.h"

static int fi_count(const void *arg, size_t len, mp_task_result *res)
{
    int n = mp_test_count_fds();
    return mp_task_result_set(res, &n, sizeof n);
}
MP_FUNC_REGISTER("fi.count", fi_count)

static int fi_sleep(const void *arg, size_t len, mp_task_result *res)
{
    usleep(2000);
    return 0;
}
MP_FUNC_REGISTER("fi.sleep", fi_sleep)

/* fd counts of one pool's workers (a map with chunksize 1 over sleeping tasks reaches each). */
static void worker_fds(mp_pool *p, int *counts, int n)
{
    mp_buf items[64];
    for (int i = 0; i < 64; i++)
        items[i] = (mp_buf){NULL, 0};
    mp_task_options o;
    mp_task_options_init(&o);
    o.chunksize = 1;
    mp_result *r;
    assert_mp_ok(mp_pool_map(p, "fi.count", items, 64, &o, &r, mp_test_timeout(10)));
    for (int i = 0; i < n && i < 64; i++) {
        const void *d;
        size_t l;
        assert_mp_ok(mp_result_item(r, (size_t)i, &d, &l));
        memcpy(&counts[i], d, sizeof(int));
    }
    mp_result_free(&r);
}

static int baseline_worker(void)
{
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = 1;
    mp_pool *p;
    assert_mp_ok(mp_pool_new(&p, &o));
    int n;
    worker_fds(p, &n, 1);
    assert_mp_ok(mp_pool_close(p));
    assert_mp_ok(mp_pool_join(p, mp_test_timeout(10)));
    assert_mp_ok(mp_pool_free(&p));
    return n;
}

static int child_counts(void *arg)
{
    int n = mp_test_count_fds();
    return n < 0 ? 255 : n;
}

static int baseline_process(void)
{
    mp_process *c;
    assert_mp_ok(mp_process_new(&c, NULL, child_counts, NULL));
    assert_mp_ok(mp_process_start(c));
    assert_mp_ok(mp_process_join(c, mp_test_timeout(10)));
    int code = -1;
    assert_mp_ok(mp_process_exitcode(c, &code));
    assert_mp_ok(mp_process_free(&c));
    return code;
}

enum { NPOOLS = 11 };

static void new_pools(mp_pool **pools, int n)
{
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = 3;
    for (int i = 0; i < n; i++)
        assert_mp_ok(mp_pool_new(&pools[i], &o));
}

static void end_pools(mp_pool **pools, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        assert_mp_ok(mp_pool_close(pools[i]));
        assert_mp_ok(mp_pool_join(pools[i], mp_test_timeout(10)));
        assert_mp_ok(mp_pool_free(&pools[i]));
    }
}

static void test_worker_fds_with_pools(void **state)
{
    /* The pool's own part: a worker holds no sibling's pidfd and nothing of other pools, in the
     * first pool, the last one, and a pool whose workers were replaced. */
    int base = baseline_worker();
    mp_pool *pools[NPOOLS];
    new_pools(pools, NPOOLS);
    for (int k = 0; k < NPOOLS; k += NPOOLS - 1) {
        int c[3];
        worker_fds(pools[k], c, 3);
        for (int i = 0; i < 3; i++)
            if (c[i] != base)
                fail_msg("pool %d, worker %d holds %d fds, baseline %d", k, i, c[i], base);
    }
    /* replacements, forked after all the pools exist */
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = 2;
    o.maxtasksperchild = 1;
    mp_pool *churn;
    assert_mp_ok(mp_pool_new(&churn, &o));
    int c[8];
    for (int round = 0; round < 3; round++) {
        worker_fds(churn, c, 8);
        for (int i = 0; i < 8; i++)
            if (c[i] != base) fail_msg("replacement worker holds %d fds, baseline %d", c[i], base);
    }
    assert_mp_ok(mp_pool_close(churn));
    assert_mp_ok(mp_pool_join(churn, mp_test_timeout(10)));
    assert_mp_ok(mp_pool_free(&churn));
    end_pools(pools, NPOOLS);
}

static int sleeper(void *arg)
{
    usleep(300000);
    return 0;
}

static void test_worker_fds_with_everything(void **state)
{
    /* Pools, queues and a running process exist before the pool is created. */
    int base = baseline_worker();
    mp_pool *pools[3];
    new_pools(pools, 3);
    mp_queue *q[3];
    for (int i = 0; i < 3; i++)
        assert_mp_ok(mp_queue_new(&q[i], 0, 0));
    mp_process *s;
    assert_mp_ok(mp_process_new(&s, NULL, sleeper, NULL));
    assert_mp_ok(mp_process_start(s));
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = 2;
    mp_pool *p;
    assert_mp_ok(mp_pool_new(&p, &o));
    int c[2];
    worker_fds(p, c, 2);
    assert_mp_ok(mp_pool_close(p));
    assert_mp_ok(mp_pool_join(p, mp_test_timeout(10)));
    assert_mp_ok(mp_pool_free(&p));
    assert_mp_ok(mp_process_join(s, mp_test_timeout(10)));
    assert_mp_ok(mp_process_free(&s));
    for (int i = 0; i < 3; i++)
        mp_queue_free(&q[i]);
    end_pools(pools, 3);
    for (int i = 0; i < 2; i++)
        if (c[i] != base) fail_msg("worker %d holds %d fds, baseline %d", i, c[i], base);
}

static void test_process_child_fds_with_everything(void **state)
{
    /* Waits for mp__fork to close the marked fds in every child (the process module's part). */
    int base = baseline_process();
    mp_pool *pools[NPOOLS];
    new_pools(pools, NPOOLS);
    mp_queue *q;
    assert_mp_ok(mp_queue_new(&q, 0, 0));
    mp_process *s;
    assert_mp_ok(mp_process_new(&s, NULL, sleeper, NULL));
    assert_mp_ok(mp_process_start(s));
    int n = baseline_process();
    assert_mp_ok(mp_process_join(s, mp_test_timeout(10)));
    assert_mp_ok(mp_process_free(&s));
    mp_queue_free(&q);
    end_pools(pools, NPOOLS);
    if (n != base) fail_msg("an mp_process child holds %d fds, baseline %d", n, base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(test_worker_fds_with_pools),
        MP_TEST(test_worker_fds_with_everything),
        MP_TEST(test_process_child_fds_with_everything),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
