/* SPDX-License-Identifier: MIT */
/* conn.c - message connections: framing, batched receive, send without SIGPIPE, mp_wait.
 *
 * The receive side reads in chunks of up to 64 KiB into a per-connection buffer, so a burst of
 * small messages costs one read for many of them; the rest of a large payload is read straight
 * into the destination. Reads and writes are tried first without blocking (RWF_NOWAIT reads and
 * plain write()s on the O_NONBLOCK write ends of pipes, MSG_DONTWAIT on sockets) and poll() waits
 * for the deadline only when they would block; a read without a deadline is a plain blocking call
 * (one syscall, the kernel does the waiting). A reader whose peer runs on another CPU spins briefly
 * before it sleeps (see read_some). A receive that finds a whole small message already buffered,
 * and a small send into a pipe with room, take short paths (mp_conn_recv, send_small).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "conn.h"
#include "conn_frame.h"
#include "handoff.h"
#include "platform/platform.h"

#define MP__MAX_IOV    64
#define MP__MAX_WAIT   4096
#define MP__IO_CHUNK   ((size_t)1 << 30) /* one read/write moves at most 1 GiB */
#define MP__DIRECT_MIN ((size_t)16 * 1024)
/* Messages up to this size are copied behind their header and written as one buffer. */
#define MP__COALESCE_MAX ((size_t)512)
/* How long a receiver that is draining a stream from another CPU lets messages gather before its
 * next read (see fill). */
#define MP__STREAM_PAUSE_NS 2000

/* ---- creation ---------------------------------------------------------------------------- */

void mp__conn_tune_socket(int fd)
{
    int sz = 4 << 20; /* capped by net.core.wmem_max / rmem_max */
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
}

int mp__conn_new_fds(mp_conn **out, int rfd, int wfd, int bfd, bool rd_sock, bool wr_sock)
{
    mp_conn *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->rfd = rfd;
    c->wfd = wfd;
    c->bfd = bfd;
    c->kfd = -1;
    c->rd_sock = rd_sock;
    c->wr_sock = wr_sock;
    c->readable = rfd >= 0;
    c->writable = wfd >= 0;
    c->max_msg = MP_CONN_MAX_MESSAGE;
    c->peer_cpu = -1;
    *out = c;
    return 0;
}

int mp_conn_from_fd(mp_conn **out, int fd, bool readable, bool writable)
{
    if (!out || fd < 0 || (!readable && !writable)) return -EINVAL;
    int type;
    socklen_t tl = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0) return -errno;
    if (type != SOCK_STREAM) return -EINVAL;
    /* An unconnected socket would fail every send (ENOTCONN, or EPIPE) and read end of file at
     * once: say so now, while the caller still has the fd. A socket whose peer has left keeps its
     * peer address and is accepted (it reads end of file, as it should). */
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    if (getpeername(fd, (struct sockaddr *)&peer, &pl) < 0) return -errno;
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0) return -errno;
    return mp__conn_new_fds(out, readable ? fd : -1, writable ? fd : -1, -1, true, true);
}

/* ---- handoff to a spawned or forkserver child (handoff.h) ------------------------------------
 * A connection travels as dups of its fds (a pipe end's read and write ends, its bulk socket and
 * the keeper of its own pipe; a socket connection's one socket) and its local state (which way it
 * works, a shut sending side, end of file or a sticky error seen, the message limit). What the
 * connection buffered but the caller has not read yet cannot travel in a few bytes: such an
 * export is refused. The child makes its own peer hang-up watch at its first send, as any end
 * does; the peer sees the child's end go only when every copy is closed, so the parent closes its
 * own copy after the start, as under fork. */

#define CONN_DESC_MAGIC 0x6d706863u /* "mphc" */

enum {
    CD_RD_SOCK = 1,
    CD_WR_SOCK = 2,
    CD_READABLE = 4,
    CD_WRITABLE = 8,
    CD_WR_SHUT = 16,
    CD_NONBLOCK = 32,
    CD_WR_NB = 64,
    CD_RD_EOF = 128,
};

struct conn_desc {
    uint32_t magic;
    uint32_t flags;
    int32_t rd_err;
    int8_t ir, iw, ib, ik; /* index in the handoff's fds of rfd, wfd, bfd, kfd; -1: none */
    uint64_t max_msg;
};

static int add_conn_fd(mp__handoff *h, int fd, int8_t *idx)
{
    *idx = -1;
    if (fd < 0) return 0;
    int r = mp__handoff_add_fd(h, fd);
    if (r == 0) *idx = (int8_t)(h->nfds - 1);
    return r;
}

