/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=90 */
/* test_sync.c - Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition, Barrier: behaviour
 * across fork, timeouts, holders and participants SIGKILLed inside, in-place (init_at/attach_at)
 * objects, and bad input to every call. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "mp_test.h"
#include "mproc/error.h"
#include "mproc/sync.h"
#include "platform/platform.h"
#include "sync_internal.h"

static double now_s(void)
{
    return (double)mp__now_ns() / 1e9;
}

/* A child that signals `ready`, then sleeps until killed. */
static void park(mp_event *ready)
{
    mp_event_set(ready);
    for (;;)
        pause();
}

static void kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(10)), 128 + SIGKILL);
}

/* ---- Lock ---------------------------------------------------------------------------------- */

static void test_lock_basic(void **state)
{
    mp_lock *l;
    assert_mp_ok(mp_lock_new(&l));
    assert_int_equal(mp_lock_is_recursive(l), 0);
    assert_int_equal(mp_lock_is_owned(l), 0);
    assert_mp(MP_ENOTOWNER, mp_lock_release(l));
    assert_mp_ok(mp_lock_acquire(l, MP_FOREVER));
    assert_int_equal(mp_lock_is_owned(l), 1);
    assert_mp(-ETIMEDOUT, mp_lock_acquire(l, 0)); /* a poll: busy, like any held lock */
    assert_mp(-EDEADLK, mp_lock_acquire(l, 0.05));
    assert_mp(-EDEADLK, mp_lock_acquire(l, MP_FOREVER));
    assert_mp_ok(mp_lock_release(l));
    assert_mp(MP_ENOTOWNER, mp_lock_release(l));
    assert_mp_ok(mp_lock_acquire(l, 0));
    assert_mp(-EBUSY, mp_lock_free(&l)); /* held: its memory must stay mapped */
    assert_non_null(l);
    assert_mp_ok(mp_lock_release(l));
    assert_mp_ok(mp_lock_free(&l));
    assert_null(l);
    mp_cond *c;
    assert_mp_ok(mp_cond_new(&c, NULL));
    assert_mp_ok(mp_cond_acquire(c, 0));
    assert_mp(-EBUSY, mp_cond_free(&c));
    assert_mp_ok(mp_cond_release(c));
    assert_mp_ok(mp_cond_free(&c));
}

static void test_lock_across_fork_and_timeout(void **state)
{
    mp_lock *l;
    mp_event *ready, *done;
    assert_mp_ok(mp_lock_new(&l));
    assert_mp_ok(mp_event_new(&ready));
    assert_mp_ok(mp_event_new(&done));
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        MP_CHILD_CHECK(mp_lock_acquire(l, 5) == 0);
        mp_event_set(ready);
        MP_CHILD_CHECK(mp_event_wait(done, 10) == 0);
        MP_CHILD_CHECK(mp_lock_release(l) == 0);
        mp_test_child_exit(0);
    }
    assert_mp_ok(mp_event_wait(ready, mp_test_timeout(5)));
    assert_int_equal(mp_lock_is_owned(l), 0);
    assert_mp(MP_ENOTOWNER, mp_lock_release(l)); /* the child holds it, not us */
    assert_mp(-ETIMEDOUT, mp_lock_acquire(l, 0));
    double t0 = now_s();
    assert_mp(-ETIMEDOUT, mp_lock_acquire(l, 0.1));
    assert_true(now_s() - t0 >= 0.09);
    assert_mp_ok(mp_event_set(done));
    assert_mp_ok(mp_lock_acquire(l, mp_test_timeout(5)));
    assert_mp_ok(mp_lock_release(l));
    assert_child_ok(pid);
    mp_event_free(&ready);
    mp_event_free(&done);
    mp_lock_free(&l);
}

/* A child forked while the parent holds the lock does not hold it. */
static void test_lock_fork_while_held(void **state)
{
    mp_lock *l;
    assert_mp_ok(mp_lock_new(&l));
    assert_mp_ok(mp_lock_acquire(l, 0));
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        MP_CHILD_CHECK(mp_lock_is_owned(l) == 0);
        MP_CHILD_CHECK(mp_lock_release(l) == MP_ENOTOWNER);
        MP_CHILD_CHECK(mp_lock_acquire(l, 0.02) == -ETIMEDOUT);
        mp_test_child_exit(0);
    }
    assert_child_ok(pid);
    assert_mp_ok(mp_lock_release(l));
    mp_lock_free(&l);
}

static void test_rlock(void **state)
{
    mp_lock *l;
    assert_mp_ok(mp_rlock_new(&l));
    assert_int_equal(mp_lock_is_recursive(l), 1);
    for (int i = 0; i < 3; i++)
        assert_mp_ok(mp_lock_acquire(l, i == 0 ? MP_FOREVER : 0));
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        MP_CHILD_CHECK(mp_lock_release(l) == MP_ENOTOWNER);
        MP_CHILD_CHECK(mp_lock_acquire(l, 0.02) == -ETIMEDOUT);
        mp_test_child_exit(0);
    }
    assert_child_ok(pid);
    for (int i = 0; i < 3; i++)
        assert_mp_ok(mp_lock_release(l));
    assert_mp(MP_ENOTOWNER, mp_lock_release(l));
    mp_lock_free(&l);
}

