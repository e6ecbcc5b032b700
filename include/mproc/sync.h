/* SPDX-License-Identifier: MIT */
/* mproc/sync.h - process-shared Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition,
 * Barrier: Python's multiprocessing synchronisation primitives, in C.
 *
 *     mp_lock *l;
 *     mp_lock_new(&l);                          // before fork: children share it
 *     int rc = mp_lock_acquire(l, 1.0);         // 0, -ETIMEDOUT, or -EOWNERDEAD (see below)
 *     ... critical section ...
 *     mp_lock_release(l);
 *     mp_lock_free(&l);
 *
 * Where the state lives. Every object's state is in MAP_SHARED memory; the handle (mp_lock *,
 * mp_sem *, ...) is a small private struct that points at it.
 *   - mp_X_new(): the state gets its own anonymous shared mapping (a memfd after mp_init()).
 * Processes forked afterwards share the object through their copy of the handle.
 *   - mp_X_init_at(&x, mem, size, ...): the state is placed in memory you provide, for instance
 *     a named block (mproc/shared.h) at some offset, so that unrelated processes can share it:
 *     they map the same block and call mp_X_attach_at(&x, mem, size) on the same offset.
 *     mem must be 8-byte aligned (64 is best: one cache line) and size >= MP_SYNC_SHM_SIZE.
 *     attach_at checks a magic number and the kind: -EINVAL for memory that holds no initialised
 *     object, MP_ETYPE for another kind of object (a Lock where an Event is expected).
 *   - mp_X_free(&x): releases the handle and sets x to NULL. For a _new object it also unmaps this
 *     process's view; the state stays valid for other processes. For an _at object the memory
 *     is the caller's and is left alone. Never free while another thread of the same process
 *     uses the handle.
 *
 * Timeouts: seconds as a double, on CLOCK_MONOTONIC; only MP_FOREVER (or +INFINITY) waits without
 * limit; 0 polls, and so does any other negative value or NaN (an expired deadline). "Not within
 * the time given" is -ETIMEDOUT, also for a poll. Signals never surface: a wait interrupted by a
 * handler resumes against the same deadline.
 *
 * A holder that dies. Lock and RLock are robust (pthread robust mutexes, LMDB's model): when the
 * process or thread holding one dies, the next acquirer gets the lock *and* -EOWNERDEAD. It now
 * holds the lock, should repair the data the lock guards, and releases it as usual; the lock has
 * already been marked consistent, so later acquirers get 0. Nobody ever hangs on a dead holder.
 * Semaphores have no owner: a unit taken by a process that dies is gone (as in POSIX and Python);
 * a process killed while *waiting* in any primitive never disturbs the others, not even when it
 * was killed right after being woken: every sleep on a Lock, RLock, Value/Array lock, Semaphore
 * or the Barrier's internal mutex is cut into 20 ms slices that re-check, so a wake-up that died
 * with its process costs the others at most one slice; a Condition notification given to a
 * waiter killed before it returned passes to another waiter (see mp_cond_wait). Condition and
 * Barrier use robust internal state; a Barrier whose internal state was interrupted by a death is
 * put into the broken state (MP_EBROKEN) rather than left inconsistent.
 *
 * Forking while holding: a child forked while its parent holds a Lock does not hold it (the lock
 * records the holder's thread id); releasing it in the child gives MP_ENOTOWNER.
 *
 * Async-signal-safety: mp_event_set, mp_sem_release and mp_*_is_set/get_value are; the acquire
 * and wait calls are not (a handler that interrupts the holder and acquires again deadlocks).
 * Everything is safe to use in a forked child. The thread-id cache relies on pthread_atfork, so
 * children must be made with fork()/mproc, not a raw clone().
 */
#ifndef MPROC_SYNC_H
#define MPROC_SYNC_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of shared memory every mp_X_init_at needs (any kind fits). */
#define MP_SYNC_SHM_SIZE 256

/* ---- Lock and RLock ------------------------------------------------------------------------ */

/* One type for both; an RLock is an mp_lock made by mp_rlock_new (or _init_at with recursive). */
typedef struct mp_lock mp_lock;

/* A non-recursive Lock. Errors: -EINVAL (out NULL), -ENOMEM. */
MP_API int mp_lock_new(mp_lock **out);
/* A recursive lock: the holder may acquire it again; it is released when released as many times.
 * Errors: -EINVAL, -ENOMEM. */
