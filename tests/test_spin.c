/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 */
/* test_spin.c - the busy-waiting switch: MPROC_SPIN read once, mp_spin_set, and that a switched
 * off process gets a spin budget of 0 for a peer on another CPU (what every waiter asks before it
 * spins). Each case runs in a fresh child, since the environment is read only at the first use. */
#include <sched.h>
#include <stdlib.h>

#include "mproc.h"
#include "mp_test.h"
#include "platform/platform.h"

/* A CPU we may run on other than the current one, or -1 on a one-CPU machine. */
static int other_cpu(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    int me = sched_getcpu();
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set) && c != me) return c;
    return -1;
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

static const struct CMUnitTest tests[] = {
    MP_TEST(env_zero_turns_spinning_off),
    MP_TEST(spinning_is_on_by_default),
    MP_TEST(environment_is_read_once),
    MP_TEST(set_overrides_the_environment),
    MP_TEST(forked_children_inherit_the_setting),
};
MP_TEST_MAIN(tests)
