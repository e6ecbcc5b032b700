/* SPDX-License-Identifier: MIT */
/* pool_util.h - what the pool tests share: a pool of n workers, a strict shutdown, the parent
 * of a process (to tell a pool's worker from a recycled pid), and task bodies that several tests
 * register, each under its own name (MP_FUNC_REGISTER("t.pid", pool_task_pid)). */
#ifndef MP_TEST_POOL_UTIL_H
#define MP_TEST_POOL_UTIL_H

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* Fails with code 7 and a message naming the int argument (0 when the argument is not an int). */
static inline int pool_task_fail(const void *arg, size_t len, mp_task_result *res)
{
    int x = 0;
    if (len == sizeof x) memcpy(&x, arg, sizeof x);
    return mp_task_fail(res, 7, "bad input %d", x);
}

/* Sleeps the int argument in ms; returns it. */
static inline int pool_task_sleep_ms(const void *arg, size_t len, mp_task_result *res)
{
    (void)len;
    int ms;
    memcpy(&ms, arg, sizeof ms);
    mp_test_sleep_ms(ms);
    return mp_task_result_set(res, &ms, sizeof ms);
}

/* Returns the worker's pid. */
static inline int pool_task_pid(const void *arg, size_t len, mp_task_result *res)
{
    (void)arg;
    (void)len;
    pid_t pid = getpid();
    return mp_task_result_set(res, &pid, sizeof pid);
}

#endif
