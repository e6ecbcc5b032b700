/* SPDX-License-Identifier: MIT */
/* queue.c - MPMC message queue in anonymous shared memory (see mproc/queue.h, docs/queue.md).
 *
 * Layout: one MAP_SHARED mapping = control block + byte ring. The control block has one cache
 * line group per side: the producer side (robust mutex plock, tail, msgs_put, journal) and the
 * consumer side (robust mutex clock, head, msgs_got, journal). Only the holder of a side's lock
 * writes that side's fields, so with one producer and one consumer the queue runs like a
 * single-producer single-consumer ring: the only cache lines that move are the ring's and one
 * read of the other side's index when the cached copy says "full" or "empty".
 *
 * Crash safety rests on three rules:
 *   1. A record becomes visible only when the tail moves past it (after it was fully written);
 *      it is consumed only when the head moves past it (after it was fully copied out).
 *   2. Every counter that must agree with tail/head is changed under a journal: the lock holder
 *      writes the old values and the new index, arms the journal, changes counters and index,
 *      disarms. Whoever takes a lock with EOWNERDEAD rolls the journal back (producer: the record
 *      was not published) or forward (consumer: the head moved) before pthread_mutex_consistent.
 *   3. A stream (a message bigger than a chunk) that its producer leaves unfinished is taken
 *      back: when no consumer has taken a chunk of it, the producer (holding both sides for an
 *      instant) moves the tail back to where the stream began, as if it had never been put;
 *      otherwise it gets an ABORT record, written by the producer itself on timeout/close, or by
 *      whoever repairs the producer side after it died. Room for that record is always kept free
 *      while a stream is open, so writing it never waits. Either way the message is uncounted in
 *      the same commit (msgs_put - 1), and consumers skip an aborted stream without counting it.
 * Every wait, the side locks' included, sleeps in slices (MP__WAIT_SLICE_NS) and re-checks, so a
 * process killed between publishing and waking its peer, or woken and killed before it acted on
 * the wake-up, costs the others at most one slice, never a hang.
 *
 * JoinableQueue: a table of taker slots (one per process that got items) counts, per process,
 * the items it took (in the consumer's journal) and marked done. A slot whose process is gone
 * (dead, a zombie, or its pid reused) is marked dead by whoever joins: its items all count as
 * finished, and those it had not marked done are added to tasks_lost.
 *
 * Batches (put_many, get_many) use the same rules with the side lock taken once per call: a
 * producer publishes up to GROUP_MAX whole records with one journalled commit (the journal rolls
 * back any number of records), a consumer commits each message on its own; so a kill anywhere
 * leaves a published prefix, or a taken prefix, and nothing torn.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "atomics.h"
#include "mproc/error.h"
#include "mproc/queue.h"
#include "platform/platform.h"
#include "queue_internal.h"
#include "queue_record.h"

#define HANDLE_MAGIC 0x51554555u /* "QUEU" */
#define SHM_MAGIC    0x6d70717565756531ull
#define JSLOTS       256 /* taker processes a JoinableQueue tracks at once */
#define CHUNK_MAX    ((uint64_t)64 << 10)
#define IOV_MAX_MP   1024

/* Crash points for tests (queue_internal.h): compiled into test builds only. */
#ifdef MP_TEST_HOOKS
#define HOOK(point) (__builtin_expect(mp__queue_hook != NULL, 0) ? mp__queue_hook(point) : (void)0)
void (*mp__queue_hook)(int point);
#else
#define HOOK(point) ((void)0)
#endif

struct pjournal {
    _Atomic uint32_t armed;
    uint32_t old_open;
    uint64_t old_msgs;
    uint64_t new_tail;
};

struct cjournal {
    _Atomic uint32_t armed;
    int32_t slot; /* a JoinableQueue's taker slot whose `taken` follows, or -1 */
    uint64_t new_taken;
    uint64_t new_got;
    uint64_t new_disc;
    uint64_t new_head;
};

/* Each group sits on its own pair of cache lines (128 bytes: the adjacent-line prefetcher pairs
 * lines), so that a consumer spinning on the tail does not steal the line the producer writes its
 * journal to, and so on. */
struct qshm {
    uint64_t magic;
    uint64_t cap;       /* ring bytes, multiple of 64 */
    uint64_t maxsize;   /* messages, 0 = no limit */
    uint64_t whole_max; /* messages up to this length go as one MSG record */
    uint64_t chunk_max; /* payload of one stream chunk */
    uint32_t joinable;

    /* producer side, written only by the holder of plock */
    alignas(128) pthread_mutex_t plock;
    _Atomic uint64_t msgs_put;
    _Atomic uint32_t stream_open;
    uint64_t stream_begin; /* tail where the open stream's BEGIN record was written */
    uint64_t cached_head, cached_got;
    struct pjournal pj;
    alignas(128) _Atomic uint64_t tail; /* the producer's commit index, alone: consumers poll it */

    /* consumer side, written only by the holder of clock */
    alignas(128) pthread_mutex_t clock;
    _Atomic uint64_t msgs_got;
    _Atomic uint64_t discarded;
    uint64_t cached_tail;
    struct cjournal cj;
    alignas(128) _Atomic uint64_t head; /* the consumer's commit index */

    /* wake-up words: the flags are written only when someone sleeps, read on every put/get */
    alignas(128) _Atomic uint32_t data_seq;
    _Atomic uint32_t data_waiting;
    _Atomic int32_t prod_cpu; /* where the last producer ran: consumers decide to spin by it */
    alignas(128) _Atomic uint32_t space_seq;
    _Atomic uint32_t space_waiting;
    _Atomic int32_t cons_cpu;
    alignas(128) _Atomic uint32_t closed;
    _Atomic uint32_t join_seq;
    _Atomic uint32_t join_waiters;
    _Atomic uint64_t foreign_done; /* task_done calls credited to no taker slot */
    _Atomic uint64_t tasks_lost;   /* items whose taker died before task_done */
    _Atomic uint32_t slots_hw;     /* slots in use are below this */
    _Atomic uint64_t prod_repairs, cons_repairs, aborts;
};