int mp__conn_export(const void *obj, mp__handoff *h, const char **why)
{
    const mp_conn *c = obj;
    if (!c) return -EINVAL;
    if (c->closed) {
        *why = "the connection is closed";
        return MP_ENOTSUP;
    }
    if (c->rend > c->rpos || c->in_msg) {
        *why = "the connection holds received data not read yet (pass it before receiving, or "
               "read everything first)";
        return MP_ENOTSUP;
    }
    if (c->rfd < 0 && c->wfd < 0) {
        *why = "the connection has no fd";
        return MP_ENOTSUP;
    }
    struct conn_desc d = {CONN_DESC_MAGIC, 0, c->rd_err, -1, -1, -1, -1, c->max_msg};
    int r = add_conn_fd(h, c->rfd, &d.ir);
    if (!r && c->wfd >= 0 && c->wfd == c->rfd)
        d.iw = d.ir;
    else if (!r)
        r = add_conn_fd(h, c->wfd, &d.iw);
    if (!r) r = add_conn_fd(h, c->bfd, &d.ib);
    if (!r) r = add_conn_fd(h, c->kfd, &d.ik);
    if (r) return r;
    d.flags = (c->rd_sock ? CD_RD_SOCK : 0) | (c->wr_sock ? CD_WR_SOCK : 0) |
              (c->readable ? CD_READABLE : 0) | (c->writable ? CD_WRITABLE : 0) |
              (c->wr_shut ? CD_WR_SHUT : 0) | (c->nonblock ? CD_NONBLOCK : 0) |
              (c->wr_nb ? CD_WR_NB : 0) | (c->rd_eof ? CD_RD_EOF : 0);
    mp__handoff_desc_put(h, &d, sizeof d);
    return 0;
}

/* Takes fd slot idx of h (-1: none); MP_ECORRUPT for an index that is not a distinct live slot. */
static int take_conn_fd(mp__handoff *h, int8_t idx, bool *used, int *fd)
{
    *fd = -1;
    if (idx == -1) return 0;
    if (idx < 0 || idx >= h->nfds || used[idx] || h->fds[idx] < 0) return MP_ECORRUPT;
    used[idx] = true;
    *fd = h->fds[idx];
    return 0;
}

int mp__conn_import(mp__handoff *h, void **out)
{
    struct conn_desc d;
    if (!mp__handoff_desc_get(h, &d, sizeof d) || d.magic != CONN_DESC_MAGIC || d.max_msg == 0 ||
        d.max_msg > MP_CONN_MAX_MESSAGE || (d.flags & ~255u) ||
        (d.rd_err != 0 && d.rd_err != MP_ECORRUPT))
        return MP_ECORRUPT;
    bool used[MP__HANDOFF_FDS] = {false};
    int rfd, wfd = -1, bfd, kfd;
    bool shared = d.iw != -1 && d.iw == d.ir; /* a socket connection: one fd both ways */
    int r = take_conn_fd(h, d.ir, used, &rfd);
    if (!r && !shared) r = take_conn_fd(h, d.iw, used, &wfd);
    if (!r && shared) wfd = rfd;
    if (!r) r = take_conn_fd(h, d.ib, used, &bfd);
    if (!r) r = take_conn_fd(h, d.ik, used, &kfd);
    if (r) return r;
    int n = 0;
    for (int i = 0; i < h->nfds; i++)
        n += used[i];
    bool rd_sock = d.flags & CD_RD_SOCK, wr_sock = d.flags & CD_WR_SOCK;
    /* Every fd the description names, nothing else; a socket connection has no bulk channel
     * nor keeper; a shared fd only for sockets; readable/writable only with their fd. */
    if (n != h->nfds || (rfd < 0 && wfd < 0) || (shared && !(rd_sock && wr_sock)) ||
        ((d.flags & CD_READABLE) && rfd < 0) || ((d.flags & CD_WRITABLE) && wfd < 0) ||
        (rd_sock && wr_sock && (bfd >= 0 || kfd >= 0)))
        return MP_ECORRUPT;
    mp_conn *c;
    if ((r = mp__conn_new_fds(&c, rfd, wfd, bfd, rd_sock, wr_sock))) return r;
    c->kfd = kfd;
    c->readable = d.flags & CD_READABLE;
    c->writable = d.flags & CD_WRITABLE;
    c->wr_shut = d.flags & CD_WR_SHUT;
    c->nonblock = d.flags & CD_NONBLOCK;
    c->wr_nb = d.flags & CD_WR_NB;
    c->rd_eof = d.flags & CD_RD_EOF;
    c->rd_err = d.rd_err;
    c->max_msg = d.max_msg;
    for (int i = 0; i < h->nfds; i++) {
        int fl = fcntl(h->fds[i], F_GETFD);
        if (fl >= 0 && !(fl & FD_CLOEXEC)) (void)fcntl(h->fds[i], F_SETFD, fl | FD_CLOEXEC);
        h->fds[i] = -1; /* the connection owns them now */
    }
    *out = c;
    return 0;
}

