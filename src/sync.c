/* SPDX-License-Identifier: MIT */
/* sync.c - process-shared Lock, RLock, Semaphore, Event, Condition, Barrier (mproc/sync.h).
 *
 * Lock and RLock are thin wrappers over robust, process-shared pthread mutexes: the uncontended
 * path is glibc's single CAS each way, and the kernel's robust list hands a dead holder's lock to
 * the next acquirer with EOWNERDEAD. Semaphore and Event are lock-free futex words: a process
 * killed anywhere inside them cannot leave them inconsistent. Condition keeps a table of waiter
 * slots (one futex each) next to its lock. Barrier keeps its counters under a robust internal
 * mutex; a death inside that mutex breaks the barrier instead of corrupting it.
 *
 * Waiter counts (sem, event) only decide whether a release needs a futex_wake syscall; a
 * process killed while waiting leaves the count too high, which costs an occasional needless
 * syscall and nothing else. Store/load ordering between "waiters++ then sleep if word == x" and
 * "change word then read waiters" is seq_cst on both sides (Dekker), so no wake-up is lost.
 *
 * Every handle starts with mp__sync_handle (sync_internal.h) and is made by one constructor,
 * sync_open, from a per-kind table (sync_kind); sync_free is the one destructor. Atomics are
 * written with src/atomics.h. What a pthread mutex does not say through POSIX (its holder, the
 * glibc 2.36 trylock quirk) comes from the platform layer (src/platform/mutex.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomics.h"
#include "mproc/error.h"
#include "platform/platform.h"
#include "sync_internal.h"

/* ---- common -------------------------------------------------------------------------------- */

typedef struct state_hdr {
    _Atomic uint32_t magic;
    uint32_t kind;
} state_hdr;

/* Memory given to an _init_at / _attach_at call: present, 8-byte aligned, large enough. */
static int check_mem(void *mem, size_t size)
{
    if (!mem || ((uintptr_t)mem & 7) || size < MP_SYNC_SHM_SIZE) return -EINVAL;
    return 0;
}

/* An attach target must hold an initialised object of one of the two kinds given. */
static int check_attach(void *mem, size_t size, uint32_t k1, uint32_t k2)
{
    int r = check_mem(mem, size);
    if (r) return r;
    state_hdr *h = mem;
    if (mp__load_acq(&h->magic) != MP__SYNC_MAGIC) return -EINVAL;
    if (h->kind != k1 && h->kind != k2) return MP_ETYPE;
    return 0;
}

static void publish(void *mem, uint32_t kind)
{
    state_hdr *h = mem;
    h->kind = kind;
    mp__store_rel(&h->magic, MP__SYNC_MAGIC);
}

static inline bool handle_ok(const mp__sync_handle *h)
{
    return h && h->magic == MP__HANDLE_MAGIC;
}

/* How each kind is made: what the one constructor below needs to know. */
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
static int sync_open(void *out, const sync_kind *k, enum sync_how how, void *mem, size_t size,
                     const void *arg)
{
    if (!out) return -EINVAL;
    int r;
    if (how == SYNC_NEW) {
        if ((r = mp__shm_map_anon(k->map_len, &mem))) return r;
        size = k->map_len;
    } else if (how == SYNC_INIT_AT) {
        if ((r = check_mem(mem, size))) return r;
    } else if ((r = check_attach(mem, size, k->k1, k->k2)) ||
               (k->check && (r = k->check(mem, size, arg)))) {
        return r;
    }
    if (how != SYNC_ATTACH_AT) r = k->init(mem, size, arg);
    mp__sync_handle *h = r ? NULL : calloc(1, k->handle_size);
    if (!h) {
        if (how == SYNC_NEW) mp__shm_unmap(mem, k->map_len);
        return r ? r : -ENOMEM;
    }
    h->magic = MP__HANDLE_MAGIC;
    h->flags = how == SYNC_NEW ? MP__H_OWNS_MAP : 0;
    h->state = mem;
    h->map_len = how == SYNC_NEW ? k->map_len : 0;
    if (k->setup) k->setup(h, arg);
    *(void **)out = h;
    return 0;
}

/* The one destructor: unmaps what _new mapped, frees the handle, clears the caller's pointer. */
static int sync_free(void *pp)
{
    mp__sync_handle **hp = pp;
    if (!hp || !*hp) return 0;
    mp__sync_handle *h = *hp;
    if (!handle_ok(h) || (h->flags & MP__H_EMBEDDED)) return -EINVAL;
    if (h->flags & MP__H_OWNS_MAP) mp__shm_unmap(h->state, h->map_len);
    h->magic = 0;
    free(h);
    *hp = NULL;
    return 0;
}

/* A timeout that asks not to wait at all: 0, any negative other than MP_FOREVER, NaN. */
static inline bool timeout_is_poll(double timeout)
{
    return !(timeout > 0) && !mp__timeout_is_forever(timeout);
}

/* ---- Lock and RLock ---------------------------------------------------------------------- */

static inline mp__lock_state *lock_st(const mp_lock *l)
{
    return l->h.state;
}

int mp__lock_state_init(mp__lock_state *s, bool recursive)
{
    /* ERRORCHECK makes a self-deadlock on a plain Lock an error instead of a hang; the robust
     * code path checks the owner anyway, so it costs nothing extra. */
    int r = mp__robust_mutex_init(&s->m,
                                  recursive ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_ERRORCHECK);
    if (r) return r;
    publish(s, recursive ? MP__K_RLOCK : MP__K_LOCK);
    return 0;
}

void mp__lock_handle_embed(mp_lock *l, mp__lock_state *s)
{
    l->h = (mp__sync_handle){MP__HANDLE_MAGIC, MP__H_EMBEDDED, s, 0};
}

static int lock_init(void *mem, size_t size, const void *arg)
{
    return mp__lock_state_init(mem, *(const bool *)arg);
}

static const sync_kind lock_kind = {
    sizeof(mp_lock), MP_SYNC_SHM_SIZE, MP__K_LOCK, MP__K_RLOCK, lock_init, NULL, NULL,
};

