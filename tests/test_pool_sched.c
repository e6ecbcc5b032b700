/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 */
/* test_pool_sched.c - the pool's scheduling (src/pool_sched.c) without a single process: a fake
 * transport records the task records the scheduler writes and plays the workers' results back.
 * Chunking, the choice of worker, pipelining depth, a full worker, the retry queue after a death,
 * items too large to send, and delivery in input order are checked record by record. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mp_test.h"
#include "mproc/error.h"
#include "pool_private.h"

#define MAXREC 64

/* One fake worker: what it was sent, and the results it will hand back. */
struct mp__tp_worker {
    char buf[MAXREC * 256];
    size_t used;
    bool full;    /* task_reserve refuses */
    size_t nsent; /* committed records */
    size_t off[MAXREC];
    size_t nanswered; /* records answered by run_worker */
    size_t flushes;
    char *res[MAXREC]; /* result records waiting */
    size_t rhead, rtail;
};

static void *f_reserve(mp__tp_worker *w, uint32_t size)
{
    if (w->full || w->used + size > sizeof w->buf || w->nsent == MAXREC) return NULL;
    return w->buf + w->used;
}

static void f_commit(mp__tp_worker *w, uint32_t size)
{
    w->off[w->nsent++] = w->used;
    w->used += size;
}

static void f_flush(mp__tp_worker *w)
{
    w->flushes++;
}

static const mp__rrec *f_peek(mp__tp_worker *w)
{
    return w->rhead < w->rtail ? (const mp__rrec *)w->res[w->rhead] : NULL;
}

static void f_release(mp__tp_worker *w)
{
    free(w->res[w->rhead++]);
}

static uint64_t f_running(mp__tp_worker *w, int64_t *since)
{
    if (since) *since = 0;
    return 0;
}

static int f_cpu(mp__tp_worker *w)
{
    return -1;
}

static void f_release_worker(mp__tp_worker *w) {}

static const mp__transport fake_tp = {
    .task_reserve = f_reserve,
    .task_commit = f_commit,
    .task_flush = f_flush,
    .result_peek = f_peek,
    .result_release = f_release,
    .running = f_running,
    .cpu = f_cpu,
    .release = f_release_worker,
};

static mp__tp_worker fw[4];

static mp_pool *fake_pool(int n, unsigned pipeline)
{
    memset(fw, 0, sizeof fw);
    mp_pool *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->owner = getpid();
    atomic_init(&p->refs, 1);
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->stop_lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->efd = -1;
    p->fac.sock = -1;
    p->tp = &fake_tp;
    p->n = n;
    p->pipeline = pipeline;
    p->conf.max_message = 4096;
    p->w = calloc((size_t)n, sizeof *p->w);
    for (int i = 0; i < n; i++) {
        p->w[i].tp = &fw[i];
        p->w[i].alive = true;
        p->w[i].pid = 100000 + i;
    }
    p->nalive = n;
    return p;
}

static void end_pool(mp_pool *p)
{
    p->released = true; /* no transport state to free */
    mp__pool_unref(p);
}

/* A map job over items (borrowed), submitted as mp_pool_map_async would. */
static mp_result *submit_map(mp_pool *p, const mp_buf *items, size_t n, size_t chunksize)
{
    mp_result *j = mp__job_new(MP__K_MAP, 0);
    assert_non_null(j);
    j->u.list.ri = malloc(n * sizeof *j->u.list.ri);
    j->u.list.items = items;
    j->n = n;
    j->chunksize = chunksize;
    j->func = 42;
    assert_mp_ok(mp__pool_submit(p, j));
    return j;
}

static const mp__trec *sent(int wi, size_t k)
{
    assert_true(k < fw[wi].nsent);
    return (const mp__trec *)(fw[wi].buf + fw[wi].off[k]);
}

/* The input index of the first item of record k of worker wi (items are "i<index>"). */
static int first_item(int wi, size_t k)
{
    const mp__trec *t = sent(wi, k);
    const char *q = (const char *)(t + 1);
    uint32_t len;
    memcpy(&len, q, 4);
    char s[16] = {0};
    memcpy(s, q + 4, len < 15 ? len : 15);
    return atoi(s + 1);
}

/* The worker answers every record it was sent and not yet answered: each item's result is its
 * argument, or an error (status fail) for the item whose argument equals fail_arg. */
