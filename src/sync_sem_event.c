/* SPDX-License-Identifier: MIT */
/* sync_sem_event.c - Semaphore, BoundedSemaphore and Event (mproc/sync.h): lock-free futex words.
 *
 * Waiter counts only decide whether a release needs a futex_wake syscall; a process killed while
 * waiting leaves the count too high, which costs an occasional needless syscall and nothing
 * else. Store/load ordering between "waiters++ then sleep if word == x" and "change word then
 * read waiters" is seq_cst on both sides (Dekker), so no wake-up is lost.
 */
#include <errno.h>
#include <stdint.h>

#include "sync_private.h"

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
    mp__sync_publish(s, a->bounded ? MP__K_BSEM : MP__K_SEM);
    return 0;
}

static const sync_kind sem_kind = {
    sizeof(mp_sem), MP_SYNC_SHM_SIZE, MP__K_SEM, MP__K_BSEM, sem_init, NULL, NULL,
};

int mp__sem_adopt(mp_sem **out, void *mem, size_t size, mp__shm_fd *m)
{
    return mp__sync_adopt(out, &sem_kind, mem, size, NULL, m);
}

int mp_sem_new(mp_sem **out, unsigned value)
{
    if (value > MP_SEM_VALUE_MAX) return -EINVAL;
    return mp__sync_open(out, &sem_kind, SYNC_NEW, NULL, 0, &(sem_args){value, false});
}

int mp_bsem_new(mp_sem **out, unsigned value)
{
    if (value > MP_SEM_VALUE_MAX) return -EINVAL;
    return mp__sync_open(out, &sem_kind, SYNC_NEW, NULL, 0, &(sem_args){value, true});
}

int mp_sem_init_at(mp_sem **out, void *mem, size_t size, unsigned value, bool bounded)
{
    if (value > MP_SEM_VALUE_MAX) return -EINVAL;
    return mp__sync_open(out, &sem_kind, SYNC_INIT_AT, mem, size, &(sem_args){value, bounded});
}

int mp_sem_attach_at(mp_sem **out, void *mem, size_t size)
{
    return mp__sync_open(out, &sem_kind, SYNC_ATTACH_AT, mem, size, NULL);
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
    return mp__sync_free(pp);
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
    mp__sync_publish(s, MP__K_EVENT);
    return 0;
}

static const sync_kind event_kind = {
    sizeof(mp_event), MP_SYNC_SHM_SIZE, MP__K_EVENT, MP__K_EVENT, event_init, NULL, NULL,
};

int mp__event_adopt(mp_event **out, void *mem, size_t size, mp__shm_fd *m)
{
    return mp__sync_adopt(out, &event_kind, mem, size, NULL, m);
}

int mp_event_new(mp_event **out)
{
    return mp__sync_open(out, &event_kind, SYNC_NEW, NULL, 0, NULL);
}

int mp_event_init_at(mp_event **out, void *mem, size_t size)
{
    return mp__sync_open(out, &event_kind, SYNC_INIT_AT, mem, size, NULL);
}

int mp_event_attach_at(mp_event **out, void *mem, size_t size)
{
    return mp__sync_open(out, &event_kind, SYNC_ATTACH_AT, mem, size, NULL);
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
    return mp__sync_free(pp);
}