/* A JoinableQueue's taker slot. `state` is the pid, with SLOT_DEAD set while the slot is free or
 * its process is known to be gone. `taken` is written by the owner (under the consumer journal,
 * which a repairer rolls forward), `done` by task_done (CAS). While the owner lives its slot
 * counts `done` items finished; once dead, all `taken` ones. A new owner claims a dead slot by
 * setting done = taken before clearing SLOT_DEAD, so the count never jumps. */
#define SLOT_DEAD ((uint64_t)1 << 32)
struct jslot {
    alignas(64) _Atomic uint64_t state;
    uint64_t start; /* the owner's start time (mp__pid_start_time): tells a reused pid */
    _Atomic uint64_t taken;
    _Atomic uint64_t done;
};

struct mp_queue {
    uint32_t magic;
    struct qshm *s;
    struct jslot *slots; /* JoinableQueue only */
    unsigned char *ring;
    size_t map_len;
    uint64_t cap;
    pid_t slot_pid; /* the process that claimed `slot` (a forked child must claim its own) */
    int slot;
    /* mp_queue_set_spin: 1 lets this handle's waits spin. Per handle, not in shared memory, so
     * that a producer may spin while a consumer of the same queue sleeps; a forked child starts
     * with its parent's value (its copy of the handle). Atomic: another thread may change it. */
    _Atomic uint32_t spin;
};

/* A caller's time limit, turned into a deadline only when the call first has to wait: the fast
 * path reads no clock. */
struct limit {
    double timeout;
    bool armed;
    mp__deadline dl;
};

/* A limit that allows no wait: 0, and every negative value but MP_FOREVER (docs/conventions.md). */
static bool no_wait(const struct limit *l)
{
    return !(l->timeout > 0) && !mp__timeout_is_forever(l->timeout);
}

static const mp__deadline *deadline(struct limit *l)
{
    if (!l->armed) {
        l->dl = mp__deadline_in(l->timeout);
        l->armed = true;
    }
    return &l->dl;
}

static bool valid(const mp_queue *q)
{
    return q && q->magic == HANDLE_MAGIC && q->s;
}

static size_t ctl_size(bool joinable)
{
    size_t n = sizeof(struct qshm) + (joinable ? JSLOTS * sizeof(struct jslot) : 0);
    return (n + 4095) & ~(size_t)4095;
}

/* ---- creation --------------------------------------------------------------------------- */

static int init_mutex(pthread_mutex_t *m)
{
    return mp__robust_mutex_init(m, PTHREAD_MUTEX_NORMAL);
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
    int rc = mp__shm_map_anon(q->map_len, &base);
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
        free(q);
        return rc;
    }
    s->magic = SHM_MAGIC;
    q->s = s;
    q->ring = (unsigned char *)base + ctl_size(joinable);
    if (joinable) {
        q->slots = (struct jslot *)(void *)((unsigned char *)base + sizeof(struct qshm));
        for (int i = 0; i < JSLOTS; i++)
            mp__store_relaxed(&q->slots[i].state, SLOT_DEAD);
    }
    q->slot = -1;
    q->cap = cap;
    mp__store_relaxed(&q->spin, 1);
    q->magic = HANDLE_MAGIC;
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
    if (q->magic == HANDLE_MAGIC && q->s) mp__shm_unmap(q->s, q->map_len);
    q->magic = 0;
    q->s = NULL;
    free(q);
    *qp = NULL;
    return 0;
}

/* ---- journals and repair ------------------------------------------------------------------ */

/* Publishes the producer's next record(s) up to new_tail together with the counters. */
static void pcommit(struct qshm *s, uint64_t new_tail, uint64_t new_msgs, uint32_t new_open)
{
    s->pj.old_msgs = mp__load_relaxed(&s->msgs_put);
    s->pj.old_open = mp__load_relaxed(&s->stream_open);
    s->pj.new_tail = new_tail;
    mp__store_rel(&s->pj.armed, 1);
    mp__store_rel(&s->msgs_put,
                  new_msgs); /* before the tail: a consumer's task_done must find it */
    mp__store_rel(&s->stream_open, new_open);
    HOOK(MP__QH_PUT_JOURNAL);
    mp__store_rel(&s->tail, new_tail); /* the commit point */
    mp__store_rel(&s->pj.armed, 0);
}

/* The commit's stores, a full fence, then the peer's "sleeping" flag: paired with the fence in
 * sleep_on, either we see the flag or the sleeper sees our index (Dekker). */
static void wake_data(struct qshm *s)
{
    mp__fence();
    /* The waker clears the flag (one sleeper at most: the consumer side's holder), so the puts
     * that follow while the sleeper is being scheduled make no system call. */
    if (mp__load_relaxed(&s->data_waiting) && mp__exchange(&s->data_waiting, 0)) {
        mp__fetch_add(&s->data_seq, 1);
        mp__futex_wake(&s->data_seq, INT32_MAX);
    }
}

static void wake_space(struct qshm *s)
{
    mp__fence();
    if (mp__load_relaxed(&s->space_waiting) && mp__exchange(&s->space_waiting, 0)) {
        mp__fetch_add(&s->space_seq, 1);
        mp__futex_wake(&s->space_seq, INT32_MAX);
    }
}

static void wake_join(struct qshm *s)
{
    mp__fetch_add(&s->join_seq, 1);
    if (mp__load(&s->join_waiters)) mp__futex_wake(&s->join_seq, INT32_MAX);
}

/* Free ring bytes as the producer sees them (exact: reads the head). */
static uint64_t pfree_now(mp_queue *q)
{
    struct qshm *s = q->s;
    s->cached_head = mp__load_acq(&s->head);
    return q->cap - (mp__load_relaxed(&s->tail) - s->cached_head);
}

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
static void fail_stream(mp_queue *q, bool may_wait)
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
    if (mp__load_relaxed(&s->stream_open)) fail_stream(q, false);
    mp__fetch_add(&s->prod_repairs, 1);
}

/* Consumes records up to new_head; the counters follow the head (rolled forward on repair), and
 * so does the taker slot's count of a JoinableQueue's delivered message (slot >= 0). */
