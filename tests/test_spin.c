/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 */
/* test_spin.c - the busy-waiting switches: MPROC_SPIN read once, mp_spin_set, and that a switched
 * off process gets a spin budget of 0 for a peer on another CPU (what every waiter asks before it
 * spins); the per-queue-handle switch (mp_queue_set_spin) and the per-pool one
 * (mp_pool_options.spin), read back, obeyed by the waits, overruled by the program-wide switch.
 * Each case runs in a fresh child, since the environment is read only at the first use. */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/pool_internal.h"
#include "../src/queue_internal.h"
#include "mproc.h"
#include "mp_test.h"
#include "platform/platform.h"

/* A CPU we may run on other than the current one, or -1 on a one-CPU machine. */
/* A CPU other than the caller's, which is pinned to the one it runs on now: unpinned, the
 * caller could migrate to the returned CPU before it asks for a spin budget (seen as a flaky
 * failure: a peer on our own CPU rightly gets no spinning). */
static int other_cpu(void)
{
    static int cached = -2; /* a later call in the same (pinned) process gives the same answer */
    if (cached != -2) return cached;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    int me = sched_getcpu();
    if (me < 0) return -1;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(me, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) return -1;
    cached = -1;
    for (int c = 0; c < CPU_SETSIZE && cached < 0; c++)
        if (CPU_ISSET(c, &set) && c != me) cached = c;
    return cached;
}

/* Runs fn in a child whose MPROC_SPIN is env (NULL: unset); fn reports by its exit code. */
static void in_child(const char *env, void (*fn)(void))
{
    pid_t pid = mp_test_fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (env)
            setenv("MPROC_SPIN", env, 1);
        else
            unsetenv("MPROC_SPIN");
        fn();
        mp_test_child_exit(0);
    }
    assert_child_ok(pid);
}

static void expect_off(void)
{
    MP_CHILD_CHECK(mp_spin_get() == 0);
    MP_CHILD_CHECK(mp__spin_budget(other_cpu()) == 0);
    MP_CHILD_CHECK(mp__spin_budget(-1) == 0);
}

static void expect_on(void)
{
    MP_CHILD_CHECK(mp_spin_get() == 1);
    /* On one CPU there is never anything to spin for, switch or not. */
    if (other_cpu() >= 0) MP_CHILD_CHECK(mp__spin_budget(other_cpu()) > 0);
}

static void env_zero_turns_spinning_off(void **state)
{
    in_child("0", expect_off);
    in_child("off", expect_off);
    in_child("FALSE", expect_off);
    in_child("no", expect_off);
}

static void spinning_is_on_by_default(void **state)
{
    in_child(NULL, expect_on);
    in_child("1", expect_on);
    in_child("", expect_on);
}

/* The first budget asked for decides; changing the environment later has no effect. */
static void env_is_read_once(void)
{
    (void)mp__spin_budget(other_cpu());
    setenv("MPROC_SPIN", "1", 1);
    expect_off();
}

static void environment_is_read_once(void **state)
{
    in_child("0", env_is_read_once);
}

static void set_overrides(void)
{
    mp_spin_set(1);
    expect_on();
    mp_spin_set(0);
    expect_off();
    mp_spin_set(7); /* any non-zero value means on */
    expect_on();
}

static void set_overrides_the_environment(void **state)
{
    in_child("0", set_overrides);
    in_child(NULL, set_overrides);
}

/* A forked child keeps the parent's setting; it does not read the environment again. */
static void fork_inherits(void)
{
    mp_spin_set(0);
    setenv("MPROC_SPIN", "1", 1);
    pid_t pid = mp_test_fork();
    MP_CHILD_CHECK(pid >= 0);
    if (pid == 0) {
        expect_off();
        mp_test_child_exit(0);
    }
    MP_CHILD_CHECK(mp_test_wait_code(pid, mp_test_timeout(10)) == 0);
}

static void forked_children_inherit_the_setting(void **state)
{
    in_child(NULL, fork_inherits);
}

/* ---- per object ------------------------------------------------------------------------------ */

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    MP_CHILD_CHECK(sched_setaffinity(0, sizeof set, &set) == 0);
}

