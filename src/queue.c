/* SPDX-License-Identifier: MIT */
/* queue.c - the queue object (new, free), its side locks' crash repair, queries, close and the
 * spin switch. The layout, the crash-safety rules and the other files: queue_private.h. */
#include <stdlib.h>
#include "queue_private.h"

/* Crash points for tests (queue_internal.h): compiled into test builds only. */
#ifdef MP_TEST_HOOKS
void (*mp__queue_hook)(int point);
#endif

/* ---- creation --------------------------------------------------------------------------- */

static size_t ctl_size(bool joinable)
{
    size_t n = sizeof(struct qshm) + (joinable ? JSLOTS * sizeof(struct jslot) : 0);
    return (n + 4095) & ~(size_t)4095;
}

static int init_mutex(pthread_mutex_t *m)
{
    return mp__robust_mutex_init(m, PTHREAD_MUTEX_NORMAL);
}

/* Points a handle (magic, map_len and mem already set) at its mapped state. */
static void handle_setup(mp_queue *q, struct qshm *s, uint32_t spin)
{
    q->s = s;
    q->ring = (unsigned char *)s + ctl_size(s->joinable);
    q->slots =
        s->joinable ? (struct jslot *)(void *)((unsigned char *)s + sizeof(struct qshm)) : NULL;
    q->slot = -1;
    q->slot_pid = 0;
    q->cap = s->cap;
    mp__store_relaxed(&q->spin, spin);
    q->magic = HANDLE_MAGIC;
}

static int queue_new(mp_queue **out, size_t maxsize, size_t capacity, bool joinable)
{
    if (!out) return -EINVAL;
    *out = NULL;
    if (capacity == 0) capacity = MP_QUEUE_DEFAULT_CAPACITY;
    if (capacity < MP_QUEUE_MIN_CAPACITY || capacity > MP_QUEUE_MAX_CAPACITY) return -EINVAL;
    if (maxsize > MP_QUEUE_MAXSIZE_MAX) return -EINVAL;
    /* mp__cpu_count caches the first answer: ask now, before a child pins itself to one CPU and
     * would conclude that spinning can never pay. */
    (void)mp__cpu_count();
    uint64_t cap = ((uint64_t)capacity + 63) & ~(uint64_t)63;

    mp_queue *q = calloc(1, sizeof *q);
    if (!q) return -ENOMEM;
    q->map_len = ctl_size(joinable) + cap;
    void *base;
    int rc = mp__shm_fd_map(q->map_len, &base, &q->mem);
    if (rc < 0) {
        free(q);
        return rc == -EINVAL ? -ENOMEM : rc;
    }
    struct qshm *s = base;
    s->cap = cap;
    s->maxsize = maxsize;
    /* Up to half the ring a message goes whole; beyond, it is streamed in chunks so that the
     * producer and the consumer copy at the same time. Chunks leave room for the ABORT record. */
    s->whole_max = cap / 2 - MP__QREC_HDR;
    uint64_t chunk = (cap / 4) & ~(uint64_t)15;
    s->chunk_max = chunk < CHUNK_MAX ? chunk : CHUNK_MAX;
    s->joinable = joinable;
    s->cj.slot = -1;
    mp__store_relaxed(&s->prod_cpu, -1);
    mp__store_relaxed(&s->cons_cpu, -1);
    if ((rc = init_mutex(&s->plock)) < 0 || (rc = init_mutex(&s->clock)) < 0) {
        mp__shm_unmap(base, q->map_len);
        mp__shm_fd_close(&q->mem);
        free(q);
        return rc;
    }
    if (joinable) {
        struct jslot *slots = (struct jslot *)(void *)((unsigned char *)base + sizeof(struct qshm));
        for (int i = 0; i < JSLOTS; i++)
            mp__store_relaxed(&slots[i].state, SLOT_DEAD);
    }
    s->magic = SHM_MAGIC;
    handle_setup(q, s, 1);
    *out = q;
    return 0;
}

int mp_queue_new(mp_queue **out, size_t maxsize_msgs, size_t capacity_bytes)
{
    return queue_new(out, maxsize_msgs, capacity_bytes, false);
}

