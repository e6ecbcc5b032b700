/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 */
/* test_queue.c - Queue and JoinableQueue: FIFO, bounds, blocking and timeouts, close, big
 * messages, bad input, and the crash-repair paths driven by test hooks. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "mproc.h"
#include "mp_test.h"
#include "queue_util.h"
#include "queue_internal.h"

static void fifo_in_one_process(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new(&q, 0, 0));
    assert_int_equal(mp_queue_is_empty(q), 1);
    unsigned char buf[3000], out[3000];
    for (unsigned i = 0; i < 200; i++) {
        pattern(buf, i * 13, 1, i);
        assert_mp_ok(mp_queue_put(q, buf, i * 13, 1.0));
    }
    assert_int_equal(mp_queue_qsize(q), 200);
    assert_int_equal(mp_queue_is_empty(q), 0);
    assert_int_equal(mp_queue_is_full(q), 0);
    for (unsigned i = 0; i < 200; i++) {
        size_t n = 0;
        assert_mp_ok(mp_queue_get(q, out, sizeof out, &n, 1.0));
        assert_int_equal(n, i * 13);
        assert_true(pattern_ok(out, n, 1, i));
    }
    assert_int_equal(mp_queue_qsize(q), 0);
    assert_int_equal(mp_queue_is_empty(q), 1);
    /* zero-byte messages are messages */
    assert_mp_ok(mp_queue_put(q, NULL, 0, 0));
    size_t n = 99;
    assert_mp_ok(mp_queue_get_nowait(q, NULL, 0, &n));
    assert_int_equal(n, 0);
    mp_queue_free(&q);
    assert_null(q);
}

static void maxsize_bounds_messages(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new(&q, 3, 0));
    assert_int_equal(mp_queue_maxsize(q), 3);
    for (int i = 0; i < 3; i++)
        assert_mp_ok(mp_queue_put_nowait(q, "abc", 3));
    assert_int_equal(mp_queue_is_full(q), 1);
    assert_mp(-ETIMEDOUT, mp_queue_put_nowait(q, "abc", 3));
    assert_mp(-ETIMEDOUT, mp_queue_put(q, "abc", 3, 0.05));
    assert_mp(-ETIMEDOUT, mp_queue_put(q, "abc", 3, 0));
    char out[8];
    size_t n;
    assert_mp_ok(mp_queue_get(q, out, sizeof out, &n, 0));
    assert_int_equal(mp_queue_is_full(q), 0);
    assert_mp_ok(mp_queue_put_nowait(q, "abc", 3));
    assert_int_equal(mp_queue_qsize(q), 3);
    mp_queue_free(&q);
}

static void capacity_bounds_bytes(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new(&q, 0, 1024));
    assert_int_equal(mp_queue_capacity(q), 1024);
    char buf[100] = {0};
    int n = 0;
    while (mp_queue_put_nowait(q, buf, sizeof buf) == 0)
        n++;
    /* each record takes 16 + 112 bytes */
    assert_int_equal(n, 1024 / 128);
    assert_int_equal(mp_queue_is_full(q), 0); /* full() speaks of maxsize only */
    assert_mp(-ETIMEDOUT, mp_queue_put_nowait(q, buf, sizeof buf));
    assert_mp(-ETIMEDOUT, mp_queue_put_nowait(q, NULL, 0)); /* no room at all */
    size_t got;
    assert_mp_ok(mp_queue_get_nowait(q, buf, sizeof buf, &got));
    assert_mp_ok(mp_queue_put_nowait(q, buf, sizeof buf));
    mp_queue_free(&q);
}

