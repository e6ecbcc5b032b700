/* SPDX-License-Identifier: MIT */
/* test_error.c - the error convention: codes, names and messages generated from one list. */
#include <errno.h>
#include <string.h>

#include "mproc.h"
#include "mp_test.h"

static void own_codes_are_in_reserved_range(void **state)
{
    int codes[] = {
#define X(name, msg) MP_E##name,
        MP_ERRNO_MAP(X)
#undef X
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        assert_true(codes[i] < -MP_ERR_BASE);
        /* distinct */
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(codes[i], codes[j]);
    }
}

static void names_and_messages_match_the_list(void **state)
{
    assert_string_equal(mp_err_name(MP_ECLOSED), "MP_ECLOSED");
    assert_string_equal(mp_err_name(MP_ENOTSUP), "MP_ENOTSUP");
    assert_string_equal(mp_strerror(MP_ECLOSED), "object is closed");
    assert_string_equal(
        mp_strerror(MP_EEOF),
        "end of file: the peer closed its end and everything sent has been received");
#define X(name, msg)                                                                               \
    assert_string_equal(mp_err_name(MP_E##name), "MP_E" #name);                                    \
    assert_string_equal(mp_strerror(MP_E##name), msg);
    MP_ERRNO_MAP(X)
#undef X
}

static void errno_values_pass_through(void **state)
{
    assert_string_equal(mp_err_name(-ETIMEDOUT), "ETIMEDOUT");
    assert_string_equal(mp_err_name(-EINVAL), "EINVAL");
    assert_string_equal(mp_strerror(-EPIPE), strerror(EPIPE));
    assert_string_equal(mp_err_name(0), "0");
    assert_string_equal(mp_strerror(0), "success");
}

static void unknown_codes_are_named_unknown(void **state)
{
    assert_string_equal(mp_err_name(-99999), "EUNKNOWN");
    assert_string_equal(mp_strerror(-99999), "unknown error");
    assert_string_equal(mp_err_name(12345), "EUNKNOWN");
    assert_string_equal(mp_err_name(-MP_ERR_BASE), "EUNKNOWN");
    assert_non_null(mp_version());
}

static const struct CMUnitTest tests[] = {
    MP_TEST(own_codes_are_in_reserved_range),
    MP_TEST(names_and_messages_match_the_list),
    MP_TEST(errno_values_pass_through),
    MP_TEST(unknown_codes_are_named_unknown),
};
MP_TEST_MAIN(tests)
