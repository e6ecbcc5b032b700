/* SPDX-License-Identifier: MIT */
/* hangup.c - watching fds, the Linux way: the peer hang-up watch of platform.h (is the other end
 * of a socket gone, asked at every send and answered without a system call while nothing
 * happened), and mp__poll_fds (poll() that does not stop at RLIMIT_NOFILE fds).
 *
 * Asking the kernel costs a system call per send (epoll_wait on a ready list, ~200 ns of the
 * sender's CPU; it made a 64-byte pipe send two system calls where a raw pipe makes one). So a
 * watch arms one io_uring POLL_ADD for POLLHUP, once, on its first check, and each later check
 * only reads the completion ring's tail, in memory shared with the kernel.
 *
 * The kernel posts the completion from the thread that armed the poll, when that thread next
 * enters the kernel, and flags it in the ring until then (IORING_SQ_TASKRUN; before 5.19 it
 * interrupts that thread like a signal instead), so for that thread a hang-up that happened
 * before its check (it saw the close or reaped the process, or merely runs after the peer went)
 * is always seen. Other threads, and processes that inherited the ring across fork, ask the
 * kernel directly. Any completion is checked on the socket before it is believed (a cancelled one
 * re-arms); one that does not mean the peer is gone (the armed fd hung up for another reason, or
 * POLLRDHUP: the peer shut its sending side) would fire again at once, so that watch goes back to
 * the system call for good. Without io_uring (old kernel, io_uring_disabled, seccomp), or when the
 * ring cannot be set up, every check is the system call, on an epoll instance made once.
 */
#include <errno.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "platform.h"

typedef struct hup_ring {
    int fd;
    void *sq, *cq;
    size_t sq_len, cq_len;
    struct io_uring_sqe *sqes;
    size_t sqes_len;
    unsigned *sq_tail, *sq_mask, *sq_array, *sq_flags;
    bool taskrun_flag; /* the kernel sets IORING_SQ_TASKRUN while a completion is on its way */
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_cqe *cqes;
    pthread_t thread;  /* the thread that armed the poll: it runs the completion */
    unsigned fork_gen; /* fork_gen when it was armed: a forked child makes its own */
} hup_ring;

struct mp__hangup_watch {
    int sock;       /* the authoritative fd: POLLHUP/POLLERR here means the peer is gone */
    int arm;        /* the fd the io_uring poll is armed on */
    int efd;        /* an epoll instance watching sock, made at the first slow check; -1 */
    bool ring_off;  /* io_uring not allowed, unavailable or unsuitable: always the slow check */
    hup_ring *ring; /* NULL until the first check (or when ring_off) */
};

static unsigned fork_gen;
static void on_fork_child(void)
{
    fork_gen++;
}
static void register_atfork(void)
{
    (void)pthread_atfork(NULL, NULL, on_fork_child);
}

static void ring_free(hup_ring **pr)
{
    hup_ring *r = *pr;
    if (!r) return;
    if (r->sqes) munmap(r->sqes, r->sqes_len);
    if (r->cq && r->cq != r->sq) munmap(r->cq, r->cq_len);
    if (r->sq) munmap(r->sq, r->sq_len);
    if (r->fd >= 0) close(r->fd);
    free(r);
    *pr = NULL;
}

static void *map_ring(int fd, size_t len, off_t off)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, off);
    return p == MAP_FAILED ? NULL : p;
}

/* Submits a one-shot poll for POLLHUP on fd. Returns 0 or -1. */
static int ring_arm(hup_ring *r, int fd)
{
    unsigned tail = *r->sq_tail, idx = tail & *r->sq_mask;
    struct io_uring_sqe *e = &r->sqes[idx];
    memset(e, 0, sizeof *e);
    e->opcode = IORING_OP_POLL_ADD;
    e->fd = fd;
    e->poll32_events = POLLHUP; /* the kernel adds POLLERR and POLLRDHUP; never POLLIN */
    r->sq_array[idx] = idx;
    __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
    long n;
    while ((n = syscall(__NR_io_uring_enter, r->fd, 1, 0, 0, NULL, 0)) < 0 && errno == EINTR) {
    }
    if (n != 1) return -1;
    r->thread = pthread_self();
    r->fork_gen = __atomic_load_n(&fork_gen, __ATOMIC_RELAXED);
    return 0;
}