/* ---- close ------------------------------------------------------------------------------- */

static void close_fd(int *fd)
{
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

int mp_conn_close(mp_conn *c)
{
    if (!c || c->closed) return 0;
    c->closed = true;
    mp__hangup_watch_free(&c->hup);    /* before the fds it watches */
    if (c->wfd == c->rfd) c->wfd = -1; /* a socket connection: one fd for both sides */
    close_fd(&c->rfd);
    close_fd(&c->wfd);
    close_fd(&c->bfd);
    close_fd(&c->kfd);
    free(c->rbuf);
    free(c->in_data);
    c->rbuf = c->in_data = NULL;
    c->rpos = c->rend = 0;
    c->in_msg = false;
    return 0;
}

int mp_conn_free(mp_conn **pp)
{
    if (!pp || !*pp) return 0;
    mp_conn_close(*pp);
    free(*pp);
    *pp = NULL;
    return 0;
}

int mp_conn_fileno(const mp_conn *c)
{
    if (!c) return -EINVAL;
    if (c->closed) return MP_ECLOSED;
    return c->rfd >= 0 ? c->rfd : c->wfd >= 0 ? c->wfd : c->bfd;
}

int mp_conn_is_readable(const mp_conn *c)
{
    return c ? c->readable : -EINVAL;
}

int mp_conn_is_writable(const mp_conn *c)
{
    return c ? c->writable : -EINVAL;
}

int mp_conn_is_closed(const mp_conn *c)
{
    return c ? c->closed : -EINVAL;
}

int mp_conn_set_max_message(mp_conn *c, uint64_t max)
{
    if (!c || max == 0 || max > MP_CONN_MAX_MESSAGE) return -EINVAL;
    if (c->closed) return MP_ECLOSED;
    c->max_msg = max;
    return 0;
}

int mp_conn_peer(const mp_conn *c, pid_t *pid, uid_t *uid)
{
    if (!c) return -EINVAL;
    if (c->closed) return MP_ECLOSED;
    int fd = c->bfd >= 0 ? c->bfd : c->rfd >= 0 ? c->rfd : c->wfd;
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) return -errno;
    if (pid) *pid = cr.pid;
    if (uid) *uid = cr.uid;
    return 0;
}

/* ---- low-level I/O ---------------------------------------------------------------------- */

/* RWF_NOWAIT is missing on old kernels (pipes got it in 5.8): fall back to O_NONBLOCK fds, on
 * which a plain read/write never blocks and poll() does the waiting. */
static void go_nonblocking(mp_conn *c)
{
    int fds[3] = {c->rfd, c->wfd, c->bfd};
    for (int i = 0; i < 3; i++) {
        if (fds[i] < 0) continue;
        int fl = fcntl(fds[i], F_GETFL);
        if (fl >= 0) (void)fcntl(fds[i], F_SETFL, fl | O_NONBLOCK);
    }
    c->nonblock = true;
}

/* Spin only when the peer is known to run on another CPU (an unknown peer: never). */
static int64_t spin_budget(int peer_cpu)
{
    return peer_cpu < 0 ? 0 : mp__spin_budget(peer_cpu);
}

/* One read of at most n bytes from fd: > 0 bytes, 0 at end of file, -ETIMEDOUT, or -errno.
 * EINTR is retried against the same deadline. The peer resetting a socket counts as end of
 * file: the peer is gone, and everything it sent before was already delivered.
 *
 * spin: before sleeping, keep trying non-blocking reads for mp__spin_budget(peer's CPU), tens of
 * microseconds and only when the peer runs on another CPU (never when it needs ours). Waking a
 * halted vCPU costs ~35 us here, paid by the sender on every message that finds the reader asleep:
 * a reader that stays awake makes both the sender and the round trip several times faster. */