int mp_lock_new(mp_lock **out)
{
    bool recursive = false;
    return sync_open(out, &lock_kind, SYNC_NEW, NULL, 0, &recursive);
}

int mp_rlock_new(mp_lock **out)
{
    bool recursive = true;
    return sync_open(out, &lock_kind, SYNC_NEW, NULL, 0, &recursive);
}

int mp_lock_init_at(mp_lock **out, void *mem, size_t size, bool recursive)
{
    return sync_open(out, &lock_kind, SYNC_INIT_AT, mem, size, &recursive);
}

int mp_lock_attach_at(mp_lock **out, void *mem, size_t size)
{
    return sync_open(out, &lock_kind, SYNC_ATTACH_AT, mem, size, NULL);
}

static inline bool lock_ok(const mp_lock *l)
{
    return l && handle_ok(&l->h);
}

static bool owned(const mp__lock_state *s)
{
    return mp__mutex_owner_is_self(&s->m);
}

bool mp__lock_owned(const mp_lock *l)
{
    return owned(lock_st(l));
}

#ifdef MP_TEST_HOOKS
pthread_mutex_t *mp__lock_mutex(mp_lock *l)
{
    return lock_ok(l) ? &lock_st(l)->m : NULL;
}
#endif

/* Map a pthread result to mproc's: a dead holder's lock is ours now; make it consistent at once
 * so that only this caller hears about the death. EBUSY (a trylock) and ETIMEDOUT are both "not
 * within the time given", also for an owner polling its own Lock; a wait with time left on its
 * own Lock gets EDEADLK from the mutex (errorcheck) and passes it on. */
static int lock_result(mp__lock_state *s, int r)
{
    switch (r) {
    case 0:
        return 0;
    case EOWNERDEAD:
        pthread_mutex_consistent(&s->m);
        return -EOWNERDEAD;
    case EBUSY:
        return -ETIMEDOUT;
    default:
        return -r; /* ETIMEDOUT, EDEADLK, EAGAIN, ENOTRECOVERABLE */
    }
}

/* A contended acquire sleeps in mp__robust_mutex_lock's bounded slices, never in one long
 * pthread_mutex_lock: glibc's unlock wakes a single waiter, and when that waiter is killed before
 * it takes the mutex while another process takes it on the uncontended path (no waiters bit set
 * any more), nobody would ever wake the others. A slice that ends re-registers the sleeper. */
static int lock_state_acquire(mp__lock_state *s, double timeout)
{
    if (timeout_is_poll(timeout)) {
        int r = mp__robust_mutex_trylock(&s->m);
        /* The calling thread holds its own Lock (errorcheck): a poll finds it busy. */
        return lock_result(s, r == EDEADLK ? EBUSY : r);
    }
    mp__deadline dl = mp__deadline_in(timeout);
    return lock_result(s, mp__robust_mutex_lock(&s->m, &dl));
}

/* Everything but the uncontended case, kept out of line so that the fast path below needs no
 * stack frame. */
__attribute__((noinline)) static int lock_acquire_slow(mp__lock_state *s, double timeout, int r)
{
    /* EOWNERDEAD: trylock took it from a dead holder; EAGAIN, ENOTRECOVERABLE: final. EDEADLK
     * (our own Lock) depends on the timeout: see lock_state_acquire. */
    if (r != EBUSY && r != EDEADLK) return lock_result(s, r);
    return lock_state_acquire(s, timeout);
}

int mp_lock_acquire(mp_lock *l, double timeout)
{
    if (__builtin_expect(!lock_ok(l), 0)) return -EINVAL;
    mp__lock_state *s = lock_st(l);
    /* Uncontended: one CAS, as pthread_mutex_lock's own fast path. */
    int r = mp__robust_mutex_trylock(&s->m);
    if (__builtin_expect(r == 0, 1)) return 0;
    return lock_acquire_slow(s, timeout, r);
}

int mp_lock_release(mp_lock *l)
{
    if (__builtin_expect(!lock_ok(l), 0)) return -EINVAL;
    int r = pthread_mutex_unlock(&lock_st(l)->m);
    if (__builtin_expect(r == 0, 1)) return 0;
    return r == EPERM ? MP_ENOTOWNER : -r;
}

int mp_lock_is_owned(const mp_lock *l)
{
    if (!lock_ok(l)) return -EINVAL;
    return owned(lock_st(l));
}

int mp_lock_is_locked(const mp_lock *l)
{
    if (!lock_ok(l)) return -EINVAL;
    return mp__mutex_is_locked(&lock_st(l)->m);
}

int mp_lock_is_recursive(const mp_lock *l)
{
    if (!lock_ok(l)) return -EINVAL;
    return lock_st(l)->kind == MP__K_RLOCK;
}

int mp_lock_free(mp_lock **pp)
{
    /* A held robust mutex is linked into this thread's robust list, which glibc and the kernel
     * walk through the mutexes themselves: unmapping one would break the list. */
    if (pp && lock_ok(*pp) && ((*pp)->h.flags & MP__H_OWNS_MAP) && owned(lock_st(*pp)))
        return -EBUSY;
    return sync_free(pp);
}

/* Release every level the caller holds; returns how many (0: it held none). */
static int lock_release_all(mp__lock_state *s)
{
    int n = 0;
    while (pthread_mutex_unlock(&s->m) == 0)
        n++;
    return n;
}

/* Take the lock back at `levels` levels, without a time limit (Python's Condition does the
 * same: a wait always returns holding the lock). Returns 0 or -EOWNERDEAD. */
static int lock_reacquire(mp__lock_state *s, int levels)
{
    int r = lock_state_acquire(s, MP_FOREVER);
    for (int i = 1; i < levels; i++)
        pthread_mutex_lock(&s->m); /* recursive and already ours: cannot fail or block */
    return r == -EOWNERDEAD ? r : 0;
}

/* ---- Semaphore ----------------------------------------------------------------------------- */

typedef struct sem_state {
    _Atomic uint32_t magic;
    uint32_t kind;
    _Atomic uint32_t value; /* futex word */
    _Atomic uint32_t waiters;
    uint32_t bound; /* BoundedSemaphore: the initial value */
} sem_state;

