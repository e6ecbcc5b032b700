/* SPDX-License-Identifier: MIT */
/* mech_peers.c - what a C programmer would pick instead of mproc, measured the same way
 * (--compare peers; the raw pipe is mech_raw.c's raw.pipe.*):
 *   peers.mq.*                  POSIX message queues (mq_open(3)), one queue each way
 *   peers.zmq_reqrep.rtt64.*    ZeroMQ REQ/REP over ipc:// (round trips: REQ/REP is lock-step)
 *   peers.zmq_pushpull.tput*    ZeroMQ PUSH/PULL over ipc:// (streams: PUSH/PULL is one-way)
 * ZeroMQ is measured when mpbench was built with libzmq (MPB_HAVE_ZMQ, found by CMake); a peer
 * that cannot run is reported as not available, never faked. */
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "mpbench.h"

#ifdef MPB_HAVE_ZMQ
#include <zmq.h>
#endif

#define TIMEOUT_S 30

/* ---- POSIX mq -------------------------------------------------------------------------------- */

struct mq_st {
    mqd_t q[2]; /* q[0]: parent -> child, q[1]: child -> parent */
    size_t msgsize;
};

/* Depth of each queue: the default limit for unprivileged users (fs.mqueue.msg_max). */
#define MQ_DEPTH 10

static int mq_open_pair(void **st, size_t maxmsg)
{
    struct mq_st *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->msgsize = maxmsg < 64 ? 64 : maxmsg;
    struct mq_attr a = {.mq_maxmsg = MQ_DEPTH, .mq_msgsize = (long)s->msgsize};
    static int seq;
    for (int i = 0; i < 2; i++) {
        char name[64];
        snprintf(name, sizeof name, "/mpbench.%d.%d", (int)getpid(), seq++);
        s->q[i] = mq_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &a);
        int e = errno;
        /* Both processes keep the descriptors across fork; the name is not needed. */
        if (s->q[i] != (mqd_t)-1) mq_unlink(name);
        if (s->q[i] == (mqd_t)-1) {
            if (i) mq_close(s->q[0]);
            free(s);
            return -e;
        }
    }
    *st = s;
    return 0;
}

static void mq_side(void *st, int side) {}

static struct timespec deadline(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += TIMEOUT_S;
    return ts;
}

static int mq_send1(void *st, int side, const void *buf, size_t len)
{
    struct mq_st *s = st;
    struct timespec dl = deadline();
    while (mq_timedsend(s->q[side], buf, len, 0, &dl) < 0)
        if (errno != EINTR) return -errno;
    return 0;
}

static int mq_recv1(void *st, int side, void *buf, size_t len)
{
    struct mq_st *s = st;
    struct timespec dl = deadline();
    /* mq_receive wants a buffer of the queue's message size. */
    char small[64];
    char *into = len >= s->msgsize ? buf : small;
    ssize_t n;
    while ((n = mq_timedreceive(s->q[!side], into, s->msgsize, NULL, &dl)) < 0)
        if (errno != EINTR) return -errno;
    if ((size_t)n != len) return -EPROTO;
    if (into != buf) memcpy(buf, small, len);
    return 0;
}

static void mq_close_pair(void *st, int side)
{
    struct mq_st *s = st;
    mq_close(s->q[0]);
    mq_close(s->q[1]);
    if (side == 0) free(s);
}

static const mpb_chan mq_chan = {"POSIX mq", mq_open_pair, mq_side,
                                 mq_send1,   mq_recv1,     mq_close_pair};

/* 1 MiB messages need fs.mqueue.msgsize_max >= 1 MiB (or CAP_SYS_RESOURCE) and an
 * RLIMIT_MSGQUEUE of MQ_DEPTH MiB per queue; raise the soft limit as far as allowed. Returns 0
 * when a queue of that size can be made, or the reason it cannot. */
static int mq_probe(size_t size, char *why, size_t len)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_MSGQUEUE, &rl) == 0) {
        rlim_t want = 4 * (rlim_t)MQ_DEPTH * ((rlim_t)size + 128);
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
            struct rlimit up = {
                want, rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? rl.rlim_max : want};
            if (setrlimit(RLIMIT_MSGQUEUE, &up) != 0 && rl.rlim_max != RLIM_INFINITY) {
                rl.rlim_cur = rl.rlim_max;
                setrlimit(RLIMIT_MSGQUEUE, &rl);
            }
        }
    }
    void *st;
    int rc = mq_open_pair(&st, size);
    if (rc == 0) {
        mq_close_pair(st, 0);
        return 0;
    }
    snprintf(why, len, "%s", strerror(-rc));
    return rc;
}

/* ---- ZeroMQ -------------------------------------------------------------------------------- */

#ifdef MPB_HAVE_ZMQ
struct zmq_st {
    char endpoint[96];
    int type[2]; /* socket type of side 0 (binds) and side 1 (connects) */
    void *ctx, *sock;
};

static int zmq_open_pair(void **st, size_t maxmsg, int t0, int t1)
{
    struct zmq_st *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    static int seq;
    /* An abstract socket name: nothing to clean up in the file system. */
    snprintf(s->endpoint, sizeof s->endpoint, "ipc://@mpbench-%d-%d", (int)getpid(), seq++);
    s->type[0] = t0;
    s->type[1] = t1;
    *st = s;
    return 0;
}

