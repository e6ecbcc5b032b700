/* SPDX-License-Identifier: MIT */
/* forkserver.c - the forkserver start method: a clean process that forks children on request.
 *
 * The server is a spawned copy of the program (launch.c: posix_spawn of the program itself; its
 * mp_init() finds MPROC_BOOT=s:... and enters mp__forkserver_main), started at the first
 * forkserver start and again after it died. Being an exec, it is clean whenever it starts: one
 * thread, nothing of the program's memory, threads or locks. Each request (launch.c's format)
 * comes on the control socket with the fds it carries and one more: the child's status socket.
 * The server forks, the child runs the request's entry; the server answers STARTED(pid) on the
 * status socket, and EXITED(exit code) once it reaped the child, then closes it. The program holds
 * the other end: it turns readable when the child ended (the sentinel), and a KILL(sig) sent on it
 * asks the server to signal the child, which it does only while the child is unreaped, so the pid
 * cannot have been recycled.
 *
 * Lifetimes. The server watches the program (a pidfd on it, or getppid() every 200 ms without
 * pidfds, and the control socket's end of file): when the program is gone, or closed the socket
 * (mp_forkserver_stop), the server SIGKILLs every child still running and exits. Its children
 * carry PR_SET_PDEATHSIG(SIGKILL) tied to the server, so a server that is itself SIGKILLed takes
 * its children with it; their status sockets then hang up without EXITED, and the program reads
 * their exit codes as lost (-ENODATA). The next start finds the control socket broken and starts
 * a new server transparently.
 *
 * The server is not given PR_SET_PDEATHSIG itself: that signal follows the *thread* that started
 * it, and the first forkserver start may come from any thread, also a short-lived one.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mproc/error.h"
#include "platform/platform.h"
#include "process_internal.h"
#include "start_internal.h"

char **mp__saved_argv(void);

enum { ST_STARTED = 1, ST_EXITED = 2, ST_KILL = 3 };

typedef struct st_msg {
    int32_t op;
    int32_t val;
} st_msg;

static int st_send(int fd, int op, int val, int flags)
{
    st_msg m = {op, val};
    ssize_t n;
    do {
        n = send(fd, &m, sizeof m, MSG_NOSIGNAL | flags);
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof m ? 0 : -errno;
}

/* 1 with *m, 0 at end of file, -errno (-EAGAIN with MSG_DONTWAIT and nothing there). */
static int st_recv(int fd, st_msg *m, int flags)
{
    ssize_t n;
    do {
        n = recv(fd, m, sizeof *m, flags);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    if (n == 0) return 0;
    return n == (ssize_t)sizeof *m ? 1 : -EPROTO;
}

/* ---- the server
 * ---------------------------------------------------------------------------------- */

static pid_t *kid_pid;
static int *kid_fd; /* the status socket, -1 once the program dropped it */
static int nkids, capkids;

static void kill_all_and_exit(void)
{
    for (int i = 0; i < nkids; i++)
        kill(kid_pid[i], SIGKILL);
    mp__child_exit(0);
}

static void reap_kids(void)
{
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (si.si_pid == 0) return;
        for (int i = 0; i < nkids; i++) {
            if (kid_pid[i] != si.si_pid) continue;
            if (kid_fd[i] >= 0) {
                st_send(kid_fd[i], ST_EXITED, mp__exitcode_from_siginfo(&si), MSG_DONTWAIT);
                mp__fd_internal_del(kid_fd[i]);
                close(kid_fd[i]);
            }
            nkids--;
            kid_pid[i] = kid_pid[nkids];
            kid_fd[i] = kid_fd[nkids];
            break;
        }
    }
}

static bool kids_grow(void)
{
    if (nkids < capkids) return true;
    int cap = capkids ? 2 * capkids : 64;
    pid_t *p = realloc(kid_pid, (size_t)cap * sizeof *p);
    if (!p) return false;
    kid_pid = p;
    int *f = realloc(kid_fd, (size_t)cap * sizeof *f);
    if (!f) return false;
    kid_fd = f;
    capkids = cap;
    return true;
}