static void queue_switch_reads_back(void)
{
    mp_queue *q = NULL;
    MP_CHILD_CHECK(mp_queue_new(&q, 0, 0) == 0);
    MP_CHILD_CHECK(mp_queue_is_spin_enabled(q) == 1); /* a new handle may spin */
    MP_CHILD_CHECK(mp_queue_set_spin(q, 0) == 0);
    MP_CHILD_CHECK(mp_queue_is_spin_enabled(q) == 0);
    /* A forked child starts with its parent's setting, and changing it there is its own affair. */
    pid_t pid = mp_test_fork();
    MP_CHILD_CHECK(pid >= 0);
    if (pid == 0) {
        MP_CHILD_CHECK(mp_queue_is_spin_enabled(q) == 0);
        MP_CHILD_CHECK(mp_queue_set_spin(q, 1) == 0);
        MP_CHILD_CHECK(mp_queue_free(&q) == 0);
        mp_test_child_exit(0);
    }
    MP_CHILD_CHECK(mp_test_wait_code(pid, mp_test_timeout(10)) == 0);
    MP_CHILD_CHECK(mp_queue_is_spin_enabled(q) == 0);
    MP_CHILD_CHECK(mp_queue_set_spin(q, 7) == 0); /* any non-zero value means on */
    MP_CHILD_CHECK(mp_queue_is_spin_enabled(q) == 1);
    MP_CHILD_CHECK(mp_queue_set_spin(NULL, 1) == -EINVAL);
    MP_CHILD_CHECK(mp_queue_is_spin_enabled(NULL) == -EINVAL);
    MP_CHILD_CHECK(mp_queue_free(&q) == 0);
    MP_CHILD_CHECK(mp_queue_set_spin(q, 1) == -EINVAL); /* q is NULL now */
}

static void queue_setting_reads_back(void **state)
{
    in_child(NULL, queue_switch_reads_back);
}

/* What the queue's waits ask before they spin: the handle's switch, then the program's. */
static void queue_budget_obeys_both(void)
{
    int other = other_cpu();
    mp_queue *a = NULL, *b = NULL;
    MP_CHILD_CHECK(mp_queue_new(&a, 0, 0) == 0);
    MP_CHILD_CHECK(mp_queue_new(&b, 0, 0) == 0);
    MP_CHILD_CHECK(mp_queue_set_spin(b, 0) == 0);
    if (other >= 0) MP_CHILD_CHECK(mp__queue_spin_ns(a, other) > 0);
    MP_CHILD_CHECK(mp__queue_spin_ns(b, other) == 0);
    mp_spin_set(0); /* the program-wide switch wins over a handle that allows spinning */
    MP_CHILD_CHECK(mp__queue_spin_ns(a, other) == 0);
    MP_CHILD_CHECK(mp_queue_is_spin_enabled(a) == 1); /* the handle keeps its own setting */
    mp_spin_set(1);
    if (other >= 0) MP_CHILD_CHECK(mp__queue_spin_ns(a, other) > 0);
    MP_CHILD_CHECK(mp__queue_spin_ns(b, other) == 0);
    MP_CHILD_CHECK(mp_queue_free(&a) == 0);
    MP_CHILD_CHECK(mp_queue_free(&b) == 0);
}

static void queue_handle_switch_and_program_switch(void **state)
{
    in_child(NULL, queue_budget_obeys_both);
}

/* A consumer with spinning off, blocked on an empty queue while its producer runs on another
 * CPU, sleeps: its CPU time over the wait stays far below the time it was blocked. A behaviour
 * check with a generous bound (half the blocked time), not a speed measurement. */
static void queue_consumer_sleeps(void)
{
    int me = sched_getcpu(), other = other_cpu();
    MP_CHILD_CHECK(me >= 0);
    pin(me);
    mp_queue *q = NULL;
    MP_CHILD_CHECK(mp_queue_new(&q, 0, 0) == 0);
    pid_t pid = mp_test_fork();
    MP_CHILD_CHECK(pid >= 0);
    if (pid == 0) {
        if (other >= 0) pin(other);
        MP_CHILD_CHECK(mp_queue_put(q, "a", 1, mp_test_timeout(10)) == 0);
        struct timespec d = {0, 200 * 1000 * 1000};
        while (nanosleep(&d, &d) != 0) {
        }
        MP_CHILD_CHECK(mp_queue_put(q, "b", 1, mp_test_timeout(10)) == 0);
        mp_test_child_exit(0);
    }
    char buf[4];
    size_t n;
    MP_CHILD_CHECK(mp_queue_set_spin(q, 0) == 0);
    /* The first message tells the queue where the producer runs; the wait for the second one is
     * the one measured. */
    MP_CHILD_CHECK(mp_queue_get(q, buf, sizeof buf, &n, mp_test_timeout(10)) == 0);
    double c0 = thread_cpu_s(), w0 = wall_s();
    MP_CHILD_CHECK(mp_queue_get(q, buf, sizeof buf, &n, mp_test_timeout(10)) == 0);
    double cpu = thread_cpu_s() - c0, wall = wall_s() - w0;
    MP_CHILD_CHECK(n == 1 && buf[0] == 'b');
    MP_CHILD_CHECK(mp_test_wait_code(pid, mp_test_timeout(10)) == 0);
    MP_CHILD_CHECK(mp_queue_free(&q) == 0);
    if (cpu >= 0.5 * wall) fprintf(stderr, "consumer used %.3f s of CPU in %.3f s\n", cpu, wall);
    MP_CHILD_CHECK(cpu < 0.5 * wall);
}

static void queue_waiter_with_spin_off_sleeps(void **state)
{
    in_child(NULL, queue_consumer_sleeps);
}

/* ---- pool ---- */