static ssize_t read_some(mp_conn *c, int fd, bool sock, void *buf, size_t n, bool all, bool spin,
                         const mp__deadline *dl)
{
    if (n > MP__IO_CHUNK) n = MP__IO_CHUNK;
    int64_t spin_until = 0;
    if (spin) {
        int64_t budget = spin_budget(c->peer_cpu);
        int64_t left = mp__deadline_left_ns(dl);
        if (budget > left) budget = left;
        if (budget > 0) spin_until = mp__now_ns() + budget;
    }
    for (;;) {
        bool wait = mp__deadline_forever(dl) && !c->nonblock && spin_until == 0;
        ssize_t r;
        if (sock) {
            /* MSG_WAITALL: one wake-up for a whole large payload instead of one per chunk */
            r = recv(fd, buf, n, wait ? (all ? MSG_WAITALL : 0) : MSG_DONTWAIT);
        } else if (wait || c->nonblock) {
            r = read(fd, buf, n);
        } else {
            struct iovec v = {buf, n};
            r = preadv2(fd, &v, 1, -1, RWF_NOWAIT);
        }
        if (r >= 0) return r;
        int e = errno;
        if (e == EINTR) continue;
        if (e == ECONNRESET) return 0;
        if (e == EOPNOTSUPP && !sock && !c->nonblock) {
            go_nonblocking(c);
            continue;
        }
        if (e != EAGAIN && e != EWOULDBLOCK) return -e;
        if (spin_until) {
            /* retry every ~2 us: soon enough to beat waking a sleeping reader by far, seldom
             * enough not to fight the writer for the pipe's lock (retrying at once measured
             * 30-40% slower for 64-byte streams, checking with poll() no better) */
            int64_t now = mp__now_ns();
            if (now < spin_until) {
                while (mp__now_ns() < now + 2000)
                    mp__cpu_relax();
                continue;
            }
            spin_until = 0;
            if (mp__deadline_forever(dl) && !c->nonblock) continue; /* now a blocking read */
        }
        int p = mp__poll_one(fd, POLLIN, dl);
        if (p < 0) return p;
        if (p == 0) return -ETIMEDOUT;
    }
}

/* Moves the iovec past n written bytes. */
static void iov_advance(struct iovec **iov, int *cnt, size_t n)
{
    while (*cnt > 0 && n >= (*iov)->iov_len) {
        n -= (*iov)->iov_len;
        (*iov)++;
        (*cnt)--;
    }
    if (*cnt > 0) {
        (*iov)->iov_base = (char *)(*iov)->iov_base + n;
        (*iov)->iov_len -= n;
    }
}

/* ---- is the peer of a pipe end still there? ------------------------------------------------
 *
 * A pipe write never raises SIGPIPE here: the writer keeps a read end of its own pipe open (kfd),
 * so the kernel always sees a reader, and whether the real reader is still there is asked of the
 * bulk socketpair instead: once every copy of the peer's end is closed (mp_conn_close, or the
 * kernel when the process died), our end reports POLLHUP. A platform hang-up watch (platform.h)
 * asks it without a system call per send, through a kernel poll armed by the first send.
 *
 * What the watch arms its poll on matters: a pending poll holds a reference to its file, and a
 * ring torn down by a dying process drops it only later. So no end polls a file whose release
 * its peer waits for: a duplex end polls its own pipe read end, which hangs up when the peer's
 * write end (never polled) is gone; a one-way sending end polls the bulk socket, whose other end
 * belongs to a receive-only end, which never polls. The bulk socket's own hang-up, the
 * authoritative check, therefore always comes at once. A peer whose torn send closed its pipe
 * write end, or shut its side of the socket, fires that poll without being gone: the watch then
 * goes back to asking the socket at every send. */

#ifdef MP_TEST_HOOKS
bool mp__conn_no_uring;
#else
#define mp__conn_no_uring false
#endif

static bool peer_gone(mp_conn *c)
{
    if (__builtin_expect(!c->hup, 0)) {
        int arm = c->rfd >= 0 ? c->rfd : c->bfd;
        if (mp__hangup_watch_new(&c->hup, c->bfd, arm, !mp__conn_no_uring) < 0)
            return mp__hangup_now(c->bfd);
    }
    return mp__hangup_watch_gone(c->hup);
}

/* Waits until fd is writable, or the peer is gone (live >= 0: the bulk socket to watch for
 * POLLHUP). Returns > 0, -ETIMEDOUT, -EPIPE or -errno. */
static int wait_writable(int fd, int live, const mp__deadline *dl)
{
    struct pollfd p[2] = {{.fd = fd, .events = POLLOUT}, {.fd = live, .events = 0}};
    for (;;) {
        int r = poll(p, live >= 0 ? 2 : 1, mp__deadline_poll_ms(dl));
        if (r < 0 && errno != EINTR) return -errno;
        if (r > 0) {
            if (live >= 0 && (p[1].revents & (POLLHUP | POLLERR))) return -EPIPE;
            return r;
        }
        if (r == 0 && mp__deadline_left_ns(dl) == 0) return -ETIMEDOUT;
    }
}

/* Writes the whole iovec to fd (it is modified). *wrote becomes true once any byte went out.
 * Sockets: blocking send without deadline, MSG_DONTWAIT + poll with one. Pipes: never a blocking
 * write (a writer that keeps its own read end would wait forever for a dead reader), so
 * RWF_NOWAIT + poll, watching the bulk socket for the peer's death.
 * Returns 0, -ETIMEDOUT, -EPIPE (no reader) or -errno. */
