/* SPDX-License-Identifier: MIT */
/* pool_func.c - the pool's function registry, the task-side result API, argument tuples.
 *
 * Functions are found by a 64-bit id, the FNV-1a hash of their name, so that a task record names
 * its function the same way in every process and on every machine. The table is a fixed array of
 * atomic pointers probed linearly: lookups take no lock (a worker forked while another thread of
 * the parent held the registration lock must still find its functions), registrations take one.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mproc/error.h"
#include "mproc/pool.h"
#include "pool_internal.h"

#define FUNC_SLOTS    4096 /* power of two; at most half of it used */
#define FUNC_NAME_MAX 127

struct mp_func {
    uint64_t id;
    mp_task_fn fn;
    uint64_t seq;     /* registration order, from 1: a pool refuses functions newer than itself */
    const char *file; /* where MP_FUNC_REGISTER registered it; NULL: mp_func_register at run time */
    int line;
    char name[FUNC_NAME_MAX + 1];
};

static _Atomic(struct mp_func *) func_table[FUNC_SLOTS];
static int func_count;
static pthread_mutex_t func_lock = PTHREAD_MUTEX_INITIALIZER;
/* Registrations so far (the last seq): stored after the table entry, read before a fork. */
static _Atomic uint64_t func_gen;
/* The first name clash of a load-time registration (MP_FUNC_REGISTER cannot return an error):
 * every later mp_pool_new fails with -EEXIST and this text, so the clash cannot go unnoticed. */
static char clash_msg[512];
static _Atomic int clash_seen;

/* The detail of the last registry or pool error of this thread (mp_pool_last_error). */
static _Thread_local char last_error[512];

void mp__pool_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}

const char *mp_pool_last_error(void)
{
    return last_error;
}

const char *mp_last_error(void)
{
    return last_error;
}

uint64_t mp__func_gen(void)
{
    return atomic_load_explicit(&func_gen, memory_order_acquire);
}

uint64_t mp__func_seq(const struct mp_func *f)
{
    return f->seq;
}

int mp__func_clash(void)
{
    if (!atomic_load_explicit(&clash_seen, memory_order_acquire)) return 0;
    mp__pool_set_error("%s", clash_msg);
    return -EEXIST;
}

uint64_t mp__func_hash(const char *name)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return h ? h : 1; /* 0 means "no function" in task records */
}

const struct mp_func *mp__func_by_id(uint64_t id)
{
    for (uint32_t i = 0; i < FUNC_SLOTS; i++) {
        struct mp_func *f =
            atomic_load_explicit(&func_table[(id + i) & (FUNC_SLOTS - 1)], memory_order_acquire);
        if (!f) return NULL;
        if (f->id == id) return f;
    }
    return NULL;
}

mp_task_fn mp__func_fn(const struct mp_func *f)
{
    return f->fn;
}

static void where(char *buf, size_t cap, const char *file, int line)
{
    if (file)
        snprintf(buf, cap, "%s:%d", file, line);
    else
        snprintf(buf, cap, "mp_func_register() at run time");
}

static int register_at(const char *name, mp_task_fn fn, const char *file, int line, mp_func **out)
{
    if (!name || !fn) return -EINVAL;
    size_t n = strlen(name);
    if (n == 0 || n > FUNC_NAME_MAX) return -EINVAL;
    uint64_t id = mp__func_hash(name);
    pthread_mutex_lock(&func_lock);
    const struct mp_func *old = mp__func_by_id(id);
    if (old) {
        int same = strcmp(old->name, name) == 0 && old->fn == fn;
        if (!same) {
            char a[300], b[300];
            where(a, sizeof a, old->file, old->line);
            where(b, sizeof b, file, line);
            if (strcmp(old->name, name) == 0)
                mp__pool_set_error("function name \"%s\" registered twice, by two functions: %s "
                                   "and %s",
                                   name, a, b);
            else
                mp__pool_set_error("function names \"%s\" (%s) and \"%s\" (%s) have the same "
                                   "64-bit id",
                                   old->name, a, name, b);
            if (file && !atomic_load_explicit(&clash_seen, memory_order_relaxed)) {
                snprintf(clash_msg, sizeof clash_msg, "%s", last_error);
                atomic_store_explicit(&clash_seen, 1, memory_order_release);
            }
        }
        pthread_mutex_unlock(&func_lock);
        if (!same) return -EEXIST;
        if (out) *out = (mp_func *)old;
        return 0;
    }
    if (func_count >= FUNC_SLOTS / 2) {
        pthread_mutex_unlock(&func_lock);
        return -ENOMEM;
    }
    struct mp_func *f = calloc(1, sizeof *f);
    if (!f) {
        pthread_mutex_unlock(&func_lock);
        return -ENOMEM;
    }
    f->id = id;
    f->fn = fn;
    f->file = file;
    f->line = line;
    f->seq = atomic_load_explicit(&func_gen, memory_order_relaxed) + 1;
    memcpy(f->name, name, n + 1);
    uint32_t i = 0;
    while (atomic_load_explicit(&func_table[(id + i) & (FUNC_SLOTS - 1)], memory_order_relaxed))
        i++;
    atomic_store_explicit(&func_table[(id + i) & (FUNC_SLOTS - 1)], f, memory_order_release);
    func_count++;
    atomic_store_explicit(&func_gen, f->seq, memory_order_release);
    pthread_mutex_unlock(&func_lock);
    if (out) *out = f;
    return 0;
}

