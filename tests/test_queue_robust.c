/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=120 */
/* test_queue_robust.c - deterministic checks of the queue's promises around dying and failing
 * members: a side lock's wake-up lost with a killed waiter (one CPU, SCHED_FIFO holder, the woken
 * waiter killed right after the unlock), a put that fails leaving no trace (qsize, full, the
 * maxsize slot, unfinished, what consumers see), a message between half the ring and the ring
 * going in without a consumer, and a JoinableQueue whose taker died. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "mproc.h"
#include "mp_test.h"
#include "queue_internal.h"

/* Waits until pid sleeps (its state is 'S'), up to ~5 s. */
static int wait_sleeping(pid_t pid)
{
    for (int i = 0; i < 5000; i++) {
        if (mp_test_proc_state(pid) == 'S') {
            mp_test_sleep_ms(20); /* and still sleeps: it is in the lock, not between calls */
            if (mp_test_proc_state(pid) == 'S') return 1;
        }
        mp_test_sleep_ms(1);
    }
    return 0;
}

/* ---- a side lock's wake-up lost with a killed waiter ---------------------------------------- */

struct lw {
    _Atomic uint32_t holding; /* the holder is inside its call, lock held */
    _Atomic uint32_t go;      /* the waiters sleep on the lock: release it */
    _Atomic int32_t killed;   /* pid of the woken waiter the holder killed */
    _Atomic uint32_t fifo;    /* the holder runs SCHED_FIFO */
    pid_t w[2];
};

static struct lw *lw;
static int lw_point, lw_stage;
static pid_t lw_victim;

/* Stage 0: hold the side until the waiters sleep on it. Stage 1: hold it again (taken on the
 * uncontended path) until the killed waiter is dead: the kernel's robust-futex cleanup wakes
 * another waiter when a dying one had a lock operation pending on a free mutex, not on a held
 * one. */
static void lw_hook(int point)
{
    if (point != lw_point) return;
    if (lw_stage == 0) {
        lw_stage = 1;
        atomic_store(&lw->holding, 1);
        while (!atomic_load(&lw->go))
            mp_test_sleep_ms(1);
    } else if (lw_stage == 2) {
        lw_stage = 3;
        for (int i = 0; i < 5000; i++) {
            char st = mp_test_proc_state(lw_victim);
            if (st == 0 || st == 'Z' || st == 'X') break;
            mp_test_sleep_ms(1);
        }
    }
}

/* The holder: takes the side in a call paused by the hook, releases it when told, kills the
 * waiter that the unlock woke before it can run (SCHED_FIFO on the only CPU), then takes the side
 * again on the uncontended path (no waiter bit: its unlock wakes nobody) and holds it while the
 * killed waiter dies. */
static __attribute__((noreturn)) void lw_holder(mp_queue *q, int cons_side)
{
    MP_CHILD_CHECK(mp_test_pin_first_cpu() == 0);
    struct sched_param sp = {.sched_priority = 1};
    if (sched_setscheduler(0, SCHED_FIFO, &sp) == 0) atomic_store(&lw->fifo, 1);
    lw_point = cons_side ? MP__QH_GET_READ : MP__QH_PUT_WRITTEN;
    mp__queue_hook = lw_hook;
    char buf[64];
    size_t n;
    if (cons_side)
        MP_CHILD_CHECK(mp_queue_get(q, buf, sizeof buf, &n, 30.0) == 0);
    else
        MP_CHILD_CHECK(mp_queue_put(q, "held", 4, 30.0) == 0);
    /* the unlock woke one waiter: it is runnable, not yet running */
    pid_t woken = 0;
    for (int i = 0; i < 2 && !woken; i++)
        if (mp_test_proc_state(lw->w[i]) == 'R') woken = lw->w[i];
    MP_CHILD_CHECK(woken != 0);
    kill(woken, SIGKILL);
    atomic_store(&lw->killed, woken);
    lw_victim = woken;
    if (cons_side) MP_CHILD_CHECK(mp_queue_put(q, "x", 1, 1.0) == 0);
    lw_stage = 2;
    if (cons_side) {
        MP_CHILD_CHECK(mp_queue_get(q, buf, sizeof buf, &n, 1.0) == 0);
        MP_CHILD_CHECK(mp_queue_put(q, "for you", 7, 1.0) == 0);
    } else {
        MP_CHILD_CHECK(mp_queue_put(q, "again", 5, 1.0) == 0);
    }
    MP_CHILD_CHECK(lw_stage == 3);
    mp_test_child_exit(0);
}

