/* SPDX-License-Identifier: MIT */
/* pool_shm.c - the pool's shared-memory transport: per-worker rings, futex wake-ups, spinning.
 *
 * Each worker has one mapping (a memfd the parent creates and the worker factory hands to the new
 * worker with its spawn request; pool_factory.c says why workers are not forked by the parent
 * itself) holding two single-producer/single-consumer byte rings: tasks (parent -> worker) and
 * results (worker -> parent). Positions are free-running 32-bit byte counters, so each is also a
 * futex word. A record never wraps: when it does not fit before the end, a PAD record fills the
 * rest.
 *
 * Wake-ups cost a syscall only when the peer sleeps: a consumer announces it sleeps in a flag,
 * re-checks, then futex-waits; a producer publishes (seq_cst) and reads the flag (seq_cst). Before
 * sleeping a consumer spins for mp__spin_budget(peer's CPU): long enough to beat a cross-CPU
 * wake-up, nothing when the peer shares its CPU.
 *
 * Parent threads never wait on a single worker: they wait on one pool-wide counter that every
 * worker bumps after posting a result (and the parent bumps when it completes something itself).
 * The supervisor, which also watches pidfds, cannot sleep on a futex; it asks for an eventfd write
 * (want_notify) only while nobody else is draining results.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomics.h"
#include "mproc/error.h"
#include "platform/platform.h"
#include "pool_transport.h"
#include "process_internal.h"

#define LINE 64

struct mp__tp_shared {
    _Atomic uint32_t res_seq;
    char pad0[LINE - 4];
    _Atomic uint32_t res_sleepers;
    char pad1[LINE - 4];
    _Atomic uint32_t want_notify;
    int efd;
    /* The parent's memfd behind this mapping until a factory launch takes it (shared_export),
     * else -1. A number of the parent's fd table: meaningless in the factory and the workers. */
    int memfd;
    char pad2[LINE - 12];
};

struct ring {
    _Atomic uint32_t head; /* consumer's position */
    char pad0[LINE - 4];
    _Atomic uint32_t tail; /* producer's position */
    char pad1[LINE - 4];
    _Atomic uint32_t cons_sleeping;
    _Atomic uint32_t prod_sleeping;
    char pad2[LINE - 8];
};

struct wshm {
    struct ring task;
    struct ring res;
    _Atomic int32_t worker_cpu;
    _Atomic int32_t parent_cpu;
    char pad0[LINE - 8];
    _Atomic uint64_t running_id;
    _Atomic int64_t running_since;
    char pad1[LINE - 16];
    _Atomic uint32_t init_failed;
    int32_t init_code;
    char init_msg[1024];
};

#define HDR_SIZE 4096u
#define RING_HOT (64u * 1024)
_Static_assert(sizeof(struct wshm) <= HDR_SIZE, "worker header fits one page");

struct mp__tp_worker {
    struct wshm *shm;
    size_t size;
    char *tbuf, *rbuf;
    uint32_t cap;
    uint32_t pending_tail; /* producer-local: where the reserved record starts */
    uint32_t ptail;        /* parent: end of the task records written but not yet published */
    mp__tp_shared *s;
    int efd;   /* worker: its copy of the pool's eventfd */
    bool spin; /* worker: mp_pool_options.spin (the parent's side keeps its own in the pool) */
};

/* ---- pool-wide state ---------------------------------------------------------------------- */

/* The pool-wide state is a memfd, not anonymous memory, so that it can travel to a factory that
 * is not a fork of the pool's process (spawn, forkserver). Under every method it is MADV_DONTFORK
 * in the pool's process: only the factory gets it (shm_fork_begin/end lift the flag around its
 * fork; a launched factory maps the memfd itself), and through the factory its workers. */
