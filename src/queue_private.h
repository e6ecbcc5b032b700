/* SPDX-License-Identifier: MIT */
/* queue_private.h - the message queue's shared layout and how its files call each other (the
 * API: mproc/queue.h, docs/queue.md).
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
 *
 * The files, one job each:
 *   queue.c       the object (new, free), side locks and crash repair (journals rolled back or
 *                 forward, open streams taken back or aborted), queries, close, the spin switch
 *   queue_wait.c  waiting for the other side: spinning while the peer runs, sleeping in slices
 *   queue_put.c   put, putv, put_nowait, put_many: whole records, streams, batches
 *   queue_get.c   get, get_nowait, get_alloc, get_many: records, streams, skipping aborted ones
 *   queue_join.c  JoinableQueue: taker slots, reaping gone takers, task_done, join
 *   queue_record.h  the record format and the consumer's stream state machine (pure logic)
 *   queue_internal.h  crash points and repair counters for tests (test builds only)
 * The fast path of put and get (lock, commit, wake) is in this header as static inline
 * functions, so splitting the files adds no call to it; what only a crash or a wait needs
 * goes through the mp__queue_* functions below.
 */
#ifndef MP_QUEUE_PRIVATE_H
#define MP_QUEUE_PRIVATE_H

#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include "atomics.h"
#include "handoff.h"
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
    mp__shm_fd mem; /* the mapping's memfd (fd -1: anonymous, cannot travel; handoff.h) */
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
static inline bool no_wait(const struct limit *l)
{
    return !(l->timeout > 0) && !mp__timeout_is_forever(l->timeout);
}

static inline const mp__deadline *deadline(struct limit *l)
{
    if (!l->armed) {
        l->dl = mp__deadline_in(l->timeout);
        l->armed = true;
    }
    return &l->dl;
}

static inline bool valid(const mp_queue *q)
{
    return q && q->magic == HANDLE_MAGIC && q->s;
}

/* ---- implemented in the .c files ------------------------------------------------------------ */

enum side { PROD, CONS };

/* queue.c: a side lock's slow outcomes (rc != 0 from the mutex): repairs the side when its owner
 * died (EOWNERDEAD), else maps the error. */
int mp__queue_lock_failed(mp_queue *q, pthread_mutex_t *m, enum side side, int rc);
/* queue.c: takes back the open stream (the caller holds plock); see there. */
void mp__queue_fail_stream(mp_queue *q, bool may_wait);
/* queue.c: repairs a side if its owner died (whoever may be the only one to come by calls this). */
void mp__queue_check_producer_alive(mp_queue *q);
void mp__queue_check_consumer_alive(mp_queue *q);
/* queue_wait.c: the producer waits for room (for_slot: for a message slot under maxsize), the
 * consumer for data; 0 when it is time to re-check, -ETIMEDOUT. */
int mp__queue_wait_space(mp_queue *q, bool for_slot, struct limit *lim);
int mp__queue_wait_data(mp_queue *q, struct limit *lim, int mode);
/* queue_join.c: claims a taker slot for process me (see taker_slot). */
int mp__queue_claim_slot(mp_queue *q, pid_t me);

/* ---- the fast path: commits, wake-ups, side locks ----------------------------------------- */

/* Publishes the producer's next record(s) up to new_tail together with the counters. */
static inline void pcommit(struct qshm *s, uint64_t new_tail, uint64_t new_msgs, uint32_t new_open)
{
    s->pj.old_msgs = mp__load_relaxed(&s->msgs_put);
    s->pj.old_open = mp__load_relaxed(&s->stream_open);
    s->pj.new_tail = new_tail;
    mp__store_rel(&s->pj.armed, 1);
    /* msgs_put before the tail: a consumer's task_done must find it */
    mp__store_rel(&s->msgs_put, new_msgs);
    mp__store_rel(&s->stream_open, new_open);
    HOOK(MP__QH_PUT_JOURNAL);
    mp__store_rel(&s->tail, new_tail); /* the commit point */
    mp__store_rel(&s->pj.armed, 0);
}

/* The commit's stores, a full fence, then the peer's "sleeping" flag: paired with the fence in
 * sleep_on, either we see the flag or the sleeper sees our index (Dekker). */
static inline void wake_data(struct qshm *s)
{
    mp__fence();
    /* The waker clears the flag (one sleeper at most: the consumer side's holder), so the puts
     * that follow while the sleeper is being scheduled make no system call. */
    if (mp__load_relaxed(&s->data_waiting) && mp__exchange(&s->data_waiting, 0)) {
        mp__fetch_add(&s->data_seq, 1);
        mp__futex_wake(&s->data_seq, INT32_MAX);
    }
}

static inline void wake_space(struct qshm *s)
{
    mp__fence();
    if (mp__load_relaxed(&s->space_waiting) && mp__exchange(&s->space_waiting, 0)) {
        mp__fetch_add(&s->space_seq, 1);
        mp__futex_wake(&s->space_seq, INT32_MAX);
    }
}

static inline void wake_join(struct qshm *s)
{
    mp__fetch_add(&s->join_seq, 1);
    if (mp__load(&s->join_waiters)) mp__futex_wake(&s->join_seq, INT32_MAX);
}

/* Free ring bytes as the producer sees them (exact: reads the head). */
static inline uint64_t pfree_now(mp_queue *q)
{
    struct qshm *s = q->s;
    s->cached_head = mp__load_acq(&s->head);
    return q->cap - (mp__load_relaxed(&s->tail) - s->cached_head);
}

/* Consumes records up to new_head; the counters follow the head (rolled forward on repair), and
 * so does the taker slot's count of a JoinableQueue's delivered message (slot >= 0). */
static inline void ccommit(mp_queue *q, uint64_t new_head, uint64_t add_got, uint64_t add_disc,
                           int slot)
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

static inline int after_lock(mp_queue *q, pthread_mutex_t *m, enum side side, int rc)
{
    if (rc == 0) return 0;
    return mp__queue_lock_failed(q, m, side, rc);
}

/* The wait for a busy side is cut into slices (mp__robust_mutex_lock): glibc's unlock wakes one
 * waiter, and when that one is killed before it takes the mutex while another process takes it
 * on the uncontended path, nobody else would ever wake the rest. */
static inline int side_lock(mp_queue *q, enum side side, struct limit *lim)
{
    pthread_mutex_t *m = side == PROD ? &q->s->plock : &q->s->clock;
    int rc = mp__robust_mutex_trylock(m); /* the common case: nobody holds it */
    if (rc == EBUSY) rc = mp__robust_mutex_lock(m, deadline(lim));
    return after_lock(q, m, side, rc);
}

static inline void note_cpu(_Atomic int32_t *slot)
{
    int32_t c = mp__current_cpu();
    if (mp__load_relaxed(slot) != c) mp__store_relaxed(slot, c);
}

/* The calling process's taker slot on this handle, claimed on its first joinable get (a forked
 * child claims its own), or -1 when all JSLOTS are taken by live processes (its items are then
 * not tracked: a join waits for them as Python's does). */
static inline int taker_slot(mp_queue *q)
{
    pid_t me = mp__getpid_cached();
    if (q->slot_pid == me) return q->slot;
    return mp__queue_claim_slot(q, me);
}

static inline void check_stream_producer(mp_queue *q)
{
    /* An open stream counts in msgs_put until it ends; a dead producer's is ended by a repair. */
    if (mp__load_acq(&q->s->stream_open)) mp__queue_check_producer_alive(q);
}

#endif
