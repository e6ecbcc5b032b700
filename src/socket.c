/* SPDX-License-Identifier: MIT */
/* socket.c - local sockets: listeners at a path or an abstract name, clients, peer checks.
 *
 * Connections are AF_UNIX SOCK_STREAM sockets wrapped in an mp_conn with one fd for both
 * directions and no bulk channel (a socket already moves large messages fast).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "mproc/socket.h"
#include "platform/platform.h"

struct mp_listener {
    int fd;
    bool closed;
    bool any_uid;
    bool abstract;
    pid_t owner; /* only the creating process removes the socket file */
    dev_t dev;   /* the socket file we bound, to never remove someone else's */
    ino_t ino;
    struct sockaddr_un sa;
    socklen_t salen;
    char address[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
};

/* "@name" is abstract (leading NUL byte, no terminator), anything else a path. */
static int make_addr(const char *address, struct sockaddr_un *sa, socklen_t *len)
{
    if (!address || !address[0]) return -EINVAL;
    size_t n = strnlen(address, sizeof sa->sun_path + 1);
    if (n >= sizeof sa->sun_path) return -ENAMETOOLONG;
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (address[0] == '@') {
        if (n == 1) return -EINVAL;
        memcpy(sa->sun_path + 1, address + 1, n - 1);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        memcpy(sa->sun_path, address, n + 1);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 0;
}

/* Whether a server is listening at sa: a connect that is refused means the file is stale. */
static bool someone_listens(const struct sockaddr_un *sa, socklen_t len)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return true; /* cannot tell: do not remove anything */
    int r = connect(fd, (const struct sockaddr *)sa, len);
    int e = errno;
    close(fd);
    return !(r < 0 && e == ECONNREFUSED);
}

/* Creating a listener at a path is probe, maybe unlink, bind, listen, and removing it is stat,
 * compare, unlink: without a lock, two creators at once can both succeed (one takes the other's
 * bound but not yet listening socket for a stale file, unlinks it and binds its own), and a
 * listener can record or remove the other's file. mproc processes serialise these steps with an
 * exclusive flock on the directory that holds the path: no side file to create or clean up, and
 * the lock goes with the process if it dies. The wait is bounded: a directory we may not read, or
 * one that a foreign program keeps locked for seconds, gets the old unlocked behaviour rather than
 * a hang. Returns the locked directory fd, or -1 when unlocked. */
#define LOCK_WAIT_NS ((int64_t)2000000000)

static int lock_dir(const char *path)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else {
        slash[slash == dir ? 1 : 0] = 0; /* "/s" -> "/", "a/b/s" -> "a/b" */
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int64_t give_up = mp__now_ns() + LOCK_WAIT_NS;
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if ((errno != EWOULDBLOCK && errno != EINTR) || mp__now_ns() > give_up) {
            close(fd);
            return -1;
        }
        struct timespec nap = {0, 200000};
        nanosleep(&nap, NULL);
    }
    return fd;
}

static void unlock_dir(int fd)
{
    if (fd >= 0) close(fd); /* closing the only descriptor of the open file releases the flock */
}

static int bind_replacing_stale(mp_listener *l)
{
    if (bind(l->fd, (struct sockaddr *)&l->sa, l->salen) == 0) return 0;
    if (errno != EADDRINUSE || l->abstract) return -errno;
    struct stat st;
    if (lstat(l->sa.sun_path, &st) < 0 || !S_ISSOCK(st.st_mode)) return -EADDRINUSE;
    if (someone_listens(&l->sa, l->salen)) return -EADDRINUSE;
    if (unlink(l->sa.sun_path) < 0 && errno != ENOENT) return -errno;
    if (bind(l->fd, (struct sockaddr *)&l->sa, l->salen) < 0) return -errno;
    return 0;
}