static void get_blocks_then_times_out(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new(&q, 0, 0));
    char out[16];
    size_t n;
    assert_mp(-ETIMEDOUT, mp_queue_get_nowait(q, out, sizeof out, &n));
    assert_mp(-ETIMEDOUT, mp_queue_get(q, out, sizeof out, &n, 0.05));
    assert_mp(-ETIMEDOUT, mp_queue_get(q, out, sizeof out, &n, 0));
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        mp_test_sleep_ms(50);
        MP_CHILD_CHECK(mp_queue_put(q, "late", 4, 5) == 0);
        mp_test_child_exit(0);
    }
    assert_mp_ok(mp_queue_get(q, out, sizeof out, &n, mp_test_timeout(5)));
    assert_int_equal(n, 4);
    assert_memory_equal(out, "late", 4);
    assert_child_ok(pid);
    mp_queue_free(&q);
}

static void put_blocks_until_room(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new(&q, 1, 0));
    assert_mp_ok(mp_queue_put(q, "one", 3, 0));
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        MP_CHILD_CHECK(mp_queue_put(q, "two", 3, mp_test_timeout(5)) == 0);
        mp_test_child_exit(0);
    }
    mp_test_sleep_ms(50);
    char out[8];
    size_t n;
    assert_mp_ok(mp_queue_get(q, out, sizeof out, &n, 1));
    assert_memory_equal(out, "one", 3);
    assert_mp_ok(mp_queue_get(q, out, sizeof out, &n, mp_test_timeout(5)));
    assert_memory_equal(out, "two", 3);
    assert_child_ok(pid);
    mp_queue_free(&q);
}

static void close_fails_puts_drains_gets(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new(&q, 0, 0));
    assert_mp_ok(mp_queue_put(q, "a", 1, 0));
    assert_mp_ok(mp_queue_put(q, "b", 1, 0));
    assert_int_equal(mp_queue_is_closed(q), 0);
    assert_mp_ok(mp_queue_close(q));
    assert_mp_ok(mp_queue_close(q)); /* idempotent */
    assert_int_equal(mp_queue_is_closed(q), 1);
    assert_mp(MP_ECLOSED, mp_queue_put(q, "c", 1, 1));
    assert_mp(MP_ECLOSED, mp_queue_put_nowait(q, "c", 1));
    char out[4];
    size_t n;
    assert_mp_ok(mp_queue_get(q, out, sizeof out, &n, 1));
    assert_int_equal(out[0], 'a');
    assert_mp_ok(mp_queue_get_nowait(q, out, sizeof out, &n));
    assert_int_equal(out[0], 'b');
    assert_mp(MP_ECLOSED, mp_queue_get(q, out, sizeof out, &n, 1));
    assert_mp(MP_ECLOSED, mp_queue_get_nowait(q, out, sizeof out, &n));
    void *p;
    assert_mp(MP_ECLOSED, mp_queue_get_alloc(q, &p, &n, 1));
    assert_null(p);
    mp_queue_free(&q);
}

static void close_wakes_blocked_callers_in_other_processes(void **state)
{
    (void)state;
    mp_queue *empty, *full;
    assert_mp_ok(mp_queue_new(&empty, 0, 0));
    assert_mp_ok(mp_queue_new(&full, 1, 0));
    assert_mp_ok(mp_queue_put(full, "x", 1, 0));
    pid_t getter = mp_test_fork();
    if (getter == 0) {
        char out[4];
        size_t n;
        MP_CHILD_CHECK(mp_queue_get(empty, out, sizeof out, &n, MP_FOREVER) == MP_ECLOSED);
        mp_test_child_exit(0);
    }
    pid_t putter = mp_test_fork();
    if (putter == 0) {
        MP_CHILD_CHECK(mp_queue_put(full, "y", 1, MP_FOREVER) == MP_ECLOSED);
        mp_test_child_exit(0);
    }
    /* a second getter queued behind the first on the consumer lock */
    pid_t getter2 = mp_test_fork();
    if (getter2 == 0) {
        char out[4];
        size_t n;
        MP_CHILD_CHECK(mp_queue_get(empty, out, sizeof out, &n, MP_FOREVER) == MP_ECLOSED);
        mp_test_child_exit(0);
    }
    mp_test_sleep_ms(100);
    assert_mp_ok(mp_queue_close(empty));
    assert_mp_ok(mp_queue_close(full));
    assert_child_ok(getter);
    assert_child_ok(putter);
    assert_child_ok(getter2);
    mp_queue_free(&empty);
    mp_queue_free(&full);
}

