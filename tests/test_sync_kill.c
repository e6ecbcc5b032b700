/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=180 */
/* test_sync_kill.c - six processes contend for one primitive with MP_FOREVER while the test
 * SIGKILLs them at random instants (and replaces each victim): Lock, RLock, a Value's lock, a
 * Semaphore and a Condition. Every few dozen kills the killing pauses and the workers are told to
 * finish their current pass and park: once the others are parked nobody contends any more, so a
 * worker left asleep on a free lock (a wake-up that died with its victim, which later contention
 * would have covered up) never parks, and the watchdog fails the case after 1 s (scaled).
 * MP_SYNC_KILL_SECONDS (default 1) sets the killing time per primitive, for longer hunts. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "mp_test.h"
#include "mproc/error.h"
#include "mproc/shared.h"
#include "mproc/sync.h"
#include "platform/platform.h"

enum { WORKERS = 6, KILLS_PER_CHECK = 40 };

enum kind { K_LOCK, K_RLOCK, K_VALUE, K_SEM, K_COND };

typedef struct arena {
    _Atomic long progress[WORKERS];
    _Atomic int parked[WORKERS];
    _Atomic int drain; /* 1: finish the current pass and park */
    int tokens;        /* Condition: guarded by its lock */
    _Atomic int stop;
} arena;

typedef struct target {
    enum kind kind;
    mp_lock *lock;
    mp_value *value;
    mp_sem *sem;
    mp_cond *cond;
    arena *a;
} target;

static void nap_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

static bool ok_rc(int r)
{
    return r == 0 || r == -EOWNERDEAD;
}

/* One pass through the primitive; a victim may die anywhere in it. */
static void work_once(target *t, int slot)
{
    int r = 0;
    switch (t->kind) {
    case K_LOCK:
    case K_RLOCK:
        r = mp_lock_acquire(t->lock, MP_FOREVER);
        MP_CHILD_CHECK(ok_rc(r));
        for (volatile int i = 0; i < 2000; i++) {
        }
        MP_CHILD_CHECK(mp_lock_release(t->lock) == 0);
        break;
    case K_VALUE:
        r = mp_value_set_i64(t->value, slot);
        MP_CHILD_CHECK(ok_rc(r));
        break;
    case K_SEM:
        MP_CHILD_CHECK(mp_sem_acquire(t->sem, MP_FOREVER) == 0);
        break;
    case K_COND:
        r = mp_cond_acquire(t->cond, MP_FOREVER);
        MP_CHILD_CHECK(ok_rc(r));
        while (t->a->tokens == 0)
            MP_CHILD_CHECK(ok_rc(mp_cond_wait(t->cond, MP_FOREVER)));
        t->a->tokens--;
        MP_CHILD_CHECK(mp_cond_release(t->cond) == 0);
        break;
    }
    atomic_fetch_add(&t->a->progress[slot], 1);
}

static pid_t spawn_worker(target *t, int slot)
{
    atomic_store(&t->a->parked[slot], 0);
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        srand((unsigned)getpid());
        /* Back to back, as a busy program: the releaser takes the lock again on the
         * uncontended path at once, which is what strands the others when the one it woke is
         * killed before it runs. */
        for (;;) {
            if (atomic_load(&t->a->drain)) {
                atomic_store(&t->a->parked[slot], 1);
                while (atomic_load(&t->a->drain))
                    nap_us(200);
                atomic_store(&t->a->parked[slot], 0);
            }
            work_once(t, slot);
            if (rand() % 16 == 0) nap_us(rand() % 50);
        }
    }
    assert_true(pid > 0);
    return pid;
}

/* Semaphore and Condition need a producer, which is never killed: it hands out one unit or
 * token whenever none is left, so a wake-up lost with a victim leaves the survivors asleep next
 * to an available unit. */
static pid_t spawn_feeder(target *t)
{
    if (t->kind != K_SEM && t->kind != K_COND) return 0;
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        while (!atomic_load(&t->a->stop)) {
            if (t->kind == K_SEM) {
                unsigned v = 1;
                mp_sem_get_value(t->sem, &v);
                if (v == 0) mp_sem_release(t->sem);
            } else {
                MP_CHILD_CHECK(ok_rc(mp_cond_acquire(t->cond, MP_FOREVER)));
                if (t->a->tokens == 0) {
                    t->a->tokens = 1;
                    mp_cond_notify(t->cond, 1);
                }
                mp_cond_release(t->cond);
            }
            nap_us(20);
        }
        mp_test_child_exit(0);
    }
    assert_true(pid > 0);
    return pid;
}

