/* SPDX-License-Identifier: MIT */
/* pool_result.c - the mp_result object: a job of one kind (apply, map, map_fixed, imap), how the
 * outcomes of its items are delivered into it, how it completes (callbacks, then ready), and the
 * result API. See pool_private.h for the vocabulary and the lifetimes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mproc/error.h"
#include "pool_private.h"

/* ---- the object ---------------------------------------------------------------------------- */

mp_result *mp__job_new(int kind, size_t extra)
{
    mp_result *j = calloc(1, sizeof *j + extra);
    if (!j) return NULL;
    j->kind = kind;
    j->owner = mp__getpid_cached();
    atomic_init(&j->refs, 2);
    j->err_index = SIZE_MAX;
    return j;
}

void mp__job_free(mp_result *j)
{
    mp_pool *home = j->home;
    switch (j->kind) {
    case MP__K_APPLY:
    case MP__K_MAP:
        for (struct mp__blk *b = j->u.list.blocks; b;) {
            struct mp__blk *next = b->next;
            free(b);
            b = next;
        }
        if (j->u.list.ri != &j->u.list.one) free(j->u.list.ri);
        free(j->u.list.owned_input);
        break;
    case MP__K_FIXED:
        free(j->u.fixed.status);
        free(j->u.fixed.msg_own);
        break;
    default: /* MP__K_IMAP: the iterator is freed by mp_imap_free */
        break;
    }
    free(j);
    if (home) mp__pool_unref(home);
}

void mp__job_unref(mp_result *j)
{
    if (atomic_fetch_sub(&j->refs, 1) == 1) mp__job_free(j);
}

/* Memory owned by a list job, 16-byte aligned. */
static void *job_blk(mp_result *j, size_t size)
{
    struct mp__blk *b = malloc(sizeof *b + size);
    if (!b) return NULL;
    b->next = j->u.list.blocks;
    j->u.list.blocks = b;
    return b + 1;
}

/* ---- delivering outcomes ------------------------------------------------------------------- */

/* Remembers the first failed item in input order: the job's own outcome. */
static void note_error(mp_result *j, size_t idx, int status, int code, const char *msg)
{
    if (!status || (j->status && idx >= j->err_index)) return;
    j->err_index = idx;
    j->status = status;
    j->code = code;
    if (j->kind == MP__K_FIXED) {
        /* The message has no other home: a fixed job keeps no per-item bytes. */
        free(j->u.fixed.msg_own);
        j->u.fixed.msg_own = strdup(msg ? msg : "");
        j->msg = j->u.fixed.msg_own ? j->u.fixed.msg_own : "";
    } else {
        j->msg = msg;
    }
}

static void fixed_fail(mp_result *j, size_t idx, int status, int code, const char *msg)
{
    if (!j->u.fixed.status) j->u.fixed.status = calloc(j->n, sizeof *j->u.fixed.status);
    if (j->u.fixed.status) j->u.fixed.status[idx] = status;
    note_error(j, idx, status, code, msg);
}

void mp__job_fail_items(mp_result *j, size_t first, size_t count, int status, int code,
                        const char *msg)
{
    if (count == 0) return;
    switch (j->kind) {
    case MP__K_IMAP:
        for (size_t i = 0; i < count; i++)
            mp__imap_deliver(j, first + i, status, code, msg, strlen(msg));
        return;
    case MP__K_FIXED:
        for (size_t i = 0; i < count; i++)
            fixed_fail(j, first + i, status, code, msg);
        break;
    default: {
        size_t ml = strlen(msg);
        char *m = job_blk(j, ml + 1);
        if (m) memcpy(m, msg, ml + 1);
        for (size_t i = 0; i < count; i++)
            j->u.list.ri[first + i] =
                (struct mp__ritem){m ? m : "", m ? (uint32_t)ml : 0, status, code};
        note_error(j, first, status, code, m ? m : "");
        break;
    }
    }
    j->remaining -= count;
}

/* The items of a record: walks count times { mp__ritem_hdr, bytes }, refusing a truncated one.
 * Returns the next position, or NULL when the record is malformed. */
