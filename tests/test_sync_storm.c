/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=90 */
/* test_sync_storm.c - lock, condition, barrier, semaphore and event traffic between processes
 * while a timer delivers SIGALRM every 100 us to each of them (handler without SA_RESTART, so
 * every blocking call is interrupted over and over): no spurious failure, no lost wake-up. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>

#include "mp_test.h"
#include "mproc/error.h"
#include "mproc/sync.h"

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
    int saved = errno;
    alarms++;
    errno = saved;
}

/* Start the storm in the calling process (interval timers are not inherited across fork). */
static void storm_start(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: interrupted syscalls return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 100}, {0, 100}};
    setitimer(ITIMER_REAL, &it, NULL);
}

/* Stop the timer and ignore SIGALRM from now on: ignoring also discards an alarm that is still
 * pending (valgrind, for one, may deliver it well after setitimer returned), which SIG_DFL would
 * turn into a death. */
static void storm_stop(void)
{
    struct itimerval it = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &it, NULL);
    signal(SIGALRM, SIG_IGN);
}

/* Child exit code: 0, or 3 when fewer than 20 signals arrived (the storm did not happen). */
static int child_done(void)
{
    storm_stop();
    if (getenv("MP_STORM_VERBOSE"))
        fprintf(stderr, "child %d: %d alarms\n", (int)getpid(), (int)alarms);
    return alarms >= 20 ? 0 : 3;
}

typedef struct shared {
    long counter;
    int turn;
    int round[4];
} shared;

static shared *shared_new(void)
{
    shared *s = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(s != MAP_FAILED);
    return s;
}

static void wait_all(pid_t *pids, int n)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(mp_test_wait_code(pids[i], mp_test_timeout(60)), 0);
}

/* ---- lock ---------------------------------------------------------------------------------- */

enum { LOCK_ITERS = 100000 };

static void test_storm_lock(void **state)
{
    mp_lock *l;
    assert_mp_ok(mp_lock_new(&l));
    shared *s = shared_new();
    pid_t pids[2];
    for (int k = 0; k < 2; k++) {
        pids[k] = mp_test_fork();
        if (pids[k] == 0) {
            storm_start();
            /* run until the storm has hit us often enough, not for a fixed count */
            for (int i = 0; i < LOCK_ITERS || alarms < 200; i++) {
                /* alternate timed and untimed acquires: both must ride out the signals */
                MP_CHILD_CHECK(mp_lock_acquire(l, (i & 1) ? 10.0 : MP_FOREVER) == 0);
                s->counter++;
                s->round[k]++;
                MP_CHILD_CHECK(mp_lock_release(l) == 0);
            }
            mp_test_child_exit(child_done());
        }
    }
    wait_all(pids, 2);
    assert_true(s->round[0] >= LOCK_ITERS && s->round[1] >= LOCK_ITERS);
    assert_int_equal(s->counter, (long)s->round[0] + s->round[1]);
    munmap(s, 4096);
    mp_lock_free(&l);
}

/* ---- condition: ping-pong, every wake-up needed --------------------------------------------- */

enum { COND_ROUNDS = 10000 };

typedef struct turn_arg {
    shared *s;
    int me;
} turn_arg;

static bool my_turn(void *arg)
{
    turn_arg *t = arg;
    return t->s->turn == t->me;
}

static void test_storm_condition(void **state)
{
    mp_cond *c;
    assert_mp_ok(mp_cond_new(&c, NULL));
    shared *s = shared_new();
    pid_t pids[2];
    for (int k = 0; k < 2; k++) {
        pids[k] = mp_test_fork();
        if (pids[k] == 0) {
            storm_start();
            turn_arg t = {s, k};
            for (int i = 0; i < COND_ROUNDS; i++) {
                MP_CHILD_CHECK(mp_cond_acquire(c, 10) == 0);
                if (k == 0) { /* the predicate form */
                    MP_CHILD_CHECK(mp_cond_wait_for(c, my_turn, &t, 10) == 0);
                } else { /* the classic loop */
                    while (s->turn != k)
                        MP_CHILD_CHECK(mp_cond_wait(c, 10) == 0);
                }
                s->round[k]++;
                s->turn = 1 - k;
                MP_CHILD_CHECK(mp_cond_notify(c, 1) == 0);
                MP_CHILD_CHECK(mp_cond_release(c) == 0);
            }
            mp_test_child_exit(child_done());
        }
    }
    wait_all(pids, 2);
    assert_int_equal(s->round[0], COND_ROUNDS);
    assert_int_equal(s->round[1], COND_ROUNDS);
    munmap(s, 4096);
    mp_cond_free(&c);
}

/* ---- barrier ------------------------------------------------------------------------------- */

enum { BARRIER_ROUNDS = 3000 };