/* The holder is SIGKILLed: the next acquirer gets the lock and -EOWNERDEAD, once. */
static void owner_died(bool recursive, int levels, double timeout)
{
    mp_lock *l;
    mp_event *ready;
    assert_mp_ok(recursive ? mp_rlock_new(&l) : mp_lock_new(&l));
    assert_mp_ok(mp_event_new(&ready));
    int *data = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(data != MAP_FAILED);
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        for (int i = 0; i < levels; i++)
            MP_CHILD_CHECK(mp_lock_acquire(l, 5) == 0);
        data[0] = 1; /* a half-done update */
        park(ready);
    }
    assert_mp_ok(mp_event_wait(ready, mp_test_timeout(5)));
    assert_mp(-ETIMEDOUT, mp_lock_acquire(l, 0));
    kill_and_reap(pid);
    assert_mp(-EOWNERDEAD, mp_lock_acquire(l, timeout));
    assert_int_equal(mp_lock_is_owned(l), 1);
    data[0] = 0; /* repaired */
    assert_mp_ok(mp_lock_release(l));
    assert_mp(MP_ENOTOWNER, mp_lock_release(l)); /* the recursion count restarted at 1 */
    assert_mp_ok(mp_lock_acquire(l, 0));
    assert_mp_ok(mp_lock_release(l));
    munmap(data, 4096);
    mp_event_free(&ready);
    mp_lock_free(&l);
}

static void test_lock_owner_died(void **state)
{
    owner_died(false, 1, MP_FOREVER);
    owner_died(false, 1, 0);
    owner_died(false, 1, 1.0);
}

static void test_rlock_owner_died_recursive(void **state)
{
    owner_died(true, 3, MP_FOREVER);
    owner_died(true, 2, 0.5);
}

/* A waiter blocked in acquire gets the lock when the holder dies (no hang). */
static void test_lock_owner_died_wakes_waiter(void **state)
{
    mp_lock *l;
    assert_mp_ok(mp_lock_new(&l));
    mp_event *ready;
    assert_mp_ok(mp_event_new(&ready));
    pid_t holder = mp_test_fork();
    if (holder == 0) {
        MP_CHILD_CHECK(mp_lock_acquire(l, 5) == 0);
        park(ready);
    }
    assert_mp_ok(mp_event_wait(ready, mp_test_timeout(5)));
    pid_t waiter = mp_test_fork();
    if (waiter == 0) {
        MP_CHILD_CHECK(mp_lock_acquire(l, 10) == -EOWNERDEAD);
        MP_CHILD_CHECK(mp_lock_release(l) == 0);
        mp_test_child_exit(0);
    }
    usleep(50000);
    kill_and_reap(holder);
    assert_child_ok(waiter);
    mp_event_free(&ready);
    mp_lock_free(&l);
}

/* A thread that exits holding the lock is a dead holder too. */
static void *hold_and_exit(void *arg)
{
    return (void *)(intptr_t)mp_lock_acquire(arg, 1);
}

static void test_lock_owner_thread_exited(void **state)
{
    mp_lock *l;
    assert_mp_ok(mp_lock_new(&l));
    pthread_t t;
    void *res;
    assert_int_equal(pthread_create(&t, NULL, hold_and_exit, l), 0);
    assert_int_equal(pthread_join(t, &res), 0);
    assert_int_equal((intptr_t)res, 0);
    assert_int_equal(mp_lock_is_owned(l), 0);
    assert_mp(-EOWNERDEAD, mp_lock_acquire(l, 1));
    assert_mp_ok(mp_lock_release(l));
    mp_lock_free(&l);
}

/* ---- Semaphore ----------------------------------------------------------------------------- */

static void test_semaphore(void **state)
{
    mp_sem *s;
    unsigned v;
    assert_mp_ok(mp_sem_new(&s, 2));
    assert_mp_ok(mp_sem_get_value(s, &v));
    assert_int_equal(v, 2);
    assert_mp_ok(mp_sem_acquire(s, 0));
    assert_mp_ok(mp_sem_acquire(s, MP_FOREVER));
    assert_mp(-ETIMEDOUT, mp_sem_acquire(s, 0));
    double t0 = now_s();
    assert_mp(-ETIMEDOUT, mp_sem_acquire(s, 0.1));
    assert_true(now_s() - t0 >= 0.09);
    /* An unbounded semaphore may go above its initial value. */
    for (int i = 0; i < 5; i++)
        assert_mp_ok(mp_sem_release(s));
    assert_mp_ok(mp_sem_get_value(s, &v));
    assert_int_equal(v, 5);
    for (int i = 0; i < 5; i++)
        assert_mp_ok(mp_sem_acquire(s, 0));
    /* A release in another process wakes a waiter. */
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        MP_CHILD_CHECK(mp_sem_acquire(s, 10) == 0);
        MP_CHILD_CHECK(mp_sem_acquire(s, 10) == 0);
        mp_test_child_exit(0);
    }
    usleep(20000);
    assert_mp_ok(mp_sem_release(s));
    assert_mp_ok(mp_sem_release(s));
    assert_child_ok(pid);
    assert_mp_ok(mp_sem_get_value(s, &v));
    assert_int_equal(v, 0);
    assert_mp_ok(mp_sem_free(&s));
    assert_null(s);
    assert_mp(-EINVAL, mp_sem_new(&s, MP_SEM_VALUE_MAX + 1u));
    assert_mp_ok(mp_sem_new(&s, MP_SEM_VALUE_MAX));
    assert_mp(-EOVERFLOW, mp_sem_release(s));
    mp_sem_free(&s);
}