/* MP__FORK_SIGNALS_CLEAN when no handler is installed here (the usual case: the server is a
 * fresh exec that ran only the program's constructors). */
static unsigned fork_flags;

static void check_signals_clean(void)
{
    for (int sig = 1; sig < 32; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        struct sigaction old;
        if (sigaction(sig, NULL, &old) < 0) return;
        if (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN) return;
    }
    fork_flags = MP__FORK_SIGNALS_CLEAN;
}

static void serve_request(int ctl)
{
    mp__boot b;
    int r = mp__req_recv(ctl, &b, true);
    if (r == 0) kill_all_and_exit(); /* the program closed the socket: it is gone or stopping us */
    if (r < 0) {
        if (r == MP_ECORRUPT || r == -ENOMEM) return;
        kill_all_and_exit();
    }
    int st = b.extra_fd;
    pid_t pid = kids_grow() ? mp__fork(MP__FORK_UNWATCHED | fork_flags) : -ENOMEM;
    if (pid == 0) {
        /* Our bookkeeping fds were internal: mp__fork closed them. The request's fds stay. */
        close(st);
        mp__boot_run(&b);
    }
    for (int i = 0; i < b.nfds; i++)
        close(b.fds[i]);
    mp__boot_release(&b);
    mp__fd_internal_add(st);
    if (st_send(st, ST_STARTED, pid, MSG_DONTWAIT) < 0 && pid > 0) {
        /* Nobody waits for this child any more (the asking thread is gone): it still runs; we
         * keep it so it is reaped, and drop its socket. */
    }
    if (pid < 0) {
        mp__fd_internal_del(st);
        close(st);
        return;
    }
    kid_pid[nkids] = pid;
    kid_fd[nkids] = st;
    nkids++;
}

static void serve_kid(int i, short revents)
{
    if (revents & POLLIN) {
        st_msg m;
        int r = st_recv(kid_fd[i], &m, MSG_DONTWAIT);
        if (r == 1) {
            if (m.op == ST_KILL && m.val >= 0 && m.val < NSIG) kill(kid_pid[i], m.val);
            return;
        }
        if (r == -EAGAIN) return;
    } else if (!(revents & (POLLHUP | POLLERR | POLLNVAL))) {
        return;
    }
    /* The program freed its handle: the child runs on, unobserved, until reaped. */
    mp__fd_internal_del(kid_fd[i]);
    close(kid_fd[i]);
    kid_fd[i] = -1;
}

