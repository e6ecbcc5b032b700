/* SPDX-License-Identifier: MIT */
/* pool_submit.c - apply, map, map_fixed, starmap (and their blocking forms): checking the
 * arguments and building the job each submits. imap is in pool_imap.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mproc/error.h"
#include "pool_private.h"

static void set_callbacks(mp_result *j, const mp_task_options *o)
{
    if (!o) return;
    j->cb = o->callback;
    j->ecb = o->error_callback;
    j->user = o->user;
}

static int submit_new(mp_pool *p, mp_result *j, mp_result **out)
{
    pthread_mutex_lock(&p->lock);
    int rc = mp__pool_submit(p, j);
    pthread_mutex_unlock(&p->lock);
    if (rc) {
        mp__job_free(j);
        return rc;
    }
    *out = j;
    return 0;
}

int mp_pool_apply_async(mp_pool *p, const char *func, const void *arg, size_t len,
                        const mp_task_options *opts, mp_result **out)
{
    int rc = mp__pool_check(p);
    if (rc) return rc;
    if (!func || !out || (!arg && len > 0)) return -EINVAL;
    uint64_t id;
    if ((rc = mp__pool_lookup(p, func, &id))) return rc;
    if (len > p->conf.max_message - MP__REC_SLACK) return MP_ETOOBIG;
    mp_result *j = mp__job_new(MP__K_APPLY, len);
    if (!j) return -ENOMEM;
    if (len) memcpy(j + 1, arg, len);
    j->u.list.own = (mp_buf){j + 1, len};
    j->u.list.items = &j->u.list.own;
    j->u.list.ri = &j->u.list.one;
    j->n = 1;
    j->chunksize = 1;
    j->func = id;
    set_callbacks(j, opts);
    return submit_new(p, j, out);
}

/* The checks every blocking call makes before it submits: a usable pool, an out pointer (cleared
 * first, so it is NULL on every error), and not one of the pool's callbacks, which would wait for
 * itself. */
static int blocking_begin(mp_pool *p, mp_result **out)
{
    int rc = mp__pool_check(p);
    if (rc) return rc;
    if (!out) return -EINVAL;
    *out = NULL;
    return mp__pool_in_callback(p) ? -EDEADLK : 0;
}

/* Waits for a result a blocking call submitted; returns its outcome. */
static int wait_submitted(mp_result *r, double timeout)
{
    int rc = mp_result_wait(r, timeout);
    if (rc) return rc;
    return r->status;
}

int mp_pool_apply(mp_pool *p, const char *func, const void *arg, size_t len, mp_result **out,
                  double timeout)
{
    int rc = blocking_begin(p, out);
    if (rc) return rc;
    if ((rc = mp_pool_apply_async(p, func, arg, len, NULL, out))) return rc;
    return mp_result_get(*out, NULL, NULL, timeout);
}

static size_t auto_chunksize(const mp_pool *p, size_t n, const mp_task_options *o)
{
    if (o && o->chunksize) return o->chunksize;
    size_t d = 4 * (size_t)p->n, cs = n / d;
    if (n % d) cs++;
    return cs ? cs : 1;
}

/* Items are borrowed, so their sizes are known now: refuse as apply does, before anything runs
 * (imap, whose items come later, fails such an item with MP_ETOOBIG instead). */
static int check_items(const mp_pool *p, const mp_buf *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!items[i].data && items[i].len > 0) return -EINVAL;
        if (items[i].len > p->conf.max_message - MP__REC_SLACK) {
            mp__pool_set_error("map item %zu has %zu bytes, over the pool's limit of %zu", i,
                               items[i].len, p->conf.max_message - MP__REC_SLACK);
            return MP_ETOOBIG;
        }
    }
    return 0;
}