MP_API int mp_rlock_new(mp_lock **out);
/* Initialise a Lock (recursive false) or RLock (true) in caller-provided shared memory / attach a
 * handle to one that some process initialised there. Errors: -EINVAL (NULL, misaligned, size too
 * small, attach to uninitialised memory), MP_ETYPE (attach: another kind), -ENOMEM (the handle). */
MP_API int mp_lock_init_at(mp_lock **out, void *mem, size_t size, bool recursive);
MP_API int mp_lock_attach_at(mp_lock **out, void *mem, size_t size);

/* Acquire, waiting at most timeout seconds.
 * Returns 0; -ETIMEDOUT (not acquired; also a poll of a Lock the calling thread holds itself:
 * busy like any held lock); -EOWNERDEAD (acquired: the previous holder died holding it, repair
 * the data; for an RLock the recursion count restarts at 1); -EDEADLK (a wait with time left, or
 * MP_FOREVER, on a Lock, not RLock, the calling thread already holds: it would wait for itself
 * until the deadline); -EINVAL (NULL); -EAGAIN (RLock recursion count overflow);
 * -ENOTRECOVERABLE (a holder died and its successor released it without repair). */
MP_API int mp_lock_acquire(mp_lock *l, double timeout);

/* Release one level. Errors: -EINVAL, MP_ENOTOWNER (the calling thread does not hold it). */
MP_API int mp_lock_release(mp_lock *l);

/* 1 when the calling thread holds the lock, 0 when not, -EINVAL for NULL. */
MP_API int mp_lock_is_owned(const mp_lock *l);
/* 1 when any thread of any process holds the lock (Python's locked()), 0 when none does (a
 * holder that died no longer counts), -EINVAL for NULL. Only a snapshot: it may change at once. */
MP_API int mp_lock_is_locked(const mp_lock *l);
/* 1 for an RLock, 0 for a Lock, -EINVAL for NULL. */
MP_API int mp_lock_is_recursive(const mp_lock *l);

/* Releases the handle, sets *pp to NULL. NULL-safe. Returns 0. -EBUSY while the calling thread
 * holds a lock made by mp_lock_new/mp_rlock_new (release it first: a held robust mutex is linked
 * into the thread's robust list, which passes through the lock's memory, so it must stay mapped;
 * for the same reason never unmap memory holding an _init_at lock some thread of this process
 * holds). A borrowed lock (from mp_value_lock, mp_array_lock, mp_cond_lock) belongs to its
 * object: -EINVAL, and the lock and *pp stay as they were. */
MP_API int mp_lock_free(mp_lock **pp);

/* ---- Semaphore and BoundedSemaphore ---------------------------------------------------------- */

typedef struct mp_sem mp_sem;

/* A Semaphore with initial value `value` (Python's default is 1). value <= MP_SEM_VALUE_MAX.
 * Errors: -EINVAL (out NULL, value too large), -ENOMEM. */
#define MP_SEM_VALUE_MAX 0x7fffffffu
MP_API int mp_sem_new(mp_sem **out, unsigned value);
/* A BoundedSemaphore: releasing it above its initial value is an error (MP_EOVERRELEASE). */
MP_API int mp_bsem_new(mp_sem **out, unsigned value);
/* In caller-provided shared memory (bounded: false for Semaphore, true for BoundedSemaphore). */
MP_API int mp_sem_init_at(mp_sem **out, void *mem, size_t size, unsigned value, bool bounded);
MP_API int mp_sem_attach_at(mp_sem **out, void *mem, size_t size);

/* Take one unit, waiting at most timeout. Returns 0, -ETIMEDOUT, -EINVAL. */
MP_API int mp_sem_acquire(mp_sem *s, double timeout);
/* Give one unit back, waking one waiter. Async-signal-safe. Returns 0; MP_EOVERRELEASE (bounded
 * and already at its initial value: nothing changed); -EOVERFLOW (at MP_SEM_VALUE_MAX); -EINVAL. */
MP_API int mp_sem_release(mp_sem *s);
/* The current value in *out. Async-signal-safe. Errors: -EINVAL. */
MP_API int mp_sem_get_value(const mp_sem *s, unsigned *out);
/* Releases the handle, sets *pp to NULL. NULL-safe. Returns 0. */
MP_API int mp_sem_free(mp_sem **pp);

/* ---- Event -------------------------------------------------------------------------------- */

typedef struct mp_event mp_event;