static void too_small_buffer_keeps_the_message(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new(&q, 0, 4096));
    unsigned char big[100], out[100];
    pattern(big, sizeof big, 2, 0);
    assert_mp_ok(mp_queue_put(q, big, sizeof big, 0));
    size_t n = 0;
    assert_mp(MP_ETOOSMALL, mp_queue_get(q, out, 10, &n, 0));
    assert_int_equal(n, 100);
    assert_mp(MP_ETOOSMALL, mp_queue_get(q, NULL, 0, &n, 0));
    assert_int_equal(n, 100);
    assert_int_equal(mp_queue_qsize(q), 1);
    assert_mp_ok(mp_queue_get(q, out, sizeof out, &n, 0));
    assert_true(pattern_ok(out, n, 2, 0));

    /* the same for a message larger than the ring, streamed by another process */
    enum { BIG = 20000 };
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        static unsigned char m[BIG];
        pattern(m, BIG, 3, 1);
        MP_CHILD_CHECK(mp_queue_put(q, m, BIG, mp_test_timeout(5)) == 0);
        mp_test_child_exit(0);
    }
    static unsigned char small[BIG / 2];
    for (int i = 0; i < 1000 && mp_queue_qsize(q) == 0; i++)
        mp_test_sleep_ms(2);
    assert_mp(MP_ETOOSMALL, mp_queue_get(q, small, sizeof small, &n, mp_test_timeout(5)));
    assert_int_equal(n, BIG);
    void *p = NULL;
    assert_mp_ok(mp_queue_get_alloc(q, &p, &n, mp_test_timeout(5)));
    assert_int_equal(n, BIG);
    assert_true(pattern_ok(p, n, 3, 1));
    free(p);
    assert_child_ok(pid);
    mp_queue_free(&q);
}

/* Several producers stream messages bigger than the ring at once; every message arrives whole,
 * in per-producer order. */
static void big_messages_stream_without_interleaving(void **state)
{
    (void)state;
    enum { PRODUCERS = 3, EACH = 15, BIG = 50000 };
    mp_queue *q;
    assert_mp_ok(mp_queue_new(&q, 0, 4096));
    pid_t pids[PRODUCERS];
    for (unsigned p = 0; p < PRODUCERS; p++) {
        pids[p] = mp_test_fork();
        if (pids[p] == 0) {
            unsigned char *m = malloc(BIG + 1000);
            for (unsigned s = 0; s < EACH; s++) {
                size_t len = BIG + (s * 37) % 1000;
                pattern(m, len, p, s);
                if (s % 2) {
                    struct iovec iov[2] = {{m, 100}, {m + 100, len - 100}};
                    MP_CHILD_CHECK(mp_queue_putv(q, iov, 2, mp_test_timeout(10)) == 0);
                } else {
                    MP_CHILD_CHECK(mp_queue_put(q, m, len, mp_test_timeout(10)) == 0);
                }
                /* a small one in between */
                unsigned char tiny[8];
                pattern(tiny, 8, p + 100, s);
                MP_CHILD_CHECK(mp_queue_put(q, tiny, 8, mp_test_timeout(10)) == 0);
            }
            free(m);
            mp_test_child_exit(0);
        }
    }
    unsigned next[PRODUCERS] = {0}, next_tiny[PRODUCERS] = {0};
    for (int i = 0; i < PRODUCERS * EACH * 2; i++) {
        void *p = NULL;
        size_t n;
        assert_mp_ok(mp_queue_get_alloc(q, &p, &n, mp_test_timeout(10)));
        int found = 0;
        for (unsigned k = 0; k < PRODUCERS && !found; k++) {
            if (n == 8 && pattern_ok(p, 8, k + 100, next_tiny[k])) {
                next_tiny[k]++;
                found = 1;
            } else if (n > 8 && n == BIG + (next[k] * 37) % 1000 && pattern_ok(p, n, k, next[k])) {
                next[k]++;
                found = 1;
            }
        }
        free(p);
        assert_true(found);
    }
    for (unsigned k = 0; k < PRODUCERS; k++) {
        assert_int_equal(next[k], EACH);
        assert_child_ok(pids[k]);
    }
    mp_queue_free(&q);
}

