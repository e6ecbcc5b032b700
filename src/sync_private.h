/* SPDX-License-Identifier: MIT */
/* sync_private.h - how the sources of mproc/sync.h call each other (not for shared.c or tests).
 *
 * Lock and RLock are thin wrappers over robust, process-shared pthread mutexes: the uncontended
 * path is glibc's single CAS each way, and the kernel's robust list hands a dead holder's lock to
 * the next acquirer with EOWNERDEAD. Semaphore and Event are lock-free futex words: a process
 * killed anywhere inside them cannot leave them inconsistent. Condition keeps a table of waiter
 * slots (one futex each) next to its lock. Barrier keeps its counters under a robust internal
 * mutex; a death inside that mutex breaks the barrier instead of corrupting it.
 *
 * Every handle starts with mp__sync_handle (sync_internal.h) and is made by one constructor,
 * mp__sync_open, from a per-kind table (sync_kind); mp__sync_free is the one destructor. Atomics
 * are written with src/atomics.h. What a pthread mutex does not say through POSIX (its holder,
 * the glibc 2.36 trylock quirk) comes from the platform layer (src/platform/mutex.c).
 *
 * The parts, one job each:
 *   sync.c            the handle base: checking caller memory, the one constructor
 *                     (new / init_at / attach_at) and the one destructor
 *   sync_lock.c       Lock and RLock: acquire (inline fast path), release, queries, and the
 *                     release-all / reacquire pair that Condition waits with
 *   sync_sem_event.c  Semaphore, BoundedSemaphore and Event: lock-free futex words
 *   sync_cond.c       Condition: the waiter-slot table, notify, dead-waiter hand-over
 *   sync_barrier.c    Barrier: generations, outcome records, the action, abort and reset
 *
 * The small helpers below are static inline on purpose: mp_lock_acquire and mp_lock_release call
 * them on their fast paths, which must stay free of calls.
 */
#ifndef MP_SYNC_PRIVATE_H
#define MP_SYNC_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atomics.h"
#include "mproc/error.h"
#include "platform/platform.h"
#include "sync_internal.h"

/* What every shared state starts with. */
typedef struct state_hdr {
    _Atomic uint32_t magic;
    uint32_t kind;
} state_hdr;

/* Store the kind, then the magic (release): an attacher never sees a half-built object. */
static inline void mp__sync_publish(void *mem, uint32_t kind)
{
    state_hdr *h = mem;
    h->kind = kind;
    mp__store_rel(&h->magic, MP__SYNC_MAGIC);
}

static inline bool handle_ok(const mp__sync_handle *h)
{
    return h && h->magic == MP__HANDLE_MAGIC;
}

/* How each kind is made: what the one constructor (mp__sync_open) needs to know. */
typedef struct sync_kind {
    size_t handle_size; /* sizeof(struct mp_X), which starts with mp__sync_handle */
    size_t map_len;     /* what _new maps */
    uint32_t k1, k2;    /* the kinds attach accepts */
    /* Initialise the state in mem[0, size) from arg (not called by attach). */
    int (*init)(void *mem, size_t size, const void *arg);
    /* Optional: check an attach target further / fill the kind's handle fields. */
    int (*check)(const void *mem, size_t size, const void *arg);
    void (*setup)(mp__sync_handle *h, const void *arg);
} sync_kind;

enum sync_how { SYNC_NEW, SYNC_INIT_AT, SYNC_ATTACH_AT };

/* The one constructor behind every mp_X_new / mp_X_init_at / mp_X_attach_at: find the state's
 * memory (map it, or check the caller's), initialise or check it, then make the handle. On
 * failure nothing is left allocated and *out is untouched. */
int mp__sync_open(void *out, const sync_kind *k, enum sync_how how, void *mem, size_t size,
                  const void *arg);

/* Makes a handle on state that arrived from another program image (handoff): mem[0, size) was
 * mapped from the memfd in *m; checked as attach checks, then owned as _new owns its mapping
 * (free unmaps it and closes the fd). On failure nothing is touched: the caller unmaps and
 * closes. */
int mp__sync_adopt(void *out, const sync_kind *k, void *mem, size_t size, const void *arg,
                   mp__shm_fd *m);
/* The per-kind adopters (each file knows its kind's table). mp__cond_adopt: ext is the caller's
 * lock the condition was made with (NULL: its own), adopted too and freed with the condition. */
int mp__lock_adopt(mp_lock **out, void *mem, size_t size, mp__shm_fd *m);
int mp__sem_adopt(mp_sem **out, void *mem, size_t size, mp__shm_fd *m);
int mp__event_adopt(mp_event **out, void *mem, size_t size, mp__shm_fd *m);
int mp__cond_adopt(mp_cond **out, void *mem, size_t size, mp__shm_fd *m, mp_lock *ext);
int mp__barrier_adopt(mp_barrier **out, void *mem, size_t size, mp__shm_fd *m);
/* The lock a condition was made with when it is not its own (NULL when it is its own). */
const mp_lock *mp__cond_ext_lock(const mp_cond *c);
/* Whether a barrier was made with an action (which cannot cross exec). */
bool mp__barrier_has_action(const mp_barrier *b);

/* The one destructor: unmaps what _new mapped, frees the handle, clears the caller's pointer. */
int mp__sync_free(void *pp);

/* A timeout that asks not to wait at all: 0, any negative other than MP_FOREVER, NaN. */
static inline bool timeout_is_poll(double timeout)
{
    return !(timeout > 0) && !mp__timeout_is_forever(timeout);
}

/* ---- Lock helpers (sync_lock.c; Condition uses them too) ---- */

static inline mp__lock_state *lock_st(const mp_lock *l)
{
    return l->h.state;
}

static inline bool lock_ok(const mp_lock *l)
{
    return l && handle_ok(&l->h);
}

static inline bool lock_state_owned(const mp__lock_state *s)
{
    return mp__mutex_owner_is_self(&s->m);
}

/* Release every level the caller holds; returns how many (0: it held none). */
int mp__lock_release_all(mp__lock_state *s);

/* Take the lock back at `levels` levels, without a time limit (Python's Condition does the
 * same: a wait always returns holding the lock). Returns 0 or -EOWNERDEAD. */
int mp__lock_reacquire(mp__lock_state *s, int levels);

#endif
