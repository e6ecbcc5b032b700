/* pool.c - the process pool: jobs, tasks, dispatch, results, the supervisor, shutdown.
 *
 * Vocabulary. A job is what the caller submitted (mp_result: one apply, one map, one imap); it
 * has n items. A task is a run of items of one job sent to one worker as one record (a chunk).
 * Jobs with items not yet sent wait in the job queue; tasks taken back from a dead worker before
 * they started wait in the retry queue, ahead of everything.
 *
 * Progress. No thread owns the result rings: whoever holds the pool lock may drain them and
 * dispatch more tasks (progress()). A thread waiting for a result does so itself, spinning on the
 * transport's result counter while a busy worker runs on another CPU and sleeping on it (futex)
 * otherwise; so an apply round trip is caller -> worker -> caller with no thread in between. The
 * supervisor thread drains only when nobody else waits (it asks the workers for an eventfd write
 * then), has workers started and replaced by the pool's worker factory (pool_factory.c: a
 * single-threaded process, so no worker is ever forked from this multi-threaded one), learns of
 * their deaths from it, enforces task timeouts and runs callbacks.
 *
 * Lifetimes. A job is referenced by its caller (mp_result_free / mp_imap_free) and by the pool
 * until it is ready; whoever drops the last reference frees it. A job in turn references the pool's
 * structure from submission until it is freed (home), and the owner holds one more reference
 * (mp_pool_free): a thread inside mp_result_wait or mp_imap_next may thus always lock the pool,
 * even while another thread frees it; it then finds the pool released and the job settled.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "mproc/error.h"
#include "mproc/pool.h"
#include "platform/platform.h"
#include "pool_internal.h"
#include "pool_transport.h"
#include "process_internal.h"

#define DEFAULT_MAX_MESSAGE (256u * 1024)
#define DEFAULT_PIPELINE    16u /* imap window sizing */
#define PIPELINE_MIN        2u
#define PIPELINE_MAX        256u
/* Adaptive pipelining keeps about this much work queued in each worker: enough to hide a
 * wake-up, little enough that a queued task never waits long behind others. */
#define PIPELINE_WORK_NS 200000
#define MAX_PROCESSES    1024

enum { K_SINGLE, K_MAP, K_FIXED, K_IMAP };
enum { ST_RUN, ST_CLOSED, ST_TERMINATED };
enum { SLOT_FREE, SLOT_PENDING, SLOT_DONE };

struct ritem {
    const void *data; /* result bytes, or the NUL-terminated message when status != 0 */
    uint32_t len;
    int32_t status;
    int32_t code;
};

/* An allocation owned by a result; data after the header is 16-byte aligned. */
struct blk {
    struct blk *next;
    size_t pad;
};

struct ptask {
    struct ptask *next;
    uint64_t id;
    mp_result *job;
    uint32_t first, count, delivered;
    int64_t sent_ns;
};

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
    size_t pulled, lo;
    size_t *doneq; /* unordered: indices in completion order, a ring of W */
    size_t dq_head, dq_tail;
    bool ended;
    int iter_err;
    bool iter_err_done;
    int last_status, last_code;
    const char *last_msg;
};

struct mp_result {
    _Atomic uint32_t ready;
    _Atomic int refs;
    _Atomic(mp_pool *) pool; /* NULL once ready (or detached by terminate); under the pool lock */
    /* The pool this job was submitted to, never cleared: the job holds a reference on it until
     * job_free, so a caller may lock it whatever another thread does to the pool meanwhile. */
    mp_pool *home;
    pid_t owner;
    int kind;
    uint64_t func;
    mp_result_cb cb, ecb;
    void *user;
    size_t n, next, chunksize;
    const mp_buf *items;
    mp_buf own;
    const char *in;
    size_t in_size;
    char *out;
    size_t out_size;
    struct ritem *ri;
    struct ritem one;
    int32_t *fstatus;
    size_t remaining, ntasks;
    size_t err_index;
    int status, code;
    const char *msg;
    char *msg_own;
    struct blk *blocks;
    void *owned_input;
    mp_result *qnext;
    bool queued, finished, cancelled, listed;
    mp_result *cbnext;
    mp_result *anext, *aprev;
    struct mp_imap *imap;
};

struct pworker {
    mp__tp_worker *tp;
    pid_t pid;
    bool alive, stopping;
    bool starting; /* asked of the factory, not answered yet */
    struct ptask *head, *tail;
    unsigned nout, dispatched;
    uint64_t timed_out_id;
    int64_t respawn_at;
    int64_t last_done_ns;
    unsigned full_epoch;
    bool unflushed; /* task records written but not yet published */
};

struct mp_pool {
    pid_t owner;
    /* One reference for the owner (dropped by mp_pool_free) plus one per submitted job (dropped
     * when the job is freed): the last one frees the structure. */
    _Atomic int refs;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_mutex_t stop_lock; /* one thread at a time stops the supervisor and releases */
    int waiters;               /* threads inside wait_for: the shared memory stays until 0 */
    int state;
    bool joining, joined, released, broken;
    int broken_status, broken_code;
    char broken_msg[1100];
    mp__worker_conf conf;
    void *initarg;
    int *cpus;
    int ncpus;
    unsigned pipeline;   /* fixed depth, or 0: adaptive */
    int64_t avg_task_ns; /* moving average of a task's service time, for the adaptive depth */
    double timeout_s;
    int64_t timeout_ns;
    int n;
    struct pworker *w;
    const mp__transport *tp;
    mp__tp_shared *ts;
    int efd;
    pthread_t sup;
    bool sup_running, sup_stop, sup_ready;
    int sup_err;
    uint64_t func_gen; /* the registry's generation the workers were forked with */
    mp_result *qhead, *qtail;
    struct ptask *rhead, *rtail;
    struct ptask *free_tasks;
    uint64_t next_id;
    size_t outstanding, unfinished;
    mp_result *all;
    mp_result *cbhead, *cbtail;
    _Atomic int drainers;
    int nalive;
    int spawning; /* spawn requests the factory has not answered yet */
    mp__factory fac;
    unsigned epoch;
};

/* Set on a thread while it runs result callbacks: blocking pool calls then fail with -EDEADLK. */
static _Thread_local int in_callback;
static _Thread_local mp_pool *supervising;
/* The result whose callback runs on this thread: to its callback it is ready already. */
static _Thread_local const mp_result *cb_result;

/* getpid() is a system call in current glibc; the pool asks on every call, so cache it and
 * forget it in every child (pthread_atfork runs for any fork, mproc's or not). */
static _Atomic pid_t cached_pid;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void forget_pid(void)
{
    atomic_store_explicit(&cached_pid, 0, memory_order_relaxed);
}

static void register_forget_pid(void)
{
    pthread_atfork(NULL, NULL, forget_pid);
}

static pid_t self_pid(void)
{
    pid_t pid = atomic_load_explicit(&cached_pid, memory_order_relaxed);
    if (pid) return pid;
    pthread_once(&pid_once, register_forget_pid);
    pid = getpid();
    atomic_store_explicit(&cached_pid, pid, memory_order_relaxed);
    return pid;
}

static int check_pool(const mp_pool *p)
{
    if (!p) return -EINVAL;
    if (p->owner != self_pid()) return MP_ECHILD;
    return 0;
}

static void kick_supervisor(mp_pool *p)
{
    if (p->efd < 0) return;
    uint64_t one = 1;
    ssize_t n = write(p->efd, &one, sizeof one);
    (void)n;
}

/* ---- jobs ---------------------------------------------------------------------------------- */

static mp_result *job_new(int kind, size_t extra)
{
    mp_result *j = calloc(1, sizeof *j + extra);
    if (!j) return NULL;
    j->kind = kind;
    j->owner = self_pid();
    atomic_init(&j->refs, 2);
    j->err_index = SIZE_MAX;
    return j;
}

static void pool_unref(mp_pool *p);