static int write_all(mp_conn *c, int fd, bool sock, struct iovec *iov, int cnt,
                     const mp__deadline *dl, bool *wrote)
{
    while (cnt > 0 && iov->iov_len == 0) {
        iov++;
        cnt--;
    }
    while (cnt > 0) {
        bool wait = sock && mp__deadline_forever(dl) && !c->nonblock;
        ssize_t r;
        if (sock && cnt == 1) {
            r = send(fd, iov->iov_base, iov->iov_len, MSG_NOSIGNAL | (wait ? 0 : MSG_DONTWAIT));
        } else if (sock) {
            struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
            r = sendmsg(fd, &m, MSG_NOSIGNAL | (wait ? 0 : MSG_DONTWAIT));
        } else if (c->wr_nb || c->nonblock) {
            r = cnt == 1 ? write(fd, iov->iov_base, iov->iov_len) : writev(fd, iov, cnt);
        } else {
            r = pwritev2(fd, iov, cnt, -1, RWF_NOWAIT);
        }
        if (r >= 0) {
            if (r > 0) *wrote = true;
            iov_advance(&iov, &cnt, (size_t)r);
            continue;
        }
        int e = errno;
        if (e == EINTR) continue;
        if (e == ECONNRESET) return -EPIPE;
        if (e == EOPNOTSUPP && !sock && !c->nonblock) {
            go_nonblocking(c);
            continue;
        }
        if (e != EAGAIN && e != EWOULDBLOCK) return -e;
        int p = wait_writable(fd, sock ? -1 : c->bfd, dl);
        if (p < 0) return p;
        /* POLLERR/POLLHUP on fd: the next write reports EPIPE */
    }
    return 0;
}

/* ---- send -------------------------------------------------------------------------------- */

/* The stream cannot be resynchronised after part of a message went out: stop sending, so the
 * peer sees end of file after the whole messages before this one. */
static void shut_sending(mp_conn *c)
{
    c->wr_shut = true;
    if (c->wr_sock) {
        (void)shutdown(c->wfd, SHUT_WR);
    } else {
        close_fd(&c->wfd);
    }
    if (c->bfd >= 0) (void)shutdown(c->bfd, SHUT_WR);
}

/* A message of at most MP__COALESCE_MAX bytes: copied behind its header and sent with one plain
 * write() of one buffer, which the kernel takes faster than a writev() (no iovec array to
 * import). Kept apart from the general path so the common case carries no iovec array. */
static int send_small(mp_conn *c, const struct iovec *iov, int iovcnt, uint64_t len,
                      const mp__deadline *dl)
{
    unsigned char m[MP__FRAME_HDR + MP__COALESCE_MAX];
    mp__frame_encode(m, len, false, mp__current_cpu());
    size_t n = MP__FRAME_HDR;
    for (int i = 0; i < iovcnt; i++) {
        memcpy(m + n, iov[i].iov_base, iov[i].iov_len);
        n += iov[i].iov_len;
    }
    /* No SIGPIPE, and -EPIPE for a peer that is gone: see peer_gone. Blocking SIGPIPE around the
     * write instead costs two sigprocmask calls and more than halved small-message throughput. */
    if (!c->wr_sock && peer_gone(c)) return -EPIPE;
    struct iovec v = {m, n};
    bool wrote = false;
    if (c->wr_nb) {
        /* the common case, straight: a pipe with room for the message (at most PIPE_BUF bytes,
         * so the write is whole or fails with nothing written) */
        ssize_t r = write(c->wfd, m, n);
        if (r == (ssize_t)n) return 0;
        if (r > 0) {
            wrote = true;
            v.iov_base = m + r;
            v.iov_len -= (size_t)r;
        }
    }
    int rc = write_all(c, c->wfd, c->wr_sock, &v, 1, dl, &wrote);
    if (rc < 0 && wrote) shut_sending(c);
    return rc;
}

static int send_frame(mp_conn *c, const struct iovec *iov, int iovcnt, uint64_t len,
                      const mp__deadline *dl)
{
    bool bulk = c->bfd >= 0 && len >= MP__BULK_MIN;
    if (!bulk && len <= MP__COALESCE_MAX) return send_small(c, iov, iovcnt, len, dl);
    unsigned char hdr[MP__FRAME_HDR];
    struct iovec v[MP__MAX_IOV + 1];
    mp__frame_encode(hdr, len, bulk, mp__current_cpu());
    v[0].iov_base = hdr;
    v[0].iov_len = MP__FRAME_HDR;
    int n = 1;
    if (!bulk && iovcnt > 0) {
        memcpy(v + 1, iov, sizeof *iov * (size_t)iovcnt);
        n += iovcnt;
    }
    bool wrote = false;
    if (!c->wr_sock && peer_gone(c)) return -EPIPE; /* see send_small */
    int rc = write_all(c, c->wfd, c->wr_sock, v, n, dl, &wrote);
    if (rc == 0 && bulk) {
        memcpy(v, iov, sizeof *iov * (size_t)iovcnt);
        rc = write_all(c, c->bfd, true, v, iovcnt, dl, &wrote);
    }
    if (rc < 0 && wrote) shut_sending(c);
    return rc;
}