static const char *next_item(const char *q, const char *end, mp__ritem_hdr *h)
{
    if (end - q < (ptrdiff_t)sizeof *h) return NULL;
    memcpy(h, q, sizeof *h);
    q += sizeof *h;
    if (end - q < (ptrdiff_t)h->len) return NULL;
    return q;
}

/* apply, map, starmap: the record's bytes are copied into one block of the job. */
static bool deliver_list(mp_result *j, size_t base, const mp__rrec *rec)
{
    const char *q = (const char *)(rec + 1), *end = (const char *)rec + rec->size, *s = q;
    mp__ritem_hdr h;
    size_t total = 0;
    for (uint32_t i = 0; i < rec->count; i++) {
        if (!(s = next_item(s, end, &h))) return false;
        s += h.len;
        total += (h.len + 1 + 15) & ~(size_t)15;
    }
    char *dst = job_blk(j, total);
    for (uint32_t i = 0; i < rec->count; i++) {
        q = next_item(q, end, &h);
        size_t idx = base + i;
        if (dst) {
            memcpy(dst, q, h.len);
            dst[h.len] = 0;
            j->u.list.ri[idx] = (struct mp__ritem){dst, h.len, h.status, h.code};
            note_error(j, idx, h.status, h.code, dst);
            dst += (h.len + 1 + 15) & ~(size_t)15;
        } else {
            j->u.list.ri[idx] = (struct mp__ritem){"out of memory", 13, -ENOMEM, 0};
            note_error(j, idx, -ENOMEM, 0, "out of memory");
        }
        q += h.len;
    }
    j->remaining -= rec->count;
    return true;
}

/* map_fixed: each result goes straight into its out slot; a wrong size fails the item. */
static bool deliver_fixed(mp_result *j, size_t base, const mp__rrec *rec)
{
    const char *q = (const char *)(rec + 1), *end = (const char *)rec + rec->size;
    mp__ritem_hdr h;
    for (uint32_t i = 0; i < rec->count; i++) {
        if (!(q = next_item(q, end, &h))) return false;
        size_t idx = base + i, osz = j->u.fixed.out_size;
        if (h.status == 0 && h.len == osz) {
            memcpy(j->u.fixed.out + idx * osz, q, h.len);
        } else if (h.status == 0) {
            char msg[128];
            snprintf(msg, sizeof msg, "result of %u bytes, expected %zu", h.len, osz);
            fixed_fail(j, idx, MP_ERANGE, 0, msg);
        } else {
            char msg[1100];
            snprintf(msg, sizeof msg, "%.*s", (int)h.len, q);
            fixed_fail(j, idx, h.status, h.code, msg);
        }
        q += h.len;
    }
    j->remaining -= rec->count;
    return true;
}

static bool deliver_imap(mp_result *j, size_t base, const mp__rrec *rec)
{
    const char *q = (const char *)(rec + 1), *end = (const char *)rec + rec->size;
    mp__ritem_hdr h;
    for (uint32_t i = 0; i < rec->count; i++) {
        if (!(q = next_item(q, end, &h))) return false;
        mp__imap_deliver(j, base + i, h.status, h.code, q, h.len);
        q += h.len;
    }
    return true;
}

void mp__job_deliver(struct mp__task *t, const mp__rrec *rec)
{
    mp_result *j = t->job;
    if ((size_t)rec->first + rec->count > t->count) return;
    size_t base = t->first + rec->first;
    bool ok = true;
    if (!j->cancelled) {
        switch (j->kind) {
        case MP__K_IMAP:
            ok = deliver_imap(j, base, rec);
            break;
        case MP__K_FIXED:
            ok = deliver_fixed(j, base, rec);
            break;
        default:
            ok = deliver_list(j, base, rec);
            break;
        }
    }
    /* A malformed record settles nothing: the task's items fail when its worker is gone. */
    if (ok) t->delivered += rec->count;
}

void mp__job_item(const mp_result *j, size_t i, const void **d, size_t *l)
{
    if (j->kind == MP__K_IMAP) {
        mp__imap_item(j, i, d, l);
    } else if (j->kind == MP__K_FIXED) {
        *d = j->u.fixed.in + i * j->u.fixed.in_size;
        *l = j->u.fixed.in_size;
    } else {
        *d = j->u.list.items[i].data;
        *l = j->u.list.items[i].len;
    }
}

