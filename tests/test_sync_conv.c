/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=90 */
/* test_sync_conv.c - the conventions of issue 11 in sync: only MP_FOREVER waits without limit
 * (any other negative timeout is a poll), "would block" is -ETIMEDOUT (also an owner polling its
 * own Lock), mp_lock_is_locked (Python's locked()), and the Barrier's default timeout and action
 * (Python's Barrier(parties, action, timeout)). */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mp_test.h"
#include "mproc/error.h"
#include "mproc/sync.h"
#include "platform/platform.h"

static double now_s(void)
{
    return (double)mp__now_ns() / 1e9;
}

/* Every wait given a negative timeout other than MP_FOREVER returns at once with -ETIMEDOUT
 * (before issue 11 every negative value meant "forever": these calls hung). */
static void test_negative_timeout_polls(void **state)
{
    const double negs[] = {-0.5, -2.0, -1e-9, -INFINITY, NAN};
    mp_sem *s;
    mp_event *e;
    mp_cond *c;
    mp_lock *l;
    assert_mp_ok(mp_sem_new(&s, 0));
    assert_mp_ok(mp_event_new(&e));
    assert_mp_ok(mp_cond_new(&c, NULL));
    assert_mp_ok(mp_lock_new(&l));
    assert_mp_ok(mp_lock_acquire(l, 0));
    for (size_t i = 0; i < sizeof negs / sizeof negs[0]; i++) {
        double t0 = now_s();
        assert_mp(-ETIMEDOUT, mp_sem_acquire(s, negs[i]));
        assert_mp(-ETIMEDOUT, mp_event_wait(e, negs[i]));
        assert_mp_ok(mp_cond_acquire(c, negs[i]));
        assert_mp(-ETIMEDOUT, mp_cond_wait(c, negs[i]));
        assert_mp_ok(mp_cond_release(c));
        assert_mp(-ETIMEDOUT, mp_lock_acquire(l, negs[i])); /* own Lock, polled: busy */
        mp_barrier *b;
        assert_mp_ok(mp_barrier_new(&b, 2));
        assert_mp(-ETIMEDOUT, mp_barrier_wait(b, negs[i]));
        assert_int_equal(mp_barrier_is_broken(b), 1);
        mp_barrier_free(&b);
        assert_true(now_s() - t0 < 5);
    }
    assert_mp_ok(mp_lock_release(l));
    mp_lock_free(&l);
    mp_cond_free(&c);
    mp_event_free(&e);
    mp_sem_free(&s);
}

/* A child that takes l and holds it until killed; returns once it holds it. */
static pid_t fork_holder(mp_lock *l)
{
    mp_event *ready;
    assert_mp_ok(mp_event_new(&ready));
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        MP_CHILD_CHECK(mp_lock_acquire(l, 0) == 0);
        mp_event_set(ready);
        for (;;)
            pause();
    }
    assert_mp_ok(mp_event_wait(ready, mp_test_timeout(10)));
    mp_event_free(&ready);
    return pid;
}

/* Lock held by another process: a poll and a short wait both give -ETIMEDOUT. Own Lock: poll
 * -ETIMEDOUT, a wait with time left -EDEADLK. */
static void test_would_block_code(void **state)
{
    mp_lock *l;
    assert_mp_ok(mp_lock_new(&l));
    pid_t pid = fork_holder(l);
    assert_mp(-ETIMEDOUT, mp_lock_acquire(l, 0));
    assert_mp(-ETIMEDOUT, mp_lock_acquire(l, 0.02));
    kill(pid, SIGKILL);
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(10)), 128 + SIGKILL);
    assert_mp(-EOWNERDEAD, mp_lock_acquire(l, 0));
    assert_mp(-ETIMEDOUT, mp_lock_acquire(l, 0));
    assert_mp(-EDEADLK, mp_lock_acquire(l, 0.02));
    assert_mp_ok(mp_lock_release(l));
    mp_lock_free(&l);
}

/* mp_lock_is_locked: held by anyone (another process too), not held, a dead holder's lock. */
static void check_is_locked(mp_lock *l)
{
    assert_int_equal(mp_lock_is_locked(l), 0);
    assert_mp_ok(mp_lock_acquire(l, 0));
    assert_int_equal(mp_lock_is_locked(l), 1);
    if (mp_lock_is_recursive(l) == 1) {
        assert_mp_ok(mp_lock_acquire(l, 0));
        assert_mp_ok(mp_lock_release(l));
        assert_int_equal(mp_lock_is_locked(l), 1);
    }
    pid_t pid = mp_test_fork();
    if (pid == 0) { /* sees the parent's hold, without owning it */
        MP_CHILD_CHECK(mp_lock_is_locked(l) == 1 && mp_lock_is_owned(l) == 0);
        mp_test_child_exit(0);
    }
    assert_child_ok(pid);
    assert_mp_ok(mp_lock_release(l));
    assert_int_equal(mp_lock_is_locked(l), 0);
    pid = fork_holder(l);
    assert_int_equal(mp_lock_is_locked(l), 1);
    assert_int_equal(mp_lock_is_owned(l), 0);
    kill(pid, SIGKILL);
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(10)), 128 + SIGKILL);
    assert_int_equal(mp_lock_is_locked(l), 0); /* its holder is gone */
    assert_mp(-EOWNERDEAD, mp_lock_acquire(l, 0));
    assert_int_equal(mp_lock_is_locked(l), 1);
    assert_mp_ok(mp_lock_release(l));
}

