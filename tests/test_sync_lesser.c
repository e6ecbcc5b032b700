/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 */
/* test_sync_lesser.c - the barrier's bookkeeping (issue 9, "lesser"): a waiter that wakes long
 * after its generation ended still learns how it ended; mp_barrier_n_waiting reads the count
 * under the internal mutex; abort and reset report an unusable internal mutex instead of
 * unlocking a mutex they do not hold. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "mp_test.h"
#include "mproc/error.h"
#include "mproc/sync.h"
#include "platform/platform.h"
#include "sync_internal.h"

static void wait_state(pid_t pid, char want)
{
    int64_t until = mp__now_ns() + (int64_t)(mp_test_timeout(10) * 1e9);
    while (mp_test_proc_state(pid) != want) {
        assert_true(mp__now_ns() < until);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* A child that waits at the barrier (2 parties) and exits with 0 for index 0, 1 for
 * MP_EBROKEN, 2 otherwise. */
static pid_t fork_sleeper(mp_barrier *b)
{
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        int r = mp_barrier_wait(b, mp_test_timeout(20));
        mp_test_child_exit(r == 0 ? 0 : r == MP_EBROKEN ? 1 : 2);
    }
    assert_true(pid > 0);
    /* asleep in the barrier (it has arrived: count is 1) */
    int64_t until = mp__now_ns() + (int64_t)(mp_test_timeout(10) * 1e9);
    while (mp_barrier_n_waiting(b) != 1) {
        assert_true(mp__now_ns() < until);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    wait_state(pid, 'S');
    return pid;
}

static void *partner(void *arg)
{
    return (void *)(intptr_t)mp_barrier_wait(arg, mp_test_timeout(10));
}

/* One released generation with two parties: this thread and a helper thread. */
static void release_once(mp_barrier *b)
{
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, partner, b), 0);
    int mine = mp_barrier_wait(b, mp_test_timeout(10));
    void *theirs;
    pthread_join(t, &theirs);
    assert_true((mine == 0 && (intptr_t)theirs == 1) || (mine == 1 && (intptr_t)theirs == 0));
}

/* Released, then 64 resets before the waiter looks: it was released (index 0). */
static void test_barrier_late_waiter_released(void **state)
{
    (void)state;
    mp_barrier *b;
    assert_mp_ok(mp_barrier_new(&b, 2));
    pid_t p = fork_sleeper(b);
    kill(p, SIGSTOP);
    wait_state(p, 'T');
    assert_int_equal(mp_barrier_wait(b, mp_test_timeout(10)), 1); /* releases generation 0 */
    for (int i = 0; i < 64; i++)
        assert_mp_ok(mp_barrier_reset(b));
    kill(p, SIGCONT);
    assert_int_equal(mp_test_wait_code(p, mp_test_timeout(20)), 0);
    mp_barrier_free(&b);
}

/* Reset (its generation failed), then 64 released generations: it failed (MP_EBROKEN). */
static void test_barrier_late_waiter_broken(void **state)
{
    (void)state;
    mp_barrier *b;
    assert_mp_ok(mp_barrier_new(&b, 2));
    pid_t p = fork_sleeper(b);
    kill(p, SIGSTOP);
    wait_state(p, 'T');
    assert_mp_ok(mp_barrier_reset(b));
    for (int i = 0; i < 64; i++)
        release_once(b);
    kill(p, SIGCONT);
    assert_int_equal(mp_test_wait_code(p, mp_test_timeout(20)), 1);
    mp_barrier_free(&b);
}

/* n_waiting takes the internal mutex: while another party is inside it (here: the test, with a
 * transient count), it waits and then reads the settled value. */
static void test_barrier_n_waiting_under_mutex(void **state)
{
    (void)state;
    mp_barrier *b;
    assert_mp_ok(mp_barrier_new(&b, 3));
    pthread_mutex_t *m = mp__barrier_mutex(b);
    assert_int_equal(pthread_mutex_lock(m), 0);
    mp__barrier_state *s = mp__barrier_state_of(b);
    s->count = 5; /* a value the count only has while the mutex is held */
    pid_t pid = mp_test_fork();
    if (pid == 0) mp_test_child_exit(mp_barrier_n_waiting(b) == 0 ? 0 : 1);
    wait_state(pid, 'S');
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
    s->count = 0;
    pthread_mutex_unlock(m);
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(10)), 0);
    mp_barrier_free(&b);
}

/* Each call on a barrier whose internal mutex is unrecoverable reports it, and asking twice
 * does not hang (glibc's trylock leaves such a mutex locked; mproc undoes that). */
static void test_barrier_unrecoverable_mutex_reported(void **state)
{
    (void)state;
    mp_barrier *b;
    assert_mp_ok(mp_barrier_new(&b, 2));
    mp_test_make_mutex_unrecoverable(mp__barrier_mutex(b));
    for (int i = 0; i < 2; i++) {
        assert_mp(-ENOTRECOVERABLE, mp_barrier_abort(b));
        assert_mp(-ENOTRECOVERABLE, mp_barrier_reset(b));
        assert_mp(-ENOTRECOVERABLE, mp_barrier_n_waiting(b));
        assert_mp(-ENOTRECOVERABLE, mp_barrier_wait(b, 0.01));
    }
    mp_barrier_free(&b);
}

/* The same for a Lock: -ENOTRECOVERABLE every time, never a hang. */
static void test_lock_unrecoverable_reported(void **state)
{
    (void)state;
    mp_lock *l;
    assert_mp_ok(mp_lock_new(&l));
    mp_test_make_mutex_unrecoverable(mp__lock_mutex(l));
    for (int i = 0; i < 3; i++) {
        assert_mp(-ENOTRECOVERABLE, mp_lock_acquire(l, MP_FOREVER));
        assert_mp(-ENOTRECOVERABLE, mp_lock_acquire(l, 0.01));
        assert_mp(-ENOTRECOVERABLE, mp_lock_acquire(l, 0));
    }
    mp_lock_free(&l);
}

/* The platform's mp__robust_mutex_lock undoes glibc 2.36's stuck trylock itself, so every user
 * (the queue's locks too, not only sync.c) gets ENOTRECOVERABLE each time instead of a mutex
 * that times out or hangs from the second call on. */
static void test_robust_mutex_lock_unsticks(void **state)
{
    (void)state;
    pthread_mutex_t *m =
        mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    assert_int_equal(mp__robust_mutex_init(m, PTHREAD_MUTEX_NORMAL), 0);
    mp_test_make_mutex_unrecoverable(m);
    for (int i = 0; i < 3; i++) {
        mp__deadline dl = mp__deadline_in(mp_test_timeout(1));
        assert_int_equal(mp__robust_mutex_lock(m, &dl), ENOTRECOVERABLE);
        assert_int_equal(mp__robust_mutex_trylock(m), ENOTRECOVERABLE);
    }
    munmap(m, sizeof *m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(test_barrier_late_waiter_released),
        MP_TEST(test_barrier_late_waiter_broken),
        MP_TEST(test_barrier_n_waiting_under_mutex),
        MP_TEST(test_barrier_unrecoverable_mutex_reported),
        MP_TEST(test_lock_unrecoverable_reported),
        MP_TEST(test_robust_mutex_lock_unsticks),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
