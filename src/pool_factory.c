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
 *
 * Start methods (mp_pool_options.start_method). Under fork, as above. Under spawn and forkserver
 * the factory is launched (start_internal.h, MP__ENTRY_POOL_FACTORY): a fresh exec of the program,
 * or a fork of the forkserver, so nothing of the program's threads, locks or memory reaches it or
 * its workers. It learns everything from the launch payload (struct factory_payload) and two
 * fds: its end of the socket and the transport's pool-wide state (a memfd). Under forkserver it is
 * not the pool's child: mp__launched_reap reaps it, and its owner's death reaches it through the
 * socket's end of file and a pidfd on the owner instead of PDEATHSIG (see factory_main).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mproc/error.h"
#include "mproc/process.h"
#include "mproc/spin.h"
#include "mproc/start.h"
#include "platform/platform.h"
#include "pool_internal.h"
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

/* How the factory learns of its owner's death. FORKED: forked by the pool's supervisor thread,
 * PDEATHSIG (SIGTERM, read through the signalfd) tied to it, checked against getppid() == owner.
 * SPAWNED: a fresh image of the program started by that thread: the same (the boot set
 * PDEATHSIG(SIGKILL); it becomes SIGTERM here). SERVED: forked by the forkserver, whose death says
 * nothing about the owner: no PDEATHSIG at all; the owner's death closes the pool's end of the
 * socket (the kernel does that even on SIGKILL) and the end of file makes the factory kill its
 * workers; a pidfd on the owner says the same when some other process still holds that end. */
enum { FACTORY_FORKED, FACTORY_SPAWNED, FACTORY_SERVED };

