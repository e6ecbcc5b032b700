/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=120 */
/* test_queue_kill.c - SIGKILL producers and consumers at random instants, over 1,000 times, on one
 * queue that lives through every round; then account for every message: each received at most
 * once and intact, per-producer order kept, and every message missing was in flight in a killed
 * process. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <sched.h>
#include <time.h>

#include "mproc.h"
#include "mp_test.h"
#include "queue_util.h"
#include "queue_internal.h"

enum {
    ROUNDS = 520, /* two kills per round */
    PROD_PER_ROUND = 2,
    CONS_PER_ROUND = 2,
    MAX_SEQ = 2048, /* a producer stops after this many messages */
    MAX_PROD = ROUNDS * PROD_PER_ROUND,
    BIG = 3000, /* > the ring: streamed */
    RING = 2048,
};

struct prod_state {
    _Atomic int32_t attempt; /* seq being put (-1: none yet) */
    _Atomic int32_t done;    /* last seq whose put returned 0 */
    _Atomic uint32_t started;
};

struct cons_state {
    _Atomic uint32_t inflight; /* inside get, or got a message not yet recorded */
    _Atomic uint32_t started;
    _Atomic uint64_t taking; /* prod << 32 | seq of the message get was copying out last */
};

struct shared {
    _Atomic uint32_t errors;
    _Atomic uint32_t stop;
    struct prod_state prod[MAX_PROD];
    struct cons_state cons[ROUNDS * CONS_PER_ROUND];
    _Atomic int32_t last_seen[MAX_PROD]; /* highest seq received per producer */
    _Atomic uint8_t seen[MAX_PROD][MAX_SEQ];
};

static size_t make_msg(unsigned char *buf, uint32_t prod, uint32_t seq, uint64_t *rng)
{
    return make_msg_sized(buf, prod, seq, rng, 80, 95, BIG);
}

/* Records a received message: 0 when fine, else an error number. */
static int record(struct shared *sh, const unsigned char *buf, size_t n)
{
    return record_msg(&sh->seen[0][0], sh->last_seen, MAX_PROD, MAX_SEQ, buf, n);
}

static void producer(mp_queue *q, struct shared *sh, uint32_t id)
{
    uint64_t rng = 0x9E3779B97F4A7C15ull * (id + 7);
    unsigned char buf[sizeof(struct msg_hdr) + 2 * BIG];
    struct prod_state *ps = &sh->prod[id];
    atomic_store(&ps->started, 1);
    for (uint32_t s = 0; s < MAX_SEQ && !atomic_load(&sh->stop); s++) {
        size_t n = make_msg(buf, id, s, &rng);
        atomic_store(&ps->attempt, (int32_t)s);
        int rc;
        /* A put that fails is never received, so retrying the same seq cannot duplicate it. */
        while ((rc = mp_queue_put(q, buf, n, 0.005)) == -ETIMEDOUT && !atomic_load(&sh->stop)) {
        }
        if (rc == -ETIMEDOUT) break;
        if (rc != 0) {
            atomic_fetch_add(&sh->errors, 1);
            mp_test_child_exit(2);
        }
        atomic_store(&ps->done, (int32_t)s);
    }
    while (!atomic_load(&sh->stop))
        sched_yield(); /* be there to be killed */
    mp_test_child_exit(0);
}

/* FIFO per producer, as one consumer sees it: seqs of a producer only grow. */
static int in_order(int32_t *last, const unsigned char *buf)
{
    struct msg_hdr h;
    memcpy(&h, buf, sizeof h);
    if ((int32_t)h.seq <= last[h.prod]) return 0;
    last[h.prod] = (int32_t)h.seq;
    return 1;
}

/* The library calls this (test hook) after copying a record out and before taking it: the start
 * of buf then holds the id of the message being taken, so a consumer killed from here on is known
 * to hold exactly that message. A poisoned header means nothing was copied (a skipped record). */
static unsigned char cbuf[sizeof(struct msg_hdr) + 2 * BIG];
static struct cons_state *hook_cs;
static void taking_hook(int point)
{
    struct msg_hdr h;
    memcpy(&h, cbuf, sizeof h);
    if (point == MP__QH_GET_READ && h.prod != UINT32_MAX)
        atomic_store(&hook_cs->taking, (uint64_t)h.prod << 32 | h.seq);
}

static void consumer(mp_queue *q, struct shared *sh, struct cons_state *cs)
{
    unsigned char *buf = cbuf;
    hook_cs = cs;
    mp__queue_hook = taking_hook;
    static int32_t last[MAX_PROD];
    for (int i = 0; i < MAX_PROD; i++)
        last[i] = -1;
    atomic_store(&cs->started, 1);
    while (!atomic_load(&sh->stop)) {
        size_t n;
        atomic_store(&cs->inflight, 1);
        memset(buf, 0xff, sizeof(struct msg_hdr));
        int rc = mp_queue_get(q, buf, sizeof cbuf, &n, 0.005);
        if (rc == 0 && (record(sh, buf, n) != 0 || !in_order(last, buf))) {
            atomic_fetch_add(&sh->errors, 1);
            mp_test_child_exit(3);
        }
        atomic_store(&cs->inflight, 0);
        if (rc != 0 && rc != -ETIMEDOUT) {
            atomic_fetch_add(&sh->errors, 1);
            mp_test_child_exit(4);
        }
    }
    mp_test_child_exit(0);
}

