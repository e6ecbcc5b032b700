/* SPDX-License-Identifier: MIT */
/* sync_lock.c - Lock and RLock (mproc/sync.h): robust, process-shared pthread mutexes.
 *
 * The uncontended acquire is one trylock (a single CAS) with everything else out of line, so
 * mp_lock_acquire needs no stack frame; see sync_private.h for the module as a whole.
 */
#include <errno.h>
#include <pthread.h>

#include "sync_private.h"

int mp__lock_state_init(mp__lock_state *s, bool recursive)
{
    /* ERRORCHECK makes a self-deadlock on a plain Lock an error instead of a hang; the robust
     * code path checks the owner anyway, so it costs nothing extra. */
    int r = mp__robust_mutex_init(&s->m,
                                  recursive ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_ERRORCHECK);
    if (r) return r;
    mp__sync_publish(s, recursive ? MP__K_RLOCK : MP__K_LOCK);
    return 0;
}

void mp__lock_handle_embed(mp_lock *l, mp__lock_state *s)
{
    l->h = (mp__sync_handle){MP__HANDLE_MAGIC, MP__H_EMBEDDED, s, 0, {-1, 0, 0}};
}

static int lock_init(void *mem, size_t size, const void *arg)
{
    return mp__lock_state_init(mem, *(const bool *)arg);
}

static const sync_kind lock_kind = {
    sizeof(mp_lock), MP_SYNC_SHM_SIZE, MP__K_LOCK, MP__K_RLOCK, lock_init, NULL, NULL,
};

int mp__lock_adopt(mp_lock **out, void *mem, size_t size, mp__shm_fd *m)
{
    return mp__sync_adopt(out, &lock_kind, mem, size, NULL, m);
}

int mp_lock_new(mp_lock **out)
{
    bool recursive = false;
    return mp__sync_open(out, &lock_kind, SYNC_NEW, NULL, 0, &recursive);
}

int mp_rlock_new(mp_lock **out)
{
    bool recursive = true;
    return mp__sync_open(out, &lock_kind, SYNC_NEW, NULL, 0, &recursive);
}

int mp_lock_init_at(mp_lock **out, void *mem, size_t size, bool recursive)
{
    return mp__sync_open(out, &lock_kind, SYNC_INIT_AT, mem, size, &recursive);
}

int mp_lock_attach_at(mp_lock **out, void *mem, size_t size)
{
    return mp__sync_open(out, &lock_kind, SYNC_ATTACH_AT, mem, size, NULL);
}

bool mp__lock_owned(const mp_lock *l)
{
    return lock_state_owned(lock_st(l));
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
    return lock_state_owned(lock_st(l));
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
    if (pp && lock_ok(*pp) && ((*pp)->h.flags & MP__H_OWNS_MAP) && lock_state_owned(lock_st(*pp)))
        return -EBUSY;
    return mp__sync_free(pp);
}

/* See sync_private.h. */
int mp__lock_release_all(mp__lock_state *s)
{
    int n = 0;
    while (pthread_mutex_unlock(&s->m) == 0)
        n++;
    return n;
}

/* See sync_private.h. */
int mp__lock_reacquire(mp__lock_state *s, int levels)
{
    int r = lock_state_acquire(s, MP_FOREVER);
    for (int i = 1; i < levels; i++)
        pthread_mutex_lock(&s->m); /* recursive and already ours: cannot fail or block */
    return r == -EOWNERDEAD ? r : 0;
}