struct mp_sem {
    mp__sync_handle h; /* h.state: sem_state */
};

static inline sem_state *sem_st(const mp_sem *s)
{
    return s->h.state;
}

typedef struct sem_args {
    unsigned value;
    bool bounded;
} sem_args;

static int sem_init(void *mem, size_t size, const void *arg)
{
    const sem_args *a = arg;
    sem_state *s = mem;
    mp__store(&s->value, a->value);
    mp__store(&s->waiters, 0);
    s->bound = a->value;
    publish(s, a->bounded ? MP__K_BSEM : MP__K_SEM);
    return 0;
}

static const sync_kind sem_kind = {
    sizeof(mp_sem), MP_SYNC_SHM_SIZE, MP__K_SEM, MP__K_BSEM, sem_init, NULL, NULL,
};

int mp_sem_new(mp_sem **out, unsigned value)
{
    if (value > MP_SEM_VALUE_MAX) return -EINVAL;
    return sync_open(out, &sem_kind, SYNC_NEW, NULL, 0, &(sem_args){value, false});
}

int mp_bsem_new(mp_sem **out, unsigned value)
{
    if (value > MP_SEM_VALUE_MAX) return -EINVAL;
    return sync_open(out, &sem_kind, SYNC_NEW, NULL, 0, &(sem_args){value, true});
}

int mp_sem_init_at(mp_sem **out, void *mem, size_t size, unsigned value, bool bounded)
{
    if (value > MP_SEM_VALUE_MAX) return -EINVAL;
    return sync_open(out, &sem_kind, SYNC_INIT_AT, mem, size, &(sem_args){value, bounded});
}

int mp_sem_attach_at(mp_sem **out, void *mem, size_t size)
{
    return sync_open(out, &sem_kind, SYNC_ATTACH_AT, mem, size, NULL);
}

static inline bool sem_ok(const mp_sem *s)
{
    return s && handle_ok(&s->h);
}

static bool sem_try(sem_state *s)
{
    uint32_t v = mp__load_relaxed(&s->value);
    while (v > 0)
        if (mp__cas_weak_acq(&s->value, &v, v - 1)) return true;
    return false;
}

int mp_sem_acquire(mp_sem *sem, double timeout)
{
    if (!sem_ok(sem)) return -EINVAL;
    sem_state *s = sem_st(sem);
    if (sem_try(s)) return 0;
    if (timeout_is_poll(timeout)) return -ETIMEDOUT;
    mp__deadline dl = mp__deadline_in(timeout);
    for (;;) {
        /* Sleep in slices: a release wakes one sleeper, and when that one is killed before it
         * takes the unit, the others would sleep on while the value is positive. */
        mp__deadline slice = mp__deadline_slice(&dl);
        mp__fetch_add(&s->waiters, 1);
        mp__futex_wait(&s->value, 0, &slice);
        mp__fetch_sub(&s->waiters, 1);
        if (sem_try(s)) return 0;
        if (mp__deadline_left_ns(&dl) == 0) return -ETIMEDOUT;
    }
}

int mp_sem_release(mp_sem *sem)
{
    if (!sem_ok(sem)) return -EINVAL;
    sem_state *s = sem_st(sem);
    uint32_t v = mp__load_relaxed(&s->value);
    do {
        if (s->kind == MP__K_BSEM && v >= s->bound) return MP_EOVERRELEASE;
        if (v >= MP_SEM_VALUE_MAX) return -EOVERFLOW;
    } while (!mp__cas_weak(&s->value, &v, v + 1));
    if (mp__load(&s->waiters) > 0) mp__futex_wake(&s->value, 1);
    return 0;
}

int mp_sem_get_value(const mp_sem *sem, unsigned *out)
{
    if (!sem_ok(sem) || !out) return -EINVAL;
    *out = mp__load(&sem_st(sem)->value);
    return 0;
}

int mp_sem_free(mp_sem **pp)
{
    return sync_free(pp);
}

/* ---- Event --------------------------------------------------------------------------------- */

/* The flag alone cannot tell a waiter that woke after set() + clear() that it was released. The
 * futex word holds the flag (bit 0) and a generation (bits 1..31) that every set() of a clear
 * flag bumps in the same atomic step: a waiter returns 0 when the flag is set or the word moved
 * at all since it started (clear() alone never moves a clear word). Flag and generation must
 * change together: were they separate, a waiter could see the flag, return, start its next wait
 * and only then see the late generation bump of the old set(), and return 0 for nothing. */
typedef struct event_state {
    _Atomic uint32_t magic;
    uint32_t kind;
    _Atomic uint32_t word; /* futex word: (generation << 1) | flag */
    _Atomic uint32_t waiters;
} event_state;

struct mp_event {
    mp__sync_handle h; /* h.state: event_state */
};

static inline event_state *event_st(const mp_event *e)
{
    return e->h.state;
}

static int event_init(void *mem, size_t size, const void *arg)
{
    event_state *s = mem;
    mp__store(&s->word, 0);
    mp__store(&s->waiters, 0);
    publish(s, MP__K_EVENT);
    return 0;
}

static const sync_kind event_kind = {
    sizeof(mp_event), MP_SYNC_SHM_SIZE, MP__K_EVENT, MP__K_EVENT, event_init, NULL, NULL,
};

int mp_event_new(mp_event **out)
{
    return sync_open(out, &event_kind, SYNC_NEW, NULL, 0, NULL);
}

int mp_event_init_at(mp_event **out, void *mem, size_t size)
{
    return sync_open(out, &event_kind, SYNC_INIT_AT, mem, size, NULL);
}

int mp_event_attach_at(mp_event **out, void *mem, size_t size)
{
    return sync_open(out, &event_kind, SYNC_ATTACH_AT, mem, size, NULL);
}

static inline bool event_ok(const mp_event *e)
{
    return e && handle_ok(&e->h);
}