static void test_storm_barrier(void **state)
{
    mp_barrier *b;
    assert_mp_ok(mp_barrier_new(&b, 3));
    shared *s = shared_new();
    pid_t pids[3];
    for (int k = 0; k < 3; k++) {
        pids[k] = mp_test_fork();
        if (pids[k] == 0) {
            storm_start();
            for (int i = 0; i < BARRIER_ROUNDS; i++) {
                int idx = mp_barrier_wait(b, 10);
                MP_CHILD_CHECK(idx >= 0 && idx < 3);
                /* nobody may run ahead: every party has done round i before anyone passes */
                __atomic_fetch_add(&s->round[k], 1, __ATOMIC_SEQ_CST);
                for (int j = 0; j < 3; j++)
                    MP_CHILD_CHECK(__atomic_load_n(&s->round[j], __ATOMIC_SEQ_CST) >= i);
            }
            mp_test_child_exit(child_done());
        }
    }
    wait_all(pids, 3);
    assert_int_equal(mp_barrier_is_broken(b), 0);
    munmap(s, 4096);
    mp_barrier_free(&b);
}

/* ---- semaphore and event ping-pong ------------------------------------------------------------
 */

enum { PING_ROUNDS = 10000 };

static void test_storm_semaphore_event(void **state)
{
    mp_sem *ping, *pong;
    mp_event *ev[2];
    assert_mp_ok(mp_sem_new(&ping, 0));
    assert_mp_ok(mp_bsem_new(&pong, 1));
    assert_mp_ok(mp_sem_acquire(pong, 0));
    assert_mp_ok(mp_event_new(&ev[0]));
    assert_mp_ok(mp_event_new(&ev[1]));
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        storm_start();
        for (int i = 0; i < PING_ROUNDS; i++) {
            MP_CHILD_CHECK(mp_sem_acquire(ping, 10) == 0);
            MP_CHILD_CHECK(mp_sem_release(pong) == 0);
        }
        for (int i = 0; i < PING_ROUNDS / 4; i++) {
            MP_CHILD_CHECK(mp_event_wait(ev[0], 10) == 0);
            MP_CHILD_CHECK(mp_event_clear(ev[0]) == 0);
            MP_CHILD_CHECK(mp_event_set(ev[1]) == 0);
        }
        mp_test_child_exit(child_done());
    }
    storm_start();
    for (int i = 0; i < PING_ROUNDS; i++) {
        assert_mp_ok(mp_sem_release(ping));
        assert_mp_ok(mp_sem_acquire(pong, mp_test_timeout(10)));
    }
    for (int i = 0; i < PING_ROUNDS / 4; i++) {
        assert_mp_ok(mp_event_set(ev[0]));
        assert_mp_ok(mp_event_wait(ev[1], mp_test_timeout(10)));
        assert_mp_ok(mp_event_clear(ev[1]));
    }
    storm_stop();
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(30)), 0);
    assert_true(alarms > 0);
    mp_sem_free(&ping);
    mp_sem_free(&pong);
    mp_event_free(&ev[0]);
    mp_event_free(&ev[1]);
}

/* Timeouts keep their deadline through the storm: a 0.2 s wait neither ends early nor hangs. */
static void test_storm_timeouts(void **state)
{
    mp_lock *l;
    mp_sem *s;
    mp_event *e;
    mp_cond *c;
    mp_barrier *b;
    assert_mp_ok(mp_lock_new(&l));
    assert_mp_ok(mp_sem_new(&s, 0));
    assert_mp_ok(mp_event_new(&e));
    assert_mp_ok(mp_cond_new(&c, NULL));
    assert_mp_ok(mp_barrier_new(&b, 2));
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        MP_CHILD_CHECK(mp_lock_acquire(l, 1) == 0);
        mp_event_set(e);
        pause();
        mp_test_child_exit(0);
    }
    assert_mp_ok(mp_event_wait(e, mp_test_timeout(5)));
    mp_event_clear(e);
    storm_start();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_mp(-ETIMEDOUT, mp_lock_acquire(l, 0.2));
    assert_mp(-ETIMEDOUT, mp_sem_acquire(s, 0.2));
    assert_mp(-ETIMEDOUT, mp_event_wait(e, 0.2));
    assert_mp_ok(mp_cond_acquire(c, 1));
    assert_mp(-ETIMEDOUT, mp_cond_wait(c, 0.2));
    assert_mp_ok(mp_cond_release(c));
    assert_mp(-ETIMEDOUT, mp_barrier_wait(b, 0.2));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    storm_stop();
    double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(el >= 0.99);
    assert_true(alarms > 0);
    kill(pid, SIGKILL);
    mp_test_wait_code(pid, mp_test_timeout(5));
    mp_lock_free(&l);
    mp_sem_free(&s);
    mp_event_free(&e);
    mp_cond_free(&c);
    mp_barrier_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(test_storm_lock),     MP_TEST(test_storm_condition),
        MP_TEST(test_storm_barrier),  MP_TEST(test_storm_semaphore_event),
        MP_TEST(test_storm_timeouts),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
