/* SPDX-License-Identifier: MIT */
/* pool_factory.c - the pool's worker factory: a small single-threaded process that forks the
 * workers on request.
 *
 * Why. A fork copies the whole address space but only the forking thread. Forked from a process
 * where other threads run, the child gets whatever those threads were in the middle of: a stdout
 * buffer being refilled (the child's exit then prints the copy a second time, torn), an allocator
 * lock held (ASan's allocator is not fork-safe from another thread: the child hangs in its first
 * malloc). A pool replaces workers all its life (maxtasksperchild, deaths), from its supervisor
 * thread, while the program's threads do anything. So the pool forks exactly once, when it is
 * created (mp_pool_new waits, after a flush, while its supervisor forks the factory), and every
 * worker is forked by the factory, which runs one thread, never prints and never allocates.
 *
 * The workers are the factory's children: it reaps them and reports each exit status to the pool
 * (so a program that ignores SIGCHLD still gets true exit codes), and it signals them on the
 * pool's behalf (a pid it has not reaped cannot be recycled). Each worker has
 * PR_SET_PDEATHSIG(SIGKILL) tied to the factory, and the factory has PR_SET_PDEATHSIG(SIGTERM)
 * tied to the supervisor thread, read through its signalfd: when the owner dies the factory
 * SIGKILLs every worker at once and exits, so the kernel takes all of them down with the owner
 * without waiting for one teardown after the other.
 *
 * Protocol (SOCK_SEQPACKET, one fixed-size message each):
 *   pool -> factory  SPAWN(index, pin_cpu) + fds [transport fd, eventfd]; KILL(pid, sig); QUIT
 *   factory -> pool  SPAWNED(index, pid or -errno); DIED(pid, exit code); BYE (before exiting)
 * QUIT: the factory SIGKILLs every worker left, reports their deaths, says BYE and exits. End of
 * file (or SIGTERM, the owner's death) makes it SIGKILL the workers and exit without reaping them:
 * their new parent (the owner's reaper) sees how they ended.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mproc/error.h"
#include "platform/platform.h"
#include "pool_transport.h"
#include "process_internal.h"
#include "start_internal.h"

#define FACTORY_MAX_KIDS 4096

static ssize_t send_msg_flags(int sock, const mp__fmsg *m, const int *fds, int nfds, int flags)
{
    struct iovec iov = {(void *)m, sizeof *m};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(2 * sizeof(int))];
    } c;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        memset(&c, 0, sizeof c);
        mh.msg_control = c.buf;
        mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(h), fds, (size_t)nfds * sizeof(int));
    }
    for (;;) {
        ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL | flags);
        if (n >= 0 || errno != EINTR) return n < 0 ? -errno : n;
    }
}

static ssize_t send_msg(int sock, const mp__fmsg *m, const int *fds, int nfds)
{
    return send_msg_flags(sock, m, fds, nfds, 0);
}

/* Receives one message; fds (up to 2) get the descriptors that came with it, -1 for none.
 * Returns 1, 0 at end of file, -EAGAIN (non-blocking, nothing there) or -errno. */
static int recv_msg(int sock, mp__fmsg *m, int *fds, int flags)
{
    struct iovec iov = {m, sizeof *m};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(4 * sizeof(int))];
    } c;
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof c.buf};
    if (fds) fds[0] = fds[1] = -1;
    ssize_t n;
    do {
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | flags);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    int got = 0;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
            if (fds && got < 2)
                fds[got++] = fd;
            else
                close(fd);
        }
    }
    if (n == 0) return 0;
    if ((size_t)n != sizeof *m) return -EPROTO;
    return 1;
}

/* ---- the factory process ------------------------------------------------------------------- */

static pid_t kids[FACTORY_MAX_KIDS];
static int nkids;

/* Messages to the pool wait here while its socket is full: the factory never blocks on a send,
 * so it always reads the pool's requests and the two sides cannot wait for each other. At most
 * one SPAWNED per request in flight and one DIED per worker, hence the bound. */
#define OUTBOX (2 * FACTORY_MAX_KIDS + 16)
static mp__fmsg outbox[OUTBOX];
static unsigned ob_head, ob_tail;

static void flush_outbox(int sock, int flags)
{
    while (ob_head != ob_tail) {
        if (send_msg_flags(sock, &outbox[ob_head % OUTBOX], NULL, 0, flags) < 0) return;
        ob_head++;
    }
}