int mp_event_set(mp_event *e)
{
    if (!event_ok(e)) return -EINVAL;
    event_state *s = event_st(e);
    uint32_t w = mp__load(&s->word);
    do {
        if (w & 1) return 0;
    } while (!mp__cas_weak(&s->word, &w, (w + 2) | 1));
    if (mp__load(&s->waiters) > 0) mp__futex_wake(&s->word, INT32_MAX);
    return 0;
}

int mp_event_clear(mp_event *e)
{
    if (!event_ok(e)) return -EINVAL;
    mp__fetch_and(&event_st(e)->word, ~1u);
    return 0;
}

int mp_event_is_set(const mp_event *e)
{
    if (!event_ok(e)) return -EINVAL;
    return mp__load(&event_st(e)->word) & 1;
}

int mp_event_wait(mp_event *e, double timeout)
{
    if (!event_ok(e)) return -EINVAL;
    event_state *s = event_st(e);
    if (mp__load(&s->word) & 1) return 0;
    if (timeout_is_poll(timeout)) return -ETIMEDOUT;
    mp__deadline dl = mp__deadline_in(timeout);
    /* waiters++ before reading the word, set() changes the word before reading waiters (both
     * seq_cst): either set() sees us and wakes us, or we see its word. */
    mp__fetch_add(&s->waiters, 1);
    uint32_t w0 = mp__load(&s->word);
    int r = 0;
    if (!(w0 & 1))
        while (mp__load(&s->word) == w0)
            if (mp__futex_wait(&s->word, w0, &dl) == -ETIMEDOUT && mp__load(&s->word) == w0) {
                r = -ETIMEDOUT;
                break;
            }
    mp__fetch_sub(&s->waiters, 1);
    return r;
}

int mp_event_free(mp_event **pp)
{
    return sync_free(pp);
}

/* ---- Condition ----------------------------------------------------------------------------- */

/* Every waiter owns a slot in a table that follows the state: its thread id and a 32-bit word,
 * (ticket << 2) | OCCUPIED | NOTIFIED, which is also the futex it sleeps on. notify(n) marks the
 * n oldest waiting slots (lowest tickets) NOTIFIED and wakes each one; only a waiter whose slot
 * was marked returns 0, so notify(n) releases at most n waiters, a timeout or a signal never
 * passes for a notification, and a waiter that arrives after a notify cannot take it.
 *
 * Races are settled by compare-and-swap on the slot word: a waiter whose deadline passes frees
 * its slot only if it is still unmarked (otherwise the notify won and it returns 0). A notified
 * waiter keeps its slot marked until it holds the lock again, so a waiter killed in between
 * leaves a marked slot with a dead thread id behind; the surviving waiters wake every
 * MP__WAIT_SLICE_NS, find such slots, free them and give each of their wake-ups to the oldest
 * waiter still waiting. Registration and notify run under the condition's lock; the slice-end
 * clean-up and the slot frees do not need it. */
#define COND_OCC         2u
#define COND_NOTE        1u
#define COND_TICKET_MASK 0x3fffffffu
#define COND_MAP_SIZE    4096 /* mp_cond_new: one page, ~500 waiters */

typedef struct cond_slot {
    _Atomic uint32_t st;  /* 0: free; else (ticket << 2) | COND_OCC [| COND_NOTE]; futex word */
    _Atomic uint32_t tid; /* the waiting thread (valid while st != 0) */
} cond_slot;

typedef struct cond_state {
    _Atomic uint32_t magic;
    uint32_t kind;
    uint32_t cap;                 /* slots in the table, fixed at init */
    _Atomic uint32_t next_ticket; /* bumped under the lock by every wait */
    _Atomic uint32_t used;        /* occupied slots: lets notify skip the scan when 0 */
    _Atomic uint32_t hi;          /* slots [hi, cap) were never used: scans stop at hi */
    mp__lock_state lock;          /* the condition's own RLock, when it has one */
    cond_slot slots[];
} cond_state;

#define COND_SLOTS_OFF offsetof(cond_state, slots)
_Static_assert(COND_SLOTS_OFF == 72, "docs/sync.md and sync.h give the table as (size - 72) / 8");
_Static_assert(COND_SLOTS_OFF + 16 * sizeof(cond_slot) <= MP_SYNC_SHM_SIZE, "cond_state too big");
_Static_assert(sizeof(mp__barrier_state) <= MP_SYNC_SHM_SIZE, "barrier_state too big");

struct mp_cond {
    mp__sync_handle h; /* h.state: cond_state */
    mp_lock *lock;     /* the lock in use: &own or the caller's */
    mp_lock own;       /* handle on the state's own lock */
};

static inline cond_state *cond_st(const mp_cond *c)
{
    return c->h.state;
}

static int cond_init(void *mem, size_t size, const void *arg)
{
    cond_state *s = mem;
    if (size > COND_MAP_SIZE) size = COND_MAP_SIZE;
    s->cap = (uint32_t)((size - COND_SLOTS_OFF) / sizeof(cond_slot));
    mp__store(&s->next_ticket, 0);
    mp__store(&s->used, 0);
    mp__store(&s->hi, 0);
    for (uint32_t i = 0; i < s->cap; i++) {
        mp__store(&s->slots[i].st, 0);
        mp__store(&s->slots[i].tid, 0);
    }
    int r = mp__lock_state_init(&s->lock, true);
    if (r) return r;
    publish(s, MP__K_COND);
    return 0;
}

/* The table's extent was fixed by the initialiser's size: the memory given to attach must hold
 * it, or this process would scan past its view. */
static int cond_check(const void *mem, size_t size, const void *arg)
{
    const cond_state *s = mem;
    return COND_SLOTS_OFF + (size_t)s->cap * sizeof(cond_slot) > size ? -EINVAL : 0;
}

static void cond_setup(mp__sync_handle *h, const void *arg)
{
    mp_cond *c = (mp_cond *)h;
    mp__lock_handle_embed(&c->own, &cond_st(c)->lock);
    c->lock = arg ? (mp_lock *)arg : &c->own;
}

static const sync_kind cond_kind = {
    sizeof(mp_cond), COND_MAP_SIZE, MP__K_COND, MP__K_COND, cond_init, cond_check, cond_setup,
};