/* A new Event, initially clear. Errors: -EINVAL, -ENOMEM. */
MP_API int mp_event_new(mp_event **out);
MP_API int mp_event_init_at(mp_event **out, void *mem, size_t size);
MP_API int mp_event_attach_at(mp_event **out, void *mem, size_t size);
/* Set the flag and release every process waiting at that moment. Async-signal-safe.
 * Errors: -EINVAL. */
MP_API int mp_event_set(mp_event *e);
/* Clear the flag. A wait in progress when the flag was set returns 0 even when clear() follows
 * set() at once (every set of a clear flag starts a new generation, and a waiter returns 0 when
 * the generation moved since it began). Async-signal-safe. Errors: -EINVAL. */
MP_API int mp_event_clear(mp_event *e);
/* 1 when set, 0 when clear, -EINVAL. Async-signal-safe. */
MP_API int mp_event_is_set(const mp_event *e);
/* Wait until the flag is set, at most timeout. Returns 0 (set), -ETIMEDOUT, -EINVAL. */
MP_API int mp_event_wait(mp_event *e, double timeout);
MP_API int mp_event_free(mp_event **pp);

/* ---- Condition ----------------------------------------------------------------------------- */

typedef struct mp_cond mp_cond;

/* A Condition over `lock` (borrowed: it must outlive the condition; a Lock or RLock), or over a
 * new RLock of its own when lock is NULL (Python's default). Errors: -EINVAL, -ENOMEM. */
MP_API int mp_cond_new(mp_cond **out, mp_lock *lock);
/* In caller-provided memory; the condition's RLock lives inside the same memory and the waiter
 * table fills the rest: (min(size, 4096) - 72) / 8 concurrent waiters, 23 in MP_SYNC_SHM_SIZE
 * bytes (mp_cond_new: about 500). attach_at needs at least the size init_at was given. */
MP_API int mp_cond_init_at(mp_cond **out, void *mem, size_t size);
MP_API int mp_cond_attach_at(mp_cond **out, void *mem, size_t size);

/* The condition's lock (borrowed), NULL for NULL c. */
MP_API mp_lock *mp_cond_lock(const mp_cond *c);
/* mp_lock_acquire / mp_lock_release on the condition's lock. */
MP_API int mp_cond_acquire(mp_cond *c, double timeout);
MP_API int mp_cond_release(mp_cond *c);

/* With the lock held: release it (fully, for an RLock held several times), sleep until notified
 * or timeout, then take the lock back (at its previous recursion level, without a time limit, as
 * Python does) before returning.
 * Returns 0 only when this waiter was notified: notify(n) releases at most n waiters (the
 * longest-waiting ones, FIFO), a waiter that starts waiting after a notify is not released by
 * it, and a signal handler or a timeout never passes for a notification (when a notify and the
 * timeout meet, exactly one of them wins). A waiter killed after it was notified but before it
 * returned does not swallow the notification: it passes, within 20 ms, to the oldest waiter
 * still waiting that was already waiting at the notify (waiters are told apart by thread id, so all
 * must be in one pid namespace). Errors: -ETIMEDOUT, -EOWNERDEAD (the lock was taken back from a
 * holder that died; reported in preference to -ETIMEDOUT, since the data needs repair),
 * MP_ENOTOWNER (lock not held: nothing happened), MP_EFULL (no free waiter slot: nothing happened,
 * the lock is still held), -EINVAL. Except for MP_ENOTOWNER and -EINVAL, the lock is held on
 * return. */
MP_API int mp_cond_wait(mp_cond *c, double timeout);

/* With the lock held: wait until pred(arg) returns true, evaluating it under the lock, first at
 * once and then after each wake-up, for at most timeout in total. Returns 0 when pred is true,
 * -ETIMEDOUT when still false at the deadline, or an error as mp_cond_wait (-EOWNERDEAD is
 * passed on after pred turned true, so the caller still learns about the dead holder). */
MP_API int mp_cond_wait_for(mp_cond *c, bool (*pred)(void *arg), void *arg, double timeout);

/* With the lock held: notify the n longest-waiting waiters (n >= 1; fewer when fewer wait) / all
 * waiters waiting now. Returns 0, MP_ENOTOWNER (lock not held by the caller), -EINVAL (NULL,
 * n < 1). */
MP_API int mp_cond_notify(mp_cond *c, int n);
MP_API int mp_cond_notify_all(mp_cond *c);
/* Releases the handle, sets *pp to NULL. NULL-safe. -EBUSY while the calling thread holds the
 * condition's own lock (see mp_lock_free). A lock passed to mp_cond_new is not freed. */
MP_API int mp_cond_free(mp_cond **pp);

