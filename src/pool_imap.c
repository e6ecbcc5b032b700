/* SPDX-License-Identifier: MIT */
/* pool_imap.c - imap and imap_unordered: a window of W slots over an input of any length.
 *
 * Item i lives in slot i % W from the moment it is pulled from the caller's iterator until its
 * result is taken by mp_imap_next. Input is pulled (outside the pool lock: the iterator is user
 * code) only while the window has room, so an endless input works and memory stays bounded. The
 * job (an mp_result of kind MP__K_IMAP) grows as items are pulled; the scheduler sends them like
 * any other job's. Results come back in input order (ordered: the slot at `lo`) or in completion
 * order (unordered: a ring of finished indices). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mproc/error.h"
#include "pool_private.h"

enum { SLOT_FREE, SLOT_PENDING, SLOT_DONE };

struct islot {
    int state;
    int status, code;
    uint32_t in_cap, out_cap;
    size_t in_len, out_len;
    char *in;  /* in_small, or malloc'd for larger items */
    char *out; /* result bytes or message, NUL-terminated; out_small or malloc'd */
    char in_small[16];
    char out_small[24];
};

struct mp_imap {
    mp_result *job;
    mp_iter_fn next;
    void *user;
    bool unordered;
    size_t W;
    struct islot *slots;
    size_t pulled, lo; /* items [lo, pulled) are in the window */
    size_t *doneq;     /* unordered: indices in completion order, a ring of W */
    size_t dq_head, dq_tail;
    bool ended;
    int iter_err;
    bool iter_err_done;
    int last_status, last_code;
    const char *last_msg;
};

/* Makes *b hold need bytes (contents not kept). Small items live inline in the slot, so a
 * stream of small items allocates nothing. */
static int buf_fit(char **b, uint32_t *cap, char *small, size_t need)
{
    if (need <= *cap) return 0;
    if (need > UINT32_MAX / 2) return -ENOMEM;
    uint32_t c = *cap * 2;
    while (c < need)
        c *= 2;
    char *nb = malloc(c);
    if (!nb) return -ENOMEM;
    if (*b != small) free(*b);
    *b = nb;
    *cap = c;
    return 0;
}

void mp__imap_item(const mp_result *j, size_t i, const void **d, size_t *l)
{
    const struct islot *s = &j->u.imap->slots[i % j->u.imap->W];
    *d = s->in;
    *l = s->in_len;
}

bool mp__imap_complete(const mp_result *j)
{
    return (j->cancelled || j->u.imap->ended) && j->next == j->n && j->ntasks == 0;
}

void mp__imap_deliver(mp_result *j, size_t idx, int status, int code, const void *bytes, size_t len)
{
    if (j->cancelled) return;
    struct mp_imap *it = j->u.imap;
    struct islot *s = &it->slots[idx % it->W];
    if (buf_fit(&s->out, &s->out_cap, s->out_small, len + 1) != 0) {
        status = -ENOMEM;
        bytes = "out of memory";
        len = 13;
    }
    if (len) memcpy(s->out, bytes, len);
    s->out[len] = 0;
    s->out_len = len;
    s->status = status;
    s->code = code;
    s->state = SLOT_DONE;
    if (it->unordered) {
        it->doneq[it->dq_tail % it->W] = idx;
        it->dq_tail++;
    }
}

static void imap_destroy(struct mp_imap *it)
{
    if (it->slots) {
        for (size_t i = 0; i < it->W; i++) {
            struct islot *s = &it->slots[i];
            if (s->in != s->in_small) free(s->in);
            if (s->out != s->out_small) free(s->out);
        }
    }
    free(it->slots);
    free(it->doneq);
    free(it);
}