int mp_listener_new(mp_listener **out, const char *address, int backlog)
{
    if (!out) return -EINVAL;
    mp_listener *l = calloc(1, sizeof *l);
    if (!l) return -ENOMEM;
    int rc = make_addr(address, &l->sa, &l->salen);
    if (rc < 0) {
        free(l);
        return rc;
    }
    snprintf(l->address, sizeof l->address, "%s", address);
    l->abstract = address[0] == '@';
    l->owner = getpid();
    l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (l->fd < 0) {
        rc = -errno;
        free(l);
        return rc;
    }
    int lk = l->abstract ? -1 : lock_dir(l->sa.sun_path);
    rc = bind_replacing_stale(l);
    if (rc == 0 && listen(l->fd, backlog > 0 ? backlog : SOMAXCONN) < 0) {
        rc = -errno;
        if (!l->abstract) unlink(l->sa.sun_path);
    }
    /* Still under the lock, so the file at the path is the one this process just bound (fstat on
     * the socket fd would not do: it describes the socket's sockfs inode, not the file's). */
    struct stat st;
    if (rc == 0 && !l->abstract && lstat(l->sa.sun_path, &st) == 0) {
        l->dev = st.st_dev;
        l->ino = st.st_ino;
    }
    unlock_dir(lk);
    if (rc < 0) {
        close(l->fd);
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

int mp_listener_allow_any_uid(mp_listener *l, bool allow)
{
    if (!l) return -EINVAL;
    if (l->closed) return MP_ECLOSED;
    l->any_uid = allow;
    return 0;
}

const char *mp_listener_address(const mp_listener *l)
{
    return l ? l->address : "";
}

int mp_listener_fileno(const mp_listener *l)
{
    if (!l) return -EINVAL;
    return l->closed ? MP_ECLOSED : l->fd;
}

/* Accepts one pending client; the listening fd is non-blocking, so a client that another
 * process took first just sends us back to poll. */
static int accept_one(mp_listener *l, int *out, const mp__deadline *dl)
{
    for (;;) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            *out = fd;
            return 0;
        }
        int e = errno;
        if (e == EINTR || e == ECONNABORTED) continue;
        if (e != EAGAIN && e != EWOULDBLOCK) return -e;
        int p = mp__poll_one(l->fd, POLLIN, dl);
        if (p < 0) return p;
        if (p == 0) return -ETIMEDOUT;
    }
}

int mp_listener_accept(mp_listener *l, mp_conn **conn, double timeout)
{
    if (!l || !conn) return -EINVAL;
    if (l->closed) return MP_ECLOSED;
    mp__deadline dl = mp__deadline_in(timeout);
    int fd = -1;
    int rc = accept_one(l, &fd, &dl);
    if (rc < 0) return rc;
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    if (!l->any_uid && cr.uid != geteuid()) {
        close(fd);
        return MP_EPEERCRED;
    }
    mp__conn_tune_socket(fd);
    rc = mp__conn_new_fds(conn, fd, fd, -1, true, true);
    if (rc < 0) close(fd);
    return rc;
}

int mp_listener_close(mp_listener *l)
{
    if (!l || l->closed) return 0;
    l->closed = true;
    if (!l->abstract && getpid() == l->owner) {
        /* under the creators' lock: no creator can be between its probe and its bind, so the
         * file compared is the file removed, and a new file that reuses our inode number cannot
         * appear in between */
        int lk = lock_dir(l->sa.sun_path);
        struct stat st;
        if (lstat(l->sa.sun_path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
            unlink(l->sa.sun_path);
        close(l->fd);
        unlock_dir(lk);
    } else {
        close(l->fd);
    }
    l->fd = -1;
    return 0;
}

int mp_listener_free(mp_listener **pp)
{
    if (!pp || !*pp) return 0;
    mp_listener_close(*pp);
    free(*pp);
    *pp = NULL;
    return 0;
}

/* A Unix-socket connect fails with EAGAIN while the listener's backlog is full; there is nothing
 * to poll for that, so retry with short naps until the deadline. */
int mp_client_connect(mp_conn **conn, const char *address, double timeout)
{
    if (!conn) return -EINVAL;
    struct sockaddr_un sa;
    socklen_t salen;
    int rc = make_addr(address, &sa, &salen);
    if (rc < 0) return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    mp__deadline dl = mp__deadline_in(timeout);
    mp__conn_tune_socket(fd);
    for (;;) {
        if (connect(fd, (struct sockaddr *)&sa, salen) == 0) break;
        int e = errno;
        if (e == EINTR) continue;
        if (e == EINPROGRESS) {
            int p = mp__poll_one(fd, POLLOUT, &dl);
            int err = 0;
            socklen_t el = sizeof err;
            if (p > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0) break;
            rc = p < 0 ? p : p == 0 ? -ETIMEDOUT : -(err ? err : ECONNREFUSED);
            goto fail;
        }
        if (e != EAGAIN) {
            rc = -e;
            goto fail;
        }
        if (mp__deadline_left_ns(&dl) == 0) {
            rc = -ETIMEDOUT;
            goto fail;
        }
        struct timespec nap = {0, 1000000};
        nanosleep(&nap, NULL);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        rc = -errno;
        goto fail;
    }
    rc = mp__conn_new_fds(conn, fd, fd, -1, true, true);
    if (rc == 0) return 0;
fail:
    close(fd);
    return rc;
}
