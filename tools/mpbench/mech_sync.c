/* SPDX-License-Identifier: MIT */
/* mech_sync.c - mp_lock: acquire+release without contention (against raw.mutex, the robust
 * process-shared pthread mutex it is built like). Contention is in value.lock_incr. */
#include "avail.h"
#include "mpbench.h"

#ifdef MPB_HAVE_SYNC
#include <errno.h>

#include "mproc/error.h"
#include "mproc/sync.h"

static int lock_loop(void *arg, long n)
{
    mp_lock *l = arg;
    for (long i = 0; i < n; i++) {
        int rc = mp_lock_acquire(l, MP_FOREVER);
        if (rc < 0 && rc != -EOWNERDEAD) return rc;
        mp_lock_release(l);
    }
    return 0;
}

static void one(const char *name, const char *label, bool quick, int (*make)(mp_lock **))
{
    if (!mpb_wantq(name, quick)) return;
    mp_lock *l;
    int rc = make(&l);
    if (rc < 0) {
        mpb_fail(name, "%s", mp_strerror(rc));
        return;
    }
    mpb_loop(name, label, lock_loop, l, "ns", 1);
    mp_lock_free(&l);
}

void mpb_bench_lock(void)
{
    one("lock.uncontended", "mp Lock acquire+release, uncontended", true, mp_lock_new);
    one("lock.rlock_uncontended", "mp RLock acquire+release, uncontended", false, mp_rlock_new);
}
#else
void mpb_bench_lock(void) {}
#endif