static int check_send(mp_conn *c)
{
    if (!c) return -EINVAL;
    if (c->closed) return MP_ECLOSED;
    if (!c->writable) return MP_EWRONGDIR;
    if (c->wr_shut) return MP_ECLOSED;
    return 0;
}

int mp_conn_sendv(mp_conn *c, const struct iovec *iov, int iovcnt, double timeout)
{
    int rc = check_send(c);
    if (rc < 0) return rc;
    if (iovcnt < 0 || iovcnt > MP__MAX_IOV || (!iov && iovcnt > 0)) return -EINVAL;
    uint64_t len = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (!iov[i].iov_base && iov[i].iov_len > 0) return -EINVAL;
        if (iov[i].iov_len > MP_CONN_MAX_MESSAGE) return MP_ETOOBIG;
        len += iov[i].iov_len;
    }
    if (len > c->max_msg) return MP_ETOOBIG;
    mp__deadline dl = mp__deadline_in(timeout);
    return send_frame(c, iov, iovcnt, len, &dl);
}

int mp_conn_send(mp_conn *c, const void *buf, size_t len, double timeout)
{
    int rc = check_send(c);
    if (rc < 0) return rc;
    if (!buf && len > 0) return -EINVAL;
    if (len > c->max_msg) return MP_ETOOBIG;
    struct iovec v = {(void *)buf, len};
    mp__deadline dl = mp__deadline_in(timeout);
    return send_frame(c, &v, len ? 1 : 0, len, &dl);
}

/* ---- receive ----------------------------------------------------------------------------- */

/* Reads more bytes from rfd into the receive buffer. Returns > 0, 0 at end of file, or < 0. */
static ssize_t fill(mp_conn *c, const mp__deadline *dl)
{
    if (!c->rbuf) {
        c->rbuf = malloc(MP__RBUF_SIZE);
        if (!c->rbuf) return -ENOMEM;
    }
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rend - c->rpos);
        c->rend -= c->rpos;
        c->rpos = 0;
    }
    if (c->rd_stream && spin_budget(c->peer_cpu) > 0 &&
        mp__deadline_left_ns(dl) > MP__STREAM_PAUSE_NS) {
        /* A stream from another CPU: let a few more messages arrive before reading. A reader
         * that takes each message the moment it lands finds the pipe empty every time, and then
         * every write pays for an empty pipe (a fresh buffer, a wake-up call) and fights the
         * reader for the pipe's lock: measured here, the sender's CPU time per 64-byte message
         * fell from ~585 to ~505 ns with a 2 us pause (a raw write: ~470). */
        int64_t until = mp__now_ns() + MP__STREAM_PAUSE_NS;
        while (mp__now_ns() < until)
            mp__cpu_relax();
    }
    ssize_t r = read_some(c, c->rfd, c->rd_sock, c->rbuf + c->rend, MP__RBUF_SIZE - c->rend, false,
                          true, dl);
    if (r > 0) {
        c->rend += (size_t)r;
        /* a stream: the peer sent its next message before we took this one (more than one whole
         * frame arrived). A request/response peer never does, so round trips never pause. */
        mp__frame f;
        size_t have = c->rend - c->rpos;
        c->rd_stream =
            mp__frame_decode(c->rbuf + c->rpos, have, c->max_msg, c->bfd >= 0, &f) == 0 &&
            !f.bulk && f.len < have && have - f.len >= 2 * MP__FRAME_HDR;
    }
    if (r == 0) c->rd_eof = true;
    return r;
}

/* Makes sure a message header has been consumed (in_msg). */
static int next_header(mp_conn *c, const mp__deadline *dl)
{
    while (!c->in_msg) {
        if (c->rd_err) return c->rd_err;
        mp__frame f;
        int r = mp__frame_decode(c->rbuf ? c->rbuf + c->rpos : NULL, c->rend - c->rpos, c->max_msg,
                                 c->bfd >= 0, &f);
        if (r < 0) return c->rd_err = r;
        if (r == 0) {
            c->rpos += MP__FRAME_HDR;
            c->in_msg = true;
            c->in_bulk = f.bulk;
            c->in_len = f.len;
            c->in_have = 0;
            c->peer_cpu = f.cpu;
            return 0;
        }
        if (c->rd_eof) return MP_EEOF;
        ssize_t n = fill(c, dl);
        if (n < 0) return (int)n;
    }
    return 0;
}