/* ---- completion ---------------------------------------------------------------------------- */

void mp__job_unlist(mp_pool *p, mp_result *j)
{
    if (!j->listed) return;
    if (j->aprev)
        j->aprev->anext = j->anext;
    else
        p->all = j->anext;
    if (j->anext) j->anext->aprev = j->aprev;
    j->listed = false;
}

static void mark_ready(mp_pool *p, mp_result *j)
{
    mp__job_unlist(p, j);
    p->unfinished--;
    /* Ready first: a waiter that finds no pool may conclude the result is ready. */
    atomic_store_explicit(&j->ready, 1, memory_order_release);
    j->pool = NULL;
    if (p->ts) p->tp->result_kick(p->ts);
    if (p->joining && p->unfinished == 0 && !mp__pool_on_duty(p)) mp__pool_kick(p);
    mp__job_unref(j);
}

/* Every item of j is delivered: queue its callbacks (for the duty thread) or make it ready. */
static void job_finish(mp_pool *p, mp_result *j)
{
    j->finished = true;
    /* Still linked in the job queue: dispatch unlinks it lazily, but a finished job must not
     * outlive the pool's reference while linked. */
    if (j->queued) mp__sched_unqueue_job(p, j);
    if (j->kind != MP__K_IMAP && (j->cb || j->ecb)) {
        j->cbnext = NULL;
        if (p->cbtail)
            p->cbtail->cbnext = j;
        else
            p->cbhead = j;
        p->cbtail = j;
        if (!mp__pool_on_duty(p)) mp__pool_kick(p);
        return;
    }
    mark_ready(p, j);
}

static bool job_complete(const mp_result *j)
{
    if (j->kind == MP__K_IMAP) return mp__imap_complete(j);
    return j->remaining == 0 && j->ntasks == 0;
}

void mp__job_maybe_finish(mp_pool *p, mp_result *j)
{
    if (!j->finished && job_complete(j)) job_finish(p, j);
}

mp_result *mp__pool_take_callbacks(mp_pool *p)
{
    mp_result *l = p->cbhead;
    p->cbhead = p->cbtail = NULL;
    return l;
}

void mp__pool_run_callbacks(mp_pool *p, mp_result *list)
{
    atomic_store(&p->cb_thread, pthread_self());
    while (list) {
        mp_result *j = list;
        list = j->cbnext;
        mp_result_cb cb = j->status == 0 ? j->cb : j->ecb;
        if (cb) {
            /* To its callback the result is ready already, and blocking calls on the pool from
             * this thread are refused (mp__pool_in_callback). */
            atomic_store(&p->cb_now, j);
            cb(j, j->user);
            atomic_store(&p->cb_now, NULL);
        }
        pthread_mutex_lock(&p->lock);
        mark_ready(p, j);
        pthread_mutex_unlock(&p->lock);
    }
}

/* ---- the result API ------------------------------------------------------------------------ */

static int result_check(const mp_result *r)
{
    if (!r) return -EINVAL;
    if (r->owner != mp__getpid_cached()) return MP_ECHILD;
    return 0;
}

static bool is_ready(const mp_result *r)
{
    if (atomic_load_explicit(&r->ready, memory_order_acquire)) return true;
    /* Its own callback sees it ready (the callback runs before it is marked ready). */
    return r->home && atomic_load(&r->home->cb_now) == r && mp__pool_in_callback(r->home);
}

static bool pred_ready(mp_pool *p, void *arg)
{
    (void)p;
    return atomic_load_explicit(&((mp_result *)arg)->ready, memory_order_acquire) != 0;
}

