/* SPDX-License-Identifier: MIT */
/* handoff.h - objects on their way to another program image (spawn, forkserver).
 *
 * A child started by spawn or forkserver shares no memory with its parent: an object given to it
 * (mp_process_pass) must travel as what the kernel can carry, file descriptors (SCM_RIGHTS) plus a
 * few bytes of description, and be rebuilt on the other side against the SAME shared state: the
 * memfd behind a queue's or a lock's shared memory, the socket of a connection. Never a copy.
 *
 * Shared state must therefore live in memory that has an fd. Objects made after mp_init() map a
 * memfd (mp__shm_map_shareable); the fd is kept (close-on-exec, marked internal, so no forked
 * child inherits it) until the object is freed. Objects made before mp_init(), or when no fd was
 * left (EMFILE, or the fd would fall into the reserve kept for the program: the last eighth of
 * RLIMIT_NOFILE's soft limit, at least 64 fds; see platform/shm_fd.c), use anonymous shared memory
 * as before and cannot travel: export says so.
 *
 * How a start carries a handoff (process.c, launch.c): export in the parent; send h->kind, h->len,
 * h->data and h->nfds as bytes and h->fds[0..nfds) with SCM_RIGHTS, in order; in the child, put
 * the fds received back into h->fds in the same order, then import. mp__handoff_close in the
 * parent once they were sent (or the start failed).
 *
 * Export runs in the parent at start and never changes the object: the fds it fills are new
 * (dup'ed, close-on-exec), owned by the handoff, closed by mp__handoff_close after sending.
 * Import runs in the child, takes ownership of the fds in the handoff (it closes what it does not
 * keep) and builds a new object owned by the child's process bookkeeping (never freed by the user).
 */
#ifndef MP_HANDOFF_H
#define MP_HANDOFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mproc/start.h"

#define MP__HANDOFF_FDS  4   /* fds one object may carry */
#define MP__HANDOFF_DATA 192 /* bytes of description one object may carry */

typedef struct mp__handoff {
    int32_t kind; /* mp_kind */
    int32_t nfds;
    int fds[MP__HANDOFF_FDS];
    uint32_t len;
    unsigned char data[MP__HANDOFF_DATA];
} mp__handoff;

/* Fills *h for obj of the given kind. Errors: -EINVAL (NULL, unknown kind), MP_ENOTSUP (this
 * object cannot travel; *why gets a static reason: "created before mp_init()", "anonymous named
 * block", ...), -EMFILE (dup). On error nothing is left open. */
int mp__handoff_export(int kind, const void *obj, mp__handoff *h, const char **why);

/* Rebuilds the object in the receiving process; *out gets it (type by h->kind). Takes the fds in
 * every case (closes them on error). Errors: -EINVAL, MP_ECORRUPT (bad description), -ENOMEM,
 * -errno from mmap/fstat. */
int mp__handoff_import(mp__handoff *h, void **out);

/* Closes the fds a handoff still holds (after sending, or when the start failed). */
void mp__handoff_close(mp__handoff *h);

/* Shared memory that can travel: a memfd mapping after mp_init(), anonymous memory otherwise (or
 * when no fd is left, see above: *fd = -1 then). *fd is close-on-exec and marked internal. */
int mp__shm_map_shareable(size_t size, void **out, int *fd);
/* Maps an imported memfd of `size` bytes (checked against fstat). */
int mp__shm_map_fd(int fd, size_t size, void **out);

/* ---- helpers the per-module halves share (handoff.c) ------------------------------------------
 */

/* An object's memfd as the object keeps it: fd -1 for anonymous memory (cannot travel), else the
 * fd (close-on-exec, internal) and the file's identity, checked before every export: a child that
 * mproc forked closes the internal fds it inherits, and the number may then name another file. */
typedef struct mp__shm_fd {
    int fd;
    uint64_t dev, ino;
} mp__shm_fd;

/* mp__shm_map_shareable, and the identity of the fd. */
int mp__shm_fd_map(size_t size, void **out, mp__shm_fd *m);
/* Unmarks and closes the fd (nothing for fd -1); m->fd becomes -1. */
void mp__shm_fd_close(mp__shm_fd *m);
/* Appends a dup of m's fd to h (after checking it still is that file). Errors: MP_ENOTSUP with
 * *why (anonymous memory, or the fd was closed in this forked child), -EMFILE, -ENOSPC. */
int mp__shm_fd_export(const mp__shm_fd *m, mp__handoff *h, const char **why);
/* Takes h->fds[i] (sets it to -1), checks it is a file of `size` bytes, maps it, keeps it in *m
 * (close-on-exec, internal). On error the fd is still in h (the dispatcher closes it). */
int mp__shm_fd_import(mp__handoff *h, int i, size_t size, void **out, mp__shm_fd *m);
/* Appends a dup (F_DUPFD_CLOEXEC) of fd to h. Errors: -ENOSPC (full), -errno. */
int mp__handoff_add_fd(mp__handoff *h, int fd);

/* Every module's description starts with a uint32_t of its own magic; these copy it in and out
 * (get: false when the length is not that of the description: MP_ECORRUPT). */
static inline void mp__handoff_desc_put(mp__handoff *h, const void *d, size_t n)
{
    memcpy(h->data, d, n);
    h->len = (uint32_t)n;
}
static inline bool mp__handoff_desc_get(const mp__handoff *h, void *d, size_t n)
{
    if (h->len != n || n > MP__HANDOFF_DATA) return false;
    memcpy(d, h->data, n);
    return true;
}

/* Per-module halves (queue.c, sync.c, shared.c, shared_shm.c, conn.c), dispatched on kind. */
int mp__queue_export(const void *obj, mp__handoff *h, const char **why);
int mp__queue_import(mp__handoff *h, void **out);
int mp__conn_export(const void *obj, mp__handoff *h, const char **why);
int mp__conn_import(mp__handoff *h, void **out);
int mp__sync_export(int kind, const void *obj, mp__handoff *h, const char **why);
int mp__sync_import(mp__handoff *h, void **out);
int mp__value_export(const void *obj, mp__handoff *h, const char **why);
int mp__value_import(mp__handoff *h, void **out);
int mp__array_export(const void *obj, mp__handoff *h, const char **why);
int mp__array_import(mp__handoff *h, void **out);
int mp__shm_export(const void *obj, mp__handoff *h, const char **why);
int mp__shm_import(mp__handoff *h, void **out);

/* Set by mp_init() (start.c): objects made from then on are memfd-backed. */
int mp__init_called(void);

#endif
