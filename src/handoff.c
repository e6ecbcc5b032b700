/* SPDX-License-Identifier: MIT */
/* handoff.c - objects on their way to another program image: the dispatch by kind to the
 * per-module halves (queue.c, conn.c, sync.c, shared.c, shared_shm.c) and the memfd helpers they
 * share. The whole story is in handoff.h.
 *
 * Ownership of fds: an export appends dups to h->fds (mp__handoff_add_fd); when a module fails
 * half-way, the dispatcher closes what it appended, so nothing is left open. An import takes the
 * fds a module keeps by setting their slots to -1; whatever is still in h when the module returns
 * (an fd it had no use for, or every fd on error) is closed here.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "handoff.h"
#include "mproc/error.h"
#include "platform/platform.h"

int mp__handoff_add_fd(mp__handoff *h, int fd)
{
    if (h->nfds < 0 || h->nfds >= MP__HANDOFF_FDS) return -ENOSPC;
    if (fd < 0) return -EBADF;
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0) return -errno;
    h->fds[h->nfds++] = d;
    return 0;
}

static int identity(int fd, uint64_t *dev, uint64_t *ino)
{
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    *dev = (uint64_t)st.st_dev;
    *ino = (uint64_t)st.st_ino;
    return 0;
}

int mp__shm_fd_map(size_t size, void **out, mp__shm_fd *m)
{
    m->fd = -1;
    m->dev = m->ino = 0;
    int fd;
    int r = mp__shm_map_shareable(size, out, &fd);
    if (r) return r;
    if (fd >= 0 && identity(fd, &m->dev, &m->ino) < 0) {
        /* cannot happen on a live fd; keep the memory, give up travelling */
        mp__fd_internal_del(fd);
        close(fd);
        fd = -1;
    }
    m->fd = fd;
    return 0;
}

/* Only when the number still is our file: in a child that mproc forked the fd was closed at the
 * start (mp__fd_close_internal) and the number may since have gone to a file of the user's, or to
 * another internal fd of mproc's, neither ours to close or unmark. */
void mp__shm_fd_close(mp__shm_fd *m)
{
    if (!m || m->fd < 0) return;
    uint64_t dev, ino;
    if (identity(m->fd, &dev, &ino) == 0 && dev == m->dev && ino == m->ino) {
        mp__fd_internal_del(m->fd);
        close(m->fd);
    }
    m->fd = -1;
}

int mp__shm_fd_export(const mp__shm_fd *m, mp__handoff *h, const char **why)
{
    if (m->fd < 0) {
        *why = "its shared memory has no fd: it was created before mp_init(), or when the process "
               "had no fd to spare";
        return MP_ENOTSUP;
    }
    uint64_t dev, ino;
    if (identity(m->fd, &dev, &ino) < 0 || dev != m->dev || ino != m->ino) {
        *why = "its memory fd was closed in this forked child (children that mproc forks close "
               "mproc's internal fds); create the object in this process";
        return MP_ENOTSUP;
    }
    return mp__handoff_add_fd(h, m->fd);
}

int mp__shm_fd_import(mp__handoff *h, int i, size_t size, void **out, mp__shm_fd *m)
{
    if (i < 0 || i >= h->nfds || h->fds[i] < 0) return MP_ECORRUPT;
    int fd = h->fds[i];
    int r = mp__shm_map_fd(fd, size, out);
    if (r) return r;
    int fl = fcntl(fd, F_GETFD);
    if (fl >= 0 && !(fl & FD_CLOEXEC)) (void)fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
    m->fd = fd;
    if (identity(fd, &m->dev, &m->ino) < 0) m->dev = m->ino = 0;
    mp__fd_internal_add(fd);
    h->fds[i] = -1;
    return 0;
}

void mp__handoff_close(mp__handoff *h)
{
    if (!h) return;
    int n = h->nfds < 0 ? 0 : h->nfds > MP__HANDOFF_FDS ? MP__HANDOFF_FDS : h->nfds;
    for (int i = 0; i < n; i++) {
        if (h->fds[i] >= 0) close(h->fds[i]);
        h->fds[i] = -1;
    }
    h->nfds = 0;
}

int mp__handoff_export(int kind, const void *obj, mp__handoff *h, const char **why)
{
    static const char *unused;
    if (!why) why = &unused;
    *why = "";
    if (!h) return -EINVAL;
    memset(h, 0, sizeof *h);
    for (int i = 0; i < MP__HANDOFF_FDS; i++)
        h->fds[i] = -1;
    if (!obj) {
        *why = "no object (NULL)";
        return -EINVAL;
    }
    h->kind = kind;
    int r;
    switch (kind) {
    case MP_KIND_QUEUE:
        r = mp__queue_export(obj, h, why);
        break;
    case MP_KIND_CONN:
        r = mp__conn_export(obj, h, why);
        break;
    case MP_KIND_LOCK:
    case MP_KIND_SEM:
    case MP_KIND_EVENT:
    case MP_KIND_COND:
    case MP_KIND_BARRIER:
        r = mp__sync_export(kind, obj, h, why);
        break;
    case MP_KIND_VALUE:
        r = mp__value_export(obj, h, why);
        break;
    case MP_KIND_ARRAY:
        r = mp__array_export(obj, h, why);
        break;
    case MP_KIND_SHM:
        r = mp__shm_export(obj, h, why);
        break;
    default:
        *why = "unknown object kind";
        return -EINVAL;
    }
    if (r) {
        if (r == -EINVAL && !**why) *why = "not a live object of that kind";
        if (r == -EMFILE || r == -ENFILE) *why = "no fd left to duplicate the object's fds";
        mp__handoff_close(h);
        h->len = 0;
    }
    return r;
}

int mp__handoff_import(mp__handoff *h, void **out)
{
    if (!h || !out) {
        if (h) mp__handoff_close(h);
        return -EINVAL;
    }
    *out = NULL;
    int r;
    if (h->nfds < 0 || h->nfds > MP__HANDOFF_FDS || h->len > MP__HANDOFF_DATA) {
        r = MP_ECORRUPT;
    } else {
        switch (h->kind) {
        case MP_KIND_QUEUE:
            r = mp__queue_import(h, out);
            break;
        case MP_KIND_CONN:
            r = mp__conn_import(h, out);
            break;
        case MP_KIND_LOCK:
        case MP_KIND_SEM:
        case MP_KIND_EVENT:
        case MP_KIND_COND:
        case MP_KIND_BARRIER:
            r = mp__sync_import(h, out);
            break;
        case MP_KIND_VALUE:
            r = mp__value_import(h, out);
            break;
        case MP_KIND_ARRAY:
            r = mp__array_import(h, out);
            break;
        case MP_KIND_SHM:
            r = mp__shm_import(h, out);
            break;
        default:
            r = MP_ECORRUPT;
        }
    }
    if (r) *out = NULL;
    mp__handoff_close(h); /* what the module did not keep */
    return r;
}