/* io_uring is not there at all (ENOSYS, or EPERM: io_uring_disabled, seccomp): stop asking. */
static bool uring_missing;

static hup_ring *ring_new(int fd)
{
    if (__atomic_load_n(&uring_missing, __ATOMIC_RELAXED)) return NULL;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_atfork);
    hup_ring *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    struct io_uring_params p;
    /* Cooperative task running (5.19): the completion is posted when the arming thread next
     * enters the kernel, with no IPI and no interrupted sleep, and IORING_SQ_TASKRUN says meanwhile
     * that one is on its way. Older kernels notify like a signal and interrupt the thread. Either
     * way a blocking epoll_wait() of that thread may end early with EINTR, once, when the peer
     * goes (docs/pipe.md). */
    unsigned flags[2] = {IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG, 0};
    r->fd = -1;
    for (int i = 0; i < 2 && r->fd < 0; i++) {
        memset(&p, 0, sizeof p);
        p.flags = flags[i];
        r->fd = (int)syscall(__NR_io_uring_setup, 1, &p); /* close-on-exec */
        r->taskrun_flag = r->fd >= 0 && flags[i] != 0;
        if (r->fd < 0 && errno != EINVAL) break;
    }
    if (r->fd < 0) {
        if (errno == ENOSYS || errno == EPERM)
            __atomic_store_n(&uring_missing, true, __ATOMIC_RELAXED);
        goto fail;
    }
    r->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (r->cq_len > r->sq_len) r->sq_len = r->cq_len;
        r->cq_len = r->sq_len;
    }
    if (!(r->sq = map_ring(r->fd, r->sq_len, IORING_OFF_SQ_RING))) goto fail;
    r->cq = (p.features & IORING_FEAT_SINGLE_MMAP) ? r->sq
                                                   : map_ring(r->fd, r->cq_len, IORING_OFF_CQ_RING);
    if (!r->cq) goto fail;
    r->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
    if (!(r->sqes = map_ring(r->fd, r->sqes_len, IORING_OFF_SQES))) goto fail;
    unsigned char *sq = r->sq, *cq = r->cq;
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->sq_flags = (unsigned *)(sq + p.sq_off.flags);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    if (ring_arm(r, fd) < 0) goto fail;
    return r;
fail:
    ring_free(&r);
    return NULL;
}

/* Whether a completion is waiting: one load from memory the kernel writes. */
static inline bool ring_posted(const hup_ring *r)
{
    return __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE) != *r->cq_head;
}

/* Whether one is on its way: the poll fired, and the arming thread has not entered the kernel
 * since (set by the waker itself, so it covers a thread that is busy in user space). */
static inline bool ring_pending(const hup_ring *r)
{
    return r->taskrun_flag && (__atomic_load_n(r->sq_flags, __ATOMIC_ACQUIRE) & IORING_SQ_TASKRUN);
}

/* Consumes the completions; true when all of them were cancellations (safe to re-arm). */
static bool ring_consume(hup_ring *r)
{
    unsigned head = *r->cq_head, tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    bool only_cancelled = true;
    for (; head != tail; head++)
        if (r->cqes[head & *r->cq_mask].res != -ECANCELED) only_cancelled = false;
    __atomic_store_n(r->cq_head, tail, __ATOMIC_RELEASE);
    return only_cancelled;
}

bool mp__hangup_now(int sock)
{
    struct pollfd p = {.fd = sock, .events = 0}; /* POLLHUP and POLLERR are always reported */
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

/* The authoritative check, a system call: POLLHUP on the socket, via an epoll ready list when
 * the watch runs without its ring (made once, then each check is one epoll_wait). */
static bool gone_slow(mp__hangup_watch *w)
{
    if (w->efd < 0 && w->ring_off) {
        int ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = 0}; /* EPOLLHUP and EPOLLERR are always reported */
        if (ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, w->sock, &ev) < 0) {
            close(ep);
            ep = -1;
        }
        w->efd = ep;
    }
    if (w->efd >= 0) {
        struct epoll_event ev;
        int r;
        while ((r = epoll_wait(w->efd, &ev, 1, 0)) < 0 && errno == EINTR) {
        }
        return r == 1;
    }
    return mp__hangup_now(w->sock);
}