static void ccommit(mp_queue *q, uint64_t new_head, uint64_t add_got, uint64_t add_disc, int slot)
{
    struct qshm *s = q->s;
    if (!add_got && !add_disc) {
        mp__store_rel(&s->head, new_head);
        return;
    }
    s->cj.new_got = mp__load_relaxed(&s->msgs_got) + add_got;
    s->cj.new_disc = mp__load_relaxed(&s->discarded) + add_disc;
    s->cj.new_head = new_head;
    s->cj.slot = slot;
    if (slot >= 0) s->cj.new_taken = mp__load_relaxed(&q->slots[slot].taken) + 1;
    mp__store_rel(&s->cj.armed, 1);
    mp__store_rel(&s->head, new_head);
    HOOK(MP__QH_GET_JOURNAL);
    mp__store_rel(&s->msgs_got, s->cj.new_got);
    mp__store_rel(&s->discarded, s->cj.new_disc);
    if (slot >= 0) mp__store_rel(&q->slots[slot].taken, s->cj.new_taken);
    mp__store_rel(&s->cj.armed, 0);
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

enum side { PROD, CONS };

static int after_lock(mp_queue *q, pthread_mutex_t *m, enum side side, int rc)
{
    if (rc == 0) return 0;
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

/* The wait for a busy side is cut into slices (mp__robust_mutex_lock): glibc's unlock wakes one
 * waiter, and when that one is killed before it takes the mutex while another process takes it
 * on the uncontended path, nobody else would ever wake the rest. */
static int side_lock(mp_queue *q, enum side side, struct limit *lim)
{
    pthread_mutex_t *m = side == PROD ? &q->s->plock : &q->s->clock;
    int rc = mp__robust_mutex_trylock(m); /* the common case: nobody holds it */
    if (rc == EBUSY) rc = mp__robust_mutex_lock(m, deadline(lim));
    return after_lock(q, m, side, rc);
}

/* Repairs the producer side if its owner died (a consumer waiting for a stream's next chunk, or a
 * joiner, calls this: nobody else may ever come to take plock). */
static void check_producer_alive(mp_queue *q)
{
    int rc = mp__robust_mutex_trylock(&q->s->plock);
    if (rc == 0 || rc == EOWNERDEAD) {
        after_lock(q, &q->s->plock, PROD, rc);
        pthread_mutex_unlock(&q->s->plock);
    }
}

static void check_consumer_alive(mp_queue *q)
{
    int rc = mp__robust_mutex_trylock(&q->s->clock);
    if (rc == 0 || rc == EOWNERDEAD) {
        after_lock(q, &q->s->clock, CONS, rc);
        pthread_mutex_unlock(&q->s->clock);
    }
}

/* ---- waiting ------------------------------------------------------------------------------- */

static void note_cpu(_Atomic int32_t *slot)
{
    int32_t c = mp__current_cpu();
    if (mp__load_relaxed(slot) != c) mp__store_relaxed(slot, c);
}

/* How long this handle may spin for a peer last seen on *peer_cpu: 0 when the handle's switch
 * (mp_queue_set_spin) or the program-wide one is off, or the peer shares our CPU. */
static int64_t spin_ns(const mp_queue *q, int peer_cpu)
{
    if (!mp__load_relaxed(&q->spin)) return 0;
    return mp__spin_budget(peer_cpu);
}

static int64_t spin_budget(const mp_queue *q, _Atomic int32_t *peer_cpu)
{
    return spin_ns(q, mp__load_relaxed(peer_cpu));
}

#ifdef MP_TEST_HOOKS
int64_t mp__queue_spin_ns(const mp_queue *q, int peer_cpu)
{
    return spin_ns(q, peer_cpu);
}
#endif

/* Spin while *w == v for up to ns; true when it changed. */
static bool spin64(_Atomic uint64_t *w, uint64_t v, int64_t ns)
{
    if (ns <= 0) return false;
    int64_t until = mp__now_ns() + ns;
    for (;;) {
        /* a few pauses between reads: each read pulls the line away from its writer */
        for (int i = 0; i < 16; i++) {
            if (mp__load_acq(w) != v) return true;
            mp__cpu_relax();
            mp__cpu_relax();
            mp__cpu_relax();
            mp__cpu_relax();
        }
        if (mp__now_ns() >= until) return false;
    }
}

/* Sleeps on seq while *index == seen, in slices. waiting is the side's "someone sleeps" flag,
 * which tells the other side to wake us; it is set before the final re-check (seq_cst against
 * the other side's index store) so a wake-up cannot slip between check and sleep.
 * Returns 0 when it is time to re-check, -ETIMEDOUT when dl passed. */
static int sleep_on(struct qshm *s, _Atomic uint32_t *seq, _Atomic uint32_t *waiting,
                    _Atomic uint64_t *index, uint64_t seen, const mp__deadline *dl, bool ignore_dl)
{
    uint32_t sv = mp__load_acq(seq);
    mp__store_relaxed(waiting, 1);
    mp__fence();
    if (mp__load_acq(index) != seen || mp__load_acq(&s->closed)) {
        mp__store_relaxed(waiting, 0);
        return 0;
    }
    mp__deadline slice = mp__deadline_slice(ignore_dl ? NULL : dl);
    int rc = mp__futex_wait(seq, sv, &slice);
    mp__store_relaxed(waiting, 0);
    if (rc == -ETIMEDOUT && !ignore_dl && mp__deadline_left_ns(dl) == 0) return -ETIMEDOUT;
    return 0;
}

/* Producer (holding plock) waits for the consumer side to move: for the taken-message count when
 * it lacks a slot under maxsize (that counter moves last in a consumer's commit), otherwise for
 * the head. The value waited on is the one room() last read. */
static int wait_space(mp_queue *q, bool for_slot, struct limit *lim)
{
    const mp__deadline *dl = deadline(lim);
    struct qshm *s = q->s;
    _Atomic uint64_t *index = for_slot ? &s->msgs_got : &s->head;
    uint64_t seen = for_slot ? s->cached_got : s->cached_head;
    int64_t left = mp__deadline_left_ns(dl);
    if (left == 0) return -ETIMEDOUT;
    int64_t spin = spin_budget(q, &s->cons_cpu);
    if (spin > left) spin = left;
    if (spin64(index, seen, spin)) return 0;
    return sleep_on(s, &s->space_seq, &s->space_waiting, index, seen, dl, false);
}

/* Consumer (holding clock) waits for the tail to move. In the middle of its own stream it waits
 * beyond its deadline (the rest of the message is on its way, bounded by the producer's own
 * timeout); inside any stream it checks each slice that the producer still lives, since a dead
 * one's stream is closed only by whoever repairs the producer side. */
static int wait_data(mp_queue *q, struct limit *lim, int mode)
{
    const mp__deadline *dl = deadline(lim);
    struct qshm *s = q->s;
    bool own = mode == MP__QRD_OWN;
    uint64_t t = s->cached_tail;
    int64_t left = own ? INT64_MAX : mp__deadline_left_ns(dl);
    if (left == 0) return -ETIMEDOUT;
    int64_t spin = spin_budget(q, &s->prod_cpu);
    if (spin > left) spin = left;
    if (spin64(&s->tail, t, spin)) return 0;
    int rc = sleep_on(s, &s->data_seq, &s->data_waiting, &s->tail, t, dl, own);
    if (mode != MP__QRD_IDLE && mp__load_acq(&s->tail) == t) check_producer_alive(q);
    return rc;
}

/* ---- put ----------------------------------------------------------------------------------- */

/* True when `bytes` of ring (and a message slot, if slot) are free. Refreshes the caches only
 * when they say no: the consumer's line is read once per "looks full", not once per message. */
static bool room(mp_queue *q, uint64_t bytes, bool slot)
{
    struct qshm *s = q->s;
    uint64_t t = mp__load_relaxed(&s->tail), n = mp__load_relaxed(&s->msgs_put);
    bool slot_ok = !slot || !s->maxsize || n - s->cached_got < s->maxsize;
    if (q->cap - (t - s->cached_head) >= bytes && slot_ok) return true;
    /* wait_space sleeps until the head moves from the value read here (a message taken moves
     * the head too, so this also covers waiting for a slot). */
    s->cached_head = mp__load_acq(&s->head);
    s->cached_got = mp__load_acq(&s->msgs_got);
    slot_ok = !slot || !s->maxsize || n - s->cached_got < s->maxsize;
    return q->cap - (t - s->cached_head) >= bytes && slot_ok;
}

static int wait_room(mp_queue *q, uint64_t bytes, bool slot, struct limit *dl)
{
    struct qshm *s = q->s;
    for (;;) {
        if (mp__load_acq(&s->closed)) return MP_ECLOSED;
        if (room(q, bytes, slot)) return 0;
        bool for_slot =
            slot && s->maxsize && mp__load_relaxed(&s->msgs_put) - s->cached_got >= s->maxsize;
        int rc = wait_space(q, for_slot, dl);
        if (rc < 0) return rc;
    }
}

/* Copies the gathered message bytes [from, from+n) into the ring at pos. */
static void copy_in(mp_queue *q, uint64_t pos, const struct iovec *iov, int iovcnt, uint64_t from,
                    uint64_t n)
{
    for (int i = 0; i < iovcnt && n > 0; i++) {
        uint64_t l = iov[i].iov_len;
        if (from >= l) {
            from -= l;
            continue;
        }
        uint64_t take = l - from < n ? l - from : n;
        mp__ring_write(q->ring, q->cap, pos, (const char *)iov[i].iov_base + from, take);
        pos += take;
        n -= take;
        from = 0;
    }
}

static int put_whole(mp_queue *q, const struct iovec *iov, int iovcnt, uint64_t len,
                     struct limit *dl)
{
    struct qshm *s = q->s;
    uint64_t rec = mp__qrec_size(len);
    int rc = wait_room(q, rec, true, dl);
    if (rc < 0) return rc;
    uint64_t t = mp__load_relaxed(&s->tail);
    mp__qrec h = mp__qrec_make(MP__QREC_MSG, (uint32_t)len, len);
    memcpy(q->ring + t % q->cap, &h, sizeof h);
    copy_in(q, t + MP__QREC_HDR, iov, iovcnt, 0, len);
    HOOK(MP__QH_PUT_WRITTEN);
    pcommit(s, t + rec, mp__load_relaxed(&s->msgs_put) + 1, 0);
    /* wake_data comes after the unlock (put_impl): the unlock's atomic exchange waits for the
     * record's stores anyway, and the fence in wake_data is then cheap. */
    /* Ask for the next record's lines now (the consumer has them): the next put's stores then
     * hit, and the lock's release, a full barrier on x86, does not wait for them. */
    uint64_t next = (t + rec) % q->cap;
    __builtin_prefetch(q->ring + next, 1);
    if (next + 64 < q->cap) __builtin_prefetch(q->ring + next + 64, 1);
    return 0;
}

/* Streams a message bigger than whole_max: chunks of up to chunk_max, each published as soon as
 * written. While the stream is open, MP__QREC_HDR bytes stay free for a possible ABORT. */
static int put_stream(mp_queue *q, const struct iovec *iov, int iovcnt, uint64_t len,
                      struct limit *dl)
{
    struct qshm *s = q->s;
    const uint64_t cmax = s->chunk_max, reserve = MP__QREC_HDR;
    /* A caller that will not wait can only stream what fits now. */
    if (no_wait(dl) && (len / cmax + 2) * MP__QREC_HDR + len + 16 > pfree_now(q)) return -ETIMEDOUT;
    int rc = wait_room(q, mp__qrec_size(cmax) + reserve, true, dl);
    if (rc < 0) return rc;
    uint64_t off = 0;
    while (off < len) {
        uint64_t rest = len - off;
        uint64_t fr = pfree_now(q);
        uint64_t chunk = 0;
        bool end = false;
        if (rest <= cmax && mp__qrec_size(rest) <= fr) {
            chunk = rest;
            end = true;
        } else if (fr >= reserve + MP__QREC_HDR + 16) {
            chunk = (fr - reserve - MP__QREC_HDR) & ~(uint64_t)15;
            if (chunk > cmax) chunk = cmax;
            if (chunk >= rest) chunk = rest - 1; /* the last piece must come as END */
            uint64_t want = cmax / 4 < rest ? cmax / 4 : rest - 1;
            if (chunk < want) chunk = 0; /* tiny chunks cost more than waiting */
        }
        if (chunk == 0) {
            rc = mp__load_acq(&s->closed) ? MP_ECLOSED : wait_space(q, false, dl);
            if (rc < 0) {
                if (off > 0) fail_stream(q, true);
                return rc;
            }
            continue;
        }
        uint64_t t = mp__load_relaxed(&s->tail);
        if (off == 0) s->stream_begin = t; /* read only while stream_open says so */
        uint32_t type = off == 0 ? MP__QREC_BEGIN : end ? MP__QREC_END : MP__QREC_CONT;
        mp__qrec h = mp__qrec_make(type, (uint32_t)chunk, off == 0 ? len : off);
        memcpy(q->ring + t % q->cap, &h, sizeof h);
        copy_in(q, t + MP__QREC_HDR, iov, iovcnt, off, chunk);
        HOOK(MP__QH_PUT_WRITTEN);
        pcommit(s, t + mp__qrec_size(chunk), mp__load_relaxed(&s->msgs_put) + (off == 0), !end);
        wake_data(s);
        off += chunk;
        if (!end) {
            HOOK(MP__QH_PUT_CHUNK);
            if (mp__load_acq(&s->closed)) {
                fail_stream(q, true);
                return MP_ECLOSED;
            }
        }
    }
    return 0;
}

static int put_impl(mp_queue *q, const struct iovec *iov, int iovcnt, double timeout)
{
    if (!valid(q)) return -EINVAL;
    if (iovcnt < 0 || iovcnt > IOV_MAX_MP || (!iov && iovcnt > 0)) return -EINVAL;
    uint64_t len = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (!iov[i].iov_base && iov[i].iov_len) return -EINVAL;
        if (iov[i].iov_len > MP_QUEUE_MSG_MAX) return MP_ETOOBIG;
        len += iov[i].iov_len;
    }
    if (len > MP_QUEUE_MSG_MAX) return MP_ETOOBIG;
    struct qshm *s = q->s;
    if (mp__load_acq(&s->closed)) return MP_ECLOSED;
    struct limit dl = {timeout, false, {0}};
    int rc = side_lock(q, PROD, &dl);
    if (rc == 0) {
        note_cpu(&s->prod_cpu);
        /* Up to half the ring a message goes whole. Up to the ring it also goes whole when the
         * ring has room for it now: streaming it would need a consumer to take chunks. */
        if (len <= s->whole_max ||
            (mp__qrec_size(len) <= q->cap && pfree_now(q) >= mp__qrec_size(len))) {
            rc = put_whole(q, iov, iovcnt, len, &dl);
            pthread_mutex_unlock(&s->plock);
            if (rc == 0) wake_data(s);
        } else {
            rc = put_stream(q, iov, iovcnt, len, &dl);
            pthread_mutex_unlock(&s->plock);
        }
    }
    return rc;
}

/* A batch publishes its whole messages in groups of up to this many records: one commit (and one
 * store to the tail's cache line, which the consumer polls) per group instead of per message,
 * while a consumer running alongside still gets the first messages without waiting for the
 * last ones. */
#define GROUP_MAX 64

/* Writes the whole messages msgs[0..n) from the tail on, as many as the ring (and maxsize) take
 * at once, at most GROUP_MAX, and publishes them with one commit (the caller holds plock). Only
 * the first may wait for room; the others go only when they fit without waiting, and only when
 * they are small enough to go whole anyway (a bigger one is for the caller to stream). Returns
 * how many were published (>= 1), or an error when none was. */
static ssize_t put_group(mp_queue *q, const struct iovec *msgs, size_t n, struct limit *dl)
{
    struct qshm *s = q->s;
    int rc = wait_room(q, mp__qrec_size(msgs[0].iov_len), true, dl);
    if (rc < 0) return rc;
    const uint64_t t0 = mp__load_relaxed(&s->tail), np = mp__load_relaxed(&s->msgs_put);
    uint64_t t = t0;
    size_t k = 0;
    bool fresh = false; /* the caches were refreshed for this group */
    while (k < n && k < GROUP_MAX) {
        uint64_t len = msgs[k].iov_len, rec = mp__qrec_size(len);
        if (k > 0 && len > s->whole_max) break;
        bool fits = q->cap - (t - s->cached_head) >= rec &&
                    (!s->maxsize || np + k - s->cached_got < s->maxsize);
        if (!fits && k > 0 && !fresh) {
            s->cached_head = mp__load_acq(&s->head);
            s->cached_got = mp__load_acq(&s->msgs_got);
            fresh = true;
            fits = q->cap - (t - s->cached_head) >= rec &&
                   (!s->maxsize || np + k - s->cached_got < s->maxsize);
        }
        if (!fits && k > 0) break; /* (the first one fits: wait_room said so) */
        mp__qrec h = mp__qrec_make(MP__QREC_MSG, (uint32_t)len, len);
        memcpy(q->ring + t % q->cap, &h, sizeof h);
        copy_in(q, t + MP__QREC_HDR, &msgs[k], 1, 0, len);
        t += rec;
        k++;
    }
    HOOK(MP__QH_PUT_WRITTEN);
    pcommit(s, t, np + k, 0);
    uint64_t next = t % q->cap;
    __builtin_prefetch(q->ring + next, 1);
    if (next + 64 < q->cap) __builtin_prefetch(q->ring + next + 64, 1);
    return (ssize_t)k;
}

ssize_t mp_queue_put_many(mp_queue *q, const struct iovec *msgs, size_t n, double timeout)
{
    if (!valid(q) || (!msgs && n) || n > (size_t)SSIZE_MAX) return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].iov_base && msgs[i].iov_len) return -EINVAL;
        if (msgs[i].iov_len > MP_QUEUE_MSG_MAX) return MP_ETOOBIG;
    }
    if (n == 0) return 0;
    struct qshm *s = q->s;
    if (mp__load_acq(&s->closed)) return MP_ECLOSED;
    struct limit dl = {timeout, false, {0}};
    int rc = side_lock(q, PROD, &dl);
    if (rc < 0) return rc;
    note_cpu(&s->prod_cpu);
    size_t done = 0;
    ssize_t k = 0;
    while (done < n) {
        uint64_t len = msgs[done].iov_len;
        /* the same rule as put: whole up to half the ring, or up to the ring when it has room */
        if (len <= s->whole_max ||
            (mp__qrec_size(len) <= q->cap && pfree_now(q) >= mp__qrec_size(len))) {
            k = put_group(q, msgs + done, n - done, &dl);
        } else {
            k = put_stream(q, &msgs[done], 1, len, &dl);
            if (k == 0) k = 1;
        }
        if (k < 0) break;
        done += (size_t)k;
        /* a consumer may sleep on the data we published while we wait for room for the rest */
        wake_data(s);
    }
    pthread_mutex_unlock(&s->plock);
    return done > 0 ? (ssize_t)done : k;
}