int mp_cond_new(mp_cond **out, mp_lock *lock)
{
    if (lock && !lock_ok(lock)) return -EINVAL;
    return sync_open(out, &cond_kind, SYNC_NEW, NULL, 0, lock);
}

int mp_cond_init_at(mp_cond **out, void *mem, size_t size)
{
    return sync_open(out, &cond_kind, SYNC_INIT_AT, mem, size, NULL);
}

int mp_cond_attach_at(mp_cond **out, void *mem, size_t size)
{
    return sync_open(out, &cond_kind, SYNC_ATTACH_AT, mem, size, NULL);
}

static inline bool cond_ok(const mp_cond *c)
{
    return c && handle_ok(&c->h) && lock_ok(c->lock);
}

mp_lock *mp_cond_lock(const mp_cond *c)
{
    return cond_ok(c) ? c->lock : NULL;
}

int mp_cond_acquire(mp_cond *c, double timeout)
{
    if (!cond_ok(c)) return -EINVAL;
    return mp_lock_acquire(c->lock, timeout);
}

int mp_cond_release(mp_cond *c)
{
    if (!cond_ok(c)) return -EINVAL;
    return mp_lock_release(c->lock);
}

/* True when thread `tid` is gone (exited, or a zombie that will never run again). Thread ids,
 * not pids, because threads of one process wait too; /proc/TID exists for any thread of the pid
 * namespace. Without /proc only kill(tid, 0)'s ESRCH counts (a zombie then looks alive, which
 * only delays the hand-over until it is reaped). */
static bool tid_dead(uint32_t tid)
{
    if (tid == 0) return false;
    char path[32], buf[256];
    snprintf(path, sizeof path, "/proc/%u/stat", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT) return false;
        if (access("/proc/self/stat", F_OK) == 0) return true; /* /proc works: no such thread */
        return kill((pid_t)tid, 0) < 0 && errno == ESRCH;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return n == 0 || errno == ESRCH; /* the thread went between open and read */
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X' || p[2] == 'x');
}

/* Mark up to n slots NOTIFIED that were waiting before ticket `limit` was handed out, oldest
 * first, and wake each. Returns how many. The marked word carries `limit` in place of the
 * ticket: should the waiter die before it returns, its wake-up may pass only to a waiter that
 * was already waiting when the notify was made, never to one that came later. */
static int cond_grant(cond_state *s, int n, uint32_t limit)
{
    int done = 0;
    uint32_t note = ((limit & COND_TICKET_MASK) << 2) | COND_OCC | COND_NOTE;
    while (done < n && mp__load(&s->used) > 0) {
        /* Ages relative to one reading of next_ticket (larger is older). */
        uint32_t next = mp__load(&s->next_ticket);
        uint32_t lim_age = (next - limit) & COND_TICKET_MASK;
        int best = -1;
        uint32_t best_st = 0, best_age = 0;
        for (uint32_t i = 0, end = mp__load(&s->hi); i < end; i++) {
            uint32_t st = mp__load_relaxed(&s->slots[i].st);
            if (!st || (st & COND_NOTE)) continue;
            uint32_t age = (next - (st >> 2)) & COND_TICKET_MASK;
            if (age <= lim_age) continue; /* came after the notify */
            if (best < 0 || age > best_age) best = (int)i, best_st = st, best_age = age;
        }
        if (best < 0) break;
        cond_slot *sl = &s->slots[best];
        if (mp__cas(&sl->st, &best_st, note)) {
            mp__futex_wake(&sl->st, 1);
            done++;
        }
        /* else the waiter timed out or was handed a wake-up meanwhile: look again */
    }
    return done;
}

/* notify_all (caller holds the lock, so every registered waiter came before `limit`): mark
 * every waiting slot in one pass. */
static void cond_grant_all(cond_state *s, uint32_t limit)
{
    if (mp__load(&s->used) == 0) return;
    uint32_t note = ((limit & COND_TICKET_MASK) << 2) | COND_OCC | COND_NOTE;
    for (uint32_t i = 0, end = mp__load(&s->hi); i < end; i++) {
        cond_slot *sl = &s->slots[i];
        uint32_t st = mp__load(&sl->st);
        while (st && !(st & COND_NOTE))
            if (mp__cas_weak(&sl->st, &st, note)) {
                mp__futex_wake(&sl->st, 1);
                break;
            }
    }
}

static void cond_slot_free(cond_state *s, cond_slot *sl)
{
    mp__store(&sl->st, 0);
    mp__fetch_sub(&s->used, 1);
}

/* Free the slots of waiters that died, except `self`: a notified one's wake-up goes on to the
 * oldest live waiter. With `all`, waiting (not notified) slots of dead waiters are freed too
 * (the table is full); otherwise they are left for a notify to reach, which then hands the
 * wake-up on here. */
static void cond_reap(cond_state *s, int self, bool all)
{
    for (uint32_t i = 0, end = mp__load(&s->hi); i < end; i++) {
        if ((int)i == self) continue;
        cond_slot *sl = &s->slots[i];
        uint32_t st = mp__load(&sl->st);
        if (!st || (!(st & COND_NOTE) && !all)) continue;
        if (!tid_dead(mp__load(&sl->tid))) continue;
        /* The ticket in st makes the swap fail if the slot was freed and taken again. */
        if (!mp__cas(&sl->st, &st, 0)) continue;
        mp__fetch_sub(&s->used, 1);
        if (st & COND_NOTE) cond_grant(s, 1, st >> 2);
    }
}

