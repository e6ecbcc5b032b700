/* SPDX-License-Identifier: MIT */
/* test_deadline.c - the public deadline helper and the timeout convention (docs/conventions.md):
 * only MP_FOREVER and +INFINITY mean "no limit"; any other negative value or NaN has passed. */
#include <errno.h>
#include <math.h>

#include "mp_test.h"
#include "mproc/common.h"
#include "mproc/queue.h"

static void forever_never_expires(void **state)
{
    (void)state;
    mp_deadline d = mp_deadline_in(MP_FOREVER);
    assert_int_equal(mp_deadline_is_expired(&d), 0);
    assert_true(mp_deadline_left(&d) == MP_FOREVER);
    d = mp_deadline_in(INFINITY);
    assert_int_equal(mp_deadline_is_expired(&d), 0);
    assert_true(mp_deadline_left(&d) == MP_FOREVER);
}

static void other_negatives_and_nan_have_passed(void **state)
{
    (void)state;
    const double ts[] = {0.0, -0.5, -2.0, -1e-9, -1e300, NAN};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        mp_deadline d = mp_deadline_in(ts[i]);
        assert_int_equal(mp_deadline_is_expired(&d), 1);
        assert_true(mp_deadline_left(&d) == 0.0);
    }
}

static void left_counts_down(void **state)
{
    (void)state;
    mp_deadline d = mp_deadline_in(100.0);
    double left = mp_deadline_left(&d);
    assert_true(left > 99.0 && left <= 100.0);
    assert_int_equal(mp_deadline_is_expired(&d), 0);
    assert_int_equal(mp_deadline_is_expired(NULL), -EINVAL);
    assert_true(mp_deadline_left(NULL) == 0.0);
}

/* A drifting remainder below zero must not wait forever: an empty queue's get with -0.25
 * returns at once with the "not within the time given" code instead of blocking. The ctest
 * timeout is the backstop if it did block. */
static void negative_remainder_does_not_block(void **state)
{
    (void)state;
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0, 0), 0);
    char buf[8];
    size_t n;
    assert_int_equal(mp_queue_get(q, buf, sizeof buf, &n, -0.25), -ETIMEDOUT);
    mp_queue_free(&q);
}

static const struct CMUnitTest tests[] = {
    MP_TEST(forever_never_expires),
    MP_TEST(other_negatives_and_nan_have_passed),
    MP_TEST(left_counts_down),
    MP_TEST(negative_remainder_does_not_block),
};
MP_TEST_MAIN(tests)