/* map and starmap; owned (starmap's packed tuples) is freed on every error. */
static int map_common(mp_pool *p, const char *func, const mp_buf *items, size_t n,
                      const mp_task_options *opts, void *owned, mp_result **out)
{
    uint64_t id;
    int rc = mp__pool_check(p);
    if (!rc && (!func || !out || (!items && n > 0) || n >= UINT32_MAX)) rc = -EINVAL;
    if (!rc) rc = mp__pool_lookup(p, func, &id);
    if (!rc) rc = check_items(p, items, n);
    mp_result *j = rc ? NULL : mp__job_new(MP__K_MAP, 0);
    if (!rc && !j) rc = -ENOMEM;
    if (rc) {
        free(owned);
        return rc;
    }
    j->u.list.owned_input = owned;
    j->u.list.ri = n ? malloc(n * sizeof *j->u.list.ri) : &j->u.list.one;
    if (!j->u.list.ri) {
        j->u.list.ri = &j->u.list.one;
        mp__job_free(j);
        return -ENOMEM;
    }
    j->u.list.items = items;
    j->n = n;
    j->func = id;
    j->chunksize = auto_chunksize(p, n, opts);
    set_callbacks(j, opts);
    return submit_new(p, j, out);
}

int mp_pool_map_async(mp_pool *p, const char *func, const mp_buf *items, size_t n,
                      const mp_task_options *opts, mp_result **out)
{
    return map_common(p, func, items, n, opts, NULL, out);
}

int mp_pool_map(mp_pool *p, const char *func, const mp_buf *items, size_t n,
                const mp_task_options *opts, mp_result **out, double timeout)
{
    int rc = blocking_begin(p, out);
    if (rc) return rc;
    if ((rc = mp_pool_map_async(p, func, items, n, opts, out))) return rc;
    return wait_submitted(*out, timeout);
}

int mp_pool_map_fixed_async(mp_pool *p, const char *func, const void *in, size_t n, size_t in_size,
                            void *out, size_t out_size, const mp_task_options *opts,
                            mp_result **out_result)
{
    int rc = mp__pool_check(p);
    if (rc) return rc;
    if (!func || !out_result || in_size == 0 || ((!in || !out) && n > 0) || n >= UINT32_MAX)
        return -EINVAL;
    uint64_t id;
    if ((rc = mp__pool_lookup(p, func, &id))) return rc;
    if (in_size > p->conf.max_message - MP__REC_SLACK ||
        out_size > p->conf.max_message - MP__REC_SLACK)
        return MP_ETOOBIG;
    mp_result *j = mp__job_new(MP__K_FIXED, 0);
    if (!j) return -ENOMEM;
    j->u.fixed.in = in;
    j->u.fixed.in_size = in_size;
    j->u.fixed.out = out;
    j->u.fixed.out_size = out_size;
    j->n = n;
    j->func = id;
    j->chunksize = auto_chunksize(p, n, opts);
    set_callbacks(j, opts);
    return submit_new(p, j, out_result);
}

int mp_pool_map_fixed(mp_pool *p, const char *func, const void *in, size_t n, size_t in_size,
                      void *out, size_t out_size, const mp_task_options *opts,
                      mp_result **out_result, double timeout)
{
    int rc = blocking_begin(p, out_result);
    if (rc) return rc;
    rc = mp_pool_map_fixed_async(p, func, in, n, in_size, out, out_size, opts, out_result);
    if (rc) return rc;
    return wait_submitted(*out_result, timeout);
}

int mp_pool_starmap_async(mp_pool *p, const char *func, const mp_args *items, size_t n,
                          const mp_task_options *opts, mp_result **out)
{
    int rc = mp__pool_check(p);
    if (rc) return rc;
    if (!func || !out || (!items && n > 0) || n >= UINT32_MAX) return -EINVAL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t need;
        rc = mp_args_pack(items[i].v, items[i].n, NULL, 0, &need);
        if (rc != MP_ETOOSMALL) return rc ? rc : -EINVAL;
        if (need > p->conf.max_message - MP__REC_SLACK) return MP_ETOOBIG;
        total += need;
    }
    mp_buf *bufs = malloc(n * sizeof *bufs + total + 1);
    if (!bufs) return -ENOMEM;
    char *q = (char *)(bufs + n);
    for (size_t i = 0; i < n; i++) {
        size_t need;
        mp_args_pack(items[i].v, items[i].n, q, total, &need);
        bufs[i] = (mp_buf){q, need};
        q += need;
    }
    return map_common(p, func, bufs, n, opts, bufs, out);
}

int mp_pool_starmap(mp_pool *p, const char *func, const mp_args *items, size_t n,
                    const mp_task_options *opts, mp_result **out, double timeout)
{
    int rc = blocking_begin(p, out);
    if (rc) return rc;
    if ((rc = mp_pool_starmap_async(p, func, items, n, opts, out))) return rc;
    return wait_submitted(*out, timeout);
}