int mp_queue_put(mp_queue *q, const void *buf, size_t len, double timeout)
{
    if (!buf && len) return -EINVAL;
    struct iovec v = {(void *)buf, len};
    return put_impl(q, &v, 1, timeout);
}

int mp_queue_put_nowait(mp_queue *q, const void *buf, size_t len)
{
    if (!buf && len) return -EINVAL;
    struct iovec v = {(void *)buf, len};
    return put_impl(q, &v, 1, 0);
}

int mp_queue_putv(mp_queue *q, const struct iovec *iov, int iovcnt, double timeout)
{
    return put_impl(q, iov, iovcnt, timeout);
}

/* ---- get ----------------------------------------------------------------------------------- */

struct dest {
    unsigned char *buf; /* caller's buffer, or the allocated one */
    size_t cap;
    bool alloc;
};

/* Makes room for a message of `total` bytes before anything of it is consumed. */
static int dest_prepare(struct dest *d, uint64_t total, size_t *len)
{
    if (d->alloc) {
        free(d->buf);
        d->buf = malloc(total ? total : 1);
        if (!d->buf) return -ENOMEM;
        d->cap = total;
        return 0;
    }
    if (total > d->cap) {
        *len = total;
        return MP_ETOOSMALL;
    }
    return 0;
}

