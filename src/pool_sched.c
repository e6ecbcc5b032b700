/* SPDX-License-Identifier: MIT */
/* pool_sched.c - scheduling: tasks, the job and retry queues, per-worker queues, chunking,
 * pipelining, dispatch, and draining the workers' results.
 *
 * Pure logic under the pool lock: it moves records through the transport interface
 * (pool_transport.h) and nothing else, forks nothing and never blocks, so tests/test_pool_sched.c
 * drives it with a fake transport and no process at all.
 *
 * Progress. No thread owns the result rings: whoever holds the pool lock may drain them and
 * dispatch more tasks (mp__sched_progress). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mproc/error.h"
#include "pool_private.h"

/* ---- tasks ---------------------------------------------------------------------------------- */

struct mp__task *mp__sched_task_alloc(mp_pool *p)
{
    struct mp__task *t = p->free_tasks;
    if (t) {
        p->free_tasks = t->next;
        return t;
    }
    return malloc(sizeof *t);
}

void mp__sched_task_release(mp_pool *p, struct mp__task *t)
{
    t->next = p->free_tasks;
    p->free_tasks = t;
}

void mp__sched_task_done(mp_pool *p, struct mp__task *t)
{
    mp_result *j = t->job;
    j->ntasks--;
    mp__sched_task_release(p, t);
    mp__job_maybe_finish(p, j);
}

struct mp__task *mp__sched_fifo_pop(struct mp__worker *w)
{
    struct mp__task *t = w->head;
    if (t) {
        w->head = t->next;
        if (!w->head) w->tail = NULL;
        w->nout--;
    }
    return t;
}

/* ---- the job and retry queues ---------------------------------------------------------------- */

void mp__sched_queue_job(mp_pool *p, mp_result *j)
{
    if (j->queued || j->next >= j->n) return;
    j->queued = true;
    j->qnext = NULL;
    if (p->qtail)
        p->qtail->qnext = j;
    else
        p->qhead = j;
    p->qtail = j;
}

static void unqueue_head(mp_pool *p)
{
    mp_result *j = p->qhead;
    p->qhead = j->qnext;
    if (!p->qhead) p->qtail = NULL;
    j->queued = false;
}

void mp__sched_unqueue_job(mp_pool *p, mp_result *j)
{
    mp_result **pp = &p->qhead, *prev = NULL;
    while (*pp && *pp != j) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    if (*pp) {
        *pp = j->qnext;
        if (p->qtail == j) p->qtail = prev;
    }
    j->queued = false;
}

static struct mp__task *retry_pop(mp_pool *p)
{
    struct mp__task *t = p->rhead;
    p->rhead = t->next;
    if (!p->rhead) p->rtail = NULL;
    return t;
}

void mp__sched_requeue(mp_pool *p, struct mp__worker *w)
{
    if (w->head) {
        w->tail->next = p->rhead;
        p->rhead = w->head;
        if (!p->rtail) p->rtail = w->tail;
        p->outstanding -= w->nout;
    }
    w->head = w->tail = NULL;
    w->nout = 0;
}

void mp__sched_fail_pending(mp_pool *p, int status, int code, const char *msg)
{
    while (p->rhead) {
        struct mp__task *t = retry_pop(p);
        mp__job_fail_items(t->job, t->first, t->count, status, code, msg);
        mp__sched_task_done(p, t);
    }
    while (p->qhead) {
        mp_result *j = p->qhead;
        unqueue_head(p);
        if (j->next < j->n) mp__job_fail_items(j, j->next, j->n - j->next, status, code, msg);
        j->next = j->n;
        mp__job_maybe_finish(p, j);
    }
}

/* ---- choosing a worker, chunking ------------------------------------------------------------- */

/* Tasks one worker may have queued: fixed, or as many as fill MP__PIPELINE_WORK_NS at the
 * measured task duration (short tasks: deep, so the worker never idles; long ones: shallow, so
 * no task waits behind a long one while another worker is free). */
unsigned mp__sched_pipeline_depth(const mp_pool *p)
{
    if (p->pipeline) return p->pipeline;
    if (p->avg_task_ns <= 0) return MP__PIPELINE_MIN * 2;
    int64_t d = MP__PIPELINE_WORK_NS / p->avg_task_ns;
    if (d < MP__PIPELINE_MIN) return MP__PIPELINE_MIN;
    if (d > MP__PIPELINE_MAX) return MP__PIPELINE_MAX;
    return (unsigned)d;
}