static void joinable_task_done_and_join(void **state)
{
    (void)state;
    mp_queue *q, *plain;
    assert_mp_ok(mp_queue_new_joinable(&q, 0, 0));
    assert_mp_ok(mp_queue_new(&plain, 0, 0));
    assert_mp(MP_ETYPE, mp_queue_task_done(plain));
    assert_mp(MP_ETYPE, mp_queue_join(plain, 0));
    assert_mp(MP_ETYPE, (int)mp_queue_unfinished(plain));
    assert_mp_ok(mp_queue_join(q, 0)); /* nothing put: nothing to wait for */
    assert_mp(MP_EOVERRELEASE, mp_queue_task_done(q));
    for (int i = 0; i < 5; i++)
        assert_mp_ok(mp_queue_put(q, "t", 1, 0));
    assert_int_equal(mp_queue_unfinished(q), 5);
    assert_mp(-ETIMEDOUT, mp_queue_join(q, 0.05));
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        char out[4];
        size_t n;
        for (int i = 0; i < 5; i++) {
            MP_CHILD_CHECK(mp_queue_get(q, out, sizeof out, &n, 5) == 0);
            mp_test_sleep_ms(10);
            MP_CHILD_CHECK(mp_queue_task_done(q) == 0);
        }
        mp_test_child_exit(0);
    }
    assert_mp_ok(mp_queue_join(q, mp_test_timeout(5)));
    assert_int_equal(mp_queue_unfinished(q), 0);
    assert_child_ok(pid);
    assert_mp(MP_EOVERRELEASE, mp_queue_task_done(q));
    assert_mp_ok(mp_queue_close(q));
    assert_mp_ok(mp_queue_join(q, 0)); /* join works after close */
    mp_queue_free(&q);
    mp_queue_free(&plain);
}