static int imap_new(mp_pool *p, const char *func, mp_iter_fn next, void *user,
                    const mp_task_options *opts, bool unordered, mp_imap **out)
{
    int rc = mp__pool_check(p);
    if (rc) return rc;
    if (!func || !next || !out) return -EINVAL;
    uint64_t id;
    if ((rc = mp__pool_lookup(p, func, &id))) return rc;
    struct mp_imap *it = calloc(1, sizeof *it);
    mp_result *j = mp__job_new(MP__K_IMAP, 0);
    size_t cs = opts && opts->chunksize ? opts->chunksize : 1;
    /* Enough items in flight to keep every worker busy, few enough to bound memory. */
    size_t W =
        opts && opts->window ? opts->window : (size_t)MP__POOL_IMAP_DEPTH * (size_t)p->n * cs;
    if (!(opts && opts->window) && W < 1024) W = 1024;
    if (W < cs) W = cs;
    if (it) {
        it->W = W;
        it->slots = calloc(W, sizeof *it->slots);
        if (unordered) it->doneq = calloc(W, sizeof *it->doneq);
    }
    if (!it || !j || !it->slots || (unordered && !it->doneq)) {
        if (it) imap_destroy(it);
        free(j);
        return -ENOMEM;
    }
    for (size_t i = 0; i < W; i++) {
        struct islot *s = &it->slots[i];
        s->in = s->in_small;
        s->in_cap = sizeof s->in_small;
        s->out = s->out_small;
        s->out_cap = sizeof s->out_small;
    }
    it->job = j;
    it->next = next;
    it->user = user;
    it->unordered = unordered;
    j->u.imap = it;
    j->func = id;
    j->chunksize = cs;
    pthread_mutex_lock(&p->lock);
    rc = mp__pool_submit(p, j);
    pthread_mutex_unlock(&p->lock);
    if (rc) {
        imap_destroy(it);
        free(j);
        return rc;
    }
    *out = it;
    return 0;
}

int mp_pool_imap(mp_pool *p, const char *func, mp_iter_fn next, void *user,
                 const mp_task_options *opts, mp_imap **out)
{
    return imap_new(p, func, next, user, opts, false, out);
}

int mp_pool_imap_unordered(mp_pool *p, const char *func, mp_iter_fn next, void *user,
                           const mp_task_options *opts, mp_imap **out)
{
    return imap_new(p, func, next, user, opts, true, out);
}

/* Pulls input while the window has room (outside the lock: the iterator is user code), then
 * makes the new items dispatchable. */
#ifdef MP_TEST_HOOKS
/* Tests: called after a pull, before its items are published under the pool lock. */
void (*mp__test_imap_pulled)(bool ended, size_t pulled);
#endif

static void imap_pull(struct mp_imap *it)
{
    mp_result *j = it->job;
    size_t start = it->pulled;
    /* Pull whole chunks only, so that every task record carries chunksize items. */
    size_t room = it->lo + it->W - it->pulled;
    if (room < j->chunksize) return;
    size_t until = it->pulled + room / j->chunksize * j->chunksize;
    /* The end of the input is published under the pool lock, together with j->n: a thread that
     * saw `ended` with the old n would take the job for complete and detach it, failing the
     * items pulled last (seen under valgrind: imap_unordered returned 1998 of 2000). */
    bool ended = it->ended;
    int err = it->iter_err;
    while (!ended && it->pulled < until) {
        const void *d = NULL;
        size_t l = 0;
        int r = it->next(it->user, &d, &l);
        if (r <= 0) {
            ended = true;
            err = r;
            break;
        }
        struct islot *s = &it->slots[it->pulled % it->W];
        if (buf_fit(&s->in, &s->in_cap, s->in_small, l) != 0 || (!d && l)) {
            ended = true;
            err = (!d && l) ? -EINVAL : -ENOMEM;
            break;
        }
        if (l) memcpy(s->in, d, l);
        s->in_len = l;
        s->state = SLOT_PENDING;
        it->pulled++;
    }
    if (it->pulled == start && !ended) return;
#ifdef MP_TEST_HOOKS
    if (mp__test_imap_pulled) mp__test_imap_pulled(ended, it->pulled - start);
#endif
    mp_pool *p = j->home;
    pthread_mutex_lock(&p->lock);
    it->ended = ended;
    it->iter_err = err;
    if (!j->pool) { /* detached by terminate */
        for (size_t i = start; i < it->pulled; i++)
            mp__imap_deliver(j, i, MP_ETERMINATED, 0, "pool was terminated", 19);
        j->n = j->next = it->pulled;
        pthread_mutex_unlock(&p->lock);
        return;
    }
    j->n = it->pulled;
    int st = mp__pool_submit_state(p);
    if (st == MP_ECLOSED) st = p->released ? MP_ETERMINATED : 0; /* started before close: goes on */
    if (st) {
        const char *m = p->broken ? p->broken_msg : "pool was terminated";
        mp__job_fail_items(j, j->next, j->n - j->next, st, p->broken_code, m);
        j->next = j->n;
    } else {
        mp__sched_queue_job(p, j);
    }
    mp__job_maybe_finish(p, j);
    mp__sched_dispatch(p);
    pthread_mutex_unlock(&p->lock);
}