static void test_lock_is_locked(void **state)
{
    mp_lock *l;
    assert_mp_ok(mp_lock_new(&l));
    check_is_locked(l);
    mp_lock_free(&l);
    assert_mp_ok(mp_rlock_new(&l));
    check_is_locked(l);
    mp_lock_free(&l);
    assert_mp(-EINVAL, mp_lock_is_locked(NULL));
}

/* ---- Barrier: default timeout and action ---------------------------------------------------- */

/* Shared between the parties: what the action saw and how often it ran. */
typedef struct bar_log {
    int runs;          /* action calls */
    int released_seen; /* parties released (counted by each after its wait) when it ran */
    int released;
    int fail_at; /* the run (1-based) that fails, 0: none */
} bar_log;

static int log_action(void *arg)
{
    bar_log *g = arg;
    int run = __atomic_add_fetch(&g->runs, 1, __ATOMIC_SEQ_CST);
    /* Before any party of this generation returns: the released count is a whole number of
     * generations behind. */
    __atomic_store_n(&g->released_seen, __atomic_load_n(&g->released, __ATOMIC_SEQ_CST),
                     __ATOMIC_SEQ_CST);
    usleep(20000); /* the others are still waiting for it */
    return run == g->fail_at ? -EPROTO : 0;
}

static void test_barrier_action_once_before_release(void **state)
{
    bar_log *g = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(g != MAP_FAILED);
    mp_barrier_options o;
    mp_barrier_options_init(&o);
    assert_true(o.timeout == MP_FOREVER && o.action == NULL);
    o.action = log_action;
    o.action_arg = g;
    mp_barrier *b;
    assert_mp_ok(mp_barrier_new_opts(&b, 3, &o));
    enum { ROUNDS = 10 };
    pid_t pids[2];
    for (int k = 0; k < 2; k++) {
        pids[k] = mp_test_fork();
        if (pids[k] == 0) {
            for (int i = 0; i < ROUNDS; i++) {
                MP_CHILD_CHECK(mp_barrier_wait(b, 10) >= 0);
                /* The action of this generation has run, and before anyone was released. */
                MP_CHILD_CHECK(__atomic_load_n(&g->runs, __ATOMIC_SEQ_CST) >= 2 * i + 1);
                __atomic_add_fetch(&g->released, 1, __ATOMIC_SEQ_CST);
                MP_CHILD_CHECK(mp_barrier_wait(b, 10) >= 0); /* keep the rounds apart */
            }
            mp_test_child_exit(0);
        }
    }
    for (int i = 0; i < ROUNDS; i++) {
        assert_true(mp_barrier_wait(b, mp_test_timeout(10)) >= 0);
        assert_int_equal(__atomic_load_n(&g->runs, __ATOMIC_SEQ_CST), 2 * i + 1);
        assert_int_equal(g->released_seen, 3 * i); /* nobody of this round out yet */
        __atomic_add_fetch(&g->released, 1, __ATOMIC_SEQ_CST);
        assert_true(mp_barrier_wait(b, mp_test_timeout(10)) >= 0);
    }
    for (int k = 0; k < 2; k++)
        assert_child_ok(pids[k]);
    assert_int_equal(g->runs, 2 * ROUNDS); /* exactly once per generation */
    mp_barrier_free(&b);
    munmap(g, 4096);
}

/* An action that fails breaks the barrier: the party that ran it gets the action's code, the
 * others MP_EBROKEN, and the barrier stays broken until reset. */
static void test_barrier_action_fails_breaks(void **state)
{
    bar_log *g = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(g != MAP_FAILED);
    g->fail_at = 1;
    mp_barrier_options o = MP_BARRIER_OPTIONS_INIT;
    o.action = log_action;
    o.action_arg = g;
    mp_barrier *b;
    assert_mp_ok(mp_barrier_new_opts(&b, 2, &o));
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        int r = mp_barrier_wait(b, 10);
        MP_CHILD_CHECK(r == MP_EBROKEN || r == -EPROTO);
        mp_test_child_exit(r == -EPROTO ? 1 : 0);
    }
    int r = mp_barrier_wait(b, mp_test_timeout(10));
    assert_true(r == MP_EBROKEN || r == -EPROTO);
    int child = mp_test_wait_code(pid, mp_test_timeout(10));
    assert_int_equal((r == -EPROTO) + child, 1); /* exactly one party ran it */
    assert_int_equal(g->runs, 1);
    assert_int_equal(mp_barrier_is_broken(b), 1);
    assert_mp(MP_EBROKEN, mp_barrier_wait(b, 0));
    assert_mp_ok(mp_barrier_reset(b));
    /* One party: it runs the action itself; a positive failure gives MP_EBROKEN. */
    mp_barrier_free(&b);
    g->runs = 0;
    g->fail_at = 0;
    assert_mp_ok(mp_barrier_new_opts(&b, 1, &o));
    assert_int_equal(mp_barrier_wait(b, 0), 0);
    assert_int_equal(g->runs, 1);
    mp_barrier_free(&b);
    munmap(g, 4096);
}

