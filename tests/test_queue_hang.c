/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=120 */
/* test_queue_hang.c - 4 producers and 4 consumers SIGKILLed (and replaced) at random instants,
 * thousands of kills on one queue, every put and get with a long timeout, and a watchdog: a put
 * blocked for more than a second while the queue has room, or a get blocked for more than a
 * second while it has messages, fails the test. That is what a wake-up lost with a killed waiter
 * (a side lock's, or a futex word's) looks like from outside. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "mproc.h"
#include "mp_test.h"

enum {
    NPROD = 4,
    NCONS = 4,
    NW = NPROD + NCONS,
    RING = 16384,
    MAXLEN = 200,     /* every message goes whole: a record is at most 216 bytes */
    ROOMY_QSIZE = 30, /* below this many messages the ring has room for any put */
    KILLS = 4000,     /* both cases together */
};

#define RUN_S 18.0 /* both cases together: stop earlier than KILLS if the machine is slow */

struct worker {
    _Atomic int64_t since_ns; /* inside put/get since then, 0 when outside */
    _Atomic uint32_t calls;
};

struct shared {
    _Atomic uint32_t errors;
    _Atomic uint32_t stop;
    struct worker w[NW];
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static __attribute__((noreturn)) void producer(mp_queue *q, struct shared *sh, struct worker *me,
                                               uint64_t seed)
{
    unsigned char buf[MAXLEN];
    uint64_t rng = seed;
    while (!atomic_load(&sh->stop)) {
        size_t len = (size_t)(mp_test_rng_next(&rng) % MAXLEN);
        memset(buf, (int)(len & 0xff), len);
        atomic_store(&me->since_ns, now_ns());
        int rc = mp_queue_put(q, buf, len, 60.0);
        atomic_store(&me->since_ns, 0);
        atomic_fetch_add(&me->calls, 1);
        if (rc == MP_ECLOSED) break;
        if (rc != 0) {
            fprintf(stderr, "put: %d\n", rc);
            atomic_fetch_add(&sh->errors, 1);
            mp_test_child_exit(2);
        }
    }
    mp_test_child_exit(0);
}

static __attribute__((noreturn)) void consumer(mp_queue *q, struct shared *sh, struct worker *me)
{
    unsigned char buf[MAXLEN];
    while (!atomic_load(&sh->stop)) {
        size_t n;
        atomic_store(&me->since_ns, now_ns());
        int rc = mp_queue_get(q, buf, sizeof buf, &n, 60.0);
        atomic_store(&me->since_ns, 0);
        atomic_fetch_add(&me->calls, 1);
        if (rc == MP_ECLOSED) break;
        int bad = rc != 0;
        for (size_t i = 0; !bad && i < n; i++)
            bad = buf[i] != (unsigned char)(n & 0xff);
        if (bad) {
            fprintf(stderr, "get: %d\n", rc);
            atomic_fetch_add(&sh->errors, 1);
            mp_test_child_exit(3);
        }
    }
    mp_test_child_exit(0);
}

static pid_t spawn(mp_queue *q, struct shared *sh, int i, uint64_t seed)
{
    atomic_store(&sh->w[i].since_ns, 0);
    pid_t p = mp_test_fork();
    if (p == 0) {
        if (i < NPROD) producer(q, sh, &sh->w[i], seed);
        consumer(q, sh, &sh->w[i]);
    }
    return p;
}

static void spin_us(long us)
{
    int64_t until = now_ns() + us * 1000;
    while (now_ns() < until) {
    }
}

/* A worker stuck in its call for more than `limit_ns` while the other side could let it
 * proceed: -1 when none, else its index. */
static int stuck(mp_queue *q, struct shared *sh, int64_t limit_ns)
{
    int64_t now = now_ns();
    for (int i = 0; i < NW; i++) {
        int64_t since = atomic_load(&sh->w[i].since_ns);
        if (!since || now - since < limit_ns) continue;
        ssize_t qs = mp_queue_qsize(q);
        /* the call is still the same one, and the condition held all along as far as we see */
        if (atomic_load(&sh->w[i].since_ns) != since) continue;
        if (i < NPROD ? qs < ROOMY_QSIZE : qs > 0) return i;
    }
    return -1;
}

/* Continuous: a killed worker is replaced at once, so the queue is never idle. */
static void random_kills_never_leave_a_caller_blocked(void **state)
{
    (void)state;
    struct shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(sh != MAP_FAILED);
    mp_queue *q;
    assert_mp_ok(mp_queue_new(&q, 0, RING));
    pid_t pid[NW];
    uint64_t rng = 0x5EED5EEDull;
    for (int i = 0; i < NW; i++)
        assert_true((pid[i] = spawn(q, sh, i, mp_test_rng_next(&rng))) > 0);
    const int64_t limit = (int64_t)(mp_test_timeout(1.0) * 1e9);
    /* The time allowed for the kills scales with the run (valgrind, sanitizers), so the
     * minimum number of kills below is reached on a slow run too. */
    const int64_t run_ns = (int64_t)(RUN_S / 2 * 1e9 * mp_test_timeout(1.0));
    int64_t start = now_ns(), worst = 0;
    int kills = 0, bad = -1;
    while (kills < KILLS / 2 && now_ns() - start < run_ns) {
        spin_us((long)(mp_test_rng_next(&rng) % 3000));
        if ((bad = stuck(q, sh, limit)) >= 0) break;
        int v = (int)(mp_test_rng_next(&rng) % NW);
        assert_true(pid[v] > 0); /* never kill(-1) */
        kill(pid[v], SIGKILL);
        int code = mp_test_wait_code(pid[v], mp_test_timeout(10));
        if (code != 128 + SIGKILL) fprintf(stderr, "worker %d ended with %d\n", v, code);
        assert_int_equal(code, 128 + SIGKILL);
        kills++;
        assert_true((pid[v] = spawn(q, sh, v, mp_test_rng_next(&rng))) > 0);
        for (int i = 0; i < NW; i++) {
            int64_t since = atomic_load(&sh->w[i].since_ns);
            if (since && now_ns() - since > worst) worst = now_ns() - since;
        }
    }
    uint32_t calls = 0;
    for (int i = 0; i < NW; i++)
        calls += atomic_load(&sh->w[i].calls);
    fprintf(stderr, "kills %d in %.1f s, calls %u, qsize %zd, longest call seen %.0f ms\n", kills,
            (double)(now_ns() - start) / 1e9, calls, mp_queue_qsize(q), (double)worst / 1e6);
    if (bad >= 0)
        fprintf(stderr, "%s %d blocked %.0f ms with qsize %zd\n",
                bad < NPROD ? "producer" : "consumer", bad,
                (double)(now_ns() - atomic_load(&sh->w[bad].since_ns)) / 1e6, mp_queue_qsize(q));
    atomic_store(&sh->stop, 1);
    assert_mp_ok(mp_queue_close(q)); /* wakes the callers still waiting */
    for (int i = 0; i < NW; i++)
        assert_int_equal(mp_test_wait_code(pid[i], mp_test_timeout(10)), 0);
    assert_int_equal(bad, -1);
    assert_int_equal(atomic_load(&sh->errors), 0);
    assert_true(kills >= 500);
    mp_queue_free(&q);
    munmap(sh, sizeof *sh);
}

/* In waves: all 8 start on a fresh queue, a random 1 to 6 of them are killed at random instants
 * and not replaced, the survivors go on for a moment, then the queue is closed. Closing ends
 * every call at once; one still blocked a second later sleeps on a lock nobody will hand it
 * (with fewer survivors, no newcomer's contention comes to wake it by chance). */
static void kill_waves_never_leave_a_survivor_blocked(void **state)
{
    (void)state;
    struct shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(sh != MAP_FAILED);
    uint64_t rng = 0xC0FFEEull;
    const int64_t limit = (int64_t)(mp_test_timeout(1.0) * 1e9);
    const int64_t run_ns = (int64_t)(RUN_S / 2 * 1e9 * mp_test_timeout(1.0));
    int64_t start = now_ns();
    int kills = 0, rounds = 0, blocked = 0;
    while (kills < KILLS / 2 && now_ns() - start < run_ns) {
        mp_queue *q;
        assert_mp_ok(mp_queue_new(&q, 0, RING));
        atomic_store(&sh->stop, 0);
        pid_t pid[NW];
        for (int i = 0; i < NW; i++)
            assert_true((pid[i] = spawn(q, sh, i, mp_test_rng_next(&rng))) > 0);
        spin_us((long)(mp_test_rng_next(&rng) % 2000));
        int nk = 1 + (int)(mp_test_rng_next(&rng) % 6);
        bool dead[NW] = {false};
        for (int k = 0; k < nk; k++) {
            int v = (int)(mp_test_rng_next(&rng) % NW);
            if (dead[v]) continue;
            spin_us((long)(mp_test_rng_next(&rng) % 300));
            kill(pid[v], SIGKILL);
            dead[v] = true;
            kills++;
        }
        spin_us((long)(mp_test_rng_next(&rng) % 1000));
        assert_mp_ok(mp_queue_close(q));
        for (int i = 0; i < NW; i++) {
            if (dead[i]) continue;
            int code = mp_test_wait_code(pid[i], (double)limit / 1e9);
            if (code != 0)
                fprintf(stderr, "round %d: %s %d still blocked a second after close (%d)\n", rounds,
                        i < NPROD ? "producer" : "consumer", i, code);
            blocked += code != 0;
        }
        for (int i = 0; i < NW; i++)
            if (dead[i])
                assert_int_equal(mp_test_wait_code(pid[i], mp_test_timeout(10)), 128 + SIGKILL);
        mp_queue_free(&q);
        rounds++;
        if (blocked) break;
    }
    fprintf(stderr, "rounds %d, kills %d in %.1f s\n", rounds, kills,
            (double)(now_ns() - start) / 1e9);
    assert_int_equal(blocked, 0);
    assert_int_equal(atomic_load(&sh->errors), 0);
    assert_true(kills >= 500);
    munmap(sh, sizeof *sh);
}

/* JoinableQueue: consumers that get, work a little and task_done are killed at random instants
 * (many between get and task_done) and replaced; join must still return once everything put was
 * either done or lost with its taker, and the lost ones are at most one per kill. */
static __attribute__((noreturn)) void join_worker(mp_queue *q, struct shared *sh)
{
    for (;;) {
        char buf[16];
        size_t n;
        int rc = mp_queue_get(q, buf, sizeof buf, &n, 60.0);
        if (rc == MP_ECLOSED) break;
        if (rc != 0) {
            atomic_fetch_add(&sh->errors, 1);
            mp_test_child_exit(4);
        }
        spin_us(50); /* the work: a window to be killed in */
        if (mp_queue_task_done(q) != 0) {
            atomic_fetch_add(&sh->errors, 1);
            mp_test_child_exit(5);
        }
    }
    mp_test_child_exit(0);
}

static void join_returns_when_takers_die(void **state)
{
    (void)state;
    enum { ITEMS = 6000, NJW = 4, JKILLS = 300 };
    struct shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(sh != MAP_FAILED);
    mp_queue *q;
    assert_mp_ok(mp_queue_new_joinable(&q, 0, 1 << 20));
    pid_t pid[NJW];
    for (int i = 0; i < NJW; i++) {
        pid[i] = mp_test_fork();
        if (pid[i] == 0) join_worker(q, sh);
        assert_true(pid[i] > 0);
    }
    uint64_t rng = 0xBADC0DEull;
    int kills = 0, put = 0;
    while (put < ITEMS || kills < JKILLS) {
        for (int k = 0; k < 20 && put < ITEMS; k++, put++)
            assert_mp_ok(mp_queue_put(q, "item", 4, 10.0));
        if (kills >= JKILLS) continue;
        spin_us((long)(mp_test_rng_next(&rng) % 400));
        int v = (int)(mp_test_rng_next(&rng) % NJW);
        assert_true(pid[v] > 0);
        kill(pid[v], SIGKILL);
        assert_int_equal(mp_test_wait_code(pid[v], mp_test_timeout(10)), 128 + SIGKILL);
        kills++;
        pid[v] = mp_test_fork();
        if (pid[v] == 0) join_worker(q, sh);
        assert_true(pid[v] > 0);
    }
    assert_mp_ok(mp_queue_join(q, mp_test_timeout(10)));
    ssize_t lost = mp_queue_tasks_lost(q);
    fprintf(stderr, "items %d, kills %d, lost with their taker %zd\n", put, kills, lost);
    assert_int_equal(mp_queue_qsize(q), 0);
    assert_int_equal(mp_queue_unfinished(q), 0);
    assert_true(lost >= 0 && lost <= kills);
    assert_mp(MP_EOVERRELEASE, mp_queue_task_done(q));
    assert_mp_ok(mp_queue_close(q));
    for (int i = 0; i < NJW; i++)
        assert_int_equal(mp_test_wait_code(pid[i], mp_test_timeout(10)), 0);
    assert_int_equal(atomic_load(&sh->errors), 0);
    mp_queue_free(&q);
    munmap(sh, sizeof *sh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(random_kills_never_leave_a_caller_blocked),
        MP_TEST(kill_waves_never_leave_a_survivor_blocked),
        MP_TEST(join_returns_when_takers_die),
    };
    return mp_test_main(__FILE__, tests, sizeof(tests) / sizeof(tests[0]));
}