static void job_free(mp_result *j)
{
    mp_pool *home = j->home;
    for (struct blk *b = j->blocks; b;) {
        struct blk *next = b->next;
        free(b);
        b = next;
    }
    if (j->ri != &j->one) free(j->ri);
    free(j->fstatus);
    free(j->msg_own);
    free(j->owned_input);
    free(j);
    if (home) pool_unref(home);
}

static void job_unref(mp_result *j)
{
    if (atomic_fetch_sub(&j->refs, 1) == 1) job_free(j);
}

static void *job_blk(mp_result *j, size_t size)
{
    struct blk *b = malloc(sizeof *b + size);
    if (!b) return NULL;
    b->next = j->blocks;
    j->blocks = b;
    return b + 1;
}

static void job_item(const mp_result *j, size_t i, const void **d, size_t *l)
{
    if (j->kind == K_IMAP) {
        const struct islot *s = &j->imap->slots[i % j->imap->W];
        *d = s->in;
        *l = s->in_len;
    } else {
        *d = j->items[i].data;
        *l = j->items[i].len;
    }
}

static void note_error(mp_result *j, size_t idx, int status, int code, const char *msg)
{
    if (!status || (j->status && idx >= j->err_index)) return;
    j->err_index = idx;
    j->status = status;
    j->code = code;
    if (j->kind == K_FIXED) {
        free(j->msg_own);
        j->msg_own = strdup(msg ? msg : "");
        j->msg = j->msg_own ? j->msg_own : "";
    } else {
        j->msg = msg;
    }
}

static void mark_ready(mp_pool *p, mp_result *j);
static void job_finish(mp_pool *p, mp_result *j);

/* ---- imap slots ------------------------------------------------------------------------------ */

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

static void imap_deliver(mp_result *j, size_t idx, int status, int code, const void *bytes,
                         size_t len)
{
    if (j->cancelled) return;
    struct mp_imap *it = j->imap;
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

/* ---- delivering outcomes ------------------------------------------------------------------- */

/* Items [first, first+count) of j fail with one outcome. */
static void fail_items(mp_pool *p, mp_result *j, size_t first, size_t count, int status, int code,
                       const char *msg)
{
    if (count == 0) return;
    if (j->kind == K_IMAP) {
        for (size_t i = 0; i < count; i++)
            imap_deliver(j, first + i, status, code, msg, strlen(msg));
    } else if (j->kind == K_FIXED) {
        if (!j->fstatus) j->fstatus = calloc(j->n, sizeof *j->fstatus);
        for (size_t i = 0; i < count && j->fstatus; i++)
            j->fstatus[first + i] = status;
        note_error(j, first, status, code, msg);
        j->remaining -= count;
    } else {
        size_t ml = strlen(msg);
        char *m = job_blk(j, ml + 1);
        if (m) memcpy(m, msg, ml + 1);
        for (size_t i = 0; i < count; i++)
            j->ri[first + i] = (struct ritem){m ? m : "", m ? (uint32_t)ml : 0, status, code};
        note_error(j, first, status, code, m ? m : "");
        j->remaining -= count;
    }
}

static bool job_complete(const mp_result *j)
{
    if (j->kind == K_IMAP)
        return (j->cancelled || j->imap->ended) && j->next == j->n && j->ntasks == 0;
    return j->remaining == 0 && j->ntasks == 0;
}

static void maybe_finish(mp_pool *p, mp_result *j)
{
    if (!j->finished && job_complete(j)) job_finish(p, j);
}

/* Copies one result record's items into the job. */
static void deliver_record(mp_pool *p, struct ptask *t, const mp__rrec *rec)
{
    mp_result *j = t->job;
    if ((size_t)rec->first + rec->count > t->count) return;
    size_t base = t->first + rec->first;
    const char *q = (const char *)(rec + 1), *end = (const char *)rec + rec->size;
    mp__ritem_hdr h;
    if (j->cancelled) {
        t->delivered += rec->count;
        return;
    }
    if (j->kind == K_SINGLE || j->kind == K_MAP) {
        size_t total = 0;
        const char *s = q;
        for (uint32_t i = 0; i < rec->count; i++) {
            if (end - s < (ptrdiff_t)sizeof h) return;
            memcpy(&h, s, sizeof h);
            s += sizeof h + h.len;
            if (s > end) return;
            total += (h.len + 1 + 15) & ~(size_t)15;
        }
        char *dst = job_blk(j, total);
        for (uint32_t i = 0; i < rec->count; i++) {
            memcpy(&h, q, sizeof h);
            q += sizeof h;
            size_t idx = base + i;
            if (dst) {
                memcpy(dst, q, h.len);
                dst[h.len] = 0;
                j->ri[idx] = (struct ritem){dst, h.len, h.status, h.code};
                note_error(j, idx, h.status, h.code, dst);
                dst += (h.len + 1 + 15) & ~(size_t)15;
            } else {
                j->ri[idx] = (struct ritem){"out of memory", 13, -ENOMEM, 0};
                note_error(j, idx, -ENOMEM, 0, "out of memory");
            }
            q += h.len;
        }
        j->remaining -= rec->count;
    } else if (j->kind == K_FIXED) {
        for (uint32_t i = 0; i < rec->count; i++) {
            if (end - q < (ptrdiff_t)sizeof h) return;
            memcpy(&h, q, sizeof h);
            q += sizeof h;
            if (end - q < (ptrdiff_t)h.len) return;
            size_t idx = base + i;
            if (h.status == 0 && h.len == j->out_size) {
                memcpy(j->out + idx * j->out_size, q, h.len);
            } else {
                char msg[1100];
                int st = h.status, code = h.code;
                if (st == 0) {
                    st = MP_ERANGE;
                    code = 0;
                    snprintf(msg, sizeof msg, "result of %u bytes, expected %zu", h.len,
                             j->out_size);
                } else {
                    snprintf(msg, sizeof msg, "%.*s", (int)h.len, q);
                }
                if (!j->fstatus) j->fstatus = calloc(j->n, sizeof *j->fstatus);
                if (j->fstatus) j->fstatus[idx] = st;
                note_error(j, idx, st, code, msg);
            }
            q += h.len;
        }
        j->remaining -= rec->count;
    } else {
        for (uint32_t i = 0; i < rec->count; i++) {
            if (end - q < (ptrdiff_t)sizeof h) return;
            memcpy(&h, q, sizeof h);
            q += sizeof h;
            if (end - q < (ptrdiff_t)h.len) return;
            imap_deliver(j, base + i, h.status, h.code, q, h.len);
            q += h.len;
        }
    }
    t->delivered += rec->count;
}

/* ---- tasks and queues ----------------------------------------------------------------------- */

static struct ptask *task_alloc(mp_pool *p)
{
    struct ptask *t = p->free_tasks;
    if (t) {
        p->free_tasks = t->next;
        return t;
    }
    return malloc(sizeof *t);
}

static void task_release(mp_pool *p, struct ptask *t)
{
    t->next = p->free_tasks;
    p->free_tasks = t;
}

/* A task left its worker (done, failed or requeued elsewhere): account for it. */
static void task_done(mp_pool *p, struct ptask *t)
{
    mp_result *j = t->job;
    j->ntasks--;
    task_release(p, t);
    maybe_finish(p, j);
}

static struct ptask *fifo_pop(struct pworker *w)
{
    struct ptask *t = w->head;
    if (t) {
        w->head = t->next;
        if (!w->head) w->tail = NULL;
        w->nout--;
    }
    return t;
}

static void queue_job(mp_pool *p, mp_result *j)
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

/* Tasks one worker may have queued: fixed, or as many as fill PIPELINE_WORK_NS at the measured
 * task duration (short tasks: deep, so the worker never idles; long ones: shallow, so no task
 * waits behind a long one while another worker is free). */
static unsigned pipeline_depth(const mp_pool *p)
{
    if (p->pipeline) return p->pipeline;
    if (p->avg_task_ns <= 0) return PIPELINE_MIN * 2;
    int64_t d = PIPELINE_WORK_NS / p->avg_task_ns;
    if (d < PIPELINE_MIN) return PIPELINE_MIN;
    if (d > PIPELINE_MAX) return PIPELINE_MAX;
    return (unsigned)d;
}

/* The worker to send the next task to: alive, not stopping, room in its pipeline, fewest tasks. */
static struct pworker *pick_worker(mp_pool *p)
{
    struct pworker *best = NULL;
    unsigned depth = pipeline_depth(p);
    for (int i = 0; i < p->n; i++) {
        struct pworker *w = &p->w[i];
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
    if (j->kind == K_FIXED) return MP__REC_ALIGN(size + count * j->in_size);
    for (size_t i = 0; i < count; i++) {
        const void *d;
        size_t l;
        job_item(j, first + i, &d, &l);
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
        if (j->kind == K_FIXED) {
            size_t fit = (limit - sizeof(mp__trec)) / j->in_size;
            return want < fit ? want : fit;
        }
        size_t size = sizeof(mp__trec), k = 0;
        for (; k < want; k++) {
            const void *d;
            size_t l;
            job_item(j, j->next + k, &d, &l);
            /* The per-item limit is the documented one (as apply), not what happens to fit. */
            if (l > limit - MP__REC_SLACK || size + 4 + l + 8 > limit) break;
            size += 4 + l;
        }
        if (k > 0) return k;
        char msg[128];
        const void *d;
        size_t l;
        job_item(j, j->next, &d, &l);
        snprintf(msg, sizeof msg, "argument of %zu bytes exceeds the pool's limit of %zu", l,
                 limit - MP__REC_SLACK);
        fail_items(p, j, j->next, 1, MP_ETOOBIG, 0, msg);
        j->next++;
    }
    return 0;
}

static void encode_task(const mp_result *j, const struct ptask *t, void *dst, size_t size)
{
    mp__trec *h = dst;
    h->size = (uint32_t)size;
    h->type = j->kind == K_FIXED ? MP__T_FIXED : MP__T_ITEMS;
    h->flags = 0;
    h->count = t->count;
    h->item_size = j->kind == K_FIXED ? (uint32_t)j->in_size : 0;
    h->id = t->id;
    h->func = j->func;
    char *q = (char *)(h + 1);
    if (j->kind == K_FIXED) {
        memcpy(q, j->in + (size_t)t->first * j->in_size, (size_t)t->count * j->in_size);
        return;
    }
    for (uint32_t i = 0; i < t->count; i++) {
        const void *d;
        size_t l;
        job_item(j, t->first + i, &d, &l);
        uint32_t l32 = (uint32_t)l;
        memcpy(q, &l32, 4);
        q += 4;
        if (l) memcpy(q, d, l);
        q += l;
    }
}

/* Sends t to w. false when w's input is full (t untouched). */
static bool send_task(mp_pool *p, struct pworker *w, struct ptask *t)
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
    if (p->outstanding++ == 0 && p->timeout_ns > 0 && supervising != p) kick_supervisor(p);
    return true;
}

static void dispatch_some(mp_pool *p);

/* Sends queued work to workers with room, then publishes it, one batch per worker. */
static void dispatch(mp_pool *p)
{
    dispatch_some(p);
    for (int i = 0; i < p->n; i++) {
        struct pworker *w = &p->w[i];
        if (w->unflushed && w->tp) p->tp->task_flush(w->tp);
        w->unflushed = false;
    }
}

static void dispatch_some(mp_pool *p)
{
    if (!p->rhead && !p->qhead) return;
    if (p->state == ST_TERMINATED || p->broken) return;
    p->epoch++;
    for (;;) {
        struct ptask *t = p->rhead;
        if (t && t->job->cancelled) {
            p->rhead = t->next;
            if (!p->rhead) p->rtail = NULL;
            task_done(p, t);
            continue;
        }
        if (!t) {
            while (p->qhead && (p->qhead->next >= p->qhead->n || p->qhead->cancelled))
                unqueue_head(p);
            if (!p->qhead) return;
        }
        struct pworker *w = pick_worker(p);
        if (!w) return;
        if (t) {
            struct ptask *rest = t->next;
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
            maybe_finish(p, j);
            continue;
        }
        t = task_alloc(p);
        if (!t) return;
        *t = (struct ptask){NULL, ++p->next_id, j, (uint32_t)j->next, (uint32_t)k, 0};
        if (!send_task(p, w, t)) {
            task_release(p, t);
            w->full_epoch = p->epoch;
            continue;
        }
        j->next += k;
        j->ntasks++;
    }
}

/* Takes every result record the worker posted. */
static void drain_worker(mp_pool *p, struct pworker *w)
{
    const mp__rrec *rec;
    int64_t now = 0;
    while ((rec = p->tp->result_peek(w->tp)) != NULL) {
        struct ptask *t = w->head;
        if (!t || rec->id != t->id) {
            /* A worker that breaks the protocol cannot be trusted with more tasks. */
            mp__factory_kill(&p->fac, w->pid, SIGKILL);
            w->stopping = true;
            return;
        }
        bool last = rec->flags & MP__R_LAST;
        deliver_record(p, t, rec);
        p->tp->result_release(w->tp);
        if (last) {
            /* The task ran from when it was sent or its predecessor finished, whichever is
             * later, until now (as seen by the parent; good enough to size the pipeline). */
            if (!now) now = mp__now_ns();
            int64_t start = t->sent_ns > w->last_done_ns ? t->sent_ns : w->last_done_ns;
            int64_t svc = now > start ? now - start : 0;
            w->last_done_ns = now;
            p->avg_task_ns = p->avg_task_ns ? (p->avg_task_ns * 7 + svc) / 8 : svc + 1;
            fifo_pop(w);
            p->outstanding--;
            task_done(p, t);
        }
    }
}

static void progress(mp_pool *p)
{
    if (p->released) return;
    for (int i = 0; i < p->n; i++)
        if (p->w[i].tp) drain_worker(p, &p->w[i]);
    dispatch(p);
}

/* ---- job completion ---------------------------------------------------------------------------
 */

static void list_remove(mp_pool *p, mp_result *j)
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
    list_remove(p, j);
    p->unfinished--;
    /* Ready first: a waiter that finds no pool may conclude the result is ready. */
    atomic_store_explicit(&j->ready, 1, memory_order_release);
    j->pool = NULL;
    if (p->ts) p->tp->result_kick(p->ts);
    if (p->joining && p->unfinished == 0 && supervising != p) kick_supervisor(p);
    job_unref(j);
}