/* A consumer (holding clock) at the BEGIN record at hd, with a buffer too small for it: has the
 * stream been aborted (its producer gave up, or died: checked once), so that no such message
 * will ever arrive? Then 1, with *end the position after its ABORT record. 0 when the stream is
 * complete or still being written by a live producer; MP_ECORRUPT. */
static int stream_aborted(mp_queue *q, uint64_t hd, uint64_t *end)
{
    struct qshm *s = q->s;
    for (int pass = 0; pass < 2; pass++) {
        uint64_t t = mp__load_acq(&s->tail), pos = hd;
        s->cached_tail = t;
        while (pos < t) {
            mp__qrec h;
            memcpy(&h, q->ring + pos % q->cap, sizeof h);
            int64_t size = t - pos > q->cap ? MP_ECORRUPT : mp__qrec_validate(&h, t - pos);
            if (size < 0) return MP_ECORRUPT;
            uint32_t type = mp__qrec_type(&h);
            if (pos != hd && (type == MP__QREC_MSG || type == MP__QREC_BEGIN)) return MP_ECORRUPT;
            if (type == MP__QREC_END) return 0;
            pos += (uint64_t)size;
            if (type == MP__QREC_ABORT) {
                *end = pos;
                return 1;
            }
        }
        /* Still open: a dead producer's stream is closed by whoever repairs its side. */
        if (pass == 0) check_producer_alive(q);
    }
    return 0;
}