static void test_bounded_semaphore_over_release(void **state)
{
    mp_sem *s;
    unsigned v;
    assert_mp_ok(mp_bsem_new(&s, 2));
    assert_mp(MP_EOVERRELEASE, mp_sem_release(s));
    assert_mp_ok(mp_sem_acquire(s, 0));
    assert_mp_ok(mp_sem_release(s));
    assert_mp(MP_EOVERRELEASE, mp_sem_release(s));
    assert_mp_ok(mp_sem_get_value(s, &v));
    assert_int_equal(v, 2); /* the failed release changed nothing */
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        MP_CHILD_CHECK(mp_sem_release(s) == MP_EOVERRELEASE);
        MP_CHILD_CHECK(mp_sem_acquire(s, 1) == 0);
        MP_CHILD_CHECK(mp_sem_release(s) == 0);
        mp_test_child_exit(0);
    }
    assert_child_ok(pid);
    mp_sem_free(&s);
}

/* A participant SIGKILLed while blocked in acquire, or after taking a unit, never hangs the rest.
 */
static void test_semaphore_participant_killed(void **state)
{
    mp_sem *s;
    mp_event *ready;
    assert_mp_ok(mp_sem_new(&s, 1));
    assert_mp_ok(mp_event_new(&ready));
    pid_t holder = mp_test_fork();
    if (holder == 0) {
        MP_CHILD_CHECK(mp_sem_acquire(s, 5) == 0);
        park(ready);
    }
    assert_mp_ok(mp_event_wait(ready, mp_test_timeout(5)));
    pid_t waiter = mp_test_fork();
    if (waiter == 0) {
        mp_sem_acquire(s, MP_FOREVER);
        mp_test_child_exit(1);
    }
    usleep(50000);
    kill_and_reap(waiter); /* killed inside acquire */
    kill_and_reap(holder); /* killed holding a unit: that unit is gone (no owner) */
    assert_mp(-ETIMEDOUT, mp_sem_acquire(s, 0.05));
    assert_mp_ok(mp_sem_release(s));
    pid_t again = mp_test_fork();
    if (again == 0) {
        MP_CHILD_CHECK(mp_sem_acquire(s, 5) == 0);
        MP_CHILD_CHECK(mp_sem_acquire(s, 5) == 0);
        mp_test_child_exit(0);
    }
    usleep(20000);
    assert_mp_ok(mp_sem_release(s));
    assert_child_ok(again);
    mp_event_free(&ready);
    mp_sem_free(&s);
}

/* ---- Event --------------------------------------------------------------------------------- */

static void test_event(void **state)
{
    mp_event *e;
    assert_mp_ok(mp_event_new(&e));
    assert_int_equal(mp_event_is_set(e), 0);
    assert_mp(-ETIMEDOUT, mp_event_wait(e, 0));
    double t0 = now_s();
    assert_mp(-ETIMEDOUT, mp_event_wait(e, 0.1));
    assert_true(now_s() - t0 >= 0.09);
    pid_t pids[3];
    for (int i = 0; i < 3; i++) {
        pids[i] = mp_test_fork();
        if (pids[i] == 0) {
            MP_CHILD_CHECK(mp_event_wait(e, 10) == 0);
            MP_CHILD_CHECK(mp_event_is_set(e) == 1);
            mp_test_child_exit(0);
        }
    }
    usleep(30000);
    assert_mp_ok(mp_event_set(e));
    assert_mp_ok(mp_event_set(e));
    for (int i = 0; i < 3; i++)
        assert_child_ok(pids[i]);
    assert_mp_ok(mp_event_wait(e, 0));
    assert_mp_ok(mp_event_clear(e));
    assert_int_equal(mp_event_is_set(e), 0);
    assert_mp(-ETIMEDOUT, mp_event_wait(e, 0.01));
    mp_event_free(&e);
}

/* ---- Condition ----------------------------------------------------------------------------- */

typedef struct shared_box {
    int turn;
    int items;
    int count;
} shared_box;

static shared_box *box_new(void)
{
    shared_box *b = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(b != MAP_FAILED);
    return b;
}

static bool has_items(void *arg)
{
    return ((shared_box *)arg)->items > 0;
}