/* The worker to send the next task to: alive, not stopping, room in its pipeline, fewest tasks. */
static struct mp__worker *pick_worker(mp_pool *p)
{
    struct mp__worker *best = NULL;
    unsigned depth = mp__sched_pipeline_depth(p);
    for (int i = 0; i < p->n; i++) {
        struct mp__worker *w = &p->w[i];
        if (!w->alive || w->stopping || w->full_epoch == p->epoch) continue;
        if (w->nout >= depth) continue;
        if (p->conf.maxtasks && w->dispatched >= p->conf.maxtasks) continue;
        if (!best || w->nout < best->nout) best = w;
        if (w->nout == 0) break;
    }
    return best;
}

/* Bytes a task record for items [first, first+count) takes. */
static size_t task_size(const mp_result *j, size_t first, size_t count)
{
    size_t size = sizeof(mp__trec);
    if (j->kind == MP__K_FIXED) return MP__REC_ALIGN(size + count * j->u.fixed.in_size);
    for (size_t i = 0; i < count; i++) {
        const void *d;
        size_t l;
        mp__job_item(j, first + i, &d, &l);
        size += 4 + l;
    }
    return MP__REC_ALIGN(size);
}

/* How many items from j->next go into the next task: up to chunksize, within max_message.
 * Items too large to send fail here with MP_ETOOBIG. */
static size_t next_chunk(mp_pool *p, mp_result *j)
{
    size_t limit = p->conf.max_message;
    while (j->next < j->n) {
        size_t avail = j->n - j->next, want = j->chunksize < avail ? j->chunksize : avail;
        if (j->kind == MP__K_FIXED) {
            size_t fit = (limit - sizeof(mp__trec)) / j->u.fixed.in_size;
            return want < fit ? want : fit;
        }
        size_t size = sizeof(mp__trec), k = 0;
        for (; k < want; k++) {
            const void *d;
            size_t l;
            mp__job_item(j, j->next + k, &d, &l);
            /* The per-item limit is the documented one (as apply), not what happens to fit. */
            if (l > limit - MP__REC_SLACK || size + 4 + l + 8 > limit) break;
            size += 4 + l;
        }
        if (k > 0) return k;
        char msg[128];
        const void *d;
        size_t l;
        mp__job_item(j, j->next, &d, &l);
        snprintf(msg, sizeof msg, "argument of %zu bytes exceeds the pool's limit of %zu", l,
                 limit - MP__REC_SLACK);
        mp__job_fail_items(j, j->next, 1, MP_ETOOBIG, 0, msg);
        j->next++;
    }
    return 0;
}

static void encode_task(const mp_result *j, const struct mp__task *t, void *dst, size_t size)
{
    mp__trec *h = dst;
    bool fixed = j->kind == MP__K_FIXED;
    h->size = (uint32_t)size;
    h->type = fixed ? MP__T_FIXED : MP__T_ITEMS;
    h->flags = 0;
    h->count = t->count;
    h->item_size = fixed ? (uint32_t)j->u.fixed.in_size : 0;
    h->id = t->id;
    h->func = j->func;
    char *q = (char *)(h + 1);
    if (fixed) {
        size_t isz = j->u.fixed.in_size;
        memcpy(q, j->u.fixed.in + (size_t)t->first * isz, (size_t)t->count * isz);
        return;
    }
    for (uint32_t i = 0; i < t->count; i++) {
        const void *d;
        size_t l;
        mp__job_item(j, t->first + i, &d, &l);
        uint32_t l32 = (uint32_t)l;
        memcpy(q, &l32, 4);
        q += 4;
        if (l) memcpy(q, d, l);
        q += l;
    }
}

/* ---- dispatch -------------------------------------------------------------------------------- */

/* Sends t to w. false when w's input is full (t untouched). */
static bool send_task(mp_pool *p, struct mp__worker *w, struct mp__task *t)
{
    size_t size = task_size(t->job, t->first, t->count);
    void *dst = p->tp->task_reserve(w->tp, (uint32_t)size);
    if (!dst) return false;
    encode_task(t->job, t, dst, size);
    p->tp->task_commit(w->tp, (uint32_t)size);
    w->unflushed = true;
    t->sent_ns = mp__now_ns();
    t->next = NULL;
    if (w->tail)
        w->tail->next = t;
    else
        w->head = t;
    w->tail = t;
    w->nout++;
    w->dispatched++;
    /* The supervisor sleeps without a time limit while nothing runs; with task timeouts it must
     * start watching. */
    if (p->outstanding++ == 0 && p->timeout_ns > 0 && !mp__pool_on_duty(p)) mp__pool_kick(p);
    return true;
}