static void end_message(mp_conn *c, const unsigned char *dst)
{
    if (c->in_data && c->in_data != dst) free(c->in_data);
    c->in_data = NULL;
    c->in_dcap = 0;
    c->in_msg = false;
}

#ifdef MP_TEST_HOOKS
void *(*mp__conn_realloc)(void *p, size_t n) = realloc;
#define conn_realloc mp__conn_realloc
#else
#define conn_realloc realloc
#endif

/* Keeps the payload read so far into dst (in_have bytes) inside the connection, for the next
 * receive to continue from. When that copy cannot be allocated, the bytes already taken from the
 * stream are lost and the stream cannot be resynchronised: the receiving side breaks for good
 * (this call -ENOMEM, every later receive MP_ECLOSED) rather than count bytes it did not keep. */
static int keep_partial(mp_conn *c, const unsigned char *dst)
{
    if (c->in_have == 0 || c->in_data == dst) return 0;
    if (c->in_dcap < c->in_have) {
        unsigned char *p = conn_realloc(c->in_data, (size_t)c->in_have);
        if (!p) {
            end_message(c, dst);
            c->rd_err = MP_ECLOSED;
            return -ENOMEM;
        }
        c->in_data = p;
        c->in_dcap = (size_t)c->in_have;
    }
    memcpy(c->in_data, dst, (size_t)c->in_have);
    return 0;
}

/* Reads the rest of the current message's payload into dst (room for in_len bytes). When dst is
 * not in_data, whatever an earlier receive kept in in_data is copied in first. */
static int read_payload(mp_conn *c, unsigned char *dst, const mp__deadline *dl)
{
    if (c->in_data && c->in_data != dst && c->in_have > 0) memcpy(dst, c->in_data, c->in_have);
    while (c->in_have < c->in_len) {
        uint64_t need = c->in_len - c->in_have;
        size_t buffered = c->rend - c->rpos;
        ssize_t r;
        if (!c->in_bulk && buffered > 0) {
            size_t k = need < buffered ? (size_t)need : buffered;
            memcpy(dst + c->in_have, c->rbuf + c->rpos, k);
            c->rpos += k;
            c->in_have += k;
            continue;
        }
        if (c->in_bulk) {
            r = read_some(c, c->bfd, true, dst + c->in_have, (size_t)need, true, true, dl);
        } else if (c->rd_eof) {
            r = 0;
        } else if (need >= MP__DIRECT_MIN) {
            r = read_some(c, c->rfd, c->rd_sock, dst + c->in_have, (size_t)need, true, false, dl);
        } else {
            r = fill(c, dl);
            if (r > 0) continue;
        }
        if (r > 0) {
            c->in_have += (uint64_t)r;
            continue;
        }
        if (r == 0) { /* the peer left in the middle of a message: it is lost with the peer */
            c->rd_eof = true;
            end_message(c, dst);
            return MP_EEOF;
        }
        int k = keep_partial(c, dst);
        return k < 0 ? k : (int)r;
    }
    end_message(c, dst);
    return 0;
}

static int check_recv(const mp_conn *c)
{
    if (!c) return -EINVAL;
    if (c->closed) return MP_ECLOSED;
    if (!c->readable) return MP_EWRONGDIR;
    return 0;
}

int mp_conn_recv(mp_conn *c, void *buf, size_t cap, size_t *len, double timeout)
{
    int rc = check_recv(c);
    if (rc < 0) return rc;
    if (!len || (!buf && cap > 0)) return -EINVAL;
    if (!c->in_msg && !c->rd_err) {
        /* the common case of a batch: a whole small message already in the receive buffer,
         * copied out without the general path's bookkeeping */
        size_t have = c->rend - c->rpos;
        mp__frame f;
        if (have >= MP__FRAME_HDR &&
            mp__frame_decode(c->rbuf + c->rpos, have, c->max_msg, c->bfd >= 0, &f) == 0 &&
            !f.bulk && f.len <= cap && f.len <= have - MP__FRAME_HDR) {
            if (f.len) memcpy(buf, c->rbuf + c->rpos + MP__FRAME_HDR, (size_t)f.len);
            c->rpos += MP__FRAME_HDR + (size_t)f.len;
            c->peer_cpu = f.cpu;
            *len = (size_t)f.len;
            return 0;
        }
    }
    mp__deadline dl = mp__deadline_in(timeout);
    rc = next_header(c, &dl);
    if (rc < 0) return rc;
    *len = (size_t)c->in_len;
    if (c->in_len > cap) return MP_ETOOSMALL;
    return read_payload(c, buf, &dl);
}