static int taker_slot(mp_queue *q);

/* Takes the message at the head into d[0] (waiting as the call allows), then, when nd > 1, the
 * whole messages already published behind it into d[1..], without waiting, as long as each fits
 * its buffer: lens[i] gets each length. Returns how many were taken (>= 1), or an error (then
 * lens[0] may hold the size MP_ETOOSMALL asks for). Each message is committed on its own, so a
 * consumer killed in the middle has taken (and lost) exactly the ones committed before. cont: the
 * continuation of a batch, where even the first message is taken only under the batch rule
 * (returns 0 when there is none). */
static ssize_t get_impl(mp_queue *q, struct dest *d, size_t nd, size_t *lens, double timeout,
                        bool cont)
{
    size_t *len = lens;
    size_t got = 0;
    bool wake_after = false;
    struct qshm *s = q->s;
    int slot = s->joinable ? taker_slot(q) : -1;
    struct limit dl = {timeout, false, {0}};
    int rc = side_lock(q, CONS, &dl);
    if (rc < 0) return rc;
    note_cpu(&s->cons_cpu);
    mp__qrd st = {MP__QRD_IDLE, 0, 0};
    for (;;) {
        uint64_t hd = mp__load_relaxed(&s->head);
        if (s->cached_tail <= hd) s->cached_tail = mp__load_acq(&s->tail);
        if (got > 0 || cont) {
            /* Batch: only whole messages that are there already and fit their buffer. */
            if (s->cached_tail <= hd) break;
            mp__qrec h;
            memcpy(&h, q->ring + hd % q->cap, sizeof h);
            if (mp__qrec_type(&h) != MP__QREC_MSG || h.aux > d[got].cap) break;
        }
        if (s->cached_tail <= hd) {
            if (st.mode == MP__QRD_IDLE && mp__load_acq(&s->closed)) {
                rc = MP_ECLOSED;
                break;
            }
            rc = wait_data(q, &dl, st.mode);
            if (rc == 0) continue;
            break;
        }
        uint64_t avail = s->cached_tail - hd;
        mp__qrec h;
        memcpy(&h, q->ring + hd % q->cap, sizeof h);
        int64_t size = avail > q->cap ? MP_ECORRUPT : mp__qrec_validate(&h, avail);
        if (size < 0) {
            rc = MP_ECORRUPT;
            break;
        }
        uint32_t type = mp__qrec_type(&h);
        if (st.mode == MP__QRD_IDLE && (type == MP__QREC_MSG || type == MP__QREC_BEGIN) &&
            (rc = dest_prepare(&d[got], h.aux, len)) < 0) {
            uint64_t end;
            int ab = rc == MP_ETOOSMALL && type == MP__QREC_BEGIN ? stream_aborted(q, hd, &end) : 0;
            if (ab == 0) break;
            if (ab < 0) {
                rc = MP_ECORRUPT;
                break;
            }
            /* a message that will never arrive: skip it whole, uncounted (its producer did) */
            ccommit(q, end, 0, 0, -1);
            wake_space(s);
            continue;
        }
        int act = mp__qrd_step(&st, &h);
        if (act < 0) {
            rc = MP_ECORRUPT;
            break;
        }
        uint64_t at = act == MP__QACT_MSG || act == MP__QACT_BEGIN ? 0 : h.aux;
        if (act == MP__QACT_MSG || act == MP__QACT_BEGIN || act == MP__QACT_APPEND ||
            act == MP__QACT_FINISH)
            mp__ring_read(q->ring, q->cap, hd + MP__QREC_HDR, d[got].buf + at, h.chunk);
        HOOK(MP__QH_GET_READ);
        /* An ABORT ends a message its producer has uncounted already. */
        bool counted = type != MP__QREC_ABORT;
        bool delivered = act == MP__QACT_MSG || act == MP__QACT_FINISH;
        bool disc = counted && mp__qrd_discards(act);
        ccommit(q, hd + (uint64_t)size, counted && mp__qrd_terminal(act), disc,
                delivered ? slot : -1);
        if (disc && s->joinable) wake_join(s);
        if (delivered) {
            /* The wake-up for a producer waiting for room comes after the unlock: the unlock's
             * atomic exchange has drained our stores, so wake_space's fence is then cheap, and
             * a batch pays it once. */
            wake_after = true;
            lens[got++] = act == MP__QACT_MSG ? h.chunk : st.total;
            rc = 0;
            if (got == nd || act == MP__QACT_FINISH) break;
            st = (mp__qrd){MP__QRD_IDLE, 0, 0};
            continue;
        }
        wake_space(s); /* a streaming producer may be waiting for this chunk's room */
        if (act == MP__QACT_BEGIN || act == MP__QACT_APPEND) HOOK(MP__QH_GET_CHUNK);
    }
    pthread_mutex_unlock(&s->clock);
    if (wake_after) wake_space(s);
    return got > 0 || (cont && rc == 0) ? (ssize_t)got : rc;
}