static void run_worker(int wi, const char *fail_arg, int fail)
{
    mp__tp_worker *w = &fw[wi];
    for (; w->nanswered < w->nsent; w->nanswered++) {
        const mp__trec *t = sent(wi, w->nanswered);
        if (t->type != MP__T_ITEMS) continue;
        size_t cap = sizeof(mp__rrec) + t->size * 2 + 64 * t->count;
        char *rec = calloc(1, cap);
        char *q = rec + sizeof(mp__rrec);
        const char *in = (const char *)(t + 1);
        for (uint32_t i = 0; i < t->count; i++) {
            uint32_t len;
            memcpy(&len, in, 4);
            in += 4;
            mp__ritem_hdr h = {0, 0, len};
            if (fail_arg && len == strlen(fail_arg) && !memcmp(in, fail_arg, len)) {
                h.status = fail;
                h.code = 7;
            }
            memcpy(q, &h, sizeof h);
            q += sizeof h;
            memcpy(q, in, len);
            q += len;
            in += len;
        }
        mp__rrec *r = (mp__rrec *)rec;
        *r = (mp__rrec){(uint32_t)MP__REC_ALIGN((size_t)(q - rec)),
                        MP__R_RESULT,
                        MP__R_LAST,
                        0,
                        t->count,
                        t->id};
        w->res[w->rtail++] = rec;
    }
}

static void make_items(mp_buf *items, char (*bytes)[24], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(bytes[i], sizeof bytes[i], "i%zu", i);
        items[i] = (mp_buf){bytes[i], strlen(bytes[i])};
    }
}

static void test_sched_chunks_and_workers(void **state)
{
    mp_pool *p = fake_pool(2, 8);
    mp_buf items[10];
    char bytes[10][24];
    make_items(items, bytes, 10);
    mp_result *j = submit_map(p, items, 10, 3);
    /* chunks of 3,3,3,1; each to the worker with the fewest tasks (the first on a tie) */
    assert_int_equal(fw[0].nsent, 2);
    assert_int_equal(fw[1].nsent, 2);
    assert_int_equal(sent(0, 0)->count, 3);
    assert_int_equal(first_item(0, 0), 0);
    assert_int_equal(sent(1, 0)->count, 3);
    assert_int_equal(first_item(1, 0), 3);
    assert_int_equal(sent(0, 1)->count, 3);
    assert_int_equal(first_item(0, 1), 6);
    assert_int_equal(sent(1, 1)->count, 1);
    assert_int_equal(first_item(1, 1), 9);
    assert_int_equal(sent(0, 0)->func, 42);
    /* one published batch per worker */
    assert_int_equal(fw[0].flushes, 1);
    assert_int_equal(fw[1].flushes, 1);
    assert_int_equal(p->outstanding, 4);
    assert_int_equal(mp_result_is_ready(j), 0);
    run_worker(1, NULL, 0);
    run_worker(0, NULL, 0);
    assert_int_equal(mp_result_is_ready(j), 1);
    assert_int_equal(p->outstanding, 0);
    for (size_t i = 0; i < 10; i++) {
        const void *d;
        size_t l;
        assert_mp_ok(mp_result_item(j, i, &d, &l));
        assert_int_equal(l, items[i].len);
        assert_memory_equal(d, items[i].data, l);
    }
    assert_mp_ok(mp_result_free(&j));
    end_pool(p);
}

static void test_sched_pipeline_depth(void **state)
{
    mp_pool *p = fake_pool(1, 2);
    mp_buf items[5];
    char bytes[5][24];
    make_items(items, bytes, 5);
    mp_result *j = submit_map(p, items, 5, 1);
    assert_int_equal(fw[0].nsent, 2); /* no more than the pipeline ahead */
    run_worker(0, NULL, 0);
    pthread_mutex_lock(&p->lock);
    mp__sched_progress(p);
    pthread_mutex_unlock(&p->lock);
    assert_int_equal(fw[0].nsent, 4);
    assert_int_equal(first_item(0, 2), 2);
    run_worker(0, NULL, 0);
    assert_int_equal(mp_result_is_ready(j), 0); /* item 4 only sent now */
    assert_int_equal(fw[0].nsent, 5);
    run_worker(0, NULL, 0);
    assert_int_equal(mp_result_is_ready(j), 1);
    assert_mp_ok(mp_result_get(j, NULL, NULL, 0));
    assert_mp_ok(mp_result_free(&j));
    end_pool(p);

    /* adaptive: about MP__PIPELINE_WORK_NS of work queued, within [MIN, MAX] */
    mp_pool q = {0};
    assert_int_equal(mp__sched_pipeline_depth(&q), 2 * MP__PIPELINE_MIN);
    q.avg_task_ns = 1000;
    assert_int_equal(mp__sched_pipeline_depth(&q), MP__PIPELINE_WORK_NS / 1000);
    q.avg_task_ns = 10;
    assert_int_equal(mp__sched_pipeline_depth(&q), MP__PIPELINE_MAX);
    q.avg_task_ns = 1000000000;
    assert_int_equal(mp__sched_pipeline_depth(&q), MP__PIPELINE_MIN);
    q.pipeline = 1;
    assert_int_equal(mp__sched_pipeline_depth(&q), 1);
}