static bool imap_have(const struct mp_imap *it)
{
    if (it->unordered) return it->dq_head != it->dq_tail;
    return it->lo < it->pulled && it->slots[it->lo % it->W].state == SLOT_DONE;
}

static bool pred_imap(mp_pool *p, void *arg)
{
    (void)p;
    return imap_have(arg);
}

/* Takes the next available result (lock held). */
static int imap_take(struct mp_imap *it, const void **data, size_t *len, size_t *index)
{
    size_t idx;
    if (it->unordered) {
        idx = it->doneq[it->dq_head % it->W];
        it->dq_head++;
    } else {
        idx = it->lo;
    }
    struct islot *s = &it->slots[idx % it->W];
    s->state = SLOT_FREE;
    while (it->lo < it->pulled && it->slots[it->lo % it->W].state == SLOT_FREE)
        it->lo++;
    it->last_status = s->status;
    it->last_code = s->code;
    it->last_msg = s->status ? (s->out ? s->out : "") : "";
    if (data) *data = s->status ? NULL : s->out;
    if (len) *len = s->status ? 0 : s->out_len;
    if (index) *index = idx;
    return s->status;
}

int mp_imap_next(mp_imap *it, const void **data, size_t *len, size_t *index, double timeout)
{
    if (!it) return -EINVAL;
    mp_result *j = it->job;
    if (j->owner != mp__getpid_cached()) return MP_ECHILD;
    mp__deadline dl = mp__deadline_in(timeout);
    mp_pool *p = j->home; /* referenced by the imap's job: valid until mp_imap_free */
    for (;;) {
        imap_pull(it);
        pthread_mutex_lock(&p->lock);
        bool attached = j->pool != NULL;
        if (attached) mp__sched_progress(p);
        if (imap_have(it)) {
            int rc = imap_take(it, data, len, index);
            pthread_mutex_unlock(&p->lock);
            return rc;
        }
        pthread_mutex_unlock(&p->lock);
        if (it->ended && it->lo == it->pulled) {
            it->last_status = 0;
            if (it->iter_err < 0 && !it->iter_err_done) {
                it->iter_err_done = true;
                return it->iter_err;
            }
            return MP_EEOF;
        }
        if (!attached) return MP_ETERMINATED;
        if (mp__timeout_blocks(timeout) && mp__pool_in_callback(p)) return -EDEADLK;
        int rc = mp__pool_wait(p, pred_imap, it, &dl);
        if (rc == MP_ETERMINATED) continue; /* the pool is gone: take what it settled */
        if (rc) return rc;
    }
}

int mp_imap_error(const mp_imap *it, int *code, const char **msg)
{
    if (!it) return -EINVAL;
    if (it->job->owner != mp__getpid_cached()) return MP_ECHILD;
    if (code) *code = it->last_status ? it->last_code : 0;
    if (msg) *msg = it->last_status && it->last_msg ? it->last_msg : "";
    return it->last_status;
}

int mp_imap_free(mp_imap **itp)
{
    if (!itp || !*itp) return 0;
    struct mp_imap *it = *itp;
    mp_result *j = it->job;
    if (j->owner != mp__getpid_cached()) return MP_ECHILD;
    *itp = NULL;
    mp_pool *p = j->home;
    pthread_mutex_lock(&p->lock);
    j->cancelled = true;
    j->next = j->n;
    if (j->pool) mp__job_maybe_finish(p, j);
    pthread_mutex_unlock(&p->lock);
    imap_destroy(it);
    mp__job_unref(j);
    return 0;
}