__attribute__((noreturn)) static void factory_main(int sock, const mp__transport *tp,
                                                   mp__tp_shared *ts, const mp__worker_conf *conf,
                                                   pid_t owner, uint64_t owner_start, int mode)
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
    int ofd = -1;
    if (mode == FACTORY_SERVED) {
        /* The forkserver may have tied us to itself: its death (it can be killed and restarted
         * while the pool runs) must not take the pool's workers down. */
        prctl(PR_SET_PDEATHSIG, 0);
        /* The owner's death closes its end of our socket, unless a child it forked without
         * exec (a raw fork() of the program's own) still holds a copy: watch the owner itself
         * too. Its start time tells it from a stranger that took a recycled pid. */
        long fd = syscall(SYS_pidfd_open, owner, 0);
        if (fd < 0 && errno == ESRCH) factory_orphaned();
        if (fd >= 0 && mp__pid_start_time(owner) != owner_start) factory_orphaned();
        if (fd >= 0) {
            ofd = (int)fd;
            fcntl(ofd, F_SETFD, FD_CLOEXEC);
            mp__fd_internal_add(ofd); /* not for the workers (mp__fork closes it there) */
        }
        if (sfd < 0) {
            sigdelset(&chld, SIGCHLD);
            sigprocmask(SIG_UNBLOCK, &chld, NULL);
        }
    } else if (sfd >= 0) {
        /* Told of the owner's death by SIGTERM through the signalfd (mp__fork set SIGKILL). */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != owner) factory_orphaned();
    } else {
        if (mode == FACTORY_SPAWNED) prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != owner) factory_orphaned();
        sigdelset(&chld, SIGCHLD);
        sigprocmask(SIG_UNBLOCK, &chld, NULL); /* SIGTERM stays deadly; PDEATHSIG stays SIGKILL */
    }
    if (mode != FACTORY_FORKED) {
        /* Which functions we have: the pool refuses the others at submission. */
        mp__fmsg hello = {MP__F_HELLO, 0, 0, (int32_t)mp__func_gen()};
        post(sock, &hello);
    }
    for (;;) {
        short ev = POLLIN | (ob_head != ob_tail ? POLLOUT : 0);
        /* poll skips the entries whose fd is -1 */
        struct pollfd pf[3] = {{.fd = sock, .events = ev},
                               {.fd = sfd, .events = POLLIN},
                               {.fd = ofd, .events = POLLIN}};
        int r = poll(pf, 3, sfd >= 0 ? -1 : 50);
        if (r < 0 && errno != EINTR) factory_orphaned();
        if (ofd >= 0 && pf[2].revents) factory_orphaned(); /* the owner ended */
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

/* What a launched factory needs, in its launch payload (initarg bytes follow). Everything else
 * the pool's workers need is either per worker (the CPU to pin to, the worker's ring memfd and
 * the pool's eventfd: in each SPAWN request) or stays in the pool's process (pipelining,
 * chunking, timeouts: the supervisor's business). */
#define FACTORY_MAGIC 0x6d70666163743031ull /* "mpfact01" */

struct factory_payload {
    uint64_t magic;
    int32_t transport;    /* MP__TP_* */
    int32_t mode;         /* FACTORY_SPAWNED or FACTORY_SERVED */
    int32_t owner;        /* the pool's process */
    uint64_t owner_start; /* its start time (mp__pid_start_time): tells a recycled pid */
    uint32_t maxtasks;
    uint64_t max_message;
    uint64_t init_func;
    uint64_t initarg_len;
    int32_t spin;         /* mp_pool_options.spin */
    int32_t program_spin; /* mp_spin_get() at mp_pool_new: what the workers' tasks inherit */
};

static const mp__transport *transport_by_id(int id)
{
    if (id == mp__pool_shm_transport.id) return &mp__pool_shm_transport;
    return NULL;
}

static void factory_error(mp__factory *f, int rc, const char *what)
{
    const char *detail = mp__start_error();
    if (detail && *detail)
        snprintf(f->err, sizeof f->err, "%s", detail);
    else
        snprintf(f->err, sizeof f->err, "cannot start the pool's worker factory under %s: %s (%s)",
                 mp_start_method_name((mp_start_method)f->method), what, mp_strerror(rc));
}

/* spawn, forkserver: the factory is a fresh image of the program (or a fork of the forkserver,
 * itself one), told everything through the payload and the two fds: its end of the socket and
 * the transport's pool-wide state. */
static int factory_launch(mp__factory *f, const mp__transport *tp, mp__tp_shared *ts,
                          const mp__worker_conf *conf)
{
    if (!tp->shared_export || !tp->shared_import) {
        snprintf(f->err, sizeof f->err,
                 "this pool's transport cannot reach a factory started under %s; use fork",
                 mp_start_method_name((mp_start_method)f->method));
        return MP_ENOTSUP;
    }
    size_t len = sizeof(struct factory_payload) + conf->initarg_len;
    unsigned char *pl = malloc(len);
    if (!pl) return -ENOMEM;
    /* Field by field over zeroed memory: the padding goes out on a socket too. */
    struct factory_payload h;
    memset(&h, 0, sizeof h);
    h.magic = FACTORY_MAGIC;
    h.transport = tp->id;
    h.mode = f->method == MP_START_FORKSERVER ? FACTORY_SERVED : FACTORY_SPAWNED;
    h.owner = (int32_t)getpid();
    h.owner_start = mp__pid_start_time(getpid());
    h.maxtasks = conf->maxtasks;
    h.max_message = conf->max_message;
    h.init_func = conf->init_func;
    h.initarg_len = conf->initarg_len;
    h.spin = conf->spin;
    h.program_spin = mp_spin_get();
    memcpy(pl, &h, sizeof h);
    if (conf->initarg_len) memcpy(pl + sizeof h, conf->initarg, conf->initarg_len);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        int e = -errno;
        free(pl);
        return e;
    }
    /* The factory's end goes out only through the launch request: marked so that no child the
     * program forks meanwhile keeps a copy (which would hide the owner's death from it). */
    mp__fd_internal_add(sv[0]);
    mp__fd_internal_add(sv[1]);
    int tfd = -1;
    mp_process *cur = mp_process_current();
    int rc = tp->shared_export(ts, &tfd);
    if (rc == 0) {
        int fds[2] = {sv[1], tfd};
        mp__launch_req req = {
            .method = (mp_start_method)f->method,
            .entry = MP__ENTRY_POOL_FACTORY,
            /* The identity a forked factory would have inherited: what a task starts in a
             * worker gets the same defaults (daemon flag, parent name) under every method. */
            .name = cur ? mp_process_name(cur) : NULL,
            .daemon = cur && mp_process_is_daemon(cur) == 1,
            .payload = pl,
            .len = len,
            .fds = fds,
            .nfds = 2,
        };
        mp__start_set_error("%s", "");
        rc = mp__launch(&req, &f->launched);
        if (rc < 0) factory_error(f, rc, "launch failed");
        mp__fd_internal_del(tfd);
        close(tfd);
    } else {
        snprintf(f->err, sizeof f->err, "the pool's shared state cannot travel (%s)",
                 mp_strerror(rc));
    }
    free(pl);
    mp__fd_internal_del(sv[1]);
    close(sv[1]);
    if (rc < 0) {
        mp__fd_internal_del(sv[0]);
        close(sv[0]);
        return rc;
    }
    f->pid = f->launched.pid;
    f->sock = sv[0];
    f->gone = false;
    /* Its first word says it booted, and which functions it has. */
    mp__fmsg m;
    mp__deadline dl = mp__deadline_in(60);
    rc = mp__factory_recv(f, &m, &dl);
    if (rc == 1 && m.op == MP__F_HELLO && m.val >= 0) {
        f->func_gen = (uint64_t)m.val;
        return 0;
    }
    snprintf(f->err, sizeof f->err, "the pool's worker factory (pid %d, %s) did not start%s",
             (int)f->pid, mp_start_method_name((mp_start_method)f->method),
             rc == 0 ? " within 60 s" : "");
    mp__launched_signal(&f->launched, SIGKILL);
    f->gone = true;
    mp__factory_end(f);
    return rc == 0 ? -ETIMEDOUT : -EAGAIN;
}

