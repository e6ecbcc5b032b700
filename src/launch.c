/* SPDX-License-Identifier: MIT */
/* launch.c - starting a child under spawn or forkserver: the request, the spawn, the boot.
 *
 * A child that is not a fork of its parent learns what to run from a request: one
 * SOCK_SEQPACKET message (start_internal.h) with the entry (a Process target, a pool's worker
 * factory), the child's name and daemon flag, the payload bytes and the fds of the objects it was
 * given. Under spawn the parent queues the request on a socket pair and posix_spawns the program
 * itself with the other end at fd 3 and MPROC_BOOT in the environment; the program's mp_init()
 * finds MPROC_BOOT, reads the request and runs the entry, never returning into main. Under
 * forkserver the same request goes to the server, which forks and runs the entry in the fork.
 *
 * Why a message, not argv: fds must travel (SCM_RIGHTS), the payload may be large (a memfd then),
 * and a seqpacket message arrives whole or not at all: a parent that dies half-way leaves the
 * child an end of file, never half a request.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mproc/error.h"
#include "mproc/process.h"
#include "platform/platform.h"
#include "process_internal.h"
#include "handoff.h"
#include "start_internal.h"

void mp__pool_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define BOOT_FD  3 /* the request (spawn) or the control socket (forkserver) in a spawned child */
#define DEATH_FD 4 /* the pidfd-less fallback's death socket, when there is one */

static _Atomic(mp__entry_hook_fn) entry_hook;

void mp__entry_hook_set(mp__entry_hook_fn fn)
{
    atomic_store_explicit(&entry_hook, fn, memory_order_release);
}

const char *mp__start_error(void)
{
    return mp_last_error();
}

void mp__start_set_error(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    mp__pool_set_error("%s", buf);
}

/* ---- the program's argv, for spawns ------------------------------------------------------------
 */

static char **saved_argv;

/* A copy of argv as mp_init saw it (the program may rewrite its own argv later), or, without
 * one, /proc/self/cmdline. Leaked on purpose: it lives as long as the program. */
void mp__save_argv(int argc, char **argv)
{
    if (saved_argv) return;
    if (argv && argc > 0) {
        char **v = calloc((size_t)argc + 1, sizeof *v);
        if (!v) return;
        for (int i = 0; i < argc; i++)
            if (!(v[i] = strdup(argv[i] ? argv[i] : ""))) return;
        saved_argv = v;
        return;
    }
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char *buf = malloc(65536);
    ssize_t n = buf ? mp__read_full(fd, buf, 65535) : -1;
    close(fd);
    if (n <= 0) {
        free(buf);
        return;
    }
    buf[n] = '\0';
    int count = 0;
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\0') count++;
    char **v = calloc((size_t)count + 2, sizeof *v);
    if (!v) return;
    int k = 0;
    for (char *s = buf; s < buf + n && k <= count; s += strlen(s) + 1)
        v[k++] = s;
    saved_argv = v;
}

char **mp__saved_argv(void)
{
    return saved_argv;
}

/* ---- the request -------------------------------------------------------------------------------
 */

int mp__req_build(const mp__launch_req *r, mp__req_out *o)
{
    memset(o, 0, sizeof *o);
    o->memfd = -1;
    if (r->nfds < 0 || r->nfds > MP__LAUNCH_FDS_MAX || (r->len && !r->payload)) return -EINVAL;
    if (r->len > (size_t)MP_PROCESS_ARG_MAX + (64u << 10)) return MP_ETOOBIG;
    mp__req_hdr h = {.magic = MP__REQ_MAGIC,
                     .version = MP__REQ_VERSION,
                     .entry = r->entry,
                     .nfds = r->nfds,
                     .parent_pid = (int32_t)getpid(),
                     .daemon = r->daemon,
                     .len = r->len};
    snprintf(h.name, sizeof h.name, "%s", r->name ? r->name : "");
    bool inline_payload = r->len <= MP__REQ_INLINE_MAX;
    h.in_memfd = !inline_payload;
    o->msglen = sizeof h + (inline_payload ? r->len : 0);
    o->msg = malloc(o->msglen);
    if (!o->msg) return -ENOMEM;
    memcpy(o->msg, &h, sizeof h);
    if (inline_payload && r->len) memcpy((char *)o->msg + sizeof h, r->payload, r->len);
    for (int i = 0; i < r->nfds; i++)
        o->fds[o->nfds++] = r->fds[i];
    if (!inline_payload) {
        int fd = mp__memfd_new("mproc-request", 0);
        if (fd < 0) {
            mp__req_release(o);
            return fd;
        }
        mp__fd_internal_add(fd);
        o->memfd = fd;
        int w = mp__write_full(fd, r->payload, r->len);
        if (w < 0) {
            mp__req_release(o);
            return w;
        }
        o->fds[o->nfds++] = fd;
    }
    return 0;
}

void mp__req_release(mp__req_out *o)
{
    free(o->msg);
    o->msg = NULL;
    if (o->memfd >= 0) {
        mp__fd_internal_del(o->memfd);
        close(o->memfd);
    }
    o->memfd = -1;
}

