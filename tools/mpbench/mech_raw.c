/* SPDX-License-Identifier: MIT */
/* mech_raw.c - the kernel's own mechanisms, without mproc: the yardsticks for the ratios.
 *   raw.pipe.*     two pipe2() pipes, write/read loops
 *   raw.memcpy1m   memcpy of 1 MiB blocks through 64 MiB (the ceiling for 1 MiB transfers)
 *   raw.mutex      lock+unlock of a process-shared robust pthread mutex
 *   raw.signal.*   kill() + sigwaitinfo() round trip
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mpbench.h"

/* ---- pipe ---------------------------------------------------------------------------------- */

struct rawpipe {
    int down[2]; /* parent -> child */
    int up[2];   /* child -> parent */
};

static int rp_open(void **st, size_t maxmsg)
{
    struct rawpipe *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    if (pipe2(p->down, O_CLOEXEC) < 0 || pipe2(p->up, O_CLOEXEC) < 0) {
        free(p);
        return -errno;
    }
    *st = p;
    return 0;
}

static void rp_side(void *st, int side)
{
    struct rawpipe *p = st;
    if (side == 0) {
        close(p->down[0]);
        close(p->up[1]);
        p->down[0] = p->up[1] = -1;
    } else {
        close(p->down[1]);
        close(p->up[0]);
        p->down[1] = p->up[0] = -1;
    }
}

static int rp_send(void *st, int side, const void *buf, size_t len)
{
    struct rawpipe *p = st;
    int fd = side == 0 ? p->down[1] : p->up[1];
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, (const char *)buf + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        off += (size_t)n;
    }
    return 0;
}

static int rp_recv(void *st, int side, void *buf, size_t len)
{
    struct rawpipe *p = st;
    int fd = side == 0 ? p->up[0] : p->down[0];
    for (size_t off = 0; off < len;) {
        ssize_t n = read(fd, (char *)buf + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (n == 0) return -EPIPE;
        off += (size_t)n;
    }
    return 0;
}

static void rp_close(void *st, int side)
{
    struct rawpipe *p = st;
    int *fds[] = {&p->down[0], &p->down[1], &p->up[0], &p->up[1]};
    for (int i = 0; i < 4; i++)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
    if (side == 0) free(p);
}

static const mpb_chan rawpipe_chan = {"raw pipe", rp_open, rp_side, rp_send, rp_recv, rp_close};

/* ---- memcpy -------------------------------------------------------------------------------- */

#define COPY_SPAN  (64u << 20)
#define COPY_BLOCK (1u << 20)

struct copybuf {
    char *src, *dst;
    size_t off;
};

static int copy_blocks(void *arg, long n)
{
    struct copybuf *c = arg;
    for (long i = 0; i < n; i++) {
        memcpy(c->dst + c->off, c->src + c->off, COPY_BLOCK);
        c->off = (c->off + COPY_BLOCK) % COPY_SPAN;
    }
    __asm__ __volatile__("" ::"r"(c->dst) : "memory");
    return 0;
}

/* ---- robust mutex -------------------------------------------------------------------------- */

static int mutex_loop(void *arg, long n)
{
    pthread_mutex_t *m = arg;
    for (long i = 0; i < n; i++) {
        int rc = pthread_mutex_lock(m);
        if (rc == EOWNERDEAD)
            pthread_mutex_consistent(m);
        else if (rc)
            return -rc;
        pthread_mutex_unlock(m);
    }
    return 0;
}

/* ---- signals ------------------------------------------------------------------------------- */

struct rawsig {
    sigset_t set;
    pid_t peer;
};

static int rs_open(void **st, size_t maxmsg)
{
    struct rawsig *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    sigemptyset(&s->set);
    sigaddset(&s->set, SIGUSR1);
    /* Blocked before fork, so a signal that comes early stays pending instead of killing. */
    sigprocmask(SIG_BLOCK, &s->set, NULL);
    *st = s;
    return 0;
}

static void rs_side(void *st, int side)
{
    struct rawsig *s = st;
    s->peer = side == 0 ? mpb_last_child : getppid();
}

static int rs_send(void *st, int side, const void *buf, size_t len)
{
    struct rawsig *s = st;
    return kill(s->peer, SIGUSR1) < 0 ? -errno : 0;
}

static int rs_recv(void *st, int side, void *buf, size_t len)
{
    struct rawsig *s = st;
    struct timespec ts = {10, 0};
    for (;;) {
        int r = sigtimedwait(&s->set, NULL, &ts);
        if (r == SIGUSR1) return 0;
        if (r < 0 && errno != EINTR) return -errno;
    }
}

static void rs_close(void *st, int side)
{
    struct rawsig *s = st;
    /* Ignoring discards a signal still pending; then unblock and restore the default. */
    signal(SIGUSR1, SIG_IGN);
    sigprocmask(SIG_UNBLOCK, &s->set, NULL);
    signal(SIGUSR1, SIG_DFL);
    if (side == 0) free(s);
}

static const mpb_chan rawsig_chan = {"raw signal", rs_open, rs_side, rs_send, rs_recv, rs_close};

void mpb_bench_raw(void)
{
    mpb_chan_suite("raw.pipe", "raw pipe", &rawpipe_chan, MPB_SALL);

    if (mpb_wantq("raw.memcpy1m", true)) {
        struct copybuf c = {malloc(COPY_SPAN), malloc(COPY_SPAN), 0};
        if (c.src && c.dst) {
            memset(c.src, 1, COPY_SPAN);
            memset(c.dst, 2, COPY_SPAN);
            mpb_loop("raw.memcpy1m", "memcpy 1 MiB blocks (64 MiB span)", copy_blocks, &c, "MB/s",
                     (double)COPY_BLOCK / 1e6);
        } else {
            mpb_fail("raw.memcpy1m", "out of memory");
        }
        free(c.src);
        free(c.dst);
    }

    if (mpb_wantq("raw.mutex", true)) {
        pthread_mutex_t *m =
            mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m != MAP_FAILED) {
            pthread_mutexattr_t a;
            pthread_mutexattr_init(&a);
            pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
            pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
            pthread_mutex_init(m, &a);
            pthread_mutexattr_destroy(&a);
            mpb_loop("raw.mutex", "robust pshared mutex lock+unlock", mutex_loop, m, "ns", 1);
            pthread_mutex_destroy(m);
            munmap(m, sizeof *m);
        }
    }

    if (mpb_wantq("raw.signal.rtt.same", true))
        mpb_rtt("raw.signal.rtt.same", "kill+sigwaitinfo round trip, same CPU", &rawsig_chan, 0,
                MPB_SAME);
    if (mpb_wantq("raw.signal.rtt.cross", false))
        mpb_rtt("raw.signal.rtt.cross", "kill+sigwaitinfo round trip, cross-CPU", &rawsig_chan, 0,
                MPB_CROSS);
}