/* Every live worker must finish its pass and park within the limit. Returns the slot that did
 * not, or -1. */
static int watchdog(target *t)
{
    atomic_store(&t->a->drain, 1);
    int64_t until = mp__now_ns() + (int64_t)(mp_test_timeout(1) * 1e9);
    int stuck = -1;
    for (;;) {
        stuck = -1;
        for (int i = 0; i < WORKERS && stuck < 0; i++)
            if (!atomic_load(&t->a->parked[i])) stuck = i;
        if (stuck < 0 || mp__now_ns() > until) break;
        nap_us(1000);
    }
    atomic_store(&t->a->drain, 0);
    return stuck;
}

static double kill_seconds(void)
{
    const char *e = getenv("MP_SYNC_KILL_SECONDS");
    double s = e ? atof(e) : 1.0;
    return s > 0 ? s : 1.0;
}

static void run(target *t)
{
    arena *a = mmap(NULL, sizeof *a, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(a != MAP_FAILED);
    memset(a, 0, sizeof *a);
    t->a = a;
    pid_t feeder = spawn_feeder(t);
    pid_t w[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        w[i] = spawn_worker(t, i);
    srand((unsigned)mp__now_ns());
    int64_t end = mp__now_ns() + (int64_t)(kill_seconds() * 1e9);
    long kills = 0;
    int stuck = -1;
    while (mp__now_ns() < end && stuck < 0) {
        for (int k = 0; k < KILLS_PER_CHECK; k++) {
            nap_us(rand() % 1000);
            int i = rand() % WORKERS;
            kill(w[i], SIGKILL);
            assert_int_equal(mp_test_wait_code(w[i], mp_test_timeout(10)), 128 + SIGKILL);
            w[i] = spawn_worker(t, i);
            kills++;
        }
        stuck = watchdog(t);
    }
    if (getenv("MP_SYNC_KILL_VERBOSE")) fprintf(stderr, "kind %d: %ld kills\n", t->kind, kills);
    for (int i = 0; i < WORKERS; i++) {
        kill(w[i], SIGKILL);
        mp_test_wait_code(w[i], mp_test_timeout(10));
    }
    atomic_store(&a->stop, 1);
    if (feeder) {
        /* a feeder stuck on the condition's lock (held by a victim) gets it back: robust */
        assert_int_equal(mp_test_wait_code(feeder, mp_test_timeout(10)), 0);
    }
    munmap(a, sizeof *a);
    if (stuck >= 0) fail_msg("worker %d stayed blocked after %ld kills", stuck, kills);
}

static void test_kill_lock(void **state)
{
    (void)state;
    target t = {.kind = K_LOCK};
    assert_mp_ok(mp_lock_new(&t.lock));
    run(&t);
    mp_lock_free(&t.lock);
}

static void test_kill_rlock(void **state)
{
    (void)state;
    target t = {.kind = K_RLOCK};
    assert_mp_ok(mp_rlock_new(&t.lock));
    run(&t);
    mp_lock_free(&t.lock);
}

static void test_kill_value_lock(void **state)
{
    (void)state;
    target t = {.kind = K_VALUE};
    assert_mp_ok(mp_value_new(&t.value, MP_TYPE_LONG, NULL, true));
    run(&t);
    mp_value_free(&t.value);
}

static void test_kill_semaphore(void **state)
{
    (void)state;
    target t = {.kind = K_SEM};
    assert_mp_ok(mp_sem_new(&t.sem, 0));
    run(&t);
    mp_sem_free(&t.sem);
}

static void test_kill_condition(void **state)
{
    (void)state;
    target t = {.kind = K_COND};
    assert_mp_ok(mp_cond_new(&t.cond, NULL));
    run(&t);
    mp_cond_free(&t.cond);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(test_kill_lock),      MP_TEST(test_kill_rlock),     MP_TEST(test_kill_value_lock),
        MP_TEST(test_kill_semaphore), MP_TEST(test_kill_condition),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