int mp__hangup_watch_new(mp__hangup_watch **out, int sock, int arm, bool allow_ring)
{
    mp__hangup_watch *w = calloc(1, sizeof *w);
    if (!w) return -ENOMEM;
    w->sock = sock;
    w->arm = arm;
    w->efd = -1;
    w->ring_off = !allow_ring;
    *out = w;
    return 0;
}

bool mp__hangup_watch_gone(mp__hangup_watch *w)
{
    if (w->ring_off) return gone_slow(w);
    hup_ring *r = w->ring;
    if (r && r->fork_gen != __atomic_load_n(&fork_gen, __ATOMIC_RELAXED)) {
        ring_free(&w->ring); /* the parent's: this process arms its own */
        r = NULL;
    }
    if (!r && !(r = w->ring = ring_new(w->arm))) {
        w->ring_off = true;
        return gone_slow(w);
    }
    if (!pthread_equal(r->thread, pthread_self())) return gone_slow(w);
    bool posted = ring_posted(r);
    if (__builtin_expect(!posted && !ring_pending(r), 1)) return false; /* no system call */
    if (gone_slow(w)) return true;
    if (!posted) return false; /* a wake-up that was not ours to count: the poll stays armed */
    if (!ring_consume(r) || ring_arm(r, w->arm) < 0) {
        ring_free(&w->ring);
        w->ring_off = true;
    }
    return false;
}

void mp__hangup_watch_free(mp__hangup_watch **pw)
{
    mp__hangup_watch *w = *pw;
    if (!w) return;
    ring_free(&w->ring);
    if (w->efd >= 0) close(w->efd);
    free(w);
    *pw = NULL;
}

/* ---- waiting on many fds ------------------------------------------------------------------ */

/* poll() with more fds than RLIMIT_NOFILE's soft limit fails with EINVAL: epoll has no such
 * limit (it needs one free fd of its own). Its answers go into u[].revents like poll's: fds that
 * are not open are POLLNVAL, fds epoll refuses (regular files, which poll reports always
 * readable) POLLIN, both ready at once. Returns how many are ready, or -errno. */
static int wait_epoll(struct pollfd *u, size_t nu, const mp__deadline *dl)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return -errno;
    struct epoll_event *evs = malloc(nu * sizeof *evs);
    int rc = 0, pre = 0;
    if (!evs) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t k = 0; k < nu; k++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = k};
        u[k].revents = 0;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, u[k].fd, &ev) == 0) continue;
        if (errno == EBADF) {
            u[k].revents = POLLNVAL;
        } else if (errno == EPERM) {
            u[k].revents = POLLIN;
        } else {
            rc = -errno;
            goto out;
        }
        pre++;
    }
    for (;;) {
        int r = epoll_wait(ep, evs, (int)nu, pre ? 0 : mp__deadline_poll_ms(dl));
        if (r < 0) {
            if (errno == EINTR) continue;
            rc = -errno;
            goto out;
        }
        for (int i = 0; i < r; i++)
            u[evs[i].data.u64].revents = (short)(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR));
        if (r > 0 || pre || mp__deadline_left_ns(dl) == 0) {
            rc = r + pre;
            break;
        }
    }
out:
    free(evs);
    close(ep);
    return rc;
}

int mp__poll_fds(struct pollfd *u, size_t nu, const mp__deadline *dl)
{
    for (;;) {
        int r = poll(u, nu, mp__deadline_poll_ms(dl));
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EINVAL && nu > 1) return wait_epoll(u, nu, dl);
            return -errno;
        }
        if (r == 0 && mp__deadline_left_ns(dl) > 0) continue;
        return r;
    }
}
