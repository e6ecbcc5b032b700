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

#include "mproc/error.h"
#include "platform/platform.h"
#include "sync_internal.h"

/* ---- common -------------------------------------------------------------------------------- */

static __thread pid_t tls_tid __attribute__((tls_model("initial-exec")));
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* A fork child's only thread inherits its parent thread's cached id: forget it. */
static void reset_tid_in_child(void)
{
    tls_tid = 0;
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, reset_tid_in_child);
}

static void sync_global_init(void)
{
    pthread_once(&atfork_once, register_atfork);
}

pid_t mp__tid(void)
{
    pid_t t = tls_tid;
    if (!t) tls_tid = t = gettid();
    return t;
}

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
    if (atomic_load_explicit(&h->magic, memory_order_acquire) != MP__SYNC_MAGIC) return -EINVAL;
    if (h->kind != k1 && h->kind != k2) return MP_ETYPE;
    return 0;
}

static void publish(void *mem, uint32_t kind)
{
    state_hdr *h = mem;
    h->kind = kind;
    atomic_store_explicit(&h->magic, MP__SYNC_MAGIC, memory_order_release);
}

static int map_state(void **mem)
{
    sync_global_init();
    return mp__shm_map_anon(MP_SYNC_SHM_SIZE, mem);
}

static void unmap_state(void *mem, uint32_t flags)
{
    if (flags & MP__H_OWNS_MAP) mp__shm_unmap(mem, MP_SYNC_SHM_SIZE);
}

/* ---- Lock and RLock ---------------------------------------------------------------------- */

int mp__lock_state_init(mp__lock_state *s, bool recursive)
{
    sync_global_init();
    pthread_mutexattr_t a;
    int r = pthread_mutexattr_init(&a);
    if (r) return -r;
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    /* ERRORCHECK makes a self-deadlock on a plain Lock an error instead of a hang; the robust
     * code path checks the owner anyway, so it costs nothing extra. */
    pthread_mutexattr_settype(&a, recursive ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_ERRORCHECK);
    r = pthread_mutex_init(&s->m, &a);
    pthread_mutexattr_destroy(&a);
    if (r) return -r;
    publish(s, recursive ? MP__K_RLOCK : MP__K_LOCK);
    return 0;
}

void mp__lock_handle_embed(mp_lock *h, mp__lock_state *s)
{
    h->magic = MP__HANDLE_MAGIC;
    h->flags = MP__H_EMBEDDED;
    h->s = s;
}

static int lock_handle_new(mp_lock **out, mp__lock_state *s, uint32_t flags)
{
    mp_lock *l = malloc(sizeof *l);
    if (!l) return -ENOMEM;
    l->magic = MP__HANDLE_MAGIC;
    l->flags = flags;
    l->s = s;
    *out = l;
    return 0;
}

static int lock_new(mp_lock **out, bool recursive)
{
    if (!out) return -EINVAL;
    void *mem;
    int r = map_state(&mem);
    if (r) return r;
    if ((r = mp__lock_state_init(mem, recursive)) ||
        (r = lock_handle_new(out, mem, MP__H_OWNS_MAP))) {
        mp__shm_unmap(mem, MP_SYNC_SHM_SIZE);
        return r;
    }
    return 0;
}

int mp_lock_new(mp_lock **out)
{
    return lock_new(out, false);
}

int mp_rlock_new(mp_lock **out)
{
    return lock_new(out, true);
}

int mp_lock_init_at(mp_lock **out, void *mem, size_t size, bool recursive)
{
    int r = check_mem(mem, size);
    if (!out || r) return -EINVAL;
    if ((r = mp__lock_state_init(mem, recursive))) return r;
    return lock_handle_new(out, mem, 0);
}

int mp_lock_attach_at(mp_lock **out, void *mem, size_t size)
{
    if (!out) return -EINVAL;
    int r = check_attach(mem, size, MP__K_LOCK, MP__K_RLOCK);
    if (r) return r;
    sync_global_init();
    return lock_handle_new(out, mem, 0);
}

static inline bool lock_ok(const mp_lock *l)
{
    return l && l->magic == MP__HANDLE_MAGIC;
}

