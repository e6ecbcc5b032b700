/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=180 */
/* test_sync_wake.c - every wake-up delivered once, none invented (issue 9).
 *
 * The lost wake-up cases are made deterministic: the test process and its children are pinned to
 * one CPU, the waiters run SCHED_BATCH (a woken batch task never preempts the running one) and the
 * waker runs SCHED_FIFO when permitted, so between the wake and the SIGKILL that follows it the
 * woken waiter cannot run. Waiters go to sleep one after the other (checked through /proc), so
 * the futex's FIFO order makes the first one the woken one: it is the one killed. The survivor
 * must then get what the dead one was given. MP_WAKE_NO_FIFO=1 leaves SCHED_FIFO out, to check
 * that SCHED_BATCH alone still makes the cases deterministic.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "mp_test.h"
#include "mproc/error.h"
#include "mproc/shared.h"
#include "mproc/sync.h"
#include "platform/platform.h"
#include "sync_internal.h"

/* ---- scheduling set-up ---------------------------------------------------------------------- */

static cpu_set_t saved_affinity;

/* Pin the test process (and so the children it forks next) to one CPU. */
static void solo_begin(void)
{
    assert_int_equal(sched_getaffinity(0, sizeof saved_affinity, &saved_affinity), 0);
    int cpu = 0;
    while (!CPU_ISSET(cpu, &saved_affinity))
        cpu++;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
}

static void solo_end(void)
{
    struct sched_param p = {0};
    sched_setscheduler(0, SCHED_OTHER, &p);
    sched_setaffinity(0, sizeof saved_affinity, &saved_affinity);
}

/* The waker: SCHED_FIFO when permitted (root, CAP_SYS_NICE or an RLIMIT_RTPRIO); otherwise it
 * stays SCHED_OTHER and the waiters' SCHED_BATCH alone keeps them from preempting it. */
static void waker_fast(void)
{
    struct sched_param p = {.sched_priority = 1};
    if (getenv("MP_WAKE_NO_FIFO")) return; /* to try the fallback */
    if (sched_setscheduler(0, SCHED_FIFO, &p) != 0 && getenv("MP_WAKE_VERBOSE"))
        fprintf(stderr, "SCHED_FIFO refused (%s): relying on SCHED_BATCH waiters\n",
                strerror(errno));
}

static void waker_normal(void)
{
    struct sched_param p = {0};
    sched_setscheduler(0, SCHED_OTHER, &p);
}

static void child_batch(void)
{
    struct sched_param p = {0};
    sched_setscheduler(0, SCHED_BATCH, &p);
}

/* True once pid sleeps in the kernel on a futex (or, when /proc/PID/wchan says nothing, has
 * been seen sleeping twice in a row). */
static bool asleep(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || p[2] != 'S') return false;
    snprintf(path, sizeof path, "/proc/%d/wchan", (int)pid);
    if ((f = fopen(path, "r"))) {
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        if (strstr(buf, "futex")) return true;
        if (n > 0 && strcmp(buf, "0") != 0) return false; /* asleep elsewhere (e.g. in exit) */
    }
    return true;
}