static void bad_input_is_refused(void **state)
{
    (void)state;
    mp_queue *q = NULL;
    char buf[8];
    size_t n;
    void *p = (void *)1;
    assert_mp(-EINVAL, mp_queue_new(NULL, 0, 0));
    assert_mp(-EINVAL, mp_queue_new(&q, 0, 1));
    assert_null(q);
    assert_mp(-EINVAL, mp_queue_new(&q, 0, MP_QUEUE_MAX_CAPACITY + 1));
    assert_mp(-EINVAL, mp_queue_new(&q, (size_t)-1, 0));
    assert_mp(-EINVAL, mp_queue_new_joinable(&q, 0, 3));
    assert_mp(-EINVAL, mp_queue_put(NULL, "x", 1, 0));
    assert_mp(-EINVAL, mp_queue_put_nowait(NULL, "x", 1));
    assert_mp(-EINVAL, mp_queue_putv(NULL, NULL, 0, 0));
    assert_mp(-EINVAL, mp_queue_get(NULL, buf, 8, &n, 0));
    assert_mp(-EINVAL, mp_queue_get_nowait(NULL, buf, 8, &n));
    assert_mp(-EINVAL, mp_queue_get_alloc(NULL, &p, &n, 0));
    assert_null(p);
    assert_int_equal(mp_queue_qsize(NULL), -EINVAL);
    assert_mp(-EINVAL, mp_queue_is_empty(NULL));
    assert_mp(-EINVAL, mp_queue_is_full(NULL));
    assert_mp(-EINVAL, mp_queue_close(NULL));
    assert_mp(-EINVAL, mp_queue_is_closed(NULL));
    assert_mp(-EINVAL, mp_queue_task_done(NULL));
    assert_mp(-EINVAL, mp_queue_join(NULL, 0));
    assert_int_equal(mp_queue_unfinished(NULL), -EINVAL);
    assert_int_equal(mp_queue_capacity(NULL), 0);
    assert_int_equal(mp_queue_maxsize(NULL), 0);
    mp_queue_free(NULL);
    mp_queue_free(&q);

    assert_mp_ok(mp_queue_new(&q, 0, MP_QUEUE_MIN_CAPACITY));
    assert_mp(-EINVAL, mp_queue_put(q, NULL, 1, 0));
    assert_mp(-EINVAL, mp_queue_put_nowait(q, NULL, 1));
    assert_mp(MP_ETOOBIG, mp_queue_put(q, buf, MP_QUEUE_MSG_MAX + 1, 0));
    assert_mp(MP_ETOOBIG, mp_queue_put(q, buf, (size_t)-1, 0));
    struct iovec iov[2] = {{buf, MP_QUEUE_MSG_MAX}, {buf, 1}};
    assert_mp(MP_ETOOBIG, mp_queue_putv(q, iov, 2, 0));
    struct iovec nulliov = {NULL, 3};
    assert_mp(-EINVAL, mp_queue_putv(q, &nulliov, 1, 0));
    assert_mp(-EINVAL, mp_queue_putv(q, NULL, 1, 0));
    assert_mp(-EINVAL, mp_queue_putv(q, iov, -1, 0));
    assert_mp(-EINVAL, mp_queue_putv(q, iov, 100000, 0));
    assert_mp(-EINVAL, mp_queue_get(q, NULL, 5, &n, 0));
    assert_mp(-EINVAL, mp_queue_get(q, buf, 8, NULL, 0));
    assert_mp(-EINVAL, mp_queue_get_nowait(q, buf, 8, NULL));
    assert_mp(-EINVAL, mp_queue_get_alloc(q, NULL, &n, 0));
    assert_mp(-EINVAL, mp_queue_get_alloc(q, &p, NULL, 0));
    /* a queue of the minimum size still moves a message far bigger than itself */
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        static unsigned char m[5000];
        pattern(m, sizeof m, 9, 9);
        MP_CHILD_CHECK(mp_queue_put(q, m, sizeof m, 5) == 0);
        mp_test_child_exit(0);
    }
    assert_mp_ok(mp_queue_get_alloc(q, &p, &n, mp_test_timeout(5)));
    assert_int_equal(n, 5000);
    assert_true(pattern_ok(p, n, 9, 9));
    free(p);
    assert_child_ok(pid);
    /* put_nowait never starts a stream it could not finish at once */
    static unsigned char m2[5000];
    assert_mp(-ETIMEDOUT, mp_queue_put_nowait(q, m2, sizeof m2));
    assert_int_equal(mp_queue_qsize(q), 0);
    /* after free, the variable is NULL and every call refuses it */
    mp_queue_free(&q);
    assert_null(q);
    assert_mp(-EINVAL, mp_queue_put(q, "x", 1, 0));
    assert_mp(-EINVAL, mp_queue_get(q, buf, 8, &n, 0));
    mp_queue_free(&q);
}

/* Bytes overwritten by someone outside the library: MP_ECORRUPT, never a crash or a hang. */
static void scribbled_ring_is_reported(void **state)
{
    (void)state;
    size_t cap;
    for (int how = 0; how < 4; how++) {
        mp_queue *q;
        assert_mp_ok(mp_queue_new(&q, 0, 4096));
        assert_mp_ok(mp_queue_put(q, "hello", 5, 0));
        unsigned char *ring = mp__queue_ring(q, &cap);
        assert_non_null(ring);
        assert_int_equal(cap, 4096);
        if (how == 0) ring[0] ^= 0xff;                 /* magic */
        if (how == 1) ring[4] = 0xff;                  /* chunk length */
        if (how == 2) memset(ring, 0, 16);             /* a zeroed header */
        if (how == 3) memcpy(ring + 4, "\0\0\1\0", 4); /* length past the published bytes */
        char out[64];
        size_t n;
        assert_mp(MP_ECORRUPT, mp_queue_get(q, out, sizeof out, &n, 0.05));
        assert_mp(MP_ECORRUPT, mp_queue_get_nowait(q, out, sizeof out, &n));
        void *p = NULL;
        assert_mp(MP_ECORRUPT, mp_queue_get_alloc(q, &p, &n, 0.05));
        assert_null(p);
        mp_queue_free(&q);
    }
}

