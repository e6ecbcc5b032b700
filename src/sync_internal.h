/* SPDX-License-Identifier: MIT */
/* sync_internal.h - the shared-memory layouts behind mproc/sync.h, for shared.c and the tests.
 *
 * Every object's shared state starts with {magic, kind}. The magic is stored last (release) by
 * the initialiser, so an attacher never sees a half-built object. Handles are private memory and
 * all start with the same base, mp__sync_handle.
 */
#ifndef MP_SYNC_INTERNAL_H
#define MP_SYNC_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "handoff.h"
#include "mproc/sync.h"

#define MP__SYNC_MAGIC   0x6d707379u /* "mpsy": shared state */
#define MP__HANDLE_MAGIC 0x6d70686eu /* "mphn": live handle (cleared by free) */

enum mp__sync_kind {
    MP__K_LOCK = 1,
    MP__K_RLOCK,
    MP__K_SEM,
    MP__K_BSEM,
    MP__K_EVENT,
    MP__K_COND,
    MP__K_BARRIER,
};

/* Handle flags. */
#define MP__H_OWNS_MAP 1u /* made by _new: free unmaps the state */
#define MP__H_EMBEDDED 2u /* lives inside another handle (Value, Condition): free refuses */

/* What every sync handle starts with: the first member of mp_lock, mp_sem, mp_event, mp_cond
 * and mp_barrier, so one validity check and one free serve them all. */
typedef struct mp__sync_handle {
    uint32_t magic; /* MP__HANDLE_MAGIC while live */
    uint32_t flags; /* MP__H_* */
    void *state;    /* the shared state (starts with {magic, kind}) */
    size_t map_len; /* bytes mapped by _new (MP__H_OWNS_MAP), else 0 */
    mp__shm_fd mem; /* _new after mp_init(): the mapping's memfd (handoff.h); else fd -1 */
} mp__sync_handle;

typedef struct mp__lock_state {
    _Atomic uint32_t magic;
    uint32_t kind; /* MP__K_LOCK or MP__K_RLOCK */
    pthread_mutex_t m;
} mp__lock_state;

struct mp_lock {
    mp__sync_handle h; /* h.state: mp__lock_state */
};

/* Initialise a lock state in shared memory (robust, process-shared; errorcheck or recursive). */
int mp__lock_state_init(mp__lock_state *s, bool recursive);
/* Fill a handle that lives inside another object. */
void mp__lock_handle_embed(mp_lock *h, mp__lock_state *s);
/* True when the calling thread holds l (no validity check). */
bool mp__lock_owned(const mp_lock *l);
#ifdef MP_TEST_HOOKS
/* Test builds only: the mutex behind a Lock or RLock. */
pthread_mutex_t *mp__lock_mutex(mp_lock *l);
#endif

/* Outcome records kept: a waiter learns exactly how its generation ended unless, before it
 * looked, more than this many generations failed (abort, timeout, reset) *and* more than this
 * many were released. */
#define MP__BAR_RING 16

typedef struct mp__barrier_state {
    _Atomic uint32_t magic;
    uint32_t kind;
    uint32_t parties;
    uint32_t count;            /* arrivals in the current generation; guarded by m */
    _Atomic uint32_t gen;      /* bumped on release and reset; written under m, read without */
    _Atomic uint32_t broken;   /* written under m, read without */
    _Atomic uint32_t seq;      /* futex word: bumped on every event that may end a wait */
    _Atomic uint32_t fails;    /* generations that failed so far; written under m */
    _Atomic uint32_t releases; /* generations released so far; written under m */
    _Atomic uint32_t acting;   /* 1 while the last party runs the action (holding m) */
    uint32_t has_action;       /* made with an action: every handle must carry one */
    double timeout;            /* default timeout (mp_barrier_wait_default) */
    /* fail_gen[k % RING] / rel_gen[k % RING]: the generation of failure / release number k
     * (0-based). Both happen at strictly increasing generations, so a waiter that arrived in
     * generation g when the counts were f and r failed exactly when failure number f happened in
     * g, and was released exactly when release number r did; one surviving record decides. */
    _Atomic uint32_t fail_gen[MP__BAR_RING];
    _Atomic uint32_t rel_gen[MP__BAR_RING];
    pthread_mutex_t m; /* robust, internal */
} mp__barrier_state;

#ifdef MP_TEST_HOOKS
/* Test builds only: the internal mutex of a barrier (to simulate a party dying inside its state)
 * and its shared state. */
pthread_mutex_t *mp__barrier_mutex(mp_barrier *b);
mp__barrier_state *mp__barrier_state_of(mp_barrier *b);
#endif

#endif