static int zpp_open(void **st, size_t maxmsg)
{
    return zmq_open_pair(st, maxmsg, ZMQ_PUSH, ZMQ_PULL);
}

static int zrr_open(void **st, size_t maxmsg)
{
    return zmq_open_pair(st, maxmsg, ZMQ_REQ, ZMQ_REP);
}

/* The context is made after fork, in each process: a ZeroMQ context must not cross a fork. */
static void zmq_side(void *st, int side)
{
    struct zmq_st *s = st;
    s->ctx = zmq_ctx_new();
    if (!s->ctx) return;
    s->sock = zmq_socket(s->ctx, s->type[side]);
    if (!s->sock) return;
    int ms = TIMEOUT_S * 1000, zero = 0, ivl = 1;
    zmq_setsockopt(s->sock, ZMQ_SNDTIMEO, &ms, sizeof ms);
    zmq_setsockopt(s->sock, ZMQ_RCVTIMEO, &ms, sizeof ms);
    zmq_setsockopt(s->sock, ZMQ_LINGER, &zero, sizeof zero);
    /* The child may connect before the parent has bound: retry soon, not after 100 ms. */
    zmq_setsockopt(s->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    int rc = side == 0 ? zmq_bind(s->sock, s->endpoint) : zmq_connect(s->sock, s->endpoint);
    if (rc != 0) {
        zmq_close(s->sock);
        s->sock = NULL;
    }
}

static int zmq_send1(void *st, int side, const void *buf, size_t len)
{
    struct zmq_st *s = st;
    if (!s->sock) return -ENOTCONN;
    for (;;) {
        int n = zmq_send(s->sock, buf, len, 0);
        if (n == (int)len) return 0;
        if (n < 0 && zmq_errno() == EINTR) continue;
        return n < 0 ? -zmq_errno() : -EPROTO;
    }
}

static int zmq_recv1(void *st, int side, void *buf, size_t len)
{
    struct zmq_st *s = st;
    if (!s->sock) return -ENOTCONN;
    for (;;) {
        int n = zmq_recv(s->sock, buf, len, 0);
        if (n == (int)len) return 0;
        if (n < 0 && zmq_errno() == EINTR) continue;
        return n < 0 ? -zmq_errno() : -EPROTO;
    }
}

static void zmq_close1(void *st, int side)
{
    struct zmq_st *s = st;
    if (s->sock) zmq_close(s->sock);
    if (s->ctx) zmq_ctx_term(s->ctx);
    s->sock = s->ctx = NULL;
    if (side == 0) free(s);
}

static const mpb_chan zpp_chan = {"ZeroMQ PUSH/PULL", zpp_open,  zmq_side,
                                  zmq_send1,          zmq_recv1, zmq_close1};
static const mpb_chan zrr_chan = {"ZeroMQ REQ/REP", zrr_open,  zmq_side,
                                  zmq_send1,        zmq_recv1, zmq_close1};
#endif

/* ---- the figures --------------------------------------------------------------------------- */

/* The figures of the quick table, for one peer: round trips (rtt) and/or streams (tput). */
static void peer_suite(const char *prefix, const char *what, const mpb_chan *ch, bool rtt,
                       bool tput)
{
    char name[64], label[96];
    static const char *pl[] = {"same", "cross"};
    static const char *plh[] = {"same CPU", "cross-CPU"};
    for (int p = 0; rtt && p < 2; p++) {
        snprintf(name, sizeof name, "%s.rtt64.%s", prefix, pl[p]);
        snprintf(label, sizeof label, "%s round trip 64 B, %s", what, plh[p]);
        if (mpb_wantq(name, true)) mpb_rtt(name, label, ch, 64, (mpb_place)p);
    }
    static const size_t sizes[] = {64, 1u << 20};
    static const char *tag[] = {"64", "1m"}, *human[] = {"64 B", "1 MiB"};
    for (int k = 0; tput && k < 2; k++) {
        snprintf(name, sizeof name, "%s.tput%s.cross", prefix, tag[k]);
        snprintf(label, sizeof label, "%s stream %s, cross-CPU", what, human[k]);
        if (!mpb_wantq(name, true)) continue;
        char why[160];
        if (ch == &mq_chan && !mpb->listing && mq_probe(sizes[k], why, sizeof why) != 0) {
            mpb_unavailable("%s: not available (%s; see fs.mqueue.msgsize_max, ulimit -q)", name,
                            why);
            continue;
        }
        mpb_tput(name, label, ch, sizes[k], MPB_CROSS);
    }
}

void mpb_bench_peers(void)
{
    peer_suite("peers.mq", "POSIX mq", &mq_chan, true, true);
#ifdef MPB_HAVE_ZMQ
    peer_suite("peers.zmq_reqrep", "ZeroMQ ipc REQ/REP", &zrr_chan, true, false);
    peer_suite("peers.zmq_pushpull", "ZeroMQ ipc PUSH/PULL", &zpp_chan, false, true);
#else
    if (mpb->listing)
        printf("# peers.zmq_*: not available (mpbench was built without libzmq)\n");
    else if (mpb_want_any("peers.zmq_reqrep") || mpb_want_any("peers.zmq_pushpull"))
        mpb_unavailable("peers.zmq_*: not available (mpbench was built without libzmq; Debian: "
                        "apt-get install libzmq3-dev, then rebuild)");
#endif
}