static __attribute__((noreturn)) void lw_waiter(mp_queue *q, int cons_side)
{
    MP_CHILD_CHECK(mp_test_pin_first_cpu() == 0);
    /* SCHED_IDLE (allowed without privileges): once woken, a waiter never preempts the holder,
     * even when SCHED_FIFO was refused to it. */
    struct sched_param sp = {.sched_priority = 0};
    MP_CHILD_CHECK(sched_setscheduler(0, SCHED_IDLE, &sp) == 0);
    char buf[64];
    size_t n;
    if (cons_side) {
        MP_CHILD_CHECK(mp_queue_get(q, buf, sizeof buf, &n, 60.0) == 0);
        MP_CHILD_CHECK(n == 7 && memcmp(buf, "for you", 7) == 0);
    } else {
        MP_CHILD_CHECK(mp_queue_put(q, "waiter", 6, 60.0) == 0);
    }
    mp_test_child_exit(0);
}

static void lost_wakeup_round(int cons_side)
{
    lw = mmap(NULL, sizeof *lw, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(lw != MAP_FAILED);
    mp_queue *q;
    assert_mp_ok(mp_queue_new(&q, 0, 4096));
    if (cons_side) assert_mp_ok(mp_queue_put(q, "first", 5, 1.0));
    pid_t h = mp_test_fork();
    if (h == 0) lw_holder(q, cons_side);
    assert_true(h > 0);
    for (int i = 0; i < 5000 && !atomic_load(&lw->holding); i++)
        mp_test_sleep_ms(1);
    assert_true(atomic_load(&lw->holding));
    for (int i = 0; i < 2; i++) {
        pid_t w = mp_test_fork();
        if (w == 0) lw_waiter(q, cons_side);
        assert_true(w > 0);
        lw->w[i] = w;
        assert_true(wait_sleeping(w));
    }
    atomic_store(&lw->go, 1);
    assert_int_equal(mp_test_wait_code(h, mp_test_timeout(10)), 0);
    pid_t killed = atomic_load(&lw->killed);
    pid_t other = killed == lw->w[0] ? lw->w[1] : lw->w[0];
    /* The survivor must not sleep on a free lock until its 60 s timeout. */
    assert_int_equal(mp_test_wait_code(other, mp_test_timeout(3)), 0);
    assert_int_equal(mp_test_wait_code(killed, mp_test_timeout(10)), 128 + SIGKILL);
    if (!atomic_load(&lw->fifo))
        fprintf(stderr, "note: SCHED_FIFO refused, the waiters' SCHED_IDLE did the work\n");
    mp_queue_free(&q);
    munmap(lw, sizeof *lw);
}

static void producer_side_wakeup_survives_killed_waiter(void **state)
{
    (void)state;
    for (int round = 0; round < 3; round++)
        lost_wakeup_round(0);
}

static void consumer_side_wakeup_survives_killed_waiter(void **state)
{
    (void)state;
    for (int round = 0; round < 3; round++)
        lost_wakeup_round(1);
}

/* ---- a put that fails leaves no trace -------------------------------------------------------- */

enum { RING = 4096, BIG = 9000 };

static unsigned char big[BIG];

static void assert_untouched(mp_queue *q, ssize_t qsize)
{
    assert_int_equal(mp_queue_qsize(q), qsize);
    assert_int_equal(mp_queue_is_full(q), 0);
    assert_int_equal(mp_queue_unfinished(q), qsize);
}

/* Timed out midway with no consumer at all: rolled back, nothing of it anywhere. */
static void stream_timeout_without_consumer_rolls_back(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new_joinable(&q, 2, RING));
    assert_mp(-ETIMEDOUT, mp_queue_put(q, big, BIG, 0.1));
    assert_untouched(q, 0);
    /* its slot and its ring bytes are free again */
    assert_mp_ok(mp_queue_put(q, "one", 3, 0.2));
    assert_mp_ok(mp_queue_put(q, "two", 3, 0.2));
    assert_int_equal(mp_queue_is_full(q), 1);
    /* a consumer with a small buffer never hears of it */
    char buf[16];
    size_t n;
    assert_mp_ok(mp_queue_get_nowait(q, buf, sizeof buf, &n));
    assert_true(n == 3 && memcmp(buf, "one", 3) == 0);
    assert_mp_ok(mp_queue_get_nowait(q, buf, sizeof buf, &n));
    assert_true(n == 3 && memcmp(buf, "two", 3) == 0);
    assert_mp(-ETIMEDOUT, mp_queue_get_nowait(q, buf, sizeof buf, &n));
    assert_mp_ok(mp_queue_task_done(q));
    assert_mp_ok(mp_queue_task_done(q));
    assert_mp_ok(mp_queue_join(q, 0));
    struct mp__queue_stats st;
    assert_mp_ok(mp__queue_stats(q, &st));
    assert_int_equal(st.msgs_put, 2);
    mp_queue_free(&q);
}