static int die_action(void *arg)
{
    raise(SIGKILL);
    return 0;
}

/* A party killed inside the action breaks the barrier: the waiters, even without a limit, get
 * MP_EBROKEN instead of hanging on the dead party's internal mutex. */
static void test_barrier_action_dies(void **state)
{
    mp_barrier_options o = MP_BARRIER_OPTIONS_INIT;
    o.action = die_action;
    mp_barrier *b;
    assert_mp_ok(mp_barrier_new_opts(&b, 2, &o));
    pid_t waiter = mp_test_fork();
    if (waiter == 0) {
        MP_CHILD_CHECK(mp_barrier_wait(b, MP_FOREVER) == MP_EBROKEN);
        mp_test_child_exit(0);
    }
    for (int ms = 0; mp_barrier_n_waiting(b) < 1 && ms < 10000; ms++)
        usleep(1000);
    pid_t actor = mp_test_fork();
    if (actor == 0) {
        mp_barrier_wait(b, MP_FOREVER);
        mp_test_child_exit(1);
    }
    assert_int_equal(mp_test_wait_code(actor, mp_test_timeout(10)), 128 + SIGKILL);
    assert_child_ok(waiter);
    assert_int_equal(mp_barrier_is_broken(b), 1);
    mp_barrier_free(&b);
}

/* The default timeout given at creation: mp_barrier_wait_default uses it (and breaks the
 * barrier when it expires, as any timeout); mp_barrier_wait's own timeout is unaffected. */
static void test_barrier_default_timeout(void **state)
{
    mp_barrier_options o;
    mp_barrier_options_init(&o);
    o.timeout = 0.1;
    mp_barrier *b;
    assert_mp_ok(mp_barrier_new_opts(&b, 2, &o));
    double t0 = now_s();
    assert_mp(-ETIMEDOUT, mp_barrier_wait_default(b));
    double dt = now_s() - t0;
    assert_true(dt >= 0.09);
    assert_int_equal(mp_barrier_is_broken(b), 1);
    assert_mp_ok(mp_barrier_reset(b));
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        MP_CHILD_CHECK(mp_barrier_wait_default(b) >= 0);
        mp_test_child_exit(0);
    }
    assert_true(mp_barrier_wait(b, mp_test_timeout(10)) >= 0);
    assert_child_ok(pid);
    mp_barrier_free(&b);

    /* In place: the default lives in the shared state, an attacher uses it too. */
    char *mem =
        mmap(NULL, MP_SYNC_SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    mp_barrier *b2;
    assert_mp_ok(mp_barrier_init_at_opts(&b, mem, MP_SYNC_SHM_SIZE, 2, &o));
    assert_mp_ok(mp_barrier_attach_at(&b2, mem, MP_SYNC_SHM_SIZE));
    assert_mp(-ETIMEDOUT, mp_barrier_wait_default(b2));
    mp_barrier_free(&b2);
    mp_barrier_free(&b);
    /* With an action, every handle needs one. */
    o.action = log_action;
    assert_mp_ok(mp_barrier_init_at_opts(&b, mem, MP_SYNC_SHM_SIZE, 2, &o));
    assert_mp(-EINVAL, mp_barrier_attach_at(&b2, mem, MP_SYNC_SHM_SIZE));
    assert_mp_ok(mp_barrier_attach_at_opts(&b2, mem, MP_SYNC_SHM_SIZE, &o));
    mp_barrier_free(&b2);
    mp_barrier_free(&b);
    munmap(mem, MP_SYNC_SHM_SIZE);

    o.timeout = NAN;
    assert_mp(-EINVAL, mp_barrier_new_opts(&b, 2, &o));
    assert_mp(-EINVAL, mp_barrier_wait_default(NULL));
    mp_barrier_options_init(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(test_negative_timeout_polls),
        MP_TEST(test_would_block_code),
        MP_TEST(test_lock_is_locked),
        MP_TEST(test_barrier_action_once_before_release),
        MP_TEST(test_barrier_action_fails_breaks),
        MP_TEST(test_barrier_action_dies),
        MP_TEST(test_barrier_default_timeout),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