bool mp__lock_owned(const mp_lock *l)
{
    return __atomic_load_n(&l->s->m.__data.__owner, __ATOMIC_RELAXED) == mp__tid();
}

static bool owned(const mp__lock_state *s)
{
    return __atomic_load_n(&s->m.__data.__owner, __ATOMIC_RELAXED) == mp__tid();
}

/* glibc 2.36's pthread_mutex_trylock, on a robust mutex left unrecoverable (unlocked by a
 * process that took it with EOWNERDEAD and never called pthread_mutex_consistent), returns
 * ENOTRECOVERABLE but leaves the lock word naming the caller (it tests `oldval == id` where it
 * means 0): every later locker, the caller included, would then wait forever. Everything here
 * that locks through a trylock (the fast path, and mp__robust_mutex_lock, which starts with one)
 * calls this on ENOTRECOVERABLE, so the mutex keeps answering ENOTRECOVERABLE instead. */
void mp__mutex_unstick(pthread_mutex_t *m)
{
    _Atomic uint32_t *w = (_Atomic uint32_t *)(void *)&m->__data.__lock;
    uint32_t v = atomic_load(w);
    if ((v & 0x3fffffffu) == (uint32_t)mp__tid() && atomic_compare_exchange_strong(w, &v, 0))
        mp__futex_wake(w, INT32_MAX);
}

/* Map a pthread result to mproc's: a dead holder's lock is ours now; make it consistent at once
 * so that only this caller hears about the death. */