int mp_result_wait(mp_result *r, double timeout)
{
    int rc = result_check(r);
    if (rc) return rc;
    if (is_ready(r)) return 0;
    if (r->kind == MP__K_IMAP) return -EINVAL;
    mp_pool *p = r->home; /* referenced by r: valid whatever mp_pool_free does meanwhile */
    if (!p) return is_ready(r) ? 0 : MP_ETERMINATED;
    if (mp__timeout_blocks(timeout) && mp__pool_in_callback(p)) return -EDEADLK;
    mp__deadline dl = mp__deadline_in(timeout);
    rc = mp__pool_wait(p, pred_ready, r, &dl);
    if (rc == MP_ETERMINATED && is_ready(r)) rc = 0; /* the pool ended after settling r */
    return rc;
}

int mp_result_is_ready(const mp_result *r)
{
    int rc = result_check(r);
    if (rc) return rc;
    if (is_ready(r)) return 1;
    mp_pool *p = r->home;
    if (p && pthread_mutex_trylock(&p->lock) == 0) {
        mp__sched_progress(p); /* nothing once the pool released its workers */
        pthread_mutex_unlock(&p->lock);
    }
    return atomic_load_explicit(&r->ready, memory_order_acquire) ? 1 : 0;
}

int mp_result_get(mp_result *r, const void **data, size_t *len, double timeout)
{
    int rc = mp_result_wait(r, timeout);
    if (rc) return rc;
    const void *d = NULL;
    size_t l = 0;
    if (r->kind == MP__K_APPLY && r->u.list.ri[0].status == 0) {
        d = r->u.list.ri[0].data;
        l = r->u.list.ri[0].len;
    } else if (r->kind == MP__K_FIXED) {
        d = r->u.fixed.out;
        l = r->n * r->u.fixed.out_size;
    }
    if (data) *data = d;
    if (len) *len = l;
    return r->status;
}

int mp_result_is_successful(const mp_result *r)
{
    int rc = result_check(r);
    if (rc) return rc;
    if (!is_ready(r)) return MP_ESTATE;
    return r->status == 0;
}

int mp_result_error(const mp_result *r, int *code, const char **msg)
{
    int rc = result_check(r);
    if (rc) return rc;
    if (!is_ready(r)) return MP_ESTATE;
    if (code) *code = r->status ? r->code : 0;
    if (msg) *msg = r->status && r->msg ? r->msg : "";
    return r->status;
}

size_t mp_result_count(const mp_result *r)
{
    return r ? r->n : 0;
}

int mp_result_item(const mp_result *r, size_t i, const void **data, size_t *len)
{
    int rc = result_check(r);
    if (rc) return rc;
    if (!is_ready(r)) return MP_ESTATE;
    if (i >= r->n) return MP_ERANGE;
    if (r->kind == MP__K_FIXED) {
        int st = r->u.fixed.status ? r->u.fixed.status[i] : 0;
        if (data) *data = st ? NULL : r->u.fixed.out + i * r->u.fixed.out_size;
        if (len) *len = st ? 0 : r->u.fixed.out_size;
        return st;
    }
    const struct mp__ritem *it = &r->u.list.ri[i];
    if (data) *data = it->status ? NULL : it->data;
    if (len) *len = it->status ? 0 : it->len;
    return it->status;
}

int mp_result_item_error(const mp_result *r, size_t i, int *code, const char **msg)
{
    int rc = result_check(r);
    if (rc) return rc;
    if (!is_ready(r)) return MP_ESTATE;
    if (i >= r->n) return MP_ERANGE;
    int st, c = 0;
    const char *m = "";
    if (r->kind == MP__K_FIXED) {
        st = r->u.fixed.status ? r->u.fixed.status[i] : 0;
        if (st && i == r->err_index) {
            c = r->code;
            m = r->msg;
        } else if (st) {
            m = mp_strerror(st);
        }
    } else {
        st = r->u.list.ri[i].status;
        if (st) {
            c = r->u.list.ri[i].code;
            m = r->u.list.ri[i].data;
        }
    }
    if (code) *code = c;
    if (msg) *msg = m;
    return st;
}

int mp_result_free(mp_result **rp)
{
    if (!rp || !*rp) return 0;
    mp_result *r = *rp;
    if (r->owner != mp__getpid_cached()) return MP_ECHILD;
    if (r->kind == MP__K_IMAP) return -EINVAL; /* belongs to its mp_imap */
    *rp = NULL;
    mp__job_unref(r);
    return 0;
}
