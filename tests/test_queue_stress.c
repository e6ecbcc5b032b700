/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=120 */
/* test_queue_stress.c - many producers and consumers: 4 x 4 moving 1,000,000 checksummed
 * messages of random sizes (none lost, none duplicated, FIFO per producer), and the same kind of
 * traffic under a storm of SIGALRM every 100 us in every participant. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "mproc.h"
#include "mp_test.h"

struct msg_hdr {
    uint32_t prod, seq, len, sum;
};

/* Mostly small, some medium, a few bigger than the ring (streamed). */
static size_t pick_size(uint64_t *rng, size_t big)
{
    uint64_t r = mp_test_rng_next(rng);
    uint64_t k = r % 10000;
    if (k < 8500) return (r >> 20) % 64;
    if (k < 9990) return 64 + (r >> 20) % 1000;
    return big + (r >> 20) % big;
}

static size_t build(unsigned char *buf, uint32_t prod, uint32_t seq, size_t len, uint64_t *rng)
{
    struct msg_hdr h = {prod, seq, (uint32_t)len, 0};
    unsigned char *p = buf + sizeof h;
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)mp_test_rng_next(rng);
    h.sum = mp_test_fnv(p, len, 2166136261u ^ prod ^ (seq << 8));
    memcpy(buf, &h, sizeof h);
    return sizeof h + len;
}

/* Returns 0 when the message is intact, with *h filled. */
static int check(const unsigned char *buf, size_t n, struct msg_hdr *h)
{
    if (n < sizeof *h) return -1;
    memcpy(h, buf, sizeof *h);
    if (h->len != n - sizeof *h) return -2;
    if (mp_test_fnv(buf + sizeof *h, h->len, 2166136261u ^ h->prod ^ (h->seq << 8)) != h->sum)
        return -3;
    return 0;
}

struct shared {
    _Atomic uint32_t errors;
    _Atomic uint32_t received;
    unsigned char seen[]; /* [prod][seq] counts */
};

enum { BIG = 40000 };

struct run {
    int producers, consumers;
    uint32_t per_producer;
    size_t ring;
    bool storm;
};

static void on_alarm(int sig)
{
    (void)sig;
}

static void start_storm(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: every blocking syscall sees EINTR */
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 100}, {0, 100}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static void producer(mp_queue *q, struct run *r, uint32_t id)
{
    if (r->storm) start_storm();
    uint64_t rng = 0x9E3779B97F4A7C15ull * (id + 1);
    unsigned char *buf = malloc(2 * BIG + 64);
    MP_CHILD_CHECK(buf);
    for (uint32_t s = 0; s < r->per_producer; s++) {
        size_t n = build(buf, id, s, pick_size(&rng, BIG), &rng);
        int rc = mp_queue_put(q, buf, n, mp_test_timeout(30));
        if (rc != 0) {
            fprintf(stderr, "producer %u: put %u: %s\n", id, s, mp_err_name(rc));
            mp_test_child_exit(2);
        }
    }
    free(buf);
    mp_test_child_exit(0);
}

static void consumer(mp_queue *q, struct run *r, struct shared *sh)
{
    if (r->storm) start_storm();
    int64_t last[16];
    for (int i = 0; i < 16; i++)
        last[i] = -1;
    size_t cap = 2 * BIG + 64;
    unsigned char *buf = malloc(cap);
    MP_CHILD_CHECK(buf);
    for (;;) {
        size_t n;
        int rc = mp_queue_get(q, buf, cap, &n, mp_test_timeout(30));
        if (rc == MP_ECLOSED) break;
        if (rc != 0) {
            fprintf(stderr, "consumer: get: %s\n", mp_err_name(rc));
            mp_test_child_exit(2);
        }
        struct msg_hdr h;
        if (check(buf, n, &h) != 0 || h.prod >= (uint32_t)r->producers ||
            h.seq >= r->per_producer) {
            atomic_fetch_add(&sh->errors, 1);
            mp_test_child_exit(3);
        }
        if ((int64_t)h.seq <= last[h.prod]) { /* FIFO per producer */
            atomic_fetch_add(&sh->errors, 1);
            mp_test_child_exit(4);
        }
        last[h.prod] = h.seq;
        sh->seen[(size_t)h.prod * r->per_producer + h.seq]++;
        atomic_fetch_add(&sh->received, 1);
    }
    free(buf);
    mp_test_child_exit(0);
}

static void run_traffic(struct run *r)
{
    size_t total = (size_t)r->producers * r->per_producer;
    size_t shsize = sizeof(struct shared) + total;
    struct shared *sh =
        mmap(NULL, shsize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(sh != MAP_FAILED);
    mp_queue *q;
    assert_mp_ok(mp_queue_new(&q, 0, r->ring));
    pid_t pids[16];
    int np = 0;
    for (int c = 0; c < r->consumers; c++) {
        pid_t pid = mp_test_fork();
        if (pid == 0) consumer(q, r, sh);
        pids[np++] = pid;
    }
    for (int p = 0; p < r->producers; p++) {
        pid_t pid = mp_test_fork();
        if (pid == 0) producer(q, r, (uint32_t)p);
        pids[np++] = pid;
    }
    for (int i = r->consumers; i < np; i++)
        assert_int_equal(mp_test_wait_code(pids[i], mp_test_timeout(90)), 0);
    assert_mp_ok(mp_queue_close(q)); /* consumers drain what is left, then see MP_ECLOSED */
    for (int i = 0; i < r->consumers; i++)
        assert_int_equal(mp_test_wait_code(pids[i], mp_test_timeout(30)), 0);
    assert_int_equal(sh->errors, 0);
    assert_int_equal(sh->received, total);
    size_t bad = 0;
    for (size_t i = 0; i < total; i++)
        bad += sh->seen[i] != 1;
    assert_int_equal(bad, 0);
    assert_int_equal(mp_queue_qsize(q), 0);
    mp_queue_free(&q);
    munmap(sh, shsize);
}

static void four_by_four_move_a_million(void **state)
{
    (void)state;
    struct run r = {4, 4, 250000, 64 << 10, false};
    run_traffic(&r);
}

static void signal_storm_loses_nothing(void **state)
{
    (void)state;
    struct run r = {2, 2, 40000, 64 << 10, true};
    run_traffic(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(four_by_four_move_a_million),
        MP_TEST(signal_storm_loses_nothing),
    };
    return mp_test_main(__FILE__, tests, sizeof(tests) / sizeof(tests[0]));
}