static void wait_asleep(pid_t pid)
{
    int64_t until = mp__now_ns() + (int64_t)(mp_test_timeout(10) * 1e9);
    int seen = 0;
    while (seen < 2) {
        assert_true(mp__now_ns() < until);
        seen = asleep(pid) ? seen + 1 : 0;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

/* ---- "the woken waiter is killed" for every primitive --------------------------------------- */

/* One scenario: wait() runs in each of two waiter processes (it returns an exit code, 0 when it
 * got what it waited for); wake() hands out exactly one wake-up; the first waiter is killed right
 * after it, so the second must get it. `refill` gives one more unit when the first waiter took
 * the wake-up before it died (then the survivor needs another one). For the mutexes, wake()
 * unlocks and at once takes the lock again on the uncontended path, as another process would:
 * the lock word then names a live owner without the waiters bit, so the kernel's robust-list
 * clean-up of the killed waiter wakes nobody, and `after_kill` unlocks without a futex wake. */
typedef struct scenario {
    int (*wait)(void *ctx);
    void (*wake)(void *ctx);
    void (*refill)(void *ctx);
    void *ctx;
    void (*after_kill)(void *ctx);
} scenario;

static pid_t fork_waiter(const scenario *sc)
{
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        child_batch();
        mp_test_child_exit(sc->wait(sc->ctx));
    }
    assert_true(pid > 0);
    wait_asleep(pid);
    return pid;
}

static void run_killed_after_wake(const scenario *sc)
{
    solo_begin();
    pid_t first = fork_waiter(sc);
    pid_t second = fork_waiter(sc);
    waker_fast();
    sc->wake(sc->ctx);
    kill(first, SIGKILL);
    waker_normal();
    int code = mp_test_wait_code(first, mp_test_timeout(10));
    if (sc->after_kill) sc->after_kill(sc->ctx);
    solo_end();
    if (code != 128 + SIGKILL && sc->refill) sc->refill(sc->ctx); /* it won the race: not lost */
    /* The survivor waits without a limit: only a wake-up passed on to it ends its wait. */
    assert_int_equal(mp_test_wait_code(second, mp_test_timeout(5)), 0);
}

/* Semaphore */
static int sem_wait_forever(void *ctx)
{
    return mp_sem_acquire(ctx, MP_FOREVER) == 0 ? 0 : 1;
}

static void sem_wake(void *ctx)
{
    mp_sem_release(ctx);
}

static void test_sem_woken_waiter_killed(void **state)
{
    (void)state;
    mp_sem *s;
    assert_mp_ok(mp_sem_new(&s, 0));
    scenario sc = {sem_wait_forever, sem_wake, sem_wake, s};
    run_killed_after_wake(&sc);
    unsigned v = 9;
    assert_mp_ok(mp_sem_get_value(s, &v));
    assert_int_equal(v, 0);
    mp_sem_free(&s);
}

/* Lock and RLock: the test process holds the lock while the waiters queue on it. */
static int lock_wait_forever(void *ctx)
{
    int r = mp_lock_acquire(ctx, MP_FOREVER);
    if (r != 0) return 1;
    mp_lock_release(ctx);
    return 0;
}

static void lock_wake(void *ctx)
{
    mp_lock_release(ctx);
    mp_lock_acquire(ctx, MP_FOREVER);
}

static void lock_unlock(void *ctx)
{
    mp_lock_release(ctx);
}

static void lock_case(bool recursive)
{
    mp_lock *l;
    assert_mp_ok(recursive ? mp_rlock_new(&l) : mp_lock_new(&l));
    assert_mp_ok(mp_lock_acquire(l, MP_FOREVER));
    scenario sc = {lock_wait_forever, lock_wake, NULL, l, lock_unlock};
    run_killed_after_wake(&sc);
    mp_lock_free(&l);
}

static void test_lock_woken_waiter_killed(void **state)
{
    (void)state;
    lock_case(false);
}

static void test_rlock_woken_waiter_killed(void **state)
{
    (void)state;
    lock_case(true);
}

/* A Value's lock, taken by a set from the waiters. */
static int value_wait_forever(void *ctx)
{
    return mp_value_set_i64(ctx, 7) == 0 ? 0 : 1;
}

static void value_wake(void *ctx)
{
    mp_lock_release(mp_value_lock(ctx));
    mp_lock_acquire(mp_value_lock(ctx), MP_FOREVER);
}

static void value_unlock(void *ctx)
{
    mp_lock_release(mp_value_lock(ctx));
}

static void test_value_lock_woken_waiter_killed(void **state)
{
    (void)state;
    mp_value *v;
    assert_mp_ok(mp_value_new(&v, MP_TYPE_INT, NULL, true));
    assert_mp_ok(mp_lock_acquire(mp_value_lock(v), MP_FOREVER));
    scenario sc = {value_wait_forever, value_wake, NULL, v, value_unlock};
    run_killed_after_wake(&sc);
    int64_t x = 0;
    assert_mp_ok(mp_value_get_i64(v, &x));
    assert_int_equal(x, 7);
    mp_value_free(&v);
}

/* The barrier's internal mutex: the test holds it; the waiters queue on it inside
 * mp_barrier_wait. The survivor arrives (1 of 3 parties) and times out at the barrier. */
static int barrier_wait_short(void *ctx)
{
    return mp_barrier_wait(ctx, 0.2) == -ETIMEDOUT ? 0 : 1;
}

static void barrier_wake(void *ctx)
{
    pthread_mutex_unlock(mp__barrier_mutex(ctx));
    pthread_mutex_lock(mp__barrier_mutex(ctx));
}

static void barrier_unlock(void *ctx)
{
    pthread_mutex_unlock(mp__barrier_mutex(ctx));
}

static void test_barrier_mutex_woken_waiter_killed(void **state)
{
    (void)state;
    mp_barrier *b;
    assert_mp_ok(mp_barrier_new(&b, 3));
    assert_int_equal(pthread_mutex_lock(mp__barrier_mutex(b)), 0);
    scenario sc = {barrier_wait_short, barrier_wake, NULL, b, barrier_unlock};
    run_killed_after_wake(&sc);
    assert_int_equal(mp_barrier_is_broken(b), 1); /* the survivor's timeout broke it */
    mp_barrier_free(&b);
}

/* Condition: notify(1) goes to the first waiter, which is killed before it returns. */
static int cond_wait_forever(void *ctx)
{
    if (mp_cond_acquire(ctx, MP_FOREVER) != 0) return 2;
    int r = mp_cond_wait(ctx, MP_FOREVER);
    mp_cond_release(ctx);
    return r == 0 ? 0 : 1;
}

static void cond_wake(void *ctx)
{
    mp_cond_acquire(ctx, MP_FOREVER);
    mp_cond_notify(ctx, 1);
    mp_cond_release(ctx);
}

static void test_cond_notified_waiter_killed(void **state)
{
    (void)state;
    mp_cond *c;
    assert_mp_ok(mp_cond_new(&c, NULL));
    scenario sc = {cond_wait_forever, cond_wake, cond_wake, c};
    run_killed_after_wake(&sc);
    mp_cond_free(&c);
}

/* ---- Condition: only notified waiters return 0 -------------------------------------------- */

typedef struct cond_box {
    int registered; /* waiters inside mp_cond_wait (counted under the lock) */
    int results[16];
} cond_box;

static cond_box *box_new(void)
{
    cond_box *b = mmap(NULL, sizeof *b, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(b != MAP_FAILED);
    memset(b, 0, sizeof *b);
    return b;
}

static int code_of(int r)
{
    return r == 0 ? 0 : r == -ETIMEDOUT ? 1 : 2;
}

static pid_t fork_cond_waiter(mp_cond *c, cond_box *box, double timeout)
{
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        MP_CHILD_CHECK(mp_cond_acquire(c, MP_FOREVER) == 0);
        box->registered++;
        int r = mp_cond_wait(c, timeout);
        MP_CHILD_CHECK(mp_lock_is_owned(mp_cond_lock(c)) == 1);
        mp_cond_release(c);
        mp_test_child_exit(code_of(r));
    }
    assert_true(pid > 0);
    return pid;
}

/* Hold the condition's lock once `n` waiters are inside mp_cond_wait. */
static void acquire_when_registered(mp_cond *c, cond_box *box, int n)
{
    int64_t until = mp__now_ns() + (int64_t)(mp_test_timeout(10) * 1e9);
    for (;;) {
        assert_mp_ok(mp_cond_acquire(c, MP_FOREVER));
        if (box->registered == n) return;
        mp_cond_release(c);
        assert_true(mp__now_ns() < until);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* Two waiters with a 1 s timeout; notify(1) while both wait, and keep the lock until both
 * timeouts have passed. One was notified (0), the other timed out: -ETIMEDOUT, not 0. */
static void test_cond_timeout_beside_notify(void **state)
{
    (void)state;
    mp_cond *c;
    assert_mp_ok(mp_cond_new(&c, NULL));
    cond_box *box = box_new();
    pid_t p[2];
    for (int i = 0; i < 2; i++)
        p[i] = fork_cond_waiter(c, box, 1.0);
    acquire_when_registered(c, box, 2);
    assert_mp_ok(mp_cond_notify(c, 1));
    struct timespec ts = {1, 300000000};
    nanosleep(&ts, NULL);
    assert_mp_ok(mp_cond_release(c));
    int codes[3] = {0};
    for (int i = 0; i < 2; i++) {
        int code = mp_test_wait_code(p[i], mp_test_timeout(10));
        assert_in_range(code, 0, 2);
        codes[code]++;
    }
    assert_int_equal(codes[0], 1);
    assert_int_equal(codes[1], 1);
    munmap(box, sizeof *box);
    mp_cond_free(&c);
}

/* 8 waiters in 8 processes: notify(3) releases exactly 3, the others time out; then a second
 * round where notify_all releases all 8. */
static void test_cond_eight_waiters_notify_n(void **state)
{
    (void)state;
    enum { N = 8 };
    mp_cond *c;
    assert_mp_ok(mp_cond_new(&c, NULL));
    cond_box *box = box_new();
    pid_t p[N];
    for (int i = 0; i < N; i++)
        p[i] = fork_cond_waiter(c, box, mp_test_timeout(2));
    acquire_when_registered(c, box, N);
    assert_mp_ok(mp_cond_notify(c, 3));
    assert_mp_ok(mp_cond_release(c));
    int codes[3] = {0};
    for (int i = 0; i < N; i++) {
        int code = mp_test_wait_code(p[i], mp_test_timeout(20));
        assert_in_range(code, 0, 2);
        codes[code]++;
    }
    assert_int_equal(codes[0], 3);
    assert_int_equal(codes[1], N - 3);

    box->registered = 0;
    for (int i = 0; i < N; i++)
        p[i] = fork_cond_waiter(c, box, mp_test_timeout(20));
    acquire_when_registered(c, box, N);
    assert_mp_ok(mp_cond_notify_all(c));
    assert_mp_ok(mp_cond_release(c));
    for (int i = 0; i < N; i++)
        assert_int_equal(mp_test_wait_code(p[i], mp_test_timeout(30)), 0);
    munmap(box, sizeof *box);
    mp_cond_free(&c);
}

/* A waiter whose wait is interrupted again and again by a handled signal keeps waiting: it times
 * out (-ETIMEDOUT), it does not return 0; and a notify that comes later still reaches it. */
static volatile sig_atomic_t usr1_seen;

static void on_usr1(int sig)
{
    (void)sig;
    usr1_seen++;
}

static pid_t fork_signalled_waiter(mp_cond *c, cond_box *box, double timeout)
{
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1; /* no SA_RESTART */
        sigaction(SIGUSR1, &sa, NULL);
        MP_CHILD_CHECK(mp_cond_acquire(c, MP_FOREVER) == 0);
        box->registered++;
        int r = mp_cond_wait(c, timeout);
        mp_cond_release(c);
        MP_CHILD_CHECK(usr1_seen > 0);
        mp_test_child_exit(code_of(r));
    }
    return pid;
}

static void signal_storm(pid_t pid, double seconds)
{
    int64_t until = mp__now_ns() + (int64_t)(seconds * 1e9);
    while (mp__now_ns() < until) {
        kill(pid, SIGUSR1);
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
}

static void test_cond_signal_keeps_waiting(void **state)
{
    (void)state;
    mp_cond *c;
    assert_mp_ok(mp_cond_new(&c, NULL));
    cond_box *box = box_new();
    /* Round 1: nobody notifies; the signals must not end the wait. */
    pid_t p = fork_signalled_waiter(c, box, 0.5);
    acquire_when_registered(c, box, 1);
    mp_cond_release(c);
    signal_storm(p, 0.3);
    assert_int_equal(mp_test_wait_code(p, mp_test_timeout(10)), 1);
    /* Round 2: signals, then a notify: it returns 0 (the wait went on through the signals). */
    box->registered = 0;
    p = fork_signalled_waiter(c, box, MP_FOREVER);
    acquire_when_registered(c, box, 1);
    mp_cond_release(c);
    signal_storm(p, 0.2);
    cond_wake(c);
    assert_int_equal(mp_test_wait_code(p, mp_test_timeout(10)), 0);
    munmap(box, sizeof *box);
    mp_cond_free(&c);
}

/* A waiter killed while it waited (before any notify) holds the oldest slot. A notify(1) made
 * while a live waiter also waits reaches the live one (through the dead slot, within a slice);
 * a notify(1) made while only the dead one waited is not inherited by a waiter that comes
 * later: that one times out. */
static void test_cond_dead_waiter_and_late_waiter(void **state)
{
    (void)state;
    mp_cond *c;
    assert_mp_ok(mp_cond_new(&c, NULL));
    cond_box *box = box_new();
    /* round 1: dead oldest waiter, live younger one, then notify(1) */
    pid_t dead = fork_cond_waiter(c, box, MP_FOREVER);
    acquire_when_registered(c, box, 1);
    mp_cond_release(c);
    kill(dead, SIGKILL);
    assert_int_equal(mp_test_wait_code(dead, mp_test_timeout(10)), 128 + SIGKILL);
    pid_t live = fork_cond_waiter(c, box, MP_FOREVER);
    acquire_when_registered(c, box, 2);
    assert_mp_ok(mp_cond_notify(c, 1));
    mp_cond_release(c);
    assert_int_equal(mp_test_wait_code(live, mp_test_timeout(10)), 0);
    /* round 2: notify(1) while only a dead waiter waits; a later waiter must time out */
    box->registered = 0;
    dead = fork_cond_waiter(c, box, MP_FOREVER);
    acquire_when_registered(c, box, 1);
    mp_cond_release(c);
    kill(dead, SIGKILL);
    assert_int_equal(mp_test_wait_code(dead, mp_test_timeout(10)), 128 + SIGKILL);
    cond_wake(c);
    pid_t late = fork_cond_waiter(c, box, 0.3);
    assert_int_equal(mp_test_wait_code(late, mp_test_timeout(10)), 1);
    munmap(box, sizeof *box);
    mp_cond_free(&c);
}

/* A condition in MP_SYNC_SHM_SIZE bytes has 23 waiter slots: the 24th waiter gets MP_EFULL
 * (holding the lock, nothing else happened); once a waiter is killed its slot is reclaimed. */
static void test_cond_full_table(void **state)
{
    (void)state;
    enum { SLOTS = (MP_SYNC_SHM_SIZE - 72) / 8 };
    void *mem =
        mmap(NULL, MP_SYNC_SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    mp_cond *c;
    assert_mp_ok(mp_cond_init_at(&c, mem, MP_SYNC_SHM_SIZE));
    mp_cond *small;
    assert_mp(-EINVAL, mp_cond_attach_at(&small, mem, MP_SYNC_SHM_SIZE - 8));
    cond_box *box = box_new();
    pid_t p[SLOTS];
    for (int i = 0; i < SLOTS; i++)
        p[i] = fork_cond_waiter(c, box, MP_FOREVER);
    acquire_when_registered(c, box, SLOTS);
    assert_mp(MP_EFULL, mp_cond_wait(c, 0.05));
    assert_int_equal(mp_lock_is_owned(mp_cond_lock(c)), 1);
    mp_cond_release(c);
    kill(p[0], SIGKILL);
    assert_int_equal(mp_test_wait_code(p[0], mp_test_timeout(10)), 128 + SIGKILL);
    assert_mp_ok(mp_cond_acquire(c, MP_FOREVER));
    assert_mp(-ETIMEDOUT, mp_cond_wait(c, 0.05)); /* got the dead waiter's slot */
    assert_mp_ok(mp_cond_notify_all(c));
    mp_cond_release(c);
    for (int i = 1; i < SLOTS; i++)
        assert_int_equal(mp_test_wait_code(p[i], mp_test_timeout(20)), 0);
    munmap(box, sizeof *box);
    mp_cond_free(&c);
    munmap(mem, MP_SYNC_SHM_SIZE);
}

/* ---- Event: set() then clear() at once releases everyone who was waiting ------------------- */

static void test_event_set_clear_releases_all(void **state)
{
    (void)state;
    enum { N = 8 };
    mp_event *e;
    assert_mp_ok(mp_event_new(&e));
    solo_begin();
    pid_t p[N];
    for (int i = 0; i < N; i++) {
        p[i] = mp_test_fork();
        if (p[i] == 0) {
            child_batch();
            mp_test_child_exit(mp_event_wait(e, mp_test_timeout(3)) == 0 ? 0 : 1);
        }
        assert_true(p[i] > 0);
    }
    for (int i = 0; i < N; i++)
        wait_asleep(p[i]);
    waker_fast();
    assert_mp_ok(mp_event_set(e));
    assert_mp_ok(mp_event_clear(e));
    waker_normal();
    solo_end();
    for (int i = 0; i < N; i++)
        assert_int_equal(mp_test_wait_code(p[i], mp_test_timeout(20)), 0);
    assert_int_equal(mp_event_is_set(e), 0);
    /* A wait that starts after the clear is not released by the earlier set. */
    assert_mp(-ETIMEDOUT, mp_event_wait(e, 0.05));
    mp_event_free(&e);
}

/* 8 waiters on a semaphore in 8 processes: 8 releases, each gets exactly one unit. */
static void test_sem_eight_waiters(void **state)
{
    (void)state;
    enum { N = 8 };
    mp_sem *s;
    assert_mp_ok(mp_sem_new(&s, 0));
    pid_t p[N];
    for (int i = 0; i < N; i++) {
        p[i] = mp_test_fork();
        if (p[i] == 0) mp_test_child_exit(mp_sem_acquire(s, mp_test_timeout(20)) == 0 ? 0 : 1);
    }
    for (int i = 0; i < N; i++)
        wait_asleep(p[i]);
    for (int i = 0; i < N; i++)
        assert_mp_ok(mp_sem_release(s));
    for (int i = 0; i < N; i++)
        assert_int_equal(mp_test_wait_code(p[i], mp_test_timeout(20)), 0);
    unsigned v = 9;
    assert_mp_ok(mp_sem_get_value(s, &v));
    assert_int_equal(v, 0);
    mp_sem_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(test_sem_woken_waiter_killed),
        MP_TEST(test_lock_woken_waiter_killed),
        MP_TEST(test_rlock_woken_waiter_killed),
        MP_TEST(test_value_lock_woken_waiter_killed),
        MP_TEST(test_barrier_mutex_woken_waiter_killed),
        MP_TEST(test_cond_notified_waiter_killed),
        MP_TEST(test_cond_timeout_beside_notify),
        MP_TEST(test_cond_eight_waiters_notify_n),
        MP_TEST(test_cond_signal_keeps_waiting),
        MP_TEST(test_cond_dead_waiter_and_late_waiter),
        MP_TEST(test_cond_full_table),
        MP_TEST(test_event_set_clear_releases_all),
        MP_TEST(test_sem_eight_waiters),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