static void test_condition_basic(void **state)
{
    mp_cond *c;
    assert_mp_ok(mp_cond_new(&c, NULL));
    assert_non_null(mp_cond_lock(c));
    assert_int_equal(mp_lock_is_recursive(mp_cond_lock(c)), 1);
    assert_mp(MP_ENOTOWNER, mp_cond_wait(c, 0));
    assert_mp(MP_ENOTOWNER, mp_cond_notify(c, 1));
    assert_mp(MP_ENOTOWNER, mp_cond_notify_all(c));
    shared_box *b = box_new();
    assert_mp(MP_ENOTOWNER, mp_cond_wait_for(c, has_items, b, 0));
    assert_mp_ok(mp_cond_acquire(c, MP_FOREVER));
    assert_mp(-EINVAL, mp_cond_notify(c, 0));
    assert_mp_ok(mp_cond_notify(c, 1)); /* nobody waits: fine */
    double t0 = now_s();
    assert_mp(-ETIMEDOUT, mp_cond_wait(c, 0.1));
    assert_true(now_s() - t0 >= 0.09);
    assert_int_equal(mp_lock_is_owned(mp_cond_lock(c)), 1);
    assert_mp(-ETIMEDOUT, mp_cond_wait(c, 0));
    assert_mp(-ETIMEDOUT, mp_cond_wait_for(c, has_items, b, 0.05));
    assert_int_equal(mp_lock_is_owned(mp_cond_lock(c)), 1);
    b->items = 1;
    assert_mp_ok(mp_cond_wait_for(c, has_items, b, 0));
    assert_mp_ok(mp_cond_release(c));
    assert_mp(MP_ENOTOWNER, mp_cond_release(c));
    munmap(b, 4096);
    mp_cond_free(&c);
}

/* Producer in the parent, consumer in a child, with the predicate form. */
static void test_condition_wait_for_across_fork(void **state)
{
    mp_cond *c;
    assert_mp_ok(mp_cond_new(&c, NULL));
    shared_box *b = box_new();
    enum { N = 200 };
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        for (int i = 0; i < N; i++) {
            MP_CHILD_CHECK(mp_cond_acquire(c, 5) == 0);
            MP_CHILD_CHECK(mp_cond_wait_for(c, has_items, b, 5) == 0);
            b->items--;
            b->count++;
            MP_CHILD_CHECK(mp_cond_notify(c, 1) == 0);
            MP_CHILD_CHECK(mp_cond_release(c) == 0);
        }
        mp_test_child_exit(0);
    }
    for (int i = 0; i < N; i++) {
        assert_mp_ok(mp_cond_acquire(c, mp_test_timeout(5)));
        b->items++;
        assert_mp_ok(mp_cond_notify(c, 1));
        assert_mp_ok(mp_cond_release(c));
    }
    assert_child_ok(pid);
    assert_int_equal(b->count, N);
    munmap(b, 4096);
    mp_cond_free(&c);
}

static void test_condition_notify_all(void **state)
{
    mp_lock *l;
    assert_mp_ok(mp_lock_new(&l));
    mp_cond *c;
    assert_mp_ok(mp_cond_new(&c, l)); /* over a plain Lock */
    assert_ptr_equal(mp_cond_lock(c), l);
    shared_box *b = box_new();
    enum { K = 4 };
    pid_t pids[K];
    for (int i = 0; i < K; i++) {
        pids[i] = mp_test_fork();
        if (pids[i] == 0) {
            MP_CHILD_CHECK(mp_lock_acquire(l, 5) == 0);
            b->count++;
            int r = 0;
            while (b->turn == 0 && r == 0)
                r = mp_cond_wait(c, 10);
            MP_CHILD_CHECK(r == 0);
            MP_CHILD_CHECK(mp_lock_release(l) == 0);
            mp_test_child_exit(0);
        }
    }
    for (;;) { /* wait until every child is inside wait */
        assert_mp_ok(mp_lock_acquire(l, mp_test_timeout(5)));
        int n = b->count;
        if (n == K) break;
        mp_lock_release(l);
        usleep(1000);
    }
    b->turn = 1;
    assert_mp_ok(mp_cond_notify_all(c));
    assert_mp_ok(mp_lock_release(l));
    for (int i = 0; i < K; i++)
        assert_child_ok(pids[i]);
    munmap(b, 4096);
    mp_cond_free(&c);
    mp_lock_free(&l);
}

/* Waiting with an RLock held at 3 levels releases all of them and restores them afterwards. */
static void test_condition_rlock_levels(void **state)
{
    mp_cond *c;
    assert_mp_ok(mp_cond_new(&c, NULL));
    mp_lock *l = mp_cond_lock(c);
    shared_box *b = box_new();
    for (int i = 0; i < 3; i++)
        assert_mp_ok(mp_lock_acquire(l, 1));
    pid_t pid = mp_test_fork();
    if (pid == 0) { /* can only get in if the waiter gave up every level */
        MP_CHILD_CHECK(mp_lock_acquire(l, 10) == 0);
        b->items = 1;
        MP_CHILD_CHECK(mp_cond_notify(c, 1) == 0);
        MP_CHILD_CHECK(mp_lock_release(l) == 0);
        mp_test_child_exit(0);
    }
    assert_mp_ok(mp_cond_wait_for(c, has_items, b, mp_test_timeout(10)));
    assert_child_ok(pid);
    for (int i = 0; i < 3; i++)
        assert_mp_ok(mp_lock_release(l));
    assert_mp(MP_ENOTOWNER, mp_lock_release(l));
    munmap(b, 4096);
    mp_cond_free(&c);
}