int mp_queue_new_joinable(mp_queue **out, size_t maxsize_msgs, size_t capacity_bytes)
{
    return queue_new(out, maxsize_msgs, capacity_bytes, true);
}

int mp_queue_free(mp_queue **qp)
{
    if (!qp || !*qp) return 0;
    mp_queue *q = *qp;
    if (q->magic == HANDLE_MAGIC && q->s) {
        mp__shm_unmap(q->s, q->map_len);
        mp__shm_fd_close(&q->mem);
    }
    q->magic = 0;
    q->s = NULL;
    free(q);
    *qp = NULL;
    return 0;
}

/* ---- handoff to a spawned or forkserver child (handoff.h) ------------------------------------
 * A queue travels as its memfd and a description; the child maps the same control block and
 * ring, so every guarantee holds across it as across fork: robust side locks (the kernel hands
 * a dead holder's lock to the next one whichever program image it runs), journals, JoinableQueue
 * taker slots (keyed by pid and start time, which the child has like any process). The spin
 * switch is per handle: the child's starts as the parent's was at export. */

#define QUEUE_DESC_MAGIC 0x6d706871u /* "mphq" */

struct queue_desc {
    uint32_t magic;
    uint32_t joinable;
    uint64_t map_len;
    uint64_t cap;
    uint32_t spin;
    uint32_t pad;
};

int mp__queue_export(const void *obj, mp__handoff *h, const char **why)
{
    const mp_queue *q = obj;
    if (!valid(q)) return -EINVAL;
    int r = mp__shm_fd_export(&q->mem, h, why);
    if (r) return r;
    struct queue_desc d = {
        QUEUE_DESC_MAGIC, q->s->joinable, q->map_len, q->cap, mp__load_relaxed(&q->spin), 0};
    mp__handoff_desc_put(h, &d, sizeof d);
    return 0;
}

int mp__queue_import(mp__handoff *h, void **out)
{
    struct queue_desc d;
    if (!mp__handoff_desc_get(h, &d, sizeof d) || d.magic != QUEUE_DESC_MAGIC || h->nfds != 1 ||
        d.joinable > 1 || d.cap < MP_QUEUE_MIN_CAPACITY || d.cap > MP_QUEUE_MAX_CAPACITY ||
        d.cap % 64 || d.map_len != ctl_size(d.joinable) + d.cap)
        return MP_ECORRUPT;
    mp_queue *q = calloc(1, sizeof *q);
    if (!q) return -ENOMEM;
    void *base;
    int r = mp__shm_fd_import(h, 0, (size_t)d.map_len, &base, &q->mem);
    if (r) {
        free(q);
        return r;
    }
    struct qshm *s = base;
    /* The layout is checked against the description: a file that is not this queue's state is
     * refused rather than trusted. */
    if (s->magic != SHM_MAGIC || s->cap != d.cap || s->joinable != d.joinable) {
        mp__shm_unmap(base, (size_t)d.map_len);
        mp__shm_fd_close(&q->mem);
        free(q);
        return MP_ECORRUPT;
    }
    (void)mp__cpu_count(); /* as queue_new: before a child pins itself */
    q->map_len = (size_t)d.map_len;
    handle_setup(q, s, d.spin ? 1u : 0u);
    *out = q;
    return 0;
}

/* ---- journals and repair ------------------------------------------------------------------ */

/* Closes an open stream with an ABORT record and uncounts its message in the same commit
 * (consumers skip an aborted stream without counting it). The room was reserved when the last
 * chunk was published, so this does not wait (if the reserve is somehow missing it waits for
 * consumers, in slices). */
static void write_abort(mp_queue *q)
{
    struct qshm *s = q->s;
    while (pfree_now(q) < MP__QREC_HDR) {
        mp__deadline dl = mp__deadline_slice(NULL);
        mp__futex_wait(&s->space_seq, mp__load_relaxed(&s->space_seq), &dl);
    }
    uint64_t t = mp__load_relaxed(&s->tail);
    mp__qrec h = mp__qrec_make(MP__QREC_ABORT, 0, 0);
    memcpy(q->ring + t % q->cap, &h, sizeof h);
    pcommit(s, t + MP__QREC_HDR, mp__load_relaxed(&s->msgs_put) - 1, 0);
    mp__fetch_add(&s->aborts, 1);
    wake_data(s);
}