static int shm_shared_new(mp__tp_shared **out, int efd)
{
    int fd = mp__memfd_new("mproc-pool", sizeof(mp__tp_shared));
    if (fd < 0) return fd;
    void *p = mmap(NULL, sizeof(mp__tp_shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int e = -errno;
        close(fd);
        return e;
    }
    mp__fd_internal_add(fd); /* no child the program forks inherits it */
    mp__tp_shared *s = p;
    s->efd = efd;
    s->memfd = fd;
    madvise(s, sizeof *s, MADV_DONTFORK);
    *out = s;
    return 0;
}

static void shm_shared_free(mp__tp_shared *s)
{
    if (!s) return;
    if (s->memfd >= 0) {
        mp__fd_internal_del(s->memfd);
        close(s->memfd);
    }
    mp__shm_unmap(s, sizeof *s);
}

static int shm_shared_export(mp__tp_shared *s, int *fd)
{
    if (s->memfd < 0) return -EBADF;
    *fd = s->memfd;
    s->memfd = -1;
    return 0;
}

/* In a launched factory: the mapping stays forkable here, since every worker is a fork of the
 * factory and needs it (each worker marks it MADV_DONTFORK for its own children). */
static int shm_shared_import(int fd, mp__tp_shared **out)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || (size_t)st.st_size < sizeof(mp__tp_shared)) {
        close(fd);
        return MP_ECORRUPT;
    }
    void *p = mmap(NULL, sizeof(mp__tp_shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = p == MAP_FAILED ? -errno : 0;
    close(fd);
    if (e) return e;
    *out = p;
    return 0;
}

static _Atomic uint32_t *shm_result_seq(mp__tp_shared *s)
{
    return &s->res_seq;
}

static void shm_result_kick(mp__tp_shared *s)
{
    mp__fetch_add(&s->res_seq, 1);
    if (mp__load(&s->res_sleepers)) mp__futex_wake(&s->res_seq, INT32_MAX);
}

static void shm_result_wait(mp__tp_shared *s, uint32_t seq, int64_t spin_ns, const mp__deadline *dl)
{
    if (spin_ns > 0 && mp__spin_while_equal(&s->res_seq, seq, spin_ns)) return;
    mp__fetch_add(&s->res_sleepers, 1);
    if (mp__load(&s->res_seq) == seq) mp__futex_wait(&s->res_seq, seq, dl);
    mp__fetch_sub(&s->res_sleepers, 1);
}

static void shm_want_notify(mp__tp_shared *s, int on)
{
    mp__store(&s->want_notify, on ? 1u : 0u);
}

/* ---- ring primitives ---------------------------------------------------------------------- */

/* Space for `size` bytes at the producer's end; writes a PAD first when the record would cross
 * the end. *start gets the position the record starts at. NULL when full. */
static void *ring_reserve_at(struct ring *r, uint32_t tail, char *buf, uint32_t cap, uint32_t size,
                             uint32_t *start)
{
    uint32_t head = mp__load_acq(&r->head);
    uint32_t used = tail - head, off = tail & (cap - 1), to_end = cap - off;
    /* Wrap early when the start of the ring is free: records then cycle through the first
     * RING_HOT bytes only, so a ring touches (and the parent's RSS counts) little more than
     * what is in flight, not its whole capacity. */
    uint32_t head_off = head & (cap - 1);
    bool early =
        off >= RING_HOT && head_off <= off && head_off >= size && used + to_end + size <= cap;
    if (to_end < size || early) {
        if (used + to_end + size > cap) return NULL;
        mp__trec *pad = (mp__trec *)(void *)(buf + off);
        pad->size = to_end;
        pad->type = MP__T_PAD;
        *start = tail + to_end;
        return buf;
    }
    if (used + size > cap) return NULL;
    *start = tail;
    return buf + off;
}

static void *ring_reserve(struct ring *r, char *buf, uint32_t cap, uint32_t size, uint32_t *start)
{
    return ring_reserve_at(r, mp__load_relaxed(&r->tail), buf, cap, size, start);
}

/* The consumer's next record (PADs skipped), or NULL when empty. */
static const void *ring_peek(struct ring *r, const char *buf, uint32_t cap)
{
    uint32_t head = mp__load_relaxed(&r->head);
    for (;;) {
        uint32_t tail = mp__load_acq(&r->tail);
        if (head == tail) return NULL;
        const mp__trec *rec = (const void *)(buf + (head & (cap - 1)));
        if (rec->type != MP__T_PAD) return rec;
        head += rec->size;
        mp__store_rel(&r->head, head);
    }
}

static void ring_release(struct ring *r, uint32_t size)
{
    uint32_t head = mp__load_relaxed(&r->head);
    mp__store(&r->head, head + size);
    if (mp__load(&r->prod_sleeping)) {
        mp__store(&r->prod_sleeping, 0);
        mp__futex_wake(&r->head, 1);
    }
}

/* ---- parent side -------------------------------------------------------------------------- */

/* The parent writes several task records, then publishes them at once (task_flush): one
 * cache-line transfer and at most one wake-up per batch. */
static void *shm_task_reserve(mp__tp_worker *w, uint32_t size)
{
    return ring_reserve_at(&w->shm->task, w->ptail, w->tbuf, w->cap, size, &w->pending_tail);
}

static void shm_task_commit(mp__tp_worker *w, uint32_t size)
{
    w->ptail = w->pending_tail + size;
}

static void shm_task_flush(mp__tp_worker *w)
{
    struct ring *r = &w->shm->task;
    if (mp__load_relaxed(&r->tail) == w->ptail) return;
    mp__store_relaxed(&w->shm->parent_cpu, mp__current_cpu());
    mp__store(&r->tail, w->ptail);
    /* Clearing the flag here spares the next flushes a syscall: the worker sets it again
     * before every sleep. */
    if (mp__load(&r->cons_sleeping) && mp__exchange(&r->cons_sleeping, 0))
        mp__futex_wake(&r->tail, 1);
}

static const mp__rrec *shm_result_peek(mp__tp_worker *w)
{
    return ring_peek(&w->shm->res, w->rbuf, w->cap);
}

static void shm_result_release(mp__tp_worker *w)
{
    const mp__rrec *rec = ring_peek(&w->shm->res, w->rbuf, w->cap);
    if (rec) ring_release(&w->shm->res, rec->size);
}

static uint64_t shm_running(mp__tp_worker *w, int64_t *since)
{
    uint64_t id = mp__load_acq(&w->shm->running_id);
    if (since) *since = mp__load_relaxed(&w->shm->running_since);
    return id;
}

static int shm_cpu(mp__tp_worker *w)
{
    return mp__load_relaxed(&w->shm->worker_cpu);
}

static bool shm_init_failed(mp__tp_worker *w, int *code, char *msg, size_t cap)
{
    if (!mp__load(&w->shm->init_failed)) return false;
    *code = w->shm->init_code;
    if (cap) {
        size_t n = strnlen(w->shm->init_msg, sizeof w->shm->init_msg - 1);
        if (n >= cap) n = cap - 1;
        memcpy(msg, w->shm->init_msg, n);
        msg[n] = 0;
    }
    return true;
}

static void shm_release(mp__tp_worker *w)
{
    if (!w) return;
    mp__shm_unmap(w->shm, w->size);
    free(w);
}

/* ---- worker side -------------------------------------------------------------------------- */

static void notify_parent(mp__tp_worker *w)
{
    mp__tp_shared *s = w->s;
    mp__fetch_add(&s->res_seq, 1);
    if (mp__load(&s->res_sleepers)) mp__futex_wake(&s->res_seq, INT32_MAX);
    if (mp__load(&s->want_notify) && mp__exchange(&s->want_notify, 0)) {
        uint64_t one = 1;
        ssize_t n = write(w->efd, &one, sizeof one);
        (void)n;
    }
}

/* Posts one result record; waits (asking the supervisor to drain) while the ring is full. */
static int worker_emit(void *ctx, const void *rec, size_t size)
{
    mp__tp_worker *w = ctx;
    struct ring *r = &w->shm->res;
    uint32_t start;
    for (;;) {
        void *dst = ring_reserve(r, w->rbuf, w->cap, (uint32_t)size, &start);
        if (dst) {
            memcpy(dst, rec, size);
            break;
        }
        uint32_t head = mp__load(&r->head);
        mp__store(&r->prod_sleeping, 1);
        if (ring_reserve(r, w->rbuf, w->cap, (uint32_t)size, &start)) {
            mp__store(&r->prod_sleeping, 0);
            continue;
        }
        uint64_t one = 1;
        ssize_t n = write(w->efd, &one, sizeof one); /* the supervisor drains */
        (void)n;
        mp__futex_wait(&r->head, head, NULL);
    }
    mp__store(&r->tail, start + (uint32_t)size);
    notify_parent(w);
    return 0;
}

/* Waits for the next task record. Spins only while the parent runs on another CPU, and never
 * when the pool was created with spin off (or the program turned spinning off). */
static const mp__trec *worker_next(mp__tp_worker *w)
{
    struct ring *r = &w->shm->task;
    for (;;) {
        /* Read the tail before looking: a record published after the look changes the tail
         * from this value, so the wait below cannot miss it. */
        uint32_t tail = mp__load(&r->tail);
        const mp__trec *t = ring_peek(r, w->tbuf, w->cap);
        if (t) return t;
        int64_t spin = w->spin ? mp__spin_budget(mp__load_relaxed(&w->shm->parent_cpu)) : 0;
        if (spin > 0 && mp__spin_while_equal(&r->tail, tail, spin)) continue;
        mp__store(&r->cons_sleeping, 1);
        if (mp__load(&r->tail) == tail) mp__futex_wait(&r->tail, tail, NULL);
        mp__store(&r->cons_sleeping, 0);
    }
}

__attribute__((noreturn)) static void worker_main(mp__tp_worker *w, const mp__worker_conf *conf)
{
    if (conf->pin_cpu >= 0) mp__pin_to_cpu(conf->pin_cpu);
    mp__store(&w->shm->worker_cpu, mp__current_cpu());
    mp_task_result res = {.max = conf->max_message - MP__REC_SLACK};
    if (mp__worker_init(conf, &res) != 0) {
        w->shm->init_code = res.code;
        size_t n = res.msglen < sizeof w->shm->init_msg ? res.msglen : sizeof w->shm->init_msg - 1;
        memcpy(w->shm->init_msg, res.msg, n);
        w->shm->init_msg[n] = 0;
        mp__store(&w->shm->init_failed, 1);
        mp__child_exit(70);
    }
    char *scratch = NULL;
    size_t scratch_cap = 0;
    unsigned done = 0;
    for (;;) {
        const mp__trec *t = worker_next(w);
        if (t->type == MP__T_STOP) mp__child_exit(0);
        mp__store_relaxed(&w->shm->running_since, mp__now_ns());
        mp__store(&w->shm->running_id, t->id);
        mp__store_relaxed(&w->shm->worker_cpu, mp__current_cpu());
        uint32_t size = t->size;
        if (mp__worker_exec(t, conf, &res, &scratch, &scratch_cap, worker_emit, w) != 0)
            mp__child_exit(71);
        mp__store(&w->shm->running_id, 0);
        ring_release(&w->shm->task, size);
        if (conf->maxtasks && ++done >= conf->maxtasks) mp__child_exit(0);
    }
}

static uint32_t ring_cap(const mp__worker_conf *conf)
{
    uint32_t cap = 4096;
    while (cap < 2 * conf->max_message)
        cap *= 2;
    return cap;
}

static void shm_fork_begin(mp__tp_shared *s)
{
    madvise(s, sizeof *s, MADV_DOFORK);
}

static void shm_fork_end(mp__tp_shared *s)
{
    madvise(s, sizeof *s, MADV_DONTFORK);
}

static int shm_prepare(mp__tp_shared *s, const mp__worker_conf *conf, mp__tp_worker **out, int *fd)
{
    uint32_t cap = ring_cap(conf);
    mp__tp_worker *w = calloc(1, sizeof *w);
    if (!w) return -ENOMEM;
    w->size = HDR_SIZE + 2 * (size_t)cap;
    int mfd = mp__memfd_new("mproc-pool-worker", w->size);
    if (mfd < 0) {
        free(w);
        return mfd;
    }
    mp__fd_internal_add(mfd);
    void *p = mmap(NULL, w->size, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (p == MAP_FAILED) {
        int e = -errno;
        mp__fd_internal_del(mfd);
        close(mfd);
        free(w);
        return e;
    }
    /* The worker maps the memfd itself; no process the program forks gets this mapping. */
    madvise(p, w->size, MADV_DONTFORK);
    w->shm = p;
    w->tbuf = (char *)p + HDR_SIZE;
    w->rbuf = w->tbuf + cap;
    w->cap = cap;
    w->s = s;
    w->efd = -1;
    w->shm->worker_cpu = -1;
    w->shm->parent_cpu = mp__current_cpu();
    *out = w;
    *fd = mfd;
    return 0;
}

__attribute__((noreturn)) static void shm_worker_run(mp__tp_shared *s, const mp__worker_conf *conf,
                                                     int fd, int efd)
{
    uint32_t cap = ring_cap(conf);
    static mp__tp_worker w; /* no allocation before the task code runs */
    w.size = HDR_SIZE + 2 * (size_t)cap;
    void *p = mmap(NULL, w.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) mp__child_exit(72);
    w.shm = p;
    w.tbuf = (char *)p + HDR_SIZE;
    w.rbuf = w.tbuf + cap;
    w.cap = cap;
    w.s = s;
    w.efd = efd;
    w.spin = conf->spin;
    /* What the worker holds of its pool is not for processes its tasks start. */
    mp__fd_internal_add(efd);
    madvise(p, w.size, MADV_DONTFORK);
    madvise(s, sizeof *s, MADV_DONTFORK);
    worker_main(&w, conf);
}

const mp__transport mp__pool_shm_transport = {
    .shared_new = shm_shared_new,
    .shared_free = shm_shared_free,
    .result_seq = shm_result_seq,
    .result_kick = shm_result_kick,
    .result_wait = shm_result_wait,
    .want_notify = shm_want_notify,
    .fork_begin = shm_fork_begin,
    .fork_end = shm_fork_end,
    .prepare = shm_prepare,
    .worker_run = shm_worker_run,
    .task_reserve = shm_task_reserve,
    .task_commit = shm_task_commit,
    .task_flush = shm_task_flush,
    .result_peek = shm_result_peek,
    .result_release = shm_result_release,
    .running = shm_running,
    .cpu = shm_cpu,
    .init_failed = shm_init_failed,
    .release = shm_release,
    .shared_export = shm_shared_export,
    .shared_import = shm_shared_import,
    .id = MP__TP_SHM,
};