void mp__forkserver_main(int ctl, pid_t owner)
{
    mp__fd_internal_add(ctl);
    /* We reap our children ourselves, whatever the program did with SIGCHLD (an ignored signal
     * stays ignored across exec). */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGCHLD, &dfl, NULL);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd >= 0) mp__fd_internal_add(sfd);
    check_signals_clean();
    int ofd = mp__parent_pidfd_open(owner); /* internal already */
    if (ofd == -ESRCH) kill_all_and_exit();
    for (;;) {
        int n = 3 + nkids;
        struct pollfd *pf = calloc((size_t)n, sizeof *pf);
        if (!pf) {
            sleep(1);
            continue;
        }
        pf[0] = (struct pollfd){.fd = ctl, .events = POLLIN};
        pf[1] = (struct pollfd){.fd = sfd, .events = POLLIN};
        pf[2] = (struct pollfd){.fd = ofd, .events = POLLIN};
        for (int i = 0; i < nkids; i++)
            pf[3 + i] = (struct pollfd){.fd = kid_fd[i], .events = POLLIN};
        /* Without a signalfd or a pidfd on the owner, look again every 200 ms. */
        double slice = (sfd < 0 || ofd < 0) ? 0.2 : MP_FOREVER;
        mp__deadline dl = mp__deadline_in(slice);
        int r = mp__poll_fds(pf, (size_t)n, &dl);
        if (r < 0 && r != -EINTR) {
            free(pf);
            kill_all_and_exit();
        }
        if (ofd >= 0 ? (pf[2].revents != 0) : getppid() != owner) {
            free(pf);
            kill_all_and_exit();
        }
        if (sfd < 0) {
            reap_kids();
        } else if (pf[1].revents) {
            struct signalfd_siginfo ssi;
            while (read(sfd, &ssi, sizeof ssi) == (ssize_t)sizeof ssi) {
            }
            reap_kids(); /* before the kids' sockets: one may close below */
        }
        /* The kids' table may have changed in reap_kids: match the poll answers by fd. */
        for (int j = 3; j < n; j++) {
            if (!pf[j].revents || pf[j].fd < 0) continue;
            for (int i = 0; i < nkids; i++)
                if (kid_fd[i] == pf[j].fd) {
                    serve_kid(i, pf[j].revents);
                    break;
                }
        }
        short cre = pf[0].revents;
        free(pf);
        if (cre & (POLLIN | POLLHUP | POLLERR)) serve_request(ctl);
    }
}

/* ---- the program's side
 * ---------------------------------------------------------------------------- */

static struct {
    pthread_mutex_t lock;
    pid_t owner; /* the process that started the server: a forked child has none of its own */
    pid_t pid;
    int ctl;
} S = {PTHREAD_MUTEX_INITIALIZER, 0, 0, -1};

static void forget_in_child(void)
{
    /* The control socket was internal (closed by mp__fork, or still open after a plain fork:
     * it is the parent's either way); the child starts its own server when it needs one. */
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    memcpy(&S.lock, &fresh, sizeof fresh);
    S.owner = 0;
    S.pid = 0;
    S.ctl = -1;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void install_atfork(void)
{
    pthread_atfork(NULL, NULL, forget_in_child);
}

/* With S.lock held. */
static void server_drop(void)
{
    if (S.ctl >= 0) {
        mp__fd_internal_del(S.ctl);
        close(S.ctl);
    }
    S.ctl = -1;
    if (S.pid > 0) {
        /* It ends at the end of file on its socket (killing what it still runs); wait for it so
         * no zombie stays. Our own child, unreaped: the pid cannot name anyone else. */
        int st;
        while (waitpid(S.pid, &st, 0) < 0 && errno == EINTR) {
        }
    }
    S.pid = 0;
    S.owner = 0;
}

/* With S.lock held. */
static int server_ensure(void)
{
    pthread_once(&atfork_once, install_atfork);
    pid_t me = getpid();
    if (S.owner != me) {
        /* None of ours (never started, dropped, or the parent's after a plain fork). The lock
         * is held here: only the atfork handler may renew it. */
        S.owner = 0;
        S.pid = 0;
        S.ctl = -1;
    }
    if (S.ctl >= 0) return 0;
    char **argv = mp__saved_argv();
    if (!argv || !argv[0]) {
        mp__start_set_error(
            "forkserver: the program's argv is unknown (call mp_init(&argc, &argv))");
        return MP_ENOTSUP;
    }
    mp__process_exit_register(); /* stops the server at exit, after the children are joined */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return -errno;
    mp__fd_internal_add(sv[0]);
    mp__fd_internal_add(sv[1]);
    char env[64];
    snprintf(env, sizeof env, "MPROC_BOOT=s:%d:-1", (int)me);
    pid_t pid = -1;
    int r = mp__spawn_self(argv, env, &sv[1], 1, &pid);
    mp__fd_internal_del(sv[1]);
    close(sv[1]);
    if (r < 0) {
        mp__fd_internal_del(sv[0]);
        close(sv[0]);
        mp__start_set_error("forkserver: could not start the server (%s)", mp_strerror(r));
        return r;
    }
    S.ctl = sv[0];
    S.pid = pid;
    S.owner = me;
    return 0;
}

int mp__forkserver_launch(const mp__req_out *o, mp__launched *out)
{
    int r = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        int st[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, st) < 0) return -errno;
        mp__fd_internal_add(st[0]);
        mp__fd_internal_add(st[1]);
        pthread_mutex_lock(&S.lock);
        r = server_ensure();
        pid_t server = S.pid;
        if (r == 0) r = mp__req_send(S.ctl, o, st[1]);
        if (r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN) server_drop();
        pthread_mutex_unlock(&S.lock);
        mp__fd_internal_del(st[1]);
        close(st[1]);
        if (r < 0) {
            mp__fd_internal_del(st[0]);
            close(st[0]);
            if (r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN) continue; /* restart it */
            if (r == -EMSGSIZE || r == -ENOBUFS) return MP_ETOOBIG;
            return r;
        }
        st_msg m;
        int g = st_recv(st[0], &m, 0);
        if (g == 1 && m.op == ST_STARTED) {
            if (m.val < 0) {
                mp__fd_internal_del(st[0]);
                close(st[0]);
                return m.val;
            }
            out->pid = m.val;
            out->handle = st[0];
            out->via_server = true;
            return 0;
        }
        /* The server died with our request: start a new one and ask again. */
        mp__fd_internal_del(st[0]);
        close(st[0]);
        pthread_mutex_lock(&S.lock);
        if (S.pid == server && S.owner == getpid()) server_drop();
        pthread_mutex_unlock(&S.lock);
        r = -EPIPE;
    }
    mp__start_set_error("forkserver: the server keeps dying");
    return r;
}