int mp__req_send(int sock, const mp__req_out *o, int extra_fd)
{
    int n = o->nfds + (extra_fd >= 0 ? 1 : 0);
    size_t cl = CMSG_SPACE((size_t)n * sizeof(int));
    char *cbuf = n ? calloc(1, cl) : NULL;
    if (n && !cbuf) return -ENOMEM;
    struct iovec iov = {o->msg, o->msglen};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n) {
        mh.msg_control = cbuf;
        mh.msg_controllen = cl;
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
        memcpy(CMSG_DATA(c), o->fds, (size_t)o->nfds * sizeof(int));
        if (extra_fd >= 0)
            memcpy(CMSG_DATA(c) + (size_t)o->nfds * sizeof(int), &extra_fd, sizeof(int));
    }
    ssize_t w;
    do {
        w = sendmsg(sock, &mh, MSG_NOSIGNAL);
    } while (w < 0 && errno == EINTR);
    int e = errno;
    free(cbuf);
    if (w < 0) return -e;
    return (size_t)w == o->msglen ? 0 : -EPROTO;
}

static void close_all(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) close(fds[i]);
}

int mp__req_recv(int sock, mp__boot *b, bool has_extra)
{
    memset(b, 0, sizeof *b);
    b->extra_fd = -1;
    /* The size first: a seqpacket message is read whole, so the buffer must fit it. */
    mp__req_hdr peek;
    ssize_t n;
    do {
        n = recv(sock, &peek, sizeof peek, MSG_PEEK | MSG_TRUNC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    if (n == 0) return 0;
    size_t want = (size_t)n;
    if (want < sizeof peek || want > sizeof peek + MP__REQ_INLINE_MAX) want = sizeof peek;
    b->msg = malloc(want);
    size_t cl = CMSG_SPACE((MP__LAUNCH_FDS_MAX + 2) * sizeof(int));
    char *cbuf = calloc(1, cl);
    if (!b->msg || !cbuf) {
        free(cbuf);
        free(b->msg);
        b->msg = NULL;
        /* Drop the message (and its fds: the kernel closes what nobody receives). */
        recv(sock, &peek, sizeof peek, 0);
        return -ENOMEM;
    }
    struct iovec iov = {b->msg, want};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = cl};
    do {
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        int e = errno;
        free(cbuf);
        mp__boot_release(b);
        return -e;
    }
    int got[MP__LAUNCH_FDS_MAX + 2];
    int ngot = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (ngot < MP__LAUNCH_FDS_MAX + 2)
                got[ngot++] = fd;
            else
                close(fd);
        }
    }
    free(cbuf);
    bool bad = (size_t)n < sizeof b->hdr || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC));
    if (!bad) {
        memcpy(&b->hdr, b->msg, sizeof b->hdr);
        const mp__req_hdr *h = &b->hdr;
        int want_fds = h->nfds + (h->in_memfd ? 1 : 0) + (has_extra ? 1 : 0);
        bad = h->magic != MP__REQ_MAGIC || h->version != MP__REQ_VERSION || h->nfds < 0 ||
              h->nfds > MP__LAUNCH_FDS_MAX || ngot != want_fds ||
              (!h->in_memfd && (size_t)n != sizeof *h + h->len) ||
              (h->in_memfd && h->len > (uint64_t)MP_PROCESS_ARG_MAX + (64u << 10));
        b->hdr.name[sizeof b->hdr.name - 1] = '\0';
    }
    if (bad) {
        close_all(got, ngot);
        mp__boot_release(b);
        return MP_ECORRUPT;
    }
    const mp__req_hdr *h = &b->hdr;
    for (int i = 0; i < h->nfds; i++)
        b->fds[i] = got[i];
    b->nfds = h->nfds;
    int next = h->nfds;
    if (h->in_memfd) {
        int mfd = got[next++];
        void *p = h->len ? mmap(NULL, h->len, PROT_READ, MAP_PRIVATE, mfd, 0) : NULL;
        close(mfd);
        if (p == MAP_FAILED) {
            close_all(got + h->nfds + 1, ngot - h->nfds - 1);
            close_all(b->fds, b->nfds);
            b->nfds = 0;
            mp__boot_release(b);
            return MP_ECORRUPT;
        }
        b->payload = p;
    } else {
        b->payload = (char *)b->msg + sizeof *h;
    }
    b->len = h->len;
    if (has_extra) b->extra_fd = got[next];
    return 1;
}

void mp__boot_release(mp__boot *b)
{
    if (b->msg && b->payload && b->payload != (char *)b->msg + sizeof b->hdr)
        munmap((void *)b->payload, b->len);
    free(b->msg);
    b->msg = NULL;
    b->payload = NULL;
}

void mp__boot_run(mp__boot *b)
{
    mp__process_child_setup(b->hdr.name, b->hdr.daemon != 0, b->hdr.parent_pid);
    switch (b->hdr.entry) {
    case MP__ENTRY_PROCESS:
        mp__process_entry(b->payload, b->len, b->fds, b->nfds);
    case MP__ENTRY_POOL_FACTORY:
        mp__factory_entry(b->payload, b->len, b->fds, b->nfds);
    default:
        fprintf(stderr, "mproc: a spawned child was asked for an unknown entry %d\n",
                (int)b->hdr.entry);
        mp__child_exit(70);
    }
}

