/* sync_internal.h - the shared-memory layouts behind mproc/sync.h, for shared.c and the tests.
 *
 * Every object's shared state starts with {magic, kind}. The magic is stored last (release) by
 * the initialiser, so an attacher never sees a half-built object. Handles are private memory.
 */
#ifndef MP_SYNC_INTERNAL_H
#define MP_SYNC_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

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

typedef struct mp__lock_state {
    _Atomic uint32_t magic;
    uint32_t kind; /* MP__K_LOCK or MP__K_RLOCK */
    pthread_mutex_t m;
} mp__lock_state;

struct mp_lock {
    uint32_t magic;
    uint32_t flags;
    mp__lock_state *s;
};

/* Initialise a lock state in shared memory (robust, process-shared; errorcheck or recursive). */
int mp__lock_state_init(mp__lock_state *s, bool recursive);
/* Fill a handle that lives inside another object. */
void mp__lock_handle_embed(mp_lock *h, mp__lock_state *s);
/* True when the calling thread holds l (no validity check). */
bool mp__lock_owned(const mp_lock *l);
/* After ENOTRECOVERABLE from a trylock-first path: undo glibc's leaving the word locked. */
void mp__mutex_unstick(pthread_mutex_t *m);
/* The calling thread's id, cached per thread (reset in fork children). */
pid_t mp__tid(void);

/* Outcome records kept: a waiter learns exactly how its generation ended unless, before it
 * looked, more than this many generations failed (abort, timeout, reset) *and* more than this
 * many were released. */
#define MP__BAR_RING 16

typedef struct mp__barrier_state {
    _Atomic uint32_t magic;
    uint32_t kind;
    uint32_t parties;
    uint32_t count;       /* arrivals in the current generation; guarded by m */
    uint32_t gen;         /* bumped on release and reset; read without m (atomics) */
    uint32_t broken;      /* read without m (atomics) */
    _Atomic uint32_t seq; /* futex word: bumped on every event that may end a wait */
    uint32_t fails;       /* generations that failed so far; written under m (atomics) */
    uint32_t releases;    /* generations released so far; written under m (atomics) */
    /* fail_gen[k % RING] / rel_gen[k % RING]: the generation of failure / release number k
     * (0-based). Both happen at strictly increasing generations, so a waiter that arrived in
     * generation g when the counts were f and r failed exactly when failure number f happened in
     * g, and was released exactly when release number r did; one surviving record decides. */
    uint32_t fail_gen[MP__BAR_RING];
    uint32_t rel_gen[MP__BAR_RING];
    pthread_mutex_t m; /* robust, internal */
} mp__barrier_state;

struct mp_barrier {
    uint32_t magic;
    uint32_t flags;
    mp__barrier_state *s;
};

/* Test hook: the internal mutex of a barrier (to simulate a party dying inside its state). */
pthread_mutex_t *mp__barrier_mutex(mp_barrier *b);

#endif