/* ---- Barrier ------------------------------------------------------------------------------- */

typedef struct mp_barrier mp_barrier;

/* What Python's Barrier(parties, action, timeout) takes besides parties. Fill it with
 * mp_barrier_options_init (or MP_BARRIER_OPTIONS_INIT), then set what you need. */
typedef struct mp_barrier_options {
    /* The default timeout, used by mp_barrier_wait_default (Python's wait() without a timeout).
     * MP_FOREVER (the default): no limit. Shared by every handle on the barrier. NaN: -EINVAL. */
    double timeout;
    /* Run by exactly one party, the last to arrive, once per generation, before any party is
     * released; NULL (the default): none. It returns 0, or non-zero to fail: the barrier is then
     * broken (Python: the action raised), the others get MP_EBROKEN and the party that ran it
     * gets the action's value when negative, MP_EBROKEN when positive. It runs holding the
     * barrier's internal mutex: it must not call functions on the same barrier. A party that
     * dies inside it breaks the barrier (the others get MP_EBROKEN within 20 ms). A function
     * pointer is private to a process: handles inherited over fork carry it; every handle on a
     * barrier made with an action must have one (mp_barrier_attach_at_opts). */
    int (*action)(void *arg);
    void *action_arg;
} mp_barrier_options;

#define MP_BARRIER_OPTIONS_INIT                                                                    \
    {                                                                                              \
        .timeout = MP_FOREVER, .action = NULL, .action_arg = NULL                                  \
    }

/* Fill *o with the defaults (no limit, no action). NULL-safe. */
MP_API void mp_barrier_options_init(mp_barrier_options *o);

/* A Barrier for `parties` (>= 1) processes/threads. Errors: -EINVAL, -ENOMEM. */
MP_API int mp_barrier_new(mp_barrier **out, unsigned parties);
MP_API int mp_barrier_init_at(mp_barrier **out, void *mem, size_t size, unsigned parties);
/* Attach to a barrier made without an action (-EINVAL for one made with an action). */
MP_API int mp_barrier_attach_at(mp_barrier **out, void *mem, size_t size);
/* The same with options (opts NULL: the defaults). Errors as above, -EINVAL for a NaN timeout.
 * attach: opts->action is this handle's action (required when the barrier was made with one;
 * opts->timeout is ignored: the default timeout is the creator's). */
MP_API int mp_barrier_new_opts(mp_barrier **out, unsigned parties, const mp_barrier_options *opts);
MP_API int mp_barrier_init_at_opts(mp_barrier **out, void *mem, size_t size, unsigned parties,
                                   const mp_barrier_options *opts);
MP_API int mp_barrier_attach_at_opts(mp_barrier **out, void *mem, size_t size,
                                     const mp_barrier_options *opts);

/* Wait until `parties` callers have called wait, then all return together. Returns the arrival
 * index, 0 for the first arrival to parties-1 for the last (each caller gets a different one);
 * MP_EBROKEN when the barrier is or becomes broken (abort, another party's timeout, a party that
 * died inside its internal state, or reset while waiting); -ETIMEDOUT when this caller's timeout
 * expired first: it breaks the barrier for everyone (Python's rule), the others get MP_EBROKEN;
 * -EINVAL; a failed action's code (see mp_barrier_options) in the party that ran it. A broken
 * barrier stays broken until mp_barrier_reset. */
MP_API int mp_barrier_wait(mp_barrier *b, double timeout);
/* mp_barrier_wait with the default timeout given at creation (mp_barrier_options.timeout). */
MP_API int mp_barrier_wait_default(mp_barrier *b);
/* Put the barrier into the broken state, waking every waiter with MP_EBROKEN. Errors: -EINVAL. */
MP_API int mp_barrier_abort(mp_barrier *b);
/* Back to the empty, unbroken state; callers waiting now get MP_EBROKEN. Errors: -EINVAL. */
MP_API int mp_barrier_reset(mp_barrier *b);
/* parties; callers waiting now (read under the internal mutex, so it waits while an action
 * runs; may also return -ENOTRECOVERABLE). -EINVAL for NULL. */
MP_API int mp_barrier_parties(const mp_barrier *b);
MP_API int mp_barrier_n_waiting(const mp_barrier *b);
/* 1 when broken, 0 when not, -EINVAL for NULL. */
MP_API int mp_barrier_is_broken(const mp_barrier *b);
MP_API int mp_barrier_free(mp_barrier **pp);

#ifdef __cplusplus
}
#endif
#endif