/* A process killed while holding the condition's lock: the waiter wakes holding it with
 * -EOWNERDEAD. A process killed while waiting does not disturb notify. */
static void test_condition_participant_killed(void **state)
{
    mp_cond *c;
    mp_event *ready;
    assert_mp_ok(mp_cond_new(&c, NULL));
    assert_mp_ok(mp_event_new(&ready));
    pid_t sleeper = mp_test_fork();
    if (sleeper == 0) {
        MP_CHILD_CHECK(mp_cond_acquire(c, 5) == 0);
        mp_event_set(ready);
        mp_cond_wait(c, MP_FOREVER);
        mp_test_child_exit(1);
    }
    assert_mp_ok(mp_event_wait(ready, mp_test_timeout(5)));
    assert_mp_ok(mp_cond_acquire(c, mp_test_timeout(5))); /* the sleeper released it */
    assert_mp_ok(mp_cond_release(c));
    kill_and_reap(sleeper); /* killed inside wait */
    assert_mp_ok(mp_cond_acquire(c, 1));
    pid_t holder = mp_test_fork();
    if (holder == 0) {
        MP_CHILD_CHECK(mp_cond_acquire(c, 10) == 0); /* gets it once the parent waits */
        MP_CHILD_CHECK(mp_cond_notify_all(c) == 0);
        raise(SIGKILL); /* dies holding the lock */
    }
    /* Our wait releases the lock; the holder takes it, notifies us and dies with it. */
    assert_mp(-EOWNERDEAD, mp_cond_wait(c, mp_test_timeout(10)));
    assert_int_equal(mp_test_wait_code(holder, mp_test_timeout(10)), 128 + SIGKILL);
    assert_int_equal(mp_lock_is_owned(mp_cond_lock(c)), 1);
    assert_mp_ok(mp_cond_notify_all(c));
    assert_mp_ok(mp_cond_release(c));
    mp_event_free(&ready);
    mp_cond_free(&c);
}

/* ---- Barrier ------------------------------------------------------------------------------- */

static void test_barrier_indexes_and_generations(void **state)
{
    mp_barrier *b;
    assert_mp_ok(mp_barrier_new(&b, 3));
    assert_int_equal(mp_barrier_parties(b), 3);
    assert_int_equal(mp_barrier_n_waiting(b), 0);
    assert_int_equal(mp_barrier_is_broken(b), 0);
    int *seen = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    enum { ROUNDS = 50 };
    pid_t pids[2];
    for (int k = 0; k < 2; k++) {
        pids[k] = mp_test_fork();
        if (pids[k] == 0) {
            for (int i = 0; i < ROUNDS; i++) {
                int idx = mp_barrier_wait(b, 10);
                MP_CHILD_CHECK(idx >= 0 && idx < 3);
                __atomic_fetch_or(&seen[i], 1 << idx, __ATOMIC_SEQ_CST);
            }
            mp_test_child_exit(0);
        }
    }
    for (int i = 0; i < ROUNDS; i++) {
        int idx = mp_barrier_wait(b, mp_test_timeout(10));
        assert_true(idx >= 0 && idx < 3);
        __atomic_fetch_or(&seen[i], 1 << idx, __ATOMIC_SEQ_CST);
    }
    for (int k = 0; k < 2; k++)
        assert_child_ok(pids[k]);
    for (int i = 0; i < ROUNDS; i++)
        assert_int_equal(seen[i], 7); /* 0, 1 and 2, each once */
    munmap(seen, 4096);
    mp_barrier_free(&b);

    assert_mp_ok(mp_barrier_new(&b, 1));
    assert_int_equal(mp_barrier_wait(b, 0), 0);
    assert_int_equal(mp_barrier_wait(b, 0), 0);
    mp_barrier_free(&b);
}

/* Forks a party that waits on b and must see it broken (MP_EBROKEN); returns once it waits. */
static pid_t fork_broken_waiter(mp_barrier *b)
{
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        MP_CHILD_CHECK(mp_barrier_wait(b, 10) == MP_EBROKEN);
        mp_test_child_exit(0);
    }
    for (int ms = 0; mp_barrier_n_waiting(b) < 1 && ms < 10000; ms++)
        usleep(1000); /* bounded: a child that failed early is caught by assert_child_ok */
    return pid;
}