/* Every item of j is delivered: run its callbacks (on the supervisor) or make it ready now. */
static void job_finish(mp_pool *p, mp_result *j)
{
    j->finished = true;
    if (j->queued) {
        /* Still linked in the job queue: dispatch unlinks it lazily, but a finished job must not
         * outlive the pool's reference while linked. */
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
    if (j->kind != K_IMAP && (j->cb || j->ecb)) {
        j->cbnext = NULL;
        if (p->cbtail)
            p->cbtail->cbnext = j;
        else
            p->cbhead = j;
        p->cbtail = j;
        if (supervising != p) kick_supervisor(p);
        return;
    }
    mark_ready(p, j);
}

static void run_callbacks(mp_pool *p, mp_result *list)
{
    while (list) {
        mp_result *j = list;
        list = j->cbnext;
        mp_result_cb cb = j->status == 0 ? j->cb : j->ecb;
        if (cb) {
            in_callback++;
            cb_result = j;
            cb(j, j->user);
            cb_result = NULL;
            in_callback--;
        }
        pthread_mutex_lock(&p->lock);
        mark_ready(p, j);
        pthread_mutex_unlock(&p->lock);
    }
}

static mp_result *take_callbacks(mp_pool *p)
{
    mp_result *l = p->cbhead;
    p->cbhead = p->cbtail = NULL;
    return l;
}

/* Fails everything not yet sent to a worker. */
static void fail_pending(mp_pool *p, int status, int code, const char *msg)
{
    while (p->rhead) {
        struct ptask *t = p->rhead;
        p->rhead = t->next;
        if (!p->rhead) p->rtail = NULL;
        fail_items(p, t->job, t->first, t->count, status, code, msg);
        task_done(p, t);
    }
    while (p->qhead) {
        mp_result *j = p->qhead;
        unqueue_head(p);
        if (j->next < j->n) fail_items(p, j, j->next, j->n - j->next, status, code, msg);
        j->next = j->n;
        maybe_finish(p, j);
    }
}

/* ---- workers: start, death, timeouts ------------------------------------------------------------
 */

/* Asks the factory for worker i (lock held); SPAWNED answers. */
static int spawn(mp_pool *p, int i)
{
    struct pworker *w = &p->w[i];
    mp__tp_worker *tpw = NULL;
    int fd = -1;
    int r = p->tp->prepare(p->ts, &p->conf, &tpw, &fd);
    if (r == 0) {
        r = mp__factory_spawn(&p->fac, i, p->ncpus > 0 ? p->cpus[i % p->ncpus] : -1, fd, p->efd);
        mp__fd_internal_del(fd);
        close(fd);
        if (r) p->tp->release(tpw);
    }
    if (r < 0) {
        w->respawn_at = mp__now_ns() + 100000000;
        return r;
    }
    *w = (struct pworker){.tp = tpw, .starting = true};
    p->spawning++;
    return 0;
}

static void death_message(char *buf, size_t cap, pid_t pid, int code, int reaped)
{
    if (reaped != 1)
        snprintf(buf, cap,
                 "worker %d ended; its exit status is unknown (the pool's worker factory is gone)",
                 (int)pid);
    else if (code < 0)
        snprintf(buf, cap, "worker %d was killed by signal %d (%s)", (int)pid, -code,
                 strsignal(-code));
    else
        snprintf(buf, cap, "worker %d exited with status %d", (int)pid, code);
}

/* The worker ended (reaped): settle its tasks and free its slot. */
static void handle_death(mp_pool *p, struct pworker *w, int code, int reaped)
{
    drain_worker(p, w);
    int icode = 0;
    char imsg[1024];
    if (p->tp->init_failed(w->tp, &icode, imsg, sizeof imsg) && !p->broken) {
        p->broken = true;
        p->broken_status = MP_ETASKFAILED;
        p->broken_code = icode;
        snprintf(p->broken_msg, sizeof p->broken_msg, "initializer failed: %s", imsg);
    }
    uint64_t running = p->tp->running(w->tp, NULL);
    struct ptask *t = w->head;
    if (t && running == t->id) {
        fifo_pop(w);
        p->outstanding--;
        char msg[512];
        int status = MP_EWORKERDIED;
        if (t->id == w->timed_out_id) {
            status = -ETIMEDOUT;
            snprintf(msg, sizeof msg,
                     "task ran longer than the pool's task_timeout of %g s; worker %d killed",
                     p->timeout_s, (int)w->pid);
            code = 0;
        } else {
            death_message(msg, sizeof msg, w->pid, code, reaped);
            /* Unknown is not "exit status 0" (nor -ECHILD, which reads as a signal number): a
             * code no exit status or signal can give. */
            if (reaped != 1) code = MP_EREAPED;
        }
        fail_items(p, t->job, t->first + t->delivered, t->count - t->delivered, status, code, msg);
        task_done(p, t);
    }
    /* Tasks queued behind it never started: they go first to the next worker. */
    if (w->head) {
        w->tail->next = p->rhead;
        p->rhead = w->head;
        if (!p->rtail) p->rtail = w->tail;
        p->outstanding -= w->nout;
    }
    w->head = w->tail = NULL;
    w->nout = 0;
    p->tp->release(w->tp);
    w->tp = NULL;
    w->alive = false;
    w->respawn_at = 0;
    p->nalive--;
    if (p->broken) fail_pending(p, p->broken_status, p->broken_code, p->broken_msg);
    p->tp->result_kick(p->ts);
}

static bool should_respawn(const mp_pool *p)
{
    if (p->sup_stop || p->broken || p->state == ST_TERMINATED) return false;
    return p->state == ST_RUN || p->unfinished > 0;
}

/* Kills workers whose task ran past the timeout. Returns ms until the next check (-1: none). */
static int check_timeouts(mp_pool *p)
{
    if (p->timeout_ns <= 0 || p->outstanding == 0) return -1;
    int64_t now = mp__now_ns(), next = 50000000;
    for (int i = 0; i < p->n; i++) {
        struct pworker *w = &p->w[i];
        if (!w->alive || w->nout == 0) continue;
        int64_t since;
        uint64_t id = p->tp->running(w->tp, &since);
        if (!id || id == w->timed_out_id) continue;
        int64_t left = since + p->timeout_ns - now;
        if (left <= 0) {
            w->timed_out_id = id;
            mp__factory_kill(&p->fac, w->pid, SIGKILL);
        } else if (left < next) {
            next = left;
        }
    }
    return (int)((next + 999999) / 1000000);
}

/* When closed and joining and everything is done, tell the workers to exit. */
static void maybe_stop_workers(mp_pool *p)
{
    if (p->state != ST_CLOSED || !p->joining || p->unfinished || p->outstanding) return;
    for (int i = 0; i < p->n; i++) {
        struct pworker *w = &p->w[i];
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

/* Does any live worker have a result waiting? */
static bool results_waiting(mp_pool *p)
{
    for (int i = 0; i < p->n; i++)
        if (p->w[i].tp && p->tp->result_peek(p->w[i].tp)) return true;
    return false;
}

static void factory_gone(mp_pool *p);

/* One message of the factory (lock held). */
static void factory_event(mp_pool *p, const mp__fmsg *m)
{
    if (m->op == MP__F_SPAWNED) {
        if (m->index < 0 || m->index >= p->n) return;
        struct pworker *w = &p->w[m->index];
        if (!w->starting) return;
        w->starting = false;
        p->spawning--;
        if (m->pid <= 0) {
            p->tp->release(w->tp);
            w->tp = NULL;
            w->respawn_at = mp__now_ns() + 100000000;
            if (!p->sup_ready && !p->sup_err) p->sup_err = m->pid < 0 ? m->pid : -EAGAIN;
            return;
        }
        w->pid = m->pid;
        w->alive = true;
        p->nalive++;
        if (p->state == ST_TERMINATED) mp__factory_kill(&p->fac, w->pid, SIGKILL);
    } else if (m->op == MP__F_DIED) {
        for (int i = 0; i < p->n; i++) {
            struct pworker *w = &p->w[i];
            if (w->alive && w->pid == m->pid) {
                handle_death(p, w, m->val, 1);
                return;
            }
        }
    }
}

/* Takes every message the factory sent (lock held). false when the factory is gone. */
static bool factory_events(mp_pool *p)
{
    mp__fmsg m;
    int r;
    while ((r = mp__factory_recv(&p->fac, &m, NULL)) == 1)
        factory_event(p, &m);
    if (r == -EPIPE) {
        factory_gone(p);
        return false;
    }
    return true;
}

/* The factory died under us (killed from outside): its workers die with it (PDEATHSIG) and nobody
 * can start new ones, so the pool is broken; every task fails instead of waiting forever. */
static void factory_gone(mp_pool *p)
{
    if (!p->broken && p->state != ST_TERMINATED) {
        p->broken = true;
        p->broken_status = MP_EWORKERDIED;
        p->broken_code = MP_EREAPED;
        snprintf(p->broken_msg, sizeof p->broken_msg,
                 "the pool's worker factory (pid %d) died; no worker can be started",
                 (int)p->fac.pid);
    }
    for (int i = 0; i < p->n; i++) {
        struct pworker *w = &p->w[i];
        if (w->starting) {
            w->starting = false;
            p->spawning--;
            p->tp->release(w->tp);
            w->tp = NULL;
        }
        if (w->alive) handle_death(p, w, 0, 0);
    }
    if (p->broken) fail_pending(p, p->broken_status, p->broken_code, p->broken_msg);
}

static void *supervisor_main(void *arg)
{
    mp_pool *p = arg;
    supervising = p;
    /* The workers' lives are tied to this thread (PDEATHSIG of the factory), which lasts as long
     * as the pool. mp_pool_new waits meanwhile, so its thread is not in the middle of anything. */
    int r = mp__factory_start(&p->fac, p->tp, p->ts, &p->conf);
    pthread_mutex_lock(&p->lock);
    if (r) p->sup_err = r;
    for (int i = 0; i < p->n && !p->sup_err; i++) {
        r = spawn(p, i);
        if (r) p->sup_err = r;
    }
    /* Wait for every first worker, so that mp_pool_new reports a failed fork. */
    while (p->spawning > 0 && !p->sup_err) {
        mp__fmsg m;
        mp__deadline dl = mp__deadline_in(60);
        pthread_mutex_unlock(&p->lock);
        r = mp__factory_recv(&p->fac, &m, &dl);
        pthread_mutex_lock(&p->lock);
        if (r == 1)
            factory_event(p, &m);
        else
            p->sup_err = r < 0 ? -EAGAIN : -ETIMEDOUT;
    }
    p->sup_ready = true;
    pthread_cond_broadcast(&p->cond);
    if (p->sup_err) {
        pthread_mutex_unlock(&p->lock);
        return NULL;
    }
    for (;;) {
        if (p->sup_stop) break;
        progress(p);
        if (!p->fac.gone) factory_events(p);
        int tmo = check_timeouts(p);
        int64_t now = mp__now_ns();
        for (int i = 0; i < p->n; i++) {
            struct pworker *w = &p->w[i];
            if (w->alive || w->starting || !should_respawn(p) || p->fac.gone) continue;
            if (w->respawn_at > now) {
                int ms = (int)((w->respawn_at - now) / 1000000) + 1;
                if (tmo < 0 || ms < tmo) tmo = ms;
                continue;
            }
            spawn(p, i);
        }
        dispatch(p);
        maybe_stop_workers(p);
        mp_result *cbs = take_callbacks(p);
        if (cbs) {
            pthread_mutex_unlock(&p->lock);
            run_callbacks(p, cbs);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        bool want = (p->outstanding > 0 || p->rhead || p->qhead) && atomic_load(&p->drainers) == 0;
        struct pollfd fds[2];
        int nf = 0;
        fds[nf++] = (struct pollfd){.fd = p->efd, .events = POLLIN};
        if (!p->fac.gone) fds[nf++] = (struct pollfd){.fd = p->fac.sock, .events = POLLIN};
        if (want) {
            p->tp->want_notify(p->ts, 1);
            if (results_waiting(p)) {
                p->tp->want_notify(p->ts, 0);
                continue;
            }
        }
        pthread_mutex_unlock(&p->lock);
        r = poll(fds, (nfds_t)nf, tmo);
        pthread_mutex_lock(&p->lock);
        p->tp->want_notify(p->ts, 0);
        if (r > 0 && fds[0].revents) {
            uint64_t v;
            ssize_t n = read(p->efd, &v, sizeof v);
            (void)n;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ---- waiting ------------------------------------------------------------------------------------
 */

/* How long a waiter should spin: only while a busy worker runs on another CPU. */
static int64_t spin_budget(mp_pool *p)
{
    int me = mp__current_cpu();
    for (int i = 0; i < p->n; i++) {
        struct pworker *w = &p->w[i];
        if (!w->alive || w->nout == 0) continue;
        int c = p->tp->cpu(w->tp);
        if (c >= 0 && c != me) return mp__spin_budget(c);
    }
    return 0;
}

typedef bool (*pred_fn)(mp_pool *p, void *arg);

/* Drives progress until pred holds (checked with the lock held) or the deadline passes. */
static int wait_for(mp_pool *p, pred_fn pred, void *arg, const mp__deadline *dl)
{
    pthread_mutex_lock(&p->lock);
    if (p->released) {
        pthread_mutex_unlock(&p->lock);
        return MP_ETERMINATED;
    }
    p->waiters++;
    pthread_mutex_unlock(&p->lock);
    _Atomic uint32_t *seqp = p->tp->result_seq(p->ts);
    mp__tp_shared *ts = p->ts;
    const mp__transport *tp = p->tp;
    atomic_fetch_add(&p->drainers, 1);
    int rc;
    for (;;) {
        uint32_t seq = atomic_load(seqp);
        pthread_mutex_lock(&p->lock);
        progress(p);
        bool ok = pred(p, arg);
        int64_t spin = ok ? 0 : spin_budget(p);
        pthread_mutex_unlock(&p->lock);
        if (ok) {
            rc = 0;
            break;
        }
        if (mp__deadline_left_ns(dl) == 0) {
            rc = -ETIMEDOUT;
            break;
        }
        tp->result_wait(ts, seq, spin, dl);
    }
    /* The supervisor drains only while nobody else does: tell it we stopped. */
    pthread_mutex_lock(&p->lock);
    if (atomic_fetch_sub(&p->drainers, 1) == 1 && p->outstanding) kick_supervisor(p);
    if (--p->waiters == 0) pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

static bool pred_ready(mp_pool *p, void *arg)
{
    (void)p;
    return atomic_load_explicit(&((mp_result *)arg)->ready, memory_order_acquire) != 0;
}

static int result_check(const mp_result *r)
{
    if (!r) return -EINVAL;
    if (r->owner != self_pid()) return MP_ECHILD;
    return 0;
}

static bool is_ready(const mp_result *r)
{
    return atomic_load_explicit(&r->ready, memory_order_acquire) || r == cb_result;
}

int mp_result_wait(mp_result *r, double timeout)
{
    int rc = result_check(r);
    if (rc) return rc;
    if (is_ready(r)) return 0;
    if (r->kind == K_IMAP) return -EINVAL;
    if (in_callback && timeout != 0) return -EDEADLK;
    mp__deadline dl = mp__deadline_in(timeout);
    mp_pool *p = r->home; /* referenced by r: valid whatever mp_pool_free does meanwhile */
    if (!p) return is_ready(r) ? 0 : MP_ETERMINATED;
    int rc2 = wait_for(p, pred_ready, r, &dl);
    if (rc2 == MP_ETERMINATED && is_ready(r)) rc2 = 0; /* the pool ended after settling r */
    return rc2;
}

int mp_result_ready(mp_result *r)
{
    int rc = result_check(r);
    if (rc) return rc;
    if (is_ready(r)) return 1;
    mp_pool *p = r->home;
    if (p && pthread_mutex_trylock(&p->lock) == 0) {
        progress(p); /* nothing once the pool released its workers */
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
    if (r->kind == K_SINGLE && r->ri[0].status == 0) {
        d = r->ri[0].data;
        l = r->ri[0].len;
    } else if (r->kind == K_FIXED) {
        d = r->out;
        l = r->n * r->out_size;
    }
    if (data) *data = d;
    if (len) *len = l;
    return r->status;
}

int mp_result_successful(mp_result *r)
{
    int rc = result_check(r);
    if (rc) return rc;
    if (!is_ready(r)) return MP_ESTATE;
    return r->status == 0;
}

int mp_result_error(mp_result *r, int *code, const char **msg)
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

int mp_result_item(mp_result *r, size_t i, const void **data, size_t *len)
{
    int rc = result_check(r);
    if (rc) return rc;
    if (!is_ready(r)) return MP_ESTATE;
    if (i >= r->n) return MP_ERANGE;
    if (r->kind == K_FIXED) {
        int st = r->fstatus ? r->fstatus[i] : 0;
        if (data) *data = st ? NULL : r->out + i * r->out_size;
        if (len) *len = st ? 0 : r->out_size;
        return st;
    }
    const struct ritem *it = &r->ri[i];
    if (data) *data = it->status ? NULL : it->data;
    if (len) *len = it->status ? 0 : it->len;
    return it->status;
}

int mp_result_item_error(mp_result *r, size_t i, int *code, const char **msg)
{
    int rc = result_check(r);
    if (rc) return rc;
    if (!is_ready(r)) return MP_ESTATE;
    if (i >= r->n) return MP_ERANGE;
    int st, c = 0;
    const char *m = "";
    if (r->kind == K_FIXED) {
        st = r->fstatus ? r->fstatus[i] : 0;
        if (st && i == r->err_index) {
            c = r->code;
            m = r->msg;
        } else if (st) {
            m = mp_strerror(st);
        }
    } else {
        st = r->ri[i].status;
        if (st) {
            c = r->ri[i].code;
            m = r->ri[i].data;
        }
    }
    if (code) *code = c;
    if (msg) *msg = m;
    return st;
}

void mp_result_free(mp_result **rp)
{
    if (!rp || !*rp) return;
    mp_result *r = *rp;
    *rp = NULL;
    if (r->owner != self_pid() || r->kind == K_IMAP) return;
    job_unref(r);
}

/* ---- submitting ------------------------------------------------------------------------------ */

static int submit_state(const mp_pool *p)
{
    /* Closed stays closed after join (which releases the workers too), as the header says. */
    if (p->state == ST_CLOSED) return MP_ECLOSED;
    if (p->state == ST_TERMINATED || p->released) return MP_ETERMINATED;
    if (p->broken) return p->broken_status;
    return 0;
}

/* Hands j to the pool (lock held). */
static int submit(mp_pool *p, mp_result *j)
{
    int rc = submit_state(p);
    if (rc) return rc;
    j->pool = p;
    j->home = p;
    atomic_fetch_add(&p->refs, 1);
    j->listed = true;
    j->aprev = NULL;
    j->anext = p->all;
    if (p->all) p->all->aprev = j;
    p->all = j;
    p->unfinished++;
    j->remaining = j->n;
    if (j->kind != K_IMAP && j->n == 0) {
        job_finish(p, j);
        return 0;
    }
    queue_job(p, j);
    dispatch(p);
    return 0;
}

/* The id of a function the pool's workers know. A function registered after the pool copied the
 * registry into its workers is refused here, at submission, rather than failing in a worker. */
static int lookup(const mp_pool *p, const char *func, uint64_t *id)
{
    mp_func *f;
    int rc = mp_func_find(func, &f);
    if (rc) return rc;
    if (p && mp__func_seq(f) > p->func_gen) {
        mp__pool_set_error("function \"%s\" was registered after the pool was created: its "
                           "workers do not have it",
                           func);
        return MP_ENOFUNC;
    }
    *id = mp_func_id(f);
    return 0;
}

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
    int rc = submit(p, j);
    pthread_mutex_unlock(&p->lock);
    if (rc) {
        job_free(j);
        return rc;
    }
    *out = j;
    return 0;
}

int mp_pool_apply_async(mp_pool *p, const char *func, const void *arg, size_t len,
                        const mp_task_options *opts, mp_result **out)
{
    int rc = check_pool(p);
    if (rc) return rc;
    if (!func || !out || (!arg && len > 0)) return -EINVAL;
    uint64_t id;
    if ((rc = lookup(p, func, &id))) return rc;
    if (len > p->conf.max_message - MP__REC_SLACK) return MP_ETOOBIG;
    mp_result *j = job_new(K_SINGLE, len);
    if (!j) return -ENOMEM;
    if (len) memcpy(j + 1, arg, len);
    j->own = (mp_buf){j + 1, len};
    j->items = &j->own;
    j->n = 1;
    j->chunksize = 1;
    j->ri = &j->one;
    j->func = id;
    set_callbacks(j, opts);
    return submit_new(p, j, out);
}

static int blocking_check(void)
{
    return in_callback ? -EDEADLK : 0;
}

/* The checks every blocking call makes before it submits: a usable pool, an out pointer (cleared
 * first, so it is NULL on every error), and not the supervisor thread (a callback), which would
 * wait for itself. */
static int blocking_begin(mp_pool *p, mp_result **out)
{
    int rc = check_pool(p);
    if (rc) return rc;
    if (!out) return -EINVAL;
    *out = NULL;
    return blocking_check();
}

int mp_pool_apply(mp_pool *p, const char *func, const void *arg, size_t len, double timeout,
                  mp_result **out)
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

static int map_common(mp_pool *p, const char *func, const mp_buf *items, size_t n,
                      const mp_task_options *opts, void *owned, mp_result **out)
{
    int rc = check_pool(p);
    if (rc) {
        free(owned);
        return rc;
    }
    if (!func || !out || (!items && n > 0) || n >= UINT32_MAX) {
        free(owned);
        return -EINVAL;
    }
    uint64_t id;
    if ((rc = lookup(p, func, &id))) {
        free(owned);
        return rc;
    }
    /* Items are borrowed, so their sizes are known now: refuse as apply does, before anything
     * runs (imap, whose items come later, fails such an item with MP_ETOOBIG instead). */
    for (size_t i = 0; i < n; i++) {
        if (!items[i].data && items[i].len > 0) {
            free(owned);
            return -EINVAL;
        }
        if (items[i].len > p->conf.max_message - MP__REC_SLACK) {
            mp__pool_set_error("map item %zu has %zu bytes, over the pool's limit of %zu", i,
                               items[i].len, p->conf.max_message - MP__REC_SLACK);
            free(owned);
            return MP_ETOOBIG;
        }
    }
    mp_result *j = job_new(K_MAP, 0);
    if (!j) {
        free(owned);
        return -ENOMEM;
    }
    j->owned_input = owned;
    j->ri = n ? malloc(n * sizeof *j->ri) : &j->one;
    if (!j->ri) {
        job_free(j);
        return -ENOMEM;
    }
    j->items = items;
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

/* Waits for a result a blocking call submitted; returns its outcome. */
static int wait_submitted(mp_result *r, double timeout)
{
    int rc = mp_result_wait(r, timeout);
    if (rc) return rc;
    return r->status;
}

int mp_pool_map(mp_pool *p, const char *func, const mp_buf *items, size_t n,
                const mp_task_options *opts, double timeout, mp_result **out)
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
    int rc = check_pool(p);
    if (rc) return rc;
    if (!func || !out_result || in_size == 0 || ((!in || !out) && n > 0) || n >= UINT32_MAX)
        return -EINVAL;
    uint64_t id;
    if ((rc = lookup(p, func, &id))) return rc;
    if (in_size > p->conf.max_message - MP__REC_SLACK ||
        out_size > p->conf.max_message - MP__REC_SLACK)
        return MP_ETOOBIG;
    mp_result *j = job_new(K_FIXED, 0);
    if (!j) return -ENOMEM;
    j->in = in;
    j->in_size = in_size;
    j->out = out;
    j->out_size = out_size;
    j->n = n;
    j->func = id;
    j->chunksize = auto_chunksize(p, n, opts);
    set_callbacks(j, opts);
    return submit_new(p, j, out_result);
}

int mp_pool_map_fixed(mp_pool *p, const char *func, const void *in, size_t n, size_t in_size,
                      void *out, size_t out_size, const mp_task_options *opts, double timeout,
                      mp_result **out_result)
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
    int rc = check_pool(p);
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
                    const mp_task_options *opts, double timeout, mp_result **out)
{
    int rc = blocking_begin(p, out);
    if (rc) return rc;
    if ((rc = mp_pool_starmap_async(p, func, items, n, opts, out))) return rc;
    return wait_submitted(*out, timeout);
}

/* ---- imap ------------------------------------------------------------------------------------ */

static int imap_new(mp_pool *p, const char *func, mp_iter_fn next, void *user,
                    const mp_task_options *opts, bool unordered, mp_imap **out)
{
    int rc = check_pool(p);
    if (rc) return rc;
    if (!func || !next || !out) return -EINVAL;
    uint64_t id;
    if ((rc = lookup(p, func, &id))) return rc;
    struct mp_imap *it = calloc(1, sizeof *it);
    mp_result *j = job_new(K_IMAP, 0);
    size_t cs = opts && opts->chunksize ? opts->chunksize : 1;
    /* Enough items in flight to keep every worker busy, few enough to bound memory. */
    size_t W = opts && opts->window ? opts->window : (size_t)DEFAULT_PIPELINE * (size_t)p->n * cs;
    if (!(opts && opts->window) && W < 1024) W = 1024;
    if (W < cs) W = cs;
    if (it) it->slots = calloc(W, sizeof *it->slots);
    if (it && unordered) it->doneq = calloc(W, sizeof *it->doneq);
    if (!it || !j || !it->slots || (unordered && !it->doneq)) {
        if (it) free(it->slots), free(it->doneq);
        free(it);
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
    it->W = W;
    j->imap = it;
    j->func = id;
    j->chunksize = cs;
    pthread_mutex_lock(&p->lock);
    rc = submit(p, j);
    pthread_mutex_unlock(&p->lock);
    if (rc) {
        free(it->slots);
        free(it->doneq);
        free(it);
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
static void imap_pull(struct mp_imap *it)
{
    mp_result *j = it->job;
    size_t start = it->pulled;
    /* Pull whole chunks only, so that every task record carries chunksize items. */
    size_t room = it->lo + it->W - it->pulled;
    if (room < j->chunksize) return;
    size_t until = it->pulled + room / j->chunksize * j->chunksize;
    while (!it->ended && it->pulled < until) {
        const void *d = NULL;
        size_t l = 0;
        int r = it->next(it->user, &d, &l);
        if (r <= 0) {
            it->ended = true;
            it->iter_err = r;
            break;
        }
        struct islot *s = &it->slots[it->pulled % it->W];
        if (buf_fit(&s->in, &s->in_cap, s->in_small, l) != 0 || (!d && l)) {
            it->ended = true;
            it->iter_err = (!d && l) ? -EINVAL : -ENOMEM;
            break;
        }
        if (l) memcpy(s->in, d, l);
        s->in_len = l;
        s->state = SLOT_PENDING;
        it->pulled++;
    }
    if (it->pulled == start && !it->ended) return;
    mp_pool *p = j->home;
    pthread_mutex_lock(&p->lock);
    if (!j->pool) { /* detached by terminate */
        for (size_t i = start; i < it->pulled; i++)
            imap_deliver(j, i, MP_ETERMINATED, 0, "pool was terminated", 19);
        j->n = j->next = it->pulled;
        pthread_mutex_unlock(&p->lock);
        return;
    }
    j->n = it->pulled;
    int st = submit_state(p);
    if (st == MP_ECLOSED) st = p->released ? MP_ETERMINATED : 0; /* started before close: goes on */
    if (st) {
        const char *m = p->broken ? p->broken_msg : "pool was terminated";
        fail_items(p, j, j->next, j->n - j->next, st, p->broken_code, m);
        j->next = j->n;
    } else {
        queue_job(p, j);
    }
    maybe_finish(p, j);
    dispatch(p);
    pthread_mutex_unlock(&p->lock);
}

static bool imap_have(struct mp_imap *it)
{
    if (it->unordered) return it->dq_head != it->dq_tail;
    return it->lo < it->pulled && it->slots[it->lo % it->W].state == SLOT_DONE;
}

static bool pred_imap(mp_pool *p, void *arg)
{
    (void)p;
    return imap_have(arg);
}

/* Takes the next available result (lock held, or no pool). */
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
    if (j->owner != self_pid()) return MP_ECHILD;
    mp__deadline dl = mp__deadline_in(timeout);
    mp_pool *p = j->home; /* referenced by the imap's job: valid until mp_imap_free */
    for (;;) {
        imap_pull(it);
        pthread_mutex_lock(&p->lock);
        bool attached = j->pool != NULL;
        if (attached) progress(p);
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
        if (in_callback && timeout != 0) return -EDEADLK;
        int rc = wait_for(p, pred_imap, it, &dl);
        if (rc == MP_ETERMINATED) continue; /* the pool is gone: take what it settled */
        if (rc) return rc;
    }
}

int mp_imap_error(mp_imap *it, int *code, const char **msg)
{
    if (!it) return -EINVAL;
    if (it->job->owner != self_pid()) return MP_ECHILD;
    if (code) *code = it->last_status ? it->last_code : 0;
    if (msg) *msg = it->last_status && it->last_msg ? it->last_msg : "";
    return it->last_status;
}

void mp_imap_free(mp_imap **itp)
{
    if (!itp || !*itp) return;
    struct mp_imap *it = *itp;
    *itp = NULL;
    mp_result *j = it->job;
    if (j->owner != self_pid()) return;
    mp_pool *p = j->home;
    pthread_mutex_lock(&p->lock);
    j->cancelled = true;
    j->next = j->n;
    if (j->pool) maybe_finish(p, j);
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < it->W; i++) {
        struct islot *s = &it->slots[i];
        if (s->in != s->in_small) free(s->in);
        if (s->out != s->out_small) free(s->out);
    }
    free(it->slots);
    free(it->doneq);
    free(it);
    job_unref(j);
}

/* ---- creating and ending pools -------------------------------------------------------------- */

/* Lock held. Waits until no thread is inside wait_for (they all finish once everything is
 * ready), then unmaps and closes. */
static void pool_release_resources(mp_pool *p)
{
    if (p->released) return;
    if (p->ts) p->tp->result_kick(p->ts);
    while (p->waiters > 0)
        pthread_cond_wait(&p->cond, &p->lock);
    p->released = true;
    if (p->ts) p->tp->shared_free(p->ts);
    p->ts = NULL;
    if (p->efd >= 0) {
        mp__fd_internal_del(p->efd);
        close(p->efd);
    }
    p->efd = -1;
}

static void pool_free_struct(mp_pool *p);

static void pool_unref(mp_pool *p)
{
    if (atomic_fetch_sub(&p->refs, 1) == 1) pool_free_struct(p);
}

static void pool_free_struct(mp_pool *p)
{
    while (p->free_tasks) {
        struct ptask *t = p->free_tasks;
        p->free_tasks = t->next;
        free(t);
    }
    free(p->w);
    free(p->initarg);
    free(p->cpus);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->stop_lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}

/* Lock held, supervisor stopped: has the factory SIGKILL and reap every worker left and exit,
 * keeping the results the workers posted and failing their other tasks with MP_ETERMINATED. */
/* A worker ended by terminate: keep what it posted, fail the rest of its tasks. */
static void settle_terminated(mp_pool *p, struct pworker *w)
{
    drain_worker(p, w);
    struct ptask *t;
    while ((t = fifo_pop(w)) != NULL) {
        p->outstanding--;
        fail_items(p, t->job, t->first + t->delivered, t->count - t->delivered, MP_ETERMINATED, 0,
                   "pool was terminated");
        task_done(p, t);
    }
}

static void kill_and_reap_all(mp_pool *p)
{
    if (p->fac.sock >= 0) {
        mp__factory_quit(&p->fac);
        for (;;) {
            mp__fmsg m;
            mp__deadline forever = mp__deadline_in(MP_FOREVER);
            pthread_mutex_unlock(&p->lock);
            int r = mp__factory_recv(&p->fac, &m, &forever);
            pthread_mutex_lock(&p->lock);
            if (r != 1 || m.op == MP__F_BYE) break;
            if (m.op == MP__F_DIED) {
                for (int i = 0; i < p->n; i++) {
                    struct pworker *w = &p->w[i];
                    if (w->alive && w->pid == m.pid) settle_terminated(p, w);
                }
            }
            factory_event(p, &m);
        }
        mp__factory_end(&p->fac);
    }
    /* Anything the factory did not report (it was killed): gone with it, status unknown. */
    for (int i = 0; i < p->n; i++) {
        struct pworker *w = &p->w[i];
        if (w->starting) {
            w->starting = false;
            p->spawning--;
            p->tp->release(w->tp);
            w->tp = NULL;
        }
        if (w->alive) {
            settle_terminated(p, w);
            handle_death(p, w, 0, 0);
        }
    }
}

/* Kills and reaps every worker, fails everything unfinished, stops the supervisor. */
static void terminate_now(mp_pool *p)
{
    pthread_mutex_lock(&p->stop_lock);
    pthread_mutex_lock(&p->lock);
    if (p->joined) {
        p->state = ST_TERMINATED;
        pthread_mutex_unlock(&p->lock);
        pthread_mutex_unlock(&p->stop_lock);
        return;
    }
    p->state = ST_TERMINATED;
    p->sup_stop = true;
    for (int i = 0; i < p->n; i++)
        if (p->w[i].alive) mp__factory_kill(&p->fac, p->w[i].pid, SIGKILL);
    pthread_mutex_unlock(&p->lock);
    kick_supervisor(p);
    if (p->sup_running) {
        pthread_join(p->sup, NULL);
        p->sup_running = false;
    }
    pthread_mutex_lock(&p->lock);
    supervising = p; /* callbacks queued from here run on this thread */
    kill_and_reap_all(p);
    fail_pending(p, MP_ETERMINATED, 0, "pool was terminated");
    mp_result *cbs = take_callbacks(p);
    pthread_mutex_unlock(&p->lock);
    run_callbacks(p, cbs);
    pthread_mutex_lock(&p->lock);
    supervising = NULL;
    /* What is left are imaps: detach them, they report MP_ETERMINATED from now on. */
    while (p->all) {
        mp_result *j = p->all;
        list_remove(p, j);
        j->pool = NULL;
        p->unfinished--;
        job_unref(j);
    }
    pool_release_resources(p);
    p->joined = true;
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->stop_lock);
}

int mp_pool_new(mp_pool **out, const mp_pool_options *opts)
{
    if (!out) return -EINVAL;
    mp_pool_options o = MP_POOL_OPTIONS_INIT;
    if (opts) o = *opts;
    if (o.processes == 0 || o.processes < -1 || o.processes > MAX_PROCESSES) return -EINVAL;
    if (o.ncpus < 0 || (o.ncpus > 0 && !o.cpus)) return -EINVAL;
    if (o.max_message == 0) o.max_message = DEFAULT_MAX_MESSAGE;
    if (o.max_message < 4096 || o.max_message > (256u << 20)) return -EINVAL;
    if (o.initarg_len && !o.initarg) return -EINVAL;
    int crc = mp__func_clash();
    if (crc) return crc;
    uint64_t init_id = 0;
    if (o.initializer) {
        int rc = lookup(NULL, o.initializer, &init_id);
        if (rc) return rc;
        if (o.initarg_len > o.max_message - MP__REC_SLACK) return MP_ETOOBIG;
    }
    mp_pool *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    p->owner = self_pid();
    atomic_init(&p->refs, 1);
    p->func_gen = mp__func_gen(); /* before any worker (or their factory) is forked */
    p->efd = -1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->stop_lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->n = o.processes < 0 ? mp__cpu_count() : o.processes;
    p->pipeline = o.pipeline;
    p->timeout_s = o.task_timeout;
    p->timeout_ns = o.task_timeout > 0 ? (int64_t)(o.task_timeout * 1e9) : 0;
    if (p->timeout_ns == 0 && o.task_timeout > 0) p->timeout_ns = 1;
    p->tp = &mp__pool_shm_transport;
    p->w = calloc((size_t)p->n, sizeof *p->w);
    if (o.initarg_len) p->initarg = malloc(o.initarg_len);
    if (o.ncpus) p->cpus = malloc((size_t)o.ncpus * sizeof *p->cpus);
    if (!p->w || (o.initarg_len && !p->initarg) || (o.ncpus && !p->cpus)) {
        pool_free_struct(p);
        return -ENOMEM;
    }
    if (o.initarg_len) memcpy(p->initarg, o.initarg, o.initarg_len);
    if (o.ncpus) memcpy(p->cpus, o.cpus, (size_t)o.ncpus * sizeof *p->cpus);
    p->ncpus = o.ncpus;
    p->fac.sock = -1;
    p->conf = (mp__worker_conf){o.max_message, o.maxtasksperchild, init_id,
                                p->initarg,    o.initarg_len,      -1};
    int rc;
    p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->efd < 0) {
        rc = -errno;
        pool_free_struct(p);
        return rc;
    }
    mp__fd_internal_add(p->efd); /* workers get it through the factory, nobody else */
    if ((rc = p->tp->shared_new(&p->ts, p->efd)) != 0) {
        mp__fd_internal_del(p->efd);
        close(p->efd);
        pool_free_struct(p);
        return rc;
    }
    /* The supervisor keeps every signal blocked: they go to the program's own threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = -pthread_create(&p->sup, NULL, supervisor_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        pool_release_resources(p);
        pool_free_struct(p);
        return rc;
    }
    p->sup_running = true;
    pthread_mutex_lock(&p->lock);
    while (!p->sup_ready)
        pthread_cond_wait(&p->cond, &p->lock);
    rc = p->sup_err;
    pthread_mutex_unlock(&p->lock);
    if (rc) {
        terminate_now(p);
        pool_free_struct(p);
        return rc;
    }
    *out = p;
    return 0;
}

int mp_pool_processes(const mp_pool *p)
{
    return p ? p->n : -EINVAL;
}

int mp_pool_worker_pids(mp_pool *p, pid_t *pids, int max)
{
    int rc = check_pool(p);
    if (rc) return rc;
    if (!pids && max > 0) return -EINVAL;
    pthread_mutex_lock(&p->lock);
    int k = 0;
    for (int i = 0; i < p->n; i++) {
        if (!p->w[i].alive) continue;
        if (k < max) pids[k] = p->w[i].pid;
        k++;
    }
    pthread_mutex_unlock(&p->lock);
    return k;
}

int mp_pool_close(mp_pool *p)
{
    int rc = check_pool(p);
    if (rc) return rc;
    pthread_mutex_lock(&p->lock);
    if (p->state == ST_TERMINATED)
        rc = MP_ETERMINATED;
    else
        p->state = ST_CLOSED;
    pthread_mutex_unlock(&p->lock);
    return rc;
}

static bool pred_joined(mp_pool *p, void *arg)
{
    (void)arg;
    return p->unfinished == 0 && p->nalive == 0 && p->spawning == 0;
}

int mp_pool_join(mp_pool *p, double timeout)
{
    int rc = check_pool(p);
    if (rc) return rc;
    if (in_callback) return -EDEADLK;
    pthread_mutex_lock(&p->lock);
    if (p->joined) {
        pthread_mutex_unlock(&p->lock);
        return 0;
    }
    if (p->state == ST_RUN) {
        pthread_mutex_unlock(&p->lock);
        return MP_ESTATE;
    }
    p->joining = true;
    pthread_mutex_unlock(&p->lock);
    kick_supervisor(p);
    mp__deadline dl = mp__deadline_in(timeout);
    rc = wait_for(p, pred_joined, NULL, &dl);
    if (rc == MP_ETERMINATED) return 0; /* terminated meanwhile: nothing left to join */
    if (rc) return rc;
    pthread_mutex_lock(&p->stop_lock);
    pthread_mutex_lock(&p->lock);
    if (p->joined) { /* another thread finished the join, or terminated */
        pthread_mutex_unlock(&p->lock);
        pthread_mutex_unlock(&p->stop_lock);
        return 0;
    }
    p->sup_stop = true;
    pthread_mutex_unlock(&p->lock);
    kick_supervisor(p);
    if (p->sup_running) {
        pthread_join(p->sup, NULL);
        p->sup_running = false;
    }
    pthread_mutex_lock(&p->lock);
    kill_and_reap_all(p); /* none expected: belt and braces against a late respawn */
    pool_release_resources(p);
    p->joined = true;
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->stop_lock);
    return 0;
}

int mp_pool_terminate(mp_pool *p)
{
    int rc = check_pool(p);
    if (rc) return rc;
    if (in_callback) return -EDEADLK;
    terminate_now(p);
    return 0;
}

int mp_pool_free(mp_pool **pp)
{
    if (!pp || !*pp) return 0;
    mp_pool *p = *pp;
    if (p->owner != self_pid()) return MP_ECHILD;
    if (in_callback) return -EDEADLK;
    if (!p->joined) terminate_now(p);
    *pp = NULL;
    /* Results and imaps may still be read (or waited on, by other threads): they hold references
     * on the structure, so it goes with the last of them. */
    pool_unref(p);
    return 0;
}