/* After a queued message, with the stream behind it: still rolled back, the message intact. */
static void stream_timeout_behind_a_message_rolls_back(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new_joinable(&q, 3, RING));
    assert_mp_ok(mp_queue_put(q, "before", 6, 0.2));
    assert_mp(-ETIMEDOUT, mp_queue_put(q, big, BIG, 0.1));
    assert_untouched(q, 1);
    assert_mp_ok(mp_queue_put(q, "after", 5, 0.2));
    char buf[16];
    size_t n;
    assert_mp_ok(mp_queue_get(q, buf, sizeof buf, &n, 0.2));
    assert_true(n == 6 && memcmp(buf, "before", 6) == 0);
    assert_mp_ok(mp_queue_get(q, buf, sizeof buf, &n, 0.2));
    assert_true(n == 5 && memcmp(buf, "after", 5) == 0);
    mp_queue_free(&q);
}

static void die_hook(int point)
{
    if (point == MP__QH_GET_CHUNK || point == MP__QH_PUT_CHUNK) raise(SIGKILL);
}

/* A consumer took the first chunk and died; the producer then times out: the message is
 * uncounted at once, and consumers skip what is left of it. */
static void stream_timeout_after_a_chunk_was_taken_is_uncounted(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new_joinable(&q, 1, RING));
    pid_t c = mp_test_fork();
    if (c == 0) {
        mp__queue_hook = die_hook;
        void *p;
        size_t n;
        mp_queue_get_alloc(q, &p, &n, 30.0);
        mp_test_child_exit(1);
    }
    assert_true(c > 0);
    mp_test_sleep_ms(50);
    assert_mp(-ETIMEDOUT, mp_queue_put(q, big, BIG, 0.5));
    assert_int_equal(mp_test_wait_code(c, mp_test_timeout(10)), 128 + SIGKILL);
    assert_untouched(q, 0);
    /* a consumer skips the rest of it (its ring bytes stay taken until one does) */
    char buf[16];
    size_t n;
    assert_mp(-ETIMEDOUT, mp_queue_get_nowait(q, buf, sizeof buf, &n));
    assert_untouched(q, 0);
    assert_mp_ok(mp_queue_put(q, "one", 3, 0.2));
    assert_mp_ok(mp_queue_get(q, buf, sizeof buf, &n, 0.5));
    assert_true(n == 3 && memcmp(buf, "one", 3) == 0);
    assert_mp(-ETIMEDOUT, mp_queue_get_nowait(q, buf, sizeof buf, &n));
    assert_mp_ok(mp_queue_task_done(q));
    assert_mp_ok(mp_queue_join(q, 0));
    mp_queue_free(&q);
}

/* A producer killed mid-stream with no consumer: the message is gone for qsize, full, the slot,
 * unfinished, and a consumer with a small buffer gets no MP_ETOOSMALL for it. */
static void producer_killed_mid_stream_leaves_no_trace(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new_joinable(&q, 1, RING));
    pid_t p = mp_test_fork();
    if (p == 0) {
        mp__queue_hook = die_hook;
        mp_queue_put(q, big, BIG, 30.0);
        mp_test_child_exit(1);
    }
    assert_true(p > 0);
    assert_int_equal(mp_test_wait_code(p, mp_test_timeout(10)), 128 + SIGKILL);
    char buf[16];
    size_t n;
    assert_mp(-ETIMEDOUT, mp_queue_get_nowait(q, buf, sizeof buf, &n));
    assert_mp(-ETIMEDOUT, mp_queue_get(q, buf, sizeof buf, &n, 0.05));
    assert_untouched(q, 0);
    assert_mp_ok(mp_queue_put(q, "one", 3, 0.2));
    assert_mp_ok(mp_queue_get(q, buf, sizeof buf, &n, 0.2));
    assert_true(n == 3 && memcmp(buf, "one", 3) == 0);
    mp_queue_free(&q);
}

