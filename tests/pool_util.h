/* SPDX-License-Identifier: MIT */
/* pool_util.h - what the pool tests share: a pool of n workers, and a strict shutdown. */
#ifndef MP_TEST_POOL_UTIL_H
#define MP_TEST_POOL_UTIL_H

#include "mproc.h"
#include "mp_test.h"

static inline mp_pool *new_pool(int n)
{
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = n;
    mp_pool *p = NULL;
    assert_mp_ok(mp_pool_new(&p, &o));
    return p;
}

/* close + join (every worker gone) + free, each of which must succeed. */
static inline void end_pool(mp_pool **p)
{
    assert_mp_ok(mp_pool_close(*p));
    assert_mp_ok(mp_pool_join(*p, mp_test_timeout(10)));
    assert_mp_ok(mp_pool_free(p));
    assert_null(*p);
}

#endif