int mp__factory_start(mp__factory *f, const mp__transport *tp, mp__tp_shared *ts,
                      const mp__worker_conf *conf)
{
    f->err[0] = 0;
    if (f->method == MP_START_SPAWN || f->method == MP_START_FORKSERVER)
        return factory_launch(f, tp, ts, conf);
    f->method = MP_START_FORK;
    /* Forked: the factory inherits the pool-wide state as a mapping (fork_begin); the
     * descriptor that could carry it elsewhere is not needed. */
    int tfd = -1;
    if (tp->shared_export && tp->shared_export(ts, &tfd) == 0) {
        mp__fd_internal_del(tfd);
        close(tfd);
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return -errno;
    /* Neither end is marked internal yet: mp__fork closes marked fds in the child, and the
     * factory needs its end. The pool's end is marked right after the fork. */
    tp->fork_begin(ts);
    pid_t owner = getpid();
    pid_t pid = mp__fork(MP__FORK_UNWATCHED); /* reaped by pid in mp__factory_stop */
    if (pid == 0) {
        close(sv[0]);
        factory_main(sv[1], tp, ts, conf, owner, 0, FACTORY_FORKED);
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
    if (f->pid > 0 && f->method != MP_START_FORK) {
        /* Launched: it exits right after BYE or end of file. Under forkserver it is not our
         * child: the server reports its end (or -ENODATA when the server died first; the
         * factory still ends at our end of file). */
        int code, r;
        mp__deadline dl = mp__deadline_in(5);
        while ((r = mp__launched_reap(&f->launched, &dl, &code)) == -EINTR) {
        }
        if (r == 0) { /* still there 5 s after its socket closed: never happens, never hang */
            mp__launched_signal(&f->launched, SIGKILL);
            dl = mp__deadline_in(MP_FOREVER);
            while (mp__launched_reap(&f->launched, &dl, &code) == -EINTR) {
            }
        }
        mp__launched_close(&f->launched);
        f->pid = 0;
    } else if (f->pid > 0) {
        /* It exits right after BYE or end of file (or is already gone: SIGCHLD ignored). */
        int st;
        while (waitpid(f->pid, &st, 0) < 0 && errno == EINTR) {
        }
        f->pid = 0;
    }
}

/* The factory launched under spawn or forkserver (start_internal.h): fds are its end of the
 * pool's socket and the transport's pool-wide state. A bad request exits with 70 before
 * anything runs; the pool then sees end of file and reports the factory gone. */
void mp__factory_entry(const void *payload, size_t len, int *fds, int nfds)
{
    struct factory_payload h;
    const mp__transport *tp = NULL;
    if (payload && len >= sizeof h) {
        memcpy(&h, payload, sizeof h);
        tp = transport_by_id(h.transport);
    }
    if (!tp || nfds != 2 || h.magic != FACTORY_MAGIC || h.initarg_len != len - sizeof h ||
        (h.mode != FACTORY_SPAWNED && h.mode != FACTORY_SERVED) || h.max_message < 4096) {
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        fprintf(stderr, "mproc: the pool's worker factory got a bad launch request\n");
        mp__child_exit(70);
    }
    static mp__worker_conf conf; /* the workers' copy lives on through their fork */
    conf = (mp__worker_conf){
        .max_message = (size_t)h.max_message,
        .maxtasks = h.maxtasks,
        .init_func = h.init_func,
        .initarg = h.initarg_len ? (const unsigned char *)payload + sizeof h : NULL,
        .initarg_len = (size_t)h.initarg_len,
        .pin_cpu = -1,
        .spin = h.spin != 0,
    };
    mp_spin_set(h.program_spin);
    mp__tp_shared *ts = NULL;
    int sock = fds[0];
    if (tp->shared_import(fds[1], &ts) != 0) {
        close(sock);
        mp__child_exit(71);
    }
    factory_main(sock, tp, ts, &conf, (pid_t)h.owner, h.owner_start, h.mode);
}