/* The same, seen first by qsize and a small-buffer get rather than by a producer. */
static void killed_stream_is_not_announced_to_small_buffers(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new_joinable(&q, 0, RING));
    assert_mp_ok(mp_queue_put(q, "first", 5, 0.2));
    pid_t p = mp_test_fork();
    if (p == 0) {
        mp__queue_hook = die_hook;
        mp_queue_put(q, big, BIG, 30.0);
        mp_test_child_exit(1);
    }
    assert_true(p > 0);
    assert_int_equal(mp_test_wait_code(p, mp_test_timeout(10)), 128 + SIGKILL);
    char buf[16];
    size_t n;
    assert_mp_ok(mp_queue_get_nowait(q, buf, sizeof buf, &n));
    assert_true(n == 5 && memcmp(buf, "first", 5) == 0);
    assert_mp(-ETIMEDOUT, mp_queue_get_nowait(q, buf, sizeof buf, &n));
    assert_int_equal(mp_queue_qsize(q), 0);
    assert_int_equal(mp_queue_unfinished(q), 1);
    mp_queue_free(&q);
}

/* Between half the ring and the ring: goes in whole, no consumer needed. */
static void message_up_to_the_ring_needs_no_consumer(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new(&q, 0, RING));
    size_t sizes[] = {RING / 2, RING / 2 + 100, RING * 3 / 4, RING - 16};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (size_t k = 0; k < sizes[i]; k++)
            big[k] = (unsigned char)(k * 7 + i);
        assert_mp_ok(mp_queue_put(q, big, sizes[i], 0.2));
        assert_int_equal(mp_queue_qsize(q), 1);
        void *out;
        size_t n;
        assert_mp_ok(mp_queue_get_alloc(q, &out, &n, 0.2));
        assert_int_equal(n, sizes[i]);
        assert_memory_equal(out, big, n);
        free(out);
    }
    /* and without waiting */
    assert_mp_ok(mp_queue_put_nowait(q, big, RING - 16));
    assert_mp(-ETIMEDOUT, mp_queue_put_nowait(q, "x", 1));
    mp_queue_free(&q);
}

/* ---- JoinableQueue: a taker that died ------------------------------------------------------ */

static void join_counts_items_of_a_dead_taker_done(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new_joinable(&q, 0, RING));
    for (int i = 0; i < 3; i++)
        assert_mp_ok(mp_queue_put(q, "task", 4, 0.2));
    assert_int_equal(mp_queue_tasks_lost(q), 0);
    pid_t a = mp_test_fork();
    if (a == 0) { /* takes one and dies before task_done */
        char buf[8];
        size_t n;
        MP_CHILD_CHECK(mp_queue_get(q, buf, sizeof buf, &n, 5.0) == 0);
        raise(SIGKILL);
    }
    assert_true(a > 0);
    pid_t b = mp_test_fork();
    if (b == 0) {
        char buf[8];
        size_t n;
        for (int i = 0; i < 2; i++) {
            MP_CHILD_CHECK(mp_queue_get(q, buf, sizeof buf, &n, 5.0) == 0);
            MP_CHILD_CHECK(mp_queue_task_done(q) == 0);
        }
        mp_test_child_exit(0);
    }
    assert_true(b > 0);
    assert_int_equal(mp_test_wait_code(b, mp_test_timeout(10)), 0);
    /* a is dead but not reaped yet (a zombie): gone all the same */
    assert_mp_ok(mp_queue_join(q, mp_test_timeout(10)));
    assert_int_equal(mp_queue_unfinished(q), 0);
    assert_int_equal(mp_queue_tasks_lost(q), 1);
    assert_int_equal(mp_test_wait_code(a, mp_test_timeout(10)), 128 + SIGKILL);
    assert_mp(MP_EOVERRELEASE, mp_queue_task_done(q));
    mp_queue_free(&q);
}

static void journal_hook(int point)
{
    if (point == MP__QH_GET_JOURNAL) raise(SIGKILL);
}

/* A taker killed in the middle of its get's commit (head moved, counters not yet): the repair
 * rolls its slot forward, and join counts that message lost with it. */
