/* SPDX-License-Identifier: MIT */
/* mutex.c - what mproc needs to know about a robust pthread mutex beyond POSIX (platform.h):
 * who holds it, whether anyone does, and glibc 2.36's stuck trylock undone. This is the only
 * place that reads glibc's mutex internals (pthread_mutex_t.__data); a port replaces it. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <unistd.h>

#include "atomics.h"
#include "platform/platform.h"

/* The owner's thread id in the lock word of a robust mutex (linux/futex.h FUTEX_TID_MASK); the
 * two high bits are FUTEX_WAITERS and FUTEX_OWNER_DIED. */
#define TID_MASK 0x3fffffffu

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

pid_t mp__tid(void)
{
    pid_t t = tls_tid;
    if (!t) {
        /* Registered before the first id is cached, so no cached id can survive a fork. */
        pthread_once(&atfork_once, register_atfork);
        tls_tid = t = gettid();
    }
    return t;
}

static _Atomic uint32_t *lock_word(const pthread_mutex_t *m)
{
    return (_Atomic uint32_t *)(void *)&((pthread_mutex_t *)m)->__data.__lock;
}

bool mp__mutex_owner_is_self(const pthread_mutex_t *m)
{
    /* glibc keeps the holder's tid in __owner for every mutex type (robust ones also in the lock
     * word). Relaxed is enough: only this thread writes its own id there. */
    return mp__load_relaxed(mp__as_atomic(int, &m->__data.__owner)) == mp__tid();
}

bool mp__mutex_is_locked(const pthread_mutex_t *m)
{
    /* A robust mutex's lock word names its holder; the kernel clears the id (leaving
     * FUTEX_OWNER_DIED) when the holder dies, so a dead holder's mutex reads as unlocked. */
    return (mp__load_acq(lock_word(m)) & TID_MASK) != 0;
}

/* glibc 2.36's pthread_mutex_trylock, on a robust mutex left unrecoverable (unlocked by a
 * process that took it with EOWNERDEAD and never called pthread_mutex_consistent), returns
 * ENOTRECOVERABLE but leaves the lock word naming the caller (it tests `oldval == id` where it
 * means 0): every later locker, the caller included, would then wait forever. Undoing it here
 * keeps the mutex answering ENOTRECOVERABLE instead. Only a word naming the caller is touched,
 * so this is harmless after an ENOTRECOVERABLE from any other path. */
void mp__mutex_unstick(pthread_mutex_t *m)
{
    _Atomic uint32_t *w = lock_word(m);
    uint32_t v = mp__load(w);
    if ((v & TID_MASK) == (uint32_t)mp__tid() && mp__cas(w, &v, 0)) mp__futex_wake(w, INT32_MAX);
}