/* Take a slot (caller holds the lock). Returns its index or MP_EFULL. */
static int cond_register(cond_state *s)
{
    uint32_t ticket = mp__fetch_add(&s->next_ticket, 1) & COND_TICKET_MASK;
    uint32_t want = (ticket << 2) | COND_OCC;
    uint32_t tid = (uint32_t)mp__tid();
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < s->cap; i++) {
            cond_slot *sl = &s->slots[i];
            uint32_t st = 0;
            if (mp__load_relaxed(&sl->st) != 0) continue;
            /* Only registrants (serialised by the lock) fill free slots, so the tid written
             * first belongs to whoever wins the swap below. */
            mp__store(&sl->tid, tid);
            if (mp__cas(&sl->st, &st, want)) {
                mp__fetch_add(&s->used, 1);
                /* Before the lock is released, so a notify (under the lock) scans this far. */
                if (mp__load(&s->hi) <= i) mp__store(&s->hi, i + 1);
                return (int)i;
            }
        }
        cond_reap(s, -1, true); /* full: reclaim the slots of dead waiters and look again */
    }
    return MP_EFULL;
}

/* Sleep in slot i until it is notified (0) or the deadline passes with it unmarked (-ETIMEDOUT;
 * the slot is then freed). The lock is not held. */
static int cond_sleep(cond_state *s, int i, const mp__deadline *dl)
{
    cond_slot *sl = &s->slots[i];
    for (;;) {
        uint32_t st = mp__load(&sl->st);
        if (st & COND_NOTE) return 0;
        if (mp__deadline_left_ns(dl) == 0) {
            if (mp__cas(&sl->st, &st, 0)) {
                mp__fetch_sub(&s->used, 1);
                return -ETIMEDOUT;
            }
            continue; /* notified at the last moment: the notify wins */
        }
        mp__deadline slice = mp__deadline_slice(dl);
        if (mp__futex_wait(&sl->st, st, &slice) == -ETIMEDOUT) cond_reap(s, i, false);
    }
}

static int cond_wait_dl(mp_cond *c, const mp__deadline *dl)
{
    cond_state *s = cond_st(c);
    mp__lock_state *ls = lock_st(c->lock);
    if (!owned(ls)) return MP_ENOTOWNER;
    /* Registered under the lock: a notify made after our release sees the slot. */
    int i = cond_register(s);
    if (i < 0) return i;
    int levels = lock_release_all(ls);
    int r = cond_sleep(s, i, dl);
    int rl = lock_reacquire(ls, levels);
    /* A notified waiter gives its slot back only now that it holds the lock again: killed any
     * earlier, it leaves the marked slot for the others to find and pass on. */
    if (r == 0) cond_slot_free(s, &s->slots[i]);
    return rl ? rl : r; /* a dead holder matters more than the timeout: the data needs repair */
}

int mp_cond_wait(mp_cond *c, double timeout)
{
    if (!cond_ok(c)) return -EINVAL;
    /* A poll (timeout 0 or an expired one) still gives the lock away for an instant. */
    mp__deadline dl = mp__deadline_in(timeout);
    return cond_wait_dl(c, &dl);
}

int mp_cond_wait_for(mp_cond *c, bool (*pred)(void *arg), void *arg, double timeout)
{
    if (!cond_ok(c) || !pred) return -EINVAL;
    if (!owned(lock_st(c->lock))) return MP_ENOTOWNER;
    mp__deadline dl = mp__deadline_in(timeout);
    int dead = 0;
    while (!pred(arg)) {
        if (mp__deadline_left_ns(&dl) == 0) return -ETIMEDOUT;
        int r = cond_wait_dl(c, &dl);
        if (r == -EOWNERDEAD)
            dead = r;
        else if (r == -ETIMEDOUT)
            return pred(arg) ? dead : -ETIMEDOUT;
        else if (r)
            return r;
    }
    return dead;
}

static int cond_notify(mp_cond *c, int n)
{
    if (!cond_ok(c) || n < 1) return -EINVAL;
    if (!owned(lock_st(c->lock))) return MP_ENOTOWNER;
    /* Under the lock no waiter registers meanwhile: every registered one came before. */
    uint32_t limit = mp__load(&cond_st(c)->next_ticket);
    if (n == INT32_MAX)
        cond_grant_all(cond_st(c), limit);
    else
        cond_grant(cond_st(c), n, limit);
    return 0;
}

int mp_cond_notify(mp_cond *c, int n)
{
    return cond_notify(c, n);
}

int mp_cond_notify_all(mp_cond *c)
{
    return cond_notify(c, INT32_MAX);
}

int mp_cond_free(mp_cond **pp)
{
    if (pp && cond_ok(*pp) && ((*pp)->h.flags & MP__H_OWNS_MAP) && (*pp)->lock == &(*pp)->own &&
        owned(&cond_st(*pp)->lock))
        return -EBUSY; /* as mp_lock_free */
    return sync_free(pp);
}

/* ---- Barrier ------------------------------------------------------------------------------- */

/* Counters change under the robust internal mutex m; waiters read gen, broken and the outcome
 * records without it (acquire loads against release stores made under m). The action runs in
 * the last arriving party while it holds m, before the generation moves: nobody is released
 * before it has finished, and a party that dies inside it leaves m to the kernel's robust list,
 * whose next locker breaks the barrier. While it runs (`acting`), the waiters sleep in slices
 * and probe m between them, so such a death wakes them even when no one else comes along. */

struct mp_barrier {
    mp__sync_handle h; /* h.state: mp__barrier_state */
    int (*action)(void *arg);
    void *action_arg;
};

static inline mp__barrier_state *bar_st(const mp_barrier *b)
{
    return b->h.state;
}

static void bar_wake(mp__barrier_state *s)
{
    mp__fetch_add(&s->seq, 1);
    mp__futex_wake(&s->seq, INT32_MAX);
}

/* Record that the current generation failed (caller holds m; once per generation). The record
 * is written before the count that publishes it. */
static void bar_record_failure(mp__barrier_state *s)
{
    uint32_t k = mp__load_relaxed(&s->fails);
    mp__store_rel(&s->fail_gen[k % MP__BAR_RING], mp__load_relaxed(&s->gen));
    mp__store_rel(&s->fails, k + 1);
}

/* Record that the current generation was released (caller holds m). */
static void bar_record_release(mp__barrier_state *s)
{
    uint32_t k = mp__load_relaxed(&s->releases);
    mp__store_rel(&s->rel_gen[k % MP__BAR_RING], mp__load_relaxed(&s->gen));
    mp__store_rel(&s->releases, k + 1);
}