static void join_with_a_taker_killed_mid_commit(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new_joinable(&q, 0, RING));
    assert_mp_ok(mp_queue_put(q, "one", 3, 0.2));
    assert_mp_ok(mp_queue_put(q, "two", 3, 0.2));
    pid_t c = mp_test_fork();
    if (c == 0) {
        mp__queue_hook = journal_hook;
        char buf[8];
        size_t n;
        mp_queue_get(q, buf, sizeof buf, &n, 5.0);
        mp_test_child_exit(1);
    }
    assert_true(c > 0);
    assert_int_equal(mp_test_wait_code(c, mp_test_timeout(10)), 128 + SIGKILL);
    char buf[8];
    size_t n;
    assert_mp_ok(mp_queue_get(q, buf, sizeof buf, &n, 0.2)); /* repairs the consumer side */
    assert_true(n == 3 && memcmp(buf, "two", 3) == 0);
    assert_mp_ok(mp_queue_task_done(q));
    assert_mp_ok(mp_queue_join(q, mp_test_timeout(10)));
    assert_int_equal(mp_queue_tasks_lost(q), 1);
    assert_int_equal(mp_queue_unfinished(q), 0);
    mp_queue_free(&q);
}

static void join_times_out_while_a_live_taker_holds_an_item(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new_joinable(&q, 0, RING));
    assert_mp_ok(mp_queue_put(q, "task", 4, 0.2));
    assert_mp_ok(mp_queue_put(q, "next", 4, 0.2));
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t c = mp_test_fork();
    if (c == 0) {
        close(fds[1]);
        char buf[8];
        size_t n;
        MP_CHILD_CHECK(mp_queue_get(q, buf, sizeof buf, &n, 5.0) == 0);
        char x;
        MP_CHILD_CHECK(read(fds[0], &x, 1) == 1); /* hold the item until told */
        MP_CHILD_CHECK(mp_queue_task_done(q) == 0);
        mp_test_child_exit(0);
    }
    assert_true(c > 0);
    close(fds[0]);
    /* the parent takes the second and finishes it */
    char buf[8];
    size_t n;
    for (int i = 0; i < 1000 && mp_queue_qsize(q) == 2; i++)
        mp_test_sleep_ms(1);
    assert_mp_ok(mp_queue_get(q, buf, sizeof buf, &n, 1.0));
    assert_mp_ok(mp_queue_task_done(q));
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_mp(-ETIMEDOUT, mp_queue_join(q, 0.2));
    clock_gettime(CLOCK_MONOTONIC, &b);
    double took = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    assert_true(took >= 0.19);
    assert_int_equal(mp_queue_unfinished(q), 1);
    assert_int_equal(write(fds[1], "x", 1), 1);
    assert_mp_ok(mp_queue_join(q, mp_test_timeout(10)));
    assert_int_equal(mp_queue_tasks_lost(q), 0);
    assert_int_equal(mp_test_wait_code(c, mp_test_timeout(10)), 0);
    close(fds[1]);
    mp_queue_free(&q);
}

/* task_done from another process than the taker (a hand-off) is still counted once. */
static void task_done_by_another_process(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new_joinable(&q, 0, RING));
    assert_mp_ok(mp_queue_put(q, "task", 4, 0.2));
    char buf[8];
    size_t n;
    assert_mp_ok(mp_queue_get(q, buf, sizeof buf, &n, 0.2));
    pid_t c = mp_test_fork();
    if (c == 0) {
        MP_CHILD_CHECK(mp_queue_task_done(q) == 0);
        mp_test_child_exit(0);
    }
    assert_true(c > 0);
    assert_int_equal(mp_test_wait_code(c, mp_test_timeout(10)), 0);
    assert_mp_ok(mp_queue_join(q, 0));
    assert_mp(MP_EOVERRELEASE, mp_queue_task_done(q));
    assert_int_equal(mp_queue_tasks_lost(q), 0);
    mp_queue_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(producer_side_wakeup_survives_killed_waiter),
        MP_TEST(consumer_side_wakeup_survives_killed_waiter),
        MP_TEST(stream_timeout_without_consumer_rolls_back),
        MP_TEST(stream_timeout_behind_a_message_rolls_back),
        MP_TEST(stream_timeout_after_a_chunk_was_taken_is_uncounted),
        MP_TEST(producer_killed_mid_stream_leaves_no_trace),
        MP_TEST(killed_stream_is_not_announced_to_small_buffers),
        MP_TEST(message_up_to_the_ring_needs_no_consumer),
        MP_TEST(join_counts_items_of_a_dead_taker_done),
        MP_TEST(join_with_a_taker_killed_mid_commit),
        MP_TEST(join_times_out_while_a_live_taker_holds_an_item),
        MP_TEST(task_done_by_another_process),
    };
    return mp_test_main(__FILE__, tests, sizeof(tests) / sizeof(tests[0]));
}