/* ---- crash repair: a child dies at an exact point with a side's lock held ------------------ */

static int kill_point;
static void kill_hook(int point)
{
    if (point == kill_point) raise(SIGKILL);
}

static pid_t fork_dying(int point)
{
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        kill_point = point;
        mp__queue_hook = kill_hook;
    }
    return pid;
}

static void assert_killed(pid_t pid)
{
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(10)), 128 + SIGKILL);
}

/* get_alloc: a partly streamed message ahead of `want` may be bigger than any small buffer */
static void get_str(mp_queue *q, const char *want)
{
    void *out = NULL;
    size_t n;
    assert_mp_ok(mp_queue_get_alloc(q, &out, &n, mp_test_timeout(5)));
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    free(out);
}

static void producer_killed_before_publishing(void **state)
{
    (void)state;
    int points[] = {MP__QH_PUT_WRITTEN, MP__QH_PUT_JOURNAL};
    for (int i = 0; i < 2; i++) {
        mp_queue *q;
        assert_mp_ok(mp_queue_new(&q, 0, 0));
        assert_mp_ok(mp_queue_put(q, "before", 6, 0));
        pid_t pid = fork_dying(points[i]);
        if (pid == 0) {
            mp_queue_put(q, "lost", 4, 1);
            mp_test_child_exit(1);
        }
        assert_killed(pid);
        assert_mp_ok(mp_queue_put(q, "after", 5, 1)); /* takes the dead owner's lock */
        struct mp__queue_stats st;
        assert_mp_ok(mp__queue_stats(q, &st));
        assert_int_equal(st.prod_repairs, 1);
        assert_int_equal(mp_queue_qsize(q), 2); /* the journal rolled msgs_put back */
        get_str(q, "before");
        get_str(q, "after");
        assert_int_equal(mp_queue_qsize(q), 0);
        mp_queue_free(&q);
    }
}

static void consumer_killed_before_and_after_taking(void **state)
{
    (void)state;
    /* killed before the head moved: the message stays for the next consumer */
    mp_queue *q;
    assert_mp_ok(mp_queue_new(&q, 0, 0));
    assert_mp_ok(mp_queue_put(q, "a", 1, 0));
    assert_mp_ok(mp_queue_put(q, "b", 1, 0));
    pid_t pid = fork_dying(MP__QH_GET_READ);
    if (pid == 0) {
        char out[4];
        size_t n;
        mp_queue_get(q, out, sizeof out, &n, 1);
        mp_test_child_exit(1);
    }
    assert_killed(pid);
    get_str(q, "a");
    struct mp__queue_stats st;
    assert_mp_ok(mp__queue_stats(q, &st));
    assert_int_equal(st.cons_repairs, 1);
    /* killed after the head moved, before the counters: the repair rolls them forward */
    pid = fork_dying(MP__QH_GET_JOURNAL);
    if (pid == 0) {
        char out[4];
        size_t n;
        mp_queue_get(q, out, sizeof out, &n, 1);
        mp_test_child_exit(1);
    }
    assert_killed(pid);
    assert_mp_ok(mp_queue_put(q, "c", 1, 0));
    get_str(q, "c"); /* "b" went with the killed consumer */
    assert_mp_ok(mp__queue_stats(q, &st));
    assert_int_equal(st.cons_repairs, 2);
    assert_int_equal(mp_queue_qsize(q), 0);
    assert_int_equal(st.msgs_got, st.msgs_put);
    mp_queue_free(&q);
}