/* Break the current generation (caller holds m): its waiters get MP_EBROKEN. */
static void bar_break_locked(mp__barrier_state *s)
{
    if (!mp__load_relaxed(&s->broken)) bar_record_failure(s);
    mp__store_rel(&s->broken, 1);
    mp__store_rel(&s->acting, 0);
    s->count = 0;
    bar_wake(s);
}

/* Start the next generation (caller holds m). */
static void bar_next_gen(mp__barrier_state *s)
{
    s->count = 0;
    mp__store_rel(&s->gen, mp__load_relaxed(&s->gen) + 1);
}

/* Lock the internal mutex, in slices (see lock_state_acquire). A party that died holding it may
 * have left the counters half updated (or died in the action): the barrier is then declared
 * broken rather than trusted. Returns 0 (locked) or a negative errno (not locked). */
static int bar_lock(mp__barrier_state *s, const mp__deadline *dl)
{
    int r = mp__robust_mutex_lock(&s->m, dl);
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(&s->m);
        bar_break_locked(s);
        return 0;
    }
    return -r;
}

static int bar_lock_forever(mp__barrier_state *s)
{
    return bar_lock(s, NULL);
}

typedef struct bar_args {
    unsigned parties;
    const mp_barrier_options *o;
} bar_args;

static int bar_init(void *mem, size_t size, const void *arg)
{
    const bar_args *a = arg;
    mp__barrier_state *s = mem;
    int r = mp__robust_mutex_init(&s->m, PTHREAD_MUTEX_NORMAL);
    if (r) return r;
    s->parties = a->parties;
    s->count = 0;
    s->has_action = a->o->action != NULL;
    s->timeout = a->o->timeout;
    mp__store(&s->gen, 0);
    mp__store(&s->broken, 0);
    mp__store(&s->fails, 0);
    mp__store(&s->releases, 0);
    mp__store(&s->acting, 0);
    for (int i = 0; i < MP__BAR_RING; i++) {
        mp__store(&s->fail_gen[i], 0);
        mp__store(&s->rel_gen[i], 0);
    }
    mp__store(&s->seq, 0);
    publish(s, MP__K_BARRIER);
    return 0;
}

/* A barrier made with an action runs it in whichever party arrives last: every handle on it must
 * carry one (a function pointer means nothing in another process, so it is not in the state). */
static int bar_check(const void *mem, size_t size, const void *arg)
{
    const mp__barrier_state *s = mem;
    const bar_args *a = arg;
    return s->has_action && !a->o->action ? -EINVAL : 0;
}

static void bar_setup(mp__sync_handle *h, const void *arg)
{
    const bar_args *a = arg;
    mp_barrier *b = (mp_barrier *)h;
    b->action = a->o->action;
    b->action_arg = a->o->action_arg;
}

static const sync_kind bar_kind = {
    sizeof(mp_barrier), MP_SYNC_SHM_SIZE, MP__K_BARRIER, MP__K_BARRIER,
    bar_init,           bar_check,        bar_setup,
};

void mp_barrier_options_init(mp_barrier_options *o)
{
    if (o) *o = (mp_barrier_options)MP_BARRIER_OPTIONS_INIT;
}

static const mp_barrier_options bar_defaults = MP_BARRIER_OPTIONS_INIT;

static bool bar_args_ok(unsigned parties, const mp_barrier_options *o)
{
    /* NaN would be a deadline already passed: a default that can never be waited with. */
    return parties >= 1 && parties <= INT32_MAX && !isnan(o->timeout);
}

int mp_barrier_new_opts(mp_barrier **out, unsigned parties, const mp_barrier_options *o)
{
    bar_args a = {parties, o ? o : &bar_defaults};
    if (!bar_args_ok(parties, a.o)) return -EINVAL;
    return sync_open(out, &bar_kind, SYNC_NEW, NULL, 0, &a);
}

int mp_barrier_new(mp_barrier **out, unsigned parties)
{
    return mp_barrier_new_opts(out, parties, NULL);
}

int mp_barrier_init_at_opts(mp_barrier **out, void *mem, size_t size, unsigned parties,
                            const mp_barrier_options *o)
{
    bar_args a = {parties, o ? o : &bar_defaults};
    if (!bar_args_ok(parties, a.o)) return -EINVAL;
    return sync_open(out, &bar_kind, SYNC_INIT_AT, mem, size, &a);
}

int mp_barrier_init_at(mp_barrier **out, void *mem, size_t size, unsigned parties)
{
    return mp_barrier_init_at_opts(out, mem, size, parties, NULL);
}

int mp_barrier_attach_at_opts(mp_barrier **out, void *mem, size_t size, const mp_barrier_options *o)
{
    bar_args a = {0, o ? o : &bar_defaults};
    return sync_open(out, &bar_kind, SYNC_ATTACH_AT, mem, size, &a);
}

int mp_barrier_attach_at(mp_barrier **out, void *mem, size_t size)
{
    return mp_barrier_attach_at_opts(out, mem, size, NULL);
}

static inline bool bar_ok(const mp_barrier *b)
{
    return b && handle_ok(&b->h);
}

/* How generation `gen`, which this caller entered when the failure and release counts were f
 * and r, ended (gen has moved on). Each record is read before the count that says whether it
 * was overwritten meanwhile. */
static int bar_outcome(mp__barrier_state *s, uint32_t gen, uint32_t f, uint32_t r, int index)
{
    if (mp__load_acq(&s->fails) == f) return index; /* no generation failed since we arrived */
    uint32_t g = mp__load_acq(&s->fail_gen[f % MP__BAR_RING]);
    if (mp__load_acq(&s->fails) - f <= MP__BAR_RING) return g == gen ? MP_EBROKEN : index;
    g = mp__load_acq(&s->rel_gen[r % MP__BAR_RING]);
    uint32_t rel = mp__load_acq(&s->releases);
    if (rel != r && rel - r <= MP__BAR_RING) return g == gen ? index : MP_EBROKEN;
    /* Both records were overwritten: more than MP__BAR_RING generations failed and more than
     * MP__BAR_RING were released while this caller slept without looking. Broken is the answer
     * that never claims a release that may not have happened. */
    return MP_EBROKEN;
}