static void post(int sock, const mp__fmsg *m)
{
    flush_outbox(sock, MSG_DONTWAIT);
    if (ob_head == ob_tail && send_msg_flags(sock, m, NULL, 0, MSG_DONTWAIT) >= 0) return;
    if (ob_tail - ob_head < OUTBOX) outbox[ob_tail++ % OUTBOX] = *m;
}

static void kid_forget(pid_t pid)
{
    for (int i = 0; i < nkids; i++) {
        if (kids[i] == pid) {
            kids[i] = kids[--nkids];
            return;
        }
    }
}

static bool kid_known(pid_t pid)
{
    for (int i = 0; i < nkids; i++)
        if (kids[i] == pid) return true;
    return false;
}

/* Reaps every ended worker and reports it. block: wait for one at least. */
static void reap_kids(int sock, bool block)
{
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_ALL, 0, &si, WEXITED | (block ? 0 : WNOHANG)) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (si.si_pid == 0) return;
        block = false;
        kid_forget(si.si_pid);
        mp__fmsg m = {MP__F_DIED, 0, si.si_pid, mp__exitcode_from_siginfo(&si)};
        post(sock, &m);
    }
}

__attribute__((noreturn)) static void factory_quit(int sock)
{
    for (int i = 0; i < nkids; i++)
        kill(kids[i], SIGKILL);
    while (nkids > 0) {
        int before = nkids;
        reap_kids(sock, true);
        if (nkids == before) break; /* nothing left to reap: they are gone */
    }
    /* The pool reads until BYE now: blocking sends are fine. */
    flush_outbox(sock, 0);
    mp__fmsg m = {MP__F_BYE, 0, 0, 0};
    send_msg(sock, &m, NULL, 0);
    mp__child_exit(0);
}

/* The pool's owner died: kill every worker now, in parallel with our own exit, rather than
 * leaving it to their PDEATHSIG, which fires only once this process is torn down (the chain
 * owner -> factory -> workers would take two teardowns, slow for big address spaces). */
__attribute__((noreturn)) static void factory_orphaned(void)
{
    for (int i = 0; i < nkids; i++)
        kill(kids[i], SIGKILL);
    mp__child_exit(0);
}

__attribute__((noreturn)) static void factory_main(int sock, const mp__transport *tp,
                                                   mp__tp_shared *ts, const mp__worker_conf *conf,
                                                   pid_t owner)
{
    /* Nothing of the program's output is ours to print: drop what another thread left in the
     * buffers (the workers are forked from here, so they start with empty ones too). */
    __fpurge(stdout);
    __fpurge(stderr);
    /* No fd of mproc but our socket: not another pool's, not our own pool's eventfd (each worker
     * receives that with its spawn request). */
    mp__fd_close_internal(&sock, 1);
    /* The factory reaps its workers itself, whatever the program did with SIGCHLD. */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGCHLD, &dfl, NULL);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigaddset(&chld, SIGTERM);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd >= 0) {
        /* Told of the owner's death by SIGTERM through the signalfd (mp__fork set SIGKILL). */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != owner) factory_orphaned();
    } else {
        sigdelset(&chld, SIGCHLD);
        sigprocmask(SIG_UNBLOCK, &chld, NULL); /* SIGTERM stays deadly; PDEATHSIG stays SIGKILL */
    }
    for (;;) {
        short ev = POLLIN | (ob_head != ob_tail ? POLLOUT : 0);
        struct pollfd pf[2] = {{.fd = sock, .events = ev}, {.fd = sfd, .events = POLLIN}};
        int r = poll(pf, sfd >= 0 ? 2 : 1, sfd >= 0 ? -1 : 50);
        if (r < 0 && errno != EINTR) factory_orphaned();
        if (sfd >= 0 && pf[1].revents) {
            struct signalfd_siginfo ssi;
            while (read(sfd, &ssi, sizeof ssi) == (ssize_t)sizeof ssi)
                if (ssi.ssi_signo == SIGTERM) factory_orphaned();
        }
        reap_kids(sock, false);
        if (pf[0].revents & POLLOUT) flush_outbox(sock, MSG_DONTWAIT);
        if (!(pf[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        mp__fmsg m;
        int fds[2];
        int got = recv_msg(sock, &m, fds, MSG_DONTWAIT);
        if (got == -EAGAIN) continue;
        /* The pool is gone (its owner died: the socket may close before SIGTERM arrives). Leave
         * the workers unreaped: whoever inherits them (the owner's reaper) sees how they ended. */
        if (got <= 0) factory_orphaned();
        switch (m.op) {
        case MP__F_SPAWN: {
            mp__fmsg rep = {MP__F_SPAWNED, m.index, 0, 0};
            pid_t pid = -EINVAL;
            if (fds[0] >= 0 && fds[1] >= 0 && nkids < FACTORY_MAX_KIDS)
                pid = mp__fork(MP__FORK_UNWATCHED);
            if (pid == 0) {
                close(sock);
                if (sfd >= 0) close(sfd);
                mp__worker_conf c = *conf;
                c.pin_cpu = m.val;
                tp->worker_run(ts, &c, fds[0], fds[1]);
            }
            if (fds[0] >= 0) close(fds[0]);
            if (fds[1] >= 0) close(fds[1]);
            if (pid > 0) kids[nkids++] = pid;
            rep.pid = pid;
            post(sock, &rep);
            break;
        }
        case MP__F_KILL:
            /* Only a worker not reaped yet: its pid cannot have been recycled. */
            if (kid_known(m.pid)) kill(m.pid, m.val);
            break;
        case MP__F_QUIT:
            factory_quit(sock);
        default:
            break;
        }
    }
}

/* ---- the pool's side --------------------------------------------------------------------------
 */

int mp__factory_start(mp__factory *f, const mp__transport *tp, mp__tp_shared *ts,
                      const mp__worker_conf *conf)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return -errno;
    /* Neither end is marked internal yet: mp__fork closes marked fds in the child, and the
     * factory needs its end. The pool's end is marked right after the fork. */
    tp->fork_begin(ts);
    pid_t owner = getpid();
    pid_t pid = mp__fork(MP__FORK_UNWATCHED); /* reaped by pid in mp__factory_stop */
    if (pid == 0) {
        close(sv[0]);
        factory_main(sv[1], tp, ts, conf, owner);
    }
    tp->fork_end(ts);
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return pid;
    }
    mp__fd_internal_add(sv[0]);
    f->pid = pid;
    f->sock = sv[0];
    f->gone = false;
    return 0;
}