static void producer_killed_mid_stream(void **state)
{
    (void)state;
    enum { BIG = 30000 };
    for (int variant = 0; variant < 2; variant++) {
        mp_queue *q;
        assert_mp_ok(mp_queue_new(&q, 0, 4096));
        pid_t pid = fork_dying(MP__QH_PUT_CHUNK);
        if (pid == 0) {
            static unsigned char m[BIG];
            mp_queue_put(q, m, BIG, 5);
            mp_test_child_exit(1);
        }
        assert_killed(pid);
        size_t n;
        struct mp__queue_stats st;
        if (variant == 0) {
            /* qsize sees the open stream's owner dead and repairs: no consumer took a chunk, so
             * the stream is withdrawn as if never put */
            assert_int_equal(mp_queue_qsize(q), 0);
            assert_mp_ok(mp_queue_put(q, "after", 5, 1));
            get_str(q, "after");
            assert_mp_ok(mp__queue_stats(q, &st));
            assert_int_equal(st.aborts, 0);
        } else {
            /* no producer comes: the consumer waiting for the next chunk finds the owner dead,
             * and it holds the consumer side itself, so the stream gets an ABORT record */
            static unsigned char m[BIG];
            assert_mp(-ETIMEDOUT, mp_queue_get(q, m, sizeof m, &n, 0.2));
            assert_mp_ok(mp__queue_stats(q, &st));
            assert_int_equal(st.aborts, 1);
        }
        assert_int_equal(st.prod_repairs, 1);
        assert_int_equal(st.discarded, 0); /* uncounted by the repair, not discarded */
        assert_int_equal(st.msgs_put, variant == 0 ? 1 : 0);
        assert_int_equal(mp_queue_qsize(q), 0);
        mp_queue_free(&q);
    }
}

static void consumer_killed_mid_stream(void **state)
{
    (void)state;
    enum { BIG = 30000 };
    mp_queue *q;
    assert_mp_ok(mp_queue_new(&q, 0, 4096));
    pid_t prod = mp_test_fork();
    if (prod == 0) {
        static unsigned char m[BIG];
        MP_CHILD_CHECK(mp_queue_put(q, m, BIG, 10) == 0);
        MP_CHILD_CHECK(mp_queue_put(q, "after", 5, 10) == 0);
        mp_test_child_exit(0);
    }
    pid_t cons = fork_dying(MP__QH_GET_CHUNK);
    if (cons == 0) {
        static unsigned char m[BIG];
        size_t n;
        mp_queue_get(q, m, sizeof m, &n, 5);
        mp_test_child_exit(1);
    }
    assert_killed(cons);
    get_str(q, "after"); /* the rest of the big message is discarded, not misread */
    assert_child_ok(prod);
    struct mp__queue_stats st;
    assert_mp_ok(mp__queue_stats(q, &st));
    assert_int_equal(st.cons_repairs, 1);
    assert_int_equal(st.discarded, 1);
    assert_int_equal(mp_queue_qsize(q), 0);
    mp_queue_free(&q);
}

/* docs/conventions.md: only MP_FOREVER and +INFINITY wait without limit; any other negative
 * timeout, and NaN, acts as 0 (never sleeps); "would block" is -ETIMEDOUT however it was asked;
 * predicates and queries take const handles and say 1/0/-EINVAL; free returns 0. */
