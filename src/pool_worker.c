/* SPDX-License-Identifier: MIT */
/* pool_worker.c - the transport-independent half of a worker: run the initializer, run a task
 * record item by item and pack the outcomes into result records.
 *
 * Results are packed into a scratch buffer of max_message bytes and emitted as one record per task
 * when they fit, otherwise as several (MP__R_LAST on the final one), so a chunk of small items
 * costs one record and one wake-up, and a chunk whose results are large still streams.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mproc/error.h"
#include "pool_internal.h"

static void res_reset(mp_task_result *res)
{
    res->len = 0;
    res->status = 0;
    res->code = 0;
    res->set = false;
    res->msglen = 0;
}

/* Runs fn on one argument and leaves the outcome in res (status, bytes or message). */
static void run_one(mp_task_fn fn, uint64_t func, const void *arg, size_t len, mp_task_result *res)
{
    res_reset(res);
    if (!fn) {
        mp_task_fail(res, 0, "function id %016llx is not registered in this worker",
                     (unsigned long long)func);
        res->status = MP_ENOFUNC;
        return;
    }
    int r = fn(arg, len, res);
    if (res->status == 0 && r != 0) {
        mp_task_fail(res, r, "task returned %d", r);
    }
}

int mp__worker_init(const mp__worker_conf *conf, mp_task_result *res)
{
    if (!conf->init_func) return 0;
    const struct mp_func *f = mp__func_by_id(conf->init_func);
    run_one(f ? mp__func_fn(f) : NULL, conf->init_func, conf->initarg, conf->initarg_len, res);
    return res->status;
}

struct packer {
    char *buf;
    size_t cap, off;
    uint32_t first, count;
    uint64_t id;
    mp__emit_fn emit;
    void *ctx;
};

static int flush(struct packer *p, int last)
{
    mp__rrec *h = (mp__rrec *)p->buf;
    size_t size = MP__REC_ALIGN(p->off);
    memset(p->buf + p->off, 0, size - p->off);
    h->size = (uint32_t)size;
    h->type = MP__R_RESULT;
    h->flags = last ? MP__R_LAST : 0;
    h->first = p->first;
    h->count = p->count;
    h->id = p->id;
    int r = p->emit(p->ctx, p->buf, size);
    p->first += p->count;
    p->count = 0;
    p->off = sizeof(mp__rrec);
    return r;
}

static int append(struct packer *p, const mp_task_result *res)
{
    const void *bytes = res->status ? (const void *)res->msg : (const void *)res->buf;
    size_t blen = res->status ? res->msglen : res->len;
    size_t need = sizeof(mp__ritem_hdr) + blen;
    if (p->off + need + 8 > p->cap && p->count > 0) {
        int r = flush(p, 0);
        if (r) return r;
    }
    mp__ritem_hdr h = {res->status, res->code, (uint32_t)blen};
    memcpy(p->buf + p->off, &h, sizeof h);
    if (blen) memcpy(p->buf + p->off + sizeof h, bytes, blen);
    p->off += need;
    p->count++;
    return 0;
}

int mp__worker_exec(const mp__trec *t, const mp__worker_conf *conf, mp_task_result *res,
                    char **scratch, size_t *scratch_cap, mp__emit_fn emit, void *ctx)
{
    if (!*scratch) {
        *scratch = malloc(conf->max_message);
        if (!*scratch) return -ENOMEM;
        *scratch_cap = conf->max_message;
    }
    static uint64_t cached_id;
    static mp_task_fn cached_fn;
    if (t->func != cached_id) {
        const struct mp_func *f = mp__func_by_id(t->func);
        cached_fn = f ? mp__func_fn(f) : NULL;
        cached_id = t->func;
    }
    struct packer p = {*scratch, *scratch_cap, sizeof(mp__rrec), 0, 0, t->id, emit, ctx};
    const char *q = (const char *)(t + 1), *end = (const char *)t + t->size;
    for (uint32_t i = 0; i < t->count; i++) {
        const void *arg;
        size_t len;
        if (t->type == MP__T_FIXED) {
            arg = q;
            len = t->item_size;
        } else {
            uint32_t l;
            memcpy(&l, q, 4);
            q += 4;
            arg = q;
            len = l;
        }
        if (q + len > end) { /* cannot happen with a sane parent; do not read past the record */
            res_reset(res);
            mp_task_fail(res, 0, "malformed task record");
            res->status = MP_ECORRUPT;
        } else {
            run_one(cached_fn, t->func, arg, len, res);
            q += len;
        }
        int r = append(&p, res);
        if (r) return r;
    }
    return flush(&p, 1);
}