static int spin_test_sleep(const void *arg, size_t len, mp_task_result *res)
{
    (void)arg;
    (void)len;
    (void)res;
    struct timespec d = {0, 200 * 1000 * 1000};
    while (nanosleep(&d, &d) != 0) {
    }
    return 0;
}
MP_FUNC_REGISTER("spin_test_sleep", spin_test_sleep)

static int spin_test_nop(const void *arg, size_t len, mp_task_result *res)
{
    (void)arg;
    (void)len;
    (void)res;
    return 0;
}
MP_FUNC_REGISTER("spin_test_nop", spin_test_nop)

static void pool_options_default_to_spinning(void **state)
{
    mp_pool_options o;
    memset(&o, 0x55, sizeof o);
    mp_pool_options_init(&o);
    assert_int_equal(o.spin, 1);
    mp_pool_options m = MP_POOL_OPTIONS_INIT;
    assert_int_equal(m.spin, 1);
    assert_int_equal(m.processes, MP_POOL_CPUS);
}

/* What a pool's waiters ask before they spin: the pool's option, then the program's switch. */
static void pool_budget_obeys_both(void)
{
    int other = other_cpu();
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = 1;
    mp_pool *on = NULL, *off = NULL;
    MP_CHILD_CHECK(mp_pool_new(&on, &o) == 0);
    o.spin = 0;
    MP_CHILD_CHECK(mp_pool_new(&off, &o) == 0);
    if (other >= 0) MP_CHILD_CHECK(mp__pool_spin_ns(on, other) > 0);
    MP_CHILD_CHECK(mp__pool_spin_ns(off, other) == 0);
    mp_spin_set(0);
    MP_CHILD_CHECK(mp__pool_spin_ns(on, other) == 0);
    mp_spin_set(1);
    MP_CHILD_CHECK(mp__pool_spin_ns(off, other) == 0);
    mp_pool *ps[2] = {on, off};
    for (int i = 0; i < 2; i++) {
        MP_CHILD_CHECK(mp_pool_close(ps[i]) == 0);
        MP_CHILD_CHECK(mp_pool_join(ps[i], mp_test_timeout(10)) == 0);
        MP_CHILD_CHECK(mp_pool_free(&ps[i]) == 0);
    }
}

static void pool_option_and_program_switch(void **state)
{
    in_child(NULL, pool_budget_obeys_both);
}

/* A pool created with spin = 0: its tasks run as usual, and a caller waiting for a slow task on
 * another CPU sleeps (CPU time far below the wait, generous bound as above). */
static void pool_caller_sleeps(void)
{
    int me = sched_getcpu(), other = other_cpu();
    MP_CHILD_CHECK(me >= 0);
    pin(me);
    int cpus[1] = {other >= 0 ? other : me};
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = 1;
    o.cpus = cpus;
    o.ncpus = 1;
    o.spin = 0;
    mp_pool *p = NULL;
    MP_CHILD_CHECK(mp_pool_new(&p, &o) == 0);
    mp_result *r = NULL;
    MP_CHILD_CHECK(mp_pool_apply(p, "spin_test_nop", NULL, 0, &r, mp_test_timeout(10)) == 0);
    MP_CHILD_CHECK(mp_result_free(&r) == 0);
    double c0 = thread_cpu_s(), w0 = wall_s();
    MP_CHILD_CHECK(mp_pool_apply(p, "spin_test_sleep", NULL, 0, &r, mp_test_timeout(10)) == 0);
    double cpu = thread_cpu_s() - c0, wall = wall_s() - w0;
    MP_CHILD_CHECK(mp_result_free(&r) == 0);
    MP_CHILD_CHECK(mp_pool_close(p) == 0);
    MP_CHILD_CHECK(mp_pool_join(p, mp_test_timeout(10)) == 0);
    MP_CHILD_CHECK(mp_pool_free(&p) == 0);
    if (cpu >= 0.5 * wall) fprintf(stderr, "caller used %.3f s of CPU in %.3f s\n", cpu, wall);
    MP_CHILD_CHECK(wall >= 0.1);
    MP_CHILD_CHECK(cpu < 0.5 * wall);
}

static void pool_with_spin_off_sleeps_while_waiting(void **state)
{
    in_child(NULL, pool_caller_sleeps);
}

static const struct CMUnitTest tests[] = {
    MP_TEST(env_zero_turns_spinning_off),
    MP_TEST(spinning_is_on_by_default),
    MP_TEST(environment_is_read_once),
    MP_TEST(set_overrides_the_environment),
    MP_TEST(forked_children_inherit_the_setting),
    MP_TEST(queue_setting_reads_back),
    MP_TEST(queue_handle_switch_and_program_switch),
    MP_TEST(queue_waiter_with_spin_off_sleeps),
    MP_TEST(pool_options_default_to_spinning),
    MP_TEST(pool_option_and_program_switch),
    MP_TEST(pool_with_spin_off_sleeps_while_waiting),
};
MP_TEST_MAIN(tests)