static void calls_follow_the_conventions(void **state)
{
    (void)state;
    mp_queue *q;
    assert_mp_ok(mp_queue_new_joinable(&q, 1, MP_QUEUE_MIN_CAPACITY));
    const mp_queue *cq = q;
    char out[16];
    size_t n;
    const double expired[] = {-0.5, -1e-9, -2.0, -1e300, NAN};
    for (size_t i = 0; i < sizeof expired / sizeof expired[0]; i++) {
        assert_mp(-ETIMEDOUT, mp_queue_get(q, out, sizeof out, &n, expired[i]));
        assert_int_equal(mp_queue_get_many(q, &(struct iovec){out, sizeof out}, 1, &n, expired[i]),
                         -ETIMEDOUT);
    }
    assert_int_equal(mp_queue_is_empty(cq), 1);
    assert_int_equal(mp_queue_is_full(cq), 0);
    assert_int_equal(mp_queue_is_closed(cq), 0);
    assert_mp_ok(mp_queue_put(q, "a", 1, -0.5)); /* room: an expired limit still puts at once */
    assert_int_equal(mp_queue_is_full(cq), 1);
    assert_int_equal(mp_queue_is_empty(cq), 0);
    assert_int_equal(mp_queue_qsize(cq), 1);
    for (size_t i = 0; i < sizeof expired / sizeof expired[0]; i++) {
        assert_mp(-ETIMEDOUT, mp_queue_put(q, "b", 1, expired[i]));
        assert_int_equal(mp_queue_put_many(q, &(struct iovec){"b", 1}, 1, expired[i]), -ETIMEDOUT);
    }
    assert_mp(-ETIMEDOUT, mp_queue_put_nowait(q, "b", 1));
    assert_int_equal(mp_queue_unfinished(cq), 1);
    assert_int_equal(mp_queue_tasks_lost(cq), 0);
    assert_int_equal(mp_queue_capacity(cq), MP_QUEUE_MIN_CAPACITY);
    assert_int_equal(mp_queue_maxsize(cq), 1);
    assert_mp(-ETIMEDOUT, mp_queue_join(q, -0.5));
    assert_mp_ok(mp_queue_get(q, out, sizeof out, &n, -0.5)); /* a message there: taken */
    assert_mp(-ETIMEDOUT, mp_queue_get_nowait(q, out, sizeof out, &n));
    /* a big message with an expired limit starts no stream it cannot finish at once */
    static unsigned char big[5000];
    assert_mp(-ETIMEDOUT, mp_queue_put(q, big, sizeof big, -0.5));
    assert_int_equal(mp_queue_qsize(cq), 0);
    assert_mp_ok(mp_queue_task_done(q));
    assert_mp_ok(mp_queue_join(q, -0.5));
    /* +INFINITY waits as MP_FOREVER does */
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        mp_test_sleep_ms(50);
        MP_CHILD_CHECK(mp_queue_put(q, "late", 4, 5) == 0);
        mp_test_child_exit(0);
    }
    assert_mp_ok(mp_queue_get(q, out, sizeof out, &n, INFINITY));
    assert_int_equal(n, 4);
    assert_child_ok(pid);
    assert_mp_ok(mp_queue_close(q));
    assert_int_equal(mp_queue_is_closed(cq), 1);
    assert_int_equal(mp_queue_free(&q), 0);
    assert_null(q);
    assert_int_equal(mp_queue_free(&q), 0);
    assert_int_equal(mp_queue_free(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(fifo_in_one_process),
        MP_TEST(maxsize_bounds_messages),
        MP_TEST(capacity_bounds_bytes),
        MP_TEST(get_blocks_then_times_out),
        MP_TEST(put_blocks_until_room),
        MP_TEST(close_fails_puts_drains_gets),
        MP_TEST(close_wakes_blocked_callers_in_other_processes),
        MP_TEST(too_small_buffer_keeps_the_message),
        MP_TEST(big_messages_stream_without_interleaving),
        MP_TEST(joinable_task_done_and_join),
        MP_TEST(bad_input_is_refused),
        MP_TEST(calls_follow_the_conventions),
        MP_TEST(scribbled_ring_is_reported),
        MP_TEST(producer_killed_before_publishing),
        MP_TEST(consumer_killed_before_and_after_taking),
        MP_TEST(producer_killed_mid_stream),
        MP_TEST(consumer_killed_mid_stream),
    };
    return mp_test_main(__FILE__, tests, sizeof(tests) / sizeof(tests[0]));
}
