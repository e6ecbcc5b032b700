/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=30 */
/* test_version.c - the version macros agree with each other and with the library, and the
 * compatibility rule of mp_version_check (same major; while 0.x, the same minor). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mproc.h"
#include "mp_test.h"

static void macros_library_and_string_agree(void **state)
{
    assert_int_equal(
        MPROC_VERSION_NUMBER,
        MPROC_VERSION_ENCODE(MPROC_VERSION_MAJOR, MPROC_VERSION_MINOR, MPROC_VERSION_PATCH));
    assert_int_equal(mp_version_number(), MPROC_VERSION_NUMBER);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", MPROC_VERSION_MAJOR, MPROC_VERSION_MINOR,
             MPROC_VERSION_PATCH);
    assert_string_equal(mp_version(), want);
#if !MPROC_VERSION_AT_LEAST(0, 1, 0) || MPROC_VERSION_AT_LEAST(255, 0, 0)
    fail_msg("MPROC_VERSION_AT_LEAST is wrong");
#endif
}

static void check_follows_the_policy(void **state)
{
    int maj = MPROC_VERSION_MAJOR, min = MPROC_VERSION_MINOR, pat = MPROC_VERSION_PATCH;
    assert_int_equal(MPROC_VERSION_CHECK(), 0);
    /* Another patch level never matters. */
    assert_int_equal(mp_version_check(MPROC_VERSION_ENCODE(maj, min, pat + 1)), 0);
    assert_int_equal(mp_version_check(MPROC_VERSION_ENCODE(maj, min, 0)), 0);
    /* Another major never works. */
    assert_int_equal(mp_version_check(MPROC_VERSION_ENCODE(maj + 1, min, pat)), MP_ENOTSUP);
    /* A program built against a newer minor never works; an older one only from 1.0 on. */
    assert_int_equal(mp_version_check(MPROC_VERSION_ENCODE(maj, min + 1, 0)), MP_ENOTSUP);
    if (min > 0)
        assert_int_equal(mp_version_check(MPROC_VERSION_ENCODE(maj, min - 1, 0)),
                         maj == 0 ? MP_ENOTSUP : 0);
    assert_int_equal(mp_version_check(-1), -EINVAL);
}

static const struct CMUnitTest tests[] = {
    MP_TEST(macros_library_and_string_agree),
    MP_TEST(check_follows_the_policy),
};
MP_TEST_MAIN(tests)