static void test_barrier_abort_and_reset(void **state)
{
    mp_barrier *b;
    assert_mp_ok(mp_barrier_new(&b, 3));
    pid_t pid = fork_broken_waiter(b);
    assert_mp_ok(mp_barrier_abort(b));
    assert_child_ok(pid);
    assert_int_equal(mp_barrier_is_broken(b), 1);
    assert_mp(MP_EBROKEN, mp_barrier_wait(b, 1));
    assert_mp_ok(mp_barrier_reset(b));
    assert_int_equal(mp_barrier_is_broken(b), 0);
    /* reset while someone waits: the waiter gets MP_EBROKEN, the barrier is usable after. */
    pid = fork_broken_waiter(b);
    assert_mp_ok(mp_barrier_reset(b));
    assert_child_ok(pid);
    assert_int_equal(mp_barrier_is_broken(b), 0);
    pid_t pids[2];
    for (int k = 0; k < 2; k++) {
        pids[k] = mp_test_fork();
        if (pids[k] == 0) {
            MP_CHILD_CHECK(mp_barrier_wait(b, 10) >= 0);
            mp_test_child_exit(0);
        }
    }
    assert_true(mp_barrier_wait(b, mp_test_timeout(10)) >= 0);
    for (int k = 0; k < 2; k++)
        assert_child_ok(pids[k]);
    mp_barrier_free(&b);
}

/* One party's timeout breaks the barrier for all of them. */
static void test_barrier_timeout_breaks_all(void **state)
{
    mp_barrier *b;
    assert_mp_ok(mp_barrier_new(&b, 3));
    pid_t pid = fork_broken_waiter(b);
    double t0 = now_s();
    assert_mp(-ETIMEDOUT, mp_barrier_wait(b, 0.1));
    assert_true(now_s() - t0 >= 0.09);
    assert_child_ok(pid);
    assert_int_equal(mp_barrier_is_broken(b), 1);
    assert_mp(MP_EBROKEN, mp_barrier_wait(b, 0));
    mp_barrier_free(&b);
}

/* A party killed while waiting has arrived: the rest still pass. A party killed inside the
 * internal state breaks the barrier instead of hanging it. */
static void test_barrier_participant_killed(void **state)
{
    mp_barrier *b;
    assert_mp_ok(mp_barrier_new(&b, 3));
    pid_t victim = mp_test_fork();
    if (victim == 0) {
        mp_barrier_wait(b, MP_FOREVER);
        mp_test_child_exit(1);
    }
    while (mp_barrier_n_waiting(b) < 1)
        usleep(1000);
    kill_and_reap(victim);
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        MP_CHILD_CHECK(mp_barrier_wait(b, 10) >= 0);
        mp_test_child_exit(0);
    }
    assert_true(mp_barrier_wait(b, mp_test_timeout(10)) >= 0);
    assert_child_ok(pid);

    mp_event *ready;
    assert_mp_ok(mp_event_new(&ready));
    pid = mp_test_fork();
    if (pid == 0) {
        MP_CHILD_CHECK(pthread_mutex_lock(mp__barrier_mutex(b)) == 0);
        park(ready);
    }
    assert_mp_ok(mp_event_wait(ready, mp_test_timeout(5)));
    kill_and_reap(pid);
    assert_mp(MP_EBROKEN, mp_barrier_wait(b, 1));
    assert_int_equal(mp_barrier_is_broken(b), 1);
    assert_mp_ok(mp_barrier_reset(b));
    assert_int_equal(mp_barrier_is_broken(b), 0);
    mp_event_free(&ready);
    mp_barrier_free(&b);
}

/* ---- in place: init_at / attach_at --------------------------------------------------------- */