int mp__factory_spawn(mp__factory *f, int index, int pin_cpu, int tpfd, int efd)
{
    mp__fmsg m = {MP__F_SPAWN, index, 0, pin_cpu};
    int fds[2] = {tpfd, efd};
    ssize_t n = send_msg(f->sock, &m, fds, 2);
    return n < 0 ? (int)n : 0;
}

void mp__factory_kill(mp__factory *f, pid_t pid, int sig)
{
    if (f->sock < 0 || f->gone) return;
    mp__fmsg m = {MP__F_KILL, 0, pid, sig};
    send_msg(f->sock, &m, NULL, 0);
}

int mp__factory_recv(mp__factory *f, mp__fmsg *m, const mp__deadline *dl)
{
    if (f->sock < 0 || f->gone) return -EPIPE;
    for (;;) {
        int r = recv_msg(f->sock, m, NULL, MSG_DONTWAIT);
        if (r == 1) return 1;
        if (r == 0 || (r < 0 && r != -EAGAIN)) {
            f->gone = true;
            return -EPIPE;
        }
        if (!dl) return 0;
        r = mp__poll_one(f->sock, POLLIN, dl);
        if (r < 0) {
            f->gone = true;
            return -EPIPE;
        }
        if (r == 0) return 0;
    }
}

void mp__factory_quit(mp__factory *f)
{
    if (f->sock < 0 || f->gone) return;
    mp__fmsg m = {MP__F_QUIT, 0, 0, 0};
    if (send_msg(f->sock, &m, NULL, 0) < 0) f->gone = true;
}

void mp__factory_end(mp__factory *f)
{
    if (f->sock >= 0) {
        mp__fd_internal_del(f->sock);
        close(f->sock);
        f->sock = -1;
    }
    if (f->pid > 0) {
        /* It exits right after BYE or end of file (or is already gone: SIGCHLD ignored). */
        int st;
        while (waitpid(f->pid, &st, 0) < 0 && errno == EINTR) {
        }
        f->pid = 0;
    }
}

/* The factory launched under spawn or forkserver (start_internal.h). */
void mp__factory_entry(const void *payload, size_t len, int *fds, int nfds)
{
    (void)payload;
    (void)len;
    (void)fds;
    (void)nfds;
    mp__child_exit(70);
}