pid_t mp_forkserver_pid(void)
{
    pthread_mutex_lock(&S.lock);
    pid_t pid = S.owner == getpid() ? S.pid : 0;
    pthread_mutex_unlock(&S.lock);
    return pid;
}

int mp_forkserver_stop(void)
{
    pthread_mutex_lock(&S.lock);
    if (S.owner == getpid()) server_drop();
    pthread_mutex_unlock(&S.lock);
    return 0;
}

/* ---- a launched child, as its starter holds it
 * ------------------------------------------------------ */

int mp__launched_reap(mp__launched *l, const mp__deadline *dl, int *code)
{
    if (!l->via_server) return mp__reap_pidfd(l->handle, dl, code);
    if (l->handle < 0) return -ENODATA;
    mp__deadline now = mp__deadline_in(0); /* NULL: look, do not wait */
    int r = mp__poll_one(l->handle, POLLIN, dl ? dl : &now);
    if (r < 0) return r;
    if (r == 0) return 0;
    st_msg m;
    int g = st_recv(l->handle, &m, MSG_DONTWAIT);
    if (g == -EAGAIN) return 0;
    /* The server closes its end right after EXITED; until it has, the socket may read as not
     * ready. The sentinel must stay readable once joined (process.h): end our reading side. */
    shutdown(l->handle, SHUT_RD);
    if (g == 1 && m.op == ST_EXITED) {
        *code = m.val;
        return 1;
    }
    return -ENODATA; /* the server died first: the child died with it, how is not known */
}

int mp__launched_signal(const mp__launched *l, int sig)
{
    if (!l->via_server) return mp__pidfd_send_signal(l->handle, sig);
    if (sig == 0) return 0;
    int r = st_send(l->handle, ST_KILL, sig, MSG_DONTWAIT);
    return r == -EPIPE || r == -ECONNRESET ? 0 : r; /* ended: nothing to do */
}

void mp__launched_close(mp__launched *l)
{
    if (l->handle < 0) return;
    if (l->via_server) {
        mp__fd_internal_del(l->handle);
        close(l->handle);
    } else {
        mp__pidfd_close(l->handle);
    }
    l->handle = -1;
}