static void test_init_at_attach_at(void **state)
{
    char *mem =
        mmap(NULL, 8 * MP_SYNC_SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    void *slot[6];
    for (int i = 0; i < 6; i++)
        slot[i] = mem + i * MP_SYNC_SHM_SIZE;
    mp_lock *l;
    mp_sem *s;
    mp_event *e;
    mp_cond *c;
    mp_barrier *b;
    assert_mp(-EINVAL, mp_lock_init_at(&l, mem + 1, MP_SYNC_SHM_SIZE, false));
    assert_mp(-EINVAL, mp_lock_init_at(&l, mem, MP_SYNC_SHM_SIZE - 1, false));
    assert_mp(-EINVAL, mp_lock_init_at(&l, NULL, MP_SYNC_SHM_SIZE, false));
    assert_mp(-EINVAL, mp_lock_attach_at(&l, slot[5], MP_SYNC_SHM_SIZE)); /* uninitialised */
    assert_mp_ok(mp_lock_init_at(&l, slot[0], MP_SYNC_SHM_SIZE, false));
    assert_mp_ok(mp_sem_init_at(&s, slot[1], MP_SYNC_SHM_SIZE, 1, true));
    assert_mp_ok(mp_event_init_at(&e, slot[2], MP_SYNC_SHM_SIZE));
    assert_mp_ok(mp_cond_init_at(&c, slot[3], MP_SYNC_SHM_SIZE));
    assert_mp_ok(mp_barrier_init_at(&b, slot[4], MP_SYNC_SHM_SIZE, 2));
    /* attach_at checks the kind */
    mp_sem *s2;
    mp_event *e2;
    mp_lock *l2;
    assert_mp(MP_ETYPE, mp_sem_attach_at(&s2, slot[0], MP_SYNC_SHM_SIZE));
    assert_mp(MP_ETYPE, mp_event_attach_at(&e2, slot[1], MP_SYNC_SHM_SIZE));
    assert_mp(MP_ETYPE, mp_lock_attach_at(&l2, slot[2], MP_SYNC_SHM_SIZE));
    mp_cond *c2;
    mp_barrier *b2;
    assert_mp(MP_ETYPE, mp_cond_attach_at(&c2, slot[4], MP_SYNC_SHM_SIZE));
    assert_mp(MP_ETYPE, mp_barrier_attach_at(&b2, slot[3], MP_SYNC_SHM_SIZE));
    assert_mp_ok(mp_lock_acquire(l, 0));
    assert_mp_ok(mp_sem_acquire(s, 0));
    pid_t pid = mp_test_fork();
    if (pid == 0) { /* a child that uses fresh handles from attach_at, as an unrelated one would */
        mp_lock *cl;
        mp_sem *cs;
        mp_event *ce;
        mp_cond *cc;
        mp_barrier *cb;
        MP_CHILD_CHECK(mp_lock_attach_at(&cl, slot[0], MP_SYNC_SHM_SIZE) == 0);
        MP_CHILD_CHECK(mp_sem_attach_at(&cs, slot[1], MP_SYNC_SHM_SIZE) == 0);
        MP_CHILD_CHECK(mp_event_attach_at(&ce, slot[2], MP_SYNC_SHM_SIZE) == 0);
        MP_CHILD_CHECK(mp_cond_attach_at(&cc, slot[3], MP_SYNC_SHM_SIZE) == 0);
        MP_CHILD_CHECK(mp_barrier_attach_at(&cb, slot[4], MP_SYNC_SHM_SIZE) == 0);
        MP_CHILD_CHECK(mp_lock_is_recursive(cl) == 0);
        MP_CHILD_CHECK(mp_lock_acquire(cl, 0) == -ETIMEDOUT);
        MP_CHILD_CHECK(mp_sem_release(cs) == 0);
        MP_CHILD_CHECK(mp_event_wait(ce, 10) == 0);
        MP_CHILD_CHECK(mp_cond_acquire(cc, 5) == 0);
        MP_CHILD_CHECK(mp_cond_notify_all(cc) == 0);
        MP_CHILD_CHECK(mp_cond_release(cc) == 0);
        MP_CHILD_CHECK(mp_barrier_wait(cb, 10) >= 0);
        MP_CHILD_CHECK(mp_lock_acquire(cl, 10) == 0);
        MP_CHILD_CHECK(mp_lock_release(cl) == 0);
        mp_lock_free(&cl);
        mp_sem_free(&cs);
        mp_event_free(&ce);
        mp_cond_free(&cc);
        mp_barrier_free(&cb);
        mp_test_child_exit(0);
    }
    assert_mp_ok(mp_sem_acquire(s, mp_test_timeout(5)));
    assert_mp_ok(mp_sem_release(s));
    assert_mp(MP_EOVERRELEASE, mp_sem_release(s));
    assert_mp_ok(mp_event_set(e));
    assert_mp_ok(mp_lock_release(l));
    assert_true(mp_barrier_wait(b, mp_test_timeout(10)) >= 0);
    assert_child_ok(pid);
    /* freeing an _at handle leaves the memory alone: a second handle still works */
    assert_mp_ok(mp_lock_free(&l));
    assert_mp_ok(mp_lock_attach_at(&l, slot[0], MP_SYNC_SHM_SIZE));
    assert_mp_ok(mp_lock_acquire(l, 0));
    assert_mp_ok(mp_lock_release(l));
    mp_lock_free(&l);
    mp_sem_free(&s);
    mp_event_free(&e);
    mp_cond_free(&c);
    mp_barrier_free(&b);
    munmap(mem, 8 * MP_SYNC_SHM_SIZE);
}

/* ---- bad input ----------------------------------------------------------------------------- */

static bool never(void *arg)
{
    return false;
}

static void test_bad_input(void **state)
{
    assert_mp(-EINVAL, mp_lock_new(NULL));
    assert_mp(-EINVAL, mp_rlock_new(NULL));
    assert_mp(-EINVAL, mp_lock_acquire(NULL, 0));
    assert_mp(-EINVAL, mp_lock_release(NULL));
    assert_mp(-EINVAL, mp_lock_is_owned(NULL));
    assert_mp(-EINVAL, mp_lock_is_recursive(NULL));
    assert_mp(-EINVAL, mp_lock_init_at(NULL, NULL, 0, false));
    assert_mp(-EINVAL, mp_lock_attach_at(NULL, NULL, 0));
    assert_mp_ok(mp_lock_free(NULL));
    mp_lock *l = NULL;
    assert_mp_ok(mp_lock_free(&l));

    assert_mp(-EINVAL, mp_sem_new(NULL, 1));
    assert_mp(-EINVAL, mp_bsem_new(NULL, 1));
    assert_mp(-EINVAL, mp_sem_acquire(NULL, 0));
    assert_mp(-EINVAL, mp_sem_release(NULL));
    unsigned v;
    assert_mp(-EINVAL, mp_sem_get_value(NULL, &v));
    assert_mp(-EINVAL, mp_sem_init_at(NULL, NULL, 0, 0, false));
    assert_mp(-EINVAL, mp_sem_attach_at(NULL, NULL, 0));
    assert_mp_ok(mp_sem_free(NULL));

    assert_mp(-EINVAL, mp_event_new(NULL));
    assert_mp(-EINVAL, mp_event_set(NULL));
    assert_mp(-EINVAL, mp_event_clear(NULL));
    assert_mp(-EINVAL, mp_event_is_set(NULL));
    assert_mp(-EINVAL, mp_event_wait(NULL, 0));
    assert_mp(-EINVAL, mp_event_init_at(NULL, NULL, 0));
    assert_mp(-EINVAL, mp_event_attach_at(NULL, NULL, 0));
    assert_mp_ok(mp_event_free(NULL));

    assert_mp(-EINVAL, mp_cond_new(NULL, NULL));
    assert_null(mp_cond_lock(NULL));
    assert_mp(-EINVAL, mp_cond_acquire(NULL, 0));
    assert_mp(-EINVAL, mp_cond_release(NULL));
    assert_mp(-EINVAL, mp_cond_wait(NULL, 0));
    assert_mp(-EINVAL, mp_cond_wait_for(NULL, never, NULL, 0));
    assert_mp(-EINVAL, mp_cond_notify(NULL, 1));
    assert_mp(-EINVAL, mp_cond_notify_all(NULL));
    assert_mp(-EINVAL, mp_cond_init_at(NULL, NULL, 0));
    assert_mp(-EINVAL, mp_cond_attach_at(NULL, NULL, 0));
    assert_mp_ok(mp_cond_free(NULL));
    mp_cond *c;
    assert_mp_ok(mp_cond_new(&c, NULL));
    assert_mp(-EINVAL, mp_cond_wait_for(c, NULL, NULL, 0));
    mp_cond_free(&c);

    mp_barrier *b;
    assert_mp(-EINVAL, mp_barrier_new(NULL, 1));
    assert_mp(-EINVAL, mp_barrier_new(&b, 0));
    assert_mp(-EINVAL, mp_barrier_wait(NULL, 0));
    assert_mp(-EINVAL, mp_barrier_abort(NULL));
    assert_mp(-EINVAL, mp_barrier_reset(NULL));
    assert_mp(-EINVAL, mp_barrier_parties(NULL));
    assert_mp(-EINVAL, mp_barrier_n_waiting(NULL));
    assert_mp(-EINVAL, mp_barrier_is_broken(NULL));
    assert_mp(-EINVAL, mp_barrier_init_at(NULL, NULL, 0, 1));
    assert_mp(-EINVAL, mp_barrier_attach_at(NULL, NULL, 0));
    assert_mp_ok(mp_barrier_free(NULL));

    /* use after free: free NULLs the caller's pointer, later calls see NULL */
    assert_mp_ok(mp_lock_new(&l));
    assert_mp_ok(mp_lock_free(&l));
    assert_null(l);
    assert_mp(-EINVAL, mp_lock_acquire(l, 0));
    assert_mp(-EINVAL, mp_lock_release(l));
    mp_sem *s;
    assert_mp_ok(mp_sem_new(&s, 1));
    mp_sem_free(&s);
    assert_mp(-EINVAL, mp_sem_acquire(s, 0));
    mp_event *e;
    assert_mp_ok(mp_event_new(&e));
    mp_event_free(&e);
    assert_mp(-EINVAL, mp_event_set(e));
    assert_mp_ok(mp_barrier_new(&b, 2));
    mp_barrier_free(&b);
    assert_mp(-EINVAL, mp_barrier_wait(b, 0));
    /* the condition's own lock is borrowed: freeing it is refused */
    assert_mp_ok(mp_cond_new(&c, NULL));
    l = mp_cond_lock(c);
    assert_mp(-EINVAL, mp_lock_free(&l));
    assert_non_null(l);
    mp_cond_free(&c);
    assert_mp(-EINVAL, mp_cond_notify(c, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(test_lock_basic),
        MP_TEST(test_lock_across_fork_and_timeout),
        MP_TEST(test_lock_fork_while_held),
        MP_TEST(test_rlock),
        MP_TEST(test_lock_owner_died),
        MP_TEST(test_rlock_owner_died_recursive),
        MP_TEST(test_lock_owner_died_wakes_waiter),
        MP_TEST(test_lock_owner_thread_exited),
        MP_TEST(test_semaphore),
        MP_TEST(test_bounded_semaphore_over_release),
        MP_TEST(test_semaphore_participant_killed),
        MP_TEST(test_event),
        MP_TEST(test_condition_basic),
        MP_TEST(test_condition_wait_for_across_fork),
        MP_TEST(test_condition_notify_all),
        MP_TEST(test_condition_rlock_levels),
        MP_TEST(test_condition_participant_killed),
        MP_TEST(test_barrier_indexes_and_generations),
        MP_TEST(test_barrier_abort_and_reset),
        MP_TEST(test_barrier_timeout_breaks_all),
        MP_TEST(test_barrier_participant_killed),
        MP_TEST(test_init_at_attach_at),
        MP_TEST(test_bad_input),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
