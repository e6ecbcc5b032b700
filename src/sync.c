/* SPDX-License-Identifier: MIT */
/* sync.c - the handle base of mproc/sync.h: the one constructor and the one destructor that
 * every Lock, RLock, Semaphore, Event, Condition and Barrier is made and freed with. The
 * primitives themselves live in sync_lock.c, sync_sem_event.c, sync_cond.c and sync_barrier.c;
 * sync_private.h tells the whole story.
 */
#include <errno.h>
#include <stdlib.h>

#include "handoff.h"
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
    mp__shm_fd m = {-1, 0, 0};
    if (how == SYNC_NEW) {
        if ((r = mp__shm_fd_map(k->map_len, &mem, &m))) return r;
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
        if (how == SYNC_NEW) {
            mp__shm_unmap(mem, k->map_len);
            mp__shm_fd_close(&m);
        }
        return r ? r : -ENOMEM;
    }
    h->magic = MP__HANDLE_MAGIC;
    h->flags = how == SYNC_NEW ? MP__H_OWNS_MAP : 0;
    h->state = mem;
    h->map_len = how == SYNC_NEW ? k->map_len : 0;
    h->mem = m;
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
    if (h->flags & MP__H_OWNS_MAP) {
        mp__shm_unmap(h->state, h->map_len);
        mp__shm_fd_close(&h->mem);
    }
    h->magic = 0;
    free(h);
    *hp = NULL;
    return 0;
}

/* See sync_private.h. */
int mp__sync_adopt(void *out, const sync_kind *k, void *mem, size_t size, const void *arg,
                   mp__shm_fd *m)
{
    int r = mp__sync_open(out, k, SYNC_ATTACH_AT, mem, size, arg);
    if (r) return r;
    mp__sync_handle *h = *(mp__sync_handle **)out;
    h->flags = MP__H_OWNS_MAP;
    h->map_len = size;
    h->mem = *m;
    m->fd = -1;
    return 0;
}

/* ---- handoff to a spawned or forkserver child (handoff.h) ------------------------------------
 * A primitive made by mp_X_new travels as its memfd: the child maps the same state, so a lock
 * held on one side is held for the other, a dead holder is reported by the kernel's robust list
 * to the next acquirer in either program, and futex wake-ups cross (they are keyed by the file,
 * not the address). A Condition made with a caller's lock carries that lock's memfd as well.
 * What cannot travel: objects placed in caller memory (_init_at, _attach_at: pass the block and
 * attach in the child), the borrowed locks of a Value, Array or Condition (pass their owner),
 * and a Barrier made with an action (a function pointer means nothing in another program). */

#define SYNC_DESC_MAGIC 0x6d706873u /* "mphs" */
#define SYNC_MAP_MAX    ((uint64_t)1 << 20)

struct sync_desc {
    uint32_t magic;
    uint32_t skind; /* MP__K_* of the state */
    uint64_t map_len;
    uint32_t ext_kind; /* Condition with a caller's lock: its MP__K_*, else 0 */
    uint32_t pad;
    uint64_t ext_len;
};

/* The state kinds an mp_kind accepts. */
static bool skind_fits(int kind, uint32_t sk)
{
    switch (kind) {
    case MP_KIND_LOCK:
        return sk == MP__K_LOCK || sk == MP__K_RLOCK;
    case MP_KIND_SEM:
        return sk == MP__K_SEM || sk == MP__K_BSEM;
    case MP_KIND_EVENT:
        return sk == MP__K_EVENT;
    case MP_KIND_COND:
        return sk == MP__K_COND;
    case MP_KIND_BARRIER:
        return sk == MP__K_BARRIER;
    }
    return false;
}

static int export_handle(const mp__sync_handle *h, mp__handoff *ho, const char **why)
{
    if (h->flags & MP__H_EMBEDDED) {
        *why = "a borrowed lock (of a Value, Array or Condition): pass the object that owns it";
        return MP_ENOTSUP;
    }
    if (!(h->flags & MP__H_OWNS_MAP)) {
        *why = "its state lives in caller memory (_init_at/_attach_at): pass that memory (a named "
               "block) and attach to it in the child";
        return MP_ENOTSUP;
    }
    return mp__shm_fd_export(&h->mem, ho, why);
}