/* The last party: run the action (holding m), then release the generation or, when the action
 * failed, break it. Returns the caller's result; m is unlocked on return. */
static int bar_release(mp_barrier *b, mp__barrier_state *s, int index)
{
    if (b->action) {
        /* Waiters asleep without a limit switch to probing sleeps (see the section comment). */
        mp__store_rel(&s->acting, 1);
        bar_wake(s);
        int a = b->action(b->action_arg);
        mp__store_rel(&s->acting, 0);
        if (a != 0) { /* Python: the action's exception breaks the barrier */
            bar_break_locked(s);
            pthread_mutex_unlock(&s->m);
            return a < 0 ? a : MP_EBROKEN;
        }
    }
    bar_record_release(s);
    bar_next_gen(s);
    pthread_mutex_unlock(&s->m);
    bar_wake(s);
    return index;
}

/* While an action runs: has its party died inside it? Probing m breaks the barrier if so
 * (bar_lock's EOWNERDEAD path); a busy m means the action is still running. */
static int bar_probe(mp__barrier_state *s)
{
    int r = mp__robust_mutex_trylock(&s->m);
    if (r == EBUSY) return 0;
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(&s->m);
        bar_break_locked(s);
        r = 0;
    }
    if (r == 0) pthread_mutex_unlock(&s->m);
    return -r;
}

int mp_barrier_wait(mp_barrier *b, double timeout)
{
    if (!bar_ok(b)) return -EINVAL;
    mp__barrier_state *s = bar_st(b);
    mp__deadline dl = mp__deadline_in(timeout);
    /* The internal mutex is held for a few instructions at a time (and robust), so it is taken
     * without a limit: a timeout here would mean "did not even arrive", not "broke the barrier". */
    int r = bar_lock_forever(s);
    if (r) return r;
    if (mp__load_relaxed(&s->broken)) {
        pthread_mutex_unlock(&s->m);
        return MP_EBROKEN;
    }
    int index = (int)s->count++;
    uint32_t gen = mp__load_relaxed(&s->gen), fails = mp__load_relaxed(&s->fails),
             releases = mp__load_relaxed(&s->releases);
    if (s->count == s->parties) return bar_release(b, s, index);
    pthread_mutex_unlock(&s->m);
    for (;;) {
        uint32_t seen = mp__load(&s->seq);
        if (mp__load_acq(&s->gen) != gen) return bar_outcome(s, gen, fails, releases, index);
        if (mp__load_acq(&s->broken)) return MP_EBROKEN;
        if (mp__load_acq(&s->acting)) {
            mp__deadline slice = mp__deadline_slice(&dl);
            if (mp__futex_wait(&s->seq, seen, &slice) != -ETIMEDOUT) continue;
            if (mp__deadline_left_ns(&dl) > 0) {
                if ((r = bar_probe(s))) return r;
                continue;
            }
        } else if (mp__futex_wait(&s->seq, seen, &dl) != -ETIMEDOUT) {
            continue;
        }
        /* Timed out: unless the barrier was released meanwhile, break it for everyone. (While
         * an action runs this waits for it, as Python's waiter waits for the condition's lock.) */
        if ((r = bar_lock_forever(s))) return r;
        if (mp__load_relaxed(&s->gen) != gen)
            r = bar_outcome(s, gen, fails, releases, index);
        else if (mp__load_relaxed(&s->broken))
            r = MP_EBROKEN;
        else {
            bar_break_locked(s);
            r = -ETIMEDOUT;
        }
        pthread_mutex_unlock(&s->m);
        return r;
    }
}

int mp_barrier_wait_default(mp_barrier *b)
{
    if (!bar_ok(b)) return -EINVAL;
    return mp_barrier_wait(b, bar_st(b)->timeout);
}

int mp_barrier_abort(mp_barrier *b)
{
    if (!bar_ok(b)) return -EINVAL;
    mp__barrier_state *s = bar_st(b);
    int r = bar_lock_forever(s);
    if (r) return r;
    if (!mp__load_relaxed(&s->broken)) bar_break_locked(s);
    pthread_mutex_unlock(&s->m);
    return 0;
}

int mp_barrier_reset(mp_barrier *b)
{
    if (!bar_ok(b)) return -EINVAL;
    mp__barrier_state *s = bar_st(b);
    int r = bar_lock_forever(s);
    if (r) return r;
    /* Whoever waits in the current generation fails; the next generation starts clean. */
    if (!mp__load_relaxed(&s->broken)) bar_record_failure(s);
    bar_next_gen(s);
    mp__store_rel(&s->broken, 0);
    bar_wake(s);
    pthread_mutex_unlock(&s->m);
    return 0;
}

int mp_barrier_parties(const mp_barrier *b)
{
    return bar_ok(b) ? (int)bar_st(b)->parties : -EINVAL;
}

int mp_barrier_n_waiting(const mp_barrier *b)
{
    if (!bar_ok(b)) return -EINVAL;
    mp__barrier_state *s = bar_st(b);
    /* count is guarded by the mutex (an arrival updates it and may reset it to 0 in one step). */
    int r = bar_lock_forever(s);
    if (r) return r;
    int n = mp__load_relaxed(&s->broken) ? 0 : (int)s->count;
    pthread_mutex_unlock(&s->m);
    return n;
}

int mp_barrier_is_broken(const mp_barrier *b)
{
    return bar_ok(b) ? (int)mp__load_acq(&bar_st(b)->broken) : -EINVAL;
}

int mp_barrier_free(mp_barrier **pp)
{
    return sync_free(pp);
}

#ifdef MP_TEST_HOOKS
pthread_mutex_t *mp__barrier_mutex(mp_barrier *b)
{
    return bar_ok(b) ? &bar_st(b)->m : NULL;
}

mp__barrier_state *mp__barrier_state_of(mp_barrier *b)
{
    return bar_ok(b) ? bar_st(b) : NULL;
}
#endif