/* ---- spawn -------------------------------------------------------------------------------------
 */

static int launch_spawn(const mp__req_out *o, mp__launched *out)
{
    if (!saved_argv || !saved_argv[0]) {
        mp__start_set_error("spawn: the program's argv is unknown (call mp_init(&argc, &argv))");
        return MP_ENOTSUP;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return -errno;
    /* Internal while they exist: a child another thread forks meanwhile must not hold them. */
    mp__fd_internal_add(sv[0]);
    mp__fd_internal_add(sv[1]);
    /* Queued before the child exists: the socket buffer holds it until the child reads. */
    int r = mp__req_send(sv[0], o, -1);
    mp__fd_internal_del(sv[0]);
    close(sv[0]);
    if (r < 0) {
        mp__fd_internal_del(sv[1]);
        close(sv[1]);
        if (r == -EMSGSIZE || r == -ENOBUFS) return MP_ETOOBIG;
        return r;
    }
    int death[2];
    r = mp__death_open(death);
    if (r < 0) {
        mp__fd_internal_del(sv[1]);
        close(sv[1]);
        return r;
    }
    char env[96];
    snprintf(env, sizeof env, "MPROC_BOOT=c:%d:%d", (int)getpid(), death[1] >= 0 ? DEATH_FD : -1);
    int pass[2] = {sv[1], death[1]};
    pid_t pid = -1;
    r = mp__spawn_self(saved_argv, env, pass, death[1] >= 0 ? 2 : 1, &pid);
    mp__fd_internal_del(sv[1]);
    close(sv[1]);
    mp__death_parent(r < 0 ? -1 : pid, death);
    if (r < 0) {
        if (r == -ENOENT) mp__start_set_error("spawn: the program's executable is gone");
        return r;
    }
    int fd = mp__pidfd_open(pid);
    if (fd < 0) {
        /* Without a handle we could neither wait nor signal safely: undo the start. */
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        return fd;
    }
    out->pid = pid;
    out->handle = fd;
    out->via_server = false;
    return 0;
}

int mp__launch(const mp__launch_req *req, mp__launched *out)
{
    if (!req || !out) return -EINVAL;
    if (!mp__init_called()) {
        mp__start_set_error("%s needs mp_init(&argc, &argv) as the first call in main(): the "
                            "child runs the program again and finds its target there",
                            mp_start_method_name(req->method));
        return MP_ENOTSUP;
    }
    if (req->method != MP_START_SPAWN && req->method != MP_START_FORKSERVER) return -EINVAL;
    mp__req_out o;
    int r = mp__req_build(req, &o);
    if (r == MP_ETOOBIG) mp__start_set_error("the request is larger than MP_PROCESS_ARG_MAX");
    if (r < 0) return r;
    r = req->method == MP_START_SPAWN ? launch_spawn(&o, out) : mp__forkserver_launch(&o, out);
    mp__req_release(&o);
    return r;
}

/* ---- in the child
 * -------------------------------------------------------------------------------- */

__attribute__((noreturn)) static void boot_fail(const char *what, int err)
{
    fprintf(stderr, "mproc: spawned child %d: %s (%s); main() is not run\n", (int)getpid(), what,
            err ? mp_strerror(err) : "bad request");
    mp__child_exit(70);
}

int mp__boot_if_child(int *argc, char ***argv)
{
    const char *e = getenv("MPROC_BOOT");
    if (!e) {
        mp__entry_hook_fn hook = atomic_load_explicit(&entry_hook, memory_order_acquire);
        return hook ? hook(argc, argv) : 0;
    }
    char mode = 0;
    int ppid = 0, dfd = -1;
    int n = sscanf(e, "%c:%d:%d", &mode, &ppid, &dfd);
    unsetenv("MPROC_BOOT"); /* our own children must not boot from it */
    if (n != 3 || (mode != 'c' && mode != 's')) boot_fail("MPROC_BOOT is malformed", 0);
    if (mode == 'c') {
        /* As a forked child: die with the thread that started us (and if it is already gone,
         * now: prctl came too late for its death signal). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != ppid) raise(SIGKILL);
    } else if (getppid() != ppid) {
        _exit(0); /* a forkserver whose program is gone already */
    }
    fcntl(BOOT_FD, F_SETFD, FD_CLOEXEC);
    if (dfd >= 0) {
        fcntl(dfd, F_SETFD, FD_CLOEXEC);
        mp__fd_internal_add(dfd); /* our death socket: no child of ours may hold it */
    }
    if (mode == 's') mp__forkserver_main(BOOT_FD, ppid);
    mp__boot b;
    int r = mp__req_recv(BOOT_FD, &b, false);
    close(BOOT_FD);
    if (r == 0) boot_fail("the parent went away before sending its request", 0);
    if (r < 0) boot_fail("could not read the request", r);
    mp__boot_run(&b);
}