static int lock_result(mp__lock_state *s, int r)
{
    switch (r) {
    case ENOTRECOVERABLE:
        mp__mutex_unstick(&s->m);
        return -r;
    case 0:
        return 0;
    case EOWNERDEAD:
        pthread_mutex_consistent(&s->m);
        return -EOWNERDEAD;
    case EBUSY:
    case ETIMEDOUT:
        if (s->kind == MP__K_LOCK && owned(s)) return -EDEADLK;
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
    if (timeout == 0) return lock_result(s, pthread_mutex_trylock(&s->m));
    mp__deadline dl = mp__deadline_in(timeout);
    return lock_result(s, mp__robust_mutex_lock(&s->m, &dl));
}

/* Everything but the uncontended case, kept out of line so that the fast path below needs no
 * stack frame. */
__attribute__((noinline)) static int lock_acquire_slow(mp__lock_state *s, double timeout, int r)
{
    /* EOWNERDEAD: trylock took it from a dead holder; EAGAIN, ENOTRECOVERABLE: final. */
    if (r != EBUSY) return lock_result(s, r);
    return lock_state_acquire(s, timeout);
}

int mp_lock_acquire(mp_lock *l, double timeout)
{
    if (__builtin_expect(!lock_ok(l), 0)) return -EINVAL;
    mp__lock_state *s = l->s;
    /* Uncontended: one CAS, as pthread_mutex_lock's own fast path. */
    int r = pthread_mutex_trylock(&s->m);
    if (__builtin_expect(r == 0, 1)) return 0;
    return lock_acquire_slow(s, timeout, r);
}

int mp_lock_release(mp_lock *l)
{
    if (__builtin_expect(!lock_ok(l), 0)) return -EINVAL;
    int r = pthread_mutex_unlock(&l->s->m);
    if (__builtin_expect(r == 0, 1)) return 0;
    return r == EPERM ? MP_ENOTOWNER : -r;
}

int mp_lock_is_owned(const mp_lock *l)
{
    if (!lock_ok(l)) return -EINVAL;
    return owned(l->s);
}

int mp_lock_is_recursive(const mp_lock *l)
{
    if (!lock_ok(l)) return -EINVAL;
    return l->s->kind == MP__K_RLOCK;
}

int mp_lock_free(mp_lock **pp)
{
    if (!pp || !*pp) return 0;
    mp_lock *l = *pp;
    if (!lock_ok(l) || (l->flags & MP__H_EMBEDDED)) return -EINVAL;
    /* A held robust mutex is linked into this thread's robust list, which glibc and the kernel
     * walk through the mutexes themselves: unmapping one would break the list. */
    if ((l->flags & MP__H_OWNS_MAP) && owned(l->s)) return -EBUSY;
    unmap_state(l->s, l->flags);
    l->magic = 0;
    free(l);
    *pp = NULL;
    return 0;
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
    uint32_t magic;
    uint32_t flags;
    sem_state *s;
};

static int handle_new(void **out, size_t size, void *state, uint32_t flags)
{
    struct {
        uint32_t magic, flags;
        void *s;
    } *h = calloc(1, size);
    if (!h) return -ENOMEM;
    h->magic = MP__HANDLE_MAGIC;
    h->flags = flags;
    h->s = state;
    *out = h;
    return 0;
}

static void sem_state_init(sem_state *s, unsigned value, bool bounded)
{
    atomic_store(&s->value, value);
    atomic_store(&s->waiters, 0);
    s->bound = value;
    publish(s, bounded ? MP__K_BSEM : MP__K_SEM);
}

static int sem_new(mp_sem **out, unsigned value, bool bounded)
{
    if (!out || value > MP_SEM_VALUE_MAX) return -EINVAL;
    void *mem;
    int r = map_state(&mem);
    if (r) return r;
    sem_state_init(mem, value, bounded);
    if ((r = handle_new((void **)out, sizeof(mp_sem), mem, MP__H_OWNS_MAP)))
        mp__shm_unmap(mem, MP_SYNC_SHM_SIZE);
    return r;
}

int mp_sem_new(mp_sem **out, unsigned value)
{
    return sem_new(out, value, false);
}

int mp_bsem_new(mp_sem **out, unsigned value)
{
    return sem_new(out, value, true);
}

int mp_sem_init_at(mp_sem **out, void *mem, size_t size, unsigned value, bool bounded)
{
    if (!out || check_mem(mem, size) || value > MP_SEM_VALUE_MAX) return -EINVAL;
    sync_global_init();
    sem_state_init(mem, value, bounded);
    return handle_new((void **)out, sizeof(mp_sem), mem, 0);
}

int mp_sem_attach_at(mp_sem **out, void *mem, size_t size)
{
    if (!out) return -EINVAL;
    int r = check_attach(mem, size, MP__K_SEM, MP__K_BSEM);
    if (r) return r;
    sync_global_init();
    return handle_new((void **)out, sizeof(mp_sem), mem, 0);
}

static inline bool sem_ok(const mp_sem *s)
{
    return s && s->magic == MP__HANDLE_MAGIC;
}

static bool sem_try(sem_state *s)
{
    uint32_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
    while (v > 0)
        if (atomic_compare_exchange_weak_explicit(&s->value, &v, v - 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return true;
    return false;
}

int mp_sem_acquire(mp_sem *sem, double timeout)
{
    if (!sem_ok(sem)) return -EINVAL;
    sem_state *s = sem->s;
    if (sem_try(s)) return 0;
    if (timeout == 0) return -ETIMEDOUT;
    mp__deadline dl = mp__deadline_in(timeout);
    for (;;) {
        /* Sleep in slices: a release wakes one sleeper, and when that one is killed before it
         * takes the unit, the others would sleep on while the value is positive. */
        mp__deadline slice = mp__deadline_slice(&dl);
        atomic_fetch_add(&s->waiters, 1);
        mp__futex_wait(&s->value, 0, &slice);
        atomic_fetch_sub(&s->waiters, 1);
        if (sem_try(s)) return 0;
        if (mp__deadline_left_ns(&dl) == 0) return -ETIMEDOUT;
    }
}

int mp_sem_release(mp_sem *sem)
{
    if (!sem_ok(sem)) return -EINVAL;
    sem_state *s = sem->s;
    uint32_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
    do {
        if (s->kind == MP__K_BSEM && v >= s->bound) return MP_EOVERRELEASE;
        if (v >= MP_SEM_VALUE_MAX) return -EOVERFLOW;
    } while (!atomic_compare_exchange_weak(&s->value, &v, v + 1));
    if (atomic_load(&s->waiters) > 0) mp__futex_wake(&s->value, 1);
    return 0;
}

int mp_sem_get_value(const mp_sem *sem, unsigned *out)
{
    if (!sem_ok(sem) || !out) return -EINVAL;
    *out = atomic_load(&sem->s->value);
    return 0;
}

/* Frees any handle of the common {magic, flags, state} shape. */
static int handle_free(void **pp)
{
    if (!pp || !*pp) return 0;
    struct {
        uint32_t magic, flags;
        void *s;
    } *h = *pp;
    if (h->magic != MP__HANDLE_MAGIC) return -EINVAL;
    unmap_state(h->s, h->flags);
    h->magic = 0;
    free(h);
    *pp = NULL;
    return 0;
}

int mp_sem_free(mp_sem **pp)
{
    return handle_free((void **)pp);
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
    uint32_t magic;
    uint32_t flags;
    event_state *s;
};

static void event_state_init(event_state *s)
{
    atomic_store(&s->word, 0);
    atomic_store(&s->waiters, 0);
    publish(s, MP__K_EVENT);
}

int mp_event_new(mp_event **out)
{
    if (!out) return -EINVAL;
    void *mem;
    int r = map_state(&mem);
    if (r) return r;
    event_state_init(mem);
    if ((r = handle_new((void **)out, sizeof(mp_event), mem, MP__H_OWNS_MAP)))
        mp__shm_unmap(mem, MP_SYNC_SHM_SIZE);
    return r;
}

int mp_event_init_at(mp_event **out, void *mem, size_t size)
{
    if (!out || check_mem(mem, size)) return -EINVAL;
    sync_global_init();
    event_state_init(mem);
    return handle_new((void **)out, sizeof(mp_event), mem, 0);
}

int mp_event_attach_at(mp_event **out, void *mem, size_t size)
{
    if (!out) return -EINVAL;
    int r = check_attach(mem, size, MP__K_EVENT, MP__K_EVENT);
    if (r) return r;
    sync_global_init();
    return handle_new((void **)out, sizeof(mp_event), mem, 0);
}

static inline bool event_ok(const mp_event *e)
{
    return e && e->magic == MP__HANDLE_MAGIC;
}

int mp_event_set(mp_event *e)
{
    if (!event_ok(e)) return -EINVAL;
    event_state *s = e->s;
    uint32_t w = atomic_load(&s->word);
    do {
        if (w & 1) return 0;
    } while (!atomic_compare_exchange_weak(&s->word, &w, (w + 2) | 1));
    if (atomic_load(&s->waiters) > 0) mp__futex_wake(&s->word, INT32_MAX);
    return 0;
}

int mp_event_clear(mp_event *e)
{
    if (!event_ok(e)) return -EINVAL;
    atomic_fetch_and(&e->s->word, ~1u);
    return 0;
}

int mp_event_is_set(const mp_event *e)
{
    if (!event_ok(e)) return -EINVAL;
    return atomic_load(&e->s->word) & 1;
}

int mp_event_wait(mp_event *e, double timeout)
{
    if (!event_ok(e)) return -EINVAL;
    event_state *s = e->s;
    if (atomic_load(&s->word) & 1) return 0;
    if (timeout == 0) return -ETIMEDOUT;
    mp__deadline dl = mp__deadline_in(timeout);
    /* waiters++ before reading the word, set() changes the word before reading waiters (both
     * seq_cst): either set() sees us and wakes us, or we see its word. */
    atomic_fetch_add(&s->waiters, 1);
    uint32_t w0 = atomic_load(&s->word);
    int r = 0;
    if (!(w0 & 1))
        while (atomic_load(&s->word) == w0)
            if (mp__futex_wait(&s->word, w0, &dl) == -ETIMEDOUT && atomic_load(&s->word) == w0) {
                r = -ETIMEDOUT;
                break;
            }
    atomic_fetch_sub(&s->waiters, 1);
    return r;
}

int mp_event_free(mp_event **pp)
{
    return handle_free((void **)pp);
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
    uint32_t magic;
    uint32_t flags;
    cond_state *s;
    mp_lock *lock; /* the lock in use: &own or the caller's */
    mp_lock own;   /* handle on s->lock */
};

static int cond_handle(mp_cond **out, cond_state *s, mp_lock *lock, uint32_t flags)
{
    mp_cond *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->magic = MP__HANDLE_MAGIC;
    c->flags = flags;
    c->s = s;
    mp__lock_handle_embed(&c->own, &s->lock);
    c->lock = lock ? lock : &c->own;
    *out = c;
    return 0;
}

static int cond_state_init(cond_state *s, size_t size, bool own_lock)
{
    if (size > COND_MAP_SIZE) size = COND_MAP_SIZE;
    s->cap = (uint32_t)((size - COND_SLOTS_OFF) / sizeof(cond_slot));
    atomic_store(&s->next_ticket, 0);
    atomic_store(&s->used, 0);
    atomic_store(&s->hi, 0);
    for (uint32_t i = 0; i < s->cap; i++) {
        atomic_store(&s->slots[i].st, 0);
        atomic_store(&s->slots[i].tid, 0);
    }
    if (own_lock) {
        int r = mp__lock_state_init(&s->lock, true);
        if (r) return r;
    }
    publish(s, MP__K_COND);
    return 0;
}

int mp_cond_new(mp_cond **out, mp_lock *lock)
{
    if (!out || (lock && !lock_ok(lock))) return -EINVAL;
    sync_global_init();
    void *mem;
    int r = mp__shm_map_anon(COND_MAP_SIZE, &mem);
    if (r) return r;
    /* handle_free unmaps MP_SYNC_SHM_SIZE bytes, which munmap rounds up to this one page. */
    if ((r = cond_state_init(mem, COND_MAP_SIZE, true)) ||
        (r = cond_handle(out, mem, lock, MP__H_OWNS_MAP)))
        mp__shm_unmap(mem, COND_MAP_SIZE);
    return r;
}

int mp_cond_init_at(mp_cond **out, void *mem, size_t size)
{
    if (!out || check_mem(mem, size)) return -EINVAL;
    int r = cond_state_init(mem, size, true);
    if (r) return r;
    return cond_handle(out, mem, NULL, 0);
}

int mp_cond_attach_at(mp_cond **out, void *mem, size_t size)
{
    if (!out) return -EINVAL;
    int r = check_attach(mem, size, MP__K_COND, MP__K_COND);
    if (r) return r;
    /* The table's extent was fixed by the initialiser's size: the memory given here must hold
     * it, or this process would scan past its view. */
    const cond_state *s = mem;
    if (COND_SLOTS_OFF + (size_t)s->cap * sizeof(cond_slot) > size) return -EINVAL;
    sync_global_init();
    return cond_handle(out, mem, NULL, 0);
}

static inline bool cond_ok(const mp_cond *c)
{
    return c && c->magic == MP__HANDLE_MAGIC && lock_ok(c->lock);
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
    while (done < n && atomic_load(&s->used) > 0) {
        /* Ages relative to one reading of next_ticket (larger is older). */
        uint32_t next = atomic_load(&s->next_ticket);
        uint32_t lim_age = (next - limit) & COND_TICKET_MASK;
        int best = -1;
        uint32_t best_st = 0, best_age = 0;
        for (uint32_t i = 0, end = atomic_load(&s->hi); i < end; i++) {
            uint32_t st = atomic_load_explicit(&s->slots[i].st, memory_order_relaxed);
            if (!st || (st & COND_NOTE)) continue;
            uint32_t age = (next - (st >> 2)) & COND_TICKET_MASK;
            if (age <= lim_age) continue; /* came after the notify */
            if (best < 0 || age > best_age) best = (int)i, best_st = st, best_age = age;
        }
        if (best < 0) break;
        cond_slot *sl = &s->slots[best];
        if (atomic_compare_exchange_strong(&sl->st, &best_st, note)) {
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
    if (atomic_load(&s->used) == 0) return;
    uint32_t note = ((limit & COND_TICKET_MASK) << 2) | COND_OCC | COND_NOTE;
    for (uint32_t i = 0, end = atomic_load(&s->hi); i < end; i++) {
        cond_slot *sl = &s->slots[i];
        uint32_t st = atomic_load(&sl->st);
        while (st && !(st & COND_NOTE))
            if (atomic_compare_exchange_weak(&sl->st, &st, note)) {
                mp__futex_wake(&sl->st, 1);
                break;
            }
    }
}

static void cond_slot_free(cond_state *s, cond_slot *sl)
{
    atomic_store(&sl->st, 0);
    atomic_fetch_sub(&s->used, 1);
}

/* Free the slots of waiters that died, except `self`: a notified one's wake-up goes on to the
 * oldest live waiter. With `all`, waiting (not notified) slots of dead waiters are freed too
 * (the table is full); otherwise they are left for a notify to reach, which then hands the
 * wake-up on here. */
static void cond_reap(cond_state *s, int self, bool all)
{
    for (uint32_t i = 0, end = atomic_load(&s->hi); i < end; i++) {
        if ((int)i == self) continue;
        cond_slot *sl = &s->slots[i];
        uint32_t st = atomic_load(&sl->st);
        if (!st || (!(st & COND_NOTE) && !all)) continue;
        if (!tid_dead(atomic_load(&sl->tid))) continue;
        /* The ticket in st makes the swap fail if the slot was freed and taken again. */
        if (!atomic_compare_exchange_strong(&sl->st, &st, 0)) continue;
        atomic_fetch_sub(&s->used, 1);
        if (st & COND_NOTE) cond_grant(s, 1, st >> 2);
    }
}

/* Take a slot (caller holds the lock). Returns its index or MP_EFULL. */
static int cond_register(cond_state *s)
{
    uint32_t ticket = atomic_fetch_add(&s->next_ticket, 1) & COND_TICKET_MASK;
    uint32_t want = (ticket << 2) | COND_OCC;
    uint32_t tid = (uint32_t)mp__tid();
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < s->cap; i++) {
            cond_slot *sl = &s->slots[i];
            uint32_t st = 0;
            if (atomic_load_explicit(&sl->st, memory_order_relaxed) != 0) continue;
            /* Only registrants (serialised by the lock) fill free slots, so the tid written
             * first belongs to whoever wins the swap below. */
            atomic_store(&sl->tid, tid);
            if (atomic_compare_exchange_strong(&sl->st, &st, want)) {
                atomic_fetch_add(&s->used, 1);
                /* Before the lock is released, so a notify (under the lock) scans this far. */
                if (atomic_load(&s->hi) <= i) atomic_store(&s->hi, i + 1);
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
        uint32_t st = atomic_load(&sl->st);
        if (st & COND_NOTE) return 0;
        if (mp__deadline_left_ns(dl) == 0) {
            if (atomic_compare_exchange_strong(&sl->st, &st, 0)) {
                atomic_fetch_sub(&s->used, 1);
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
    cond_state *s = c->s;
    mp__lock_state *ls = c->lock->s;
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
    mp__deadline dl = mp__deadline_in(timeout);
    if (timeout == 0) dl.at_ns = mp__now_ns(); /* poll: give the lock away for an instant */
    return cond_wait_dl(c, &dl);
}

int mp_cond_wait_for(mp_cond *c, bool (*pred)(void *arg), void *arg, double timeout)
{
    if (!cond_ok(c) || !pred) return -EINVAL;
    if (!owned(c->lock->s)) return MP_ENOTOWNER;
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
    if (!owned(c->lock->s)) return MP_ENOTOWNER;
    /* Under the lock no waiter registers meanwhile: every registered one came before. */
    uint32_t limit = atomic_load(&c->s->next_ticket);
    if (n == INT32_MAX)
        cond_grant_all(c->s, limit);
    else
        cond_grant(c->s, n, limit);
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
    if (pp && *pp && cond_ok(*pp) && ((*pp)->flags & MP__H_OWNS_MAP) &&
        (*pp)->lock == &(*pp)->own && owned(&(*pp)->s->lock))
        return -EBUSY; /* as mp_lock_free */
    return handle_free((void **)pp);
}

/* ---- Barrier ------------------------------------------------------------------------------- */

#define LOAD(x)     __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

static void bar_wake(mp__barrier_state *s)
{
    atomic_fetch_add(&s->seq, 1);
    mp__futex_wake(&s->seq, INT32_MAX);
}

/* Record that the current generation failed (caller holds m; once per generation). The record
 * is written before the count that publishes it. */
static void bar_record_failure(mp__barrier_state *s)
{
    uint32_t k = s->fails;
    STORE(s->fail_gen[k % MP__BAR_RING], s->gen);
    STORE(s->fails, k + 1);
}

/* Record that the current generation was released (caller holds m). */
static void bar_record_release(mp__barrier_state *s)
{
    uint32_t k = s->releases;
    STORE(s->rel_gen[k % MP__BAR_RING], s->gen);
    STORE(s->releases, k + 1);
}

/* Break the current generation (caller holds m): its waiters get MP_EBROKEN. */
static void bar_break_locked(mp__barrier_state *s)
{
    if (!s->broken) bar_record_failure(s);
    STORE(s->broken, 1);
    s->count = 0;
    bar_wake(s);
}

/* Start the next generation (caller holds m). */
static void bar_next_gen(mp__barrier_state *s)
{
    s->count = 0;
    STORE(s->gen, s->gen + 1);
}

/* Lock the internal mutex, in slices (see lock_state_acquire). A party that died holding it may
 * have left the counters half updated: the barrier is then declared broken rather than
 * trusted. Returns 0 (locked) or a negative errno (not locked). */
static int bar_lock(mp__barrier_state *s, const mp__deadline *dl)
{
    int r = mp__robust_mutex_lock(&s->m, dl);
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(&s->m);
        bar_break_locked(s);
        return 0;
    }
    if (r == ENOTRECOVERABLE) mp__mutex_unstick(&s->m);
    return -r;
}

static int bar_state_init(mp__barrier_state *s, unsigned parties)
{
    int r = mp__robust_mutex_init(&s->m, PTHREAD_MUTEX_NORMAL);
    if (r) return r;
    s->parties = parties;
    s->count = 0;
    s->gen = 0;
    s->broken = 0;
    s->fails = 0;
    s->releases = 0;
    memset(s->fail_gen, 0, sizeof s->fail_gen);
    memset(s->rel_gen, 0, sizeof s->rel_gen);
    atomic_store(&s->seq, 0);
    publish(s, MP__K_BARRIER);
    return 0;
}

int mp_barrier_new(mp_barrier **out, unsigned parties)
{
    if (!out || parties < 1 || parties > INT32_MAX) return -EINVAL;
    void *mem;
    int r = map_state(&mem);
    if (r) return r;
    if ((r = bar_state_init(mem, parties)) ||
        (r = handle_new((void **)out, sizeof(mp_barrier), mem, MP__H_OWNS_MAP)))
        mp__shm_unmap(mem, MP_SYNC_SHM_SIZE);
    return r;
}

int mp_barrier_init_at(mp_barrier **out, void *mem, size_t size, unsigned parties)
{
    if (!out || check_mem(mem, size) || parties < 1 || parties > INT32_MAX) return -EINVAL;
    sync_global_init();
    int r = bar_state_init(mem, parties);
    if (r) return r;
    return handle_new((void **)out, sizeof(mp_barrier), mem, 0);
}

int mp_barrier_attach_at(mp_barrier **out, void *mem, size_t size)
{
    if (!out) return -EINVAL;
    int r = check_attach(mem, size, MP__K_BARRIER, MP__K_BARRIER);
    if (r) return r;
    sync_global_init();
    return handle_new((void **)out, sizeof(mp_barrier), mem, 0);
}

static inline bool bar_ok(const mp_barrier *b)
{
    return b && b->magic == MP__HANDLE_MAGIC;
}

/* How generation `gen`, which this caller entered when the failure and release counts were f
 * and r, ended (gen has moved on). Each record is read before the count that says whether it
 * was overwritten meanwhile. */
static int bar_outcome(mp__barrier_state *s, uint32_t gen, uint32_t f, uint32_t r, int index)
{
    if (LOAD(s->fails) == f) return index; /* no generation failed since we arrived */
    uint32_t g = LOAD(s->fail_gen[f % MP__BAR_RING]);
    if (LOAD(s->fails) - f <= MP__BAR_RING) return g == gen ? MP_EBROKEN : index;
    g = LOAD(s->rel_gen[r % MP__BAR_RING]);
    if (LOAD(s->releases) != r && LOAD(s->releases) - r <= MP__BAR_RING)
        return g == gen ? index : MP_EBROKEN;
    /* Both records were overwritten: more than MP__BAR_RING generations failed and more than
     * MP__BAR_RING were released while this caller slept without looking. Broken is the answer
     * that never claims a release that may not have happened. */
    return MP_EBROKEN;
}

int mp_barrier_wait(mp_barrier *b, double timeout)
{
    if (!bar_ok(b)) return -EINVAL;
    mp__barrier_state *s = b->s;
    mp__deadline dl = mp__deadline_in(timeout);
    /* The internal mutex is held for a few instructions at a time (and robust), so it is taken
     * without a limit: a timeout here would mean "did not even arrive", not "broke the barrier". */
    mp__deadline forever = mp__deadline_in(MP_FOREVER);
    int r = bar_lock(s, &forever);
    if (r) return r;
    if (s->broken) {
        pthread_mutex_unlock(&s->m);
        return MP_EBROKEN;
    }
    int index = (int)s->count++;
    uint32_t gen = s->gen, fails = s->fails, releases = s->releases;
    if (s->count == s->parties) {
        bar_record_release(s);
        bar_next_gen(s);
        pthread_mutex_unlock(&s->m);
        bar_wake(s);
        return index;
    }
    pthread_mutex_unlock(&s->m);
    for (;;) {
        uint32_t seen = atomic_load(&s->seq);
        if (LOAD(s->gen) != gen) return bar_outcome(s, gen, fails, releases, index);
        if (LOAD(s->broken)) return MP_EBROKEN;
        if (mp__futex_wait(&s->seq, seen, &dl) != -ETIMEDOUT) continue;
        /* Timed out: unless the barrier was released meanwhile, break it for everyone. */
        if ((r = bar_lock(s, &forever))) return r;
        if (s->gen != gen)
            r = bar_outcome(s, gen, fails, releases, index);
        else if (s->broken)
            r = MP_EBROKEN;
        else {
            bar_break_locked(s);
            r = -ETIMEDOUT;
        }
        pthread_mutex_unlock(&s->m);
        return r;
    }
}

int mp_barrier_abort(mp_barrier *b)
{
    if (!bar_ok(b)) return -EINVAL;
    mp__deadline forever = mp__deadline_in(MP_FOREVER);
    int r = bar_lock(b->s, &forever);
    if (r) return r;
    if (!b->s->broken) bar_break_locked(b->s);
    pthread_mutex_unlock(&b->s->m);
    return 0;
}

int mp_barrier_reset(mp_barrier *b)
{
    if (!bar_ok(b)) return -EINVAL;
    mp__barrier_state *s = b->s;
    mp__deadline forever = mp__deadline_in(MP_FOREVER);
    int r = bar_lock(s, &forever);
    if (r) return r;
    /* Whoever waits in the current generation fails; the next generation starts clean. */
    if (!s->broken) bar_record_failure(s);
    bar_next_gen(s);
    STORE(s->broken, 0);
    bar_wake(s);
    pthread_mutex_unlock(&s->m);
    return 0;
}

int mp_barrier_parties(const mp_barrier *b)
{
    return bar_ok(b) ? (int)b->s->parties : -EINVAL;
}

int mp_barrier_n_waiting(const mp_barrier *b)
{
    if (!bar_ok(b)) return -EINVAL;
    /* count is guarded by the mutex (an arrival updates it and may reset it to 0 in one step). */
    mp__deadline forever = mp__deadline_in(MP_FOREVER);
    int r = bar_lock(b->s, &forever);
    if (r) return r;
    int n = b->s->broken ? 0 : (int)b->s->count;
    pthread_mutex_unlock(&b->s->m);
    return n;
}

int mp_barrier_broken(const mp_barrier *b)
{
    return bar_ok(b) ? (int)LOAD(b->s->broken) : -EINVAL;
}

int mp_barrier_free(mp_barrier **pp)
{
    return handle_free((void **)pp);
}

pthread_mutex_t *mp__barrier_mutex(mp_barrier *b)
{
    return bar_ok(b) ? &b->s->m : NULL;
}