static void kill_at_random_moments(void **state)
{
    (void)state;
    struct shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(sh != MAP_FAILED);
    for (int i = 0; i < ROUNDS * CONS_PER_ROUND; i++)
        atomic_store(&sh->cons[i].taking, UINT64_MAX);
    for (int i = 0; i < MAX_PROD; i++) {
        atomic_store(&sh->prod[i].attempt, -1);
        atomic_store(&sh->prod[i].done, -1);
        atomic_store(&sh->last_seen[i], -1);
    }
    mp_queue *q;
    assert_mp_ok(mp_queue_new(&q, 0, RING));
    uint64_t rng = 12345;
    int kills = 0, inflight_kills = 0, nvict = 0;
    static uint64_t victims_taking[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        atomic_store(&sh->stop, 0);
        pid_t pp[PROD_PER_ROUND], cp[CONS_PER_ROUND];
        for (int i = 0; i < CONS_PER_ROUND; i++) {
            struct cons_state *cs = &sh->cons[round * CONS_PER_ROUND + i];
            if ((cp[i] = mp_test_fork()) == 0) consumer(q, sh, cs);
        }
        for (int i = 0; i < PROD_PER_ROUND; i++) {
            uint32_t id = (uint32_t)(round * PROD_PER_ROUND + i);
            if ((pp[i] = mp_test_fork()) == 0) producer(q, sh, id);
        }
        for (int i = 0; i < PROD_PER_ROUND; i++)
            assert_true(pp[i] > 0);
        for (int i = 0; i < CONS_PER_ROUND; i++)
            assert_true(cp[i] > 0); /* never kill(-1) */
        int vp = (int)(mp_test_rng_next(&rng) % PROD_PER_ROUND),
            vc = (int)(mp_test_rng_next(&rng) % CONS_PER_ROUND);
        struct cons_state *vcs = &sh->cons[round * CONS_PER_ROUND + vc];
        wait_started(&sh->prod[round * PROD_PER_ROUND + vp].started);
        wait_started(&vcs->started);
        mp_test_spin_us((long)(mp_test_rng_next(&rng) % 201));
        kill(pp[vp], SIGKILL);
        mp_test_spin_us((long)(mp_test_rng_next(&rng) % 201));
        kill(cp[vc], SIGKILL);
        assert_int_equal(mp_test_wait_code(pp[vp], mp_test_timeout(10)), 128 + SIGKILL);
        assert_int_equal(mp_test_wait_code(cp[vc], mp_test_timeout(10)), 128 + SIGKILL);
        kills += 2;
        inflight_kills += atomic_load(&vcs->inflight) != 0;
        if (atomic_load(&vcs->inflight)) victims_taking[nvict++] = atomic_load(&vcs->taking);
        atomic_store(&sh->stop, 1);
        for (int i = 0; i < PROD_PER_ROUND; i++)
            if (i != vp) assert_int_equal(mp_test_wait_code(pp[i], mp_test_timeout(10)), 0);
        for (int i = 0; i < CONS_PER_ROUND; i++)
            if (i != vc) assert_int_equal(mp_test_wait_code(cp[i], mp_test_timeout(10)), 0);
        assert_int_equal(atomic_load(&sh->errors), 0);
    }
    /* drain what is left */
    static unsigned char buf[sizeof(struct msg_hdr) + 2 * BIG];
    size_t n;
    int rc;
    while ((rc = mp_queue_get(q, buf, sizeof buf, &n, 0.2)) == 0) {
        /* FIFO: what is still queued comes after everything already taken from its producer */
        struct msg_hdr h;
        memcpy(&h, buf, sizeof h);
        assert_true(h.prod < MAX_PROD && (int32_t)h.seq > atomic_load(&sh->last_seen[h.prod]));
        assert_int_equal(record(sh, buf, n), 0);
    }
    assert_mp(-ETIMEDOUT, rc);
    assert_int_equal(mp_queue_qsize(q), 0);

    /* account for every message */
    long received = 0, missing = 0, unexplained = 0;
    for (int p = 0; p < MAX_PROD; p++) {
        int32_t done = atomic_load(&sh->prod[p].done), attempt = atomic_load(&sh->prod[p].attempt);
        for (int s = 0; s < MAX_SEQ; s++) {
            int c = atomic_load(&sh->seen[p][s]);
            assert_true(c <= 1);
            received += c;
            if (c) assert_true(s <= attempt); /* never invented */
            if (!c && s <= done) { /* put returned 0, never received: a killed consumer took it */
                missing++;
                int found = 0;
                for (int v = 0; v < nvict && !found; v++)
                    found = victims_taking[v] == ((uint64_t)p << 32 | (uint32_t)s);
                if (!found)
                    fprintf(stderr, "message %d/%d lost outside any killed consumer\n", p, s);
                assert_true(found);
            }
            if (!c && s < attempt && s > done) unexplained++;
        }
    }
    struct mp__queue_stats st;
    assert_mp_ok(mp__queue_stats(q, &st));
    fprintf(stderr,
            "kills %d (consumers in flight %d), received %ld, missing %ld; repairs: producer %llu "
            "consumer %llu, aborts %llu, discarded %llu\n",
            kills, inflight_kills, received, missing, (unsigned long long)st.prod_repairs,
            (unsigned long long)st.cons_repairs, (unsigned long long)st.aborts,
            (unsigned long long)st.discarded);
    assert_true(kills >= 1000);
    assert_int_equal(unexplained, 0);
    /* each consumer killed in flight may take one message with it; nobody else loses any */
    assert_true(missing <= inflight_kills);
    assert_true(received > 10000);
    assert_true(st.prod_repairs + st.cons_repairs > 0);
    mp_queue_free(&q);
    munmap(sh, sizeof *sh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(kill_at_random_moments),
    };
    return mp_test_main(__FILE__, tests, sizeof(tests) / sizeof(tests[0]));
}
