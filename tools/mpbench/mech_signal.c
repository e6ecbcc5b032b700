/* SPDX-License-Identifier: MIT */
/* mech_signal.c - a signal round trip through mproc: mp_signal_send + an mp_sigwaiter (signalfd)
 * on each side. The waiter is created before fork, so SIGUSR1 is blocked in both processes from
 * the start and an early signal waits in the pending set instead of killing the peer. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "avail.h"
#include "mpbench.h"

#ifdef MPB_HAVE_SIGNALS
#include "mproc/signals.h"

struct sig_st {
    mp_sigwaiter *w;
    pid_t peer;
};

static int s_open(void **st, size_t maxmsg)
{
    struct sig_st *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    int sigs[] = {SIGUSR1};
    int rc = mp_sigwaiter_new(&s->w, sigs, 1);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *st = s;
    return 0;
}

static void s_side(void *st, int side)
{
    struct sig_st *s = st;
    s->peer = side == 0 ? mpb_last_child : getppid();
}

static int s_send(void *st, int side, const void *buf, size_t len)
{
    struct sig_st *s = st;
    return mp_signal_send(s->peer, SIGUSR1);
}

static int s_recv(void *st, int side, void *buf, size_t len)
{
    struct sig_st *s = st;
    return mp_sigwaiter_wait(s->w, NULL, 30.0);
}

static void s_close(void *st, int side)
{
    struct sig_st *s = st;
    /* Drain a signal still pending, so unblocking it cannot run the default action. */
    while (mp_sigwaiter_wait(s->w, NULL, 0) == 0) {
    }
    mp_sigwaiter_free(&s->w);
    if (side == 0) free(s);
}

static const mpb_chan sig_chan = {"mp signal", s_open, s_side, s_send, s_recv, s_close};

void mpb_bench_signal(void)
{
    if (mpb_wantq("signal.rtt.same", true))
        mpb_rtt("signal.rtt.same", "mp signal round trip, same CPU", &sig_chan, 0, MPB_SAME);
    if (mpb_wantq("signal.rtt.cross", true))
        mpb_rtt("signal.rtt.cross", "mp signal round trip, cross-CPU", &sig_chan, 0, MPB_CROSS);
}
#else
void mpb_bench_signal(void) {}
#endif