static void repair_consumer(mp_queue *q);

/* Takes back the open stream (the caller holds plock): when no consumer has taken a chunk of it,
 * moves the tail back to its BEGIN, uncounted, as if it had never been put; that needs the
 * consumer side for an instant (no consumer may be reading the records being withdrawn), waited
 * for up to two slices when may_wait, else only tried. Otherwise (or when the consumer side
 * stays busy) writes an ABORT record. */
void mp__queue_fail_stream(mp_queue *q, bool may_wait)
{
    struct qshm *s = q->s;
    if (mp__load_acq(&s->head) <= s->stream_begin) {
        int rc;
        if (may_wait) {
            mp__deadline dl = mp__deadline_in(2 * MP__WAIT_SLICE_NS / 1e9);
            rc = mp__robust_mutex_lock(&s->clock, &dl);
        } else {
            rc = mp__robust_mutex_trylock(&s->clock);
        }
        if (rc == EOWNERDEAD) {
            repair_consumer(q);
            pthread_mutex_consistent(&s->clock);
            rc = 0;
        }
        if (rc == 0) {
            bool untouched = mp__load_relaxed(&s->head) <= s->stream_begin;
            if (untouched) {
                pcommit(s, s->stream_begin, mp__load_relaxed(&s->msgs_put) - 1, 0);
                /* the consumer side's cache may hold the withdrawn tail (repair does the same
                 * if we die before this line) */
                s->cached_tail = mp__load_relaxed(&s->head);
            }
            pthread_mutex_unlock(&s->clock);
            if (untouched) return;
        }
    }
    write_abort(q);
}

/* The producer side's owner died while holding plock: undo an unpublished commit, close its
 * open stream. Idempotent, so a repairer that dies too leaves the work to the next one (the mutex
 * stays inconsistent until pthread_mutex_consistent, called after this). */
static void repair_producer(mp_queue *q)
{
    struct qshm *s = q->s;
    if (mp__load_acq(&s->pj.armed)) {
        if (mp__load_relaxed(&s->tail) != s->pj.new_tail) {
            mp__store_relaxed(&s->msgs_put, s->pj.old_msgs);
            mp__store_relaxed(&s->stream_open, s->pj.old_open);
        }
        mp__store_rel(&s->pj.armed, 0);
    }
    mp__store_relaxed(&s->space_waiting, 0);
    s->cached_head = mp__load_acq(&s->head);
    s->cached_got = mp__load_acq(&s->msgs_got);
    /* Only tried: the repairer may be a consumer that holds the consumer side itself. */
    if (mp__load_relaxed(&s->stream_open)) mp__queue_fail_stream(q, false);
    mp__fetch_add(&s->prod_repairs, 1);
}

static void repair_consumer(mp_queue *q)
{
    struct qshm *s = q->s;
    if (mp__load_acq(&s->cj.armed)) {
        if (mp__load_relaxed(&s->head) == s->cj.new_head) {
            mp__store_relaxed(&s->msgs_got, s->cj.new_got);
            mp__store_relaxed(&s->discarded, s->cj.new_disc);
            int slot = s->cj.slot;
            if (slot >= 0 && slot < JSLOTS && q->slots) {
                /* The slot cannot have been claimed again meanwhile (taker_slot skips the slot of
                 * an armed journal); if a joiner already reaped it, this item is lost too. */
                struct jslot *js = &q->slots[slot];
                if ((mp__load_acq(&js->state) & SLOT_DEAD) &&
                    mp__load_relaxed(&js->taken) != s->cj.new_taken)
                    mp__fetch_add(&s->tasks_lost, 1);
                mp__store_rel(&js->taken, s->cj.new_taken);
            }
        }
        mp__store_rel(&s->cj.armed, 0);
    }
    mp__store_relaxed(&s->data_waiting, 0);
    s->cached_tail = mp__load_relaxed(&s->head);
    mp__fetch_add(&s->cons_repairs, 1);
}

int mp__queue_lock_failed(mp_queue *q, pthread_mutex_t *m, enum side side, int rc)
{
    if (rc == EOWNERDEAD) {
        if (side == PROD)
            repair_producer(q);
        else
            repair_consumer(q);
        pthread_mutex_consistent(m);
        return 0;
    }
    if (rc == ETIMEDOUT || rc == EBUSY) return -ETIMEDOUT;
    if (rc == ENOTRECOVERABLE) return MP_ECORRUPT;
    return -rc;
}

