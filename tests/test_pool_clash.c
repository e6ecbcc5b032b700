/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 */
/* test_pool_clash.c - two MP_FUNC_REGISTERs give one name to two functions. The constructors
 * cannot return the error, so the clash must be impossible to miss: every mp_pool_new of this
 * program fails with -EEXIST, and the detail names the function and both places. (Its own
 * program: the clash poisons pool creation for the whole process.) */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mp_test.h"
#include "mproc/error.h"
#include "mproc/pool.h"

static int c_first(const void *arg, size_t len, mp_task_result *res)
{
    return mp_task_result_set(res, "first", 5);
}
static int c_second(const void *arg, size_t len, mp_task_result *res)
{
    return mp_task_result_set(res, "second", 6);
}

MP_FUNC_REGISTER("c.dup", c_first)
static const int first_line = __LINE__ - 1;
MP_FUNC_REGISTER("c.dup", c_second)
static const int second_line = __LINE__ - 1;

static void test_clash_refuses_pools(void **state)
{
    mp_pool *p = NULL;
    assert_mp(-EEXIST, mp_pool_new(&p, NULL));
    assert_null(p);
    const char *d = mp_pool_last_error();
    char a[64], b[64];
    snprintf(a, sizeof a, "test_pool_clash.c:%d", first_line);
    snprintf(b, sizeof b, "test_pool_clash.c:%d", second_line);
    if (!strstr(d, "\"c.dup\"") || !strstr(d, a) || !strstr(d, b))
        fail_msg("detail '%s' lacks the name or one of %s, %s", d, a, b);
    /* the first registration stays the one found; nothing runs the second by mistake */
    mp_func *f;
    assert_mp_ok(mp_func_find("c.dup", &f));
    /* still refused on a second try: not a one-off */
    assert_mp(-EEXIST, mp_pool_new(&p, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(test_clash_refuses_pools),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
