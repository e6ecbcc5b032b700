/* SPDX-License-Identifier: MIT */
/* mech_pipe.c - mp_conn: a duplex mproc pipe, parent on one end, the forked peer on the other. */
#include <errno.h>
#include <stdlib.h>

#include "avail.h"
#include "mpbench.h"

#ifdef MPB_HAVE_PIPE
#include "mproc/error.h"
#include "mproc/pipe.h"

#define TIMEOUT 30.0

struct pipe_st {
    mp_conn *end[2]; /* end[0]: the parent's, end[1]: the child's */
};

static int p_open(void **st, size_t maxmsg)
{
    struct pipe_st *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    int rc = mp_pipe_new(&p->end[0], &p->end[1], true);
    if (rc < 0) {
        free(p);
        return rc;
    }
    *st = p;
    return 0;
}

static void p_side(void *st, int side)
{
    struct pipe_st *p = st;
    mp_conn_free(&p->end[!side]);
}

static int p_send(void *st, int side, const void *buf, size_t len)
{
    struct pipe_st *p = st;
    return mp_conn_send(p->end[side], buf, len, TIMEOUT);
}

static int p_recv(void *st, int side, void *buf, size_t len)
{
    struct pipe_st *p = st;
    size_t n;
    int rc = mp_conn_recv(p->end[side], buf, len, &n, TIMEOUT);
    return rc == 0 && n != len ? MP_ECORRUPT : rc;
}

static void p_close(void *st, int side)
{
    struct pipe_st *p = st;
    mp_conn_free(&p->end[0]);
    mp_conn_free(&p->end[1]);
    if (side == 0) free(p);
}

static const mpb_chan pipe_chan = {"mp pipe", p_open, p_side, p_send, p_recv, p_close};

void mpb_bench_pipe(void)
{
    mpb_chan_suite("pipe", "mp pipe", &pipe_chan, MPB_SALL);
}
#else
void mpb_bench_pipe(void) {}
#endif