int mp__sync_export(int kind, const void *obj, mp__handoff *ho, const char **why)
{
    const mp__sync_handle *h = obj;
    if (!handle_ok(h) || !h->state) return -EINVAL;
    const state_hdr *st = h->state;
    if (mp__load_acq(&((state_hdr *)st)->magic) != MP__SYNC_MAGIC || !skind_fits(kind, st->kind)) {
        *why = "the object is not of the kind given";
        return -EINVAL;
    }
    if (kind == MP_KIND_BARRIER && mp__barrier_has_action(obj)) {
        *why = "a Barrier made with an action (a function pointer cannot cross exec)";
        return MP_ENOTSUP;
    }
    int r = export_handle(h, ho, why);
    if (r) return r;
    struct sync_desc d = {SYNC_DESC_MAGIC, st->kind, h->map_len, 0, 0, 0};
    if (kind == MP_KIND_COND) {
        const mp_lock *ext = mp__cond_ext_lock(obj);
        if (ext) {
            if ((r = export_handle(&ext->h, ho, why))) {
                if (r == MP_ENOTSUP)
                    *why = "its lock cannot travel (borrowed, in caller memory, or without a "
                           "memory fd)";
                return r;
            }
            d.ext_kind = ((const state_hdr *)ext->h.state)->kind;
            d.ext_len = ext->h.map_len;
        }
    }
    mp__handoff_desc_put(ho, &d, sizeof d);
    return 0;
}

/* Maps fd i of the handoff (a state of kind sk expected), ready for an adopter. */
static int import_map(mp__handoff *ho, int i, uint64_t len, uint32_t sk, void **mem, mp__shm_fd *m)
{
    if (len < MP_SYNC_SHM_SIZE || len > SYNC_MAP_MAX) return MP_ECORRUPT;
    int r = mp__shm_fd_import(ho, i, (size_t)len, mem, m);
    if (r) return r;
    state_hdr *st = *mem;
    if (mp__load_acq(&st->magic) != MP__SYNC_MAGIC || st->kind != sk) {
        mp__shm_unmap(*mem, (size_t)len);
        mp__shm_fd_close(m);
        return MP_ECORRUPT;
    }
    return 0;
}

int mp__sync_import(mp__handoff *ho, void **out)
{
    struct sync_desc d;
    if (!mp__handoff_desc_get(ho, &d, sizeof d) || d.magic != SYNC_DESC_MAGIC ||
        !skind_fits(ho->kind, d.skind) || ho->nfds != (d.ext_kind ? 2 : 1) ||
        (d.ext_kind && (ho->kind != MP_KIND_COND || !skind_fits(MP_KIND_LOCK, d.ext_kind))))
        return MP_ECORRUPT;
    mp_lock *ext = NULL;
    void *emem = NULL, *mem;
    mp__shm_fd em = {-1, 0, 0}, m = {-1, 0, 0};
    int r;
    if (d.ext_kind) {
        if ((r = import_map(ho, 1, d.ext_len, d.ext_kind, &emem, &em))) return r;
        if ((r = mp__lock_adopt(&ext, emem, (size_t)d.ext_len, &em))) {
            mp__shm_unmap(emem, (size_t)d.ext_len);
            mp__shm_fd_close(&em);
            return r == -EINVAL ? MP_ECORRUPT : r;
        }
    }
    if ((r = import_map(ho, 0, d.map_len, d.skind, &mem, &m))) {
        mp_lock_free(&ext);
        return r;
    }
    size_t len = (size_t)d.map_len;
    switch (ho->kind) {
    case MP_KIND_LOCK:
        r = mp__lock_adopt((mp_lock **)out, mem, len, &m);
        break;
    case MP_KIND_SEM:
        r = mp__sem_adopt((mp_sem **)out, mem, len, &m);
        break;
    case MP_KIND_EVENT:
        r = mp__event_adopt((mp_event **)out, mem, len, &m);
        break;
    case MP_KIND_COND:
        r = mp__cond_adopt((mp_cond **)out, mem, len, &m, ext);
        break;
    default:
        r = mp__barrier_adopt((mp_barrier **)out, mem, len, &m);
    }
    if (r) {
        mp__shm_unmap(mem, len);
        mp__shm_fd_close(&m);
        mp_lock_free(&ext);
        return r == -EINVAL || r == MP_ETYPE ? MP_ECORRUPT : r;
    }
    return 0;
}
