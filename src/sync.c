/* SPDX-License-Identifier: MIT */
/* sync.c - the handle base of mproc/sync.h: the one constructor and the one destructor that
 * every Lock, RLock, Semaphore, Event, Condition and Barrier is made and freed with. The
 * primitives themselves live in sync_lock.c, sync_sem_event.c, sync_cond.c and sync_barrier.c;
 * sync_private.h tells the whole story.
 */
#include <errno.h>
#include <stdlib.h>

#include "sync_private.h"

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

/* See sync_private.h. */
int mp__sync_open(void *out, const sync_kind *k, enum sync_how how, void *mem, size_t size,
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

/* See sync_private.h. */
int mp__sync_free(void *pp)
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
