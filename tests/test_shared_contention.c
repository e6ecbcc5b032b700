/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=120 */
/* test_shared_contention.c - 4 processes x 1,000,000 increments of one shared Value, under its
 * lock and with atomic add: the total must be exact. */
#include <errno.h>

#include "mp_test.h"
#include "mproc/error.h"
#include "mproc/shared.h"
#include "mproc/sync.h"

enum { PROCS = 4, PER_PROC = 1000000 };

/* All children start together (after the last fork), so they really contend. */
static void run_children(mp_value *v, int (*body)(mp_value *v))
{
    mp_event *go;
    assert_mp_ok(mp_event_new(&go));
    pid_t pids[PROCS];
    for (int k = 0; k < PROCS; k++) {
        pids[k] = mp_test_fork();
        if (pids[k] == 0) {
            MP_CHILD_CHECK(mp_event_wait(go, 30) == 0);
            mp_test_child_exit(body(v));
        }
    }
    assert_mp_ok(mp_event_set(go));
    for (int k = 0; k < PROCS; k++)
        assert_int_equal(mp_test_wait_code(pids[k], mp_test_timeout(60)), 0);
    mp_event_free(&go);
}

static int incr_under_lock(mp_value *v)
{
    mp_lock *l = mp_value_lock(v);
    long long *p = mp_value_ptr(v);
    for (int i = 0; i < PER_PROC; i++) {
        if (mp_lock_acquire(l, 30) != 0) return 1;
        ++*p;
        if (mp_lock_release(l) != 0) return 2;
    }
    return 0;
}

/* The typed calls take the (recursive) lock again inside the caller's critical section. */
static int incr_typed(mp_value *v)
{
    mp_lock *l = mp_value_lock(v);
    for (int i = 0; i < PER_PROC / 10; i++) {
        int64_t x;
        if (mp_lock_acquire(l, 30) != 0) return 1;
        if (mp_value_get_i64(v, &x) != 0 || mp_value_set_i64(v, x + 1) != 0) return 2;
        if (mp_lock_release(l) != 0) return 3;
    }
    return 0;
}

static int incr_atomic(mp_value *v)
{
    for (int i = 0; i < PER_PROC; i++)
        if (mp_value_add(v, 1, NULL) != 0) return 1;
    return 0;
}

static void test_value_under_lock(void **state)
{
    mp_value *v;
    assert_mp_ok(mp_value_new(&v, 'q', NULL, true));
    run_children(v, incr_under_lock);
    int64_t total;
    assert_mp_ok(mp_value_get_i64(v, &total));
    assert_int_equal(total, (int64_t)PROCS * PER_PROC);
    assert_mp_ok(mp_value_set_i64(v, 0));
    run_children(v, incr_typed);
    assert_mp_ok(mp_value_get_i64(v, &total));
    assert_int_equal(total, (int64_t)PROCS * (PER_PROC / 10));
    mp_value_free(&v);
}

static void test_value_atomic_add(void **state)
{
    mp_value *v;
    assert_mp_ok(mp_value_new(&v, 'q', NULL, false));
    run_children(v, incr_atomic);
    int64_t total;
    assert_mp_ok(mp_value_get_i64(v, &total));
    assert_int_equal(total, (int64_t)PROCS * PER_PROC);
    mp_value_free(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(test_value_under_lock),
        MP_TEST(test_value_atomic_add),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