/* The next task of the retry queue or a new chunk of the first queued job to w, as long as some
 * worker has room. */
static void dispatch_some(mp_pool *p)
{
    if (!p->rhead && !p->qhead) return;
    if (p->state == MP__ST_TERMINATED || p->broken) return;
    p->epoch++; /* a worker found full is skipped until the next dispatch */
    for (;;) {
        struct mp__task *t = p->rhead;
        if (t && t->job->cancelled) {
            mp__sched_task_done(p, retry_pop(p));
            continue;
        }
        if (!t) {
            while (p->qhead && (p->qhead->next >= p->qhead->n || p->qhead->cancelled))
                unqueue_head(p);
            if (!p->qhead) return;
        }
        struct mp__worker *w = pick_worker(p);
        if (!w) return;
        if (t) {
            struct mp__task *rest = t->next;
            if (!send_task(p, w, t)) {
                w->full_epoch = p->epoch;
                continue;
            }
            p->rhead = rest;
            if (!p->rhead) p->rtail = NULL;
            continue;
        }
        mp_result *j = p->qhead;
        size_t k = next_chunk(p, j);
        if (k == 0) {
            mp__job_maybe_finish(p, j);
            continue;
        }
        t = mp__sched_task_alloc(p);
        if (!t) return;
        *t = (struct mp__task){NULL, ++p->next_id, j, (uint32_t)j->next, (uint32_t)k, 0, 0};
        if (!send_task(p, w, t)) {
            mp__sched_task_release(p, t);
            w->full_epoch = p->epoch;
            continue;
        }
        j->next += k;
        j->ntasks++;
    }
}

void mp__sched_dispatch(mp_pool *p)
{
    dispatch_some(p);
    for (int i = 0; i < p->n; i++) {
        struct mp__worker *w = &p->w[i];
        if (w->unflushed && w->tp) p->tp->task_flush(w->tp);
        w->unflushed = false;
    }
}

void mp__sched_drain_worker(mp_pool *p, struct mp__worker *w)
{
    const mp__rrec *rec;
    int64_t now = 0;
    while ((rec = p->tp->result_peek(w->tp)) != NULL) {
        struct mp__task *t = w->head;
        if (!t || rec->id != t->id) {
            /* A worker that breaks the protocol cannot be trusted with more tasks. */
            mp__factory_kill(&p->fac, w->pid, SIGKILL);
            w->stopping = true;
            return;
        }
        bool last = rec->flags & MP__R_LAST;
        mp__job_deliver(t, rec);
        p->tp->result_release(w->tp);
        if (last) {
            /* The task ran from when it was sent or its predecessor finished, whichever is
             * later, until now (as seen by the parent; good enough to size the pipeline). */
            if (!now) now = mp__now_ns();
            int64_t start = t->sent_ns > w->last_done_ns ? t->sent_ns : w->last_done_ns;
            int64_t svc = now > start ? now - start : 0;
            w->last_done_ns = now;
            p->avg_task_ns = p->avg_task_ns ? (p->avg_task_ns * 7 + svc) / 8 : svc + 1;
            mp__sched_fifo_pop(w);
            p->outstanding--;
            mp__sched_task_done(p, t);
        }
    }
}

void mp__sched_progress(mp_pool *p)
{
    if (p->released) return;
    for (int i = 0; i < p->n; i++)
        if (p->w[i].tp) mp__sched_drain_worker(p, &p->w[i]);
    mp__sched_dispatch(p);
}

void mp__sched_stop_workers(mp_pool *p)
{
    if (p->state != MP__ST_CLOSED || !p->joining || p->unfinished || p->outstanding) return;
    for (int i = 0; i < p->n; i++) {
        struct mp__worker *w = &p->w[i];
        if (!w->alive || w->stopping) continue;
        void *dst = p->tp->task_reserve(w->tp, sizeof(mp__trec));
        if (!dst) continue;
        memset(dst, 0, sizeof(mp__trec));
        ((mp__trec *)dst)->size = sizeof(mp__trec);
        ((mp__trec *)dst)->type = MP__T_STOP;
        p->tp->task_commit(w->tp, sizeof(mp__trec));
        p->tp->task_flush(w->tp);
        w->stopping = true;
    }
}