int mp_conn_recv_alloc(mp_conn *c, void **buf, size_t *len, double timeout)
{
    if (buf) *buf = NULL;
    int rc = check_recv(c);
    if (rc < 0) return rc;
    if (!buf || !len) return -EINVAL;
    mp__deadline dl = mp__deadline_in(timeout);
    rc = next_header(c, &dl);
    if (rc < 0) return rc;
    size_t n = (size_t)c->in_len;
    /* The new buffer becomes in_data at once: a timeout leaves the part read so far in it, and the
     * next receive continues there without copying. */
    unsigned char *p = realloc(c->in_data, n ? n : 1);
    if (!p) return -ENOMEM;
    c->in_data = p;
    c->in_dcap = n;
    rc = read_payload(c, p, &dl);
    if (rc < 0) {
        if (!c->in_msg) free(p); /* end of file: the message ended; else it is kept */
        return rc;
    }
    *buf = p;
    *len = n;
    return 0;
}

/* ---- poll and wait ----------------------------------------------------------------------- */

/* Whether a receive can make progress without waiting on an fd; else the fd to wait on. */
static bool conn_ready_now(const mp_conn *c, int *fd)
{
    if (c->rd_err || c->rd_eof) return true;
    if (c->in_msg) {
        if (c->in_bulk) {
            *fd = c->bfd;
            return false;
        }
        if (c->rend > c->rpos || c->in_len == c->in_have) return true;
        *fd = c->rfd;
        return false;
    }
    if (c->rend - c->rpos >= MP__FRAME_HDR) return true;
    *fd = c->rfd;
    return false;
}

/* One fd to wait for, and the first item that asked for it. */
typedef struct wait_fd {
    int fd;
    uint32_t item;
} wait_fd;

static int cmp_wait_fd(const void *x, const void *y)
{
    const wait_fd *a = x, *b = y;
    return a->fd < b->fd ? -1 : a->fd > b->fd;
}

/* Each distinct fd is waited for once, whatever the number of items that name it (items without
 * one cost nothing), so n items never exceed poll's limit of RLIMIT_NOFILE fds when the fds are
 * ordinary open ones; more distinct fds than that (opened before the soft limit was lowered) go
 * to epoll. */
int mp_wait(mp_wait_item *items, size_t n, double timeout)
{
    if (!items && n > 0) return -EINVAL;
    if (n > MP__MAX_WAIT) return -EINVAL;
    enum { STACK = 16 };
    wait_fd stack_w[STACK];
    struct pollfd stack_u[STACK];
    uint32_t stack_slot[STACK];
    wait_fd *w = stack_w;
    struct pollfd *u = stack_u;
    uint32_t *slot = stack_slot;
    void *heap = NULL;
    if (n > STACK) {
        heap = malloc(n * (sizeof *w + sizeof *u + sizeof *slot));
        if (!heap) return -ENOMEM;
        u = heap;
        w = (wait_fd *)(u + n);
        slot = (uint32_t *)(w + n);
    }
    int ready = 0, rc = 0;
    size_t nw = 0;
    for (size_t i = 0; i < n; i++) {
        mp_conn *c = items[i].conn;
        items[i].ready = false;
        slot[i] = UINT32_MAX;
        int fd = -1;
        if (c) {
            if ((rc = check_recv(c)) < 0) goto out;
            if (conn_ready_now(c, &fd)) {
                items[i].ready = true;
                ready++;
                continue;
            }
        } else {
            fd = items[i].fd;
        }
        if (fd >= 0) w[nw++] = (wait_fd){fd, (uint32_t)i};
    }
    if (nw > 1) qsort(w, nw, sizeof *w, cmp_wait_fd);
    size_t nu = 0;
    for (size_t k = 0; k < nw; k++) {
        if (nu == 0 || u[nu - 1].fd != w[k].fd)
            u[nu++] = (struct pollfd){.fd = w[k].fd, .events = POLLIN};
        slot[w[k].item] = (uint32_t)(nu - 1);
    }
    mp__deadline dl = mp__deadline_in(ready ? 0 : timeout);
    if (nu > 0 || !ready) {
        rc = mp__poll_fds(u, nu, &dl);
        if (rc < 0) goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (slot[i] != UINT32_MAX &&
            (u[slot[i]].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) {
            items[i].ready = true;
            ready++;
        }
    }
    rc = ready;
out:
    free(heap);
    return rc;
}

int mp_conn_poll(const mp_conn *c, double timeout)
{
    int rc = check_recv(c);
    if (rc < 0) return rc;
    int fd = -1;
    if (conn_ready_now(c, &fd)) return 1;
    mp__deadline dl = mp__deadline_in(timeout);
    struct pollfd u = {.fd = fd, .events = POLLIN};
    rc = mp__poll_fds(&u, 1, &dl);
    return rc < 0 ? rc : rc > 0;
}