/* Repairs the producer side if its owner died (a consumer waiting for a stream's next chunk, or a
 * joiner, calls this: nobody else may ever come to take plock). */
void mp__queue_check_producer_alive(mp_queue *q)
{
    int rc = mp__robust_mutex_trylock(&q->s->plock);
    if (rc == 0 || rc == EOWNERDEAD) {
        after_lock(q, &q->s->plock, PROD, rc);
        pthread_mutex_unlock(&q->s->plock);
    }
}

void mp__queue_check_consumer_alive(mp_queue *q)
{
    int rc = mp__robust_mutex_trylock(&q->s->clock);
    if (rc == 0 || rc == EOWNERDEAD) {
        after_lock(q, &q->s->clock, CONS, rc);
        pthread_mutex_unlock(&q->s->clock);
    }
}

/* ---- state --------------------------------------------------------------------------------- */

static uint64_t count(mp_queue *q)
{
    struct qshm *s = q->s;
    check_stream_producer(q);
    uint64_t got = mp__load_acq(&s->msgs_got);
    uint64_t put = mp__load_acq(&s->msgs_put);
    return put > got ? put - got : 0;
}

/* The queries take const handles; counting may first repair a side whose owner died (shared
 * state reached through the handle's pointers, never the handle itself), hence the casts. */
ssize_t mp_queue_qsize(const mp_queue *q)
{
    if (!valid(q)) return -EINVAL;
    return (ssize_t)count((mp_queue *)q);
}

int mp_queue_is_empty(const mp_queue *q)
{
    if (!valid(q)) return -EINVAL;
    return count((mp_queue *)q) == 0;
}

int mp_queue_is_full(const mp_queue *q)
{
    if (!valid(q)) return -EINVAL;
    return q->s->maxsize && count((mp_queue *)q) >= q->s->maxsize;
}

size_t mp_queue_capacity(const mp_queue *q)
{
    return valid(q) ? (size_t)q->cap : 0;
}

size_t mp_queue_maxsize(const mp_queue *q)
{
    return valid(q) ? (size_t)q->s->maxsize : 0;
}

int mp_queue_close(mp_queue *q)
{
    if (!valid(q)) return -EINVAL;
    struct qshm *s = q->s;
    if (mp__exchange(&s->closed, 1)) return 0;
    mp__fetch_add(&s->data_seq, 1);
    mp__fetch_add(&s->space_seq, 1);
    mp__futex_wake(&s->data_seq, INT32_MAX);
    mp__futex_wake(&s->space_seq, INT32_MAX);
    wake_join(s);
    return 0;
}

int mp_queue_is_closed(const mp_queue *q)
{
    if (!valid(q)) return -EINVAL;
    return (int)mp__load_acq(&q->s->closed);
}

int mp_queue_set_spin(mp_queue *q, int enabled)
{
    if (!valid(q)) return -EINVAL;
    mp__store_relaxed(&q->spin, enabled ? 1u : 0u);
    return 0;
}

int mp_queue_is_spin_enabled(const mp_queue *q)
{
    if (!valid(q)) return -EINVAL;
    return (int)mp__load_relaxed(&q->spin);
}

#ifdef MP_TEST_HOOKS
int mp__queue_stats(mp_queue *q, struct mp__queue_stats *st)
{
    if (!valid(q) || !st) return -EINVAL;
    struct qshm *s = q->s;
    st->prod_repairs = mp__load_acq(&s->prod_repairs);
    st->cons_repairs = mp__load_acq(&s->cons_repairs);
    st->aborts = mp__load_acq(&s->aborts);
    st->discarded = mp__load_acq(&s->discarded);
    st->msgs_put = mp__load_acq(&s->msgs_put);
    st->msgs_got = mp__load_acq(&s->msgs_got);
    return 0;
}

unsigned char *mp__queue_ring(mp_queue *q, size_t *cap)
{
    if (!valid(q)) return NULL;
    if (cap) *cap = (size_t)q->cap;
    return q->ring;
}
#endif
