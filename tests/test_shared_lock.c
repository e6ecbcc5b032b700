/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 */
/* test_shared_lock.c - a Value or Array whose lock cannot be taken (an unrecoverable robust
 * mutex) reports the error and leaves the data alone: get/set/read/write must not act as if they
 * held the lock (issue 9, "obj_lock treats any failure as taken"). */
#include <errno.h>
#include <pthread.h>

#include "mp_test.h"
#include "mproc/error.h"
#include "mproc/shared.h"
#include "mproc/sync.h"
#include "sync_internal.h"

/* The lock's holder dies; the next locker releases it without repair: unrecoverable. */
static void make_unrecoverable(mp_lock *l)
{
    mp_test_make_mutex_unrecoverable(mp__lock_mutex(l));
}

static void test_value_unrecoverable_lock(void **state)
{
    (void)state;
    mp_value *v;
    int init = 7;
    assert_mp_ok(mp_value_new(&v, MP_TYPE_INT, &init, true));
    make_unrecoverable(mp_value_lock(v));
    for (int i = 0; i < 2; i++) { /* and again: no hang, the same answer */
        assert_mp(-ENOTRECOVERABLE, mp_value_set_i64(v, 5));
        int64_t x = -1;
        assert_mp(-ENOTRECOVERABLE, mp_value_get_i64(v, &x));
        assert_int_equal(x, -1); /* not filled */
        uint64_t u = 1;
        assert_mp(-ENOTRECOVERABLE, mp_value_get_u64(v, &u));
        assert_mp(-ENOTRECOVERABLE, mp_value_set_u64(v, 6));
        int w = 9;
        assert_mp(-ENOTRECOVERABLE, mp_value_write(v, &w, sizeof w));
        assert_mp(-ENOTRECOVERABLE, mp_value_read(v, &w, sizeof w));
        assert_int_equal(w, 9);
    }
    assert_int_equal(*(int *)mp_value_ptr(v), 7); /* nothing was stored */
    assert_mp_ok(mp_value_free(&v));
}

static void test_array_unrecoverable_lock(void **state)
{
    (void)state;
    mp_array *a;
    double init[3] = {1, 2, 3};
    assert_mp_ok(mp_array_new(&a, MP_TYPE_DOUBLE, 3, init, true));
    make_unrecoverable(mp_array_lock(a));
    double d = -1;
    assert_mp(-ENOTRECOVERABLE, mp_array_get_f64(a, 1, &d));
    assert_true(d == -1);
    assert_mp(-ENOTRECOVERABLE, mp_array_set_f64(a, 1, 9));
    double buf[3] = {0};
    assert_mp(-ENOTRECOVERABLE, mp_array_write(a, 0, buf, 3));
    assert_mp(-ENOTRECOVERABLE, mp_array_read(a, 0, buf, 3));
    assert_true(((double *)mp_array_ptr(a))[1] == 2);
    assert_mp_ok(mp_array_free(&a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(test_value_unrecoverable_lock),
        MP_TEST(test_array_unrecoverable_lock),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