int mp_func_register(const char *name, mp_task_fn fn, mp_func **out)
{
    return register_at(name, fn, NULL, 0, out);
}

void mp__func_register_static(const char *name, mp_task_fn fn, const char *file, int line)
{
    int rc = register_at(name, fn, file, line, NULL);
    /* A constructor has nobody to return an error to: say it now (stderr is unbuffered), and
     * mp_pool_new refuses to create pools (mp__func_clash). */
    if (rc == -EEXIST)
        fprintf(stderr, "mproc: %s; every mp_pool_new will fail with -EEXIST\n", last_error);
    else if (rc)
        fprintf(stderr, "mproc: MP_FUNC_REGISTER(\"%s\") at %s:%d failed: %s\n", name, file, line,
                rc == -EINVAL ? "invalid name" : "out of memory");
}

int mp_func_find(const char *name, mp_func **out)
{
    if (!name || !out) return -EINVAL;
    const struct mp_func *f = mp__func_by_id(mp__func_hash(name));
    if (!f || strcmp(f->name, name) != 0) {
        mp__pool_set_error("no function is registered under the name \"%s\"", name);
        return MP_ENOFUNC;
    }
    *out = (mp_func *)f;
    return 0;
}

const char *mp_func_name(const mp_func *f)
{
    return f ? f->name : NULL;
}

uint64_t mp_func_id(const mp_func *f)
{
    return f ? f->id : 0;
}

/* ---- task results (worker side) ------------------------------------------------------------- */

int mp_task_result_set(mp_task_result *res, const void *data, size_t len)
{
    if (!res || (!data && len > 0)) return -EINVAL;
    void *p = mp_task_result_alloc(res, len);
    if (!p) return res->status ? res->status : -ENOMEM;
    if (len) memcpy(p, data, len);
    return 0;
}

void *mp_task_result_alloc(mp_task_result *res, size_t len)
{
    if (!res) return NULL;
    if (len > res->max) {
        mp_task_fail(res, 0, "result of %zu bytes exceeds the pool's limit of %zu", len, res->max);
        res->status = MP_ETOOBIG;
        return NULL;
    }
    if (len > res->cap) {
        size_t cap = res->cap ? res->cap : 256;
        while (cap < len)
            cap *= 2;
        void *p = realloc(res->buf, cap);
        if (!p) return NULL;
        res->buf = p;
        res->cap = cap;
    }
    res->len = len;
    res->status = 0;
    res->set = true;
    return res->len || res->buf ? res->buf : (void *)res;
}

int mp_task_failv(mp_task_result *res, int code, const char *fmt, va_list ap)
{
    if (!res || !fmt) return -EINVAL;
    int n = vsnprintf(res->msg, sizeof res->msg, fmt, ap);
    if (n < 0) n = 0;
    res->msglen = (size_t)n < sizeof res->msg ? (size_t)n : sizeof res->msg - 1;
    res->status = MP_ETASKFAILED;
    res->code = code;
    res->set = true;
    return MP_ETASKFAILED;
}

int mp_task_fail(mp_task_result *res, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = mp_task_failv(res, code, fmt, ap);
    va_end(ap);
    return r;
}

/* ---- argument tuples ------------------------------------------------------------------------- */

int mp_args_pack(const mp_buf *v, size_t n, void *out, size_t cap, size_t *needed)
{
    if ((!v && n > 0) || n >= UINT32_MAX) return -EINVAL;
    size_t size = 4;
    for (size_t i = 0; i < n; i++) {
        if ((!v[i].data && v[i].len > 0) || v[i].len >= UINT32_MAX) return -EINVAL;
        size += 4 + v[i].len;
    }
    if (needed) *needed = size;
    if (!out || cap < size) return MP_ETOOSMALL;
    char *p = out;
    uint32_t c = (uint32_t)n;
    memcpy(p, &c, 4);
    p += 4;
    for (size_t i = 0; i < n; i++) {
        uint32_t l = (uint32_t)v[i].len;
        memcpy(p, &l, 4);
        p += 4;
        if (l) memcpy(p, v[i].data, l);
        p += l;
    }
    return 0;
}

int mp_args_unpack(const void *data, size_t len, mp_buf *v, size_t max, size_t *n)
{
    if (!data || !n || (!v && max > 0)) return -EINVAL;
    const char *p = data, *end = p + len;
    if (len < 4) return MP_ECORRUPT;
    uint32_t c;
    memcpy(&c, p, 4);
    p += 4;
    /* Validate the whole tuple before handing anything out. */
    const char *q = p;
    for (uint32_t i = 0; i < c; i++) {
        if ((size_t)(end - q) < 4) return MP_ECORRUPT;
        uint32_t l;
        memcpy(&l, q, 4);
        q += 4;
        if ((size_t)(end - q) < l) return MP_ECORRUPT;
        q += l;
    }
    if (q != end) return MP_ECORRUPT;
    *n = c;
    if (c > max) return MP_ETOOSMALL;
    for (uint32_t i = 0; i < c; i++) {
        uint32_t l;
        memcpy(&l, p, 4);
        p += 4;
        v[i].data = p;
        v[i].len = l;
        p += l;
    }
    return 0;
}