int mp_queue_get(mp_queue *q, void *buf, size_t cap, size_t *len, double timeout)
{
    if (!valid(q) || !len || (!buf && cap)) return -EINVAL;
    struct dest d = {buf, cap, false};
    ssize_t k = get_impl(q, &d, 1, len, timeout, false);
    return k > 0 ? 0 : (int)k;
}

int mp_queue_get_nowait(mp_queue *q, void *buf, size_t cap, size_t *len)
{
    if (!valid(q) || !len || (!buf && cap)) return -EINVAL;
    struct dest d = {buf, cap, false};
    ssize_t k = get_impl(q, &d, 1, len, 0, false);
    return k > 0 ? 0 : (int)k;
}

int mp_queue_get_alloc(mp_queue *q, void **out, size_t *len, double timeout)
{
    if (out) *out = NULL;
    if (!valid(q) || !out || !len) return -EINVAL;
    struct dest d = {NULL, 0, true};
    ssize_t k = get_impl(q, &d, 1, len, timeout, false);
    int rc = k > 0 ? 0 : (int)k;
    if (rc < 0) {
        free(d.buf);
        return rc;
    }
    *out = d.buf;
    return 0;
}

/* Destinations of a get_many batch on the stack up to this many; beyond, in slices of it. */
#define DEST_STACK 64

ssize_t mp_queue_get_many(mp_queue *q, const struct iovec *bufs, size_t n, size_t *lens,
                          double timeout)
{
    if (!valid(q) || !bufs || !lens || n == 0 || n > (size_t)SSIZE_MAX) return -EINVAL;
    struct dest d[DEST_STACK];
    size_t nd = n < DEST_STACK ? n : DEST_STACK;
    for (size_t i = 0; i < n; i++)
        if (!bufs[i].iov_base && bufs[i].iov_len) return -EINVAL;
    for (size_t i = 0; i < nd; i++)
        d[i] = (struct dest){bufs[i].iov_base, bufs[i].iov_len, false};
    ssize_t k = get_impl(q, d, nd, lens, timeout, false);
    /* More than DEST_STACK: further slices take only what is there already. */
    size_t done = k > 0 ? (size_t)k : 0;
    while (k == (ssize_t)nd && done < n) {
        nd = n - done < DEST_STACK ? n - done : DEST_STACK;
        for (size_t i = 0; i < nd; i++)
            d[i] = (struct dest){bufs[done + i].iov_base, bufs[done + i].iov_len, false};
        k = get_impl(q, d, nd, lens + done, 0, true);
        if (k > 0) done += (size_t)k;
    }
    return done > 0 ? (ssize_t)done : k;
}

/* ---- state --------------------------------------------------------------------------------- */

static void check_stream_producer(mp_queue *q)
{
    /* An open stream counts in msgs_put until it ends; a dead producer's is ended by a repair. */
    if (mp__load_acq(&q->s->stream_open)) check_producer_alive(q);
}

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

/* ---- JoinableQueue --------------------------------------------------------------------------- */

/* Marks the slots of gone takers dead: their items count as finished from now on, the ones not
 * marked done as lost. all: also slots without unfinished items (to free them for reuse). */
static void reap_takers(mp_queue *q, bool all)
{
    struct qshm *s = q->s;
    uint32_t hw = mp__load_acq(&s->slots_hw);
    for (uint32_t i = 0; i < hw && i < JSLOTS; i++) {
        struct jslot *js = &q->slots[i];
        uint64_t v = mp__load_acq(&js->state);
        if (v & SLOT_DEAD) continue;
        if (!all && mp__load_acq(&js->taken) == mp__load_acq(&js->done)) continue;
        if (!mp__pid_gone((pid_t)(uint32_t)v, js->start)) continue;
        if (!mp__cas(&js->state, &v, v | SLOT_DEAD)) continue;
        uint64_t taken = mp__load_acq(&js->taken), done = mp__load_acq(&js->done);
        if (taken > done) {
            mp__fetch_add(&s->tasks_lost, taken - done);
            wake_join(s);
        }
    }
}