static void test_sched_full_worker_skipped(void **state)
{
    mp_pool *p = fake_pool(2, 4);
    fw[0].full = true;
    mp_buf items[4];
    char bytes[4][24];
    make_items(items, bytes, 4);
    mp_result *j = submit_map(p, items, 4, 1);
    assert_int_equal(fw[0].nsent, 0);
    assert_int_equal(fw[1].nsent, 4);
    run_worker(1, NULL, 0);
    assert_int_equal(mp_result_is_ready(j), 1);
    assert_mp_ok(mp_result_free(&j));
    end_pool(p);
}

static void test_sched_retry_first(void **state)
{
    mp_pool *p = fake_pool(2, 4);
    mp_buf items[6];
    char bytes[6][24];
    make_items(items, bytes, 6);
    mp_result *a = submit_map(p, items, 4, 1); /* w0: 0, 2; w1: 1, 3 */
    assert_int_equal(first_item(0, 0), 0);
    assert_int_equal(first_item(0, 1), 2);
    /* worker 0 dies before starting either: its tasks go to the retry queue */
    pthread_mutex_lock(&p->lock);
    mp__sched_requeue(p, &p->w[0]);
    p->w[0].alive = false;
    p->w[0].tp = NULL;
    p->nalive--;
    assert_int_equal(p->outstanding, 2);
    pthread_mutex_unlock(&p->lock);
    /* a later job waits behind the retried tasks */
    mp_result *b = submit_map(p, items + 4, 2, 1);
    assert_int_equal(fw[1].nsent, 4);
    assert_int_equal(first_item(1, 2), 0);
    assert_int_equal(first_item(1, 3), 2);
    run_worker(1, NULL, 0);
    assert_int_equal(mp_result_is_ready(a), 1);
    assert_int_equal(mp_result_is_ready(b), 0);
    assert_int_equal(fw[1].nsent, 6);
    assert_int_equal(first_item(1, 4), 4);
    run_worker(1, NULL, 0);
    assert_int_equal(mp_result_is_ready(b), 1);
    assert_int_equal(mp_result_is_successful(a), 1);
    assert_int_equal(mp_result_is_successful(b), 1);
    assert_mp_ok(mp_result_free(&a));
    assert_mp_ok(mp_result_free(&b));
    end_pool(p);
}

static void test_sched_too_big_and_first_error(void **state)
{
    mp_pool *p = fake_pool(1, 8);
    static char big[4096];
    mp_buf items[4] = {{"i0", 2}, {big, sizeof big}, {"i2", 2}, {"i3", 2}};
    mp_result *j = submit_map(p, items, 4, 1);
    /* the item over max_message - MP__REC_SLACK is never sent; it fails alone */
    assert_int_equal(fw[0].nsent, 3);
    run_worker(0, "i3", MP_ETASKFAILED);
    assert_int_equal(mp_result_is_ready(j), 1);
    int code;
    const char *msg;
    /* the job's error is its first failed item in input order */
    assert_mp(MP_ETOOBIG, mp_result_error(j, &code, &msg));
    assert_non_null(strstr(msg, "exceeds the pool's limit"));
    assert_mp(MP_ETASKFAILED, mp_result_item_error(j, 3, &code, &msg));
    assert_int_equal(code, 7);
    assert_mp_ok(mp_result_item(j, 2, NULL, NULL));
    assert_mp_ok(mp_result_free(&j));
    end_pool(p);
}

static void test_sched_fail_pending(void **state)
{
    mp_pool *p = fake_pool(1, 8);
    p->w[0].alive = false; /* nobody to send to: everything stays queued */
    mp_buf items[3];
    char bytes[3][24];
    make_items(items, bytes, 3);
    mp_result *j = submit_map(p, items, 3, 2);
    assert_int_equal(fw[0].nsent, 0);
    assert_int_equal(mp_result_is_ready(j), 0);
    pthread_mutex_lock(&p->lock);
    mp__sched_fail_pending(p, MP_ETERMINATED, 0, "pool was terminated");
    pthread_mutex_unlock(&p->lock);
    assert_int_equal(mp_result_is_ready(j), 1);
    for (size_t i = 0; i < 3; i++)
        assert_mp(MP_ETERMINATED, mp_result_item(j, i, NULL, NULL));
    assert_int_equal(p->unfinished, 0);
    assert_mp_ok(mp_result_free(&j));
    end_pool(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(test_sched_chunks_and_workers),      MP_TEST(test_sched_pipeline_depth),
        MP_TEST(test_sched_full_worker_skipped),     MP_TEST(test_sched_retry_first),
        MP_TEST(test_sched_too_big_and_first_error), MP_TEST(test_sched_fail_pending),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
