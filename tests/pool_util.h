/* SPDX-License-Identifier: MIT */
/* pool_util.h - what the pool tests share: a pool of n workers, a strict shutdown, and the parent
 * of a process (to tell a pool's worker from a recycled pid). */
#ifndef MP_TEST_POOL_UTIL_H
#define MP_TEST_POOL_UTIL_H

#include <string.h>

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

/* The parent pid of pid from /proc, or 0 when it is gone. */
static inline pid_t parent_of(pid_t pid)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    pid_t pp = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "PPid:", 5) == 0) pp = atoi(line + 5);
    if (f) fclose(f);
    return pp;
}

#endif