/* The calling process's taker slot on this handle, claimed on its first joinable get (a forked
 * child claims its own), or -1 when all JSLOTS are taken by live processes (its items are then
 * not tracked: a join waits for them as Python's does). */
static int taker_slot(mp_queue *q)
{
    pid_t me = mp__getpid_cached();
    if (q->slot_pid == me) return q->slot;
    struct qshm *s = q->s;
    q->slot_pid = me;
    q->slot = -1;
    uint64_t start = mp__pid_start_time(me);
    for (int pass = 0; pass < 2 && q->slot < 0; pass++) {
        if (pass) reap_takers(q, true);
        for (uint32_t i = 0; i < JSLOTS; i++) {
            struct jslot *js = &q->slots[i];
            uint64_t v = mp__load_relaxed(&js->state);
            if (!(v & SLOT_DEAD)) continue;
            /* A taker killed in the middle of a consumer commit: its slot's count is rolled
             * forward by whoever repairs the consumer side; leave the slot to it until then
             * (only a dead owner's journal can name a dead slot, so this cannot change under
             * us). */
            if (mp__load_acq(&s->cj.armed) && s->cj.slot == (int32_t)i) continue;
            if (!mp__cas(&js->state, &v, SLOT_DEAD | (uint32_t)me)) continue;
            /* Still dead (its `taken` counts as finished): take over the counts, then go live
             * with done = taken, so the slot's share of the finished count does not move. */
            js->start = start;
            mp__store_rel(&js->done, mp__load_acq(&js->taken));
            uint32_t hw = mp__load_relaxed(&s->slots_hw);
            while (hw < i + 1 && !mp__cas_weak(&s->slots_hw, &hw, i + 1)) {
            }
            mp__store(&js->state, (uint64_t)(uint32_t)me);
            q->slot = (int)i;
            break;
        }
    }
    return q->slot;
}

/* Items finished: marked done by a live taker, taken by a gone one, discarded with a consumer that
 * died mid-stream, or task_done calls no taker was there to be credited with. */
static uint64_t finished(mp_queue *q)
{
    struct qshm *s = q->s;
    uint64_t n = mp__load_acq(&s->foreign_done) + mp__load_acq(&s->discarded);
    uint32_t hw = mp__load_acq(&s->slots_hw);
    for (uint32_t i = 0; i < hw && i < JSLOTS; i++) {
        struct jslot *js = &q->slots[i];
        n += (mp__load_acq(&js->state) & SLOT_DEAD) ? mp__load_acq(&js->taken)
                                                    : mp__load_acq(&js->done);
    }
    return n;
}

static uint64_t unfinished(mp_queue *q)
{
    uint64_t done = finished(q);
    uint64_t put = mp__load_acq(&q->s->msgs_put);
    return put > done ? put - done : 0;
}

ssize_t mp_queue_unfinished(const mp_queue *q)
{
    if (!valid(q)) return -EINVAL;
    if (!q->s->joinable) return MP_ETYPE;
    check_stream_producer((mp_queue *)q); /* as count(): shared state only */
    return (ssize_t)unfinished((mp_queue *)q);
}

ssize_t mp_queue_tasks_lost(const mp_queue *q)
{
    if (!valid(q)) return -EINVAL;
    if (!q->s->joinable) return MP_ETYPE;
    return (ssize_t)mp__load_acq(&q->s->tasks_lost);
}

/* Credits one item of slot i as done, if it has one taken and not done. */
static bool credit(mp_queue *q, int i)
{
    struct jslot *js = &q->slots[i];
    uint64_t d = mp__load_acq(&js->done);
    while (!(mp__load_acq(&js->state) & SLOT_DEAD) && d < mp__load_acq(&js->taken))
        if (mp__cas_weak(&js->done, &d, d + 1)) return true;
    return false;
}

int mp_queue_task_done(mp_queue *q)
{
    if (!valid(q)) return -EINVAL;
    struct qshm *s = q->s;
    if (!s->joinable) return MP_ETYPE;
    /* The caller's own items first; then any live taker's (the getter handed the item on). */
    int own = q->slot_pid == mp__getpid_cached() ? q->slot : -1;
    bool ok = own >= 0 && credit(q, own);
    uint32_t hw = mp__load_acq(&s->slots_hw);
    for (uint32_t i = 0; !ok && i < hw && i < JSLOTS; i++)
        ok = (int)i != own && credit(q, (int)i);
    if (!ok) {
        uint64_t fd = mp__load_acq(&s->foreign_done);
        for (;;) {
            if (finished(q) >= mp__load_acq(&s->msgs_put)) return MP_EOVERRELEASE;
            if (mp__cas_weak(&s->foreign_done, &fd, fd + 1)) break;
        }
    }
    if (unfinished(q) == 0) wake_join(s);
    return 0;
}

int mp_queue_join(mp_queue *q, double timeout)
{
    if (!valid(q)) return -EINVAL;
    struct qshm *s = q->s;
    if (!s->joinable) return MP_ETYPE;
    mp__deadline dl = mp__deadline_in(timeout);
    bool check = true;
    for (;;) {
        if (check) {
            /* A side whose owner died mid-commit holds counters that only its repair fixes; a
             * taker that died holds items that only reap_takers counts finished. */
            check_producer_alive(q);
            check_consumer_alive(q);
            reap_takers(q, false);
        }
        uint32_t seq = mp__load_acq(&s->join_seq);
        if (unfinished(q) == 0) return 0;
        if (mp__deadline_left_ns(&dl) == 0) return -ETIMEDOUT;
        mp__fetch_add(&s->join_waiters, 1);
        mp__deadline slice = mp__deadline_slice(&dl);
        int rc = unfinished(q) ? mp__futex_wait(&s->join_seq, seq, &slice) : 0;
        mp__fetch_sub(&s->join_waiters, 1);
        check = rc == -ETIMEDOUT;
    }
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
